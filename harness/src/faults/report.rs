//! The suite's results: one [`FaultRow`] per (scenario, terminator), the [`Checks`] that
//! decide its verdict from the acceptance criteria, and its two renderings: `faults.csv`
//! (tidy, one row per scenario and terminator, header first, written through
//! [`crate::output::CsvSink`]) and the table printed at the end of the suite. A criterion
//! a terminator cannot be held to is `n/a` in the note, with the reason; a scenario that
//! does not apply to it at all is a row with the verdict `n/a`.

/// Pass or fail, decided by the scenario's acceptance criteria; `n/a` when the scenario
/// does not apply to the terminator (the note says why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    NotApplicable,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::NotApplicable => NOT_APPLICABLE,
        }
    }
}

/// How a criterion or a scenario that does not apply reads, in the note and the verdict.
pub const NOT_APPLICABLE: &str = "n/a";

/// One scenario's figures and verdict. Figures that a scenario cannot measure are `None`
/// (an empty CSV cell), never a made-up zero.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRow {
    pub scenario: u8,
    pub name: String,
    /// Requests the good clients (loadgen, open loop) completed, and their errors.
    pub good_requests: Option<u64>,
    pub good_errors: Option<u64>,
    /// Good clients' p99 latency in this scenario, and in the no-attack baseline, µs.
    pub good_p99_us: Option<f64>,
    pub baseline_p99_us: Option<f64>,
    /// Misbehaving connections the scenario opened, and how many of them the terminator
    /// closed (`None` where only the proxy's counters could tell).
    pub attackers: u64,
    pub attackers_closed: Option<u64>,
    /// Times the terminator exited when it should not have (crash, panic, abort).
    pub proxy_exits: u64,
    /// The terminator's figures, summed over its process tree (a peer's master and
    /// workers; the proxy is one process): peak resident set (the sum of each live
    /// process's VmHWM, an upper bound of the tree's peak), and VmRSS before and after the
    /// fault.
    pub proxy_max_rss_kib: Option<u64>,
    pub proxy_rss_before_kib: Option<u64>,
    pub proxy_rss_after_kib: Option<u64>,
    /// Open descriptors in /proc/PID/fd before and after the fault (after settling), summed
    /// over the process tree.
    pub proxy_fds_before: Option<u64>,
    pub proxy_fds_after: Option<u64>,
    pub verdict: Verdict,
    /// Failed criteria first (with their numbers), then what was observed and what could
    /// not be checked.
    pub note: String,
    /// The TLS library the terminator ran (set by the suite for every row; see
    /// [`crate::tls_library`]).
    pub tls_library: String,
    /// The terminator: its config name (`proxy-rustls`, `haproxy`, `nginx`, ...).
    pub terminator: String,
}

impl FaultRow {
    /// An empty row for scenario `scenario`, verdict pending (pass until a check fails).
    pub fn new(scenario: u8, name: &str) -> FaultRow {
        FaultRow {
            scenario,
            name: name.to_owned(),
            good_requests: None,
            good_errors: None,
            good_p99_us: None,
            baseline_p99_us: None,
            attackers: 0,
            attackers_closed: Some(0),
            proxy_exits: 0,
            proxy_max_rss_kib: None,
            proxy_rss_before_kib: None,
            proxy_rss_after_kib: None,
            proxy_fds_before: None,
            proxy_fds_after: None,
            verdict: Verdict::Pass,
            note: String::new(),
            tls_library: String::new(),
            terminator: String::new(),
        }
    }

    /// A row for a scenario that does not apply to the terminator: verdict `n/a`, no
    /// figures, the reason in the note.
    pub fn not_applicable(scenario: u8, name: &str, reason: &str) -> FaultRow {
        FaultRow {
            attackers_closed: None,
            verdict: Verdict::NotApplicable,
            note: format!("{NOT_APPLICABLE}: {reason}"),
            ..FaultRow::new(scenario, name)
        }
    }

    /// Counts `n` more attackers closed by the terminator.
    pub fn add_closed(&mut self, n: u64) {
        self.attackers_closed = Some(self.attackers_closed.unwrap_or(0) + n);
    }

