//! harness: the project's main command. `cargo run --release -p harness` builds the other
//! binaries, runs a plan of measurements (config x body size x iteration) with every
//! process pinned to its CPUs, and writes one run folder: `results.csv`, `meta.json`,
//! `summary.txt` and `logs/`.
//!
//! Modules, in the order a run uses them:
//! - [`cli`]: flags, and the exit code of a run.
//! - [`plan`]: presets, then the TOML plan file and flags (one `Overrides` type), resolved
//!   into a [`plan::Plan`] whose measurements carry their TLS parameters.
//! - [`cpus`]: CPU lists (`0-3,5`) and the server/client split of the affinity mask.
//! - [`bins`]: building and finding the proxy, echo-server and loadgen binaries.
//! - [`configs`]: which processes each config runs; [`peers`]: HAProxy, nginx, hitch and
//!   stunnel (found, versioned, configured).
//! - [`procs`]: pinned child processes, readiness, stop, and `/proc` figures.
//! - [`loadgen`]: the load generator's command line and JSON report.
//! - [`run`]: the measurement loop.
//! - [`faults`]: the fault suite (`--scenario faults`, `soak`): attacks under load, verdicts.
//! - [`output`], [`meta`], [`summary`]: results.csv, meta.json, the closing table.
//! - [`plot`]: pictures of the run by `analysis/plot.py`, when Python can make them.

pub mod bins;
pub mod cli;
pub mod configs;
pub mod cpus;
pub mod faults;
pub mod loadgen;
pub mod meta;
pub mod output;
pub mod peers;
pub mod plan;
pub mod plot;
pub mod procs;
pub mod run;
pub mod summary;
