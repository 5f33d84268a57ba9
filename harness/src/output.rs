//! `results.csv`: one tidy row per (config, body size, iteration), header first, each row
//! written and flushed as its measurement ends so an interrupted run keeps what it measured.
//! `handshakes.csv` has the same columns (one row per config, certificate, handshake kind
//! and iteration); `idle.csv` has its own ([`IDLE_COLUMNS`]).
//!
//! The first eight columns keep the layout of the original experiment's `wrk` summary line
//! (latencies in microseconds); every further figure has its own column, with its unit in
//! the name where it is not microseconds.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Serialize, Serializer};

/// The header, in order. [`Row`]'s fields follow it exactly (a test pins that). Columns
/// added later go last (`tls_library`, `client_processes`, `latency_file`), so that scripts
/// reading older files by position still find every column where it was.
pub const COLUMNS: [&str; 53] = [
    "config",
    "size",
    "requests",
    "mean",
    "stdev",
    "p50",
    "p90",
    "p99",
    "iteration",
    "tls_backend",
    "connections",
    "connections_opened",
    "rate",
    "duration_s",
    "warmup_s",
    "rps",
    "mb_per_s",
    "p999",
    "max",
    "min",
    "errors",
    "errors_connect",
    "errors_read",
    "errors_write",
    "errors_timeout",
    "errors_status",
    "errors_body_mismatch",
    "server_cpu_s",
    "server_cpu_us_per_req",
    "proxy_cpu_s",
    "proxy_cpu_us_per_req",
    "echo_cpu_s",
    "echo_cpu_us_per_req",
    "proxy_peak_rss_kib",
    "echo_peak_rss_kib",
    "loadgen_cpu_s",
    "loadgen_cpu_us_per_req",
    "loadgen_utilization",
    "loadgen_saturated",
    "tls_version",
    "tls_cipher_suite",
    "tls_kx_group",
    "cert_type",
    "handshake",
    "tls_resumed",
    "time_wait",
    "server_cpus",
    "client_cpus",
    "status",
    "note",
    "tls_library",
    "client_processes",
    "latency_file",
];

/// A number as the CSV shows it: integral values without a decimal point, others rounded
/// to three decimals. Empty when absent.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Num(pub f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.fract() == 0.0 && v.abs() < 1e15 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64((v * 1000.0).round() / 1000.0)
        }
    }
}

/// Whether a row can be trusted as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured cleanly.
    #[default]
    Ok,
    /// Measured, but the note says what to be wary of (request errors, fewer connections
    /// than asked, a saturated load generator, a server that did not stop cleanly).
    Warning,
    /// No trustworthy figures: the note says why.
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Error => "error",
        }
    }
}

/// One CSV row. Field order is column order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub config: String,
    pub size: u64,
    pub requests: Option<u64>,
    pub mean: Option<Num>,
    pub stdev: Option<Num>,
    pub p50: Option<Num>,
    pub p90: Option<Num>,
    pub p99: Option<Num>,
    pub iteration: u32,
    pub tls_backend: String,
    pub connections: u32,
    pub connections_opened: Option<u64>,
    pub rate: Option<Num>,
    pub duration_s: Option<Num>,
    pub warmup_s: Option<Num>,
    pub rps: Option<Num>,
    pub mb_per_s: Option<Num>,
    pub p999: Option<Num>,
    pub max: Option<Num>,
    pub min: Option<Num>,
    pub errors: Option<u64>,
    pub errors_connect: Option<u64>,
    pub errors_read: Option<u64>,
    pub errors_write: Option<u64>,
    pub errors_timeout: Option<u64>,
    pub errors_status: Option<u64>,
    pub errors_body_mismatch: Option<u64>,
    pub server_cpu_s: Option<Num>,
    pub server_cpu_us_per_req: Option<Num>,
    pub proxy_cpu_s: Option<Num>,
    pub proxy_cpu_us_per_req: Option<Num>,
    pub echo_cpu_s: Option<Num>,
    pub echo_cpu_us_per_req: Option<Num>,
    pub proxy_peak_rss_kib: Option<u64>,
    pub echo_peak_rss_kib: Option<u64>,
    pub loadgen_cpu_s: Option<Num>,
    pub loadgen_cpu_us_per_req: Option<Num>,
    pub loadgen_utilization: Option<Num>,
    pub loadgen_saturated: Option<bool>,
    pub tls_version: Option<String>,
    pub tls_cipher_suite: Option<String>,
    pub tls_kx_group: Option<String>,
    pub cert_type: Option<String>,
    /// `keep-alive` (sweep), `full` or `resumed` (a new connection per request).
    pub handshake: String,
    /// Handshakes the load generator saw resumed.
    pub tls_resumed: Option<u64>,
    /// Client-side sockets in TIME_WAIT toward the server after the run (ephemeral ports).
    pub time_wait: Option<u64>,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub status: Status,
    pub note: String,
    /// The TLS library the terminator ran, read from the program (`OpenSSL 3.5.9`,
    /// `rustls 0.23.31 + aws-lc-rs 1.13.3`; `none` without TLS, `unknown` if unreadable).
    pub tls_library: String,
    /// Load generator processes whose reports make this row (`--client-processes`).
    pub client_processes: u32,
    /// A sweep row's full latency distribution, relative to the run folder:
    /// `latency/<config>-<size>-<iteration>.hgrm` (HdrHistogram's percentile distribution,
    /// ms). Empty for error rows and handshake rows.
    pub latency_file: Option<String>,
}

