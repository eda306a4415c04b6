//! A COMET model folder (unbabel-comet: `hparams.yaml` + `checkpoints/model.ckpt`, a PyTorch
//! Lightning checkpoint whose `state_dict` holds `encoder.model.*`, `layerwise_attention.*`,
//! `estimator.ff.*` and, for XCOMET, `hidden2tag.*`) -> one GGUF file.
//!
//! The encoder's config.json and tokenizer are not in the checkpoint: hparams.yaml's
//! `pretrained_model` names them, and they are looked up in `--encoder DIR`, in
//! `<model dir>/<pretrained_model>`, then in the Hugging Face cache. The tokenizer is taken
//! as transformers 4.x (which unbabel-comet requires) builds it. Only the encoder layers the
//! scores need are kept (a sparsemax mix may give the top layers no weight).

use super::config::HfConfig;
use super::plan::{self, Role, TensorPlan};
use super::source::{RawTensor, WeightSource};
use super::yaml::{self, YamlValue};
use super::{write_gguf, ConvertOptions, ConvertReport};
use crate::error::{Error, Result};
use crate::gguf::{keys, Value};
use crate::heads::comet::{self as head, Activation, CometClass, CometConfig, LayerSelect, Pool};
use crate::quant::GgmlType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ENCODER_PREFIX: &str = "encoder.model.";

/// Whether `dir` looks like a COMET model folder.
pub fn is_comet_folder(dir: &Path) -> bool {
    dir.join("hparams.yaml").is_file() || dir.join("checkpoints").join("model.ckpt").is_file()
}

/// The encoder's tensors under their Hugging Face names (`encoder.model.` dropped); the
/// COMET modules' tensors under their own names.
struct CometSource(super::pickle::TorchBin);

impl CometSource {
    fn is_comet_module(name: &str) -> bool {
        ["estimator.", "hidden2tag.", "layerwise_attention."].iter().any(|p| name.starts_with(p))
    }
}

