//! Hugging Face XLM-RoBERTa-XL checkpoint -> one GGUF file.
//!
//! Streams tensor by tensor (and, for large tensors, block of rows by block of rows) from
//! memory-mapped input, so peak memory stays bounded whatever the checkpoint size. The
//! output goes to a temporary file beside the target and is renamed into place only once
//! complete and re-read successfully: a failed or interrupted convert leaves no file at OUT.

pub mod comet;
pub mod config;
pub mod pickle;
pub mod plan;
pub mod safetensors;
pub mod source;
pub mod spm;
pub mod yaml;

use crate::error::{Error, Result};
use crate::gguf::{keys, GgufFile, GgufWriter, Value};
use crate::quant::{quantize_row, GgmlType};
use config::HfConfig;
use indicatif::{ProgressBar, ProgressStyle};
use plan::TensorPlan;
use rayon::prelude::*;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the CLI's Ctrl-C handler; the converter stops at the next block of rows.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Elements converted per step: bounds the f32 staging buffer (64 MiB) for huge tensors.
const CHUNK_ELEMENTS: usize = 16 << 20;

pub struct ConvertOptions {
    /// Hugging Face model folder (config.json, weights, tokenizer).
    pub model_dir: PathBuf,
    pub output: PathBuf,
    /// The type asked for with `--type`.
    pub ty: GgmlType,
    /// Draw a progress bar (only shown when stderr is a terminal).
    pub progress: bool,
}

pub struct ConvertReport {
    pub plans: Vec<TensorPlan>,
    pub file_bytes: u64,
}

/// Reads tokenizer.json, or builds it from sentencepiece.bpe.model, and checks that the
/// `tokenizers` crate accepts it.
pub fn load_tokenizer_json(dir: &Path) -> Result<String> {
    let json_path = dir.join("tokenizer.json");
    let spm_path = dir.join("sentencepiece.bpe.model");
    let (text, from) = if json_path.exists() {
        (std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?, json_path)
    } else if spm_path.exists() {
        (spm::tokenizer_json_from_spm(&spm_path)?, spm_path)
    } else {
        return Err(Error::format(dir, "no tokenizer found: expected tokenizer.json or sentencepiece.bpe.model"));
    };
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&from, format!("invalid tokenizer JSON: {e}")))?;
    as_transformers5_builds_it(&mut json);
    // As Tokenizer::from_json does at load (see clear_length_settings): never carry them.
    for setting in ["truncation", "padding"] {
        if let Some(obj) = json.as_object_mut() {
            obj.insert(setting.into(), serde_json::Value::Null);
        }
    }
    let text = json.to_string();
    crate::tokenizer::parse_json(&text).map_err(|e| Error::format(&from, format!("invalid tokenizer: {e}")))?;
    Ok(text)
}

/// transformers 5 does not take an XLM-R tokenizer.json's normalizer and pre-tokenizer as
/// written: it rebuilds them (the precompiled charsmap alone; whitespace split, then
/// Metaspace). Hub files written by older versions (charsmap + `Replace(" {2,}")`, Metaspace
/// alone) would otherwise tokenize whitespace differently, so we rebuild them the same way.
fn as_transformers5_builds_it(json: &mut serde_json::Value) {
    use serde_json::json;
    if json["model"]["type"] != "Unigram" {
        return;
    }
    let normalizer = &json["normalizer"];
    let precompiled = if normalizer["type"] == "Precompiled" {
        normalizer.clone()
    } else {
        let parts = normalizer["normalizers"].as_array().cloned().unwrap_or_default();
        parts.into_iter().find(|n| n["type"] == "Precompiled").unwrap_or(serde_json::Value::Null)
    };
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true});
    json["normalizer"] = precompiled;
    json["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace.clone()]});
    json["decoder"] = metaspace;
}

fn special_id(tok: &tokenizers::Tokenizer, token: &str, path: &Path) -> Result<u32> {
    tok.token_to_id(token).ok_or_else(|| Error::format(path, format!("tokenizer has no `{token}` token")))
}

fn file_type(ty: GgmlType) -> u32 {
    // llama.cpp's LLAMA_FTYPE numbering.
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q8_0 => 7,
        GgmlType::Q4K => 14,
    }
}

