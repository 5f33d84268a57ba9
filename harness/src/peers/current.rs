//! The current peer set: where `harness peers install` keeps it, what its folder holds, and
//! whether an install is complete.
//!
//! One folder holds everything (default `~/.local/share/tls-off/peers`, or `$TLS_OFF_PEERS`):
//! - `rootfs/`: a Debian root filesystem (minbase) with the peers' packages, AWS-LC in
//!   `/opt/aws-lc` and HAProxy built on it in `/opt/haproxy-awslc`;
//! - `bin/`: one wrapper per program, which runs the root filesystem's binary on this host
//!   with the root filesystem's own loader and libraries (see [`wrapper`]);
//! - `stages/`: one marker per finished install step; `logs/`: each step's output;
//! - `peers.json`: written last, so its presence means the install finished.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The Debian release the current peers come from. Pinned by name, not `stable`, so one
/// install stays one release and a figure names what it ran.
pub const SUITE: &str = "trixie";

/// The programs of the current set: the name of the wrapper in `bin/` and the binary's
/// path inside the root filesystem.
pub const PROGRAMS: [(&str, &str); 5] = [
    ("haproxy", "/usr/sbin/haproxy"),
    ("nginx", "/usr/sbin/nginx"),
    ("hitch", "/usr/sbin/hitch"),
    ("stunnel", "/usr/bin/stunnel4"),
    ("haproxy-awslc", "/opt/haproxy-awslc/sbin/haproxy"),
];

/// nginx's stream module inside the root filesystem.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// The folder of the current peer set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDir {
    pub path: PathBuf,
}

/// What `peers.json` records: the install is complete, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub suite: String,
    /// When the install finished (RFC 3339, UTC).
    pub installed: String,
    /// The library HAProxy's AWS-LC build says it runs (`AWS-LC 5.12.0`).
    pub aws_lc: String,
    /// The HAProxy source release built on AWS-LC, and where it came from.
    pub haproxy_awslc_source: String,
    /// Each wrapper's version line, as `peers install` found it.
    pub versions: Vec<(String, String)>,
}

impl PeerDir {
    /// `$TLS_OFF_PEERS`, else `$XDG_DATA_HOME/tls-off/peers`, else
    /// `$HOME/.local/share/tls-off/peers`: outside the workspace, so neither `cargo clean`
    /// nor a new clone loses a 10-minute install.
    pub fn default_location() -> anyhow::Result<PeerDir> {
        let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        let path = if let Some(dir) = env("TLS_OFF_PEERS") {
            PathBuf::from(dir)
        } else if let Some(data) = env("XDG_DATA_HOME") {
            Path::new(&data).join("tls-off/peers")
        } else {
            let home = env("HOME").context(
                "neither TLS_OFF_PEERS nor XDG_DATA_HOME nor HOME is set: \
                 cannot tell where the current peers live (give --dir)",
            )?;
            Path::new(&home).join(".local/share/tls-off/peers")
        };
        Ok(PeerDir { path })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    pub fn bin(&self) -> PathBuf {
        self.path.join("bin")
    }

    pub fn stages(&self) -> PathBuf {
        self.path.join("stages")
    }

    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path.join("peers.json")
    }

    /// The wrapper that runs `program` (a name of [`PROGRAMS`]).
    pub fn wrapper(&self, program: &str) -> PathBuf {
        self.bin().join(program)
    }

    /// nginx's stream module as a host path (nginx runs on the host, so `load_module`
    /// must name the root filesystem's copy, not the host's).
    pub fn nginx_stream_module(&self) -> PathBuf {
        self.rootfs()
            .join(NGINX_STREAM_MODULE.trim_start_matches('/'))
    }

    /// The root filesystem's loader listing the libraries program `name` loads (what
    /// `ldd` prints), with the search path its wrapper runs it with.
    pub fn library_list(&self, name: &str) -> anyhow::Result<std::process::Command> {
        let (triplet, loader) = multiarch()?;
        let (_, path) = PROGRAMS
            .iter()
            .find(|(n, _)| *n == name)
            .with_context(|| format!("{name} is not a program of the current set"))?;
        let root = self.rootfs();
        let lib = root.join("usr/lib").join(triplet);
        let mut search = lib.clone().into_os_string();
        search.push(":");
        search.push(root.join("usr/lib"));
        let mut cmd = std::process::Command::new(lib.join(loader));
        cmd.args(["--inhibit-cache", "--list", "--library-path"])
            .arg(search)
            .arg(root.join(path.trim_start_matches('/')));
        Ok(cmd)
    }

