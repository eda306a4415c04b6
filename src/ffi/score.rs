//! The C API of COMET metrics: `xlmr_score` runs `Model::score` (src/tasks/comet.rs) on
//! triplets and keeps COMET's Prediction in a result object read with accessors and freed
//! once by `xlmr_score_free`, with the same ownership rules as the other results.

use super::handles::{guard, guard_or, lookup, register, release, Failure, Handle};
use super::{c_string, read_text, read_texts, require_out, write_out, xlmr_model, xlmr_status};
use crate::tasks::Triplet;
use std::ffi::{c_char, CString};

/// Scores of one segment. Fields the model does not report are NaN (see `xlmr_score`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_segment_score {
    /// The segment score (COMET's `scores[i]`).
    pub score: f32,
    /// Unified models with src and ref: the [mt, src] score (XCOMET without references:
    /// the clamped [mt, src] score); else NaN.
    pub src_score: f32,
    /// Unified models with src and ref: the [mt, ref] score; else NaN.
    pub ref_score: f32,
    /// Unified models with src and ref: the [mt, src, ref] score; else NaN.
    pub unified_score: f32,
    /// XCOMET: the MQM score from the error spans, in [0, 1]; else NaN.
    pub mqm_score: f32,
    /// Error spans of this segment (0 for models without word-level tags).
    pub n_spans: usize,
}

/// One error span in a translation; `text` and `severity` are borrowed from the result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_error_span {
    pub text: *const c_char,
    /// "minor", "major" or "critical".
    pub severity: *const c_char,
    pub confidence: f32,
    /// Character (Unicode scalar value) offsets into the translation, as COMET reports them.
    pub start: usize,
    pub end: usize,
}

/// COMET's prediction for a list of segments (opaque).
pub struct xlmr_score_result {
    _private: [u8; 0],
}

pub(crate) struct OwnedSpan {
    text: CString,
    severity: CString,
    confidence: f32,
    start: usize,
    end: usize,
}

pub(crate) struct ScoreResult {
    segments: Vec<(xlmr_segment_score, Vec<OwnedSpan>)>,
    system_score: f64,
}

impl Handle for xlmr_score_result {
    type Inner = ScoreResult;
    const NAME: &'static str = "xlmr_score_result";
}

/// Scores `n` segments with a COMET model, as unbabel-comet's `predict`: `sources[i]`,
/// `translations[i]` and, when `references` is not NULL, `references[i]`. Without
/// references, XCOMET and unified models score reference-free; a reference-based model gives
/// `XLMR_STATUS_INPUT`, and a model that is not a COMET metric `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// `model` is NULL or a live model; `sources` and `translations` (and `references` unless
/// NULL) point to `n` NUL-terminated strings; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_score(
    model: *const xlmr_model,
    sources: *const *const c_char,
    translations: *const *const c_char,
    references: *const *const c_char,
    n: usize,
    out: *mut *mut xlmr_score_result,
) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        let renamed = |f: Failure, arg: &str| Failure { message: f.message.replace("n_texts", "n").replace("texts", arg), ..f };
        // Safety: the three arrays per this function's contract.
        let src = unsafe { read_texts(sources, n) }.map_err(|f| renamed(f, "sources"))?;
        // Safety: as above.
        let mt = unsafe { read_texts(translations, n) }.map_err(|f| renamed(f, "translations"))?;
        let refs = if references.is_null() {
            None
        } else {
            // Safety: non-NULL, `n` pointers per this function's contract (n checked above).
            let pointers = unsafe { std::slice::from_raw_parts(references, n) };
            // Safety: each a NUL-terminated string per the contract; NULL is an error.
            Some(pointers.iter().enumerate().map(|(i, &p)| unsafe { read_text(p, &format!("references[{i}]")) }).collect::<Result<Vec<_>, _>>()?)
        };
        require_out(out, "out")?;
        if m.model.comet.is_none() {
            return Err(Failure::new(xlmr_status::XLMR_STATUS_UNSUPPORTED, "this model is not a COMET metric (convert a COMET model folder)"));
        }
        let triplets: Vec<Triplet> = (0..n).map(|i| Triplet { src: src[i], mt: mt[i], reference: refs.as_ref().map(|r| r[i]) }).collect();
        let p = m.run(|model| model.score(&triplets))?;
        let meta = &p.metadata;
        let at = |v: &Option<Vec<f32>>, i: usize| v.as_ref().map_or(f32::NAN, |v| v[i]);
        let segments = (0..n)
            .map(|i| {
                let spans: Vec<OwnedSpan> = meta.error_spans.as_ref().map_or_else(Vec::new, |s| {
                    s[i].iter()
                        .map(|e| OwnedSpan { text: c_string(e.text.clone()), severity: c_string(e.severity.clone()), confidence: e.confidence, start: e.start, end: e.end })
                        .collect()
                });
                let score = xlmr_segment_score {
                    score: p.scores[i],
                    src_score: at(&meta.src_scores, i),
                    ref_score: at(&meta.ref_scores, i),
                    unified_score: at(&meta.unified_scores, i),
                    mqm_score: at(&meta.mqm_scores, i),
                    n_spans: spans.len(),
                };
                (score, spans)
            })
            .collect();
        let handle = register::<xlmr_score_result>(ScoreResult { segments, system_score: p.system_score });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of segments in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_score_n_segments(result: *const xlmr_score_result) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.segments.len()))
}

/// The system score: the mean of the segment scores (NaN for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_score_system(result: *const xlmr_score_result) -> f64 {
    guard_or(f64::NAN, || Ok(lookup(result, "result")?.system_score))
}

/// `*out` = the scores of segment `segment`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_score_get(result: *const xlmr_score_result, segment: usize, out: *mut xlmr_segment_score) -> xlmr_status {
    guard(|| {
        let r = lookup(result, "result")?;
        require_out(out, "out")?;
        let s = r.segments.get(segment).ok_or_else(|| Failure::invalid(format!("segment {segment} is out of range (see xlmr_score_n_segments)")))?;
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, s.0) };
        Ok(())
    })
}

/// `*out` = error span `i` of segment `segment`, in text order.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_score_get_span(result: *const xlmr_score_result, segment: usize, i: usize, out: *mut xlmr_error_span) -> xlmr_status {
    guard(|| {
        let r = lookup(result, "result")?;
        require_out(out, "out")?;
        let e = r
            .segments
            .get(segment)
            .and_then(|s| s.1.get(i))
            .ok_or_else(|| Failure::invalid(format!("segment {segment}, span {i} is out of range (see xlmr_segment_score.n_spans)")))?;
        let span = xlmr_error_span { text: e.text.as_ptr(), severity: e.severity.as_ptr(), confidence: e.confidence, start: e.start, end: e.end };
        // Safety: `out` checked non-NULL above, writable per this function's contract; the
        // strings stay valid while `result` is alive (never modified).
        unsafe { write_out(out, span) };
        Ok(())
    })
}

/// Frees a score result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_score_free(result: *mut xlmr_score_result) {
    guard(|| release(result, "result"));
}
