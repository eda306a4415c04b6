//! A pickle virtual machine that executes nothing. It understands the opcodes that
//! `torch.save` emits (protocol 2, and 3-5 for `pickle_protocol=`), builds plain data
//! (dicts, lists, tuples, strings, numbers) plus descriptions of torch storages and
//! tensors, and rejects every global except OrderedDict, the tensor-rebuild helpers
//! and the storage classes. Everything it keeps is bounded so that a hostile pickle
//! can neither allocate without limit nor loop.

use super::super::source::DType;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// Largest `data.pkl` we accept; XL's is a few hundred KB.
pub(super) const MAX_PICKLE_BYTES: u64 = 64 << 20;
const MAX_STACK: usize = 1 << 20;
/// Nesting depth of MARKs (tuples inside tuples ...).
const MAX_MARKS: usize = 1 << 10;
const MAX_MEMO: usize = 1 << 20;
const MAX_OBJECTS: usize = 1 << 21;
/// Values held inside containers, over all containers.
const MAX_CELLS: usize = 1 << 22;
const MAX_DIMS: usize = 16;
const MAX_GLOBAL_LINE: usize = 256;

/// A torch storage class (`torch.FloatStorage` ...): element size, and our dtype if we
/// can read it as weights.
#[derive(Debug)]
pub(super) struct StorageClass {
    pub name: &'static str,
    pub elem_size: u64,
    pub dtype: Option<DType>,
}

const STORAGE_CLASSES: &[StorageClass] = &[
    StorageClass { name: "FloatStorage", elem_size: 4, dtype: Some(DType::F32) },
    StorageClass { name: "HalfStorage", elem_size: 2, dtype: Some(DType::F16) },
    StorageClass { name: "BFloat16Storage", elem_size: 2, dtype: Some(DType::BF16) },
    StorageClass { name: "DoubleStorage", elem_size: 8, dtype: None },
    StorageClass { name: "LongStorage", elem_size: 8, dtype: None },
    StorageClass { name: "IntStorage", elem_size: 4, dtype: None },
    StorageClass { name: "ShortStorage", elem_size: 2, dtype: None },
    StorageClass { name: "CharStorage", elem_size: 1, dtype: None },
    StorageClass { name: "ByteStorage", elem_size: 1, dtype: None },
    StorageClass { name: "BoolStorage", elem_size: 1, dtype: None },
    StorageClass { name: "ComplexFloatStorage", elem_size: 8, dtype: None },
    StorageClass { name: "ComplexDoubleStorage", elem_size: 16, dtype: None },
];

/// A storage named by a persistent id: `('storage', class, key, location, numel)`.
#[derive(Debug)]
pub(super) struct PickledStorage {
    pub class: &'static StorageClass,
    /// The zip entry `<prefix>/data/<key>` holding its bytes.
    pub key: String,
    pub numel: u64,
}

/// A tensor view: elements `offset + sum(i_k * stride_k)` of a storage.
#[derive(Debug)]
pub(super) struct PickledTensor {
    pub name: String,
    /// Index into `StateDict::storages`.
    pub storage: usize,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

/// What a `torch.save(state_dict)` pickle describes.
#[derive(Debug)]
pub(super) struct StateDict {
    pub storages: Vec<PickledStorage>,
    pub tensors: Vec<PickledTensor>,
}

/// The only callables a pickle may name.
#[derive(Clone, Copy, Debug)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(&'static StorageClass),
}

fn allowed_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", _) => STORAGE_CLASSES.iter().find(|c| c.name == name).map(Global::Storage),
        _ => None,
    }
}

/// A stack or memo entry. Containers live in `Machine::objects` and are referred to by
/// index, so memo references and cycles cost nothing and need no reference counting.
#[derive(Clone, Copy, Debug)]
enum Value {
    None,
    /// Booleans and floats (`requires_grad`, metadata) are never needed, only their kind.
    Bool,
    Int(i64),
    Float,
    Obj(usize),
}

#[derive(Debug)]
enum Object {
    Str(String),
    /// Raw bytes; nothing in a state dict needs their content.
    Bytes,
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered; duplicate keys are caught when the state dict is read out.
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// Index into `Machine::storages`.
    Storage(usize),
    Tensor(TensorView),
}

