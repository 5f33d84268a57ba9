//! Where the fault suite's attackers run: the CPUs their threads are pinned to and the
//! scheduling policy they run at. Both are applied to every thread of the attackers' tokio
//! runtime as it starts, then read back from `/proc/self/task`, so the run records what
//! the kernel applied rather than what was asked.
//!
//! Why it is a setting (README, "Slowloris latency"): on a two-CPU host the attackers can
//! only share a CPU with the load generator or with the proxy. Sharing the proxy's CPU
//! charges the proxy for the attackers' own work; sharing the load generator's at normal
//! priority lets the attackers delay the good clients' sends and reads, and the suite then
//! measures the client's CPU instead of the proxy. `SCHED_IDLE` on the load generator's CPU
//! gives the attackers only the time the load generator leaves: the proxy still sees every
//! attacking connection, and the good clients' latency is the proxy's.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::cpus::{CpuList, CpuSplit};
use crate::procfs::status_field;

/// The attackers' scheduling policy (`--attacker-sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackerSched {
    /// The harness's own policy and nice value, which the load generator inherits too: on
    /// a CPU shared with the load generator the two compete as equals.
    Normal,
    /// `SCHED_IDLE`: the attackers run only when nothing else on their CPUs wants to, so
    /// the load generator beside them is never kept waiting by them.
    Idle,
}

impl AttackerSched {
    /// The policy a plan gets unless it says otherwise.
    /// `idle`: at `normal` the attackers on the load generator's CPU compete with it for
    /// that CPU, which a busy machine showed as client-side latency (on a quiet one the
    /// two placements measured alike: README, "Slowloris latency").
    pub const DEFAULT: AttackerSched = AttackerSched::Idle;

    pub fn name(self) -> &'static str {
        match self {
            AttackerSched::Normal => "normal",
            AttackerSched::Idle => "idle",
        }
    }

    /// The policy to set on each attacker thread; `None`: keep the one inherited from the
    /// harness.
    fn set_policy(self) -> Option<Policy> {
        match self {
            AttackerSched::Normal => None,
            AttackerSched::Idle => Some(Policy::IDLE),
        }
    }

    /// The policy each attacker thread should show in `/proc`.
    fn expected_policy(self) -> anyhow::Result<Policy> {
        match self.set_policy() {
            Some(policy) => Ok(policy),
            None => own_policy(),
        }
    }
}

/// A Linux scheduling policy number, shown by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy(pub u32);

impl Policy {
    pub const IDLE: Policy = Policy(5);
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("SCHED_OTHER"),
            1 => f.write_str("SCHED_FIFO"),
            2 => f.write_str("SCHED_RR"),
            3 => f.write_str("SCHED_BATCH"),
            5 => f.write_str("SCHED_IDLE"),
            6 => f.write_str("SCHED_DEADLINE"),
            n => write!(f, "policy {n}"),
        }
    }
}

/// Where the attackers are to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub cpus: CpuList,
    pub sched: AttackerSched,
}

impl Placement {
    /// The attackers' CPUs (default: the load generator's) and policy; an explicit list
    /// must lie inside the harness's affinity `mask`.
    pub fn resolve(
        mask: &CpuList,
        client: &CpuList,
        cpus: Option<&CpuList>,
        sched: AttackerSched,
    ) -> anyhow::Result<Placement> {
        if let Some(cpus) = cpus {
            cpus.ensure_within(mask, "--attacker-cpus")?;
        }
        Ok(Placement {
            cpus: cpus.unwrap_or(client).clone(),
            sched,
        })
    }

