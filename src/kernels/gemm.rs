//! Matmul on packed weights ([`PackedMatrix`]): quantize the activations once, then
//! rayon-parallel over pairs of panels (32 weight rows). Each pair walks the columns in
//! chunks of `CHUNK_COLS` (so its 2 x 16 x 512 weight bytes stay in L1 while every
//! token passes over them) and all tokens in register blocks, accumulating f32 results
//! in a per-thread `[t, 32]` tile; the epilogue (bias, residual add or GELU) is applied
//! once, when the tile is written out.
//!
//! One matmul may write several outputs: the rows of a fused Q/K/V matrix go to three
//! buffers, so that one activation quantization and one pass over the tokens serve all
//! three projections.

use super::packed::{panel_dots_ref_units, PackedMatrix, PAIR_ROWS, PANEL_ROWS};
use super::{isa, ActFormat, Isa, MatmulScratch, QuantActs, SharedOut};
use crate::quant::GgmlType;
use rayon::prelude::*;
use std::cell::RefCell;

/// Columns per cache block of the weights.
const CHUNK_COLS: usize = 512;

/// How far ahead (in 32-column units, 2 KiB of Q4_0) a single token block prefetches
/// its weights: ~250 ns of memory latency at ~50 cycles per unit. In-process A/B on the
/// Xeon, 1 thread: -5..-20 % at 1-8 tokens (q8_0, q4_0, q4_k), none from 16 up.
#[cfg(target_arch = "x86_64")]
const PREFETCH_UNITS_AHEAD: usize = 8;

/// What happens to `acc + bias` on its way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// y = acc + bias
    Store,
    /// y += acc + bias (residual connections)
    Accumulate,
    /// y = gelu_erf(acc + bias) (the FFN's up projection)
    Gelu,
    /// y = acc + bias, each output written head-major, `[rows / d][t][d]` for heads of `d`
    /// columns (Q, K and V for attention, which then reads each head contiguously).
    StoreHeads(usize),
}

/// Quantized activations regrouped by blocks of `nt` tokens, so that a microkernel
/// finds the `nt` values it broadcasts at one step side by side, at constant offsets
/// from one pointer (no per-token address arithmetic competing with `vpdpbusd` for
/// ports). A short last block is padded with zeros.
#[derive(Debug, Default)]
pub(crate) struct ActPanels {
    pub nt: usize,
    /// `[block][cols / 4][nt]`: 4 int8 values (one k-step) per token.
    pub qs: Vec<i32>,
    /// `[block][scale blocks][nt]`: activation scales (per 32, or per 256 for Q8_K).
    pub d: Vec<f32>,
    /// `[block][cols / 32][nt]`: `-offset * sum` per 32 values (Q8_0: 128, Q4_0: 8),
    /// the start of each block's int32 accumulator.
    pub corr: Vec<i32>,
    /// `[block][cols / 32][nt]`: the sums as f32 (Q4_K's min term).
    pub sums: Vec<f32>,
}

impl ActPanels {
    fn build(&mut self, level: Isa, acts: &QuantActs, t: usize, nt: usize, offset: i32) {
        let cols = acts.cols;
        let (quads, nd, ns) = (cols / 4, acts.d.len() / t, cols / 32);
        let blocks = t.div_ceil(nt);
        self.nt = nt;
        // Every value of `qs` is written below, padding included.
        self.qs.resize(blocks * quads * nt, 0);
        self.corr.clear();
        self.corr.resize(blocks * ns * nt, 0);
        for (buf, per) in [(&mut self.d, nd), (&mut self.sums, ns)] {
            buf.clear();
            buf.resize(blocks * per * nt, 0.0);
        }
        let (qs, d, corr, sums) = (&mut self.qs, &mut self.d, &mut self.corr, &mut self.sums);
        qs.par_chunks_mut(quads * nt)
            .zip(d.par_chunks_mut(nd * nt))
            .zip(corr.par_chunks_mut(ns * nt))
            .zip(sums.par_chunks_mut(ns * nt))
            .enumerate()
            .for_each(|(b, (((qs, d), corr), sums))| {
                let tokens = nt.min(t - b * nt);
                interleave_quads(level, &acts.qs[b * nt * cols..(b * nt + tokens) * cols], cols, tokens, nt, qs);
                for n in 0..tokens {
                    let tok = b * nt + n;
                    for (i, &v) in acts.d(tok).iter().enumerate() {
                        d[i * nt + n] = v;
                    }
                    for (i, &s) in acts.sums(tok).iter().enumerate() {
                        corr[i * nt + n] = -offset * s;
                        sums[i * nt + n] = s as f32;
                    }
                }
            });
    }
}

