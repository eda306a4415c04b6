//! libxlmr, the C API. `include/xlmr.h` is generated from this module by cbindgen (see
//! cbindgen.toml, whose header text states the ownership and thread-safety rules), and
//! docs/c-api.md shows how to build and link it.
//!
//! Every entry point runs inside `handles::guard`: invalid arguments and errors become a
//! status code plus a thread-local message, panics become `XLMR_STATUS_INTERNAL`, and
//! out-parameters are written only when the call succeeds.

#![allow(non_camel_case_types)]

mod handles;
mod score;
mod tasks;

pub use score::*;
pub use tasks::*;

use crate::model::{Model, Pooling};
use handles::{guard, guard_or, lookup, register, release, Failure, Handle};
use std::ffi::{c_char, CStr, CString};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Version of this library; the same as `xlmr_version()` and the crate version.
pub const XLMR_VERSION_MAJOR: u32 = 0;
pub const XLMR_VERSION_MINOR: u32 = 1;
pub const XLMR_VERSION_PATCH: u32 = 0;

/// The result of every fallible call. On anything but `XLMR_STATUS_OK`,
/// `xlmr_last_error()` describes the problem.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xlmr_status {
    XLMR_STATUS_OK = 0,
    /// A NULL, freed or out-of-range argument.
    XLMR_STATUS_INVALID_ARGUMENT = 1,
    /// The file cannot be opened or read.
    XLMR_STATUS_IO = 2,
    /// The file is not a valid xlmr GGUF model.
    XLMR_STATUS_FORMAT = 3,
    /// A text the model cannot take: empty, too long without truncation, no `<mask>` for fill-mask.
    XLMR_STATUS_INPUT = 4,
    /// The model cannot do this task (fill-mask on a model converted without its MLM head).
    XLMR_STATUS_UNSUPPORTED = 5,
    /// A bug in xlmr (a caught Rust panic), or the system refused a resource such as threads.
    XLMR_STATUS_INTERNAL = 6,
}

/// How `xlmr_embed` turns token vectors into embeddings; passed as an `int32_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum xlmr_pooling {
    /// One vector per text: the final hidden state of `<s>`.
    XLMR_POOLING_CLS = 0,
    /// One vector per text: the mean over its tokens (special tokens included).
    XLMR_POOLING_MEAN = 1,
    /// One vector per token.
    XLMR_POOLING_NONE = 2,
}

/// Options for `xlmr_model_load`; start from `xlmr_model_default_params()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_model_params {
    /// Worker threads of this model's own thread pool; 0 = one per core (or
    /// RAYON_NUM_THREADS when set).
    pub n_threads: u32,
    /// Texts run together in one forward pass; 0 = the default (8).
    pub n_batch: u32,
    /// Must be true: the GGUF file is always memory-mapped (read-only, pages shared between
    /// processes). False is rejected rather than silently ignored.
    pub use_mmap: bool,
}

/// Model hyperparameters, from `xlmr_model_get_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_model_info {
    pub hidden_size: usize,
    /// Encoder layers; hidden-state indices run from 0 (embeddings) to `n_layers` (final).
    pub n_layers: usize,
    pub n_heads: usize,
    pub ffn_size: usize,
    pub vocab_size: usize,
    /// Longest text in tokens, `<s>` and `</s>` included.
    pub max_tokens: usize,
    pub mask_token_id: u32,
    pub pad_token_id: u32,
    /// Whether `xlmr_fill_mask` is available.
    pub has_mlm_head: bool,
}

/// One fill-mask candidate. The strings belong to the `xlmr_fill_mask_result` they came from.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct xlmr_prediction {
    pub token_id: u32,
    /// Softmax probability of this token at the mask.
    pub score: f32,
    /// The token as text (UTF-8).
    pub token_str: *const c_char,
    /// The input with this token in place of the mask (UTF-8), as transformers' pipeline gives it.
    pub sequence: *const c_char,
}

/// A loaded model (opaque).
pub struct xlmr_model {
    _private: [u8; 0],
}
/// Token ids of each text (opaque).
pub struct xlmr_tokens {
    _private: [u8; 0],
}
/// Embeddings of each text (opaque).
pub struct xlmr_embeddings {
    _private: [u8; 0],
}
/// Fill-mask predictions for each mask of each text (opaque).
pub struct xlmr_fill_mask_result {
    _private: [u8; 0],
}
/// Hidden states of chosen layers for each text (opaque).
pub struct xlmr_hidden_states {
    _private: [u8; 0],
}

