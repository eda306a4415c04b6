//! AVX-512 kernels (x86-64), with `vpdpbusd` where AVX-512 VNNI is present.
//!
//! Quantized matmul tiles repack 16 weight rows so that one 512-bit vector holds 4
//! consecutive weights of each of the 16 rows, as unsigned bytes. One `vpdpbusd`
//! against 4 broadcast activation bytes then advances 16 output rows at once, the int32
//! sums of a 32-weight block stay in one vector, and the per-block scaling (convert,
//! scale, FMA) is paid once per 16 rows instead of once per row. The repacked tile
//! (576 bytes per 32 columns) is built once and reused for every token.
//!
//! Signed Q8_0 weights are stored offset by +128 and Q4_0 nibbles by +8 (their raw
//! value); the offset times the block's activation sum is subtracted by starting the
//! accumulator at `-offset * sum(x)`.

use super::generic::small_kernels_for;
use super::matmul::{TileScratch, TILE_ROWS};
use super::{QMatrix, QuantActs};
use crate::quant::{get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ8_0, GgmlType, QK_K};
use std::arch::x86_64::*;

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
    pub(crate) fn tile(self, vnni: bool, w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &mut TileScratch) -> bool {
        super::matmul::assert_tile_invariants(w, r0, nr, acts, x, t, ts);
        let vnni = vnni && self.has_vnni();
        match w.ty {
            GgmlType::F32 | GgmlType::F16 => {
                // Safety: the token proves AVX-512 F/BW/VL/DQ, AVX2, FMA and F16C; the tile
                // invariants were asserted above.
                unsafe { float_tile(w, r0, nr, x, t, &mut ts.row_f32, &mut ts.out) };
                true
            }
            // Without VNNI, maddubs would saturate on Q8_0's offset bytes (up to 255):
            // leave Q8_0 to the AVX2 kernel.
            GgmlType::Q8_0 if !vnni => false,
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4K => {
                // Safety: as above (invariants asserted at entry); VNNI instructions run only
                // when `vnni` was checked.
                unsafe {
                    repack_tile(w, r0, nr, &mut ts.repack, &mut ts.pad);
                    // The buffer may be longer, left from a wider matrix.
                    let packed = &ts.repack[..w.cols / 32 * group_bytes(w.ty)];
                    if vnni {
                        quant_tile_vnni(w.ty, packed, acts, t, &mut ts.out);
                    } else {
                        quant_tile_emulated(w.ty, packed, acts, t, &mut ts.out);
                    }
                }
                true
            }
        }
    }
}

