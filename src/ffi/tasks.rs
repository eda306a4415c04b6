//! The C API of the fine-tuned heads: classification, token classification (NER),
//! question answering and multiple choice. Each call runs the task API on `Model`
//! (src/tasks/) and keeps its result in an object with the same ownership rules as the
//! other results: created by the call, read with accessors, freed once by its `_free`.

use super::handles::{guard, guard_or, lookup, register, release, Failure, Handle};
use super::{c_string, read_text, read_texts, require_out, write_out, xlmr_model, xlmr_status, LoadedModel};
use crate::heads::HeadKind;
use crate::tasks::{Aggregation, Choices, ClassifyFunction, ClassifyOptions, QaInput, QaOptions, TextInput, TokenClassifyOptions, TopK};
use std::ffi::{c_char, CString};
use std::sync::Arc;

/// `top_k` value of `xlmr_classify` asking for every label.
pub const XLMR_TOP_K_ALL: i32 = -1;

/// The head a model file carries, from `xlmr_model_head_kind`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xlmr_head_kind {
    /// The bare encoder or the MLM head: no task head.
    XLMR_HEAD_NONE = 0,
    /// `...ForSequenceClassification`: `xlmr_classify`.
    XLMR_HEAD_SEQUENCE_CLASSIFICATION = 1,
    /// `...ForTokenClassification`: `xlmr_token_classify`.
    XLMR_HEAD_TOKEN_CLASSIFICATION = 2,
    /// `...ForQuestionAnswering`: `xlmr_answer`.
    XLMR_HEAD_QUESTION_ANSWERING = 3,
    /// `...ForMultipleChoice`: `xlmr_multiple_choice`.
    XLMR_HEAD_MULTIPLE_CHOICE = 4,
}

/// Function from logits to scores for `xlmr_classify`; passed as an `int32_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xlmr_classify_function {
    /// The text-classification pipeline's choice for this model: none for regression,
    /// sigmoid for multi-label or a single label, softmax otherwise.
    XLMR_FUNCTION_DEFAULT = 0,
    XLMR_FUNCTION_SOFTMAX = 1,
    XLMR_FUNCTION_SIGMOID = 2,
    /// The raw logits.
    XLMR_FUNCTION_NONE = 3,
}

/// Aggregation strategy of `xlmr_token_classify` (the pipeline's); passed as an `int32_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xlmr_aggregation {
    /// One entity per token, with its index.
    XLMR_AGGREGATION_NONE = 0,
    /// Adjacent tokens of the same entity grouped (B- starts a new group).
    XLMR_AGGREGATION_SIMPLE = 1,
    /// Words take their first token's label, then grouped.
    XLMR_AGGREGATION_FIRST = 2,
    /// Words take the label of their tokens' mean scores, then grouped.
    XLMR_AGGREGATION_AVERAGE = 3,
    /// Words take the label of their most confident token, then grouped.
    XLMR_AGGREGATION_MAX = 4,
}

/// One label of a classification result; `label` is borrowed from the result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_label_score {
    pub label: *const c_char,
    pub score: f32,
}

/// One entity of a token-classification result; `label` and `word` are borrowed from it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_entity {
    /// The pipeline's `entity` (aggregation none) or `entity_group`.
    pub label: *const c_char,
    pub score: f32,
    /// Token index in the encoded text (aggregation none), else -1.
    pub index: i64,
    /// The token (`▁` kept) or, aggregated, the decoded words.
    pub word: *const c_char,
    /// Character (Unicode scalar value) offsets into the text, as Python indexes strings.
    pub start: usize,
    pub end: usize,
}

/// One answer of `xlmr_answer`; `answer` is borrowed from the result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_qa_answer {
    /// A probability, or the sum of those of the same answer found in several windows.
    pub score: f64,
    /// Character offsets into the context; 0, 0 and "" for the empty answer.
    pub start: usize,
    pub end: usize,
    pub answer: *const c_char,
}

/// Options of `xlmr_answer`; start from `xlmr_qa_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_qa_params {
    /// Answers per question (at least 1).
    pub top_k: usize,
    /// Tokens per window, question included.
    pub max_seq_len: usize,
    /// Tokens of overlap between windows; 0 = min(max_seq_len / 2, 128).
    pub doc_stride: usize,
    /// Longest answer in tokens.
    pub max_answer_len: usize,
    /// Allow the empty answer.
    pub handle_impossible_answer: bool,
}

