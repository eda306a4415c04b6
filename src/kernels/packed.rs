//! Weights packed once, at load, into the layout the GEMM kernels stream: "panels" of
//! `PANEL_ROWS` = 16 rows, so that one 512-bit vector holds 4 consecutive weights of
//! each of the 16 rows (one i32 lane per row for `vpdpbusd`), and each panel is one
//! contiguous run of memory that the hardware prefetcher follows.
//!
//! Layout of one panel (rows past the matrix end are zero weights with zero scales):
//!
//! | type | per unit of columns | weights | then, after all units' weights |
//! |---|---|---|---|
//! | Q8_0 | 32 | 8 vectors `[k][row][4]` of `w + 128` as u8 (512 B) | 16 f16 scales (32 B) |
//! | Q4_0 | 32 | 4 vectors `[q][row][4]` of the block's raw nibble bytes (256 B) | 16 f16 scales (32 B) |
//! | Q4_K | 256 | 4 chunks x 8 vectors `[c][q][row][4]` of raw nibble bytes (2048 B) | 16 f16 d, 16 f16 dmin, then per sub-block 16 u8 scales and 16 u8 mins (320 B) |
//!
//! Scales sit after the weights so that every weight vector of a panel is 64-byte aligned
//! whenever the panel is. The packed size equals the GGUF size of the rows (Q4_K: +2.8 %),
//! so packing at load and releasing the mapped pages keeps RSS near the file size.
//!
//! Q4_0 k-step `k` (columns 4k..4k+4 of a block) is vector `k % 4`, low nibbles for
//! k < 4 and high nibbles after; Q4_K sub-block `j` uses chunk `j / 2`, vector `k`,
//! low nibbles for even `j` — both as the blocks store them, so packing is a transpose.

use super::{QMatrix, QuantActs};
use crate::quant::{get_scale_min_k4, BlockQ4K, BlockQ4_0, BlockQ8_0, GgmlType, QK_K};
use rayon::prelude::*;

/// Weight rows per panel.
pub const PANEL_ROWS: usize = 16;
/// Panels are processed in pairs (the microkernel's register block), so matrices are
/// padded to a multiple of this many rows.
pub const PAIR_ROWS: usize = 2 * PANEL_ROWS;

/// Bytes of one unit's weights and of its scales, and the unit's width in columns.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UnitLayout {
    pub cols: usize,
    pub weight_bytes: usize,
    pub scale_bytes: usize,
}

pub(crate) fn unit_layout(ty: GgmlType) -> Option<UnitLayout> {
    match ty {
        GgmlType::Q8_0 => Some(UnitLayout { cols: 32, weight_bytes: 512, scale_bytes: 32 }),
        GgmlType::Q4_0 => Some(UnitLayout { cols: 32, weight_bytes: 256, scale_bytes: 32 }),
        GgmlType::Q4K => Some(UnitLayout { cols: QK_K, weight_bytes: 2048, scale_bytes: 320 }),
        GgmlType::F32 | GgmlType::F16 => None,
    }
}

/// A weight matrix `[rows, cols]` in panel layout, in its own page-aligned memory.
pub struct PackedMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    layout: UnitLayout,
    panels: usize,
    buf: memmap2::MmapMut,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedMatrix({} [{}, {}])", self.ty, self.rows, self.cols)
    }
}

