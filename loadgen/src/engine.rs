//! The engine: one OS thread per `--threads`, each running its own current-thread tokio
//! runtime over its share of the connections. Nothing on the hot path crosses threads:
//! each thread owns its connections, its session cache and its statistics; the request
//! bytes are shared read-only; results are merged once, after the run.
//!
//! A run has three phases, the same clock for every thread:
//! 1. every thread opens its connections (TCP connect and TLS handshake) and reports how
//!    many it got; none at all is a fatal error with the first reason;
//! 2. warm-up (`--warmup`), excluded from every statistic;
//! 3. the measured period (`--duration`): responses that complete in it are counted.
//!
//! Closed loop: a connection starts its next request as soon as the previous response is
//! complete; latency runs from that start. Open loop (`--rate R`): request `i` of the run
//! (over all connections, round-robin) is intended to start at `start + i / R`; latency
//! runs from the intended time, so a stalled server that delays later requests is charged
//! for the wait (coordinated-omission correction, as in wrk2). The uncorrected latency
//! (from the actual start) and the number of requests started late are kept as well.
//!
//! Idle runs (`--idle`) measure what an open connection costs the server instead. Phase 1
//! then opens the connections a few hundred at a time (so the server's listen backlog does
//! not overflow), retrying transient failures, and sends each its one request: that
//! handshake and request are what is counted. The caller hears when every connection is
//! open; the connections are then held silent for `--duration`, the ones the server closes
//! are counted, and the rest are closed cleanly (TLS close_notify) at the end.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::task::LocalSet;

use crate::connect::{
    self, ConnectError, Connector, Endpoint, TcpConnector, TlsConnector, UnixConnector,
};
use crate::cpu::CpuTimes;
use crate::http::{Expect, Response, ResponseError, ResponseReader};
use crate::settings::Settings;
use crate::stats::{ErrorKind, Stats, LATE_AFTER};
use crate::url::Scheme;

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub stats: Stats,
    pub threads: usize,
    pub connections_opened: usize,
    /// How long opening the connections took (idle runs: with their one request each).
    pub open_time: Duration,
    /// The measured period (idle runs: the hold).
    pub measured: Duration,
    pub warmup: Duration,
    /// Stopped early (Ctrl-C): `measured` is the part that ran.
    pub interrupted: bool,
    /// Wall-clock time at which the measured period began (after the warm-up).
    pub measured_from: SystemTime,
    /// This process's CPU time in the measured period.
    pub cpu: CpuTimes,
    /// CPUs the threads could use: min(threads, CPUs in the affinity mask).
    pub cpus: usize,
}

impl RunResult {
    /// Why the run as a whole failed (no request succeeded), for exit code 1.
    pub fn failure(&self) -> Option<String> {
        if self.stats.ok > 0 {
            return None;
        }
        let s = &self.stats;
        Some(if self.interrupted && self.measured.is_zero() {
            "interrupted before the measured period began".to_string()
        } else if s.requests == 0 && s.errors.total == 0 {
            format!(
                "no response completed in the {:.3}s measured period",
                self.measured.as_secs_f64()
            )
        } else {
            let first = s.first_error.as_deref().unwrap_or("see the error counts");
            format!(
                "every request failed ({} errors: {} connect, {} read, {} write, {} timeout, {} status, {} body mismatch); first: {first}",
                s.errors.total,
                s.errors.connect,
                s.errors.read,
                s.errors.write,
                s.errors.timeout,
                s.errors.status,
                s.errors.body_mismatch,
            )
        })
    }
}

/// A run that could not take place or was cut short. Exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Resolve(#[from] connect::ResolveError),
    /// Not one connection could be opened; the first reason.
    #[error("{0}")]
    Unreachable(String),
    #[error("cannot open {wanted} connections: the open-file limit (RLIMIT_NOFILE) is {limit}, and loadgen needs one descriptor per connection plus {FD_RESERVE} (raise it with `ulimit -n`)")]
    FileLimit { wanted: usize, limit: u64 },
    #[error("starting worker thread {thread}: {detail}")]
    Thread { thread: usize, detail: String },
}

