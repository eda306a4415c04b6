//! The XLM-RoBERTa-XL encoder forward pass (transformers' `XLMRobertaXLModel`):
//! pre-LayerNorm blocks, no embedding LayerNorm, final encoder LayerNorm.
//! Residual stream, LayerNorm and softmax in f32; matmuls through `kernels`.

use super::config::ModelConfig;
use super::packed::{PackedLayer, PackedWeights};
use super::profile::{timed, Op, Profile};
use super::weights::{Layer, Weights};
use crate::kernels::{attention, gelu_erf, gemm, gemm_has_kernel, isa, layer_norm, matmul, matmul_with_scratch, Epilogue, MatmulScratch, QMatrix, QkvLayout};
use crate::quant::dequantize;

/// Work buffers for one batch shape, allocated once and reused by every layer.
pub struct Scratch {
    /// Residual stream `[n, hidden]`.
    pub x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    /// `[n, ffn]`.
    up: Vec<f32>,
    /// Quantized activations, reused by every matmul.
    mm: MatmulScratch,
    /// Per-op times, when profiling (`xlmr bench --profile`).
    pub profile: Option<Profile>,
}

impl Scratch {
    pub fn new(c: &ModelConfig, n: usize) -> Self {
        let (x, h, q, k, v, attn, up) = Default::default();
        let mut s = Scratch { x, h, q, k, v, attn, up, mm: MatmulScratch::new(), profile: None };
        s.resize(c, n);
        s
    }

    /// Sizes the buffers for `n` token rows, keeping their memory: a reused scratch
    /// costs no page faults (fresh multi-megabyte buffers are zeroed page by page by the
    /// kernel, ~8 % of a forward pass at 128 tokens).
    pub fn resize(&mut self, c: &ModelConfig, n: usize) {
        for buf in [&mut self.x, &mut self.h, &mut self.q, &mut self.k, &mut self.v, &mut self.attn] {
            buf.resize(n * c.hidden, 0.0);
        }
        self.up.resize(n * c.ffn, 0.0);
        self.profile = None;
    }
}

/// A batch of token-id sequences padded to one length `t` (right padding).
pub struct Batch {
    pub ids: Vec<u32>,
    /// `[b * t]`, true for real tokens.
    pub mask: Vec<bool>,
    pub b: usize,
    pub t: usize,
}

impl Batch {
    pub fn new(seqs: &[&[u32]], pad_id: u32) -> Self {
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = vec![pad_id; seqs.len() * t];
        let mut mask = vec![false; seqs.len() * t];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * t..i * t + s.len()].copy_from_slice(s);
            mask[i * t..i * t + s.len()].fill(true);
        }
        Batch { ids, mask, b: seqs.len(), t }
    }
}

/// Position ids as transformers computes them: padding_idx + running count of non-pad
/// tokens; pad tokens keep padding_idx.
pub fn position_ids(ids: &[u32], pad_id: u32) -> Vec<usize> {
    let mut count = 0usize;
    ids.iter()
        .map(|&id| {
            if id == pad_id {
                pad_id as usize
            } else {
                count += 1;
                pad_id as usize + count
            }
        })
        .collect()
}

// x: [b * t, hidden] <- word_emb[ids] + pos_emb[pos] + type_emb[0]
fn embed(w: &Weights, c: &ModelConfig, batch: &Batch, x: &mut [f32]) {
    let h = c.hidden;
    let row_bytes = w.token_embd.ty.row_bytes(h).expect("validated at load");
    for s in 0..batch.b {
        let ids = &batch.ids[s * batch.t..(s + 1) * batch.t];
        for (i, (&id, pos)) in ids.iter().zip(position_ids(ids, c.pad_id)).enumerate() {
            let row = &mut x[(s * batch.t + i) * h..(s * batch.t + i + 1) * h];
            let id = id as usize;
            dequantize(w.token_embd.ty, &w.token_embd.data[id * row_bytes..(id + 1) * row_bytes], row).expect("validated at load");
            let p = &w.position_embd[pos * h..(pos + 1) * h];
            let ty = &w.token_types[..h];
            for ((o, a), b) in row.iter_mut().zip(p).zip(ty) {
                *o += a + b;
            }
        }
    }
}

