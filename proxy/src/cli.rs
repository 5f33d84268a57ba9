//! Command-line interface: `proxy [CONFIG] [FLAGS]` and `proxy check CONFIG`.
//!
//! Flags override the config file key by key; without a file they make the whole config
//! (`--listen`, `--upstream`, `--cert` and `--key` are then required; `--no-tls` makes the
//! certificate unnecessary).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{
    ClientAuthMode, Config, ConfigError, ListenerConfig, LogFormat, ProxyProtocol, RuntimeModel,
    Timeouts, TlsConfig, Upstream, DEFAULT_MAX_CONNECTIONS, DEFAULT_TOP_CLIENTS,
};
use crate::tls::{Backend, RustlsIo, TlsVersion};

/// tls-off: a TLS terminating proxy. Decrypts TLS from clients and relays the bytes to a
/// Unix-socket or TCP upstream (with --no-tls, relays plain TCP).
#[derive(Debug, Parser)]
#[command(name = "proxy", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML config file (see proxy/config.example.toml); flags override its keys.
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: Flags,
}

impl Cli {
    /// Parses the process's arguments as `Parser::parse` does (a bad flag exits 2), with a
    /// `--version` that also names the TLS library of each backend (the OpenSSL one is
    /// known only to the linked library, at run time).
    pub fn from_env() -> Cli {
        let long_version = format!(
            "{}\n{}",
            env!("CARGO_PKG_VERSION"),
            crate::tls::library_lines()
        );
        let matches = Cli::command().long_version(long_version).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file (and its certificates); exit 0 if usable, 2 if not.
    Check {
        config: PathBuf,
        #[command(flatten)]
        flags: Flags,
    },
}

/// Settings that can be given as flags; each overrides the config key of the same name.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    /// Address to accept connections on (replaces the config's listeners), e.g. 127.0.0.1:8443.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Upstream: unix:/path/to.sock or tcp:HOST:PORT.
    #[arg(long, value_parser = Upstream::parse)]
    pub upstream: Option<Upstream>,
    /// PEM certificate chain [tls.cert].
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// PEM private key [tls.key].
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// TLS library [tls.backend; default rustls-aws-lc].
    #[arg(long, value_enum)]
    pub tls_backend: Option<Backend>,
    /// Lowest TLS version accepted [tls.min_version; default 1.2].
    #[arg(long, value_enum)]
    pub min_tls_version: Option<TlsVersion>,
    /// Cipher suites, comma-separated IANA names [tls.cipher_suites; default: backend's].
    #[arg(long, value_delimiter = ',')]
    pub cipher_suites: Option<Vec<String>>,
    /// Key-exchange groups, comma-separated, in preference order [tls.kx_groups].
    #[arg(long, value_delimiter = ',')]
    pub kx_groups: Option<Vec<String>>,
    /// ALPN protocols, comma-separated, in preference order [tls.alpn; default none].
    #[arg(long, value_delimiter = ',')]
    pub alpn: Option<Vec<String>>,
    /// rustls API for the rustls backends: unbuffered (per-thread buffers) or buffered
    /// (tokio-rustls) [tls.rustls_io; default unbuffered].
    #[arg(long, value_enum)]
    pub rustls_io: Option<RustlsIo>,
    /// Turn off session resumption (tickets and session cache) [tls.session_resumption].
    #[arg(long)]
    pub no_session_resumption: bool,
    /// Worker threads [threads; default: CPUs in the affinity mask].
    #[arg(long)]
    pub threads: Option<NonZeroUsize>,
    /// Worker model [runtime; default per-core].
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeModel>,
    /// Most connections open at once [max_connections; default 50000].
    #[arg(long)]
    pub max_connections: Option<NonZeroUsize>,
    /// TLS handshake timeout, e.g. 10s [timeouts.handshake].
    #[arg(long, value_parser = parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// Upstream connect timeout, e.g. 5s [timeouts.upstream_connect].
    #[arg(long, value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Idle timeout, e.g. 5m [timeouts.idle].
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Shutdown grace period, e.g. 30s [timeouts.shutdown_grace].
    #[arg(long, value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Send a PROXY protocol header upstream, on every listener [listener.proxy_protocol].
    #[arg(long, value_enum)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Expect a PROXY protocol header from a load balancer, on every listener
    /// [listener.accept_proxy].
    #[arg(long)]
    pub accept_proxy: bool,
    /// No TLS on any listener: relay the client's bytes as they come (plain TCP forwarding,
    /// with PROXY headers if asked; the benchmark's no-TLS floor). No certificate is needed
    /// [listener.tls = false].
    #[arg(long)]
    pub no_tls: bool,
    /// CA certificates (PEM) for client certificates, on every listener [listener.client_ca].
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is required with --client-ca [listener.client_auth].
    #[arg(long, value_enum)]
    pub client_auth: Option<ClientAuthMode>,
    /// Serve Prometheus metrics on this address at /metrics [metrics_listen].
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Client addresses exported by per-client accounting; 0 turns it off [top_clients].
    #[arg(long)]
    pub top_clients: Option<usize>,
    /// Log format on stderr [log_format; default text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log one event per connection at close [access_log].
    #[arg(long)]
    pub access_log: bool,
}

