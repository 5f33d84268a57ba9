//! One reload of every certificate while the handshake load runs: the files touched (so
//! no terminator can skip one as unchanged), the terminator signalled, its log watched for
//! the line that says the new certificates are in use, then its former workers waited
//! for, and its memory sampled all along.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::certs::SniCerts;
use super::terminators::Reload;
use crate::procfs::{descendants, is_gone};
use crate::procs::{Proc, Stop};

/// What one reload showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Signal to the log line, ms; `None` when the line did not come within the limit.
    pub done_ms: Option<f64>,
    /// RSS once the former workers are gone (or given up on), KiB.
    pub rss_after_kib: u64,
    /// The most RSS seen from the signal on, KiB.
    pub peak_rss_kib: u64,
}

/// Reloads `terminator` the way `how` says, every file of `certs` touched first.
pub fn once(
    terminator: &mut Proc,
    how: Reload,
    certs: &SniCerts,
    stop: &Stop,
) -> anyhow::Result<Outcome> {
    certs.touch_all()?;
    let logs = [terminator.stdout_log.clone(), terminator.stderr_log.clone()];
    let lines_before = count_lines(&logs, how.done);
    let workers_before = descendants(terminator.pid);
    let mut peak = terminator.rss_kib()?;
    kill(Pid::from_raw(terminator.pid as i32), how.signal)
        .with_context(|| format!("sending {} to {}", how.signal, terminator.name))?;
    let signalled = Instant::now();
    let mut done_ms = None;
    while signalled.elapsed() < RELOAD_LIMIT {
        watch(terminator, &mut peak, stop)?;
        if count_lines(&logs, how.done) > lines_before {
            done_ms = Some(signalled.elapsed().as_secs_f64() * 1000.0);
            break;
        }
    }
    // Former workers finish their connections first; the memory "after" is without them.
    let retiring = Instant::now();
    while workers_before.iter().any(|&pid| !is_gone(pid)) && retiring.elapsed() < RETIRE_LIMIT {
        watch(terminator, &mut peak, stop)?;
    }
    std::thread::sleep(SETTLE);
    let rss_after_kib = terminator.rss_kib()?;
    Ok(Outcome {
        done_ms,
        rss_after_kib,
        peak_rss_kib: peak.max(rss_after_kib),
    })
}

/// One polling step: the terminator still runs, its RSS sampled into `peak`.
fn watch(terminator: &mut Proc, peak: &mut u64, stop: &Stop) -> anyhow::Result<()> {
    stop.check()?;
    if let Some(status) = terminator.try_wait()? {
        bail!(
            "{} exited during a reload ({}){}",
            terminator.name,
            crate::procs::describe(status),
            terminator.stderr_tail()
        );
    }
    // A worker that exits between the listing and the read is not an error.
    if let Ok(rss) = terminator.rss_kib() {
        *peak = (*peak).max(rss);
    }
    std::thread::sleep(POLL);
    Ok(())
}

/// Lines holding `marker` in the files (a missing file holds none).
fn count_lines(files: &[PathBuf], marker: &str) -> usize {
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| text.lines().filter(|l| l.contains(marker)).count())
        .sum()
}

/// A reload of 10,000 certificates on a busy two-core machine takes seconds; one that has
/// not finished in this long counts as not done.
const RELOAD_LIMIT: Duration = Duration::from_secs(120);
/// How long former workers may take to finish their connections.
const RETIRE_LIMIT: Duration = Duration::from_secs(30);
/// Between the former workers' exit and the RSS sample: the memory "after" a reload is
/// what stays, not what a terminator is still handing back (ours releases the previous
/// certificates' memory again 1 s after a reload, once handshakes in flight are done).
const SETTLE: Duration = Duration::from_millis(1500);
const POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_lines_are_counted_in_both_logs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.out");
        let err = dir.path().join("x.err");
        std::fs::write(&out, "[NOTICE] Loading success.\nother\n").unwrap();
        std::fs::write(&err, "Loading success.\nLoading success.\n").unwrap();
        let files = [out, err, dir.path().join("missing")];
        assert_eq!(count_lines(&files, "Loading success"), 3);
        assert_eq!(count_lines(&files, "reloaded"), 0);
    }
}
