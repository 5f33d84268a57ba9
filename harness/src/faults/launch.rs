//! How a scenario's stack is started: the echo-server on a Unix socket, and in front of it
//! the terminator under attack, pinned to the server CPUs, with its config file written
//! into the run folder's `configs/` (`faults-<tag>-<terminator>.<ext>`). The proxy prints
//! its listeners and metrics address; a peer is given free ports and is ready when they
//! accept. HAProxy runs in master-worker mode (`-W`), its documented reload path.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use proxy::tls::CertPaths;

use super::stack::{proxy_toml, ProxyOpts};
use super::Suite;
use crate::peers::{self, Limits, Peer, Second};
use crate::procs::{Spec, Stop};
use crate::stack::recipe::{Ready, Recipe, Role, Server};
use crate::stack::{free_port, running_as_root, Stack, Waits};

/// The files of one scenario's stack.
#[derive(Debug, Clone)]
pub(super) struct Files {
    /// The scenario's private folder (sockets, certificates, a peer's pid file).
    pub dir: PathBuf,
    pub echo_socket: PathBuf,
    pub cert: CertPaths,
    /// Certificate and key in one file, for HAProxy and hitch.
    pub combined: PathBuf,
}

/// A started stack: its processes, its TLS listeners in config order, and the proxy's
/// metrics address (peers have none).
pub(super) type Started = (Stack, Vec<SocketAddr>, Option<SocketAddr>);

/// Starts the echo-server and our proxy, reading its TOML config.
pub(super) fn start_proxy(
    suite: &mut Suite<'_>,
    tag: &str,
    opts: &ProxyOpts,
    files: &Files,
) -> anyhow::Result<Started> {
    let config = suite.config_path(tag, "toml");
    let threads = suite.inputs.split.server.len();
    let toml = proxy_toml(opts, &files.cert, &files.echo_socket, threads);
    let recipe = Recipe {
        servers: vec![
            echo_server(suite, tag, &files.echo_socket),
            proxy_server(suite, tag, &config, opts.nofile),
        ],
        scheme: "https",
        socket: Some(files.echo_socket.clone()),
        files: vec![(config, toml)],
        scratch: None,
    };
    let label = suite.label(tag);
    let stack = Stack::start(&recipe, &label, suite.inputs.ledger, waits(suite))?;
    // One line per listener, then the metrics line.
    let want = 2 + usize::from(opts.second_upstream.is_some());
    let stdout = &recipe.servers[1].spec.stdout_log;
    let lines = ready_lines(stdout, want, suite.inputs.stop)?;
    let parse = |s: &String| -> anyhow::Result<SocketAddr> {
        s.parse()
            .with_context(|| format!("proxy printed `listening on {s}`"))
    };
    let addrs = lines[..want - 1]
        .iter()
        .map(parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metrics = parse(&lines[want - 1])?;
    Ok((stack, addrs, Some(metrics)))
}

/// Starts the echo-server and `peer`, its config the sweep's plus the suite's limits
/// (`opts` in the peer's words); on free ports, tried again on others if one was taken.
pub(super) fn start_peer(
    suite: &mut Suite<'_>,
    tag: &str,
    opts: &ProxyOpts,
    files: &Files,
    peer: &Peer,
) -> anyhow::Result<Started> {
    let echo = echo_server(suite, tag, &files.echo_socket);
    let scratch = files.dir.join("scratch");
    let cpus = suite.inputs.split.server.clone();
    let threads = cpus.len();
    let logs = (
        suite.log(tag, peer.config.name(), "out"),
        suite.log(tag, peer.config.name(), "err"),
    );
    let module = peer.stream_module();
    let inputs = PeerFiles {
        files,
        scratch: &scratch,
        module: &module,
        threads,
    };
    let (ext, _) = peers::config_file(peer.config, &inputs.setup(0, None));
    let conf = suite.config_path(tag, ext);
    let client_hs = peers::haproxy_has_client_hs(&peer.version);
    let mut ports = (0, 0);
    let recipe = || -> anyhow::Result<Recipe> {
        let port = free_port()?;
        let second = match &opts.second_upstream {
            Some(upstream) => Some(Second {
                port: free_port()?,
                upstream,
            }),
            None => None,
        };
        ports = (port, second.map_or(0, |s| s.port));
        let limits = peer_limits(opts, second, client_hs);
        let (_, text) = peers::config_file(peer.config, &inputs.setup(port, Some(limits)));
        let (program, args) = launch(peer, &conf, &scratch, opts.nofile);
        let server = Server {
            role: Role::Terminator,
            spec: Spec {
                name: peer.config.name().to_owned(),
                program,
                args,
                cpus: cpus.clone(),
                stdout_log: logs.0.clone(),
                stderr_log: logs.1.clone(),
                wait_ready: false,
            },
            ready: Ready::Port(port),
        };
        Ok(Recipe {
            servers: vec![echo.clone(), server],
            scheme: "https",
            socket: Some(files.echo_socket.clone()),
            files: vec![(conf.clone(), text)],
            scratch: Some(scratch.clone()),
        })
    };
    let label = suite.label(tag);
    let stack = Stack::start_retrying(
        PORT_TRIES,
        recipe,
        &label,
        suite.inputs.ledger,
        waits(suite),
    )?;
    let mut addrs = vec![loopback(ports.0)];
    if opts.second_upstream.is_some() {
        wait_port(ports.1, suite.inputs.stop)?;
        addrs.push(loopback(ports.1));
    }
    Ok((stack, addrs, None))
}

/// The peer config's inputs (`port` 0 and no limits only ask for the file's extension).
struct PeerFiles<'a> {
    files: &'a Files,
    scratch: &'a Path,
    /// nginx's stream module ([`Peer::stream_module`]).
    module: &'a Path,
    threads: usize,
}

