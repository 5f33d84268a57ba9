//! sysio: the small helpers the proxy, the echo-server and the load generator share.
//!
//! It exists so that loadgen need not link the proxy it measures (OpenSSL, hyper,
//! prometheus-client) for a handful of functions: these live here, with no TLS library and
//! no HTTP stack, and every binary imports them from here.
//!
//! Modules:
//! - [`host`]: the process's CPUs (affinity mask), worker counts sized by it, the fd limit.
//! - [`read_ahead`]: `ReadAhead`, which batches a TLS library's small socket reads.
//! - [`tls_names`]: one spelling of cipher suite and key-exchange group names for every
//!   TLS backend and the load generator's reports.

pub mod host;
pub mod read_ahead;
pub mod tls_names;
