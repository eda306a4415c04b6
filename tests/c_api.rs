//! libxlmr's C API: the committed header is what cbindgen generates, the C examples build
//! against the static and the dynamic library and agree with the CLI, several threads
//! sharing one model agree with one thread, valgrind finds no leak or invalid access, and
//! bad arguments give status codes instead of crashes.

mod common;

use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use xlmr::ffi::*;
use xlmr::quant::GgmlType;
use xlmr::{Model, Pooling};

const TEXT: &str = "Hello world, this is a test.";
const MASKED: &str = "The capital of France is <mask>.";

fn model_path() -> PathBuf {
    common::converted(&common::tiny(), GgmlType::Q8_0)
}

// ---------------------------------------------------------------- header

fn generated_header() -> String {
    let root = common::root();
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut bytes = Vec::new();
    bindings.write(&mut bytes);
    String::from_utf8(bytes).unwrap()
}

/// Set XLMR_UPDATE_HEADER=1 to rewrite include/xlmr.h after changing src/ffi/.
#[test]
fn committed_header_is_what_cbindgen_generates() {
    let path = common::root().join("include/xlmr.h");
    let generated = generated_header();
    if std::env::var_os("XLMR_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/xlmr.h is out of date with src/ffi/; regenerate it with XLMR_UPDATE_HEADER=1 cargo test --test c_api committed_header"
    );
    for name in [
        "xlmr_model_load", "xlmr_embed", "xlmr_fill_mask", "xlmr_get_hidden_states", "XLMR_VERSION_MAJOR", "XLMR_POOLING_MEAN",
        "xlmr_classify", "xlmr_token_classify", "xlmr_answer", "xlmr_multiple_choice", "XLMR_TOP_K_ALL",
    ] {
        assert!(generated.contains(name), "{name} missing from the header");
    }
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let root = common::root();
    let ok = |compiler: &str, lang: &str| {
        Command::new(compiler)
            .args(["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-pedantic", "-x", lang])
            .arg(root.join("include/xlmr.h"))
            .status()
            .map(|s| s.success())
    };
    assert_eq!(ok("cc", "c").ok(), Some(true), "the header must compile as C");
    // C++ is checked where a C++ compiler is installed.
    if let Ok(success) = ok("c++", "c++") {
        assert!(success, "the header must compile as C++");
    }
}

// ---------------------------------------------------------------- building the C programs

/// The target directory and profile of this test binary (target/<profile>/deps/c_api-*).
fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps").to_path_buf()
}

/// Builds libxlmr.a and libxlmr.so (cargo builds them only for `cargo build`), once.
fn library_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_profile_dir();
        let target_dir = dir.parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--lib", "--quiet", "--manifest-path"])
            .arg(common::root().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "cargo build --lib failed");
        for lib in ["libxlmr.a", "libxlmr.so"] {
            assert!(dir.join(lib).exists(), "{} was not built", dir.join(lib).display());
        }
        dir
    })
}

/// Where the compiled C programs go: next to the libraries, so nothing is left in /tmp.
fn scratch() -> PathBuf {
    let dir = target_profile_dir().join("c_api_examples");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Link {
    Static,
    Dynamic,
}

/// Compiles examples/<name>.c against libxlmr once per test run (tests run in parallel
/// and must not rewrite a program another one is running) and returns the executable.
fn compile(name: &str, link: Link) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, Link), PathBuf>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    built.entry((name.to_string(), link)).or_insert_with(|| compile_now(name, link)).clone()
}

