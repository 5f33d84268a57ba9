//! Helpers for the echo-server integration tests: start the real binary on a free port (or
//! a socket in a TempDir), connect over TCP, TLS or a Unix socket, and speak just enough
//! HTTP/1.1 by hand to see every byte the server sends.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::Backend;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use tempfile::TempDir;
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
    BufReader as AsyncBufReader, ReadHalf, WriteHalf,
};
use tokio::net::{TcpStream, UnixStream};

/// Every transport the server offers, and for HTTPS every TLS backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Http,
    Https(Backend),
    Unix,
}

impl Target {
    pub const HTTPS_AWS_LC: Target = Target::Https(Backend::RustlsAwsLc);
    pub const HTTPS_RING: Target = Target::Https(Backend::RustlsRing);
    pub const HTTPS_OPENSSL: Target = Target::Https(Backend::Openssl);
    pub const HTTPS_NATIVE_TLS: Target = Target::Https(Backend::NativeTls);

    fn mode(self) -> &'static str {
        match self {
            Target::Http => "http",
            Target::Https(_) => "https",
            Target::Unix => "unix",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Https(b) => write!(f, "https/{b}"),
            other => f.write_str(other.mode()),
        }
    }
}

/// Generous bound on anything a test waits for: startup, one exchange, a close. Far above
/// what a healthy server needs even on a busy two-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A running echo-server, killed (and reaped) on drop.
pub struct Server {
    child: Option<Child>,
    pub target: Target,
    /// `127.0.0.1:PORT`, or the socket path for unix mode.
    pub addr: String,
    stderr: Arc<Output>,
    /// The certificate the client trusts (https mode).
    pub cert: Option<CertificateDer<'static>>,
    /// Holds the socket, certificate and key; removed after the server is gone.
    _dir: TempDir,
}

