//! A [`Comparison`] as text (an aligned table like critcmp's, one line per key and metric,
//! a section per scenario), markdown, JSON or CSV. JSON holds everything; CSV holds the
//! key lines, and its warnings, gate and thresholds go to stderr as text, so that a failing
//! exit is always explained on the terminal.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use super::stats::Interval;
use super::{Comparison, Format, Key, KeyComparison, MetricComparison, ThresholdCheck, Verdict};
use crate::summary::{aligned_table, Align};

/// What `compare` prints where.
#[derive(Debug, Clone, Default)]
pub struct Printed {
    pub stdout: String,
    pub stderr: String,
}

impl Printed {
    /// Writes both. A reader that went away (`compare ... | head`) is not an error: the
    /// exit code still says what the comparison found.
    pub fn write(&self) -> std::io::Result<()> {
        let result = std::io::stdout()
            .lock()
            .write_all(self.stdout.as_bytes())
            .and_then(|()| std::io::stderr().lock().write_all(self.stderr.as_bytes()));
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}

pub fn render(c: &Comparison, format: Format) -> anyhow::Result<Printed> {
    Ok(match format {
        Format::Text => Printed {
            stdout: text(c),
            stderr: String::new(),
        },
        Format::Markdown => Printed {
            stdout: markdown(c),
            stderr: String::new(),
        },
        Format::Json => Printed {
            stdout: serde_json::to_string_pretty(c).context("writing JSON")? + "\n",
            stderr: notes(c),
        },
        Format::Csv => Printed {
            stdout: csv(c)?,
            stderr: notes(c),
        },
    })
}

/// The aligned text report.
pub fn text(c: &Comparison) -> String {
    let mut out = heading(c);
    if !c.warnings.is_empty() {
        out.push('\n');
    }
    for w in &c.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for (scenario, keys) in by_scenario(&c.keys) {
        out.push_str(&format!("\n{scenario}\n"));
        let align = [
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
        ];
        out.push_str(&aligned_table(&COLUMNS, &table_lines(&keys), &align));
    }
    out.push_str(&lists(c));
    out.push_str(&notes(c));
    out
}

/// The columns of a key line; [`metric_cells`] fills them.
pub(super) const COLUMNS: [&str; 9] = [
    "config", "backend", "case", "metric", "base", "new", "ratio", "interval", "verdict",
];

/// The key lines of one scenario: one per metric, the key's cells only on its first line.
fn table_lines(keys: &[&KeyComparison]) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    for k in keys.iter().filter(|k| k.unmeasured.is_none()) {
        for (i, m) in k.metrics.iter().enumerate() {
            let mut cells = metric_cells(k, m);
            if i > 0 {
                cells[..3].iter_mut().for_each(String::clear);
            }
            lines.push(cells.to_vec());
        }
    }
    lines
}

/// One metric of one key as the [`COLUMNS`] cells.
pub(super) fn metric_cells(k: &KeyComparison, m: &MetricComparison) -> [String; 9] {
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| m.metric.show(v));
    [
        k.key.config.clone(),
        k.key.tls_backend.clone(),
        k.key.case.clone(),
        m.metric.label().to_owned(),
        show(m.base),
        show(m.new),
        ratio(m.ratio),
        interval(m.interval),
        m.verdict.name().to_owned(),
    ]
}

/// Which runs, and how to read the table.
pub(super) fn heading(c: &Comparison) -> String {
    let source = |s: &super::Source| {
        let files: Vec<String> = s
            .files
            .iter()
            .chain(&s.meta)
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        format!("{} ({})", s.given, files.join(", "))
    };
    format!(
        "base: {}\nnew:  {}\nratio: new/base of the medians over the iterations with status \
         ok\ninterval: {:.0}% bootstrap ({} resamples); a change within {} is no change\n",
        source(&c.base),
        source(&c.new),
        c.confidence * 100.0,
        c.resamples,
        pct(c.noise)
    )
}