#[derive(Debug)]
struct TensorView {
    storage: usize,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Str(_) => "str",
            Object::Bytes => "bytes",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Global(_) => "global",
            Object::Storage(_) => "storage",
            Object::Tensor(_) => "tensor",
        }
    }
}

/// Runs the pickle in `data` (the contents of `data.pkl` in `path`) and returns the
/// state dict it describes.
pub(super) fn load_state_dict(data: &[u8], path: &Path) -> Result<StateDict> {
    let mut m = Machine {
        path,
        data,
        pos: 0,
        op_start: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objects: Vec::new(),
        storages: Vec::new(),
        storage_by_key: HashMap::new(),
        cells: 0,
    };
    let top = m.run()?;
    m.state_dict(top)
}

struct Machine<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
    /// Where the opcode being executed starts (for messages).
    op_start: usize,
    stack: Vec<Value>,
    /// Stack heights at each open MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
    storages: Vec<PickledStorage>,
    /// Each storage once, as torch's own loader caches them by key: a memoized persistent
    /// id used many times must not copy its (possibly huge) key each time.
    storage_by_key: HashMap<String, (Value, usize)>,
    cells: usize,
}

impl Machine<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(self.path, format!("data.pkl: {msg} (at byte {})", self.op_start))
    }

    // ---- reading the opcode stream ----

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.data.len() - self.pos {
            return Err(self.err(format!(
                "pickle is truncated: needs {n} more bytes, {} left",
                self.data.len() - self.pos
            )));
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn read<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.read::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.read()?))
    }

    /// A length prefix, checked against the bytes left before anything is allocated.
    fn len_u64(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.read()?);
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(self.err(format!("pickle is truncated: length {n} but only {left} bytes left")));
        }
        Ok(n as usize)
    }

    fn string(&mut self, n: usize) -> Result<String> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.err("string is not valid UTF-8"))
    }

    /// A newline-terminated line of the GLOBAL opcode.
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .take(MAX_GLOBAL_LINE + 1)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("GLOBAL name is unterminated, too long or truncated"))?;
        let line = self.string(end)?;
        self.pos += 1;
        Ok(line)
    }

    // ---- stack, marks, memo, objects ----

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err("pickle stack is too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn new_object(&mut self, o: Object) -> Result<Value> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(self.err("pickle creates too many objects"));
        }
        self.objects.push(o);
        Ok(Value::Obj(self.objects.len() - 1))
    }

    fn push_object(&mut self, o: Object) -> Result<()> {
        let v = self.new_object(o)?;
        self.push(v)
    }

    fn add_cells(&mut self, n: usize) -> Result<()> {
        self.cells += n;
        if self.cells > MAX_CELLS {
            return Err(self.err("pickle containers hold too many values"));
        }
        Ok(())
    }

    /// The bottom of the current frame: values below the innermost MARK are out of reach.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("pickle stack underflow"));
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("pickle stack underflow"));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| self.err("opcode needs a MARK but none is open"))?;
        Ok(self.stack.split_off(mark))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>> {
        if self.stack.len() < self.floor() + n {
            return Err(self.err("pickle stack underflow"));
        }
        Ok(self.stack.split_off(self.stack.len() - n))
    }

    fn memo_put(&mut self, index: u32) -> Result<()> {
        let v = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(self.err("pickle memo is too large"));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<()> {
        let v = *self.memo.get(&index).ok_or_else(|| self.err(format!("memo entry {index} is not defined")))?;
        self.push(v)
    }

    fn object(&self, v: Value) -> Option<&Object> {
        match v {
            Value::Obj(i) => self.objects.get(i),
            _ => None,
        }
    }

    fn describe(&self, v: Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool => "bool",
            Value::Int(_) => "int",
            Value::Float => "float",
            Value::Obj(i) => self.objects[i].kind(),
        }
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match self.object(v) {
            Some(Object::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn tuple_of(&self, v: Value) -> Option<&[Value]> {
        match self.object(v) {
            Some(Object::Tuple(t)) => Some(t),
            _ => None,
        }
    }

    // ---- execution ----

    /// Executes opcodes up to STOP and returns the pickled object.
    fn run(&mut self) -> Result<Value> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let proto = self.u8()?;
                    if !(2..=5).contains(&proto) {
                        return Err(self.err(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: only a buffering hint; check its length and go on.
                    self.len_u64()?;
                }
                b'.' => return self.pop(), // STOP
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return Err(self.err("MARKs nested too deeply"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?; // POP
                }
                b'N' => self.push(Value::None)?,
                0x88 | 0x89 => self.push(Value::Bool)?, // NEWTRUE, NEWFALSE
                b'J' => {
                    let v = i32::from_le_bytes(self.read()?);
                    self.push(Value::Int(v as i64))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.read()?);
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(self.err(format!("integer of {n} bytes is too large")));
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) { [0xff; 8] } else { [0; 8] };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float)?
                }
                b'X' | 0x8c | 0x8d => {
                    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                    let n = match op {
                        b'X' => self.u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let s = self.string(n)?;
                    self.push_object(Object::Str(s))?
                }
                b'C' | b'B' | 0x8e => {
                    // SHORT_BINBYTES, BINBYTES, BINBYTES8
                    let n = match op {
                        b'C' => self.u8()? as usize,
                        b'B' => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    self.take(n)?;
                    self.push_object(Object::Bytes)?
                }
                b'}' => self.push_object(Object::Dict(Vec::new()))?,
                b']' => self.push_object(Object::List(Vec::new()))?,
                b')' => self.push_object(Object::Tuple(Vec::new()))?,
                b't' | 0x85 | 0x86 | 0x87 => {
                    let items = match op {
                        b't' => self.pop_mark()?,
                        _ => self.pop_n((op - 0x84) as usize)?,
                    };
                    self.add_cells(items.len())?;
                    self.push_object(Object::Tuple(items))?
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i as u32)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    // MEMOIZE: the next free index; MAX_MEMO keeps it within u32.
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i as u32)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let (module, name) = (module.to_string(), name.to_string());
                    self.global(&module, &name)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.dict_insert(vec![key, value])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of values"));
                    }
                    self.dict_insert(items)?
                }
                b'a' => {
                    let value = self.pop()?;
                    self.list_extend(vec![value])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.list_extend(items)?
                }
                b'b' => {
                    // BUILD: torch only sets attributes of an OrderedDict (`_metadata`),
                    // which we do not need.
                    let state = self.pop()?;
                    let target = self.top()?;
                    if !matches!(self.object(target), Some(Object::Dict(_))) {
                        return Err(self.err(format!(
                            "BUILD on a {} with a {} state is not supported",
                            self.describe(target),
                            self.describe(state)
                        )));
                    }
                }
                other => {
                    let shown = if other.is_ascii_graphic() { format!(" ('{}')", other as char) } else { String::new() };
                    return Err(self.err(format!("unsupported pickle opcode 0x{other:02x}{shown}")));
                }
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let g = allowed_global(module, name)
            .ok_or_else(|| Error::ForbiddenGlobal { path: self.path.to_path_buf(), global: format!("{module}.{name}") })?;
        self.push_object(Object::Global(g))
    }

    fn dict_insert(&mut self, pairs: Vec<Value>) -> Result<()> {
        self.add_cells(pairs.len())?;
        let target = self.top()?;
        let what = self.describe(target);
        match target {
            Value::Obj(i) => match &mut self.objects[i] {
                Object::Dict(d) => {
                    d.extend(pairs.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                    Ok(())
                }
                _ => Err(self.err(format!("SETITEM on a {what}"))),
            },
            _ => Err(self.err(format!("SETITEM on a {what}"))),
        }
    }

    fn list_extend(&mut self, items: Vec<Value>) -> Result<()> {
        self.add_cells(items.len())?;
        let target = self.top()?;
        let what = self.describe(target);
        match target {
            Value::Obj(i) => match &mut self.objects[i] {
                Object::List(l) => {
                    l.extend(items);
                    Ok(())
                }
                _ => Err(self.err(format!("APPEND on a {what}"))),
            },
            _ => Err(self.err(format!("APPEND on a {what}"))),
        }
    }

    /// REDUCE: calls one of the allowed globals on plain-data arguments.
    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let Some(Object::Global(g)) = self.object(func) else {
            return Err(self.err(format!("REDUCE calls a {}, not an allowed global", self.describe(func))));
        };
        let g = *g;
        let args = self.tuple_of(args).ok_or_else(|| self.err("REDUCE arguments are not a tuple"))?.to_vec();
        match g {
            Global::OrderedDict if args.is_empty() => self.new_object(Object::Dict(Vec::new())),
            Global::OrderedDict => Err(self.err("OrderedDict with constructor arguments is not supported")),
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            Global::RebuildTensorV2 if args.len() == 6 || args.len() == 7 => self.rebuild_tensor(&args[..4]),
            Global::RebuildTensor if args.len() == 4 => self.rebuild_tensor(&args),
            // (data, requires_grad, backward_hooks): the parameter is its data.
            Global::RebuildParameter if args.len() == 3 => match self.object(args[0]) {
                Some(Object::Tensor(_)) => Ok(args[0]),
                _ => Err(self.err("_rebuild_parameter of something that is not a tensor")),
            },
            Global::Storage(c) => Err(self.err(format!("torch.{} cannot be called", c.name))),
            other => Err(self.err(format!("{other:?} called with {} arguments", args.len()))),
        }
    }

    fn index(&self, v: Value, what: &str) -> Result<u64> {
        match v {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            _ => Err(self.err(format!("tensor {what} must be a non-negative integer, found {}", self.describe(v)))),
        }
    }

    fn index_tuple(&self, v: Value, what: &str) -> Result<Vec<u64>> {
        let items = self.tuple_of(v).ok_or_else(|| self.err(format!("tensor {what} is not a tuple")))?;
        if items.len() > MAX_DIMS {
            return Err(self.err(format!("tensor has {} dimensions (at most {MAX_DIMS} supported)", items.len())));
        }
        items.iter().map(|&x| self.index(x, what)).collect()
    }

    fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value> {
        let storage = match self.object(args[0]) {
            Some(Object::Storage(s)) => *s,
            _ => return Err(self.err(format!("tensor rebuilt from a {}, not a storage", self.describe(args[0])))),
        };
        let offset = self.index(args[1], "storage offset")?;
        let shape = self.index_tuple(args[2], "size")?;
        let stride = self.index_tuple(args[3], "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err(format!("tensor size has {} dimensions but stride has {}", shape.len(), stride.len())));
        }
        self.new_object(Object::Tensor(TensorView { storage, offset, shape, stride }))
    }

    /// BINPERSID: `('storage', storage_class, key, location, numel)`.
    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        let bad = || format!("persistent id must be ('storage', class, key, location, numel), found a {}", self.describe(pid));
        let items = self.tuple_of(pid).ok_or_else(|| self.err(bad()))?;
        let [tag, class, key, _location, numel] = items else {
            return Err(self.err(bad()));
        };
        if self.str_of(*tag) != Some("storage") {
            return Err(self.err(bad()));
        }
        let Some(Object::Global(Global::Storage(class))) = self.object(*class) else {
            return Err(self.err("persistent id does not name a torch storage class"));
        };
        let class: &'static StorageClass = class;
        let key = self.str_of(*key).ok_or_else(|| self.err("storage key is not a string"))?;
        let Value::Int(numel) = *numel else {
            return Err(self.err("storage size is not an integer"));
        };
        let numel = u64::try_from(numel).map_err(|_| self.err("storage size is negative"))?;
        if let Some(&(seen, index)) = self.storage_by_key.get(key) {
            let s = &self.storages[index];
            if !std::ptr::eq(s.class, class) || s.numel != numel {
                return Err(self.err(format!(
                    "storage `{key}` is described twice, as {} torch.{} and as {numel} torch.{}",
                    s.numel, s.class.name, class.name
                )));
            }
            return Ok(seen);
        }
        let key = key.to_string();
        let index = self.storages.len();
        self.storages.push(PickledStorage { class, key: key.clone(), numel });
        let value = self.new_object(Object::Storage(index))?;
        self.storage_by_key.insert(key, (value, index));
        Ok(value)
    }

    // ---- reading out the result ----

    fn dict_items(&self, v: Value) -> Option<&[(Value, Value)]> {
        match self.object(v) {
            Some(Object::Dict(d)) => Some(d),
            _ => None,
        }
    }

    fn is_tensor(&self, v: Value) -> bool {
        matches!(self.object(v), Some(Object::Tensor(_)))
    }

    /// The name → tensor map: the top-level dict, or a nested `state_dict` / `model`
    /// dict when the top level holds no tensors (training checkpoints).
    fn state_dict(mut self, top: Value) -> Result<StateDict> {
        let mut dict = self
            .dict_items(top)
            .ok_or_else(|| self.err(format!("the pickle holds a {}, expected a state dict", self.describe(top))))?;
        if !dict.iter().any(|&(_, v)| self.is_tensor(v)) {
            let nested = dict
                .iter()
                .find(|&&(k, v)| matches!(self.str_of(k), Some("state_dict" | "model")) && self.dict_items(v).is_some());
            if let Some(&(_, v)) = nested {
                dict = self.dict_items(v).expect("checked above");
            }
        }
        let mut tensors = Vec::with_capacity(dict.len());
        let mut seen = std::collections::HashSet::new();
        for &(k, v) in dict {
            let name = self.str_of(k).ok_or_else(|| self.err(format!("state dict key is a {}, not a string", self.describe(k))))?;
            let Some(Object::Tensor(t)) = self.object(v) else {
                return Err(self.err(format!("state dict entry `{name}` is a {}, not a tensor", self.describe(v))));
            };
            if !seen.insert(name) {
                return Err(self.err(format!("state dict has two entries named `{name}`")));
            }
            tensors.push(PickledTensor {
                name: name.to_string(),
                storage: t.storage,
                offset: t.offset,
                shape: t.shape.clone(),
                stride: t.stride.clone(),
            });
        }
        Ok(StateDict { storages: std::mem::take(&mut self.storages), tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<StateDict> {
        load_state_dict(bytes, Path::new("t.bin"))
    }

    #[test]
    fn empty_ordered_dict() {
        // PROTO 2, GLOBAL collections OrderedDict, EMPTY_TUPLE, REDUCE, STOP
        let sd = run(b"\x80\x02ccollections\nOrderedDict\n)R.").unwrap();
        assert!(sd.tensors.is_empty());
    }

    #[test]
    fn memo_reference_to_undefined_entry_fails() {
        let e = run(b"\x80\x02h\x05.").unwrap_err().to_string();
        assert!(e.contains("memo entry 5 is not defined"), "{e}");
    }

    #[test]
    fn pop_below_mark_fails() {
        // EMPTY_DICT, MARK, SETITEM: the dict is below the mark, out of reach.
        let e = run(b"\x80\x02}(s.").unwrap_err().to_string();
        assert!(e.contains("underflow"), "{e}");
    }

    #[test]
    fn huge_string_length_fails_without_allocating() {
        let e = run(b"\x80\x02X\xff\xff\xff\xff.").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = run(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff.").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn deep_marks_are_bounded() {
        let mut p = b"\x80\x02".to_vec();
        p.extend(std::iter::repeat(b'(').take(MAX_MARKS + 1));
        let e = run(&p).unwrap_err().to_string();
        assert!(e.contains("nested too deeply"), "{e}");
    }

    #[test]
    fn long1_sign_extends() {
        // Run the bare machine: LONG1 of bytes ff fe is -257.
        let mut m = Machine {
            path: Path::new("t"),
            data: b"\x8a\x02\xff\xfe.",
            pos: 0,
            op_start: 0,
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
            objects: vec![],
            storages: vec![],
            storage_by_key: HashMap::new(),
            cells: 0,
        };
        assert!(matches!(m.run().unwrap(), Value::Int(-257)));
    }

    #[test]
    fn calling_a_storage_class_fails() {
        let e = run(b"\x80\x02ctorch\nFloatStorage\n)R.").unwrap_err().to_string();
        assert!(e.contains("cannot be called"), "{e}");
    }

    #[test]
    fn unknown_torch_name_is_forbidden() {
        let e = run(b"\x80\x02ctorch\nload\n.").unwrap_err();
        assert!(matches!(e, Error::ForbiddenGlobal { ref global, .. } if global == "torch.load"), "{e}");
    }
}
