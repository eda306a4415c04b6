//! PyTorch `pytorch_model.bin` (zip + pickle) reader. (Being written.)

use super::source::{RawTensor, WeightSource};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub struct TorchBin {
    path: PathBuf,
}

impl TorchBin {
    pub fn open(path: &Path) -> Result<Self> {
        Err(Error::format(path, "pytorch_model.bin reading is not implemented yet"))
    }
}

impl WeightSource for TorchBin {
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
    fn get(&self, _name: &str) -> Result<Option<RawTensor<'_>>> {
        Ok(None)
    }
    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}
