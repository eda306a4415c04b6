//! COMET machine-translation metrics, as unbabel-comet's `model.predict(samples)` computes
//! them: `Model::score` on (src, mt, ref) triplets returns COMET's `Prediction` (segment
//! scores, system score, and per class the metadata: XCOMET's partial scores, MQM scores and
//! error spans).
//!
//! What COMET does, followed here step by step:
//! - each segment is tokenized alone, cut to `max_positions - 2` tokens;
//! - unified models (XCOMET, CometKiwi) encode `mt` first then `src` and/or `ref` as one
//!   sequence (`<s> mt </s></s> src </s>...`), cut to `max_positions` when the parts are too
//!   long; with both src and ref they encode three combinations ([mt, src], [mt, ref],
//!   [mt, src, ref]); the regression metric (COMET-DA) encodes src, mt and ref apart;
//! - the sentence embedding is the layer mix (`heads::comet::LayerSelect`) at `<s>` (unified)
//!   or pooled over the tokens (regression), then the estimator;
//! - XCOMET's word tags come from `hidden2tag` on the word layer over the mt tokens, their
//!   softmax averaged over the combinations with weights 1/6, 1/3, 1/2; error spans are runs
//!   of tokens tagged as errors (a run still open at the last mt token is dropped, as in
//!   COMET); the MQM score counts them (minor 1, major 5, critical 10, at most 25).

use crate::error::{Error, Result};
use crate::heads::comet::{CometClass, CometConfig, LayerSelect, Pool};
use crate::model::Model;
use serde::Serialize;

/// One segment to score. `src` is always given (as comet-score asks); `reference` only for
/// reference-based scoring.
#[derive(Clone, Copy, Debug)]
pub struct Triplet<'a> {
    pub src: &'a str,
    pub mt: &'a str,
    pub reference: Option<&'a str>,
}

/// An error span in the translation, as XCOMET reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorSpan {
    /// The span's tokens decoded back to text.
    pub text: String,
    /// Mean probability of the span's tokens' tags.
    pub confidence: f32,
    /// `minor`, `major` or `critical` (the first token's tag).
    pub severity: String,
    /// Character offsets into the translation (COMET's: a token's offsets include the space
    /// before it).
    pub start: usize,
    pub end: usize,
}

/// COMET's `Prediction.metadata`: present fields depend on the model class and inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CometMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_scores: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_scores: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unified_scores: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqm_scores: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_spans: Option<Vec<Vec<ErrorSpan>>>,
}

impl CometMetadata {
    pub fn is_empty(&self) -> bool {
        *self == CometMetadata::default()
    }
}

/// COMET's `Prediction`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CometPrediction {
    pub scores: Vec<f32>,
    /// Mean of the segment scores.
    pub system_score: f64,
    #[serde(skip_serializing_if = "CometMetadata::is_empty")]
    pub metadata: CometMetadata,
}

/// XCOMET's weights of the [mt, src], [mt, ref], [mt, src, ref] tag probabilities.
const SPAN_WEIGHTS: [f32; 3] = [0.1667, 0.3333, 0.5];
/// XCOMET's weights of the three regression scores and the MQM score.
const SCORE_WEIGHTS: [f32; 4] = [0.12, 0.33, 0.33, 0.22];

/// One tokenized segment: ids with `<s>`/`</s>`, character offsets.
struct Segment {
    ids: Vec<u32>,
    offsets: Vec<(usize, usize)>,
}

/// Per encoded sequence: the layer mix so far, the word-layer states.
#[derive(Default)]
struct Accumulated {
    /// `[rows, hidden]`: `<s>` only, or every token when the pooling needs them.
    mix: Vec<f32>,
    /// `[mt tokens, hidden]` at the word layer.
    word: Vec<f32>,
}

