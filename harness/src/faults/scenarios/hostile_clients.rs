//! Scenarios 1, 2, 3 and 8: clients that attack the proxy itself (slowloris connections,
//! garbage bytes, a connection flood beyond its limits, resets mid-transfer) while the good
//! clients keep their load going.

use std::time::{Duration, Instant};

use super::checks::{
    errors_text, fd_leak_check, good_clients, load_opts, opt, opt_f, recovery_check, rss_check,
    sample_peak, settle, wait_for, CLOSE_SLACK, EARLY_TOLERANCE, RECOVERY_WATCH, SETTLE_LIMIT,
    TAIL,
};
use crate::faults::attack::{self, Garbage, Tally};
use crate::faults::load::Load;
use crate::faults::report::{p99_within, Checks, FaultRow};
use crate::faults::stack::{self, ProxyOpts, ScenarioStack, HANDSHAKE_TIMEOUT};
use crate::faults::terminator::Feature;
use crate::faults::Suite;
use crate::loadgen::Report;
use crate::procfs::{nofile_limits, tree, tree_memory_kib};
use crate::summary::LatencyUnit;

/// Scenario 1, Slowloris: `slowloris` connections opened over one second, half silent, half
/// dripping a ClientHello one byte a second, after a baseline run without them.
/// Criteria: good-client errors 0; good p99 within 2x the baseline; the attackers started
/// on time (within [`ATTACK_START_SLACK`] of the ramp); every attacker closed
/// by the proxy, no earlier than the handshake timeout and within 2 s after it; proxy
/// VmRSS back near its pre-attack value
/// ([`rss_near`](crate::faults::report::rss_near)) once they are gone.
pub(super) fn slowloris(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(1, "slowloris");
    let mut checks = Checks::default();
    let stack = ScenarioStack::start(s, "1-slowloris", ProxyOpts::default())?;
    let n = s.scale.slowloris;
    let watch = HANDSHAKE_TIMEOUT + CLOSE_SLACK;
    // Both runs measure this long: the ramp, the timeout, and a little of the aftermath.
    let window = SLOWLORIS_SPREAD + HANDSHAKE_TIMEOUT + SLOWLORIS_AFTER;
    let opts = load_opts(s);

    // The baseline: the same load for the same time, nobody attacking.
    let load = Load::start(s, stack.addr(), "1-slowloris-baseline", &opts)?;
    s.sleep(opts.warmup + window)?;
    let base = load.finish(s.inputs.stop)?;
    checks.require(base.errors.total == 0, || {
        format!("baseline run without errors: {}", errors_text(&base))
    });
    let baseline = base.latency_us.p99;
    s.set_baseline(baseline);
    row.baseline_p99_us = Some(baseline);

    let load = Load::start(s, stack.addr(), "1-slowloris", &opts)?;
    s.sleep(opts.warmup)?;
    let measured_from = Instant::now();
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let timeouts_metric = "tlsoff_handshake_failures_total{reason=\"timeout\"}";
    let timeouts_before = stack.metric(timeouts_metric);
    let pid = stack.pid();
    let ((outcomes, latest_start), peak) = s.on_client({
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
    let report = load.finish(s.inputs.stop)?;
    good_clients(&mut row, &mut checks, &report);

    let p99 = report.latency_us.p99;
    checks.require(p99_within(p99, baseline, P99_FACTOR), || {
        format!(
            "good p99 within {P99_FACTOR}x the baseline: {} against {}",
            LatencyUnit::show(p99),
            LatencyUnit::show(baseline)
        )
    });
    row.attackers = n as u64;
    row.attackers_closed = Some(tally.closed);
    checks.require(tally.connected == n as u64, || {
        format!("every attacker connects: {} of {n}", tally.connected)
    });
    let no_timeout = || stack.terminator.lacks(Feature::HandshakeTimeout);
    checks.require_unless(no_timeout(), tally.still_open == 0, || {
        format!(
            "every attacker closed within the handshake timeout + {CLOSE_SLACK:?}: {} still \
             open after {watch:?}",
            tally.still_open
        )
    });
    let floor = HANDSHAKE_TIMEOUT.saturating_sub(EARLY_TOLERANCE);
    checks.require_unless(
        no_timeout(),
        tally.first_close.is_none_or(|f| f >= floor),
        || {
            format!(
                "attackers closed by the handshake timeout ({HANDSHAKE_TIMEOUT:?}), not before: \
             first closed after {}",
                tally.close_span()
            )
        },
    );
    checks.fact(format!(
        "{} of {n} attackers closed {} after connecting (handshake timeout {HANDSHAKE_TIMEOUT:?})",
        tally.closed,
        tally.close_span()
    ));
    // A starved attacker (SCHED_IDLE beside other work) attacks late and lightly: its
    // p99 would flatter the proxy, so the row fails instead of passing on a weaker attack.
    checks.require(latest_start <= ATTACK_START_SLACK, || {
        format!(
            "the attack ran as planned: the latest attacker started {:.0} ms after its planned \
             time (limit {ATTACK_START_SLACK:?}); the attackers' CPU ({}) was busy with other \
             work",
            latest_start.as_secs_f64() * 1e3,
            s.inputs.attackers
        )
    });
    checks.fact(format!(
        "attackers on {}, loadgen on CPUs {}; the latest attacker started {:.1} ms after its \
         planned time",
        s.inputs.attackers,
        s.inputs.split.client,
        latest_start.as_secs_f64() * 1e3
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
pub(super) fn garbage(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(2, "garbage");
    let mut checks = Checks::default();
    let stack = ScenarioStack::start(s, "2-garbage", ProxyOpts::default())?;
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
    let report = load.finish(s.inputs.stop)?;
    good_clients(&mut row, &mut checks, &report);

    let all = Tally::of(outcomes.iter().map(|(_, o)| o));
    row.attackers = n as u64;
    row.attackers_closed = Some(all.closed);
    checks.require(all.connected == n as u64, || {
        format!(
            "every garbage connection connects: {} of {n}",
            all.connected
        )
    });
    let mut per_kind = Vec::new();
    for kind in Garbage::ALL {
        let t = Tally::of(outcomes.iter().filter(|(k, _)| *k == kind).map(|(_, o)| o));
        // A silent truncated hello is closed by the handshake timeout alone.
        let lacks = match kind {
            Garbage::TruncatedHello => stack.terminator.lacks(Feature::HandshakeTimeout),
            _ => None,
        };
        checks.require_unless(lacks, t.still_open == 0, || {
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
        "good p99 {} (not a criterion here)",
        LatencyUnit::show(report.latency_us.p99)
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
pub(super) fn flood(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(3, "connection-flood");
    let mut checks = Checks::default();
    let (report_a, max_rss_a) = flood_beyond_max_connections(s, &mut row, &mut checks)?;
    let (total, max_rss) = match s.terminator().lacks(Feature::FdLimit) {
        None => {
            let (report_b, max_rss_b) = flood_beyond_fd_limit(s, &mut row, &mut checks)?;
            (
                report_a.merged(&report_b),
                stack::max_opt(max_rss_a, max_rss_b),
            )
        }
        Some(why) => {
            checks.not_applicable("(b) the flood beyond the descriptor limit", &why);
            (report_a, max_rss_a)
        }
    };
    row.proxy_max_rss_kib = stack::max_opt(row.proxy_max_rss_kib, max_rss);
    good_clients(&mut row, &mut checks, &total);
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 3 (a): a flood beyond `max_connections`; the excess is closed at once. Returns
/// the good clients' report and the proxy's peak RSS.
fn flood_beyond_max_connections(
    s: &mut Suite<'_>,
    row: &mut FaultRow,
    checks: &mut Checks,
) -> anyhow::Result<(Report, Option<u64>)> {
    let n = s.scale.flood;
    let opts = load_opts(s);
    let stack = ScenarioStack::start(
        s,
        "3-flood-max-connections",
        ProxyOpts {
            max_connections: FLOOD_MAX_CONNECTIONS,
            ..ProxyOpts::default()
        },
    )?;
    let load = Load::start(s, stack.addr(), "3-flood-max-connections", &opts)?;
    s.sleep(opts.warmup)?;
    // Phase (b) records its own (it replaces these), unless it is n/a.
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
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
    let report_a = load.finish(s.inputs.stop)?;
    row.proxy_rss_after_kib = stack.rss_kib();
    row.proxy_fds_after = stack.fds();
    let tally = Tally::of(&outcomes);
    let beyond = n.saturating_sub(FLOOD_MAX_CONNECTIONS) as u64;
    let lacks = stack.terminator.lacks(Feature::CloseBeyondMaxConnections);
    checks.require_unless(lacks, tally.closed >= beyond, || {
        format!(
            "(a) connections beyond max_connections {FLOOD_MAX_CONNECTIONS} closed at once: \
             {} of {n} closed within {FLOOD_HOLD:?}, expected at least {beyond}",
            tally.closed
        )
    });
    recovery_check(checks, "(a)", &recovery);
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
    let max_rss = tree_memory_kib(stack.pid(), "VmHWM").ok();
    row.attackers += n as u64;
    row.add_closed(tally.closed);
    stack.finish(row, checks)?;
    Ok((report_a, max_rss))
}

/// Scenario 3 (b): a flood beyond the proxy's descriptor limit; it survives and serves
/// again. Returns the good clients' report and the proxy's peak RSS during the flood.
fn flood_beyond_fd_limit(
    s: &mut Suite<'_>,
    row: &mut FaultRow,
    checks: &mut Checks,
) -> anyhow::Result<(Report, Option<u64>)> {
    let n = s.scale.flood;
    let opts = load_opts(s);
    let mut stack = ScenarioStack::start(
        s,
        "3-flood-fd-limit",
        ProxyOpts {
            nofile: Some(FLOOD_NOFILE),
            ..ProxyOpts::default()
        },
    )?;
    // Every process of the tree (a peer's workers too) runs under the limit.
    let limits: Vec<Option<(String, String)>> =
        tree(stack.pid()).into_iter().map(nofile_limits).collect();
    let want = FLOOD_NOFILE.to_string();
    let name = stack.terminator.name();
    checks.require(
        limits.iter().all(|l| {
            l.as_ref()
                .is_some_and(|(soft, hard)| *soft == want && *hard == want)
        }),
        || format!("(b) {name} runs with RLIMIT_NOFILE {FLOOD_NOFILE}: /proc says {limits:?}"),
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
    settle(s, &stack, row)?;
    s.sleep(TAIL)?;
    let report_b = load.finish(s.inputs.stop)?;
    let tally = Tally::of(&outcomes);
    let reached = peak
        .fds_one_process
        .is_some_and(|f| f + FD_LIMIT_MARGIN >= FLOOD_NOFILE);
    checks.require(reached, || {
        format!(
            "(b) the flood reaches {name}'s descriptor limit {FLOOD_NOFILE}: peak {} fds in \
             one process",
            opt(peak.fds_one_process)
        )
    });
    checks.require(alive, || {
        format!("(b) {name} survives its descriptor limit")
    });
    recovery_check(checks, "(b)", &recovery);
    let stderr = std::fs::read_to_string(&stack.proxy().stderr_log).unwrap_or_default();
    checks.fact(format!(
        "(b) {} of {n} connected, peak {} fds in one process of {FLOOD_NOFILE} ({} in the \
         tree), {} stderr lines; good clients {} requests, {} errors",
        tally.connected,
        opt(peak.fds_one_process),
        opt(peak.fds),
        stderr.lines().count(),
        report_b.requests,
        report_b.errors.total
    ));
    fd_leak_check(row, checks);
    row.attackers += n as u64;
    row.add_closed(tally.closed);
    stack.finish(row, checks)?;
    Ok((report_b, peak.rss))
}

/// Scenario 8, Client resets: `resets` connections reset (SO_LINGER 0) mid-handshake, mid-upload
/// and mid-download, 32 at a time. Criteria: every reset happened as planned; good-client
/// errors 0; after they settle, the proxy's open descriptors and its active-connection
/// gauge are back to their values before (no leaked task or descriptor).
pub(super) fn client_resets(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(8, "client-resets");
    let mut checks = Checks::default();
    let stack = ScenarioStack::start(s, "8-client-resets", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "8-client-resets", &opts)?;
    s.sleep(opts.warmup)?;
    row.proxy_rss_before_kib = stack.rss_kib();
    row.proxy_fds_before = stack.fds();
    let active = "tlsoff_connections_active";
    let active_before = stack.metric(active);
    // Connections the proxy finished with: closed after a handshake, or failed in one.
    let ended = |st: &ScenarioStack| {
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
    row.attackers_closed = stack
        .metrics
        .map(|_| ended(&stack).saturating_sub(ended_before));
    s.sleep(TAIL)?;
    let report = load.finish(s.inputs.stop)?;
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
    let no_metrics = stack.terminator.lacks(Feature::Metrics);
    checks.require_unless(no_metrics, active_after <= active_before, || {
        format!(
            "no connection left open in the proxy: {active} {} before, {} after",
            opt_f(active_before),
            opt_f(active_after)
        )
    });
    checks.fact(format!(
        "{n} resets (handshake/upload/download); the proxy ended {} connections; \
         {active} {} before and after",
        opt(row.attackers_closed),
        opt_f(active_after)
    ));
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// The limit on good clients' p99 under slowloris, against the baseline.
const P99_FACTOR: f64 = 2.0;
/// Attackers are opened evenly over this long (a realistic ramp, not one burst). By default
/// they share the load generator's CPU at `SCHED_IDLE` (see `faults::placement`).
const SLOWLORIS_SPREAD: Duration = Duration::from_secs(4);
/// How late the latest slowloris attacker may start against its planned time: a ramp that
/// slipped by more than this was not the planned attack (the timer wheel alone slips by
/// milliseconds).
const ATTACK_START_SLACK: Duration = Duration::from_millis(250);
/// Scenario 1's measured window goes on this long after the last attacker's timeout.
const SLOWLORIS_AFTER: Duration = Duration::from_millis(1500);
/// Garbage connections in flight at once.
const GARBAGE_CONCURRENCY: usize = 200;
/// Scenario 3: the low connection limit, the descriptor limit, how long the flood holds.
const FLOOD_MAX_CONNECTIONS: usize = 500;
const FLOOD_NOFILE: u64 = 1024;
const FLOOD_HOLD: Duration = Duration::from_millis(1500);
/// "Reached the descriptor limit": within this many of it (the proxy's own descriptors
/// and the kernel's accept timing leave a few unused).
const FD_LIMIT_MARGIN: u64 = 16;
/// Scenario 8: resets in flight at once.
const RESET_CONCURRENCY: usize = 32;