/// Labels and scores of each text (opaque).
pub struct xlmr_classify_result {
    _private: [u8; 0],
}
/// Entities of each text (opaque).
pub struct xlmr_entities {
    _private: [u8; 0],
}
/// Answers to each question (opaque).
pub struct xlmr_answers {
    _private: [u8; 0],
}

pub(crate) struct OwnedLabel {
    label: CString,
    score: f32,
}

pub(crate) struct ClassifyResult {
    labels: Vec<Vec<OwnedLabel>>,
}

pub(crate) struct OwnedEntity {
    label: CString,
    word: CString,
    score: f32,
    index: i64,
    start: usize,
    end: usize,
}

pub(crate) struct Entities {
    entities: Vec<Vec<OwnedEntity>>,
}

pub(crate) struct OwnedAnswer {
    answer: CString,
    score: f64,
    start: usize,
    end: usize,
}

pub(crate) struct Answers {
    answers: Vec<Vec<OwnedAnswer>>,
}

impl Handle for xlmr_classify_result {
    type Inner = ClassifyResult;
    const NAME: &'static str = "xlmr_classify_result";
}
impl Handle for xlmr_entities {
    type Inner = Entities;
    const NAME: &'static str = "xlmr_entities";
}
impl Handle for xlmr_answers {
    type Inner = Answers;
    const NAME: &'static str = "xlmr_answers";
}

/// A failure of `read_texts` with the argument named as the caller knows it.
fn renamed(f: Failure, arg: &str) -> Failure {
    Failure { message: f.message.replace("n_texts", &format!("n_{arg}")).replace("texts", arg), ..f }
}

/// The model, if its head is `kind`; otherwise `XLMR_STATUS_UNSUPPORTED` naming the task's need.
fn model_with_head(model: *const xlmr_model, kind: HeadKind) -> Result<Arc<LoadedModel>, Failure> {
    let m = lookup(model, "model")?;
    if let Err(e) = m.model.require_head(kind) {
        return Err(Failure::new(xlmr_status::XLMR_STATUS_UNSUPPORTED, e.to_string()));
    }
    Ok(m)
}

/// # Safety
/// `items` is NULL or points to `n` pointers, each NULL or a NUL-terminated string.
unsafe fn read_optional_texts<'a>(items: *const *const c_char, n: usize, arg: &str) -> Result<Vec<Option<&'a str>>, Failure> {
    if items.is_null() {
        return Ok(vec![None; n]);
    }
    // Safety: non-NULL, `n` readable pointers per the caller's contract (n checked by read_texts before).
    let pointers = unsafe { std::slice::from_raw_parts(items, n) };
    pointers
        .iter()
        .enumerate()
        // Safety: each entry is NULL or a NUL-terminated string per the caller's contract.
        .map(|(i, &p)| if p.is_null() { Ok(None) } else { unsafe { read_text(p, &format!("{arg}[{i}]")) }.map(Some) })
        .collect()
}

// ---------------------------------------------------------------- head info

/// The model's task head (`xlmr_head_kind` as an `int32_t`; 0 for NULL or a freed model).
#[no_mangle]
pub extern "C" fn xlmr_model_head_kind(model: *const xlmr_model) -> i32 {
    guard_or(0, || {
        let m = lookup(model, "model")?;
        Ok(match m.model.head.as_ref().map(|h| h.kind) {
            None => xlmr_head_kind::XLMR_HEAD_NONE,
            Some(HeadKind::SequenceClassification) => xlmr_head_kind::XLMR_HEAD_SEQUENCE_CLASSIFICATION,
            Some(HeadKind::TokenClassification) => xlmr_head_kind::XLMR_HEAD_TOKEN_CLASSIFICATION,
            Some(HeadKind::QuestionAnswering) => xlmr_head_kind::XLMR_HEAD_QUESTION_ANSWERING,
            Some(HeadKind::MultipleChoice) => xlmr_head_kind::XLMR_HEAD_MULTIPLE_CHOICE,
        } as i32)
    })
}

/// Number of labels of the model's head (`id2label`; 0 without a head).
#[no_mangle]
pub extern "C" fn xlmr_model_n_labels(model: *const xlmr_model) -> usize {
    guard_or(0, || Ok(lookup(model, "model")?.model.head.as_ref().map_or(0, |h| h.labels.len())))
}

