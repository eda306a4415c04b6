//! The packed-weights cache (`XLMR_PACK_CACHE`, `LoadOptions::pack_cache`): written by the
//! first load, mapped by the next ones with bit-identical outputs, and a stale, damaged or
//! unwritable cache never fails a load or gets used.

mod common;

use std::path::{Path, PathBuf};
use xlmr::model::{LoadOptions, Model, Pooling};
use xlmr::quant::GgmlType;

const TEXTS: [&str; 3] = ["Hello world!", "Ein kurzer Satz auf Deutsch.", "x"];

fn load(model: &Path, cache: Option<&Path>) -> Model {
    Model::load_with(model, &LoadOptions { pack_cache: cache.map(Path::to_path_buf) }).expect("load")
}

fn outputs(m: &Model) -> Vec<Vec<Vec<f32>>> {
    m.embed(&TEXTS, Pooling::None, false, false).expect("embed")
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map_or_else(|_| Vec::new(), |d| d.map(|e| e.unwrap().path()).collect());
    v.sort();
    v
}

/// A private copy of the converted tiny model, so that tests may touch its modification time.
fn model_copy(dir: &Path, ty: GgmlType) -> PathBuf {
    let path = dir.join(format!("tiny-{}.gguf", ty.name()));
    std::fs::copy(common::converted(&common::tiny(), ty), &path).unwrap();
    path
}

/// The outputs of `model` packed at load without a cache; `None` (with a message) where
/// this CPU has no packed GEMM kernel, so there is nothing to cache.
fn packed_outputs(model: &Path) -> Option<Vec<Vec<Vec<f32>>>> {
    let plain = load(model, None);
    if !plain.is_packed() {
        eprintln!("SKIPPED: no packed GEMM kernel on this CPU, so nothing to cache");
    }
    plain.is_packed().then(|| outputs(&plain))
}

#[test]
fn cache_is_written_once_then_mapped_with_identical_outputs() {
    for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4K] {
        let tmp = tempfile::tempdir().unwrap();
        let model = model_copy(tmp.path(), ty);
        let cache = tmp.path().join("cache");
        let Some(want) = packed_outputs(&model) else { return };

        let first = load(&model, Some(&cache));
        assert!(first.is_packed() && !first.is_packed_from_cache(), "{ty}: the first load packs");
        let files = cache_files(&cache);
        assert_eq!(files.len(), 1, "{ty}: one cache file, no temporary left: {files:?}");
        assert_eq!(outputs(&first), want, "{ty}: packing with a cache dir");

        let second = load(&model, Some(&cache));
        assert!(second.is_packed_from_cache(), "{ty}: the second load maps the cache");
        assert_eq!(outputs(&second), want, "{ty}: outputs from the mapped cache");
        assert_eq!(cache_files(&cache), files, "{ty}: nothing rewritten");
    }
}

#[test]
fn damaged_or_stale_cache_is_replaced_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_copy(tmp.path(), GgmlType::Q8_0);
    let cache = tmp.path().join("cache");
    let Some(want) = packed_outputs(&model) else { return };
    drop(load(&model, Some(&cache)));
    let [file] = cache_files(&cache).try_into().expect("one cache file");
    let good = std::fs::read(&file).unwrap();

    let damages: [(&str, Box<dyn Fn(&mut Vec<u8>)>); 4] = [
        ("bad magic", Box::new(|f| f[0] ^= 1)),
        ("other key", Box::new(|f| f[16] ^= 1)),
        ("a matrix's length", Box::new(|f| f[32 + 32] ^= 1)),
        ("truncated", Box::new(|f| f.truncate(f.len() - 1))),
    ];
    for (what, damage) in damages {
        let mut bytes = good.clone();
        damage(&mut bytes);
        std::fs::write(&file, &bytes).unwrap();
        let m = load(&model, Some(&cache));
        assert!(m.is_packed() && !m.is_packed_from_cache(), "{what}: the damaged cache must not be used");
        assert_eq!(outputs(&m), want, "{what}");
        assert_eq!(std::fs::read(&file).unwrap(), good, "{what}: the cache file is written again");
        assert!(load(&model, Some(&cache)).is_packed_from_cache(), "{what}: then used");
    }

    // A model file that changed (here only its modification time) gets a new cache file,
    // which replaces the old one; another model's cache file in the same directory stays,
    // also when that model's file has the same name (in another directory).
    std::fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    let other = tmp.path().join("elsewhere").join(model.file_name().unwrap());
    std::fs::copy(&model, &other).unwrap();
    drop(load(&other, Some(&cache)));
    assert_eq!(cache_files(&cache).len(), 2, "one cache file per model");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&model).unwrap().set_modified(later).unwrap();
    let m = load(&model, Some(&cache));
    assert!(!m.is_packed_from_cache(), "a changed model must not use the old cache");
    let files = cache_files(&cache);
    assert_eq!(files.len(), 2, "the old cache file of the changed model is removed: {files:?}");
    assert!(!files.contains(&file), "the old cache file of the changed model is removed");
    assert!(load(&model, Some(&cache)).is_packed_from_cache());
    assert!(load(&other, Some(&cache)).is_packed_from_cache(), "the other model's cache stays");
}

#[test]
fn unwritable_cache_dir_does_not_fail_the_load() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_copy(tmp.path(), GgmlType::Q4_0);
    // A regular file where the directory should be: neither created nor written.
    let not_a_dir = tmp.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let m = load(&model, Some(&not_a_dir));
    assert!(!m.is_packed_from_cache());
    assert_eq!(outputs(&m), outputs(&load(&model, None)));
    assert_eq!(std::fs::read(&not_a_dir).unwrap(), b"x");
}
