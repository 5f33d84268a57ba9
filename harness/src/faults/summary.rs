//! The side-by-side summary of a suite run against several terminators
//! (`faults-summary.md`, [`crate::plan::FAULTS_SUMMARY`], and printed after the table): one
//! line per scenario, one column per terminator, each cell the good clients' p99 as a
//! multiple of that terminator's own no-attack baseline (scenario 1's), their errors, the
//! terminator's memory after the fault, whether it survived, and the verdict.

use super::report::{FaultRow, Verdict, NOT_APPLICABLE};

/// The summary as a markdown table, with a line saying how to read a cell.
pub fn render(rows: &[FaultRow]) -> String {
    let mut terminators: Vec<&str> = Vec::new();
    let mut scenarios: Vec<(u8, &str)> = Vec::new();
    for r in rows {
        if !terminators.contains(&r.terminator.as_str()) {
            terminators.push(&r.terminator);
        }
        if !scenarios.iter().any(|(n, _)| *n == r.scenario) {
            scenarios.push((r.scenario, &r.name));
        }
    }
    let mut out = String::from(
        "Each cell: good-client p99 under the fault as a multiple of the terminator's own \
         no-attack baseline (scenario 1's), good-client errors, RSS after the fault (process \
         tree), survived (no unexpected exit), verdict.\n\n| # | scenario |",
    );
    for t in &terminators {
        out.push_str(&format!(" {t} |"));
    }
    out.push_str("\n| --- | --- |");
    out.push_str(&" --- |".repeat(terminators.len()));
    out.push('\n');
    for (number, name) in &scenarios {
        out.push_str(&format!("| {number} | {name} |"));
        for t in &terminators {
            let row = rows
                .iter()
                .find(|r| r.scenario == *number && r.terminator == *t);
            out.push_str(&format!(" {} |", row.map_or_else(String::new, cell)));
        }
        out.push('\n');
    }
    out
}

/// One terminator's figures in one scenario.
pub fn cell(r: &FaultRow) -> String {
    if r.verdict == Verdict::NotApplicable {
        return NOT_APPLICABLE.to_owned();
    }
    let multiple = match (r.good_p99_us, r.baseline_p99_us) {
        (Some(p99), Some(base)) if base > 0.0 => format!("{:.1}x", p99 / base),
        _ => "?x".to_owned(),
    };
    let errors = r
        .good_errors
        .map_or_else(|| "? err".to_owned(), |e| format!("{e} err"));
    let rss = r.proxy_rss_after_kib.map_or_else(
        || "? MiB".to_owned(),
        |k| format!("{:.0} MiB", k as f64 / 1024.0),
    );
    let survived = if r.proxy_exits == 0 {
        "survived".to_owned()
    } else {
        format!("exited {}x", r.proxy_exits)
    };
    format!(
        "{multiple}, {errors}, {rss}, {survived}, {}",
        r.verdict.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: u8, name: &str, terminator: &str, p99: f64) -> FaultRow {
        let mut r = FaultRow::new(scenario, name);
        r.terminator = terminator.into();
        r.good_p99_us = Some(p99);
        r.baseline_p99_us = Some(200.0);
        r.good_errors = Some(0);
        r.proxy_rss_after_kib = Some(20 * 1024);
        r
    }

    #[test]
    fn one_line_per_scenario_one_column_per_terminator() {
        let mut crashed = row(2, "garbage", "nginx", 300.0);
        crashed.proxy_exits = 1;
        crashed.verdict = Verdict::Fail;
        let mut missing = FaultRow::not_applicable(5, "bad-backend", "one backend");
        missing.terminator = "nginx".into();
        let rows = [
            row(1, "slowloris", "proxy-rustls", 600.0),
            row(1, "slowloris", "nginx", 250.0),
            row(2, "garbage", "proxy-rustls", 200.0),
            crashed,
            missing,
        ];
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[2], "| # | scenario | proxy-rustls | nginx |",
            "{text}"
        );
        assert_eq!(
            lines[4],
            "| 1 | slowloris | 3.0x, 0 err, 20 MiB, survived, pass | \
             1.2x, 0 err, 20 MiB, survived, pass |"
        );
        assert_eq!(
            lines[5],
            "| 2 | garbage | 1.0x, 0 err, 20 MiB, survived, pass | \
             1.5x, 0 err, 20 MiB, exited 1x, fail |"
        );
        assert_eq!(lines[6], "| 5 | bad-backend |  | n/a |", "{text}");
    }

    #[test]
    fn unknown_figures_are_question_marks_not_zeros() {
        let r = FaultRow::new(4, "backend-restart");
        assert_eq!(cell(&r), "?x, ? err, ? MiB, survived, pass");
    }
}
