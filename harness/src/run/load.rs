//! One load measurement (sweep and handshakes): the stack started, the load generator (one
//! process or several, see [`super::clients`]) run on the client CPUs, the servers' CPU
//! time read after its warm-up and after it exits.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::clients::{keep_distribution, Clients};
use super::resources::{measurement_label, Resources};
use super::rows::{base_row, fill, handshake_checks};
use crate::loadgen;
use crate::output::{Num, Row, Status};
use crate::plan::{Kind, Measurement};
use crate::procs::Ledger;
use crate::stack::recipe::Role;
use crate::stack::Stack;

/// One measurement, all processes stopped by the time it returns (their `Drop` kills
/// them on every error path). `Err(Interrupted)` on a signal, any other `Err` becomes an
/// error row.
pub(super) fn measure(
    res: &Resources<'_>,
    m: &Measurement,
    ledger: &mut Ledger,
) -> anyhow::Result<Row> {
    let plan = res.plan;
    let label = measurement_label(m, plan.target.is_some());
    let stem = res.logs.join(&label);
    let mut row = base_row(res, m);
    let (url, mut stack) = match &plan.target {
        Some(target) => (target.clone(), None),
        None => {
            let stack = res.start_stack(m, &stem, &label, ledger)?;
            row.server_cpus = Some(stack.cpus.clone());
            (stack.url.clone(), Some(stack))
        }
    };
    let mut clients = Clients::spawn(res, m, &url, &stem, &label, ledger)?;
    row.client_cpus = Some(clients.cpus(res.stop)?);
    let watched = watch(res, &mut clients, stack.as_ref())?;
    let (report, json) = clients.report(&watched.statuses, &stem)?;
    if !watched.warm {
        row.flag(
            Status::Warning,
            "loadgen ended before its warm-up did: server CPU includes start-up",
        );
    }
    if let Some(stack) = &mut stack {
        for problem in stack.stop()? {
            row.flag(Status::Warning, problem);
        }
    }
    drop(stack);

    fill(&mut row, &report, plan, m, loadgen::is_tls_url(&url));
    if let Kind::Handshake { resumed, .. } = m.kind {
        handshake_checks(&mut row, &report, resumed, &url);
    }
    server_figures(&mut row, &watched, report.requests);
    if m.kind == Kind::Sweep {
        keep_distribution(res, m, &json, &mut row);
    }
    Ok(row)
}

/// What the servers did while the load generator ran.
struct Watched {
    /// Each load generator process's exit status.
    statuses: Vec<ExitStatus>,
    /// Each server's role and CPU seconds when the warm-up ended and after the load.
    cpu: Vec<(Role, f64, f64)>,
    peak_rss_kib: Vec<Option<u64>>,
    /// The warm-up ended before the load generator did.
    warm: bool,
}

/// Waits for the load generator processes, reading the servers' CPU time when their warm-up
/// ends and after they exit; one past its time is killed and the measurement fails.
fn watch(
    res: &Resources<'_>,
    clients: &mut Clients,
    stack: Option<&Stack>,
) -> anyhow::Result<Watched> {
    let plan = res.plan;
    let sample = || stack.map_or(Ok(Vec::new()), Stack::cpu_seconds);
    let launched = Instant::now();
    let mut before = sample()?;
    let mut warm = plan.warmup.is_zero();
    let limit = plan.warmup + plan.duration + LOADGEN_SLACK.max(plan.duration);
    let statuses = loop {
        res.stop.check()?;
        if let Some(statuses) = clients.try_wait()? {
            break statuses;
        }
        let elapsed = launched.elapsed();
        if !warm && elapsed >= plan.warmup {
            before = sample()?;
            warm = true;
        }
        if elapsed > limit {
            bail!(
                "loadgen was still running after {} (asked for {} + {} warm-up); killed it",
                humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
                humantime::format_duration(plan.duration),
                humantime::format_duration(plan.warmup),
            );
        }
        std::thread::sleep(LOADGEN_POLL);
    };
    let after = sample()?;
    let roles: Vec<Role> = stack.map_or(Vec::new(), |s| s.roles().collect());
    Ok(Watched {
        statuses,
        cpu: roles
            .into_iter()
            .zip(before.into_iter().zip(after))
            .map(|(role, (b, a))| (role, b, a))
            .collect(),
        peak_rss_kib: stack.map_or(Vec::new(), Stack::peak_rss_kib),
        warm,
    })
}

/// The servers' CPU time (in all and per request) and peak memory, by role.
fn server_figures(row: &mut Row, watched: &Watched, requests: u64) {
    let per_req = |secs: f64| (requests > 0).then(|| Num(secs * 1e6 / requests as f64));
    let mut server_total = None;
    for (&(role, b, a), &rss) in watched.cpu.iter().zip(&watched.peak_rss_kib) {
        let secs = (a - b).max(0.0);
        *server_total.get_or_insert(0.0) += secs;
        match role {
            Role::Terminator => {
                row.proxy_cpu_s = Some(Num(secs));
                row.proxy_cpu_us_per_req = per_req(secs);
                row.proxy_peak_rss_kib = rss;
            }
            Role::Upstream => {
                row.echo_cpu_s = Some(Num(secs));
                row.echo_cpu_us_per_req = per_req(secs);
                row.echo_peak_rss_kib = rss;
            }
        }
    }
    if let Some(total) = server_total {
        row.server_cpu_s = Some(Num(total));
        row.server_cpu_us_per_req = per_req(total);
    }
}

/// How often the harness looks at the running load generator (and at Ctrl-C).
pub(super) const LOADGEN_POLL: Duration = Duration::from_millis(10);

/// A load generator still running this long (or the duration, if longer) after warm-up
/// plus duration is hung: killed, and the row is an error.
pub(super) const LOADGEN_SLACK: Duration = Duration::from_secs(30);
