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

/// Grows this process's descriptor table now to hold `fds` descriptors (capped by the soft
/// RLIMIT_NOFILE), so that no later `accept` or `connect` grows it.
///
/// Linux doubles the table when a new descriptor does not fit, and in a multi-threaded
/// process each doubling waits for an RCU grace period inside that `accept` (fs/file.c,
/// `expand_fdtable`: `synchronize_rcu()` when the table is shared): ~10-18 ms measured
/// here, during which the accepting worker serves nobody. A slowloris of 2,000 connections
/// crossed three doublings and the good clients' p99 showed them. The table never
/// shrinks, so growing it once up front moves the waits to start-up. Costs kernel memory
/// only: 8 bytes per slot (1 MiB for 131,072), not in the process's RSS.
pub fn reserve_fd_table(fds: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let Ok(highest) = i32::try_from(fds.min(soft).saturating_sub(1)) else {
        return Ok(());
    };
    // An open descriptor there means the table is already that large; dup2 onto it would
    // close it.
    if highest < 3 || nix::fcntl::fcntl(highest, nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return Ok(());
    }
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2(null.as_raw_fd(), highest)?;
    nix::unistd::close(highest)?;
    Ok(())
}

/// The size of this process's descriptor table (the `FDSize` line of /proc/self/status).
pub fn fd_table_size() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("FDSize:"))?;
    line["FDSize:".len()..].trim().parse().ok()
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

    #[test]
    fn the_descriptor_table_is_grown_once_and_kept() {
        raise_nofile_limit().unwrap();
        let before = fd_table_size().unwrap();
        let want = (before * 4).max(4096);
        reserve_fd_table(want).unwrap();
        let after = fd_table_size().unwrap();
        assert!(after >= want, "FDSize {after} after reserving {want}");
        // Asked again for less: nothing to do, and nothing shrinks.
        reserve_fd_table(want / 2).unwrap();
        assert_eq!(fd_table_size(), Some(after));
    }
}
