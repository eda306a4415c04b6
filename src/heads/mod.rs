//! Task heads on top of the encoder, one small struct per Hugging Face module, each with
//! `load` (views into the GGUF file) and `forward`. What a head's outputs mean for a user
//! (labels, entity grouping, answer spans) is in `crate::tasks`.
//!
//! Head tensors are F32 (the converter keeps them so whatever `--type`): they are tiny, and
//! plain f32 dot products keep the heads exact and independent of the GEMM kernels.

pub mod classification;
pub mod comet;
pub mod multiple_choice;
pub mod question_answering;
pub mod token_classification;

use crate::error::{Error, Result};
use crate::gguf::{keys, GgufFile, Value};
use crate::model::weights::Loader;

pub use classification::ClassificationHead;
pub use multiple_choice::MultipleChoiceHead;
pub use question_answering::QuestionAnsweringHead;
pub use token_classification::TokenClassificationHead;

/// Which transformers architecture a file's head comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    SequenceClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
}

impl HeadKind {
    pub const ALL: [HeadKind; 4] =
        [HeadKind::SequenceClassification, HeadKind::TokenClassification, HeadKind::QuestionAnswering, HeadKind::MultipleChoice];

    pub fn architecture(self) -> &'static str {
        match self {
            HeadKind::SequenceClassification => "XLMRobertaXLForSequenceClassification",
            HeadKind::TokenClassification => "XLMRobertaXLForTokenClassification",
            HeadKind::QuestionAnswering => "XLMRobertaXLForQuestionAnswering",
            HeadKind::MultipleChoice => "XLMRobertaXLForMultipleChoice",
        }
    }

    /// The value of the `head.kind` metadata key.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::SequenceClassification => "sequence-classification",
            HeadKind::TokenClassification => "token-classification",
            HeadKind::QuestionAnswering => "question-answering",
            HeadKind::MultipleChoice => "multiple-choice",
        }
    }

    /// The `xlmr run --task` that uses this head.
    pub fn task(self) -> &'static str {
        match self {
            HeadKind::SequenceClassification => "classify",
            HeadKind::TokenClassification => "token-classify",
            HeadKind::QuestionAnswering => "qa",
            HeadKind::MultipleChoice => "multiple-choice",
        }
    }

    pub fn from_architecture(arch: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.architecture() == arch)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Rows of the output layer for a config with `num_labels` labels: multiple choice
    /// scores each choice with one row whatever the config says.
    pub fn output_rows(self, num_labels: usize) -> usize {
        match self {
            HeadKind::MultipleChoice => 1,
            _ => num_labels,
        }
    }
}

/// transformers' `config.problem_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    SingleLabel,
    MultiLabel,
    Regression,
}

impl ProblemType {
    pub fn name(self) -> &'static str {
        match self {
            ProblemType::SingleLabel => "single_label_classification",
            ProblemType::MultiLabel => "multi_label_classification",
            ProblemType::Regression => "regression",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [ProblemType::SingleLabel, ProblemType::MultiLabel, ProblemType::Regression].into_iter().find(|p| p.name() == name)
    }
}

/// What a file says about its head (metadata only; the tensors are in `Head`).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadInfo {
    pub kind: HeadKind,
    /// `id2label` in id order: one per output row (for QA and multiple choice, the
    /// config's names, unused by the tasks).
    pub labels: Vec<String>,
    pub problem_type: Option<ProblemType>,
}

