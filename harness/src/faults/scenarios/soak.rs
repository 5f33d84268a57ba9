//! Scenario 9, soak: moderate load for a long time, RSS and descriptors sampled for growth.

use std::time::{Duration, Instant};

use super::checks::{flat_mean, flat_median, good_clients, load_opts};
use crate::faults::load::{Load, LoadOpts};
use crate::faults::report::{Checks, FaultRow};
use crate::faults::stack::{ProxyOpts, ScenarioStack};
use crate::faults::Suite;
use crate::output::CsvSink;

/// Scenario 9, Soak: the good-client load (plus a trickle of new connections, one handshake each)
/// for the soak duration, proxy RSS and descriptors sampled into `soak.csv`. Criteria:
/// good-client errors 0; RSS flat (mean of the last quarter within 10% + 4 MiB of the
/// second quarter's); descriptors flat (median of the last quarter within 4 of the second
/// quarter's); the proxy never exits.
pub(super) fn soak(s: &mut Suite<'_>) -> anyhow::Result<FaultRow> {
    let mut row = FaultRow::new(9, "soak");
    let mut checks = Checks::default();
    let duration = s.inputs.soak.unwrap_or(Duration::from_secs(1800));
    let mut stack = ScenarioStack::start(s, "9-soak", ProxyOpts::default())?;
    let opts = load_opts(s);
    let load = Load::start(s, stack.addr(), "9-soak", &opts)?;
    let churn = Load::start(
        s,
        stack.addr(),
        "9-soak-churn",
        &LoadOpts {
            rate: SOAK_CHURN_RATE,
            connections: 2,
            keepalive: false,
            ..opts.clone()
        },
    )?;
    s.sleep(opts.warmup)?;
    let every = (duration / SOAK_SAMPLES).max(Duration::from_secs(1));
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let path = s.inputs.out_dir.join("soak.csv");
    let mut csv = CsvSink::create_with(&path, &["elapsed_s", "proxy_rss_kib", "proxy_fds"])?;
    let mut died = false;
    while started.elapsed() < duration {
        if !stack.proxy_alive() {
            died = true;
            break;
        }
        let (rss, fds) = (stack.rss_kib().unwrap_or(0), stack.fds().unwrap_or(0));
        let t = started.elapsed().as_secs_f64();
        samples.push((t, rss, fds));
        csv.write(&[format!("{t:.1}"), rss.to_string(), fds.to_string()])?;
        s.sleep(every.min(duration.saturating_sub(started.elapsed())))?;
    }
    let report = load.finish(s.inputs.stop)?;
    let churned = churn.finish(s.inputs.stop)?;
    let total = report.merged(&churned);
    good_clients(&mut row, &mut checks, &total);
    checks.require(!died, || "the proxy runs for the whole soak".into());
    let rss: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let fds: Vec<u64> = samples.iter().map(|s| s.2).collect();
    row.proxy_rss_before_kib = rss.first().copied();
    row.proxy_rss_after_kib = rss.last().copied();
    row.proxy_fds_before = fds.first().copied();
    row.proxy_fds_after = fds.last().copied();
    if let Err(why) = flat_mean(&rss, SOAK_RSS_FRACTION, SOAK_RSS_SLACK_KIB) {
        checks.require(false, || format!("RSS flat over the soak: {why}"));
    }
    if let Err(why) = flat_median(&fds, SOAK_FD_SLACK) {
        checks.require(false, || format!("descriptors flat over the soak: {why}"));
    }
    checks.fact(format!(
        "{} samples every {every:?} over {:.0} s into {}",
        samples.len(),
        started.elapsed().as_secs_f64(),
        path.display()
    ));
    stack.finish(&mut row, &mut checks)?;
    row.conclude(&checks);
    Ok(row)
}

/// Scenario 9: samples over the run, the churn load's rate, the flatness rules.
const SOAK_SAMPLES: u32 = 120;
const SOAK_CHURN_RATE: u32 = 20;
const SOAK_RSS_FRACTION: f64 = 0.10;
const SOAK_RSS_SLACK_KIB: u64 = 4 * 1024;
const SOAK_FD_SLACK: u64 = 4;
