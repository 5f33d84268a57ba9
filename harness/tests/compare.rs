//! `harness compare`, thresholds and baselines through the binary, on run folders made in
//! a temporary folder from analysis/fixtures (a real quick run's CSV files) and a
//! meta.json as a run writes it. No measurement runs: these need no release build.

// Helpers outside `#[test]` functions panic as the tests do: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

fn harness(baselines: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.stdin(Stdio::null()).env("TLS_OFF_BASELINES", baselines);
    cmd
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn of(out: Output) -> Ran {
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn log(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `harness ARGS` with baselines in `tmp/baselines`.
fn run(tmp: &Path, args: &[&str]) -> Ran {
    Ran::of(harness(&tmp.join("baselines")).args(args).output().unwrap())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../analysis/fixtures")
        .join(name)
}

/// How a copy of the fixture run differs from it.
#[derive(Default)]
struct Changes {
    /// The sweep's req/s of proxy-rustls on rustls-aws-lc at 1000 bytes, times this.
    rps_factor: Option<f64>,
    /// Rows of this config left out.
    drop_config: Option<&'static str>,
    /// meta.json keys replaced: (pointer's parent object, key, value).
    meta: Vec<(&'static str, &'static str, Value)>,
}

/// A run folder `tmp/name` of the fixture's three CSV files and a meta.json, changed.
fn run_folder(tmp: &Path, name: &str, changes: &Changes) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["results.csv", "handshakes.csv", "idle.csv"] {
        let mut reader = csv::Reader::from_path(fixture(file)).unwrap();
        let header = reader.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name);
        let mut writer = csv::Writer::from_path(dir.join(file)).unwrap();
        writer.write_record(&header).unwrap();
        for record in reader.records() {
            let mut cells: Vec<String> = record.unwrap().iter().map(String::from).collect();
            let cell = |cells: &[String], name: &str| col(name).map(|i| cells[i].clone());
            if changes.drop_config.is_some()
                && cell(&cells, "config").as_deref() == changes.drop_config
            {
                continue;
            }
            let the_key = file == "results.csv"
                && cell(&cells, "config").as_deref() == Some("proxy-rustls")
                && cell(&cells, "tls_backend").as_deref() == Some("rustls-aws-lc")
                && cell(&cells, "size").as_deref() == Some("1000");
            if let (true, Some(factor)) = (the_key, changes.rps_factor) {
                let i = col("rps").unwrap();
                cells[i] = (cells[i].parse::<f64>().unwrap() * factor).to_string();
            }
            writer.write_record(&cells).unwrap();
        }
    }
    let mut meta = meta();
    for (parent, key, value) in &changes.meta {
        meta.pointer_mut(parent).unwrap()[*key] = value.clone();
    }
    std::fs::write(
        dir.join("meta.json"),
        serde_json::to_string_pretty(&meta).unwrap(),
    )
    .unwrap();
    dir
}

/// What `compare` reads of meta.json, where a run writes it.
/// Run folders `a` (the fixture) and `b` (its copy with one key's req/s at 0.7x).
fn base_and_slower(tmp: &Path) -> (PathBuf, PathBuf) {
    let slow = Changes {
        rps_factor: Some(0.7),
        ..Changes::default()
    };
    (
        run_folder(tmp, "a", &Changes::default()),
        run_folder(tmp, "b", &slow),
    )
}

fn meta() -> Value {
    json!({
        "status": "complete",
        "host": {"cpu_model": "AMD EPYC 7B13", "hostname": "bench"},
        "cpus": {"server": "0-2", "client": "3"},
        "plan": {
            "tls_version": "1.3", "cipher_suites": ["TLS_AES_128_GCM_SHA256"],
            "kx_groups": ["X25519"], "cert_type": "ecdsa-p256", "connections": 50,
            "duration": "5s", "warmup": "1s", "client_threads": null, "rate": null
        }
    })
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_run_against_itself_is_no_change_and_passes_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&a), "--fail-on-regression", "5%"],
    );
    let log = out.log();
    assert_eq!(out.code, Some(0), "{log}");
    assert!(
        out.stdout.contains("\nsweep\n") && out.stdout.contains("\nhandshakes\n"),
        "{log}"
    );
    assert!(
        out.stdout.contains("verdicts: 0 faster, 0 slower, "),
        "{log}"
    );
    // The fixture's keys with a warning or error row among three iterations have two ok
    // rows: no interval, counted by the gate as not judged (7 keys, 4 metrics each).
    assert!(out.stdout.contains(", 28 no confidence"), "{log}");
    assert!(
        out.stdout
            .contains("regression gate (5%): pass, nothing slower by more than 5%\n  28 comparison(s) with fewer than 3 iterations on a side"),
        "{log}"
    );
    assert!(!out.stdout.contains("warning:"), "{log}");
    // The one key whose only row failed is listed, not compared.
    assert!(
        out.stdout
            .contains("not compared (1):\n  handshakes haproxy openssl full rsa-2048 -: no ok row"),
        "{log}"
    );
}

