//! harness: the project's main command. `cargo run --release -p harness` builds the other
//! binaries, runs a plan of measurements (config x body size x iteration) with every
//! process pinned to its CPUs, and writes one run folder: `results.csv`, `meta.json`,
//! `summary.txt`, `logs/`, the pictures and `index.html`.
//!
//! Modules, in the order a run uses them:
//! - [`cli`]: flags, and the exit code of a run.
//! - [`plan`]: presets, then the TOML plan file and flags (one `Overrides` type), resolved
//!   into a [`plan::Plan`] whose measurements carry their TLS parameters.
//! - [`cpus`]: CPU lists (`0-3,5`) and the server/client split of the affinity mask.
//! - [`bins`]: building and finding the proxy, echo-server and loadgen binaries.
//! - [`peers`]: HAProxy, nginx, hitch and stunnel, from the host or from the current set
//!   that `harness peers install` makes (found, versioned, configured).
//! - [`tls_library`]: which TLS library each terminator runs, read from the program.
//! - [`procs`]: pinned child processes, readiness, stop; [`procfs`]: the `/proc` figures.
//! - [`stack`]: the servers of one measured config: its recipe (which processes, which
//!   files), started, sampled and stopped.
//! - [`loadgen`]: the load generator's command line and JSON report.
//! - [`certs`]: the run's certificates (the sweep's self-signed ones; the fault suite's CA,
//!   its leaves and a corrupt one), all through `proxy::tls::selfsigned`.
//! - [`run`]: one run: its folder, the measurement loop, one load or idle measurement, the
//!   rows and their verdicts, progress.
//! - [`faults`]: the fault suite (`--scenario faults`, `soak`): attacks under load, verdicts.
//! - [`sni_scale`]: certificates at scale (`--scenario sni-scale`): thousands of SNI
//!   certificates in one listener of each terminator; start-up, memory, lookups, reloads.
//! - [`output`], [`meta`], [`summary`]: results.csv, meta.json, the closing table.
//! - [`plot`]: pictures of the run by `analysis/plot.py`, when Python can make them.
//! - [`report`]: `index.html`, the run folder as one page that needs no network (also
//!   `harness report DIR`); its [`report::html`] builds pages.
//! - [`compare`]: `harness compare BASE NEW` (ratios, intervals, verdicts), the regression
//!   gate, `--threshold` checks and saved baselines, also run at the end of a run.

pub mod bins;
pub mod certs;
pub mod cli;
pub mod compare;
pub mod cpus;
pub mod faults;
pub mod loadgen;
pub mod meta;
pub mod output;
pub mod peers;
pub mod plan;
pub mod plot;
pub mod procfs;
pub mod procs;
pub mod report;
pub mod run;
pub mod sni_scale;
pub mod stack;
pub mod summary;
pub mod tls_library;
