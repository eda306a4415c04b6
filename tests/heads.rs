//! Fine-tuned heads against transformers' pipelines (fixtures: tools/make_heads_fixtures.py).
//! At F32, labels and words must be equal and scores within 1e-5 of the pipeline's.

mod common;
use common::*;
use serde_json::Value;
use xlmr::quant::GgmlType;
use xlmr::{ClassifyFunction, ClassifyOptions, Model, TextInput, TopK};

/// Scores within 1e-5; raw logits (`function none`, regression) above 1 in magnitude within
/// 1e-5 relative, since both sides carry f32's relative rounding through the encoder.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-5 * want.abs().max(1.0)
}

fn model(name: &str, ty: GgmlType) -> Model {
    Model::load(converted(&head_model(name), ty)).unwrap()
}

// ------------------------------------------------------------------ text classification

fn classify_inputs(inputs: &Value) -> Vec<(String, Option<String>)> {
    inputs
        .as_array()
        .unwrap()
        .iter()
        .map(|i| match i {
            Value::String(s) => (s.clone(), None),
            o => (o["text"].as_str().unwrap().to_string(), Some(o["text_pair"].as_str().unwrap().to_string())),
        })
        .collect()
}

fn classify_options(kwargs: &Value) -> ClassifyOptions {
    let top_k = match kwargs.get("top_k") {
        None => TopK::N(1),
        Some(Value::Null) => TopK::All,
        Some(k) => TopK::N(k.as_u64().unwrap() as usize),
    };
    let function = kwargs.get("function_to_apply").map(|f| f.as_str().unwrap().parse::<ClassifyFunction>().unwrap());
    ClassifyOptions { top_k, function, truncate: kwargs.get("truncation").is_some_and(|t| t.as_bool().unwrap()) }
}

