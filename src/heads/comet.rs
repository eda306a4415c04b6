//! COMET's modules on top of the encoder (unbabel-comet `comet/modules`): the layer-wise
//! attention that mixes the embeddings and every layer output (`LayerwiseAttention`), the
//! `FeedForward` estimator, and XCOMET's word-level tagger (`hidden2tag`). What the model's
//! outputs mean for a user (scores, MQM, error spans) is in `crate::tasks::comet`.
//!
//! `CometConfig` is what a GGUF file says about the COMET model (written by
//! `convert::comet`, read back at load); `CometHead` holds the tensors.

use super::Dense;
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, GgufWriter, Value, ValueType};
use crate::model::weights::Loader;

/// Metadata keys and tensor names of a COMET model.
pub mod keys {
    pub const CLASS: &str = "comet.class_identifier";
    pub const INPUT_SEGMENTS: &str = "comet.input_segments";
    /// `mix`, or the index of the one hidden state used.
    pub const LAYER: &str = "comet.layer";
    pub const LAYER_TRANSFORMATION: &str = "comet.layer_transformation";
    pub const LAYER_NORM: &str = "comet.layer_norm";
    pub const MIX_SCALARS: &str = "comet.mix.scalar_parameters";
    pub const MIX_GAMMA: &str = "comet.mix.gamma";
    pub const POOL: &str = "comet.pool";
    pub const HIDDEN_SIZES: &str = "comet.estimator.hidden_sizes";
    pub const ACTIVATIONS: &str = "comet.estimator.activations";
    /// Empty when the model has none.
    pub const FINAL_ACTIVATION: &str = "comet.estimator.final_activation";
    pub const WORD_LEVEL: &str = "comet.word_level";
    pub const WORD_LAYER: &str = "comet.word_layer";
    pub const ERROR_LABELS: &str = "comet.error_labels";
    /// Hidden states of the original encoder (layers + 1); the file may keep fewer layers.
    pub const ENCODER_HIDDEN_STATES: &str = "comet.encoder_hidden_states";
    /// COMET's `max_positions` (max_position_embeddings - 2): the cut of concatenated inputs.
    pub const MAX_POSITIONS: &str = "comet.max_positions";

    pub fn estimator(i: usize, part: &str) -> String {
        format!("comet.estimator.{i}.{part}")
    }
    pub const HIDDEN2TAG: &str = "comet.hidden2tag";
}

/// The three COMET model classes xlmr runs (`class_identifier` in hparams.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CometClass {
    /// XCOMET: unified metric with error spans and an MQM-weighted score.
    Xcomet,
    /// Unified metric (CometKiwi): one joint encoding of `mt` with `src` and/or `ref`.
    Unified,
    /// COMET-DA: separate encodings of src, mt and ref, pooled and combined.
    Regression,
}

impl CometClass {
    pub const ALL: [CometClass; 3] = [CometClass::Xcomet, CometClass::Unified, CometClass::Regression];

    pub fn identifier(self) -> &'static str {
        match self {
            CometClass::Xcomet => "xcomet_metric",
            CometClass::Unified => "unified_metric",
            CometClass::Regression => "regression_metric",
        }
    }

    pub fn from_identifier(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.identifier() == s)
    }
}

/// How the regression metric pools token embeddings into a sentence embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Avg,
    Max,
    Cls,
    /// The encoder's own sentence embedding: `<s>` of the last hidden state.
    Default,
}

impl Pool {
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "avg" => Pool::Avg,
            "max" => Pool::Max,
            "cls" => Pool::Cls,
            "default" => Pool::Default,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Pool::Avg => "avg",
            Pool::Max => "max",
            Pool::Cls => "cls",
            Pool::Default => "default",
        }
    }
}

/// Activations COMET's FeedForward accepts that xlmr implements (`getattr(nn, name.title())`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Sigmoid,
    Softplus,
    Softsign,
}

impl Activation {
    /// Python's `str.title()` then the torch.nn class name.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::Softplus => "Softplus",
            Activation::Softsign => "Softsign",
        }
    }
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            // torch: beta 1, threshold 20 (linear above).
            Activation::Softplus => {
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
            Activation::Softsign => x / (1.0 + x.abs()),
        }
    }
}

