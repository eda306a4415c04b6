//! The task API on `Model`, shared by every front-end (CLI, C API, HTTP server): each task
//! tokenizes its inputs, runs the encoder, applies its head (`crate::heads`) and turns the
//! head's outputs into what transformers' pipeline of the same name returns.
//!
//! - [`text_classification`]: `Model::classify` (the `text-classification` pipeline).
//! - [`token_classification`]: `Model::token_classify` (`token-classification` / NER).
//! - [`question_answering`]: `Model::answer` (transformers 4.x's `question-answering`).
//! - [`multiple_choice`]: `Model::multiple_choice` (`...ForMultipleChoice`; no pipeline).
//! - [`comet`]: `Model::score` (unbabel-comet's `predict`: XCOMET, CometKiwi, COMET-DA).

pub mod comet;
pub mod multiple_choice;
pub mod question_answering;
pub mod text_classification;
pub mod token_classification;

pub use comet::{CometMetadata, CometPrediction, ErrorSpan, Triplet};
pub use multiple_choice::{Choices, MultipleChoiceResult};
pub use question_answering::{Answer, QaInput, QaOptions};
pub use text_classification::{ClassifyFunction, ClassifyOptions, LabelScore, TopK};
pub use token_classification::{Aggregation, Entity, TokenClassifyOptions};

use crate::error::{Error, Result};
use crate::heads::{HeadInfo, HeadKind};
use crate::model::Model;

/// One input of a task that takes a text or a text pair (classification).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextInput<'a> {
    Single(&'a str),
    /// `text` and `text_pair`, encoded `<s> text </s></s> text_pair </s>`.
    Pair(&'a str, &'a str),
}

impl<'a> From<&'a str> for TextInput<'a> {
    fn from(text: &'a str) -> Self {
        TextInput::Single(text)
    }
}

impl<'a> From<(&'a str, &'a str)> for TextInput<'a> {
    fn from((text, pair): (&'a str, &'a str)) -> Self {
        TextInput::Pair(text, pair)
    }
}

impl Model {
    /// The head a task needs, or an error saying what this file has instead.
    pub(crate) fn require_head(&self, kind: HeadKind) -> Result<&HeadInfo> {
        match &self.head {
            Some(info) if info.kind == kind => Ok(info),
            other => {
                let has = match other {
                    Some(info) => format!("a {} head", info.kind.name()),
                    None if self.config.has_mlm_head => "the MLM head (converted from ...ForMaskedLM)".into(),
                    None => "no task head (converted from XLMRobertaXLModel)".into(),
                };
                Err(Error::Input(format!(
                    "this model has {has}; task {} needs a model converted from {}",
                    kind.task(),
                    kind.architecture()
                )))
            }
        }
    }

    /// Token ids of each input; a bad input fails the call before any compute.
    pub fn tokenize_inputs(&self, inputs: &[TextInput], truncate: bool) -> Result<Vec<Vec<u32>>> {
        inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let n = i + 1;
                let (text, pair) = match *input {
                    TextInput::Single(t) => (t, None),
                    TextInput::Pair(t, p) => (t, Some(p)),
                };
                if text.trim().is_empty() {
                    return Err(Error::Input(if pair.is_some() { format!("input {n}: text is empty") } else { format!("input {n} is empty") }));
                }
                if pair.is_some_and(|p| p.trim().is_empty()) {
                    return Err(Error::Input(format!("input {n}: text_pair is empty (give both sides of a pair)")));
                }
                let enc = self.tokenizer.encoding(text, pair, truncate).map_err(|e| Error::Input(format!("input {n}: {e}")))?;
                self.check_vocab(n, enc.get_ids())?;
                Ok(enc.get_ids().to_vec())
            })
            .collect()
    }

    pub(crate) fn check_vocab(&self, n: usize, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.config.vocab) {
            Some(bad) => Err(Error::Input(format!("input {n}: token id {bad} is outside the model's vocabulary"))),
            None => Ok(()),
        }
    }

    /// Final hidden states (after the last LayerNorm) of each sequence: the first `rows(i)`
    /// tokens of sequence `i`, `[rows, hidden]` flattened.
    pub(crate) fn final_states(&self, seqs: &[Vec<u32>], rows: impl Fn(usize) -> usize) -> Vec<Vec<f32>> {
        let (h, last) = (self.config.hidden, self.config.layers);
        let mut out = vec![Vec::new(); seqs.len()];
        self.run_batches(seqs, |l| l == last, |input, batch, row, _, states| {
            let start = row * batch.t * h;
            out[input] = states[start..start + rows(input).min(seqs[input].len()) * h].to_vec();
        });
        out
    }
}

/// `exp(x - max) / sum`, as numpy computes it in the pipelines.
pub fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Index of the first largest value (numpy's `argmax`).
pub(crate) fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v > x[best] {
            best = i;
        }
    }
    best
}
