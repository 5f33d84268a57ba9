//! What a run folder holds, read once for the page: `meta.json`, each scenario's CSV with
//! its flagged rows, pictures and summary, the closing table, and the files to link.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::meta;
use crate::plan::Scenario as PlanScenario;

/// One scenario's CSV and what the page shows of it.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The CSV's file name in the run folder.
    pub csv: &'static str,
    /// The page section's anchor and heading.
    pub id: &'static str,
    pub heading: &'static str,
    /// plot.py's pictures of it (file stems: `latency` for latency.svg), in its order.
    pub figures: &'static [&'static str],
    /// plot.py's summary of it, when it writes one.
    pub summary: Option<&'static str>,
    /// The columns that say which measurement a flagged row is.
    pub keys: &'static [&'static str],
    /// The column that says whether a row is good, and its good value.
    pub verdict: &'static str,
    pub good: &'static str,
    /// Show every row, not only the flagged ones (the fault suite's table is its result).
    pub every_row: bool,
}

/// The scenarios' CSV files, in the order the page shows them.
pub const KINDS: [Kind; 5] = [
    Kind {
        csv: csv_of(PlanScenario::Sweep),
        id: "sweep",
        heading: "Sweep: keep-alive requests by body size",
        figures: &["latency", "throughput", "efficiency", "spectrum", "seed"],
        summary: Some("summary.md"),
        keys: &["config", "tls_backend", "tls_library", "size", "iteration"],
        verdict: "status",
        good: "ok",
        every_row: false,
    },
    Kind {
        csv: csv_of(PlanScenario::Handshakes),
        id: "handshakes",
        heading: "Handshakes: a new connection per request",
        figures: &["handshakes"],
        summary: Some("handshakes-summary.md"),
        keys: &[
            "config",
            "tls_backend",
            "tls_library",
            "handshake",
            "cert_type",
            "tls_kx_group",
            "iteration",
        ],
        verdict: "status",
        good: "ok",
        every_row: false,
    },
    Kind {
        csv: csv_of(PlanScenario::Idle),
        id: "idle",
        heading: "Idle connections: memory per connection",
        figures: &["idle"],
        summary: Some("idle-summary.md"),
        keys: &["config", "tls_backend", "tls_library", "iteration"],
        verdict: "status",
        good: "ok",
        every_row: false,
    },
    Kind {
        csv: csv_of(PlanScenario::Faults),
        id: "faults",
        heading: "Fault suite",
        figures: &[],
        summary: None,
        keys: &["scenario", "name", "terminator"],
        verdict: "verdict",
        good: "pass",
        every_row: true,
    },
    Kind {
        csv: csv_of(PlanScenario::SniScale),
        id: "sni-scale",
        heading: "Certificates at scale: SNI certificates in one listener",
        figures: &[],
        summary: None,
        keys: &["config", "tls_backend", "certs"],
        verdict: "verdict",
        good: "pass",
        every_row: true,
    },
];

/// A picture of a scenario, as plot.py wrote it.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The file name (`latency.svg`), and the PNG beside it when there is one.
    pub file: String,
    pub png: Option<String>,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

/// A CSV's rows as the page needs them.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub header: Vec<String>,
    /// Every row's cells (in the header's order).
    pub all: Vec<Vec<String>>,
    /// The index of the verdict column.
    pub verdict: usize,
}

/// One scenario the run folder has.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub kind: Kind,
    pub rows: Rows,
    pub figures: Vec<Figure>,
    pub summary: Option<String>,
}

/// Everything the page is made of.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// The folder's own name (`20240501T120000Z-host`).
    pub name: String,
    /// meta.json, when the folder has one.
    pub meta: Option<Value>,
    pub scenarios: Vec<Scenario>,
    /// `summary.txt`: the table the run printed at its end.
    pub closing_table: Option<String>,
    /// Files and folders to link, relative to the folder (`results.csv`, `logs/`).
    pub files: Vec<String>,
}

