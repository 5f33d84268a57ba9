//! The plain listener (`tls = false`, `--no-tls`) through the real `proxy` binary: bytes
//! relayed exactly to either upstream transport, PROXY headers out (with no TLS facts) and
//! in, the certificate rules of the config, and the access log, metrics and SIGHUP of a
//! proxy that has no certificate at all.

// reason: a test helper that cannot set up its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use proxy::proxy_protocol::{self, Addresses};
use rstest::rstest;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::upstream::{exchange, pattern, ping, recording_upstream, Up, Upstream};
use common::{scrape, Pki, Proxy};

const PROMPT: Duration = Duration::from_secs(10);

/// Flags for one plain listener on a free loopback port in front of `upstream`: no
/// certificate anywhere.
fn plain_args(upstream: &str) -> Vec<&str> {
    vec![
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--no-tls",
    ]
}

#[rstest]
#[case::unix(Up::Unix)]
#[case::tcp(Up::Tcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_exactly_with_no_certificate_anywhere(#[case] up: Up) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(up, dir.path()).await;
    let proxy = Proxy::start(dir.path(), &plain_args(&upstream.spec), 1);
    for (i, size) in [1, 64 * 1024, 1024 * 1024].into_iter().enumerate() {
        let data = pattern(size, i as u64);
        let got = exchange(TcpStream::connect(proxy.addr).await.unwrap(), &data).await;
        assert_eq!(got.len(), data.len(), "size {size} via {up:?}");
        assert!(got == data, "bytes differ at size {size} via {up:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_names_the_client_and_carries_no_tls_facts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let mut seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = plain_args(&spec);
    args.extend(["--proxy-protocol", "v2", "--access-log"]);
    let proxy = Proxy::start(dir.path(), &args, 1);

    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let client = s.local_addr().unwrap();
    ping(&mut s).await;
    let got = seen.recv().await.unwrap();
    let (header, used) = proxy_protocol::parse(&got)
        .unwrap()
        .expect("a whole header");
    assert_eq!(&got[used..], b"ping", "client bytes follow the header");
    assert_eq!(header.version, proxy_protocol::Version::V2);
    assert_eq!(
        header.addrs,
        Addresses::Inet {
            src: client,
            dst: proxy.addr
        }
    );
    assert_eq!(header.tls_facts().unwrap(), None);
    assert!(
        header.tlvs.is_empty(),
        "no SSL, ALPN or authority TLV: {:?}",
        header.tlvs
    );

    drop(s);
    let line = access_line(&proxy, client);
    for field in [
        "tls_version=-",
        "cipher=-",
        "sni=\"-\"",
        "alpn=\"-\"",
        "client_cn=\"-\"",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(
        line.contains("bytes_in=4") && line.contains("bytes_out=4"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_proxy_header_sets_the_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let mut seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = plain_args(&spec);
    args.extend(["--accept-proxy", "--proxy-protocol", "v1", "--access-log"]);
    let proxy = Proxy::start(dir.path(), &args, 1);

    // A load balancer in front says the client is 192.0.2.7:4242.
    let announced = Addresses::Inet {
        src: "192.0.2.7:4242".parse().unwrap(),
        dst: "192.0.2.1:80".parse().unwrap(),
    };
    let mut header = Vec::new();
    proxy_protocol::encode(proxy_protocol::Version::V2, &announced, None, &mut header);
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&header).await.unwrap();
    ping(&mut s).await;
    let got = seen.recv().await.unwrap();
    assert!(
        got.starts_with(b"PROXY TCP4 192.0.2.7 192.0.2.1 4242 80\r\nping"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    drop(s);
    access_line(&proxy, "192.0.2.7:4242".parse().unwrap());

    // Anything that is not a header is closed, and the proxy keeps serving.
    let mut bad = TcpStream::connect(proxy.addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PROMPT, bad.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a malformed header was not closed");
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&header).await.unwrap();
    ping(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_just_gets_its_bytes_relayed() {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut proxy = Proxy::start(pki.dir.path(), &plain_args(&upstream.spec), 1);

    // A TLS record is just bytes here: the echo comes back unchanged.
    let record = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00];
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(exchange(tcp, &record).await, record);

    // A real handshake gets its own ClientHello back, which no server would send: the
    // client fails promptly, and the proxy carries on.
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let handshake = TlsConnector::from(pki.client.clone()).connect(name, tcp);
    let result = tokio::time::timeout(PROMPT, handshake).await;
    assert!(matches!(result, Ok(Err(_))), "{result:?}");
    assert!(proxy.child.try_wait().unwrap().is_none(), "{}", proxy.log());
    let data = pattern(1000, 3);
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(exchange(tcp, &data).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_plain_connections_and_sighup_reloads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("up.sock");
    let _seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = plain_args(&spec);
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let proxy = Proxy::start(dir.path(), &args, 2);
    let (plain_addr, metrics_addr) = (proxy.addrs[0], proxy.addrs[1]);

    for _ in 0..3 {
        let mut s = TcpStream::connect(plain_addr).await.unwrap();
        ping(&mut s).await;
        s.shutdown().await.unwrap();
    }
    // Closes are counted when the proxy sees them: poll until they are all in.
    let end = Instant::now() + PROMPT;
    let text = loop {
        let text = scrape(metrics_addr).await;
        if value(&text, "tlsoff_connections_closed_total{reason=\"done\"}") == Some(3.0) {
            break text;
        }
        assert!(Instant::now() < end, "closes never counted: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(value(&text, "tlsoff_connections_accepted_total"), Some(3.0));
    let bytes = "tlsoff_bytes_total{direction=";
    assert_eq!(
        value(&text, &format!("{bytes}\"client_to_upstream\"}}")),
        Some(12.0)
    );
    assert_eq!(
        value(&text, &format!("{bytes}\"upstream_to_client\"}}")),
        Some(12.0)
    );
    // No handshake happened, so none is counted or timed.
    assert_eq!(
        value(&text, "tlsoff_handshake_duration_seconds_count"),
        Some(0.0)
    );
    let handshakes: f64 = text
        .lines()
        .filter(|l| l.starts_with("tlsoff_tls_handshakes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(handshakes, 0.0, "{text}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    proxy.wait_log("no certificates to reload");
    let mut s = TcpStream::connect(plain_addr).await.unwrap();
    ping(&mut s).await;
}

#[test]
fn certificate_rules_name_the_key_and_check_reports_plain_listeners() {
    let pki = Pki::new(&[]);
    let dir = pki.dir.path();
    let plain =
        "[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"unix:/tmp/x.sock\"\ntls = false\n";
    let tls = "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"unix:/tmp/x.sock\"\n";
    let cert = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        pki.cert.display(),
        pki.key.display()
    );

    let (code, out, _) = check(dir, "mixed.toml", &format!("{cert}{plain}{tls}"));
    assert_eq!(code, Some(0));
    assert!(
        out.contains("listener 127.0.0.1:0 -> unix:/tmp/x.sock: plain, no TLS"),
        "{out}"
    );
    assert!(
        out.contains("listener 127.0.0.1:1 -> unix:/tmp/x.sock: TLS (rustls-aws-lc)"),
        "{out}"
    );
    let (code, out, _) = check(dir, "plain.toml", plain);
    assert_eq!(code, Some(0), "plain listeners need no certificate");
    assert!(out.contains("plain, no TLS"), "{out}");

    for (name, text, key) in [
        ("no-cert.toml", format!("{plain}{tls}"), "tls.cert"),
        (
            "client-ca.toml",
            format!("{plain}client_ca = \"ca.pem\"\n"),
            "listener.client_ca",
        ),
    ] {
        let (code, _, err) = check(dir, name, &text);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(name) && err.contains(key), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        // Starting with it fails the same way, before any socket opens.
        let path = dir.join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(key), "{name}");
    }
}

/// Writes `text` to `dir/name` and runs `proxy check` on it: exit code, stdout, stderr.
fn check(dir: &Path, name: &str, text: &str) -> (Option<i32>, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The access-log line of `client`'s connection, once the proxy has written it.
fn access_line(proxy: &Proxy, client: SocketAddr) -> String {
    let client = format!("client={client}");
    let end = Instant::now() + PROMPT;
    loop {
        let log = proxy.log();
        let found = log
            .lines()
            .find(|l| l.contains("connection closed") && l.contains(&client));
        if let Some(line) = found {
            return line.to_string();
        }
        assert!(Instant::now() < end, "no access line for {client}: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the series named exactly `series` (name and labels) on a metrics page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