    /// The manifest of a finished install; `None` when there is none (never installed,
    /// removed, or cut off before its last step).
    pub fn manifest(&self) -> Option<Manifest> {
        let text = std::fs::read(self.manifest_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// The multiarch folder and loader name of this machine (the root filesystem has the
/// host's architecture: debootstrap makes it so by default).
pub fn multiarch() -> anyhow::Result<(&'static str, &'static str)> {
    match std::env::consts::ARCH {
        "x86_64" => Ok(("x86_64-linux-gnu", "ld-linux-x86-64.so.2")),
        "aarch64" => Ok(("aarch64-linux-gnu", "ld-linux-aarch64.so.1")),
        other => anyhow::bail!("peers install knows x86_64 and aarch64, not {other}"),
    }
}

/// The wrapper script for `name`, which runs `path` of the root filesystem.
///
/// The host's loader cannot run these binaries (the root filesystem's glibc is newer), and
/// a chroot cannot see the run folder's certificates and sockets, so the root filesystem's
/// own loader runs the binary on the host: `--inhibit-cache` keeps the host's ld.so.cache
/// out, `bin/.ld/NAME` (a link to that loader) makes `/proc/PID/comm` the program's name,
/// and both `exec`s keep the PID the harness started, so pinning, CPU and RSS accounting
/// and signals reach the peer itself. OpenSSL's config and modules are the root
/// filesystem's too (its `openssl.cnf` is an absolute link that would land on the host's).
pub fn wrapper(name: &str, path: &str, triplet: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # {name} from the current peer set ({SUITE} root filesystem in ../rootfs), run on this\n\
         # host by the root filesystem's own loader; written by `harness peers install`.\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         root=$(cd \"$here/../rootfs\" && pwd)\n\
         lib=\"$root/usr/lib/{triplet}\"\n\
         export OPENSSL_CONF=\"$root/etc/ssl/openssl.cnf\" OPENSSL_MODULES=\"$lib/ossl-modules\" \
         OPENSSL_ENGINES=\"$lib/engines-3\"\n\
         exec \"$here/.ld/{name}\" --inhibit-cache --library-path \"$lib:$root/usr/lib\" \
         --argv0 {name} \"$root{path}\" \"$@\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_holds_everything_and_the_manifest_marks_a_finished_install() {
        let dir = tempfile::tempdir().unwrap();
        let peers = PeerDir {
            path: dir.path().join("peers"),
        };
        assert!(peers.manifest().is_none());
        for sub in [peers.rootfs(), peers.bin(), peers.stages(), peers.logs()] {
            assert!(sub.starts_with(&peers.path), "{}", sub.display());
        }
        assert_eq!(
            peers.nginx_stream_module(),
            peers
                .path
                .join("rootfs/usr/lib/nginx/modules/ngx_stream_module.so")
        );
        std::fs::create_dir_all(&peers.path).unwrap();
        std::fs::write(peers.manifest_path(), "{ not json").unwrap();
        assert!(
            peers.manifest().is_none(),
            "a damaged manifest is no install"
        );
        let manifest = Manifest {
            suite: SUITE.into(),
            installed: "2026-12-07T03:00:00Z".into(),
            aws_lc: "AWS-LC 5.12.0".into(),
            haproxy_awslc_source: "3.0.11".into(),
            versions: vec![("hitch".into(), "hitch 1.8.0".into())],
        };
        std::fs::write(
            peers.manifest_path(),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        assert_eq!(peers.manifest(), Some(manifest));
    }

    #[test]
    fn a_wrapper_execs_the_rootfs_binary_with_the_rootfs_loader() {
        let text = wrapper("nginx", "/usr/sbin/nginx", "x86_64-linux-gnu");
        assert!(text.starts_with("#!/bin/sh\n"));
        assert!(text.contains(
            "exec \"$here/.ld/nginx\" --inhibit-cache --library-path \
             \"$lib:$root/usr/lib\" --argv0 nginx \"$root/usr/sbin/nginx\" \"$@\""
        ));
        assert!(text.contains("lib=\"$root/usr/lib/x86_64-linux-gnu\""));
    }
}
