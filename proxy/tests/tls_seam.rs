//! The TLS seam, in process: every backend built from certificates generated here, driven
//! by a rustls client over an in-memory duplex, and asked what it negotiated. Whatever the
//! backend, the same settings must give the same handshake and the same report.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::{
    Acceptor, Backend, CertPaths, CertSet, ClientAuth, ClientCertInfo, HandshakeErrorKind,
    HandshakeInfo, RustlsIo, TlsError, TlsSettings, TlsStream, TlsVersion,
};
use rstest::rstest;
use rstest_reuse::{self, apply, template};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use common::{ClientIdentity, TestCa};

/// Every TLS backend: a test applying this runs once for each.
#[template]
#[rstest]
fn every_backend(
    #[values(
        Backend::RustlsAwsLc,
        Backend::RustlsRing,
        Backend::RustlsMixed,
        Backend::Openssl,
        Backend::NativeTls
    )]
    backend: Backend,
) {
}

/// The backends that honour every option (TLS 1.3, SNI certificates, mutual TLS, ...):
/// native-tls refuses those, which `native_tls_refuses_what_it_cannot_do` asserts.
#[template]
#[rstest]
fn backends_with_every_option(
    #[values(
        Backend::RustlsAwsLc,
        Backend::RustlsRing,
        Backend::RustlsMixed,
        Backend::Openssl
    )]
    backend: Backend,
) {
}

// ---- building: errors name the file or the option ------------------------------------

#[apply(every_backend)]
fn key_not_matching_its_certificate_names_both_files(
    backend: Backend,
    #[values(KeyKind::EcdsaP256, KeyKind::Rsa2048, KeyKind::Ed25519)] kind: KeyKind,
) {
    let dir = tempfile::tempdir().unwrap();
    let a = Cert::new(&dir, "a", kind, &["localhost"]);
    let b = Cert::new(&dir, "b", kind, &["localhost"]);
    let err = build(backend, CertSet::single(&a.paths.cert, &b.paths.key)).unwrap_err();
    assert!(err.contains("a-cert.pem"), "{backend}: {err}");
    assert!(err.contains("b-key.pem"), "{backend}: {err}");
    assert!(err.contains("does not match"), "{backend}: {err}");
}

#[apply(every_backend)]
fn missing_or_empty_files_are_named(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let good = Cert::new(&dir, "good", KeyKind::EcdsaP256, &["localhost"]);
    let missing = dir.path().join("missing-cert.pem");
    let err = build(backend, CertSet::single(&missing, &good.paths.key)).unwrap_err();
    assert!(err.contains("missing-cert.pem"), "{backend}: {err}");

    let missing_key = dir.path().join("missing-key.pem");
    let err = build(backend, CertSet::single(&good.paths.cert, &missing_key)).unwrap_err();
    assert!(err.contains("missing-key.pem"), "{backend}: {err}");

    let no_pem = dir.path().join("not-pem.txt");
    std::fs::write(&no_pem, "this is not a certificate\n").unwrap();
    let err = build(backend, CertSet::single(&no_pem, &good.paths.key)).unwrap_err();
    assert!(err.contains("not-pem.txt"), "{backend}: {err}");
    let err = build(backend, CertSet::single(&good.paths.cert, &no_pem)).unwrap_err();
    assert!(err.contains("not-pem.txt"), "{backend}: {err}");
    assert!(err.contains("PRIVATE KEY"), "{backend}: {err}");

    // A certificate where the key should be: the key file is the one named.
    let err = build(backend, CertSet::single(&good.paths.cert, &good.paths.cert)).unwrap_err();
    assert!(err.contains("good-cert.pem"), "{backend}: {err}");

    // An SNI entry's files are checked just like the default's.
    let mut set = CertSet::single(&good.paths.cert, &good.paths.key);
    set.by_sni.push((
        "other.test".into(),
        CertPaths {
            cert: missing.clone(),
            key: good.paths.key.clone(),
        },
    ));
    let err = build(backend, set).unwrap_err();
    assert!(err.contains("missing-cert.pem"), "{backend}: {err}");
}

#[apply(every_backend)]
fn unknown_suite_or_group_is_refused_by_name(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        backend,
        cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into(), "TLS_NO_SUCH_SUITE".into()],
        ..TlsSettings::default()
    };
    let err = Acceptor::build(&settings, &cert.set())
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS_NO_SUCH_SUITE"), "{backend}: {err}");
    assert!(err.contains("cipher_suites"), "{backend}: {err}");

    let settings = TlsSettings {
        backend,
        kx_groups: vec!["X25519".into(), "brainpoolP256r1".into()],
        ..TlsSettings::default()
    };
    let err = Acceptor::build(&settings, &cert.set())
        .unwrap_err()
        .to_string();
    assert!(err.contains("brainpoolP256r1"), "{backend}: {err}");
    assert!(err.contains("kx_groups"), "{backend}: {err}");
}

/// X25519MLKEM768: aws-lc-rs (rustls-aws-lc, rustls-mixed) and OpenSSL 3.5 or later (the
/// default build's) negotiate it; ring and OpenSSL 3.0 (a host libssl) do not have it and
/// must say so at build time rather than quietly fall back to a classical group.
#[apply(every_backend)]
#[tokio::test]
async fn x25519mlkem768_is_negotiated_or_refused_clearly(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        backend,
        kx_groups: vec!["X25519MLKEM768".into()],
        ..TlsSettings::default()
    };
    // rustls-mixed takes its key exchange from aws-lc-rs.
    let has_it = matches!(backend, Backend::RustlsAwsLc | Backend::RustlsMixed)
        || (backend == Backend::Openssl && proxy::tls::openssl::has_hybrid_group());
    match Acceptor::build(&settings, &cert.set()) {
        Ok(acceptor) => {
            assert!(has_it, "{backend} claims X25519MLKEM768");
            let mut provider = aws_lc_rs::default_provider();
            provider.kx_groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
            let client = client_config(provider, TLS13, &[&cert.der], &[]);
            let (server, _client) = connect(&acceptor, client, "localhost").await.unwrap();
            assert_eq!(server.info().kx_group.as_deref(), Some("X25519MLKEM768"));
        }
        Err(e) => {
            assert!(!has_it, "{backend}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("X25519MLKEM768"), "{backend}: {msg}");
            assert!(msg.contains(backend.name()), "{backend}: {msg}");
        }
    }
}

