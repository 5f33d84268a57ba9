//! One stack: the server processes of one measured config, started in order from its
//! [`recipe::Recipe`] (config files written first), each pinned and waited for, sampled
//! while the load runs, and stopped with a verdict on how each one stopped.

pub mod recipe;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::procs::{Interrupted, Ledger, Proc, Stop, Stopped};
use recipe::{Ready, Recipe, Role};

/// The servers of one measurement, started, ready and their pinning verified. Dropping it
/// kills whatever still runs and removes the Unix socket between them.
#[derive(Debug)]
pub struct Stack {
    /// Where the load generator connects: the front server's address.
    pub url: String,
    /// The CPU list applied to the servers.
    pub cpus: String,
    servers: Vec<Running>,
    _socket: SocketFile,
}

/// One started server.
#[derive(Debug)]
struct Running {
    role: Role,
    proc: Proc,
    /// A peer (HAProxy, ...): dying of the SIGTERM it was sent is its clean stop.
    peer: bool,
}

/// How to wait for the servers of a stack.
#[derive(Debug, Clone, Copy)]
pub struct Waits<'a> {
    pub stop: &'a Stop,
    /// How long a server may take to be ready.
    pub ready_timeout: Duration,
}

impl Stack {
    /// Starts `recipe`'s servers in order, waiting for each to be ready and checking its
    /// pinning. `label` names the measurement in the children ledger.
    pub fn start(
        recipe: &Recipe,
        label: &str,
        ledger: &mut Ledger,
        waits: Waits<'_>,
    ) -> anyhow::Result<Stack> {
        let socket = SocketFile(recipe.socket.clone());
        if let Some(dir) = &recipe.scratch {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for (path, text) in &recipe.files {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let mut servers = Vec::new();
        let mut front = String::new();
        let mut cpus = String::new();
        for server in &recipe.servers {
            let mut p = Proc::spawn(&server.spec, ledger, label)?;
            front = match server.ready {
                Ready::Line => p.wait_ready(waits.stop, waits.ready_timeout),
                Ready::Port(port) => p.wait_port(port, waits.stop, waits.ready_timeout),
            }
            .with_context(|| format!("starting {}", server.spec.name))?;
            cpus = p.verify_affinity()?.to_string();
            servers.push(Running {
                role: server.role,
                proc: p,
                peer: matches!(server.ready, Ready::Port(_)),
            });
        }
        Ok(Stack {
            url: recipe::url(recipe.scheme, &front),
            cpus,
            servers,
            _socket: socket,
        })
    }

    /// [`Stack::start`] with a fresh recipe each time, tried up to `tries` times in all: the
    /// free port picked for a peer can be taken by another program before the peer binds
    /// it. The last failure is the error.
    pub fn start_retrying(
        tries: u32,
        mut recipe: impl FnMut() -> anyhow::Result<Recipe>,
        label: &str,
        ledger: &mut Ledger,
        waits: Waits<'_>,
    ) -> anyhow::Result<Stack> {
        let mut attempt = 1;
        loop {
            match Stack::start(&recipe()?, label, ledger, waits) {
                Err(e) if attempt < tries && !e.is::<Interrupted>() => {
                    eprintln!("harness: {label}: {e:#}; starting it again on another port");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Each server's role, in start order.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        self.servers.iter().map(|s| s.role)
    }

    /// CPU seconds of each server, in order; a server that died mid-run is an error.
    pub fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        self.servers
            .iter()
            .map(|Running { proc: p, .. }| {
                p.cpu_seconds().with_context(|| {
                    format!(
                        "{} (pid {}) is gone during the measurement{}",
                        p.name,
                        p.pid,
                        p.stderr_tail()
                    )
                })
            })
            .collect()
    }

    /// Resident memory of each server now, in order.
    pub fn rss_kib(&self) -> anyhow::Result<Vec<u64>> {
        self.servers.iter().map(|s| s.proc.rss_kib()).collect()
    }

    /// Peak resident memory of each server so far, in order (`None` where unreadable).
    pub fn peak_rss_kib(&self) -> Vec<Option<u64>> {
        self.servers
            .iter()
            .map(|s| s.proc.peak_rss_kib().ok())
            .collect()
    }

    /// Stops the servers, the front first, so the backend sees its clients leave before its
    /// own stop; returns what went wrong on the way, one remark per server, for the row.
    pub fn stop(&mut self) -> anyhow::Result<Vec<String>> {
        let mut problems = Vec::new();
        for server in self.servers.iter_mut().rev() {
            let stopped = server.proc.stop(STOP_GRACE)?;
            if let Some(problem) = stop_problem(&stopped, server) {
                problems.push(format!("{problem}{}", server.proc.stderr_tail()));
            }
        }
        Ok(problems)
    }
}

/// What went wrong when `server` was stopped, if anything. Ours must exit 0 on SIGTERM (the
/// process contract); HAProxy's documented answer to SIGTERM is to die of it at once, so a
/// peer killed by the SIGTERM it was sent stopped cleanly.
fn stop_problem(stopped: &Stopped, server: &Running) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let sigterm = nix::sys::signal::Signal::SIGTERM as i32;
    let clean_peer_stop =
        !stopped.early && !stopped.killed && stopped.status.signal() == Some(sigterm);
    if server.peer && clean_peer_stop {
        return None;
    }
    stopped.problem(&server.proc.name)
}

/// Whether the harness runs as root (the owner of `/proc/self` is the effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A loopback port nobody listens on now, for a peer (peers cannot report the port the
/// kernel gave them). Another program could take it before the peer binds; the peer then
/// fails to start, which the measurement reports.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("finding a free loopback port for a peer")?;
    Ok(listener.local_addr()?.port())
}

/// Removes a Unix socket file when the measurement ends, however it ends: a server killed
/// with SIGKILL cannot remove its own.
#[derive(Debug)]
struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A server gets this long to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
