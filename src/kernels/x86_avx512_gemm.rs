use super::gemm::PairBlock;
use super::prefetch_lines;
use super::packed::{PAIR_ROWS, PANEL_ROWS};
use crate::quant::GgmlType;
use std::arch::x86_64::*;

/// Tokens per register block for each weight type: as many as fit 32 vector registers
/// (2 x NT int32 sums and 2 x NT f32 accumulators, plus weights and scales).
pub(crate) fn tokens_per_block(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4K => 4,
        _ => 6,
    }
}

/// The most tokens a block runs with both panels at once (see [`pair_block`]).
///
/// Q8_0 and Q4_0 blocks of 7-8 tokens with both panels keep their f32 accumulators in
/// the tile: on Intel Cascade Lake that beat one panel at a time (q4_0 at 8 tokens 3.72
/// -> 3.37 ms per layer, q8_0 4.90 -> 4.46), on AMD Zen 4 it loses: there one panel at a
/// time (all accumulators in registers, each broadcast feeding one `vpdpbusd`; broadcasts
/// run beside `vpdpbusd` for free there) is 8-25 % faster in the kernels bench (XL shapes,
/// 8 tokens, 1 thread) and per XL layer at 7-8 tokens q8_0 -7 %, q4_0 -2 % (2 threads;
/// -5 % on 1 thread; medians of 12 interleaved rounds).
fn pair_max_tokens(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4K => 4,
        _ if super::isa::cpu_is_amd() => 6,
        _ => 8,
    }
}

/// Batches of up to this many tokens run as one block (see [`pair_block`]).
pub(crate) const SINGLE_PANEL_MAX_TOKENS: usize = 8;

/// Adds to `tile` the dot products of the two panels of `b` with the `nt` tokens of
/// its token block, over units `b.u0..b.u1`.
///
/// Up to [`pair_max_tokens`] tokens, both panels share each broadcast activation: for
/// Q8_0 and Q4_0 that is every block on Intel (7 or 8 tokens keep their f32
/// accumulators in the tile, see `block32`) and up to 6 tokens on AMD; Q4_K blocks of 5
/// to 8 tokens (small batches, up to [`SINGLE_PANEL_MAX_TOKENS`]) take one panel at a
/// time: both panels would not fit the registers, and one block of 8 tokens unpacks each
/// weight vector once for 8 `vpdpbusd` chains where two blocks of 4 would unpack it
/// twice for 4 chains each.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ, F16C and VNNI; `b` must point at valid packed
/// panels and at one token block of activation panels (as built by [`super::gemm`]),
/// `1 <= nt <= b.stride`, `nt <= SINGLE_PANEL_MAX_TOKENS`, and `tile` must hold
/// `nt x 32` f32 values.
// panels: 2 x [16, cols] packed, activations: [nt, cols] -> tile: [nt, 32] (+=)
pub(crate) unsafe fn pair_block(b: &PairBlock, nt: usize, tile: *mut f32) {
    pair_block_with(b, nt, tile, pair_max_tokens(b.ty))
}

/// [`pair_block`] with both panels at once up to `pair_max` tokens (at most 8; tests
/// run every variant on any CPU).
///
/// # Safety
/// As [`pair_block`].
pub(crate) unsafe fn pair_block_with(b: &PairBlock, nt: usize, tile: *mut f32, pair_max: usize) {
    match b.ty {
        GgmlType::Q8_0 => dispatch_nt::<Q8_0Kernel>(b, nt, tile, pair_max),
        GgmlType::Q4_0 => dispatch_nt::<Q4_0Kernel>(b, nt, tile, pair_max),
        GgmlType::Q4K => dispatch_nt::<Q4KKernel>(b, nt, tile, pair_max.min(4)),
        GgmlType::F32 | GgmlType::F16 => unreachable!("float weights are not packed"),
    }
}

trait Kernel {
    /// Panels `m0..m0 + MP` of the pair against exactly `NT` tokens.
    ///
    /// # Safety: as [`pair_block`], with exactly `NT` tokens and `m0 + MP <= 2`.
    unsafe fn run<const MP: usize, const NT: usize>(b: &PairBlock, m0: usize, tile: *mut f32);
}

