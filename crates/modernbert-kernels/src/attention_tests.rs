//! Attention: the bf16 variant on every path this CPU has, and the batch splitting (groups,
//! local chunks) of both variants. The `f32` kernel's accuracy tests are in `tests.rs`.

use crate::attention::{run, Arith};
use crate::tests::{max_abs_diff, Rng};
use crate::{reference, Isa, RopeTable};

fn cu_of(lens: &[usize]) -> Vec<u32> {
    let mut cu = vec![0u32];
    for &n in lens {
        cu.push(cu.last().unwrap() + n as u32);
    }
    cu
}

/// Every (instruction set, bf16 arithmetic) pair this CPU can run.
fn bf16_paths() -> Vec<(Isa, Arith)> {
    let mut paths: Vec<(Isa, Arith)> = Isa::available().into_iter().map(|isa| (isa, Arith::Bf16Emulated)).collect();
    if Isa::Avx512.is_available() && crate::bf16_native() {
        paths.push((Isa::Avx512, Arith::Bf16Native));
    }
    paths
}

/// One attention problem: random `qkv` of the given scale, and its f64 reference output.
struct Case {
    lens: Vec<usize>,
    cu: Vec<u32>,
    heads: usize,
    d: usize,
    window: Option<usize>,
    rope: RopeTable,
    qkv: Vec<f32>,
    want: Vec<f32>,
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rng: &mut Rng,
        lens: &[usize],
        heads: usize,
        d: usize,
        window: Option<usize>,
        scale: f32,
        theta: f32,
    ) -> Case {
        let cu = cu_of(lens);
        let total = *cu.last().unwrap() as usize;
        let rope = RopeTable::new(theta, d, lens.iter().copied().max().unwrap_or(0).max(1));
        let qkv = rng.vec(total * 3 * heads * d, scale);
        let mut want = vec![0f32; total * heads * d];
        reference::attention_varlen(&qkv, &cu, heads, d, &rope, window, &mut want);
        Case { lens: lens.to_vec(), cu, heads, d, window, rope, qkv, want }
    }

    fn run(&self, isa: Isa, arith: Arith) -> Vec<f32> {
        let mut got = vec![f32::NAN; self.want.len()];
        run(isa, arith, &self.qkv, &self.cu, self.heads, self.d, &self.rope, self.window, &mut got);
        assert!(got.iter().all(|x| x.is_finite()), "non-finite output");
        got
    }

    /// Largest `|v|`, and the largest `|q| |k| / sqrt(d)` over all head vectors (RoPE keeps
    /// norms, up to f32 rounding).
    fn scales(&self) -> (f32, f32) {
        let (h, d) = (self.heads, self.d);
        let mut vmax = 0f32;
        let (mut qn, mut kn) = (0f32, 0f32);
        for row in self.qkv.chunks_exact(3 * h * d) {
            for (b, part) in row.chunks_exact(h * d).enumerate() {
                for head in part.chunks_exact(d) {
                    let norm = head.iter().map(|x| x * x).sum::<f32>().sqrt();
                    match b {
                        0 => qn = qn.max(norm),
                        1 => kn = kn.max(norm),
                        _ => vmax = head.iter().fold(vmax, |a, &x| a.max(x.abs())),
                    }
                }
            }
        }
        (vmax, qn * kn / (d as f32).sqrt())
    }

    /// Bound on the bf16 kernel's error. Rounding Q and K moves a scaled score by at most
    /// `2 * 2^-8 * |q| |k| / sqrt(d)` (`ds`; bf16 keeps 8 significant bits, so rounding to
    /// nearest is off by at most 2^-8 relative), which scales a probability by at most
    /// `e^(2 ds)` relative to the others; rounding V and P costs `2^-8` relative each. The
    /// output is a convex combination of the values, so its error is at most
    /// `max|v| * ((e^(2 ds) - 1) + 2 * 2^-8)`, plus `f32` noise.
    fn bf16_tolerance(&self) -> f32 {
        let (vmax, qk) = self.scales();
        let ds = 2.0 * 2f32.powi(-8) * qk;
        vmax * ((2.0 * ds).exp() - 1.0 + 2.0 * 2f32.powi(-8)) + 1e-5
    }

    /// The bf16 kernel's arithmetic without the rounding of P: Q and K rotated in f32 then
    /// rounded to bf16, V rounded, everything after in f64. The kernel rounds each
    /// probability by at most 2^-8 relative, so it is within `2^-8 max|v|` of this (plus
    /// `f32` noise: scores summed in `f32`, a 2.6e-6 exponential).
    fn rounded_reference(&self) -> Vec<f32> {
        let (h, d) = (self.heads, self.d);
        let hid = h * d;
        let r = crate::round_to_bf16;
        let mut out = vec![0f32; self.want.len()];
        for w in self.cu.windows(2) {
            let (start, n) = (w[0] as usize, (w[1] - w[0]) as usize);
            for head in 0..h {
                let vec_of = |t: usize, b: usize| {
                    let x = &self.qkv[(start + t) * 3 * hid + b * hid + head * d..][..d];
                    let mut x = x.to_vec();
                    if b < 2 {
                        self.rope.rotate(&mut x, t);
                    }
                    x.iter().map(|&y| r(y) as f64).collect::<Vec<f64>>()
                };
                let q: Vec<Vec<f64>> = (0..n).map(|t| vec_of(t, 0)).collect();
                let k: Vec<Vec<f64>> = (0..n).map(|t| vec_of(t, 1)).collect();
                let v: Vec<Vec<f64>> = (0..n).map(|t| vec_of(t, 2)).collect();
                for i in 0..n {
                    let (lo, hi) = match self.window {
                        Some(w) => (i.saturating_sub(w), (i + w + 1).min(n)),
                        None => (0, n),
                    };
                    let s: Vec<f64> = (lo..hi)
                        .map(|j| q[i].iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f64>() / (d as f64).sqrt())
                        .collect();
                    let mx = s.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
                    let p: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                    let l: f64 = p.iter().sum();
                    for c in 0..d {
                        let o: f64 = (lo..hi).zip(&p).map(|(j, p)| p * v[j][c]).sum();
                        out[(start + i) * hid + head * d + c] = (o / l) as f32;
                    }
                }
            }
        }
        out
    }

    fn what(&self, isa: Isa, arith: Arith) -> String {
        format!("{isa:?}/{arith:?} lens={:?} heads={} d={} window={:?}", self.lens, self.heads, self.d, self.window)
    }
}