small_kernels_for!(Avx512, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c");

const _: () = assert!(TILE_ROWS == 16, "the AVX-512 tiles hold one row per i32 lane");

/// Bytes of one repacked group of 32 columns: 8 weight vectors and a scale vector, plus
/// a min vector for Q4_K.
fn group_bytes(ty: GgmlType) -> usize {
    if ty == GgmlType::Q4K {
        10 * 64
    } else {
        9 * 64
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn float_tile(w: &QMatrix, r0: usize, nr: usize, x: &[f32], t: usize, row_buf: &mut Vec<f32>, out: &mut [f32]) {
    super::generic::float_tile(w, r0, nr, x, t, row_buf, out)
}

/// Transposes 16 rows x 4 dwords (`src[r]` points at 16 bytes of row r) into 4 vectors,
/// vector m holding dword m of rows 0..15 in order.
#[inline(always)]
unsafe fn transpose_16x4(src: [*const u8; 16]) -> [__m512i; 4] {
    // z[g] lane l = 16 bytes of row 4l + g, so that the in-lane 4x4 transpose below
    // leaves rows in order.
    let mut z = [_mm512_setzero_si512(); 4];
    for (g, zg) in z.iter_mut().enumerate() {
        let mut v = _mm512_castsi128_si512(_mm_loadu_si128(src[g].cast()));
        v = _mm512_inserti32x4::<1>(v, _mm_loadu_si128(src[4 + g].cast()));
        v = _mm512_inserti32x4::<2>(v, _mm_loadu_si128(src[8 + g].cast()));
        v = _mm512_inserti32x4::<3>(v, _mm_loadu_si128(src[12 + g].cast()));
        *zg = v;
    }
    let t0 = _mm512_unpacklo_epi32(z[0], z[1]);
    let t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    let t2 = _mm512_unpacklo_epi32(z[2], z[3]);
    let t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    [
        _mm512_unpacklo_epi64(t0, t2),
        _mm512_unpackhi_epi64(t0, t2),
        _mm512_unpacklo_epi64(t1, t3),
        _mm512_unpackhi_epi64(t1, t3),
    ]
}

/// Repacks rows r0..r0+nr of `w` (a short last tile is padded with copies of row r0,
/// whose results are ignored) into `dst`: per 32 columns, 8 vectors of unsigned weight
/// bytes (vector k holds columns 4k..4k+4 of each row), 16 f32 scales, and for Q4_K
/// 16 f32 mins. Blocks are addressed as `base + r * stride + offset` on raw pointers:
/// slices of 16 rows cost more in bounds checks and spilled registers than the repack.
// w: [rows, cols] -> dst: [cols / 32, group_bytes]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn repack_tile(w: &QMatrix, r0: usize, nr: usize, dst: &mut Vec<u8>, pad: &mut Vec<u8>) {
    let groups = w.cols / 32;
    let gb = group_bytes(w.ty);
    // Every byte is overwritten below: grow without clearing.
    if dst.len() < groups * gb {
        dst.resize(groups * gb, 0);
    }
    let stride = w.ty.row_bytes(w.cols).expect("validated in QMatrix::new");
    let base = if nr == TILE_ROWS {
        w.data[r0 * stride..(r0 + TILE_ROWS) * stride].as_ptr()
    } else {
        pad.clear();
        for r in 0..TILE_ROWS {
            let src = r0 + if r < nr { r } else { 0 };
            pad.extend_from_slice(&w.data[src * stride..(src + 1) * stride]);
        }
        pad.as_ptr()
    };
    // Safety (for all pointer arithmetic below): `base` points at 16 rows of `stride`
    // bytes, and every offset stays inside row r's blocks.
    let at = |blk: *const u8, r: usize, offset: usize| blk.add(r * stride + offset);
    let f16_bits = |p: *const u8| p.cast::<u16>().read_unaligned();
    let out = dst.as_mut_ptr();
    let low = _mm512_set1_epi8(0x0F);
    let flip = _mm512_set1_epi8(-128);
    match w.ty {
        GgmlType::Q8_0 => {
            for b in 0..groups {
                let g = out.add(b * gb);
                let blk = base.add(b * size_of::<BlockQ8_0>());
                if b % 2 == 0 {
                    prefetch_rows(std::array::from_fn(|r| at(blk, r, 0)));
                }
                for half in 0..2 {
                    let src = std::array::from_fn(|r| at(blk, r, 2 + 16 * half));
                    for (m, v) in transpose_16x4(src).into_iter().enumerate() {
                        // w + 128 as an unsigned byte.
                        _mm512_storeu_si512(g.add(64 * (4 * half + m)).cast(), _mm512_xor_si512(v, flip));
                    }
                }
                store_f16x16(g.add(8 * 64), std::array::from_fn(|r| f16_bits(at(blk, r, 0))));
            }
        }
        GgmlType::Q4_0 => {
            for b in 0..groups {
                let g = out.add(b * gb);
                let blk = base.add(b * size_of::<BlockQ4_0>());
                if b % 4 == 0 {
                    prefetch_rows(std::array::from_fn(|r| at(blk, r, 0)));
                }
                let src = std::array::from_fn(|r| at(blk, r, 2));
                for (m, v) in transpose_16x4(src).into_iter().enumerate() {
                    // Low nibbles are columns 4m..4m+4, high nibbles 16+4m..16+4m+4.
                    _mm512_storeu_si512(g.add(64 * m).cast(), _mm512_and_si512(v, low));
                    _mm512_storeu_si512(g.add(64 * (4 + m)).cast(), _mm512_and_si512(_mm512_srli_epi16::<4>(v), low));
                }
                store_f16x16(g.add(8 * 64), std::array::from_fn(|r| f16_bits(at(blk, r, 0))));
            }
        }
        GgmlType::Q4K => {
            // Field offsets in a BlockQ4K: d 0, dmin 2, scales 4..16, qs 16..144.
            for sb in 0..w.cols / QK_K {
                let blk = base.add(sb * size_of::<BlockQ4K>());
                prefetch_rows(std::array::from_fn(|r| at(blk, r, 0)));
                prefetch_rows(std::array::from_fn(|r| at(blk, r, 64)));
                for c in 0..4 {
                    // Bytes 32c..32c+32 hold sub-block 2c (low nibbles) and 2c+1 (high).
                    let (glo, ghi) = (out.add((8 * sb + 2 * c) * gb), out.add((8 * sb + 2 * c + 1) * gb));
                    for half in 0..2 {
                        let src = std::array::from_fn(|r| at(blk, r, 16 + 32 * c + 16 * half));
                        for (m, v) in transpose_16x4(src).into_iter().enumerate() {
                            let k = 4 * half + m;
                            _mm512_storeu_si512(glo.add(64 * k).cast(), _mm512_and_si512(v, low));
                            _mm512_storeu_si512(ghi.add(64 * k).cast(), _mm512_and_si512(_mm512_srli_epi16::<4>(v), low));
                        }
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(std::array::from_fn::<u16, 16, _>(|r| f16_bits(at(blk, r, 0))).as_ptr().cast()));
                let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(std::array::from_fn::<u16, 16, _>(|r| f16_bits(at(blk, r, 2))).as_ptr().cast()));
                let scales: [[u8; 12]; 16] = std::array::from_fn(|r| at(blk, r, 4).cast::<[u8; 12]>().read_unaligned());
                for j in 0..8 {
                    let g = out.add((8 * sb + j) * gb);
                    let mut sc = [0i32; 16];
                    let mut mn = [0i32; 16];
                    for r in 0..16 {
                        let (s, m) = get_scale_min_k4(j, &scales[r]);
                        (sc[r], mn[r]) = (s as i32, m as i32);
                    }
                    let sc = _mm512_cvtepi32_ps(_mm512_loadu_si512(sc.as_ptr().cast()));
                    let mn = _mm512_cvtepi32_ps(_mm512_loadu_si512(mn.as_ptr().cast()));
                    _mm512_storeu_ps(g.add(8 * 64).cast(), _mm512_mul_ps(d, sc));
                    _mm512_storeu_ps(g.add(9 * 64).cast(), _mm512_mul_ps(dmin, mn));
                }
            }
        }
        GgmlType::F32 | GgmlType::F16 => unreachable!("float weights are not repacked"),
    }
}

/// Bytes ahead of the current block that the repack prefetches in each of its 16 row
/// streams (the hardware prefetcher does not keep up with 16 strided streams).
const PREFETCH_AHEAD: usize = 512;

/// Prefetches `PREFETCH_AHEAD` bytes past `p` in each of the 16 rows.
#[inline(always)]
unsafe fn prefetch_rows(p: [*const u8; 16]) {
    for r in p {
        // A prefetch never faults, so running past the end of the row is harmless.
        _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(PREFETCH_AHEAD).cast());
    }
}

/// Converts 16 f16 bit patterns to f32 and stores them (unaligned) at `dst`.
#[inline(always)]
unsafe fn store_f16x16(dst: *mut u8, bits: [u16; 16]) {
    let v = _mm512_cvtph_ps(_mm256_loadu_si256(bits.as_ptr().cast()));
    _mm512_storeu_ps(dst.cast(), v);
}

/// The int8 dot-product step: acc + sum of 4 u8 x i8 products per i32 lane.
trait DotStep {
    unsafe fn step(acc: __m512i, w_u8: __m512i, x_i8: __m512i) -> __m512i;
}

/// `vpdpbusd`: exact for all byte values.
struct Vnni;
impl DotStep for Vnni {
    #[inline(always)]
    unsafe fn step(acc: __m512i, w_u8: __m512i, x_i8: __m512i) -> __m512i {
        _mm512_dpbusd_epi32(acc, w_u8, x_i8)
    }
}

/// `vpmaddubsw` + `vpmaddwd`: exact while w_u8 <= 128 (pair sums stay below 2^15),
/// so only for 4-bit weights.
struct Emulated;
impl DotStep for Emulated {
    #[inline(always)]
    unsafe fn step(acc: __m512i, w_u8: __m512i, x_i8: __m512i) -> __m512i {
        let pairs = _mm512_maddubs_epi16(w_u8, x_i8);
        _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)))
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
unsafe fn quant_tile_vnni(ty: GgmlType, packed: &[u8], acts: &QuantActs, t: usize, out: &mut [f32]) {
    quant_tile::<Vnni>(ty, packed, acts, t, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn quant_tile_emulated(ty: GgmlType, packed: &[u8], acts: &QuantActs, t: usize, out: &mut [f32]) {
    quant_tile::<Emulated>(ty, packed, acts, t, out)
}

/// All tokens against one repacked tile, `NT` tokens at a time so that each weight
/// vector loaded is used `NT` times.
// packed: [cols / 32, group_bytes], acts: [t, cols], out: [t, 16]
#[inline(always)]
unsafe fn quant_tile<D: DotStep>(ty: GgmlType, packed: &[u8], acts: &QuantActs, t: usize, out: &mut [f32]) {
    let mut tok = 0;
    while tok + 8 <= t {
        token_chunk::<D, 8>(ty, packed, acts, tok, out);
        tok += 8;
    }
    while tok + 4 <= t {
        token_chunk::<D, 4>(ty, packed, acts, tok, out);
        tok += 4;
    }
    while tok < t {
        token_chunk::<D, 1>(ty, packed, acts, tok, out);
        tok += 1;
    }
}

/// Int32 dot products of group `grp` (columns 32 grp..32 grp + 32) of the repacked tile
/// at `g` with `NT` tokens, starting from `init`. (A plain function, not a closure:
/// closures do not inherit `#[target_feature]`, and the intrinsics would not inline.)
#[inline(always)]
unsafe fn group_dots<D: DotStep, const NT: usize>(xq: &[*const i32; NT], g: *const u8, grp: usize, init: [__m512i; NT]) -> [__m512i; NT] {
    let mut ai = init;
    for k in 0..8 {
        let wv = _mm512_loadu_si512(g.add(64 * k).cast());
        for n in 0..NT {
            // 4 activation bytes (columns 32 grp + 4k..), broadcast to every row.
            let xv = _mm512_set1_epi32(xq[n].add(8 * grp + k).read_unaligned());
            ai[n] = D::step(ai[n], wv, xv);
        }
    }
    ai
}

/// `NT` tokens against the repacked tile. The loop over the 8 weight vectors of a group
/// is outside the loop over tokens: each vector is loaded once and feeds `NT`
/// independent `vpdpbusd` chains, which hides the instruction's latency.
#[inline(always)]
unsafe fn token_chunk<D: DotStep, const NT: usize>(ty: GgmlType, packed: &[u8], acts: &QuantActs, tok0: usize, out: &mut [f32]) {
    let gb = group_bytes(ty);
    let groups = packed.len() / gb;
    let base = packed.as_ptr();
    let xq: [*const i32; NT] = std::array::from_fn(|n| acts.qs(tok0 + n).as_ptr().cast::<i32>());
    let xd: [*const f32; NT] = std::array::from_fn(|n| acts.d(tok0 + n).as_ptr());
    let xs: [*const i32; NT] = std::array::from_fn(|n| acts.sums(tok0 + n).as_ptr());
    let xsf: [*const f32; NT] = std::array::from_fn(|n| acts.sums_f32(tok0 + n).as_ptr());
    let mut acc = [_mm512_setzero_ps(); NT];
    if ty == GgmlType::Q4K {
        for sb in 0..groups / 8 {
            let mut acc_sb = [_mm512_setzero_ps(); NT];
            for j in 0..8 {
                let grp = 8 * sb + j;
                let g = base.add(grp * gb);
                let ai = group_dots::<D, NT>(&xq, g, grp, [_mm512_setzero_si512(); NT]);
                let scale = _mm512_loadu_ps(g.add(8 * 64).cast());
                let min = _mm512_loadu_ps(g.add(9 * 64).cast());
                for n in 0..NT {
                    acc_sb[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[n]), scale, acc_sb[n]);
                    acc_sb[n] = _mm512_fnmadd_ps(min, _mm512_set1_ps(*xsf[n].add(grp)), acc_sb[n]);
                }
            }
            for n in 0..NT {
                acc[n] = _mm512_fmadd_ps(acc_sb[n], _mm512_set1_ps(*xd[n].add(sb)), acc[n]);
            }
        }
    } else {
        let offset = if ty == GgmlType::Q8_0 { 128 } else { 8 };
        for grp in 0..groups {
            let g = base.add(grp * gb);
            let init = std::array::from_fn(|n| _mm512_set1_epi32(-offset * *xs[n].add(grp)));
            let ai = group_dots::<D, NT>(&xq, g, grp, init);
            let scale = _mm512_loadu_ps(g.add(8 * 64).cast());
            for n in 0..NT {
                let s = _mm512_mul_ps(scale, _mm512_set1_ps(*xd[n].add(grp)));
                acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[n]), s, acc[n]);
            }
        }
    }
    for n in 0..NT {
        _mm512_storeu_ps(out.as_mut_ptr().add((tok0 + n) * TILE_ROWS), acc[n]);
    }
}