pub(crate) struct LoadedModel {
    model: Model,
    /// The model's own workers: calls run inside it, so `n_threads` holds per model.
    /// `None` only while dropping.
    pool: Option<rayon::ThreadPool>,
    workers: Arc<LiveWorkers>,
}

impl LoadedModel {
    fn load(path: &str, params: &xlmr_model_params) -> Result<Self, Failure> {
        let mut model = Model::load(path)?;
        model.batch_size = if params.n_batch == 0 { crate::model::DEFAULT_BATCH } else { params.n_batch as usize };
        let workers = Arc::new(LiveWorkers::default());
        let on_exit = workers.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(params.n_threads as usize)
            .thread_name(|i| format!("xlmr-worker-{i}"))
            .exit_handler(move |_| on_exit.exited())
            .build()
            .map_err(|e| Failure::new(xlmr_status::XLMR_STATUS_INTERNAL, format!("cannot start {} threads: {e}", params.n_threads)))?;
        // Workers exit only after the pool is dropped, so none has exited yet.
        *workers.running.lock().unwrap_or_else(PoisonError::into_inner) = pool.current_num_threads();
        Ok(LoadedModel { model, pool: Some(pool), workers })
    }

    /// Runs `task` on this model's threads.
    fn run<T: Send>(&self, task: impl FnOnce(&Model) -> T + Send) -> T {
        self.pool.as_ref().expect("present until drop").install(|| task(&self.model))
    }
}

/// Counts a pool's running workers, so that freeing a model can wait for them to exit.
#[derive(Default)]
struct LiveWorkers {
    running: Mutex<usize>,
    changed: Condvar,
}

impl LiveWorkers {
    fn exited(&self) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        self.changed.notify_all();
    }
}

impl Drop for LoadedModel {
    /// Dropping a rayon pool only asks its workers to stop. Wait for them (boundedly), so
    /// that no thread of a freed model outlives `xlmr_model_free`: the program may exit or
    /// unload the library right after.
    fn drop(&mut self) {
        drop(self.pool.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut running = self.workers.running.lock().unwrap_or_else(PoisonError::into_inner);
        while *running > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            running = self.workers.changed.wait_timeout(running, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

pub(crate) struct Tokens {
    ids: Vec<Vec<u32>>,
}

pub(crate) struct Embeddings {
    dim: usize,
    /// Per text: `n_vectors * dim` values, row-major.
    vectors: Vec<Vec<f32>>,
}

pub(crate) struct OwnedPrediction {
    token_id: u32,
    score: f32,
    token_str: CString,
    sequence: CString,
}

pub(crate) struct FillMask {
    /// `[text][mask][rank]`.
    predictions: Vec<Vec<Vec<OwnedPrediction>>>,
}

pub(crate) struct HiddenStates {
    dim: usize,
    /// `[text][k]`: `n_tokens * dim` values of the k-th requested layer.
    states: Vec<Vec<Vec<f32>>>,
    n_layers: usize,
}

impl Handle for xlmr_model {
    type Inner = LoadedModel;
    const NAME: &'static str = "xlmr_model";
}
impl Handle for xlmr_tokens {
    type Inner = Tokens;
    const NAME: &'static str = "xlmr_tokens";
}
impl Handle for xlmr_embeddings {
    type Inner = Embeddings;
    const NAME: &'static str = "xlmr_embeddings";
}
impl Handle for xlmr_fill_mask_result {
    type Inner = FillMask;
    const NAME: &'static str = "xlmr_fill_mask_result";
}
impl Handle for xlmr_hidden_states {
    type Inner = HiddenStates;
    const NAME: &'static str = "xlmr_hidden_states";
}

// ---------------------------------------------------------------- reading C arguments

fn require_out<T>(out: *mut T, arg: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    Ok(())
}

/// Writes a result through a checked out-pointer.
///
/// # Safety
/// `out` is non-NULL (checked by `require_out`), aligned and writable, as the caller promised.
unsafe fn write_out<T>(out: *mut T, value: T) {
    // Safety: the caller's contract above; `write` does not drop whatever was there.
    unsafe { out.write(value) }
}

/// # Safety
/// `text` is NULL or points to a NUL-terminated string readable for this call.
unsafe fn read_text<'a>(text: *const c_char, arg: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(Failure::invalid(format!("{arg} is NULL")));
    }
    // Safety: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(text) };
    bytes.to_str().map_err(|_| Failure::invalid(format!("{arg} is not valid UTF-8")))
}

/// # Safety
/// `texts` is NULL or points to `n_texts` pointers, each NULL or a NUL-terminated string.
unsafe fn read_texts<'a>(texts: *const *const c_char, n_texts: usize) -> Result<Vec<&'a str>, Failure> {
    if texts.is_null() {
        return Err(Failure::invalid("texts is NULL"));
    }
    if n_texts == 0 || n_texts > isize::MAX as usize / std::mem::size_of::<*const c_char>() {
        return Err(Failure::invalid(format!("n_texts is {n_texts}; give at least one text")));
    }
    // Safety: non-NULL, `n_texts` readable pointers per the caller's contract, size checked above.
    let pointers = unsafe { std::slice::from_raw_parts(texts, n_texts) };
    pointers
        .iter()
        .enumerate()
        // Safety: each entry is NULL or a NUL-terminated string per the caller's contract.
        .map(|(i, &p)| unsafe { read_text(p, &format!("texts[{i}]")) })
        .collect()
}

fn pooling_from(value: i32) -> Result<Pooling, Failure> {
    match value {
        v if v == xlmr_pooling::XLMR_POOLING_CLS as i32 => Ok(Pooling::Cls),
        v if v == xlmr_pooling::XLMR_POOLING_MEAN as i32 => Ok(Pooling::Mean),
        v if v == xlmr_pooling::XLMR_POOLING_NONE as i32 => Ok(Pooling::None),
        v => Err(Failure::invalid(format!("pooling {v} is not an xlmr_pooling value (0 = CLS, 1 = MEAN, 2 = NONE)"))),
    }
}

/// Strings for C: an interior NUL (never expected from the tokenizer) becomes U+FFFD.
fn c_string(s: String) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).expect("NULs replaced")
}

