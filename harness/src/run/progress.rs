//! What the user sees on stderr: the plan before the run, and one line (or a bar) per
//! measurement.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::resources::measurement_label;
use crate::cpus::CpuSplit;
use crate::output::{IdleRow, Row, Status};
use crate::plan::{ConfigName, Measurement, Plan, Scenario};
use crate::summary::LatencyUnit;

/// The plan as printed before the run starts.
pub fn describe_plan(plan: &Plan, split: &CpuSplit) -> String {
    let mut s = format!(
        "plan: {} (scenario {})\n",
        plan.source,
        plan.scenario.name()
    );
    if plan.scenario.is_fault_suite() {
        s.push_str(&describe_faults(plan, split));
    } else if plan.scenario == Scenario::SniScale {
        s.push_str(&describe_sni_scale(plan, split));
    } else {
        s.push_str(&describe_what(plan));
        s.push_str(&describe_how(plan, split));
    }
    s
}

/// The fault suite's lines: which scenarios, and where its processes run.
fn describe_faults(plan: &Plan, split: &CpuSplit) -> String {
    let what = match plan.scenario {
        Scenario::Soak => format!(
            "scenario 9 (long run), {}",
            humantime::format_duration(plan.soak_duration)
        ),
        _ => {
            let numbers = if plan.fault_scenarios.is_empty() {
                "1-8".to_owned()
            } else {
                join(plan.fault_scenarios.iter().map(u8::to_string))
            };
            let short = if plan.short_faults {
                ", short (seconds each)"
            } else {
                ""
            };
            format!("scenarios {numbers}{short}")
        }
    };
    let attackers = plan.attacker_cpus.as_ref().unwrap_or(&split.client);
    let terminators = join(plan.configs.iter().map(|c| match c {
        ConfigName::ProxyRustls => format!("{c} (rustls-aws-lc)"),
        other => other.to_string(),
    }));
    format!(
        "  faults:      {what}; {terminators} in front of the echo-server under a steady \
         good-client load\n  cpus:        servers {}, clients {}, attackers {} (sched {})\n",
        split.server,
        split.client,
        attackers,
        plan.attacker_sched.name()
    )
}

/// The certificate-scale run's lines: terminators, certificates, loads and CPUs.
fn describe_sni_scale(plan: &Plan, split: &CpuSplit) -> String {
    let configs = join(plan.variants().iter().map(|v| v.label()));
    let mut s = format!("  configs:     {configs}\n");
    s.push_str(&format!(
        "  certs:       {} SNI certificates (ECDSA P-256) in one listener each\n",
        plan.sni_certs
    ));
    s.push_str(&format!(
        "  handshakes:  first and last name, {} warm-up + {} measured, {} connections, \
         twice each\n",
        humantime::format_duration(plan.warmup),
        humantime::format_duration(plan.duration),
        plan.connections
    ));
    s.push_str(&format!(
        "  reloads:     {} of every certificate under {} handshakes/s\n",
        crate::sni_scale::RELOADS,
        crate::sni_scale::RELOAD_RATE
    ));
    s.push_str(&format!(
        "  cpus:        servers {}, load generator {}\n",
        split.server, split.client
    ));
    s
}

/// What is measured: the target or configs, and each scenario's own line.
fn describe_what(plan: &Plan) -> String {
    let mut s = match &plan.target {
        Some(t) => format!("  target:      {t} (remote: no local servers)\n"),
        None => format!(
            "  configs:     {}\n",
            join(plan.variants().iter().map(|v| v.label()))
        ),
    };
    let parts = plan.scenario.parts();
    if parts.contains(&Scenario::Sweep) {
        let sizes = join(plan.sizes.iter().map(u64::to_string));
        s.push_str(&format!("  sizes:       {sizes} bytes\n"));
    }
    if parts.contains(&Scenario::Handshakes) {
        s.push_str(
            "  handshakes:  a new connection per request; full and resumed, ecdsa-p256 and \
             rsa-2048; full over X25519MLKEM768 for rustls-aws-lc\n",
        );
    }
    if parts.contains(&Scenario::Idle) {
        s.push_str(&format!(
            "  idle:        {} connections held {} through each TLS config\n",
            plan.idle_connections,
            humantime::format_duration(plan.idle_hold)
        ));
    }
    s
}

