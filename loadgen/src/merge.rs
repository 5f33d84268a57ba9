//! `loadgen merge`: several JSON reports of one load (its `--segment`s, run on one machine
//! or several) added into the report the whole load would have given.
//!
//! Exact where it can be: the histograms are added bucket by bucket, so every percentile,
//! the mean and the standard deviation are those of all the samples together; requests,
//! bytes, late starts, errors, connections, threads, rates, TLS handshakes and CPU seconds
//! are summed. The measured period is the union of the inputs' (earliest start to latest
//! end, wall clock), and `rps` is the requests over it. Each input's saturation is kept in
//! `segments`; the merged `cpu.saturated` is true if any input was saturated, and
//! `cpu.utilization` is the busiest input's. Every input's warnings are kept, prefixed with
//! its segment.
//!
//! Only reports of one load merge: same schema, mode, target, body size and keep-alive; a
//! mismatch names the file and the field. Idle reports are refused (what an idle run
//! measures, the servers' memory, is not in them). A merged report can itself be merged:
//! its segments are carried over.

use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::report::histogram::HistogramError;
use crate::report::{
    round2, round3, Cpu, Histograms, Latency, Mode, Report, SegmentReport, SCHEMA,
};
use crate::segment::Segment;
use crate::stats::{new_histogram, Errors};

/// One report to merge, and the name it goes by in messages and in `segments`.
#[derive(Debug, Clone)]
pub struct Input {
    pub file: String,
    pub report: Report,
}

/// The merged report and its histograms (for the text output and `--hdr-out`).
#[derive(Debug, Clone)]
pub struct Merged {
    pub report: Report,
    pub latency: Histogram<u64>,
    pub uncorrected: Option<Histogram<u64>>,
}

/// Why reports cannot be merged. Exit code 2: the inputs are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no report to merge")]
    Empty,
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a loadgen JSON report ({why})")]
    NotAReport { file: String, why: String },
    #[error("{file}: schema {schema}; this loadgen merges schema {SCHEMA} reports")]
    Schema { file: String, schema: u64 },
    #[error(
        "{file}: no `histogram` field: written by a loadgen older than `loadgen merge`, so its \
         latencies cannot be added exactly; run that load again with this loadgen"
    )]
    NoHistogram { file: String },
    #[error("{file}: not a loadgen report of schema {SCHEMA}: {why}")]
    Malformed { file: String, why: String },
    #[error("{file}: field `{field}`: {source}")]
    Histogram {
        file: String,
        field: &'static str,
        source: HistogramError,
    },
    #[error(
        "{file}: {field} is {value} but {first}'s is {first_value}: only reports of one load \
         merge (same mode, target, body size and keep-alive)"
    )]
    Mismatch {
        file: String,
        field: &'static str,
        value: String,
        first: String,
        first_value: String,
    },
    #[error("{file}: an idle report; `loadgen merge` adds the reports of load runs only")]
    Idle { file: String },
    #[error("{file}: segment {segment} is not of the {count} segments {first}'s {first_segment} belongs to")]
    Split {
        file: String,
        segment: Segment,
        count: u32,
        first: String,
        first_segment: Segment,
    },
    #[error("segment {segment} is in both {first} and {file}")]
    Twice {
        segment: Segment,
        first: String,
        file: String,
    },
    #[error("{file} is no segment but {other} is segment {segment}: merge the segments of one load, or whole runs")]
    Mixed {
        file: String,
        other: String,
        segment: Segment,
    },
}