impl Row {
    /// Adds a remark to the note and raises the status to at least `status`.
    pub fn flag(&mut self, status: Status, remark: impl AsRef<str>) {
        flag(&mut self.status, &mut self.note, status, remark.as_ref());
    }
}

/// Raises `status` to at least `to` and appends `remark` to `note` (`; `-separated).
fn flag(status: &mut Status, note: &mut String, to: Status, remark: &str) {
    if to > *status {
        *status = to;
    }
    if !note.is_empty() {
        note.push_str("; ");
    }
    note.push_str(remark);
}

impl PartialOrd for Status {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Status {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |s: &Status| match s {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Error => 2,
        };
        rank(self).cmp(&rank(other))
    }
}

/// The header of `idle.csv`, in order; [`IdleRow`]'s fields follow it (a test pins that).
pub const IDLE_COLUMNS: [&str; 24] = [
    "config",
    "tls_backend",
    "iteration",
    "connections",
    "connections_opened",
    "closed_by_server",
    "terminator_rss_before_kib",
    "terminator_rss_after_kib",
    "terminator_kib_per_conn",
    "backend_rss_before_kib",
    "backend_rss_after_kib",
    "backend_kib_per_conn",
    "errors",
    "p50",
    "p99",
    "tls_version",
    "tls_cipher_suite",
    "tls_kx_group",
    "cert_type",
    "server_cpus",
    "client_cpus",
    "status",
    "note",
    "tls_library",
];

/// One row of `idle.csv`: the memory `connections` idle TLS connections cost. The
/// terminator is our proxy or the peer (for `https-*`, the echo-server itself); the backend
/// is the echo-server behind it. RSS is summed over the process and its children.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleRow {
    pub config: String,
    pub tls_backend: String,
    pub iteration: u32,
    pub connections: u32,
    pub connections_opened: Option<u64>,
    pub closed_by_server: Option<u64>,
    pub terminator_rss_before_kib: Option<u64>,
    pub terminator_rss_after_kib: Option<u64>,
    pub terminator_kib_per_conn: Option<Num>,
    pub backend_rss_before_kib: Option<u64>,
    pub backend_rss_after_kib: Option<u64>,
    pub backend_kib_per_conn: Option<Num>,
    pub errors: Option<u64>,
    /// Handshake plus first request of each connection, µs.
    pub p50: Option<Num>,
    pub p99: Option<Num>,
    pub tls_version: Option<String>,
    pub tls_cipher_suite: Option<String>,
    pub tls_kx_group: Option<String>,
    pub cert_type: Option<String>,
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub status: Status,
    pub note: String,
    /// As [`Row::tls_library`].
    pub tls_library: String,
}

impl IdleRow {
    /// As [`Row::flag`].
    pub fn flag(&mut self, status: Status, remark: impl AsRef<str>) {
        flag(&mut self.status, &mut self.note, status, remark.as_ref());
    }
}

/// The original experiment's line for one sweep row (`tls-bench.csv`: no header, these
/// eight columns, latencies in microseconds): the first eight cells of `results.csv`.
#[derive(Debug, Serialize)]
pub struct OriginalRow<'a> {
    config: &'a str,
    size: u64,
    requests: Option<u64>,
    mean: Option<Num>,
    stdev: Option<Num>,
    p50: Option<Num>,
    p90: Option<Num>,
    p99: Option<Num>,
}

impl Row {
    /// This row in the original experiment's layout.
    pub fn original(&self) -> OriginalRow<'_> {
        OriginalRow {
            config: &self.config,
            size: self.size,
            requests: self.requests,
            mean: self.mean,
            stdev: self.stdev,
            p50: self.p50,
            p90: self.p90,
            p99: self.p99,
        }
    }
}

/// A CSV file open for appending rows.
#[derive(Debug)]
pub struct CsvSink {
    writer: csv::Writer<File>,
    path: PathBuf,
    rows: usize,
}

impl CsvSink {
    /// Creates the file (refusing to overwrite one) and writes the header of `results.csv`.
    pub fn create(path: &Path) -> anyhow::Result<CsvSink> {
        CsvSink::create_with(path, &COLUMNS)
    }

