//! One harness run: check everything that can be checked before anything starts, build the
//! binaries, generate the run's certificate, then for each measurement start the servers
//! (pinned, waited for), run the load generator, read its report and the servers' CPU time,
//! stop everything and write the row. Ends with meta.json, the summary table and the paths.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use proxy::tls::CertPaths;
use serde_json::{json, Value};

use crate::bins::{self, Bins};
use crate::configs::{self, Role};
use crate::cpus::{self, CpuSplit};
use crate::loadgen::{self, Invocation, Report};
use crate::meta::{self, Host};
use crate::output::{CsvSink, Num, Row, Status};
use crate::plan::{Measurement, Plan};
use crate::procs::{Interrupted, Ledger, Proc, Spec, Stop};
use crate::{plot, summary};

/// Everything a run needs besides the plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run folder; default `results/<UTC time>-<host>/` in the workspace.
    pub out: Option<PathBuf>,
    /// Take the binaries from here instead of building them.
    pub bin_dir: Option<PathBuf>,
    /// Stop at the first failed measurement.
    pub fail_fast: bool,
    /// CA certificate for a remote `--target`; without it, loadgen runs `--insecure`.
    pub cacert: Option<PathBuf>,
    /// Print the plan and stop before building or measuring anything.
    pub dry_run: bool,
    /// Skip the pictures (`analysis/plot.py`) at the end of the run.
    pub no_plot: bool,
    /// The command line, for meta.json.
    pub command: Vec<String>,
}

/// How a run ended (errors that stop it are `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every measurement ran; `failed_rows` of them are error rows.
    Complete { rows: usize, failed_rows: usize },
    /// Stopped by `--fail-fast` after a failed measurement.
    FailedFast { rows: usize },
    /// Stopped by SIGINT/SIGTERM; rows so far are kept.
    Interrupted { rows: usize },
    /// `--dry-run`: the plan was printed, nothing ran.
    DryRun,
}

/// An error that means "fix the command or the machine": caught before anything started.
/// The binary exits 2 for these, 1 for failures during the run.
#[derive(Debug)]
pub struct SetupError(pub anyhow::Error);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for SetupError {}

trait Setup<T> {
    fn setup(self) -> anyhow::Result<T>;
}

impl<T> Setup<T> for anyhow::Result<T> {
    fn setup(self) -> anyhow::Result<T> {
        self.map_err(|e| SetupError(e).into())
    }
}

/// Runs `plan`. Progress and the plan go to stderr; the summary and paths to stdout.
pub fn execute(plan: Plan, opts: &Options, stop: &Stop) -> anyhow::Result<Outcome> {
    let mask = cpus::own_mask().setup()?;
    let split =
        CpuSplit::resolve(&mask, plan.server_cpus.as_ref(), plan.client_cpus.as_ref()).setup()?;
    let host = Host::probe(mask);
    eprint!("{}", describe_plan(&plan, &split));
    if opts.dry_run {
        return Ok(Outcome::DryRun);
    }
    let started = SystemTime::now();
    let (out, sink) = OutDir::create(opts.out.as_deref(), &host, started).setup()?;
    let mut meta = json!({
        "schema": 1,
        "command": opts.command,
        "command_line": meta::shell_line(&opts.command),
        "cwd": std::env::current_dir().ok(),
        "plan": plan.to_json(),
        "cpus": {
            "server": split.server.to_string(),
            "client": split.client.to_string(),
            "warning": split.warning,
        },
        "host": host.to_json(),
        "git": meta::git(bins::workspace_root().as_deref()),
        "libraries": meta::library_versions(bins::workspace_root().as_deref()),
        "start": meta::rfc3339(started),
        "end": null,
        "status": "starting",
    });
    meta::write_json(&out.meta, &meta).setup()?;
    let result = run_measurements(&plan, opts, stop, &split, &out, sink, &mut meta);
    let (status, error) = match &result {
        Ok(Outcome::Complete { failed_rows: 0, .. }) => ("complete", None),
        Ok(Outcome::Complete { .. }) => ("complete-with-errors", None),
        Ok(Outcome::FailedFast { .. }) => ("failed-fast", None),
        Ok(Outcome::Interrupted { .. }) => ("interrupted", None),
        Ok(Outcome::DryRun) => ("dry-run", None),
        Err(e) if e.is::<Interrupted>() => ("interrupted", None),
        Err(e) => ("failed", Some(format!("{e:#}"))),
    };
    meta["end"] = json!(meta::rfc3339(SystemTime::now()));
    meta["status"] = json!(status);
    meta["error"] = json!(error);
    if let Err(e) = meta::write_json(&out.meta, &meta) {
        eprintln!("harness: {e:#}");
    }
    match result {
        Err(e) if e.is::<Interrupted>() => {
            let rows = meta["rows"].as_u64().unwrap_or(0) as usize;
            eprintln!(
                "harness: interrupted; kept {rows} row(s) in {}",
                out.csv.display()
            );
            Ok(Outcome::Interrupted { rows })
        }
        other => other,
    }
}

