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
use crate::configs::{self, Ready, Role};
use crate::cpus::{self, CpuSplit};
use crate::loadgen::{self, Invocation, Report};
use crate::meta::{self, Host};
use crate::output::{CsvSink, IdleRow, Num, Row, Status, IDLE_COLUMNS};
use crate::peers::{self, Peer};
use crate::plan::{CertType, Kind, Measurement, Plan, Scenario};
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
pub fn execute(mut plan: Plan, opts: &Options, stop: &Stop) -> anyhow::Result<Outcome> {
    let mask = cpus::own_mask().setup()?;
    let split =
        CpuSplit::resolve(&mask, plan.server_cpus.as_ref(), plan.client_cpus.as_ref()).setup()?;
    let host = Host::probe(mask);
    let (peers, skipped) = find_peers(&mut plan).setup()?;
    // Idle connections need a descriptor each in the load generator and two in a proxy
    // (client and upstream): raise the limit every child inherits, and hold fewer
    // connections when even the raised limit cannot carry them.
    let nofile = crate::procs::raise_nofile(WANT_NOFILE)
        .context("raising the open-file limit")
        .setup()?;
    if let Some(line) = fit_idle_connections(&mut plan, nofile) {
        eprintln!("harness: {line}");
    }
    eprint!("{}", describe_plan(&plan, &split));
    if opts.dry_run {
        return Ok(Outcome::DryRun);
    }
    let started = SystemTime::now();
    let (out, sinks) = OutDir::create(opts.out.as_deref(), &host, started, &plan).setup()?;
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
        "peers": peers
            .iter()
            .map(|p| (p.config.name().to_owned(), json!({"program": p.program, "version": p.version})))
            .collect::<serde_json::Map<_, _>>(),
        "skipped": skipped,
        "start": meta::rfc3339(started),
        "end": null,
        "status": "starting",
    });
    meta::write_json(&out.meta, &meta).setup()?;
    let result = if plan.scenario.is_fault_suite() {
        run_fault_suite(&plan, opts, stop, &split, &out, &mut meta)
    } else {
        run_measurements(&plan, opts, stop, &split, &out, sinks, &peers, &mut meta)
    };
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
                out.dir.display()
            );
            Ok(Outcome::Interrupted { rows })
        }
        other => other,
    }
}

/// Finds the peer terminators the plan names and drops those not installed, each with one
/// line naming the Debian package to install. Returns the peers found and those lines.
fn find_peers(plan: &mut Plan) -> anyhow::Result<(Vec<Peer>, Vec<String>)> {
    if plan.target.is_some() || plan.scenario.is_fault_suite() {
        return Ok((Vec::new(), Vec::new()));
    }
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    plan.configs.retain(|&config| {
        if !config.is_peer() {
            return true;
        }
        match peers::find(config) {
            Ok(peer) => {
                found.push(peer);
                true
            }
            Err(line) => {
                eprintln!("harness: {line}");
                skipped.push(line);
                false
            }
        }
    });
    if plan.configs.is_empty() {
        bail!("no config left to run: every one asked for is a peer that is not installed");
    }
    Ok((found, skipped))
}

/// Lowers the idle scenario's connection count to what the open-file limit `nofile` lets a
/// proxy hold (two descriptors a connection, plus room for its own), and says so.
fn fit_idle_connections(plan: &mut Plan, nofile: u64) -> Option<String> {
    if !plan.scenario.parts().contains(&Scenario::Idle) {
        return None;
    }
    let asked = u64::from(plan.idle_connections.get());
    let most = nofile.saturating_sub(IDLE_FD_RESERVE) / 2;
    if asked <= most {
        return None;
    }
    let fitted = std::num::NonZeroU32::new(u32::try_from(most).unwrap_or(u32::MAX))?;
    plan.idle_connections = fitted;
    Some(format!(
        "idle connections lowered from {asked} to {fitted}: the open-file limit is {nofile} \
         (hard limit; a proxy needs two descriptors per connection)"
    ))
}

/// The CSV files of a run, one per scenario it runs.
#[derive(Debug)]
struct Sinks {
    sweep: Option<CsvSink>,
    handshakes: Option<CsvSink>,
    idle: Option<CsvSink>,
}

impl Sinks {
    fn rows(&self) -> usize {
        [&self.sweep, &self.handshakes, &self.idle]
            .into_iter()
            .flatten()
            .map(CsvSink::rows)
            .sum()
    }

