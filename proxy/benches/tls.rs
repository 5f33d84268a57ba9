//! Criterion micro-benchmarks of the TLS backends behind `proxy::tls`: handshakes and bulk
//! record encryption, in memory, so that the backends can be compared without sockets,
//! processes or the kernel in the way.
//!
//! `cargo bench -p proxy` runs them all; criterion's filter picks some
//! (`cargo bench -p proxy -- handshake_resumed`, `-- openssl`, `-- bulk_tls13/rustls-ring`).
//!
//! How each figure is made:
//! - Every server is what the proxy runs: an [`Acceptor`] built by the seam from
//!   [`TlsSettings`] (defaults, so session resumption is on and the server sends its
//!   tickets) with only the version, suite and key-exchange group under test, serving a
//!   certificate generated at start-up. Its handshakes and writes go through
//!   [`Acceptor::accept`] and the seam's [`TlsStream`], the same async streams the relay
//!   copies between.
//! - Transport: `tokio::io::duplex` pairs, driven on one current-thread tokio runtime. Each
//!   sample is a single `block_on` around its whole iteration loop (`iter_custom`), so the
//!   runtime's entry cost is not in the figures; the tokio and duplex costs of the real data
//!   path are. The `no-tls` rows of the bulk group are the same duplex copy without TLS:
//!   the floor under every TLS row.
//! - Handshake groups: the client is always rustls with aws-lc-rs, offering only the version,
//!   suite and group under test (X25519 forced so the backends do the same key exchange;
//!   AES-128-GCM, the suite every backend prefers). One iteration is a whole handshake, both
//!   sides, plus one 1-byte record from server to client, which makes the client read the
//!   session tickets sent after a TLS 1.3 handshake, as real clients do. The client's share
//!   is the same for every backend, so the differences between rows are the servers'.
//! - Bulk group (TLS 1.3): the server's seam stream writes N bytes and a client *of the same
//!   library* (rustls with the same provider, or OpenSSL) reads them, so each byte is
//!   encrypted once and decrypted once by the backend under test: the same crypto work per
//!   byte as the proxy decrypting a request and encrypting a response of that size.
//! - native-tls (TLS 1.2 only, and no choice of suite or group) is in the TLS 1.2 rows of
//!   the handshake groups, with its own defaults and the client's offer pinning suite and
//!   group, and not in the TLS 1.3 bulk group.
//!
//! Every configuration is checked once before it is measured (negotiated version, suite,
//! group, full or resumed handshake, bytes round-tripped), and the handshake kind again in
//! every iteration: a benchmark that silently measured something else would be worse than
//! none.

use std::hint::black_box;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, HandshakeKind, NamedGroup, RootCertStore, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sysio::tls_names::canonical_suite;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::runtime::Runtime;

use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::{Acceptor, Backend, CertPaths, CertSet, TlsSettings, TlsStream, TlsVersion};

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(WARM_UP_TIME)
        .measurement_time(MEASUREMENT_TIME);
    targets = handshake_full, handshake_resumed, bulk_tls13
}
criterion_main!(benches);

/// Full handshakes: each key type and version, X25519 key exchange, no resumption offered.
fn handshake_full(c: &mut Criterion) {
    let rt = runtime();
    let certs = Certs::generate();
    let mut group = c.benchmark_group("handshake_full_x25519");
    for backend in Backend::ALL {
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
                if !backend.speaks(version) {
                    continue;
                }
                let case = HandshakeCase::new(backend, kind, version, &certs, false);
                rt.block_on(case.check());
                group.bench_function(BenchmarkId::new(backend.name(), case.label()), |b| {
                    b.iter_custom(|iters| rt.block_on(case.run(iters)))
                });
            }
        }
    }
    group.finish();
}

/// Resumed handshakes (session tickets) with the ECDSA certificate, both versions.
fn handshake_resumed(c: &mut Criterion) {
    let rt = runtime();
    let certs = Certs::generate();
    let mut group = c.benchmark_group("handshake_resumed_tickets_x25519");
    for backend in Backend::ALL {
        for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
            if !backend.speaks(version) {
                continue;
            }
            let case = HandshakeCase::new(backend, KeyKind::EcdsaP256, version, &certs, true);
            // The first handshake is full and leaves the client its tickets; the check
            // then asserts that the next one resumes.
            rt.block_on(case.prime());
            rt.block_on(case.check());
            group.bench_function(BenchmarkId::new(backend.name(), case.label()), |b| {
                b.iter_custom(|iters| rt.block_on(case.run(iters)))
            });
        }
    }
    group.finish();
}