/// Every case of one classification fixture: (labels, scores) per input, and the pipeline's.
fn classify_cases(m: &Model, name: &str) -> Vec<(Vec<Vec<(String, f32)>>, Vec<Vec<(String, f64)>>)> {
    let reference = head_reference(name);
    let mut out = Vec::new();
    for case in reference["cases"].as_array().unwrap().iter().filter(|c| c.get("output").is_some()) {
        let owned = classify_inputs(&case["inputs"]);
        let inputs: Vec<TextInput> =
            owned.iter().map(|(t, p)| p.as_deref().map_or(TextInput::Single(t), |p| TextInput::Pair(t, p))).collect();
        let got = m.classify(&inputs, &classify_options(&case["kwargs"])).unwrap();
        let got: Vec<Vec<(String, f32)>> = got.into_iter().map(|r| r.into_iter().map(|l| (l.label, l.score)).collect()).collect();
        let want: Vec<Vec<(String, f64)>> = case["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|per_input| {
                // The pipeline's legacy default (no top_k) gives one dict per input.
                let list = if per_input.is_object() { vec![per_input.clone()] } else { per_input.as_array().unwrap().clone() };
                list.iter().map(|d| (d["label"].as_str().unwrap().to_string(), d["score"].as_f64().unwrap())).collect()
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{name}: one result per input");
        out.push((got, want));
    }
    out
}

const CLASSIFIERS: [&str; 4] = ["seq-cls", "seq-cls-multi", "seq-cls-regression", "seq-cls-one"];

#[test]
fn classify_matches_text_classification_pipeline() {
    for name in CLASSIFIERS {
        let m = model(name, GgmlType::F32);
        for (got, want) in classify_cases(&m, name) {
            for (g, w) in got.iter().zip(&want) {
                let labels: Vec<&str> = g.iter().map(|(l, _)| l.as_str()).collect();
                let want_labels: Vec<&str> = w.iter().map(|(l, _)| l.as_str()).collect();
                assert_eq!(labels, want_labels, "{name}");
                for ((_, gs), (_, ws)) in g.iter().zip(w) {
                    assert!(close(*gs as f64, *ws), "{name}: score {gs} vs pipeline {ws}");
                }
            }
        }
    }
}

#[test]
fn classify_defaults_follow_problem_type() {
    let info = |name: &str| model(name, GgmlType::F32).head.clone().unwrap();
    assert_eq!(ClassifyFunction::default_for(&info("seq-cls")), ClassifyFunction::Softmax);
    assert_eq!(ClassifyFunction::default_for(&info("seq-cls-multi")), ClassifyFunction::Sigmoid);
    assert_eq!(ClassifyFunction::default_for(&info("seq-cls-regression")), ClassifyFunction::None);
    assert_eq!(ClassifyFunction::default_for(&info("seq-cls-one")), ClassifyFunction::Sigmoid);
}

#[test]
fn classify_bad_input() {
    let m = model("seq-cls", GgmlType::F32);
    let err = |inputs: &[TextInput], opts: ClassifyOptions| m.classify(inputs, &opts).unwrap_err().to_string();
    assert!(err(&[TextInput::Pair("a", "  ")], Default::default()).contains("text_pair is empty"));
    assert!(err(&[TextInput::Pair("", "b")], Default::default()).contains("text is empty"));
    assert!(err(&["ok".into()], ClassifyOptions { top_k: TopK::N(0), ..Default::default() }).contains("top_k"));
    let long = "Die Datei konnte nicht geöffnet werden. ".repeat(80);
    assert!(err(&[long.as_str().into()], Default::default()).contains("--truncate"));
    let fill = Model::load(converted(&tiny(), GgmlType::F32)).unwrap();
    let e = fill.classify(&["x".into()], &Default::default()).unwrap_err().to_string();
    assert!(e.contains("MLM head") && e.contains("XLMRobertaXLForSequenceClassification"), "{e}");
}

// ------------------------------------------------------------------ CLI

fn xlmr_run(name: &str, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let gguf = converted(&head_model(name), GgmlType::F32);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xlmr"))
        .arg("run")
        .arg("-m")
        .arg(&gguf)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = child.wait_with_output().unwrap();
    (o.status.success(), String::from_utf8(o.stdout).unwrap(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn cli_json(name: &str, args: &[&str], stdin: &[u8]) -> Value {
    let (ok, out, err) = xlmr_run(name, args, stdin);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// A one-line error, a nonzero exit and nothing on stdout.
fn cli_fails(name: &str, args: &[&str], stdin: &[u8], expect: &str) {
    let (ok, out, err) = xlmr_run(name, args, stdin);
    assert!(!ok && out.is_empty(), "should fail without output: {args:?}: {out}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line error: {err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
}

#[test]
fn cli_classify_json_as_the_pipeline() {
    let reference = head_reference("seq-cls");
    let cases = reference["cases"].as_array().unwrap();
    // Default: one {label, score} per input, as the pipeline's default.
    let texts: Vec<&str> = cases[0]["inputs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let got = cli_json("seq-cls", &[&["--task", "classify", "--json"][..], &texts].concat(), b"");
    for (g, w) in got.as_array().unwrap().iter().zip(cases[0]["output"].as_array().unwrap()) {
        assert_eq!(g["label"], w["label"]);
        assert!(close(g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap()));
    }
    // Pairs from TEXT<TAB>TEXT_PAIR lines, with --top-k: a list per input.
    let lines: String = cases[2]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}\t{}\n", p["text"].as_str().unwrap(), p["text_pair"].as_str().unwrap()))
        .collect();
    let got = cli_json("seq-cls", &["--task", "classify", "--json", "--top-k", "2"], lines.as_bytes());
    for (g, w) in got.as_array().unwrap().iter().zip(cases[2]["output"].as_array().unwrap()) {
        for (g, w) in g.as_array().unwrap().iter().zip(w.as_array().unwrap()) {
            assert_eq!(g["label"], w["label"]);
            assert!(close(g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap()));
        }
    }
    let first = &cases[2]["inputs"][0];
    let got = cli_json(
        "seq-cls",
        &["--task", "classify", "--json", "--top-k", "2", "--pair", first["text_pair"].as_str().unwrap(), first["text"].as_str().unwrap()],
        b"",
    );
    assert_eq!(got[0][0]["label"], cases[2]["output"][0][0]["label"]);
}

#[test]
fn cli_classify_bad_input() {
    let c = ["--task", "classify"];
    cli_fails("seq-cls", &[&c[..], &["--top-k", "0", "x"]].concat(), b"", "top_k must be at least 1");
    cli_fails("seq-cls", &c, b"first\tsecond\nonly one side\t \n", "input 2: text_pair is empty");
    cli_fails("seq-cls", &[&c[..], &["--function", "relu", "x"]].concat(), b"", "unknown function");
}

// ------------------------------------------------------------------ token classification

fn token_options(kwargs: &Value) -> xlmr::TokenClassifyOptions {
    let mut opts = xlmr::TokenClassifyOptions {
        aggregation: kwargs["aggregation_strategy"].as_str().unwrap().parse().unwrap(),
        truncate: true, // the pipeline always truncates to the model's maximum
        ..Default::default()
    };
    if let Some(labels) = kwargs.get("ignore_labels") {
        opts.ignore_labels = labels.as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect();
    }
    opts
}

/// Entities equal field for field: labels, words, offsets and index exactly, scores within 1e-5.
fn same_entities(got: &Value, want: &Value, what: &str) {
    let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(g.len(), w.len(), "{what}: entity count\n got {got}\nwant {want}");
    for (g, w) in g.iter().zip(w) {
        let (go, wo) = (g.as_object().unwrap(), w.as_object().unwrap());
        assert_eq!(go.keys().collect::<Vec<_>>(), wo.keys().collect::<Vec<_>>(), "{what}: fields");
        for (k, wv) in wo {
            if k == "score" {
                assert!(close(go[k].as_f64().unwrap(), wv.as_f64().unwrap()), "{what}: {g} vs {w}");
            } else {
                assert_eq!(&go[k], wv, "{what}: {k} of {g} vs {w}");
            }
        }
    }
}

#[test]
fn token_classify_matches_token_classification_pipeline() {
    let m = model("token-cls", GgmlType::F32);
    for case in head_reference("token-cls")["cases"].as_array().unwrap() {
        let texts: Vec<&str> = case["inputs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let got = serde_json::to_value(m.token_classify(&texts, &token_options(&case["kwargs"])).unwrap()).unwrap();
        for (i, (g, w)) in got.as_array().unwrap().iter().zip(case["output"].as_array().unwrap()).enumerate() {
            same_entities(g, w, &format!("{} input {i}", case["kwargs"]));
        }
    }
}

#[test]
fn cli_token_classify() {
    let reference = head_reference("token-cls");
    let case = &reference["cases"][1]; // simple
    let texts: Vec<&str> = case["inputs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let lines: String = texts.iter().filter(|t| !t.contains('\t')).map(|t| format!("{t}\n")).collect();
    let got = cli_json("token-cls", &["--task", "ner", "--json"], lines.as_bytes());
    let want: Vec<&Value> = texts.iter().zip(case["output"].as_array().unwrap()).filter(|(t, _)| !t.contains('\t')).map(|(_, o)| o).collect();
    for (g, w) in got.as_array().unwrap().iter().zip(want) {
        same_entities(g, w, "cli simple");
    }
    cli_fails("token-cls", &["--task", "token-classify", "--aggregation", "longest", "x"], b"", "unknown aggregation");
    cli_fails("seq-cls", &["--task", "ner", "x"], b"", "needs a model converted from XLMRobertaXLForTokenClassification");
}

// ------------------------------------------------------------------ question answering

fn qa_options(kwargs: &Value) -> xlmr::QaOptions {
    let get = |k: &str| kwargs.get(k).map(|v| v.as_u64().unwrap() as usize);
    let d = xlmr::QaOptions::default();
    xlmr::QaOptions {
        top_k: get("top_k").unwrap_or(d.top_k),
        max_seq_len: get("max_seq_len").unwrap_or(d.max_seq_len),
        doc_stride: get("doc_stride"),
        max_answer_len: get("max_answer_len").unwrap_or(d.max_answer_len),
        handle_impossible_answer: kwargs.get("handle_impossible_answer").is_some_and(|v| v.as_bool().unwrap()),
    }
}

/// The pipeline answers one object when it has one answer, else a list.
fn as_list(v: &Value) -> Value {
    if v.is_object() {
        Value::Array(vec![v.clone()])
    } else {
        v.clone()
    }
}

#[test]
fn answer_matches_question_answering_pipeline() {
    let m = model("qa", GgmlType::F32);
    let mut several_windows = false;
    let mut unanswerable = false;
    for case in head_reference("qa")["cases"].as_array().unwrap() {
        let items = case["inputs"].as_array().unwrap();
        let inputs: Vec<xlmr::QaInput> =
            items.iter().map(|i| xlmr::QaInput { question: i["question"].as_str().unwrap(), context: i["context"].as_str().unwrap() }).collect();
        let opts = qa_options(&case["kwargs"]);
        let stride = opts.doc_stride.unwrap_or(128);
        for (i, n) in case["windows"].as_array().unwrap().iter().enumerate() {
            let windows = m.tokenizer.question_windows(inputs[i].question, inputs[i].context, opts.max_seq_len, stride).unwrap();
            assert_eq!(windows.len() as u64, n.as_u64().unwrap(), "windows of input {i}");
            several_windows |= windows.len() > 2;
        }
        let got = serde_json::to_value(m.answer(&inputs, &opts).unwrap()).unwrap();
        for (g, w) in got.as_array().unwrap().iter().zip(case["output"].as_array().unwrap()) {
            let w = as_list(w);
            same_entities(g, &w, &format!("qa {}", case["kwargs"]));
            unanswerable |= w[0]["answer"] == "";
        }
    }
    assert!(several_windows && unanswerable, "the fixture covers long contexts and an unanswerable question");
}

#[test]
fn cli_qa_and_bad_input() {
    let reference = head_reference("qa");
    let case = &reference["cases"][0];
    // The short contexts only (the library test covers the long one).
    let short = |i: &Value| i["context"].as_str().unwrap().len() < 1000;
    let lines: String = case["inputs"].as_array().unwrap().iter().filter(|i| short(i)).map(|i| format!("{i}\n")).collect();
    let got = cli_json("qa", &["--task", "qa", "--json"], lines.as_bytes());
    let inputs = case["inputs"].as_array().unwrap();
    let want = case["output"].as_array().unwrap().iter().zip(inputs).filter(|(_, i)| short(i)).map(|(o, _)| o);
    assert_eq!(got.as_array().unwrap().len(), 3);
    for (g, w) in got.as_array().unwrap().iter().zip(want) {
        same_entities(&as_list(g), &as_list(w), "cli qa");
    }
    let first = &case["inputs"][0];
    let one = cli_json(
        "qa",
        &["--task", "qa", "--json", "--top-k", "1", "--question", first["question"].as_str().unwrap(), "--context", first["context"].as_str().unwrap()],
        b"",
    );
    same_entities(&one[0], &as_list(&case["output"][0]), "cli --question");
    let qa = ["--task", "qa"];
    cli_fails("qa", &qa, b"{\"question\": \"Who?\"}\n", "line 1: no \"context\"");
    cli_fails("qa", &qa, b"{\"question\": \"Who?\", \"context\": \"  \"}\n", "context is empty");
    cli_fails("qa", &qa, b"not json\n", "line 1: not a JSON object");
    cli_fails("qa", &[&qa[..], &["--top-k", "0", "--question", "a", "--context", "b"]].concat(), b"", "--top-k");
    cli_fails("qa", &[&qa[..], &["--doc-stride", "500", "--question", "a", "--context", "b"]].concat(), b"", "doc_stride");
}

// ------------------------------------------------------------------ multiple choice

#[test]
fn multiple_choice_matches_transformers() {
    let m = model("multiple-choice", GgmlType::F32);
    let reference = head_reference("multiple-choice");
    let cases = reference["cases"].as_array().unwrap();
    let owned: Vec<(String, Vec<String>)> = cases
        .iter()
        .map(|c| (c["prompt"].as_str().unwrap().into(), c["choices"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().into()).collect()))
        .collect();
    let inputs: Vec<xlmr::Choices> = owned.iter().map(|(p, c)| xlmr::Choices { prompt: p, choices: c.iter().map(|s| s.as_str()).collect() }).collect();
    let got = m.multiple_choice(&inputs, false).unwrap();
    for (g, c) in got.iter().zip(cases) {
        let want: Vec<f64> = c["scores"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let logits: Vec<f64> = c["logits"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (a, b) in g.scores.iter().zip(&want).chain(g.logits.iter().zip(&logits)) {
            assert!(close(*a as f64, *b), "{a} vs {b}");
        }
        let best = (0..want.len()).fold(0, |b, i| if want[i] > want[b] { i } else { b });
        assert_eq!(g.best, best);
    }
    let lines: String = cases.iter().map(|c| format!("{}\n", serde_json::json!({"prompt": c["prompt"], "choices": c["choices"]}))).collect();
    let cli = cli_json("multiple-choice", &["--task", "multiple-choice", "--json"], lines.as_bytes());
    assert_eq!(cli[2]["best"].as_u64().unwrap() as usize, got[2].best);
    cli_fails("multiple-choice", &["--task", "multiple-choice"], b"{\"prompt\": \"p\", \"choices\": []}\n", "input 1: no choices");
    cli_fails("multiple-choice", &["--task", "multiple-choice"], b"{\"prompt\": \"p\", \"choices\": [\"a\", \"\"]}\n", "input 1: choice 2 is empty");
    cli_fails("multiple-choice", &["--task", "multiple-choice"], b"{\"prompt\": \"p\"}\n", "no \"choices\"");
}

// ------------------------------------------------------------------ files and other tasks

/// A copy of `src` with metadata `key` replaced by `value` (or removed when `None`).
fn rewrite_gguf(src: &std::path::Path, key: &str, value: Option<xlmr::gguf::Value>) -> tempfile::NamedTempFile {
    use xlmr::gguf::{GgufFile, GgufWriter};
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.metadata {
        if k != key {
            w.add(k, v.clone());
        }
    }
    if let Some(v) = value {
        w.add(key, v);
    }
    for t in &f.tensors {
        w.add_tensor(&t.name, &t.dims, t.ty);
    }
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut file = std::io::BufWriter::new(out.reopen().unwrap());
    w.write_header(&mut file).unwrap();
    for (i, t) in f.tensors.iter().enumerate() {
        w.write_tensor(&mut file, i, f.tensor_data(t)).unwrap();
    }
    w.finish().unwrap();
    drop(file);
    out
}

#[test]
fn crafted_head_metadata_is_refused_at_load() {
    use xlmr::gguf::{keys, Value, ValueType};
    let gguf = converted(&head_model("seq-cls"), GgmlType::F32);
    let strings = |n: usize| Value::Array(ValueType::String, (0..n).map(|i| Value::String(format!("L{i}"))).collect());
    let load_err = |key: &str, v: Option<Value>| {
        let f = rewrite_gguf(&gguf, key, v);
        match Model::load(f.path()) {
            Ok(_) => panic!("{key}: a crafted file must not load"),
            Err(e) => e.to_string(),
        }
    };
    let e = load_err(keys::HEAD_LABELS, Some(strings(4)));
    assert!(e.contains("has 4 entries but the sequence-classification head has 5 output rows"), "{e}");
    assert!(load_err(keys::HEAD_LABELS, None).contains("label names"));
    assert!(load_err(keys::HEAD_LABELS, Some(Value::Array(ValueType::U32, vec![Value::U32(1); 5]))).contains("expected strings"));
    assert!(load_err(keys::HEAD_KIND, Some(Value::String("summarization".into()))).contains("unknown head kind"));
    assert!(load_err(keys::HEAD_NUM_LABELS, Some(Value::U32(4))).contains("output rows"));
    assert!(load_err(keys::HEAD_PROBLEM_TYPE, Some(Value::String("ranking".into()))).contains("unknown problem_type"));
    // Labels and rows agree but the tensor has 5 rows: the shape check names the tensor.
    let f = rewrite_gguf(&gguf, keys::HEAD_LABELS, Some(strings(4)));
    let f2 = rewrite_gguf(f.path(), keys::HEAD_NUM_LABELS, Some(Value::U32(4)));
    let e = Model::load(f2.path()).err().unwrap().to_string();
    assert!(e.contains("cls.output.weight") && e.contains("shape"), "{e}");
}

#[test]
fn encoder_tasks_run_on_every_head_and_fill_mask_needs_the_mlm_head() {
    let plain = Model::load(converted(&tiny(), GgmlType::F32)).unwrap().embed(&["Hallo Welt"], xlmr::Pooling::Cls, false, false).unwrap();
    for name in ["seq-cls", "token-cls", "qa", "multiple-choice"] {
        let m = model(name, GgmlType::F32);
        // Same encoder as models/tiny-xlmr-xl: same embeddings.
        let e = m.embed(&["Hallo Welt"], xlmr::Pooling::Cls, false, false).unwrap();
        assert_eq!(e, plain, "{name}");
        assert_eq!(m.hidden_states(&["Hallo"], Some(&[0, 3]), false).unwrap()[0].len(), 2);
        let err = m.fill_mask(&["a <mask>"], 3, false).unwrap_err().to_string();
        assert!(err.contains("no MLM head"), "{err}");
    }
}

#[test]
fn convert_keeps_heads_f32_and_refuses_unknown_architectures() {
    let gguf = converted(&head_model("token-cls"), GgmlType::Q4K);
    let f = xlmr::gguf::GgufFile::open(&gguf).unwrap();
    for t in f.tensors.iter().filter(|t| t.name.starts_with("cls")) {
        assert_eq!(t.ty, xlmr::quant::GgmlType::F32, "{}", t.name);
    }
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(head_model("seq-cls")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), config.replace("XLMRobertaXLForSequenceClassification", "XLMRobertaXLForCausalLM")).unwrap();
    let out = dir.path().join("out.gguf");
    let opts = xlmr::convert::ConvertOptions { model_dir: dir.path().into(), output: out.clone(), ty: GgmlType::F32, progress: false };
    let e = xlmr::convert::convert(&opts).err().unwrap().to_string();
    assert!(e.contains("XLMRobertaXLForCausalLM") && e.contains("XLMRobertaXLForQuestionAnswering"), "{e}");
    assert!(!out.exists());
}

// ------------------------------------------------------------------ quantized files

/// Per type: (agreeing, total, max score error, decisions with a reference margin above
/// `margin` that disagree).
#[derive(Default, Debug)]
struct Agreement {
    agree: usize,
    total: usize,
    max_err: f64,
    clear_disagreements: usize,
}

impl Agreement {
    fn add(&mut self, same: bool, err: f64, ref_margin: f64, margin: f64) {
        self.total += 1;
        self.agree += same as usize;
        self.max_err = self.max_err.max(err);
        self.clear_disagreements += (!same && ref_margin > margin) as usize;
    }
}

/// Top-1 agreement and score error of the quantized runtime vs the F32 runtime (which equals
/// the pipelines, above) on the fixtures' inputs: classification (all labels), NER tokens
/// (aggregation none, ignore nothing), QA answers, multiple-choice picks.
fn quantized_agreement(ty: GgmlType, margin: f64) -> [Agreement; 4] {
    let mut out: [Agreement; 4] = Default::default();
    // Classification: every label's softmax score.
    let (f, q) = (model("seq-cls", GgmlType::F32), model("seq-cls", ty));
    let texts: Vec<String> = head_reference("token-cls")["cases"][0]["inputs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().into()).collect();
    let inputs: Vec<TextInput> = texts.iter().map(|t| TextInput::Single(t)).collect();
    let opts = ClassifyOptions { top_k: TopK::All, ..Default::default() };
    for (a, b) in f.classify(&inputs, &opts).unwrap().iter().zip(q.classify(&inputs, &opts).unwrap()) {
        let err = a.iter().map(|l| (l.score - b.iter().find(|x| x.label == l.label).unwrap().score).abs() as f64).fold(0.0, f64::max);
        out[0].add(a[0].label == b[0].label, err, (a[0].score - a[1].score) as f64, margin);
    }
    // NER: every token's label.
    let (f, q) = (model("token-cls", GgmlType::F32), model("token-cls", ty));
    let opts = xlmr::TokenClassifyOptions { aggregation: xlmr::Aggregation::None, ignore_labels: vec![], truncate: false };
    for (a, b) in f.token_classify(&texts, &opts).unwrap().iter().zip(q.token_classify(&texts, &opts).unwrap()) {
        for (x, y) in a.iter().zip(&b) {
            // The runner-up's score is unknown here; a top-1 score near 1/2 or below is close.
            out[1].add(x.entity == y.entity, (x.score - y.score).abs() as f64, (2.0 * x.score - 1.0) as f64, margin);
        }
    }
    // QA: the best answer of each fixture question (short contexts).
    let (f, q) = (model("qa", GgmlType::F32), model("qa", ty));
    let reference = head_reference("qa");
    let qa: Vec<xlmr::QaInput> = reference["cases"][0]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["context"].as_str().unwrap().len() < 1000)
        .map(|i| xlmr::QaInput { question: i["question"].as_str().unwrap(), context: i["context"].as_str().unwrap() })
        .collect();
    let opts = xlmr::QaOptions { top_k: 2, ..Default::default() };
    for (a, b) in f.answer(&qa, &opts).unwrap().iter().zip(q.answer(&qa, &opts).unwrap()) {
        out[2].add(a[0].answer == b[0].answer, (a[0].score - b[0].score).abs(), a[0].score - a.get(1).map_or(0.0, |x| x.score), margin);
    }
    // Multiple choice.
    let (f, q) = (model("multiple-choice", GgmlType::F32), model("multiple-choice", ty));
    let reference = head_reference("multiple-choice");
    let owned: Vec<(String, Vec<String>)> = reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["prompt"].as_str().unwrap().into(), c["choices"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().into()).collect()))
        .collect();
    let mc: Vec<xlmr::Choices> = owned.iter().map(|(p, c)| xlmr::Choices { prompt: p, choices: c.iter().map(|s| s.as_str()).collect() }).collect();
    for (a, b) in f.multiple_choice(&mc, false).unwrap().iter().zip(q.multiple_choice(&mc, false).unwrap()) {
        let err = a.scores.iter().zip(&b.scores).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max);
        let mut sorted = a.scores.clone();
        sorted.sort_by(|x, y| y.total_cmp(x));
        out[3].add(a.best == b.best, err, (sorted[0] - sorted[1]) as f64, margin);
    }
    out
}

/// Quantized weights and int8 activations move logits by a fraction of their spread: Q8_0
/// rounds each weight to 1/254 of its 32-block's range, Q4_K to 1/30 of its 32-sub-block's
/// (rows of 160 fall back to Q8_0 here; only the FFN's 512-wide rows are Q4_K). The fixture's
/// heads sit on a random encoder with wide weights, which amplifies that noise more than a
/// trained model would (measured: README "Fine-tuned models"). What the formats allow, then:
/// no decision whose F32 margin is clear (above 0.05 for Q8_0, 0.2 for Q4_K) may flip, and
/// scores move by at most 0.15 (Q8_0) / 0.35 (Q4_K). Close calls may flip; they are counted.
#[test]
fn quantized_heads_agree_within_what_the_format_allows() {
    for (ty, margin, max_err) in [(GgmlType::Q8_0, 0.05, 0.15), (GgmlType::Q4K, 0.2, 0.35)] {
        let a = quantized_agreement(ty, margin);
        for (task, r) in ["classify", "token-classify", "qa", "multiple-choice"].iter().zip(&a) {
            println!("{}: {task:<16} top-1 agree {}/{}  max score error {:.4}  disagreements above margin {margin}: {}", ty.name(), r.agree, r.total, r.max_err, r.clear_disagreements);
            assert_eq!(r.clear_disagreements, 0, "{} {task}: a clear decision flipped", ty.name());
            assert!(r.max_err <= max_err, "{} {task}: score error {}", ty.name(), r.max_err);
        }
    }
}

// ------------------------------------------------------------------ XXL shape

/// facebook/xlm-roberta-xxl's head dimension (128, against XL's 80) on a tiny model: its
/// classification pipeline output and last hidden state, from transformers.
#[test]
fn xxl_head_dim_128_matches_transformers() {
    let m = model("xxl", GgmlType::F32);
    assert_eq!((m.config.head_dim, m.config.heads), (128, 1));
    for (got, want) in classify_cases(&m, "xxl") {
        for (g, w) in got.iter().zip(&want) {
            for ((gl, gs), (wl, ws)) in g.iter().zip(w) {
                assert_eq!(gl, wl);
                assert!(close(*gs as f64, *ws), "xxl score {gs} vs pipeline {ws}");
            }
        }
    }
    let reference = head_reference("xxl");
    let hidden = &reference["cases"][1];
    let states = m.hidden_states(&[hidden["text"].as_str().unwrap()], Some(&[m.config.layers]), false).unwrap();
    let tokens = &states[0][0];
    for (row, key) in [(0, "last_hidden_state_row0"), (tokens.len() - 1, "last_hidden_state_row_last")] {
        for (g, w) in tokens[row].iter().zip(hidden[key].as_array().unwrap()) {
            let w = w.as_f64().unwrap();
            assert!((*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0), "{key}: {g} vs {w}");
        }
    }
}
