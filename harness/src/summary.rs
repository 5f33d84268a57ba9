//! The tables printed at the end of a run (and saved as `summary.txt`): per config and body
//! size (sweep) or handshake case (handshakes), the medians over iterations of req/s, p50,
//! p99 and server CPU-µs per request, and the errors; per config, the memory per idle
//! connection (idle). Each line names the TLS library its terminator ran next to config
//! and backend. Rows with status `error` are left out of the medians and counted instead.

use crate::output::{IdleRow, Row, Status};
use crate::plan::ConfigName;

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub config: String,
    pub tls_backend: String,
    pub tls_library: String,
    /// The body size (sweep), or `full ecdsa-p256 X25519` (handshakes).
    pub case: String,
    /// Rows measured (status ok or warning).
    pub measured: usize,
    pub rps: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    /// Server CPU-µs per request above the no-TLS floor's at the same case
    /// ([`ConfigName::no_tls_floor`]); `None` without TLS or without the floor's line.
    pub tls_tax_us_per_req: Option<f64>,
    /// Request errors summed over the measured rows.
    pub request_errors: u64,
    /// Rows that failed outright.
    pub failed_rows: usize,
    pub warnings: usize,
}

/// What a row is a measurement of besides its config: its body size, or for a new
/// connection per request the handshake kind, certificate and group.
fn case(r: &Row) -> String {
    case_name(
        &r.handshake,
        r.size,
        r.cert_type.as_deref().unwrap_or(""),
        r.tls_kx_group.as_deref().unwrap_or(""),
    )
}

/// [`case`] from a row's cells (`compare` reads them from the CSV): the size for keep-alive
/// rows, else `full ecdsa-p256 X25519` (`-` for an empty cell).
pub fn case_name(handshake: &str, size: u64, cert_type: &str, kx_group: &str) -> String {
    if handshake == "keep-alive" || handshake.is_empty() {
        size.to_string()
    } else {
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_owned()
            } else {
                s.to_owned()
            }
        };
        format!("{handshake} {} {}", or_dash(cert_type), or_dash(kx_group))
    }
}

/// What a table line groups rows by: config, backend, library, and the case.
fn key(r: &Row) -> [String; 4] {
    [
        r.config.clone(),
        r.tls_backend.clone(),
        r.tls_library.clone(),
        case(r),
    ]
}

/// Groups rows by [`key`], in the order they first appear, each line with its TLS tax.
pub fn lines(rows: &[Row]) -> Vec<Line> {
    let mut lines = grouped(rows);
    let taxes: Vec<Option<f64>> = lines.iter().map(|l| tls_tax(l, &lines)).collect();
    for (line, tax) in lines.iter_mut().zip(taxes) {
        line.tls_tax_us_per_req = tax;
    }
    lines
}

/// `line`'s server CPU per request minus its no-TLS floor's at the same case.
fn tls_tax(line: &Line, lines: &[Line]) -> Option<f64> {
    let floor = line.config.parse::<ConfigName>().ok()?.no_tls_floor()?;
    let base = lines
        .iter()
        .find(|l| l.config == floor.name() && l.case == line.case)?;
    Some(line.server_cpu_us_per_req? - base.server_cpu_us_per_req?)
}

