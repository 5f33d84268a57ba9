//! The harness's certificates, made in one place: the sweep's self-signed certificate per
//! key type (with the combined PEM file HAProxy and hitch read), and the fault suite's CA
//! with the leaves it issues and the corrupt certificate its reload scenario installs. Keys
//! and signatures are `proxy::tls::selfsigned`'s (rcgen), so both sides get certificates
//! the same way.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use proxy::tls::selfsigned::{self, KeyKind};
use proxy::tls::CertPaths;

use crate::plan::{CertType, Plan, Scenario};

/// A self-signed certificate written to a directory: `cert.pem`, `key.pem` and
/// `combined.pem` (certificate then key, the one file HAProxy and hitch read).
#[derive(Debug, Clone)]
pub struct SelfSignedFiles {
    pub paths: CertPaths,
    pub combined: PathBuf,
}

/// Generates a self-signed `kind` certificate for `localhost`, `127.0.0.1` and `::1` into
/// `dir`.
pub fn write_self_signed(dir: &Path, kind: KeyKind) -> anyhow::Result<SelfSignedFiles> {
    let paths = selfsigned::write_to_dir(dir, kind)
        .with_context(|| format!("generating the run's {} certificate", kind.name()))?;
    let combined = dir.join("combined.pem");
    let mut text =
        std::fs::read(&paths.cert).with_context(|| format!("reading {}", paths.cert.display()))?;
    text.extend(
        std::fs::read(&paths.key).with_context(|| format!("reading {}", paths.key.display()))?,
    );
    // It holds the private key: owner only.
    write_atomically(&combined, &text, 0o600)?;
    Ok(SelfSignedFiles { paths, combined })
}

/// The run's certificates (sweep, handshakes, idle): the plan's type, and both types for
/// the handshake scenario, each in its own folder under the run's private runtime folder.
#[derive(Debug)]
pub struct Certs(Vec<(CertType, SelfSignedFiles)>);

impl Certs {
    pub fn generate(dir: &Path, plan: &Plan) -> anyhow::Result<Certs> {
        let mut types = vec![plan.cert_type];
        if plan.scenario.parts().contains(&Scenario::Handshakes) {
            for t in [CertType::EcdsaP256, CertType::Rsa2048] {
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        let mut out = Vec::new();
        for t in types {
            let sub = dir.join(t.name());
            std::fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
            out.push((t, write_self_signed(&sub, t.key_kind())?));
        }
        Ok(Certs(out))
    }

    /// The certificate of type `t`: its files, and the combined PEM file.
    pub fn get(&self, t: CertType) -> anyhow::Result<(&CertPaths, &Path)> {
        self.0
            .iter()
            .find(|(k, _)| *k == t)
            .map(|(_, f)| (&f.paths, f.combined.as_path()))
            .with_context(|| format!("internal error: no {} certificate generated", t.name()))
    }
}

/// A CA and the leaves it issues (ECDSA P-256): the fault suite's, so certificates can
/// rotate under clients that trust only the CA.
pub struct Pki {
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    /// The CA certificate on disk, for loadgen's `--cacert`.
    pub ca_path: PathBuf,
    serial: u64,
    /// Whose certificates these are (`fault suite`), in every subject's common name.
    label: &'static str,
}

/// One issued certificate.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate's DER, to recognise it when the proxy serves it.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_path", &self.ca_path)
            .field("serial", &self.serial)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// The fault suite's CA, written to `dir/ca.pem`.
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        Pki::create_for(dir, "fault suite")
    }

    /// A CA for `label` (`fault suite`, `sni-scale`), written to `dir/ca.pem`.
    pub fn create_for(dir: &Path, label: &'static str) -> anyhow::Result<Pki> {
        let (ca, ca_key) = selfsigned::generate_ca(&format!("tls-off {label} CA"))
            .with_context(|| format!("the {label} CA"))?;
        let ca_path = dir.join("ca.pem");
        write_atomically(&ca_path, ca.pem().as_bytes(), 0o644)?;
        Ok(Pki {
            ca_key,
            ca,
            ca_path,
            serial: 0,
            label,
        })
    }

    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A fresh leaf for `names` (DNS names or IP addresses) with its own key and a new
    /// serial number.
    pub fn issue(&mut self, names: &[&str]) -> anyhow::Result<Leaf> {
        self.serial += 1;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("generating a leaf key")?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).context("leaf parameters")?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("tls-off {} leaf {}", self.label, self.serial),
        );
        params.serial_number = Some(rcgen::SerialNumber::from(self.serial));
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .context("signing a leaf")?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

impl Leaf {
    /// Writes key then certificate, each by rename, so a reload never reads half a file.
    pub fn install(&self, paths: &CertPaths) -> anyhow::Result<()> {
        write_atomically(&paths.key, self.key_pem.as_bytes(), 0o600)?;
        write_atomically(&paths.cert, self.cert_pem.as_bytes(), 0o644)
    }

    /// Writes certificate then key into the one file HAProxy and hitch read, by rename.
    pub fn install_combined(&self, path: &Path) -> anyhow::Result<()> {
        let text = format!("{}{}", self.cert_pem, self.key_pem);
        write_atomically(path, text.as_bytes(), 0o600)
    }
}

/// Writes `path.tmp` and renames it over `path`.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Installs a file that looks like a certificate and is not one at `path` (by rename, as
/// [`Leaf::install`] does), for a reload that must be refused.
pub fn write_corrupt_cert(path: &Path) -> anyhow::Result<()> {
    write_atomically(path, CORRUPT_PEM.as_bytes(), 0o644)
}

/// A file that looks like a certificate and is not one.
const CORRUPT_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

    #[test]
    fn leaves_chain_to_the_ca_and_differ() {
        let dir = tempfile::tempdir().unwrap();
        let mut pki = Pki::create(dir.path()).unwrap();
        let a = pki.issue(&NAMES).unwrap();
        let b = pki.issue(&NAMES).unwrap();
        assert_ne!(a.der, b.der);
        assert!(std::fs::read_to_string(&pki.ca_path)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        // A client that trusts only the CA accepts the leaf.
        let mut roots = rustls::RootCertStore::empty();
        let ca: rustls::pki_types::CertificateDer<'_> =
            rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem().as_bytes()).unwrap();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(
                &rustls::pki_types::CertificateDer::from(b.der.clone()),
                &[],
                &rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .unwrap();
    }

    #[test]
    fn self_signed_files_hold_the_pair_and_the_combined_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_self_signed(dir.path(), KeyKind::EcdsaP256).unwrap();
        let cert = std::fs::read_to_string(&files.paths.cert).unwrap();
        let key = std::fs::read_to_string(&files.paths.key).unwrap();
        let combined = std::fs::read_to_string(&files.combined).unwrap();
        assert_eq!(combined, format!("{cert}{key}"));
        let mode = std::fs::metadata(&files.combined)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_corrupt_certificate_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        write_corrupt_cert(&path).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert!(text.starts_with(b"-----BEGIN CERTIFICATE-----"));
        // It parses as PEM, and what it holds is plain text, no X.509 structure.
        let der: rustls::pki_types::CertificateDer<'_> =
            rustls::pki_types::pem::PemObject::from_pem_slice(&text).unwrap();
        assert_eq!(der.as_ref(), b"not a certificate");
    }
}
