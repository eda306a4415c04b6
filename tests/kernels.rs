//! Kernel tests: every ISA level this CPU supports against the scalar reference, and the
//! scalar reference against f64 math. Each check states its error measure and bound.

mod common;

use common::rng::Rng;
use xlmr::kernels::{self, at_level, ActFormat, Epilogue, Isa, MatmulScratch, PackedMatrix, QMatrix, QkvLayout, QuantActs, PANEL_ROWS};
use xlmr::quant::{dequantize, quantize_row, GgmlType};

/// Weight bytes in an 8-byte-aligned buffer, as a GGUF mmap would give them.
struct Weights {
    words: Vec<u64>,
    len: usize,
    ty: GgmlType,
    rows: usize,
    cols: usize,
}
impl Weights {
    fn from_bytes(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (i, b) in bytes.iter().enumerate() {
            words[i / 8] |= (*b as u64) << (8 * (i % 8));
        }
        Weights { words, len: bytes.len(), ty, rows, cols }
    }
    fn quantized(ty: GgmlType, values: &[f32], rows: usize, cols: usize) -> Self {
        let mut bytes = Vec::new();
        for r in 0..rows {
            quantize_row(ty, &values[r * cols..(r + 1) * cols], &mut bytes);
        }
        Self::from_bytes(ty, &bytes, rows, cols)
    }
    /// Random bytes for every quantized field: the full int8 / nibble / 6-bit range,
    /// with scales forced to small finite f16s.
    fn raw_random(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Self {
        let mut bytes = rng.bytes(rows * ty.row_bytes(cols).unwrap());
        let (block, scales): (usize, &[usize]) = match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 => (ty.type_size(), &[0]),
            GgmlType::Q4K => (ty.type_size(), &[0, 2]),
            _ => panic!("raw_random is for quantized types"),
        };
        for blk in bytes.chunks_exact_mut(block) {
            for &off in scales {
                let d = half::f16::from_f32(0.001 + 0.01 * (rng.uniform() + 1.0));
                blk[off..off + 2].copy_from_slice(&d.to_le_bytes());
            }
        }
        Self::from_bytes(ty, &bytes, rows, cols)
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck_u64(&self.words)[..self.len]
    }
    fn matrix(&self) -> QMatrix<'_> {
        QMatrix::new(self.ty, self.bytes(), self.rows, self.cols).expect("valid matrix")
    }
    fn dequantized(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        dequantize(self.ty, self.bytes(), &mut out).expect("dequantize");
        out
    }
}

fn bytemuck_u64(words: &[u64]) -> &[u8] {
    // Safety: u64 has no padding, u8 has alignment 1, and the length covers exactly
    // the words' bytes.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

/// f64 product of dequantized weights and exact activations.   w: [rows, cols], x: [t, cols]
fn reference_matmul(w: &[f32], x: &[f32], bias: Option<&[f32]>, rows: usize, cols: usize, t: usize) -> Vec<f64> {
    let mut y = vec![0.0f64; t * rows];
    for tok in 0..t {
        for r in 0..rows {
            let dot: f64 = (0..cols).map(|i| w[r * cols + i] as f64 * x[tok * cols + i] as f64).sum();
            y[tok * rows + r] = dot + bias.map_or(0.0, |b| b[r] as f64);
        }
    }
    y
}

/// Normalized mean squared error: sum (a - b)^2 / sum b^2.
fn nmse(a: &[f32], b: &[f64]) -> f64 {
    let err: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    err / norm.max(1e-30)
}

/// Largest absolute difference divided by the largest reference magnitude.
fn max_rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)).max(1e-30);
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max) / scale
}

fn run_matmul(level: Isa, w: &QMatrix, x: &[f32], bias: Option<&[f32]>, t: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; t * w.rows];
    kernels::matmul_at_level(level, w, x, bias, &mut y, t, false, &mut MatmulScratch::new());
    assert!(y.iter().all(|v| v.is_finite()), "{level}: non-finite output (NaN prefill left?)");
    y
}

