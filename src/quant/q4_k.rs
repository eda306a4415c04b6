//! Q4_K: scalar reference quantizer and dequantizer, following ggml's
//! `quantize_row_q4_K_ref` (weighted least-squares search for each sub-block's scale
//! and min, then 6-bit quantization of those).

use super::blocks::{BlockQ4K, K_SCALE_SIZE, QK_K};
use super::q8::nearest_int;
use half::f16;

/// Unpacks sub-block `j`'s 6-bit (scale, min) from the 12 packed bytes.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let d = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d, m)
    }
}

/// Packs sub-block `j`'s 6-bit (scale, min) into the 12 bytes: the inverse of
/// [`get_scale_min_k4`] when `q` starts zeroed and sub-blocks are packed in order.
#[inline]
pub fn set_scale_min_k4(j: usize, ls: u8, lm: u8, q: &mut [u8; K_SCALE_SIZE]) {
    if j < 4 {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
        q[j - 4] |= (ls >> 4) << 6;
        q[j] |= (lm >> 4) << 6;
    }
}

/// Sets the super-block's `d`, `dmin` and packed 6-bit scales and mins from the
/// sub-blocks' float scales and mins and their maxima.
pub(super) fn set_block_scales(scales: &[f32; 8], mins: &[f32; 8], max_scale: f32, max_min: f32, yb: &mut BlockQ4K) {
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        let ls = nearest_int(inv_scale * scales[j]).min(63) as u8;
        let lm = nearest_int(inv_min * mins[j]).min(63) as u8;
        set_scale_min_k4(j, ls, lm, &mut packed);
    }
    yb.scales = packed;
    yb.d = f16::from_f32(max_scale / 63.0);
    yb.dmin = f16::from_f32(max_min / 63.0);
}

/// Finds scale and min so that `x ≈ scale * L + min` with L in 0..=nmax, minimizing the
/// weighted squared error over `nstep + 1` candidate scales. Returns (scale, -min).
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l_out[i] = l as u8;
        let diff = scale * l as f32 + min - x[i];
        best_error += weights[i] * diff * diff;
    }
    let mut laux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let lf = l as f32;
            let w = weights[i];
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * diff * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// x: [n], y: [n / 256].
pub fn quantize_row_q4_k_ref(x: &[f32], y: &mut [BlockQ4K]) {
    assert_eq!(x.len(), y.len() * QK_K, "q4_k: row length must be 256 * blocks");
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let mut weights = [0.0f32; 32];
        let mut scales = [0.0f32; 8];
        let mut mins = [0.0f32; 8];
        let sum_x2: f32 = xb.iter().map(|v| v * v).sum();
        let av_x = (sum_x2 / QK_K as f32).sqrt();
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..8 {
            let sub = &xb[32 * j..32 * j + 32];
            for (w, v) in weights.iter_mut().zip(sub) {
                *w = av_x + v.abs();
            }
            let (s, m) = make_qkx2_quants(15, sub, &weights, &mut l[32 * j..32 * j + 32], -1.0, 0.1, 20);
            scales[j] = s;
            mins[j] = m;
            max_scale = max_scale.max(s);
            max_min = max_min.max(m);
        }
        set_block_scales(&scales, &mins, max_scale, max_min, yb);
        let packed = yb.scales;
        // Requantize with the rounded 6-bit scales so the stored nibbles fit them.
        let d = yb.d.to_f32();
        let dmin = yb.dmin.to_f32();
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &packed);
            let dj = d * sc as f32;
            if dj == 0.0 {
                continue;
            }
            let dm = dmin * m as f32;
            for ii in 0..32 {
                l[32 * j + ii] = nearest_int((xb[32 * j + ii] + dm) / dj).clamp(0, 15) as u8;
            }
        }
        for c in 0..4 {
            for i in 0..32 {
                yb.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

/// x: [n / 256], y: [n].
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = xb.d.to_f32();
        let dmin = xb.dmin.to_f32();
        for c in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * c, &xb.scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, &xb.scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let q = &xb.qs[32 * c..32 * c + 32];
            let out = &mut yb[64 * c..64 * c + 64];
            for i in 0..32 {
                out[i] = d1 * (q[i] & 0x0F) as f32 - m1;
                out[i + 32] = d2 * (q[i] >> 4) as f32 - m2;
            }
        }
    }
}
