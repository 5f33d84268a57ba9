//! The TLS client: rustls with the aws-lc-rs provider, offering exactly the versions,
//! suites and groups asked for (so a harness can force identical parameters on every
//! server), verifying against the system roots, a `--cacert` file, or nothing
//! (`--insecure`, which still checks handshake signatures so the crypto work is the same).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::NamedGroup;
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// What the TLS flags asked for.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// The URL's host: the default server name.
    pub host: String,
    pub cacert: Option<PathBuf>,
    pub insecure: bool,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub version: Option<TlsVersionArg>,
    pub cipher_suites: Vec<String>,
    pub kx_groups: Vec<String>,
    pub resume: bool,
}

/// `--tls-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersionArg {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// A TLS flag or file that cannot be used. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read --cacert {}: {source}", path.display())]
    CaRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--cacert {}: {detail}", path.display())]
    CaPem { path: PathBuf, detail: String },
    #[error("--cipher-suite {name}: unknown cipher suite (available: {available})")]
    Suite { name: String, available: String },
    #[error("--kx-group {name}: unknown key-exchange group (available: {available})")]
    Group { name: String, available: String },
    #[error("--sni {0:?} is not a valid DNS name")]
    Sni(String),
    #[error("invalid server name {0:?} in the URL")]
    Host(String),
    #[error(
        "the TLS options do not fit together: {0} (check --tls-version against --cipher-suite)"
    )]
    Incompatible(String),
}

/// The client configuration, built and checked once; each thread gets its own copy with its
/// own session cache ([`TlsClient::for_thread`]), so resumption takes no cross-thread lock.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: ClientConfig,
    server_name: ServerName<'static>,
    resume: bool,
}

impl TlsClient {
    pub fn build(opts: &TlsOptions) -> Result<TlsClient, TlsConfigError> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if !opts.cipher_suites.is_empty() {
            provider.cipher_suites = pick_suites(&opts.cipher_suites)?;
        }
        if !opts.kx_groups.is_empty() {
            provider.kx_groups = pick_groups(&opts.kx_groups)?;
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match opts.version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersionArg::Tls12) => &[&rustls::version::TLS12],
            Some(TlsVersionArg::Tls13) => &[&rustls::version::TLS13],
        };
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .map_err(|e| TlsConfigError::Incompatible(e.to_string()))?;
        let mut config = if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoChainCheck { algorithms }))
                .with_no_client_auth()
        } else {
            let roots = match &opts.cacert {
                Some(path) => roots_from_file(path)?,
                None => system_roots(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = Resumption::disabled();

        let server_name = match &opts.sni {
            Some(name) => ServerName::try_from(name.clone())
                .ok()
                .filter(|n| matches!(n, ServerName::DnsName(_)))
                .ok_or_else(|| TlsConfigError::Sni(name.clone()))?,
            None => ServerName::try_from(opts.host.clone())
                .map_err(|_| TlsConfigError::Host(opts.host.clone()))?,
        };
        Ok(TlsClient {
            config,
            server_name,
            resume: opts.resume,
        })
    }

    /// A configuration for one thread: with `--tls-resume`, its own session cache.
    pub fn for_thread(&self) -> Arc<ClientConfig> {
        let mut config = self.config.clone();
        config.resumption = if self.resume {
            Resumption::store(Arc::new(TicketStore::default()))
        } else {
            Resumption::disabled()
        };
        Arc::new(config)
    }

    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    pub fn resume(&self) -> bool {
        self.resume
    }
}

/// What one handshake settled on, in the same spelling as `proxy::tls::HandshakeInfo`
/// (both canonicalise names with `sysio::tls_names`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Negotiated {
    pub version: String,
    pub cipher_suite: String,
    pub kx_group: Option<String>,
    pub alpn: Option<String>,
    pub resumed: bool,
}

impl Negotiated {
    pub fn of(conn: &rustls::ClientConnection) -> Negotiated {
        Negotiated {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            },
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map(|s| sysio::tls_names::canonical_suite(s.suite().as_str().unwrap_or("unknown")))
                .unwrap_or_default(),
            kx_group: conn
                .negotiated_key_exchange_group()
                .map(|g| sysio::tls_names::canonical_group(g.name().as_str().unwrap_or("unknown"))),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }
}

/// A short hint for handshake errors a user can fix with a flag.
pub fn hint(err: &std::io::Error) -> Option<&'static str> {
    let inner = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(_) => {
            Some("the server's certificate is not trusted: pass --cacert PEM, or --insecure")
        }
        rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure) => {
            Some("the server accepts none of the offered versions, suites or groups")
        }
        _ => None,
    }
}

