//! `proxy`: parse flags and config, set up logging, bind, serve until SIGTERM/SIGINT.
//! Exit codes: 0 after a clean stop, 2 for a bad flag, config or certificate, 1 otherwise.

use std::process::ExitCode;

use clap::Parser;
use proxy::cli::{Cli, Command};
use proxy::config::Config;
use proxy::server;
use proxy::tls::Acceptor;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (config, check_only) = match cli.command {
        Some(Command::Check { config, flags }) => (flags.resolve(Some(&config)), Some(config)),
        None => (cli.flags.resolve(cli.config.as_deref()), None),
    };
    let prepared = config.map_err(anyhow::Error::from).and_then(|c| {
        let acceptor = Acceptor::build(&c.tls.settings(), &c.tls.cert_set())?;
        Ok((c, acceptor))
    });
    let (config, acceptor) = match prepared {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = check_only {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    match serve(config, acceptor) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config, acceptor: Acceptor) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Err(e) = proxy::sys::raise_nofile_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    let workers = proxy::sys::worker_count(config.threads).get();
    let bound = server::bind(&config, workers)?;
    // Signal handlers go in before the readiness line: a SIGTERM right after it must
    // mean a graceful stop.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let shutdown = {
        let _guard = signals.enter();
        proxy::sys::ShutdownSignal::register().context("installing signal handlers")?
    };
    tracing::info!(
        workers,
        runtime = ?config.runtime,
        backend = %acceptor.backend(),
        "proxy: starting"
    );
    for b in &bound {
        println!("listening on {}", b.addr);
    }
    let shared = server::Shared::new(acceptor, &config);
    server::run(
        bound,
        shared,
        config.runtime,
        workers,
        config.timeouts.shutdown_grace,
        shutdown.recv(),
    )?;
    tracing::info!("proxy: stopped");
    Ok(())
}
