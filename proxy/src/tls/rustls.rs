//! The rustls backends: one module for both crypto providers (aws-lc-rs and ring), which
//! differ only in the [`CryptoProvider`] and the session-ticket key generator.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
    WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{CommonState, HandshakeKind, InconsistentKeys, ProtocolVersion, ServerConfig};
use sysio::tls_names::{canonical_group, canonical_suite};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    load_client_ca, subject_cn, Backend, ClientCertInfo, HandshakeErrorKind, HandshakeInfo,
    LoadedCert, LoadedCerts, RustlsIo, TlsError, TlsSettings, TlsStream, TlsVersion,
};

/// A rustls acceptor; clones share one `ServerConfig`.
#[derive(Clone, Debug)]
pub struct Acceptor {
    backend: Backend,
    io: RustlsIo,
    config: Arc<ServerConfig>,
}

impl Acceptor {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn accept<IO>(&self, io: IO) -> Result<TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        match self.io {
            RustlsIo::Unbuffered => super::unbuffered::accept(self.config.clone(), io)
                .await
                .map(TlsStream::RustlsUnbuffered),
            RustlsIo::Buffered => tokio_rustls::TlsAcceptor::from(self.config.clone())
                .accept(io)
                .await
                .map(TlsStream::Rustls)
                .map_err(handshake_error),
        }
    }
}

/// A failed tokio-rustls handshake, sorted by the `rustls::Error` it wraps in the
/// `io::Error` (an `io::Error` without one is the transport's).
fn handshake_error(e: std::io::Error) -> TlsError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(inner) => handshake_failed(inner.clone()),
        None => TlsError::Handshake {
            kind: HandshakeErrorKind::of_io(&e),
            detail: e.to_string(),
        },
    }
}

/// A handshake rustls refused. On a server, certificate errors can only be about the
/// client's certificate.
pub(crate) fn handshake_failed(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
            TlsError::ClientCertificate(e.to_string())
        }
        e => TlsError::Handshake {
            kind: kind_of(&e),
            detail: e.to_string(),
        },
    }
}

/// Why rustls refused a handshake.
fn kind_of(e: &rustls::Error) -> HandshakeErrorKind {
    use rustls::AlertDescription as Alert;
    match e {
        rustls::Error::PeerIncompatible(_) => HandshakeErrorKind::NoSharedParameters,
        // A record type that does not exist: the bytes are not TLS.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            HandshakeErrorKind::NotTls
        }
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA,
        ) => HandshakeErrorKind::BadCertificate,
        _ => HandshakeErrorKind::Protocol,
    }
}

/// Builds a rustls `ServerConfig` for `settings` (backend must be a rustls one).
pub fn build(settings: &TlsSettings, certs: &LoadedCerts) -> Result<Acceptor, TlsError> {
    let config = server_config(settings, certs)?;
    Ok(Acceptor {
        backend: settings.backend,
        io: settings.rustls_io,
        config: Arc::new(config),
    })
}

