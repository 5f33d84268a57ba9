//! The one TLS seam: every TLS library the project uses sits behind this small surface.
//!
//! The proxy and the echo-server's HTTPS mode both call [`Acceptor::build`] and
//! [`Acceptor::accept`], so "the backend does TLS itself" and "the proxy does TLS" differ only
//! by the proxy hop. Each library lives in its own module ([`rustls`](self::rustls),
//! [`openssl`](self::openssl), [`native_tls`](self::native_tls)) exporting the same names:
//! `build(&TlsSettings, &LoadedCerts)`, an acceptor type with `accept`, and `info(&stream)`.
//! The rustls backends' default stream is [`unbuffered`]'s, over rustls's unbuffered API;
//! tokio-rustls's is the other ([`RustlsIo`]).
//!
//! Options a backend cannot honour are refused with [`TlsError::Unsupported`], never ignored:
//! a comparison between backends is only fair when both really run the parameters asked for.

pub mod native_tls;
pub mod openssl;
pub mod rustls;
pub mod selfsigned;
pub mod unbuffered;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Which TLS library terminates the connection. Chosen at run time; all are compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// rustls with the aws-lc-rs crypto provider (the default).
    #[default]
    RustlsAwsLc,
    /// rustls with the ring crypto provider.
    RustlsRing,
    /// rustls with aws-lc-rs for the handshake (key exchange, signatures, certificate
    /// verification, randomness, ticket keys) and ring for the record layer (the cipher
    /// suites: AEAD and their HKDF/PRF): each library where it measured as fast or faster
    /// here (README, "Crypto provider by measurement").
    RustlsMixed,
    /// The system OpenSSL (libssl), through the `openssl` crate.
    Openssl,
    /// The same OpenSSL through `native-tls` (the original experiment's stack): TLS 1.2
    /// only, and fewer options (see [`native_tls`](self::native_tls)).
    NativeTls,
}

impl Backend {
    /// The stable name used on the command line, in config files and in CSV rows.
    pub fn name(self) -> &'static str {
        match self {
            Backend::RustlsAwsLc => "rustls-aws-lc",
            Backend::RustlsRing => "rustls-ring",
            Backend::RustlsMixed => "rustls-mixed",
            Backend::Openssl => "openssl",
            Backend::NativeTls => "native-tls",
        }
    }

    /// Every backend, for tests and sweeps that cover them all.
    pub const ALL: [Backend; 5] = [
        Backend::RustlsAwsLc,
        Backend::RustlsRing,
        Backend::RustlsMixed,
        Backend::Openssl,
        Backend::NativeTls,
    ];

    /// Whether this backend is rustls (with any of its crypto providers).
    pub fn is_rustls(self) -> bool {
        matches!(
            self,
            Backend::RustlsAwsLc | Backend::RustlsRing | Backend::RustlsMixed
        )
    }

    /// Whether this backend can speak `version` (native-tls's server cannot speak TLS 1.3).
    pub fn speaks(self, version: TlsVersion) -> bool {
        self != Backend::NativeTls || version == TlsVersion::Tls12
    }

    /// Whether [`TlsStream::info`] reports the negotiated version, cipher suite, group, SNI
    /// and resumption (native-tls does not expose them; its fields are `None`).
    pub fn reports_parameters(self) -> bool {
        self != Backend::NativeTls
    }

    /// The TLS library this backend runs: for rustls the crates compiled in, with the
    /// versions the workspace's Cargo.lock pins (see build.rs), e.g.
    /// `rustls 0.23.46 + aws-lc-rs 1.19.0`; for openssl the libssl loaded at run time,
    /// which only the library itself knows; for native-tls both, its crate's version first.
    pub fn library(self) -> String {
        let rustls = env!("TLS_OFF_RUSTLS_VERSION");
        match self {
            Backend::RustlsAwsLc => {
                format!(
                    "rustls {rustls} + aws-lc-rs {}",
                    env!("TLS_OFF_AWS_LC_RS_VERSION")
                )
            }
            Backend::RustlsRing => {
                format!("rustls {rustls} + ring {}", env!("TLS_OFF_RING_VERSION"))
            }
            Backend::RustlsMixed => format!(
                "rustls {rustls} + aws-lc-rs {} + ring {} (record layer)",
                env!("TLS_OFF_AWS_LC_RS_VERSION"),
                env!("TLS_OFF_RING_VERSION")
            ),
            Backend::Openssl => openssl::linked_library(),
            Backend::NativeTls => native_tls::library(),
        }
    }
}

