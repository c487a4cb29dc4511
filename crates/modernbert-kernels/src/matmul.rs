//! `c (+)= a · b` on strided f32 operands through the `gemm` crate: the GEMMs of the backward
//! passes (linear layers, attention), single-threaded inside a parallel task or on the rayon pool.

/// A matrix operand: data, row stride, column stride (elements).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major `[_, width]` matrix.
    pub fn rows(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: width, cs: 1 }
    }

    /// The transpose of a row-major `[_, width]` matrix.
    pub fn cols(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: 1, cs: width }
    }

    fn check(&self, r: usize, c: usize) {
        assert!(
            r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len(),
            "matrix operand out of bounds"
        );
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]`, `c` row-major with row stride `c_rs`, single-threaded gemm.
#[allow(clippy::too_many_arguments)]
pub fn matmul(c: &mut [f32], c_rs: usize, accumulate: bool, a: Mat, b: Mat, m: usize, n: usize, k: usize) {
    gemm_with(c, c_rs, accumulate, a, b, (m, n, k), gemm::Parallelism::None)
}

/// [`matmul`] on the rayon pool (for the big token × feature products).
#[allow(clippy::too_many_arguments)]
pub fn matmul_par(c: &mut [f32], c_rs: usize, accumulate: bool, a: Mat, b: Mat, m: usize, n: usize, k: usize) {
    gemm_with(c, c_rs, accumulate, a, b, (m, n, k), gemm::Parallelism::Rayon(rayon::current_num_threads()))
}

fn gemm_with(
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    a: Mat,
    b: Mat,
    (m, n, k): (usize, usize, usize),
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * c_rs + n <= c.len(), "matmul destination out of bounds");
    a.check(m, k);
    b.check(k, n);
    // SAFETY: the asserts above keep every access of gemm inside the three slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