    /// A multi-thread runtime with one worker per attacker CPU, every thread (workers and
    /// blocking pool alike) pinned to those CPUs at this policy, named [`THREAD_NAME`].
    /// Returns once every worker has started and placed itself, so that [`Placement::verify`]
    /// sees them all.
    pub fn runtime(&self) -> anyhow::Result<tokio::runtime::Runtime> {
        let mut set = nix::sched::CpuSet::new();
        for &cpu in self.cpus.cpus() {
            set.set(cpu)
                .with_context(|| format!("CPU {cpu} does not fit in a cpu_set_t"))?;
        }
        let policy = self.sched.set_policy();
        let started = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.cpus.len())
            .thread_name(THREAD_NAME)
            .enable_all()
            .on_thread_start({
                let started = started.clone();
                move || {
                    // Best effort here; `verify` reads back what each thread got, and the
                    // suite refuses attackers that are not where they were asked to be.
                    let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
                    if let Some(policy) = policy {
                        let _ = sched::set_current_thread(policy);
                    }
                    started.fetch_add(1, Ordering::Release);
                }
            })
            .build()
            .context("starting the attackers' runtime")?;
        // Workers start on their own threads, after `build` returns.
        let deadline = Instant::now() + WORKERS_START_LIMIT;
        while started.load(Ordering::Acquire) < self.cpus.len() {
            if Instant::now() >= deadline {
                bail!(
                    "the attackers' {} worker threads did not start within \
                     {WORKERS_START_LIMIT:?}",
                    self.cpus.len()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(rt)
    }

    /// meta.json's `attackers`: the placement, and what it shares with the `split`.
    pub fn to_json(&self, split: &CpuSplit) -> serde_json::Value {
        let shares = |other: &CpuList| self.cpus.cpus().iter().any(|c| other.cpus().contains(c));
        serde_json::json!({
            "cpus": self.cpus.to_string(),
            "sched": self.sched.name(),
            "shares_cpus_with_loadgen": shares(&split.client),
            "shares_cpus_with_servers": shares(&split.server),
        })
    }

    /// Reads every attacker thread's CPUs and policy back from `/proc/self/task` and fails,
    /// naming the thread, when one differs from this placement (e.g. `SCHED_IDLE` refused).
    pub fn verify(&self) -> anyhow::Result<Vec<ThreadPlacement>> {
        let threads = threads_named(Path::new("/proc/self/task"), THREAD_NAME)?;
        if threads.is_empty() {
            bail!("no `{THREAD_NAME}` thread found in /proc/self/task");
        }
        let want = self.sched.expected_policy()?;
        for t in &threads {
            if t.cpus != self.cpus || t.policy != want {
                bail!(
                    "attacker thread {} runs on CPUs {} at {}, not on CPUs {} at {want} as \
                     asked",
                    t.tid,
                    t.cpus,
                    t.policy,
                    self.cpus
                );
            }
        }
        Ok(threads)
    }
}

impl fmt::Display for Placement {
    /// `CPUs 1, SCHED_IDLE` or `CPUs 1, the harness's policy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sched.set_policy() {
            Some(policy) => write!(f, "CPUs {}, {policy}", self.cpus),
            None => write!(f, "CPUs {}, the harness's policy", self.cpus),
        }
    }
}

/// One thread's CPUs and policy, as `/proc` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPlacement {
    pub tid: u32,
    pub cpus: CpuList,
    pub policy: Policy,
}

