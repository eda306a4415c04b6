//! Round-trip error of every block type, measured as ggml's test-quantize-fns does
//! (RMSE / n over 4096 synthetic values, threshold 0.002), plus ramps, full-range
//! values, all-zero rows and exact layouts.

use xlmr::quant::*;

/// ggml's test data: 0.1 + 2 cos(i + offset).
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.1 + 2.0 * (i as f32 + offset).cos()).collect()
}

/// ggml's `array_rmse`: sqrt(sum of squared differences) / n.
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt() / a.len() as f32
}

fn round_trip(ty: GgmlType, x: &[f32]) -> Vec<f32> {
    let mut bytes = Vec::new();
    quantize_row(ty, x, &mut bytes);
    assert_eq!(bytes.len(), ty.row_bytes(x.len()).unwrap());
    let mut y = vec![f32::NAN; x.len()];
    dequantize(ty, &bytes, &mut y).unwrap();
    y
}

const MAX_QUANTIZATION_TOTAL_ERROR: f32 = 0.002;

#[test]
fn total_error_within_ggml_threshold() {
    let x = generate_data(0.0, 32 * 128);
    for ty in GgmlType::ALL {
        let err = array_rmse(&x, &round_trip(ty, &x));
        assert!(err < MAX_QUANTIZATION_TOTAL_ERROR, "{ty}: total error {err}");
        if ty == GgmlType::F32 {
            assert_eq!(err, 0.0);
        }
    }
}

#[test]
fn ramp_and_full_range() {
    let ramp: Vec<f32> = (0..1024).map(|i| -1.0 + 2.0 * i as f32 / 1023.0).collect();
    // Relative RMSE per type: values spanning magnitudes up to 6e4 (f16's range).
    let wide: Vec<f32> = (0..1024).map(|i| ((i as f32 * 0.7).sin() * 6.0e4) * if i % 3 == 0 { 1e-3 } else { 1.0 }).collect();
    for (x, name) in [(&ramp, "ramp"), (&wide, "full range")] {
        let scale = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        for (ty, tol) in [(GgmlType::F16, 1e-3), (GgmlType::Q8_0, 1e-2), (GgmlType::Q4_0, 0.12), (GgmlType::Q4K, 0.12)] {
            let y = round_trip(ty, x);
            let rel = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt() / scale;
            assert!(rel < tol, "{ty} on {name}: relative error {rel}");
            assert!(y.iter().all(|v| v.is_finite()));
        }
    }
}

#[test]
fn zero_rows_stay_zero() {
    let x = vec![0.0f32; 512];
    for ty in GgmlType::ALL {
        assert!(round_trip(ty, &x).iter().all(|&v| v == 0.0), "{ty}");
    }
}

#[test]
fn q8_0_layout_matches_ggml() {
    let mut x = [0.0f32; 32];
    x[0] = -2.54;
    x[1] = 1.27;
    x[2] = 0.005; // rounds half away from zero: 0.005 * 127 / 2.54 = 0.25 -> 0
    let mut b = [BlockQ8_0 { d: half::f16::ZERO, qs: [0; 32] }];
    quantize_row_q8_0_ref(&x, &mut b);
    assert_eq!(b[0].d, half::f16::from_f32(0.02));
    assert_eq!(&b[0].qs[..3], &[-127, 64, 0]);
}

#[test]
fn q4_0_layout_matches_ggml() {
    // Element j goes to the low nibble of byte j, element j+16 to the high nibble.
    let x: Vec<f32> = (0..32).map(|i| if i == 16 { -8.0 } else if i == 0 { 7.0 } else { 0.0 }).collect();
    let mut b = [BlockQ4_0 { d: half::f16::ZERO, qs: [0; 16] }];
    quantize_row_q4_0_ref(&x, &mut b);
    assert_eq!(b[0].d.to_f32(), 1.0); // max magnitude -8 -> d = -8 / -8
    assert_eq!(b[0].qs[0], 15 | (0 << 4)); // 7 -> 15, -8 -> 0
    assert_eq!(b[0].qs[1], 8 | (8 << 4)); // zeros -> 8
}

#[test]
fn q4_k_6_bit_packing_round_trips() {
    // Every (scale, min) pair in every position, the other sub-blocks holding other values.
    for j in 0..8 {
        for (ls, lm) in (0..64u8).flat_map(|a| (0..64u8).map(move |b| (a, b))) {
            let pair = |k: usize| if k == j { (ls, lm) } else { ((k as u8 * 23 + ls) % 64, (k as u8 * 41 + lm) % 64) };
            let mut packed = [0u8; 12];
            for k in 0..8 {
                let (s, m) = pair(k);
                set_scale_min_k4(k, s, m, &mut packed);
            }
            for k in 0..8 {
                assert_eq!(get_scale_min_k4(k, &packed), pair(k), "sub-block {k}");
            }
        }
    }
}

#[test]
fn q4_k_scales_pack_and_unpack() {
    // Distinct sub-block ranges exercise all 8 packed 6-bit scales and mins.
    let x: Vec<f32> = (0..256).map(|i| (i / 32) as f32 * 0.5 + ((i % 32) as f32 / 31.0) * (1.0 + (i / 32) as f32)).collect();
    let y = round_trip(GgmlType::Q4K, &x);
    for sb in 0..8 {
        let r = &x[32 * sb..32 * sb + 32];
        let q = &y[32 * sb..32 * sb + 32];
        let range = r.iter().cloned().fold(f32::MIN, f32::max) - r.iter().cloned().fold(f32::MAX, f32::min);
        let max_err = r.iter().zip(q).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // Half a 4-bit step (range / 30) plus the rounding of this sub-block's scale to 6 bits
        // relative to the largest one (here up to ~10% of its range). A scale or min unpacked
        // from the wrong bits would be off by a sizeable fraction of the whole range.
        assert!(max_err <= 0.15 * range, "sub-block {sb}: max error {max_err}, range {range}");
    }
}

#[test]
fn q8_k_bsums_match_quants() {
    let x = generate_data(1.5, 512);
    let mut b = vec![BlockQ8K { d: 0.0, qs: [0; 256], bsums: [0; 16] }; 2];
    quantize_row_q8_k_ref(&x, &mut b);
    for blk in &b {
        for (i, s) in blk.bsums.iter().enumerate() {
            assert_eq!(*s as i32, blk.qs[16 * i..16 * i + 16].iter().map(|&q| q as i32).sum::<i32>());
        }
    }
    let mut y = vec![0.0; 512];
    dequantize_row_q8_k(&b, &mut y);
    assert!(array_rmse(&x, &y) < MAX_QUANTIZATION_TOTAL_ERROR);
}
