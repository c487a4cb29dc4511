//! Which examples form each optimizer step: a seeded shuffle per epoch, then `batch_size`
//! sequences per step, or as many as fit an unpadded token budget. A step that is too large
//! for one forward pass is split into micro-batches whose gradients add up.

use crate::rng::Rng;

/// How a step is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// This many sequences per step.
    Sequences(usize),
    /// Sequences until the next one would pass this many (real) tokens.
    Tokens(usize),
}

/// The steps of one epoch: example indices, shuffled by `(seed, epoch)`.
pub fn epoch_steps(lengths: &[usize], seed: u64, epoch: u64, batching: Batching) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    Rng::keyed(seed, &[0xE90C, epoch]).shuffle(&mut order);
    match batching {
        Batching::Sequences(n) => order.chunks(n.max(1)).map(|c| c.to_vec()).collect(),
        Batching::Tokens(budget) => {
            let mut steps = Vec::new();
            let mut step = Vec::new();
            let mut tokens = 0;
            for i in order {
                if !step.is_empty() && tokens + lengths[i] > budget {
                    steps.push(std::mem::take(&mut step));
                    tokens = 0;
                }
                tokens += lengths[i];
                step.push(i);
            }
            if !step.is_empty() {
                steps.push(step);
            }
            steps
        }
    }
}

/// Splits a step into runs of at most `max_tokens` tokens (a longer single example is alone).
pub fn micro_batches(step: &[usize], lengths: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut tokens = 0;
    for &i in step {
        match out.last_mut() {
            Some(last) if tokens + lengths[i] <= max_tokens => last.push(i),
            _ => {
                out.push(vec![i]);
                tokens = 0;
            }
        }
        tokens += lengths[i];
    }
    out
}

/// Groups indices (in order) into batches of at most `max_tokens` tokens, for evaluation.
pub fn in_order(lengths: &[usize], max_tokens: usize) -> Vec<Vec<usize>> {
    micro_batches(&(0..lengths.len()).collect::<Vec<_>>(), lengths, max_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_seeded_shuffles_covering_every_example() {
        let lengths = vec![5; 10];
        let a = epoch_steps(&lengths, 1, 0, Batching::Sequences(4));
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let mut all: Vec<usize> = a.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_steps(&lengths, 1, 0, Batching::Sequences(4)));
        assert_ne!(a, epoch_steps(&lengths, 1, 1, Batching::Sequences(4)));
        let t = epoch_steps(&[3, 9, 4, 4, 1], 2, 0, Batching::Tokens(10));
        for step in &t {
            let n: usize = step.iter().map(|&i| [3, 9, 4, 4, 1][i]).sum();
            assert!(n <= 10 || step.len() == 1, "{t:?}");
        }
        assert_eq!(t.concat().len(), 5);
    }

    #[test]
    fn micro_batches_respect_the_budget() {
        let lengths = [6, 6, 6, 20, 1];
        assert_eq!(micro_batches(&[0, 1, 2, 3, 4], &lengths, 12), vec![vec![0, 1], vec![2], vec![3], vec![4]]);
    }
}