/// Application data through an established TLS 1.3 connection, per suite and write size.
fn bulk_tls13(c: &mut Criterion) {
    let rt = runtime();
    let certs = Certs::generate();
    let largest = BULK_SIZES_BYTES.iter().copied().max().unwrap_or_default();
    let payload = payload(largest);
    let mut sink = vec![0u8; largest];
    let mut group = c.benchmark_group("bulk_tls13");

    let (mut writer, mut reader) = tokio::io::duplex(BULK_PIPE_BYTES);
    for size in BULK_SIZES_BYTES {
        let (payload, sink) = (&payload[..size], &mut sink[..size]);
        rt.block_on(check_transfer(&mut writer, &mut reader, payload, sink));
        group.throughput(Throughput::Bytes(size as u64));
        let id = BenchmarkId::new("no-tls/duplex-copy", size_label(size));
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                rt.block_on(transfer(iters, &mut writer, &mut reader, payload, sink))
            })
        });
    }

    for backend in Backend::ALL
        .into_iter()
        .filter(|b| b.speaks(TlsVersion::Tls13))
    {
        for suite in TLS13_SUITES {
            let mut conn = rt.block_on(BulkConnection::open(backend, suite, &certs));
            for size in BULK_SIZES_BYTES {
                let (payload, sink) = (&payload[..size], &mut sink[..size]);
                rt.block_on(conn.check(payload, sink));
                group.throughput(Throughput::Bytes(size as u64));
                let id = BenchmarkId::new(format!("{backend}/{suite}"), size_label(size));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| rt.block_on(conn.transfer(iters, payload, sink)))
                });
            }
        }
    }
    group.finish();
}

// ---- handshakes ----------------------------------------------------------------------

/// One server configuration and a client that offers exactly what it is meant to
/// negotiate.
struct HandshakeCase {
    backend: Backend,
    kind: KeyKind,
    version: TlsVersion,
    suite: &'static str,
    acceptor: Acceptor,
    connector: tokio_rustls::TlsConnector,
    resumed: bool,
}

type ServerStream = TlsStream<DuplexStream>;
type ClientStream = tokio_rustls::client::TlsStream<DuplexStream>;

impl HandshakeCase {
    fn new(
        backend: Backend,
        kind: KeyKind,
        version: TlsVersion,
        certs: &Certs,
        resumed: bool,
    ) -> Self {
        let suite = handshake_suite(kind, version);
        let cert = certs.get(kind);
        let acceptor = Acceptor::build(
            &server_settings(backend, version, suite),
            &CertSet::single(&cert.cert, &cert.key),
        )
        .unwrap_or_else(|e| panic!("building the {backend} acceptor: {e}"));
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut config = client_config(provider, version, suite, &cert.cert);
        // A full-handshake client must not offer the session it got last time.
        config.resumption = if resumed {
            Resumption::default()
        } else {
            Resumption::disabled()
        };
        HandshakeCase {
            backend,
            kind,
            version,
            suite,
            acceptor,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            resumed,
        }
    }

    /// `ecdsa-p256/tls1.3`: the bench id's parameter.
    fn label(&self) -> String {
        let version = match self.version {
            TlsVersion::Tls12 => "tls1.2",
            TlsVersion::Tls13 => "tls1.3",
        };
        format!("{}/{version}", self.kind.name())
    }

    fn expected_kind(&self) -> HandshakeKind {
        if self.resumed {
            HandshakeKind::Resumed
        } else {
            HandshakeKind::Full
        }
    }

    /// One handshake whose session the client keeps (resumption cases only).
    async fn prime(&self) {
        let (mut server, mut client) = self.handshake().await;
        let resumed = server.info().resumed;
        let first = self.backend.reports_parameters().then_some(false);
        assert_eq!(resumed, first, "{}: first handshake", self.what());
        first_byte(&mut server, &mut client).await;
    }

