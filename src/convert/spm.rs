//! Builds a Hugging Face tokenizer.json from a SentencePiece `sentencepiece.bpe.model`, for
//! XLM-R checkpoints that ship no tokenizer.json.
//!
//! The output is what transformers 5 (`XLMRobertaTokenizer.from_pretrained` on a folder holding
//! only the spm model) builds and saves:
//! - vocabulary with the fairseq offset: `<s> <pad> </s> <unk>` at ids 0-3, spm piece k (k >= 3)
//!   at id k+1 with its score, `<mask>` last; Unigram model with unk_id 3, no byte fallback;
//! - normalizer: the spm precompiled charsmap alone (none when the model has no charsmap);
//! - pre-tokenizer: WhitespaceSplit then Metaspace("▁", prepend_scheme "always");
//!   decoder: the same Metaspace;
//! - post-processor: `<s> $A </s>` and `<s> $A </s> </s> $B </s>`;
//! - added tokens: the five specials (normalized false, special true, no strip flags), plus every
//!   CONTROL (special) or USER_DEFINED (not special) piece past the first three.
//!
//! transformers ignores the spm normalizer flags (add_dummy_prefix, remove_extra_whitespaces,
//! escape_whitespaces) and trainer byte_fallback here, so we parse but do not use them either.
//!
//! The SentencePiece `ModelProto` is read with a small hand-written protobuf reader: every
//! length is checked against the bytes that remain, so a corrupt file gives an error, not a panic.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// `SentencePiece.Type` from sentencepiece_model.proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(value: u64) -> Option<Self> {
        Some(match value {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// The `TrainerSpec` fields that matter for tokenization (defaults as in the .proto).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerSpec {
    pub unk_id: i32,
    pub bos_id: i32,
    pub eos_id: i32,
    pub pad_id: i32,
    pub byte_fallback: bool,
}

impl Default for TrainerSpec {
    fn default() -> Self {
        TrainerSpec { unk_id: 0, bos_id: 1, eos_id: 2, pad_id: -1, byte_fallback: false }
    }
}

/// `NormalizerSpec` (defaults as in the .proto).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// A parsed SentencePiece `ModelProto` (only the parts a tokenizer needs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpmModel {
    pub pieces: Vec<Piece>,
    pub trainer_spec: TrainerSpec,
    pub normalizer_spec: NormalizerSpec,
}

impl SpmModel {
    pub fn read(path: &Path) -> Result<SpmModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        SpmModel::parse(&bytes).map_err(|msg| Error::format(path, format!("bad sentencepiece model: {msg}")))
    }

    /// Parses the protobuf bytes; the error is a one-line description without the file name.
    pub fn parse(bytes: &[u8]) -> Result<SpmModel, String> {
        let mut model = SpmModel::default();
        let (mut has_trainer_spec, mut has_normalizer_spec) = (false, false);
        let mut reader = ProtoReader::new(bytes);
        while let Some((field, value)) = reader.next_field()? {
            match field {
                1 => model.pieces.push(parse_piece(value.bytes("pieces")?, model.pieces.len())?),
                2 => {
                    parse_trainer_spec(value.bytes("trainer_spec")?, &mut model.trainer_spec)?;
                    has_trainer_spec = true;
                }
                3 => {
                    parse_normalizer_spec(value.bytes("normalizer_spec")?, &mut model.normalizer_spec)?;
                    has_normalizer_spec = true;
                }
                _ => {} // self_test_data, denormalizer_spec, future fields
            }
        }
        // sentencepiece always writes both after the pieces; a file cut at a field boundary
        // would otherwise parse as a model without its normalizer.
        if !has_trainer_spec || !has_normalizer_spec {
            let missing = if has_trainer_spec { "normalizer_spec" } else { "trainer_spec" };
            return Err(format!("no {missing} after {} pieces (truncated file?)", model.pieces.len()));
        }
        Ok(model)
    }
}

fn parse_piece(bytes: &[u8], index: usize) -> Result<Piece, String> {
    let context = |msg: String| format!("piece {index}: {msg}");
    let mut piece = Piece { piece: String::new(), score: 0.0, kind: PieceType::Normal };
    let mut reader = ProtoReader::new(bytes);
    while let Some((field, value)) = reader.next_field().map_err(context)? {
        match field {
            1 => piece.piece = value.string("piece").map_err(context)?,
            2 => piece.score = value.float("score").map_err(context)?,
            3 => {
                let raw = value.varint("type").map_err(context)?;
                piece.kind = PieceType::from_proto(raw).ok_or_else(|| context(format!("unknown piece type {raw}")))?;
            }
            _ => {}
        }
    }
    if !piece.score.is_finite() {
        return Err(context(format!("score {} is not finite", piece.score)));
    }
    Ok(piece)
}

