//! `echo-server`: parse flags, set up logging and the runtime, serve until a signal.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use echo_server::{Listener, ServeOptions};
use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::{Acceptor, Backend, CertSet, TlsSettings};

/// HTTP/1.1 and HTTP/2 echo backend: answers every request with its own body.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// What to listen on: plain TCP, TCP with TLS, or a Unix socket.
    #[arg(long, value_enum, default_value = "http")]
    mode: Mode,
    /// TCP address (`127.0.0.1:0` picks a free port) or, with `--mode unix`, a socket path.
    #[arg(long)]
    listen: String,
    /// TLS library for `--mode https`.
    #[arg(long, value_enum, default_value_t = Backend::default())]
    tls_backend: Backend,
    /// PEM certificate chain for `--mode https` (omit both to generate a self-signed one).
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key matching `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Worker threads; default: one per CPU in this process's affinity mask.
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Largest request body echoed, in bytes; larger ones get 413.
    #[arg(long, default_value_t = echo_server::DEFAULT_MAX_BODY_BYTES)]
    max_body: u64,
    /// Expect a PROXY protocol header (v1 or v2) at the start of every connection, as
    /// `proxy --proxy-protocol` sends; it is read and discarded.
    #[arg(long)]
    proxy_protocol: bool,
    /// Permissions of the Unix socket file, in octal (e.g. 660).
    #[arg(long, value_parser = parse_octal)]
    socket_mode: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Http,
    Https,
    Unix,
}

/// Parses the arguments as `Args::parse` does, with a `--version` that names each backend's
/// TLS library in the proxy's words (the harness reads them for `https-*` rows).
fn parse_args() -> Args {
    let long_version = format!(
        "{}\n{}",
        env!("CARGO_PKG_VERSION"),
        proxy::tls::library_lines()
    );
    let matches = Args::command().long_version(long_version).get_matches();
    Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rustls=error".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Setup errors (flags, certificates) are the user's to fix: exit 2, as for bad flags.
    // `_generated` holds a generated certificate's directory until the server is done.
    let (opts, _generated) = match setup(&args) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("echo-server: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serve(&args, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn setup(args: &Args) -> anyhow::Result<(ServeOptions, Option<tempfile::TempDir>)> {
    if let Err(e) = sysio::host::raise_nofile_limit() {
        eprintln!("echo-server: warning: cannot raise the open-file limit: {e}");
    }
    let (tls, generated) = match args.mode {
        Mode::Https => {
            let (acceptor, generated) = acceptor(args)?;
            (Some(acceptor), generated)
        }
        _ if args.cert.is_some() => {
            anyhow::bail!("--cert/--key only make sense with --mode https")
        }
        _ => (None, None),
    };
    let opts = ServeOptions {
        max_body: args.max_body,
        tls,
        proxy_protocol: args.proxy_protocol,
        ..ServeOptions::default()
    };
    Ok((opts, generated))
}

/// The acceptor, and the directory of a generated certificate (removed when dropped).
fn acceptor(args: &Args) -> anyhow::Result<(Acceptor, Option<tempfile::TempDir>)> {
    let settings = TlsSettings {
        backend: args.tls_backend,
        ..TlsSettings::default()
    };
    let (certs, generated) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (CertSet::single(cert, key), None),
        _ => {
            // A new directory with an unpredictable name and mode 0700: a fixed name under
            // /tmp could be planted by another user (a symlink there would have us write the
            // key through it), and it would be left behind after every run.
            let dir = tempfile::Builder::new()
                .prefix("echo-server-")
                .tempdir()
                .context("creating a directory for the self-signed certificate")?;
            let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256)?;
            eprintln!(
                "echo-server: no --cert/--key: generated a self-signed ECDSA P-256 certificate for localhost at {}",
                paths.cert.display()
            );
            (CertSet::single(paths.cert, paths.key), Some(dir))
        }
    };
    Ok((Acceptor::build(&settings, &certs)?, generated))
}

fn serve(args: &Args, opts: ServeOptions) -> anyhow::Result<()> {
    let workers = sysio::host::worker_count(args.threads).get();
    // One worker: a current-thread runtime has no cross-thread wake-ups to pay for.
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = match args.mode {
            Mode::Unix => Listener::bind_unix(args.listen.as_ref(), args.socket_mode)?,
            Mode::Http | Mode::Https => Listener::bind_tcp(&args.listen).await?,
        };
        let signal =
            proxy::sys::ShutdownSignal::register().context("installing signal handlers")?;
        println!("listening on {}", listener.local_addr()?);
        echo_server::run(listener, opts, signal.recv()).await;
        Ok(())
    })
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode such as 660"))
}
