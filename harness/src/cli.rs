//! The command line: clap flags, each an override of the plan (see `plan`), plus the
//! run options; and the mapping from outcome to exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

use crate::compare::{self, AtRunEnd, Threshold};
use crate::peers::{self, current::PeerDir};
use crate::plan::{self, Overrides, Plan};
use crate::procs::Stop;
use crate::report;
use crate::run::{self, Options, Outcome, SetupError};

/// Measures what TLS termination costs on this machine: runs the echo-server, the proxy
/// and the load generator pinned to CPUs, sweeps body sizes, and writes
/// results/<UTC time>-<host>/{results.csv, meta.json, summary.txt, logs/}.
#[derive(Debug, Parser)]
#[command(name = "harness", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The plan flags, which are also the plan file's keys.
    #[command(flatten)]
    pub overrides: Overrides,
    /// A TOML plan file (see harness/plans/example.toml), or a preset name.
    // Shown right after --preset, as it always was: display orders that tie sort by name,
    // and the flattened --preset and --scenario have 0 and 1.
    #[arg(long, value_name = "FILE|PRESET", display_order = 1)]
    pub plan: Option<String>,
    /// CA certificate to verify a remote --target with (default: no verification).
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
    /// Run folder (default: results/<UTC time>-<host>/ in the workspace).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Use the binaries in DIR instead of building them.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Stop at the first failed measurement.
    #[arg(long)]
    pub fail_fast: bool,
    /// A limit checked at the end of the run, [CONFIG[@SIZE]:]METRIC OP VALUE[UNIT]
    /// (p99<5ms, proxy-rustls:rps>20000, proxy-rustls@1k:cpu_per_req<=40); repeatable;
    /// exit 1 when one fails.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<Threshold>,
    /// Keep this run's CSV files and meta.json as baseline NAME (results/baselines/NAME/).
    #[arg(long, value_name = "NAME")]
    pub save_baseline: Option<String>,
    /// Compare this run with baseline NAME at the end (the comparison closes the output).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// Where baselines are saved [default: results/baselines in the workspace].
    #[arg(long, value_name = "DIR", env = "TLS_OFF_BASELINES")]
    pub baseline_dir: Option<PathBuf>,
    /// Print the resolved plan and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not run analysis/plot.py at the end of the run.
    #[arg(long)]
    pub no_plot: bool,
}

/// Commands other than a run.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare two runs (run folders, CSV files or baseline:NAME), key by key: the ratio of
    /// medians of req/s, p50, p99 and CPU per request, a 95% bootstrap interval and a
    /// verdict (faster, slower, no change, no confidence).
    Compare(compare::Args),
    /// Install, check or remove the current peer set (HAProxy, nginx, hitch and stunnel
    /// from Debian's current stable release, and HAProxy built on AWS-LC).
    Peers {
        #[command(subcommand)]
        action: PeersAction,
    },
    /// Write (or rewrite) DIR/index.html, the run's page, from what the run folder holds:
    /// e.g. after `python3 analysis/plot.py DIR/results.csv` drew its pictures.
    Report {
        /// A run folder (results/<UTC time>-<host>/).
        dir: PathBuf,
    },
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum PeersAction {
    /// Make the current peer set in its own folder (as root; about 1 GB, 5-10 minutes);
    /// a second run checks it and stops.
    Install {
        /// Only say what is installed and whether each program runs (exit 1 if not).
        #[arg(long)]
        check: bool,
        /// The folder [default: $XDG_DATA_HOME/tls-off/peers or ~/.local/share/tls-off/peers].
        #[arg(long, env = "TLS_OFF_PEERS")]
        dir: Option<PathBuf>,
        /// Debian mirror for debootstrap and apt.
        #[arg(long, default_value = peers::install::MIRROR)]
        mirror: String,
    },
    /// Delete the current peer set's folder.
    Remove {
        #[arg(long, env = "TLS_OFF_PEERS")]
        dir: Option<PathBuf>,
    },
}

impl Cli {
    /// The plan the flags ask for.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let (plan_preset, file) = match &self.plan {
            Some(value) => plan::preset_or_file(value)?,
            None => (None, None),
        };
        if let (Some(a), Some(b)) = (plan_preset, self.overrides.preset) {
            if a != b {
                bail!(
                    "--plan {} and --preset {} name different presets",
                    a.name(),
                    b.name()
                );
            }
        }
        let overrides = Overrides {
            preset: self.overrides.preset.or(plan_preset),
            ..self.overrides.clone()
        };
        Plan::resolve(file.as_deref(), overrides)
    }

    fn options(&self) -> Options {
        Options {
            out: self.out.clone(),
            bin_dir: self.bin_dir.clone(),
            fail_fast: self.fail_fast,
            cacert: self.cacert.clone(),
            dry_run: self.dry_run,
            no_plot: self.no_plot,
            command: std::env::args().collect(),
        }
    }

    /// What the run does after its summary: thresholds, saving and comparing baselines.
    fn at_run_end(&self) -> AtRunEnd {
        AtRunEnd {
            thresholds: self.thresholds.clone(),
            save_baseline: self.save_baseline.clone(),
            baseline: self.baseline.clone(),
            baselines: compare::baseline::folder(self.baseline_dir.as_deref()),
        }
    }
}

