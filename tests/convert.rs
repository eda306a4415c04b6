//! `xlmr convert` and `xlmr info` through the binary: good conversions, the same tensors
//! from .bin and safetensors, and one test per kind of bad input (one-line error naming
//! the file, nonzero exit, and never a file at OUT).

mod common;
use common::*;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use xlmr::gguf::GgufFile;
use xlmr::quant::GgmlType;

fn xlmr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xlmr")).args(args).output().unwrap()
}

/// Copies a model folder (files only) into a fresh temp dir.
fn copy_model(src: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    dir
}

type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Rewrites `dir/model.safetensors` after `edit` changes its tensors.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Tensors)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Tensors =
        st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    edit(&mut tensors);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

/// Runs a convert that must fail; checks the message and that no output appeared.
fn convert_fails(model_dir: &Path, expect: &[&str]) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.gguf");
    let o = xlmr(&["convert", model_dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q8_0"]);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "convert should fail");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one-line error expected: {stderr}");
    assert!(stderr.starts_with("xlmr: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in: {stderr}");
    }
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a failed convert left files behind: {left:?}");
    stderr
}

#[test]
fn converts_every_type_and_info_shows_fallbacks() {
    for ty in GgmlType::ALL {
        let path = converted(&tiny_untied(), ty);
        let o = xlmr(&["info", "--json", path.to_str().unwrap()]);
        assert!(o.status.success());
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let types: BTreeMap<String, String> = info["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_string(), t["type"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(types["blk.0.attn_norm.weight"], "f32");
        assert_eq!(types["position_embd.weight"], "f32");
        // Hidden 80: rows of 80 fit no 32-block, so every quantized linear falls back to f16.
        let want_q = if ty.is_quantized() { "f16".to_string() } else { ty.name().to_string() };
        assert_eq!(types["blk.0.attn_q.weight"], want_q, "{ty}");
        assert!(types.contains_key("mlm.decoder.weight"), "untied decoder must be written");
    }
    // Tiny: rows of 160 fit 32-blocks but not 256, rows of 512 fit both.
    let f = GgufFile::open(converted(&tiny(), GgmlType::Q4K)).unwrap();
    assert_eq!(f.tensor("blk.0.attn_q.weight").unwrap().ty, GgmlType::Q8_0);
    assert_eq!(f.tensor("blk.0.ffn_down.weight").unwrap().ty, GgmlType::Q4K);
    assert_eq!(f.tensor("token_embd.weight").unwrap().ty, GgmlType::Q8_0);
    assert!(f.tensor("mlm.decoder.weight").is_none(), "tied decoder is not duplicated");
    let text = String::from_utf8(xlmr(&["info", converted(&tiny(), GgmlType::Q4K).to_str().unwrap()]).stdout).unwrap();
    assert!(text.contains("blk.0.ffn_down.weight") && text.contains("q4_k") && text.contains("total"));
}

#[test]
fn bin_and_safetensors_give_identical_tensors() {
    for ty in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4K] {
        let a = GgufFile::open(converted(&tiny(), ty)).unwrap();
        let b = GgufFile::open(converted(&tiny_bin(), ty)).unwrap();
        assert_eq!(a.tensors.len(), b.tensors.len());
        for t in &a.tensors {
            let u = b.tensor(&t.name).unwrap();
            assert_eq!((t.ty, &t.dims), (u.ty, &u.dims), "{}", t.name);
            assert!(a.tensor_data(t) == b.tensor_data(u), "{} differs between .bin and safetensors", t.name);
        }
    }
}

#[test]
fn missing_config() {
    let d = copy_model(&tiny());
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    convert_fails(d.path(), &["config.json", "No such file"]);
}

#[test]
fn invalid_config() {
    let d = copy_model(&tiny());
    std::fs::write(d.path().join("config.json"), "{\"hidden_size\": 160,").unwrap();
    convert_fails(d.path(), &["config.json", "invalid config.json"]);
}