const SHAPES_T: [usize; 4] = [1, 3, 7, 17];
const SHAPES_ROWS: [usize; 3] = [1, 5, 33];
const SHAPES_COLS: [usize; 6] = [32, 96, 160, 256, 512, 2560];
const QUANT_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K];

/// Quantized matmul vs the f64 product of the dequantized weights and the exact
/// activations: NMSE <= 5e-4 (ggml's test-quantize-fns bound), at every level.
#[test]
fn quantized_matmul_close_to_dequantized_product() {
    let mut rng = Rng::new(1);
    for ty in QUANT_TYPES {
        for &cols in SHAPES_COLS.iter().filter(|&&c| c % ty.block_size() == 0) {
            let (rows, t) = (33, 7);
            let w = Weights::quantized(ty, &rng.vec(rows * cols, 1.0), rows, cols);
            let x = rng.vec(t * cols, 2.0);
            let bias = rng.vec(rows, 0.5);
            let want = reference_matmul(&w.dequantized(), &x, Some(&bias), rows, cols, t);
            for level in Isa::supported() {
                let got = run_matmul(level, &w.matrix(), &x, Some(&bias), t);
                let e = nmse(&got, &want);
                assert!(e <= 5e-4, "{ty} {level} cols={cols}: NMSE {e:.2e} > 5e-4");
            }
        }
    }
}

/// Every SIMD level against the scalar kernels on the same quantized inputs: the
/// integer block sums are exact, so only f32 summation order differs. Bound: max |diff|
/// <= 2e-6 x max |y|. Awkward shapes, full-range random bytes (int8 -128..127, all
/// nibbles, all 6-bit scales), which would saturate a naive AVX2 `maddubs`.
#[test]
fn simd_matmul_matches_scalar_on_awkward_shapes() {
    let mut rng = Rng::new(2);
    for ty in QUANT_TYPES {
        for &cols in SHAPES_COLS.iter().filter(|&&c| c % ty.block_size() == 0) {
            for rows in SHAPES_ROWS {
                let w = Weights::raw_random(ty, rows, cols, &mut rng);
                for t in SHAPES_T {
                    // Activations with extreme values so quantized ones hit +-127.
                    let mut x = rng.vec(t * cols, 3.0);
                    for (i, v) in x.iter_mut().enumerate() {
                        if i % 7 == 0 {
                            *v = if i % 2 == 0 { 3.0 } else { -3.0 };
                        }
                    }
                    let want = run_matmul(Isa::Scalar, &w.matrix(), &x, None, t);
                    for level in Isa::supported() {
                        let got = run_matmul(level, &w.matrix(), &x, None, t);
                        let e = max_rel_diff(&got, &want);
                        assert!(e <= 2e-6, "{ty} {level} rows={rows} cols={cols} t={t}: rel diff {e:.2e}");
                    }
                }
            }
        }
    }
}

/// F32 and F16 weights: every level vs the f64 product; rel diff <= 1e-5.
#[test]
fn float_matmul_matches_reference() {
    let mut rng = Rng::new(3);
    for ty in [GgmlType::F32, GgmlType::F16] {
        for cols in [1, 7, 32, 100, 2560] {
            for (rows, t) in [(1, 1), (5, 3), (33, 17)] {
                let w = Weights::quantized(ty, &rng.vec(rows * cols, 1.0), rows, cols);
                let x = rng.vec(t * cols, 1.0);
                let want = reference_matmul(&w.dequantized(), &x, None, rows, cols, t);
                let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                for level in Isa::supported() {
                    let got = run_matmul(level, &w.matrix(), &x, None, t);
                    let e = max_rel_diff(&got, &want32);
                    assert!(e <= 1e-5, "{ty} {level} rows={rows} cols={cols} t={t}: rel diff {e:.2e}");
                }
            }
        }
    }
}

