//! Certificates at scale (`harness --scenario sni-scale`, issue 19): `--sni-certs N` SNI
//! certificates in one listener of each terminator (ours on rustls and on OpenSSL,
//! HAProxy on OpenSSL and on AWS-LC, hitch, nginx), in front of the same Unix-socket
//! echo-server as in the sweep. For each, one row of `sni-scale.csv`:
//!
//! 1. start-up: process start to ready, and RSS after it (the terminator's process tree),
//!    with the first name only and with all N; their difference over N-1 is the memory
//!    per certificate;
//! 2. which certificate it serves: a sample of names (the first and last among them), each
//!    one connection, the leaf compared with the one issued for that name;
//! 3. handshakes: a new connection and full handshake per request with SNI the first name
//!    and the last name of the list, the same connections and duration each, in the order
//!    first, last, last, first (drift cancels), p50 and p99 of each name the mean of its
//!    two runs; a lookup that walks the list shows as a last/first ratio above 1;
//! 4. reloads: [`RELOADS`] reloads of every certificate under a handshake load, each
//!    counted done when the terminator's log says so; failed handshakes (must be 0) and
//!    RSS after each (within 10% of before, after the last).
//!
//! Every loadgen run verifies the certificate against the scenario's CA and the name it
//! sent, so a wrong certificate is a failed handshake. Timings are figures, never verdicts.

mod certs;
mod load;
mod reload;
pub mod report;
mod served;
mod terminators;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::bins::Bins;
use crate::cpus::CpuSplit;
use crate::faults::report::Checks;
use crate::output::CsvSink;
use crate::peers::Peer;
use crate::plan::{Plan, Variant, SNI_SCALE_CSV};
use crate::procs::{Interrupted, Ledger, Stop};
use crate::stack::recipe::Role;
use crate::stack::{Stack, Waits};
use crate::tls_library::Ours;
use certs::SniCerts;
use load::{Load, Shape, Target};
pub use report::SniRow;
use report::{Handshakes, Reloads};
use terminators::{Reload, Setup};

/// Everything the scenario needs from the harness run that calls it.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub plan: &'a Plan,
    pub bins: &'a Bins,
    pub split: &'a CpuSplit,
    /// The run folder (`sni-scale.csv`), its `logs/` and `configs/`.
    pub out_dir: &'a Path,
    pub logs: &'a Path,
    pub configs: &'a Path,
    /// Private temporary folder: certificates, sockets, peers' scratch folders.
    pub runtime_dir: &'a Path,
    pub stop: &'a Stop,
    pub ledger: &'a mut Ledger,
    /// The peers the plan names, found on this machine.
    pub peers: &'a [Peer],
    /// The TLS library of each of our backends.
    pub ours: &'a Ours,
}

/// Runs every variant of the plan and writes `sni-scale.csv`; prints the table. A
/// terminator that cannot be measured (it fails to start or to load the list) is a failed
/// row saying why; `Err(Interrupted)` on a signal, after writing the rows so far.
pub fn run(mut inputs: Inputs<'_>) -> anyhow::Result<Vec<SniRow>> {
    let count = inputs.plan.sni_certs.get() as usize;
    eprintln!("sni-scale: generating a CA and {count} certificates (ECDSA P-256)");
    let certs = SniCerts::generate(&inputs.runtime_dir.join("sni-certs"), count)?;
    eprintln!(
        "sni-scale: certificates made in {:.1} s",
        certs.generated_in_s
    );
    let csv = inputs.out_dir.join(SNI_SCALE_CSV);
    let mut sink = CsvSink::create_with(&csv, &report::COLUMNS)?;
    let mut rows = Vec::new();
    for (index, variant) in inputs.plan.variants().iter().enumerate() {
        if inputs.stop.requested() {
            break;
        }
        eprintln!("sni-scale: {} with {count} certificates", variant.label());
        let row = match measure(&mut inputs, &certs, variant, index) {
            Ok(row) => row,
            Err(e) if e.is::<Interrupted>() => break,
            Err(e) => failed_row(&inputs, variant, count, &e),
        };
        sink.write(&report::cells(&row))?;
        rows.push(row);
    }
    println!("\n{}", report::render(&rows));
    println!("sni-scale: {}", csv.display());
    if inputs.stop.requested() {
        return Err(Interrupted.into());
    }
    Ok(rows)
}