impl RunFolder {
    /// Reads the run folder `dir`. Errors name the folder or the file that is missing or
    /// malformed; a folder without any scenario's CSV is an error listing the names looked
    /// for.
    pub fn read(dir: &Path) -> anyhow::Result<RunFolder> {
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the run folder {}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let mut scenarios = Vec::new();
        for kind in KINDS {
            if names.iter().any(|n| n == kind.csv) {
                scenarios.push(read_scenario(dir, kind)?);
            }
        }
        if scenarios.is_empty() {
            let expected: Vec<&str> = KINDS.iter().map(|k| k.csv).collect();
            bail!(
                "{} is not a run folder: it has none of {}",
                dir.display(),
                expected.join(", ")
            );
        }
        let meta =
            match std::fs::read_to_string(dir.join(meta::FILE)) {
                Ok(text) => Some(serde_json::from_str(&text).with_context(|| {
                    format!("{}: not valid JSON", dir.join(meta::FILE).display())
                })?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("reading {}", dir.join(meta::FILE).display()))
                }
            };
        let closing_table = read_optional(&dir.join("summary.txt"))?;
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        Ok(RunFolder {
            name: absolute.file_name().map_or_else(
                || absolute.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            dir: dir.to_owned(),
            meta,
            scenarios,
            closing_table,
            files: linked_files(dir, &names),
        })
    }
}

fn read_scenario(dir: &Path, kind: Kind) -> anyhow::Result<Scenario> {
    let rows = read_rows(&dir.join(kind.csv), kind.verdict)?;
    let mut figures = Vec::new();
    for stem in kind.figures {
        if let Some(figure) = read_figure(dir, stem)? {
            figures.push(figure);
        }
    }
    let summary = match kind.summary {
        Some(name) => read_optional(&dir.join(name))?,
        None => None,
    };
    Ok(Scenario {
        kind,
        rows,
        figures,
        summary,
    })
}

/// A CSV with a header that has the `verdict` column; every record must parse.
fn read_rows(path: &Path, verdict: &str) -> anyhow::Result<Rows> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no header", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let Some(verdict_at) = header.iter().position(|h| h == verdict) else {
        bail!(
            "{}: no `{verdict}` column in its header (not a harness CSV?)",
            path.display()
        );
    };
    let mut all = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: malformed row", path.display()))?;
        all.push(record.iter().map(str::to_owned).collect());
    }
    Ok(Rows {
        header,
        all,
        verdict: verdict_at,
    })
}

/// `stem.svg` (else `stem.png`) of the run folder, when plot.py wrote it.
fn read_figure(dir: &Path, stem: &str) -> anyhow::Result<Option<Figure>> {
    let png = format!("{stem}.png");
    let has_png = dir.join(&png).is_file();
    for (file, mime) in [
        (format!("{stem}.svg"), "image/svg+xml"),
        (png.clone(), "image/png"),
    ] {
        let path = dir.join(&file);
        if path.is_file() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let png = (has_png && file != png).then(|| png.clone());
            return Ok(Some(Figure {
                file,
                png,
                mime,
                bytes,
            }));
        }
    }
    Ok(None)
}

/// The file's text, `None` when there is no such file.
fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What the page links: every CSV, the summaries, meta.json, and the folders of logs and
/// peers' configs (the pictures are linked under each figure).
fn linked_files(dir: &Path, names: &[String]) -> Vec<String> {
    let mut files: Vec<String> = names
        .iter()
        .filter(|n| {
            n.ends_with(".csv")
                || n.ends_with(".md")
                || ["summary.txt", meta::FILE].contains(&n.as_str())
        })
        .cloned()
        .collect();
    for folder in ["logs", "configs"] {
        if dir.join(folder).is_dir() {
            files.push(format!("{folder}/"));
        }
    }
    files
}

/// A scenario's CSV file, for [`KINDS`]: every scenario listed there has one (checked when
/// the constant is evaluated, at compile time).
const fn csv_of(scenario: PlanScenario) -> &'static str {
    match scenario.csv_file() {
        Some(name) => name,
        None => panic!("KINDS lists a scenario without a CSV file"),
    }
}
