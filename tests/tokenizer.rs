//! Tokenization through the GGUF-embedded tokenizer.json against transformers'
//! XLMRobertaTokenizerFast on many languages and odd input (tests/fixtures/tokenizer_cases.json).

mod common;
use xlmr::tokenizer::Tokenizer;

fn cases() -> (serde_json::Value, String) {
    let root = common::root();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/tokenizer_cases.json")).unwrap()).unwrap();
    let json = std::fs::read_to_string(root.join("models/tiny-xlmr-xl/tokenizer.json")).unwrap();
    (cases, json)
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn single_texts_match_transformers() {
    let (cases, json) = cases();
    let tok = Tokenizer::from_json(&json, 512).unwrap();
    let mut checked = 0;
    for c in cases["cases"].as_array().unwrap().iter().filter(|c| c["text_pair"].is_null()) {
        let text = c["text"].as_str().unwrap();
        let want = ids(&c["ids"]);
        if want.len() > 512 {
            continue;
        }
        assert_eq!(tok.encode(text, false).unwrap(), want, "case {}", c["name"]);
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} cases checked");
}

#[test]
fn pairs_match_transformers() {
    let (cases, json) = cases();
    let tok: tokenizers::Tokenizer = json.parse().unwrap();
    for c in cases["cases"].as_array().unwrap().iter().filter(|c| !c["text_pair"].is_null()) {
        let (a, b) = (c["text"].as_str().unwrap(), c["text_pair"].as_str().unwrap());
        // transformers treats an empty second text as no pair at all.
        let enc = if b.is_empty() { tok.encode(a, true) } else { tok.encode((a, b), true) }.unwrap();
        assert_eq!(enc.get_ids(), ids(&c["ids"]).as_slice(), "case {}", c["name"]);
    }
}

#[test]
fn too_long_input_is_an_error_unless_truncated() {
    let (_, json) = cases();
    let tok = Tokenizer::from_json(&json, 16).unwrap();
    let long = "word ".repeat(40);
    let err = tok.encode(&long, false).unwrap_err().to_string();
    assert!(err.contains("more than the model's 16") && err.contains("--truncate"), "{err}");
    let cut = tok.encode(&long, true).unwrap();
    assert_eq!(cut.len(), 16);
    assert_eq!((cut[0], cut[15]), (0, 2), "truncation keeps <s> ... </s>");
}
