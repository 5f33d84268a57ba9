//! `compare`'s verdicts, the gate and what a run does at its end, on the fixture CSVs of
//! analysis/fixtures (a real quick run: 3 iterations of 24 sweep keys).

use std::path::{Path, PathBuf};

use super::*;

/// `analysis/fixtures/NAME`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../analysis/fixtures")
        .join(name)
}

/// A run folder at `dir` made of the fixture's results.csv, handshakes.csv and idle.csv and
/// a meta.json, with `column` of the results.csv rows `pick` selects multiplied by `factor`.
pub(crate) fn fixture_run(
    dir: &Path,
    pick: impl Fn(&csv::StringRecord, &csv::StringRecord) -> bool,
    column: &str,
    factor: f64,
) {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["results.csv", "handshakes.csv", "idle.csv"] {
        let mut reader = csv::Reader::from_path(fixture(name)).unwrap();
        let header = reader.headers().unwrap().clone();
        let mut writer = csv::Writer::from_path(dir.join(name)).unwrap();
        writer.write_record(&header).unwrap();
        let col = header.iter().position(|h| h == column);
        for record in reader.records() {
            let record = record.unwrap();
            let mut cells: Vec<String> = record.iter().map(String::from).collect();
            let picked = name == "results.csv" && pick(&header, &record);
            if let (Some(col), true) = (col, picked) {
                if let Ok(v) = cells[col].parse::<f64>() {
                    cells[col] = (v * factor).to_string();
                }
            }
            writer.write_record(&cells).unwrap();
        }
    }
    std::fs::write(dir.join("meta.json"), META).unwrap();
}

/// The cell `column` of `record`.
pub(crate) fn cell<'r>(
    header: &csv::StringRecord,
    record: &'r csv::StringRecord,
    column: &str,
) -> &'r str {
    &record[header.iter().position(|h| h == column).unwrap()]
}

/// Selects the sweep rows of proxy-rustls on rustls-aws-lc at 1000 bytes.
pub(crate) fn one_key(header: &csv::StringRecord, record: &csv::StringRecord) -> bool {
    cell(header, record, "config") == "proxy-rustls"
        && cell(header, record, "tls_backend") == "rustls-aws-lc"
        && cell(header, record, "size") == "1000"
        && cell(header, record, "handshake") == "keep-alive"
}

/// The parts of meta.json `compare` reads, as a run writes them.
pub(crate) const META: &str = r#"{
  "status": "complete",
  "host": {"cpu_model": "AMD EPYC 7B13"},
  "cpus": {"server": "0-2", "client": "3"},
  "plan": {"tls_version": "1.3", "cipher_suites": ["TLS_AES_128_GCM_SHA256"],
           "kx_groups": ["X25519"], "cert_type": "ecdsa-p256", "connections": 50,
           "duration": "5s", "warmup": "1s", "client_threads": null, "rate": null}
}"#;

fn runs(factor: f64) -> (tempfile::TempDir, Run, Run) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    fixture_run(&a, |_, _| false, "rps", 1.0);
    fixture_run(&b, one_key, "rps", factor);
    let base = Run::load(&a.display().to_string(), tmp.path()).unwrap();
    let new = Run::load(&b.display().to_string(), tmp.path()).unwrap();
    (tmp, base, new)
}

#[test]
fn a_run_against_itself_is_no_change_everywhere() {
    let (_tmp, base, _) = runs(1.0);
    let c = Comparison::of(&base, &base, DEFAULT_NOISE);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.only_in_base.is_empty() && c.only_in_new.is_empty());
    let verdicts: Vec<Verdict> = c
        .keys
        .iter()
        .flat_map(|k| &k.metrics)
        .map(|m| m.verdict)
        .collect();
    // 24 sweep keys and 10 idle keys; 4 and 2 metrics.
    assert!(verdicts.len() > 24 * 4 + 10 * 2, "{}", verdicts.len());
    // A metric with fewer than 3 ok rows behind it (a warning or error row among the
    // fixture's three iterations) gets no interval; every other one is no change.
    let metrics: Vec<_> = c.keys.iter().flat_map(|k| &k.metrics).collect();
    let short = metrics
        .iter()
        .filter(|m| m.base_n < stats::MIN_ITERATIONS)
        .count();
    assert!(short > 0, "the fixture has keys with two ok rows");
    for m in &metrics {
        let expected = if m.base_n < stats::MIN_ITERATIONS {
            Verdict::NoConfidence
        } else {
            Verdict::NoChange
        };
        assert_eq!(m.verdict, expected, "{m:?}");
    }
    let no_confidence = short;
    let gate = Gate::judge(&c, 0.05);
    assert!(gate.regressions.is_empty(), "{gate:?}");
    assert_eq!(gate.unjudged, no_confidence, "{gate:?}");
    // HAProxy's one RSA full-handshake row failed (no group negotiated: a key of its own):
    // listed, not compared.
    let unmeasured: Vec<(String, &str)> = c
        .keys
        .iter()
        .filter_map(|k| Some((k.key.label(), k.unmeasured.as_deref()?)))
        .collect();
    assert_eq!(
        unmeasured,
        [(
            "handshakes haproxy openssl full rsa-2048 -".to_owned(),
            "no ok row in base (0 warning, 1 error), new (0 warning, 1 error)"
        )]
    );
    // http at 10 bytes has a warning row (a saturated load generator): its two ok rows count.
    let http = c.keys.iter().find(|k| k.key.config == "http").unwrap();
    assert_eq!((http.base_rows.ok, http.base_rows.warning), (2, 1));
    assert_eq!(http.metrics[0].base_n, 2);
}

