//! The nine scenarios, each a function from the suite to its row: start a stack, put the
//! good clients on it, do the fault, measure, and check the acceptance criteria (said in
//! each function's doc comment, and in the note when one fails).

use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

use super::attack::{self, Garbage, Tally};
use super::backend::{BadBackend, Mode};
use super::client::{self, request_head, wait_close, within, Closed};
use super::report::{p99_within, rss_near, Checks, FaultRow};
use super::stack::{
    self, fd_count, status_kib, Load, LoadOpts, ProxyOpts, Stack, HANDSHAKE_TIMEOUT,
};
use super::{Scenario, Suite};
use crate::loadgen::Report;

/// Every scenario, in order.
pub(crate) const ALL: [Scenario; 9] = [
    Scenario {
        number: 1,
        name: "slowloris",
        run: slowloris,
    },
    Scenario {
        number: 2,
        name: "garbage",
        run: garbage,
    },
    Scenario {
        number: 3,
        name: "connection-flood",
        run: flood,
    },
    Scenario {
        number: 4,
        name: "backend-restart",
        run: backend_restart,
    },
    Scenario {
        number: 5,
        name: "bad-backend",
        run: bad_backend,
    },
    Scenario {
        number: 6,
        name: "cert-reload",
        run: cert_reload,
    },
    Scenario {
        number: 7,
        name: "sigterm",
        run: sigterm,
    },
    Scenario {
        number: 8,
        name: "client-resets",
        run: client_resets,
    },
    Scenario {
        number: 9,
        name: "soak",
        run: soak,
    },
];