    fn paths(&self) -> Vec<PathBuf> {
        [&self.sweep, &self.handshakes, &self.idle]
            .into_iter()
            .flatten()
            .map(|s| s.path().to_owned())
            .collect()
    }

    fn paths_with_rows(&self) -> Vec<PathBuf> {
        [&self.sweep, &self.handshakes, &self.idle]
            .into_iter()
            .flatten()
            .filter(|s| s.rows() > 0)
            .map(|s| s.path().to_owned())
            .collect()
    }

    fn for_kind(&mut self, kind: Kind) -> anyhow::Result<&mut CsvSink> {
        let sink = match kind {
            Kind::Sweep => &mut self.sweep,
            Kind::Handshake { .. } => &mut self.handshakes,
            Kind::Idle => &mut self.idle,
        };
        sink.as_mut()
            .context("internal error: a measurement of a scenario without its CSV file")
    }
}

/// The run's certificates: the plan's type, and both types for the handshake scenario.
struct Certs(Vec<(CertType, CertPaths, PathBuf)>);

impl Certs {
    fn generate(dir: &Path, plan: &Plan) -> anyhow::Result<Certs> {
        let mut types = vec![plan.cert_type];
        if plan.scenario.parts().contains(&Scenario::Handshakes) {
            for t in [CertType::EcdsaP256, CertType::Rsa2048] {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        let mut out = Vec::new();
        for t in types {
            let sub = dir.join(t.name());
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
            let paths = proxy::tls::selfsigned::write_to_dir(&sub, t.key_kind())
                .with_context(|| format!("generating the run's {} certificate", t.name()))?;
            // HAProxy and hitch read the chain and the key from one file.
            let combined = sub.join("combined.pem");
            let mut text = std::fs::read(&paths.cert)
                .with_context(|| format!("reading {}", paths.cert.display()))?;
            text.extend(
                std::fs::read(&paths.key)
                    .with_context(|| format!("reading {}", paths.key.display()))?,
            );
            write_private(&combined, &text)?;
            out.push((t, paths, combined));
        }
        Ok(Certs(out))
    }

    fn get(&self, t: CertType) -> anyhow::Result<(&CertPaths, &Path)> {
        self.0
            .iter()
            .find(|(k, _, _)| *k == t)
            .map(|(_, p, c)| (p, c.as_path()))
            .with_context(|| format!("internal error: no {} certificate generated", t.name()))
    }
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The binaries: built (release) unless `--bin-dir` names them.
fn binaries(opts: &Options, stop: &Stop, remote: bool, meta: &mut Value) -> anyhow::Result<Bins> {
    let bin_dir = match &opts.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            eprintln!("harness: building the release binaries (cargo build --release)");
            bins::build(stop, remote)?
        }
    };
    let bins = Bins::locate(&bin_dir, remote).setup()?;
    meta["binaries"] = bins.versions(remote);
    if !remote {
        meta["libraries"]["openssl_linked"] = json!(bins.linked_openssl());
    }
    Ok(bins)
}

/// Runs the fault suite (`--scenario faults`, or `soak` for its long run): `faults.csv`
/// and its table. A scenario whose verdict is `fail` counts as a failed row.
fn run_fault_suite(
    plan: &Plan,
    opts: &Options,
    stop: &Stop,
    split: &CpuSplit,
    out: &OutDir,
    meta: &mut Value,
) -> anyhow::Result<Outcome> {
    let bins = binaries(opts, stop, false, meta)?;
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-faults-")
        .tempdir()
        .context("creating a temporary directory for sockets and certificates")?;
    meta["status"] = json!("running");
    meta::write_json(&out.meta, meta)?;
    let mut ledger = Ledger::create(&out.logs.join("children.tsv"))?;
    let rows = crate::faults::run(crate::faults::FaultCtx {
        bins: &bins,
        split,
        out_dir: &out.dir,
        logs: &out.logs,
        runtime_dir: runtime.path(),
        stop,
        ledger: &mut ledger,
        short: plan.short_faults,
        soak: (plan.scenario == Scenario::Soak).then_some(plan.soak_duration),
    })?;
    meta["rows"] = json!(rows.len());
    let failed_rows = rows
        .iter()
        .filter(|r| r.verdict == crate::faults::Verdict::Fail)
        .count();
    if failed_rows > 0 {
        eprintln!("harness: {failed_rows} fault scenario(s) failed; see faults.csv");
    }
    Ok(Outcome::Complete {
        rows: rows.len(),
        failed_rows,
    })
}

/// Builds, prepares and runs every measurement, writing rows as they complete.
#[allow(clippy::too_many_arguments)]
fn run_measurements(
    plan: &Plan,
    opts: &Options,
    stop: &Stop,
    split: &CpuSplit,
    out: &OutDir,
    mut sinks: Sinks,
    peers: &[Peer],
    meta: &mut Value,
) -> anyhow::Result<Outcome> {
    let remote = plan.target.is_some();
    let bins = binaries(opts, stop, remote, meta)?;
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-harness-")
        .tempdir()
        .context("creating a temporary directory for sockets and certificates")?;
    meta["runtime_dir"] = json!(runtime.path());
    let certs = Certs::generate(runtime.path(), plan)?;
    let nofile = crate::procs::raise_nofile(WANT_NOFILE).context("raising the open-file limit")?;
    meta["nofile_limit"] = json!(nofile);
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
        certs: &certs,
        runtime_dir: runtime.path(),
        logs: &out.logs,
        config_dir: &out.configs,
        peers,
        nofile,
        stop,
        cacert: opts.cacert.as_deref(),
    };
    let mut progress = Progress::new(measurements.len(), plan);
    let mut rows = Vec::new();
    let mut idle_rows = Vec::new();
    let mut failed_fast = false;
    for m in &measurements {
        if stop.requested() {
            break;
        }
        progress.begin(m, remote);
        let result = if m.kind == Kind::Idle {
            measure_idle(&ctx, m, &mut ledger).map(Measured::Idle)
        } else {
            measure(&ctx, m, &mut ledger).map(Measured::Load)
        };
        let measured = match result {
            Ok(measured) => measured,
            Err(e) if e.is::<Interrupted>() => break,
            Err(e) => {
                let remark = format!("{e:#}");
                if m.kind == Kind::Idle {
                    let mut row = base_idle_row(&ctx, m);
                    row.flag(Status::Error, remark);
                    Measured::Idle(row)
                } else {
                    let mut row = base_row(&ctx, m);
                    row.flag(Status::Error, remark);
                    Measured::Load(row)
                }
            }
        };
        let sink = sinks.for_kind(m.kind)?;
        let failed = match measured {
            Measured::Load(row) => {
                sink.write(&row)?;
                progress.finish(m, &row, remote);
                let failed = row.status == Status::Error;
                rows.push(row);
                failed
            }
            Measured::Idle(row) => {
                sink.write(&row)?;
                progress.finish_idle(m, &row);
                let failed = row.status == Status::Error;
                idle_rows.push(row);
                failed
            }
        };
        meta["rows"] = json!(sinks.rows());
        if failed && opts.fail_fast {
            failed_fast = true;
            break;
        }
    }
    progress.done();
    drop(runtime);