/// Live counters for the progress line, one per thread on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Progress {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
}

/// Runs the load described by `settings`. Both callbacks are called from the calling thread.
/// `on_open(opened, asked)` is called once, when every connection is open or has failed
/// (not when none opened: the run then fails); an idle run starts its hold right after.
/// `on_tick` is called about once a second with the requests and errors so far (warm-up
/// included) and the time left; it drives the progress line. Setting `stop` (Ctrl-C) ends
/// the run early: what was measured until then is reported, over the time it really took.
pub fn run(
    settings: &Settings,
    on_open: &mut dyn FnMut(usize, usize),
    mut on_tick: Option<&mut dyn FnMut(u64, u64, Duration)>,
    stop: &AtomicBool,
) -> Result<RunResult, RunError> {
    let connections = settings.connections.get();
    if let Ok(limit) = sysio::host::raise_nofile_limit() {
        if (connections as u64).saturating_add(FD_RESERVE) > limit {
            return Err(RunError::FileLimit {
                wanted: connections,
                limit,
            });
        }
    }
    let endpoint = connect::resolve(&settings.url, settings.timeout)?;
    let threads = settings.threads.get();
    // Idle runs open at most OPEN_IN_FLIGHT connections at once over all threads; other
    // runs open all of theirs at once, as they always have (a load test's connections are
    // tens to hundreds, not thousands).
    let in_flight = if settings.idle {
        OPEN_IN_FLIGHT.div_ceil(threads)
    } else {
        connections
    };
    let opening_from = Instant::now();
    let shared = Arc::new(settings.clone());
    let (ready_tx, ready_rx) = mpsc::channel::<Opened>();
    let mut workers = Vec::with_capacity(threads);
    for t in 0..threads {
        let count = connections / threads + usize::from(t < connections % threads);
        let (start_tx, start_rx) = mpsc::channel::<Option<Start>>();
        let (abort_tx, abort_rx) = oneshot::channel::<()>();
        let progress = Arc::new(Progress::default());
        let job = Worker {
            settings: shared.clone(),
            endpoint: endpoint.clone(),
            thread: t,
            count,
            in_flight,
            ready: ready_tx.clone(),
            start: start_rx,
            abort: abort_rx,
            progress: on_tick.is_some().then(|| progress.clone()),
        };
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || job.run())
            .map_err(|e| RunError::Thread {
                thread: t,
                detail: e.to_string(),
            })?;
        workers.push((handle, start_tx, progress, abort_tx));
    }
    drop(ready_tx);

    let mut opened_by_thread = vec![0usize; threads];
    let mut first_error: Option<String> = None;
    for _ in 0..threads {
        match ready_rx.recv() {
            Ok(o) => {
                opened_by_thread[o.thread] = o.opened;
                if first_error.is_none() {
                    first_error = o.error;
                }
            }
            Err(_) => break,
        }
    }
    let opened: usize = opened_by_thread.iter().sum();
    if opened == 0 {
        for (_, start, _, _) in &workers {
            let _ = start.send(None);
        }
        for (handle, _, _, _) in workers {
            let _ = handle.join();
        }
        return Err(RunError::Unreachable(
            first_error.unwrap_or_else(|| "no connection could be opened".into()),
        ));
    }
    let open_time = opening_from.elapsed();
    on_open(opened, connections);

    let start = Instant::now();
    let wall_start = SystemTime::now();
    let schedule = Schedule {
        start,
        measure_from: start + settings.warmup,
        end: start + settings.warmup + settings.duration,
    };
    // The open-loop schedule is spread over the connections that did open, numbered
    // across threads, so a missing connection does not lower the rate.
    let mut first_index = 0u64;
    for ((_, tx, _, _), mine) in workers.iter().zip(&opened_by_thread) {
        let _ = tx.send(Some(Start {
            schedule,
            first_index,
            connections: opened as u64,
        }));
        first_index += *mine as u64;
    }
    // Waits until `until`, drawing the progress line; `false` if stopped first.
    let mut last_tick: Option<Instant> = None;
    let mut wait = |until: Instant| loop {
        if stop.load(Ordering::Relaxed) {
            break false;
        }
        let now = Instant::now();
        if now >= until {
            break true;
        }
        if let Some(f) = on_tick.as_mut() {
            if last_tick.is_none_or(|t| now - t >= PROGRESS_EVERY) {
                let (mut req, mut err) = (0, 0);
                for (_, _, p, _) in &workers {
                    req += p.requests.load(Ordering::Relaxed);
                    err += p.errors.load(Ordering::Relaxed);
                }
                f(req, err, schedule.end.saturating_duration_since(now));
                last_tick = Some(now);
            }
        }
        std::thread::sleep((until - now).min(STOP_POLL));
    };
    let mut stopped_at = None;
    if !wait(schedule.measure_from) {
        stopped_at = Some(Instant::now());
    }
    let cpu_start = CpuTimes::now();
    if stopped_at.is_none() && !wait(schedule.end) {
        stopped_at = Some(Instant::now());
    }
    let cpu = CpuTimes::now().since(&cpu_start);
    let mut handles = Vec::with_capacity(threads);
    for (handle, _, _, abort) in workers {
        handles.push(handle);
        if stopped_at.is_some() {
            let _ = abort.send(());
        }
        // Otherwise dropped: the threads then simply run to the end of the schedule.
    }

    let mut stats = Stats::new(settings.rate.is_some());
    for (t, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(s) => stats.merge(s),
            Err(_) => {
                return Err(RunError::Thread {
                    thread: t,
                    detail: "the worker thread panicked".into(),
                })
            }
        }
    }
    let cpus = threads.min(sysio::host::affinity_cpus().len().max(1));
    let measured_until = stopped_at.map_or(schedule.end, |at| at.min(schedule.end));
    Ok(RunResult {
        stats,
        threads,
        connections_opened: opened,
        open_time,
        measured: measured_until.saturating_duration_since(schedule.measure_from),
        interrupted: stopped_at.is_some(),
        measured_from: wall_start + settings.warmup,
        warmup: settings.warmup,
        cpu,
        cpus,
    })
}

