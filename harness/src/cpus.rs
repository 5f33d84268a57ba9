//! CPU lists (`0-3,5`, the kernel's `Cpus_allowed_list` syntax) and the split of the
//! harness's own affinity mask between the servers and the load generator.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};

/// A non-empty, sorted set of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpuList(Vec<usize>);

impl CpuList {
    /// A list from CPU numbers in any order; `None` when `cpus` is empty.
    pub fn new(mut cpus: Vec<usize>) -> Option<Self> {
        cpus.sort_unstable();
        cpus.dedup();
        (!cpus.is_empty()).then_some(CpuList(cpus))
    }

    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true (a `CpuList` is non-empty by construction); here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CPUs of each of `n` processes sharing this list, dealt round-robin: with at
    /// least `n` CPUs, process `i` gets every `n`th CPU from the `i`th (`0-3` over 2:
    /// `0,2` and `1,3`); with fewer, one CPU each, taken in turn (`0-1` over 3: `0`, `1`,
    /// `0`), so a one-CPU list puts them all on that CPU.
    pub fn round_robin(&self, n: usize) -> Vec<CpuList> {
        let cpus = &self.0;
        (0..n)
            .map(|i| {
                let mine = if cpus.len() >= n {
                    cpus.iter().copied().skip(i).step_by(n).collect()
                } else {
                    vec![cpus[i % cpus.len()]]
                };
                CpuList(mine)
            })
            .collect()
    }

    /// Fails, naming `what` (a flag or plan key), when a CPU is not in `mask`.
    pub fn ensure_within(&self, mask: &CpuList, what: &str) -> anyhow::Result<()> {
        let outside: Vec<usize> = self
            .0
            .iter()
            .copied()
            .filter(|c| !mask.0.contains(c))
            .collect();
        if let Some(outside) = CpuList::new(outside) {
            bail!(
                "{what} {self}: CPU(s) {outside} are outside the harness's affinity mask {mask} \
                 (see `taskset -p $$`)"
            );
        }
        Ok(())
    }
}

impl FromStr for CpuList {
    type Err = anyhow::Error;

    /// Parses `0-3,5` (ranges inclusive, spaces around items allowed).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut cpus = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                bail!("CPU list {s:?}: empty item (expected e.g. `0-3,5`)");
            }
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (cpu_number(lo, s)?, cpu_number(hi, s)?),
                None => {
                    let cpu = cpu_number(item, s)?;
                    (cpu, cpu)
                }
            };
            if lo > hi {
                bail!("CPU list {s:?}: range {item} runs backwards");
            }
            cpus.extend(lo..=hi);
        }
        CpuList::new(cpus).with_context(|| format!("CPU list {s:?} is empty"))
    }
}

fn cpu_number(text: &str, whole: &str) -> anyhow::Result<usize> {
    let cpu: usize = text
        .trim()
        .parse()
        .with_context(|| format!("CPU list {whole:?}: {text:?} is not a CPU number"))?;
    if cpu >= MAX_CPUS {
        bail!("CPU list {whole:?}: CPU {cpu} is beyond the {MAX_CPUS} CPUs Linux can name");
    }
    Ok(cpu)
}

impl fmt::Display for CpuList {
    /// The compact kernel form: `0-3,5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

/// Which CPUs the servers and the load generator get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSplit {
    pub server: CpuList,
    pub client: CpuList,
    /// Set when servers and client had to share CPUs (a one-CPU mask).
    pub warning: Option<String>,
}

impl CpuSplit {
    /// The harness's own mask, split as in the original experiment unless the user chose:
    /// the load generator on the last CPU, the servers on the rest. Explicit lists must lie
    /// inside the mask.
    pub fn resolve(
        mask: &CpuList,
        server: Option<&CpuList>,
        client: Option<&CpuList>,
    ) -> anyhow::Result<Self> {
        if let Some(server) = server {
            server.ensure_within(mask, "--server-cpus")?;
        }
        if let Some(client) = client {
            client.ensure_within(mask, "--client-cpus")?;
        }
        let last = *mask.0.last().expect("a CpuList is never empty");
        let rest = CpuList::new(mask.0[..mask.0.len() - 1].to_vec());
        let client = client.cloned().unwrap_or_else(|| CpuList(vec![last]));
        let server = match (server, rest) {
            (Some(server), _) => server.clone(),
            (None, Some(rest)) if client.0 == [last] => rest,
            // The client took something other than the last CPU: servers get what it left.
            (None, _) => {
                let left: Vec<usize> = mask
                    .0
                    .iter()
                    .copied()
                    .filter(|c| !client.0.contains(c))
                    .collect();
                CpuList::new(left).unwrap_or_else(|| mask.clone())
            }
        };
        let shared: Vec<usize> = server
            .0
            .iter()
            .copied()
            .filter(|c| client.0.contains(c))
            .collect();
        let warning = CpuList::new(shared).map(|shared| {
            format!(
                "servers ({server}) and load generator ({client}) share CPU(s) {shared}: \
                 results measure contention as much as TLS cost"
            )
        });
        Ok(CpuSplit {
            server,
            client,
            warning,
        })
    }
}

