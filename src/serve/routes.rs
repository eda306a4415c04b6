//! The HTTP handlers: parse and validate a request, tokenize, queue it for the worker,
//! shape the answer. Every model computation is a library call made by the worker.

use super::error::{parse_body, ApiError, ErrorType};
use super::metrics::Usage;
use super::types::*;
use super::worker::{Failure, Output, Task};
use super::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Serialize;
use tokio::sync::OwnedSemaphorePermit;
use xlmr::model::l2_normalize;
use xlmr::tokenizer::Tokenizer;
use xlmr::Pooling;

type Body = Result<Bytes, BytesRejection>;

/// A JSON answer carrying its usage for the request log.
fn answer(body: impl Serialize, usage: Usage) -> Response {
    let mut r = Json(body).into_response();
    r.extensions_mut().insert(usage);
    r
}

fn usage(seqs: &[Vec<u32>]) -> Usage {
    Usage { inputs: seqs.len(), tokens: seqs.iter().map(Vec::len).sum() }
}

/// TEI has prompts from a sentence-transformers config; a GGUF carries none.
fn no_prompt(prompt_name: &Option<String>) -> Result<(), ApiError> {
    match prompt_name {
        Some(p) => Err(ApiError::validation(format!("`prompt_name` is `{p}` but this model has no prompts"))),
        None => Ok(()),
    }
}

impl AppState {
    /// Checks the number of inputs and takes one concurrency permit per input (TEI's
    /// accounting); none left is 429.
    fn admit(&self, n: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        if n == 0 {
            return Err(ApiError::empty("`inputs` cannot be empty"));
        }
        if n > self.limits.max_client_batch_size {
            return Err(ApiError::validation(format!("batch size {n} > maximum allowed batch size {}", self.limits.max_client_batch_size)));
        }
        self.permits.clone().try_acquire_many_owned(n as u32).map_err(|_| ApiError::new(ErrorType::Overloaded, "Model is overloaded"))
    }

    /// Token ids of one input, within `max_input_length` (cut when `truncate`).
    fn encode(&self, input: &InputType, truncate: Option<bool>, direction: TruncationDirection) -> Result<Vec<u32>, ApiError> {
        let max = self.limits.max_input_length;
        let mut ids = match input {
            InputType::Text(t) if t.trim().is_empty() => return Err(ApiError::empty("`inputs` cannot be empty")),
            InputType::Text(t) => self.model.tokenizer.encoding(t, true)?.get_ids().to_vec(),
            InputType::Ids(ids) if ids.is_empty() => return Err(ApiError::empty("`inputs` cannot be empty")),
            InputType::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.model.config.vocab) {
                    return Err(ApiError::validation(format!("token id {bad} is outside the model's vocabulary of {}", self.model.config.vocab)));
                }
                ids.clone()
            }
        };
        if ids.len() > max {
            if !truncate.unwrap_or(self.limits.auto_truncate) {
                return Err(ApiError::validation(format!("`inputs` must have less than {max} tokens. Given: {}", ids.len())));
            }
            Tokenizer::cut(&mut ids, max, direction == TruncationDirection::Left);
        }
        Ok(ids)
    }

    fn encode_all(&self, inputs: &[InputType], truncate: Option<bool>, direction: TruncationDirection) -> Result<Vec<Vec<u32>>, ApiError> {
        inputs.iter().map(|i| self.encode(i, truncate, direction)).collect()
    }

    async fn run(&self, task: Task, seqs: Vec<Vec<u32>>) -> Result<Output, ApiError> {
        self.worker.submit(task, seqs, &self.metrics).await.map_err(|f| match f {
            Failure::Rejected(e) => ApiError::from(e),
            Failure::Panicked(msg) => ApiError::internal(msg),
        })
    }

    fn check_dimensions(&self, dimensions: Option<usize>) -> Result<(), ApiError> {
        match dimensions {
            Some(0) => Err(ApiError::validation("`dimensions` should be positive")),
            Some(d) if d > self.model.config.hidden => Err(ApiError::validation("`dimensions` should be smaller than the maximum embedding dimension.")),
            _ => Ok(()),
        }
    }

    /// One pooled vector per input: cut to `dimensions`, then normalized (TEI's order).
    async fn pooled(&self, seqs: Vec<Vec<u32>>, normalize: bool, dimensions: Option<usize>) -> Result<Vec<Vec<f32>>, ApiError> {
        let Output::Vectors(out) = self.run(Task::Embed(self.pooling), seqs).await? else { unreachable!("embed gives vectors") };
        Ok(out
            .into_iter()
            .map(|mut v| {
                let mut v = v.swap_remove(0);
                if let Some(d) = dimensions {
                    v.truncate(d);
                }
                if normalize {
                    l2_normalize(&mut v);
                }
                v
            })
            .collect())
    }
}

