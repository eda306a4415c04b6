//! A micro xlmr GGUF model built in memory (F32 weights, hidden 4, one layer, a 12-token
//! unigram tokenizer), with knobs for the values a hostile file could carry. Shared by the
//! hardening tests and the fuzz targets (fuzz/src/lib.rs includes this file).

use xlmr::gguf::{keys, GgufWriter, Value};
use xlmr::quant::{quantize_row, GgmlType};

const HIDDEN: usize = 4;
const FFN: usize = 8;
const PIECES: [&str; 7] = ["\u{2581}", "a", "b", "c", "\u{2581}a", "\u{2581}b", "\u{2581}c"];
/// `<s> <pad> </s> <unk>`, the pieces, `<mask>`.
pub const TOKENIZER_VOCAB: usize = 4 + PIECES.len() + 1;

pub struct Micro {
    pub vocab: usize,
    pub pad_id: usize,
    pub mask_id: usize,
    pub max_tokens: usize,
    pub tokenizer_json: String,
}

impl Default for Micro {
    fn default() -> Self {
        Micro { vocab: TOKENIZER_VOCAB, pad_id: 1, mask_id: TOKENIZER_VOCAB - 1, max_tokens: 8, tokenizer_json: tokenizer_json() }
    }
}

/// A tokenizer.json of the XLM-R layout (`<s> <pad> </s> <unk>`, pieces, `<mask>` last).
pub fn tokenizer_json() -> String {
    let special = |id: usize, content: &str| {
        format!(
            r#"{{"id":{id},"content":"{content}","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}"#
        )
    };
    let mut vocab: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].iter().map(|t| format!(r#"["{t}",0.0]"#)).collect();
    vocab.extend(PIECES.iter().enumerate().map(|(i, p)| format!(r#"["{p}",-{}.5]"#, i + 1)));
    vocab.push(r#"["<mask>",0.0]"#.into());
    let metaspace = r#"{"type":"Metaspace","replacement":"\u2581","prepend_scheme":"always","split":true}"#;
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{},{},{},{},{}],"normalizer":null,"pre_tokenizer":{metaspace},"post_processor":{{"type":"RobertaProcessing","sep":["</s>",2],"cls":["<s>",0],"trim_offsets":true,"add_prefix_space":true}},"decoder":{metaspace},"model":{{"type":"Unigram","unk_id":3,"vocab":[{}],"byte_fallback":false}}}}"#,
        special(0, "<s>"),
        special(1, "<pad>"),
        special(2, "</s>"),
        special(3, "<unk>"),
        special(TOKENIZER_VOCAB - 1, "<mask>"),
        vocab.join(",")
    )
}

impl Micro {
    /// A complete xlmr GGUF file (MLM head, tied decoder) of a few kilobytes.
    pub fn gguf(&self) -> Vec<u8> {
        let (h, vocab, pad) = (HIDDEN, self.vocab, self.pad_id);
        let mut w = GgufWriter::new();
        let u = |v: usize| Value::U32(v as u32);
        w.add(keys::GENERAL_ARCHITECTURE, Value::String(keys::ARCH.into()));
        w.add(keys::GENERAL_ALIGNMENT, Value::U32(32));
        w.add(keys::CONTEXT_LENGTH, u(self.max_tokens));
        w.add(keys::EMBEDDING_LENGTH, u(h));
        w.add(keys::BLOCK_COUNT, u(1));
        w.add(keys::FEED_FORWARD_LENGTH, u(FFN));
        w.add(keys::HEAD_COUNT, u(1));
        w.add(keys::LAYER_NORM_EPS, Value::F32(1e-5));
        w.add(keys::VOCAB_SIZE, u(vocab));
        w.add(keys::TYPE_VOCAB_SIZE, u(1));
        w.add(keys::PAD_TOKEN_ID, u(pad));
        w.add(keys::HAS_MLM_HEAD, Value::Bool(true));
        w.add(keys::MASK_ID, u(self.mask_id));
        w.add(keys::TOKENIZER_HF_JSON, Value::String(self.tokenizer_json.clone()));

        use keys::tensor as t;
        // (name, PyTorch shape): every tensor Weights::load asks for.
        let mut tensors: Vec<(String, Vec<usize>)> = vec![
            (t::TOKEN_EMBD.into(), vec![vocab, h]),
            (t::POSITION_EMBD.into(), vec![pad + 1 + self.max_tokens, h]),
            (t::TOKEN_TYPES.into(), vec![1, h]),
            (format!("{}.weight", t::OUTPUT_NORM), vec![h]),
            (format!("{}.bias", t::OUTPUT_NORM), vec![h]),
            (format!("{}.weight", t::MLM_DENSE), vec![h, h]),
            (format!("{}.bias", t::MLM_DENSE), vec![h]),
            (format!("{}.weight", t::MLM_NORM), vec![h]),
            (format!("{}.bias", t::MLM_NORM), vec![h]),
            (t::MLM_BIAS.into(), vec![vocab]),
        ];
        for (module, out, inp) in
            [(t::ATTN_Q, h, h), (t::ATTN_K, h, h), (t::ATTN_V, h, h), (t::ATTN_OUT, h, h), (t::FFN_UP, FFN, h), (t::FFN_DOWN, h, FFN)]
        {
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
            let values: Vec<f32> = (0..n)
                .map(|i| if name.ends_with("norm.weight") { 1.0 } else { ((i * 7 + k * 3) % 11) as f32 * 0.05 - 0.25 })
                .collect();
            let mut bytes = Vec::new();
            quantize_row(GgmlType::F32, &values, &mut bytes);
            w.write_tensor(&mut out, id, &bytes).expect("writes to a Vec");
        }
        w.finish().expect("complete");
        out
    }
}
