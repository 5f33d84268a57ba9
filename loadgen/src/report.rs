//! What a run reports: the JSON object (schema 1, pinned by a test: the harness parses it),
//! the wrk-like text (or an idle run's summary), the `--hdr-out` histogram file, and the
//! line an idle run prints on stderr once its connections are open.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::engine::RunResult;
use crate::settings::Settings;
use crate::stats::{Errors, LATE_AFTER};

/// The JSON report. Field order and names are the schema: renaming, removing, reordering
/// or changing the type or meaning of a field needs a new [`SCHEMA`]; a new field goes at
/// the end and keeps the number. Either way the schema test changes with it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: u32,
    pub target: String,
    /// `closed`, `open` or `idle`.
    pub mode: &'static str,
    pub threads: usize,
    pub connections: usize,
    pub connections_opened: usize,
    pub keepalive: bool,
    /// The measured period, seconds.
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Requests per second asked for (open loop).
    pub rate: Option<f64>,
    pub body_bytes: u64,
    /// Responses completed in the measured period (idle runs: the one request of each
    /// connection, sent while opening).
    pub requests: u64,
    /// `requests` per second of the measured period (idle runs: of the opening).
    pub rps: f64,
    /// HTTP bytes (heads and bodies; not TLS framing) of the completed requests and responses.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Closed loop: from each request's start. Open loop: from its intended start.
    pub latency_us: Latency,
    /// Open loop: from each request's actual start.
    pub latency_uncorrected_us: Option<Latency>,
    /// Open loop: requests started more than 1 ms after their intended time.
    pub late_requests: u64,
    pub errors: Errors,
    pub tls: Option<TlsReport>,
    pub cpu: Cpu,
    pub warnings: Vec<String>,
    /// Idle runs (`--idle`); null otherwise.
    pub idle: Option<IdleReport>,
}

/// What an idle run held.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleReport {
    /// Connections asked for (`--connections`).
    pub asked: usize,
    /// Connections that opened and answered their one request: the ones held.
    pub opened: usize,
    /// Held connections the server closed (EOF or reset) during the hold.
    pub closed_by_server: u64,
    /// Seconds it took to open them (retries included), before the hold.
    pub open_s: f64,
}

/// Latency summary in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub stdev: f64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsReport {
    pub version: String,
    pub cipher_suite: String,
    pub kx_group: Option<String>,
    pub alpn: Option<String>,
    /// Handshakes over the whole run (opening the connections and warm-up included).
    pub handshakes: u64,
    pub resumed: u64,
}

/// The load generator's own CPU in the measured period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
    /// CPU seconds / (usable CPUs * duration); usable CPUs = min(threads, affinity CPUs).
    pub utilization: f64,
    /// utilization >= 0.9: the figures may describe the load generator, not the server.
    pub saturated: bool,
}

/// The JSON schema version.
pub const SCHEMA: u32 = 1;
/// Utilization from which the load generator counts as saturated.
pub const SATURATED_AT: f64 = 0.9;
/// Share of late open-loop starts above which a warning is given.
const LATE_WARN_SHARE: f64 = 0.01;

