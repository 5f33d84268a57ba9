//! The harness binary end to end: the smoke preset against the real release binaries (the
//! harness builds them itself, which takes minutes the first time), an interrupted run,
//! and the errors that must come before anything starts.

// Helpers outside `#[test]` functions panic as the tests do: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::cpus::{own_mask, CpuSplit};
use harness::output::COLUMNS;
use harness::procfs::is_gone;

/// Whether HAProxy (the smoke preset's peer) is installed. Under `CI=true` it must be:
/// `.ci/run` installs it, and a run that skipped it would test less than it claims.
fn haproxy_installed() -> bool {
    let found = [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ]
    .iter()
    .any(|p| Path::new(p).exists());
    if !found {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but haproxy is not installed (apt-get install -y haproxy)"
        );
        eprintln!("haproxy not installed: the smoke run skips it (apt-get install -y haproxy)");
    }
    found
}

fn harness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The split the harness makes by default, asked for explicitly so the test can check it
/// was recorded as asked.
fn split() -> CpuSplit {
    CpuSplit::resolve(&own_mask().unwrap(), None, None).unwrap()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader.records().collect::<Result<Vec<_>, _>>().unwrap();
    (header, rows)
}

/// PIDs the harness started, from `logs/children.tsv`.
fn child_pids(run: &Path) -> Vec<(u32, String)> {
    let ledger = std::fs::read_to_string(run.join("logs/children.tsv")).unwrap_or_default();
    ledger
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let pid = f.next()?.parse().ok()?;
            let _measurement = f.next()?;
            Some((pid, f.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn smoke_preset_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let split = split();
    // The host's peers: CI installs HAProxy there (the current set has its own smoke run).
    let out = harness()
        .args(["--preset", "smoke", "--peers", "system", "--out"])
        .arg(&run)
        .args(["--server-cpus", &split.server.to_string()])
        .args(["--client-cpus", &split.client.to_string()])
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");

    let (header, rows) = read_csv(&run.join("results.csv"));
    assert_eq!(header, COLUMNS);
    assert_eq!(
        header[..8].join(","),
        "config,size,requests,mean,stdev,p50,p90,p99"
    );
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let num = |r: &csv::StringRecord, name: &str| -> f64 {
        r[col(name)]
            .parse()
            .unwrap_or_else(|_| panic!("{name} = {:?} in {r:?}", &r[col(name)]))
    };
    // One row per config x size x iteration: 6 configs (7 with HAProxy), sizes 10 and
    // 1000, 1 iteration.
    let haproxy = haproxy_installed();
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[col("config")].to_owned(), r[col("size")].to_owned()))
        .collect();
    seen.sort();
    let mut expected = Vec::new();
    let mut configs = vec![
        "http",
        "https-openssl",
        "https-rustls",
        "proxy-openssl",
        "proxy-rustls",
        "relay",
    ];
    if haproxy {
        configs.push("haproxy");
    }
    configs.sort_unstable();
    for config in configs {
        for size in ["10", "1000"] {
            expected.push((config.to_owned(), size.to_owned()));
        }
    }
    assert_eq!(seen, expected, "{log}");
    for r in &rows {
        // A saturated load generator is a fact of a 2-CPU machine, not a harness fault: the
        // harness must flag it as a warning (and nothing else may be wrong with the row).
        match &r[col("status")] {
            "ok" => {}
            "warning" => {
                assert_eq!(&r[col("loadgen_saturated")], "true", "{r:?}\n{log}");
                for part in r[col("note")].split("; ") {
                    assert!(part.contains("saturated"), "{part:?} in {r:?}\n{log}");
                }
            }
            other => panic!("status {other:?} in {r:?}\n{log}"),
        }
        assert_eq!(num(r, "iteration"), 1.0);
        assert_eq!(num(r, "errors"), 0.0, "{r:?}");
        assert!(num(r, "rps") > 0.0, "{r:?}");
        assert!(num(r, "requests") > 0.0, "{r:?}");
        let (p50, p90, p99, max) = (num(r, "p50"), num(r, "p90"), num(r, "p99"), num(r, "max"));
        assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "{r:?}");
        assert!(num(r, "server_cpu_s") > 0.0, "{r:?}");
        assert_eq!(r[col("server_cpus")], split.server.to_string(), "{r:?}");
        assert_eq!(r[col("client_cpus")], split.client.to_string(), "{r:?}");
        if ["http", "relay"].contains(&&r[col("config")]) {
            // No TLS, so no TLS column is filled.
            for column in [
                "tls_version",
                "tls_cipher_suite",
                "tls_kx_group",
                "cert_type",
            ] {
                assert_eq!(&r[col(column)], "", "{column}: {r:?}");
            }
        } else {
            assert_eq!(&r[col("tls_version")], "TLSv1.3", "{r:?}");
            assert_eq!(&r[col("tls_kx_group")], "X25519", "{r:?}");
            assert_eq!(&r[col("cert_type")], "ecdsa-p256", "{r:?}");
        }
        assert_eq!(&r[col("handshake")], "keep-alive", "{r:?}");
        assert_eq!(&r[col("client_processes")], "1", "{r:?}");
        latency_file_matches_row(&run, r, &col);
        if r[col("config")].starts_with("proxy-")
            || ["relay", "haproxy"].contains(&&r[col("config")])
        {
            assert!(num(r, "proxy_cpu_s") > 0.0, "{r:?}");
            assert!(num(r, "proxy_peak_rss_kib") > 0.0, "{r:?}");
        }
    }

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete", "{meta}");
    assert_eq!(meta["cpus"]["server"], split.server.to_string());
    assert!(meta["end"].is_string());
    assert!(meta["binaries"]["proxy"]["version"].is_string());
    let openssl = meta["libraries"]["openssl_linked"]
        .as_str()
        .unwrap_or_default();
    assert!(openssl.starts_with("OpenSSL 3."), "{meta}");
    let runtime = PathBuf::from(meta["runtime_dir"].as_str().unwrap());
    assert!(!runtime.exists(), "sockets and certificate are cleaned up");
    assert!(run.join("summary.txt").is_file());
    assert!(run
        .join("logs/1-proxy-rustls-aws-lc-10-proxy.err")
        .is_file());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("proxy-openssl"), "summary table: {log}");
    let pids = child_pids(&run);
    let rows_n = if haproxy { 14 } else { 12 };
    let fronts = if haproxy { 8 } else { 6 };
    assert_eq!(
        pids.len(),
        rows_n * 2 + fronts,
        "echo + loadgen per row, a terminator for {fronts}: {pids:?}"
    );
    if haproxy {
        assert!(meta["peers"]["haproxy"]["version"]
            .as_str()
            .unwrap()
            .contains("HAProxy"));
        let conf = run.join("configs/1-haproxy-10-haproxy.cfg");
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains("nbthread 1") || text.contains("nbthread"),
            "{text}"
        );
    }
    assert!(pids.iter().all(|(pid, _)| is_gone(*pid)), "{pids:?}");
    original_layout_matches_results(&run, &rows, &header);
}

