//! Shared helpers for the integration tests: fixture paths, converting a fixture once per
//! test binary, and reading the transformers reference outputs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub mod micro;
use xlmr::convert::{convert, ConvertOptions};
use xlmr::quant::GgmlType;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The small model shipped in models/ (tied decoder, safetensors).
pub fn tiny() -> PathBuf {
    root().join("models/tiny-xlmr-xl")
}

/// Same weights as `tiny`, saved by torch as pytorch_model.bin.
pub fn tiny_bin() -> PathBuf {
    root().join("tests/fixtures/tiny-bin")
}

/// Hidden 80 (rows fit no 32-block), untied decoder, sharded safetensors.
pub fn tiny_untied() -> PathBuf {
    root().join("tests/fixtures/tiny-untied")
}

fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Converts `model_dir` to `ty` once per test binary and returns the GGUF path.
pub fn converted(model_dir: &Path, ty: GgmlType) -> PathBuf {
    static DONE: OnceLock<Mutex<HashMap<(PathBuf, GgmlType), PathBuf>>> = OnceLock::new();
    let mut done = DONE.get_or_init(Default::default).lock().unwrap();
    done.entry((model_dir.to_path_buf(), ty))
        .or_insert_with(|| {
            let name = format!("{}-{}.gguf", model_dir.file_name().unwrap().to_string_lossy(), ty.name());
            let output = scratch_dir().join(name);
            convert(&ConvertOptions { model_dir: model_dir.to_path_buf(), output: output.clone(), ty, progress: false }).unwrap();
            output
        })
        .clone()
}

/// transformers' outputs for one fixture input (see tools/make_fixtures.py).
pub struct RefInput {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub mask_positions: Vec<usize>,
    pub fill_mask: serde_json::Value,
    pub top2_logit_margin: Vec<f32>,
    /// `[layers + 1][seq][hidden]` flattened.
    pub hidden: Vec<f32>,
    pub mask_logits: Vec<f32>,
}

pub struct Reference {
    pub num_layers: usize,
    pub hidden_size: usize,
    pub vocab_size: usize,
    pub inputs: Vec<RefInput>,
}

/// A tensor of a safetensors file as f32 values; empty if the file has no such tensor.
pub fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    match st.tensor(name) {
        Ok(t) => t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Err(_) => Vec::new(),
    }
}

/// Loads `<dir>/reference/reference.{json,safetensors}`, or those of `reference_dir`.
pub fn reference(dir: &Path) -> Reference {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference/reference.json")).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join("reference/reference.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let inputs = json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let idx = i["index"].as_u64().unwrap();
            let nums = |k: &str| i[k].as_array().map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>()).unwrap_or_default();
            RefInput {
                text: i["text"].as_str().unwrap().to_string(),
                input_ids: nums("input_ids").into_iter().map(|v| v as u32).collect(),
                mask_positions: nums("mask_positions").into_iter().map(|v| v as usize).collect(),
                fill_mask: i["fill_mask"].clone(),
                top2_logit_margin: nums("top2_logit_margin").into_iter().map(|v| v as f32).collect(),
                hidden: f32s(&st, &format!("hidden.{idx}")),
                mask_logits: f32s(&st, &format!("mask_logits.{idx}")),
            }
        })
        .collect();
    Reference {
        num_layers: json["num_hidden_layers"].as_u64().unwrap() as usize,
        hidden_size: json["hidden_size"].as_u64().unwrap() as usize,
        vocab_size: json["vocab_size"].as_u64().unwrap() as usize,
        inputs,
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb).max(1e-30)) as f32
}

pub fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// A fine-tuned checkpoint folder from `tests/fixtures/heads/<name>` (see
/// tools/make_heads_fixtures.py): the fixture's config and head tensors plus the shared
/// encoder and tokenizer of `models/tiny-xlmr-xl`, assembled once per test binary.
pub fn head_model(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let dir = scratch_dir().join("heads-src").join(name);
    if !dir.exists() {
        let fixture = root().join("tests/fixtures/heads").join(name);
        let tmp = scratch_dir().join("heads-src").join(format!(".{name}.partial"));
        std::fs::create_dir_all(&tmp).unwrap();
        for entry in std::fs::read_dir(&fixture).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != "reference.json" {
                std::fs::copy(&path, tmp.join(path.file_name().unwrap())).unwrap();
            }
        }
        if !tmp.join("model.safetensors").exists() {
            std::fs::copy(tiny().join("model.safetensors"), tmp.join("encoder.safetensors")).unwrap();
        }
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"] {
            std::fs::copy(tiny().join(f), tmp.join(f)).unwrap();
        }
        std::fs::rename(&tmp, &dir).unwrap();
    }
    dir
}

/// `tests/fixtures/heads/<name>/reference.json`: the pipelines' outputs.
pub fn head_reference(name: &str) -> serde_json::Value {
    let path = root().join("tests/fixtures/heads").join(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