impl Avx512 {
    /// [`super::scalar::quantize_row_q8_0`] with explicit AVX-512, bit for bit.
    // x: [cols] -> qs: [cols], d: [cols / 32], sums: [cols / 32]
    pub fn quantize_row_q8_0(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
        let blocks = super::checked_row_blocks(x, 32, qs, d, sums);
        // Safety: the token proves the features; the check bounds every access.
        unsafe { quantize_q8_0(x.as_ptr(), blocks, qs.as_mut_ptr(), d, sums) }
    }

    /// [`super::scalar::quantize_row_q8_k`] with explicit AVX-512, bit for bit.
    // x: [cols] -> qs: [cols], d: [cols / 256], sums: [cols / 32]
    pub fn quantize_row_q8_k(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
        let blocks = super::checked_row_blocks(x, QK_K, qs, d, sums);
        // Safety: as above.
        unsafe { quantize_q8_k(x, blocks, qs.as_mut_ptr(), d, sums) }
    }
}

/// Rounds `v` to the nearest integer (ties to even) as i32, NaN to 0 like Rust's `as`.
#[inline(always)]
unsafe fn round_to_i32(v: __m512) -> __m512i {
    let q = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    _mm512_mask_mov_epi32(q, nan, _mm512_setzero_si512())
}

