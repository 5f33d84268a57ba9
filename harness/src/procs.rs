//! Child processes: each one pinned to its CPUs before exec, in its own process group (so
//! one signal reaches everything it started), killed if the harness dies, logged to files,
//! watched for its readiness line, and stopped with SIGTERM then SIGKILL; its figures (CPU
//! time, peak RSS, the CPU list in force) come from [`crate::procfs`]. Also the stop flag
//! (SIGINT/SIGTERM of the harness) every wait looks at, and the ledger of children. Larger
//! than most files because `Proc`'s methods all guard one child's group, logs and reader
//! thread; split, each part would need the others' private state.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, LineWriter, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sched::CpuSet;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::cpus::CpuList;
use crate::procfs::{cpu_seconds, descendants, proc_file, status_field};

/// Set by SIGINT/SIGTERM; every wait in the harness checks it.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

/// The error a wait returns once a stop was asked for: the run loop tells it from a
/// failure by downcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

impl Stop {
    /// A flag raised by the first SIGINT or SIGTERM. A second one exits at once (status
    /// 130); the children still die then, through their parent-death signal.
    pub fn install() -> anyhow::Result<Stop> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Stop::default();
        for sig in [SIGINT, SIGTERM] {
            // Registered first so that it sees the flag as it was before this signal.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop.0))
                .context("installing a signal handler")?;
            signal_hook::flag::register(sig, Arc::clone(&stop.0))
                .context("installing a signal handler")?;
        }
        Ok(stop)
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once a stop was asked for.
    pub fn check(&self) -> Result<(), Interrupted> {
        if self.requested() {
            Err(Interrupted)
        } else {
            Ok(())
        }
    }

    /// Raises the flag (tests, `--fail-fast`).
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// How to start one child.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `echo`, `proxy`, `loadgen`: in log file names and messages.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cpus: CpuList,
    /// Log files; for a server, stdout is copied here line by line.
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    /// Watch stdout for the `listening on ADDR` line.
    pub wait_ready: bool,
}

/// A running child. Dropping it kills its process group and reaps it, so no error path
/// leaves a process behind.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub pid: u32,
    pub cpus: CpuList,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    child: Child,
    status: Option<ExitStatus>,
    ready: Option<Receiver<String>>,
    reader: Option<JoinHandle<()>>,
}

/// How a stop went.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub status: ExitStatus,
    /// SIGTERM was not enough within the grace period.
    pub killed: bool,
    /// It had exited before it was asked to.
    pub early: bool,
}

impl Stopped {
    /// `None` for a clean stop, else what went wrong, for the row's note.
    pub fn problem(&self, name: &str) -> Option<String> {
        if self.early {
            Some(format!(
                "{name} exited before it was stopped ({})",
                describe(self.status)
            ))
        } else if self.killed {
            Some(format!("{name} ignored SIGTERM and was killed"))
        } else if !self.status.success() {
            Some(format!("{name} stopped with {}", describe(self.status)))
        } else {
            None
        }
    }
}

impl Proc {
    /// Starts `spec`, pinned and in its own process group, and records its PID in `ledger`.
    pub fn spawn(spec: &Spec, ledger: &mut Ledger, label: &str) -> anyhow::Result<Proc> {
        let stderr = File::create(&spec.stderr_log)
            .with_context(|| format!("creating {}", spec.stderr_log.display()))?;
        let stdout_file = File::create(&spec.stdout_log)
            .with_context(|| format!("creating {}", spec.stdout_log.display()))?;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        if spec.wait_ready {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(
                stdout_file
                    .try_clone()
                    .context("duplicating a log file handle")?,
            );
        }
        pin_before_exec(&mut cmd, &spec.cpus)?;
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id();
        ledger.record(pid, label, spec)?;
        let (ready, reader) = match child.stdout.take() {
            Some(out) => {
                let (tx, rx) = mpsc::channel();
                let handle = std::thread::Builder::new()
                    .name(format!("{}-stdout", spec.name))
                    .spawn(move || copy_stdout(out, stdout_file, tx))
                    .context("starting a log thread")?;
                (Some(rx), Some(handle))
            }
            None => (None, None),
        };
        Ok(Proc {
            name: spec.name.clone(),
            pid,
            cpus: spec.cpus.clone(),
            stdout_log: spec.stdout_log.clone(),
            stderr_log: spec.stderr_log.clone(),
            child,
            status: None,
            ready,
            reader,
        })
    }

