//! The scenario's results: one [`SniRow`] per terminator, its CSV cells (`sni-scale.csv`,
//! header first) and the table printed at the end. Figures a terminator did not get to
//! (it failed to start, say) are `None`: an empty cell, never a made-up zero.

use crate::faults::report::{Checks, Verdict};

/// One terminator's figures and verdict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SniRow {
    pub config: String,
    pub tls_backend: String,
    pub tls_library: String,
    /// Names in the list (the default certificate comes on top).
    pub certs: usize,
    /// From process start to ready, with the first name only and with all of them.
    pub start_1_ms: Option<f64>,
    pub start_ms: Option<f64>,
    /// RSS after start (summed over the terminator's process tree), same two starts.
    pub rss_1_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    /// The start with all names' proportional set size: shared pages of forked workers
    /// counted once (VmRSS counts them in each process).
    pub pss_kib: Option<u64>,
    /// Names whose served certificate was checked, and those that got another one.
    pub served_checked: usize,
    pub served_wrong: usize,
    /// Handshake load (a new connection and full handshake per request) with SNI the
    /// first and the last name of the list, the same connections and duration each.
    pub first: Option<Handshakes>,
    pub last: Option<Handshakes>,
    /// The reloads under load.
    pub reload: Option<Reloads>,
    pub verdict: Option<Verdict>,
    pub note: String,
}

/// One name's handshake figures (the mean of its runs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Handshakes {
    pub requests: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Reloads of every certificate under a handshake load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reloads {
    pub asked: usize,
    /// Reloads the terminator said it finished, and the time each took (signal to its log
    /// line), ms.
    pub done_ms: Vec<f64>,
    /// The load during the reloads: requests, and those that failed.
    pub requests: u64,
    pub failed: u64,
    /// RSS under load before the first reload, after each (old workers gone), and the
    /// most seen while they ran.
    pub rss_before_kib: u64,
    pub rss_after_kib: Vec<u64>,
    pub peak_rss_kib: u64,
    /// Proportional set size before the first reload and after the last.
    pub pss_before_kib: u64,
    pub pss_after_kib: u64,
}

impl Reloads {
    /// RSS after the last reload against before them, percent.
    pub fn change_pct(&self) -> Option<f64> {
        let last = *self.rss_after_kib.last()?;
        (self.rss_before_kib > 0).then(|| (last as f64 / self.rss_before_kib as f64 - 1.0) * 100.0)
    }

    /// The criterion: RSS after the last reload at most [`RSS_LIMIT_PCT`] above before.
    pub fn rss_within_limit(&self) -> Option<bool> {
        self.change_pct().map(|p| p <= RSS_LIMIT_PCT)
    }
}

impl SniRow {
    /// Memory per certificate: the start with every name minus the start with one, over
    /// the names added, KiB.
    pub fn per_cert_kib(&self) -> Option<f64> {
        let (one, all) = (self.rss_1_kib?, self.rss_kib?);
        (self.certs > 1).then(|| (all as f64 - one as f64) / (self.certs - 1) as f64)
    }

    /// Last name's p99 over the first name's: near 1 when lookups do not walk the list.
    pub fn p99_ratio(&self) -> Option<f64> {
        let (first, last) = (self.first?, self.last?);
        (first.p99_us > 0.0).then(|| last.p99_us / first.p99_us)
    }

    /// The verdict from the criteria (every name its own certificate, no failed handshake,
    /// every reload done, RSS back within 10%); timings are figures, never criteria.
    pub fn conclude(&mut self, mut checks: Checks) {
        checks.require(self.served_checked > 0 && self.served_wrong == 0, || {
            format!(
                "{} of {} names checked got another certificate (or none)",
                self.served_wrong, self.served_checked
            )
        });
        for (which, h) in [("first", self.first), ("last", self.last)] {
            match h {
                Some(h) => {
                    checks.require(h.errors == 0, || {
                        format!("{} failed handshakes for the {which} name", h.errors)
                    });
                }
                None => {
                    checks.require(false, || format!("no handshakes for the {which} name"));
                }
            }
        }
        match &self.reload {
            Some(r) => reload_checks(&mut checks, r),
            None => {
                checks.require(false, || "no reloads measured".to_owned());
            }
        }
        self.verdict = Some(checks.verdict());
        self.note = checks.note();
    }
}

