//! The names a plan is written in: scenarios, kinds of measurement, configs and certificate
//! types, each with the spelling that flags, plan files, CSV columns and meta.json share.

use std::fmt;
use std::str::FromStr;

use anyhow::bail;
use proxy::tls::selfsigned::KeyKind;
use proxy::tls::Backend;

use super::overrides::dedup;

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
    /// Certificates at scale: `--sni-certs` SNI certificates in one listener; start-up,
    /// memory, handshakes for the first and last name, reloads under load (`sni-scale.csv`).
    SniScale,
}

impl Scenario {
    pub const NAMES: &'static str = "sweep, handshakes, idle, all, faults, soak, sni-scale";

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Sweep => "sweep",
            Scenario::Handshakes => "handshakes",
            Scenario::Idle => "idle",
            Scenario::All => "all",
            Scenario::Faults => "faults",
            Scenario::Soak => "soak",
            Scenario::SniScale => "sni-scale",
        }
    }

    /// The CSV file the scenario writes in the run folder; `None` for `all`, whose parts
    /// each write their own.
    pub const fn csv_file(self) -> Option<&'static str> {
        match self {
            Scenario::Sweep => Some("results.csv"),
            Scenario::Handshakes => Some("handshakes.csv"),
            Scenario::Idle => Some("idle.csv"),
            Scenario::Faults | Scenario::Soak => Some(FAULTS_CSV),
            Scenario::SniScale => Some(SNI_SCALE_CSV),
            Scenario::All => None,
        }
    }

    /// The measuring scenarios this one runs (none for the fault suite and the
    /// certificate-scale run, which run their own steps).
    pub fn parts(self) -> Vec<Scenario> {
        match self {
            Scenario::All => vec![Scenario::Sweep, Scenario::Handshakes, Scenario::Idle],
            Scenario::Faults | Scenario::Soak | Scenario::SniScale => Vec::new(),
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

/// A server configuration: the stable names of the CSV `config` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigName {
    /// loadgen -> echo-server over TCP, no TLS.
    Http,
    /// loadgen -> our proxy's plain (no-TLS) listener -> the Unix-socket echo-server: the
    /// same path as a terminator without the TLS, the floor its TLS tax is measured from.
    Relay,
    /// echo-server terminates TLS itself with rustls.
    HttpsRustls,
    /// echo-server terminates TLS itself with OpenSSL.
    HttpsOpenssl,
    /// echo-server terminates TLS itself with native-tls (on the same OpenSSL; TLS 1.2 only).
    HttpsNativeTls,
    /// our proxy terminates TLS with rustls -> echo-server on a Unix socket.
    ProxyRustls,
    /// our proxy terminates TLS with OpenSSL -> echo-server on a Unix socket.
    ProxyOpenssl,
    /// our proxy terminates TLS with native-tls (the original experiment's stack; TLS 1.2
    /// only) -> echo-server on a Unix socket.
    ProxyNativeTls,
    /// HAProxy terminates TLS -> the same Unix-socket echo-server.
    Haproxy,
    /// HAProxy built on AWS-LC (as HAProxy's own images ship it; `peers install` builds it).
    HaproxyAwslc,
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
    pub const ALL: [ConfigName; 13] = [
        ConfigName::Http,
        ConfigName::Relay,
        ConfigName::HttpsRustls,
        ConfigName::HttpsOpenssl,
        ConfigName::HttpsNativeTls,
        ConfigName::ProxyRustls,
        ConfigName::ProxyOpenssl,
        ConfigName::ProxyNativeTls,
        ConfigName::Haproxy,
        ConfigName::HaproxyAwslc,
        ConfigName::Nginx,
        ConfigName::Hitch,
        ConfigName::Stunnel,
    ];

    /// Ours: the configs that need no third-party program.
    pub const OURS: [ConfigName; 8] = [
        ConfigName::Http,
        ConfigName::Relay,
        ConfigName::HttpsRustls,
        ConfigName::HttpsOpenssl,
        ConfigName::HttpsNativeTls,
        ConfigName::ProxyRustls,
        ConfigName::ProxyOpenssl,
        ConfigName::ProxyNativeTls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConfigName::Http => "http",
            ConfigName::Relay => "relay",
            ConfigName::HttpsRustls => "https-rustls",
            ConfigName::HttpsOpenssl => "https-openssl",
            ConfigName::HttpsNativeTls => "https-native-tls",
            ConfigName::ProxyRustls => "proxy-rustls",
            ConfigName::ProxyOpenssl => "proxy-openssl",
            ConfigName::ProxyNativeTls => "proxy-native-tls",
            ConfigName::Haproxy => "haproxy",
            ConfigName::HaproxyAwslc => "haproxy-awslc",
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
        !matches!(self, ConfigName::Http | ConfigName::Relay)
    }

    /// The one backend an `https-*` or `proxy-*` config runs, for those not run once per
    /// rustls flavour.
    pub fn fixed_backend(self) -> Option<Backend> {
        match self {
            ConfigName::HttpsOpenssl | ConfigName::ProxyOpenssl => Some(Backend::Openssl),
            ConfigName::HttpsNativeTls | ConfigName::ProxyNativeTls => Some(Backend::NativeTls),
            _ => None,
        }
    }

    /// The echo-server terminates TLS itself (`https-*`), no proxy in front.
    pub fn echo_terminates(self) -> bool {
        matches!(
            self,
            ConfigName::HttpsRustls | ConfigName::HttpsOpenssl | ConfigName::HttpsNativeTls
        )
    }

    /// The config that moves the same bytes over the same path without TLS: the relay for
    /// a terminator in front of the echo-server, plain HTTP for the echo-server doing TLS
    /// itself. A config's TLS tax is its CPU per request minus its floor's.
    pub fn no_tls_floor(self) -> Option<ConfigName> {
        match self {
            ConfigName::Http | ConfigName::Relay => None,
            https if https.echo_terminates() => Some(ConfigName::Http),
            _ => Some(ConfigName::Relay),
        }
    }
}

/// Which peer programs a run uses: the host's packages, or the current releases that
/// `harness peers install` puts in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerSet {
    System,
    Current,
}