/// matmul_acc adds to what is in y (bias included) instead of overwriting.
#[test]
fn matmul_acc_adds_to_output() {
    let mut rng = Rng::new(4);
    let (rows, cols, t) = (5, 64, 3);
    let w = Weights::quantized(GgmlType::Q8_0, &rng.vec(rows * cols, 1.0), rows, cols);
    let x = rng.vec(t * cols, 1.0);
    let bias = rng.vec(rows, 1.0);
    let mut plain = vec![f32::NAN; t * rows];
    kernels::matmul(&w.matrix(), &x, Some(&bias), &mut plain, t);
    let start = rng.vec(t * rows, 10.0);
    let mut acc = start.clone();
    kernels::matmul_acc(&w.matrix(), &x, Some(&bias), &mut acc, t);
    for i in 0..t * rows {
        assert!((acc[i] - (start[i] + plain[i])).abs() <= 1e-5 * (1.0 + start[i].abs()), "element {i}");
    }
}

/// Activation quantizers: every level bit-identical to the scalar reference.
#[test]
fn activation_quantizers_match_scalar_exactly() {
    let mut rng = Rng::new(5);
    // 512 columns: whole groups of the AVX-512 quantizers (16 Q8_0 blocks, 2 Q8_K
    // blocks); 1280: two groups and 8 blocks left over, and an odd Q8_K block.
    for (format, (t, cols)) in [ActFormat::Q8_0, ActFormat::Q8K].into_iter().flat_map(|f| [(f, (3, 512)), (f, (2, 1280))]) {
        let mut x = rng.vec(t * cols, 5.0);
        x[10] = 0.0;
        x[300..340].fill(0.0); // an all-zero block
        if format == ActFormat::Q8_0 {
            // A nonzero block whose scale (max / 127) underflows to 0: quantized to 0.
            x[t * cols - 32..].fill(1e-44);
        }
        // A NaN (in either half of a 32-value block) is skipped by the maximum and quantizes
        // to 0; an infinite maximum makes the whole block 0.
        x[64 + 3] = f32::NAN;
        x[64 + 20] = f32::NAN;
        x[96 + 5] = f32::INFINITY;
        // A block whose scale is exactly 1: every value rounds a tie (to even).
        x[512] = 127.0;
        for i in 1..32 {
            x[512 + i] = i as f32 - 15.5;
        }
        // A Q8_K block whose largest magnitudes tie with opposite signs (the first wins).
        x[(t - 1) * cols + 7] = -9.0;
        x[(t - 1) * cols + 100] = 9.0;
        // And within one vector of 8 (the first, +11, wins).
        x[(t - 1) * cols + 256 + 2] = 11.0;
        x[(t - 1) * cols + 256 + 6] = -11.0;
        let mut want = QuantActs::default();
        kernels::quantize_acts(Isa::Scalar, format, &x, t, cols, &mut want);
        for level in Isa::supported() {
            let mut got = QuantActs::default();
            kernels::quantize_acts(level, format, &x, t, cols, &mut got);
            for tok in 0..t {
                assert_eq!(got.qs(tok), want.qs(tok), "{format:?} {level} qs");
                assert_eq!(got.d(tok), want.d(tok), "{format:?} {level} d");
                assert_eq!(got.sums(tok), want.sums(tok), "{format:?} {level} sums");
            }
        }
    }
}

/// 1 thread vs 3 threads: identical bits (each output is computed by one tile).
#[test]
fn matmul_same_result_for_one_and_many_threads() {
    let mut rng = Rng::new(6);
    for ty in QUANT_TYPES {
        let (rows, cols, t) = (100, 512, 9);
        let w = Weights::quantized(ty, &rng.vec(rows * cols, 1.0), rows, cols);
        let x = rng.vec(t * cols, 1.0);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run_matmul(kernels::Isa::best(), &w.matrix(), &x, None, t))
        };
        assert_eq!(run(1), run(3), "{ty}");
    }
}

