//! GGUF reader/writer: round trips, an independent reader (gguf-rs), and one hand-built
//! corrupt header per known bug class of GGUF parsers (DESIGN.md §4).

use std::io::Write;
use xlmr::gguf::{GgufFile, GgufWriter, Value, ValueType};
use xlmr::quant::{quantize_row, GgmlType};

fn write_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bytes).unwrap();
    f.flush().unwrap();
    f
}

/// A small valid file: a few typed keys and two tensors (one f32, one q8_0).
fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::String("xlm-roberta-xl".into()));
    w.add("general.alignment", Value::U32(32));
    w.add("a.u8", Value::U8(7));
    w.add("a.i64", Value::I64(-5));
    w.add("a.f64", Value::F64(0.25));
    w.add("a.bool", Value::Bool(true));
    w.add("a.arr", Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)]));
    w.add("a.strs", Value::Array(ValueType::String, vec![Value::String("x".into()), Value::String("ÿ".into())]));
    let a = w.add_tensor("a.weight", &[3], GgmlType::F32);
    let b = w.add_tensor("b.weight", &[64, 2], GgmlType::Q8_0);
    let mut out = Vec::new();
    w.write_header(&mut out).unwrap();
    let mut bytes = Vec::new();
    quantize_row(GgmlType::F32, &[1.0, 2.0, 3.0], &mut bytes);
    w.write_tensor(&mut out, a, &bytes).unwrap();
    bytes.clear();
    let row: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).sin()).collect();
    quantize_row(GgmlType::Q8_0, &row, &mut bytes);
    w.write_tensor(&mut out, b, &bytes).unwrap();
    w.finish().unwrap();
    out
}

#[test]
fn round_trip_keeps_types_and_data() {
    let f = write_file(&sample());
    let g = GgufFile::open(f.path()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.get("a.u8"), Some(&Value::U8(7)));
    assert_eq!(g.get("a.i64"), Some(&Value::I64(-5)));
    assert_eq!(g.get("a.f64"), Some(&Value::F64(0.25)));
    assert_eq!(g.get("a.bool"), Some(&Value::Bool(true)));
    assert_eq!(g.get("a.arr"), Some(&Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(-2)])));
    assert_eq!(g.get_u32("general.alignment").unwrap(), 32);
    assert!(g.get_u32("a.i64").is_err(), "a wrong key type must be refused");
    let a = g.tensor("a.weight").unwrap();
    assert_eq!(xlmr::quant::f32_from_bytes(g.tensor_data(a)).unwrap(), &[1.0, 2.0, 3.0]);
    let b = g.tensor("b.weight").unwrap();
    assert_eq!((b.ty, b.shape(), b.size, b.offset % 32), (GgmlType::Q8_0, vec![2, 64], 2 * 2 * 34, 0));
}

#[test]
fn independent_reader_agrees() {
    let f = write_file(&sample());
    let mut c = gguf_rs::get_gguf_container(f.path().to_str().unwrap()).unwrap();
    let m = c.decode().unwrap();
    let ours = GgufFile::open(f.path()).unwrap();
    assert_eq!(m.num_tensor() as usize, ours.tensors.len());
    assert_eq!(m.num_kv() as usize, ours.metadata.len());
    for (t, o) in m.tensors().iter().zip(&ours.tensors) {
        assert_eq!(t.name, o.name);
        assert_eq!(t.kind, o.ty as u32);
        assert_eq!(t.offset as usize, o.offset);
        assert_eq!(t.size as usize, o.size);
        assert_eq!(t.shape.iter().map(|&d| d as usize).collect::<Vec<_>>(), o.dims);
    }
}

/// Builds a header by hand, field by field, so each test can break exactly one thing.
#[derive(Default)]
struct Raw(Vec<u8>);
impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s);
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    /// Tensor info entry.
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        let pad = (32 - self.0.len() % 32) % 32;
        self.0.extend(std::iter::repeat_n(0u8, pad + n));
        self
    }
}

fn open_err(bytes: &[u8]) -> String {
    let f = write_file(bytes);
    match GgufFile::open(f.path()) {
        Ok(_) => panic!("corrupt file was accepted"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error must be one line: {msg}");
            assert!(msg.contains(f.path().to_str().unwrap()), "error must name the file: {msg}");
            msg
        }
    }
}

