//! Which certificate a terminator serves for a name: one TLS connection per name (rustls,
//! trusting only the scenario's CA and verifying the name sent), and the leaf it got
//! compared byte for byte with the one issued for that name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::certs::Named;

/// What the check of some names found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    pub checked: usize,
    /// One line per name that got another certificate, or no handshake.
    pub wrong: Vec<String>,
}

/// Connects to `addr` once per name of `names` with that name as SNI and checks that the
/// leaf served is the one issued for it.
pub fn check(ca_pem: &str, addr: SocketAddr, names: &[&Named]) -> anyhow::Result<Served> {
    let connector = connector(ca_pem)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the certificate probe's runtime")?;
    let mut served = Served::default();
    for named in names {
        served.checked += 1;
        if let Err(e) = rt.block_on(one(&connector, addr, named)) {
            served.wrong.push(format!("{}: {e:#}", named.name));
        }
    }
    Ok(served)
}

/// Up to `most` names of `all`, evenly spread, always the first and the last.
pub fn sample(all: &[Named], most: usize) -> Vec<&Named> {
    let n = all.len();
    if n <= most {
        return all.iter().collect();
    }
    let steps = most.max(2) - 1;
    let mut picked: Vec<&Named> = (0..=steps).map(|k| &all[k * (n - 1) / steps]).collect();
    picked.dedup_by(|a, b| a.name == b.name);
    picked
}

async fn one(connector: &TlsConnector, addr: SocketAddr, named: &Named) -> anyhow::Result<()> {
    let name = ServerName::try_from(named.name.clone()).context("not a DNS name")?;
    let handshake = async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    };
    let tls = tokio::time::timeout(PROBE_LIMIT, handshake)
        .await
        .with_context(|| format!("no handshake within {PROBE_LIMIT:?}"))?
        .context("handshake")?;
    let (_, conn) = tls.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("no certificate served")?;
    anyhow::ensure!(
        leaf.as_ref() == named.der.as_slice(),
        "served a certificate that verifies for the name but is not the one issued for it"
    );
    Ok(())
}

fn connector(ca_pem: &str) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("reading the scenario's CA certificate")?)
            .context("adding the scenario's CA certificate")?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("building the probe client")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// One probe handshake, connect included.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn named(i: usize) -> Named {
        Named {
            name: super::super::certs::name_of(i),
            files: super::super::certs::CertFiles {
                paths: proxy::tls::CertPaths {
                    cert: "/c".into(),
                    key: "/k".into(),
                },
                combined: "/p".into(),
            },
            der: Vec::new(),
        }
    }

    #[test]
    fn the_sample_spreads_and_keeps_both_ends() {
        let all: Vec<Named> = (0..1000).map(named).collect();
        let picked = sample(&all, 5);
        let names: Vec<&str> = picked.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "n00000.sni-scale.test",
                "n00249.sni-scale.test",
                "n00499.sni-scale.test",
                "n00749.sni-scale.test",
                "n00999.sni-scale.test"
            ]
        );
        assert_eq!(sample(&all[..3], 5).len(), 3);
        assert_eq!(sample(&all[..1], 5).len(), 1);
    }
}
