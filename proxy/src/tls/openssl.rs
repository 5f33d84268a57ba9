//! The OpenSSL backend: libssl through the `openssl` and `tokio-openssl` crates; by default
//! an OpenSSL 3.x built with the workspace (`vendored`), the host's with OPENSSL_NO_VENDOR=1.
//!
//! Why this and not only native-tls (the original experiment's choice, kept as its own
//! backend in [`native_tls`](super::native_tls)): native-tls's server runs TLS 1.2 only,
//! cannot pick cipher suites or key-exchange groups, serve per-SNI certificates, ask for
//! client certificates or turn session resumption off, and reports nothing of what it
//! negotiated but ALPN. Each of those is an option this project must honour or refuse, and
//! refusing them all for OpenSSL would make the backend comparison meaningless. The
//! `openssl` crate drives the same library with those knobs exposed.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::c_int;
use std::pin::Pin;

use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::ssl::SslVerifyMode;
use openssl::ssl::{
    AlpnError, ErrorCode, NameType, SniError, Ssl, SslContext, SslContextBuilder, SslMethod,
    SslMode, SslOptions, SslRef, SslSessionCacheMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};
use sysio::tls_names::{canonical_group, canonical_suite};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    load_client_ca, subject_cn, Backend, ClientCertInfo, HandshakeErrorKind, HandshakeInfo,
    LoadedCert, LoadedCerts, TlsError, TlsSettings, TlsVersion,
};

const BACKEND: Backend = Backend::Openssl;

/// The OpenSSL this binary runs and where it came from, as `proxy --version` prints it:
/// "OpenSSL 3.6.3 ... (built with the workspace)" or "... (the host's libssl)". The version
/// is the library's own answer at run time, so a host libssl upgraded after the build shows.
pub fn linked_library() -> String {
    format!(
        "{} ({})",
        openssl::version::version(),
        env!("TLS_OFF_OPENSSL_SOURCE")
    )
}

/// An OpenSSL acceptor: a reference-counted `SSL_CTX`, so clones are cheap.
#[derive(Clone)]
pub struct Acceptor {
    ctx: SslContext,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("openssl::Acceptor")
    }
}

impl Acceptor {
    pub async fn accept<IO>(&self, io: IO) -> Result<tokio_openssl::SslStream<IO>, TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let failed = |e: openssl::error::ErrorStack| TlsError::Handshake {
            kind: HandshakeErrorKind::Other,
            detail: e.to_string(),
        };
        let ssl = Ssl::new(&self.ctx).map_err(failed)?;
        let mut stream = tokio_openssl::SslStream::new(ssl, io).map_err(failed)?;
        match Pin::new(&mut stream).accept().await {
            Ok(()) => Ok(stream),
            Err(e) => Err(handshake_error(&e, stream.ssl())),
        }
    }

    /// The underlying context, for in-memory benchmarks that drive OpenSSL directly.
    pub fn context(&self) -> &SslContext {
        &self.ctx
    }
}

/// Builds the default context and, for SNI, one context per extra certificate.
pub fn build(settings: &TlsSettings, certs: &LoadedCerts) -> Result<Acceptor, TlsError> {
    let mut by_name = HashMap::new();
    for (name, cert) in &certs.by_sni {
        by_name.insert(name.clone(), context_builder(settings, cert)?.build());
    }
    let strict = certs.strict_sni;
    let mut builder = context_builder(settings, &certs.default)?;
    if strict || !by_name.is_empty() {
        builder.set_servername_callback(move |ssl, _alert| {
            let name = ssl
                .servername(NameType::HOST_NAME)
                .map(str::to_ascii_lowercase);
            match name.as_deref().and_then(|n| by_name.get(n)) {
                Some(ctx) => ssl.set_ssl_context(ctx).map_err(|_| SniError::ALERT_FATAL),
                None if strict => Err(SniError::ALERT_FATAL),
                None => Ok(()),
            }
        });
    }
    Ok(Acceptor {
        ctx: builder.build(),
    })
}