/// Ed25519 keys written as PKCS#8 v2 (RFC 5958, public key included; what aws-lc and ring
/// write, rcgen's default here): the rustls backends read them. OpenSSL 3.0 cannot (CI's
/// host-libssl run), and so neither backend on it can; then the error must name the key
/// file and the backend.
#[apply(every_backend)]
#[tokio::test]
async fn ed25519_pkcs8_v2_key_works_or_is_refused_clearly(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let paths = CertPaths {
        cert: dir.path().join("v2-cert.pem"),
        key: dir.path().join("v2-key.pem"),
    };
    std::fs::write(&paths.cert, cert.pem()).unwrap();
    std::fs::write(&paths.key, key.serialize_pem()).unwrap();
    let set = CertSet::single(&paths.cert, &paths.key);
    match build(backend, set) {
        Ok(acceptor) => {
            let der = read_cert(&paths.cert);
            let client =
                client_config(aws_lc_rs::default_provider(), newest(backend), &[&der], &[]);
            let (server, client) = connect(&acceptor, client, "localhost").await.unwrap();
            ping_pong(server, client).await;
        }
        Err(e) => {
            let on_openssl = matches!(backend, Backend::Openssl | Backend::NativeTls);
            assert!(on_openssl, "{backend}: {e}");
            assert!(e.contains("v2-key.pem"), "{e}");
            assert!(e.contains(backend.name()), "{e}");
        }
    }
}

// ---- what the handshake reports ------------------------------------------------------

#[apply(backends_with_every_option)]
#[tokio::test]
async fn tls13_parameters_are_reported(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        backend,
        alpn: vec!["http/1.1".into()],
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).unwrap();
    let client = client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &["http/1.1"]);
    let (server, client) = connect(&acceptor, client, "localhost").await.unwrap();
    assert_eq!(
        server.info(),
        HandshakeInfo {
            version: Some("TLSv1.3".into()),
            cipher_suite: Some("TLS_AES_128_GCM_SHA256".into()),
            kx_group: Some("X25519".into()),
            alpn: Some("http/1.1".into()),
            sni: Some("localhost".into()),
            resumed: Some(false),
            client_cert: None,
        },
        "{backend}"
    );
    assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    ping_pong(server, client).await;

    // ALPN only where both sides configure it.
    let no_alpn = client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &[]);
    let (server, _) = connect(&acceptor, no_alpn, "localhost").await.unwrap();
    assert_eq!(
        server.info().alpn,
        None,
        "{backend}: client offered no ALPN"
    );
    let plain = Acceptor::build(
        &TlsSettings {
            backend,
            ..TlsSettings::default()
        },
        &cert.set(),
    )
    .unwrap();
    let with_alpn = client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &["http/1.1"]);
    let (server, _) = connect(&plain, with_alpn, "localhost").await.unwrap();
    assert_eq!(
        server.info().alpn,
        None,
        "{backend}: server configured no ALPN"
    );
}

/// The server's suite order wins over the client's (testssl.sh rates the opposite HIGH):
/// a client that prefers AES-128 but also offers AES-256 gets AES-256, which every backend
/// here ranks first.
#[apply(backends_with_every_option)]
#[tokio::test]
async fn the_server_suite_order_wins(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let acceptor = build_acceptor(backend, &cert.set());
    let mut provider = tls13_aes128_x25519();
    provider.cipher_suites = vec![
        aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ];
    let client = client_config(provider, TLS13, &[&cert.der], &[]);
    let (server, _) = connect(&acceptor, client, "localhost").await.unwrap();
    assert_eq!(
        server.info().cipher_suite.as_deref(),
        Some("TLS_AES_256_GCM_SHA384"),
        "{backend}"
    );
}

#[apply(every_backend)]
#[tokio::test]
async fn tls12_parameters_are_reported(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let acceptor = build_acceptor(backend, &cert.set());
    let client = client_config(tls12_ecdsa_aes128_p256(), TLS12, &[&cert.der], &[]);
    let (server, client) = connect(&acceptor, client, "localhost").await.unwrap();
    // native-tls reports none of these: `None`, never a guess.
    let reported = |value: &str| backend.reports_parameters().then(|| value.to_owned());
    assert_eq!(
        server.info(),
        HandshakeInfo {
            version: reported("TLSv1.2"),
            cipher_suite: reported("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
            kx_group: reported("secp256r1"),
            alpn: None,
            sni: reported("localhost"),
            resumed: backend.reports_parameters().then_some(false),
            client_cert: None,
        },
        "{backend}"
    );
    ping_pong(server, client).await;
}

#[apply(every_backend)]
#[tokio::test]
async fn every_key_type_handshakes(
    backend: Backend,
    #[values(KeyKind::EcdsaP256, KeyKind::Rsa2048, KeyKind::Ed25519)] kind: KeyKind,
) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", kind, &["localhost"]);
    let acceptor = build_acceptor(backend, &cert.set());
    let client = client_config(
        aws_lc_rs::default_provider(),
        newest(backend),
        &[&cert.der],
        &[],
    );
    let (server, client) = connect(&acceptor, client, "localhost")
        .await
        .unwrap_or_else(|e| panic!("{backend} with a {} certificate: {e}", kind.name()));
    let expected = backend
        .reports_parameters()
        .then(|| newest_name(backend).to_owned());
    assert_eq!(server.info().version, expected, "{backend}");
    assert_eq!(
        client.get_ref().1.peer_certificates().map(|c| c[0].clone()),
        Some(cert.der.clone())
    );
    ping_pong(server, client).await;
}

