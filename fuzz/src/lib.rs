//! Helpers shared by the fuzz targets: a scratch file per process (the readers under test
//! take paths, since they memory-map), reading every tensor a weight source lists, and the
//! micro model of the integration tests (tests/common/micro.rs) used as a seed and as the
//! model the C API target runs texts through.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use xlmr::convert::source::WeightSource;

/// A private folder for this fuzzing process, removed by the OS's tmp cleaning.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("xlmr-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Writes `data` to `name` inside the scratch folder and returns the path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// Reads (a bounded prefix of) every tensor the source lists, as the converter would.
pub fn read_every_tensor(source: &dyn WeightSource) {
    let _ = source.describe();
    for name in source.names() {
        if let Ok(Some(t)) = source.get(&name) {
            let n = t.n_elements().min(256);
            let mut out = vec![0f32; n];
            t.read_f32(0, &mut out);
            let n_all = t.n_elements();
            if n_all > n {
                t.read_f32(n_all - n, &mut out);
            }
            source.release(t.bytes);
        }
    }
}

#[path = "../../tests/common/micro.rs"]
mod micro;
pub use micro::Micro;

/// The default micro model as GGUF bytes.
pub fn micro_gguf() -> Vec<u8> {
    Micro::default().gguf()
}

pub fn micro_tokenizer_json() -> String {
    micro::tokenizer_json()
}