fn verbose() -> bool {
    std::env::var_os("KERNELS_TEST_VERBOSE").is_some()
}

/// bf16 against the f64 reference (bound above) and against the rounded reference (tight
/// bound), and all bf16 paths against each other: they round the same operands, so they
/// differ only where an `f32`-level difference (score summation order, exponential
/// polynomial) flips a probability's bf16 rounding, at most `2^-7` (one ulp) relative on that
/// probability.
fn check_bf16(case: &Case) {
    let tol = case.bf16_tolerance();
    let (vmax, _) = case.scales();
    let rounded = case.rounded_reference();
    let tight = 2f32.powi(-8) * vmax * 1.01 + 2e-5;
    let mut first: Option<Vec<f32>> = None;
    for (isa, arith) in bf16_paths() {
        let got = case.run(isa, arith);
        let err = max_abs_diff(&got, &case.want);
        let err_r = max_abs_diff(&got, &rounded);
        let what = case.what(isa, arith);
        if verbose() {
            println!(
                "{what}: max err {err:e} (bound {tol:e}), vs rounded reference {err_r:e} \
                 (bound {tight:e}), max |v| {vmax}"
            );
        }
        assert!(err <= tol, "{what}: max abs error {err:e} > {tol:e}");
        assert!(err_r <= tight, "{what}: {err_r:e} from the rounded reference > {tight:e}");
        match &first {
            None => first = Some(got),
            Some(f) => {
                let diff = max_abs_diff(&got, f);
                let tol = 2f32.powi(-7) * vmax + 1e-5;
                assert!(diff <= tol, "{what}: {diff:e} from the first path > {tol:e}");
            }
        }
    }
}

#[test]
fn bf16_matches_reference() {
    let mut rng = Rng(11);
    for &window in &[Some(2), Some(64), None] {
        let w = window.unwrap_or(64);
        let lens = [1, 2, w, w + 1, 2 * w + 1, 300];
        for &(heads, d) in &[(1, 16), (3, 20), (2, 64), (12, 64)] {
            check_bf16(&Case::new(&mut rng, &lens, heads, d, window, 1.0, 10_000.0));
        }
        // Peaky softmax (large logits) and the global theta.
        check_bf16(&Case::new(&mut rng, &lens, 2, 64, window, 2.0, 160_000.0));
    }
}