#[apply(every_backend)]
#[tokio::test]
async fn second_connection_resumes_only_when_enabled(
    backend: Backend,
    #[values(TlsVersion::Tls13, TlsVersion::Tls12)] version: TlsVersion,
    #[values(true, false)] session_resumption: bool,
) {
    if !backend.speaks(version) || (backend == Backend::NativeTls && !session_resumption) {
        return; // refused at build: native_tls_refuses_what_it_cannot_do
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        backend,
        session_resumption,
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).unwrap();
    let client = match version {
        TlsVersion::Tls13 => client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &[]),
        TlsVersion::Tls12 => client_config(tls12_ecdsa_aes128_p256(), TLS12, &[&cert.der], &[]),
    };
    // The server's own report where the backend gives one (native-tls does not).
    let reported = |resumed: bool| backend.reports_parameters().then_some(resumed);
    // One client config: its session cache carries the ticket or session id over.
    let (server, first) = connect(&acceptor, client.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(server.info().resumed, reported(false), "{backend}");
    let wire = match version {
        TlsVersion::Tls13 => rustls::ProtocolVersion::TLSv1_3,
        TlsVersion::Tls12 => rustls::ProtocolVersion::TLSv1_2,
    };
    assert_eq!(
        first.get_ref().1.protocol_version(),
        Some(wire),
        "{backend}"
    );
    // The exchange makes the client read (and store) any TLS 1.3 tickets sent after the
    // handshake.
    ping_pong(server, first).await;
    for i in 0..2 {
        let (server, again) = connect(&acceptor, client.clone(), "localhost")
            .await
            .unwrap();
        let what = format!(
            "{backend} {}, connection {}: resumption {}",
            version.name(),
            i + 2,
            if session_resumption { "on" } else { "off" }
        );
        assert_eq!(
            server.info().resumed,
            reported(session_resumption),
            "{what}"
        );
        // The client knows whatever the backend says: native-tls's resumption is seen here.
        let kind = again.get_ref().1.handshake_kind();
        let resumed = kind == Some(rustls::HandshakeKind::Resumed);
        assert_eq!(resumed, session_resumption, "{what}: client saw {kind:?}");
        ping_pong(server, again).await;
    }
}

// ---- SNI -----------------------------------------------------------------------------

#[apply(backends_with_every_option)]
#[tokio::test]
async fn sni_picks_the_certificate(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let default = Cert::new(&dir, "default", KeyKind::EcdsaP256, &["localhost"]);
    let other = Cert::new(&dir, "other", KeyKind::EcdsaP256, &["other.test"]);
    let mut set = default.set();
    set.by_sni.push(("other.test".into(), other.paths.clone()));
    let acceptor = build_acceptor(backend, &set);
    let roots = [&default.der, &other.der];

    for (sni, want) in [
        ("other.test", &other),
        ("Other.TEST", &other),
        ("localhost", &default),
    ] {
        let client = client_config(tls13_aes128_x25519(), TLS13, &roots, &[]);
        let (server, client) = connect(&acceptor, client, sni)
            .await
            .unwrap_or_else(|e| panic!("{backend}, SNI {sni}: {e}"));
        assert_eq!(
            client.get_ref().1.peer_certificates().map(|c| c[0].clone()),
            Some(want.der.clone()),
            "{backend}: SNI {sni} got the wrong certificate"
        );
        assert_eq!(
            server.info().sni.map(|s| s.to_ascii_lowercase()),
            Some(sni.to_ascii_lowercase())
        );
        ping_pong(server, client).await;
    }

    // No SNI at all (connecting by IP address): the default certificate.
    let by_ip = Cert::new(&dir, "ip", KeyKind::EcdsaP256, &["127.0.0.1"]);
    let mut set = by_ip.set();
    set.by_sni.push(("other.test".into(), other.paths.clone()));
    let acceptor = build_acceptor(backend, &set);
    let client = client_config(tls13_aes128_x25519(), TLS13, &[&by_ip.der], &[]);
    let (server, client) = connect(&acceptor, client, "127.0.0.1").await.unwrap();
    assert_eq!(server.info().sni, None);
    ping_pong(server, client).await;
}

#[apply(backends_with_every_option)]
#[tokio::test]
async fn strict_sni_refuses_unknown_names(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // The default certificate's own DNS names are served; any other name is refused by
    // the server before a certificate is sent (so the failure is the server's, not the
    // client's verification).
    let default = Cert::new(
        &dir,
        "default",
        KeyKind::EcdsaP256,
        &["localhost", "127.0.0.1"],
    );
    let other = Cert::new(&dir, "other", KeyKind::EcdsaP256, &["other.test"]);
    let mut set = default.set();
    set.by_sni.push(("other.test".into(), other.paths.clone()));
    set.strict_sni = true;
    let acceptor = build_acceptor(backend, &set);
    let roots = [&default.der, &other.der];

    for sni in ["other.test", "localhost"] {
        let client = client_config(tls13_aes128_x25519(), TLS13, &roots, &[]);
        let (server, client) = connect(&acceptor, client, sni).await.unwrap();
        ping_pong(server, client).await;
    }

    // An IP address is never sent as SNI, so it counts as "no SNI": refused too.
    for sni in ["unknown.test", "127.0.0.1"] {
        let client = client_config(tls13_aes128_x25519(), TLS13, &roots, &[]);
        match connect(&acceptor, client, sni).await {
            Ok(_) => panic!("{backend}: strict SNI accepted {sni}"),
            Err(Failure::Server(_)) => {}
            Err(other) => panic!("{backend}: {sni}: expected the server to refuse: {other}"),
        }
    }
}

