//! The fault suite end to end, short mode (what CI runs): the real release binaries (built
//! here if needed, which takes minutes the first time), every scenario of
//! `harness --preset smoke --scenario faults`, every verdict `pass`, no proxy crash, and no
//! child process left behind.

// A panic is the failure report in tests.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use harness::bins::{self, Bins};
use harness::cpus::{own_mask, CpuSplit};
use harness::faults::report::COLUMNS;
use harness::faults::{self, AttackerSched, Inputs, Placement, Verdict};
use harness::procfs::is_gone;
use harness::procs::{Ledger, Stop};

fn ledger_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next()?.parse().ok())
        .collect()
}

#[test]
fn short_fault_suite_passes_every_scenario() {
    let stop = Stop::default();
    let bin_dir = bins::build(&stop, false).unwrap();
    let bins = Bins::locate(&bin_dir, false).unwrap();
    let tls_library = bins
        .describe(false)
        .tls_libraries
        .get(false, faults::BACKEND);
    let mask = own_mask().unwrap();
    let split = CpuSplit::resolve(&mask, None, None).unwrap();
    let attackers = Placement::resolve(&mask, &split.client, None, AttackerSched::DEFAULT).unwrap();
    let out = tempfile::tempdir().unwrap();
    let logs = out.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let runtime = tempfile::tempdir().unwrap();
    let ledger_path = logs.join("children.tsv");
    let mut ledger = Ledger::create(&ledger_path).unwrap();

    let started = Instant::now();
    let rows = faults::run(Inputs {
        bins: &bins,
        split: &split,
        attackers: &attackers,
        only: &[],
        out_dir: out.path(),
        logs: &logs,
        runtime_dir: runtime.path(),
        stop: &stop,
        ledger: &mut ledger,
        short: true,
        soak: None,
        tls_library: tls_library.clone(),
    })
    .unwrap();
    let took = started.elapsed();
    assert!(
        tls_library.starts_with("rustls ") && tls_library.contains(" + aws-lc-rs "),
        "{tls_library}"
    );
    let table = harness::faults::report::render(&rows);

    let numbers: Vec<u8> = rows.iter().map(|r| r.scenario).collect();
    assert_eq!(numbers, (1..=8).collect::<Vec<u8>>(), "{table}");
    for row in &rows {
        if row.verdict != Verdict::Pass && only_the_p99_criterion_failed(row) {
            // The one timing criterion: a test asserts no timing (a shared CI machine's
            // neighbours move a p99 more than the attack does). The table reports it and
            // the full suite (README) holds it to 2x; every other criterion of scenario 1
            // is still required here.
            eprintln!(
                "warning: scenario 1's p99 criterion failed in the short suite: {}",
                row.note
            );
            continue;
        }
        assert_eq!(
            row.verdict,
            Verdict::Pass,
            "scenario {}: {}\n{table}",
            row.scenario,
            row.note
        );
        assert_eq!(
            row.proxy_exits, 0,
            "scenario {} crashed the proxy\n{table}",
            row.scenario
        );
        assert!(row.proxy_max_rss_kib.is_some_and(|k| k > 0), "{table}");
        if row.scenario != 4 {
            assert_eq!(row.good_errors, Some(0), "{table}");
        }
        assert!(row.good_requests.is_some_and(|n| n > 0), "{table}");
    }
    // The slowloris row says where its attackers ran (the default: SCHED_IDLE).
    assert!(
        rows[0].note.contains("attackers on CPUs ") && rows[0].note.contains("SCHED_IDLE"),
        "{}",
        rows[0].note
    );
    // The budget for CI, with room: a slow suite is a broken suite.
    assert!(
        took < Duration::from_secs(240),
        "the short suite took {took:?}\n{table}"
    );

    let mut reader = csv::Reader::from_path(out.path().join("faults.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 8);
    for (r, row) in records.iter().zip(&rows) {
        assert_eq!(
            &r[14],
            row.verdict.name(),
            "the CSV says what the table says"
        );
        assert_eq!(&r[16], tls_library, "every row names the proxy's library");
    }

    // Every process the suite started is gone.
    let pids = ledger_pids(&ledger_path);
    assert!(pids.len() >= 8 * 3, "{pids:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        while !is_gone(pid) {
            assert!(Instant::now() < deadline, "child {pid} outlived the suite");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Scenario 1 failed on its p99 criterion and on nothing else.
fn only_the_p99_criterion_failed(row: &harness::faults::report::FaultRow) -> bool {
    let failed: Vec<&str> = row
        .note
        .split("; ")
        .filter(|part| part.starts_with("FAIL:"))
        .collect();
    row.scenario == 1
        && !failed.is_empty()
        && failed
            .iter()
            .all(|part| part.starts_with("FAIL: good p99 within"))
}