    /// Creates the file (refusing to overwrite one) and writes `header` (none if empty).
    pub fn create_with(path: &Path, header: &[&str]) -> anyhow::Result<CsvSink> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        CsvSink::from_file_with(file, path, header)
    }

    /// Writes the header to an already open file (tests use `/dev/full`).
    pub fn from_file(file: File, path: &Path) -> anyhow::Result<CsvSink> {
        CsvSink::from_file_with(file, path, &COLUMNS)
    }

    fn from_file_with(file: File, path: &Path, header: &[&str]) -> anyhow::Result<CsvSink> {
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        let mut sink = CsvSink {
            writer,
            path: path.to_owned(),
            rows: 0,
        };
        if header.is_empty() {
            return Ok(sink);
        }
        sink.writer
            .write_record(header)
            .map_err(anyhow::Error::from)
            .and_then(|()| sink.flush())
            .with_context(|| format!("writing the header of {}", path.display()))?;
        Ok(sink)
    }

    /// Appends `row` and flushes it to the file.
    pub fn write(&mut self, row: &impl Serialize) -> anyhow::Result<()> {
        self.writer
            .serialize(row)
            .map_err(anyhow::Error::from)
            .and_then(|()| self.flush())
            .with_context(|| format!("writing a row to {}", self.path.display()))?;
        self.rows += 1;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Row {
        Row {
            config: "proxy-rustls".into(),
            size: 1000,
            requests: Some(1200),
            p50: Some(Num(250.0)),
            rps: Some(Num(1234.56789)),
            note: "a, \"quoted\" note".into(),
            tls_library: "rustls 0.23.46 + aws-lc-rs 1.19.0".into(),
            ..Row::default()
        }
    }

    #[test]
    fn header_and_row_fields_agree() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(sample()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let header = text.lines().next().unwrap();
        assert_eq!(header, COLUMNS.join(","));
        assert!(header.starts_with("config,size,requests,mean,stdev,p50,p90,p99,"));
        assert!(
            header.ends_with(",status,note,tls_library,client_processes,latency_file"),
            "{header}"
        );
    }

    #[test]
    fn the_original_layout_is_the_first_eight_cells_without_a_header() {
        let dir = tempfile::tempdir().unwrap();
        let (results, original) = (dir.path().join("r.csv"), dir.path().join("o.csv"));
        let row = Row {
            mean: Some(Num(261.5)),
            stdev: Some(Num(40.25)),
            p90: Some(Num(300.0)),
            p99: Some(Num(1234.5678)),
            ..sample()
        };
        CsvSink::create(&results).unwrap().write(&row).unwrap();
        CsvSink::create_with(&original, &[])
            .unwrap()
            .write(&row.original())
            .unwrap();
        let full = std::fs::read_to_string(&results).unwrap();
        let first_eight: Vec<&str> = full.lines().nth(1).unwrap().split(',').take(8).collect();
        let text = std::fs::read_to_string(&original).unwrap();
        assert_eq!(text, format!("{}\n", first_eight.join(",")));
        assert_eq!(
            text,
            "proxy-rustls,1000,1200,261.5,40.25,250,300,1234.568\n"
        );
    }

    #[test]
    fn idle_header_and_row_fields_agree() {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(IdleRow::default()).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(text.lines().next().unwrap(), IDLE_COLUMNS.join(","));
        assert_eq!(IDLE_COLUMNS.last(), Some(&"tls_library"));
    }

    #[test]
    fn rows_round_trip_through_a_csv_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let mut sink = CsvSink::create(&path).unwrap();
        sink.write(&sample()).unwrap();
        let mut r = csv::Reader::from_path(&path).unwrap();
        let headers = r.headers().unwrap().clone();
        let rec = r.records().next().unwrap().unwrap();
        let get = |name: &str| {
            rec.get(headers.iter().position(|h| h == name).unwrap())
                .unwrap()
        };
        assert_eq!(get("p50"), "250");
        assert_eq!(get("rps"), "1234.568");
        assert_eq!(get("mean"), "");
        assert_eq!(get("status"), "ok");
        assert_eq!(get("note"), "a, \"quoted\" note");
        assert_eq!(get("tls_library"), "rustls 0.23.46 + aws-lc-rs 1.19.0");
        let err = CsvSink::create(&path).unwrap_err().to_string();
        assert!(err.contains("results.csv"), "refuses to overwrite: {err}");
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_file() {
        let file = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let err = format!(
            "{:#}",
            CsvSink::from_file(file, Path::new("/runs/x/results.csv")).unwrap_err()
        );
        assert!(err.contains("/runs/x/results.csv"), "{err}");
        assert!(err.to_lowercase().contains("space"), "{err}");
    }

    #[test]
    fn flag_raises_status_and_joins_notes() {
        let mut row = Row::default();
        row.flag(Status::Warning, "3 request errors");
        row.flag(Status::Ok, "fyi");
        assert_eq!(row.status, Status::Warning);
        row.flag(Status::Error, "TLS mismatch");
        assert_eq!(row.status, Status::Error);
        assert_eq!(row.note, "3 request errors; fyi; TLS mismatch");
    }
}