// ---- mutual TLS ----------------------------------------------------------------------

#[apply(backends_with_every_option)]
#[tokio::test]
async fn required_client_auth_accepts_only_certificates_from_the_ca(
    backend: Backend,
    #[values(TlsVersion::Tls13, TlsVersion::Tls12)] version: TlsVersion,
) {
    let dir = tempfile::tempdir().unwrap();
    let server_cert = Cert::new(&dir, "server", KeyKind::EcdsaP256, &["localhost"]);
    let ca = TestCa::new(dir.path(), "ca");
    let acceptor = mtls_acceptor(backend, &server_cert.set(), &ca, true);

    let good = mtls_client(version, &server_cert, Some(ca.issue("client-1")));
    let (server, client) = connect(&acceptor, good.clone(), "localhost")
        .await
        .unwrap_or_else(|e| panic!("{backend} {}: good client cert: {e}", version.name()));
    assert_eq!(
        server.info().client_cert,
        Some(ClientCertInfo {
            verified: true,
            subject_cn: Some("client-1".into()),
        }),
        "{backend} {}",
        version.name()
    );
    ping_pong(server, client).await;
    // A resumed session still knows its client: logs and PROXY TLVs must not lose the CN.
    let (server, client) = connect(&acceptor, good, "localhost").await.unwrap();
    let info = server.info();
    assert_eq!(
        info.resumed,
        Some(true),
        "{backend} {}: not resumed",
        version.name()
    );
    assert_eq!(
        info.client_cert,
        Some(ClientCertInfo {
            verified: true,
            subject_cn: Some("client-1".into()),
        }),
        "{backend} {}: the resumed session lost its client certificate",
        version.name()
    );
    ping_pong(server, client).await;

    let none = mtls_client(version, &server_cert, None);
    let _ = expect_refused(&acceptor, none, backend, version, "no client certificate").await;

    let stranger = TestCa::new(dir.path(), "other-ca");
    let foreign = mtls_client(version, &server_cert, Some(stranger.issue("client-2")));
    let why = expect_refused(
        &acceptor,
        foreign,
        backend,
        version,
        "another CA's certificate",
    )
    .await;
    // The log line must say why: the issuer is unknown, not just "verify failed".
    assert!(
        why.to_ascii_lowercase().contains("issuer"),
        "{backend} {}: {why}",
        version.name()
    );
}

#[apply(backends_with_every_option)]
#[tokio::test]
async fn optional_client_auth_accepts_none_but_verifies_what_is_sent(
    backend: Backend,
    #[values(TlsVersion::Tls13, TlsVersion::Tls12)] version: TlsVersion,
) {
    let dir = tempfile::tempdir().unwrap();
    let server_cert = Cert::new(&dir, "server", KeyKind::EcdsaP256, &["localhost"]);
    let ca = TestCa::new(dir.path(), "ca");
    let acceptor = mtls_acceptor(backend, &server_cert.set(), &ca, false);

    let none = mtls_client(version, &server_cert, None);
    let (server, client) = connect(&acceptor, none, "localhost")
        .await
        .unwrap_or_else(|e| panic!("{backend} {}: no client cert: {e}", version.name()));
    assert_eq!(server.info().client_cert, None, "{backend}");
    ping_pong(server, client).await;

    let good = mtls_client(version, &server_cert, Some(ca.issue("client-1")));
    let (server, client) = connect(&acceptor, good, "localhost")
        .await
        .unwrap_or_else(|e| panic!("{backend} {}: good client cert: {e}", version.name()));
    assert_eq!(
        server.info().client_cert,
        Some(ClientCertInfo {
            verified: true,
            subject_cn: Some("client-1".into()),
        }),
        "{backend} {}",
        version.name()
    );
    ping_pong(server, client).await;

    // Optional means "may send none", not "may send anything".
    let stranger = TestCa::new(dir.path(), "other-ca");
    let foreign = mtls_client(version, &server_cert, Some(stranger.issue("client-2")));
    let why = expect_refused(
        &acceptor,
        foreign,
        backend,
        version,
        "another CA's certificate",
    )
    .await;
    // The log line must say why: the issuer is unknown, not just "verify failed".
    assert!(
        why.to_ascii_lowercase().contains("issuer"),
        "{backend} {}: {why}",
        version.name()
    );
}

