//! GeGLU: `gelu_erf(u) * g` for input rows `[u | g]`.

/// `x` holds rows of width `2 * inter` laid out `[u | g]`; `out` holds rows of width `inter`
/// with `out = gelu_erf(u) * g` (exact erf GELU, first half activated, second half is the gate).
pub fn geglu(x: &[f32], inter: usize, out: &mut [f32]) {
    assert_eq!(x.len(), 2 * out.len());
    for (xr, or) in x.chunks_exact(2 * inter).zip(out.chunks_exact_mut(inter)) {
        let (u, g) = xr.split_at(inter);
        for ((o, &u), &g) in or.iter_mut().zip(u).zip(g) {
            let u = u as f64;
            *o = (0.5 * u * (1.0 + erf(u / std::f64::consts::SQRT_2))) as f32 * g;
        }
    }
}

fn erf(x: f64) -> f64 {
    // Placeholder accurate series/continued fraction; to be replaced by the fast kernel.
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { y } else { -y }
}
