//! The gguf Python package (gguf-py) as an independent reader: for every kind of file
//! `xlmr convert` writes, tools/check_gguf.py reads it with gguf-py, checks the metadata and
//! dequantizes every tensor, and must agree bit for bit with `xlmr::quant::dequantize`.
//! Needs python3 with `gguf` (pip install -r tools/requirements-ci.txt); fails without it.

mod common;
use common::*;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use xlmr::gguf::GgufFile;
use xlmr::quant::{dequantize, GgmlType};

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_gguf_package() {
    let ok = Command::new(python()).args(["-c", "import gguf, numpy, safetensors"]).status().map(|s| s.success()).unwrap_or(false);
    assert!(
        ok,
        "`{} -c \"import gguf, numpy, safetensors\"` failed: this test needs the gguf Python package; \
         run `pip install -r tools/requirements-ci.txt`",
        python()
    );
}

/// Writes xlmr's dequantization of every tensor of `gguf` to `out` (f32, PyTorch shape
/// order) and returns the types the file holds.
fn write_our_dequantization(gguf: &Path, out: &Path) -> HashSet<GgmlType> {
    let file = GgufFile::open(gguf).unwrap();
    let mut tensors = Vec::new();
    for t in &file.tensors {
        let mut values = vec![f32::NAN; t.n_elements()];
        dequantize(t.ty, file.tensor_data(t), &mut values).unwrap_or_else(|| panic!("{}: cannot dequantize", t.name));
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((t.name.clone(), t.shape(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, bytes)| (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, out).unwrap();
    file.tensors.iter().map(|t| t.ty).collect()
}

#[test]
fn gguf_python_reads_and_dequantizes_every_file_identically() {
    require_gguf_package();
    let scratch = tempfile::tempdir().unwrap();
    let mut types_seen = HashSet::new();
    // tiny (hidden 160): Q4_K falls back to Q8_0 on 160-wide rows but fits ffn_down (512);
    // tiny-untied (hidden 80): every quantized type falls back to F16, untied decoder.
    for dir in [tiny(), tiny_untied()] {
        for ty in GgmlType::ALL {
            let gguf = converted(&dir, ty);
            let ours = scratch.path().join(format!("{}-{}.safetensors", dir.file_name().unwrap().to_string_lossy(), ty.name()));
            types_seen.extend(write_our_dequantization(&gguf, &ours));
            let out = Command::new(python())
                .arg(root().join("tools/check_gguf.py"))
                .arg(&gguf)
                .arg(&ours)
                .arg("--config")
                .arg(dir.join("config.json"))
                .output()
                .unwrap();
            let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            println!("{report}");
            assert!(out.status.success(), "check_gguf.py rejected {} --type {ty}:\n{report}", dir.display());
            assert!(report.contains("OK: gguf-py agrees bit for bit"), "unexpected report:\n{report}");
        }
    }
    // Every tensor type xlmr writes was read back by gguf-py at least once.
    for ty in GgmlType::ALL {
        assert!(types_seen.contains(&ty), "no converted file held a {ty} tensor");
    }
}

/// The checker itself must notice a single flipped value (guards against a check that
/// cannot fail).
#[test]
fn check_gguf_reports_a_changed_value() {
    require_gguf_package();
    let scratch = tempfile::tempdir().unwrap();
    let gguf = converted(&tiny(), GgmlType::Q4_0);
    let file = GgufFile::open(&gguf).unwrap();
    let ours = scratch.path().join("ours.safetensors");
    write_our_dequantization(&gguf, &ours);
    // Rewrite one value of one quantized tensor in ours.safetensors.
    let bytes = std::fs::read(&ours).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let target = file.tensors.iter().find(|t| t.ty == GgmlType::Q4_0).unwrap().name.clone();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> =
        st.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec(), view.data().to_vec())).collect();
    let entry = owned.iter_mut().find(|(name, _, _)| *name == target).unwrap();
    let v = f32::from_le_bytes(entry.2[..4].try_into().unwrap());
    entry.2[..4].copy_from_slice(&f32::from_bits(v.to_bits() ^ 1).to_le_bytes());
    let views: Vec<_> = owned
        .iter()
        .map(|(name, shape, data)| (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &ours).unwrap();

    let out = Command::new(python()).arg(root().join("tools/check_gguf.py")).arg(&gguf).arg(&ours).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check_gguf.py accepted a changed value:\n{report}");
    assert!(report.contains(&format!("MISMATCH: {target} (Q4_0): 1 of")), "unexpected report:\n{report}");
}
