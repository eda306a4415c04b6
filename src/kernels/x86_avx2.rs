//! AVX2 + FMA + F16C kernels (x86-64). Integer dot products use `maddubs` with the
//! sign moved onto the activation so that no pair sum can saturate.

use super::generic::small_kernels_for;
use super::matmul::TileScratch;
use super::{QMatrix, QuantActs};

/// Proof that the CPU has AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    pub fn new() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        ok.then_some(Avx2(()))
    }

    /// Computes a tile of the matmul; `false` if this weight type has no AVX2 kernel.
    // w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tile(self, _w: &QMatrix, _r0: usize, _nr: usize, _acts: &QuantActs, _x: &[f32], _t: usize, _ts: &mut TileScratch) -> bool {
        false
    }
}

small_kernels_for!(Avx2, "avx2,fma,f16c");
