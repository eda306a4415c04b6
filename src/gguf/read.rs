//! Strict GGUF reader. Nothing in the file is trusted: every length is checked against
//! the bytes that remain, every size is computed with checked arithmetic, and tensor
//! regions must lie inside the file, aligned and without overlap.
//!
//! Memory: nothing is reserved from a count the file claims. The decoded header (metadata
//! values, strings, the tensor table and both indexes) is charged at its in-memory size
//! against [`MAX_HEADER_MEMORY`]; a header that would need more is refused with an error.
//! Tensor data stays in the memory map.

use super::value::{Value, ValueType};
use super::{DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::error::{Error, Result};
use crate::quant::GgmlType;
use memmap2::Mmap;
use std::collections::HashMap;
use std::mem::size_of;
use std::path::{Path, PathBuf};

/// Most memory the decoded header of one file may take (values at their in-memory size,
/// strings, tensor table, indexes). XLM-R-XL's header, with its whole tokenizer.json (about
/// 17 MB), needs about a third of it.
pub const MAX_HEADER_MEMORY: usize = 64 << 20;

/// Bookkeeping per indexed entry (hash map slot, key copy header), on top of the key bytes.
const INDEX_ENTRY_COST: usize = 64;

/// One tensor's header entry, validated.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<usize>,
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: usize,
    /// Bytes of data.
    pub size: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// Shape in PyTorch order (outermost first), e.g. `[out, in]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }
}

/// A validated, memory-mapped GGUF file. Tensor data is borrowed from the map.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    pub alignment: usize,
    data_offset: usize,
    map: Mmap,
}

/// Bounds-checked little-endian cursor over the header bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Bytes of decoded header memory still allowed (see [`MAX_HEADER_MEMORY`]).
    budget: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(format!("truncated: {what} at byte {} needs {n} bytes, file has {}", self.pos, self.buf.len())),
        }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Accounts for `bytes` of decoded memory before they are allocated.
    fn charge(&mut self, bytes: usize, what: &str) -> std::result::Result<(), String> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(format!(
                "{what}: the header needs more than the {} MiB of memory allowed for GGUF metadata",
                MAX_HEADER_MEMORY >> 20
            )),
        }
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    /// A u64 count or length that must fit in usize.
    fn len(&mut self, what: &str) -> std::result::Result<usize, String> {
        let v = self.u64(what)?;
        usize::try_from(v).map_err(|_| format!("{what} {v} is too large"))
    }
    fn string(&mut self, what: &str) -> std::result::Result<String, String> {
        let n = self.len(what)?;
        if n > self.remaining() {
            return Err(format!("{what}: string length {n} runs past the end of the file"));
        }
        self.charge(n, what)?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what}: string is not valid UTF-8"))
    }
    fn value(&mut self, ty: ValueType, what: &str) -> std::result::Result<Value, String> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.take(1, what)?[0]),
            ValueType::I8 => Value::I8(self.take(1, what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.take(2, what)?.try_into().unwrap())),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(self.u32(what)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(what)?)),
            ValueType::Bool => match self.take(1, what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what}: bool has invalid byte {b}")),
            },
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(self.u64(what)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(what)?)),
            ValueType::Array => {
                let id = self.u32(what)?;
                let elem = ValueType::from_id(id).ok_or_else(|| format!("{what}: unknown array element type {id}"))?;
                if elem == ValueType::Array {
                    return Err(format!("{what}: nested arrays are not supported"));
                }
                let n = self.len(what)?;
                // Each element needs at least min_size bytes: refuse counts the file cannot hold
                // before allocating anything.
                if n.checked_mul(elem.min_size()).is_none_or(|b| b > self.remaining()) {
                    return Err(format!("{what}: array of {n} elements runs past the end of the file"));
                }
                // Charged at the in-memory size, so the exact reservation below is bounded.
                self.charge(n.saturating_mul(size_of::<Value>()), what)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, what)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

