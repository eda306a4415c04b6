//! The model's tokenizer, built from the tokenizer.json embedded in the GGUF file.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

thread_local! {
    /// Set while `contained` runs: panics are then caught and not printed.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Runs a call into the tokenizers crate, turning a panic into an error message. Its
/// deserializers panic on some malformed tokenizer.json documents (0.22: `expect("Helper")`,
/// `expect("Precompiled")`; found by fuzz/): a file must give an error, not a crash. The
/// panic message is not printed (the error carries it); panics elsewhere print as usual.
pub fn contained<T>(call: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let was = CONTAINING.with(|c| c.replace(true));
    // AssertUnwindSafe: after a panic the value the call worked on is dropped unused.
    let result = panic::catch_unwind(AssertUnwindSafe(call));
    CONTAINING.with(|c| c.set(was));
    result.map_err(|payload| {
        let text = payload.downcast_ref::<&str>().copied().or_else(|| payload.downcast_ref::<String>().map(String::as_str));
        format!("the tokenizers crate failed on it ({})", text.unwrap_or("panic"))
    })
}

/// `t`'s encoding of `input` with special tokens and character offsets; a panic inside the
/// tokenizer or its own error is [`Error::Tokenizer`].
fn encode_with(t: &tokenizers::Tokenizer, input: tokenizers::EncodeInput<'_>) -> Result<tokenizers::Encoding> {
    contained(|| t.encode_char_offsets(input, true)).map_err(Error::Tokenizer)?.map_err(|e| Error::Tokenizer(e.to_string()))
}

/// Parses a tokenizer.json document with the tokenizers crate; the error is one line.
pub fn parse_json(json: &str) -> std::result::Result<tokenizers::Tokenizer, String> {
    check_precompiled_charsmaps(json)?;
    contained(|| json.parse::<tokenizers::Tokenizer>().map_err(|e| e.to_string()))?
}

/// Refuses a `Precompiled` normalizer whose sentencepiece charsmap claims a trie longer
/// than the charsmap itself. The tokenizers crate (spm_precompiled 0.1) reserves memory
/// for the claimed length before reading it: 4 bytes of a file could ask for 8 GiB, which
/// aborts a process under a memory limit (found by fuzz/).
fn check_precompiled_charsmaps(json: &str) -> std::result::Result<(), String> {
    use base64::Engine;
    use serde_json::Value;
    #[derive(serde::Deserialize)]
    struct Document {
        // Every other field is skipped without being built.
        #[serde(default)]
        normalizer: Option<Value>,
    }
    fn visit(v: &Value) -> std::result::Result<(), String> {
        match v {
            Value::Object(fields) => {
                if let (Some("Precompiled"), Some(Value::String(b64))) = (fields.get("type").and_then(Value::as_str), fields.get("precompiled_charsmap")) {
                    // What does not decode is left to the tokenizers crate, which refuses it.
                    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                        if let Some((head, rest)) = bytes.split_first_chunk::<4>() {
                            let trie = u32::from_le_bytes(*head) as usize;
                            if trie > rest.len() {
                                return Err(format!("its sentencepiece precompiled_charsmap is malformed: the trie claims {trie} bytes but only {} follow", rest.len()));
                            }
                        }
                    }
                }
                fields.values().try_for_each(visit)
            }
            Value::Array(items) => items.iter().try_for_each(visit),
            _ => Ok(()),
        }
    }
    let doc: Document = serde_json::from_str(json).map_err(|e| e.to_string())?;
    doc.normalizer.as_ref().map_or(Ok(()), visit)
}

/// Drops the `truncation` and `padding` settings a tokenizer.json may carry (training
/// scripts save them): xlmr truncates only when asked and pads batches itself, and either
/// setting would silently change every output.
pub fn clear_length_settings(t: &mut tokenizers::Tokenizer) {
    t.with_padding(None);
    // Disabling truncation cannot fail (only invalid parameters are refused).
    let _ = t.with_truncation(None);
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Longest input in tokens, special tokens included.
    max_tokens: usize,
}