/// Scenario 1, Slowloris: `slowloris` connections opened over one second, half silent, half
/// dripping a ClientHello one byte a second, after a baseline run without them.
/// Criteria: good-client errors 0; good p99 within 2x the baseline; every attacker closed
/// by the proxy, no earlier than the handshake timeout and within 2 s after it; proxy
/// VmRSS back near its pre-attack value ([`rss_near`]) once they are gone.
fn slowloris(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(1, "slowloris");
    let mut checks = Checks::default();
    let stack = Stack::start(s, "1-slowloris", ProxyOpts::default())?;
    let n = s.scale.slowloris;
    let watch = HANDSHAKE_TIMEOUT + CLOSE_SLACK;
    // Both runs measure this long: the ramp, the timeout, and a little of the aftermath.
    let window = SLOWLORIS_SPREAD + HANDSHAKE_TIMEOUT + SLOWLORIS_AFTER;
    let opts = load_opts(s);

    // The baseline: the same load for the same time, nobody attacking.
    let load = Load::start(s, stack.addr(), "1-slowloris-baseline", &opts)?;
    s.sleep(opts.warmup + window)?;
    let base = load.finish(s.ctx.stop)?;
    checks.require(base.errors.total == 0, || {
        format!("baseline run without errors: {}", errors_text(&base))
    });
    let baseline = base.latency_us.p99;
    s.baseline_p99_us = Some(baseline);
    row.baseline_p99_us = Some(baseline);

    let load = Load::start(s, stack.addr(), "1-slowloris", &opts)?;
    s.sleep(opts.warmup)?;
    let measured_from = Instant::now();
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let timeouts_metric = "tlsoff_handshake_failures_total{reason=\"timeout\"}";
    let timeouts_before = stack.metric(timeouts_metric);
    let pid = stack.pid();
    let (outcomes, peak) = s.on_client({
        let addr = stack.addr();
        let seed = s.seed;
        async move {
            let sampler = sample_peak(pid, SLOWLORIS_SPREAD + watch);
            tokio::join!(
                attack::slowloris(addr, n, SLOWLORIS_SPREAD, watch, seed),
                sampler
            )
        }
    });
    let tally = Tally::of(&outcomes);
    settle(s, &stack, &mut row)?;
    s.sleep_until(measured_from + window)?;
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);

    let p99 = report.latency_us.p99;
    checks.require(p99_within(p99, baseline, P99_FACTOR), || {
        format!(
            "good p99 within {P99_FACTOR}x the baseline: {p99:.0} µs against \
             {baseline:.0} µs"
        )
    });
    row.attackers = n as u64;
    row.attackers_closed = tally.closed;
    checks.require(tally.connected == n as u64, || {
        format!("every attacker connects: {} of {n}", tally.connected)
    });
    checks.require(tally.still_open == 0, || {
        format!(
            "every attacker closed within the handshake timeout + {CLOSE_SLACK:?}: {} still \
             open after {watch:?}",
            tally.still_open
        )
    });
    let floor = HANDSHAKE_TIMEOUT.saturating_sub(EARLY_TOLERANCE);
    checks.require(tally.first_close.is_none_or(|f| f >= floor), || {
        format!(
            "attackers closed by the handshake timeout ({HANDSHAKE_TIMEOUT:?}), not before: \
             first closed after {}",
            tally.close_span()
        )
    });
    checks.fact(format!(
        "{} of {n} attackers closed {} after connecting (handshake timeout {HANDSHAKE_TIMEOUT:?})",
        tally.closed,
        tally.close_span()
    ));
    if let (Some(a), Some(b)) = (timeouts_before, stack.metric(timeouts_metric)) {
        checks.fact(format!("proxy counted {} handshake timeouts", b - a));
    }
    rss_check(&row, &mut checks);
    row.proxy_max_rss_kib = peak.rss;
    checks.fact(format!("peak during attack: {} fds", opt(peak.fds)));
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 2, Garbage: `garbage` connections, the five kinds in turn, 200 at a time. Criteria:
/// good-client errors 0; every garbage connection closed by the proxy (at once, or by the
/// handshake timeout for a silent truncated hello); no descriptor left behind.
fn garbage(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(2, "garbage");
    let mut checks = Checks::default();
    let stack = Stack::start(s, "2-garbage", ProxyOpts::default())?;
    let n = s.scale.garbage;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "2-garbage", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let failures_before = stack.metric("tlsoff_handshake_failures_total");
    let watch = HANDSHAKE_TIMEOUT + CLOSE_SLACK;
    let started = Instant::now();
    let outcomes = s.on_client(attack::garbage(
        stack.addr(),
        n,
        GARBAGE_CONCURRENCY,
        watch,
        s.seed,
    ));
    let took = started.elapsed();
    settle(s, &stack, &mut row)?;
    s.sleep(TAIL)?;
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);

    let all = Tally::of(outcomes.iter().map(|(_, o)| o));
    row.attackers = n as u64;
    row.attackers_closed = all.closed;
    checks.require(all.connected == n as u64, || {
        format!(
            "every garbage connection connects: {} of {n}",
            all.connected
        )
    });
    let mut per_kind = Vec::new();
    for kind in Garbage::ALL {
        let t = Tally::of(outcomes.iter().filter(|(k, _)| *k == kind).map(|(_, o)| o));
        checks.require(t.still_open == 0, || {
            format!(
                "every {} connection closed by the proxy: {} of {} still open after {watch:?}",
                kind.name(),
                t.still_open,
                t.connected
            )
        });
        per_kind.push(format!(
            "{} {}/{} ({})",
            kind.name(),
            t.closed,
            t.attempted,
            t.close_span()
        ));
    }
    checks.fact(format!(
        "closed by the proxy, per kind: {}; {n} connections in {:.1} s",
        per_kind.join(", "),
        took.as_secs_f64()
    ));
    if let (Some(a), Some(b)) = (
        failures_before,
        stack.metric("tlsoff_handshake_failures_total"),
    ) {
        checks.fact(format!("proxy counted {} failed handshakes", b - a));
    }
    fd_leak_check(&row, &mut checks);
    checks.fact(format!(
        "good p99 {:.0} µs (not a criterion here)",
        report.latency_us.p99
    ));
    if s.scale.short {
        checks.unchecked(format!(
            "the full count: short mode sends {n} garbage connections, the full suite 10000"
        ));
    }
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 3, Connection flood: (a) `flood` silent connections against `max_connections` 500, and
/// (b) as many against a proxy whose descriptor limit is 1024 (soft and hard). Each is held
/// 1.5 s, then dropped. Criteria: (a) the connections beyond the limit closed at once;
/// (b) the proxy reached its descriptor limit and kept running; both: good-client errors 0
/// and a fresh client served within 1 s of the flood stopping. The row's RSS and fd
/// columns are phase (b)'s.
fn flood(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(3, "connection-flood");
    let mut checks = Checks::default();
    let n = s.scale.flood;
    let opts = load_opts(s);

    // (a) max_connections.
    let stack = Stack::start(
        s,
        "3-flood-max-connections",
        ProxyOpts {
            max_connections: FLOOD_MAX_CONNECTIONS,
            ..ProxyOpts::default()
        },
    )?;
    let load = Load::start(s, stack.addr(), "3-flood-max-connections", &opts)?;
    s.sleep(opts.warmup)?;
    let refused_metric = "tlsoff_connections_refused_total";
    let refused_before = stack.metric(refused_metric);
    let (outcomes, recovery) = s.on_client({
        let (addr, client) = (stack.addr(), s.client.clone());
        async move {
            let outcomes = attack::flood(addr, n, FLOOD_HOLD).await;
            // The flood's sockets are closed now: time a fresh client.
            (outcomes, client.first_success(addr, RECOVERY_WATCH).await)
        }
    });
    let refused = stack
        .metric(refused_metric)
        .zip(refused_before)
        .map(|(a, b)| a - b);
    s.sleep(TAIL)?;
    let report_a = load.finish(s.ctx.stop)?;
    let tally = Tally::of(&outcomes);
    let beyond = n.saturating_sub(FLOOD_MAX_CONNECTIONS) as u64;
    checks.require(tally.closed >= beyond, || {
        format!(
            "(a) connections beyond max_connections {FLOOD_MAX_CONNECTIONS} closed at once: \
             {} of {n} closed within {FLOOD_HOLD:?}, expected at least {beyond}",
            tally.closed
        )
    });
    recovery_check(&mut checks, "(a)", &recovery);
    checks.fact(format!(
        "(a) {} of {n} connected, {} closed at once ({}), proxy counted {} refusals; \
         good clients {} requests, {} errors",
        tally.connected,
        tally.closed,
        tally.close_span(),
        refused.map_or("?".into(), |r| format!("{r:.0}")),
        report_a.requests,
        report_a.errors.total
    ));
    let mut max_rss = status_kib(stack.pid(), "VmHWM");
    row.attackers += n as u64;
    row.attackers_closed += tally.closed;
    stack.finish(&mut row, &mut checks)?;

    // (b) the descriptor limit.
    let mut stack = Stack::start(
        s,
        "3-flood-fd-limit",
        ProxyOpts {
            nofile: Some(FLOOD_NOFILE),
            ..ProxyOpts::default()
        },
    )?;
    let limits = stack::nofile_limits(stack.pid());
    let want = FLOOD_NOFILE.to_string();
    checks.require(
        limits
            .as_ref()
            .is_some_and(|(soft, hard)| *soft == want && *hard == want),
        || format!("(b) the proxy runs with RLIMIT_NOFILE {FLOOD_NOFILE}: /proc says {limits:?}"),
    );
    let load = Load::start(s, stack.addr(), "3-flood-fd-limit", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let pid = stack.pid();
    let (outcomes, peak, recovery) = s.on_client({
        let (addr, client) = (stack.addr(), s.client.clone());
        async move {
            let (outcomes, peak) = tokio::join!(
                attack::flood(addr, n, FLOOD_HOLD),
                sample_peak(pid, FLOOD_HOLD)
            );
            let recovery = client.first_success(addr, RECOVERY_WATCH).await;
            (outcomes, peak, recovery)
        }
    });
    let alive = stack.proxy_alive();
    settle(s, &stack, &mut row)?;
    s.sleep(TAIL)?;
    let report_b = load.finish(s.ctx.stop)?;
    let tally_b = Tally::of(&outcomes);
    let reached = peak
        .fds
        .is_some_and(|f| f + FD_LIMIT_MARGIN >= FLOOD_NOFILE);
    checks.require(reached, || {
        format!(
            "(b) the flood reaches the proxy's descriptor limit {FLOOD_NOFILE}: peak {} fds",
            opt(peak.fds)
        )
    });
    checks.require(alive, || {
        "(b) the proxy survives its descriptor limit".into()
    });
    recovery_check(&mut checks, "(b)", &recovery);
    let stderr = std::fs::read_to_string(&stack.proxy.stderr_log).unwrap_or_default();
    checks.fact(format!(
        "(b) {} of {n} connected, peak {} proxy fds of {FLOOD_NOFILE}, proxy logged \
         `accept failed` {} time(s); good clients {} requests, {} errors",
        tally_b.connected,
        opt(peak.fds),
        stderr.matches("accept failed").count(),
        report_b.requests,
        report_b.errors.total
    ));
    fd_leak_check(&row, &mut checks);
    row.attackers += n as u64;
    row.attackers_closed += tally_b.closed;
    max_rss = stack::max_opt(max_rss, peak.rss);
    stack.finish(&mut row, &mut checks)?;
    row.proxy_max_rss_kib = stack::max_opt(row.proxy_max_rss_kib, max_rss);

    let total = combine(&report_a, &report_b);
    good_clients(&mut row, &mut checks, &total);
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 4, The backend killed (SIGKILL) mid-run and restarted on the same socket. Criteria: the
/// `in_flight` connections that had a request half sent are closed within 1 s of the
/// backend's death (no hang); new connections fail within 1 s while it is down; a fresh
/// client is served within 1 s of its restart, by the same proxy process; a load run
/// after the restart has no errors. (Errors of the run spanning the outage are expected
/// and only reported.)
fn backend_restart(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(4, "backend-restart");
    let mut checks = Checks::default();
    let mut stack = Stack::start(s, "4-backend-restart", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "4-backend-restart-outage", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let pid = stack.pid();
    let k = s.scale.in_flight;

    // Connections with a request in flight: one echoed request, then half of another.
    let client = s.client.clone();
    let addr = stack.addr();
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
    row.attackers_closed = closes.iter().filter(|(c, _)| c.is_closed()).count() as u64;
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

    // New connections while it is down.
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

    stack.restart_echo(s)?;
    let resumed = s.on_client({
        let client = s.client.clone();
        async move { client.first_success(addr, RECOVERY_WATCH).await }
    });
    recovery_check(&mut checks, "after the backend's restart", &resumed);
    checks.require(stack.pid() == pid && stack.proxy_alive(), || {
        "the same proxy process serves after the restart".into()
    });
    s.sleep(TAIL)?;
    let outage = load.finish(s.ctx.stop)?;

    let load = Load::start(s, stack.addr(), "4-backend-restart-after", &opts)?;
    s.sleep(opts.warmup + AFTER_RUN)?;
    // Same load as before the crash: descriptors should be back to the count then.
    settle(s, &stack, &mut row)?;
    let after = load.finish(s.ctx.stop)?;
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

/// Scenario 5, A misbehaving backend behind a second listener (the good clients keep the echo
/// backend): (a) it reads requests and never answers; (b) it reads 100 KiB/s while clients
/// push request bodies as fast as they can; (c) it writes as fast as it can to clients that
/// never read; then the clients reset. Criteria: (a) the idle timeout (2 s) closes those
/// connections, client and backend side; (b), (c) the proxy's RSS grows by less than
/// [`PUSH_RSS_BOUND_KIB`] while they push; (b) once the backend reads at full speed again,
/// the proxy closes the connections whose clients reset; good-client errors 0; no
/// descriptor left behind.
fn bad_backend(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(5, "bad-backend");
    let mut checks = Checks::default();
    let dir = s.scenario_dir("5-bad-backend")?;
    let bad = BadBackend::start(&dir.join("bad.sock"), &s.ctx.split.server)?;
    let stack = Stack::start(
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
    let k = s.scale.bad_backend_conns;
    let bad_addr = stack.addrs[1];
    let pid = stack.pid();

    // (a) never answers.
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
    row.attackers_closed += by_idle as u64;

    // (b) fast client, slow backend.
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

    // (c) fast backend, client that does not read.
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
    checks.fact(format!(
        "the bad backend accepted {} connections",
        bad.accepted()
    ));

    settle(s, &stack, &mut row)?;
    s.sleep(TAIL)?;
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);
    fd_leak_check(&row, &mut checks);
    stack.finish(&mut row, &mut checks)?;
    drop(bad);
    row.conclude(&checks);
    Ok(row)
}

/// Sends a request head announcing a huge body, then body bytes as fast as they go, for
/// `push_for`; returns the bytes sent. The connection is reset at the end.
async fn push_body(
    client: &client::TlsClient,
    addr: std::net::SocketAddr,
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

/// Scenario 6, Certificate reload: every second for `reload_for`, a new certificate (same CA) and
/// SIGHUP; once, half-way, a corrupt certificate file instead. Good clients open a new
/// connection (and handshake) per request. Criteria: zero failed requests; every good
/// reload applied and the corrupt one refused (counted from the proxy's log); after the
/// corrupt one the proxy still serves the previous certificate; at the end it serves the
/// newest one.
fn cert_reload(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(6, "cert-reload");
    let mut checks = Checks::default();
    let stack = Stack::start(s, "6-cert-reload", ProxyOpts::default())?;
    let opts = LoadOpts {
        rate: RELOAD_RATE,
        keepalive: false,
        ..load_opts(s)
    };
    let load = Load::start(s, stack.addr(), "6-cert-reload", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let reloads = s.scale.reload_for.as_secs().max(2) as usize;
    let corrupt_at = reloads / 2;
    let mut current = stack.leaf.clone();
    let (mut good_sent, mut bad_sent) = (0usize, 0usize);
    let mut kept_old = None;
    let pid = Pid::from_raw(stack.pid() as i32);
    let started = Instant::now();
    for i in 1..=reloads {
        s.sleep_until(started + RELOAD_EVERY * i as u32)?;
        if i == corrupt_at {
            stack::write_atomically(&stack.cert.cert, CORRUPT_PEM.as_bytes(), 0o644)?;
            kill(pid, Signal::SIGHUP).context("sending SIGHUP to the proxy")?;
            bad_sent += 1;
            s.sleep(RELOAD_SETTLE)?;
            let client = s.client.clone();
            let addr = stack.addr();
            let served = s.on_client(async move { client.served_cert(addr).await });
            kept_old = Some(matches!(&served, Ok(der) if *der == current.der));
            if let Err(e) = &served {
                checks.fact(format!("handshake after the corrupt reload failed: {e}"));
            }
        } else {
            let leaf = s.pki.issue()?;
            leaf.install(&stack.cert)?;
            kill(pid, Signal::SIGHUP).context("sending SIGHUP to the proxy")?;
            good_sent += 1;
            current = leaf;
        }
    }
    s.sleep(RELOAD_SETTLE)?;
    let served = s.on_client({
        let (client, addr) = (s.client.clone(), stack.addr());
        async move { client.served_cert(addr).await }
    });
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);
    row.proxy_rss_after_kib = stack.rss_kib();
    row.proxy_fds_after = stack.fds();

    let log = std::fs::read_to_string(&stack.proxy.stderr_log).unwrap_or_default();
    let ok = log
        .matches("certificates and TLS settings reloaded")
        .count();
    let failed = log.matches("reload failed").count();
    checks.require(ok == good_sent, || {
        format!("every good reload applied: the proxy logged {ok} of {good_sent}")
    });
    checks.require(failed == bad_sent, || {
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
        "{reloads} SIGHUPs in {:.0} s ({good_sent} new certificates, 1 corrupt at #{corrupt_at}); \
         good clients: a handshake per request at {RELOAD_RATE}/s",
        started.elapsed().as_secs_f64()
    ));
    if s.scale.short {
        checks.unchecked(format!(
            "30 s of reloads: short mode reloads for {:?}",
            s.scale.reload_for
        ));
    }
    if let Some(line) = log.lines().find(|l| l.contains("reload failed")) {
        checks.fact(format!("proxy log: {}", line.trim()));
    }
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 7, SIGTERM under load, with one slow request (a body sent in pieces over 2 s) in flight
/// at the signal. Criteria: good-client errors 0 (requests in flight complete); the slow
/// request completes and echoes correctly; no new connection is accepted after the signal;
/// exit code 0, within the grace period.
fn sigterm(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(7, "sigterm");
    let mut checks = Checks::default();
    let grace = s.scale.grace;
    let mut stack = Stack::start(
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
    let slow = {
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
    };
    // The signal lands while the slow request is still sending its body.
    s.sleep(SLOW_PIECE_EVERY * 2)?;
    // The proxy is gone once it has stopped: read its peak memory while it still runs.
    row.proxy_max_rss_kib = status_kib(stack.pid(), "VmHWM");
    let signalled = Instant::now();
    kill(Pid::from_raw(stack.pid() as i32), Signal::SIGTERM).context("sending SIGTERM")?;
    s.sleep(AFTER_SIGNAL)?;
    let attempts = s.on_client({
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
    });
    s.sleep_until(signalled + DRAIN_LOAD)?;
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);
    let slow = match s.rt.block_on(slow) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let status = stack.proxy.wait_for(grace + CLOSE_SLACK, s.ctx.stop)?;
    let exited_after = signalled.elapsed();
    checks.require(slow.is_ok(), || {
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
    match status {
        Some(status) => {
            checks.require(status.success(), || {
                format!(
                    "exit code 0 after SIGTERM: {}{}",
                    crate::procs::describe(status),
                    stack.proxy.stderr_tail()
                )
            });
            checks.require(exited_after <= grace + EXIT_SLACK, || {
                format!("exit within the grace period ({grace:?}): after {exited_after:.2?}")
            });
            checks.fact(format!(
                "exited {} {exited_after:.2?} after SIGTERM (grace {grace:?}); {NEW_AFTER_SIGNAL} \
                 connection attempts after it refused",
                crate::procs::describe(status)
            ));
        }
        None => {
            checks.require(false, || {
                format!("the proxy exits after SIGTERM: still running {exited_after:.2?} later")
            });
        }
    }
    row.proxy_max_rss_kib = stack::max_opt(row.proxy_max_rss_kib, status_kib(stack.pid(), "VmHWM"));
    stack.expect_exit();
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 8, Client resets: `resets` connections reset (SO_LINGER 0) mid-handshake, mid-upload
/// and mid-download, 32 at a time. Criteria: every reset happened as planned; good-client
/// errors 0; after they settle, the proxy's open descriptors and its active-connection
/// gauge are back to their values before (no leaked task or descriptor).
fn client_resets(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(8, "client-resets");
    let mut checks = Checks::default();
    let stack = Stack::start(s, "8-client-resets", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "8-client-resets", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let active = "tlsoff_connections_active";
    let active_before = stack.metric(active);
    // Connections the proxy finished with: closed after a handshake, or failed in one.
    let ended = |st: &Stack| {
        st.metric("tlsoff_connections_closed_total")
            .map_or(0, |v| v as u64)
            + st.metric("tlsoff_handshake_failures_total")
                .map_or(0, |v| v as u64)
    };
    let ended_before = ended(&stack);
    let n = s.scale.resets;
    let (reached, errors) = s.on_client(attack::resets(
        s.client.clone(),
        stack.addr(),
        n,
        RESET_CONCURRENCY,
        s.seed,
    ));
    settle(s, &stack, &mut row)?;
    wait_for(s, || stack.metric(active) <= active_before, SETTLE_LIMIT)?;
    let active_after = stack.metric(active);
    row.attackers = n as u64;
    row.attackers_closed = ended(&stack).saturating_sub(ended_before);
    s.sleep(TAIL)?;
    let report = load.finish(s.ctx.stop)?;
    good_clients(&mut row, &mut checks, &report);
    checks.require(reached == n, || {
        format!(
            "every reset happens as planned: {reached} of {n} ({})",
            errors
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    fd_leak_check(&row, &mut checks);
    checks.require(active_after <= active_before, || {
        format!(
            "no connection left open in the proxy: {active} {} before, {} after",
            opt_f(active_before),
            opt_f(active_after)
        )
    });
    checks.fact(format!(
        "{n} resets (handshake/upload/download); the proxy ended {} connections; \
         {active} {} before and after",
        row.attackers_closed,
        opt_f(active_after)
    ));
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 9, Soak: the good-client load (plus a trickle of new connections, one handshake each)
/// for the soak duration, proxy RSS and descriptors sampled into `soak.csv`. Criteria:
/// good-client errors 0; RSS flat (mean of the last quarter within 10% + 4 MiB of the
/// second quarter's); descriptors flat (median of the last quarter within 4 of the second
/// quarter's); the proxy never exits.
fn soak(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(9, "soak");
    let mut checks = Checks::default();
    let duration = s.ctx.soak.unwrap_or(Duration::from_secs(1800));
    let mut stack = Stack::start(s, "9-soak", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "9-soak", &opts)?;
    let churn = Load::start(
        s,
        stack.addr(),
        "9-soak-churn",
        &LoadOpts {
            rate: SOAK_CHURN_RATE,
            connections: 2,
            keepalive: false,
            ..opts.clone()
        },
    )?;
    s.sleep(opts.warmup)?;
    let every = (duration / SOAK_SAMPLES).max(Duration::from_secs(1));
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let path = s.ctx.out_dir.join("soak.csv");
    let mut csv =
        csv::Writer::from_path(&path).with_context(|| format!("creating {}", path.display()))?;
    csv.write_record(["elapsed_s", "proxy_rss_kib", "proxy_fds"])?;
    let mut died = false;
    while started.elapsed() < duration {
        if !stack.proxy_alive() {
            died = true;
            break;
        }
        let (rss, fds) = (stack.rss_kib().unwrap_or(0), stack.fds().unwrap_or(0));
        let t = started.elapsed().as_secs_f64();
        samples.push((t, rss, fds));
        csv.write_record([format!("{t:.1}"), rss.to_string(), fds.to_string()])?;
        csv.flush()?;
        s.sleep(every.min(duration.saturating_sub(started.elapsed())))?;
    }
    let report = load.finish(s.ctx.stop)?;
    let churned = churn.finish(s.ctx.stop)?;
    let total = combine(&report, &churned);
    good_clients(&mut row, &mut checks, &total);
    checks.require(!died, || "the proxy runs for the whole soak".into());
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let fds: Vec<u64> = samples.iter().map(|s| s.2).collect();
    row.proxy_rss_before_kib = rss.first().copied();
    row.proxy_rss_after_kib = rss.last().copied();
    row.proxy_fds_before = fds.first().copied();
    row.proxy_fds_after = fds.last().copied();
    if let Err(why) = flat_mean(&rss, SOAK_RSS_FRACTION, SOAK_RSS_SLACK_KIB) {
        checks.require(false, || format!("RSS flat over the soak: {why}"));
    }
    if let Err(why) = flat_median(&fds, SOAK_FD_SLACK) {
        checks.require(false, || format!("descriptors flat over the soak: {why}"));
    }
    checks.fact(format!(
        "{} samples every {every:?} over {:.0} s into {}",
        samples.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    ));
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// The default good-client load of the suite.
fn load_opts(s: &Suite<'_>) -> LoadOpts {
    LoadOpts {
        rate: s.scale.rate,
        connections: s.scale.connections,
        keepalive: true,
        warmup: WARMUP,
        body: GOOD_BODY_BYTES,
    }
}

/// Fills the good-client columns and checks that they had no error.
fn good_clients(row: &mut FaultRow, checks: &mut Checks, report: &Report) {
    row.good_requests = Some(report.requests);
    row.good_errors = Some(report.errors.total);
    row.good_p99_us = Some(report.latency_us.p99);
    checks.require(report.requests > 0, || {
        "good clients complete requests: none did".into()
    });
    checks.require(report.errors.total == 0, || {
        format!("good-client errors 0: {}", errors_text(report))
    });
}

/// Two loadgen reports as one: counts added, the worse p99.
fn combine(a: &Report, b: &Report) -> Report {
    let mut out = a.clone();
    out.requests += b.requests;
    out.latency_us.p99 = a.latency_us.p99.max(b.latency_us.p99);
    let (x, y) = (&mut out.errors, &b.errors);
    x.connect += y.connect;
    x.read += y.read;
    x.write += y.write;
    x.timeout += y.timeout;
    x.status += y.status;
    x.body_mismatch += y.body_mismatch;
    x.total += y.total;
    out
}

fn errors_text(r: &Report) -> String {
    let e = &r.errors;
    format!(
        "{} errors (connect {}, read {}, write {}, timeout {}, status {}, body mismatch {})",
        e.total, e.connect, e.read, e.write, e.timeout, e.status, e.body_mismatch
    )
}

/// Waits until the proxy's descriptors are back to their count before the fault (up to
/// [`SETTLE_LIMIT`]), then records descriptors and RSS "after".
fn settle(s: &Suite<'_>, stack: &Stack, row: &mut FaultRow) -> anyhow::Result<()> {
    let target = row.proxy_fds_before.unwrap_or(0);
    row.proxy_fds_after = stack.settle_fds(target, SETTLE_LIMIT, s.ctx.stop)?;
    // An allocator hands freed memory back to the OS lazily (mimalloc purges freed pages
    // after a delay): give RSS up to RSS_SETTLE_LIMIT to come back before it is judged.
    let deadline = Instant::now() + RSS_SETTLE_LIMIT;
    loop {
        row.proxy_rss_after_kib = stack.rss_kib();
        let back = match (row.proxy_rss_before_kib, row.proxy_rss_after_kib) {
            (Some(before), Some(after)) => rss_near(before, after),
            _ => true,
        };
        if back || Instant::now() >= deadline {
            return Ok(());
        }
        s.sleep(Duration::from_millis(100))?;
    }
}

fn fd_leak_check(row: &FaultRow, checks: &mut Checks) {
    if let (Some(before), Some(after)) = (row.proxy_fds_before, row.proxy_fds_after) {
        checks.require(after <= before, || {
            format!(
                "no descriptor left behind: {before} open before, {after} after \
                 {SETTLE_LIMIT:?} to settle"
            )
        });
    }
}

fn rss_check(row: &FaultRow, checks: &mut Checks) {
    if let (Some(before), Some(after)) = (row.proxy_rss_before_kib, row.proxy_rss_after_kib) {
        checks.require(rss_near(before, after), || {
            format!(
                "proxy RSS back near its value before the attack: {before} KiB before, \
                 {after} KiB after"
            )
        });
    }
}

fn recovery_check(checks: &mut Checks, phase: &str, recovery: &Result<Duration, String>) {
    match recovery {
        Ok(took) => {
            checks.require(*took <= RECOVERY, || {
                format!("{phase} a fresh client served within {RECOVERY:?}: took {took:.2?}")
            });
            checks.fact(format!(
                "{phase} a fresh client was served {took:.2?} later"
            ));
        }
        Err(e) => {
            checks.require(false, || {
                format!(
                    "{phase} a fresh client served within {RECOVERY:?}: none within \
                     {RECOVERY_WATCH:?} ({e})"
                )
            });
        }
    }
}

/// Polls `ok` every 20 ms for up to `limit`.
fn wait_for(s: &Suite<'_>, ok: impl Fn() -> bool, limit: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + limit;
    while !ok() && Instant::now() < until {
        s.sleep(Duration::from_millis(20))?;
    }
    Ok(())
}

/// Peak VmRSS and descriptor count of a process over a period.
#[derive(Debug, Clone, Copy, Default)]
struct Peak {
    rss: Option<u64>,
    fds: Option<u64>,
}

/// Samples `pid` every [`SAMPLE_EVERY`] for `period` (on the attackers' runtime).
async fn sample_peak(pid: u32, period: Duration) -> Peak {
    let until = Instant::now() + period;
    let mut peak = Peak::default();
    loop {
        peak.rss = stack::max_opt(peak.rss, status_kib(pid, "VmRSS"));
        peak.fds = stack::max_opt(peak.fds, fd_count(pid));
        if Instant::now() >= until {
            return peak;
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// Quarters of a series: the second quarter is the reference (warmed up), the last one
/// is compared with it.
fn quarters(v: &[u64]) -> Option<(&[u64], &[u64])> {
    let q = v.len() / 4;
    (q >= 1).then(|| (&v[q..2 * q], &v[v.len() - q..]))
}

/// Flat when the last quarter's mean is within `fraction` + `slack` of the second's.
fn flat_mean(v: &[u64], fraction: f64, slack: u64) -> Result<(), String> {
    let Some((reference, last)) = quarters(v) else {
        return Err(format!("{} samples are too few to judge", v.len()));
    };
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let (a, b) = (mean(reference), mean(last));
    if b <= a * (1.0 + fraction) + slack as f64 {
        Ok(())
    } else {
        Err(format!(
            "mean {b:.0} in the last quarter against {a:.0} in the second \
             (allowed +{:.0}% + {slack})",
            fraction * 100.0
        ))
    }
}

/// Flat when the last quarter's median is within `slack` of the second's.
fn flat_median(v: &[u64], slack: u64) -> Result<(), String> {
    let Some((reference, last)) = quarters(v) else {
        return Err(format!("{} samples are too few to judge", v.len()));
    };
    let median = |s: &[u64]| {
        let mut s = s.to_vec();
        s.sort_unstable();
        s[s.len() / 2]
    };
    let (a, b) = (median(reference), median(last));
    if b <= a + slack {
        Ok(())
    } else {
        Err(format!(
            "median {b} in the last quarter against {a} in the second (allowed +{slack})"
        ))
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn opt_f(v: Option<f64>) -> String {
    v.map_or("?".into(), |v| format!("{v:.0}"))
}

/// Good clients' warm-up before each measured window.
const WARMUP: Duration = Duration::from_secs(1);
/// Good clients' request body: small, as the issue asks.
const GOOD_BODY_BYTES: u64 = 64;
/// The issue's limit on good clients' p99 under slowloris, against the baseline.
const P99_FACTOR: f64 = 2.0;
/// Attackers are opened evenly over this long (a realistic ramp, not one burst). They run
/// on the load generator's CPU (the servers have the other one), so a faster ramp starves
/// the good clients' own load generator and inflates their p99 on the client side.
const SLOWLORIS_SPREAD: Duration = Duration::from_secs(4);
/// Scenario 1's measured window goes on this long after the last attacker's timeout.
const SLOWLORIS_AFTER: Duration = Duration::from_millis(1500);
/// How long after its deadline a connection may take to be seen closed.
const CLOSE_SLACK: Duration = Duration::from_secs(2);
/// A timeout-driven close may come this much before its nominal time (timer granularity
/// and the time between our connect and the proxy's accept go the other way).
const EARLY_TOLERANCE: Duration = Duration::from_millis(100);
/// How long descriptors and gauges may take to return after a fault.
const SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// How long RSS may take to come back near its value before a fault, once the fault's
/// connections are gone.
const RSS_SETTLE_LIMIT: Duration = Duration::from_secs(5);
/// Load kept running after a fault, so the measured window covers its aftermath.
const TAIL: Duration = Duration::from_millis(500);
/// Garbage connections in flight at once.
const GARBAGE_CONCURRENCY: usize = 200;
/// Scenario 3: the low connection limit, the descriptor limit, how long the flood holds.
const FLOOD_MAX_CONNECTIONS: usize = 500;
const FLOOD_NOFILE: u64 = 1024;
const FLOOD_HOLD: Duration = Duration::from_millis(1500);
/// "Reached the descriptor limit": within this many of it (the proxy's own descriptors
/// and the kernel's accept timing leave a few unused).
const FD_LIMIT_MARGIN: u64 = 16;
/// The issue's recovery limit once a fault ends, and how long to keep trying after it.
const RECOVERY: Duration = Duration::from_secs(1);
const RECOVERY_WATCH: Duration = Duration::from_secs(5);
/// Scenario 4: "fail fast" and "no hang" both mean within this.
const FAIL_FAST: Duration = Duration::from_secs(1);
/// Watch on a connection that should close; beyond it, it hangs.
const HANG_WATCH: Duration = Duration::from_secs(3);
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
pub const PUSH_RSS_BOUND_KIB: u64 = 32 * 1024;
/// Scenario 6: reload period, the handshake rate of the good clients, the wait before
/// asking which certificate is served.
const RELOAD_EVERY: Duration = Duration::from_secs(1);
const RELOAD_RATE: u32 = 300;
const RELOAD_SETTLE: Duration = Duration::from_millis(300);
/// A file that looks like a certificate and is not one.
const CORRUPT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
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
/// Scenario 8: resets in flight at once.
const RESET_CONCURRENCY: usize = 32;
/// Scenario 9: samples over the run, the churn load's rate, the flatness rules.
const SOAK_SAMPLES: u32 = 120;
const SOAK_CHURN_RATE: u32 = 20;
const SOAK_RSS_FRACTION: f64 = 0.10;
const SOAK_RSS_SLACK_KIB: u64 = 4 * 1024;
const SOAK_FD_SLACK: u64 = 4;
/// Sampling period of peaks during an attack.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    /// A loadgen report (schema 1), trimmed to what the harness reads.
    const REPORT: &str = r#"{"schema": 1, "connections_opened": 10, "duration_s": 5.0,
        "warmup_s": 1.0, "rate": 1000.0, "body_bytes": 100, "requests": 5000, "rps": 1000.0,
        "late_requests": 0,
        "latency_us": {"mean": 300.0, "stdev": 50.0, "min": 100, "p50": 280, "p90": 400,
                       "p99": 700, "p999": 900, "max": 1200},
        "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0,
                   "body_mismatch": 0, "total": 0},
        "tls": null,
        "cpu": {"user_s": 0.1, "sys_s": 0.1, "utilization": 0.1, "saturated": false}}"#;

    #[test]
    fn scenarios_are_numbered_in_order() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.number as usize, i + 1);
        }
    }

    #[test]
    fn flatness_rules() {
        let steady = [100, 120, 121, 119, 122, 120, 121, 123];
        assert!(flat_mean(&steady, 0.10, 0).is_ok());
        let growing = [100, 120, 130, 140, 150, 160, 170, 180];
        let why = flat_mean(&growing, 0.10, 0).unwrap_err();
        assert!(why.contains("last quarter"), "{why}");
        assert!(flat_mean(&growing, 0.10, 100).is_ok(), "slack absorbs it");
        assert!(flat_mean(&[1, 2], 0.1, 0).is_err(), "too few samples");
        assert!(flat_median(&[20, 22, 22, 22, 21, 22, 23, 22], 4).is_ok());
        assert!(flat_median(&[20, 22, 22, 22, 30, 31, 32, 33], 4).is_err());
    }

    #[test]
    fn combined_reports_add_counts_and_keep_the_worse_p99() {
        let a = Report::parse(REPORT).unwrap();
        let mut b = a.clone();
        b.latency_us.p99 = 900.0;
        b.errors.read = 2;
        b.errors.total = 2;
        let c = combine(&a, &b);
        assert_eq!(c.requests, 2 * a.requests);
        assert_eq!(c.latency_us.p99, 900.0);
        assert_eq!((c.errors.read, c.errors.total), (2, 2));
        assert!(errors_text(&c).starts_with("2 errors (connect 0, read 2"));
    }
}
