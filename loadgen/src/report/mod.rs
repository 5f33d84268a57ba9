//! What a run reports: the JSON object (schema 1, pinned by a test: the harness parses it
//! and `loadgen merge` reads it back), and the line an idle run prints on stderr once its
//! connections are open.
//!
//! Submodules: [`histogram`], the exact histogram the report carries (so reports can be
//! merged); [`text`], the wrk-like text and the `--hdr-out` file; [`json`], the printer.

pub mod histogram;
mod json;
pub mod text;

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::RunResult;
use crate::segment::Segment;
use crate::settings::Settings;
use crate::stats::{Errors, LATE_AFTER};
pub use histogram::{HistogramReport, Histograms};
pub use text::{hdr_text, hdr_title, text, write_hdr};

/// The JSON report. Field order and names are the schema: renaming, removing, reordering
/// or changing the type or meaning of a field needs a new [`SCHEMA`]; a new field goes at
/// the end and keeps the number. Either way the schema test changes with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub target: String,
    pub mode: Mode,
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
    /// `--segment I/N`; null for a whole load (and for a merged report).
    pub segment: Option<Segment>,
    /// The measured period's wall-clock start and end, Unix seconds (to the microsecond):
    /// what `loadgen merge` takes the union of.
    pub start_unix_s: f64,
    pub end_unix_s: f64,
    /// Every recorded latency, exactly: what `loadgen merge` adds. The same measure as
    /// `latency_us`.
    pub histogram: HistogramReport,
    /// Open loop: the same for `latency_uncorrected_us`.
    pub histogram_uncorrected: Option<HistogramReport>,
    /// A merged report: each input's own figures and saturation; null otherwise.
    pub segments: Option<Vec<SegmentReport>>,
}

/// `closed` (wrk's loop), `open` (`--rate`, wrk2's) or `idle` (`--idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
    Idle,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
            Mode::Idle => "idle",
        }
    }
}

/// One input of a merged report, as it reported itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentReport {
    /// Its `--segment`, or null for a run that was not one.
    pub segment: Option<Segment>,
    /// The report file it came from, as `loadgen merge` was given it.
    pub file: String,
    pub connections: usize,
    pub requests: u64,
    pub rps: f64,
    pub start_unix_s: f64,
    pub end_unix_s: f64,
    /// Its own `cpu.utilization` and `cpu.saturated`.
    pub utilization: f64,
    pub saturated: bool,
}

/// What an idle run held.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
                Mode::Idle
            } else if settings.rate.is_some() {
                Mode::Open
            } else {
                Mode::Closed
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
            segment: settings.segment,
            start_unix_s: unix_s(result.measured_from),
            end_unix_s: unix_s(result.measured_from + result.measured),
            histogram: HistogramReport::of(&s.latency),
            histogram_uncorrected: s.latency_uncorrected.as_ref().map(HistogramReport::of),
            segments: None,
        }
    }

    /// Pretty-printed JSON, each histogram bucket on a line of its own.
    pub fn to_json(&self) -> String {
        json::to_string(self)
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

/// Seconds since the Unix epoch, to the microsecond (0 for a clock set before 1970).
fn unix_s(t: SystemTime) -> f64 {
    let s = t
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    (s * 1e6).round() / 1e6
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cpu::CpuTimes;
    use crate::stats::Stats;

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
            measured_from: std::time::SystemTime::now(),
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
        let text = text(&report, Histograms::of_run(&result), Some(result.cpus));
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
            measured_from: std::time::SystemTime::now(),
            cpu: CpuTimes::default(),
            cpus: 1,
        };
        let report = Report::new(&settings, &result);
        assert_eq!(report.mode, Mode::Idle);
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
        let text = text(&report, Histograms::of_run(&result), Some(result.cpus));
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
}
