//! What a run measures: a preset (`smoke`, `quick`, `seed`), optionally a TOML plan file on
//! top, then command-line overrides on top of that. Everything is parsed into typed values
//! here, so a typo in a config name, a duration or a CPU list fails before anything starts.
//!
//! This module holds the resolved [`Plan`] and the [`Measurement`]s it expands to, each with
//! the TLS parameters the load generator will be asked for; [`presets`] the built-in plans,
//! [`overrides`] the one type that plan files and flags both fill, [`names`] the names a
//! plan is written in.

mod names;
mod overrides;
mod presets;

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use proxy::tls::{Backend, TlsVersion};
use serde_json::json;

use crate::cpus::CpuList;
use crate::faults::AttackerSched;

pub use names::{
    CertType, ConfigName, ConfigPick, Kind, PeerSet, Scenario, FAULTS_CSV, FAULTS_SUMMARY,
    SNI_SCALE_CSV,
};
pub use overrides::{preset_or_file, Overrides};
pub use presets::Preset;

/// A fully resolved plan: what the run will do, every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Where it came from, for the plan printout and meta.json.
    pub source: String,
    pub scenario: Scenario,
    pub configs: Vec<ConfigName>,
    /// Request body sizes in bytes.
    pub sizes: Vec<u64>,
    pub iterations: NonZeroU32,
    /// Measured period of each load generator run (after warm-up).
    pub duration: Duration,
    /// Load before the measured period, excluded from statistics.
    pub warmup: Duration,
    pub connections: NonZeroU32,
    /// Load generator threads (of each process); `None`: one per client CPU it runs on.
    pub client_threads: Option<NonZeroU32>,
    /// Load generator processes per load measurement, each running its segment of the load
    /// (`loadgen --segment i/N`) on its round-robin share of the client CPUs; their reports
    /// are merged into the row.
    pub client_processes: NonZeroU32,
    /// Requests per second (open loop); `None`: closed loop, as fast as answers come.
    pub rate: Option<f64>,
    /// Per-request timeout of the load generator.
    pub timeout: Duration,
    /// How long a server may take to print its `listening on` line.
    pub ready_timeout: Duration,
    /// TLS backends; the rustls configs run once per rustls flavour listed here (the
    /// openssl and native-tls configs run their own backend whatever this says).
    pub tls_backends: Vec<Backend>,
    pub cert_type: CertType,
    pub tls_version: TlsVersion,
    /// IANA names the load generator offers; empty: [`Plan::effective_cipher_suites`].
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups the load generator offers; empty: X25519.
    pub kx_groups: Vec<String>,
    pub server_cpus: Option<CpuList>,
    pub client_cpus: Option<CpuList>,
    /// Measure this URL instead of local servers (config `remote`).
    pub target: Option<String>,
    /// Connections the idle scenario holds open through each terminator.
    pub idle_connections: NonZeroU32,
    /// How long they are held (the memory is sampled once all are open).
    pub idle_hold: Duration,
    /// Length of the fault suite's long run (`--scenario soak`).
    pub soak_duration: Duration,
    /// The fault suite's short version: seconds per scenario (the smoke preset, CI).
    pub short_faults: bool,
    /// The fault suite's scenarios to run, by number (1-8); empty: all of them.
    pub fault_scenarios: Vec<u8>,
    /// The fault suite's attackers: their CPUs (`None`: the load generator's) and their
    /// scheduling policy.
    pub attacker_cpus: Option<CpuList>,
    pub attacker_sched: AttackerSched,
    /// SNI certificates in the one listener of `--scenario sni-scale`.
    pub sni_certs: NonZeroU32,
    /// The peer set asked for; `None`: current when installed, else system (decided when
    /// the run starts).
    pub peers: Option<PeerSet>,
}

/// One measurement variant: a config, and for TLS configs the backend that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub config: ConfigName,
    /// `None` for plain HTTP.
    pub backend: Option<Backend>,
}

impl Variant {
    /// The CSV `config` column.
    pub fn config_name(&self) -> &'static str {
        self.config.name()
    }

    /// The CSV `tls_backend` column: the TLS library family (peers use OpenSSL, but for
    /// HAProxy's AWS-LC build; `tls_library` names the release).
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Some(backend) => backend.name(),
            None if self.config == ConfigName::HaproxyAwslc => "aws-lc",
            None if self.config.is_peer() => "openssl",
            None => "none",
        }
    }

    /// A short unique label for file names and progress lines: `proxy-rustls-aws-lc`,
    /// `https-openssl`, `http`.
    pub fn label(&self) -> String {
        match (self.config.is_rustls(), self.backend) {
            (true, Some(backend)) => self.config.name().replace("rustls", backend.name()),
            _ => self.config.name().to_owned(),
        }
    }
}

