//! Multi-head self-attention for one sequence, parallel over heads.
//!
//! The SIMD levels run a blocked kernel: 8 queries at a time against 3 vectors of 16 keys
//! (scores) or 16 value columns (outputs), so each key or value vector loaded from cache
//! feeds 8 independent FMA chains; 4 such query blocks share each key block while it is
//! in L1. Per head, `prepare` first copies the head's queries and keys (and values, unless
//! they can be read in place) into those layouts; the weighted sum of values reads the
//! exps where the softmax left them. The scalar level keeps the plain per-query loops as
//! the reference.

use super::{SharedOut, isa, Isa};
use rayon::prelude::*;
use std::cell::RefCell;
use std::marker::PhantomData;

/// Score given to masked keys: finite, so a row whose keys are all masked gets a
/// uniform distribution instead of NaN.
pub const MASKED_SCORE: f32 = -1e30;

/// How q, k and v hold each head's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvLayout {
    /// `[t, heads * head_dim]`, head j at columns `j * head_dim..` (as a matmul writes them).
    TokenMajor,
    /// `[heads][rows][head_dim]` (as `Epilogue::StoreHeads` writes them): the sequence is
    /// rows `first_row..first_row + t` of each head (one input of a batch).
    HeadMajor { rows: usize, first_row: usize },
}

impl QkvLayout {
    /// Values each of q, k and v must hold.
    fn len(self, t: usize, hd: usize) -> usize {
        match self {
            QkvLayout::TokenMajor => t * hd,
            QkvLayout::HeadMajor { rows, .. } => rows * hd,
        }
    }

    /// Index of head `h`'s first value of the sequence's row 0, and the step from row to row.
    fn head_start(self, h: usize, head_dim: usize, hd: usize) -> (usize, usize) {
        match self {
            QkvLayout::TokenMajor => (h * head_dim, hd),
            QkvLayout::HeadMajor { rows, first_row } => ((h * rows + first_row) * head_dim, head_dim),
        }
    }
}

/// q, k, v: `layout`; out: [t, heads * head_dim] (head j at columns j*head_dim..);
/// key_mask: [t], true = attend. out = softmax(q kᵀ / sqrt(head_dim) + mask) v per head.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], layout: QkvLayout, key_mask: &[bool], t: usize, heads: usize, head_dim: usize, out: &mut [f32]) {
    attention_at_level(isa(), q, k, v, layout, key_mask, t, heads, head_dim, out)
}

/// [`attention`] at an explicit ISA level (tests); an unsupported level runs scalar.
#[allow(clippy::too_many_arguments)]
pub fn attention_at_level(
    level: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    layout: QkvLayout,
    key_mask: &[bool],
    t: usize,
    heads: usize,
    head_dim: usize,
    out: &mut [f32],
) {
    let hd = heads * head_dim;
    assert!(head_dim > 0 && heads > 0, "attention: zero heads or head_dim");
    if let QkvLayout::HeadMajor { rows, first_row } = layout {
        assert!(first_row + t <= rows, "attention: rows {first_row}..{} past the {rows} rows", first_row + t);
    }
    let qkv_len = layout.len(t, hd);
    for (name, len, want) in [("q", q.len(), qkv_len), ("k", k.len(), qkv_len), ("v", v.len(), qkv_len), ("out", out.len(), t * hd)] {
        assert_eq!(len, want, "attention: {name} has {len} values, expected {want}");
    }
    assert_eq!(key_mask.len(), t, "attention: key_mask has {} entries, expected {t}", key_mask.len());
    if t == 0 {
        return;
    }
    let level = if level.is_supported() { level } else { Isa::Scalar };
    if level == Isa::Scalar {
        return attention_reference(q, k, v, layout, key_mask, t, heads, head_dim, out);
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    let dp = Padded::new(t, head_dim).dp;
    // The weighted sum of values writes its vectors straight into `out` when they end
    // where the head's columns do; otherwise into scratch rows, copied after.
    let direct = head_dim.is_multiple_of(LANES);
    let out_ptr = SharedOut(out.as_mut_ptr());
    (0..heads).into_par_iter().for_each(|h| {
        // Safety: head h writes only columns h*head_dim..(h+1)*head_dim of rows i < t,
        // disjoint from every other task; `out` is borrowed mutably for the whole
        // parallel loop and has t * hd values (asserted above).
        let head_out = unsafe { OutRows::from_raw(out_ptr.get().add(h * head_dim), t, hd, head_dim) };
        HEAD_SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let hs = &mut *guard;
            let (start, stride) = layout.head_start(h, head_dim, hd);
            let rows = HeadRows { q, k, v, start, stride, scale };
            if direct {
                run_blocked_head(level, hs, rows, Some(head_out), key_mask, t, head_dim);
            } else {
                run_blocked_head(level, hs, rows, None, key_mask, t, head_dim);
                let mut head_out = head_out;
                for i in 0..t {
                    head_out.row(i).copy_from_slice(&hs.out[i * dp..i * dp + head_dim]);
                }
            }
        });
    });
}

