//! Which TLS library each terminator really ran, read from the program itself, never
//! assumed: HAProxy on OpenSSL 3.0 and HAProxy on AWS-LC differ by up to 4x, and every row
//! says which it measured (the CSV `tls_library` column, meta.json).
//!
//! Values are short and uniform: `OpenSSL 3.5.9`, `AWS-LC 5.12.0`, `rustls 0.23.31 +
//! aws-lc-rs 1.13.3`; what cannot be read is [`UNKNOWN`]. The parsers are pure and tested on
//! recorded outputs (`tls_library/fixtures/`); [`of_peer`] and [`Ours::read`] run the
//! programs:
//!
//! - HAProxy `-vv`: `Running on OpenSSL version : ...` (the library loaded, not the one
//!   built against);
//! - nginx `-V`: `built with OpenSSL A (running with OpenSSL B)`: B, else A;
//! - stunnel `-version`: `Running  with OpenSSL ...`;
//! - hitch prints no TLS version: the loader's trace names the libcrypto it loads, and that
//!   file holds its version string;
//! - our proxy and echo-server: their `--version` has a line per backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proxy::tls::Backend;

use crate::peers::{Origin, Peer};
use crate::plan::{ConfigName, Variant};

/// What a row says when the library cannot be read.
pub const UNKNOWN: &str = "unknown";

/// What a row without TLS says (`http`).
pub const NONE: &str = "none";

/// The TLS library a peer runs, asked of its program (`-vv`, `-V`, `-version`, or for
/// hitch the loader's trace), or [`UNKNOWN`].
pub fn of_peer(config: ConfigName, program: &Path, origin: &Origin) -> String {
    let ask = |flag: &str| output(Command::new(program).arg(flag));
    let library = match config {
        ConfigName::Haproxy | ConfigName::HaproxyAwslc => ask("-vv").as_deref().and_then(haproxy),
        ConfigName::Nginx => ask("-V").as_deref().and_then(nginx),
        ConfigName::Stunnel => ask("-version").as_deref().and_then(stunnel),
        ConfigName::Hitch => library_trace(program, origin)
            .as_deref()
            .and_then(loaded_libcrypto)
            .as_deref()
            .and_then(library_version),
        _ => None,
    };
    library.unwrap_or_else(|| UNKNOWN.to_owned())
}

/// What the loader lists for `program`; it exits before the program's main runs. A current
/// peer's wrapper is a shell script, which the trace would describe instead, so its
/// root filesystem's loader is asked directly.
fn library_trace(program: &Path, origin: &Origin) -> Option<String> {
    match origin {
        Origin::System => output(Command::new(program).env("LD_TRACE_LOADED_OBJECTS", "1")),
        Origin::Current(dir) => output(&mut dir.library_list("hitch").ok()?),
    }
}

/// The library of one measurement's terminator: the peer's, our proxy's or (for `https-*`,
/// where the echo-server terminates TLS itself) the echo-server's for the variant's backend,
/// or [`NONE`] without TLS.
pub fn of_variant(variant: &Variant, ours: &Ours, peers: &[Peer]) -> String {
    let config = variant.config;
    if config.is_peer() {
        return peers
            .iter()
            .find(|p| p.config == config)
            .map_or_else(|| UNKNOWN.to_owned(), |p| p.tls_library.clone());
    }
    let Some(backend) = variant.backend else {
        return NONE.to_owned();
    };
    ours.get(config.echo_terminates(), backend)
}

/// The TLS library of each backend in our two terminating binaries, read once from their
/// `--version` (the proxy's also names the OpenSSL meta.json records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ours {
    proxy: BTreeMap<&'static str, String>,
    echo_server: BTreeMap<&'static str, String>,
}

impl Ours {
    /// From the binaries' `--version` texts (empty when a binary was not run).
    pub fn read(proxy_version: &str, echo_version: &str) -> Ours {
        let by_backend = |text: &str| {
            Backend::ALL
                .into_iter()
                .filter_map(|b| Some((b.name(), ours(text, b)?)))
                .collect()
        };
        Ours {
            proxy: by_backend(proxy_version),
            echo_server: by_backend(echo_version),
        }
    }

    /// The library of `backend` in the echo-server (`echo`) or the proxy, or [`UNKNOWN`].
    pub fn get(&self, echo: bool, backend: Backend) -> String {
        let map = if echo { &self.echo_server } else { &self.proxy };
        map.get(backend.name())
            .cloned()
            .unwrap_or_else(|| UNKNOWN.to_owned())
    }

    /// The proxy's (`echo` false) or echo-server's libraries by backend name, for meta.json.
    pub fn to_json(&self, echo: bool) -> serde_json::Value {
        serde_json::json!(if echo { &self.echo_server } else { &self.proxy })
    }
}

