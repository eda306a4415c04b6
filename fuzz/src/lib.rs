//! Helpers shared by the fuzz targets: a scratch file per process (the readers under test
//! take paths, since they memory-map), reading every tensor a weight source lists, and a
//! micro model (F32 weights, hidden 4, a 12-token tokenizer) used as a seed and as the
//! model the C API target runs texts through.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xlmr::convert::source::WeightSource;
use xlmr::gguf::{keys, GgufWriter, Value};
use xlmr::quant::{quantize_row, GgmlType};

/// A private folder for this fuzzing process, removed by the OS's tmp cleaning.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("xlmr-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Writes `data` to `name` inside the scratch folder and returns the path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// Reads (a bounded prefix of) every tensor the source lists, as the converter would.
pub fn read_every_tensor(source: &dyn WeightSource) {
    let _ = source.describe();
    for name in source.names() {
        if let Ok(Some(t)) = source.get(&name) {
            let n = t.n_elements().min(256);
            let mut out = vec![0f32; n];
            t.read_f32(0, &mut out);
            let n_all = t.n_elements();
            if n_all > n {
                t.read_f32(n_all - n, &mut out);
            }
            source.release(t.bytes);
        }
    }
}

pub const MICRO_HIDDEN: usize = 4;
const MICRO_FFN: usize = 8;
const MICRO_MAX_TOKENS: usize = 8;
const MICRO_PIECES: [&str; 7] = ["\u{2581}", "a", "b", "c", "\u{2581}a", "\u{2581}b", "\u{2581}c"];

/// A tokenizer.json of the XLM-R layout (`<s> <pad> </s> <unk>`, pieces, `<mask>` last).
pub fn micro_tokenizer_json() -> String {
    let special = |id: usize, content: &str| {
        format!(
            r#"{{"id":{id},"content":"{content}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
        )
    };
    let mask_id = 4 + MICRO_PIECES.len();
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|t| format!(r#"["{t}",0.0]"#)).collect();
    vocab.extend(MICRO_PIECES.iter().enumerate().map(|(i, p)| format!(r#"["{p}",-{}.5]"#, i + 1)));
    vocab.push(r#"["<mask>",0.0]"#.into());
    let metaspace = r#"{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true}"#;
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{},{},{},{},{}],"normalizer":null,"pre_tokenizer":{metaspace},"post_processor":{{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0],"trim_offsets":true,"add_prefix_space":true}},"decoder":{metaspace},"model":{{"type":"Unigram","unk_id":3,"vocab":[{}],"byte_fallback":false}}}}"#,
        special(0, "<s>"),
        special(1, "<pad>"),
        special(2, "</s>"),
        special(3, "<unk>"),
        special(mask_id, "<mask>"),
        vocab.join(",")
    )
}

/// A complete, valid xlmr GGUF file (MLM head, tied decoder) of a few kilobytes.
pub fn micro_gguf() -> Vec<u8> {
    let (h, vocab, pad) = (MICRO_HIDDEN, 4 + MICRO_PIECES.len() + 1, 1usize);
    let mut w = GgufWriter::new();
    let u = |v: usize| Value::U32(v as u32);
    w.add(keys::GENERAL_ARCHITECTURE, Value::String(keys::ARCH.into()));
    w.add(keys::GENERAL_ALIGNMENT, Value::U32(32));
    w.add(keys::CONTEXT_LENGTH, u(MICRO_MAX_TOKENS));
    w.add(keys::EMBEDDING_LENGTH, u(h));
    w.add(keys::BLOCK_COUNT, u(1));
    w.add(keys::FEED_FORWARD_LENGTH, u(MICRO_FFN));
    w.add(keys::HEAD_COUNT, u(1));
    w.add(keys::LAYER_NORM_EPS, Value::F32(1e-5));
    w.add(keys::VOCAB_SIZE, u(vocab));
    w.add(keys::TYPE_VOCAB_SIZE, u(1));
    w.add(keys::PAD_TOKEN_ID, u(pad));
    w.add(keys::HAS_MLM_HEAD, Value::Bool(true));
    w.add(keys::MASK_ID, u(vocab - 1));
    w.add(keys::TOKENIZER_HF_JSON, Value::String(micro_tokenizer_json()));

    use keys::tensor as t;
    // (name, PyTorch shape): every tensor Weights::load asks for.
    let mut tensors: Vec<(String, Vec<usize>)> = vec![
        (t::TOKEN_EMBD.into(), vec![vocab, h]),
        (t::POSITION_EMBD.into(), vec![pad + 1 + MICRO_MAX_TOKENS, h]),
        (t::TOKEN_TYPES.into(), vec![1, h]),
        (format!("{}.weight", t::OUTPUT_NORM), vec![h]),
        (format!("{}.bias", t::OUTPUT_NORM), vec![h]),
        (format!("{}.weight", t::MLM_DENSE), vec![h, h]),
        (format!("{}.bias", t::MLM_DENSE), vec![h]),
        (format!("{}.weight", t::MLM_NORM), vec![h]),
        (format!("{}.bias", t::MLM_NORM), vec![h]),
        (t::MLM_BIAS.into(), vec![vocab]),
    ];
    for (module, out, inp) in [
        (t::ATTN_Q, h, h),
        (t::ATTN_K, h, h),
        (t::ATTN_V, h, h),
        (t::ATTN_OUT, h, h),
        (t::FFN_UP, MICRO_FFN, h),
        (t::FFN_DOWN, h, MICRO_FFN),
    ] {
        tensors.push((format!("{}.weight", t::blk(0, module)), vec![out, inp]));
        tensors.push((format!("{}.bias", t::blk(0, module)), vec![out]));
    }
    for module in [t::ATTN_NORM, t::FFN_NORM] {
        tensors.push((format!("{}.weight", t::blk(0, module)), vec![h]));
        tensors.push((format!("{}.bias", t::blk(0, module)), vec![h]));
    }
    let ids: Vec<usize> = tensors
        .iter()
        .map(|(name, shape)| {
            let dims: Vec<usize> = shape.iter().rev().copied().collect();
            w.add_tensor(name, &dims, GgmlType::F32)
        })
        .collect();
    let mut out = Vec::new();
    w.write_header(&mut out).expect("writes to a Vec");
    for (k, ((name, shape), id)) in tensors.iter().zip(ids).enumerate() {
        let n: usize = shape.iter().product();
        // Norm weights 1, everything else small distinct values.
        let values: Vec<f32> =
            (0..n).map(|i| if name.ends_with("norm.weight") { 1.0 } else { ((i * 7 + k * 3) % 11) as f32 * 0.05 - 0.25 }).collect();
        let mut bytes = Vec::new();
        quantize_row(GgmlType::F32, &values, &mut bytes);
        w.write_tensor(&mut out, id, &bytes).expect("writes to a Vec");
    }
    w.finish().expect("complete");
    out
}