fn parse_trainer_spec(bytes: &[u8], spec: &mut TrainerSpec) -> Result<(), String> {
    let context = |msg: String| format!("trainer_spec: {msg}");
    let mut reader = ProtoReader::new(bytes);
    while let Some((field, value)) = reader.next_field().map_err(context)? {
        match field {
            35 => spec.byte_fallback = value.varint("byte_fallback").map_err(context)? != 0,
            40 => spec.unk_id = value.int32("unk_id").map_err(context)?,
            41 => spec.bos_id = value.int32("bos_id").map_err(context)?,
            42 => spec.eos_id = value.int32("eos_id").map_err(context)?,
            43 => spec.pad_id = value.int32("pad_id").map_err(context)?,
            _ => {}
        }
    }
    Ok(())
}

fn parse_normalizer_spec(bytes: &[u8], spec: &mut NormalizerSpec) -> Result<(), String> {
    let context = |msg: String| format!("normalizer_spec: {msg}");
    let mut reader = ProtoReader::new(bytes);
    while let Some((field, value)) = reader.next_field().map_err(context)? {
        match field {
            1 => spec.name = value.string("name").map_err(context)?,
            2 => spec.precompiled_charsmap = value.bytes("precompiled_charsmap").map_err(context)?.to_vec(),
            3 => spec.add_dummy_prefix = value.varint("add_dummy_prefix").map_err(context)? != 0,
            4 => spec.remove_extra_whitespaces = value.varint("remove_extra_whitespaces").map_err(context)? != 0,
            5 => spec.escape_whitespaces = value.varint("escape_whitespaces").map_err(context)? != 0,
            _ => {}
        }
    }
    Ok(())
}

/// One protobuf field value, by wire type.
enum WireValue<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> WireValue<'a> {
    fn wire_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64 => "fixed64",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "fixed32",
        }
    }

    fn wrong(&self, field: &str, expected: &str) -> String {
        format!("field `{field}` is {}, expected {expected}", self.wire_name())
    }

    fn varint(&self, field: &str) -> Result<u64, String> {
        match *self {
            WireValue::Varint(v) => Ok(v),
            _ => Err(self.wrong(field, "varint")),
        }
    }

    /// Negative int32 values are sign-extended to 64 bits on the wire.
    fn int32(&self, field: &str) -> Result<i32, String> {
        let raw = self.varint(field)? as i64;
        i32::try_from(raw).map_err(|_| format!("field `{field}` value {raw} does not fit int32"))
    }

    fn float(&self, field: &str) -> Result<f32, String> {
        match *self {
            WireValue::Fixed32(bits) => Ok(f32::from_bits(bits)),
            _ => Err(self.wrong(field, "fixed32")),
        }
    }

    fn bytes(&self, field: &str) -> Result<&'a [u8], String> {
        match *self {
            WireValue::Bytes(b) => Ok(b),
            _ => Err(self.wrong(field, "length-delimited")),
        }
    }

    fn string(&self, field: &str) -> Result<String, String> {
        let bytes = self.bytes(field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("field `{field}` is not valid UTF-8"))
    }
}

/// Reads (field number, value) pairs from one protobuf message, bounds-checked.
struct ProtoReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ProtoReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        ProtoReader { buf, pos: 0 }
    }

    fn read_varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(format!("truncated varint at byte {start}"));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {start}"))
    }

    fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8], String> {
        let remaining = self.buf.len() - self.pos;
        let len = usize::try_from(len).ok().filter(|&n| n <= remaining).ok_or_else(|| {
            format!("truncated: {what} at byte {} needs {len} bytes but only {remaining} remain", self.pos)
        })?;
        let slice = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    fn next_field(&mut self) -> Result<Option<(u64, WireValue<'a>)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key_pos = self.pos;
        let key = self.read_varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(format!("invalid field number 0 at byte {key_pos}"));
        }
        let what = format!("field {field}");
        let value = match key & 7 {
            0 => WireValue::Varint(self.read_varint()?),
            1 => {
                self.take(8, &what)?;
                WireValue::Fixed64
            }
            2 => {
                let len = self.read_varint()?;
                WireValue::Bytes(self.take(len, &what)?)
            }
            5 => {
                let b = self.take(4, &what)?;
                WireValue::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            wire => return Err(format!("unsupported wire type {wire} for field {field} at byte {key_pos}")),
        };
        Ok(Some((field, value)))
    }
}

const BOS: &str = "<s>";
const PAD: &str = "<pad>";
const EOS: &str = "</s>";
const UNK: &str = "<unk>";
const MASK: &str = "<mask>";
/// The fairseq dictionary puts `<s> <pad> </s> <unk>` first; spm has `<unk> <s> </s>`.
const FAIRSEQ_OFFSET: usize = 1;