impl Model {
    /// Scores `triplets` as unbabel-comet's `predict` does (see the module docs).
    pub fn score(&self, triplets: &[Triplet]) -> Result<CometPrediction> {
        let cfg = self.comet.as_ref().ok_or_else(|| {
            Error::Input("this model is not a COMET metric; convert a COMET model folder (hparams.yaml + checkpoints/model.ckpt) with `xlmr convert`".into())
        })?;
        if triplets.is_empty() {
            return Err(Error::Input("no segments to score".into()));
        }
        let with_ref = triplets[0].reference.is_some();
        if let Some(i) = triplets.iter().position(|t| t.reference.is_some() != with_ref) {
            return Err(Error::Input(format!("segment {} {} a reference but segment 1 {}: give one for every segment or for none", i + 1, if with_ref { "has no" } else { "has" }, if with_ref { "has" } else { "has none" })));
        }
        if cfg.requires_references() && !with_ref {
            return Err(Error::Input(format!("this COMET model ({}) needs references (-r/--references)", cfg.class.identifier())));
        }
        let max_len = cfg.max_positions.saturating_sub(2).min(self.config.max_tokens);
        // src, mt, ref of each triplet, tokenized in one pass (one truncating tokenizer).
        let texts: Vec<&str> = triplets.iter().flat_map(|t| [t.src, t.mt, t.reference.unwrap_or("")]).collect();
        let mut encoded = self.tokenizer.encode_truncated(&texts, max_len)?.into_iter();
        let mut segs: Vec<[Option<Segment>; 3]> = Vec::with_capacity(triplets.len());
        for (i, t) in triplets.iter().enumerate() {
            let mut next = || -> Result<Segment> {
                let (ids, offsets) = encoded.next().expect("three texts per triplet");
                self.check_vocab(i + 1, &ids)?;
                Ok(Segment { ids, offsets })
            };
            let (src, mt, reference) = (next()?, next()?, next()?);
            segs.push([Some(src), Some(mt), t.reference.map(|_| reference)]);
        }
        match cfg.class {
            CometClass::Regression => self.score_regression(cfg, &segs),
            _ => self.score_unified(cfg, &segs, with_ref),
        }
    }

    /// Runs the encoder over `seqs` and returns each one's sentence embedding (`rows(i)`
    /// token rows of the mix, pooled per `cfg.pool`) and, when `word_rows(i) > 0`, its first
    /// `word_rows(i)` states at the word layer.
    fn comet_encode(&self, cfg: &CometConfig, seqs: &[Vec<u32>], all_tokens: bool, word_rows: impl Fn(usize) -> usize) -> Vec<Accumulated> {
        let h = self.config.hidden;
        let weights = cfg.layer.weights(cfg.hidden_states);
        let (gamma, layer_norm) = match &cfg.layer {
            LayerSelect::Mix { gamma, layer_norm, .. } => (*gamma, *layer_norm),
            LayerSelect::Single(_) => (1.0, false),
        };
        let default_pool = cfg.class == CometClass::Regression && cfg.pool == Pool::Default;
        let last = self.config.layers;
        let mut acc: Vec<Accumulated> = seqs.iter().map(|_| Accumulated::default()).collect();
        let wanted = |l: usize| weights.get(l).is_some_and(|&w| w != 0.0) || (cfg.word_level && l == cfg.word_layer) || (default_pool && l == last);
        self.run_batches(seqs, wanted, |input, batch, row, layer, states| {
            let len = seqs[input].len();
            let tokens = &states[row * batch.t * h..(row * batch.t + len) * h];
            let a = &mut acc[input];
            if default_pool {
                if layer == last {
                    a.mix = tokens[..h].to_vec();
                }
            } else if let Some(&w) = weights.get(layer).filter(|&&w| w != 0.0) {
                let rows = if all_tokens { len } else { 1 };
                // Masked layer norm over the whole sequence (COMET's `_layer_norm`).
                let (mean, inv_std) = if layer_norm {
                    let n = (len * h) as f64;
                    let mean = tokens.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = tokens.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                    (mean as f32, 1.0 / (var as f32 + 1e-12).sqrt())
                } else {
                    (0.0, 1.0)
                };
                if a.mix.is_empty() {
                    a.mix = vec![0.0; rows * h];
                }
                for (m, &v) in a.mix.iter_mut().zip(&tokens[..rows * h]) {
                    let x = if layer_norm { (v - mean) * inv_std } else { v };
                    *m += w * x;
                }
            }
            if cfg.word_level && layer == cfg.word_layer {
                a.word = tokens[..word_rows(input).min(len) * h].to_vec();
            }
        });
        if !default_pool {
            for a in &mut acc {
                a.mix.iter_mut().for_each(|v| *v *= gamma);
            }
        }
        acc
    }

