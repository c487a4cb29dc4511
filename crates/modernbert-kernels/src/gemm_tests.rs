//! Tests of the packed GEMMs ([`crate::F32Linear`], [`crate::Bf16Linear`], [`crate::Int8Linear`])
//! against scalar references, on every code path this CPU has (the f32 one: the active path).

use crate::gemm_bf16::{pack_rows, Bf16Path};
use crate::gemm_int8::{quantize_row, quantize_row_scalar, Int8Path};
use crate::matmul::Mat;
use crate::tests::Rng;
use crate::{f32_to_bf16_bits, round_to_bf16, Bf16Linear, F32Linear, Int8Linear};

/// (rows, out, in): tails in every dimension, k blocking (in > 256 / 512), parallel sizes.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 16, 2),
    (3, 17, 3),
    (7, 47, 5),
    (8, 48, 31),
    (9, 49, 33),
    (17, 97, 64),
    (13, 15, 257),
    (65, 130, 300),
    (33, 64, 515),
    (200, 100, 1100),
    (130, 768, 768),
];

fn bf16_check(path: Bf16Path, rows: usize, out: usize, inn: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = rng.vec(out * inn, 0.05);
    let x = rng.vec(rows * inn, 1.0);
    let lin = Bf16Linear::new(&w, out, inn);
    assert_eq!((lin.out_features(), lin.in_features()), (out, inn));
    let mut y = vec![f32::NAN; rows * out];
    lin.forward_with(path, Mat::rows(&x, inn), rows, &mut y);
    let mut yr = vec![0f32; rows * out];
    lin.forward_reference(&x, rows, &mut yr);
    for r in 0..rows {
        for o in 0..out {
            // Scale of the f32 rounding error: Σ |x_k w_k| of the rounded operands.
            let mag: f32 = (0..inn).map(|k| (round_to_bf16(x[r * inn + k]) * lin.weight(o, k)).abs()).sum();
            let (a, b) = (y[r * out + o], yr[r * out + o]);
            assert!(
                (a - b).abs() <= 1e-5 * mag + 1e-30,
                "{path:?} {rows}x{out}x{inn} at ({r},{o}): {a} vs {b} (scale {mag})"
            );
        }
    }
}

