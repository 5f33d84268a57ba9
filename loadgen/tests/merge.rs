//! `loadgen merge`: reports built from known latency samples (the library's own report, as
//! a run would print it) are merged, through the library and through the binary, and the
//! result is compared with the histogram of all the samples together; a saturated segment
//! stays flagged; reports that are not of one load, not reports, or too old are refused
//! naming the file and the field.

// reason: each test binary uses only some of the shared helpers.
#[allow(dead_code)]
mod common;

use std::time::{Duration, SystemTime};

use clap::Parser;
use hdrhistogram::Histogram;
use loadgen::cli::Args;
use loadgen::cpu::CpuTimes;
use loadgen::engine::RunResult;
use loadgen::merge::{self, Input, MergeError};
use loadgen::report::{Latency, Report};
use loadgen::stats::{new_histogram, Stats};
use serde_json::Value;

use common::{int, loadgen};

/// The measured period of every test report.
const MEASURED: Duration = Duration::from_secs(10);

/// `n` latencies in µs from a pseudo-random sequence seeded with `seed`, between `low` and
/// about `low + spread` (the same every time).
fn samples(seed: u64, n: usize, low: u64, spread: u64) -> Vec<u64> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Squared: a long tail, as latencies have.
            low + (x % 1000).pow(2) * spread / 1_000_000
        })
        .collect()
}

/// The uncorrected latency of a sample (the corrected one minus some queueing).
fn uncorrected(us: u64) -> u64 {
    us / 2 + 1
}

/// Segment `segment` (`"2/3"`) of `-c 9 --rate 900`, whose requests took `latencies` µs;
/// its measured period starts at `start`, and it used `cpu` of its one CPU.
fn report(segment: &str, latencies: &[u64], start: SystemTime, cpu: Duration) -> Report {
    let settings = Args::parse_from([
        "loadgen",
        "-c",
        "9",
        "--rate",
        "900",
        "-b",
        "10",
        "--segment",
        segment,
        "http://127.0.0.1:1/",
    ])
    .into_settings()
    .expect("valid flags");
    let mut stats = Stats::new(true);
    for &us in latencies {
        let d = |us| Duration::from_micros(us);
        stats.record(d(us), d(uncorrected(us)), 60, 70);
        stats.ok += 1;
    }
    stats.late = 2;
    let result = RunResult {
        stats,
        threads: 1,
        connections_opened: settings.connections.get(),
        open_time: Duration::from_millis(5),
        measured: MEASURED,
        warmup: Duration::ZERO,
        interrupted: false,
        measured_from: start,
        cpu: CpuTimes {
            user: cpu,
            sys: Duration::ZERO,
        },
        cpus: 1,
    };
    Report::new(&settings, &result)
}

/// Three segments with different latencies (the third slow); the second saturated.
fn three_segments() -> (Vec<Input>, Vec<u64>) {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let parts = [
        samples(1, 3000, 50, 2_000),
        samples(2, 2000, 80, 5_000),
        samples(3, 1000, 400, 90_000),
    ];
    let cpu = [3.0, 9.5, 4.0].map(Duration::from_secs_f64);
    let inputs = parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            // Started 20 ms apart, as processes started one after another would.
            let at = start + Duration::from_millis(20 * i as u64);
            let r = report(&format!("{}/3", i + 1), part, at, cpu[i]);
            Input::parse(&format!("seg{}.json", i + 1), &r.to_json()).expect("a report")
        })
        .collect();
    (inputs, parts.concat())
}

fn histogram_of(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
    let mut h = new_histogram();
    for v in values {
        h.record(v).expect("within the histogram's range");
    }
    h
}

