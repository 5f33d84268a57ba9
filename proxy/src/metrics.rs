//! Metrics: the proxy's counters, gauges and histograms, the Prometheus `/metrics`
//! endpoint that serves them, and bounded per-client accounting.
//!
//! Why it exists: an operator needs to see what the proxy is doing (connections, handshake
//! failures and their reasons, bytes each way, latencies, negotiated TLS parameters) and
//! which clients use it most, without the proxy getting slower for it.
//!
//! Cost on the connection path: every update is a relaxed atomic (prometheus-client's
//! `Counter`/`Gauge`, and [`AtomicHistogram`] here, because prometheus-client's histogram
//! takes a mutex per observation). Labelled series are created once in [`Metrics::new`] and
//! kept as handles, so no update looks anything up in a `Family`. Per-client accounting
//! takes one short mutex at connection open and one at close, and none when it is off.
//!
//! Encoding uses prometheus-client's Prometheus text format (0.0.4) encoder; [`serve`]
//! answers `GET /metrics` with it over HTTP/1.1 (hyper).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

/// Why a connection ended; the `reason` label of `tlsoff_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both directions finished normally.
    Done,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The client side failed (reset, read or write error).
    ClientError,
    /// The upstream side failed (reset, read or write error).
    UpstreamError,
    /// The proxy closed it while shutting down.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in discriminant order (the index of its counter).
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Done,
        CloseReason::IdleTimeout,
        CloseReason::ClientError,
        CloseReason::UpstreamError,
        CloseReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Done => "done",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::ClientError => "client_error",
            CloseReason::UpstreamError => "upstream_error",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Why a TLS handshake failed; the `reason` label of `tlsoff_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client did not finish the handshake in time.
    Timeout,
    /// Malformed or unexpected TLS messages (including plain HTTP on a TLS port).
    Protocol,
    /// Mutual TLS: no client certificate, or one that did not verify.
    ClientCert,
    /// The client offered no protocol version or cipher suite the proxy accepts.
    NoSharedCipher,
    /// Anything else (I/O errors during the handshake, ...).
    Other,
}

impl HandshakeFailure {
    /// Every reason, in discriminant order (the index of its counter).
    pub const ALL: [HandshakeFailure; 5] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Protocol,
        HandshakeFailure::ClientCert,
        HandshakeFailure::NoSharedCipher,
        HandshakeFailure::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::ClientCert => "client_cert",
            HandshakeFailure::NoSharedCipher => "no_shared_cipher",
            HandshakeFailure::Other => "other",
        }
    }
}

/// The proxy's metrics. `Send + Sync`; shared as `Arc<Metrics>` by every worker.
pub struct Metrics {
    /// Holds every series below (by shared handle) for encoding; never locked.
    registry: Registry,
    accepted: Counter,
    active: Gauge,
    /// Indexed by `CloseReason as usize`.
    closed: [Counter; CloseReason::ALL.len()],
    refused_max_connections: Counter,
    /// Indexed by `HandshakeFailure as usize`.
    handshake_failures: [Counter; HandshakeFailure::ALL.len()],
    upstream_connect_failures: Counter,
    bytes_client_to_upstream: Counter,
    bytes_upstream_to_client: Counter,
    handshake_duration: AtomicHistogram,
    connection_duration: AtomicHistogram,
    /// Indexed like [`TLS_LABELS`].
    tls_handshakes: Vec<Counter>,
    config_reloads_ok: Counter,
    config_reloads_error: Counter,
    /// `None` when per-client accounting is off (`top_clients = 0`).
    clients: Option<Arc<ClientTable>>,
}

impl Metrics {
    /// All metrics at zero. `top_clients` is how many clients the per-client series
    /// export (the top N by bytes); 0 turns per-client accounting off entirely.
    pub fn new(top_clients: usize) -> Arc<Self> {
        let mut registry = Registry::with_prefix(PREFIX);

        let accepted = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            accepted.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "connections_active",
            "Client connections open now (from accept to close)",
            active.clone(),
        );

        let closed_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let closed = CloseReason::ALL.map(|r| child(&closed_family, [("reason", r.as_str())]));
        registry.register(
            "connections_closed",
            "Client connections closed, by reason",
            closed_family,
        );

        let refused_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let refused_max_connections = child(&refused_family, [("reason", "max_connections")]);
        registry.register(
            "connections_refused",
            "Client connections closed at accept, by reason",
            refused_family,
        );

        let failures_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let handshake_failures =
            HandshakeFailure::ALL.map(|r| child(&failures_family, [("reason", r.as_str())]));
        registry.register(
            "handshake_failures",
            "TLS handshakes that failed, by reason",
            failures_family,
        );

        let upstream_connect_failures = Counter::default();
        registry.register(
            "upstream_connect_failures",
            "Connections to the upstream that could not be opened",
            upstream_connect_failures.clone(),
        );

        let bytes_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let bytes_client_to_upstream = child(&bytes_family, [("direction", CLIENT_TO_UPSTREAM)]);
        let bytes_upstream_to_client = child(&bytes_family, [("direction", UPSTREAM_TO_CLIENT)]);
        registry.register(
            "bytes",
            "Payload bytes relayed, by direction (counted when a connection closes)",
            bytes_family,
        );

        let handshake_duration = AtomicHistogram::new(HANDSHAKE_BUCKETS_SECONDS);
        registry.register_with_unit(
            "handshake_duration",
            "Time from accept to a completed TLS handshake",
            Unit::Seconds,
            handshake_duration.clone(),
        );
        let connection_duration = AtomicHistogram::new(CONNECTION_BUCKETS_SECONDS);
        registry.register_with_unit(
            "connection_duration",
            "Time from accept to close of relayed connections",
            Unit::Seconds,
            connection_duration.clone(),
        );

        let tls_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let tls_handshakes = TLS_LABELS
            .iter()
            .map(|(v, c)| child(&tls_family, [("version", v), ("cipher", c)]))
            .collect();
        registry.register(
            "tls_handshakes",
            "Completed TLS handshakes, by negotiated version and cipher suite",
            tls_family,
        );

        let reloads_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let config_reloads_ok = child(&reloads_family, [("result", "ok")]);
        let config_reloads_error = child(&reloads_family, [("result", "error")]);
        registry.register(
            "config_reloads",
            "Configuration and certificate reloads, by result",
            reloads_family,
        );

        let clients = (top_clients > 0).then(|| {
            let table = Arc::new(ClientTable::new(top_clients));
            registry.register_collector(Box::new(ClientCollector(Arc::clone(&table))));
            table
        });

        Arc::new(Metrics {
            registry,
            accepted,
            active,
            closed,
            refused_max_connections,
            handshake_failures,
            upstream_connect_failures,
            bytes_client_to_upstream,
            bytes_upstream_to_client,
            handshake_duration,
            connection_duration,
            tls_handshakes,
            config_reloads_ok,
            config_reloads_error,
            clients,
        })
    }

    /// A client connection was accepted. Keep the guard for the connection's life and
    /// hand it to [`Metrics::closed`]; dropping it instead still counts the connection as
    /// no longer active (without bytes or a close reason).
    pub fn accepted(self: &Arc<Self>, client: IpAddr) -> ConnGuard {
        self.accepted.inc();
        self.active.inc();
        // IPv4 clients on an IPv6 socket arrive as ::ffff:a.b.c.d; one client, one series.
        let client = client.to_canonical();
        let tracked = self
            .clients
            .as_ref()
            .map(|table| (client, table.open(client)));
        ConnGuard {
            metrics: Arc::clone(self),
            tracked,
            open: true,
        }
    }

    /// An accepted connection was closed at once because `max_connections` were already
    /// open. Call it instead of [`Metrics::accepted`]: a refused connection is not counted
    /// as accepted.
    pub fn refused_max_connections(&self) {
        self.refused_max_connections.inc();
    }

    /// A TLS handshake failed.
    pub fn handshake_failed(&self, why: HandshakeFailure) {
        self.handshake_failures[why as usize].inc();
    }

    /// A TLS handshake completed `took` after accept, with the negotiated `version` (`TLSv1.2`,
    /// `TLSv1.3`) and IANA `cipher` name as `tls::HandshakeInfo` reports them. Values
    /// outside the known set count as `other`, so label cardinality stays fixed.
    /// `None`: the backend does not report it (native-tls), counted as `other`.
    pub fn handshake_done(&self, took: Duration, version: Option<&str>, cipher: Option<&str>) {
        self.handshake_duration.observe(took);
        let (version, cipher) = (version.unwrap_or(OTHER), cipher.unwrap_or(OTHER));
        self.tls_handshakes[tls_label_index(version, cipher)].inc();
    }

    /// The upstream connection could not be opened.
    pub fn upstream_connect_failed(&self) {
        self.upstream_connect_failures.inc();
    }

    /// A connection ended after `duration`, having relayed the given bytes each way.
    pub fn closed(
        &self,
        mut guard: ConnGuard,
        reason: CloseReason,
        duration: Duration,
        client_to_upstream: u64,
        upstream_to_client: u64,
    ) {
        debug_assert!(
            std::ptr::eq(self, Arc::as_ptr(&guard.metrics)),
            "a ConnGuard closed on another Metrics"
        );
        self.closed[reason as usize].inc();
        self.bytes_client_to_upstream.inc_by(client_to_upstream);
        self.bytes_upstream_to_client.inc_by(upstream_to_client);
        self.connection_duration.observe(duration);
        guard.release(Some((client_to_upstream, upstream_to_client)));
    }

    /// A configuration/certificate reload finished (`ok`) or was rejected.
    pub fn config_reload(&self, ok: bool) {
        if ok {
            self.config_reloads_ok.inc();
        } else {
            self.config_reloads_error.inc();
        }
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(RENDER_CAPACITY_BYTES);
        // Invariant: writing into a String never fails, and neither prometheus-client's
        // text encoder nor the encoders here report errors of their own; the writer's
        // errors are the only ones they pass on.
        prometheus_text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }

    /// How many clients per-client accounting tracks now (at most 4 x `top_clients`);
    /// 0 when it is off.
    pub fn tracked_clients(&self) -> usize {
        self.clients.as_ref().map_or(0, |table| table.lock().len())
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("accepted", &self.accepted.get())
            .field("active", &self.active.get())
            .field("top_clients", &self.clients.as_ref().map(|t| t.top))
            .finish_non_exhaustive()
    }
}

/// One accepted connection's share of the metrics: `connections_active` (and the
/// client's active count) stay raised while it lives. Give it to [`Metrics::closed`].
#[must_use = "dropping the guard counts the connection as closed at once"]
pub struct ConnGuard {
    metrics: Arc<Metrics>,
    /// The client and its table entry's id, when per-client accounting is on.
    tracked: Option<(IpAddr, u64)>,
    /// Still counted as active.
    open: bool,
}

impl ConnGuard {
    /// Undoes the accept-time counts once; `bytes` are added to the client at close.
    fn release(&mut self, bytes: Option<(u64, u64)>) {
        if !std::mem::replace(&mut self.open, false) {
            return;
        }
        self.metrics.active.dec();
        if let (Some(table), Some((client, id))) = (&self.metrics.clients, self.tracked) {
            table.close(client, id, bytes.unwrap_or((0, 0)));
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.release(None);
    }
}

impl fmt::Debug for ConnGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnGuard")
            .field("client", &self.tracked.map(|(ip, _)| ip))
            .field("open", &self.open)
            .finish_non_exhaustive()
    }
}

/// Serves `GET /metrics` (and `HEAD`) on `listener` over HTTP/1.1 until `shutdown`
/// resolves; any other path gets 404, another method on `/metrics` 405. The listener is
/// bound by the caller (tests pass port 0). On shutdown it stops accepting, lets open
/// requests finish for up to [`SHUTDOWN_GRACE`], and returns.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("metrics: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let metrics = Arc::clone(&metrics);
        let service = service_fn(move |req| {
            let response = respond(&req, &metrics);
            async move { Ok::<_, Infallible>(response) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("metrics: scrape connection ended: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("metrics: grace period over, closing open scrape connections");
    }
}

/// The whole HTTP service.
fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    if req.uri().path() != METRICS_PATH {
        return text(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let mut resp = Response::new(Full::new(Bytes::from(metrics.render())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(prometheus_text::CONTENT_TYPE),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Creates the series for `labels` once and returns a handle sharing its atomic, so
/// updates never touch the family's lock.
fn child<const N: usize>(
    family: &Family<[(&'static str, &'static str); N], Counter>,
    labels: [(&'static str, &'static str); N],
) -> Counter {
    family.get_or_create_owned(&labels)
}

/// Index into [`TLS_LABELS`]: the exact pair, else the version with `other`, else
/// `other`/`other`.
fn tls_label_index(version: &str, cipher: &str) -> usize {
    let mut version_known = None;
    for (i, (v, c)) in TLS_LABELS.iter().enumerate() {
        if v.eq_ignore_ascii_case(version) {
            if c.eq_ignore_ascii_case(cipher) {
                return i;
            }
            if *c == OTHER {
                version_known = Some(i);
            }
        }
    }
    version_known.unwrap_or(TLS_LABELS.len() - 1)
}

/// A fixed-bucket histogram updated with relaxed atomics only (prometheus-client's own
/// `Histogram` locks a mutex per observation). A scrape may see a bucket count and the
/// sum from slightly different instants; `count` always equals the `+Inf` bucket.
#[derive(Debug, Clone)]
struct AtomicHistogram {
    inner: Arc<HistogramCells>,
}

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// One per bound (non-cumulative), plus the overflow bucket last.
    counts: Box<[AtomicU64]>,
    /// Sum of observations in seconds, as `f64` bits.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram {
            inner: Arc::new(HistogramCells {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_bits: AtomicU64::new(0.0f64.to_bits()),
            }),
        }
    }

    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let cells = &self.inner;
        // First bound >= secs: Prometheus buckets are "less than or equal".
        let bucket = cells.bounds.partition_point(|&b| b < secs);
        if let Some(count) = cells.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        // The closure always returns Some, so this never fails.
        let _ = cells
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + secs).to_bits())
            });
    }
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let cells = &self.inner;
        let counts: Vec<u64> = cells
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = cells.bounds.iter().copied().zip(counts.clone()).collect();
        let count = counts.iter().sum();
        let sum = f64::from_bits(cells.sum_bits.load(Ordering::Relaxed));
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Per-client accounting with bounded memory: a Space-Saving heavy-hitters table.
///
/// At most `4 x top` clients are tracked. A new client (at accept, or at close when its
/// entry has been evicted meanwhile) takes a free slot, or else replaces the entry with
/// the smallest estimated byte count (ties: fewer active connections), and inherits that
/// count as its error bound. The estimate (observed bytes + inherited error) only orders
/// evictions; what is exported is the exact bytes observed since the client was last
/// admitted, so an exported value never overstates a client.
///
/// What follows, for a reader of the numbers:
/// - Any client whose bytes exceed 1/(4 x top) of all relayed bytes is always tracked
///   (the Space-Saving guarantee), so a scan from a million addresses with a few bytes
///   each cannot push out the real heavy clients; it can push out small ones.
/// - Bytes are added when a connection closes, so a long-lived connection's bytes show up
///   at its end, and a client that was evicted and readmitted restarts from zero (a
///   counter reset, which `rate()` handles).
/// - A client's active count covers the connections opened since its entry was created:
///   connections that outlive an eviction are not counted again, and can never drive the
///   count below zero (each connection remembers the entry id it was counted in).
/// - Only the top `top` clients by exported bytes (ties: active connections, then
///   address) are exported, and only those with any bytes or an open connection; a client
///   can drop out of the export and come back.
#[derive(Debug)]
struct ClientTable {
    /// How many clients the export shows.
    top: usize,
    /// How many clients are tracked at most.
    cap: usize,
    map: Mutex<ClientMap>,
}

#[derive(Debug, Default)]
struct ClientMap {
    entries: HashMap<IpAddr, ClientEntry>,
    /// Id for the next admitted entry; tells a readmitted client's entry from its old one.
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct ClientEntry {
    id: u64,
    active: u64,
    client_to_upstream: u64,
    upstream_to_client: u64,
    /// Space-Saving error: the estimate of the entry this one replaced.
    inherited: u64,
}

impl ClientEntry {
    fn bytes(&self) -> u64 {
        self.client_to_upstream
            .saturating_add(self.upstream_to_client)
    }

    fn estimate(&self) -> u64 {
        self.bytes().saturating_add(self.inherited)
    }
}

/// One exported client.
#[derive(Debug, Clone, Copy)]
struct ClientRow {
    client: IpAddr,
    client_to_upstream: u64,
    upstream_to_client: u64,
    active: u64,
}

impl ClientTable {
    fn new(top: usize) -> Self {
        ClientTable {
            top,
            cap: top.saturating_mul(TRACKED_PER_EXPORTED_CLIENT),
            map: Mutex::default(),
        }
    }

    /// A connection from `client` opened; returns the id of the entry it is counted in.
    fn open(&self, client: IpAddr) -> u64 {
        let mut map = self.lock();
        let entry = map.entry_or_admit(client, self.cap);
        entry.active += 1;
        entry.id
    }

    /// A connection counted in entry `id` closed, having relayed `bytes` (client to
    /// upstream, upstream to client).
    fn close(&self, client: IpAddr, id: u64, (to_upstream, to_client): (u64, u64)) {
        let mut map = self.lock();
        let entry = match map.entries.get_mut(&client) {
            Some(entry) => entry,
            // Evicted meanwhile and nothing to add: no reason to displace anyone.
            None if to_upstream == 0 && to_client == 0 => return,
            None => map.entry_or_admit(client, self.cap),
        };
        if entry.id == id {
            entry.active = entry.active.saturating_sub(1);
        }
        entry.client_to_upstream = entry.client_to_upstream.saturating_add(to_upstream);
        entry.upstream_to_client = entry.upstream_to_client.saturating_add(to_client);
    }

    /// The exported clients, biggest first.
    fn top(&self) -> Vec<ClientRow> {
        let mut rows: Vec<ClientRow> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.bytes() > 0 || e.active > 0)
            .map(|(client, e)| ClientRow {
                client: *client,
                client_to_upstream: e.client_to_upstream,
                upstream_to_client: e.upstream_to_client,
                active: e.active,
            })
            .collect();
        rows.sort_unstable_by(|a, b| {
            let bytes = |r: &ClientRow| r.client_to_upstream.saturating_add(r.upstream_to_client);
            bytes(b)
                .cmp(&bytes(a))
                .then(b.active.cmp(&a.active))
                .then(a.client.cmp(&b.client))
        });
        rows.truncate(self.top);
        rows
    }

    fn lock(&self) -> MutexGuard<'_, ClientMap> {
        // The critical sections only do arithmetic and map updates that cannot leave the
        // map inconsistent, so a panic elsewhere while holding it poisons nothing real.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientMap {
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The client's entry, admitting it (and evicting the least significant entry when
    /// the table is full) if it is not tracked.
    fn entry_or_admit(&mut self, client: IpAddr, cap: usize) -> &mut ClientEntry {
        if !self.entries.contains_key(&client) {
            let mut inherited = 0;
            if self.entries.len() >= cap {
                // O(cap) scan, only when a new client meets a full table: a few hundred
                // entries, cheaper than the handshake that follows every accept.
                let victim = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| (e.estimate(), e.active))
                    .map(|(ip, e)| (*ip, e.estimate()));
                if let Some((ip, estimate)) = victim {
                    self.entries.remove(&ip);
                    inherited = estimate;
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            self.entries.insert(
                client,
                ClientEntry {
                    id,
                    active: 0,
                    client_to_upstream: 0,
                    upstream_to_client: 0,
                    inherited,
                },
            );
        }
        self.entries
            .get_mut(&client)
            .expect("invariant: the entry was present or has just been inserted")
    }
}

/// Encodes the per-client series at scrape time from a snapshot of the top clients.
#[derive(Debug)]
struct ClientCollector(Arc<ClientTable>);

impl Collector for ClientCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let rows = self.0.top();
        let names: Vec<String> = rows.iter().map(|r| r.client.to_string()).collect();
        {
            let mut bytes = encoder.encode_descriptor(
                "client_bytes",
                "Payload bytes relayed per client, top clients only (counted at close).",
                None,
                MetricType::Counter,
            )?;
            for (row, name) in rows.iter().zip(&names) {
                for (direction, value) in [
                    (CLIENT_TO_UPSTREAM, row.client_to_upstream),
                    (UPSTREAM_TO_CLIENT, row.upstream_to_client),
                ] {
                    let labels = [("client", name.as_str()), ("direction", direction)];
                    ConstCounter::new(value).encode(bytes.encode_family(&labels)?)?;
                }
            }
        }
        let mut active = encoder.encode_descriptor(
            "client_connections_active",
            "Client connections open now per client, top clients only.",
            None,
            MetricType::Gauge,
        )?;
        for (row, name) in rows.iter().zip(&names) {
            let value = i64::try_from(row.active).unwrap_or(i64::MAX);
            ConstGauge::new(value).encode(active.encode_family(&[("client", name.as_str())])?)?;
        }
        Ok(())
    }
}

/// Prefix of every metric name.
const PREFIX: &str = "tlsoff";
/// The only path served.
const METRICS_PATH: &str = "/metrics";
const CLIENT_TO_UPSTREAM: &str = "client_to_upstream";
const UPSTREAM_TO_CLIENT: &str = "upstream_to_client";
const OTHER: &str = "other";

/// The `{version, cipher}` series of `tlsoff_tls_handshakes_total`, all created up front:
/// the IANA names the TLS seam reports for the suites rustls and OpenSSL negotiate by
/// default, `other` for the rest. The catch-all `other`/`other` must stay last.
const TLS_LABELS: &[(&str, &str)] = &[
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"),
    ("TLSv1.3", OTHER),
    ("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    ("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("TLSv1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("TLSv1.2", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("TLSv1.2", OTHER),
    (OTHER, OTHER),
];

/// Handshake duration buckets in seconds: 100 µs (a resumed handshake on loopback) to
/// 10 s (the order of the handshake timeout), about 2.5x apart.
const HANDSHAKE_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Connection duration buckets in seconds: 1 ms (one request on loopback) to 1 h (long
/// polling, streaming), the steps an operator reads off a dashboard.
const CONNECTION_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];
/// Clients tracked per exported client: room for the next contenders, so a heavy client
/// that pauses is not displaced by the first few newcomers.
const TRACKED_PER_EXPORTED_CLIENT: usize = 4;
/// Initial buffer for a scrape: the fixed series render to about 6 KiB (each exported
/// client adds about 250 bytes, for which the String grows).
const RENDER_CAPACITY_BYTES: usize = 8 * 1024;
/// A scraper that has not sent a full request head by then is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors): long enough not to spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for scrapes in flight; a scrape takes milliseconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// One sample line of the text format: `name{k="v",...} value`.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// Parses every non-comment line; panics on a line that is not a sample, so a
    /// malformed exposition fails the test that renders it.
    fn parse(text: &str) -> Vec<Sample> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or_else(|_| panic!("value in {line:?}")),
                };
                let (name, labels) = match series.split_once('{') {
                    None => (series, BTreeMap::new()),
                    Some((name, rest)) => {
                        let body = rest.strip_suffix('}').expect("closing brace");
                        let labels = body
                            .split("\",")
                            .filter(|kv| !kv.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once("=\"").expect("k=\"v\"");
                                (k.to_string(), v.trim_end_matches('"').to_string())
                            })
                            .collect();
                        (name, labels)
                    }
                };
                Sample {
                    name: name.to_string(),
                    labels,
                    value,
                }
            })
            .collect()
    }

    /// The value of the series `name` whose labels are exactly `labels`.
    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// A histogram's cumulative bucket count at upper bound `le`.
    fn bucket(samples: &[Sample], name: &str, le: f64) -> Option<f64> {
        let name = format!("{name}_bucket");
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.get("le").and_then(|v| match v.as_str() {
                        "+Inf" => Some(f64::INFINITY),
                        v => v.parse::<f64>().ok(),
                    }) == Some(le)
            })
            .map(|s| s.value)
    }

    fn client_names(samples: &[Sample]) -> Vec<String> {
        let mut names: Vec<String> = samples
            .iter()
            .filter(|s| s.name == "tlsoff_client_bytes_total")
            .filter_map(|s| s.labels.get("client").cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn known_calls_render_expected_values() {
        let m = Metrics::new(10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        // Same client as `a`, seen through an IPv6 socket.
        let a_mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let g1 = m.accepted(a);
        let g2 = m.accepted(a_mapped);
        let g3 = m.accepted(b);
        m.handshake_failed(HandshakeFailure::Protocol);
        m.refused_max_connections();
        m.handshake_done(
            Duration::from_micros(800),
            Some("TLSv1.3"),
            Some("TLS_AES_128_GCM_SHA256"),
        );
        m.handshake_done(
            Duration::from_millis(3),
            Some("TLSv1.2"),
            Some("TLS_RSA_WITH_NULL_MD5"),
        );
        // A backend that reports neither (native-tls) counts as other/other.
        m.handshake_done(Duration::from_secs(20), None, None);
        m.upstream_connect_failed();
        m.closed(
            g1,
            CloseReason::Done,
            Duration::from_millis(1500),
            100,
            1000,
        );
        m.closed(
            g3,
            CloseReason::ClientError,
            Duration::from_millis(20),
            7,
            0,
        );
        m.config_reload(true);
        m.config_reload(false);
        m.config_reload(false);

        let s = parse(&m.render());
        let get = |name: &str, labels: &[(&str, &str)]| {
            value(&s, name, labels).unwrap_or_else(|| panic!("missing {name} {labels:?}"))
        };
        assert_eq!(get("tlsoff_connections_accepted_total", &[]), 3.0);
        assert_eq!(get("tlsoff_connections_active", &[]), 1.0);
        let closed = "tlsoff_connections_closed_total";
        assert_eq!(get(closed, &[("reason", "done")]), 1.0);
        assert_eq!(get(closed, &[("reason", "client_error")]), 1.0);
        for r in ["idle_timeout", "upstream_error", "shutdown"] {
            assert_eq!(get(closed, &[("reason", r)]), 0.0, "{r}");
        }
        assert_eq!(
            get(
                "tlsoff_connections_refused_total",
                &[("reason", "max_connections")]
            ),
            1.0
        );
        let failures = "tlsoff_handshake_failures_total";
        assert_eq!(get(failures, &[("reason", "protocol")]), 1.0);
        assert_eq!(get(failures, &[("reason", "timeout")]), 0.0);
        assert_eq!(get("tlsoff_upstream_connect_failures_total", &[]), 1.0);
        let bytes = "tlsoff_bytes_total";
        assert_eq!(get(bytes, &[("direction", "client_to_upstream")]), 107.0);
        assert_eq!(get(bytes, &[("direction", "upstream_to_client")]), 1000.0);

        let hs = "tlsoff_handshake_duration_seconds";
        assert_eq!(get(&format!("{hs}_count"), &[]), 3.0);
        assert_eq!(bucket(&s, hs, 0.0001), Some(0.0));
        assert_eq!(bucket(&s, hs, 0.001), Some(1.0));
        assert_eq!(bucket(&s, hs, 0.005), Some(2.0));
        assert_eq!(bucket(&s, hs, 10.0), Some(2.0));
        assert_eq!(bucket(&s, hs, f64::INFINITY), Some(3.0));
        let conn = "tlsoff_connection_duration_seconds";
        assert_eq!(get(&format!("{conn}_count"), &[]), 2.0);
        assert!((get(&format!("{conn}_sum"), &[]) - 1.52).abs() < 1e-9);
        assert_eq!(bucket(&s, conn, 0.01), Some(0.0));
        assert_eq!(bucket(&s, conn, 0.05), Some(1.0));
        assert_eq!(bucket(&s, conn, 5.0), Some(2.0));
        assert_eq!(bucket(&s, conn, 3600.0), Some(2.0));

        let tls = "tlsoff_tls_handshakes_total";
        let pair = |v, c| get(tls, &[("version", v), ("cipher", c)]);
        assert_eq!(pair("TLSv1.3", "TLS_AES_128_GCM_SHA256"), 1.0);
        assert_eq!(pair("TLSv1.3", "TLS_AES_256_GCM_SHA384"), 0.0);
        assert_eq!(pair("TLSv1.2", "other"), 1.0);
        assert_eq!(pair("other", "other"), 1.0);
        assert_eq!(s.iter().filter(|x| x.name == tls).count(), TLS_LABELS.len());

        let reloads = "tlsoff_config_reloads_total";
        assert_eq!(get(reloads, &[("result", "ok")]), 1.0);
        assert_eq!(get(reloads, &[("result", "error")]), 2.0);

        let cb = "tlsoff_client_bytes_total";
        let client = |c, d| get(cb, &[("client", c), ("direction", d)]);
        assert_eq!(client("10.0.0.1", "client_to_upstream"), 100.0);
        assert_eq!(client("10.0.0.1", "upstream_to_client"), 1000.0);
        assert_eq!(client("10.0.0.2", "client_to_upstream"), 7.0);
        assert_eq!(client("10.0.0.2", "upstream_to_client"), 0.0);
        let ca = "tlsoff_client_connections_active";
        assert_eq!(get(ca, &[("client", "10.0.0.1")]), 1.0);
        assert_eq!(get(ca, &[("client", "10.0.0.2")]), 0.0);
        assert_eq!(client_names(&s), ["10.0.0.1", "10.0.0.2"]);

        drop(g2);
        let s = parse(&m.render());
        assert_eq!(value(&s, "tlsoff_connections_active", &[]), Some(0.0));
        assert_eq!(value(&s, ca, &[("client", "10.0.0.1")]), Some(0.0));
        // A dropped guard counts no close reason.
        assert_eq!(value(&s, closed, &[("reason", "done")]), Some(1.0));
    }

    #[test]
    fn label_values_are_the_documented_ones() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let closed: Vec<_> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            closed,
            [
                "done",
                "idle_timeout",
                "client_error",
                "upstream_error",
                "shutdown"
            ]
        );
        let failed: Vec<_> = HandshakeFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            failed,
            [
                "timeout",
                "protocol",
                "client_cert",
                "no_shared_cipher",
                "other"
            ]
        );
        assert_eq!(TLS_LABELS.last(), Some(&(OTHER, OTHER)));
        assert_eq!(
            tls_label_index("tlsv1.3", "tls_aes_256_gcm_sha384"),
            1,
            "case does not matter"
        );
        assert_eq!(tls_label_index("SSLv3", "whatever"), TLS_LABELS.len() - 1);
    }

    #[test]
    fn per_client_accounting_off_tracks_nothing() {
        let m = Metrics::new(0);
        let g = m.accepted(v4(1));
        m.closed(g, CloseReason::Done, Duration::from_millis(1), 5, 6);
        assert_eq!(m.tracked_clients(), 0);
        let text = m.render();
        assert!(!text.contains("tlsoff_client_"), "{text}");
        assert_eq!(
            value(&parse(&text), "tlsoff_connections_accepted_total", &[]),
            Some(1.0)
        );
    }

    #[test]
    fn a_scan_from_many_addresses_keeps_cardinality_bounded_and_heavy_clients_exported() {
        const TOP: usize = 10;
        const SCANNERS: u32 = 100_000;
        let m = Metrics::new(TOP);
        let cap = TOP * TRACKED_PER_EXPORTED_CLIENT;
        let heavy: [IpAddr; 3] = [
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ];
        let mut heavy_conns = [0u64; 3];
        for i in 0..SCANNERS {
            let g = m.accepted(v4(0x0a00_0000 + i));
            m.closed(g, CloseReason::Done, Duration::from_millis(1), 10, 20);
            if i % 1000 == 0 {
                let k = (i / 1000) as usize % heavy.len();
                let g = m.accepted(heavy[k]);
                m.closed(
                    g,
                    CloseReason::Done,
                    Duration::from_secs(1),
                    100_000,
                    1_000_000,
                );
                heavy_conns[k] += 1;
            }
            assert!(
                m.tracked_clients() <= cap,
                "tracked {} > {cap}",
                m.tracked_clients()
            );
        }
        assert_eq!(m.tracked_clients(), cap);

        let s = parse(&m.render());
        let names = client_names(&s);
        assert!(names.len() <= TOP, "{} client series", names.len());
        let active_series = s
            .iter()
            .filter(|x| x.name == "tlsoff_client_connections_active")
            .count();
        assert!(active_series <= TOP);
        for (ip, conns) in heavy.iter().zip(heavy_conns) {
            let ip = ip.to_string();
            let labels = [("client", ip.as_str()), ("direction", "upstream_to_client")];
            assert_eq!(
                value(&s, "tlsoff_client_bytes_total", &labels),
                Some(conns as f64 * 1_000_000.0),
                "heavy client {ip} exported with its exact bytes"
            );
        }
        // Global counters are exact whatever the per-client table did.
        assert_eq!(
            value(&s, "tlsoff_connections_accepted_total", &[]),
            Some(f64::from(SCANNERS) + 100.0)
        );
    }

    #[test]
    fn evicted_clients_with_open_connections_never_go_negative() {
        const TOP: usize = 2;
        let m = Metrics::new(TOP);
        let cap = TOP * TRACKED_PER_EXPORTED_CLIENT;
        // Twice as many clients holding a connection as the table can track.
        let guards: Vec<ConnGuard> = (0..(cap as u32 * 2)).map(|i| m.accepted(v4(i))).collect();
        assert_eq!(m.tracked_clients(), cap);
        for (i, g) in guards.into_iter().enumerate() {
            if i % 2 == 0 {
                m.closed(g, CloseReason::Shutdown, Duration::ZERO, 1, 1);
            } else {
                drop(g);
            }
        }
        assert!(m.tracked_clients() <= cap);
        let s = parse(&m.render());
        assert_eq!(value(&s, "tlsoff_connections_active", &[]), Some(0.0));
        for x in s
            .iter()
            .filter(|x| x.name == "tlsoff_client_connections_active")
        {
            assert_eq!(x.value, 0.0, "{x:?}");
        }
        assert!(client_names(&s).len() <= TOP);
    }

    /// One HTTP/1.1 request on a fresh connection; the whole response as text.
    async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test]
    async fn serve_answers_metrics_404s_elsewhere_and_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new(5);
        let g = metrics.accepted("127.0.0.1".parse().unwrap());
        metrics.closed(g, CloseReason::Done, Duration::from_millis(2), 3, 4);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::clone(&metrics), async {
            let _ = stopped.await;
        }));

        let ok = http(addr, "GET", "/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(
            ok.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains("tlsoff_connections_accepted_total 1"), "{ok}");
        assert!(
            ok.contains("tlsoff_client_bytes_total{client=\"127.0.0.1\""),
            "{ok}"
        );

        let missing = http(addr, "GET", "/other").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = http(addr, "POST", "/metrics").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");

        stop.send(()).unwrap();
        // A loose bound: shutdown takes milliseconds; this only catches a hang.
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "the listener is closed"
        );
    }
}