/// Runs the kernel instantiated for exactly `nt` tokens: both panels at once up to
/// `pair_max` tokens, one at a time above it.
#[inline(always)]
unsafe fn dispatch_nt<K: Kernel>(b: &PairBlock, nt: usize, tile: *mut f32, pair_max: usize) {
    match nt {
        1 => K::run::<2, 1>(b, 0, tile),
        2 => K::run::<2, 2>(b, 0, tile),
        3 => K::run::<2, 3>(b, 0, tile),
        4 => K::run::<2, 4>(b, 0, tile),
        5 if pair_max >= 5 => K::run::<2, 5>(b, 0, tile),
        6 if pair_max >= 6 => K::run::<2, 6>(b, 0, tile),
        7 if pair_max >= 7 => K::run::<2, 7>(b, 0, tile),
        8 if pair_max >= 8 => K::run::<2, 8>(b, 0, tile),
        5 => (0..2).for_each(|m| K::run::<1, 5>(b, m, tile)),
        6 => (0..2).for_each(|m| K::run::<1, 6>(b, m, tile)),
        7 => (0..2).for_each(|m| K::run::<1, 7>(b, m, tile)),
        8 => (0..2).for_each(|m| K::run::<1, 8>(b, m, tile)),
        n => unreachable!("token block of {n}"),
    }
}

/// Panel `m0 + m` of the pair, token `n`: `tile[n][16 (m0 + m)..][..16]`.
#[inline(always)]
unsafe fn tile_at(tile: *mut f32, m0: usize, m: usize, n: usize) -> *mut f32 {
    tile.add(n * PAIR_ROWS + PANEL_ROWS * (m0 + m))
}

#[inline(always)]
unsafe fn load_tile<const MP: usize, const NT: usize>(tile: *mut f32, m0: usize) -> [[__m512; NT]; MP] {
    std::array::from_fn(|m| std::array::from_fn(|n| _mm512_loadu_ps(tile_at(tile, m0, m, n))))
}

#[inline(always)]
unsafe fn store_tile<const MP: usize, const NT: usize>(tile: *mut f32, m0: usize, acc: &[[__m512; NT]; MP]) {
    for (m, row) in acc.iter().enumerate() {
        for (n, v) in row.iter().enumerate() {
            _mm512_storeu_ps(tile_at(tile, m0, m, n), *v);
        }
    }
}

/// The panels `m0..m0 + MP` of the pair.
#[inline(always)]
unsafe fn panels<const MP: usize>(b: &PairBlock, m0: usize) -> [*const u8; MP] {
    std::array::from_fn(|m| b.panel0.add((m0 + m) * b.panel_bytes))
}

/// Q4 weight vector: low (`high == false`) or high nibbles of the 64 bytes at `p`.
#[inline(always)]
unsafe fn nibbles(p: *const u8, high: bool) -> __m512i {
    let v = _mm512_loadu_si512(p.cast());
    let v = if high { _mm512_srli_epi16::<4>(v) } else { v };
    _mm512_and_si512(v, _mm512_set1_epi8(0x0F))
}

/// Where a 32-column block's 8 weight vectors come from: Q8_0 stores them as bytes,
/// Q4_0 as nibbles (low nibbles for k-steps 0..4, high for 4..8).
trait BlockWeights {
    /// Weight bytes per 32-column unit of a panel.
    const UNIT_BYTES: usize;
    /// # Safety: `panel` points at a packed panel with at least `u + 1` units.
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i;
}

struct Q8_0Kernel;
impl BlockWeights for Q8_0Kernel {
    const UNIT_BYTES: usize = 512;
    #[inline(always)]
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i {
        _mm512_loadu_si512(panel.add(512 * u + 64 * k).cast())
    }
}
impl Kernel for Q8_0Kernel {
    #[inline(always)]
    unsafe fn run<const MP: usize, const NT: usize>(b: &PairBlock, m0: usize, tile: *mut f32) {
        block32::<MP, NT, Self>(b, m0, tile)
    }
}

struct Q4_0Kernel;
impl BlockWeights for Q4_0Kernel {
    const UNIT_BYTES: usize = 256;
    #[inline(always)]
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i {
        nibbles(panel.add(256 * u + 64 * (k % 4)), k >= 4)
    }
}
impl Kernel for Q4_0Kernel {
    #[inline(always)]
    unsafe fn run<const MP: usize, const NT: usize>(b: &PairBlock, m0: usize, tile: *mut f32) {
        block32::<MP, NT, Self>(b, m0, tile)
    }
}