// ---------------------------------------------------------------- library

/// The library version, "MAJOR.MINOR.PATCH" (static string; never free it).
#[no_mangle]
pub extern "C" fn xlmr_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last failed call on the calling thread ("" if none yet). It stays
/// valid until the next failed call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn xlmr_last_error() -> *const c_char {
    handles::last_error()
}

/// A short constant name for a status ("XLMR_STATUS_IO"), or "unknown status".
#[no_mangle]
pub extern "C" fn xlmr_status_string(status: i32) -> *const c_char {
    use xlmr_status::*;
    let all = [
        (XLMR_STATUS_OK, "XLMR_STATUS_OK\0"),
        (XLMR_STATUS_INVALID_ARGUMENT, "XLMR_STATUS_INVALID_ARGUMENT\0"),
        (XLMR_STATUS_IO, "XLMR_STATUS_IO\0"),
        (XLMR_STATUS_FORMAT, "XLMR_STATUS_FORMAT\0"),
        (XLMR_STATUS_INPUT, "XLMR_STATUS_INPUT\0"),
        (XLMR_STATUS_UNSUPPORTED, "XLMR_STATUS_UNSUPPORTED\0"),
        (XLMR_STATUS_INTERNAL, "XLMR_STATUS_INTERNAL\0"),
    ];
    let name = all.iter().find(|(s, _)| *s as i32 == status).map_or("unknown status\0", |(_, n)| n);
    name.as_ptr().cast()
}

// ---------------------------------------------------------------- model

/// Defaults: all cores, batches of 8 texts, mmap on.
#[no_mangle]
pub extern "C" fn xlmr_model_default_params() -> xlmr_model_params {
    xlmr_model_params { n_threads: 0, n_batch: crate::model::DEFAULT_BATCH as u32, use_mmap: true }
}

