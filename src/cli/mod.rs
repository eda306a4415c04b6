//! The `xlmr` command line: convert, info, run, score, bench, serve.

mod bench;
mod convert;
mod info;
mod run;
mod score;
#[cfg(feature = "serve")]
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
    /// Score translations with a COMET metric (XCOMET, CometKiwi, COMET-DA), like comet-score
    Score(score::Args),
    /// Measure speed and memory on synthetic inputs (like llama-bench)
    Bench(bench::Args),
    /// Serve the model over HTTP (text-embeddings-inference and OpenAI embeddings APIs)
    #[cfg(feature = "serve")]
    Serve(serve::Args),
}

/// Runs the CLI; returns the process exit code. Errors are printed as one line.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, or a usage error: clap prints it (stdout or stderr).
        Err(e) => {
            return match e.print() {
                Err(io) if io.kind() != std::io::ErrorKind::BrokenPipe => {
                    error_line(&format!("cannot write the usage text: {io}"));
                    1
                }
                _ => e.exit_code(),
            };
        }
    };
    // XLMR_ISA=scalar|avx2|avx512|avx512vnni|neon forces a kernel level; a bad value is an error.
    if let Err(e) = xlmr::kernels::init_isa_from_env() {
        error_line(&e.to_string());
        return 1;
    }
    let result = match cli.command {
        Command::Convert(args) => convert::run(args),
        Command::Info(args) => info::run(args),
        Command::Run(args) => run::run(args),
        Command::Score(args) => score::run(args),
        Command::Bench(args) => bench::run(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            error_line(&e.to_string());
            1
        }
    }
}

/// Prints `xlmr: error: <message>` on one line, whatever the message contains. Unlike
/// `eprintln!`, a stderr that cannot be written (`2> /dev/full`) is not a panic.
fn error_line(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "xlmr: error: {}", message.replace('\n', " "));
}

/// Writes `text` to stdout. A closed pipe (`xlmr info f | head`) is not an error; any other
/// write error (a full disk, `> /dev/full`) is, so that no output is lost silently.
pub(crate) fn emit(text: &str) -> xlmr::Result<()> {
    use std::io::{ErrorKind, Write};
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(xlmr::Error::io("<stdout>", e)),
        _ => Ok(()),
    }
}
