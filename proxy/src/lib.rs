//! tls-off: a TLS terminating proxy.
//!
//! Modules:
//! - [`tls`]: the one TLS seam (rustls with aws-lc-rs or ring, OpenSSL), shared with the
//!   echo-server's HTTPS mode, plus self-signed certificates for tests and quick starts.
//! - [`sys`]: process-level helpers every binary needs (affinity-sized worker counts,
//!   file-descriptor limits).

pub mod sys;
pub mod tls;