/// Regroups one block of quantized token rows for the microkernels (see [`ActPanels`]).
// rows: [tokens][cols] int8 -> out: [cols / 4][nt] i32
fn interleave_quads(level: Isa, rows: &[i8], cols: usize, tokens: usize, nt: usize, out: &mut [i32]) {
    assert!(rows.len() == tokens * cols && out.len() == cols / 4 * nt && cols.is_multiple_of(4) && tokens <= nt, "interleave_quads: bad shapes");
    #[cfg(target_arch = "x86_64")]
    if matches!(level, Isa::Avx512 | Isa::Avx512Vnni) && level.is_supported() && nt <= 16 && cols < 1 << 26 {
        // Safety: the level is supported (AVX-512F), and the shapes were checked above.
        return unsafe { super::x86_avx512_gemm::interleave_quads(rows, cols, tokens, nt, out) };
    }
    let _ = level;
    interleave_quads_ref(rows, cols, tokens, nt, cols / 4, out);
}

/// `out[i * nt + n]` = quad `i` (4 int8 values, little-endian) of token row `n` for
/// `n < tokens`, and 0 for the padding tokens up to `nt`.
// rows: [tokens][stride] int8, of which quads 0..quads -> out: [quads][nt] i32
pub(crate) fn interleave_quads_ref(rows: &[i8], stride: usize, tokens: usize, nt: usize, quads: usize, out: &mut [i32]) {
    // Written in order, reading the token rows side by side: a token at a time would
    // revisit every output line nt times, after it left L1.
    for (i, out) in out[..quads * nt].chunks_exact_mut(nt).enumerate() {
        for (n, o) in out.iter_mut().enumerate() {
            *o = if n < tokens {
                let q = &rows[n * stride + 4 * i..n * stride + 4 * i + 4];
                i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])
            } else {
                0
            };
        }
    }
}

/// One pair of panels against one block of tokens, over units `u0..u1`: what a
/// microkernel needs, as raw pointers into live buffers owned by [`gemm`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct PairBlock {
    pub ty: GgmlType,
    pub panel0: *const u8,
    pub panel_bytes: usize,
    /// Offset of the scales within a panel.
    pub weights_len: usize,
    pub u0: usize,
    pub u1: usize,
    /// This token block's [`ActPanels`] rows (`qs`, `d`, `corr`, `sums`).
    pub xq: *const i32,
    pub xd: *const f32,
    pub corr: *const i32,
    pub sums: *const f32,
    /// Tokens per block in the panels' layout (the kernel may use fewer).
    pub stride: usize,
    /// Units ahead of the current one whose weights the kernel prefetches (0: none; see
    /// [`prefetch_units`]).
    pub prefetch_units: usize,
    /// Added to each panel's address to prefetch from: 0, or for a pair's last units
    /// the distance that lands the prefetches on the next pair's first units.
    pub prefetch_shift: usize,
}

thread_local! {
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether [`gemm`] has a SIMD kernel at `level` (elsewhere it runs the scalar
/// reference, which is for tests: callers use the unpacked path there).
pub fn gemm_has_kernel(level: Isa) -> bool {
    matches!(level, Isa::Avx512Vnni | Isa::Avx512 | Isa::Avx2) && level.is_supported()
}

/// The largest token block of the SIMD kernel at `level` for weights `ty`.
fn tokens_per_block(level: Isa, ty: GgmlType) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if level == Isa::Avx512Vnni {
            return super::x86_avx512_gemm::tokens_per_block(ty);
        }
        super::x86_avx2_gemm::TOKENS_PER_BLOCK
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, ty);
        1
    }
}

