//! The runtime against transformers' own XLMRobertaXLForMaskedLM on the committed tiny
//! fixtures: token ids, every layer's hidden states, fill-mask, batching.

mod common;
use common::*;
use xlmr::quant::GgmlType;
use xlmr::Model;

/// Every hidden state of every input within 1e-4 x max|value| of transformers (F32 GGUF).
fn check_hidden_states_f32(dir: &std::path::Path, reference_dir: &std::path::Path) {
    let r = reference(reference_dir);
    let model = Model::load(converted(dir, GgmlType::F32)).unwrap();
    let texts: Vec<&str> = r.inputs.iter().map(|i| i.text.as_str()).collect();
    let ours = model.hidden_states(&texts, None, false).unwrap();
    for (inp, got) in r.inputs.iter().zip(&ours) {
        assert_eq!(got.len(), r.num_layers + 1);
        let seq = inp.input_ids.len();
        for (l, layer) in got.iter().enumerate() {
            let want = &inp.hidden[l * seq * r.hidden_size..(l + 1) * seq * r.hidden_size];
            let got: Vec<f32> = layer.concat();
            let tol = 1e-4 * max_abs(want);
            let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= tol, "{:?} layer {l}: max diff {worst} > {tol}", inp.text);
        }
    }
}

#[test]
fn token_ids_match_transformers() {
    for dir in [tiny(), tiny_untied()] {
        let r = reference(&dir);
        let model = Model::load(converted(&dir, GgmlType::F32)).unwrap();
        for inp in &r.inputs {
            assert_eq!(model.tokenizer.encode(&inp.text, false).unwrap(), inp.input_ids, "{:?}", inp.text);
        }
    }
}

#[test]
fn hidden_states_match_transformers_tied() {
    check_hidden_states_f32(&tiny(), &tiny());
}

#[test]
fn hidden_states_match_transformers_untied_sharded() {
    check_hidden_states_f32(&tiny_untied(), &tiny_untied());
}

#[test]
fn hidden_states_match_transformers_from_pytorch_bin() {
    check_hidden_states_f32(&tiny_bin(), &tiny());
}

#[test]
fn fill_mask_matches_transformers_pipeline() {
    for dir in [tiny(), tiny_untied()] {
        let r = reference(&dir);
        let model = Model::load(converted(&dir, GgmlType::F32)).unwrap();
        let with_mask: Vec<_> = r.inputs.iter().filter(|i| !i.mask_positions.is_empty()).collect();
        let texts: Vec<&str> = with_mask.iter().map(|i| i.text.as_str()).collect();
        let ours = model.fill_mask(&texts, 5, false).unwrap();
        for (inp, masks) in with_mask.iter().zip(&ours) {
            let want = inp.fill_mask.as_array().unwrap();
            assert_eq!(masks.len(), want.len());
            for (got, want) in masks.iter().zip(want) {
                let want = want.as_array().unwrap();
                for (g, w) in got.iter().zip(want) {
                    assert_eq!(g.token as u64, w["token"].as_u64().unwrap(), "{:?}", inp.text);
                    let ws = w["score"].as_f64().unwrap() as f32;
                    assert!((g.score - ws).abs() <= 1e-5, "{:?}: score {} vs {ws}", inp.text, g.score);
                    assert_eq!(g.token_str, w["token_str"].as_str().unwrap());
                    assert_eq!(g.sequence, w["sequence"].as_str().unwrap());
                }
            }
        }
    }
}

#[test]
fn padded_batch_equals_one_by_one() {
    let r = reference(&tiny());
    let mut model = Model::load(converted(&tiny(), GgmlType::Q8_0)).unwrap();
    let texts: Vec<&str> = r.inputs.iter().map(|i| i.text.as_str()).collect();
    model.batch_size = texts.len();
    let batched = model.hidden_states(&texts, None, false).unwrap();
    model.batch_size = 1;
    for (t, b) in texts.iter().zip(&batched) {
        let alone = model.hidden_states(&[t], None, false).unwrap();
        for (l, (x, y)) in alone[0].iter().zip(b).enumerate() {
            let (x, y) = (x.concat(), y.concat());
            let tol = 1e-5 * max_abs(&x).max(1.0);
            let worst = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= tol, "{t:?} layer {l}: batched differs by {worst}");
        }
    }
}

/// End to end, each GGUF type against the original f32 model (transformers): F16 must keep
/// per-token cosine >= 0.999 and every top-1. The quantized types' numbers are printed for
/// the README: they combine the format's loss (weights; asserted in tests/dequant_reference.rs)
/// and the runtime's int8 activations, amplified by the fixture's large random weights.
#[test]
fn quantization_loss_against_original_model() {
    let r = reference(&tiny());
    let texts: Vec<&str> = r.inputs.iter().map(|i| i.text.as_str()).collect();
    let last = r.num_layers;
    for ty in [GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
        let model = Model::load(converted(&tiny(), ty)).unwrap();
        let hs = model.hidden_states(&texts, Some(&[last]), false).unwrap();
        let mut min_cos = 1.0f32;
        for (inp, got) in r.inputs.iter().zip(&hs) {
            let seq = inp.input_ids.len();
            let want = &inp.hidden[last * seq * r.hidden_size..(last + 1) * seq * r.hidden_size];
            for (t, tok) in got[0].iter().enumerate() {
                min_cos = min_cos.min(cosine(tok, &want[t * r.hidden_size..(t + 1) * r.hidden_size]));
            }
        }
        let with_mask: Vec<_> = r.inputs.iter().filter(|i| !i.mask_positions.is_empty()).collect();
        let masked: Vec<&str> = with_mask.iter().map(|i| i.text.as_str()).collect();
        let preds = model.fill_mask(&masked, 5, false).unwrap();
        let (mut n, mut top1, mut top5) = (0, 0, 0);
        for (inp, masks) in with_mask.iter().zip(&preds) {
            for (got, want) in masks.iter().zip(inp.fill_mask.as_array().unwrap()) {
                let want: Vec<u64> = want.as_array().unwrap().iter().map(|w| w["token"].as_u64().unwrap()).collect();
                n += 1;
                top1 += (got[0].token as u64 == want[0]) as usize;
                top5 += got.iter().filter(|g| want.contains(&(g.token as u64))).count();
            }
        }
        eprintln!("{ty}: min per-token cosine {min_cos:.5}, top-1 agreement {top1}/{n}, top-5 overlap {top5}/{}", 5 * n);
        if ty == GgmlType::F16 {
            assert!(min_cos >= 0.999, "{ty}: min cosine {min_cos}");
            assert_eq!(top1, n, "{ty}: top-1 changed");
        }
    }
}