/// Rows a product writes: row r at `ptr + r * stride`, its first `width` values, for
/// r < `rows`. Unlike a slice, it can be a column band of a matrix whose other columns
/// belong to other threads.
struct OutRows<'a> {
    ptr: *mut f32,
    stride: usize,
    rows: usize,
    width: usize,
    _borrow: PhantomData<&'a mut f32>,
}

impl<'a> OutRows<'a> {
    /// `rows` rows of `width` values, `stride` apart, from the start of `s`.
    fn of_slice(s: &'a mut [f32], rows: usize, stride: usize, width: usize) -> Self {
        assert!(width <= stride && (rows == 0 || (rows - 1) * stride + width <= s.len()), "OutRows: slice too short");
        OutRows { ptr: s.as_mut_ptr(), stride, rows, width, _borrow: PhantomData }
    }

    /// # Safety
    /// For `'a`, the values at `ptr + r * stride + c` (r < rows, c < width) are valid for
    /// reads and writes, and nothing else accesses them.
    unsafe fn from_raw(ptr: *mut f32, rows: usize, stride: usize, width: usize) -> Self {
        OutRows { ptr, stride, rows, width, _borrow: PhantomData }
    }

    /// The rows from `row` on, their columns from `col` on.
    fn at(&mut self, row: usize, col: usize) -> OutRows<'_> {
        assert!(row <= self.rows && col <= self.width, "OutRows: ({row}, {col}) outside");
        OutRows { ptr: self.ptr.wrapping_add(row * self.stride + col), stride: self.stride, rows: self.rows - row, width: self.width - col, _borrow: PhantomData }
    }

    /// Row `r`'s `width` values.
    fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows, "OutRows: row {r} of {}", self.rows);
        // Safety: inside the rows and columns this value owns (its invariant).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.width) }
    }
}

const LANES: usize = 16;
/// Queries per block.
const QB: usize = 8;
/// Key (or value-column) vectors per block: QB x KV accumulators of LANES lanes (24 of
/// the 32 zmm registers; each step loads KV vectors and broadcasts QB scalars for
/// QB x KV FMAs).
const KV: usize = 3;
/// Columns per block of the blocked products.
const BW: usize = KV * LANES;
/// Query blocks whose scores are computed together, each key block loaded once for all.
const QUERY_GROUP: usize = 4;
const _: () = assert!(KV == 3, "the SIMD rank-1 kernels are instantiated for 1 to 3 vectors");
const _: () = assert!(BW.is_multiple_of(QB), "a key block holds whole panels of QB keys");

/// One head's operands, laid out for the blocked kernel and reused across calls.
#[derive(Default)]
struct HeadScratch {
    /// Scaled queries transposed in blocks of `QB`, `[tq / QB][d][QB]`, zero beyond t: the
    /// `QB` values a scores step broadcasts sit together, addressed from one pointer.
    q: Vec<f32>,
    /// Keys transposed in blocks of `BW` keys, `[kp / BW][d][BW]`, zero beyond t:
    /// each block's `d` rows are contiguous (rows `tp` apart would fall into a few L1
    /// sets and evict each other).
    kt: Vec<f32>,
    /// Values in blocks of `BW` columns, `[vp / BW][t][BW]`, zero beyond d; unused when
    /// the products read V in place (see [`HeadRows::values_in_place`]).
    v: Vec<f32>,
    /// Scores of a group of `QUERY_GROUP` query blocks, `[QUERY_GROUP][QB, tp]`, then
    /// (unnormalized) probabilities, read in place by the weighted sum of values.
    scores: Vec<f32>,
    /// Outputs `[t, dp]`, for head dims whose output vectors cannot go straight to the
    /// caller's rows (sized by `blocked_head`, their only user).
    out: Vec<f32>,
}

