//! `pytorch_model.bin` on arbitrary bytes: the zip reader, the pickle VM, the storage
//! resolution, then reading every tensor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlmr::convert::pickle::TorchBin;

fuzz_target!(|data: &[u8]| {
    let path = xlmr_fuzz::scratch_file("pytorch_model.bin", data);
    if let Ok(source) = TorchBin::open(&path) {
        xlmr_fuzz::read_every_tensor(&source);
    }
});
