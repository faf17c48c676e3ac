//! A fixed-bucket histogram of lock-free counters: observed from any thread without allocating,
//! read as a snapshot for the Prometheus endpoint (cumulative buckets) and for the window
//! (percentiles estimated inside the bucket that holds them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds for durations, in seconds: half a millisecond to ten seconds, dense around a
/// display frame (8, 16.7, 33 ms) so frame times and commit times read well.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.0125, 0.0167, 0.025, 0.0334, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Upper bounds for counts of items (rows per commit, frames per batch).
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];

/// Observations per bucket; the last bucket is everything above the last bound.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// Sum of observations, in millionths of the unit (microseconds for seconds).
    sum_micro: AtomicU64,
}

/// A copy of a histogram's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Per bucket, not cumulative; one more than `bounds` (the +Inf bucket).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    /// A histogram of durations in seconds.
    pub fn seconds() -> Self {
        Self::new(SECONDS_BUCKETS)
    }

    /// A histogram of item counts.
    pub fn counts() -> Self {
        Self::new(COUNT_BUCKETS)
    }

    /// Records one value; NaN and negative values count as zero (they cannot come from a
    /// duration or a count, and must not poison the sum).
    pub fn observe(&self, value: f64) {
        let value = if value.is_finite() && value > 0.0 {
            value
        } else {
            0.0
        };
        let index = self.bounds.partition_point(|&bound| bound < value);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        let micro = (value * 1e6).min(u64::MAX as f64 / 2.0) as u64;
        self.sum_micro.fetch_add(micro, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, duration: Duration) {
        self.observe(duration.as_secs_f64());
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            count: counts.iter().sum(),
            counts,
            sum: self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram of durations in seconds, the most common kind.
impl Default for Histogram {
    fn default() -> Self {
        Self::seconds()
    }
}

impl HistogramSnapshot {
    /// The value below which a fraction `q` of observations fall, interpolated linearly inside
    /// its bucket; None with no observations. Values in the +Inf bucket read as the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !q.is_finite() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = self.bounds.get(i) else {
                    return self.bounds.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * within);
            }
            below += n;
        }
        self.bounds.last().copied()
    }

    /// Observations above `bound` (counted by whole buckets: `bound` should be one of the
    /// bucket bounds for an exact figure).
    pub fn count_above(&self, bound: f64) -> u64 {
        let first = self.bounds.partition_point(|&b| b <= bound);
        self.counts[first..].iter().sum()
    }

    /// Buckets as `(upper bound, count)`, the last one +Inf, as Prometheus encodes them.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (self.bounds.get(i).copied().unwrap_or(f64::INFINITY), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_whose_bound_is_the_first_not_below_them() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 3.0, 100.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.counts, vec![2, 1, 1, 1]);
        assert_eq!(s.count, 5);
        assert!((s.sum - 106.0).abs() < 1e-6);
    }

    #[test]
    fn nan_and_negative_values_count_as_zero_without_poisoning_the_sum() {
        let h = Histogram::new(&[1.0]);
        h.observe(f64::NAN);
        h.observe(-5.0);
        h.observe(f64::INFINITY);
        let s = h.snapshot();
        assert_eq!(s.counts, vec![3, 0]);
        assert_eq!(s.sum, 0.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_holding_them() {
        let h = Histogram::new(&[0.01, 0.02, 0.04]);
        for _ in 0..90 {
            h.observe(0.005);
        }
        for _ in 0..10 {
            h.observe(0.03);
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).expect("observations");
        assert!(p50 > 0.0 && p50 <= 0.01, "p50 {p50}");
        let p99 = s.quantile(0.99).expect("observations");
        assert!(p99 > 0.02 && p99 <= 0.04, "p99 {p99}");
        assert_eq!(s.count_above(0.02), 10);
        assert_eq!(Histogram::seconds().snapshot().quantile(0.5), None);
    }

    #[test]
    fn buckets_end_with_infinity_for_the_exposition() {
        let h = Histogram::new(&[1.0]);
        h.observe(2.0);
        assert_eq!(h.snapshot().buckets(), vec![(1.0, 0), (f64::INFINITY, 1)]);
    }
}