impl Input {
    /// Reads and checks the report in `path`.
    pub fn read(path: &Path) -> Result<Input, MergeError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
            file: file.clone(),
            source,
        })?;
        Input::parse(&file, &text)
    }

    /// Checks and parses one report's text (loadgen's whole `--output json` stdout), its
    /// histograms included.
    pub fn parse(file: &str, text: &str) -> Result<Input, MergeError> {
        let not_a_report = |why: String| MergeError::NotAReport {
            file: file.to_owned(),
            why,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| not_a_report(e.to_string()))?;
        let Value::Object(fields) = &value else {
            return Err(not_a_report("not a JSON object".into()));
        };
        let schema = fields
            .get("schema")
            .and_then(Value::as_u64)
            .ok_or_else(|| not_a_report("no `schema` number".into()))?;
        if schema != u64::from(SCHEMA) {
            return Err(MergeError::Schema {
                file: file.to_owned(),
                schema,
            });
        }
        if fields.get("histogram").is_none_or(Value::is_null) {
            return Err(MergeError::NoHistogram {
                file: file.to_owned(),
            });
        }
        let report: Report = serde_json::from_value(value).map_err(|e| MergeError::Malformed {
            file: file.to_owned(),
            why: e.to_string(),
        })?;
        let input = Input {
            file: file.to_owned(),
            report,
        };
        // A bad histogram is named now, before anything is added.
        input.histograms()?;
        Ok(input)
    }

    /// This report's histograms, decoded.
    pub fn histograms(&self) -> Result<(Histogram<u64>, Option<Histogram<u64>>), MergeError> {
        let decode = |field, h: &crate::report::HistogramReport| {
            h.decode()
                .map_err(|source| self.histogram_error(field, source))
        };
        let latency = decode("histogram", &self.report.histogram)?;
        let uncorrected = match &self.report.histogram_uncorrected {
            Some(h) => Some(decode("histogram_uncorrected", h)?),
            None => None,
        };
        Ok((latency, uncorrected))
    }

    fn histogram_error(&self, field: &'static str, source: HistogramError) -> MergeError {
        MergeError::Histogram {
            file: self.file.clone(),
            field,
            source,
        }
    }

    /// The inputs this report stands for: its own segments if it was merged, else itself.
    fn segments(&self) -> Vec<SegmentReport> {
        let r = &self.report;
        r.segments.clone().unwrap_or_else(|| {
            vec![SegmentReport {
                segment: r.segment,
                file: self.file.clone(),
                connections: r.connections,
                requests: r.requests,
                rps: r.rps,
                start_unix_s: r.start_unix_s,
                end_unix_s: r.end_unix_s,
                utilization: r.cpu.utilization,
                saturated: r.cpu.saturated,
            }]
        })
    }

    /// How its warnings are introduced in the merged report.
    fn label(&self) -> String {
        match self.report.segment {
            Some(segment) => format!("segment {segment}"),
            None => self.file.clone(),
        }
    }
}

impl Merged {
    pub fn histograms(&self) -> Histograms<'_> {
        Histograms {
            latency: &self.latency,
            uncorrected: self.uncorrected.as_ref(),
        }
    }
}

