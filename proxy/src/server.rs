//! Listeners, workers and the per-connection path: accept, TLS handshake (on a plain
//! listener, none: [`front`]), upstream connect, relay; plus the connection limit and
//! graceful shutdown.
//!
//! Two worker models (chosen by [`RuntimeModel`], measured in the README):
//! - per-core: one current-thread runtime per worker thread, each with its own
//!   SO_REUSEPORT socket for every listener, so a connection lives its whole life on the
//!   thread that accepted it;
//! - multi-thread: one tokio work-stealing runtime sharing one socket per listener.

mod front;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sysio::read_ahead::ReadAhead;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{watch, Notify};

use crate::config::{Config, ListenerConfig, ProxyProtocol, RuntimeModel, Timeouts, Upstream};
use crate::metrics::{CloseReason, ConnGuard, HandshakeFailure, Metrics};
use crate::proxy_protocol::{self, Addresses, ClientCert, TlsFacts};
use crate::relay::{relay, Outcome, RelayError, RelayStats, Side};
use crate::sys::{AcceptBackoff, LogLimit};
use crate::tls::{Acceptor, HandshakeErrorKind, HandshakeInfo, LoadedCerts, TlsError};
use front::{Front, Handshake, Plain};

/// State every worker and connection shares.
#[derive(Debug)]
pub struct Shared {
    pub timeouts: Timeouts,
    /// One log event per connection at close.
    pub access_log: bool,
    pub max_connections: usize,
    /// Connections open now (the `max_connections` gate; metrics keep their own gauge).
    active: AtomicUsize,
    pub metrics: Arc<Metrics>,
    /// Woken when the last connection closes (shutdown waits on it).
    all_closed: Notify,
}

