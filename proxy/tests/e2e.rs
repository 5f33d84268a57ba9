//! End-to-end tests of the real `proxy` binary: TLS clients in front, an in-test byte echo
//! upstream behind (Unix socket or TCP), for both TLS families.

// reason: a test helper that cannot set up its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy::tls::selfsigned::{self, KeyKind};
use rstest::rstest;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use common::upstream::{echo_bytes, exchange, pattern, Up, Upstream};
use common::{client_builder, client_config, ClientIdentity, Pki, Proxy, TestCa};

/// Generous bound for things that should happen "promptly": catches hangs, never flakes.
const PROMPT: Duration = Duration::from_secs(10);

impl Proxy {
    /// Starts the proxy (one listener) logging at debug: tests here read what it says
    /// about each connection.
    fn start_debug(dir: &Path, args: &[&str]) -> Self {
        Proxy::start_with_env(dir, args, 1, &[("RUST_LOG", "debug")])
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The process's resident memory, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "proxy did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn connect(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> TlsStream<TcpStream> {
    connect_sni(addr, config, "localhost").await.unwrap()
}

async fn connect_sni(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config.clone())
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
}

/// The start of a TLS handshake record whose header promises 512 bytes, never all sent.
const TRUNCATED_HELLO: [u8; 7] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00];

/// True when the peer closes `s` (EOF or an error; an alert may come first) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(limit, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[rstest]
#[case::rustls_unix("rustls-aws-lc", Up::Unix)]
#[case::rustls_tcp("rustls-aws-lc", Up::Tcp)]
#[case::ring_unix("rustls-ring", Up::Unix)]
#[case::openssl_unix("openssl", Up::Unix)]
#[case::openssl_tcp("openssl", Up::Tcp)]
#[case::native_tls_unix("native-tls", Up::Unix)]
#[case::native_tls_tcp("native-tls", Up::Tcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_exactly_with_half_close(#[case] backend: &str, #[case] up: Up) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(up, pki.dir.path()).await;
    let proxy = Proxy::start_debug(pki.dir.path(), &pki.args(&upstream.spec, backend));
    for (i, size) in [
        0,
        1,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        10 * 1024 * 1024,
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(size, i as u64);
        let got = exchange(connect(proxy.addr, &pki.client).await, &data).await;
        assert_eq!(got.len(), data.len(), "size {size} via {backend}");
        assert!(got == data, "bytes differ at size {size} via {backend}");
    }
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_connections_each_exchange_several_times(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let proxy = Proxy::start_debug(pki.dir.path(), &pki.args(&upstream.spec, backend));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..1000u64 {
        let config = pki.client.clone();
        let addr = proxy.addr;
        tasks.spawn(async move {
            let mut s = connect(addr, &config).await;
            for round in 0..3u64 {
                let data = pattern(100 + (c as usize % 900), c * 10 + round);
                s.write_all(&data).await.unwrap();
                let mut got = vec![0; data.len()];
                s.read_exact(&mut got).await.unwrap();
                assert_eq!(got, data);
            }
        });
    }
    let all = async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap()
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("1000 clients timed out");
}