impl HeadInfo {
    /// `None` for files without a task head (the bare encoder, or the MLM head).
    pub fn from_gguf(f: &GgufFile) -> Result<Option<Self>> {
        let Some(kind) = f.get(keys::HEAD_KIND) else { return Ok(None) };
        let bad = |m: String| -> Result<Option<Self>> { Err(Error::format(&f.path, m)) };
        let kind = match kind {
            Value::String(s) => match HeadKind::from_name(s) {
                Some(k) => k,
                None => {
                    let known: Vec<&str> = HeadKind::ALL.iter().map(|k| k.name()).collect();
                    return bad(format!("unknown head kind {s:?} in `{}`; known: {}", keys::HEAD_KIND, known.join(", ")));
                }
            },
            v => return bad(format!("metadata `{}` has type {:?}, expected String", keys::HEAD_KIND, v.value_type())),
        };
        let rows = f.get_u32(keys::HEAD_NUM_LABELS)? as usize;
        let labels = match f.get(keys::HEAD_LABELS) {
            Some(Value::Array(_, items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(Error::format(&f.path, format!("`{}` holds a {:?}, expected strings", keys::HEAD_LABELS, other.value_type()))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(v) => return bad(format!("metadata `{}` has type {:?}, expected an array of strings", keys::HEAD_LABELS, v.value_type())),
            None => return bad(format!("missing metadata key `{}` (the head's label names)", keys::HEAD_LABELS)),
        };
        if rows == 0 || kind.output_rows(labels.len()) != rows {
            return bad(format!(
                "the label table `{}` has {} entries but the {} head has {rows} output rows",
                keys::HEAD_LABELS,
                labels.len(),
                kind.name()
            ));
        }
        if kind == HeadKind::QuestionAnswering && rows != 2 {
            return bad(format!("a question-answering head has 2 output rows (start, end), not {rows}"));
        }
        let problem_type = match f.get(keys::HEAD_PROBLEM_TYPE) {
            None => None,
            Some(Value::String(s)) => match ProblemType::from_name(s) {
                Some(p) => Some(p),
                None => return bad(format!("unknown problem_type {s:?} in `{}`", keys::HEAD_PROBLEM_TYPE)),
            },
            Some(v) => return bad(format!("metadata `{}` has type {:?}, expected String", keys::HEAD_PROBLEM_TYPE, v.value_type())),
        };
        Ok(Some(HeadInfo { kind, labels, problem_type }))
    }

    /// Rows of the head's output layer.
    pub fn output_rows(&self) -> usize {
        self.kind.output_rows(self.labels.len())
    }
}

/// A head's weights, viewed in the GGUF file.
pub enum Head<'a> {
    SequenceClassification(ClassificationHead<'a>),
    TokenClassification(TokenClassificationHead<'a>),
    QuestionAnswering(QuestionAnsweringHead<'a>),
    MultipleChoice(MultipleChoiceHead<'a>),
}

impl<'a> Head<'a> {
    /// Checks every head tensor's presence, type (F32) and shape.
    pub fn load(f: &'a GgufFile, hidden: usize, info: &HeadInfo) -> Result<Self> {
        let l = Loader { f };
        let rows = info.output_rows();
        Ok(match info.kind {
            HeadKind::SequenceClassification => Head::SequenceClassification(ClassificationHead::load(&l, hidden, rows)?),
            HeadKind::TokenClassification => Head::TokenClassification(TokenClassificationHead::load(&l, hidden, rows)?),
            HeadKind::QuestionAnswering => Head::QuestionAnswering(QuestionAnsweringHead::load(&l, hidden)?),
            HeadKind::MultipleChoice => Head::MultipleChoice(MultipleChoiceHead::load(&l, hidden)?),
        })
    }
}

/// An F32 linear layer `y = x Wᵀ + b`.
pub struct Dense<'a> {
    /// `[out, in]`.
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub out: usize,
    pub inp: usize,
}

impl<'a> Dense<'a> {
    pub(crate) fn load(l: &Loader<'a>, name: &str, out: usize, inp: usize) -> Result<Self> {
        Ok(Dense { w: l.f32s(&format!("{name}.weight"), &[out, inp])?, b: l.f32s(&format!("{name}.bias"), &[out])?, out, inp })
    }

    // x: [m, inp] -> [m, out]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        debug_assert_eq!(x.len() % self.inp, 0);
        let mut y = Vec::with_capacity(x.len() / self.inp * self.out);
        for row in x.chunks_exact(self.inp) {
            for (w, b) in self.w.chunks_exact(self.inp).zip(self.b) {
                y.push(dot(row, w) + b);
            }
        }
        y
    }
}

/// f32 dot product in 8 independent lanes (vectorizes without fast-math).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
