//! [`Overrides`]: every plan key, once. The same struct is the TOML plan file (serde, see
//! `harness/plans/example.toml`) and the plan flags of the command line (clap, flattened
//! into `Cli`), so a key is one field here: its doc comment is the `--help` text, its
//! attributes say how flag and file value are parsed. Adding a key means a field here, the
//! `Plan` field it lands in (`apply`) and a README row.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use proxy::tls::{Backend, TlsVersion};
use serde::{Deserialize, Deserializer};

use super::{CertType, ConfigPick, Plan, Preset, Scenario};
use crate::cpus::CpuList;
use crate::faults::AttackerSched;

/// Settings laid over a preset: from the command line or from a plan file. `None` keeps
/// what is below. Unknown plan-file keys are an error, so a misspelt key never silently
/// falls back to a default. Values the file writes as strings go through the same parsers
/// as the flags, so both accept the same spellings and fail with the same words.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Built-in plan to start from: smoke (seconds, CI), quick (default, a few minutes),
    /// seed (the original experiment: http, https and proxy on native-tls, TLS 1.2, 30 s
    /// runs, 5 iterations, 3000 connections; about 35 minutes).
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "parsed")]
    pub preset: Option<Preset>,
    /// What to measure: sweep (body sizes, keep-alive; the default), handshakes (full and
    /// resumed, ECDSA and RSA), idle (memory per idle connection), all (those three),
    /// faults (the fault suite under load), soak (its 30-minute long run), sni-scale
    /// (--sni-certs certificates in one listener: start-up, memory, handshakes, reloads).
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "parsed")]
    pub scenario: Option<Scenario>,
    /// Configs, comma-separated: http, relay, https-rustls, https-openssl, https-native-tls,
    /// proxy-rustls, proxy-openssl, proxy-native-tls, haproxy, haproxy-awslc, nginx, hitch,
    /// stunnel, or all (peers that are not installed are skipped with the Debian package to
    /// install; the native-tls ones, TLS 1.2 only, are skipped with --tls-version 1.3). The
    /// fault suite attacks proxy-rustls, haproxy, haproxy-awslc, nginx or hitch (default:
    /// proxy-rustls alone).
    #[arg(long, value_delimiter = ',')]
    #[serde(default, deserialize_with = "configs")]
    pub configs: Option<Vec<ConfigPick>>,
    /// Request body sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<u64>>,
    /// Rounds over every config and size.
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub iterations: Option<NonZeroU32>,
    /// Measured period of each run (5s, 500ms, 1m).
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub duration: Option<Duration>,
    /// Load before the measured period, not counted.
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub warmup: Option<Duration>,
    /// Concurrent connections of the load generator.
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub connections: Option<NonZeroU32>,
    /// Load generator threads, of each process (default: one per client CPU it runs on).
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub client_threads: Option<NonZeroU32>,
    /// Load generator processes per measurement (default 1), each running its segment of
    /// the load (loadgen --segment i/N) on its round-robin share of the client CPUs, their
    /// reports merged into one row. Sweep and handshakes only.
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub client_processes: Option<NonZeroU32>,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Per-request timeout of the load generator.
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// How long a server may take to print `listening on`.
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub ready_timeout: Option<Duration>,
    /// TLS backends, comma-separated (rustls-aws-lc, rustls-ring, openssl, native-tls): the
    /// rustls configs run once per rustls flavour listed.
    #[arg(long, value_delimiter = ',', value_parser = parse_backend)]
    #[serde(default, deserialize_with = "backends")]
    pub tls_backends: Option<Vec<Backend>>,
    /// Key type of the run's certificate.
    #[arg(long, value_enum)]
    #[serde(default, deserialize_with = "parsed")]
    pub cert_type: Option<CertType>,
    /// TLS version the load generator offers (1.2 or 1.3).
    #[arg(long, value_parser = parse_tls_version)]
    #[serde(default, deserialize_with = "tls_version")]
    pub tls_version: Option<TlsVersion>,
    /// Cipher suite the load generator offers (IANA name; repeatable or comma-separated).
    #[arg(
        long = "cipher-suite",
        value_name = "CIPHER_SUITE",
        value_delimiter = ','
    )]
    pub cipher_suites: Option<Vec<String>>,
    /// Key-exchange group the load generator offers (X25519, secp256r1, ...; repeatable).
    #[arg(long = "kx-group", value_name = "KX_GROUP", value_delimiter = ',')]
    pub kx_groups: Option<Vec<String>>,
    /// CPUs for the servers, e.g. 0-2 (default: all but the last of the harness's mask).
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    pub server_cpus: Option<CpuList>,
    /// CPUs for the load generator, e.g. 3 (default: the last of the harness's mask).
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    pub client_cpus: Option<CpuList>,
    /// Connections the idle scenario holds open through each terminator.
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub idle_connections: Option<NonZeroU32>,
    /// How long the idle scenario holds them.
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub idle_hold: Option<Duration>,
    /// The fault suite's scenarios to run, by number, comma-separated (default: 1-8).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_scenario)]
    #[serde(default, deserialize_with = "fault_scenarios")]
    pub fault_scenarios: Option<Vec<u8>>,
    /// CPUs for the fault suite's attackers (default: the load generator's, --client-cpus).
    #[arg(long)]
    #[serde(default, deserialize_with = "parsed")]
    pub attacker_cpus: Option<CpuList>,
    /// Scheduling policy of the fault suite's attackers: idle (SCHED_IDLE: they never delay
    /// the load generator they share a CPU with) or normal (they compete with it).
    #[arg(long, value_enum)]
    pub attacker_sched: Option<AttackerSched>,
    /// Length of `--scenario soak` (default 30m).
    #[arg(long, value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration")]
    pub soak_duration: Option<Duration>,
    /// SNI certificates in the one listener of `--scenario sni-scale` (default 10000; the
    /// smoke preset 200).
    #[arg(long)]
    #[serde(default, deserialize_with = "at_least_one")]
    pub sni_certs: Option<NonZeroU32>,
    /// Measure this URL (a proxy elsewhere) instead of starting local servers.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Which HAProxy, nginx, hitch and stunnel to run: the host's packages (`system`) or
    /// the current releases `harness peers install` made (`current`). Default: current
    /// when installed, else system.
    #[arg(long, value_enum)]
    pub peers: Option<super::PeerSet>,
}