impl Shared {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Shared {
            timeouts: config.timeouts,
            access_log: config.access_log,
            max_connections: config.max_connections.get(),
            active: AtomicUsize::new(0),
            metrics: Metrics::new(config.top_clients),
            all_closed: Notify::new(),
        })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Takes a connection slot, or `None` at the limit.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let active = &self.active;
        let mut now = active.load(Ordering::Relaxed);
        loop {
            if now >= self.max_connections {
                return None;
            }
            match active.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(self.clone())),
                Err(seen) => now = seen,
            }
        }
    }

    /// Waits until no connection is open, or `grace` passes. True when all closed.
    pub async fn wait_closed(&self, grace: Duration) -> bool {
        let all_closed = async {
            loop {
                let notified = self.all_closed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.active.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(grace, all_closed).await.is_ok()
    }
}

/// One open connection's place under `max_connections`; released on drop.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// One configured listener: what every connection accepted on it needs.
#[derive(Debug)]
pub struct Listener {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    pub upstream: Upstream,
    /// Swapped whole on reload; each handshake loads it once. `None`: a plain listener
    /// (`tls = false`), which relays the client's bytes as they come.
    pub acceptor: Option<ArcSwap<Acceptor>>,
    pub config: ListenerConfig,
    pub shared: Arc<Shared>,
}

/// A listener with its sockets: one per worker (per-core model), or one.
#[derive(Debug)]
pub struct Bound {
    pub listener: Arc<Listener>,
    sockets: Vec<std::net::TcpListener>,
}

/// Builds every TLS listener's acceptor (`None` for a plain one), reading each certificate
/// file once, and none at all when every listener is plain. All or nothing: a reload with
/// one bad listener keeps every old acceptor.
pub fn build_acceptors(config: &Config) -> Result<Vec<Option<Acceptor>>, TlsError> {
    if !config.uses_tls() {
        return Ok(config.listeners.iter().map(|_| None).collect());
    }
    let set = config.tls.cert_set().ok_or(TlsError::NoCertificate)?;
    let certs = LoadedCerts::load(&set)?;
    config
        .listeners
        .iter()
        .map(|l| {
            l.tls
                .then(|| Acceptor::from_loaded(&config.tls.settings(l), &certs))
                .transpose()
        })
        .collect()
}

/// Binds every listener of `config` for `workers` workers. Port 0 is resolved by the first
/// socket, and the others join that port.
pub fn bind(
    config: &Config,
    acceptors: Vec<Option<Acceptor>>,
    shared: &Arc<Shared>,
    workers: usize,
) -> io::Result<Vec<Bound>> {
    let per_listener = match config.runtime {
        RuntimeModel::PerCore => workers,
        RuntimeModel::MultiThread => 1,
    };
    config
        .listeners
        .iter()
        .zip(acceptors)
        .map(|(l, acceptor)| {
            let first = reuseport_socket(l.listen)?;
            let addr = first.local_addr()?;
            let mut sockets = vec![first];
            for _ in 1..per_listener {
                sockets.push(reuseport_socket(addr)?);
            }
            Ok(Bound {
                listener: Arc::new(Listener {
                    addr,
                    upstream: l.upstream.clone(),
                    acceptor: acceptor.map(ArcSwap::from_pointee),
                    config: l.clone(),
                    shared: shared.clone(),
                }),
                sockets,
            })
        })
        .collect()
}

/// Re-reads certificates and TLS settings from `config` into the running TLS listeners
/// (matched by configured address). Established connections keep their session; new
/// handshakes use the new acceptor. On any error nothing changes.
pub fn reload(listeners: &[Arc<Listener>], config: &Config) -> Result<(), TlsError> {
    let acceptors = build_acceptors(config)?;
    for l in listeners {
        let found = config
            .listeners
            .iter()
            .position(|c| c.listen == l.config.listen);
        let Some(i) = found else {
            tracing::warn!(
                listen = %l.config.listen,
                "reload: listener no longer in the config; adding or removing listeners needs a restart"
            );
            continue;
        };
        match (&l.acceptor, &acceptors[i]) {
            // The previous acceptor is freed here unless a connection still holds it (then
            // by that connection; its memory goes back at the releases main.rs schedules 1 s
            // and 10 s after the reload).
            (Some(running), Some(new)) => drop(running.swap(Arc::new(new.clone()))),
            // Plain before and after: nothing to reload.
            (None, None) => {}
            _ => tracing::warn!(
                listen = %l.config.listen,
                "reload: turning TLS on or off for a listener needs a restart; it keeps its old setting"
            ),
        }
    }
    drop(acceptors);
    crate::memory::release_reload_memory();
    Ok(())
}

fn reuseport_socket(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("binding {addr}: {e}"));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(ctx)?;
    socket.set_reuse_address(true).map_err(ctx)?;
    socket.set_reuse_port(true).map_err(ctx)?;
    socket.set_nodelay(true).map_err(ctx)?;
    socket.set_nonblocking(true).map_err(ctx)?;
    socket.bind(&addr.into()).map_err(ctx)?;
    socket.listen(LISTEN_BACKLOG).map_err(ctx)?;
    Ok(socket.into())
}

/// Serves until `shutdown` resolves, then stops accepting, lets open connections finish
/// for up to the grace period and returns (closing whatever is left). Blocks the caller,
/// driving `shutdown` on `control`: the caller's runtime, where its signal handlers and
/// side services (the metrics endpoint) live.
pub fn run(
    bound: Vec<Bound>,
    shared: Arc<Shared>,
    model: RuntimeModel,
    workers: usize,
    grace: Duration,
    control: &tokio::runtime::Runtime,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    match model {
        RuntimeModel::PerCore => {
            let cpus = sysio::host::affinity_cpus();
            // Pin worker i to CPU i when there is one CPU per worker, as HAProxy's cpu-map.
            let pin = cpus.len() == workers && workers > 1;
            let mut threads = Vec::with_capacity(workers);
            let mut per_worker: Vec<Vec<(std::net::TcpListener, Arc<Listener>)>> =
                (0..workers).map(|_| Vec::new()).collect();
            for b in bound {
                for (i, socket) in b.sockets.into_iter().enumerate() {
                    per_worker[i % workers].push((socket, b.listener.clone()));
                }
            }
            for (i, listeners) in per_worker.into_iter().enumerate() {
                let shared = shared.clone();
                let stop = stop_rx.clone();
                let cpu = pin.then(|| cpus[i]);
                let thread = std::thread::Builder::new()
                    .name(format!("proxy-worker-{i}"))
                    .spawn(move || -> io::Result<()> {
                        if let Some(cpu) = cpu {
                            pin_current_thread(cpu);
                        }
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        rt.block_on(worker(listeners, shared, stop, grace))
                    })?;
                threads.push(thread);
            }
            control.block_on(shutdown);
            let _ = stop_tx.send(true);
            for t in threads {
                match t.join() {
                    Ok(result) => result?,
                    Err(_) => return Err(io::Error::other("a worker thread panicked")),
                }
            }
        }
        RuntimeModel::MultiThread => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("proxy-worker")
                // The housekeeping task runs on one thread at a time; every other worker
                // releases its freed memory when it parks.
                .on_thread_park(crate::memory::release_freed_memory_if_due)
                .enable_all()
                .build()?;
            let listeners = bound
                .into_iter()
                .flat_map(|b| {
                    let listener = b.listener;
                    b.sockets.into_iter().map(move |s| (s, listener.clone()))
                })
                .collect();
            let work = rt.spawn(worker(listeners, shared, stop_rx, grace));
            control.block_on(shutdown);
            let _ = stop_tx.send(true);
            let result = rt.block_on(work);
            rt.shutdown_timeout(Duration::from_millis(100));
            result.map_err(|_| io::Error::other("the accept loop panicked"))??;
        }
    }
    Ok(())
}