/// One row of the results: which variant, which body size, which iteration (1-based),
/// and what kind of load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub index: usize,
    pub iteration: u32,
    pub variant: Variant,
    pub size: u64,
    pub kind: Kind,
    /// What the load generator offers and the servers present (used by TLS configs only).
    pub tls: TlsParams,
}

/// The TLS side of one measurement, resolved from the plan and the kind of load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub version: TlsVersion,
    /// The certificate the servers present.
    pub cert: CertType,
    /// IANA names the load generator offers (TLS 1.2 suites follow the certificate).
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups the load generator offers.
    pub kx_groups: Vec<String>,
}

impl Plan {
    /// The plan after `file` (if any) and then `cli` are laid over the base preset. The base
    /// is `cli.preset`, else the file's `preset` key, else `quick`.
    pub fn resolve(file: Option<&Path>, cli: Overrides) -> anyhow::Result<Plan> {
        let file_overrides = match file {
            Some(path) => Some((path, Overrides::load(path)?)),
            None => None,
        };
        let preset = cli
            .preset
            .or(file_overrides.as_ref().and_then(|(_, f)| f.preset))
            .unwrap_or(Preset::Quick);
        let mut plan = preset.plan();
        let mut configs_given = cli.configs.is_some();
        if let Some((path, f)) = file_overrides {
            plan.source = format!("{} + file {}", plan.source, path.display());
            configs_given |= f.configs.is_some();
            f.apply(&mut plan);
        }
        if cli.any_set() {
            plan.source.push_str(" + command-line overrides");
        }
        cli.apply(&mut plan);
        // The fault suite attacks our proxy unless the configs are named: the presets'
        // lists are the sweep's.
        if plan.scenario.is_fault_suite() && !configs_given {
            plan.configs = vec![ConfigName::ProxyRustls];
        }
        plan.validate()?;
        Ok(plan)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.sizes.is_empty() {
            bail!("--sizes / sizes: no body size given");
        }
        if self.target.is_some() && self.scenario != Scenario::Sweep {
            bail!(
                "--target measures a remote server with the sweep only, not scenario {}",
                self.scenario.name()
            );
        }
        if let Some(&size) = self.sizes.iter().find(|&&s| s > MAX_BODY_BYTES) {
            bail!("--sizes / sizes: {size} bytes is above the echo-server's limit of {MAX_BODY_BYTES}");
        }
        if self.duration.is_zero() {
            bail!("--duration / duration: must be above zero");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate / rate: {rate} is not a positive number of requests per second");
            }
        }
        if self.target.is_none() {
            if self.configs.is_empty() {
                bail!("--configs / configs: no config given");
            }
            let rustls = self.configs.iter().any(|c| c.is_rustls());
            if rustls && self.rustls_backends().is_empty() {
                bail!(
                    "--tls-backends / tls_backends {:?} names no rustls flavour (rustls-aws-lc, \
                     rustls-ring) but a rustls config is selected",
                    self.tls_backends
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                );
            }
            if self.variants().is_empty() {
                let why: Vec<String> = self.skipped_configs().into_iter().map(|(_, l)| l).collect();
                bail!(
                    "--configs / configs: nothing left to run: {}",
                    why.join("; ")
                );
            }
        }
        if let Some(target) = &self.target {
            check_target(target).context("--target / target")?;
        }
        if !self.fault_scenarios.is_empty() && self.scenario != Scenario::Faults {
            bail!(
                "--fault-scenarios / fault_scenarios picks scenarios of --scenario faults, not \
                 of scenario {}",
                self.scenario.name()
            );
        }
        self.check_fault_configs()?;
        self.check_client_processes()
    }

    /// The fault suite attacks the configs of [`crate::faults::terminator::CONFIGS`] only.
    fn check_fault_configs(&self) -> anyhow::Result<()> {
        let suite = crate::faults::terminator::CONFIGS;
        if !self.scenario.is_fault_suite() {
            return Ok(());
        }
        if let Some(other) = self.configs.iter().find(|c| !suite.contains(c)) {
            bail!(
                "--configs / configs: the fault suite attacks {}, not {other}",
                suite.map(ConfigName::name).join(", ")
            );
        }
        Ok(())
    }

    /// `--client-processes N` splits the load of the sweep and the handshakes: each process
    /// needs a connection, and the idle scenario and the fault suite run one load generator
    /// of their own (an idle run is not merged: its figure is the servers' memory).
    fn check_client_processes(&self) -> anyhow::Result<()> {
        let n = self.client_processes.get();
        if n == 1 {
            return Ok(());
        }
        if n > self.connections.get() {
            bail!(
                "--client-processes / client_processes {n}: each process needs at least one \
                 of the {} connections (--connections)",
                self.connections
            );
        }
        let parts = self.scenario.parts();
        if self.scenario.is_fault_suite()
            || self.scenario == Scenario::SniScale
            || parts.contains(&Scenario::Idle)
        {
            bail!(
                "--client-processes / client_processes {n} applies to the sweep and the \
                 handshakes, not to scenario {}: the idle scenario and the fault suite run one \
                 load generator (run them separately, without --client-processes)",
                self.scenario.name()
            );
        }
        Ok(())
    }

    fn rustls_backends(&self) -> Vec<Backend> {
        self.tls_backends
            .iter()
            .copied()
            .filter(|b| b.is_rustls())
            .collect()
    }

    /// The configs of the plan whose backend cannot speak its TLS version (native-tls and
    /// TLS 1.3), or that scenario sni-scale cannot run (not in [`SNI_SCALE_CONFIGS`]), each
    /// with the line a run prints and records in meta.json's `skipped`:
    /// [`Plan::variants`] leaves them out, rather than measure a wall of failed handshakes.
    pub fn skipped_configs(&self) -> Vec<(ConfigName, String)> {
        self.configs
            .iter()
            .filter_map(|&config| {
                if self.scenario == Scenario::SniScale && !SNI_SCALE_CONFIGS.contains(&config) {
                    let line = format!(
                        "skipping {config}: scenario sni-scale runs {}",
                        SNI_SCALE_CONFIGS.map(ConfigName::name).join(", ")
                    );
                    return Some((config, line));
                }
                let backend = config.fixed_backend()?;
                (!backend.speaks(self.tls_version)).then(|| {
                    let line = format!(
                        "skipping {config}: the {backend} backend cannot speak {}; \
                         run it with --tls-version 1.2",
                        self.tls_version.name()
                    );
                    (config, line)
                })
            })
            .collect()
    }

    /// Every variant in run order; the rustls configs expand to one per rustls flavour.
    pub fn variants(&self) -> Vec<Variant> {
        let skipped: Vec<ConfigName> = self.skipped_configs().into_iter().map(|(c, _)| c).collect();
        let mut out = Vec::new();
        for &config in self.configs.iter().filter(|c| !skipped.contains(c)) {
            match config {
                ConfigName::Http | ConfigName::Relay => out.push(Variant {
                    config,
                    backend: None,
                }),
                ConfigName::HttpsOpenssl
                | ConfigName::ProxyOpenssl
                | ConfigName::HttpsNativeTls
                | ConfigName::ProxyNativeTls => out.push(Variant {
                    config,
                    backend: config.fixed_backend(),
                }),
                ConfigName::HttpsRustls | ConfigName::ProxyRustls => {
                    out.extend(self.rustls_backends().into_iter().map(|b| Variant {
                        config,
                        backend: Some(b),
                    }))
                }
                ConfigName::Haproxy
                | ConfigName::HaproxyAwslc
                | ConfigName::Nginx
                | ConfigName::Hitch
                | ConfigName::Stunnel => out.push(Variant {
                    config,
                    backend: None,
                }),
            }
        }
        out
    }

    /// Every measurement in run order: iteration-major, then size, then variant, so that
    /// drift (thermal, background load) hits every config alike and neighbours in time are
    /// the configs being compared.
    ///
    /// Scenarios follow each other (`all`: sweep, handshakes, idle). The handshake scenario
    /// runs full and resumed handshakes with ECDSA and RSA certificates for every variant,
    /// plus full ECDSA handshakes over the post-quantum hybrid group for the variants that
    /// can speak it (rustls with aws-lc-rs; OpenSSL 3.0 and ring cannot).
    pub fn measurements(&self) -> Vec<Measurement> {
        let variants = self.variants();
        let mut out = Vec::new();
        let mut push = |iteration, variant, size, kind| {
            out.push(Measurement {
                index: out.len(),
                iteration,
                variant,
                size,
                kind,
                tls: self.tls_params(kind),
            })
        };
        for scenario in self.scenario.parts() {
            for iteration in 1..=self.iterations.get() {
                match scenario {
                    Scenario::Sweep => {
                        for &size in &self.sizes {
                            for &variant in &variants {
                                push(iteration, variant, size, Kind::Sweep);
                            }
                        }
                    }
                    Scenario::Handshakes => {
                        for cert in [CertType::EcdsaP256, CertType::Rsa2048] {
                            for resumed in [false, true] {
                                for &variant in variants.iter().filter(|v| v.config.is_tls()) {
                                    let kind = Kind::Handshake {
                                        cert,
                                        resumed,
                                        hybrid: false,
                                    };
                                    push(iteration, variant, HANDSHAKE_BODY_BYTES, kind);
                                }
                            }
                        }
                        let hybrid = Kind::Handshake {
                            cert: CertType::EcdsaP256,
                            resumed: false,
                            hybrid: true,
                        };
                        for &variant in variants
                            .iter()
                            .filter(|v| v.backend == Some(Backend::RustlsAwsLc))
                        {
                            push(iteration, variant, HANDSHAKE_BODY_BYTES, hybrid);
                        }
                    }
                    Scenario::Idle => {
                        // Every config in front of the echo-server, and the relay as the
                        // floor (what a connection costs before TLS).
                        for &variant in variants.iter().filter(|v| v.config != ConfigName::Http) {
                            push(iteration, variant, HANDSHAKE_BODY_BYTES, Kind::Idle);
                        }
                    }
                    Scenario::All | Scenario::Faults | Scenario::Soak | Scenario::SniScale => {}
                }
            }
        }
        out
    }

    /// Cipher suites the load generator offers: as given, else AES-128-GCM for the
    /// protocol version (and, for TLS 1.2, the certificate's signature type).
    pub fn effective_cipher_suites(&self) -> Vec<String> {
        self.cipher_suites_for(self.cert_type)
    }

    /// [`Plan::effective_cipher_suites`] for a certificate of type `cert`.
    fn cipher_suites_for(&self, cert: CertType) -> Vec<String> {
        if !self.cipher_suites.is_empty() {
            return self.cipher_suites.clone();
        }
        let suite = match (self.tls_version, cert) {
            (TlsVersion::Tls13, _) => "TLS_AES_128_GCM_SHA256",
            (TlsVersion::Tls12, CertType::EcdsaP256) => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            (TlsVersion::Tls12, CertType::Rsa2048) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        };
        vec![suite.to_owned()]
    }

    /// Key-exchange groups the load generator offers: as given, else X25519 (which every
    /// backend here speaks; rustls would otherwise pick a post-quantum hybrid OpenSSL 3.0
    /// lacks, and the comparison would not be like for like).
    pub fn effective_kx_groups(&self) -> Vec<String> {
        self.kx_groups_for(self.cert_type)
    }

    /// [`Plan::effective_kx_groups`] for a certificate of type `cert`. At TLS 1.2 an ECDSA
    /// certificate's curve must be among the client's groups too (RFC 8422 section 5.1;
    /// OpenSSL and so the openssl and native-tls backends refuse the handshake otherwise):
    /// P-256 is offered after X25519, which every server here prefers, so the key exchange
    /// stays X25519 (each row records the group negotiated).
    fn kx_groups_for(&self, cert: CertType) -> Vec<String> {
        if !self.kx_groups.is_empty() {
            return self.kx_groups.clone();
        }
        let mut groups = vec!["X25519".to_owned()];
        if (self.tls_version, cert) == (TlsVersion::Tls12, CertType::EcdsaP256) {
            groups.push("secp256r1".to_owned());
        }
        groups
    }

    /// The TLS parameters of a measurement of `kind`: the handshake scenario brings its own
    /// certificate, and its hybrid handshakes offer only the hybrid group.
    pub fn tls_params(&self, kind: Kind) -> TlsParams {
        let cert = match kind {
            Kind::Handshake { cert, .. } => cert,
            Kind::Sweep | Kind::Idle => self.cert_type,
        };
        let kx_groups = match kind {
            Kind::Handshake { hybrid: true, .. } => vec![HYBRID_GROUP.to_owned()],
            _ => self.kx_groups_for(cert),
        };
        TlsParams {
            version: self.tls_version,
            cert,
            cipher_suites: self.cipher_suites_for(cert),
            kx_groups,
        }
    }

    /// A rough duration of the measurements alone (the build comes on top).
    pub fn estimate(&self) -> Duration {
        let load = self.warmup
            + self.duration
            + PER_MEASUREMENT_OVERHEAD
            + PER_CONNECTION_OVERHEAD * self.connections.get();
        if self.target.is_some() {
            let count = self.sizes.len() * self.iterations.get() as usize;
            return load * u32::try_from(count).unwrap_or(u32::MAX);
        }
        let idle = self.idle_hold
            + PER_MEASUREMENT_OVERHEAD
            + PER_CONNECTION_OVERHEAD * self.idle_connections.get();
        self.measurements()
            .iter()
            .map(|m| if m.kind == Kind::Idle { idle } else { load })
            .sum()
    }

    /// The plan for meta.json: every resolved setting, in the words of the plan file.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "source": self.source,
            "scenario": self.scenario.name(),
            "configs": self.configs.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "variants": self.variants().iter().map(Variant::label).collect::<Vec<_>>(),
            "sizes": self.sizes,
            "iterations": self.iterations.get(),
            "duration": humantime::format_duration(self.duration).to_string(),
            "warmup": humantime::format_duration(self.warmup).to_string(),
            "connections": self.connections.get(),
            "client_threads": self.client_threads.map(NonZeroU32::get),
            "client_processes": self.client_processes.get(),
            "rate": self.rate,
            "timeout": humantime::format_duration(self.timeout).to_string(),
            "ready_timeout": humantime::format_duration(self.ready_timeout).to_string(),
            "tls_backends": self.tls_backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
            "cert_type": self.cert_type.name(),
            "tls_version": self.tls_version.name(),
            "cipher_suites": self.effective_cipher_suites(),
            "kx_groups": self.effective_kx_groups(),
            "server_cpus": self.server_cpus.as_ref().map(ToString::to_string),
            "client_cpus": self.client_cpus.as_ref().map(ToString::to_string),
            "target": self.target,
            "idle_connections": self.idle_connections.get(),
            "idle_hold": humantime::format_duration(self.idle_hold).to_string(),
            "soak_duration": humantime::format_duration(self.soak_duration).to_string(),
            "short_faults": self.short_faults,
            "fault_scenarios": self.fault_scenarios,
            "attacker_cpus": self.attacker_cpus.as_ref().map(ToString::to_string),
            "attacker_sched": self.attacker_sched.name(),
            "sni_certs": self.sni_certs.get(),
            "peers": self.peers.map(PeerSet::name),
        })
    }
}

