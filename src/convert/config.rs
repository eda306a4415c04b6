//! The Hugging Face `config.json` of an XLM-RoBERTa-XL checkpoint.

use crate::error::{Error, Result};
use crate::heads::HeadKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

pub const SUPPORTED_ARCHITECTURES: [&str; 6] = [
    "XLMRobertaXLForMaskedLM",
    "XLMRobertaXLModel",
    "XLMRobertaXLForSequenceClassification",
    "XLMRobertaXLForTokenClassification",
    "XLMRobertaXLForQuestionAnswering",
    "XLMRobertaXLForMultipleChoice",
];

#[derive(Clone, Debug, Deserialize)]
pub struct HfConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "one")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "one")]
    pub pad_token_id: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub name_or_path: Option<String>,
    /// Label names by id ("0" -> "negative"); transformers defaults to LABEL_0, LABEL_1.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    #[serde(default)]
    pub problem_type: Option<String>,
}

fn one() -> usize {
    1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu".into()
}
fn yes() -> bool {
    true
}

impl HfConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: HfConfig =
            serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid config.json: {e}")))?;
        if !config.architectures.iter().any(|a| SUPPORTED_ARCHITECTURES.contains(&a.as_str())) {
            return Err(Error::UnsupportedArchitecture { path: path.to_path_buf(), found: config.architectures });
        }
        let bad = |msg: String| Err(Error::format(path, msg));
        if config.hidden_size == 0 || config.num_attention_heads == 0 || config.hidden_size % config.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a positive multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ));
        }
        if config.num_hidden_layers == 0 || config.intermediate_size == 0 || config.vocab_size == 0 {
            return bad("num_hidden_layers, intermediate_size and vocab_size must be positive".into());
        }
        // Every count and id is written as a u32 and used in arithmetic at run time.
        for (name, v) in [
            ("hidden_size", config.hidden_size),
            ("num_hidden_layers", config.num_hidden_layers),
            ("num_attention_heads", config.num_attention_heads),
            ("intermediate_size", config.intermediate_size),
            ("vocab_size", config.vocab_size),
            ("max_position_embeddings", config.max_position_embeddings),
            ("type_vocab_size", config.type_vocab_size),
            ("pad_token_id", config.pad_token_id),
        ] {
            if u32::try_from(v).is_err() {
                return bad(format!("{name} {v} is too large (at most {})", u32::MAX));
            }
        }
        if config.pad_token_id >= config.vocab_size {
            return bad(format!("pad_token_id {} is outside vocab_size {}", config.pad_token_id, config.vocab_size));
        }
        if config.max_position_embeddings <= config.pad_token_id + 1 || config.type_vocab_size == 0 {
            return bad(format!(
                "max_position_embeddings {} leaves no positions after pad_token_id {}",
                config.max_position_embeddings, config.pad_token_id
            ));
        }
        if config.hidden_act != "gelu" {
            return bad(format!("hidden_act {:?} is not supported (only the exact erf \"gelu\")", config.hidden_act));
        }
        if !(config.layer_norm_eps > 0.0 && config.layer_norm_eps.is_finite()) {
            return bad(format!("layer_norm_eps {} must be positive", config.layer_norm_eps));
        }
        if let Some(kind) = config.head_kind() {
            let labels = config.labels().map_err(|m| Error::format(path, m))?;
            let rows = kind.output_rows(labels.len());
            if kind == HeadKind::QuestionAnswering && rows != 2 {
                return bad(format!("a question-answering head has 2 labels (start, end), this config has {}", labels.len()));
            }
            if let Some(p) = &config.problem_type {
                crate::heads::ProblemType::from_name(p)
                    .ok_or_else(|| Error::format(path, format!("unknown problem_type {p:?}; known: single_label_classification, multi_label_classification, regression")))?;
            }
        }
        Ok(config)
    }

    /// The task head of the first listed architecture that has one.
    pub fn head_kind(&self) -> Option<HeadKind> {
        self.architectures.iter().find_map(|a| HeadKind::from_architecture(a))
    }

    /// `id2label` in id order (ids must be 0..n), or transformers' default names.
    pub fn labels(&self) -> Result<Vec<String>, String> {
        match &self.id2label {
            Some(map) if !map.is_empty() => {
                let mut by_id: Vec<(usize, &String)> = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let id = k.parse::<usize>().map_err(|_| format!("id2label key {k:?} is not a label id"))?;
                    by_id.push((id, v));
                }
                by_id.sort();
                if by_id.iter().enumerate().any(|(i, (id, _))| *id != i) {
                    return Err(format!("id2label ids must be 0..{} without gaps", map.len()));
                }
                if let Some(n) = self.num_labels.filter(|&n| n != map.len()) {
                    return Err(format!("num_labels {n} differs from id2label's {} entries", map.len()));
                }
                Ok(by_id.into_iter().map(|(_, v)| v.clone()).collect())
            }
            _ => Ok((0..self.num_labels.unwrap_or(2)).map(|i| format!("LABEL_{i}")).collect()),
        }
    }

    pub fn has_mlm_head(&self) -> bool {
        self.architectures.iter().any(|a| a == "XLMRobertaXLForMaskedLM")
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