impl Tokenizer {
    pub fn from_json(json: &str, max_tokens: usize) -> Result<Self> {
        let mut inner = parse_json(json).map_err(|e| Error::Tokenizer(format!("embedded tokenizer.json is invalid: {e}")))?;
        clear_length_settings(&mut inner);
        Ok(Tokenizer { inner, max_tokens })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of `text` with `<s>` and `</s>`. Too long: an error naming the length,
    /// unless `truncate`, which keeps the first tokens and the closing `</s>`.
    pub fn encode(&self, text: &str, truncate: bool) -> Result<Vec<u32>> {
        Ok(self.encoding(text, None, truncate)?.get_ids().to_vec())
    }

    /// A copy of the tokenizer that truncates as `strategy` says.
    fn truncating(&self, max_length: usize, strategy: TruncationStrategy, stride: usize) -> Result<tokenizers::Tokenizer> {
        let mut t = self.inner.clone();
        t.with_truncation(Some(TruncationParams { max_length, strategy, stride, direction: TruncationDirection::Right }))
            .map_err(|e| Error::Input(format!("max length {max_length} / stride {stride}: {e}")))?;
        Ok(t)
    }

    /// The whole encoding of a text or a text pair (`<s> A </s></s> B </s>`), with character
    /// offsets as transformers reports them. Too long: an error, unless `truncate`, which
    /// cuts the longer side first, as transformers' `truncation=True`.
    pub fn encoding(&self, text: &str, pair: Option<&str>, truncate: bool) -> Result<tokenizers::Encoding> {
        let input = match pair {
            Some(p) => tokenizers::EncodeInput::Dual(text.into(), p.into()),
            None => tokenizers::EncodeInput::Single(text.into()),
        };
        let enc = if truncate {
            encode_with(&self.truncating(self.max_tokens, TruncationStrategy::LongestFirst, 0)?, input)?
        } else {
            encode_with(&self.inner, input)?
        };
        if enc.len() > self.max_tokens {
            return Err(Error::Input(format!(
                "input has {} tokens, more than the model's {} (turn on truncation to cut it: --truncate, truncate=True in Python, truncate in the C API)",
                enc.len(),
                self.max_tokens
            )));
        }
        Ok(enc)
    }

    /// Ids and character offsets of each text with `<s>` and `</s>`, cut to at most `max_len`
    /// tokens as transformers' `truncation=True, max_length=max_len` cuts one text.
    pub fn encode_truncated(&self, texts: &[&str], max_len: usize) -> Result<Vec<(Vec<u32>, Vec<(usize, usize)>)>> {
        let t = self.truncating(max_len, TruncationStrategy::LongestFirst, 0)?;
        texts
            .iter()
            .map(|&text| {
                let enc = encode_with(&t, tokenizers::EncodeInput::Single(text.into()))?;
                Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
            })
            .collect()
    }

    /// `question` + `context` pairs of at most `max_len` tokens: the context is cut into
    /// windows that overlap by `stride` tokens, as transformers' question-answering pipeline
    /// does (`truncation="only_second"`, `return_overflowing_tokens=True`).
    pub fn question_windows(&self, question: &str, context: &str, max_len: usize, stride: usize) -> Result<Vec<tokenizers::Encoding>> {
        let t = self.truncating(max_len, TruncationStrategy::OnlySecond, stride)?;
        let mut enc = contained(|| t.encode_char_offsets(tokenizers::EncodeInput::Dual(question.into(), context.into()), true))
            .map_err(Error::Tokenizer)?
            .map_err(|e| Error::Input(format!("the question does not leave room for the context in {max_len} tokens ({e})")))?;
        let overflowing = enc.take_overflowing();
        Ok(std::iter::once(enc).chain(overflowing).collect())
    }

    /// The vocabulary entry of `id` (`▁` kept), as transformers' `convert_ids_to_tokens`.
    pub fn id_to_token(&self, id: u32) -> String {
        self.inner.id_to_token(id).unwrap_or_default()
    }

    /// Vocabulary entries joined back into text by the tokenizer's decoder, as transformers'
    /// `convert_tokens_to_string`.
    pub fn tokens_to_string(&self, tokens: Vec<String>) -> Result<String> {
        use tokenizers::Decoder;
        match self.inner.get_decoder() {
            Some(d) => contained(|| d.decode(tokens)).map_err(Error::Tokenizer)?.map_err(|e| Error::Tokenizer(e.to_string())),
            None => Ok(tokens.join(" ")),
        }
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        contained(|| self.inner.decode(ids, skip_special_tokens))
            .map_err(Error::Tokenizer)?
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The token's text as a user reads it (`▁` shown as a space), "" for ids past the
    /// tokenizer's vocabulary (the model's vocabulary is padded beyond it).
    pub fn token_str(&self, id: u32) -> String {
        self.decode(&[id], false).unwrap_or_default()
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The full encoding of a text or a text pair (ids, token strings, byte offsets as TEI
    /// reports them, special-token mask), never truncated and without a length check.
    pub fn encode_full(&self, text: &str, pair: Option<&str>, add_special_tokens: bool) -> Result<tokenizers::Encoding> {
        let input = match pair {
            Some(p) => tokenizers::EncodeInput::Dual(text.into(), p.into()),
            None => tokenizers::EncodeInput::Single(text.into()),
        };
        self.inner.encode(input, add_special_tokens).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Cuts a sequence that starts with `<s>` and ends with `</s>` to at most `max_tokens`
    /// (>= 2) by dropping tokens at the end, or at the start when `from_left`, keeping both
    /// special tokens: what transformers' truncation of one text gives.
    pub fn cut(ids: &mut Vec<u32>, max_tokens: usize, from_left: bool) {
        let keep = max_tokens.max(2);
        if ids.len() > keep {
            if from_left {
                ids.drain(1..ids.len() - (keep - 1));
            } else {
                let last = ids[ids.len() - 1];
                ids.truncate(keep - 1);
                ids.push(last);
            }
        }
    }
}
