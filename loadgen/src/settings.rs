//! The checked run settings: every flag parsed, every file read, the request built and
//! the TLS client configured before any socket opens. Errors name the flag or file and map
//! to exit code 2.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::request::RequestError;
use crate::segment::Segment;
use crate::tls::{TlsClient, TlsConfigError};
use crate::url::{Url, UrlError};

/// Everything a run needs, already checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL as the user wrote it (the report's `target`).
    pub target: String,
    pub url: Url,
    /// This process's connections: all of `-c`, or its segment's share.
    pub connections: NonZeroUsize,
    /// Threads to run: never more than connections.
    pub threads: NonZeroUsize,
    pub duration: Duration,
    pub warmup: Duration,
    pub timeout: Duration,
    /// Open loop at this many requests per second (a segment's share of `--rate`); `None`
    /// is closed loop.
    pub rate: Option<f64>,
    /// `--segment I/N`: this process runs that share of the load.
    pub segment: Option<Segment>,
    pub keepalive: bool,
    /// Idle run (`--idle`): open the connections with one request each, then hold them
    /// silent for `duration`.
    pub idle: bool,
    /// The whole request (head and body), built once and shared read-only by every thread.
    pub request: Arc<[u8]>,
    /// The request body: what an echo must answer with.
    pub body: Arc<[u8]>,
    /// The request was HEAD: responses carry no body whatever their headers say.
    pub head_request: bool,
    /// Check each response body against the request body.
    pub verify: bool,
    pub tls: Option<TlsClient>,
    pub output: OutputFormat,
    pub hdr_out: Option<PathBuf>,
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// wrk-like text.
    #[default]
    Text,
    /// One JSON object (schema 1).
    Json,
}

/// A flag, URL or file that cannot be used. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("a target URL is required")]
    NoUrl,
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot read --body-file {}: {source}", path.display())]
    BodyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} is {size} bytes; loadgen sends bodies of at most {MAX_BODY_BYTES} bytes (1 GiB)"
    )]
    BodyTooLarge { what: String, size: u64 },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error("{flag} only makes sense with an https:// URL")]
    TlsFlagWithoutTls { flag: &'static str },
    #[error("--rate {0} must be a positive number of requests per second")]
    Rate(f64),
    #[error("{flag} cannot be used with --idle: {why}")]
    IdleConflict {
        flag: &'static str,
        why: &'static str,
    },
    #[error(
        "--segment {segment} gets no connection of -c {connections}: each segment needs at \
         least one (use -c {} or more, or fewer segments)",
        segment.count()
    )]
    SegmentWithoutConnections {
        segment: Segment,
        connections: NonZeroUsize,
    },
    #[error("--duration must be longer than zero")]
    ZeroDuration,
    #[error("--timeout must be longer than zero")]
    ZeroTimeout,
    #[error("cannot create --hdr-out {}: {source}", path.display())]
    HdrOut {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Largest request body: the request (head and body) is held in memory once, and no
/// benchmark here needs more.
pub const MAX_BODY_BYTES: u64 = 1 << 30;