/// Client verification must not depend on which certificate SNI picked (OpenSSL switches
/// the whole context in its servername callback).
#[apply(backends_with_every_option)]
#[tokio::test]
async fn client_auth_applies_to_sni_selected_certificates(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let default = Cert::new(&dir, "default", KeyKind::EcdsaP256, &["localhost"]);
    let other = Cert::new(&dir, "other", KeyKind::EcdsaP256, &["other.test"]);
    let mut set = default.set();
    set.by_sni.push(("other.test".into(), other.paths.clone()));
    let ca = TestCa::new(dir.path(), "ca");
    let acceptor = mtls_acceptor(backend, &set, &ca, true);

    let good = mtls_client(TlsVersion::Tls13, &other, Some(ca.issue("client-1")));
    let (server, client) = connect(&acceptor, good, "other.test")
        .await
        .unwrap_or_else(|e| panic!("{backend}: good client cert via SNI: {e}"));
    assert_eq!(
        client.get_ref().1.peer_certificates().map(|c| c[0].clone()),
        Some(other.der.clone())
    );
    assert_eq!(
        server
            .info()
            .client_cert
            .map(|c| (c.verified, c.subject_cn)),
        Some((true, Some("client-1".into()))),
        "{backend}"
    );
    ping_pong(server, client).await;

    let none = mtls_client(TlsVersion::Tls13, &other, None);
    match connect(&acceptor, none, "other.test").await {
        Ok(_) => panic!("{backend}: SNI-selected certificate skipped client auth"),
        Err(Failure::Server(_)) => {}
        Err(other) => panic!("{backend}: expected the server to refuse: {other}"),
    }
}

/// A client that refuses the *server's* certificate fails the handshake with an alert
/// naming "certificate" too; that must not read as a mutual-TLS refusal (the proxy would
/// warn "client certificate rejected" with mutual TLS off).
#[apply(every_backend)]
#[tokio::test]
async fn client_refusing_the_server_certificate_is_not_a_client_certificate_refusal(
    backend: Backend,
    #[values(false, true)] mutual: bool,
) {
    if mutual && backend == Backend::NativeTls {
        return; // no mutual TLS: native_tls_refuses_what_it_cannot_do
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let ca = TestCa::new(dir.path(), "ca");
    let acceptor = if mutual {
        mtls_acceptor(backend, &cert.set(), &ca, true)
    } else {
        build_acceptor(backend, &cert.set())
    };
    // Trusted, but for another name: the client sends a bad_certificate alert.
    let version = if backend.speaks(TlsVersion::Tls13) {
        TlsVersion::Tls13
    } else {
        TlsVersion::Tls12
    };
    let client = mtls_client(version, &cert, Some(ca.issue("client-1")));
    match handshake(&acceptor, client, "wrong-name.test").await {
        (
            Err(TlsError::Handshake {
                kind: HandshakeErrorKind::BadCertificate,
                ..
            }),
            Err(_),
        ) => {}
        (server, client) => panic!(
            "{backend}: expected a plain handshake failure, got server {:?}, client {:?}",
            server.err(),
            client.err()
        ),
    }
}

/// Every backend sorts the common handshake failures the same way: no suite in common,
/// bytes that are not TLS, and a client that hangs up mid-hello (the proxy's
/// `no_shared_cipher`, `protocol` and `other` metric labels come from these kinds).
#[apply(every_backend)]
#[tokio::test]
async fn handshake_failures_carry_their_kind(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    // The client offers only TLS 1.3 with TLS_AES_128_GCM_SHA256: the server takes only
    // AES-256 (native-tls, which cannot choose suites, has no TLS 1.3 to agree on).
    let cipher_suites = match backend {
        Backend::NativeTls => Vec::new(),
        _ => vec!["TLS_AES_256_GCM_SHA384".into()],
    };
    let settings = TlsSettings {
        backend,
        cipher_suites,
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).unwrap();
    let client = client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &[]);
    let (server, _) = handshake(&acceptor, client, "localhost").await;
    assert_kind(
        server.err(),
        HandshakeErrorKind::NoSharedParameters,
        backend,
    );

    let not_tls = raw_handshake(&acceptor, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_kind(not_tls, HandshakeErrorKind::NotTls, backend);

    // A handshake record header announcing 512 bytes, then the client hangs up.
    let cut_short = raw_handshake(&acceptor, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    assert_kind(cut_short, HandshakeErrorKind::PeerClosed, backend);
}

#[apply(backends_with_every_option)]
fn missing_or_empty_client_ca_is_refused_by_name(
    backend: Backend,
    #[values(true, false)] required: bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let not_pem = dir.path().join("not-pem-ca.txt");
    std::fs::write(&not_pem, "this is not a CA certificate\n").unwrap();
    for ca in [dir.path().join("missing-ca.pem"), empty, not_pem] {
        let settings = TlsSettings {
            backend,
            client_auth: Some(ClientAuth {
                ca: ca.clone(),
                required,
            }),
            ..TlsSettings::default()
        };
        let err = match Acceptor::build(&settings, &cert.set()) {
            Ok(_) => panic!("{backend}: built with client CA {}", ca.display()),
            Err(e) => e.to_string(),
        };
        let name = ca.file_name().unwrap().to_string_lossy();
        assert!(err.contains(&*name), "{backend}: {err}");
    }
}

/// A client that closes TCP without close_notify (wrk and most HTTP clients do) ends its
/// direction as an EOF on every backend, after all the data it sent: a clean one (both
/// OpenSSL backends) or an `UnexpectedEof` error (rustls), which the relay reads as the
/// client's EOF too, rather than a client error.
#[apply(every_backend)]
#[tokio::test]
async fn a_close_without_close_notify_reads_as_eof(backend: Backend) {
    let (mut server, mut client) = connected_over_newest(backend).await;
    client.write_all(b"last words").await.unwrap();
    client.flush().await.unwrap();
    drop(client.into_inner().0); // the transport closes; no close_notify was sent
    let mut got = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, server.read_to_end(&mut got))
        .await
        .expect("server read timed out");
    match read {
        Ok(n) => assert_eq!(n, 10, "{backend}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{backend}: {e}"),
    }
    assert_eq!(got, b"last words", "{backend}");
}

/// The server's shutdown sends close_notify and then shuts the transport (FIN): the relay
/// relies on it to pass an upstream's EOF on to the client (tokio-native-tls sends only the
/// close_notify; the seam adds the FIN).
#[apply(every_backend)]
#[tokio::test]
async fn server_shutdown_sends_close_notify_then_fin(backend: Backend) {
    let (mut server, client) = connected_over_newest(backend).await;
    server.shutdown().await.unwrap();
    let (mut transport, _) = client.into_inner();
    let mut rest = Vec::new();
    tokio::time::timeout(TIMEOUT, transport.read_to_end(&mut rest))
        .await
        .unwrap_or_else(|_| panic!("{backend}: no FIN after close_notify"))
        .unwrap();
    // The close_notify came before the FIN (encrypted in TLS 1.3, so not told apart here
    // from the tickets that may precede it; ping_pong checks the client reads it as EOF).
    assert!(!rest.is_empty(), "{backend}: a FIN but no close_notify");
}

// ---- rustls's two APIs: the same stream either way ------------------------------------

/// Both rustls APIs (the default unbuffered one, and tokio-rustls kept to measure against)
/// carry bytes exactly in both directions, whatever the reader's buffer size: records
/// split across reads, several records in one read, plaintext larger than the reader's
/// buffer; then half-close from the client, and close_notify plus FIN from the server.
#[rstest]
#[tokio::test]
async fn both_rustls_apis_carry_bytes_exactly_and_close_cleanly(
    #[values(RustlsIo::Unbuffered, RustlsIo::Buffered)] io_mode: RustlsIo,
    #[values(TLS13, TLS12)] version: &'static [&'static SupportedProtocolVersion],
    #[values(1, 1000, 70_000)] read_size: usize,
) {
    let (mut server, client) = connected_with(io_mode, version).await;
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let up: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let down: Vec<u8> = up.iter().rev().copied().collect();
    let exchange = async {
        let sender = async {
            client_wr.write_all(&up).await?;
            client_wr.shutdown().await // close_notify: the server reads EOF
        };
        let receiver = async {
            let mut got = Vec::new();
            let mut chunk = vec![0; read_size];
            loop {
                let n = server.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            server.write_all(&down).await?;
            server.shutdown().await?;
            io::Result::Ok(got)
        };
        let client_reader = async {
            let mut got = Vec::new();
            client_rd.read_to_end(&mut got).await?;
            io::Result::Ok(got)
        };
        let ((), got_up, got_down) = tokio::try_join!(sender, receiver, client_reader)?;
        io::Result::Ok((got_up, got_down))
    };
    let (got_up, got_down) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("exchange timed out")
        .unwrap_or_else(|e| panic!("{}: {e}", io_mode.name()));
    assert!(got_up == up, "{}: client to server differs", io_mode.name());
    assert!(
        got_down == down,
        "{}: server to client differs",
        io_mode.name()
    );
}

/// Garbage after a good handshake ends that connection's read with an error (and an
/// alert to the client), never a hang or a panic.
#[rstest]
#[tokio::test]
async fn a_forged_record_after_the_handshake_is_an_error(
    #[values(RustlsIo::Unbuffered, RustlsIo::Buffered)] io_mode: RustlsIo,
) {
    let (mut server, client) = connected_with(io_mode, TLS13).await;
    // An application-data record whose tag cannot verify.
    let (mut transport, _) = client.into_inner();
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    forged.extend_from_slice(&[0xAB; 0x40]);
    transport.write_all(&forged).await.unwrap();
    let mut buf = [0u8; 100];
    let read = tokio::time::timeout(TIMEOUT, server.read(&mut buf))
        .await
        .expect("read timed out");
    let err = read.expect_err("a forged record must not read as data");
    assert_eq!(
        err.kind(),
        io::ErrorKind::InvalidData,
        "{}: {err}",
        io_mode.name()
    );
}

/// A client that cuts every message into 64-byte records (the smallest fragment rustls
/// allows is 32): the server joins the handshake messages across dozens of records and
/// many records per read, and still learns the SNI.
#[rstest]
#[tokio::test]
async fn handshake_messages_cut_into_tiny_records_are_joined(
    #[values(RustlsIo::Unbuffered, RustlsIo::Buffered)] io_mode: RustlsIo,
    #[values(TLS13, TLS12)] version: &'static [&'static SupportedProtocolVersion],
) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        rustls_io: io_mode,
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).unwrap();
    let mut client =
        (*client_config(aws_lc_rs::default_provider(), version, &[&cert.der], &[])).clone();
    client.max_fragment_size = Some(64);
    let (server, client) = connect(&acceptor, Arc::new(client), "localhost")
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", io_mode.name()));
    assert_eq!(
        server.info().sni.as_deref(),
        Some("localhost"),
        "{}",
        io_mode.name()
    );
    ping_pong(server, client).await;
}

