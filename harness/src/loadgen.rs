//! The load generator's side of the contract: the command line the harness gives it and the
//! `--output json` report it reads back (schema 1). Unknown report fields are ignored so
//! loadgen can grow; the fields used here are required, so a renamed one fails loudly.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use loadgen::segment::Segment;
use serde::Deserialize;

use crate::plan::{Kind, Measurement, Plan};
use crate::procs::{describe, Proc, Stop};

/// How one load generator run is set up.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    pub url: &'a str,
    pub plan: &'a Plan,
    /// Body size, kind of load and the TLS parameters to offer.
    pub measurement: &'a Measurement,
    pub threads: u32,
    /// CA certificate to verify the server with (the run's self-signed one).
    pub cacert: Option<&'a Path>,
    /// Skip certificate verification (a remote target without `--cacert`).
    pub insecure: bool,
    /// This process's segment of the load (`--client-processes` above 1).
    pub segment: Option<Segment>,
}

impl Invocation<'_> {
    /// The full argument list, URL last.
    pub fn args(&self) -> Vec<OsString> {
        let plan = self.plan;
        let m = self.measurement;
        let mut args: Vec<OsString> = Vec::new();
        let push = |args: &mut Vec<OsString>, flag: &str, value: String| {
            args.push(flag.into());
            args.push(value.into());
        };
        push(&mut args, "-t", self.threads.to_string());
        push(&mut args, "-b", m.size.to_string());
        push(&mut args, "--timeout", duration_arg(plan.timeout));
        push(&mut args, "--output", "json".to_owned());
        if m.kind == Kind::Idle {
            push(&mut args, "-c", plan.idle_connections.to_string());
            push(&mut args, "-d", duration_arg(plan.idle_hold));
            args.push("--idle".into());
        } else {
            push(&mut args, "-c", plan.connections.to_string());
            push(&mut args, "-d", duration_arg(plan.duration));
            push(&mut args, "--warmup", duration_arg(plan.warmup));
            if let Some(rate) = plan.rate {
                push(&mut args, "--rate", rate.to_string());
            }
        }
        if let Some(segment) = self.segment {
            push(&mut args, "--segment", segment.to_string());
        }
        if let Kind::Handshake { resumed, .. } = m.kind {
            args.push("--no-keepalive".into());
            if resumed {
                args.push("--tls-resume".into());
            }
        }
        if is_tls_url(self.url) {
            push(&mut args, "--tls-version", tls_version_arg(m).to_owned());
            for suite in &m.tls.cipher_suites {
                push(&mut args, "--cipher-suite", suite.clone());
            }
            for group in &m.tls.kx_groups {
                push(&mut args, "--kx-group", group.clone());
            }
            if let Some(ca) = self.cacert {
                args.push("--cacert".into());
                args.push(ca.as_os_str().to_owned());
            }
            if self.insecure {
                args.push("--insecure".into());
            }
        }
        args.push(self.url.into());
        args
    }
}

fn tls_version_arg(m: &Measurement) -> &'static str {
    match m.tls.version {
        proxy::tls::TlsVersion::Tls12 => "1.2",
        proxy::tls::TlsVersion::Tls13 => "1.3",
    }
}

/// `5s` for whole seconds, else milliseconds (`500ms`, `1500ms`): both forms loadgen reads.
pub fn duration_arg(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub fn is_tls_url(url: &str) -> bool {
    url.starts_with("https://")
}

/// loadgen's `--output json` report, schema 1.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub schema: u32,
    pub connections_opened: u64,
    /// `--idle` runs: the connections the server closed while they were held.
    #[serde(default)]
    pub idle: Option<Idle>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub rate: Option<f64>,
    /// Bytes of each request body it sent.
    pub body_bytes: u64,
    pub requests: u64,
    pub rps: f64,
    pub latency_us: Latency,
    /// Open loop: requests started more than 1 ms after their intended time.
    pub late_requests: u64,
    pub errors: Errors,
    pub tls: Option<Tls>,
    pub cpu: Cpu,
    /// A merged report (`--client-processes` above 1): each process's own saturation.
    #[serde(default)]
    pub segments: Option<Vec<SegmentCpu>>,
}

/// One process of a merged report, as far as the verdict needs it.
#[derive(Debug, Clone, Deserialize)]
pub struct SegmentCpu {
    pub segment: Option<String>,
    pub utilization: f64,
    pub saturated: bool,
}

/// Latencies of the measured period, microseconds.
#[derive(Debug, Clone, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub stdev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Failed requests by kind.
#[derive(Debug, Clone, Deserialize)]
pub struct Errors {
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub status: u64,
    pub body_mismatch: u64,
    pub total: u64,
}

