//! The exact latency histogram a JSON report carries, so that reports can be merged without
//! losing anything: each recorded bucket's value and count, as HdrHistogram's
//! `iter_recorded` gives them. Recording a bucket's value `count` times into a histogram of
//! the same bounds and precision lands in that same bucket, so decoding gives back the very
//! histogram that was encoded, and the sum of decoded histograms is the histogram of all
//! their samples.
//!
//! Plain JSON numbers rather than HdrHistogram's compressed V2 encoding (base64 of a
//! deflated buffer): no further crate (hdrhistogram runs with its default features off, as
//! its `serialization` feature would pull in compression and base64 crates), readable and
//! checkable with `jq`, and a few thousand buckets at most (3 significant digits).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::RunResult;
use crate::stats::{new_histogram, HISTOGRAM_MAX_US, HISTOGRAM_SIGFIG};

/// One histogram, exactly: `counts` holds `[value, count]` for each recorded bucket, in
/// increasing order of value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramReport {
    /// Always `us` (microseconds).
    pub unit: String,
    /// Significant decimal digits the histogram keeps (3).
    pub sigfig: u8,
    pub counts: Vec<(u64, u64)>,
}

/// A report's latency histograms, decoded (or borrowed from a run).
#[derive(Debug, Clone, Copy)]
pub struct Histograms<'a> {
    pub latency: &'a Histogram<u64>,
    /// Open loop: latency from each request's actual start.
    pub uncorrected: Option<&'a Histogram<u64>>,
}

impl<'a> Histograms<'a> {
    /// A run's own histograms.
    pub fn of_run(result: &'a RunResult) -> Histograms<'a> {
        Histograms {
            latency: &result.stats.latency,
            uncorrected: result.stats.latency_uncorrected.as_ref(),
        }
    }
}

/// A report's histogram that cannot be decoded into loadgen's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    #[error("unit {0:?}: loadgen records microseconds (\"us\")")]
    Unit(String),
    #[error("{0} significant digits: loadgen records {HISTOGRAM_SIGFIG}")]
    Sigfig(u8),
    #[error("value {0} µs is outside the 0 to {HISTOGRAM_MAX_US} µs loadgen records")]
    Value(u64),
    #[error("the counts add up to more than 2^64")]
    Overflow,
}

impl HistogramReport {
    /// `h` (microseconds, as [`new_histogram`] makes them), bucket by bucket.
    pub fn of(h: &Histogram<u64>) -> HistogramReport {
        HistogramReport {
            unit: UNIT.to_owned(),
            sigfig: h.sigfig(),
            counts: h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Adds every bucket into `into` (a histogram from [`new_histogram`]).
    pub fn add_to(&self, into: &mut Histogram<u64>) -> Result<(), HistogramError> {
        if self.unit != UNIT {
            return Err(HistogramError::Unit(self.unit.clone()));
        }
        if self.sigfig != HISTOGRAM_SIGFIG {
            return Err(HistogramError::Sigfig(self.sigfig));
        }
        for &(value, count) in &self.counts {
            if into.len().checked_add(count).is_none() {
                return Err(HistogramError::Overflow);
            }
            into.record_n(value, count)
                .map_err(|_| HistogramError::Value(value))?;
        }
        Ok(())
    }

    /// The histogram this encodes.
    pub fn decode(&self) -> Result<Histogram<u64>, HistogramError> {
        let mut h = new_histogram();
        self.add_to(&mut h)?;
        Ok(h)
    }
}

/// The unit every histogram of a report is in.
const UNIT: &str = "us";

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 000 latencies from 1 µs to about 40 ms, spread like a real run's (a pseudo-random
    /// sequence: the test is the same every time).
    fn samples() -> Vec<u64> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1 + (x % 200).pow(2)
            })
            .collect()
    }

    #[test]
    fn decoding_gives_back_the_same_histogram() {
        let mut h = new_histogram();
        for v in samples() {
            h.record(v).unwrap();
        }
        h.record(HISTOGRAM_MAX_US).unwrap();
        let encoded = HistogramReport::of(&h);
        assert_eq!(encoded.unit, "us");
        assert_eq!(encoded.sigfig, 3);
        assert!(encoded.counts.windows(2).all(|w| w[0].0 < w[1].0));
        let decoded = encoded.decode().unwrap();
        assert_eq!(decoded, h);
        assert_eq!(HistogramReport::of(&decoded), encoded);
        // Through JSON too: `[value, count]` pairs.
        let text = serde_json::to_string(&encoded).unwrap();
        assert!(text.contains("\"counts\":[["), "{text}");
        let back: HistogramReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back.decode().unwrap(), h);
    }

    #[test]
    fn an_empty_histogram_has_no_counts() {
        let encoded = HistogramReport::of(&new_histogram());
        assert!(encoded.counts.is_empty());
        assert!(encoded.decode().unwrap().is_empty());
    }

    #[test]
    fn foreign_histograms_are_refused() {
        let good = HistogramReport {
            unit: "us".into(),
            sigfig: 3,
            counts: vec![(10, 1)],
        };
        let bad = |f: fn(&mut HistogramReport)| {
            let mut h = good.clone();
            f(&mut h);
            h.decode().unwrap_err().to_string()
        };
        assert!(bad(|h| h.unit = "ms".into()).contains("\"ms\""));
        assert!(bad(|h| h.sigfig = 2).contains("2 significant digits"));
        assert!(bad(|h| h.counts = vec![(HISTOGRAM_MAX_US * 2, 1)]).contains("outside"));
        assert!(bad(|h| h.counts = vec![(1, u64::MAX), (2, 1)]).contains("2^64"));
    }
}