/// Lane `j` of the result is `op` folded over the 16 lanes of `v[j]`: 16 horizontal
/// reductions in 45 instructions (a transposing butterfly) instead of ~8 dependent
/// shuffles and ops each. `op` must be associative and commutative on the lanes (max,
/// integer add through casts).
///
/// # Safety
/// The CPU has AVX-512F (callers are `#[target_feature]` functions that require it).
#[inline(always)]
unsafe fn reduce_16_lanes(v: [__m512; 16], op: impl Fn(__m512, __m512) -> __m512) -> __m512 {
    // After each level a vector holds partial results of 2, 4, 8, 16 owners.
    let pairs: [__m512; 8] = std::array::from_fn(|i| op(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1])));
    let quads: [__m512; 4] = std::array::from_fn(|i| {
        let (a, b) = (_mm512_castps_pd(pairs[2 * i]), _mm512_castps_pd(pairs[2 * i + 1]));
        op(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)))
    });
    // Each 128-bit chunk of quads[q] now holds owners 4q..4q+4; fold the chunks.
    let halves: [__m512; 2] = std::array::from_fn(|i| {
        let (a, b) = (quads[2 * i], quads[2 * i + 1]);
        op(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b))
    });
    let (a, b) = (halves[0], halves[1]);
    op(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b))
}

