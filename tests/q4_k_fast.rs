//! The vectorized Q4_K quantizer against the scalar reference, byte for byte, at every
//! ISA level this CPU supports: synthetic rows built to hit every branch of the
//! reference's search (constant, zero, one-sided, tied, huge, tiny and subnormal
//! sub-blocks), and the real weight tensors of the committed fixture checkpoint.

mod common;

use common::rng::Rng;
use xlmr::kernels::Isa;
use xlmr::quant::q4_k_fast::quantize_row_q4_k_at_level;
use xlmr::quant::{blocks_as_bytes, quantize_row, quantize_row_q4_k_ref, BlockQ4K, GgmlType, QK_K};

const ZERO_BLOCK: BlockQ4K = BlockQ4K { d: half::f16::ZERO, dmin: half::f16::ZERO, scales: [0; 12], qs: [0; 128] };

fn reference(x: &[f32]) -> Vec<BlockQ4K> {
    let mut y = vec![ZERO_BLOCK; x.len() / QK_K];
    quantize_row_q4_k_ref(x, &mut y);
    y
}

/// Asserts that every level (and `quantize_row`, the converter's entry) gives the
/// reference's bytes for the row `x`.
fn assert_identical(x: &[f32], what: &str) {
    let want = reference(x);
    for level in Isa::supported() {
        let mut got = vec![ZERO_BLOCK; want.len()];
        quantize_row_q4_k_at_level(level, x, &mut got);
        // Bytes, not `==`: f16's equality would call -0 and 0 equal.
        let same = |b: usize| blocks_as_bytes(&got[b..b + 1]) == blocks_as_bytes(&want[b..b + 1]);
        if let Some(b) = (0..want.len()).find(|&b| !same(b)) {
            panic!("{what}, level {level}: super-block {b} differs\n  ref  {:?}\n  fast {:?}\n  x {:?}", want[b], got[b], &x[b * QK_K..(b + 1) * QK_K]);
        }
    }
    let mut bytes = Vec::new();
    quantize_row(GgmlType::Q4K, x, &mut bytes);
    assert!(bytes == blocks_as_bytes(&want), "{what}: quantize_row differs from the reference");
}

/// One 32-value sub-block of a randomly chosen kind.
fn sub_block(rng: &mut Rng, out: &mut [f32]) {
    let scale = [1e-3f32, 0.02, 1.0, 300.0][rng.below(4)];
    match rng.below(16) {
        0 => out.iter_mut().for_each(|v| *v = rng.normal() * scale),
        1 => out.fill(0.0),
        // Constant: the reference's `max == min` early return (negative), or min > 0.
        2 => out.fill(-scale),
        3 => out.fill(scale),
        // Signed zeros only, and mixed with one positive value.
        4 => out.iter_mut().for_each(|v| *v = if rng.below(2) == 0 { 0.0 } else { -0.0 }),
        5 => {
            out.iter_mut().for_each(|v| *v = if rng.below(2) == 0 { 0.0 } else { -0.0 });
            out[rng.below(32)] = scale;
        }
        // One-sided: min > 0 (clamped to 0), or negative only.
        6 => out.iter_mut().for_each(|v| *v = (rng.normal().abs() + 0.5) * scale),
        7 => out.iter_mut().for_each(|v| *v = -(rng.normal().abs() + 0.1) * scale),
        // A single outlier in small noise.
        8 => {
            out.iter_mut().for_each(|v| *v = rng.normal() * 1e-4 * scale);
            out[rng.below(32)] = 50.0 * scale * if rng.below(2) == 0 { 1.0 } else { -1.0 };
        }
        // Values on a coarse grid, so that scaled values land exactly on .5 (ties) and
        // candidate errors tie.
        9 => out.iter_mut().for_each(|v| *v = (rng.below(31) as f32 - 15.0) * 0.5 * scale),
        10 => out.iter_mut().for_each(|v| *v = [-1.0f32, -0.5, 0.0, 0.5, 1.0][rng.below(5)]),
        11 => out.iter_mut().enumerate().for_each(|(i, v)| *v = (i % 16) as f32),
        // Huge: max - min overflows to infinity, and near f32::MAX.
        12 => out.iter_mut().for_each(|v| *v = rng.normal() * 1.5e38),
        13 => out.iter_mut().for_each(|v| *v = rng.normal() * 1e30),
        // Tiny and subnormal.
        14 => out.iter_mut().for_each(|v| *v = rng.normal() * 1e-30),
        _ => out.iter_mut().for_each(|v| *v = (rng.below(64) as f32 - 32.0) * 1e-45 + rng.normal() * 1e-39),
    }
}

#[test]
fn synthetic_rows_match_the_reference() {
    let mut rng = Rng::new(8);
    // Row lengths cover a lone super-block, an odd count (a half-empty lane pair), and
    // more than one group of sixteen.
    let mut total = 0;
    for (row, blocks) in [1usize, 2, 3, 7, 16, 17, 40].iter().cycle().take(168).enumerate() {
        let mut x = vec![0.0f32; blocks * QK_K];
        for sub in x.chunks_exact_mut(32) {
            sub_block(&mut rng, sub);
        }
        assert_identical(&x, &format!("mixed row {row}"));
        total += blocks;
    }
    // Whole rows of one kind, at several scales (every sub-block of a super-block alike).
    for scale in [1e-6f32, 1e-3, 0.05, 1.0, 1e4] {
        let x: Vec<f32> = (0..16 * QK_K).map(|_| rng.normal() * scale).collect();
        assert_identical(&x, &format!("normal row, scale {scale}"));
        total += 16;
    }
    for (x, what) in [
        (vec![0.0f32; 4 * QK_K], "zeros"),
        (vec![0.75f32; 4 * QK_K], "all equal, positive"),
        (vec![-3.0f32; 4 * QK_K], "all equal, negative"),
        ((0..4 * QK_K).map(|i| -((i % 97) as f32) - 1.0).collect(), "negative only"),
        ((0..4 * QK_K).map(|i| if i == 300 { 1e3 } else { 0.0 }).collect(), "one outlier in zeros"),
        ((0..4 * QK_K).map(|i| if i % 256 == 5 { -1e3 } else { 1e-3 * ((i % 7) as f32 - 3.0) }).collect(), "an outlier per super-block"),
        ((0..4 * QK_K).map(|i| f32::from_bits(1 + (i as u32 % 50))).collect(), "subnormals only"),
        ((0..4 * QK_K).map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX }).collect(), "±f32::MAX"),
    ] {
        assert_identical(&x, what);
        total += x.len() / QK_K;
    }
    assert!(total >= 2000, "only {total} super-blocks compared");
}

/// Every 2-D weight tensor of the committed fixture, its values taken as rows of 256
/// (the fixture's own rows of 160 and 512 do not all fit Q4_K, so the converter would
/// fall back there).
#[test]
fn fixture_tensors_match_the_reference() {
    let bytes = std::fs::read(common::tiny().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut blocks = 0;
    for (name, view) in st.tensors() {
        if view.shape().len() != 2 {
            continue;
        }
        let x = common::f32s(&st, &name);
        let whole = x.len() / QK_K * QK_K;
        for row in x[..whole].chunks(10 * QK_K) {
            assert_identical(row, &name);
        }
        blocks += whole / QK_K;
    }
    assert!(blocks >= 3000, "only {blocks} super-blocks of the fixture compared");
}
