//! Element-wise and row kernels written once in plain Rust, shaped (fixed-width lane
//! arrays, no early exits) so that the compiler vectorizes them. Each SIMD module calls
//! them from a `#[target_feature]` function, which instantiates them for that ISA.
//! Results equal the scalar reference up to the order of f32 summation.

use super::scalar::{exp_f32_with, gelu_erf_one};
use crate::quant::QK_K;

const LANES: usize = 16;

#[inline(always)]
fn sum_lanes(acc: [f32; LANES]) -> f32 {
    // Pairwise, so the result does not depend on the vector width.
    let mut a = acc;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            a[i] += a[i + n];
        }
    }
    a[0]
}

// w: [n], x: [n]
#[inline(always)]
pub fn vec_dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let mut acc = [0.0f32; LANES];
    let (wc, xc) = (w[..n].chunks_exact(LANES), x[..n].chunks_exact(LANES));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (a, b) in wc.zip(xc) {
        for l in 0..LANES {
            acc[l] = a[l].mul_add(b[l], acc[l]);
        }
    }
    let mut tail = 0.0f32;
    for (a, b) in wr.iter().zip(xr) {
        tail = a.mul_add(*b, tail);
    }
    sum_lanes(acc) + tail
}

/// y += a * x
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = a.mul_add(v, *o);
    }
}

#[inline(always)]
// Only the quantizers below use it (unused on x86-64, which has explicit ones).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn abs_max(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let c = x.chunks_exact(LANES);
    let tail = c.remainder().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for ch in c {
        for l in 0..LANES {
            acc[l] = acc[l].max(ch[l].abs());
        }
    }
    acc.iter().fold(tail, |m, &v| m.max(v))
}

// x, out: [t, c]; w, b: [c]
#[inline(always)]
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
    for (xr, or) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        // Offsets from the first value, as in the scalar reference.
        let pivot = xr[0];
        let mut acc = [0.0f32; LANES];
        let ch = xr.chunks_exact(LANES);
        let tail: f32 = ch.remainder().iter().map(|v| v - pivot).sum();
        for chunk in ch {
            for l in 0..LANES {
                acc[l] += chunk[l] - pivot;
            }
        }
        let mean = pivot + (sum_lanes(acc) + tail) / c as f32;
        let mut acc = [0.0f32; LANES];
        let ch = xr.chunks_exact(LANES);
        let tail: f32 = ch.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
        for chunk in ch {
            for l in 0..LANES {
                let d = chunk[l] - mean;
                acc[l] = d.mul_add(d, acc[l]);
            }
        }
        let var = (sum_lanes(acc) + tail) / c as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..c {
            or[i] = ((xr[i] - mean) * inv).mul_add(w[i], b[i]);
        }
    }
}

#[inline(always)]
pub fn gelu_erf(x: &mut [f32]) {
    // Four vectors per step: one alone is a ~150-cycle chain of dependent operations
    // (two exps, a degree-9 polynomial, a division) that the core cannot overlap enough.
    let mut chunks = x.chunks_exact_mut(4 * LANES);
    for chunk in &mut chunks {
        for v in chunk.iter_mut() {
            *v = gelu_erf_one::<true>(*v);
        }
    }
    for v in chunks.into_remainder() {
        *v = gelu_erf_one::<true>(*v);
    }
}

#[inline(always)]
pub fn softmax_inplace(x: &mut [f32]) {
    let inv = 1.0 / softmax_unnormalized(x);
    x.iter_mut().for_each(|v| *v *= inv);
}

/// x <- exp(x - max x), returning the sum: softmax but for the division, which a caller
/// can fold into its next pass over x.
#[inline(always)]
pub fn softmax_unnormalized(x: &mut [f32]) -> f32 {
    // `if v > m` rather than `f32::max`: one max instruction instead of max, NaN test and
    // blend. The same result while m is not NaN, which it never is (it starts at -inf and
    // a NaN v is passed over either way).
    let max_of = |m: f32, v: f32| if v > m { v } else { m };
    let mut mx = [f32::NEG_INFINITY; LANES];
    let c = x.chunks_exact(LANES);
    let tail = c.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| max_of(m, v));
    for ch in c {
        for l in 0..LANES {
            mx[l] = max_of(mx[l], ch[l]);
        }
    }
    let max = mx.iter().fold(tail, |m, &v| max_of(m, v));
    // exp and sum in one pass; callers are compiled with FMA (x86 levels from AVX2, NEON).
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for ch in &mut chunks {
        for l in 0..LANES {
            ch[l] = exp_f32_with::<true>(ch[l] - max);
            acc[l] += ch[l];
        }
    }
    let mut tail = 0.0;
    for v in chunks.into_remainder() {
        *v = exp_f32_with::<true>(*v - max);
        tail += *v;
    }
    sum_lanes(acc) + tail
}

/// Same results as `scalar::quantize_row_q8_0`, bit for bit.
// x: [cols] -> qs: [cols], d: [cols / 32], sums: [cols / 32]
#[inline(always)]
// x86-64 has explicit quantizers: this runs on NEON (and is tested there, under qemu).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub fn quantize_row_q8_0(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    for (b, (xb, qb)) in x.chunks_exact(32).zip(qs.chunks_exact_mut(32)).enumerate() {
        let amax = abs_max(xb);
        let scale = amax / 127.0;
        // A scale that underflows to 0 quantizes to 0 (as the scalar code).
        let inv = if scale != 0.0 { 127.0 / amax } else { 0.0 };
        let mut q32 = [0i32; 32];
        for i in 0..32 {
            q32[i] = (xb[i] * inv).round_ties_even() as i32;
        }
        for i in 0..32 {
            qb[i] = q32[i] as i8;
        }
        d[b] = scale;
        sums[b] = q32.iter().sum();
    }
}

