//! The one error type of the crate. Every message names the file (or input) and the
//! problem so that a user can act on it; the CLI prints it on one line.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A file whose bytes are not what its format promises (GGUF, safetensors, .bin, config.json).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },

    /// A pickle that names a global we do not allow; we never execute pickled code.
    #[error("{path}: pickle refers to forbidden global `{global}` (only torch tensor-rebuild globals and OrderedDict are allowed; this file may contain code)")]
    ForbiddenGlobal { path: PathBuf, global: String },

    #[error("{path}: unsupported architecture {found:?}; supported: {}", crate::convert::config::SUPPORTED_ARCHITECTURES.join(", "))]
    UnsupportedArchitecture { path: PathBuf, found: Vec<String> },

    #[error("{path}: missing tensor `{name}`")]
    MissingTensor { path: PathBuf, name: String },

    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    WrongShape { path: PathBuf, name: String, found: Vec<usize>, expected: Vec<usize> },

    /// NaN or Inf in a weight: quantizing it would silently poison the file.
    #[error("{path}: tensor `{name}` contains a non-finite value (NaN or Inf) at element {index}")]
    NonFinite { path: PathBuf, name: String, index: usize },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Bad user input to `run` (empty text, too long, no <mask>, ...).
    #[error("{0}")]
    Input(String),

    /// Bad argument to an API call (C API or library).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.as_ref().to_path_buf(), msg: msg.into() }
    }
}