/// Which hidden states make the sentence embedding.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerSelect {
    /// `LayerwiseAttention`: `gamma * sum_k w_k * h_k` (each `h_k` layer-normed over the
    /// sequence when `layer_norm`), `w = softmax(scalars)` or `sparsemax(scalars)`.
    Mix { sparsemax: bool, layer_norm: bool, scalars: Vec<f32>, gamma: f32 },
    /// One hidden state.
    Single(usize),
}

impl LayerSelect {
    /// Weight of each hidden state `0..=layers` in the sentence embedding (0 = unused).
    pub fn weights(&self, n_states: usize) -> Vec<f32> {
        match self {
            LayerSelect::Mix { sparsemax: true, scalars, .. } => sparsemax(scalars),
            LayerSelect::Mix { scalars, .. } => crate::tasks::softmax(scalars),
            LayerSelect::Single(k) => (0..n_states).map(|i| if i == *k { 1.0 } else { 0.0 }).collect(),
        }
    }
}

/// entmax's sparsemax over one vector: `max(x - tau, 0)`, with `tau` such that the result
/// sums to 1 (computed on the sorted values, as entmax does, in f32).
pub fn sparsemax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let shifted: Vec<f32> = x.iter().map(|v| v - max).collect();
    let mut sorted = shifted.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cumsum, mut support, mut tau_sum) = (0.0f32, 0usize, 0.0f32);
    for (i, &z) in sorted.iter().enumerate() {
        cumsum += z;
        let k = (i + 1) as f32;
        if k * z > cumsum - 1.0 {
            support = i + 1;
            tau_sum = cumsum;
        }
    }
    let tau = (tau_sum - 1.0) / support as f32;
    shifted.iter().map(|v| (v - tau).max(0.0)).collect()
}

/// Everything about a COMET model but its tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct CometConfig {
    pub class: CometClass,
    /// Segment names in encoding order (`mt` first for the unified models).
    pub input_segments: Vec<String>,
    pub layer: LayerSelect,
    /// Regression metric only.
    pub pool: Pool,
    pub hidden_sizes: Vec<usize>,
    pub activation: Activation,
    pub final_activation: Option<Activation>,
    pub word_level: bool,
    pub word_layer: usize,
    pub error_labels: Vec<String>,
    /// Hidden states of the original encoder (its layers + 1).
    pub hidden_states: usize,
    pub max_positions: usize,
}

impl CometConfig {
    /// Whether a reference is needed (comet-score's `requires_references`).
    pub fn requires_references(&self) -> bool {
        match self.class {
            CometClass::Regression => true,
            _ => self.input_segments == ["mt", "ref"],
        }
    }

    /// Inputs of the estimator: `[mt, ref, mt*ref, |mt-ref|, mt*src, |mt-src|]` for the
    /// regression metric, one sentence embedding otherwise.
    pub fn estimator_inputs(&self, hidden: usize) -> usize {
        match self.class {
            CometClass::Regression => 6 * hidden,
            _ => hidden,
        }
    }

    /// Labels of the word-level tagger: `O`, then `I-<label>` per error label.
    pub fn tag_count(&self) -> usize {
        1 + self.error_labels.len()
    }

    /// The highest hidden state the scores need (so the encoder may stop below the rest).
    pub fn last_needed_state(&self) -> usize {
        let weights = self.layer.weights(self.hidden_states);
        let mut last = weights.iter().rposition(|&w| w != 0.0).unwrap_or(0);
        if self.word_level {
            last = last.max(self.word_layer);
        }
        if self.class == CometClass::Regression && self.pool == Pool::Default {
            last = self.hidden_states - 1;
        }
        last
    }