/// The configs `--scenario sni-scale` can run: ours (`[[tls.sni]]`), HAProxy on OpenSSL
/// and on AWS-LC (a crt-list), hitch (a `pem-file` line each) and nginx (a stream-module
/// `server` block per name, which nginx has since 1.25.5). stunnel would need a service
/// section per name and is left out; the echo-server terminating TLS itself has one
/// certificate.
pub const SNI_SCALE_CONFIGS: [ConfigName; 6] = [
    ConfigName::ProxyRustls,
    ConfigName::ProxyOpenssl,
    ConfigName::Haproxy,
    ConfigName::HaproxyAwslc,
    ConfigName::Hitch,
    ConfigName::Nginx,
];

/// Start and stop of the servers around each load generator run, for the estimate.
const PER_MEASUREMENT_OVERHEAD: Duration = Duration::from_millis(800);
/// Connecting (and handshaking) each connection, for the estimate.
const PER_CONNECTION_OVERHEAD: Duration = Duration::from_micros(300);
/// The echo-server's default `--max-body` (64 MiB).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// A `--target` must be a URL loadgen understands.
pub fn check_target(url: &str) -> anyhow::Result<()> {
    let rest = ["http://", "https://", "unix://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => bail!("{url:?} is not an http://, https:// or unix:/// URL"),
    }
}