impl Flags {
    /// The config file (if any) with these flags applied, checked.
    pub fn resolve(&self, file: Option<&Path>) -> Result<Config, ConfigError> {
        let source = file.unwrap_or(Path::new("command line"));
        let mut config = match file {
            Some(path) => Config::load(path)?,
            None => self.bare_config(source)?,
        };
        let missing = |key: &str| ConfigError::Invalid {
            path: source.to_owned(),
            key: key.to_string(),
            message: "required (no config file given)".into(),
        };
        if let Some(listen) = self.listen {
            let upstream = match (&self.upstream, config.listeners.as_slice()) {
                (Some(u), _) => u.clone(),
                (None, [only]) => only.upstream.clone(),
                (None, _) => return Err(missing("--upstream")),
            };
            let mut one = config
                .listeners
                .first()
                .cloned()
                .unwrap_or_else(|| ListenerConfig::new(listen, upstream.clone()));
            one.listen = listen;
            one.upstream = upstream;
            config.listeners = vec![one];
        } else if let Some(upstream) = &self.upstream {
            for l in &mut config.listeners {
                l.upstream = upstream.clone();
            }
        }
        for l in &mut config.listeners {
            if self.proxy_protocol.is_some() {
                l.proxy_protocol = self.proxy_protocol;
            }
            l.accept_proxy |= self.accept_proxy;
            l.tls &= !self.no_tls;
            if self.client_ca.is_some() {
                l.client_ca = self.client_ca.clone();
            }
            if self.client_auth.is_some() {
                l.client_auth = self.client_auth;
            }
        }
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        set(&mut config.top_clients, self.top_clients);
        set(&mut config.log_format, self.log_format);
        config.access_log |= self.access_log;
        let tls = &mut config.tls;
        if self.cert.is_some() {
            tls.cert = self.cert.clone();
        }
        if self.key.is_some() {
            tls.key = self.key.clone();
        }
        set(&mut tls.backend, self.tls_backend);
        set(&mut tls.min_version, self.min_tls_version);
        set(&mut tls.cipher_suites, self.cipher_suites.clone());
        set(&mut tls.kx_groups, self.kx_groups.clone());
        set(&mut tls.alpn, self.alpn.clone());
        set(&mut tls.rustls_io, self.rustls_io);
        if self.no_session_resumption {
            tls.session_resumption = false;
        }
        if self.threads.is_some() {
            config.threads = self.threads;
        }
        set(&mut config.runtime, self.runtime);
        set(&mut config.max_connections, self.max_connections);
        let t = &mut config.timeouts;
        set(&mut t.handshake, self.handshake_timeout);
        set(&mut t.upstream_connect, self.connect_timeout);
        set(&mut t.idle, self.idle_timeout);
        set(&mut t.shutdown_grace, self.shutdown_grace);
        config.check(source)?;
        Ok(config)
    }

