//! The echo-server binary, end to end: real processes on free ports (or sockets in a
//! TempDir), every transport and every TLS backend, bytes compared exactly.

mod common;

use std::os::unix::fs::FileTypeExt;

use common::{
    assert_same_body, pattern, post, post_chunked, read, run_to_exit, socket_path, Server, Target,
    GET,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rstest::rstest;

// ---- the echo ----------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn post_body_round_trips_byte_exact(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
    // 16 KiB +- 1: around one TLS record's payload.
    #[values(0, 10, 16_383, 16_384, 16_385, 100_000, 10_000_000)] size: usize,
) {
    let server = Server::start(target, &[]);
    let body = pattern(size, size as u64);
    let mut client = server.connect().await;
    let resp = client.request(&post(&body)).await;
    assert_eq!(resp.status, 200, "{target}");
    assert_eq!(
        resp.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert_same_body(&resp.body, &body);
}

#[rstest]
#[tokio::test]
async fn keep_alive_connection_serves_several_requests(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    let mut client = server.connect().await;
    for (i, size) in [10, 0, 100_000, 1, 65_537].into_iter().enumerate() {
        let body = pattern(size, i as u64);
        let resp = client.request(&post(&body)).await;
        assert_eq!(resp.status, 200, "{target}, request {i}");
        assert_eq!(resp.header("connection"), None, "request {i}");
        assert_same_body(&resp.body, &body);
        let resp = client.request(GET).await;
        assert_eq!(resp.status, 200, "{target}, GET after request {i}");
    }
}

#[rstest]
#[tokio::test]
async fn chunked_request_is_echoed_with_content_length(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    let mut client = server.connect().await;
    let body = pattern(100_003, 7);
    let resp = client.request(&post_chunked(&body, 4096)).await;
    assert_eq!(resp.status, 200, "{target}");
    assert_eq!(resp.header("content-length"), Some("100003"));
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_same_body(&resp.body, &body);
    // An empty chunked body, and the connection still works afterwards.
    let resp = client.request(&post_chunked(b"", 1)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("0"));
    let resp = client.request(&post(b"after")).await;
    assert_eq!(resp.body, b"after");
}

#[rstest]
#[tokio::test]
async fn pipelined_requests_are_answered_in_order(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    let mut client = server.connect().await;
    let (first, second) = (pattern(1000, 1), pattern(2000, 2));
    let mut both = post(&first);
    both.extend_from_slice(&post_chunked(&second, 300));
    both.extend_from_slice(GET);
    let responses = client.requests(&both, 3).await;
    assert_eq!(responses[0].status, 200, "{target}");
    assert_same_body(&responses[0].body, &first);
    assert_eq!(responses[1].status, 200, "{target}");
    assert_same_body(&responses[1].body, &second);
    assert_eq!(responses[2].status, 200, "{target}");
    assert!(responses[2].body.is_empty());
}

#[rstest]
#[tokio::test]
async fn get_gets_an_empty_200(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    let mut client = server.connect().await;
    let resp = client.request(GET).await;
    assert_eq!(resp.status, 200, "{target}");
    assert_eq!(resp.header("content-length"), Some("0"));
    assert!(resp.body.is_empty());
}

/// HTTP/2 with prior knowledge (what a terminator that negotiated ALPN `h2` relays) on the
/// same socket as HTTP/1.1: concurrent streams on one connection, each echoed exactly.
#[rstest]
#[tokio::test]
async fn http2_streams_are_echoed_concurrently(
    #[values(Target::Http, Target::Unix)] target: Target,
) {
    let server = Server::start(target, &[]);
    let (client, connection) = h2::client::handshake(server.connect_raw().await)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut streams = Vec::new();
    // Past the 64 KiB initial windows, so flow control on both sides is exercised.
    for size in [0, 16_385, 1_000_001] {
        let mut client = client.clone().ready().await.expect("a stream slot");
        streams.push(tokio::spawn(async move {
            let body = pattern(size, size as u64);
            let req = http::Request::post("http://localhost/echo")
                .header("content-length", size)
                .body(())
                .expect("a request");
            let (resp, mut send) = client.send_request(req, false).expect("sending headers");
            send.send_data(body.clone().into(), true)
                .expect("sending the body");
            let resp = resp.await.expect("a response");
            assert_eq!(resp.status(), 200, "{target} {size}");
            let mut recv = resp.into_body();
            let mut got = Vec::new();
            while let Some(chunk) = recv.data().await {
                let chunk = chunk.expect("a DATA frame");
                let _ = recv.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert_same_body(&got, &body);
        }));
    }
    for stream in streams {
        stream.await.expect("a stream's task");
    }
}

// ---- errors ------------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn malformed_request_gets_400_and_close(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    let mut client = server.connect().await;
    let resp = client.request(b"GARBAGE\r\n\r\n").await;
    assert_eq!(resp.status, 400, "{target}");
    client.assert_closed().await;
    // The server itself is fine.
    let mut client = server.connect().await;
    assert_eq!(
        client.request(&post(b"still here")).await.body,
        b"still here"
    );
}

#[rstest]
#[tokio::test]
async fn tls_garbage_closes_that_connection_only(
    #[values(
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS
    )]
    target: Target,
) {
    let server = Server::start(target, &[]);
    // A client mid-session keeps working while another sends garbage.
    let mut good = server.connect().await;
    assert_eq!(good.request(&post(b"before")).await.body, b"before");

    let mut bad = common::Client::new(server.connect_raw().await);
    // Starts like a TLS handshake record, then nonsense; and pure noise.
    for garbage in [
        {
            let mut g = vec![0x16, 0x03, 0x01, 0x00, 0x40];
            g.extend(pattern(64, 3));
            g
        },
        pattern(4096, 4),
    ] {
        bad.write(&garbage).await.expect("writing garbage");
        bad.assert_closed_after_alerts().await;
        bad = common::Client::new(server.connect_raw().await);
    }
    // A handshake record that promises 512 bytes, cut short by the client's FIN.
    bad.write(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .expect("writing a truncated hello");
    bad.close_write().await.expect("closing the write side");
    bad.assert_closed_after_alerts().await;
    drop(bad);

    assert_eq!(good.request(&post(b"during")).await.body, b"during");
    let mut next = server.connect().await;
    assert_eq!(next.request(&post(b"after")).await.body, b"after");
}

#[rstest]
#[tokio::test]
async fn oversized_body_gets_413(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
    #[values(false, true)] chunked: bool,
) {
    let server = Server::start(target, &["--max-body", "1000"]);
    let mut client = server.connect().await;
    // At the limit: echoed.
    let body = pattern(1000, 5);
    let req = if chunked {
        post_chunked(&body, 100)
    } else {
        post(&body)
    };
    let resp = client.request(&req).await;
    assert_eq!(resp.status, 200, "{target}: a body at the limit");
    assert_same_body(&resp.body, &body);
    // Over it: refused, and the connection is closed.
    let body = pattern(5000, 6);
    let req = if chunked {
        post_chunked(&body, 500)
    } else {
        post(&body)
    };
    let resp = client.request(&req).await;
    assert_eq!(resp.status, 413, "{target}, chunked: {chunked}");
    assert!(resp.body.is_empty());
    client.assert_closed().await;
    // The server itself is fine.
    let mut client = server.connect().await;
    assert_eq!(client.request(&post(b"ok")).await.body, b"ok");
}

// ---- unix sockets and process lifecycle ----------------------------------------------

#[tokio::test]
async fn stale_unix_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_path(&dir);
    drop(std::os::unix::net::UnixListener::bind(&path).expect("binding a stale socket"));
    assert!(std::fs::symlink_metadata(&path)
        .expect("stale socket file")
        .file_type()
        .is_socket());
    let args = unix_args(&path);
    let server = Server::spawn(Target::Unix, &args, dir, None);
    let mut client = server.connect().await;
    assert_eq!(client.request(&post(b"fresh")).await.body, b"fresh");
}

