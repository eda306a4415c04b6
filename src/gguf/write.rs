//! Streaming GGUF writer: the header (metadata and tensor table, with offsets computed
//! from the declared shapes) goes out first, then each tensor's bytes in declared order,
//! so a converter never holds more than one tensor in memory.

use super::value::Value;
use super::{DEFAULT_ALIGNMENT, MAGIC, VERSION};
use crate::quant::GgmlType;
use std::io::{self, Write};

struct PlannedTensor {
    name: String,
    dims: Vec<usize>,
    ty: GgmlType,
    size: usize,
}

#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PlannedTensor>,
    next: usize,
    written: u64,
}

fn write_string(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::String(s) => write_string(w, s),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Array(ty, items) => {
            w.write_all(&(*ty as u32).to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|item| write_value(w, item))
        }
    }
}

fn pad_len(pos: u64) -> usize {
    let a = DEFAULT_ALIGNMENT as u64;
    ((a - pos % a) % a) as usize
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry. Keys must be unique (checked when the header is written).
    pub fn add(&mut self, key: &str, value: Value) {
        self.metadata.push((key.to_string(), value));
    }

    /// Declares a tensor; `dims` in ggml order (`dims[0]` contiguous). Returns its index.
    /// Panics if `dims[0]` is not a whole number of `ty` blocks: pick a type that fits.
    pub fn add_tensor(&mut self, name: &str, dims: &[usize], ty: GgmlType) -> usize {
        let rows: usize = dims[1..].iter().product();
        let size = ty.row_bytes(dims[0]).expect("tensor row must be a whole number of blocks") * rows;
        self.tensors.push(PlannedTensor { name: name.to_string(), dims: dims.to_vec(), ty, size });
        self.tensors.len() - 1
    }

    /// Total bytes the file will have once every tensor is written.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| (t.size + pad_len(t.size as u64)) as u64).sum()
    }

    /// Writes magic, counts, metadata, tensor table and the padding up to the data section.
    pub fn write_header(&mut self, w: &mut impl Write) -> io::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for (k, _) in &self.metadata {
            if !seen.insert(k.as_str()) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("duplicate metadata key `{k}`")));
            }
        }
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_string(&mut header, k)?;
            header.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            write_value(&mut header, v)?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            write_string(&mut header, &t.name)?;
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                header.extend_from_slice(&(d as u64).to_le_bytes());
            }
            header.extend_from_slice(&(t.ty as u32).to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset += t.size as u64 + pad_len(t.size as u64) as u64;
        }
        header.resize(header.len() + pad_len(header.len() as u64), 0);
        w.write_all(&header)?;
        self.written = header.len() as u64;
        Ok(())
    }

    /// Writes the next tensor's bytes (tensors must come in declared order).
    pub fn write_tensor(&mut self, w: &mut impl Write, index: usize, bytes: &[u8]) -> io::Result<()> {
        w.write_all(bytes)?;
        self.pad_after_tensor(w, index, bytes.len())
    }

    /// For a tensor whose `written` bytes the caller streamed to `w` itself: checks order
    /// and size, then writes the padding up to the next aligned offset.
    pub fn pad_after_tensor(&mut self, w: &mut impl Write, index: usize, written: usize) -> io::Result<()> {
        let t = self.tensors.get(index).filter(|_| index == self.next).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("tensor #{index} written out of order"))
        })?;
        if written != t.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("tensor `{}`: {written} bytes written, {} declared", t.name, t.size),
            ));
        }
        let pad = pad_len(written as u64);
        w.write_all(&vec![0u8; pad])?;
        self.written += (written + pad) as u64;
        self.next += 1;
        Ok(())
    }

    /// Checks that every declared tensor was written.
    pub fn finish(&self) -> io::Result<u64> {
        if self.next != self.tensors.len() {
            return Err(io::Error::other(format!("{} of {} tensors written", self.next, self.tensors.len())));
        }
        Ok(self.written)
    }
}
