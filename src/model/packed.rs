//! The encoder's weights repacked at load into the GEMM kernels' panel layout
//! ([`PackedMatrix`]), with Q, K and V fused into one matrix. Packing copies each matrix
//! once and then releases the mapped pages it came from, so the process holds one copy.
//!
//! Packing is skipped (and the encoder streams the GGUF blocks from the read-only map,
//! repacking small tiles on the fly) when the kernels in force have no packed GEMM, or
//! when `XLMR_PACK=0`: the mode to use when many processes share one file through the
//! page cache, at the cost of speed (see README "Performance").

use super::weights::Weights;
use crate::error::{Error, Result};
use crate::gguf::{keys::tensor as names, GgufFile};
use crate::kernels::{gemm_has_kernel, isa, PackedMatrix, QMatrix};

pub struct PackedLayer {
    /// `[3 hidden, hidden]`: Q, K, V rows in that order.
    pub qkv: PackedMatrix,
    /// `[3 hidden]`.
    pub qkv_bias: Vec<f32>,
    pub attn_out: PackedMatrix,
    pub ffn_up: PackedMatrix,
    pub ffn_down: PackedMatrix,
}

pub struct PackedWeights {
    pub layers: Vec<PackedLayer>,
}

/// Whether packing is wanted: on unless `XLMR_PACK` is `0`, `false`, `no` or `off`.
pub fn packing_enabled() -> bool {
    !matches!(std::env::var("XLMR_PACK").as_deref().map(str::trim), Ok("0" | "false" | "no" | "off"))
}

impl PackedWeights {
    /// Packs every layer's matrices, or `None` when packing is off, the kernels in force
    /// have no packed GEMM, or the weights are not of a packable (quantized) type.
    pub fn build(file: &GgufFile, w: &Weights) -> Result<Option<Self>> {
        if !packing_enabled() || !gemm_has_kernel(isa()) {
            return Ok(None);
        }
        let pack = |parts: &[&QMatrix]| -> Result<Option<PackedMatrix>> {
            match PackedMatrix::pack(parts) {
                None => Ok(None),
                Some(Ok(m)) => Ok(Some(m)),
                Some(Err(e)) => Err(Error::format(&file.path, format!("cannot allocate memory for packed weights: {e}"))),
            }
        };
        let mut layers = Vec::with_capacity(w.layers.len());
        let tensors = |i: usize| {
            [names::ATTN_Q, names::ATTN_K, names::ATTN_V, names::ATTN_OUT, names::FFN_UP, names::FFN_DOWN]
                .into_iter()
                .filter_map(move |m| file.tensor(&format!("{}.weight", names::blk(i, m))))
        };
        for (i, l) in w.layers.iter().enumerate() {
            tensors(i).for_each(|t| file.populate(t));
            let (Some(qkv), Some(attn_out), Some(ffn_up), Some(ffn_down)) =
                (pack(&[&l.q.w, &l.k.w, &l.v.w])?, pack(&[&l.attn_out.w])?, pack(&[&l.ffn_up.w])?, pack(&[&l.ffn_down.w])?)
            else {
                return Ok(None);
            };
            let qkv_bias = [l.q.b, l.k.b, l.v.b].concat();
            layers.push(PackedLayer { qkv, qkv_bias, attn_out, ffn_up, ffn_down });
            tensors(i).for_each(|t| file.release_pages(t));
        }
        Ok(Some(PackedWeights { layers }))
    }
}
