//! Fuzz target for `proxy::proxy_protocol::parse`, the parser that reads untrusted PROXY
//! headers from a load balancer before the TLS handshake. The properties live in
//! `checks/proxy_protocol.rs`, shared with the stable replay test
//! `proxy/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/proxy_protocol.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    // Any Err is a fine answer; a broken promise panics inside `check`.
    let _ = check::check(data);
});
