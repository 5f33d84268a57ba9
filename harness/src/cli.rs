//! The command line: clap flags, each an override of the plan (see `plan`), plus the
//! run options; and the mapping from outcome to exit code.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use proxy::tls::{Backend, TlsVersion};

use crate::cpus::CpuList;
use crate::plan::{self, CertType, ConfigName, Overrides, Plan, Preset, Scenario};
use crate::procs::Stop;
use crate::run::{self, Options, Outcome, SetupError};

/// Measures what TLS termination costs on this machine: runs the echo-server, the proxy
/// and the load generator pinned to CPUs, sweeps body sizes, and writes
/// results/<UTC time>-<host>/{results.csv, meta.json, summary.txt, logs/}.
#[derive(Debug, Parser)]
#[command(name = "harness", version)]
pub struct Cli {
    /// Built-in plan to start from: smoke (seconds, CI), quick (default, a few minutes),
    /// seed (the original experiment: 30 s runs, 5 iterations, 3000 connections).
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A TOML plan file (see harness/plans/example.toml), or a preset name.
    #[arg(long, value_name = "FILE|PRESET")]
    pub plan: Option<String>,
    /// What to measure: sweep (body sizes, keep-alive; the default), handshakes (full and
    /// resumed, ECDSA and RSA), idle (memory per idle connection), all (those three),
    /// faults (the fault suite under load), soak (its 30-minute long run).
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Configs, comma-separated: http, https-rustls, https-openssl, proxy-rustls,
    /// proxy-openssl, haproxy, nginx, hitch, stunnel, or all (peers that are not installed
    /// are skipped with the Debian package to install).
    #[arg(long, value_delimiter = ',')]
    pub configs: Option<Vec<String>>,
    /// Request body sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u64>>,
    /// Rounds over every config and size.
    #[arg(long)]
    pub iterations: Option<NonZeroU32>,
    /// Measured period of each run (5s, 500ms, 1m).
    #[arg(long, value_parser = plan::parse_duration)]
    pub duration: Option<Duration>,
    /// Load before the measured period, not counted.
    #[arg(long, value_parser = plan::parse_duration)]
    pub warmup: Option<Duration>,
    /// Concurrent connections of the load generator.
    #[arg(long)]
    pub connections: Option<NonZeroU32>,
    /// Load generator threads (default: one per client CPU).
    #[arg(long)]
    pub client_threads: Option<NonZeroU32>,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Per-request timeout of the load generator.
    #[arg(long, value_parser = plan::parse_duration)]
    pub timeout: Option<Duration>,
    /// How long a server may take to print `listening on`.
    #[arg(long, value_parser = plan::parse_duration)]
    pub ready_timeout: Option<Duration>,
    /// TLS backends, comma-separated (rustls-aws-lc, rustls-ring, openssl): the rustls
    /// configs run once per rustls flavour listed.
    #[arg(long, value_delimiter = ',', value_parser = plan::parse_backend)]
    pub tls_backends: Option<Vec<Backend>>,
    /// Key type of the run's certificate.
    #[arg(long, value_enum)]
    pub cert_type: Option<CertType>,
    /// TLS version the load generator offers (1.2 or 1.3).
    #[arg(long, value_parser = plan::parse_tls_version)]
    pub tls_version: Option<TlsVersion>,
    /// Cipher suite the load generator offers (IANA name; repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub cipher_suite: Option<Vec<String>>,
    /// Key-exchange group the load generator offers (X25519, secp256r1, ...; repeatable).
    #[arg(long, value_delimiter = ',')]
    pub kx_group: Option<Vec<String>>,
    /// CPUs for the servers, e.g. 0-2 (default: all but the last of the harness's mask).
    #[arg(long)]
    pub server_cpus: Option<CpuList>,
    /// CPUs for the load generator, e.g. 3 (default: the last of the harness's mask).
    #[arg(long)]
    pub client_cpus: Option<CpuList>,
    /// Connections the idle scenario holds open through each terminator.
    #[arg(long)]
    pub idle_connections: Option<NonZeroU32>,
    /// How long the idle scenario holds them.
    #[arg(long, value_parser = plan::parse_duration)]
    pub idle_hold: Option<Duration>,
    /// Length of `--scenario soak` (default 30m).
    #[arg(long, value_parser = plan::parse_duration)]
    pub soak_duration: Option<Duration>,
    /// Measure this URL (a proxy elsewhere) instead of starting local servers.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
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
    /// Print the resolved plan and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not run analysis/plot.py at the end of the run.
    #[arg(long)]
    pub no_plot: bool,
}

impl Cli {
    /// The plan the flags ask for.
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let (plan_preset, file) = match &self.plan {
            Some(value) => plan::preset_or_file(value)?,
            None => (None, None),
        };
        if let (Some(a), Some(b)) = (plan_preset, self.preset) {
            if a != b {
                bail!(
                    "--plan {} and --preset {} name different presets",
                    a.name(),
                    b.name()
                );
            }
        }
        let overrides = Overrides {
            preset: self.preset.or(plan_preset),
            scenario: self.scenario,
            configs: self
                .configs
                .as_deref()
                .map(ConfigName::parse_list)
                .transpose()?,
            sizes: self.sizes.clone(),
            iterations: self.iterations,
            duration: self.duration,
            warmup: self.warmup,
            connections: self.connections,
            client_threads: self.client_threads,
            rate: self.rate,
            timeout: self.timeout,
            ready_timeout: self.ready_timeout,
            tls_backends: self.tls_backends.clone(),
            cert_type: self.cert_type,
            tls_version: self.tls_version,
            cipher_suites: self.cipher_suite.clone(),
            kx_groups: self.kx_group.clone(),
            server_cpus: self.server_cpus.clone(),
            client_cpus: self.client_cpus.clone(),
            target: self.target.clone(),
            idle_connections: self.idle_connections,
            idle_hold: self.idle_hold,
            soak_duration: self.soak_duration,
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
}

/// Runs the harness as the binary does and returns its exit code: 0 when every
/// measurement succeeded, 1 when a measurement or the run failed, 2 for a bad command
/// line, plan or machine (nothing was measured), 130 when interrupted.
pub fn main(cli: Cli) -> ExitCode {
    let stop = match Stop::install() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match cli.plan() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("harness: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run::execute(plan, &cli.options(), &stop) {
        Ok(Outcome::Complete { failed_rows: 0, .. }) | Ok(Outcome::DryRun) => ExitCode::SUCCESS,
        Ok(Outcome::Complete { rows, failed_rows }) => {
            eprintln!(
                "harness: {failed_rows} of {rows} measurements failed (status `error` in the CSV)"
            );
            ExitCode::FAILURE
        }
        Ok(Outcome::FailedFast { rows }) => {
            eprintln!(
                "harness: stopped after a failed measurement (--fail-fast); {rows} row(s) written"
            );
            ExitCode::FAILURE
        }
        Ok(Outcome::Interrupted { .. }) => ExitCode::from(130),
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

#[cfg(test)]
mod tests {
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
        // http, 2 x https-rustls, https-openssl, 2 x proxy-rustls, proxy-openssl, haproxy.
        assert_eq!(plan.variants().len(), 8);
        assert!(plan.source.contains("command-line"), "{}", plan.source);
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
