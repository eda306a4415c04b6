//! `xlmr serve`: an HTTP front-end speaking text-embeddings-inference's API, OpenAI's
//! `/v1/embeddings`, and xlmr's own `/fill-mask` and `/hidden-states`.
//!
//! - `routes`: handlers (parse, validate, tokenize, queue, shape the answer);
//! - `worker`: the queue and the scheduler thread that batches jobs onto the model's pool;
//! - `types`, `error`: TEI / OpenAI JSON and error shapes; `metrics`: Prometheus and the log.

mod error;
mod metrics;
mod routes;
mod types;
mod worker;

use axum::extract::DefaultBodyLimit;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use error::{ApiError, ErrorType};
use metrics::Metrics;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use worker::Worker;
use xlmr::{Error, Model, Pooling, Result};

/// Paths served (for metric labels).
const ROUTES: &[&str] = &[
    "/", "/embed", "/embed_all", "/predict", "/rerank", "/tokenize", "/decode", "/info", "/health", "/ping", "/metrics",
    "/v1/embeddings", "/embeddings", "/invocations", "/fill-mask", "/hidden-states",
];

pub struct Options {
    pub model: PathBuf,
    pub host: String,
    pub port: u16,
    pub threads: Option<usize>,
    pub api_key: Option<String>,
    pub max_batch_tokens: usize,
    pub max_concurrent_requests: usize,
    pub max_client_batch_size: usize,
    /// `None`: the model's maximum.
    pub max_input_length: Option<usize>,
    pub auto_truncate: bool,
    pub payload_limit: usize,
    /// `None`: the file's `pooling_type` metadata, else mean.
    pub pooling: Option<Pooling>,
    pub batch_size: usize,
    pub served_model_name: Option<String>,
    pub json_logs: bool,
    pub shutdown_timeout: Duration,
}

pub struct Limits {
    pub max_client_batch_size: usize,
    pub max_input_length: usize,
    pub auto_truncate: bool,
}

pub struct Shared {
    model: Arc<Model>,
    worker: Worker,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    limits: Limits,
    info: types::Info,
    pooling: Pooling,
    api_key: Option<String>,
    json_logs: bool,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// `pooling_type` as llama.cpp writes it (1 = mean, 2 = cls), if the file has it.
fn pooling_from_file(model: &Model) -> Option<Pooling> {
    match model.file().get(&format!("{}.pooling_type", xlmr::gguf::keys::ARCH)) {
        Some(xlmr::gguf::Value::U32(1)) => Some(Pooling::Mean),
        Some(xlmr::gguf::Value::U32(2)) => Some(Pooling::Cls),
        _ => None,
    }
}

/// TEI's `model_type`: a classifier (a reranker when it has one label) with its labels, or
/// an embedding model with its pooling.
fn model_type(model: &Model, pooling: &str) -> serde_json::Value {
    match &model.head {
        Some(h) if h.kind == xlmr::heads::HeadKind::SequenceClassification => {
            let id2label: serde_json::Map<String, serde_json::Value> = h.labels.iter().enumerate().map(|(i, l)| (i.to_string(), l.as_str().into())).collect();
            let label2id: serde_json::Map<String, serde_json::Value> = h.labels.iter().enumerate().map(|(i, l)| (l.clone(), i.into())).collect();
            let kind = if h.labels.len() == 1 { "reranker" } else { "classifier" };
            serde_json::json!({ kind: { "id2label": id2label, "label2id": label2id } })
        }
        _ => serde_json::json!({ "embedding": { "pooling": pooling } }),
    }
}

fn build_state(o: &Options) -> Result<AppState> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    let mut model = Model::load(&o.model)?;
    model.batch_size = o.batch_size.max(1);
    let model_max = model.config.max_tokens;
    let max_input_length = o.max_input_length.unwrap_or(model_max);
    if !(2..=model_max).contains(&max_input_length) {
        return bad(format!("--max-input-length {max_input_length} must be between 2 and the model's {model_max} tokens"));
    }
    if o.max_batch_tokens < max_input_length {
        return bad(format!("--max-batch-tokens {} must be at least --max-input-length {max_input_length}", o.max_batch_tokens));
    }
    if o.max_concurrent_requests == 0 || o.max_client_batch_size == 0 {
        return bad("--max-concurrent-requests and --max-client-batch-size must be at least 1".into());
    }
    let pooling = o.pooling.or_else(|| pooling_from_file(&model)).unwrap_or(Pooling::Mean);
    let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("xlmr-worker-{i}"));
    if let Some(n) = o.threads {
        if n == 0 {
            return bad("--threads must be at least 1".into());
        }
        pool = pool.num_threads(n);
    }
    let pool = pool.build().map_err(|e| Error::InvalidArgument(format!("cannot start threads: {e}")))?;
    let model_id = o.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let dtype = model.file().tensor(&xlmr::gguf::keys::tensor::blk(0, "ffn_up.weight")).map(|t| t.ty.name()).unwrap_or("unknown");
    let pooling_name = match pooling {
        Pooling::Cls => "cls",
        Pooling::Mean => "mean",
        Pooling::None => "none",
    };
    let info = types::Info {
        model_id: model_id.clone(),
        model_sha: None,
        model_dtype: dtype.to_string(),
        served_model_name: o.served_model_name.clone().unwrap_or(model_id),
        model_type: model_type(&model, pooling_name),
        max_concurrent_requests: o.max_concurrent_requests,
        max_input_length,
        max_batch_tokens: o.max_batch_tokens,
        max_batch_requests: None,
        max_client_batch_size: o.max_client_batch_size,
        auto_truncate: o.auto_truncate,
        tokenization_workers: 0,
        version: env!("CARGO_PKG_VERSION"),
        sha: None,
        docker_label: None,
        hidden_size: model.config.hidden,
        num_layers: model.config.layers,
        has_mlm_head: model.config.has_mlm_head,
    };
    let model = Arc::new(model);
    let metrics = Arc::new(Metrics::new());
    let worker = Worker::start(model.clone(), pool, o.max_batch_tokens, metrics.clone()).map_err(|e| Error::InvalidArgument(format!("cannot start the compute thread: {e}")))?;
    Ok(AppState(Arc::new(Shared {
        model,
        worker,
        metrics,
        permits: Arc::new(Semaphore::new(o.max_concurrent_requests)),
        limits: Limits { max_client_batch_size: o.max_client_batch_size, max_input_length, auto_truncate: o.auto_truncate },
        info,
        pooling,
        api_key: o.api_key.clone().filter(|k| !k.is_empty()),
        json_logs: o.json_logs,
    })))
}