/// Lane-wise i32 addition of two vectors held as f32 bits.
///
/// # Safety
/// The CPU has AVX-512F.
#[inline(always)]
unsafe fn add_epi32_as_ps(a: __m512, b: __m512) -> __m512 {
    _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)))
}

/// Quantizes the 32 values at `x` with `inv` into `qs`; returns their 16 pairwise sums.
///
/// # Safety
/// The CPU has AVX-512F/BW; `x` holds 32 values and `qs` 32 bytes.
#[inline(always)]
unsafe fn quantize_block_32(x: *const f32, inv: __m512, qs: *mut i8) -> __m512i {
    let qlo = round_to_i32(_mm512_mul_ps(_mm512_loadu_ps(x), inv));
    let qhi = round_to_i32(_mm512_mul_ps(_mm512_loadu_ps(x.add(16)), inv));
    _mm_storeu_si128(qs.cast(), _mm512_cvtepi32_epi8(qlo));
    _mm_storeu_si128(qs.add(16).cast(), _mm512_cvtepi32_epi8(qhi));
    _mm512_add_epi32(qlo, qhi)
}

/// Lane-wise largest magnitudes of the two halves of the 32 values at `x`, NaN lanes
/// skipped as `f32::max` in the scalar fold skips them (`max_ps` returns its second
/// operand when either is NaN).
///
/// # Safety
/// The CPU has AVX-512F; `x` holds 32 values.
#[inline(always)]
unsafe fn abs_max_32(x: *const f32) -> __m512 {
    let lo = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x)), _mm512_setzero_ps());
    _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x.add(16))), lo)
}

