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

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::LocalSet;

use crate::config::{Config, Scheme};
use crate::connect::{self, Connector, Endpoint, TcpConnector, TlsConnector, UnixConnector};
use crate::cpu::CpuTimes;
use crate::http::{Expect, Response, ResponseError, ResponseReader};
use crate::stats::{ErrorKind, Stats, LATE_AFTER};

/// What a run measured.
#[derive(Debug)]
pub struct RunResult {
    pub stats: Stats,
    pub threads: usize,
    pub connections_opened: usize,
    /// The measured period.
    pub measured: Duration,
    pub warmup: Duration,
    /// Stopped early (Ctrl-C): `measured` is the part that ran.
    pub interrupted: bool,
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
    #[error("cannot open {wanted} connections: the open-file limit is {limit} (raise it with `ulimit -n`)")]
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

/// Runs the load described by `config`. `on_tick` is called about once a second from the
/// calling thread with the requests and errors so far (warm-up included) and the time
/// left; it drives the progress line. Setting `stop` (Ctrl-C) ends the run early: what was
/// measured until then is reported, over the time it really took.
pub fn run(
    config: &Config,
    mut on_tick: Option<&mut dyn FnMut(u64, u64, Duration)>,
    stop: &AtomicBool,
) -> Result<RunResult, RunError> {
    let connections = config.connections.get();
    if let Ok(limit) = proxy::sys::raise_nofile_limit() {
        if (connections as u64).saturating_add(FD_RESERVE) > limit {
            return Err(RunError::FileLimit {
                wanted: connections,
                limit,
            });
        }
    }
    let endpoint = connect::resolve(&config.url, config.timeout)?;
    let threads = config.threads.get();
    let shared = Arc::new(config.clone());
    let (ready_tx, ready_rx) = mpsc::channel::<Opened>();
    let mut workers = Vec::with_capacity(threads);
    for t in 0..threads {
        let count = connections / threads + usize::from(t < connections % threads);
        let (start_tx, start_rx) = mpsc::channel::<Option<Start>>();
        let (abort_tx, abort_rx) = tokio::sync::oneshot::channel::<()>();
        let progress = Arc::new(Progress::default());
        let job = Worker {
            config: shared.clone(),
            endpoint: endpoint.clone(),
            thread: t,
            count,
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

    let start = Instant::now();
    let schedule = Schedule {
        start,
        measure_from: start + config.warmup,
        end: start + config.warmup + config.duration,
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

    let mut stats = Stats::new(config.rate.is_some());
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
    let cpus = threads.min(proxy::sys::affinity_cpus().len().max(1));
    let measured_until = stopped_at.map_or(schedule.end, |at| at.min(schedule.end));
    Ok(RunResult {
        stats,
        threads,
        connections_opened: opened,
        measured: measured_until.saturating_duration_since(schedule.measure_from),
        interrupted: stopped_at.is_some(),
        warmup: config.warmup,
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
    config: Arc<Config>,
    endpoint: Endpoint,
    thread: usize,
    /// Connections to open.
    count: usize,
    ready: mpsc::Sender<Opened>,
    start: mpsc::Receiver<Option<Start>>,
    /// Fires when the run is stopped early: every connection task is cancelled.
    abort: tokio::sync::oneshot::Receiver<()>,
    progress: Option<Arc<Progress>>,
}

impl Worker {
    fn run(self) -> Stats {
        let config = self.config.clone();
        match (self.endpoint.clone(), &config.tls) {
            (Endpoint::Tcp(addr), Some(tls)) if config.url.scheme == Scheme::Https => {
                let connector =
                    TlsConnector::new(addr, tls.for_thread(), tls.server_name().clone());
                self.run_with(connector)
            }
            (Endpoint::Tcp(addr), _) => self.run_with(TcpConnector::new(addr)),
            (Endpoint::Unix(path), _) => self.run_with(UnixConnector::new(path)),
        }
    }

    fn run_with<C: Connector + 'static>(self, connector: C) -> Stats {
        let open_loop = self.config.rate.is_some();
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
        let timeout = self.config.timeout;

        // Phase 1: open every connection at once.
        let results = local.block_on(&runtime, async {
            let tasks: Vec<_> = (0..self.count)
                .map(|_| {
                    let connector = connector.clone();
                    tokio::task::spawn_local(async move {
                        match tokio::time::timeout(timeout, connector.connect()).await {
                            Ok(r) => r.map_err(|e| e.to_string()),
                            Err(_) => Err(format!(
                                "connecting timed out after {}",
                                humantime::format_duration(timeout)
                            )),
                        }
                    })
                })
                .collect();
            let mut results = Vec::with_capacity(tasks.len());
            for task in tasks {
                results.push(
                    task.await
                        .unwrap_or_else(|e| Err(format!("connect task failed: {e}"))),
                );
            }
            results
        });
        let mut stats = Stats::new(open_loop);
        let mut streams = Vec::with_capacity(results.len());
        let mut error = None;
        for r in results {
            match r {
                Ok((stream, negotiated)) => {
                    if let Some(n) = negotiated {
                        stats.handshake(n);
                    }
                    streams.push(Some(stream));
                }
                Err(e) => {
                    error.get_or_insert(e);
                    streams.push(None);
                }
            }
        }
        let opened = streams.iter().filter(|s| s.is_some()).count();
        let _ = self.ready.send(Opened {
            thread: self.thread,
            opened,
            error,
        });
        let start = match self.start.recv() {
            Ok(Some(start)) => start,
            _ => return stats,
        };
        // Connections that failed to open stay closed: they are reported, not retried, so
        // `connections_opened` is what the run really had.
        let config = &self.config;
        let ctx = Rc::new(Ctx {
            connector,
            request: config.request.clone(),
            body: config.body.clone(),
            expect_body: config.verify,
            head_request: config.head_request,
            keepalive: config.keepalive,
            timeout,
            schedule: start.schedule,
            open: config.rate.map(|rate| OpenLoop {
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
                .flatten()
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

/// What every connection of one thread shares (single-threaded: `Rc`/`RefCell`).
struct Ctx<C> {
    connector: Rc<C>,
    request: Arc<[u8]>,
    body: Arc<[u8]>,
    expect_body: bool,
    head_request: bool,
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
    let expect = Expect {
        body: ctx.expect_body.then_some(&ctx.body[..]),
        head_request: ctx.head_request,
    };

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
            r = exchange(io, &mut reader, &ctx.request, expect) => Some(r),
            () = &mut timer => None,
        };
        let done = Instant::now();
        let response = match outcome {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                let kind = match e {
                    ExchangeError::Write(_) => ErrorKind::Write,
                    ExchangeError::Read(_) => ErrorKind::Read,
                };
                ctx.fail(done, kind, || e.to_string());
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

        if ctx.in_window(done) {
            let from = intended.map_or(started, |at| at.min(started));
            let mut stats = ctx.stats.borrow_mut();
            stats.record(
                done - from,
                done - started,
                ctx.request.len() as u64,
                response.bytes,
            );
            if intended.is_some_and(|at| started > at + LATE_AFTER) {
                stats.late += 1;
            }
            let status_ok = response.status < 400;
            if !status_ok {
                stats.error(ErrorKind::Status);
            } else if !response.body_ok {
                stats.error(ErrorKind::BodyMismatch);
            } else {
                stats.ok += 1;
            }
        }
        if response.status >= 400 || !response.body_ok {
            let mut stats = ctx.stats.borrow_mut();
            stats.note_error(|| {
                if response.status >= 400 {
                    format!("status {}", response.status)
                } else {
                    format!(
                        "response body is not the echo of the {}-byte request body",
                        ctx.body.len()
                    )
                }
            });
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

#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    #[error("writing the request: {0}")]
    Write(std::io::Error),
    #[error(transparent)]
    Read(ResponseError),
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
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the calling thread looks at the stop flag: a Ctrl-C ends the run within this.
const STOP_POLL: Duration = Duration::from_millis(100);
