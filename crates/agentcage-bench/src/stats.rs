//! Order statistics over samples, and the tiny PRNG that shuffles each round.
//!
//! Medians and 95th percentiles, never means alone: launch times have a long right tail
//! (page-cache misses, scheduler hiccups) that would drag a mean around. The median is the
//! midpoint of the two middle samples for an even count; the p95 uses the nearest-rank
//! definition (the smallest sample with at least 95% of samples at or below it), so
//! `min <= median <= p95 <= max` always holds.
//!
//! The shuffle only has to break the fixed A B C D order between rounds so that slow drift of
//! the machine (frequency, caches, noisy neighbours) lands on every contender alike; SplitMix64
//! is plenty and keeps the crate free of a `rand` dependency.

use serde::{Deserialize, Serialize};

/// Summary of one series of samples (in whatever unit they were taken).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples`, ignoring non-finite values. `None` when no finite sample remains.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            n,
            min: v[0],
            median,
            p95: v[nearest_rank(n, 95)],
            max: v[n - 1],
            mean: v.iter().sum::<f64>() / n as f64,
        })
    }

    /// Applies `f` to every statistic (unit conversion); `n` is unchanged.
    pub fn map(self, f: impl Fn(f64) -> f64) -> Summary {
        Summary {
            n: self.n,
            min: f(self.min),
            median: f(self.median),
            p95: f(self.p95),
            max: f(self.max),
            mean: f(self.mean),
        }
    }
}

/// Zero-based index of the nearest-rank `pct` percentile in a sorted series of `n > 0` samples.
fn nearest_rank(n: usize, pct: usize) -> usize {
    // ceil(pct/100 * n), as a 1-based rank, in integer arithmetic.
    let rank = (pct * n).div_ceil(100).max(1);
    rank.min(n) - 1
}

/// `a / b`, or `None` unless both are finite and `b > 0`.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state, one add and a mix per output.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator with a fixed seed (reproducible shuffles).
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// A generator seeded from the clock and the pid.
    pub fn from_entropy() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut r = Rng::new(nanos ^ (u64::from(std::process::id()) << 32));
        r.next_u64();
        r
    }

    /// Next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection so small ranges carry no modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        if n <= 1 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).expect("summary");
        assert_eq!((s.n, s.min, s.median, s.max), (3, 1.0, 2.0, 3.0));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).expect("summary");
        assert_eq!(s.median, 2.5);
        assert_eq!(s.mean, 2.5);
    }

    #[test]
    fn p95_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v).expect("summary");
        assert_eq!(s.p95, 95.0);
        assert_eq!(s.median, 50.5);
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(Summary::of(&v).expect("summary").p95, 19.0);
        assert_eq!(Summary::of(&[7.0]).expect("summary").p95, 7.0);
        // Two samples: the p95 is the larger one and never below the median.
        let s = Summary::of(&[1.0, 9.0]).expect("summary");
        assert_eq!((s.median, s.p95), (5.0, 9.0));
    }

    #[test]
    fn ordering_invariant_holds_on_skewed_data() {
        let mut rng = Rng::new(7);
        for n in 1..200 {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    let x = rng.next_u64() % 1000;
                    if x > 990 {
                        1e6
                    } else {
                        x as f64
                    }
                })
                .collect();
            let s = Summary::of(&v).expect("summary");
            assert!(
                s.min <= s.median && s.median <= s.p95 && s.p95 <= s.max,
                "{s:?}"
            );
        }
    }

    #[test]
    fn non_finite_samples_are_ignored() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[f64::NAN, f64::INFINITY]), None);
        let s = Summary::of(&[f64::NAN, 2.0]).expect("summary");
        assert_eq!((s.n, s.median), (1, 2.0));
    }

    #[test]
    fn map_converts_units() {
        let s = Summary::of(&[1000.0, 3000.0])
            .expect("summary")
            .map(|x| x / 1000.0);
        assert_eq!((s.n, s.min, s.median, s.max), (2, 1.0, 2.0, 3.0));
    }

    #[test]
    fn ratio_rejects_bad_denominators() {
        assert_eq!(ratio(1.0, 2.0), Some(0.5));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn rng_is_deterministic_and_shuffle_is_a_permutation() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        // SplitMix64 reference value for seed 0 (first output).
        assert_eq!(Rng::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        let mut v: Vec<u32> = (0..50).collect();
        a.shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>(), "50 elements left in order");
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn below_covers_the_range_uniformly_enough() {
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[rng.below(4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(rng.below(1), 0);
    }
}