#[test]
fn a_key_at_seven_tenths_the_rate_is_slower_and_fails_the_gate_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = base_and_slower(tmp.path());
    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&b), "--fail-on-regression", "5%"],
    );
    let log = out.log();
    assert_eq!(out.code, Some(1), "{log}");
    assert!(
        out.stdout.contains("verdicts: 0 faster, 1 slower, "),
        "{log}"
    );
    assert!(
        out.stdout
            .contains("regression gate (5%): FAIL, 1 regression\n"),
        "{log}"
    );
    let named = out
        .stdout
        .lines()
        .find(|l| l.contains("sweep proxy-rustls rustls-aws-lc 1000 req/s: 0.70x ["))
        .unwrap_or_else(|| panic!("the regression is named\n{log}"));
    assert!(named.ends_with("30% worse"), "{named}");
    // The page, in the new run's folder: the slower line coloured, nothing fetched.
    assert!(
        out.stderr
            .contains(&format!("report: {}", b.join("compare.html").display())),
        "{log}"
    );
    let page = std::fs::read_to_string(b.join("compare.html")).unwrap();
    assert!(
        page.contains(
            "<tr class=\"error\"><td>proxy-rustls</td><td>rustls-aws-lc</td><td>1000</td>\
             <td>req/s</td>"
        ),
        "{page}"
    );
    assert!(
        page.contains("regression gate (5%): FAIL, 1 regression"),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    // --html puts it elsewhere.
    let elsewhere = tmp.path().join("elsewhere.html");
    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&b), "--html", path(&elsewhere)],
    );
    assert_eq!(out.code, Some(0), "{}", out.log());
    assert!(elsewhere.is_file(), "{}", out.log());
    // Without the gate: the same verdict, exit 0.
    let out = run(tmp.path(), &["compare", path(&a), path(&b)]);
    assert_eq!(out.code, Some(0), "{}", out.log());
    // A limit above the change passes.
    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&b), "--fail-on-regression", "35"],
    );
    assert_eq!(out.code, Some(0), "{}", out.log());
}

#[test]
fn keys_of_one_run_only_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    let no_relay = Changes {
        drop_config: Some("relay"),
        ..Changes::default()
    };
    let b = run_folder(tmp.path(), "b", &no_relay);
    let out = run(tmp.path(), &["compare", path(&a), path(&b)]);
    let log = out.log();
    assert_eq!(out.code, Some(0), "{log}");
    // relay: 3 sizes in the sweep (the fixture's idle scenario has no relay).
    assert!(
        out.stdout.contains(
            "only in base (3):\n  sweep relay none 10\n  sweep relay none 1000\n  \
             sweep relay none 10000\n"
        ),
        "{log}"
    );
    assert!(!out.stdout.contains("only in new"), "{log}");
    let out = run(tmp.path(), &["compare", path(&b), path(&a)]);
    assert!(
        out.stdout
            .contains("only in new (3):\n  sweep relay none 10\n"),
        "{}",
        out.log()
    );
    assert!(!out.stdout.contains("only in base"), "{}", out.log());
}

