//! The peer TLS terminators (HAProxy, nginx, hitch, stunnel, and HAProxy on AWS-LC): where
//! their binaries are (the host's packages, or the current set that `peers install` makes,
//! see [`current`]), their versions for meta.json, and the config file each runs with in
//! front of our Unix-socket echo-server.
//!
//! Every peer gets what our proxy gets: the run's certificate, the same server CPUs (the
//! harness pins the process; threads or workers inherit the mask), one worker or thread per
//! server CPU where the peer has such a setting (stunnel has none: it runs a thread per
//! connection), TLS 1.2 and 1.3 with session tickets on (each peer's default), and no
//! per-connection logging. The TLS parameters of a measurement are forced from the client
//! side: the load generator offers only the version, suite and group under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins::is_executable;
use crate::plan::{ConfigName, PeerSet};

pub mod check;
mod config;
pub mod current;
pub mod install;
mod source;

pub use config::{args, config_file, haproxy_has_client_hs, Limits, Second, Setup};
use current::PeerDir;

/// A system nginx loads its stream module from here (Debian's libnginx-mod-stream).
pub const NGINX_STREAM_MODULE: &str = current::NGINX_STREAM_MODULE;

/// Where a run's peers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The host's packages, found on `$PATH`.
    System,
    /// The current set in this folder (`peers install`).
    Current(PeerDir),
}

impl Origin {
    pub fn set(&self) -> PeerSet {
        match self {
            Origin::System => PeerSet::System,
            Origin::Current(_) => PeerSet::Current,
        }
    }
}

/// A peer found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub config: ConfigName,
    pub program: PathBuf,
    /// The first line of its version output, e.g. `HAProxy version 2.6.12-1+deb12u4 ...`.
    pub version: String,
    pub origin: Origin,
    /// The TLS library it runs, read from the program (`OpenSSL 3.5.9`, `AWS-LC 5.12.0`;
    /// see [`crate::tls_library`]).
    pub tls_library: String,
}

impl Peer {
    /// nginx's stream module, from the same origin as nginx itself (a module of another
    /// nginx version refuses to load).
    pub fn stream_module(&self) -> PathBuf {
        match &self.origin {
            Origin::System => PathBuf::from(NGINX_STREAM_MODULE),
            Origin::Current(dir) => dir.nginx_stream_module(),
        }
    }
}

/// The Debian package(s) that provide `config`'s program.
pub fn package(config: ConfigName) -> &'static str {
    match config {
        ConfigName::Haproxy => "haproxy",
        ConfigName::Nginx => "nginx-light libnginx-mod-stream",
        ConfigName::Hitch => "hitch",
        ConfigName::Stunnel => "stunnel4",
        _ => "",
    }
}

/// Program names to look for, in order.
fn binaries(config: ConfigName) -> &'static [&'static str] {
    match config {
        ConfigName::Haproxy => &["haproxy"],
        ConfigName::Nginx => &["nginx"],
        ConfigName::Hitch => &["hitch"],
        ConfigName::Stunnel => &["stunnel", "stunnel4"],
        _ => &[],
    }
}

/// Finds `config`'s program in `origin`, or says what is missing and how to get it.
pub fn find(config: ConfigName, origin: &Origin) -> Result<Peer, String> {
    let program = match origin {
        Origin::System => find_on_host(config)?,
        Origin::Current(dir) => {
            let wrapper = dir.wrapper(config.name());
            if !wrapper.is_file() {
                return Err(not_built(config));
            }
            wrapper
        }
    };
    let version = version(config, &program);
    let peer = Peer {
        config,
        program,
        version,
        origin: origin.clone(),
        tls_library: String::new(),
    };
    if config == ConfigName::Nginx && !peer.stream_module().exists() {
        let module = peer.stream_module();
        return Err(missing(
            config,
            &format!("the stream module {}", module.display()),
        ));
    }
    Ok(Peer {
        tls_library: crate::tls_library::of_peer(config, &peer.program, &peer.origin),
        ..peer
    })
}