impl<'a> PeerFiles<'a> {
    fn setup(&self, port: u16, limits: Option<Limits<'a>>) -> peers::Setup<'a> {
        peers::Setup {
            port,
            upstream: &self.files.echo_socket,
            cert: &self.files.cert.cert,
            key: &self.files.cert.key,
            combined: &self.files.combined,
            threads: self.threads,
            max_connections: PEER_HOLDS,
            scratch: self.scratch,
            root: running_as_root(),
            stream_module: self.module,
            limits,
        }
    }
}

/// The suite's [`ProxyOpts`] in the words every peer config shares.
pub(super) fn peer_limits<'a>(
    opts: &ProxyOpts,
    second: Option<Second<'a>>,
    haproxy_client_hs: bool,
) -> Limits<'a> {
    Limits {
        handshake: opts.handshake,
        idle: opts.idle,
        upstream_connect: opts.upstream_connect,
        grace: opts.shutdown_grace,
        max_connections: opts.max_connections as u64,
        nofile: opts.nofile,
        second,
        backlog: LISTEN_BACKLOG,
        haproxy_client_hs,
    }
}

/// The program and arguments that start `peer` with config `conf`: HAProxy with `-W`;
/// through `/bin/sh` when the descriptor limit is lowered (soft and hard, then `exec`, so
/// the PID is the peer's) and for HAProxy, whose master reloads by executing its own
/// `argv[0]` from `$PATH` (the current set's wrapper runs it under that name: its folder
/// goes first in `$PATH`, or the reload would run the host's HAProxy).
pub(super) fn launch(
    peer: &Peer,
    conf: &Path,
    scratch: &Path,
    nofile: Option<u64>,
) -> (PathBuf, Vec<OsString>) {
    let haproxy = matches!(
        peer.config,
        crate::plan::ConfigName::Haproxy | crate::plan::ConfigName::HaproxyAwslc
    );
    let mut args = peers::args(peer.config, conf, scratch);
    if haproxy {
        args.insert(0, "-W".into());
    }
    let mut script = String::new();
    if let Some(n) = nofile {
        script.push_str(&format!("ulimit -n {n} && "));
    }
    if haproxy {
        if let Some(dir) = peer.program.parent() {
            script.push_str(&format!(
                "export PATH={}:\"$PATH\" && ",
                shell_quote(&dir.to_string_lossy())
            ));
        }
    }
    if script.is_empty() {
        return (peer.program.clone(), args);
    }
    script.push_str("exec \"$0\" \"$@\"");
    let mut sh: Vec<OsString> = vec!["-c".into(), script.into(), peer.program.clone().into()];
    sh.extend(args);
    ("/bin/sh".into(), sh)
}

/// `text` in single quotes for `sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// How long the suite waits for a server to be ready, and its stop flag.
pub(super) fn waits<'a>(suite: &Suite<'a>) -> Waits<'a> {
    Waits {
        stop: suite.inputs.stop,
        ready_timeout: READY_TIMEOUT,
    }
}

/// The echo-server of scenario `tag`, on a Unix socket, pinned to the server CPUs.
pub(super) fn echo_server(suite: &Suite<'_>, tag: &str, socket: &Path) -> Server {
    let threads = suite.inputs.split.server.len().to_string();
    Server {
        role: Role::Upstream,
        spec: Spec {
            name: "echo".into(),
            program: suite.inputs.bins.echo.clone(),
            args: vec![
                "--mode".into(),
                "unix".into(),
                "--listen".into(),
                socket.into(),
                "--threads".into(),
                threads.into(),
            ],
            cpus: suite.inputs.split.server.clone(),
            stdout_log: suite.log(tag, "echo", "out"),
            stderr_log: suite.log(tag, "echo", "err"),
            wait_ready: true,
        },
        ready: Ready::Line,
    }
}

