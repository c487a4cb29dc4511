//! MLM masking (spec §7.1 with the override of issue 4): each non-special token is selected with
//! probability `mlm_probability` (0.30 for training, 0.15 for evaluation) by one uniform draw `r`:
//! `r < p·0.8` → `[MASK]`, `r < p·0.9` → a random token, `r < p` → unchanged; the label is the
//! original id at selected positions and −100 elsewhere.
//!
//! Unlike the authors' packed path, special tokens (`[CLS]`, `[SEP]`, `[PAD]` and every other
//! added token flagged special) are **never** selected. Random tokens are drawn uniformly over the
//! vocabulary minus special ids and `[unusedK]` slots. Every row's draws come from a [`Pcg64`]
//! keyed by `(seed, step, row)`, so a batch is a pure function of its position (resume-safe).

use super::rng::{key, Pcg64};
use super::shards::TokenizerInfo;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// Stream tag for masking draws (keeps them independent of other streams with the same seed).
const TAG_MASK: u64 = 0x6d61_736b;

/// Masking rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MaskingConfig {
    /// Fraction of (non-special) tokens selected for prediction.
    pub mlm_probability: f64,
    /// Of the selected tokens, the fraction replaced by `[MASK]`.
    pub mask_fraction: f64,
    /// Of the selected tokens, the fraction replaced by a random token (the rest stay unchanged).
    pub random_fraction: f64,
}

impl MaskingConfig {
    /// 30% with 80/10/10: the training setting.
    pub const TRAIN: Self = Self { mlm_probability: 0.30, mask_fraction: 0.8, random_fraction: 0.1 };
    /// 15% with 80/10/10: the evaluation setting of the authors.
    pub const EVAL: Self = Self { mlm_probability: 0.15, mask_fraction: 0.8, random_fraction: 0.1 };

    /// `TRAIN` with another selection rate.
    pub fn with_probability(p: f64) -> Self {
        Self { mlm_probability: p, ..Self::TRAIN }
    }
}

impl Default for MaskingConfig {
    fn default() -> Self {
        Self::TRAIN
    }
}

/// Applies [`MaskingConfig`] to token rows.
#[derive(Debug, Clone)]
pub struct Masker {
    cfg: MaskingConfig,
    mask_id: u32,
    /// `never[id]`: id is never selected.
    never: Vec<bool>,
    /// Ids a random replacement is drawn from.
    random_ids: Vec<u32>,
}

impl Masker {
    /// A masker for a vocabulary of `vocab_size` ids. `special_ids` are never selected nor drawn;
    /// `no_random_ids` (e.g. `[unusedK]`) are never drawn.
    pub fn new(
        cfg: MaskingConfig,
        vocab_size: u32,
        mask_id: u32,
        special_ids: &[u32],
        no_random_ids: &[u32],
    ) -> Result<Self> {
        ensure!(
            (0.0..=1.0).contains(&cfg.mlm_probability)
                && cfg.mask_fraction >= 0.0
                && cfg.random_fraction >= 0.0
                && cfg.mask_fraction + cfg.random_fraction <= 1.0,
            "invalid masking config {cfg:?}"
        );
        ensure!(mask_id < vocab_size, "[MASK] id {mask_id} outside the vocabulary ({vocab_size})");
        let mut never = vec![false; vocab_size as usize];
        for &id in special_ids {
            if let Some(x) = never.get_mut(id as usize) {
                *x = true;
            }
        }
        let random_ids: Vec<u32> =
            (0..vocab_size).filter(|&id| !never[id as usize] && !no_random_ids.contains(&id)).collect();
        ensure!(!random_ids.is_empty(), "no ordinary token ids to draw random replacements from");
        Ok(Self { cfg, mask_id, never, random_ids })
    }

    /// A masker for the tokenizer recorded in a shard manifest.
    pub fn from_tokenizer(cfg: MaskingConfig, tok: &TokenizerInfo) -> Result<Self> {
        let mut no_random = tok.unused_ids.clone();
        no_random.sort_unstable();
        Self::new(cfg, tok.vocab_size, tok.mask_id, &tok.special_ids, &no_random)
    }

    /// The rates in use.
    pub fn config(&self) -> MaskingConfig {
        self.cfg
    }

    /// Whether `id` can be selected for prediction.
    pub fn maskable(&self, id: u32) -> bool {
        !self.never.get(id as usize).copied().unwrap_or(true)
    }

