//! echo-server: the HTTP echo backend every benchmark configuration shares.
//!
//! It speaks HTTP/1.1 and HTTP/2 on every connection (hyper-util's auto builder tells them
//! apart by the HTTP/2 preface, so HTTP/2 arrives with prior knowledge: h2c, or h2 after a
//! terminator in front negotiated ALPN `h2` and relays the bytes). HTTP/2 is there for
//! clients that speak it through the proxy (`curl --http2`, `h2load`, browsers); the load
//! generator and every benchmark speak HTTP/1.1.
//!
//! Every request gets `200` with exactly the request body (Content-Length framed); a GET
//! gets an empty `200`. Bodies with a Content-Length stream straight back (a 1 GiB POST
//! needs one buffer, not 1 GiB); chunked bodies are collected up to `max_body` so the
//! answer can be Content-Length framed too. Beyond `max_body` the answer is `413`.
//!
//! It listens on TCP, on TCP with TLS (through the proxy's own TLS seam, so "backend does
//! TLS itself" and "proxy does TLS" run the very same TLS code), or on a Unix socket.

pub mod listener;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use proxy::tls::Acceptor;
use sysio::read_ahead::ReadAhead;
use tokio::io::{AsyncRead, AsyncWrite};

pub use listener::{Listener, Stream};

/// How the server treats each connection.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body echoed; larger ones get 413.
    pub max_body: u64,
    /// TLS acceptor for HTTPS mode; `None` for plain HTTP (TCP or Unix).
    pub tls: Option<Acceptor>,
    /// How long in-flight connections may take to finish after shutdown is asked for.
    pub grace: Duration,
    /// Every connection starts with a PROXY protocol header (v1 or v2, as `proxy
    /// --proxy-protocol` sends), read and discarded before HTTP or TLS.
    pub proxy_protocol: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body: DEFAULT_MAX_BODY_BYTES,
            tls: None,
            grace: DEFAULT_GRACE,
            proxy_protocol: false,
        }
    }
}

/// Serves `listener` until `shutdown` resolves, then drains connections for up to
/// `opts.grace` and returns. The listener is bound by the caller (tests pass port 0).
pub async fn run(listener: Listener, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    // No `pipeline_flush`: hyper then skips flushes while its read buffer holds bytes, and
    // a connection that ends on an error (a parse error's 400, a chunked body's 413) is
    // closed with the response still unsent.
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    let mut backoff = listener::AcceptBackoff::default();
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => { backoff.reset(); stream }
                Err(e) => { backoff.wait(&e).await; continue; }
            },
        };
        let opts = opts.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match stream {
                Stream::Tcp(tcp) => connection(tcp, &opts, &http, watcher).await,
                Stream::Unix(unix) => connection(unix, &opts, &http, watcher).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: closing remaining connections");
    }
}

/// One connection: optional PROXY header, optional TLS, then HTTP/1.1 or HTTP/2.
/// Everything before HTTP shares one deadline.
async fn connection<IO>(
    io: IO,
    opts: &ServeOptions,
    http: &Http,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !opts.proxy_protocol && opts.tls.is_none() {
        // Plain HTTP: hyper reads the socket itself, no extra copy.
        return serve(io, http, watcher, opts.max_body).await;
    }
    let mut io = ReadAhead::new(io);
    let front = async {
        if opts.proxy_protocol {
            proxy::proxy_protocol::read_header(&mut io)
                .await
                .map_err(|e| e.to_string())?;
        }
        match &opts.tls {
            Some(tls) => tls
                .accept(io)
                .await
                .map(Either::Left)
                .map_err(|e| e.to_string()),
            None => Ok(Either::Right(io)),
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, front).await {
        Ok(Ok(Either::Left(tls))) => serve(tls, http, watcher, opts.max_body).await,
        Ok(Ok(Either::Right(plain))) => serve(plain, http, watcher, opts.max_body).await,
        Ok(Err(e)) => tracing::debug!("client: {e}"),
        Err(_) => tracing::debug!("client: no TLS handshake or PROXY header in time"),
    }
}

async fn serve<IO>(
    io: IO,
    http: &Http,
    watcher: hyper_util::server::graceful::Watcher,
    max_body: u64,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), service_fn(move |req| echo(req, max_body)));
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!("client: connection ended: {e}");
    }
}

/// The HTTP/1.1-or-HTTP/2 connection builder; HTTP/2 streams run as tokio tasks.
type Http = auto::Builder<TokioExecutor>;

type EchoBody = Either<Incoming, Full<Bytes>>;

/// The whole service: echo the body back.
async fn echo(req: Request<Incoming>, max_body: u64) -> Result<Response<EchoBody>, Infallible> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return Ok(fixed(StatusCode::OK, Bytes::new()));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max_body => Ok(too_large()),
        // Known length: stream the body straight back, never holding more than one chunk.
        Some(len) => {
            let mut resp = Response::new(Either::Left(req.into_body()));
            resp.headers_mut().insert(CONTENT_LENGTH, len.into());
            Ok(resp)
        }
        // Chunked: collect (bounded) to answer with a Content-Length.
        None => {
            let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
            match Limited::new(req.into_body(), limit).collect().await {
                Ok(body) => Ok(fixed(StatusCode::OK, body.to_bytes())),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(too_large()),
                Err(_) => {
                    let mut resp = fixed(StatusCode::BAD_REQUEST, Bytes::new());
                    resp.headers_mut()
                        .insert(CONNECTION, http::HeaderValue::from_static("close"));
                    Ok(resp)
                }
            }
        }
    }
}

fn fixed(status: StatusCode, body: Bytes) -> Response<EchoBody> {
    let len = body.len();
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_LENGTH, len.into());
    resp
}

/// 413, and close: the unread body is not worth draining.
fn too_large() -> Response<EchoBody> {
    let mut resp = fixed(StatusCode::PAYLOAD_TOO_LARGE, Bytes::new());
    resp.headers_mut()
        .insert(CONNECTION, http::HeaderValue::from_static("close"));
    resp
}

/// 64 MiB: larger than any benchmark body, small enough that a chunked upload cannot
/// exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// How long shutdown waits for in-flight connections.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that has not sent a full request head by then is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
