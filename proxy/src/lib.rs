//! tls-off: a TLS terminating proxy.
//!
//! Modules, in data-path order:
//! - [`cli`]: flags and `proxy check`; flags override config keys.
//! - [`config`]: the TOML config, parsed into checked types.
//! - [`server`]: listeners, worker models, the per-connection path, limits, shutdown.
//! - [`tls`]: the one TLS seam (rustls with aws-lc-rs or ring, OpenSSL), shared with the
//!   echo-server's HTTPS mode, plus self-signed certificates for tests and quick starts.
//! - [`proxy_protocol`]: PROXY v1/v2 headers, encoded for the upstream, parsed from a balancer.
//! - [`relay`]: the bidirectional, half-close aware copy.
//! - [`io`]: `ReadAhead`, which batches a TLS library's small socket reads.
//! - [`sys`]: process-level helpers (affinity-sized worker counts, fd limits, signals).
//! - [`metrics`]: counters, histograms, bounded per-client accounting and `/metrics`.

pub mod cli;
pub mod config;
pub mod io;
pub mod metrics;
pub mod proxy_protocol;
pub mod relay;
pub mod server;
pub mod sys;
pub mod tls;