impl WeightSource for CometSource {
    fn names(&self) -> Vec<String> {
        self.0.names().into_iter().map(|n| n.strip_prefix(ENCODER_PREFIX).map(str::to_string).unwrap_or(n)).collect()
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor<'_>>> {
        if Self::is_comet_module(name) {
            self.0.get(name)
        } else {
            self.0.get(&format!("{ENCODER_PREFIX}{name}"))
        }
    }
    fn release(&self, bytes: &[u8]) {
        self.0.release(bytes)
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// hparams.yaml, with the file's path for messages.
struct Hparams {
    path: PathBuf,
    map: BTreeMap<String, YamlValue>,
}

impl Hparams {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::format(&self.path, msg)
    }
    fn scalar(&self, key: &str) -> Result<Option<&str>> {
        match self.map.get(key) {
            None | Some(YamlValue::Null) => Ok(None),
            Some(YamlValue::Scalar(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(format!("`{key}` should be a single value"))),
        }
    }
    fn required(&self, key: &str) -> Result<&str> {
        self.scalar(key)?.ok_or_else(|| self.err(format!("missing `{key}`")))
    }
    fn list(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.map.get(key) {
            None | Some(YamlValue::Null) => Ok(None),
            Some(YamlValue::List(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.err(format!("`{key}` should be a list"))),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.scalar(key)? {
            None => Ok(default),
            Some("true" | "True") => Ok(true),
            Some("false" | "False") => Ok(false),
            Some(v) => Err(self.err(format!("`{key}: {v}` is not true or false"))),
        }
    }
}

/// Converts the COMET folder `opts.model_dir`; `encoder` is where to find the encoder's
/// config.json and tokenizer when not beside the model.
pub fn convert_comet(opts: &ConvertOptions, encoder: Option<&Path>) -> Result<ConvertReport> {
    let dir = &opts.model_dir;
    let hparams_path = dir.join("hparams.yaml");
    let ckpt_path = dir.join("checkpoints").join("model.ckpt");
    if !hparams_path.is_file() {
        return Err(Error::format(&hparams_path, "missing: a COMET model folder holds hparams.yaml and checkpoints/model.ckpt"));
    }
    let text = std::fs::read_to_string(&hparams_path).map_err(|e| Error::io(&hparams_path, e))?;
    let map = yaml::parse(&text).map_err(|m| Error::format(&hparams_path, m))?;
    let hp = Hparams { path: hparams_path.clone(), map };

    let class_id = hp.required("class_identifier")?;
    let class = CometClass::from_identifier(class_id).ok_or_else(|| {
        let known: Vec<&str> = CometClass::ALL.iter().map(|c| c.identifier()).collect();
        hp.err(format!("unknown class_identifier `{class_id}`; xlmr scores {}", known.join(", ")))
    })?;
    let encoder_model = hp.required("encoder_model")?;
    if encoder_model != "XLM-RoBERTa-XL" {
        return Err(hp.err(format!(
            "encoder_model `{encoder_model}` is not supported: xlmr runs COMET models on the XLM-RoBERTa-XL/XXL encoder (`XLM-RoBERTa-XL`)"
        )));
    }
    let pretrained = hp.required("pretrained_model")?;
    if !ckpt_path.is_file() {
        return Err(Error::format(&ckpt_path, "missing: the COMET checkpoint (checkpoints/model.ckpt beside hparams.yaml)"));
    }
    let encoder_dir = find_encoder(dir, pretrained, encoder)?;
    let mut config = HfConfig::load(&encoder_dir.join("config.json"))?;
    // Only the bare encoder is in the checkpoint, whatever head the config names.
    config.architectures = vec!["XLMRobertaXLModel".into()];
    config.id2label = None;
    config.num_labels = None;
    config.problem_type = None;
    config.name_or_path = dir.canonicalize().ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let tokenizer_json = comet_tokenizer_json(&encoder_dir)?;

    let source = CometSource(super::pickle::TorchBin::open(&ckpt_path)?);
    let n_states = config.num_hidden_layers + 1;
    let cfg = comet_config(&hp, class, &source, n_states, config.max_position_embeddings)?;
    cfg.validate().map_err(|m| hp.err(m))?;

    // Keep the layers up to the last hidden state the scores use.
    let keep = cfg.last_needed_state().max(1);
    let full = keep == config.num_hidden_layers;
    config.num_hidden_layers = keep;
    let mut plans = plan::plan_tensors(&config, &source, opts.ty)?;
    plans.extend(head_plans(&cfg, config.hidden_size, &source)?);
    write_gguf(opts, &config, tokenizer_json, &encoder_dir, &source, plans, |w| {
        cfg.write(w);
        // Without the top layers, the last hidden state is the residual stream, not LN(x).
        w.add(keys::FINAL_NORM, Value::Bool(full));
    })
}

/// `--encoder DIR`, else `<model dir>/<pretrained_model>`, else the Hugging Face cache.
fn find_encoder(dir: &Path, pretrained: &str, encoder: Option<&Path>) -> Result<PathBuf> {
    let mut tried: Vec<PathBuf> = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(e) = encoder {
        candidates.push(e.to_path_buf());
    } else {
        candidates.push(dir.join(pretrained));
        candidates.extend(hf_cache_snapshots(pretrained));
    }
    for c in candidates {
        let has_tokenizer = c.join("tokenizer.json").is_file() || c.join("sentencepiece.bpe.model").is_file();
        if c.join("config.json").is_file() && has_tokenizer {
            return Ok(c);
        }
        tried.push(c);
    }
    let places: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    let hint = if encoder.is_none() { " (or pass --encoder DIR)" } else { "" };
    Err(Error::format(
        dir.join("hparams.yaml"),
        format!(
            "the encoder `{pretrained}` (config.json + tokenizer.json or sentencepiece.bpe.model) was not found; looked in: {}{hint}",
            if places.is_empty() { "nowhere".into() } else { places.join(", ") }
        ),
    ))
}

/// `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`: `models--org--name/snapshots/*`.
fn hf_cache_snapshots(repo: &str) -> Vec<PathBuf> {
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("huggingface").join("hub")));
    let Some(hub) = hub else { return Vec::new() };
    let snapshots = hub.join(format!("models--{}", repo.replace('/', "--"))).join("snapshots");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        found.push(snapshots);
    }
    found
}

/// The tokenizer as transformers 4.x's `XLMRobertaTokenizerFast.from_pretrained` builds it:
/// tokenizer.json as written, or the sentencepiece model through its SpmConverter
/// (precompiled charsmap, right strip, runs of spaces to `▁`; Metaspace pre-tokenizer).
pub fn comet_tokenizer_json(dir: &Path) -> Result<String> {
    let json_path = dir.join("tokenizer.json");
    let (mut json, from): (serde_json::Value, PathBuf) = if json_path.is_file() {
        let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        (serde_json::from_str(&text).map_err(|e| Error::format(&json_path, format!("invalid tokenizer JSON: {e}")))?, json_path)
    } else {
        let spm_path = dir.join("sentencepiece.bpe.model");
        let text = super::spm::tokenizer_json_from_spm(&spm_path)?;
        let mut json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&spm_path, e.to_string()))?;
        as_transformers4_converts_it(&mut json);
        (json, spm_path)
    };
    if let Some(obj) = json.as_object_mut() {
        for setting in ["truncation", "padding"] {
            obj.insert(setting.into(), serde_json::Value::Null);
        }
    }
    let text = json.to_string();
    crate::tokenizer::parse_json(&text).map_err(|e| Error::format(&from, format!("invalid tokenizer: {e}")))?;
    Ok(text)
}

