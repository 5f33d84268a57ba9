//! What a run measures: a preset (`smoke`, `quick`, `seed`), optionally a TOML plan file on
//! top, then command-line overrides on top of that. Everything is parsed into typed values
//! here, so a typo in a config name, a duration or a CPU list fails before anything starts.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use proxy::tls::selfsigned::KeyKind;
use proxy::tls::{Backend, TlsVersion};
use serde::Deserialize;
use serde_json::json;

use crate::cpus::CpuList;

/// Built-in plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Seconds in total: every config, two sizes, one short iteration (CI).
    Smoke,
    /// The default: a few minutes on two cores.
    Quick,
    /// The original experiment: 30 s runs, 5 iterations, 3000 connections, one client thread.
    Seed,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Quick => "quick",
            Preset::Seed => "seed",
        }
    }

    pub const ALL: [Preset; 3] = [Preset::Smoke, Preset::Quick, Preset::Seed];

    /// The plan this preset stands for, with every default filled in.
    pub fn plan(self) -> Plan {
        let base = Plan {
            source: format!("preset {}", self.name()),
            scenario: Scenario::Sweep,
            configs: ConfigName::ALL.to_vec(),
            sizes: vec![10, 1000, 10_000],
            iterations: nz(2),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: nz(50),
            client_threads: None,
            rate: None,
            timeout: Duration::from_secs(5),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            tls_backends: vec![Backend::RustlsAwsLc],
            cert_type: CertType::EcdsaP256,
            tls_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            kx_groups: Vec::new(),
            server_cpus: None,
            client_cpus: None,
            target: None,
            idle_connections: nz(10_000),
            idle_hold: Duration::from_secs(3),
            soak_duration: Duration::from_secs(30 * 60),
            short_faults: false,
        };
        match self {
            Preset::Quick => base,
            Preset::Smoke => Plan {
                // Ours and one peer (HAProxy, installed by .ci/run), so CI runs a peer.
                configs: ConfigName::OURS
                    .into_iter()
                    .chain([ConfigName::Haproxy])
                    .collect(),
                idle_connections: nz(200),
                idle_hold: Duration::from_secs(1),
                short_faults: true,
                sizes: vec![10, 1000],
                iterations: nz(1),
                duration: Duration::from_secs(1),
                warmup: Duration::from_millis(500),
                connections: nz(10),
                ..base
            },
            Preset::Seed => Plan {
                sizes: vec![10, 100, 1000, 10_000],
                iterations: nz(5),
                duration: Duration::from_secs(30),
                warmup: Duration::from_secs(2),
                connections: nz(3000),
                client_threads: Some(nz(1)),
                ..base
            },
        }
    }
}

impl FromStr for Preset {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .with_context(|| format!("unknown preset {s:?}; presets: smoke, quick, seed"))
    }
}

/// What kind of measurement a run makes. Each writes its own tidy CSV in the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Keep-alive requests at each body size (`results.csv`).
    Sweep,
    /// A new connection and a full or resumed TLS handshake per request, ECDSA and RSA
    /// certificates (`handshakes.csv`).
    Handshakes,
    /// Memory per idle TLS connection: many connections held open (`idle.csv`).
    Idle,
    /// sweep, handshakes and idle, in that order.
    All,
    /// The fault suite: attacks, broken backends and signals under load (`faults.csv`).
    Faults,
    /// The long run of the fault suite (scenario 9): RSS and fds sampled for
    /// `--soak-duration` under moderate load.
    Soak,
}

impl Scenario {
    pub const NAMES: &'static str = "sweep, handshakes, idle, all, faults, soak";

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Sweep => "sweep",
            Scenario::Handshakes => "handshakes",
            Scenario::Idle => "idle",
            Scenario::All => "all",
            Scenario::Faults => "faults",
            Scenario::Soak => "soak",
        }
    }

    /// The measuring scenarios this one runs (none for the fault suite).
    pub fn parts(self) -> Vec<Scenario> {
        match self {
            Scenario::All => vec![Scenario::Sweep, Scenario::Handshakes, Scenario::Idle],
            Scenario::Faults | Scenario::Soak => Vec::new(),
            one => vec![one],
        }
    }

    /// Runs the fault suite rather than measurements.
    pub fn is_fault_suite(self) -> bool {
        matches!(self, Scenario::Faults | Scenario::Soak)
    }
}

