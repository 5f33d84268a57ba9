//! The recipe of one measured config: its server processes in start order (upstream first,
//! then the TLS terminator in front of it) and how the load generator reaches the front one.
//!
//! The peer terminators (HAProxy, nginx, hitch, stunnel) run the same way as our proxy: the
//! same Unix-socket echo-server plus one [`Role::Terminator`] process, started from a
//! config file written into the run folder (`configs/`), so the run is reproducible; their
//! figures go in the same `proxy_*` columns. Peers print no `listening on` line: they are
//! given a free port and are ready when it accepts a connection.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use proxy::tls::CertPaths;

use crate::bins::Bins;
use crate::cpus::CpuList;
use crate::peers::{self, Peer};
use crate::plan::{ConfigName, Variant};
use crate::procs::Spec;

/// What a server process is for: decides which CSV columns its figures go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The upstream the terminator relays to: the echo-server (`echo_*` columns).
    Upstream,
    /// A TLS terminator in front of the upstream (`proxy_*` columns).
    Terminator,
}

/// How the harness knows a server is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// It prints `listening on ADDR` (ours).
    Line,
    /// It accepts a TCP connection on this loopback port (peers).
    Port(u16),
}

/// One server process of a stack.
#[derive(Debug, Clone)]
pub struct Server {
    pub role: Role,
    pub spec: Spec,
    pub ready: Ready,
}

/// How to stand up one config: its servers, the URL scheme of the front one, and the files
/// and socket they need.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// In start order; stopped in reverse.
    pub servers: Vec<Server>,
    /// `http` or `https`: how the load generator talks to the last server.
    pub scheme: &'static str,
    /// The Unix socket between terminator and upstream, removed after the measurement.
    pub socket: Option<PathBuf>,
    /// Config files to write before starting the servers (peers').
    pub files: Vec<(PathBuf, String)>,
    /// A private folder to create first (a peer's pid file and the like).
    pub scratch: Option<PathBuf>,
}

/// What a recipe is built from: the run's binaries, certificate, CPUs and folders.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
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
    /// Certificate chain and key in one file, for the peers that want that.
    pub combined_pem: &'a Path,
    /// The peers found on this machine.
    pub peers: &'a [Peer],
    /// Where peers' config files go (the run folder's `configs/`).
    pub config_dir: &'a Path,
    /// A free loopback port for a peer.
    pub peer_port: u16,
    /// The most connections a peer must hold open at once.
    pub max_connections: u64,
    /// The harness runs as root.
    pub root: bool,
}

/// The recipe for `variant`.
pub fn for_variant(variant: &Variant, inputs: &Inputs<'_>) -> Recipe {
    let backend = variant.backend_name();
    match variant.config {
        ConfigName::Http => alone(
            echo(inputs, "http", LOOPBACK_ANY_PORT.into(), Vec::new()),
            "http",
        ),
        ConfigName::HttpsRustls | ConfigName::HttpsOpenssl | ConfigName::HttpsNativeTls => {
            let listen = LOOPBACK_ANY_PORT.into();
            alone(
                echo(inputs, "https", listen, tls_args(inputs, backend)),
                "https",
            )
        }
        ConfigName::ProxyRustls | ConfigName::ProxyOpenssl | ConfigName::ProxyNativeTls => {
            proxied(inputs, Some(backend))
        }
        ConfigName::Relay => proxied(inputs, None),
        peer @ (ConfigName::Haproxy
        | ConfigName::HaproxyAwslc
        | ConfigName::Nginx
        | ConfigName::Hitch
        | ConfigName::Stunnel) => peer_in_front(inputs, peer),
    }
}

/// One server that answers the load generator itself.
fn alone(server: Server, scheme: &'static str) -> Recipe {
    Recipe {
        servers: vec![server],
        scheme,
        socket: None,
        files: Vec::new(),
        scratch: None,
    }
}

