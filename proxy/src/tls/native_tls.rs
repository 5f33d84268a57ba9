//! The native-tls backend: `native-tls` + `tokio-native-tls`, the stack the original
//! experiment terminated TLS with, kept so that it can be reproduced and so that the cost of
//! the abstraction over the `openssl` crate can be measured. On Linux native-tls drives the
//! same OpenSSL as the openssl backend (the workspace's vendored build; `cargo tree -i
//! openssl-sys` shows one), so the two differ only by what each configures.
//!
//! What native-tls cannot do on the server side, and this backend therefore refuses with
//! [`TlsError::Unsupported`] (never ignores): choosing cipher suites or key-exchange groups,
//! per-SNI certificates and strict SNI, client certificates, turning session resumption off,
//! and TLS 1.3: native-tls builds its server context from Mozilla's old "intermediate"
//! profile, which sets `SSL_OP_NO_TLSv1_3`, so `min_version = "1.3"` could never handshake.
//! It does not report the negotiated version, suite, group, SNI or resumption either:
//! [`info`] leaves those `None` rather than guess. ALPN it can do (`alpn-accept`).
//!
//! What it runs with, all native-tls's choices: TLS 1.2 only, Mozilla's intermediate cipher
//! list in server order (ChaCha20-Poly1305 first; CBC-SHA and DHE suites accepted too, which
//! the other backends refuse), OpenSSL's default session cache and tickets (a second TLS 1.2
//! connection resumes), OpenSSL's default groups.

use std::io;

use openssl::pkey::PKey;
use openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    Backend, HandshakeErrorKind, HandshakeInfo, LoadedCert, LoadedCerts, TlsError, TlsSettings,
    TlsVersion,
};

const BACKEND: Backend = Backend::NativeTls;

/// The library this backend runs: the native-tls version Cargo.lock pins (build.rs) and the
/// OpenSSL under it, e.g. `native-tls 0.2.18 + OpenSSL 3.6.3 ... (built with the workspace)`.
pub fn library() -> String {
    format!(
        "native-tls {} + {}",
        env!("TLS_OFF_NATIVE_TLS_VERSION"),
        super::openssl::linked_library()
    )
}

/// A native-tls acceptor (an `SSL_CTX` inside, reference counted, so clones are cheap).
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_native_tls::TlsAcceptor,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("native_tls::Acceptor")
    }
}

impl Acceptor {
    pub async fn accept<IO>(&self, io: IO) -> Result<tokio_native_tls::TlsStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.inner
            .accept(io)
            .await
            .map_err(|e| TlsError::Handshake {
                kind: handshake_kind(&e),
                detail: e.to_string(),
            })
    }
}

/// Refuses what native-tls cannot do, then builds the acceptor from the default certificate.
pub fn build(settings: &TlsSettings, certs: &LoadedCerts) -> Result<Acceptor, TlsError> {
    refuse_unsupported(settings, certs)?;
    let identity = identity(&certs.default)?;
    let mut builder = native_tls::TlsAcceptor::builder(identity);
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if !settings.alpn.is_empty() {
        builder.accept_alpn(&settings.alpn);
    }
    let acceptor = builder.build().map_err(|e| TlsError::Library {
        backend: BACKEND,
        context: "TlsAcceptor::build",
        detail: e.to_string(),
    })?;
    Ok(Acceptor {
        inner: acceptor.into(),
    })
}

/// What an established stream can tell: only ALPN. native-tls exposes no version, suite,
/// group, SNI or resumption, so those stay `None` ("not reported"), never a guess.
pub fn info<IO>(stream: &tokio_native_tls::TlsStream<IO>) -> HandshakeInfo
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    HandshakeInfo {
        version: None,
        cipher_suite: None,
        kx_group: None,
        alpn: stream
            .get_ref()
            .negotiated_alpn()
            .ok()
            .flatten()
            .map(|p| String::from_utf8_lossy(&p).into_owned()),
        sni: None,
        resumed: None,
        client_cert: None,
    }
}

