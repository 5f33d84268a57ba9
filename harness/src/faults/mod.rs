//! The fault suite (`harness --scenario faults`, issues 9 and 19): the real release proxy
//! (or a peer: HAProxy, nginx, hitch, with the same limits, see [`terminator`]), with the
//! echo-server behind it on a Unix socket, under a steady good-client load (loadgen, open
//! loop, every echoed body verified) while the suite attacks it, breaks its backend, rotates
//! its certificates or signals it. Each scenario has acceptance criteria; a failed one
//! gives the row verdict `fail`, with the criterion and the numbers in its note, and the
//! suite goes on. Results: `faults.csv` in the run folder (one row per scenario and
//! terminator) and the same table on stdout, then the side-by-side summary
//! (`faults-summary.md`, [`summary`]).
//!
//! Scenarios (1-8 by default, 9 only when asked for):
//! 1. slowloris: silent and one-byte-a-second connections, closed by the handshake timeout;
//! 2. garbage: random bytes, truncated hellos, junk after a hello, oversized records, alerts;
//! 3. connection flood beyond `max_connections`, and beyond the proxy's descriptor limit;
//! 4. the backend killed and restarted mid-run;
//! 5. a backend that never answers, reads slowly, or pushes to a client that does not read;
//! 6. certificate reload (SIGHUP) every second, one corrupt certificate among them;
//! 7. SIGTERM under load;
//! 8. client resets (RST) mid-handshake, mid-upload and mid-download;
//! 9. soak: moderate load for a long time, RSS and descriptors sampled.
//!
//! Processes are started with [`crate::procs::Proc`] (pinned, logged, killed on drop): the
//! terminator and echo-server on the server CPUs, loadgen on the client CPUs. With several
//! terminators the suite runs scenario by scenario, each terminator in turn, so the rows
//! compared side by side are neighbours in time. The attackers are tokio tasks on a runtime
//! whose threads are placed by [`placement`] (by default on the client CPUs at
//! `SCHED_IDLE`, so that they never delay the load generator); they target only
//! `127.0.0.1`, and each is bounded in count and time.

mod attack;
mod bad_upstream;
mod client;
mod hello;
mod launch;
mod load;
pub mod placement;
pub mod report;
mod scenarios;
mod stack;
pub mod summary;
pub mod terminator;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bins::Bins;
use crate::certs::Pki;
use crate::cpus::CpuSplit;
use crate::output::CsvSink;
use crate::procs::{Interrupted, Ledger, Stop};

/// The suite's seeded generator, also `compare`'s bootstrap's.
pub use hello::Rng;
pub use placement::{AttackerSched, Placement};
pub use report::{FaultRow, Verdict};
pub use terminator::Terminator;

/// The TLS backend of the proxy under attack: rustls with aws-lc-rs, the default.
pub const BACKEND: proxy::tls::Backend = proxy::tls::Backend::RustlsAwsLc;

/// Everything the suite needs from the harness run that calls it.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub bins: &'a Bins,
    pub split: &'a CpuSplit,
    /// Where the attackers run (see [`placement`]).
    pub attackers: &'a Placement,
    /// The scenarios to run, by number; empty: 1-8 (or 9 alone with `soak`).
    pub only: &'a [u8],
    /// The run folder: `faults.csv` (and `soak.csv`) go here.
    pub out_dir: &'a Path,
    /// The run folder's `logs/`: every process's stdout and stderr.
    pub logs: &'a Path,
    /// Private temporary directory for sockets, certificates and configs.
    pub runtime_dir: &'a Path,
    /// SIGINT/SIGTERM of the harness: stop early with `Err(Interrupted)`.
    pub stop: &'a Stop,
    pub ledger: &'a mut Ledger,
    /// CI: each scenario a few seconds, smaller counts.
    pub short: bool,
    /// Run only scenario 9 (soak), for this long.
    pub soak: Option<Duration>,
    /// The terminators to attack, in order (each runs every scenario that applies to it);
    /// the proxy's carries the TLS library [`BACKEND`] runs in it (read by the caller from
    /// `proxy --version`, see [`crate::tls_library`]).
    pub terminators: Vec<Terminator>,
}

