//! Replays the fuzzers' saved inputs on stable Rust, as part of `cargo test`: every file in
//! `proxy/fuzz/seeds/<target>/` and `proxy/fuzz/regressions/<target>/` goes through the very
//! check the fuzz target runs (the `proxy/fuzz/checks/*.rs` modules, included here by path),
//! so a crash the fuzzer once found stays fixed without nightly or cargo-fuzz.
//!
//! A seed's name says what it must give: `valid-*` parses completely, `invalid-*` is
//! rejected, `partial-*` (PROXY headers) is a good beginning that needs more bytes. Other
//! files, such as `regressions/<target>/crash-<sha1>` written by `proxy/fuzz/run.sh`, only
//! have to get an answer without panicking.

// reason: a test helper that cannot read its fixture should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

#[path = "../fuzz/checks/config.rs"]
mod config_check;
#[path = "../fuzz/checks/proxy_protocol.rs"]
mod proxy_protocol_check;

/// The fuzz targets this test replays; must match the `[[bin]]`s of `proxy/fuzz/Cargo.toml`.
const TARGETS: &[&str] = &["config", "proxy_protocol"];

#[test]
fn config_inputs_get_an_answer_and_seeds_mean_what_they_say() {
    for (path, data) in inputs("config") {
        let outcome = config_check::check(&data);
        let name = file_name(&path);
        if name.starts_with("valid-") {
            if let Err(e) = &outcome.raw {
                panic!("{}: a valid seed was rejected: {e}", path.display());
            }
        } else if name.starts_with("invalid-") {
            let err = outcome
                .raw
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("{}: an invalid seed was accepted", path.display()));
            assert!(!err.to_string().is_empty());
        }
    }
}

#[test]
fn proxy_protocol_inputs_get_an_answer_and_seeds_mean_what_they_say() {
    for (path, data) in inputs("proxy_protocol") {
        let result = proxy_protocol_check::check(&data);
        let name = file_name(&path);
        let shown = path.display();
        if name.starts_with("valid-") {
            assert!(
                matches!(result, Ok(Some(_))),
                "{shown}: a valid seed gave {result:?}"
            );
        } else if name.starts_with("invalid-") {
            assert!(result.is_err(), "{shown}: an invalid seed gave {result:?}");
        } else if name.starts_with("partial-") {
            assert_eq!(result, Ok(None), "{shown}: a partial seed");
        }
    }
}

#[test]
fn every_fuzz_target_is_replayed_and_has_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = manifest.parse().unwrap();
    let mut bins: Vec<&str> = manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bin| bin["name"].as_str().unwrap())
        .collect();
    bins.sort_unstable();
    assert_eq!(bins, TARGETS, "add a replay test for each new fuzz target");
    for target in TARGETS {
        let seeds = fuzz_dir().join("seeds").join(target);
        assert!(
            inputs_in(&seeds)
                .iter()
                .any(|(path, _)| file_name(path).starts_with("valid-")),
            "{} has no valid-* seed",
            seeds.display()
        );
    }
}

/// Every seed and regression input of `target`, sorted by path so failures are repeatable.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = inputs_in(&fuzz_dir().join("seeds").join(target));
    all.extend(inputs_in(&fuzz_dir().join("regressions").join(target)));
    assert!(!all.is_empty(), "no saved inputs for {target}");
    all
}

/// The files in `dir` (none when it does not exist), skipping dot-files such as `.gitkeep`.
fn inputs_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && !file_name(path).starts_with('.'))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// How far the local fuzz corpus gets into the config parser, for a human to read:
/// `cargo test -p proxy --test fuzz_regressions -- --ignored --nocapture`.
#[test]
#[ignore = "reads the git-ignored corpus that proxy/fuzz/run.sh grows"]
fn config_corpus_outcomes() {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, data) in inputs_in(&fuzz_dir().join("corpus").join("config")) {
        let outcome = config_check::check(&data);
        for (way, result) in [("raw", &outcome.raw), ("structured", &outcome.structured)] {
            let kind = match result {
                Ok(_) => "ok".to_string(),
                Err(proxy::config::ConfigError::Invalid { key, .. }) => format!("invalid {key}"),
                Err(proxy::config::ConfigError::Parse { .. }) => "toml or type error".into(),
                Err(proxy::config::ConfigError::Read { .. }) => "read error".into(),
            };
            *counts.entry(format!("{way}: {kind}")).or_default() += 1;
        }
    }
    for (kind, n) in counts {
        println!("{n:>6}  {kind}");
    }
}