/// Adds `inputs` into one report (see the module's documentation for what is added how).
pub fn merge(inputs: &[Input]) -> Result<Merged, MergeError> {
    let first = inputs.first().ok_or(MergeError::Empty)?;
    for input in inputs {
        same_load(first, input)?;
    }
    let segments: Vec<SegmentReport> = inputs.iter().flat_map(Input::segments).collect();
    let mut warnings = check_segments(&segments)?;

    let open = first.report.mode == Mode::Open;
    let mut latency = new_histogram();
    let mut uncorrected = open.then(new_histogram);
    for input in inputs {
        let r = &input.report;
        r.histogram
            .add_to(&mut latency)
            .map_err(|e| input.histogram_error("histogram", e))?;
        if let Some(sum) = &mut uncorrected {
            let h = r
                .histogram_uncorrected
                .as_ref()
                .ok_or_else(|| MergeError::Malformed {
                    file: input.file.clone(),
                    why: "an open-loop report without `histogram_uncorrected`".into(),
                })?;
            h.add_to(sum)
                .map_err(|e| input.histogram_error("histogram_uncorrected", e))?;
        }
    }

    let start = fold(inputs, f64::INFINITY, |r| r.start_unix_s, f64::min);
    let end = fold(inputs, f64::NEG_INFINITY, |r| r.end_unix_s, f64::max);
    let duration_s = ((end - start).max(0.0) * 1e6).round() / 1e6;
    let longest = fold(inputs, 0.0, |r| r.duration_s, f64::max);
    if duration_s > longest * UNION_WARN_RATIO {
        warnings.push(format!(
            "the reports' measured periods overlap poorly: their union is {duration_s:.3} s, \
             the longest alone {longest:.3} s; rps is over the union"
        ));
    }
    warnings.extend(tls_differences(inputs));
    for input in inputs {
        let label = input.label();
        let prefix = |w: &String| match input.report.segments {
            // A merged input's warnings are prefixed already.
            Some(_) => w.clone(),
            None => format!("{label}: {w}"),
        };
        warnings.extend(input.report.warnings.iter().map(prefix));
    }

    let requests = sum(inputs, |r| r.requests);
    let report = Report {
        schema: SCHEMA,
        target: first.report.target.clone(),
        mode: first.report.mode,
        threads: inputs.iter().map(|i| i.report.threads).sum(),
        connections: inputs.iter().map(|i| i.report.connections).sum(),
        connections_opened: inputs.iter().map(|i| i.report.connections_opened).sum(),
        keepalive: first.report.keepalive,
        duration_s,
        warmup_s: fold(inputs, 0.0, |r| r.warmup_s, f64::max),
        rate: open.then(|| {
            let rate: f64 = inputs.iter().filter_map(|i| i.report.rate).sum();
            (rate * 1e6).round() / 1e6
        }),
        body_bytes: first.report.body_bytes,
        requests,
        rps: if duration_s > 0.0 {
            round2(requests as f64 / duration_s)
        } else {
            0.0
        },
        bytes_sent: sum(inputs, |r| r.bytes_sent),
        bytes_received: sum(inputs, |r| r.bytes_received),
        latency_us: Latency::of(&latency),
        latency_uncorrected_us: uncorrected.as_ref().map(Latency::of),
        late_requests: sum(inputs, |r| r.late_requests),
        errors: inputs.iter().fold(Errors::default(), |mut e, i| {
            e.add(&i.report.errors);
            e
        }),
        tls: merged_tls(inputs),
        cpu: Cpu {
            user_s: round3(inputs.iter().map(|i| i.report.cpu.user_s).sum()),
            sys_s: round3(inputs.iter().map(|i| i.report.cpu.sys_s).sum()),
            utilization: segments.iter().map(|s| s.utilization).fold(0.0, f64::max),
            saturated: segments.iter().any(|s| s.saturated),
        },
        warnings,
        idle: None,
        segment: None,
        start_unix_s: start,
        end_unix_s: end,
        histogram: crate::report::HistogramReport::of(&latency),
        histogram_uncorrected: uncorrected.as_ref().map(crate::report::HistogramReport::of),
        segments: Some(segments),
    };
    Ok(Merged {
        report,
        latency,
        uncorrected,
    })
}

