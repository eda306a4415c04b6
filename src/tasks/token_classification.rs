//! Token classification (NER), as transformers' `token-classification` pipeline: a softmax
//! over each token's logits, then per aggregation strategy either one entity per token
//! (`none`), B-/I- runs grouped (`simple`), or tokens first merged into words (`first`,
//! `average`, `max`) and then grouped; labels in `ignore_labels` (default `O`) dropped.
//! `start`/`end` are character offsets into the input (Unicode scalar values, as Python
//! indexes strings).

use super::{argmax, softmax};
use crate::error::{Error, Result};
use crate::heads::{Head, HeadKind};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use std::str::FromStr;

/// transformers' `aggregation_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// One entity per token, with its `index`.
    None,
    /// Adjacent tokens with the same entity (B- starts a new one) grouped.
    Simple,
    /// Words take their first token's label.
    First,
    /// Words take the label of the mean of their tokens' scores.
    Average,
    /// Words take the label of their most confident token.
    Max,
}

impl FromStr for Aggregation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Aggregation::None),
            "simple" => Ok(Aggregation::Simple),
            "first" => Ok(Aggregation::First),
            "average" => Ok(Aggregation::Average),
            "max" => Ok(Aggregation::Max),
            _ => Err(Error::Input(format!("unknown aggregation {s:?}; use none, simple, first, average or max"))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClassifyOptions {
    pub aggregation: Aggregation,
    /// Entities (or groups) with these labels are left out; the pipeline's default is `["O"]`.
    pub ignore_labels: Vec<String>,
    /// Cut inputs longer than the model's maximum instead of failing (the pipeline always cuts).
    pub truncate: bool,
}

impl Default for TokenClassifyOptions {
    fn default() -> Self {
        TokenClassifyOptions { aggregation: Aggregation::Simple, ignore_labels: vec!["O".into()], truncate: false }
    }
}

/// One entity as the pipeline reports it: `entity` and `index` without aggregation,
/// `entity_group` with it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Entity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_group: Option<String>,
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The token (`▁` kept) without aggregation; the decoded text of the tokens with it.
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// A non-special token with its scores (the pipeline's "pre-entity").
struct Token {
    word: String,
    scores: Vec<f32>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// Per-token label and score before grouping.
struct Tagged {
    label: String,
    score: f32,
    index: Option<usize>,
    word: String,
    start: usize,
    end: usize,
}

impl Model {
    /// Entities of each text, as the token-classification pipeline with `opts`.
    pub fn token_classify(&self, texts: &[impl AsRef<str>], opts: &TokenClassifyOptions) -> Result<Vec<Vec<Entity>>> {
        let info = self.require_head(HeadKind::TokenClassification)?;
        let mut encodings = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            if text.trim().is_empty() {
                return Err(Error::Input(format!("input {} is empty", i + 1)));
            }
            let enc = self.tokenizer.encoding(text, None, opts.truncate).map_err(|e| Error::Input(format!("input {}: {e}", i + 1)))?;
            self.check_vocab(i + 1, enc.get_ids())?;
            encodings.push(enc);
        }
        let seqs: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let states = self.final_states(&seqs, |i| seqs[i].len());
        let Some(Head::TokenClassification(head)) = self.head_weights() else { unreachable!("kind checked above") };
        let n_labels = info.labels.len();
        let unk = self.tokenizer.token_to_id("<unk>");
        texts
            .iter()
            .zip(&encodings)
            .zip(&states)
            .map(|((text, enc), x)| {
                let logits = head.forward(x);
                let scores: Vec<Vec<f32>> = logits.chunks_exact(n_labels).map(softmax).collect();
                let tokens = gather_tokens(&self.tokenizer, text.as_ref(), enc, scores, unk);
                let entities = aggregate(&self.tokenizer, tokens, &info.labels, opts.aggregation)?;
                Ok(entities.into_iter().filter(|e| !opts.ignore_labels.iter().any(|l| Some(l) == e.entity.as_ref().or(e.entity_group.as_ref()))).collect())
            })
            .collect()
    }
}

/// The pipeline's `gather_pre_entities`: non-special tokens with their text and whether they
/// continue a word. The tokenizer (unigram) has no subword prefix, so a token continues a
/// word when neither it nor the character before it is a space.
fn gather_tokens(tok: &Tokenizer, text: &str, enc: &tokenizers::Encoding, scores: Vec<Vec<f32>>, unk: Option<u32>) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let slice = |a: usize, b: usize| chars[a.min(chars.len())..b.min(chars.len())].iter().collect::<String>();
    let mut out = Vec::new();
    for (idx, s) in scores.into_iter().enumerate() {
        if enc.get_special_tokens_mask()[idx] == 1 {
            continue;
        }
        let id = enc.get_ids()[idx];
        let (start, end) = enc.get_offsets()[idx];
        let word_ref = slice(start, end);
        let mut word = tok.id_to_token(id);
        let mut is_subword = start > 0 && !slice(start - 1, start + 1).contains(' ');
        if Some(id) == unk {
            word = word_ref;
            is_subword = false;
        }
        out.push(Token { word, scores: s, start, end, index: idx, is_subword });
    }
    out
}

