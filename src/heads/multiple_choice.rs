//! transformers' `XLMRobertaXLForMultipleChoice` head: the encoder's pooler
//! (`tanh(pooler.dense(x))` on `<s>`) then `classifier`, one logit per (prompt, choice) pair.

use super::Dense;
use crate::error::Result;
use crate::gguf::keys::head_tensor as names;
use crate::model::weights::Loader;

pub struct MultipleChoiceHead<'a> {
    /// `roberta.pooler.dense`, GGUF `cls` (llama.cpp maps BERT's pooler there too).
    pub pooler: Dense<'a>,
    /// `classifier` `[1, hidden]`, GGUF `cls.output`.
    pub classifier: Dense<'a>,
}

impl<'a> MultipleChoiceHead<'a> {
    pub(crate) fn load(l: &Loader<'a>, hidden: usize) -> Result<Self> {
        Ok(MultipleChoiceHead { pooler: Dense::load(l, names::CLS, hidden, hidden)?, classifier: Dense::load(l, names::CLS_OUT, 1, hidden)? })
    }

    // x: [m, hidden] (one `<s>` row per pair) -> [m] logits
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut pooled = self.pooler.forward(x);
        pooled.iter_mut().for_each(|v| *v = v.tanh());
        self.classifier.forward(&pooled)
    }
}
