//! Compute kernels: quantized matmul, attention, LayerNorm, GELU, softmax.
//!
//! Each kernel has a scalar reference in [`scalar`]; SIMD versions live in one module
//! per instruction set and are chosen at runtime by CPU feature detection (see
//! [`isa`]), so a release binary built on any x86-64 runs its best kernels everywhere.
//! Matmuls quantize each activation row once to int8 blocks and take integer dot
//! products per block, ggml style. Parallelism is rayon's: callers install a pool.

mod attention;
mod gemm;
mod generic;
mod isa;
pub mod limits;
mod matmul;
pub mod packed;
pub mod scalar;

#[cfg(target_arch = "aarch64")]
pub mod aarch64_neon;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_avx2_gemm;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_gemm;

pub use attention::{attention, attention_at_level, QkvLayout, MASKED_SCORE};
pub use isa::{init_isa_from_env, isa, set_isa, Isa};

/// The small kernels at an explicit ISA level (for tests and benches).
pub mod at_level {
    pub use super::isa::{axpy, gelu_erf, layer_norm, quantize_row_q8_0, quantize_row_q8_k, softmax_inplace, vec_dot_f32};
}
pub use gemm::{gemm, gemm_at_level, gemm_has_kernel, Epilogue};
pub use packed::{PackedMatrix, PANEL_ROWS};
pub use matmul::{matmul, matmul_acc, matmul_at_level, matmul_with_scratch, MatmulScratch, TILE_ROWS};

use crate::quant::{blocks_from_bytes, f16_from_bytes, f32_from_bytes, Block, GgmlType, QK_K};
use half::f16;
use rayon::prelude::*;

/// A weight matrix as stored in GGUF: `rows` output features, each a row of `cols`
/// input features encoded as `ty`.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    pub ty: GgmlType,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> QMatrix<'a> {
    /// `None` unless `cols` is a whole number of blocks, `data` holds exactly
    /// `rows` rows, and `data` is aligned for the block type.
    pub fn new(ty: GgmlType, data: &'a [u8], rows: usize, cols: usize) -> Option<Self> {
        let row_bytes = ty.row_bytes(cols)?;
        if cols == 0 || row_bytes.checked_mul(rows)? != data.len() {
            return None;
        }
        let aligned = match ty {
            GgmlType::F32 => f32_from_bytes(data).is_some(),
            GgmlType::F16 => f16_from_bytes(data).is_some(),
            GgmlType::Q8_0 => blocks_from_bytes::<crate::quant::BlockQ8_0>(data).is_some(),
            GgmlType::Q4_0 => blocks_from_bytes::<crate::quant::BlockQ4_0>(data).is_some(),
            GgmlType::Q4K => blocks_from_bytes::<crate::quant::BlockQ4K>(data).is_some(),
        };
        aligned.then_some(QMatrix { ty, data, rows, cols })
    }

    pub(crate) fn row_bytes(&self, row: usize) -> &'a [u8] {
        let n = self.ty.row_bytes(self.cols).expect("validated in new");
        &self.data[row * n..(row + 1) * n]
    }

    /// Row `row` as blocks; panics if `B` is not this matrix's block type.
    pub fn row_blocks<B: Block>(&self, row: usize) -> &'a [B] {
        blocks_from_bytes(self.row_bytes(row)).expect("validated in new")
    }

    pub fn row_f32(&self, row: usize) -> &'a [f32] {
        f32_from_bytes(self.row_bytes(row)).expect("validated in new")
    }

    pub fn row_f16(&self, row: usize) -> &'a [f16] {
        f16_from_bytes(self.row_bytes(row)).expect("validated in new")
    }
}

/// The int8 encoding of activations that a weight type is multiplied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// One f32 scale per 32 values (for Q8_0 and Q4_0 weights).
    Q8_0,
    /// One f32 scale per 256 values, maximum magnitude at -127 (ggml's Q8_K, for Q4_K).
    Q8K,
}

impl ActFormat {
    pub fn for_weights(ty: GgmlType) -> Option<Self> {
        match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 => Some(ActFormat::Q8_0),
            GgmlType::Q4K => Some(ActFormat::Q8K),
            GgmlType::F32 | GgmlType::F16 => None,
        }
    }

    fn scale_block(self) -> usize {
        match self {
            ActFormat::Q8_0 => 32,
            ActFormat::Q8K => QK_K,
        }
    }
}

/// Quantized activation rows `[t, cols]`: int8 values, a scale per block, and the sum
/// of each 32 values (for the offset terms of Q4_0 and Q4_K). Buffers are reused.
#[derive(Debug, Default)]
pub struct QuantActs {
    format: Option<ActFormat>,
    cols: usize,
    t: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    sums: Vec<i32>,
    /// `sums` as f32, for kernels that apply the sums in float.
    sums_f32: Vec<f32>,
}

