mod cli;
#[cfg(feature = "serve")]
mod serve;

fn main() {
    std::process::exit(cli::main());
}
