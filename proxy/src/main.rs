//! `proxy`: parse flags and config, set up logging, bind, serve until SIGTERM/SIGINT;
//! SIGHUP reloads certificates and TLS settings.
//! Exit codes: 0 after a clean stop, 2 for a bad flag, config or certificate, 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use proxy::cli::{Cli, Command, Flags};
use proxy::config::{Config, LogFormat};
use proxy::server;
use proxy::tls::Acceptor;

/// mimalloc gives memory freed after a burst of connections back to the OS (glibc's malloc
/// keeps the high-water mark, so RSS stayed ~3x up after a 2000-connection slowloris).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    let (file, flags, check_only) = match cli.command {
        Some(Command::Check { config, flags }) => (Some(config), flags, true),
        None => (cli.config, cli.flags, false),
    };
    let prepared = flags
        .resolve(file.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|c| Ok((server::build_acceptors(&c)?, c)));
    let (acceptors, config) = match prepared {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("proxy: {e:#}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!(
            "{}: ok",
            file.as_deref().unwrap_or("command line".as_ref()).display()
        );
        for l in &config.listeners {
            let kind = if l.tls {
                format!("TLS ({})", config.tls.backend)
            } else {
                "plain, no TLS (tls = false)".to_string()
            };
            println!("listener {} -> {}: {kind}", l.listen, l.upstream);
        }
        return ExitCode::SUCCESS;
    }
    init_tracing(config.log_format);
    match serve(config, acceptors, file, flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("proxy: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_LOG.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn serve(
    config: Config,
    acceptors: Vec<Option<Acceptor>>,
    file: Option<PathBuf>,
    flags: Flags,
) -> anyhow::Result<()> {
    if let Err(e) = sysio::host::raise_nofile_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    // Two descriptors per connection (client and upstream), plus listeners, logs and
    // metrics: grown now, before the first accept, not inside one (see the function).
    let fds = 2 * config.max_connections.get() as u64 + 64;
    if let Err(e) = sysio::host::reserve_fd_table(fds) {
        tracing::warn!(error = %e, fds, "cannot grow the descriptor table up front");
    }
    if let Err(e) = proxy::memory::init() {
        tracing::warn!(error = %e, "memory release: setting up its thread and policy failed");
    }
    let workers = sysio::host::worker_count(config.threads).get();
    let shared = server::Shared::new(&config);
    let bound = server::bind(&config, acceptors, &shared, workers)?;
    let listeners: Vec<Arc<server::Listener>> = bound.iter().map(|b| b.listener.clone()).collect();
    let metrics_socket = match config.metrics_listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .with_context(|| format!("binding metrics_listen {addr}"))?,
        ),
        None => None,
    };
    // Signal handlers go in before the readiness line: a SIGTERM right after it must
    // mean a graceful stop, and a SIGHUP a reload.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the control runtime")?;
    let (shutdown, mut hangup) = {
        let _guard = control.enter();
        let shutdown =
            proxy::sys::ShutdownSignal::register().context("installing signal handlers")?;
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        (shutdown, hangup)
    };
    let backend = if config.uses_tls() {
        config.tls.backend.name()
    } else {
        "none (every listener is plain)"
    };
    tracing::info!(workers, runtime = ?config.runtime, backend, "proxy: starting");
    for l in &listeners {
        println!("listening on {}", l.addr);
    }
    let metrics = shared.metrics.clone();
    let metrics_server = match metrics_socket {
        Some(socket) => {
            println!("listening on {}", socket.local_addr()?);
            let _guard = control.enter();
            let socket = tokio::net::TcpListener::from_std(socket)?;
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = control.spawn(proxy::metrics::serve(socket, metrics.clone(), async {
                let _ = stop_rx.await;
            }));
            Some((stop_tx, task))
        }
        None => None,
    };
    let until_stopped = async move {
        let stop = shutdown.recv();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = hangup.recv() => {
                    let ok = reload(&listeners, file.as_deref(), &flags);
                    metrics.config_reload(ok);
                    tokio::spawn(release_after_reload());
                }
            }
        }
        // Metrics stay up while connections drain; the scrape server stops with the rest.
        if let Some((stop_tx, task)) = metrics_server {
            let _ = stop_tx.send(());
            let _ = task.await;
        }
    };
    server::run(
        bound,
        shared,
        config.runtime,
        workers,
        config.timeouts.shutdown_grace,
        &control,
        until_stopped,
    )?;
    tracing::info!("proxy: stopped");
    Ok(())
}

/// SIGHUP: re-read the config file (if any) and the certificates it names; keep the old
/// ones on any error. True when the new ones are in use, or when no listener uses TLS
/// (there is nothing to reload then: listeners themselves change only with a restart).
fn reload(
    listeners: &[Arc<server::Listener>],
    file: Option<&std::path::Path>,
    flags: &Flags,
) -> bool {
    if listeners.iter().all(|l| l.acceptor.is_none()) {
        tracing::info!("reload: every listener is plain (tls = false); no certificates to reload");
        return true;
    }
    let result = flags
        .resolve(file)
        .map_err(anyhow::Error::from)
        .and_then(|config| Ok(server::reload(listeners, &config)?));
    match result {
        Ok(()) => {
            tracing::info!("reload: certificates and TLS settings reloaded");
            true
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reload failed; still serving the previous certificates");
            false
        }
    }
}

/// The previous certificates stay alive while a connection made with them does (it holds
/// their TLS context); as they go, their memory is freed on the workers' threads, after the
/// reload's own release. Released again a little later, and once more later still.
async fn release_after_reload() {
    for wait in RELEASE_AFTER_RELOAD {
        tokio::time::sleep(wait).await;
        proxy::memory::release_reload_memory();
    }
}

/// Waits between the releases after a reload: handshakes in flight are done after the
/// first, short requests after the second.
const RELEASE_AFTER_RELOAD: [std::time::Duration; 2] = [
    std::time::Duration::from_secs(1),
    std::time::Duration::from_secs(10),
];

/// Our own events at info; the TLS libraries' per-connection complaints (rustls warns for
/// every client that sends an IP address as SNI, as wrk does) only when they are errors.
const DEFAULT_LOG: &str = "info,rustls=error";