    /// One handshake, checked on both sides against what the bench id says.
    async fn check(&self) {
        let (mut server, mut client) = self.handshake().await;
        let what = self.what();
        // The server's own report where the backend gives one; the client's below always.
        let info = server.info();
        let reports = self.backend.reports_parameters();
        let version = reports.then(|| self.version.name().to_owned());
        assert_eq!(info.version, version, "{what}: version");
        let suite = reports.then(|| self.suite.to_owned());
        assert_eq!(info.cipher_suite, suite, "{what}: cipher suite");
        let resumed = reports.then_some(self.resumed);
        assert_eq!(info.resumed, resumed, "{what}: server says resumed");
        let conn = client.get_ref().1;
        assert_eq!(
            conn.handshake_kind(),
            Some(self.expected_kind()),
            "{what}: client's handshake kind"
        );
        assert_eq!(
            conn.negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .map(canonical_suite)
                .as_deref(),
            Some(self.suite),
            "{what}: client's cipher suite"
        );
        // A TLS 1.2 resumption runs no key exchange; everything else must use X25519.
        if !(self.resumed && self.version == TlsVersion::Tls12) {
            assert_eq!(
                conn.negotiated_key_exchange_group().map(|g| g.name()),
                Some(NamedGroup::X25519),
                "{what}: key exchange group"
            );
        }
        let peer = conn.peer_certificates().and_then(|chain| chain.first());
        assert!(peer.is_some(), "{what}: no server certificate");
        first_byte(&mut server, &mut client).await;
    }

    /// `iters` handshakes, each with its first byte; returns the time they took.
    async fn run(&self, iters: u64) -> Duration {
        let expected = Some(self.expected_kind());
        let start = Instant::now();
        for _ in 0..iters {
            let (mut server, mut client) = self.handshake().await;
            // Cheap, and catches a run that stops resuming half-way (an empty ticket store).
            assert_eq!(
                client.get_ref().1.handshake_kind(),
                expected,
                "{}",
                self.what()
            );
            first_byte(&mut server, &mut client).await;
            black_box((server, client));
        }
        start.elapsed()
    }

    async fn handshake(&self) -> (ServerStream, ClientStream) {
        let (server_io, client_io) = tokio::io::duplex(HANDSHAKE_PIPE_BYTES);
        let (server, client) = tokio::join!(
            self.acceptor.accept(server_io),
            self.connector.connect(server_name(), client_io)
        );
        let what = self.what();
        let server = server.unwrap_or_else(|e| panic!("{what}: server handshake: {e}"));
        let client = client.unwrap_or_else(|e| panic!("{what}: client handshake: {e}"));
        (server, client)
    }

    fn what(&self) -> String {
        format!("{} {} {}", self.backend, self.label(), self.suite)
    }
}

/// The server sends one byte and the client reads it, and with it the tickets before it.
async fn first_byte(server: &mut ServerStream, client: &mut ClientStream) {
    server.write_all(b"x").await.expect("server write");
    server.flush().await.expect("server flush");
    let mut byte = [0u8; 1];
    client.read_exact(&mut byte).await.expect("client read");
}

/// The server's settings for one case: only the version, suite and group under test. The
/// native-tls backend cannot choose a suite or group (it refuses both), so it gets its
/// defaults, and the client, which offers only the suite and group under test, makes the
/// handshake settle on them all the same (`check` asserts it on the client's side).
fn server_settings(backend: Backend, version: TlsVersion, suite: &str) -> TlsSettings {
    let pinned = backend != Backend::NativeTls;
    TlsSettings {
        backend,
        min_version: version,
        cipher_suites: pinned.then(|| suite.to_string()).into_iter().collect(),
        kx_groups: pinned.then(|| KX_GROUP.to_string()).into_iter().collect(),
        ..TlsSettings::default()
    }
}

/// AES-128-GCM in each version, with the signature algorithm of the certificate for 1.2.
fn handshake_suite(kind: KeyKind, version: TlsVersion) -> &'static str {
    match (version, kind) {
        (TlsVersion::Tls13, _) => "TLS_AES_128_GCM_SHA256",
        (TlsVersion::Tls12, KeyKind::Rsa2048) => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        (TlsVersion::Tls12, _) => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    }
}

// ---- bulk data -----------------------------------------------------------------------

/// An established TLS 1.3 connection: the seam's server stream and a client of the same
/// library.
struct BulkConnection {
    what: String,
    suite: &'static str,
    server: ServerStream,
    client: BulkClient,
}

// reason: one per benchmark, built once; boxing would only add a pointer chase per poll.
#[allow(clippy::large_enum_variant)]
enum BulkClient {
    Rustls(ClientStream),
    Openssl(tokio_openssl::SslStream<DuplexStream>),
}