#[test]
fn unsupported_architecture() {
    let d = copy_model(&tiny());
    let cfg = std::fs::read_to_string(d.path().join("config.json")).unwrap().replace("XLMRobertaXLForMaskedLM", "BertForMaskedLM");
    std::fs::write(d.path().join("config.json"), cfg).unwrap();
    convert_fails(d.path(), &["unsupported architecture", "BertForMaskedLM", "XLMRobertaXLForMaskedLM"]);
}

#[test]
fn missing_tensor() {
    let d = copy_model(&tiny());
    rewrite_weights(d.path(), |t| {
        t.remove("roberta.encoder.layer.1.attention.self.key.weight");
    });
    convert_fails(d.path(), &["missing tensor", "roberta.encoder.layer.1.attention.self.key.weight"]);
}

#[test]
fn wrong_shape() {
    let d = copy_model(&tiny());
    rewrite_weights(d.path(), |t| {
        let e = t.get_mut("roberta.encoder.layer.0.intermediate.dense.bias").unwrap();
        e.1 = vec![e.1[0] / 2];
        e.2.truncate(e.2.len() / 2);
    });
    convert_fails(d.path(), &["intermediate.dense.bias", "shape [256]", "expected [512]"]);
}

#[test]
fn nan_and_inf_refused() {
    for bad in [f32::NAN, f32::INFINITY] {
        let d = copy_model(&tiny());
        rewrite_weights(d.path(), |t| {
            let e = t.get_mut("roberta.encoder.layer.2.output.dense.weight").unwrap();
            e.2[40..44].copy_from_slice(&bad.to_le_bytes());
        });
        convert_fails(d.path(), &["non-finite", "roberta.encoder.layer.2.output.dense.weight", "element 10"]);
    }
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let d = copy_model(&tiny());
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    convert_fails(d.path(), &["model.safetensors", "invalid safetensors"]);
    std::fs::write(&p, b"\xff\xff\xff\xff\xff\xff\xff\x7fgarbage").unwrap();
    convert_fails(d.path(), &["model.safetensors", "invalid safetensors"]);
}

#[test]
fn truncated_bin() {
    let d = copy_model(&tiny_bin());
    let p = d.path().join("pytorch_model.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5000]).unwrap();
    convert_fails(d.path(), &["pytorch_model.bin"]);
}

#[test]
fn pickle_with_foreign_global() {
    let d = copy_model(&tiny_bin());
    let evil = root().join("tests/fixtures/pickle/forbidden_global_nested.bin");
    std::fs::copy(evil, d.path().join("pytorch_model.bin")).unwrap();
    convert_fails(d.path(), &["pytorch_model.bin", "forbidden global"]);
}

#[test]
fn unwritable_output() {
    let out = "/nonexistent-dir/x/out.gguf";
    let o = xlmr(&["convert", tiny().to_str().unwrap(), "-o", out]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.starts_with("xlmr: error: /nonexistent-dir/x/out.gguf"), "{stderr}");
    assert!(!Path::new(out).exists());
}

#[test]
fn not_a_model_folder_and_no_weights() {
    convert_fails(Path::new("/nonexistent-model"), &["/nonexistent-model", "not a directory"]);
    let d = copy_model(&tiny());
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    convert_fails(d.path(), &["no weights found"]);
}

#[test]
fn builds_tokenizer_from_sentencepiece_model_alone() {
    let d = copy_model(&tiny());
    std::fs::remove_file(d.path().join("tokenizer.json")).unwrap();
    let out = d.path().join("spm.gguf");
    let o = xlmr(&["convert", d.path().to_str().unwrap(), "-o", out.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = reference(&tiny());
    let model = xlmr::Model::load(&out).unwrap();
    for inp in &r.inputs {
        assert_eq!(model.tokenizer.encode(&inp.text, false).unwrap(), inp.input_ids, "{:?}", inp.text);
    }
}

#[test]
fn info_on_truncated_gguf() {
    let src = converted(&tiny(), GgmlType::Q8_0);
    let d = tempfile::tempdir().unwrap();
    let p: PathBuf = d.path().join("cut.gguf");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let o = xlmr(&["info", p.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("cut.gguf") && stderr.contains("runs past the end of the file"), "{stderr}");
}