#[test]
fn qmatrix_rejects_bad_sizes() {
    let buf = vec![0u64; 64];
    let bytes = bytemuck_u64(&buf);
    assert!(QMatrix::new(GgmlType::Q8_0, &bytes[..34 * 2], 2, 32).is_some());
    assert!(QMatrix::new(GgmlType::Q8_0, &bytes[..34 * 2], 2, 33).is_none(), "ragged cols");
    assert!(QMatrix::new(GgmlType::Q8_0, &bytes[..34 * 2 + 1], 2, 32).is_none(), "extra byte");
    assert!(QMatrix::new(GgmlType::F32, &bytes[1..9], 2, 1).is_none(), "misaligned f32");
    assert!(QMatrix::new(GgmlType::Q4K, &bytes[..144], 1, 256).is_some());
    assert!(QMatrix::new(GgmlType::F32, &bytes[..0], 0, 0).is_none(), "zero cols");
}

// ---- f32 ops against f64 references ---------------------------------------------

/// erf in f64 to ~1e-15: Taylor series below 2.5, continued fraction for erfc above.
fn erf64(x: f64) -> f64 {
    let z = x.abs();
    let r = if z < 2.5 {
        let (mut term, mut sum, mut n) = (z, z, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -z * z / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = z;
        for n in (1..80).rev() {
            f = z + (n as f64 / 2.0) / f;
        }
        1.0 - (-z * z).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

fn gelu64(x: f64) -> f64 {
    // Through erfc for negative x so the reference keeps its relative accuracy.
    let z = x / std::f64::consts::SQRT_2;
    if x >= 0.0 {
        0.5 * x * (1.0 + erf64(z))
    } else if z > -2.5 {
        0.5 * x * (1.0 + erf64(z))
    } else {
        let mut f = -z;
        for n in (1..80).rev() {
            f = -z + (n as f64 / 2.0) / f;
        }
        0.5 * x * (-z * z).exp() / (std::f64::consts::PI.sqrt() * f)
    }
}

/// GELU: relative error <= 1e-6 for |gelu| > 1e-30 on a fine grid over [-12, 12].
#[test]
fn gelu_matches_f64() {
    let xs: Vec<f32> = (-24000..=24000).map(|i| i as f32 * 5e-4).collect();
    for level in Isa::supported() {
        let mut y = xs.clone();
        at_level::gelu_erf(level, &mut y);
        let mut worst = (0.0f64, 0.0f32);
        for (&x, &g) in xs.iter().zip(&y) {
            let want = gelu64(x as f64);
            if want.abs() > 1e-30 {
                let e = ((g as f64 - want) / want).abs();
                if e > worst.0 {
                    worst = (e, x);
                }
            } else {
                assert!(g.abs() < 1e-28, "{level} gelu({x}) = {g}, want ~0");
            }
        }
        assert!(worst.0 <= 1e-6, "{level}: gelu rel error {:.2e} at x={}", worst.0, worst.1);
    }
}

/// Softmax: max abs error <= 1e-6 against f64, sums to 1, no NaN for large inputs.
#[test]
fn softmax_matches_f64() {
    let mut rng = Rng::new(7);
    for n in [1, 5, 17, 128, 513] {
        let x = rng.vec(n, 20.0);
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let exps: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        for level in Isa::supported() {
            let mut y = x.clone();
            at_level::softmax_inplace(level, &mut y);
            for i in 0..n {
                let e = (y[i] as f64 - exps[i] / total).abs();
                assert!(e <= 1e-6, "{level} n={n} i={i}: error {e:.2e}");
            }
        }
    }
    let mut big = vec![1e30f32, -1e30, 3.0e38, -3.0e38];
    at_level::softmax_inplace(Isa::best(), &mut big);
    assert!(big.iter().all(|v| v.is_finite()));
}

/// LayerNorm: max abs error <= 1e-5 x (1 + |want|) against f64, rows with a large mean.
#[test]
fn layer_norm_matches_f64() {
    let mut rng = Rng::new(8);
    for c in [1, 7, 80, 2560] {
        let t = 3;
        let mut x = rng.vec(t * c, 2.0);
        x.iter_mut().skip(c).take(c).for_each(|v| *v += 100.0);
        let w = rng.vec(c, 1.5);
        let b = rng.vec(c, 0.5);
        let mut want = vec![0.0f64; t * c];
        for r in 0..t {
            let row = &x[r * c..(r + 1) * c];
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            for i in 0..c {
                want[r * c + i] = (row[i] as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
            }
        }
        for level in Isa::supported() {
            let mut out = vec![f32::NAN; t * c];
            at_level::layer_norm(level, &x, &w, &b, 1e-5, &mut out, c);
            for i in 0..t * c {
                let e = (out[i] as f64 - want[i]).abs();
                assert!(e <= 1e-5 * (1.0 + want[i].abs()), "{level} c={c} i={i}: {} vs {}", out[i], want[i]);
            }
        }
    }
}

fn attention64(q: &[f32], k: &[f32], v: &[f32], mask: &[bool], t: usize, h: usize, d: usize) -> Vec<f64> {
    let hd = h * d;
    let mut out = vec![0.0f64; t * hd];
    for head in 0..h {
        for i in 0..t {
            let scores: Vec<f64> = (0..t)
                .map(|s| {
                    if !mask[s] {
                        return f64::NEG_INFINITY;
                    }
                    let dot: f64 = (0..d).map(|c| q[i * hd + head * d + c] as f64 * k[s * hd + head * d + c] as f64).sum();
                    dot / (d as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = if max == f64::NEG_INFINITY {
                vec![1.0 / t as f64; t] // all masked: the kernel's finite mask gives uniform
            } else {
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let z: f64 = e.iter().sum();
                e.iter().map(|x| x / z).collect()
            };
            for c in 0..d {
                out[i * hd + head * d + c] = (0..t).map(|s| p[s] * v[s * hd + head * d + c] as f64).sum();
            }
        }
    }
    out
}

/// Attention with head_dim 80 (a 16-column tail), 64, 40 and 24, up to 300 tokens (query
/// groups with short ends), and masked keys: max abs
/// error <= 1e-5 vs f64; a fully masked row stays finite. Each level first runs on a
/// longer all-NaN input, so NaNs left in the reused per-thread buffers (padding included)
/// would show.
#[test]
fn attention_matches_f64() {
    let mut rng = Rng::new(9);
    for level in Isa::supported() {
        let (t, h, d) = (70, 16, 88);
        let nan = vec![f32::NAN; t * h * d];
        let mut out = vec![0.0; t * h * d];
        kernels::attention_at_level(level, &nan, &nan, &nan, QkvLayout::TokenMajor, &vec![true; t], t, h, d, &mut out);
    }
    for (t, h, d) in [(1, 1, 80), (7, 2, 80), (33, 3, 80), (5, 2, 64), (40, 2, 40), (9, 1, 24), (300, 2, 80), (161, 1, 24)] {
        let hd = h * d;
        let q = rng.vec(t * hd, 1.0);
        let k = rng.vec(t * hd, 1.0);
        let v = rng.vec(t * hd, 1.0);
        for mask in [vec![true; t], (0..t).map(|s| s % 3 != 1).collect(), vec![false; t]] {
            let want = attention64(&q, &k, &v, &mask, t, h, d);
            for level in Isa::supported() {
                let mut out = vec![f32::NAN; t * hd];
                kernels::attention_at_level(level, &q, &k, &v, QkvLayout::TokenMajor, &mask, t, h, d, &mut out);
                for i in 0..t * hd {
                    let e = (out[i] as f64 - want[i]).abs();
                    assert!(e <= 1e-5, "{level} t={t} h={h} d={d} mask={mask:?} i={i}: {} vs {}", out[i], want[i]);
                }
                // The same sequence as rows 2..2 + t of 3 + t, head-major (one input of a batch).
                let rows = t + 3;
                let head_major = |m: &[f32]| -> Vec<f32> {
                    let mut hm = vec![f32::NAN; rows * hd]; // rows outside the sequence must not be read
                    for j in 0..h {
                        for s in 0..t {
                            hm[(j * rows + 2 + s) * d..][..d].copy_from_slice(&m[s * hd + j * d..][..d]);
                        }
                    }
                    hm
                };
                let (qh, kh, vh) = (head_major(&q), head_major(&k), head_major(&v));
                let mut out_h = vec![f32::NAN; t * hd];
                kernels::attention_at_level(level, &qh, &kh, &vh, QkvLayout::HeadMajor { rows, first_row: 2 }, &mask, t, h, d, &mut out_h);
                assert_eq!(out_h, out, "{level} t={t} h={h} d={d}: head-major differs from token-major");
            }
        }
    }
}

#[test]
fn isa_levels_parse_and_refuse_unsupported() {
    for level in Isa::ALL {
        assert_eq!(Isa::from_name(level.name()), Some(level));
    }
    assert_eq!(Isa::from_name("AVX2"), Some(Isa::Avx2));
    assert_eq!(Isa::from_name("sse9"), None);
    assert!(Isa::supported().contains(&Isa::Scalar));
    eprintln!("levels tested on this CPU: {:?}", Isa::supported());
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        assert_eq!(Isa::best(), Isa::Neon, "NEON with dotprod must be picked");
    }
    let unsupported = if cfg!(target_arch = "aarch64") { Isa::Avx2 } else { Isa::Neon };
    assert!(kernels::set_isa(unsupported).is_err(), "{unsupported} must be refused on this CPU");
    assert!(kernels::set_isa(Isa::best()).is_ok());
    assert_eq!(kernels::isa(), Isa::best());
}

/// Runs the packed GEMM at `level` into `parts` outputs prefilled with `prefill`.
#[allow(clippy::too_many_arguments)]
fn run_gemm(level: Isa, p: &PackedMatrix, x: &[f32], bias: Option<&[f32]>, t: usize, parts: usize, epilogue: Epilogue, prefill: &[f32]) -> Vec<f32> {
    let part_rows = p.rows / parts;
    let mut outs: Vec<Vec<f32>> = prefill.chunks(t * part_rows).map(|c| c.to_vec()).collect();
    let mut views: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
    kernels::gemm_at_level(level, p, x, t, bias, &mut views, epilogue, &mut MatmulScratch::new());
    outs.concat()
}

/// `parts` outputs of `[t, rows / parts]` laid out as one `[t, rows]` matrix.
fn join_parts(y: &[f32], t: usize, rows: usize, parts: usize) -> Vec<f32> {
    let pr = rows / parts;
    let mut out = vec![0.0; t * rows];
    for p in 0..parts {
        for tok in 0..t {
            out[tok * rows + p * pr..tok * rows + (p + 1) * pr].copy_from_slice(&y[p * t * pr + tok * pr..p * t * pr + (tok + 1) * pr]);
        }
    }
    out
}

/// The packing itself: the scalar reference on packed panels equals the scalar kernel on
/// the GGUF blocks bit for bit (same integer sums, same f32 operations in the same
/// order), on full-range random bytes and row counts that leave padded panels.
#[test]
fn packed_reference_equals_unpacked_scalar_exactly() {
    let mut rng = Rng::new(7);
    for ty in QUANT_TYPES {
        for &cols in SHAPES_COLS.iter().filter(|&&c| c % ty.block_size() == 0) {
            for rows in [1, 16, 37] {
                let w = Weights::raw_random(ty, rows, cols, &mut rng);
                let p = PackedMatrix::pack(&[&w.matrix()]).expect("packable").expect("memory");
                assert_eq!(p.panels() % 2, 0);
                let t = 3;
                let x = rng.vec(t * cols, 3.0);
                let want = run_matmul(Isa::Scalar, &w.matrix(), &x, None, t);
                let mut acts = QuantActs::default();
                kernels::quantize_acts(Isa::Scalar, ActFormat::for_weights(ty).unwrap(), &x, t, cols, &mut acts);
                for tok in 0..t {
                    for panel in 0..rows.div_ceil(PANEL_ROWS) {
                        let dots = kernels::packed::panel_dots_ref(&p, panel, &acts, tok);
                        for (i, &d) in dots.iter().enumerate() {
                            let r = panel * PANEL_ROWS + i;
                            if r < rows {
                                assert_eq!(d.to_bits(), want[tok * rows + r].to_bits(), "{ty} rows={rows} cols={cols} row {r} tok {tok}");
                            } else {
                                assert_eq!(d, 0.0, "{ty}: padding row {r} must give 0");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The largest `sum_i |x[tok, i] w[r, i]| + |bias[r]|` of a product: what the rounding
/// error of an f32 sum in another order is proportional to (|y| is not: a sum that
/// cancels to near zero keeps the rounding of its large terms).
fn max_term_magnitude(w: &[f32], x: &[f32], bias: &[f32], t: usize, cols: usize) -> f64 {
    let mut m = 0.0f64;
    for tok in 0..t {
        for (r, row) in w.chunks_exact(cols).enumerate() {
            let terms: f64 = row.iter().zip(&x[tok * cols..][..cols]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            m = m.max(terms + bias[r].abs() as f64);
        }
    }
    m
}

/// The packed GEMM at every level (SIMD microkernels, column chunks, token blocks of
/// every remainder) vs the scalar kernel on the GGUF blocks. Integer block sums are
/// exact; f32 summation order differs (per chunk of 512 columns, and Q4_K scales its
/// sub-blocks in f32), bound: max |diff| <= 2e-6 x the largest sum of |terms| of an
/// output. Outputs are NaN-prefilled,
/// split over 1 or 3 parts (fused Q/K/V), with bias.
#[test]
fn packed_gemm_matches_scalar_on_awkward_shapes() {
    let mut rng = Rng::new(8);
    for ty in QUANT_TYPES {
        for &cols in SHAPES_COLS.iter().filter(|&&c| c % ty.block_size() == 0) {
            for (rows, parts) in [(1, 1), (33, 1), (48, 3), (96, 3)] {
                let w = Weights::raw_random(ty, rows, cols, &mut rng);
                let p = PackedMatrix::pack(&[&w.matrix()]).expect("packable").expect("memory");
                let bias = rng.vec(rows, 0.5);
                // 53 tokens: enough token blocks for the next-chunk weight prefetch.
                for t in [1, 2, 5, 6, 7, 8, 13, 17, 53] {
                    let mut x = rng.vec(t * cols, 3.0);
                    for (i, v) in x.iter_mut().enumerate().filter(|(i, _)| i % 7 == 0) {
                        *v = if i % 2 == 0 { 3.0 } else { -3.0 };
                    }
                    let want = run_matmul(Isa::Scalar, &w.matrix(), &x, Some(&bias), t);
                    let magnitude = max_term_magnitude(&w.dequantized(), &x, &bias, t, cols);
                    for level in Isa::supported() {
                        let got = run_gemm(level, &p, &x, Some(&bias), t, parts, Epilogue::Store, &vec![f32::NAN; t * rows]);
                        assert!(got.iter().all(|v| v.is_finite()), "{ty} {level}: NaN left in the output");
                        let got = join_parts(&got, t, rows, parts);
                        let e = got.iter().zip(&want).map(|(&a, &b)| (a as f64 - b as f64).abs()).fold(0.0, f64::max) / magnitude;
                        assert!(e <= 2e-6, "{ty} {level} rows={rows} parts={parts} cols={cols} t={t}: rel diff {e:.2e}");
                    }
                }
            }
        }
    }
}

/// Epilogues: Accumulate adds to what is there; Gelu equals GELU of Store (same level);
/// StoreHeads writes exactly Store's values, each of 3 parts permuted to `[heads][t][d]`
/// (heads of 12 straddle the 32-row pairs and the parts' ends, heads of 48 fill a part).
#[test]
fn packed_gemm_epilogues() {
    let mut rng = Rng::new(9);
    let (rows, cols, t) = (144, 512, 9);
    for ty in QUANT_TYPES {
        let w = Weights::quantized(ty, &rng.vec(rows * cols, 1.0), rows, cols);
        let p = PackedMatrix::pack(&[&w.matrix()]).unwrap().unwrap();
        let x = rng.vec(t * cols, 1.0);
        let bias = rng.vec(rows, 1.0);
        for level in Isa::supported() {
            let plain = run_gemm(level, &p, &x, Some(&bias), t, 1, Epilogue::Store, &vec![f32::NAN; t * rows]);
            let start = rng.vec(t * rows, 10.0);
            let acc = run_gemm(level, &p, &x, Some(&bias), t, 1, Epilogue::Accumulate, &start);
            for i in 0..t * rows {
                assert!((acc[i] - (start[i] + plain[i])).abs() <= 1e-5 * (1.0 + start[i].abs()), "{ty} {level} accumulate {i}");
            }
            let gelu = run_gemm(level, &p, &x, Some(&bias), t, 1, Epilogue::Gelu, &vec![f32::NAN; t * rows]);
            let mut want = plain.clone();
            at_level::gelu_erf(level, &mut want);
            assert_eq!(gelu, want, "{ty} {level} gelu");
            let (parts, part_rows) = (3, rows / 3);
            let plain = run_gemm(level, &p, &x, Some(&bias), t, parts, Epilogue::Store, &vec![f32::NAN; t * rows]);
            for d in [12, 16, 48] {
                let got = run_gemm(level, &p, &x, Some(&bias), t, parts, Epilogue::StoreHeads(d), &vec![f32::NAN; t * rows]);
                for part in 0..parts {
                    for tok in 0..t {
                        for j in 0..part_rows {
                            let want = plain[part * t * part_rows + tok * part_rows + j];
                            let at = part * t * part_rows + (j / d) * t * d + tok * d + j % d;
                            assert_eq!(got[at].to_bits(), want.to_bits(), "{ty} {level} d={d} part {part} token {tok} row {j}");
                        }
                    }
                }
            }
        }
    }
}

/// Q, K and V packed into one matrix give the three separate products.
#[test]
fn packed_concat_equals_separate_matrices() {
    let mut rng = Rng::new(10);
    let (rows, cols, t) = (32, 256, 5);
    for ty in QUANT_TYPES {
        let ws: Vec<Weights> = (0..3).map(|_| Weights::raw_random(ty, rows, cols, &mut rng)).collect();
        let mats: Vec<QMatrix> = ws.iter().map(|w| w.matrix()).collect();
        let refs: Vec<&QMatrix> = mats.iter().collect();
        let fused = PackedMatrix::pack(&refs).unwrap().unwrap();
        let x = rng.vec(t * cols, 2.0);
        let level = Isa::best();
        let got = run_gemm(level, &fused, &x, None, t, 3, Epilogue::Store, &vec![f32::NAN; 3 * t * rows]);
        for (i, m) in mats.iter().enumerate() {
            let one = PackedMatrix::pack(&[m]).unwrap().unwrap();
            let want = run_gemm(level, &one, &x, None, t, 1, Epilogue::Store, &vec![f32::NAN; t * rows]);
            assert_eq!(&got[i * t * rows..(i + 1) * t * rows], &want[..], "{ty} part {i}");
        }
    }
}
