//! The checked run configuration: every flag parsed, every file read, the request built and
//! the TLS client configured before any socket opens. Errors name the flag or file and map
//! to exit code 2.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Args, OutputFormat};
use crate::request::{self, RequestError};
use crate::tls::{TlsClient, TlsConfigError, TlsOptions};

/// Everything a run needs, already checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The URL as the user wrote it (the report's `target`).
    pub target: String,
    pub url: Url,
    pub connections: NonZeroUsize,
    /// Threads to run: never more than connections.
    pub threads: NonZeroUsize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    /// Open loop at this many requests per second; `None` is closed loop.
    pub rate: Option<f64>,
    pub keepalive: bool,
    /// Idle run (`--idle`): open the connections with one request each, then hold them
    /// silent for `duration`.
    pub idle: bool,
    /// The whole request (head and body), built once and shared read-only by every thread.
    pub request: Arc<[u8]>,
    /// The request body: what an echo must answer with.
    pub body: Arc<[u8]>,
    /// The request was HEAD: responses carry no body whatever their headers say.
    pub head_request: bool,
    /// Check each response body against the request body.
    pub verify: bool,
    pub tls: Option<TlsClient>,
    pub output: OutputFormat,
    pub hdr_out: Option<PathBuf>,
}

/// A parsed target URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or address, without IPv6 brackets; `localhost` for Unix sockets.
    pub host: String,
    pub port: u16,
    /// Request target: path and query, starting with `/`.
    pub path: String,
    /// The socket path of a `unix://` URL.
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Unix,
}

/// A flag, URL or file that cannot be used. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?}: {reason} (expected http://HOST:PORT/path, https://HOST:PORT/path or unix:///abs/path.sock)")]
    Url { url: String, reason: String },
    #[error("cannot read --body-file {}: {source}", path.display())]
    BodyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} is {size} bytes; loadgen sends bodies of at most {MAX_BODY_BYTES} bytes (1 GiB)"
    )]
    BodyTooLarge { what: String, size: u64 },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error("{flag} only makes sense with an https:// URL")]
    TlsFlagWithoutTls { flag: &'static str },
    #[error("--rate {0} must be a positive number of requests per second")]
    Rate(f64),
    #[error("{flag} cannot be used with --idle: {why}")]
    IdleConflict {
        flag: &'static str,
        why: &'static str,
    },
    #[error("--duration must be longer than zero")]
    ZeroDuration,
    #[error("--timeout must be longer than zero")]
    ZeroTimeout,
    #[error("cannot create --hdr-out {}: {source}", path.display())]
    HdrOut {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Config {
    /// Checks `args`, reads the files they name and builds the request.
    pub fn from_args(args: Args) -> Result<Config, ConfigError> {
        let url = Url::parse(&args.url)?;
        if args.duration.is_zero() {
            return Err(ConfigError::ZeroDuration);
        }
        if args.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if let Some(rate) = args.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::Rate(rate));
            }
        }
        if args.idle {
            check_idle_flags(&args)?;
        }
        let body: Arc<[u8]> = match (&args.body_file, args.body_size) {
            (Some(path), _) => {
                let read_error = |source| ConfigError::BodyFile {
                    path: path.clone(),
                    source,
                };
                let size = std::fs::metadata(path).map_err(read_error)?.len();
                if size > MAX_BODY_BYTES {
                    return Err(ConfigError::BodyTooLarge {
                        what: format!("--body-file {}", path.display()),
                        size,
                    });
                }
                std::fs::read(path).map_err(read_error)?.into()
            }
            (None, Some(size)) => {
                let too_large = || ConfigError::BodyTooLarge {
                    what: "--body-size".into(),
                    size,
                };
                let size = usize::try_from(size)
                    .ok()
                    .filter(|&s| s as u64 <= MAX_BODY_BYTES)
                    .ok_or_else(too_large)?;
                request::generated_body(size).into()
            }
            (None, None) => Arc::from(&[][..]),
        };
        let has_body = args.body_file.is_some() || args.body_size.is_some();
        let method = match &args.method {
            Some(m) => m.clone(),
            None if has_body => "POST".to_string(),
            None => "GET".to_string(),
        };
        let keepalive = !args.no_keepalive;
        let request =
            request::build(&method, &url, &args.headers, &body, keepalive, has_body)?.into();

        let tls_flags: [(&'static str, bool); 8] = [
            ("--tls-resume", args.tls_resume),
            ("--cacert", args.cacert.is_some()),
            ("--insecure", args.insecure),
            ("--sni", args.sni.is_some()),
            ("--alpn", !args.alpn.is_empty()),
            ("--tls-version", args.tls_version.is_some()),
            ("--cipher-suite", !args.cipher_suite.is_empty()),
            ("--kx-group", !args.kx_group.is_empty()),
        ];
        let tls = if url.scheme == Scheme::Https {
            Some(TlsClient::build(&TlsOptions {
                host: url.host.clone(),
                cacert: args.cacert.clone(),
                insecure: args.insecure,
                sni: args.sni.clone(),
                alpn: args.alpn.clone(),
                version: args.tls_version,
                cipher_suites: args.cipher_suite.clone(),
                kx_groups: args.kx_group.clone(),
                resume: args.tls_resume,
            })?)
        } else {
            if let Some((flag, _)) = tls_flags.iter().find(|(_, set)| *set) {
                return Err(ConfigError::TlsFlagWithoutTls { flag });
            }
            None
        };

        if let Some(path) = &args.hdr_out {
            // Created now so a typo fails before the run, not after ten minutes of it.
            std::fs::File::create(path).map_err(|source| ConfigError::HdrOut {
                path: path.clone(),
                source,
            })?;
        }

        let threads = sysio::host::worker_count(args.threads).min(args.connections);
        Ok(Config {
            target: args.url.clone(),
            head_request: method.eq_ignore_ascii_case("HEAD"),
            url,
            connections: args.connections,
            threads,
            duration: args.duration,
            warmup: args.warmup,
            timeout: args.timeout,
            rate: args.rate,
            keepalive,
            idle: args.idle,
            request,
            body,
            verify: !args.no_verify,
            tls,
            output: args.output,
            hdr_out: args.hdr_out,
        })
    }
}

