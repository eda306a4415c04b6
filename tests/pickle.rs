//! `pytorch_model.bin` reading through the public API. Fixtures come from
//! tools/make_pickle_cases.py: good ones written by torch.save with the expected values
//! next to them as JSON, bad ones built by hand.

use std::path::{Path, PathBuf};
use xlmr::convert::pickle::TorchBin;
use xlmr::convert::source::{DType, WeightSource};
use xlmr::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle").join(name)
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
    }
}

/// Checks every float tensor of `<case>.json` against the checkpoint, element by element,
/// and returns the checkpoint.
fn check_against_expected(bin: &str, case: &str) -> TorchBin {
    let source = TorchBin::open(&fixture(bin)).unwrap();
    let text = std::fs::read_to_string(fixture(&format!("{case}.json"))).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = expected["tensors"].as_object().unwrap();
    assert!(!expected.is_empty());
    for (name, want) in expected {
        let t = source.get(name).unwrap().unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(dtype_name(t.dtype), want["dtype"].as_str().unwrap(), "{name}");
        let shape: Vec<usize> = want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.bytes.len(), t.n_elements() * t.dtype.size(), "{name}");
        let values: Vec<f32> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(values.len(), t.n_elements(), "{name}");
        let mut got = vec![f32::NAN; values.len()];
        t.read_f32(0, &mut got);
        assert_eq!(got, values, "{name}");
        assert_eq!(t.file, fixture(bin).as_path());
    }
    source
}

#[test]
fn reads_a_state_dict_with_every_float_dtype() {
    let source = check_against_expected("state_dict.bin", "state_dict");
    // The int64 `position_ids` buffer is dropped (not a weight), like the safetensors reader does.
    let names = source.names();
    assert!(!names.iter().any(|n| n.ends_with("position_ids")), "{names:?}");
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(source.get("no.such.tensor").unwrap().is_none());
    // Non-float tensors other than position_ids are listed but refused at use.
    let e = source.get("bn.num_batches_tracked").err().unwrap().to_string();
    assert!(e.contains("bn.num_batches_tracked") && e.contains("LongStorage"), "{e}");
    assert!(source.describe().ends_with("state_dict.bin"));
}

#[test]
fn reads_tied_weights_and_views_with_storage_offsets() {
    let source = check_against_expected("pytorch_model.bin", "pytorch_model");
    // Tied weights are the very same bytes of the map, not copies.
    let word = source.get("roberta.embeddings.word_embeddings.weight").unwrap().unwrap();
    let decoder = source.get("lm_head.decoder.weight").unwrap().unwrap();
    assert_eq!(word.bytes.as_ptr(), decoder.bytes.as_ptr());
    let row = source.get("row_view").unwrap().unwrap();
    assert_eq!(row.bytes.as_ptr(), word.bytes[2 * 4 * 4..].as_ptr());
    let block = source.get("block_view").unwrap().unwrap();
    assert_eq!(block.bytes, &word.bytes[3 * 4 * 4..5 * 4 * 4]);
    // Releasing pages is only a hint: the data reads the same afterwards.
    let before = word.bytes.to_vec();
    source.release(word.bytes);
    assert_eq!(word.bytes, before.as_slice());
}

#[test]
fn accepts_any_top_folder_name() {
    let source = TorchBin::open(&fixture("custom_top.bin")).unwrap();
    let t = source.get("w").unwrap().unwrap();
    assert_eq!(t.shape, vec![2, 3]);
    let mut got = [0f32; 6];
    t.read_f32(0, &mut got);
    assert_eq!(got, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
}

#[test]
fn open_weights_picks_up_pytorch_model_bin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("pytorch_model.bin"), dir.path().join("pytorch_model.bin")).unwrap();
    let source = xlmr::convert::source::open_weights(dir.path()).unwrap();
    assert_eq!(source.names().len(), 6);
}

/// Opens a bad fixture and returns its one-line message, which must name the file.
fn open_error(name: &str) -> Error {
    let e = TorchBin::open(&fixture(name)).err().unwrap_or_else(|| panic!("{name} opened"));
    let msg = e.to_string();
    assert!(msg.contains(name), "message does not name the file: {msg}");
    assert!(!msg.contains('\n'), "message is not one line: {msg}");
    e
}

fn format_error(name: &str) -> String {
    match open_error(name) {
        Error::Format { msg, .. } => msg,
        other => panic!("{name}: expected a format error, got {other:?}"),
    }
}

#[test]
fn refuses_non_contiguous_tensors_by_name() {
    let source = TorchBin::open(&fixture("non_contiguous.bin")).unwrap();
    assert!(source.get("ok").unwrap().is_some());
    let e = source.get("transposed").err().unwrap().to_string();
    assert!(e.contains("`transposed` is not contiguous") && e.contains("non_contiguous.bin"), "{e}");
}

#[test]
fn refuses_forbidden_global_first() {
    for name in ["forbidden_global.bin", "forbidden_global_nested.bin"] {
        match open_error(name) {
            Error::ForbiddenGlobal { global, .. } => assert!(global.ends_with(".system"), "{global}"),
            other => panic!("{name}: expected ForbiddenGlobal, got {other:?}"),
        }
    }
}

#[test]
fn refuses_legacy_format() {
    let msg = format_error("legacy.bin");
    assert!(msg.contains("legacy") && msg.contains("safetensors"), "{msg}");
}

#[test]
fn refuses_non_zip_file() {
    let msg = format_error("not_a_checkpoint.bin");
    assert!(msg.contains("not a zip archive"), "{msg}");
}

#[test]
fn refuses_truncated_zip() {
    let msg = format_error("truncated.bin");
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn refuses_missing_data_pkl() {
    let msg = format_error("missing_data_pkl.bin");
    assert!(msg.contains("data.pkl"), "{msg}");
}

#[test]
fn refuses_unknown_opcode() {
    let msg = format_error("unknown_opcode.bin");
    assert!(msg.contains("unsupported pickle opcode 0x64"), "{msg}");
}

#[test]
fn refuses_truncated_pickle() {
    let msg = format_error("truncated_pickle.bin");
    assert!(msg.contains("data.pkl") && msg.contains("truncated"), "{msg}");
}

#[test]
fn refuses_missing_storage_entry() {
    let msg = format_error("missing_storage.bin");
    assert!(msg.contains("storage `0`") && msg.contains("missing"), "{msg}");
}

#[test]
fn refuses_compressed_storage_entry() {
    let msg = format_error("compressed_storage.bin");
    assert!(msg.contains("archive/data/0") && msg.contains("compressed"), "{msg}");
}

#[test]
fn refuses_tensor_outside_its_storage() {
    let msg = format_error("out_of_bounds.bin");
    assert!(msg.contains("tensor `w`") && msg.contains("outside its storage"), "{msg}");
}

#[test]
fn refuses_storage_larger_than_its_entry() {
    let msg = format_error("storage_too_small.bin");
    assert!(msg.contains("storage `0`") && msg.contains("only 16 bytes"), "{msg}");
}

#[test]
fn refuses_missing_file() {
    let e = TorchBin::open(&fixture("does_not_exist.bin")).err().unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
}