/// One terminator, every step; an error stops its row.
fn measure(
    inputs: &mut Inputs<'_>,
    certs: &SniCerts,
    variant: &Variant,
    index: usize,
) -> anyhow::Result<SniRow> {
    let count = certs.names.len();
    let mut row = empty_row(inputs, variant, count);
    let mut checks = Checks::default();
    let mut one = start(inputs, certs, variant, 1, 2 * index)?;
    row.start_1_ms = one.ready_after(Role::Terminator).map(ms);
    row.rss_1_kib = Some(settled_rss(&one)?);
    note_stop(&mut checks, one.stop()?);

    let mut stack = start(inputs, certs, variant, count, 2 * index + 1)?;
    row.start_ms = stack.ready_after(Role::Terminator).map(ms);
    row.rss_kib = Some(settled_rss(&stack)?);
    row.pss_kib = Some(terminator(&stack)?.pss_kib()?);
    let addr = address(&stack.url)?;
    let sample = served::sample(&certs.names, SERVED_SAMPLE);
    let served = served::check(&certs.ca_pem, addr, &sample)?;
    row.served_checked = served.checked;
    row.served_wrong = served.wrong.len();
    for wrong in served.wrong.iter().take(3) {
        checks.fact(format!("wrong certificate: {wrong}"));
    }
    let stem = inputs.logs.join(format!("sni-{}-{count}", variant.label()));
    let url = stack.url.clone();
    let target = Target {
        plan: inputs.plan,
        loadgen: &inputs.bins.loadgen,
        cpus: &inputs.split.client,
        url: &url,
        ca: &certs.ca_path,
    };
    let (first, last) = handshakes(inputs, &target, certs, &stem)?;
    row.first = Some(first);
    row.last = Some(last);
    let how = Reload::of(variant.config);
    row.reload = Some(reloads(inputs, &target, &mut stack, how, certs, &stem)?);
    note_stop(&mut checks, stack.stop()?);
    row.conclude(checks);
    Ok(row)
}

/// Starts `variant` serving the first `count` names; logs `logs/sni-<label>-<count>-*`.
fn start(
    inputs: &mut Inputs<'_>,
    certs: &SniCerts,
    variant: &Variant,
    count: usize,
    index: usize,
) -> anyhow::Result<Stack> {
    let label = variant.label();
    let stem = inputs.logs.join(format!("sni-{label}-{count}"));
    let setup = Setup {
        bins: inputs.bins,
        certs,
        names: certs.first(count),
        server_cpus: &inputs.split.server,
        runtime_dir: inputs.runtime_dir,
        config_dir: inputs.configs,
        log_stem: &stem,
        index,
        peers: inputs.peers,
        root: crate::stack::running_as_root(),
    };
    let waits = Waits {
        stop: inputs.stop,
        ready_timeout: inputs.plan.ready_timeout.max(READY_TIMEOUT),
    };
    let recipe = || terminators::recipe(variant, &setup);
    Stack::start_retrying(
        3,
        recipe,
        &format!("sni-{label}-{count}"),
        inputs.ledger,
        waits,
    )
    .with_context(|| format!("starting {label} with {count} certificate(s)"))
}

/// Handshake loads with the first and the last name, first-last-last-first; each name's
/// figures are the mean of its two runs.
fn handshakes(
    inputs: &mut Inputs<'_>,
    target: &Target<'_>,
    certs: &SniCerts,
    stem: &Path,
) -> anyhow::Result<(Handshakes, Handshakes)> {
    let plan = inputs.plan;
    let shape = Shape {
        connections: plan.connections.get(),
        duration: plan.duration,
        warmup: plan.warmup,
        rate: None,
    };
    let names = [&certs.names[0], &certs.names[certs.names.len() - 1]];
    let mut runs: [Vec<Handshakes>; 2] = [Vec::new(), Vec::new()];
    for (k, which) in [0, 1, 1, 0].into_iter().enumerate() {
        let tag = ["first", "last"][which];
        let run_stem = stem.with_file_name(format!(
            "{}-handshakes{}-{tag}",
            stem.file_name()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
            k + 1
        ));
        let load = Load::start(target, &shape, &names[which].name, &run_stem, inputs.ledger)?;
        let report = load.wait(&shape, inputs.stop)?;
        runs[which].push(Handshakes {
            requests: report.requests,
            errors: report.errors.total,
            p50_us: report.latency_us.p50,
            p99_us: report.latency_us.p99,
        });
    }
    let [first, last] = runs.map(|r| mean(&r));
    Ok((first, last))
}

/// [`RELOADS`] reloads under an open-loop handshake load with the last name.
fn reloads(
    inputs: &mut Inputs<'_>,
    target: &Target<'_>,
    stack: &mut Stack,
    how: Reload,
    certs: &SniCerts,
    stem: &Path,
) -> anyhow::Result<Reloads> {
    let shape = Shape {
        connections: RELOAD_CONNECTIONS.min(inputs.plan.connections.get()),
        duration: RELOAD_LOAD_MAX,
        warmup: Duration::ZERO,
        rate: Some(RELOAD_RATE),
    };
    let last = &certs.names[certs.names.len() - 1].name;
    let load_stem = stem.with_file_name(format!(
        "{}-reloads",
        stem.file_name()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
    ));
    let load = Load::start(target, &shape, last, &load_stem, inputs.ledger)?;
    let stop = inputs.stop;
    let terminator = stack
        .proc_mut(Role::Terminator)
        .context("internal error: a stack without its terminator")?;
    sleep(stop, LOAD_LEAD)?;
    let mut out = Reloads {
        asked: RELOADS,
        rss_before_kib: terminator.rss_kib()?,
        pss_before_kib: terminator.pss_kib()?,
        ..Reloads::default()
    };
    for i in 1..=RELOADS {
        let outcome = reload::once(terminator, how, certs, stop)?;
        eprintln!(
            "sni-scale:   reload {i}/{RELOADS}: {}, RSS {} KiB",
            outcome
                .done_ms
                .map_or_else(|| "not done".to_owned(), |ms| format!("{ms:.0} ms")),
            outcome.rss_after_kib
        );
        out.done_ms.extend(outcome.done_ms);
        out.rss_after_kib.push(outcome.rss_after_kib);
        out.peak_rss_kib = out.peak_rss_kib.max(outcome.peak_rss_kib);
    }
    out.pss_after_kib = terminator.pss_kib()?;
    sleep(stop, LOAD_LEAD)?;
    let report = load.finish(stop)?;
    out.requests = report.requests;
    out.failed = report.errors.total;
    Ok(out)
}

