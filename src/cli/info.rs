use std::fmt::Write;
use std::path::PathBuf;
use xlmr::gguf::GgufFile;

#[derive(clap::Args)]
pub struct Args {
    /// GGUF file
    pub file: PathBuf,
    /// Print one JSON object (metadata, tensors, totals) instead of tables
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> xlmr::Result<()> {
    let f = GgufFile::open(&args.file)?;
    let params: usize = f.tensors.iter().map(|t| t.n_elements()).sum();
    let bytes: usize = f.tensors.iter().map(|t| t.size).sum();
    let mut per_type: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for t in &f.tensors {
        let e = per_type.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.size;
    }
    if args.json {
        let meta: serde_json::Map<String, serde_json::Value> = f
            .metadata
            .iter()
            .filter(|(k, _)| k != xlmr::gguf::keys::TOKENIZER_HF_JSON)
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.display_short())))
            .collect();
        let tensors: Vec<_> = f
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "type": t.ty.name(), "shape": t.shape(), "bytes": t.size}))
            .collect();
        let json = serde_json::json!({
            "file": args.file.to_string_lossy(), "version": f.version, "file_bytes": f.file_size(), "metadata": meta,
            "tensors": tensors, "parameters": params, "tensor_bytes": bytes,
        });
        let mut json = json;
        if let Ok(Some(head)) = xlmr::heads::HeadInfo::from_gguf(&f) {
            json["head"] = serde_json::json!({
                "kind": head.kind.name(), "labels": head.labels, "problem_type": head.problem_type.map(|p| p.name()),
            });
        }
        super::emit(&format!("{json}\n"))?;
        return Ok(());
    }
    let mut out = String::new();
    writeln!(out, "{}: GGUF v{}, {} metadata keys, {} tensors", args.file.display(), f.version, f.metadata.len(), f.tensors.len()).unwrap();
    writeln!(out).unwrap();
    for (k, v) in &f.metadata {
        writeln!(out, "  {k:<48} {:<7} {}", format!("{:?}", v.value_type()), v.display_short()).unwrap();
    }
    writeln!(out).unwrap();
    match xlmr::heads::HeadInfo::from_gguf(&f) {
        Ok(Some(head)) => {
            let problem = head.problem_type.map_or(String::new(), |p| format!(", problem_type {}", p.name()));
            writeln!(out, "  head: {} (xlmr run --task {}){problem}", head.kind.name(), head.kind.task()).unwrap();
            writeln!(out, "  labels ({}): {}", head.labels.len(), head.labels.iter().enumerate().map(|(i, l)| format!("{i}={l}")).collect::<Vec<_>>().join(", ")).unwrap();
        }
        Ok(None) => writeln!(out, "  head: none").unwrap(),
        Err(e) => writeln!(out, "  head: invalid ({e})").unwrap(),
    }
    let layers = f.get_u32(xlmr::gguf::keys::BLOCK_COUNT).map_or(0, |n| n as usize);
    match xlmr::heads::comet::CometConfig::from_gguf(&f, layers + 1) {
        Ok(Some(c)) => writeln!(out, "  comet: {} (xlmr score)", comet_summary(&c, layers)).unwrap(),
        Ok(None) => {}
        Err(e) => writeln!(out, "  comet: invalid ({e})").unwrap(),
    }
    writeln!(out).unwrap();
    writeln!(out, "  {:<36} {:<6} {:>18} {:>14}", "tensor", "type", "shape", "bytes").unwrap();
    for t in &f.tensors {
        let shape = t.shape().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ");
        writeln!(out, "  {:<36} {:<6} {:>18} {:>14}", t.name, t.ty.name(), shape, t.size).unwrap();
    }
    writeln!(out).unwrap();
    for (ty, (n, b)) in &per_type {
        writeln!(out, "  {ty:<6} {n:>5} tensors {:>12.1} MiB", *b as f64 / (1 << 20) as f64).unwrap();
    }
    writeln!(out, 
        "  total  {:>5} tensors {:>12.1} MiB, {:.3} B parameters, {:.2} bits/weight, file {:.1} MiB",
        f.tensors.len(),
        bytes as f64 / (1 << 20) as f64,
        params as f64 / 1e9,
        bytes as f64 * 8.0 / params.max(1) as f64,
        f.file_size() as f64 / (1 << 20) as f64
    ).unwrap();
    super::emit(&out)?;
    Ok(())
}

/// One line about a COMET model: class, inputs, layer mix, estimator, word tags.
fn comet_summary(c: &xlmr::heads::comet::CometConfig, layers: usize) -> String {
    use xlmr::heads::comet::{CometClass, LayerSelect};
    let mix = match &c.layer {
        LayerSelect::Mix { sparsemax, layer_norm, .. } => format!(
            "{} mix of {} hidden states{}",
            if *sparsemax { "sparsemax" } else { "softmax" },
            c.hidden_states,
            if *layer_norm { " (layer-normed)" } else { "" }
        ),
        LayerSelect::Single(k) => format!("hidden state {k}"),
    };
    let pool = if c.class == CometClass::Regression { format!(", {} pooling", c.pool.name()) } else { String::new() };
    let sizes: Vec<String> = c.hidden_sizes.iter().map(|s| s.to_string()).collect();
    let words = if c.word_level { format!(", word tags at layer {} ({})", c.word_layer, c.error_labels.join("/")) } else { String::new() };
    format!(
        "{}, segments {}, {mix}{pool}, estimator {} ({}), encoder layers kept {layers} of {}{words}",
        c.class.identifier(),
        c.input_segments.join("+"),
        sizes.join("-"),
        c.activation.name(),
        c.hidden_states - 1
    )
}
