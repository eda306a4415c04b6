//! Weight quantization throughput (what `xlmr convert` spends its CPU on): the scalar
//! Q4_K reference against the vectorized quantizer at each ISA level, on 1 and 2
//! threads, over XL-shaped rows (2560 wide, normal weights of std 0.02). Also checks
//! that both give the same bytes. Reports only.
//!
//! `cargo bench --bench quant` (XLMR_BENCH_ROWS sets the rows per run, default 512).

use rayon::prelude::*;
use std::time::Instant;
use xlmr::kernels::Isa;
use xlmr::quant::q4_k_fast::quantize_row_q4_k_at_level;
use xlmr::quant::{blocks_as_bytes, quantize_row, quantize_row_q4_k_ref, BlockQ4K, GgmlType, QK_K};

const COLS: usize = 2560;

fn rows(n: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut unit = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) + 1) as f32 / (1u64 << 24) as f32
    };
    (0..n * COLS)
        .map(|_| {
            let (u, v) = (unit(), unit());
            0.02 * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect()
}

/// CPU time of this process so far, summed over its threads (Linux; 0 elsewhere): on a
/// shared machine, weights per CPU-second are steadier than per wall-second.
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 * 1e-9
}

/// Quantizes every row with `f` on `threads` threads; returns (weights per wall-second,
/// weights per CPU-second, blocks).
fn run(x: &[f32], pool: &rayon::ThreadPool, f: &(dyn Fn(&[f32], &mut [BlockQ4K]) + Sync)) -> (f64, f64, Vec<BlockQ4K>) {
    let zero = BlockQ4K { d: half::f16::ZERO, dmin: half::f16::ZERO, scales: [0; 12], qs: [0; 128] };
    let mut y = vec![zero; x.len() / QK_K];
    let (start, cpu) = (Instant::now(), cpu_seconds());
    pool.install(|| {
        y.par_chunks_mut(COLS / QK_K).zip(x.par_chunks(COLS)).for_each(|(yr, xr)| f(xr, yr));
    });
    let n = x.len() as f64;
    (n / start.elapsed().as_secs_f64(), n / (cpu_seconds() - cpu), y)
}

fn main() {
    let n: usize = std::env::var("XLMR_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    let x = rows(n);
    println!("Q4_K quantization, {n} rows x {COLS}: M weights per wall-second and per CPU-second");
    // Pools live to the end: a pool's exiting threads would take their CPU time along.
    let pools: Vec<_> = [1, 2].map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap()).into();
    for pool in &pools {
        let threads = pool.current_num_threads();
        let (wall, cpu, y) = run(&x, pool, &quantize_row_q4_k_ref);
        println!("  reference        {threads} thread(s): wall {:8.2}  cpu {:8.2}", wall / 1e6, cpu / 1e6);
        let want = blocks_as_bytes(&y).to_vec();
        for level in Isa::supported() {
            let f = move |xr: &[f32], yr: &mut [BlockQ4K]| quantize_row_q4_k_at_level(level, xr, yr);
            let (fwall, fcpu, y) = run(&x, pool, &f);
            let same = blocks_as_bytes(&y) == want.as_slice();
            println!(
                "  fast {:<11} {threads} thread(s): wall {:8.2}  cpu {:8.2}  ({:.1}x wall, {:.1}x cpu){}",
                level.name(),
                fwall / 1e6,
                fcpu / 1e6,
                fwall / wall,
                fcpu / cpu,
                if same { "" } else { "  BYTES DIFFER" }
            );
        }
    }
    // The other types, for scale (they are not vectorized).
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
        let start = Instant::now();
        let mut out = Vec::new();
        for r in x.chunks(COLS) {
            out.clear();
            quantize_row(ty, r, &mut out);
        }
        println!("  {ty} reference   1 thread(s): {:8.2}", x.len() as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
}
