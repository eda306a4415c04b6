//! `xlmr score`: COMET metrics, with comet-score's flags and output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use xlmr::tasks::Triplet;
use xlmr::{Error, Model, Result};

#[derive(clap::Args)]
pub struct Args {
    /// COMET model converted with `xlmr convert` (from hparams.yaml + checkpoints/model.ckpt)
    #[arg(short, long)]
    pub model: PathBuf,
    /// Source segments, one per line
    #[arg(short, long = "sources", required_unless_present = "file", conflicts_with = "file")]
    pub sources: Option<PathBuf>,
    /// Translations, one per line
    #[arg(short, long = "translations", required_unless_present = "file", conflicts_with = "file")]
    pub translations: Option<PathBuf>,
    /// References, one per line (reference-free scoring without it, where the model allows)
    #[arg(short, long = "references", conflicts_with = "file")]
    pub references: Option<PathBuf>,
    /// JSON lines with "src", "mt" and optionally "ref" instead of -s/-t/-r
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print COMET's Prediction as one JSON object (scores, system_score, metadata)
    #[arg(long)]
    pub json: bool,
    /// Print only the system score
    #[arg(long, alias = "only_system")]
    pub only_system: bool,
    /// Sequences per forward pass
    #[arg(long, alias = "batch_size", default_value_t = 8)]
    pub batch_size: usize,
    /// Worker threads (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
}

/// comet-score reads each file's lines with Python's `line.strip()`.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(|l| l.trim().to_string()).collect())
}

/// The src, mt and ref columns, and the name the text output shows.
struct Inputs {
    src: Vec<String>,
    mt: Vec<String>,
    refs: Option<Vec<String>>,
    name: String,
}

fn read_inputs(args: &Args) -> Result<Inputs> {
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let (mut src, mut mt, mut refs) = (Vec::new(), Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |m: &str| Error::format(path, format!("line {}: {m}", n + 1));
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
            let field = |k: &str| -> Result<Option<String>> {
                match &v[k] {
                    serde_json::Value::Null => Ok(None),
                    serde_json::Value::String(s) => Ok(Some(s.clone())),
                    _ => Err(bad(&format!("\"{k}\" is not a string"))),
                }
            };
            src.push(field("src")?.ok_or_else(|| bad("missing \"src\""))?);
            mt.push(field("mt")?.ok_or_else(|| bad("missing \"mt\""))?);
            refs.push(field("ref")?);
        }
        let refs = if refs.iter().all(Option::is_none) {
            None
        } else {
            Some(refs.into_iter().enumerate().map(|(i, r)| r.ok_or_else(|| Error::format(path, format!("segment {} has no \"ref\" but others do", i + 1)))).collect::<Result<Vec<_>>>()?)
        };
        return Ok(Inputs { src, mt, refs, name: path.display().to_string() });
    }
    let (s, t) = (args.sources.as_ref().expect("clap requires -s"), args.translations.as_ref().expect("clap requires -t"));
    let (src, mt) = (read_lines(s)?, read_lines(t)?);
    if src.len() != mt.len() {
        return Err(Error::Input(format!("{} has {} lines but {} has {}; give one source per translation", s.display(), src.len(), t.display(), mt.len())));
    }
    let refs = match &args.references {
        Some(r) => {
            let refs = read_lines(r)?;
            if refs.len() != mt.len() {
                return Err(Error::Input(format!("{} has {} lines but {} has {}; give one reference per translation", r.display(), refs.len(), t.display(), mt.len())));
            }
            Some(refs)
        }
        None => None,
    };
    Ok(Inputs { src, mt, refs, name: t.display().to_string() })
}

pub fn run(args: Args) -> Result<()> {
    let Inputs { src, mt, refs, name } = read_inputs(&args)?;
    if mt.is_empty() {
        return Err(Error::Input(format!("{name}: no segments to score")));
    }
    let mut model = Model::load(&args.model)?;
    model.batch_size = args.batch_size.max(1);
    let triplets: Vec<Triplet> =
        (0..mt.len()).map(|i| Triplet { src: &src[i], mt: &mt[i], reference: refs.as_ref().map(|r| r[i].as_str()) }).collect();
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(Error::Input("--threads must be at least 1".into()));
        }
        b = b.num_threads(n);
    }
    let pool = b.build().map_err(|e| Error::Input(format!("cannot start threads: {e}")))?;
    let prediction = pool.install(|| model.score(&triplets))?;
    if args.json {
        let json = serde_json::to_string(&prediction).map_err(|e| Error::Input(format!("cannot write JSON: {e}")))?;
        return super::emit(&format!("{json}\n"));
    }
    let mut out = String::new();
    if !args.only_system {
        for (i, s) in prediction.scores.iter().enumerate() {
            writeln!(out, "{name}\tSegment {i}\tscore: {s:.4}").unwrap();
        }
    }
    writeln!(out, "{name}\tscore: {:.4}", prediction.system_score).unwrap();
    super::emit(&out)
}