/// Loads a GGUF file written by `xlmr convert` and validates every tensor.
/// On success `*out` is a new model, to be freed with `xlmr_model_free`.
/// The environment variables of `Model::load` apply: `XLMR_PACK=0` (weights used in
/// place), `XLMR_PACK_CACHE=DIR` (packed weights mapped from a cache file in DIR).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_model_load(path: *const c_char, params: xlmr_model_params, out: *mut *mut xlmr_model) -> xlmr_status {
    guard(|| {
        // Safety: `path` per this function's contract.
        let path = unsafe { read_text(path, "path") }?;
        require_out(out, "out")?;
        if !params.use_mmap {
            return Err(Failure::invalid("use_mmap = false is not supported: xlmr always memory-maps the GGUF file"));
        }
        let handle = register::<xlmr_model>(LoadedModel::load(path, &params)?);
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Frees a model. NULL is a no-op; the model's memory is released once calls still running
/// on it (from other threads) have returned. A pointer that is not a live model is ignored
/// and sets the last error.
#[no_mangle]
pub extern "C" fn xlmr_model_free(model: *mut xlmr_model) {
    guard(|| release(model, "model"));
}

/// Writes the model's hyperparameters to `*out`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_model_get_info(model: *const xlmr_model, out: *mut xlmr_model_info) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        require_out(out, "out")?;
        let c = &m.model.config;
        let info = xlmr_model_info {
            hidden_size: c.hidden,
            n_layers: c.layers,
            n_heads: c.heads,
            ffn_size: c.ffn,
            vocab_size: c.vocab,
            max_tokens: c.max_tokens,
            mask_token_id: c.mask_id,
            pad_token_id: c.pad_id,
            has_mlm_head: c.has_mlm_head,
        };
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, info) };
        Ok(())
    })
}

// ---------------------------------------------------------------- tokenize

/// Token ids of each text, `<s>` and `</s>` included. With `truncate`, texts longer than
/// `max_tokens` are cut; without, they are an `XLMR_STATUS_INPUT` error.
///
/// # Safety
/// `texts` is NULL or points to `n_texts` pointers, each NULL or a NUL-terminated string;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_tokenize(
    model: *const xlmr_model,
    texts: *const *const c_char,
    n_texts: usize,
    truncate: bool,
    out: *mut *mut xlmr_tokens,
) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        // Safety: `texts` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        require_out(out, "out")?;
        let ids = m.model.tokenize_all(&texts, truncate)?;
        let handle = register::<xlmr_tokens>(Tokens { ids });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_tokens_n_texts(tokens: *const xlmr_tokens) -> usize {
    guard_or(0, || Ok(lookup(tokens, "tokens")?.ids.len()))
}

/// `*ids` = the token ids of text `text` (borrowed from `tokens`), `*n_ids` = their number.
///
/// # Safety
/// `ids` and `n_ids` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_tokens_get(tokens: *const xlmr_tokens, text: usize, ids: *mut *const u32, n_ids: *mut usize) -> xlmr_status {
    guard(|| {
        let t = lookup(tokens, "tokens")?;
        require_out(ids, "ids")?;
        require_out(n_ids, "n_ids")?;
        let row = t.ids.get(text).ok_or_else(|| Failure::invalid(format!("text {text} is out of range (the result has {} texts)", t.ids.len())))?;
        // Safety: both checked non-NULL above, writable per this function's contract. The
        // pointer stays valid while `tokens` is alive (the Vec is never modified).
        unsafe {
            write_out(ids, row.as_ptr());
            write_out(n_ids, row.len());
        }
        Ok(())
    })
}

/// Frees a token result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_tokens_free(tokens: *mut xlmr_tokens) {
    guard(|| release(tokens, "tokens"));
}

// ---------------------------------------------------------------- embed

/// Embeds each text: one vector per text (`XLMR_POOLING_CLS`, `XLMR_POOLING_MEAN`) or
/// one per token (`XLMR_POOLING_NONE`); with `normalize` each vector has unit L2 norm.
///
/// # Safety
/// As `xlmr_tokenize`.
#[no_mangle]
pub unsafe extern "C" fn xlmr_embed(
    model: *const xlmr_model,
    texts: *const *const c_char,
    n_texts: usize,
    pooling: i32,
    normalize: bool,
    truncate: bool,
    out: *mut *mut xlmr_embeddings,
) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        // Safety: `texts` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        let pooling = pooling_from(pooling)?;
        require_out(out, "out")?;
        let result = m.run(|model| model.embed(&texts, pooling, normalize, truncate))?;
        let vectors = result.into_iter().map(|v| v.concat()).collect();
        let handle = register::<xlmr_embeddings>(Embeddings { dim: m.model.config.hidden, vectors });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_embeddings_n_texts(embeddings: *const xlmr_embeddings) -> usize {
    guard_or(0, || Ok(lookup(embeddings, "embeddings")?.vectors.len()))
}