    fn bare_config(&self, source: &Path) -> Result<Config, ConfigError> {
        let missing = |flag: &str| ConfigError::Invalid {
            path: source.to_owned(),
            key: flag.to_string(),
            message: "required when no config file is given".into(),
        };
        let (Some(listen), Some(upstream)) = (self.listen, self.upstream.clone()) else {
            return Err(missing(if self.listen.is_none() {
                "--listen"
            } else {
                "--upstream"
            }));
        };
        if !self.no_tls && (self.cert.is_none() || self.key.is_none()) {
            return Err(missing(if self.cert.is_none() {
                "--cert"
            } else {
                "--key"
            }));
        }
        Ok(Config {
            threads: None,
            runtime: RuntimeModel::default(),
            max_connections: NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS)
                .expect("constant is non-zero"),
            timeouts: Timeouts::default(),
            metrics_listen: None,
            top_clients: DEFAULT_TOP_CLIENTS,
            log_format: LogFormat::default(),
            access_log: false,
            // `resolve` sets the certificate and TLS keys from the flags.
            tls: TlsConfig::default(),
            listeners: vec![ListenerConfig::new(listen, upstream)],
        })
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 10s: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_alone_make_a_config() {
        let cli = Cli::parse_from([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "unix:/tmp/x.sock",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--tls-backend",
            "openssl",
            "--threads",
            "3",
        ]);
        let c = cli.flags.resolve(None).unwrap();
        assert_eq!(c.tls.backend, Backend::Openssl);
        assert_eq!(c.threads, NonZeroUsize::new(3));
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(
            c.listeners[0].upstream,
            Upstream::Unix("/tmp/x.sock".into())
        );
    }

    #[test]
    fn missing_flag_is_named() {
        let cli = Cli::parse_from(["proxy", "--listen", "127.0.0.1:0"]);
        let err = cli.flags.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--upstream"), "{err}");
    }

    #[test]
    fn no_tls_needs_no_certificate_and_turns_every_listener_plain() {
        let cli = Cli::parse_from([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "unix:/tmp/x.sock",
            "--no-tls",
        ]);
        let c = cli.flags.resolve(None).unwrap();
        assert!(c.listeners.iter().all(|l| !l.tls));
        assert_eq!(c.tls.cert, None);

        // A file's TLS listeners all turn plain (the file is checked on its own first).
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"unix:/a\"\n\
             [[listener]]\nlisten = \"127.0.0.1:2\"\nupstream = \"unix:/b\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from(["proxy", "--no-tls"]);
        let c = cli.flags.resolve(Some(file.path())).unwrap();
        assert_eq!(c.listeners.len(), 2);
        assert!(!c.uses_tls());
        let c = Cli::parse_from(["proxy"])
            .flags
            .resolve(Some(file.path()))
            .unwrap();
        assert!(c.listeners.iter().all(|l| l.tls));
        // Without --no-tls the certificate flags are still required.
        let cli = Cli::parse_from(["proxy", "--listen", "127.0.0.1:0", "--upstream", "unix:/a"]);
        let err = cli.flags.resolve(None).unwrap_err().to_string();
        assert!(err.contains("--cert"), "{err}");
    }

    #[test]
    fn no_tls_refuses_client_certificate_flags() {
        let cli = Cli::parse_from([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "unix:/tmp/x.sock",
            "--no-tls",
            "--client-ca",
            "ca.pem",
        ]);
        let err = cli.flags.resolve(None).unwrap_err().to_string();
        assert!(err.contains("listener.client_ca"), "{err}");
    }

    #[test]
    fn check_subcommand_parses() {
        let cli = Cli::parse_from(["proxy", "check", "p.toml"]);
        assert!(matches!(cli.command, Some(Command::Check { .. })));
    }
}
