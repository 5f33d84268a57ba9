//! tls-off: a TLS terminating proxy.
//!
//! Modules, in data-path order:
//! - [`cli`]: flags and `proxy check`; flags override config keys.
//! - [`config`]: the TOML config, parsed into checked types.
//! - [`server`]: listeners (TLS or plain), worker models, the per-connection path, limits,
//!   shutdown.
//! - [`tls`]: the one TLS seam (rustls with aws-lc-rs or ring, OpenSSL), shared with the
//!   echo-server's HTTPS mode, plus self-signed certificates for tests and quick starts.
//! - [`proxy_protocol`]: PROXY v1/v2 headers, encoded for the upstream, parsed from a balancer.
//! - [`relay`]: the bidirectional, half-close aware copy.
//! - [`sys`]: process-level helpers (signals, log rate limits, accept backoff);
//!   CPU counts, fd limits, `ReadAhead` and TLS names are in the shared `sysio` crate.
//! - [`memory`]: handing freed memory back to the OS off the workers' path.
//! - [`metrics`]: counters, histograms, bounded per-client accounting and `/metrics`.

pub mod cli;
pub mod config;
pub mod memory;
pub mod metrics;
pub mod proxy_protocol;
pub mod relay;
pub mod server;
pub mod sys;
pub mod tls;