    let table = summary::render_all(&rows, &idle_rows);
    let summary_path = out.dir.join("summary.txt");
    std::fs::write(&summary_path, &table)
        .with_context(|| format!("writing {}", summary_path.display()))?;
    println!("\n{table}");
    for path in sinks.paths() {
        println!("results: {}", path.display());
    }
    println!("meta:    {}", out.meta.display());
    println!("logs:    {}", out.logs.display());
    let nothing = rows.is_empty() && idle_rows.is_empty();
    if !(opts.no_plot || stop.requested() || nothing) {
        eprintln!("harness: plotting (analysis/plot.py; --no-plot skips this)");
        // A scenario the run never reached (interrupted, --fail-fast) has only a header.
        for path in sinks.paths_with_rows() {
            plot::plot(&path).print();
        }
    }
    let failed_rows = rows.iter().filter(|r| r.status == Status::Error).count()
        + idle_rows
            .iter()
            .filter(|r| r.status == Status::Error)
            .count();
    if stop.requested() {
        return Err(Interrupted.into());
    }
    if failed_fast {
        return Ok(Outcome::FailedFast { rows: rows.len() });
    }
    Ok(Outcome::Complete {
        rows: rows.len() + idle_rows.len(),
        failed_rows,
    })
}

/// One measurement's row: a load run (sweep, handshakes) or an idle run. Short-lived, one
/// at a time: the size difference of the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Measured {
    Load(Row),
    Idle(IdleRow),
}