    /// Waits for the `listening on ADDR` line and returns ADDR.
    pub fn wait_ready(&mut self, stop: &Stop, timeout: Duration) -> anyhow::Result<String> {
        let rx = self
            .ready
            .take()
            .with_context(|| format!("{} was not started to report readiness", self.name))?;
        let deadline = Instant::now() + timeout;
        loop {
            stop.check()?;
            match rx.recv_timeout(POLL) {
                Ok(addr) => return Ok(addr),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.try_wait()? {
                        bail!(self.died_before_ready(status));
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "{} printed no `listening on` line within {}{}",
                            self.name,
                            humantime::format_duration(timeout),
                            self.stderr_tail()
                        );
                    }
                }
                // Its stdout closed: it is exiting (or closed stdout, which is as bad).
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait_for(EXIT_AFTER_EOF, stop)?;
                    match status {
                        Some(status) => bail!(self.died_before_ready(status)),
                        None => bail!(
                            "{} closed its stdout without printing `listening on`{}",
                            self.name,
                            self.stderr_tail()
                        ),
                    }
                }
            }
        }
    }

    fn died_before_ready(&self, status: ExitStatus) -> String {
        format!(
            "{} exited ({}) before printing `listening on`{}",
            self.name,
            describe(status),
            self.stderr_tail()
        )
    }

    /// The exit status if it has exited (reaping it), without blocking.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .with_context(|| format!("waiting for {} (pid {})", self.name, self.pid))?;
        }
        Ok(self.status)
    }

    /// Waits up to `timeout` for it to exit on its own.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        stop: &Stop,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            stop.check()?;
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reads the CPU list in force from `/proc/PID/status` and fails unless it is `self.cpus`.
    pub fn verify_affinity(&self) -> anyhow::Result<CpuList> {
        let status = proc_file(self.pid, "status")?;
        let text = status_field(&status, "Cpus_allowed_list")
            .with_context(|| format!("no Cpus_allowed_list in /proc/{}/status", self.pid))?;
        let applied: CpuList = text
            .parse()
            .with_context(|| format!("/proc/{}/status Cpus_allowed_list", self.pid))?;
        if applied != self.cpus {
            bail!(
                "{} (pid {}) runs on CPUs {applied}, not the {} it was pinned to",
                self.name,
                self.pid,
                self.cpus
            );
        }
        Ok(applied)
    }

    /// User + system CPU seconds so far, over all its threads and its live child
    /// processes (nginx and hitch work in forked workers).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut total = cpu_seconds(self.pid)?;
        for pid in descendants(self.pid) {
            // A worker that exited between the listing and the read counts nothing.
            total += cpu_seconds(pid).unwrap_or(0.0);
        }
        Ok(total)
    }

    /// Peak resident set size (VmHWM), KiB, summed over the process and its children.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        self.memory_kib("VmHWM")
    }

    /// Resident set size now (VmRSS), KiB, summed over the process and its children.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        self.memory_kib("VmRSS")
    }

    /// Proportional set size now, KiB, summed over the process and its children (shared
    /// pages counted once; see [`crate::procfs::pss_kib`]).
    pub fn pss_kib(&self) -> anyhow::Result<u64> {
        crate::procfs::tree_pss_kib(self.pid)
    }

    fn memory_kib(&self, field: &str) -> anyhow::Result<u64> {
        crate::procfs::tree_memory_kib(self.pid, field)
    }

    /// Waits until something accepts TCP connections on `127.0.0.1:port` (a server that
    /// prints no `listening on` line) and returns that address.
    pub fn wait_port(
        &mut self,
        port: u16,
        stop: &Stop,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + timeout;
        loop {
            stop.check()?;
            if std::net::TcpStream::connect_timeout(&addr, POLL).is_ok() {
                return Ok(addr.to_string());
            }
            if let Some(status) = self.try_wait()? {
                bail!(
                    "{} exited ({}) before accepting connections on {addr}{}",
                    self.name,
                    describe(status),
                    self.stderr_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} accepted no connection on {addr} within {}{}",
                    self.name,
                    humantime::format_duration(timeout),
                    self.stderr_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM to its group, SIGKILL after `grace`; reaps it. Never fails to stop it.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<Stopped> {
        if let Some(status) = self.try_wait()? {
            self.sweep_group();
            return Ok(Stopped {
                status,
                killed: false,
                early: true,
            });
        }
        self.signal_group(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        let status = loop {
            if let Some(status) = self.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                killed = true;
                self.signal_group(Signal::SIGKILL);
                let status = self
                    .child
                    .wait()
                    .with_context(|| format!("waiting for {} (pid {})", self.name, self.pid))?;
                self.status = Some(status);
                break status;
            }
            std::thread::sleep(STOP_POLL);
        };
        self.sweep_group();
        Ok(Stopped {
            status,
            killed,
            early: false,
        })
    }

    /// Kills whatever is left in its process group (anything it may have forked).
    fn sweep_group(&mut self) {
        self.signal_group(Signal::SIGKILL);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }

    fn signal_group(&self, signal: Signal) {
        // ESRCH (the group is gone) is the outcome wanted; nothing else can fail here.
        let _ = killpg(Pid::from_raw(self.pid as i32), signal);
    }

    /// The last lines of its stderr log, for error messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr_log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.signal_group(Signal::SIGKILL);
            self.status = self.child.wait().ok();
        }
        self.sweep_group();
    }
}

