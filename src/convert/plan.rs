//! Which checkpoint tensor becomes which GGUF tensor, with which shape and type.
//!
//! Type policy (see README "Tensor types"): LayerNorm weights, biases and the small
//! position/token-type embeddings stay F32; linear weights get the requested type; the
//! word embedding (also the tied MLM decoder) keeps at least Q8_0 because fill-mask
//! quality depends on it. A tensor whose rows do not divide into the type's blocks falls
//! back along Q4_K -> Q8_0 -> F16 (Q4_0 -> F16, Q8_0 -> F16).

use super::config::HfConfig;
use super::source::WeightSource;
use crate::error::{Error, Result};
use crate::gguf::keys::tensor as names;
use crate::quant::GgmlType;

/// What a tensor is for; decides its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// LayerNorm weights and biases, linear biases, the MLM output bias.
    Vector,
    /// Position and token-type embeddings: small, added to the residual stream as is.
    SmallEmbedding,
    /// Word embedding, and the MLM decoder when it is not tied.
    WordEmbedding,
    /// Linear layer weight `[out, in]`.
    Linear,
    /// A task head's weight or bias: tiny, kept F32 whatever `--type`.
    Head,
}

#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub gguf_name: String,
    /// Names to try in the checkpoint, first match wins.
    pub hf_names: Vec<String>,
    /// PyTorch order (outermost first).
    pub shape: Vec<usize>,
    pub role: Role,
    pub ty: GgmlType,
}

impl TensorPlan {
    /// ggml order (`dims[0]` contiguous).
    pub fn dims(&self) -> Vec<usize> {
        self.shape.iter().rev().copied().collect()
    }
}

/// The type a tensor of `role` gets when the user asks for `requested`, before fallback.
pub fn preferred_type(role: Role, requested: GgmlType) -> GgmlType {
    match role {
        Role::Vector | Role::SmallEmbedding | Role::Head => GgmlType::F32,
        Role::WordEmbedding => match requested {
            GgmlType::Q4_0 | GgmlType::Q4K => GgmlType::Q8_0,
            other => other,
        },
        Role::Linear => requested,
    }
}

/// The nearest type at or above `ty` whose blocks divide a row of `row_len` elements.
pub fn fitting_type(ty: GgmlType, row_len: usize) -> GgmlType {
    let mut ty = ty;
    while ty.row_bytes(row_len).is_none() {
        ty = match ty {
            GgmlType::Q4K => GgmlType::Q8_0,
            GgmlType::Q4_0 | GgmlType::Q8_0 => GgmlType::F16,
            // F16 and F32 fit every row length.
            GgmlType::F16 | GgmlType::F32 => unreachable!("float types fit any row"),
        };
    }
    ty
}

