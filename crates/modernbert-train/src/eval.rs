//! Held-out masked-LM evaluation of a finished model (the numbers of a model card).
//!
//! One pass over the held-out split, chunked, packed and masked by the same code as training
//! ([`BatchSource`], 80/10/10 rule), scored with the inference model ([`modernbert::Model`]),
//! next to a unigram baseline that always predicts the most frequent maskable training token.

use crate::data::{BatchSource, Masker, MaskingConfig, ShardSet, SourceConfig, Split};
use anyhow::{ensure, Context, Result};
use modernbert::{Batch, Model};
use serde::Serialize;
use std::path::Path;

/// How the held-out split is chunked and masked.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Share of maskable tokens selected for prediction (0.3 = the training rule).
    pub mlm_probability: f64,
    /// Longest sequence (document chunk) in tokens; longer documents are split as in training.
    pub max_seq_len: usize,
    /// Masking seed.
    pub seed: u64,
}

/// Held-out masked-LM results of a model and of the unigram baseline on the same positions.
#[derive(Debug, Clone, Serialize)]
pub struct MlmEval {
    /// Sequences (document chunks) scored.
    pub sequences: usize,
    /// Tokens fed to the model, specials included.
    pub tokens: usize,
    /// Positions selected for prediction.
    pub predicted: usize,
    /// Positions whose arg-max prediction is the original token.
    pub correct: usize,
    /// Mean negative log-likelihood of the original tokens (nats).
    pub loss: f64,
    /// `correct / predicted`.
    pub accuracy: f64,
    /// The most frequent maskable token of the training split.
    pub unigram_token_id: u32,
    /// Positions whose original token is `unigram_token_id`.
    pub unigram_correct: usize,
    /// `unigram_correct / predicted`.
    pub unigram_accuracy: f64,
}

/// The most frequent token of `shards` that masking may select (specials excluded).
pub fn most_frequent_token(shards: &ShardSet, masker: &Masker) -> Option<u32> {
    let mut counts = vec![0u64; shards.manifest().tokenizer.vocab_size as usize];
    for d in 0..shards.num_docs() {
        for &t in shards.doc(d) {
            if let Some(c) = counts.get_mut(t as usize) {
                *c += 1;
            }
        }
    }
    (0..counts.len() as u32)
        .filter(|&t| masker.maskable(t) && counts[t as usize] > 0)
        .max_by_key(|&t| counts[t as usize])
}