impl FromStr for Scenario {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        <Scenario as clap::ValueEnum>::from_str(s, false)
            .map_err(|_| anyhow::anyhow!("unknown scenario {s:?}; scenarios: {}", Scenario::NAMES))
    }
}

/// What one measurement does besides its config and body size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keep-alive requests (the sweep).
    Sweep,
    /// A new connection per request.
    Handshake {
        cert: CertType,
        /// Session tickets: every connection after the first of each client connection
        /// slot resumes.
        resumed: bool,
        /// Offer the post-quantum hybrid X25519MLKEM768 instead of X25519.
        hybrid: bool,
    },
    /// Hold `idle_connections` connections open, one request each.
    Idle,
}

impl Kind {
    pub fn scenario(self) -> Scenario {
        match self {
            Kind::Sweep => Scenario::Sweep,
            Kind::Handshake { .. } => Scenario::Handshakes,
            Kind::Idle => Scenario::Idle,
        }
    }

    /// The CSV `handshake` column: `keep-alive`, `full`, `resumed` (`idle` rows have their
    /// own file).
    pub fn handshake_name(self) -> &'static str {
        match self {
            Kind::Sweep | Kind::Idle => "keep-alive",
            Kind::Handshake { resumed: false, .. } => "full",
            Kind::Handshake { resumed: true, .. } => "resumed",
        }
    }
}

/// The key-exchange group the handshake scenario uses to show the hybrid's cost.
pub const HYBRID_GROUP: &str = "X25519MLKEM768";
/// Request body of the handshake and idle scenarios: small, the handshake is the point.
pub const HANDSHAKE_BODY_BYTES: u64 = 10;

/// A server configuration: the stable names of the CSV `config` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigName {
    /// loadgen -> echo-server over TCP, no TLS.
    Http,
    /// echo-server terminates TLS itself with rustls.
    HttpsRustls,
    /// echo-server terminates TLS itself with OpenSSL.
    HttpsOpenssl,
    /// our proxy terminates TLS with rustls -> echo-server on a Unix socket.
    ProxyRustls,
    /// our proxy terminates TLS with OpenSSL -> echo-server on a Unix socket.
    ProxyOpenssl,
    /// HAProxy terminates TLS -> the same Unix-socket echo-server.
    Haproxy,
    /// nginx (stream module with ssl) terminates TLS -> the same echo-server.
    Nginx,
    /// hitch terminates TLS -> the same echo-server.
    Hitch,
    /// stunnel terminates TLS -> the same echo-server.
    Stunnel,
}

impl ConfigName {
    /// Every config, ours first; `all` on the command line (peers that are not installed
    /// are skipped when the run starts).
    pub const ALL: [ConfigName; 9] = [
        ConfigName::Http,
        ConfigName::HttpsRustls,
        ConfigName::HttpsOpenssl,
        ConfigName::ProxyRustls,
        ConfigName::ProxyOpenssl,
        ConfigName::Haproxy,
        ConfigName::Nginx,
        ConfigName::Hitch,
        ConfigName::Stunnel,
    ];

