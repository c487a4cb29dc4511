//! Run-time choice of the instruction set the kernels use.

use std::sync::OnceLock;

/// The instruction set a kernel runs with.
///
/// [`Isa::active`] is what every public kernel uses: the best one this CPU has, unless the
/// environment variable `MODERNBERT_KERNELS_ISA=portable` forces the portable path (handy to
/// test or benchmark the fallback on an AVX-512 machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust that runs on any CPU (auto-vectorized where the compiler manages).
    Portable,
    /// x86-64 AVX-512F intrinsics.
    Avx512,
}

impl Isa {
    /// The instruction set the public kernels use in this process (detected once).
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let forced = std::env::var("MODERNBERT_KERNELS_ISA").unwrap_or_default();
            if forced.eq_ignore_ascii_case("portable") {
                Isa::Portable
            } else if Isa::Avx512.is_available() {
                Isa::Avx512
            } else {
                Isa::Portable
            }
        })
    }

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx512 => avx512_available(),
        }
    }

    /// Every instruction set this CPU can run, the portable one first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx512].into_iter().filter(|isa| isa.is_available()).collect()
    }
}

#[cfg(target_arch = "x86_64")]
fn avx512_available() -> bool {
    is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}
