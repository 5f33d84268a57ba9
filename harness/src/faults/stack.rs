//! What every scenario stands on: the settings it gives the terminator ([`ProxyOpts`], the
//! proxy's TOML config; a peer gets the same values in its own words, see
//! [`crate::peers::Limits`]), certificates from the suite's CA ([`crate::certs::Pki`]), the
//! echo-server and terminator processes started by the same [`crate::stack`] as every
//! measurement (pinned to the server CPUs, echo on a Unix socket; see [`super::launch`]),
//! and the terminator's figures (RSS and descriptors of its process tree through
//! [`crate::procfs`], the proxy's `/metrics` page). The good clients' load is
//! [`super::load`].

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxy::tls::CertPaths;

use super::launch::{self, Files};
use super::report::{Checks, FaultRow};
use super::terminator::Terminator;
use super::Suite;
use crate::certs::{self, Leaf};
use crate::loadgen::duration_arg;
use crate::procfs::{tree_fds, tree_memory_kib};
use crate::procs::{describe, Proc, Stop};
use crate::stack::recipe::Role;
use crate::stack::Stack;

/// The settings a scenario changes; everything else is the proxy's default. A peer gets
/// the same values in its own config ([`launch::peer_limits`]).
#[derive(Debug, Clone)]
pub struct ProxyOpts {
    pub handshake: Duration,
    pub idle: Duration,
    pub upstream_connect: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// Start the proxy with RLIMIT_NOFILE (soft and hard) lowered to this.
    pub nofile: Option<u64>,
    /// A second listener, on `127.0.0.1`, in front of this Unix socket (the misbehaving
    /// backend); the first (the good clients') then listens on `127.0.0.2`, because the
    /// proxy refuses two listeners with the same configured address, even port 0.
    pub second_upstream: Option<PathBuf>,
}

impl Default for ProxyOpts {
    fn default() -> Self {
        ProxyOpts {
            handshake: HANDSHAKE_TIMEOUT,
            idle: Duration::from_secs(30),
            upstream_connect: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(3),
            max_connections: 50_000,
            nofile: None,
            second_upstream: None,
        }
    }
}

/// The proxy config file for `opts`: a listener on `127.0.0.1:0` to `upstream` (see
/// [`ProxyOpts::second_upstream`] for the second), metrics on `127.0.0.1:0`, TLS by
/// [`BACKEND`](super::BACKEND).
pub fn proxy_toml(opts: &ProxyOpts, cert: &CertPaths, upstream: &Path, threads: usize) -> String {
    let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let d = |v: Duration| s(&duration_arg(v));
    let p = |v: &Path| s(&v.to_string_lossy());
    let unix = |v: &Path| s(&format!("unix:{}", v.to_string_lossy()));
    let mut out = format!(
        "# Written by the harness fault suite.\n\
         threads = {threads}\n\
         max_connections = {}\n\
         metrics_listen = {}\n\
         \n[timeouts]\n\
         handshake = {}\n\
         idle = {}\n\
         upstream_connect = {}\n\
         shutdown_grace = {}\n\
         \n[tls]\n\
         backend = \"{backend}\"\n\
         cert = {}\n\
         key = {}\n\
         \n[[listener]]\n\
         listen = {}\n\
         upstream = {}\n",
        opts.max_connections,
        s("127.0.0.1:0"),
        d(opts.handshake),
        d(opts.idle),
        d(opts.upstream_connect),
        d(opts.shutdown_grace),
        p(&cert.cert),
        p(&cert.key),
        s(&format!(
            "{}:0",
            if opts.second_upstream.is_some() {
                GOOD_LISTEN_IP_WITH_SECOND
            } else {
                "127.0.0.1"
            }
        )),
        unix(upstream),
        backend = super::BACKEND,
    );
    if let Some(second) = &opts.second_upstream {
        out.push_str(&format!(
            "\n[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = {}\n",
            unix(second)
        ));
    }
    out
}

