//! tokenizer.json loading on arbitrary text: the converter's reader (which rewrites the
//! normalizer and clears truncation/padding) and the runtime's, then encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xlmr::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let dir = xlmr_fuzz::scratch_dir().join("tokenizer");
    std::fs::create_dir_all(&dir).expect("scratch folder");
    std::fs::write(dir.join("tokenizer.json"), data).expect("scratch file");
    let converted = xlmr::convert::load_tokenizer_json(&dir);
    for json in [Some(text), converted.as_deref().ok()].into_iter().flatten() {
        if let Ok(t) = Tokenizer::from_json(json, 16) {
            for input in ["a b", "<mask> x", "héllo wörld 🙂"] {
                if let Ok(ids) = t.encode(input, true) {
                    let _ = t.decode(&ids, true);
                }
                let _ = t.encode(input, false);
            }
        }
    }
});