    pub fn write(&self, w: &mut GgufWriter) {
        let strings = |v: &[String]| Value::Array(ValueType::String, v.iter().cloned().map(Value::String).collect());
        let u32v = |v: usize| Value::U32(v as u32);
        w.add(keys::CLASS, Value::String(self.class.identifier().into()));
        w.add(keys::INPUT_SEGMENTS, strings(&self.input_segments));
        match &self.layer {
            LayerSelect::Mix { sparsemax, layer_norm, scalars, gamma } => {
                w.add(keys::LAYER, Value::String("mix".into()));
                w.add(keys::LAYER_TRANSFORMATION, Value::String(if *sparsemax { "sparsemax" } else { "softmax" }.into()));
                w.add(keys::LAYER_NORM, Value::Bool(*layer_norm));
                w.add(keys::MIX_SCALARS, Value::Array(ValueType::F32, scalars.iter().map(|&s| Value::F32(s)).collect()));
                w.add(keys::MIX_GAMMA, Value::F32(*gamma));
            }
            LayerSelect::Single(k) => w.add(keys::LAYER, Value::String(k.to_string())),
        }
        w.add(keys::POOL, Value::String(self.pool.name().into()));
        w.add(keys::HIDDEN_SIZES, Value::Array(ValueType::U32, self.hidden_sizes.iter().map(|&s| u32v(s)).collect()));
        w.add(keys::ACTIVATIONS, Value::String(self.activation.name().into()));
        w.add(keys::FINAL_ACTIVATION, Value::String(self.final_activation.map_or("", |a| a.name()).into()));
        w.add(keys::WORD_LEVEL, Value::Bool(self.word_level));
        w.add(keys::WORD_LAYER, u32v(self.word_layer));
        w.add(keys::ERROR_LABELS, strings(&self.error_labels));
        w.add(keys::ENCODER_HIDDEN_STATES, u32v(self.hidden_states));
        w.add(keys::MAX_POSITIONS, u32v(self.max_positions));
    }

    /// `None` for files that are not COMET models.
    pub fn from_gguf(f: &GgufFile, encoder_states: usize) -> Result<Option<Self>> {
        let Some(class) = f.get(keys::CLASS) else { return Ok(None) };
        let bad = |m: String| Error::format(&f.path, m);
        let class = match class {
            Value::String(s) => CometClass::from_identifier(s).ok_or_else(|| bad(format!("unknown COMET class {s:?} in `{}`", keys::CLASS)))?,
            _ => return Err(bad(format!("`{}` is not a string", keys::CLASS))),
        };
        let strings = |key: &str| -> Result<Vec<String>> {
            match f.get(key) {
                Some(Value::Array(_, items)) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(bad(format!("`{key}` holds a non-string"))),
                    })
                    .collect(),
                _ => Err(bad(format!("missing or mistyped metadata `{key}` (array of strings)"))),
            }
        };
        let u32s = |key: &str| -> Result<Vec<usize>> {
            match f.get(key) {
                Some(Value::Array(_, items)) => items
                    .iter()
                    .map(|v| match v {
                        Value::U32(n) => Ok(*n as usize),
                        _ => Err(bad(format!("`{key}` holds a non-u32"))),
                    })
                    .collect(),
                _ => Err(bad(format!("missing or mistyped metadata `{key}` (array of u32)"))),
            }
        };
        let hidden_states = f.get_u32(keys::ENCODER_HIDDEN_STATES)? as usize;
        let layer = match f.get_str(keys::LAYER)? {
            "mix" => {
                let scalars: Vec<f32> = match f.get(keys::MIX_SCALARS) {
                    Some(Value::Array(_, items)) => items
                        .iter()
                        .map(|v| match v {
                            Value::F32(x) if x.is_finite() => Ok(*x),
                            _ => Err(bad(format!("`{}` holds a non-finite or non-f32 value", keys::MIX_SCALARS))),
                        })
                        .collect::<Result<_>>()?,
                    _ => return Err(bad(format!("missing metadata `{}`", keys::MIX_SCALARS))),
                };
                if scalars.len() != hidden_states {
                    return Err(bad(format!("{} layer-mix weights for {hidden_states} hidden states", scalars.len())));
                }
                let sparsemax = match f.get_str(keys::LAYER_TRANSFORMATION)? {
                    "sparsemax" => true,
                    "softmax" => false,
                    other => return Err(bad(format!("unknown layer transformation {other:?}"))),
                };
                LayerSelect::Mix { sparsemax, layer_norm: f.get_bool(keys::LAYER_NORM)?, scalars, gamma: f.get_f32(keys::MIX_GAMMA)? }
            }
            k => LayerSelect::Single(k.parse().ok().filter(|&k: &usize| k < hidden_states).ok_or_else(|| bad(format!("invalid `{}` {k:?}", keys::LAYER)))?),
        };
        let act = |key: &str, s: &str| Activation::from_name(s).ok_or_else(|| bad(format!("unknown activation {s:?} in `{key}`")));
        let final_activation = match f.get_str(keys::FINAL_ACTIVATION)? {
            "" => None,
            s => Some(act(keys::FINAL_ACTIVATION, s)?),
        };
        let cfg = CometConfig {
            class,
            input_segments: strings(keys::INPUT_SEGMENTS)?,
            layer,
            pool: Pool::from_name(f.get_str(keys::POOL)?).ok_or_else(|| bad(format!("unknown `{}`", keys::POOL)))?,
            hidden_sizes: u32s(keys::HIDDEN_SIZES)?,
            activation: act(keys::ACTIVATIONS, f.get_str(keys::ACTIVATIONS)?)?,
            final_activation,
            word_level: f.get_bool(keys::WORD_LEVEL)?,
            word_layer: f.get_u32(keys::WORD_LAYER)? as usize,
            error_labels: strings(keys::ERROR_LABELS)?,
            hidden_states,
            max_positions: f.get_u32(keys::MAX_POSITIONS)? as usize,
        };
        cfg.validate().map_err(bad)?;
        // The encoder in the file must reach every hidden state the scores use.
        if cfg.last_needed_state() >= encoder_states {
            return Err(bad(format!(
                "the scores need hidden state {} but the file's encoder has only {encoder_states}",
                cfg.last_needed_state()
            )));
        }
        Ok(Some(cfg))
    }

    /// Consistency checks shared by the converter and the loader.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.hidden_sizes.is_empty() || self.hidden_sizes.contains(&0) {
            return Err("the estimator needs at least one positive hidden size".into());
        }
        let segs: Vec<&str> = self.input_segments.iter().map(String::as_str).collect();
        if self.class != CometClass::Regression && !matches!(segs.as_slice(), ["mt", "src"] | ["mt", "ref"] | ["mt", "src", "ref"]) {
            return Err(format!("input_segments {segs:?} are not supported (mt first, then src and/or ref)"));
        }
        if self.word_level && (self.word_layer >= self.hidden_states || self.error_labels.is_empty()) {
            return Err(format!("word_layer {} must be below {} and error_labels non-empty", self.word_layer, self.hidden_states));
        }
        if self.max_positions < 4 {
            return Err(format!("max_positions {} is too small", self.max_positions));
        }
        Ok(())
    }
}