/// The run's clock, shared by every thread.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Connections are open; the open-loop schedule counts from here.
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// A thread's answer after opening its connections.
#[derive(Debug)]
struct Opened {
    thread: usize,
    opened: usize,
    error: Option<String>,
}

/// The go signal: the clock, and where this thread's opened connections sit in the
/// open-loop numbering.
#[derive(Debug, Clone, Copy)]
struct Start {
    schedule: Schedule,
    first_index: u64,
    /// Connections opened over all threads.
    connections: u64,
}

/// One worker thread's job.
struct Worker {
    settings: Arc<Settings>,
    endpoint: Endpoint,
    thread: usize,
    /// Connections to open.
    count: usize,
    /// Connections opened at once.
    in_flight: usize,
    ready: mpsc::Sender<Opened>,
    start: mpsc::Receiver<Option<Start>>,
    /// Fires when the run is stopped early: every connection task is cancelled (idle runs:
    /// the hold ends and the connections are closed).
    abort: oneshot::Receiver<()>,
    progress: Option<Arc<Progress>>,
}

impl Worker {
    fn run(self) -> Stats {
        let settings = self.settings.clone();
        match (self.endpoint.clone(), &settings.tls) {
            (Endpoint::Tcp(addr), Some(tls)) if settings.url.scheme == Scheme::Https => {
                let connector =
                    TlsConnector::new(addr, tls.for_thread(), tls.server_name().clone());
                self.run_with(connector)
            }
            (Endpoint::Tcp(addr), _) => self.run_with(TcpConnector::new(addr)),
            (Endpoint::Unix(path), _) => self.run_with(UnixConnector::new(path)),
        }
    }