/// The lines `--version` prints after the program's version, one per backend:
/// `rustls-aws-lc backend: rustls 0.23.46 + aws-lc-rs 1.19.0`. The proxy and the echo-server
/// (which terminates TLS through this same seam) both print them, and the harness reads the
/// library of each row from them, so this is the one place their wording is decided.
pub fn library_lines() -> String {
    Backend::ALL
        .map(|b| format!("{b} backend: {}", b.library()))
        .join("\n")
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the rustls backends move records: the choice is measured in the README ("rustls's
/// unbuffered API"); other backends ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RustlsIo {
    /// rustls's unbuffered API ([`unbuffered`]): buffers are per worker thread, and an
    /// idle connection owns none.
    #[default]
    Unbuffered,
    /// tokio-rustls over rustls's buffered connection, which keeps a read buffer per
    /// connection: kept to measure against.
    Buffered,
}

impl RustlsIo {
    pub fn name(self) -> &'static str {
        match self {
            RustlsIo::Unbuffered => "unbuffered",
            RustlsIo::Buffered => "buffered",
        }
    }
}

/// Lowest protocol version the server accepts. TLS 1.2 and 1.3 are the only versions any
/// backend here is allowed to speak.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, clap::ValueEnum, serde::Deserialize,
)]
pub enum TlsVersion {
    #[default]
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }
}

/// A PEM certificate chain and its PEM private key, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificates a listener serves: a default, plus optional ones selected by SNI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSet {
    pub default: CertPaths,
    /// (server name, certificate) pairs; names are matched case-insensitively and exactly.
    pub by_sni: Vec<(String, CertPaths)>,
    /// Refuse the handshake when the client's SNI names no configured certificate, instead
    /// of answering with the default one.
    pub strict_sni: bool,
}

impl CertSet {
    /// One certificate for every name.
    pub fn single(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertSet {
            default: CertPaths {
                cert: cert.into(),
                key: key.into(),
            },
            by_sni: Vec::new(),
            strict_sni: false,
        }
    }
}

/// Everything about the TLS server side that is not the certificate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub backend: Backend,
    pub min_version: TlsVersion,
    /// IANA names (`TLS_AES_128_GCM_SHA256`, `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`);
    /// empty means the backend's defaults.
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups (`X25519`, `secp256r1`, `secp384r1`, `X25519MLKEM768`);
    /// empty means the backend's defaults.
    pub kx_groups: Vec<String>,
    /// ALPN protocols in server preference order; empty means no ALPN.
    pub alpn: Vec<String>,
    /// TLS 1.3 tickets (keys rotated automatically) and the TLS 1.2 session cache.
    pub session_resumption: bool,
    /// Verify client certificates (mutual TLS); `None` asks for none.
    pub client_auth: Option<ClientAuth>,
    /// The rustls API the rustls backends use.
    pub rustls_io: RustlsIo,
}

/// Mutual TLS: which CAs client certificates must chain to, and whether one is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file with one or more CA certificates.
    pub ca: PathBuf,
    /// `true`: a client without an acceptable certificate fails the handshake.
    /// `false`: a client may send none, but one it sends must verify.
    pub required: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            backend: Backend::default(),
            min_version: TlsVersion::default(),
            cipher_suites: Vec::new(),
            kx_groups: Vec::new(),
            alpn: Vec::new(),
            session_resumption: true,
            client_auth: None,
            rustls_io: RustlsIo::default(),
        }
    }
}