fn pick_suites(names: &[String]) -> Result<Vec<rustls::SupportedCipherSuite>, TlsConfigError> {
    let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
    let name_of = |s: &rustls::SupportedCipherSuite| {
        sysio::tls_names::canonical_suite(s.suite().as_str().unwrap_or_default())
    };
    names
        .iter()
        .map(|wanted| {
            let canonical = sysio::tls_names::canonical_suite(wanted);
            all.iter()
                .find(|s| name_of(s) == canonical)
                .copied()
                .ok_or_else(|| TlsConfigError::Suite {
                    name: wanted.clone(),
                    available: all.iter().map(name_of).collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

fn pick_groups(
    names: &[String],
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, TlsConfigError> {
    let all = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
    let name_of = |g: &&'static dyn rustls::crypto::SupportedKxGroup| {
        sysio::tls_names::canonical_group(g.name().as_str().unwrap_or_default())
    };
    names
        .iter()
        .map(|wanted| {
            let canonical = sysio::tls_names::canonical_group(wanted);
            all.iter()
                .find(|g| name_of(g) == canonical)
                .copied()
                .ok_or_else(|| TlsConfigError::Group {
                    name: wanted.clone(),
                    available: all.iter().map(name_of).collect::<Vec<_>>().join(", "),
                })
        })
        .collect()
}

fn roots_from_file(path: &PathBuf) -> Result<RootCertStore, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::CaRead {
        path: path.clone(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::CaPem {
            path: path.clone(),
            detail: format!("malformed PEM: {e:?}"),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::CaPem {
            path: path.clone(),
            detail: "no PEM CERTIFICATE block".into(),
        });
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| TlsConfigError::CaPem {
            path: path.clone(),
            detail: format!("unusable certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// The platform's trusted roots; an empty store (every chain fails with a clear error that
/// points at --cacert) where there are none.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// `--insecure`: accepts any certificate chain and name, but verifies the handshake
/// signatures with the provider's algorithms, so the client does the same crypto work as
/// with verification and only the chain check is skipped.
#[derive(Debug)]
struct NoChainCheck {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoChainCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Servers remembered per thread's session cache: loadgen talks to one.
/// TLS 1.3 tickets kept per server, per thread. rustls's own cache keeps 8, and tickets are
/// single-use: with more connections than that on a thread, most `--tls-resume` handshakes
/// found no ticket and went full (a third resumed at 50 connections). One per connection
/// slot is what a resuming client population looks like; this is far above any thread's.
const TICKETS_PER_SERVER: usize = 65_536;

/// One thread's session store: as rustls's `ClientSessionMemoryCache`, but with room for a
/// ticket per connection ([`TICKETS_PER_SERVER`]).
#[derive(Debug, Default)]
struct TicketStore {
    servers: Mutex<HashMap<ServerName<'static>, Sessions>>,
}

#[derive(Debug, Default)]
struct Sessions {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl TicketStore {
    fn with<T>(&self, name: &ServerName<'_>, f: impl FnOnce(&mut Sessions) -> T) -> T {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        f(servers.entry(name.to_owned()).or_default())
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.with(&name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(name, |s| s.kx_hint)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.with(&name, |s| s.tls12 = Some(value));
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(name, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name, |s| s.tls12 = None);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.with(&name, |s| {
            if s.tls13.len() == TICKETS_PER_SERVER {
                s.tls13.pop_front();
            }
            s.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // Newest first: the oldest are the likeliest to have expired.
        self.with(name, |s| s.tls13.pop_back())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> TlsOptions {
        TlsOptions {
            host: "127.0.0.1".into(),
            insecure: true,
            ..TlsOptions::default()
        }
    }

    #[test]
    fn suites_and_groups_are_restricted_exactly() {
        let client = TlsClient::build(&TlsOptions {
            cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
            kx_groups: vec!["secp256r1".into(), "X25519MLKEM768".into()],
            version: Some(TlsVersionArg::Tls13),
            ..opts()
        })
        .unwrap();
        let provider = client.config.crypto_provider();
        assert_eq!(provider.cipher_suites.len(), 1);
        let groups: Vec<_> = provider
            .kx_groups
            .iter()
            .map(|g| sysio::tls_names::canonical_group(g.name().as_str().unwrap()))
            .collect();
        assert_eq!(groups, ["secp256r1", "X25519MLKEM768"]);
    }

    #[test]
    fn unknown_names_list_what_is_available() {
        let err = TlsClient::build(&TlsOptions {
            cipher_suites: vec!["TLS_NOPE".into()],
            ..opts()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--cipher-suite TLS_NOPE") && err.contains("TLS_AES_128_GCM_SHA256"),
            "{err}"
        );
        let err = TlsClient::build(&TlsOptions {
            kx_groups: vec!["ffdhe2048".into()],
            ..opts()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--kx-group ffdhe2048") && err.contains("X25519"),
            "{err}"
        );
    }

    #[test]
    fn a_tls13_suite_with_tls12_only_is_refused() {
        let err = TlsClient::build(&TlsOptions {
            cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
            version: Some(TlsVersionArg::Tls12),
            ..opts()
        })
        .unwrap_err();
        assert!(matches!(err, TlsConfigError::Incompatible(_)), "{err}");
    }

    #[test]
    fn cacert_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TlsClient::build(&TlsOptions {
            cacert: Some(missing),
            insecure: false,
            ..opts()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("missing.pem") && err.contains("--cacert"),
            "{err}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = TlsClient::build(&TlsOptions {
            cacert: Some(junk),
            insecure: false,
            ..opts()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("junk.pem") && err.contains("no PEM"), "{err}");
    }
}