    /// Ours: the configs that need no third-party program.
    pub const OURS: [ConfigName; 5] = [
        ConfigName::Http,
        ConfigName::HttpsRustls,
        ConfigName::HttpsOpenssl,
        ConfigName::ProxyRustls,
        ConfigName::ProxyOpenssl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConfigName::Http => "http",
            ConfigName::HttpsRustls => "https-rustls",
            ConfigName::HttpsOpenssl => "https-openssl",
            ConfigName::ProxyRustls => "proxy-rustls",
            ConfigName::ProxyOpenssl => "proxy-openssl",
            ConfigName::Haproxy => "haproxy",
            ConfigName::Nginx => "nginx",
            ConfigName::Hitch => "hitch",
            ConfigName::Stunnel => "stunnel",
        }
    }

    /// A third-party TLS terminator (see `peers`).
    pub fn is_peer(self) -> bool {
        !ConfigName::OURS.contains(&self)
    }

    /// Runs once per rustls flavour in `tls_backends`.
    pub fn is_rustls(self) -> bool {
        matches!(self, ConfigName::HttpsRustls | ConfigName::ProxyRustls)
    }

    pub fn is_tls(self) -> bool {
        self != ConfigName::Http
    }

    /// Parses a comma-separated list; `all` means every implemented config.
    pub fn parse_list(items: &[String]) -> anyhow::Result<Vec<ConfigName>> {
        let mut out = Vec::new();
        for item in items.iter().map(|s| s.trim()) {
            if item == "all" {
                out.extend(ConfigName::ALL);
            } else {
                out.push(item.parse()?);
            }
        }
        if out.is_empty() {
            bail!("no config given; configs: all, {}", known_configs());
        }
        Ok(dedup(out))
    }
}

impl FromStr for ConfigName {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if let Some(config) = ConfigName::ALL.into_iter().find(|c| c.name() == s) {
            return Ok(config);
        }
        bail!("unknown config {s:?}; configs: all, {}", known_configs())
    }
}

impl fmt::Display for ConfigName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn known_configs() -> String {
    ConfigName::ALL.map(ConfigName::name).join(", ")
}

/// Key type of the run's one generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CertType {
    EcdsaP256,
    Rsa2048,
}

impl CertType {
    pub fn name(self) -> &'static str {
        self.key_kind().name()
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            CertType::EcdsaP256 => KeyKind::EcdsaP256,
            CertType::Rsa2048 => KeyKind::Rsa2048,
        }
    }
}

impl FromStr for CertType {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "ecdsa-p256" => Ok(CertType::EcdsaP256),
            "rsa-2048" => Ok(CertType::Rsa2048),
            _ => bail!("unknown certificate type {s:?}; types: ecdsa-p256, rsa-2048"),
        }
    }
}

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
    /// Load generator threads; `None`: one per client CPU.
    pub client_threads: Option<NonZeroU32>,
    /// Requests per second (open loop); `None`: closed loop, as fast as answers come.
    pub rate: Option<f64>,
    /// Per-request timeout of the load generator.
    pub timeout: Duration,
    /// How long a server may take to print its `listening on` line.
    pub ready_timeout: Duration,
    /// TLS backends; the rustls configs run once per rustls flavour listed here.
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

    /// The CSV `tls_backend` column: the TLS library (peers use the system OpenSSL).
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Some(backend) => backend.name(),
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
}

impl Measurement {
    /// The certificate this measurement's servers present.
    pub fn cert_type(&self, plan: &Plan) -> CertType {
        match self.kind {
            Kind::Handshake { cert, .. } => cert,
            Kind::Sweep | Kind::Idle => plan.cert_type,
        }
    }
}

