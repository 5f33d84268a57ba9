//! One load measurement (sweep and handshakes): the stack started, the load generator run
//! on the client CPUs, the servers' CPU time read after its warm-up and after it exits.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::resources::{measurement_label, Resources};
use super::rows::{base_row, fill, handshake_checks};
use crate::loadgen::{self, Invocation, Report};
use crate::output::{Num, Row, Status};
use crate::plan::{Kind, Measurement};
use crate::procs::{Ledger, Proc, Spec, Stop};
use crate::stack::recipe::{self, Role};
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
    let spec = loadgen_spec(res, m, &url, &stem)?;
    let mut lg = Proc::spawn(&spec, ledger, &label)?;
    row.client_cpus = Some(client_cpus(&mut lg, res.stop)?);
    let watched = watch(res, &mut lg, stack.as_ref())?;
    let report = loadgen_report(watched.status, &lg, &spec)?;
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
    Ok(row)
}

/// The CPUs the load generator runs on, verified. It may already have exited (bad
/// arguments): that is said rather than "no /proc".
fn client_cpus(lg: &mut Proc, stop: &Stop) -> anyhow::Result<String> {
    match lg.verify_affinity() {
        Ok(applied) => Ok(applied.to_string()),
        Err(e) => match lg.wait_for(Duration::from_millis(200), stop)? {
            Some(status) => bail!(
                "loadgen exited at once ({}){}",
                crate::procs::describe(status),
                lg.stderr_tail()
            ),
            None => Err(e),
        },
    }
}

/// What the servers did while the load generator ran.
struct Watched {
    status: ExitStatus,
    /// Each server's role and CPU seconds when the warm-up ended and after the load.
    cpu: Vec<(Role, f64, f64)>,
    peak_rss_kib: Vec<Option<u64>>,
    /// The warm-up ended before the load generator did.
    warm: bool,
}

/// Waits for the load generator, reading the servers' CPU time when its warm-up ends and
/// after it exits; a load generator past its time is killed and the measurement fails.
fn watch(res: &Resources<'_>, lg: &mut Proc, stack: Option<&Stack>) -> anyhow::Result<Watched> {
    let plan = res.plan;
    let sample = || stack.map_or(Ok(Vec::new()), Stack::cpu_seconds);
    let launched = Instant::now();
    let mut before = sample()?;
    let mut warm = plan.warmup.is_zero();
    let limit = plan.warmup + plan.duration + LOADGEN_SLACK.max(plan.duration);
    let status = loop {
        res.stop.check()?;
        if let Some(status) = lg.try_wait()? {
            break status;
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
        status,
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

/// The load generator's command for one measurement, on the client CPUs. It trusts the
/// run's certificate, or with `--target` the `--cacert` given (none: `--insecure`).
pub(super) fn loadgen_spec(
    res: &Resources<'_>,
    m: &Measurement,
    url: &str,
    stem: &Path,
) -> anyhow::Result<Spec> {
    let plan = res.plan;
    let remote = plan.target.is_some();
    Ok(Spec {
        name: "loadgen".to_owned(),
        program: res.bins.loadgen.clone(),
        args: Invocation {
            url,
            plan,
            measurement: m,
            threads: plan
                .client_threads
                .map_or(res.split.client.len() as u32, |t| t.get()),
            cacert: if remote {
                res.cacert
            } else {
                Some(&res.certs.get(m.tls.cert)?.0.cert)
            },
            insecure: remote && res.cacert.is_none(),
        }
        .args(),
        cpus: res.split.client.clone(),
        stdout_log: recipe::log_path(stem, "loadgen", "out"),
        stderr_log: recipe::log_path(stem, "loadgen", "err"),
        wait_ready: false,
    })
}

/// A finished loadgen's JSON report, or why there is none.
pub(super) fn loadgen_report(status: ExitStatus, lg: &Proc, spec: &Spec) -> anyhow::Result<Report> {
    if !status.success() {
        bail!(
            "loadgen failed ({}){}",
            crate::procs::describe(status),
            lg.stderr_tail()
        );
    }
    let stdout = std::fs::read_to_string(&spec.stdout_log)
        .with_context(|| format!("reading {}", spec.stdout_log.display()))?;
    Report::parse(&stdout)
        .with_context(|| format!("loadgen's report in {}", spec.stdout_log.display()))
}

/// How often the harness looks at the running load generator (and at Ctrl-C).
pub(super) const LOADGEN_POLL: Duration = Duration::from_millis(10);

/// A load generator still running this long (or the duration, if longer) after warm-up
/// plus duration is hung: killed, and the row is an error.
pub(super) const LOADGEN_SLACK: Duration = Duration::from_secs(30);
