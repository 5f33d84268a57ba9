//! The scenario's handshake load: loadgen with a new connection (and a full handshake)
//! per request, sending one name of the list as SNI and verifying the certificate against
//! the scenario's CA and that name, so a wrong certificate is a failed request. Runs
//! either for a fixed time or until the reloads are over (ended by SIGINT, after which
//! loadgen prints its full report).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use crate::cpus::CpuList;
use crate::loadgen::{duration_arg, Report};
use crate::plan::{Plan, HANDSHAKE_BODY_BYTES};
use crate::procs::{Ledger, Proc, Spec, Stop};

/// What every load of the scenario shares.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub plan: &'a Plan,
    pub loadgen: &'a Path,
    pub cpus: &'a CpuList,
    pub url: &'a str,
    pub ca: &'a Path,
}

/// How long and how hard.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: u32,
    pub duration: Duration,
    pub warmup: Duration,
    /// Open loop at this rate, requests per second; `None`: closed loop.
    pub rate: Option<u32>,
}

/// A running load.
#[derive(Debug)]
pub struct Load {
    proc: Proc,
    out: PathBuf,
}

impl Load {
    /// Starts loadgen with SNI `name`; its logs are `<stem>-loadgen.{out,err}`.
    pub fn start(
        target: &Target<'_>,
        shape: &Shape,
        name: &str,
        stem: &Path,
        ledger: &mut Ledger,
    ) -> anyhow::Result<Load> {
        let out = crate::stack::recipe::log_path(stem, "loadgen", "out");
        let spec = Spec {
            name: "loadgen".into(),
            program: target.loadgen.to_owned(),
            args: args(target, shape, name),
            cpus: target.cpus.clone(),
            stdout_log: out.clone(),
            stderr_log: crate::stack::recipe::log_path(stem, "loadgen", "err"),
            wait_ready: false,
        };
        let label = stem
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let proc = Proc::spawn(&spec, ledger, &label)?;
        Ok(Load { proc, out })
    }

    /// Waits for a fixed-time run to end by itself, and reads its report.
    pub fn wait(mut self, shape: &Shape, stop: &Stop) -> anyhow::Result<Report> {
        let limit = shape.warmup + shape.duration + REPORT_WAIT;
        if self.proc.wait_for(limit, stop)?.is_none() {
            self.proc.stop(Duration::ZERO)?;
            bail!("loadgen did not finish within {limit:?}");
        }
        crate::loadgen::read_report(&mut self.proc, &self.out)
    }

    /// Ends the run (SIGINT) and reads its report.
    pub fn finish(mut self, stop: &Stop) -> anyhow::Result<Report> {
        crate::loadgen::interrupt(&mut self.proc, &self.out, REPORT_WAIT, stop)
    }
}

/// loadgen's command line: the plan's TLS parameters, SNI `name`, the CA to verify with.
pub fn args(target: &Target<'_>, shape: &Shape, name: &str) -> Vec<OsString> {
    let plan = target.plan;
    let threads = target.cpus.len().min(shape.connections as usize).max(1);
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |flag: &str, value: String| {
        args.push(flag.into());
        args.push(value.into());
    };
    push("-c", shape.connections.to_string());
    push("-t", threads.to_string());
    push("-d", duration_arg(shape.duration));
    push("--warmup", duration_arg(shape.warmup));
    if let Some(rate) = shape.rate {
        push("--rate", rate.to_string());
    }
    push("-b", HANDSHAKE_BODY_BYTES.to_string());
    push("--timeout", duration_arg(plan.timeout));
    push("--output", "json".into());
    let version = match plan.tls_version {
        proxy::tls::TlsVersion::Tls12 => "1.2",
        proxy::tls::TlsVersion::Tls13 => "1.3",
    };
    push("--tls-version", version.into());
    for suite in plan.effective_cipher_suites() {
        push("--cipher-suite", suite);
    }
    for group in plan.effective_kx_groups() {
        push("--kx-group", group);
    }
    push("--cacert", target.ca.to_string_lossy().into_owned());
    push("--sni", name.to_owned());
    args.push("--no-keepalive".into());
    args.push(target.url.into());
    args
}

/// How long loadgen may take to report once its run is over (or after SIGINT).
const REPORT_WAIT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Preset;

    #[test]
    fn every_request_is_a_full_handshake_for_the_name_verified_by_the_ca() {
        let plan = Preset::Smoke.plan();
        let cpus: CpuList = "1".parse().unwrap();
        let target = Target {
            plan: &plan,
            loadgen: Path::new("/b/loadgen"),
            cpus: &cpus,
            url: "https://127.0.0.1:9/",
            ca: Path::new("/r/ca.pem"),
        };
        let shape = Shape {
            connections: 10,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            rate: Some(200),
        };
        let line = args(&target, &shape, "n00007.sni-scale.test")
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            line,
            "-c 10 -t 1 -d 2s --warmup 500ms --rate 200 -b 10 --timeout 5s --output json \
             --tls-version 1.3 --cipher-suite TLS_AES_128_GCM_SHA256 --kx-group X25519 \
             --cacert /r/ca.pem --sni n00007.sni-scale.test --no-keepalive \
             https://127.0.0.1:9/"
        );
    }
}