fn aggregate(tok: &Tokenizer, tokens: Vec<Token>, labels: &[String], how: Aggregation) -> Result<Vec<Entity>> {
    let tagged: Vec<Tagged> = match how {
        Aggregation::None | Aggregation::Simple => tokens
            .into_iter()
            .map(|t| {
                let best = argmax(&t.scores);
                Tagged { label: labels[best].clone(), score: t.scores[best], index: Some(t.index), word: t.word, start: t.start, end: t.end }
            })
            .collect(),
        _ => {
            let mut words: Vec<Vec<Token>> = Vec::new();
            for t in tokens {
                match words.last_mut() {
                    Some(w) if t.is_subword => w.push(t),
                    _ => words.push(vec![t]),
                }
            }
            words.into_iter().map(|w| aggregate_word(tok, w, labels, how)).collect::<Result<_>>()?
        }
    };
    if how == Aggregation::None {
        return Ok(tagged
            .into_iter()
            .map(|t| Entity { entity: Some(t.label), entity_group: None, score: t.score, index: t.index, word: t.word, start: t.start, end: t.end })
            .collect());
    }
    group_entities(tok, tagged)
}

/// One word's label and score from its tokens (`first`, `average`, `max`).
fn aggregate_word(tok: &Tokenizer, tokens: Vec<Token>, labels: &[String], how: Aggregation) -> Result<Tagged> {
    let scores = match how {
        Aggregation::First => tokens[0].scores.clone(),
        Aggregation::Max => {
            // The first token whose best score is highest (Python's max keeps the first).
            let mut best = &tokens[0];
            for t in &tokens[1..] {
                if max_of(&t.scores) > max_of(&best.scores) {
                    best = t;
                }
            }
            best.scores.clone()
        }
        Aggregation::Average => {
            let mut mean = vec![0.0f32; labels.len()];
            for t in &tokens {
                mean.iter_mut().zip(&t.scores).for_each(|(m, s)| *m += s);
            }
            mean.iter_mut().for_each(|m| *m /= tokens.len() as f32);
            mean
        }
        Aggregation::None | Aggregation::Simple => unreachable!("word aggregation only"),
    };
    let best = argmax(&scores);
    let (start, end) = (tokens[0].start, tokens[tokens.len() - 1].end);
    let word = tok.tokens_to_string(tokens.into_iter().map(|t| t.word).collect())?;
    Ok(Tagged { label: labels[best].clone(), score: scores[best], index: None, word, start, end })
}

fn max_of(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `B-X` / `I-X` -> ("B"|"I", "X"); any other label is an inside tag of itself.
fn bio_tag(label: &str) -> (char, &str) {
    if let Some(tag) = label.strip_prefix("B-") {
        ('B', tag)
    } else if let Some(tag) = label.strip_prefix("I-") {
        ('I', tag)
    } else {
        ('I', label)
    }
}

/// The pipeline's `group_entities`: a run continues while the tag stays the same and the
/// next label is not a `B-`.
fn group_entities(tok: &Tokenizer, tagged: Vec<Tagged>) -> Result<Vec<Entity>> {
    let mut groups: Vec<Vec<Tagged>> = Vec::new();
    for t in tagged {
        let joins = groups.last().is_some_and(|g| {
            let (bi, tag) = bio_tag(&t.label);
            tag == bio_tag(&g[g.len() - 1].label).1 && bi != 'B'
        });
        if joins {
            groups.last_mut().expect("checked").push(t);
        } else {
            groups.push(vec![t]);
        }
    }
    groups
        .into_iter()
        .map(|g| {
            // The group's name: the label after its first '-', as `split("-", 1)[-1]`.
            let name = g[0].label.split_once('-').map_or(g[0].label.as_str(), |(_, rest)| rest).to_string();
            let score = g.iter().map(|t| t.score).sum::<f32>() / g.len() as f32;
            let (start, end) = (g[0].start, g[g.len() - 1].end);
            let word = tok.tokens_to_string(g.into_iter().map(|t| t.word).collect())?;
            Ok(Entity { entity: None, entity_group: Some(name), score, index: None, word, start, end })
        })
        .collect()
}
