//! Regression tests for the defects of issue #10 (each crafted file is built here by hand),
//! the memory bound of loading, and the replay of every committed fuzz regression input.
//! Memory limits are checked by running the `xlmr` binary under `ulimit -v` (address
//! space), which counts the file's memory map too: limits are "file size + a fixed margin".

mod common;
use common::micro::{Micro, TOKENIZER_VOCAB};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use xlmr::gguf::{GgufFile, MAX_HEADER_MEMORY};
use xlmr::quant::GgmlType;
use xlmr::Model;

const XLMR: &str = env!("CARGO_BIN_EXE_xlmr");

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

/// Runs `xlmr ARGS` with its address space limited to `limit_mib` MiB.
fn xlmr_limited(limit_mib: u64, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {} && exec \"$0\" \"$@\"", limit_mib * 1024))
        .arg(XLMR)
        .args(args)
        .output()
        .unwrap()
}

/// Exit 1 with one `xlmr: error:` line containing `expect` (not a panic, not an abort).
fn assert_clean_error(o: &Output, expect: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, got {:?}: {stderr}", o.status);
    assert!(stderr.starts_with("xlmr: error: ") && stderr.trim_end().lines().count() == 1, "{stderr}");
    assert!(stderr.contains(expect), "expected {expect:?} in {stderr}");
}

/// A GGUF v3 header with no tensors and the given metadata entries, each already encoded
/// as `type id` + value bytes.
fn gguf_header(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (key, value) in entries {
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(value);
    }
    b
}

/// `Array` of `n` elements of type `elem` (element bytes not included).
fn array_prefix(elem: u32, n: u64) -> Vec<u8> {
    let mut v = 9u32.to_le_bytes().to_vec();
    v.extend_from_slice(&elem.to_le_bytes());
    v.extend_from_slice(&n.to_le_bytes());
    v
}

// ---------------------------------------------------------------- 1. metadata memory bomb

/// Address space for `xlmr info` beyond the file itself: the binary, its libraries and
/// stack, plus the decoded-header cap.
const INFO_MARGIN_MIB: u64 = 192 + (MAX_HEADER_MEMORY >> 20) as u64;

#[test]
fn metadata_array_bomb_is_refused_within_the_memory_bound() {
    // 16 MiB of u8 elements: 512 MiB once decoded as values (defect 1: ~550 MB RSS).
    let n = 16u64 << 20;
    let mut bytes = gguf_header(&[("bomb", array_prefix(0, n))]);
    bytes.resize(bytes.len() + n as usize, 7);
    let f = temp_file(&bytes);
    let e = GgufFile::open(f.path()).err().expect("a 16 MiB u8 array decodes past the cap").to_string();
    assert!(e.contains("`bomb`") && e.contains("MiB of memory allowed"), "{e}");
    let o = xlmr_limited(16 + INFO_MARGIN_MIB, &["info", f.path().to_str().unwrap()]);
    assert_clean_error(&o, "MiB of memory allowed");
}

#[test]
fn header_just_under_the_cap_loads_within_the_memory_bound() {
    // An array whose decoded size is just under the cap is read, and `info` stays inside
    // file + fixed margin: the bound holds for accepted files too.
    let n = (MAX_HEADER_MEMORY / 32 - 4096) as u64;
    let mut bytes = gguf_header(&[("big", array_prefix(0, n))]);
    bytes.resize(bytes.len() + n as usize, 1);
    let f = temp_file(&bytes);
    let o = xlmr_limited(2 + INFO_MARGIN_MIB, &["info", f.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("[U8; {n}]")));
}

/// An 8 GiB sparse file (a few KiB on disk): every count it claims fits "the bytes left".
fn sparse_bomb(header: &[u8]) -> tempfile::NamedTempFile {
    let f = temp_file(header);
    f.as_file().set_len(8 << 30).unwrap();
    f
}