pub async fn embed(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: EmbedRequest = parse_body(body)?;
    no_prompt(&req.prompt_name)?;
    s.check_dimensions(req.dimensions)?;
    let (inputs, _) = req.inputs.into_vec();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, req.truncate, req.truncation_direction)?;
    let used = usage(&seqs);
    let vectors = s.pooled(seqs, req.normalize, req.dimensions).await?;
    Ok(answer(vectors, used))
}

pub async fn embed_all(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: EmbedAllRequest = parse_body(body)?;
    no_prompt(&req.prompt_name)?;
    let (inputs, _) = req.inputs.into_vec();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, req.truncate, req.truncation_direction)?;
    let used = usage(&seqs);
    let Output::Vectors(tokens) = s.run(Task::Embed(Pooling::None), seqs).await? else { unreachable!("embed gives vectors") };
    Ok(answer(tokens, used))
}

pub async fn openai_embeddings(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    openai_inner(s, body).await.map_err(ApiError::openai)
}

async fn openai_inner(s: AppState, body: Body) -> Result<Response, ApiError> {
    let req: OpenAiRequest = parse_body(body)?;
    s.check_dimensions(req.dimensions)?;
    if let Some(m) = req.model.as_deref().filter(|m| *m != s.info.served_model_name) {
        // As TEI: one model per server, so a different name is only worth a warning.
        eprintln!("xlmr serve: warning: request asks for model `{m}`, serving `{}`", s.info.served_model_name);
    }
    let (inputs, _) = req.input.into_vec();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, None, TruncationDirection::Right)?;
    let used = usage(&seqs);
    let vectors = s.pooled(seqs, true, req.dimensions).await?;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match req.encoding_format {
                EncodingFormat::Float => OpenAiVector::Float(v),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    OpenAiVector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            OpenAiEmbedding { object: "embedding", embedding, index }
        })
        .collect();
    let body = OpenAiResponse {
        object: "list",
        data,
        model: s.info.served_model_name.clone(),
        usage: OpenAiUsage { prompt_tokens: used.tokens, total_tokens: used.tokens },
    };
    Ok(answer(body, used))
}

pub async fn tokenize(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: TokenizeRequest = parse_body(body)?;
    no_prompt(&req.prompt_name)?;
    let (texts, _) = req.inputs.into_vec();
    let _permit = s.admit(texts.len())?;
    let mut out = Vec::with_capacity(texts.len());
    let mut used = Usage { inputs: texts.len(), tokens: 0 };
    for text in &texts {
        if text.is_empty() {
            return Err(ApiError::empty("`inputs` cannot be empty"));
        }
        let enc = s.model.tokenizer.encoding(text, req.add_special_tokens)?;
        used.tokens += enc.len();
        let tokens: Vec<SimpleToken> = (0..enc.len())
            .map(|i| {
                let id = enc.get_ids()[i];
                if enc.get_special_tokens_mask()[i] == 1 {
                    SimpleToken { id, text: enc.get_tokens()[i].clone(), special: true, start: None, stop: None }
                } else {
                    let (start, stop) = enc.get_offsets()[i];
                    let text = String::from_utf8_lossy(text.as_bytes().get(start..stop).unwrap_or_default()).into_owned();
                    SimpleToken { id, text, special: false, start: Some(start), stop: Some(stop) }
                }
            })
            .collect();
        out.push(tokens);
    }
    Ok(answer(out, used))
}