/// A sweep row's full latency distribution: `latency/<config>-<size>-<iteration>.hgrm`,
/// HdrHistogram's percentile table in ms, one sample per request of the row, its
/// percentiles those of the row (to the table's 0.001 ms).
fn latency_file(run: &Path, r: &csv::StringRecord, col: &dyn Fn(&str) -> usize) -> String {
    let file = &r[col("latency_file")];
    let backend = &r[col("tls_backend")];
    let config = &r[col("config")];
    let label = match backend {
        "rustls-aws-lc" | "rustls-ring" => config.replace("rustls", backend),
        _ => config.to_owned(),
    };
    let expected = format!(
        "latency/{label}-{}-{}.hgrm",
        &r[col("size")],
        &r[col("iteration")]
    );
    assert_eq!(file, expected, "{r:?}");
    std::fs::read_to_string(run.join(file)).unwrap()
}

fn latency_file_matches_row(run: &Path, r: &csv::StringRecord, col: &dyn Fn(&str) -> usize) {
    let table = latency_file(run, r, col);
    assert!(
        table.starts_with("# loadgen latency; values in milliseconds\n"),
        "{table}"
    );
    assert!(table.contains("Value     Percentile TotalCount 1/(1-Percentile)"));
    let total = format!("Total count    = {:>12}]", &r[col("requests")]);
    assert!(table.contains(&total), "{total:?} in {table}");
    let max_ms: f64 = r[col("max")].parse::<f64>().unwrap() / 1000.0;
    assert!(
        table.contains(&format!("#[Max     = {max_ms:12.3},")),
        "max {max_ms} ms in {table}"
    );
}

