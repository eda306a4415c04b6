//! Per-operation timing of the encoder (`xlmr bench --profile`): wall time of each op of
//! each layer, and for the matmuls the work done, so a profile can print achieved int8
//! ops/s and GB/s of weights next to the machine's limits.

use std::time::{Duration, Instant};

/// The ops of one encoder layer, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    AttnNorm,
    /// Q, K and V projections (one fused matmul when packed).
    Qkv,
    Attention,
    AttnOut,
    FfnNorm,
    FfnUp,
    /// GELU (fused into the FFN-up matmul's epilogue when packed).
    Gelu,
    FfnDown,
    /// Activation quantization inside every matmul (subtracted from the matmul ops).
    Quantize,
}

impl Op {
    pub const ALL: [Op; 9] = [Op::AttnNorm, Op::Qkv, Op::Attention, Op::AttnOut, Op::FfnNorm, Op::FfnUp, Op::Gelu, Op::FfnDown, Op::Quantize];

    pub fn name(self) -> &'static str {
        match self {
            Op::AttnNorm => "attn LayerNorm",
            Op::Qkv => "QKV matmul",
            Op::Attention => "attention",
            Op::AttnOut => "attn-out matmul (+residual)",
            Op::FfnNorm => "FFN LayerNorm",
            Op::FfnUp => "FFN-up matmul (+GELU if fused)",
            Op::Gelu => "GELU",
            Op::FfnDown => "FFN-down matmul (+residual)",
            Op::Quantize => "activation quantization",
        }
    }
}

/// Accumulated time and work of one op over a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpStats {
    pub time: Duration,
    /// Multiply-adds x 2 (matmuls only).
    pub ops: f64,
    /// Weight bytes read (matmuls only).
    pub weight_bytes: f64,
}

/// Per-op totals over all layers of one forward pass (or several).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub ops: std::collections::BTreeMap<Op, OpStats>,
}

impl Profile {
    pub fn add(&mut self, op: Op, time: Duration, ops: f64, weight_bytes: f64) {
        let s = self.ops.entry(op).or_default();
        s.time += time;
        s.ops += ops;
        s.weight_bytes += weight_bytes;
    }
}

/// Times `f` into `profile` when there is one; otherwise just runs it.
#[inline]
pub fn timed<R>(profile: &mut Option<Profile>, op: Op, work: (f64, f64), f: impl FnOnce() -> R) -> R {
    match profile {
        None => f(),
        Some(p) => {
            let start = Instant::now();
            let r = f();
            p.add(op, start.elapsed(), work.0, work.1);
            r
        }
    }
}