/// One worker: accept on its listeners until told to stop, then drain.
async fn worker(
    listeners: Vec<(std::net::TcpListener, Arc<Listener>)>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<()> {
    // Freed memory goes back to the OS even when nothing else wakes this worker.
    let housekeeping = tokio::spawn(async {
        let mut every = tokio::time::interval(crate::memory::RELEASE_MEMORY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            crate::memory::release_freed_memory();
        }
    });
    let mut loops = tokio::task::JoinSet::new();
    for (socket, listener) in listeners {
        let socket = TcpListener::from_std(socket)?;
        loops.spawn(accept_loop(socket, listener, stop.clone()));
    }
    while loops.join_next().await.is_some() {}
    // Listeners are closed now: no new connection is accepted during the grace period.
    tracing::info!(
        open = shared.active(),
        "proxy: listeners closed; draining open connections"
    );
    if !shared.wait_closed(grace).await {
        let left = shared.active();
        tracing::warn!(
            open = left,
            "proxy: grace period over; closing remaining connections"
        );
    }
    housekeeping.abort();
    Ok(())
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Listener>, mut stop: watch::Receiver<bool>) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            // The flag only ever turns true; a dropped sender also means stop.
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => { backoff.reset(); conn }
                Err(e) => { backoff.wait(&e).await; continue; }
            },
        };
        let Some(slot) = ctx.shared.admit() else {
            // Accepted and closed at once: the client learns now instead of waiting in
            // the backlog, and the refusal is counted.
            ctx.shared.metrics.refused_max_connections();
            static LIMIT: LogLimit = LogLimit::new();
            if let Some(more) = LIMIT.allow(LOG_EVERY) {
                tracing::warn!(%peer, max = ctx.shared.max_connections, suppressed = more,
                    "proxy: max_connections reached; closing new connection");
            }
            drop(tcp);
            continue;
        };
        match &ctx.acceptor {
            Some(acceptor) => {
                let front = Handshake(acceptor.load_full());
                tokio::spawn(handle(tcp, peer, ctx.clone(), slot, front))
            }
            None => tokio::spawn(handle(tcp, peer, ctx.clone(), slot, Plain)),
        };
    }
}

/// One client connection, start to end: [`serve`] does the work and says how the
/// connection ended; this records that end, once, in the metrics and the access log.
async fn handle<F: Front>(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Listener>,
    slot: Slot,
    front: F,
) {
    let shared = &ctx.shared;
    let started = Instant::now();
    let ended = serve(tcp, peer, &ctx, front, started).await;
    match ended {
        Ended::NotEstablished { why, error } => {
            shared.metrics.handshake_failed(why);
            // A refused client certificate is worth an operator's attention; garbage and
            // scanners are routine on the internet and stay at debug.
            if why == HandshakeFailure::ClientCert {
                static LIMIT: LogLimit = LogLimit::new();
                if let Some(more) = LIMIT.allow(LOG_EVERY) {
                    tracing::warn!(%peer, side = "client", error = %error, suppressed = more,
                        "client certificate rejected");
                }
            } else {
                tracing::debug!(%peer, side = "client", error = %error, "handshake failed");
            }
        }
        Ended::Closed {
            guard,
            log,
            info,
            close,
        } => {
            shared.metrics.closed(
                guard,
                close.reason,
                started.elapsed(),
                close.stats.client_to_upstream,
                close.stats.upstream_to_client,
            );
            log.finish(info.as_ref(), close.log_reason, close.side, close.stats);
        }
    }
    drop(slot);
}

