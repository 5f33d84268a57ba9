//! One connector per transport (TCP, TLS over TCP, Unix socket). The engine is generic
//! over [`Connector`], so each transport's hot path is compiled for its own stream type
//! with no dispatch per read or write.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sysio::read_ahead::ReadAhead;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use crate::tls::{self, Negotiated};
use crate::url::{Scheme, Url};

/// Opens connections to the target.
pub trait Connector {
    type Stream: AsyncRead + AsyncWrite + Unpin + 'static;

    /// Opens one connection; a TLS connection comes back with its handshake done and what
    /// it negotiated.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<(Self::Stream, Option<Negotiated>), ConnectError>>;

    /// Closes a connection politely: TLS sends close_notify first, as wrk's OpenSSL does.
    fn close(stream: Self::Stream) -> impl Future<Output = ()>;
}

/// Why a connection could not be opened. Counted as a connect error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: io::Error },
    #[error("TLS handshake with {target} failed: {source}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
    Handshake {
        target: String,
        source: io::Error,
        hint: Option<&'static str>,
    },
}

impl ConnectError {
    /// Worth another try: the connect was refused or reset, or the handshake cut short, as
    /// when a server's listen backlog overflows; not a TLS handshake that the server or the
    /// certificate check refused, which fails the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::Connect { .. } => true,
            ConnectError::Handshake { source, .. } => source
                .get_ref()
                .is_none_or(|inner| !inner.is::<rustls::Error>()),
        }
    }
}

/// Where connections go, resolved once before the run.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// The target's name could not be resolved to a reachable address.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {detail}")]
pub struct ResolveError {
    pub host: String,
    pub detail: String,
}

/// Resolves the URL's host. A name with several addresses (`localhost`: ::1 and
/// 127.0.0.1) is settled by trying each with a plain TCP connect, so every connection
/// then goes to the one address that answers.
pub fn resolve(url: &Url, timeout: Duration) -> Result<Endpoint, ResolveError> {
    if url.scheme == Scheme::Unix {
        let path = url.socket.clone().ok_or_else(|| ResolveError {
            host: url.host.clone(),
            detail: "no socket path".into(),
        })?;
        return Ok(Endpoint::Unix(path));
    }
    let fail = |detail: String| ResolveError {
        host: url.host.clone(),
        detail,
    };
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .collect();
    match addrs.as_slice() {
        [] => Err(fail("no addresses".into())),
        [one] => Ok(Endpoint::Tcp(*one)),
        several => Ok(Endpoint::Tcp(
            several
                .iter()
                .find(|a| std::net::TcpStream::connect_timeout(a, timeout).is_ok())
                .copied()
                .unwrap_or(several[0]),
        )),
    }
}

/// Plain TCP, Nagle off (a request is one write; it must not wait for an ACK).
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addr: SocketAddr,
}

impl TcpConnector {
    pub fn new(addr: SocketAddr) -> Self {
        TcpConnector { addr }
    }
}

impl Connector for TcpConnector {
    type Stream = TcpStream;

    async fn connect(&self) -> Result<(TcpStream, Option<Negotiated>), ConnectError> {
        Ok((tcp_connect(self.addr).await?, None))
    }

    async fn close(stream: TcpStream) {
        drop(stream);
    }
}

/// TLS over TCP with one thread's client configuration (and so its session cache).
#[derive(Clone)]
pub struct TlsConnector {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("addr", &self.addr)
            .field("name", &self.name)
            .finish()
    }
}

impl TlsConnector {
    pub fn new(addr: SocketAddr, config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        TlsConnector {
            addr,
            connector: tokio_rustls::TlsConnector::from(config),
            name,
        }
    }
}

impl Connector for TlsConnector {
    /// rustls reads the socket 4 KiB at a time; `ReadAhead` (the proxy's, from sysio) turns a 10 KB
    /// response's three `recv` calls into one.
    type Stream = tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>;

    async fn connect(&self) -> Result<(Self::Stream, Option<Negotiated>), ConnectError> {
        let tcp = ReadAhead::new(tcp_connect(self.addr).await?);
        let stream = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|source| ConnectError::Handshake {
                target: self.addr.to_string(),
                hint: tls::hint(&source),
                source,
            })?;
        let negotiated = Negotiated::of(stream.get_ref().1);
        Ok((stream, Some(negotiated)))
    }

    async fn close(mut stream: Self::Stream) {
        // close_notify, then FIN; the peer's answer is not waited for.
        let _ = stream.shutdown().await;
    }
}

/// Plain HTTP over a Unix stream socket.
#[derive(Debug, Clone)]
pub struct UnixConnector {
    path: PathBuf,
}

impl UnixConnector {
    pub fn new(path: PathBuf) -> Self {
        UnixConnector { path }
    }
}

impl Connector for UnixConnector {
    type Stream = UnixStream;

    async fn connect(&self) -> Result<(UnixStream, Option<Negotiated>), ConnectError> {
        let stream =
            UnixStream::connect(&self.path)
                .await
                .map_err(|source| ConnectError::Connect {
                    target: format!("unix:{}", self.path.display()),
                    source,
                })?;
        Ok((stream, None))
    }

    async fn close(stream: UnixStream) {
        drop(stream);
    }
}

async fn tcp_connect(addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let fail = |source| ConnectError::Connect {
        target: addr.to_string(),
        source,
    };
    let stream = TcpStream::connect(addr).await.map_err(fail)?;
    stream.set_nodelay(true).map_err(fail)?;
    Ok(stream)
}