/// Every option this backend cannot honour, refused by name before anything is built.
fn refuse_unsupported(settings: &TlsSettings, certs: &LoadedCerts) -> Result<(), TlsError> {
    let refuse = |option: &'static str, detail: &str| {
        Err(TlsError::Unsupported {
            backend: BACKEND,
            option,
            detail: detail.to_owned(),
        })
    };
    if settings.min_version == TlsVersion::Tls13 {
        return refuse(
            "min_version",
            "native-tls's server speaks TLS 1.2 only (its Mozilla intermediate profile \
             disables TLS 1.3)",
        );
    }
    let cannot_choose = |asked: &[String]| {
        format!(
            "native-tls has no way to choose them (asked for {})",
            asked.join(", ")
        )
    };
    if !settings.cipher_suites.is_empty() {
        return refuse("cipher_suites", &cannot_choose(&settings.cipher_suites));
    }
    if !settings.kx_groups.is_empty() {
        return refuse("kx_groups", &cannot_choose(&settings.kx_groups));
    }
    // Before `sni`: strict SNI lists the default certificate's own names as SNI entries.
    if certs.strict_sni {
        return refuse("strict_sni", "native-tls does not see the client's SNI");
    }
    if !certs.by_sni.is_empty() {
        return refuse("sni", "native-tls serves one certificate for every name");
    }
    if settings.client_auth.is_some() {
        return refuse(
            "client_ca",
            "native-tls's server cannot ask for client certificates (mutual TLS)",
        );
    }
    if !settings.session_resumption {
        return refuse(
            "session_resumption",
            "native-tls cannot turn OpenSSL's session cache and tickets off",
        );
    }
    Ok(())
}

/// The certificate chain and key as native-tls takes them: PEM, the key as PKCS#8. Keys in
/// SEC1 or PKCS#1 PEM (which the other backends take) are converted; a key that is not the
/// certificate's is refused here, as native-tls would only fail at the first handshake.
fn identity(cert: &LoadedCert) -> Result<native_tls::Identity, TlsError> {
    let bad_cert = |e: openssl::error::ErrorStack| TlsError::BadPem {
        path: cert.paths.cert.clone(),
        detail: e.to_string(),
    };
    let chain = cert
        .chain
        .iter()
        .map(|der| X509::from_der(der).map_err(bad_cert))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PKey::private_key_from_pem(&cert.key_pem).map_err(|e| TlsError::UnsupportedKey {
        path: cert.paths.key.clone(),
        backend: BACKEND,
        detail: e.to_string(),
    })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoPem {
        what: "CERTIFICATE",
        path: cert.paths.cert.clone(),
    })?;
    let leaf_key = leaf.public_key().map_err(bad_cert)?;
    if !leaf_key.public_eq(&key) {
        return Err(TlsError::KeyMismatch {
            cert: cert.paths.cert.clone(),
            key: cert.paths.key.clone(),
        });
    }
    let mut chain_pem = Vec::new();
    for c in &chain {
        chain_pem.extend(c.to_pem().map_err(bad_cert)?);
    }
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| TlsError::UnsupportedKey {
            path: cert.paths.key.clone(),
            backend: BACKEND,
            detail: e.to_string(),
        })?;
    native_tls::Identity::from_pkcs8(&chain_pem, &key_pem).map_err(|e| TlsError::Library {
        backend: BACKEND,
        context: "Identity::from_pkcs8",
        detail: e.to_string(),
    })
}

/// native-tls hands back only what lies under libssl's error: the I/O error, or the error
/// stack, or nothing (an EOF or a close_notify mid-handshake).
fn handshake_kind(e: &native_tls::Error) -> HandshakeErrorKind {
    let Some(source) = std::error::Error::source(e) else {
        return HandshakeErrorKind::PeerClosed;
    };
    if let Some(io) = source.downcast_ref::<io::Error>() {
        HandshakeErrorKind::of_io(io)
    } else if let Some(stack) = source.downcast_ref::<openssl::error::ErrorStack>() {
        super::openssl::kind_of_stack(stack)
    } else {
        HandshakeErrorKind::Other
    }
}
