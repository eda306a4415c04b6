//! Weights packed once, at load, into the layout the GEMM kernels stream: "panels" of
//! `PANEL_ROWS` = 16 rows, so that one 512-bit vector holds 4 consecutive weights of
//! each of the 16 rows (one i32 lane per row for `vpdpbusd`), and each panel is one
//! contiguous run of memory that the hardware prefetcher follows.
//!
//! Layout of one panel (rows past the matrix end are packed from zero-valued blocks):
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

/// Panels of a matrix of `rows` rows: whole pairs (the last one padded).
fn panels_for(rows: usize) -> usize {
    rows.div_ceil(PAIR_ROWS) * 2
}

/// A weight matrix `[rows, cols]` in panel layout, in its own page-aligned memory or in a
/// read-only mapping of a file that holds it (the packed-weights cache).
pub struct PackedMatrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    layout: UnitLayout,
    panels: usize,
    store: PanelStore,
}

enum PanelStore {
    /// Packed at load, in anonymous memory.
    Owned(memmap2::MmapMut),
    /// `map[range]`, shared by the matrices of one file.
    Mapped(std::sync::Arc<memmap2::Mmap>, std::ops::Range<usize>),
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
        let panels = panels_for(rows);
        let panel_bytes = Self::panel_bytes_of(layout, cols);
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
        // Rows past the end pack a row of zero-valued blocks (u16 storage: blocks hold f16s).
        let row_len = ty.row_bytes(cols).expect("validated QMatrix");
        let mut zero_row = vec![0u16; row_len.div_ceil(2)];
        let zero_row = &mut crate::quant::u16_as_bytes_mut(&mut zero_row)[..row_len];
        if ty == GgmlType::Q4_0 {
            // Nibbles hold q + 8: value 0 is 8 in both halves.
            zero_row.chunks_exact_mut(std::mem::size_of::<BlockQ4_0>()).for_each(|b| b[2..].fill(0x88));
        }
        let zero_row: &[u8] = zero_row;
        buf[..panels * panel_bytes].par_chunks_mut(panel_bytes).enumerate().for_each(|(panel, dst)| {
            let src: [&[u8]; PANEL_ROWS] = std::array::from_fn(|r| row_of(panel * PANEL_ROWS + r).map_or(zero_row, |(m, row)| m.row_bytes(row)));
            pack_panel(ty, cols, &src, dst);
        });
        Some(Ok(PackedMatrix { ty, rows, cols, layout, panels, store: PanelStore::Owned(buf) }))
    }

    /// The packed bytes of a `[rows, cols]` matrix of type `ty`, if the type has a packed
    /// layout and `cols` is a whole number of its units.
    pub fn packed_len(ty: GgmlType, rows: usize, cols: usize) -> Option<usize> {
        let layout = unit_layout(ty)?;
        if cols == 0 || !cols.is_multiple_of(layout.cols) {
            return None;
        }
        panels_for(rows).checked_mul(Self::panel_bytes_of(layout, cols))
    }

    /// A matrix already packed, at `map[range]` (as [`Self::bytes`] gave it). `None` if the
    /// range does not hold exactly [`Self::packed_len`] bytes inside the map.
    pub fn from_mapped(ty: GgmlType, rows: usize, cols: usize, map: std::sync::Arc<memmap2::Mmap>, range: std::ops::Range<usize>) -> Option<Self> {
        let (layout, len) = (unit_layout(ty)?, Self::packed_len(ty, rows, cols)?);
        if range.end > map.len() || range.end.checked_sub(range.start) != Some(len) {
            return None;
        }
        Some(PackedMatrix { ty, rows, cols, layout, panels: panels_for(rows), store: PanelStore::Mapped(map, range) })
    }

    /// Whether the panels are read from a file mapping (see [`Self::from_mapped`]).
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, PanelStore::Mapped(..))
    }

    /// All panels, one after another: what [`Self::from_mapped`] reads back.
    pub fn bytes(&self) -> &[u8] {
        match &self.store {
            PanelStore::Owned(buf) => &buf[..self.panels * self.panel_bytes()],
            PanelStore::Mapped(map, range) => &map[range.clone()],
        }
    }

    fn panel_bytes_of(layout: UnitLayout, cols: usize) -> usize {
        cols / layout.cols * (layout.weight_bytes + layout.scale_bytes)
    }

    pub(crate) fn layout(&self) -> UnitLayout {
        self.layout
    }

    /// Panels, always even (pairs).
    pub fn panels(&self) -> usize {
        self.panels
    }

    pub fn panel_bytes(&self) -> usize {
        Self::panel_bytes_of(self.layout, self.cols)
    }

    /// Bytes of the packed weights (what one matmul streams).
    pub fn len_bytes(&self) -> usize {
        self.panels * self.panel_bytes()
    }

    pub fn panel(&self, p: usize) -> &[u8] {
        let n = self.panel_bytes();
        &self.bytes()[p * n..(p + 1) * n]
    }
}

/// Packs the 16 rows of one panel into `dst`.
// src: 16 x [cols] in ggml blocks -> dst: [panel_bytes]
fn pack_panel(ty: GgmlType, cols: usize, src: &[&[u8]; PANEL_ROWS], dst: &mut [u8]) {
    let l = unit_layout(ty).expect("packable type");
    let (weights, scales) = dst.split_at_mut(cols / l.cols * l.weight_bytes);
    match ty {
        GgmlType::Q8_0 => {
            let rows: [&[BlockQ8_0]; PANEL_ROWS] = std::array::from_fn(|r| crate::quant::blocks_from_bytes(src[r]).expect("validated QMatrix"));
            // Block-major: each 544-byte group is written whole while the 16 rows stream.
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
        GgmlType::Q4_0 => {
            for (r, bytes) in src.iter().enumerate() {
                let row: &[BlockQ4_0] = crate::quant::blocks_from_bytes(bytes).expect("validated QMatrix");
                for (u, b) in row.iter().enumerate() {
                    for q in 0..4 {
                        weights[u * 256 + 64 * q + 4 * r..][..4].copy_from_slice(&b.qs[4 * q..4 * q + 4]);
                    }
                    scales[u * 32 + 2 * r..u * 32 + 2 * r + 2].copy_from_slice(&b.d.to_bits().to_le_bytes());
                }
            }
        }
        GgmlType::Q4K => {
            for (r, bytes) in src.iter().enumerate() {
                let row: &[BlockQ4K] = crate::quant::blocks_from_bytes(bytes).expect("validated QMatrix");
                for (u, b) in row.iter().enumerate() {
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
        }
        GgmlType::F32 | GgmlType::F16 => unreachable!("no packed layout for float weights"),
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