/// Padded sizes of one head's buffers for `t` tokens and head dimension `d`.
#[derive(Clone, Copy)]
struct Padded {
    /// Queries, whole blocks of `QB`.
    tq: usize,
    /// A row of scores: keys up to whole vectors (the last key block may be 1 or 2 vectors).
    tp: usize,
    /// Keys in whole blocks of `BW`.
    kp: usize,
    /// Value columns in whole blocks of `BW`.
    vp: usize,
    /// A row of outputs: columns up to whole vectors.
    dp: usize,
}

impl Padded {
    fn new(t: usize, d: usize) -> Self {
        Padded { tq: t.next_multiple_of(QB), tp: t.next_multiple_of(LANES), kp: t.next_multiple_of(BW), vp: d.next_multiple_of(BW), dp: d.next_multiple_of(LANES) }
    }
}

/// One head of q, k and v: its row s at `start + s * stride` of each, `d` values.
#[derive(Clone, Copy)]
struct HeadRows<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    start: usize,
    stride: usize,
    /// Applied to the queries: 1 / sqrt(head_dim).
    scale: f32,
}

impl HeadRows<'_> {
    /// Whether the weighted sum of values can read V where it is: contiguous rows
    /// (head-major) of whole vectors, so that no vector reaches past a row.
    fn values_in_place(&self, d: usize) -> bool {
        self.stride == d && d.is_multiple_of(LANES)
    }
}

impl HeadScratch {
    /// Copies one head of q (scaled), k and v into the kernel's layouts, transposing
    /// queries and keys a panel of `QB` rows at a time with `transpose`.
    /// Buffers are only resized, not cleared: every value the kernel reads is written
    /// here or by an earlier step of the same call, except the zero padding of keys past
    /// `t` and of value columns past `d`, which is written explicitly.
    fn prepare(&mut self, rows: HeadRows<'_>, t: usize, d: usize, transpose: impl Fn(Panel<'_>, &mut [f32])) {
        let HeadRows { q, k, v, start, stride, scale } = rows;
        let Padded { tq, tp, kp, vp, .. } = Padded::new(t, d);
        let copy_values = !rows.values_in_place(d);
        for (buf, n) in [
            (&mut self.q, tq * d),
            (&mut self.kt, d * kp),
            (&mut self.v, if copy_values { t * vp } else { 0 }),
            (&mut self.scores, QUERY_GROUP * QB * tp),
        ] {
            buf.resize(n, 0.0);
        }
        // Padded queries and keys score 0 (never read back), padded value columns give 0
        // (never copied out); zeros keep stale NaNs from earlier calls out of the products.
        // (Each slice below is empty when there is no padding.)
        for query_row in self.q[(t / QB) * d * QB..].chunks_exact_mut(QB) {
            query_row[t % QB..].fill(0.0);
        }
        for key_row in self.kt[(t / BW) * d * BW..].chunks_exact_mut(BW) {
            key_row[t % BW..].fill(0.0);
        }
        if copy_values {
            for row in self.v[(d / BW) * t * BW..].chunks_exact_mut(BW) {
                row[d % BW..].fill(0.0);
            }
        }
        for s0 in (0..t).step_by(QB) {
            // Token-major, the head's slice of each row is a few lines in its own page,
            // which the hardware prefetcher does not follow from row to row: the next
            // panel's are fetched ahead. (Head-major rows are contiguous.)
            #[cfg(target_arch = "x86_64")]
            if stride > d {
                for s in (s0 + QB..s0 + 2 * QB).take_while(|&s| s < t) {
                    for m in [q, k, v] {
                        super::prefetch_lines::<{ std::arch::x86_64::_MM_HINT_T0 }>(m[start + s * stride..].as_ptr().cast(), 4 * d);
                    }
                }
            }
            let (first, rows) = (start + s0 * stride, QB.min(t - s0));
            // A block of queries, or of keys, holds whole panels (BW is a multiple of QB).
            let query_block = &mut self.q[(s0 / QB) * d * QB..];
            let key_block = &mut self.kt[(s0 / BW) * d * BW + s0 % BW..];
            transpose(Panel { src: &q[first..], src_stride: stride, rows, cols: d, scale: [scale; QB], dst_stride: QB }, query_block);
            transpose(Panel { src: &k[first..], src_stride: stride, rows, cols: d, scale: [1.0; QB], dst_stride: BW }, key_block);
            if copy_values {
                for s in s0..(s0 + QB).min(t) {
                    let row = start + s * stride;
                    for (b, cols) in v[row..row + d].chunks(BW).enumerate() {
                        self.v[b * t * BW + s * BW..][..cols.len()].copy_from_slice(cols);
                    }
                }
            }
        }
    }
}

