//! Scalar reference kernels: the specification every SIMD kernel is tested against.
//! Plain loops, exact integer arithmetic inside each block, f32 between blocks.

use super::QuantActs;
use crate::quant::{get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ8_0, QK_K};
use half::f16;

/// Activation rows for Q8_0 / Q4_0 weights: one f32 scale per 32 values.
// x: [cols] -> qs: [cols], d: [cols / 32], sums: [cols / 32]
pub fn quantize_row_q8_0(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    for (b, (xb, qb)) in x.chunks_exact(32).zip(qs.chunks_exact_mut(32)).enumerate() {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qb.iter_mut().zip(xb) {
            // Ties to even, as the SIMD rounding instructions do.
            let r = (v * inv).round_ties_even() as i32;
            *q = r as i8;
            sum += r;
        }
        d[b] = scale;
        sums[b] = sum;
    }
}

/// Activation rows for Q4_K weights (ggml's Q8_K): one f32 scale per 256 values, the
/// value of largest magnitude maps to -127; `sums` holds the sum of each 32 values.
// x: [cols] -> qs: [cols], d: [cols / 256], sums: [cols / 32]
pub fn quantize_row_q8_k(x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    for (b, (xb, qb)) in x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).enumerate() {
        let max = crate::quant::q8::max_by_magnitude(xb);
        if max == 0.0 {
            qb.fill(0);
            d[b] = 0.0;
            sums[8 * b..8 * b + 8].fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in qb.iter_mut().zip(xb) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (j, s) in sums[8 * b..8 * b + 8].iter_mut().enumerate() {
            *s = qb[32 * j..32 * j + 32].iter().map(|&q| q as i32).sum();
        }
        d[b] = 1.0 / iscale;
    }
}

/// Integer dot product of two equal-length i8 slices.
#[inline]
fn idot(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

// w: [cols / 32] blocks, x: [cols] quantized (per-32 scales)
pub fn vec_dot_q8_0_q8_0(w: &[BlockQ8_0], xq: &[i8], xd: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, wb) in w.iter().enumerate() {
        let dot = idot(&wb.qs, &xq[32 * b..32 * b + 32]);
        acc += wb.d.to_f32() * xd[b] * dot as f32;
    }
    acc
}

// w: [cols / 32] blocks, x: [cols] quantized (per-32 scales and sums)
pub fn vec_dot_q4_0_q8_0(w: &[BlockQ4_0], xq: &[i8], xd: &[f32], xsum: &[i32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, wb) in w.iter().enumerate() {
        let x = &xq[32 * b..32 * b + 32];
        let mut dot = 0i32;
        for j in 0..16 {
            dot += (wb.qs[j] & 0x0F) as i32 * x[j] as i32 + (wb.qs[j] >> 4) as i32 * x[j + 16] as i32;
        }
        // Nibbles are stored offset by 8: sum (q - 8) x = sum q x - 8 sum x.
        dot -= 8 * xsum[b];
        acc += wb.d.to_f32() * xd[b] * dot as f32;
    }
    acc
}

// w: [cols / 256] blocks, x: [cols] quantized (per-256 scales, per-32 sums)
pub fn vec_dot_q4_k_q8_k(w: &[BlockQ4K], xq: &[i8], xd: &[f32], xsum: &[i32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, wb) in w.iter().enumerate() {
        let x = &xq[QK_K * b..QK_K * b + QK_K];
        let (mut scaled, mut mins) = (0i32, 0i32);
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &wb.scales);
            let q = &wb.qs[32 * (j / 2)..32 * (j / 2) + 32];
            let shift = 4 * (j % 2);
            let xs = &x[32 * j..32 * j + 32];
            let dot: i32 = q.iter().zip(xs).map(|(&q, &v)| ((q >> shift) & 0x0F) as i32 * v as i32).sum();
            scaled += sc as i32 * dot;
            mins += m as i32 * xsum[8 * b + j];
        }
        acc += xd[b] * (wb.d.to_f32() * scaled as f32 - wb.dmin.to_f32() * mins as f32);
    }
    acc
}