/// What every measurement shares.
struct RunCtx<'a> {
    plan: &'a Plan,
    split: &'a CpuSplit,
    bins: &'a Bins,
    certs: &'a Certs,
    runtime_dir: &'a Path,
    logs: &'a Path,
    /// Peers' config files go here.
    config_dir: &'a Path,
    peers: &'a [Peer],
    /// The open-file limit every child inherits.
    nofile: u64,
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
            let started = start_servers_retrying(ctx, m, &stem, &label, ledger)?;
            row.server_cpus = Some(started.cpus);
            (started.url, started.servers, Some(started.socket))
        }
    };

    // The load generator, with the servers' CPU time read when its warm-up ends and after
    // it exits.
    let tls = loadgen::is_tls_url(&url);
    let spec = loadgen_spec(ctx, m, &url, &stem)?;
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
    let report = loadgen_report(status, &lg, &spec)?;
    if !warm {
        row.flag(
            Status::Warning,
            "loadgen ended before its warm-up did: server CPU includes start-up",
        );
    }
    for problem in stop_servers(&mut servers, m)? {
        row.flag(Status::Warning, problem);
    }
    drop(socket);

    fill(&mut row, &report, plan, m, tls);
    if let Kind::Handshake { resumed, .. } = m.kind {
        handshake_checks(&mut row, &report, resumed, &url);
    }
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

/// The servers of one measurement, started, ready and verified.
struct Started {
    url: String,
    servers: Vec<(Role, Proc)>,
    socket: SocketFile,
    /// The CPU list applied to them.
    cpus: String,
}

