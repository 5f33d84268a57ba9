//! Records, for `--version`, which TLS libraries the backends were built with:
//!
//! - where the OpenSSL that the `openssl` backend links came from: openssl-sys tells its
//!   dependents `vendored=1` (as DEP_OPENSSL_VENDORED) when it built OpenSSL from source,
//!   and nothing when it found the host's libssl (OPENSSL_NO_VENDOR=1);
//! - the versions of rustls and its crypto providers (aws-lc-rs, ring), and of native-tls,
//!   which have no version constant of their own: read from the workspace's `Cargo.lock`,
//!   the file that decides which versions are compiled. Without the lock file (a build outside the workspace) the
//!   version is "version unknown"; the build never fails over it.

use std::path::Path;

/// The crates whose version `--version` names, and the variable each is exported as.
const CRATES: [(&str, &str); 4] = [
    ("rustls", "TLS_OFF_RUSTLS_VERSION"),
    ("native-tls", "TLS_OFF_NATIVE_TLS_VERSION"),
    ("aws-lc-rs", "TLS_OFF_AWS_LC_RS_VERSION"),
    ("ring", "TLS_OFF_RING_VERSION"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // The switch that decides it (openssl-sys's): rerun when it flips in the same target dir.
    println!("cargo::rerun-if-env-changed=OPENSSL_NO_VENDOR");
    let source = match std::env::var_os("DEP_OPENSSL_VENDORED") {
        Some(_) => "built with the workspace",
        None => "the host's libssl",
    };
    println!("cargo::rustc-env=TLS_OFF_OPENSSL_SOURCE={source}");

    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock_path = Path::new(&manifest_dir).join("../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    let lock = std::fs::read_to_string(&lock_path).unwrap_or_default();
    for (name, var) in CRATES {
        let version = locked_version(&lock, name);
        println!("cargo::rustc-env={var}={version}");
    }
}

/// The version `lock` (a Cargo.lock's text) pins for package `name`: `version unknown` when
/// it has none, and every version when it has several (a reader must not be told one of
/// them was the one compiled in when the lock cannot say).
fn locked_version(lock: &str, name: &str) -> String {
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    let mut versions = Vec::new();
    while let Some(line) = lines.next() {
        if line.trim() != wanted {
            continue;
        }
        // Cargo writes `version` on the line right after `name` in every [[package]].
        let version = lines.next().and_then(|l| {
            l.trim()
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
        });
        versions.extend(version.map(str::to_owned));
    }
    match versions.len() {
        0 => "version unknown".to_owned(),
        _ => versions.join(" or "),
    }
}