#[test]
fn settings_that_differ_are_warned_about_one_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    let other = Changes {
        meta: vec![
            ("/plan", "connections", json!(100)),
            ("/host", "cpu_model", json!("Intel Xeon 8375C")),
            ("", "status", json!("interrupted")),
        ],
        ..Changes::default()
    };
    let b = run_folder(tmp.path(), "b", &other);
    let out = run(tmp.path(), &["compare", path(&a), path(&b)]);
    let log = out.log();
    assert_eq!(out.code, Some(0), "{log}");
    for line in [
        "warning: meta.json differs: CPU model (/host/cpu_model): AMD EPYC 7B13 (base) vs Intel Xeon 8375C (new)\n",
        "warning: meta.json differs: connections (/plan/connections): 50 (base) vs 100 (new)\n",
        "warning: new ",
    ] {
        assert!(out.stdout.contains(line), "{line}\n{log}");
    }
    assert!(out.stdout.contains("status is \"interrupted\""), "{log}");
    assert_eq!(out.stdout.matches("warning:").count(), 3, "{log}");
    // A CSV file alone: meta.json cannot be checked, and that is said.
    let lone = tmp.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(a.join("results.csv"), lone.join("results.csv")).unwrap();
    let csv = lone.join("results.csv");
    let out = run(
        tmp.path(),
        &["compare", path(&a.join("results.csv")), path(&csv)],
    );
    let log = out.log();
    assert_eq!(out.code, Some(0), "{log}");
    assert!(
        out.stdout.contains("warning: ") && out.stdout.contains("no meta.json beside it"),
        "{log}"
    );
    assert_eq!(
        out.stdout.matches("no meta.json").count(),
        1,
        "only the lone CSV: {log}"
    );
}

#[test]
fn one_iteration_gives_a_ratio_and_no_confidence() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    // Only iteration 1 of the sweep.
    let one = tmp.path().join("one");
    std::fs::create_dir(&one).unwrap();
    let text = std::fs::read_to_string(a.join("results.csv")).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.split(',').nth(8) == Some("1"))
        .map(|(_, l)| l)
        .collect();
    std::fs::write(one.join("results.csv"), kept.join("\n") + "\n").unwrap();
    std::fs::copy(a.join("meta.json"), one.join("meta.json")).unwrap();
    let out = run(
        tmp.path(),
        &[
            "compare",
            path(&a.join("results.csv")),
            path(&one),
            "--fail-on-regression",
            "1%",
        ],
    );
    let log = out.log();
    assert_eq!(out.code, Some(0), "{log}");
    assert!(
        out.stdout
            .contains("verdicts: 0 faster, 0 slower, 0 no change, "),
        "{log}"
    );
    assert!(out.stdout.contains("no confidence"), "{log}");
    assert!(
        out.stdout
            .contains("with fewer than 3 iterations on a side: no interval, not judged"),
        "{log}"
    );
}

