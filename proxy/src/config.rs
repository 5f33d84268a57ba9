//! The proxy's configuration: a TOML file (every key documented in
//! `proxy/config.example.toml`), parsed straight into checked types (`SocketAddr`,
//! `Duration`, `NonZeroUsize`, enums) so nothing downstream validates again.
//!
//! Unknown keys, wrong types and impossible values are rejected with the file, line and key.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::tls::{Backend, CertPaths, CertSet, ClientAuth, RustlsIo, TlsSettings, TlsVersion};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Worker threads; `None` means one per CPU in the affinity mask.
    #[serde(default)]
    pub threads: Option<NonZeroUsize>,
    /// How the workers are organised; see [`RuntimeModel`].
    #[serde(default)]
    pub runtime: RuntimeModel,
    /// Connections open at once, all listeners together; more are accepted and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: NonZeroUsize,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Serve Prometheus metrics at `http://ADDR/metrics`; off when absent.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Per-client accounting: export the busiest N client addresses (0 = off).
    #[serde(default = "default_top_clients")]
    pub top_clients: usize,
    /// Log line format on stderr.
    #[serde(default)]
    pub log_format: LogFormat,
    /// One log event per connection at close (client, TLS facts, bytes, duration, reason).
    #[serde(default)]
    pub access_log: bool,
    /// Certificates and TLS settings of every TLS listener; may be left out when every
    /// listener is plain (`tls = false`).
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
}

/// Worker organisation. Both were measured (README, "Runtime model"); the default won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeModel {
    /// One current-thread runtime per worker, each accepting on its own SO_REUSEPORT
    /// socket: no work stealing, no cross-thread wake-ups; the kernel spreads connections.
    #[default]
    PerCore,
    /// One tokio multi-thread runtime with work stealing and a shared listener.
    MultiThread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// From accept to a finished TLS handshake (on a plain listener: to the end of the
    /// inbound PROXY header, with `accept_proxy`).
    #[serde(deserialize_with = "duration")]
    pub handshake: Duration,
    /// Connecting to the upstream.
    #[serde(deserialize_with = "duration")]
    pub upstream_connect: Duration,
    /// No byte moved in either direction for this long closes the connection.
    #[serde(deserialize_with = "duration")]
    pub idle: Duration,
    /// After SIGTERM: how long in-flight connections may finish before they are closed.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(10),
            upstream_connect: Duration::from_secs(5),
            idle: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub backend: Backend,
    #[serde(default)]
    pub min_version: TlsVersion,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    #[serde(default)]
    pub kx_groups: Vec<String>,
    #[serde(default)]
    pub alpn: Vec<String>,
    #[serde(default = "yes")]
    pub session_resumption: bool,
    /// The rustls API the rustls backends use.
    #[serde(default)]
    pub rustls_io: RustlsIo,
    #[serde(default)]
    pub strict_sni: bool,
    /// Default certificate chain (PEM) and key; required unless every listener is plain
    /// (`check` says so, naming the key).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Extra certificates chosen by SNI.
    #[serde(default)]
    pub sni: Vec<SniCert>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for TlsConfig {
    /// No certificate, every setting at its documented default: what a config whose
    /// listeners are all plain may leave as is.
    fn default() -> Self {
        TlsConfig {
            backend: Backend::default(),
            min_version: TlsVersion::default(),
            cipher_suites: Vec::new(),
            kx_groups: Vec::new(),
            alpn: Vec::new(),
            session_resumption: true,
            rustls_io: RustlsIo::default(),
            strict_sni: false,
            cert: None,
            key: None,
            sni: Vec::new(),
        }
    }
}

impl TlsConfig {
    /// The TLS settings of one listener: these keys plus its client-certificate options.
    pub fn settings(&self, listener: &ListenerConfig) -> TlsSettings {
        TlsSettings {
            backend: self.backend,
            min_version: self.min_version,
            cipher_suites: self.cipher_suites.clone(),
            kx_groups: self.kx_groups.clone(),
            alpn: self.alpn.clone(),
            session_resumption: self.session_resumption,
            rustls_io: self.rustls_io,
            client_auth: listener.client_ca.as_ref().map(|ca| ClientAuth {
                ca: ca.clone(),
                required: listener.client_auth != Some(ClientAuthMode::Optional),
            }),
        }
    }

