//! Host facts every binary sizes itself by: the CPUs this process may run on, worker counts
//! drawn from them, and the open-file limit (thousands of connections are normal here).

use std::num::NonZeroUsize;

use nix::sched::{sched_getaffinity, CpuSet};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::unistd::Pid;

/// The CPUs this process may run on (its affinity mask), in ascending order.
///
/// This, not `nproc`'s online count, is what a pinned process should size its workers by:
/// the harness pins a server to one CPU and expects one worker.
pub fn affinity_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Worker threads to run: `requested`, or one per CPU in the affinity mask.
pub fn worker_count(requested: Option<NonZeroUsize>) -> NonZeroUsize {
    requested.unwrap_or_else(|| {
        NonZeroUsize::new(affinity_cpus().len())
            .or_else(|| std::thread::available_parallelism().ok())
            .unwrap_or(NonZeroUsize::MIN)
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (thousands of connections are normal
/// here) and returns the soft limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_not_empty_and_sizes_workers() {
        let cpus = affinity_cpus();
        assert!(!cpus.is_empty());
        assert_eq!(worker_count(None).get(), cpus.len());
        assert_eq!(worker_count(NonZeroUsize::new(3)).get(), 3);
    }

    #[test]
    fn nofile_limit_is_raised_to_hard() {
        let now = raise_nofile_limit().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(now, hard);
    }
}