    fn score_unified(&self, cfg: &CometConfig, segs: &[[Option<Segment>; 3]], with_ref: bool) -> Result<CometPrediction> {
        let head = self.comet_head().expect("COMET model");
        let use_src = cfg.input_segments.iter().any(|s| s == "src");
        let use_ref = with_ref && cfg.input_segments.iter().any(|s| s == "ref");
        // Which of (src, ref) each encoded combination appends to mt.
        let combos: Vec<(bool, bool)> = if use_src && use_ref { vec![(true, false), (false, true), (true, true)] } else { vec![(use_src, use_ref)] };
        let mut seqs = Vec::with_capacity(segs.len() * combos.len());
        for [src, mt, reference] in segs {
            let mt = mt.as_ref().expect("always tokenized");
            for &(s, r) in &combos {
                let mut parts = vec![&mt.ids];
                if s {
                    parts.push(&src.as_ref().expect("always tokenized").ids);
                }
                if r {
                    parts.push(&reference.as_ref().expect("checked with_ref").ids);
                }
                seqs.push(concat_sequences(&parts, cfg.max_positions));
            }
        }
        let k = combos.len();
        let mt_len = |input: usize| segs[input / k][1].as_ref().expect("always tokenized").ids.len();
        let acc = self.comet_encode(cfg, &seqs, false, |i| if cfg.word_level { mt_len(i) } else { 0 });
        let h = self.config.hidden;
        let sentembs: Vec<f32> = acc.iter().flat_map(|a| a.mix[..h].iter().copied()).collect();
        let raw = head.estimator.forward(&sentembs);
        let per = |c: usize| -> Vec<f32> { (0..segs.len()).map(|i| raw[i * k + c]).collect() };

        // Word-level tag probabilities per segment, weighted over the combinations.
        let error_spans = match &head.hidden2tag {
            Some(tagger) => {
                let tags = cfg.tag_count();
                let span_weights: &[f32] = if k == 3 { &SPAN_WEIGHTS } else { &[1.0] };
                let mut spans = Vec::with_capacity(segs.len());
                for (i, seg) in segs.iter().enumerate() {
                    let mt = seg[1].as_ref().expect("always tokenized");
                    let mut probs = vec![0.0f32; mt.ids.len() * tags];
                    for (c, &w) in span_weights.iter().enumerate() {
                        let logits = tagger.forward(&acc[i * k + c].word);
                        for (p, row) in probs.chunks_exact_mut(tags).zip(logits.chunks_exact(tags)) {
                            for (pv, sv) in p.iter_mut().zip(crate::tasks::softmax(row)) {
                                *pv += if k == 3 { sv * w } else { sv };
                            }
                        }
                    }
                    spans.push(self.decode_spans(cfg, mt, &probs)?);
                }
                Some(spans)
            }
            None => None,
        };

        let mut metadata = CometMetadata::default();
        if k == 3 {
            metadata.src_scores = Some(per(0));
            metadata.ref_scores = Some(per(1));
            metadata.unified_scores = Some(per(2));
        }
        let scores: Vec<f32> = if cfg.class == CometClass::Xcomet {
            let spans = error_spans.as_ref().expect("XCOMET tags words");
            let mqm: Vec<f32> = spans.iter().map(|s| mqm_score(s)).collect();
            let clamp = |v: f32| if v > 1.0 { 1.0 } else { v };
            let scores = if k == 3 {
                (0..segs.len())
                    .map(|i| {
                        let reg = (0..3).map(|c| clamp(raw[i * 3 + c]) * SCORE_WEIGHTS[c]).fold(0.0f32, |a, b| a + b);
                        reg + mqm[i] * SCORE_WEIGHTS[3]
                    })
                    .collect()
            } else {
                // Reference-free: the [mt, src] score (clamped, reported as src_scores) stands
                // in for all three regression scores.
                metadata.src_scores = Some(raw.iter().map(|&v| clamp(v)).collect());
                let qe_weight = SCORE_WEIGHTS[..3].iter().map(|&w| w as f64).sum::<f64>() as f32;
                (0..segs.len()).map(|i| clamp(raw[i]) * qe_weight + mqm[i] * SCORE_WEIGHTS[3]).collect()
            };
            metadata.mqm_scores = Some(mqm);
            scores
        } else if k == 3 {
            (0..segs.len()).map(|i| (raw[i * 3] + raw[i * 3 + 1] + raw[i * 3 + 2]) / 3.0).collect()
        } else {
            raw
        };
        metadata.error_spans = error_spans;
        Ok(prediction(scores, metadata))
    }