#[test]
fn json_csv_and_markdown_carry_the_same_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = base_and_slower(tmp.path());
    let out = run(
        tmp.path(),
        &[
            "compare",
            path(&a),
            path(&b),
            "--format",
            "json",
            "--fail-on-regression",
            "5%",
        ],
    );
    assert_eq!(out.code, Some(1), "{}", out.log());
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let regressions = v["gate"]["regressions"].as_array().unwrap();
    assert_eq!(regressions.len(), 1, "{v}");
    assert_eq!(regressions[0]["metric"], "rps");
    assert_eq!(regressions[0]["key"]["config"], "proxy-rustls");
    assert_eq!(regressions[0]["key"]["case"], "1000");
    let slower: Vec<&Value> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| k["metrics"].as_array().unwrap())
        .filter(|m| m["verdict"] == "slower")
        .collect();
    assert_eq!(slower.len(), 1, "{v}");
    assert!(
        out.stderr.contains("regression gate (5%): FAIL"),
        "{}",
        out.log()
    );

    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&b), "--format", "csv"],
    );
    let mut reader = csv::Reader::from_reader(out.stdout.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(
        header.iter().collect::<Vec<_>>().join(","),
        "scenario,config,tls_backend,tls_library,case,metric,base,new,base_n,new_n,ratio,\
         interval_low,interval_high,verdict,note"
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let slower: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[13] == "slower").collect();
    assert_eq!(slower.len(), 1);
    assert_eq!(
        (&slower[0][1], &slower[0][4], &slower[0][5]),
        ("proxy-rustls", "1000", "rps")
    );
    assert!(
        rows.iter().any(|r| &r[13] == "not compared"),
        "the failed key is a line too"
    );

    let out = run(
        tmp.path(),
        &["compare", path(&a), path(&b), "--format", "markdown"],
    );
    assert_eq!(out.code, Some(0), "{}", out.log());
    assert!(
        out.stdout.contains(
            "| proxy-rustls | rustls-aws-lc | rustls 0.23.46 + aws-lc-rs 1.19.0 | 1000 | req/s |"
        ),
        "{}",
        out.log()
    );
    assert!(out.stdout.contains("| slower |"), "{}", out.log());
}