/// HAProxy `-vv`: the library it runs on (`Running on OpenSSL version : AWS-LC 5.12.0`).
pub fn haproxy(vv: &str) -> Option<String> {
    vv.lines()
        .find_map(|l| l.trim().strip_prefix("Running on OpenSSL version :"))
        .and_then(short)
}

/// nginx `-V`: the library it runs with when it says so, else the one it was built with.
pub fn nginx(v: &str) -> Option<String> {
    let line = v
        .lines()
        .find_map(|l| l.trim().strip_prefix("built with "))?;
    match line.split_once("(running with ") {
        Some((_, running)) => short(running.trim_end_matches(')')),
        None => short(line),
    }
}

/// stunnel `-version`: the library it runs with (`Running  with OpenSSL 3.5.9 29 Sep 2026`).
pub fn stunnel(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Running"))
        .and_then(|rest| rest.trim_start().strip_prefix("with "))
        .and_then(short)
}

/// The libcrypto a program loads, from the loader's trace (`LD_TRACE_LOADED_OBJECTS=1
/// PROGRAM`, what ldd prints): `libcrypto.so.3 => /path (0x...)`.
pub fn loaded_libcrypto(trace: &str) -> Option<PathBuf> {
    trace.lines().find_map(|line| {
        let (name, rest) = line.trim().split_once(" => ")?;
        if !name.starts_with("libcrypto.so") {
            return None;
        }
        let path = rest.split(" (").next()?.trim();
        path.starts_with('/').then(|| PathBuf::from(path))
    })
}

/// The OpenSSL version a libcrypto file was built as, from the version string inside it
/// (`OpenSSL 3.5.9 29 Sep 2026`, what `OpenSSL_version()` returns): `OpenSSL 3.5.9`.
pub fn library_version(path: &Path) -> Option<String> {
    openssl_version_in(&std::fs::read(path).ok()?)
}

/// The first `OpenSSL <digits>.<digits>.<digits>` in `bytes`, with any letter suffix
/// (`1.1.1w`).
fn openssl_version_in(bytes: &[u8]) -> Option<String> {
    const PREFIX: &[u8] = b"OpenSSL ";
    bytes.windows(PREFIX.len()).enumerate().find_map(|(at, w)| {
        if w != PREFIX {
            return None;
        }
        let rest = &bytes[at + PREFIX.len()..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'.'))
            .unwrap_or(rest.len());
        let version = std::str::from_utf8(&rest[..end]).ok()?;
        is_version(version).then(|| format!("OpenSSL {version}"))
    })
}

/// Our `--version` text: the library of `backend` (`rustls-aws-lc backend: rustls 0.23.31 +
/// aws-lc-rs 1.13.3`; the openssl line's date and origin are dropped: `OpenSSL 3.6.3`, and
/// the native-tls line's: `native-tls 0.2.18 + OpenSSL 3.6.3`).
pub fn ours(version: &str, backend: Backend) -> Option<String> {
    let prefix = format!("{backend} backend: ");
    let line = version
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))?;
    match backend {
        Backend::Openssl => short(line),
        // `native-tls 0.2.18 + OpenSSL 3.6.3 9 Jun 2026 (...)` -> `native-tls 0.2.18 + OpenSSL 3.6.3`
        Backend::NativeTls => {
            let (krate, openssl) = line.split_once(" + ")?;
            let krate = short(krate)?;
            Some(format!("{krate} + {}", short(openssl)?))
        }
        Backend::RustlsAwsLc | Backend::RustlsRing | Backend::RustlsMixed => {
            (!line.trim().is_empty()).then(|| line.trim().to_owned())
        }
    }
}

/// `NAME VERSION ...` as `NAME VERSION` (`OpenSSL 3.0.19 27 Jan 2026` -> `OpenSSL 3.0.19`),
/// or `None` when the second word is not a version.
fn short(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    let (name, version) = (words.next()?, words.next()?);
    let version = version.trim_end_matches([')', ',', ';']);
    is_version(version).then(|| format!("{name} {version}"))
}

/// `3.5.9`, `1.1.1w`, `5.12.0`: at least three dot-separated parts, the first two numbers.
fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    let number = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    parts.len() >= 3
        && number(parts[0])
        && number(parts[1])
        && parts[2].bytes().next().is_some_and(|b| b.is_ascii_digit())
}

/// stdout and stderr of `program args` (with `env` set) together; the exit status is not
/// looked at (stunnel's `-version` exits non-zero on some builds). `None` if it cannot start.
/// stdout and stderr of `cmd`, or `None` when it could not start.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).output().ok()?;
    Some(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[cfg(test)]
mod tests;