#[test]
fn sparse_8gib_bombs_are_errors_not_aborts() {
    let len = 8u64 << 30;
    // One u8 array spanning the file (defect 1: `memory allocation of 274877905376 bytes
    // failed`, SIGABRT), and a metadata count spanning it (a reservation of ~37 GB).
    let array = sparse_bomb(&gguf_header(&[("bomb", array_prefix(0, len - 64))]));
    let mut counts = b"GGUF".to_vec();
    counts.extend_from_slice(&3u32.to_le_bytes());
    counts.extend_from_slice(&0u64.to_le_bytes());
    counts.extend_from_slice(&((len - 64) / 13).to_le_bytes());
    let counts = sparse_bomb(&counts);
    for (f, expect) in [(&array, "MiB of memory allowed"), (&counts, "duplicate metadata key")] {
        let path = f.path().to_str().unwrap();
        assert_clean_error(&xlmr_limited((len >> 20) + INFO_MARGIN_MIB, &["info", path]), expect);
        assert_clean_error(&xlmr_limited((len >> 20) + INFO_MARGIN_MIB, &["run", "-m", path, "--task", "embed", "a"]), expect);
        // Through the C API (the host process must survive): an error status.
        let c_path = std::ffi::CString::new(path).unwrap();
        let mut model = std::ptr::null_mut();
        // Safety: a NUL-terminated path and a writable out pointer.
        let status = unsafe { xlmr::ffi::xlmr_model_load(c_path.as_ptr(), xlmr::ffi::xlmr_model_default_params(), &mut model) };
        assert_eq!(status, xlmr::ffi::xlmr_status::XLMR_STATUS_FORMAT);
        assert!(model.is_null());
    }
}

// ---------------------------------------------------------------- 2. pickle memo reuse

/// A pickle whose one memoized persistent id (with a `key_len`-byte storage key) is used by
/// `uses` tensors.
fn memo_reuse_pickle(key_len: usize, uses: usize) -> Vec<u8> {
    let unicode = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    };
    let mut p = vec![0x80, 2, b'}', b'('];
    for i in 0..uses {
        unicode(&mut p, &format!("t{i}"));
        p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        if i == 0 {
            p.push(b'(');
            unicode(&mut p, "storage");
            p.extend_from_slice(b"ctorch\nFloatStorage\n");
            unicode(&mut p, &"k".repeat(key_len));
            unicode(&mut p, "cpu");
            p.extend_from_slice(&[b'K', 1, b't', b'q', 1]); // numel 1; TUPLE; BINPUT 1
        } else {
            p.extend_from_slice(&[b'h', 1]); // BINGET 1
        }
        // BINPERSID, offset 0, size (1,), stride (1,), requires_grad False, hooks None.
        p.extend_from_slice(&[b'Q', b'K', 0, b'(', b'K', 1, b't', b'(', b'K', 1, b't', 0x89, b'N', b't', b'R']);
    }
    p.extend_from_slice(b"u.");
    p
}

fn write_bin(path: &Path, pickle: &[u8]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/data/0", opts).unwrap();
    zip.write_all(&[0; 4]).unwrap();
    zip.finish().unwrap();
}

/// A model folder for `xlmr convert`: the tiny model's config and tokenizer, and `bin`.
fn model_dir_with_bin(pickle: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json"] {
        std::fs::copy(common::tiny_untied().join(name), dir.path().join(name)).unwrap();
    }
    write_bin(&dir.path().join("pytorch_model.bin"), pickle);
    dir
}

