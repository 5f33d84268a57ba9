//! One harness run: check everything that can be checked before anything starts, build the
//! binaries, generate the run's certificate, then for each measurement start the servers
//! (pinned, waited for), run the load generator, read its report and the servers' CPU time,
//! stop everything and write the row. Ends with meta.json, the summary table, the paths and
//! the report page (`index.html`).

mod clients;
mod folder;
mod idle;
mod load;
mod measurements;
mod progress;
mod resources;
mod rows;
mod verdict;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::bins::{self, Bins};
use crate::cpus::{self, CpuSplit};
use crate::faults::{Placement, Terminator};
use crate::meta::{self, Host};
use crate::peers::current::PeerDir;
use crate::peers::{self, Origin, Peer};
use crate::plan::{PeerSet, Plan, Scenario};
use crate::procs::{Interrupted, Ledger, Stop};
use crate::tls_library::Ours;
use folder::OutDir;
pub use progress::describe_plan;

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
    /// Every measurement ran; `failed_rows` of them are error rows. `dir` is the run
    /// folder (for the thresholds and baselines checked after the run).
    Complete {
        rows: usize,
        failed_rows: usize,
        dir: PathBuf,
    },
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
    let attackers = plan
        .scenario
        .is_fault_suite()
        .then(|| {
            Placement::resolve(
                &mask,
                &split.client,
                plan.attacker_cpus.as_ref(),
                plan.attacker_sched,
            )
        })
        .transpose()
        .setup()?;
    let host = Host::probe(mask);
    let (peers, mut skipped) = find_peers(&mut plan).setup()?;
    for (_, line) in plan.skipped_configs() {
        eprintln!("harness: {line}");
        skipped.push(line);
    }
    // Idle connections need a descriptor each in the load generator and two in a proxy
    // (client and upstream): raise the limit every child inherits, and hold fewer
    // connections when even the raised limit cannot carry them.
    let nofile = crate::procfs::raise_nofile(WANT_NOFILE)
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
    let mut meta = starting_meta(&plan, opts, &split, &host, &peers, skipped, started);
    meta::write_json(&out.meta, &meta).setup()?;
    let run = Run {
        plan: &plan,
        opts,
        stop,
        split: &split,
        attackers: attackers.as_ref(),
        out: &out,
    };
    let result = if plan.scenario.is_fault_suite() {
        run_fault_suite(&run, &peers, &mut meta)
    } else if plan.scenario == Scenario::SniScale {
        run_sni_scale(&run, &peers, &mut meta)
    } else {
        measurements::run_measurements(&run, sinks, &peers, &mut meta)
    };
    record_end(&result, &mut meta, &out);
    // Last, so that it shows how the run ended; like the pictures, never a failed run.
    match crate::report::write(&out.dir) {
        Ok(path) => println!("report:  {}", path.display()),
        Err(e) => eprintln!("harness: no report page: {e:#}"),
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

/// One run once its folder exists: the plan and what was settled before anything started.
#[derive(Clone, Copy)]
struct Run<'a> {
    plan: &'a Plan,
    opts: &'a Options,
    stop: &'a Stop,
    split: &'a CpuSplit,
    /// The fault suite's attackers; `None` for the other scenarios.
    attackers: Option<&'a Placement>,
    out: &'a OutDir,
}

/// meta.json as written before anything runs (`status: starting`).
fn starting_meta(
    plan: &Plan,
    opts: &Options,
    split: &CpuSplit,
    host: &Host,
    peers: &[Peer],
    skipped: Vec<String>,
    started: SystemTime,
) -> Value {
    json!({
        "schema": 1,
        "command": opts.command,
        "command_line": meta::shell_line(&opts.command),
        "cwd": std::env::current_dir().ok(),
        "plan": plan.to_json(),
        "cpus": {
            "server": split.server.to_string(),
            "client": split.client.to_string(),
            // Each load generator process's share of the client CPUs (--client-processes).
            "client_processes": client_shares(plan, split),
            "warning": split.warning,
        },
        "host": host.to_json(),
        "git": meta::git(bins::workspace_root().as_deref()),
        "libraries": meta::library_versions(bins::workspace_root().as_deref()),
        "peers": peers
            .iter()
            .map(|p| {
                let peer = json!({
                    "program": p.program,
                    "version": p.version,
                    "origin": p.origin.set().name(),
                    "tls_library": p.tls_library,
                });
                (p.config.name().to_owned(), peer)
            })
            .collect::<serde_json::Map<_, _>>(),
        "skipped": skipped,
        "start": meta::rfc3339(started),
        "end": null,
        "status": "starting",
    })
}

