//! One idle measurement: the servers' memory before and after the load generator opens and
//! holds `idle_connections` connections.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::clients::{loadgen_report, loadgen_spec};
use super::load::{LOADGEN_POLL, LOADGEN_SLACK};
use super::resources::{measurement_label, Resources};
use super::rows::{base_idle_row, fill_idle};
use crate::output::{IdleRow, Status};
use crate::plan::Measurement;
use crate::procs::{Ledger, Proc, Spec};
use crate::stack::Stack;

/// One idle measurement: start the servers, sample their memory, have the load generator
/// open `idle_connections` connections (one request each) and hold them, sample again once
/// all are open, then let it close them.
pub(super) fn measure(
    res: &Resources<'_>,
    m: &Measurement,
    ledger: &mut Ledger,
) -> anyhow::Result<IdleRow> {
    let label = measurement_label(m, false);
    let stem = res.logs.join(&label);
    let mut row = base_idle_row(res, m);
    let mut stack = res.start_stack(m, &stem, &label, ledger)?;
    row.server_cpus = Some(stack.cpus.clone());
    // Settle: a server may still be allocating its workers right after it is ready.
    std::thread::sleep(IDLE_SETTLE);
    let before = stack.rss_kib()?;
    // One process: the plan refuses --client-processes with the idle scenario.
    let spec = loadgen_spec(res, m, &stack.url, &stem, None)?;
    let mut lg = Proc::spawn(&spec, ledger, &label)?;
    row.client_cpus = lg.verify_affinity().ok().map(|c| c.to_string());
    let (status, after) = hold(res, &mut lg, &spec, &stack)?;
    let report = loadgen_report(status, &lg, &spec)?;
    for problem in stack.stop()? {
        row.flag(Status::Warning, problem);
    }
    drop(stack);

    fill_idle(&mut row, &report, res.plan, m, &before, after.as_deref());
    Ok(row)
}

/// Waits for the load generator to exit, sampling the servers' memory once it says every
/// connection is open (`None` if it never did).
fn hold(
    res: &Resources<'_>,
    lg: &mut Proc,
    spec: &Spec,
    stack: &Stack,
) -> anyhow::Result<(ExitStatus, Option<Vec<u64>>)> {
    let plan = res.plan;
    // Open time: the handshakes at whatever rate the server manages, with slack.
    let limit = plan.idle_hold + LOADGEN_SLACK + IDLE_OPEN_ALLOWANCE * plan.idle_connections.get();
    let launched = Instant::now();
    let mut after = None;
    loop {
        res.stop.check()?;
        if after.is_none() && idle_line(&spec.stderr_log).is_some() {
            std::thread::sleep(IDLE_SETTLE);
            after = Some(stack.rss_kib()?);
        }
        if let Some(status) = lg.try_wait()? {
            return Ok((status, after));
        }
        if launched.elapsed() > limit {
            bail!(
                "loadgen --idle was still running after {}; killed it",
                humantime::format_duration(Duration::from_secs(launched.elapsed().as_secs()))
            );
        }
        std::thread::sleep(LOADGEN_POLL);
    }
}

/// The `loadgen: idle: N of M connections open` line, once loadgen has printed it.
fn idle_line(stderr_log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(stderr_log).ok()?;
    text.lines()
        .find(|l| l.starts_with(IDLE_LINE_PREFIX))
        .map(str::to_owned)
}

/// What loadgen prints on stderr once every `--idle` connection is open.
const IDLE_LINE_PREFIX: &str = "loadgen: idle: ";

/// Memory settles this long before it is sampled in the idle scenario.
const IDLE_SETTLE: Duration = Duration::from_millis(500);

/// Time allowed per idle connection to open (handshake and first request), on top of the
/// hold, before loadgen counts as hung.
const IDLE_OPEN_ALLOWANCE: Duration = Duration::from_millis(5);
