//! Q4_K quantizer, vectorized yet bit-identical to [`quantize_row_q4_k_ref`].
//!
//! Why lanes: the reference's scale search sums each 32-value sub-block sequentially in
//! f32, so vectorizing *within* a sub-block would reorder the sums and change results.
//! Instead 16 sub-blocks (two super-blocks) run side by side, one per lane of fixed
//! `[f32; 16]` arrays: every lane does exactly the reference's f32 operations in the
//! reference's order (unfused, same `round_ties_even`, same comparisons), and the
//! reference's branches become per-lane selects. The compiler vectorizes the lane
//! loops inside `#[target_feature]` wrappers picked at run time (enabling `fma` there
//! changes nothing: Rust never contracts `a * b + c` into a fused multiply-add).
//!
//! [`quantize_row_q4_k_ref`]: super::q4_k::quantize_row_q4_k_ref

use super::blocks::{BlockQ4K, QK_K};
use super::q4_k::{get_scale_min_k4, set_block_scales};
use crate::kernels::Isa;

/// Sub-blocks processed side by side: two super-blocks of eight.
const LANES: usize = 16;
const SUB: usize = 32;
const SUBS_PER_BLOCK: usize = QK_K / SUB;
const BLOCKS_PER_STEP: usize = LANES / SUBS_PER_BLOCK;
/// Super-blocks whose mean squares are summed together (one sequential sum per lane).
const GROUP: usize = 16;

/// One value per lane.
type V = [f32; LANES];

/// x: [n], y: [n / 256]. Same bytes as `quantize_row_q4_k_ref` for every finite input
/// (tested down to subnormals and up to ±f32::MAX; the converter rejects non-finite ones).
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) {
    quantize_row_q4_k_at_level(crate::kernels::isa(), x, y)
}

/// As [`quantize_row_q4_k`], compiled for `level` (an unsupported level runs the plain
/// build); every level gives the same bytes.
pub fn quantize_row_q4_k_at_level(level: Isa, x: &[f32], y: &mut [BlockQ4K]) {
    assert_eq!(x.len(), y.len() * QK_K, "q4_k: row length must be 256 * blocks");
    #[cfg(target_arch = "x86_64")]
    {
        use crate::kernels::{x86_avx2::Avx2, x86_avx512::Avx512};
        if matches!(level, Isa::Avx512 | Isa::Avx512Vnni) && Avx512::new().is_some() {
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            unsafe fn imp(x: &[f32], y: &mut [BlockQ4K]) {
                quantize_lanes(x, y)
            }
            // Safety: the Avx512 token exists only if the CPU has these features.
            return unsafe { imp(x, y) };
        }
        if matches!(level, Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni) && Avx2::new().is_some() {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn imp(x: &[f32], y: &mut [BlockQ4K]) {
                quantize_lanes(x, y)
            }
            // Safety: the Avx2 token exists only if the CPU has these features.
            return unsafe { imp(x, y) };
        }
    }
    // Elsewhere the plain build already uses the baseline SIMD (NEON on aarch64).
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    quantize_lanes(x, y)
}

/// The reference's `nearest_int(v).clamp(0, 15)`, kept in f32: NaN and negatives give 0,
/// +inf and large values 15, as the saturating `as i32` then `clamp` do.
#[inline(always)]
fn nearest_clamped(v: f32) -> f32 {
    let r = v.round_ties_even();
    let r = if r > 0.0 { r } else { 0.0 };
    if r < 15.0 {
        r
    } else {
        15.0
    }
}

#[inline(always)]
fn splat(v: f32) -> V {
    [v; LANES]
}

/// What the scale search found for the sub-block in each lane.
struct Search {
    scale: V,
    neg_min: V,
    /// How the winning L was made: `nearest_clamped(l_iscale * (x - l_shift))` (0 for a
    /// constant sub-block). Needed only where the 6-bit scale rounds to 0.
    l_iscale: V,
    l_shift: V,
}

