//! curl through the proxy: a POST over HTTP/1.1 and over HTTP/2 (ALPN `h2`) to the
//! echo-server, the body echoed byte for byte, curl's own byte counts and its report of the
//! HTTP version checked.

use std::process::Command;

use proxy::tls::Backend;
use rstest::rstest;
use rstest_reuse::apply;

use crate::every_backend;
use crate::stack::{self, cell, EchoServer, Pki, HOST};

/// Body size: larger than curl's and hyper's buffers and the HTTP/2 initial windows (64 KiB),
/// so flow control and several TLS records are exercised, and odd so framing slips show.
const BODY_BYTES: usize = 1024 * 1024 + 7;

#[apply(every_backend)]
fn curl_http1_and_http2_echo_the_body(backend: Backend) {
    let Some(curl) = stack::program("curl", "curl") else {
        return;
    };
    println!(
        "real-clients | {}",
        stack::version_line(&curl, &["--version"])
    );
    let pki = Pki::new();
    let echo = EchoServer::start(pki.path());
    let proxy = pki.proxy(backend, &echo.spec, &["--alpn", "h2,http/1.1"]);
    let body_path = pki.path().join("body.bin");
    let body = stack::pattern_file(&body_path, BODY_BYTES, 19);
    let resolve = format!("{HOST}:{}:127.0.0.1", proxy.addr.port());
    let url = format!("https://{HOST}:{}/echo", proxy.addr.port());

    // `--http2` asks for h2 by ALPN and falls back to HTTP/1.1 if the server does not pick
    // it: the version curl reports is what tells them apart.
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let got_path = pki.path().join(format!("got{flag}"));
        let out = stack::run(
            Command::new(&curl)
                .args(["--silent", "--show-error", "--max-time", "60"])
                .args(["--cacert", stack::utf8(&pki.ca.path)])
                .args(["--resolve", &resolve, flag])
                .args(["-H", "Content-Type: application/octet-stream"])
                .arg("--data-binary")
                .arg(format!("@{}", body_path.display()))
                .arg("--output")
                .arg(&got_path)
                .args([
                    "--write-out",
                    "%{http_version} %{response_code} %{size_upload} %{size_download}",
                ])
                .arg(&url),
            b"",
        );
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        let what = format!("{backend} {flag}: {report} {}", stack::text(&out));
        assert!(out.status.success(), "{what}\nproxy: {}", proxy.log());
        let n = body.len().to_string();
        assert_eq!(
            report.split(' ').collect::<Vec<_>>(),
            [want, "200", n.as_str(), n.as_str()],
            "{what}: HTTP version, status, bytes up, bytes down"
        );
        let got = std::fs::read(&got_path).expect("reading curl's output file");
        assert!(
            got == body,
            "{what}: the echoed body differs from the one sent"
        );
        cell(
            "curl",
            backend,
            &format!("HTTP/{want} POST {n} B"),
            "echoed byte for byte",
        );
    }
}