/// Runs the suite and writes `faults.csv`; prints the table, then the side-by-side
/// summary (also written to `faults-summary.md`) when more than one terminator ran. `Ok`
/// with every row, whatever the verdicts (the caller turns a `fail` into the exit code);
/// `Err(Interrupted)` on a signal (the rows so far are written first); other `Err`s only
/// when the suite cannot start at all.
pub fn run(inputs: Inputs<'_>) -> anyhow::Result<Vec<FaultRow>> {
    let csv = inputs.out_dir.join(crate::plan::FAULTS_CSV);
    let summary_path = inputs.out_dir.join(crate::plan::FAULTS_SUMMARY);
    let soak = inputs.soak.is_some();
    let only = inputs.only;
    let mut suite = Suite::prepare(inputs)?;
    let list: Vec<&Scenario> = scenarios::ALL
        .iter()
        .filter(|s| (s.number == 9) == soak)
        .filter(|s| only.is_empty() || only.contains(&s.number))
        .collect();
    let mut sink = CsvSink::create_with(&csv, &report::COLUMNS)?;
    let mut rows: Vec<FaultRow> = Vec::new();
    'scenarios: for scenario in list {
        for current in 0..suite.terminators.len() {
            if suite.inputs.stop.requested() {
                break 'scenarios;
            }
            suite.current = current;
            let Some(row) = run_one(&mut suite, scenario)? else {
                break 'scenarios;
            };
            sink.write(&report::cells(&row))?;
            rows.push(row);
        }
    }
    println!("\n{}", report::render(&rows));
    println!("faults: {}", csv.display());
    if suite.terminators.len() > 1 {
        let text = summary::render(&rows);
        println!("\n{text}");
        std::fs::write(&summary_path, &text)
            .with_context(|| format!("writing {}", summary_path.display()))?;
        println!("faults summary: {}", summary_path.display());
    }
    if suite.inputs.stop.requested() {
        return Err(Interrupted.into());
    }
    Ok(rows)
}

/// Runs one scenario against the current terminator and says how it went; a scenario
/// that cannot run is a failed row, one that does not apply an `n/a` row. `None` on a
/// signal.
fn run_one(suite: &mut Suite<'_>, scenario: &Scenario) -> anyhow::Result<Option<FaultRow>> {
    let terminator = suite.terminator().clone();
    eprintln!(
        "faults: scenario {} ({}) against {}",
        scenario.number,
        scenario.name,
        terminator.name()
    );
    let started = Instant::now();
    let mut row = match (scenario.applies)(&terminator) {
        Some(reason) => FaultRow::not_applicable(scenario.number, scenario.name, &reason),
        None => match (scenario.run)(suite) {
            Ok(row) => row,
            Err(e) if e.is::<Interrupted>() => return Ok(None),
            Err(e) => {
                let mut row = FaultRow::new(scenario.number, scenario.name);
                let mut checks = report::Checks::default();
                checks.require(false, || format!("the scenario could not run: {e:#}"));
                row.conclude(&checks);
                row
            }
        },
    };
    if row.baseline_p99_us.is_none() {
        row.baseline_p99_us = suite.baselines[suite.current];
    }
    row.tls_library = terminator.tls_library().to_owned();
    row.terminator = terminator.name().to_owned();
    eprintln!(
        "faults: scenario {} {} against {}: {} in {:.1} s{}",
        row.scenario,
        row.name,
        row.terminator,
        row.verdict.name(),
        started.elapsed().as_secs_f64(),
        if row.verdict == Verdict::Pass {
            String::new()
        } else {
            format!(" ({})", row.note)
        }
    );
    Ok(Some(row))
}

/// One scenario of the suite.
#[derive(Debug)]
pub(crate) struct Scenario {
    pub number: u8,
    pub name: &'static str,
    pub run: fn(&mut Suite<'_>) -> anyhow::Result<FaultRow>,
    /// `Some(reason)` when the scenario cannot be run against this terminator at all.
    pub applies: fn(&Terminator) -> Option<String>,
}

/// The suite's shared state.
pub(crate) struct Suite<'a> {
    pub inputs: Inputs<'a>,
    /// The attackers' runtime (threads placed as `inputs.attackers` says).
    pub rt: tokio::runtime::Runtime,
    pub pki: Pki,
    pub client: client::ProbeClient,
    pub scale: Scale,
    /// Garbage comes from this seed (printed, for replay).
    pub seed: u64,
    /// The terminators, and the one the running scenario attacks.
    pub terminators: Vec<Terminator>,
    pub current: usize,
    /// Each terminator's good clients' p99 without attack, from its scenario 1.
    pub baselines: Vec<Option<f64>>,
    dir: PathBuf,
    /// The run folder's `configs/`: every terminator config the suite writes.
    configs: PathBuf,
}

