//! Throwaway self-signed certificates generated at run time (rcgen): for tests, quick
//! starts and the harness. Never for production; nothing here is checked in.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::CertPaths;

/// The key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (the benchmarks' default).
    #[default]
    EcdsaP256,
    /// RSA 2048 with SHA-256.
    Rsa2048,
    Ed25519,
}

impl KeyKind {
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Ed25519 => "ed25519",
        }
    }
}

/// A generated certificate and key, both PEM.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("generating a {kind} certificate: {detail}")]
    Generate { kind: &'static str, detail: String },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Generates a self-signed certificate valid for `names` (DNS names or IP addresses).
pub fn generate(kind: KeyKind, names: &[&str]) -> Result<SelfSigned, SelfSignedError> {
    let fail = |e: &dyn std::fmt::Display| SelfSignedError::Generate {
        kind: kind.name(),
        detail: e.to_string(),
    };
    // Keys OpenSSL generates are written as PKCS#8 v1, which every backend reads.
    let from_openssl = |pkey: openssl::pkey::PKey<openssl::pkey::Private>,
                        alg: &'static rcgen::SignatureAlgorithm| {
        let pem = pkey.private_key_to_pem_pkcs8().map_err(|e| fail(&e))?;
        let pem = String::from_utf8(pem).map_err(|e| fail(&e))?;
        rcgen::KeyPair::from_pem_and_sign_algo(&pem, alg).map_err(|e| fail(&e))
    };
    let key = match kind {
        KeyKind::EcdsaP256 => {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| fail(&e))?
        }
        // Not rcgen's own: aws-lc writes Ed25519 keys as PKCS#8 v2 (RFC 5958, public key
        // included), which OpenSSL 3.0 refuses to read.
        KeyKind::Ed25519 => from_openssl(
            openssl::pkey::PKey::generate_ed25519().map_err(|e| fail(&e))?,
            &rcgen::PKCS_ED25519,
        )?,
        KeyKind::Rsa2048 => {
            // rcgen cannot generate RSA keys with every provider; OpenSSL always can.
            let rsa = openssl::rsa::Rsa::generate(2048).map_err(|e| fail(&e))?;
            from_openssl(
                openssl::pkey::PKey::from_rsa(rsa).map_err(|e| fail(&e))?,
                &rcgen::PKCS_RSA_SHA256,
            )?
        }
    };
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| fail(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tls-off self-signed");
    let cert = params.self_signed(&key).map_err(|e| fail(&e))?;
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Generates a throwaway ECDSA P-256 certificate authority named `common_name`, for tests
/// and the fault suite to issue client and server certificates from (rcgen's `signed_by`).
pub fn generate_ca(
    common_name: &str,
) -> Result<(rcgen::Certificate, rcgen::KeyPair), SelfSignedError> {
    let fail = |e: rcgen::Error| SelfSignedError::Generate {
        kind: "CA",
        detail: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert, key))
}

/// Generates a certificate for `localhost` and `127.0.0.1`/`::1` and writes `cert.pem` and
/// `key.pem` (mode 0600) into `dir`.
pub fn write_to_dir(dir: &Path, kind: KeyKind) -> Result<CertPaths, SelfSignedError> {
    let generated = generate(kind, &["localhost", "127.0.0.1", "::1"])?;
    generated.write(dir, "cert.pem", "key.pem")
}

impl SelfSigned {
    /// Writes the pair into `dir` under the given names; the key file gets mode 0600.
    pub fn write(&self, dir: &Path, cert: &str, key: &str) -> Result<CertPaths, SelfSignedError> {
        let paths = CertPaths {
            cert: dir.join(cert),
            key: dir.join(key),
        };
        write_file(&paths.cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&paths.key, self.key_pem.as_bytes(), 0o600)?;
        Ok(paths)
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SelfSignedError> {
    let err = |source| SelfSignedError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn key_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_to_dir(dir.path(), KeyKind::EcdsaP256).unwrap();
        let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(&paths.cert).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn generated_ca_is_a_ca_with_its_name() {
        let (cert, _key) = generate_ca("tls-off unit CA").unwrap();
        let params = cert.params();
        assert!(matches!(params.is_ca, rcgen::IsCa::Ca(_)));
        assert!(params
            .key_usages
            .contains(&rcgen::KeyUsagePurpose::KeyCertSign));
        assert!(cert.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
