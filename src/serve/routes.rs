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
use xlmr::heads::HeadKind;
use xlmr::{ClassifyFunction, Pooling};

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
    fn encode(&self, input: &InputType, cut: Truncation) -> Result<Vec<u32>, ApiError> {
        match input {
            InputType::Text(t) => self.encode_text(t, None, cut),
            InputType::Ids(ids) if ids.is_empty() => Err(ApiError::empty("`inputs` cannot be empty")),
            InputType::Ids(ids) => {
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.model.config.vocab) {
                    return Err(ApiError::validation(format!("token id {bad} is outside the model's vocabulary of {}", self.model.config.vocab)));
                }
                self.fit(ids.clone(), cut)
            }
        }
    }

    /// A text, or a text pair (`<s> A </s></s> B </s>`), tokenized within `max_input_length`.
    fn encode_text(&self, text: &str, pair: Option<&str>, cut: Truncation) -> Result<Vec<u32>, ApiError> {
        if text.trim().is_empty() || pair.is_some_and(|p| p.trim().is_empty()) {
            return Err(ApiError::empty("`inputs` cannot be empty"));
        }
        let ids = self.model.tokenizer.encode_full(text, pair, true)?.get_ids().to_vec();
        let Some(pair) = pair.filter(|_| ids.len() > self.limits.max_input_length && cut.truncate.unwrap_or(self.limits.auto_truncate)) else {
            return self.fit(ids, cut);
        };
        // A pair is cut by the library as transformers does (the longer side first, from the
        // right, to the model's maximum).
        if cut.truncation_direction == TruncationDirection::Left {
            return Err(ApiError::validation("text pairs are truncated from the right only"));
        }
        let ids = self.model.tokenizer.encoding(text, Some(pair), true)?.get_ids().to_vec();
        self.fit(ids, Truncation { truncate: Some(false), ..cut })
    }

    /// `ids` if within `max_input_length`; else cut (one sequence) or refused.
    fn fit(&self, mut ids: Vec<u32>, cut: Truncation) -> Result<Vec<u32>, ApiError> {
        let max = self.limits.max_input_length;
        if ids.len() > max {
            if !cut.truncate.unwrap_or(self.limits.auto_truncate) {
                return Err(ApiError::validation(format!("`inputs` must have less than {max} tokens. Given: {}", ids.len())));
            }
            Tokenizer::cut(&mut ids, max, cut.truncation_direction == TruncationDirection::Left);
        }
        Ok(ids)
    }

    fn encode_all(&self, inputs: &[InputType], cut: Truncation) -> Result<Vec<Vec<u32>>, ApiError> {
        inputs.iter().map(|i| self.encode(i, cut)).collect()
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
    let seqs = s.encode_all(&inputs, req.truncation)?;
    let used = usage(&seqs);
    let vectors = s.pooled(seqs, req.normalize, req.dimensions).await?;
    Ok(answer(vectors, used))
}

pub async fn embed_all(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: EmbedAllRequest = parse_body(body)?;
    no_prompt(&req.prompt_name)?;
    let (inputs, _) = req.inputs.into_vec();
    let _permit = s.admit(inputs.len())?;
    let seqs = s.encode_all(&inputs, req.truncation)?;
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
    let seqs = s.encode_all(&inputs, Truncation::default())?;
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
        let enc = s.model.tokenizer.encode_full(text, None, req.add_special_tokens)?;
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
    let seqs = s.encode_all(&inputs, req.truncation)?;
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
    let seqs = s.encode_all(&inputs, req.truncation)?;
    let used = usage(&seqs);
    let Output::Hidden(states) = s.run(Task::HiddenStates(req.layers), seqs).await? else { unreachable!("hidden-states gives states") };
    Ok(answer(states, used))
}

/// The model's sequence-classification labels, or TEI's 424 (error type Backend).
fn classifier(s: &AppState, reranker: bool) -> Result<&[String], ApiError> {
    match &s.model.head {
        Some(h) if h.kind == HeadKind::SequenceClassification && (!reranker || h.labels.len() == 1) => Ok(&h.labels),
        _ if reranker => Err(ApiError::new(ErrorType::Backend, "model is not a re-ranker model (a sequence classifier with one label)")),
        _ => Err(ApiError::new(ErrorType::Backend, "Model is not a classifier model")),
    }
}

/// `raw_scores`: the logits; otherwise the pipeline's function for the model (softmax,
/// or sigmoid for one label or multi-label, none for regression).
fn classify_task(raw_scores: bool) -> Task {
    Task::Classify { function: raw_scores.then_some(ClassifyFunction::None) }
}

pub async fn predict(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: PredictRequest = parse_body(body)?;
    classifier(&s, false)?;
    let (inputs, batch) = match req.inputs {
        PredictInput::Single(t) => (vec![vec![t]], false),
        PredictInput::Pair(p) => (vec![p], false),
        PredictInput::Batch(b) => (b, true),
    };
    let _permit = s.admit(inputs.len())?;
    let seqs = inputs
        .iter()
        .map(|i| match i.as_slice() {
            [t] => s.encode_text(t, None, req.truncation),
            [t, p] => s.encode_text(t, Some(p), req.truncation),
            _ => Err(ApiError::validation("each input is a text or a pair of texts [text, text_pair]")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let used = usage(&seqs);
    let Output::Labels(labels) = s.run(classify_task(req.raw_scores), seqs).await? else { unreachable!("classify gives labels") };
    Ok(if batch { answer(labels, used) } else { answer(&labels[0], used) })
}

pub async fn rerank(State(s): State<AppState>, body: Body) -> Result<Response, ApiError> {
    let req: RerankRequest = parse_body(body)?;
    if req.texts.is_empty() {
        return Err(ApiError::empty("`texts` cannot be empty"));
    }
    classifier(&s, true)?;
    let _permit = s.admit(req.texts.len())?;
    let seqs = req.texts.iter().map(|t| s.encode_text(&req.query, Some(t), req.truncation)).collect::<Result<Vec<_>, _>>()?;
    let used = usage(&seqs);
    let Output::Labels(labels) = s.run(classify_task(req.raw_scores), seqs).await? else { unreachable!("classify gives labels") };
    let mut ranks: Vec<Rank> = labels
        .iter()
        .enumerate()
        .map(|(index, l)| Rank { index, text: req.return_text.then(|| req.texts[index].clone()), score: l[0].score })
        .collect();
    // Best first; equal scores keep input order.
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(answer(ranks, used))
}

/// `POST /` and `/invocations`: the model's main task, as TEI routes them.
pub async fn main_task(state: State<AppState>, body: Body) -> Result<Response, ApiError> {
    match &state.model.head {
        Some(h) if h.kind == HeadKind::SequenceClassification && h.labels.len() == 1 => rerank(state, body).await,
        Some(h) if h.kind == HeadKind::SequenceClassification => predict(state, body).await,
        _ => embed(state, body).await,
    }
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
