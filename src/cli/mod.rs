//! The `xlmr` command line: convert, info, run, bench, serve.

mod bench;
mod convert;
mod info;
mod run;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xlmr", version, about = "Quantized CPU runtime for XLM-RoBERTa-XL encoders", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a Hugging Face checkpoint folder into one GGUF file
    Convert(convert::Args),
    /// Show a GGUF file's metadata and tensors
    Info(info::Args),
    /// Run the encoder: fill-mask, embeddings or hidden states
    Run(run::Args),
    /// Measure speed and memory on synthetic inputs (like llama-bench)
    Bench(bench::Args),
    /// Serve the model over HTTP (text-embeddings-inference and OpenAI embeddings APIs)
    Serve(serve::Args),
}

/// Runs the CLI; returns the process exit code. Errors are printed as one line.
pub fn main() -> i32 {
    let cli = Cli::parse();
    // XLMR_ISA=scalar|avx2|avx512|avx512vnni|neon forces a kernel level; a bad value is an error.
    if let Err(e) = xlmr::kernels::init_isa_from_env() {
        eprintln!("xlmr: error: {e}");
        return 1;
    }
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Info(args) => info::run(args),
        Command::Run(args) => run::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // One line, whatever the message contains.
            eprintln!("xlmr: error: {}", e.to_string().replace('\n', " "));
            1
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`xlmr info f | head`) is not an error.
pub(crate) fn emit(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush());
}
