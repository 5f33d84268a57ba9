//! Scenarios 4 and 5: the backend fails under the proxy (killed and restarted; silent, slow
//! to read, or pushing into a client that does not read) while the good clients keep their
//! load going.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use super::checks::{
    errors_text, fd_leak_check, good_clients, load_opts, mib, recovery_check, sample_peak, settle,
    wait_for, CLOSE_SLACK, EARLY_TOLERANCE, HANG_WATCH, RECOVERY_WATCH, SETTLE_LIMIT, TAIL,
};
use crate::faults::bad_upstream::{BadUpstream, Mode};
use crate::faults::client::{self, request_head, wait_close, Closed};
use crate::faults::load::Load;
use crate::faults::report::{Checks, FaultRow};
use crate::faults::stack::{self, ProxyOpts, ScenarioStack};
use crate::faults::Suite;

/// Scenario 4, The backend killed (SIGKILL) mid-run and restarted on the same socket. Criteria: the
/// `in_flight` connections that had a request half sent are closed within 1 s of the
/// backend's death (no hang); new connections fail within 1 s while it is down; a fresh
/// client is served within 1 s of its restart, by the same proxy process; a load run
/// after the restart has no errors. (Errors of the run spanning the outage are expected
/// and only reported.)
pub(super) fn backend_restart(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(4, "backend-restart");
    let mut checks = Checks::default();
    let mut stack = ScenarioStack::start(s, "4-backend-restart", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "4-backend-restart-outage", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let pid = stack.pid();

    in_flight_closed_on_crash(s, &mut stack, &mut row, &mut checks)?;
    new_connections_fail_while_down(s, &mut stack, &mut checks);

    stack.restart_echo(s)?;
    let addr = stack.addr();
    let resumed = s.on_client({
        let client = s.client.clone();
        async move { client.first_success(addr, RECOVERY_WATCH).await }
    });
    recovery_check(&mut checks, "after the backend's restart", &resumed);
    checks.require(stack.pid() == pid && stack.proxy_alive(), || {
        "the same proxy process serves after the restart".into()
    });
    s.sleep(TAIL)?;
    let outage = load.finish(s.inputs.stop)?;

    let load = Load::start(s, stack.addr(), "4-backend-restart-after", &opts)?;
    s.sleep(opts.warmup + AFTER_RUN)?;
    // Same load as before the crash: descriptors should be back to the count then.
    settle(s, &stack, &mut row)?;
    let after = load.finish(s.inputs.stop)?;
    checks.require(after.errors.total == 0 && after.requests > 0, || {
        format!(
            "good clients without errors after the restart: {} requests, {}",
            after.requests,
            errors_text(&after)
        )
    });
    checks.fact(format!(
        "the run spanning the outage: {} requests, {} (expected while the backend was down)",
        outage.requests,
        errors_text(&outage)
    ));
    row.good_requests = Some(outage.requests + after.requests);
    row.good_errors = Some(outage.errors.total + after.errors.total);
    row.good_p99_us = Some(after.latency_us.p99);
    fd_leak_check(&row, &mut checks);
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 4, the crash: connections with a request in flight (one echoed request, then
/// half of another), the backend killed, and how fast the proxy closes them.
fn in_flight_closed_on_crash(
    s: &Suite<'_>,
    stack: &mut ScenarioStack,
    row: &mut FaultRow,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let (client, addr, k) = (s.client.clone(), stack.addr(), s.scale.in_flight);
    let conns = s.on_client(async move {
        let mut conns = Vec::new();
        for _ in 0..k {
            let mut tls = client.connect(addr, client::PROBE_LIMIT).await?;
            client::echo(&mut tls, b"before the crash").await?;
            tls.write_all(&request_head(IN_FLIGHT_BODY)).await?;
            tls.write_all(&[b'i'; IN_FLIGHT_BODY / 2]).await?;
            tls.flush().await?;
            conns.push(tls);
        }
        Ok::<_, std::io::Error>(conns)
    });
    let conns = conns.context("opening the in-flight connections")?;

    stack.kill_echo()?;
    let closes = s.on_client(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for mut tls in conns {
            tasks.spawn(async move { wait_close(&mut tls, HANG_WATCH).await });
        }
        let mut out = Vec::new();
        while let Some(Ok(c)) = tasks.join_next().await {
            out.push(c);
        }
        out
    });
    let closed_in_time = closes
        .iter()
        .filter(|(c, t)| c.is_closed() && *t <= FAIL_FAST)
        .count();
    let clean = closes.iter().filter(|(c, _)| *c == Closed::Clean).count();
    let slowest = closes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    row.attackers = k as u64;
    row.attackers_closed = Some(closes.iter().filter(|(c, _)| c.is_closed()).count() as u64);
    checks.require(closed_in_time == k, || {
        format!(
            "in-flight connections closed within {FAIL_FAST:?} of the backend's death: \
             {closed_in_time} of {k} (slowest {slowest:.2?})"
        )
    });
    checks.fact(format!(
        "{closed_in_time} of {k} in-flight connections closed within {slowest:.2?} of the \
         kill, {clean} with close_notify"
    ));
    Ok(())
}

/// Scenario 4, the outage: new connections fail fast, and the proxy keeps running.
fn new_connections_fail_while_down(s: &Suite<'_>, stack: &mut ScenarioStack, checks: &mut Checks) {
    let addr = stack.addr();
    let probes = s.on_client({
        let client = s.client.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..DOWN_PROBES {
                let started = Instant::now();
                let result = client.probe(addr, HANG_WATCH).await;
                out.push((result.is_ok(), started.elapsed()));
                // Spread over the outage, so the good clients live through it too.
                tokio::time::sleep(DOWN_PROBE_EVERY).await;
            }
            out
        }
    });
    let served = probes.iter().filter(|(ok, _)| *ok).count();
    let slowest_fail = probes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    checks.require(served == 0 && slowest_fail <= FAIL_FAST, || {
        format!(
            "new connections fail within {FAIL_FAST:?} while the backend is down: {served} of \
             {DOWN_PROBES} served (impossible), slowest failure {slowest_fail:.2?}"
        )
    });
    checks.require(stack.proxy_alive(), || {
        "the proxy keeps running without its backend".into()
    });
}

/// Scenario 5, A misbehaving backend behind a second listener (the good clients keep the echo
/// backend): (a) it reads requests and never answers; (b) it reads 100 KiB/s while clients
/// push request bodies as fast as they can; (c) it writes as fast as it can to clients that
/// never read; then the clients reset. Criteria: (a) the idle timeout (2 s) closes those
/// connections, client and backend side; (b), (c) the proxy's RSS grows by less than
/// [`PUSH_RSS_BOUND_KIB`] while they push; (b) once the backend reads at full speed again,
/// the proxy closes the connections whose clients reset; good-client errors 0; no
/// descriptor left behind.
pub(super) fn bad_backend(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(5, "bad-backend");
    let mut checks = Checks::default();
    let dir = s.scenario_dir("5-bad-backend")?;
    let bad = BadUpstream::start(&dir.join("bad.sock"), &s.inputs.split.server)?;
    let stack = ScenarioStack::start(
        s,
        "5-bad-backend",
        ProxyOpts {
            idle: BAD_IDLE,
            second_upstream: Some(bad.path.clone()),
            ..ProxyOpts::default()
        },
    )?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "5-bad-backend", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let target = BadTarget {
        bad: &bad,
        stack: &stack,
        addr: stack.addrs[1],
        conns: s.scale.bad_backend_conns,
    };

    never_answers(s, &target, &mut row, &mut checks)?;
    reads_slowly(s, &target, &mut row, &mut checks)?;
    client_does_not_read(s, &target, &mut row, &mut checks);
    checks.fact(format!(
        "the bad backend accepted {} connections",
        bad.accepted()
    ));

    settle(s, &stack, &mut row)?;
    s.sleep(TAIL)?;
    let report = load.finish(s.inputs.stop)?;
    good_clients(&mut row, &mut checks, &report);
    fd_leak_check(&row, &mut checks);
    stack.finish(&mut row, &mut checks)?;
    drop(bad);
    row.conclude(&checks);
    Ok(row)
}

/// What each phase of scenario 5 works on: the bad backend, the stack in front of it, the
/// proxy listener that leads to it, and how many connections each phase opens.
struct BadTarget<'a> {
    bad: &'a BadUpstream,
    stack: &'a ScenarioStack,
    addr: SocketAddr,
    conns: usize,
}

