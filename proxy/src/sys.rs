//! Process-level helpers shared by every binary in the workspace.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, CpuSet};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::Pid;

/// The CPUs this process may run on (its affinity mask), in ascending order.
///
/// This, not `nproc`'s online count, is what a pinned process should size its workers by:
/// the harness pins a server to one CPU and expects one worker.
pub fn affinity_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Worker threads to run: `requested`, or one per CPU in the affinity mask.
pub fn worker_count(requested: Option<NonZeroUsize>) -> NonZeroUsize {
    requested.unwrap_or_else(|| {
        NonZeroUsize::new(affinity_cpus().len())
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN)
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (thousands of connections are normal
/// here) and returns the soft limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Resolves on the first SIGTERM or SIGINT: the graceful-stop signals of every binary here.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers there is nothing to wait for but Ctrl-C.
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Keeps an accept loop from spinning when accepts fail (out of file descriptors, out of
/// memory): waits with exponential backoff and logs at most once a second.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            delay: ACCEPT_BACKOFF_MIN,
            last_log: None,
            suppressed: 0,
        }
    }
}

impl AcceptBackoff {
    /// Call after a successful accept.
    pub fn reset(&mut self) {
        self.delay = ACCEPT_BACKOFF_MIN;
    }

    /// Call after a failed accept; returns once it is worth trying again. Errors that are
    /// about one connection (reset before accept) retry at once.
    pub async fn wait(&mut self, err: &std::io::Error) {
        if matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::Interrupted
        ) {
            return;
        }
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::error!(
                error = %err,
                retry_in_ms = self.delay.as_millis() as u64,
                suppressed = self.suppressed,
                "proxy: accept failed; backing off"
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(ACCEPT_BACKOFF_MAX);
    }
}

/// First wait after a failed accept: short, since descriptors often free up at once.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest wait: a recovered server is serving again within this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// At most one accept-error log line per this period.
const LOG_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_not_empty_and_sizes_workers() {
        let cpus = affinity_cpus();
        assert!(!cpus.is_empty());
        assert_eq!(worker_count(None).get(), cpus.len());
        assert_eq!(worker_count(NonZeroUsize::new(3)).get(), 3);
    }

    #[test]
    fn nofile_limit_is_raised_to_hard() {
        let now = raise_nofile_limit().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(now, hard);
    }
}