/// A default-backend server using rustls's `io_mode` API and a rustls client, connected
/// over `version`.
async fn connected_with(
    io_mode: RustlsIo,
    version: &'static [&'static SupportedProtocolVersion],
) -> (ServerStream, ClientStream) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        rustls_io: io_mode,
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).expect("an acceptor");
    let client = client_config(aws_lc_rs::default_provider(), version, &[&cert.der], &[]);
    connect(&acceptor, client, "localhost")
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", io_mode.name()))
}

// ---- native-tls: what it cannot do is refused, what it does is checked ----------------

/// Each option native-tls cannot honour stops the build with the option's name and the
/// backend's, never a server that quietly runs without it.
#[rstest]
#[case::min_version_1_3("min_version")]
#[case::cipher_suites("cipher_suites")]
#[case::kx_groups("kx_groups")]
#[case::sni_certificates("sni")]
#[case::strict_sni("strict_sni")]
#[case::client_ca("client_ca")]
#[case::session_resumption_off("session_resumption")]
fn native_tls_refuses_what_it_cannot_do(#[case] option: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let other = Cert::new(&dir, "other", KeyKind::EcdsaP256, &["other.test"]);
    let ca = TestCa::new(dir.path(), "ca");
    let mut settings = TlsSettings {
        backend: Backend::NativeTls,
        ..TlsSettings::default()
    };
    let mut set = cert.set();
    match option {
        "min_version" => settings.min_version = TlsVersion::Tls13,
        "cipher_suites" => settings.cipher_suites = vec!["TLS_AES_128_GCM_SHA256".into()],
        "kx_groups" => settings.kx_groups = vec!["X25519".into()],
        "sni" => set.by_sni.push(("other.test".into(), other.paths.clone())),
        "strict_sni" => set.strict_sni = true,
        "client_ca" => {
            settings.client_auth = Some(ClientAuth {
                ca: ca.path.clone(),
                required: false,
            })
        }
        "session_resumption" => settings.session_resumption = false,
        other => panic!("no case for {other}"),
    }
    match Acceptor::build(&settings, &set) {
        Ok(_) => panic!("native-tls built with {option}"),
        Err(e @ TlsError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(option), "{msg}");
            assert!(msg.contains("native-tls"), "{msg}");
        }
        Err(other) => panic!("{option}: not a refusal: {other}"),
    }
}

