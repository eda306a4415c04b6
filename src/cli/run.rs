mod heads;

use std::fmt::Write;
use std::io::Read;
use std::path::PathBuf;
use xlmr::{Error, Model, Pooling, Result};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Task {
    /// Top-k predictions for each <mask>, like transformers' fill-mask pipeline
    FillMask,
    /// One vector per input (sentence embedding), or per token with --pooling none
    Embed,
    /// The output of every layer, as transformers' output_hidden_states
    HiddenStates,
    /// Labels of each text or text pair, like the text-classification pipeline (...ForSequenceClassification)
    Classify,
    /// Entities of each text, like the token-classification (NER) pipeline (...ForTokenClassification)
    #[value(alias = "ner")]
    TokenClassify,
    /// Answer spans, like transformers 4.x's question-answering pipeline (...ForQuestionAnswering);
    /// input: JSONL lines {"question": ..., "context": ...}, or --question and --context
    Qa,
    /// Scores of each choice, softmax over the choices (...ForMultipleChoice);
    /// input: JSONL lines {"prompt": ..., "choices": [...]}
    MultipleChoice,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PoolingArg {
    Cls,
    Mean,
    None,
}

#[derive(clap::Args)]
pub struct Args {
    /// GGUF model written by `xlmr convert`
    #[arg(short, long)]
    pub model: PathBuf,
    #[arg(long, value_enum)]
    pub task: Task,
    /// Input texts; without any, one input per line from --file or stdin
    pub text: Vec<String>,
    /// Read inputs from this file, one per line
    #[arg(short, long, conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// Print exactly one JSON array on stdout, one element per input
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: all cores)
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// fill-mask: predictions per mask (default 5); classify: labels per input, N or `all`
    /// (default: the best label, printed as the pipeline's single dict)
    #[arg(long)]
    pub top_k: Option<String>,
    /// classify: softmax, sigmoid or none (default: from the model's problem_type, as the pipeline)
    #[arg(long)]
    pub function: Option<String>,
    /// classify: the second text of a pair, for every TEXT (lines of a file or stdin give
    /// pairs as TEXT<TAB>TEXT_PAIR)
    #[arg(long)]
    pub pair: Option<String>,
    /// token-classify: none, simple, first, average or max (default simple)
    #[arg(long)]
    pub aggregation: Option<String>,
    /// token-classify: labels to leave out, comma-separated (default O; "" keeps all)
    #[arg(long, value_delimiter = ',')]
    pub ignore_labels: Option<Vec<String>>,
    /// qa: the question (with --context)
    #[arg(long, requires = "context", conflicts_with_all = ["text", "file"])]
    pub question: Option<String>,
    /// qa: the context (with --question)
    #[arg(long, requires = "question")]
    pub context: Option<String>,
    /// qa: tokens per window, question included
    #[arg(long, default_value_t = 384)]
    pub max_seq_len: usize,
    /// qa: tokens of overlap between windows of a long context (default min(max-seq-len/2, 128))
    #[arg(long)]
    pub doc_stride: Option<usize>,
    /// qa: longest answer, in tokens
    #[arg(long, default_value_t = 15)]
    pub max_answer_len: usize,
    /// qa: allow the empty answer (score: the smallest "no answer" probability over windows)
    #[arg(long)]
    pub handle_impossible_answer: bool,
    /// embed: how token vectors become one vector
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: PoolingArg,
    /// embed: scale each vector to unit L2 norm
    #[arg(long)]
    pub normalize: bool,
    /// hidden-states: which to output, e.g. 0,12,36 (0 = embeddings, last = after the final LayerNorm)
    #[arg(long, value_delimiter = ',')]
    pub layers: Option<Vec<usize>>,
    /// Cut inputs longer than the model's maximum (512 tokens) instead of failing
    #[arg(long)]
    pub truncate: bool,
    /// Inputs per forward pass
    #[arg(long, default_value_t = xlmr::model::DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Print the load time and the compute time (separately) on stderr
    #[arg(short, long)]
    pub verbose: bool,
}

/// Inputs from the command line, a file or stdin; a non-UTF-8 input is an error.
fn read_inputs(args: &Args) -> Result<Vec<String>> {
    if !args.text.is_empty() {
        return Ok(args.text.clone());
    }
    let (bytes, name) = match &args.file {
        Some(p) => (std::fs::read(p).map_err(|e| Error::io(p, e))?, p.display().to_string()),
        None => {
            let mut b = Vec::new();
            std::io::stdin().lock().read_to_end(&mut b).map_err(|e| Error::io("<stdin>", e))?;
            (b, "<stdin>".to_string())
        }
    };
    if bytes.is_empty() {
        return Err(Error::Input(format!("no input: give TEXT arguments or lines on {name}")));
    }
    let mut inputs = Vec::new();
    for (i, line) in bytes.as_slice().split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|_| Error::Input(format!("{name}: line {} is not valid UTF-8", i + 1)))?;
        inputs.push(text.to_string());
    }
    // A final newline does not start another input.
    if bytes.ends_with(b"\n") {
        inputs.pop();
    }
    Ok(inputs)
}

