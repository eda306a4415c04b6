//! Block layouts, bit-compatible with ggml (`ggml-common.h`). Each block is a plain
//! `#[repr(C)]` struct with a compile-time size assert, so a `&[u8]` from a GGUF file
//! can be viewed as a slice of blocks without copying.

use half::f16;
use std::mem::size_of;

/// Weights per block for Q8_0 and Q4_0.
pub const QK8_0: usize = 32;
pub const QK4_0: usize = 32;
/// Weights per super-block for the K-quants.
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in a Q4_K super-block.
pub const K_SCALE_SIZE: usize = 12;

/// Q8_0: `x[i] = d * qs[i]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK8_0],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

/// Q4_0: `x[i] = d * (q[i] - 8)`; byte j holds element j in its low nibble and
/// element j + 16 in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK4_0 / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

/// Q4_K: 8 sub-blocks of 32, each with a 6-bit scale and a 6-bit min:
/// `x = d * sc * q - dmin * m`. Bytes `qs[32*c .. 32*c+32]` hold sub-block 2c in their
/// low nibbles and sub-block 2c+1 in their high nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Q8_K: activations quantized for dot products with K-quants. `bsums[i]` is the sum
/// of `qs[16*i .. 16*i+16]`, so the min term of Q4_K needs no second pass.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

/// Marker for the plain-old-data block types above: every bit pattern is a valid value
/// and there is no padding, so byte views in both directions are sound.
///
/// # Safety
/// Implement only for `#[repr(C)]` types without padding whose fields accept any bits.
pub unsafe trait Block: Copy + 'static {
    /// Weights per block.
    const WEIGHTS: usize;
}
// Safety: all four are repr(C), padding-free (asserted sizes equal the field sums), and
// made of integers and floats, for which every bit pattern is valid.
unsafe impl Block for BlockQ8_0 {
    const WEIGHTS: usize = QK8_0;
}
unsafe impl Block for BlockQ4_0 {
    const WEIGHTS: usize = QK4_0;
}
unsafe impl Block for BlockQ4K {
    const WEIGHTS: usize = QK_K;
}
unsafe impl Block for BlockQ8K {
    const WEIGHTS: usize = QK_K;
}

/// Views bytes as blocks; `None` if the length is not a whole number of blocks or the
/// pointer is misaligned for the block type.
pub fn blocks_from_bytes<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = size_of::<B>();
    if bytes.len() % size != 0 || (bytes.as_ptr() as usize) % std::mem::align_of::<B>() != 0 {
        return None;
    }
    // Safety: length and alignment were checked above, and `B: Block` accepts any bits.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Views blocks as their bytes (for writing them to a file).
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // Safety: `B: Block` has no padding, so every byte is initialized; u8 has align 1.
    unsafe { std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks)) }
}

/// Views f32s as bytes (little-endian targets only; GGUF is little-endian).
pub fn f32_as_bytes(x: &[f32]) -> &[u8] {
    // Safety: f32 has no padding and every byte is initialized; u8 has align 1.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// Views u16s as mutable bytes (2-aligned byte buffers, e.g. for whole blocks).
pub fn u16_as_bytes_mut(x: &mut [u16]) -> &mut [u8] {
    // Safety: u16 has no padding and any byte values form valid u16s; u8 has align 1.
    unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// Views f16s as bytes.
pub fn f16_as_bytes(x: &[f16]) -> &[u8] {
    // Safety: as for f32_as_bytes.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

/// Views bytes as f32s; `None` on a misaligned pointer or a ragged length.
pub fn f32_from_bytes(bytes: &[u8]) -> Option<&[f32]> {
    if bytes.len() % 4 != 0 || (bytes.as_ptr() as usize) % 4 != 0 {
        return None;
    }
    // Safety: length and alignment checked; every bit pattern is a valid f32.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) })
}

/// Views bytes as f16s; `None` on a misaligned pointer or a ragged length.
pub fn f16_from_bytes(bytes: &[u8]) -> Option<&[f16]> {
    if bytes.len() % 2 != 0 || (bytes.as_ptr() as usize) % 2 != 0 {
        return None;
    }
    // Safety: length and alignment checked; every bit pattern is a valid f16.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f16>(), bytes.len() / 2) })
}
