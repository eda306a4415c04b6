//! Builds a Hugging Face tokenizer.json from a SentencePiece `sentencepiece.bpe.model`. (Being written.)

use crate::error::{Error, Result};
use std::path::Path;

/// Returns the tokenizer.json text that encodes as transformers' XLMRobertaTokenizerFast.
pub fn tokenizer_json_from_spm(path: &Path) -> Result<String> {
    Err(Error::format(path, "building a tokenizer from sentencepiece.bpe.model is not implemented yet"))
}
