//! The safetensors weight source on arbitrary bytes: open, list, read every tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlmr::convert::safetensors::SafetensorsSource;

fuzz_target!(|data: &[u8]| {
    let path = xlmr_fuzz::scratch_file("model.safetensors", data);
    if let Ok(source) = SafetensorsSource::open_files(&[path]) {
        xlmr_fuzz::read_every_tensor(&source);
    }
});
