//! Reading a run for `compare`: a run folder (its results.csv, handshakes.csv and idle.csv,
//! and meta.json), one of its CSV files, or a saved baseline; every row grouped under its
//! [`Key`] with the figures of each [`Metric`].
//!
//! Everything wrong with the input (no such folder, no CSV in it, a header that is not the
//! harness's, a number that is not one) is an error naming the file, and the line where
//! there is one: the caller exits 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use super::baseline;
use super::metric::Metric;
use crate::meta;
use crate::output::Status;
use crate::plan::Scenario;

/// What a row is a measurement of: rows of one key are the iterations of one measurement,
/// and keys are what two runs are matched by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Key {
    /// `sweep`, `handshakes` or `idle`.
    pub scenario: String,
    pub config: String,
    pub tls_backend: String,
    /// The TLS library's name without its version (`rustls + aws-lc-rs`, `OpenSSL`): an
    /// upgrade is what a comparison is often for, so the version must not split the key
    /// (a version that differs is a warning instead).
    pub tls_library: String,
    /// The body size (sweep), `full ecdsa-p256 X25519` (handshakes), or `10000 idle
    /// connections` (idle).
    pub case: String,
    /// The body size of a sweep key, for thresholds.
    pub size: Option<u64>,
}

impl Key {
    /// `sweep proxy-rustls rustls-aws-lc 1000`.
    pub fn label(&self) -> String {
        format!(
            "{} {} {} {}",
            self.scenario, self.config, self.tls_backend, self.case
        )
    }
}

/// The rows of one key.
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// The `tls_library` values of its rows, each once, with their versions.
    pub libraries: Vec<String>,
    pub rows: Vec<Figures>,
}

/// One row's status and figures (empty cells left out).
#[derive(Debug, Clone)]
pub struct Figures {
    pub status: Status,
    pub values: BTreeMap<Metric, f64>,
}

impl Group {
    /// The values of `metric` in the rows whose status `counts`.
    pub fn values(&self, metric: Metric, counts: impl Fn(Status) -> bool) -> Vec<f64> {
        self.rows
            .iter()
            .filter(|r| counts(r.status))
            .filter_map(|r| r.values.get(&metric).copied())
            .collect()
    }

    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }

    /// Its library (the versions joined if rows disagree, which one run never does).
    pub fn library(&self) -> String {
        self.libraries.join(" / ")
    }
}

/// Where a run came from, as the report names it.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// As given on the command line (`results/x`, `baseline:main`).
    pub given: String,
    /// The CSV files read.
    pub files: Vec<PathBuf>,
    /// Its meta.json, if it has one.
    pub meta: Option<PathBuf>,
}

/// One run as `compare` reads it.
#[derive(Debug, Clone)]
pub struct Run {
    pub source: Source,
    /// Keys in the order their first rows came (the run's order).
    pub keys: Vec<Key>,
    pub groups: BTreeMap<Key, Group>,
    pub meta: Option<serde_json::Value>,
}

impl Run {
    /// Reads `given`: `baseline:NAME` (in `baselines`), a run folder, or a CSV file.
    pub fn load(given: &str, baselines: &Path) -> anyhow::Result<Run> {
        let path = match given.strip_prefix(BASELINE_PREFIX) {
            Some(name) => baseline::resolve(name, baselines)?,
            None => PathBuf::from(given),
        };
        let (files, meta_path) = if path.is_dir() {
            let files: Vec<PathBuf> = scenario_files()
                .into_iter()
                .map(|f| path.join(f))
                .filter(|p| p.is_file())
                .collect();
            if files.is_empty() {
                bail!(
                    "{given}: no {} in {}",
                    scenario_files().join(", "),
                    path.display()
                );
            }
            (files, path.join(meta::FILE))
        } else if path.is_file() {
            let dir = path.parent().unwrap_or(Path::new("."));
            (vec![path.clone()], dir.join(meta::FILE))
        } else {
            bail!("{given}: no such run folder or CSV file");
        };
        let mut run = Run {
            source: Source {
                given: given.to_owned(),
                files: files.clone(),
                meta: meta_path.is_file().then_some(meta_path),
            },
            keys: Vec::new(),
            groups: BTreeMap::new(),
            meta: None,
        };
        for file in &files {
            run.read_csv(file)?;
        }
        if let Some(meta) = &run.source.meta {
            let text = std::fs::read_to_string(meta)
                .with_context(|| format!("reading {}", meta.display()))?;
            let value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", meta.display()))?;
            run.meta = Some(value);
        }
        Ok(run)
    }

    fn read_csv(&mut self, path: &Path) -> anyhow::Result<()> {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let header = reader
            .headers()
            .with_context(|| format!("reading the header of {}", path.display()))?
            .clone();
        let layout = Layout::of(&header).with_context(|| {
            format!(
                "{}: not a harness results.csv, handshakes.csv or idle.csv header",
                path.display()
            )
        })?;
        for record in reader.records() {
            let record = record.with_context(|| format!("reading {}", path.display()))?;
            let line = record.position().map_or(0, csv::Position::line);
            let (key, library, figures) = layout
                .row(&record)
                .with_context(|| format!("{}, line {line}", path.display()))?;
            self.add(key, library, figures);
        }
        Ok(())
    }