impl BulkConnection {
    async fn open(backend: Backend, suite: &'static str, certs: &Certs) -> Self {
        let what = format!("{backend} {suite}");
        let cert = certs.get(KeyKind::EcdsaP256);
        let settings = TlsSettings {
            backend,
            min_version: TlsVersion::Tls13,
            cipher_suites: vec![suite.to_string()],
            kx_groups: vec![KX_GROUP.to_string()],
            ..TlsSettings::default()
        };
        let acceptor = Acceptor::build(&settings, &CertSet::single(&cert.cert, &cert.key))
            .unwrap_or_else(|e| panic!("{what}: building the acceptor: {e}"));
        let (server_io, client_io) = tokio::io::duplex(BULK_PIPE_BYTES);
        let (server, client) = match backend {
            Backend::RustlsAwsLc | Backend::RustlsRing | Backend::RustlsMixed => {
                let provider = proxy::tls::rustls::provider(backend)
                    .unwrap_or_else(|e| panic!("{what}: provider: {e}"));
                let config = client_config(provider, TlsVersion::Tls13, suite, &cert.cert);
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                let (server, client) = tokio::join!(
                    acceptor.accept(server_io),
                    connector.connect(server_name(), client_io)
                );
                let client = client.unwrap_or_else(|e| panic!("{what}: client handshake: {e}"));
                (server, BulkClient::Rustls(client))
            }
            // native-tls runs on OpenSSL too (though, TLS 1.2 only, it is not in this group).
            Backend::Openssl | Backend::NativeTls => {
                let ssl = openssl_client(suite, &cert.cert);
                let mut client = tokio_openssl::SslStream::new(ssl, client_io)
                    .unwrap_or_else(|e| panic!("{what}: client stream: {e}"));
                let (server, client_done) =
                    tokio::join!(acceptor.accept(server_io), Pin::new(&mut client).connect());
                client_done.unwrap_or_else(|e| panic!("{what}: client handshake: {e}"));
                (server, BulkClient::Openssl(client))
            }
        };
        let server = server.unwrap_or_else(|e| panic!("{what}: server handshake: {e}"));
        BulkConnection {
            what,
            suite,
            server,
            client,
        }
    }

    /// The suite both sides report, and one payload round-tripped intact.
    async fn check(&mut self, payload: &[u8], sink: &mut [u8]) {
        let (what, suite) = (&self.what, self.suite);
        let info = self.server.info();
        assert_eq!(info.version.as_deref(), Some("TLSv1.3"), "{what}: version");
        assert_eq!(
            info.cipher_suite.as_deref(),
            Some(suite),
            "{what}: server's cipher suite"
        );
        let client_suite = match &self.client {
            BulkClient::Rustls(c) => c
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str())
                .map(canonical_suite),
            BulkClient::Openssl(c) => c
                .ssl()
                .current_cipher()
                .and_then(|c| c.standard_name())
                .map(canonical_suite),
        };
        assert_eq!(
            client_suite.as_deref(),
            Some(suite),
            "{what}: client's suite"
        );
        match &mut self.client {
            BulkClient::Rustls(c) => check_transfer(&mut self.server, c, payload, sink).await,
            BulkClient::Openssl(c) => check_transfer(&mut self.server, c, payload, sink).await,
        }
    }

    async fn transfer(&mut self, iters: u64, payload: &[u8], sink: &mut [u8]) -> Duration {
        match &mut self.client {
            BulkClient::Rustls(c) => transfer(iters, &mut self.server, c, payload, sink).await,
            BulkClient::Openssl(c) => transfer(iters, &mut self.server, c, payload, sink).await,
        }
    }
}

/// `iters` times: `payload` written (and flushed) into `writer`, read whole from `reader`.
/// Both sides run concurrently in this task, so a full pipe never stalls the writer.
async fn transfer<W, R>(
    iters: u64,
    writer: &mut W,
    reader: &mut R,
    payload: &[u8],
    sink: &mut [u8],
) -> Duration
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let start = Instant::now();
    for _ in 0..iters {
        let write = async {
            writer
                .write_all(payload)
                .await
                .expect("writing the payload");
            writer.flush().await.expect("flushing the payload");
        };
        let (_, read) = tokio::join!(write, reader.read_exact(sink));
        read.expect("reading the payload");
        black_box(&mut *sink);
    }
    start.elapsed()
}

/// One transfer, and the bytes that arrived are the bytes sent.
async fn check_transfer<W, R>(writer: &mut W, reader: &mut R, payload: &[u8], sink: &mut [u8])
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    sink.fill(0);
    transfer(1, writer, reader, payload, sink).await;
    assert!(sink == payload, "the payload arrived changed");
}

/// Bytes that are not all alike, so no layer can treat them specially.
fn payload(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect()
}