    fn run_with<C: Connector + 'static>(self, connector: C) -> Stats {
        let open_loop = self.settings.rate.is_some();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = self.ready.send(Opened {
                    thread: self.thread,
                    opened: 0,
                    error: Some(format!("starting an event loop: {e}")),
                });
                return Stats::new(open_loop);
            }
        };
        let local = LocalSet::new();
        let connector = Rc::new(connector);
        let settings = self.settings.clone();
        let request = RequestSpec::of(&settings);

        // Phase 1: open the connections (idle runs: each with its one request).
        let opening = Rc::new(Opening {
            connector: connector.clone(),
            count: self.count,
            next: Cell::new(0),
            attempts: if settings.idle { IDLE_OPEN_ATTEMPTS } else { 1 },
            timeout: settings.timeout,
            first_request: settings.idle.then(|| request.clone()),
            stats: RefCell::new(Stats::new(open_loop)),
            first_error: RefCell::new(None),
            progress: self.progress.clone(),
        });
        let streams = local.block_on(&runtime, open_all(opening.clone(), self.in_flight));
        let mut stats = opening.stats.replace(Stats::new(open_loop));
        let _ = self.ready.send(Opened {
            thread: self.thread,
            opened: streams.len(),
            error: opening.first_error.take(),
        });
        drop(opening);
        let start = match self.start.recv() {
            Ok(Some(start)) => start,
            _ => return stats,
        };
        if settings.idle {
            stats.closed_by_server =
                local.block_on(&runtime, hold::<C>(streams, start.schedule.end, self.abort));
            return stats;
        }
        // Connections that failed to open stay closed: they are reported, not retried, so
        // `connections_opened` is what the run really had.
        let ctx = Rc::new(Ctx {
            connector,
            request,
            keepalive: settings.keepalive,
            timeout: settings.timeout,
            schedule: start.schedule,
            open: settings.rate.map(|rate| OpenLoop {
                interval_s: 1.0 / rate,
                connections: start.connections,
            }),
            stats: RefCell::new(stats),
            progress: self.progress.clone(),
        });

        // Phases 2 and 3.
        let abort = self.abort;
        local.block_on(&runtime, async {
            let tasks: Vec<_> = streams
                .into_iter()
                .zip(start.first_index..)
                .map(|(stream, index)| {
                    tokio::task::spawn_local(connection(ctx.clone(), index, stream))
                })
                .collect();
            let cancel: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
            let all = async {
                for task in tasks {
                    let _ = task.await;
                }
            };
            tokio::pin!(all);
            tokio::select! {
                () = &mut all => {}
                Ok(()) = abort => {
                    for task in &cancel {
                        task.abort();
                    }
                    all.await;
                }
            }
        });
        drop(local);
        match Rc::try_unwrap(ctx) {
            Ok(ctx) => ctx.stats.into_inner(),
            // Unreachable: every task holding a clone has finished.
            Err(ctx) => ctx.stats.borrow().clone(),
        }
    }
}

/// The request every connection sends, and what its response must be.
#[derive(Debug, Clone)]
struct RequestSpec {
    /// Head and body, one write.
    bytes: Arc<[u8]>,
    /// What an echo must answer with.
    body: Arc<[u8]>,
    verify: bool,
    head_request: bool,
}

impl RequestSpec {
    fn of(settings: &Settings) -> RequestSpec {
        RequestSpec {
            bytes: settings.request.clone(),
            body: settings.body.clone(),
            verify: settings.verify,
            head_request: settings.head_request,
        }
    }

    fn expect(&self) -> Expect<'_> {
        Expect {
            body: self.verify.then_some(&self.body[..]),
            head_request: self.head_request,
        }
    }
}