/// Tokens per block for a batch of `t`: a small batch as one block where the level's
/// kernel takes it (AVX-512 VNNI), else balanced blocks of at most
/// [`tokens_per_block`] (8 tokens as 4 + 4, not 6 + 2: a block of few tokens has few
/// independent `vpdpbusd` chains and runs far below peak).
fn token_block(level: Isa, ty: GgmlType, t: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if level == Isa::Avx512Vnni && t <= super::x86_avx512_gemm::SINGLE_PANEL_MAX_TOKENS {
        return t.max(1);
    }
    t.div_ceil(t.div_ceil(tokens_per_block(level, ty)))
}

/// `outs[p][tok, j] (+)= epilogue(bias[r] + sum_i x[tok, i] * W[r, i])` for matrix row
/// `r = p * part_rows + j`, where the rows are split evenly over the outputs.
// w: [rows, cols] packed, x: [t, cols], bias: [rows], outs: parts x [t, rows / parts]
pub fn gemm(w: &PackedMatrix, x: &[f32], t: usize, bias: Option<&[f32]>, outs: &mut [&mut [f32]], epilogue: Epilogue, scratch: &mut MatmulScratch) {
    gemm_at_level(isa(), w, x, t, bias, outs, epilogue, scratch)
}

/// [`gemm`] at an explicit ISA level; a level without a packed kernel runs the scalar
/// reference.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at_level(
    level: Isa,
    w: &PackedMatrix,
    x: &[f32],
    t: usize,
    bias: Option<&[f32]>,
    outs: &mut [&mut [f32]],
    epilogue: Epilogue,
    scratch: &mut MatmulScratch,
) {
    let (rows, cols) = (w.rows, w.cols);
    assert!(!outs.is_empty() && rows % outs.len() == 0, "gemm: {rows} rows do not split over {} outputs", outs.len());
    let part_rows = rows / outs.len();
    assert_eq!(x.len(), t * cols, "gemm: x has {} values, expected t={t} x cols={cols}", x.len());
    for o in outs.iter() {
        assert_eq!(o.len(), t * part_rows, "gemm: an output has {} values, expected t={t} x {part_rows}", o.len());
    }
    if let Some(b) = bias {
        assert_eq!(b.len(), rows, "gemm: bias has {} values, expected {rows}", b.len());
    }
    if let Epilogue::StoreHeads(d) = epilogue {
        assert!(d > 0 && part_rows.is_multiple_of(d), "gemm: {part_rows} rows per output do not split into heads of {d}");
    }
    if t == 0 {
        return;
    }
    let format = ActFormat::for_weights(w.ty).expect("packed matrices are quantized");
    let quant_level = if level.is_supported() { level } else { Isa::Scalar };
    scratch.quantize(quant_level, format, x, t, cols);
    let offset = match w.ty {
        GgmlType::Q8_0 => 128,
        GgmlType::Q4_0 => 8,
        _ => 0,
    };
    let simd = gemm_has_kernel(level);
    let nt = token_block(level, w.ty, t);
    if simd {
        let start = std::time::Instant::now();
        scratch.panels.build(level, &scratch.acts, t, nt, offset);
        scratch.add_quant_time(start.elapsed());
    }
    let acts = &scratch.acts;
    let panels = &scratch.panels;
    #[cfg(not(target_arch = "x86_64"))]
    let _ = panels; // no packed SIMD kernels there yet (NEON uses the unpacked path)
    let out_ptrs: Vec<SharedOut> = outs.iter_mut().map(|o| SharedOut(o.as_mut_ptr())).collect();
    let layout = w.layout();
    let units = cols / layout.cols;
    // One token block (small batches) has no reuse to keep in L1: each pair then runs its
    // whole width in one kernel call, with no per-chunk work.
    let chunk_units = if t <= nt { units } else { (CHUNK_COLS / layout.cols).max(1) };
    // Values per token block in each activation panel buffer (divisions hoisted out of the
    // innermost loops, where they cost ~1.5 % at 512 tokens).
    #[cfg(target_arch = "x86_64")]
    let blocks = t.div_ceil(nt);
    #[cfg(target_arch = "x86_64")]
    let per_block = [panels.qs.len(), panels.d.len(), panels.corr.len(), panels.sums.len()].map(|len| len / blocks);
    (0..w.panels() / 2).into_par_iter().for_each(|pair| {
        TILE.with(|cell| {
            let mut tile = cell.borrow_mut();
            tile.clear();
            tile.resize(t * PAIR_ROWS, 0.0);
            for u0 in (0..units).step_by(chunk_units) {
                let u1 = (u0 + chunk_units).min(units);
                if simd {
                    #[cfg(target_arch = "x86_64")]
                    let next = NextWeights::new(w, pair, u1..units, chunk_units, blocks);
                    #[cfg(target_arch = "x86_64")]
                    for (b, tok0) in (0..t).step_by(nt).enumerate() {
                        next.prefetch(b);
                        let [qs, d, corr, sums] = per_block.map(|per| per * b);
                        let mut block = PairBlock {
                            ty: w.ty,
                            panel0: w.panel(2 * pair).as_ptr(),
                            panel_bytes: w.panel_bytes(),
                            weights_len: units * layout.weight_bytes,
                            u0,
                            u1,
                            xq: panels.qs[qs..].as_ptr(),
                            xd: panels.d[d..].as_ptr(),
                            corr: panels.corr[corr..].as_ptr(),
                            sums: panels.sums[sums..].as_ptr(),
                            stride: nt,
                            prefetch_units: prefetch_units(level, b, blocks),
                            prefetch_shift: 0,
                        };
                        // The last units of a pair prefetch the next pair's first ones (the
                        // pair this thread usually runs next), so that it does not start
                        // cold: a second call, shifted past this pair's two panels.
                        let tail = if block.prefetch_units > 0 && u1 == units && 2 * pair + 2 < w.panels() {
                            prefetch_tail_units(w.ty, block.prefetch_units).min(u1 - u0)
                        } else {
                            0
                        };
                        let next_pair_shift = 2 * block.panel_bytes - block.weights_len;
                        for (a, z, shift) in [(u0, u1 - tail, 0), (u1 - tail, u1, next_pair_shift)] {
                            if a == z {
                                continue;
                            }
                            (block.u0, block.u1, block.prefetch_shift) = (a, z, shift);
                            // Safety: `simd` means the CPU has the level's features; the block
                            // points into `w`'s two panels and into token block b of the
                            // activation panels, all alive for this call; `tile` holds t x 32
                            // values and rows tok0..tok0 + nt.min(t - tok0) are this block's.
                            unsafe { pair_block_at_level(level, &block, nt.min(t - tok0), tile[tok0 * PAIR_ROWS..].as_mut_ptr()) };
                        }
                    }
                } else {
                    pair_block_ref(w, pair, u0..u1, acts, t, &mut tile);
                }
            }
            let out = OutTile { pair, rows, part_rows, t, bias, outs: &out_ptrs, epilogue, level: quant_level };
            #[cfg(target_arch = "x86_64")]
            if simd && matches!(level, Isa::Avx512 | Isa::Avx512Vnni) {
                // Safety: `simd` means the CPU has the level's features, AVX-512F included.
                unsafe { out.write_avx512(&mut tile) };
                return;
            }
            out.write(&mut tile);
        });
    });
}