/// What a handshake settled on, the same fields for every backend. `None` in `version`,
/// `cipher_suite`, `kx_group` and `resumed` means "not reported by this backend" (native-tls
/// reports none of them): it is shown as such (`-` in logs, `other` in metrics, no TLV in
/// PROXY headers), never as a guess.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: Option<String>,
    /// IANA name, e.g. `TLS_AES_128_GCM_SHA256`.
    pub cipher_suite: Option<String>,
    /// e.g. `X25519`, `secp256r1`.
    pub kx_group: Option<String>,
    pub alpn: Option<String>,
    /// The name the client asked for; also `None` where the backend does not say (native-tls).
    pub sni: Option<String>,
    /// The client resumed an earlier session (ticket or session id).
    pub resumed: Option<bool>,
    /// The client's certificate, with mutual TLS.
    pub client_cert: Option<ClientCertInfo>,
}

/// What the proxy learned of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCertInfo {
    /// The certificate chained to the configured CA.
    pub verified: bool,
    /// The subject's common name, if it has one.
    pub subject_cn: Option<String>,
}

/// The subject CN of a DER certificate (OpenSSL parses it for both backends).
pub(crate) fn subject_cn(der: &[u8]) -> Option<String> {
    let cert = ::openssl::x509::X509::from_der(der).ok()?;
    let entry = cert
        .subject_name()
        .entries_by_nid(::openssl::nid::Nid::COMMONNAME)
        .next()?;
    entry.data().to_string().ok()
}

/// The exact (non-wildcard) DNS names in a certificate's subjectAltName, lower-cased.
fn dns_names(der: &[u8]) -> Vec<String> {
    let Ok(cert) = ::openssl::x509::X509::from_der(der) else {
        return Vec::new();
    };
    cert.subject_alt_names()
        .into_iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
        .filter(|n| !n.contains('*'))
        .collect()
}

/// Reads the CA certificates of a [`ClientAuth`], with errors naming the file.
pub fn load_client_ca(auth: &ClientAuth) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file("client CA", &auth.ca)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&auth.ca, "CERTIFICATE", e))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem {
            what: "CERTIFICATE",
            path: auth.ca.clone(),
        });
    }
    Ok(certs)
}

/// Why building an acceptor or a handshake failed. Messages name the file or option.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("no PEM {what} block in {}", path.display())]
    NoPem { what: &'static str, path: PathBuf },
    #[error("malformed PEM in {}: {detail}", path.display())]
    BadPem { path: PathBuf, detail: String },
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("private key {}: unsupported key type for the {backend} backend: {detail}", path.display())]
    UnsupportedKey {
        path: PathBuf,
        backend: Backend,
        detail: String,
    },
    #[error("the {backend} backend cannot honour {option}: {detail}")]
    Unsupported {
        backend: Backend,
        option: &'static str,
        detail: String,
    },
    /// A TLS listener was given no certificate (a checked config always has one when any
    /// listener uses TLS).
    #[error("no certificate configured for a TLS listener")]
    NoCertificate,
    #[error("{backend}: {context}: {detail}")]
    Library {
        backend: Backend,
        context: &'static str,
        detail: String,
    },
    /// The handshake failed; `kind` says why, as the library reported it.
    #[error("TLS handshake failed: {detail}")]
    Handshake {
        kind: HandshakeErrorKind,
        detail: String,
    },
    /// The handshake failed because this server refused the client's certificate (none
    /// sent where one is required, or one that does not verify). Kept apart from
    /// [`TlsError::Handshake`]: a client refusing *our* certificate also fails with an
    /// alert that names "certificate", and that is not a mutual-TLS refusal.
    #[error("TLS handshake failed: client certificate refused: {0}")]
    ClientCertificate(String),
}

/// Why a handshake failed (other than a refused client certificate, which is
/// [`TlsError::ClientCertificate`]). Each backend decides it where the library's error is
/// in hand: rustls's typed errors, OpenSSL's reason codes; never from message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeErrorKind {
    /// No protocol version, cipher suite, key-exchange group or signature scheme in common.
    NoSharedParameters,
    /// The first bytes were not TLS at all (plain HTTP on a TLS port, a scanner).
    NotTls,
    /// The client refused this server's certificate (it sent a certificate alert).
    BadCertificate,
    /// Malformed or unexpected TLS messages, or another fatal alert from the client.
    Protocol,
    /// The client closed or reset the connection before the handshake finished.
    PeerClosed,
    /// Anything else: other I/O errors, failures inside the library.
    Other,
}