#[test]
fn a_key_at_seven_tenths_the_rate_is_slower_and_fails_the_gate() {
    let (_tmp, base, new) = runs(0.7);
    let c = Comparison::of(&base, &new, DEFAULT_NOISE);
    let slower: Vec<(String, Metric)> = c
        .keys
        .iter()
        .flat_map(|k| k.metrics.iter().map(move |m| (k, m)))
        .filter(|(_, m)| !matches!(m.verdict, Verdict::NoChange | Verdict::NoConfidence))
        .map(|(k, m)| (k.key.label(), m.metric))
        .collect();
    assert_eq!(
        slower,
        [(
            "sweep proxy-rustls rustls-aws-lc 1000".to_owned(),
            Metric::Rps
        )]
    );
    let gate = Gate::judge(&c, 0.05);
    assert_eq!(gate.regressions.len(), 1);
    let r = &gate.regressions[0];
    assert!(
        (r.ratio - 0.7).abs() < 1e-3 && r.interval.high < 1.0,
        "{r:?}"
    );
    assert!((r.worse_by - 0.3).abs() < 1e-3);
    assert!(
        Gate::judge(&c, 0.35).regressions.is_empty(),
        "30% is within 35%"
    );
}

#[test]
fn verdicts_follow_each_metrics_direction_and_the_noise() {
    let base = [100.0, 102.0, 98.0];
    let times = |f: f64| base.map(|v| v * f);
    let v = |m, f, noise| compare_metric(m, &base, &times(f), noise).verdict;
    assert_eq!(v(Metric::Rps, 0.7, 0.02), Verdict::Slower);
    assert_eq!(v(Metric::Rps, 1.3, 0.02), Verdict::Faster);
    assert_eq!(v(Metric::P99, 0.7, 0.02), Verdict::Faster, "lower latency");
    assert_eq!(v(Metric::CpuPerReq, 1.3, 0.02), Verdict::Slower, "more CPU");
    // Excluded from 1 by the interval, but within the noise threshold.
    assert_eq!(v(Metric::Rps, 0.9, 0.15), Verdict::NoChange);
    let one = compare_metric(Metric::Rps, &base, &[70.0], 0.02);
    assert_eq!(one.verdict, Verdict::NoConfidence);
    assert_eq!(one.interval, None);
    assert!((one.ratio.unwrap() - 0.7).abs() < 1e-12);
}

#[test]
fn percentages_parse_with_or_without_the_sign() {
    assert_eq!(percent("5%"), Ok(0.05));
    assert_eq!(percent("2.5"), Ok(0.025));
    assert_eq!(percent("2%"), Ok(DEFAULT_NOISE), "--noise's default");
    for bad in ["", "five", "-1%", "100%"] {
        assert!(percent(bad).unwrap_err().contains("percentage"), "{bad}");
    }
}

#[test]
fn at_run_end_checks_thresholds_saves_and_compares() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, baselines) = (tmp.path().join("run"), tmp.path().join("baselines"));
    fixture_run(&run, |_, _| false, "rps", 1.0);
    let end = |thresholds: &[&str], save: Option<&str>, baseline: Option<&str>| AtRunEnd {
        thresholds: thresholds.iter().map(|t| t.parse().unwrap()).collect(),
        save_baseline: save.map(String::from),
        baseline: baseline.map(String::from),
        baselines: baselines.clone(),
    };
    let plan = crate::plan::Preset::Smoke.plan();
    let missing = end(&[], None, Some("main"));
    let err = format!("{:#}", missing.check(&plan).unwrap_err());
    assert!(
        err.contains("--baseline") && err.contains("\"main\""),
        "{err}"
    );
    assert!(end(&[], Some("a/b"), None).check(&plan).is_err());
    assert!(end(&["proxy-rustls:rps>1000"], Some("main"), None)
        .finish(&run)
        .unwrap());
    assert!(baselines.join("main/results.csv").is_file());
    let both = end(&["proxy-rustls:rps>1000", "p99<1us"], None, Some("main"));
    both.check(&plan).unwrap();
    assert!(!both.finish(&run).unwrap(), "p99<1us fails");
    let faults = crate::plan::Plan {
        scenario: crate::plan::Scenario::Faults,
        ..plan
    };
    let err = format!(
        "{:#}",
        end(&[], Some("x"), None).check(&faults).unwrap_err()
    );
    assert!(
        err.contains("--save-baseline") && err.contains("faults.csv"),
        "{err}"
    );
}
