//! Helpers for the loadgen tests: run the real binary, start echo-server in-process, and a
//! small instrumented HTTP/1.1 test server (counts connections, requests, TLS handshakes
//! and clean closes; can delay, stall once, corrupt the echo, or hang up on every client).

// reason: test helpers, like the tests themselves (clippy.toml), fail by panicking.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::{Acceptor, CertSet, TlsSettings};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Load tests take the whole (small, shared) machine: one at a time, so timing
/// assertions do not depend on how the test runner schedules them.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a loadgen process did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// The JSON report of a run that must have succeeded.
    pub fn ok_json(&self) -> Value {
        assert_eq!(
            self.code, 0,
            "loadgen failed: {}\n{}",
            self.stderr, self.stdout
        );
        self.json()
    }
}

/// Runs the loadgen binary to completion (killed if it takes over two minutes).
pub async fn loadgen(args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("loadgen finished within 120 s")
        .expect("loadgen started");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A loadgen process still running, its stderr read line by line as it comes.
pub struct Running {
    child: tokio::process::Child,
    stderr: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    /// The stderr lines read so far.
    seen: Vec<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Running {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("loadgen started");
        let stderr = child.stderr.take().unwrap();
        Running {
            child,
            stderr: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr)),
            seen: Vec::new(),
        }
    }

    /// Reads stderr up to the first line that starts with `prefix`, and returns it; panics
    /// if stderr ends first or nothing comes within 60 s.
    pub async fn line_starting(&mut self, prefix: &str) -> String {
        let wait = async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                self.seen.push(line.clone());
                if line.starts_with(prefix) {
                    return line;
                }
            }
            panic!("stderr ended without a {prefix:?} line: {:?}", self.seen);
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("no {prefix:?} line on stderr within 60 s"))
    }

    /// Waits for the process to end (two minutes at most); stderr has every line.
    pub async fn finish(mut self) -> Run {
        let out = tokio::time::timeout(Duration::from_secs(120), self.child.wait_with_output())
            .await
            .expect("loadgen finished within 120 s")
            .unwrap();
        while let Some(line) = self.stderr.next_line().await.unwrap() {
            self.seen.push(line);
        }
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: self.seen.iter().map(|l| format!("{l}\n")).collect(),
        }
    }
}

/// Waits up to 10 s for `done` to hold (for effects that follow a process's exit
/// asynchronously, such as a server noticing closed connections).
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A throwaway certificate for localhost / 127.0.0.1 / ::1, in its own directory.
pub struct Certs {
    pub _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256).unwrap();
    Certs {
        cert: paths.cert,
        key: paths.key,
        _dir: dir,
    }
}

pub fn acceptor(certs: &Certs) -> Acceptor {
    acceptor_with(certs, TlsSettings::default())
}

pub fn acceptor_with(certs: &Certs, settings: TlsSettings) -> Acceptor {
    Acceptor::build(&settings, &CertSet::single(&certs.cert, &certs.key)).unwrap()
}

/// echo-server's transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Http,
    Https,
    Unix,
}

/// An in-process echo-server; stops when dropped.
pub struct Echo {
    pub url: String,
    /// The CA file to trust for HTTPS.
    pub cacert: Option<PathBuf>,
    _certs: Option<Certs>,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

pub async fn echo(mode: Mode) -> Echo {
    let dir = tempfile::tempdir().unwrap();
    let certs = (mode == Mode::Https).then(certs);
    let (listener, url) = match mode {
        Mode::Unix => {
            let path = dir.path().join("echo.sock");
            let l = echo_server::Listener::bind_unix(&path, None).unwrap();
            (l, format!("unix://{}", path.display()))
        }
        Mode::Http | Mode::Https => {
            let l = echo_server::Listener::bind_tcp("127.0.0.1:0")
                .await
                .unwrap();
            let scheme = if mode == Mode::Https { "https" } else { "http" };
            let url = format!("{scheme}://{}/", l.local_addr().unwrap());
            (l, url)
        }
    };
    let opts = echo_server::ServeOptions {
        tls: certs.as_ref().map(acceptor),
        ..echo_server::ServeOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(echo_server::run(listener, opts, async {
        let _ = stopped.await;
    }));
    Echo {
        url,
        cacert: certs.as_ref().map(|c| c.cert.clone()),
        _certs: certs,
        _dir: dir,
        _stop: stop,
    }
}

/// What the test server saw.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    /// Connections open right now.
    pub open: AtomicU64,
    /// Connections accepted whose first request has not arrived yet: right now, and the
    /// most there ever were.
    pub pending: AtomicU64,
    pub max_pending: AtomicU64,
    /// Connections the client closed between requests, cleanly: a FIN over TCP, a
    /// close_notify over TLS (an EOF without one is an error there, not counted).
    pub clean_closes: AtomicU64,
    pub requests: AtomicU64,
    pub handshakes: AtomicU64,
    pub resumed: AtomicU64,
    /// Notified on every request (a permit is kept when nobody waits).
    pub request_seen: tokio::sync::Notify,
}

impl Counters {
    pub fn get(&self, which: &AtomicU64) -> u64 {
        which.load(Ordering::SeqCst)
    }
}

/// How the test server answers.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Every response waits this long.
    pub delay: Duration,
    /// `(after, for)`: the first request arriving `after` the first request of the run
    /// starts a stall of `for`; every request answered during it waits for its end.
    pub stall: Option<(Duration, Duration)>,
    /// Answer with a body of the right length but the wrong content.
    pub corrupt: bool,
    pub tls: Option<Acceptor>,
    /// Once this turns true, the server closes every connection (and new ones at once).
    pub hang_up: Option<tokio::sync::watch::Receiver<bool>>,
    /// Serve only the first this many connections; close the others as soon as they are
    /// accepted.
    pub serve_at_most: Option<u64>,
}

