//! The encoder's weights repacked at load into the GEMM kernels' panel layout
//! ([`PackedMatrix`]), with Q, K and V fused into one matrix. Packing copies each matrix
//! once and then releases the mapped pages it came from, so the process holds one copy.
//!
//! With `XLMR_PACK_CACHE=DIR` the packed matrices are written once to a cache file and
//! mapped from it by later loads ([`super::pack_cache`]).
//!
//! Packing is skipped (and the encoder streams the GGUF blocks from the read-only map,
//! repacking small tiles on the fly) when the kernels in force have no packed GEMM, or
//! when `XLMR_PACK=0`: the mode to use when many processes share one file through the
//! page cache, at the cost of speed (see README "Performance").

use super::pack_cache::{CacheFile, Shape};
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::gguf::{keys::tensor as names, GgufFile};
use crate::kernels::{gemm_has_kernel, isa, PackedMatrix, QMatrix};
use std::path::Path;

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

/// Each layer's matrices as packed: Q, K and V fused, then out-proj, FFN up, FFN down.
fn layer_parts<'l, 'a>(w: &'l Weights<'a>) -> impl Iterator<Item = [Vec<&'l QMatrix<'a>>; 4]> + 'l {
    w.layers.iter().map(|l| [vec![&l.q.w, &l.k.w, &l.v.w], vec![&l.attn_out.w], vec![&l.ffn_up.w], vec![&l.ffn_down.w]])
}

/// The shape of the packed matrix of `parts`, if they can be packed into one.
fn packed_shape(parts: &[&QMatrix]) -> Option<Shape> {
    let first = parts.first()?;
    let same = parts.iter().all(|p| p.ty == first.ty && p.cols == first.cols);
    let rows = parts.iter().map(|p| p.rows).sum();
    (same && PackedMatrix::packed_len(first.ty, rows, first.cols).is_some()).then_some(Shape { ty: first.ty, rows, cols: first.cols })
}

impl PackedWeights {
    /// Packs every layer's matrices, or `None` when packing is off, the kernels in force
    /// have no packed GEMM, or the weights are not of a packable (quantized) type. With a
    /// cache directory, maps them from the model's cache file there instead when it has
    /// a valid one, and writes one when it has not (a failed write is reported on stderr
    /// and does not fail the load).
    pub fn build(file: &GgufFile, w: &Weights, cache_dir: Option<&Path>) -> Result<Option<Self>> {
        if !packing_enabled() || !gemm_has_kernel(isa()) {
            return Ok(None);
        }
        let shapes: Option<Vec<Shape>> = layer_parts(w).flatten().map(|parts| packed_shape(&parts)).collect();
        let Some(shapes) = shapes else {
            return Ok(None);
        };
        let cache = cache_dir.and_then(|dir| CacheFile::for_model(dir, file).ok());
        if let Some(matrices) = cache.as_ref().and_then(|c| c.load(&shapes)) {
            return Ok(Some(Self::assemble(w, matrices)));
        }
        let pack = |parts: &[&QMatrix]| -> Result<PackedMatrix> {
            match PackedMatrix::pack(parts) {
                Some(Ok(m)) => Ok(m),
                Some(Err(e)) => Err(Error::format(&file.path, format!("cannot allocate memory for packed weights: {e}"))),
                None => unreachable!("packed_shape checked that the parts pack"),
            }
        };
        let tensors = |i: usize| {
            [names::ATTN_Q, names::ATTN_K, names::ATTN_V, names::ATTN_OUT, names::FFN_UP, names::FFN_DOWN]
                .into_iter()
                .filter_map(move |m| file.tensor(&format!("{}.weight", names::blk(i, m))))
        };
        let mut matrices = Vec::with_capacity(shapes.len());
        for (i, parts) in layer_parts(w).enumerate() {
            tensors(i).for_each(|t| file.populate(t));
            for p in &parts {
                matrices.push(pack(p)?);
            }
            tensors(i).for_each(|t| file.release_pages(t));
        }
        if let Some(c) = &cache {
            if let Err(e) = c.store(&matrices.iter().collect::<Vec<_>>()) {
                eprintln!("xlmr: warning: could not write the packed-weights cache {}: {e}", c.path.display());
            }
        }
        Ok(Some(Self::assemble(w, matrices)))
    }

    /// Layers from their matrices, four per layer in [`layer_parts`] order.
    fn assemble(w: &Weights, matrices: Vec<PackedMatrix>) -> Self {
        let mut it = matrices.into_iter();
        let layers = w
            .layers
            .iter()
            .map(|l| {
                let mut next = || it.next().expect("four matrices per layer");
                let (qkv, attn_out, ffn_up, ffn_down) = (next(), next(), next(), next());
                PackedLayer { qkv, qkv_bias: [l.q.b, l.k.b, l.v.b].concat(), attn_out, ffn_up, ffn_down }
            })
            .collect();
        PackedWeights { layers }
    }

    /// Whether the matrices are mapped from the packed-weights cache ([`super::pack_cache`]):
    /// all of them are, or none.
    pub fn from_cache(&self) -> bool {
        self.layers.first().is_some_and(|l| l.qkv.is_mapped())
    }
}