/// Scenario 5 (a): a backend that never answers; the idle timeout closes both sides.
fn never_answers(
    s: &Suite<'_>,
    target: &BadTarget<'_>,
    row: &mut FaultRow,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let (bad, bad_addr, k) = (target.bad, target.addr, target.conns);
    bad.set_mode(Mode::Silent);
    let silent = s.on_client({
        let client = s.client.clone();
        async move {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..k {
                let client = client.clone();
                tasks.spawn(async move {
                    let mut tls = client.connect(bad_addr, client::PROBE_LIMIT).await?;
                    tls.write_all(&request_head(5)).await?;
                    tls.write_all(b"hello").await?;
                    tls.flush().await?;
                    Ok::<_, std::io::Error>(wait_close(&mut tls, BAD_IDLE + HANG_WATCH).await)
                });
            }
            let mut out = Vec::new();
            while let Some(Ok(r)) = tasks.join_next().await {
                out.push(r);
            }
            out
        }
    });
    let lo = BAD_IDLE.saturating_sub(EARLY_TOLERANCE);
    let hi = BAD_IDLE + CLOSE_SLACK;
    let by_idle = silent
        .iter()
        .filter(|r| matches!(r, Ok((c, t)) if c.is_closed() && *t >= lo && *t <= hi))
        .count();
    let times: Vec<String> = silent
        .iter()
        .map(|r| match r {
            Ok((c, t)) => format!("{c:?} {t:.2?}"),
            Err(e) => format!("error {e}"),
        })
        .collect();
    checks.require(by_idle == k, || {
        format!(
            "(a) the idle timeout ({BAD_IDLE:?}) closes connections to a silent backend: \
             {by_idle} of {k} closed between {lo:?} and {hi:?} [{}]",
            times.join(", ")
        )
    });
    wait_for(
        s,
        || bad.closed_by_peer(Mode::Silent) >= k as u64,
        SETTLE_LIMIT,
    )?;
    checks.require(bad.closed_by_peer(Mode::Silent) >= k as u64, || {
        format!(
            "(a) the proxy closes the backend side too: {} of {k}",
            bad.closed_by_peer(Mode::Silent)
        )
    });
    row.attackers += k as u64;
    row.add_closed(by_idle as u64);
    Ok(())
}

