//! Real clients through the proxy, on every TLS backend: programs nobody here wrote, each
//! with its version printed. `curl` (HTTP/1.1, and HTTP/2 over ALPN `h2`, body echoed byte
//! for byte), `openssl s_client` (TLS 1.2 and 1.3, resumption, client certificates),
//! `h2load` (many HTTP/2 streams, every byte counted) and headless Chromium (a page and its
//! assets from nginx). A missing program skips its test with the Debian package to install;
//! under `CI=true` it fails (`.ci/run` installs them). native-tls speaks TLS 1.2 only and has
//! no client certificates: those cells check that it refuses, and say so.
//!
//! `cargo test -p proxy --test real_clients -- --nocapture` prints the matrix, one
//! `real-clients | client | backend | what | outcome` line per cell, and the versions.

#[path = "../common/mod.rs"]
mod common;

mod chromium;
mod curl;
mod h2load;
mod s_client;
mod stack;

use rstest_reuse::{self, template};

/// Every TLS backend: each client's test applying this runs once for each.
#[template]
#[rstest]
fn every_backend(
    #[values(
        Backend::RustlsAwsLc,
        Backend::RustlsRing,
        Backend::RustlsMixed,
        Backend::Openssl,
        Backend::NativeTls
    )]
    backend: Backend,
) {
}
