//! The threshold grammar (what parses, and where a malformed expression is wrong) and the
//! checks on the fixture run.

use super::*;
use crate::compare::tests::{fixture_run, one_key};

fn parse(s: &str) -> Threshold {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn error(s: &str) -> ParseError {
    s.parse::<Threshold>().unwrap_err()
}

#[test]
fn expressions_parse_with_scope_units_and_spaces() {
    let t = parse("p99<5ms");
    assert_eq!(
        (t.config, t.size, t.metric, t.op),
        (None, None, Metric::P99, Op::Below)
    );
    assert_eq!(t.limit, 5000.0);
    let t = parse("proxy-rustls:rps>20000");
    assert_eq!(t.config.as_deref(), Some("proxy-rustls"));
    assert_eq!(
        (t.metric, t.op, t.limit),
        (Metric::Rps, Op::Above, 20_000.0)
    );
    let t = parse("proxy-rustls-aws-lc@1k:cpu_per_req<=40.5");
    assert_eq!(t.size, Some(1000));
    assert_eq!(
        (t.metric, t.op, t.limit),
        (Metric::CpuPerReq, Op::AtMost, 40.5)
    );
    assert_eq!(parse("http@64KiB: p50 >= 2 s").limit, 2_000_000.0);
    assert_eq!(parse("http@64KiB: p50 >= 2 s").size, Some(65_536));
    assert_eq!(parse("p999<250µs").limit, 250.0);
    assert_eq!(parse("max<=250us").limit, 250.0);
    assert_eq!(parse("errors<1").metric, Metric::Errors);
    assert_eq!(parse("mean<1_000").limit, 1000.0);
    assert_eq!(parse("p90<7").limit, 7.0, "µs by default");
}

#[test]
fn malformed_expressions_name_the_position_and_what_was_expected() {
    let cases = [
        ("p99<<5ms", 5, "a number"),
        (
            "p95<5ms",
            1,
            "a metric: rps, p50, p90, p99, p999, mean, max, errors, cpu_per_req",
        ),
        ("p99=5ms", 4, "one of < <= > >="),
        ("p99<5 parsecs", 7, "a unit: us, µs, ms or s"),
        ("rps>20000ms", 10, "the end: rps takes no unit"),
        ("proxy rustls:rps>1", 7, "a config name"),
        (":rps>1", 1, "a config name"),
        ("http@ten:rps>1", 6, "a body size"),
        ("", 1, "a metric"),
        ("p99<", 5, "a number"),
    ];
    for (expression, position, expected) in cases {
        let e = error(expression);
        assert_eq!(e.position, position, "{expression}: {e}");
        assert!(e.expected.starts_with(expected), "{expression}: {e}");
        let shown = e.to_string();
        assert!(
            shown.contains(&format!("{expression:?}")) && shown.contains(GRAMMAR),
            "{shown}"
        );
    }
}

#[test]
fn sizes_are_decimal_unless_binary_is_said() {
    assert_eq!(parse_size("10"), Some(10));
    assert_eq!(parse_size("1k"), Some(1000));
    assert_eq!(parse_size("1KB"), Some(1000));
    assert_eq!(parse_size("1KiB"), Some(1024));
    assert_eq!(parse_size("2M"), Some(2_000_000));
    assert_eq!(parse_size("1MiB"), Some(1 << 20));
    for bad in ["", "k", "1.5k", "1 k", "1GB"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn checks_pass_breach_and_match_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    fixture_run(tmp.path(), one_key, "rps", 1.0);
    let run = Run::load(&tmp.path().display().to_string(), tmp.path()).unwrap();
    let checks = check(
        &[
            parse("proxy-rustls@1k:rps>20000"),
            parse("proxy-rustls-ring@1000:p99<1us"),
            parse("nginx:rps>1"),
            parse("http:errors<1"),
        ],
        &run,
    );
    let lines: Vec<(&str, String, bool)> = checks
        .iter()
        .map(|c| {
            let key = c.key.as_ref().map_or(String::new(), Key::label);
            (c.expression.as_str(), key, c.passed)
        })
        .collect();
    assert_eq!(
        lines,
        [
            (
                "proxy-rustls@1k:rps>20000",
                "sweep proxy-rustls rustls-aws-lc 1000".into(),
                true
            ),
            (
                "proxy-rustls@1k:rps>20000",
                "sweep proxy-rustls rustls-ring 1000".into(),
                true
            ),
            (
                "proxy-rustls-ring@1000:p99<1us",
                "sweep proxy-rustls rustls-ring 1000".into(),
                false
            ),
            ("nginx:rps>1", String::new(), false),
            ("http:errors<1", "sweep http none 10".into(), true),
            ("http:errors<1", "sweep http none 1000".into(), true),
            ("http:errors<1", "sweep http none 10000".into(), true),
        ]
    );
    assert!(
        checks[3].detail.contains("matches no row"),
        "{:?}",
        checks[3]
    );
    assert!(checks[2].detail.starts_with("p99 "), "{:?}", checks[2]);
}
