//! End-to-end tests of the real `proxy` binary: TLS clients in front, an in-test byte echo
//! upstream behind (Unix socket or TCP), for both TLS families.

// reason: a test helper that cannot set up its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxy::tls::selfsigned::{self, KeyKind};
use rstest::rstest;
use rustls::pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Generous bound for things that should happen "promptly": catches hangs, never flakes.
const PROMPT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
enum Up {
    Unix,
    Tcp,
}

/// A byte-echo upstream: echoes everything, and on EOF shuts its write side down.
struct Upstream {
    spec: String,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(kind: Up, dir: &Path) -> Self {
        match kind {
            Up::Unix => {
                let path = dir.join("up.sock");
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path).unwrap();
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(echo_bytes(s));
                    }
                });
                Upstream {
                    spec: format!("unix:{}", path.display()),
                    task,
                }
            }
            Up::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap();
                let task = tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(echo_bytes(s));
                    }
                });
                Upstream {
                    spec: format!("tcp:{addr}"),
                    task,
                }
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_bytes<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// The proxy process; killed on drop.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    stderr: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let stderr = dir.join(format!("proxy-{}.err", rand_id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no readiness line: {line:?}; stderr: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        Proxy {
            child,
            addr,
            stderr,
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
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

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Certificate files plus a client config that trusts them.
struct Pki {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
    client: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256).unwrap();
    let client = client_config(&[&paths.cert]);
    Pki {
        cert: paths.cert,
        key: paths.key,
        client,
        dir,
    }
}

fn client_config(trust: &[&Path]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in trust {
        for cert in CertificateDer::pem_file_iter(path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
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

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `data`, half-closes, and reads everything back until EOF (concurrently).
async fn exchange(stream: TlsStream<TcpStream>, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = tokio::io::split(stream);
    let send = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&send).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("read timed out")
        .unwrap();
    writer.await.unwrap();
    got
}

fn base_args<'a>(pki: &'a Pki, upstream: &'a str, backend: &'a str) -> Vec<&'a str> {
    vec![
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream,
        "--cert",
        pki.cert.to_str().unwrap(),
        "--key",
        pki.key.to_str().unwrap(),
        "--tls-backend",
        backend,
    ]
}

#[rstest]
#[case::rustls_unix("rustls-aws-lc", Up::Unix)]
#[case::rustls_tcp("rustls-aws-lc", Up::Tcp)]
#[case::ring_unix("rustls-ring", Up::Unix)]
#[case::openssl_unix("openssl", Up::Unix)]
#[case::openssl_tcp("openssl", Up::Tcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_round_trip_exactly_with_half_close(#[case] backend: &str, #[case] up: Up) {
    let pki = pki();
    let upstream = Upstream::start(up, pki.dir.path()).await;
    let proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &upstream.spec, backend));
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
    let pki = pki();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &upstream.spec, backend));
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
    let pki = pki();
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
    let proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &spec, backend));
    let got = exchange(connect(proxy.addr, &pki.client).await, &pattern(100_000, 7)).await;
    assert_eq!(String::from_utf8(got).unwrap(), "got 100000 bytes");
}

#[rstest]
#[case::rustls("rustls-aws-lc")]
#[case::openssl("openssl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_closes_client_promptly_and_recovers(#[case] backend: &str) {
    let pki = pki();
    let path = pki.dir.path().join("later.sock");
    let spec = format!("unix:{}", path.display());
    let mut proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &spec, backend));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_garbage_clients_are_closed_and_others_unaffected() {
    let pki = pki();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = base_args(&pki, &upstream.spec, "rustls-aws-lc");
    args.extend(["--handshake-timeout", "1s"]);
    let mut proxy = Proxy::start(pki.dir.path(), &args);

    let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
    let mut garbage = TcpStream::connect(proxy.addr).await.unwrap();
    garbage.write_all(&pattern(4096, 9)).await.unwrap();
    let mut truncated = TcpStream::connect(proxy.addr).await.unwrap();
    // A TLS handshake record header promising more than is ever sent.
    truncated
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .await
        .unwrap();

    let mut buf = [0u8; 64];
    for (name, s) in [
        ("garbage", &mut garbage),
        ("silent", &mut silent),
        ("truncated", &mut truncated),
    ] {
        let end = tokio::time::timeout(PROMPT, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue, // an alert may come first
                }
            }
        })
        .await;
        assert!(end.is_ok(), "{name} client was not closed");
    }
    let data = pattern(1000, 2);
    assert_eq!(
        exchange(connect(proxy.addr, &pki.client).await, &data).await,
        data
    );
    assert!(proxy.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let pki = pki();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut args = base_args(&pki, &upstream.spec, "rustls-aws-lc");
    args.extend(["--max-connections", "2"]);
    let proxy = Proxy::start(pki.dir.path(), &args);
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
    let pki = pki();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &upstream.spec, backend));
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
    let pki = pki();
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
    let proxy = Proxy::start(pki.dir.path(), &[file.to_str().unwrap()]);
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
    let pki = pki();
    let upstream = Upstream::start(Up::Unix, pki.dir.path()).await;
    let mut proxy = Proxy::start(pki.dir.path(), &base_args(&pki, &upstream.spec, backend));
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
    // Listeners close at once: a new connection is not served.
    tokio::time::sleep(Duration::from_millis(100)).await;
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

#[test]
fn check_validates_config_and_certificates() {
    let pki = pki();
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