fn reload_checks(checks: &mut Checks, r: &Reloads) {
    checks.require(r.done_ms.len() == r.asked, || {
        format!("{} of {} reloads finished", r.done_ms.len(), r.asked)
    });
    checks.require(r.failed == 0 && r.requests > 0, || {
        format!(
            "{} of {} handshakes failed during the reloads",
            r.failed, r.requests
        )
    });
    let last = r.rss_after_kib.last().copied().unwrap_or_default();
    checks.require(r.rss_within_limit() == Some(true), || {
        format!(
            "RSS after the last reload {last} KiB is {:+.1}% of {} KiB before (limit \
             +{RSS_LIMIT_PCT}%)",
            r.change_pct().unwrap_or(f64::NAN),
            r.rss_before_kib
        )
    });
}

/// How far above its level before the reloads RSS may end: 10%.
pub const RSS_LIMIT_PCT: f64 = 10.0;

/// The CSV header.
pub const COLUMNS: [&str; 37] = [
    "config",
    "tls_backend",
    "tls_library",
    "certs",
    "start_1cert_ms",
    "start_ms",
    "rss_1cert_kib",
    "rss_kib",
    "pss_kib",
    "per_cert_kib",
    "served_checked",
    "served_wrong",
    "first_requests",
    "first_errors",
    "first_p50_us",
    "first_p99_us",
    "last_requests",
    "last_errors",
    "last_p50_us",
    "last_p99_us",
    "last_first_p99_ratio",
    "reloads",
    "reloads_done",
    "reload_median_ms",
    "reload_max_ms",
    "reload_requests",
    "reload_failed_handshakes",
    "rss_before_reloads_kib",
    "rss_after_reloads_kib",
    "rss_after_last_reload_kib",
    "rss_reload_change_pct",
    "rss_within_10pct",
    "reload_peak_rss_kib",
    "pss_before_reloads_kib",
    "pss_after_last_reload_kib",
    "verdict",
    "note",
];

/// The row's cells, in [`COLUMNS`] order.
pub fn cells(row: &SniRow) -> Vec<String> {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.map(|v| v.to_string()).unwrap_or_default()
    }
    let f = |v: Option<f64>, digits: usize| v.map(|v| format!("{v:.digits$}")).unwrap_or_default();
    let hs = |h: Option<Handshakes>| -> [String; 4] {
        [
            opt(h.map(|h| h.requests)),
            opt(h.map(|h| h.errors)),
            f(h.map(|h| h.p50_us), 0),
            f(h.map(|h| h.p99_us), 0),
        ]
    };
    let r = row.reload.as_ref();
    let mut out = vec![
        row.config.clone(),
        row.tls_backend.clone(),
        row.tls_library.clone(),
        row.certs.to_string(),
        f(row.start_1_ms, 1),
        f(row.start_ms, 1),
        opt(row.rss_1_kib),
        opt(row.rss_kib),
        opt(row.pss_kib),
        f(row.per_cert_kib(), 2),
        row.served_checked.to_string(),
        row.served_wrong.to_string(),
    ];
    out.extend(hs(row.first));
    out.extend(hs(row.last));
    out.push(f(row.p99_ratio(), 2));
    out.extend([
        opt(r.map(|r| r.asked)),
        opt(r.map(|r| r.done_ms.len())),
        f(r.and_then(|r| median(&r.done_ms)), 1),
        f(
            r.and_then(|r| r.done_ms.iter().copied().reduce(f64::max)),
            1,
        ),
        opt(r.map(|r| r.requests)),
        opt(r.map(|r| r.failed)),
        opt(r.map(|r| r.rss_before_kib)),
        r.map(|r| join(&r.rss_after_kib)).unwrap_or_default(),
        opt(r.and_then(|r| r.rss_after_kib.last().copied())),
        f(r.and_then(Reloads::change_pct), 1),
        r.and_then(Reloads::rss_within_limit)
            .map(|ok| if ok { "pass" } else { "fail" }.to_owned())
            .unwrap_or_default(),
        opt(r.map(|r| r.peak_rss_kib)),
        opt(r.map(|r| r.pss_before_kib)),
        opt(r.map(|r| r.pss_after_kib)),
        row.verdict.map(|v| v.name().to_owned()).unwrap_or_default(),
        row.note.clone(),
    ]);
    out
}