fn as_transformers4_converts_it(json: &mut serde_json::Value) {
    use serde_json::json;
    let precompiled = json["normalizer"].clone();
    let mut parts = Vec::new();
    if precompiled["type"] == "Precompiled" {
        parts.push(precompiled);
    }
    parts.push(json!({"type": "Strip", "strip_left": false, "strip_right": true}));
    parts.push(json!({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u{2581}"}));
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true});
    json["normalizer"] = json!({"type": "Sequence", "normalizers": parts});
    json["pre_tokenizer"] = metaspace.clone();
    json["decoder"] = metaspace;
}

/// What hparams.yaml and the checkpoint's layer-mix parameters say, as COMET's
/// `load_from_checkpoint` would build the model.
fn comet_config(hp: &Hparams, class: CometClass, source: &CometSource, n_states: usize, max_pos_emb: usize) -> Result<CometConfig> {
    let layer = match hp.scalar("layer")?.or(hp.scalar("sent_layer")?).unwrap_or("mix") {
        "mix" => {
            // COMET >= 2.2.4 loads `sparsemax_patch` as softmax, and LayerwiseAttention
            // applies sparsemax only for exactly "sparsemax".
            let sparsemax = hp.required("layer_transformation")? == "sparsemax";
            let scalar = |name: String| -> Result<f32> {
                let t = source.get(&name)?.ok_or_else(|| Error::MissingTensor { path: source.describe().into(), name: name.clone() })?;
                if t.n_elements() != 1 {
                    return Err(Error::WrongShape { path: source.describe().into(), name, found: t.shape.clone(), expected: vec![1] });
                }
                let mut v = [0.0f32];
                t.read_f32(0, &mut v);
                Ok(v[0])
            };
            let scalars = (0..n_states).map(|k| scalar(format!("layerwise_attention.scalar_parameters.{k}"))).collect::<Result<Vec<_>>>()?;
            if source.get(&format!("layerwise_attention.scalar_parameters.{n_states}"))?.is_some() {
                return Err(hp.err(format!("the checkpoint mixes more hidden states than the encoder's {n_states}; wrong encoder config?")));
            }
            let gamma = scalar("layerwise_attention.gamma".into())?;
            if !scalars.iter().chain([&gamma]).all(|v| v.is_finite()) {
                return Err(Error::format(source.describe(), "layer-mix parameters are not finite"));
            }
            LayerSelect::Mix { sparsemax, layer_norm: hp.bool("layer_norm", false)?, scalars, gamma }
        }
        k => match k.parse::<usize>() {
            Ok(k) if k < n_states => LayerSelect::Single(k),
            _ => return Err(hp.err(format!("layer `{k}` is neither `mix` nor a hidden state below {n_states}"))),
        },
    };
    let activation = |key: &str, v: &str| Activation::from_name(v).ok_or_else(|| hp.err(format!("`{key}: {v}` is not an activation xlmr implements (Tanh, Sigmoid, Softplus, Softsign)")));
    let hidden_sizes = hp
        .list("hidden_sizes")?
        .ok_or_else(|| hp.err("missing `hidden_sizes`"))?
        .iter()
        .map(|s| s.parse::<usize>().map_err(|_| hp.err(format!("hidden size `{s}` is not a number"))))
        .collect::<Result<Vec<_>>>()?;
    let final_activation = match hp.scalar("final_activation")? {
        None => None,
        Some(v) => Some(activation("final_activation", v)?),
    };
    let (input_segments, word_level, error_labels) = match class {
        // XCOMETMetric forces these whatever the file says.
        CometClass::Xcomet => (vec!["mt".into(), "src".into(), "ref".into()], true, vec!["minor".into(), "major".into(), "critical".into()]),
        CometClass::Unified => (
            hp.list("input_segments")?.unwrap_or_else(|| vec!["mt".into(), "src".into(), "ref".into()]),
            hp.bool("word_level_training", false)?,
            hp.list("error_labels")?.unwrap_or_else(|| vec!["minor".into(), "major".into()]),
        ),
        CometClass::Regression => (vec!["src".into(), "mt".into(), "ref".into()], false, Vec::new()),
    };
    let word_layer = match hp.scalar("word_layer")? {
        Some(v) if word_level => v.parse::<usize>().map_err(|_| hp.err(format!("word_layer `{v}` is not a number")))?,
        _ => 0,
    };
    let pool = match class {
        CometClass::Regression => {
            let p = hp.scalar("pool")?.unwrap_or("avg");
            Pool::from_name(p).ok_or_else(|| hp.err(format!("unknown pool `{p}`")))?
        }
        _ => Pool::Cls,
    };
    Ok(CometConfig {
        class,
        input_segments,
        layer,
        pool,
        hidden_sizes,
        activation: activation("activations", hp.scalar("activations")?.unwrap_or("Tanh"))?,
        final_activation,
        word_level,
        word_layer,
        error_labels,
        hidden_states: n_states,
        max_positions: max_pos_emb.saturating_sub(2),
    })
}

/// The estimator's linear layers (`estimator.ff.{3j}`: Linear, activation, dropout per
/// hidden size, then the output Linear) and the word tagger, kept F32.
fn head_plans(cfg: &CometConfig, hidden: usize, source: &CometSource) -> Result<Vec<TensorPlan>> {
    let mut dims = vec![cfg.estimator_inputs(hidden)];
    dims.extend(&cfg.hidden_sizes);
    dims.push(1);
    let mut plans = Vec::new();
    let mut add = |gguf: String, hf: String, shape: Vec<usize>| {
        plans.push(TensorPlan { gguf_name: gguf, hf_names: vec![hf], shape, role: Role::Head, ty: GgmlType::F32 });
    };
    for (j, io) in dims.windows(2).enumerate() {
        add(head::keys::estimator(j, "weight"), format!("estimator.ff.{}.weight", 3 * j), vec![io[1], io[0]]);
        add(head::keys::estimator(j, "bias"), format!("estimator.ff.{}.bias", 3 * j), vec![io[1]]);
    }
    if cfg.word_level {
        add(format!("{}.weight", head::keys::HIDDEN2TAG), "hidden2tag.weight".into(), vec![cfg.tag_count(), hidden]);
        add(format!("{}.bias", head::keys::HIDDEN2TAG), "hidden2tag.bias".into(), vec![cfg.tag_count()]);
    }
    if source.get(&format!("estimator.ff.{}.weight", 3 * dims.len() - 3))?.is_some() {
        return Err(Error::format(source.describe(), "the estimator has more layers than hparams.yaml's hidden_sizes say"));
    }
    for p in &plans {
        let t = source.get(&p.hf_names[0])?.ok_or_else(|| Error::MissingTensor { path: source.describe().into(), name: p.hf_names[0].clone() })?;
        if t.shape != p.shape {
            return Err(Error::WrongShape { path: source.describe().into(), name: p.hf_names[0].clone(), found: t.shape.clone(), expected: p.shape.clone() });
        }
    }
    Ok(plans)
}