impl std::ops::AddAssign<&Errors> for Errors {
    fn add_assign(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.read += other.read;
        self.write += other.write;
        self.timeout += other.timeout;
        self.status += other.status;
        self.body_mismatch += other.body_mismatch;
        self.total += other.total;
    }
}

/// What the TLS handshakes settled on.
#[derive(Debug, Clone, Deserialize)]
pub struct Tls {
    pub version: Option<String>,
    pub cipher_suite: Option<String>,
    pub kx_group: Option<String>,
    #[serde(default)]
    pub handshakes: u64,
    #[serde(default)]
    pub resumed: u64,
}

/// The idle part of an `--idle` report.
#[derive(Debug, Clone, Deserialize)]
pub struct Idle {
    #[serde(default)]
    pub closed_by_server: u64,
}

/// The load generator's own CPU use over the measured period.
#[derive(Debug, Clone, Deserialize)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
    pub utilization: f64,
    pub saturated: bool,
}

/// The schema this harness reads.
pub const SCHEMA: u32 = 1;

impl Report {
    /// Two runs' reports as one (the fault suite runs two load generators at once): counts
    /// added, the worse p99 kept; every other figure is `self`'s.
    pub fn merged(&self, other: &Report) -> Report {
        let mut out = self.clone();
        out.requests += other.requests;
        out.late_requests += other.late_requests;
        out.latency_us.p99 = self.latency_us.p99.max(other.latency_us.p99);
        out.errors += &other.errors;
        out
    }

    /// Parses loadgen's stdout (the JSON object; anything after it is ignored).
    pub fn parse(stdout: &str) -> anyhow::Result<Report> {
        let start = stdout
            .find('{')
            .context("no JSON object on loadgen's stdout")?;
        let mut stream = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<Report>();
        let report = stream
            .next()
            .context("no JSON object on loadgen's stdout")?
            .context("loadgen's JSON report does not match schema 1")?;
        if report.schema != SCHEMA {
            bail!(
                "loadgen's JSON report has schema {}, this harness reads schema {SCHEMA}",
                report.schema
            );
        }
        Ok(report)
    }

    /// Differences between what measurement `m` asked for and what was negotiated; empty
    /// when the handshakes ran the parameters asked for.
    pub fn tls_mismatches(&self, m: &Measurement) -> Vec<String> {
        let Some(tls) = &self.tls else {
            return vec!["loadgen reported no TLS parameters for a TLS config".to_owned()];
        };
        let mut out = Vec::new();
        let version = m.tls.version.name();
        check(
            &mut out,
            "TLS version",
            tls.version.as_deref(),
            &[version.to_owned()],
        );
        check(
            &mut out,
            "cipher suite",
            tls.cipher_suite.as_deref(),
            &m.tls.cipher_suites,
        );
        check(
            &mut out,
            "key-exchange group",
            tls.kx_group.as_deref(),
            &m.tls.kx_groups,
        );
        out
    }
}

fn check(out: &mut Vec<String>, what: &str, got: Option<&str>, asked: &[String]) {
    match got {
        Some(got) if asked.iter().any(|a| a.eq_ignore_ascii_case(got)) => {}
        Some(got) => out.push(format!(
            "negotiated {what} {got} but asked for {}",
            asked.join("|")
        )),
        None => out.push(format!("loadgen did not report the negotiated {what}")),
    }
}