/// An instrumented HTTP/1.1 echo server on 127.0.0.1:0; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    _stop: oneshot::Sender<()>,
}

struct State {
    behaviour: Behaviour,
    counters: Arc<Counters>,
    first_request: OnceLock<Instant>,
    stalled: AtomicBool,
    stall_until: Mutex<Option<Instant>>,
}

impl TestServer {
    pub async fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let state = Arc::new(State {
            behaviour,
            counters: counters.clone(),
            first_request: OnceLock::new(),
            stalled: AtomicBool::new(false),
            stall_until: Mutex::new(None),
        });
        let (stop, mut stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        if let Ok((tcp, _)) = accepted {
                            tokio::spawn(handle(tcp, state.clone()));
                        }
                    }
                }
            }
        });
        TestServer {
            addr,
            counters,
            _stop: stop,
        }
    }

    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}/", self.addr)
    }
}

async fn handle(tcp: tokio::net::TcpStream, state: Arc<State>) {
    let _ = tcp.set_nodelay(true);
    let index = state.counters.connections.fetch_add(1, Ordering::SeqCst);
    if state
        .behaviour
        .serve_at_most
        .is_some_and(|most| index >= most)
    {
        return;
    }
    state.counters.open.fetch_add(1, Ordering::SeqCst);
    let mut pending = Pending::start(&state.counters);
    match state.behaviour.hang_up.clone() {
        Some(mut hang_up) => tokio::select! {
            () = accept_and_serve(tcp, &state, &mut pending) => {}
            _ = hang_up.wait_for(|&h| h) => {}
        },
        None => accept_and_serve(tcp, &state, &mut pending).await,
    }
    drop(pending);
    state.counters.open.fetch_sub(1, Ordering::SeqCst);
}

/// A connection counted in `pending` until its first request arrives or it ends.
struct Pending<'a> {
    counters: Option<&'a Counters>,
}

impl<'a> Pending<'a> {
    fn start(counters: &'a Counters) -> Self {
        let now = counters.pending.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_pending.fetch_max(now, Ordering::SeqCst);
        Pending {
            counters: Some(counters),
        }
    }

    fn done(&mut self) {
        if let Some(c) = self.counters.take() {
            c.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.done();
    }
}

async fn accept_and_serve(tcp: tokio::net::TcpStream, state: &State, pending: &mut Pending<'_>) {
    match &state.behaviour.tls {
        Some(acceptor) => {
            if let Ok(tls) = acceptor.accept(tcp).await {
                state.counters.handshakes.fetch_add(1, Ordering::SeqCst);
                if tls.info().resumed == Some(true) {
                    state.counters.resumed.fetch_add(1, Ordering::SeqCst);
                }
                serve(tls, state, pending).await;
            }
        }
        None => serve(tcp, state, pending).await,
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    state: &State,
    pending: &mut Pending<'_>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let (head_len, body_len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let header = |name: &str| {
                        req.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                    };
                    let len = header("content-length").map_or(0, |v| v.trim().parse().unwrap());
                    let close = header("connection").is_some_and(|v| v.contains("close"));
                    break (n, len, close);
                }
                Ok(httparse::Status::Partial) => match io.read_buf(&mut buf).await {
                    Ok(0) => {
                        if buf.is_empty() {
                            state.counters.clean_closes.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                    Err(_) => return,
                    Ok(_) => {}
                },
                Err(_) => return,
            }
        };
        while buf.len() < head_len + body_len {
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let mut body: Vec<u8> = buf.drain(..head_len + body_len).skip(head_len).collect();
        state.counters.requests.fetch_add(1, Ordering::SeqCst);
        state.counters.request_seen.notify_one();
        pending.done();
        state.wait_before_answering().await;
        if state.behaviour.corrupt {
            for b in body.iter_mut() {
                *b = b'#';
            }
        }
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        response.extend_from_slice(&body);
        if io.write_all(&response).await.is_err() || io.flush().await.is_err() {
            return;
        }
        if close {
            let _ = io.shutdown().await;
            return;
        }
    }
}

impl State {
    async fn wait_before_answering(&self) {
        let now = Instant::now();
        let first = *self.first_request.get_or_init(|| now);
        if let Some((after, length)) = self.behaviour.stall {
            if now.duration_since(first) >= after && !self.stalled.swap(true, Ordering::SeqCst) {
                *self.stall_until.lock().unwrap() = Some(now + length);
            }
            let until = *self.stall_until.lock().unwrap();
            if let Some(until) = until.filter(|&u| u > now) {
                tokio::time::sleep_until(until.into()).await;
            }
        }
        if !self.behaviour.delay.is_zero() {
            tokio::time::sleep(self.behaviour.delay).await;
        }
    }
}

/// The shape of a JSON value: every key kept, every leaf replaced by its type name
/// (`int`, `float`, `string`, `bool`, `null`, `array`).
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "int".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn int(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} is not an integer in {v:#}"))
}