impl Plan {
    /// The plan after `file` (if any) and then `cli` are laid over the base preset. The base
    /// is `cli.preset`, else the file's `preset` key, else `quick`.
    pub fn resolve(file: Option<&Path>, cli: Overrides) -> anyhow::Result<Plan> {
        let file_overrides = match file {
            Some(path) => Some(PlanFile::load(path)?),
            None => None,
        };
        let preset = cli
            .preset
            .or(file_overrides.as_ref().and_then(|f| f.preset))
            .unwrap_or(Preset::Quick);
        let mut plan = preset.plan();
        if let Some(f) = file_overrides {
            plan.source = format!("{} + file {}", plan.source, path_text(file));
            f.apply(&mut plan);
        }
        if cli.any_set() {
            plan.source.push_str(" + command-line overrides");
        }
        cli.apply(&mut plan);
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
        }
        if let Some(target) = &self.target {
            crate::loadgen::check_target(target).context("--target / target")?;
        }
        Ok(())
    }

    fn rustls_backends(&self) -> Vec<Backend> {
        self.tls_backends
            .iter()
            .copied()
            .filter(|b| *b != Backend::Openssl)
            .collect()
    }

    /// Every variant in run order; the rustls configs expand to one per rustls flavour.
    pub fn variants(&self) -> Vec<Variant> {
        let mut out = Vec::new();
        for &config in &self.configs {
            match config {
                ConfigName::Http => out.push(Variant {
                    config,
                    backend: None,
                }),
                ConfigName::HttpsOpenssl | ConfigName::ProxyOpenssl => out.push(Variant {
                    config,
                    backend: Some(Backend::Openssl),
                }),
                ConfigName::HttpsRustls | ConfigName::ProxyRustls => {
                    out.extend(self.rustls_backends().into_iter().map(|b| Variant {
                        config,
                        backend: Some(b),
                    }))
                }
                ConfigName::Haproxy
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
                        for &variant in variants.iter().filter(|v| v.config.is_tls()) {
                            push(iteration, variant, HANDSHAKE_BODY_BYTES, Kind::Idle);
                        }
                    }
                    Scenario::All | Scenario::Faults | Scenario::Soak => {}
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
    pub fn cipher_suites_for(&self, cert: CertType) -> Vec<String> {
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
        if self.kx_groups.is_empty() {
            vec!["X25519".to_owned()]
        } else {
            self.kx_groups.clone()
        }
    }

    /// The groups offered in a measurement of `kind`: the hybrid handshakes offer only
    /// the hybrid.
    pub fn kx_groups_for(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Handshake { hybrid: true, .. } => vec![HYBRID_GROUP.to_owned()],
            _ => self.effective_kx_groups(),
        }
    }

    /// The cipher suites offered in measurement `m` (TLS 1.2 suites follow the certificate).
    pub fn suites_for(&self, m: &Measurement) -> Vec<String> {
        self.cipher_suites_for(m.cert_type(self))
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
        })
    }
}

/// Settings laid over a preset: from the command line or from a plan file. `None` keeps
/// what is below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub preset: Option<Preset>,
    pub scenario: Option<Scenario>,
    pub configs: Option<Vec<ConfigName>>,
    pub sizes: Option<Vec<u64>>,
    pub iterations: Option<NonZeroU32>,
    pub duration: Option<Duration>,
    pub warmup: Option<Duration>,
    pub connections: Option<NonZeroU32>,
    pub client_threads: Option<NonZeroU32>,
    pub rate: Option<f64>,
    pub timeout: Option<Duration>,
    pub ready_timeout: Option<Duration>,
    pub tls_backends: Option<Vec<Backend>>,
    pub cert_type: Option<CertType>,
    pub tls_version: Option<TlsVersion>,
    pub cipher_suites: Option<Vec<String>>,
    pub kx_groups: Option<Vec<String>>,
    pub server_cpus: Option<CpuList>,
    pub client_cpus: Option<CpuList>,
    pub target: Option<String>,
    pub idle_connections: Option<NonZeroU32>,
    pub idle_hold: Option<Duration>,
    pub soak_duration: Option<Duration>,
}

impl Overrides {
    fn any_set(&self) -> bool {
        let Overrides { preset, .. } = self;
        let unset = Overrides {
            preset: *preset,
            ..Overrides::default()
        };
        *self != unset
    }

    fn apply(self, plan: &mut Plan) {
        macro_rules! lay {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { plan.$field = v; } )* };
        }
        lay!(
            scenario,
            configs,
            iterations,
            duration,
            warmup,
            connections,
            timeout,
            ready_timeout,
            cert_type,
            tls_version,
            cipher_suites,
            kx_groups,
            idle_connections,
            idle_hold,
            soak_duration
        );
        if let Some(sizes) = self.sizes {
            plan.sizes = dedup(sizes);
        }
        if let Some(backends) = self.tls_backends {
            plan.tls_backends = dedup(backends);
        }
        if self.client_threads.is_some() {
            plan.client_threads = self.client_threads;
        }
        if self.rate.is_some() {
            plan.rate = self.rate;
        }
        if self.server_cpus.is_some() {
            plan.server_cpus = self.server_cpus;
        }
        if self.client_cpus.is_some() {
            plan.client_cpus = self.client_cpus;
        }
        if self.target.is_some() {
            plan.target = self.target;
        }
    }
}

