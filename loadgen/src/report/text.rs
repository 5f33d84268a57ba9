//! The human side of a report: wrk-style text (or an idle run's summary, or a merged
//! report's with its segments) and the `--hdr-out` file, HdrHistogram's percentile
//! distribution as `HistogramLogProcessor` prints it.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use super::{Histograms, IdleReport, Latency, Mode, Report, SegmentReport, TlsReport};
use crate::stats::{Errors, LATE_AFTER};
/// wrk-style text: what ran, the latency distribution (from `h`, the report's histograms),
/// throughput, errors, own CPU (over `cpus` CPUs; `None` for a merged report, which lists
/// its segments instead) and warnings. An idle run gets its own, shorter summary.
pub fn text(report: &Report, h: Histograms<'_>, cpus: Option<usize>) -> String {
    if let Some(idle) = &report.idle {
        return idle_text(report, idle, h);
    }
    let r = report;
    let mut out = String::new();
    let _ = writeln!(out, "Running {} test @ {}", secs(r.duration_s), r.target);
    if let Some(segment) = r.segment {
        let _ = writeln!(
            out,
            "  segment {segment} of the load (loadgen merge adds the segments)"
        );
    }
    if let Some(segments) = &r.segments {
        let _ = writeln!(
            out,
            "  {} reports merged (their segments below)",
            segments.len()
        );
    }
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
    let corrected = h.uncorrected.is_some();
    let title = if corrected {
        "Latency (from intended start: corrected for coordinated omission)"
    } else {
        "Latency"
    };
    latency_block(&mut out, title, &r.latency_us, h.latency);
    if let (Some(l), Some(u)) = (&r.latency_uncorrected_us, h.uncorrected) {
        latency_block(&mut out, "Uncorrected latency (from actual start)", l, u);
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
    let per_request = if r.requests > 0 {
        format!(
            ", {:.2} µs per request",
            (r.cpu.user_s + r.cpu.sys_s) * 1e6 / r.requests as f64
        )
    } else {
        String::new()
    };
    let share = match cpus {
        Some(cpus) => format!("{:.0}% of {cpus} CPU(s)", r.cpu.utilization * 100.0),
        None => format!("the busiest segment at {:.0}%", r.cpu.utilization * 100.0),
    };
    let _ = writeln!(
        out,
        "loadgen CPU: {:.2}s user, {:.2}s sys, {share}{per_request}",
        r.cpu.user_s, r.cpu.sys_s,
    );
    for w in &r.warnings {
        let _ = writeln!(out, "WARNING: {w}");
    }
    if let Some(segments) = &r.segments {
        segments_block(&mut out, segments);
    }
    out
}

/// A merged report's inputs, one line each, saturated ones marked.
fn segments_block(out: &mut String, segments: &[SegmentReport]) {
    let _ = writeln!(out, "Segments:");
    for s in segments {
        let _ = writeln!(
            out,
            "  {:>7} {}: {} connections, {} requests, {:.2} req/s, loadgen CPU {:.0}%{}",
            s.segment.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            s.file,
            s.connections,
            s.requests,
            s.rps,
            s.utilization * 100.0,
            if s.saturated { " (saturated)" } else { "" }
        );
    }
}

/// An idle run: what was held and for how long, the latency of opening (handshake and
/// first request), errors, own CPU during the hold and warnings.
fn idle_text(r: &Report, idle: &IdleReport, h: Histograms<'_>) -> String {
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
        h.latency,
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

/// What the `--hdr-out` file of a run in `mode` measures, for its first line.
pub fn hdr_title(mode: Mode) -> &'static str {
    match mode {
        Mode::Idle => "latency of connect, TLS handshake and first request",
        Mode::Open => "latency from intended start times (corrected for coordinated omission)",
        Mode::Closed => "latency",
    }
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
    use super::*;
    use crate::stats::new_histogram;

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