#[test]
fn bf16_odd_shapes() {
    let mut rng = Rng(12);
    // Head dims whose pair count is odd or not a multiple of 16; empty sequences.
    for &d in &[2, 6, 30, 48, 66, 128] {
        for window in [Some(3), None] {
            check_bf16(&Case::new(&mut rng, &[5, 0, 37, 70], 2, d, window, 1.0, 10_000.0));
        }
    }
    for &w in &[0, 1, 15, 16, 17, 33, 299, 1000] {
        check_bf16(&Case::new(&mut rng, &[300, 17, 1], 2, 64, Some(w), 1.0, 10_000.0));
    }
}

/// Max abs error on ModernBERT-base-like shapes (12 heads of 64, 512 tokens, local w = 64 and
/// global), for the record: `cargo test --release bf16_modernbert_error -- --nocapture`.
#[test]
fn bf16_modernbert_error() {
    let mut rng = Rng(13);
    for (window, theta) in [(Some(64), 10_000.0), (None, 160_000.0)] {
        for scale in [1.0, 2.0] {
            let case = Case::new(&mut rng, &[512, 200], 12, 64, window, scale, theta);
            check_bf16(&case);
            let f32_out = case.run(Isa::active(), Arith::F32);
            for (isa, arith) in bf16_paths() {
                let got = case.run(isa, arith);
                let out_max = case.want.iter().fold(0f32, |a, &b| a.max(b.abs()));
                let rms = |a: &[f32], b: &[f32]| {
                    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32).sqrt()
                };
                let err = max_abs_diff(&got, &case.want);
                // The suggested budget: 2e-2 of the output scale.
                assert!(err <= 2e-2 * out_max, "{isa:?}/{arith:?}: {err:e}");
                println!(
                    "{isa:?}/{arith:?} window={window:?} scale={scale}: max abs err vs f64 {:.2e}, \
                     vs f32 kernel {:.2e}, rms err {:.2e}, max |out| {out_max:.2}, bound {:.2e}",
                    err,
                    max_abs_diff(&got, &f32_out),
                    rms(&got, &case.want),
                    case.bf16_tolerance(),
                );
            }
        }
    }
}

#[test]
fn many_sequences_and_long_local() {
    // Many short sequences (several groups), and sequences longer than a local chunk.
    let mut rng = Rng(14);
    let lens: Vec<usize> = (0..40).map(|i| (i * 37 + 5) % 150 + 1).collect();
    for window in [Some(64), Some(7), None] {
        let case = Case::new(&mut rng, &lens, 2, 64, window, 1.0, 10_000.0);
        let err = max_abs_diff(&case.run(Isa::active(), Arith::F32), &case.want);
        assert!(err <= 1e-5, "f32 {window:?}: {err:e}");
        check_bf16(&case);
    }
    for window in [Some(64), Some(200)] {
        let case = Case::new(&mut rng, &[1500, 513, 1100], 2, 32, window, 1.0, 10_000.0);
        for isa in Isa::available() {
            let err = max_abs_diff(&case.run(isa, Arith::F32), &case.want);
            assert!(err <= 1e-5, "f32 {isa:?} {window:?}: {err:e}");
        }
        check_bf16(&case);
    }
}

#[test]
fn bf16_sequences_are_independent() {
    let mut rng = Rng(15);
    let (heads, d) = (2, 64);
    let rope = RopeTable::new(10_000.0, d, 512);
    let width = 3 * heads * d;
    let a = rng.vec(100 * width, 1.0);
    let b = rng.vec(77 * width, 1.0);
    for window in [Some(64), None] {
        let mut alone = vec![0f32; 100 * heads * d];
        crate::attention_varlen_bf16(&a, &[0, 100], heads, d, &rope, window, &mut alone);
        let packed: Vec<f32> = b.iter().chain(&a).copied().collect();
        let mut both = vec![0f32; 177 * heads * d];
        crate::attention_varlen_bf16(&packed, &[0, 77, 177], heads, d, &rope, window, &mut both);
        assert_eq!(&both[77 * heads * d..], &alone[..], "window {window:?}");
    }
}