/// Keys not compared (no ok row, one run only) and the count of each verdict.
fn lists(c: &Comparison) -> String {
    let mut out = String::new();
    let unmeasured: Vec<&KeyComparison> =
        c.keys.iter().filter(|k| k.unmeasured.is_some()).collect();
    if !unmeasured.is_empty() {
        out.push_str(&format!("\nnot compared ({}):\n", unmeasured.len()));
        for k in unmeasured {
            let why = k.unmeasured.as_deref().unwrap_or_default();
            out.push_str(&format!("  {}: {why}\n", k.key.label()));
        }
    }
    for (side, keys) in [("base", &c.only_in_base), ("new", &c.only_in_new)] {
        if !keys.is_empty() {
            out.push_str(&format!("\nonly in {side} ({}):\n", keys.len()));
            for k in keys {
                out.push_str(&format!("  {}\n", k.label()));
            }
        }
    }
    out.push_str(&format!("\nverdicts: {}\n", verdict_counts(c)));
    out
}

/// How many metrics got each verdict: `0 faster, 1 slower, 30 no change, 0 no confidence`.
pub(super) fn verdict_counts(c: &Comparison) -> String {
    let count = |v: Verdict| {
        c.keys
            .iter()
            .flat_map(|k| &k.metrics)
            .filter(|m| m.verdict == v)
            .count()
    };
    [
        Verdict::Faster,
        Verdict::Slower,
        Verdict::NoChange,
        Verdict::NoConfidence,
    ]
    .into_iter()
    .map(|v| format!("{} {}", count(v), v.name()))
    .collect::<Vec<_>>()
    .join(", ")
}

/// The gate and the thresholds, as text (after the table, or on stderr).
pub(super) fn notes(c: &Comparison) -> String {
    let mut out = String::new();
    if let Some(gate) = &c.gate {
        let n = gate.regressions.len();
        out.push_str(&format!(
            "\nregression gate ({}): {}\n",
            pct(gate.limit),
            match n {
                0 => format!("pass, nothing slower by more than {}", pct(gate.limit)),
                1 => "FAIL, 1 regression".to_owned(),
                n => format!("FAIL, {n} regressions"),
            }
        ));
        for r in &gate.regressions {
            out.push_str(&format!(
                "  {} {}: {} {}, {} worse\n",
                r.key.label(),
                r.metric.label(),
                ratio(Some(r.ratio)),
                interval(Some(r.interval)),
                pct(r.worse_by)
            ));
        }
        if gate.unjudged > 0 {
            out.push_str(&format!(
                "  {} comparison(s) with fewer than 3 iterations on a side: no interval, not judged\n",
                gate.unjudged
            ));
        }
    }
    if !c.thresholds.is_empty() {
        out.push_str(&format!("\n{}", thresholds_text(&c.thresholds)));
    }
    out
}

/// The pass/fail list of thresholds, a line per key checked.
pub fn thresholds_text(checks: &[ThresholdCheck]) -> String {
    let failed = checks.iter().filter(|c| !c.passed).count();
    let mut out = format!(
        "thresholds (median over iterations): {} passed, {failed} failed\n",
        checks.len() - failed
    );
    let lines: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                if c.passed { "pass" } else { "FAIL" }.to_owned(),
                c.expression.clone(),
                c.key.as_ref().map_or("-".to_owned(), Key::label),
                c.detail.clone(),
            ]
        })
        .collect();
    let table = aligned_table(
        &["", "threshold", "key", "value"],
        &lines,
        &[Align::Left; 4],
    );
    // The header says nothing the lines do not: keep the lines only.
    out.extend(table.lines().skip(2).map(|l| format!("  {l}\n")));
    out
}

