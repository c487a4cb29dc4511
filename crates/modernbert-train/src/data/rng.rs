//! Small deterministic PRNG and hashing helpers.
//!
//! [`Pcg64`] is a 128-bit LCG with the DXSM output function (the generator family NumPy calls
//! `PCG64DXSM`, which the ModernBERT authors switched their sampler to, spec §7.5). It is seeded
//! from a 64-bit key through SplitMix64, so it is *not* bit-compatible with NumPy's seeding; what
//! matters here is that every stream is a pure function of its key. Streams are derived with
//! [`key`] from `(seed, purpose, counters...)`, so nothing but the counters needs saving to
//! reproduce a stream (counter-based use).

const CHEAP_MUL: u64 = 0xda94_2042_e4dd_58b5;

/// SplitMix64 finaliser: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a sequence of 64-bit words into one key (order-sensitive).
pub fn key(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6d6f_6465_726e_6274, |acc, &p| mix64(acc ^ mix64(p)))
}

/// PCG64 with the DXSM output function; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
}

impl Pcg64 {
    /// A generator whose whole output stream is a function of `key`.
    pub fn new(key: u64) -> Self {
        let a = mix64(key);
        let b = mix64(a);
        let c = mix64(b);
        let d = mix64(c);
        let seed = (u128::from(a) << 64) | u128::from(b);
        let inc = ((u128::from(c) << 64) | u128::from(d)) | 1;
        let mut rng = Self { state: 0, inc };
        rng.advance();
        rng.state = rng.state.wrapping_add(seed);
        rng.advance();
        rng
    }

    fn advance(&mut self) {
        self.state = self.state.wrapping_mul(u128::from(CHEAP_MUL)).wrapping_add(self.inc);
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut hi = (self.state >> 64) as u64;
        let lo = (self.state as u64) | 1;
        hi ^= hi >> 32;
        hi = hi.wrapping_mul(CHEAP_MUL);
        hi ^= hi >> 48;
        hi = hi.wrapping_mul(lo);
        self.advance();
        hi
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, n)` without modulo bias (Lemire's method); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Pcg64::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_functions_of_the_key() {
        let a: Vec<u64> = {
            let mut r = Pcg64::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Pcg64::new(7);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Pcg64::new(8);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(key(&[1, 2]), key(&[2, 1]));
        assert_ne!(key(&[0]), key(&[0, 0]));
    }

    #[test]
    fn uniformity_and_bounds() {
        let mut r = Pcg64::new(1);
        let n = 200_000;
        let mut buckets = [0usize; 10];
        let mut mean = 0.0;
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            mean += x;
            buckets[r.below(10) as usize] += 1;
        }
        assert!((mean / n as f64 - 0.5).abs() < 0.005);
        for b in buckets {
            assert!((b as f64 / n as f64 - 0.1).abs() < 0.005, "{buckets:?}");
        }
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        assert_ne!(v, s);
    }
}
