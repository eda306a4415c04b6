//! transformers' `XLMRobertaXLClassificationHead`: `out_proj(tanh(dense(x)))` on the `<s>`
//! token's final hidden state (dropout is inactive at inference).

use super::Dense;
use crate::error::Result;
use crate::gguf::keys::head_tensor as names;
use crate::model::weights::Loader;

pub struct ClassificationHead<'a> {
    /// `classifier.dense`, GGUF `cls`.
    pub dense: Dense<'a>,
    /// `classifier.out_proj`, GGUF `cls.output`.
    pub out_proj: Dense<'a>,
}

impl<'a> ClassificationHead<'a> {
    pub(crate) fn load(l: &Loader<'a>, hidden: usize, num_labels: usize) -> Result<Self> {
        Ok(ClassificationHead { dense: Dense::load(l, names::CLS, hidden, hidden)?, out_proj: Dense::load(l, names::CLS_OUT, num_labels, hidden)? })
    }

    // x: [m, hidden] (one `<s>` row per input) -> logits [m, num_labels]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = self.dense.forward(x);
        h.iter_mut().for_each(|v| *v = v.tanh());
        self.out_proj.forward(&h)
    }
}