fn preview(v: &[f32]) -> String {
    let shown: Vec<String> = v.iter().take(6).map(|x| format!("{x:.4}")).collect();
    format!("[{}{}] ({} values)", shown.join(", "), if v.len() > 6 { ", …" } else { "" }, v.len())
}

pub fn run(args: Args) -> Result<()> {
    let inputs = if args.question.is_some() { Vec::new() } else { read_inputs(&args)? };
    let start = std::time::Instant::now();
    let mut model = Model::load(&args.model)?;
    let load = start.elapsed();
    model.batch_size = args.batch_size.max(1);
    let pool = {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(n) = args.threads {
            if n == 0 {
                return Err(Error::Input("--threads must be at least 1".into()));
            }
            b = b.num_threads(n);
        }
        b.build().map_err(|e| Error::Input(format!("cannot start threads: {e}")))?
    };
    let start = std::time::Instant::now();
    let threads = pool.current_num_threads();
    let result = pool.install(|| run_task(&model, &args, &inputs));
    if args.verbose && result.is_ok() {
        eprintln!(
            "xlmr: load {:.0} ms (weights {}), compute {:.0} ms ({} inputs, {threads} threads)",
            load.as_secs_f64() * 1e3,
            model.weights_mode(),
            start.elapsed().as_secs_f64() * 1e3,
            inputs.len().max(1),
        );
    }
    result
}

/// Runs the task on every input and prints the results.
fn run_task(model: &Model, args: &Args, inputs: &[String]) -> Result<()> {
    match args.task {
        Task::Classify => heads::classify(model, args, inputs),
        Task::TokenClassify => heads::token_classify(model, args, inputs),
        Task::Qa => heads::answer(model, args, inputs),
        Task::MultipleChoice => heads::multiple_choice(model, args, inputs),
        Task::FillMask => {
            let top_k = match args.top_k.as_deref() {
                None => 5,
                Some(s) => s.parse::<usize>().ok().filter(|&k| k > 0).ok_or_else(|| Error::Input(format!("--top-k {s:?}: give a number of predictions, at least 1")))?,
            };
            let res = model.fill_mask(inputs, top_k, args.truncate)?;
            if args.json {
                super::emit(&format!("{}\n", serde_json::to_string(&res).expect("serializable")))?;
            } else {
                let mut out = String::new();
                for (i, (text, masks)) in inputs.iter().zip(&res).enumerate() {
                    writeln!(out, "input {}: {text}", i + 1).unwrap();
                    for (m, preds) in masks.iter().enumerate() {
                        writeln!(out, "  mask {}:", m + 1).unwrap();
                        for p in preds {
                            writeln!(out, "    {:>8.4}  {:>7}  {:<16} {}", p.score, p.token, format!("{:?}", p.token_str), p.sequence).unwrap();
                        }
                    }
                }
                super::emit(&out)?;
            }
            Ok(())
        }
        Task::Embed => {
            let pooling = match args.pooling {
                PoolingArg::Cls => Pooling::Cls,
                PoolingArg::Mean => Pooling::Mean,
                PoolingArg::None => Pooling::None,
            };
            let res = model.embed(inputs, pooling, args.normalize, args.truncate)?;
            if args.json {
                let vectors: Vec<serde_json::Value> = res
                    .iter()
                    .map(|v| if pooling == Pooling::None { serde_json::json!(v) } else { serde_json::json!(v[0]) })
                    .collect();
                super::emit(&format!("{}\n", serde_json::Value::Array(vectors)))?;
            } else {
                let mut out = String::new();
                for (i, (text, vecs)) in inputs.iter().zip(&res).enumerate() {
                    writeln!(out, "input {}: {text}", i + 1).unwrap();
                    for (t, v) in vecs.iter().enumerate() {
                        let label = if pooling == Pooling::None { format!("token {t}") } else { "embedding".into() };
                        writeln!(out, "  {label}: {}", preview(v)).unwrap();
                    }
                }
                super::emit(&out)?;
            }
            Ok(())
        }
        Task::HiddenStates => {
            let res = model.hidden_states(inputs, args.layers.as_deref(), args.truncate)?;
            if args.json {
                super::emit(&format!("{}\n", serde_json::to_string(&res).expect("serializable")))?;
            } else {
                let all: Vec<usize> = (0..=model.config.layers).collect();
                let names = args.layers.clone().unwrap_or(all);
                let mut out = String::new();
                for (i, (text, layers)) in inputs.iter().zip(&res).enumerate() {
                    writeln!(out, "input {}: {text}", i + 1).unwrap();
                    for (l, tokens) in names.iter().zip(layers) {
                        writeln!(out, "  hidden_states[{l}]: {} tokens x {}; token 0 {}", tokens.len(), model.config.hidden, preview(&tokens[0])).unwrap();
                    }
                }
                super::emit(&out)?;
            }
            Ok(())
        }
    }
}
