//! A fixed ring of the most recent latency samples and their percentiles.

/// Latency samples kept (older samples are overwritten).
pub const LATENCY_SAMPLES: usize = 1 << 16;

/// The most recent latency samples, in a fixed ring allocated once.
#[derive(Default)]
pub struct LatencyRing {
    samples_ns: Vec<u64>,
    next: usize,
}

/// Percentiles of a latency ring, in milliseconds (None without samples).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyPercentiles {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl LatencyRing {
    /// Adds a sample, overwriting the oldest once the ring is full.
    pub fn push(&mut self, ns: u64) {
        if self.samples_ns.len() < LATENCY_SAMPLES {
            if self.samples_ns.capacity() == 0 {
                self.samples_ns.reserve_exact(LATENCY_SAMPLES);
            }
            self.samples_ns.push(ns);
        } else {
            self.samples_ns[self.next] = ns;
            self.next = (self.next + 1) % LATENCY_SAMPLES;
        }
    }

    /// Samples held (at most [`LATENCY_SAMPLES`]).
    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_ns.is_empty()
    }

    /// Nearest-rank percentiles of the samples held.
    pub fn percentiles_ms(&self) -> LatencyPercentiles {
        let mut sorted = self.samples_ns.clone();
        sorted.sort_unstable();
        let at = |p: f64| {
            (!sorted.is_empty())
                .then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1e6)
        };
        LatencyPercentiles {
            count: sorted.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_ring_has_no_percentiles() {
        let ring = LatencyRing::default();
        assert_eq!(
            ring.percentiles_ms(),
            LatencyPercentiles {
                count: 0,
                p50: None,
                p99: None,
                max: None
            }
        );
    }

    #[test]
    fn percentiles_follow_the_samples() {
        let mut ring = LatencyRing::default();
        for ms in 1..=100u64 {
            ring.push(ms * 1_000_000);
        }
        let p = ring.percentiles_ms();
        assert_eq!(p.count, 100);
        assert_eq!(p.p50, Some(51.0));
        assert_eq!(p.p99, Some(99.0));
        assert_eq!(p.max, Some(100.0));
    }

    #[test]
    fn a_full_ring_overwrites_its_oldest_samples() {
        let mut ring = LatencyRing::default();
        for _ in 0..LATENCY_SAMPLES {
            ring.push(1_000_000_000);
        }
        for _ in 0..LATENCY_SAMPLES {
            ring.push(1_000_000);
        }
        assert_eq!(ring.len(), LATENCY_SAMPLES);
        assert_eq!(
            ring.percentiles_ms().max,
            Some(1.0),
            "old samples must be gone"
        );
    }
}
