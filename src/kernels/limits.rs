//! The machine's own limits, measured in a second or two, so that profiles can say how
//! close a kernel gets: the int8 dot-product peak (`vpdpbusd` on 512-bit vectors) and
//! the read bandwidth from memory, both over the threads of the current rayon pool.

use rayon::prelude::*;
use std::time::Instant;

/// Peak int8 operations per second (multiply and add count as 2), in G/s, on all
/// threads of the current pool; `None` without AVX-512 VNNI.
pub fn int8_peak_gops() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx512Vnni.is_supported() {
        let threads = rayon::current_num_threads();
        let iters: u64 = 20_000_000;
        let mut best = 0.0f64;
        for _ in 0..3 {
            let start = Instant::now();
            (0..threads).into_par_iter().for_each(|_| {
                // Safety: AVX-512 VNNI was checked above.
                unsafe { vnni_chains::<{ Extra::None as u8 }>(iters) }
            });
            let secs = start.elapsed().as_secs_f64();
            // 12 instructions per iteration, 64 multiply-adds each.
            best = best.max((iters * 12 * 64 * 2 * threads as u64) as f64 / secs / 1e9);
        }
        return Some(best);
    }
    None
}

/// What a Q8_0 block's float work costs beside its `vpdpbusd`s on this core, one thread:
/// the time of 12 independent `vpdpbusd` plus 6 independent f32 FMAs (`fma`) or 6 int32 ->
/// f32 conversions (`convert`), over the time of the 12 `vpdpbusd` alone. 1.0 means the
/// float instructions run on other ports, for free; 1.5 means they share the `vpdpbusd`
/// ports, which caps a microkernel that converts and scales every 32-weight block's sums.
/// Measured: Intel Cascade Lake FMA 1.51 (ports 0 and 5 for both); AMD Zen 4 FMA 1.50
/// (multiplies too), conversions 1.02-1.10 (another pipe). `None` without AVX-512 VNNI.
pub fn float_beside_vpdpbusd_costs() -> Option<FloatBesideVnni> {
    #[cfg(target_arch = "x86_64")]
    if super::Isa::Avx512Vnni.is_supported() {
        let iters: u64 = 10_000_000;
        let time = |extra: Extra| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    // Safety: AVX-512 VNNI was checked above.
                    unsafe {
                        match extra {
                            Extra::None => vnni_chains::<{ Extra::None as u8 }>(iters),
                            Extra::Fma => vnni_chains::<{ Extra::Fma as u8 }>(iters),
                            Extra::Convert => vnni_chains::<{ Extra::Convert as u8 }>(iters),
                        }
                    };
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let alone = time(Extra::None);
        return Some(FloatBesideVnni { fma: time(Extra::Fma) / alone, convert: time(Extra::Convert) / alone });
    }
    None
}

/// See [`float_beside_vpdpbusd_costs`].
#[derive(Clone, Copy, Debug)]
pub struct FloatBesideVnni {
    pub fma: f64,
    pub convert: f64,
}

/// The instructions timed beside the `vpdpbusd` chains.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Extra {
    None = 0,
    Fma = 1,
    Convert = 2,
}