// w: [cols], x: [cols]
pub fn vec_dot_f32(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

// w: [cols], x: [cols]
pub fn vec_dot_f16_f32(w: &[f16], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum()
}

/// y += a * x
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Dot product of weight row `row` with quantized activation row `tok`.
pub(crate) fn dot_row(w: &super::QMatrix, row: usize, acts: &QuantActs, tok: usize, x: &[f32]) -> f32 {
    use crate::quant::GgmlType::*;
    let cols = w.cols;
    match w.ty {
        F32 => vec_dot_f32(w.row_f32(row), &x[tok * cols..(tok + 1) * cols]),
        F16 => vec_dot_f16_f32(w.row_f16(row), &x[tok * cols..(tok + 1) * cols]),
        Q8_0 => vec_dot_q8_0_q8_0(w.row_blocks(row), acts.qs(tok), acts.d(tok)),
        Q4_0 => vec_dot_q4_0_q8_0(w.row_blocks(row), acts.qs(tok), acts.d(tok), acts.sums(tok)),
        Q4K => vec_dot_q4_k_q8_k(w.row_blocks(row), acts.qs(tok), acts.d(tok), acts.sums(tok)),
    }
}

/// exp for f32 with ~1 ulp error: 2^n * e^r, |r| <= ln2/2, Taylor to r^7.
/// Written with plain arithmetic so that the compiler vectorizes it inside each ISA's
/// `#[target_feature]` wrapper.
#[inline(always)]
pub fn exp_f32(a: f32) -> f32 {
    exp_f32_with::<false>(a)
}

/// [`exp_f32`] with the polynomial's steps as one rounding each (`FUSED`: `mul_add`, for
/// callers compiled with FMA, where it is half the instructions) or two.
#[inline(always)]
pub fn exp_f32_with<const FUSED: bool>(a: f32) -> f32 {
    exp_of_parts::<FUSED>(a, None)
}

/// e^(a + small) without rounding the sum: `small` (|small| <= 2, a + small >= -87.3)
/// joins after the range reduction, so that the large part `a` keeps its full precision.
#[inline(always)]
fn exp_of_parts<const FUSED: bool>(a: f32, small: Option<f32>) -> f32 {
    let step = |p: f32, r: f32, c: f32| if FUSED { p.mul_add(r, c) } else { p * r + c };
    // Beyond this range the result would leave the normal f32 range.
    let a = a.clamp(-87.3, 88.0);
    let whole = match small {
        Some(s) => a + s,
        None => a,
    };
    let (n, pow2_n) = if FUSED {
        // n = round(a log2 e) with 2^n in the same step: the FMA's one rounding of
        // a log2 e + 1.5 * 2^23 + 127 (ulp 1 there) rounds to nearest even and leaves
        // n + 127 in the low bits (see `pow2_of_integer`). Two instructions fewer.
        let biased = whole.mul_add(std::f32::consts::LOG2_E, POW2_BIAS);
        (biased - POW2_BIAS, f32::from_bits(biased.to_bits() << 23))
    } else {
        let n = (whole * std::f32::consts::LOG2_E).round_ties_even();
        (n, pow2_of_integer(n))
    };
    // Cody-Waite: ln2 split so that n * LN2_HI is exact.
    let r = n.mul_add(-0.693_145_75, a);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let r = match small {
        Some(s) => r + s,
        None => r,
    };
    let mut p = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = step(p, r, c);
    }
    p * pow2_n
}

/// 1.5 * 2^23 + 127: added to an integer-valued n in -126..=127, puts n + 127 in the
/// low mantissa bits.
const POW2_BIAS: f32 = 12_582_912.0 + 127.0;

/// 2^n for an integer-valued n in -126..=127, without a float-to-int cast: Rust's
/// saturating `as i32` compiles to scalar compare-and-move code that stops the
/// vectorization of every loop around it. Adding 1.5 * 2^23 + 127 puts n + 127 in the
/// low mantissa bits (exactly: ulp 1 there), and the shift moves them into the exponent
/// while the exponent bits of 1.5 * 2^23 fall off the top.
#[inline(always)]
fn pow2_of_integer(n: f32) -> f32 {
    f32::from_bits((n + POW2_BIAS).to_bits() << 23)
}

#[cfg(test)]
mod tests {
    /// The cast-free 2^n equals the direct bit construction for every n exp_f32 can
    /// produce (the clamp keeps n in -126..=127).
    #[test]
    fn pow2_of_integer_is_exact() {
        for n in -126..=127 {
            assert_eq!(super::pow2_of_integer(n as f32).to_bits(), (((n + 127) as u32) << 23), "2^{n}");
        }
        let (lo, hi) = ((-87.3f32 * std::f32::consts::LOG2_E).round_ties_even(), (88.0f32 * std::f32::consts::LOG2_E).round_ties_even());
        assert!(lo >= -126.0 && hi <= 127.0, "clamp range gives n in {lo}..={hi}");
    }

    /// The division-free reciprocal of the fused GELU: within 1.5e-7 relative error of
    /// 1 / d over its whole range of d (1..=1e4), including every power of two there.
    #[test]
    fn recip_newton_matches_division() {
        let sweep = (0..=400_000).map(|i| 1.0 + (1e4 - 1.0) * i as f64 / 400_000.0);
        let powers = (0..14).map(|k| (1u32 << k) as f64);
        for d in sweep.chain(powers).map(|d| d as f32) {
            let want = 1.0 / d as f64;
            let err = (super::recip_newton(d) as f64 - want).abs() / want;
            assert!(err <= 1.5e-7, "1 / {d}: rel error {err:.2e}");
        }
    }