fn metadata(w: &mut GgufWriter, config: &HfConfig, ty: GgmlType, tokenizer_json: String, dir: &Path) -> Result<()> {
    let tok = crate::tokenizer::parse_json(&tokenizer_json).map_err(Error::Tokenizer)?;
    let name = config.name_or_path.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| {
        dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "xlm-roberta-xl".into())
    });
    // HfConfig::load checked that every count and id fits in u32.
    let u32v = |v: usize| Value::U32(u32::try_from(v).expect("checked by HfConfig::load"));
    w.add(keys::GENERAL_ARCHITECTURE, Value::String(keys::ARCH.into()));
    w.add(keys::GENERAL_NAME, Value::String(name));
    w.add(keys::GENERAL_ALIGNMENT, Value::U32(crate::gguf::DEFAULT_ALIGNMENT as u32));
    w.add(keys::GENERAL_FILE_TYPE, Value::U32(file_type(ty)));
    w.add(keys::GENERAL_QUANTIZATION_VERSION, Value::U32(2));
    // Positions start after padding_idx, so usable tokens = max_position_embeddings - pad - 1.
    w.add(keys::CONTEXT_LENGTH, u32v(config.max_position_embeddings - config.pad_token_id - 1));
    w.add(keys::EMBEDDING_LENGTH, u32v(config.hidden_size));
    w.add(keys::BLOCK_COUNT, u32v(config.num_hidden_layers));
    w.add(keys::FEED_FORWARD_LENGTH, u32v(config.intermediate_size));
    w.add(keys::HEAD_COUNT, u32v(config.num_attention_heads));
    w.add(keys::LAYER_NORM_EPS, Value::F32(config.layer_norm_eps as f32));
    w.add(keys::VOCAB_SIZE, u32v(config.vocab_size));
    w.add(keys::TYPE_VOCAB_SIZE, u32v(config.type_vocab_size));
    w.add(keys::PAD_TOKEN_ID, u32v(config.pad_token_id));
    w.add(keys::HAS_MLM_HEAD, Value::Bool(config.has_mlm_head()));
    if let Some(kind) = config.head_kind() {
        let labels = config.labels().map_err(|m| Error::format(dir.join("config.json"), m))?;
        w.add(keys::HEAD_KIND, Value::String(kind.name().into()));
        w.add(keys::HEAD_NUM_LABELS, u32v(kind.output_rows(labels.len())));
        w.add(keys::HEAD_LABELS, Value::Array(crate::gguf::ValueType::String, labels.into_iter().map(Value::String).collect()));
        if let Some(p) = &config.problem_type {
            w.add(keys::HEAD_PROBLEM_TYPE, Value::String(p.clone()));
        }
    }
    w.add(keys::TOKENIZER_MODEL, Value::String("t5".into()));
    let tpath = dir.join("tokenizer.json");
    for (key, token) in
        [(keys::BOS_ID, "<s>"), (keys::EOS_ID, "</s>"), (keys::UNK_ID, "<unk>"), (keys::PAD_ID, "<pad>"), (keys::MASK_ID, "<mask>")]
    {
        let id = special_id(&tok, token, &tpath)?;
        if id as usize >= config.vocab_size {
            return Err(Error::format(&tpath, format!("`{token}` has id {id}, outside vocab_size {}", config.vocab_size)));
        }
        w.add(key, Value::U32(id));
    }
    w.add(keys::TOKENIZER_HF_JSON, Value::String(tokenizer_json));
    Ok(())
}

/// [`convert`], with the folder of a COMET model's encoder (config.json + tokenizer) when
/// given: then `opts.model_dir` must be a COMET model folder.
pub fn convert_with_encoder(opts: &ConvertOptions, comet_encoder: Option<&Path>) -> Result<ConvertReport> {
    match comet_encoder {
        Some(encoder) => comet::convert_comet(opts, Some(encoder)),
        None => convert(opts),
    }
}

/// Converts `opts.model_dir` into `opts.output`; a COMET model folder (hparams.yaml +
/// checkpoints/model.ckpt) goes through [`comet::convert_comet`].
pub fn convert(opts: &ConvertOptions) -> Result<ConvertReport> {
    let dir = &opts.model_dir;
    if !dir.is_dir() {
        return Err(Error::format(dir, "not a directory (expected a Hugging Face model folder)"));
    }
    if comet::is_comet_folder(dir) {
        return comet::convert_comet(opts, None);
    }
    let config = HfConfig::load(&dir.join("config.json"))?;
    let tokenizer_json = load_tokenizer_json(dir)?;
    let source = source::open_weights(dir)?;
    let plans = plan::plan_tensors(&config, source.as_ref(), opts.ty)?;
    write_gguf(opts, &config, tokenizer_json, dir, source.as_ref(), plans, |_| ())
}

