//! The packed-weights cache (`XLMR_PACK_CACHE=DIR`): the encoder's packed matrices
//! written once to a file in DIR, then mapped read-only by every later load of the same
//! model instead of packed again.
//!
//! Packing at load copies every matrix into fresh memory, and most of that time is the
//! kernel zeroing the new pages (~70 % of a full-size XL load in a profile); a mapping
//! costs nothing until its pages are read. They are page-cache pages, so processes that
//! load the same model share one copy of the packed weights, which packing at load
//! cannot do.
//!
//! A cache file is named after the model file (its name and a hash of its full path) and
//! a key that changes with the model (its size, modification time and GGUF header) and with
//! the panel layout ([`LAYOUT_VERSION`]). It is only a cache: a file that is missing,
//! stale, truncated or malformed in any way is ignored and written again; it never makes a
//! load fail. Writing a model's new cache file removes its older ones (same path, other
//! key), so updating a model does not leave gigabytes behind; a process still mapping an
//! old one keeps it until it exits.
//!
//! Layout, little-endian: `XLMRPACK`, u32 layout version, u32 0, u64 key, u64 count, then
//! per matrix `[u32 type id, u32 0, u64 rows, u64 cols, u64 offset, u64 length]`, then the
//! matrices' bytes, each at an offset that is a multiple of 64 KiB (whole pages on every
//! page size Linux uses).

use crate::gguf::GgufFile;
use crate::kernels::PackedMatrix;
use crate::quant::GgmlType;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"XLMRPACK";
/// Bumped whenever the panel layout of [`PackedMatrix`] changes.
const LAYOUT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 32;
const ENTRY_BYTES: usize = 40;
const DATA_ALIGN: usize = 1 << 16;

/// The cache directory from `XLMR_PACK_CACHE`, if set and not empty.
pub fn dir_from_env() -> Option<PathBuf> {
    std::env::var_os("XLMR_PACK_CACHE").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// One matrix a cache file holds: its type and shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
}

/// Where the cache file of one model lives, and the key it must carry.
#[derive(Clone, Debug)]
pub struct CacheFile {
    pub path: PathBuf,
    /// The start of the names of this model's cache files, whatever their key.
    prefix: String,
    key: u64,
}

