//! COMET metrics (`Model::score`, `xlmr score`) against unbabel-comet's own
//! `predict(..., gpus=0)` in float32, on the tiny models of tools/make_comet_fixtures.py:
//! XCOMET (three input combinations, error spans, MQM, reference-free fallback), a
//! CometKiwi-like unified metric (layer-normed mix, [mt, src]), a COMET-DA-like regression
//! metric (avg pooling over a sparsemax mix that leaves the top layer out).

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use xlmr::convert::comet::convert_comet;
use xlmr::convert::ConvertOptions;
use xlmr::quant::GgmlType;
use xlmr::tasks::{CometPrediction, Triplet};
use xlmr::Model;

fn fixture(name: &str) -> PathBuf {
    common::root().join("tests/fixtures/comet").join(name)
}

fn reference(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap()).unwrap()
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The encoder folder COMET loaded: the fixture's config.json and the tiny sentencepiece
/// model (COMET built its fast tokenizer from it with transformers 4.57).
fn encoder_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch().join("encoder");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixture("encoder-config.json"), d.join("config.json")).unwrap();
        std::fs::copy(common::tiny().join("sentencepiece.bpe.model"), d.join("sentencepiece.bpe.model")).unwrap();
        d
    })
}

fn convert(name: &str, ty: GgmlType) -> PathBuf {
    let output = scratch().join(format!("{name}-{}.gguf", ty.name()));
    if !output.exists() {
        let opts = ConvertOptions { model_dir: fixture(name), output: output.clone(), ty, progress: false };
        convert_comet(&opts, Some(encoder_dir())).unwrap();
    }
    output
}

fn triplets(reference: &Value, with_ref: bool) -> Vec<Triplet<'_>> {
    reference["triplets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Triplet { src: t["src"].as_str().unwrap(), mt: t["mt"].as_str().unwrap(), reference: if with_ref { t["ref"].as_str() } else { None } })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}")).iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: xlmr {g} vs COMET {w} (tolerance {tol})");
    }
}

/// Every score and metadata field within 1e-5, error spans identical (confidence 1e-4).
fn check_against_comet(name: &str, run: &str, got: &CometPrediction) {
    let want = &reference(name)["predictions"][run];
    let what = format!("{name}/{run}");
    assert_close(&format!("{what} scores"), &got.scores, &floats(&want["scores"]), 1e-5);
    assert!((got.system_score - want["system_score"].as_f64().unwrap()).abs() <= 1e-5, "{what} system score");
    let got_json = serde_json::to_value(got).unwrap();
    let want_meta = want.get("metadata").cloned().unwrap_or(Value::Null);
    let got_meta = got_json.get("metadata").cloned().unwrap_or(Value::Null);
    let keys = |m: &Value| -> Vec<String> { m.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default() };
    let (mut gk, mut wk) = (keys(&got_meta), keys(&want_meta));
    gk.sort();
    wk.sort();
    assert_eq!(gk, wk, "{what}: metadata fields");
    for key in wk {
        if key == "error_spans" {
            let (g, w) = (got_meta[&key].as_array().unwrap(), want_meta[&key].as_array().unwrap());
            assert_eq!(g.len(), w.len());
            for (i, (gs, ws)) in g.iter().zip(w).enumerate() {
                let (gs, ws) = (gs.as_array().unwrap(), ws.as_array().unwrap());
                assert_eq!(gs.len(), ws.len(), "{what} segment {i}: spans {gs:?} vs COMET {ws:?}");
                for (a, b) in gs.iter().zip(ws) {
                    for field in ["text", "start", "end", "severity"] {
                        assert_eq!(a[field], b[field], "{what} segment {i}: span {a} vs COMET {b}");
                    }
                    let (ca, cb) = (a["confidence"].as_f64().unwrap(), b["confidence"].as_f64().unwrap());
                    assert!((ca - cb).abs() <= 1e-4, "{what} segment {i}: confidence {ca} vs {cb}");
                }
            }
        } else {
            assert_close(&format!("{what} {key}"), &floats(&got_meta[&key]), &floats(&want_meta[&key]), 1e-5);
        }
    }
}

#[test]
fn xcomet_matches_comet_with_and_without_references() {
    let model = Model::load(convert("xcomet", GgmlType::F32)).unwrap();
    let r = reference("xcomet");
    check_against_comet("xcomet", "with_ref", &model.score(&triplets(&r, true)).unwrap());
    // No reference: XCOMET falls back to [mt, src] (quality estimation).
    check_against_comet("xcomet", "no_ref", &model.score(&triplets(&r, false)).unwrap());
    // The fixture covers spans, an empty translation and a source cut by the 512-token limit.
    let spans = &r["predictions"]["with_ref"]["metadata"]["error_spans"];
    assert!(spans.as_array().unwrap().iter().filter(|s| !s.as_array().unwrap().is_empty()).count() >= 5);
    assert!(r["triplets"].as_array().unwrap().iter().any(|t| t["mt"] == ""));
}