/// Same results as `scalar::quantize_row_q8_k`, bit for bit.
// x: [cols] -> qs: [cols], d: [cols / 256], sums: [cols / 32]
#[inline(always)]
// x86-64 has explicit quantizers: this runs on NEON (and is tested there, under qemu).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
pub fn quantize_row_q8_k(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    for (b, (xb, qb)) in x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).enumerate() {
        // The value of largest magnitude (the first one, on ties) sets the sign.
        let amax = abs_max(xb);
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        if amax == 0.0 {
            qb.fill(0);
            d[b] = 0.0;
            sums[8 * b..8 * b + 8].fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (j, s) in sums[8 * b..8 * b + 8].iter_mut().enumerate() {
            let mut q32 = [0i32; 32];
            for i in 0..32 {
                q32[i] = ((iscale * xb[32 * j + i]).round_ties_even() as i32).min(127);
            }
            for i in 0..32 {
                qb[32 * j + i] = q32[i] as i8;
            }
            *s = q32.iter().sum();
        }
        d[b] = 1.0 / iscale;
    }
}

/// Defines, on an ISA token type, safe methods for the small kernels above, each a
/// `#[target_feature]` instantiation of the generic code. The token proves the CPU
/// has the features, which is what makes calling them sound.
macro_rules! small_kernels_for {
    ($token:ty, $features:literal) => {
        impl $token {
            pub fn vec_dot_f32(self, w: &[f32], x: &[f32]) -> f32 {
                #[target_feature(enable = $features)]
                unsafe fn imp(w: &[f32], x: &[f32]) -> f32 {
                    super::generic::vec_dot_f32(w, x)
                }
                // Safety: the token exists only if the CPU has these features.
                unsafe { imp(w, x) }
            }
            pub fn axpy(self, a: f32, x: &[f32], y: &mut [f32]) {
                #[target_feature(enable = $features)]
                unsafe fn imp(a: f32, x: &[f32], y: &mut [f32]) {
                    super::generic::axpy(a, x, y)
                }
                // Safety: as above.
                unsafe { imp(a, x, y) }
            }
            pub fn layer_norm(self, x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
                #[target_feature(enable = $features)]
                unsafe fn imp(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
                    super::generic::layer_norm(x, w, b, eps, out, c)
                }
                // Safety: as above.
                unsafe { imp(x, w, b, eps, out, c) }
            }
            pub fn gelu_erf(self, x: &mut [f32]) {
                #[target_feature(enable = $features)]
                unsafe fn imp(x: &mut [f32]) {
                    super::generic::gelu_erf(x)
                }
                // Safety: as above.
                unsafe { imp(x) }
            }
            pub fn softmax_inplace(self, x: &mut [f32]) {
                #[target_feature(enable = $features)]
                unsafe fn imp(x: &mut [f32]) {
                    super::generic::softmax_inplace(x)
                }
                // Safety: as above.
                unsafe { imp(x) }
            }
        }
    };
}
pub(crate) use small_kernels_for;

/// The activation quantizers as [`small_kernels_for`] defines the other small kernels:
/// for tokens without explicit SIMD quantizers (NEON; AVX2 and AVX-512 have their own,
/// under the same names, so that `isa`'s dispatch reaches every level alike).
#[cfg_attr(target_arch = "x86_64", allow(unused_macros))]
macro_rules! generic_quantizers_for {
    ($token:ty, $features:literal) => {
        impl $token {
            pub fn quantize_row_q8_0(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
                #[target_feature(enable = $features)]
                unsafe fn imp(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
                    super::generic::quantize_row_q8_0(x, qs, d, sums)
                }
                // Safety: the token exists only if the CPU has these features.
                unsafe { imp(x, qs, d, sums) }
            }
            pub fn quantize_row_q8_k(self, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
                #[target_feature(enable = $features)]
                unsafe fn imp(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
                    super::generic::quantize_row_q8_k(x, qs, d, sums)
                }
                // Safety: as above.
                unsafe { imp(x, qs, d, sums) }
            }
        }
    };
}
#[cfg_attr(target_arch = "x86_64", allow(unused_imports))]
pub(crate) use generic_quantizers_for;

/// F32 / F16 weights: each row (converted once, for F16) dotted with every token.
// w: [rows, cols] (rows r0..r0+nr), x: [t, cols], out: [t, TILE_ROWS]
#[inline(always)]
pub fn float_tile(w: &super::QMatrix, r0: usize, nr: usize, x: &[f32], t: usize, row_buf: &mut Vec<f32>, out: &mut [f32]) {
    let cols = w.cols;
    for r in 0..nr {
        let row: &[f32] = match w.ty {
            crate::quant::GgmlType::F32 => w.row_f32(r0 + r),
            _ => {
                row_buf.clear();
                row_buf.extend(w.row_f16(r0 + r).iter().map(|h| h.to_f32()));
                row_buf
            }
        };
        for tok in 0..t {
            out[tok * super::TILE_ROWS + r] = vec_dot_f32(row, &x[tok * cols..(tok + 1) * cols]);
        }
    }
}