/// Ends a loadgen run that runs until interrupted (SIGINT: loadgen stops early and still
/// prints its full report) and reads the report from `out`, its stdout.
pub fn interrupt(
    proc: &mut Proc,
    out: &Path,
    wait: Duration,
    stop: &Stop,
) -> anyhow::Result<Report> {
    if proc.try_wait()?.is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(proc.pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    if proc.wait_for(wait, stop)?.is_none() {
        proc.stop(Duration::ZERO)?;
        bail!("loadgen did not report within {wait:?} of SIGINT");
    }
    read_report(proc, out)
}

/// The report of a loadgen run that has ended, from `out`, its stdout; an unreadable one
/// names the file, how loadgen ended and the tail of its stderr.
pub fn read_report(proc: &mut Proc, out: &Path) -> anyhow::Result<Report> {
    let status = proc.try_wait()?;
    let stdout =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    Report::parse(&stdout).with_context(|| {
        format!(
            "loadgen's report in {} ({}){}",
            out.display(),
            status.map_or_else(String::new, describe),
            proc.stderr_tail()
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{CertType, ConfigName, Preset, Variant};

    fn measurement(size: u64, kind: Kind) -> Measurement {
        Measurement {
            index: 0,
            iteration: 1,
            variant: Variant {
                config: ConfigName::Haproxy,
                backend: None,
            },
            size,
            kind,
            tls: Preset::Smoke.plan().tls_params(kind),
        }
    }

    pub(crate) const SAMPLE: &str = r#"{"schema": 1, "target": "https://127.0.0.1:8443/", "mode": "closed", "threads": 1, "connections": 100,
 "connections_opened": 100, "keepalive": true, "duration_s": 10.0, "warmup_s": 2.0, "rate": null,
 "body_bytes": 10, "requests": 123456, "rps": 12345.6, "bytes_sent": 0, "bytes_received": 0,
 "latency_us": {"mean": 0.0, "stdev": 0.0, "min": 0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0},
 "latency_uncorrected_us": null, "late_requests": 0,
 "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0, "body_mismatch": 0, "total": 0},
 "tls": {"version": "TLSv1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256", "kx_group": "X25519", "alpn": null, "handshakes": 100, "resumed": 0},
 "cpu": {"user_s": 0.0, "sys_s": 0.0, "utilization": 0.0, "saturated": false},
 "warnings": [], "some_future_field": 1}"#;

    #[test]
    fn parses_the_contract_example() {
        let report = Report::parse(SAMPLE).unwrap();
        assert_eq!(report.requests, 123456);
        let sweep = measurement(10, Kind::Sweep);
        assert!(report.tls_mismatches(&sweep).is_empty());
    }

    #[test]
    fn missing_field_and_wrong_schema_are_errors() {
        let without = SAMPLE.replace("\"requests\": 123456,", "");
        let err = format!("{:#}", Report::parse(&without).unwrap_err());
        assert!(err.contains("requests"), "{err}");
        let future = SAMPLE.replace("\"schema\": 1", "\"schema\": 2");
        assert!(Report::parse(&future)
            .unwrap_err()
            .to_string()
            .contains("schema 2"));
        assert!(Report::parse("").is_err());
    }

    #[test]
    fn mismatched_group_is_reported() {
        let hybrid = SAMPLE.replace("\"X25519\"", "\"X25519MLKEM768\"");
        let report = Report::parse(&hybrid).unwrap();
        let issues = report.tls_mismatches(&measurement(10, Kind::Sweep));
        assert_eq!(issues.len(), 1);
        assert!(issues[0].contains("X25519MLKEM768"), "{issues:?}");
        let asked_hybrid = Kind::Handshake {
            cert: CertType::EcdsaP256,
            resumed: false,
            hybrid: true,
        };
        assert!(report
            .tls_mismatches(&measurement(10, asked_hybrid))
            .is_empty());
    }

    #[test]
    fn args_force_tls_parameters_only_for_https() {
        let plan = Preset::Smoke.plan();
        let ca = Path::new("/tmp/ca.pem");
        let sweep = measurement(1000, Kind::Sweep);
        let inv = Invocation {
            url: "https://127.0.0.1:1/",
            plan: &plan,
            measurement: &sweep,
            threads: 1,
            cacert: Some(ca),
            insecure: false,
            segment: None,
        };
        let args: Vec<String> = inv
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        let line = args.join(" ");
        assert!(
            line.contains("-t 1 -b 1000 --timeout 5s --output json -c 10 -d 1s --warmup 500ms"),
            "{line}"
        );
        assert!(line.contains("--tls-version 1.3"), "{line}");
        assert!(
            line.contains("--cipher-suite TLS_AES_128_GCM_SHA256"),
            "{line}"
        );
        assert!(line.contains("--kx-group X25519"), "{line}");
        assert!(
            line.ends_with("--cacert /tmp/ca.pem https://127.0.0.1:1/"),
            "{line}"
        );
        let http = Invocation {
            url: "http://127.0.0.1:1/",
            ..inv
        };
        let line: Vec<String> = http
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert!(!line.join(" ").contains("--tls-version"));

        let tls12 = Plan {
            tls_version: proxy::tls::TlsVersion::Tls12,
            ..plan.clone()
        };
        let kind = Kind::Handshake {
            cert: CertType::Rsa2048,
            resumed: true,
            hybrid: false,
        };
        // A measurement carries the TLS parameters of the plan it came from.
        let resumed_rsa = Measurement {
            tls: tls12.tls_params(kind),
            ..measurement(10, kind)
        };
        let line = Invocation {
            plan: &tls12,
            measurement: &resumed_rsa,
            ..inv.clone()
        }
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
        assert!(line.contains("--no-keepalive --tls-resume"), "{line}");
        assert!(
            line.contains("--cipher-suite TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "{line}"
        );
        let idle = measurement(10, Kind::Idle);
        let line = Invocation {
            measurement: &idle,
            ..inv.clone()
        }
        .args()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
        assert!(line.contains("-c 200 -d 1s --idle"), "{line}");
        assert!(!line.contains("--warmup"), "{line}");
        assert!(!line.contains("--segment"), "{line}");

        let second = Invocation {
            segment: Some(Segment::new(2, 3).unwrap()),
            ..inv
        };
        let line = second
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            line.contains("--warmup 500ms --segment 2/3 --tls-version"),
            "{line}"
        );
    }
}
