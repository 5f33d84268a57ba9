//! Where `peers install` gets the sources it builds: AWS-LC from the `aws-lc-sys` crate the
//! proxy already depends on (so HAProxy and our rustls backend run the same AWS-LC), and
//! HAProxy from Debian's source packages for the root filesystem's release.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The AWS-LC source tree in the cargo registry, and its version.
#[derive(Debug, Clone)]
pub struct AwsLc {
    pub path: PathBuf,
    pub version: String,
}

/// What the HAProxy download needs from the install: commands inside the root filesystem.
pub trait Runner {
    fn in_root(&self, step: &str, script: &str) -> anyhow::Result<()>;
    fn rootfs(&self) -> PathBuf;
}

/// The `aws-lc-sys` version the workspace's Cargo.lock pins: the AWS-LC our rustls backend
/// runs, and the one HAProxy is built on.
pub fn aws_lc_sys_version() -> anyhow::Result<String> {
    let root = crate::bins::workspace_root().context(
        "the workspace this harness was built from is gone (its Cargo.lock names AWS-LC)",
    )?;
    let lock = fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    crate::meta::locked_version(&lock, "aws-lc-sys")
        .context("Cargo.lock has no aws-lc-sys: the proxy's default backend needs it")
}

/// `aws-lc-sys` `crate_version`'s AWS-LC source in the cargo registry (cargo put it there
/// when it built the harness), and the AWS-LC version its header names.
pub fn aws_lc(crate_version: &str) -> anyhow::Result<AwsLc> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let registry = cargo_home.join("registry/src");
    let wanted = format!("aws-lc-sys-{crate_version}");
    let path = fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(&wanted).join("aws-lc"))
        .find(|p| p.join("include/openssl/base.h").is_file())
        .with_context(|| {
            format!(
                "{wanted}'s AWS-LC source is not under {}: run `cargo fetch` in the \
                 workspace first",
                registry.display()
            )
        })?;
    let base = fs::read_to_string(path.join("include/openssl/base.h"))?;
    let version = aws_lc_version(&base)
        .with_context(|| format!("no AWSLC_VERSION_NUMBER_STRING in {}", path.display()))?;
    Ok(AwsLc { path, version })
}

fn aws_lc_version(base_h: &str) -> Option<String> {
    base_h.lines().find_map(|l| {
        let rest = l.split("AWSLC_VERSION_NUMBER_STRING").nth(1)?;
        Some(rest.trim().trim_matches('"').to_owned()).filter(|v| !v.is_empty())
    })
}

/// Downloads HAProxy's source for the root filesystem's release into `work` (a folder
/// under the root filesystem's `/usr/src/haproxy`), checks it, unpacks it, and returns
/// the name of the unpacked tree.
///
/// A security update's `.dsc` and `.debian.tar.xz` can be missing from the pool (404)
/// while its orig tarball is there, so apt-get's exit status is not the verdict: the orig
/// tarball is, once its SHA-256 matches the signed Sources index. Without Debian's
/// `.debian` part the build is upstream's source, without Debian's patches.
pub fn haproxy(install: &dyn Runner, work: &Path) -> anyhow::Result<String> {
    let step = "haproxy-awslc";
    let fetched = install.in_root(
        step,
        "cd /usr/src/haproxy && apt-get source --download-only haproxy",
    );
    let tarball = fs::read_dir(work)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("haproxy_") && n.ends_with(".orig.tar.gz"));
    let Some(tarball) = tarball else {
        fetched?;
        bail!("apt-get source haproxy downloaded no orig tarball");
    };
    if fetched.is_err() {
        println!(
            "peers:   apt-get source fetched {tarball} but not all of Debian's parts (see \
             logs/haproxy-awslc.log); the tarball alone builds, once it matches the index"
        );
    }
    let sums = install.rootfs().join("var/lib/apt/lists");
    let want = fs::read_dir(&sums)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_source_Sources"))
        .find_map(|e| sha256_in_sources(&fs::read_to_string(e.path()).ok()?, &tarball))
        .with_context(|| format!("{tarball} is not in the root filesystem's Sources index"))?;
    install.in_root(
        step,
        &format!("cd /usr/src/haproxy && echo '{want}  {tarball}' | sha256sum -c --strict"),
    )?;
    install.in_root(step, &format!("cd /usr/src/haproxy && tar -xzf {tarball}"))?;
    let version = tarball
        .trim_start_matches("haproxy_")
        .trim_end_matches(".orig.tar.gz");
    let tree = format!("haproxy-{version}");
    if !work.join(&tree).join("Makefile").is_file() {
        bail!("{tarball} did not unpack into {tree}/");
    }
    Ok(tree)
}

/// The SHA-256 that a Sources index lists for `file` (`Checksums-Sha256` lines are
/// ` HASH SIZE NAME`).
fn sha256_in_sources(sources: &str, file: &str) -> Option<String> {
    sources.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        let (hash, _size, name) = (words.next()?, words.next()?, words.next()?);
        (name == file && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hash.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_lc_version_comes_from_its_header() {
        let base = "#define AWSLC_VERSION_NAME \"AWS-LC\"\n\
                    #define AWSLC_VERSION_NUMBER_STRING \"5.12.0\"\n";
        assert_eq!(aws_lc_version(base).as_deref(), Some("5.12.0"));
        assert_eq!(aws_lc_version("#define X 1\n"), None);
    }

    #[test]
    fn the_tarball_hash_is_read_from_the_sources_index() {
        let hash = "a133e2d550c5fd9a849b5c7ab17bb945bcdad209ca140d41f45ebf31943ae783";
        let sources = format!(
            "Package: haproxy\nFiles:\n 0123456789abcdef0123456789abcdef 4738655 \
             haproxy_3.0.11.orig.tar.gz\nChecksums-Sha256:\n {hash} 4738655 \
             haproxy_3.0.11.orig.tar.gz\n"
        );
        assert_eq!(
            sha256_in_sources(&sources, "haproxy_3.0.11.orig.tar.gz").as_deref(),
            Some(hash)
        );
        assert_eq!(
            sha256_in_sources(&sources, "haproxy_3.0.12.orig.tar.gz"),
            None
        );
    }
}