pub async fn decode(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: DecodeRequest = parse_body(body)?;
    let (ids, _) = req.ids.into_vec();
    let _permit = s.admit(ids.len())?;
    let texts = ids
        .iter()
        .map(|ids| {
            if ids.is_empty() {
                return Err(ApiError::empty("`input_ids` cannot be empty"));
            }
            Ok(s.model.tokenizer.decode(ids, req.skip_special_tokens)?)
        })
        .collect::<Result<Vec<String>, ApiError>>()?;
    Ok(answer(texts, Usage { inputs: ids.len(), tokens: ids.iter().map(Vec::len).sum() }))
}

pub async fn fill_mask(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: FillMaskRequest = parse_body(body)?;
    s.model.check_mlm_head().map_err(|e| ApiError::new(ErrorType::Backend, e.to_string()))?;
    if req.top_k == 0 {
        return Err(ApiError::validation("`top_k` must be at least 1"));
    }
    let (texts, batch) = req.inputs.into_vec();
    let inputs: Vec<InputType> = texts.into_iter().map(InputType::Text).collect();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, req.truncate, req.truncation_direction)?;
    if let Some(i) = seqs.iter().position(|q| !q.contains(&s.model.config.mask_id)) {
        return Err(ApiError::validation(format!("input {} has no <mask> token", i + 1)));
    }
    let used = usage(&seqs);
    let Output::Masks(masks) = s.run(Task::FillMask { top_k: req.top_k }, seqs).await? else { unreachable!("fill-mask gives masks") };
    // transformers' pipeline shape: one mask gives a list of candidates, several a list per mask.
    let per_input: Vec<serde_json::Value> =
        masks.into_iter().map(|m| if m.len() == 1 { serde_json::json!(m[0]) } else { serde_json::json!(m) }).collect();
    Ok(if batch { answer(per_input, used) } else { answer(&per_input[0], used) })
}

pub async fn hidden_states(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: HiddenStatesRequest = parse_body(body)?;
    let last = s.model.config.layers;
    if let Some(bad) = req.layers.iter().flatten().find(|&&l| l > last) {
        return Err(ApiError::validation(format!("layer {bad} does not exist (0 = embeddings ... {last} = final)")));
    }
    let (texts, _) = req.inputs.into_vec();
    let inputs: Vec<InputType> = texts.into_iter().map(InputType::Text).collect();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, req.truncate, req.truncation_direction)?;
    let used = usage(&seqs);
    let Output::Hidden(states) = s.run(Task::HiddenStates(req.layers), seqs).await? else { unreachable!("hidden-states gives states") };
    Ok(answer(states, used))
}

/// TEI answers 424 (error type Backend) when the model cannot do the task.
pub async fn predict(State(_s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let _req: PredictRequest = parse_body(body)?;
    Err(ApiError::new(ErrorType::Backend, "Model is not a classifier model"))
}

pub async fn rerank(State(_s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: RerankRequest = parse_body(body)?;
    if req.texts.is_empty() {
        return Err(ApiError::empty("`texts` cannot be empty"));
    }
    Err(ApiError::new(ErrorType::Backend, "model is not a re-ranker model"))
}

pub async fn info(State(s): State<AppState>) -> Json<Info> {
    Json(s.info.clone())
}

pub async fn health(State(s): State<AppState>) -> Result<(), ApiError> {
    if s.worker.alive() {
        Ok(())
    } else {
        Err(ApiError::new(ErrorType::Unhealthy, "unhealthy"))
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render()).into_response()
}

pub async fn not_found() -> ApiError {
    ApiError::validation("no such route").with_status(axum::http::StatusCode::NOT_FOUND)
}