/// An upstream that reads the whole request to EOF and only then answers: the client's
/// half-close must reach it, and the answer must still reach the client.
#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_upstream_and_answer_still_arrives(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let path = pki.dir.path().join("late.sock");
    let l = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        let answer = format!("got {} bytes", got.len());
        s.write_all(answer.as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let spec = format!("unix:{}", path.display());
    let proxy = Proxy::start_debug(pki.dir.path(), &pki.args(&spec, backend));
    let got = exchange(connect(proxy.addr, &pki.client).await, &pattern(100_000, 7)).await;
    assert_eq!(String::from_utf8(got).unwrap(), "got 100000 bytes");
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_closes_client_promptly_and_recovers(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let path = pki.dir.path().join("later.sock");
    let spec = format!("unix:{}", path.display());
    let mut proxy = Proxy::start_debug(pki.dir.path(), &pki.args(&spec, backend));
    // Nobody listens yet: the client must see the connection end, not hang.
    let started = Instant::now();
    let mut s = connect(proxy.addr, &pki.client).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(PROMPT, s.read(&mut buf))
        .await
        .expect("client hung");
    assert!(matches!(n, Ok(0) | Err(_)), "expected a close, got {n:?}");
    assert!(started.elapsed() < PROMPT);
    assert!(proxy.alive(), "proxy exited on a dead upstream");
    assert!(proxy.log().contains("upstream"), "log: {}", proxy.log());
    // The upstream comes up: traffic flows with no restart.
    let l = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(echo_bytes(s));
        }
    });
    let data = pattern(5000, 1);
    assert_eq!(
        exchange(connect(proxy.addr, &pki.client).await, &data).await,
        data
    );
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[case::native_tls("native-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_clients_are_closed_and_others_unaffected(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = pki.args(&upstream.spec, backend);
    args.extend(["--handshake-timeout", "1s"]);
    let mut proxy = Proxy::start_debug(pki.dir.path(), &args);

    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut garbage = TcpStream::connect(proxy.addr).await.unwrap();
    garbage.write_all(&pattern(4096, 9)).await.unwrap();
    let mut truncated = TcpStream::connect(proxy.addr).await.unwrap();
    truncated.write_all(&TRUNCATED_HELLO).await.unwrap();

    for (name, s) in [
        ("garbage", &mut garbage),
        ("silent", &mut silent),
        ("truncated", &mut truncated),
    ] {
        assert!(
            closed_within(s, PROMPT).await,
            "{backend}: {name} client was not closed"
        );
    }
    let data = pattern(1000, 2);
    assert_eq!(
        exchange(connect(proxy.addr, &pki.client).await, &data).await,
        data
    );
    assert!(proxy.alive());
}

/// A burst of stalled handshakes (a slowloris) raises the proxy's RSS; once the handshake
/// timeout has closed them all, at least half of that memory goes back to the OS within seconds,
/// with no other traffic to trigger it: the allocator's freed pages are handed back by the
/// workers' own housekeeping, not by later allocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_a_closed_burst_goes_back_to_the_os_while_idle() {
    const BURST: usize = 1000;
    sysio::host::raise_nofile_limit().unwrap();
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = pki.args(&upstream.spec, "rustls-aws-lc");
    args.extend(["--handshake-timeout", "1s"]);
    let proxy = Proxy::start_debug(pki.dir.path(), &args);
    // The baseline is a proxy that has served: its workers' heaps and TLS state exist.
    let data = pattern(1000, 1);
    for _ in 0..4 {
        assert_eq!(
            exchange(connect(proxy.addr, &pki.client).await, &data).await,
            data
        );
    }
    let before = proxy.rss_kib();

    let mut stalled = Vec::with_capacity(BURST);
    for i in 0..BURST {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&TRUNCATED_HELLO).await.unwrap();
        s.write_all(&pattern(24, i as u64)).await.unwrap();
        stalled.push(s);
    }
    let peak = proxy.rss_kib();
    let grown = peak.saturating_sub(before);
    assert!(
        grown >= 4 * 1024,
        "{BURST} stalled handshakes should cost the proxy megabytes to be measurable here \
         (RSS {before} -> {peak} KiB); raise BURST"
    );
    for s in &mut stalled {
        assert!(
            closed_within(s, PROMPT).await,
            "a stalled handshake was not closed"
        );
    }
    drop(stalled);
    // Freed pages are handed back once they have been free for the allocator's delay and
    // the next housekeeping tick has run: about two seconds; PROMPT catches "never".
    let deadline = Instant::now() + PROMPT;
    let mut after = proxy.rss_kib();
    while after > before + grown / 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = proxy.rss_kib();
    }
    assert!(
        after <= before + grown / 2,
        "RSS {before} KiB before the burst, {peak} at its peak, still {after} {PROMPT:?} \
         after every connection closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = pki.args(&upstream.spec, "rustls-aws-lc");
    args.extend(["--max-connections", "2"]);
    let proxy = Proxy::start_debug(pki.dir.path(), &args);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(proxy.addr, &pki.client).await;
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        held.push(s);
    }
    let third = tokio::time::timeout(PROMPT, connect_sni(proxy.addr, &pki.client, "localhost"))
        .await
        .expect("third connection hung");
    assert!(
        third.is_err(),
        "a third connection was served past max_connections=2"
    );
    drop(held);
    // Slots free up once the held connections close.
    let deadline = Instant::now() + PROMPT;
    loop {
        if let Ok(s) = connect_sni(proxy.addr, &pki.client, "localhost").await {
            assert_eq!(exchange(s, b"again").await, b"again");
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_resumes_the_session(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let proxy = Proxy::start_debug(pki.dir.path(), &pki.args(&upstream.spec, backend));
    for (i, want) in [
        (0, rustls::HandshakeKind::Full),
        (1, rustls::HandshakeKind::Resumed),
    ] {
        let mut s = connect(proxy.addr, &pki.client).await;
        // Tickets arrive after the handshake: exchange data so the client receives them.
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(
            s.get_ref().1.handshake_kind(),
            Some(want),
            "connection {i} via {backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let pki = Pki::new(&[]);
    let other = selfsigned::generate(KeyKind::EcdsaP256, &["other.test"])
        .unwrap()
        .write(pki.dir.path(), "other.pem", "other.key")
        .unwrap();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let config = format!(
        r#"
[tls]
cert = "{}"
key = "{}"
[[tls.sni]]
name = "other.test"
cert = "{}"
key = "{}"
[[listener]]
listen = "127.0.0.1:0"
upstream = "{}"
"#,
        pki.cert.display(),
        pki.key.display(),
        other.cert.display(),
        other.key.display(),
        upstream.spec
    );
    let file = pki.dir.path().join("proxy.toml");
    std::fs::write(&file, config).unwrap();
    let proxy = Proxy::start_debug(pki.dir.path(), &[file.to_str().unwrap()]);
    let both = client_config(&[&pki.cert, &other.cert]);
    let s = connect_sni(proxy.addr, &both, "other.test").await.unwrap();
    let seen = s.get_ref().1.peer_certificates().unwrap()[0].clone();
    let want = {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(&other.cert).unwrap()
    };
    assert_eq!(seen, want, "SNI other.test did not get its certificate");
    let s = connect_sni(proxy.addr, &both, "localhost").await.unwrap();
    assert_ne!(s.get_ref().1.peer_certificates().unwrap()[0], want);
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_transfer_and_refuses_new_connections(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = pki.args(&upstream.spec, backend);
    args.extend(["--threads", "2"]);
    let mut proxy = Proxy::start_debug(pki.dir.path(), &args);
    let data = pattern(100 * 1024 * 1024, 3);
    let s = connect(proxy.addr, &pki.client).await;
    let (mut r, mut w) = tokio::io::split(s);
    let send = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&send[..1024 * 1024]).await.unwrap();
        // Signal once the first megabyte is on its way, then send the rest.
        w.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.write_all(&send[1024 * 1024..]).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut first = vec![0u8; 1024];
    r.read_exact(&mut first).await.unwrap();
    proxy.sigterm();
    // Both workers say when their listeners are closed; after that a new connection is
    // not served (waiting for the line, not a fixed time, keeps a busy CI host honest).
    proxy.wait_for_log(DRAINING, 2).await;
    let late = connect_sni(proxy.addr, &pki.client, "localhost").await;
    assert!(late.is_err(), "a connection was accepted after SIGTERM");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut rest))
        .await
        .expect("drain timed out")
        .unwrap();
    writer.await.unwrap();
    first.extend(rest);
    assert_eq!(first.len(), data.len());
    assert!(first == data, "bytes differ after SIGTERM");
    let status = proxy.wait_exit(PROMPT);
    assert_eq!(status.code(), Some(0), "log: {}", proxy.log());
}

// ---- mutual TLS --------------------------------------------------------------------

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let dir = pki.dir.path();
    let ca = TestCa::new(dir, "client-ca");
    let ca_file = dir.join("ca.pem");
    std::fs::copy(&ca.path, &ca_file).unwrap();
    let upstream = Upstream::start(Up::Unix, dir).await;
    let mut args = pki.args(&upstream.spec, backend);
    args.extend([
        "--client-ca",
        ca_file.to_str().unwrap(),
        "--client-auth",
        "required",
        "--access-log",
    ]);
    let mut proxy = Proxy::start_debug(dir, &args);

    let good = client_with_identity(&[&pki.cert], ca.issue("client-1"));
    let data = pattern(100_000, 5);
    let s = connect_sni(proxy.addr, &good, "localhost").await.unwrap();
    assert_eq!(exchange(s, &data).await, data, "{backend}");
    // The access log names the client by its certificate.
    proxy.wait_for_log("client-1", 1).await;

    assert_refused(proxy.addr, &pki.client, "no client certificate").await;
    proxy.wait_for_log("client certificate rejected", 1).await;
    let stranger = TestCa::new(dir, "stranger-ca");
    let foreign = client_with_identity(&[&pki.cert], stranger.issue("client-2"));
    assert_refused(proxy.addr, &foreign, "another CA's certificate").await;
    assert!(proxy.alive(), "{backend}");

    // SIGHUP re-reads the client CA too (here with no config file: from the flags).
    replace_file(&ca_file, stranger.pem().as_bytes());
    proxy.reload_and_wait(RELOADED).await;
    let s = connect_sni(proxy.addr, &foreign, "localhost")
        .await
        .unwrap();
    assert_eq!(exchange(s, b"now trusted").await, b"now trusted");
    assert_refused(proxy.addr, &good, "a certificate of the replaced CA").await;
}

// ---- live reload ---------------------------------------------------------------------

/// The operator's certificate rotation: new files moved into place, SIGHUP, under
/// continuous load. No exchange fails, every connection opened after the reload gets the
/// new certificate, and a connection from before it keeps working. A broken certificate
/// or config file then leaves the last good certificate serving.
#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_certificate_under_load_without_failures(#[case] backend: &str) {
    let pki = Pki::new(&[]);
    let dir = pki.dir.path();
    let upstream = Upstream::start(Up::Unix, dir).await;
    let file = dir.join("proxy.toml");
    std::fs::write(
        &file,
        format!(
            "[tls]\nbackend = \"{backend}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             [[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"{}\"\n",
            pki.cert.display(),
            pki.key.display(),
            upstream.spec
        ),
    )
    .unwrap();
    let mut proxy = Proxy::start_debug(dir, &[file.to_str().unwrap()]);
    let old = cert_der(&pki.cert);
    let staged = selfsigned::generate(KeyKind::EcdsaP256, &["localhost"])
        .unwrap()
        .write(dir, "staged-cert.pem", "staged-key.pem")
        .unwrap();
    let new = cert_der(&staged.cert);
    let trust_both = client_config(&[&pki.cert, &staged.cert]);

    // Opened before any reload; used again after each.
    let mut held = connect(proxy.addr, &pki.client).await;
    round_trip(&mut held, b"before").await;

    let load = Load::start(proxy.addr, trust_both.clone(), LOAD_CLIENTS);
    let started = Instant::now();
    load.wait_for_exchanges(10).await;
    // Reloading unchanged files is harmless.
    proxy.reload_and_wait(RELOADED).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.reload_and_wait(RELOADED).await;
    // Rotate: each file is written elsewhere and renamed into place, so the proxy never
    // reads a half-written one.
    std::fs::rename(&staged.key, &pki.key).unwrap();
    std::fs::rename(&staged.cert, &pki.cert).unwrap();
    let reloaded = proxy.reload_and_wait(RELOADED).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.reload_and_wait(RELOADED).await;
    round_trip(&mut held, b"after the rotation").await;
    let after = load.exchanges();
    load.wait_for_exchanges(after + 10).await;
    tokio::time::sleep(LOAD_FOR.saturating_sub(started.elapsed())).await;
    let results = load.stop().await;

    let failed: Vec<&String> = results.iter().filter_map(|r| r.1.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{backend}: {} of {} exchanges failed during reloads, first: {:?}",
        failed.len(),
        results.len(),
        failed.first()
    );
    let before_rotation = results
        .iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|c| *c == old))
        .count();
    assert!(
        before_rotation > 0,
        "{backend}: no exchange saw the old certificate"
    );
    for (start, result) in &results {
        if *start > reloaded {
            assert!(
                result.as_ref().is_ok_and(|c| *c == new),
                "{backend}: a connection opened after the reload got the old certificate"
            );
        }
    }
    let fresh = connect_sni(proxy.addr, &trust_both, "localhost")
        .await
        .unwrap();
    assert_eq!(peer_cert(&fresh), new, "{backend}: not rotated");
    assert_eq!(
        peer_cert(&held),
        old,
        "{backend}: the held connection changed"
    );

    // A broken certificate: the reload fails and the last good one keeps serving.
    replace_file(
        &pki.cert,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
    );
    proxy.reload_and_wait(RELOAD_FAILED).await;
    let why = proxy.last_log_line(RELOAD_FAILED);
    assert!(why.contains("cert.pem"), "{backend}: {why}");
    for i in 0..3 {
        let s = connect_sni(proxy.addr, &trust_both, "localhost")
            .await
            .unwrap_or_else(|e| panic!("{backend}: connection {i} after a failed reload: {e}"));
        assert_eq!(peer_cert(&s), new, "{backend}: after a failed reload");
        assert_eq!(exchange(s, b"still serving").await, b"still serving");
    }
    // A broken config file is refused the same way.
    replace_file(&file, b"[tls\ncert = ");
    proxy.reload_and_wait(RELOAD_FAILED).await;
    let why = proxy.last_log_line(RELOAD_FAILED);
    assert!(why.contains("proxy.toml"), "{backend}: {why}");
    let s = connect_sni(proxy.addr, &trust_both, "localhost")
        .await
        .unwrap();
    assert_eq!(peer_cert(&s), new, "{backend}: after a broken config");
    assert_eq!(exchange(s, b"still serving").await, b"still serving");
    round_trip(&mut held, b"after the failed reloads").await;
    assert_eq!(exchange(held, b"bye").await, b"bye");
    assert!(proxy.alive(), "{backend}: {}", proxy.log());
}

