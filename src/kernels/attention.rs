//! Multi-head self-attention for one sequence, parallel over heads.

use super::{isa, Isa};
use rayon::prelude::*;

/// Score given to masked keys: finite, so a row whose keys are all masked gets a
/// uniform distribution instead of NaN.
pub const MASKED_SCORE: f32 = -1e30;

/// q, k, v, out: [t, heads * head_dim] (head j at columns j*head_dim..); key_mask: [t],
/// true = attend. out = softmax(q kᵀ / sqrt(head_dim) + mask) v per head.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], key_mask: &[bool], t: usize, heads: usize, head_dim: usize, out: &mut [f32]) {
    attention_at_level(isa(), q, k, v, key_mask, t, heads, head_dim, out)
}

/// [`attention`] at an explicit ISA level (tests); an unsupported level runs scalar.
#[allow(clippy::too_many_arguments)]
pub fn attention_at_level(
    level: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    key_mask: &[bool],
    t: usize,
    heads: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let hd = heads * head_dim;
    assert!(head_dim > 0 && heads > 0, "attention: zero heads or head_dim");
    for (name, len) in [("q", q.len()), ("k", k.len()), ("v", v.len()), ("out", out.len())] {
        assert_eq!(len, t * hd, "attention: {name} has {len} values, expected {t} x {hd}");
    }
    assert_eq!(key_mask.len(), t, "attention: key_mask has {} entries, expected {t}", key_mask.len());
    if t == 0 {
        return;
    }
    let level = if level.is_supported() { level } else { Isa::Scalar };
    let scale = 1.0 / (head_dim as f32).sqrt();
    // One task per head. Keys and values are transposed to [head_dim, t] so that both
    // the scores (head_dim axpys of length t) and the weighted sum of values (head_dim
    // dots of length t) run over long contiguous vectors.
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let col0 = h * head_dim;
            let mut kt = vec![0.0f32; head_dim * t];
            let mut vt = vec![0.0f32; head_dim * t];
            for s in 0..t {
                for c in 0..head_dim {
                    kt[c * t + s] = k[s * hd + col0 + c];
                    vt[c * t + s] = v[s * hd + col0 + c];
                }
            }
            let mut scores = vec![0.0f32; t];
            let mut out_h = vec![0.0f32; t * head_dim];
            for i in 0..t {
                scores.fill(0.0);
                for c in 0..head_dim {
                    super::isa::axpy(level, q[i * hd + col0 + c] * scale, &kt[c * t..(c + 1) * t], &mut scores);
                }
                for (score, &keep) in scores.iter_mut().zip(key_mask) {
                    if !keep {
                        *score = MASKED_SCORE;
                    }
                }
                super::isa::softmax_inplace(level, &mut scores);
                for c in 0..head_dim {
                    out_h[i * head_dim + c] = super::isa::vec_dot_f32(level, &scores, &vt[c * t..(c + 1) * t]);
                }
            }
            out_h
        })
        .collect();
    for (h, out_h) in per_head.iter().enumerate() {
        for i in 0..t {
            out[i * hd + h * head_dim..][..head_dim].copy_from_slice(&out_h[i * head_dim..(i + 1) * head_dim]);
        }
    }
}
