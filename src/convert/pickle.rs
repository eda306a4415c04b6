//! PyTorch `pytorch_model.bin` checkpoints (the zip format of torch >= 1.6): a zip archive
//! holding `<top>/data.pkl`, a pickle describing the state dict, and one uncompressed
//! entry `<top>/data/<key>` per storage. The pickle is run by a VM that executes nothing
//! (see [`vm`]); tensors are byte ranges borrowed from a memory map of the whole file, so
//! a 14 GB checkpoint is never copied into RAM.

mod vm;

use super::source::{release_pages, DType, RawTensor, WeightSource};
use crate::error::{Error, Result};
use memmap2::Mmap;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use vm::{PickledTensor, StateDict, StorageClass};
use zip::{CompressionMethod, ZipArchive};

pub struct TorchBin {
    path: PathBuf,
    map: Mmap,
    tensors: BTreeMap<String, TensorEntry>,
}

/// A tensor resolved against the archive: its bytes are `map[start..end]` when it is
/// contiguous.
struct TensorEntry {
    class: &'static StorageClass,
    shape: Vec<usize>,
    stride: Vec<u64>,
    contiguous: bool,
    start: usize,
    end: usize,
}

/// Where a storage's bytes lie in the file.
#[derive(Clone, Copy)]
struct StorageBytes {
    start: u64,
    /// Bytes the entry holds.
    len: u64,
}

impl TorchBin {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // Safety: read-only map of a checkpoint file that we never modify; like every
        // reader of memory-mapped files we rely on nobody truncating it while we read.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut archive = open_archive(&map, path)?;
        let prefix = find_prefix(&archive, path)?;
        check_byte_order(&mut archive, &prefix, path)?;
        let pickle = read_pickle(&mut archive, &prefix, path)?;
        let state = vm::load_state_dict(&pickle, path)?;
        let tensors = resolve_tensors(&state, &mut archive, &prefix, map.len() as u64, path)?;
        drop(archive);
        Ok(TorchBin { path: path.to_path_buf(), map, tensors })
    }
}

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

fn open_archive<'a>(map: &'a Mmap, path: &Path) -> Result<Archive<'a>> {
    let bytes: &[u8] = map;
    ZipArchive::new(Cursor::new(bytes)).map_err(|e| {
        if bytes.first() == Some(&0x80) {
            // A bare pickle: torch.save before 1.6, or `_use_new_zipfile_serialization=False`.
            Error::format(
                path,
                "this is the legacy (pre-1.6) torch.save format, which is not supported; re-save it with a recent torch (torch.save(torch.load(f), f)) or convert it to safetensors",
            )
        } else if bytes.starts_with(b"PK") {
            Error::format(path, format!("cannot read the zip archive (truncated or corrupt file?): {e}"))
        } else {
            Error::format(path, format!("not a PyTorch checkpoint: not a zip archive ({e})"))
        }
    })
}

/// The archive's top folder (`archive/`, `pytorch_model/`, ...): the one holding `data.pkl`.
fn find_prefix(archive: &Archive<'_>, path: &Path) -> Result<String> {
    let mut found = archive
        .file_names()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .filter(|p| p.ends_with('/') && p.matches('/').count() == 1);
    match (found.next(), found.next()) {
        (Some(prefix), None) => Ok(prefix.to_string()),
        (None, _) => Err(Error::format(path, "zip archive has no `<folder>/data.pkl`; it is not a PyTorch checkpoint")),
        (Some(_), Some(_)) => Err(Error::format(path, "zip archive has more than one `<folder>/data.pkl`")),
    }
}

/// Reads a small entry whole (decompressing if needed), refusing more than `limit` bytes.
fn read_small(archive: &mut Archive<'_>, name: &str, limit: u64, path: &Path) -> Result<Option<Vec<u8>>> {
    let Some(index) = archive.index_for_name(name) else { return Ok(None) };
    let entry = archive.by_index(index).map_err(|e| Error::format(path, format!("cannot read `{name}`: {e}")))?;
    if entry.size() > limit {
        return Err(Error::format(path, format!("`{name}` is {} bytes, more than the {limit} allowed", entry.size())));
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::format(path, format!("cannot read `{name}` (truncated or corrupt?): {e}")))?;
    if out.len() as u64 > limit {
        return Err(Error::format(path, format!("`{name}` is more than the {limit} bytes allowed")));
    }
    Ok(Some(out))
}

fn check_byte_order(archive: &mut Archive<'_>, prefix: &str, path: &Path) -> Result<()> {
    // Torch writes `byteorder` since 1.13; older archives are little-endian.
    match read_small(archive, &format!("{prefix}byteorder"), 16, path)? {
        None => Ok(()),
        Some(b) if b == b"little" => Ok(()),
        Some(b) => Err(Error::format(
            path,
            format!("checkpoint byte order is {:?}; only little-endian checkpoints are supported", String::from_utf8_lossy(&b)),
        )),
    }
}

fn read_pickle(archive: &mut Archive<'_>, prefix: &str, path: &Path) -> Result<Vec<u8>> {
    let name = format!("{prefix}data.pkl");
    read_small(archive, &name, vm::MAX_PICKLE_BYTES, path)?
        .ok_or_else(|| Error::format(path, format!("zip archive has no `{name}`")))
}

