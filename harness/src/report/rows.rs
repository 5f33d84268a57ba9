//! A scenario's CSV rows on the page: how many of each status, the rows whose status is not
//! ok with their notes (read from the CSV itself, so the page has them without plot.py),
//! and for the fault suite every row.

use super::folder::{Kind, Rows};
use super::html::{paragraph, Align, Html, Table};

/// `72 rows: 69 ok, 2 warning, 1 error.`: the good verdict, warnings, then the others in
/// the order they first appear.
pub(super) fn count_line(rows: &Rows, kind: Kind) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for row in &rows.all {
        let v = row.get(rows.verdict).map_or("", String::as_str);
        match counts.iter_mut().find(|(name, _)| *name == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    // Good, warning, then the rest, however the rows are ordered.
    counts.sort_by_key(|(name, _)| (*name != kind.good, *name != "warning"));
    let parts: Vec<String> = counts
        .iter()
        .map(|(name, n)| {
            format!(
                "{n} {}",
                if name.is_empty() {
                    "without a verdict"
                } else {
                    name
                }
            )
        })
        .collect();
    match rows.all.len() {
        0 => "No rows: the run ended before this scenario measured anything.".to_owned(),
        n => format!("{n} rows: {}.", parts.join(", ")),
    }
}

/// The rows whose verdict is not the good one: which measurement, its verdict and note.
pub(super) fn flagged_rows(rows: &Rows, kind: Kind) -> Html {
    let col = |name: &str| rows.header.iter().position(|h| h == name);
    let keys: Vec<(usize, &str)> = kind
        .keys
        .iter()
        .filter_map(|k| Some((col(k)?, *k)))
        .collect();
    let note = col("note");
    let mut header: Vec<&str> = keys.iter().map(|(_, k)| *k).collect();
    header.push(kind.verdict);
    if note.is_some() {
        header.push("note");
    }
    let mut table = Table::new(&header);
    for (i, (_, name)) in keys.iter().enumerate() {
        if ["size", "iteration", "scenario"].contains(name) {
            table = table.align(i, Align::Right);
        }
    }
    for row in &rows.all {
        let cell = |i: usize| row.get(i).map_or("", String::as_str);
        let verdict = cell(rows.verdict);
        if verdict == kind.good {
            continue;
        }
        let mut cells: Vec<Html> = keys
            .iter()
            .map(|(i, _)| Html::text(or_dash(cell(*i))))
            .collect();
        cells.push(Html::text(verdict));
        if let Some(i) = note {
            cells.push(Html::text(cell(i)));
        }
        table.push_with_class(cells, row_class(verdict));
    }
    if table.is_empty() {
        return paragraph(Html::text("None: every row's status is ok."));
    }
    table.to_html()
}

/// Every row and column (the fault suite's table, one row per scenario).
pub(super) fn all_rows(rows: &Rows) -> Html {
    let mut table = Table::new(&rows.header);
    for row in &rows.all {
        let cells = row.iter().map(|c| Html::text(or_dash(c))).collect();
        let verdict = row.get(rows.verdict).map_or("", String::as_str);
        table.push_with_class(cells, row_class(verdict));
    }
    table.to_html()
}

/// The CSS class of a row with this verdict: the page colours warnings and failures, and
/// greys a fault scenario that does not apply to a terminator (`n/a`).
fn row_class(verdict: &str) -> &'static str {
    match verdict {
        "warning" => "warning",
        "ok" | "pass" => "ok",
        crate::faults::report::NOT_APPLICABLE => "na",
        _ => "error",
    }
}

fn or_dash(cell: &str) -> &str {
    if cell.is_empty() {
        "–"
    } else {
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::KINDS;

    fn rows(header: &[&str], all: &[&[&str]]) -> Rows {
        let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        Rows {
            verdict: header
                .iter()
                .position(|h| h == "status" || h == "verdict")
                .unwrap(),
            header,
            all: all
                .iter()
                .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
                .collect(),
        }
    }

    #[test]
    fn counts_put_ok_then_warning_first() {
        let sweep = KINDS[0];
        let r = rows(
            &["config", "status", "note"],
            &[
                &["a", "error", "x"],
                &["b", "ok", ""],
                &["c", "warning", "y"],
                &["d", "ok", ""],
            ],
        );
        assert_eq!(count_line(&r, sweep), "4 rows: 2 ok, 1 warning, 1 error.");
        assert!(count_line(&rows(&["status"], &[]), sweep).starts_with("No rows"));
    }

    #[test]
    fn only_rows_not_ok_are_listed_with_their_keys_and_note() {
        let sweep = KINDS[0];
        let r = rows(
            &["config", "size", "p50", "status", "note", "tls_library"],
            &[
                &["http", "10", "5", "ok", "servers share a CPU"],
                &["relay", "1000", "", "error", "no <listening on> line"],
            ],
        );
        let html = flagged_rows(&r, sweep);
        let s = html.as_str();
        assert!(!s.contains("<td>http</td>"), "{s}");
        assert!(
            s.contains("<tr class=\"error\"><td>relay</td><td>–</td><td class=\"num\">1000</td>"),
            "key columns in the kind's order, a missing cell as a dash: {s}"
        );
        assert!(s.contains("no &lt;listening on&gt; line"), "{s}");
        assert!(!s.contains("p50"), "figures are not keys: {s}");
        let clean = rows(&["config", "status", "note"], &[&["http", "ok", ""]]);
        assert!(flagged_rows(&clean, sweep).as_str().contains("None"));
    }

    #[test]
    fn the_fault_suite_shows_every_row() {
        let faults = KINDS[3];
        assert_eq!(faults.csv, "faults.csv");
        let r = rows(
            &["scenario", "name", "verdict", "note"],
            &[
                &["1", "slowloris", "pass", ""],
                &["2", "flood", "fail", "FAIL: p99"],
            ],
        );
        let s = all_rows(&r);
        assert!(
            s.as_str()
                .contains("<tr class=\"ok\"><td>1</td><td>slowloris</td>"),
            "{s:?}"
        );
        assert!(
            s.as_str().contains("<tr class=\"error\"><td>2</td>"),
            "{s:?}"
        );
        assert_eq!(count_line(&r, faults), "2 rows: 1 pass, 1 fail.");
    }
}