/// Length of each vector, the model's hidden size (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_embeddings_dim(embeddings: *const xlmr_embeddings) -> usize {
    guard_or(0, || Ok(lookup(embeddings, "embeddings")?.dim))
}

/// `*data` = the vectors of text `text`, `*n_vectors` rows of `dim` floats, row-major
/// (borrowed from `embeddings`).
///
/// # Safety
/// `data` and `n_vectors` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_embeddings_get(
    embeddings: *const xlmr_embeddings,
    text: usize,
    data: *mut *const f32,
    n_vectors: *mut usize,
) -> xlmr_status {
    guard(|| {
        let e = lookup(embeddings, "embeddings")?;
        require_out(data, "data")?;
        require_out(n_vectors, "n_vectors")?;
        let row = e.vectors.get(text).ok_or_else(|| Failure::invalid(format!("text {text} is out of range (the result has {} texts)", e.vectors.len())))?;
        // Safety: both checked non-NULL above, writable per this function's contract. The
        // pointer stays valid while `embeddings` is alive (the Vec is never modified).
        unsafe {
            write_out(data, row.as_ptr());
            write_out(n_vectors, row.len() / e.dim);
        }
        Ok(())
    })
}

/// Frees an embedding result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_embeddings_free(embeddings: *mut xlmr_embeddings) {
    guard(|| release(embeddings, "embeddings"));
}

// ---------------------------------------------------------------- fill-mask

/// The `top_k` most likely tokens for every `<mask>` of every text, best first. Each
/// text needs at least one `<mask>` (`XLMR_STATUS_INPUT` otherwise); a model without an
/// MLM head gives `XLMR_STATUS_UNSUPPORTED`.
///
/// # Safety
/// As `xlmr_tokenize`.
#[no_mangle]
pub unsafe extern "C" fn xlmr_fill_mask(
    model: *const xlmr_model,
    texts: *const *const c_char,
    n_texts: usize,
    top_k: usize,
    truncate: bool,
    out: *mut *mut xlmr_fill_mask_result,
) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        // Safety: `texts` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        if top_k == 0 {
            return Err(Failure::invalid("top_k is 0"));
        }
        require_out(out, "out")?;
        if !m.model.config.has_mlm_head {
            return Err(Failure::new(
                xlmr_status::XLMR_STATUS_UNSUPPORTED,
                "fill-mask needs an MLM head; this model was converted from XLMRobertaXLModel",
            ));
        }
        let result = m.run(|model| model.fill_mask(&texts, top_k, truncate))?;
        let predictions = result
            .into_iter()
            .map(|masks| {
                masks
                    .into_iter()
                    .map(|preds| {
                        preds
                            .into_iter()
                            .map(|p| OwnedPrediction {
                                token_id: p.token,
                                score: p.score,
                                token_str: c_string(p.token_str),
                                sequence: c_string(p.sequence),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let handle = register::<xlmr_fill_mask_result>(FillMask { predictions });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_fill_mask_n_texts(result: *const xlmr_fill_mask_result) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.predictions.len()))
}

/// Number of `<mask>` tokens in text `text` (0 if out of range).
#[no_mangle]
pub extern "C" fn xlmr_fill_mask_n_masks(result: *const xlmr_fill_mask_result, text: usize) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.predictions.get(text).map_or(0, Vec::len)))
}

/// Number of predictions for mask `mask` of text `text`: min(top_k, vocab) (0 if out of range).
#[no_mangle]
pub extern "C" fn xlmr_fill_mask_n_predictions(result: *const xlmr_fill_mask_result, text: usize, mask: usize) -> usize {
    guard_or(0, || Ok(lookup(result, "result")?.predictions.get(text).and_then(|m| m.get(mask)).map_or(0, Vec::len)))
}