/// The echo-server and the terminator of one scenario (our proxy, or a peer: see
/// [`super::launch`]), with what the scenarios read from it. Its memory and descriptor
/// figures are summed over the terminator's process tree (nginx's master and workers,
/// HAProxy's master and worker, hitch's manager and children; the proxy is one process).
#[derive(Debug)]
pub struct ScenarioStack {
    /// `3-flood-a`: names the log files and the ledger entries.
    pub tag: String,
    stack: Stack,
    /// The echo-server's Unix socket, where [`ScenarioStack::restart_echo`] starts it again.
    echo_socket: PathBuf,
    /// Every TLS listener, in config order.
    pub addrs: Vec<SocketAddr>,
    /// The proxy's `/metrics` listener; peers have none.
    pub metrics: Option<SocketAddr>,
    pub cert: CertPaths,
    /// The same certificate and key in one file (what HAProxy and hitch read).
    combined: PathBuf,
    pub opts: ProxyOpts,
    pub terminator: Terminator,
    /// The leaf the terminator started with.
    pub leaf: Leaf,
    /// The scenario stopped the terminator itself and judged its exit.
    exit_expected: bool,
}

impl ScenarioStack {
    /// Starts echo-server and the suite's current terminator for scenario `tag` and waits
    /// for both to listen.
    pub fn start(suite: &mut Suite<'_>, tag: &str, opts: ProxyOpts) -> anyhow::Result<Self> {
        let dir = suite.scenario_dir(tag)?;
        let files = Files {
            echo_socket: dir.join("echo.sock"),
            cert: CertPaths {
                cert: dir.join("cert.pem"),
                key: dir.join("key.pem"),
            },
            combined: dir.join("combined.pem"),
            dir,
        };
        let leaf = suite.pki.issue(&LEAF_NAMES)?;
        leaf.install(&files.cert)?;
        leaf.install_combined(&files.combined)?;
        let terminator = suite.terminator().clone();
        let (stack, addrs, metrics) = match &terminator {
            Terminator::Proxy { .. } => launch::start_proxy(suite, tag, &opts, &files)?,
            Terminator::Peer(peer) => launch::start_peer(suite, tag, &opts, &files, peer)?,
        };
        Ok(ScenarioStack {
            tag: tag.to_owned(),
            stack,
            echo_socket: files.echo_socket,
            addrs,
            metrics,
            cert: files.cert,
            combined: files.combined,
            opts,
            terminator,
            leaf,
            exit_expected: false,
        })
    }

    /// The first (good clients') listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The terminator's process (a peer's master).
    pub fn proxy(&self) -> &Proc {
        self.stack
            .proc(Role::Terminator)
            .expect("a scenario stack always has its terminator")
    }

    pub fn pid(&self) -> u32 {
        self.proxy().pid
    }

    /// True while the terminator runs.
    pub fn proxy_alive(&mut self) -> bool {
        self.stack
            .proc_mut(Role::Terminator)
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
    }

    /// Waits up to `limit` for the terminator to exit; its status if it did.
    pub fn wait_proxy(
        &mut self,
        limit: Duration,
        stop: &Stop,
    ) -> anyhow::Result<Option<ExitStatus>> {
        match self.stack.proc_mut(Role::Terminator) {
            Some(p) => p.wait_for(limit, stop),
            None => Ok(None),
        }
    }

    /// VmRSS of the terminator's process tree.
    pub fn rss_kib(&self) -> Option<u64> {
        tree_memory_kib(self.pid(), "VmRSS").ok()
    }

    /// Open descriptors of the terminator's process tree.
    pub fn fds(&self) -> Option<u64> {
        tree_fds(self.pid()).map(|(sum, _)| sum)
    }