/// The CPU list of each load generator process of a load measurement.
fn client_shares(plan: &Plan, split: &CpuSplit) -> Vec<String> {
    let n = plan.client_processes.get() as usize;
    split
        .client
        .round_robin(n)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// meta.json's end time, status and error, however the run ended.
fn record_end(result: &anyhow::Result<Outcome>, meta: &mut Value, out: &OutDir) {
    let (status, error) = match result {
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
    if let Err(e) = meta::write_json(&out.meta, meta) {
        eprintln!("harness: {e:#}");
    }
}

/// Finds the peer terminators the plan names, from the peer set it asks for, and drops
/// those not installed, each with one line saying how to install it. Returns the peers
/// found and those lines; the plan then names the set it ran.
fn find_peers(plan: &mut Plan) -> anyhow::Result<(Vec<Peer>, Vec<String>)> {
    if plan.target.is_some() || !plan.configs.iter().any(|c| c.is_peer()) {
        return Ok((Vec::new(), Vec::new()));
    }
    let origin = peer_origin(plan.peers)?;
    plan.peers = Some(origin.set());
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    plan.configs.retain(|&config| {
        if !config.is_peer() {
            return true;
        }
        match peers::find(config, &origin) {
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

/// The peer set a run uses (`--peers`, else current when installed), said in one line
/// with how to get the other.
fn peer_origin(asked: Option<PeerSet>) -> anyhow::Result<Origin> {
    let dir = PeerDir::default_location()?;
    let installed = dir.manifest().is_some();
    let install = peers::check::INSTALL_COMMAND;
    let (origin, other) = match (asked, installed) {
        (Some(PeerSet::Current), false) => bail!(
            "--peers current: no current peer set in {}; install it with `{install}` (as root)",
            dir.path.display()
        ),
        (Some(PeerSet::System) | None, false) => (
            Origin::System,
            format!(
                "`{install}` prepares the current releases (Debian {}, and HAProxy on AWS-LC)",
                peers::current::SUITE
            ),
        ),
        (Some(PeerSet::System), true) => (
            Origin::System,
            format!(
                "`--peers current` runs the current releases in {}",
                dir.path.display()
            ),
        ),
        (_, true) => (
            Origin::Current(dir.clone()),
            "`--peers system` runs the host's packages instead".to_owned(),
        ),
    };
    let what = match &origin {
        Origin::System => "system (the host's packages)".to_owned(),
        Origin::Current(dir) => format!(
            "current (Debian {}'s releases and HAProxy on AWS-LC, in {})",
            peers::current::SUITE,
            dir.path.display()
        ),
    };
    eprintln!("harness: peers: {what}; {other}");
    Ok(origin)
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

/// The binaries (built, release, unless `--bin-dir` names them) and the TLS library of each
/// backend in the proxy and echo-server, read once for meta.json and the rows.
pub(super) fn binaries(
    opts: &Options,
    stop: &Stop,
    remote: bool,
    meta: &mut Value,
) -> anyhow::Result<(Bins, Ours)> {
    let bin_dir = match &opts.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            eprintln!("harness: building the release binaries (cargo build --release)");
            bins::build(stop, remote)?
        }
    };
    let bins = Bins::locate(&bin_dir, remote).setup()?;
    let described = bins.describe(remote);
    meta["binaries"] = described.json;
    if !remote {
        meta["libraries"]["openssl_linked"] = json!(described.linked_openssl);
    }
    Ok((bins, described.tls_libraries))
}

/// Runs the fault suite (`--scenario faults`, or `soak` for its long run) against the
/// plan's configs (our proxy and the peers found): `faults.csv` and its table. A scenario
/// whose verdict is `fail` counts as a failed row.
fn run_fault_suite(run: &Run<'_>, peers: &[Peer], meta: &mut Value) -> anyhow::Result<Outcome> {
    let Run {
        plan,
        opts,
        stop,
        split,
        attackers,
        out,
    } = *run;
    let attackers = attackers.context("no attacker placement outside the fault suite")?;
    meta["attackers"] = attackers.to_json(split);
    let (bins, tls_libraries) = binaries(opts, stop, false, meta)?;
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-faults-")
        .tempdir()
        .context("creating a temporary directory for sockets and certificates")?;
    meta["status"] = json!("running");
    meta::write_json(&out.meta, meta)?;
    let mut ledger = Ledger::create(&out.logs.join("children.tsv"))?;
    let library = tls_libraries.get(false, crate::faults::BACKEND);
    let terminators = fault_terminators(plan, peers, library);
    meta["faults"] = fault_settings(&terminators);
    let rows = crate::faults::run(crate::faults::Inputs {
        bins: &bins,
        split,
        attackers,
        only: &plan.fault_scenarios,
        out_dir: &out.dir,
        logs: &out.logs,
        runtime_dir: runtime.path(),
        stop,
        ledger: &mut ledger,
        short: plan.short_faults,
        soak: (plan.scenario == Scenario::Soak).then_some(plan.soak_duration),
        terminators,
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
        dir: out.dir.clone(),
    })
}

/// meta.json's `faults`: which directive of each terminator carries each of the proxy's
/// settings (the values are in the `configs/` files the suite writes).
fn fault_settings(terminators: &[Terminator]) -> Value {
    let each = terminators.iter().map(|t| {
        let settings: serde_json::Map<String, Value> = t
            .equivalents()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect();
        (t.name().to_owned(), Value::Object(settings))
    });
    json!({ "terminators": each.collect::<serde_json::Map<_, _>>() })
}

/// The terminators of the fault suite, in the plan's order: our proxy, and each peer the
/// plan names that was found (the others were skipped with a line before the run).
fn fault_terminators(plan: &Plan, peers: &[Peer], tls_library: String) -> Vec<Terminator> {
    plan.configs
        .iter()
        .filter_map(|&config| {
            if config.is_peer() {
                let peer = peers.iter().find(|p| p.config == config)?;
                Some(Terminator::Peer(peer.clone()))
            } else {
                Some(Terminator::Proxy {
                    tls_library: tls_library.clone(),
                })
            }
        })
        .collect()
}

/// Runs the certificate-scale scenario (`--scenario sni-scale`): `sni-scale.csv` and its
/// table. A terminator whose verdict is `fail` counts as a failed row.
fn run_sni_scale(run: &Run<'_>, peers: &[Peer], meta: &mut Value) -> anyhow::Result<Outcome> {
    let Run {
        plan,
        opts,
        stop,
        split,
        out,
        ..
    } = *run;
    let (bins, ours) = binaries(opts, stop, false, meta)?;
    let runtime = tempfile::Builder::new()
        .prefix("tls-off-sni-")
        .tempdir()
        .context("creating a temporary directory for certificates and sockets")?;
    meta["status"] = json!("running");
    meta::write_json(&out.meta, meta)?;
    let mut ledger = Ledger::create(&out.logs.join("children.tsv"))?;
    let rows = crate::sni_scale::run(crate::sni_scale::Inputs {
        plan,
        bins: &bins,
        split,
        out_dir: &out.dir,
        logs: &out.logs,
        configs: &out.configs,
        runtime_dir: runtime.path(),
        stop,
        ledger: &mut ledger,
        peers,
        ours: &ours,
    })?;
    meta["rows"] = json!(rows.len());
    let failed_rows = rows
        .iter()
        .filter(|r| r.verdict != Some(crate::faults::Verdict::Pass))
        .count();
    if failed_rows > 0 {
        eprintln!("harness: {failed_rows} terminator(s) failed; see sni-scale.csv");
    }
    Ok(Outcome::Complete {
        rows: rows.len(),
        failed_rows,
        dir: out.dir.clone(),
    })
}

/// The open-file limit the harness asks for (as root it can raise the hard limit): the
/// idle scenario holds 10 000 connections, two descriptors each in a proxy.
pub(super) const WANT_NOFILE: u64 = 262_144;

/// Descriptors a terminator keeps besides its connections' (listeners, logs, epoll, ...).
const IDLE_FD_RESERVE: u64 = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Preset;

    #[test]
    fn the_fault_suite_attacks_the_plans_configs_whose_peer_was_found() {
        let plan = crate::plan::Plan {
            scenario: Scenario::Faults,
            configs: vec![
                crate::plan::ConfigName::ProxyRustls,
                crate::plan::ConfigName::Haproxy,
                crate::plan::ConfigName::Nginx,
            ],
            ..Preset::Smoke.plan()
        };
        let haproxy = Peer {
            config: crate::plan::ConfigName::Haproxy,
            program: "/usr/sbin/haproxy".into(),
            version: "HAProxy version 3.0.11".into(),
            origin: Origin::System,
            tls_library: "OpenSSL 3.5.4".into(),
        };
        let t = fault_terminators(&plan, &[haproxy], "rustls 0.23".into());
        let names: Vec<&str> = t.iter().map(Terminator::name).collect();
        assert_eq!(names, ["proxy-rustls", "haproxy"], "nginx was not found");
        assert_eq!(t[0].tls_library(), "rustls 0.23");
        assert_eq!(t[1].tls_library(), "OpenSSL 3.5.4");
        let meta = fault_settings(&t);
        assert_eq!(
            meta["terminators"]["haproxy"]["timeouts.handshake"],
            "timeout client-hs"
        );
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
}
