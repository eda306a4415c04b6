//! AVX2 microkernels on packed panels (see [`super::packed`]): the laptop path.
//!
//! A 64-byte panel vector (16 rows x 4 weights) is two 256-bit halves of 8 rows each, so
//! a pair of panels is 4 groups of 8 rows, processed one after the other against `NT`
//! tokens (16 vector registers hold 2 x NT accumulators, the weights and a broadcast).
//! Without `vpdpbusd`, a 4-weight step is `vpmaddubsw` (u8 x i8 -> i16 pairs) then
//! `vpmaddwd` with ones (-> i32):
//! - Q4 nibbles (0..15) cannot saturate `vpmaddubsw` (15 x 128 x 2 < 2^15) and 8 steps
//!   of them still fit in i16 (8 x 3840 < 2^15), so a block is summed in i16 and widened
//!   once;
//! - Q8_0 (stored as `w + 128`) would saturate: the weight goes back to signed, its sign
//!   moves onto the activation (`vpsignb`) and its magnitude (<= 128) is the unsigned
//!   operand, each step widened to i32 at once; the packed offset correction is then not
//!   needed (the block starts from 0).

use super::gemm::PairBlock;
use super::packed::PANEL_ROWS;
use super::prefetch_lines;
use crate::quant::GgmlType;
use std::arch::x86_64::*;

/// Tokens per register block.
pub(crate) const TOKENS_PER_BLOCK: usize = 4;

/// Adds to `tile` the dot products of the two panels of `b` with the `nt` tokens of its
/// token block, over units `b.u0..b.u1`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `b` must point at valid packed panels and one
/// token block of activation panels (as built by [`super::gemm`]), `1 <= nt <= b.stride`,
/// `nt <= TOKENS_PER_BLOCK`, and `tile` must hold `nt x 32` f32 values.
// panels: 2 x [16, cols] packed, activations: [nt, cols] -> tile: [nt, 32] (+=)
pub(crate) unsafe fn pair_block(b: &PairBlock, nt: usize, tile: *mut f32) {
    for group in 0..4 {
        // Rows 8 group..8 group + 8 of the pair: panel group / 2, half group % 2.
        let panel = b.panel0.add(b.panel_bytes * (group / 2));
        let half = 32 * (group % 2);
        let tile = tile.add(8 * group);
        // The first of a panel's two groups reads its lines from memory: it prefetches.
        let prefetch = group % 2 == 0 && b.prefetch_units > 0;
        match (b.ty, nt) {
            (GgmlType::Q8_0, 1) => q8_0_rows::<1>(b, panel, half, prefetch, tile),
            (GgmlType::Q8_0, 2) => q8_0_rows::<2>(b, panel, half, prefetch, tile),
            (GgmlType::Q8_0, 3) => q8_0_rows::<3>(b, panel, half, prefetch, tile),
            (GgmlType::Q8_0, 4) => q8_0_rows::<4>(b, panel, half, prefetch, tile),
            (GgmlType::Q4_0, 1) => q4_0_rows::<1>(b, panel, half, prefetch, tile),
            (GgmlType::Q4_0, 2) => q4_0_rows::<2>(b, panel, half, prefetch, tile),
            (GgmlType::Q4_0, 3) => q4_0_rows::<3>(b, panel, half, prefetch, tile),
            (GgmlType::Q4_0, 4) => q4_0_rows::<4>(b, panel, half, prefetch, tile),
            (GgmlType::Q4K, 1) => q4_k_rows::<1>(b, panel, half, prefetch, tile),
            (GgmlType::Q4K, 2) => q4_k_rows::<2>(b, panel, half, prefetch, tile),
            (GgmlType::Q4K, 3) => q4_k_rows::<3>(b, panel, half, prefetch, tile),
            (GgmlType::Q4K, 4) => q4_k_rows::<4>(b, panel, half, prefetch, tile),
            (ty, n) => unreachable!("AVX2 packed kernel for {ty} x {n} tokens"),
        }
    }
}

/// Tile row of token `n` (stride: a pair's 32 rows), this group's 8 values.
#[inline(always)]
unsafe fn tile_at(tile: *mut f32, n: usize) -> *mut f32 {
    tile.add(n * 2 * PANEL_ROWS)
}