fn grouped(rows: &[Row]) -> Vec<Line> {
    let mut keys: Vec<[String; 4]> = Vec::new();
    for r in rows {
        let key = key(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|k| {
            let group: Vec<&Row> = rows.iter().filter(|r| key(r) == k).collect();
            let [config, tls_backend, tls_library, case_name] = k;
            let measured: Vec<&Row> = group
                .iter()
                .copied()
                .filter(|r| r.status != Status::Error)
                .collect();
            let med =
                |f: fn(&Row) -> Option<f64>| median(measured.iter().filter_map(|r| f(r)).collect());
            Line {
                measured: measured.len(),
                rps: med(|r| r.rps.map(|n| n.0)),
                p50: med(|r| r.p50.map(|n| n.0)),
                p99: med(|r| r.p99.map(|n| n.0)),
                server_cpu_us_per_req: med(|r| r.server_cpu_us_per_req.map(|n| n.0)),
                tls_tax_us_per_req: None,
                request_errors: measured.iter().filter_map(|r| r.errors).sum(),
                failed_rows: group.len() - measured.len(),
                warnings: measured
                    .iter()
                    .filter(|r| r.status == Status::Warning)
                    .count(),
                config,
                tls_backend,
                tls_library,
                case: case_name,
            }
        })
        .collect()
}

/// The median (mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Every table of a run: the sweep, the handshakes and the idle connections, each present
/// only when the run has such rows.
pub fn render_all(rows: &[Row], idle: &[IdleRow]) -> String {
    let (sweep, handshakes): (Vec<Row>, Vec<Row>) = rows
        .iter()
        .cloned()
        .partition(|r| r.handshake == "keep-alive" || r.handshake.is_empty());
    let mut out = Vec::new();
    if !sweep.is_empty() {
        out.push(render(&lines(&sweep)));
    }
    if !handshakes.is_empty() {
        out.push(format!(
            "handshakes (a new connection per request):\n{}",
            render_with(
                &lines(&handshakes),
                "handshake",
                "handshakes/s",
                "CPU-µs/handshake"
            )
        ));
    }
    if !idle.is_empty() {
        out.push(format!(
            "idle connections (RSS growth per connection):\n{}",
            render_idle(idle)
        ));
    }
    out.join("\n")
}

/// The idle table: per config, the median KiB per idle connection of the terminator and
/// of the backend behind it.
pub fn render_idle(rows: &[IdleRow]) -> String {
    let key = |r: &IdleRow| {
        [
            r.config.clone(),
            r.tls_backend.clone(),
            r.tls_library.clone(),
        ]
    };
    let mut keys: Vec<[String; 3]> = Vec::new();
    for r in rows {
        let key = key(r);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let header = [
        "config",
        "tls_backend",
        "tls_library",
        "n",
        "connections",
        "terminator KiB/conn",
        "backend KiB/conn",
        "status",
    ];
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let body: Vec<Vec<String>> = keys
        .into_iter()
        .map(|k| {
            let group: Vec<&IdleRow> = rows.iter().filter(|r| key(r) == k).collect();
            let [config, backend, library] = k;
            let ok: Vec<&IdleRow> = group
                .iter()
                .copied()
                .filter(|r| r.status != Status::Error)
                .collect();
            let opened = median(
                ok.iter()
                    .filter_map(|r| r.connections_opened.map(|c| c as f64))
                    .collect(),
            );
            let status = if ok.len() < group.len() {
                format!("{} failed", group.len() - ok.len())
            } else if ok.iter().any(|r| r.status == Status::Warning) {
                "warning".to_owned()
            } else {
                "ok".to_owned()
            };
            vec![
                config,
                backend,
                library,
                ok.len().to_string(),
                opened.map_or("-".to_owned(), |v| format!("{v:.0}")),
                fmt(median(
                    ok.iter()
                        .filter_map(|r| r.terminator_kib_per_conn.map(|n| n.0))
                        .collect(),
                )),
                fmt(median(
                    ok.iter()
                        .filter_map(|r| r.backend_kib_per_conn.map(|n| n.0))
                        .collect(),
                )),
                status,
            ]
        })
        .collect();
    table(&header, &body, 3)
}

/// How a set of latencies is shown: in µs until the largest passes 10,000 µs, then in ms.
/// One unit per table, so a column reads down; the seed preset's 3,000 connections give
/// p99s of seconds, which as "2000000 µs" nobody reads at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyUnit {
    Us,
    Ms,
}

impl LatencyUnit {
    /// Above this many µs a latency is shown in ms (the same rule as analysis/plot.py's).
    const MS_ABOVE_US: f64 = 10_000.0;

    /// The unit for showing all of `values_us` together.
    pub fn for_values(values_us: impl IntoIterator<Item = f64>) -> Self {
        let largest = values_us.into_iter().fold(0.0_f64, f64::max);
        if largest > Self::MS_ABOVE_US {
            LatencyUnit::Ms
        } else {
            LatencyUnit::Us
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            LatencyUnit::Us => "µs",
            LatencyUnit::Ms => "ms",
        }
    }

    /// A latency in µs as a number in this unit: whole µs, or ms to 0.1.
    pub fn number(self, us: f64) -> String {
        match self {
            LatencyUnit::Us => format!("{us:.0}"),
            LatencyUnit::Ms => format!("{:.1}", us / 1000.0),
        }
    }

    /// One latency on its own, with its unit: `950 µs`, `1234.5 ms`.
    pub fn show(us: f64) -> String {
        let unit = Self::for_values([us]);
        format!("{} {}", unit.number(us), unit.symbol())
    }
}

/// The sweep table as aligned text.
pub fn render(lines: &[Line]) -> String {
    render_with(lines, "size", "req/s", "server CPU-µs/req")
}

/// A table of `lines` with these names for the case, rate and CPU columns.
fn render_with(lines: &[Line], case: &str, rate: &str, cpu: &str) -> String {
    // The TLS tax column only where some line has a floor to be measured from.
    let with_tax = lines.iter().any(|l| l.tls_tax_us_per_req.is_some());
    let unit = LatencyUnit::for_values(lines.iter().flat_map(|l| [l.p50, l.p99]).flatten());
    let (p50, p99) = (
        format!("p50 {}", unit.symbol()),
        format!("p99 {}", unit.symbol()),
    );
    let mut header = vec![
        "config",
        "tls_backend",
        "tls_library",
        case,
        "n",
        rate,
        &p50,
        &p99,
        cpu,
    ];
    if with_tax {
        header.push("TLS tax CPU-µs/req");
    }
    header.push("errors");
    let fmt =
        |v: Option<f64>, decimals: usize| v.map_or("-".to_owned(), |v| format!("{v:.decimals$}"));
    let body: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let mut errors = l.request_errors.to_string();
            if l.failed_rows > 0 {
                errors.push_str(&format!(" ({} failed)", l.failed_rows));
            }
            if l.warnings > 0 {
                errors.push_str(&format!(" ({} warned)", l.warnings));
            }
            let mut cells = vec![
                l.config.clone(),
                l.tls_backend.clone(),
                l.tls_library.clone(),
                l.case.clone(),
                l.measured.to_string(),
                fmt(l.rps, 0),
                l.p50.map_or("-".to_owned(), |v| unit.number(v)),
                l.p99.map_or("-".to_owned(), |v| unit.number(v)),
                fmt(l.server_cpu_us_per_req, 1),
            ];
            if with_tax {
                cells.push(fmt(l.tls_tax_us_per_req, 1));
            }
            cells.push(errors);
            cells
        })
        .collect();
    table(&header, &body, 4)
}