impl PackedMatrix {
    /// Packs the rows of `parts`, one after another, into one matrix (e.g. Q, K and V
    /// into one `[3 hidden, hidden]` matrix). `None` if the type has no packed layout or
    /// the parts differ in type or width; an error only if memory cannot be had.
    pub fn pack(parts: &[&QMatrix]) -> Option<std::io::Result<Self>> {
        let first = parts.first()?;
        let (ty, cols) = (first.ty, first.cols);
        if parts.iter().any(|p| p.ty != ty || p.cols != cols) {
            return None;
        }
        let layout = unit_layout(ty)?;
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let panels = rows.div_ceil(PAIR_ROWS) * 2;
        let panel_bytes = cols / layout.cols * (layout.weight_bytes + layout.scale_bytes);
        let mut buf = match memmap2::MmapMut::map_anon((panels * panel_bytes).max(1)) {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        // Fewer page faults for multi-megabyte matrices; harmless where unsupported.
        #[cfg(target_os = "linux")]
        let _ = buf.advise(memmap2::Advice::HugePage);
        let row_of = |global: usize| -> Option<(&QMatrix, usize)> {
            let mut r = global;
            for p in parts {
                if r < p.rows {
                    return Some((p, r));
                }
                r -= p.rows;
            }
            None
        };
        buf[..panels * panel_bytes].par_chunks_mut(panel_bytes).enumerate().for_each(|(panel, dst)| {
            let src: [Option<&[u8]>; PANEL_ROWS] =
                std::array::from_fn(|r| row_of(panel * PANEL_ROWS + r).map(|(m, row)| m.row_bytes(row)));
            pack_panel(ty, layout, cols, &src, dst);
        });
        Some(Ok(PackedMatrix { ty, rows, cols, layout, panels, buf }))
    }

    pub(crate) fn layout(&self) -> UnitLayout {
        self.layout
    }

    /// Panels, always even (pairs).
    pub fn panels(&self) -> usize {
        self.panels
    }

    pub fn panel_bytes(&self) -> usize {
        self.cols / self.layout.cols * (self.layout.weight_bytes + self.layout.scale_bytes)
    }

    /// Bytes of the packed weights (what one matmul streams).
    pub fn bytes(&self) -> usize {
        self.panels * self.panel_bytes()
    }

    pub fn panel(&self, p: usize) -> &[u8] {
        let n = self.panel_bytes();
        &self.buf[p * n..(p + 1) * n]
    }
}

/// Packs 16 rows (`None` = padding) of one panel into `dst`.
// src: 16 x [cols] in ggml blocks -> dst: [panel_bytes]
fn pack_panel(ty: GgmlType, l: UnitLayout, cols: usize, src: &[Option<&[u8]>; PANEL_ROWS], dst: &mut [u8]) {
    let units = cols / l.cols;
    let (weights, scales) = dst.split_at_mut(units * l.weight_bytes);
    if ty == GgmlType::Q8_0 && src.iter().all(Option::is_some) {
        return pack_q8_0_full_panel(src, weights, scales);
    }
    for (r, row) in src.iter().enumerate() {
        match (ty, row) {
            (GgmlType::Q8_0, Some(bytes)) => {
                let blocks: &[BlockQ8_0] = crate::quant::blocks_from_bytes(bytes).expect("validated QMatrix");
                for (u, b) in blocks.iter().enumerate() {
                    let w = &mut weights[u * 512..(u + 1) * 512];
                    for (k, q) in b.qs.chunks_exact(4).enumerate() {
                        // 4 weights at a time, each + 128 as an unsigned byte.
                        let word = u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]) ^ 0x8080_8080;
                        w[64 * k + 4 * r..64 * k + 4 * r + 4].copy_from_slice(&word.to_le_bytes());
                    }
                    scales[u * 32 + 2 * r..u * 32 + 2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
                }
            }
            (GgmlType::Q8_0, None) => {
                for u in 0..units {
                    for k in 0..8 {
                        weights[u * 512 + 64 * k + 4 * r..][..4].fill(0x80);
                    }
                    scales[u * 32 + 2 * r..][..2].fill(0);
                }
            }
            (GgmlType::Q4_0, Some(bytes)) => {
                let blocks: &[BlockQ4_0] = crate::quant::blocks_from_bytes(bytes).expect("validated QMatrix");
                for (u, b) in blocks.iter().enumerate() {
                    for q in 0..4 {
                        weights[u * 256 + 64 * q + 4 * r..][..4].copy_from_slice(&b.qs[4 * q..4 * q + 4]);
                    }
                    scales[u * 32 + 2 * r..u * 32 + 2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
                }
            }
            (GgmlType::Q4_0, None) => {
                for u in 0..units {
                    for q in 0..4 {
                        weights[u * 256 + 64 * q + 4 * r..][..4].fill(0x88);
                    }
                    scales[u * 32 + 2 * r..][..2].fill(0);
                }
            }
            (GgmlType::Q4K, Some(bytes)) => {
                let blocks: &[BlockQ4K] = crate::quant::blocks_from_bytes(bytes).expect("validated QMatrix");
                for (u, b) in blocks.iter().enumerate() {
                    for cq in 0..32 {
                        weights[u * 2048 + 64 * cq + 4 * r..][..4].copy_from_slice(&b.qs[4 * cq..4 * cq + 4]);
                    }
                    let s = &mut scales[u * 320..(u + 1) * 320];
                    s[2 * r..2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
                    s[32 + 2 * r..32 + 2 * r + 2].copy_from_slice(&b.dmin.to_bits().to_le_bytes());
                    for j in 0..8 {
                        let (sc, m) = get_scale_min_k4(j, &b.scales);
                        s[64 + 32 * j + r] = sc;
                        s[64 + 32 * j + 16 + r] = m;
                    }
                }
            }
            (GgmlType::Q4K, None) => {
                for u in 0..units {
                    for cq in 0..32 {
                        weights[u * 2048 + 64 * cq + 4 * r..][..4].fill(0);
                    }
                    let s = &mut scales[u * 320..(u + 1) * 320];
                    s[2 * r..2 * r + 2].fill(0);
                    s[32 + 2 * r..32 + 2 * r + 2].fill(0);
                    for j in 0..8 {
                        s[64 + 32 * j + r] = 0;
                        s[64 + 32 * j + 16 + r] = 0;
                    }
                }
            }
            (GgmlType::F32 | GgmlType::F16, _) => unreachable!("no packed layout for float weights"),
        }
    }
}

/// The common Q8_0 case (16 real rows), block-major so that each 544-byte group of the
/// panel is written whole while the 16 source rows stream in order.
fn pack_q8_0_full_panel(src: &[Option<&[u8]>; PANEL_ROWS], weights: &mut [u8], scales: &mut [u8]) {
    let rows: [&[BlockQ8_0]; PANEL_ROWS] =
        std::array::from_fn(|r| crate::quant::blocks_from_bytes(src[r].expect("all rows present")).expect("validated QMatrix"));
    for (u, (w, s)) in weights.chunks_exact_mut(512).zip(scales.chunks_exact_mut(32)).enumerate() {
        for (r, row) in rows.iter().enumerate() {
            let b = &row[u];
            for k in 0..8 {
                let q = &b.qs[4 * k..4 * k + 4];
                // 4 weights at a time, each + 128 as an unsigned byte.
                let word = u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]) ^ 0x8080_8080;
                w[64 * k + 4 * r..64 * k + 4 * r + 4].copy_from_slice(&word.to_le_bytes());
            }
            s[2 * r..2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
        }
    }
}

fn f16_at(bytes: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])).to_f32()
}

