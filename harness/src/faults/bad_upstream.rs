//! A misbehaving upstream for scenario 5: a Unix-socket listener thread whose connections
//! never answer, read slowly, or push bytes as fast as the proxy takes them. Each
//! connection gets a thread (the scenario opens a handful); every thread stops by itself
//! once the peer goes away or [`BadUpstream`] is dropped.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::cpus::CpuList;

/// What new connections do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Accept and read the request, never answer.
    Silent = 0,
    /// Read [`SLOW_READ_BYTES`] every [`SLOW_READ_EVERY`]; never write.
    SlowReader = 1,
    /// Write as fast as the socket takes it; never read.
    FastWriter = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::SlowReader,
            2 => Mode::FastWriter,
            _ => Mode::Silent,
        }
    }
}

/// Counters over all connections, and the switch that ends the slow reading.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    /// Connections whose peer (the proxy) closed them, by [`Mode`].
    pub closed_by_peer: [AtomicU64; 3],
    /// Set: slow readers read at full speed from now on (the backend recovered).
    pub hurry: AtomicBool,
}

/// The listener and its threads; dropping it stops them all and removes the socket.
#[derive(Debug)]
pub struct BadUpstream {
    pub path: PathBuf,
    pub stats: Arc<Stats>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BadUpstream {
    /// Listens on `path`; its threads run on `cpus` (the server side of the split).
    pub fn start(path: &Path, cpus: &CpuList) -> anyhow::Result<BadUpstream> {
        let _ = std::fs::remove_file(path);
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("making the bad backend's listener non-blocking")?;
        let stats = Arc::new(Stats::default());
        let mode = Arc::new(AtomicU8::new(Mode::Silent as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stats, mode, stop, cpus) =
                (stats.clone(), mode.clone(), stop.clone(), cpus.clone());
            std::thread::Builder::new()
                .name("bad-backend".into())
                .spawn(move || accept_loop(listener, &stats, &mode, &stop, &cpus))
                .context("starting the bad backend")?
        };
        Ok(BadUpstream {
            path: path.to_owned(),
            stats,
            mode,
            stop,
            thread: Some(thread),
        })
    }

    /// What connections accepted from now on do.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    pub fn read_bytes(&self) -> u64 {
        self.stats.read_bytes.load(Ordering::SeqCst)
    }

    pub fn written_bytes(&self) -> u64 {
        self.stats.written_bytes.load(Ordering::SeqCst)
    }

    /// Slow readers read at full speed from now on.
    pub fn hurry(&self) {
        self.stats.hurry.store(true, Ordering::SeqCst);
    }

    /// Connections of `mode` that the proxy closed.
    pub fn closed_by_peer(&self, mode: Mode) -> u64 {
        self.stats.closed_by_peer[mode as usize].load(Ordering::SeqCst)
    }
}

impl Drop for BadUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(
    listener: UnixListener,
    stats: &Arc<Stats>,
    mode: &AtomicU8,
    stop: &Arc<AtomicBool>,
    cpus: &CpuList,
) {
    pin_thread(cpus);
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                stats.accepted.fetch_add(1, Ordering::SeqCst);
                let mode = Mode::from_u8(mode.load(Ordering::SeqCst));
                let (stats, stop, cpus) = (stats.clone(), stop.clone(), cpus.clone());
                let spawned = std::thread::Builder::new()
                    .name("bad-backend-conn".into())
                    .spawn(move || {
                        pin_thread(&cpus);
                        serve(stream, mode, &stats, &stop);
                    });
                if let Ok(handle) = spawned {
                    conns.push(handle);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn serve(mut stream: UnixStream, mode: Mode, stats: &Stats, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(POLL));
    let _ = stream.set_write_timeout(Some(POLL));
    let mut buf = [0u8; SLOW_READ_BYTES];
    let chunk = vec![b'x'; FAST_WRITE_CHUNK];
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let peer_closed = loop {
        if stop.load(Ordering::SeqCst) {
            break false;
        }
        match mode {
            // Reads (and drops) what comes, so that it sees the proxy hang up.
            Mode::Silent | Mode::SlowReader => match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    stats.read_bytes.fetch_add(n as u64, Ordering::SeqCst);
                    if mode == Mode::SlowReader && !stats.hurry.load(Ordering::SeqCst) {
                        std::thread::sleep(SLOW_READ_EVERY);
                    }
                }
                Err(e) if idle(&e) => {}
                Err(_) => break true,
            },
            Mode::FastWriter => match stream.write(&chunk) {
                Ok(n) => {
                    stats.written_bytes.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e) if idle(&e) => {}
                Err(_) => break true,
            },
        }
    };
    if peer_closed {
        stats.closed_by_peer[mode as usize].fetch_add(1, Ordering::SeqCst);
    }
}

fn pin_thread(cpus: &CpuList) {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus.cpus() {
        let _ = set.set(cpu);
    }
    // Best effort: an unpinned backend thread only makes the figures noisier.
    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
}

/// How often threads look at their socket and the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// The slow reader's pace: 1 KiB per 10 ms, about 100 KiB/s, far below what a client pushes.
const SLOW_READ_BYTES: usize = 1024;
const SLOW_READ_EVERY: Duration = Duration::from_millis(10);
/// The fast writer's write size.
const FAST_WRITE_CHUNK: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn each_mode_misbehaves_and_notices_the_peer_leave() {
        let dir = tempfile::tempdir().unwrap();
        let cpus = crate::cpus::own_mask().unwrap();
        let backend = BadUpstream::start(&dir.path().join("bad.sock"), &cpus).unwrap();

        backend.set_mode(Mode::Silent);
        let mut c = UnixStream::connect(&backend.path).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert!(c.read(&mut buf).is_err(), "silent means no answer");
        drop(c);
        wait_until("silent peer closed", || {
            backend.closed_by_peer(Mode::Silent) == 1
        });

        backend.set_mode(Mode::SlowReader);
        let mut c = UnixStream::connect(&backend.path).unwrap();
        c.write_all(&[0u8; 4096]).unwrap();
        wait_until("slow reads", || backend.read_bytes() >= 2048);
        // 64 KiB at the slow pace would take 0.6 s; hurried, it goes at once.
        backend.hurry();
        c.write_all(&[0u8; 64 * 1024]).unwrap();
        wait_until("hurried reads", || backend.read_bytes() >= 68 * 1024);
        drop(c);
        wait_until("slow peer closed", || {
            backend.closed_by_peer(Mode::SlowReader) == 1
        });

        backend.set_mode(Mode::FastWriter);
        let c = UnixStream::connect(&backend.path).unwrap();
        wait_until("fast writes", || backend.written_bytes() > 0);
        // Nobody reads: the writer stalls at the socket buffer, it does not spin up memory.
        std::thread::sleep(Duration::from_millis(100));
        let stalled = backend.written_bytes();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(backend.written_bytes(), stalled);
        drop(c);
        wait_until("fast peer closed", || {
            backend.closed_by_peer(Mode::FastWriter) == 1
        });
        assert_eq!(backend.accepted(), 3);
        let path = backend.path.clone();
        drop(backend);
        assert!(!path.exists());
    }
}
