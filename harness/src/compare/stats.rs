//! The interval on a ratio of medians: a seeded percentile bootstrap. Each side's
//! iterations are resampled with replacement, independently, [`RESAMPLES`] times; the
//! ratio of the resampled medians (new over base) is taken each time, and the middle 95% of
//! those ratios is the interval.
//!
//! Why this and not a test: runs have few iterations (3 is usual), the figures compared are
//! medians, not means, and nothing says the iterations are normally distributed. The
//! bootstrap assumes none of that and gives an interval on the ratio itself, the figure a
//! reader wants. With 3 against 3 its 95% interval is exactly [min(new)/max(base),
//! max(new)/min(base)], so "faster" or "slower" needs every new iteration beyond every base
//! one; Mann-Whitney sees the same complete separation as its most extreme result, p = 0.1
//! (two-sided), and so could never reach a verdict at 3 against 3. Seeded, so the same two
//! runs always give the same interval.

use serde::Serialize;

use crate::faults::Rng;
use crate::summary::median;

/// A confidence interval on a ratio, `low <= high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether 1.0 (no change) lies inside.
    pub fn contains_one(&self) -> bool {
        self.low <= 1.0 && 1.0 <= self.high
    }
}

/// The ratio of medians, new over base; `None` when a side is empty or the base median is
/// zero (no ratio exists).
pub fn ratio_of_medians(base: &[f64], new: &[f64]) -> Option<f64> {
    let (base, new) = (median(base.to_vec())?, median(new.to_vec())?);
    (base != 0.0).then(|| new / base).filter(|r| r.is_finite())
}

/// The 95% percentile-bootstrap interval of [`ratio_of_medians`]; `None` with fewer than
/// [`MIN_ITERATIONS`] values on either side, or when no ratio exists.
pub fn bootstrap_interval(base: &[f64], new: &[f64]) -> Option<Interval> {
    if base.len() < MIN_ITERATIONS || new.len() < MIN_ITERATIONS {
        return None;
    }
    ratio_of_medians(base, new)?;
    let mut rng = Rng::new(SEED);
    let (mut base_draw, mut new_draw) = (vec![0.0; base.len()], vec![0.0; new.len()]);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let b = resampled_median(base, &mut base_draw, &mut rng);
            let n = resampled_median(new, &mut new_draw, &mut rng);
            // A zero base median in a resample: the ratio is infinite, and sorts last.
            n / b
        })
        .filter(|r| !r.is_nan())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(Interval {
        low: percentile(&ratios, tail)?,
        high: percentile(&ratios, 1.0 - tail)?,
    })
}

/// The median of `values.len()` draws from `values` with replacement (`draw` is scratch).
fn resampled_median(values: &[f64], draw: &mut [f64], rng: &mut Rng) -> f64 {
    for slot in draw.iter_mut() {
        *slot = values[rng.below(values.len() as u64) as usize];
    }
    draw.sort_by(f64::total_cmp);
    let mid = draw.len() / 2;
    if draw.len().is_multiple_of(2) {
        (draw[mid - 1] + draw[mid]) / 2.0
    } else {
        draw[mid]
    }
}

/// The `q` quantile of sorted `values`, nearest rank (no interpolation between resamples,
/// so an interval's ends are ratios some resample really gave).
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = (q * last as f64).round() as usize;
    sorted.get(rank.min(last)).copied()
}

/// Resamples per interval: enough that the 2.5% and 97.5% points move by well under the
/// noise threshold between seeds, and fast (a run's few hundred intervals take well under
/// a second).
pub const RESAMPLES: usize = 10_000;

/// The interval's coverage.
pub const CONFIDENCE: f64 = 0.95;

/// Iterations a side needs for an interval. One has no spread to resample; two separate
/// completely by chance one time in three when nothing changed (the interval is then
/// [min/max, max/min] and excludes 1.0 whenever the pairs do not overlap), so a verdict
/// from them would be a coin toss presented as a finding.
pub const MIN_ITERATIONS: usize = 3;

/// Fixed, so that comparing the same two runs twice gives the same intervals.
const SEED: u64 = 0x7115_0ff0_c0a1_2024;

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: [f64; 3] = [45_000.0, 46_200.0, 44_100.0];

    #[test]
    fn identical_samples_give_one_exactly() {
        let iv = bootstrap_interval(&BASE, &BASE).unwrap();
        assert_eq!(ratio_of_medians(&BASE, &BASE), Some(1.0));
        // Each resample draws from the same values, but independently: the interval is
        // the spread of the ratio of two draws, and contains 1.
        assert!(iv.contains_one(), "{iv:?}");
        let flat = [100.0, 100.0, 100.0];
        assert_eq!(
            bootstrap_interval(&flat, &flat),
            Some(Interval {
                low: 1.0,
                high: 1.0
            })
        );
    }

    #[test]
    fn a_scaled_copy_is_excluded_from_one() {
        let slower: Vec<f64> = BASE.iter().map(|v| v * 0.7).collect();
        let iv = bootstrap_interval(&BASE, &slower).unwrap();
        assert!(iv.high < 1.0, "{iv:?}");
        let ratio = ratio_of_medians(&BASE, &slower).unwrap();
        assert!((ratio - 0.7).abs() < 1e-12, "{ratio}");
        assert!(iv.low <= ratio && ratio <= iv.high, "{iv:?} {ratio}");
    }

    #[test]
    fn three_against_three_spans_the_extreme_ratios() {
        // The README's claim: with 3 vs 3 the interval is [min/max, max/min].
        let new = [40_000.0, 47_000.0, 43_000.0];
        let iv = bootstrap_interval(&BASE, &new).unwrap();
        assert_eq!(iv.low, 40_000.0 / 46_200.0);
        assert_eq!(iv.high, 47_000.0 / 44_100.0);
    }

    #[test]
    fn deterministic() {
        let new = [44_000.0, 45_500.0, 47_100.0, 43_900.0, 46_000.0];
        let a = bootstrap_interval(&BASE, &new).unwrap();
        let b = bootstrap_interval(&BASE, &new).unwrap();
        assert_eq!(a, b);
        assert!(a.low < a.high, "five values give a spread: {a:?}");
    }

    #[test]
    fn one_or_two_iterations_give_no_interval() {
        assert_eq!(bootstrap_interval(&BASE, &[40_000.0]), None);
        assert_eq!(bootstrap_interval(&[45_000.0], &BASE), None);
        assert_eq!(bootstrap_interval(&BASE, &[40_000.0, 41_000.0]), None);
        assert_eq!(bootstrap_interval(&[10.0, 12.0], &[9.0, 11.0]), None);
        assert!(ratio_of_medians(&BASE, &[40_000.0]).is_some());
        assert_eq!(ratio_of_medians(&[0.0, 0.0], &BASE), None);
        assert_eq!(ratio_of_medians(&[], &BASE), None);
    }
}
