//! What the scenarios share: the good clients' load and their check, settling after a
//! fault, the descriptor, RSS and recovery checks, peak sampling, the flatness rules of the
//! soak, the formatting of figures, and the constants more than one family uses.

use std::time::{Duration, Instant};

use crate::faults::load::LoadOpts;
use crate::faults::report::{rss_near, Checks, FaultRow};
use crate::faults::stack::{self, ScenarioStack};
use crate::faults::Suite;
use crate::loadgen::Report;
use crate::procfs::{tree_fds, tree_memory_kib};

/// The default good-client load of the suite.
pub(super) fn load_opts(s: &Suite<'_>) -> LoadOpts {
    LoadOpts {
        rate: s.scale.rate,
        connections: s.scale.connections,
        keepalive: true,
        warmup: WARMUP,
        body: GOOD_BODY_BYTES,
    }
}

/// Fills the good-client columns and checks that they had no error.
pub(super) fn good_clients(row: &mut FaultRow, checks: &mut Checks, report: &Report) {
    good_clients_unless(row, checks, report, None);
}

/// [`good_clients`], with the errors criterion `n/a` when `lacks` gives a reason (a
/// terminator that does not drain on its stop signal).
pub(super) fn good_clients_unless(
    row: &mut FaultRow,
    checks: &mut Checks,
    report: &Report,
    lacks: Option<String>,
) {
    row.good_requests = Some(report.requests);
    row.good_errors = Some(report.errors.total);
    row.good_p99_us = Some(report.latency_us.p99);
    checks.require(report.requests > 0, || {
        "good clients complete requests: none did".into()
    });
    checks.require_unless(lacks, report.errors.total == 0, || {
        format!("good-client errors 0: {}", errors_text(report))
    });
}

pub(super) fn errors_text(r: &Report) -> String {
    let e = &r.errors;
    format!(
        "{} errors (connect {}, read {}, write {}, timeout {}, status {}, body mismatch {})",
        e.total, e.connect, e.read, e.write, e.timeout, e.status, e.body_mismatch
    )
}

/// Waits until the terminator's descriptors are back to their count before the fault (up to
/// [`SETTLE_LIMIT`]), then records descriptors and RSS "after".
pub(super) fn settle(
    s: &Suite<'_>,
    stack: &ScenarioStack,
    row: &mut FaultRow,
) -> anyhow::Result<()> {
    let target = row.proxy_fds_before.unwrap_or(0);
    row.proxy_fds_after = stack.settle_fds(target, SETTLE_LIMIT, s.inputs.stop)?;
    // An allocator hands freed memory back to the OS lazily (mimalloc purges freed pages
    // after a delay): give RSS up to RSS_SETTLE_LIMIT to come back before it is judged.
    let deadline = Instant::now() + RSS_SETTLE_LIMIT;
    loop {
        row.proxy_rss_after_kib = stack.rss_kib();
        let back = match (row.proxy_rss_before_kib, row.proxy_rss_after_kib) {
            (Some(before), Some(after)) => rss_near(before, after),
            _ => true,
        };
        if back || Instant::now() >= deadline {
            return Ok(());
        }
        s.sleep(Duration::from_millis(100))?;
    }
}

pub(super) fn fd_leak_check(row: &FaultRow, checks: &mut Checks) {
    if let (Some(before), Some(after)) = (row.proxy_fds_before, row.proxy_fds_after) {
        checks.require(after <= before, || {
            format!(
                "no descriptor left behind: {before} open before, {after} after \
                 {SETTLE_LIMIT:?} to settle"
            )
        });
    }
}

pub(super) fn rss_check(row: &FaultRow, checks: &mut Checks) {
    if let (Some(before), Some(after)) = (row.proxy_rss_before_kib, row.proxy_rss_after_kib) {
        checks.require(rss_near(before, after), || {
            format!(
                "proxy RSS back near its value before the attack: {before} KiB before, \
                 {after} KiB after"
            )
        });
    }
}

pub(super) fn recovery_check(
    checks: &mut Checks,
    phase: &str,
    recovery: &Result<Duration, String>,
) {
    match recovery {
        Ok(took) => {
            checks.require(*took <= RECOVERY, || {
                format!("{phase} a fresh client served within {RECOVERY:?}: took {took:.2?}")
            });
            checks.fact(format!(
                "{phase} a fresh client was served {took:.2?} later"
            ));
        }
        Err(e) => {
            checks.require(false, || {
                format!(
                    "{phase} a fresh client served within {RECOVERY:?}: none within \
                     {RECOVERY_WATCH:?} ({e})"
                )
            });
        }
    }
}

/// Polls `ok` every 20 ms for up to `limit`.
pub(super) fn wait_for(
    s: &Suite<'_>,
    ok: impl Fn() -> bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    while !ok() && Instant::now() < until {
        s.sleep(Duration::from_millis(20))?;
    }
    Ok(())
}

/// Peak VmRSS and descriptor count of a process tree over a period (sums over the tree),
/// and the most descriptors any one of its processes held (a descriptor limit is per
/// process).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Peak {
    pub(super) rss: Option<u64>,
    pub(super) fds: Option<u64>,
    pub(super) fds_one_process: Option<u64>,
}