    /// The certificates to serve; `None` when no default certificate is configured (a
    /// checked config allows that only when every listener is plain).
    pub fn cert_set(&self) -> Option<CertSet> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return None;
        };
        Some(CertSet {
            default: CertPaths {
                cert: cert.clone(),
                key: key.clone(),
            },
            by_sni: self
                .sni
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        CertPaths {
                            cert: s.cert.clone(),
                            key: s.key.clone(),
                        },
                    )
                })
                .collect(),
            strict_sni: self.strict_sni,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to accept connections on, e.g. `0.0.0.0:443` or `[::1]:8443`.
    pub listen: SocketAddr,
    /// Where the decrypted bytes go.
    pub upstream: Upstream,
    /// `false`: a plain listener, which relays the client's bytes as they come, with no TLS
    /// (plain TCP forwarding with PROXY headers; the benchmark's no-TLS floor).
    #[serde(default = "yes")]
    pub tls: bool,
    /// Send a PROXY protocol header to the upstream before any client byte.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Read a PROXY protocol header (v1 or v2) from a load balancer in front, before the
    /// TLS handshake (if any), and use its source address as the client's.
    #[serde(default)]
    pub accept_proxy: bool,
    /// PEM CA certificates that client certificates must chain to (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: must a client present a certificate? `None` means required;
    /// kept apart so that a key given on a plain listener can be refused.
    #[serde(default)]
    pub client_auth: Option<ClientAuthMode>,
}

impl ListenerConfig {
    pub fn new(listen: SocketAddr, upstream: Upstream) -> Self {
        ListenerConfig {
            listen,
            upstream,
            tls: true,
            proxy_protocol: None,
            accept_proxy: false,
            client_ca: None,
            client_auth: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthMode {
    /// No certificate, no connection.
    #[default]
    Required,
    /// A certificate is asked for; a client may send none.
    Optional,
}

/// An upstream address: `unix:/path/to.sock` or `tcp:host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl Upstream {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{s:?}: empty socket path after unix:"));
            }
            Ok(Upstream::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tcp:") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Upstream::Tcp(addr.to_string()))
                }
                _ => Err(format!("{s:?}: expected tcp:HOST:PORT")),
            }
        } else {
            Err(format!(
                "{s:?}: expected unix:/path/to.sock or tcp:HOST:PORT"
            ))
        }
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Unix(p) => write!(f, "unix:{}", p.display()),
            Upstream::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Upstream::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A configuration error: always one line naming the file and line, or the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                message: e.message().replace('\n', " "),
            }
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Whether any listener runs TLS (and so needs the certificate).
    pub fn uses_tls(&self) -> bool {
        self.listeners.iter().any(|l| l.tls)
    }

    /// Cross-key rules that types alone cannot express.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_string(),
            message,
        };
        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "at least one [[listener]] with listen and upstream is required".into(),
            ));
        }
        let t = &self.timeouts;
        for (key, value) in [
            ("timeouts.handshake", t.handshake),
            ("timeouts.upstream_connect", t.upstream_connect),
            ("timeouts.idle", t.idle),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than zero".into()));
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|o| o.listen == l.listen) {
                return Err(invalid(
                    "listener.listen",
                    format!("{} is listed twice", l.listen),
                ));
            }
        }
        if self.top_clients > MAX_TOP_CLIENTS {
            return Err(invalid(
                "top_clients",
                format!(
                    "{} is over the limit of {MAX_TOP_CLIENTS}",
                    self.top_clients
                ),
            ));
        }
        for l in &self.listeners {
            if l.client_auth == Some(ClientAuthMode::Optional) && l.client_ca.is_none() {
                return Err(invalid(
                    "listener.client_auth",
                    format!("{}: client_auth needs client_ca", l.listen),
                ));
            }
            if !l.tls {
                let plain = |key: &str| {
                    let message = format!(
                        "{}: a plain listener (tls = false) cannot check a client certificate",
                        l.listen
                    );
                    Err(invalid(key, message))
                };
                if l.client_ca.is_some() {
                    return plain("listener.client_ca");
                }
                if l.client_auth.is_some() {
                    return plain("listener.client_auth");
                }
            }
        }
        self.check_certificate(path)?;
        for s in &self.tls.sni {
            if s.name.is_empty() || s.name.contains(['*', ' ', '/']) {
                return Err(invalid(
                    "tls.sni.name",
                    format!("{:?} is not an exact DNS name", s.name),
                ));
            }
        }
        Ok(())
    }

    /// `tls.cert` and `tls.key` go together, and a TLS listener needs them.
    fn check_certificate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_string(),
            message,
        };
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), Some(_)) => Ok(()),
            (Some(_), None) => Err(invalid("tls.key", "required with tls.cert".into())),
            (None, Some(_)) => Err(invalid("tls.cert", "required with tls.key".into())),
            (None, None) => match self.listeners.iter().find(|l| l.tls) {
                Some(l) => Err(invalid(
                    "tls.cert",
                    format!(
                        "required: listener {} uses TLS (only when every listener has \
                         tls = false may the certificate be left out)",
                        l.listen
                    ),
                )),
                None => Ok(()),
            },
        }
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!("{s:?} is not a duration like 10s or 500ms: {e}"))
    })
}