    /// Both forms of exp (the fused one finds n and 2^n in one FMA) stay within 1.5e-7
    /// relative error of f64 over the whole clamp range, its ends and the points where
    /// a log2 e is halfway between integers (where the two roundings of n can differ).
    #[test]
    fn exp_matches_f64() {
        let halfway = (-126..127).map(|k| (k as f64 + 0.5) / std::f64::consts::LOG2_E);
        let sweep = (0..=200_000).map(|i| -87.3 + 175.3 * i as f64 / 200_000.0);
        for x in sweep.chain(halfway).chain([-87.3, 88.0, 0.0, -0.0]).map(|x| x as f32) {
            let want = (x as f64).exp();
            for (name, got) in [("plain", super::exp_f32_with::<false>(x)), ("fused", super::exp_f32_with::<true>(x))] {
                let err = (got as f64 - want).abs() / want;
                assert!(err <= 1.5e-7, "{name} exp({x}) = {got}, want {want}: rel error {err:.2e}");
            }
        }
    }
}

/// erfc(|x| / sqrt 2) with ~2e-7 relative error: the Numerical Recipes Chebyshev fit
/// erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2). z^2 = x^2 / 2 is taken from x
/// itself and split exactly (hi + lo), since rounding z or z^2 in f32 would cost
/// ~1e-5 relative error in the far tail. `FUSED` as in [`exp_f32_with`].
#[inline(always)]
pub fn erfc_of_scaled<const FUSED: bool>(x: f32) -> f32 {
    let step = |p: f32, t: f32, c: f32| if FUSED { p.mul_add(t, c) } else { p * t + c };
    let ax = x.abs();
    let z = ax * std::f32::consts::FRAC_1_SQRT_2;
    let t = if FUSED { recip_newton(0.5f32.mul_add(z, 1.0).min(1e4)) } else { 1.0 / (1.0 + 0.5 * z) };
    let mut p = 0.170_872_77_f32;
    for c in [-0.822_152_23, 1.488_515_87, -1.135_203_98, 0.278_868_07, -0.186_288_06, 0.096_784_18, 0.374_091_96, 1.000_023_68, -1.265_512_23] {
        p = step(p, t, c);
    }
    let sq = ax * ax;
    let hi = 0.5 * sq;
    let lo = 0.5 * ax.mul_add(ax, -sq);
    if FUSED {
        // One exp instead of two (e^-hi * e^(p - lo)); hi capped so that the sum stays
        // in the exp's range (erfc is below 1e-37 there anyway).
        t * exp_of_parts::<true>(-hi.min(86.0), Some(p - lo))
    } else {
        t * exp_f32_with::<false>(-hi) * exp_f32_with::<false>(p - lo)
    }
}

/// 1 / d for d in 1..=1e4, within ~1 ulp, without a division (a vector division costs
/// about a third of the vectorized GELU): an integer estimate (~5 % error, valid for
/// normal d) and three Newton steps, each squaring the error.
#[inline(always)]
fn recip_newton(d: f32) -> f32 {
    let mut r = f32::from_bits(0x7EF3_11C3 - d.to_bits());
    for _ in 0..3 {
        r = r * d.mul_add(-r, 2.0);
    }
    r
}

/// Exact GELU of one value: 0.5 x (1 + erf(x / sqrt 2)), written through erfc so that
/// both tails keep their relative accuracy. `FUSED` as in [`exp_f32_with`].
#[inline(always)]
pub fn gelu_erf_one<const FUSED: bool>(x: f32) -> f32 {
    let c = erfc_of_scaled::<FUSED>(x);
    // x >= 0: 0.5 x (2 - erfc); x < 0: 0.5 x erfc.
    let factor = if x >= 0.0 { 2.0 - c } else { c };
    0.5 * x * factor
}

/// Exact GELU, in place.
pub fn gelu_erf(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu_erf_one::<false>(*v);
    }
}

/// Numerically stable softmax of one row.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = exp_f32(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= inv);
}

// x, out: [t, c]; w, b: [c]
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
    for (xr, or) in x.chunks_exact(c).zip(out.chunks_exact_mut(c)) {
        // Summing offsets from the first value keeps the mean exact-ish for rows with
        // a large common offset.
        let pivot = xr[0];
        let mean = pivot + xr.iter().map(|v| v - pivot).sum::<f32>() / c as f32;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..c {
            or[i] = (xr[i] - mean) * inv * w[i] + b[i];
        }
    }
}
