//! `xlmr._xlmr`: the native half of the `xlmr` Python package, a thin front-end like the CLI,
//! the C API and the server. Each method converts its Python arguments, releases the GIL,
//! calls the library (`xlmr::Model` and its task API in src/tasks/) inside the model's thread
//! pool, and returns plain values: vectors as little-endian f32 bytes, task results as the
//! JSON the CLI prints. `python/xlmr/__init__.py` turns those into numpy arrays and the
//! pipelines' shapes.

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use xlmr::tasks::comet::Triplet;
use xlmr::{Choices, ClassifyOptions, Error, Pooling, QaInput, QaOptions, TextInput, TokenClassifyOptions, TopK};

/// The library's message, as `ValueError` for bad input and `OSError` (or its
/// `FileNotFoundError` / `PermissionError` subclasses) for files.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Input(_) | Error::InvalidArgument(_) | Error::Tokenizer(_) => PyValueError::new_err(msg),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        _ => PyOSError::new_err(msg),
    }
}

/// A loaded model and the threads it computes on. Shared (`Arc`) by the Python object and
/// every call in flight, so `close()` or garbage collection never frees it under a running
/// call.
struct Loaded {
    /// Write-locked only to change the batch size between calls (see `XlmrModel::run`).
    model: RwLock<xlmr::Model>,
    pool: rayon::ThreadPool,
    path: PathBuf,
}

#[pyclass(name = "Model", module = "xlmr._xlmr", frozen)]
struct XlmrModel {
    /// `None` after `close()`.
    loaded: Mutex<Option<Arc<Loaded>>>,
}

