//! The built-in plans (`--preset`, the plan file's `preset` key): every setting's default.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use proxy::tls::{Backend, TlsVersion};

use super::{CertType, ConfigName, Plan, Scenario};
use crate::faults::AttackerSched;

/// Built-in plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Seconds in total: every config, two sizes, one short iteration (CI).
    Smoke,
    /// The default: a few minutes on two cores.
    Quick,
    /// The original experiment: http, https and the proxy in front of a Unix-socket echo,
    /// TLS through native-tls (so TLS 1.2), 30 s runs, 5 iterations, 3000 connections, one
    /// client thread.
    Seed,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Quick => "quick",
            Preset::Seed => "seed",
        }
    }

    pub const ALL: [Preset; 3] = [Preset::Smoke, Preset::Quick, Preset::Seed];

    /// The plan this preset stands for, with every default filled in.
    pub fn plan(self) -> Plan {
        let base = Plan {
            source: format!("preset {}", self.name()),
            scenario: Scenario::Sweep,
            configs: ConfigName::ALL.to_vec(),
            sizes: vec![10, 1000, 10_000],
            iterations: nz(2),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            connections: nz(50),
            client_threads: None,
            client_processes: nz(1),
            rate: None,
            timeout: Duration::from_secs(5),
            ready_timeout: DEFAULT_READY_TIMEOUT,
            tls_backends: vec![Backend::RustlsAwsLc],
            cert_type: CertType::EcdsaP256,
            tls_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            kx_groups: Vec::new(),
            server_cpus: None,
            client_cpus: None,
            target: None,
            idle_connections: nz(10_000),
            idle_hold: Duration::from_secs(3),
            soak_duration: Duration::from_secs(30 * 60),
            short_faults: false,
            fault_scenarios: Vec::new(),
            attacker_cpus: None,
            attacker_sched: AttackerSched::DEFAULT,
            sni_certs: nz(10_000),
            peers: None,
        };
        match self {
            Preset::Quick => base,
            Preset::Smoke => Plan {
                // Ours and HAProxy (installed by .ci/run), so CI runs a peer; its AWS-LC
                // build too where the current peer set is installed. The native-tls configs,
                // TLS 1.2 only, are skipped with a line by this TLS 1.3 plan, so they add
                // nothing to its time.
                configs: ConfigName::OURS
                    .into_iter()
                    .chain([ConfigName::Haproxy, ConfigName::HaproxyAwslc])
                    .collect(),
                idle_connections: nz(200),
                idle_hold: Duration::from_secs(1),
                short_faults: true,
                sni_certs: nz(200),
                sizes: vec![10, 1000],
                iterations: nz(1),
                duration: Duration::from_secs(1),
                warmup: Duration::from_millis(500),
                connections: nz(10),
                ..base
            },
            Preset::Seed => Plan {
                // The experiment's three configurations, on its TLS stack: native-tls,
                // whose server speaks TLS 1.2 only.
                configs: vec![
                    ConfigName::Http,
                    ConfigName::HttpsNativeTls,
                    ConfigName::ProxyNativeTls,
                ],
                tls_version: TlsVersion::Tls12,
                sizes: vec![10, 100, 1000, 10_000],
                iterations: nz(5),
                duration: Duration::from_secs(30),
                warmup: Duration::from_secs(2),
                connections: nz(3000),
                client_threads: Some(nz(1)),
                ..base
            },
        }
    }
}

impl FromStr for Preset {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .with_context(|| format!("unknown preset {s:?}; presets: smoke, quick, seed"))
    }
}

pub(super) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("preset constants are above zero")
}

/// A server that has not printed `listening on` by then is reported as failed. Generous:
/// on a busy two-core machine a cold start of a TLS server can take a second or more.
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_their_promises() {
        let smoke = Preset::Smoke.plan();
        // Ours (the relay floor included) and HAProxy's two builds, two sizes.
        assert_eq!(smoke.measurements().len(), 16);
        let skipped: Vec<_> = smoke
            .skipped_configs()
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        assert_eq!(
            skipped,
            [ConfigName::HttpsNativeTls, ConfigName::ProxyNativeTls]
        );
        assert_eq!(smoke.duration, Duration::from_secs(1));
        let seed = Preset::Seed.plan();
        assert_eq!(seed.sizes, vec![10, 100, 1000, 10_000]);
        assert_eq!(seed.connections.get(), 3000);
        assert_eq!(seed.iterations.get(), 5);
        assert_eq!(seed.duration, Duration::from_secs(30));
        assert_eq!(seed.client_threads.map(NonZeroU32::get), Some(1));
        // http, https and proxy on native-tls, none skipped: 3 x 4 sizes x 5 iterations.
        assert!(seed.skipped_configs().is_empty());
        assert_eq!(seed.measurements().len(), 60);
        let backends: Vec<_> = seed.variants().iter().map(|v| v.backend).collect();
        let native = Some(Backend::NativeTls);
        assert_eq!(backends, [None, native, native]);
        assert!(seed.estimate() < Duration::from_secs(40 * 60));
        assert!(Preset::Quick.plan().estimate() < Duration::from_secs(8 * 60));
        assert!(smoke.estimate() < Duration::from_secs(40));
    }
}
