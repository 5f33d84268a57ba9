//! The binaries a run drives: built by the harness itself (`cargo build --release -p proxy
//! -p echo-server -p loadgen`, so the user never needs a separate build step) and found in
//! the workspace's `target/release` (wherever `cargo metadata` says the target dir is), or
//! taken as they are from `--bin-dir`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::procs::{describe, Stop};
use crate::tls_library::Ours;

/// Paths of the binaries a run starts.
#[derive(Debug, Clone)]
pub struct Bins {
    pub dir: PathBuf,
    pub proxy: PathBuf,
    pub echo: PathBuf,
    pub loadgen: PathBuf,
}

/// The workspace packages whose binaries a run needs, with their binary names.
pub const PACKAGES: [(&str, &str); 3] = [
    ("proxy", "proxy"),
    ("echo-server", "echo-server"),
    ("loadgen", "loadgen"),
];

impl Bins {
    /// The binaries in `dir`; fails naming every one that is missing (only `loadgen` is
    /// needed when `remote` is set).
    pub fn locate(dir: &Path, remote: bool) -> anyhow::Result<Bins> {
        // Absolute, so meta.json and the logs say exactly which binaries ran.
        let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let bins = Bins {
            dir: dir.to_owned(),
            proxy: dir.join("proxy"),
            echo: dir.join("echo-server"),
            loadgen: dir.join("loadgen"),
        };
        let mut missing = Vec::new();
        for (path, package) in bins.needed(remote) {
            if !is_executable(path) {
                missing.push(format!(
                    "{} (built by `cargo build --release -p {package}`)",
                    path.display()
                ));
            }
        }
        if !missing.is_empty() {
            bail!("missing binary: {}", missing.join(", "));
        }
        Ok(bins)
    }

    fn needed(&self, remote: bool) -> Vec<(&Path, &'static str)> {
        let mut out = vec![(self.loadgen.as_path(), "loadgen")];
        if !remote {
            out.push((self.proxy.as_path(), "proxy"));
            out.push((self.echo.as_path(), "echo-server"));
        }
        out
    }

    /// What the binaries say of themselves, each `--version` run once: meta.json's
    /// `binaries` (path and version line of each, and for the proxy and echo-server the TLS
    /// library of each backend), the OpenSSL the proxy's openssl backend runs as it names
    /// it ("OpenSSL 3.6.3 ... (built with the workspace)"), and the libraries the rows name.
    pub fn describe(&self, remote: bool) -> Described {
        let mut map = serde_json::Map::new();
        let (mut proxy, mut echo) = (String::new(), String::new());
        for (path, package) in self.needed(remote) {
            let text = command_text(path, &["--version"]);
            let entry = serde_json::json!({
                "path": path.display().to_string(),
                "version": first_line(&text),
            });
            match package {
                "proxy" => proxy = text.unwrap_or_default(),
                "echo-server" => echo = text.unwrap_or_default(),
                _ => {}
            }
            map.insert(package.to_owned(), entry);
        }
        let tls_libraries = Ours::read(&proxy, &echo);
        for (package, echo) in [("proxy", false), ("echo-server", true)] {
            if let Some(entry) = map.get_mut(package) {
                entry["tls_libraries"] = tls_libraries.to_json(echo);
            }
        }
        let linked_openssl = proxy
            .lines()
            .find_map(|line| line.strip_prefix("openssl backend: "))
            .map(str::to_owned);
        Described {
            json: serde_json::Value::Object(map),
            linked_openssl,
            tls_libraries,
        }
    }
}

/// What [`Bins::describe`] read from the binaries' `--version`.
#[derive(Debug, Clone)]
pub struct Described {
    /// meta.json's `binaries`.
    pub json: serde_json::Value,
    /// The proxy's `openssl backend:` line, if it has one.
    pub linked_openssl: Option<String>,
    /// The TLS library of each backend in the proxy and the echo-server.
    pub tls_libraries: Ours,
}

/// Runs `cargo build --release` for the packages a run needs and returns the directory the
/// binaries land in. Cargo's progress goes to the harness's stderr.
pub fn build(stop: &Stop, remote: bool) -> anyhow::Result<PathBuf> {
    let manifest = workspace_manifest();
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release"]);
    for (package, _) in PACKAGES {
        if remote && package != "loadgen" {
            continue;
        }
        cmd.args(["-p", package]);
    }
    if let Some(manifest) = &manifest {
        cmd.arg("--manifest-path").arg(manifest);
    }
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_set_by_outer_cargo) {
            cmd.env_remove(name);
        }
    }
    // Its own process group, so that an interrupted build takes its rustc children along.
    cmd.stdin(Stdio::null()).process_group(0);
    let line = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {line} (is cargo on PATH, or CARGO set?)"))?;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for cargo build")? {
            break status;
        }
        if stop.requested() {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let _ = child.wait();
            return Err(crate::procs::Interrupted.into());
        }
        std::thread::sleep(BUILD_POLL);
    };
    if !status.success() {
        bail!("{line} failed ({}); see its output above", describe(status));
    }
    Ok(target_dir(manifest.as_deref())?.join("release"))
}

