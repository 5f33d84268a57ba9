//! Process-level helpers of the servers (the proxy, and the echo-server through it):
//! graceful-stop signals, rate-limited logging, accept backoff.
//! CPU, worker-count and fd-limit helpers that loadgen needs too live in `sysio::host`.

use std::time::{Duration, Instant};

/// SIGTERM and SIGINT, the graceful-stop signals of every binary here.
///
/// Registered eagerly by [`ShutdownSignal::register`] (inside a tokio runtime), before the
/// readiness line is printed: a signal that arrives right after readiness must mean a
/// graceful stop, not the default action of killing the process.
#[derive(Debug)]
pub struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    pub fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first of the two signals.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Allows one log line per period for a recurring event (a failing upstream under load,
/// a flood of bad handshakes) and counts what it held back.
#[derive(Debug)]
pub struct LogLimit {
    /// Milliseconds since [`epoch`] of the last allowed line, plus one (0 = never).
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogLimit {
    pub const fn new() -> Self {
        LogLimit {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub fn allow(&self, every: Duration) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX) + 1;
        let last = self.last_ms.load(Relaxed);
        let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every_ms {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        match self.last_ms.compare_exchange(last, now, Relaxed, Relaxed) {
            Ok(_) => Some(self.suppressed.swap(0, Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        Self::new()
    }
}

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
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
    fn log_limit_allows_one_line_per_period_and_counts_the_rest() {
        let limit = LogLimit::new();
        assert_eq!(limit.allow(Duration::from_secs(3600)), Some(0));
        assert_eq!(limit.allow(Duration::from_secs(3600)), None);
        assert_eq!(limit.allow(Duration::from_secs(3600)), None);
        assert_eq!(limit.allow(Duration::ZERO), Some(2));
    }
}
