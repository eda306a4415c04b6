//! Q8_0 (weights and activations) and Q8_K (activations for K-quant dot products):
//! scalar reference quantizers, the specification the SIMD code must match.

use super::blocks::{BlockQ8K, BlockQ8_0, QK8_0, QK_K};
use half::f16;

/// x: [n], y: [n / 32]. Symmetric: d = max|x| / 127, q = round(x / d).
pub fn quantize_row_q8_0_ref(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), y.len() * QK8_0, "q8_0: row length must be 32 * blocks");
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16::from_f32(d);
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            // `round` is half away from zero, as C's roundf in ggml.
            *q = (v * id).round() as i8;
        }
    }
}

/// x: [n / 32], y: [n].
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK8_0);
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        let d = xb.d.to_f32();
        for (o, &q) in yb.iter_mut().zip(&xb.qs) {
            *o = q as f32 * d;
        }
    }
}

/// ggml's `nearest_int`: round half to even.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// The value of largest magnitude (the first such, keeping its sign); 0 for an all-zero x.
/// Q4_0 and Q8_K map it exactly to the end of their integer range.
pub fn max_by_magnitude(x: &[f32]) -> f32 {
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    max
}

/// x: [n], y: [n / 256]. The scale keeps the sign of the largest-magnitude value so
/// that it maps exactly to -127 (ggml's `quantize_row_q8_K_ref`).
pub fn quantize_row_q8_k_ref(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K, "q8_k: row length must be 256 * blocks");
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let max = max_by_magnitude(xb);
        if max == 0.0 {
            yb.d = 0.0;
            yb.qs = [0; QK_K];
            yb.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in yb.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, chunk) in yb.bsums.iter_mut().zip(yb.qs.chunks_exact(16)) {
            *s = chunk.iter().map(|&q| q as i16).sum();
        }
        yb.d = 1.0 / iscale;
    }
}

/// x: [n / 256], y: [n].
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K);
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in yb.iter_mut().zip(&xb.qs) {
            *o = q as f32 * xb.d;
        }
    }
}