/// native-tls's server speaks TLS 1.2 only (its Mozilla "intermediate" profile turns 1.3
/// off), prefers ChaCha20-Poly1305 (that profile's order), resumes by default (OpenSSL's
/// tickets), negotiates ALPN, and reports ALPN alone.
#[tokio::test]
async fn native_tls_speaks_tls12_with_its_own_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let settings = TlsSettings {
        backend: Backend::NativeTls,
        alpn: vec!["h2".into(), "http/1.1".into()],
        ..TlsSettings::default()
    };
    let acceptor = Acceptor::build(&settings, &cert.set()).unwrap();

    let tls13_only = client_config(tls13_aes128_x25519(), TLS13, &[&cert.der], &["http/1.1"]);
    let (server, _) = handshake(&acceptor, tls13_only, "localhost").await;
    assert_kind(
        server.err(),
        HandshakeErrorKind::NoSharedParameters,
        Backend::NativeTls,
    );

    let both = client_config(
        aws_lc_rs::default_provider(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
        &[&cert.der],
        &["http/1.1", "h2"],
    );
    let (server, client) = connect(&acceptor, both, "localhost").await.unwrap();
    let conn = client.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );
    assert_eq!(
        conn.alpn_protocol(),
        Some(&b"h2"[..]),
        "server's order wins"
    );
    assert_eq!(
        server.info(),
        HandshakeInfo {
            alpn: Some("h2".into()),
            ..HandshakeInfo::default()
        }
    );
    ping_pong(server, client).await;
}

// ---- helpers -------------------------------------------------------------------------

/// A generated certificate on disk and its DER, for the client's root store.
struct Cert {
    paths: CertPaths,
    der: CertificateDer<'static>,
}

impl Cert {
    fn new(dir: &TempDir, stem: &str, kind: KeyKind, names: &[&str]) -> Cert {
        let generated = selfsigned::generate(kind, names).expect("generating a certificate");
        let paths = generated
            .write(
                dir.path(),
                &format!("{stem}-cert.pem"),
                &format!("{stem}-key.pem"),
            )
            .expect("writing the certificate");
        Cert {
            der: read_cert(&paths.cert),
            paths,
        }
    }

    fn set(&self) -> CertSet {
        CertSet::single(&self.paths.cert, &self.paths.key)
    }
}

fn read_cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("reading a certificate PEM")
}

fn build(backend: Backend, set: CertSet) -> Result<Acceptor, String> {
    let settings = TlsSettings {
        backend,
        ..TlsSettings::default()
    };
    Acceptor::build(&settings, &set).map_err(|e| e.to_string())
}

fn build_acceptor(backend: Backend, set: &CertSet) -> Acceptor {
    let settings = TlsSettings {
        backend,
        ..TlsSettings::default()
    };
    Acceptor::build(&settings, set).unwrap_or_else(|e| panic!("{backend}: {e}"))
}

const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// The newest version `backend` speaks, as the client's only offer.
fn newest(backend: Backend) -> &'static [&'static SupportedProtocolVersion] {
    if backend.speaks(TlsVersion::Tls13) {
        TLS13
    } else {
        TLS12
    }
}

/// The name of [`newest`] as the seam reports it.
fn newest_name(backend: Backend) -> &'static str {
    if backend.speaks(TlsVersion::Tls13) {
        TlsVersion::Tls13.name()
    } else {
        TlsVersion::Tls12.name()
    }
}

/// A client that can only agree to TLS_AES_128_GCM_SHA256 over X25519.
fn tls13_aes128_x25519() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = vec![aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256];
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    provider
}

