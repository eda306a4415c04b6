//! Metadata keys and tensor names used in xlmr's GGUF files. Hyperparameters follow
//! llama.cpp's `[arch].*` convention.

/// Value of `general.architecture`.
pub const ARCH: &str = "xlm-roberta-xl";

pub const GENERAL_ARCHITECTURE: &str = "general.architecture";
pub const GENERAL_NAME: &str = "general.name";
pub const GENERAL_ALIGNMENT: &str = "general.alignment";
pub const GENERAL_FILE_TYPE: &str = "general.file_type";
pub const GENERAL_QUANTIZATION_VERSION: &str = "general.quantization_version";

pub const CONTEXT_LENGTH: &str = "xlm-roberta-xl.context_length";
pub const EMBEDDING_LENGTH: &str = "xlm-roberta-xl.embedding_length";
pub const BLOCK_COUNT: &str = "xlm-roberta-xl.block_count";
pub const FEED_FORWARD_LENGTH: &str = "xlm-roberta-xl.feed_forward_length";
pub const HEAD_COUNT: &str = "xlm-roberta-xl.attention.head_count";
pub const LAYER_NORM_EPS: &str = "xlm-roberta-xl.attention.layer_norm_epsilon";
pub const VOCAB_SIZE: &str = "xlm-roberta-xl.vocab_size";
pub const TYPE_VOCAB_SIZE: &str = "xlm-roberta-xl.type_vocab_size";
pub const PAD_TOKEN_ID: &str = "xlm-roberta-xl.pad_token_id";
/// Whether the file carries the MLM head (converted from ...ForMaskedLM).
pub const HAS_MLM_HEAD: &str = "xlm-roberta-xl.has_mlm_head";
/// Whether the last hidden state goes through `output_norm` (absent: true). False for
/// encoders cut below their top layer (COMET models that need only the lower layers).
pub const FINAL_NORM: &str = "xlm-roberta-xl.final_norm";

pub const TOKENIZER_HF_JSON: &str = "tokenizer.huggingface.json";
pub const TOKENIZER_MODEL: &str = "tokenizer.ggml.model";
pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
pub const MASK_ID: &str = "tokenizer.ggml.mask_token_id";

/// GGUF tensor names, llama.cpp style (`blk.N.*`), for the XL (pre-LayerNorm) encoder.
pub mod tensor {
    pub const TOKEN_EMBD: &str = "token_embd.weight";
    pub const POSITION_EMBD: &str = "position_embd.weight";
    pub const TOKEN_TYPES: &str = "token_types.weight";
    pub const OUTPUT_NORM: &str = "output_norm";
    pub const MLM_DENSE: &str = "mlm.dense";
    pub const MLM_NORM: &str = "mlm.norm";
    /// Present only when the checkpoint's decoder is not tied to the word embedding.
    pub const MLM_DECODER: &str = "mlm.decoder.weight";
    pub const MLM_BIAS: &str = "mlm.bias";

    /// Per-layer module prefixes; append `.weight` / `.bias`.
    pub fn blk(layer: usize, module: &str) -> String {
        format!("blk.{layer}.{module}")
    }
    pub const ATTN_NORM: &str = "attn_norm";
    pub const ATTN_Q: &str = "attn_q";
    pub const ATTN_K: &str = "attn_k";
    pub const ATTN_V: &str = "attn_v";
    pub const ATTN_OUT: &str = "attn_output";
    pub const FFN_NORM: &str = "ffn_norm";
    pub const FFN_UP: &str = "ffn_up";
    pub const FFN_DOWN: &str = "ffn_down";
}

/// Task head of a fine-tuned checkpoint (absent for XLMRobertaXLModel / ...ForMaskedLM):
/// `sequence-classification`, `token-classification`, `question-answering`, `multiple-choice`.
pub const HEAD_KIND: &str = "xlm-roberta-xl.head.kind";
/// Rows of the head's output layer (labels; 2 for QA; 1 for multiple choice).
pub const HEAD_NUM_LABELS: &str = "xlm-roberta-xl.head.num_labels";
/// transformers' `problem_type` when the config sets it: `single_label_classification`,
/// `multi_label_classification` or `regression`.
pub const HEAD_PROBLEM_TYPE: &str = "xlm-roberta-xl.head.problem_type";
/// `id2label` as an array of strings in label-id order; llama.cpp's key for the same thing.
pub const HEAD_LABELS: &str = "xlm-roberta-xl.classifier.output_labels";

/// GGUF tensor names of the task heads, llama.cpp style where llama.cpp has one.
pub mod head_tensor {
    /// The classification head's `dense` (and multiple choice's pooler, as llama.cpp maps BERT's).
    pub const CLS: &str = "cls";
    /// The classification head's `out_proj`, or the token-classification / multiple-choice `classifier`.
    pub const CLS_OUT: &str = "cls.output";
    /// Question answering's `qa_outputs` (rows: start, end).
    pub const QA_OUT: &str = "qa.output";
}