/// `*out` = prediction `rank` (0 = most likely) for mask `mask` of text `text`; its
/// strings are borrowed from `result`.
///
/// # Safety
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_fill_mask_get(
    result: *const xlmr_fill_mask_result,
    text: usize,
    mask: usize,
    rank: usize,
    out: *mut xlmr_prediction,
) -> xlmr_status {
    guard(|| {
        let r = lookup(result, "result")?;
        require_out(out, "out")?;
        let p = r.predictions.get(text).and_then(|m| m.get(mask)).and_then(|p| p.get(rank)).ok_or_else(|| {
            Failure::invalid(format!("text {text}, mask {mask}, rank {rank} is out of range (see xlmr_fill_mask_n_masks and _n_predictions)"))
        })?;
        let prediction =
            xlmr_prediction { token_id: p.token_id, score: p.score, token_str: p.token_str.as_ptr(), sequence: p.sequence.as_ptr() };
        // Safety: `out` checked non-NULL above, writable per this function's contract. The
        // string pointers stay valid while `result` is alive (never modified).
        unsafe { write_out(out, prediction) };
        Ok(())
    })
}

/// Frees a fill-mask result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_fill_mask_free(result: *mut xlmr_fill_mask_result) {
    guard(|| release(result, "result"));
}

// ---------------------------------------------------------------- hidden states

/// Per-token hidden states of the layers `layers[0..n_layers]` (0 = embeddings output,
/// `n_layers` of `xlmr_model_info` = after the final LayerNorm), as transformers'
/// `output_hidden_states`. `layers` NULL with `n_layers` 0 means all of them, in order.
///
/// # Safety
/// As `xlmr_tokenize`; `layers` is NULL or points to `n_layers` values.
#[no_mangle]
pub unsafe extern "C" fn xlmr_get_hidden_states(
    model: *const xlmr_model,
    texts: *const *const c_char,
    n_texts: usize,
    layers: *const usize,
    n_layers: usize,
    truncate: bool,
    out: *mut *mut xlmr_hidden_states,
) -> xlmr_status {
    guard(|| {
        let m = lookup(model, "model")?;
        // Safety: `texts` per this function's contract.
        let texts = unsafe { read_texts(texts, n_texts) }?;
        let last = m.model.config.layers;
        let wanted: Vec<usize> = match (layers.is_null(), n_layers) {
            (true, 0) => (0..=last).collect(),
            (true, _) => return Err(Failure::invalid(format!("layers is NULL but n_layers is {n_layers}"))),
            (false, 0) => return Err(Failure::invalid("n_layers is 0; pass layers = NULL for all layers")),
            (false, n) if n > isize::MAX as usize / std::mem::size_of::<usize>() => {
                return Err(Failure::invalid(format!("n_layers {n} is too large")))
            }
            // Safety: non-NULL, `n` readable values per this function's contract, size checked.
            (false, n) => unsafe { std::slice::from_raw_parts(layers, n) }.to_vec(),
        };
        if let Some(bad) = wanted.iter().find(|&&l| l > last) {
            return Err(Failure::invalid(format!("layer {bad} does not exist (0 = embeddings ... {last} = final)")));
        }
        require_out(out, "out")?;
        let result = m.run(|model| model.hidden_states(&texts, Some(&wanted), truncate))?;
        let states = result.into_iter().map(|per_layer| per_layer.into_iter().map(|tokens| tokens.concat()).collect()).collect();
        let handle = register::<xlmr_hidden_states>(HiddenStates { dim: m.model.config.hidden, states, n_layers: wanted.len() });
        // Safety: `out` checked non-NULL above, writable per this function's contract.
        unsafe { write_out(out, handle) };
        Ok(())
    })
}

/// Number of texts in a result (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_hidden_states_n_texts(states: *const xlmr_hidden_states) -> usize {
    guard_or(0, || Ok(lookup(states, "states")?.states.len()))
}

/// Number of layers requested (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_hidden_states_n_layers(states: *const xlmr_hidden_states) -> usize {
    guard_or(0, || Ok(lookup(states, "states")?.n_layers))
}

/// Length of each token vector, the model's hidden size (0 for NULL or a freed result).
#[no_mangle]
pub extern "C" fn xlmr_hidden_states_dim(states: *const xlmr_hidden_states) -> usize {
    guard_or(0, || Ok(lookup(states, "states")?.dim))
}