/// Units ahead whose weights token block `b` of `blocks` prefetches in its kernel (0:
/// none), so that one pass reads each weight line from memory and the next lines are on
/// their way meanwhile: a single block at the AVX-512 VNNI level; at the AVX2 levels,
/// whose blocks hold 4 tokens, the first of up to 4 (Xeon, 1 thread: -3..-4 % at 8
/// and 16 tokens, none at 24). Many blocks prefetch the next chunk instead
/// ([`NextWeights`]).
#[cfg(target_arch = "x86_64")]
fn prefetch_units(level: Isa, b: usize, blocks: usize) -> usize {
    match level {
        Isa::Avx512Vnni if blocks == 1 => PREFETCH_UNITS_AHEAD,
        Isa::Avx2 | Isa::Avx512 if b == 0 && blocks <= 4 => PREFETCH_UNITS_AHEAD,
        _ => 0,
    }
}

/// The last units of a panel whose kernel prefetches (`prefetch_units` ahead) fall past
/// its weights: the Q4_K kernels prefetch in steps of one 256-byte sub-block, 8 to a unit.
#[cfg(target_arch = "x86_64")]
fn prefetch_tail_units(ty: GgmlType, prefetch_units: usize) -> usize {
    match ty {
        GgmlType::Q4K => prefetch_units.div_ceil(8),
        _ => prefetch_units,
    }
}

