//! The load generator side of a measurement. For the sweep and the handshakes,
//! `--client-processes N` loadgen processes, process `i` running segment `i/N` of the load
//! (`loadgen --segment`: its share of the connections and of the rate) pinned to its
//! round-robin share of the client CPUs ([`CpuList::round_robin`]), all started one right
//! after another; their JSON reports are merged by loadgen's own merge (the code behind
//! `loadgen merge`) into the one report the row is made from. A sweep row's full latency
//! distribution is then kept as `latency/<config>-<size>-<iteration>.hgrm`.
//!
//! One process (the default) runs the whole load on all the client CPUs, as before, and
//! its own report is the row's.

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{bail, Context};
use loadgen::merge::{self, Input};
use loadgen::segment::Segment;

use super::resources::Resources;
use crate::cpus::CpuList;
use crate::loadgen::{Invocation, Report};
use crate::output::{Row, Status};
use crate::plan::Measurement;
use crate::procs::{Ledger, Proc, Spec, Stop};
use crate::stack::recipe;

/// The load generator processes of one measurement, running or finished.
pub(super) struct Clients {
    /// Each process with the spec it was started from (its arguments and logs).
    procs: Vec<(Spec, Proc)>,
}

/// What one of several processes runs: its segment, on its CPUs.
pub(super) struct Share {
    pub segment: Segment,
    pub cpus: CpuList,
}

impl Clients {
    /// Starts the plan's load generator processes for `m` against `url`.
    pub fn spawn(
        res: &Resources<'_>,
        m: &Measurement,
        url: &str,
        stem: &Path,
        label: &str,
        ledger: &mut Ledger,
    ) -> anyhow::Result<Clients> {
        let n = res.plan.client_processes.get();
        let mut procs = Vec::with_capacity(n as usize);
        if n == 1 {
            let spec = loadgen_spec(res, m, url, stem, None)?;
            let proc = Proc::spawn(&spec, ledger, label)?;
            procs.push((spec, proc));
            return Ok(Clients { procs });
        }
        for (index, cpus) in (1..=n).zip(res.split.client.round_robin(n as usize)) {
            let segment = Segment::new(index, n).context("internal error: a segment 1..=N")?;
            let spec = loadgen_spec(res, m, url, stem, Some(&Share { segment, cpus }))?;
            let proc = Proc::spawn(&spec, ledger, label)?;
            procs.push((spec, proc));
        }
        Ok(Clients { procs })
    }

    /// The CPUs each process runs on, verified, `;` between processes (`3`, or `2,4;3,5`).
    /// A process may already have exited (bad arguments): that is said rather than "no
    /// /proc".
    pub fn cpus(&mut self, stop: &Stop) -> anyhow::Result<String> {
        let mut lists = Vec::with_capacity(self.procs.len());
        for (_, proc) in &mut self.procs {
            lists.push(verified_cpus(proc, stop)?);
        }
        Ok(lists.join(";"))
    }

    /// Every process's exit status once all have exited; `None` while one still runs.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<Vec<ExitStatus>>> {
        let mut statuses = Vec::with_capacity(self.procs.len());
        for (_, proc) in &mut self.procs {
            match proc.try_wait()? {
                Some(status) => statuses.push(status),
                None => return Ok(None),
            }
        }
        Ok(Some(statuses))
    }

    /// The row's report, from the finished processes (`statuses`, in order): one
    /// process's own, or the merge of all, which is also written to
    /// `<stem>-loadgen-merged.json`. Returns the report and its JSON text.
    pub fn report(&self, statuses: &[ExitStatus], stem: &Path) -> anyhow::Result<(Report, String)> {
        let mut texts = Vec::with_capacity(self.procs.len());
        for ((spec, proc), &status) in self.procs.iter().zip(statuses) {
            texts.push((spec, loadgen_stdout(status, proc, spec)?));
        }
        let json = match texts.as_slice() {
            [(spec, text)] => return parse(text, spec).map(|r| (r, text.clone())),
            _ => merged(&texts, stem)?,
        };
        let report = Report::parse(&json).context("loadgen's merged report")?;
        Ok((report, json))
    }
}

/// The segments' reports added into one, written beside their logs.
fn merged(texts: &[(&Spec, String)], stem: &Path) -> anyhow::Result<String> {
    let inputs = texts
        .iter()
        .map(|(spec, text)| Input::parse(&spec.stdout_log.display().to_string(), text))
        .collect::<Result<Vec<_>, _>>()?;
    let json = merge::merge(&inputs)?.report.to_json();
    let path = recipe::log_path(stem, "loadgen-merged", "json");
    std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    Ok(json)
}

