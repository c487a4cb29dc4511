//! Rotary position embeddings, non-interleaved ("rotate half") over the full head dim.

/// Precomputed cos/sin for positions `0..max_positions`, `head_dim / 2` frequencies each.
///
/// Frequencies follow HF exactly: `inv_freq[k] = 1 / theta^(2k / d)` in f32 and
/// `angle = position * inv_freq[k]` in f32.
#[derive(Debug, Clone)]
pub struct RopeTable {
    head_dim: usize,
    max_positions: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Builds the table for base `theta`, an even `head_dim` and `max_positions` positions.
    pub fn new(theta: f32, head_dim: usize, max_positions: usize) -> Self {
        assert!(head_dim.is_multiple_of(2), "RoPE needs an even head dim, got {head_dim}");
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half).map(|k| 1.0 / theta.powf((2 * k) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for p in 0..max_positions {
            for &f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self { head_dim, max_positions, cos, sin }
    }

    /// Head dim the table was built for.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Number of positions covered.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// `(cos, sin)` rows of length `head_dim / 2` for `position`.
    pub fn row(&self, position: usize) -> (&[f32], &[f32]) {
        let half = self.head_dim / 2;
        let at = position * half;
        (&self.cos[at..at + half], &self.sin[at..at + half])
    }

    /// Rotates one head vector in place: dims `k` and `k + d/2` form the pair of frequency `k`.
    pub fn rotate(&self, x: &mut [f32], position: usize) {
        let half = self.head_dim / 2;
        let (cos, sin) = self.row(position);
        let (x1, x2) = x.split_at_mut(half);
        for k in 0..half {
            let (a, b) = (x1[k], x2[k]);
            x1[k] = a * cos[k] - b * sin[k];
            x2[k] = b * cos[k] + a * sin[k];
        }
    }
}