/// Phase 1 of one thread: what its openers share (single-threaded: `Cell`/`RefCell`).
struct Opening<C> {
    connector: Rc<C>,
    /// Connections to open.
    count: usize,
    /// The next connection to open, taken by whichever opener is free.
    next: Cell<usize>,
    /// Tries per connection, transient failures only.
    attempts: u32,
    /// Per try: connecting and, in idle runs, the first request.
    timeout: Duration,
    /// Idle runs: the request each connection sends once it is open. Opening is then what
    /// is measured: its latencies and its errors, by kind, count in the statistics.
    first_request: Option<RequestSpec>,
    stats: RefCell<Stats>,
    /// The first failure, for the one-line diagnosis when nothing opened.
    first_error: RefCell<Option<String>>,
    progress: Option<Arc<Progress>>,
}

/// Why one try at opening a connection failed.
#[derive(Debug)]
struct OpenFailure {
    kind: ErrorKind,
    message: String,
    /// Worth another try (see [`ConnectError::is_transient`]): not a refused handshake nor
    /// an answer from the server that would be the same next time.
    transient: bool,
}

/// What every connection of one thread shares (single-threaded: `Rc`/`RefCell`).
struct Ctx<C> {
    connector: Rc<C>,
    request: RequestSpec,
    keepalive: bool,
    timeout: Duration,
    schedule: Schedule,
    open: Option<OpenLoop>,
    stats: RefCell<Stats>,
    progress: Option<Arc<Progress>>,
}

#[derive(Debug, Clone, Copy)]
struct OpenLoop {
    /// Seconds between two intended send times, over all connections.
    interval_s: f64,
    connections: u64,
}