fn compile_now(name: &str, link: Link) -> PathBuf {
    let root = common::root();
    let lib = library_dir();
    let exe = scratch().join(format!("{name}-{link:?}"));
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1", "-o"])
        .arg(&exe)
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join(format!("examples/{name}.c")));
    match link {
        Link::Static => cmd.arg(lib.join("libxlmr.a")),
        Link::Dynamic => cmd.arg("-L").arg(lib).arg("-lxlmr").arg(format!("-Wl,-rpath,{}", lib.display())),
    };
    cmd.args(["-lpthread", "-ldl", "-lm"]);
    let out = cmd.output().expect("cc runs");
    assert!(out.status.success(), "cc failed for {name} ({link:?}):\n{}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn run(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What the CLI prints with --json for one task.
fn cli_json(args: &[&str]) -> serde_json::Value {
    let model = model_path();
    let out = Command::new(env!("CARGO_BIN_EXE_xlmr")).arg("run").arg("-m").arg(&model).args(args).output().unwrap();
    assert!(out.status.success(), "xlmr run failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The example's records, by their first field.
fn records<'a>(output: &'a str, kind: &str) -> Vec<Vec<&'a str>> {
    output.lines().map(|l| l.split('\t').collect::<Vec<_>>()).filter(|f| f[0] == kind).collect()
}

fn floats(s: &str) -> Vec<f32> {
    s.split(' ').map(|v| v.parse().unwrap()).collect()
}

#[test]
fn c_example_matches_the_cli_static_and_dynamic() {
    let model = model_path();
    let model_arg = model.to_str().unwrap();
    let outputs: Vec<String> =
        [Link::Static, Link::Dynamic].iter().map(|&link| run(&compile("embed_and_fill", link), &[model_arg, TEXT, MASKED])).collect();
    assert_eq!(outputs[0], outputs[1], "static and dynamic builds must print the same");
    let out = &outputs[0];

    let version = &records(out, "version")[0];
    assert_eq!(version[1], env!("CARGO_PKG_VERSION"));
    assert_eq!(version[2], env!("CARGO_PKG_VERSION"));

    let lib = Model::load(&model).unwrap();
    let info = &records(out, "info")[0];
    let c = &lib.config;
    assert_eq!(info[1..], [c.hidden, c.layers, c.vocab, c.max_tokens, 1].map(|v| v.to_string()));

    let tokens = &records(out, "tokens")[0];
    let ids: Vec<u32> = tokens[2].split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(ids, lib.tokenizer.encode(TEXT, false).unwrap());
    assert_eq!(tokens[1], ids.len().to_string());

    let embedding = &records(out, "embedding")[0];
    let got = floats(embedding[2]);
    let cli = cli_json(&["--task", "embed", "--pooling", "mean", "--json", TEXT]);
    let want: Vec<f32> = cli[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(got.len(), c.hidden);
    assert_eq!(embedding[1], c.hidden.to_string());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "embedding[{i}]: C {g} vs CLI {w}");
    }

    let fills = records(out, "fill");
    let cli = cli_json(&["--task", "fill-mask", "--top-k", "5", "--json", MASKED]);
    let want = cli[0][0].as_array().unwrap();
    assert_eq!(fills.len(), want.len());
    assert_eq!(fills.len(), 5);
    for (rank, (f, w)) in fills.iter().zip(want).enumerate() {
        assert_eq!(f[1..3], ["0".to_string(), rank.to_string()]);
        assert_eq!(f[3], w["token"].to_string(), "rank {rank} token id");
        let score: f32 = f[4].parse().unwrap();
        assert!((score - w["score"].as_f64().unwrap() as f32).abs() <= 1e-5, "rank {rank} score");
        assert_eq!(f[5], w["token_str"].as_str().unwrap());
        assert_eq!(f[6], w["sequence"].as_str().unwrap());
    }

    let error = &records(out, "error")[0];
    assert_eq!(error[1], "XLMR_STATUS_INPUT");
    assert!(error[2].contains("no <mask>"), "{}", error[2]);
}

#[test]
fn c_threads_sharing_one_model_match_one_thread() {
    let model = model_path();
    for link in [Link::Static, Link::Dynamic] {
        let out = run(&compile("threads", link), &[model.to_str().unwrap(), "6", "4"]);
        assert_eq!(out.trim(), "threads ok 6 48", "{link:?}");
    }
}