/// Sixteen 32-value blocks at a time: one pass for the blocks' maxima, one to quantize,
/// with the per-block reductions done 16 at once ([`reduce_16_lanes`]); remaining
/// blocks one by one.
///
/// # Safety
/// The CPU has the enabled features; `x` holds `32 * blocks` values, `qs` as many, and
/// `d` and `sums` at least `blocks` each.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn quantize_q8_0(x: *const f32, blocks: usize, qs: *mut i8, d: &mut [f32], sums: &mut [i32]) {
    let (zero, k127) = (_mm512_setzero_ps(), _mm512_set1_ps(127.0));
    for g in 0..blocks / 16 {
        let (x, qs) = (x.add(512 * g), qs.add(512 * g));
        let amax = reduce_16_lanes(
            std::array::from_fn(|j| abs_max_32(x.add(32 * j))),
            |a, b| _mm512_max_ps(a, b),
        );
        let scale = _mm512_div_ps(amax, k127);
        // As the scalar code: a scale that is 0 (even from a tiny nonzero maximum) quantizes to 0.
        let inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(scale, zero), k127, amax);
        let mut inv_lanes = [0f32; 16];
        _mm512_storeu_ps(inv_lanes.as_mut_ptr(), inv);
        _mm512_storeu_ps(d[16 * g..16 * g + 16].as_mut_ptr(), scale);
        let block_sums: [__m512; 16] =
            std::array::from_fn(|j| _mm512_castsi512_ps(quantize_block_32(x.add(32 * j), _mm512_set1_ps(inv_lanes[j]), qs.add(32 * j))));
        let total = reduce_16_lanes(block_sums, |a, b| add_epi32_as_ps(a, b));
        _mm512_storeu_si512(sums[16 * g..16 * g + 16].as_mut_ptr().cast(), _mm512_castps_si512(total));
    }
    for b in blocks / 16 * 16..blocks {
        let amax = _mm512_reduce_max_ps(abs_max_32(x.add(32 * b)));
        let scale = amax / 127.0;
        let inv = _mm512_set1_ps(if scale != 0.0 { 127.0 / amax } else { 0.0 });
        d[b] = scale;
        sums[b] = _mm512_reduce_add_epi32(quantize_block_32(x.add(32 * b), inv, qs.add(32 * b)));
    }
}

