//! Extractive question answering, as transformers 4.x's `QuestionAnsweringPipeline` (removed
//! in transformers 5): the question and context are encoded as a pair, the context cut into
//! windows of `max_seq_len` tokens overlapping by `doc_stride`; in each window the start and
//! end logits of the context tokens (and `<s>`) are softmaxed, spans `s <= e < s +
//! max_answer_len` scored `p_start(s) * p_end(e)`, widened to whole words, and answers of
//! equal text (case-insensitive) merged by adding their scores across windows. With
//! `handle_impossible_answer`, the empty answer competes with the smallest `<s>` score.

use super::softmax;
use crate::error::{Error, Result};
use crate::heads::{Head, HeadKind};
use crate::model::Model;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QaInput<'a> {
    pub question: &'a str,
    pub context: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QaOptions {
    /// Answers per input (at least 1).
    pub top_k: usize,
    /// Tokens per window, question and special tokens included (the pipeline's 384).
    pub max_seq_len: usize,
    /// Tokens of overlap between windows; `None`: min(max_seq_len / 2, 128), as the pipeline.
    pub doc_stride: Option<usize>,
    /// Longest answer in tokens (the pipeline's 15).
    pub max_answer_len: usize,
    pub handle_impossible_answer: bool,
}

impl Default for QaOptions {
    fn default() -> Self {
        QaOptions { top_k: 1, max_seq_len: 384, doc_stride: None, max_answer_len: 15, handle_impossible_answer: false }
    }
}

/// One answer: `start`/`end` are character offsets into the context; the empty answer
/// (`handle_impossible_answer`) is `0, 0, ""`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Answer {
    /// A probability, or the sum of those of equal answers found in several windows.
    pub score: f64,
    pub start: usize,
    pub end: usize,
    pub answer: String,
}

/// Masked logits stand at -10000 before the softmax, as in the pipeline.
const MASKED: f32 = -10000.0;

impl Model {
    /// The `top_k` best answers to each question in its context, best first.
    pub fn answer(&self, inputs: &[QaInput], opts: &QaOptions) -> Result<Vec<Vec<Answer>>> {
        self.require_head(HeadKind::QuestionAnswering)?;
        let max_len = self.tokenizer.max_tokens();
        if opts.top_k == 0 {
            return Err(Error::Input("top_k must be at least 1".into()));
        }
        if opts.max_answer_len == 0 {
            return Err(Error::Input("max_answer_len must be at least 1".into()));
        }
        if opts.max_seq_len < 4 || opts.max_seq_len > max_len {
            return Err(Error::Input(format!("max_seq_len {} must be between 4 and the model's {max_len} tokens", opts.max_seq_len)));
        }
        let stride = opts.doc_stride.unwrap_or((opts.max_seq_len / 2).min(128));
        if stride > opts.max_seq_len {
            return Err(Error::Input(format!("doc_stride ({stride}) is larger than max_seq_len ({})", opts.max_seq_len)));
        }
        // Tokenize everything first: a bad input fails before any compute.
        let mut windows: Vec<(usize, tokenizers::Encoding)> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            for (what, text) in [("question", input.question), ("context", input.context)] {
                if text.trim().is_empty() {
                    return Err(Error::Input(format!("input {}: {what} is empty", i + 1)));
                }
            }
            let encs = self
                .tokenizer
                .question_windows(input.question, input.context, opts.max_seq_len, stride)
                .map_err(|e| Error::Input(format!("input {}: {e}", i + 1)))?;
            for enc in encs {
                self.check_vocab(i + 1, enc.get_ids())?;
                windows.push((i, enc));
            }
        }
        let seqs: Vec<Vec<u32>> = windows.iter().map(|(_, e)| e.get_ids().to_vec()).collect();
        let states = self.final_states(&seqs, |w| seqs[w].len());
        let Some(Head::QuestionAnswering(head)) = self.head_weights() else { unreachable!("kind checked above") };
        let cls = self.tokenizer.token_to_id("<s>");
        let h = self.config.hidden;