#[test]
fn regular_file_at_unix_path_is_refused_and_left_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_path(&dir);
    let contents = pattern(1234, 9);
    std::fs::write(&path, &contents).expect("writing a regular file");
    let (status, stderr) = run_to_exit(&unix_args(&path));
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr does not name {}: {stderr}",
        path.display()
    );
    assert_eq!(read(&path), contents, "the file was modified");
}

#[test]
fn live_unix_socket_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_path(&dir);
    let args = unix_args(&path);
    let first = Server::spawn(Target::Unix, &args, dir, None);
    let (status, stderr) = run_to_exit(&args);
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    // The first server still owns its socket.
    assert!(std::os::unix::net::UnixStream::connect(&first.addr).is_ok());
}

#[rstest]
#[tokio::test]
async fn sigterm_stops_cleanly(
    #[values(
        Target::Http,
        Target::HTTPS_AWS_LC,
        Target::HTTPS_RING,
        Target::HTTPS_OPENSSL,
        Target::HTTPS_NATIVE_TLS,
        Target::Unix
    )]
    target: Target,
) {
    let mut server = Server::start(target, &[]);
    // An idle keep-alive connection must not hold up the stop.
    let mut idle = server.connect().await;
    assert_eq!(idle.request(&post(b"hi")).await.body, b"hi");
    kill(Pid::from_raw(server.pid()), Signal::SIGTERM).expect("sending SIGTERM");
    let status = server.wait();
    assert_eq!(
        status.code(),
        Some(0),
        "{target}: exit after SIGTERM; stderr: {}",
        server.stderr()
    );
    if target == Target::Unix {
        assert!(
            !std::path::Path::new(&server.addr).exists(),
            "socket file {} left behind",
            server.addr
        );
    }
    idle.assert_closed().await;
}

