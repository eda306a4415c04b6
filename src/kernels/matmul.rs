//! The matmul executor: quantize the activations once, then rayon-parallel over tiles
//! of `TILE_ROWS` weight rows; each tile is computed for all tokens by the kernel of
//! the current ISA level, so a weight row is loaded (and, for the AVX-512 kernels,
//! repacked) once per tile and reused for every token.

use super::{SharedOut, isa, quantize_acts, scalar, ActFormat, Isa, QMatrix, QuantActs};
use rayon::prelude::*;
use std::cell::RefCell;

/// Weight rows per parallel work item.
pub const TILE_ROWS: usize = 16;

/// Reusable buffers for [`matmul_with_scratch`]: the quantized activations.
#[derive(Debug, Default)]
pub struct MatmulScratch {
    pub(crate) acts: QuantActs,
    /// The activations interleaved by token block, for the packed GEMM (see `gemm`).
    pub(crate) panels: super::gemm::ActPanels,
    /// Time spent quantizing activations since the last [`MatmulScratch::take_quant_time`].
    quant_time: std::time::Duration,
}

impl MatmulScratch {
    /// Quantizes `x` into `self.acts`, timing it.
    pub(crate) fn quantize(&mut self, level: Isa, format: ActFormat, x: &[f32], t: usize, cols: usize) {
        let start = std::time::Instant::now();
        quantize_acts(level, format, x, t, cols, &mut self.acts);
        self.quant_time += start.elapsed();
    }

    pub(crate) fn add_quant_time(&mut self, d: std::time::Duration) {
        self.quant_time += d;
    }

    /// Time spent quantizing activations since the last call (for profiles).
    pub fn take_quant_time(&mut self) -> std::time::Duration {
        std::mem::take(&mut self.quant_time)
    }
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Per-thread buffers for one tile: its outputs `[t, TILE_ROWS]` and the kernel's
/// repacked weights. They grow to the largest shape seen and are then reused.
#[derive(Default)]
#[allow(dead_code)] // `repack` is used only by the AVX-512 kernels.
pub(crate) struct TileScratch {
    pub out: Vec<f32>,
    pub repack: Vec<u8>,
    /// A short last tile's rows, padded to TILE_ROWS (AVX-512 repack).
    pub pad: Vec<u8>,
    pub row_f32: Vec<f32>,
}

thread_local! {
    static TILE_SCRATCH: RefCell<TileScratch> = RefCell::new(TileScratch::default());
}

/// y[t, o] = bias[o] + sum_i x[t, i] * W[o, i].   w: [rows, cols], x: [t, cols], y: [t, rows]
pub fn matmul(w: &QMatrix, x: &[f32], bias: Option<&[f32]>, y: &mut [f32], t: usize) {
    matmul_with_scratch(w, x, bias, y, t, false, &mut MatmulScratch::new());
}

/// y[t, o] += bias[o] + sum_i x[t, i] * W[o, i] (residual adds).   w: [rows, cols], x: [t, cols], y: [t, rows]
pub fn matmul_acc(w: &QMatrix, x: &[f32], bias: Option<&[f32]>, y: &mut [f32], t: usize) {
    matmul_with_scratch(w, x, bias, y, t, true, &mut MatmulScratch::new());
}

/// [`matmul`] (or [`matmul_acc`] when `accumulate`) with caller-owned scratch, so a
/// forward pass allocates its activation buffers once.
// w: [rows, cols], x: [t, cols], bias: [rows], y: [t, rows]
pub fn matmul_with_scratch(
    w: &QMatrix,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    t: usize,
    accumulate: bool,
    scratch: &mut MatmulScratch,
) {
    matmul_at_level(isa(), w, x, bias, y, t, accumulate, scratch)
}

/// As [`matmul_with_scratch`] at an explicit ISA level (for tests and benches);
/// a level the CPU lacks runs the scalar kernels.
#[allow(clippy::too_many_arguments)]
pub fn matmul_at_level(
    level: Isa,
    w: &QMatrix,
    x: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    t: usize,
    accumulate: bool,
    scratch: &mut MatmulScratch,
) {
    let (rows, cols) = (w.rows, w.cols);
    assert_eq!(x.len(), t * cols, "matmul: x has {} values, expected t={t} x cols={cols}", x.len());
    assert_eq!(y.len(), t * rows, "matmul: y has {} values, expected t={t} x rows={rows}", y.len());
    if let Some(b) = bias {
        assert_eq!(b.len(), rows, "matmul: bias has {} values, expected {rows}", b.len());
    }
    if t == 0 || rows == 0 {
        return;
    }
    let level = if level.is_supported() { level } else { Isa::Scalar };
    if let Some(format) = ActFormat::for_weights(w.ty) {
        scratch.quantize(level, format, x, t, cols);
    }
    let acts = &scratch.acts;
    let y_out = SharedOut(y.as_mut_ptr());
    let tiles = rows.div_ceil(TILE_ROWS);
    (0..tiles).into_par_iter().for_each(|tile| {
        let r0 = tile * TILE_ROWS;
        let nr = TILE_ROWS.min(rows - r0);
        TILE_SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let ts = &mut *guard;
            ts.out.clear();
            ts.out.resize(t * TILE_ROWS, f32::NAN);
            compute_tile(level, w, r0, nr, acts, x, t, ts);
            let bias = bias.map(|b| &b[r0..r0 + nr]);
            for tok in 0..t {
                // Safety: tiles cover disjoint column ranges r0..r0+nr of each output row
                // tok (in bounds: (tok, r0 + nr) <= (t - 1, rows)), so no two threads
                // touch the same elements; `y` stays mutably borrowed for the whole loop.
                let dst = unsafe { std::slice::from_raw_parts_mut(y_out.get().add(tok * rows + r0), nr) };
                write_tile_row(dst, &ts.out[tok * TILE_ROWS..tok * TILE_ROWS + nr], bias, accumulate);
            }
        });
    });
}

