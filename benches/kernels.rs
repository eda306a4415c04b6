//! Kernel benchmarks at XLM-R XL shapes. Criterion measures; each bench also prints its
//! rate next to the limits of the reference machine (2-core Zen 4: ~29 GB/s read,
//! ~900 G int8 ops/s with VNNI, ~220 GFLOP/s fp32). Reports only, never asserts.
//!
//! `XLMR_BENCH_LAYER_ONLY=1 cargo bench --bench kernels` skips criterion and prints the
//! time of one XL layer's six matmuls (quick check against PyTorch's int8 numbers);
//! `XLMR_BENCH_GEMM_ONLY=1` prints the packed GEMM's rate against the measured int8
//! peak at the layer's shapes (`RAYON_NUM_THREADS=1` for one core; other shapes with
//! `XLMR_BENCH_GEMM_SHAPES="rows,cols,t;..."`, e.g. a matrix that fits L2 to time the
//! microkernel without memory);
//! `XLMR_BENCH_ATTENTION_ONLY=1` times XL's attention at 128 and 512 tokens (head-major q/k/v).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};
use xlmr::kernels::{self, Epilogue, Isa, MatmulScratch, PackedMatrix, QMatrix};
use xlmr::quant::{quantize_row, GgmlType};

const READ_GBPS: f64 = 29.0;
const INT8_GOPS: f64 = 900.0;
const FP32_GFLOPS: f64 = 220.0;

/// A quantized random weight matrix in an aligned buffer.
struct Weights {
    words: Vec<u64>,
    len: usize,
    ty: GgmlType,
    rows: usize,
    cols: usize,
}

impl Weights {
    fn new(ty: GgmlType, rows: usize, cols: usize) -> Self {
        let mut state = 0x1234_5678u32;
        let mut row = vec![0.0f32; cols];
        let mut bytes = Vec::with_capacity(rows * ty.row_bytes(cols).unwrap());
        // Quantizing Q4_K at full size is slow: quantize 64 distinct rows and repeat.
        let distinct: Vec<Vec<u8>> = (0..64)
            .map(|_| {
                for v in row.iter_mut() {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    *v = (state as f32 / u32::MAX as f32 - 0.5) * 0.1;
                }
                let mut out = Vec::new();
                quantize_row(ty, &row, &mut out);
                out
            })
            .collect();
        for r in 0..rows {
            bytes.extend_from_slice(&distinct[r % 64]);
        }
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        // Safety: the u64 buffer has at least bytes.len() bytes; u8 writes need no alignment.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast::<u8>(), bytes.len()) };
        Weights { words, len: bytes.len(), ty, rows, cols }
    }

    fn matrix(&self) -> QMatrix<'_> {
        // Safety: the buffer holds `len` initialized bytes; u8 has alignment 1.
        let bytes = unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) };
        QMatrix::new(self.ty, bytes, self.rows, self.cols).unwrap()
    }
}

