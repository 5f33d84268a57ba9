//! Helpers the proxy's integration tests share: the `proxy` process launcher, the server
//! certificate with a client that trusts it ([`Pki`]), and the test CA that issues client
//! certificates; the upstreams behind the proxy are in [`upstream`]. Each test binary
//! includes this with `mod common;`.

// reason: every test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod upstream;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proxy::tls::selfsigned::{self, KeyKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Generous bound for things that should happen "promptly": catches hangs, never flakes.
const PROMPT: Duration = Duration::from_secs(10);

/// The proxy process and the listeners it announced; killed on drop.
pub struct Proxy {
    pub child: Child,
    /// The first listener's address (most tests have one).
    pub addr: SocketAddr,
    /// Every listener's address, in the order the proxy announced them.
    pub addrs: Vec<SocketAddr>,
    /// The process's stderr (its log), in a file of its own.
    pub stderr: PathBuf,
}

impl Proxy {
    /// Starts `proxy` with `args` and reads one `listening on` line per listener.
    pub fn start(dir: &Path, args: &[&str], listeners: usize) -> Self {
        Self::start_with_env(dir, args, listeners, &[])
    }

    /// [`Proxy::start`] with extra environment variables (`RUST_LOG`).
    pub fn start_with_env(
        dir: &Path,
        args: &[&str],
        listeners: usize,
        env: &[(&str, &str)],
    ) -> Self {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let stderr = dir.join(format!("proxy-{n}.err"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_proxy"))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("creating the proxy's log file"))
            .spawn()
            .expect("starting the proxy");
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut addrs = Vec::new();
        for _ in 0..listeners {
            let mut line = String::new();
            out.read_line(&mut line)
                .expect("reading the proxy's stdout");
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| {
                    panic!(
                        "no readiness line: {line:?}; stderr: {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    )
                });
            addrs.push(addr.parse().expect("a socket address"));
        }
        Proxy {
            child,
            addr: addrs[0],
            addrs,
            stderr,
        }
    }

    /// What the proxy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (logs are written asynchronously).
    pub fn wait_log(&self, needle: &str) -> String {
        let end = Instant::now() + PROMPT;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < end,
                "log never contained {needle:?}: {log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy's `/metrics` page at `addr` (the `metrics_listen` listener).
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to the metrics listener");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("sending the scrape");
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .expect("reading the metrics page");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// A client certificate chain and its key, as a rustls client sends them.
pub type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A CA generated here (by `proxy::tls::selfsigned`), on disk as PEM at `path`, that
/// issues client certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub path: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, stem: &str) -> TestCa {
        let (cert, key) = proxy::tls::selfsigned::generate_ca(&format!("tls-off test {stem}"))
            .expect("generating the test CA");
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, cert.pem()).expect("writing the CA");
        TestCa { cert, key, path }
    }

    /// The CA certificate as PEM (what `path` holds).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A client certificate with common name `cn`, signed by this CA.
    pub fn issue(&self, cn: &str) -> ClientIdentity {
        let (cert, key) = self.sign(cn, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("a PKCS#8 key");
        (vec![cert.der().clone()], key)
    }

    /// A client certificate with common name `cn`, as PEM files `<stem>-cert.pem` and
    /// `<stem>-key.pem` in `dir` (what command-line clients read).
    pub fn issue_client_files(&self, cn: &str, dir: &Path, stem: &str) -> CertFiles {
        let (cert, key) = self.sign(cn, &[], rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        CertFiles::write(dir, stem, &cert, &key)
    }

    /// A server certificate for the DNS names `names`, as PEM files `<stem>-cert.pem` and
    /// `<stem>-key.pem` in `dir`: a client that trusts this CA verifies it like a real site's.
    pub fn issue_server_files(&self, names: &[&str], dir: &Path, stem: &str) -> CertFiles {
        let (cert, key) = self.sign(names[0], names, rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        CertFiles::write(dir, stem, &cert, &key)
    }

    /// A leaf certificate for `cn` (and the DNS names `names`) with the usage `usage`,
    /// signed by this CA, and its new ECDSA P-256 key.
    fn sign(
        &self,
        cn: &str,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generating a leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("leaf parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing a leaf certificate");
        (cert, key)
    }
}

/// A certificate and its private key on disk as PEM.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    fn write(dir: &Path, stem: &str, cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Self {
        let files = CertFiles {
            cert: dir.join(format!("{stem}-cert.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("writing a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("writing a private key");
        files
    }
}

/// A self-signed ECDSA P-256 server certificate for `localhost` in a temporary folder, and
/// a client that trusts it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl Pki {
    /// The certificate, and a client offering the ALPN protocols `alpn`.
    pub fn new(alpn: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let paths = selfsigned::write_to_dir(dir.path(), KeyKind::EcdsaP256)
            .expect("generating the test certificate");
        let mut client = client_builder(&[&paths.cert]).with_no_client_auth();
        client.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Pki {
            cert: paths.cert,
            key: paths.key,
            client: std::sync::Arc::new(client),
            dir,
        }
    }

    /// The proxy's flags for one listener on a free loopback port in front of `upstream`,
    /// serving this certificate with TLS backend `backend`.
    pub fn args<'a>(&'a self, upstream: &'a str, backend: &'a str) -> Vec<&'a str> {
        vec![
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--cert",
            self.cert.to_str().expect("a UTF-8 temporary path"),
            "--key",
            self.key.to_str().expect("a UTF-8 temporary path"),
            "--tls-backend",
            backend,
        ]
    }
}

/// A client (aws-lc-rs) that trusts the certificates in the PEM files `trust`.
pub fn client_config(trust: &[&Path]) -> std::sync::Arc<rustls::ClientConfig> {
    std::sync::Arc::new(client_builder(trust).with_no_client_auth())
}

/// A client config trusting `trust`, before its choice of client certificate.
pub fn client_builder(
    trust: &[&Path],
) -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in trust {
        for cert in CertificateDer::pem_file_iter(path).expect("reading a trusted certificate") {
            let cert = cert.expect("a PEM certificate");
            roots.add(cert).expect("a certificate rustls accepts");
        }
    }
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("aws-lc-rs supports the default versions")
    .with_root_certificates(roots)
}