#[inline(always)]
unsafe fn nibbles(p: *const u8, high: bool) -> __m256i {
    let v = _mm256_loadu_si256(p.cast());
    let v = if high { _mm256_srli_epi16::<4>(v) } else { v };
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// 8 f16 scales of this group's rows (`half` = 0 or 32 bytes into the 64-byte vector).
#[inline(always)]
unsafe fn scales8(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_rows<const NT: usize>(b: &PairBlock, panel: *const u8, half: usize, prefetch: bool, tile: *mut f32) {
    let st = b.stride;
    let mut acc: [__m256; NT] = std::array::from_fn(|n| _mm256_loadu_ps(tile_at(tile, n)));
    let flip = _mm256_set1_epi8(-128);
    for u in b.u0..b.u1 {
        if prefetch {
            prefetch_lines::<_MM_HINT_T0>(panel.wrapping_add(b.prefetch_shift + 512 * (u + b.prefetch_units)), 512);
        }
        let mut ai = [_mm256_setzero_si256(); NT];
        for k in 0..8 {
            // Back to signed, then |w| (<= 128, unsigned) with sign(x, w) on the activation.
            let w = _mm256_xor_si256(_mm256_loadu_si256(panel.add(512 * u + 64 * k + half).cast()), flip);
            let wabs = _mm256_sign_epi8(w, w);
            for n in 0..NT {
                let x = _mm256_set1_epi32(*b.xq.add((8 * u + k) * st + n));
                let pairs = _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(x, w));
                ai[n] = _mm256_add_epi32(ai[n], _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
            }
        }
        let s = scales8(panel.add(b.weights_len + 32 * u + half / 2));
        for n in 0..NT {
            let d = _mm256_set1_ps(*b.xd.add(u * st + n));
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai[n]), _mm256_mul_ps(s, d), acc[n]);
        }
    }
    for (n, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(tile_at(tile, n), *a);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_rows<const NT: usize>(b: &PairBlock, panel: *const u8, half: usize, prefetch: bool, tile: *mut f32) {
    let st = b.stride;
    let mut acc: [__m256; NT] = std::array::from_fn(|n| _mm256_loadu_ps(tile_at(tile, n)));
    for u in b.u0..b.u1 {
        if prefetch {
            prefetch_lines::<_MM_HINT_T0>(panel.wrapping_add(b.prefetch_shift + 256 * (u + b.prefetch_units)), 256);
        }
        let mut sum16 = [_mm256_setzero_si256(); NT];
        for k in 0..8 {
            let w = nibbles(panel.add(256 * u + 64 * (k % 4) + half), k >= 4);
            for n in 0..NT {
                let x = _mm256_set1_epi32(*b.xq.add((8 * u + k) * st + n));
                sum16[n] = _mm256_add_epi16(sum16[n], _mm256_maddubs_epi16(w, x));
            }
        }
        let s = scales8(panel.add(b.weights_len + 32 * u + half / 2));
        for n in 0..NT {
            // Nibbles hold q + 8: the block starts from -8 sum(x) (the `corr` row).
            let ai = _mm256_add_epi32(_mm256_madd_epi16(sum16[n], _mm256_set1_epi16(1)), _mm256_set1_epi32(*b.corr.add(u * st + n)));
            let d = _mm256_set1_ps(*b.xd.add(u * st + n));
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai), _mm256_mul_ps(s, d), acc[n]);
        }
    }
    for (n, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(tile_at(tile, n), *a);
    }
}

/// Q4_K in the reference's order, as the AVX-512 kernel: per super-block
/// `xd (d sum_j sc_j dot_j - dmin sum_j m_j sum(x_j))`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_rows<const NT: usize>(b: &PairBlock, panel: *const u8, half: usize, prefetch: bool, tile: *mut f32) {
    let st = b.stride;
    let rows8 = |p: *const u8| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast())));
    for u in b.u0..b.u1 {
        let sc_base = panel.add(b.weights_len + 320 * u);
        let mut scaled = [_mm256_setzero_ps(); NT];
        let mut mins = [_mm256_setzero_ps(); NT];
        for j in 0..8 {
            if prefetch {
                // A quarter unit at a time, as the AVX-512 kernel.
                prefetch_lines::<_MM_HINT_T0>(panel.wrapping_add(b.prefetch_shift + 2048 * u + 256 * (j + b.prefetch_units)), 256);
            }
            let mut sum16 = [_mm256_setzero_si256(); NT];
            for k in 0..8 {
                let w = nibbles(panel.add(2048 * u + 512 * (j / 2) + 64 * k + half), j % 2 == 1);
                for n in 0..NT {
                    let x = _mm256_set1_epi32(*b.xq.add((64 * u + 8 * j + k) * st + n));
                    sum16[n] = _mm256_add_epi16(sum16[n], _mm256_maddubs_epi16(w, x));
                }
            }
            let sc = rows8(sc_base.add(64 + 32 * j + half / 4));
            let mn = rows8(sc_base.add(64 + 32 * j + 16 + half / 4));
            for n in 0..NT {
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16[n], _mm256_set1_epi16(1)));
                scaled[n] = _mm256_fmadd_ps(dot, sc, scaled[n]);
                mins[n] = _mm256_fmadd_ps(mn, _mm256_set1_ps(*b.sums.add((8 * u + j) * st + n)), mins[n]);
            }
        }
        let d = scales8(sc_base.add(half / 2));
        let dmin = scales8(sc_base.add(32 + half / 2));
        for n in 0..NT {
            // Unfused, as the scalar reference rounds: the two terms nearly cancel.
            let v = _mm256_sub_ps(_mm256_mul_ps(d, scaled[n]), _mm256_mul_ps(dmin, mins[n]));
            let p = tile_at(tile, n);
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(_mm256_set1_ps(*b.xd.add(u * st + n)), v)));
        }
    }
}
