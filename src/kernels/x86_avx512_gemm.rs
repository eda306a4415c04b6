use super::gemm::PairBlock;
use super::packed::PANEL_ROWS;
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

/// Adds to `tile` the dot products of the two panels of `b` with the `nt` tokens of
/// its token block, over units `b.u0..b.u1`.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/VL/DQ, F16C and VNNI; `b` must point at valid packed
/// panels and at one token block of activation panels (as built by [`super::gemm`]),
/// `1 <= nt <= b.stride`, and `tile` must hold `nt x 32` f32 values.
// panels: 2 x [16, cols] packed, activations: [nt, cols] -> tile: [nt, 32] (+=)
pub(crate) unsafe fn pair_block(b: &PairBlock, nt: usize, tile: *mut f32) {
    match b.ty {
        GgmlType::Q8_0 => dispatch_nt::<Q8_0Kernel>(b, nt, tile),
        GgmlType::Q4_0 => dispatch_nt::<Q4_0Kernel>(b, nt, tile),
        GgmlType::Q4K => dispatch_nt::<Q4KKernel>(b, nt, tile),
        GgmlType::F32 | GgmlType::F16 => unreachable!("float weights are not packed"),
    }
}

trait Kernel {
    /// # Safety: as [`pair_block`], with exactly `NT` tokens.
    unsafe fn run<const NT: usize>(b: &PairBlock, tile: *mut f32);
}

/// Runs the kernel instantiated for exactly `nt` tokens.
#[inline(always)]
unsafe fn dispatch_nt<K: Kernel>(b: &PairBlock, nt: usize, tile: *mut f32) {
    match nt {
        1 => K::run::<1>(b, tile),
        2 => K::run::<2>(b, tile),
        3 => K::run::<3>(b, tile),
        4 => K::run::<4>(b, tile),
        5 => K::run::<5>(b, tile),
        6 => K::run::<6>(b, tile),
        7 => K::run::<7>(b, tile),
        8 => K::run::<8>(b, tile),
        n => unreachable!("token block of {n}"),
    }
}

#[inline(always)]
unsafe fn load_tile<const NT: usize>(tile: *mut f32) -> [[__m512; NT]; 2] {
    std::array::from_fn(|m| std::array::from_fn(|n| _mm512_loadu_ps(tile.add(n * 2 * PANEL_ROWS + PANEL_ROWS * m))))
}

#[inline(always)]
unsafe fn store_tile<const NT: usize>(tile: *mut f32, acc: &[[__m512; NT]; 2]) {
    for (m, row) in acc.iter().enumerate() {
        for (n, v) in row.iter().enumerate() {
            _mm512_storeu_ps(tile.add(n * 2 * PANEL_ROWS + PANEL_ROWS * m), *v);
        }
    }
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
    /// # Safety: `panel` points at a packed panel with at least `u + 1` units.
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i;
}

struct Q8_0Kernel;
impl BlockWeights for Q8_0Kernel {
    #[inline(always)]
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i {
        _mm512_loadu_si512(panel.add(512 * u + 64 * k).cast())
    }
}
impl Kernel for Q8_0Kernel {
    #[inline(always)]
    unsafe fn run<const NT: usize>(b: &PairBlock, tile: *mut f32) {
        block32::<NT, Self>(b, tile)
    }
}

struct Q4_0Kernel;
impl BlockWeights for Q4_0Kernel {
    #[inline(always)]
    unsafe fn vector(panel: *const u8, u: usize, k: usize) -> __m512i {
        nibbles(panel.add(256 * u + 64 * (k % 4)), k >= 4)
    }
}
impl Kernel for Q4_0Kernel {
    #[inline(always)]
    unsafe fn run<const NT: usize>(b: &PairBlock, tile: *mut f32) {
        block32::<NT, Self>(b, tile)
    }
}