/// Aligned text: the first `text_columns` columns left-aligned, the rest right-aligned.
fn table(header: &[&str], body: &[Vec<String>], text_columns: usize) -> String {
    let align: Vec<Align> = (0..header.len())
        .map(|i| {
            if i < text_columns {
                Align::Left
            } else {
                Align::Right
            }
        })
        .collect();
    aligned_table(header, body, &align)
}

/// How a column of [`aligned_table`] is aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// An aligned text table: the header, a rule, the body; each column as wide as its widest
/// cell, two spaces between columns, no trailing spaces.
pub fn aligned_table(header: &[&str], body: &[Vec<String>], align: &[Align]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if align.get(i) != Some(&Align::Right) {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            } else {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            }
            out.push_str("  ");
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|&w| "-".repeat(w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    ));
    for row in body {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Num;

    fn row(config: &str, size: u64, rps: f64, status: Status) -> Row {
        Row {
            config: config.into(),
            tls_backend: "none".into(),
            tls_library: "none".into(),
            size,
            rps: Some(Num(rps)),
            p50: Some(Num(100.0)),
            errors: Some(1),
            status,
            ..Row::default()
        }
    }

    #[test]
    fn medians_skip_failed_rows_and_count_them() {
        let rows = vec![
            row("http", 10, 100.0, Status::Ok),
            row("http", 10, 300.0, Status::Ok),
            row("http", 10, 200.0, Status::Warning),
            row("http", 10, 9999.0, Status::Error),
            row("http", 1000, 50.0, Status::Ok),
        ];
        let lines = lines(&rows);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].rps, Some(200.0));
        assert_eq!(lines[0].measured, 3);
        assert_eq!(lines[0].failed_rows, 1);
        assert_eq!(lines[0].request_errors, 3);
        let text = render(&lines);
        assert!(text.starts_with("config"), "{text}");
        assert!(text.contains("(1 failed)"), "{text}");
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn handshakes_and_idle_get_their_own_tables() {
        let mut full = row("haproxy", 10, 900.0, Status::Ok);
        full.tls_library = "OpenSSL 3.5.9".into();
        full.handshake = "full".into();
        full.cert_type = Some("rsa-2048".into());
        full.tls_kx_group = Some("X25519".into());
        let mut resumed = full.clone();
        resumed.handshake = "resumed".into();
        let mut sweep = row("haproxy", 10, 5000.0, Status::Ok);
        sweep.handshake = "keep-alive".into();
        sweep.tls_library = "OpenSSL 3.5.9".into();
        let idle = IdleRow {
            config: "haproxy".into(),
            tls_backend: "openssl".into(),
            tls_library: "AWS-LC 5.12.0".into(),
            connections_opened: Some(10_000),
            terminator_kib_per_conn: Some(Num(21.25)),
            ..IdleRow::default()
        };
        let text = render_all(&[sweep, full, resumed], &[idle]);
        assert!(text.contains("full rsa-2048 X25519"), "{text}");
        assert!(text.contains("resumed rsa-2048 X25519"), "{text}");
        assert!(text.contains("handshakes/s"), "{text}");
        assert!(text.contains("21.2") || text.contains("21.3"), "{text}");
        assert!(text.contains("10000"), "{text}");
        // The library is named next to the backend, in every table.
        assert!(
            text.lines()
                .nth(2)
                .unwrap()
                .starts_with("haproxy  none         OpenSSL 3.5.9"),
            "{text}"
        );
        assert!(
            text.contains("haproxy  openssl      AWS-LC 5.12.0"),
            "{text}"
        );
        // The sweep table keeps the plain body size.
        assert!(text.lines().nth(2).unwrap().contains(" 10 "), "{text}");
    }

    #[test]
    fn the_tls_tax_is_cpu_above_the_no_tls_floor_at_the_same_size() {
        let with_cpu = |config: &str, size, cpu| Row {
            server_cpu_us_per_req: Some(Num(cpu)),
            ..row(config, size, 1000.0, Status::Ok)
        };
        let rows = vec![
            with_cpu("http", 10, 10.0),
            with_cpu("relay", 10, 25.0),
            with_cpu("relay", 10, 27.0),
            with_cpu("https-openssl", 10, 13.0),
            with_cpu("proxy-rustls", 10, 30.0),
            with_cpu("haproxy", 10, 39.0),
            with_cpu("haproxy", 1000, 44.0),
        ];
        let tax: Vec<(String, u64, Option<f64>)> = lines(&rows)
            .into_iter()
            .map(|l| (l.config, l.case.parse().unwrap(), l.tls_tax_us_per_req))
            .collect();
        assert_eq!(
            tax,
            [
                ("http".into(), 10, None),
                ("relay".into(), 10, None),
                ("https-openssl".into(), 10, Some(3.0)),
                ("proxy-rustls".into(), 10, Some(4.0)),
                ("haproxy".into(), 10, Some(13.0)),
                // No relay line at 1000 B: no floor, no tax.
                ("haproxy".into(), 1000, None),
            ]
        );
        let text = render(&lines(&rows));
        assert!(text.contains("TLS tax CPU-µs/req"), "{text}");
        assert!(
            !render(&lines(&rows[5..])).contains("TLS tax"),
            "no floor, no column"
        );
    }

    #[test]
    fn latencies_switch_to_ms_past_10000_us_one_unit_per_table() {
        let with_p99 = |size, p99| Row {
            p99: Some(Num(p99)),
            ..row("proxy-rustls", size, 1000.0, Status::Ok)
        };
        let small = render(&lines(&[with_p99(10, 9_000.0)]));
        assert!(
            small.contains("p50 µs") && small.contains("p99 µs"),
            "{small}"
        );
        assert!(small.contains(" 9000 "), "{small}");
        // One p99 of 2 s turns the whole table to ms, the 100 µs p50 with it.
        let large = render(&lines(&[with_p99(10, 2_000_000.0), with_p99(1000, 500.0)]));
        assert!(
            large.contains("p50 ms") && large.contains("p99 ms"),
            "{large}"
        );
        assert!(large.contains(" 2000.0 "), "{large}");
        assert!(
            large.contains(" 0.1 ") && large.contains(" 0.5 "),
            "{large}"
        );
        assert!(!large.contains("µs "), "{large}");
        assert_eq!(LatencyUnit::show(10_000.0), "10000 µs");
        assert_eq!(LatencyUnit::show(10_001.0), "10.0 ms");
    }

    #[test]
    fn median_of_even_and_empty() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
