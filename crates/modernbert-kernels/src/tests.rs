//! Fast kernels against the reference ones, on every instruction set this CPU has.

use crate::attention::attention_varlen_with;
use crate::geglu::geglu_with;
use crate::norm::{add_layer_norm_with, layer_norm_backward_with, layer_norm_inplace_with, layer_norm_with};
use crate::{reference, Isa, RopeTable};

/// SplitMix64: tiny, deterministic, good enough for test data (shared by the kernel tests).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub(crate) fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Roughly normal (Irwin-Hall of 4), unit variance.
    pub(crate) fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866_025_4
    }
    pub(crate) fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert!(got.iter().all(|x| x.is_finite()), "{what}: non-finite output");
    let err = max_abs_diff(got, want);
    assert!(err <= tol, "{what}: max abs error {err:e} > {tol:e}");
}

#[test]
fn active_isa_is_available() {
    assert!(Isa::active().is_available());
    assert_eq!(Isa::available()[0], Isa::Portable);
}

#[test]
fn reference_erf_matches_known_values() {
    // Values from Abramowitz & Stegun tables / high-precision evaluation.
    let cases = [
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (-1.5, -0.966_105_146_475_310_7),
    ];
    for (x, want) in cases {
        assert!((reference::erf(x) - want).abs() < 1e-15, "erf({x})");
    }
    let tails = [(3.0, 2.209_049_699_858_544e-5), (5.0, 1.537_459_794_428_035e-12), (10.0, 2.088_487_583_762_545e-45)];
    for (x, want) in tails {
        let rel = (reference::erfc(x) - want).abs() / want;
        assert!(rel < 1e-13, "erfc({x}) relative error {rel:e}");
    }
    // Continuity where the series hands over to the continued fraction.
    let (a, b) = (reference::erf(2.5 - 1e-12), reference::erf(2.5 + 1e-12));
    assert!((a - b).abs() < 1e-14);
}

#[test]
fn exp_is_accurate() {
    let mut worst = [0f64; 2];
    for i in 0..=200_000 {
        let x = -87.0 + 175.0 * i as f32 / 200_000.0;
        let want = (x as f64).exp();
        let port = crate::math::exp(x) as f64;
        worst[0] = worst[0].max((port - want).abs() / want);
        #[cfg(target_arch = "x86_64")]
        if Isa::Avx512.is_available() {
            use std::arch::x86_64::*;
            // SAFETY: AVX-512F is available (checked above).
            let simd = unsafe {
                let mut out = [0f32; 16];
                _mm512_storeu_ps(out.as_mut_ptr(), crate::x86::exp_ps(_mm512_set1_ps(x)));
                out[0] as f64
            };
            worst[1] = worst[1].max((simd - want).abs() / want);
        }
    }
    assert!(worst[0] < 3e-7 && worst[1] < 3e-7, "exp relative errors {worst:?}");
}

/// GELU on a dense grid (both signs, deep tails) and on every ISA, relative to f64.
#[test]
fn gelu_is_accurate() {
    let xs: Vec<f32> = (0..=400_000).map(|i| -20.0 + 40.0 * i as f32 / 400_000.0).collect();
    for isa in Isa::available() {
        // GeGLU with a gate of ones is GELU itself.
        let mut x = xs.clone();
        x.extend(std::iter::repeat_n(1.0, xs.len()));
        let mut got = vec![0f32; xs.len()];
        geglu_with(isa, &x, xs.len(), &mut got);
        // Worst relative error for u < 0 and u >= 0, worst absolute error.
        let (mut rel, mut worst_abs) = ([0f64; 2], 0f64);
        for (&u, &g) in xs.iter().zip(&got) {
            let want = reference::gelu_erf(u as f64);
            let err = (g as f64 - want).abs();
            worst_abs = worst_abs.max(err);
            // Relative accuracy wherever the result is a normal float worth having.
            if want.abs() > 1e-30 {
                let side = usize::from(u >= 0.0);
                rel[side] = rel[side].max(err / want.abs());
            }
        }
        // |gelu| < 0.17 for u < 0, so 5e-7 relative there is below 1e-7 absolute.
        assert!(rel[0] < 5e-7 && rel[1] < 2e-7, "{isa:?}: GELU max relative errors {rel:?}");
        assert!(worst_abs < 1e-6, "{isa:?}: GELU max absolute error {worst_abs:e}");
    }
    assert_eq!(crate::gelu_erf(0.0), 0.0);
    assert!((crate::gelu_erf(1.0) - 0.841_344_7).abs() < 1e-7);
    assert!(crate::gelu_erf(f32::NAN).is_nan());
}