/// Q8_0 and Q4_0 (one f16 scale per 32 weights): per block, int32 sums from the
/// offset correction, then `acc += sum * (w_scale * x_scale)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
unsafe fn block32<const MP: usize, const NT: usize, W: BlockWeights>(b: &PairBlock, m0: usize, tile: *mut f32) {
    let w = panels::<MP>(b, m0);
    let st = b.stride;
    // Up to 12 sums per step the f32 accumulators stay in registers beside the int32
    // sums; above (two panels of 7-8 tokens) they would not fit the 32 registers and
    // live in the tile instead, loaded and stored once per 32-column unit.
    let in_regs = MP * NT <= 12;
    let mut acc = if in_regs { load_tile::<MP, NT>(tile, m0) } else { [[_mm512_setzero_ps(); NT]; MP] };
    for u in b.u0..b.u1 {
        if b.prefetch_units > 0 {
            for p in w {
                prefetch_lines::<_MM_HINT_T0>(p.wrapping_add(b.prefetch_shift + W::UNIT_BYTES * (u + b.prefetch_units)), W::UNIT_BYTES);
            }
        }
        let mut ai: [[__m512i; NT]; MP] = [[_mm512_setzero_si512(); NT]; MP];
        for n in 0..NT {
            let c = _mm512_set1_epi32(*b.corr.add(u * st + n));
            for row in ai.iter_mut() {
                row[n] = c;
            }
        }
        for k in 0..8 {
            let wv: [__m512i; MP] = std::array::from_fn(|m| W::vector(w[m], u, k));
            for n in 0..NT {
                let x = _mm512_set1_epi32(*b.xq.add((8 * u + k) * st + n));
                for m in 0..MP {
                    ai[m][n] = _mm512_dpbusd_epi32(ai[m][n], wv[m], x);
                }
            }
        }
        let s: [__m512; MP] = std::array::from_fn(|m| _mm512_cvtph_ps(_mm256_loadu_si256(w[m].add(b.weights_len + 32 * u).cast())));
        for n in 0..NT {
            let d = _mm512_set1_ps(*b.xd.add(u * st + n));
            for m in 0..MP {
                let scaled = |prev| _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[m][n]), _mm512_mul_ps(s[m], d), prev);
                if in_regs {
                    acc[m][n] = scaled(acc[m][n]);
                } else {
                    let at = tile_at(tile, m0, m, n);
                    _mm512_storeu_ps(at, scaled(_mm512_loadu_ps(at)));
                }
            }
        }
    }
    if in_regs {
        store_tile::<MP, NT>(tile, m0, &acc);
    }
}

struct Q4KKernel;
impl Kernel for Q4KKernel {
    #[inline(always)]
    unsafe fn run<const MP: usize, const NT: usize>(b: &PairBlock, m0: usize, tile: *mut f32) {
        q4_k_block::<MP, NT>(b, m0, tile)
    }
}