/// The echo-server on a Unix socket and our proxy in front of it: terminating TLS with
/// `backend`, or (`None`) relaying plain TCP.
fn proxied(inputs: &Inputs<'_>, backend: Option<&str>) -> Recipe {
    let socket = socket_path(inputs);
    let mut upstream = OsString::from("unix:");
    upstream.push(&socket);
    let mut args: Vec<OsString> = vec![
        "--listen".into(),
        LOOPBACK_ANY_PORT.into(),
        "--upstream".into(),
        upstream,
    ];
    match backend {
        Some(backend) => args.extend(tls_args(inputs, backend)),
        None => args.push("--no-tls".into()),
    }
    args.extend([
        "--threads".into(),
        inputs.server_cpus.len().to_string().into(),
    ]);
    Recipe {
        servers: vec![
            echo(inputs, "unix", socket.clone().into_os_string(), Vec::new()),
            Server {
                role: Role::Terminator,
                spec: spec("proxy", &inputs.bins.proxy, args, inputs),
                ready: Ready::Line,
            },
        ],
        scheme: if backend.is_some() { "https" } else { "http" },
        socket: Some(socket),
        files: Vec::new(),
        scratch: None,
    }
}

/// The echo-server on a Unix socket and `peer` in front of it, from a config file written
/// into the run folder; the peer is ready when its port accepts.
fn peer_in_front(inputs: &Inputs<'_>, peer: ConfigName) -> Recipe {
    let socket = socket_path(inputs);
    let found = inputs.peers.iter().find(|p| p.config == peer);
    let program = found.map_or_else(|| PathBuf::from(peer.name()), |p| p.program.clone());
    let stream_module = found.map_or_else(
        || PathBuf::from(peers::NGINX_STREAM_MODULE),
        Peer::stream_module,
    );
    let scratch = inputs.runtime_dir.join(format!("{}-{peer}", inputs.index));
    let (ext, text) = peers::config_file(
        peer,
        &peers::Setup {
            port: inputs.peer_port,
            upstream: &socket,
            cert: &inputs.cert.cert,
            key: &inputs.cert.key,
            combined: inputs.combined_pem,
            threads: inputs.server_cpus.len(),
            max_connections: inputs.max_connections,
            scratch: &scratch,
            root: inputs.root,
            stream_module: &stream_module,
            limits: None,
        },
    );
    let mut name = inputs
        .log_stem
        .file_name()
        .map(OsString::from)
        .unwrap_or_default();
    name.push(format!("-{peer}.{ext}"));
    let conf = inputs.config_dir.join(name);
    let args = peers::args(peer, &conf, &scratch);
    Recipe {
        servers: vec![
            echo(inputs, "unix", socket.clone().into_os_string(), Vec::new()),
            Server {
                role: Role::Terminator,
                spec: Spec {
                    wait_ready: false,
                    ..spec(peer.name(), &program, args, inputs)
                },
                ready: Ready::Port(inputs.peer_port),
            },
        ],
        scheme: "https",
        socket: Some(socket),
        files: vec![(conf, text)],
        scratch: Some(scratch),
    }
}

/// The echo-server in `mode` (`http`, `https`, `unix`) on `listen`, with `extra` flags.
pub fn echo(inputs: &Inputs<'_>, mode: &str, listen: OsString, extra: Vec<OsString>) -> Server {
    let mut args: Vec<OsString> = vec!["--mode".into(), mode.into(), "--listen".into(), listen];
    args.extend(extra);
    args.extend([
        "--threads".into(),
        inputs.server_cpus.len().to_string().into(),
    ]);
    Server {
        role: Role::Upstream,
        spec: spec("echo", &inputs.bins.echo, args, inputs),
        ready: Ready::Line,
    }
}

/// The TLS flags our binaries share: backend, certificate and key.
fn tls_args(inputs: &Inputs<'_>, backend: &str) -> Vec<OsString> {
    vec![
        "--tls-backend".into(),
        backend.into(),
        "--cert".into(),
        inputs.cert.cert.as_os_str().to_owned(),
        "--key".into(),
        inputs.cert.key.as_os_str().to_owned(),
    ]
}

/// The Unix socket between terminator and upstream, one per measurement.
pub fn socket_path(inputs: &Inputs<'_>) -> PathBuf {
    inputs.runtime_dir.join(format!("{}.sock", inputs.index))
}