#[test]
fn geglu_matches_reference() {
    let mut rng = Rng::new(1);
    for isa in Isa::available() {
        for &(rows, inter) in &[(1, 1), (3, 15), (5, 16), (7, 17), (2, 100), (64, 1152), (300, 33)] {
            let x = rng.vec(rows * 2 * inter, 3.0);
            let mut got = vec![f32::NAN; rows * inter];
            let mut want = vec![0f32; rows * inter];
            geglu_with(isa, &x, inter, &mut got);
            reference::geglu(&x, inter, &mut want);
            assert_close(&got, &want, 1e-5, &format!("{isa:?} geglu {rows}x{inter}"));
        }
    }
}

#[test]
fn layer_norm_matches_reference() {
    let mut rng = Rng::new(2);
    let widths = [1, 2, 7, 31, 32, 33, 47, 63, 64, 65, 100, 255, 256, 257, 768, 1000, 1023, 1024];
    for isa in Isa::available() {
        for &d in &widths {
            for &rows in &[1, 3, 97] {
                for &(offset, spread) in &[(0.0, 1.0), (50.0, 3.0), (0.0, 1e-3)] {
                    let x: Vec<f32> = rng.vec(rows * d, spread).iter().map(|v| v + offset).collect();
                    let w: Vec<f32> = rng.vec(d, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
                    let what = format!("{isa:?} d={d} rows={rows} offset={offset} spread={spread}");
                    let mut want = vec![0f32; x.len()];
                    reference::layer_norm(&x, &w, 1e-5, &mut want);

                    let mut got = vec![f32::NAN; x.len()];
                    layer_norm_with(isa, &x, &w, 1e-5, &mut got);
                    assert_close(&got, &want, 1e-5, &format!("layer_norm {what}"));

                    let mut inplace = x.clone();
                    layer_norm_inplace_with(isa, &mut inplace, &w, 1e-5);
                    assert_close(&inplace, &want, 1e-5, &format!("layer_norm_inplace {what}"));

                    // Fused residual add: hidden = x - delta, so hidden + delta ~ x.
                    let delta = rng.vec(x.len(), 1.0);
                    let mut hidden: Vec<f32> = x.iter().zip(&delta).map(|(a, b)| a - b).collect();
                    let mut hidden_ref = hidden.clone();
                    let mut want_add = vec![0f32; x.len()];
                    reference::add_layer_norm(&mut hidden_ref, &delta, &w, 1e-5, &mut want_add);
                    add_layer_norm_with(isa, &mut hidden, &delta, &w, 1e-5, &mut got);
                    assert_eq!(hidden, hidden_ref, "add_layer_norm residual {what}");
                    assert_close(&got, &want_add, 1e-5, &format!("add_layer_norm {what}"));
                }
            }
        }
    }
}

#[test]
fn layer_norm_backward_matches_reference() {
    let mut rng = Rng::new(3);
    for isa in Isa::available() {
        for &d in &[1, 7, 16, 31, 33, 256, 257, 768] {
            for &rows in &[1, 5, 300] {
                for &(offset, spread) in &[(0.0, 1.0), (50.0, 3.0), (0.0, 1e-2)] {
                    let x: Vec<f32> = rng.vec(rows * d, spread).iter().map(|v| v + offset).collect();
                    let w: Vec<f32> = rng.vec(d, 1.0).iter().map(|v| 1.0 + 0.5 * v).collect();
                    let dy = rng.vec(rows * d, 1.0);
                    let what = format!("{isa:?} d={d} rows={rows} offset={offset} spread={spread}");
                    let (want_dx, want_dw) = reference::layer_norm_backward(&x, &w, 1e-5, &dy);
                    let mut dx = vec![f32::NAN; x.len()];
                    let dw = layer_norm_backward_with(isa, &x, &w, 1e-5, &dy, &mut dx);
                    // dx scales with 1/std: compare relative to its size.
                    let scale = want_dx.iter().fold(1f32, |m, v| m.max(v.abs()));
                    assert_close(&dx, &want_dx, 2e-5 * scale, &format!("layer_norm_backward dx {what}"));
                    let scale = want_dw.iter().fold(1f32, |m, v| m.max(v.abs()));
                    assert_close(&dw, &want_dw, 2e-5 * scale, &format!("layer_norm_backward dw {what}"));
                }
            }
        }
    }
}

#[test]
fn layer_norm_of_a_constant_row_is_zero() {
    for isa in Isa::available() {
        let x = vec![3.25f32; 2 * 768];
        let mut out = vec![f32::NAN; x.len()];
        layer_norm_with(isa, &x, &vec![1.0; 768], 1e-5, &mut out);
        assert!(out.iter().all(|&v| v == 0.0), "{isa:?}");
    }
}

#[test]
fn layer_norm_parallel_path_matches_reference() {
    // Big enough for several rayon tasks.
    let mut rng = Rng::new(3);
    let (rows, d) = (2048, 768);
    let x = rng.vec(rows * d, 2.0);
    let w = rng.vec(d, 1.0);
    let mut want = vec![0f32; x.len()];
    reference::layer_norm(&x, &w, 1e-5, &mut want);
    let mut got = vec![0f32; x.len()];
    crate::layer_norm(&x, &w, 1e-5, &mut got);
    assert_close(&got, &want, 1e-5, "parallel layer_norm");
}

#[test]
fn rope_matches_f64_rotation() {
    let mut rng = Rng::new(4);
    for &(theta, d) in &[(10_000.0f32, 64usize), (160_000.0, 64), (10_000.0, 20), (10_000.0, 2)] {
        let table = RopeTable::new(theta, d, 8192);
        assert_eq!((table.head_dim(), table.max_positions()), (d, 8192));
        let half = d / 2;
        for &p in &[0usize, 1, 2, 63, 64, 511, 4097, 8191] {
            let x = rng.vec(d, 1.0);
            let mut got = x.clone();
            table.rotate(&mut got, p);
            let (cos, sin) = table.row(p);
            for k in 0..half {
                // The spec: f32 inv_freq and f32 angle, then exact trig of that angle.
                let inv_freq = 1.0 / theta.powf((2 * k) as f32 / d as f32);
                let angle = (p as f32 * inv_freq) as f64;
                let (c, s) = (angle.cos(), angle.sin());
                assert!((cos[k] as f64 - c).abs() < 1e-6 && (sin[k] as f64 - s).abs() < 1e-6);
                let (a, b) = (x[k] as f64, x[k + half] as f64);
                assert!((got[k] as f64 - (a * c - b * s)).abs() < 1e-5, "d={d} p={p} k={k}");
                assert!((got[k + half] as f64 - (b * c + a * s)).abs() < 1e-5, "d={d} p={p} k={k}");
            }
        }
        // Position 0 is the identity.
        let x = rng.vec(d, 1.0);
        let mut y = x.clone();
        table.rotate(&mut y, 0);
        assert_eq!(x, y);
    }
}

fn cu_of(lens: &[usize]) -> Vec<u32> {
    let mut cu = vec![0u32];
    for &n in lens {
        cu.push(cu.last().unwrap() + n as u32);
    }
    cu
}

#[allow(clippy::too_many_arguments)]
fn check_attention(
    rng: &mut Rng,
    isa: Isa,
    lens: &[usize],
    heads: usize,
    d: usize,
    window: Option<usize>,
    scale: f32,
    theta: f32,
) {
    let cu = cu_of(lens);
    let total = *cu.last().unwrap() as usize;
    let rope = RopeTable::new(theta, d, lens.iter().copied().max().unwrap_or(0).max(1));
    let qkv = rng.vec(total * 3 * heads * d, scale);
    let mut want = vec![0f32; total * heads * d];
    reference::attention_varlen(&qkv, &cu, heads, d, &rope, window, &mut want);
    let mut got = vec![f32::NAN; total * heads * d];
    attention_varlen_with(isa, &qkv, &cu, heads, d, &rope, window, &mut got);
    let what = format!("{isa:?} lens={lens:?} heads={heads} d={d} window={window:?} scale={scale}");
    if std::env::var_os("KERNELS_TEST_VERBOSE").is_some() {
        let big = want.iter().fold(0f32, |a, &b| a.max(b.abs()));
        println!("{what}: max err {:e}, max |out| {big}", max_abs_diff(&got, &want));
    }
    // 1e-5 absolute for unit-scale data; peaky data (scores of std ~4, outputs ~6) carries
    // the f32 rounding of its large logits, so there the bound is relative to the output.
    let big = want.iter().fold(0f32, |a, &b| a.max(b.abs()));
    let tol = if scale > 1.0 { 1e-5 * big.max(1.0) } else { 1e-5 };
    assert_close(&got, &want, tol, &what);
}

#[test]
fn attention_matches_reference() {
    let mut rng = Rng::new(5);
    for isa in Isa::available() {
        for &window in &[Some(2), Some(64), None] {
            let w = window.unwrap_or(64);
            let lens = [1, 2, w, w + 1, 2 * w + 1, 300];
            for &(heads, d) in &[(1, 16), (3, 20), (12, 64), (2, 64)] {
                check_attention(&mut rng, isa, &lens, heads, d, window, 1.0, 10_000.0);
            }
            // Peaky softmax (large logits) and the global theta.
            check_attention(&mut rng, isa, &lens, 2, 64, window, 2.0, 160_000.0);
        }
    }
}

#[test]
fn attention_odd_shapes() {
    let mut rng = Rng::new(6);
    for isa in Isa::available() {
        // Head dims that are not multiples of 16, including the smallest; empty sequences.
        for &d in &[2, 8, 30, 48, 66, 80, 128] {
            check_attention(&mut rng, isa, &[5, 0, 37, 70], 2, d, Some(3), 1.0, 10_000.0);
            check_attention(&mut rng, isa, &[5, 0, 37, 70], 2, d, None, 1.0, 10_000.0);
        }
        // Windows wider than the sequence, windows of 0 and 1, window boundaries off panels.
        for &w in &[0, 1, 15, 16, 17, 31, 33, 100, 299, 300, 1000] {
            check_attention(&mut rng, isa, &[300, 17, 1], 2, 64, Some(w), 1.0, 10_000.0);
        }
        // Several query blocks in parallel, one long sequence.
        check_attention(&mut rng, isa, &[1000], 2, 64, None, 1.0, 160_000.0);
        check_attention(&mut rng, isa, &[1000], 2, 64, Some(64), 1.0, 10_000.0);
    }
}

#[test]
fn attention_window_covering_sequence_is_global() {
    let mut rng = Rng::new(7);
    let lens = [40, 129];
    let cu = cu_of(&lens);
    let (heads, d) = (3, 64);
    let rope = RopeTable::new(10_000.0, d, 256);
    let qkv = rng.vec(169 * 3 * heads * d, 1.0);
    let mut global = vec![0f32; 169 * heads * d];
    let mut wide = vec![0f32; 169 * heads * d];
    crate::attention_varlen(&qkv, &cu, heads, d, &rope, None, &mut global);
    crate::attention_varlen(&qkv, &cu, heads, d, &rope, Some(128), &mut wide);
    assert_close(&wide, &global, 1e-6, "window >= len - 1 equals global");
}

#[test]
fn attention_sequences_are_independent() {
    // A sequence's output must not change when other sequences are packed around it.
    let mut rng = Rng::new(8);
    let (heads, d) = (2, 64);
    let rope = RopeTable::new(10_000.0, d, 512);
    let width = 3 * heads * d;
    let a = rng.vec(100 * width, 1.0);
    let b = rng.vec(77 * width, 1.0);
    for window in [Some(64), None] {
        let mut alone = vec![0f32; 100 * heads * d];
        crate::attention_varlen(&a, &[0, 100], heads, d, &rope, window, &mut alone);
        let packed: Vec<f32> = b.iter().chain(&a).copied().collect();
        let mut both = vec![0f32; 177 * heads * d];
        crate::attention_varlen(&packed, &[0, 77, 177], heads, d, &rope, window, &mut both);
        assert_eq!(&both[77 * heads * d..], &alone[..], "window {window:?}");
    }
}

#[test]
#[ignore = "diagnostic: prints where the GELU error peaks"]
fn gelu_error_profile() {
    for isa in Isa::available() {
        let xs: Vec<f32> = (0..=400_000).map(|i| -20.0 + 40.0 * i as f32 / 400_000.0).collect();
        let mut x = xs.clone();
        x.extend(std::iter::repeat_n(1.0, xs.len()));
        let mut got = vec![0f32; xs.len()];
        geglu_with(isa, &x, xs.len(), &mut got);
        let mut buckets = [0f64; 40];
        for (&u, &g) in xs.iter().zip(&got) {
            let want = reference::gelu_erf(u as f64);
            if want.abs() > 1e-30 {
                let b = ((u + 20.0) as usize).min(39);
                buckets[b] = buckets[b].max((g as f64 - want).abs() / want.abs());
            }
        }
        println!("{isa:?}: {:?}", buckets.iter().map(|e| format!("{e:.1e}")).collect::<Vec<_>>());
    }
}
