//! Tensor element types (ggml's numbering) and the row-level quantize/dequantize
//! functions for each. The scalar `_ref` quantizers are the specification.

pub mod blocks;
pub mod q4_0;
pub mod q4_k;
pub mod q8;

pub use blocks::*;
pub use q4_0::{dequantize_row_q4_0, quantize_row_q4_0_ref};
pub use q4_k::{dequantize_row_q4_k, get_scale_min_k4, quantize_row_q4_k_ref};
pub use q8::{dequantize_row_q8_0, dequantize_row_q8_k, quantize_row_q8_0_ref, quantize_row_q8_k_ref};

use half::f16;

/// The tensor types xlmr reads and writes; discriminants are ggml's `ggml_type` ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4K = 12,
}

impl GgmlType {
    pub const ALL: [GgmlType; 5] = [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K];

    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// Lower-case name as on the command line and in `xlmr info`.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q4K => "q4_k",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name.to_ascii_lowercase())
    }

    /// Elements per block (1 for the float types).
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q8_0 => 32,
            GgmlType::Q4K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => std::mem::size_of::<BlockQ4_0>(),
            GgmlType::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            GgmlType::Q4K => std::mem::size_of::<BlockQ4K>(),
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of a row of `n` elements; `None` if `n` is not a whole number of blocks or the
    /// size does not fit in `usize` (`n` may come from a file).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        if n % self.block_size() != 0 {
            return None;
        }
        (n / self.block_size()).checked_mul(self.type_size())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Encodes one row of f32 values as `ty`, appending the bytes to `out`.
/// Panics if the row is not a whole number of blocks (callers pick a type that fits).
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    fn encode<B: Block>(x: &[f32], out: &mut Vec<u8>, f: fn(&[f32], &mut [B]), zero: B) {
        let mut blocks = vec![zero; x.len() / B::WEIGHTS];
        f(x, &mut blocks);
        out.extend_from_slice(blocks_as_bytes(&blocks));
    }
    let zero_f16 = f16::ZERO;
    match ty {
        GgmlType::F32 => out.extend_from_slice(f32_as_bytes(x)),
        GgmlType::F16 => {
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            out.extend_from_slice(f16_as_bytes(&h));
        }
        GgmlType::Q8_0 => encode(x, out, quantize_row_q8_0_ref, BlockQ8_0 { d: zero_f16, qs: [0; 32] }),
        GgmlType::Q4_0 => encode(x, out, quantize_row_q4_0_ref, BlockQ4_0 { d: zero_f16, qs: [0; 16] }),
        GgmlType::Q4K => encode(
            x,
            out,
            quantize_row_q4_k_ref,
            BlockQ4K { d: zero_f16, dmin: zero_f16, scales: [0; 12], qs: [0; 128] },
        ),
    }
}

/// Decodes `y.len()` elements of type `ty` from `bytes` (a whole number of rows).
/// Returns `None` if the byte length does not match or the bytes are misaligned.
pub fn dequantize(ty: GgmlType, bytes: &[u8], y: &mut [f32]) -> Option<()> {
    if ty.row_bytes(y.len())? != bytes.len() {
        return None;
    }
    match ty {
        GgmlType::F32 => y.copy_from_slice(f32_from_bytes(bytes)?),
        GgmlType::F16 => {
            for (o, h) in y.iter_mut().zip(f16_from_bytes(bytes)?) {
                *o = h.to_f32();
            }
        }
        GgmlType::Q8_0 => dequantize_row_q8_0(blocks_from_bytes(bytes)?, y),
        GgmlType::Q4_0 => dequantize_row_q4_0(blocks_from_bytes(bytes)?, y),
        GgmlType::Q4K => dequantize_row_q4_k(blocks_from_bytes(bytes)?, y),
    }
    Some(())
}
