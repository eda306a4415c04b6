//! Q4_0: scalar reference quantizer (ggml's `quantize_row_q4_0_ref`) and dequantizer.

use super::blocks::{BlockQ4_0, QK4_0};
use super::q8::max_by_magnitude;
use half::f16;

/// x: [n], y: [n / 32]. The value of largest magnitude maps to -8 exactly, so the
/// scale carries its sign.
pub fn quantize_row_q4_0_ref(x: &[f32], y: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), y.len() * QK4_0, "q4_0: row length must be 32 * blocks");
    for (xb, yb) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
        let d = max_by_magnitude(xb) / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb.d = f16::from_f32(d);
        for j in 0..QK4_0 / 2 {
            // Truncation after +8.5 is ggml's rounding; clamp keeps -8*d..7*d.
            let lo = ((xb[j] * id + 8.5) as i32).min(15) as u8;
            let hi = ((xb[j + QK4_0 / 2] * id + 8.5) as i32).min(15) as u8;
            yb.qs[j] = lo | (hi << 4);
        }
    }
}

/// x: [n / 32], y: [n].
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK4_0);
    for (xb, yb) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
        let d = xb.d.to_f32();
        for j in 0..QK4_0 / 2 {
            yb[j] = ((xb.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            yb[j + QK4_0 / 2] = ((xb.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}