/// Q4_K, in the reference's order: per super-block, `scaled = sum_j sc_j dot_j` and
/// `mins = sum_j m_j sum(x_j)` (integers, held in f32: exact below 2^24), then
/// `xd (d scaled - dmin mins)` into the tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
unsafe fn q4_k_block<const MP: usize, const NT: usize>(b: &PairBlock, m0: usize, tile: *mut f32) {
    let w = panels::<MP>(b, m0);
    let st = b.stride;
    let u8s = |p: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())));
    for u in b.u0..b.u1 {
        let sc_base = w.map(|p| p.add(b.weights_len + 320 * u));
        let mut scaled: [[__m512; NT]; MP] = [[_mm512_setzero_ps(); NT]; MP];
        let mut mins: [[__m512; NT]; MP] = [[_mm512_setzero_ps(); NT]; MP];
        for j in 0..8 {
            if b.prefetch_units > 0 {
                // The same distance in bytes as Q4_0's, a quarter unit at a time: a whole
                // 2 KiB unit at once is a burst that stalls the loads of this one.
                for p in w {
                    prefetch_lines::<_MM_HINT_T0>(p.wrapping_add(b.prefetch_shift + 2048 * u + 256 * (j + b.prefetch_units)), 256);
                }
            }
            let mut ai: [[__m512i; NT]; MP] = [[_mm512_setzero_si512(); NT]; MP];
            for k in 0..8 {
                let wv: [__m512i; MP] = std::array::from_fn(|m| nibbles(w[m].add(2048 * u + 512 * (j / 2) + 64 * k), j % 2 == 1));
                for n in 0..NT {
                    let x = _mm512_set1_epi32(*b.xq.add((64 * u + 8 * j + k) * st + n));
                    for m in 0..MP {
                        ai[m][n] = _mm512_dpbusd_epi32(ai[m][n], wv[m], x);
                    }
                }
            }
            let sc = sc_base.map(|p| u8s(p.add(64 + 32 * j)));
            let mn = sc_base.map(|p| u8s(p.add(64 + 32 * j + 16)));
            for n in 0..NT {
                let sum = _mm512_set1_ps(*b.sums.add((8 * u + j) * st + n));
                for m in 0..MP {
                    scaled[m][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[m][n]), sc[m], scaled[m][n]);
                    mins[m][n] = _mm512_fmadd_ps(mn[m], sum, mins[m][n]);
                }
            }
        }
        let d = sc_base.map(|p| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())));
        let dmin = sc_base.map(|p| _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32).cast())));
        let mut acc = load_tile::<MP, NT>(tile, m0);
        for n in 0..NT {
            let xdv = _mm512_set1_ps(*b.xd.add(u * st + n));
            for m in 0..MP {
                // Unfused, as the scalar reference rounds: the two terms nearly cancel.
                let v = _mm512_sub_ps(_mm512_mul_ps(d[m], scaled[m][n]), _mm512_mul_ps(dmin[m], mins[m][n]));
                acc[m][n] = _mm512_add_ps(acc[m][n], _mm512_mul_ps(xdv, v));
            }
        }
        store_tile::<MP, NT>(tile, m0, &acc);
    }
}

/// [`super::gemm::interleave_quads_ref`] with AVX-512 gathers: each output vector takes
/// 16 quads from up to `nt` token rows at once (the scalar loop spends ~3 cycles a quad on
/// address arithmetic and bounds checks).
// rows: [tokens][cols] int8 -> out: [cols / 4][nt] i32
///
/// # Safety
/// The CPU has AVX-512F; `rows` holds `tokens * cols` values, `out` `cols / 4 * nt`,
/// `cols` is a multiple of 4 below 2^26 and `tokens <= nt <= 16`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn interleave_quads(rows: &[i8], cols: usize, tokens: usize, nt: usize, out: &mut [i32]) {
    let quads = cols / 4;
    // Output lane q of vector j (of each group of 16 quads) is element p = 16 j + q:
    // quad p / nt of token p % nt, so the pattern repeats every nt vectors, 64 bytes on.
    let mut offsets = [_mm512_setzero_si512(); 16];
    let mut masks = [0 as __mmask16; 16];
    for j in 0..nt {
        let lane = |q: usize| {
            let p = 16 * j + q;
            ((p % nt) * cols + 4 * (p / nt)) as i32
        };
        let lanes: [i32; 16] = std::array::from_fn(lane);
        offsets[j] = _mm512_loadu_si512(lanes.as_ptr().cast());
        masks[j] = (0..16).filter(|&q| (16 * j + q) % nt < tokens).fold(0, |m, q| m | 1 << q);
    }
    for group in 0..quads / 16 {
        let base = rows.as_ptr().add(64 * group);
        let dst = out.as_mut_ptr().add(16 * nt * group);
        for j in 0..nt {
            // Lanes of padding tokens are masked off: they read nothing and store 0.
            let v = _mm512_mask_i32gather_epi32::<1>(_mm512_setzero_si512(), masks[j], offsets[j], base.cast());
            _mm512_storeu_si512(dst.add(16 * j).cast(), v);
        }
    }
    let done = quads / 16 * 16;
    super::gemm::interleave_quads_ref(&rows[4 * done..], cols, tokens, nt, quads - done, &mut out[done * nt..]);
}