/// `Authorization: Bearer KEY`, compared in constant time.
async fn require_key(axum::extract::State(s): axum::extract::State<AppState>, req: axum::extract::Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::new(ErrorType::Unauthorized, "missing or wrong API key: send `Authorization: Bearer KEY`").into_response();
        }
    }
    next.run(req).await
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let text = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    ApiError::internal(text.unwrap_or("unknown panic")).into_response()
}

fn router(state: AppState, payload_limit: usize) -> Router {
    use routes::*;
    // As TEI: health, metrics and the GET probes are public; everything else needs the key.
    let protected = Router::new()
        .route("/embed", post(embed))
        .route("/embed_all", post(embed_all))
        .route("/predict", post(predict))
        .route("/rerank", post(rerank))
        .route("/tokenize", post(tokenize))
        .route("/decode", post(decode))
        .route("/info", get(info))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embeddings", post(openai_embeddings))
        .route("/fill-mask", post(fill_mask))
        .route("/hidden-states", post(hidden_states))
        // TEI serves the model's main task at `/` and `/invocations` (huggingface_hub's
        // InferenceClient posts there).
        .route("/", post(main_task))
        .route("/invocations", post(main_task))
        .route_layer(from_fn_with_state(state.clone(), require_key));
    let public = Router::new()
        .route("/health", get(health))
        .route("/", get(health))
        .route("/ping", get(health))
        .route("/metrics", get(metrics));
    Router::new()
        .merge(protected)
        .merge(public)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(payload_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), metrics::observe))
        .with_state(state)
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Loads the model, serves until SIGTERM/SIGINT, then finishes the requests in flight
/// (up to `shutdown_timeout`) and returns.
pub fn run(o: Options) -> Result<()> {
    let state = build_state(&o)?;
    let app = router(state.clone(), o.payload_limit);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)))
        .thread_name("xlmr-http")
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the HTTP runtime: {e}")))?;
    let addr = format!("{}:{}", o.host, o.port);
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| Error::io(&addr, e))?;
        let local = listener.local_addr().map_err(|e| Error::io(&addr, e))?;
        // Tests and scripts read this line to learn the port (with --port 0).
        eprintln!("xlmr serve: listening on http://{local} (model {}, {}, {} threads)", state.info.model_id, state.info.model_type, rayon_threads(&o));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let mut graceful_rx = stop_rx.clone();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = graceful_rx.wait_for(|stop| *stop).await;
            eprintln!("xlmr serve: shutting down: no new connections; finishing the requests in flight");
        });
        let mut server = tokio::spawn(async move { server.await });
        tokio::select! {
            r = &mut server => {
                r.map_err(|e| Error::InvalidArgument(format!("server task failed: {e}")))?.map_err(|e| Error::io(&addr, e))?;
                Ok::<bool, Error>(false)
            }
            _ = async {
                let _ = stop_rx.wait_for(|stop| *stop).await;
                tokio::time::sleep(o.shutdown_timeout).await;
            } => {
                eprintln!("xlmr serve: requests still running after {} s; stopping anyway", o.shutdown_timeout.as_secs());
                Ok(true)
            }
        }
    });
    // Drop the runtime first: connections still open after the timeout are cut here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    state.worker.close(matches!(served, Ok(true)));
    served?;
    eprintln!("xlmr serve: stopped");
    Ok(())
}

fn rayon_threads(o: &Options) -> usize {
    o.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests;