/// The TOML plan file, as written (see `harness/plans/example.toml`). Unknown keys are an
/// error, so a misspelt key never silently falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlanFile {
    preset: Option<String>,
    scenario: Option<String>,
    configs: Option<Vec<String>>,
    sizes: Option<Vec<u64>>,
    iterations: Option<u32>,
    duration: Option<String>,
    warmup: Option<String>,
    connections: Option<u32>,
    client_threads: Option<u32>,
    rate: Option<f64>,
    timeout: Option<String>,
    ready_timeout: Option<String>,
    tls_backends: Option<Vec<String>>,
    cert_type: Option<String>,
    tls_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    kx_groups: Option<Vec<String>>,
    server_cpus: Option<String>,
    client_cpus: Option<String>,
    target: Option<String>,
    idle_connections: Option<u32>,
    idle_hold: Option<String>,
    soak_duration: Option<String>,
}

/// A parsed plan file.
struct PlanFile;

impl PlanFile {
    fn load(path: &Path) -> anyhow::Result<Overrides> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading plan file {}", path.display()))?;
        PlanFile::parse(&text).with_context(|| format!("plan file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Overrides> {
        let raw: RawPlanFile = toml::from_str(text)?;
        let key = |k: &str| format!("key `{k}`");
        let nonzero =
            |v: u32, k: &str| NonZeroU32::new(v).with_context(|| key(k) + ": must be at least 1");
        Ok(Overrides {
            preset: raw
                .preset
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| key("preset"))?,
            scenario: raw
                .scenario
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| key("scenario"))?,
            configs: raw
                .configs
                .as_deref()
                .map(ConfigName::parse_list)
                .transpose()
                .with_context(|| key("configs"))?,
            sizes: raw.sizes,
            iterations: raw
                .iterations
                .map(|v| nonzero(v, "iterations"))
                .transpose()?,
            duration: raw
                .duration
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("duration"))?,
            warmup: raw
                .warmup
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("warmup"))?,
            connections: raw
                .connections
                .map(|v| nonzero(v, "connections"))
                .transpose()?,
            client_threads: raw
                .client_threads
                .map(|v| nonzero(v, "client_threads"))
                .transpose()?,
            rate: raw.rate,
            timeout: raw
                .timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("timeout"))?,
            ready_timeout: raw
                .ready_timeout
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("ready_timeout"))?,
            tls_backends: raw
                .tls_backends
                .as_deref()
                .map(parse_backends)
                .transpose()
                .with_context(|| key("tls_backends"))?,
            cert_type: raw
                .cert_type
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| key("cert_type"))?,
            tls_version: raw
                .tls_version
                .as_deref()
                .map(parse_tls_version)
                .transpose()
                .with_context(|| key("tls_version"))?,
            cipher_suites: raw.cipher_suites,
            kx_groups: raw.kx_groups,
            server_cpus: raw
                .server_cpus
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| key("server_cpus"))?,
            client_cpus: raw
                .client_cpus
                .as_deref()
                .map(str::parse)
                .transpose()
                .with_context(|| key("client_cpus"))?,
            target: raw.target,
            idle_connections: raw
                .idle_connections
                .map(|v| nonzero(v, "idle_connections"))
                .transpose()?,
            idle_hold: raw
                .idle_hold
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("idle_hold"))?,
            soak_duration: raw
                .soak_duration
                .as_deref()
                .map(parse_duration)
                .transpose()
                .with_context(|| key("soak_duration"))?,
        })
    }
}

/// `5s`, `500ms`, `1m 30s` (humantime), or plain seconds such as `0.5`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .with_context(|| format!("{s:?} is not a duration such as 5s or 500ms"));
    }
    humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is not a duration such as 5s or 500ms"))
}