thread_local! {
    static HEAD_SCRATCH: RefCell<HeadScratch> = RefCell::new(HeadScratch::default());
}

/// One head: `dest` receives its outputs (`None`: `hs.out`).
fn run_blocked_head(level: Isa, hs: &mut HeadScratch, rows: HeadRows<'_>, dest: Option<OutRows<'_>>, mask: &[bool], t: usize, d: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
        unsafe fn avx512(hs: &mut HeadScratch, rows: HeadRows<'_>, dest: Option<OutRows<'_>>, mask: &[bool], t: usize, d: usize) {
            // Safety (each arm): this function's features include AVX-512F; the instance
            // matches the product's shape; sizes are checked inside.
            let rank1 = |p: Rank1<'_>, out: OutRows<'_>| match (p.vectors, p.a_rows.is_some()) {
                (3, false) => unsafe { rank1_block_avx512::<3, false>(p, out) },
                (2, false) => unsafe { rank1_block_avx512::<2, false>(p, out) },
                (_, false) => unsafe { rank1_block_avx512::<1, false>(p, out) },
                (3, true) => unsafe { rank1_block_avx512::<3, true>(p, out) },
                (2, true) => unsafe { rank1_block_avx512::<2, true>(p, out) },
                (_, true) => unsafe { rank1_block_avx512::<1, true>(p, out) },
            };
            // Safety: AVX is part of AVX-512F; sizes are checked inside.
            let transpose = |p: Panel<'_>, dst: &mut [f32]| unsafe { transpose_panel_avx(p, dst) };
            hs.prepare(rows, t, d, transpose);
            blocked_head(hs, rows, dest, mask, t, d, rank1)
        }
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2(hs: &mut HeadScratch, rows: HeadRows<'_>, dest: Option<OutRows<'_>>, mask: &[bool], t: usize, d: usize) {
            // Safety (each arm): this function's features include AVX2 and FMA; the
            // instance matches the layout of a; sizes are checked inside.
            let rank1 = |p: Rank1<'_>, out: OutRows<'_>| match p.a_rows.is_some() {
                false => unsafe { rank1_block_avx2::<false>(p, out) },
                true => unsafe { rank1_block_avx2::<true>(p, out) },
            };
            // Safety: AVX is part of AVX2; sizes are checked inside.
            let transpose = |p: Panel<'_>, dst: &mut [f32]| unsafe { transpose_panel_avx(p, dst) };
            hs.prepare(rows, t, d, transpose);
            blocked_head(hs, rows, dest, mask, t, d, rank1)
        }
        if matches!(level, Isa::Avx512 | Isa::Avx512Vnni) && super::x86_avx512::Avx512::new().is_some() {
            // Safety: the token check proves the CPU has these features.
            return unsafe { avx512(hs, rows, dest, mask, t, d) };
        }
        if super::x86_avx2::Avx2::new().is_some() {
            // Safety: as above.
            return unsafe { avx2(hs, rows, dest, mask, t, d) };
        }
    }
    let _ = level;
    // aarch64: NEON and FMA are part of the baseline target.
    hs.prepare(rows, t, d, transpose_panel);
    blocked_head(hs, rows, dest, mask, t, d, rank1_block)
}

/// One rank-1-update product, the heart of both attention products:
/// `out[j][c] = sum_i a_ij * b[i * b_stride + c]` for rows `j < rows` and columns
/// `c < vectors * LANES` of `b`.
#[derive(Clone, Copy)]
struct Rank1<'a> {
    /// The `QB` values a_ij broadcast at step i.
    a: &'a [f32],
    /// Where a_ij is: `a[i * QB + j]` (`None`: side by side, the transposed queries) or
    /// `a[j * stride + i]` (`Some(stride)`: down the rows, the probabilities).
    a_rows: Option<usize>,
    /// `[n, b_stride]`, of which the first `vectors * LANES` columns are used.
    b: &'a [f32],
    b_stride: usize,
    n: usize,
    /// 1 to `KV` vectors of `LANES` columns (fewer for the last keys or columns).
    vectors: usize,
    /// Rows of the result written (`<= QB`; a short last query block writes fewer).
    rows: usize,
}