/// Starts `m`'s servers in order (a peer's config file written first), waiting for each
/// to be ready and checking its pinning.
fn start_servers(
    ctx: &RunCtx<'_>,
    m: &Measurement,
    stem: &Path,
    label: &str,
    ledger: &mut Ledger,
) -> anyhow::Result<Started> {
    let (cert, combined) = ctx.certs.get(m.tls.cert)?;
    let peer_port = if m.variant.config.is_peer() {
        free_port()?
    } else {
        0
    };
    let stack = configs::stack(
        &m.variant,
        &configs::Context {
            bins: ctx.bins,
            cert,
            server_cpus: &ctx.split.server,
            runtime_dir: ctx.runtime_dir,
            log_stem: stem,
            index: m.index,
            combined_pem: combined,
            peers: ctx.peers,
            config_dir: ctx.config_dir,
            peer_port,
            // Room for the idle scenario's connections; a peer that sizes itself from
            // this must still fit in the open-file limit (two descriptors a connection).
            max_connections: (u64::from(ctx.plan.idle_connections.get()) + 1024)
                .min(ctx.nofile.saturating_sub(256) / 2)
                .max(1024),
            root: running_as_root(),
        },
    );
    let socket = SocketFile(stack.socket.clone());
    if let Some(dir) = &stack.scratch {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for (path, text) in &stack.files {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut servers: Vec<(Role, Proc)> = Vec::new();
    let mut front = String::new();
    let mut cpus = String::new();
    for server in &stack.servers {
        let mut p = Proc::spawn(&server.spec, ledger, label)?;
        front = match server.ready {
            Ready::Line => p.wait_ready(ctx.stop, ctx.plan.ready_timeout),
            Ready::Port(port) => p.wait_port(port, ctx.stop, ctx.plan.ready_timeout),
        }
        .with_context(|| format!("starting {}", server.spec.name))?;
        cpus = p.verify_affinity()?.to_string();
        servers.push((server.role, p));
    }
    Ok(Started {
        url: configs::url(stack.scheme, &front),
        servers,
        socket,
        cpus,
    })
}

/// Whether the harness runs as root (the owner of `/proc/self` is the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// [`start_servers`], tried again (up to [`PEER_START_TRIES`] times in all) for a peer:
/// the free port the harness picked for it can be taken by another program before the
/// peer binds it. The last failure is the error.
fn start_servers_retrying(
    ctx: &RunCtx<'_>,
    m: &Measurement,
    stem: &Path,
    label: &str,
    ledger: &mut Ledger,
) -> anyhow::Result<Started> {
    let tries = if m.variant.config.is_peer() {
        PEER_START_TRIES
    } else {
        1
    };
    let mut attempt = 1;
    loop {
        match start_servers(ctx, m, stem, label, ledger) {
            Err(e) if attempt < tries && !e.is::<Interrupted>() => {
                eprintln!("harness: {label}: {e:#}; starting it again on another port");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A loopback port nobody listens on now, for a peer (peers cannot report the port the
/// kernel gave them). Another program could take it before the peer binds; the peer then
/// fails to start, which the measurement reports.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("finding a free loopback port for a peer")?;
    Ok(listener.local_addr()?.port())
}

/// The handshake scenario's own checks: were the handshakes resumed when they should be,
/// and did the client run short of ephemeral ports (TIME_WAIT)?
fn handshake_checks(row: &mut Row, report: &Report, resumed: bool, url: &str) {
    let time_wait = url_port(url).map(crate::procs::time_wait_sockets_to);
    row.time_wait = time_wait;
    if let Some(tls) = &report.tls {
        // Each client connection slot's first handshake is full; most of the rest should
        // resume. Not all: a client whose ticket pool is momentarily empty (TLS 1.3 tickets
        // are single-use) makes a full handshake, 5-10% of them here for every server. Under
        // half means tickets do not work at all (the column `tls_resumed` has the count).
        let expected = tls.handshakes.saturating_sub(report.connections_opened);
        if resumed && tls.resumed * 2 < expected {
            row.flag(
                Status::Warning,
                format!(
                    "only {} of {} handshakes resumed: the server may not issue or accept \
                     session tickets",
                    tls.resumed, tls.handshakes
                ),
            );
        }
        if !resumed && tls.resumed > 0 {
            row.flag(
                Status::Error,
                format!("{} handshakes resumed in a full-handshake run", tls.resumed),
            );
        }
    }
    // Linux reuses a TIME_WAIT port for a new connection on loopback (tcp_tw_reuse 2, the
    // default): ports only run out without reuse, or when connects fail with many held.
    if let (Some(ports), Some(time_wait)) = (crate::procs::ephemeral_ports(), time_wait) {
        let no_reuse = crate::procs::tcp_tw_reuse() == Some(0);
        let pressed = no_reuse && time_wait * 10 >= ports * 8;
        if pressed || (report.errors.connect > 0 && time_wait * 2 >= ports) {
            row.flag(
                Status::Warning,
                format!(
                    "ephemeral ports nearly exhausted ({time_wait} sockets in TIME_WAIT, \
                     {ports} ports; {} connect errors): the client's connection rate, not \
                     the server, may have been the limit",
                    report.errors.connect
                ),
            );
        }
    }
}

/// The port of `https://HOST:PORT/`.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// One idle measurement: start the servers, sample their memory, have the load generator
/// open `idle_connections` connections (one request each) and hold them, sample again once
/// all are open, then let it close them.
fn measure_idle(ctx: &RunCtx<'_>, m: &Measurement, ledger: &mut Ledger) -> anyhow::Result<IdleRow> {
    let plan = ctx.plan;
    let label = measurement_label(m, false);
    let stem = ctx.logs.join(&label);
    let mut row = base_idle_row(ctx, m);
    let started = start_servers_retrying(ctx, m, &stem, &label, ledger)?;
    row.server_cpus = Some(started.cpus.clone());
    let mut servers = started.servers;
    // The terminator is the last server (for https-* the echo-server terminates itself).
    let rss = |servers: &[(Role, Proc)]| -> anyhow::Result<Vec<u64>> {
        servers.iter().map(|(_, p)| p.rss_kib()).collect()
    };
    // Settle: a server may still be allocating its workers right after it is ready.
    std::thread::sleep(IDLE_SETTLE);
    let before = rss(&servers)?;
    let spec = loadgen_spec(ctx, m, &started.url, &stem)?;
    let mut lg = Proc::spawn(&spec, ledger, &label)?;
    row.client_cpus = lg.verify_affinity().ok().map(|c| c.to_string());
    // Open time: the handshakes at whatever rate the server manages, with slack.
    let limit = plan.idle_hold + LOADGEN_SLACK + IDLE_OPEN_ALLOWANCE * plan.idle_connections.get();
    let launched = Instant::now();
    let mut after = None;
    let status = loop {
        ctx.stop.check()?;
        if after.is_none() && idle_line(&spec.stderr_log).is_some() {
            std::thread::sleep(IDLE_SETTLE);
            after = Some(rss(&servers)?);
        }
        if let Some(status) = lg.try_wait()? {
            break status;
        }
        if launched.elapsed() > limit {
            bail!(
                "loadgen --idle was still running after {}; killed it",
                humantime::format_duration(Duration::from_secs(launched.elapsed().as_secs()))
            );
        }
        std::thread::sleep(LOADGEN_POLL);
    };
    let report = loadgen_report(status, &lg, &spec)?;
    for problem in stop_servers(&mut servers, m)? {
        row.flag(Status::Warning, problem);
    }
    drop(started.socket);

    let opened = report.connections_opened;
    row.connections_opened = Some(opened);
    row.closed_by_server = report.idle.as_ref().map(|i| i.closed_by_server);
    row.errors = Some(report.errors.total);
    row.p50 = Some(Num(report.latency_us.p50));
    row.p99 = Some(Num(report.latency_us.p99));
    if let Some(t) = &report.tls {
        row.tls_version = t.version.clone();
        row.tls_cipher_suite = t.cipher_suite.clone();
        row.tls_kx_group = t.kx_group.clone();
    }
    for mismatch in report.tls_mismatches(m) {
        row.flag(Status::Error, mismatch);
    }
    let Some(after) = after else {
        row.flag(
            Status::Error,
            "loadgen never said its connections were open (no `idle:` line on its stderr)",
        );
        return Ok(row);
    };
    let per_conn =
        |b: u64, a: u64| (opened > 0).then(|| Num(a.saturating_sub(b) as f64 / opened as f64));
    let n = servers.len();
    if let (Some(&b), Some(&a)) = (before.last(), after.last()) {
        row.terminator_rss_before_kib = Some(b);
        row.terminator_rss_after_kib = Some(a);
        row.terminator_kib_per_conn = per_conn(b, a);
    }
    if n == 2 {
        row.backend_rss_before_kib = Some(before[0]);
        row.backend_rss_after_kib = Some(after[0]);
        row.backend_kib_per_conn = per_conn(before[0], after[0]);
    }
    let asked = u64::from(plan.idle_connections.get());
    if opened < asked {
        row.flag(
            Status::Warning,
            format!("only {opened} of {asked} connections opened"),
        );
    }
    if report.errors.total > 0 {
        row.flag(
            Status::Warning,
            format!("{} errors opening connections", report.errors.total),
        );
    }
    if let Some(closed) = row.closed_by_server.filter(|&c| c > 0) {
        row.flag(
            Status::Warning,
            format!("the server closed {closed} idle connections during the hold"),
        );
    }
    Ok(row)
}

/// The load generator's command for one measurement, on the client CPUs. It trusts the
/// run's certificate, or with `--target` the `--cacert` given (none: `--insecure`).
fn loadgen_spec(ctx: &RunCtx<'_>, m: &Measurement, url: &str, stem: &Path) -> anyhow::Result<Spec> {
    let plan = ctx.plan;
    let remote = plan.target.is_some();
    Ok(Spec {
        name: "loadgen".to_owned(),
        program: ctx.bins.loadgen.clone(),
        args: Invocation {
            url,
            plan,
            measurement: m,
            threads: plan
                .client_threads
                .map_or(ctx.split.client.len() as u32, |t| t.get()),
            cacert: if remote {
                ctx.cacert
            } else {
                Some(&ctx.certs.get(m.tls.cert)?.0.cert)
            },
            insecure: remote && ctx.cacert.is_none(),
        }
        .args(),
        cpus: ctx.split.client.clone(),
        stdout_log: configs::log_path(stem, "loadgen", "out"),
        stderr_log: configs::log_path(stem, "loadgen", "err"),
        wait_ready: false,
    })
}

/// A finished loadgen's JSON report, or why there is none.
fn loadgen_report(
    status: std::process::ExitStatus,
    lg: &Proc,
    spec: &Spec,
) -> anyhow::Result<Report> {
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

/// Stops the servers, the front first, so the backend sees its clients leave before its
/// own stop; returns what went wrong on the way, one remark per server, for the row.
fn stop_servers(servers: &mut [(Role, Proc)], m: &Measurement) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (_, p) in servers.iter_mut().rev() {
        let stopped = p.stop(STOP_GRACE)?;
        if let Some(problem) = stop_problem(&stopped, p, m) {
            problems.push(format!("{problem}{}", p.stderr_tail()));
        }
    }
    Ok(problems)
}

/// What went wrong when `p` was stopped, if anything. Ours must exit 0 on SIGTERM (the
/// process contract); HAProxy's documented answer to SIGTERM is to die of it at once, so a
/// peer killed by the SIGTERM it was sent stopped cleanly.
fn stop_problem(stopped: &crate::procs::Stopped, p: &Proc, m: &Measurement) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let peer = m.variant.config.is_peer() && p.name == m.variant.config.name();
    let sigterm = nix::sys::signal::Signal::SIGTERM as i32;
    if peer && !stopped.early && !stopped.killed && stopped.status.signal() == Some(sigterm) {
        return None;
    }
    stopped.problem(&p.name)
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
fn fill(row: &mut Row, report: &Report, plan: &Plan, m: &Measurement, tls: bool) {
    let size = m.size;
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
        row.tls_resumed = Some(t.resumed);
    }

    if report.requests == 0 {
        row.flag(Status::Error, "no request completed in the measured period");
    }
    if tls {
        for mismatch in report.tls_mismatches(m) {
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
        cert_type: (tls && !remote).then(|| m.tls.cert.name().to_owned()),
        handshake: m.kind.handshake_name().to_owned(),
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

/// The first columns of an idle row: what was asked for.
fn base_idle_row(ctx: &RunCtx<'_>, m: &Measurement) -> IdleRow {
    let mut row = IdleRow {
        config: m.variant.config_name().to_owned(),
        tls_backend: m.variant.backend_name().to_owned(),
        iteration: m.iteration,
        connections: ctx.plan.idle_connections.get(),
        cert_type: Some(m.tls.cert.name().to_owned()),
        server_cpus: Some(ctx.split.server.to_string()),
        client_cpus: Some(ctx.split.client.to_string()),
        ..IdleRow::default()
    };
    if let Some(warning) = &ctx.split.warning {
        row.flag(Status::Ok, warning);
    }
    row
}

/// Names the measurement's log files: `1-proxy-rustls-aws-lc-1000` (sweep),
/// `1-haproxy-full-rsa-2048` (handshakes; `-hybrid` for the post-quantum group),
/// `1-nginx-idle`.
fn measurement_label(m: &Measurement, remote: bool) -> String {
    let variant = if remote {
        "remote".to_owned()
    } else {
        m.variant.label()
    };
    match m.kind {
        Kind::Sweep => format!("{}-{variant}-{}", m.iteration, m.size),
        Kind::Handshake {
            cert,
            resumed,
            hybrid,
        } => format!(
            "{}-{variant}-{}-{}{}",
            m.iteration,
            if resumed { "resumed" } else { "full" },
            cert.name(),
            if hybrid { "-hybrid" } else { "" }
        ),
        Kind::Idle => format!("{}-{variant}-idle", m.iteration),
    }
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
    meta: PathBuf,
    logs: PathBuf,
    /// Peers' config files.
    configs: PathBuf,
}

impl OutDir {
    /// Creates the run folder (a fresh one under `results/` unless `out` is given), its
    /// `logs/` and `configs/`, and the CSV file of each scenario of the plan with its
    /// header (`results.csv`, `handshakes.csv`, `idle.csv`), so that an unwritable place
    /// fails now.
    fn create(
        out: Option<&Path>,
        host: &Host,
        now: SystemTime,
        plan: &Plan,
    ) -> anyhow::Result<(OutDir, Sinks)> {
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
        let configs = dir.join("configs");
        std::fs::create_dir_all(&configs)
            .with_context(|| format!("cannot create {}", configs.display()))?;
        let parts = plan.scenario.parts();
        let sink = |name: &str, scenario: Scenario, header: &[&str]| -> anyhow::Result<_> {
            if !parts.contains(&scenario) {
                return Ok(None);
            }
            CsvSink::create_with(&dir.join(name), header)
                .map(Some)
                .with_context(|| format!("{} is not a writable, fresh run folder", dir.display()))
        };
        let sinks = Sinks {
            sweep: sink("results.csv", Scenario::Sweep, &crate::output::COLUMNS)?,
            handshakes: sink(
                "handshakes.csv",
                Scenario::Handshakes,
                &crate::output::COLUMNS,
            )?,
            idle: sink("idle.csv", Scenario::Idle, &IDLE_COLUMNS)?,
        };
        let out = OutDir {
            meta: dir.join("meta.json"),
            dir,
            logs,
            configs,
        };
        Ok((out, sinks))
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
    if plan.scenario.is_fault_suite() {
        let what = match plan.scenario {
            Scenario::Soak => format!(
                "scenario 9 (long run), {}",
                humantime::format_duration(plan.soak_duration)
            ),
            _ if plan.short_faults => "scenarios 1-8, short (seconds each)".to_owned(),
            _ => "scenarios 1-8".to_owned(),
        };
        s.push_str(&format!(
            "  faults:      {what}; proxy (rustls-aws-lc) in front of the echo-server under \
             a steady good-client load\n  cpus:        servers {}, clients {}\n",
            split.server, split.client
        ));
        return s;
    }
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
    let parts = plan.scenario.parts();
    if parts.contains(&Scenario::Sweep) {
        s.push_str(&format!(
            "  sizes:       {} bytes\n",
            plan.sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if parts.contains(&Scenario::Handshakes) {
        s.push_str(
            "  handshakes:  a new connection per request; full and resumed, ecdsa-p256 and \
             rsa-2048; full over X25519MLKEM768 for rustls-aws-lc\n",
        );
    }
    if parts.contains(&Scenario::Idle) {
        s.push_str(&format!(
            "  idle:        {} connections held {} through each TLS config\n",
            plan.idle_connections,
            humantime::format_duration(plan.idle_hold)
        ));
    }
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
        let figures = match (row.rps, row.p50, row.p99) {
            (Some(rps), Some(p50), Some(p99)) => {
                format!(
                    "{:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
                    rps.0, p50.0, p99.0
                )
            }
            _ => "no figures".to_owned(),
        };
        self.finish_line(measurement_label(m, remote), figures, row.status, &row.note);
    }

    fn finish_idle(&mut self, m: &Measurement, row: &IdleRow) {
        let figures = match (row.connections_opened, row.terminator_kib_per_conn) {
            (Some(opened), Some(kib)) => format!("{opened} open, {:.1} KiB/connection", kib.0),
            _ => "no figures".to_owned(),
        };
        self.finish_line(measurement_label(m, false), figures, row.status, &row.note);
    }

    fn finish_line(&mut self, label: String, figures: String, status: Status, note: &str) {
        let verdict = if note.is_empty() {
            status.name().to_owned()
        } else {
            format!("{}: {note}", status.name())
        };
        match self {
            Progress::Bar(bar) => {
                if status != Status::Ok {
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

/// The open-file limit the harness asks for (as root it can raise the hard limit): the
/// idle scenario holds 10 000 connections, two descriptors each in a proxy.
const WANT_NOFILE: u64 = 262_144;
/// Descriptors a terminator keeps besides its connections' (listeners, logs, epoll, ...).
const IDLE_FD_RESERVE: u64 = 256;
/// Memory settles this long before it is sampled in the idle scenario.
const IDLE_SETTLE: Duration = Duration::from_millis(500);
/// Time allowed per idle connection to open (handshake and first request), on top of the
/// hold, before loadgen counts as hung.
const IDLE_OPEN_ALLOWANCE: Duration = Duration::from_millis(5);
/// Starts of a peer's stack before its measurement counts as failed (see
/// [`start_servers_retrying`]).
const PEER_START_TRIES: u32 = 3;
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
    use crate::plan::Preset;

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
            OutDir::create(
                Some(&out),
                &host(),
                SystemTime::now(),
                &Preset::Smoke.plan()
            )
            .unwrap_err()
        );
        assert!(err.contains("--out") && err.contains("a-file/run"), "{err}");
    }

    #[test]
    fn out_dir_refuses_to_overwrite_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Preset::Smoke.plan();
        OutDir::create(Some(dir.path()), &host(), SystemTime::now(), &plan).unwrap();
        let err = format!(
            "{:#}",
            OutDir::create(Some(dir.path()), &host(), SystemTime::now(), &plan).unwrap_err()
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
    fn url_port_reads_the_authority() {
        assert_eq!(url_port("https://127.0.0.1:8443/"), Some(8443));
        assert_eq!(url_port("https://[::1]:443/x"), Some(443));
        assert_eq!(url_port("unix:///tmp/s.sock"), None);
    }

    #[test]
    fn idle_connections_fit_the_open_file_limit() {
        let mut plan = crate::plan::Plan {
            scenario: Scenario::All,
            ..Preset::Quick.plan()
        };
        assert_eq!(fit_idle_connections(&mut plan, 1_048_576), None);
        assert_eq!(plan.idle_connections.get(), 10_000);
        let line = fit_idle_connections(&mut plan, 20_000).unwrap();
        assert_eq!(plan.idle_connections.get(), (20_000 - 256) / 2);
        assert!(
            line.contains("from 10000 to 9872") && line.contains("20000"),
            "{line}"
        );
        let mut sweep = Preset::Quick.plan();
        assert_eq!(
            fit_idle_connections(&mut sweep, 100),
            None,
            "no idle scenario"
        );
    }

    #[test]
    fn plan_description_has_the_estimate() {
        let plan = crate::plan::Preset::Smoke.plan();
        let mask: cpus::CpuList = "0-1".parse().unwrap();
        let split = CpuSplit::resolve(&mask, None, None).unwrap();
        let text = describe_plan(&plan, &split);
        assert!(text.contains("12 measurements"), "{text}");
        assert!(text.contains("servers 0, load generator 1"), "{text}");
    }
}
