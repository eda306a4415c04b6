//! Request and response JSON. The TEI and OpenAI shapes follow text-embeddings-inference's
//! `router/src/http/types.rs` (field names, defaults, nesting); `/fill-mask` and
//! `/hidden-states` are xlmr's own.

use serde::{Deserialize, Serialize};

/// One input: a text, or token ids taken as the whole sequence (TEI and OpenAI accept both).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum InputType {
    Text(String),
    Ids(Vec<u32>),
}

/// One item or a list of them (`inputs`, `input`, `ids`). A lone `[1, 2]` is one item when
/// `T` is itself a list (token ids), as in TEI.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The items, and whether a list was sent.
    pub fn into_vec(self) -> (Vec<T>, bool) {
        match self {
            OneOrMany::One(x) => (vec![x], false),
            OneOrMany::Many(v) => (v, true),
        }
    }
}

pub type Input = OneOrMany<InputType>;
/// Texts only (`/tokenize`, `/fill-mask`, `/hidden-states`).
pub type TextInput = OneOrMany<String>;

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TruncationDirection {
    #[serde(alias = "left", alias = "Left")]
    Left,
    #[serde(alias = "right", alias = "Right")]
    #[default]
    Right,
}

/// `truncate` (absent: `--auto-truncate`) and `truncation_direction`, as TEI's requests
/// carry them.
#[derive(Deserialize, Clone, Copy, Default)]
pub struct Truncation {
    #[serde(default)]
    pub truncate: Option<bool>,
    #[serde(default)]
    pub truncation_direction: TruncationDirection,
}

#[derive(Deserialize)]
pub struct EmbedRequest {
    pub inputs: Input,
    #[serde(flatten)]
    pub truncation: Truncation,
    pub prompt_name: Option<String>,
    #[serde(default = "yes")]
    pub normalize: bool,
    pub dimensions: Option<usize>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
pub struct EmbedAllRequest {
    pub inputs: Input,
    #[serde(flatten)]
    pub truncation: Truncation,
    pub prompt_name: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Deserialize)]
pub struct OpenAiRequest {
    pub input: Input,
    pub model: Option<String>,
    #[allow(dead_code)]
    pub user: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    pub dimensions: Option<usize>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
pub struct OpenAiEmbedding {
    pub object: &'static str,
    pub embedding: OpenAiVector,
    pub index: usize,
}

#[derive(Serialize)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Serialize)]
pub struct OpenAiResponse {
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

#[derive(Deserialize)]
pub struct TokenizeRequest {
    pub inputs: TextInput,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    pub prompt_name: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

#[derive(Deserialize)]
pub struct DecodeRequest {
    pub ids: OneOrMany<Vec<u32>>,
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

/// `/predict` inputs: a text, a pair `[a, b]`, or a batch of `[a]` / `[a, b]`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum PredictInput {
    Single(String),
    Pair(Vec<String>),
    Batch(Vec<Vec<String>>),
}

#[derive(Deserialize)]
pub struct PredictRequest {
    pub inputs: PredictInput,
    #[serde(flatten)]
    pub truncation: Truncation,
    #[serde(default)]
    pub raw_scores: bool,
}

#[derive(Deserialize)]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(flatten)]
    pub truncation: Truncation,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
}

#[derive(Serialize, Debug)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// xlmr's own: transformers' fill-mask pipeline over HTTP.
#[derive(Deserialize)]
pub struct FillMaskRequest {
    pub inputs: TextInput,
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(flatten)]
    pub truncation: Truncation,
}

fn default_top_k() -> usize {
    5
}

/// xlmr's own: hidden states as transformers' `output_hidden_states`.
#[derive(Deserialize)]
pub struct HiddenStatesRequest {
    pub inputs: TextInput,
    /// 0 = embeddings ... `layers` = after the final LayerNorm; all when absent.
    pub layers: Option<Vec<usize>>,
    #[serde(flatten)]
    pub truncation: Truncation,
}

/// `GET /info`: TEI's fields, plus the model's shape.
#[derive(Serialize, Clone)]
pub struct Info {
    pub model_id: String,
    pub model_sha: Option<String>,
    pub model_dtype: String,
    pub served_model_name: String,
    pub model_type: serde_json::Value,
    pub max_concurrent_requests: usize,
    pub max_input_length: usize,
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
    pub max_client_batch_size: usize,
    pub auto_truncate: bool,
    pub tokenization_workers: usize,
    pub version: &'static str,
    pub sha: Option<&'static str>,
    pub docker_label: Option<&'static str>,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub has_mlm_head: bool,
}
