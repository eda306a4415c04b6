//! Multi-head self-attention for one sequence, parallel over query rows.

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
    out.par_chunks_mut(hd).enumerate().for_each_init(
        || vec![0.0f32; t],
        |scores, (i, out_row)| {
            for h in 0..heads {
                let cols = h * head_dim..(h + 1) * head_dim;
                let qh = &q[i * hd..][cols.clone()];
                for (s, score) in scores.iter_mut().enumerate() {
                    *score = if key_mask[s] {
                        super::isa::vec_dot_f32(level, qh, &k[s * hd..][cols.clone()]) * scale
                    } else {
                        MASKED_SCORE
                    };
                }
                super::isa::softmax_inplace(level, scores);
                let oh = &mut out_row[cols.clone()];
                oh.fill(0.0);
                for (s, &p) in scores.iter().enumerate() {
                    if p != 0.0 {
                        super::isa::axpy(level, p, &v[s * hd..][cols.clone()], oh);
                    }
                }
            }
        },
    );
}
