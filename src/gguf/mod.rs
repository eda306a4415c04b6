//! GGUF v3: a strict reader over a memory map and a streaming writer.
//!
//! Why not gguf-rs for this: its reader decodes metadata into untyped JSON values (so a
//! u32 and an i64 look alike and wrong key types cannot be refused), silently keeps the
//! last of duplicate keys, replaces invalid UTF-8, and its memory-mapped reader copies the
//! whole file into a Vec; its writer pre-fills the data section with zeros and then
//! seeks, writing every byte twice. gguf-rs stays as an independent reader in the tests.

pub mod keys;
mod read;
mod value;
mod write;

pub use read::{GgufFile, TensorInfo, MAX_HEADER_MEMORY};
pub use value::{Value, ValueType};
pub use write::GgufWriter;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;