/// Whether `name` is a variable that `cargo run` and `cargo test` set for the program they
/// run (the harness, or a test that runs it). Build scripts read some of them, and cargo
/// reruns a build script when one it reads changed: ring's reads CARGO_PKG_NAME and
/// CARGO_MANIFEST_DIR, so a build inheriting the harness's values redid ring and every crate
/// above it, and the user's next `cargo build --release` redid them back.
fn is_set_by_outer_cargo(name: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CFG_",
        "CARGO_BIN_EXE_",
    ];
    const NAMES: [&str; 6] = [
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

/// The target directory cargo uses for this workspace (honours CARGO_TARGET_DIR and
/// `.cargo/config.toml`).
fn target_dir(manifest: Option<&Path>) -> anyhow::Result<PathBuf> {
    #[derive(Deserialize)]
    struct Metadata {
        target_directory: PathBuf,
    }
    let mut cmd = Command::new(cargo());
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(manifest) = manifest {
        cmd.arg("--manifest-path").arg(manifest);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", describe(out.status));
    }
    let meta: Metadata =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    Ok(meta.target_directory)
}

/// The workspace this harness was built from, if it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?.to_owned();
    root.join("Cargo.toml").is_file().then_some(root)
}

fn workspace_manifest() -> Option<PathBuf> {
    workspace_root().map(|r| r.join("Cargo.toml"))
}

/// The cargo that runs us (`cargo run` sets CARGO), else the one on PATH.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A regular file (after links) that someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// First line of `program args` stdout (or stderr), or why there is none.
pub fn command_output(program: &Path, args: &[&str]) -> String {
    first_line(&command_text(program, args))
}

/// The whole stdout (or stderr, when stdout is empty) of `program args`, or, as `Err`, why
/// there is none.
fn command_text(program: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("(cannot run {}: {e})", program.display()))?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        let first = text.lines().next().unwrap_or("").trim();
        Err(format!(
            "({} failed: {}: {first})",
            program.display(),
            describe(out.status)
        ))
    }
}

/// The first line of `text`, or the reason there is no text.
fn first_line(text: &Result<String, String>) -> String {
    match text {
        Ok(text) => text.lines().next().unwrap_or("").trim().to_owned(),
        Err(why) => why.clone(),
    }
}

/// How often the harness looks at a running build (and at Ctrl-C).
const BUILD_POLL: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_named_with_their_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bins::locate(dir.path(), false).unwrap_err().to_string();
        assert!(
            err.contains("loadgen (built by `cargo build --release -p loadgen`)"),
            "{err}"
        );
        assert!(err.contains("echo-server"), "{err}");
        let err = Bins::locate(dir.path(), true).unwrap_err().to_string();
        assert!(
            !err.contains("echo-server"),
            "remote needs loadgen only: {err}"
        );
    }

    #[test]
    fn workspace_root_is_found() {
        let root = workspace_root().unwrap();
        assert!(root.join("harness").is_dir());
    }

    #[test]
    fn variables_of_the_cargo_that_runs_us_stay_out_of_the_build() {
        for name in [
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "CARGO_BIN_EXE_proxy",
            "OUT_DIR",
        ] {
            assert!(is_set_by_outer_cargo(name), "{name}");
        }
        // What the user set to steer cargo stays.
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_RELEASE_LTO",
        ] {
            assert!(!is_set_by_outer_cargo(name), "{name}");
        }
    }

    /// Each binary's `--version` runs once, and what it says lands in meta.json's
    /// `binaries`, the linked OpenSSL line and the libraries the rows name.
    #[test]
    fn describe_reads_each_version_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let proxy = include_str!("tls_library/fixtures/proxy-version.txt");
        let echo = "echo-server 0.1.0\nopenssl backend: OpenSSL 3.0.19 27 Jan 2026 (x)\n";
        for (name, text) in [
            ("proxy", proxy),
            ("echo-server", echo),
            ("loadgen", "loadgen 0.1.0\n"),
        ] {
            let script = format!(
                "#!/bin/sh\necho {name} >> {}\ncat <<'END'\n{text}END\n",
                runs.display()
            );
            let path = dir.path().join(name);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let described = Bins::locate(dir.path(), false).unwrap().describe(false);
        let json = &described.json;
        assert_eq!(json["proxy"]["version"], "proxy 0.1.0", "{json}");
        assert_eq!(
            json["proxy"]["tls_libraries"]["rustls-ring"], "rustls 0.23.46 + ring 0.17.14",
            "{json}"
        );
        assert_eq!(
            json["echo-server"]["tls_libraries"]["openssl"],
            "OpenSSL 3.0.19"
        );
        assert!(json["loadgen"].get("tls_libraries").is_none(), "{json}");
        assert_eq!(
            described.linked_openssl.as_deref(),
            Some("OpenSSL 3.6.3 9 Jun 2026 (built with the workspace)")
        );
        assert_eq!(
            described
                .tls_libraries
                .get(false, proxy::tls::Backend::Openssl),
            "OpenSSL 3.6.3"
        );
        let mut ran: Vec<String> = std::fs::read_to_string(&runs)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        ran.sort();
        assert_eq!(ran, ["echo-server", "loadgen", "proxy"]);
    }

    #[test]
    fn command_output_reports_failures() {
        assert!(command_output(Path::new("/nonexistent/x"), &[]).contains("cannot run"));
        assert_eq!(command_output(Path::new("echo"), &["v1.2", "x"]), "v1.2 x");
    }
}