/// Returns the tokenizer.json text that encodes as transformers' XLMRobertaTokenizerFast.
pub fn tokenizer_json_from_spm(path: &Path) -> Result<String> {
    let model = SpmModel::read(path)?;
    let json = tokenizer_json_value(&model).map_err(|msg| Error::format(path, msg))?.to_string();
    // Loading it here turns a charsmap the tokenizers crate rejects into a conversion error.
    crate::tokenizer::parse_json(&json)
        .map_err(|e| Error::format(path, format!("built tokenizer.json does not load: {e}")))?;
    Ok(json)
}

/// The tokenizer.json document for an XLM-R spm model; the error is a one-line description.
pub fn tokenizer_json_value(model: &SpmModel) -> Result<Value, String> {
    check_xlmr_layout(model)?;

    let mut vocab: Vec<Value> = [BOS, PAD, EOS, UNK].iter().map(|t| json!([t, 0.0])).collect();
    vocab.extend(model.pieces[3..].iter().map(|p| json!([p.piece, f64::from(p.score)])));
    let mask_id = vocab.len();
    vocab.push(json!([MASK, 0.0]));

    let mut added_tokens: Vec<Value> =
        [BOS, PAD, EOS, UNK].iter().enumerate().map(|(id, t)| added_token(id, t, true)).collect();
    for (index, piece) in model.pieces.iter().enumerate().skip(3) {
        if matches!(piece.kind, PieceType::Control | PieceType::UserDefined) {
            added_tokens.push(added_token(index + FAIRSEQ_OFFSET, &piece.piece, piece.kind == PieceType::Control));
        }
    }
    added_tokens.push(added_token(mask_id, MASK, true));

    let charsmap = &model.normalizer_spec.precompiled_charsmap;
    let normalizer = if charsmap.is_empty() {
        Value::Null
    } else {
        json!({"type": "Precompiled", "precompiled_charsmap": base64_encode(charsmap)})
    };
    let metaspace = json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true});
    let special = |id: &str| json!({"SpecialToken": {"id": id, "type_id": 0}});
    let sequence = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});

    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(BOS), sequence("A"), special(EOS)],
            "pair": [special(BOS), sequence("A"), special(EOS), special(EOS), sequence("B"), special(EOS)],
            "special_tokens": {
                BOS: {"id": BOS, "ids": [0], "tokens": [BOS]},
                EOS: {"id": EOS, "ids": [2], "tokens": [EOS]},
            },
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": false},
    }))
}

/// The fairseq offset is only right for the XLM-R layout `<unk> <s> </s>` at pieces 0-2; any
/// other model would silently shift every id against the embedding matrix.
fn check_xlmr_layout(model: &SpmModel) -> Result<(), String> {
    let expected = [(UNK, PieceType::Unknown), (BOS, PieceType::Control), (EOS, PieceType::Control)];
    if model.pieces.len() < expected.len() {
        return Err(format!(
            "sentencepiece model has {} pieces; an XLM-R model starts with <unk>, <s>, </s>",
            model.pieces.len()
        ));
    }
    for (index, (piece, (text, kind))) in model.pieces.iter().zip(expected).enumerate() {
        if piece.piece != text || piece.kind != kind {
            return Err(format!(
                "sentencepiece piece {index} is {:?} ({:?}), expected {text:?} ({kind:?}) as in XLM-R",
                piece.piece, piece.kind
            ));
        }
    }
    // A later piece spelled like a fairseq special would give one token two ids.
    if let Some(index) =
        model.pieces.iter().skip(3).position(|p| [BOS, PAD, EOS, UNK, MASK].contains(&p.piece.as_str()))
    {
        let index = index + 3;
        return Err(format!(
            "sentencepiece piece {index} {:?} duplicates an XLM-R special token",
            model.pieces[index].piece
        ));
    }
    Ok(())
}

fn added_token(id: usize, content: &str, special: bool) -> Value {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": false,
        "special": special,
    })
}

/// Standard base64 with padding (tokenizers reads the charsmap this way).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64_encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn varint_reads_negative_int32() {
        // field 43 (pad_id), varint -1: ten bytes of sign extension.
        let mut bytes = vec![0xd8, 0x02];
        bytes.extend([0xff; 9]);
        bytes.push(0x01);
        let mut spec = TrainerSpec { pad_id: 7, ..TrainerSpec::default() };
        parse_trainer_spec(&bytes, &mut spec).unwrap();
        assert_eq!(spec.pad_id, -1);
    }

    #[test]
    fn overlong_length_is_an_error() {
        // field 1, length-delimited, claims 100 bytes but has 2.
        let err = SpmModel::parse(&[0x0a, 100, 1, 2]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn model_without_specs_is_an_error() {
        // One piece "a" and nothing else.
        let err = SpmModel::parse(&[0x0a, 3, 0x0a, 1, b'a']).unwrap_err();
        assert!(err.contains("no trainer_spec after 1 pieces"), "{err}");
    }
}