/// Q8_0 and Q4_0 (one f16 scale per 32 weights): per block, int32 sums from the
/// offset correction, then `acc += sum * (w_scale * x_scale)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
unsafe fn block32<const NT: usize, W: BlockWeights>(b: &PairBlock, tile: *mut f32) {
    let w = [b.panel0, b.panel0.add(b.panel_bytes)];
    let st = b.stride;
    let mut acc = load_tile::<NT>(tile);
    for u in b.u0..b.u1 {
        let mut ai: [[__m512i; NT]; 2] = [[_mm512_setzero_si512(); NT]; 2];
        for n in 0..NT {
            ai[0][n] = _mm512_set1_epi32(*b.corr.add(u * st + n));
            ai[1][n] = ai[0][n];
        }
        for k in 0..8 {
            let wv = [W::vector(w[0], u, k), W::vector(w[1], u, k)];
            for n in 0..NT {
                let x = _mm512_set1_epi32(*b.xq.add((8 * u + k) * st + n));
                ai[0][n] = _mm512_dpbusd_epi32(ai[0][n], wv[0], x);
                ai[1][n] = _mm512_dpbusd_epi32(ai[1][n], wv[1], x);
            }
        }
        let s = [0, 1].map(|m| _mm512_cvtph_ps(_mm256_loadu_si256(w[m].add(b.weights_len + 32 * u).cast())));
        for n in 0..NT {
            let d = _mm512_set1_ps(*b.xd.add(u * st + n));
            for m in 0..2 {
                acc[m][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[m][n]), _mm512_mul_ps(s[m], d), acc[m][n]);
            }
        }
    }
    store_tile::<NT>(tile, &acc);
}

struct Q4KKernel;
impl Kernel for Q4KKernel {
    #[inline(always)]
    unsafe fn run<const NT: usize>(b: &PairBlock, tile: *mut f32) {
        q4_k_block::<NT>(b, tile)
    }
}

/// Q4_K, in the reference's order: per super-block, `scaled = sum_j sc_j dot_j` and
/// `mins = sum_j m_j sum(x_j)` (integers, held in f32: exact below 2^24), then
/// `xd (d scaled - dmin mins)` into the tile.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
unsafe fn q4_k_block<const NT: usize>(b: &PairBlock, tile: *mut f32) {
    let w = [b.panel0, b.panel0.add(b.panel_bytes)];
    let st = b.stride;
    let u8s = |p: *const u8| _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast())));
    for u in b.u0..b.u1 {
        let sc_base = [0, 1].map(|m| w[m].add(b.weights_len + 320 * u));
        let mut scaled: [[__m512; NT]; 2] = [[_mm512_setzero_ps(); NT]; 2];
        let mut mins: [[__m512; NT]; 2] = [[_mm512_setzero_ps(); NT]; 2];
        for j in 0..8 {
            let mut ai: [[__m512i; NT]; 2] = [[_mm512_setzero_si512(); NT]; 2];
            for k in 0..8 {
                let wv = [0, 1].map(|m| nibbles(w[m].add(2048 * u + 512 * (j / 2) + 64 * k), j % 2 == 1));
                for n in 0..NT {
                    let x = _mm512_set1_epi32(*b.xq.add((64 * u + 8 * j + k) * st + n));
                    ai[0][n] = _mm512_dpbusd_epi32(ai[0][n], wv[0], x);
                    ai[1][n] = _mm512_dpbusd_epi32(ai[1][n], wv[1], x);
                }
            }
            let sc = [0, 1].map(|m| u8s(sc_base[m].add(64 + 32 * j)));
            let mn = [0, 1].map(|m| u8s(sc_base[m].add(64 + 32 * j + 16)));
            for n in 0..NT {
                let sum = _mm512_set1_ps(*b.sums.add((8 * u + j) * st + n));
                for m in 0..2 {
                    scaled[m][n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[m][n]), sc[m], scaled[m][n]);
                    mins[m][n] = _mm512_fmadd_ps(mn[m], sum, mins[m][n]);
                }
            }
        }
        let d = sc_base.map(|p| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())));
        let dmin = sc_base.map(|p| _mm512_cvtph_ps(_mm256_loadu_si256(p.add(32).cast())));
        let mut acc = load_tile::<NT>(tile);
        for n in 0..NT {
            let xdv = _mm512_set1_ps(*b.xd.add(u * st + n));
            for m in 0..2 {
                // Unfused, as the scalar reference rounds: the two terms nearly cancel.
                let v = _mm512_sub_ps(_mm512_mul_ps(d[m], scaled[m][n]), _mm512_mul_ps(dmin[m], mins[m][n]));
                acc[m][n] = _mm512_add_ps(acc[m][n], _mm512_mul_ps(xdv, v));
            }
        }
        store_tile::<NT>(tile, &acc);
    }
}