/// 12 independent `vpdpbusd` chains and 6 independent chains of `EXTRA` (an [`Extra`]: f32
/// FMAs, or int32 -> f32 conversions of their own output), `iters` times (inline asm, so
/// nothing is elided).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn vnni_chains<const EXTRA: u8>(iters: u64) {
    use std::arch::asm;
    use std::arch::x86_64::*;
    let (w, x) = (_mm512_set1_epi8(3), _mm512_set1_epi8(5));
    let (a, b) = (_mm512_set1_ps(1.0), _mm512_set1_ps(1e-9));
    let mut c = [_mm512_setzero_si512(); 12];
    let mut f = [_mm512_setzero_ps(); 6];
    for _ in 0..iters {
        // Safety: register-only instructions on values held in zmm registers.
        asm!(
            "vpdpbusd {c0}, {w}, {x}", "vpdpbusd {c1}, {w}, {x}", "vpdpbusd {c2}, {w}, {x}",
            "vpdpbusd {c3}, {w}, {x}", "vpdpbusd {c4}, {w}, {x}", "vpdpbusd {c5}, {w}, {x}",
            "vpdpbusd {c6}, {w}, {x}", "vpdpbusd {c7}, {w}, {x}", "vpdpbusd {c8}, {w}, {x}",
            "vpdpbusd {c9}, {w}, {x}", "vpdpbusd {c10}, {w}, {x}", "vpdpbusd {c11}, {w}, {x}",
            c0 = inout(zmm_reg) c[0], c1 = inout(zmm_reg) c[1], c2 = inout(zmm_reg) c[2],
            c3 = inout(zmm_reg) c[3], c4 = inout(zmm_reg) c[4], c5 = inout(zmm_reg) c[5],
            c6 = inout(zmm_reg) c[6], c7 = inout(zmm_reg) c[7], c8 = inout(zmm_reg) c[8],
            c9 = inout(zmm_reg) c[9], c10 = inout(zmm_reg) c[10], c11 = inout(zmm_reg) c[11],
            w = in(zmm_reg) w, x = in(zmm_reg) x,
            options(pure, nomem, nostack),
        );
        if EXTRA == Extra::Fma as u8 {
            // Safety: as above.
            asm!(
                "vfmadd231ps {f0}, {a}, {b}", "vfmadd231ps {f1}, {a}, {b}", "vfmadd231ps {f2}, {a}, {b}",
                "vfmadd231ps {f3}, {a}, {b}", "vfmadd231ps {f4}, {a}, {b}", "vfmadd231ps {f5}, {a}, {b}",
                f0 = inout(zmm_reg) f[0], f1 = inout(zmm_reg) f[1], f2 = inout(zmm_reg) f[2],
                f3 = inout(zmm_reg) f[3], f4 = inout(zmm_reg) f[4], f5 = inout(zmm_reg) f[5],
                a = in(zmm_reg) a, b = in(zmm_reg) b,
                options(pure, nomem, nostack),
            );
        } else if EXTRA == Extra::Convert as u8 {
            // Safety: as above. Each conversion reads its own last output as int32 bits: a
            // loop-carried chain, which cannot be hoisted out of the loop.
            asm!(
                "vcvtdq2ps {f0}, {f0}", "vcvtdq2ps {f1}, {f1}", "vcvtdq2ps {f2}, {f2}",
                "vcvtdq2ps {f3}, {f3}", "vcvtdq2ps {f4}, {f4}", "vcvtdq2ps {f5}, {f5}",
                f0 = inout(zmm_reg) f[0], f1 = inout(zmm_reg) f[1], f2 = inout(zmm_reg) f[2],
                f3 = inout(zmm_reg) f[3], f4 = inout(zmm_reg) f[4], f5 = inout(zmm_reg) f[5],
                options(pure, nomem, nostack),
            );
        }
    }
    std::hint::black_box((c, f));
}

/// Read bandwidth from memory in GB/s: all threads of the current pool summing a
/// 512 MiB buffer (much larger than any cache), best of 3.
pub fn read_bandwidth_gbs() -> f64 {
    let words = 64usize << 20; // 512 MiB of u64
    let mut buf = vec![0u64; words];
    buf.par_chunks_mut(1 << 16).enumerate().for_each(|(i, c)| c.iter_mut().enumerate().for_each(|(j, v)| *v = (i ^ j) as u64));
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let sum: u64 = buf.par_chunks(1 << 16).map(|c| c.iter().fold(0u64, |a, &v| a.wrapping_add(v))).reduce(|| 0, u64::wrapping_add);
        std::hint::black_box(sum);
        best = best.max((words * 8) as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}