impl HandshakeErrorKind {
    /// An I/O error under the handshake: the peer going away, or something else.
    pub(crate) fn of_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => HandshakeErrorKind::PeerClosed,
            _ => HandshakeErrorKind::Other,
        }
    }
}

/// PEM contents read and checked once, shared by every backend's builder.
#[derive(Debug)]
pub struct LoadedCert {
    pub paths: CertPaths,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub key_pem: Vec<u8>,
}

impl Clone for LoadedCert {
    fn clone(&self) -> Self {
        LoadedCert {
            paths: self.paths.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// A [`CertSet`] with every file read and parsed.
#[derive(Debug, Clone)]
pub struct LoadedCerts {
    pub default: LoadedCert,
    pub by_sni: Vec<(String, LoadedCert)>,
    pub strict_sni: bool,
}

impl LoadedCerts {
    pub fn load(set: &CertSet) -> Result<Self, TlsError> {
        let default = load_pair(&set.default)?;
        let mut by_sni: Vec<(String, LoadedCert)> = set
            .by_sni
            .iter()
            .map(|(name, paths)| Ok((name.to_ascii_lowercase(), load_pair(paths)?)))
            .collect::<Result<_, TlsError>>()?;
        if set.strict_sni {
            // Strict SNI refuses names no certificate is for; the default certificate's
            // own DNS names are names it is for.
            for name in dns_names(&default.chain[0]) {
                if !by_sni.iter().any(|(n, _)| *n == name) {
                    by_sni.push((name, default.clone()));
                }
            }
        }
        Ok(LoadedCerts {
            default,
            by_sni,
            strict_sni: set.strict_sni,
        })
    }
}

/// Reads a PEM chain and key, with errors that name the file and the problem.
pub fn load_pair(paths: &CertPaths) -> Result<LoadedCert, TlsError> {
    let cert_pem = read_file("certificate", &paths.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&paths.cert, "CERTIFICATE", e))?;
    if chain.is_empty() {
        return Err(TlsError::NoPem {
            what: "CERTIFICATE",
            path: paths.cert.clone(),
        });
    }
    let key_pem = read_file("private key", &paths.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem_error(&paths.key, "PRIVATE KEY", e))?;
    Ok(LoadedCert {
        paths: paths.clone(),
        chain,
        key,
        key_pem,
    })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, what: &'static str, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPem {
            what,
            path: path.to_owned(),
        },
        other => TlsError::BadPem {
            path: path.to_owned(),
            detail: format!("{other:?}"),
        },
    }
}

/// A server-side TLS acceptor for one listener, cheap to clone (reference counted).
#[derive(Clone)]
pub struct Acceptor {
    inner: AcceptorInner,
}

#[derive(Clone)]
enum AcceptorInner {
    Rustls(self::rustls::Acceptor),
    Openssl(self::openssl::Acceptor),
    NativeTls(self::native_tls::Acceptor),
}

impl fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acceptor")
            .field("backend", &self.backend())
            .finish()
    }
}

impl Acceptor {
    /// Reads the certificates and builds an acceptor for `settings.backend`.
    pub fn build(settings: &TlsSettings, certs: &CertSet) -> Result<Self, TlsError> {
        let loaded = LoadedCerts::load(certs)?;
        Self::from_loaded(settings, &loaded)
    }

    /// Builds from certificates already read (reloads read once, build for each listener).
    pub fn from_loaded(settings: &TlsSettings, certs: &LoadedCerts) -> Result<Self, TlsError> {
        let inner = match settings.backend {
            Backend::RustlsAwsLc | Backend::RustlsRing | Backend::RustlsMixed => {
                AcceptorInner::Rustls(self::rustls::build(settings, certs)?)
            }
            Backend::Openssl => AcceptorInner::Openssl(self::openssl::build(settings, certs)?),
            Backend::NativeTls => {
                AcceptorInner::NativeTls(self::native_tls::build(settings, certs)?)
            }
        };
        Ok(Acceptor { inner })
    }

