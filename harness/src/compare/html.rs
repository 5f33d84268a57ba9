//! A [`Comparison`] as one HTML page (`compare.html`), built with the run report's page
//! builder, so it opens from the file system with no network like `index.html`: the runs
//! compared and how to read the page, the warnings, a table per scenario with each
//! slower or faster line coloured, the keys not compared, the gate and the thresholds.

use std::path::{Path, PathBuf};

use super::render::{by_scenario, heading, metric_cells, notes, verdict_counts, COLUMNS};
use super::{Comparison, Key, Verdict};
use crate::certs::write_atomically;
use crate::report::html::{element, list, paragraph, pre, Align, Html, Page, Section, Table};

/// The page's file name when it goes into the new run's folder.
pub const FILE: &str = "compare.html";

/// Writes the page to `path` through a temporary file and a rename; returns `path`.
pub fn write(c: &Comparison, path: &Path) -> anyhow::Result<PathBuf> {
    write_atomically(path, page(c).render().as_bytes(), 0o644)?;
    Ok(path.to_owned())
}

/// The page.
pub fn page(c: &Comparison) -> Page {
    let mut sections = vec![Section {
        id: "runs".into(),
        heading: "Runs compared".into(),
        body: pre(&heading(c)),
    }];
    if !c.warnings.is_empty() {
        sections.push(Section {
            id: "warnings".into(),
            heading: format!("Warnings ({})", c.warnings.len()),
            body: element(
                "div",
                &[("class", "note")],
                list(c.warnings.iter().map(|w| Html::text(w))),
            ),
        });
    }
    for (scenario, keys) in by_scenario(&c.keys) {
        let mut table = Table::new(&COLUMNS);
        for column in 4..8 {
            table = table.align(column, Align::Right);
        }
        for k in keys.iter().filter(|k| k.unmeasured.is_none()) {
            for m in &k.metrics {
                let cells = metric_cells(k, m);
                let cells = cells.iter().map(|c| Html::text(c)).collect();
                match row_class(m.verdict) {
                    Some(class) => table.push_with_class(cells, class),
                    None => table.push(cells),
                }
            }
        }
        sections.push(Section {
            id: format!("scenario-{scenario}"),
            heading: scenario.to_owned(),
            body: table.to_html(),
        });
    }
    if let Some(body) = not_compared(c) {
        sections.push(Section {
            id: "not-compared".into(),
            heading: "Keys not compared".into(),
            body,
        });
    }
    let verdicts = notes(c);
    if !verdicts.trim().is_empty() {
        sections.push(Section {
            id: "gate".into(),
            heading: "Regression gate and thresholds".into(),
            body: pre(verdicts.trim_start()),
        });
    }
    Page {
        title: format!(
            "tls-off comparison: {} against {}",
            c.new.given, c.base.given
        ),
        subtitle: paragraph(Html::text(&verdict_counts(c))),
        sections,
    }
}

/// The CSS class of a metric's row: slower is coloured as an error, faster as good news.
fn row_class(verdict: Verdict) -> Option<&'static str> {
    match verdict {
        Verdict::Slower => Some("error"),
        Verdict::Faster => Some("faster"),
        Verdict::NoChange | Verdict::NoConfidence => None,
    }
}

/// Keys with no ok row on a side, and keys of one run only; `None` when there are none.
fn not_compared(c: &Comparison) -> Option<Html> {
    let mut items: Vec<Html> = c
        .keys
        .iter()
        .filter_map(|k| {
            let why = k.unmeasured.as_deref()?;
            Some(Html::text(&format!("{}: {why}", k.key.label())))
        })
        .collect();
    let one_side = |side: &str, keys: &[Key]| {
        keys.iter()
            .map(|k| Html::text(&format!("{}: only in {side}", k.label())))
            .collect::<Vec<_>>()
    };
    items.extend(one_side("base", &c.only_in_base));
    items.extend(one_side("new", &c.only_in_new));
    (!items.is_empty()).then(|| list(items))
}