fn default_max_connections() -> NonZeroUsize {
    NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS).expect("constant is non-zero")
}

fn default_top_clients() -> usize {
    DEFAULT_TOP_CLIENTS
}

fn yes() -> bool {
    true
}

/// Client addresses exported by per-client accounting, when metrics are on.
pub const DEFAULT_TOP_CLIENTS: usize = 100;
/// Per-client accounting tracks a few times this many addresses; the cap bounds its memory.
pub const MAX_TOP_CLIENTS: usize = 10_000;
/// Default connection cap: far above what one core serves, below typical hard fd limits.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[tls]
cert = "c.pem"
key = "k.pem"

[[listener]]
listen = "127.0.0.1:8443"
upstream = "unix:/run/app.sock"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("proxy.toml"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.timeouts.handshake, Duration::from_secs(10));
        assert_eq!(c.timeouts.upstream_connect, Duration::from_secs(5));
        assert_eq!(c.timeouts.shutdown_grace, Duration::from_secs(30));
        assert_eq!(c.tls.backend, Backend::RustlsAwsLc);
        assert!(c.tls.session_resumption);
        assert_eq!(c.runtime, RuntimeModel::PerCore);
        assert_eq!(
            c.listeners[0].upstream,
            Upstream::Unix("/run/app.sock".into())
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("key = \"k.pem\"", "key = \"k.pem\"\nbogus = 1");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("proxy.toml:5:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn wrong_types_and_impossible_values_are_rejected() {
        let cases = [
            ("threads = 0\n", "threads", 1),
            ("max_connections = \"many\"\n", "max_connections", 1),
            ("[timeouts]\nidle = \"soon\"\n", "soon", 2),
        ];
        for (prefix, needle, line) in cases {
            let err = parse(&format!("{prefix}{MINIMAL}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) || err.contains("zero"), "{err}");
            assert!(err.starts_with(&format!("proxy.toml:{line}:")), "{err}");
        }
        let err = parse(&MINIMAL.replace("unix:/run/app.sock", "http://x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected unix:"), "{err}");
        let err = parse(&format!("[timeouts]\nidle = \"0s\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeouts.idle"), "{err}");
        let err = parse(
            &MINIMAL
                .replace("backend", "x")
                .replace("[tls]", "[tls]\nbackend = \"gnutls\""),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("gnutls"), "{err}");
    }

    #[test]
    fn listeners_are_required() {
        let text = MINIMAL.split("[[listener]]").next().unwrap();
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("listener"), "{err}");
    }

    #[test]
    fn rustls_io_is_chosen_by_name_and_a_wrong_one_is_named() {
        let with =
            |value: &str| MINIMAL.replace("[tls]\n", &format!("[tls]\nrustls_io = {value}\n"));
        let config = parse(&with("\"buffered\"")).unwrap();
        assert_eq!(config.tls.rustls_io, RustlsIo::Buffered);
        assert_eq!(parse(MINIMAL).unwrap().tls.rustls_io, RustlsIo::Unbuffered);
        let err = parse(&with("\"half-buffered\"")).unwrap_err().to_string();
        // The line is rustls_io's, and the expected names are listed.
        assert!(
            err.contains("proxy.toml:3") && err.contains("half-buffered"),
            "{err}"
        );
        // Quoted, since "buffered" alone is inside "unbuffered".
        assert!(
            err.contains("`unbuffered`") && err.contains("`buffered`"),
            "{err}"
        );
    }

    #[test]
    fn example_config_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let example = Config::load(&path).unwrap();
        let minimal = parse(MINIMAL).unwrap();
        // Every default the example documents is the one the code applies.
        assert_eq!(example.timeouts, minimal.timeouts);
        assert_eq!(example.runtime, minimal.runtime);
        assert_eq!(example.max_connections, minimal.max_connections);
        assert_eq!(
            example.tls.settings(&example.listeners[0]),
            minimal.tls.settings(&minimal.listeners[0])
        );
        assert_eq!(example.top_clients, minimal.top_clients);
        assert_eq!(example.log_format, minimal.log_format);
        assert_eq!(example.access_log, minimal.access_log);
        assert_eq!(example.tls.strict_sni, minimal.tls.strict_sni);
        assert_eq!(example.listeners[0].tls, minimal.listeners[0].tls);
    }

    const PLAIN: &str = r#"
[[listener]]
listen = "127.0.0.1:8080"
upstream = "unix:/run/app.sock"
tls = false
"#;

    #[test]
    fn listeners_use_tls_unless_told_otherwise() {
        assert!(parse(MINIMAL).unwrap().listeners[0].tls);
        let c = parse(PLAIN).unwrap();
        assert!(!c.listeners[0].tls);
        assert!(!c.uses_tls());
    }

    #[test]
    fn plain_listeners_alone_need_no_certificate() {
        let c = parse(PLAIN).unwrap();
        assert_eq!(c.tls.cert, None);
        assert_eq!(c.tls.cert_set(), None);
        // A [tls] section without a certificate is fine too.
        parse(&format!("[tls]\nbackend = \"openssl\"\n{PLAIN}")).unwrap();
    }

    #[test]
    fn a_tls_listener_still_needs_the_certificate() {
        let tls_listener = "[[listener]]\nlisten = \"127.0.0.1:8443\"\nupstream = \"unix:/a\"\n";
        let err = parse(&format!("{PLAIN}{tls_listener}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("proxy.toml: tls.cert:"), "{err}");
        assert!(
            err.contains("127.0.0.1:8443"),
            "names the TLS listener: {err}"
        );
        let err = parse(&format!("[tls]\ncert = \"c.pem\"\n{PLAIN}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.key"), "{err}");
    }

    #[test]
    fn client_certificates_on_a_plain_listener_are_refused() {
        for (line, key) in [
            ("client_ca = \"ca.pem\"", "listener.client_ca"),
            ("client_auth = \"required\"", "listener.client_auth"),
        ] {
            let err = parse(&format!("{PLAIN}{line}\n")).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(err.contains("tls = false"), "{err}");
        }
        // On a TLS listener both stay allowed.
        let c = parse(&format!(
            "{MINIMAL}client_ca = \"ca.pem\"\nclient_auth = \"optional\"\n"
        ))
        .unwrap();
        let auth = c.tls.settings(&c.listeners[0]).client_auth.unwrap();
        assert!(!auth.required);
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(
            Upstream::parse("tcp:127.0.0.1:80").unwrap(),
            Upstream::Tcp("127.0.0.1:80".into())
        );
        assert_eq!(
            Upstream::parse("tcp:[::1]:80").unwrap(),
            Upstream::Tcp("[::1]:80".into())
        );
        assert!(Upstream::parse("tcp:host").is_err());
        assert!(Upstream::parse("unix:").is_err());
    }
}