impl Server {
    /// Starts a server for `target` with `extra` flags; https gets a fresh certificate.
    pub fn start(target: Target, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args: Vec<String> = vec!["--mode".into(), target.mode().into()];
        let mut cert = None;
        match target {
            Target::Unix => {
                args.extend(["--listen".into(), socket_path(&dir).display().to_string()]);
            }
            Target::Http => args.extend(["--listen".into(), "127.0.0.1:0".into()]),
            Target::Https(backend) => {
                let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256)
                    .expect("generating a certificate");
                let pem = std::fs::read(&paths.cert).expect("reading the certificate");
                cert = Some(cert_from_pem(&pem));
                args.extend([
                    "--listen".into(),
                    "127.0.0.1:0".into(),
                    "--tls-backend".into(),
                    backend.name().into(),
                    "--cert".into(),
                    paths.cert.display().to_string(),
                    "--key".into(),
                    paths.key.display().to_string(),
                ]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::spawn(target, &args, dir, cert)
    }

    /// Starts the binary with exactly `args` and waits for its readiness line.
    pub fn spawn(
        target: Target,
        args: &[String],
        dir: TempDir,
        cert: Option<CertificateDer<'static>>,
    ) -> Server {
        let mut child = echo_server_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning echo-server");
        let (stderr, _) = collect(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut server = Server {
            child: Some(child),
            target,
            addr: String::new(),
            stderr,
            cert,
            _dir: dir,
        };
        match rx.recv_timeout(TIMEOUT) {
            Ok(addr) => {
                server.addr = match addr.strip_prefix("unix:") {
                    Some(path) => path.to_string(),
                    None => addr,
                };
            }
            Err(_) => panic!(
                "echo-server {args:?} printed no readiness line; stderr:\n{}",
                server.stderr()
            ),
        }
        server
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("running");
        i32::try_from(child.id()).expect("pid fits i32")
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until the server's stderr has a line containing `needle`, and returns it.
    /// (Stdout and stderr are separate pipes: the readiness line may come first.)
    pub fn stderr_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut text = self.stderr.text.lock().expect("stderr lock");
        loop {
            // Whole lines only: eprintln! can reach the pipe in several writes, and a line
            // read before its end would lose what follows (a path, say).
            let whole = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            if let Some(line) = whole.map(str::trim_end).find(|l| l.contains(needle)) {
                return line.to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no stderr line with {needle:?}: {text}");
            text = self
                .stderr
                .grew
                .wait_timeout(text, left)
                .expect("stderr lock")
                .0;
        }
    }

    /// Waits for the process to exit by itself (after a signal, say).
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_timeout(child, TIMEOUT);
        self.child = None;
        status
    }

    /// A plain connection (TCP or Unix), no TLS even in https mode.
    pub async fn connect_raw(&self) -> Conn {
        match self.target {
            Target::Unix => Box::new(UnixStream::connect(&self.addr).await.expect("connect")),
            _ => Box::new(TcpStream::connect(&self.addr).await.expect("connect")),
        }
    }

    /// A connection speaking the server's protocol (TLS in https mode).
    pub async fn connect(&self) -> Client {
        let raw = self.connect_raw().await;
        let conn: Conn = match &self.cert {
            Some(cert) => {
                let mut roots = RootCertStore::empty();
                roots.add(cert.clone()).expect("trusting the certificate");
                let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let name = ServerName::try_from("localhost").expect("server name");
                let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, raw))
                    .await
                    .expect("TLS handshake timed out")
                    .expect("TLS handshake");
                Box::new(tls)
            }
            None => raw,
        };
        Client::new(conn)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("echo-server ({}) stderr:\n{}", self.target, self.stderr());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn cert_from_pem(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).expect("certificate PEM")
}

pub fn echo_server_command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_echo-server"));
    // Two workers whatever the machine: tests must not depend on its CPU count.
    cmd.args(args).arg("--threads").arg("2");
    // The server's own account of each connection's end, shown when a test fails.
    cmd.env("RUST_LOG", "echo_server=debug");
    cmd
}

pub fn socket_path(dir: &TempDir) -> PathBuf {
    dir.path().join("echo.sock")
}

/// Runs the binary to completion (it is expected to exit by itself): status and stderr.
pub fn run_to_exit(args: &[String]) -> (ExitStatus, String) {
    let mut child = echo_server_command(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning echo-server");
    let (stderr, collector) = collect(child.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut child, TIMEOUT);
    // The process is gone, so its stderr is at EOF and the collector ends.
    collector.join().expect("stderr collector");
    (status, stderr.text())
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for echo-server") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echo-server did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a child wrote on a pipe so far; `grew` is signalled on every addition.
#[derive(Default)]
struct Output {
    text: Mutex<String>,
    grew: Condvar,
}

impl Output {
    fn text(&self) -> String {
        self.text.lock().expect("stderr lock").clone()
    }
}

/// Drains a pipe into an [`Output`] on a thread of its own (a full pipe would block the
/// server). The thread ends at EOF.
fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Output>, std::thread::JoinHandle<()>) {
    let text = Arc::new(Output::default());
    let sink = text.clone();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.text
                .lock()
                .expect("stderr lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
            sink.grew.notify_all();
        }
    });
    (text, handle)
}

/// Any byte stream the tests talk HTTP over.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Conn = Box<dyn Io>;

/// One client connection: writes and reads run concurrently, as the server streams its
/// echo back while it is still reading.
pub struct Client {
    rd: AsyncBufReader<ReadHalf<Conn>>,
    wr: WriteHalf<Conn>,
}

impl Client {
    pub fn new(conn: Conn) -> Client {
        let (rd, wr) = tokio::io::split(conn);
        Client {
            rd: AsyncBufReader::new(rd),
            wr,
        }
    }

    /// Sends one request, returns its response.
    pub async fn request(&mut self, raw: &[u8]) -> Response {
        self.requests(raw, 1).await.remove(0)
    }

