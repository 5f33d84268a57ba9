//! The run folder: `results/<UTC time>-<host>/` (or `--out`), its `logs/`, `configs/` and
//! (with a sweep) `latency/`, and one CSV file per scenario of the plan, created with its
//! header before anything runs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};

use crate::bins;
use crate::meta::{self, Host};
use crate::output::{CsvSink, Row, Status, IDLE_COLUMNS};
use crate::plan::{Kind, Plan, Scenario};

/// The run folder and its files.
#[derive(Debug)]
pub(super) struct OutDir {
    pub dir: PathBuf,
    pub meta: PathBuf,
    pub logs: PathBuf,
    /// Peers' config files.
    pub configs: PathBuf,
    /// Each sweep row's latency distribution (`.hgrm`); `None` without a sweep.
    pub latency: Option<PathBuf>,
}

impl OutDir {
    /// Creates the run folder (a fresh one under `results/` unless `out` is given), its
    /// `logs/` and `configs/`, and the CSV file of each scenario of the plan with its
    /// header (`results.csv`, `handshakes.csv`, `idle.csv`; `tls-bench.csv` beside the sweep,
    /// headerless), so that an unwritable place fails now.
    pub fn create(
        out: Option<&Path>,
        host: &Host,
        now: SystemTime,
        plan: &Plan,
    ) -> anyhow::Result<(OutDir, Sinks)> {
        let dir = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("--out {}: cannot create the folder", dir.display())
                })?;
                // Absolute: a peer resolves a relative config path against its own prefix
                // (nginx's -p), not against our working directory.
                std::path::absolute(dir)
                    .with_context(|| format!("--out {}: no absolute path", dir.display()))?
            }
            None => fresh_run_dir(&default_results_dir(), host, now)?,
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| {
            format!(
                "cannot create {} (is the results folder writable?)",
                logs.display()
            )
        })?;
        let configs = dir.join("configs");
        std::fs::create_dir_all(&configs)
            .with_context(|| format!("cannot create {}", configs.display()))?;
        let parts = plan.scenario.parts();
        let latency = if parts.contains(&Scenario::Sweep) {
            let latency = dir.join("latency");
            std::fs::create_dir_all(&latency)
                .with_context(|| format!("cannot create {}", latency.display()))?;
            Some(latency)
        } else {
            None
        };
        let sink = |name: &str, scenario: Scenario, header: &[&str]| -> anyhow::Result<_> {
            if !parts.contains(&scenario) {
                return Ok(None);
            }
            CsvSink::create_with(&dir.join(name), header)
                .map(Some)
                .with_context(|| format!("{} is not a writable, fresh run folder", dir.display()))
        };
        // A scenario's own file, under the name it has everywhere.
        let own = |scenario: Scenario, header: &[&str]| match scenario.csv_file() {
            Some(name) => sink(name, scenario, header),
            None => Ok(None),
        };
        let sinks = Sinks {
            sweep: own(Scenario::Sweep, &crate::output::COLUMNS)?,
            handshakes: own(Scenario::Handshakes, &crate::output::COLUMNS)?,
            idle: own(Scenario::Idle, &IDLE_COLUMNS)?,
            // No header: the original R script reads every line as data.
            original: sink(ORIGINAL_CSV, Scenario::Sweep, &[])?,
            original_left_out: 0,
        };
        let out = OutDir {
            meta: dir.join(meta::FILE),
            dir,
            logs,
            configs,
            latency,
        };
        Ok((out, sinks))
    }
}

/// The CSV files of a run, one per scenario it runs, and the sweep's rows again in the
/// original experiment's layout.
#[derive(Debug)]
pub(super) struct Sinks {
    sweep: Option<CsvSink>,
    handshakes: Option<CsvSink>,
    idle: Option<CsvSink>,
    /// `tls-bench.csv`: no header, the first eight columns of each sweep row that is not an
    /// error, as the original experiment's R script reads them.
    original: Option<CsvSink>,
    /// Error rows not written to `tls-bench.csv`.
    original_left_out: usize,
}

impl Sinks {
    /// The scenarios' CSV files the run has (not `tls-bench.csv`, a copy of the sweep's).
    fn scenario_files(&self) -> impl Iterator<Item = &CsvSink> {
        [&self.sweep, &self.handshakes, &self.idle]
            .into_iter()
            .flatten()
    }

    pub fn rows(&self) -> usize {
        self.scenario_files().map(CsvSink::rows).sum()
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.scenario_files().map(|s| s.path().to_owned()).collect()
    }

    pub fn paths_with_rows(&self) -> Vec<PathBuf> {
        self.scenario_files()
            .filter(|s| s.rows() > 0)
            .map(|s| s.path().to_owned())
            .collect()
    }