/// 8 threads run embed / fill-mask while the model is freed: calls that succeed match one
/// thread, calls after the free are refused, nothing crashes (and nothing leaks, below).
#[test]
fn c_free_while_threads_run() {
    let model = model_path();
    for link in [Link::Static, Link::Dynamic] {
        let out = run(&compile("free_while_running", link), &[model.to_str().unwrap(), "8", "24"]);
        assert!(out.starts_with("free_while_running ok 8 ") && out.trim().ends_with(" 8"), "{link:?}: {out}");
    }
}

/// valgrind: no leak (definite or possible) and no invalid access, in every program.
#[test]
fn c_examples_are_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed; skipping");
        return;
    }
    let model = model_path();
    let model_arg = model.to_str().unwrap();
    let suppressions = common::root().join("examples/valgrind.supp");
    let cases = [
        ("embed_and_fill", vec![model_arg, TEXT, MASKED]),
        ("threads", vec![model_arg, "3", "1"]),
        ("free_while_running", vec![model_arg, "8", "4"]),
    ];
    for (name, args) in cases {
        let exe = compile(name, Link::Static);
        let out = Command::new("valgrind")
            .args(["--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite,possible", "--error-exitcode=1"])
            .arg(format!("--suppressions={}", suppressions.display()))
            .arg(&exe)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "valgrind reports problems in {name}:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

// ---------------------------------------------------------------- the API from Rust

fn last_error() -> String {
    // Safety: xlmr_last_error returns a NUL-terminated string owned by this thread.
    unsafe { CStr::from_ptr(xlmr_last_error()) }.to_str().unwrap().to_string()
}

fn load(path: &Path) -> *mut xlmr_model {
    let path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = ptr::null_mut();
    // Safety: valid C string and out-pointer.
    let status = unsafe { xlmr_model_load(path.as_ptr(), xlmr_model_default_params(), &mut model) };
    assert_eq!(status, xlmr_status::XLMR_STATUS_OK, "{}", last_error());
    model
}

fn c_texts(texts: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
    let owned: Vec<CString> = texts.iter().map(|t| CString::new(*t).unwrap()).collect();
    let pointers = owned.iter().map(|c| c.as_ptr()).collect();
    (owned, pointers)
}

#[test]
fn ffi_results_match_the_library() {
    let path = model_path();
    let lib = Model::load(&path).unwrap();
    let model = load(&path);
    let inputs = [TEXT, "Paris est la <mask> de la <mask>.", MASKED];
    let (_owned, texts) = c_texts(&inputs);
    let h = lib.config.hidden;

    // Safety (whole block): every pointer passed is valid or a checked out-pointer, and
    // borrowed arrays are read before their result is freed.
    unsafe {
        let mut tokens = ptr::null_mut();
        assert_eq!(xlmr_tokenize(model, texts.as_ptr(), 3, false, &mut tokens), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_tokens_n_texts(tokens), 3);
        for (i, text) in inputs.iter().enumerate() {
            let (mut ids, mut n) = (ptr::null(), 0);
            assert_eq!(xlmr_tokens_get(tokens, i, &mut ids, &mut n), xlmr_status::XLMR_STATUS_OK);
            assert_eq!(std::slice::from_raw_parts(ids, n), lib.tokenizer.encode(text, false).unwrap());
        }
        xlmr_tokens_free(tokens);

        let want = lib.embed(&inputs, Pooling::None, true, false).unwrap();
        let mut emb = ptr::null_mut();
        let status = xlmr_embed(model, texts.as_ptr(), 3, xlmr_pooling::XLMR_POOLING_NONE as i32, true, false, &mut emb);
        assert_eq!(status, xlmr_status::XLMR_STATUS_OK);
        assert_eq!((xlmr_embeddings_n_texts(emb), xlmr_embeddings_dim(emb)), (3, h));
        for (i, w) in want.iter().enumerate() {
            let (mut data, mut n) = (ptr::null(), 0);
            assert_eq!(xlmr_embeddings_get(emb, i, &mut data, &mut n), xlmr_status::XLMR_STATUS_OK);
            assert_eq!(n, w.len());
            assert_eq!(std::slice::from_raw_parts(data, n * h), w.concat().as_slice());
        }
        xlmr_embeddings_free(emb);

        let masked = &inputs[1..];
        let want = lib.fill_mask(masked, 3, false).unwrap();
        let mut fill = ptr::null_mut();
        assert_eq!(xlmr_fill_mask(model, texts[1..].as_ptr(), 2, 3, false, &mut fill), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_fill_mask_n_texts(fill), 2);
        assert_eq!(xlmr_fill_mask_n_masks(fill, 0), 2);
        for (i, masks) in want.iter().enumerate() {
            assert_eq!(xlmr_fill_mask_n_masks(fill, i), masks.len());
            for (m, preds) in masks.iter().enumerate() {
                assert_eq!(xlmr_fill_mask_n_predictions(fill, i, m), 3);
                for (r, p) in preds.iter().enumerate() {
                    let mut got = std::mem::zeroed::<xlmr_prediction>();
                    assert_eq!(xlmr_fill_mask_get(fill, i, m, r, &mut got), xlmr_status::XLMR_STATUS_OK);
                    assert_eq!((got.token_id, got.score), (p.token, p.score));
                    assert_eq!(CStr::from_ptr(got.token_str).to_str().unwrap(), p.token_str);
                    assert_eq!(CStr::from_ptr(got.sequence).to_str().unwrap(), p.sequence);
                }
            }
        }
        xlmr_fill_mask_free(fill);

        let layers = [0usize, lib.config.layers, 1];
        let want = lib.hidden_states(&inputs, Some(&layers), false).unwrap();
        let mut states = ptr::null_mut();
        let status = xlmr_get_hidden_states(model, texts.as_ptr(), 3, layers.as_ptr(), 3, false, &mut states);
        assert_eq!(status, xlmr_status::XLMR_STATUS_OK);
        assert_eq!((xlmr_hidden_states_n_texts(states), xlmr_hidden_states_n_layers(states), xlmr_hidden_states_dim(states)), (3, 3, h));
        for (i, per_layer) in want.iter().enumerate() {
            for (k, rows) in per_layer.iter().enumerate() {
                let (mut data, mut n) = (ptr::null(), 0);
                assert_eq!(xlmr_hidden_states_get(states, i, k, &mut data, &mut n), xlmr_status::XLMR_STATUS_OK);
                assert_eq!(std::slice::from_raw_parts(data, n * h), rows.concat().as_slice());
            }
        }
        xlmr_hidden_states_free(states);

        // All layers when `layers` is NULL.
        let mut all = ptr::null_mut();
        assert_eq!(xlmr_get_hidden_states(model, texts.as_ptr(), 1, ptr::null(), 0, false, &mut all), xlmr_status::XLMR_STATUS_OK);
        assert_eq!(xlmr_hidden_states_n_layers(all), lib.config.layers + 1);
        xlmr_hidden_states_free(all);

        let mut info = std::mem::zeroed::<xlmr_model_info>();
        assert_eq!(xlmr_model_get_info(model, &mut info), xlmr_status::XLMR_STATUS_OK);
        assert_eq!((info.hidden_size, info.n_layers, info.vocab_size, info.max_tokens), (h, lib.config.layers, lib.config.vocab, lib.config.max_tokens));
        assert_eq!((info.mask_token_id, info.has_mlm_head), (lib.config.mask_id, true));
        xlmr_model_free(model);
    }
}

#[test]
fn ffi_rejects_null_and_invalid_arguments() {
    use xlmr_status::*;
    let path = model_path();
    let model = load(&path);
    let (_owned, texts) = c_texts(&[TEXT]);
    let (_owned_masked, masked) = c_texts(&[MASKED]);
    let invalid = |status: xlmr_status, what: &str| {
        assert_eq!(status, XLMR_STATUS_INVALID_ARGUMENT, "{what}");
        assert!(last_error().starts_with("invalid argument"), "{what}: {}", last_error());
    };

    // Safety (whole block): the calls get NULLs, stale handles and bad values on purpose;
    // every non-NULL pointer given is valid.
    unsafe {
        let params = xlmr_model_default_params();
        let mut out_model = ptr::null_mut();
        invalid(xlmr_model_load(ptr::null(), params, &mut out_model), "NULL path");
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        invalid(xlmr_model_load(c_path.as_ptr(), params, ptr::null_mut()), "NULL out");
        invalid(xlmr_model_load(c_path.as_ptr(), xlmr_model_params { use_mmap: false, ..params }, &mut out_model), "use_mmap false");
        let bad_utf8 = [0xffu8, 0xfe, 0];
        invalid(xlmr_model_load(bad_utf8.as_ptr().cast(), params, &mut out_model), "non-UTF-8 path");
        assert!(out_model.is_null(), "out must stay untouched on failure");

        let missing = CString::new("/nonexistent/model.gguf").unwrap();
        assert_eq!(xlmr_model_load(missing.as_ptr(), params, &mut out_model), XLMR_STATUS_IO);
        assert!(last_error().contains("/nonexistent/model.gguf"), "{}", last_error());
        let not_gguf = CString::new(common::tiny().join("config.json").to_str().unwrap()).unwrap();
        assert_eq!(xlmr_model_load(not_gguf.as_ptr(), params, &mut out_model), XLMR_STATUS_FORMAT);
        assert!(out_model.is_null());

        let mut info = std::mem::zeroed::<xlmr_model_info>();
        invalid(xlmr_model_get_info(ptr::null(), &mut info), "NULL model");
        invalid(xlmr_model_get_info(model, ptr::null_mut()), "NULL info");

        let mut emb = ptr::null_mut();
        invalid(xlmr_embed(ptr::null(), texts.as_ptr(), 1, 1, false, false, &mut emb), "embed NULL model");
        invalid(xlmr_embed(model, ptr::null(), 1, 1, false, false, &mut emb), "embed NULL texts");
        invalid(xlmr_embed(model, texts.as_ptr(), 0, 1, false, false, &mut emb), "embed no texts");
        invalid(xlmr_embed(model, texts.as_ptr(), 1, 7, false, false, &mut emb), "embed bad pooling");
        invalid(xlmr_embed(model, texts.as_ptr(), 1, -1, false, false, &mut emb), "embed negative pooling");
        invalid(xlmr_embed(model, texts.as_ptr(), 1, 1, false, false, ptr::null_mut()), "embed NULL out");
        let null_text = [ptr::null::<c_char>()];
        invalid(xlmr_embed(model, null_text.as_ptr(), 1, 1, false, false, &mut emb), "embed NULL text");
        assert!(last_error().contains("texts[0]"), "{}", last_error());
        let empty = [c"".as_ptr()];
        assert_eq!(xlmr_embed(model, empty.as_ptr(), 1, 1, false, false, &mut emb), XLMR_STATUS_INPUT);
        assert!(emb.is_null(), "out must stay untouched on failure");

        let mut fill = ptr::null_mut();
        invalid(xlmr_fill_mask(model, masked.as_ptr(), 1, 0, false, &mut fill), "top_k 0");
        assert_eq!(xlmr_fill_mask(model, texts.as_ptr(), 1, 5, false, &mut fill), XLMR_STATUS_INPUT);
        assert!(last_error().contains("no <mask>"), "{}", last_error());
        assert!(fill.is_null());

        let mut states = ptr::null_mut();
        let too_deep = [99usize];
        invalid(xlmr_get_hidden_states(model, texts.as_ptr(), 1, too_deep.as_ptr(), 1, false, &mut states), "layer 99");
        invalid(xlmr_get_hidden_states(model, texts.as_ptr(), 1, ptr::null(), 2, false, &mut states), "NULL layers, n 2");
        invalid(xlmr_get_hidden_states(model, texts.as_ptr(), 1, too_deep.as_ptr(), 0, false, &mut states), "layers, n 0");
        assert!(states.is_null());

        // Out-of-range indices on a good result, and accessors given NULL.
        assert_eq!(xlmr_fill_mask(model, masked.as_ptr(), 1, 2, false, &mut fill), XLMR_STATUS_OK);
        let mut pred = std::mem::zeroed::<xlmr_prediction>();
        invalid(xlmr_fill_mask_get(fill, 0, 0, 2, &mut pred), "rank 2 of top 2");
        invalid(xlmr_fill_mask_get(fill, 1, 0, 0, &mut pred), "text 1 of 1");
        invalid(xlmr_fill_mask_get(fill, 0, 0, 0, ptr::null_mut()), "NULL prediction");
        assert_eq!((xlmr_fill_mask_n_masks(fill, 5), xlmr_fill_mask_n_predictions(fill, 0, 3)), (0, 0));
        assert_eq!((xlmr_fill_mask_n_texts(ptr::null()), xlmr_embeddings_dim(ptr::null()), xlmr_tokens_n_texts(ptr::null())), (0, 0, 0));

        // Handles of the wrong kind, and freed handles, are refused, not dereferenced.
        let mut n = 0usize;
        let mut data = ptr::null();
        invalid(xlmr_embeddings_get(fill.cast(), 0, &mut data, &mut n), "fill-mask result as embeddings");
        invalid(xlmr_embed(fill.cast(), texts.as_ptr(), 1, 1, false, false, &mut emb), "fill-mask result as model");
        xlmr_fill_mask_free(fill);
        invalid(xlmr_fill_mask_get(fill, 0, 0, 0, &mut pred), "freed result");
        xlmr_fill_mask_free(fill); // a second free is reported, not a crash
        assert!(last_error().contains("freed twice"), "{}", last_error());
        xlmr_fill_mask_free(ptr::null_mut());
        let made_up = 0x1234usize as *mut xlmr_model;
        invalid(xlmr_model_get_info(made_up, &mut info), "made-up pointer");

        // A freed model can no longer be used, and its results outlive it.
        assert_eq!(xlmr_embed(model, texts.as_ptr(), 1, 0, true, false, &mut emb), XLMR_STATUS_OK);
        xlmr_model_free(model);
        invalid(xlmr_model_get_info(model, &mut info), "freed model");
        assert_eq!(xlmr_embeddings_get(emb, 0, &mut data, &mut n), XLMR_STATUS_OK);
        let v = std::slice::from_raw_parts(data, n * xlmr_embeddings_dim(emb));
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4, "normalized vector");
        xlmr_embeddings_free(emb);
    }
    // Status names, including for values outside the enum.
    // Safety: xlmr_status_string returns static NUL-terminated strings.
    let name = |s: i32| unsafe { CStr::from_ptr(xlmr_status_string(s)) }.to_str().unwrap();
    assert_eq!(name(XLMR_STATUS_INVALID_ARGUMENT as i32), "XLMR_STATUS_INVALID_ARGUMENT");
    assert_eq!(name(42), "unknown status");
}

