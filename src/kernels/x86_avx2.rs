//! AVX2 + FMA + F16C kernels (x86-64). Integer dot products use `maddubs` with the
//! sign moved onto the activation so that no pair sum can saturate.

use super::generic::small_kernels_for;
use super::matmul::{TileScratch, TILE_ROWS};
use super::{QMatrix, QuantActs};
use crate::quant::{get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ8_0, GgmlType, QK_K};
use std::arch::x86_64::*;

/// Proof that the CPU has AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    pub fn new() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        ok.then_some(Avx2(()))
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

small_kernels_for!(Avx2, "avx2,fma,f16c");

/// Tokens per chunk: each weight block is loaded once per chunk.
const NT: usize = 4;

/// Sum of 32 u8 x i8 products as 8 i32 lanes. `u` must be <= 128 per byte so that
/// `maddubs`' i16 pair sums (at most 2 * 128 * 127) cannot saturate.
#[inline(always)]
unsafe fn dot_u8_i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 bytes of Q4 nibbles as 32 unsigned bytes: low nibbles first, then high nibbles.
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let v = _mm_loadu_si128(p.cast());
    let m = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(v, m);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), m);
    _mm256_set_m128i(hi, lo)
}

// w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_impl(w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &mut TileScratch) {
    let out = &mut ts.out;
    if !w.ty.is_quantized() {
        return super::generic::float_tile(w, r0, nr, x, t, &mut ts.row_f32, out);
    }
    for r in 0..nr {
        for tok0 in (0..t).step_by(NT) {
            let nt = NT.min(t - tok0);
            let xq: [*const i8; NT] = std::array::from_fn(|n| acts.qs(tok0 + n.min(nt - 1)).as_ptr());
            let xd: [&[f32]; NT] = std::array::from_fn(|n| acts.d(tok0 + n.min(nt - 1)));
            let xs: [&[i32]; NT] = std::array::from_fn(|n| acts.sums(tok0 + n.min(nt - 1)));
            let sums = match w.ty {
                GgmlType::Q8_0 => row_q8_0(w.row_blocks(r0 + r), xq, xd),
                GgmlType::Q4_0 => row_q4_0(w.row_blocks(r0 + r), xq, xd, xs),
                _ => row_q4_k(w.row_blocks(r0 + r), xq, xd, xs),
            };
            for n in 0..nt {
                out[(tok0 + n) * TILE_ROWS + r] = sums[n];
            }
        }
    }
}

// w: [cols / 32] blocks, x: NT tokens of [cols]
#[inline(always)]
unsafe fn row_q8_0(row: &[BlockQ8_0], xq: [*const i8; NT], xd: [&[f32]; NT]) -> [f32; NT] {
    let mut acc = [_mm256_setzero_ps(); NT];
    for (b, blk) in row.iter().enumerate() {
        let wv = _mm256_loadu_si256(blk.qs.as_ptr().cast());
        // |w| as unsigned (|-128| = 128 fits), its sign moved onto the activation
        // (|x| <= 127, so negation is exact).
        let u = _mm256_abs_epi8(wv);
        let dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.d.to_bits() as i32)));
        for n in 0..NT {
            let xv = _mm256_loadu_si256(xq[n].add(32 * b).cast());
            let dot = dot_u8_i8(u, _mm256_sign_epi8(xv, wv));
            let s = _mm256_set1_ps(dw * xd[n][b]);
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), s, acc[n]);
        }
    }
    std::array::from_fn(|n| hsum(acc[n]))
}

// w: [cols / 32] blocks, x: NT tokens of [cols]
#[inline(always)]
unsafe fn row_q4_0(row: &[BlockQ4_0], xq: [*const i8; NT], xd: [&[f32]; NT], xs: [&[i32]; NT]) -> [f32; NT] {
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut offset = [0.0f32; NT];
    for (b, blk) in row.iter().enumerate() {
        let q = unpack_nibbles(blk.qs.as_ptr());
        let dw = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(blk.d.to_bits() as i32)));
        for n in 0..NT {
            let xv = _mm256_loadu_si256(xq[n].add(32 * b).cast());
            let scale = dw * xd[n][b];
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8_i8(q, xv)), _mm256_set1_ps(scale), acc[n]);
            // Nibbles are stored offset by 8: subtract 8 * sum(x) per block.
            offset[n] += scale * (8 * xs[n][b]) as f32;
        }
    }
    std::array::from_fn(|n| hsum(acc[n]) - offset[n])
}

// w: [cols / 256] blocks, x: NT tokens of [cols]
#[inline(always)]
unsafe fn row_q4_k(row: &[BlockQ4K], xq: [*const i8; NT], xd: [&[f32]; NT], xs: [&[i32]; NT]) -> [f32; NT] {
    let mut acc = [_mm256_setzero_ps(); NT];
    let mut min_acc = [0.0f32; NT];
    let m4 = _mm256_set1_epi8(0x0F);
    for (sb, blk) in row.iter().enumerate() {
        let d = blk.d.to_f32();
        let dmin = blk.dmin.to_f32();
        let mut isum = [_mm256_setzero_si256(); NT];
        let mut mins = [0i32; NT];
        for c in 0..4 {
            let v = _mm256_loadu_si256(blk.qs.as_ptr().add(32 * c).cast());
            let lo = _mm256_and_si256(v, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
            let (sc_lo, m_lo) = get_scale_min_k4(2 * c, &blk.scales);
            let (sc_hi, m_hi) = get_scale_min_k4(2 * c + 1, &blk.scales);
            let (sc_lo, sc_hi) = (_mm256_set1_epi16(sc_lo as i16), _mm256_set1_epi16(sc_hi as i16));
            for n in 0..NT {
                let x = xq[n].add(QK_K * sb + 64 * c);
                let xlo = _mm256_loadu_si256(x.cast());
                let xhi = _mm256_loadu_si256(x.add(32).cast());
                // Nibble x i8 pairs stay below 2 * 15 * 127; the 6-bit scale is applied
                // in the i16 -> i32 step.
                let plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xlo), sc_lo);
                let phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xhi), sc_hi);
                isum[n] = _mm256_add_epi32(isum[n], _mm256_add_epi32(plo, phi));
                mins[n] += m_lo as i32 * xs[n][8 * sb + 2 * c] + m_hi as i32 * xs[n][8 * sb + 2 * c + 1];
            }
        }
        for n in 0..NT {
            let dx = xd[n][sb];
            acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[n]), _mm256_set1_ps(d * dx), acc[n]);
            min_acc[n] += dmin * dx * mins[n] as f32;
        }
    }
    std::array::from_fn(|n| hsum(acc[n]) - min_acc[n])
}