/// Writes label `i` of the model's head (UTF-8, NUL-terminated, truncated to fit) into
/// `buf` of `buf_size` bytes, and its full length in bytes to `*len` (may be NULL).
///
/// # Safety
/// `buf` is NULL or writable for `buf_size` bytes; `len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_model_label(model: *const xlmr_model, i: usize, buf: *mut c_char, buf_size: usize, len: *mut usize) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        let labels = m.model.head.as_ref().map_or(&[][..], |h| &h.labels[..]);
        let label = labels.get(i).ok_or_else(|| Failure::invalid(format!("label {i} is out of range (the head has {})", labels.len())))?;
        if buf.is_null() || buf_size == 0 {
            return Err(Failure::invalid("buf is NULL or buf_size is 0"));
        }
        let bytes = label.as_bytes();
        let n = bytes.len().min(buf_size - 1);
        // Safety: `buf` is non-NULL and writable for `buf_size` > n bytes per this function's contract.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), n);
            buf.add(n).write(0);
        }
        if !len.is_null() {
            // Safety: non-NULL, writable per this function's contract.
            unsafe { write_out(len, bytes.len()) };
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- classification

/// Classifies each text, or each pair `texts[i]`, `text_pairs[i]` (`text_pairs` NULL, or an
/// entry NULL, for single texts), as transformers' text-classification pipeline: per text,
/// the `top_k` best labels (`XLMR_TOP_K_ALL` = every label), best first. `function` is an
/// `xlmr_classify_function`. A model without a sequence-classification head gives
/// `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// As `xlmr_tokenize`; `text_pairs` is NULL or points to `n_texts` pointers, each NULL or
/// a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn xlmr_classify(
    model: *const xlmr_model,
    texts: *const *const c_char,
    text_pairs: *const *const c_char,
    n_texts: usize,
    top_k: i32,
    function: i32,
    truncate: bool,
    out: *mut *mut xlmr_classify_result,
) -> xlmr_status {
    guard(|| {
        lookup(model, "model")?;
        // Safety: `texts` and `text_pairs` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        // Safety: as above; `n_texts` was checked by read_texts.
        let pairs = unsafe { read_optional_texts(text_pairs, n_texts, "text_pairs") }?;
        let top_k = match top_k {
            XLMR_TOP_K_ALL => TopK::All,
            k if k >= 1 => TopK::N(k as usize),
            k => return Err(Failure::invalid(format!("top_k is {k}; give at least 1, or XLMR_TOP_K_ALL"))),
        };
        let function = match function {
            0 => None,
            1 => Some(ClassifyFunction::Softmax),
            2 => Some(ClassifyFunction::Sigmoid),
            3 => Some(ClassifyFunction::None),
            f => return Err(Failure::invalid(format!("function {f} is not an xlmr_classify_function value (0-3)"))),
        };
        require_out(out, "out")?;
        let m = model_with_head(model, HeadKind::SequenceClassification)?;
        let inputs: Vec<TextInput> = texts.iter().zip(&pairs).map(|(t, p)| p.map_or(TextInput::Single(t), |p| TextInput::Pair(t, p))).collect();
        let result = m.run(|model| model.classify(&inputs, &ClassifyOptions { top_k, function, truncate }))?;
        let labels = result
            .into_iter()
            .map(|r| r.into_iter().map(|l| OwnedLabel { label: c_string(l.label), score: l.score }).collect())
            .collect();
        let handle = register::<xlmr_classify_result>(ClassifyResult { labels });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_classify_n_texts(result: *const xlmr_classify_result) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.labels.len()))
}

/// Number of labels returned for text `text` (0 if out of range).
#[no_mangle]
pub extern "C" fn xlmr_classify_n_labels(result: *const xlmr_classify_result, text: usize) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.labels.get(text).map_or(0, Vec::len)))
}

/// `*out` = label `rank` (0 = best) of text `text`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_classify_get(result: *const xlmr_classify_result, text: usize, rank: usize, out: *mut xlmr_label_score) -> xlmr_status {
    guard(|| {
        let r = lookup(result, "result")?;
        require_out(out, "out")?;
        let l = r
            .labels
            .get(text)
            .and_then(|l| l.get(rank))
            .ok_or_else(|| Failure::invalid(format!("text {text}, rank {rank} is out of range (see xlmr_classify_n_labels)")))?;
        // Safety: `out` checked non-NULL above, writable per this function's contract; the
        // string stays valid while `result` is alive (never modified).
        unsafe { write_out(out, xlmr_label_score { label: l.label.as_ptr(), score: l.score }) };
        Ok(())
    })
}

/// Frees a classification result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_classify_free(result: *mut xlmr_classify_result) {
    guard(|| release(result, "result"));
}

// ---------------------------------------------------------------- token classification