/// Evaluates `model` on the held-out split of the shard directory `dir`.
pub fn evaluate_mlm(model: &Model, dir: &Path, opts: EvalOptions) -> Result<MlmEval> {
    let masking = MaskingConfig::with_probability(opts.mlm_probability);
    let heldout = ShardSet::open(dir, Split::Heldout)?;
    ensure!(heldout.num_docs() > 0, "{} has no held-out documents", dir.display());
    let train = ShardSet::open(dir, Split::Train)?;
    let masker = Masker::from_tokenizer(masking, &train.manifest().tokenizer)?;
    let unigram = most_frequent_token(&train, &masker)
        .with_context(|| format!("{} has no maskable training tokens", dir.display()))?;

    let source = SourceConfig {
        max_seq_len: opts.max_seq_len,
        row_tokens: opts.max_seq_len.max(8192),
        seed: opts.seed,
        masking,
        ..SourceConfig::eval()
    };
    let mut src = BatchSource::new(heldout, source)?;
    let (mut sequences, mut tokens, mut predicted, mut correct, mut unigram_correct) = (0, 0, 0, 0, 0);
    let mut nll = 0f64;
    while let Some(step) = src.next_step(1) {
        for b in step.batches {
            let batch = Batch { input_ids: b.input_ids, cu_seqlens: b.cu_seqlens, key_limits: None };
            sequences += batch.num_sequences();
            tokens += batch.num_tokens();
            for s in model.score_masked(&batch, &b.labels)? {
                predicted += 1;
                correct += usize::from(s.predicted == s.label);
                unigram_correct += usize::from(s.label == unigram);
                nll += f64::from(s.nll);
            }
        }
    }
    ensure!(predicted > 0, "no held-out token was selected for prediction");
    Ok(MlmEval {
        sequences,
        tokens,
        predicted,
        correct,
        loss: nll / predicted as f64,
        accuracy: correct as f64 / predicted as f64,
        unigram_token_id: unigram,
        unigram_correct,
        unigram_accuracy: unigram_correct as f64 / predicted as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::write_docs;
    use modernbert::weights::Weights;
    use modernbert::{Config, Precision};

    #[test]
    fn scores_every_masked_heldout_token_and_the_unigram_baseline() {
        let dir = tempfile::tempdir().unwrap();
        // Token 7 dominates training; half of the held-out content is 7.
        let train: Vec<Vec<u32>> = (0..20).map(|i| vec![7, 7, 7, 8 + i % 5, 9]).collect();
        let heldout: Vec<Vec<u32>> =
            (0..12).map(|i| (0..300u32).map(|t| if t % 2 == 0 { 7 } else { 10 + (t + i) % 80 }).collect()).collect();
        write_docs(dir.path(), &train, &heldout);

        let cfg = Config::from_json(
            r#"{"model_type":"modernbert","vocab_size":100,"hidden_size":32,"intermediate_size":48,
                "num_hidden_layers":2,"num_attention_heads":2,"local_attention":16,"pad_token_id":3}"#,
        )
        .unwrap();
        let weights = Weights::random(&cfg, &candle_core::Device::Cpu).unwrap();
        let model = Model::from_weights(cfg, &weights, None, dir.path(), Precision::F32).unwrap();
        let opts = EvalOptions { mlm_probability: 0.3, max_seq_len: 128, seed: 5 };
        let e = evaluate_mlm(&model, dir.path(), opts).unwrap();

        // 300 content tokens → ceil(300 / 126) = 3 chunks per document, each with CLS and SEP.
        assert_eq!(e.sequences, 12 * 3);
        assert_eq!(e.tokens, 12 * (300 + 3 * 2));
        let rate = e.predicted as f64 / (12.0 * 300.0);
        assert!((rate - 0.3).abs() < 0.03, "masked share {rate}");
        assert_eq!(e.unigram_token_id, 7);
        assert!((e.unigram_accuracy - 0.5).abs() < 0.05, "unigram accuracy {}", e.unigram_accuracy);
        assert!(e.correct <= e.predicted && e.loss.is_finite() && e.loss > 0.0);
        // A random 100-token model is close to uniform: loss near ln(100).
        assert!((e.loss - 100f64.ln()).abs() < 1.0, "loss {}", e.loss);
        // Same seed, same result; masking depends on the seed.
        let again = evaluate_mlm(&model, dir.path(), opts).unwrap();
        assert_eq!((again.predicted, again.correct), (e.predicted, e.correct));
        let other = evaluate_mlm(&model, dir.path(), EvalOptions { seed: 6, ..opts }).unwrap();
        assert_ne!(other.predicted, e.predicted);
    }

    #[test]
    fn a_shard_directory_without_heldout_documents_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_docs(dir.path(), &[vec![7, 8]], &[]);
        let cfg = Config::from_json(
            r#"{"model_type":"modernbert","vocab_size":100,"hidden_size":32,"intermediate_size":48,
                "num_hidden_layers":1,"num_attention_heads":2}"#,
        )
        .unwrap();
        let weights = Weights::random(&cfg, &candle_core::Device::Cpu).unwrap();
        let model = Model::from_weights(cfg, &weights, None, dir.path(), Precision::F32).unwrap();
        let err = evaluate_mlm(&model, dir.path(), EvalOptions { mlm_probability: 0.3, max_seq_len: 128, seed: 0 })
            .unwrap_err();
        assert!(err.to_string().contains("no held-out documents"), "{err}");
    }
}
