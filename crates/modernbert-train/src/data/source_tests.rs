use super::*;
use crate::data::rng::Pcg64;
use crate::data::testutil::write_shards;

/// Content lengths: mostly short, some longer than max_seq_len (chunked at read time).
fn lengths(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Pcg64::new(seed);
    (0..n)
        .map(|_| if rng.below(10) == 0 { 100 + rng.below(300) as usize } else { 1 + rng.below(60) as usize })
        .collect()
}

fn cfg(seed: u64) -> SourceConfig {
    SourceConfig { max_seq_len: 64, row_tokens: 256, rows_per_step: 3, ..SourceConfig::train(seed) }
}

fn check_batch(b: &MlmBatch, c: &SourceConfig) {
    assert_eq!(b.input_ids.len(), b.labels.len());
    assert_eq!(b.cu_seqlens[0], 0);
    assert_eq!(*b.cu_seqlens.last().unwrap() as usize, b.input_ids.len());
    assert!(b.input_ids.len() <= c.row_tokens);
    for w in b.cu_seqlens.windows(2) {
        let (s, e) = (w[0] as usize, w[1] as usize);
        assert!(e - s >= 3 && e - s <= c.max_seq_len);
        assert_eq!((b.input_ids[s], b.input_ids[e - 1]), (1, 2), "sequence not wrapped in CLS/SEP");
        assert_eq!((b.labels[s], b.labels[e - 1]), (-100, -100));
        assert!(b.input_ids[s + 1..e - 1].iter().all(|&t| t != 1 && t != 2));
    }
    for (&t, &l) in b.input_ids.iter().zip(&b.labels) {
        if l != -100 {
            assert!((5..95).contains(&l), "label {l}");
        } else {
            assert!(t != 4);
        }
    }
}

#[test]
fn batches_are_well_formed_and_a_finite_pass_covers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let lens = lengths(300, 1);
    write_shards(dir.path(), &lens, &lens[..50]);
    let c = SourceConfig { split: Split::Heldout, repeat: false, shuffle: false, ..cfg(9) };
    let mut src = BatchSource::open(dir.path(), c).unwrap();
    let (mut tokens, mut seqs, mut steps) = (0usize, 0usize, 0);
    while let Some(step) = src.next_step(2) {
        assert_eq!(step.index, steps);
        steps += 1;
        for b in &step.batches {
            check_batch(b, &c);
            tokens += b.input_ids.len();
            seqs += b.cu_seqlens.len() - 1;
        }
        assert_eq!(step.tokens, step.batches.iter().map(|b| b.input_ids.len()).sum::<usize>());
    }
    let chunks = |n: usize| if n + 2 <= 64 { 1 } else { n.div_ceil(62) };
    let expect_seqs: usize = lens[..50].iter().map(|&n| chunks(n)).sum();
    let expect_tokens: usize = lens[..50].iter().map(|&n| n + 2 * chunks(n)).sum();
    assert_eq!((seqs, tokens), (expect_seqs, expect_tokens));
    assert_eq!(src.stats().tokens as usize, tokens);
    assert!(src.next_step(2).is_none());
}

