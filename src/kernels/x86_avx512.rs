//! AVX-512 kernels (x86-64), with `vpdpbusd` where AVX-512 VNNI is present.

use super::generic::small_kernels_for;
use super::matmul::TileScratch;
use super::{QMatrix, QuantActs};

/// Proof that the CPU has AVX-512 F/BW/VL/DQ (and AVX2, FMA, F16C).
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

impl Avx512 {
    pub fn new() -> Option<Self> {
        let ok = super::x86_avx2::Avx2::new().is_some()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq");
        ok.then_some(Avx512(()))
    }

    pub fn has_vnni(self) -> bool {
        is_x86_feature_detected!("avx512vnni")
    }

    /// Computes a tile of the matmul; `false` if there is no AVX-512 kernel for it.
    // w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tile(
        self,
        _vnni: bool,
        _w: &QMatrix,
        _r0: usize,
        _nr: usize,
        _acts: &QuantActs,
        _x: &[f32],
        _t: usize,
        _ts: &mut TileScratch,
    ) -> bool {
        false
    }
}

small_kernels_for!(Avx512, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c");