impl XlmrModel {
    fn loaded(&self) -> PyResult<Arc<Loaded>> {
        let guard = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| PyValueError::new_err("this model is closed"))
    }

    /// Runs `f` on the model without the GIL, on the model's threads, with `batch_size`
    /// inputs per forward pass when given. Calls with the same batch size (or none) run in
    /// parallel; a call with another one waits for those in flight to change it.
    fn run<T: Send>(&self, py: Python<'_>, batch_size: Option<usize>, f: impl FnOnce(&xlmr::Model) -> xlmr::Result<T> + Send) -> PyResult<T> {
        if batch_size == Some(0) {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let loaded = self.loaded()?;
        py.detach(|| loop {
            {
                let model = loaded.model.read().unwrap_or_else(|e| e.into_inner());
                if batch_size.is_none_or(|n| n == model.batch_size) {
                    return loaded.pool.install(|| f(&model));
                }
            }
            if let Some(n) = batch_size {
                loaded.model.write().unwrap_or_else(|e| e.into_inner()).batch_size = n;
            }
        })
        .map_err(to_py)
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("task results serialize")
}

fn f32_bytes<'py, 'a>(py: Python<'py>, values: impl IntoIterator<Item = &'a [f32]>) -> Bound<'py, PyBytes> {
    let mut out = Vec::new();
    for v in values {
        out.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    PyBytes::new(py, &out)
}

#[pymethods]
impl XlmrModel {
    #[new]
    #[pyo3(signature = (path, n_threads=None, pack_cache=None))]
    fn new(py: Python<'_>, path: PathBuf, n_threads: Option<usize>, pack_cache: Option<PathBuf>) -> PyResult<Self> {
        if n_threads == Some(0) {
            return Err(PyValueError::new_err("n_threads must be at least 1 (or None for every core)"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads.unwrap_or(0))
            .build()
            .map_err(|e| PyOSError::new_err(format!("cannot start threads: {e}")))?;
        // Loading a file is a file problem whatever went wrong inside it.
        let mut options = xlmr::model::LoadOptions::from_env();
        if pack_cache.is_some() {
            options.pack_cache = pack_cache;
        }
        let model = py.detach(|| xlmr::Model::load_with(&path, &options)).map_err(|e| match e {
            Error::Io { .. } => to_py(e),
            e => PyOSError::new_err(e.to_string()),
        })?;
        Ok(XlmrModel { loaded: Mutex::new(Some(Arc::new(Loaded { model: RwLock::new(model), pool, path }))) })
    }

    /// Drops this object's hold on the model: calls in flight finish, later calls raise.
    fn close(&self) {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Hyperparameters, task head and file facts, as a JSON object.
    fn info_json(&self) -> PyResult<String> {
        let loaded = self.loaded()?;
        let model = loaded.model.read().unwrap_or_else(|e| e.into_inner());
        let c = &model.config;
        let head = model.head.as_ref().map(|h| {
            serde_json::json!({
                "kind": h.kind.name(), "task": h.kind.task(), "architecture": h.kind.architecture(),
                "labels": h.labels, "problem_type": h.problem_type.map(|p| p.name()),
            })
        });
        let info = serde_json::json!({
            "path": loaded.path.to_string_lossy(), "file_bytes": model.file().file_size(),
            "hidden_size": c.hidden, "num_hidden_layers": c.layers, "num_attention_heads": c.heads,
            "intermediate_size": c.ffn, "vocab_size": c.vocab, "type_vocab_size": c.type_vocab,
            "max_tokens": c.max_tokens, "layer_norm_eps": c.eps, "pad_token_id": c.pad_id, "mask_token_id": c.mask_id,
            "has_mlm_head": c.has_mlm_head, "head": head, "n_threads": loaded.pool.current_num_threads(),
            "weights": model.weights_mode(),
        });
        Ok(info.to_string())
    }

    #[pyo3(signature = (texts, truncate=false))]
    fn tokenize(&self, py: Python<'_>, texts: Vec<String>, truncate: bool) -> PyResult<Vec<Vec<u32>>> {
        self.run(py, None, |m| m.tokenize_all(&texts, truncate))
    }

    /// Per input: its vector (`cls`, `mean`) or its token vectors (`none`) as f32 bytes.
    #[pyo3(signature = (texts, pooling, normalize, truncate, batch_size))]
    fn embed<'py>(&self, py: Python<'py>, texts: Vec<String>, pooling: &str, normalize: bool, truncate: bool, batch_size: usize) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let pooling = match pooling {
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "none" => Pooling::None,
            other => return Err(PyValueError::new_err(format!("pooling {other:?}: use \"mean\", \"cls\" or \"none\""))),
        };
        let res = self.run(py, Some(batch_size), |m| m.embed(&texts, pooling, normalize, truncate))?;
        Ok(res.iter().map(|vectors| f32_bytes(py, vectors.iter().map(|v| v.as_slice()))).collect())
    }

    /// Per input: the requested hidden states, `[layers][tokens][hidden]` as f32 bytes.
    #[pyo3(signature = (texts, layers, truncate, batch_size))]
    fn hidden_states<'py>(&self, py: Python<'py>, texts: Vec<String>, layers: Option<Vec<usize>>, truncate: bool, batch_size: usize) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let res = self.run(py, Some(batch_size), |m| m.hidden_states(&texts, layers.as_deref(), truncate))?;
        Ok(res.iter().map(|per_layer| f32_bytes(py, per_layer.iter().flatten().map(|t| t.as_slice()))).collect())
    }

    /// `[input][mask][k]` predictions as JSON (the CLI's `--json`).
    #[pyo3(signature = (texts, top_k, truncate, batch_size))]
    fn fill_mask(&self, py: Python<'_>, texts: Vec<String>, top_k: usize, truncate: bool, batch_size: usize) -> PyResult<String> {
        if top_k == 0 {
            return Err(PyValueError::new_err("top_k must be at least 1"));
        }
        self.run(py, Some(batch_size), |m| m.fill_mask(&texts, top_k, truncate)).map(|r| json(&r))
    }

    /// `[input][label]` as JSON; `inputs` are `(text, text_pair or None)`; `top_k` is a
    /// number or `"all"`.
    #[pyo3(signature = (inputs, top_k, function, truncate, batch_size))]
    fn classify(&self, py: Python<'_>, inputs: Vec<(String, Option<String>)>, top_k: &str, function: Option<&str>, truncate: bool, batch_size: usize) -> PyResult<String> {
        let opts = ClassifyOptions {
            top_k: top_k.parse::<TopK>().map_err(to_py)?,
            function: function.map(str::parse).transpose().map_err(to_py)?,
            truncate,
        };
        let texts: Vec<TextInput> = inputs
            .iter()
            .map(|(t, p)| match p {
                Some(p) => TextInput::Pair(t, p),
                None => TextInput::Single(t),
            })
            .collect();
        self.run(py, Some(batch_size), |m| m.classify(&texts, &opts)).map(|r| json(&r))
    }

    /// `[input][entity]` as JSON.
    #[pyo3(signature = (texts, aggregation, ignore_labels, truncate, batch_size))]
    fn token_classify(&self, py: Python<'_>, texts: Vec<String>, aggregation: &str, ignore_labels: Option<Vec<String>>, truncate: bool, batch_size: usize) -> PyResult<String> {
        let opts = TokenClassifyOptions {
            aggregation: aggregation.parse().map_err(to_py)?,
            ignore_labels: ignore_labels.unwrap_or_else(|| TokenClassifyOptions::default().ignore_labels),
            truncate,
        };
        self.run(py, Some(batch_size), |m| m.token_classify(&texts, &opts)).map(|r| json(&r))
    }

    /// `[input][answer]` as JSON; `inputs` are `(question, context)`.
    #[pyo3(signature = (inputs, top_k, max_seq_len, doc_stride, max_answer_len, handle_impossible_answer, batch_size))]
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        py: Python<'_>,
        inputs: Vec<(String, String)>,
        top_k: usize,
        max_seq_len: usize,
        doc_stride: Option<usize>,
        max_answer_len: usize,
        handle_impossible_answer: bool,
        batch_size: usize,
    ) -> PyResult<String> {
        let opts = QaOptions { top_k, max_seq_len, doc_stride, max_answer_len, handle_impossible_answer };
        let qa: Vec<QaInput> = inputs.iter().map(|(question, context)| QaInput { question, context }).collect();
        self.run(py, Some(batch_size), |m| m.answer(&qa, &opts)).map(|r| json(&r))
    }

    /// `[input]{scores, best, logits}` as JSON; `inputs` are `(prompt, choices)`.
    #[pyo3(signature = (inputs, truncate, batch_size))]
    fn multiple_choice(&self, py: Python<'_>, inputs: Vec<(String, Vec<String>)>, truncate: bool, batch_size: usize) -> PyResult<String> {
        let items: Vec<Choices> = inputs.iter().map(|(prompt, choices)| Choices { prompt, choices: choices.iter().map(String::as_str).collect() }).collect();
        self.run(py, Some(batch_size), |m| m.multiple_choice(&items, truncate)).map(|r| json(&r))
    }

    /// COMET's `Prediction` (`{scores, system_score, metadata}`) as JSON; `triplets` are
    /// `(src, mt, ref or None)`.
    #[pyo3(signature = (triplets, batch_size))]
    fn score(&self, py: Python<'_>, triplets: Vec<(String, String, Option<String>)>, batch_size: usize) -> PyResult<String> {
        let items: Vec<Triplet> = triplets.iter().map(|(src, mt, reference)| Triplet { src, mt, reference: reference.as_deref() }).collect();
        self.run(py, Some(batch_size), |m| m.score(&items)).map(|r| json(&r))
    }
}