    /// A value from the proxy's `/metrics` (summed over labels), if it answers; `None` for
    /// a peer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric(self.metrics?, name)
    }

    /// Installs `leaf` where the terminator reads its certificate (both layouts).
    pub fn install_leaf(&self, leaf: &Leaf) -> anyhow::Result<()> {
        leaf.install(&self.cert)?;
        leaf.install_combined(&self.combined)
    }

    /// Replaces the certificate the terminator reads with one that is not a certificate.
    pub fn install_corrupt_cert(&self) -> anyhow::Result<()> {
        certs::write_corrupt_cert(&self.cert.cert)?;
        certs::write_corrupt_cert(&self.combined)
    }

    /// Sends `signal` to the terminator's process (a peer's master).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        kill(Pid::from_raw(self.pid() as i32), signal)
            .with_context(|| format!("sending {signal} to {}", self.terminator.name()))
    }

    /// Waits (up to `limit`) until the terminator's descriptors are back to `target` or
    /// fewer; returns the count then.
    pub fn settle_fds(
        &self,
        target: u64,
        limit: Duration,
        stop: &Stop,
    ) -> anyhow::Result<Option<u64>> {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.fds();
            if now.is_none_or(|n| n <= target) || Instant::now() > deadline {
                return Ok(now);
            }
            stop.check()?;
            std::thread::sleep(SETTLE_POLL);
        }
    }

    /// Kills the echo-server with SIGKILL (a crashed backend) and reaps it.
    pub fn kill_echo(&mut self) -> anyhow::Result<()> {
        self.stack.kill(Role::Upstream)
    }

    /// Starts a new echo-server on the same socket (it replaces the stale socket file).
    pub fn restart_echo(&mut self, suite: &mut Suite<'_>) -> anyhow::Result<()> {
        let tag = format!("{}-restarted", self.tag);
        let echo = launch::echo_server(suite, &tag, &self.echo_socket);
        let label = suite.label(&tag);
        self.stack
            .restart(&echo, &label, suite.inputs.ledger, launch::waits(suite))
            .context("restarting echo-server")
    }

    /// The scenario signals the terminator itself: its exit is not a crash.
    pub fn expect_exit(&mut self) {
        self.exit_expected = true;
    }

    /// Ends the scenario: records a terminator that died (a crash) or does not stop
    /// cleanly on SIGTERM, its peak RSS, and stops everything. A peer that dies of the
    /// SIGTERM stops cleanly too (HAProxy's documented answer to it).
    pub fn finish(mut self, row: &mut FaultRow, checks: &mut Checks) -> anyhow::Result<()> {
        let pid = self.pid();
        let name = self.terminator.name();
        row.proxy_max_rss_kib = max_opt(row.proxy_max_rss_kib, tree_memory_kib(pid, "VmHWM").ok());
        let proxy_grace = self.opts.shutdown_grace + STOP_SLACK;
        let exit_expected = self.exit_expected;
        let peer = self.terminator.peer().is_some();
        let stopped = self.stack.stop_with(|role| match role {
            Role::Terminator => proxy_grace,
            Role::Upstream => STOP_SLACK,
        })?;
        let Some((_, proxy, how)) = stopped.iter().find(|(r, _, _)| *r == Role::Terminator) else {
            return Ok(());
        };
        if how.early && !exit_expected {
            row.proxy_exits += 1;
            checks.require(false, || {
                format!(
                    "{name} (pid {pid}) exited during the scenario ({}){}",
                    describe(how.status),
                    proxy.stderr_tail()
                )
            });
        } else if !how.early {
            let sigterm = Some(Signal::SIGTERM as i32);
            let clean = how.status.success() || (peer && how.status.signal() == sigterm);
            checks.require(clean && !how.killed, || {
                format!(
                    "{name} stops cleanly on SIGTERM: {}{}",
                    how.problem(name).unwrap_or_else(|| describe(how.status)),
                    proxy.stderr_tail()
                )
            });
        }
        Ok(())
    }
}

/// The sum of a metric's samples on a Prometheus text page (`name` or `name{...}` lines).
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Fetches `/metrics` over plain HTTP/1.1 and reads `name`.
pub fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, METRICS_TIMEOUT).ok()?;
    s.set_read_timeout(Some(METRICS_TIMEOUT)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut page = String::new();
    s.read_to_string(&mut page).ok()?;
    metric_value(&page, name)
}