    /// Sets verdict and note from `checks`.
    pub fn conclude(&mut self, checks: &Checks) {
        self.verdict = checks.verdict();
        self.note = checks.note();
    }
}

/// The criteria a scenario checked and what it saw.
#[derive(Debug, Default)]
pub struct Checks {
    failed: Vec<String>,
    facts: Vec<String>,
}

impl Checks {
    /// Records `criterion` as failed unless `ok`. The text names the criterion and the
    /// numbers. Returns `ok`.
    pub fn require(&mut self, ok: bool, criterion: impl FnOnce() -> String) -> bool {
        if !ok {
            self.failed.push(criterion());
        }
        ok
    }

    /// Something observed, for the note.
    pub fn fact(&mut self, text: impl Into<String>) {
        self.facts.push(text.into());
    }

    /// A criterion this run could not check (said, never silently passed).
    pub fn unchecked(&mut self, text: impl std::fmt::Display) {
        self.facts.push(format!("NOT CHECKED: {text}"));
    }

    /// A criterion the terminator cannot be held to, and why (`n/a: criterion (why)`).
    pub fn not_applicable(&mut self, criterion: &str, why: &str) {
        self.facts
            .push(format!("{NOT_APPLICABLE}: {criterion} ({why})"));
    }

    /// `require` unless the terminator lacks what the criterion needs (`lacks` is the
    /// reason), in which case it is [`Checks::not_applicable`]. Returns whether it held.
    pub fn require_unless(
        &mut self,
        lacks: Option<String>,
        ok: bool,
        criterion: impl FnOnce() -> String,
    ) -> bool {
        match lacks {
            Some(why) => {
                self.not_applicable(&criterion(), &why);
                true
            }
            None => self.require(ok, criterion),
        }
    }