/// Scenario 5 (b): a fast client into a backend that reads slowly; buffering stays
/// bounded, and the proxy lets go once the clients are gone and the backend reads again.
fn reads_slowly(
    s: &Suite<'_>,
    target: &BadTarget<'_>,
    row: &mut FaultRow,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let (bad, stack, bad_addr, k) = (target.bad, target.stack, target.addr, target.conns);
    let pid = stack.pid();
    bad.set_mode(Mode::SlowReader);
    let push_for = s.scale.push_for;
    let read_before = bad.read_bytes();
    let rss0 = stack.rss_kib().unwrap_or(0);
    let (pushed, peak) = s.on_client({
        let client = s.client.clone();
        async move {
            let push = async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..k {
                    let client = client.clone();
                    tasks.spawn(async move { push_body(&client, bad_addr, push_for).await });
                }
                let mut total = 0u64;
                while let Some(Ok(Ok(n))) = tasks.join_next().await {
                    total += n;
                }
                total
            };
            tokio::join!(push, sample_peak(pid, push_for))
        }
    });
    let read = bad.read_bytes() - read_before;
    let grew = peak.rss.unwrap_or(0).saturating_sub(rss0);
    checks.require(grew <= PUSH_RSS_BOUND_KIB, || {
        format!(
            "(b) bounded buffering from a fast client into a slow backend: RSS grew \
             {grew} KiB (bound {PUSH_RSS_BOUND_KIB})"
        )
    });
    checks.fact(format!(
        "(b) {k} clients pushed {:.1} MiB in {push_for:?}, the backend read {:.1} MiB, \
         RSS +{grew} KiB",
        mib(pushed),
        mib(read)
    ));
    // The clients are gone (reset), but the proxy still relays what it had received from
    // them (its buffers and the kernel's receive queues) at the backend's pace. Let the
    // backend recover, and see the proxy let go of those connections.
    bad.hurry();
    let hurried = Instant::now();
    wait_for(
        s,
        || bad.closed_by_peer(Mode::SlowReader) >= k as u64,
        BAD_SETTLE_LIMIT,
    )?;
    let released = bad.closed_by_peer(Mode::SlowReader);
    let drained = bad.read_bytes() - read_before - read;
    checks.require(released >= k as u64, || {
        format!(
            "(b) the proxy closes the slow backend's connections once their clients are gone \
             and the backend reads again: {released} of {k} within {BAD_SETTLE_LIMIT:?}"
        )
    });
    checks.fact(format!(
        "(b) after the clients' resets the backend still got {:.1} MiB of their bytes; \
         connections released {:.2?} after it read at full speed",
        mib(drained),
        hurried.elapsed()
    ));
    row.proxy_max_rss_kib = stack::max_opt(row.proxy_max_rss_kib, peak.rss);
    Ok(())
}