/// Entities of each text, as transformers' token-classification pipeline. `aggregation` is
/// an `xlmr_aggregation`; entities whose label is in `ignore_labels[0..n_ignore_labels]` are
/// left out (`ignore_labels` NULL: the pipeline's default, "O"). A model without a
/// token-classification head gives `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// As `xlmr_tokenize`; `ignore_labels` is NULL or points to `n_ignore_labels` strings.
#[no_mangle]
pub unsafe extern "C" fn xlmr_token_classify(
    model: *const xlmr_model,
    texts: *const *const c_char,
    n_texts: usize,
    aggregation: i32,
    ignore_labels: *const *const c_char,
    n_ignore_labels: usize,
    truncate: bool,
    out: *mut *mut xlmr_entities,
) -> xlmr_status {
    guard(|| {
        lookup(model, "model")?;
        // Safety: `texts` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        let aggregation = match aggregation {
            0 => Aggregation::None,
            1 => Aggregation::Simple,
            2 => Aggregation::First,
            3 => Aggregation::Average,
            4 => Aggregation::Max,
            a => return Err(Failure::invalid(format!("aggregation {a} is not an xlmr_aggregation value (0-4)"))),
        };
        let ignore_labels = match (ignore_labels.is_null(), n_ignore_labels) {
            (true, _) => TokenClassifyOptions::default().ignore_labels,
            (false, 0) => Vec::new(),
            // Safety: non-NULL, `n` strings per this function's contract.
            (false, n) => unsafe { read_texts(ignore_labels, n) }?.into_iter().map(String::from).collect(),
        };
        require_out(out, "out")?;
        let m = model_with_head(model, HeadKind::TokenClassification)?;
        let result = m.run(|model| model.token_classify(&texts, &TokenClassifyOptions { aggregation, ignore_labels, truncate }))?;
        let entities = result
            .into_iter()
            .map(|per_text| {
                per_text
                    .into_iter()
                    .map(|e| OwnedEntity {
                        label: c_string(e.entity.or(e.entity_group).unwrap_or_default()),
                        word: c_string(e.word),
                        score: e.score,
                        index: e.index.map_or(-1, |i| i as i64),
                        start: e.start,
                        end: e.end,
                    })
                    .collect()
            })
            .collect();
        let handle = register::<xlmr_entities>(Entities { entities });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_entities_n_texts(entities: *const xlmr_entities) -> usize {
    guard_or(0, || Ok(lookup(entities, "entities")?.entities.len()))
}

/// Number of entities of text `text` (0 if out of range).
#[no_mangle]
pub extern "C" fn xlmr_entities_n_entities(entities: *const xlmr_entities, text: usize) -> usize {
    guard_or(0, || Ok(lookup(entities, "entities")?.entities.get(text).map_or(0, Vec::len)))
}

/// `*out` = entity `i` of text `text`, in text order.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_entities_get(entities: *const xlmr_entities, text: usize, i: usize, out: *mut xlmr_entity) -> xlmr_status {
    guard(|| {
        let r = lookup(entities, "entities")?;
        require_out(out, "out")?;
        let e = r
            .entities
            .get(text)
            .and_then(|e| e.get(i))
            .ok_or_else(|| Failure::invalid(format!("text {text}, entity {i} is out of range (see xlmr_entities_n_entities)")))?;
        let entity = xlmr_entity { label: e.label.as_ptr(), score: e.score, index: e.index, word: e.word.as_ptr(), start: e.start, end: e.end };
        // Safety: `out` checked non-NULL above, writable per this function's contract; the
        // strings stay valid while `entities` is alive (never modified).
        unsafe { write_out(out, entity) };
        Ok(())
    })
}

/// Frees a token-classification result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_entities_free(entities: *mut xlmr_entities) {
    guard(|| release(entities, "entities"));
}

// ---------------------------------------------------------------- question answering

/// The question-answering pipeline's defaults: top 1, windows of 384 tokens, stride 128,
/// answers of at most 15 tokens, no empty answer.
#[no_mangle]
pub extern "C" fn xlmr_qa_default_params() -> xlmr_qa_params {
    let d = QaOptions::default();
    xlmr_qa_params {
        top_k: d.top_k,
        max_seq_len: d.max_seq_len,
        doc_stride: 0,
        max_answer_len: d.max_answer_len,
        handle_impossible_answer: d.handle_impossible_answer,
    }
}

