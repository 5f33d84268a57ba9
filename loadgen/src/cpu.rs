//! The load generator's own CPU time (getrusage of the whole process), sampled at the start
//! and the end of the measured period: a saturated load generator measures itself, not the
//! server, and must say so.

use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};

/// User and system CPU time of this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: Duration,
    pub sys: Duration,
}

impl CpuTimes {
    /// All threads of this process; zero if the kernel will not say (never on Linux).
    pub fn now() -> CpuTimes {
        match getrusage(UsageWho::RUSAGE_SELF) {
            Ok(usage) => CpuTimes {
                user: timeval(usage.user_time()),
                sys: timeval(usage.system_time()),
            },
            Err(_) => CpuTimes::default(),
        }
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    pub fn total(&self) -> Duration {
        self.user + self.sys
    }
}

fn timeval(tv: nix::sys::time::TimeVal) -> Duration {
    let secs = u64::try_from(tv.tv_sec()).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_work_shows_up() {
        let before = CpuTimes::now();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let spent = CpuTimes::now().since(&before);
        assert!(spent.total() > Duration::ZERO, "{spent:?}");
    }
}