/// `tls-bench.csv`: no header, one line per sweep row that is not an error, its cells the
/// first eight of `results.csv`'s; and the original experiment's R analysis reads it.
fn original_layout_matches_results(run: &Path, rows: &[csv::StringRecord], header: &[String]) {
    let path = run.join("tls-bench.csv");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(&path)
        .unwrap();
    let lines = reader.records().collect::<Result<Vec<_>, _>>().unwrap();
    let status = header.iter().position(|h| h == "status").unwrap();
    let expected: Vec<Vec<&str>> = rows
        .iter()
        .filter(|r| &r[status] != "error")
        .map(|r| r.iter().take(8).collect())
        .collect();
    let got: Vec<Vec<&str>> = lines.iter().map(|r| r.iter().collect()).collect();
    assert_eq!(got, expected, "{}", path.display());

    let rscript = Command::new("Rscript")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !rscript {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but Rscript is not installed"
        );
        eprintln!("Rscript not installed: the original analysis is not run");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../analysis/original.R");
    let png = run.join("original.png");
    let out = Command::new("Rscript")
        .arg(&script)
        .arg(&path)
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::metadata(&png).unwrap().len() > 1000,
        "{}",
        text(&out)
    );
}

#[test]
fn handshake_and_idle_scenarios_write_their_own_csv() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The relay floor too: no handshake rows, but an idle row with no TLS columns.
    let mut configs = "proxy-rustls,relay".to_owned();
    if haproxy_installed() {
        configs.push_str(",haproxy");
    }
    let out = harness()
        .args(["--preset", "smoke", "--scenario", "all", "--sizes", "10"])
        .args([
            "--configs",
            &configs,
            "--peers",
            "system",
            "--no-plot",
            "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let n = configs.split(',').count();
    let n_tls = n - 1;

    let (header, rows) = read_csv(&run.join("handshakes.csv"));
    assert_eq!(header, COLUMNS);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    // full/resumed x ecdsa/rsa per config, plus the hybrid for rustls-aws-lc.
    assert_eq!(rows.len(), 4 * n_tls + 1, "{rows:?}\n{log}");
    for r in &rows {
        assert_ne!(&r[col("status")], "error", "{r:?}\n{log}");
        assert_eq!(&r[col("errors")], "0", "{r:?}");
        let handshakes: f64 = r[col("rps")].parse().unwrap();
        assert!(handshakes > 0.0, "{r:?}");
        let resumed: u64 = r[col("tls_resumed")].parse().unwrap();
        match &r[col("handshake")] {
            "full" => assert_eq!(resumed, 0, "{r:?}"),
            "resumed" => assert!(resumed > 0, "tickets work for {}: {r:?}", &r[col("config")]),
            other => panic!("handshake {other:?}"),
        }
        assert!(r[col("time_wait")].parse::<u64>().is_ok(), "{r:?}");
        assert_eq!(&r[col("latency_file")], "", "sweep rows only: {r:?}");
    }
    let hybrid: Vec<_> = rows
        .iter()
        .filter(|r| &r[col("tls_kx_group")] == "X25519MLKEM768")
        .collect();
    assert_eq!(hybrid.len(), 1, "{rows:?}");
    assert_eq!(&hybrid[0][col("tls_backend")], "rustls-aws-lc");
    assert!(rows.iter().any(|r| &r[col("cert_type")] == "rsa-2048"));

    let (header, rows) = read_csv(&run.join("idle.csv"));
    assert_eq!(header, harness::output::IDLE_COLUMNS);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), n, "{rows:?}");
    for r in &rows {
        assert_ne!(&r[col("status")], "error", "{r:?}\n{log}");
        assert_eq!(&r[col("connections_opened")], "200", "{r:?}");
        if &r[col("config")] == "relay" {
            for column in [
                "tls_version",
                "tls_cipher_suite",
                "tls_kx_group",
                "cert_type",
            ] {
                assert_eq!(&r[col(column)], "", "{column}: {r:?}");
            }
        }
        let per_conn: f64 = r[col("terminator_kib_per_conn")].parse().unwrap();
        // 200 plain connections can fit in pages the relay already has; TLS ones cannot.
        if &r[col("config")] == "relay" {
            assert!(per_conn >= 0.0, "{r:?}");
        } else {
            assert!(per_conn > 0.0, "{r:?}");
        }
        assert!(
            r[col("backend_kib_per_conn")].parse::<f64>().is_ok(),
            "{r:?}"
        );
    }
    let (_, sweep) = read_csv(&run.join("results.csv"));
    assert_eq!(sweep.len(), n);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("handshakes/s") && stdout.contains("KiB/conn"),
        "{log}"
    );
    // The run's page, written last: every scenario, and why there are no pictures.
    assert!(stdout.contains("report:  "), "{log}");
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    for section in ["sweep", "handshakes", "idle", "closing-table"] {
        assert!(
            page.contains(&format!("<section id=\"{section}\">")),
            "{section}"
        );
    }
    assert!(page.contains("(the run says: --no-plot)"), "{page}");
}