impl CacheFile {
    /// The cache file in `dir` for the model `file`.
    pub fn for_model(dir: &Path, file: &GgufFile) -> std::io::Result<Self> {
        let meta = std::fs::metadata(&file.path)?;
        let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut key = Fnv::new();
        key.write(&LAYOUT_VERSION.to_le_bytes());
        key.write(&meta.len().to_le_bytes());
        key.write(&mtime.to_le_bytes());
        key.write(file.header_bytes());
        let stem = file.path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy());
        let mut at = Fnv::new();
        at.write(std::fs::canonicalize(&file.path)?.as_os_str().as_encoded_bytes());
        let prefix = format!("{stem}-{:08x}-", at.0 as u32);
        Ok(CacheFile { path: dir.join(format!("{prefix}{:016x}.xlmrpack", key.0)), prefix, key: key.0 })
    }

    /// The matrices of a valid cache file holding exactly `shapes`, in order; `None` if
    /// there is none (missing, stale or malformed).
    pub fn load(&self, shapes: &[Shape]) -> Option<Vec<PackedMatrix>> {
        let file = std::fs::File::open(&self.path).ok()?;
        // Safety: a read-only map. Cache files are written whole under a temporary name
        // and renamed into place, never modified in place; a process that replaces or
        // removes one renames a new file over the name or unlinks it, which leaves this
        // mapping's file intact until it is unmapped.
        let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.ok()?);
        let ranges = parse(&map, self.key, shapes)?;
        ranges.into_iter().zip(shapes).map(|(range, s)| PackedMatrix::from_mapped(s.ty, s.rows, s.cols, map.clone(), range)).collect()
    }

    /// Writes `matrices` as this cache file: under a temporary name in the same
    /// directory, then renamed into place, so that no reader sees a partial file.
    pub fn store(&self, matrices: &[&PackedMatrix]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut header = Vec::with_capacity(HEADER_BYTES + ENTRY_BYTES * matrices.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&self.key.to_le_bytes());
        header.extend_from_slice(&(matrices.len() as u64).to_le_bytes());
        let mut offset = (HEADER_BYTES + ENTRY_BYTES * matrices.len()).next_multiple_of(DATA_ALIGN);
        let mut offsets = Vec::with_capacity(matrices.len());
        for m in matrices {
            header.extend_from_slice(&(m.ty as u32).to_le_bytes());
            header.extend_from_slice(&0u32.to_le_bytes());
            for v in [m.rows, m.cols, offset, m.len_bytes()] {
                header.extend_from_slice(&(v as u64).to_le_bytes());
            }
            offsets.push(offset);
            offset = (offset + m.len_bytes()).next_multiple_of(DATA_ALIGN);
        }
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            w.write_all(&header)?;
            let mut pos = header.len();
            for (m, &at) in matrices.iter().zip(&offsets) {
                w.write_all(&vec![0u8; at - pos])?;
                w.write_all(m.bytes())?;
                pos = at + m.len_bytes();
            }
            w.flush()?;
        }
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path).map_err(|e| e.error)?;
        self.remove_older(dir);
        Ok(())
    }

    /// Removes this model's cache files with other keys (errors ignored: a cache).
    fn remove_older(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for path in entries.flatten().map(|e| e.path()) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if path != self.path && name.starts_with(&self.prefix) && name.ends_with(".xlmrpack") {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The byte range of each matrix, if `map` is a cache file with key `key` holding
/// exactly `shapes`, the ranges in order after the header, inside the file and disjoint.
fn parse(map: &[u8], key: u64, shapes: &[Shape]) -> Option<Vec<Range<usize>>> {
    let u32_at = |o: usize| Some(u32::from_le_bytes(map.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(map.get(o..o + 8)?.try_into().ok()?));
    let usize_at = |o: usize| usize::try_from(u64_at(o)?).ok();
    if map.get(..8)? != MAGIC || u32_at(8)? != LAYOUT_VERSION || u64_at(16)? != key || usize_at(24)? != shapes.len() {
        return None;
    }
    let mut ranges = Vec::with_capacity(shapes.len());
    // Matrices follow the header and each other, without overlapping.
    let mut free_from = HEADER_BYTES + ENTRY_BYTES * shapes.len();
    for (i, s) in shapes.iter().enumerate() {
        let e = HEADER_BYTES + ENTRY_BYTES * i;
        let (ty, rows, cols, offset, len) = (u32_at(e)?, usize_at(e + 8)?, usize_at(e + 16)?, usize_at(e + 24)?, usize_at(e + 32)?);
        let end = offset.checked_add(len)?;
        let fits = ty == s.ty as u32 && rows == s.rows && cols == s.cols && Some(len) == PackedMatrix::packed_len(s.ty, rows, cols);
        if !fits || !offset.is_multiple_of(DATA_ALIGN) || offset < free_from || end > map.len() {
            return None;
        }
        ranges.push(offset..end);
        free_from = end;
    }
    Some(ranges)
}

/// 64-bit FNV-1a: a hash that stays the same across builds, for the cache key.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<Shape> {
        vec![Shape { ty: GgmlType::Q8_0, rows: 40, cols: 64 }, Shape { ty: GgmlType::Q4K, rows: 16, cols: 256 }]
    }

    /// A well-formed file for `shapes()` with key 7, as `store` writes it.
    fn valid() -> Vec<u8> {
        let lens: Vec<usize> = shapes().iter().map(|s| PackedMatrix::packed_len(s.ty, s.rows, s.cols).unwrap()).collect();
        let mut f = Vec::new();
        f.extend_from_slice(MAGIC);
        f.extend_from_slice(&LAYOUT_VERSION.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&7u64.to_le_bytes());
        f.extend_from_slice(&2u64.to_le_bytes());
        let offsets = [DATA_ALIGN, 2 * DATA_ALIGN];
        for ((s, len), off) in shapes().iter().zip(&lens).zip(offsets) {
            f.extend_from_slice(&(s.ty as u32).to_le_bytes());
            f.extend_from_slice(&0u32.to_le_bytes());
            for v in [s.rows, s.cols, off, *len] {
                f.extend_from_slice(&(v as u64).to_le_bytes());
            }
        }
        f.resize(2 * DATA_ALIGN + lens[1], 0);
        f
    }

    #[test]
    fn parse_accepts_exactly_the_expected_file() {
        let f = valid();
        let ranges = parse(&f, 7, &shapes()).expect("valid file");
        assert_eq!(ranges[0].start, DATA_ALIGN);
        assert_eq!(ranges[1].end, f.len());
        // Each way a file can be wrong or stale: refused, never a panic.
        assert!(parse(&f, 8, &shapes()).is_none(), "other key");
        assert!(parse(&f[..f.len() - 1], 7, &shapes()).is_none(), "truncated data");
        assert!(parse(&f[..100], 7, &shapes()).is_none(), "truncated header");
        assert!(parse(&f, 7, &shapes()[..1]).is_none(), "other matrix count");
        let mut other = shapes();
        other[1].rows = 32;
        assert!(parse(&f, 7, &other).is_none(), "other shape");
        for (at, byte) in [(0, b'Y'), (8, 2), (HEADER_BYTES, 2), (HEADER_BYTES + 24, 1), (HEADER_BYTES + ENTRY_BYTES + 39, 0xFF)] {
            let mut bad = f.clone();
            bad[at] = byte;
            assert!(parse(&bad, 7, &shapes()).is_none(), "byte {at} set to {byte}");
        }
        for cut in 0..HEADER_BYTES + 2 * ENTRY_BYTES {
            assert!(parse(&f[..cut], 7, &shapes()).is_none(), "cut at {cut}");
        }
        // Any header byte set to any of these values: refused, or (a reserved field) the
        // same ranges, each inside the file and of the matrix's packed length.
        for at in 0..HEADER_BYTES + 2 * ENTRY_BYTES {
            for value in [0x00, 0x01, 0x7F, 0x80, 0xFF, f[at] ^ 0x10] {
                let mut bad = f.clone();
                bad[at] = value;
                if let Some(r) = parse(&bad, 7, &shapes()) {
                    assert_eq!(r, ranges, "byte {at} = {value:#x} accepted with other ranges");
                }
            }
        }
    }
}
