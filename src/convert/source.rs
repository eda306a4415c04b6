//! Where converter weights come from: one interface over safetensors (single or sharded)
//! and PyTorch `.bin` (zip + pickle) checkpoints. Tensors are borrowed from memory maps;
//! the converter reads them row block by row block and releases pages behind it, so RSS
//! stays bounded whatever the checkpoint size.

use crate::error::{Error, Result};
use half::{bf16, f16};
use std::path::Path;

/// Element types a checkpoint may store floats in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

/// A contiguous, row-major tensor in a source file. `bytes` may be unaligned.
pub struct RawTensor<'a> {
    pub dtype: DType,
    /// PyTorch order: `[out, in]` for a linear weight.
    pub shape: Vec<usize>,
    pub bytes: &'a [u8],
    /// The file the bytes live in (for error messages).
    pub file: &'a Path,
}

impl RawTensor<'_> {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Converts elements `start .. start + out.len()` to f32. Works on unaligned bytes.
    pub fn read_f32(&self, start: usize, out: &mut [f32]) {
        let sz = self.dtype.size();
        let bytes = &self.bytes[start * sz..(start + out.len()) * sz];
        match self.dtype {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
}

/// A checkpoint's tensors by Hugging Face name.
pub trait WeightSource: Send + Sync {
    /// Every tensor name in the checkpoint.
    fn names(&self) -> Vec<String>;
    /// The tensor, or `Ok(None)` if the checkpoint has no tensor of that name.
    fn get(&self, name: &str) -> Result<Option<RawTensor<'_>>>;
    /// Hint that the converter is done with `bytes` (of a tensor returned by `get`):
    /// their pages may leave this process's resident set.
    fn release(&self, _bytes: &[u8]) {}
    /// A description for messages, e.g. the file path.
    fn describe(&self) -> String;
}

/// Opens the weights in a Hugging Face model folder, preferring (in order) a sharded
/// safetensors index, `model.safetensors`, then `pytorch_model.bin`.
pub fn open_weights(dir: &Path) -> Result<Box<dyn WeightSource>> {
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    if index.exists() {
        Ok(Box::new(super::safetensors::SafetensorsSource::open_sharded(&index)?))
    } else if single.exists() {
        Ok(Box::new(super::safetensors::SafetensorsSource::open_files(&[single])?))
    } else if bin.exists() {
        Ok(Box::new(super::pickle::TorchBin::open(&bin)?))
    } else {
        Err(Error::format(
            dir,
            "no weights found: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin",
        ))
    }
}

/// Drops the resident pages of `bytes` (a sub-slice of `map`) from this process.
pub(crate) fn release_pages(map: &memmap2::Mmap, bytes: &[u8]) {
    let base = map.as_ptr() as usize;
    let start = bytes.as_ptr() as usize;
    if start < base || start + bytes.len() > base + map.len() {
        return;
    }
    // Round inward to whole pages; partial pages at the ends stay resident (harmless).
    let page = 4096;
    let lo = (start - base).div_ceil(page) * page;
    let hi = (start - base + bytes.len()) / page * page;
    if hi > lo {
        // Safety: the map is a read-only file mapping; DONTNEED only drops our page-table
        // entries, and later reads fault the same file contents back in. No references
        // into the range are invalidated because the data is unchanged.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, lo, hi - lo) };
    }
}