        let mut results: Vec<Candidates> = inputs.iter().map(|_| Candidates::default()).collect();
        for ((input, enc), x) in windows.iter().zip(&states) {
            // Answers may start and end on context tokens; `<s>` stands for "no answer".
            let allowed: Vec<bool> =
                enc.get_sequence_ids().iter().zip(enc.get_ids()).map(|(seq, id)| *seq == Some(1) || Some(*id) == cls).collect();
            // The head runs on the allowed tokens only.
            let rows: Vec<usize> = (0..allowed.len()).filter(|&i| allowed[i]).collect();
            let picked: Vec<f32> = rows.iter().flat_map(|&r| x[r * h..(r + 1) * h].iter().copied()).collect();
            let (s_logits, e_logits) = head.forward(&picked);
            let (mut start, mut end) = (vec![MASKED; allowed.len()], vec![MASKED; allowed.len()]);
            for (k, &r) in rows.iter().enumerate() {
                start[r] = s_logits[k];
                end[r] = e_logits[k];
            }
            results[*input].add_window(inputs[*input].context, enc, softmax(&start), softmax(&end), &allowed, opts);
        }
        Ok(results.into_iter().map(|c| c.finish(opts)).collect())
    }
}

/// Answers of one input gathered over its windows.
struct Candidates {
    answers: Vec<Answer>,
    /// Smallest `p_start(<s>) * p_end(<s>)` over the windows.
    min_null_score: f64,
}

impl Default for Candidates {
    fn default() -> Self {
        Candidates { answers: Vec::new(), min_null_score: 1_000_000.0 }
    }
}

impl Candidates {
    fn add_window(&mut self, context: &str, enc: &tokenizers::Encoding, mut start: Vec<f32>, mut end: Vec<f32>, allowed: &[bool], opts: &QaOptions) {
        if opts.handle_impossible_answer {
            self.min_null_score = self.min_null_score.min((start[0] * end[0]) as f64);
        }
        start[0] = 0.0;
        end[0] = 0.0;
        // Spans with a non-zero score, best first; the pipeline keeps 2 * top_k + 10 of them
        // because widening to words may merge some.
        let t = start.len();
        let mut spans: Vec<(f32, usize, usize)> = Vec::new();
        for s in (1..t).filter(|&s| allowed[s]) {
            for e in (s..t.min(s + opts.max_answer_len)).filter(|&e| allowed[e]) {
                spans.push((start[s] * end[e], s, e));
            }
        }
        spans.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        spans.truncate(opts.top_k * 2 + 10);
        let chars: Vec<char> = context.chars().collect();
        for (score, s, e) in spans {
            let (a, b) = word_span(enc, s, e);
            let text: String = chars[a.min(chars.len())..b.min(chars.len())].iter().collect();
            let lower = text.to_lowercase();
            match self.answers.iter_mut().find(|x| x.answer.to_lowercase() == lower) {
                Some(same) => same.score += score as f64,
                None => self.answers.push(Answer { score: score as f64, start: a, end: b, answer: text }),
            }
        }
    }

    fn finish(mut self, opts: &QaOptions) -> Vec<Answer> {
        if opts.handle_impossible_answer {
            self.answers.push(Answer { score: self.min_null_score, start: 0, end: 0, answer: String::new() });
        }
        // Stable: equal scores keep the order they were found in, as the pipeline's sort.
        self.answers.sort_by(|a, b| b.score.total_cmp(&a.score));
        self.answers.truncate(opts.top_k);
        self.answers
    }
}

/// Character span of tokens `s..=e` widened to the words they are in (the pipeline's
/// `align_to_words`), or the tokens' own offsets where a token has no word.
fn word_span(enc: &tokenizers::Encoding, s: usize, e: usize) -> (usize, usize) {
    let word_chars = |t: usize| enc.token_to_word(t).and_then(|(_, w)| enc.word_to_chars(w, 1));
    match (word_chars(s), word_chars(e)) {
        (Some(a), Some(b)) => (a.0, b.1),
        _ => (enc.get_offsets()[s].0, enc.get_offsets()[e].1),
    }
}
