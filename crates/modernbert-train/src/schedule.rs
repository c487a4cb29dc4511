//! Learning-rate and batch-size schedules (spec §7.3, §7.5). Time is measured in tokens, counted
//! from the start of the current phase, taken *before* the step (the step that starts a phase
//! uses `t = 0`).
//!
//! One shape covers the recipe ([`LrSchedule`], "warmup–stable–decay"):
//! * warmup: linear from `1e-10·peak` to `peak` over `warmup_tokens` (FlexBERT's `LinearScheduler`);
//! * stable: `peak` until `phase_tokens − decay_tokens`;
//! * decay over the last `decay_tokens`, τ ∈ [0, 1] the elapsed fraction:
//!   `one_minus_sqrt`: `α_f + (1 − α_f)(1 − √τ)`, floored at `α_f`;
//!   `linear`: `1 − τ(1 − α_f)`, floored at 0 (FlexBERT's WSD decay);
//!   `cosine`: `α_f + (1 − α_f)(1 + cos πτ)/2`.
//!
//! Phase 1 of the paper is warmup + stable (`decay_tokens = 0`), phase 2 is constant
//! (`warmup_tokens = 0`), phase 3 is `one_minus_sqrt` over the whole phase with `α_f = 0.001`.

/// How the LR decays at the end of a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decay {
    /// `α_f + (1 − α_f)(1 − √τ)` (the paper's phase 3).
    #[default]
    OneMinusSqrt,
    /// `1 − τ(1 − α_f)`.
    Linear,
    /// Half cosine from 1 to `α_f`.
    Cosine,
}

/// A warmup–stable–decay LR schedule for one phase.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrSchedule {
    /// Peak learning rate (also StableAdamW's `max_lr` for decoupled weight decay).
    pub lr: f64,
    /// Linear warmup length in tokens.
    #[serde(default)]
    pub warmup_tokens: u64,
    /// Decay length in tokens, at the end of the phase.
    #[serde(default)]
    pub decay_tokens: u64,
    /// Decay shape.
    #[serde(default)]
    pub decay: Decay,
    /// `α_f`: final LR as a fraction of the peak.
    #[serde(default = "default_alpha_f")]
    pub final_lr_ratio: f64,
}

fn default_alpha_f() -> f64 {
    0.001
}

/// Warmup starts at this fraction of the peak (FlexBERT: `alpha_i = 1e-10`).
pub const WARMUP_START: f64 = 1e-10;

impl LrSchedule {
    /// A constant schedule.
    pub fn constant(lr: f64) -> Self {
        Self { lr, warmup_tokens: 0, decay_tokens: 0, decay: Decay::OneMinusSqrt, final_lr_ratio: default_alpha_f() }
    }

    /// The LR multiplier at `t` tokens into a phase of `phase_tokens` tokens.
    pub fn multiplier(&self, t: u64, phase_tokens: u64) -> f64 {
        if t < self.warmup_tokens {
            return WARMUP_START + (1.0 - WARMUP_START) * t as f64 / self.warmup_tokens as f64;
        }
        let decay_start = phase_tokens.saturating_sub(self.decay_tokens);
        if self.decay_tokens == 0 || t <= decay_start {
            return 1.0;
        }
        let tau = ((t - decay_start) as f64 / self.decay_tokens as f64).min(1.0);
        let a = self.final_lr_ratio;
        match self.decay {
            Decay::OneMinusSqrt => (a + (1.0 - a) * (1.0 - tau.sqrt())).max(a),
            Decay::Linear => (1.0 - tau * (1.0 - a)).max(0.0),
            Decay::Cosine => a + (1.0 - a) * (1.0 + (std::f64::consts::PI * tau).cos()) / 2.0,
        }
    }

    /// The learning rate at `t` tokens into the phase.
    pub fn lr_at(&self, t: u64, phase_tokens: u64) -> f64 {
        self.lr * self.multiplier(t, phase_tokens)
    }
}