/// dst (+)= tile + bias, slice-wise so that it vectorizes.
#[inline]
fn write_tile_row(dst: &mut [f32], tile: &[f32], bias: Option<&[f32]>, accumulate: bool) {
    match (bias, accumulate) {
        (Some(b), true) => dst.iter_mut().zip(tile).zip(b).for_each(|((d, &v), &b)| *d += v + b),
        (Some(b), false) => dst.iter_mut().zip(tile).zip(b).for_each(|((d, &v), &b)| *d = v + b),
        (None, true) => dst.iter_mut().zip(tile).for_each(|(d, &v)| *d += v),
        (None, false) => dst.copy_from_slice(tile),
    }
}


/// The invariants the SIMD tile kernels' raw-pointer code relies on, checked once per
/// tile by each safe `tile` entry point (so no caller can make them read out of bounds):
/// the rows exist, the activations are `t` tokens of `w.cols` in the format of `w`'s
/// type (or `x` holds them, for float weights), and the output holds `t` tile rows.
// w: [rows, cols] (rows r0..r0+nr), acts/x: [t, cols], ts.out: [t, TILE_ROWS]
pub(crate) fn assert_tile_invariants(w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &TileScratch) {
    assert!(nr <= TILE_ROWS && r0 + nr <= w.rows, "tile rows {r0}+{nr} outside the matrix's {} (tile of {TILE_ROWS})", w.rows);
    match ActFormat::for_weights(w.ty) {
        Some(format) => assert!(
            acts.format == Some(format) && acts.cols == w.cols && acts.t >= t,
            "activations ({:?}, {} x {}) do not match {} weights of {} columns for {t} tokens",
            acts.format,
            acts.t,
            acts.cols,
            w.ty,
            w.cols
        ),
        None => assert!(x.len() >= t * w.cols, "{} activation values for {t} tokens of {} columns", x.len(), w.cols),
    }
    assert!(ts.out.len() >= t * TILE_ROWS, "tile output of {} values for {t} tokens", ts.out.len());
}

/// ts.out[tok * TILE_ROWS + r] = dot(W row r0 + r, token tok), r < nr, tok < t.
#[allow(clippy::too_many_arguments)]
fn compute_tile(level: Isa, w: &QMatrix, r0: usize, nr: usize, acts: &QuantActs, x: &[f32], t: usize, ts: &mut TileScratch) {
    #[cfg(target_arch = "x86_64")]
    {
        if matches!(level, Isa::Avx512 | Isa::Avx512Vnni) {
            if let Some(tok) = super::x86_avx512::Avx512::new() {
                if tok.tile(level == Isa::Avx512Vnni, w, r0, nr, acts, x, t, ts) {
                    return;
                }
            }
        }
        if matches!(level, Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni) {
            if let Some(tok) = super::x86_avx2::Avx2::new() {
                if tok.tile(w, r0, nr, acts, x, t, ts) {
                    return;
                }
            }
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if level == Isa::Neon {
            if let Some(tok) = super::aarch64_neon::Neon::new() {
                if tok.tile(w, r0, nr, acts, x, t, ts) {
                    return;
                }
            }
        }
    }
    let _ = level;
    for tok in 0..t {
        for r in 0..nr {
            ts.out[tok * TILE_ROWS + r] = scalar::dot_row(w, r0 + r, acts, tok, x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;

    /// The safe tile entry points refuse activations that do not match the weights
    /// (issue 10, defect 10: they used to trust their caller).
    #[test]
    fn tile_invariants_refuse_mismatched_activations() {
        let data = vec![0u16; 17 * 2]; // two Q8_0 rows of 32 (f16-aligned storage)
        // Safety: u16 storage viewed as its bytes (no padding, align 1).
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), 68) };
        let w = QMatrix::new(GgmlType::Q8_0, bytes, 2, 32).unwrap();
        let mut acts = QuantActs::default();
        let ts = TileScratch { out: vec![0.0; 4 * TILE_ROWS], ..Default::default() };
        // Q8_K activations (for Q4_K) against Q8_0 weights.
        super::super::quantize_acts(Isa::Scalar, ActFormat::Q8K, &[0.0; 256], 1, 256, &mut acts);
        let r = std::panic::catch_unwind(|| assert_tile_invariants(&w, 0, 2, &acts, &[], 1, &ts));
        assert!(r.is_err(), "wrong activation format must be refused");
        // Right format, too few tokens for t = 4.
        super::super::quantize_acts(Isa::Scalar, ActFormat::Q8_0, &[0.0; 32], 1, 32, &mut acts);
        assert!(std::panic::catch_unwind(|| assert_tile_invariants(&w, 0, 2, &acts, &[], 4, &ts)).is_err());
        // Rows past the matrix.
        assert!(std::panic::catch_unwind(|| assert_tile_invariants(&w, 1, 2, &acts, &[], 1, &ts)).is_err());
        // All consistent: accepted.
        assert_tile_invariants(&w, 0, 2, &acts, &[], 1, &ts);
    }
}