/// The key-exchange group the handshake scenario uses to show the hybrid's cost.
pub const HYBRID_GROUP: &str = "X25519MLKEM768";
/// Request body of the handshake and idle scenarios: small, the handshake is the point.
pub const HANDSHAKE_BODY_BYTES: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::presets::nz;

    #[test]
    fn quick_is_the_default_and_interleaves_configs() {
        let plan = Plan::resolve(None, Overrides::default()).unwrap();
        assert_eq!(plan.source, "preset quick");
        let m = plan.measurements();
        // Every config: ours, the relay floor and the five peers (HAProxy on OpenSSL and on
        // AWS-LC).
        let v = plan.variants().len();
        assert_eq!(v, 11);
        assert_eq!(m.len(), v * 3 * 2);
        // Iteration-major, then size, then config.
        assert_eq!(m[0].iteration, 1);
        assert_eq!(m[0].size, 10);
        assert_eq!(m[1].size, 10);
        assert_ne!(m[0].variant, m[1].variant);
        assert_eq!(m[v].size, 1000);
        assert_eq!(m[3 * v].iteration, 2);
        assert!(m.iter().enumerate().all(|(i, m)| m.index == i));
        assert!(m.iter().all(|m| m.kind == Kind::Sweep));
    }

    #[test]
    fn scenario_all_adds_handshakes_and_idle_for_tls_configs() {
        let plan = Plan {
            scenario: "all".parse().unwrap(),
            configs: vec![
                ConfigName::Http,
                ConfigName::ProxyRustls,
                ConfigName::Haproxy,
            ],
            tls_backends: vec![Backend::RustlsAwsLc, Backend::RustlsRing],
            sizes: vec![10],
            iterations: nz(1),
            ..Preset::Smoke.plan()
        };
        let m = plan.measurements();
        let count = |f: &dyn Fn(&Measurement) -> bool| m.iter().filter(|m| f(m)).count();
        assert_eq!(count(&|m| m.kind == Kind::Sweep), 4);
        // 3 TLS variants x full/resumed x ECDSA/RSA, plus the hybrid for aws-lc only.
        assert_eq!(count(&|m| m.kind.scenario() == Scenario::Handshakes), 13);
        let hybrid: Vec<_> = m
            .iter()
            .filter(|m| matches!(m.kind, Kind::Handshake { hybrid: true, .. }))
            .collect();
        assert_eq!(hybrid.len(), 1);
        assert_eq!(hybrid[0].variant.backend, Some(Backend::RustlsAwsLc));
        assert_eq!(hybrid[0].tls.kx_groups, vec![HYBRID_GROUP]);
        assert_eq!(count(&|m| m.kind == Kind::Idle), 3);
        assert!(m
            .iter()
            .filter(|m| m.kind != Kind::Sweep)
            .all(|m| m.variant.config.is_tls() && m.size == HANDSHAKE_BODY_BYTES));
        let rsa = m
            .iter()
            .find(|m| {
                matches!(
                    m.kind,
                    Kind::Handshake {
                        cert: CertType::Rsa2048,
                        ..
                    }
                )
            })
            .unwrap();
        assert_eq!(rsa.tls.cert, CertType::Rsa2048);
        let tls12 = Plan {
            tls_version: TlsVersion::Tls12,
            ..plan.clone()
        };
        assert_eq!(
            tls12.tls_params(rsa.kind).cipher_suites,
            vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        );
        assert_eq!(
            Scenario::Faults.parts(),
            Vec::<Scenario>::new(),
            "the fault suite measures nothing of the sweep kind"
        );
        let err = "everything".parse::<Scenario>().unwrap_err().to_string();
        assert!(
            err.contains("sweep, handshakes, idle, all, faults, soak"),
            "{err}"
        );
    }

    #[test]
    fn resolve_reads_a_file_and_cli_preset_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "preset = \"seed\"\niterations = 3\n").unwrap();
        let plan = Plan::resolve(Some(&path), Overrides::default()).unwrap();
        assert_eq!(plan.iterations.get(), 3);
        assert_eq!(plan.connections.get(), 3000);
        let cli = Overrides {
            preset: Some(Preset::Smoke),
            ..Overrides::default()
        };
        let plan = Plan::resolve(Some(&path), cli).unwrap();
        assert_eq!(plan.connections.get(), 10);
        assert_eq!(plan.iterations.get(), 3);
        assert!(plan.source.contains("p.toml"), "{}", plan.source);
    }

    #[test]
    fn rustls_configs_need_a_rustls_backend() {
        let cli = Overrides {
            tls_backends: Some(vec![Backend::Openssl]),
            ..Overrides::default()
        };
        let err = Plan::resolve(None, cli).unwrap_err().to_string();
        assert!(err.contains("--tls-backends"), "{err}");
        let cli = Overrides {
            tls_backends: Some(vec![Backend::Openssl]),
            configs: Some(vec![ConfigPick::One(ConfigName::ProxyOpenssl)]),
            ..Overrides::default()
        };
        let plan = Plan::resolve(None, cli).unwrap();
        assert_eq!(plan.variants().len(), 1);
    }

    #[test]
    fn native_tls_configs_run_with_tls12_and_are_skipped_with_a_line_for_tls13() {
        let configs = vec![ConfigPick::One(ConfigName::ProxyOpenssl)]
            .into_iter()
            .chain([ConfigName::HttpsNativeTls, ConfigName::ProxyNativeTls].map(ConfigPick::One))
            .collect();
        let cli = Overrides {
            configs: Some(configs),
            tls_version: Some(TlsVersion::Tls12),
            ..Overrides::default()
        };
        let plan = Plan::resolve(None, cli.clone()).unwrap();
        let backends: Vec<_> = plan.variants().iter().map(|v| v.backend).collect();
        let native = Some(Backend::NativeTls);
        assert_eq!(backends, [Some(Backend::Openssl), native, native]);
        assert!(plan.skipped_configs().is_empty());

        let plan = Plan {
            tls_version: TlsVersion::Tls13,
            ..plan
        };
        assert_eq!(plan.variants().len(), 1);
        let lines: Vec<_> = plan.skipped_configs().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("proxy-native-tls"), "{lines:?}");
        assert!(lines[1].contains("TLSv1.3"), "{lines:?}");

        // Nothing left to run is an error that says why.
        let only_native = Overrides {
            configs: Some(vec![ConfigPick::One(ConfigName::ProxyNativeTls)]),
            tls_version: Some(TlsVersion::Tls13),
            ..Overrides::default()
        };
        let err = Plan::resolve(None, only_native).unwrap_err().to_string();
        assert!(err.contains("proxy-native-tls"), "{err}");
        assert!(err.contains("--tls-version 1.2"), "{err}");
    }

    #[test]
    fn tls_defaults_follow_version_and_cert() {
        let mut plan = Preset::Smoke.plan();
        assert_eq!(plan.effective_cipher_suites(), ["TLS_AES_128_GCM_SHA256"]);
        assert_eq!(plan.effective_kx_groups(), ["X25519"]);
        plan.tls_version = TlsVersion::Tls12;
        assert_eq!(plan.effective_kx_groups(), ["X25519", "secp256r1"]);
        plan.cert_type = CertType::Rsa2048;
        assert_eq!(
            plan.effective_cipher_suites(),
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        );
        assert_eq!(plan.effective_kx_groups(), ["X25519"]);
        plan.kx_groups = vec!["secp384r1".into()];
        plan.cert_type = CertType::EcdsaP256;
        assert_eq!(plan.effective_kx_groups(), ["secp384r1"], "as given");
    }

    #[test]
    fn the_fault_suite_attacks_the_proxy_unless_configs_are_named() {
        let faults = |configs: Option<Vec<ConfigPick>>| {
            Plan::resolve(
                None,
                Overrides {
                    preset: Some(Preset::Smoke),
                    scenario: Some(Scenario::Faults),
                    configs,
                    ..Overrides::default()
                },
            )
        };
        let plan = faults(None).unwrap();
        assert_eq!(
            plan.configs,
            [ConfigName::ProxyRustls],
            "the smoke list is the sweep's"
        );
        let picks = [
            ConfigName::ProxyRustls,
            ConfigName::Haproxy,
            ConfigName::Hitch,
        ]
        .map(ConfigPick::One)
        .to_vec();
        let plan = faults(Some(picks)).unwrap();
        assert_eq!(
            plan.configs,
            [
                ConfigName::ProxyRustls,
                ConfigName::Haproxy,
                ConfigName::Hitch
            ]
        );
        let err = faults(Some(vec![ConfigPick::One(ConfigName::Stunnel)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--configs / configs: the fault suite attacks proxy-rustls, haproxy, \
             haproxy-awslc, nginx, hitch, not stunnel"
        );
        let sweep = Plan::resolve(None, Overrides::default()).unwrap();
        assert!(sweep.configs.len() > 1, "the sweep keeps its preset's list");
    }

    #[test]
    fn client_processes_split_the_sweep_and_handshakes_only() {
        let with = |n: u32, scenario: Scenario, connections: u32| {
            Plan::resolve(
                None,
                Overrides {
                    preset: Some(Preset::Smoke),
                    client_processes: NonZeroU32::new(n),
                    scenario: Some(scenario),
                    connections: NonZeroU32::new(connections),
                    ..Overrides::default()
                },
            )
        };
        let plan = with(2, Scenario::Sweep, 10).unwrap();
        assert_eq!(plan.client_processes.get(), 2);
        assert_eq!(plan.to_json()["client_processes"], 2);
        assert!(with(2, Scenario::Handshakes, 10).is_ok());
        assert_eq!(
            Preset::Quick.plan().client_processes.get(),
            1,
            "one process unless asked"
        );
        for scenario in [
            Scenario::Idle,
            Scenario::All,
            Scenario::Faults,
            Scenario::Soak,
        ] {
            let err = with(2, scenario, 10).unwrap_err().to_string();
            assert!(
                err.starts_with("--client-processes / client_processes 2 applies to the sweep")
                    && err.contains(scenario.name()),
                "{err}"
            );
            assert!(with(1, scenario, 10).is_ok(), "{scenario:?}");
        }
        let err = with(4, Scenario::Sweep, 3).unwrap_err().to_string();
        assert!(
            err.contains("each process needs at least one of the 3"),
            "{err}"
        );
    }

    #[test]
    fn fault_scenarios_belong_to_the_fault_suite() {
        let with = |scenario: Scenario| {
            Plan::resolve(
                None,
                Overrides {
                    scenario: Some(scenario),
                    fault_scenarios: Some(vec![1]),
                    ..Overrides::default()
                },
            )
        };
        let plan = with(Scenario::Faults).unwrap();
        assert_eq!(plan.to_json()["fault_scenarios"], serde_json::json!([1]));
        for scenario in [Scenario::Soak, Scenario::Sweep] {
            let err = with(scenario).unwrap_err().to_string();
            assert!(err.starts_with("--fault-scenarios"), "{err}");
            assert!(err.contains(scenario.name()), "{err}");
        }
    }

    #[test]
    fn sni_scale_takes_its_certificate_count_and_only_the_terminators_it_can_load() {
        let with = |configs: &[ConfigName], certs: Option<u32>| {
            Plan::resolve(
                None,
                Overrides {
                    preset: Some(Preset::Smoke),
                    scenario: Some(Scenario::SniScale),
                    configs: Some(configs.iter().map(|&c| ConfigPick::One(c)).collect()),
                    sni_certs: certs.and_then(NonZeroU32::new),
                    ..Overrides::default()
                },
            )
        };
        let plan = with(&SNI_SCALE_CONFIGS, Some(1234)).unwrap();
        assert_eq!(plan.sni_certs.get(), 1234);
        assert_eq!(plan.to_json()["sni_certs"], 1234);
        assert!(plan.measurements().is_empty(), "it runs its own steps");
        assert_eq!(Scenario::SniScale.csv_file(), Some("sni-scale.csv"));
        assert_eq!(
            with(&[ConfigName::Hitch], None).unwrap().sni_certs.get(),
            200
        );
        assert_eq!(Preset::Quick.plan().sni_certs.get(), 10_000);
        let plan = with(&[ConfigName::ProxyRustls, ConfigName::Stunnel], None).unwrap();
        assert_eq!(plan.variants().len(), 1);
        let lines: Vec<_> = plan.skipped_configs().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("skipping stunnel: scenario sni-scale runs proxy-rustls"),
            "{lines:?}"
        );
        let err = with(&[ConfigName::Http], None).unwrap_err().to_string();
        assert!(err.contains("nothing left to run: skipping http"), "{err}");
        let err = Overrides::parse("sni_certs = 0").unwrap_err();
        assert!(format!("{err:#}").contains("sni_certs"), "{err:#}");
        assert_eq!(
            Overrides::parse("sni_certs = 500").unwrap().sni_certs,
            NonZeroU32::new(500)
        );
    }

    #[test]
    fn targets_must_be_urls() {
        assert!(check_target("https://10.0.0.2:8443/").is_ok());
        assert!(check_target("unix:///tmp/x.sock").is_ok());
        assert!(check_target("10.0.0.2:8443").is_err());
        assert!(check_target("https://").is_err());
    }
}