/// `make_qkx2_quants(15, x, w, l, -1.0, 0.1, 20)` of the reference for 16 sub-blocks at
/// once; `x[i][k]` is value i of sub-block k.
#[inline(always)]
fn make_qkx2_quants_lanes(x: &[V; SUB], w: &[V; SUB]) -> Search {
    const NMAX: f32 = 15.0;
    const NSTEP: i32 = 20;
    const RMIN: f32 = -1.0;
    const RDELTA: f32 = 0.1;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = [0.0f32; LANES];
    for k in 0..LANES {
        sum_x[k] = sum_w[k] * x[0][k];
    }
    for i in 1..SUB {
        for k in 0..LANES {
            min[k] = min[k].min(x[i][k]);
            max[k] = max[k].max(x[i][k]);
            sum_w[k] += w[i][k];
            sum_x[k] += w[i][k] * x[i][k];
        }
    }
    let mut flat = [false; LANES];
    for k in 0..LANES {
        if min[k] > 0.0 {
            min[k] = 0.0;
        }
        flat[k] = max[k] == min[k];
    }
    let flat_min = min;

    // The reference copies the winning candidate's L; here each lane remembers how that
    // L was made (its iscale and the min then in force), so it can be remade exactly,
    // without a 32-row select per candidate.
    let mut scale = splat(0.0);
    let mut best_error = splat(0.0);
    let mut best_iscale = splat(0.0);
    for k in 0..LANES {
        best_iscale[k] = NMAX / (max[k] - min[k]);
        scale[k] = 1.0 / best_iscale[k];
    }
    let mut best_shift = min;
    for i in 0..SUB {
        for k in 0..LANES {
            let l = nearest_clamped(best_iscale[k] * (x[i][k] - min[k]));
            let diff = scale[k] * l + min[k] - x[i][k];
            best_error[k] += w[i][k] * diff * diff;
        }
    }

    let mut laux = [splat(0.0); SUB];
    for is in 0..=NSTEP {
        let num = RMIN + RDELTA * is as f32 + NMAX;
        let mut iscale = splat(0.0);
        for k in 0..LANES {
            iscale[k] = num / (max[k] - min[k]);
        }
        let (mut sum_l, mut sum_l2, mut sum_xl) = (splat(0.0), splat(0.0), splat(0.0));
        for i in 0..SUB {
            for k in 0..LANES {
                let lf = nearest_clamped(iscale[k] * (x[i][k] - min[k]));
                laux[i][k] = lf;
                let wi = w[i][k];
                sum_l[k] += wi * lf;
                sum_l2[k] += wi * lf * lf;
                sum_xl[k] += wi * lf * x[i][k];
            }
        }
        let (mut this_scale, mut this_min, mut det) = (splat(0.0), splat(0.0), splat(0.0));
        for k in 0..LANES {
            det[k] = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
            let s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / det[k];
            let m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / det[k];
            let pos = m > 0.0;
            this_min[k] = if pos { 0.0 } else { m };
            this_scale[k] = if pos { sum_xl[k] / sum_l2[k] } else { s };
        }
        let mut cur_error = splat(0.0);
        for i in 0..SUB {
            for k in 0..LANES {
                let diff = this_scale[k] * laux[i][k] + this_min[k] - x[i][k];
                cur_error[k] += w[i][k] * diff * diff;
            }
        }
        // The reference updates only `if det > 0 { .. if cur_error < best_error { .. } }`.
        for k in 0..LANES {
            let take = det[k] > 0.0 && cur_error[k] < best_error[k];
            best_error[k] = if take { cur_error[k] } else { best_error[k] };
            best_iscale[k] = if take { iscale[k] } else { best_iscale[k] };
            best_shift[k] = if take { min[k] } else { best_shift[k] };
            scale[k] = if take { this_scale[k] } else { scale[k] };
            min[k] = if take { this_min[k] } else { min[k] };
        }
    }

    // The reference returns early for a constant sub-block: L = 0, scale 0.
    let mut neg_min = splat(0.0);
    for k in 0..LANES {
        scale[k] = if flat[k] { 0.0 } else { scale[k] };
        neg_min[k] = if flat[k] { -flat_min[k] } else { -min[k] };
        // 0 * (finite x - 0) is ±0, which rounds to L = 0.
        best_iscale[k] = if flat[k] { 0.0 } else { best_iscale[k] };
        best_shift[k] = if flat[k] { 0.0 } else { best_shift[k] };
    }
    Search { scale, neg_min, l_iscale: best_iscale, l_shift: best_shift }
}

