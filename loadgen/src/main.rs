//! `loadgen`: parse flags, run, print the report, map the outcome to an exit code
//! (0 ok; 2 bad flags or inputs; 1 the run failed: unreachable, TLS refused, all failed).
//! `loadgen merge FILE...` adds reports instead (0 ok; 2 unusable or mismatched inputs; 1
//! the `--hdr-out` file could not be written).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use loadgen::cli::{Args, Command, MergeArgs};
use loadgen::merge::{self, Input};
use loadgen::report::{self, Histograms, Report};
use loadgen::settings::OutputFormat;
use signal_hook::consts::{SIGINT, SIGTERM};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Command::Merge(merge)) = args.command {
        return merge_reports(&merge);
    }
    let settings = match args.into_settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };

    // Ctrl-C (or SIGTERM) ends the run early and still reports it; a second one exits.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, stop.clone());
        let _ = signal_hook::flag::register(signal, stop.clone());
    }

    let tty = std::io::stderr().is_terminal();
    let mut progress = |requests: u64, errors: u64, left: Duration| {
        eprint!(
            "\r\x1b[2K{requests} requests, {errors} errors, {}s left",
            left.as_secs()
        );
        let _ = std::io::stderr().flush();
    };
    // Idle runs: the contract line the harness waits for before it samples memory.
    let mut on_open = |opened: usize, asked: usize| {
        if settings.idle {
            eprintln!("{}", report::idle_line(opened, asked));
        }
    };
    let result = loadgen::run(
        &settings,
        &mut on_open,
        if tty { Some(&mut progress) } else { None },
        &stop,
    );
    if tty {
        eprint!("\r\x1b[2K");
    }
    let result = match result {
        Ok(result) => result,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };

    let report = Report::new(&settings, &result);
    let histograms = Histograms::of_run(&result);
    emit(&match settings.output {
        OutputFormat::Json => report.to_json() + "\n",
        OutputFormat::Text => report::text(&report, histograms, Some(result.cpus)),
    });
    if let Some(path) = &settings.hdr_out {
        let what = report::hdr_title(report.mode);
        if let Err(e) = report::write_hdr(path, histograms.latency, what) {
            eprintln!("loadgen: cannot write --hdr-out {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(why) = result.failure() {
        eprintln!("loadgen: {why}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `loadgen merge`: reads every report, adds them, prints the sum.
fn merge_reports(args: &MergeArgs) -> ExitCode {
    let merged = args
        .files
        .iter()
        .map(|path| Input::read(path))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|inputs| merge::merge(&inputs));
    let merged = match merged {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("loadgen merge: {e}");
            return ExitCode::from(2);
        }
    };
    let report = &merged.report;
    emit(&match args.output {
        OutputFormat::Json => report.to_json() + "\n",
        OutputFormat::Text => report::text(report, merged.histograms(), None),
    });
    if let Some(path) = &args.hdr_out {
        let what = report::hdr_title(report.mode);
        if let Err(e) = report::write_hdr(path, &merged.latency, what) {
            eprintln!(
                "loadgen merge: cannot write --hdr-out {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Writes the report to stdout. A reader that went away (`| head`) is not loadgen's error:
/// `print!` would panic on the broken pipe.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