/// A server's spec: pinned to the server CPUs, logged under the measurement's stem.
pub fn spec(name: &str, program: &Path, args: Vec<OsString>, inputs: &Inputs<'_>) -> Spec {
    Spec {
        name: name.to_owned(),
        program: program.to_owned(),
        args,
        cpus: inputs.server_cpus.clone(),
        stdout_log: log_path(inputs.log_stem, name, "out"),
        stderr_log: log_path(inputs.log_stem, name, "err"),
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

    /// Binaries under /b and a certificate under /r: paths only, nothing is read.
    fn fake_bins_and_cert() -> (Bins, CertPaths) {
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
        (bins, cert)
    }

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
        let (bins, cert) = fake_bins_and_cert();
        let cpus: CpuList = "0-2".parse().unwrap();
        let inputs = Inputs {
            bins: &bins,
            cert: &cert,
            server_cpus: &cpus,
            runtime_dir: Path::new("/tmp/h"),
            log_stem: Path::new("/out/logs/1-proxy-rustls-ring-10"),
            index: 7,
            combined_pem: Path::new("/r/combined.pem"),
            peers: &[],
            config_dir: Path::new("/out/configs"),
            peer_port: 0,
            max_connections: 1024,
            root: false,
        };
        let variant = Variant {
            config: ConfigName::ProxyRustls,
            backend: Some(Backend::RustlsRing),
        };
        let recipe = for_variant(&variant, &inputs);
        assert_eq!(recipe.scheme, "https");
        assert_eq!(recipe.socket.as_deref(), Some(Path::new("/tmp/h/7.sock")));
        let [echo, proxy] = &recipe.servers[..] else {
            panic!("two servers expected")
        };
        assert_eq!(echo.role, Role::Upstream);
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

        let http = super::for_variant(
            &Variant {
                config: ConfigName::Http,
                backend: None,
            },
            &inputs,
        );
        assert_eq!(http.scheme, "http");
        assert_eq!(
            args_of(&http.servers[0]),
            "--mode http --listen 127.0.0.1:0 --threads 3"
        );
        assert_eq!(url("http", "127.0.0.1:5"), "http://127.0.0.1:5/");
    }

    #[test]
    fn peer_stack_writes_its_config_and_waits_for_its_port() {
        let (bins, cert) = fake_bins_and_cert();
        let cpus: CpuList = "0".parse().unwrap();
        let peers = [Peer {
            config: ConfigName::Haproxy,
            program: "/usr/sbin/haproxy".into(),
            version: "HAProxy version 2.6".into(),
            origin: crate::peers::Origin::System,
            tls_library: "OpenSSL 3.0.19".into(),
        }];
        let inputs = Inputs {
            bins: &bins,
            cert: &cert,
            server_cpus: &cpus,
            runtime_dir: Path::new("/tmp/h"),
            log_stem: Path::new("/out/logs/1-haproxy-10"),
            index: 3,
            combined_pem: Path::new("/r/combined.pem"),
            peers: &peers,
            config_dir: Path::new("/out/configs"),
            peer_port: 40123,
            max_connections: 2048,
            root: true,
        };
        let variant = Variant {
            config: ConfigName::Haproxy,
            backend: None,
        };
        let recipe = for_variant(&variant, &inputs);
        let [echo, haproxy] = &recipe.servers[..] else {
            panic!("two servers expected")
        };
        assert_eq!(echo.ready, Ready::Line);
        assert_eq!(haproxy.ready, Ready::Port(40123));
        assert!(!haproxy.spec.wait_ready);
        assert_eq!(haproxy.spec.program, Path::new("/usr/sbin/haproxy"));
        assert_eq!(args_of(haproxy), "-f /out/configs/1-haproxy-10-haproxy.cfg");
        let [(path, text)] = &recipe.files[..] else {
            panic!("one config file expected")
        };
        assert_eq!(path, Path::new("/out/configs/1-haproxy-10-haproxy.cfg"));
        assert!(
            text.contains("bind 127.0.0.1:40123 ssl crt /r/combined.pem"),
            "{text}"
        );
        assert!(text.contains("server echo /tmp/h/3.sock"), "{text}");
        assert_eq!(
            recipe.scratch.as_deref(),
            Some(Path::new("/tmp/h/3-haproxy"))
        );
    }
}