impl Rank1<'_> {
    /// Panics unless the operands and `out` hold what the product reads and writes.
    fn check(&self, out: &OutRows<'_>) {
        let cols = self.vectors * LANES;
        assert!((1..=KV).contains(&self.vectors) && (1..=QB).contains(&self.rows) && cols <= self.b_stride, "rank1: bad shape");
        let a_len = match self.a_rows {
            None => self.n * QB,
            Some(stride) => (QB - 1) * stride + self.n,
        };
        assert!(self.a.len() >= a_len && (self.n == 0 || self.b.len() >= (self.n - 1) * self.b_stride + cols), "rank1: short operands");
        assert!(self.rows <= out.rows && cols <= out.width, "rank1: short output");
    }
}

/// [`Rank1`], portable: one vector of columns at a time, `QB` independent FMA chains (the
/// shape compilers keep in registers).
// a: [n, QB] or [QB, a_rows], b: [n, b_stride] -> out: [rows][vectors x LANES]
#[inline(always)]
fn rank1_block(p: Rank1<'_>, mut out: OutRows<'_>) {
    p.check(&out);
    for v in 0..p.vectors {
        let mut acc = [[0.0f32; LANES]; QB];
        for i in 0..p.n {
            let aj: [f32; QB] = std::array::from_fn(|j| match p.a_rows {
                None => p.a[i * QB + j],
                Some(stride) => p.a[j * stride + i],
            });
            let o = i * p.b_stride + v * LANES;
            let bv: &[f32; LANES] = p.b[o..o + LANES].try_into().expect("LANES");
            for j in 0..QB {
                for l in 0..LANES {
                    acc[j][l] = aj[j].mul_add(bv[l], acc[j][l]);
                }
            }
        }
        for (j, acc) in acc.iter().enumerate().take(p.rows) {
            out.row(j)[v * LANES..][..LANES].copy_from_slice(acc);
        }
    }
}

/// [`Rank1`] with AVX-512: `NV x QB` accumulators in zmm registers, so each step loads
/// `NV` vectors and broadcasts `QB` scalars for `NV x QB` FMAs; results are stored
/// straight into `out`. `A_ROWS`: `p.a_rows` is `Some` (a const, so that each layout's
/// loop has its own addressing).
///
/// # Safety
/// The CPU must have AVX-512F; `p.vectors == NV`, `p.a_rows.is_some() == A_ROWS` (sizes
/// are checked).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn rank1_block_avx512<const NV: usize, const A_ROWS: bool>(p: Rank1<'_>, out: OutRows<'_>) {
    use std::arch::x86_64::*;
    p.check(&out);
    assert!(p.vectors == NV && p.a_rows.is_some() == A_ROWS, "rank1: wrong instance");
    let mut acc = [[_mm512_setzero_ps(); NV]; QB];
    let (ap, bp) = (p.a.as_ptr(), p.b.as_ptr());
    let a_rows: [*const f32; QB] = std::array::from_fn(|j| ap.wrapping_add(j * p.a_rows.unwrap_or(0)));
    let mut step = |i: usize| {
        // Safety (all loads and stores): within the lengths `check` asserted.
        let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(bp.add(i * p.b_stride + v * LANES)));
        for (j, accj) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(if A_ROWS { *a_rows[j].add(i) } else { *ap.add(i * QB + j) });
            for v in 0..NV {
                accj[v] = _mm512_fmadd_ps(x, bv[v], accj[v]);
            }
        }
    };
    // Two steps per iteration: down the rows of a, one row address serves both.
    for i in (0..p.n / 2 * 2).step_by(2) {
        step(i);
        step(i + 1);
    }
    if p.n % 2 == 1 {
        step(p.n - 1);
    }
    for (j, accj) in acc.iter().enumerate().take(p.rows) {
        for (v, a) in accj.iter().enumerate() {
            _mm512_storeu_ps(out.ptr.add(j * out.stride + v * LANES), *a);
        }
    }
}