impl GgufFile {
    /// Opens, maps and validates a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // Safety: the map is read-only; the file could change under us if another process
        // truncates it, which is the usual caveat of mmap-based model loaders.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::parse(path, map)
    }

    fn parse(path: &Path, map: Mmap) -> Result<Self> {
        let bad = |msg: String| Error::format(path, msg);
        let mut c = Cursor { buf: &map[..], pos: 0, budget: MAX_HEADER_MEMORY };
        let magic = c.take(4, "magic").map_err(|_| bad("not a GGUF file (shorter than 4 bytes)".into()))?;
        if magic != MAGIC {
            return Err(bad("not a GGUF file (bad magic)".into()));
        }
        let version = c.u32("version").map_err(bad)?;
        if !(2..=3).contains(&version) {
            return Err(bad(format!("unsupported GGUF version {version} (expected 3)")));
        }
        let n_tensors = c.len("tensor count").map_err(bad)?;
        let n_kv = c.len("metadata count").map_err(bad)?;
        // Every kv needs >= 13 bytes and every tensor info >= 24: refuse counts the file cannot hold.
        if n_kv.saturating_mul(13).saturating_add(n_tensors.saturating_mul(24)) > c.remaining() {
            return Err(bad(format!("header claims {n_kv} metadata entries and {n_tensors} tensors, more than the file can hold")));
        }

        // No reservation from the counts: entries are charged one by one as they are read.
        let mut metadata = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n_kv {
            let key = c.string(&format!("metadata key #{i}")).map_err(bad)?;
            c.charge(size_of::<(String, Value)>() + INDEX_ENTRY_COST + key.len(), &key).map_err(bad)?;
            let id = c.u32(&key).map_err(bad)?;
            let ty = ValueType::from_id(id).ok_or_else(|| bad(format!("metadata `{key}`: unknown value type {id}")))?;
            let value = c.value(ty, &format!("metadata `{key}`")).map_err(bad)?;
            if index.insert(key.clone(), metadata.len()).is_some() {
                return Err(bad(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match index.get(super::keys::GENERAL_ALIGNMENT).map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => *a as usize,
            Some(Value::U32(a)) => return Err(bad(format!("general.alignment {a} is not a power of two"))),
            Some(v) => return Err(bad(format!("general.alignment has type {:?}, expected U32", v.value_type()))),
        };

        let mut tensors = Vec::new();
        let mut tensor_index = HashMap::new();
        for i in 0..n_tensors {
            let name = c.string(&format!("tensor name #{i}")).map_err(bad)?;
            let n_dims = c.u32(&name).map_err(bad)? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(format!("tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
            }
            let cost = size_of::<TensorInfo>() + n_dims * size_of::<usize>() + INDEX_ENTRY_COST + name.len();
            c.charge(cost, &name).map_err(bad)?;
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                let d = c.len(&name).map_err(bad)?;
                if d == 0 {
                    return Err(bad(format!("tensor `{name}` has a zero dimension")));
                }
                dims.push(d);
            }
            let id = c.u32(&name).map_err(bad)?;
            let ty = GgmlType::from_id(id).ok_or_else(|| {
                bad(format!("tensor `{name}` has type id {id}, which xlmr does not support (f32, f16, q8_0, q4_0, q4_k)"))
            })?;
            let offset = c.len(&name).map_err(bad)?;
            let n_el = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let row = ty.row_bytes(dims[0]);
            let size = match (n_el, row) {
                (Some(n), Some(row)) => (n / dims[0]).checked_mul(row),
                _ => None,
            };
            let size = size.ok_or_else(|| {
                bad(format!("tensor `{name}`: dims {dims:?} overflow or do not fit {ty} blocks of {}", ty.block_size()))
            })?;
            if offset % alignment != 0 {
                return Err(bad(format!("tensor `{name}` offset {offset} is not a multiple of the alignment {alignment}")));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(bad(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(TensorInfo { name, dims, ty, offset, size });
        }

        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let data_len = map.len().saturating_sub(data_offset);
        let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        let mut end_prev = 0usize;
        let mut prev_name = "";
        for t in by_offset {
            let end = t.offset.checked_add(t.size).filter(|&e| e <= data_len).ok_or_else(|| {
                bad(format!("tensor `{}` ({} bytes at offset {}) runs past the end of the file (truncated?)", t.name, t.size, t.offset))
            })?;
            if t.offset < end_prev {
                return Err(bad(format!("tensors `{prev_name}` and `{}` overlap", t.name)));
            }
            end_prev = end;
            prev_name = &t.name;
        }
        drop(c);
        Ok(GgufFile { path: path.to_path_buf(), version, metadata, index, tensors, tensor_index, alignment, data_offset, map })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn wrong_type(&self, key: &str, want: &str) -> Error {
        match self.get(key) {
            None => Error::format(&self.path, format!("missing metadata key `{key}`")),
            Some(v) => Error::format(&self.path, format!("metadata `{key}` has type {:?}, expected {want}", v.value_type())),
        }
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        match self.get(key) {
            Some(Value::U32(v)) => Ok(*v),
            _ => Err(self.wrong_type(key, "U32")),
        }
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.get(key) {
            Some(Value::F32(v)) => Ok(*v),
            _ => Err(self.wrong_type(key, "F32")),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            Some(Value::Bool(v)) => Ok(*v),
            _ => Err(self.wrong_type(key, "Bool")),
        }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(Value::String(v)) => Ok(v),
            _ => Err(self.wrong_type(key, "String")),
        }
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The tensor's bytes, borrowed from the memory map (bounds validated at open).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_offset + t.offset;
        &self.map[start..start + t.size]
    }

    /// The header: everything before the tensor data (metadata and tensor infos).
    pub fn header_bytes(&self) -> &[u8] {
        &self.map[..self.data_offset.min(self.map.len())]
    }

    /// Total bytes of the file.
    pub fn file_size(&self) -> usize {
        self.map.len()
    }

    /// Maps a tensor's pages in one system call (MADV_POPULATE_READ) before it is read
    /// whole, instead of one page fault per few pages; a hint, errors are ignored.
    pub fn populate(&self, t: &TensorInfo) {
        const PAGE: usize = 4096;
        let start = (self.data_offset + t.offset) / PAGE * PAGE;
        let end = self.data_offset + t.offset + t.size;
        #[cfg(target_os = "linux")]
        let _ = self.map.advise_range(memmap2::Advice::PopulateRead, start, end - start);
        #[cfg(not(target_os = "linux"))]
        let _ = (start, end);
    }

    /// Drops this process's pages of a tensor that has been copied elsewhere (packed
    /// weights), so they stop counting in its RSS; a later read faults them back in from
    /// the file. Only whole pages inside the tensor are released; errors are ignored
    /// (the pages then simply stay).
    pub fn release_pages(&self, t: &TensorInfo) {
        const PAGE: usize = 4096;
        let start = (self.data_offset + t.offset).next_multiple_of(PAGE);
        let end = (self.data_offset + t.offset + t.size) / PAGE * PAGE;
        if end > start {
            #[cfg(unix)]
            // Safety: the mapping is a read-only private map of a file and is never
            // written, so MADV_DONTNEED only discards clean pages that the kernel reloads
            // from the file, unchanged, on the next access: no reader can observe it.
            let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }
}