/// Converts a Hugging Face model folder to GGUF; returns `(tensors, file_bytes)`. The
/// conversion runs on its own thread so that Ctrl-C (KeyboardInterrupt) stops it at the
/// next block of rows, leaving no output file.
#[pyfunction]
#[pyo3(signature = (src_dir, dst, ty, progress, encoder=None))]
fn convert(py: Python<'_>, src_dir: PathBuf, dst: PathBuf, ty: &str, progress: bool, encoder: Option<PathBuf>) -> PyResult<(usize, u64)> {
    use xlmr::convert::INTERRUPTED;
    let ty = xlmr::quant::GgmlType::from_name(ty).ok_or_else(|| PyValueError::new_err(format!("unknown type {ty:?}; choose f32, f16, q8_0, q4_0 or q4_k")))?;
    let opts = xlmr::convert::ConvertOptions { model_dir: src_dir, output: dst, ty, progress };
    INTERRUPTED.store(false, Ordering::Relaxed);
    let worker = std::thread::spawn(move || xlmr::convert::convert_with_encoder(&opts, encoder.as_deref()));
    let mut interrupted = None;
    while !worker.is_finished() {
        py.detach(|| std::thread::sleep(std::time::Duration::from_millis(50)));
        if let Err(e) = py.check_signals() {
            INTERRUPTED.store(true, Ordering::Relaxed);
            interrupted = Some(e);
        }
    }
    let report = py.detach(|| worker.join()).map_err(|_| PyOSError::new_err("the conversion thread panicked"))?;
    if let Some(e) = interrupted {
        return Err(e);
    }
    let report = report.map_err(to_py)?;
    Ok((report.plans.len(), report.file_bytes))
}

#[pymodule]
fn _xlmr(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<XlmrModel>()?;
    m.add_function(wrap_pyfunction!(convert, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
