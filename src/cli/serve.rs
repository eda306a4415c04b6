use crate::serve::Options;
use std::path::PathBuf;
use std::time::Duration;
use xlmr::{Error, Pooling, Result};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
}

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model written by `xlmr convert`
    #[arg(short, long)]
    pub model: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (the log's first line names it)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Compute threads (default: all cores)
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Require `Authorization: Bearer KEY` (default: the XLMR_API_KEY environment variable)
    #[arg(long)]
    pub api_key: Option<String>,
    /// Tokens the scheduler takes from the queue per round
    #[arg(long, default_value_t = 16384)]
    pub max_batch_tokens: usize,
    /// Inputs being served at once; past it, requests get 429
    #[arg(long, default_value_t = 512)]
    pub max_concurrent_requests: usize,
    /// Inputs per request
    #[arg(long, default_value_t = 32)]
    pub max_client_batch_size: usize,
    /// Tokens per input (default: the model's maximum, 512 for XLM-R)
    #[arg(long)]
    pub max_input_length: Option<usize>,
    /// Cut inputs longer than --max-input-length instead of refusing them (a request's
    /// `truncate` overrides it)
    #[arg(long)]
    pub auto_truncate: bool,
    /// Largest request body, e.g. 2MB, 512KiB, 1000000
    #[arg(long, default_value = "2MB")]
    pub payload_limit: String,
    /// Sentence-embedding pooling (default: the file's pooling_type, else mean)
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Inputs per forward pass within a scheduler round (sorted by length)
    #[arg(long, default_value_t = xlmr::model::DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Model name reported by /info and the OpenAI route (default: the file name)
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Log one JSON object per request instead of a text line
    #[arg(long)]
    pub json_logs: bool,
    /// Seconds to finish requests in flight after SIGTERM/SIGINT
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

/// "2MB" = 2,000,000 bytes, "2MiB" = 2,097,152, a bare number is bytes.
fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(Error::InvalidArgument(format!("--payload-limit {text:?}: unknown unit (use B, KB, MB, KiB, MiB)"))),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("--payload-limit {text:?} is not a positive size")))
}

pub fn run(args: Args) -> Result<()> {
    let api_key = args.api_key.or_else(|| std::env::var("XLMR_API_KEY").ok());
    crate::serve::run(Options {
        model: args.model,
        host: args.host,
        port: args.port,
        threads: args.threads,
        api_key,
        max_batch_tokens: args.max_batch_tokens,
        max_concurrent_requests: args.max_concurrent_requests,
        max_client_batch_size: args.max_client_batch_size,
        max_input_length: args.max_input_length,
        auto_truncate: args.auto_truncate,
        payload_limit: parse_size(&args.payload_limit)?,
        pooling: args.pooling.map(|p| match p {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
        }),
        batch_size: args.batch_size,
        served_model_name: args.served_model_name,
        json_logs: args.json_logs,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn payload_sizes() {
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("512KiB").unwrap(), 524_288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("0").is_err());
        assert!(parse_size("2XB").is_err());
        assert!(parse_size("MB").is_err());
    }
}