impl<'a> Suite<'a> {
    /// The suite's CA, probe client, attackers' runtime and garbage seed, announced on
    /// stderr.
    fn prepare(inputs: Inputs<'a>) -> anyhow::Result<Suite<'a>> {
        // Thousands of attacking sockets live in this process.
        if let Err(e) = sysio::host::raise_nofile_limit() {
            eprintln!("faults: cannot raise the open-file limit: {e}");
        }
        if inputs.terminators.is_empty() {
            anyhow::bail!("the fault suite needs a terminator to attack");
        }
        let dir = inputs.runtime_dir.join("faults");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let configs = inputs.out_dir.join("configs");
        std::fs::create_dir_all(&configs)
            .with_context(|| format!("creating {}", configs.display()))?;
        let pki = Pki::create(&dir)?;
        let client = client::ProbeClient::new(pki.ca_pem().as_bytes())?;
        let rt = inputs.attackers.runtime()?;
        let threads = inputs.attackers.verify()?;
        let seed = hello::Rng::seed_from_clock();
        let names: Vec<&str> = inputs.terminators.iter().map(Terminator::name).collect();
        eprintln!(
            "faults: {} suite against {}; terminator and echo-server on CPUs {}, loadgen on \
             CPUs {}, attackers on CPUs {} at {} ({} threads, as /proc shows them), garbage \
             seed {seed:#x}",
            match (inputs.soak, inputs.short) {
                (Some(_), _) => "soak",
                (None, true) => "short",
                (None, false) => "full",
            },
            names.join(", "),
            inputs.split.server,
            inputs.split.client,
            inputs.attackers.cpus,
            // `verify` fails on no thread.
            threads
                .first()
                .map_or_else(String::new, |t| t.policy.to_string()),
            threads.len()
        );
        let terminators = inputs.terminators.clone();
        Ok(Suite {
            scale: Scale::new(inputs.short),
            baselines: vec![None; terminators.len()],
            terminators,
            current: 0,
            inputs,
            rt,
            pki,
            client,
            seed,
            dir,
            configs,
        })
    }
}

impl Suite<'_> {
    /// The terminator the running scenario attacks.
    pub fn terminator(&self) -> &Terminator {
        &self.terminators[self.current]
    }

    /// The current terminator's no-attack p99, for the rows after scenario 1.
    pub fn set_baseline(&mut self, p99_us: f64) {
        self.baselines[self.current] = Some(p99_us);
    }

    /// `tag` for files and ledger entries: a peer's name goes first (`nginx-1-slowloris`);
    /// the proxy's keep the names they had before peers could be attacked.
    fn tagged(&self, tag: &str) -> String {
        match self.terminator() {
            Terminator::Proxy { .. } => tag.to_owned(),
            Terminator::Peer(p) => format!("{}-{tag}", p.config.name()),
        }
    }

    /// `runtime_dir/faults/<tag>/`, fresh.
    pub fn scenario_dir(&self, tag: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(self.tagged(tag));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// `logs/faults-<tag>-<process>.<ext>`.
    pub fn log(&self, tag: &str, process: &str, ext: &str) -> PathBuf {
        self.inputs
            .logs
            .join(format!("faults-{}-{process}.{ext}", self.tagged(tag)))
    }

    /// `configs/faults-<tag>-<terminator>.<ext>`: the terminator's config file.
    pub fn config_path(&self, tag: &str, ext: &str) -> PathBuf {
        self.configs
            .join(format!("faults-{tag}-{}.{ext}", self.terminator().name()))
    }

    /// The children ledger's label of scenario `tag`'s processes.
    pub fn label(&self, tag: &str) -> String {
        format!("faults-{}", self.tagged(tag))
    }

    /// Sleeps, looking at the stop flag.
    pub fn sleep(&self, d: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + d;
        loop {
            self.inputs.stop.check()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// Sleeps until `t` (at once if it passed).
    pub fn sleep_until(&self, t: Instant) -> anyhow::Result<()> {
        self.sleep(t.saturating_duration_since(Instant::now()))
    }

    /// Runs `fut` as a task on the attackers' (pinned) runtime and waits for it.
    pub fn on_client<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.rt.block_on(self.rt.spawn(fut)) {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl std::fmt::Debug for Suite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite")
            .field("scale", &self.scale)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Counts and durations: the full suite, or CI's short one.
#[derive(Debug, Clone)]
pub(crate) struct Scale {
    pub short: bool,
    /// Good clients' open-loop rate, requests/s, and their connections.
    pub rate: u32,
    pub connections: u32,
    pub slowloris: usize,
    pub garbage: usize,
    pub flood: usize,
    /// Scenario 5: connections per misbehaviour, and how long each pushes.
    pub bad_backend_conns: usize,
    pub push_for: Duration,
    /// Scenario 6: how long certificates rotate (one reload a second).
    pub reload_for: Duration,
    /// Scenario 7: the proxy's shutdown grace period.
    pub grace: Duration,
    /// Scenario 8: reset connections, and scenario 4: in-flight connections.
    pub resets: usize,
    pub in_flight: usize,
}

impl Scale {
    fn new(short: bool) -> Scale {
        if short {
            Scale {
                short,
                rate: 1000,
                connections: 10,
                slowloris: 2000,
                garbage: 1000,
                flood: 1500,
                bad_backend_conns: 4,
                push_for: Duration::from_secs(2),
                reload_for: Duration::from_secs(4),
                grace: Duration::from_secs(3),
                resets: 150,
                in_flight: 20,
            }
        } else {
            Scale {
                short,
                rate: 2000,
                connections: 20,
                slowloris: 2000,
                garbage: 10_000,
                flood: 1500,
                bad_backend_conns: 8,
                push_for: Duration::from_secs(5),
                reload_for: Duration::from_secs(30),
                grace: Duration::from_secs(5),
                resets: 600,
                in_flight: 50,
            }
        }
    }
}

/// How often sleeps look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