#[test]
fn batch_size_does_not_change_scores() {
    let mut model = Model::load(convert("xcomet", GgmlType::F32)).unwrap();
    let r = reference("xcomet");
    for bs in [1, 5] {
        model.batch_size = bs;
        check_against_comet("xcomet", "with_ref", &model.score(&triplets(&r, true)).unwrap());
    }
}

#[test]
fn unified_kiwi_matches_comet() {
    let model = Model::load(convert("kiwi", GgmlType::F32)).unwrap();
    let r = reference("kiwi");
    // [mt, src] model: references are ignored, as COMET does.
    check_against_comet("kiwi", "with_ref", &model.score(&triplets(&r, true)).unwrap());
    check_against_comet("kiwi", "no_ref", &model.score(&triplets(&r, false)).unwrap());
}

#[test]
fn regression_da_matches_comet_and_keeps_only_needed_layers() {
    let path = convert("da", GgmlType::F32);
    let model = Model::load(&path).unwrap();
    let r = reference("da");
    check_against_comet("da", "with_ref", &model.score(&triplets(&r, true)).unwrap());
    // The sparsemax mix gives the last hidden state no weight: its layer is not in the file.
    assert_eq!(model.config.layers, 2);
    assert!(!model.config.final_norm);
    assert_eq!(model.comet.as_ref().unwrap().hidden_states, 4);
}