#[tokio::test]
async fn https_without_cert_generates_one_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = ["--mode", "https", "--listen", "127.0.0.1:0"]
        .map(String::from)
        .to_vec();
    let mut server = Server::spawn(Target::HTTPS_AWS_LC, &args, dir, None);
    let line = server.stderr_line("generated a self-signed");
    // The line says where the certificate is; a client that trusts it gets served.
    let cert_path = line
        .rsplit_once(" at ")
        .map(|(_, p)| std::path::PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no path in {line:?}"));
    server.cert = Some(common::cert_from_pem(&read(&cert_path)));
    let mut client = server.connect().await;
    assert_eq!(
        client.request(&post(b"self-signed")).await.body,
        b"self-signed"
    );
    // The generated key is the server's own business: gone once it stops.
    kill(Pid::from_raw(server.pid()), Signal::SIGTERM).expect("sending SIGTERM");
    assert_eq!(server.wait().code(), Some(0));
    let dir = cert_path.parent().expect("certificate directory");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

fn unix_args(path: &std::path::Path) -> Vec<String> {
    vec![
        "--mode".into(),
        "unix".into(),
        "--listen".into(),
        path.display().to_string(),
    ]
}

/// `--proxy-protocol`: a PROXY header (as `proxy --proxy-protocol` sends) is read and
/// discarded before HTTP; a connection without one is closed.
#[rstest]
#[tokio::test]
async fn proxy_protocol_header_is_read_and_discarded(
    #[values(Target::Http, Target::Unix)] target: Target,
) {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(target, &["--proxy-protocol"]);
    let mut raw = server.connect_raw().await;
    raw.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 443\r\n")
        .await
        .unwrap();
    let mut client = common::Client::new(raw);
    let body = pattern(1000, 9);
    let resp = client.request(&post(&body)).await;
    assert_eq!(resp.status, 200);
    assert_same_body(&resp.body, &body);

    let mut bare = common::Client::new(server.connect_raw().await);
    let _ = bare.write(&post(b"no header")).await;
    bare.assert_closed().await;
}

/// `--version` names each backend's TLS library in the proxy's words (the harness reads the
/// `https-*` rows' library from it); `-V` stays one line.
#[test]
fn version_names_the_library_of_every_backend() {
    let version = |flag: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_echo-server"))
            .arg(flag)
            .output()
            .expect("running echo-server");
        assert!(out.status.success(), "{flag}: {}", out.status);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let long = version("--version");
    let lines: Vec<&str> = long.lines().skip(1).collect();
    assert_eq!(lines.join("\n"), proxy::tls::library_lines(), "{long}");
    assert!(
        lines[0].starts_with("rustls-aws-lc backend: rustls "),
        "{long}"
    );
    assert_eq!(
        version("-V").trim(),
        format!("echo-server {}", env!("CARGO_PKG_VERSION"))
    );
}
