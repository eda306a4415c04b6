//! NEON kernels (aarch64), with `sdot` from the dot-product extension.
//!
//! Quantized tiles take each weight row's blocks once per chunk of 4 tokens: the
//! weights (Q4 nibbles unpacked to signed bytes) stay in registers while `sdot`
//! multiplies them with each token's int8 activations.

use super::generic::{generic_quantizers_for, small_kernels_for};
use super::matmul::{TileScratch, TILE_ROWS};
use super::{QMatrix, QuantActs};
use crate::quant::{get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ8_0, GgmlType, QK_K};
use std::arch::aarch64::*;

/// Proof that the CPU has NEON and the dot-product extension.
#[derive(Clone, Copy, Debug)]
pub struct Neon(());

impl Neon {
    pub fn new() -> Option<Self> {
        let ok = std::arch::is_aarch64_feature_detected!("neon") && std::arch::is_aarch64_feature_detected!("dotprod");
        ok.then_some(Neon(()))
    }

    /// Computes a tile of the matmul (all weight types).
    // w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tile(self, w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &mut TileScratch) -> bool {
        super::matmul::assert_tile_invariants(w, r0, nr, acts, x, t, ts);
        // Safety: the token proves the CPU features; the invariants the kernel's pointer
        // arithmetic relies on were asserted just above.
        unsafe { tile_impl(w, r0, nr, acts, x, t, ts) };
        true
    }
}

small_kernels_for!(Neon, "neon,dotprod");
generic_quantizers_for!(Neon, "neon,dotprod");

/// acc + per-lane sums of 4 i8 x i8 products (`sdot`).
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // Safety (of the asm): register-only instruction; the caller's target features
    // include dotprod.
    std::arch::asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

/// Int32 dot of 32 weights (two registers) with 32 activation bytes at `x`.
#[inline(always)]
unsafe fn dot32(w: [int8x16_t; 2], x: *const i8) -> i32 {
    let acc = sdot(vdupq_n_s32(0), w[0], vld1q_s8(x));
    let acc = sdot(acc, w[1], vld1q_s8(x.add(16)));
    vaddvq_s32(acc)
}

/// Q4 nibbles of 16 bytes: (low nibbles, high nibbles) as signed bytes minus `offset`.
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8, offset: i8) -> [int8x16_t; 2] {
    let v = vld1q_u8(p);
    let lo = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F)));
    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
    [vsubq_s8(lo, vdupq_n_s8(offset)), vsubq_s8(hi, vdupq_n_s8(offset))]
}

// w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_impl(w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &mut TileScratch) {
    const NT: usize = 4;
    let out = &mut ts.out;
    match w.ty {
        GgmlType::F32 | GgmlType::F16 => super::generic::float_tile(w, r0, nr, x, t, &mut ts.row_f32, out),
        GgmlType::Q8_0 => {
            for r in 0..nr {
                let row: &[BlockQ8_0] = w.row_blocks(r0 + r);
                for tok0 in (0..t).step_by(NT) {
                    let nt = NT.min(t - tok0);
                    let mut acc = [0.0f32; NT];
                    for (b, blk) in row.iter().enumerate() {
                        let p = blk.qs.as_ptr();
                        let wv = [vld1q_s8(p), vld1q_s8(p.add(16))];
                        let dw = blk.d.to_f32();
                        for n in 0..nt {
                            let dot = dot32(wv, acts.qs(tok0 + n)[32 * b..].as_ptr());
                            acc[n] += dw * acts.d(tok0 + n)[b] * dot as f32;
                        }
                    }
                    for n in 0..nt {
                        out[(tok0 + n) * TILE_ROWS + r] = acc[n];
                    }
                }
            }
        }
        GgmlType::Q4_0 => {
            for r in 0..nr {
                let row: &[BlockQ4_0] = w.row_blocks(r0 + r);
                for tok0 in (0..t).step_by(NT) {
                    let nt = NT.min(t - tok0);
                    let mut acc = [0.0f32; NT];
                    for (b, blk) in row.iter().enumerate() {
                        // Low nibbles are elements 0..16, high 16..32; stored offset by 8.
                        let wv = unpack_nibbles(blk.qs.as_ptr(), 8);
                        let dw = blk.d.to_f32();
                        for n in 0..nt {
                            let dot = dot32(wv, acts.qs(tok0 + n)[32 * b..].as_ptr());
                            acc[n] += dw * acts.d(tok0 + n)[b] * dot as f32;
                        }
                    }
                    for n in 0..nt {
                        out[(tok0 + n) * TILE_ROWS + r] = acc[n];
                    }
                }
            }
        }
        GgmlType::Q4K => {
            for r in 0..nr {
                let row: &[BlockQ4K] = w.row_blocks(r0 + r);
                for tok0 in (0..t).step_by(NT) {
                    let nt = NT.min(t - tok0);
                    let mut acc = [0.0f32; NT];
                    for (sb, blk) in row.iter().enumerate() {
                        let mut scaled = [0i32; NT];
                        let mut mins = [0i32; NT];
                        for c in 0..4 {
                            // Bytes 32c..32c+32: sub-block 2c in the low nibbles, 2c+1 in the high.
                            let a = unpack_nibbles(blk.qs.as_ptr().add(32 * c), 0);
                            let b = unpack_nibbles(blk.qs.as_ptr().add(32 * c + 16), 0);
                            let (sc_lo, m_lo) = get_scale_min_k4(2 * c, &blk.scales);
                            let (sc_hi, m_hi) = get_scale_min_k4(2 * c + 1, &blk.scales);
                            for n in 0..nt {
                                let xq = acts.qs(tok0 + n)[QK_K * sb + 64 * c..].as_ptr();
                                let sums = acts.sums(tok0 + n);
                                scaled[n] += sc_lo as i32 * dot32([a[0], b[0]], xq) + sc_hi as i32 * dot32([a[1], b[1]], xq.add(32));
                                mins[n] += m_lo as i32 * sums[8 * sb + 2 * c] + m_hi as i32 * sums[8 * sb + 2 * c + 1];
                            }
                        }
                        let (d, dmin) = (blk.d.to_f32(), blk.dmin.to_f32());
                        for n in 0..nt {
                            acc[n] += acts.d(tok0 + n)[sb] * (d * scaled[n] as f32 - dmin * mins[n] as f32);
                        }
                    }
                    for n in 0..nt {
                        out[(tok0 + n) * TILE_ROWS + r] = acc[n];
                    }
                }
            }
        }
    }
}
