//! tokenizer.json built from a bare `sentencepiece.bpe.model` must encode exactly as
//! transformers' XLMRobertaTokenizer does. Fixtures come from tools/make_spm_cases.py: a small
//! unigram model trained on gettext catalogs, the ids transformers produces for ~70 inputs,
//! and the tokenizer.json transformers saves for that model.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use xlmr::convert::spm::{tokenizer_json_from_spm, PieceType, SpmModel};
use xlmr::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer_spm").join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids_of(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|id| id.as_u64().unwrap() as u32).collect()
}

fn built_tokenizer() -> tokenizers::Tokenizer {
    let json = tokenizer_json_from_spm(&fixture("sentencepiece.bpe.model")).unwrap();
    tokenizers::Tokenizer::from_str(&json).unwrap()
}

#[test]
fn single_texts_encode_like_transformers() {
    let tokenizer = built_tokenizer();
    let cases = read_json("cases.json");
    let singles = cases["singles"].as_array().unwrap();
    assert!(singles.len() >= 60);
    let mut mismatches = Vec::new();
    for case in singles {
        let text = case["text"].as_str().unwrap();
        let expected = ids_of(&case["ids"]);
        let got = tokenizer.encode(text, true).unwrap().get_ids().to_vec();
        if got != expected {
            mismatches.push(format!("{text:?}: got {got:?}, transformers {expected:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn text_pairs_encode_like_transformers() {
    let tokenizer = built_tokenizer();
    let cases = read_json("cases.json");
    let pairs = cases["pairs"].as_array().unwrap();
    assert!(pairs.len() >= 5);
    for case in pairs {
        let first = case["text"].as_str().unwrap().to_string();
        let second = case["text_pair"].as_str().unwrap().to_string();
        let expected = ids_of(&case["ids"]);
        let got = tokenizer.encode((first.clone(), second.clone()), true).unwrap().get_ids().to_vec();
        assert_eq!(got, expected, "pair ({first:?}, {second:?})");
    }
}

/// The whole document, flags of added tokens and scores included, equals what transformers saves.
#[test]
fn tokenizer_json_equals_the_one_transformers_saves() {
    let built: Value =
        serde_json::from_str(&tokenizer_json_from_spm(&fixture("sentencepiece.bpe.model")).unwrap()).unwrap();
    let expected = read_json("transformers_tokenizer.json");
    for key in expected.as_object().unwrap().keys() {
        assert_eq!(built[key], expected[key], "tokenizer.json key `{key}` differs from transformers'");
    }
    assert_eq!(built, expected);
}

#[test]
fn protobuf_reader_finds_what_the_reference_parser_finds() {
    let model = SpmModel::read(&fixture("sentencepiece.bpe.model")).unwrap();
    let cases = read_json("cases.json");
    let summary = &cases["spm_model"];
    assert_eq!(model.pieces.len() as u64, summary["piece_count"].as_u64().unwrap());
    for expected in summary["pieces"].as_array().unwrap() {
        let piece = &model.pieces[expected["index"].as_u64().unwrap() as usize];
        assert_eq!(piece.piece, expected["piece"].as_str().unwrap());
        assert_eq!(f64::from(piece.score), expected["score"].as_f64().unwrap());
        assert_eq!(format!("{:?}", piece.kind), expected["type"].as_str().unwrap());
    }
    let trainer = &model.trainer_spec;
    assert_eq!(i64::from(trainer.unk_id), summary["unk_id"].as_i64().unwrap());
    assert_eq!(i64::from(trainer.bos_id), summary["bos_id"].as_i64().unwrap());
    assert_eq!(i64::from(trainer.eos_id), summary["eos_id"].as_i64().unwrap());
    assert_eq!(i64::from(trainer.pad_id), summary["pad_id"].as_i64().unwrap());
    assert_eq!(trainer.byte_fallback, summary["byte_fallback"].as_bool().unwrap());
    let normalizer = &model.normalizer_spec;
    assert_eq!(normalizer.name, summary["normalizer_name"].as_str().unwrap());
    assert_eq!(normalizer.precompiled_charsmap.len() as u64, summary["precompiled_charsmap_len"].as_u64().unwrap());
    assert_eq!(normalizer.add_dummy_prefix, summary["add_dummy_prefix"].as_bool().unwrap());
    assert_eq!(normalizer.remove_extra_whitespaces, summary["remove_extra_whitespaces"].as_bool().unwrap());
    assert_eq!(normalizer.escape_whitespaces, summary["escape_whitespaces"].as_bool().unwrap());
    assert_eq!(model.pieces.iter().filter(|p| p.kind == PieceType::Unknown).count(), 1);
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A one-line Format error naming the file, whose message contains `needle`.
fn assert_format_error(result: xlmr::Result<String>, path: &Path, needle: &str) {
    let err = result.expect_err("bad model must not convert");
    assert!(matches!(err, Error::Format { .. }), "expected a Format error, got {err:?}");
    let message = err.to_string();
    assert!(message.starts_with(&path.display().to_string()), "message does not name the file: {message}");
    assert!(!message.contains('\n'), "message is not one line: {message}");
    assert!(message.contains(needle), "message lacks {needle:?}: {message}");
}

#[test]
fn truncated_model_is_a_clear_error_at_every_cut() {
    let bytes = std::fs::read(fixture("sentencepiece.bpe.model")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Cuts inside pieces, inside a piece's string, and inside the normalizer's charsmap.
    let cuts = [0, 1, 2, 7, 100, 1001, bytes.len() / 10, bytes.len() / 2, bytes.len() - 1000, bytes.len() - 1];
    for cut in cuts {
        let path = write_temp(&dir, &format!("cut_{cut}.model"), &bytes[..cut]);
        let needle = if cut == 0 { "no trainer_spec after 0 pieces" } else { "bad sentencepiece model" };
        assert_format_error(tokenizer_json_from_spm(&path), &path, needle);
    }
    let path = write_temp(&dir, "half.model", &bytes[..bytes.len() / 2]);
    assert_format_error(tokenizer_json_from_spm(&path), &path, "truncated");
}

#[test]
fn garbage_bytes_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut garbage = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        garbage.push(state as u8);
    }
    let path = write_temp(&dir, "garbage.model", &garbage);
    assert_format_error(tokenizer_json_from_spm(&path), &path, "bad sentencepiece model");

    let path = write_temp(&dir, "text.model", b"this is not a protobuf file\n");
    assert_format_error(tokenizer_json_from_spm(&path), &path, "bad sentencepiece model");
}

#[test]
fn non_xlmr_piece_layout_is_rejected() {
    // Valid protobuf: pieces "a" (NORMAL), "<unk>" (UNKNOWN), "<s>" (CONTROL), empty specs.
    let piece = |text: &str, kind: u8| {
        let mut body = vec![0x0a, text.len() as u8];
        body.extend(text.as_bytes());
        body.extend([0x15, 0, 0, 0, 0, 0x18, kind]);
        let mut field = vec![0x0a, body.len() as u8];
        field.extend(body);
        field
    };
    let mut bytes = [piece("a", 1), piece("<unk>", 2), piece("<s>", 3)].concat();
    bytes.extend([0x12, 0, 0x1a, 0]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "other.model", &bytes);
    assert_format_error(tokenizer_json_from_spm(&path), &path, "piece 0 is \"a\" (Normal), expected \"<unk>\"");
}

#[test]
fn missing_file_is_an_io_error() {
    let path = fixture("no_such_dir/sentencepiece.bpe.model");
    let err = tokenizer_json_from_spm(&path).expect_err("missing file must not convert");
    assert!(matches!(err, Error::Io { .. }), "expected an Io error, got {err:?}");
    assert!(err.to_string().contains("no_such_dir/sentencepiece.bpe.model"), "{err}");
}