/// `FeedForward`: Linear -> activation (-> dropout, a no-op at inference) per hidden size,
/// then Linear to one score and the optional final activation.
pub struct Estimator<'a> {
    pub layers: Vec<Dense<'a>>,
    pub activation: Activation,
    pub final_activation: Option<Activation>,
}

impl Estimator<'_> {
    // x: [m, in] -> [m]
    pub fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            let act = if i + 1 < self.layers.len() { Some(self.activation) } else { self.final_activation };
            if let Some(a) = act {
                h.iter_mut().for_each(|v| *v = a.apply(*v));
            }
        }
        h
    }
}

/// A COMET model's tensors, viewed in the GGUF file.
pub struct CometHead<'a> {
    pub estimator: Estimator<'a>,
    /// Word-level tagger `[tags, hidden]`, for models trained with word-level labels.
    pub hidden2tag: Option<Dense<'a>>,
}

impl<'a> CometHead<'a> {
    /// Checks every tensor's presence, type (F32) and shape.
    pub fn load(f: &'a GgufFile, hidden: usize, cfg: &CometConfig) -> Result<Self> {
        let l = Loader { f };
        let mut dims = vec![cfg.estimator_inputs(hidden)];
        dims.extend(&cfg.hidden_sizes);
        dims.push(1);
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, io)| {
                Ok(Dense {
                    w: l.f32s(&keys::estimator(i, "weight"), &[io[1], io[0]])?,
                    b: l.f32s(&keys::estimator(i, "bias"), &[io[1]])?,
                    out: io[1],
                    inp: io[0],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let hidden2tag = if cfg.word_level { Some(Dense::load(&l, keys::HIDDEN2TAG, cfg.tag_count(), hidden)?) } else { None };
        Ok(CometHead { estimator: Estimator { layers, activation: cfg.activation, final_activation: cfg.final_activation }, hidden2tag })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparsemax_matches_entmax() {
        // entmax.sparsemax(torch.tensor([0.9, 0.4, 0.7, -1.5]), dim=0): tau = 1/3.
        let p = sparsemax(&[0.9, 0.4, 0.7, -1.5]);
        let want = [0.9 - 0.3 - 1.0 / 3.0 + 0.3, 0.4 - 1.0 / 3.0, 0.7 - 1.0 / 3.0, 0.0];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{p:?}");
        }
        // A dominant entry takes everything.
        assert_eq!(sparsemax(&[5.0, 0.0, 0.0]), vec![1.0, 0.0, 0.0]);
    }
}
