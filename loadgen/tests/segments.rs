//! `--segment I/N` end to end: two segments of one open-loop load, run at once against the
//! echo-server, each send half the rate and take their share of the connections, and
//! `loadgen merge` adds them into the whole load; and the flag's bad values.

// reason: each test binary uses only some of the shared helpers.
#[allow(dead_code)]
mod common;

use common::{echo, int, loadgen, Mode, SERIAL};
use serde_json::Value;

/// `-c 10 --rate 1000` split in two: each segment opens 5 connections and sends 500
/// requests/s (3 s: 1500 requests, within 4% for the scheduling of two processes on a
/// small shared machine); merged, they are the whole load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_segments_of_an_open_loop_rate_each_send_half() {
    let _serial = SERIAL.lock().await;
    let server = echo(Mode::Http).await;
    let segment = |i: &'static str| {
        let url = server.url.clone();
        async move {
            loadgen(&[
                "-c",
                "10",
                "-d",
                "3s",
                "--rate",
                "1000",
                "-b",
                "10",
                "--segment",
                i,
                "--output",
                "json",
                &url,
            ])
            .await
        }
    };
    let (one, two) = tokio::join!(segment("1/2"), segment("2/2"));
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (run, name) in [(&one, "1/2"), (&two, "2/2")] {
        let report = run.ok_json();
        assert_eq!(report["segment"], name, "{report:#}");
        assert_eq!(report["rate"], 500.0);
        assert_eq!(int(&report, "/connections"), 5);
        assert_eq!(int(&report, "/connections_opened"), 5);
        let requests = int(&report, "/requests");
        assert!(
            (1440..=1560).contains(&requests),
            "segment {name} sent {requests} requests, not about 1500: {report:#}"
        );
        assert_eq!(int(&report, "/errors/total"), 0);
        let file = dir.path().join(format!("seg{}.json", &name[..1]));
        std::fs::write(&file, &run.stdout).unwrap();
        files.push(file.display().to_string());
    }

    let merged = loadgen(&["merge", &files[0], &files[1]]).await.ok_json();
    let (a, b) = (one.json(), two.json());
    assert_eq!(merged["rate"], 1000.0);
    assert_eq!(int(&merged, "/connections"), 10);
    assert_eq!(
        int(&merged, "/requests"),
        int(&a, "/requests") + int(&b, "/requests")
    );
    assert!(merged["segment"].is_null());
    let segments = merged["segments"].as_array().unwrap();
    let names: Vec<&str> = segments
        .iter()
        .map(|s| s["segment"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["1/2", "2/2"]);
    for (s, input) in segments.iter().zip([&a, &b]) {
        assert_eq!(s["saturated"], input["cpu"]["saturated"]);
        assert_eq!(s["requests"], input["requests"]);
    }
    // The union of two periods that ran together is about as long as either.
    let union = merged["duration_s"].as_f64().unwrap();
    let longest = a["duration_s"]
        .as_f64()
        .unwrap()
        .max(b["duration_s"].as_f64().unwrap());
    assert!(
        union >= longest && union < longest + 1.0,
        "{union} vs {longest}"
    );
    let max = |v: &Value| int(v, "/latency_us/max");
    assert_eq!(max(&merged), max(&a).max(max(&b)));
}

/// A segment's connections: `-c 10` over 3 segments is 4, 3, 3, and its threads no more
/// than those; over more segments than connections a segment would get none, which is
/// refused naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_takes_its_share_of_the_connections() {
    let _serial = SERIAL.lock().await;
    let server = echo(Mode::Http).await;
    for (segment, connections) in [("1/3", 4), ("3/3", 3)] {
        let report = loadgen(&[
            "-c",
            "10",
            "-d",
            "300ms",
            "--segment",
            segment,
            "--output",
            "json",
            &server.url,
        ])
        .await
        .ok_json();
        assert_eq!(int(&report, "/connections"), connections, "{segment}");
        assert!(report["rate"].is_null());
    }
    // Threads never outnumber the segment's connections.
    let run = loadgen(&[
        "-c",
        "10",
        "-t",
        "8",
        "-d",
        "300ms",
        "--segment",
        "2/3",
        &server.url,
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    for needle in ["segment 2/3 of the load", "3 threads and 3 connections"] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} in:\n{}",
            run.stdout
        );
    }
    let run = loadgen(&["-c", "2", "--segment", "3/3", &server.url]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("--segment 3/3 gets no connection of -c 2"),
        "{}",
        run.stderr
    );
}

/// Not I/N with 1 <= I <= N: a usage error (exit 2) naming the flag and the value.
#[tokio::test]
async fn bad_segments_are_usage_errors_naming_the_flag() {
    let url = "http://127.0.0.1:1/";
    for (value, says) in [
        ("0/4", "I must be from 1 to 4"),
        ("5/4", "I must be from 1 to 4"),
        ("1/0", "N must be at least 1"),
        ("two", "is not I/N"),
        ("1/2/3", "is not I/N"),
        ("-1/2", "is not I/N"),
    ] {
        let flag = format!("--segment={value}");
        let run = loadgen(&[&flag, url]).await;
        assert_eq!(run.code, 2, "{value}: {run:?}");
        assert!(
            run.stderr.contains("--segment") && run.stderr.contains(says),
            "{value}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
    let run = loadgen(&["--idle", "--segment", "1/2", url]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--segment cannot be used with --idle"),
        "{}",
        run.stderr
    );
}
