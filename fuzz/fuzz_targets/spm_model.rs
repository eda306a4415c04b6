//! The sentencepiece protobuf reader and the tokenizer.json built from it (as convert does
//! for a folder without tokenizer.json).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlmr::convert::spm::{tokenizer_json_from_spm, SpmModel};

fuzz_target!(|data: &[u8]| {
    if SpmModel::parse(data).is_ok() {
        let path = xlmr_fuzz::scratch_file("sentencepiece.bpe.model", data);
        if let Ok(json) = tokenizer_json_from_spm(&path) {
            if let Ok(t) = xlmr::tokenizer::Tokenizer::from_json(&json, 16) {
                let _ = t.encode("a b", true);
            }
        }
    }
});
