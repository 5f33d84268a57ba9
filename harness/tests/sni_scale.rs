//! `--scenario sni-scale` end to end with 200 certificates: our proxy on both TLS
//! libraries, and HAProxy when it is installed (skipped with its package name otherwise;
//! under `CI=true` a missing HAProxy fails it). The harness builds the release binaries
//! itself (minutes the first time). Checked: one row per terminator, every name served its
//! own certificate (the first and the last among them), no failed handshake for either
//! name nor during the reloads, every reload done. Timings are figures, not checked.

// Helpers outside `#[test]` functions panic as the tests do: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};

/// HAProxy from the current peer set or the host; under `CI=true` it must be there.
fn haproxy_installed() -> bool {
    let current = harness::peers::current::PeerDir::default_location()
        .is_ok_and(|d| d.manifest().is_some() && d.wrapper("haproxy").is_file());
    let host = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .any(|p| Path::new(p).exists());
    if !(current || host) {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but haproxy is not installed (apt-get install -y haproxy)"
        );
        eprintln!("haproxy not installed: skipped (apt-get install -y haproxy)");
    }
    current || host
}

#[test]
fn two_hundred_certificates_each_served_for_its_name_through_reloads() {
    let mut configs = vec!["proxy-rustls", "proxy-openssl"];
    if haproxy_installed() {
        configs.push("haproxy");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let status = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args([
            "--preset",
            "smoke",
            "--scenario",
            "sni-scale",
            "--sni-certs",
            "200",
        ])
        .args(["--configs", &configs.join(","), "--no-plot", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let mut reader = csv::Reader::from_path(out.join("sni-scale.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let cell = |row: &csv::StringRecord, name: &str| -> String {
        let i = header.iter().position(|h| h == name).unwrap();
        row[i].to_owned()
    };
    let got: Vec<String> = rows.iter().map(|r| cell(r, "config")).collect();
    assert_eq!(got, configs, "one row per terminator, in order");
    for row in &rows {
        let config = cell(row, "config");
        let note = cell(row, "note");
        assert_eq!(cell(row, "certs"), "200", "{config}");
        assert!(
            cell(row, "served_checked").parse::<u32>().unwrap() >= 2,
            "{config}: {note}"
        );
        assert_eq!(cell(row, "served_wrong"), "0", "{config}: {note}");
        for column in ["first_errors", "last_errors", "reload_failed_handshakes"] {
            assert_eq!(cell(row, column), "0", "{config} {column}: {note}");
        }
        for column in ["first_requests", "last_requests", "reload_requests"] {
            let n: u64 = cell(row, column).parse().unwrap();
            assert!(n > 0, "{config} {column}: {note}");
        }
        assert_eq!(cell(row, "reloads_done"), "10", "{config}: {note}");
        assert_eq!(
            cell(row, "rss_after_reloads_kib").split(';').count(),
            10,
            "{config}"
        );
        for column in ["start_ms", "rss_kib", "first_p99_us", "last_p99_us"] {
            assert!(!cell(row, column).is_empty(), "{config} {column}: {note}");
        }
    }
    // The exit code follows the verdicts; RSS after the reloads is one of them, a figure
    // of the machine as much as of the terminator, so it is reported here, not required.
    eprintln!("harness exited {status:?}");
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        page.contains("Certificates at scale"),
        "the report page has the table"
    );
}