/// Runs the harness as the binary does and returns its exit code: 0 when every
/// measurement succeeded and every `--threshold` held, 1 when a measurement, a threshold or
/// the run failed, 2 for a bad command line, plan, baseline or machine (nothing was
/// measured), 130 when interrupted. `compare` has its own codes ([`compare::main`]).
pub fn main(cli: Cli) -> ExitCode {
    match &cli.command {
        Some(Command::Peers { action }) => return peers_main(action.clone()),
        Some(Command::Compare(args)) => return compare::main(args),
        Some(Command::Report { dir }) => return report_main(dir),
        None => {}
    }
    let stop = match Stop::install() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let at_end = cli.at_run_end();
    let plan = match cli.plan().and_then(|plan| {
        at_end.check(&plan)?;
        Ok(plan)
    }) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run::execute(plan, &cli.options(), &stop) {
        Ok(Outcome::DryRun) => ExitCode::SUCCESS,
        Ok(Outcome::Complete {
            rows,
            failed_rows,
            dir,
        }) => complete(&at_end, rows, failed_rows, &dir),
        Ok(Outcome::FailedFast { rows }) => {
            eprintln!(
                "harness: stopped after a failed measurement (--fail-fast); {rows} row(s) written"
            );
            at_end.skipped();
            ExitCode::FAILURE
        }
        Ok(Outcome::Interrupted { .. }) => {
            at_end.skipped();
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("harness: {e:#}");
            if e.is::<SetupError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A run that ran every measurement: its thresholds and baselines, then 0 when no
/// measurement failed and every threshold held, else 1.
fn complete(at_end: &AtRunEnd, rows: usize, failed_rows: usize, dir: &Path) -> ExitCode {
    let end = at_end.finish(dir);
    match &end {
        Ok(true) => {}
        Ok(false) => eprintln!("harness: a --threshold failed (the list above)"),
        Err(e) => eprintln!("harness: {e:#}"),
    }
    if failed_rows > 0 {
        eprintln!(
            "harness: {failed_rows} of {rows} measurements failed (status `error` in the CSV)"
        );
    }
    if failed_rows == 0 && matches!(end, Ok(true)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `harness report DIR`: 0 when written; 2 when DIR is not a readable run folder (or one
/// of its files is malformed), 1 when the page cannot be written.
fn report_main(dir: &std::path::Path) -> ExitCode {
    let folder = match report::RunFolder::read(dir) {
        Ok(folder) => folder,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::from(2);
        }
    };
    match folder.write() {
        Ok(path) => {
            println!("report:  {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `harness peers ...`: 0 when done (or, with --check, complete), 1 otherwise.
fn peers_main(action: PeersAction) -> ExitCode {
    let dir = |dir: Option<PathBuf>| match dir {
        Some(path) => Ok(PeerDir { path }),
        None => PeerDir::default_location(),
    };
    let result = match action {
        PeersAction::Install {
            check: true,
            dir: d,
            ..
        } => dir(d).and_then(|d| peers::check::print(&d)),
        PeersAction::Install { dir: d, mirror, .. } => {
            dir(d).and_then(|d| peers::install::install(&d, &mirror).map(|()| true))
        }
        PeersAction::Remove { dir: d } => dir(d)
            .and_then(|d| peers::install::remove(&d))
            .map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("harness").chain(args.iter().copied()))?;
        cli.plan()
    }

    #[test]
    fn flags_override_the_preset() {
        let plan = parse(&[
            "--preset",
            "smoke",
            "--sizes",
            "10,100",
            "--duration",
            "2s",
            "--tls-backends",
            "rustls-aws-lc,rustls-ring,openssl",
            "--server-cpus",
            "0",
            "--client-cpus",
            "1",
            "--kx-group",
            "secp256r1",
            "--kx-group",
            "X25519",
        ])
        .unwrap();
        assert_eq!(plan.sizes, vec![10, 100]);
        assert_eq!(plan.duration, Duration::from_secs(2));
        assert_eq!(plan.connections.get(), 10);
        assert_eq!(plan.kx_groups, vec!["secp256r1", "X25519"]);
        assert_eq!(plan.server_cpus.as_ref().unwrap().to_string(), "0");
        // http, relay, 2 x https-rustls, https-openssl, 2 x proxy-rustls, proxy-openssl,
        // haproxy, haproxy-awslc (the native-tls configs cannot speak the TLS 1.3 asked).
        assert_eq!(plan.variants().len(), 10);
        assert!(plan.source.contains("command-line"), "{}", plan.source);
    }

    #[test]
    fn sni_certs_flag_sets_the_certificate_count() {
        let plan = parse(&["--scenario", "sni-scale", "--sni-certs", "300"]).unwrap();
        assert_eq!(plan.scenario, crate::plan::Scenario::SniScale);
        assert_eq!(plan.sni_certs.get(), 300);
        assert!(parse(&["--sni-certs", "0"]).is_err());
        assert!(parse(&["--sni-certs", "many"]).is_err());
    }

    #[test]
    fn plan_flag_takes_a_preset_name() {
        let plan = parse(&["--plan", "smoke"]).unwrap();
        assert_eq!(plan.source, "preset smoke");
        assert!(parse(&["--plan", "smoke", "--preset", "seed"]).is_err());
    }

    #[test]
    fn bad_flags_are_named() {
        let err = format!("{:#}", parse(&["--configs", "http,nope"]).unwrap_err());
        assert!(err.contains("\"nope\""), "{err}");
        let err = format!("{:#}", parse(&["--server-cpus", "3-1"]).unwrap_err());
        assert!(
            err.contains("--server-cpus") && err.contains("backwards"),
            "{err}"
        );
        let err = format!("{:#}", parse(&["--duration", "soon"]).unwrap_err());
        assert!(err.contains("--duration"), "{err}");
        let err = format!(
            "{:#}",
            parse(&["--plan", "/nonexistent/p.toml"]).unwrap_err()
        );
        assert!(err.contains("/nonexistent/p.toml"), "{err}");
    }
}