/// The report as markdown: a table per scenario, lists, gate and thresholds.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::from("## Comparison\n\n");
    for line in heading(c).lines() {
        out.push_str(&format!("{line}  \n"));
    }
    for w in &c.warnings {
        out.push_str(&format!("\n> warning: {w}\n"));
    }
    for (scenario, keys) in by_scenario(&c.keys) {
        out.push_str(&format!(
            "\n### {scenario}\n\n| config | backend | library | case | metric | base | new | \
             ratio | interval | verdict |\n|---|---|---|---|---|--:|--:|--:|--:|---|\n"
        ));
        for k in keys.iter().filter(|k| k.unmeasured.is_none()) {
            let library = if k.base_library == k.new_library {
                k.new_library.clone()
            } else {
                format!("{} → {}", k.base_library, k.new_library)
            };
            for line in table_lines(&[k]) {
                let mut cells = line;
                cells.insert(2, library.clone());
                cells[0] = k.key.config.clone();
                cells[1] = k.key.tls_backend.clone();
                cells[3] = k.key.case.clone();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
        }
    }
    let rest = format!("{}{}", lists(c), notes(c));
    out.push_str("\n```\n");
    out.push_str(rest.trim());
    out.push_str("\n```\n");
    out
}

/// One CSV line: a metric of a key, or a key not compared (`verdict` says why).
#[derive(Serialize)]
struct CsvLine<'a> {
    scenario: &'a str,
    config: &'a str,
    tls_backend: &'a str,
    tls_library: &'a str,
    case: &'a str,
    metric: &'a str,
    base: Option<f64>,
    new: Option<f64>,
    base_n: Option<usize>,
    new_n: Option<usize>,
    ratio: Option<f64>,
    interval_low: Option<f64>,
    interval_high: Option<f64>,
    verdict: &'a str,
    note: &'a str,
}

fn csv(c: &Comparison) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for k in &c.keys {
        if let Some(why) = &k.unmeasured {
            w.serialize(CsvLine {
                note: why,
                ..CsvLine::of(&k.key, "not compared")
            })?;
        }
        for m in &k.metrics {
            w.serialize(CsvLine {
                metric: m.metric.name(),
                base: m.base,
                new: m.new,
                base_n: Some(m.base_n),
                new_n: Some(m.new_n),
                ratio: m.ratio,
                interval_low: m.interval.map(|i| i.low),
                interval_high: m.interval.map(|i| i.high),
                ..CsvLine::of(&k.key, m.verdict.name())
            })?;
        }
    }
    for (keys, verdict) in [
        (&c.only_in_base, "only in base"),
        (&c.only_in_new, "only in new"),
    ] {
        for key in keys {
            w.serialize(CsvLine::of(key, verdict))?;
        }
    }
    let bytes = w.into_inner().context("writing CSV")?;
    String::from_utf8(bytes).context("writing CSV")
}

impl<'a> CsvLine<'a> {
    /// A line for `key` with this verdict and no figures.
    fn of(key: &'a Key, verdict: &'a str) -> CsvLine<'a> {
        CsvLine {
            scenario: &key.scenario,
            config: &key.config,
            tls_backend: &key.tls_backend,
            tls_library: &key.tls_library,
            case: &key.case,
            metric: "",
            base: None,
            new: None,
            base_n: None,
            new_n: None,
            ratio: None,
            interval_low: None,
            interval_high: None,
            verdict,
            note: "",
        }
    }
}

/// The keys grouped by scenario, scenarios in the order they first come.
pub(super) fn by_scenario(keys: &[KeyComparison]) -> Vec<(&str, Vec<&KeyComparison>)> {
    let mut out: Vec<(&str, Vec<&KeyComparison>)> = Vec::new();
    for k in keys {
        match out.iter_mut().find(|(s, _)| *s == k.key.scenario) {
            Some((_, group)) => group.push(k),
            None => out.push((&k.key.scenario, vec![k])),
        }
    }
    out.retain(|(_, group)| group.iter().any(|k| k.unmeasured.is_none()));
    out
}

pub(super) fn ratio(r: Option<f64>) -> String {
    r.map_or("-".to_owned(), |r| format!("{r:.2}x"))
}

pub(super) fn interval(i: Option<Interval>) -> String {
    i.map_or("-".to_owned(), |i| format!("[{:.2}, {:.2}]", i.low, i.high))
}

/// A fraction as a percentage: `5%`, `2.5%`.
pub(super) fn pct(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}
