//! `harness compare BASE NEW`: two runs matched key by key (scenario, config, TLS backend
//! and library, size or case), and for each key the ratio of medians (new over base) of
//! req/s, p50, p99 and CPU per request, with a bootstrap interval and a verdict; keys of one
//! run only are listed, and settings that differ between the runs are warned about. On top:
//! the regression gate (`--fail-on-regression 5%`), thresholds (`--threshold p99<5ms`, also
//! checked at the end of a run) and saved baselines (`--save-baseline`, `--baseline`).
//!
//! The result is plain data ([`Comparison`], serde-serialisable) that [`render`] turns into
//! text, markdown, JSON or CSV.
//!
//! - [`load`]: reading a run (folder, CSV file or `baseline:NAME`) into keys and figures.
//! - [`stats`]: the bootstrap interval; [`metric`]: the figures and their directions.
//! - [`warnings`]: meta.json differences and library versions; [`threshold`]: the grammar
//!   and the checks; [`baseline`]: saving and finding baselines; [`gate`]: regressions;
//!   `run_end`: what a run does with them after its summary ([`AtRunEnd`]).

pub mod baseline;
pub mod gate;
pub mod html;
pub mod load;
pub mod metric;
pub mod render;
mod run_end;
pub mod stats;
pub mod threshold;
pub mod warnings;

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::output::Status;
pub use gate::{Gate, Regression};
pub use load::{Key, Run, Source};
pub use metric::Metric;
pub use run_end::AtRunEnd;
use stats::Interval;
pub use threshold::{Threshold, ThresholdCheck};

/// `harness compare`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The run compared against: a run folder, one of its CSV files, or baseline:NAME.
    pub base: String,
    /// The run judged: a run folder, one of its CSV files, or baseline:NAME.
    pub new: String,
    /// Output: an aligned table (text), markdown, json or csv.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// A change within this is "no change", whatever its interval.
    #[arg(long, value_name = "PERCENT", default_value = "2%", value_parser = percent)]
    pub noise: f64,
    /// Exit 1 when a metric is slower by more than PERCENT with confidence, naming each.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub fail_on_regression: Option<f64>,
    /// A limit on NEW, [CONFIG[@SIZE]:]METRIC OP VALUE[UNIT] (p99<5ms,
    /// proxy-rustls:rps>20000); repeatable; exit 1 when one fails.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<Threshold>,
    /// Write the comparison as a page here [default: NEW/compare.html when NEW is a run
    /// folder; no page otherwise].
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Where baselines are saved [default: results/baselines in the workspace].
    #[arg(long, value_name = "DIR", env = "TLS_OFF_BASELINES")]
    pub baseline_dir: Option<PathBuf>,
}

/// How a comparison is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Csv,
}