/// A TLS 1.2 client that can only agree to ECDHE-ECDSA-AES128-GCM over secp256r1.
fn tls12_ecdsa_aes128_p256() -> CryptoProvider {
    let mut provider = aws_lc_rs::default_provider();
    provider.cipher_suites = vec![aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
    provider.kx_groups = vec![aws_lc_rs::kx_group::SECP256R1];
    provider
}

fn client_config(
    provider: CryptoProvider,
    versions: &[&'static SupportedProtocolVersion],
    roots: &[&CertificateDer<'static>],
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).expect("trusting a certificate");
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("protocol versions the provider supports")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

// ---- mutual TLS helpers --------------------------------------------------------------

fn mtls_acceptor(backend: Backend, set: &CertSet, ca: &TestCa, required: bool) -> Acceptor {
    let settings = TlsSettings {
        backend,
        client_auth: Some(ClientAuth {
            ca: ca.path.clone(),
            required,
        }),
        ..TlsSettings::default()
    };
    Acceptor::build(&settings, set).unwrap_or_else(|e| panic!("{backend}: {e}"))
}

/// A client trusting `server`, sending `identity` when the server asks for one.
fn mtls_client(
    version: TlsVersion,
    server: &Cert,
    identity: Option<ClientIdentity>,
) -> Arc<ClientConfig> {
    let (provider, versions) = match version {
        TlsVersion::Tls13 => (tls13_aes128_x25519(), TLS13),
        TlsVersion::Tls12 => (tls12_ecdsa_aes128_p256(), TLS12),
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(server.der.clone())
        .expect("trusting a certificate");
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("protocol versions the provider supports")
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("a usable client certificate"),
        None => builder.with_no_client_auth(),
    })
}

/// The server refuses the handshake as a client-certificate refusal (what the proxy logs
/// as "client certificate rejected"), and the client cannot use the
/// connection: its handshake fails or, in TLS 1.3 where the client finishes first, its
/// first read does. Returns the server's error.
async fn expect_refused(
    acceptor: &Acceptor,
    client: Arc<ClientConfig>,
    backend: Backend,
    version: TlsVersion,
    what: &str,
) -> String {
    let (server, client) = handshake(acceptor, client, "localhost").await;
    let ctx = format!("{backend} {}, {what}", version.name());
    let error = match server {
        Ok(_) => panic!("{ctx}: accepted"),
        Err(TlsError::ClientCertificate(e)) => e,
        Err(other) => panic!("{ctx}: not a client-certificate refusal: {other:?}"),
    };
    if let Ok(mut client) = client {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(TIMEOUT, client.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{ctx}: client hung"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{ctx}: client read {read:?}"
        );
    }
    error
}

type ServerStream = TlsStream<DuplexStream>;
type ClientStream = tokio_rustls::client::TlsStream<DuplexStream>;

/// Which side gave up on the handshake (the other side then only sees the close).
#[derive(Debug)]
enum Failure {
    Server(String),
    Client(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Server(e) => write!(f, "server: {e}"),
            Failure::Client(e) => write!(f, "client: {e}"),
        }
    }
}

/// A server of `backend` and a rustls client, connected over the newest version the
/// backend speaks, with a P-256 certificate for `localhost`.
async fn connected_over_newest(backend: Backend) -> (ServerStream, ClientStream) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = Cert::new(&dir, "c", KeyKind::EcdsaP256, &["localhost"]);
    let acceptor = build_acceptor(backend, &cert.set());
    let client = client_config(
        aws_lc_rs::default_provider(),
        newest(backend),
        &[&cert.der],
        &[],
    );
    connect(&acceptor, client, "localhost")
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}"))
}

/// Runs both handshakes over an in-memory pipe. `name` is sent as SNI when it is a DNS
/// name; an IP address sends none.
async fn connect(
    acceptor: &Acceptor,
    client: Arc<ClientConfig>,
    name: &str,
) -> Result<(ServerStream, ClientStream), Failure> {
    match handshake(acceptor, client, name).await {
        (Ok(s), Ok(c)) => Ok((s, c)),
        (Err(e), _) => Err(Failure::Server(e.to_string())),
        (Ok(_), Err(e)) => Err(Failure::Client(e)),
    }
}

/// Both sides' handshake results, each kept: in TLS 1.3 a client may finish its handshake
/// while the server refuses it.
async fn handshake(
    acceptor: &Acceptor,
    client: Arc<ClientConfig>,
    name: &str,
) -> (Result<ServerStream, TlsError>, Result<ClientStream, String>) {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from(name.to_string()).expect("a DNS name or IP address");
    let connector = tokio_rustls::TlsConnector::from(client);
    let both = async {
        tokio::join!(
            acceptor.accept(server_io),
            connector.connect(name, client_io)
        )
    };
    let (server, client) = tokio::time::timeout(TIMEOUT, both)
        .await
        .expect("handshake timed out");
    (server, client.map_err(|e| e.to_string()))
}

/// The server's handshake with a client that writes `bytes` and closes its side.
async fn raw_handshake(acceptor: &Acceptor, bytes: &[u8]) -> Option<TlsError> {
    let (server_io, mut client_io) = tokio::io::duplex(64 * 1024);
    client_io.write_all(bytes).await.expect("writing to a pipe");
    client_io.shutdown().await.expect("closing a pipe");
    let server = tokio::time::timeout(TIMEOUT, acceptor.accept(server_io))
        .await
        .expect("handshake timed out");
    server.err()
}

fn assert_kind(error: Option<TlsError>, expected: HandshakeErrorKind, backend: Backend) {
    match error {
        Some(TlsError::Handshake { kind, .. }) if kind == expected => {}
        other => panic!("{backend}: expected a {expected:?} handshake failure, got {other:?}"),
    }
}

/// Application data both ways, then a clean close: the streams really work, and the
/// client has read whatever the server sent after the handshake (TLS 1.3 tickets).
async fn ping_pong(mut server: ServerStream, mut client: ClientStream) {
    let exchange = async {
        server.write_all(b"ping").await?;
        server.flush().await?;
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        client.write_all(b"pong").await?;
        client.flush().await?;
        server.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        client.shutdown().await?;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await?;
        assert!(rest.is_empty());
        io::Result::Ok(())
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("exchange timed out")
        .expect("exchange");
}

/// Far above what an in-memory handshake needs, even with RSA on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(30);
