//! The suite's own TLS client (tokio-rustls, trusting the suite's CA), for what loadgen
//! cannot do: time one fresh connection plus an echoed request (a probe), send requests
//! slowly or partly, read which certificate the proxy serves, and watch a connection until
//! the other end closes it, telling "closed" from "hung".

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A TLS connection to the proxy.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// Connects to loopback addresses, verifying the address as the certificate's name.
#[derive(Clone)]
pub struct ProbeClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for ProbeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeClient").finish_non_exhaustive()
    }
}

impl ProbeClient {
    /// A client that trusts the CA certificates in `ca_pem` and nothing else.
    pub fn new(ca_pem: &[u8]) -> anyhow::Result<ProbeClient> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(cert.context("reading the suite's CA certificate")?)
                .context("adding the suite's CA certificate")?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("building the TLS client")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ProbeClient {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// TCP connect and TLS handshake, within `limit`.
    pub async fn connect(&self, addr: SocketAddr, limit: Duration) -> io::Result<Tls> {
        let handshake = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::IpAddress(addr.ip().into());
            self.connector.connect(name, tcp).await
        };
        within(limit, handshake).await
    }

    /// The DER of the leaf certificate the proxy serves now.
    pub async fn served_cert(&self, addr: SocketAddr) -> io::Result<Vec<u8>> {
        let tls = self.connect(addr, PROBE_LIMIT).await?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.as_ref().to_vec())
            .ok_or_else(|| io::Error::other("the proxy sent no certificate"))
    }

    /// One fresh connection and one echoed request; `Ok(elapsed)` or why it failed.
    pub async fn probe(&self, addr: SocketAddr, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let attempt = async {
            let mut tls = self.connect(addr, limit).await?;
            echo(&mut tls, PROBE_BODY).await?;
            let _ = tls.shutdown().await;
            Ok::<_, io::Error>(())
        };
        match within(limit, attempt).await {
            Ok(()) => Ok(started.elapsed()),
            Err(e) => Err(format!("{e} after {:.0?}", started.elapsed())),
        }
    }

    /// Probes every [`PROBE_EVERY`] until one succeeds or `limit` passes; returns how long
    /// it took from the call (the time to recover) or the last failure.
    pub async fn first_success(
        &self,
        addr: SocketAddr,
        limit: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let mut last = String::from("no attempt");
        while started.elapsed() < limit {
            let left = limit.saturating_sub(started.elapsed());
            match self.probe(addr, left.min(PROBE_LIMIT)).await {
                Ok(_) => return Ok(started.elapsed()),
                Err(e) => last = e,
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        Err(last)
    }
}

/// `limit` on any I/O future, as a `TimedOut` error.
pub async fn within<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        )),
    }
}

/// The head of a POST whose body is `len` bytes.
pub fn request_head(len: usize) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

/// Sends `body` and checks that the echo-server sends exactly it back with 200.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, body: &[u8]) -> io::Result<()> {
    let mut request = request_head(body.len());
    request.extend_from_slice(body);
    s.write_all(&request).await?;
    s.flush().await?;
    let (status, got) = read_response(s).await?;
    if status != 200 || got != body {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "status {status}, {} body bytes back for {} sent{}",
                got.len(),
                body.len(),
                if got.len() == body.len() {
                    " (different bytes)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(())
}

/// Reads one HTTP/1.1 response framed by Content-Length: (status, body).
pub async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too long",
            ));
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes of response head", buf.len()),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let (status, len) = parse_head(&buf[..head_end])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed response head"))?;
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed after {} of {len} body bytes", body.len()),
            ));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok((status, body))
}

/// Status code and Content-Length (0 when absent) of a response head.
pub fn parse_head(head: &[u8]) -> Option<(u16, usize)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut len = 0;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    Some((status, len))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How a watched connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// An orderly end: FIN on TCP, close_notify on TLS.
    Clean,
    /// Reset, or (TLS) FIN without close_notify: closed, if not politely.
    Abrupt,
    /// Still open when the watch ended: the other end hung on to it.
    Open,
}

impl Closed {
    pub fn is_closed(self) -> bool {
        self != Closed::Open
    }
}

/// Reads and drops whatever arrives until the other end closes or `limit` passes.
/// Returns how it ended and when (since the call).
pub async fn wait_close<S: AsyncRead + Unpin>(s: &mut S, limit: Duration) -> (Closed, Duration) {
    let started = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    let watch = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Closed::Clean,
                Ok(_) => continue,
                Err(_) => return Closed::Abrupt,
            }
        }
    };
    let how = tokio::time::timeout(limit, watch)
        .await
        .unwrap_or(Closed::Open);
    (how, started.elapsed())
}

/// Sets SO_LINGER 0 so that dropping `tcp` sends RST instead of FIN.
pub fn reset_on_drop(tcp: &TcpStream) {
    let _ = tcp.set_zero_linger();
}

/// What a probe sends.
const PROBE_BODY: &[u8] = b"fault-suite probe";
/// One probe's limit: a healthy proxy answers in milliseconds.
pub const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// Pause between failed probes.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Longest response head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_case_insensitively() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nX: y\r\n\r\n";
        assert_eq!(parse_head(head), Some((200, 12)));
        assert_eq!(
            parse_head(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Some((400, 0))
        );
        assert_eq!(parse_head(b"garbage\r\n\r\n"), None);
        assert_eq!(
            request_head(3),
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\n"
        );
    }

    #[test]
    fn responses_are_read_across_chunks() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut a, mut b) = tokio::io::duplex(8);
            let writer = tokio::spawn(async move {
                a.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    .await
                    .unwrap();
                a
            });
            assert_eq!(
                read_response(&mut b).await.unwrap(),
                (200, b"hello".to_vec())
            );
            let a = writer.await.unwrap();
            drop(a);
            let (how, _) = wait_close(&mut b, Duration::from_secs(5)).await;
            assert_eq!(how, Closed::Clean);
        });
    }
}
