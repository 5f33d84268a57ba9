//! Readers of `/proc` and `/proc/sys`: a process's CPU time, memory, descriptors and
//! children, and the host's TCP facts (TIME_WAIT sockets, ephemeral ports, port reuse).
//! Each returns what the kernel says or an error naming the file; nothing here changes
//! anything, except [`raise_nofile`] for the harness's own limit.

use std::sync::OnceLock;

use anyhow::Context;

/// Every live descendant process of `pid` (children of all its threads, recursively).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = task.path().join("children");
            let Ok(text) = std::fs::read_to_string(children) else {
                continue;
            };
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
            {
                if child != pid && !out.contains(&child) {
                    out.push(child);
                    todo.push(child);
                }
            }
        }
    }
    out
}

/// True when `pid` is not running: gone, or a zombie nobody has reaped yet.
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A `kB` field of `/proc/PID/status` (VmRSS, VmHWM), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    kib_field(pid, "status", field)
}

/// A `Key:  N kB` field of the `/proc/PID/<file>` text, in KiB.
fn kib_field(pid: u32, file: &str, field: &str) -> anyhow::Result<u64> {
    let text = proc_file(pid, file)?;
    let value =
        status_field(&text, field).with_context(|| format!("no {field} in /proc/{pid}/{file}"))?;
    value
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("/proc/{pid}/{file} {field} {value:?}"))
}

/// Proportional set size (`Pss` of `/proc/PID/smaps_rollup`), KiB: a page N processes
/// share counts 1/N in each, so a sum over a master and its forked workers counts the
/// pages they share (certificates loaded before the fork) once, where VmRSS counts them
/// in every process.
pub fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    kib_field(pid, "smaps_rollup", "Pss")
}

/// Open descriptors of `pid`: the entries of `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// A process and its live descendants: what a multi-process terminator (nginx's master and
/// workers, HAProxy's `-W` master and worker, hitch's manager and children) is made of.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    all.extend(descendants(pid));
    all
}

/// The sum of a `kB` field of `/proc/PID/status` (VmRSS, VmHWM) over [`tree`]`(pid)`; an
/// error when `pid` itself cannot be read (a descendant that exits meanwhile counts 0).
pub fn tree_memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    tree_sum(pid, |p| memory_kib(p, field))
}

/// [`pss_kib`] summed over [`tree`]`(pid)`: pages a master shares with its workers once.
pub fn tree_pss_kib(pid: u32) -> anyhow::Result<u64> {
    tree_sum(pid, pss_kib)
}

/// `figure` of `pid` plus that of each live descendant (one that exits between the
/// listing and the read counts 0); an error only when `pid` itself cannot be read.
fn tree_sum(pid: u32, figure: impl Fn(u32) -> anyhow::Result<u64>) -> anyhow::Result<u64> {
    let own = figure(pid)?;
    Ok(own
        + descendants(pid)
            .into_iter()
            .filter_map(|p| figure(p).ok())
            .sum::<u64>())
}

/// Open descriptors over [`tree`]`(pid)`: the sum, and the most any one process holds
/// (a descriptor limit is per process). `None` when `pid` itself cannot be read.
pub fn tree_fds(pid: u32) -> Option<(u64, u64)> {
    let own = fd_count(pid)?;
    let mut sum = own;
    let mut most = own;
    for p in descendants(pid) {
        let n = fd_count(p).unwrap_or(0);
        sum += n;
        most = most.max(n);
    }
    Some((sum, most))
}

/// `Max open files` soft and hard limits of `pid`, from `/proc/PID/limits`.
pub fn nofile_limits(pid: u32) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
}

/// Raises this process's open-file limit (inherited by every child) as far as it may go:
/// the soft limit to the hard one, and as root the hard one to `want`. Returns the soft
/// limit now in force.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("reading the open-file limit")?;
    if hard < want && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return Ok(want);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("raising the open-file limit")?;
        return Ok(hard);
    }
    Ok(soft)
}

/// Client-side TCP sockets in TIME_WAIT toward remote port `port` (IPv4 and IPv6), from
/// `/proc/net/tcp{,6}`: each holds one of the client's ephemeral ports for that server.
/// (The server's own TIME_WAIT sockets, when it closes first, cost the client nothing.)
pub fn time_wait_sockets_to(port: u16) -> u64 {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| count_state_to(&text, TCP_TIME_WAIT, port))
        .sum()
}