#[test]
fn merging_segments_gives_exactly_the_percentiles_of_all_their_samples() {
    let (inputs, all) = three_segments();
    let merged = merge::merge(&inputs).unwrap();
    let union = histogram_of(all.iter().copied());
    assert_eq!(merged.latency, union);
    let r = &merged.report;
    assert_eq!(r.latency_us, Latency::of(&union));
    let union_uncorrected = histogram_of(all.iter().map(|&us| uncorrected(us)));
    assert_eq!(
        r.latency_uncorrected_us,
        Some(Latency::of(&union_uncorrected))
    );
    assert_eq!(r.histogram.decode().unwrap(), union);

    // And of the raw samples, to the histogram's 3 significant digits.
    let mut sorted = all.clone();
    sorted.sort_unstable();
    for (q, got) in [(0.5, r.latency_us.p50), (0.99, r.latency_us.p99)] {
        let exact = sorted[(q * sorted.len() as f64).ceil() as usize - 1] as f64;
        assert!(
            (got as f64 - exact).abs() <= exact * 0.001,
            "q{q}: {got} vs {exact}"
        );
    }
    assert_eq!(
        r.latency_us.max,
        union.highest_equivalent(*sorted.last().unwrap())
    );
    // No one segment's percentiles are the whole load's.
    for input in &inputs {
        assert_ne!(input.report.latency_us.p99, r.latency_us.p99);
    }

    assert_eq!(r.requests, all.len() as u64);
    assert_eq!((r.bytes_sent, r.bytes_received), (60 * 6000, 70 * 6000));
    assert_eq!(r.late_requests, 6);
    assert_eq!(r.connections, 9);
    assert_eq!(r.rate, Some(900.0));
    // The union of the periods: the last segment started 40 ms after the first.
    assert_eq!(r.duration_s, 10.04);
    assert_eq!(r.rps, ((6000.0 / 10.04) * 100.0_f64).round() / 100.0);
    assert_eq!(r.cpu.user_s, 16.5);
}

#[test]
fn one_report_merged_alone_keeps_its_figures() {
    let (inputs, _) = three_segments();
    let alone = merge::merge(&inputs[2..]).unwrap().report;
    let r = &inputs[2].report;
    assert_eq!(alone.latency_us, r.latency_us);
    assert_eq!(alone.latency_uncorrected_us, r.latency_uncorrected_us);
    assert_eq!(
        (alone.requests, alone.duration_s),
        (r.requests, r.duration_s)
    );
    assert_eq!(alone.histogram, r.histogram);
    // Two of three segments: the third's missing, said.
    assert!(
        alone.warnings[0].starts_with("segment(s) 1/3, 2/3 missing"),
        "{:?}",
        alone.warnings
    );
}

#[test]
fn a_merged_report_keeps_a_saturated_segments_flag() {
    let (inputs, _) = three_segments();
    assert!(inputs[1].report.cpu.saturated && !inputs[0].report.cpu.saturated);
    let r = merge::merge(&inputs).unwrap().report;
    assert!(r.cpu.saturated);
    assert_eq!(r.cpu.utilization, 0.95, "the busiest segment's");
    let segments = r.segments.as_ref().unwrap();
    let flags: Vec<bool> = segments.iter().map(|s| s.saturated).collect();
    assert_eq!(flags, [false, true, false]);
    let names: Vec<String> = segments
        .iter()
        .map(|s| s.segment.unwrap().to_string())
        .collect();
    assert_eq!(names, ["1/3", "2/3", "3/3"]);
    assert_eq!(segments[1].file, "seg2.json");
    assert!(
        r.warnings
            .contains(&"segment 2/3: load generator CPU saturated (95%)".to_owned()),
        "{:?}",
        r.warnings
    );

    // Merged again (with nothing else), the flag and the segments stay.
    let again = Input::parse("merged.json", &r.to_json()).unwrap();
    let twice = merge::merge(&[again]).unwrap().report;
    assert!(twice.cpu.saturated);
    assert_eq!(twice.segments, r.segments);
    assert_eq!(twice.latency_us, r.latency_us);
}

#[test]
fn segments_of_different_loads_or_twice_are_refused() {
    let (inputs, _) = three_segments();
    let twice = merge::merge(&[inputs[0].clone(), inputs[0].clone()]).unwrap_err();
    assert!(matches!(twice, MergeError::Twice { .. }), "{twice}");
    assert!(twice.to_string().contains("segment 1/3"), "{twice}");

    let other = report("1/2", &[100], SystemTime::now(), Duration::ZERO);
    let other = Input::parse("half.json", &other.to_json()).unwrap();
    let err = merge::merge(&[inputs[1].clone(), other])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("half.json: segment 1/2"), "{err}");

    let mut whole = inputs[0].clone();
    whole.report.segment = None;
    whole.file = "whole.json".into();
    let err = merge::merge(&[inputs[1].clone(), whole])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("whole.json is no segment"), "{err}");
}