/// (int8 ops, weight bytes) of a `[rows, cols]` matmul over `n` tokens, for profiles.
fn matmul_work(w: &QMatrix, n: usize) -> (f64, f64) {
    (2.0 * (w.rows * w.cols * n) as f64, w.data.len() as f64)
}

const NO_WORK: (f64, f64) = (0.0, 0.0);

/// Moves the activation quantization time of the last matmul out of `op` into its own line.
fn split_quant_time(profile: &mut Option<Profile>, op: Op, mm: &mut MatmulScratch) {
    let q = mm.take_quant_time();
    if let Some(p) = profile {
        if let Some(s) = p.ops.get_mut(&op) {
            s.time = s.time.saturating_sub(q);
        }
        p.add(Op::Quantize, q, 0.0, 0.0);
    }
}

// s.x: [n, hidden] updated in place: x += attn(LN(x)); x += ffn(LN(x))
fn layer_forward(layer: &Layer, packed: Option<&PackedLayer>, c: &ModelConfig, batch: &Batch, s: &mut Scratch) {
    let (h, n) = (c.hidden, batch.b * batch.t);
    let mut prof = s.profile.take();
    timed(&mut prof, Op::AttnNorm, NO_WORK, || layer_norm(&s.x, layer.attn_norm.w, layer.attn_norm.b, c.eps, &mut s.h, h));
    let qkv_work = [&layer.q, &layer.k, &layer.v].iter().map(|l| matmul_work(&l.w, n)).fold(NO_WORK, |a, b| (a.0 + b.0, a.1 + b.1));
    timed(&mut prof, Op::Qkv, qkv_work, || match packed {
        // One quantization of LN(x) and one pass for Q, K and V.
        // Head-major, so attention reads each head's rows contiguously.
        Some(p) => gemm(&p.qkv, &s.h, n, Some(&p.qkv_bias), &mut [&mut s.q, &mut s.k, &mut s.v], Epilogue::StoreHeads(c.head_dim), &mut s.mm),
        None => {
            for (lin, out) in [(&layer.q, &mut s.q), (&layer.k, &mut s.k), (&layer.v, &mut s.v)] {
                matmul_with_scratch(&lin.w, &s.h, Some(lin.b), out, n, false, &mut s.mm);
            }
        }
    });
    split_quant_time(&mut prof, Op::Qkv, &mut s.mm);
    timed(&mut prof, Op::Attention, NO_WORK, || attend(c, batch, packed.is_some(), s));
    let (out_w, up_w, down_w) = (&layer.attn_out, &layer.ffn_up, &layer.ffn_down);
    timed(&mut prof, Op::AttnOut, matmul_work(&out_w.w, n), || match packed {
        Some(p) => gemm(&p.attn_out, &s.attn, n, Some(out_w.b), &mut [&mut s.x], Epilogue::Accumulate, &mut s.mm),
        None => matmul_with_scratch(&out_w.w, &s.attn, Some(out_w.b), &mut s.x, n, true, &mut s.mm),
    });
    split_quant_time(&mut prof, Op::AttnOut, &mut s.mm);
    timed(&mut prof, Op::FfnNorm, NO_WORK, || layer_norm(&s.x, layer.ffn_norm.w, layer.ffn_norm.b, c.eps, &mut s.h, h));
    timed(&mut prof, Op::FfnUp, matmul_work(&up_w.w, n), || match packed {
        // GELU in the epilogue, while the tile is still in cache.
        Some(p) => gemm(&p.ffn_up, &s.h, n, Some(up_w.b), &mut [&mut s.up], Epilogue::Gelu, &mut s.mm),
        None => matmul_with_scratch(&up_w.w, &s.h, Some(up_w.b), &mut s.up, n, false, &mut s.mm),
    });
    split_quant_time(&mut prof, Op::FfnUp, &mut s.mm);
    if packed.is_none() {
        timed(&mut prof, Op::Gelu, NO_WORK, || gelu_erf(&mut s.up));
    }
    timed(&mut prof, Op::FfnDown, matmul_work(&down_w.w, n), || match packed {
        Some(p) => gemm(&p.ffn_down, &s.up, n, Some(down_w.b), &mut [&mut s.x], Epilogue::Accumulate, &mut s.mm),
        None => matmul_with_scratch(&down_w.w, &s.up, Some(down_w.b), &mut s.x, n, true, &mut s.mm),
    });
    split_quant_time(&mut prof, Op::FfnDown, &mut s.mm);
    s.profile = prof;
}