/// [`Rank1`] with AVX2: the columns in passes of 8, each with `QB` query accumulators
/// (16 ymm registers hold 8 sums, a column vector and a broadcast). `A_ROWS` as for
/// [`rank1_block_avx512`].
///
/// # Safety
/// The CPU must have AVX2 and FMA; `p.a_rows.is_some() == A_ROWS` (sizes are checked).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rank1_block_avx2<const A_ROWS: bool>(p: Rank1<'_>, out: OutRows<'_>) {
    use std::arch::x86_64::*;
    p.check(&out);
    assert!(p.a_rows.is_some() == A_ROWS, "rank1: wrong instance");
    let (ap, bp) = (p.a.as_ptr(), p.b.as_ptr());
    let a_rows: [*const f32; QB] = std::array::from_fn(|j| ap.wrapping_add(j * p.a_rows.unwrap_or(0)));
    for c0 in (0..p.vectors * LANES).step_by(8) {
        let mut acc = [_mm256_setzero_ps(); QB];
        for i in 0..p.n {
            // Safety (all loads and stores): within the lengths `check` asserted.
            let bv = _mm256_loadu_ps(bp.add(i * p.b_stride + c0));
            for (j, accj) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_ps(if A_ROWS { *a_rows[j].add(i) } else { *ap.add(i * QB + j) });
                *accj = _mm256_fmadd_ps(x, bv, *accj);
            }
        }
        for (j, accj) in acc.iter().enumerate().take(p.rows) {
            _mm256_storeu_ps(out.ptr.add(j * out.stride + c0), *accj);
        }
    }
}

/// A panel of up to `QB` rows to transpose, each row scaled:
/// `dst[c * dst_stride + j] = src[j * src_stride + c] * scale[j]` for `j < rows`, `c < cols`.
/// Turns queries and keys into the columns the scores product steps over.
#[derive(Clone, Copy)]
struct Panel<'a> {
    src: &'a [f32],
    src_stride: usize,
    /// 1 to `QB` (fewer for the last tokens).
    rows: usize,
    cols: usize,
    scale: [f32; QB],
    dst_stride: usize,
}

impl Panel<'_> {
    /// Panics unless `src` and `dst` hold what the transpose reads and writes.
    fn check(&self, dst: &[f32]) {
        assert!((1..=QB).contains(&self.rows) && self.dst_stride >= QB, "transpose: bad shape");
        assert!(self.src.len() >= (self.rows - 1) * self.src_stride + self.cols, "transpose: short source");
        assert!(self.cols == 0 || dst.len() >= (self.cols - 1) * self.dst_stride + self.rows, "transpose: short destination");
    }

    /// The transpose of columns `cols`, one value at a time.
    fn transpose_columns(&self, cols: std::ops::Range<usize>, dst: &mut [f32]) {
        for j in 0..self.rows {
            for c in cols.clone() {
                dst[c * self.dst_stride + j] = self.src[j * self.src_stride + c] * self.scale[j];
            }
        }
    }
}

/// [`Panel`], portable (the reference for [`transpose_panel_avx`]).
// src: [rows, src_stride] -> dst: [cols, dst_stride] (rows values of each row written)
fn transpose_panel(p: Panel<'_>, dst: &mut [f32]) {
    p.check(dst);
    p.transpose_columns(0..p.cols, dst);
}

