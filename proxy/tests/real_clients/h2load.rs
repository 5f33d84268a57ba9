//! h2load (nghttp2) through the proxy: many concurrent HTTP/2 streams over ALPN `h2` to the
//! echo-server, every request a 2xx and every echoed byte counted.

use std::process::Command;

use proxy::tls::Backend;
use rstest::rstest;
use rstest_reuse::apply;

use crate::every_backend;
use crate::stack::{self, cell, EchoServer, Pki, HOST};

/// Requests, connections and streams at once per connection: 128 streams in flight.
const REQUESTS: usize = 2000;
const CONNECTIONS: usize = 4;
const STREAMS: usize = 32;
/// Each request's body, echoed back: 2 MB of DATA frames in all.
const BODY_BYTES: usize = 1000;

#[apply(every_backend)]
fn h2load_many_streams_all_2xx_and_every_byte_back(backend: Backend) {
    let Some(h2load) = stack::program("h2load", "nghttp2-client") else {
        return;
    };
    println!(
        "real-clients | {}",
        stack::version_line(&h2load, &["--version"])
    );
    let pki = Pki::new();
    let echo = EchoServer::start(pki.path());
    let proxy = pki.proxy(backend, &echo.spec, &["--alpn", "h2,http/1.1"]);
    let body_path = pki.path().join("body.bin");
    stack::pattern_file(&body_path, BODY_BYTES, 23);
    let out = stack::run(
        Command::new(&h2load)
            .args(["-n", &REQUESTS.to_string()])
            .args(["-c", &CONNECTIONS.to_string()])
            .args(["-m", &STREAMS.to_string()])
            .arg("-d")
            .arg(&body_path)
            .arg(format!("--connect-to=127.0.0.1:{}", proxy.addr.port()))
            .arg(format!("https://{HOST}:{}/echo", proxy.addr.port())),
        b"",
    );
    let text = stack::text(&out);
    let what = format!("{backend}: {text}\nproxy: {}", proxy.log());
    assert!(out.status.success(), "{what}");
    // h2load has no certificate check: ALPN is what tells that HTTP/2 was spoken.
    assert!(text.contains("Application protocol: h2"), "{what}");
    let n = REQUESTS;
    let all_done = format!("{n} total, {n} started, {n} done, {n} succeeded");
    let none_failed = "0 failed, 0 errored, 0 timeout";
    assert!(
        text.contains(&format!("requests: {all_done}, {none_failed}")),
        "{what}"
    );
    assert!(
        text.contains(&format!("status codes: {n} 2xx, 0 3xx, 0 4xx, 0 5xx")),
        "{what}"
    );
    let data = data_bytes(&text).unwrap_or_else(|| panic!("no traffic line: {what}"));
    assert_eq!(data, (n * BODY_BYTES) as u64, "response body bytes: {what}");
    cell(
        "h2load",
        backend,
        &format!("h2, {n} POSTs of {BODY_BYTES} B, -c {CONNECTIONS} -m {STREAMS}"),
        &format!("{n} 2xx, {data} B echoed"),
    );
}

/// The response body bytes from h2load's traffic line: `traffic: 2.07MB (2171234) total,
/// 39.06KB (40000) headers (space savings 92.00%), 1.91MB (2000000) data`.
fn data_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("traffic:"))?;
    let data = line
        .split(',')
        .find(|part| part.trim_end().ends_with(" data"))?;
    let open = data.find('(')?;
    let close = data.find(')')?;
    data[open + 1..close].parse().ok()
}
