//! loadgen: a wrk/wrk2-class HTTP/1.1 load generator that reports honestly on itself.
//!
//! Closed loop (each connection sends its next request when the previous response is
//! complete, like wrk) or open loop (`--rate`: requests at fixed intended times, latency
//! measured from those times so server stalls are not hidden, like wrk2), over TCP, TLS
//! (rustls with aws-lc-rs) or a Unix socket. Idle runs (`--idle`) instead open the
//! connections, one request each, and hold them silent, for memory-per-connection
//! measurements.
//!
//! Modules, from the command line to the report. Imports go one way: `cli` -> `settings` ->
//! `request`, `tls`, `url`; nothing imports `cli`.
//! - [`cli`]: the flags (clap), turned into a checked [`settings::Settings`].
//! - [`settings`]: the checked run settings and every input error.
//! - [`segment`]: `--segment I/N`, this process's exact share of a load run by N.
//! - [`url`]: the target URL (`http`, `https`, `unix`).
//! - [`request`]: the request bytes (built once) and the generated body.
//! - [`tls`]: the rustls client configuration (versions, suites, groups, roots, resumption).
//! - [`connect`]: one connector per transport, generic over the stream type.
//! - [`http`]: the response reader (httparse head; Content-Length, chunked or close-delimited
//!   body) with the echo check, one fixed buffer per connection.
//! - [`engine`]: the threads, their event loops, the opening of the connections and the
//!   per-connection loops (or, idle, the hold).
//! - [`stats`]: thread-local counters and HdrHistograms, merged at the end.
//! - [`report`]: the JSON object (schema 1) with the exact histogram, the wrk-like text,
//!   the `--hdr-out` file and the idle run's stderr line.
//! - [`merge`]: `loadgen merge`, several reports (segments) added into one, exactly.
//! - [`cpu`]: the load generator's own CPU time.

pub mod cli;
pub mod connect;
pub mod cpu;
pub mod engine;
pub mod http;
pub mod merge;
pub mod report;
pub mod request;
pub mod segment;
pub mod settings;
pub mod stats;
pub mod tls;
pub mod url;

pub use engine::{run, RunError};
pub use report::Report;
pub use settings::{Settings, SettingsError};
