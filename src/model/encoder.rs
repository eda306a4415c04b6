//! The XLM-RoBERTa-XL encoder forward pass (transformers' `XLMRobertaXLModel`):
//! pre-LayerNorm blocks, no embedding LayerNorm, final encoder LayerNorm.
//! Residual stream, LayerNorm and softmax in f32; matmuls through `kernels`.

use super::config::ModelConfig;
use super::weights::{Layer, Weights};
use crate::kernels::{attention, gelu_erf, layer_norm, matmul, matmul_with_scratch, MatmulScratch, QMatrix};
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
}

impl Scratch {
    pub fn new(c: &ModelConfig, n: usize) -> Self {
        let z = |len: usize| vec![0.0f32; len];
        Scratch { x: z(n * c.hidden), h: z(n * c.hidden), q: z(n * c.hidden), k: z(n * c.hidden), v: z(n * c.hidden), attn: z(n * c.hidden), up: z(n * c.ffn), mm: MatmulScratch::new() }
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

// s.x: [n, hidden] updated in place: x += attn(LN(x)); x += ffn(LN(x))
fn layer_forward(layer: &Layer, c: &ModelConfig, batch: &Batch, s: &mut Scratch) {
    let (h, n, t) = (c.hidden, batch.b * batch.t, batch.t);
    let mm = &mut s.mm;
    // y = x W^T + b (or y += ... when `acc`), reusing the activation buffers.
    let mut linear = |w: &QMatrix, b: &[f32], x: &[f32], y: &mut [f32], acc: bool| matmul_with_scratch(w, x, Some(b), y, n, acc, mm);
    layer_norm(&s.x, layer.attn_norm.w, layer.attn_norm.b, c.eps, &mut s.h, h);
    linear(&layer.q.w, layer.q.b, &s.h, &mut s.q, false);
    linear(&layer.k.w, layer.k.b, &s.h, &mut s.k, false);
    linear(&layer.v.w, layer.v.b, &s.h, &mut s.v, false);
    for b in 0..batch.b {
        // Right padding: the real tokens are a prefix. Attending over exactly those (not
        // over masked padding) gives each input the same arithmetic as when run alone.
        let len = batch.mask[b * t..(b + 1) * t].iter().filter(|&&m| m).count();
        let r = b * t * h..(b * t + len) * h;
        attention(&s.q[r.clone()], &s.k[r.clone()], &s.v[r.clone()], &batch.mask[b * t..b * t + len], len, c.heads, c.head_dim, &mut s.attn[r]);
        // Padding rows are never read back; keep them finite for the next matmuls.
        s.attn[(b * t + len) * h..(b + 1) * t * h].fill(0.0);
    }
    linear(&layer.attn_out.w, layer.attn_out.b, &s.attn, &mut s.x, true);
    layer_norm(&s.x, layer.ffn_norm.w, layer.ffn_norm.b, c.eps, &mut s.h, h);
    linear(&layer.ffn_up.w, layer.ffn_up.b, &s.h, &mut s.up, false);
    gelu_erf(&mut s.up);
    linear(&layer.ffn_down.w, layer.ffn_down.b, &s.up, &mut s.x, true);
}

/// Runs the encoder over `batch`. `on_hidden(i, states)` sees transformers'
/// `hidden_states[i]` (`[b * t, hidden]`): 0 the embeddings, i the output of layer i,
/// and the last one after the final LayerNorm — which is also left in `s.h`.
pub fn forward(w: &Weights, c: &ModelConfig, batch: &Batch, s: &mut Scratch, mut on_hidden: impl FnMut(usize, &[f32])) {
    embed(w, c, batch, &mut s.x);
    on_hidden(0, &s.x);
    for (i, layer) in w.layers.iter().enumerate() {
        layer_forward(layer, c, batch, s);
        if i + 1 < c.layers {
            on_hidden(i + 1, &s.x);
        }
    }
    layer_norm(&s.x, w.output_norm.w, w.output_norm.b, c.eps, &mut s.h, c.hidden);
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