fn input(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

/// The matmul shapes of one XL layer: (rows, cols, count).
const LAYER: [(usize, usize, usize); 3] = [(2560, 2560, 4), (10240, 2560, 1), (2560, 10240, 1)];

fn time_layer(ty: GgmlType, t: usize, runs: usize) -> f64 {
    let mut mats: Vec<(Weights, usize, Vec<f32>, Vec<f32>)> =
        LAYER.iter().map(|&(r, c, n)| (Weights::new(ty, r, c), n, input(t * c), vec![0.0f32; t * r])).collect();
    let mut scratch = MatmulScratch::new();
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        for (w, n, x, y) in mats.iter_mut() {
            let m = w.matrix();
            for _ in 0..*n {
                kernels::matmul_with_scratch(&m, x, None, y, t, false, &mut scratch);
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    best * 1e3
}

fn print_layer_times() {
    let pytorch_int8 = [(8, 4.5), (128, 34.8), (512, 140.2)];
    println!("one XL layer's 6 matmuls, ISA {}, {} threads (min of runs):", kernels::isa(), rayon::current_num_threads());
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
        for (t, torch) in pytorch_int8 {
            let ms = time_layer(ty, t, if t >= 512 { 2 } else { 5 });
            let macs = t as f64 * 2560.0 * 2560.0 * 12.0;
            println!(
                "  {ty:5} t={t:3}: {ms:7.2} ms  ({:6.1} G int8 ops/s of ~{INT8_GOPS}; PyTorch int8 whole layer {torch} ms -> ratio {:.2})",
                2.0 * macs / ms / 1e6,
                ms / torch
            );
        }
    }
}

/// `XLMR_BENCH_GEMM_SHAPES="rows,cols,t;..."`, or XL's layer shapes.
fn gemm_shapes() -> Vec<(usize, usize, usize)> {
    let Ok(spec) = std::env::var("XLMR_BENCH_GEMM_SHAPES") else {
        return vec![(2560, 2560, 8), (10240, 2560, 8), (2560, 2560, 128), (10240, 2560, 128), (2560, 10240, 128), (2560, 2560, 512), (2560, 10240, 512)];
    };
    let parse = |shape: &str| -> Option<(usize, usize, usize)> {
        let v: Vec<usize> = shape.split(',').map(|x| x.trim().parse().ok()).collect::<Option<_>>()?;
        match v[..] {
            [rows, cols, t] => Some((rows, cols, t)),
            _ => None,
        }
    };
    spec.split(';').map(|s| parse(s).unwrap_or_else(|| panic!("XLMR_BENCH_GEMM_SHAPES: {s:?} is not rows,cols,t"))).collect()
}

/// The packed GEMM's int8 op rate against the machine's measured `vpdpbusd` peak at the
/// XL layer's shapes (or [`gemm_shapes`]). Best of 7 timed batches: on a shared machine the
/// minimum is the least noisy estimate.
fn print_packed_gemm_rates() {
    let peak = kernels::limits::int8_peak_gops().unwrap_or(f64::NAN);
    println!("packed GEMM, ISA {}, {} threads, measured int8 peak {peak:.0} G op/s:", kernels::isa(), rayon::current_num_threads());
    if let Some(cost) = kernels::limits::float_beside_vpdpbusd_costs() {
        // Q8_0 at 6 tokens x 2 panels: per 32 columns, 96 vpdpbusd and 12 each of
        // conversions, multiplies and FMAs; those that share the vpdpbusd ports (cost
        // ~1.5; multiplies cost as FMAs) cap the microkernel.
        let shared = |c: f64| if c > 1.25 { 12.0 } else { 0.0 };
        let cap = 96.0 / (96.0 + 2.0 * shared(cost.fma) + shared(cost.convert));
        println!(
            "  12 vpdpbusd + 6 f32 FMAs take {:.2}x the time of the 12 vpdpbusd alone, + 6 conversions {:.2}x: a Q8_0 block's float work caps its microkernel at {:.0} % of peak",
            cost.fma,
            cost.convert,
            100.0 * cap
        );
    }
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
        for &(rows, cols, t) in &gemm_shapes() {
            let w = Weights::new(ty, rows, cols);
            let packed = PackedMatrix::pack(&[&w.matrix()]).expect("packable").expect("memory");
            let x = input(t * cols);
            let mut y = vec![0.0f32; t * rows];
            let mut scratch = MatmulScratch::new();
            let ops = 2.0 * (rows * cols * t) as f64;
            let calls = ((2e9 / ops) as usize).max(1);
            let mut best = f64::INFINITY;
            for _ in 0..7 {
                let start = Instant::now();
                for _ in 0..calls {
                    kernels::gemm(&packed, &x, t, None, &mut [&mut y], Epilogue::Store, &mut scratch);
                }
                best = best.min(start.elapsed().as_secs_f64() / calls as f64);
            }
            let rate = ops / best / 1e9;
            println!("  {ty:5} {rows:5}x{cols:<5} t={t:3}: {:8.3} ms  {rate:6.0} G op/s  {:5.1} % of peak", best * 1e3, 100.0 * rate / peak);
        }
    }
}

/// XL's attention (32 heads of 80) at 128 and 512 tokens: min and median of 40 calls, and
/// the rate of the two products (`4 t^2 x 2560` flops).
fn print_attention_rates() {
    println!("attention, 32 heads x 80, ISA {}, {} threads:", kernels::isa(), rayon::current_num_threads());
    for t in [128usize, 512] {
        let (heads, head_dim) = (32, 80);
        let n = t * heads * head_dim;
        // Three distinct matrices, as in a layer (one shared matrix would halve the misses).
        let (q, k, v) = (input(n), input(n + 1)[1..].to_vec(), input(n + 2)[2..].to_vec());
        let mut out = vec![0.0f32; n];
        let mask = vec![true; t];
        // Head-major, as the encoder's packed QKV matmul writes them.
        let layout = kernels::QkvLayout::HeadMajor { rows: t, first_row: 0 };
        let mut ms: Vec<f64> = (0..40)
            .map(|_| {
                let start = Instant::now();
                kernels::attention(&q, &k, &v, layout, &mask, t, heads, head_dim, &mut out);
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let gflops = 4.0 * (t * t * heads * head_dim) as f64 / ms[0] / 1e6;
        println!("  t={t:3}: min {:7.3} ms  median {:7.3} ms  ({gflops:.0} GFLOP/s at the min)", ms[0], ms[20]);
    }
}

fn bench_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(300));
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K, GgmlType::F16] {
        for &(rows, cols) in &[(2560usize, 2560usize), (10240, 2560), (2560, 10240)] {
            let w = Weights::new(ty, rows, cols);
            for t in [8usize, 128] {
                let x = input(t * cols);
                let mut y = vec![0.0f32; t * rows];
                let mut scratch = MatmulScratch::new();
                let m = w.matrix();
                let weight_bytes = m.data.len() as f64;
                group.throughput(Throughput::Elements((2 * rows * cols * t) as u64));
                let id = BenchmarkId::new(format!("{ty}_{rows}x{cols}"), t);
                let start = Instant::now();
                let mut iters = 0u32;
                group.bench_function(id, |b| {
                    b.iter(|| {
                        kernels::matmul_with_scratch(&m, &x, None, &mut y, t, false, &mut scratch);
                        iters += 1;
                    })
                });
                let secs = start.elapsed().as_secs_f64() / iters.max(1) as f64;
                let ops = 2.0 * (rows * cols * t) as f64 / secs / 1e9;
                let peak = if ty.is_quantized() { INT8_GOPS } else { FP32_GFLOPS };
                println!(
                    "    {ty} {rows}x{cols} t={t}: ~{ops:.0} G ops/s (limit ~{peak}), weights read at ~{:.1} GB/s (limit ~{READ_GBPS})",
                    weight_bytes / secs / 1e9
                );
            }
        }
    }
    group.finish();
}

