//! Hyperparameters read back from a GGUF file's metadata.

use crate::error::{Error, Result};
use crate::gguf::{keys, GgufFile};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub type_vocab: usize,
    /// Usable tokens per input (positions after padding_idx).
    pub max_tokens: usize,
    pub eps: f32,
    pub pad_id: u32,
    pub mask_id: u32,
    pub has_mlm_head: bool,
    /// Whether the last hidden state is `output_norm(x)` (see `keys::FINAL_NORM`).
    pub final_norm: bool,
}

impl ModelConfig {
    pub fn from_gguf(f: &GgufFile) -> Result<Self> {
        let arch = f.get_str(keys::GENERAL_ARCHITECTURE)?;
        if arch != keys::ARCH {
            return Err(Error::format(&f.path, format!("architecture `{arch}` is not `{}`; is this an xlmr GGUF file?", keys::ARCH)));
        }
        let u = |k: &str| f.get_u32(k).map(|v| v as usize);
        let cfg = ModelConfig {
            hidden: u(keys::EMBEDDING_LENGTH)?,
            layers: u(keys::BLOCK_COUNT)?,
            heads: u(keys::HEAD_COUNT)?,
            head_dim: 0,
            ffn: u(keys::FEED_FORWARD_LENGTH)?,
            vocab: u(keys::VOCAB_SIZE)?,
            type_vocab: u(keys::TYPE_VOCAB_SIZE)?,
            max_tokens: u(keys::CONTEXT_LENGTH)?,
            eps: f.get_f32(keys::LAYER_NORM_EPS)?,
            pad_id: f.get_u32(keys::PAD_TOKEN_ID)?,
            mask_id: f.get_u32(keys::MASK_ID)?,
            has_mlm_head: f.get_bool(keys::HAS_MLM_HEAD)?,
            final_norm: if f.get(keys::FINAL_NORM).is_some() { f.get_bool(keys::FINAL_NORM)? } else { true },
        };
        let bad = |m: String| Err(Error::format(&f.path, m));
        if cfg.heads == 0 || cfg.hidden == 0 || cfg.hidden % cfg.heads != 0 {
            return bad(format!("embedding_length {} is not a multiple of head_count {}", cfg.hidden, cfg.heads));
        }
        if cfg.layers == 0 || cfg.ffn == 0 || cfg.vocab == 0 || cfg.type_vocab == 0 || cfg.max_tokens < 2 {
            return bad("block_count, feed_forward_length, vocab_size, type_vocab_size must be positive and context_length >= 2".into());
        }
        if !(cfg.eps > 0.0 && cfg.eps.is_finite()) {
            return bad(format!("layer_norm_epsilon {} must be positive", cfg.eps));
        }
        // Ids index the embedding (padding fills every batch) and the MLM logits.
        for (key, id) in [(keys::PAD_TOKEN_ID, cfg.pad_id), (keys::MASK_ID, cfg.mask_id)] {
            if id as usize >= cfg.vocab {
                return bad(format!("{key} {id} is outside the vocabulary of {} tokens", cfg.vocab));
            }
        }
        if (cfg.pad_id as usize).checked_add(1).and_then(|n| n.checked_add(cfg.max_tokens)).is_none() {
            return bad(format!("context_length {} is too large", cfg.max_tokens));
        }
        Ok(ModelConfig { head_dim: cfg.hidden / cfg.heads, ..cfg })
    }

    /// Rows of the position embedding: pad_id + 1 + max_tokens.
    pub fn n_positions(&self) -> usize {
        self.pad_id as usize + 1 + self.max_tokens
    }
}