/// The negotiated parameters of an established OpenSSL stream.
pub fn info<IO>(stream: &tokio_openssl::SslStream<IO>) -> HandshakeInfo {
    let ssl = stream.ssl();
    HandshakeInfo {
        version: Some(ssl.version_str().to_string()),
        cipher_suite: ssl
            .current_cipher()
            .map(|c| canonical_suite(c.standard_name().unwrap_or(c.name()))),
        kx_group: negotiated_group(ssl),
        alpn: ssl
            .selected_alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
        sni: ssl.servername(NameType::HOST_NAME).map(str::to_owned),
        resumed: Some(ssl.session_reused()),
        client_cert: ssl.peer_certificate().map(|cert| ClientCertInfo {
            verified: ssl.verify_result() == X509VerifyResult::OK,
            subject_cn: cert.to_der().ok().and_then(|der| subject_cn(&der)),
        }),
    }
}

/// A failed handshake, sorted by OpenSSL's reason codes, with client-certificate refusals
/// saying why: the error stack only says "certificate verify failed", the verify result
/// says what failed (unknown issuer, expired, ...).
fn handshake_error(e: &openssl::ssl::Error, ssl: &SslRef) -> TlsError {
    let verify = ssl.verify_result();
    if verify != X509VerifyResult::OK {
        return TlsError::ClientCertificate(format!("{e}: {}", verify.error_string()));
    }
    let reasons = e.ssl_error().map(ssl_reasons).unwrap_or_default();
    if reasons.contains(&reason::PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        return TlsError::ClientCertificate(e.to_string());
    }
    let kind = if let Some(io) = e.io_error() {
        HandshakeErrorKind::of_io(io)
    } else if e.code() == ErrorCode::SSL {
        kind_of_reasons(&reasons)
    } else if e.code() == ErrorCode::SYSCALL || e.code() == ErrorCode::ZERO_RETURN {
        // SYSCALL without an I/O error is an EOF (OpenSSL 1.1); ZERO_RETURN a close_notify.
        HandshakeErrorKind::PeerClosed
    } else {
        HandshakeErrorKind::Other
    };
    TlsError::Handshake {
        kind,
        detail: e.to_string(),
    }
}

/// The reasons libssl gave, innermost first (other libraries' entries say less).
fn ssl_reasons(stack: &ErrorStack) -> Vec<c_int> {
    stack
        .errors()
        .iter()
        .filter(|err| err.library_code() == reason::ERR_LIB_SSL)
        .map(openssl::error::Error::reason_code)
        .collect()
}

/// The kind of a failure libssl reported with these reasons: the first one sorted in
/// [`reason::kind`], else a protocol error.
fn kind_of_reasons(reasons: &[c_int]) -> HandshakeErrorKind {
    reasons
        .iter()
        .find_map(|&r| reason::kind(r))
        .unwrap_or(HandshakeErrorKind::Protocol)
}

/// The kind of a handshake failure that reached us only as libssl's error stack (the
/// native-tls backend sees no more than that).
pub(super) fn kind_of_stack(stack: &ErrorStack) -> HandshakeErrorKind {
    kind_of_reasons(&ssl_reasons(stack))
}