/// The full `ServerConfig`, exposed for in-memory benchmarks that drive rustls directly.
pub fn server_config(
    settings: &TlsSettings,
    certs: &LoadedCerts,
) -> Result<ServerConfig, TlsError> {
    let backend = settings.backend;
    let mut provider = provider(backend)?;
    restrict_suites(&mut provider, settings)?;
    restrict_groups(&mut provider, settings)?;
    let provider = Arc::new(provider);

    let resolver = SniResolver {
        default: certified_key(&certs.default, &provider, backend)?,
        by_name: certs
            .by_sni
            .iter()
            .map(|(name, cert)| Ok((name.clone(), certified_key(cert, &provider, backend)?)))
            .collect::<Result<_, TlsError>>()?,
        strict: certs.strict_sni,
    };

    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| library(backend, "protocol versions", e))?;
    let builder = match &settings.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in load_client_ca(auth)? {
                roots.add(ca).map_err(|e| TlsError::BadPem {
                    path: auth.ca.clone(),
                    detail: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| TlsError::Library {
                backend,
                context: "client certificate verifier",
                detail: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    // The server's suite order wins (as in HAProxy): every suite offered is AEAD, but a
    // client should not be able to talk the proxy into its weakest one. testssl.sh rates
    // "no server cipher order" HIGH.
    config.ignore_client_order = true;

    config.alpn_protocols = settings
        .alpn
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    if settings.session_resumption {
        // Stateless TLS 1.3 tickets whose keys rotate every few hours (the provider's
        // Ticketer), and a stateful cache for TLS 1.2 session ids.
        config.ticketer = match backend {
            Backend::RustlsRing => rustls::crypto::ring::Ticketer::new(),
            _ => rustls::crypto::aws_lc_rs::Ticketer::new(),
        }
        .map_err(|e| library(backend, "session ticket keys", e))?;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

/// The negotiated parameters of an established tokio-rustls stream.
pub fn info<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> HandshakeInfo {
    let (_, conn) = stream.get_ref();
    info_of(conn, conn.server_name())
}

/// The negotiated parameters of a connection (either API), with the SNI it received.
pub(crate) fn info_of(conn: &CommonState, sni: Option<&str>) -> HandshakeInfo {
    HandshakeInfo {
        version: conn.protocol_version().map(version_name),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|s| canonical_suite(s.suite().as_str().unwrap_or("unknown"))),
        kx_group: conn
            .negotiated_key_exchange_group()
            .map(|g| canonical_group(g.name().as_str().unwrap_or("unknown"))),
        alpn: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        sni: sni.map(str::to_owned),
        resumed: Some(conn.handshake_kind() == Some(HandshakeKind::Resumed)),
        // rustls only completes a handshake whose client certificate verified.
        client_cert: conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| ClientCertInfo {
                verified: true,
                subject_cn: subject_cn(leaf),
            }),
    }
}

/// The crypto provider behind a rustls backend.
pub fn provider(backend: Backend) -> Result<CryptoProvider, TlsError> {
    match backend {
        Backend::RustlsAwsLc => Ok(rustls::crypto::aws_lc_rs::default_provider()),
        Backend::RustlsRing => Ok(rustls::crypto::ring::default_provider()),
        Backend::RustlsMixed => Ok(CryptoProvider {
            cipher_suites: rustls::crypto::ring::default_provider().cipher_suites,
            ..rustls::crypto::aws_lc_rs::default_provider()
        }),
        Backend::Openssl | Backend::NativeTls => Err(TlsError::Unsupported {
            backend,
            option: "the rustls builder",
            detail: format!("{backend} is not a rustls provider"),
        }),
    }
}

pub(crate) fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

fn restrict_suites(provider: &mut CryptoProvider, settings: &TlsSettings) -> Result<(), TlsError> {
    if settings.cipher_suites.is_empty() {
        return Ok(());
    }
    let name_of =
        |s: &rustls::SupportedCipherSuite| canonical_suite(s.suite().as_str().unwrap_or_default());
    for wanted in &settings.cipher_suites {
        let wanted = canonical_suite(wanted);
        if !provider.cipher_suites.iter().any(|s| name_of(s) == wanted) {
            return Err(TlsError::Unsupported {
                backend: settings.backend,
                option: "cipher_suites",
                detail: format!(
                    "unknown cipher suite {wanted} (available: {})",
                    provider
                        .cipher_suites
                        .iter()
                        .map(name_of)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let wanted: Vec<String> = settings
        .cipher_suites
        .iter()
        .map(|s| canonical_suite(s))
        .collect();
    provider
        .cipher_suites
        .retain(|s| wanted.contains(&name_of(s)));
    Ok(())
}

fn restrict_groups(provider: &mut CryptoProvider, settings: &TlsSettings) -> Result<(), TlsError> {
    if settings.kx_groups.is_empty() {
        return Ok(());
    }
    let name_of = |g: &&'static dyn rustls::crypto::SupportedKxGroup| {
        canonical_group(g.name().as_str().unwrap_or_default())
    };
    let mut chosen = Vec::with_capacity(settings.kx_groups.len());
    // The order given is the server's preference order.
    for wanted in &settings.kx_groups {
        let wanted = canonical_group(wanted);
        match provider.kx_groups.iter().find(|g| name_of(g) == wanted) {
            Some(g) => chosen.push(*g),
            None => {
                return Err(TlsError::Unsupported {
                    backend: settings.backend,
                    option: "kx_groups",
                    detail: format!(
                        "unknown key-exchange group {wanted} (available: {})",
                        provider
                            .kx_groups
                            .iter()
                            .map(&name_of)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        }
    }
    provider.kx_groups = chosen;
    Ok(())
}

fn certified_key(
    cert: &LoadedCert,
    provider: &CryptoProvider,
    backend: Backend,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let key = provider
        .key_provider
        .load_private_key(cert.key.clone_key())
        .map_err(|e| TlsError::UnsupportedKey {
            path: cert.paths.key.clone(),
            backend,
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(cert.chain.clone(), key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert.paths.cert.clone(),
                key: cert.paths.key.clone(),
            })
        }
        Err(e) => Err(TlsError::BadPem {
            path: cert.paths.cert.clone(),
            detail: e.to_string(),
        }),
    }
}

fn library(backend: Backend, context: &'static str, e: rustls::Error) -> TlsError {
    TlsError::Library {
        backend,
        context,
        detail: e.to_string(),
    }
}

/// Picks the certificate by SNI; falls back to the default unless strict.
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
    strict: bool,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("strict", &self.strict)
            .finish()
    }
}

thread_local! {
    /// The SNI of the ClientHello this thread's resolver saw last.
    static SNI_SEEN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Clears the SNI the resolver saw, before a connection processes its records.
pub(crate) fn forget_sni() {
    SNI_SEEN.with(|seen| seen.borrow_mut().take());
}

/// The SNI of the ClientHello processed since [`forget_sni`], if any had one.
///
/// rustls 0.23's unbuffered server connection keeps the SNI but has no accessor for it
/// (the buffered one has `server_name()`). The certificate resolver is shown it, inside
/// `process_tls_records`, synchronously and on the thread that called it, for every
/// ClientHello; so the connection clears this slot before the call and reads it after.
pub(crate) fn take_sni() -> Option<String> {
    SNI_SEEN.with(|seen| seen.borrow_mut().take())
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            SNI_SEEN.with(|seen| *seen.borrow_mut() = Some(name.to_owned()));
        }
        // rustls hands us the SNI already lower-cased and validated as a DNS name.
        let found = hello.server_name().and_then(|n| self.by_name.get(n));
        match (found, self.strict) {
            (Some(key), _) => Some(key.clone()),
            // None makes rustls abort the handshake with an alert.
            (None, true) => None,
            (None, false) => Some(self.default.clone()),
        }
    }
}

/// TLS 1.2 session-id cache size: ~100 bytes an entry, so a few hundred KiB at most.
const SESSION_CACHE_ENTRIES: usize = 4096;
