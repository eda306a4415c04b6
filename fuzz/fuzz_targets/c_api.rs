//! The C API on arbitrary input. First byte even: the rest is a GGUF file for
//! `xlmr_model_load` (then tokenize/embed on it). Odd: the rest is up to 4 NUL-separated
//! texts run through tokenize, embed and fill-mask on the micro model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::OnceLock;
use xlmr::ffi::*;

fn load(path: &std::path::Path) -> *mut xlmr_model {
    let c_path = CString::new(path.to_str().expect("UTF-8 scratch path")).expect("no NUL");
    let mut params = xlmr_model_default_params();
    params.n_threads = 1;
    let mut model = ptr::null_mut();
    // Safety: a NUL-terminated path and a writable out pointer.
    unsafe { xlmr_model_load(c_path.as_ptr(), params, &mut model) };
    model
}

fn micro() -> usize {
    static MODEL: OnceLock<usize> = OnceLock::new();
    *MODEL.get_or_init(|| {
        let path = xlmr_fuzz::scratch_file("micro.gguf", &xlmr_fuzz::micro_gguf());
        let model = load(&path);
        assert!(!model.is_null(), "the micro model loads");
        model as usize
    })
}

/// Tokenize, embed (mean, normalized) and fill-mask; every result is read then freed.
fn run_texts(model: *mut xlmr_model, texts: &[CString], top_k: usize) {
    let ptrs: Vec<*const c_char> = texts.iter().map(|t| t.as_ptr()).collect();
    // Safety: `ptrs` holds `ptrs.len()` NUL-terminated strings that outlive the calls, and
    // every out pointer is a writable local.
    unsafe {
        let mut tokens = ptr::null_mut();
        if xlmr_tokenize(model, ptrs.as_ptr(), ptrs.len(), true, &mut tokens) == xlmr_status::XLMR_STATUS_OK {
            for i in 0..xlmr_tokens_n_texts(tokens) {
                let (mut ids, mut n) = (ptr::null(), 0);
                xlmr_tokens_get(tokens, i, &mut ids, &mut n);
            }
        }
        xlmr_tokens_free(tokens);
        let mut emb = ptr::null_mut();
        xlmr_embed(model, ptrs.as_ptr(), ptrs.len(), 1, true, true, &mut emb);
        xlmr_embeddings_free(emb);
        let mut fill = ptr::null_mut();
        xlmr_fill_mask(model, ptrs.as_ptr(), ptrs.len(), top_k, true, &mut fill);
        xlmr_fill_mask_free(fill);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        let path = xlmr_fuzz::scratch_file("c_api.gguf", rest);
        let model = load(&path);
        if !model.is_null() {
            run_texts(model, &[CString::new("a <mask> b").unwrap()], 2);
        }
        xlmr_model_free(model);
    } else {
        let texts: Vec<CString> =
            rest.split(|&b| b == 0).take(4).map(|t| CString::new(t).expect("split at NUL")).collect();
        run_texts(micro() as *mut xlmr_model, &texts, 1 + (mode as usize >> 1) % 8);
    }
});