/// The table printed at the end: the figures a reader compares, one line per terminator,
/// then each failing row's note.
pub fn render(rows: &[SniRow]) -> String {
    let header = [
        "config",
        "certs",
        "start_ms",
        "rss_MiB",
        "KiB/cert",
        "p99_first",
        "p99_last",
        "ratio",
        "reload_ms",
        "failed",
        "rss_chg%",
        "verdict",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    let f = |v: Option<f64>, digits: usize| {
        v.map(|v| format!("{v:.digits$}"))
            .unwrap_or_else(|| "-".into())
    };
    for row in rows {
        let r = row.reload.as_ref();
        let label = if row.config.starts_with("proxy-") {
            format!("{} ({})", row.config, row.tls_backend)
        } else {
            row.config.clone()
        };
        lines.push(vec![
            label,
            row.certs.to_string(),
            f(row.start_ms, 0),
            f(row.rss_kib.map(|k| k as f64 / 1024.0), 1),
            f(row.per_cert_kib(), 2),
            f(row.first.map(|h| h.p99_us), 0),
            f(row.last.map(|h| h.p99_us), 0),
            f(row.p99_ratio(), 2),
            f(r.and_then(|r| median(&r.done_ms)), 0),
            r.map_or_else(|| "-".into(), |r| r.failed.to_string()),
            f(r.and_then(Reloads::change_pct), 1),
            row.verdict.map_or("-", Verdict::name).to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for row in rows.iter().filter(|r| r.verdict != Some(Verdict::Pass)) {
        out.push_str(&format!(
            "  {} ({}): {}\n",
            row.config, row.tls_backend, row.note
        ));
    }
    out
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn join(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_row() -> SniRow {
        let h = |p99| Handshakes {
            requests: 1000,
            errors: 0,
            p50_us: 800.0,
            p99_us: p99,
        };
        SniRow {
            config: "proxy-rustls".into(),
            tls_backend: "rustls-aws-lc".into(),
            certs: 101,
            rss_1_kib: Some(10_000),
            rss_kib: Some(10_500),
            served_checked: 5,
            first: Some(h(1000.0)),
            last: Some(h(1100.0)),
            reload: Some(Reloads {
                asked: 2,
                done_ms: vec![30.0, 50.0],
                requests: 500,
                failed: 0,
                rss_before_kib: 10_000,
                rss_after_kib: vec![10_600, 10_900],
                peak_rss_kib: 12_000,
                pss_before_kib: 9_000,
                pss_after_kib: 9_100,
            }),
            ..SniRow::default()
        }
    }

    #[test]
    fn figures_and_verdict_come_from_the_measurements() {
        let mut row = full_row();
        assert_eq!(row.per_cert_kib(), Some(5.0));
        assert!((row.p99_ratio().unwrap() - 1.1).abs() < 1e-9);
        row.conclude(Checks::default());
        assert_eq!(row.verdict, Some(Verdict::Pass), "{}", row.note);
        let cells = cells(&row);
        assert_eq!(cells.len(), COLUMNS.len());
        let at = |name: &str| &cells[COLUMNS.iter().position(|c| *c == name).unwrap()];
        assert_eq!(at("per_cert_kib"), "5.00");
        assert_eq!(at("last_first_p99_ratio"), "1.10");
        assert_eq!(at("reload_median_ms"), "40.0");
        assert_eq!(at("rss_after_reloads_kib"), "10600;10900");
        assert_eq!(at("rss_reload_change_pct"), "9.0");
        assert_eq!(at("rss_within_10pct"), "pass");
        assert_eq!(at("verdict"), "pass");
        assert!(render(&[row]).contains("proxy-rustls (rustls-aws-lc)"));
    }

    #[test]
    fn each_broken_criterion_fails_the_row_with_its_numbers() {
        let mut grown = full_row();
        if let Some(r) = grown.reload.as_mut() {
            r.rss_after_kib = vec![10_600, 11_200];
        }
        grown.conclude(Checks::default());
        assert_eq!(grown.verdict, Some(Verdict::Fail));
        assert!(
            grown.note.contains("11200 KiB is +12.0% of 10000 KiB"),
            "{}",
            grown.note
        );
        assert_eq!(cells(&grown)[31], "fail");

        let mut wrong = full_row();
        wrong.served_wrong = 1;
        if let Some(r) = wrong.reload.as_mut() {
            r.failed = 3;
            r.done_ms.pop();
        }
        wrong.last = None;
        wrong.conclude(Checks::default());
        for part in [
            "1 of 5 names checked",
            "3 of 500 handshakes failed",
            "1 of 2 reloads finished",
            "no handshakes for the last name",
        ] {
            assert!(wrong.note.contains(part), "{part}: {}", wrong.note);
        }
        assert!(render(&[wrong]).contains("FAIL: 1 of 5"));
        let empty = SniRow::default();
        assert_eq!(cells(&empty).len(), COLUMNS.len());
        assert!(cells(&empty)[4].is_empty(), "no figure is a made-up zero");
        assert!(cells(&empty)[8].is_empty(), "no PSS is a made-up zero");
    }
}