impl QuantActs {
    /// Sizes the buffers for `t` rows of `cols` (grows, never shrinks).
    pub fn reset(&mut self, format: ActFormat, t: usize, cols: usize) {
        assert!(cols % format.scale_block() == 0, "activation row length {cols} is not a multiple of {}", format.scale_block());
        self.format = Some(format);
        self.cols = cols;
        self.t = t;
        self.qs.resize(t * cols, 0);
        self.d.resize(t * cols / format.scale_block(), 0.0);
        self.sums.resize(t * cols / 32, 0);
        self.sums_f32.resize(t * cols / 32, 0.0);
    }

    pub fn format(&self) -> Option<ActFormat> {
        self.format
    }

    pub fn qs(&self, tok: usize) -> &[i8] {
        &self.qs[tok * self.cols..(tok + 1) * self.cols]
    }

    pub fn d(&self, tok: usize) -> &[f32] {
        let n = self.cols / self.format.expect("reset first").scale_block();
        &self.d[tok * n..(tok + 1) * n]
    }

    pub fn sums(&self, tok: usize) -> &[i32] {
        let n = self.cols / 32;
        &self.sums[tok * n..(tok + 1) * n]
    }

    pub fn sums_f32(&self, tok: usize) -> &[f32] {
        let n = self.cols / 32;
        &self.sums_f32[tok * n..(tok + 1) * n]
    }

    /// Mutable views of one row: (qs, d, sums).
    pub fn row_mut(&mut self, tok: usize) -> (&mut [i8], &mut [f32], &mut [i32]) {
        let nd = self.cols / self.format.expect("reset first").scale_block();
        let ns = self.cols / 32;
        (
            &mut self.qs[tok * self.cols..(tok + 1) * self.cols],
            &mut self.d[tok * nd..(tok + 1) * nd],
            &mut self.sums[tok * ns..(tok + 1) * ns],
        )
    }
}

/// The whole scale blocks of `block` values in an activation row `x`, once the outputs
/// are checked to hold them (a scale per block, a sum per 32 values): the bounds the SIMD
/// quantizers rely on.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn checked_row_blocks(x: &[f32], block: usize, qs: &[i8], d: &[f32], sums: &[i32]) -> usize {
    let blocks = x.len() / block;
    assert!(
        qs.len() >= block * blocks && d.len() >= blocks && sums.len() >= block / 32 * blocks,
        "quantizing a row of {} values: short outputs",
        x.len()
    );
    blocks
}

/// Quantizes `t` rows of `x` (`[t, cols]`) into `acts` with the kernels of `level`.
pub fn quantize_acts(level: Isa, format: ActFormat, x: &[f32], t: usize, cols: usize, acts: &mut QuantActs) {
    assert_eq!(x.len(), t * cols, "quantize_acts: x has {} values, expected {t} x {cols}", x.len());
    acts.reset(format, t, cols);
    let nd = cols / format.scale_block();
    let ns = cols / 32;
    // Tokens are independent: quantize them in parallel (a few per task).
    acts.qs
        .par_chunks_mut(cols)
        .zip(acts.d.par_chunks_mut(nd))
        .zip(acts.sums.par_chunks_mut(ns))
        .zip(x.par_chunks(cols))
        .with_min_len(4)
        .for_each(|(((qs, d), sums), xr)| match format {
            ActFormat::Q8_0 => isa::quantize_row_q8_0(level, xr, qs, d, sums),
            ActFormat::Q8K => isa::quantize_row_q8_k(level, xr, qs, d, sums),
        });
    for (f, &s) in acts.sums_f32.iter_mut().zip(&acts.sums) {
        *f = s as f32;
    }
}

/// out[t, :] = (x[t, :] - mean) / sqrt(var + eps) * w + b.   x, out: [t, c]; w, b: [c]
pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
    assert!(c > 0 && x.len() % c == 0 && out.len() == x.len() && w.len() == c && b.len() == c, "layer_norm: bad shapes");
    let level = isa();
    // Rows are independent: a few per task.
    x.par_chunks(4 * c).zip(out.par_chunks_mut(4 * c)).for_each(|(xr, or)| isa::layer_norm(level, xr, w, b, eps, or, c));
}

/// Exact (erf) GELU in place, ~1e-7 relative error.
pub fn gelu_erf(x: &mut [f32]) {
    let level = isa();
    // Element-wise: chunks big enough to amortize a task, small enough to split [t, 10240].
    x.par_chunks_mut(1 << 14).for_each(|chunk| isa::gelu_erf(level, chunk));
}

/// Numerically stable softmax of one row, in place.
pub fn softmax_inplace(x: &mut [f32]) {
    isa::softmax_inplace(isa(), x);
}

/// Prefetches the `len` bytes at `p`, line by line, with `HINT` (`_MM_HINT_T0` to read,
/// `_MM_HINT_ET0` to write). A prefetch never faults, so `p` may point anywhere.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_lines<const HINT: i32>(p: *const u8, len: usize) {
    for off in (0..len).step_by(64) {
        // Safety: a prefetch never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p.wrapping_add(off).cast()) };
    }
}

/// A raw output pointer that rayon tasks may share because each writes disjoint elements
/// (matmul: disjoint row ranges of every token; attention: disjoint heads).
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// Safety: only used for disjoint writes; each user states why its writes are disjoint.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