#[test]
fn f32_matches_f64_reference() {
    // Below and above F32Linear's switch to the gemm crate (64 rows), and several row blocks.
    let more = [(63, 50, 130), (64, 50, 130), (1100, 49, 70)];
    for (i, &(rows, out, inn)) in SHAPES.iter().chain(&more).enumerate() {
        let mut rng = Rng(300 + i as u64);
        let w = rng.vec(out * inn, 0.05);
        let x = rng.vec(rows * inn, 1.0);
        let lin = F32Linear::new(&w, out, inn);
        assert_eq!((lin.out_features(), lin.in_features()), (out, inn));
        let mut y = vec![f32::NAN; rows * out];
        lin.forward(&x, rows, &mut y);
        for r in 0..rows {
            for o in 0..out {
                let (xr, wr) = (&x[r * inn..][..inn], &w[o * inn..][..inn]);
                let exact: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let mag: f64 = xr.iter().zip(wr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                let got = y[r * out + o] as f64;
                assert!(
                    (got - exact).abs() <= 1e-6 * mag + 1e-30,
                    "{rows}x{out}x{inn} at ({r},{o}): {got} vs {exact} (scale {mag})"
                );
            }
        }
    }
}

#[test]
fn bf16_matches_reference() {
    for path in Bf16Path::available() {
        for (i, &(rows, out, inn)) in SHAPES.iter().enumerate() {
            bf16_check(path, rows, out, inn, 100 + i as u64);
        }
    }
}

#[test]
fn bf16_weight_rounding_is_rne() {
    // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1); 1 + 3·2^-8 rounds up to even.
    let w = [1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -2.5e-39, 3.0e38, f32::INFINITY];
    let lin = Bf16Linear::new(&w, 1, 5);
    assert_eq!(lin.weight(0, 0), 1.0);
    assert_eq!(lin.weight(0, 1), 1.0 + 4.0 / 256.0);
    assert_eq!(lin.weight(0, 2).to_bits(), round_to_bf16(-2.5e-39).to_bits());
    assert_eq!(lin.weight(0, 3), round_to_bf16(3.0e38));
    assert_eq!(lin.weight(0, 4), f32::INFINITY);
    assert_eq!(f32_to_bf16_bits(f32::NAN), 0x7FC0);
}

#[test]
fn bf16_activation_packing_matches_scalar() {
    let mut rng = Rng(7);
    let specials = [
        0.0,
        -0.0,
        1.0 + 1.0 / 256.0,
        1.0 + 3.0 / 256.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        -1e-40,
        f32::MIN_POSITIVE,
    ];
    for inn in [1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100] {
        let mut x = rng.vec(3 * inn, 3.0);
        for (i, v) in x.iter_mut().enumerate().step_by(3) {
            *v = specials[i % specials.len()];
        }
        let groups = inn.div_ceil(2);
        let xs = groups + 5;
        let mut want = vec![0u32; 3 * xs];
        pack_rows(Bf16Path::Portable, &x, inn, &mut want, xs);
        for path in Bf16Path::available() {
            let mut got = vec![0xDEAD_BEEFu32; 3 * xs];
            pack_rows(path, &x, inn, &mut got, xs);
            for r in 0..3 {
                assert_eq!(got[r * xs..][..groups], want[r * xs..][..groups], "{path:?} in={inn}");
                // Padding cells past the row are left alone.
                assert!(got[r * xs + groups..][..5].iter().all(|&c| c == 0xDEAD_BEEF));
            }
        }
    }
}

fn int8_check(path: Int8Path, rows: usize, out: usize, inn: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = rng.vec(out * inn, 0.02);
    let mut x = rng.vec(rows * inn, 1.0);
    // Skewed rows (all positive, all negative, constant, zero) besides the symmetric ones.
    for r in 0..rows {
        let row = &mut x[r * inn..][..inn];
        match r % 5 {
            1 => row.iter_mut().for_each(|v| *v = v.abs() + 0.5),
            2 => row.iter_mut().for_each(|v| *v = -v.abs() * 3.0),
            3 => row.iter_mut().for_each(|v| *v = 0.0),
            4 if r % 10 == 4 => row.iter_mut().for_each(|v| *v = 1.25),
            _ => {}
        }
    }
    let lin = Int8Linear::new(&w, out, inn);
    let mut y = vec![f32::NAN; rows * out];
    lin.forward_with(path, &x, rows, &mut y);
    let mut yr = vec![0f32; rows * out];
    lin.forward_reference(&x, rows, &mut yr);
    for i in 0..rows * out {
        assert_eq!(
            y[i].to_bits(),
            yr[i].to_bits(),
            "{path:?} {rows}x{out}x{inn} at ({},{}): {} vs {}",
            i / out,
            i % out,
            y[i],
            yr[i]
        );
    }
}

#[test]
fn int8_matches_reference_bit_for_bit() {
    for path in Int8Path::available() {
        for (i, &(rows, out, inn)) in SHAPES.iter().enumerate() {
            int8_check(path, rows, out, inn, 200 + i as u64);
        }
    }
}

#[test]
fn int8_quantisation_matches_scalar() {
    let mut rng = Rng(9);
    for inn in [1, 3, 4, 5, 15, 16, 17, 64, 65, 130] {
        for scale in [1e-3, 1.0, 40.0] {
            let x = rng.vec(inn, scale);
            let mut want = vec![0u8; inn];
            let (s0, z0) = quantize_row_scalar(&x, &mut want);
            for path in Int8Path::available() {
                let mut got = vec![0u32; inn.div_ceil(4)];
                let (s, z) = quantize_row(path, &x, &mut got);
                assert_eq!((s.to_bits(), z), (s0.to_bits(), z0), "{path:?}");
                let bytes: Vec<u8> = got.iter().flat_map(|c| c.to_le_bytes()).collect();
                assert_eq!(bytes[..inn], want[..], "{path:?} in={inn}");
            }
        }
    }
    // Dequantised values are within half a step of the input.
    let x = rng.vec(1000, 2.0);
    let mut q = vec![0u8; 1000];
    let (s, zp) = quantize_row_scalar(&x, &mut q);
    for (&v, &qv) in x.iter().zip(&q) {
        assert!(((qv as i32 - zp) as f32 * s - v).abs() <= 0.5001 * s);
    }
}

#[test]
fn int8_weight_quantisation() {
    let w = [0.5, -1.27, 0.0, 0.635, 0.0, 0.0, 0.0, 0.0];
    let lin = Int8Linear::new(&w, 2, 4);
    assert!((lin.weight_scale(0) - 0.01).abs() < 1e-8);
    assert_eq!((0..4).map(|k| lin.weight_q(0, k)).collect::<Vec<_>>(), vec![50, -127, 0, 64]);
    assert_eq!(lin.weight_scale(1), 1.0);
    let mut y = [0f32; 2];
    lin.forward(&[1.0, 1.0, 1.0, 1.0], 1, &mut y);
    assert_eq!(y[1], 0.0);
}

/// The row/column split depends on the thread count; the results must not.
#[test]
fn results_do_not_depend_on_threads() {
    let (rows, out, inn) = (301, 200, 700);
    let mut rng = Rng(11);
    let w = rng.vec(out * inn, 0.02);
    let x = rng.vec(rows * inn, 1.0);
    let b = Bf16Linear::new(&w, out, inn);
    let q = Int8Linear::new(&w, out, inn);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut yb = vec![0f32; rows * out];
            let mut yq = vec![0f32; rows * out];
            b.forward(&x, rows, &mut yb);
            q.forward(&x, rows, &mut yq);
            (yb, yq)
        })
    };
    let one = run(1);
    for t in [2, 3, 7] {
        let many = run(t);
        assert!(one.0.iter().zip(&many.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(one.1.iter().zip(&many.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn zero_rows() {
    let w = vec![0.1f32; 6];
    let mut y: Vec<f32> = vec![];
    Bf16Linear::new(&w, 2, 3).forward(&[], 0, &mut y);
    Int8Linear::new(&w, 2, 3).forward(&[], 0, &mut y);
}

/// Error against the f32 product for ModernBERT-like data (x ~ N(0,1), W ~ N(0, 0.02)).
/// `cargo test -p modernbert-kernels --release gemm_accuracy -- --nocapture` prints it.
#[test]
fn gemm_accuracy_vs_f32() {
    let mut rng = Rng(12);
    for (rows, out, inn) in [(256, 768, 768), (256, 768, 1152)] {
        let w = rng.vec(out * inn, 0.02);
        let x = rng.vec(rows * inn, 1.0);
        let mut exact = vec![0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let s: f64 = (0..inn).map(|k| x[r * inn + k] as f64 * w[o * inn + k] as f64).sum();
                exact[r * out + o] = s as f32;
            }
        }
        let ymax = exact.iter().fold(0f32, |a, v| a.max(v.abs()));
        let mut yb = vec![0f32; rows * out];
        let mut yq = vec![0f32; rows * out];
        Bf16Linear::new(&w, out, inn).forward(&x, rows, &mut yb);
        Int8Linear::new(&w, out, inn).forward(&x, rows, &mut yq);
        for (name, y, cos_min) in [("bf16", &yb, 0.9999), ("int8", &yq, 0.999)] {
            let max_abs = y.iter().zip(&exact).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let dot: f64 = y.iter().zip(&exact).map(|(&a, &b)| a as f64 * b as f64).sum();
            let na: f64 = y.iter().map(|&a| a as f64 * a as f64).sum();
            let nb: f64 = exact.iter().map(|&b| b as f64 * b as f64).sum();
            let cos = dot / (na * nb).sqrt();
            let err2: f64 = y.iter().zip(&exact).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
            println!(
                "{name} {rows}x{out}x{inn}: max |err| {max_abs:.2e}, max |err| / max |y| {:.2e}, \
                 rms err / rms y {:.2e}, cosine {cos:.7}",
                max_abs / ymax,
                (err2 / nb).sqrt()
            );
            assert!(cos > cos_min, "{name}: cosine {cos}");
        }
    }
}

/// Microkernel-only throughput on L1-resident data (tuning aid):
/// `cargo test --release -p modernbert-kernels microkernel_rate -- --ignored --nocapture`.
#[test]
#[ignore]
fn microkernel_rate() {
    use crate::gemm_pack::{LANES, MR, NR};
    let kg = 96;
    let xs = 112;
    let x = vec![0x0101_0101u32; MR * xs];
    let w = crate::gemm_pack::AlignedCells::zeroed(kg * NR);
    let mut y = vec![0f32; MR * NR];
    let reps = 200_000;
    for (name, ops) in [("bf16", 2.0), ("int8", 4.0)] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..reps {
                unsafe {
                    if name == "bf16" {
                        crate::gemm_bf16::micro(
                            Bf16Path::active(),
                            MR,
                            3,
                            kg,
                            x.as_ptr(),
                            xs,
                            w.as_slice().as_ptr(),
                            y.as_mut_ptr(),
                            NR,
                            NR,
                            false,
                        );
                    } else {
                        crate::gemm_int8::micro(
                            Int8Path::active(),
                            MR,
                            3,
                            kg,
                            x.as_ptr(),
                            xs,
                            w.as_slice().as_ptr(),
                            y.as_mut_ptr(),
                            NR,
                            NR,
                            false,
                            None,
                        );
                    }
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let work = reps as f64 * (MR * NR * kg) as f64 * ops * 2.0;
        println!("{name}: {:.0} GFLOP/s (kg {kg}, {} lanes)", work / best / 1e9, LANES);
    }
}

#[test]
fn product_matches_f64_reference_in_every_orientation() {
    use crate::matmul::{product, Arithmetic, Mat};
    // (m, n, k): odd k (a padding pair), one row, parallel sizes, a training step's weight gradient.
    for &(m, n, k) in &[(1, 1, 1), (3, 17, 5), (9, 49, 33), (65, 130, 301), (256, 96, 480)] {
        let mut rng = Rng(m as u64 * 31 + k as u64);
        let a = rng.vec(m * k, 1.0);
        let b = rng.vec(k * n, 0.05);
        // The same matrices stored both ways: `a` as [m, k] rows and as the transpose of [k, m].
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for (arith, round) in [(Arithmetic::F32, (|v| v) as fn(f32) -> f32), (Arithmetic::Bf16, round_to_bf16)] {
            for (ao, a_mat) in [("a rows", Mat::rows(&a, k)), ("a cols", Mat::cols(&at, m))] {
                for (bo, b_mat) in [("b rows", Mat::rows(&b, n)), ("b cols", Mat::cols(&bt, k))] {
                    let mut c = vec![f32::NAN; m * n];
                    product(arith, &mut c, a_mat, b_mat, m, n, k);
                    for i in 0..m {
                        for j in 0..n {
                            let terms = (0..k).map(|kk| round(a[i * k + kk]) as f64 * round(b[kk * n + j]) as f64);
                            let (want, mag) = terms.fold((0f64, 0f64), |(s, g), t| (s + t, g + t.abs()));
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-5 * mag + 1e-30,
                                "{arith:?} {ao} {bo} {m}x{n}x{k} at ({i},{j}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bf16_operands_pack_the_same_from_any_storage_order() {
    for &(rows, out, inn) in SHAPES {
        let mut rng = Rng((rows * 1000 + out * 10 + inn) as u64);
        let mut w = rng.vec(out * inn, 0.05);
        w[0] = f32::NAN;
        let x = rng.vec(rows * inn, 1.0);
        let wt: Vec<f32> = (0..inn * out).map(|i| w[(i % out) * inn + i / out]).collect();
        let xt: Vec<f32> = (0..inn * rows).map(|i| x[(i % rows) * inn + i / rows]).collect();
        let want = Bf16Linear::from_mat_with(Bf16Path::Portable, Mat::rows(&w, inn), out, inn);
        let mut y_want = vec![0f32; rows * out];
        want.forward_with(Bf16Path::Portable, Mat::rows(&x, inn), rows, &mut y_want);
        for path in Bf16Path::available() {
            for (order, wm) in [("row-major", Mat::rows(&w, inn)), ("column-major", Mat::cols(&wt, out))] {
                let lin = Bf16Linear::from_mat_with(path, wm, out, inn);
                assert_eq!(lin.w.as_slice(), want.w.as_slice(), "{path:?} {order} W {out}x{inn}");
            }
            // Transposed activations give the same products as row-major ones, bit for bit.
            let (mut y_rows, mut y_cols) = (vec![f32::NAN; rows * out], vec![f32::NAN; rows * out]);
            want.forward_with(path, Mat::rows(&x, inn), rows, &mut y_rows);
            want.forward_with(path, Mat::cols(&xt, rows), rows, &mut y_cols);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y_cols), bits(&y_rows), "{path:?} transposed x {rows}x{out}x{inn}");
            if path == Bf16Path::Portable {
                assert_eq!(bits(&y_rows), bits(&y_want));
            }
        }
    }
}