#[test]
fn bad_magic_and_version() {
    assert!(open_err(b"GGML\x03\0\0\0").contains("not a GGUF file"));
    assert!(open_err(b"GG").contains("not a GGUF file"));
    let r = Raw::header(4, 0, 0);
    assert!(open_err(&r.0).contains("version 4"));
}

#[test]
fn counts_larger_than_the_file() {
    assert!(open_err(&Raw::header(3, 0, u64::MAX).0).contains("more than the file can hold"));
    assert!(open_err(&Raw::header(3, 1 << 40, 0).0).contains("more than the file can hold"));
}

#[test]
fn string_length_past_end() {
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX / 2).u32(0).data(64);
    assert!(open_err(&r.0).contains("past the end"));
}

#[test]
fn invalid_utf8_key() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"\xff\xfe").u32(4).u32(1);
    assert!(open_err(&r.0).contains("UTF-8"));
}

#[test]
fn array_count_past_end() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"tokenizer.ggml.tokens").u32(9).u32(8).u64(1 << 50);
    assert!(open_err(&r.0).contains("past the end"));
}

#[test]
fn nested_array_and_unknown_value_type() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(9).u32(9).u64(1);
    assert!(open_err(&r.0).contains("nested arrays"));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(13).u32(0);
    assert!(open_err(&r.0).contains("unknown value type 13"));
}

#[test]
fn duplicate_key() {
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a", 1).kv_u32("a", 2);
    assert!(open_err(&r.0).contains("duplicate metadata key `a`"));
}

#[test]
fn alignment_not_power_of_two_or_wrong_type() {
    let mut r = Raw::header(3, 0, 1);
    r.kv_u32("general.alignment", 24);
    assert!(open_err(&r.0).contains("not a power of two"));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(8).str(b"32");
    assert!(open_err(&r.0).contains("expected U32"));
}

#[test]
fn too_many_dims_and_zero_dim() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0).data(4);
    assert!(open_err(&r.0).contains("5 dimensions"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4, 0], 0, 0).data(4);
    assert!(open_err(&r.0).contains("zero dimension"));
}

#[test]
fn dimension_product_overflow() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[1 << 32, 1 << 32, 1 << 8], 0, 0).data(4);
    assert!(open_err(&r.0).contains("overflow"));
}

#[test]
fn rows_that_do_not_fit_blocks_and_unknown_type() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[33], 8, 0).data(64);
    assert!(open_err(&r.0).contains("do not fit q8_0"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[32], 6, 0).data(64);
    assert!(open_err(&r.0).contains("type id 6"));
}

#[test]
fn tensor_past_end_of_file() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[16], 0, 0).data(60);
    assert!(open_err(&r.0).contains("runs past the end of the file"));
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[16], 0, u64::MAX - 31).data(64);
    assert!(open_err(&r.0).contains("too large") || open_err(&r.0).contains("past the end"));
}

#[test]
fn misaligned_offset() {
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[4], 0, 8).data(64);
    assert!(open_err(&r.0).contains("not a multiple of the alignment"));
}

#[test]
fn overlapping_tensors_and_duplicate_names() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32).data(96);
    assert!(open_err(&r.0).contains("overlap"));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0).tensor("a", &[8], 0, 32).data(64);
    assert!(open_err(&r.0).contains("duplicate tensor name `a`"));
}

#[test]
fn valid_hand_built_file_is_accepted() {
    // Guards the corrupt-file tests: the same builder with nothing broken must load.
    let mut r = Raw::header(3, 2, 1);
    r.kv_u32("general.alignment", 32).tensor("a", &[8], 0, 0).tensor("b", &[8], 0, 32).data(64);
    let f = write_file(&r.0);
    let g = GgufFile::open(f.path()).unwrap();
    assert_eq!(g.tensors.len(), 2);
}

#[test]
fn truncated_everywhere_never_panics() {
    let full = sample();
    // The last tensor (136 bytes of q8_0) is followed by 24 bytes of alignment padding;
    // cutting only padding leaves a complete file. Every other cut must be refused.
    let needed = full.len() - 24;
    for cut in (0..needed).step_by(7).chain([needed - 1]) {
        let f = write_file(&full[..cut]);
        assert!(GgufFile::open(f.path()).is_err(), "truncated at {cut} was accepted");
    }
}
