//! xlmr: a quantized CPU runtime for XLM-RoBERTa-XL encoders.
//!
//! - [`gguf`]: reading and writing GGUF files.
//! - [`quant`]: block types and reference quantizers (bit-compatible with ggml).
//! - [`convert`]: Hugging Face checkpoint (config, .bin, safetensors, tokenizer) to GGUF.

pub mod convert;
pub mod error;
pub mod ffi;
pub mod gguf;
pub mod heads;
pub mod kernels;
pub mod quant;

pub use error::{Error, Result};
pub mod model;
pub mod tasks;
pub mod tokenizer;

pub use model::{Model, Pooling, Prediction};
pub use tasks::{
    Aggregation, Answer, Choices, ClassifyFunction, ClassifyOptions, Entity, LabelScore, MultipleChoiceResult, QaInput, QaOptions, TextInput, TokenClassifyOptions, TopK,
};