#[test]
fn check_validates_config_and_certificates() {
    let pki = Pki::new(&[]);
    let good = pki.dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"unix:/tmp/x.sock\"\n",
            pki.cert.display(),
            pki.key.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad_key = pki.dir.path().join("bad-key.toml");
    std::fs::write(
        &bad_key,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("[tls]\n", "[tls]\nciphers = 1\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["check", bad_key.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("bad-key.toml:2") && err.contains("ciphers"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let missing_cert = pki.dir.path().join("missing.toml");
    std::fs::write(
        &missing_cert,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("cert.pem", "nope.pem"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .args(["check", missing_cert.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("nope.pem"), "{err}");
}

/// The native-tls backend refuses, at start and in `proxy check`, every option it cannot
/// honour: exit 2 and one line naming the option and the backend, never a proxy that runs
/// without it.
#[rstest]
#[case::min_version("min_version", "min_version = \"1.3\"", "")]
#[case::cipher_suites("cipher_suites", "cipher_suites = [\"TLS_AES_128_GCM_SHA256\"]", "")]
#[case::kx_groups("kx_groups", "kx_groups = [\"X25519\"]", "")]
#[case::session_resumption("session_resumption", "session_resumption = false", "")]
#[case::strict_sni("strict_sni", "strict_sni = true", "")]
#[case::sni(
    "sni",
    "[[tls.sni]]\nname = \"other.test\"\ncert = \"CERT\"\nkey = \"KEY\"",
    ""
)]
#[case::client_ca("client_ca", "", "client_ca = \"CERT\"")]
fn native_tls_refuses_what_it_cannot_do_with_exit_2(
    #[case] option: &str,
    #[case] tls_lines: &str,
    #[case] listener_lines: &str,
) {
    let pki = Pki::new(&[]);
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let config = format!(
        "[tls]\nbackend = \"native-tls\"\ncert = \"{cert}\"\nkey = \"{key}\"\n{tls_lines}\n\
         [[listener]]\nlisten = \"127.0.0.1:0\"\nupstream = \"unix:/tmp/x.sock\"\n\
         {listener_lines}\n"
    )
    .replace("CERT", &cert)
    .replace("KEY", &key);
    let file = pki.dir.path().join("native-tls.toml");
    std::fs::write(&file, config).unwrap();
    for args in [
        vec!["check", file.to_str().unwrap()],
        vec![file.to_str().unwrap()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + PROMPT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                child.kill().unwrap();
                panic!("proxy {args:?} with {option} is still running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(option), "{args:?}: {err}");
        assert!(err.contains("native-tls"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

/// `proxy --version` names the library of every backend, the lines the harness copies into
/// meta.json and the CSV: the OpenSSL the openssl backend runs and where it came from (the
/// version is the library this test links too), and the rustls and provider crates compiled
/// in, with the versions the workspace's Cargo.lock pins (native-tls's too, before its
/// OpenSSL); `-V` stays one line.
#[test]
fn version_names_the_library_of_every_backend() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("openssl backend: "))
        .unwrap_or_else(|| panic!("no openssl line: {text}"));
    assert!(line.starts_with(openssl::version::version()), "{line}");
    assert!(
        line.ends_with("(built with the workspace)") || line.ends_with("(the host's libssl)"),
        "{line}"
    );
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("the workspace has a Cargo.lock");
    let locked = |name: &str| {
        let pin = format!("name = \"{name}\"\nversion = \"");
        let at = lock
            .find(&pin)
            .unwrap_or_else(|| panic!("{name} not in Cargo.lock"))
            + pin.len();
        lock[at..].split('"').next().unwrap().to_owned()
    };
    let (rustls, aws_lc_rs, ring) = (locked("rustls"), locked("aws-lc-rs"), locked("ring"));
    let native_tls = locked("native-tls");
    for line in [
        format!("rustls-aws-lc backend: rustls {rustls} + aws-lc-rs {aws_lc_rs}"),
        format!("rustls-ring backend: rustls {rustls} + ring {ring}"),
        // The same OpenSSL line as the openssl backend's, after the crate's version.
        format!(
            "native-tls backend: native-tls {native_tls} + {}",
            text.lines()
                .find_map(|l| l.strip_prefix("openssl backend: "))
                .unwrap_or_default()
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in: {text}");
    }
    let short = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("-V")
        .output()
        .unwrap();
    let short = String::from_utf8_lossy(&short.stdout);
    assert_eq!(short.trim(), format!("proxy {}", env!("CARGO_PKG_VERSION")));
}

// ---- helpers for mutual TLS and reload -----------------------------------------------

/// What the proxy logs when a SIGHUP reload succeeded, and when it kept the old state.
const RELOADED: &str = "reload: certificates and TLS settings reloaded";
const RELOAD_FAILED: &str = "reload failed";
/// What each worker logs once SIGTERM has closed its listeners.
const DRAINING: &str = "proxy: listeners closed; draining open connections";
/// How long the reload test keeps its clients busy, and how many run at once.
const LOAD_FOR: Duration = Duration::from_secs(3);
const LOAD_CLIENTS: usize = 2;

impl Proxy {
    fn count_in_log(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Waits until `needle` appears `times` times in the log (polling, up to `PROMPT`).
    async fn wait_for_log(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + PROMPT;
        while self.count_in_log(needle) < times {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log within {PROMPT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last log line containing `needle`, or "".
    fn last_log_line(&self, needle: &str) -> String {
        let log = self.log();
        log.lines()
            .rfind(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    }

    /// Sends SIGHUP and waits for the reload's outcome line (`RELOADED` or
    /// `RELOAD_FAILED`); fails on the other one. Returns when the outcome was seen: every
    /// connection opened after that meets the new acceptors.
    async fn reload_and_wait(&mut self, expect: &str) -> Instant {
        let other = if expect == RELOADED {
            RELOAD_FAILED
        } else {
            RELOADED
        };
        let (want, unwanted) = (self.count_in_log(expect), self.count_in_log(other));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
        let deadline = Instant::now() + PROMPT;
        loop {
            assert_eq!(
                self.count_in_log(other),
                unwanted,
                "expected {expect:?}; log:\n{}",
                self.log()
            );
            if self.count_in_log(expect) > want {
                return Instant::now();
            }
            assert!(self.alive(), "proxy died on SIGHUP; log:\n{}", self.log());
            assert!(
                Instant::now() < deadline,
                "no {expect:?} within {PROMPT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Clients in a loop, each iteration a new connection and a small exchange, until stopped.
/// Each result is kept with its start time: the server's certificate, or why it failed.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    results: Arc<std::sync::Mutex<Vec<LoadResult>>>,
    tasks: tokio::task::JoinSet<()>,
}

type LoadResult = (Instant, Result<CertificateDer<'static>, String>);

impl Load {
    fn start(addr: SocketAddr, config: Arc<rustls::ClientConfig>, clients: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let results = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (stop, results, config) = (stop.clone(), results.clone(), config.clone());
            tasks.spawn(async move {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let data = pattern(64 + (i as usize % 1000), (c as u64) << 32 | i);
                    let result = tokio::time::timeout(PROMPT, try_exchange(addr, &config, &data))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {PROMPT:?}")));
                    results.lock().unwrap().push((started, result));
                    i += 1;
                }
            });
        }
        Load {
            stop,
            results,
            tasks,
        }
    }

    fn exchanges(&self) -> usize {
        self.results.lock().unwrap().len()
    }

    async fn wait_for_exchanges(&self, n: usize) {
        let deadline = Instant::now() + PROMPT;
        while self.exchanges() < n {
            assert!(Instant::now() < deadline, "load: fewer than {n} exchanges");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) -> Vec<LoadResult> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while let Some(done) = self.tasks.join_next().await {
            done.unwrap();
        }
        std::mem::take(&mut *self.results.lock().unwrap())
    }
}

/// One connection and one exchange, as a client would count it: the server's
/// certificate on success, what went wrong otherwise.
async fn try_exchange(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    data: &[u8],
) -> Result<CertificateDer<'static>, String> {
    let mut s = connect_sni(addr, config, "localhost")
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let cert = peer_cert(&s);
    s.write_all(data).await.map_err(|e| format!("write: {e}"))?;
    s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let mut got = Vec::with_capacity(data.len());
    s.read_to_end(&mut got)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if got != data {
        return Err(format!("got {} bytes back, sent {}", got.len(), data.len()));
    }
    Ok(cert)
}

/// Writes `data` and reads it back on an open connection.
async fn round_trip(s: &mut TlsStream<TcpStream>, data: &[u8]) {
    let io = async {
        s.write_all(data).await?;
        let mut got = vec![0; data.len()];
        s.read_exact(&mut got).await?;
        std::io::Result::Ok(got)
    };
    let got = tokio::time::timeout(PROMPT, io)
        .await
        .expect("round trip timed out")
        .unwrap();
    assert_eq!(got, data);
}

/// The client cannot use the connection: its handshake fails or, in TLS 1.3 where the
/// client finishes before the server checks its certificate, its first read does.
async fn assert_refused(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, what: &str) {
    let attempt = async {
        let mut s = match connect_sni(addr, config, "localhost").await {
            Err(_) => return,
            Ok(s) => s,
        };
        let _ = s.write_all(b"let me in").await;
        let _ = s.flush().await;
        let mut buf = [0u8; 64];
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("{what}: served ({n} bytes came back)"),
        }
    };
    tokio::time::timeout(PROMPT, attempt)
        .await
        .unwrap_or_else(|_| panic!("{what}: client hung"));
}

fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn cert_der(path: &Path) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).unwrap()
}

/// Replaces `path` whole: written under a temporary name, then renamed into place.
fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Like [`client_config`], presenting a client certificate when asked.
fn client_with_identity(
    trust: &[&Path],
    (chain, key): ClientIdentity,
) -> Arc<rustls::ClientConfig> {
    Arc::new(
        client_builder(trust)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}