impl<C> Ctx<C> {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.schedule.measure_from && t <= self.schedule.end
    }

    fn fail(&self, at: Instant, kind: ErrorKind, message: impl FnOnce() -> String) {
        let mut stats = self.stats.borrow_mut();
        stats.note_error(message);
        if self.in_window(at) {
            stats.error(kind);
        }
        if let Some(p) = &self.progress {
            p.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One connection's life: requests one after another until the end of the run,
/// reconnecting after errors (and after every response without keep-alive).
async fn connection<C: Connector>(ctx: Rc<Ctx<C>>, index: u64, stream: C::Stream) {
    let end = ctx.schedule.end;
    let mut stream = Some(stream);
    let mut reader = ResponseReader::new();
    // One timer per connection, moved for each request: resetting a tokio sleep to a later
    // time allocates nothing and takes no lock.
    let timer = tokio::time::sleep_until(end.into());
    tokio::pin!(timer);
    let mut seq: u64 = 0;
    let mut backoff = Duration::ZERO;
    let expect = ctx.request.expect();

    loop {
        // After a failed connect, wait before the next try (not counted as latency).
        if stream.is_none() && !backoff.is_zero() {
            let resume = (Instant::now() + backoff).min(end);
            tokio::time::sleep_until(resume.into()).await;
        }
        // When to start this request.
        let intended = match ctx.open {
            Some(open) => {
                let i = seq * open.connections + index;
                seq += 1;
                let at = Duration::try_from_secs_f64(i as f64 * open.interval_s)
                    .ok()
                    .and_then(|offset| ctx.schedule.start.checked_add(offset));
                let Some(at) = at.filter(|&at| at < end) else {
                    break;
                };
                // Wake a little early rather than late: a request that starts early is
                // measured from its actual start instead.
                let wake = at.checked_sub(EARLY_WAKE).unwrap_or(at);
                if wake > Instant::now() {
                    timer.as_mut().reset(wake.into());
                    (&mut timer).await;
                }
                Some(at)
            }
            None => None,
        };
        let started = Instant::now();
        if started >= end {
            break;
        }
        timer
            .as_mut()
            .reset((started + ctx.timeout).min(end).into());

        if stream.is_none() {
            let connected = tokio::select! {
                biased;
                r = ctx.connector.connect() => Some(r),
                () = &mut timer => None,
            };
            let now = Instant::now();
            match connected {
                Some(Ok((io, negotiated))) => {
                    if let Some(n) = negotiated {
                        ctx.stats.borrow_mut().handshake(n);
                    }
                    backoff = Duration::ZERO;
                    stream = Some(io);
                }
                Some(Err(e)) => {
                    ctx.fail(now, ErrorKind::Connect, || e.to_string());
                    backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    continue;
                }
                None if now >= end => break,
                None => {
                    ctx.fail(now, ErrorKind::Timeout, || "connecting timed out".into());
                    continue;
                }
            }
        }
        let Some(io) = stream.as_mut() else {
            continue;
        };

        let outcome = tokio::select! {
            biased;
            r = exchange(io, &mut reader, &ctx.request.bytes, expect) => Some(r),
            () = &mut timer => None,
        };
        let done = Instant::now();
        let response = match outcome {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                ctx.fail(done, e.kind(), || e.to_string());
                stream = None;
                reader.clear();
                continue;
            }
            None if done >= end => break,
            None => {
                ctx.fail(done, ErrorKind::Timeout, || {
                    format!(
                        "no response within {}",
                        humantime::format_duration(ctx.timeout)
                    )
                });
                stream = None;
                reader.clear();
                continue;
            }
        };

        let verdict = verdict(&response);
        if ctx.in_window(done) {
            let from = intended.map_or(started, |at| at.min(started));
            let mut stats = ctx.stats.borrow_mut();
            stats.record(
                done - from,
                done - started,
                ctx.request.bytes.len() as u64,
                response.bytes,
            );
            if intended.is_some_and(|at| started > at + LATE_AFTER) {
                stats.late += 1;
            }
            match verdict {
                Some(kind) => stats.error(kind),
                None => stats.ok += 1,
            }
        }
        if verdict.is_some() {
            let mut stats = ctx.stats.borrow_mut();
            stats.note_error(|| describe(&response, ctx.request.body.len()));
        }
        if let Some(p) = &ctx.progress {
            p.requests.fetch_add(1, Ordering::Relaxed);
        }
        if !ctx.keepalive || response.close {
            if let Some(io) = stream.take() {
                tokio::select! {
                    biased;
                    () = C::close(io) => {}
                    () = &mut timer => {}
                }
            }
            reader.clear();
        }
    }
}

/// Phase 1 of one thread: `in_flight` openers take the connections to open one after
/// another. Returns the connections that opened.
async fn open_all<C: Connector + 'static>(
    opening: Rc<Opening<C>>,
    in_flight: usize,
) -> Vec<C::Stream> {
    let openers: Vec<_> = (0..in_flight.min(opening.count))
        .map(|_| tokio::task::spawn_local(opener(opening.clone())))
        .collect();
    let mut streams = Vec::with_capacity(opening.count);
    for task in openers {
        match task.await {
            Ok(opened) => streams.extend(opened),
            Err(e) => {
                opening
                    .first_error
                    .borrow_mut()
                    .get_or_insert_with(|| format!("connect task failed: {e}"));
            }
        }
    }
    streams
}

/// Opens connections until none are left to open.
async fn opener<C: Connector>(opening: Rc<Opening<C>>) -> Vec<C::Stream> {
    let mut opened = Vec::new();
    // One response buffer per opener, not per connection: held connections keep none.
    let mut reader = opening
        .first_request
        .as_ref()
        .map(|_| ResponseReader::new());
    while opening.next.get() < opening.count {
        opening.next.set(opening.next.get() + 1);
        if let Some(stream) = opening.open_one(reader.as_mut()).await {
            opened.push(stream);
        }
    }
    opened
}