fn bench_small_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("ops");
    group.sample_size(20).measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(200));
    let (t, c_dim) = (128usize, 2560usize);
    let x = input(t * c_dim);
    let w = input(c_dim);
    let mut out = vec![0.0f32; t * c_dim];
    group.throughput(Throughput::Bytes((t * c_dim * 8) as u64));
    group.bench_function("layer_norm_128x2560", |b| b.iter(|| kernels::layer_norm(&x, &w, &w, 1e-5, &mut out, c_dim)));
    let mut h = input(t * 10240);
    group.throughput(Throughput::Elements((t * 10240) as u64));
    group.bench_function("gelu_128x10240", |b| b.iter(|| kernels::gelu_erf(&mut h)));
    let mut row = input(512);
    group.throughput(Throughput::Elements(512));
    group.bench_function("softmax_512", |b| b.iter(|| kernels::softmax_inplace(&mut row)));
    for t in [128usize, 512] {
        let hd = 32 * 80;
        let q = input(t * hd);
        let mask = vec![true; t];
        let mut o = vec![0.0f32; t * hd];
        group.throughput(Throughput::Elements((4 * t * t * hd) as u64));
        let start = Instant::now();
        let mut iters = 0u32;
        group.bench_function(BenchmarkId::new("attention_32x80", t), |b| {
            b.iter(|| {
                kernels::attention(&q, &q, &q, kernels::QkvLayout::TokenMajor, &mask, t, 32, 80, &mut o);
                iters += 1;
            })
        });
        let secs = start.elapsed().as_secs_f64() / iters.max(1) as f64;
        println!("    attention t={t}: ~{:.1} GFLOP/s (fp32 limit ~{FP32_GFLOPS})", 4.0 * (t * t * hd) as f64 / secs / 1e9);
    }
    group.finish();
}

fn layer(_: &mut Criterion) {
    print_layer_times();
}

criterion_group!(benches, layer, bench_matmul, bench_small_kernels);

fn main() {
    println!("kernels ISA: {} (supported: {:?})", kernels::isa(), Isa::supported());
    if std::env::var_os("XLMR_BENCH_LAYER_ONLY").is_some() {
        print_layer_times();
        return;
    }
    if std::env::var_os("XLMR_BENCH_ATTENTION_ONLY").is_some() {
        print_attention_rates();
        return;
    }
    if std::env::var_os("XLMR_BENCH_GEMM_ONLY").is_some() {
        print_packed_gemm_rates();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
