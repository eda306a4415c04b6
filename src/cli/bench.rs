use std::time::Instant;
use xlmr::{Error, Model, Result};

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model
    #[arg(short, long)]
    pub model: std::path::PathBuf,
    /// Input lengths in tokens (special tokens included)
    #[arg(long, value_delimiter = ',', default_value = "8,128,512")]
    pub tokens: Vec<usize>,
    /// Inputs per forward pass
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed runs per length (after one warm-up run)
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Worker threads (default: all cores)
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Print one JSON array, one object per length
    #[arg(long)]
    pub json: bool,
}

/// Peak resident set size of this process (VmHWM), in bytes; 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// The ids a synthetic input may use: past the four specials `<s> <pad> </s> <unk>`, inside
/// both vocabularies, not `<mask>`. An error when there are none (a degenerate vocabulary).
fn ordinary_ids(model: &Model) -> Result<Vec<u32>> {
    let vocab = model.tokenizer.vocab_size().min(model.config.vocab);
    let ids: Vec<u32> = (4..vocab as u32).filter(|&id| id != model.config.mask_id).collect();
    if ids.is_empty() {
        return Err(Error::Input(format!("the model's vocabulary of {vocab} tokens has no ordinary token to benchmark with")));
    }
    Ok(ids)
}

/// Deterministic synthetic input: `<s>`, `len - 2` ordinary tokens, `</s>`.
fn synthetic_input(ordinary: &[u32], len: usize, seed: u64) -> Vec<u32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut ids = vec![0u32];
    while ids.len() < len - 1 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids.push(ordinary[(state % ordinary.len() as u64) as usize]);
    }
    ids.push(2);
    ids
}

pub fn run(args: Args) -> Result<()> {
    if args.batch == 0 || args.runs == 0 {
        return Err(Error::Input("--batch and --runs must be at least 1".into()));
    }
    let mut model = Model::load(&args.model)?;
    model.batch_size = args.batch;
    for &t in &args.tokens {
        if t < 3 || t > model.config.max_tokens {
            return Err(Error::Input(format!("--tokens {t}: lengths must be between 3 and {}", model.config.max_tokens)));
        }
    }
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        b = b.num_threads(n.max(1));
    }
    let pool = b.build().map_err(|e| Error::Input(format!("cannot start threads: {e}")))?;
    let ordinary = ordinary_ids(&model)?;
    let threads = pool.current_num_threads();
    let mut rows = Vec::new();
    for &t in &args.tokens {
        let seqs: Vec<Vec<u32>> = (0..args.batch).map(|i| synthetic_input(&ordinary, t, i as u64 + 1)).collect();
        let last = model.config.layers;
        let mut times = Vec::with_capacity(args.runs);
        for run in 0..=args.runs {
            let start = Instant::now();
            pool.install(|| model.run_batches(&seqs, |l| l == last, |_, _, _, _, _| {}));
            if run > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3 / args.batch as f64);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let row = serde_json::json!({
            "tokens": t, "batch": args.batch, "median_ms": median, "min_ms": times[0],
            "ms_per_layer": median / model.config.layers as f64,
            "tokens_per_s": t as f64 * 1e3 / median, "peak_rss_bytes": peak_rss_bytes(), "threads": threads,
        });
        if !args.json {
            eprintln!(
                "tokens {t:>4}  batch {:>2}  median {median:>9.2} ms/input  min {:>9.2} ms  ({:.2} ms/layer)  {:>8.1} tokens/s  peak RSS {:.0} MiB  [{threads} threads, {}]",
                args.batch,
                times[0],
                median / model.config.layers as f64,
                t as f64 * 1e3 / median,
                peak_rss_bytes() as f64 / (1 << 20) as f64,
                xlmr::kernels::isa().name()
            );
        }
        rows.push(row);
    }
    if args.json {
        super::emit(&format!("{}\n", serde_json::Value::Array(rows)))?;
    }
    Ok(())
}