/// How a connection ended: the one value [`handle`] records.
// reason: one per connection, returned once and taken apart at once; boxing the larger
// variant would add an allocation per connection to save a few bytes of stack.
#[allow(clippy::large_enum_variant)]
enum Ended {
    /// The PROXY header or the TLS handshake failed or timed out; nothing was accepted.
    NotEstablished {
        why: HandshakeFailure,
        /// What failed, for the log.
        error: String,
    },
    /// Accepted (counted open by `guard`), then closed.
    Closed {
        guard: ConnGuard,
        log: AccessLog,
        /// What the TLS handshake settled on; `None` on a plain listener.
        info: Option<HandshakeInfo>,
        close: Close,
    },
}

/// Why an accepted connection closed, which side ended it and the bytes it moved.
struct Close {
    reason: CloseReason,
    /// The access log's `close` field: `reason`'s name, or a finer one where there is one.
    log_reason: &'static str,
    side: Option<Side>,
    stats: RelayStats,
}

impl Close {
    /// The upstream failed before any byte moved.
    fn upstream(log_reason: &'static str) -> Self {
        Close {
            reason: CloseReason::UpstreamError,
            log_reason,
            side: Some(Side::Upstream),
            stats: RelayStats::default(),
        }
    }
}

/// The work of one connection: PROXY header, handshake (whatever `front` does), upstream
/// connect, relay. Logs what only it knows (why the upstream failed); records nothing.
async fn serve<F: Front>(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &Listener,
    front: F,
    started: Instant,
) -> Ended {
    let shared = &ctx.shared;
    let timeouts = &shared.timeouts;
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(ctx.addr);
    let mut io = ReadAhead::new(tcp);

    // PROXY header from a load balancer, then the TLS handshake (if any): one deadline.
    // Boxed, so that the handshake's state is freed when it ends instead of sizing the
    // connection's task for its whole life.
    let opening = Box::pin(async {
        let addrs = if ctx.config.accept_proxy {
            proxy_protocol::read_header(&mut io).await?.addrs
        } else {
            Addresses::Inet {
                src: peer,
                dst: local,
            }
        };
        let (client, info) = front.open(io).await?;
        Ok::<_, FrontError>((addrs, client, info))
    });
    let (addrs, mut stream, info) = match tokio::time::timeout(timeouts.handshake, opening).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            return Ended::NotEstablished {
                why: classify_handshake_error(&e),
                error: e.to_string(),
            }
        }
        Err(_) => {
            return Ended::NotEstablished {
                why: HandshakeFailure::Timeout,
                error: format!("no handshake within {:?}", timeouts.handshake),
            }
        }
    };
    // From here on the client is whoever the PROXY header said, if there was one.
    let client = match &addrs {
        Addresses::Inet { src, .. } => *src,
        _ => peer,
    };
    let guard = shared.metrics.accepted(client.ip());
    if let Some(info) = &info {
        shared.metrics.handshake_done(
            started.elapsed(),
            info.version.as_deref(),
            info.cipher_suite.as_deref(),
        );
    }
    let log = AccessLog::new(client, started, shared.access_log);
    let close = 'close: {
        let connect = tokio::time::timeout(timeouts.upstream_connect, connect(&ctx.upstream));
        let mut upstream = match connect.await {
            Ok(Ok(up)) => up,
            failed => {
                shared.metrics.upstream_connect_failed();
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("connect timed out after {:?}", timeouts.upstream_connect),
                };
                static LIMIT: LogLimit = LogLimit::new();
                if let Some(more) = LIMIT.allow(LOG_EVERY) {
                    tracing::warn!(client = %client, side = "upstream", upstream = %ctx.upstream,
                    error = %reason, suppressed = more, "upstream connect failed; closing client");
                }
                // (TLS: close_notify +) FIN, so the client learns at once, not by a timeout.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
                break 'close Close::upstream("upstream_connect_failed");
            }
        };
        if let Some(version) = ctx.config.proxy_protocol {
            let header = proxy_header(version, &addrs, info.as_ref());
            let sent = tokio::time::timeout(timeouts.idle, upstream.write_all(&header)).await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::warn!(client = %client, side = "upstream", "sending the PROXY header failed");
                break 'close Close::upstream(CloseReason::UpstreamError.as_str());
            }
        }
        let result = match &mut upstream {
            UpstreamStream::Unix(up) => relay(&mut stream, up, timeouts.idle).await,
            UpstreamStream::Tcp(up) => relay(&mut stream, up, timeouts.idle).await,
        };
        let (reason, side, stats) = match result {
            Ok((Outcome::Done, stats)) => (CloseReason::Done, stats.first_close, stats),
            Ok((Outcome::IdleTimeout, stats)) => {
                tracing::debug!(client = %client, timeout = ?timeouts.idle, "idle timeout; closing");
                (CloseReason::IdleTimeout, None, stats)
            }
            Err(RelayError {
                side,
                op,
                source,
                stats,
            }) => {
                // Resets by either peer are routine; log them at debug, the rest as warnings.
                let routine = matches!(
                    source.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                );
                if side == Side::Upstream && !routine {
                    tracing::warn!(client = %client, side = "upstream", op, error = %source, "relay failed");
                } else {
                    tracing::debug!(client = %client, side = side.name(), op, error = %source, "relay failed");
                }
                let reason = match side {
                    Side::Client => CloseReason::ClientError,
                    Side::Upstream => CloseReason::UpstreamError,
                };
                (reason, Some(side), stats)
            }
        };
        Close {
            reason,
            log_reason: reason.as_str(),
            side,
            stats,
        }
    };
    Ended::Closed {
        guard,
        log,
        info,
        close,
    }
}