#[test]
fn resume_reproduces_the_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path(), &lengths(120, 2), &[5]);
    // Iterator interface, saved in the middle of a step (k = 7 rows, 3 rows per step),
    // over several epochs (120 docs ≈ 9 steps per epoch).
    let k = 40;
    let mut a = BatchSource::open(dir.path(), cfg(5)).unwrap();
    let first: Vec<MlmBatch> = a.by_ref().take(k + 1).collect();
    let saved = a.state();
    let saved = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
    let rest_a: Vec<MlmBatch> = a.by_ref().take(k).collect();
    assert!(a.epoch() >= 2, "test should cross epochs");
    let mut b = BatchSource::open(dir.path(), cfg(5)).unwrap();
    b.restore(&saved).unwrap();
    let rest_b: Vec<MlmBatch> = b.by_ref().take(k).collect();
    assert_eq!(rest_a, rest_b);
    assert_eq!(a.state(), b.state());
    // a fresh source with the same seed gives the same stream; another seed does not
    let again: Vec<MlmBatch> = BatchSource::open(dir.path(), cfg(5)).unwrap().take(k + 1).collect();
    assert_eq!(first, again);
    let other: Vec<MlmBatch> = BatchSource::open(dir.path(), cfg(6)).unwrap().take(k + 1).collect();
    assert_ne!(first, other);
    for x in first.iter().chain(&rest_a) {
        check_batch(x, &cfg(5));
    }

    // next_step with a growing number of rows (batch-size warmup), saved between steps
    let rows = |s: usize| 1 + s.min(3);
    let mut a = BatchSource::open(dir.path(), cfg(7)).unwrap();
    for s in 0..6 {
        a.next_step(rows(s)).unwrap();
    }
    let saved = a.state();
    let rest_a: Vec<Step> = (6..14).map(|s| a.next_step(rows(s)).unwrap()).collect();
    let mut b = BatchSource::open(dir.path(), cfg(7)).unwrap();
    b.restore(&saved).unwrap();
    let rest_b: Vec<Step> = (6..14).map(|s| b.next_step(rows(s)).unwrap()).collect();
    assert_eq!(rest_a, rest_b);
    assert!(rest_a.iter().all(|s| s.batches.len() == 4));

    // a state from another configuration is refused
    let mut c = BatchSource::open(dir.path(), SourceConfig { max_seq_len: 32, ..cfg(7) }).unwrap();
    assert!(c.restore(&saved).is_err());
    let mut d = BatchSource::open(dir.path(), cfg(8)).unwrap();
    assert!(d.restore(&saved).is_err());
}

#[test]
fn epochs_reshuffle_and_eval_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    write_shards(dir.path(), &lengths(60, 3), &lengths(30, 4));
    let c = SourceConfig { max_seq_len: 512, row_tokens: 512, ..cfg(1) };
    let mut src = BatchSource::open(dir.path(), c).unwrap();
    src.ensure_order();
    let e0 = src.order.clone();
    src.epoch = 1;
    src.ensure_order();
    assert_ne!(e0, src.order);
    let mut sorted = src.order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..60).collect::<Vec<u32>>());

    let run = || {
        let c = SourceConfig { max_seq_len: 64, row_tokens: 256, ..SourceConfig::eval() };
        BatchSource::open(dir.path(), c).unwrap().collect::<Vec<_>>()
    };
    let (x, y) = (run(), run());
    assert_eq!(x, y);
    let masked: usize = x.iter().map(|b| b.labels.iter().filter(|&&l| l != -100).count()).sum();
    let ordinary: usize = x.iter().map(|b| b.input_ids.len() - 2 * (b.cu_seqlens.len() - 1)).sum();
    let rate = masked as f64 / ordinary as f64;
    assert!((0.10..0.20).contains(&rate), "eval masking rate {rate}");
}

#[test]
fn packing_efficiency_is_high_on_realistic_lengths() {
    let dir = tempfile::tempdir().unwrap();
    // log-uniform-ish lengths from 5 to 5000 content tokens
    let mut rng = Pcg64::new(11);
    let lens: Vec<usize> = (0..3000).map(|_| (5.0 * 1000f64.powf(rng.next_f64())) as usize).collect();
    write_shards(dir.path(), &lens, &[]);
    let stats = measure_packing(dir.path(), Split::Train, 1024, 8192, 1, 0).unwrap();
    assert!(stats.efficiency() >= 0.99, "{stats:?} -> {}", stats.efficiency());
    let total: usize = lens.iter().map(|&n| n + 2 * if n + 2 <= 1024 { 1 } else { n.div_ceil(1022) }).sum();
    assert!(stats.tokens as usize <= total && stats.tokens as usize > total * 9 / 10);
}