#[test]
fn reports_of_another_load_are_refused_naming_file_and_field() {
    let (inputs, _) = three_segments();
    let mut bigger = inputs[1].clone();
    bigger.file = "b.json".into();
    bigger.report.body_bytes = 1000;
    let err = merge::merge(&[inputs[0].clone(), bigger])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "b.json: body_bytes is 1000 but seg1.json's is 10: only reports of one load merge \
         (same mode, target, body size and keep-alive)"
    );
    let mut elsewhere = inputs[1].clone();
    elsewhere.report.target = "http://10.0.0.1/".into();
    let err = merge::merge(&[inputs[0].clone(), elsewhere])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("seg2.json: target is http://10.0.0.1/"),
        "{err}"
    );
}

#[test]
fn what_is_not_a_mergeable_report_is_named() {
    let (inputs, _) = three_segments();
    let text = inputs[0].report.to_json();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = value.clone();
        f(&mut v);
        Input::parse("x.json", &v.to_string())
            .unwrap_err()
            .to_string()
    };
    let older = with(&|v| {
        v.as_object_mut().unwrap().remove("histogram");
    });
    assert!(
        older.starts_with("x.json: no `histogram` field: written by a loadgen older"),
        "{older}"
    );
    let future = with(&|v| v["schema"] = 2.into());
    assert_eq!(
        future,
        "x.json: schema 2; this loadgen merges schema 1 reports"
    );
    let broken = with(&|v| v["requests"] = "many".into());
    assert!(
        broken.starts_with("x.json: not a loadgen report of schema 1"),
        "{broken}"
    );
    let bad_bucket = with(&|v| v["histogram"]["sigfig"] = 2.into());
    assert!(
        bad_bucket.contains("field `histogram`: 2 significant digits"),
        "{bad_bucket}"
    );
    for (text, why) in [
        ("", "EOF"),
        ("[1]", "not a JSON object"),
        ("{}", "no `schema`"),
    ] {
        let err = Input::parse("y.json", text).unwrap_err().to_string();
        assert!(
            err.starts_with("y.json: not a loadgen JSON report"),
            "{err}"
        );
        assert!(err.contains(why), "{err}");
    }
    value["mode"] = "idle".into();
    let idle = Input::parse("idle.json", &value.to_string()).unwrap();
    let err = merge::merge(&[idle]).unwrap_err().to_string();
    assert!(err.starts_with("idle.json: an idle report"), "{err}");
    assert!(matches!(merge::merge(&[]), Err(MergeError::Empty)));
}

/// The binary: JSON and text output, `--hdr-out`, and exit 2 for unusable inputs.
#[tokio::test]
async fn the_merge_command_prints_the_sum() {
    let (inputs, all) = three_segments();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = inputs
        .iter()
        .map(|input| {
            let path = dir.path().join(&input.file);
            std::fs::write(&path, input.report.to_json()).unwrap();
            path.display().to_string()
        })
        .collect();
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let hdr = dir.path().join("merged.hgrm").display().to_string();
    let mut json_args = vec!["merge", "--hdr-out", &hdr];
    json_args.extend(&args);
    let merged = loadgen(&json_args).await.ok_json();
    let expected = Latency::of(&histogram_of(all.iter().copied()));
    assert_eq!(int(&merged, "/latency_us/p99"), expected.p99);
    assert_eq!(int(&merged, "/latency_us/p50"), expected.p50);
    assert_eq!(int(&merged, "/requests"), all.len() as u64);
    assert_eq!(merged["cpu"]["saturated"], true);
    let table = std::fs::read_to_string(&hdr).unwrap();
    assert!(table.contains("Total count    =         6000]"), "{table}");
    assert!(
        table.lines().next().unwrap().contains("intended start"),
        "{table}"
    );

    let mut text_args = vec!["merge", "--output", "text"];
    text_args.extend(&args);
    let run = loadgen(&text_args).await;
    assert_eq!(run.code, 0, "{run:?}");
    for needle in [
        "3 reports merged",
        "Latency (from intended start",
        "6000 requests in 10.04s",
        "the busiest segment at 95%",
        "Segments:",
        "2/3 ",
        "(saturated)",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} in:\n{}",
            run.stdout
        );
    }

    let missing = dir.path().join("nope.json").display().to_string();
    let run = loadgen(&["merge", &files[0], &missing]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run
        .stderr
        .starts_with(&format!("loadgen merge: cannot read {missing}")));
    assert!(run.stdout.is_empty());
    let run = loadgen(&["merge"]).await;
    assert_eq!(run.code, 2, "{run:?}");
}
