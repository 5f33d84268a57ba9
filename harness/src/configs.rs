//! What each config runs: the server processes in start order (backend first, then the TLS
//! terminator in front of it) and how the load generator reaches the front one.
//!
//! This is the seam for the peer terminators of issue 8 (HAProxy, nginx, hitch, stunnel):
//! each becomes a [`ConfigName`] whose stack is the same Unix-socket echo-server plus one
//! [`Role::Terminator`] process started from a config file written into the run folder;
//! the run loop and the CSV need no change (a terminator's figures go in the `proxy_*`
//! columns).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use proxy::tls::CertPaths;

use crate::bins::Bins;
use crate::cpus::CpuList;
use crate::plan::{ConfigName, Variant};
use crate::procs::Spec;

/// What a server process is for: decides which CSV columns its figures go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The echo backend (`echo_*` columns).
    Backend,
    /// A TLS terminator in front of the backend (`proxy_*` columns).
    Terminator,
}

/// One server process of a stack.
#[derive(Debug, Clone)]
pub struct Server {
    pub role: Role,
    pub spec: Spec,
}

/// The servers of one measurement and the URL scheme of the front one.
#[derive(Debug, Clone)]
pub struct Stack {
    /// In start order; stopped in reverse.
    pub servers: Vec<Server>,
    /// `http` or `https`: how the load generator talks to the last server.
    pub scheme: &'static str,
    /// The Unix socket between terminator and backend, removed after the measurement.
    pub socket: Option<PathBuf>,
}

/// What every stack is built from.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub bins: &'a Bins,
    /// The run's one certificate.
    pub cert: &'a CertPaths,
    pub server_cpus: &'a CpuList,
    /// Per-run temporary directory for Unix sockets (short paths, never shared).
    pub runtime_dir: &'a Path,
    /// Log file stem: `logs/<iteration>-<variant>-<size>`; `-<process>.{out,err}` follows.
    pub log_stem: &'a Path,
    /// Distinguishes sockets of successive measurements.
    pub index: usize,
}

/// The stack for `variant`.
pub fn stack(variant: &Variant, ctx: &Context<'_>) -> Stack {
    let threads = ctx.server_cpus.len().to_string();
    let tls_args = |backend: &str| -> Vec<OsString> {
        vec![
            "--tls-backend".into(),
            backend.into(),
            "--cert".into(),
            ctx.cert.cert.as_os_str().to_owned(),
            "--key".into(),
            ctx.cert.key.as_os_str().to_owned(),
        ]
    };
    let backend = variant.backend_name();
    let echo = |mode: &str, listen: OsString, extra: Vec<OsString>| -> Server {
        let mut args: Vec<OsString> = vec!["--mode".into(), mode.into(), "--listen".into(), listen];
        args.extend(extra);
        args.extend(["--threads".into(), threads.clone().into()]);
        Server {
            role: Role::Backend,
            spec: spec("echo", &ctx.bins.echo, args, ctx),
        }
    };
    match variant.config {
        ConfigName::Http => Stack {
            servers: vec![echo("http", LOOPBACK_ANY_PORT.into(), Vec::new())],
            scheme: "http",
            socket: None,
        },
        ConfigName::HttpsRustls | ConfigName::HttpsOpenssl => Stack {
            servers: vec![echo("https", LOOPBACK_ANY_PORT.into(), tls_args(backend))],
            scheme: "https",
            socket: None,
        },
        ConfigName::ProxyRustls | ConfigName::ProxyOpenssl => {
            let socket = ctx.runtime_dir.join(format!("{}.sock", ctx.index));
            let mut upstream = OsString::from("unix:");
            upstream.push(&socket);
            let mut args: Vec<OsString> = vec![
                "--listen".into(),
                LOOPBACK_ANY_PORT.into(),
                "--upstream".into(),
                upstream,
            ];
            args.extend(tls_args(backend));
            args.extend(["--threads".into(), threads.clone().into()]);
            Stack {
                servers: vec![
                    echo("unix", socket.clone().into_os_string(), Vec::new()),
                    Server {
                        role: Role::Terminator,
                        spec: spec("proxy", &ctx.bins.proxy, args, ctx),
                    },
                ],
                scheme: "https",
                socket: Some(socket),
            }
        }
    }
}

fn spec(name: &str, program: &Path, args: Vec<OsString>, ctx: &Context<'_>) -> Spec {
    Spec {
        name: name.to_owned(),
        program: program.to_owned(),
        args,
        cpus: ctx.server_cpus.clone(),
        stdout_log: log_path(ctx.log_stem, name, "out"),
        stderr_log: log_path(ctx.log_stem, name, "err"),
        wait_ready: true,
    }
}

/// `logs/1-proxy-rustls-aws-lc-1000-proxy.out`.
pub fn log_path(stem: &Path, process: &str, ext: &str) -> PathBuf {
    let mut name = stem.file_name().map(OsString::from).unwrap_or_default();
    name.push(format!("-{process}.{ext}"));
    stem.with_file_name(name)
}

/// The URL the load generator targets, from the front server's `listening on` address.
pub fn url(scheme: &str, addr: &str) -> String {
    format!("{scheme}://{addr}/")
}

/// Every TCP listener binds here: loopback, a port the kernel picks.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";

#[cfg(test)]
mod tests {
    use proxy::tls::Backend;

    use super::*;

    fn args_of(server: &Server) -> String {
        server
            .spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn proxy_stack_is_unix_echo_behind_the_proxy() {
        let bins = Bins {
            dir: "/b".into(),
            proxy: "/b/proxy".into(),
            echo: "/b/echo-server".into(),
            loadgen: "/b/loadgen".into(),
        };
        let cert = CertPaths {
            cert: "/r/cert.pem".into(),
            key: "/r/key.pem".into(),
        };
        let cpus: CpuList = "0-2".parse().unwrap();
        let ctx = Context {
            bins: &bins,
            cert: &cert,
            server_cpus: &cpus,
            runtime_dir: Path::new("/tmp/h"),
            log_stem: Path::new("/out/logs/1-proxy-rustls-ring-10"),
            index: 7,
        };
        let variant = Variant {
            config: ConfigName::ProxyRustls,
            backend: Some(Backend::RustlsRing),
        };
        let stack = stack(&variant, &ctx);
        assert_eq!(stack.scheme, "https");
        assert_eq!(stack.socket.as_deref(), Some(Path::new("/tmp/h/7.sock")));
        let [echo, proxy] = &stack.servers[..] else {
            panic!("two servers expected")
        };
        assert_eq!(echo.role, Role::Backend);
        assert_eq!(
            args_of(echo),
            "--mode unix --listen /tmp/h/7.sock --threads 3"
        );
        assert_eq!(proxy.role, Role::Terminator);
        assert_eq!(
            args_of(proxy),
            "--listen 127.0.0.1:0 --upstream unix:/tmp/h/7.sock --tls-backend rustls-ring \
             --cert /r/cert.pem --key /r/key.pem --threads 3"
        );
        assert_eq!(
            proxy.spec.stderr_log,
            Path::new("/out/logs/1-proxy-rustls-ring-10-proxy.err")
        );
        assert_eq!(proxy.spec.cpus, cpus);

        let http = super::stack(
            &Variant {
                config: ConfigName::Http,
                backend: None,
            },
            &ctx,
        );
        assert_eq!(http.scheme, "http");
        assert_eq!(
            args_of(&http.servers[0]),
            "--mode http --listen 127.0.0.1:0 --threads 3"
        );
        assert_eq!(url("http", "127.0.0.1:5"), "http://127.0.0.1:5/");
    }
}