fn size_label(size: usize) -> String {
    format!("{}KiB", size / 1024)
}

// ---- clients, certificates, runtime --------------------------------------------------

/// A rustls client offering one version and one suite, trusting `cert` only. Its groups are
/// X25519 then secp256r1, and it sends a key share for X25519 only: the servers are
/// restricted to X25519 (and the group is asserted), but OpenSSL, following RFC 8422, will
/// not use a P-256 certificate in TLS 1.2 for a client whose groups do not list P-256.
fn client_config(
    mut provider: CryptoProvider,
    version: TlsVersion,
    suite: &str,
    cert: &Path,
) -> ClientConfig {
    provider
        .cipher_suites
        .retain(|s| s.suite().as_str().map(canonical_suite).as_deref() == Some(suite));
    assert_eq!(provider.cipher_suites.len(), 1, "client suite {suite}");
    let group = |name: NamedGroup| {
        let found = provider.kx_groups.iter().find(|g| g.name() == name);
        *found.unwrap_or_else(|| panic!("client group {name:?}"))
    };
    provider.kx_groups = vec![group(NamedGroup::X25519), group(NamedGroup::secp256r1)];
    let versions: &[&'static SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let der = CertificateDer::from_pem_file(cert).expect("the generated certificate is PEM");
    let mut roots = RootCertStore::empty();
    roots.add(der).expect("trusting the generated certificate");
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .expect("the provider supports the version")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// An OpenSSL client for the bulk group: TLS 1.3, one suite, X25519, trusting `cert` only.
fn openssl_client(suite: &str, cert: &Path) -> openssl::ssl::Ssl {
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an OpenSSL client context");
    b.set_min_proto_version(Some(SslVersion::TLS1_3))
        .expect("TLS 1.3");
    b.set_max_proto_version(Some(SslVersion::TLS1_3))
        .expect("TLS 1.3");
    b.set_ciphersuites(suite)
        .expect("a TLS 1.3 suite OpenSSL knows");
    b.set_groups_list(KX_GROUP).expect("X25519");
    b.set_ca_file(cert)
        .expect("trusting the generated certificate");
    b.build()
        .configure()
        .expect("an OpenSSL client")
        .into_ssl(SERVER_NAME)
        .expect("an OpenSSL client for localhost")
}

/// The generated certificates, one per key type, in a directory removed on drop.
struct Certs {
    _dir: tempfile::TempDir,
    ecdsa: CertPaths,
    rsa: CertPaths,
}

impl Certs {
    fn generate() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let write = |kind: KeyKind| {
            let sub = dir.path().join(kind.name());
            std::fs::create_dir(&sub).expect("a certificate directory");
            selfsigned::write_to_dir(&sub, kind).expect("generating a certificate")
        };
        let ecdsa = write(KeyKind::EcdsaP256);
        let rsa = write(KeyKind::Rsa2048);
        Certs {
            _dir: dir,
            ecdsa,
            rsa,
        }
    }

    fn get(&self, kind: KeyKind) -> &CertPaths {
        match kind {
            KeyKind::Rsa2048 => &self.rsa,
            _ => &self.ecdsa,
        }
    }
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("localhost is a DNS name")
}

/// One thread, as a proxy worker runs each connection: no cross-thread wake-ups measured.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread tokio runtime")
}

/// Samples per benchmark: criterion's minimum sensible count keeps the run to minutes.
const SAMPLE_SIZE: usize = 20;
/// Short phases: 48 benchmarks must fit in a few minutes on 2 CPUs.
const WARM_UP_TIME: Duration = Duration::from_secs(1);
const MEASUREMENT_TIME: Duration = Duration::from_secs(3);
/// The one key-exchange group of every handshake, so the backends do the same work.
const KX_GROUP: &str = "X25519";
/// The generated certificates are for `localhost` (and loopback addresses).
const SERVER_NAME: &str = "localhost";
/// Holds a whole handshake flight (an RSA chain is ~1 KiB), so no side waits on the pipe.
const HANDSHAKE_PIPE_BYTES: usize = 64 * 1024;
/// Holds a whole 64 KiB write with its record overhead: the writer rarely waits.
const BULK_PIPE_BYTES: usize = 256 * 1024;
/// Bytes per write: a small response, one full record, four full records.
const BULK_SIZES_BYTES: [usize; 3] = [1024, 16 * 1024, 64 * 1024];
/// The TLS 1.3 suites every backend offers, in IANA spelling.
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];
