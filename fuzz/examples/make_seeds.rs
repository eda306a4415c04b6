//! Writes the committed seed corpora under fuzz/seeds/<target>/: small valid inputs of each
//! format (a micro GGUF model, a hand-built safetensors and sentencepiece model, torch.save
//! checkpoints copied from tests/fixtures/pickle) so that mutations start from structure.
//!
//! Run from the repository root: cargo +nightly run --manifest-path fuzz/Cargo.toml --example make_seeds

use std::path::{Path, PathBuf};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A protobuf field with a length-delimited payload (field numbers < 16 only).
fn field(number: u8, payload: &[u8]) -> Vec<u8> {
    assert!(number < 16 && payload.len() < 128);
    let mut out = vec![number << 3 | 2, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// `ModelProto` with the XLM-R piece layout and no charsmap.
fn micro_spm() -> Vec<u8> {
    let mut out = Vec::new();
    for (text, score, kind) in [("<unk>", 0.0f32, 2u8), ("<s>", 0.0, 3), ("</s>", 0.0, 3), ("\u{2581}", -1.0, 1), ("a", -2.0, 1), ("\u{2581}ab", -3.0, 1), ("<u>", 0.0, 4)] {
        let mut piece = field(1, text.as_bytes());
        piece.push(2 << 3 | 5);
        piece.extend_from_slice(&score.to_le_bytes());
        piece.extend_from_slice(&[3 << 3, kind]);
        out.extend(field(1, &piece));
    }
    out.extend(field(2, &[]));
    out.extend(field(3, &field(1, b"nmt_nfkc")));
    out
}

/// A safetensors file with one tensor of each float dtype.
fn micro_safetensors() -> Vec<u8> {
    let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]},"c":{"dtype":"BF16","shape":[1,1],"data_offsets":[22,24]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for v in [1.0f32, -2.0, 0.5, 3.0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&[0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x80, 0x3f]);
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let gguf = xlmr_fuzz::micro_gguf();
    write("gguf_model", "micro", &gguf);
    // The micro model must load and run, or the seeds start nowhere.
    let path = xlmr_fuzz::scratch_file("micro.gguf", &gguf);
    let model = xlmr::Model::load(&path).expect("micro model loads");
    let preds = model.fill_mask(&["a <mask> b"], 2, false).expect("micro model runs");
    println!("micro model: {} tokens for `a <mask> b`, top {:?}", model.tokenize_all(&["a <mask> b"], false).unwrap()[0].len(), preds[0][0][0]);
    let mut load = vec![0u8];
    load.extend_from_slice(&gguf);
    write("c_api", "load_micro", &load);
    write("c_api", "texts", b"\x01a <mask> b\0c a\0\0<mask>");
    write("c_api", "texts_long", b"\x07a b c a b c a b c a b c <mask>\0\xc3\xa9 \xf0\x9f\x99\x82");
    write("safetensors", "micro.safetensors", &micro_safetensors());
    write("spm_model", "micro.model", &micro_spm());
    write("tokenizer_json", "micro.json", xlmr_fuzz::micro_tokenizer_json().as_bytes());
    let pickles: PathBuf = root.join("tests/fixtures/pickle");
    for name in ["pytorch_model.bin", "state_dict.bin", "custom_top.bin", "non_contiguous.bin", "forbidden_global_nested.bin"] {
        write("pickle_zip", name, &std::fs::read(pickles.join(name)).unwrap());
    }
}