/// The terminator's RSS a moment after it is ready (workers forked, lists loaded).
fn settled_rss(stack: &Stack) -> anyhow::Result<u64> {
    std::thread::sleep(SETTLE);
    terminator(stack)?.rss_kib()
}

fn terminator(stack: &Stack) -> anyhow::Result<&crate::procs::Proc> {
    stack
        .proc(Role::Terminator)
        .context("internal error: a stack without its terminator")
}

fn note_stop(checks: &mut Checks, problems: Vec<String>) {
    for p in problems {
        checks.fact(format!("at stop: {p}"));
    }
}

fn empty_row(inputs: &Inputs<'_>, variant: &Variant, count: usize) -> SniRow {
    let tls_library = match variant.backend {
        Some(backend) => inputs.ours.get(false, backend),
        None => inputs
            .peers
            .iter()
            .find(|p| p.config == variant.config)
            .map(|p| p.tls_library.clone())
            .unwrap_or_default(),
    };
    SniRow {
        config: variant.config_name().to_owned(),
        tls_backend: variant.backend_name().to_owned(),
        tls_library,
        certs: count,
        ..SniRow::default()
    }
}

/// The row of a terminator that could not be measured, saying why.
fn failed_row(inputs: &Inputs<'_>, variant: &Variant, count: usize, e: &anyhow::Error) -> SniRow {
    eprintln!("sni-scale: {}: {e:#}", variant.label());
    let mut row = empty_row(inputs, variant, count);
    let mut checks = Checks::default();
    checks.require(false, || format!("could not be measured: {e:#}"));
    row.conclude(checks);
    row
}

/// `https://127.0.0.1:8443/` -> 127.0.0.1:8443.
fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    rest.trim_end_matches('/')
        .parse()
        .with_context(|| format!("{url} names no address"))
}

fn mean(runs: &[Handshakes]) -> Handshakes {
    let n = runs.len().max(1) as f64;
    Handshakes {
        requests: runs.iter().map(|h| h.requests).sum(),
        errors: runs.iter().map(|h| h.errors).sum(),
        p50_us: runs.iter().map(|h| h.p50_us).sum::<f64>() / n,
        p99_us: runs.iter().map(|h| h.p99_us).sum::<f64>() / n,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sleeps, looking at the stop flag.
fn sleep(stop: &Stop, d: Duration) -> anyhow::Result<()> {
    let until = std::time::Instant::now() + d;
    while std::time::Instant::now() < until {
        stop.check()?;
        std::thread::sleep(Duration::from_millis(50).min(d));
    }
    Ok(())
}

/// Reloads of every certificate per terminator.
pub const RELOADS: usize = 10;
/// Names whose served certificate is checked (the first and the last among them).
const SERVED_SAMPLE: usize = 20;
/// The load under the reloads: open loop, this many handshakes a second over this many
/// connections (well below what one server CPU does, so a failure is the reload's).
pub const RELOAD_RATE: u32 = 200;
const RELOAD_CONNECTIONS: u32 = 10;
/// The reload load's `-d`: longer than any reloads; it ends by SIGINT.
const RELOAD_LOAD_MAX: Duration = Duration::from_secs(3 * 3600);
/// Load before the first reload and after the last.
const LOAD_LEAD: Duration = Duration::from_secs(1);
/// Between ready and the RSS sample.
const SETTLE: Duration = Duration::from_millis(500);
/// A start with 10,000 certificates may take a while on a busy machine.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_stack_url_and_runs_average() {
        assert_eq!(
            address("https://127.0.0.1:8443/").unwrap(),
            "127.0.0.1:8443".parse().unwrap()
        );
        assert!(address("https://nowhere/").is_err());
        let h = |p99| Handshakes {
            requests: 10,
            errors: 1,
            p50_us: 1.0,
            p99_us: p99,
        };
        let m = mean(&[h(100.0), h(300.0)]);
        assert_eq!((m.requests, m.errors, m.p99_us), (20, 2, 200.0));
    }
}
