//! Views of the model's tensors inside the memory-mapped GGUF file: nothing is copied or
//! dequantized whole. Every tensor's presence, type and shape is checked at load.

use super::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::keys::tensor as names;
use crate::gguf::{GgufFile, TensorInfo};
use crate::kernels::QMatrix;
use crate::quant::{f32_from_bytes, GgmlType};

pub struct Linear<'a> {
    /// `[out, in]`.
    pub w: QMatrix<'a>,
    pub b: &'a [f32],
}

pub struct Norm<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
}

pub struct Layer<'a> {
    pub attn_norm: Norm<'a>,
    pub q: Linear<'a>,
    pub k: Linear<'a>,
    pub v: Linear<'a>,
    pub attn_out: Linear<'a>,
    pub ffn_norm: Norm<'a>,
    pub ffn_up: Linear<'a>,
    pub ffn_down: Linear<'a>,
}

pub struct MlmHead<'a> {
    pub dense: Linear<'a>,
    pub norm: Norm<'a>,
    /// `[vocab, hidden]`: the word embedding when tied.
    pub decoder: QMatrix<'a>,
    pub bias: &'a [f32],
}

pub struct Weights<'a> {
    /// `[vocab, hidden]`, any supported type; rows are dequantized on lookup.
    pub token_embd: QMatrix<'a>,
    /// `[n_positions, hidden]`, F32.
    pub position_embd: &'a [f32],
    /// `[type_vocab, hidden]`, F32.
    pub token_types: &'a [f32],
    pub layers: Vec<Layer<'a>>,
    pub output_norm: Norm<'a>,
    pub mlm: Option<MlmHead<'a>>,
}

/// Checked tensor lookups by name; also used by the task heads (`crate::heads`).
pub(crate) struct Loader<'a> {
    pub(crate) f: &'a GgufFile,
}

impl<'a> Loader<'a> {
    fn info(&self, name: &str, shape: &[usize]) -> Result<&'a TensorInfo> {
        let t = self.f.tensor(name).ok_or_else(|| Error::MissingTensor { path: self.f.path.clone(), name: name.into() })?;
        if t.shape() != shape {
            return Err(Error::WrongShape { path: self.f.path.clone(), name: name.into(), found: t.shape(), expected: shape.to_vec() });
        }
        Ok(t)
    }

    pub(crate) fn f32s(&self, name: &str, shape: &[usize]) -> Result<&'a [f32]> {
        let t = self.info(name, shape)?;
        if t.ty != GgmlType::F32 {
            return Err(Error::format(&self.f.path, format!("tensor `{name}` has type {}, expected f32", t.ty)));
        }
        f32_from_bytes(self.f.tensor_data(t)).ok_or_else(|| Error::format(&self.f.path, format!("tensor `{name}` is misaligned")))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix<'a>> {
        let t = self.info(name, &[rows, cols])?;
        QMatrix::new(t.ty, self.f.tensor_data(t), rows, cols)
            .ok_or_else(|| Error::format(&self.f.path, format!("tensor `{name}` data does not fit its {} shape", t.ty)))
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear<'a>> {
        Ok(Linear { w: self.matrix(&format!("{prefix}.weight"), out, inp)?, b: self.f32s(&format!("{prefix}.bias"), &[out])? })
    }

    fn norm(&self, prefix: &str, n: usize) -> Result<Norm<'a>> {
        Ok(Norm { w: self.f32s(&format!("{prefix}.weight"), &[n])?, b: self.f32s(&format!("{prefix}.bias"), &[n])? })
    }
}

impl<'a> Weights<'a> {
    pub fn load(f: &'a GgufFile, c: &ModelConfig) -> Result<Self> {
        let l = Loader { f };
        let h = c.hidden;
        let token_embd = l.matrix(names::TOKEN_EMBD, c.vocab, h)?;
        // Not reserved from `c.layers`: the file's claim is checked tensor by tensor below.
        let mut layers = Vec::new();
        for i in 0..c.layers {
            let p = |m: &str| names::blk(i, m);
            layers.push(Layer {
                attn_norm: l.norm(&p(names::ATTN_NORM), h)?,
                q: l.linear(&p(names::ATTN_Q), h, h)?,
                k: l.linear(&p(names::ATTN_K), h, h)?,
                v: l.linear(&p(names::ATTN_V), h, h)?,
                attn_out: l.linear(&p(names::ATTN_OUT), h, h)?,
                ffn_norm: l.norm(&p(names::FFN_NORM), h)?,
                ffn_up: l.linear(&p(names::FFN_UP), c.ffn, h)?,
                ffn_down: l.linear(&p(names::FFN_DOWN), h, c.ffn)?,
            });
        }
        let mlm = if c.has_mlm_head {
            let decoder = if f.tensor(names::MLM_DECODER).is_some() {
                l.matrix(names::MLM_DECODER, c.vocab, h)?
            } else {
                token_embd.clone()
            };
            Some(MlmHead {
                dense: l.linear(names::MLM_DENSE, h, h)?,
                norm: l.norm(names::MLM_NORM, h)?,
                decoder,
                bias: l.f32s(names::MLM_BIAS, &[c.vocab])?,
            })
        } else {
            None
        };
        Ok(Weights {
            token_embd,
            position_embd: l.f32s(names::POSITION_EMBD, &[c.n_positions(), h])?,
            token_types: l.f32s(names::TOKEN_TYPES, &[c.type_vocab, h])?,
            layers,
            output_norm: l.norm(names::OUTPUT_NORM, h)?,
            mlm,
        })
    }
}