/// Scalar reference on the packed layout: the dot products of panel `panel`'s 16 rows
/// with token `tok`, with exactly the arithmetic of `scalar::vec_dot_*` (so it equals
/// `scalar::dot_row` bit for bit: the test of the packing itself).
// panel: 16 rows of [cols], acts: [t, cols] -> [16]
pub fn panel_dots_ref(m: &PackedMatrix, panel: usize, acts: &QuantActs, tok: usize) -> [f32; PANEL_ROWS] {
    panel_dots_ref_units(m, panel, 0..m.cols / m.layout.cols, acts, tok)
}

/// [`panel_dots_ref`] over the units (blocks of columns) in `units` only.
pub(crate) fn panel_dots_ref_units(m: &PackedMatrix, panel: usize, units: std::ops::Range<usize>, acts: &QuantActs, tok: usize) -> [f32; PANEL_ROWS] {
    let l = m.layout;
    let (weights, scales) = m.panel(panel).split_at(m.cols / l.cols * l.weight_bytes);
    let (xq, xd, xs) = (acts.qs(tok), acts.d(tok), acts.sums(tok));
    std::array::from_fn(|r| {
        let mut acc = 0.0f32;
        for u in units.clone() {
            let w = &weights[u * l.weight_bytes..(u + 1) * l.weight_bytes];
            let x = &xq[u * l.cols..(u + 1) * l.cols];
            match m.ty {
                GgmlType::Q8_0 => {
                    let mut dot = 0i32;
                    for k in 0..8 {
                        for j in 0..4 {
                            dot += (w[64 * k + 4 * r + j] ^ 0x80) as i8 as i32 * x[4 * k + j] as i32;
                        }
                    }
                    acc += f16_at(scales, 16 * u + r) * xd[u] * dot as f32;
                }
                GgmlType::Q4_0 => {
                    let mut dot = 0i32;
                    for k in 0..8 {
                        for j in 0..4 {
                            let byte = w[64 * (k % 4) + 4 * r + j];
                            let q = if k < 4 { byte & 0x0F } else { byte >> 4 };
                            dot += q as i32 * x[4 * k + j] as i32;
                        }
                    }
                    dot -= 8 * xs[u];
                    acc += f16_at(scales, 16 * u + r) * xd[u] * dot as f32;
                }
                GgmlType::Q4K => {
                    let s = &scales[u * 320..(u + 1) * 320];
                    let (mut scaled, mut mins) = (0i32, 0i32);
                    for j in 0..8 {
                        let mut dot = 0i32;
                        for k in 0..8 {
                            for i in 0..4 {
                                let byte = w[512 * (j / 2) + 64 * k + 4 * r + i];
                                let q = if j % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                                dot += q as i32 * x[32 * j + 4 * k + i] as i32;
                            }
                        }
                        scaled += s[64 + 32 * j + r] as i32 * dot;
                        mins += s[64 + 32 * j + 16 + r] as i32 * xs[8 * u + j];
                    }
                    acc += xd[u] * (f16_at(s, r) * scaled as f32 - f16_at(s, 16 + r) * mins as f32);
                }
                GgmlType::F32 | GgmlType::F16 => unreachable!("no packed layout for float weights"),
            }
        }
        acc
    })
}