/// Batch-size warmup (FlexBERT `BatchSizeWarmupScheduler`): the number of packed rows per step
/// grows one row at a time from `min_rows` to `rows − 1` over `tokens`, stage `b` lasting a token
/// share proportional to `b` (so every stage has about the same number of steps), then `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchWarmup {
    /// Rows per step at the start.
    #[serde(default = "one")]
    pub min_rows: usize,
    /// Length of the warmup in tokens.
    pub tokens: u64,
}

fn one() -> usize {
    1
}

impl BatchWarmup {
    /// Rows per step at `t` tokens into the phase when the full batch is `rows` rows.
    pub fn rows_at(&self, t: u64, rows: usize) -> usize {
        let min = self.min_rows.max(1);
        if t >= self.tokens || min >= rows {
            return rows;
        }
        let total: u64 = (min..rows).map(|b| b as u64).sum();
        let mut end = 0u128;
        let mut acc = 0u64;
        for b in min..rows {
            acc += b as u64;
            // Stage b ends at tokens · (min + … + b) / (min + … + rows − 1).
            end = self.tokens as u128 * acc as u128 / total as u128;
            if (t as u128) < end {
                return b;
            }
        }
        debug_assert!(end <= self.tokens as u128);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_stable_decay_shapes() {
        let s = LrSchedule {
            lr: 8e-4,
            warmup_tokens: 100,
            decay_tokens: 400,
            decay: Decay::OneMinusSqrt,
            final_lr_ratio: 0.001,
        };
        let total = 1000;
        assert!((s.multiplier(0, total) - 1e-10).abs() < 1e-15);
        assert!((s.multiplier(50, total) - (1e-10 + (1.0 - 1e-10) * 0.5)).abs() < 1e-12);
        assert_eq!(s.multiplier(100, total), 1.0);
        assert_eq!(s.multiplier(600, total), 1.0);
        // τ = 0.25 → α + (1 − α)(1 − 0.5)
        assert!((s.multiplier(700, total) - (0.001 + 0.999 * 0.5)).abs() < 1e-12);
        assert!((s.multiplier(1000, total) - 0.001).abs() < 1e-12);
        assert!((s.multiplier(5000, total) - 0.001).abs() < 1e-12);
        let lin = LrSchedule { decay: Decay::Linear, ..s };
        assert!((lin.multiplier(800, total) - (1.0 - 0.5 * 0.999)).abs() < 1e-12);
        let cos = LrSchedule { decay: Decay::Cosine, ..s };
        assert!((cos.multiplier(800, total) - (0.001 + 0.999 * 0.5)).abs() < 1e-12);
        assert!((cos.multiplier(1000, total) - 0.001).abs() < 1e-12);
        assert_eq!(LrSchedule::constant(3e-4).lr_at(123, 1000), 3e-4);
    }

    #[test]
    fn batch_warmup_matches_the_paper_stages() {
        // Base: 6 rows per GPU, warmup over 50B tokens from 1 row: stage ends at
        // 3.33, 10, 20, 33.3, 50 B tokens (spec §7.3).
        let w = BatchWarmup { min_rows: 1, tokens: 50_000_000_000 };
        let at = |b: f64| w.rows_at((b * 1e9) as u64, 6);
        assert_eq!(at(0.0), 1);
        assert_eq!(at(3.3), 1);
        assert_eq!(at(3.34), 2);
        assert_eq!(at(9.99), 2);
        assert_eq!(at(10.0), 3);
        assert_eq!(at(19.99), 3);
        assert_eq!(at(20.0), 4);
        assert_eq!(at(33.3), 4);
        assert_eq!(at(33.4), 5);
        assert_eq!(at(49.99), 5);
        assert_eq!(at(50.0), 6);
        // Large: 11 rows, 10 stages over 10B: the first stage ends at 10/55 = 0.18 B.
        let l = BatchWarmup { min_rows: 1, tokens: 10_000_000_000 };
        assert_eq!(l.rows_at(181_000_000, 11), 1);
        assert_eq!(l.rows_at(182_000_000, 11), 2);
        assert_eq!(l.rows_at(9_999_999_999, 11), 10);
        assert_eq!(l.rows_at(10_000_000_000, 11), 11);
    }
}
