//! Hugging Face XLM-RoBERTa-XL checkpoint to GGUF.

pub mod pickle;
pub mod safetensors;
pub mod source;
pub mod spm;
