//! End-to-end tests of the loadgen binary against servers started in this process:
//! echo-server in each mode, and an instrumented test server that counts connections,
//! requests and TLS handshakes, delays, stalls or corrupts its answers.

mod common;

use std::time::Duration;

use common::{echo, int, loadgen, shape, Behaviour, Mode, TestServer, SERIAL};
use serde_json::{json, Value};

/// Closed loop against echo-server over HTTP, HTTPS and a Unix socket: no errors, bodies
/// verified, and the byte counts agree with the request count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_server_in_every_mode() {
    let _serial = SERIAL.lock().await;
    for mode in [Mode::Http, Mode::Https, Mode::Unix] {
        let server = echo(mode).await;
        let mut args = vec![
            "-c", "4", "-t", "2", "-d", "1s", "-b", "100", "--output", "json",
        ];
        let cacert = server.cacert.as_ref().map(|p| p.display().to_string());
        if let Some(ca) = &cacert {
            args.extend(["--cacert", ca]);
        }
        args.push(&server.url);
        let report = loadgen(&args).await.ok_json();

        let requests = int(&report, "/requests");
        assert!(requests > 0, "{mode:?}: {report:#}");
        assert_eq!(int(&report, "/errors/total"), 0, "{mode:?}: {report:#}");
        assert_eq!(int(&report, "/connections_opened"), 4, "{mode:?}");
        assert_eq!(int(&report, "/threads"), 2, "{mode:?}");
        assert_eq!(int(&report, "/body_bytes"), 100);
        // Every request is the same bytes: head + 100-byte body.
        let host = match mode {
            Mode::Unix => "localhost".to_string(),
            _ => server.url.split('/').nth(2).unwrap().to_string(),
        };
        let request_len =
            format!("POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n").len() + 100;
        assert_eq!(
            int(&report, "/bytes_sent"),
            requests * request_len as u64,
            "{mode:?}"
        );
        assert!(int(&report, "/bytes_received") > requests * 100, "{mode:?}");
        let tls = &report["tls"];
        if mode == Mode::Https {
            assert_eq!(tls["version"], "TLSv1.3", "{report:#}");
            assert!(
                tls["cipher_suite"].as_str().unwrap().starts_with("TLS_"),
                "{report:#}"
            );
            assert_eq!(int(&report, "/tls/handshakes"), 4);
        } else {
            assert!(tls.is_null());
        }
    }
}

