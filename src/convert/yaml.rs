//! The subset of YAML that PyTorch Lightning writes to `hparams.yaml` (`yaml.dump` of a flat
//! dict): `key: scalar` lines, block lists (`key:` then `- item` lines) and flow lists
//! (`key: [a, b]`). Nested mappings are kept as unparsed text: COMET's hyperparameters that
//! xlmr reads are all scalars or lists of scalars.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum YamlValue {
    /// `null`, `~` or nothing.
    Null,
    /// A scalar with quotes removed.
    Scalar(String),
    List(Vec<String>),
    /// Something this reader does not interpret (a nested mapping).
    Other,
}

/// Parses `text` into its top-level keys; `Err` names the first line it cannot read.
pub fn parse(text: &str) -> Result<BTreeMap<String, YamlValue>, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim_end();
        if line.trim().is_empty() || line.starts_with("---") {
            continue;
        }
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let trimmed = line.trim_start();
        if let Some(item) = trimmed.strip_prefix("- ").or(if trimmed == "-" { Some("") } else { None }) {
            let key = current.as_ref().ok_or_else(|| format!("line {}: list item outside a key", n + 1))?;
            match out.get_mut(key) {
                Some(YamlValue::List(items)) => items.push(unquote(item.trim())),
                Some(v @ YamlValue::Null) => *v = YamlValue::List(vec![unquote(item.trim())]),
                _ => {}
            }
            continue;
        }
        if indented {
            // Inside a nested mapping we do not interpret.
            if let Some(key) = &current {
                out.insert(key.clone(), YamlValue::Other);
            }
            continue;
        }
        let (key, value) = trimmed.split_once(':').ok_or_else(|| format!("line {}: expected `key: value`", n + 1))?;
        let key = unquote(key.trim());
        let value = value.trim();
        let parsed = if value.is_empty() || value == "null" || value == "~" {
            YamlValue::Null
        } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            YamlValue::List(inner.split(',').map(|s| unquote(s.trim())).filter(|s| !s.is_empty()).collect())
        } else {
            YamlValue::Scalar(unquote(value))
        };
        out.insert(key.clone(), parsed);
        current = Some(key);
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    // A `#` starts a comment only at the start or after a space, and outside quotes.
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'\'' | b'"') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'#') if i == 0 || bytes[i - 1] == b' ' => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lightning_hparams() {
        let y = parse("activations: Tanh\nfinal_activation: null\nhidden_sizes:\n- 2560\n- 1280\nlayer_norm: false\ninput_segments: [mt, 'src']\nname: \"a # b\" # note\nnested:\n  a: 1\n").unwrap();
        assert_eq!(y["activations"], YamlValue::Scalar("Tanh".into()));
        assert_eq!(y["final_activation"], YamlValue::Null);
        assert_eq!(y["hidden_sizes"], YamlValue::List(vec!["2560".into(), "1280".into()]));
        assert_eq!(y["input_segments"], YamlValue::List(vec!["mt".into(), "src".into()]));
        assert_eq!(y["name"], YamlValue::Scalar("a # b".into()));
        assert_eq!(y["nested"], YamlValue::Other);
        assert!(parse("- orphan\n").is_err());
        assert!(parse("no colon here\n").is_err());
    }
}