/// Scenario 5 (c): a fast backend into clients that do not read; buffering stays bounded.
fn client_does_not_read(
    s: &Suite<'_>,
    target: &BadTarget<'_>,
    row: &mut FaultRow,
    checks: &mut Checks,
) {
    let (bad, stack, bad_addr, k) = (target.bad, target.stack, target.addr, target.conns);
    let pid = stack.pid();
    let push_for = s.scale.push_for;
    bad.set_mode(Mode::FastWriter);
    let written_before = bad.written_bytes();
    let rss0 = stack.rss_kib().unwrap_or(0);
    let (stalled, peak) = s.on_client({
        let client = s.client.clone();
        async move {
            let hold = async {
                let mut conns = Vec::new();
                for _ in 0..k {
                    let mut tls = client.connect(bad_addr, client::PROBE_LIMIT).await?;
                    tls.write_all(&request_head(0)).await?;
                    tls.flush().await?;
                    conns.push(tls);
                }
                // Never read; keep them open while the backend pushes.
                tokio::time::sleep(push_for).await;
                Ok::<_, std::io::Error>(conns)
            };
            tokio::join!(hold, sample_peak(pid, push_for))
        }
    });
    let written = bad.written_bytes() - written_before;
    let grew = peak.rss.unwrap_or(0).saturating_sub(rss0);
    checks.require(grew <= PUSH_RSS_BOUND_KIB, || {
        format!(
            "(c) bounded buffering from a fast backend to a client that does not read: RSS \
             grew {grew} KiB (bound {PUSH_RSS_BOUND_KIB})"
        )
    });
    let idle_closed = bad.closed_by_peer(Mode::FastWriter);
    checks.fact(format!(
        "(c) the backend wrote {:.1} MiB into {k} unread connections in {push_for:?} (then \
         stalled), RSS +{grew} KiB, {idle_closed} closed by the idle timeout by then",
        mib(written)
    ));
    row.proxy_max_rss_kib = stack::max_opt(row.proxy_max_rss_kib, peak.rss);
    drop(stalled);
    row.attackers += 2 * k as u64;
}

/// Sends a request head announcing a huge body, then body bytes as fast as they go, for
/// `push_for`; returns the bytes sent. The connection is reset at the end.
async fn push_body(
    client: &client::ProbeClient,
    addr: SocketAddr,
    push_for: Duration,
) -> std::io::Result<u64> {
    let mut tls = client.connect(addr, client::PROBE_LIMIT).await?;
    tls.write_all(&request_head(PUSH_ANNOUNCED_BYTES)).await?;
    let chunk = vec![b'p'; 64 * 1024];
    let until = Instant::now() + push_for;
    let mut sent = 0u64;
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tls.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len() as u64,
            Ok(Err(e)) => return Err(e),
            Err(_) => break,
        }
    }
    client::reset_on_drop(tls.get_ref().0);
    Ok(sent)
}

/// Scenario 4: "fail fast" and "no hang" both mean within this.
const FAIL_FAST: Duration = Duration::from_secs(1);
/// Scenario 4: the in-flight request's body (half of it sent before the crash).
const IN_FLIGHT_BODY: usize = 1000;
/// Scenario 4: probes while the backend is down, and the load run after the restart.
const DOWN_PROBES: usize = 10;
const DOWN_PROBE_EVERY: Duration = Duration::from_millis(100);
const AFTER_RUN: Duration = Duration::from_secs(2);
/// Scenario 5: the idle timeout, and the request body a pushing client announces.
const BAD_IDLE: Duration = Duration::from_secs(2);
const PUSH_ANNOUNCED_BYTES: usize = 1 << 30;
/// Scenario 5: how long the proxy may take to close a recovered backend's connections
/// whose clients reset.
const BAD_SETTLE_LIMIT: Duration = Duration::from_secs(15);
/// Scenario 5: how much the proxy's RSS may grow while clients or backend push. A proxy
/// that buffered without bound would grow by the push rate (hundreds of MiB/s here); one
/// with backpressure holds at most a relay buffer and TLS records per connection.
const PUSH_RSS_BOUND_KIB: u64 = 32 * 1024;
