//! Instruction-set levels, runtime detection, and the dispatch of the small kernels.
//!
//! Each SIMD module exposes a token type (`Avx2`, `Avx512`, `Neon`) that can only be
//! made after the CPU feature check, so holding one proves the instructions exist; the
//! `#[target_feature]` functions are called only through a token.

use super::scalar;
use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// A SIMD level, from slowest to fastest on its architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    Scalar = 0,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2 = 1,
    /// AVX-512 F/BW/VL/DQ on top of Avx2.
    Avx512 = 2,
    /// Avx512 plus AVX-512 VNNI (`vpdpbusd`).
    Avx512Vnni = 3,
    /// aarch64 with NEON and the dot-product extension (`sdot`).
    Neon = 4,
}

impl Isa {
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni, Isa::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }

    pub fn from_name(name: &str) -> Option<Isa> {
        let name = name.trim().to_ascii_lowercase();
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }

    /// Whether this CPU can run the level's kernels.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => super::x86_avx2::Avx2::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::x86_avx512::Avx512::new().is_some(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => super::x86_avx512::Avx512::new().is_some_and(|t| t.has_vnni()),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => super::aarch64_neon::Neon::new().is_some(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every level this CPU supports, slowest first.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The fastest supported level.
    pub fn best() -> Isa {
        *Isa::supported().last().expect("scalar is always supported")
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const UNSET: u8 = u8::MAX;
static CURRENT: AtomicU8 = AtomicU8::new(UNSET);

fn from_u8(v: u8) -> Isa {
    Isa::ALL[v as usize]
}

/// Forces a level for all later kernel calls; an error if this CPU lacks it.
pub fn set_isa(level: Isa) -> Result<()> {
    if !level.is_supported() {
        let have: Vec<&str> = Isa::supported().iter().map(|i| i.name()).collect();
        return Err(Error::InvalidArgument(format!("this CPU does not support the {level} kernels (supported: {})", have.join(", "))));
    }
    CURRENT.store(level as u8, Ordering::Relaxed);
    Ok(())
}

/// Reads `XLMR_ISA` (scalar, avx2, avx512, avx512vnni, neon) and applies it; without the
/// variable, the best supported level. Returns the level in force.
pub fn init_isa_from_env() -> Result<Isa> {
    let level = match std::env::var("XLMR_ISA") {
        Ok(name) if !name.trim().is_empty() => Isa::from_name(&name).ok_or_else(|| {
            let all: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
            Error::InvalidArgument(format!("XLMR_ISA={name:?} is not one of {}", all.join(", ")))
        })?,
        _ => Isa::best(),
    };
    set_isa(level)?;
    Ok(level)
}

/// The level in force: set by [`set_isa`] or `XLMR_ISA`, else the best supported.
/// A bad `XLMR_ISA` here falls back to the best level with a warning; call
/// [`init_isa_from_env`] first to turn it into an error instead.
pub fn isa() -> Isa {
    let v = CURRENT.load(Ordering::Relaxed);
    if v != UNSET {
        return from_u8(v);
    }
    match init_isa_from_env() {
        Ok(level) => level,
        Err(e) => {
            eprintln!("warning: {e}; using {}", Isa::best());
            let best = Isa::best();
            CURRENT.store(best as u8, Ordering::Relaxed);
            best
        }
    }
}

// --- dispatch of the small kernels -------------------------------------------------
// `level` must be supported (it comes from `isa()` or a test that checked it); an
// unsupported level falls back to scalar rather than running illegal instructions.

macro_rules! dispatch {
    ($level:expr, $name:ident ( $($arg:expr),* )) => {{
        match $level {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => match super::x86_avx2::Avx2::new() {
                Some(tok) => tok.$name($($arg),*),
                None => scalar::$name($($arg),*),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx512Vnni => match super::x86_avx512::Avx512::new() {
                Some(tok) => tok.$name($($arg),*),
                None => scalar::$name($($arg),*),
            },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => match super::aarch64_neon::Neon::new() {
                Some(tok) => tok.$name($($arg),*),
                None => scalar::$name($($arg),*),
            },
            _ => scalar::$name($($arg),*),
        }
    }};
}

pub fn quantize_row_q8_0(level: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    // AVX2 and AVX-512 have explicit quantizers (the generic rounding does not vectorize).
    dispatch!(level, quantize_row_q8_0(x, qs, d, sums))
}

pub fn quantize_row_q8_k(level: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], sums: &mut [i32]) {
    // AVX2 and AVX-512 have explicit quantizers (the generic rounding does not vectorize).
    dispatch!(level, quantize_row_q8_k(x, qs, d, sums))
}

pub fn layer_norm(level: Isa, x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32], c: usize) {
    dispatch!(level, layer_norm(x, w, b, eps, out, c))
}

pub fn gelu_erf(level: Isa, x: &mut [f32]) {
    dispatch!(level, gelu_erf(x))
}

pub fn softmax_inplace(level: Isa, x: &mut [f32]) {
    dispatch!(level, softmax_inplace(x))
}

pub fn vec_dot_f32(level: Isa, w: &[f32], x: &[f32]) -> f32 {
    dispatch!(level, vec_dot_f32(w, x))
}

pub fn axpy(level: Isa, a: f32, x: &[f32], y: &mut [f32]) {
    dispatch!(level, axpy(a, x, y))
}

/// Whether this is an AMD CPU (CPUID vendor "AuthenticAMD"): asked by the kernels whose
/// best shape was measured to differ between AMD Zen 4 and Intel.
#[cfg(target_arch = "x86_64")]
pub(crate) fn cpu_is_amd() -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| {
        #[allow(unused_unsafe)] // `__cpuid` is a safe function in newer Rust versions
        // Safety: CPUID leaf 0 (the vendor string) exists on every x86-64 CPU.
        let leaf = unsafe { std::arch::x86_64::__cpuid(0) };
        let vendor: Vec<u8> = [leaf.ebx, leaf.edx, leaf.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
        vendor == b"AuthenticAMD"
    })
}