#[test]
fn bad_input_exits_2_naming_what_was_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    let missing = tmp.path().join("nope");
    let out = run(tmp.path(), &["compare", path(&a), path(&missing)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr.contains("nope: no such run folder or CSV file"),
        "{}",
        out.log()
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run(tmp.path(), &["compare", path(&empty), path(&a)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr
            .contains("no results.csv, handshakes.csv, idle.csv in"),
        "{}",
        out.log()
    );

    let wrong = tmp.path().join("wrong.csv");
    std::fs::write(&wrong, "config,size,rps\nhttp,10,1\n").unwrap();
    let out = run(tmp.path(), &["compare", path(&a), path(&wrong)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr.contains("wrong.csv: not a harness results.csv"),
        "{}",
        out.log()
    );
    assert!(
        out.stderr
            .contains("no column tls_backend, handshake, status"),
        "{}",
        out.log()
    );

    let bad_number = tmp.path().join("bad");
    std::fs::create_dir(&bad_number).unwrap();
    let text = std::fs::read_to_string(a.join("results.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let rps_col = lines[0].split(',').position(|h| h == "rps").unwrap();
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[rps_col] = "fast".into();
    lines[3] = cells.join(",");
    std::fs::write(bad_number.join("results.csv"), lines.join("\n") + "\n").unwrap();
    let out = run(tmp.path(), &["compare", path(&a), path(&bad_number)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr
            .contains("results.csv, line 4: column rps: \"fast\" is not a number"),
        "{}",
        out.log()
    );

    let bad_meta = run_folder(tmp.path(), "m", &Changes::default());
    std::fs::write(bad_meta.join("meta.json"), "{ not json").unwrap();
    let out = run(tmp.path(), &["compare", path(&a), path(&bad_meta)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(out.stderr.contains("meta.json: not JSON"), "{}", out.log());

    for args in [
        vec!["--format", "html"],
        vec!["--noise", "lots"],
        vec!["--fail-on-regression", "150%"],
    ] {
        let mut all = vec!["compare", path(&a), path(&a)];
        all.extend(args.iter().copied());
        let out = run(tmp.path(), &all);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.log());
        assert!(out.stderr.contains(args[1]), "{args:?}: {}", out.log());
    }
}

#[test]
fn thresholds_on_compare_are_checked_against_new() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = base_and_slower(tmp.path());
    let check = |threshold: &str| {
        run(
            tmp.path(),
            &["compare", path(&a), path(&b), "--threshold", threshold],
        )
    };
    // proxy-rustls on aws-lc at 1000 bytes: about 27,900 req/s in base, 19,500 in new.
    let out = check("proxy-rustls-aws-lc@1k:rps>15000");
    assert_eq!(out.code, Some(0), "{}", out.log());
    assert!(
        out.stdout
            .contains("thresholds (median over iterations): 1 passed, 0 failed"),
        "{}",
        out.log()
    );
    let out = check("proxy-rustls-aws-lc@1k:rps>25000");
    assert_eq!(out.code, Some(1), "{}", out.log());
    assert!(
        out.stdout.contains(
            "FAIL  proxy-rustls-aws-lc@1k:rps>25000  sweep proxy-rustls rustls-aws-lc 1000  rps 19"
        ),
        "{}",
        out.log()
    );
    let out = check("nginx:rps>1");
    assert_eq!(out.code, Some(1), "{}", out.log());
    assert!(
        out.stdout.contains("matches no row of the sweep"),
        "{}",
        out.log()
    );
    let out = check("p99<<5ms");
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr
            .contains("\"p99<<5ms\": at character 5: expected a number"),
        "{}",
        out.log()
    );
}

#[test]
fn baselines_are_found_by_name_and_a_missing_one_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run_folder(tmp.path(), "a", &Changes::default());
    let saved = run_folder(&tmp.path().join("baselines"), "main", &Changes::default());
    assert!(saved.ends_with("baselines/main"));
    let out = run(
        tmp.path(),
        &[
            "compare",
            "baseline:main",
            path(&a),
            "--fail-on-regression",
            "5%",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.log());
    assert!(
        out.stdout.starts_with(
            "base: baseline:main (results.csv, handshakes.csv, idle.csv, meta.json)\n"
        ),
        "{}",
        out.log()
    );
    let out = run(tmp.path(), &["compare", "baseline:nope", path(&a)]);
    assert_eq!(out.code, Some(2), "{}", out.log());
    assert!(
        out.stderr.contains("no baseline \"nope\"") && out.stderr.contains("saved: main"),
        "{}",
        out.log()
    );
    // --baseline-dir names another folder; the variable is then ignored.
    let out = run(
        tmp.path(),
        &[
            "compare",
            "baseline:main",
            path(&a),
            "--baseline-dir",
            path(tmp.path()),
        ],
    );
    assert_eq!(out.code, Some(2), "{}", out.log());
}

#[test]
fn run_flags_fail_before_the_run_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("run");
    let cases: [(&[&str], &str); 4] = [
        (&["--baseline", "nope"], "--baseline: no baseline \"nope\""),
        (
            &["--save-baseline", "a/b"],
            "--save-baseline: baseline name \"a/b\"",
        ),
        (
            &["--threshold", "p99<5 parsecs"],
            "at character 7: expected a unit",
        ),
        (
            &["--scenario", "faults", "--save-baseline", "x"],
            "faults.csv",
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["--preset", "smoke", "--out", path(&out_dir)];
        all.extend(args);
        let out = run(tmp.path(), &all);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.log());
        assert!(out.stderr.contains(says), "{args:?}: {}", out.log());
        assert!(!out_dir.exists(), "{args:?}: nothing started");
    }
    // Good flags pass the checks: a dry run prints the plan and exits 0.
    run_folder(&tmp.path().join("baselines"), "main", &Changes::default());
    let out = run(
        tmp.path(),
        &[
            "--preset",
            "smoke",
            "--dry-run",
            "--baseline",
            "main",
            "--save-baseline",
            "next",
            "--threshold",
            "proxy-rustls:rps>1",
        ],
    );
    assert_eq!(out.code, Some(0), "{}", out.log());
}