    pub fn backend(&self) -> Backend {
        match &self.inner {
            AcceptorInner::Rustls(a) => a.backend(),
            AcceptorInner::Openssl(_) => Backend::Openssl,
            AcceptorInner::NativeTls(_) => Backend::NativeTls,
        }
    }

    /// Runs the server handshake on `io`. No timeout here: callers wrap it in theirs.
    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match &self.inner {
            AcceptorInner::Rustls(a) => a.accept(io).await,
            AcceptorInner::Openssl(a) => a.accept(io).await.map(TlsStream::Openssl),
            AcceptorInner::NativeTls(a) => a.accept(io).await.map(TlsStream::NativeTls),
        }
    }
}

/// An established server-side TLS stream of any backend.
#[derive(Debug)]
// reason: each stream lives inside its connection's task, which is heap-allocated once;
// boxing the larger variant would add a second allocation and a pointer chase per poll.
#[allow(clippy::large_enum_variant)]
pub enum TlsStream<IO> {
    Rustls(tokio_rustls::server::TlsStream<IO>),
    RustlsUnbuffered(unbuffered::Stream<IO>),
    Openssl(tokio_openssl::SslStream<IO>),
    NativeTls(tokio_native_tls::TlsStream<IO>),
}

impl<IO> TlsStream<IO> {
    /// The negotiated parameters.
    pub fn info(&self) -> HandshakeInfo
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match self {
            TlsStream::Rustls(s) => self::rustls::info(s),
            TlsStream::RustlsUnbuffered(s) => s.info(),
            TlsStream::Openssl(s) => self::openssl::info(s),
            TlsStream::NativeTls(s) => self::native_tls::info(s),
        }
    }

    /// The transport underneath.
    pub fn get_ref(&self) -> &IO {
        match self {
            TlsStream::Rustls(s) => s.get_ref().0,
            TlsStream::RustlsUnbuffered(s) => s.get_ref(),
            TlsStream::Openssl(s) => s.get_ref(),
            TlsStream::NativeTls(s) => s.get_ref().get_ref().get_ref(),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_read(cx, buf),
            TlsStream::RustlsUnbuffered(s) => Pin::new(s).poll_read(cx, buf),
            TlsStream::Openssl(s) => Pin::new(s).poll_read(cx, buf),
            TlsStream::NativeTls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_write(cx, buf),
            TlsStream::RustlsUnbuffered(s) => Pin::new(s).poll_write(cx, buf),
            TlsStream::Openssl(s) => Pin::new(s).poll_write(cx, buf),
            TlsStream::NativeTls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TlsStream::RustlsUnbuffered(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TlsStream::Openssl(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            TlsStream::NativeTls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            TlsStream::Rustls(s) => s.is_write_vectored(),
            TlsStream::RustlsUnbuffered(s) => s.is_write_vectored(),
            TlsStream::Openssl(s) => s.is_write_vectored(),
            TlsStream::NativeTls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_flush(cx),
            TlsStream::RustlsUnbuffered(s) => Pin::new(s).poll_flush(cx),
            TlsStream::Openssl(s) => Pin::new(s).poll_flush(cx),
            TlsStream::NativeTls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    /// Sends close_notify, then shuts the transport's write side (FIN).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsStream::Rustls(s) => Pin::new(s).poll_shutdown(cx),
            TlsStream::RustlsUnbuffered(s) => Pin::new(s).poll_shutdown(cx),
            TlsStream::Openssl(s) => Pin::new(s).poll_shutdown(cx),
            // tokio-native-tls sends close_notify only; the FIN is ours to send.
            TlsStream::NativeTls(s) => {
                std::task::ready!(Pin::new(&mut *s).poll_shutdown(cx))?;
                Pin::new(s.get_mut().get_mut().get_mut()).poll_shutdown(cx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CertPaths {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let err = load_pair(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
        assert!(err.contains("certificate"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let err = load_pair(&CertPaths {
            cert: empty.clone(),
            key: empty,
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM CERTIFICATE block"), "{err}");
        assert!(err.contains("empty.pem"), "{err}");
    }
}