/// Runs `harness compare`: 0 when nothing failed, 1 for a regression past the gate or a
/// failed threshold, 2 for input that cannot be compared (named on stderr).
pub fn main(args: &Args) -> ExitCode {
    let baselines = baseline::folder(args.baseline_dir.as_deref());
    let loaded = Run::load(&args.base, &baselines)
        .and_then(|base| Ok((base, Run::load(&args.new, &baselines)?)));
    let (base, new) = match loaded {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut comparison = Comparison::of(&base, &new, args.noise);
    comparison.gate = args
        .fail_on_regression
        .map(|limit| Gate::judge(&comparison, limit));
    comparison.thresholds = threshold::check(&args.thresholds, &new);
    let printed = render::render(&comparison, args.format).and_then(|p| Ok(p.write()?));
    if let Err(e) = printed {
        eprintln!("harness: {e:#}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = html_path(args) {
        // On stderr: stdout is the comparison itself (JSON or CSV for a script).
        match html::write(&comparison, &path) {
            Ok(path) => eprintln!("report: {}", path.display()),
            Err(e) => {
                eprintln!("harness: the comparison page: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    if comparison.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Where the page goes: `--html`, else into NEW when NEW is a run folder (a baseline's
/// folder is left as it was saved).
fn html_path(args: &Args) -> Option<PathBuf> {
    if let Some(path) = &args.html {
        return Some(path.clone());
    }
    let new = std::path::Path::new(&args.new);
    (!args.new.starts_with(load::BASELINE_PREFIX) && new.is_dir()).then(|| new.join(html::FILE))
}

/// Two runs compared: everything any format prints.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub base: Source,
    pub new: Source,
    /// The noise threshold, a fraction (0.02 for 2%).
    pub noise: f64,
    /// The interval's coverage (0.95) and the bootstrap's resamples.
    pub confidence: f64,
    pub resamples: usize,
    pub warnings: Vec<String>,
    /// Keys of both runs, in the base run's order.
    pub keys: Vec<KeyComparison>,
    pub only_in_base: Vec<Key>,
    pub only_in_new: Vec<Key>,
    /// `--fail-on-regression`, when asked for.
    pub gate: Option<Gate>,
    /// `--threshold`s, checked against the new run.
    pub thresholds: Vec<ThresholdCheck>,
}

/// One key of both runs.
#[derive(Debug, Clone, Serialize)]
pub struct KeyComparison {
    pub key: Key,
    /// The TLS library each run's rows name, with its version.
    pub base_library: String,
    pub new_library: String,
    pub base_rows: RowCounts,
    pub new_rows: RowCounts,
    /// Empty when a side has no row with status ok (see `unmeasured`).
    pub metrics: Vec<MetricComparison>,
    /// Why nothing is compared: `no ok row in new (3 error)`.
    pub unmeasured: Option<String>,
}

/// Rows of a key by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub ok: usize,
    pub warning: usize,
    pub error: usize,
}

/// One metric of one key.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    pub metric: Metric,
    /// Medians over the ok rows.
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// Iterations with a figure.
    pub base_n: usize,
    pub new_n: usize,
    /// new / base.
    pub ratio: Option<f64>,
    /// `None` with fewer than 3 iterations on a side.
    pub interval: Option<Interval>,
    pub verdict: Verdict,
}

/// What a comparison concludes, in the metric's good direction: higher req/s is faster,
/// and so are lower latencies and less CPU per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "faster")]
    Faster,
    #[serde(rename = "slower")]
    Slower,
    /// The interval holds 1.0, or the change is within the noise threshold.
    #[serde(rename = "no change")]
    NoChange,
    /// One iteration on a side (or no ratio): the ratio is shown, nothing is concluded.
    #[serde(rename = "no confidence")]
    NoConfidence,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::NoChange => "no change",
            Verdict::NoConfidence => "no confidence",
        }
    }
}

impl Comparison {
    /// Compares every key of `new` with the same key of `base`; `noise` is a fraction.
    pub fn of(base: &Run, new: &Run, noise: f64) -> Comparison {
        let keys: Vec<KeyComparison> = base
            .keys
            .iter()
            .filter(|k| new.groups.contains_key(k))
            .map(|k| compare_key(k, &base.groups[k], &new.groups[k], noise))
            .collect();
        let libraries: Vec<(&Key, String, String)> = keys
            .iter()
            .map(|k| (&k.key, k.base_library.clone(), k.new_library.clone()))
            .collect();
        let only = |a: &Run, b: &Run| -> Vec<Key> {
            a.keys
                .iter()
                .filter(|k| !b.groups.contains_key(k))
                .cloned()
                .collect()
        };
        Comparison {
            warnings: warnings::warnings(base, new, &libraries),
            base: base.source.clone(),
            new: new.source.clone(),
            noise,
            confidence: stats::CONFIDENCE,
            resamples: stats::RESAMPLES,
            only_in_base: only(base, new),
            only_in_new: only(new, base),
            keys,
            gate: None,
            thresholds: Vec::new(),
        }
    }

    /// Whether the gate found a regression or a threshold failed: exit 1.
    pub fn failed(&self) -> bool {
        self.gate
            .as_ref()
            .is_some_and(|g| !g.regressions.is_empty())
            || self.thresholds.iter().any(|t| !t.passed)
    }
}

fn compare_key(key: &Key, base: &load::Group, new: &load::Group, noise: f64) -> KeyComparison {
    let counts = |g: &load::Group| RowCounts {
        ok: g.count(Status::Ok),
        warning: g.count(Status::Warning),
        error: g.count(Status::Error),
    };
    let (base_rows, new_rows) = (counts(base), counts(new));
    let mut out = KeyComparison {
        key: key.clone(),
        base_library: base.library(),
        new_library: new.library(),
        base_rows,
        new_rows,
        metrics: Vec::new(),
        unmeasured: None,
    };
    let without_ok: Vec<String> = [("base", base_rows), ("new", new_rows)]
        .into_iter()
        .filter(|(_, c)| c.ok == 0)
        .map(|(side, c)| format!("{side} ({} warning, {} error)", c.warning, c.error))
        .collect();
    if !without_ok.is_empty() {
        out.unmeasured = Some(format!("no ok row in {}", without_ok.join(", ")));
        return out;
    }
    let metrics: &[Metric] = if key.scenario == crate::plan::Scenario::Idle.name() {
        &Metric::COMPARED_IDLE
    } else {
        &Metric::COMPARED
    };
    // Only ok rows: a warning row's figure may measure a saturated load generator or a
    // run with request errors, and would move the median for reasons of its own.
    let ok = |s: Status| s == Status::Ok;
    for &metric in metrics {
        let (b, n) = (base.values(metric, ok), new.values(metric, ok));
        if b.is_empty() && n.is_empty() {
            continue;
        }
        out.metrics.push(compare_metric(metric, &b, &n, noise));
    }
    out
}

/// One metric's ratio, interval and verdict.
pub fn compare_metric(metric: Metric, base: &[f64], new: &[f64], noise: f64) -> MetricComparison {
    let ratio = stats::ratio_of_medians(base, new);
    let interval = stats::bootstrap_interval(base, new);
    MetricComparison {
        metric,
        base: crate::summary::median(base.to_vec()),
        new: crate::summary::median(new.to_vec()),
        base_n: base.len(),
        new_n: new.len(),
        ratio,
        interval,
        verdict: verdict(metric, ratio, interval, noise),
    }
}

/// Faster or slower when the interval excludes 1.0 and the ratio is beyond the noise
/// threshold on that side; no change otherwise; no confidence without an interval.
fn verdict(metric: Metric, ratio: Option<f64>, interval: Option<Interval>, noise: f64) -> Verdict {
    let (Some(ratio), Some(interval)) = (ratio, interval) else {
        return Verdict::NoConfidence;
    };
    let went_up = if interval.low > 1.0 && ratio > 1.0 + noise {
        true
    } else if interval.high < 1.0 && ratio < 1.0 - noise {
        false
    } else {
        return Verdict::NoChange;
    };
    if went_up == metric.higher_is_better() {
        Verdict::Faster
    } else {
        Verdict::Slower
    }
}

/// `5%` or `5` -> 0.05; from 0 up to (not including) 100%.
pub fn percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(p) if (0.0..100.0).contains(&p) => Ok(p / 100.0),
        _ => Err(format!(
            "{text:?}: expected a percentage from 0 to 100, e.g. 5%"
        )),
    }
}

/// `--noise`'s default (its flag says "2%"), also the run's `--baseline` comparison's: a
/// change under 2% is not called faster or slower, whatever its interval.
pub const DEFAULT_NOISE: f64 = 0.02;

#[cfg(test)]
mod tests;