/// Blocks of 256 with their 8 sums of 32, two blocks' sums reduced at once
/// ([`reduce_16_lanes`]).
///
/// # Safety
/// The CPU has the enabled features; `qs` holds `256 * blocks` values, `x` at least as
/// many, `d` `blocks` and `sums` `8 * blocks`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn quantize_q8_k(x: &[f32], blocks: usize, qs: *mut i8, d: &mut [f32], sums: &mut [i32]) {
    let top = _mm512_set1_epi32(127);
    for pair in 0..blocks.div_ceil(2) {
        let mut block_sums = [_mm512_setzero_ps(); 16];
        let in_pair = (blocks - 2 * pair).min(2);
        for half in 0..in_pair {
            let b = 2 * pair + half;
            let xb = x[QK_K * b..QK_K * (b + 1)].as_ptr();
            // Four independent max chains (one would wait on the max latency 16 times).
            let mut vmax = [_mm512_setzero_ps(); 4];
            for c in 0..QK_K / 16 {
                // A NaN lane keeps the running maximum (`max_ps` returns its second operand
                // on NaN), as `f32::max` in the scalar fold.
                vmax[c % 4] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb.add(16 * c))), vmax[c % 4]);
            }
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(vmax[0], vmax[1]), _mm512_max_ps(vmax[2], vmax[3])));
            if amax == 0.0 {
                std::ptr::write_bytes(qs.add(QK_K * b), 0, QK_K);
                d[b] = 0.0;
                continue; // its sums stay 0
            }
            // The value of largest magnitude (the first one, on ties) sets the sign.
            let vamax = _mm512_set1_ps(amax);
            let mut max = 0.0;
            for c in 0..QK_K / 16 {
                let hits = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(_mm512_loadu_ps(xb.add(16 * c))), vamax);
                if hits != 0 {
                    max = *xb.add(16 * c + hits.trailing_zeros() as usize);
                    break;
                }
            }
            let iscale = -127.0 / max;
            let vs = _mm512_set1_ps(iscale);
            for j in 0..8 {
                let mut sum = _mm512_setzero_si512();
                for h in 0..2 {
                    let off = 32 * j + 16 * h;
                    let q = _mm512_min_epi32(round_to_i32(_mm512_mul_ps(vs, _mm512_loadu_ps(xb.add(off)))), top);
                    _mm_storeu_si128(qs.add(QK_K * b + off).cast(), _mm512_cvtepi32_epi8(q));
                    sum = _mm512_add_epi32(sum, q);
                }
                block_sums[8 * half + j] = _mm512_castsi512_ps(sum);
            }
            d[b] = 1.0 / iscale;
        }
        let total = _mm512_castps_si512(reduce_16_lanes(block_sums, |a, b| add_epi32_as_ps(a, b)));
        let out = sums[16 * pair..16 * pair + 8 * in_pair].as_mut_ptr();
        // Safety (of the masked store): `out` has 8 * in_pair valid i32, the mask's lanes.
        _mm512_mask_storeu_epi32(out.cast(), if in_pair == 2 { 0xffff } else { 0x00ff }, total);
    }
}