// s.attn[b, :len] = attention(s.q, s.k, s.v) over each input's real tokens; q, k and v
// head-major (as the packed QKV GEMM writes them) or token-major (the unpacked matmuls).
fn attend(c: &ModelConfig, batch: &Batch, head_major: bool, s: &mut Scratch) {
    let (h, t) = (c.hidden, batch.t);
    for b in 0..batch.b {
        // Right padding: the real tokens are a prefix. Attending over exactly those (not
        // over masked padding) gives each input the same arithmetic as when run alone.
        let len = batch.mask[b * t..(b + 1) * t].iter().filter(|&&m| m).count();
        let r = b * t * h..(b * t + len) * h;
        let (qkv, layout) = if head_major {
            (0..s.q.len(), QkvLayout::HeadMajor { rows: batch.b * t, first_row: b * t })
        } else {
            (r.clone(), QkvLayout::TokenMajor)
        };
        let mask = &batch.mask[b * t..b * t + len];
        attention(&s.q[qkv.clone()], &s.k[qkv.clone()], &s.v[qkv], layout, mask, len, c.heads, c.head_dim, &mut s.attn[r]);
        // Padding rows are never read back; keep them finite for the next matmuls.
        s.attn[(b * t + len) * h..(b + 1) * t * h].fill(0.0);
    }
}

/// Runs the encoder over `batch`. `on_hidden(i, states)` sees transformers'
/// `hidden_states[i]` (`[b * t, hidden]`): 0 the embeddings, i the output of layer i,
/// and the last one after the final LayerNorm (unless `c.final_norm` is false: an encoder
/// cut below its top) — which is also left in `s.h`.
/// `packed` (the same weights in the GEMM layout) is used when the kernels in force
/// have a packed GEMM.
pub fn forward(w: &Weights, packed: Option<&PackedWeights>, c: &ModelConfig, batch: &Batch, s: &mut Scratch, mut on_hidden: impl FnMut(usize, &[f32])) {
    embed(w, c, batch, &mut s.x);
    on_hidden(0, &s.x);
    let packed = packed.filter(|_| gemm_has_kernel(isa()));
    for (i, layer) in w.layers.iter().enumerate() {
        layer_forward(layer, packed.map(|p| &p.layers[i]), c, batch, s);
        if i + 1 < c.layers {
            on_hidden(i + 1, &s.x);
        }
    }
    if c.final_norm {
        layer_norm(&s.x, w.output_norm.w, w.output_norm.b, c.eps, &mut s.h, c.hidden);
    } else {
        s.h.copy_from_slice(&s.x);
    }
    on_hidden(c.layers, &s.h);
}

/// MLM logits for the given rows of the final hidden states.
// x: [m, hidden] -> [m, vocab]
pub fn mlm_logits(w: &Weights, c: &ModelConfig, x: &[f32], m: usize) -> Vec<f32> {
    let head = w.mlm.as_ref().expect("caller checks has_mlm_head");
    let mut d = vec![0.0f32; m * c.hidden];
    matmul(&head.dense.w, x, Some(head.dense.b), &mut d, m);
    gelu_erf(&mut d);
    let mut n = vec![0.0f32; m * c.hidden];
    layer_norm(&d, head.norm.w, head.norm.b, c.eps, &mut n, c.hidden);
    let mut logits = vec![0.0f32; m * c.vocab];
    matmul(&head.decoder, &n, Some(head.bias), &mut logits, m);
    logits
}

#[cfg(test)]
mod tests {
    use super::position_ids;

    #[test]
    fn positions_skip_padding() {
        assert_eq!(position_ids(&[0, 5, 6, 2, 1, 1], 1), vec![2, 3, 4, 5, 1, 1]);
    }
}
