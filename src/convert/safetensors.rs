//! Safetensors checkpoints, single-file or sharded (`model.safetensors.index.json`),
//! read through the `safetensors` crate, which enforces the format's own rules (header
//! size limit, contiguous non-overlapping offsets, byte sizes matching shape x dtype).

use super::source::{release_pages, DType, RawTensor, WeightSource};
use crate::error::{Error, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

struct Shard {
    path: PathBuf,
    map: Mmap,
}

struct Entry {
    shard: usize,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range within the shard's map.
    start: usize,
    end: usize,
}

pub struct SafetensorsSource {
    shards: Vec<Shard>,
    entries: BTreeMap<String, Entry>,
}

impl SafetensorsSource {
    /// Opens the shards listed in a `model.safetensors.index.json`.
    pub fn open_sharded(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(index, format!("invalid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(index, "no `weight_map` object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut files: Vec<PathBuf> = Vec::new();
        for v in map.values() {
            let name = v.as_str().ok_or_else(|| Error::format(index, "weight_map values must be file names"))?;
            if name.contains('/') || name.contains('\\') || name == ".." {
                return Err(Error::format(index, format!("shard name `{name}` must be a plain file name")));
            }
            let p = dir.join(name);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        let source = Self::open_files(&files)?;
        for name in map.keys() {
            if !source.entries.contains_key(name) {
                return Err(Error::format(index, format!("tensor `{name}` is listed but not found in any shard")));
            }
        }
        Ok(source)
    }

    /// Opens one or more safetensors files as one checkpoint.
    pub fn open_files(files: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::new();
        let mut entries = BTreeMap::new();
        for path in files {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            // Safety: read-only map of a checkpoint file we do not modify.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
            let mut found: HashMap<String, Entry> = HashMap::new();
            {
                let st = SafeTensors::deserialize(&map)
                    .map_err(|e| Error::format(path, format!("invalid safetensors file: {e}")))?;
                let base = map.as_ptr() as usize;
                for (name, view) in st.tensors() {
                    let dtype = match view.dtype() {
                        Dtype::F32 => DType::F32,
                        Dtype::F16 => DType::F16,
                        Dtype::BF16 => DType::BF16,
                        other => {
                            // Integer buffers (e.g. position_ids) are not weights; record nothing.
                            if name.ends_with("position_ids") {
                                continue;
                            }
                            return Err(Error::format(path, format!("tensor `{name}` has dtype {other:?}; expected F32, F16 or BF16")));
                        }
                    };
                    let data = view.data();
                    let start = data.as_ptr() as usize - base;
                    let entry = Entry { shard: shards.len(), dtype, shape: view.shape().to_vec(), start, end: start + data.len() };
                    found.insert(name, entry);
                }
            }
            for (name, entry) in found {
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(Error::format(path, format!("tensor `{name}` appears in more than one shard")));
                }
            }
            shards.push(Shard { path: path.clone(), map });
        }
        Ok(SafetensorsSource { shards, entries })
    }
}

impl WeightSource for SafetensorsSource {
    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn get(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        Ok(self.entries.get(name).map(|e| {
            let shard = &self.shards[e.shard];
            RawTensor { dtype: e.dtype, shape: e.shape.clone(), bytes: &shard.map[e.start..e.end], file: &shard.path }
        }))
    }

    fn release(&self, bytes: &[u8]) {
        for s in &self.shards {
            release_pages(&s.map, bytes);
        }
    }

    fn describe(&self) -> String {
        match self.shards.as_slice() {
            [one] => one.path.display().to_string(),
            many => format!("{} safetensors shards in {}", many.len(), many[0].path.parent().unwrap_or(Path::new(".")).display()),
        }
    }
}