impl PeerSet {
    pub fn name(self) -> &'static str {
        match self {
            PeerSet::System => "system",
            PeerSet::Current => "current",
        }
    }
}

/// One item of a `configs` list: a config, or `all` (every config; peers that are not
/// installed are skipped when the run starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigPick {
    All,
    One(ConfigName),
}

impl ConfigPick {
    /// Parses a plan file's `configs` list; an empty list is an error.
    pub fn parse_list(items: &[String]) -> anyhow::Result<Vec<ConfigPick>> {
        let picks = items
            .iter()
            .map(|s| s.trim().parse())
            .collect::<anyhow::Result<Vec<_>>>()?;
        if picks.is_empty() {
            bail!("no config given; configs: all, {}", known_configs());
        }
        Ok(picks)
    }

    /// The configs picked, in order, each once.
    pub fn expand(picks: &[ConfigPick]) -> Vec<ConfigName> {
        let configs = picks.iter().flat_map(|pick| match pick {
            ConfigPick::All => ConfigName::ALL.to_vec(),
            ConfigPick::One(config) => vec![*config],
        });
        dedup(configs.collect())
    }
}

impl FromStr for ConfigPick {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "all" => Ok(ConfigPick::All),
            one => one.parse().map(ConfigPick::One),
        }
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

/// The fault suite's file (it writes it itself, not through the run's sinks).
pub const FAULTS_CSV: &str = "faults.csv";
/// The fault suite's side-by-side summary, when it attacked more than one terminator.
pub const FAULTS_SUMMARY: &str = "faults-summary.md";
/// The certificate-scale run's file (written by `sni_scale`, like the fault suite's).
pub const SNI_SCALE_CSV: &str = "sni-scale.csv";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_config_names_are_errors_naming_them() {
        let err = ConfigPick::parse_list(&["http".into(), "htp".into()])
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
            crate::plan::Overrides::parse("configs = [\"ngnix\"]").unwrap_err()
        );
        assert!(
            err.contains("key `configs`") && err.contains("ngnix"),
            "{err}"
        );
        assert_eq!(
            ConfigPick::expand(&ConfigPick::parse_list(&["all".into(), "http".into()]).unwrap()),
            ConfigName::ALL.to_vec()
        );
    }
}
