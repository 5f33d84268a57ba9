//! The measurement loop of the sweep, handshakes and idle scenarios: one measurement at a
//! time, each row written as soon as it is complete, then the summary, paths and pictures.
//! (The report page comes after, in `run::execute`, once meta.json says how the run ended.)

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use super::folder::Sinks;
use super::progress::Progress;
use super::resources::Resources;
use super::rows::{base_idle_row, base_row};
use super::{binaries, idle, load, Outcome, Run, WANT_NOFILE};
use crate::certs::Certs;
use crate::meta;
use crate::output::{IdleRow, Row, Status};
use crate::peers::Peer;
use crate::plan::{Kind, Measurement, Plan};
use crate::procs::{Interrupted, Ledger};
use crate::{plot, summary};

/// One measurement's row: a load run (sweep, handshakes) or an idle run. Short-lived, one
/// at a time: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Measured {
    Load(Row),
    Idle(IdleRow),
}

/// The rows of a run so far.
#[derive(Default)]
struct Rows {
    load: Vec<Row>,
    idle: Vec<IdleRow>,
}

/// Builds, prepares and runs every measurement, writing rows as they complete.
pub(super) fn run_measurements(
    run: &Run<'_>,
    mut sinks: Sinks,
    peers: &[Peer],
    meta: &mut Value,
) -> anyhow::Result<Outcome> {
    let plan = run.plan;
    let remote = plan.target.is_some();
    let (bins, tls_libraries) = binaries(run.opts, run.stop, remote, meta)?;
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-harness-")
        .tempdir()
        .context("creating a temporary directory for sockets and certificates")?;
    meta["runtime_dir"] = json!(runtime.path());
    let certs = Certs::generate(runtime.path(), plan)?;
    let nofile = crate::procfs::raise_nofile(WANT_NOFILE).context("raising the open-file limit")?;
    meta["nofile_limit"] = json!(nofile);
    meta["status"] = json!("running");
    meta["rows"] = json!(0);
    meta::write_json(&run.out.meta, meta)?;

    let mut ledger = Ledger::create(&run.out.logs.join("children.tsv"))?;
    let res = Resources {
        plan,
        split: run.split,
        bins: &bins,
        certs: &certs,
        runtime_dir: runtime.path(),
        logs: &run.out.logs,
        latency: run.out.latency.as_deref(),
        config_dir: &run.out.configs,
        peers,
        tls_libraries: &tls_libraries,
        nofile,
        stop: run.stop,
        cacert: run.opts.cacert.as_deref(),
    };
    let (rows, failed_fast) = measure_all(&res, &mut sinks, &mut ledger, run.opts.fail_fast, meta)?;
    drop(runtime);
    finish(run, &sinks, &rows, meta)?;
    let failed_rows = rows
        .load
        .iter()
        .filter(|r| r.status == Status::Error)
        .count()
        + rows
            .idle
            .iter()
            .filter(|r| r.status == Status::Error)
            .count();
    if run.stop.requested() {
        return Err(Interrupted.into());
    }
    if failed_fast {
        return Ok(Outcome::FailedFast {
            rows: rows.load.len(),
        });
    }
    Ok(Outcome::Complete {
        rows: rows.load.len() + rows.idle.len(),
        failed_rows,
        dir: run.out.dir.clone(),
    })
}

/// The plan's measurements, one row each; against a remote `--target`, one per size and
/// iteration: the remote end's config is not ours to vary.
fn planned(plan: &Plan) -> Vec<Measurement> {
    let measurements = plan.measurements();
    if plan.target.is_none() {
        return measurements;
    }
    let first = plan.variants()[0];
    measurements
        .into_iter()
        .filter(|m| m.variant == first)
        .collect()
}