/// Builds, prepares and runs every measurement, writing rows as they complete.
fn run_measurements(
    plan: &Plan,
    opts: &Options,
    stop: &Stop,
    split: &CpuSplit,
    out: &OutDir,
    mut sink: CsvSink,
    meta: &mut Value,
) -> anyhow::Result<Outcome> {
    let remote = plan.target.is_some();
    let bin_dir = match &opts.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            eprintln!("harness: building the release binaries (cargo build --release)");
            bins::build(stop, remote)?
        }
    };
    let bins = Bins::locate(&bin_dir, remote).setup()?;
    meta["binaries"] = bins.versions(remote);
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-harness-")
        .tempdir()
        .context("creating a temporary directory for sockets and certificates")?;
    meta["runtime_dir"] = json!(runtime.path());
    let cert = proxy::tls::selfsigned::write_to_dir(runtime.path(), plan.cert_type.key_kind())
        .context("generating the run's certificate")?;
    meta["status"] = json!("running");
    meta["rows"] = json!(0);
    meta::write_json(&out.meta, meta)?;

    let mut ledger = Ledger::create(&out.logs.join("children.tsv"))?;
    let measurements = plan.measurements();
    let measurements: Vec<Measurement> = if remote {
        // One row per size and iteration: the remote end's config is not ours to vary.
        measurements
            .into_iter()
            .filter(|m| m.variant == plan.variants()[0])
            .collect()
    } else {
        measurements
    };
    let ctx = RunCtx {
        plan,
        split,
        bins: &bins,
        cert: &cert,
        runtime_dir: runtime.path(),
        logs: &out.logs,
        stop,
        cacert: opts.cacert.as_deref(),
    };
    let mut progress = Progress::new(measurements.len(), plan);
    let mut rows = Vec::new();
    let mut failed_fast = false;
    for m in &measurements {
        if stop.requested() {
            break;
        }
        progress.begin(m, remote);
        let row = match measure(&ctx, m, &mut ledger) {
            Ok(row) => row,
            Err(e) if e.is::<Interrupted>() => break,
            Err(e) => {
                let mut row = base_row(&ctx, m);
                row.flag(Status::Error, format!("{e:#}"));
                row
            }
        };
        sink.write(&row)?;
        meta["rows"] = json!(sink.rows());
        progress.finish(m, &row, remote);
        let failed = row.status == Status::Error;
        rows.push(row);
        if failed && opts.fail_fast {
            failed_fast = true;
            break;
        }
    }
    progress.done();
    drop(runtime);

    let table = summary::render(&summary::lines(&rows));
    let summary_path = out.dir.join("summary.txt");
    std::fs::write(&summary_path, &table)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    println!("\n{table}");
    println!("results: {}", out.csv.display());
    println!("meta:    {}", out.meta.display());
    println!("logs:    {}", out.logs.display());
    if !opts.no_plot && !rows.is_empty() && !stop.requested() {
        eprintln!("harness: plotting (analysis/plot.py; --no-plot skips this)");
        plot::plot(&out.csv).print();
    }
    let failed_rows = rows.iter().filter(|r| r.status == Status::Error).count();
    if stop.requested() {
        return Err(Interrupted.into());
    }
    if failed_fast {
        return Ok(Outcome::FailedFast { rows: rows.len() });
    }
    Ok(Outcome::Complete {
        rows: rows.len(),
        failed_rows,
    })
}