    /// Writes a sweep `row` to `results.csv`, and to `tls-bench.csv` unless it is an error
    /// row (those have no figures to plot).
    pub fn write_sweep(&mut self, row: &Row) -> anyhow::Result<()> {
        self.for_kind(Kind::Sweep)?.write(row)?;
        match (&mut self.original, row.status) {
            (_, Status::Error) => self.original_left_out += 1,
            (Some(sink), _) => sink.write(&row.original())?,
            (None, _) => {}
        }
        Ok(())
    }

    /// `tls-bench.csv` and the error rows it leaves out, when the run has a sweep.
    pub fn original(&self) -> Option<(&Path, usize)> {
        self.original
            .as_ref()
            .map(|s| (s.path(), self.original_left_out))
    }

    pub fn for_kind(&mut self, kind: Kind) -> anyhow::Result<&mut CsvSink> {
        let sink = match kind {
            Kind::Sweep => &mut self.sweep,
            Kind::Handshake { .. } => &mut self.handshakes,
            Kind::Idle => &mut self.idle,
        };
        sink.as_mut()
            .context("internal error: a measurement of a scenario without its CSV file")
    }
}

/// `results/` of the workspace when the harness runs from it, else of the current folder.
fn default_results_dir() -> PathBuf {
    bins::workspace_root()
        .map(|r| r.join("results"))
        .unwrap_or_else(|| PathBuf::from("results"))
}

/// `results/<UTC %Y%m%dT%H%M%SZ>-<host>/`, with `-2`, `-3`... when two runs start in the
/// same second (created atomically, so concurrent runs never share a folder).
pub(super) fn fresh_run_dir(
    results: &Path,
    host: &Host,
    now: SystemTime,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(results)
        .with_context(|| format!("cannot create the results folder {}", results.display()))?;
    let base = format!(
        "{}-{}",
        meta::folder_stamp(now),
        meta::folder_host(&host.hostname)
    );
    for n in 1..=MAX_SAME_SECOND_RUNS {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = results.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the run folder {}", dir.display()))
            }
        }
    }
    bail!(
        "{} runs already started this second in {}",
        MAX_SAME_SECOND_RUNS,
        results.display()
    )
}

/// The sweep's rows in the original experiment's layout.
const ORIGINAL_CSV: &str = "tls-bench.csv";

/// Run folders one host may start within one second.
const MAX_SAME_SECOND_RUNS: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Preset;

    fn host() -> Host {
        Host::probe("0".parse().unwrap())
    }

    #[test]
    fn unwritable_out_dir_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let out = file.join("run");
        let err = format!(
            "{:#}",
            OutDir::create(
                Some(&out),
                &host(),
                SystemTime::now(),
                &Preset::Smoke.plan()
            )
            .unwrap_err()
        );
        assert!(err.contains("--out") && err.contains("a-file/run"), "{err}");
    }

    #[test]
    fn out_dir_refuses_to_overwrite_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Preset::Smoke.plan();
        OutDir::create(Some(dir.path()), &host(), SystemTime::now(), &plan).unwrap();
        let err = format!(
            "{:#}",
            OutDir::create(Some(dir.path()), &host(), SystemTime::now(), &plan).unwrap_err()
        );
        assert!(err.contains("results.csv"), "{err}");
    }

    #[test]
    fn error_rows_stay_out_of_the_original_layout() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Preset::Smoke.plan();
        let (out, mut sinks) =
            OutDir::create(Some(dir.path()), &host(), SystemTime::now(), &plan).unwrap();
        let ok = Row {
            config: "http".into(),
            size: 10,
            ..Row::default()
        };
        let mut failed = ok.clone();
        failed.flag(Status::Error, "no request completed in the measured period");
        sinks.write_sweep(&ok).unwrap();
        sinks.write_sweep(&failed).unwrap();
        let (path, left_out) = sinks.original().unwrap();
        assert_eq!(left_out, 1);
        assert_eq!(std::fs::read_to_string(path).unwrap(), "http,10,,,,,,\n");
        let results = std::fs::read_to_string(out.dir.join("results.csv")).unwrap();
        assert_eq!(results.lines().count(), 3, "header and both rows");
    }

    #[test]
    fn same_second_runs_get_their_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let a = fresh_run_dir(dir.path(), &host(), now).unwrap();
        let b = fresh_run_dir(dir.path(), &host(), now).unwrap();
        assert_ne!(a, b);
        assert!(b.to_string_lossy().ends_with("-2"));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.len() > 17 && name.as_bytes()[8] == b'T' && &name[15..16] == "Z",
            "{name}"
        );
    }
}