/// The reference's mean-square magnitude `sqrt(sum(x²) / 256)` of each super-block in
/// `x` (at most GROUP of them), each summed sequentially as the reference does.
#[inline(always)]
fn av_x_of(x: &[f32], av_x: &mut [f32; GROUP]) {
    let nb = x.len() / QK_K;
    let mut acc = [0.0f32; GROUP];
    for i in 0..QK_K {
        for b in 0..nb {
            let v = x[b * QK_K + i];
            acc[b] += v * v;
        }
    }
    for b in 0..nb {
        av_x[b] = (acc[b] / QK_K as f32).sqrt();
    }
}

#[inline(always)]
fn quantize_lanes(x: &[f32], y: &mut [BlockQ4K]) {
    let mut av_x = [0.0f32; GROUP];
    for (xg, yg) in x.chunks(GROUP * QK_K).zip(y.chunks_mut(GROUP)) {
        av_x_of(xg, &mut av_x);
        for (p, yp) in yg.chunks_mut(BLOCKS_PER_STEP).enumerate() {
            let b0 = p * BLOCKS_PER_STEP;
            let xp = &xg[b0 * QK_K..(b0 + yp.len()) * QK_K];
            // Sub-block k of the pair in lane k; a missing second super-block is zeros.
            let mut xs = [splat(0.0); SUB];
            let mut ws = [splat(0.0); SUB];
            for k in 0..xp.len() / SUB {
                let av = av_x[b0 + k / SUBS_PER_BLOCK];
                for i in 0..SUB {
                    let v = xp[k * SUB + i];
                    xs[i][k] = v;
                    ws[i][k] = av + v.abs();
                }
            }
            let search = make_qkx2_quants_lanes(&xs, &ws);
            for (h, yb) in yp.iter_mut().enumerate() {
                finish_block(&xp[h * QK_K..(h + 1) * QK_K], &search, h * SUBS_PER_BLOCK, yb);
            }
        }
    }
}

/// The reference's second half for one super-block (lanes `lane0..lane0 + 8` of
/// `search`): 6-bit scales and mins, then the nibbles requantized with them.
#[inline(always)]
fn finish_block(xb: &[f32], search: &Search, lane0: usize, yb: &mut BlockQ4K) {
    let scales: &[f32; SUBS_PER_BLOCK] = search.scale[lane0..lane0 + SUBS_PER_BLOCK].try_into().unwrap();
    let mins: &[f32; SUBS_PER_BLOCK] = search.neg_min[lane0..lane0 + SUBS_PER_BLOCK].try_into().unwrap();
    // The reference's `max_scale.max(s)`, one by one from +0: with `f32::max` here the
    // compiler may reduce in another order, and `max(+0, -0)` may then give -0 (an f16
    // `dmin` of -0 instead of +0). Written as `>`, it keeps +0 and skips NaN as the
    // reference does.
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..SUBS_PER_BLOCK {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    set_block_scales(scales, mins, max_scale, max_min, yb);
    let packed = yb.scales;
    let d = yb.d.to_f32();
    let dmin = yb.dmin.to_f32();
    // L kept in f32 (whole numbers 0..=15) and converted once, when packing.
    let mut l = [[0.0f32; SUB]; SUBS_PER_BLOCK];
    for (j, lj) in l.iter_mut().enumerate() {
        let xs = &xb[SUB * j..SUB * j + SUB];
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = d * sc as f32;
        if dj == 0.0 {
            // The reference keeps the search's L here.
            let (iscale, shift) = (search.l_iscale[lane0 + j], search.l_shift[lane0 + j]);
            for (q, &v) in lj.iter_mut().zip(xs) {
                *q = nearest_clamped(iscale * (v - shift));
            }
            continue;
        }
        let dm = dmin * m as f32;
        for (q, &v) in lj.iter_mut().zip(xs) {
            // A true division per element, as the reference (a reciprocal would round
            // differently).
            *q = nearest_clamped((v + dm) / dj);
        }
    }
    for c in 0..4 {
        for i in 0..SUB {
            yb.qs[SUB * c + i] = small_int(l[2 * c][i]) | (small_int(l[2 * c + 1][i]) << 4);
        }
    }
}

/// A whole number 0..=255 held in an f32, as u8. Adding 2^23 puts it in the low
/// mantissa bits exactly; unlike `as u8`, whose saturation the compiler does element by
/// element, this vectorizes.
#[inline(always)]
fn small_int(v: f32) -> u8 {
    (v + 8_388_608.0).to_bits() as u8
}
