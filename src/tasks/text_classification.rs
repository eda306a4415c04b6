//! Sequence classification, as transformers' `text-classification` pipeline: the head's
//! logits on `<s>`, turned into scores by softmax, sigmoid or nothing (by default chosen from
//! the checkpoint's `problem_type` and label count, as the pipeline chooses), labelled with
//! `id2label` and sorted by score.

use super::{argmax, sigmoid, softmax, TextInput};
use crate::error::{Error, Result};
use crate::heads::{Head, HeadInfo, HeadKind, ProblemType};
use crate::model::Model;
use std::str::FromStr;

/// How many labels to return per input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopK {
    /// The `n` best (at least 1).
    N(usize),
    /// Every label, best first.
    All,
}

impl FromStr for TopK {
    type Err = Error;
    /// `"all"` or a positive number.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all" => Ok(TopK::All),
            _ => match s.parse::<usize>() {
                Ok(0) => Err(Error::Input("top_k must be at least 1 (or `all`)".into())),
                Ok(n) => Ok(TopK::N(n)),
                Err(_) => Err(Error::Input(format!("top_k {s:?} is not a positive number or `all`"))),
            },
        }
    }
}

/// The function from logits to scores (transformers' `function_to_apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassifyFunction {
    Softmax,
    Sigmoid,
    /// The raw logits.
    None,
}

impl FromStr for ClassifyFunction {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "softmax" => Ok(ClassifyFunction::Softmax),
            "sigmoid" => Ok(ClassifyFunction::Sigmoid),
            "none" => Ok(ClassifyFunction::None),
            _ => Err(Error::Input(format!("unknown function {s:?}; use softmax, sigmoid or none"))),
        }
    }
}

impl ClassifyFunction {
    /// The pipeline's default: none for regression, sigmoid for multi-label or a single
    /// label, softmax otherwise.
    pub fn default_for(head: &HeadInfo) -> Self {
        match head.problem_type {
            Some(ProblemType::Regression) => ClassifyFunction::None,
            Some(ProblemType::MultiLabel) => ClassifyFunction::Sigmoid,
            _ if head.labels.len() == 1 => ClassifyFunction::Sigmoid,
            _ => ClassifyFunction::Softmax,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifyOptions {
    pub top_k: TopK,
    /// `None`: the pipeline's default for this model (`ClassifyFunction::default_for`).
    pub function: Option<ClassifyFunction>,
    /// Cut inputs longer than the model's maximum (the longer side of a pair first) instead
    /// of failing.
    pub truncate: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions { top_k: TopK::N(1), function: None, truncate: false }
    }
}

/// One label and its score.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// Scores of one input's logits, labelled, best first (ties keep label order, like the
/// pipeline's stable sort), cut to `top_k`.
pub fn label_scores(logits: &[f32], labels: &[String], function: ClassifyFunction, top_k: TopK) -> Vec<LabelScore> {
    let scores = match function {
        ClassifyFunction::Softmax => softmax(logits),
        ClassifyFunction::Sigmoid => logits.iter().map(|&x| sigmoid(x)).collect(),
        ClassifyFunction::None => logits.to_vec(),
    };
    if top_k == TopK::N(1) {
        let best = argmax(&scores);
        return vec![LabelScore { label: labels[best].clone(), score: scores[best] }];
    }
    let mut all: Vec<LabelScore> = labels.iter().zip(scores).map(|(l, s)| LabelScore { label: l.clone(), score: s }).collect();
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    if let TopK::N(n) = top_k {
        all.truncate(n);
    }
    all
}

impl Model {
    /// Classifies each text or text pair: per input, `top_k` labels with scores, best first.
    pub fn classify(&self, inputs: &[TextInput], opts: &ClassifyOptions) -> Result<Vec<Vec<LabelScore>>> {
        // Checked before tokenizing, so a model without the head fails first.
        self.require_head(HeadKind::SequenceClassification)?;
        if opts.top_k == TopK::N(0) {
            return Err(Error::Input("top_k must be at least 1 (or `all`)".into()));
        }
        let seqs = self.tokenize_inputs(inputs, opts.truncate)?;
        self.classify_tokens(&seqs, opts.function, opts.top_k)
    }

    /// `classify` on already-tokenized inputs (`<s> A </s>` or `<s> A </s></s> B </s>`),
    /// e.g. those of several server requests run as one batch.
    pub fn classify_tokens(&self, seqs: &[Vec<u32>], function: Option<ClassifyFunction>, top_k: TopK) -> Result<Vec<Vec<LabelScore>>> {
        let info = self.require_head(HeadKind::SequenceClassification)?;
        // The head reads `<s>` only.
        let cls_rows = self.final_states(seqs, |_| 1).concat();
        let Some(Head::SequenceClassification(head)) = self.head_weights() else { unreachable!("kind checked above") };
        let logits = head.forward(&cls_rows);
        let function = function.unwrap_or_else(|| ClassifyFunction::default_for(info));
        Ok(logits.chunks_exact(info.labels.len()).map(|l| label_scores(l, &info.labels, function, top_k)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("L{i}")).collect()
    }

    #[test]
    fn ties_keep_label_order_and_top_k_cuts() {
        let got = label_scores(&[1.0, 3.0, 3.0, 0.0], &labels(4), ClassifyFunction::None, TopK::N(3));
        let names: Vec<&str> = got.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(names, ["L1", "L2", "L0"]);
        assert_eq!(label_scores(&[1.0, 3.0, 3.0], &labels(3), ClassifyFunction::None, TopK::N(1))[0].label, "L1");
        assert_eq!(label_scores(&[1.0, 3.0], &labels(2), ClassifyFunction::Softmax, TopK::All).len(), 2);
    }

    #[test]
    fn parse_options() {
        assert_eq!("all".parse::<TopK>().unwrap(), TopK::All);
        assert_eq!("3".parse::<TopK>().unwrap(), TopK::N(3));
        assert!("0".parse::<TopK>().is_err());
        assert!("-1".parse::<TopK>().is_err());
        assert_eq!("SIGMOID".parse::<ClassifyFunction>().unwrap(), ClassifyFunction::Sigmoid);
        assert!("relu".parse::<ClassifyFunction>().is_err());
    }
}