/// [`Panel`] in 8 x 8 tiles held in AVX registers (the scalar scatter cost 10 % of
/// attention); columns past the last whole tile, and a panel of fewer than 8 rows, go one
/// value at a time.
///
/// # Safety
/// The CPU must have AVX (sizes are checked).
// src: [rows, src_stride] -> dst: [cols, dst_stride] (rows values of each row written)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_panel_avx(p: Panel<'_>, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    const _: () = assert!(QB == 8, "8 x 8 tiles");
    p.check(dst);
    let (src, out) = (p.src.as_ptr(), dst.as_mut_ptr());
    let scale: [__m256; QB] = std::array::from_fn(|j| _mm256_set1_ps(p.scale[j]));
    let whole = if p.rows == QB { p.cols / 8 * 8 } else { 0 };
    for c0 in (0..whole).step_by(8) {
        // Safety (all loads and stores): within the lengths `check` asserted.
        let r: [__m256; 8] = std::array::from_fn(|j| _mm256_mul_ps(_mm256_loadu_ps(src.add(j * p.src_stride + c0)), scale[j]));
        let t0 = [_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]), _mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3])];
        let t1 = [_mm256_unpacklo_ps(r[4], r[5]), _mm256_unpackhi_ps(r[4], r[5]), _mm256_unpacklo_ps(r[6], r[7]), _mm256_unpackhi_ps(r[6], r[7])];
        let u0 = [
            _mm256_shuffle_ps::<0x44>(t0[0], t0[2]),
            _mm256_shuffle_ps::<0xEE>(t0[0], t0[2]),
            _mm256_shuffle_ps::<0x44>(t0[1], t0[3]),
            _mm256_shuffle_ps::<0xEE>(t0[1], t0[3]),
        ];
        let u1 = [
            _mm256_shuffle_ps::<0x44>(t1[0], t1[2]),
            _mm256_shuffle_ps::<0xEE>(t1[0], t1[2]),
            _mm256_shuffle_ps::<0x44>(t1[1], t1[3]),
            _mm256_shuffle_ps::<0xEE>(t1[1], t1[3]),
        ];
        for i in 0..4 {
            _mm256_storeu_ps(out.add((c0 + i) * p.dst_stride), _mm256_permute2f128_ps::<0x20>(u0[i], u1[i]));
            _mm256_storeu_ps(out.add((c0 + 4 + i) * p.dst_stride), _mm256_permute2f128_ps::<0x31>(u0[i], u1[i]));
        }
    }
    p.transpose_columns(whole..p.cols, dst);
}

/// softmax(q kᵀ + mask) v for one head, `QB` queries at a time. Written with fixed-size
/// lane arrays so that it vectorizes under the caller's target features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn blocked_head(
    hs: &mut HeadScratch,
    rows: HeadRows<'_>,
    dest: Option<OutRows<'_>>,
    mask: &[bool],
    t: usize,
    d: usize,
    rank1: impl Fn(Rank1<'_>, OutRows<'_>),
) {
    let Padded { tp, dp, .. } = Padded::new(t, d);
    let HeadScratch { q, kt, v, scores, out } = hs;
    let mut dest = dest.unwrap_or_else(|| {
        out.resize(t * dp, 0.0);
        OutRows::of_slice(out, t, dp, dp)
    });
    // V as the weighted sum reads it: rows of `v_stride` values, the columns from c0 at
    // `c0 * block_step` (in place, or the blocks `prepare` copied).
    let (values, v_stride, block_step) = if rows.values_in_place(d) { (&rows.v[rows.start..], d, 1) } else { (&v[..], BW, t) };
    // The encoder passes each input's own tokens, so a mask with a masked key is rare.
    let masked = mask.contains(&false);
    for g0 in (0..t).step_by(QUERY_GROUP * QB) {
        let blocks = (t - g0).div_ceil(QB).min(QUERY_GROUP);
        // scores[j, s] = q_j . k_s: steps over c, b = the key block's rows. Each key block
        // serves the group's query blocks while it is in L1; the last block computes only
        // the vectors that hold keys.
        for s0 in (0..t).step_by(BW) {
            let b = &kt[s0 * d..(s0 + BW) * d];
            let vectors = (t - s0).div_ceil(LANES).min(KV);
            for g in 0..blocks {
                let i0 = g0 + g * QB;
                let qt = &q[i0 * d..(i0 + QB) * d];
                let out = OutRows::of_slice(&mut scores[g * QB * tp + s0..], QB, tp, tp - s0);
                rank1(Rank1 { a: qt, a_rows: None, b, b_stride: BW, n: d, vectors, rows: QB }, out);
            }
        }
        for g in 0..blocks {
            let (i0, scores) = (g0 + g * QB, &mut scores[g * QB * tp..(g + 1) * QB * tp]);
            let nq = QB.min(t - i0);
            let mut inv = [0.0f32; QB];
            for (row, inv) in scores.chunks_exact_mut(tp).zip(&mut inv) {
                let row = &mut row[..t];
                if masked {
                    for (sc, &keep) in row.iter_mut().zip(mask) {
                        if !keep {
                            *sc = MASKED_SCORE;
                        }
                    }
                }
                *inv = 1.0 / super::generic::softmax_unnormalized(row);
            }
            // out[j, c] = sum_s p_js v_sc: steps over s, a = the rows of exps in place, b = v
            // rows; the softmax's division is applied to the d outputs, not the t exps.
            // A head dimension of 80 is a block of 3 vectors and one of 2, not a padded 96.
            // The next block's output rows are fetched for writing: written straight into
            // a token-major output, each is in its own page, which the hardware
            // prefetcher does not follow.
            #[cfg(target_arch = "x86_64")]
            for r in (i0 + QB..i0 + 2 * QB).take_while(|&r| r < t) {
                super::prefetch_lines::<{ std::arch::x86_64::_MM_HINT_ET0 }>(dest.ptr.wrapping_add(r * dest.stride).cast(), 4 * d);
            }
            for c0 in (0..d).step_by(BW) {
                let vectors = (d - c0).div_ceil(LANES).min(KV);
                let b = &values[c0 * block_step..];
                rank1(Rank1 { a: scores, a_rows: Some(tp), b, b_stride: v_stride, n: t, vectors, rows: nq }, dest.at(i0, c0));
            }
            for (j, inv) in inv.iter().enumerate().take(nq) {
                dest.row(i0 + j)[..d].iter_mut().for_each(|x| *x *= inv);
            }
        }
    }
}