impl Url {
    /// Parses `http://HOST[:PORT][/path]`, `https://...` or `unix:///abs/path`.
    pub fn parse(text: &str) -> Result<Url, ConfigError> {
        let fail = |reason: &str| ConfigError::Url {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = match text.split_once("://") {
            Some((s, rest)) => (s.to_ascii_lowercase(), rest),
            None => return Err(fail("no scheme")),
        };
        let scheme = match scheme.as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" => Scheme::Unix,
            other => return Err(fail(&format!("unsupported scheme {other:?}"))),
        };
        if scheme == Scheme::Unix {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(fail(
                    "a unix URL needs an absolute socket path (unix:///run/x.sock)",
                ));
            }
            return Ok(Url {
                scheme,
                host: "localhost".into(),
                port: 0,
                path: "/".into(),
                socket: Some(PathBuf::from(rest)),
            });
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(fail("the path contains spaces or control characters"));
        }
        if let Some(i) = path.find('#') {
            return Err(fail(&format!(
                "fragments are not sent to servers ({})",
                &path[i..]
            )));
        }
        if authority.contains('@') {
            return Err(fail("user information in URLs is not supported"));
        }
        let default_port = if scheme == Scheme::Https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("unclosed [ in the IPv6 address"))?;
            let port = match after {
                "" => default_port,
                p => parse_port(p.strip_prefix(':').ok_or_else(|| fail("junk after ]"))?)
                    .ok_or_else(|| fail("bad port"))?,
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(fail(&format!("{host:?} is not an IPv6 address")));
            }
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, p)) => (
                    host.to_string(),
                    parse_port(p).ok_or_else(|| fail("bad port"))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if !valid_host {
            return Err(fail("missing or invalid host"));
        }
        Ok(Url {
            scheme,
            host,
            port,
            path,
            socket: None,
        })
    }

    /// The `Host` header's value: the host, bracketed if IPv6, with the port unless default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.scheme, self.port) {
            (Scheme::Unix, _) | (Scheme::Http, 80) | (Scheme::Https, 443) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

/// Largest request body: the request (head and body) is held in memory once, and no
/// benchmark here needs more.
pub const MAX_BODY_BYTES: u64 = 1 << 30;

/// `--idle` measures what holding connections costs: flags about sending requests over
/// time have no meaning there, and are refused rather than silently ignored.
fn check_idle_flags(args: &Args) -> Result<(), ConfigError> {
    let conflicts: [(&'static str, bool, &'static str); 3] = [
        (
            "--warmup",
            !args.warmup.is_zero(),
            "an idle run measures nothing over time, so there is nothing to warm up",
        ),
        (
            "--rate",
            args.rate.is_some(),
            "an idle run sends one request per connection, then nothing",
        ),
        (
            "--no-keepalive",
            args.no_keepalive,
            "idle connections must stay open after their one request",
        ),
    ];
    match conflicts.into_iter().find(|(_, set, _)| *set) {
        Some((flag, _, why)) => Err(ConfigError::IdleConflict { flag, why }),
        None => Ok(()),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "127.0.0.1", 8080, "/a/b?x=1")
        );
        assert_eq!(u.host_header(), "127.0.0.1:8080");

        let u = Url::parse("https://localhost").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (443, "/", "localhost")
        );

        let u = Url::parse("https://[::1]:8443/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8443));
        assert_eq!(u.host_header(), "[::1]:8443");

        let u = Url::parse("unix:///run/echo.sock").unwrap();
        assert_eq!(
            u.socket.as_deref(),
            Some(std::path::Path::new("/run/echo.sock"))
        );
        assert_eq!(u.path, "/");
    }

    #[test]
    fn idle_refuses_flags_about_load_over_time() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["loadgen", "--idle"];
            argv.extend(extra);
            argv.push("http://127.0.0.1:1/");
            <Args as clap::Parser>::try_parse_from(argv)
                .unwrap()
                .into_config()
        };
        let config = parse(&["-c", "200", "-b", "16"]).unwrap();
        assert!(config.idle && config.keepalive);
        // A zero warm-up is no warm-up: a harness may always pass one.
        assert!(parse(&["--warmup", "0s"]).is_ok());
        for (extra, flag) in [
            (&["--warmup", "1s"][..], "--warmup"),
            (&["--rate", "100"][..], "--rate"),
            (&["--no-keepalive"][..], "--no-keepalive"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{flag} cannot be used with --idle: ")),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_urls_are_named() {
        for bad in [
            "127.0.0.1:8080",
            "ftp://x/",
            "http://:80/",
            "http://host:99999/",
            "http://host:0/",
            "http://[::1/",
            "unix://relative.sock",
            "http://a b/",
            "http://h/#frag",
        ] {
            let err = Url::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