/// How each measurement runs: load, TLS parameters, CPUs and the estimate.
fn describe_how(plan: &Plan, split: &CpuSplit) -> String {
    let measurements = if plan.target.is_some() {
        plan.sizes.len() * plan.iterations.get() as usize
    } else {
        plan.measurements().len()
    };
    let mut s = format!(
        "  each:        {} warm-up + {} measured, {} connections{}\n",
        humantime::format_duration(plan.warmup),
        humantime::format_duration(plan.duration),
        plan.connections,
        plan.rate
            .map_or(String::new(), |r| format!(", {r} req/s (open loop)"))
    );
    s.push_str(&format!(
        "  tls:         {} certificate, {}, {}, {}\n",
        plan.cert_type.name(),
        plan.tls_version.name(),
        plan.effective_cipher_suites().join("|"),
        plan.effective_kx_groups().join("|")
    ));
    let processes = plan.client_processes.get() as usize;
    let client = if processes == 1 {
        split.client.to_string()
    } else {
        let shares: Vec<String> = split
            .client
            .round_robin(processes)
            .iter()
            .map(ToString::to_string)
            .collect();
        format!(
            "{} in {processes} processes ({}), each a segment of the load",
            split.client,
            shares.join("; ")
        )
    };
    s.push_str(&format!(
        "  cpus:        servers {}, load generator {client}\n",
        split.server
    ));
    if let Some(w) = &split.warning {
        s.push_str(&format!("  warning:     {w}\n"));
    }
    let estimate = Duration::from_secs(plan.estimate().as_secs());
    s.push_str(&format!(
        "  runs:        {} iteration(s), {measurements} measurements, about {} (plus the build)\n",
        plan.iterations,
        humantime::format_duration(estimate)
    ));
    s
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A progress bar with ETA on a terminal, plain lines otherwise (CI logs).
pub(super) enum Progress {
    Bar(ProgressBar),
    Lines {
        total: usize,
        done: usize,
        started: Instant,
        per_estimate: Duration,
    },
}

impl Progress {
    pub fn new(total: usize, plan: &Plan) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {pos}/{len} ETA {eta} {msg}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(500));
            Progress::Bar(bar)
        } else {
            let count = u32::try_from(total.max(1)).unwrap_or(u32::MAX);
            Progress::Lines {
                total,
                done: 0,
                started: Instant::now(),
                per_estimate: plan.estimate() / count,
            }
        }
    }

    pub fn begin(&mut self, m: &Measurement, remote: bool) {
        if let Progress::Bar(bar) = self {
            bar.set_message(measurement_label(m, remote));
        }
    }

    pub fn finish(&mut self, m: &Measurement, row: &Row, remote: bool) {
        let figures = match (row.rps, row.p50, row.p99) {
            (Some(rps), Some(p50), Some(p99)) => {
                format!(
                    "{:.0} req/s, p50 {}, p99 {}",
                    rps.0,
                    LatencyUnit::show(p50.0),
                    LatencyUnit::show(p99.0)
                )
            }
            _ => "no figures".to_owned(),
        };
        self.finish_line(measurement_label(m, remote), figures, row.status, &row.note);
    }

    pub fn finish_idle(&mut self, m: &Measurement, row: &IdleRow) {
        let figures = match (row.connections_opened, row.terminator_kib_per_conn) {
            (Some(opened), Some(kib)) => format!("{opened} open, {:.1} KiB/connection", kib.0),
            _ => "no figures".to_owned(),
        };
        self.finish_line(measurement_label(m, false), figures, row.status, &row.note);
    }

    fn finish_line(&mut self, label: String, figures: String, status: Status, note: &str) {
        let verdict = if note.is_empty() {
            status.name().to_owned()
        } else {
            format!("{}: {note}", status.name())
        };
        match self {
            Progress::Bar(bar) => {
                if status != Status::Ok {
                    bar.println(format!("{label}: {figures}; {verdict}"));
                }
                bar.inc(1);
            }
            Progress::Lines {
                total,
                done,
                started,
                per_estimate,
            } => {
                *done += 1;
                let left = (*total - *done) as u32;
                // Measured pace once there is one, the plan's estimate before.
                let per = if *done > 0 {
                    started.elapsed() / *done as u32
                } else {
                    *per_estimate
                };
                let eta = Duration::from_secs((per * left).as_secs());
                eprintln!(
                    "[{done}/{total}] {label}: {figures}; {verdict} (ETA {})",
                    humantime::format_duration(eta)
                );
            }
        }
    }

    pub fn done(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_description_has_the_estimate() {
        let plan = crate::plan::Preset::Smoke.plan();
        let mask: crate::cpus::CpuList = "0-1".parse().unwrap();
        let split = CpuSplit::resolve(&mask, None, None).unwrap();
        let text = describe_plan(&plan, &split);
        assert!(text.contains("16 measurements"), "{text}");
        assert!(text.contains("servers 0, load generator 1\n"), "{text}");
    }

    #[test]
    fn plan_description_shows_each_client_process_cpus() {
        let plan = crate::plan::Plan {
            client_processes: std::num::NonZeroU32::new(2).unwrap(),
            ..crate::plan::Preset::Smoke.plan()
        };
        let mask: crate::cpus::CpuList = "0-4".parse().unwrap();
        let client = "1-4".parse().unwrap();
        let split = CpuSplit::resolve(&mask, None, Some(&client)).unwrap();
        let text = describe_plan(&plan, &split);
        assert!(
            text.contains(
                "load generator 1-4 in 2 processes (1,3; 2,4), each a segment of the load"
            ),
            "{text}"
        );
    }
}