/// What can go wrong before a connection is established.
#[derive(Debug, thiserror::Error)]
enum FrontError {
    #[error(transparent)]
    ProxyHeader(#[from] proxy_protocol::ReadHeaderError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The header sent upstream: the client's addresses and, in v2, the TLS facts (none from
/// a plain listener).
fn proxy_header(
    version: ProxyProtocol,
    addrs: &Addresses,
    info: Option<&HandshakeInfo>,
) -> Vec<u8> {
    let tls = info.map(|info| TlsFacts {
        // Not reported (native-tls): empty, which the encoder leaves out of the header.
        version: info.version.clone().unwrap_or_default(),
        cipher: info.cipher_suite.clone().unwrap_or_default(),
        sni: info.sni.clone(),
        alpn: info.alpn.as_ref().map(|a| a.as_bytes().to_vec()),
        client_cert: info.client_cert.as_ref().map(|c| ClientCert {
            verified: c.verified,
            subject_cn: c.subject_cn.clone(),
        }),
    });
    let version = match version {
        ProxyProtocol::V1 => proxy_protocol::Version::V1,
        ProxyProtocol::V2 => proxy_protocol::Version::V2,
    };
    let mut out = Vec::with_capacity(PROXY_HEADER_BYTES);
    proxy_protocol::encode(version, addrs, tls.as_ref(), &mut out);
    out
}

/// Sorts a failed connection start into a metrics label, by the kind the TLS backend
/// decided.
fn classify_handshake_error(e: &FrontError) -> HandshakeFailure {
    match e {
        FrontError::ProxyHeader(_) => HandshakeFailure::Protocol,
        FrontError::Tls(TlsError::ClientCertificate(_)) => HandshakeFailure::ClientCert,
        FrontError::Tls(TlsError::Handshake { kind, .. }) => match kind {
            HandshakeErrorKind::NoSharedParameters => HandshakeFailure::NoSharedCipher,
            HandshakeErrorKind::NotTls
            | HandshakeErrorKind::BadCertificate
            | HandshakeErrorKind::Protocol => HandshakeFailure::Protocol,
            HandshakeErrorKind::PeerClosed | HandshakeErrorKind::Other => HandshakeFailure::Other,
        },
        // Loading and building errors; `accept` returns none of these.
        FrontError::Tls(_) => HandshakeFailure::Other,
    }
}

/// The access-log event of one connection; does nothing when the access log is off.
struct AccessLog {
    on: bool,
    client: SocketAddr,
    started: Instant,
    handshake: Duration,
}

impl AccessLog {
    fn new(client: SocketAddr, started: Instant, on: bool) -> Self {
        AccessLog {
            on,
            client,
            started,
            handshake: started.elapsed(),
        }
    }

    /// `tls` is `None` on a plain listener: its TLS fields read "-" (`resumed` is left out);
    /// so do the fields a backend does not report (native-tls).
    fn finish(
        self,
        tls: Option<&HandshakeInfo>,
        reason: &str,
        side: Option<Side>,
        stats: RelayStats,
    ) {
        if !self.on {
            return;
        }
        tracing::info!(
            target: "access",
            client = %self.client,
            sni = tls.and_then(|t| t.sni.as_deref()).unwrap_or("-"),
            alpn = tls.and_then(|t| t.alpn.as_deref()).unwrap_or("-"),
            tls_version = %tls.and_then(|t| t.version.as_deref()).unwrap_or("-"),
            cipher = %tls.and_then(|t| t.cipher_suite.as_deref()).unwrap_or("-"),
            resumed = tls.and_then(|t| t.resumed),
            client_cn = tls.and_then(|t| t.client_cert.as_ref()).and_then(|c| c.subject_cn.as_deref()).unwrap_or("-"),
            handshake_us = self.handshake.as_micros() as u64,
            bytes_in = stats.client_to_upstream,
            bytes_out = stats.upstream_to_client,
            duration_ms = self.started.elapsed().as_millis() as u64,
            close = reason,
            side = side.map_or("-", Side::name),
            "connection closed"
        );
    }
}

enum UpstreamStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl UpstreamStream {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            UpstreamStream::Unix(s) => s.write_all(bytes).await,
            UpstreamStream::Tcp(s) => s.write_all(bytes).await,
        }
    }
}