/// Pearson correlation.
fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&x| x as f64).sum::<f64>() / n, b.iter().map(|&x| x as f64).sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - ma) * (y as f64 - mb)).sum();
    let va: f64 = a.iter().map(|&x| (x as f64 - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|&y| (y as f64 - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn q8_0_stays_close_to_f32() {
    // Q8_0 keeps each weight within half a step of a 32-weight block's scale (<= 0.4 % of the
    // block's largest weight); on these random tiny models that moves segment scores by
    // ~1e-3 at most, and keeps their ranking. Error spans depend on argmax ties and may flip,
    // so XCOMET is compared on its regression scores.
    for (name, metadata_key) in [("kiwi", None), ("da", None), ("xcomet", Some("unified_scores"))] {
        let r = reference(name);
        let f32_pred = Model::load(convert(name, GgmlType::F32)).unwrap().score(&triplets(&r, true)).unwrap();
        let q8_pred = Model::load(convert(name, GgmlType::Q8_0)).unwrap().score(&triplets(&r, true)).unwrap();
        let pick = |p: &CometPrediction| -> Vec<f32> {
            match metadata_key {
                Some(_) => p.metadata.unified_scores.clone().unwrap(),
                None => p.scores.clone(),
            }
        };
        let (a, b) = (pick(&f32_pred), pick(&q8_pred));
        let max_err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(max_err < 5e-3, "{name}: q8_0 moves a segment score by {max_err}");
        assert!(pearson(&a, &b) > 0.98, "{name}: q8_0 vs f32 Pearson {}", pearson(&a, &b));
    }
}

#[test]
fn bad_inputs_are_errors() {
    let da = Model::load(convert("da", GgmlType::F32)).unwrap();
    let r = reference("da");
    let e = da.score(&triplets(&r, false)).unwrap_err().to_string();
    assert!(e.contains("needs references"), "{e}");
    let xcomet = Model::load(convert("xcomet", GgmlType::F32)).unwrap();
    let mut mixed = triplets(&r, true);
    mixed[1].reference = None;
    let e = xcomet.score(&mixed).unwrap_err().to_string();
    assert!(e.contains("segment 2") && e.contains("reference"), "{e}");
    assert!(xcomet.score(&[]).is_err());
    // A model that is not a COMET metric.
    let plain = Model::load(common::converted(&common::tiny(), GgmlType::F32)).unwrap();
    let e = plain.score(&triplets(&r, true)).unwrap_err().to_string();
    assert!(e.contains("not a COMET metric"), "{e}");
}

/// Copies a fixture folder so that a test can break it.
fn broken_copy(name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = scratch().join(format!("broken-{name}-{}", std::process::id() as u64 + rand_suffix()));
    std::fs::create_dir_all(dir.join("checkpoints")).unwrap();
    std::fs::copy(fixture(name).join("hparams.yaml"), dir.join("hparams.yaml")).unwrap();
    std::fs::copy(fixture(name).join("checkpoints/model.ckpt"), dir.join("checkpoints/model.ckpt")).unwrap();
    edit(&dir);
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn convert_error(dir: &Path, encoder: Option<&Path>) -> String {
    let out = dir.join("out.gguf");
    let opts = ConvertOptions { model_dir: dir.to_path_buf(), output: out.clone(), ty: GgmlType::F32, progress: false };
    let e = match convert_comet(&opts, encoder) {
        Ok(_) => panic!("{} converted", dir.display()),
        Err(e) => e.to_string(),
    };
    assert!(!out.exists(), "no output after an error");
    e
}

#[test]
fn broken_comet_folders_fail_naming_the_file() {
    let no_hparams = broken_copy("xcomet", |d| std::fs::remove_file(d.join("hparams.yaml")).unwrap());
    let e = convert_error(&no_hparams, Some(encoder_dir()));
    assert!(e.contains("hparams.yaml") && e.contains("missing"), "{e}");

    let unknown = broken_copy("xcomet", |d| {
        let p = d.join("hparams.yaml");
        let text = std::fs::read_to_string(&p).unwrap().replace("class_identifier: xcomet_metric", "class_identifier: ranking_metric");
        std::fs::write(p, text).unwrap();
    });
    let e = convert_error(&unknown, Some(encoder_dir()));
    assert!(e.contains("hparams.yaml") && e.contains("unknown class_identifier `ranking_metric`"), "{e}");

    // No encoder folder anywhere: the message says where it looked.
    let ok = broken_copy("kiwi", |_| {});
    let e = convert_error(&ok, None);
    assert!(e.contains("facebook/xlm-roberta-xl") && e.contains("looked in") && e.contains(&ok.display().to_string()), "{e}");
    let empty = scratch().join("empty-encoder");
    std::fs::create_dir_all(&empty).unwrap();
    let e = convert_error(&ok, Some(&empty));
    assert!(e.contains("config.json") && e.contains(&empty.display().to_string()), "{e}");

    let no_ckpt = broken_copy("da", |d| std::fs::remove_file(d.join("checkpoints/model.ckpt")).unwrap());
    let e = convert_error(&no_ckpt, Some(encoder_dir()));
    assert!(e.contains("model.ckpt"), "{e}");
}

fn xlmr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xlmr"))
}

fn write_lines(name: &str, lines: &[&str]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn cli_json_matches_comet_and_text_is_like_comet_score() {
    let model = convert("xcomet", GgmlType::F32);
    let r = reference("xcomet");
    let col = |k: &str| -> Vec<&str> { r["triplets"].as_array().unwrap().iter().map(|t| t[k].as_str().unwrap()).collect() };
    let (s, t, rf) = (write_lines("src.txt", &col("src")), write_lines("mt.txt", &col("mt")), write_lines("ref.txt", &col("ref")));
    let out = xlmr().args(["score", "-m"]).arg(&model).arg("-s").arg(&s).arg("-t").arg(&t).arg("-r").arg(&rf).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &r["predictions"]["with_ref"];
    assert_close("cli scores", &floats(&got["scores"]), &floats(&want["scores"]), 1e-5);
    assert_eq!(got["metadata"]["error_spans"].as_array().unwrap().len(), 8);

    let out = xlmr().args(["score", "-m"]).arg(&model).arg("-s").arg(&s).arg("-t").arg(&t).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9);
    assert!(lines[0].starts_with(&format!("{}\tSegment 0\tscore: ", t.display())), "{}", lines[0]);
    assert!(lines[8].starts_with(&format!("{}\tscore: ", t.display())), "{}", lines[8]);

    // The same triplets as JSON lines.
    let jsonl: Vec<String> = r["triplets"].as_array().unwrap().iter().map(|t| t.to_string()).collect();
    let f = write_lines("data.jsonl", &jsonl.iter().map(String::as_str).collect::<Vec<_>>());
    let out = xlmr().args(["score", "-m"]).arg(&model).arg("--file").arg(&f).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_close("jsonl scores", &floats(&got["scores"]), &floats(&want["scores"]), 1e-5);
}

#[test]
fn cli_bad_input_is_one_line_and_scores_nothing() {
    let da = convert("da", GgmlType::F32);
    let s = write_lines("bad-src.txt", &["a", "b", "c"]);
    let t = write_lines("bad-mt.txt", &["a", "b"]);
    let r = write_lines("bad-ref.txt", &["a", "b"]);
    for (args, needle) in [
        (vec!["-s", s.to_str().unwrap(), "-t", t.to_str().unwrap(), "-r", r.to_str().unwrap()], "bad-src.txt has 3 lines"),
        (vec!["-s", t.to_str().unwrap(), "-t", t.to_str().unwrap()], "needs references"),
    ] {
        let out = xlmr().args(["score", "-m"]).arg(&da).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty(), "nothing scored");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn c_api_scores_and_spans_match_the_library() {
    use std::ffi::{c_char, CStr, CString};
    use std::ptr;
    use xlmr::ffi::*;
    let path = convert("xcomet", GgmlType::F32);
    let r = reference("xcomet");
    let want = Model::load(&path).unwrap().score(&triplets(&r, true)).unwrap();
    let col = |k: &str| -> Vec<CString> { r["triplets"].as_array().unwrap().iter().map(|t| CString::new(t[k].as_str().unwrap()).unwrap()).collect() };
    let (src, mt, rf) = (col("src"), col("mt"), col("ref"));
    let ptrs = |v: &[CString]| -> Vec<*const c_char> { v.iter().map(|s| s.as_ptr()).collect() };
    let (sp, mp, rp) = (ptrs(&src), ptrs(&mt), ptrs(&rf));
    let n = sp.len();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    // Safety (whole block): every pointer given is valid or NULL on purpose.
    unsafe {
        let mut model = ptr::null_mut();
        assert_eq!(xlmr_model_load(c_path.as_ptr(), xlmr_model_default_params(), &mut model), xlmr_status::XLMR_STATUS_OK);
        let mut result = ptr::null_mut();
        assert_eq!(xlmr_score(model, sp.as_ptr(), mp.as_ptr(), ptr::null(), 0, &mut result), xlmr_status::XLMR_STATUS_INVALID_ARGUMENT);
        assert_eq!(xlmr_score(model, sp.as_ptr(), ptr::null(), ptr::null(), n, &mut result), xlmr_status::XLMR_STATUS_INVALID_ARGUMENT);
        assert!(result.is_null(), "out untouched on failure");
        assert_eq!(xlmr_score(model, sp.as_ptr(), mp.as_ptr(), rp.as_ptr(), n, &mut result), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_score_n_segments(result), n);
        assert!((xlmr_score_system(result) - want.system_score).abs() < 1e-9);
        let spans = want.metadata.error_spans.as_ref().unwrap();
        for i in 0..n {
            let mut s = std::mem::zeroed::<xlmr_segment_score>();
            assert_eq!(xlmr_score_get(result, i, &mut s), xlmr_status::XLMR_STATUS_OK);
            assert_eq!(s.score, want.scores[i]);
            assert_eq!(s.mqm_score, want.metadata.mqm_scores.as_ref().unwrap()[i]);
            assert_eq!(s.n_spans, spans[i].len());
            for (j, e) in spans[i].iter().enumerate() {
                let mut span = std::mem::zeroed::<xlmr_error_span>();
                assert_eq!(xlmr_score_get_span(result, i, j, &mut span), xlmr_status::XLMR_STATUS_OK);
                assert_eq!(CStr::from_ptr(span.text).to_str().unwrap(), e.text);
                assert_eq!(CStr::from_ptr(span.severity).to_str().unwrap(), e.severity);
                assert_eq!((span.start, span.end, span.confidence), (e.start, e.end, e.confidence));
            }
            let mut span = std::mem::zeroed::<xlmr_error_span>();
            assert_eq!(xlmr_score_get_span(result, i, spans[i].len(), &mut span), xlmr_status::XLMR_STATUS_INVALID_ARGUMENT);
        }
        xlmr_score_free(result);
        assert_eq!(xlmr_score_n_segments(result), 0);
        xlmr_model_free(model);

        // A reference-based model without references; a model that is not a COMET metric.
        let da = CString::new(convert("da", GgmlType::F32).to_str().unwrap()).unwrap();
        let mut model = ptr::null_mut();
        assert_eq!(xlmr_model_load(da.as_ptr(), xlmr_model_default_params(), &mut model), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_score(model, sp.as_ptr(), mp.as_ptr(), ptr::null(), n, &mut result), xlmr_status::XLMR_STATUS_INPUT);
        xlmr_model_free(model);
        let plain = CString::new(common::converted(&common::tiny(), GgmlType::F32).to_str().unwrap()).unwrap();
        assert_eq!(xlmr_model_load(plain.as_ptr(), xlmr_model_default_params(), &mut model), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_score(model, sp.as_ptr(), mp.as_ptr(), rp.as_ptr(), n, &mut result), xlmr_status::XLMR_STATUS_UNSUPPORTED);
        xlmr_model_free(model);
    }
}
