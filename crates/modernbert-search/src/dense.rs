//! Exact dense search: dot products of a query with every row of a row-major `f32` matrix (a
//! memory-mapped file), AVX2 + FMA where the CPU has them (checked at run time), split over
//! threads for large matrices.

use rayon::prelude::*;

/// Rows per parallel task; small matrices are scanned on the calling thread.
const ROWS_PER_TASK: usize = 4096;

/// `scores[i] = matrix[i] · query` for the `matrix.len() / query.len()` rows.
pub fn scores(matrix: &[f32], query: &[f32]) -> Vec<f32> {
    let dim = query.len();
    if dim == 0 {
        return Vec::new();
    }
    let rows = matrix.len() / dim;
    let mut out = vec![0f32; rows];
    let matrix = &matrix[..rows * dim];
    if rows <= ROWS_PER_TASK {
        scan(matrix, query, &mut out);
    } else {
        out.par_chunks_mut(ROWS_PER_TASK)
            .zip(matrix.par_chunks(ROWS_PER_TASK * dim))
            .for_each(|(o, m)| scan(m, query, o));
    }
    out
}

fn scan(matrix: &[f32], query: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were checked just above.
            unsafe { scan_avx2(matrix, query, out) };
            return;
        }
    }
    for (row, o) in matrix.chunks_exact(query.len()).zip(out.iter_mut()) {
        *o = dot_portable(row, query);
    }
}

/// Eight independent accumulators so the compiler can vectorise without reassociating.
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.split_at(a.len() / 8 * 8);
    let (cb, rb) = b.split_at(ca.len());
    for (x, y) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_avx2(matrix: &[f32], query: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let dim = query.len();
    let main = dim / 32 * 32;
    for (row, o) in matrix.chunks_exact(dim).zip(out.iter_mut()) {
        let (r, q) = (row.as_ptr(), query.as_ptr());
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut a2 = _mm256_setzero_ps();
        let mut a3 = _mm256_setzero_ps();
        let mut i = 0;
        while i < main {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(i)), _mm256_loadu_ps(q.add(i)), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(i + 8)), _mm256_loadu_ps(q.add(i + 8)), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(i + 16)), _mm256_loadu_ps(q.add(i + 16)), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(i + 24)), _mm256_loadu_ps(q.add(i + 24)), a3);
            i += 32;
        }
        while i + 8 <= dim {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(i)), _mm256_loadu_ps(q.add(i)), a0);
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        let hi = _mm256_extractf128_ps(s, 1);
        let lo = _mm256_castps256_ps128(s);
        let s4 = _mm_add_ps(hi, lo);
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
        let mut total = _mm_cvtss_f32(s1);
        while i < dim {
            total += row[i] * query[i];
            i += 1;
        }
        *o = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_equals_scalar() {
        for dim in [1usize, 7, 8, 33, 256, 300] {
            let rows = 9000;
            let m: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
            let q: Vec<f32> = (0..dim).map(|i| ((i * 31 % 17) as f32 / 8.0) - 1.0).collect();
            let s = scores(&m, &q);
            assert_eq!(s.len(), rows);
            for (r, got) in s.iter().enumerate() {
                let want: f64 = (0..dim).map(|j| m[r * dim + j] as f64 * q[j] as f64).sum();
                assert!((*got as f64 - want).abs() < 1e-3 * (1.0 + want.abs()), "dim {dim} row {r}: {got} vs {want}");
            }
        }
        assert!(scores(&[], &[]).is_empty());
    }
}
