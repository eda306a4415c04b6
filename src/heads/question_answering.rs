//! transformers' `XLMRobertaXLForQuestionAnswering` head: `qa_outputs`, a linear layer with
//! two rows giving each token's start and end logits.

use super::Dense;
use crate::error::Result;
use crate::gguf::keys::head_tensor as names;
use crate::model::weights::Loader;

pub struct QuestionAnsweringHead<'a> {
    /// `qa_outputs` `[2, hidden]`, GGUF `qa.output`.
    pub qa_outputs: Dense<'a>,
}

impl<'a> QuestionAnsweringHead<'a> {
    pub(crate) fn load(l: &Loader<'a>, hidden: usize) -> Result<Self> {
        Ok(QuestionAnsweringHead { qa_outputs: Dense::load(l, names::QA_OUT, 2, hidden)? })
    }

    // x: [tokens, hidden] -> (start logits [tokens], end logits [tokens])
    pub fn forward(&self, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let both = self.qa_outputs.forward(x);
        (both.iter().step_by(2).copied().collect(), both.iter().skip(1).step_by(2).copied().collect())
    }
}