impl Overrides {
    /// Reads a plan file.
    pub(super) fn load(path: &Path) -> anyhow::Result<Overrides> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading plan file {}", path.display()))?;
        Overrides::parse(&text).with_context(|| format!("plan file {}", path.display()))
    }

    /// Parses a plan file's text. An error at a key (an unknown key, a bad value) is
    /// reported as `key `name`: why`; one at no key (TOML syntax) keeps toml's excerpt of
    /// the line.
    pub(super) fn parse(text: &str) -> anyhow::Result<Overrides> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            if key == "." {
                anyhow::Error::new(inner)
            } else {
                anyhow::anyhow!("key `{key}`: {}", inner.message())
            }
        })
    }

    pub(super) fn any_set(&self) -> bool {
        let Overrides { preset, .. } = self;
        let unset = Overrides {
            preset: *preset,
            ..Overrides::default()
        };
        *self != unset
    }

    pub(super) fn apply(self, plan: &mut Plan) {
        macro_rules! lay {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { plan.$field = v; } )* };
        }
        lay!(
            scenario,
            iterations,
            duration,
            warmup,
            connections,
            client_processes,
            timeout,
            ready_timeout,
            cert_type,
            tls_version,
            cipher_suites,
            kx_groups,
            idle_connections,
            idle_hold,
            soak_duration,
            attacker_sched,
            sni_certs
        );
        if let Some(picks) = self.configs {
            plan.configs = ConfigPick::expand(&picks);
        }
        if let Some(sizes) = self.sizes {
            plan.sizes = dedup(sizes);
        }
        if let Some(backends) = self.tls_backends {
            plan.tls_backends = dedup(backends);
        }
        if self.client_threads.is_some() {
            plan.client_threads = self.client_threads;
        }
        if self.rate.is_some() {
            plan.rate = self.rate;
        }
        if self.server_cpus.is_some() {
            plan.server_cpus = self.server_cpus;
        }
        if self.client_cpus.is_some() {
            plan.client_cpus = self.client_cpus;
        }
        if let Some(numbers) = self.fault_scenarios {
            plan.fault_scenarios = dedup(numbers);
        }
        if self.attacker_cpus.is_some() {
            plan.attacker_cpus = self.attacker_cpus;
        }
        if self.target.is_some() {
            plan.target = self.target;
        }
        if self.peers.is_some() {
            plan.peers = self.peers;
        }
    }
}

/// `5s`, `500ms`, `1m 30s` (humantime), or plain seconds such as `0.5`.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .with_context(|| format!("{s:?} is not a duration such as 5s or 500ms"));
    }
    humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is not a duration such as 5s or 500ms"))
}