    fn score_regression(&self, cfg: &CometConfig, segs: &[[Option<Segment>; 3]]) -> Result<CometPrediction> {
        let head = self.comet_head().expect("COMET model");
        let seqs: Vec<Vec<u32>> = segs.iter().flat_map(|s| s.iter().map(|seg| seg.as_ref().expect("regression needs all three").ids.clone())).collect();
        let all_tokens = matches!(cfg.pool, Pool::Avg | Pool::Max);
        let acc = self.comet_encode(cfg, &seqs, all_tokens, |_| 0);
        let h = self.config.hidden;
        let pooled: Vec<Vec<f32>> = acc
            .iter()
            .map(|a| {
                let rows: Vec<&[f32]> = a.mix.chunks_exact(h).collect();
                match cfg.pool {
                    Pool::Avg => {
                        let mut sum = vec![0.0f32; h];
                        for r in &rows {
                            sum.iter_mut().zip(*r).for_each(|(s, v)| *s += v);
                        }
                        sum.iter().map(|s| s / rows.len() as f32).collect()
                    }
                    Pool::Max => (0..h).map(|j| rows.iter().map(|r| r[j]).fold(f32::NEG_INFINITY, f32::max)).collect(),
                    Pool::Cls | Pool::Default => rows[0].to_vec(),
                }
            })
            .collect();
        let mut features = Vec::with_capacity(segs.len() * 6 * h);
        for i in 0..segs.len() {
            let (src, mt, reference) = (&pooled[3 * i], &pooled[3 * i + 1], &pooled[3 * i + 2]);
            features.extend_from_slice(mt);
            features.extend_from_slice(reference);
            features.extend(mt.iter().zip(reference).map(|(a, b)| a * b));
            features.extend(mt.iter().zip(reference).map(|(a, b)| (a - b).abs()));
            features.extend(mt.iter().zip(src).map(|(a, b)| a * b));
            features.extend(mt.iter().zip(src).map(|(a, b)| (a - b).abs()));
        }
        Ok(prediction(head.estimator.forward(&features), CometMetadata::default()))
    }

