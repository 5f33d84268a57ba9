//! The table printed at the end of a run (and saved as `summary.txt`): per config and body
//! size, the medians over iterations of req/s, p50, p99 and server CPU-µs per request, and
//! the errors. Rows with status `error` are left out of the medians and counted instead.

use crate::output::{Row, Status};

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub config: String,
    pub tls_backend: String,
    pub size: u64,
    /// Rows measured (status ok or warning).
    pub measured: usize,
    pub rps: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    /// Request errors summed over the measured rows.
    pub request_errors: u64,
    /// Rows that failed outright.
    pub failed_rows: usize,
    pub warnings: usize,
}

/// Groups rows by (config, backend, size), in the order they first appear.
pub fn lines(rows: &[Row]) -> Vec<Line> {
    let mut keys: Vec<(String, String, u64)> = Vec::new();
    for r in rows {
        let key = (r.config.clone(), r.tls_backend.clone(), r.size);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(config, tls_backend, size)| {
            let group: Vec<&Row> = rows
                .iter()
                .filter(|r| r.config == config && r.tls_backend == tls_backend && r.size == size)
                .collect();
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
                request_errors: measured.iter().filter_map(|r| r.errors).sum(),
                failed_rows: group.len() - measured.len(),
                warnings: measured
                    .iter()
                    .filter(|r| r.status == Status::Warning)
                    .count(),
                config,
                tls_backend,
                size,
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

/// The table as aligned text.
pub fn render(lines: &[Line]) -> String {
    let header = [
        "config",
        "tls_backend",
        "size",
        "n",
        "req/s",
        "p50 µs",
        "p99 µs",
        "server CPU-µs/req",
        "errors",
    ];
    let fmt =
        |v: Option<f64>, decimals: usize| v.map_or("-".to_owned(), |v| format!("{v:.decimals$}"));
    let body: Vec<[String; 9]> = lines
        .iter()
        .map(|l| {
            let mut errors = l.request_errors.to_string();
            if l.failed_rows > 0 {
                errors.push_str(&format!(" ({} failed)", l.failed_rows));
            }
            if l.warnings > 0 {
                errors.push_str(&format!(" ({} warned)", l.warnings));
            }
            [
                l.config.clone(),
                l.tls_backend.clone(),
                l.size.to_string(),
                l.measured.to_string(),
                fmt(l.rps, 0),
                fmt(l.p50, 0),
                fmt(l.p99, 0),
                fmt(l.server_cpu_us_per_req, 1),
                errors,
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            let pad = w - cell.chars().count();
            if i < 2 {
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
    for row in &body {
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
    fn median_of_even_and_empty() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