#[test]
fn pickle_persistent_id_reuse_does_not_copy_the_key() {
    // 2,000 uses of an 8 MiB key: 16 GB of copies before the fix (convert aborted).
    let dir = model_dir_with_bin(&memo_reuse_pickle(8 << 20, 2000));
    let out = dir.path().join("out.gguf");
    let o = xlmr_limited(1024, &["convert", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_clean_error(&o, "is missing from the archive");
    // With a key that exists, the reused storage is one storage shared by every tensor.
    let small = tempfile::tempdir().unwrap();
    let bin = small.path().join("pytorch_model.bin");
    let mut pickle = memo_reuse_pickle(1, 300);
    // The key "k" -> "0", the entry written by write_bin.
    let at = pickle.windows(6).position(|w| w == [b'X', 1, 0, 0, 0, b'k']).unwrap();
    pickle[at + 5] = b'0';
    write_bin(&bin, &pickle);
    use xlmr::convert::source::WeightSource;
    let source = xlmr::convert::pickle::TorchBin::open(&bin).unwrap();
    assert_eq!(source.names().len(), 300);
    let (a, b) = (source.get("t0").unwrap().unwrap(), source.get("t299").unwrap().unwrap());
    assert_eq!(a.bytes.as_ptr(), b.bytes.as_ptr());
}

// ---------------------------------------------------------------- 3. ids outside the vocabulary

fn micro_file(m: &Micro) -> tempfile::NamedTempFile {
    temp_file(&m.gguf())
}

#[test]
fn pad_and_mask_ids_outside_the_vocabulary_are_refused_at_load() {
    let ok = micro_file(&Micro::default());
    let model = Model::load(ok.path()).unwrap();
    // Two lengths in one batch: padding is looked up in the embedding.
    model.embed(&["a", "a b c"], xlmr::Pooling::Mean, false, false).unwrap();
    for (m, key) in [
        (Micro { pad_id: TOKENIZER_VOCAB + 3, ..Micro::default() }, "pad_token_id"),
        (Micro { mask_id: TOKENIZER_VOCAB, ..Micro::default() }, "mask_token_id"),
    ] {
        let f = micro_file(&m);
        let e = Model::load(f.path()).err().expect("must be refused at load").to_string();
        assert!(e.contains(key) && e.contains("outside the vocabulary"), "{e}");
        let o = Command::new(XLMR).args(["run", "-m", f.path().to_str().unwrap(), "--task", "embed", "a", "a b c"]).output().unwrap();
        assert_clean_error(&o, key);
    }
}

// ---------------------------------------------------------------- 4. size arithmetic

#[test]
fn tensor_size_overflow_is_refused() {
    assert_eq!(GgmlType::F32.row_bytes(1 << 62), None);
    assert_eq!(GgmlType::Q8_0.row_bytes(usize::MAX / 34 * 32 + 32 * 1024), None);
    // One f32 tensor of 2^62 elements at offset 0: "needs 0 bytes" before the fix.
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&1u64.to_le_bytes());
    b.push(b'w');
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(1u64 << 62).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // f32
    b.extend_from_slice(&0u64.to_le_bytes());
    b.resize(64, 0);
    let f = temp_file(&b);
    let e = GgufFile::open(f.path()).err().expect("overflowing size").to_string();
    assert!(e.contains("`w`") && e.contains("overflow"), "{e}");
    assert_clean_error(&Command::new(XLMR).args(["info", f.path().to_str().unwrap()]).output().unwrap(), "overflow");
}

// ---------------------------------------------------------------- 5. tokenizer settings

/// tokenizer.json `truncation` / `padding` as training scripts save them.
fn with_length_settings(json: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["truncation"] = serde_json::json!({"direction": "Right", "max_length": 6, "strategy": "LongestFirst", "stride": 0});
    v["padding"] = serde_json::json!({"strategy": {"Fixed": 48}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 1, "pad_type_id": 0, "pad_token": "<pad>"});
    v.to_string()
}

#[test]
fn tokenizer_truncation_and_padding_are_ignored_at_load() {
    let clean = Model::load(micro_file(&Micro { max_tokens: 60, ..Micro::default() }).path()).unwrap();
    let json = with_length_settings(&common::micro::tokenizer_json());
    let carried = Model::load(micro_file(&Micro { tokenizer_json: json, max_tokens: 60, ..Micro::default() }).path()).unwrap();
    let texts = ["a b", "a b c a b c a b"];
    let ids = carried.tokenize_all(&texts, false).unwrap();
    assert_eq!(ids, clean.tokenize_all(&texts, false).unwrap());
    assert!(ids[0].len() < 48 && ids[1].len() > 6, "{ids:?}");
    let pooled = |m: &Model| m.embed(&texts, xlmr::Pooling::Mean, false, false).unwrap();
    assert_eq!(pooled(&carried), pooled(&clean));
}

#[test]
fn tokenizer_truncation_and_padding_are_cleared_at_convert() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(common::tiny_untied()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    let tok = dir.path().join("tokenizer.json");
    std::fs::write(&tok, with_length_settings(&std::fs::read_to_string(&tok).unwrap())).unwrap();
    let out = dir.path().join("out.gguf");
    let o = Command::new(XLMR).args(["convert", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "f32"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = GgufFile::open(&out).unwrap();
    let json: serde_json::Value = serde_json::from_str(f.get_str(xlmr::gguf::keys::TOKENIZER_HF_JSON).unwrap()).unwrap();
    assert!(json["truncation"].is_null() && json["padding"].is_null(), "{} / {}", json["truncation"], json["padding"]);
    // And the model runs as the one converted from the clean tokenizer.json.
    let reference = Model::load(common::converted(&common::tiny_untied(), GgmlType::F32)).unwrap();
    let model = Model::load(&out).unwrap();
    let text = ["Hello world, this is a test of a rather long sentence."];
    assert_eq!(model.tokenize_all(&text, false).unwrap(), reference.tokenize_all(&text, false).unwrap());
}

// ---------------------------------------------------------------- 6, 7. CLI output

#[test]
fn stdout_write_errors_are_exit_1_and_broken_pipes_are_quiet() {
    let f = micro_file(&Micro::default());
    let path = f.path().to_str().unwrap();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for args in [vec!["info", path], vec!["info", "--json", path], vec!["run", "-m", path, "--task", "embed", "--json", "a b"]] {
        let o = Command::new(XLMR).args(&args).stdout(full()).output().unwrap();
        assert_clean_error(&o, "<stdout>");
    }
    let o = Command::new(XLMR).arg("--help").stdout(full()).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    // A reader that goes away (`xlmr info f | head -c0`): exit 0, nothing on stderr.
    let mut child = Command::new(XLMR).args(["info", path]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success() && o.stderr.is_empty(), "{:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
}

#[test]
fn info_json_on_a_non_utf8_path() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(std::ffi::OsStr::from_bytes(b"m\xff.gguf"));
    std::fs::write(&path, Micro::default().gguf()).unwrap();
    let o = Command::new(XLMR).arg("info").arg("--json").arg(&path).output().unwrap();
    assert!(o.status.success(), "{:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["file"].as_str().unwrap().ends_with("m\u{fffd}.gguf"), "{}", v["file"]);
}

// ---------------------------------------------------------------- 8. bench on a tiny vocabulary

#[test]
fn bench_on_a_vocabulary_without_ordinary_tokens() {
    let f = micro_file(&Micro { vocab: 5, mask_id: 4, ..Micro::default() });
    let o = Command::new(XLMR).args(["bench", "-m", f.path().to_str().unwrap(), "--tokens", "5", "--runs", "1"]).output().unwrap();
    assert_clean_error(&o, "no ordinary token");
    let f = micro_file(&Micro { vocab: 6, mask_id: 5, ..Micro::default() });
    let o = Command::new(XLMR).args(["bench", "-m", f.path().to_str().unwrap(), "--tokens", "5", "--runs", "1", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

// ---------------------------------------------------------------- 9. converter config arithmetic

#[test]
fn converter_refuses_ids_and_sizes_that_do_not_fit() {
    for (key, value, expect) in [
        ("pad_token_id", serde_json::json!(u64::MAX), "pad_token_id"),
        ("pad_token_id", serde_json::json!(4096), "outside vocab_size"),
        ("vocab_size", serde_json::json!(1u64 << 32), "vocab_size"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.json", "tokenizer.json", "model.safetensors.index.json"] {
            std::fs::copy(common::tiny_untied().join(name), dir.path().join(name)).unwrap();
        }
        let config = dir.path().join("config.json");
        let mut c: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
        c[key] = value;
        std::fs::write(&config, c.to_string()).unwrap();
        for e in std::fs::read_dir(common::tiny_untied()).unwrap() {
            let e = e.unwrap();
            if e.file_name().to_string_lossy().ends_with(".safetensors") {
                std::os::unix::fs::symlink(e.path(), dir.path().join(e.file_name())).unwrap();
            }
        }
        let out = dir.path().join("out.gguf");
        let o = Command::new(XLMR).args(["convert", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()]).output().unwrap();
        assert_clean_error(&o, expect);
        assert!(!out.exists());
    }
}

// ---------------------------------------------------------------- fuzz regressions

fn regressions() -> PathBuf {
    common::root().join("tests/fixtures/fuzz-regressions")
}

/// Every input a fuzz target once crashed on (tests/fixtures/fuzz-regressions/<target>/)
/// goes through the public API of its target again: an error or a result, never a panic.
#[test]
fn committed_fuzz_regressions_replay_without_panics() {
    let mut replayed = 0;
    for target in std::fs::read_dir(regressions()).unwrap() {
        let target = target.unwrap();
        if !target.file_type().unwrap().is_dir() {
            continue;
        }
        for input in std::fs::read_dir(target.path()).unwrap() {
            let input = input.unwrap().path();
            let data = std::fs::read(&input).unwrap();
            let name = target.file_name().to_string_lossy().into_owned();
            let result = std::panic::catch_unwind(|| replay(&name, &data));
            assert!(result.is_ok(), "{} panics again", input.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs found under {}", regressions().display());
}

fn replay(target: &str, data: &[u8]) {
    use xlmr::convert::source::WeightSource;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let read_all = |s: &dyn WeightSource| {
        for name in s.names() {
            if let Ok(Some(t)) = s.get(&name) {
                let mut out = vec![0f32; t.n_elements().min(256)];
                t.read_f32(0, &mut out);
            }
        }
    };
    match target {
        "gguf_model" => {
            if let Ok(m) = Model::load(file("m.gguf")) {
                let _ = m.embed(&["a b", "c"], xlmr::Pooling::Mean, true, false);
            }
        }
        "safetensors" => {
            if let Ok(s) = xlmr::convert::safetensors::SafetensorsSource::open_files(&[file("m.safetensors")]) {
                read_all(&s);
            }
        }
        "pickle_zip" => {
            if let Ok(s) = xlmr::convert::pickle::TorchBin::open(&file("pytorch_model.bin")) {
                read_all(&s);
            }
        }
        "spm_model" => {
            let _ = xlmr::convert::spm::tokenizer_json_from_spm(&file("sentencepiece.bpe.model"));
        }
        "tokenizer_json" => {
            file("tokenizer.json");
            if let Ok(json) = xlmr::convert::load_tokenizer_json(dir.path()) {
                let t = xlmr::tokenizer::Tokenizer::from_json(&json, 16).unwrap();
                let _ = t.encode("a b", true);
            }
            if let Ok(t) = xlmr::tokenizer::Tokenizer::from_json(&String::from_utf8_lossy(data), 16) {
                let _ = t.encode("a b", true);
            }
        }
        other => panic!("no replay for fuzz target `{other}`"),
    }
}

/// A sentencepiece charsmap whose trie length claims more bytes than it holds is refused
/// before the tokenizers crate sees it: that crate reserves memory for the claimed length
/// first (3.2 GB for the committed input found by the fuzzer; up to 8 GiB), which aborts a
/// process under a memory limit. Through the converter's spm reader and through a
/// tokenizer.json (the form a GGUF file embeds), nested in a normalizer Sequence.
#[test]
fn precompiled_charsmap_bomb_is_refused_before_parsing() {
    let bomb = std::fs::read(regressions().join("spm_model/precompiled_trie_size_bomb")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentencepiece.bpe.model");
    std::fs::write(&path, &bomb).unwrap();
    let err = xlmr::convert::spm::tokenizer_json_from_spm(&path).unwrap_err().to_string();
    assert!(err.contains("precompiled_charsmap is malformed: the trie claims"), "{err}");

    use base64::Engine;
    let mut charsmap = (1u32 << 31).to_le_bytes().to_vec();
    charsmap.extend_from_slice(b"abcd");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&charsmap);
    let json = std::fs::read_to_string(common::root().join("fuzz/seeds/tokenizer_json/micro.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": b64}]});
    let err = xlmr::tokenizer::Tokenizer::from_json(&doc.to_string(), 16).err().expect("refused").to_string();
    assert!(err.contains("the trie claims 2147483648 bytes but only 4 follow"), "{err}");
}