impl Report {
    pub fn new(settings: &Settings, result: &RunResult) -> Report {
        let s = &result.stats;
        let duration_s = result.measured.as_secs_f64();
        let cpu_s = result.cpu.total().as_secs_f64();
        let utilization = if duration_s > 0.0 {
            cpu_s / (result.cpus as f64 * duration_s)
        } else {
            0.0
        };
        let saturated = utilization >= SATURATED_AT;
        let connections = settings.connections.get();
        let mut warnings = Vec::new();
        if result.connections_opened < connections {
            warnings.push(format!(
                "only {} of {} connections opened",
                result.connections_opened, connections
            ));
        }
        let closed = s.closed_by_server;
        if settings.idle && closed > 0 {
            warnings.push(format!(
                "{closed} of {} held connections were closed by the server during the hold",
                result.connections_opened
            ));
        }
        if result.interrupted {
            warnings.push(format!(
                "interrupted: measured {:.3} s of the {:.3} s asked for",
                duration_s,
                settings.duration.as_secs_f64()
            ));
        }
        if saturated {
            warnings.push(format!(
                "load generator CPU saturated ({:.0}%)",
                utilization * 100.0
            ));
        }
        if settings.rate.is_some() && s.requests > 0 {
            let share = s.late as f64 / s.requests as f64;
            if share > LATE_WARN_SHARE {
                warnings.push(format!(
                    "{:.1}% of requests started more than {} ms after their intended time \
                     (too few connections for the rate, or the load generator was short of \
                     CPU); the corrected latencies include that wait",
                    share * 100.0,
                    LATE_AFTER.as_millis(),
                ));
            }
        }
        // An idle run's requests all happen while opening, none during the hold.
        let rps_over_s = if settings.idle {
            result.open_time.as_secs_f64()
        } else {
            duration_s
        };
        Report {
            schema: SCHEMA,
            target: settings.target.clone(),
            mode: if settings.idle {
                "idle"
            } else if settings.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            threads: result.threads,
            connections,
            connections_opened: result.connections_opened,
            keepalive: settings.keepalive,
            duration_s,
            warmup_s: result.warmup.as_secs_f64(),
            rate: settings.rate,
            body_bytes: settings.body.len() as u64,
            requests: s.requests,
            rps: if rps_over_s > 0.0 {
                round2(s.requests as f64 / rps_over_s)
            } else {
                0.0
            },
            bytes_sent: s.bytes_sent,
            bytes_received: s.bytes_received,
            latency_us: Latency::of(&s.latency),
            latency_uncorrected_us: s.latency_uncorrected.as_ref().map(Latency::of),
            late_requests: s.late,
            errors: s.errors,
            tls: s.tls.as_ref().map(|n| TlsReport {
                version: n.version.clone(),
                cipher_suite: n.cipher_suite.clone(),
                kx_group: n.kx_group.clone(),
                alpn: n.alpn.clone(),
                handshakes: s.handshakes,
                resumed: s.resumed,
            }),
            cpu: Cpu {
                user_s: round3(result.cpu.user.as_secs_f64()),
                sys_s: round3(result.cpu.sys.as_secs_f64()),
                utilization: round3(utilization),
                saturated,
            },
            warnings,
            idle: settings.idle.then(|| IdleReport {
                asked: connections,
                opened: result.connections_opened,
                closed_by_server: closed,
                open_s: round3(result.open_time.as_secs_f64()),
            }),
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of plain fields always serialises.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            mean: round2(h.mean()),
            stdev: round2(h.stdev()),
            min: h.min(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// The line an idle run prints on stderr once every connection is open or has failed, just
/// before the hold: a contract with the harness, which waits for it (loadgen/README.md).
pub fn idle_line(opened: usize, asked: usize) -> String {
    format!("loadgen: idle: {opened} of {asked} connections open")
}

/// wrk-style text: what ran, the latency distribution, throughput, errors, own CPU and
/// warnings. An idle run gets its own, shorter summary.
pub fn text(report: &Report, result: &RunResult) -> String {
    if let Some(idle) = &report.idle {
        return idle_text(report, idle, result);
    }
    let r = report;
    let mut out = String::new();
    let _ = writeln!(out, "Running {} test @ {}", secs(r.duration_s), r.target);
    let mode = match r.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".to_string(),
    };
    let _ = writeln!(
        out,
        "  {} threads and {} connections ({} opened), {mode}, {}, {}-byte request body",
        r.threads,
        r.connections,
        r.connections_opened,
        if r.keepalive {
            "keep-alive"
        } else {
            "a new connection per request"
        },
        r.body_bytes
    );
    if r.warmup_s > 0.0 {
        let _ = writeln!(out, "  warm-up of {} excluded", secs(r.warmup_s));
    }
    tls_line(&mut out, r.tls.as_ref());
    let corrected = result.stats.latency_uncorrected.is_some();
    let title = if corrected {
        "Latency (from intended start: corrected for coordinated omission)"
    } else {
        "Latency"
    };
    latency_block(&mut out, title, &r.latency_us, &result.stats.latency);
    if let (Some(l), Some(h)) = (&r.latency_uncorrected_us, &result.stats.latency_uncorrected) {
        latency_block(&mut out, "Uncorrected latency (from actual start)", l, h);
        let _ = writeln!(
            out,
            "  {} requests started more than {} ms late",
            r.late_requests,
            LATE_AFTER.as_millis()
        );
    }
    let _ = writeln!(
        out,
        "  {} requests in {}, {} read, {} written",
        r.requests,
        secs(r.duration_s),
        bytes(r.bytes_received as f64),
        bytes(r.bytes_sent as f64)
    );
    errors_line(&mut out, &r.errors);
    let _ = writeln!(out, "Requests/sec: {:>10.2}", r.rps);
    let per_s = if r.duration_s > 0.0 {
        r.bytes_received as f64 / r.duration_s
    } else {
        0.0
    };
    let _ = writeln!(out, "Transfer/sec: {:>10}", bytes(per_s));
    let _ = writeln!(
        out,
        "loadgen CPU: {:.2}s user, {:.2}s sys, {:.0}% of {} CPU(s){}",
        r.cpu.user_s,
        r.cpu.sys_s,
        r.cpu.utilization * 100.0,
        result.cpus,
        if r.requests > 0 {
            format!(
                ", {:.2} µs per request",
                (r.cpu.user_s + r.cpu.sys_s) * 1e6 / r.requests as f64
            )
        } else {
            String::new()
        }
    );
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    out
}

/// An idle run: what was held and for how long, the latency of opening (handshake and
/// first request), errors, own CPU during the hold and warnings.
fn idle_text(r: &Report, idle: &IdleReport, result: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Idle test @ {}: held {} connections for {}",
        r.target,
        idle.opened,
        secs(r.duration_s)
    );
    let _ = writeln!(
        out,
        "  {} asked, {} opened in {} ({} threads), {} closed by the server during the hold",
        idle.asked,
        idle.opened,
        secs(idle.open_s),
        r.threads,
        idle.closed_by_server
    );
    tls_line(&mut out, r.tls.as_ref());
    latency_block(
        &mut out,
        "Latency of connect, handshake and first request",
        &r.latency_us,
        &result.stats.latency,
    );
    let _ = writeln!(
        out,
        "  {} requests, {}-byte request body",
        r.requests, r.body_bytes
    );
    errors_line(&mut out, &r.errors);
    let _ = writeln!(
        out,
        "loadgen CPU during the hold: {:.2}s user, {:.2}s sys",
        r.cpu.user_s, r.cpu.sys_s
    );
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    out
}

fn errors_line(out: &mut String, e: &Errors) {
    if e.total > 0 {
        let _ = writeln!(
            out,
            "  Errors: connect {}, read {}, write {}, timeout {}, status {}, body mismatch {}",
            e.connect, e.read, e.write, e.timeout, e.status, e.body_mismatch
        );
    }
}

/// The negotiated TLS parameters and the handshake counts, when the target spoke TLS.
fn tls_line(out: &mut String, tls: Option<&TlsReport>) {
    if let Some(tls) = tls {
        let _ = writeln!(
            out,
            "  TLS: {} {} {}, ALPN {}; {} handshakes, {} resumed",
            tls.version,
            tls.cipher_suite,
            tls.kx_group.as_deref().unwrap_or("(group unknown)"),
            tls.alpn.as_deref().unwrap_or("none"),
            tls.handshakes,
            tls.resumed
        );
    }
}

fn latency_block(out: &mut String, title: &str, l: &Latency, h: &Histogram<u64>) {
    let _ = writeln!(out, "  {title}");
    let _ = writeln!(
        out,
        "    {:>10} {:>10} {:>10} {:>10}",
        "Avg", "Stdev", "Min", "Max"
    );
    let _ = writeln!(
        out,
        "    {:>10} {:>10} {:>10} {:>10}",
        micros(l.mean),
        micros(l.stdev),
        micros(l.min as f64),
        micros(l.max as f64)
    );
    let _ = writeln!(out, "  Latency Distribution");
    for (label, q) in [
        ("50%", 0.5),
        ("75%", 0.75),
        ("90%", 0.9),
        ("99%", 0.99),
        ("99.9%", 0.999),
        ("99.99%", 0.9999),
    ] {
        let v = if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        };
        let _ = writeln!(out, "  {label:>7} {:>10}", micros(v as f64));
    }
    let _ = writeln!(out, "  {:>7} {:>10}", "max", micros(l.max as f64));
}

/// Writes `h` (µs) in HdrHistogram's percentile-distribution text format, values in
/// milliseconds, as `HistogramLogProcessor`/`outputPercentileDistribution` print it, so
/// HdrHistogram's plotters read it.
pub fn write_hdr(path: &Path, h: &Histogram<u64>, what: &str) -> io::Result<()> {
    std::fs::write(path, hdr_text(h, what))
}

pub fn hdr_text(h: &Histogram<u64>, what: &str) -> String {
    const SCALE: f64 = 1000.0; // µs -> ms
    let mut out = String::new();
    let _ = writeln!(out, "# loadgen {what}; values in milliseconds");
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(HDR_TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    };
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    out
}

/// Percentile steps per halving of the distance to 100%, as HdrHistogram's tools default.
const HDR_TICKS_PER_HALF_DISTANCE: u32 = 5;

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// wrk's time format: `850.00us`, `1.23ms`, `2.00s`.
fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.2}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