/// `*data` = the `k`-th requested layer's states for text `text`, `*n_tokens` rows of
/// `dim` floats, row-major (borrowed from `states`).
///
/// # Safety
/// `data` and `n_tokens` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn xlmr_hidden_states_get(
    states: *const xlmr_hidden_states,
    text: usize,
    k: usize,
    data: *mut *const f32,
    n_tokens: *mut usize,
) -> xlmr_status {
    guard(|| {
        let s = lookup(states, "states")?;
        require_out(data, "data")?;
        require_out(n_tokens, "n_tokens")?;
        let rows = s.states.get(text).and_then(|per_layer| per_layer.get(k)).ok_or_else(|| {
            Failure::invalid(format!("text {text}, layer index {k} is out of range ({} texts, {} layers)", s.states.len(), s.n_layers))
        })?;
        // Safety: both checked non-NULL above, writable per this function's contract. The
        // pointer stays valid while `states` is alive (never modified).
        unsafe {
            write_out(data, rows.as_ptr());
            write_out(n_tokens, rows.len() / s.dim);
        }
        Ok(())
    })
}

/// Frees a hidden-states result; NULL is a no-op.
#[no_mangle]
pub extern "C" fn xlmr_hidden_states_free(states: *mut xlmr_hidden_states) {
    guard(|| release(states, "states"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn version_macros_match_the_crate_version() {
        let expected = format!("{XLMR_VERSION_MAJOR}.{XLMR_VERSION_MINOR}.{XLMR_VERSION_PATCH}");
        assert_eq!(expected, env!("CARGO_PKG_VERSION"));
        // Safety: xlmr_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(xlmr_version()) };
        assert_eq!(v.to_str().unwrap(), expected);
    }

    #[test]
    fn a_panic_becomes_internal_with_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, xlmr_status::XLMR_STATUS_INTERNAL);
        // Safety: last_error returns a NUL-terminated string owned by this thread.
        let msg = unsafe { CStr::from_ptr(xlmr_last_error()) }.to_str().unwrap().to_string();
        assert!(msg.contains("internal error") && msg.contains("boom"), "{msg}");
        assert_eq!(guard_or(7usize, || panic!("again")), 7);
    }

    fn worker_threads() -> usize {
        let tasks = std::fs::read_dir("/proc/self/task").unwrap();
        tasks.filter(|t| std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).is_ok_and(|c| c.starts_with("xlmr-worker"))).count()
    }

    /// The only test in this binary that loads a model, so the thread count is its own.
    #[test]
    #[cfg(target_os = "linux")]
    fn a_model_owns_n_threads_workers_that_exit_on_free() {
        use crate::convert::{convert, ConvertOptions};
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("tiny.gguf");
        let model_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny-xlmr-xl");
        convert(&ConvertOptions { model_dir, output: output.clone(), ty: crate::quant::GgmlType::Q8_0, progress: false }).unwrap();
        let path = CString::new(output.to_str().unwrap()).unwrap();
        let params = xlmr_model_params { n_threads: 3, ..xlmr_model_default_params() };
        let mut model = std::ptr::null_mut();
        // Safety: valid C string and out-pointer.
        assert_eq!(unsafe { xlmr_model_load(path.as_ptr(), params, &mut model) }, xlmr_status::XLMR_STATUS_OK);
        // Workers name themselves once started, which may be after the load returns.
        let started = std::time::Instant::now();
        while worker_threads() < 3 && started.elapsed().as_secs() < 5 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(worker_threads(), 3);
        xlmr_model_free(model);
        // Free waits for the workers' exit handlers; the threads end right after.
        let freed = std::time::Instant::now();
        while worker_threads() > 0 && freed.elapsed().as_secs() < 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(worker_threads(), 0, "the workers of a freed model exit");
    }

    #[test]
    fn errors_map_to_statuses() {
        let status = guard(|| Err(Error::io("/nope", std::io::Error::from(std::io::ErrorKind::NotFound)).into()));
        assert_eq!(status, xlmr_status::XLMR_STATUS_IO);
        assert_eq!(guard(|| Err(Error::format("/f", "bad").into())), xlmr_status::XLMR_STATUS_FORMAT);
        assert_eq!(guard(|| Err(Error::Input("empty".into()).into())), xlmr_status::XLMR_STATUS_INPUT);
    }
}