/// Sockets in `state` (hex, as in the `st` column) whose remote port is `port`, in a
/// `/proc/net/tcp` text (`rem_address` is `HEXADDR:HEXPORT`).
fn count_state_to(text: &str, state: &str, port: u16) -> u64 {
    text.lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let remote = fields.nth(2);
            let st = fields.next();
            st == Some(state)
                && remote
                    .and_then(|r| r.rsplit_once(':'))
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count() as u64
}

/// `net.ipv4.tcp_tw_reuse`: 0 off, 1 on, 2 on for loopback only (Linux's default).
pub fn tcp_tw_reuse() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_tw_reuse")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `st` value of TIME_WAIT in `/proc/net/tcp`.
const TCP_TIME_WAIT: &str = "06";

/// How many ephemeral ports a client has (`net.ipv4.ip_local_port_range`).
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (low, high) = (it.next()??, it.next()??);
    Some(high.saturating_sub(low) + 1)
}

/// User + system CPU seconds of process `pid` so far, all threads included (fields 14 and
/// 15 of `/proc/PID/stat`, in clock ticks).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = proc_file(pid, "stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .with_context(|| format!("/proc/{pid}/stat has no command field"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize, what: &str| -> anyhow::Result<u64> {
        fields
            .get(i)
            .with_context(|| format!("/proc/{pid}/stat has no {what} field"))?
            .parse()
            .with_context(|| format!("/proc/{pid}/stat {what}"))
    };
    // Field 3 (state) is fields[0], so field N is fields[N - 3].
    let total = ticks(14 - 3, "utime")? + ticks(15 - 3, "stime")?;
    Ok(total as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(t)) if t > 0 => t as f64,
            // USER_HZ is 100 on every Linux architecture the harness runs on.
            _ => 100.0,
        }
    })
}

pub(crate) fn proc_file(pid: u32, name: &str) -> anyhow::Result<String> {
    let path = format!("/proc/{pid}/{name}");
    std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
}

/// The value of `Key:\tvalue` in a `/proc/PID/status` text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_sockets_are_counted_from_the_st_column() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue\n\
                    0: 0100007F:A000 0100007F:1F90 06 00000000:00000000\n\
                    1: 0100007F:A001 0100007F:1F90 01 00000000:00000000\n\
                    2: 0100007F:A002 0100007F:1F90 06 00000000:00000000\n\
                    3: 0100007F:1F90 0100007F:A003 06 00000000:00000000\n";
        // Client side toward port 0x1F90 (8080): lines 0 and 2; line 3 is the server's.
        assert_eq!(count_state_to(text, TCP_TIME_WAIT, 8080), 2);
        assert_eq!(count_state_to(text, TCP_TIME_WAIT, 8081), 0);
        assert!(ephemeral_ports().is_some_and(|n| n > 1000));
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tx\nCpus_allowed_list:\t0-1\nVmHWM:\t  1234 kB\n";
        assert_eq!(status_field(text, "Cpus_allowed_list"), Some("0-1"));
        assert_eq!(status_field(text, "VmHWM"), Some("1234 kB"));
        assert_eq!(status_field(text, "Nope"), None);
    }

    #[test]
    fn cpu_seconds_of_self() {
        let secs = cpu_seconds(std::process::id()).unwrap();
        assert!(secs >= 0.0);
    }

    #[test]
    fn proc_figures_of_self() {
        let me = std::process::id();
        let rss = memory_kib(me, "VmRSS").unwrap();
        assert!(rss > 0);
        // Alone, nothing of ours is shared with a child: Pss is at most RSS.
        let pss = pss_kib(me).unwrap();
        assert!(pss > 0 && pss <= rss + 1024, "pss {pss} rss {rss}");
        assert!(fd_count(me).unwrap() >= 3);
        let (soft, hard) = nofile_limits(me).unwrap();
        assert!(!soft.is_empty() && !hard.is_empty());
    }

    #[test]
    fn tree_figures_add_the_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        assert!(tree(me).contains(&child.id()) && tree(me)[0] == me);
        let own = memory_kib(me, "VmRSS").unwrap();
        assert!(tree_memory_kib(me, "VmRSS").unwrap() > own);
        let (sum, most) = tree_fds(me).unwrap();
        // Both hold at least stdin, stdout and stderr.
        assert!(sum > most && most >= 3, "{sum} {most}");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(tree_memory_kib(u32::MAX, "VmRSS").is_err());
    }
}
