//! Small deterministic random numbers (SplitMix64), independent of any crate's version.
//!
//! Benchmarks need reproducible synthetic inputs; training (modernbert-train) needs reproducible
//! streams for init and dropout, and a resumed run must draw exactly what an uninterrupted one
//! would. Dropout therefore uses
//! *stateless* streams keyed by `(seed, step, micro-batch, site)` via [`Rng::keyed`], so no RNG
//! state has to be checkpointed for it.

/// A SplitMix64 generator: 64 bits of state, passes BigCrush, trivially serialisable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rng {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: mix(seed ^ 0x5851_F42D_4C95_7F2D) }
    }

    /// An independent stream for a key path, e.g. `(seed, step, micro, layer)`.
    pub fn keyed(seed: u64, key: &[u64]) -> Self {
        let mut s = mix(seed);
        for &k in key {
            s = mix(s ^ mix(k.wrapping_add(GOLDEN)));
        }
        Self { state: s }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` as f32 (24 random bits).
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform integer in `[0, n)` (`n > 0`), by multiply-shift (bias < 2^-32 for small `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// A standard normal draw (Box–Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        loop {
            let u1 = self.uniform();
            if u1 > 0.0 {
                let u2 = self.uniform();
                return (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            }
        }
    }

    /// `N(0, std²)` truncated to `[-cutoff·std, cutoff·std]` (rejection sampling).
    pub fn trunc_normal(&mut self, std: f64, cutoff: f64) -> f64 {
        loop {
            let z = self.normal();
            if z.abs() <= cutoff {
                return z * std;
            }
        }
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// The raw state (for checkpoints).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a generator from [`Rng::state`].
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::keyed(1, &[2, 3]).next_u64(), Rng::keyed(1, &[3, 2]).next_u64());
        let mut r = Rng::new(3);
        let xs: Vec<f64> = (0..20000).map(|_| r.trunc_normal(0.5, 2.0)).collect();
        assert!(xs.iter().all(|x| x.abs() <= 1.0));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| x * x).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        // Variance of a ±2σ truncated normal is 0.774·σ².
        assert!((var / 0.25 - 0.774).abs() < 0.02, "{var}");
    }
}