/// The proxy of scenario `tag`, reading `config`; with `nofile`, under that descriptor
/// limit.
fn proxy_server(suite: &Suite<'_>, tag: &str, config: &Path, nofile: Option<u64>) -> Server {
    let proxy = suite.inputs.bins.proxy.clone();
    let (program, args): (PathBuf, Vec<OsString>) = match nofile {
        // The shell lowers soft and hard limit (so the proxy cannot raise it back) and
        // then becomes the proxy: same PID, so the figures and signals reach it.
        Some(n) => (
            "/bin/sh".into(),
            vec![
                "-c".into(),
                format!("ulimit -n {n} && exec \"$0\" \"$@\"").into(),
                proxy.into(),
                config.into(),
            ],
        ),
        None => (proxy, vec![config.into()]),
    };
    Server {
        role: Role::Terminator,
        spec: Spec {
            name: "proxy".into(),
            program,
            args,
            cpus: suite.inputs.split.server.clone(),
            stdout_log: suite.log(tag, "proxy", "out"),
            stderr_log: suite.log(tag, "proxy", "err"),
            wait_ready: true,
        },
        ready: Ready::Line,
    }
}

/// The addresses of the first `want` `listening on` lines of a log (the first is already
/// there when this is called; the rest follow within milliseconds).
fn ready_lines(log: &Path, want: usize, stop: &Stop) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(crate::procs::READY_PREFIX))
            .map(|a| a.trim().to_owned())
            .collect();
        if lines.len() >= want {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "the proxy printed {} `listening on` lines, expected {want} ({})",
                lines.len(),
                log.display()
            );
        }
        stop.check()?;
        std::thread::sleep(READY_POLL);
    }
}

/// Waits until a loopback port accepts a connection (a peer's second listener).
fn wait_port(port: u16, stop: &Stop) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while std::net::TcpStream::connect(loopback(port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on the second listener's port {port} after {READY_TIMEOUT:?}");
        }
        stop.check()?;
        std::thread::sleep(READY_POLL);
    }
    Ok(())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// How long a server may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll period of the readiness waits.
const READY_POLL: Duration = Duration::from_millis(20);
/// The proxy's listen backlog (`proxy/src/server.rs`), given to every peer.
const LISTEN_BACKLOG: u32 = 4096;
/// Starts of a peer, each on fresh free ports (another program may take one first).
const PORT_TRIES: u32 = 3;
/// The connections a peer is sized for (nginx allocates its slots up front): more than the
/// suite holds at once (2000 slowloris attackers, 1500 in a flood, plus the good clients).
const PEER_HOLDS: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::Origin;
    use crate::plan::ConfigName;

    fn peer(config: ConfigName, program: &str) -> Peer {
        Peer {
            config,
            program: program.into(),
            version: String::new(),
            origin: Origin::System,
            tls_library: String::new(),
        }
    }

    fn words(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn haproxy_runs_master_worker_with_its_folder_first_in_path() {
        let p = peer(ConfigName::Haproxy, "/p/it's/bin/haproxy");
        let (program, args) = launch(&p, Path::new("/r/h.cfg"), Path::new("/s"), None);
        assert_eq!(program, Path::new("/bin/sh"));
        assert_eq!(
            words(&args),
            [
                "-c",
                "export PATH='/p/it'\\''s/bin':\"$PATH\" && exec \"$0\" \"$@\"",
                "/p/it's/bin/haproxy",
                "-W",
                "-f",
                "/r/h.cfg"
            ]
        );
    }

    #[test]
    fn a_lowered_descriptor_limit_goes_through_the_shell_and_nothing_else_does() {
        let hitch = peer(ConfigName::Hitch, "/usr/sbin/hitch");
        let (program, args) = launch(&hitch, Path::new("/r/h.conf"), Path::new("/s"), None);
        assert_eq!(program, Path::new("/usr/sbin/hitch"));
        assert_eq!(words(&args), ["--config=/r/h.conf"]);
        let (program, args) = launch(&hitch, Path::new("/r/h.conf"), Path::new("/s"), Some(1024));
        assert_eq!(program, Path::new("/bin/sh"));
        assert_eq!(
            words(&args)[..3],
            [
                "-c",
                "ulimit -n 1024 && exec \"$0\" \"$@\"",
                "/usr/sbin/hitch"
            ]
        );
    }

    #[test]
    fn the_suites_opts_become_the_peers_limits() {
        let opts = ProxyOpts {
            max_connections: 500,
            nofile: Some(1024),
            ..ProxyOpts::default()
        };
        let l = peer_limits(&opts, None, true);
        assert_eq!(l.handshake, super::super::stack::HANDSHAKE_TIMEOUT);
        assert_eq!((l.max_connections, l.nofile), (500, Some(1024)));
        assert_eq!(l.grace, opts.shutdown_grace);
        assert_eq!(l.idle, opts.idle);
    }
}