fn context_builder(
    settings: &TlsSettings,
    cert: &LoadedCert,
) -> Result<SslContextBuilder, TlsError> {
    let mut b = SslContext::builder(SslMethod::tls_server()).map_err(lib("SSL_CTX_new"))?;
    // Same defaults as rustls offers: ECDHE key exchange and AEAD suites only.
    b.set_options(SslOptions::NO_TLSV1 | SslOptions::NO_TLSV1_1 | SslOptions::NO_RENEGOTIATION);
    // The server's suite order wins, as with rustls (`ignore_client_order`), except that a
    // client that prefers ChaCha20 (no AES hardware) gets it.
    b.set_options(SslOptions::CIPHER_SERVER_PREFERENCE | SslOptions::PRIORITIZE_CHACHA);
    // A client that closes TCP without close_notify (wrk, most HTTP clients) ends its
    // direction like a clean EOF, as with rustls, instead of an error.
    b.set_options(SslOptions::IGNORE_UNEXPECTED_EOF);
    // Free per-connection read/write buffers while idle, as nginx and HAProxy do: idle TLS
    // connections then cost a few KiB instead of ~34 KiB.
    b.set_mode(SslMode::RELEASE_BUFFERS);
    // AsyncWrite semantics: a write that returned Pending may be retried with a buffer that
    // has moved or grown (hyper appends to its write buffer meanwhile), and a write may
    // finish after some records. Without these OpenSSL fails such a retry with "bad write
    // retry" and the connection dies mid-response. The `openssl` crate's SslAcceptor sets
    // the same modes.
    b.set_mode(SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE);
    let min = match settings.min_version {
        TlsVersion::Tls12 => SslVersion::TLS1_2,
        TlsVersion::Tls13 => SslVersion::TLS1_3,
    };
    b.set_min_proto_version(Some(min))
        .map_err(lib("min_version"))?;
    set_suites(&mut b, settings)?;
    let groups = if settings.kx_groups.is_empty() {
        DEFAULT_GROUPS.to_string()
    } else {
        settings
            .kx_groups
            .iter()
            .map(|g| openssl_group(g))
            .collect::<Result<Vec<_>, _>>()?
            .join(":")
    };
    b.set_groups_list(&groups)
        .map_err(|e| TlsError::Unsupported {
            backend: BACKEND,
            option: "kx_groups",
            detail: format!("{groups}: {e}"),
        })?;

    if !settings.alpn.is_empty() {
        let server: Vec<Vec<u8>> = settings
            .alpn
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        b.set_alpn_select_callback(move |_ssl, client| {
            select_alpn(&server, client).ok_or(AlpnError::ALERT_FATAL)
        });
    }
    if settings.session_resumption {
        // OpenSSL's server cache (TLS 1.2 session ids) plus TLS 1.3 tickets. Ticket keys
        // are random per context, so they rotate whenever the acceptor is rebuilt.
        b.set_session_cache_mode(SslSessionCacheMode::SERVER);
        b.set_session_id_context(SESSION_ID_CONTEXT)
            .map_err(lib("session id context"))?;
    } else {
        b.set_session_cache_mode(SslSessionCacheMode::OFF);
        b.set_options(SslOptions::NO_TICKET);
        b.set_num_tickets(0).map_err(lib("num_tickets"))?;
    }

    if let Some(auth) = &settings.client_auth {
        let bad_ca = |e: openssl::error::ErrorStack| TlsError::BadPem {
            path: auth.ca.clone(),
            detail: e.to_string(),
        };
        let mut store = X509StoreBuilder::new().map_err(lib("X509_STORE_new"))?;
        let mut names = openssl::stack::Stack::new().map_err(lib("client CA list"))?;
        for ca in load_client_ca(auth)? {
            let ca = X509::from_der(&ca).map_err(bad_ca)?;
            names
                .push(ca.subject_name().to_owned().map_err(bad_ca)?)
                .map_err(bad_ca)?;
            store.add_cert(ca).map_err(bad_ca)?;
        }
        b.set_verify_cert_store(store.build())
            .map_err(lib("client CA store"))?;
        // Tell clients which CAs we accept, as rustls does.
        b.set_client_ca_list(names);
        let mode = if auth.required {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        } else {
            SslVerifyMode::PEER
        };
        b.set_verify(mode);
    }

    let mut chain = cert.chain.iter();
    let leaf = chain.next().ok_or_else(|| TlsError::NoPem {
        what: "CERTIFICATE",
        path: cert.paths.cert.clone(),
    })?;
    let bad_cert = |e: openssl::error::ErrorStack| TlsError::BadPem {
        path: cert.paths.cert.clone(),
        detail: e.to_string(),
    };
    let leaf = X509::from_der(leaf).map_err(bad_cert)?;
    b.set_certificate(&leaf).map_err(bad_cert)?;
    for extra in chain {
        b.add_extra_chain_cert(X509::from_der(extra).map_err(bad_cert)?)
            .map_err(bad_cert)?;
    }
    let key = PKey::private_key_from_pem(&cert.key_pem).map_err(|e| TlsError::UnsupportedKey {
        path: cert.paths.key.clone(),
        backend: BACKEND,
        detail: e.to_string(),
    })?;
    let mismatch = || TlsError::KeyMismatch {
        cert: cert.paths.cert.clone(),
        key: cert.paths.key.clone(),
    };
    b.set_private_key(&key).map_err(|_| mismatch())?;
    b.check_private_key().map_err(|_| mismatch())?;
    Ok(b)
}