/// `--client-processes 2`: two loadgen processes per measurement, segments 1/2 and 2/2 on
/// the client CPUs, merged into one row; the handshakes too. The idle scenario refuses it.
#[test]
fn client_processes_merge_into_one_row_per_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let split = split();
    let shares: Vec<String> = split
        .client
        .round_robin(2)
        .iter()
        .map(|c| c.to_string())
        .collect();
    let run_with = |scenario: &str, run: &Path| {
        let out = harness()
            .args([
                "--preset",
                "smoke",
                "--scenario",
                scenario,
                "--sizes",
                "1000",
            ])
            .args(["--configs", "http,proxy-rustls", "--client-processes", "2"])
            .args(["--peers", "system", "--no-plot", "--out"])
            .arg(run)
            .output()
            .unwrap();
        let log = text(&out);
        assert!(out.status.success(), "{log}");
        log
    };

    let run = dir.path().join("sweep");
    let log = run_with("sweep", &run);
    let (header, rows) = read_csv(&run.join("results.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 2, "one row per measurement: {rows:?}\n{log}");
    for r in &rows {
        assert_ne!(&r[col("status")], "error", "{r:?}\n{log}");
        assert_eq!(&r[col("client_processes")], "2", "{r:?}");
        assert_eq!(&r[col("client_cpus")], shares.join(";"), "{r:?}");
        assert_eq!(&r[col("connections_opened")], "10", "5 + 5: {r:?}");
        assert_eq!(&r[col("errors")], "0", "{r:?}");
        latency_file_matches_row(&run, r, &col);
        let label = if &r[col("config")] == "http" {
            "http"
        } else {
            "proxy-rustls-aws-lc"
        };
        let stem = run.join(format!("logs/1-{label}-1000-loadgen"));
        let segment = |i: u32| -> serde_json::Value {
            let text = std::fs::read_to_string(format!("{}-{i}.out", stem.display())).unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let (one, two) = (segment(1), segment(2));
        assert_eq!(
            (one["segment"].as_str(), two["segment"].as_str()),
            (Some("1/2"), Some("2/2"))
        );
        let merged: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}-merged.json", stem.display())).unwrap(),
        )
        .unwrap();
        let requests = |v: &serde_json::Value| v["requests"].as_u64().unwrap();
        assert_eq!(requests(&merged), requests(&one) + requests(&two));
        assert_eq!(
            r[col("requests")].parse::<u64>().unwrap(),
            requests(&merged)
        );
        let saturated = one["cpu"]["saturated"] == true || two["cpu"]["saturated"] == true;
        assert_eq!(&r[col("loadgen_saturated")], saturated.to_string(), "{r:?}");
        assert_eq!(merged["segments"].as_array().unwrap().len(), 2);
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["plan"]["client_processes"], 2);
    assert_eq!(meta["cpus"]["client_processes"], serde_json::json!(shares));
    // Two load generators a measurement, each in the ledger.
    let loadgens = child_pids(&run)
        .iter()
        .filter(|(_, name)| name.starts_with("loadgen-"))
        .count();
    assert_eq!(loadgens, 4);

    let run = dir.path().join("handshakes");
    let log = run_with("handshakes", &run);
    let (header, rows) = read_csv(&run.join("handshakes.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(rows.len(), 5, "{rows:?}\n{log}");
    for r in &rows {
        assert_ne!(&r[col("status")], "error", "{r:?}\n{log}");
        assert_eq!(&r[col("client_processes")], "2", "{r:?}");
        assert!(r[col("rps")].parse::<f64>().unwrap() > 0.0, "{r:?}");
    }

    let out = harness()
        .args([
            "--preset",
            "smoke",
            "--scenario",
            "idle",
            "--client-processes",
            "2",
        ])
        .args(["--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("applies to the sweep and the handshakes"),
        "{stderr}"
    );
}

#[test]
fn interrupted_run_leaves_no_children_and_a_valid_csv() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let stdout = std::fs::File::create(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = harness()
        .args(["--preset", "smoke", "--duration", "5s", "--out"])
        .arg(&run)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let log = || {
        format!(
            "--- stderr\n{}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
        )
    };
    // Wait until a load generator runs (after the build, which may take minutes).
    let deadline = Instant::now() + BUILD_AND_START;
    loop {
        if child_pids(&run).iter().any(|(_, name)| name == "loadgen") {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "harness exited ({status}) before starting loadgen\n{}",
                log()
            );
        }
        assert!(Instant::now() < deadline, "no loadgen started\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "harness ignored SIGINT\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{}", log());

    let pids = child_pids(&run);
    assert!(pids.len() >= 2, "{pids:?}");
    for (pid, name) in &pids {
        assert!(is_gone(*pid), "{name} (pid {pid}) outlived the harness");
    }
    let (header, rows) = read_csv(&run.join("results.csv"));
    assert_eq!(header, COLUMNS);
    assert!(rows.len() < 10, "the run was cut short: {rows:?}");
    assert!(rows.iter().all(|r| r.len() == COLUMNS.len()));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "interrupted", "{meta}");
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(
        page.contains(": interrupted"),
        "the page says how the run ended"
    );
    let runtime = PathBuf::from(meta["runtime_dir"].as_str().unwrap());
    assert!(
        !runtime.exists(),
        "no stale socket left in {}",
        runtime.display()
    );
}

#[test]
fn unknown_config_is_a_usage_error() {
    let out = harness().args(["--configs", "http,htps"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown config \"htps\""), "{err}");
}

#[test]
fn unwritable_out_dir_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let started = Instant::now();
    let out = harness()
        .args(["--preset", "smoke", "--out"])
        .arg(file.join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--out") && err.contains("file/run"), "{err}");
    assert!(!err.contains("cargo build"), "nothing was built: {err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn missing_binary_and_cpu_outside_mask_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = harness()
        .args(["--preset", "smoke", "--bin-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing binary") && err.contains("loadgen"),
        "{err}"
    );

    let beyond = own_mask().unwrap().cpus().last().unwrap() + 1;
    let out = harness()
        .args(["--preset", "smoke", "--server-cpus", &beyond.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the harness's affinity mask"), "{err}");
}

#[test]
fn dry_run_prints_the_plan() {
    let out = harness()
        .args(["--plan", "smoke", "--peers", "system", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plan: preset smoke"), "{err}");
    // Ours and HAProxy at two sizes; a missing HAProxy is skipped before the plan prints,
    // and so is HAProxy on AWS-LC, which only the current set has.
    let expected = if haproxy_installed() { 14 } else { 12 };
    assert!(err.contains(&format!("{expected} measurements")), "{err}");
}

#[test]
fn fault_suite_dry_run_says_where_the_attackers_run_and_refuses_cpus_outside_the_mask() {
    let out = harness()
        .args(["--preset", "smoke", "--scenario", "faults", "--dry-run"])
        .args(["--fault-scenarios", "1,3", "--attacker-sched", "normal"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = own_mask().unwrap().cpus().last().unwrap().to_string();
    assert!(err.contains("scenarios 1, 3, short"), "{err}");
    assert!(
        err.contains(&format!("attackers {last} (sched normal)")),
        "{err}"
    );

    let beyond = own_mask().unwrap().cpus().last().unwrap() + 1;
    let out = harness()
        .args(["--preset", "smoke", "--scenario", "faults", "--dry-run"])
        .args(["--attacker-cpus", &beyond.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--attacker-cpus"), "{err}");

    let out = harness()
        .args(["--scenario", "sweep", "--fault-scenarios", "1", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// The first test to run builds the release binaries (fat LTO, two shared cores): allow it.
const BUILD_AND_START: Duration = Duration::from_secs(40 * 60);

#[test]
fn current_peers_asked_for_but_not_installed_is_a_usage_error_naming_the_install() {
    let empty = tempfile::tempdir().unwrap();
    let out = harness()
        .env("TLS_OFF_PEERS", empty.path())
        .args([
            "--configs",
            "http,haproxy",
            "--peers",
            "current",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--peers current: no current peer set")
            && err.contains("cargo run --release -p harness -- peers install"),
        "{err}"
    );

    let out = harness()
        .env("TLS_OFF_PEERS", empty.path())
        .args(["peers", "install", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("not installed") && said.contains("peers install"),
        "{said}"
    );
}

#[test]
fn haproxy_awslc_without_a_build_is_skipped_in_one_line_naming_the_install() {
    let empty = tempfile::tempdir().unwrap();
    let out = harness()
        .env("TLS_OFF_PEERS", empty.path())
        .args([
            "--configs",
            "http,haproxy-awslc",
            "--sizes",
            "10",
            "--iterations",
            "1",
        ])
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let skipped: Vec<&str> = err.lines().filter(|l| l.contains("skipping")).collect();
    assert_eq!(
        skipped,
        [
            "harness: skipping haproxy-awslc: not in the current peer set; \
          `cargo run --release -p harness -- peers install` builds it"
        ],
        "{err}"
    );
    assert!(
        err.contains("harness: peers: system (the host's packages)"),
        "{err}"
    );
    assert!(
        err.contains(", 1 measurements,"),
        "only http is left: {err}"
    );
}

/// A failed step (here: a mirror nobody serves) names itself, its command and its output,
/// and leaves nothing a later run or `--check` takes for an install.
#[test]
fn a_failed_peers_install_names_the_step_and_the_command() {
    if !Path::new("/usr/sbin/debootstrap").exists() || !harness::stack::running_as_root() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but debootstrap is missing or this is not root"
        );
        eprintln!("skipped: needs root and debootstrap (apt-get install -y debootstrap)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = harness()
        .args([
            "peers",
            "install",
            "--mirror",
            "http://127.0.0.1:9/debian",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("step `root filesystem`"), "{err}");
    assert!(
        err.contains("debootstrap --variant=minbase trixie"),
        "{err}"
    );
    assert!(
        err.contains("127.0.0.1:9/debian/dists/trixie"),
        "the log's tail: {err}"
    );
    assert!(!dir.path().join("peers.json").exists());
    let out = harness()
        .args(["peers", "install", "--check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("did not finish"));
}

/// A relative `--out` works for every peer: nginx reads a relative config path against its
/// own prefix (`-p`), so the harness must hand it an absolute one.
#[test]
fn a_relative_out_folder_works_for_nginx() {
    if !Path::new("/usr/sbin/nginx").exists() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but nginx is not installed (apt-get install -y nginx-light libnginx-mod-stream)"
        );
        eprintln!("skipped: nginx not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = harness()
        .current_dir(dir.path())
        .args([
            "--preset",
            "smoke",
            "--configs",
            "nginx",
            "--peers",
            "system",
        ])
        .args(["--sizes", "10", "--no-plot", "--out", "run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (_, rows) = read_csv(&dir.path().join("run/results.csv"));
    assert_eq!(rows.len(), 1);
    let status = rows[0].get(COLUMNS.iter().position(|c| *c == "status").unwrap());
    assert_ne!(status, Some("error"), "{rows:?}");
}

#[test]
fn thresholds_and_baselines_at_the_end_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let baselines = dir.path().join("baselines");
    let run = |name: &str, extra: &[&str]| {
        let out = harness()
            .env("TLS_OFF_BASELINES", &baselines)
            .args(["--preset", "smoke", "--configs", "http", "--sizes", "10"])
            .args(["--iterations", "2", "--no-plot", "--out"])
            .arg(dir.path().join(name))
            .args(extra)
            .output()
            .unwrap();
        let code = out.status.code();
        (
            code,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            text(&out),
        )
    };
    // One threshold that holds, one no server meets: exit 1, each listed after the
    // summary, and the run saved as a baseline all the same.
    let (code, stdout, log) = run(
        "first",
        &[
            "--threshold",
            "http:rps>1",
            "--threshold",
            "http@10:p99<1us",
            "--save-baseline",
            "first",
        ],
    );
    assert_eq!(code, Some(1), "{log}");
    let list = stdout
        .find("thresholds (median over iterations): 1 passed, 1 failed")
        .unwrap_or_else(|| panic!("the list\n{log}"));
    assert!(
        stdout.find("req/s").unwrap() < list,
        "after the summary\n{log}"
    );
    assert!(stdout.contains("  pass  http:rps>1 "), "{log}");
    assert!(stdout.contains("  FAIL  http@10:p99<1us "), "{log}");
    assert!(baselines.join("first/results.csv").is_file(), "{log}");
    assert!(baselines.join("first/meta.json").is_file(), "{log}");
    assert!(log.contains("a --threshold failed"), "{log}");

    // Compared with it at the end: the comparison closes the output; exit 0.
    let (code, stdout, log) = run(
        "second",
        &["--baseline", "first", "--threshold", "http:rps>1"],
    );
    assert_eq!(code, Some(0), "{log}");
    let comparison = stdout
        .find("base: baseline:first")
        .unwrap_or_else(|| panic!("the comparison\n{log}"));
    assert!(stdout.find("thresholds (").unwrap() < comparison, "{log}");
    // http's key is compared, or listed as not compared when a saturated load generator
    // made its rows warnings (a 2-CPU machine).
    let tail = &stdout[comparison..];
    assert!(
        tail.contains("\nsweep\n") || tail.contains("  sweep http none 10: no ok row"),
        "{log}"
    );
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("verdicts: "),
        "{log}"
    );
}

#[test]
fn the_fault_suite_attacks_the_configs_named_and_refuses_the_others() {
    // An empty current set: the peers come from the host, and one not built is skipped.
    let empty = tempfile::tempdir().unwrap();
    let out = harness()
        .env("TLS_OFF_PEERS", empty.path())
        .args([
            "--scenario",
            "faults",
            "--configs",
            "proxy-rustls,haproxy-awslc",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("harness: skipping haproxy-awslc: not in the current peer set"),
        "{err}"
    );
    assert!(
        err.contains("  faults:      scenarios 1-8; proxy-rustls (rustls-aws-lc) in front of"),
        "{err}"
    );
    let out = harness()
        .args(["--scenario", "faults", "--configs", "stunnel", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the fault suite attacks proxy-rustls"),
        "{}",
        text(&out)
    );
}