/// A sweep row's full latency distribution, from its report's `json`: written to the run's
/// `latency/` folder as HdrHistogram's percentile distribution (`.hgrm`, values in ms, what
/// wrk2 users plot), and named in the row's `latency_file`. A report without the histogram
/// (a loadgen binary older than that, from `--bin-dir`) gives a warning instead.
pub(super) fn keep_distribution(res: &Resources<'_>, m: &Measurement, json: &str, row: &mut Row) {
    let Some(dir) = res.latency else {
        return;
    };
    let name = format!(
        "{}.hgrm",
        super::resources::latency_name(m, res.plan.target.is_some())
    );
    let written = Input::parse("loadgen's report", json)
        .and_then(|input| {
            let (latency, _) = input.histograms()?;
            Ok(loadgen::report::hdr_text(
                &latency,
                loadgen::report::hdr_title(input.report.mode),
            ))
        })
        .map_err(anyhow::Error::from)
        .and_then(|text| {
            let path = dir.join(&name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        });
    match written {
        Ok(()) => row.latency_file = Some(format!("latency/{name}")),
        Err(e) => row.flag(
            Status::Warning,
            format!("latency distribution not kept: {e:#}"),
        ),
    }
}

/// The CPUs `proc` runs on, verified.
fn verified_cpus(proc: &mut Proc, stop: &Stop) -> anyhow::Result<String> {
    match proc.verify_affinity() {
        Ok(applied) => Ok(applied.to_string()),
        Err(e) => match proc.wait_for(Duration::from_millis(200), stop)? {
            Some(status) => bail!(
                "{} exited at once ({}){}",
                proc.name,
                crate::procs::describe(status),
                proc.stderr_tail()
            ),
            None => Err(e),
        },
    }
}

/// A load generator's command for one measurement: the whole load on the client CPUs
/// (`share` `None`), or a segment of it on its share of them. It trusts the run's
/// certificate, or with `--target` the `--cacert` given (none: `--insecure`). Threads: as
/// the plan says, else one per CPU it runs on.
pub(super) fn loadgen_spec(
    res: &Resources<'_>,
    m: &Measurement,
    url: &str,
    stem: &Path,
    share: Option<&Share>,
) -> anyhow::Result<Spec> {
    let plan = res.plan;
    let remote = plan.target.is_some();
    let cpus = share.map_or(&res.split.client, |s| &s.cpus).clone();
    let name = match share {
        Some(s) => format!("loadgen-{}", s.segment.index()),
        None => "loadgen".to_owned(),
    };
    Ok(Spec {
        args: Invocation {
            url,
            plan,
            measurement: m,
            threads: plan.client_threads.map_or(cpus.len() as u32, |t| t.get()),
            cacert: if remote {
                res.cacert
            } else {
                Some(&res.certs.get(m.tls.cert)?.0.cert)
            },
            insecure: remote && res.cacert.is_none(),
            segment: share.map(|s| s.segment),
        }
        .args(),
        program: res.bins.loadgen.clone(),
        cpus,
        stdout_log: recipe::log_path(stem, &name, "out"),
        stderr_log: recipe::log_path(stem, &name, "err"),
        wait_ready: false,
        name,
    })
}

/// A finished loadgen's JSON report, or why there is none.
pub(super) fn loadgen_report(status: ExitStatus, lg: &Proc, spec: &Spec) -> anyhow::Result<Report> {
    parse(&loadgen_stdout(status, lg, spec)?, spec)
}

/// A finished loadgen's stdout, or why it failed.
fn loadgen_stdout(status: ExitStatus, lg: &Proc, spec: &Spec) -> anyhow::Result<String> {
    if !status.success() {
        bail!(
            "{} failed ({}){}",
            spec.name,
            crate::procs::describe(status),
            lg.stderr_tail()
        );
    }
    std::fs::read_to_string(&spec.stdout_log)
        .with_context(|| format!("reading {}", spec.stdout_log.display()))
}

fn parse(stdout: &str, spec: &Spec) -> anyhow::Result<Report> {
    Report::parse(stdout)
        .with_context(|| format!("loadgen's report in {}", spec.stdout_log.display()))
}
