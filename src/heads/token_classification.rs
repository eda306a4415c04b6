//! transformers' `XLMRobertaXLForTokenClassification` head: one linear `classifier` on every
//! token's final hidden state.

use super::Dense;
use crate::error::Result;
use crate::gguf::keys::head_tensor as names;
use crate::model::weights::Loader;

pub struct TokenClassificationHead<'a> {
    /// `classifier`, GGUF `cls.output`.
    pub classifier: Dense<'a>,
}

impl<'a> TokenClassificationHead<'a> {
    pub(crate) fn load(l: &Loader<'a>, hidden: usize, num_labels: usize) -> Result<Self> {
        Ok(TokenClassificationHead { classifier: Dense::load(l, names::CLS_OUT, num_labels, hidden)? })
    }

    // x: [tokens, hidden] -> logits [tokens, num_labels]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.classifier.forward(x)
    }
}