/// Splits IANA suite names into OpenSSL's TLS 1.3 list and its TLS 1.2 cipher string.
fn set_suites(b: &mut SslContextBuilder, settings: &TlsSettings) -> Result<(), TlsError> {
    let (mut tls13, mut tls12) = (Vec::new(), Vec::new());
    if settings.cipher_suites.is_empty() {
        tls13.extend(TLS13_SUITES.iter().copied());
        tls12.extend(TLS12_SUITES.iter().map(|(_, o)| *o));
    } else {
        for wanted in &settings.cipher_suites {
            let wanted = canonical_suite(wanted);
            if let Some(s) = TLS13_SUITES.iter().find(|s| **s == wanted) {
                tls13.push(*s);
            } else if let Some((_, o)) = TLS12_SUITES.iter().find(|(iana, _)| *iana == wanted) {
                tls12.push(*o);
            } else {
                return Err(TlsError::Unsupported {
                    backend: BACKEND,
                    option: "cipher_suites",
                    detail: format!(
                        "unknown cipher suite {wanted} (available: {}, {})",
                        TLS13_SUITES.join(", "),
                        TLS12_SUITES
                            .iter()
                            .map(|(i, _)| *i)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
    }
    b.set_ciphersuites(&tls13.join(":"))
        .map_err(lib("TLS 1.3 cipher suites"))?;
    if tls12.is_empty() {
        // Only TLS 1.3 suites asked for: TLS 1.2 cannot be negotiated, as with rustls.
        b.set_min_proto_version(Some(SslVersion::TLS1_3))
            .map_err(lib("min_version"))?;
    } else {
        b.set_cipher_list(&tls12.join(":"))
            .map_err(lib("TLS 1.2 cipher list"))?;
    }
    if tls13.is_empty() {
        if settings.min_version == TlsVersion::Tls13 {
            return Err(TlsError::Unsupported {
                backend: BACKEND,
                option: "cipher_suites",
                detail: "min_version 1.3 but no TLS 1.3 suite listed".into(),
            });
        }
        b.set_max_proto_version(Some(SslVersion::TLS1_2))
            .map_err(lib("max_version"))?;
    }
    Ok(())
}

fn openssl_group(name: &str) -> Result<&'static str, TlsError> {
    match canonical_group(name).as_str() {
        "X25519" => Ok("X25519"),
        "secp256r1" => Ok("P-256"),
        "secp384r1" => Ok("P-384"),
        "secp521r1" => Ok("P-521"),
        "X448" => Ok("X448"),
        HYBRID_GROUP if has_hybrid_group() => Ok(HYBRID_GROUP),
        other => Err(TlsError::Unsupported {
            backend: BACKEND,
            option: "kx_groups",
            detail: format!(
                "{other} is not available in this OpenSSL ({}); use X25519, secp256r1, secp384r1, secp521r1{} or X448",
                openssl::version::version(),
                if has_hybrid_group() { ", X25519MLKEM768" } else { "" },
            ),
        }),
    }
}

/// Whether the linked OpenSSL has the post-quantum hybrid group: 3.5 and later (the default
/// build's), not the 3.0 of older hosts (OPENSSL_NO_VENDOR=1).
pub fn has_hybrid_group() -> bool {
    openssl::version::number() >= OPENSSL_3_5
}

/// Server-preference ALPN: the first of our protocols the client also offers. Returns the
/// slice inside the client's list, which is what OpenSSL's callback must hand back.
fn select_alpn<'a>(server: &[Vec<u8>], mut client: &'a [u8]) -> Option<&'a [u8]> {
    let mut offered = Vec::new();
    while let Some((&len, rest)) = client.split_first() {
        let len = usize::from(len);
        if rest.len() < len {
            return None; // malformed list: refuse rather than guess
        }
        offered.push(&rest[..len]);
        client = &rest[len..];
    }
    server.iter().find_map(|ours| {
        offered
            .iter()
            .find(|theirs| **theirs == ours.as_slice())
            .copied()
    })
}

/// `SSL_get_negotiated_group`, which the `openssl` crate does not wrap. It is a macro over
/// `SSL_ctrl` in OpenSSL 3, hence the raw control number.
#[allow(unsafe_code)] // reason: one read-only FFI query on a live SSL object we borrow
fn negotiated_group(ssl: &SslRef) -> Option<String> {
    use foreign_types::ForeignTypeRef;
    use std::os::raw::c_int;
    const SSL_CTRL_GET_NEGOTIATED_GROUP: c_int = 134;
    const TLSEXT_NID_UNKNOWN: i64 = 0x100_0000;
    // SAFETY: `ssl` is a valid, borrowed SSL*; this control reads one integer and takes no
    // pointer argument. OBJ_nid2sn returns a static string or NULL.
    let nid = unsafe {
        openssl_sys::SSL_ctrl(
            ssl.as_ptr(),
            SSL_CTRL_GET_NEGOTIATED_GROUP,
            0,
            std::ptr::null_mut(),
        )
    };
    #[allow(clippy::useless_conversion)] // reason: c_long is i32 on some targets
    let nid = i64::from(nid);
    if nid <= 0 {
        return None;
    }
    if nid & TLSEXT_NID_UNKNOWN != 0 {
        // Groups from providers (the hybrid) have no NID: OpenSSL hands back the codepoint.
        return Some(match nid & 0xffff {
            HYBRID_CODEPOINT => HYBRID_GROUP.to_owned(),
            other => format!("0x{other:04x}"),
        });
    }
    let nid = c_int::try_from(nid).ok()?;
    // SAFETY: see above.
    let name = unsafe { openssl_sys::OBJ_nid2sn(nid) };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null pointer to a NUL-terminated static string owned by OpenSSL.
    let name = unsafe { CStr::from_ptr(name) };
    Some(canonical_group(&name.to_string_lossy()))
}

fn lib(context: &'static str) -> impl Fn(openssl::error::ErrorStack) -> TlsError {
    move |e| TlsError::Library {
        backend: BACKEND,
        context,
        detail: e.to_string(),
    }
}

/// libssl's library code and the `SSL_R_*` reason codes a handshake failure is sorted by
/// (err.h, sslerr.h; the same numbers in 1.1 and 3.x), which openssl-sys does not export.
mod reason {
    use std::os::raw::c_int;

    use super::HandshakeErrorKind;

    pub const ERR_LIB_SSL: c_int = 20;
    pub const PEER_DID_NOT_RETURN_A_CERTIFICATE: c_int = 199;

    const NO_SUITABLE_KEY_SHARE: c_int = 101;
    const NO_SUITABLE_SIGNATURE_ALGORITHM: c_int = 118;
    const HTTPS_PROXY_REQUEST: c_int = 155;
    const HTTP_REQUEST: c_int = 156;
    const NO_CIPHERS_AVAILABLE: c_int = 181;
    const NO_PROTOCOLS_AVAILABLE: c_int = 191;
    const NO_SHARED_CIPHER: c_int = 193;
    const PACKET_LENGTH_TOO_LONG: c_int = 198;
    const UNKNOWN_PROTOCOL: c_int = 252;
    const UNSUPPORTED_PROTOCOL: c_int = 258;
    const WRONG_VERSION_NUMBER: c_int = 267;
    /// OpenSSL 3 only; 1.1 reports the same EOF as `SSL_ERROR_SYSCALL`.
    const UNEXPECTED_EOF_WHILE_READING: c_int = 294;
    const NO_SHARED_SIGNATURE_ALGORITHMS: c_int = 376;
    const VERSION_TOO_LOW: c_int = 396;
    const NO_SHARED_GROUPS: c_int = 410;
    /// A fatal alert received from the peer is reported as this plus the alert's number.
    const ALERT_OFFSET: c_int = 1000;
    /// bad_certificate, unsupported_certificate, certificate_revoked, certificate_expired,
    /// certificate_unknown (RFC 8446 6.2), and unknown_ca.
    const CERTIFICATE_ALERTS: [c_int; 6] = [42, 43, 44, 45, 46, 48];

    /// The kind of failure a reason code means, if it is one sorted here.
    pub fn kind(reason: c_int) -> Option<HandshakeErrorKind> {
        Some(match reason {
            NO_SHARED_CIPHER
            | NO_CIPHERS_AVAILABLE
            | NO_SHARED_GROUPS
            | NO_SUITABLE_KEY_SHARE
            | NO_SHARED_SIGNATURE_ALGORITHMS
            | NO_SUITABLE_SIGNATURE_ALGORITHM
            | UNSUPPORTED_PROTOCOL
            | VERSION_TOO_LOW
            | NO_PROTOCOLS_AVAILABLE => HandshakeErrorKind::NoSharedParameters,
            HTTP_REQUEST
            | HTTPS_PROXY_REQUEST
            | WRONG_VERSION_NUMBER
            | UNKNOWN_PROTOCOL
            | PACKET_LENGTH_TOO_LONG => HandshakeErrorKind::NotTls,
            UNEXPECTED_EOF_WHILE_READING => HandshakeErrorKind::PeerClosed,
            r if CERTIFICATE_ALERTS.contains(&(r - ALERT_OFFSET)) => {
                HandshakeErrorKind::BadCertificate
            }
            _ => return None,
        })
    }
}

/// The same suites rustls offers, in IANA and OpenSSL spelling, in rustls's order of
/// preference (the server's order wins, see `CIPHER_SERVER_PREFERENCE`).
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
];
const TLS12_SUITES: [(&str, &str); 6] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ),
];
/// rustls's classical defaults, in OpenSSL spelling.
const DEFAULT_GROUPS: &str = "X25519:P-256:P-384";
/// The post-quantum hybrid group, by its name in OpenSSL and its TLS codepoint (RFC draft
/// ietf-tls-ecdhe-mlkem).
const HYBRID_GROUP: &str = "X25519MLKEM768";
const HYBRID_CODEPOINT: i64 = 0x11ec;
/// `OPENSSL_VERSION_NUMBER` of OpenSSL 3.5.0, the first release with ML-KEM.
const OPENSSL_3_5: i64 = 0x3050_0000;
/// Sessions cached under one context are only resumed by the same service.
const SESSION_ID_CONTEXT: &[u8] = b"tls-off";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_prefers_server_order_and_rejects_malformed_lists() {
        let server = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(
            select_alpn(&server, b"\x08http/1.1\x02h2"),
            Some(&b"h2"[..])
        );
        assert_eq!(
            select_alpn(&server, b"\x08http/1.1"),
            Some(&b"http/1.1"[..])
        );
        assert_eq!(select_alpn(&server, b"\x03foo"), None);
        assert_eq!(select_alpn(&server, b"\x09http/1.1"), None);
    }

    #[test]
    fn unknown_group_is_refused_with_its_name() {
        let err = openssl_group("brainpoolP256r1").unwrap_err().to_string();
        assert!(err.contains("brainpoolP256r1"), "{err}");
        assert!(err.contains("openssl"), "{err}");
    }
}
