//! `harness peers install --check`: what the current peer set's folder holds, and whether
//! each program runs.

use anyhow::bail;

use super::current::{PeerDir, PROGRAMS};
use super::Origin;
use crate::plan::ConfigName;
use crate::tls_library;

/// The install command, as the messages that point at it quote it.
pub const INSTALL_COMMAND: &str = "cargo run --release -p harness -- peers install";

/// Prints what is installed and whether each program runs; `Ok(true)` when the set is
/// complete and every program runs.
pub fn print(dir: &PeerDir) -> anyhow::Result<bool> {
    println!("peers folder: {}", dir.path.display());
    let Some(manifest) = dir.manifest() else {
        let state = if dir.path.exists() {
            "not installed (the install did not finish)"
        } else {
            "not installed"
        };
        println!("  {state}: run `{INSTALL_COMMAND}` (as root)");
        return Ok(false);
    };
    println!(
        "  Debian {} root filesystem, installed {}; HAProxy on {} ({})",
        manifest.suite, manifest.installed, manifest.aws_lc, manifest.haproxy_awslc_source
    );
    let mut ok = true;
    for (name, _) in PROGRAMS {
        match version_line(dir, name) {
            Ok(line) => println!("  ok      {name:<14} {line}"),
            Err(e) => {
                ok = false;
                println!("  FAILED  {name:<14} {e:#}");
            }
        }
    }
    match runs_on_aws_lc(dir) {
        Ok(library) => println!("  ok      {:<14} runs on {library}", "haproxy-awslc"),
        Err(e) => {
            ok = false;
            println!("  FAILED  haproxy-awslc  {e:#}");
        }
    }
    if !ok {
        println!("  reinstall with `{INSTALL_COMMAND}` after `... peers remove`");
    }
    Ok(ok)
}

/// The version line of the wrapper `name`, or why it did not run.
pub fn version_line(dir: &PeerDir, name: &str) -> anyhow::Result<String> {
    let config: ConfigName = name.parse()?;
    let wrapper = dir.wrapper(name);
    if !wrapper.is_file() {
        bail!("{} is missing", wrapper.display());
    }
    let line = super::version(config, &wrapper);
    if line.starts_with("unknown") {
        bail!("{} did not print its version ({line})", wrapper.display());
    }
    Ok(line)
}

/// HAProxy's AWS-LC build says it runs on AWS-LC (`-vv`'s "Running on" line): the
/// library, e.g. `AWS-LC 5.12.0`.
pub fn runs_on_aws_lc(dir: &PeerDir) -> anyhow::Result<String> {
    let wrapper = dir.wrapper("haproxy-awslc");
    let origin = Origin::Current(dir.clone());
    let library = tls_library::of_peer(ConfigName::HaproxyAwslc, &wrapper, &origin);
    if !library.starts_with("AWS-LC") {
        bail!(
            "{} -vv does not say it runs on AWS-LC (read: {library})",
            wrapper.display()
        );
    }
    Ok(library)
}