/// Samples `pid`'s process tree every [`SAMPLE_EVERY`] for `period` (on the attackers'
/// runtime).
pub(super) async fn sample_peak(pid: u32, period: Duration) -> Peak {
    let until = Instant::now() + period;
    let mut peak = Peak::default();
    loop {
        peak.rss = stack::max_opt(peak.rss, tree_memory_kib(pid, "VmRSS").ok());
        let fds = tree_fds(pid);
        peak.fds = stack::max_opt(peak.fds, fds.map(|(sum, _)| sum));
        peak.fds_one_process = stack::max_opt(peak.fds_one_process, fds.map(|(_, most)| most));
        if Instant::now() >= until {
            return peak;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Quarters of a series: the second quarter is the reference (warmed up), the last one
/// is compared with it.
pub(super) fn quarters(v: &[u64]) -> Option<(&[u64], &[u64])> {
    let q = v.len() / 4;
    (q >= 1).then(|| (&v[q..2 * q], &v[v.len() - q..]))
}

/// Flat when the last quarter's mean is within `fraction` + `slack` of the second's.
pub(super) fn flat_mean(v: &[u64], fraction: f64, slack: u64) -> Result<(), String> {
    let Some((reference, last)) = quarters(v) else {
        return Err(format!("{} samples are too few to judge", v.len()));
    };
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let (a, b) = (mean(reference), mean(last));
    if b <= a * (1.0 + fraction) + slack as f64 {
        Ok(())
    } else {
        Err(format!(
            "mean {b:.0} in the last quarter against {a:.0} in the second \
             (allowed +{:.0}% + {slack})",
            fraction * 100.0
        ))
    }
}

/// Flat when the last quarter's median is within `slack` of the second's.
pub(super) fn flat_median(v: &[u64], slack: u64) -> Result<(), String> {
    let Some((reference, last)) = quarters(v) else {
        return Err(format!("{} samples are too few to judge", v.len()));
    };
    let median = |s: &[u64]| {
        let mut s = s.to_vec();
        s.sort_unstable();
        s[s.len() / 2]
    };
    let (a, b) = (median(reference), median(last));
    if b <= a + slack {
        Ok(())
    } else {
        Err(format!(
            "median {b} in the last quarter against {a} in the second (allowed +{slack})"
        ))
    }
}

pub(super) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(super) fn opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

pub(super) fn opt_f(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.0}"))
}

/// Good clients' warm-up before each measured window.
const WARMUP: Duration = Duration::from_secs(1);
/// Good clients' request body: small, as the issue asks.
const GOOD_BODY_BYTES: u64 = 64;
/// How long after its deadline a connection may take to be seen closed.
pub(super) const CLOSE_SLACK: Duration = Duration::from_secs(2);
/// A timeout-driven close may come this much before its nominal time (timer granularity
/// and the time between our connect and the proxy's accept go the other way).
pub(super) const EARLY_TOLERANCE: Duration = Duration::from_millis(100);
/// How long descriptors and gauges may take to return after a fault.
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How long RSS may take to come back near its value before a fault, once the fault's
/// connections are gone.
const RSS_SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// Load kept running after a fault, so the measured window covers its aftermath.
pub(super) const TAIL: Duration = Duration::from_millis(500);
/// The issue's recovery limit once a fault ends, and how long to keep trying after it.
const RECOVERY: Duration = Duration::from_secs(1);
pub(super) const RECOVERY_WATCH: Duration = Duration::from_secs(5);
/// Watch on a connection that should close; beyond it, it hangs.
pub(super) const HANG_WATCH: Duration = Duration::from_secs(3);
/// Sampling period of peaks during an attack.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::Report;

    /// A loadgen report (schema 1), trimmed to what the harness reads.
    const REPORT: &str = r#"{"schema": 1, "connections_opened": 10, "duration_s": 5.0,
        "warmup_s": 1.0, "rate": 1000.0, "body_bytes": 100, "requests": 5000, "rps": 1000.0,
        "late_requests": 0,
        "latency_us": {"mean": 300.0, "stdev": 50.0, "min": 100, "p50": 280, "p90": 400,
                       "p99": 700, "p999": 900, "max": 1200},
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0,
                   "body_mismatch": 0, "total": 0},
        "tls": null,
        "cpu": {"user_s": 0.1, "sys_s": 0.1, "utilization": 0.1, "saturated": false}}"#;

    #[test]
    fn flatness_rules() {
        let steady = [100, 120, 121, 119, 122, 120, 121, 123];
        assert!(flat_mean(&steady, 0.10, 0).is_ok());
        let growing = [100, 120, 130, 140, 150, 160, 170, 180];
        let why = flat_mean(&growing, 0.10, 0).unwrap_err();
        assert!(why.contains("last quarter"), "{why}");
        assert!(flat_mean(&growing, 0.10, 100).is_ok(), "slack absorbs it");
        assert!(flat_mean(&[1, 2], 0.1, 0).is_err(), "too few samples");
        assert!(flat_median(&[20, 22, 22, 22, 21, 22, 23, 22], 4).is_ok());
        assert!(flat_median(&[20, 22, 22, 22, 30, 31, 32, 33], 4).is_err());
    }

    #[test]
    fn combined_reports_add_counts_and_keep_the_worse_p99() {
        let a = Report::parse(REPORT).unwrap();
        let mut b = a.clone();
        b.latency_us.p99 = 900.0;
        b.errors.read = 2;
        b.errors.total = 2;
        let c = a.merged(&b);
        assert_eq!(c.requests, 2 * a.requests);
        assert_eq!(c.latency_us.p99, 900.0);
        assert_eq!((c.errors.read, c.errors.total), (2, 2));
        assert!(errors_text(&c).starts_with("2 errors (connect 0, read 2"));
    }
}
