//! The GGUF reader on arbitrary bytes, then `Model::load`'s validation (hyperparameters,
//! every tensor's type and shape, the embedded tokenizer), and a short run when it loads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlmr::gguf::GgufFile;
use xlmr::{Model, Pooling};

fuzz_target!(|data: &[u8]| {
    let path = xlmr_fuzz::scratch_file("model.gguf", data);
    if let Ok(f) = GgufFile::open(&path) {
        for (_, v) in &f.metadata {
            let _ = v.display_short();
        }
        for t in &f.tensors {
            let _ = (t.n_elements(), f.tensor_data(t).len());
        }
    }
    if let Ok(model) = Model::load(&path) {
        let _ = model.embed(&["a b", "c"], Pooling::Mean, true, false);
        let _ = model.fill_mask(&["a <mask> b"], 3, true);
    }
});