    fn add(&mut self, key: Key, library: String, figures: Figures) {
        let group = self.groups.entry(key.clone()).or_insert_with(|| {
            self.keys.push(key);
            Group::default()
        });
        if !group.libraries.contains(&library) {
            group.libraries.push(library);
        }
        group.rows.push(figures);
    }
}

/// Where the columns `compare` reads are in one file's header.
struct Layout {
    idle: bool,
    columns: BTreeMap<&'static str, usize>,
    metrics: Vec<(Metric, usize)>,
}

impl Layout {
    /// The layout of a header: idle.csv's (it has `terminator_kib_per_conn`) or that of
    /// results.csv and handshakes.csv; an error naming the columns missing.
    fn of(header: &csv::StringRecord) -> anyhow::Result<Layout> {
        let idle = header.iter().any(|h| h == "terminator_kib_per_conn");
        let (needed, metrics): (&[&'static str], &[Metric]) = if idle {
            (&IDLE_NEEDED, &Metric::COMPARED_IDLE)
        } else {
            (&LOAD_NEEDED, &Metric::ALL)
        };
        let find = |name: &str| header.iter().position(|h| h == name);
        let missing: Vec<&str> = needed
            .iter()
            .copied()
            .chain(metrics.iter().map(|m| m.column()))
            .filter(|c| find(c).is_none())
            .collect();
        if !missing.is_empty() {
            bail!("no column {}", missing.join(", "));
        }
        let mut columns = BTreeMap::new();
        for name in needed.iter().chain(OPTIONAL.iter()) {
            if let Some(i) = find(name) {
                columns.insert(*name, i);
            }
        }
        let metrics = metrics
            .iter()
            .filter_map(|&m| Some((m, find(m.column())?)))
            .collect();
        Ok(Layout {
            idle,
            columns,
            metrics,
        })
    }

    fn cell<'r>(&self, record: &'r csv::StringRecord, name: &str) -> &'r str {
        self.columns
            .get(name)
            .and_then(|&i| record.get(i))
            .unwrap_or("")
    }

    /// One record's key, full TLS library and figures.
    fn row(&self, record: &csv::StringRecord) -> anyhow::Result<(Key, String, Figures)> {
        let cell = |name| self.cell(record, name);
        let status = [Status::Ok, Status::Warning, Status::Error]
            .into_iter()
            .find(|s| s.name() == cell("status"))
            .with_context(|| format!("status {:?} is not ok, warning or error", cell("status")))?;
        let mut values = BTreeMap::new();
        for &(metric, i) in &self.metrics {
            let text = record.get(i).unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            let value: f64 = text
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| format!("column {}: {text:?} is not a number", metric.column()))?;
            values.insert(metric, value);
        }
        let (scenario, case, size) = if self.idle {
            let case = format!("{} idle connections", cell("connections"));
            (Scenario::Idle, case, None)
        } else {
            let size: u64 = cell("size")
                .parse()
                .with_context(|| format!("column size: {:?} is not a size", cell("size")))?;
            let handshake = cell("handshake");
            let case =
                crate::summary::case_name(handshake, size, cell("cert_type"), cell("tls_kx_group"));
            match handshake {
                "" | "keep-alive" => (Scenario::Sweep, case, Some(size)),
                _ => (Scenario::Handshakes, case, None),
            }
        };
        let library = cell("tls_library").to_owned();
        let key = Key {
            scenario: scenario.name().to_owned(),
            config: cell("config").to_owned(),
            tls_backend: cell("tls_backend").to_owned(),
            tls_library: library_family(&library),
            case,
            size,
        };
        Ok((key, library, Figures { status, values }))
    }
}

/// `rustls 0.23.46 + aws-lc-rs 1.19.0` -> `rustls + aws-lc-rs`: the words that are not
/// versions.
pub fn library_family(library: &str) -> String {
    library
        .split_whitespace()
        .filter(|word| !word.starts_with(|c: char| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `compare baseline:NAME` names a saved baseline.
pub const BASELINE_PREFIX: &str = "baseline:";

/// The files of a run folder `compare` reads, in this order: the measuring scenarios'.
pub fn scenario_files() -> Vec<&'static str> {
    Scenario::All
        .parts()
        .into_iter()
        .filter_map(Scenario::csv_file)
        .collect()
}

/// Columns of results.csv and handshakes.csv besides the metrics'.
const LOAD_NEEDED: [&str; 5] = ["config", "size", "tls_backend", "handshake", "status"];

/// Columns of idle.csv besides the metrics'.
const IDLE_NEEDED: [&str; 4] = ["config", "tls_backend", "connections", "status"];

/// Read where present: the TLS columns came later, and a remote target has none.
const OPTIONAL: [&str; 3] = ["tls_library", "cert_type", "tls_kx_group"];