async fn connect(upstream: &Upstream) -> io::Result<UpstreamStream> {
    match upstream {
        Upstream::Unix(path) => Ok(UpstreamStream::Unix(UnixStream::connect(path).await?)),
        Upstream::Tcp(addr) => {
            let s = TcpStream::connect(addr.as_str()).await?;
            s.set_nodelay(true)?;
            Ok(UpstreamStream::Tcp(s))
        }
    }
}

fn pin_current_thread(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set) {
            tracing::warn!(cpu, error = %e, "cannot pin worker thread");
        }
    }
}

/// Kernel accept queue per socket: bursts of thousands of connects are normal in benchmarks.
const LISTEN_BACKLOG: i32 = 4096;
/// How long to try a polite close (close_notify) before dropping the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Room for a PROXY v2 header with our TLVs: addresses, SNI, ALPN, version, cipher, CN.
const PROXY_HEADER_BYTES: usize = 256;
/// At most one line per this period for each recurring per-connection warning.
const LOG_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric labels the README and dashboards know, from the kinds the backends decide.
    #[test]
    fn handshake_failure_labels_come_from_the_kind() {
        let tls = |kind| {
            FrontError::Tls(TlsError::Handshake {
                kind,
                detail: String::new(),
            })
        };
        let cases = [
            (
                tls(HandshakeErrorKind::NoSharedParameters),
                "no_shared_cipher",
            ),
            (tls(HandshakeErrorKind::NotTls), "protocol"),
            (tls(HandshakeErrorKind::BadCertificate), "protocol"),
            (tls(HandshakeErrorKind::Protocol), "protocol"),
            (tls(HandshakeErrorKind::PeerClosed), "other"),
            (tls(HandshakeErrorKind::Other), "other"),
            (
                FrontError::Tls(TlsError::ClientCertificate(String::new())),
                "client_cert",
            ),
            (
                FrontError::ProxyHeader(proxy_protocol::ReadHeaderError::Closed),
                "protocol",
            ),
        ];
        for (error, label) in cases {
            assert_eq!(
                classify_handshake_error(&error).as_str(),
                label,
                "{error:?}"
            );
        }
    }
}