fn secs(s: f64) -> String {
    format!("{s:.2}s")
}

/// wrk's size format (binary multiples): `512.00B`, `1.23KB`, `4.56MB`.
fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cpu::CpuTimes;
    use crate::stats::{new_histogram, Stats};

    #[test]
    fn a_short_handed_saturated_run_says_so() {
        let settings = crate::cli::Args::parse_from([
            "loadgen",
            "-c",
            "100",
            "--rate",
            "1000",
            "http://127.0.0.1:1/",
        ])
        .into_settings()
        .unwrap();
        let mut stats = Stats::new(true);
        for _ in 0..100 {
            stats.record(Duration::from_millis(2), Duration::from_millis(1), 10, 10);
        }
        stats.ok = 100;
        stats.late = 50;
        let result = RunResult {
            stats,
            threads: 1,
            connections_opened: 80,
            open_time: Duration::from_millis(20),
            measured: Duration::from_secs(10),
            warmup: Duration::ZERO,
            interrupted: false,
            cpu: CpuTimes {
                user: Duration::from_secs(7),
                sys: Duration::from_millis(2700),
            },
            cpus: 1,
        };
        let report = Report::new(&settings, &result);
        assert_eq!(report.cpu.utilization, 0.97);
        assert!(report.cpu.saturated);
        assert_eq!(report.warnings[0], "only 80 of 100 connections opened");
        assert_eq!(report.warnings[1], "load generator CPU saturated (97%)");
        assert!(
            report.warnings[2].starts_with("50.0% of requests started more than 1 ms"),
            "{:?}",
            report.warnings
        );
        let text = text(&report, &result);
        assert!(
            text.contains("WARNING: only 80 of 100 connections opened"),
            "{text}"
        );
        assert!(
            text.contains("WARNING: load generator CPU saturated (97%)"),
            "{text}"
        );
        assert!(text.contains("Uncorrected latency"), "{text}");
    }

    #[test]
    fn an_idle_run_reports_what_it_held() {
        let settings = crate::cli::Args::parse_from([
            "loadgen",
            "--idle",
            "-c",
            "100",
            "-d",
            "10s",
            "http://127.0.0.1:1/",
        ])
        .into_settings()
        .unwrap();
        let mut stats = Stats::new(false);
        for _ in 0..98 {
            stats.record(Duration::from_millis(3), Duration::from_millis(3), 10, 10);
        }
        stats.ok = 98;
        stats.error(crate::stats::ErrorKind::Connect);
        stats.error(crate::stats::ErrorKind::Connect);
        stats.closed_by_server = 5;
        let result = RunResult {
            stats,
            threads: 1,
            connections_opened: 98,
            open_time: Duration::from_millis(500),
            measured: Duration::from_secs(10),
            warmup: Duration::ZERO,
            interrupted: false,
            cpu: CpuTimes::default(),
            cpus: 1,
        };
        let report = Report::new(&settings, &result);
        assert_eq!(report.mode, "idle");
        assert_eq!(
            report.idle,
            Some(IdleReport {
                asked: 100,
                opened: 98,
                closed_by_server: 5,
                open_s: 0.5
            })
        );
        // The requests happened while opening, not during the hold.
        assert_eq!(report.rps, 196.0);
        assert_eq!(
            report.warnings,
            [
                "only 98 of 100 connections opened",
                "5 of 98 held connections were closed by the server during the hold"
            ]
        );
        let text = text(&report, &result);
        for needle in [
            "Idle test @ http://127.0.0.1:1/: held 98 connections for 10.00s",
            "100 asked, 98 opened in 0.50s (1 threads), 5 closed by the server",
            "Latency of connect, handshake and first request",
            "Errors: connect 2,",
            "WARNING: 5 of 98 held connections were closed",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(!text.contains("Requests/sec"), "{text}");
        assert_eq!(
            idle_line(98, 100),
            "loadgen: idle: 98 of 100 connections open"
        );
    }

    #[test]
    fn hdr_text_has_the_standard_table_and_footer() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = hdr_text(&h, "latency");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with('#') && lines[0].contains("milliseconds"));
        assert_eq!(
            lines[1],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[2], "");
        // First row: the smallest value (10 µs = 0.010 ms) at percentile 0.
        let first: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(first[0], "0.010");
        assert_eq!(first[1], "0.000000000000");
        // The last data row reaches percentile 1 and the full count.
        let last_row = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        let last: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        assert!(text.contains("#[Mean    =        5.00"), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn units_follow_wrk() {
        assert_eq!(micros(850.0), "850.00us");
        assert_eq!(micros(1234.0), "1.23ms");
        assert_eq!(micros(2_500_000.0), "2.50s");
        assert_eq!(bytes(512.0), "512.00B");
        assert_eq!(bytes(1536.0), "1.50KB");
    }
}