/// `rustls-aws-lc,rustls-ring,openssl`.
fn parse_backends(items: &[String]) -> anyhow::Result<Vec<Backend>> {
    let backends = items
        .iter()
        .map(|s| parse_backend(s.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if backends.is_empty() {
        bail!("no TLS backend given; backends: {}", backend_names());
    }
    Ok(backends)
}

fn parse_backend(s: &str) -> anyhow::Result<Backend> {
    Backend::ALL
        .into_iter()
        .find(|b| b.name() == s)
        .with_context(|| format!("unknown TLS backend {s:?}; backends: {}", backend_names()))
}

fn backend_names() -> String {
    Backend::ALL.map(Backend::name).join(", ")
}

/// One of the fault suite's scenarios 1-8 (9, the soak, is `--scenario soak`).
fn parse_fault_scenario(s: &str) -> anyhow::Result<u8> {
    match s.trim().parse::<u8>() {
        Ok(n) if (1..=8).contains(&n) => Ok(n),
        _ => bail!(
            "fault scenario {s:?}: scenarios are numbered 1 to 8 (9, the soak, is --scenario soak)"
        ),
    }
}

fn parse_tls_version(s: &str) -> anyhow::Result<TlsVersion> {
    match s {
        "1.2" | "TLSv1.2" => Ok(TlsVersion::Tls12),
        "1.3" | "TLSv1.3" => Ok(TlsVersion::Tls13),
        _ => bail!("unknown TLS version {s:?}; versions: 1.2, 1.3"),
    }
}

/// Chooses between a preset name and a plan file for `--plan VALUE`: an existing file or
/// anything that looks like a path is a file; otherwise it must be a preset name.
pub fn preset_or_file(value: &str) -> anyhow::Result<(Option<Preset>, Option<PathBuf>)> {
    let path = Path::new(value);
    if path.exists() || value.contains('/') || value.ends_with(".toml") {
        return Ok((None, Some(path.to_owned())));
    }
    match value.parse::<Preset>() {
        Ok(preset) => Ok((Some(preset), None)),
        Err(_) => bail!("--plan {value:?}: no such file, and not a preset (smoke, quick, seed)"),
    }
}

pub(super) fn dedup<T: PartialEq + Clone>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

// Plan-file deserializers for `#[serde(deserialize_with)]`: the file writes these values as
// strings (lists of strings), parsed by the functions the flags use. The message is the
// parser's error chain; `Overrides::parse` puts the key in front.

fn with<'de, D, T>(d: D, parse: impl Fn(&str) -> anyhow::Result<T>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    parse(&text).map(Some).map_err(custom)
}

/// [`with`] for a list of strings parsed as a whole (an empty list is an error there).
fn with_list<'de, D, T>(
    d: D,
    parse: impl Fn(&[String]) -> anyhow::Result<T>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let items = Vec::<String>::deserialize(d)?;
    parse(&items).map(Some).map_err(custom)
}

fn custom<E: serde::de::Error>(e: anyhow::Error) -> E {
    E::custom(format!("{e:#}"))
}

fn parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = anyhow::Error>,
{
    with(d, str::parse)
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    with(d, parse_duration)
}

/// Numbers in the file (`[1, 3]`), each checked as the flag's are.
fn fault_scenarios<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let numbers = Vec::<i64>::deserialize(d)?;
    if numbers.is_empty() {
        return Err(custom(anyhow::anyhow!(
            "no scenario given (leave the key out to run them all)"
        )));
    }
    numbers
        .iter()
        .map(|n| parse_fault_scenario(&n.to_string()))
        .collect::<anyhow::Result<Vec<u8>>>()
        .map(Some)
        .map_err(custom)
}

fn tls_version<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TlsVersion>, D::Error> {
    with(d, parse_tls_version)
}

fn at_least_one<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NonZeroU32>, D::Error> {
    let n = u32::deserialize(d)?;
    NonZeroU32::new(n)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("must be at least 1"))
}

fn configs<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ConfigPick>>, D::Error> {
    with_list(d, ConfigPick::parse_list)
}

