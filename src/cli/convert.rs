use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use xlmr::convert::{convert_with_encoder, ConvertOptions, INTERRUPTED};
use xlmr::quant::GgmlType;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model folder: config.json, weights (model.safetensors, sharded
    /// safetensors with model.safetensors.index.json, or pytorch_model.bin) and
    /// tokenizer.json or sentencepiece.bpe.model
    pub model_dir: PathBuf,
    /// Output GGUF file (written to a temporary file first, renamed when complete)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weight type for the linear layers (norms and biases stay f32; see README)
    #[arg(short = 't', long = "type", default_value = "q8_0", value_parser = parse_type)]
    pub ty: GgmlType,
    /// COMET models: the folder with the encoder's config.json and tokenizer (default: the
    /// model folder's `<pretrained_model>` subfolder, then the Hugging Face cache)
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Print nothing but errors
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_type(s: &str) -> Result<GgmlType, String> {
    GgmlType::from_name(s).ok_or_else(|| format!("unknown type `{s}`; choose f32, f16, q8_0, q4_0 or q4_k"))
}

pub fn run(args: Args) -> xlmr::Result<()> {
    // Ctrl-C: stop at the next block of rows; the temporary file is removed on the way out.
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed));
    let start = Instant::now();
    let progress = !args.quiet && std::io::stderr().is_terminal();
    let opts = ConvertOptions { model_dir: args.model_dir, output: args.output.clone(), ty: args.ty, progress };
    let report = convert_with_encoder(&opts, args.encoder.as_deref())?;
    if !args.quiet {
        let fallbacks = report.plans.iter().filter(|p| p.ty != xlmr::convert::plan::preferred_type(p.role, args.ty)).count();
        eprintln!(
            "wrote {} ({} tensors, {:.1} MiB) in {:.1}s{}",
            args.output.display(),
            report.plans.len(),
            report.file_bytes as f64 / (1 << 20) as f64,
            start.elapsed().as_secs_f64(),
            if fallbacks > 0 { format!("; {fallbacks} tensors fell back to a type that fits their rows (see `xlmr info`)") } else { String::new() }
        );
    }
    Ok(())
}