/// The threads under `task_dir` (a `/proc/PID/task`) whose name is `name`.
pub fn threads_named(task_dir: &Path, name: &str) -> anyhow::Result<Vec<ThreadPlacement>> {
    let entries =
        std::fs::read_dir(task_dir).with_context(|| format!("listing {}", task_dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let dir = entry
            .with_context(|| format!("listing {}", task_dir.display()))?
            .path();
        let Some(tid) = dir.file_name().and_then(|n| n.to_str()?.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing is simply not there any more.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        if status_field(&status, "Name") != Some(name) {
            continue;
        }
        let cpus = status_field(&status, "Cpus_allowed_list")
            .context("no Cpus_allowed_list")
            .and_then(str::parse)
            .with_context(|| format!("{}/status", dir.display()))?;
        let policy = stat_policy(&stat).with_context(|| format!("{}/stat", dir.display()))?;
        out.push(ThreadPlacement { tid, cpus, policy });
    }
    out.sort_by_key(|t| t.tid);
    Ok(out)
}

/// The policy of this process's main thread (the one the load generator inherits).
fn own_policy() -> anyhow::Result<Policy> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    stat_policy(&stat).context("/proc/self/stat")
}

/// Field 41 of `/proc/PID/stat`, the scheduling policy. The name (field 2) is in
/// parentheses and may hold spaces and `)`, so fields are counted after its last `)`.
fn stat_policy(stat: &str) -> anyhow::Result<Policy> {
    let (_, rest) = stat
        .rsplit_once(')')
        .context("no `)` after the thread's name")?;
    // `rest` starts at field 3 (state).
    let field = rest
        .split_whitespace()
        .nth(POLICY_FIELD - 3)
        .with_context(|| format!("fewer than {POLICY_FIELD} fields"))?;
    let n = field
        .parse()
        .with_context(|| format!("policy {field:?} is not a number"))?;
    Ok(Policy(n))
}

/// The one system call nix does not wrap.
mod sched {
    use super::Policy;

    /// Sets the calling thread's scheduling policy (priority 0, the only one the
    /// non-real-time policies take).
    // reason: one FFI call, sched_setscheduler(2), which nix 0.29 does not wrap.
    #[allow(unsafe_code)]
    pub(super) fn set_current_thread(policy: Policy) -> std::io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        let policy = libc::c_int::try_from(policy.0).map_err(std::io::Error::other)?;
        // SAFETY: `param` is a valid sched_param that outlives the call, which only reads
        // it; pid 0 is the calling thread (Linux applies policies per thread).
        let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// The attackers' threads' name (15 bytes: the kernel keeps no more of a thread's name).
pub const THREAD_NAME: &str = "faults-attacker";
/// How long the attackers' worker threads may take to start (they take microseconds).
const WORKERS_START_LIMIT: Duration = Duration::from_secs(5);
/// `policy` is field 41 of `/proc/PID/stat` (proc(5)).
const POLICY_FIELD: usize = 41;

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> CpuList {
        s.parse().unwrap()
    }

    #[test]
    fn default_cpus_are_the_load_generators() {
        let p = Placement::resolve(&list("0-3"), &list("3"), None, AttackerSched::Idle).unwrap();
        assert_eq!(p.cpus, list("3"));
        assert_eq!(p.to_string(), "CPUs 3, SCHED_IDLE");
        let p = Placement::resolve(&list("0-3"), &list("3"), None, AttackerSched::Normal).unwrap();
        assert_eq!(p.to_string(), "CPUs 3, the harness's policy");
    }

    #[test]
    fn cpus_outside_the_mask_name_the_flag() {
        let err = Placement::resolve(
            &list("0-1"),
            &list("1"),
            Some(&list("2")),
            AttackerSched::Normal,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--attacker-cpus"), "{err}");
        assert!(err.contains("CPU(s) 2"), "{err}");
    }

    #[test]
    fn policy_is_read_after_a_name_with_spaces_and_parens() {
        // 52 fields, as Linux 6.x writes them; field 41 is 5.
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[POLICY_FIELD - 3] = "5".into();
        let stat = format!("123 (a) b (c)) {}", fields.join(" "));
        assert_eq!(stat_policy(&stat).unwrap(), Policy::IDLE);
        assert!(stat_policy("123 (short) S 1 2").is_err());
    }

    /// The attackers' threads really get the CPUs and policy asked for, as the kernel
    /// reports them (both policies: `idle` is the one that needs the system call), and
    /// `verify` names a thread that is not where it was asked to be. One test, so that no
    /// other test's attacker threads are alive while it reads /proc.
    #[test]
    fn runtime_threads_get_the_asked_cpus_and_policy() {
        let mask = crate::cpus::own_mask().unwrap();
        let last = CpuList::new(vec![*mask.cpus().last().unwrap()]).unwrap();
        for sched in [AttackerSched::Idle, AttackerSched::Normal] {
            let placement = Placement::resolve(&mask, &last, Some(&last), sched).unwrap();
            let rt = placement.runtime().unwrap();
            // A blocking-pool thread is an attacker thread too.
            rt.block_on(async { tokio::task::spawn_blocking(|| ()).await.unwrap() });
            let threads = placement.verify().unwrap();
            assert!(threads.len() > placement.cpus.len(), "{threads:?}");
            for t in &threads {
                assert_eq!(t.cpus, last, "{t:?}");
                assert_eq!(t.policy, sched.expected_policy().unwrap(), "{t:?}");
            }
            let elsewhere = Placement {
                sched: match sched {
                    AttackerSched::Idle => AttackerSched::Normal,
                    AttackerSched::Normal => AttackerSched::Idle,
                },
                ..placement
            };
            let err = elsewhere.verify().unwrap_err().to_string();
            let seen = sched.expected_policy().unwrap();
            assert!(err.contains(&format!("at {seen}, not on CPUs")), "{err}");
            drop(rt);
            // The runtime joined its threads; give the kernel a moment to remove them.
            let gone = (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                threads_named(Path::new("/proc/self/task"), THREAD_NAME)
                    .unwrap()
                    .is_empty()
            });
            assert!(gone, "attacker threads outlive their runtime");
        }
    }
}
