//! Fuzz target for `proxy::config::Config::parse`: the TOML config file, an input the proxy
//! does not control. Each input is parsed as text and also read as choices that build a
//! valid TOML document, so the semantic checks are reached too; the properties live in
//! `checks/config.rs`, shared with the stable replay test `proxy/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/config.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    // Any Err is a fine answer; a broken property panics inside `check`.
    let _ = check::check(data);
});