impl<C: Connector> Opening<C> {
    /// Opens one connection, trying again after transient failures (with backoff, which
    /// is not latency) up to `attempts` times in all.
    async fn open_one(&self, mut reader: Option<&mut ResponseReader>) -> Option<C::Stream> {
        let mut backoff = OPEN_BACKOFF_MIN;
        for attempt in 1..=self.attempts {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            let tried = tokio::time::timeout(self.timeout, self.try_open(reader.as_deref_mut()));
            let failure = match tried.await {
                Ok(Ok(stream)) => return Some(stream),
                Ok(Err(failure)) => failure,
                Err(_) => OpenFailure {
                    kind: ErrorKind::Timeout,
                    message: if self.first_request.is_some() {
                        format!(
                            "connecting and the first request took longer than {}",
                            humantime::format_duration(self.timeout)
                        )
                    } else {
                        format!(
                            "connecting timed out after {}",
                            humantime::format_duration(self.timeout)
                        )
                    },
                    transient: true,
                },
            };
            let transient = failure.transient;
            self.fail(failure);
            if !transient {
                break;
            }
        }
        None
    }

    /// One try: connect (and handshake) and, in idle runs, the first request, whose
    /// latency runs from the start of the connect.
    async fn try_open(
        &self,
        reader: Option<&mut ResponseReader>,
    ) -> Result<C::Stream, OpenFailure> {
        let started = Instant::now();
        let (mut stream, negotiated) = self
            .connector
            .connect()
            .await
            .map_err(OpenFailure::connect)?;
        if let Some(n) = negotiated {
            self.stats.borrow_mut().handshake(n);
        }
        let (Some(request), Some(reader)) = (&self.first_request, reader) else {
            return Ok(stream);
        };
        reader.clear();
        let response = exchange(&mut stream, reader, &request.bytes, request.expect())
            .await
            .map_err(OpenFailure::exchange)?;
        let done = Instant::now();
        let verdict = verdict(&response);
        {
            let mut stats = self.stats.borrow_mut();
            stats.record(
                done - started,
                done - started,
                request.bytes.len() as u64,
                response.bytes,
            );
            if verdict.is_none() {
                stats.ok += 1;
            }
        }
        let Some(kind) = verdict else {
            if let Some(p) = &self.progress {
                p.requests.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(stream);
        };
        // The server answered, but not as an echo: not a connection worth holding, and
        // another try would get the same answer.
        C::close(stream).await;
        Err(OpenFailure {
            kind,
            message: describe(&response, request.body.len()),
            transient: false,
        })
    }

    /// Notes a failed try: counted by kind in idle runs (where opening is the
    /// measurement), and remembered for the diagnosis in every run.
    fn fail(&self, failure: OpenFailure) {
        if self.first_request.is_some() {
            let mut stats = self.stats.borrow_mut();
            stats.error(failure.kind);
            stats.note_error(|| failure.message.clone());
            if let Some(p) = &self.progress {
                p.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.first_error.borrow_mut().get_or_insert(failure.message);
    }
}

impl OpenFailure {
    fn connect(e: ConnectError) -> OpenFailure {
        OpenFailure {
            kind: ErrorKind::Connect,
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }

    fn exchange(e: ExchangeError) -> OpenFailure {
        OpenFailure {
            kind: e.kind(),
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

/// Idle runs, after the caller heard that the connections are open: holds them all open
/// and silent until `end` (or a stop), then closes them cleanly. Returns how many the
/// server closed in the meantime.
async fn hold<C: Connector + 'static>(
    streams: Vec<C::Stream>,
    end: Instant,
    abort: oneshot::Receiver<()>,
) -> u64 {
    let (over_tx, over) = watch::channel(false);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::task::spawn_local(hold_one::<C>(stream, over.clone())))
        .collect();
    drop(over);
    tokio::select! {
        () = tokio::time::sleep_until(end.into()) => {}
        Ok(()) = abort => {}
    }
    let _ = over_tx.send(true);
    let mut closed = 0;
    for task in tasks {
        if let Ok(true) = task.await {
            closed += 1;
        }
    }
    closed
}

/// Holds one connection until the hold is over (then closes it cleanly: TLS close_notify
/// first) or the server closes it (EOF or reset: `true`).
async fn hold_one<C: Connector>(mut stream: C::Stream, mut over: watch::Receiver<bool>) -> bool {
    let mut buf = [0u8; HOLD_READ_BYTES];
    loop {
        // The end of the hold first: a server that never stops sending must not keep
        // loadgen from ending.
        let read = tokio::select! {
            biased;
            _ = over.wait_for(|&over| over) => None,
            r = stream.read(&mut buf) => Some(r),
        };
        match read {
            None => break,
            Some(Ok(0) | Err(_)) => return true,
            // Bytes from an idle server (a 408 before it hangs up, say) are dropped; the
            // close that follows is what counts.
            Some(Ok(_)) => {}
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, C::close(stream)).await;
    false
}

/// A complete response's error, if it is one: a status of 400 or above, or not the echo.
fn verdict(response: &Response) -> Option<ErrorKind> {
    if response.status >= 400 {
        Some(ErrorKind::Status)
    } else if !response.body_ok {
        Some(ErrorKind::BodyMismatch)
    } else {
        None
    }
}

/// The diagnosis line for a response that [`verdict`] calls an error.
fn describe(response: &Response, body_len: usize) -> String {
    if response.status >= 400 {
        format!("status {}", response.status)
    } else {
        format!("response body is not the echo of the {body_len}-byte request body")
    }
}

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("writing the request: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Read(ResponseError),
}

impl ExchangeError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExchangeError::Write(_) => ErrorKind::Write,
            ExchangeError::Read(_) => ErrorKind::Read,
        }
    }

    /// The connection failed (reset, closed early), as opposed to a malformed answer.
    fn is_transient(&self) -> bool {
        matches!(
            self,
            ExchangeError::Write(_)
                | ExchangeError::Read(ResponseError::Io(_) | ResponseError::Closed)
        )
    }
}

/// Writes the request (one write for head and body) and reads the whole response.
async fn exchange<S>(
    io: &mut S,
    reader: &mut ResponseReader,
    request: &[u8],
    expect: Expect<'_>,
) -> Result<Response, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(request).await.map_err(ExchangeError::Write)?;
    io.flush().await.map_err(ExchangeError::Write)?;
    reader.read(io, expect).await.map_err(ExchangeError::Read)
}

/// File descriptors kept free beyond one per connection (runtime, std streams, files).
const FD_RESERVE: u64 = 64;
/// How early an open-loop connection wakes for its next intended start: tokio's timers
/// fire on a 1 ms tick and the event loop's wait rounds up to whole milliseconds, so a
/// wake-up lands up to 2 ms after the time asked for.
const EARLY_WAKE: Duration = Duration::from_millis(2);
/// First wait before reconnecting after a failed connect, doubled up to [`BACKOFF_MAX`]:
/// a refused connect takes microseconds, and retrying at once would only spin.
const BACKOFF_MIN: Duration = Duration::from_millis(1);
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Idle runs: connections being opened at once, over all threads. A few hundred keep the
/// server busy without overflowing its listen backlog (often 128 to 4096) or, behind a
/// terminator, its upstream's.
const OPEN_IN_FLIGHT: usize = 256;
/// Idle runs: tries per connection before it counts as failed; only refused, reset or
/// timed-out tries are tried again.
const IDLE_OPEN_ATTEMPTS: u32 = 4;
/// Idle runs: wait before the second try, doubled before each further one (50, 100,
/// 200 ms): long enough for a server to drain its backlog.
const OPEN_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Idle runs: read buffer of a held connection, which only waits for EOF: nothing is
/// expected, so a few bytes suffice (TLS records are buffered by rustls, not here).
const HOLD_READ_BYTES: usize = 64;
/// Idle runs: how long to try a clean close (close_notify) of a held connection.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the calling thread looks at the stop flag: a Ctrl-C ends the run within this.
const STOP_POLL: Duration = Duration::from_millis(100);