    /// COMET's `decode`: runs of mt tokens whose most likely tag is an error.
    fn decode_spans(&self, cfg: &CometConfig, mt: &Segment, probs: &[f32]) -> Result<Vec<ErrorSpan>> {
        let tags = cfg.tag_count();
        let mut spans = Vec::new();
        let mut open: Option<OpenSpan> = None;
        for ((&id, &(start, end)), p) in mt.ids.iter().zip(&mt.offsets).zip(probs.chunks_exact(tags)) {
            let label = crate::tasks::argmax(p);
            let prob = p[label];
            match (&mut open, label) {
                (None, 0) => {}
                (None, l) => open = Some(OpenSpan { ids: vec![id], label: l, start, end, probs: vec![prob] }),
                (Some(span), l) if l != 0 => {
                    span.ids.push(id);
                    span.end = end;
                    span.probs.push(prob);
                }
                (Some(_), _) => {
                    let span = open.take().expect("matched Some");
                    spans.push(ErrorSpan {
                        text: self.tokenizer.decode(&span.ids, false)?,
                        confidence: span.probs.iter().sum::<f32>() / span.probs.len() as f32,
                        severity: cfg.error_labels[span.label - 1].clone(),
                        start: span.start,
                        end: span.end,
                    });
                }
            }
        }
        Ok(spans)
    }
}

/// A run of error-tagged tokens being read: severity from its first token, end from its last.
struct OpenSpan {
    ids: Vec<u32>,
    label: usize,
    start: usize,
    end: usize,
    probs: Vec<f32>,
}

/// COMET's `concat_sequences` for one input: `<s> a </s></s> b </s>...` from sequences that
/// each start with `<s>` and end with `</s>`, cut to `max_positions` tokens when the parts
/// are longer than `max_positions - (1 + 2 * parts)` (COMET's count of special tokens).
fn concat_sequences(parts: &[&Vec<u32>], max_positions: usize) -> Vec<u32> {
    let (bos, eos) = (parts[0][0], *parts[0].last().expect("has </s>"));
    let inner = |p: &Vec<u32>| p[1..p.len() - 1].to_vec();
    let content: usize = parts.iter().map(|p| p.len() - 2).sum();
    let mut seq = parts[0].to_vec();
    for p in &parts[1..] {
        let mut next = vec![bos];
        next.extend(&seq[1..seq.len() - 1]);
        next.extend([eos, eos]);
        next.extend(inner(p));
        next.push(eos);
        seq = next;
    }
    if content > max_positions.saturating_sub(1 + parts.len() * 2) {
        seq.truncate(max_positions);
    }
    seq
}

/// XCOMET's MQM score from a segment's spans, rescaled to [0, 1].
fn mqm_score(spans: &[ErrorSpan]) -> f32 {
    let penalty: u32 = spans
        .iter()
        .map(|s| match s.severity.as_str() {
            "minor" => 1,
            "major" => 5,
            "critical" => 10,
            _ => 0,
        })
        .sum();
    (25 - penalty.min(25)) as f32 / 25.0
}

fn prediction(scores: Vec<f32>, metadata: CometMetadata) -> CometPrediction {
    let system_score = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64;
    CometPrediction { scores, system_score, metadata }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_and_cut() {
        let (a, b, c) = (vec![0, 5, 6, 2], vec![0, 7, 2], vec![0, 8, 9, 2]);
        assert_eq!(concat_sequences(&[&a], 512), a);
        assert_eq!(concat_sequences(&[&a, &b], 512), vec![0, 5, 6, 2, 2, 7, 2]);
        assert_eq!(concat_sequences(&[&a, &b, &c], 512), vec![0, 5, 6, 2, 2, 7, 2, 2, 8, 9, 2]);
        // 5 content tokens > 10 - 7: cut to 10 tokens (the closing </s> is lost, as in COMET).
        assert_eq!(concat_sequences(&[&a, &b, &c], 10), vec![0, 5, 6, 2, 2, 7, 2, 2, 8, 9]);
    }

    #[test]
    fn mqm_caps_at_25() {
        let span = |s: &str| ErrorSpan { text: String::new(), confidence: 1.0, severity: s.into(), start: 0, end: 0 };
        assert_eq!(mqm_score(&[]), 1.0);
        assert_eq!(mqm_score(&[span("minor"), span("major")]), 19.0 / 25.0);
        assert_eq!(mqm_score(&[span("critical"), span("critical"), span("critical")]), 0.0);
    }
}
