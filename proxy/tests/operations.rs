//! Operations features through the real `proxy` binary: PROXY protocol out (checked by
//! our parser and by a third-party receiver, HAProxy) and in, `/metrics`, the access log.

// reason: a test helper that cannot set up its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proxy::proxy_protocol::{self, Addresses};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use common::upstream::{ping, recording_upstream};
use common::{scrape, Pki, Proxy};

const PROMPT: Duration = Duration::from_secs(10);

impl Pki {
    async fn connect(&self, addr: SocketAddr) -> TlsStream<TcpStream> {
        self.connect_over(TcpStream::connect(addr).await.unwrap())
            .await
    }

    async fn connect_over(&self, tcp: TcpStream) -> TlsStream<TcpStream> {
        TlsConnector::from(self.client.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap()
    }
}

#[rstest::rstest]
#[case::v1_rustls("v1", "rustls-aws-lc")]
#[case::v2_rustls("v2", "rustls-aws-lc")]
#[case::v2_openssl("v2", "openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_header_reaches_the_upstream_first(#[case] version: &str, #[case] backend: &str) {
    let pki = Pki::new(&["http/1.1"]);
    let path = pki.dir.path().join("up.sock");
    let mut seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = pki.args(&spec, backend);
    args.extend(["--proxy-protocol", version, "--alpn", "http/1.1"]);
    let proxy = Proxy::start(pki.dir.path(), &args, 1);
    let mut s = pki.connect(proxy.addrs[0]).await;
    let client_addr = s.get_ref().0.local_addr().unwrap();
    ping(&mut s).await;
    let got = seen.recv().await.unwrap();
    let (header, used) = proxy_protocol::parse(&got)
        .unwrap()
        .expect("a whole header");
    assert_eq!(&got[used..], b"ping", "client bytes follow the header");
    assert_eq!(
        header.addrs,
        Addresses::Inet {
            src: client_addr,
            dst: proxy.addrs[0]
        }
    );
    if version == "v1" {
        assert!(got.starts_with(
            format!(
                "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
                client_addr.port(),
                proxy.addrs[0].port()
            )
            .as_bytes()
        ));
    } else {
        let tls = header.tls_facts().unwrap().expect("SSL TLV");
        assert_eq!(tls.version, "TLSv1.3");
        assert_eq!(tls.sni.as_deref(), Some("localhost"));
        assert_eq!(tls.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(tls.cipher.starts_with("TLS_"), "{}", tls.cipher);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_proxy_header_sets_the_client_address_and_bad_ones_are_closed() {
    let pki = Pki::new(&[]);
    let path = pki.dir.path().join("up.sock");
    let mut seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = pki.args(&spec, "rustls-aws-lc");
    args.extend(["--accept-proxy", "--proxy-protocol", "v2", "--access-log"]);
    let proxy = Proxy::start(pki.dir.path(), &args, 1);

    // A load balancer in front says the client is [2001:db8::7]:4242.
    let announced = Addresses::Inet {
        src: "[2001:db8::7]:4242".parse().unwrap(),
        dst: "[2001:db8::1]:443".parse().unwrap(),
    };
    let mut header = Vec::new();
    proxy_protocol::encode(proxy_protocol::Version::V1, &announced, None, &mut header);
    let mut tcp = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    let mut s = pki.connect_over(tcp).await;
    ping(&mut s).await;
    let got = seen.recv().await.unwrap();
    let (forwarded, _) = proxy_protocol::parse(&got).unwrap().unwrap();
    assert_eq!(
        forwarded.addrs, announced,
        "the upstream learns the real client"
    );
    drop(s);
    proxy.wait_log("[2001:db8::7]:4242");

    // Malformed headers: the connection is closed, the proxy keeps serving.
    for bad in [
        &b"PROXY TCP4 not-an-ip\r\n"[..],
        b"\r\n\r\n\0\r\nQUIT\n\x99\x11\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(proxy.addrs[0]).await.unwrap();
        tcp.write_all(bad).await.unwrap();
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(PROMPT, async {
            loop {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "malformed header {bad:?} was not closed");
    }
    let mut tcp = TcpStream::connect(proxy.addrs[0]).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    let mut s = pki.connect_over(tcp).await;
    ping(&mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic() {
    let pki = Pki::new(&[]);
    let path = pki.dir.path().join("up.sock");
    let _seen = recording_upstream(&path).await;
    let spec = format!("unix:{}", path.display());
    let mut args = pki.args(&spec, "rustls-aws-lc");
    args.extend(["--metrics-listen", "127.0.0.1:0"]);
    let proxy = Proxy::start(pki.dir.path(), &args, 2);
    let (tls_addr, metrics_addr) = (proxy.addrs[0], proxy.addrs[1]);

    for _ in 0..3 {
        let mut s = pki.connect(tls_addr).await;
        ping(&mut s).await;
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    }
    let mut garbage = TcpStream::connect(tls_addr).await.unwrap();
    garbage
        .write_all(b"this is not TLS at all\r\n\r\n")
        .await
        .unwrap();
    let _ = garbage.read(&mut [0u8; 64]).await;

    // Closes are counted when the proxy sees them: poll until the numbers settle.
    let end = Instant::now() + PROMPT;
    loop {
        let text = scrape(metrics_addr).await;
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        };
        let done = value("tlsoff_connections_closed_total{reason=\"done\"}");
        let bytes_in = value("tlsoff_bytes_total{direction=\"client_to_upstream\"}");
        let failures: f64 = text
            .lines()
            .filter(|l| l.starts_with("tlsoff_handshake_failures_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if done == 3.0 && failures == 1.0 {
            assert_eq!(value("tlsoff_connections_accepted_total"), 3.0, "{text}");
            assert_eq!(bytes_in, 12.0, "3 x ping: {text}");
            assert_eq!(
                value("tlsoff_bytes_total{direction=\"upstream_to_client\"}"),
                12.0
            );
            assert_eq!(value("tlsoff_connections_active"), 0.0);
            break;
        }
        assert!(Instant::now() < end, "metrics never settled: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A program the test needs: under CI=true its absence fails the test, elsewhere it skips.
fn need(program: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is required under CI (apt-get install {package})"
        );
        eprintln!("skipping: {program} not installed (apt-get install {package})");
    }
    found
}

/// HAProxy, a third-party PROXY protocol receiver, sits behind our proxy and answers each
/// HTTP request with the client address and SNI it learned from our header.
#[rstest::rstest]
#[case::v1("v1")]
#[case::v2("v2")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_behind_us_sees_the_real_client(#[case] version: &str) {
    if !need("haproxy", "haproxy") {
        return;
    }
    let pki = Pki::new(&[]);
    let sock = pki.dir.path().join("haproxy.sock");
    let cfg = pki.dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend fe\n  bind unix@{} accept-proxy\n  http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port] sni=%[fc_pp_authority]\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut haproxy = Command::new("haproxy")
        .args(["-db", "-f", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let end = Instant::now() + PROMPT;
    while !sock.exists() {
        assert!(
            Instant::now() < end,
            "haproxy did not create {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let spec = format!("unix:{}", sock.display());
    let mut args = pki.args(&spec, "rustls-aws-lc");
    args.extend(["--proxy-protocol", version]);
    let proxy = Proxy::start(pki.dir.path(), &args, 1);
    let mut s = pki.connect(proxy.addrs[0]).await;
    let client = s.get_ref().0.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(PROMPT, s.read_to_string(&mut answer)).await;
    let _ = haproxy.kill();
    let _ = haproxy.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&client.to_string()),
        "haproxy saw another client: {answer}"
    );
    if version == "v2" {
        assert!(answer.contains("sni=localhost"), "no SNI TLV: {answer}");
    }
}
