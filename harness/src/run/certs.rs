//! The run's certificates, generated into its private runtime folder.

use std::path::{Path, PathBuf};

use anyhow::Context;
use proxy::tls::CertPaths;

use crate::plan::{CertType, Plan, Scenario};

/// The run's certificates: the plan's type, and both types for the handshake scenario.
pub(super) struct Certs(Vec<(CertType, CertPaths, PathBuf)>);

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
            let paths = proxy::tls::selfsigned::write_to_dir(&sub, t.key_kind())
                .with_context(|| format!("generating the run's {} certificate", t.name()))?;
            // HAProxy and hitch read the chain and the key from one file.
            let combined = sub.join("combined.pem");
            let mut text = std::fs::read(&paths.cert)
                .with_context(|| format!("reading {}", paths.cert.display()))?;
            text.extend(
                std::fs::read(&paths.key)
                    .with_context(|| format!("reading {}", paths.key.display()))?,
            );
            write_private(&combined, &text)?;
            out.push((t, paths, combined));
        }
        Ok(Certs(out))
    }

    pub fn get(&self, t: CertType) -> anyhow::Result<(&CertPaths, &Path)> {
        self.0
            .iter()
            .find(|(k, _, _)| *k == t)
            .map(|(_, p, c)| (p, c.as_path()))
            .with_context(|| format!("internal error: no {} certificate generated", t.name()))
    }
}

/// Writes a file only its owner can read (it holds a private key).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
