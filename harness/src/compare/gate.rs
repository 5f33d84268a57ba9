//! The regression gate, `compare --fail-on-regression 5%`: every metric whose verdict is
//! "slower" (worse in its own direction, with confidence) by more than the limit, named.

use serde::Serialize;

use super::stats::Interval;
use super::{Comparison, Key, Metric, Verdict};

/// The gate's result.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// The limit, a fraction (0.05 for 5%).
    pub limit: f64,
    pub regressions: Vec<Regression>,
    /// Comparisons with no interval (fewer than 3 iterations on a side): the gate cannot judge them.
    pub unjudged: usize,
}

/// A metric worse by more than the limit, with confidence.
#[derive(Debug, Clone, Serialize)]
pub struct Regression {
    pub key: Key,
    pub metric: Metric,
    /// new / base.
    pub ratio: f64,
    pub interval: Interval,
    /// How much worse, a fraction: 1 - ratio for req/s, ratio - 1 for the others.
    pub worse_by: f64,
}

impl Gate {
    /// Judges every comparison against `limit` (a fraction).
    pub fn judge(comparison: &Comparison, limit: f64) -> Gate {
        let mut gate = Gate {
            limit,
            regressions: Vec::new(),
            unjudged: 0,
        };
        for k in &comparison.keys {
            for m in &k.metrics {
                let (Some(ratio), Some(interval)) = (m.ratio, m.interval) else {
                    gate.unjudged += 1;
                    continue;
                };
                let worse_by = if m.metric.higher_is_better() {
                    1.0 - ratio
                } else {
                    ratio - 1.0
                };
                if m.verdict == Verdict::Slower && worse_by > limit {
                    gate.regressions.push(Regression {
                        key: k.key.clone(),
                        metric: m.metric,
                        ratio,
                        interval,
                        worse_by,
                    });
                }
            }
        }
        gate
    }
}