/// Builds the list of GGUF tensors for `config`, checking that the checkpoint has each
/// one with the right shape. `requested` is the user's `--type`.
pub fn plan_tensors(config: &HfConfig, source: &dyn WeightSource, requested: GgmlType) -> Result<Vec<TensorPlan>> {
    let h = config.hidden_size;
    let ff = config.intermediate_size;
    let vocab = config.vocab_size;
    let where_ = source.describe();

    // Checkpoints of ...ForMaskedLM prefix the encoder with `roberta.`; XLMRobertaXLModel's do not.
    let prefix = if source.get("roberta.embeddings.word_embeddings.weight")?.is_some() { "roberta." } else { "" };
    let mut plans = Vec::new();
    let mut add = |gguf: &str, hf: &[String], shape: &[usize], role: Role| {
        let ty = fitting_type(preferred_type(role, requested), *shape.last().unwrap());
        plans.push(TensorPlan { gguf_name: gguf.into(), hf_names: hf.to_vec(), shape: shape.to_vec(), role, ty });
    };
    let one = |name: String| vec![name];
    let p = |rest: &str| format!("{prefix}{rest}");

    add(names::TOKEN_EMBD, &one(p("embeddings.word_embeddings.weight")), &[vocab, h], Role::WordEmbedding);
    add(
        names::POSITION_EMBD,
        &one(p("embeddings.position_embeddings.weight")),
        &[config.max_position_embeddings, h],
        Role::SmallEmbedding,
    );
    add(names::TOKEN_TYPES, &one(p("embeddings.token_type_embeddings.weight")), &[config.type_vocab_size, h], Role::SmallEmbedding);

    for l in 0..config.num_hidden_layers {
        let hf = |m: &str| p(&format!("encoder.layer.{l}.{m}"));
        let mut linear = |gguf: &str, hf_module: &str, out: usize, inp: usize| {
            add(&format!("{}.weight", names::blk(l, gguf)), &one(hf(&format!("{hf_module}.weight"))), &[out, inp], Role::Linear);
            add(&format!("{}.bias", names::blk(l, gguf)), &one(hf(&format!("{hf_module}.bias"))), &[out], Role::Vector);
        };
        linear(names::ATTN_Q, "attention.self.query", h, h);
        linear(names::ATTN_K, "attention.self.key", h, h);
        linear(names::ATTN_V, "attention.self.value", h, h);
        linear(names::ATTN_OUT, "attention.output.dense", h, h);
        linear(names::FFN_UP, "intermediate.dense", ff, h);
        linear(names::FFN_DOWN, "output.dense", h, ff);
        for (gguf, hf_module) in [(names::ATTN_NORM, "attention.self_attn_layer_norm"), (names::FFN_NORM, "LayerNorm")] {
            for part in ["weight", "bias"] {
                add(&format!("{}.{part}", names::blk(l, gguf)), &one(hf(&format!("{hf_module}.{part}"))), &[h], Role::Vector);
            }
        }
    }
    for part in ["weight", "bias"] {
        add(&format!("{}.{part}", names::OUTPUT_NORM), &one(p(&format!("encoder.LayerNorm.{part}"))), &[h], Role::Vector);
    }

    if config.has_mlm_head() {
        add(&format!("{}.weight", names::MLM_DENSE), &one("lm_head.dense.weight".into()), &[h, h], Role::Linear);
        add(&format!("{}.bias", names::MLM_DENSE), &one("lm_head.dense.bias".into()), &[h], Role::Vector);
        for part in ["weight", "bias"] {
            add(&format!("{}.{part}", names::MLM_NORM), &one(format!("lm_head.layer_norm.{part}")), &[h], Role::Vector);
        }
        add(names::MLM_BIAS, &["lm_head.bias".into(), "lm_head.decoder.bias".into()], &[vocab], Role::Vector);
        if !config.tie_word_embeddings {
            add(names::MLM_DECODER, &one("lm_head.decoder.weight".into()), &[vocab, h], Role::WordEmbedding);
        }
    }

    if let Some(kind) = config.head_kind() {
        let rows = kind.output_rows(config.labels().map_err(|m| Error::format(&where_, m))?.len());
        let mut head = |gguf: &str, hf: &str, out: usize| {
            add(&format!("{gguf}.weight"), &one(format!("{hf}.weight")), &[out, h], Role::Head);
            add(&format!("{gguf}.bias"), &one(format!("{hf}.bias")), &[out], Role::Head);
        };
        use crate::gguf::keys::head_tensor as heads;
        use crate::heads::HeadKind;
        match kind {
            HeadKind::SequenceClassification => {
                head(heads::CLS, "classifier.dense", h);
                head(heads::CLS_OUT, "classifier.out_proj", rows);
            }
            HeadKind::TokenClassification => head(heads::CLS_OUT, "classifier", rows),
            HeadKind::QuestionAnswering => head(heads::QA_OUT, "qa_outputs", rows),
            HeadKind::MultipleChoice => {
                head(heads::CLS, &p("pooler.dense"), h);
                head(heads::CLS_OUT, "classifier", rows);
            }
        }
    }

    // Check presence and shapes now, before anything is written.
    for plan in &plans {
        let mut found = None;
        for name in &plan.hf_names {
            if let Some(t) = source.get(name)? {
                found = Some(t);
                break;
            }
        }
        let t = found.ok_or_else(|| Error::MissingTensor { path: where_.clone().into(), name: plan.hf_names[0].clone() })?;
        if t.shape != plan.shape {
            return Err(Error::WrongShape {
                path: where_.clone().into(),
                name: plan.hf_names[0].clone(),
                found: t.shape.clone(),
                expected: plan.shape.clone(),
            });
        }
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_follows_block_sizes() {
        assert_eq!(fitting_type(GgmlType::Q4K, 2560), GgmlType::Q4K);
        assert_eq!(fitting_type(GgmlType::Q4K, 160), GgmlType::Q8_0);
        assert_eq!(fitting_type(GgmlType::Q4K, 80), GgmlType::F16);
        assert_eq!(fitting_type(GgmlType::Q4_0, 80), GgmlType::F16);
        assert_eq!(fitting_type(GgmlType::Q8_0, 96), GgmlType::Q8_0);
        assert_eq!(fitting_type(GgmlType::F32, 7), GgmlType::F32);
    }

    #[test]
    fn norms_stay_f32_and_embedding_keeps_q8() {
        assert_eq!(preferred_type(Role::Vector, GgmlType::Q4K), GgmlType::F32);
        assert_eq!(preferred_type(Role::SmallEmbedding, GgmlType::Q8_0), GgmlType::F32);
        assert_eq!(preferred_type(Role::WordEmbedding, GgmlType::Q4K), GgmlType::Q8_0);
        assert_eq!(preferred_type(Role::WordEmbedding, GgmlType::F16), GgmlType::F16);
        assert_eq!(preferred_type(Role::Linear, GgmlType::Q4_0), GgmlType::Q4_0);
        assert_eq!(preferred_type(Role::Head, GgmlType::Q4K), GgmlType::F32);
    }
}