/// The harness's own affinity mask (what it may hand out to children).
pub fn own_mask() -> anyhow::Result<CpuList> {
    CpuList::new(sysio::host::affinity_cpus())
        .context("reading this process's CPU affinity mask (sched_getaffinity) gave no CPU")
}

/// CPU numbers must fit the kernel's `cpu_set_t` (what `sched_setaffinity` takes).
const MAX_CPUS: usize = 1024;

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn list(s: &str) -> CpuList {
        s.parse().unwrap()
    }

    #[rstest]
    #[case("0", vec![0])]
    #[case("0-3,5", vec![0, 1, 2, 3, 5])]
    #[case(" 5 , 0-1 ", vec![0, 1, 5])]
    #[case("2,2,1-2", vec![1, 2])]
    fn parses_kernel_syntax(#[case] text: &str, #[case] cpus: Vec<usize>) {
        assert_eq!(list(text).cpus(), cpus.as_slice());
    }

    #[rstest]
    #[case("", "empty item")]
    #[case("0,,1", "empty item")]
    #[case("3-1", "runs backwards")]
    #[case("a", "not a CPU number")]
    #[case("0-x", "not a CPU number")]
    #[case("-1", "not a CPU number")]
    #[case("5000", "beyond")]
    fn rejects_bad_lists(#[case] text: &str, #[case] message: &str) {
        let err = text.parse::<CpuList>().unwrap_err().to_string();
        assert!(err.contains(message), "{err}");
    }

    #[rstest]
    #[case("0-3,5")]
    #[case("0")]
    #[case("1,3,5-7")]
    fn displays_compactly(#[case] text: &str) {
        assert_eq!(list(text).to_string(), text);
    }

    #[rstest]
    #[case("0-3", 2, &["0,2", "1,3"])]
    #[case("0-4", 2, &["0,2,4", "1,3"])]
    #[case("4-6", 3, &["4", "5", "6"])]
    #[case("0-1", 3, &["0", "1", "0"])]
    #[case("7", 4, &["7", "7", "7", "7"])]
    #[case("0-3", 1, &["0-3"])]
    fn processes_share_the_list_round_robin(
        #[case] cpus: &str,
        #[case] n: usize,
        #[case] expected: &[&str],
    ) {
        let shares: Vec<String> = list(cpus)
            .round_robin(n)
            .iter()
            .map(|c| c.to_string())
            .collect();
        assert_eq!(shares, expected);
    }

    #[test]
    fn default_split_gives_client_the_last_cpu() {
        let split = CpuSplit::resolve(&list("0-3"), None, None).unwrap();
        assert_eq!(split.server, list("0-2"));
        assert_eq!(split.client, list("3"));
        assert!(split.warning.is_none());
    }

    #[test]
    fn one_cpu_is_shared_with_a_warning() {
        let split = CpuSplit::resolve(&list("2"), None, None).unwrap();
        assert_eq!(split.server, list("2"));
        assert_eq!(split.client, list("2"));
        assert!(split.warning.unwrap().contains("share"));
    }

    #[test]
    fn explicit_client_leaves_the_rest_to_servers() {
        let split = CpuSplit::resolve(&list("0-3"), None, Some(&list("0"))).unwrap();
        assert_eq!(split.server, list("1-3"));
        assert_eq!(split.client, list("0"));
    }

    #[test]
    fn list_outside_the_mask_names_the_flag() {
        let err = CpuSplit::resolve(&list("0-1"), Some(&list("0-2")), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--server-cpus"), "{err}");
        assert!(err.contains("CPU(s) 2"), "{err}");
    }
}