#[test]
fn last_error_is_per_thread() {
    let (_owned, texts) = c_texts(&[TEXT]);
    let mut emb = ptr::null_mut();
    // Safety: NULL model on purpose; the other pointers are valid.
    let status = unsafe { xlmr_embed(ptr::null(), texts.as_ptr(), 1, 1, false, false, &mut emb) };
    assert_eq!(status, xlmr_status::XLMR_STATUS_INVALID_ARGUMENT);
    assert!(last_error().contains("model is NULL"));
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread has no error yet");
}

// ---------------------------------------------------------------- fine-tuned heads

fn head_model_path(name: &str) -> PathBuf {
    common::converted(&common::head_model(name), GgmlType::F32)
}

/// examples/heads.c on each head kind agrees with the library (which tests/heads.rs holds
/// against transformers' pipelines), and says UNSUPPORTED for another head's task.
#[test]
fn c_heads_example_matches_the_library() {
    let exe = compile("heads", Link::Static);
    let run_on = |name: &str, args: &[&str]| {
        let path = head_model_path(name);
        let mut all = vec![path.to_str().unwrap().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
        (Model::load(&path).unwrap(), run(&exe, &refs))
    };

    let (lib, out) = run_on("seq-cls", &["How are you?", "Je vais bien, merci."]);
    let want = lib.classify(&[xlmr::TextInput::Pair("How are you?", "Je vais bien, merci.")], &xlmr::ClassifyOptions { top_k: xlmr::TopK::All, ..Default::default() }).unwrap();
    let got = records(&out, "label");
    assert_eq!(got.len(), want[0].len());
    for (g, w) in got.iter().zip(&want[0]) {
        assert_eq!(g[1], w.label);
        assert!((g[2].parse::<f32>().unwrap() - w.score).abs() <= 1e-6);
    }
    assert_eq!(records(&out, "head")[0][1..], ["1", "5"]);
    assert_eq!(records(&out, "error")[0][1], "XLMR_STATUS_UNSUPPORTED");

    let text = "Angela Merkel met Emmanuel Macron in Paris.";
    let (lib, out) = run_on("token-cls", &[text]);
    let want = lib.token_classify(&[text], &Default::default()).unwrap();
    let got = records(&out, "entity");
    assert_eq!(got.len(), want[0].len());
    for (g, w) in got.iter().zip(&want[0]) {
        assert_eq!([g[1], g[3], g[4], g[5]], [w.entity_group.as_deref().unwrap(), &w.start.to_string(), &w.end.to_string(), &w.word]);
    }

    let (question, context) = ("Where did the meeting take place?", "The meeting took place in Geneva on a rainy Tuesday.");
    let (lib, out) = run_on("qa", &[question, context]);
    let want = lib.answer(&[xlmr::QaInput { question, context }], &xlmr::QaOptions { top_k: 2, ..Default::default() }).unwrap();
    let got = records(&out, "answer");
    assert_eq!(got.len(), want[0].len());
    for (g, w) in got.iter().zip(&want[0]) {
        assert_eq!([g[2], g[3], g[4]], [&w.start.to_string(), &w.end.to_string(), &w.answer]);
    }

    let (lib, out) = run_on("multiple-choice", &["The cat sat on the", "mat.", "moon."]);
    let want = lib.multiple_choice(&[xlmr::Choices { prompt: "The cat sat on the", choices: vec!["mat.", "moon."] }], false).unwrap();
    let got = records(&out, "choice");
    for (k, g) in got.iter().enumerate() {
        assert!((g[2].parse::<f32>().unwrap() - want[0].scores[k]).abs() <= 1e-6);
        assert_eq!(g[3], if k == want[0].best { "1" } else { "0" });
    }
}

#[test]
fn c_heads_example_is_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed; skipping");
        return;
    }
    let suppressions = common::root().join("examples/valgrind.supp");
    let exe = compile("heads", Link::Static);
    for (name, args) in [("seq-cls", vec!["Hallo", "Welt"]), ("token-cls", vec!["Angela Merkel"]), ("qa", vec!["Who?", "Marie wrote it."]), ("multiple-choice", vec!["p", "a", "b"])] {
        let path = head_model_path(name);
        let out = Command::new("valgrind")
            .args(["--quiet", "--leak-check=full", "--errors-for-leak-kinds=definite,possible", "--error-exitcode=1"])
            .arg(format!("--suppressions={}", suppressions.display()))
            .arg(&exe)
            .arg(&path)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "valgrind reports problems in heads ({name}):\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn ffi_heads_reject_bad_arguments() {
    use xlmr_status::*;
    let cls = load(&head_model_path("seq-cls"));
    let ner = load(&head_model_path("token-cls"));
    let (_owned, texts) = c_texts(&["Hallo Welt", ""]);
    // Safety (whole block): NULLs, stale handles and bad values on purpose; every non-NULL
    // pointer given is valid.
    unsafe {
        let mut result = ptr::null_mut();
        assert_eq!(xlmr_classify(ptr::null(), texts.as_ptr(), ptr::null(), 1, 1, 0, false, &mut result), XLMR_STATUS_INVALID_ARGUMENT);
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 1, 0, 0, false, &mut result), XLMR_STATUS_INVALID_ARGUMENT);
        assert!(last_error().contains("top_k is 0"), "{}", last_error());
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 1, 1, 9, false, &mut result), XLMR_STATUS_INVALID_ARGUMENT);
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 1, 1, 0, false, ptr::null_mut()), XLMR_STATUS_INVALID_ARGUMENT);
        // An empty second side of a pair, an empty text: input errors.
        let pairs = [texts[0], texts[1]];
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), pairs.as_ptr().add(1), 1, 1, 0, false, &mut result), XLMR_STATUS_INPUT);
        assert!(last_error().contains("text_pair is empty"), "{}", last_error());
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 2, 1, 0, false, &mut result), XLMR_STATUS_INPUT);
        assert!(result.is_null(), "out untouched on failure");
        // Another head's task.
        assert_eq!(xlmr_classify(ner, texts.as_ptr(), ptr::null(), 1, 1, 0, false, &mut result), XLMR_STATUS_UNSUPPORTED);
        assert!(last_error().contains("XLMRobertaXLForSequenceClassification"), "{}", last_error());
        let mut entities = ptr::null_mut();
        assert_eq!(xlmr_token_classify(ner, texts.as_ptr(), 1, 7, ptr::null(), 0, false, &mut entities), XLMR_STATUS_INVALID_ARGUMENT);
        assert_eq!(xlmr_token_classify(cls, texts.as_ptr(), 1, 1, ptr::null(), 0, false, &mut entities), XLMR_STATUS_UNSUPPORTED);
        let mut answers = ptr::null_mut();
        let params = xlmr_qa_default_params();
        assert_eq!(xlmr_answer(cls, texts.as_ptr(), ptr::null(), 1, params, &mut answers), XLMR_STATUS_INVALID_ARGUMENT);
        assert!(last_error().contains("contexts is NULL"), "{}", last_error());
        let (mut scores, mut best) = ([0.0f32; 2], 0usize);
        assert_eq!(xlmr_multiple_choice(cls, texts[0], texts.as_ptr(), 1, false, scores.as_mut_ptr(), &mut best), XLMR_STATUS_UNSUPPORTED);

        // A result: accessors in range, then freed twice and used after free.
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 1, XLMR_TOP_K_ALL, 0, false, &mut result), XLMR_STATUS_OK);
        assert_eq!(xlmr_classify_n_texts(result), 1);
        assert_eq!(xlmr_classify_n_labels(result, 0), 5);
        let mut label = xlmr_label_score { label: ptr::null(), score: 0.0 };
        assert_eq!(xlmr_classify_get(result, 0, 5, &mut label), XLMR_STATUS_INVALID_ARGUMENT);
        assert_eq!(xlmr_classify_get(result, 0, 4, &mut label), XLMR_STATUS_OK);
        xlmr_classify_free(result);
        assert_eq!(xlmr_classify_n_texts(result), 0);
        assert_eq!(xlmr_classify_get(result, 0, 0, &mut label), XLMR_STATUS_INVALID_ARGUMENT);
        xlmr_classify_free(result);
        assert!(last_error().contains("not a live xlmr_classify_result"), "{}", last_error());

        assert_eq!(xlmr_model_head_kind(cls), xlmr_head_kind::XLMR_HEAD_SEQUENCE_CLASSIFICATION as i32);
        assert_eq!(xlmr_model_n_labels(cls), 5);
        let mut buf = [0 as c_char; 4];
        let mut len = 0usize;
        assert_eq!(xlmr_model_label(cls, 4, buf.as_mut_ptr(), buf.len(), &mut len), XLMR_STATUS_OK);
        assert_eq!(len, "другое".len(), "full length even when truncated");
        assert_eq!(xlmr_model_label(cls, 5, buf.as_mut_ptr(), buf.len(), &mut len), XLMR_STATUS_INVALID_ARGUMENT);
        xlmr_model_free(cls);
        assert_eq!(xlmr_model_head_kind(cls), 0);
        assert_eq!(xlmr_classify(cls, texts.as_ptr(), ptr::null(), 1, 1, 0, false, &mut result), XLMR_STATUS_INVALID_ARGUMENT);
        xlmr_model_free(ner);
    }
}