/// Runs the packed microkernel of `level` on one pair and token block.
///
/// # Safety
/// The CPU must have the level's features (AVX-512 VNNI, or AVX2/FMA/F16C for the other
/// x86 levels) and `block`, `nt` and `tile` must be as the kernels' `pair_block` require.
#[cfg(target_arch = "x86_64")]
unsafe fn pair_block_at_level(level: Isa, block: &PairBlock, nt: usize, tile: *mut f32) {
    if level == Isa::Avx512Vnni {
        super::x86_avx512_gemm::pair_block(block, nt, tile)
    } else {
        super::x86_avx2_gemm::pair_block(block, nt, tile)
    }
}

/// The weight bytes a pair reads after its current chunk (its next chunk, or the next
/// pair's first), fetched into L2 one slice per token block. The hardware prefetcher
/// stops at every 4 KiB page, so without this the first token block of each chunk waits
/// on memory line by line. Small batches (few token blocks per chunk) skip it: a burst
/// of prefetches takes the line-fill buffers their own loads need.
#[cfg(target_arch = "x86_64")]
struct NextWeights {
    /// Start of the next chunk in the first panel; the second panel's is `panel_bytes` on.
    start: *const u8,
    panel_bytes: usize,
    lines: usize,
    lines_per_block: usize,
}

#[cfg(target_arch = "x86_64")]
impl NextWeights {
    /// Token blocks per chunk from which prefetching pays.
    const MIN_BLOCKS: usize = 8;

    /// `rest`: the units after the current chunk, to the end of the panel.
    fn new(w: &PackedMatrix, pair: usize, rest: std::ops::Range<usize>, chunk_units: usize, blocks: usize) -> Self {
        let layout = w.layout();
        let (u1, units) = (rest.start, rest.end);
        let next: &[u8] = if blocks < Self::MIN_BLOCKS {
            &[]
        } else if u1 < units {
            &w.panel(2 * pair)[u1 * layout.weight_bytes..(u1 + chunk_units).min(units) * layout.weight_bytes]
        } else if 2 * pair + 2 < w.panels() {
            &w.panel(2 * pair + 2)[..chunk_units.min(units) * layout.weight_bytes]
        } else {
            &[]
        };
        let lines = next.len().div_ceil(64);
        NextWeights { start: next.as_ptr(), panel_bytes: w.panel_bytes(), lines, lines_per_block: lines.div_ceil(blocks) }
    }

    /// Prefetches the slice of token block `b`.
    fn prefetch(&self, b: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let l0 = (b * self.lines_per_block).min(self.lines);
        let l1 = (l0 + self.lines_per_block).min(self.lines);
        for l in l0..l1 {
            let p = self.start.wrapping_add(64 * l);
            // Safety: a prefetch never faults, whatever the address.
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.cast());
                _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(self.panel_bytes).cast());
            }
        }
    }
}

/// The scalar reference of one pair over a range of units (tests, and levels without a
/// packed kernel).
fn pair_block_ref(w: &PackedMatrix, pair: usize, units: std::ops::Range<usize>, acts: &QuantActs, t: usize, tile: &mut [f32]) {
    for tok in 0..t {
        for m in 0..2 {
            let dots = panel_dots_ref_units(w, 2 * pair + m, units.clone(), acts, tok);
            for (acc, d) in tile[tok * PAIR_ROWS + PANEL_ROWS * m..][..PANEL_ROWS].iter_mut().zip(dots) {
                *acc += d;
            }
        }
    }
}

