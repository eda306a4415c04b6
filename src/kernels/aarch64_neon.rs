//! NEON kernels (aarch64), with `sdot` from the dot-product extension.

use super::generic::small_kernels_for;
use super::matmul::TileScratch;
use super::{QMatrix, QuantActs};

/// Proof that the CPU has NEON and the dot-product extension.
#[derive(Clone, Copy, Debug)]
pub struct Neon(());

impl Neon {
    pub fn new() -> Option<Self> {
        let ok = std::arch::is_aarch64_feature_detected!("neon") && std::arch::is_aarch64_feature_detected!("dotprod");
        ok.then_some(Neon(()))
    }

    /// Computes a tile of the matmul; `false` if this weight type has no NEON kernel.
    // w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tile(self, _w: &QMatrix, _r0: usize, _nr: usize, _acts: &QuantActs, _x: &[f32], _t: usize, _ts: &mut TileScratch) -> bool {
        false
    }
}

small_kernels_for!(Neon, "neon,dotprod");