pub fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Where the good clients' listener goes when a second listener takes `127.0.0.1:0`.
pub const GOOD_LISTEN_IP_WITH_SECOND: &str = "127.0.0.2";
/// The names on every leaf the suite issues: both listeners' addresses, and `localhost`.
pub const LEAF_NAMES: [&str; 3] = ["127.0.0.1", GOOD_LISTEN_IP_WITH_SECOND, "localhost"];
/// The suite's handshake timeout: short, so attackers are closed within the scenario.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Beyond the shutdown grace, before a stop turns into SIGKILL.
const STOP_SLACK: Duration = Duration::from_secs(5);
/// Poll period of the settle waits.
const SETTLE_POLL: Duration = Duration::from_millis(20);
/// Limit on one `/metrics` fetch.
const METRICS_TIMEOUT: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Pki;

    #[test]
    fn proxy_config_is_valid_toml_with_the_scenario_settings() {
        let cert = CertPaths {
            cert: "/r/c.pem".into(),
            key: "/r/k.pem".into(),
        };
        let opts = ProxyOpts {
            max_connections: 500,
            idle: Duration::from_millis(2500),
            second_upstream: Some("/r/bad.sock".into()),
            ..ProxyOpts::default()
        };
        let text = proxy_toml(&opts, &cert, Path::new("/r/echo.sock"), 1);
        let v: toml::Value = text.parse().unwrap();
        assert_eq!(v["max_connections"].as_integer(), Some(500));
        assert_eq!(v["threads"].as_integer(), Some(1));
        assert_eq!(v["timeouts"]["handshake"].as_str(), Some("2s"));
        assert_eq!(v["timeouts"]["idle"].as_str(), Some("2500ms"));
        assert_eq!(v["tls"]["cert"].as_str(), Some("/r/c.pem"));
        assert_eq!(
            v["tls"]["backend"].as_str(),
            Some(crate::faults::BACKEND.name())
        );
        let listeners = v["listener"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        assert_eq!(listeners[0]["listen"].as_str(), Some("127.0.0.2:0"));
        assert_eq!(listeners[1]["listen"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(listeners[0]["upstream"].as_str(), Some("unix:/r/echo.sock"));
        assert_eq!(listeners[1]["upstream"].as_str(), Some("unix:/r/bad.sock"));
    }

    #[test]
    fn the_proxy_accepts_the_suites_config() {
        // The proxy's own parser, so a renamed key fails here rather than mid-suite.
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki::create(dir.path()).unwrap();
        let cert = CertPaths {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        pki.issue(&LEAF_NAMES).unwrap().install(&cert).unwrap();
        let opts = ProxyOpts {
            second_upstream: Some(dir.path().join("bad.sock")),
            ..ProxyOpts::default()
        };
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            proxy_toml(&opts, &cert, &dir.path().join("e.sock"), 2),
        )
        .unwrap();
        let config = proxy::config::Config::load(&path).unwrap();
        assert_eq!(config.max_connections.get(), 50_000);
        assert_eq!(config.timeouts.handshake, HANDSHAKE_TIMEOUT);
        assert!(config.metrics_listen.is_some());
        proxy::server::build_acceptors(&config).unwrap();
    }

    #[test]
    fn metrics_pages_are_summed_over_labels() {
        let page = "# HELP x\ntlsoff_connections_active 10\n\
                    tlsoff_connections_refused_total{reason=\"max_connections\"} 7\n\
                    tlsoff_connections_refused_total{reason=\"other\"} 1\n\
                    tlsoff_connections_active_max 99\n";
        assert_eq!(metric_value(page, "tlsoff_connections_active"), Some(10.0));
        assert_eq!(
            metric_value(page, "tlsoff_connections_refused_total"),
            Some(8.0)
        );
        assert_eq!(metric_value(page, "tlsoff_nope"), None);
    }

    #[test]
    fn max_opt_keeps_the_larger_known_figure() {
        assert_eq!(max_opt(Some(1), None), Some(1));
        assert_eq!(max_opt(Some(1), Some(3)), Some(3));
    }
}
