//! The XLM-RoBERTa-XL encoder forward pass (transformers' `XLMRobertaXLModel`):
//! pre-LayerNorm blocks, no embedding LayerNorm, final encoder LayerNorm.
//! Residual stream, LayerNorm and softmax in f32; matmuls through `kernels`.

use super::config::ModelConfig;
use super::weights::{Layer, Weights};
use crate::kernels::{attention, gelu_erf, layer_norm, matmul, matmul_acc};
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
}

impl Scratch {
    pub fn new(c: &ModelConfig, n: usize) -> Self {
        let z = |len: usize| vec![0.0f32; len];
        Scratch { x: z(n * c.hidden), h: z(n * c.hidden), q: z(n * c.hidden), k: z(n * c.hidden), v: z(n * c.hidden), attn: z(n * c.hidden), up: z(n * c.ffn) }
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
    layer_norm(&s.x, layer.attn_norm.w, layer.attn_norm.b, c.eps, &mut s.h, h);
    matmul(&layer.q.w, &s.h, Some(layer.q.b), &mut s.q, n);
    matmul(&layer.k.w, &s.h, Some(layer.k.b), &mut s.k, n);
    matmul(&layer.v.w, &s.h, Some(layer.v.b), &mut s.v, n);
    for b in 0..batch.b {
        let r = b * t * h..(b + 1) * t * h;
        attention(&s.q[r.clone()], &s.k[r.clone()], &s.v[r.clone()], &batch.mask[b * t..(b + 1) * t], t, c.heads, c.head_dim, &mut s.attn[r]);
    }
    matmul_acc(&layer.attn_out.w, &s.attn, Some(layer.attn_out.b), &mut s.x, n);
    layer_norm(&s.x, layer.ffn_norm.w, layer.ffn_norm.b, c.eps, &mut s.h, h);
    matmul(&layer.ffn_up.w, &s.h, Some(layer.ffn_up.b), &mut s.up, n);
    gelu_erf(&mut s.up);
    matmul_acc(&layer.ffn_down.w, &s.up, Some(layer.ffn_down.b), &mut s.x, n);
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