fn find_on_host(config: ConfigName) -> Result<PathBuf, String> {
    if binaries(config).is_empty() {
        return Err(not_built(config));
    }
    binaries(config)
        .iter()
        .find_map(|name| search_path(name))
        .ok_or_else(|| missing(config, &format!("`{}`", binaries(config).join("` or `"))))
}

/// The one line a run prints for a system peer it skips.
fn missing(config: ConfigName, what: &str) -> String {
    format!(
        "skipping {config}: {what} not found; install it with `apt-get install -y {}`",
        package(config)
    )
}

/// The one line a run prints for a peer that only `peers install` provides.
fn not_built(config: ConfigName) -> String {
    format!(
        "skipping {config}: not in the current peer set; `{}` builds it",
        check::INSTALL_COMMAND
    )
}

/// `name` in `$PATH`, or in the sbin folders a non-root `$PATH` often lacks.
fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// The first line naming the program in its version output (some print it on stderr).
fn version(config: ConfigName, program: &Path) -> String {
    let flag = match config {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc | ConfigName::Nginx => "-v",
        ConfigName::Hitch => "--version",
        _ => "-version",
    };
    let Ok(out) = Command::new(program).arg(flag).output() else {
        return "unknown (the version query failed)".to_owned();
    };
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let word = match config {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => "HAProxy",
        other => other.name(),
    };
    text.lines()
        .map(str::trim)
        .find(|l| l.to_ascii_lowercase().contains(&word.to_ascii_lowercase()))
        .unwrap_or("unknown")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_peer_names_its_package() {
        let line = missing(ConfigName::Nginx, "`nginx`");
        assert_eq!(
            line,
            "skipping nginx: `nginx` not found; install it with \
             `apt-get install -y nginx-light libnginx-mod-stream`"
        );
        assert_eq!(package(ConfigName::Stunnel), "stunnel4");
        assert!(search_path("surely-no-such-program-here").is_none());
    }

    #[test]
    fn current_peers_run_through_their_wrappers_with_their_own_nginx_module() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let current = PeerDir {
            path: dir.path().to_owned(),
        };
        std::fs::create_dir_all(current.bin()).unwrap();
        for (name, line) in [
            ("hitch", "hitch 1.8.0"),
            ("nginx", "nginx version: nginx/1.26.3"),
        ] {
            let wrapper = current.wrapper(name);
            std::fs::write(&wrapper, format!("#!/bin/sh\necho '{line}' >&2\n")).unwrap();
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let origin = Origin::Current(current.clone());
        let hitch = find(ConfigName::Hitch, &origin).unwrap();
        assert_eq!(hitch.program, current.wrapper("hitch"));
        assert_eq!(hitch.version, "hitch 1.8.0");
        // The module must come from the root filesystem, not the host's nginx.
        let err = find(ConfigName::Nginx, &origin).unwrap_err();
        assert!(
            err.contains(&current.nginx_stream_module().display().to_string()),
            "{err}"
        );
        let module = current.nginx_stream_module();
        std::fs::create_dir_all(module.parent().unwrap()).unwrap();
        std::fs::write(&module, "").unwrap();
        let nginx = find(ConfigName::Nginx, &origin).unwrap();
        let (_, text) = config_file(
            ConfigName::Nginx,
            &Setup {
                port: 4433,
                upstream: Path::new("/tmp/h/echo.sock"),
                cert: Path::new("/tmp/h/cert.pem"),
                key: Path::new("/tmp/h/key.pem"),
                combined: Path::new("/tmp/h/combined.pem"),
                threads: 1,
                max_connections: 10,
                scratch: Path::new("/tmp/h/nginx"),
                root: false,
                stream_module: &nginx.stream_module(),
                limits: None,
            },
        );
        assert!(
            text.contains(&format!("load_module {};", module.display())),
            "{text}"
        );
        // Only the current set has HAProxy on AWS-LC.
        let err = find(ConfigName::HaproxyAwslc, &Origin::System).unwrap_err();
        assert!(err.contains("peers install"), "{err}");
        let err = find(ConfigName::HaproxyAwslc, &origin).unwrap_err();
        assert!(err.contains("peers install"), "{err}");
    }
}