/// Writes the GGUF file: the encoder's metadata (tokenizer from `tokenizer_dir`), what
/// `extra` adds, then every planned tensor read from `source`.
pub(crate) fn write_gguf(
    opts: &ConvertOptions,
    config: &HfConfig,
    tokenizer_json: String,
    tokenizer_dir: &Path,
    source: &dyn source::WeightSource,
    plans: Vec<TensorPlan>,
    extra: impl FnOnce(&mut GgufWriter),
) -> Result<ConvertReport> {
    let mut writer = GgufWriter::new();
    metadata(&mut writer, config, opts.ty, tokenizer_json, tokenizer_dir)?;
    extra(&mut writer);
    for p in &plans {
        writer.add_tensor(&p.gguf_name, &p.dims(), p.ty);
    }

    let out = &opts.output;
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".xlmr-convert-")
        .suffix(".tmp")
        .tempfile_in(&out_dir)
        .map_err(|e| Error::io(out, e))?;
    let mut w = BufWriter::with_capacity(8 << 20, tmp.as_file());
    let io_err = |e: std::io::Error| Error::io(out, e);
    writer.write_header(&mut w).map_err(io_err)?;

    // Progress in bytes of checkpoint read.
    let mut total_bytes = 0u64;
    for p in &plans {
        total_bytes += p.hf_names.iter().find_map(|n| source.get(n).transpose()).transpose()?.map_or(0, |t| t.bytes.len() as u64);
    }
    let bar = if opts.progress { ProgressBar::new(total_bytes) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );

    let mut staging: Vec<f32> = Vec::new();
    let mut encoded: Vec<u8> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        bar.set_message(format!("{}/{} {}", i + 1, plans.len(), short(&p.gguf_name)));
        let raw = p
            .hf_names
            .iter()
            .find_map(|n| source.get(n).transpose())
            .transpose()?
            .expect("presence checked by plan_tensors");
        let row_len = *p.shape.last().unwrap();
        let rows: usize = p.shape[..p.shape.len() - 1].iter().product();
        let row_bytes = p.ty.row_bytes(row_len).expect("type fits rows by plan");
        let rows_per_chunk = (CHUNK_ELEMENTS / row_len).max(1);
        encoded.clear();
        let mut row = 0;
        while row < rows {
            if INTERRUPTED.load(Ordering::Relaxed) {
                return Err(Error::Input("interrupted; no output written".into()));
            }
            let n = rows_per_chunk.min(rows - row);
            staging.resize(n * row_len, 0.0);
            raw.read_f32(row * row_len, &mut staging);
            if let Some(bad) = staging.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite { path: raw.file.to_path_buf(), name: p.hf_names[0].clone(), index: row * row_len + bad });
            }
            encoded.resize(n * row_bytes, 0);
            encoded.par_chunks_mut(row_bytes).zip(staging.par_chunks(row_len)).for_each_init(Vec::new, |buf, (dst, src)| {
                buf.clear();
                quantize_row(p.ty, src, buf);
                dst.copy_from_slice(buf);
            });
            w.write_all(&encoded).map_err(io_err)?;
            source.release(&raw.bytes[row * row_len * raw.dtype.size()..(row + n) * row_len * raw.dtype.size()]);
            bar.inc((n * row_len * raw.dtype.size()) as u64);
            row += n;
        }
        writer.pad_after_tensor(&mut w, i, rows * row_bytes).map_err(io_err)?;
    }
    let file_bytes = writer.finish().map_err(io_err)?;
    w.flush().map_err(io_err)?;
    drop(w);
    tmp.as_file().sync_all().map_err(io_err)?;
    bar.finish_and_clear();

    // Never publish a file our own reader rejects.
    GgufFile::open(tmp.path())?;
    // Temporary files are created 0600; the output gets the usual permissions.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(io_err)?;
    }
    tmp.persist(out).map_err(|e| Error::io(out, e.error))?;
    Ok(ConvertReport { plans, file_bytes })
}

fn short(name: &str) -> &str {
    name.strip_suffix(".weight").unwrap_or(name)
}
