//! What every real-client test stands on: the programs it runs (found, or skipped with the
//! Debian package to install, or a failure under `CI=true`), a process runner with a
//! deadline, the echo-server in process behind the proxy, and the proxy itself serving a
//! certificate for [`HOST`] issued by a test CA the clients are told to trust.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proxy::tls::Backend;
use tempfile::TempDir;

use crate::common::{CertFiles, Proxy, TestCa};

/// The name every client asks for (SNI, certificate check, Host): a real host name under
/// the `.test` domain reserved for testing, mapped to the proxy's loopback port by each
/// client's own option (`--resolve`, `--connect-to`, `--host-resolver-rules`).
pub const HOST: &str = "web.tls-off.test";

/// How long one client run may take: a hang fails the test instead of blocking it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);

/// A third-party program a test runs, found on `PATH` or in the sbin folders (Debian puts
/// nginx in /usr/sbin, which a user's `PATH` may lack). Missing: under `CI=true` the test
/// fails (`.ci/run` installs `package`); elsewhere it is skipped with the package named.
pub fn program(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "CI=true but {name} is not installed (apt-get install {package})"
        );
        eprintln!("skipped: {name} is not installed (apt-get install {package})");
    }
    found
}

/// The first line of `program`'s version output (what the README's matrix records).
pub fn version_line(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Debian's chromium wrapper script prints a shell warning before the version.
    text.lines()
        .find(|l| !l.trim().is_empty() && !l.contains("unexpected operator"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One cell of the matrix on stdout (`cargo test ... -- --nocapture` shows them).
pub fn cell(client: &str, backend: Backend, what: &str, outcome: &str) {
    println!("real-clients | {client} | {backend} | {what} | {outcome}");
}

/// Runs `cmd` with `stdin` as its input and returns its output; killed and failed after
/// [`CLIENT_DEADLINE`].
pub fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in pid_t"));
    let mut input = child.stdin.take().expect("stdin is piped");
    // A client that exits early closes its stdin: a failed write is its own answer.
    let _ = input.write_all(stdin);
    drop(input);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLIENT_DEADLINE) {
        Ok(out) => out.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{what} took more than {CLIENT_DEADLINE:?}")
        }
    }
}

/// stdout and stderr as one text, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The test's folder, the CA the clients trust and the server certificate it issued.
pub struct Pki {
    pub dir: TempDir,
    pub ca: TestCa,
    pub server: CertFiles,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let ca = TestCa::new(dir.path(), "ca");
        let server = ca.issue_server_files(&[HOST], dir.path(), "server");
        Pki { dir, ca, server }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the proxy with TLS backend `backend` in front of `upstream`, serving the
    /// server certificate, with the extra flags `extra` (`--alpn`, `--client-ca`).
    pub fn proxy(&self, backend: Backend, upstream: &str, extra: &[&str]) -> Proxy {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--cert",
            utf8(&self.server.cert),
            "--key",
            utf8(&self.server.key),
            "--tls-backend",
            backend.name(),
        ];
        args.extend_from_slice(extra);
        Proxy::start(self.path(), &args, 1)
    }
}

pub fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The workspace's echo-server (HTTP/1.1 and HTTP/2 on one socket), run in this process on
/// a Unix socket in `dir`; stopped when dropped.
pub struct EchoServer {
    /// The proxy's `--upstream` value for it.
    pub spec: String,
    // Dropping the runtime ends the server's tasks.
    _runtime: tokio::runtime::Runtime,
}

impl EchoServer {
    pub fn start(dir: &Path) -> EchoServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the echo-server");
        let path = dir.join("echo.sock");
        let listener = {
            let _context = runtime.enter();
            echo_server::Listener::bind_unix(&path, None).expect("binding the echo-server")
        };
        runtime.spawn(echo_server::run(
            listener,
            echo_server::ServeOptions::default(),
            std::future::pending(),
        ));
        EchoServer {
            spec: format!("unix:{}", path.display()),
            _runtime: runtime,
        }
    }
}

/// `len` bytes of [`crate::common::upstream::pattern`] written to `path`.
pub fn pattern_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let body = crate::common::upstream::pattern(len, seed);
    std::fs::write(path, &body).expect("writing a request body");
    body
}