/// Where a pair's finished tile goes: rows `32 pair..` of the matrix, split over the
/// outputs, with bias and epilogue.
struct OutTile<'a> {
    pair: usize,
    rows: usize,
    part_rows: usize,
    t: usize,
    bias: Option<&'a [f32]>,
    outs: &'a [SharedOut],
    epilogue: Epilogue,
    /// The level whose GELU the epilogue runs (the GEMM's own).
    level: Isa,
}

impl OutTile<'_> {
    /// [`Self::write`] compiled for AVX-512 (at the baseline target the epilogue runs on
    /// 128-bit vectors; it is ~4 % of a forward at 128 tokens).
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn write_avx512(&self, tile: &mut [f32]) {
        self.write(tile)
    }

    /// Writes the pair's tile `[t, 32]` to the outputs with bias and epilogue.
    #[inline(always)]
    fn write(&self, tile: &mut [f32]) {
        let OutTile { pair, rows, part_rows, t, bias, outs, epilogue, level } = *self;
        let r0 = pair * PAIR_ROWS;
        let r1 = (r0 + PAIR_ROWS).min(rows);
        // Head-major outputs are stored like token-major ones, in runs cut where a head ends.
        let (head_dim, epilogue) = match epilogue {
            Epilogue::StoreHeads(d) => (Some(d), Epilogue::Store),
            e => (None, e),
        };
        let (bias, epilogue) = if epilogue == Epilogue::Gelu {
            // GELU on the whole tile in one call, then a plain store: per output row segment
            // (16-32 values) the vectorized loop would hand most values to its scalar tail.
            if let Some(b) = bias {
                for row in tile.chunks_exact_mut(PAIR_ROWS) {
                    row.iter_mut().zip(&b[r0..r1]).for_each(|(v, &b)| *v += b);
                }
            }
            super::isa::gelu_erf(level, &mut tile[..t * PAIR_ROWS]);
            (None, Epilogue::Store)
        } else {
            (bias, epilogue)
        };
        let mut r = r0;
        while r < r1 {
            // A run of rows inside one output part (and one head), contiguous in the output.
            let part = r / part_rows;
            let col = r - part * part_rows;
            let part_end = (part + 1) * part_rows;
            let run_end = r1.min(head_dim.map_or(part_end, |d| part_end.min(r + d - col % d)));
            let n = run_end - r;
            let bias = bias.map(|b| &b[r..run_end]);
            for tok in 0..t {
                let src = &tile[tok * PAIR_ROWS + (r - r0)..][..n];
                let at = match head_dim {
                    Some(d) => (col / d) * t * d + tok * d + col % d,
                    None => tok * part_rows + col,
                };
                // Safety: pairs cover disjoint row ranges, and (tok, col..col + n) maps one to
                // one onto this range of part `part`'s t x part_rows values (token-major, or
                // [part_rows / d][t][d] head-major), so no other task writes it; the parts stay
                // mutably borrowed for the whole gemm.
                let dst = unsafe { std::slice::from_raw_parts_mut(outs[part].get().add(at), n) };
                match (epilogue, bias) {
                    (Epilogue::Store, Some(b)) => dst.iter_mut().zip(src).zip(b).for_each(|((d, &v), &b)| *d = v + b),
                    (Epilogue::Store, None) => dst.copy_from_slice(src),
                    (Epilogue::Accumulate, Some(b)) => dst.iter_mut().zip(src).zip(b).for_each(|((d, &v), &b)| *d += v + b),
                    (Epilogue::Accumulate, None) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
                    (Epilogue::Gelu | Epilogue::StoreHeads(_), _) => unreachable!("mapped to Store above"),
                }
            }
            r = run_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 VNNI microkernel of one pair and token block, with both panels at once
    /// up to 4, 6 and 8 tokens (the choice depends on the CPU's vendor: every variant is
    /// run here), against the scalar reference over 3 units: every type, 1..8 tokens.
    /// Integer sums are exact, f32 sums rounded in another order (Q4_K scales its
    /// sub-blocks in f32): bound 2e-6 x the largest output.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_pair_block_variants_match_reference() {
        use crate::kernels::{quantize_acts, QMatrix};
        if !Isa::Avx512Vnni.is_supported() {
            return;
        }
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
            let cols = 3 * ty.block_size().max(32);
            let (bs, row_bytes) = (ty.type_size(), ty.row_bytes(cols).unwrap());
            // Random weights with small scales: a 16-bit array keeps the blocks aligned.
            let mut words = vec![0u16; PAIR_ROWS * row_bytes / 2];
            for (i, w) in words.iter_mut().enumerate() {
                let scale = 2 * i % bs < if ty == GgmlType::Q4K { 4 } else { 2 };
                let noise = (i.wrapping_mul(2654435761) >> 9) as u16;
                *w = if scale { half::f16::from_f32(0.001 + f32::from(noise % 97) * 1e-4).to_bits() } else { noise };
            }
            // Safety: u16 storage viewed as its bytes.
            let raw = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 2) };
            let w = PackedMatrix::pack(&[&QMatrix::new(ty, raw, PAIR_ROWS, cols).unwrap()]).unwrap().unwrap();
            let (layout, units) = (w.layout(), cols / w.layout().cols);
            for nt in 1..=8 {
                let x: Vec<f32> = (0..nt * cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
                let mut acts = QuantActs::default();
                quantize_acts(Isa::Avx512Vnni, ActFormat::for_weights(ty).unwrap(), &x, nt, cols, &mut acts);
                let offset = match ty {
                    GgmlType::Q8_0 => 128,
                    GgmlType::Q4_0 => 8,
                    _ => 0,
                };
                let mut panels = ActPanels::default();
                panels.build(Isa::Avx512Vnni, &acts, nt, nt, offset);
                let mut want = vec![0.0; nt * PAIR_ROWS];
                pair_block_ref(&w, 0, 0..units, &acts, nt, &mut want);
                let magnitude = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                let block = PairBlock {
                    ty,
                    panel0: w.panel(0).as_ptr(),
                    panel_bytes: w.panel_bytes(),
                    weights_len: units * layout.weight_bytes,
                    u0: 0,
                    u1: units,
                    xq: panels.qs.as_ptr(),
                    xd: panels.d.as_ptr(),
                    corr: panels.corr.as_ptr(),
                    sums: panels.sums.as_ptr(),
                    stride: nt,
                    prefetch_units: 0,
                    prefetch_shift: 0,
                };
                for pair_max in [4, 6, 8] {
                    let mut got = vec![0.0; nt * PAIR_ROWS];
                    // Safety: AVX-512 VNNI was checked above; the block points into `w` and
                    // `panels`, alive here, and `got` holds nt x 32 values.
                    unsafe { super::super::x86_avx512_gemm::pair_block_with(&block, nt, got.as_mut_ptr(), pair_max) };
                    let e = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / magnitude;
                    assert!(e <= 2e-6, "{ty}, {nt} tokens, both panels up to {pair_max}: rel diff {e:.2e}");
                }
            }
        }
    }

    /// Every level's activation interleaving equals the reference exactly, over token
    /// blocks of 1..16 with short last blocks, and rows with and without a partial group
    /// of 16 quads; every output value is written (the buffers are prefilled).
    #[test]
    fn interleave_quads_matches_reference() {
        for nt in (1..=8).chain([16]) {
            for tokens in 1..=nt {
                for cols in [4, 32, 60, 64, 96, 288, 2592] {
                    let rows: Vec<i8> = (0..tokens * cols).map(|i| (i * 37 % 256) as u8 as i8).collect();
                    let mut want = vec![i32::MIN; cols / 4 * nt];
                    interleave_quads_ref(&rows, cols, tokens, nt, cols / 4, &mut want);
                    for (i, n) in [(0, 0), (cols / 4 - 1, tokens - 1)] {
                        let q = &rows[n * cols + 4 * i..][..4];
                        assert_eq!(want[i * nt + n], i32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]));
                    }
                    assert!(want.chunks(nt).all(|quad| quad[tokens..].iter().all(|&v| v == 0)), "padding is zero");
                    for level in Isa::supported() {
                        let mut got = vec![i32::MIN; cols / 4 * nt];
                        interleave_quads(level, &rows, cols, tokens, nt, &mut got);
                        assert_eq!(got, want, "{level}: nt {nt}, {tokens} tokens, {cols} columns");
                    }
                }
            }
        }
    }
}
