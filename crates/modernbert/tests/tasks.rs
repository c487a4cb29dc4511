//! `Model::score_masked` against the same quantities composed from candle ops on the full logits.

use candle_core::D;
use modernbert::{Batch, Head, Model};
use std::path::PathBuf;

fn tiny_mlm() -> Model {
    Model::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-mlm")).unwrap()
}

#[test]
fn score_masked_matches_log_softmax_and_argmax_of_the_full_logits() {
    let model = tiny_mlm();
    let tok = model.tokenizer().unwrap();
    let texts = ["fn main() { println!(\"hello\"); }", "The quick brown fox jumps over the lazy dog."];
    let enc = tok.encode_batch(&texts.iter().map(|t| (*t, None)).collect::<Vec<_>>(), None).unwrap();
    let batch = Batch::new(&enc.iter().map(|e| e.ids.clone()).collect::<Vec<_>>()).unwrap();
    // Label every third token with its own id, one with another id, the rest -100.
    let labels: Vec<i64> = (0..batch.num_tokens())
        .map(|i| match i % 3 {
            0 if i == 3 => 1234,
            0 => i64::from(batch.input_ids[i]),
            _ => -100,
        })
        .collect();
    let scores = model.score_masked(&batch, &labels).unwrap();
    let positions: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] >= 0).collect();
    assert_eq!(scores.len(), positions.len());

    let Head::MaskedLm(mlm) = &model.head else { panic!("tiny-mlm has an MLM head") };
    let logits = mlm.forward(&model.backbone.forward(&batch).unwrap()).unwrap();
    let log_probs =
        logits.broadcast_sub(&logits.exp().unwrap().sum_keepdim(D::Minus1).unwrap().log().unwrap()).unwrap();
    let argmax = logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    let log_probs = log_probs.to_vec2::<f32>().unwrap();
    for (s, &pos) in scores.iter().zip(&positions) {
        assert_eq!(i64::from(s.label), labels[pos]);
        assert_eq!(s.predicted, argmax[pos], "position {pos}");
        let expected = -log_probs[pos][s.label as usize];
        assert!((s.nll - expected).abs() < 1e-4 * expected.abs().max(1.0), "position {pos}: {} vs {expected}", s.nll);
    }
}

#[test]
fn score_masked_rejects_mismatched_or_out_of_vocabulary_labels() {
    let model = tiny_mlm();
    let batch = Batch::new(&[vec![1u32, 500, 2]]).unwrap();
    let err = model.score_masked(&batch, &[-100, 500]).unwrap_err().to_string();
    assert!(err.contains("2 labels for 3 tokens"), "{err}");
    let err = model.score_masked(&batch, &[-100, 60_000, -100]).unwrap_err().to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    assert!(model.score_masked(&batch, &[-100, -100, -100]).unwrap().is_empty());
}