/// `logs/children.tsv`: every PID the harness started, as it starts it, so that anyone
/// (the interrupt test, a user) can check that none outlived the run.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    path: PathBuf,
}

impl Ledger {
    pub fn create(path: &Path) -> anyhow::Result<Ledger> {
        let mut file =
            File::create(path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(b"pid\tmeasurement\tprocess\tcpus\tcommand\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Ledger {
            file,
            path: path.to_owned(),
        })
    }

    fn record(&mut self, pid: u32, label: &str, spec: &Spec) -> anyhow::Result<()> {
        let command: Vec<String> = std::iter::once(spec.program.as_os_str())
            .chain(spec.args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        writeln!(
            self.file,
            "{pid}\t{label}\t{}\t{}\t{}",
            spec.name,
            spec.cpus,
            command.join(" ")
        )
        .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The only `unsafe` in the harness: a `pre_exec` hook.
#[allow(unsafe_code)]
fn pin_before_exec(cmd: &mut Command, cpus: &CpuList) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    for &cpu in cpus.cpus() {
        set.set(cpu)
            .with_context(|| format!("CPU {cpu} does not fit in a cpu_set_t"))?;
    }
    let parent = nix::unistd::getpid();
    // SAFETY: the hook runs in the child between fork and exec, where only async-signal-safe
    // work is allowed. It makes three plain system calls (prctl, getppid,
    // sched_setaffinity) on values built before the fork; it neither allocates nor locks.
    // The parent-death signal fires when the *thread* that forked exits: the harness
    // spawns only from its main thread, which lives as long as the harness.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                // The harness died between fork and prctl: do not run unwatched.
                return Err(std::io::Error::other("the harness exited"));
            }
            nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
            Ok(())
        });
    }
    Ok(())
}

