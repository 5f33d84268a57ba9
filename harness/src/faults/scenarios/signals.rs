//! Scenarios 6 and 7: the terminator signalled under load (certificate reloads, one of
//! them corrupt: SIGHUP for the proxy, nginx and hitch, SIGUSR2 to HAProxy's master; a
//! graceful stop and its drain: SIGTERM for the proxy, HAProxy's SIGUSR1 soft-stop,
//! nginx's SIGQUIT; hitch has none, see [`Feature::Drain`]).

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::checks::{good_clients, good_clients_unless, load_opts, CLOSE_SLACK, HANG_WATCH, TAIL};
use crate::certs::Leaf;
use crate::faults::client::{self, request_head, within};
use crate::faults::load::{Load, LoadOpts};
use crate::faults::report::{Checks, FaultRow};
use crate::faults::stack::{self, ProxyOpts, ScenarioStack};
use crate::faults::terminator::Feature;
use crate::faults::Suite;
use crate::procfs::tree_memory_kib;

/// Scenario 6, Certificate reload: every second for `reload_for`, a new certificate (same CA) and
/// the reload signal; once, half-way, a corrupt certificate file instead. Good clients open
/// a new connection (and handshake) per request. Criteria: zero failed requests; every good
/// reload served within [`RELOAD_APPLY`] (asked by a handshake after each); the proxy's log
/// counts every good reload applied and the corrupt one refused (`n/a` for peers); after
/// the corrupt one the terminator still serves the previous certificate; at the end it
/// serves the newest one.
pub(super) fn cert_reload(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(6, "cert-reload");
    let mut checks = Checks::default();
    let stack = ScenarioStack::start(s, "6-cert-reload", ProxyOpts::default())?;
    let opts = LoadOpts {
        rate: RELOAD_RATE,
        keepalive: false,
        ..load_opts(s)
    };
    let load = Load::start(s, stack.addr(), "6-cert-reload", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let Reloads {
        count: reloads,
        corrupt_at,
        good_sent,
        bad_sent,
        served_new,
        served_after,
        kept_old,
        newest: current,
        started,
    } = reload_every_second(s, &stack, &mut checks)?;
    s.sleep(RELOAD_SETTLE)?;
    let served = s.on_client({
        let (client, addr) = (s.client.clone(), stack.addr());
        async move { client.served_cert(addr).await }
    });
    let report = load.finish(s.inputs.stop)?;
    good_clients(&mut row, &mut checks, &report);
    row.proxy_rss_after_kib = stack.rss_kib();
    row.proxy_fds_after = stack.fds();

    checks.require(served_new == good_sent, || {
        format!("every good reload served within {RELOAD_APPLY:?}: {served_new} of {good_sent}")
    });
    checks.fact(format!(
        "new certificates served {} after their signal",
        span(&served_after)
    ));
    let log = std::fs::read_to_string(&stack.proxy().stderr_log).unwrap_or_default();
    let ok = log
        .matches("certificates and TLS settings reloaded")
        .count();
    let failed = log.matches("reload failed").count();
    let no_log = || stack.terminator.lacks(Feature::ReloadLog);
    checks.require_unless(no_log(), ok == good_sent, || {
        format!("every good reload applied: the proxy logged {ok} of {good_sent}")
    });
    checks.require_unless(no_log(), failed == bad_sent, || {
        format!(
            "the corrupt certificate refused and logged: {failed} `reload failed` lines, \
             expected {bad_sent}"
        )
    });
    checks.require(kept_old == Some(true), || {
        "after the corrupt reload the proxy keeps serving the previous certificate".into()
    });
    checks.require(matches!(&served, Ok(der) if *der == current.der), || {
        format!(
            "at the end the proxy serves the newest certificate: {}",
            match &served {
                Ok(_) => "it serves another one".to_owned(),
                Err(e) => e.to_string(),
            }
        )
    });
    checks.fact(format!(
        "{reloads} {}s in {:.0} s ({good_sent} new certificates, 1 corrupt at #{corrupt_at}); \
         good clients: a handshake per request at {RELOAD_RATE}/s",
        stack.terminator.reload_signal(),
        started.elapsed().as_secs_f64()
    ));
    if s.scale.short {
        checks.unchecked(format!(
            "30 s of reloads: short mode reloads for {:?}",
            s.scale.reload_for
        ));
    }
    if let Some(line) = log.lines().find(|l| refusal_line(l)) {
        checks.fact(format!("{} log: {}", stack.terminator.name(), line.trim()));
    }
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// What scenario 6's reloads did.
struct Reloads {
    /// SIGHUPs sent, one a second.
    count: usize,
    /// The reload (1-based) that installed the corrupt certificate.
    corrupt_at: usize,
    good_sent: usize,
    bad_sent: usize,
    /// Good reloads whose certificate was served within [`RELOAD_APPLY`], and how long
    /// each took to be served (those served within [`RELOAD_WAIT`]).
    served_new: usize,
    served_after: Vec<Duration>,
    /// Whether the proxy still served the previous certificate after the corrupt reload.
    kept_old: Option<bool>,
    /// The last good certificate installed.
    newest: Leaf,
    started: Instant,
}

/// Scenario 6: a new certificate and the reload signal every second for `reload_for`, the
/// corrupt one half-way; asks which certificate is served after each.
fn reload_every_second(
    s: &mut Suite<'_>,
    stack: &ScenarioStack,
    checks: &mut Checks,
) -> anyhow::Result<Reloads> {
    let reloads = s.scale.reload_for.as_secs().max(2) as usize;
    let corrupt_at = reloads / 2;
    let mut current = stack.leaf.clone();
    let (mut good_sent, mut bad_sent, mut served_new) = (0usize, 0usize, 0usize);
    let mut served_after = Vec::new();
    let mut kept_old = None;
    let signal = stack.terminator.reload_signal();
    let started = Instant::now();
    for i in 1..=reloads {
        s.sleep_until(started + RELOAD_EVERY * i as u32)?;
        if i == corrupt_at {
            stack.install_corrupt_cert()?;
            stack.signal(signal)?;
            bad_sent += 1;
            s.sleep(RELOAD_CORRUPT_SETTLE)?;
            let client = s.client.clone();
            let addr = stack.addr();
            let served = s.on_client(async move { client.served_cert(addr).await });
            kept_old = Some(matches!(&served, Ok(der) if *der == current.der));
            if let Err(e) = &served {
                checks.fact(format!("handshake after the corrupt reload failed: {e}"));
            }
        } else {
            let leaf = s.pki.issue(&stack::LEAF_NAMES)?;
            stack.install_leaf(&leaf)?;
            stack.signal(signal)?;
            good_sent += 1;
            // Waits for it (up to RELOAD_WAIT) before the next file replaces it: a reload
            // slower than the period would otherwise read the next one's certificate.
            if let Some(took) = served_after_signal(s, stack, &leaf.der)? {
                served_new += usize::from(took <= RELOAD_APPLY);
                served_after.push(took);
            }
            current = leaf;
        }
    }
    Ok(Reloads {
        count: reloads,
        corrupt_at,
        good_sent,
        bad_sent,
        served_new,
        served_after,
        kept_old,
        newest: current,
        started,
    })
}

/// Scenario 6: how long after its signal (sent just before) the terminator serves the
/// certificate `der`, asked every [`RELOAD_POLL`] (a peer's reload starts a new worker);
/// `None` if not within [`RELOAD_WAIT`].
fn served_after_signal(
    s: &Suite<'_>,
    stack: &ScenarioStack,
    der: &[u8],
) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    loop {
        let client = s.client.clone();
        let addr = stack.addr();
        let served = s.on_client(async move { client.served_cert(addr).await });
        if matches!(&served, Ok(got) if got == der) {
            return Ok(Some(started.elapsed()));
        }
        if started.elapsed() >= RELOAD_WAIT {
            return Ok(None);
        }
        s.sleep(RELOAD_POLL)?;
    }
}

/// `12ms-340ms`, or `-` for none.
fn span(times: &[Duration]) -> String {
    match (times.iter().min(), times.iter().max()) {
        (Some(lo), Some(hi)) => format!("{lo:.0?}-{hi:.0?}"),
        _ => "-".to_owned(),
    }
}

/// A log line of a refused reload: the proxy's, HAProxy's, nginx's.
fn refusal_line(line: &str) -> bool {
    [
        "reload failed",
        "Loading failure",
        "cannot load certificate",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// Scenario 7, SIGTERM under load, with one slow request (a body sent in pieces over 2 s) in flight
/// at the signal. A peer gets its own graceful stop
/// ([`crate::faults::Terminator::stop_signal`]).
/// Criteria: good-client errors 0 (requests in flight complete); the slow request completes
/// and echoes correctly (both `n/a` for a terminator without a graceful stop); no new
/// connection is accepted after the signal; exit code 0, within the grace period.
pub(super) fn sigterm(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(7, "sigterm");
    let mut checks = Checks::default();
    let grace = s.scale.grace;
    let mut stack = ScenarioStack::start(
        s,
        "7-sigterm",
        ProxyOpts {
            shutdown_grace: grace,
            ..ProxyOpts::default()
        },
    )?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "7-sigterm", &opts)?;
    s.sleep(opts.warmup + TAIL)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let addr = stack.addr();
    let slow = spawn_slow_request(s, addr);
    // The signal lands while the slow request is still sending its body.
    s.sleep(SLOW_PIECE_EVERY * 2)?;
    // The proxy is gone once it has stopped: read its peak memory while it still runs.
    row.proxy_max_rss_kib = tree_memory_kib(stack.pid(), "VmHWM").ok();
    let (signal, signal_name) = stack.terminator.stop_signal();
    let no_drain = stack.terminator.lacks(Feature::Drain);
    let signalled = Instant::now();
    stack.signal(signal)?;
    s.sleep(AFTER_SIGNAL)?;
    let attempts = connections_accepted_after_signal(s, addr);
    s.sleep_until(signalled + DRAIN_LOAD)?;
    let report = load.finish(s.inputs.stop)?;
    good_clients_unless(&mut row, &mut checks, &report, no_drain.clone());
    let slow = match s.rt.block_on(slow) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = stack.wait_proxy(grace + CLOSE_SLACK, s.inputs.stop)?;
    let exited_after = signalled.elapsed();
    checks.require_unless(no_drain, slow.is_ok(), || {
        format!(
            "the request in flight at the signal completes: {}",
            slow.as_ref().err().map_or("", |e| e)
        )
    });
    checks.require(attempts == 0, || {
        format!(
            "no new connection accepted after the signal: {attempts} of {NEW_AFTER_SIGNAL} were"
        )
    });
    exit_checks(&mut checks, status, exited_after, grace, &stack);
    checks.fact(format!("stopped with {signal_name}"));
    row.proxy_max_rss_kib = stack::max_opt(
        row.proxy_max_rss_kib,
        tree_memory_kib(stack.pid(), "VmHWM").ok(),
    );
    stack.expect_exit();
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 7: a request whose body is sent slowly, in pieces, so the signal lands while it
/// is in flight; the task's result says whether it was echoed whole.
fn spawn_slow_request(
    s: &Suite<'_>,
    addr: SocketAddr,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let client = s.client.clone();
    s.rt.spawn(async move {
        let mut tls = client.connect(addr, client::PROBE_LIMIT).await?;
        let body: Vec<u8> = (0..SLOW_BODY).map(|i| (i % 251) as u8).collect();
        tls.write_all(&request_head(SLOW_BODY)).await?;
        for piece in body.chunks(SLOW_BODY / SLOW_PIECES) {
            tls.write_all(piece).await?;
            tls.flush().await?;
            tokio::time::sleep(SLOW_PIECE_EVERY).await;
        }
        let (status, got) = within(HANG_WATCH, client::read_response(&mut tls)).await?;
        if status != 200 || got != body {
            return Err(std::io::Error::other(format!(
                "status {status}, {} of {} bytes echoed",
                got.len(),
                body.len()
            )));
        }
        Ok::<_, std::io::Error>(())
    })
}

/// Scenario 7: how many of [`NEW_AFTER_SIGNAL`] new connections the proxy still accepts
/// after the signal.
fn connections_accepted_after_signal(s: &Suite<'_>, addr: SocketAddr) -> usize {
    s.on_client({
        let client = s.client.clone();
        async move {
            let mut accepted = 0;
            for _ in 0..NEW_AFTER_SIGNAL {
                if client.connect(addr, client::PROBE_LIMIT).await.is_ok() {
                    accepted += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            accepted
        }
    })
}

/// Scenario 7: the proxy exited, with code 0, within the grace period.
fn exit_checks(
    checks: &mut Checks,
    status: Option<ExitStatus>,
    exited_after: Duration,
    grace: Duration,
    stack: &ScenarioStack,
) {
    match status {
        Some(status) => {
            checks.require(status.success(), || {
                format!(
                    "exit code 0 after the stop signal: {}{}",
                    crate::procs::describe(status),
                    stack.proxy().stderr_tail()
                )
            });
            checks.require(exited_after <= grace + EXIT_SLACK, || {
                format!("exit within the grace period ({grace:?}): after {exited_after:.2?}")
            });
            checks.fact(format!(
                "exited {} {exited_after:.2?} after the signal (grace {grace:?}); {NEW_AFTER_SIGNAL} \
                 connection attempts after it refused",
                crate::procs::describe(status)
            ));
        }
        None => {
            checks.require(false, || {
                format!(
                    "{} exits after its stop signal: still running {exited_after:.2?} later",
                    stack.terminator.name()
                )
            });
        }
    }
}

/// Scenario 6: reload period, the handshake rate of the good clients, the wait before
/// asking which certificate is served.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
const RELOAD_RATE: u32 = 300;
const RELOAD_SETTLE: Duration = Duration::from_millis(300);
/// Scenario 6: how long after its signal a good reload must be served (within the second
/// before the next one), how long the suite waits for it before going on (the schedule
/// slips by as much), and how often it asks.
const RELOAD_APPLY: Duration = Duration::from_millis(800);
const RELOAD_WAIT: Duration = Duration::from_secs(3);
const RELOAD_POLL: Duration = Duration::from_millis(50);
/// Scenario 6: the wait after the corrupt reload's signal before asking which certificate
/// is served (a peer's master re-reads its whole config).
const RELOAD_CORRUPT_SETTLE: Duration = Duration::from_millis(900);
/// Scenario 7: the slow request (body, pieces, pause between), the wait before trying new
/// connections, how many, how long the good clients run after the signal, and the slack
/// on the exit time.
const SLOW_BODY: usize = 64 * 1024;
const SLOW_PIECES: usize = 8;
const SLOW_PIECE_EVERY: Duration = Duration::from_millis(250);
const AFTER_SIGNAL: Duration = Duration::from_millis(100);
const NEW_AFTER_SIGNAL: usize = 5;
const DRAIN_LOAD: Duration = Duration::from_secs(1);
const EXIT_SLACK: Duration = Duration::from_millis(500);