/// `input` is a report of the same load as `first`.
fn same_load(first: &Input, input: &Input) -> Result<(), MergeError> {
    if input.report.mode == Mode::Idle {
        return Err(MergeError::Idle {
            file: input.file.clone(),
        });
    }
    let (a, b) = (&first.report, &input.report);
    let fields: [(&'static str, String, String); 4] = [
        ("mode", a.mode.name().to_owned(), b.mode.name().to_owned()),
        ("target", a.target.clone(), b.target.clone()),
        (
            "body_bytes",
            a.body_bytes.to_string(),
            b.body_bytes.to_string(),
        ),
        (
            "keepalive",
            a.keepalive.to_string(),
            b.keepalive.to_string(),
        ),
    ];
    match fields.into_iter().find(|(_, mine, theirs)| mine != theirs) {
        Some((field, first_value, value)) => Err(MergeError::Mismatch {
            file: input.file.clone(),
            field,
            value,
            first: first.file.clone(),
            first_value,
        }),
        None => Ok(()),
    }
}

/// Segments of one split, each once; a warning for each one missing. Whole runs (no
/// segment) merge too, but not mixed with segments.
fn check_segments(segments: &[SegmentReport]) -> Result<Vec<String>, MergeError> {
    let Some(anchor) = segments.iter().find(|s| s.segment.is_some()) else {
        return Ok(Vec::new());
    };
    let first = anchor.segment.expect("found as one with a segment");
    let mut seen: Vec<(Segment, &str)> = Vec::new();
    for s in segments {
        let Some(segment) = s.segment else {
            return Err(MergeError::Mixed {
                file: s.file.clone(),
                other: anchor.file.clone(),
                segment: first,
            });
        };
        if segment.count() != first.count() {
            return Err(MergeError::Split {
                file: s.file.clone(),
                segment,
                count: first.count(),
                first: anchor.file.clone(),
                first_segment: first,
            });
        }
        if let Some((_, other)) = seen.iter().find(|(seg, _)| *seg == segment) {
            return Err(MergeError::Twice {
                segment,
                first: (*other).to_owned(),
                file: s.file.clone(),
            });
        }
        seen.push((segment, &s.file));
    }
    let missing: Vec<String> = (1..=first.count())
        .filter(|i| !seen.iter().any(|(s, _)| s.index() == *i))
        .map(|i| format!("{i}/{}", first.count()))
        .collect();
    Ok(if missing.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "segment(s) {} missing: this merges {} of {} segments, so it is not the whole load",
            missing.join(", "),
            seen.len(),
            first.count()
        )]
    })
}

/// The first input's negotiated TLS parameters, with every input's handshakes counted.
fn merged_tls(inputs: &[Input]) -> Option<crate::report::TlsReport> {
    let mut tls = inputs.iter().find_map(|i| i.report.tls.clone())?;
    tls.handshakes = inputs
        .iter()
        .filter_map(|i| i.report.tls.as_ref())
        .map(|t| t.handshakes)
        .sum();
    tls.resumed = inputs
        .iter()
        .filter_map(|i| i.report.tls.as_ref())
        .map(|t| t.resumed)
        .sum();
    Some(tls)
}

/// A warning for each input that negotiated other TLS parameters than the first did.
fn tls_differences(inputs: &[Input]) -> Vec<String> {
    let params = |i: &Input| {
        i.report.tls.as_ref().map(|t| {
            format!(
                "{} {} {} ALPN {}",
                t.version,
                t.cipher_suite,
                t.kx_group.as_deref().unwrap_or("(group unknown)"),
                t.alpn.as_deref().unwrap_or("none")
            )
        })
    };
    let Some(first) = inputs.iter().find(|i| i.report.tls.is_some()) else {
        return Vec::new();
    };
    let mine = params(first);
    inputs
        .iter()
        .filter(|i| params(i) != mine)
        .map(|i| {
            format!(
                "{} negotiated {} but {} {}: the merged `tls` is the latter's",
                i.file,
                params(i).unwrap_or_else(|| "no TLS".into()),
                first.file,
                mine.as_deref().unwrap_or("no TLS"),
            )
        })
        .collect()
}

fn sum(inputs: &[Input], field: impl Fn(&Report) -> u64) -> u64 {
    inputs.iter().map(|i| field(&i.report)).sum()
}

fn fold(
    inputs: &[Input],
    init: f64,
    field: impl Fn(&Report) -> f64,
    f: fn(f64, f64) -> f64,
) -> f64 {
    inputs.iter().map(|i| field(&i.report)).fold(init, f)
}

/// A union of measured periods this much longer than the longest of them gets a warning:
/// the segments did not run together, and `rps` over the union understates each.
const UNION_WARN_RATIO: f64 = 1.1;