/// The plain version (the scalar level): per head, per query, over transposed K and V.
#[allow(clippy::too_many_arguments)]
fn attention_reference(q: &[f32], k: &[f32], v: &[f32], layout: QkvLayout, key_mask: &[bool], t: usize, heads: usize, head_dim: usize, out: &mut [f32]) {
    let level = Isa::Scalar;
    let hd = heads * head_dim;
    let scale = 1.0 / (head_dim as f32).sqrt();
    // One task per head. Keys and values are transposed to [head_dim, t] so that both
    // the scores (head_dim axpys of length t) and the weighted sum of values (head_dim
    // dots of length t) run over long contiguous vectors.
    let per_head: Vec<Vec<f32>> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let (start, stride) = layout.head_start(h, head_dim, hd);
            let mut kt = vec![0.0f32; head_dim * t];
            let mut vt = vec![0.0f32; head_dim * t];
            for s in 0..t {
                for c in 0..head_dim {
                    kt[c * t + s] = k[start + s * stride + c];
                    vt[c * t + s] = v[start + s * stride + c];
                }
            }
            let mut scores = vec![0.0f32; t];
            let mut out_h = vec![0.0f32; t * head_dim];
            for i in 0..t {
                scores.fill(0.0);
                for c in 0..head_dim {
                    super::isa::axpy(level, q[start + i * stride + c] * scale, &kt[c * t..(c + 1) * t], &mut scores);
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


#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX transpose equals the portable one exactly (it only moves and scales values)
    /// over column counts with and without a partial tile, whole and short panels of rows,
    /// strides wider than the rows,
    /// and destinations prefilled with NaN whose untouched values must stay NaN.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn transpose_panel_avx_matches_portable() {
        if super::super::x86_avx2::Avx2::new().is_none() {
            eprintln!("skipped: no AVX2");
            return;
        }
        let shapes = [(0, 5, 8), (1, 1, 8), (7, 9, 8), (8, 8, 8), (24, 31, 48), (80, 80, 48), (83, 2560, 8), (517, 528, 8)];
        for ((cols, src_stride, dst_stride), rows) in shapes.into_iter().flat_map(|s| [(s, QB), (s, 3), (s, 1)]) {
            let src: Vec<f32> = (0..(rows - 1) * src_stride + cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let scale: [f32; QB] = std::array::from_fn(|j| 0.5 + j as f32);
            let len = if cols == 0 { 0 } else { (cols - 1) * dst_stride + rows };
            let (mut want, mut got) = (vec![f32::NAN; len + 3], vec![f32::NAN; len + 3]);
            let panel = Panel { src: &src, src_stride, rows, cols, scale, dst_stride };
            transpose_panel(panel, &mut want);
            // Safety: AVX2 (and so AVX) was checked above.
            unsafe { transpose_panel_avx(panel, &mut got) };
            let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{rows} rows, cols {cols}, strides {src_stride}/{dst_stride}");
        }
    }
}
