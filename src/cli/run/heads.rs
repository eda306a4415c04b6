//! `xlmr run` for the fine-tuned heads: reads the inputs each task takes, calls the task
//! API on `Model` (src/tasks/) and prints its result. No task logic here.

use super::Args;
use std::fmt::Write;
use xlmr::{Choices, ClassifyOptions, Error, Model, QaInput, QaOptions, Result, TextInput, TokenClassifyOptions, TopK};

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    crate::cli::emit(&format!("{}\n", serde_json::to_string(value).expect("serializable")))
}

/// As the classification and QA pipelines: without --top-k one object (the best) per input,
/// with it a list per input.
fn print_best_or_lists<T: serde::Serialize>(args: &Args, res: &[Vec<T>]) -> Result<()> {
    if args.top_k.is_none() {
        print_json(&res.iter().map(|r| &r[0]).collect::<Vec<_>>())
    } else {
        print_json(&res)
    }
}

/// Positional TEXTs (paired with `--pair` when given), or lines `TEXT` / `TEXT<TAB>TEXT_PAIR`.
fn text_inputs<'a>(args: &'a Args, inputs: &'a [String]) -> Vec<TextInput<'a>> {
    inputs
        .iter()
        .map(|t| match (&args.pair, args.text.is_empty()) {
            (Some(pair), _) => TextInput::Pair(t, pair),
            (None, true) => match t.split_once('\t') {
                Some((a, b)) => TextInput::Pair(a, b),
                None => TextInput::Single(t),
            },
            (None, false) => TextInput::Single(t),
        })
        .collect()
}

pub fn classify(model: &Model, args: &Args, inputs: &[String]) -> Result<()> {
    let opts = ClassifyOptions {
        top_k: args.top_k.as_deref().map(|s| s.parse::<TopK>().map_err(|e| Error::Input(format!("--top-k: {e}")))).transpose()?.unwrap_or(TopK::N(1)),
        function: args.function.as_deref().map(str::parse).transpose()?,
        truncate: args.truncate,
    };
    let texts = text_inputs(args, inputs);
    let res = model.classify(&texts, &opts)?;
    if args.json {
        print_best_or_lists(args, &res)?;
        return Ok(());
    }
    let mut out = String::new();
    for (i, (input, labels)) in texts.iter().zip(&res).enumerate() {
        match input {
            TextInput::Single(t) => writeln!(out, "input {}: {t}", i + 1).unwrap(),
            TextInput::Pair(a, b) => writeln!(out, "input {}: {a} | {b}", i + 1).unwrap(),
        }
        for l in labels {
            writeln!(out, "  {:>10.6}  {}", l.score, l.label).unwrap();
        }
    }
    crate::cli::emit(&out)
}

pub fn token_classify(model: &Model, args: &Args, inputs: &[String]) -> Result<()> {
    let defaults = TokenClassifyOptions::default();
    let opts = TokenClassifyOptions {
        aggregation: args.aggregation.as_deref().map(str::parse).transpose()?.unwrap_or(defaults.aggregation),
        ignore_labels: match &args.ignore_labels {
            Some(labels) => labels.iter().filter(|l| !l.is_empty()).cloned().collect(),
            None => defaults.ignore_labels,
        },
        truncate: args.truncate,
    };
    let res = model.token_classify(inputs, &opts)?;
    if args.json {
        print_json(&res)?;
        return Ok(());
    }
    let mut out = String::new();
    for (i, (text, entities)) in inputs.iter().zip(&res).enumerate() {
        writeln!(out, "input {}: {text}", i + 1).unwrap();
        for e in entities {
            let label = e.entity.as_ref().or(e.entity_group.as_ref()).map_or("", |s| s.as_str());
            writeln!(out, "  {:>10.6}  {label:<12} {:>5}..{:<5} {}", e.score, e.start, e.end, e.word).unwrap();
        }
    }
    crate::cli::emit(&out)
}

/// JSONL lines as objects, each with the string fields `keys` (named in errors by line).
fn json_lines(inputs: &[String], keys: &[&str]) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    inputs
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let bad = |m: String| Error::Input(format!("line {}: {m}", i + 1));
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object ({e})")))?;
            let serde_json::Value::Object(o) = v else { return Err(bad("not a JSON object".into())) };
            for k in keys {
                if !o.contains_key(*k) {
                    return Err(bad(format!("no \"{k}\" (expected {})", keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", "))));
                }
            }
            Ok(o)
        })
        .collect()
}

fn str_field<'a>(o: &'a serde_json::Map<String, serde_json::Value>, key: &str, line: usize) -> Result<&'a str> {
    o[key].as_str().ok_or_else(|| Error::Input(format!("line {line}: \"{key}\" must be a string")))
}

pub fn answer(model: &Model, args: &Args, inputs: &[String]) -> Result<()> {
    let top_k = match args.top_k.as_deref() {
        None => 1,
        Some(s) => s.parse::<usize>().ok().filter(|&k| k > 0).ok_or_else(|| Error::Input(format!("--top-k {s:?}: give a number of answers, at least 1")))?,
    };
    let opts = QaOptions {
        top_k,
        max_seq_len: args.max_seq_len,
        doc_stride: args.doc_stride,
        max_answer_len: args.max_answer_len,
        handle_impossible_answer: args.handle_impossible_answer,
    };
    let lines = if args.question.is_some() { Vec::new() } else { json_lines(inputs, &["question", "context"])? };
    let qa: Vec<QaInput> = match (&args.question, &args.context) {
        (Some(question), Some(context)) => vec![QaInput { question, context }],
        _ => lines
            .iter()
            .enumerate()
            .map(|(i, o)| Ok(QaInput { question: str_field(o, "question", i + 1)?, context: str_field(o, "context", i + 1)? }))
            .collect::<Result<_>>()?,
    };
    let res = model.answer(&qa, &opts)?;
    if args.json {
        print_best_or_lists(args, &res)?;
        return Ok(());
    }
    let mut out = String::new();
    for (i, (input, answers)) in qa.iter().zip(&res).enumerate() {
        writeln!(out, "input {}: {}", i + 1, input.question).unwrap();
        for a in answers {
            writeln!(out, "  {:>10.6}  {:>5}..{:<5} {:?}", a.score, a.start, a.end, a.answer).unwrap();
        }
    }
    crate::cli::emit(&out)
}

pub fn multiple_choice(model: &Model, args: &Args, inputs: &[String]) -> Result<()> {
    let lines = json_lines(inputs, &["prompt", "choices"])?;
    let items: Vec<Choices> = lines
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let bad = || Error::Input(format!("line {}: \"choices\" must be an array of strings", i + 1));
            let choices = o["choices"].as_array().ok_or_else(bad)?.iter().map(|c| c.as_str().ok_or_else(bad)).collect::<Result<_>>()?;
            Ok(Choices { prompt: str_field(o, "prompt", i + 1)?, choices })
        })
        .collect::<Result<_>>()?;
    let res = model.multiple_choice(&items, args.truncate)?;
    if args.json {
        print_json(&res)?;
        return Ok(());
    }
    let mut out = String::new();
    for (i, (item, r)) in items.iter().zip(&res).enumerate() {
        writeln!(out, "input {}: {}", i + 1, item.prompt).unwrap();
        for (k, (choice, score)) in item.choices.iter().zip(&r.scores).enumerate() {
            writeln!(out, "  {} {:>10.6}  {choice}", if k == r.best { "*" } else { " " }, score).unwrap();
        }
    }
    crate::cli::emit(&out)
}