/// Answers `questions[i]` in `contexts[i]` for each i < `n`, as transformers 4.x's
/// question-answering pipeline: per question the `params.top_k` best answers, best first.
/// A model without a question-answering head gives `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// `questions` and `contexts` are NULL or point to `n` pointers, each NULL or a
/// NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_answer(
    model: *const xlmr_model,
    questions: *const *const c_char,
    contexts: *const *const c_char,
    n: usize,
    params: xlmr_qa_params,
    out: *mut *mut xlmr_answers,
) -> xlmr_status {
    guard(|| {
        lookup(model, "model")?;
        // Safety: `questions` and `contexts` per this function's contract.
        let questions = unsafe { read_texts(questions, n) }.map_err(|f| renamed(f, "questions"))?;
        // Safety: as above.
        let contexts = unsafe { read_texts(contexts, n) }.map_err(|f| renamed(f, "contexts"))?;
        require_out(out, "out")?;
        let m = model_with_head(model, HeadKind::QuestionAnswering)?;
        let opts = QaOptions {
            top_k: params.top_k,
            max_seq_len: params.max_seq_len,
            doc_stride: (params.doc_stride > 0).then_some(params.doc_stride),
            max_answer_len: params.max_answer_len,
            handle_impossible_answer: params.handle_impossible_answer,
        };
        let inputs: Vec<QaInput> = questions.iter().zip(&contexts).map(|(q, c)| QaInput { question: q, context: c }).collect();
        let result = m.run(|model| model.answer(&inputs, &opts))?;
        let answers = result
            .into_iter()
            .map(|a| a.into_iter().map(|a| OwnedAnswer { answer: c_string(a.answer), score: a.score, start: a.start, end: a.end }).collect())
            .collect();
        let handle = register::<xlmr_answers>(Answers { answers });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of questions in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_answers_n_questions(answers: *const xlmr_answers) -> usize {
    guard_or(0, || Ok(lookup(answers, "answers")?.answers.len()))
}

/// Number of answers to question `question` (0 if out of range).
#[no_mangle]
pub extern "C" fn xlmr_answers_n_answers(answers: *const xlmr_answers, question: usize) -> usize {
    guard_or(0, || Ok(lookup(answers, "answers")?.answers.get(question).map_or(0, Vec::len)))
}

/// `*out` = answer `rank` (0 = best) to question `question`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_answers_get(answers: *const xlmr_answers, question: usize, rank: usize, out: *mut xlmr_qa_answer) -> xlmr_status {
    guard(|| {
        let r = lookup(answers, "answers")?;
        require_out(out, "out")?;
        let a = r
            .answers
            .get(question)
            .and_then(|a| a.get(rank))
            .ok_or_else(|| Failure::invalid(format!("question {question}, rank {rank} is out of range (see xlmr_answers_n_answers)")))?;
        // Safety: `out` checked non-NULL above, writable per this function's contract; the
        // string stays valid while `answers` is alive (never modified).
        unsafe { write_out(out, xlmr_qa_answer { score: a.score, start: a.start, end: a.end, answer: a.answer.as_ptr() }) };
        Ok(())
    })
}

/// Frees a question-answering result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_answers_free(answers: *mut xlmr_answers) {
    guard(|| release(answers, "answers"));
}

// ---------------------------------------------------------------- multiple choice

/// Scores the `n_choices` choices of one prompt: `scores[0..n_choices]` = softmax over the
/// choices, `*best` = index of the highest. A model without a multiple-choice head gives
/// `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// `prompt` is NULL or a NUL-terminated string; `choices` is NULL or points to `n_choices`
/// such strings; `scores` is NULL or writable for `n_choices` floats; `best` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_multiple_choice(
    model: *const xlmr_model,
    prompt: *const c_char,
    choices: *const *const c_char,
    n_choices: usize,
    truncate: bool,
    scores: *mut f32,
    best: *mut usize,
) -> xlmr_status {
    guard(|| {
        lookup(model, "model")?;
        // Safety: `prompt` per this function's contract.
        let prompt = unsafe { read_text(prompt, "prompt") }?;
        // Safety: `choices` per this function's contract.
        let choices = unsafe { read_texts(choices, n_choices) }.map_err(|f| renamed(f, "choices"))?;
        require_out(scores, "scores")?;
        require_out(best, "best")?;
        let m = model_with_head(model, HeadKind::MultipleChoice)?;
        let result = m.run(|model| model.multiple_choice(&[Choices { prompt, choices }], truncate))?;
        let r = &result[0];
        // Safety: both checked non-NULL; `scores` writable for `n_choices` floats per this
        // function's contract, and the result has exactly one score per choice.
        unsafe {
            std::ptr::copy_nonoverlapping(r.scores.as_ptr(), scores, r.scores.len());
            write_out(best, r.best);
        }
        Ok(())
    })
}