/// Copies a server's stdout into its log line by line and hands the first
/// `listening on ADDR` line's ADDR to the harness. Runs until the server closes stdout, so
/// a chatty server never blocks on a full pipe.
fn copy_stdout(out: impl std::io::Read, log: File, ready: mpsc::Sender<String>) {
    let mut log = LineWriter::new(log);
    let mut ready = Some(ready);
    let mut reader = BufReader::new(out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&line);
        let text = String::from_utf8_lossy(&line);
        if let Some(addr) = text.trim_end().strip_prefix(READY_PREFIX) {
            if let Some(tx) = ready.take() {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    }
    let _ = log.flush();
}

/// `exit status 1`, `signal 9 (SIGKILL)`.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({s})"),
            Err(_) => format!("signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// `; stderr: <last lines>` of a log, or nothing when it is empty.
pub fn tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(TAIL_LINES);
    format!(
        "; {} says: {}",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        lines[start..].join(" | ")
    )
}

/// The readiness line every server prints (DESIGN.md, "Process contracts").
pub const READY_PREFIX: &str = "listening on ";
/// How often waits look at a child and at the stop flag: short enough that Ctrl-C feels
/// immediate, long enough to cost nothing.
const POLL: Duration = Duration::from_millis(10);
/// Stops are on the critical path of every measurement: poll them finer.
const STOP_POLL: Duration = Duration::from_millis(2);
/// After a server closes stdout, how long to wait for its exit status.
const EXIT_AFTER_EOF: Duration = Duration::from_secs(2);
/// Lines of stderr quoted in an error message.
const TAIL_LINES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, program: &str, args: &[&str], ready: bool) -> Spec {
        Spec {
            name: "test".into(),
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
            cpus: crate::cpus::own_mask().unwrap(),
            stdout_log: dir.join("out"),
            stderr_log: dir.join("err"),
            wait_ready: ready,
        }
    }

    #[test]
    fn children_count_in_memory_and_cpu_and_a_port_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(&dir.path().join("children.tsv")).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A parent that forks two workers, as nginx and hitch do.
        let s = spec(
            dir.path(),
            "sh",
            &["-c", "sleep 30 & sleep 30 & wait"],
            false,
        );
        let mut p = Proc::spawn(&s, &mut ledger, "t").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while descendants(p.pid).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let kids = descendants(p.pid);
        assert_eq!(kids.len(), 2, "{kids:?}");
        let own = crate::procfs::memory_kib(p.pid, "VmRSS").unwrap();
        assert!(p.rss_kib().unwrap() > own, "children's memory is added");
        assert!(p.peak_rss_kib().unwrap() >= p.rss_kib().unwrap() / 2);
        let addr = p
            .wait_port(port, &Stop::default(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(addr, format!("127.0.0.1:{port}"));
        drop(listener);
        // A port bound but not listening refuses connections, and nobody else can take it
        // while it is held (a freed port could be reused by a parallel test).
        use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType};
        use nix::sys::socket::{SockaddrIn, SockaddrLike};
        use std::os::fd::AsRawFd;
        let held = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        bind(held.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).unwrap();
        let refused = getsockname::<SockaddrIn>(held.as_raw_fd()).unwrap();
        assert_eq!(refused.family(), Some(AddressFamily::Inet));
        let err = p
            .wait_port(refused.port(), &Stop::default(), Duration::from_millis(300))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("accepted no connection"),
            "{err:#}"
        );
        p.stop(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn ready_line_pinning_cpu_and_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(&dir.path().join("children.tsv")).unwrap();
        let mask = crate::cpus::own_mask().unwrap();
        let last = CpuList::new(vec![*mask.cpus().last().unwrap()]).unwrap();
        let mut s = spec(
            dir.path(),
            "sh",
            &[
                "-c",
                "echo hello; echo 'listening on 127.0.0.1:1234'; exec sleep 60",
            ],
            true,
        );
        s.cpus = last.clone();
        let stop = Stop::default();
        let mut p = Proc::spawn(&s, &mut ledger, "t").unwrap();
        let addr = p.wait_ready(&stop, Duration::from_secs(30)).unwrap();
        assert_eq!(addr, "127.0.0.1:1234");
        assert_eq!(p.verify_affinity().unwrap(), last);
        assert!(p.cpu_seconds().unwrap() >= 0.0);
        assert!(p.peak_rss_kib().unwrap() > 0);
        let stopped = p.stop(Duration::from_secs(10)).unwrap();
        // `sleep` dies of SIGTERM: not a clean exit, and the note says so.
        assert!(!stopped.killed);
        assert!(stopped.problem("sleep").unwrap().contains("SIGTERM"));
        let log = std::fs::read_to_string(dir.path().join("out")).unwrap();
        assert!(log.starts_with("hello\nlistening on"), "{log}");
        let ledger = std::fs::read_to_string(dir.path().join("children.tsv")).unwrap();
        assert!(ledger.contains(&format!("{}\tt\ttest", p.pid)), "{ledger}");
    }

    #[test]
    fn exit_before_ready_quotes_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(&dir.path().join("children.tsv")).unwrap();
        let s = spec(
            dir.path(),
            "sh",
            &["-c", "echo 'bad flag --x' >&2; exit 2"],
            true,
        );
        let mut p = Proc::spawn(&s, &mut ledger, "t").unwrap();
        let err = p
            .wait_ready(&Stop::default(), Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit status 2"), "{err}");
        assert!(err.contains("bad flag --x"), "{err}");
    }

    #[test]
    fn stop_flag_interrupts_a_wait_and_drop_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::create(&dir.path().join("children.tsv")).unwrap();
        // The shell forks a grandchild: killing the group must take both.
        let s = spec(
            dir.path(),
            "sh",
            &["-c", "sleep 60 & echo $! > pidfile; wait"],
            true,
        );
        let mut s = s;
        s.args = vec![
            "-c".into(),
            format!(
                "sleep 60 & echo $! > {}/grandchild; wait",
                dir.path().display()
            )
            .into(),
        ];
        let stop = Stop::default();
        stop.request();
        let mut p = Proc::spawn(&s, &mut ledger, "t").unwrap();
        let err = p.wait_ready(&stop, Duration::from_secs(30)).unwrap_err();
        assert!(err.is::<Interrupted>());
        let pid = p.pid;
        // Wait (bounded) for the grandchild's PID file, then drop.
        let pidfile = dir.path().join("grandchild");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pidfile.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandchild: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        drop(p);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        // The grandchild was reparented, so someone else reaps it: wait (bounded) until it
        // is gone or a zombie.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crate::procfs::is_gone(grandchild as u32) {
            assert!(
                Instant::now() < deadline,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe(ExitStatus::from_raw(9)), "signal 9 (SIGKILL)");
        assert_eq!(describe(ExitStatus::from_raw(2 << 8)), "exit status 2");
    }
}
