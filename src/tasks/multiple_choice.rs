//! Multiple choice (`XLMRobertaXLForMultipleChoice`; transformers has no pipeline for it):
//! each (prompt, choice) pair is encoded `<s> prompt </s></s> choice </s>` and scored by the
//! head on `<s>`; the scores are a softmax over the prompt's choices.

use super::{argmax, softmax};
use crate::error::{Error, Result};
use crate::heads::{Head, HeadKind};
use crate::model::Model;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choices<'a> {
    pub prompt: &'a str,
    pub choices: Vec<&'a str>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MultipleChoiceResult {
    /// Softmax over the choices, in input order.
    pub scores: Vec<f32>,
    /// Index of the highest score (the first on ties).
    pub best: usize,
    /// The head's raw logit per choice.
    pub logits: Vec<f32>,
}

impl Model {
    /// Scores every choice of every prompt.
    pub fn multiple_choice(&self, inputs: &[Choices], truncate: bool) -> Result<Vec<MultipleChoiceResult>> {
        self.require_head(HeadKind::MultipleChoice)?;
        let mut seqs = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let n = i + 1;
            if input.prompt.trim().is_empty() {
                return Err(Error::Input(format!("input {n}: prompt is empty")));
            }
            if input.choices.is_empty() {
                return Err(Error::Input(format!("input {n}: no choices")));
            }
            for (k, choice) in input.choices.iter().enumerate() {
                if choice.trim().is_empty() {
                    return Err(Error::Input(format!("input {n}: choice {} is empty", k + 1)));
                }
                let enc = self
                    .tokenizer
                    .encoding(input.prompt, Some(choice), truncate)
                    .map_err(|e| Error::Input(format!("input {n} choice {}: {e}", k + 1)))?;
                self.check_vocab(n, enc.get_ids())?;
                seqs.push(enc.get_ids().to_vec());
            }
        }
        let cls_rows = self.final_states(&seqs, |_| 1).concat();
        let Some(Head::MultipleChoice(head)) = self.head_weights() else { unreachable!("kind checked above") };
        let logits = head.forward(&cls_rows);
        let mut at = 0;
        Ok(inputs
            .iter()
            .map(|input| {
                let l = logits[at..at + input.choices.len()].to_vec();
                at += input.choices.len();
                let scores = softmax(&l);
                MultipleChoiceResult { best: argmax(&scores), scores, logits: l }
            })
            .collect())
    }
}