/// What loadgen reports matches what the server received: every counted request reached
/// the server, and at most one per connection was still in flight when the run ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_requests_match_the_server_count() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour::default()).await;
    let report = loadgen(&[
        "-c",
        "5",
        "-d",
        "1s",
        "-b",
        "64",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await
    .ok_json();
    let reported = int(&report, "/requests");
    let seen = server.counters.get(&server.counters.requests);
    assert!(reported > 0);
    assert!(
        seen >= reported && seen <= reported + 5,
        "server saw {seen}, loadgen reported {reported}"
    );
    assert_eq!(server.counters.get(&server.counters.connections), 5);
}

/// A server whose echo is wrong in content (right length) is caught by the echo check,
/// and a run where every request failed exits 1. `--no-verify` turns the check off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_mismatches_are_counted() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour {
        corrupt: true,
        ..Behaviour::default()
    })
    .await;
    let run = loadgen(&[
        "-c",
        "2",
        "-d",
        "500ms",
        "-b",
        "32",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    let requests = int(&report, "/requests");
    assert!(requests > 0);
    assert_eq!(int(&report, "/errors/body_mismatch"), requests);
    assert_eq!(int(&report, "/errors/total"), requests);
    assert!(
        run.stderr.contains("every request failed"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    let report = loadgen(&[
        "-c",
        "2",
        "-d",
        "500ms",
        "-b",
        "32",
        "--no-verify",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await
    .ok_json();
    assert_eq!(int(&report, "/errors/total"), 0);
}

/// The JSON report has exactly these keys with these types, in this order (closed loop
/// over HTTP, open loop over HTTPS, where the nullable fields are filled, and an idle run).
/// Changing the schema must change this test, and the schema number unless a field was only
/// added at the end (`idle` was; then `segment` to `segments`, for `loadgen merge`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_is_pinned() {
    let _serial = SERIAL.lock().await;
    let latency = json!({
        "mean": "float", "stdev": "float", "min": "int", "p50": "int", "p90": "int",
        "p99": "int", "p999": "int", "max": "int"
    });
    let errors = json!({
        "connect": "int", "read": "int", "write": "int", "timeout": "int", "status": "int",
        "body_mismatch": "int", "total": "int"
    });
    let cpu =
        json!({"user_s": "float", "sys_s": "float", "utilization": "float", "saturated": "bool"});
    let histogram = json!({"unit": "string", "sigfig": "int", "counts": "array"});
    let expected = |rate: &str, uncorrected: Value, tls: Value, idle: Value| {
        let open = !uncorrected.is_string();
        json!({
            "schema": "int", "target": "string", "mode": "string", "threads": "int",
            "connections": "int", "connections_opened": "int", "keepalive": "bool",
            "duration_s": "float", "warmup_s": "float", "rate": rate, "body_bytes": "int",
            "requests": "int", "rps": "float", "bytes_sent": "int", "bytes_received": "int",
            "latency_us": latency, "latency_uncorrected_us": uncorrected, "late_requests": "int",
            "errors": errors, "tls": tls, "cpu": cpu, "warnings": "array", "idle": idle,
            "segment": "null", "start_unix_s": "float", "end_unix_s": "float",
            "histogram": histogram,
            "histogram_uncorrected": if open { histogram.clone() } else { json!("null") },
            "segments": "null"
        })
    };
    // The order of the keys is the schema too: new ones come last.
    let order = [
        "schema",
        "target",
        "mode",
        "threads",
        "connections",
        "connections_opened",
        "keepalive",
        "duration_s",
        "warmup_s",
        "rate",
        "body_bytes",
        "requests",
        "rps",
        "bytes_sent",
        "bytes_received",
        "latency_us",
        "latency_uncorrected_us",
        "late_requests",
        "errors",
        "tls",
        "cpu",
        "warnings",
        "idle",
        "segment",
        "start_unix_s",
        "end_unix_s",
        "histogram",
        "histogram_uncorrected",
        "segments",
    ];
    let keys_in_order = |run: &common::Run| {
        let positions: Vec<usize> = order
            .iter()
            .map(|k| run.stdout.find(&format!("\n  \"{k}\": ")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", run.stdout);
    };

    let http = echo(Mode::Http).await;
    let run = loadgen(&["-c", "2", "-d", "300ms", "--output", "json", &http.url]).await;
    keys_in_order(&run);
    let closed = run.ok_json();
    assert_eq!(
        shape(&closed),
        expected("null", json!("null"), json!("null"), json!("null")),
        "{closed:#}"
    );
    assert_eq!(closed["schema"], 1);
    assert_eq!(closed["mode"], "closed");

    // A server that negotiates ALPN, so every nullable TLS field is filled.
    let certs = common::certs();
    let https = TestServer::start(Behaviour {
        tls: Some(common::acceptor_with(
            &certs,
            proxy::tls::TlsSettings {
                alpn: vec!["http/1.1".into()],
                ..Default::default()
            },
        )),
        ..Behaviour::default()
    })
    .await;
    let ca = certs.cert.display().to_string();
    let url = https.url("https");
    let open = loadgen(&[
        "-c", "2", "-d", "300ms", "--warmup", "100ms", "--rate", "100", "--cacert", &ca, "--alpn",
        "http/1.1", "--output", "json", &url,
    ])
    .await
    .ok_json();
    let tls = json!({
        "version": "string", "cipher_suite": "string", "kx_group": "string", "alpn": "string",
        "handshakes": "int", "resumed": "int"
    });
    assert_eq!(
        shape(&open),
        expected("float", latency.clone(), tls.clone(), json!("null")),
        "{open:#}"
    );
    assert_eq!(open["mode"], "open");
    assert_eq!(open["tls"]["alpn"], "http/1.1");
    assert!(open["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .all(Value::is_string));

    let idle = loadgen(&[
        "--idle", "-c", "2", "-d", "300ms", "--cacert", &ca, "--alpn", "http/1.1", "--output",
        "json", &url,
    ])
    .await
    .ok_json();
    let idle_shape =
        json!({"asked": "int", "opened": "int", "closed_by_server": "int", "open_s": "float"});
    assert_eq!(
        shape(&idle),
        expected("null", json!("null"), tls, idle_shape),
        "{idle:#}"
    );
    assert_eq!(idle["schema"], 1);
    assert_eq!(idle["mode"], "idle");
}

/// Against a server that answers every request after 10 ms, the median is at least 10 ms
/// and, on an idle loopback, close to it (the bound is loose so a busy machine passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_of_a_10ms_server() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour {
        delay: Duration::from_millis(10),
        ..Behaviour::default()
    })
    .await;
    for extra in [&[][..], &["--rate", "100"][..]] {
        let mut args = vec!["-c", "2", "-d", "2s", "--output", "json"];
        args.extend(extra);
        let url = server.url("http");
        args.push(&url);
        let report = loadgen(&args).await.ok_json();
        let p50 = int(&report, "/latency_us/p50");
        assert!(int(&report, "/requests") >= 50, "{report:#}");
        assert!(
            int(&report, "/latency_us/min") >= 10_000,
            "{extra:?}: {report:#}"
        );
        assert!((10_000..100_000).contains(&p50), "{extra:?}: p50 {p50} µs");
    }
}

/// Coordinated omission: the server stalls once for 1 s. Open loop charges the stall to
/// every request that should have been sent during it (p99 in the hundreds of ms); closed
/// loop only sees one slow request per connection (p99 stays low, max shows the stall).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_corrects_for_a_stall_and_closed_loop_does_not() {
    let _serial = SERIAL.lock().await;
    let stall = Behaviour {
        stall: Some((Duration::from_secs(1), Duration::from_secs(1))),
        ..Behaviour::default()
    };

    let server = TestServer::start(stall.clone()).await;
    let open = loadgen(&[
        "-c",
        "10",
        "-d",
        "4s",
        "--rate",
        "200",
        "-b",
        "16",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await
    .ok_json();
    let p99 = int(&open, "/latency_us/p99");
    assert!(
        p99 >= 500_000,
        "open-loop p99 {p99} µs should show the 1 s stall: {open:#}"
    );
    assert!(int(&open, "/late_requests") > 0, "{open:#}");
    assert!(int(&open, "/latency_uncorrected_us/p50") <= int(&open, "/latency_us/p50"));

    let server = TestServer::start(stall).await;
    let closed = loadgen(&[
        "-c",
        "4",
        "-d",
        "4s",
        "-b",
        "16",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await
    .ok_json();
    let (p99, max) = (
        int(&closed, "/latency_us/p99"),
        int(&closed, "/latency_us/max"),
    );
    assert!(
        max >= 900_000,
        "closed loop should have met the stall: {closed:#}"
    );
    assert!(
        p99 < 100_000,
        "closed-loop p99 {p99} µs hides the stall by design: {closed:#}"
    );
}

/// `--rate 1000` for 5 s completes 5000 requests, within 2%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_is_kept() {
    let _serial = SERIAL.lock().await;
    let server = echo(Mode::Http).await;
    let report = loadgen(&[
        "-c",
        "10",
        "-d",
        "5s",
        "--rate",
        "1000",
        "--output",
        "json",
        &server.url,
    ])
    .await
    .ok_json();
    let requests = int(&report, "/requests");
    assert!(
        (4900..=5100).contains(&requests),
        "{requests} requests: {report:#}"
    );
    assert_eq!(report["rate"], 1000.0);
}

/// Without keep-alive every request has its own connection (and TLS handshake): the
/// server counts one per request, plus at most one per connection still in flight.
/// `--tls-resume` makes those handshakes resumptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keepalive_and_tls_resumption() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour::default()).await;
    let report = loadgen(&[
        "-c",
        "2",
        "-d",
        "1s",
        "--no-keepalive",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await
    .ok_json();
    let requests = int(&report, "/requests");
    let connections = server.counters.get(&server.counters.connections);
    assert!(requests > 10, "{report:#}");
    assert!(
        (requests..=requests + 2).contains(&connections),
        "{connections} connections for {requests} requests"
    );
    assert_eq!(report["keepalive"], false);

    let certs = common::certs();
    let ca = certs.cert.display().to_string();
    for resume in [false, true] {
        let server = TestServer::start(Behaviour {
            tls: Some(common::acceptor(&certs)),
            ..Behaviour::default()
        })
        .await;
        // More connections than rustls's own session cache keeps tickets for (8 per
        // server): every slot must still find a ticket.
        let mut args = vec![
            "-c",
            "64",
            "-d",
            "1s",
            "--no-keepalive",
            "--cacert",
            &ca,
            "--output",
            "json",
        ];
        if resume {
            args.push("--tls-resume");
        }
        let url = server.url("https");
        args.push(&url);
        let report = loadgen(&args).await.ok_json();
        let requests = int(&report, "/requests");
        let c = &server.counters;
        let (handshakes, resumed) = (c.get(&c.handshakes), c.get(&c.resumed));
        assert!(requests > 5, "{report:#}");
        assert!(
            (requests..=requests + 64).contains(&handshakes),
            "resume {resume}: {handshakes} handshakes for {requests} requests"
        );
        // Client and server agree, but for handshakes cut short by the end of the run.
        let client = int(&report, "/tls/handshakes");
        assert!(
            client.abs_diff(handshakes) <= 64,
            "client saw {client}, server {handshakes}"
        );
        if resume {
            // Each slot's first handshake is full; nearly all the others resume.
            let after_first = handshakes.saturating_sub(64);
            assert!(
                resumed * 4 >= after_first * 3,
                "only {resumed} of {handshakes} handshakes resumed"
            );
            assert!(
                int(&report, "/tls/resumed").abs_diff(resumed) <= 64,
                "{report:#}"
            );
        } else {
            assert_eq!(resumed, 0);
        }
    }
}

/// Bad input: exit 2 and a line that names the culprit; runtime failures: exit 1 and one
/// clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unreachable_targets() {
    let run = loadgen(&["not-a-url"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("not-a-url"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);

    let run = loadgen(&["--connections", "zero", "http://127.0.0.1:1/"]).await;
    assert_eq!(run.code, 2, "{run:?}");

    let run = loadgen(&[
        "--body-file",
        "/nonexistent/body.bin",
        "http://127.0.0.1:1/",
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("/nonexistent/body.bin"),
        "{}",
        run.stderr
    );

    let run = loadgen(&["--cacert", "/nonexistent/ca.pem", "https://127.0.0.1:1/"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("/nonexistent/ca.pem"), "{}", run.stderr);

    let run = loadgen(&["-b", "100000000000", "http://127.0.0.1:1/"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--body-size is 100000000000 bytes"),
        "{}",
        run.stderr
    );

    let run = loadgen(&["--insecure", "http://127.0.0.1:1/"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--insecure"), "{}", run.stderr);

    let port = common::closed_port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let run = loadgen(&["-c", "3", "-d", "1s", &url]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let _serial = SERIAL.lock().await;
    let https = echo(Mode::Https).await;
    let run = loadgen(&["-c", "2", "-d", "1s", &https.url]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("TLS handshake"), "{}", run.stderr);
    assert!(run.stderr.contains("--cacert"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    // --insecure accepts the same server.
    let report = loadgen(&[
        "-c",
        "2",
        "-d",
        "300ms",
        "--insecure",
        "--output",
        "json",
        &https.url,
    ])
    .await
    .ok_json();
    assert_eq!(int(&report, "/errors/total"), 0);
}

/// A server slower than `--timeout`: every request times out (and its connection is
/// replaced), nothing succeeds, exit 1 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_counted() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour {
        delay: Duration::from_secs(2),
        ..Behaviour::default()
    })
    .await;
    let run = loadgen(&[
        "-c",
        "2",
        "-d",
        "1s",
        "--timeout",
        "200ms",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let report = run.json();
    assert_eq!(int(&report, "/requests"), 0);
    assert!(int(&report, "/errors/timeout") >= 4, "{report:#}");
    assert_eq!(
        int(&report, "/errors/timeout"),
        int(&report, "/errors/total")
    );
    assert!(
        run.stderr.contains("no response within 200ms"),
        "{}",
        run.stderr
    );
    assert!(
        server.counters.get(&server.counters.connections) > 2,
        "timed-out connections are replaced"
    );
}

/// The TLS parameters asked for are the ones negotiated and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_parameters_are_forced() {
    let _serial = SERIAL.lock().await;
    let https = echo(Mode::Https).await;
    let ca = https.cacert.as_ref().unwrap().display().to_string();
    for (version, suite, group) in [
        ("1.3", "TLS_AES_256_GCM_SHA384", "secp384r1"),
        (
            "1.2",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "secp256r1",
        ),
    ] {
        let report = loadgen(&[
            "-c",
            "1",
            "-d",
            "200ms",
            "--cacert",
            &ca,
            "--tls-version",
            version,
            "--cipher-suite",
            suite,
            "--kx-group",
            group,
            "--output",
            "json",
            &https.url,
        ])
        .await
        .ok_json();
        let tls = &report["tls"];
        assert_eq!(tls["version"], format!("TLSv{version}"), "{report:#}");
        assert_eq!(tls["cipher_suite"], suite, "{report:#}");
        assert_eq!(tls["kx_group"], group, "{report:#}");
    }
}

/// `--hdr-out` writes HdrHistogram's percentile table; text output looks like wrk's;
/// threads never outnumber connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_and_histogram_file() {
    let _serial = SERIAL.lock().await;
    let server = echo(Mode::Http).await;
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("latency.hgrm");
    let hdr_arg = hdr.display().to_string();
    let run = loadgen(&[
        "-c",
        "1",
        "-t",
        "4",
        "-d",
        "300ms",
        "--hdr-out",
        &hdr_arg,
        &server.url,
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    for needle in [
        "Running 0.30s test @",
        "1 threads and 1 connections",
        "Latency Distribution",
        "99.9%",
        "Requests/sec:",
        "Transfer/sec:",
        "loadgen CPU:",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            run.stdout
        );
    }
    let table = std::fs::read_to_string(&hdr).unwrap();
    assert!(
        table.contains("Value     Percentile TotalCount 1/(1-Percentile)"),
        "{table}"
    );
    assert!(table.contains("#[Mean    ="), "{table}");
    assert!(
        table.lines().next().unwrap().contains("milliseconds"),
        "{table}"
    );
}

/// Ctrl-C ends the run early; what was measured is still reported, over the real time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_reports_what_ran() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour::default()).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "-c",
            "2",
            "-d",
            "60s",
            "--output",
            "json",
            &server.url("http"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The run has completed responses once the server has seen more requests than there
    // are connections: a keep-alive connection sends its next request only after the
    // previous response arrived. (Seeing the first request is not enough: an interrupt
    // then can land before any response is back, and a run with none is an error.)
    tokio::time::timeout(Duration::from_secs(30), async {
        while server.counters.get(&server.counters.requests) < 20 {
            server.counters.request_seen.notified().await;
        }
    })
    .await
    .expect("requests reached the server");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("loadgen stopped within 20 s of SIGINT")
        .unwrap();
    let run = common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let report = run.ok_json();
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(duration > 0.0 && duration < 30.0, "{report:#}");
    assert!(int(&report, "/requests") > 0);
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().starts_with("interrupted")),
        "{report:#}"
    );
}

/// The line an idle run of `n` connections prints once they are all open.
fn all_open(n: u64) -> String {
    format!("loadgen: idle: {n} of {n} connections open")
}

/// `--idle` against echo-server over HTTP, HTTPS and a Unix socket: all 200 connections
/// open (two threads, a bounded number at a time), each with one verified request; the
/// contract line comes exactly once; the hold lasts `-d`; the report says so, error-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_opens_and_holds_every_connection() {
    let _serial = SERIAL.lock().await;
    for mode in [Mode::Http, Mode::Https, Mode::Unix] {
        let server = echo(mode).await;
        let mut args = vec![
            "--idle", "-c", "200", "-t", "2", "-d", "1s", "-b", "100", "--output", "json",
        ];
        let cacert = server.cacert.as_ref().map(|p| p.display().to_string());
        if let Some(ca) = &cacert {
            args.extend(["--cacert", ca]);
        }
        args.push(&server.url);
        let run = loadgen(&args).await;
        let report = run.ok_json();
        assert_eq!(run.stderr, format!("{}\n", all_open(200)), "{mode:?}");
        assert_eq!(report["mode"], "idle", "{mode:?}");
        for (path, want) in [
            ("/idle/asked", 200),
            ("/idle/opened", 200),
            ("/idle/closed_by_server", 0),
            ("/connections", 200),
            ("/connections_opened", 200),
            ("/requests", 200),
            ("/errors/total", 0),
        ] {
            assert_eq!(int(&report, path), want, "{mode:?} {path}: {report:#}");
        }
        assert!(report["duration_s"].as_f64().unwrap() >= 1.0, "{report:#}");
        assert!(
            report["idle"]["open_s"].as_f64().unwrap() > 0.0,
            "{report:#}"
        );
        assert!(int(&report, "/latency_us/max") > 0, "{report:#}");
        assert_eq!(report["warnings"], json!([]), "{mode:?}");
        if mode == Mode::Https {
            assert_eq!(int(&report, "/tls/handshakes"), 200, "{report:#}");
        }
    }

    // The text summary.
    let server = echo(Mode::Http).await;
    let run = loadgen(&["--idle", "-c", "20", "-d", "300ms", &server.url]).await;
    assert_eq!(run.code, 0, "{run:?}");
    for needle in [
        "Idle test @ http://127.0.0.1:",
        "held 20 connections for 0.30s",
        "20 asked, 20 opened in",
        "0 closed by the server during the hold",
        "Latency of connect, handshake and first request",
        "99.9%",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle:?} missing from:\n{}",
            run.stdout
        );
    }
}

/// Idle connections are really held: when the line comes, the server has every one open
/// after exactly one request each; nothing more is sent during the hold; at the end each
/// is closed with a TLS close_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_held_silent_then_closed_cleanly() {
    let _serial = SERIAL.lock().await;
    let certs = common::certs();
    let server = TestServer::start(Behaviour {
        tls: Some(common::acceptor(&certs)),
        ..Behaviour::default()
    })
    .await;
    let ca = certs.cert.display().to_string();
    let url = server.url("https");
    let mut run = common::Running::spawn(&[
        "--idle", "-c", "200", "-d", "2s", "--cacert", &ca, "--output", "json", &url,
    ]);
    let line = run.line_starting("loadgen: idle:").await;
    let line_seen = std::time::Instant::now();
    assert_eq!(line, all_open(200));
    let c = &server.counters;
    assert_eq!(c.get(&c.open), 200, "held when the line comes");
    assert_eq!(c.get(&c.connections), 200);
    assert_eq!(c.get(&c.handshakes), 200);
    assert_eq!(c.get(&c.requests), 200);

    let run = run.finish().await;
    let held = line_seen.elapsed();
    let report = run.ok_json();
    assert_eq!(
        run.stderr.matches("loadgen: idle:").count(),
        1,
        "{}",
        run.stderr
    );
    // The hold is 2 s from the line; the bound is loose for a busy machine.
    assert!(held >= Duration::from_secs(1), "held only {held:?}");
    assert!(report["duration_s"].as_f64().unwrap() >= 2.0, "{report:#}");
    assert_eq!(int(&report, "/idle/closed_by_server"), 0, "{report:#}");
    common::eventually("the server sees every connection closed", || {
        c.get(&c.open) == 0
    })
    .await;
    assert_eq!(c.get(&c.requests), 200, "nothing is sent during the hold");
    assert_eq!(c.get(&c.clean_closes), 200, "each closed with close_notify");
}

/// A server that hangs up on held connections: each one is counted, and said in a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_counts_connections_the_server_closes() {
    let _serial = SERIAL.lock().await;
    let (hang_up, hang_up_rx) = tokio::sync::watch::channel(false);
    let server = TestServer::start(Behaviour {
        hang_up: Some(hang_up_rx),
        ..Behaviour::default()
    })
    .await;
    let url = server.url("http");
    let mut run =
        common::Running::spawn(&["--idle", "-c", "200", "-d", "5s", "--output", "json", &url]);
    assert_eq!(run.line_starting("loadgen: idle:").await, all_open(200));
    hang_up.send(true).unwrap();
    let run = run.finish().await;
    let report = run.ok_json();
    assert_eq!(int(&report, "/idle/opened"), 200, "{report:#}");
    assert_eq!(int(&report, "/idle/closed_by_server"), 200, "{report:#}");
    assert_eq!(int(&report, "/errors/total"), 0, "{report:#}");
    assert_eq!(
        report["warnings"],
        json!(["200 of 200 held connections were closed by the server during the hold"])
    );
}

/// Connections the server drops before answering are tried again a bounded number of
/// times (4 tries), every failed try is counted by kind, and the line and the report say
/// how many opened. A wrong answer (not the echo) is not tried again, and a connection
/// that got one is not held: when none opened, the run fails without the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_retries_transient_failures_only() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour {
        serve_at_most: Some(15),
        ..Behaviour::default()
    })
    .await;
    let run = loadgen(&[
        "--idle",
        "-c",
        "20",
        "-d",
        "300ms",
        "--output",
        "json",
        &server.url("http"),
    ])
    .await;
    let report = run.ok_json();
    assert!(
        run.stderr
            .starts_with("loadgen: idle: 15 of 20 connections open\n"),
        "{}",
        run.stderr
    );
    assert_eq!(int(&report, "/idle/opened"), 15, "{report:#}");
    assert_eq!(int(&report, "/requests"), 15, "{report:#}");
    let failed_tries = 5 * 4;
    assert_eq!(int(&report, "/errors/total"), failed_tries, "{report:#}");
    assert_eq!(
        int(&report, "/errors/read") + int(&report, "/errors/write"),
        failed_tries,
        "{report:#}"
    );
    assert_eq!(
        report["warnings"],
        json!(["only 15 of 20 connections opened"])
    );
    assert_eq!(
        server.counters.get(&server.counters.connections),
        15 + failed_tries
    );

    let server = TestServer::start(Behaviour {
        corrupt: true,
        ..Behaviour::default()
    })
    .await;
    let run = loadgen(&["--idle", "-c", "5", "-b", "32", &server.url("http")]).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr,
        "loadgen: response body is not the echo of the 32-byte request body\n"
    );
    assert_eq!(server.counters.get(&server.counters.connections), 5);
}

/// An idle run opens a few hundred connections at a time, not all at once: a server never
/// has more than 256 accepted connections waiting for their first request (without the
/// bound it has about as many as the client opens). 600 connections: well over the bound,
/// well under a 1024-descriptor limit for this test process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_opens_a_bounded_number_at_a_time() {
    let _serial = SERIAL.lock().await;
    let server = TestServer::start(Behaviour::default()).await;
    let url = server.url("http");
    let report = loadgen(&[
        "--idle", "-c", "600", "-t", "2", "-d", "100ms", "--output", "json", &url,
    ])
    .await
    .ok_json();
    assert_eq!(int(&report, "/idle/opened"), 600, "{report:#}");
    let c = &server.counters;
    let most = c.get(&c.max_pending);
    assert!(
        (1..=256).contains(&most),
        "{most} connections waited for their first request"
    );
}

/// `--idle` refuses flags about load over time (exit 2, one line naming both flags), and
/// a connection count over the open-file limit fails at once, naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_argument_conflicts_and_file_limit() {
    for conflict in [
        &["--warmup", "1s"][..],
        &["--rate", "100"][..],
        &["--no-keepalive"][..],
    ] {
        let mut args = vec!["--idle"];
        args.extend(conflict);
        args.push("http://127.0.0.1:1/");
        let run = loadgen(&args).await;
        assert_eq!(run.code, 2, "{conflict:?}: {run:?}");
        assert!(
            run.stderr.starts_with(&format!(
                "loadgen: {} cannot be used with --idle: ",
                conflict[0]
            )),
            "{}",
            run.stderr
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }

    let out = tokio::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -n 128 && exec \"$0\" --idle -c 200 -d 1s http://127.0.0.1:1/",
            env!("CARGO_BIN_EXE_loadgen"),
        ])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open 200 connections: the open-file limit (RLIMIT_NOFILE) is 128"),
        "{stderr}"
    );
    assert!(!stderr.contains("loadgen: idle:"), "{stderr}");
}