/// Runs the measurements in order until the end, a signal or (with `fail_fast`) the first
/// error row. Returns the rows and whether `fail_fast` stopped it.
fn measure_all(
    res: &Resources<'_>,
    sinks: &mut Sinks,
    ledger: &mut Ledger,
    fail_fast: bool,
    meta: &mut Value,
) -> anyhow::Result<(Rows, bool)> {
    let remote = res.plan.target.is_some();
    let measurements = planned(res.plan);
    let mut progress = Progress::new(measurements.len(), res.plan);
    let mut rows = Rows::default();
    let mut failed_fast = false;
    for m in &measurements {
        if res.stop.requested() {
            break;
        }
        progress.begin(m, remote);
        let measured = match measure_one(res, m, ledger) {
            Err(e) if e.is::<Interrupted>() => break,
            other => other?,
        };
        let failed = match measured {
            Measured::Load(row) => {
                match m.kind {
                    Kind::Sweep => sinks.write_sweep(&row)?,
                    _ => sinks.for_kind(m.kind)?.write(&row)?,
                }
                progress.finish(m, &row, remote);
                let failed = row.status == Status::Error;
                rows.load.push(row);
                failed
            }
            Measured::Idle(row) => {
                sinks.for_kind(m.kind)?.write(&row)?;
                progress.finish_idle(m, &row);
                let failed = row.status == Status::Error;
                rows.idle.push(row);
                failed
            }
        };
        meta["rows"] = json!(sinks.rows());
        if failed && fail_fast {
            failed_fast = true;
            break;
        }
    }
    progress.done();
    Ok((rows, failed_fast))
}

/// One measurement's row; a measurement that fails becomes an error row saying why.
/// `Err` only for a signal ([`Interrupted`]).
fn measure_one(
    res: &Resources<'_>,
    m: &Measurement,
    ledger: &mut Ledger,
) -> anyhow::Result<Measured> {
    let result = if m.kind == Kind::Idle {
        idle::measure(res, m, ledger).map(Measured::Idle)
    } else {
        load::measure(res, m, ledger).map(Measured::Load)
    };
    match result {
        Err(e) if e.is::<Interrupted>() => Err(e),
        Err(e) if m.kind == Kind::Idle => {
            let mut row = base_idle_row(res, m);
            row.flag(Status::Error, format!("{e:#}"));
            Ok(Measured::Idle(row))
        }
        Err(e) => {
            let mut row = base_row(res, m);
            row.flag(Status::Error, format!("{e:#}"));
            Ok(Measured::Load(row))
        }
        ok => ok,
    }
}

/// The summary table (stdout and `summary.txt`), the paths, and the pictures; what became
/// of each CSV's pictures goes in meta.json's `plots`, for the report page to say.
fn finish(run: &Run<'_>, sinks: &Sinks, rows: &Rows, meta: &mut Value) -> anyhow::Result<()> {
    let mut table = summary::render_all(&rows.load, &rows.idle);
    if let Some((path, left_out)) = sinks.original() {
        table.push_str(&original_line(path, left_out));
    }
    let summary_path = run.out.dir.join("summary.txt");
    std::fs::write(&summary_path, &table)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    println!("\n{table}");
    for path in sinks.paths() {
        println!("results: {}", path.display());
    }
    if let Some((path, _)) = sinks.original() {
        println!("original: {}", path.display());
    }
    println!("meta:    {}", run.out.meta.display());
    println!("logs:    {}", run.out.logs.display());
    meta["plots"] = draw(run, sinks, rows.load.is_empty() && rows.idle.is_empty());
    Ok(())
}

/// Runs plot.py on each CSV that has rows, unless `--no-plot`, a signal or an empty run
/// says not to; returns what became of each CSV's pictures, by file name.
fn draw(run: &Run<'_>, sinks: &Sinks, nothing: bool) -> Value {
    let not_drawn = if run.opts.no_plot {
        Some("--no-plot")
    } else if run.stop.requested() {
        Some("the run was interrupted")
    } else if nothing {
        Some("no rows to draw")
    } else {
        eprintln!("harness: plotting (analysis/plot.py; --no-plot skips this)");
        None
    };
    let with_rows = sinks.paths_with_rows();
    let mut outcomes = serde_json::Map::new();
    for path in sinks.paths() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let outcome = match not_drawn {
            Some(why) => why.to_owned(),
            // A scenario the run never reached (interrupted, --fail-fast) has only a header.
            None if !with_rows.contains(&path) => "no rows to draw".to_owned(),
            None => {
                let plots = plot::plot(&path);
                plots.print();
                plots.outcome()
            }
        };
        outcomes.insert(name.into_owned(), json!(outcome));
    }
    Value::Object(outcomes)
}

/// The summary's line on `tls-bench.csv`.
fn original_line(path: &Path, left_out: usize) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    match left_out {
        0 => format!("\n{name}: every sweep row, in the original experiment's layout\n"),
        n => format!(
            "\n{name}: the sweep rows in the original experiment's layout, less {n} error \
             row(s) (no figures)\n"
        ),
    }
}
