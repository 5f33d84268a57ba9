//! What every measurement of a run shares ([`Resources`]: the plan, CPUs, binaries,
//! certificates, folders, peers and TLS libraries), how a measurement starts its stack from them, and the
//! label that names its log files.

use std::path::Path;

use crate::bins::Bins;
use crate::certs::Certs;
use crate::cpus::CpuSplit;
use crate::peers::Peer;
use crate::plan::{Kind, Measurement, Plan};
use crate::procs::{Ledger, Stop};
use crate::stack::recipe::{self, Recipe};
use crate::stack::{self, Stack, Waits};
use crate::tls_library::Ours;

/// What every measurement of a run shares: the plan, the CPUs, the binaries and
/// certificates, the folders and the peers found.
pub(super) struct Resources<'a> {
    pub plan: &'a Plan,
    pub split: &'a CpuSplit,
    pub bins: &'a Bins,
    pub certs: &'a Certs,
    /// Sockets and certificates: a private temporary folder.
    pub runtime_dir: &'a Path,
    pub logs: &'a Path,
    /// The run's `latency/` folder, when it has a sweep.
    pub latency: Option<&'a Path>,
    /// Peers' config files go here.
    pub config_dir: &'a Path,
    pub peers: &'a [Peer],
    /// The TLS library of each backend in our proxy and echo-server.
    pub tls_libraries: &'a Ours,
    /// The open-file limit every child inherits.
    pub nofile: u64,
    pub stop: &'a Stop,
    /// CA certificate for a remote `--target`.
    pub cacert: Option<&'a Path>,
}

impl Resources<'_> {
    /// The recipe of `m`'s stack, logging under `stem`; a peer gets a fresh free port.
    fn recipe(&self, m: &Measurement, stem: &Path) -> anyhow::Result<Recipe> {
        let (cert, combined) = self.certs.get(m.tls.cert)?;
        let peer_port = if m.variant.config.is_peer() {
            stack::free_port()?
        } else {
            0
        };
        Ok(recipe::for_variant(
            &m.variant,
            &recipe::Inputs {
                bins: self.bins,
                cert,
                server_cpus: &self.split.server,
                runtime_dir: self.runtime_dir,
                log_stem: stem,
                index: m.index,
                combined_pem: combined,
                peers: self.peers,
                config_dir: self.config_dir,
                peer_port,
                // Room for the idle scenario's connections; a peer that sizes itself from
                // this must still fit in the open-file limit (two descriptors a connection).
                max_connections: (u64::from(self.plan.idle_connections.get()) + 1024)
                    .min(self.nofile.saturating_sub(256) / 2)
                    .max(1024),
                root: stack::running_as_root(),
            },
        ))
    }

    /// Starts `m`'s stack. A peer's is tried up to [`PEER_START_TRIES`] times, each on a
    /// new port: the free port picked for it can be taken before the peer binds it.
    pub fn start_stack(
        &self,
        m: &Measurement,
        stem: &Path,
        label: &str,
        ledger: &mut Ledger,
    ) -> anyhow::Result<Stack> {
        let tries = if m.variant.config.is_peer() {
            PEER_START_TRIES
        } else {
            1
        };
        let waits = Waits {
            stop: self.stop,
            ready_timeout: self.plan.ready_timeout,
        };
        Stack::start_retrying(tries, || self.recipe(m, stem), label, ledger, waits)
    }
}

/// Names the measurement's log files: `1-proxy-rustls-aws-lc-1000` (sweep),
/// `1-haproxy-full-rsa-2048` (handshakes; `-hybrid` for the post-quantum group),
/// `1-nginx-idle`.
pub(super) fn measurement_label(m: &Measurement, remote: bool) -> String {
    let variant = if remote {
        "remote".to_owned()
    } else {
        m.variant.label()
    };
    match m.kind {
        Kind::Sweep => format!("{}-{variant}-{}", m.iteration, m.size),
        Kind::Handshake {
            cert,
            resumed,
            hybrid,
        } => format!(
            "{}-{variant}-{}-{}{}",
            m.iteration,
            if resumed { "resumed" } else { "full" },
            cert.name(),
            if hybrid { "-hybrid" } else { "" }
        ),
        Kind::Idle => format!("{}-{variant}-idle", m.iteration),
    }
}

/// Names a sweep row's latency distribution (without the extension):
/// `proxy-rustls-aws-lc-1000-1` (variant, size, iteration), `remote-1000-1`.
pub(super) fn latency_name(m: &Measurement, remote: bool) -> String {
    let variant = if remote {
        "remote".to_owned()
    } else {
        m.variant.label()
    };
    format!("{variant}-{}-{}", m.size, m.iteration)
}

/// Starts of a peer's stack before its measurement counts as failed.
const PEER_START_TRIES: u32 = 3;
