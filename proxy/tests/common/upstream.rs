//! Upstreams the integration tests put behind the proxy, and the client-side exchanges
//! they answer: a byte echo on a Unix socket or TCP ([`Upstream`], [`exchange`]), and a
//! Unix-socket upstream that records each connection's first bytes, the PROXY header and
//! the client's "ping", before it answers "pong" ([`recording_upstream`], [`ping`]).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

/// Generous bound for things that should happen "promptly": catches hangs, never flakes.
const PROMPT: Duration = Duration::from_secs(10);

/// The upstream's transport.
#[derive(Debug, Clone, Copy)]
pub enum Up {
    Unix,
    Tcp,
}

/// A byte-echo upstream: echoes everything, and on EOF shuts its write side down.
pub struct Upstream {
    /// The proxy's `--upstream` value for it.
    pub spec: String,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(kind: Up, dir: &Path) -> Self {
        match kind {
            Up::Unix => {
                let path = dir.join("up.sock");
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path).expect("binding the upstream's socket");
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
                let l = TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("binding the upstream's port");
                let addr = l.local_addr().expect("a bound address");
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

/// Echoes `s` back to itself until EOF, then shuts its write side down.
pub async fn echo_bytes<S: AsyncRead + AsyncWrite + Unpin>(s: S) {
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

/// `len` pseudo-random bytes from `seed` (xorshift): a payload whose every byte matters.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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
pub async fn exchange<S>(stream: S, data: &[u8]) -> Vec<u8>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let send = data.to_vec();
    let writer = tokio::spawn(async move {
        w.write_all(&send).await.expect("sending to the proxy");
        w.shutdown().await.expect("half-closing towards the proxy");
        w
    });
    let mut got = Vec::with_capacity(data.len());
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("read timed out")
        .expect("reading from the proxy");
    writer.await.expect("the writer task");
    got
}

/// An upstream on `path` that records the first bytes of each connection (the PROXY header
/// and whatever follows, up to the client's "ping"), then answers "pong".
pub async fn recording_upstream(path: &Path) -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let l = UnixListener::bind(path).expect("binding the upstream's socket");
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                // Read until the header is complete and the client's "ping" arrived.
                while !got.ends_with(b"ping") {
                    let n = s.read(&mut buf).await.expect("reading from the proxy");
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let _ = tx.send(got).await;
                let _ = s.write_all(b"pong").await;
            });
        }
    });
    rx
}

/// Sends "ping" and expects "pong" back promptly.
pub async fn ping<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"ping").await.expect("sending ping");
    let mut got = [0u8; 4];
    tokio::time::timeout(PROMPT, s.read_exact(&mut got))
        .await
        .expect("no pong")
        .expect("reading pong");
    assert_eq!(&got, b"pong");
}
