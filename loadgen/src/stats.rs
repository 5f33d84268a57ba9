//! Per-thread statistics: plain counters and HdrHistograms owned by one event loop (no
//! locks, no atomics on the hot path), merged once at the end of the run.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::tls::Negotiated;

/// Errors by kind, counted in the measured period only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    /// TCP connect or TLS handshake failed.
    pub connect: u64,
    /// Reading the response failed: reset, early close, malformed response.
    pub read: u64,
    /// Writing the request failed.
    pub write: u64,
    /// No complete response within `--timeout`.
    pub timeout: u64,
    /// A complete response with status 400 or above.
    pub status: u64,
    /// A complete response whose body is not the echo of the request body.
    pub body_mismatch: u64,
    pub total: u64,
}

impl Errors {
    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.read += other.read;
        self.write += other.write;
        self.timeout += other.timeout;
        self.status += other.status;
        self.body_mismatch += other.body_mismatch;
        self.total += other.total;
    }
}

/// Which error counter an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Connect,
    Read,
    Write,
    Timeout,
    Status,
    BodyMismatch,
}

/// One thread's results. Latencies are recorded in microseconds.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Closed loop: from the request's start. Open loop: from its intended send time
    /// (coordinated-omission corrected).
    pub latency: Histogram<u64>,
    /// Open loop only: from the actual start.
    pub latency_uncorrected: Option<Histogram<u64>>,
    /// Responses completed in the measured period (any status, any body).
    pub requests: u64,
    /// Of those, the ones with a 1xx-3xx status and the expected body.
    pub ok: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Open loop: requests started more than [`LATE_AFTER`] after their intended time.
    pub late: u64,
    pub errors: Errors,
    /// TLS handshakes completed over the whole run (opening the connections included).
    pub handshakes: u64,
    pub resumed: u64,
    /// The first handshake's parameters.
    pub tls: Option<Negotiated>,
    /// Idle runs: held connections the server closed (EOF or reset) during the hold.
    pub closed_by_server: u64,
    /// The first error seen (any period), for the one-line diagnosis when nothing worked.
    pub first_error: Option<String>,
}

impl Stats {
    pub fn new(open_loop: bool) -> Stats {
        Stats {
            latency: new_histogram(),
            latency_uncorrected: open_loop.then(new_histogram),
            requests: 0,
            ok: 0,
            bytes_sent: 0,
            bytes_received: 0,
            late: 0,
            errors: Errors::default(),
            handshakes: 0,
            resumed: 0,
            tls: None,
            closed_by_server: 0,
            first_error: None,
        }
    }

    /// A completed response in the measured period.
    pub fn record(&mut self, latency: Duration, uncorrected: Duration, sent: u64, received: u64) {
        self.requests += 1;
        self.bytes_sent += sent;
        self.bytes_received += received;
        self.latency.saturating_record(micros(latency));
        if let Some(h) = &mut self.latency_uncorrected {
            h.saturating_record(micros(uncorrected));
        }
    }

    pub fn error(&mut self, kind: ErrorKind) {
        let slot = match kind {
            ErrorKind::Connect => &mut self.errors.connect,
            ErrorKind::Read => &mut self.errors.read,
            ErrorKind::Write => &mut self.errors.write,
            ErrorKind::Timeout => &mut self.errors.timeout,
            ErrorKind::Status => &mut self.errors.status,
            ErrorKind::BodyMismatch => &mut self.errors.body_mismatch,
        };
        *slot += 1;
        self.errors.total += 1;
    }

    pub fn note_error(&mut self, message: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    pub fn handshake(&mut self, negotiated: Negotiated) {
        self.handshakes += 1;
        self.resumed += u64::from(negotiated.resumed);
        if self.tls.is_none() {
            self.tls = Some(negotiated);
        }
    }

    /// Folds another thread's results into these.
    pub fn merge(&mut self, other: Stats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        if let (Some(mine), Some(theirs)) =
            (&mut self.latency_uncorrected, &other.latency_uncorrected)
        {
            let _ = mine.add(theirs);
        }
        self.requests += other.requests;
        self.ok += other.ok;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.late += other.late;
        self.errors.add(&other.errors);
        self.handshakes += other.handshakes;
        self.resumed += other.resumed;
        if self.tls.is_none() {
            self.tls = other.tls;
        }
        self.closed_by_server += other.closed_by_server;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// A histogram from 1 µs to one hour at 3 significant digits (about 200 KiB, fixed: an
/// hour-long run uses the same memory as a second-long one; longer latencies saturate).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG)
        .expect("constant bounds are valid: 1 <= low, high >= 2 * low, 3 significant digits")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Largest latency tracked: one hour, in µs.
pub const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits of every latency histogram: 0.1% resolution, wrk2's.
pub const HISTOGRAM_SIGFIG: u8 = 3;
/// An open-loop request started later than this after its intended time counts as late:
/// the event loop's timers tick every millisecond, so less is not lateness but resolution.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new(true);
        let mut b = Stats::new(true);
        a.record(Duration::from_millis(1), Duration::from_micros(500), 10, 20);
        b.record(Duration::from_millis(3), Duration::from_millis(2), 10, 20);
        b.error(ErrorKind::Timeout);
        b.note_error(|| "first".into());
        a.closed_by_server = 1;
        b.closed_by_server = 2;
        a.merge(b);
        assert_eq!(a.closed_by_server, 3);
        assert_eq!(a.requests, 2);
        assert_eq!((a.bytes_sent, a.bytes_received), (20, 40));
        assert_eq!(a.latency.len(), 2);
        assert_eq!(
            a.latency_uncorrected.as_ref().unwrap().max(),
            a.latency_uncorrected
                .as_ref()
                .unwrap()
                .highest_equivalent(2000)
        );
        assert_eq!((a.errors.timeout, a.errors.total), (1, 1));
        assert_eq!(a.first_error.as_deref(), Some("first"));
    }

    #[test]
    fn huge_latencies_saturate_instead_of_failing() {
        let mut s = Stats::new(false);
        s.record(Duration::from_secs(10 * 3600), Duration::ZERO, 0, 0);
        assert_eq!(s.latency.len(), 1);
        assert!(s.latency.max() >= HISTOGRAM_MAX_US);
    }
}
