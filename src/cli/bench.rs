use std::time::Instant;
use xlmr::model::profile::{Op, Profile};
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
    /// Also time each op of a layer (LayerNorms, QKV, attention, matmuls, GELU, activation
    /// quantization) and compare the matmuls with this machine's measured int8 peak and
    /// read bandwidth
    #[arg(long)]
    pub profile: bool,
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
    let load_start = Instant::now();
    let mut model = Model::load(&args.model)?;
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;
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
    if !args.json {
        eprintln!(
            "model loaded in {load_ms:.0} ms ({}; weights {})",
            xlmr::kernels::isa().name(),
            model.weights_mode()
        );
    }
    let limits = args.profile.then(|| {
        pool.install(|| (xlmr::kernels::limits::int8_peak_gops(), xlmr::kernels::limits::read_bandwidth_gbs()))
    });
    let mut rows = Vec::new();
    for &t in &args.tokens {
        let seqs: Vec<Vec<u32>> = (0..args.batch).map(|i| synthetic_input(&ordinary, t, i as u64 + 1)).collect();
        let last = model.config.layers;
        let mut times = Vec::with_capacity(args.runs);
        let mut profiles = Vec::new();
        for run in 0..=args.runs {
            let start = Instant::now();
            pool.install(|| model.run_batches(&seqs, |l| l == last, |_, _, _, _, _| {}));
            if run > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3 / args.batch as f64);
            }
        }
        // Profiled runs are separate: timing every op adds a little overhead.
        if args.profile {
            for _ in 0..args.runs {
                let mut p = Profile::default();
                pool.install(|| model.run_batches_profiled(&seqs, |l| l == last, |_, _, _, _, _| {}, Some(&mut p)));
                profiles.push(p);
            }
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mut row = serde_json::json!({
            "tokens": t, "batch": args.batch, "median_ms": median, "min_ms": times[0],
            "ms_per_layer": median / model.config.layers as f64,
            "tokens_per_s": t as f64 * 1e3 / median, "peak_rss_bytes": peak_rss_bytes(), "threads": threads,
            "load_ms": load_ms, "packed": model.is_packed(), "packed_from_cache": model.is_packed_from_cache(),
        });
        if let Some((peak, bw)) = limits {
            let table = profile_table(&profiles, model.config.layers * args.batch, peak, bw);
            if !args.json {
                print_profile(t, &table, peak, bw);
            }
            row["profile"] = serde_json::Value::Array(table);
            row["int8_peak_gops"] = serde_json::json!(peak);
            row["read_gbs"] = serde_json::json!(bw);
        }
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

/// Per op: median over runs of its time per layer and input, and the matmuls' rates.
fn profile_table(profiles: &[Profile], per: usize, peak_gops: Option<f64>, read_gbs: f64) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for op in Op::ALL {
        let mut ms: Vec<f64> = profiles.iter().filter_map(|p| p.ops.get(&op)).map(|s| s.time.as_secs_f64() * 1e3 / per as f64).collect();
        let Some(stats) = profiles.iter().find_map(|p| p.ops.get(&op)) else { continue };
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let mut row = serde_json::json!({ "op": op.name(), "ms_per_layer": median });
        if stats.ops > 0.0 && median > 0.0 {
            let gops = stats.ops / per as f64 / (median * 1e-3) / 1e9;
            let gbs = stats.weight_bytes / per as f64 / (median * 1e-3) / 1e9;
            row["gops"] = serde_json::json!(gops);
            row["gbs"] = serde_json::json!(gbs);
            if let Some(p) = peak_gops {
                row["pct_of_peak"] = serde_json::json!(100.0 * gops / p);
            }
            row["pct_of_bandwidth"] = serde_json::json!(100.0 * gbs / read_gbs);
        }
        out.push(row);
    }
    out
}

fn print_profile(t: usize, table: &[serde_json::Value], peak: Option<f64>, bw: f64) {
    let total: f64 = table.iter().filter_map(|r| r["ms_per_layer"].as_f64()).sum();
    let peak_txt = peak.map_or("no VNNI".to_string(), |p| format!("{p:.0} G int8-op/s"));
    eprintln!("profile at {t} tokens (ms per layer; limits measured here: {peak_txt}, read {bw:.1} GB/s)");
    for r in table {
        let ms = r["ms_per_layer"].as_f64().unwrap_or(0.0);
        let mut line = format!("  {:<32} {ms:>8.3} ms {:>5.1} %", r["op"].as_str().unwrap_or(""), 100.0 * ms / total.max(1e-12));
        if let (Some(g), Some(b)) = (r["gops"].as_f64(), r["gbs"].as_f64()) {
            line += &format!("  {g:>7.0} G int8-op/s");
            if let Some(p) = r["pct_of_peak"].as_f64() {
                line += &format!(" ({p:>4.1} % of peak)");
            }
            line += &format!("  {b:>6.1} GB/s weights ({:>5.1} % of read bw)", r["pct_of_bandwidth"].as_f64().unwrap_or(0.0));
        }
        eprintln!("{line}");
    }
    eprintln!("  {:<32} {total:>8.3} ms", "sum");
}