    /// Writes `raw` (one or more requests) while reading `n` responses.
    pub async fn requests(&mut self, raw: &[u8], n: usize) -> Vec<Response> {
        let Client { rd, wr } = self;
        let write = async {
            wr.write_all(raw).await?;
            wr.flush().await
        };
        let read = async {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(read_response(rd).await?);
            }
            io::Result::Ok(out)
        };
        let both = async { tokio::join!(write, read) };
        let (written, read) = tokio::time::timeout(TIMEOUT, both)
            .await
            .expect("request/response timed out");
        let responses = read.expect("reading the response");
        // A server that answers early (413) may close before the whole request is read.
        if let Err(e) = written {
            assert!(
                responses
                    .iter()
                    .all(|r| r.header("connection") == Some("close")),
                "writing the request failed ({e}) but the server did not say it would close"
            );
        }
        responses
    }

    /// Writes without reading.
    pub async fn write(&mut self, raw: &[u8]) -> io::Result<()> {
        self.wr.write_all(raw).await?;
        self.wr.flush().await
    }

    /// Shuts the write side (FIN): the server reads EOF, whatever it was waiting for.
    pub async fn close_write(&mut self) -> io::Result<()> {
        self.wr.shutdown().await
    }

    /// Asserts the server closes the connection (EOF, or a reset / TLS EOF error) without
    /// sending anything more.
    pub async fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, self.rd.read_to_end(&mut rest))
            .await
            .expect("the server did not close the connection");
        match read {
            Ok(_) => {}
            Err(e) if is_closed(&e) => {}
            Err(e) => panic!("unexpected error waiting for the close: {e}"),
        }
        assert!(
            rest.is_empty(),
            "unexpected bytes before the close: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

impl Client {
    /// As [`Client::assert_closed`] on a raw TCP connection to a TLS port: the server may
    /// send TLS alert records before it closes, and nothing else.
    pub async fn assert_closed_after_alerts(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, self.rd.read_to_end(&mut rest))
            .await
            .expect("the server did not close the connection");
        if let Err(e) = read {
            assert!(is_closed(&e), "unexpected error waiting for the close: {e}");
        }
        let mut records = rest.as_slice();
        while !records.is_empty() {
            assert!(
                records.len() >= 5 && records[0] == TLS_ALERT,
                "not a TLS alert record before the close: {records:02x?}"
            );
            let len = usize::from(u16::from_be_bytes([records[3], records[4]]));
            assert!(records.len() >= 5 + len, "truncated record: {records:02x?}");
            records = &records[5 + len..];
        }
    }
}

/// TLS record content type of an alert.
const TLS_ALERT: u8 = 21;

pub fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A parsed response: lower-cased header names, the body as framed by Content-Length.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response. Only Content-Length framing is accepted: the echo-server promises
/// it for every response.
pub async fn read_response<R: AsyncBufReadExt + Unpin>(rd: &mut R) -> io::Result<Response> {
    let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let mut line = Vec::new();
    rd.read_until(b'\n', &mut line).await?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let status_line = String::from_utf8_lossy(&line).trim_end().to_string();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if version != Some("HTTP/1.1") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status = code
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        rd.read_until(b'\n', &mut line).await?;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {text:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if resp.header("transfer-encoding").is_some() {
        return Err(bad(format!("chunked response: {:?}", resp.headers)));
    }
    let len: usize = resp
        .header("content-length")
        .ok_or_else(|| {
            bad(format!(
                "response without Content-Length: {:?}",
                resp.headers
            ))
        })?
        .parse()
        .map_err(|_| bad(format!("bad Content-Length: {:?}", resp.headers)))?;
    resp.body = vec![0; len];
    rd.read_exact(&mut resp.body).await?;
    Ok(resp)
}

/// A POST of `body` with a Content-Length.
pub fn post(body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// A POST of `body` in chunks of `chunk` bytes (Transfer-Encoding: chunked).
pub fn post_chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut req =
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(chunk) {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

pub const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// `len` bytes with no repeating period (splitmix64), so a misplaced or duplicated block
/// cannot compare equal by accident.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts two bodies are equal without printing megabytes on failure.
pub fn assert_same_body(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "echoed body differs: got {} bytes, sent {}; first difference at {:?}",
        got.len(),
        want.len(),
        first
    );
}

/// The bytes of a file, for "left intact" checks.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