/// What every measurement shares.
struct RunCtx<'a> {
    plan: &'a Plan,
    split: &'a CpuSplit,
    bins: &'a Bins,
    cert: &'a CertPaths,
    runtime_dir: &'a Path,
    logs: &'a Path,
    stop: &'a Stop,
    cacert: Option<&'a Path>,
}

/// One measurement, all processes stopped by the time it returns (their `Drop` kills
/// them on every error path). `Err(Interrupted)` on a signal, any other `Err` becomes an
/// error row.
fn measure(ctx: &RunCtx<'_>, m: &Measurement, ledger: &mut Ledger) -> anyhow::Result<Row> {
    let plan = ctx.plan;
    let label = measurement_label(m, plan.target.is_some());
    let stem = ctx.logs.join(&label);
    let mut row = base_row(ctx, m);
    let (url, mut servers, socket) = match &plan.target {
        Some(target) => (target.clone(), Vec::new(), None),
        None => {
            let stack = configs::stack(
                &m.variant,
                &configs::Context {
                    bins: ctx.bins,
                    cert: ctx.cert,
                    server_cpus: &ctx.split.server,
                    runtime_dir: ctx.runtime_dir,
                    log_stem: &stem,
                    index: m.index,
                },
            );
            let socket = SocketFile(stack.socket.clone());
            let mut running: Vec<(Role, Proc)> = Vec::new();
            let mut front = String::new();
            for server in &stack.servers {
                let mut p = Proc::spawn(&server.spec, ledger, &label)?;
                front = p
                    .wait_ready(ctx.stop, plan.ready_timeout)
                    .with_context(|| format!("starting {}", server.spec.name))?;
                let applied = p.verify_affinity()?;
                row.server_cpus = Some(applied.to_string());
                running.push((server.role, p));
            }
            (configs::url(stack.scheme, &front), running, Some(socket))
        }
    };

    // The load generator, with the servers' CPU time read when its warm-up ends and after
    // it exits.
    let tls = loadgen::is_tls_url(&url);
    let spec = Spec {
        name: "loadgen".to_owned(),
        program: ctx.bins.loadgen.clone(),
        args: Invocation {
            url: &url,
            plan,
            size: m.size,
            threads: plan
                .client_threads
                .map_or(ctx.split.client.len() as u32, |t| t.get()),
            cacert: if plan.target.is_some() {
                ctx.cacert
            } else {
                Some(&ctx.cert.cert)
            },
            insecure: plan.target.is_some() && ctx.cacert.is_none(),
        }
        .args(),
        cpus: ctx.split.client.clone(),
        stdout_log: configs::log_path(&stem, "loadgen", "out"),
        stderr_log: configs::log_path(&stem, "loadgen", "err"),
        wait_ready: false,
    };
    let mut lg = Proc::spawn(&spec, ledger, &label)?;
    let launched = Instant::now();
    match lg.verify_affinity() {
        Ok(applied) => row.client_cpus = Some(applied.to_string()),
        // It may already have exited (bad arguments): say that rather than "no /proc".
        Err(e) => match lg.wait_for(Duration::from_millis(200), ctx.stop)? {
            Some(status) => bail!(
                "loadgen exited at once ({}){}",
                crate::procs::describe(status),
                lg.stderr_tail()
            ),
            None => return Err(e),
        },
    }
    let mut before = cpu_sample(&servers)?;
    let mut warm = plan.warmup.is_zero();
    let limit = plan.warmup + plan.duration + LOADGEN_SLACK.max(plan.duration);
    let status = loop {
        ctx.stop.check()?;
        if let Some(status) = lg.try_wait()? {
            break status;
        }
        let elapsed = launched.elapsed();
        if !warm && elapsed >= plan.warmup {
            before = cpu_sample(&servers)?;
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
    let after = cpu_sample(&servers)?;
    let rss: Vec<Option<u64>> = servers.iter().map(|(_, p)| p.peak_rss_kib().ok()).collect();
    if !status.success() {
        bail!(
            "loadgen failed ({}){}",
            crate::procs::describe(status),
            lg.stderr_tail()
        );
    }
    if !warm {
        row.flag(
            Status::Warning,
            "loadgen ended before its warm-up did: server CPU includes start-up",
        );
    }
    let stdout = std::fs::read_to_string(&spec.stdout_log)
        .with_context(|| format!("reading {}", spec.stdout_log.display()))?;
    let report = Report::parse(&stdout)
        .with_context(|| format!("loadgen's report in {}", spec.stdout_log.display()))?;

    // Stop the front first, so the backend sees its clients leave before its own stop.
    for (_, p) in servers.iter_mut().rev() {
        let stopped = p.stop(STOP_GRACE)?;
        if let Some(problem) = stopped.problem(&p.name) {
            row.flag(Status::Warning, format!("{problem}{}", p.stderr_tail()));
        }
    }
    drop(socket);

    fill(&mut row, &report, plan, m.size, tls);
    let requests = report.requests;
    let per_req = |secs: f64| (requests > 0).then(|| Num(secs * 1e6 / requests as f64));
    let mut server_total = None;
    for (((role, _), (b, a)), rss) in servers.iter().zip(before.iter().zip(&after)).zip(rss) {
        let secs = (a - b).max(0.0);
        *server_total.get_or_insert(0.0) += secs;
        match role {
            Role::Terminator => {
                row.proxy_cpu_s = Some(Num(secs));
                row.proxy_cpu_us_per_req = per_req(secs);
                row.proxy_peak_rss_kib = rss;
            }
            Role::Backend => {
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
    Ok(row)
}

/// CPU seconds of each server, in order; a server that died mid-run is an error.
fn cpu_sample(servers: &[(Role, Proc)]) -> anyhow::Result<Vec<f64>> {
    servers
        .iter()
        .map(|(_, p)| {
            p.cpu_seconds().with_context(|| {
                format!(
                    "{} (pid {}) is gone during the measurement{}",
                    p.name,
                    p.pid,
                    p.stderr_tail()
                )
            })
        })
        .collect()
}

/// The load generator's figures, and the verdict on them.
fn fill(row: &mut Row, report: &Report, plan: &Plan, size: u64, tls: bool) {
    let lat = &report.latency_us;
    row.requests = Some(report.requests);
    row.mean = Some(Num(lat.mean));
    row.stdev = Some(Num(lat.stdev));
    row.p50 = Some(Num(lat.p50));
    row.p90 = Some(Num(lat.p90));
    row.p99 = Some(Num(lat.p99));
    row.p999 = Some(Num(lat.p999));
    row.max = Some(Num(lat.max));
    row.min = Some(Num(lat.min));
    row.connections_opened = Some(report.connections_opened);
    row.rate = report.rate.or(plan.rate).map(Num);
    row.duration_s = Some(Num(report.duration_s));
    row.warmup_s = Some(Num(report.warmup_s));
    row.rps = Some(Num(report.rps));
    // Request body megabytes (10^6) per second; the responses carry as many back.
    row.mb_per_s = Some(Num(report.rps * size as f64 / 1e6));
    let e = &report.errors;
    row.errors = Some(e.total);
    row.errors_connect = Some(e.connect);
    row.errors_read = Some(e.read);
    row.errors_write = Some(e.write);
    row.errors_timeout = Some(e.timeout);
    row.errors_status = Some(e.status);
    row.errors_body_mismatch = Some(e.body_mismatch);
    let cpu = report.cpu.user_s + report.cpu.sys_s;
    row.loadgen_cpu_s = Some(Num(cpu));
    row.loadgen_cpu_us_per_req =
        (report.requests > 0).then(|| Num(cpu * 1e6 / report.requests as f64));
    row.loadgen_utilization = Some(Num(report.cpu.utilization));
    row.loadgen_saturated = Some(report.cpu.saturated);
    if let Some(t) = &report.tls {
        row.tls_version = t.version.clone();
        row.tls_cipher_suite = t.cipher_suite.clone();
        row.tls_kx_group = t.kx_group.clone();
    }

    if report.requests == 0 {
        row.flag(Status::Error, "no request completed in the measured period");
    }
    if tls {
        for mismatch in report.tls_mismatches(plan) {
            row.flag(Status::Error, mismatch);
        }
    }
    if e.total > 0 {
        row.flag(
            Status::Warning,
            format!(
                "{} request errors (connect {}, read {}, write {}, timeout {}, status {}, \
                 body mismatch {})",
                e.total, e.connect, e.read, e.write, e.timeout, e.status, e.body_mismatch
            ),
        );
    }
    let asked = u64::from(plan.connections.get());
    if report.connections_opened < asked {
        row.flag(
            Status::Warning,
            format!(
                "only {} of {asked} connections opened",
                report.connections_opened
            ),
        );
    }
    if report.cpu.saturated {
        row.flag(
            Status::Warning,
            format!(
                "load generator saturated (CPU utilisation {:.2}): the client, not the server, \
                 may be the limit",
                report.cpu.utilization
            ),
        );
    }
    for w in &report.warnings {
        row.flag(Status::Warning, format!("loadgen: {w}"));
    }
}

/// The columns known before anything runs: what was asked for.
fn base_row(ctx: &RunCtx<'_>, m: &Measurement) -> Row {
    let plan = ctx.plan;
    let remote = plan.target.is_some();
    let tls = if remote {
        plan.target.as_deref().is_some_and(loadgen::is_tls_url)
    } else {
        m.variant.config.is_tls()
    };
    let mut row = Row {
        config: if remote {
            "remote".to_owned()
        } else {
            m.variant.config_name().to_owned()
        },
        size: m.size,
        iteration: m.iteration,
        tls_backend: if remote {
            "remote".to_owned()
        } else {
            m.variant.backend_name().to_owned()
        },
        connections: plan.connections.get(),
        rate: plan.rate.map(Num),
        cert_type: (tls && !remote).then(|| plan.cert_type.name().to_owned()),
        server_cpus: (!remote).then(|| ctx.split.server.to_string()),
        client_cpus: Some(ctx.split.client.to_string()),
        ..Row::default()
    };
    if let Some(warning) = &ctx.split.warning {
        // Said in every row (status unchanged) so that analysis of the CSV alone sees it.
        row.flag(Status::Ok, warning);
    }
    row
}

/// `1-proxy-rustls-aws-lc-1000`: names the measurement's log files.
fn measurement_label(m: &Measurement, remote: bool) -> String {
    let variant = if remote {
        "remote".to_owned()
    } else {
        m.variant.label()
    };
    format!("{}-{variant}-{}", m.iteration, m.size)
}

/// Removes a Unix socket file when the measurement ends, however it ends: a server killed
/// with SIGKILL cannot remove its own.
struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The run folder and its files.
#[derive(Debug)]
struct OutDir {
    dir: PathBuf,
    csv: PathBuf,
    meta: PathBuf,
    logs: PathBuf,
}

impl OutDir {
    /// Creates the run folder (a fresh one under `results/` unless `out` is given), its
    /// `logs/`, and `results.csv` with its header, so that an unwritable place fails now.
    fn create(
        out: Option<&Path>,
        host: &Host,
        now: SystemTime,
    ) -> anyhow::Result<(OutDir, CsvSink)> {
        let dir = match out {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("--out {}: cannot create the folder", dir.display())
                })?;
                dir.to_owned()
            }
            None => fresh_run_dir(&default_results_dir(), host, now)?,
        };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| {
            format!(
                "cannot create {} (is the results folder writable?)",
                logs.display()
            )
        })?;
        let csv = dir.join("results.csv");
        let sink = CsvSink::create(&csv)
            .with_context(|| format!("{} is not a writable, fresh run folder", dir.display()))?;
        let out = OutDir {
            meta: dir.join("meta.json"),
            dir,
            csv,
            logs,
        };
        Ok((out, sink))
    }
}

/// `results/` of the workspace when the harness runs from it, else of the current folder.
fn default_results_dir() -> PathBuf {
    bins::workspace_root()
        .map(|r| r.join("results"))
        .unwrap_or_else(|| PathBuf::from("results"))
}

/// `results/<UTC %Y%m%dT%H%M%SZ>-<host>/`, with `-2`, `-3`... when two runs start in the
/// same second (created atomically, so concurrent runs never share a folder).
fn fresh_run_dir(results: &Path, host: &Host, now: SystemTime) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(results)
        .with_context(|| format!("cannot create the results folder {}", results.display()))?;
    let base = format!(
        "{}-{}",
        meta::folder_stamp(now),
        meta::folder_host(&host.hostname)
    );
    for n in 1..=MAX_SAME_SECOND_RUNS {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        let dir = results.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot create the run folder {}", dir.display()))
            }
        }
    }
    bail!(
        "{} runs already started this second in {}",
        MAX_SAME_SECOND_RUNS,
        results.display()
    )
}

