//! The good clients of every scenario: one loadgen run, open loop, pinned to the client
//! CPUs, verifying every echoed body, ended by SIGINT when the scenario's window closes.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::Suite;
use crate::loadgen::{duration_arg, Report};
use crate::procs::{Proc, Spec, Stop};

/// The good clients: one loadgen run, open loop, verifying every echoed body.
#[derive(Debug)]
pub struct Load {
    proc: Proc,
    out: PathBuf,
}

/// How the good clients load the proxy.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// Requests per second, all connections together.
    pub rate: u32,
    pub connections: u32,
    /// A new connection (and handshake) per request, when false.
    pub keepalive: bool,
    pub warmup: Duration,
    /// Request body bytes.
    pub body: u64,
}

impl Load {
    /// Starts loadgen against `addr`. It runs until [`Load::finish`] interrupts it (SIGINT
    /// ends a loadgen run early with a full report), so its measured period is exactly the
    /// scenario's window after the warm-up.
    pub fn start(
        suite: &mut Suite<'_>,
        addr: SocketAddr,
        tag: &str,
        opts: &LoadOpts,
    ) -> anyhow::Result<Load> {
        let threads = suite
            .inputs
            .split
            .client
            .len()
            .min(opts.connections as usize);
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |flag: &str, value: String| {
            args.push(flag.into());
            args.push(value.into());
        };
        push("-c", opts.connections.to_string());
        push("-t", threads.to_string());
        push("-d", duration_arg(LOAD_MAX));
        push("--warmup", duration_arg(opts.warmup));
        push("--rate", opts.rate.to_string());
        push("-b", opts.body.to_string());
        push("--timeout", duration_arg(GOOD_TIMEOUT));
        push("--output", "json".into());
        push("--cacert", suite.pki.ca_path.to_string_lossy().into_owned());
        if !opts.keepalive {
            args.push("--no-keepalive".into());
        }
        args.push(format!("https://{addr}/").into());
        let out = suite.log(tag, "loadgen", "out");
        let spec = Spec {
            name: "loadgen".into(),
            program: suite.inputs.bins.loadgen.clone(),
            args,
            cpus: suite.inputs.split.client.clone(),
            stdout_log: out.clone(),
            stderr_log: suite.log(tag, "loadgen", "err"),
            wait_ready: false,
        };
        let label = suite.label(tag);
        let proc = Proc::spawn(&spec, suite.inputs.ledger, &label)?;
        Ok(Load { proc, out })
    }

    /// Ends the run (SIGINT) and reads its report.
    pub fn finish(mut self, stop: &Stop) -> anyhow::Result<Report> {
        crate::loadgen::interrupt(&mut self.proc, &self.out, LOAD_REPORT_WAIT, stop)
    }
}

/// loadgen's `-d`: longer than any scenario; runs end by SIGINT.
const LOAD_MAX: Duration = Duration::from_secs(3 * 3600);
/// Good clients' per-request limit (connect included): a request slower than this is an
/// error, which a healthy proxy never comes near at these rates.
pub const GOOD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long loadgen may take to report after SIGINT.
const LOAD_REPORT_WAIT: Duration = Duration::from_secs(15);