fn backends<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Backend>>, D::Error> {
    with_list(d, parse_backends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Variant;

    #[test]
    fn a_plan_file_and_the_flags_fill_the_same_overrides() {
        let file = Overrides::parse(
            r#"
            configs = ["http", "all"]
            duration = "500ms"
            tls_version = "TLSv1.2"
            tls_backends = ["rustls-ring"]
            cipher_suites = ["TLS_AES_256_GCM_SHA384"]
            idle_connections = 3
            server_cpus = "0-1"
            client_processes = 2
            fault_scenarios = [1, 3]
            attacker_cpus = "0"
            attacker_sched = "idle"
            "#,
        )
        .unwrap();
        let flags = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "harness",
            "--configs=http,all",
            "--duration=500ms",
            "--tls-version=TLSv1.2",
            "--tls-backends=rustls-ring",
            "--cipher-suite=TLS_AES_256_GCM_SHA384",
            "--idle-connections=3",
            "--server-cpus=0-1",
            "--client-processes=2",
            "--fault-scenarios=1,3",
            "--attacker-cpus=0",
            "--attacker-sched=idle",
        ])
        .unwrap();
        assert_eq!(flags.overrides, file);
    }

    #[test]
    fn cli_overrides_file_overrides_preset() {
        let file = Overrides::parse(
            r#"
            preset = "smoke"
            sizes = [100, 200]
            duration = "2s"
            connections = 7
            configs = ["http", "proxy-rustls"]
            "#,
        )
        .unwrap();
        assert_eq!(file.preset, Some(Preset::Smoke));
        let mut plan = Preset::Smoke.plan();
        file.apply(&mut plan);
        let cli = Overrides {
            duration: Some(Duration::from_millis(1500)),
            tls_backends: Some(vec![Backend::RustlsRing, Backend::RustlsAwsLc]),
            ..Overrides::default()
        };
        cli.apply(&mut plan);
        assert_eq!(plan.sizes, vec![100, 200]);
        assert_eq!(plan.connections.get(), 7);
        assert_eq!(plan.duration, Duration::from_millis(1500));
        assert_eq!(plan.warmup, Duration::from_millis(500), "from the preset");
        let labels: Vec<String> = plan.variants().iter().map(Variant::label).collect();
        assert_eq!(labels, ["http", "proxy-rustls-ring", "proxy-rustls-aws-lc"]);
    }

    #[test]
    fn unknown_key_and_bad_values_name_the_key() {
        let err = format!("{:#}", Overrides::parse("duratoin = \"5s\"").unwrap_err());
        assert!(err.contains("duratoin"), "{err}");
        let err = format!("{:#}", Overrides::parse("duration = \"soon\"").unwrap_err());
        assert!(err.contains("key `duration`"), "{err}");
        let err = format!("{:#}", Overrides::parse("iterations = 0").unwrap_err());
        assert!(err.contains("key `iterations`"), "{err}");
        let err = format!(
            "{:#}",
            Overrides::parse("client_processes = 0").unwrap_err()
        );
        assert!(err.contains("key `client_processes`"), "{err}");
        let err = format!(
            "{:#}",
            Overrides::parse("server_cpus = \"1-0\"").unwrap_err()
        );
        assert!(err.contains("key `server_cpus`"), "{err}");
        for (text, key, why) in [
            (
                "fault_scenarios = [0]",
                "fault_scenarios",
                "numbered 1 to 8",
            ),
            (
                "fault_scenarios = [9]",
                "fault_scenarios",
                "--scenario soak",
            ),
            (
                "fault_scenarios = []",
                "fault_scenarios",
                "no scenario given",
            ),
            (
                "attacker_sched = \"low\"",
                "attacker_sched",
                "unknown variant",
            ),
            ("attacker_cpus = \"x\"", "attacker_cpus", "not a CPU number"),
        ] {
            let err = format!("{:#}", Overrides::parse(text).unwrap_err());
            assert!(err.contains(&format!("key `{key}`")), "{text}: {err}");
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn fault_scenario_flags_are_checked_and_laid_over_the_plan() {
        let parse = |args: &[&str]| {
            <crate::cli::Cli as clap::Parser>::try_parse_from(
                std::iter::once("harness").chain(args.iter().copied()),
            )
        };
        let err = parse(&["--fault-scenarios=1,9"]).unwrap_err().to_string();
        assert!(err.contains("numbered 1 to 8"), "{err}");
        assert!(parse(&["--attacker-sched=nice"]).is_err());
        let flags = parse(&["--fault-scenarios=3,1,3", "--attacker-sched=normal"]).unwrap();
        let mut plan = Preset::Smoke.plan();
        assert!(
            plan.fault_scenarios.is_empty(),
            "all scenarios unless asked"
        );
        assert_eq!(
            plan.attacker_cpus, None,
            "the load generator's CPUs unless asked"
        );
        flags.overrides.apply(&mut plan);
        assert_eq!(plan.fault_scenarios, [3, 1]);
        assert_eq!(plan.attacker_sched, AttackerSched::Normal);
    }

    #[test]
    fn durations_accept_units_and_seconds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn plan_flag_tells_presets_from_files() {
        assert_eq!(
            preset_or_file("smoke").unwrap(),
            (Some(Preset::Smoke), None)
        );
        let (_, file) = preset_or_file("plans/x.toml").unwrap();
        assert_eq!(file, Some(PathBuf::from("plans/x.toml")));
        let err = preset_or_file("fast").unwrap_err().to_string();
        assert!(err.contains("not a preset"), "{err}");
    }

    #[test]
    fn example_plan_file_parses() {
        let text = include_str!("../../plans/example.toml");
        let overrides = Overrides::parse(text).unwrap();
        let mut plan = Preset::Quick.plan();
        overrides.apply(&mut plan);
        plan.validate().unwrap();
    }
}