    pub fn verdict(&self) -> Verdict {
        if self.failed.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    pub fn failures(&self) -> &[String] {
        &self.failed
    }

    /// `FAIL: a; FAIL: b; fact; fact`.
    pub fn note(&self) -> String {
        self.failed
            .iter()
            .map(|f| format!("FAIL: {f}"))
            .chain(self.facts.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// p99 under attack against the baseline: within `factor` times it.
pub fn p99_within(p99_us: f64, baseline_us: f64, factor: f64) -> bool {
    baseline_us > 0.0 && p99_us <= baseline_us * factor
}

/// RSS "near baseline" after a fault: at most [`RSS_NEAR_FRACTION`] above it, or
/// [`RSS_NEAR_SLACK_KIB`], whichever is more (allocators keep some freed memory around).
pub fn rss_near(before_kib: u64, after_kib: u64) -> bool {
    let slack = ((before_kib as f64 * RSS_NEAR_FRACTION) as u64).max(RSS_NEAR_SLACK_KIB);
    after_kib <= before_kib + slack
}

/// How far above its starting point RSS may end and still count as returned: 25%.
pub const RSS_NEAR_FRACTION: f64 = 0.25;
/// ... or 8 MiB, for a proxy that starts small.
pub const RSS_NEAR_SLACK_KIB: u64 = 8 * 1024;

/// The CSV header (and the table's columns, in the same order).
pub const COLUMNS: [&str; 18] = [
    "scenario",
    "name",
    "good_requests",
    "good_errors",
    "good_p99_us",
    "baseline_p99_us",
    "attackers",
    "attackers_closed_by_proxy",
    "proxy_exits",
    "proxy_max_rss_kib",
    "proxy_rss_before_kib",
    "proxy_rss_after_kib",
    "proxy_fds_before",
    "proxy_fds_after",
    "verdict",
    "note",
    "tls_library",
    "terminator",
];

/// The row's cells, in [`COLUMNS`] order.
pub fn cells(row: &FaultRow) -> Vec<String> {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    let us = |v: Option<f64>| v.map(|v| format!("{v:.0}")).unwrap_or_default();
    vec![
        row.scenario.to_string(),
        row.name.clone(),
        opt(row.good_requests),
        opt(row.good_errors),
        us(row.good_p99_us),
        us(row.baseline_p99_us),
        row.attackers.to_string(),
        opt(row.attackers_closed),
        row.proxy_exits.to_string(),
        opt(row.proxy_max_rss_kib),
        opt(row.proxy_rss_before_kib),
        opt(row.proxy_rss_after_kib),
        opt(row.proxy_fds_before),
        opt(row.proxy_fds_after),
        row.verdict.name().to_owned(),
        row.note.clone(),
        row.tls_library.clone(),
        row.terminator.clone(),
    ]
}

/// The table printed at the end: aligned columns (short headers, the terminator after
/// the scenario), then each row's note on its own indented line, since notes are long.
pub fn render(rows: &[FaultRow]) -> String {
    const HEADERS: [&str; 16] = [
        "#",
        "scenario",
        "terminator",
        "good_req",
        "errors",
        "p99_us",
        "base_p99",
        "attackers",
        "closed",
        "exits",
        "max_rss_kib",
        "rss_before",
        "rss_after",
        "fds_before",
        "fds_after",
        "verdict",
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut c = cells(r);
            c.truncate(HEADERS.len() - 1);
            c.insert(2, r.terminator.clone());
            c
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                // Text columns left-aligned, figures right-aligned.
                if i == 1 || i == 2 || i == HEADERS.len() - 1 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(&HEADERS.map(String::from));
    out.push('\n');
    for (row, cells) in rows.iter().zip(&table) {
        out.push_str(&line(cells));
        out.push('\n');
        if !row.note.is_empty() {
            out.push_str(&format!("    note: {}\n", row.note));
        }
    }
    let count = |v: Verdict| rows.iter().filter(|r| r.verdict == v).count();
    let not_applicable = count(Verdict::NotApplicable);
    out.push_str(&format!(
        "{} scenario(s), {} passed, {} failed{}\n",
        rows.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        if not_applicable > 0 {
            format!(", {not_applicable} {NOT_APPLICABLE}")
        } else {
            String::new()
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::output::CsvSink;

    #[test]
    fn a_failed_criterion_fails_the_row_and_comes_first_in_the_note() {
        let mut checks = Checks::default();
        assert!(checks.require(true, || unreachable!("not called when ok")));
        checks.fact("2000 attackers closed after 2.0-2.4 s");
        assert_eq!(checks.verdict(), Verdict::Pass);
        assert!(!checks.require(false, || "good-client errors 0: got 3".into()));
        checks.unchecked("RSS in short mode");
        let mut row = FaultRow::new(1, "slowloris");
        row.conclude(&checks);
        assert_eq!(row.verdict, Verdict::Fail);
        assert_eq!(
            row.note,
            "FAIL: good-client errors 0: got 3; 2000 attackers closed after 2.0-2.4 s; \
             NOT CHECKED: RSS in short mode"
        );
        assert_eq!(checks.failures().len(), 1);
    }

    #[test]
    fn p99_and_rss_rules() {
        assert!(p99_within(1999.0, 1000.0, 2.0));
        assert!(p99_within(2000.0, 1000.0, 2.0));
        assert!(!p99_within(2001.0, 1000.0, 2.0));
        assert!(!p99_within(10.0, 0.0, 2.0), "no baseline, no pass");
        // Small proxy: 8 MiB of slack.
        assert!(rss_near(10_000, 10_000 + 8 * 1024));
        assert!(!rss_near(10_000, 10_000 + 8 * 1024 + 1));
        // Large proxy: 25%.
        assert!(rss_near(100_000, 125_000));
        assert!(!rss_near(100_000, 125_001));
        assert!(rss_near(100_000, 50_000));
    }

    fn sample() -> FaultRow {
        let mut row = FaultRow::new(2, "garbage");
        row.good_requests = Some(5000);
        row.good_errors = Some(0);
        row.good_p99_us = Some(812.4);
        row.baseline_p99_us = Some(700.0);
        row.attackers = 1000;
        row.attackers_closed = Some(1000);
        row.proxy_max_rss_kib = Some(20_000);
        row.note = "closed, with \"quotes\", and commas".into();
        row.tls_library = "rustls 0.23.46 + aws-lc-rs 1.19.0".into();
        row.terminator = "proxy-rustls".into();
        row
    }

    #[test]
    fn csv_has_the_header_and_one_tidy_row_per_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.csv");
        write_rows(&path, &[sample(), FaultRow::new(3, "flood")]);
        let mut reader = csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][4], "812");
        assert_eq!(&rows[0][10], "", "unmeasured figures stay empty");
        assert_eq!(&rows[0][14], "pass");
        assert_eq!(&rows[0][15], "closed, with \"quotes\", and commas");
        assert_eq!(&rows[0][16], "rustls 0.23.46 + aws-lc-rs 1.19.0");
        assert_eq!(&rows[0][17], "proxy-rustls");
        assert_eq!(&rows[1][1], "flood");
    }

    /// faults.csv's bytes (header, quoting, empty cells) as the suite's own csv writer
    /// wrote them before it went through [`CsvSink`].
    #[test]
    fn faults_csv_bytes_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faults.csv");
        write_rows(&path, &[sample(), FaultRow::new(3, "flood")]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "scenario,name,good_requests,good_errors,good_p99_us,baseline_p99_us,attackers,\
             attackers_closed_by_proxy,proxy_exits,proxy_max_rss_kib,proxy_rss_before_kib,\
             proxy_rss_after_kib,proxy_fds_before,proxy_fds_after,verdict,note,tls_library,\
             terminator\n\
             2,garbage,5000,0,812,700,1000,1000,0,20000,,,,,pass,\
             \"closed, with \"\"quotes\"\", and commas\",rustls 0.23.46 + aws-lc-rs 1.19.0,\
             proxy-rustls\n\
             3,flood,,,,,0,0,0,,,,,,pass,,,\n"
        );
    }

    /// Writes `rows` as the suite does: header, then one row each.
    fn write_rows(path: &Path, rows: &[FaultRow]) {
        let mut sink = CsvSink::create_with(path, &COLUMNS).unwrap();
        for row in rows {
            sink.write(&cells(row)).unwrap();
        }
    }

    #[test]
    fn table_aligns_columns_and_puts_notes_below() {
        let mut failed = FaultRow::new(3, "flood");
        failed.verdict = Verdict::Fail;
        failed.note = "FAIL: recovered within 1 s: took 2.1 s".into();
        let text = render(&[sample(), failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("#  scenario"), "{text}");
        assert!(
            lines[1].contains("garbage") && lines[1].ends_with("pass"),
            "{text}"
        );
        assert!(lines[2].starts_with("    note: closed"), "{text}");
        assert!(
            lines[3].contains("flood") && lines[3].ends_with("fail"),
            "{text}"
        );
        assert_eq!(lines[0].find("verdict"), lines[1].find("pass"), "{text}");
        assert!(
            text.ends_with("2 scenario(s), 1 passed, 1 failed\n"),
            "{text}"
        );
        assert!(lines[1].contains(" proxy-rustls "), "{text}");
    }

    #[test]
    fn not_applicable_reads_n_a_in_the_verdict_the_note_and_the_empty_cells() {
        let mut row = FaultRow::not_applicable(5, "bad-backend", "hitch has one backend");
        row.terminator = "hitch".into();
        let c = cells(&row);
        assert_eq!(c[14], "n/a");
        assert_eq!(c[15], "n/a: hitch has one backend");
        assert_eq!(c[7], "", "nobody counted closed attackers");
        assert_eq!(c[17], "hitch");
        let mut checks = Checks::default();
        assert!(
            checks.require_unless(Some("no /metrics".into()), false, || {
                "the gauge is back".into()
            })
        );
        assert!(!checks.require_unless(None, false, || "the gauge is back".into()));
        assert_eq!(
            checks.note(),
            "FAIL: the gauge is back; n/a: the gauge is back (no /metrics)"
        );
        let text = render(&[sample(), row]);
        assert!(
            text.ends_with("2 scenario(s), 1 passed, 0 failed, 1 n/a\n"),
            "{text}"
        );
        assert!(
            text.contains("    note: n/a: hitch has one backend\n"),
            "{text}"
        );
    }
}
