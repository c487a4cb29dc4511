//! `c (+)= a · b` on strided f32 operands: the GEMMs of the training passes (linear layers,
//! attention), through the `gemm` crate single-threaded inside a parallel task or on the rayon
//! pool, and [`product`], which can also run the big ones in bf16.

use crate::Bf16Linear;

/// A matrix operand: data, row stride, column stride (elements).
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
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

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rs: self.cs, cs: self.rs }
    }

    /// Element `(r, c)`.
    #[inline(always)]
    pub(crate) fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }

    pub(crate) fn check(&self, r: usize, c: usize) {
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

/// The arithmetic of a training step's big products (its linear layers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arithmetic {
    /// `f32` operands and sums (PyTorch's default).
    #[default]
    F32,
    /// Operands rounded to bf16 (nearest even), products summed in `f32` (AVX512-BF16
    /// `vdpbf16ps`): what `torch.autocast("cpu", torch.bfloat16)` does to a linear layer, except
    /// that the result stays `f32`.
    Bf16,
}

/// `c[m×n] = a[m×k] · b[k×n]` on the rayon pool, `c` row-major and contiguous, in `arithmetic`.
pub fn product(arithmetic: Arithmetic, c: &mut [f32], a: Mat, b: Mat, m: usize, n: usize, k: usize) {
    match arithmetic {
        Arithmetic::F32 => matmul_par(c, n, false, a, b, m, n, k),
        Arithmetic::Bf16 => {
            if m == 0 || n == 0 {
                return;
            }
            assert_eq!(c.len(), m * n, "product destination is not [{m}, {n}]");
            a.check(m, k);
            b.check(k, n);
            if k == 0 {
                c.fill(0.0);
                return;
            }
            // `b` packed as the weight `W = bᵀ` ([n, k]), `a` read as the activations.
            Bf16Linear::from_mat(b.t(), n, k).forward_mat(a, m, c);
        }
    }
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