/// `rustls-aws-lc,rustls-ring,openssl`.
pub fn parse_backends(items: &[String]) -> anyhow::Result<Vec<Backend>> {
    let backends = items
        .iter()
        .map(|s| parse_backend(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if backends.is_empty() {
        bail!("no TLS backend given; backends: rustls-aws-lc, rustls-ring, openssl");
    }
    Ok(backends)
}

pub fn parse_backend(s: &str) -> anyhow::Result<Backend> {
    Backend::ALL
        .into_iter()
        .find(|b| b.name() == s)
        .with_context(|| {
            format!("unknown TLS backend {s:?}; backends: rustls-aws-lc, rustls-ring, openssl")
        })
}

pub fn parse_tls_version(s: &str) -> anyhow::Result<TlsVersion> {
    match s {
        "1.2" | "TLSv1.2" => Ok(TlsVersion::Tls12),
        "1.3" | "TLSv1.3" => Ok(TlsVersion::Tls13),
        _ => bail!("unknown TLS version {s:?}; versions: 1.2, 1.3"),
    }
}

fn dedup<T: PartialEq + Clone>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn path_text(path: Option<&Path>) -> String {
    path.map(Path::display)
        .map_or_else(String::new, |p| p.to_string())
}

/// Chooses between a preset name and a plan file for `--plan VALUE`: an existing file or
/// anything that looks like a path is a file; otherwise it must be a preset name.
pub fn preset_or_file(value: &str) -> anyhow::Result<(Option<Preset>, Option<PathBuf>)> {
    let path = Path::new(value);
    if path.exists() || value.contains('/') || value.ends_with(".toml") {
        return Ok((None, Some(path.to_owned())));
    }
    match value.parse::<Preset>() {
        Ok(preset) => Ok((Some(preset), None)),
        Err(_) => bail!("--plan {value:?}: no such file, and not a preset (smoke, quick, seed)"),
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("preset constants are above zero")
}

/// A server that has not printed `listening on` by then is reported as failed. Generous:
/// on a busy two-core machine a cold start of a TLS server can take a second or more.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Start and stop of the servers around each load generator run, for the estimate.
const PER_MEASUREMENT_OVERHEAD: Duration = Duration::from_millis(800);
/// Connecting (and handshaking) each connection, for the estimate.
const PER_CONNECTION_OVERHEAD: Duration = Duration::from_micros(300);
/// The echo-server's default `--max-body` (64 MiB).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_is_the_default_and_interleaves_configs() {
        let plan = Plan::resolve(None, Overrides::default()).unwrap();
        assert_eq!(plan.source, "preset quick");
        let m = plan.measurements();
        // Every config, ours and the four peers.
        let v = plan.variants().len();
        assert_eq!(v, 9);
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
        assert_eq!(plan.kx_groups_for(hybrid[0].kind), vec![HYBRID_GROUP]);
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
        assert_eq!(rsa.cert_type(&plan), CertType::Rsa2048);
        let tls12 = Plan {
            tls_version: TlsVersion::Tls12,
            ..plan.clone()
        };
        assert_eq!(
            tls12.suites_for(rsa),
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
    fn presets_match_their_promises() {
        let smoke = Preset::Smoke.plan();
        // Ours and HAProxy, two sizes.
        assert_eq!(smoke.measurements().len(), 12);
        assert_eq!(smoke.duration, Duration::from_secs(1));
        let seed = Preset::Seed.plan();
        assert_eq!(seed.sizes, vec![10, 100, 1000, 10_000]);
        assert_eq!(seed.connections.get(), 3000);
        assert_eq!(seed.iterations.get(), 5);
        assert_eq!(seed.duration, Duration::from_secs(30));
        assert_eq!(seed.client_threads.map(NonZeroU32::get), Some(1));
        assert!(Preset::Quick.plan().estimate() < Duration::from_secs(8 * 60));
        assert!(smoke.estimate() < Duration::from_secs(40));
    }

    #[test]
    fn cli_overrides_file_overrides_preset() {
        let file = PlanFile::parse(
            r#"
            preset = "smoke"
            sizes = [100, 200]
            duration = "2s"
            connections = 7
            configs = ["http", "proxy-rustls"]
            "#,
        )
        .unwrap();
        assert_eq!(file.preset, Some(Preset::Smoke));
        let mut plan = Preset::Smoke.plan();
        file.apply(&mut plan);
        let cli = Overrides {
            duration: Some(Duration::from_millis(1500)),
            tls_backends: Some(vec![Backend::RustlsRing, Backend::RustlsAwsLc]),
            ..Overrides::default()
        };
        cli.apply(&mut plan);
        assert_eq!(plan.sizes, vec![100, 200]);
        assert_eq!(plan.connections.get(), 7);
        assert_eq!(plan.duration, Duration::from_millis(1500));
        assert_eq!(plan.warmup, Duration::from_millis(500), "from the preset");
        let labels: Vec<String> = plan.variants().iter().map(Variant::label).collect();
        assert_eq!(labels, ["http", "proxy-rustls-ring", "proxy-rustls-aws-lc"]);
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
    fn unknown_key_and_bad_values_name_the_key() {
        let err = format!("{:#}", PlanFile::parse("duratoin = \"5s\"").unwrap_err());
        assert!(err.contains("duratoin"), "{err}");
        let err = format!("{:#}", PlanFile::parse("duration = \"soon\"").unwrap_err());
        assert!(err.contains("key `duration`"), "{err}");
        let err = format!("{:#}", PlanFile::parse("iterations = 0").unwrap_err());
        assert!(err.contains("key `iterations`"), "{err}");
        let err = format!(
            "{:#}",
            PlanFile::parse("server_cpus = \"1-0\"").unwrap_err()
        );
        assert!(err.contains("key `server_cpus`"), "{err}");
    }

    #[test]
    fn bad_config_names_are_errors_naming_them() {
        let err = ConfigName::parse_list(&["http".into(), "htp".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown config \"htp\""), "{err}");
        assert!(err.contains("proxy-openssl"), "{err}");
        assert_eq!(
            "haproxy".parse::<ConfigName>().unwrap(),
            ConfigName::Haproxy
        );
        assert!("haproxy".parse::<ConfigName>().unwrap().is_peer());
        let err = format!(
            "{:#}",
            PlanFile::parse("configs = [\"ngnix\"]").unwrap_err()
        );
        assert!(
            err.contains("key `configs`") && err.contains("ngnix"),
            "{err}"
        );
        assert_eq!(
            ConfigName::parse_list(&["all".into(), "http".into()]).unwrap(),
            ConfigName::ALL.to_vec()
        );
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
            configs: Some(vec![ConfigName::ProxyOpenssl]),
            ..Overrides::default()
        };
        let plan = Plan::resolve(None, cli).unwrap();
        assert_eq!(plan.variants().len(), 1);
    }

    #[test]
    fn tls_defaults_follow_version_and_cert() {
        let mut plan = Preset::Smoke.plan();
        assert_eq!(plan.effective_cipher_suites(), ["TLS_AES_128_GCM_SHA256"]);
        assert_eq!(plan.effective_kx_groups(), ["X25519"]);
        plan.tls_version = TlsVersion::Tls12;
        plan.cert_type = CertType::Rsa2048;
        assert_eq!(
            plan.effective_cipher_suites(),
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        );
    }

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn plan_flag_tells_presets_from_files() {
        assert_eq!(
            preset_or_file("smoke").unwrap(),
            (Some(Preset::Smoke), None)
        );
        let (_, file) = preset_or_file("plans/x.toml").unwrap();
        assert_eq!(file, Some(PathBuf::from("plans/x.toml")));
        let err = preset_or_file("fast").unwrap_err().to_string();
        assert!(err.contains("not a preset"), "{err}");
    }

    #[test]
    fn example_plan_file_parses() {
        let text = include_str!("../plans/example.toml");
        let overrides = PlanFile::parse(text).unwrap();
        let mut plan = Preset::Quick.plan();
        overrides.apply(&mut plan);
        plan.validate().unwrap();
    }
}