/// The plan as printed before the run starts.
pub fn describe_plan(plan: &Plan, split: &CpuSplit) -> String {
    let mut s = String::new();
    let measurements = if plan.target.is_some() {
        plan.sizes.len() * plan.iterations.get() as usize
    } else {
        plan.measurements().len()
    };
    s.push_str(&format!(
        "plan: {} (scenario {})\n",
        plan.source,
        plan.scenario.name()
    ));
    match &plan.target {
        Some(t) => s.push_str(&format!("  target:      {t} (remote: no local servers)\n")),
        None => s.push_str(&format!(
            "  configs:     {}\n",
            plan.variants()
                .iter()
                .map(|v| v.label())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    s.push_str(&format!(
        "  sizes:       {} bytes\n",
        plan.sizes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(&format!(
        "  each:        {} warm-up + {} measured, {} connections{}\n",
        humantime::format_duration(plan.warmup),
        humantime::format_duration(plan.duration),
        plan.connections,
        plan.rate
            .map_or(String::new(), |r| format!(", {r} req/s (open loop)"))
    ));
    s.push_str(&format!(
        "  tls:         {} certificate, {}, {}, {}\n",
        plan.cert_type.name(),
        plan.tls_version.name(),
        plan.effective_cipher_suites().join("|"),
        plan.effective_kx_groups().join("|")
    ));
    s.push_str(&format!(
        "  cpus:        servers {}, load generator {}\n",
        split.server, split.client
    ));
    if let Some(w) = &split.warning {
        s.push_str(&format!("  warning:     {w}\n"));
    }
    let estimate = Duration::from_secs(plan.estimate().as_secs());
    s.push_str(&format!(
        "  runs:        {} iteration(s), {measurements} measurements, about {} (plus the build)\n",
        plan.iterations,
        humantime::format_duration(estimate)
    ));
    s
}

/// A progress bar with ETA on a terminal, plain lines otherwise (CI logs).
enum Progress {
    Bar(ProgressBar),
    Lines {
        total: usize,
        done: usize,
        started: Instant,
        per_estimate: Duration,
    },
}

impl Progress {
    fn new(total: usize, plan: &Plan) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} ETA {eta} {msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(500));
            Progress::Bar(bar)
        } else {
            let count = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
            Progress::Lines {
                total,
                done: 0,
                started: Instant::now(),
                per_estimate: plan.estimate() / count,
            }
        }
    }

    fn begin(&mut self, m: &Measurement, remote: bool) {
        if let Progress::Bar(bar) = self {
            bar.set_message(measurement_label(m, remote));
        }
    }

    fn finish(&mut self, m: &Measurement, row: &Row, remote: bool) {
        let label = measurement_label(m, remote);
        let figures = match (row.rps, row.p50, row.p99) {
            (Some(rps), Some(p50), Some(p99)) => {
                format!(
                    "{:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                    rps.0, p50.0, p99.0
                )
            }
            _ => "no figures".to_owned(),
        };
        let verdict = if row.note.is_empty() {
            row.status.name().to_owned()
        } else {
            format!("{}: {}", row.status.name(), row.note)
        };
        match self {
            Progress::Bar(bar) => {
                if row.status != Status::Ok {
                    bar.println(format!("{label}: {figures}; {verdict}"));
                }
                bar.inc(1);
            }
            Progress::Lines {
                total,
                done,
                started,
                per_estimate,
            } => {
                *done += 1;
                let left = (*total - *done) as u32;
                // Measured pace once there is one, the plan's estimate before.
                let per = if *done > 0 {
                    started.elapsed() / *done as u32
                } else {
                    *per_estimate
                };
                let eta = Duration::from_secs((per * left).as_secs());
                eprintln!(
                    "[{done}/{total}] {label}: {figures}; {verdict} (ETA {})",
                    humantime::format_duration(eta)
                );
            }
        }
    }

    fn done(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// A server gets this long to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How often the harness looks at the running load generator (and at Ctrl-C).
const LOADGEN_POLL: Duration = Duration::from_millis(10);
/// A load generator still running this long (or the duration, if longer) after warm-up
/// plus duration is hung: killed, and the row is an error.
const LOADGEN_SLACK: Duration = Duration::from_secs(30);
/// Run folders one host may start within one second.
const MAX_SAME_SECOND_RUNS: u32 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host::probe("0".parse().unwrap())
    }

    #[test]
    fn unwritable_out_dir_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let out = file.join("run");
        let err = format!(
            "{:#}",
            OutDir::create(Some(&out), &host(), SystemTime::now()).unwrap_err()
        );
        assert!(err.contains("--out") && err.contains("a-file/run"), "{err}");
    }

    #[test]
    fn out_dir_refuses_to_overwrite_a_run() {
        let dir = tempfile::tempdir().unwrap();
        OutDir::create(Some(dir.path()), &host(), SystemTime::now()).unwrap();
        let err = format!(
            "{:#}",
            OutDir::create(Some(dir.path()), &host(), SystemTime::now()).unwrap_err()
        );
        assert!(err.contains("results.csv"), "{err}");
    }

    #[test]
    fn same_second_runs_get_their_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let a = fresh_run_dir(dir.path(), &host(), now).unwrap();
        let b = fresh_run_dir(dir.path(), &host(), now).unwrap();
        assert_ne!(a, b);
        assert!(b.to_string_lossy().ends_with("-2"));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.len() > 17 && name.as_bytes()[8] == b'T' && &name[15..16] == "Z",
            "{name}"
        );
    }

    #[test]
    fn plan_description_has_the_estimate() {
        let plan = crate::plan::Preset::Smoke.plan();
        let mask: cpus::CpuList = "0-1".parse().unwrap();
        let split = CpuSplit::resolve(&mask, None, None).unwrap();
        let text = describe_plan(&plan, &split);
        assert!(text.contains("10 measurements"), "{text}");
        assert!(text.contains("servers 0, load generator 1"), "{text}");
    }
}
