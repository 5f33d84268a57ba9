//! `harness`: parse flags, run the plan, exit with its code (see `harness::cli::main`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    harness::cli::main(harness::cli::Cli::parse())
}