impl Avx2 {
    /// [`super::scalar::quantize_row_q8_0`] with explicit AVX2, bit for bit (the generic
    /// code's rounding loop does not vectorize: ~4 % of a layer at the AVX2 level).
    // x: [cols] -> qs: [cols], d: [cols / 32], sums: [cols / 32]
    pub fn quantize_row_q8_0(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
        let blocks = super::checked_row_blocks(x, 32, qs, d, sums);
        // Safety: the token proves the features; the check bounds every access.
        unsafe { quantize_q8_0(x.as_ptr(), blocks, qs.as_mut_ptr(), d, sums) }
    }

    /// [`super::scalar::quantize_row_q8_k`] with explicit AVX2, bit for bit.
    // x: [cols] -> qs: [cols], d: [cols / 256], sums: [cols / 32]
    pub fn quantize_row_q8_k(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
        let blocks = super::checked_row_blocks(x, QK_K, qs, d, sums);
        // Safety: as above.
        unsafe { quantize_q8_k(x.as_ptr(), blocks, qs.as_mut_ptr(), d, sums) }
    }
}

/// The largest magnitude of the `8 * vectors` values at `x`; NaN lanes keep the running
/// maximum, as `f32::max` in the scalar fold.
///
/// # Safety
/// The CPU has AVX2; `x` holds `8 * vectors` values.
#[inline(always)]
unsafe fn abs_max(x: *const f32, vectors: usize) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let m = (0..vectors).fold(_mm256_setzero_ps(), |m, i| _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x.add(8 * i))), m));
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// `qs[i] = min(round_ties_even(x[i] * inv), 127)` for 32 values (a NaN product becomes 0,
/// as with Rust's `as i32`); returns their sum.
///
/// # Safety
/// The CPU has AVX2; `x` holds 32 values and `qs` 32 bytes.
#[inline(always)]
unsafe fn quantize_32(x: *const f32, inv: __m256, qs: *mut i8) -> i32 {
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(_mm256_loadu_ps(x.add(8 * i)), inv));
        let q = _mm256_and_si256(_mm256_cvtps_epi32(r), _mm256_castps_si256(_mm256_cmp_ps::<_CMP_ORD_Q>(r, r)));
        _mm256_min_epi32(q, _mm256_set1_epi32(127))
    });
    // packs_epi32 then packs_epi16 leave the 4 vectors' quads interleaved by 128-bit lane.
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(qs.cast(), _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

/// One 32-value block at a time, with the scalar code's scale and inverse.
///
/// # Safety
/// The CPU has AVX2; `x` and `qs` hold `32 * blocks` values, `d` and `sums` at least
/// `blocks` each.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_0(x: *const f32, blocks: usize, qs: *mut i8, d: &mut [f32], sums: &mut [i32]) {
    for b in 0..blocks {
        let amax = abs_max(x.add(32 * b), 4);
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 127.0 / amax } else { 0.0 };
        d[b] = scale;
        sums[b] = quantize_32(x.add(32 * b), _mm256_set1_ps(inv), qs.add(32 * b));
    }
}

/// One 256-value block at a time: the first value of the largest magnitude sets the
/// scale (it maps to -127), as in the scalar code.
///
/// # Safety
/// The CPU has AVX2; `x` and `qs` hold `256 * blocks` values, `d` at least `blocks` and
/// `sums` `8 * blocks`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_k(x: *const f32, blocks: usize, qs: *mut i8, d: &mut [f32], sums: &mut [i32]) {
    let sign = _mm256_set1_ps(-0.0);
    for b in 0..blocks {
        let (xb, qb) = (x.add(QK_K * b), qs.add(QK_K * b));
        let amax = abs_max(xb, QK_K / 8);
        if amax == 0.0 {
            std::ptr::write_bytes(qb, 0, QK_K);
            d[b] = 0.0;
            sums[8 * b..8 * b + 8].fill(0);
            continue;
        }
        let target = _mm256_set1_ps(amax);
        let first = (0..QK_K / 8)
            .find_map(|i| {
                let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb.add(8 * i))), target));
                (hits != 0).then(|| 8 * i + hits.trailing_zeros() as usize)
            })
            .expect("the maximum is one of the values");
        let iscale = -127.0 / *xb.add(first);
        for j in 0..8 {
            sums[8 * b + j] = quantize_32(xb.add(32 * j), _mm256_set1_ps(iscale), qb.add(32 * j));
        }
        d[b] = 1.0 / iscale;
    }
}
