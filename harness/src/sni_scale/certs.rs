//! The scenario's certificates: one CA, a default certificate for a name nobody asks for,
//! and one leaf per SNI name (`n00000.sni-scale.test` ...), each with its own ECDSA P-256
//! key and only its own name in its subjectAltName. A client that trusts only the CA and
//! verifies the name it sent therefore fails the handshake whenever a terminator serves
//! any certificate but the one for that name, the default included.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use proxy::tls::CertPaths;

use crate::certs::{write_atomically, Leaf, Pki};

/// One certificate on disk: PEM certificate, PEM key, and both in one file (HAProxy and
/// hitch read that).
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub paths: CertPaths,
    pub combined: PathBuf,
}

/// A name of the list and its certificate.
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    pub files: CertFiles,
    /// The leaf's DER, to recognise it when a terminator serves it.
    pub der: Vec<u8>,
}

/// Every certificate of the scenario.
#[derive(Debug)]
pub struct SniCerts {
    /// The CA every leaf chains to, for loadgen's `--cacert` and the probe client.
    pub ca_path: PathBuf,
    pub ca_pem: String,
    /// Served to a client whose SNI names no certificate of the list.
    pub default: CertFiles,
    /// In list order: the first is at the start of every terminator's list, the last at
    /// its end.
    pub names: Vec<Named>,
    /// How long generating them took (reported, so a slow run can be told apart).
    pub generated_in_s: f64,
}

impl SniCerts {
    /// Generates the CA, the default certificate and `count` named leaves into `dir`.
    pub fn generate(dir: &Path, count: usize) -> anyhow::Result<SniCerts> {
        let started = Instant::now();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut pki = Pki::create_for(dir, "sni-scale")?;
        let default = write_leaf(dir, "default", &pki.issue(&[DEFAULT_NAME])?)?;
        let mut names = Vec::with_capacity(count);
        for i in 0..count {
            let name = name_of(i);
            let leaf = pki.issue(&[name.as_str()])?;
            let files = write_leaf(dir, &name, &leaf)?;
            names.push(Named {
                name,
                files,
                der: leaf.der,
            });
        }
        Ok(SniCerts {
            ca_path: pki.ca_path.clone(),
            ca_pem: pki.ca_pem(),
            default,
            names,
            generated_in_s: started.elapsed().as_secs_f64(),
        })
    }

    /// The first `count` names (the 1-certificate start takes one).
    pub fn first(&self, count: usize) -> &[Named] {
        &self.names[..count.min(self.names.len())]
    }

    /// Sets every certificate and key file's modification time to now: a terminator that
    /// skips files it has already loaded (hitch compares times) then reloads all of them,
    /// as ours does anyway.
    pub fn touch_all(&self) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let files = self
            .names
            .iter()
            .map(|n| &n.files)
            .chain(std::iter::once(&self.default));
        for f in files {
            for path in [&f.paths.cert, &f.paths.key, &f.combined] {
                let file = std::fs::File::options()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                file.set_modified(now)
                    .with_context(|| format!("touching {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// The `i`th name of the list: `n00042.sni-scale.test` (zero-padded, so names sort in list
/// order and all have one length).
pub fn name_of(i: usize) -> String {
    format!("n{i:05}.sni-scale.test")
}

/// The default certificate's name, which no client of the scenario asks for.
pub const DEFAULT_NAME: &str = "default.sni-scale.test";

/// `dir/<stem>.crt`, `.key` and `.pem` (certificate then key).
fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> anyhow::Result<CertFiles> {
    let paths = CertPaths {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    leaf.install(&paths)?;
    let combined = dir.join(format!("{stem}.pem"));
    let text = format!("{}{}", leaf.cert_pem, leaf.key_pem);
    write_atomically(&combined, text.as_bytes(), 0o600)?;
    Ok(CertFiles { paths, combined })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_has_its_own_leaf_with_only_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let certs = SniCerts::generate(dir.path(), 3).unwrap();
        assert_eq!(certs.names.len(), 3);
        assert_eq!(certs.names[2].name, "n00002.sni-scale.test");
        assert_ne!(certs.names[0].der, certs.names[1].der);
        let has = |der: &[u8], name: &str| der.windows(name.len()).any(|w| w == name.as_bytes());
        for (i, n) in certs.names.iter().enumerate() {
            // Its own name is in its DER (the subjectAltName), no other name of the list is.
            assert!(has(&n.der, &n.name));
            let other = &certs.names[(i + 1) % 3].name;
            assert!(!has(&n.der, other), "{} holds {other}", n.name);
            let pem = std::fs::read_to_string(&n.files.paths.cert).unwrap();
            let combined = std::fs::read_to_string(&n.files.combined).unwrap();
            assert!(combined.starts_with(&pem) && combined.contains("PRIVATE KEY"));
        }
        assert_eq!(certs.first(1).len(), 1);
        assert_eq!(certs.first(10).len(), 3);
        let before = std::fs::metadata(&certs.names[0].files.combined)
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        certs.touch_all().unwrap();
        let after = std::fs::metadata(&certs.names[0].files.combined)
            .unwrap()
            .modified()
            .unwrap();
        assert!(after > before);
    }
}