/// Finds the uncompressed bytes of entry `<prefix>data/<key>`.
fn storage_bytes(archive: &mut Archive<'_>, prefix: &str, key: &str, file_len: u64, path: &Path) -> Result<StorageBytes> {
    let name = format!("{prefix}data/{key}");
    let index = archive.index_for_name(&name).ok_or_else(|| {
        Error::format(path, format!("storage `{key}` named by data.pkl is missing from the archive (no entry `{name}`)"))
    })?;
    let entry =
        archive.by_index_raw(index).map_err(|e| Error::format(path, format!("cannot read zip entry `{name}`: {e}")))?;
    if entry.encrypted() {
        return Err(Error::format(path, format!("zip entry `{name}` is encrypted")));
    }
    if entry.compression() != CompressionMethod::Stored {
        return Err(Error::format(
            path,
            format!("zip entry `{name}` is compressed ({}); torch stores tensor data uncompressed, re-save the checkpoint with torch.save", entry.compression()),
        ));
    }
    let (start, len) = (entry.data_start(), entry.compressed_size());
    if entry.size() != len || !matches!(start.checked_add(len), Some(end) if end <= file_len) {
        return Err(Error::format(path, format!("zip entry `{name}` lies outside the file (truncated?)")));
    }
    Ok(StorageBytes { start, len })
}

/// Row-major contiguity; dimensions of size 1 may have any stride (as in torch).
fn is_contiguous(shape: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

/// One past the largest storage element the view touches, or `None` on overflow.
fn view_extent(t: &PickledTensor) -> Option<u64> {
    if t.shape.contains(&0) {
        return Some(t.offset);
    }
    let mut last = t.offset;
    for (&n, &s) in t.shape.iter().zip(&t.stride) {
        last = last.checked_add((n - 1).checked_mul(s)?)?;
    }
    last.checked_add(1)
}

fn resolve_tensors(
    state: &StateDict,
    archive: &mut Archive<'_>,
    prefix: &str,
    file_len: u64,
    path: &Path,
) -> Result<BTreeMap<String, TensorEntry>> {
    let mut entries: HashMap<&str, StorageBytes> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for t in &state.tensors {
        let storage = &state.storages[t.storage];
        let bytes = match entries.get(storage.key.as_str()) {
            Some(b) => *b,
            None => {
                let b = storage_bytes(archive, prefix, &storage.key, file_len, path)?;
                entries.insert(&storage.key, b);
                b
            }
        };
        let elem = storage.class.elem_size;
        let storage_len = storage.numel.checked_mul(elem).filter(|&n| n <= bytes.len).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "storage `{}` should hold {} elements of {} bytes but its zip entry has only {} bytes",
                    storage.key, storage.numel, elem, bytes.len
                ),
            )
        })?;
        let extent = view_extent(t).filter(|&e| e <= storage.numel).ok_or_else(|| {
            Error::format(
                path,
                format!(
                    "tensor `{}` (offset {}, size {:?}, stride {:?}) lies outside its storage `{}` of {} elements",
                    t.name, t.offset, t.shape, t.stride, storage.key, storage.numel
                ),
            )
        })?;
        // `offset <= extent` and `extent * elem <= storage_len`, so nothing below overflows;
        // a contiguous view's element count is `extent - offset` (0 if any size is 0).
        let contiguous = is_contiguous(&t.shape, &t.stride);
        let start = bytes.start + t.offset * elem;
        let end = if contiguous { bytes.start + extent * elem } else { start };
        debug_assert!(end <= bytes.start + storage_len);
        let shape = t.shape.iter().map(|&n| n as usize).collect();
        let entry = TensorEntry {
            class: storage.class,
            shape,
            stride: t.stride.clone(),
            contiguous,
            start: start as usize,
            end: end as usize,
        };
        // Integer buffers such as `position_ids` are not weights (as in the safetensors reader).
        if entry.class.dtype.is_none() && t.name.ends_with("position_ids") {
            continue;
        }
        tensors.insert(t.name.clone(), entry);
    }
    Ok(tensors)
}

impl WeightSource for TorchBin {
    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        let Some(t) = self.tensors.get(name) else { return Ok(None) };
        let dtype: DType = t.class.dtype.ok_or_else(|| {
            Error::format(
                &self.path,
                format!("tensor `{name}` is stored as torch.{}; only float32, float16 and bfloat16 weights are supported", t.class.name),
            )
        })?;
        if !t.contiguous {
            return Err(Error::format(
                &self.path,
                format!("tensor `{name}` is not contiguous (size {:?}, stride {:?}); re-save it after .contiguous()", t.shape, t.stride),
            ));
        }
        Ok(Some(RawTensor { dtype, shape: t.shape.clone(), bytes: &self.map[t.start..t.end], file: &self.path }))
    }

    fn release(&self, bytes: &[u8]) {
        release_pages(&self.map, bytes);
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[1, 4], &[0, 1])); // position_ids = arange().expand(1, -1)
        assert!(!is_contiguous(&[3, 2], &[1, 3])); // a transpose
        assert!(is_contiguous(&[], &[]));
    }

    #[test]
    fn extent_overflow_is_none() {
        let t = PickledTensor { name: "t".into(), storage: 0, offset: 1, shape: vec![u64::MAX, 2], stride: vec![2, 1] };
        assert_eq!(view_extent(&t), None);
        let t = PickledTensor { name: "t".into(), storage: 0, offset: 3, shape: vec![2, 3], stride: vec![3, 1] };
        assert_eq!(view_extent(&t), Some(9));
    }
}