    /// Masks `tokens` in place with draws from `rng`; returns the labels.
    pub fn mask_with(&self, tokens: &mut [u32], rng: &mut Pcg64) -> Vec<i64> {
        let p = self.cfg.mlm_probability;
        let t_mask = p * self.cfg.mask_fraction;
        let t_random = p * (self.cfg.mask_fraction + self.cfg.random_fraction);
        let mut labels = vec![-100i64; tokens.len()];
        for (tok, label) in tokens.iter_mut().zip(labels.iter_mut()) {
            if !self.maskable(*tok) {
                continue;
            }
            let r = rng.next_f64();
            if r >= p {
                continue;
            }
            *label = i64::from(*tok);
            if r < t_mask {
                *tok = self.mask_id;
            } else if r < t_random {
                *tok = self.random_ids[rng.below(self.random_ids.len() as u64) as usize];
            }
        }
        labels
    }

    /// Masks one packed row deterministically from `(seed, step, row)`; returns the labels.
    pub fn mask_row(&self, tokens: &mut [u32], seed: u64, step: u64, row: u64) -> Vec<i64> {
        let mut rng = Pcg64::new(key(&[TAG_MASK, seed, step, row]));
        self.mask_with(tokens, &mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOCAB: u32 = 1000;
    const SPECIAL: [u32; 5] = [995, 996, 997, 998, 999]; // UNK CLS SEP PAD MASK
    const MASK: u32 = 999;

    fn masker(cfg: MaskingConfig) -> Masker {
        Masker::new(cfg, VOCAB, MASK, &SPECIAL, &[990, 991]).unwrap()
    }

    fn row(n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| {
                if i % 10 == 0 {
                    996
                } else if i % 10 == 9 {
                    997
                } else {
                    (i * 7 % 990) as u32
                }
            })
            .collect()
    }

    #[test]
    fn rates_specials_and_labels() {
        for cfg in [MaskingConfig::TRAIN, MaskingConfig::EVAL] {
            let m = masker(cfg);
            let orig = row(400_000);
            let mut toks = orig.clone();
            let labels = m.mask_row(&mut toks, 17, 3, 0);
            let (mut sel, mut masked, mut random, mut same, mut ordinary) = (0usize, 0usize, 0usize, 0usize, 0usize);
            for i in 0..orig.len() {
                if SPECIAL.contains(&orig[i]) {
                    assert_eq!(labels[i], -100);
                    assert_eq!(toks[i], orig[i], "special token changed");
                    continue;
                }
                ordinary += 1;
                if labels[i] == -100 {
                    assert_eq!(toks[i], orig[i]);
                    continue;
                }
                assert_eq!(labels[i], orig[i] as i64);
                sel += 1;
                if toks[i] == MASK {
                    masked += 1;
                } else if toks[i] == orig[i] {
                    same += 1;
                } else {
                    random += 1;
                    assert!(!SPECIAL.contains(&toks[i]) && toks[i] != 990 && toks[i] != 991);
                }
            }
            let rate = sel as f64 / ordinary as f64;
            assert!((rate - cfg.mlm_probability).abs() < 0.004, "rate {rate}");
            let f = |x: usize| x as f64 / sel as f64;
            assert!((f(masked) - 0.8).abs() < 0.01);
            // random replacements that hit the original id count as "same" (≈ 0.1 / 993)
            assert!((f(random) - 0.1).abs() < 0.01 && (f(same) - 0.1).abs() < 0.01, "{} {}", f(random), f(same));
        }
    }

    #[test]
    fn deterministic_per_seed_step_row() {
        let m = masker(MaskingConfig::TRAIN);
        let run = |seed, step, r| {
            let mut t = row(2000);
            let l = m.mask_row(&mut t, seed, step, r);
            (t, l)
        };
        assert_eq!(run(1, 5, 2), run(1, 5, 2));
        assert_ne!(run(1, 5, 2), run(1, 6, 2));
        assert_ne!(run(1, 5, 2), run(1, 5, 3));
        assert_ne!(run(1, 5, 2), run(2, 5, 2));
    }

    #[test]
    fn rejects_bad_config() {
        assert!(Masker::new(MaskingConfig::with_probability(1.5), VOCAB, MASK, &SPECIAL, &[]).is_err());
        assert!(Masker::new(MaskingConfig::TRAIN, 4, 3, &[0, 1, 2, 3], &[]).is_err());
    }
}
