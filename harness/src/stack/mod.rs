//! One stack: the server processes of one measured config, started in order from its
//! [`recipe::Recipe`] (config files written first), each pinned and waited for, sampled
//! while the load runs, and stopped with a verdict on how each one stopped.

pub mod recipe;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procs::{Interrupted, Ledger, Proc, Stop, Stopped};
use recipe::{Ready, Recipe, Role, Server};

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
    /// From its spawn to its readiness (the `listening on` line, or its port accepting).
    ready_after: Duration,
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
        for server in &recipe.servers {
            let (running, addr) = start_server(server, label, ledger, waits)?;
            front = addr;
            servers.push(running);
        }
        let cpus = servers
            .last()
            .map(|s| s.proc.cpus.to_string())
            .unwrap_or_default();
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

    /// How long the `role` server took from its spawn to being ready (its start-up time).
    pub fn ready_after(&self, role: Role) -> Option<Duration> {
        self.servers
            .iter()
            .find(|s| s.role == role)
            .map(|s| s.ready_after)
    }

    /// The running process of the `role` server, if the stack has one.
    pub fn proc(&self, role: Role) -> Option<&Proc> {
        self.servers
            .iter()
            .find(|s| s.role == role)
            .map(|s| &s.proc)
    }

    /// [`Stack::proc`], to wait for or signal it.
    pub fn proc_mut(&mut self, role: Role) -> Option<&mut Proc> {
        self.servers
            .iter_mut()
            .find(|s| s.role == role)
            .map(|s| &mut s.proc)
    }

    /// Kills the `role` server with SIGKILL (the crash a fault scenario wants) and reaps
    /// it; the stack goes on without it until [`Stack::restart`].
    pub fn kill(&mut self, role: Role) -> anyhow::Result<()> {
        if let Some(i) = self.servers.iter().position(|s| s.role == role) {
            let mut server = self.servers.remove(i);
            let pid = nix::unistd::Pid::from_raw(server.proc.pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            server.proc.stop(KILLED_REAP)?;
        }
        Ok(())
    }

    /// Starts `server` (again, after [`Stack::kill`]) and waits for it, in start order:
    /// an upstream goes first, so it is stopped last.
    pub fn restart(
        &mut self,
        server: &Server,
        label: &str,
        ledger: &mut Ledger,
        waits: Waits<'_>,
    ) -> anyhow::Result<()> {
        let (running, _) = start_server(server, label, ledger, waits)?;
        let at = match server.role {
            Role::Upstream => 0,
            Role::Terminator => self.servers.len(),
        };
        self.servers.insert(at, running);
        Ok(())
    }

    /// Stops the servers, the front first, so the upstream sees its clients leave before its
    /// own stop; returns what went wrong on the way, one remark per server, for the row.
    pub fn stop(&mut self) -> anyhow::Result<Vec<String>> {
        let mut problems = Vec::new();
        for (server, stopped) in self.stop_each(|_| STOP_GRACE)? {
            if let Some(problem) = stop_problem(&stopped, server) {
                problems.push(format!("{problem}{}", server.proc.stderr_tail()));
            }
        }
        Ok(problems)
    }

    /// Stops the servers, the front first, each with `grace(role)` between SIGTERM and
    /// SIGKILL; returns each one's role, process and how it stopped, for a caller with its
    /// own rules (the fault suite's).
    pub fn stop_with(
        &mut self,
        grace: impl Fn(Role) -> Duration,
    ) -> anyhow::Result<Vec<(Role, &Proc, Stopped)>> {
        Ok(self
            .stop_each(grace)?
            .into_iter()
            .map(|(s, stopped)| (s.role, &s.proc, stopped))
            .collect())
    }

    fn stop_each(
        &mut self,
        grace: impl Fn(Role) -> Duration,
    ) -> anyhow::Result<Vec<(&Running, Stopped)>> {
        let mut stopped = Vec::new();
        for server in self.servers.iter_mut().rev() {
            stopped.push(server.proc.stop(grace(server.role))?);
        }
        Ok(self.servers.iter().rev().zip(stopped).collect())
    }
}

/// Spawns one server, waits for it to be ready and checks its pinning; returns it and the
/// address it is ready on.
fn start_server(
    server: &Server,
    label: &str,
    ledger: &mut Ledger,
    waits: Waits<'_>,
) -> anyhow::Result<(Running, String)> {
    let started = Instant::now();
    let mut p = Proc::spawn(&server.spec, ledger, label)?;
    let addr = match server.ready {
        Ready::Line => p.wait_ready(waits.stop, waits.ready_timeout),
        Ready::Port(port) => p.wait_port(port, waits.stop, waits.ready_timeout),
    }
    .with_context(|| format!("starting {}", server.spec.name))?;
    let ready_after = started.elapsed();
    p.verify_affinity()?;
    let running = Running {
        role: server.role,
        proc: p,
        peer: matches!(server.ready, Ready::Port(_)),
        ready_after,
    };
    Ok((running, addr))
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
/// A server killed with SIGKILL is reaped within this.
const KILLED_REAP: Duration = Duration::from_secs(5);
