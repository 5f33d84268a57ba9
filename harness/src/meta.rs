//! `meta.json`: everything needed to trust or reproduce a run, beside its CSV: the exact
//! command line and resolved plan, git commit, binary and library versions, CPU model,
//! kernel, CPU count and affinity, start and end time. Also the run folder's name.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::Context;
use serde_json::{json, Value};

use crate::cpus::CpuList;

/// Facts about this machine.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostname: String,
    pub cpu_model: String,
    pub kernel: String,
    pub cpu_count: usize,
    pub affinity: CpuList,
}

impl Host {
    pub fn probe(affinity: CpuList) -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let cpu_count = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().map(str::trim) == Some("processor"))
            .count()
            .max(1);
        Host {
            hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "host".into()),
            cpu_model,
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            cpu_count,
            affinity,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "hostname": self.hostname,
            "cpu_model": self.cpu_model,
            "kernel": self.kernel,
            "cpu_count": self.cpu_count,
            "harness_affinity": self.affinity.to_string(),
        })
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// `2024-05-01T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `20240501T120000Z`: the run folder's time stamp (UTC, sorts by time).
pub fn folder_stamp(t: SystemTime) -> String {
    rfc3339(t).replace(['-', ':'], "")
}

/// The host name as a file-name-safe word.
pub fn folder_host(hostname: &str) -> String {
    let safe: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "host".to_owned()
    } else {
        safe
    }
}

/// `git rev-parse HEAD` and whether tracked files differ from it.
pub fn git(root: Option<&Path>) -> Value {
    let run = |args: &[&str]| -> Option<String> {
        let mut cmd = Command::new("git");
        if let Some(root) = root {
            cmd.arg("-C").arg(root);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = run(&["rev-parse", "HEAD"]);
    let dirty = commit
        .as_ref()
        .and_then(|_| run(&["status", "--porcelain", "--untracked-files=no"]))
        .map(|s| !s.is_empty());
    json!({ "commit": commit, "dirty": dirty })
}

/// Versions of the TLS stack, from the workspace's Cargo.lock (what the binaries were
/// built with), plus the system OpenSSL as `openssl version` reports it.
pub fn library_versions(root: Option<&Path>) -> Value {
    let lock = root
        .map(|r| r.join("Cargo.lock"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mut out = serde_json::Map::new();
    for name in LOCKED_CRATES {
        out.insert(name.to_owned(), json!(locked_version(&lock, name)));
    }
    let cli = Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.insert("openssl_cli".to_owned(), json!(cli));
    Value::Object(out)
}

/// The version of `name` in a Cargo.lock text (the first, if several are locked).
pub fn locked_version(lock: &str, name: &str) -> Option<String> {
    let parsed: toml::Value = toml::from_str(lock).ok()?;
    parsed
        .get("package")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(toml::Value::as_str) == Some(name))?
        .get("version")?
        .as_str()
        .map(str::to_owned)
}

/// Writes `value` to `path` through a temporary file and a rename, so a reader (or a
/// crash) never sees half a file.
pub fn write_json(path: &Path, value: &Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).context("serialising meta.json")?;
    std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// The command line as one shell-quoted string.
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Crates whose versions decide TLS performance.
const LOCKED_CRATES: [&str; 6] = [
    "rustls",
    "aws-lc-rs",
    "aws-lc-sys",
    "ring",
    "openssl",
    "openssl-sys",
];

/// The file's name in the run folder (and in a saved baseline).
pub const FILE: &str = "meta.json";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn folder_names_are_utc_and_safe() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(folder_stamp(t), "20231114T221320Z");
        assert_eq!(folder_host("my host/1"), "my_host_1");
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        let lock = "version = 4\n[[package]]\nname = \"ring\"\nversion = \"0.17.8\"\n\
                    [[package]]\nname = \"rustls\"\nversion = \"0.23.1\"\n";
        assert_eq!(locked_version(lock, "rustls").as_deref(), Some("0.23.1"));
        assert_eq!(locked_version(lock, "openssl"), None);
        let real = library_versions(crate::bins::workspace_root().as_deref());
        assert!(
            real["rustls"].as_str().unwrap().starts_with("0.23"),
            "{real}"
        );
    }

    #[test]
    fn host_and_git_are_probed() {
        let host = Host::probe("0".parse().unwrap());
        assert!(host.cpu_count >= 1);
        assert!(!host.kernel.is_empty());
        let git = git(crate::bins::workspace_root().as_deref());
        assert!(git.get("commit").is_some());
    }

    #[test]
    fn shell_line_quotes_what_needs_it() {
        let args = ["harness", "--sizes", "10,100", "--note", "it's a test"].map(String::from);
        assert_eq!(
            shell_line(&args),
            "harness --sizes 10,100 --note 'it'\\''s a test'"
        );
    }
}
