//! A restricted reader of the pickle inside `pytorch_model.bin` (`<archive>/data.pkl`): it accepts exactly what
//! `torch.save(state_dict)` writes and nothing else, and never runs code.
//!
//! A state_dict pickle is a dict (or `collections.OrderedDict`) from names to tensors, each tensor a call
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` whose
//! storage is a persistent id `("storage", torch.FloatStorage, key, location, numel)` naming the archive entry
//! `<archive>/data/<key>`. The machine below knows the opcodes of protocols 2 to 5 that such a file uses; any
//! other opcode, and any import other than the few callables above, is an error naming it. Nothing is imported
//! or called: the "calls" build plain records.
//!
//! Hostile pickles cannot exhaust memory or the stack:
//! - every object created (and every element copied when a shared container is modified) is charged against a
//!   budget proportional to the pickle's length ([`NODES_PER_BYTE`]), so memo "bombs" stop early; memo entries
//!   share their objects (reference counts, copy on write) instead of copying them;
//! - containers nest at most [`MAX_DEPTH`] deep and marks at most [`MAX_MARKS`] deep, so dropping or walking a
//!   value never recurses far;
//! - the memo holds at most [`MAX_MEMO`] entries, whatever index a `LONG_BINPUT` names;
//! - lengths are checked against the bytes left before anything is allocated.
//!
//! Tensor shapes, strides and offsets are only recorded here; `crate::torch_zip` checks them against the size of
//! the storage entry before reading any data.

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use anyhow::{anyhow, bail, Result};

use crate::console::escape_control;

/// Deepest nesting of containers (a state_dict needs 4: dict, call arguments, size tuple).
pub const MAX_DEPTH: usize = 32;
/// Deepest nesting of `MARK`s (a state_dict needs 3).
pub const MAX_MARKS: usize = 32;
/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 16;
/// Objects the machine may create per byte of pickle, plus [`NODES_BASE`]. `torch.save` creates at most one per
/// opcode (each opcode is at least one byte), so this leaves a wide margin.
pub const NODES_PER_BYTE: usize = 4;
/// The fixed part of the object budget.
pub const NODES_BASE: usize = 1 << 12;
/// Highest tensor rank accepted.
pub const MAX_RANK: usize = 8;

// ---------------------------------------------------------------------------------------------------------------
// What a state_dict holds
// ---------------------------------------------------------------------------------------------------------------

/// The element type of a storage, from its class (`torch.FloatStorage` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageType {
    /// `torch.FloatStorage`.
    F32,
    /// `torch.HalfStorage`.
    F16,
    /// `torch.BFloat16Storage`.
    BF16,
    /// Any other `torch.*Storage` (double, integer, bool, complex ...): `(dtype name, bytes per element)`. The
    /// element size is 0 when the class is not one torch defines.
    Other(&'static str, usize),
    /// A `torch.*Storage` class torch does not define.
    Unknown(Rc<str>),
}

impl StorageType {
    /// Maps a `torch` storage class name.
    pub fn from_class(name: &str) -> Self {
        match name {
            "FloatStorage" => StorageType::F32,
            "HalfStorage" => StorageType::F16,
            "BFloat16Storage" => StorageType::BF16,
            "DoubleStorage" => StorageType::Other("F64", 8),
            "LongStorage" => StorageType::Other("I64", 8),
            "IntStorage" => StorageType::Other("I32", 4),
            "ShortStorage" => StorageType::Other("I16", 2),
            "CharStorage" => StorageType::Other("I8", 1),
            "ByteStorage" => StorageType::Other("U8", 1),
            "BoolStorage" => StorageType::Other("BOOL", 1),
            "ComplexFloatStorage" => StorageType::Other("C64", 8),
            "ComplexDoubleStorage" => StorageType::Other("C128", 16),
            other => StorageType::Unknown(other.into()),
        }
    }

    /// Bytes per element (0 for an unknown class).
    pub fn size(&self) -> usize {
        match self {
            StorageType::F32 => 4,
            StorageType::F16 | StorageType::BF16 => 2,
            StorageType::Other(_, size) => *size,
            StorageType::Unknown(_) => 0,
        }
    }
}

impl fmt::Display for StorageType {
    /// The dtype's name as safetensors spells it (`F32`, `BF16`, `I64` ...), or the storage class.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageType::F32 => f.write_str("F32"),
            StorageType::F16 => f.write_str("F16"),
            StorageType::BF16 => f.write_str("BF16"),
            StorageType::Other(name, _) => f.write_str(name),
            StorageType::Unknown(class) => write!(f, "torch.{class}"),
        }
    }
}

/// One tensor of the state_dict as the pickle describes it; nothing here is checked against the archive yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRecord {
    /// Element type.
    pub dtype: StorageType,
    /// The storage's key: its data is the archive entry `<archive>/data/<key>`.
    pub storage_key: String,
    /// Elements the storage declares.
    pub storage_numel: u64,
    /// First element of the view, in elements.
    pub offset: u64,
    /// The view's shape.
    pub shape: Vec<u64>,
    /// The view's strides, in elements.
    pub strides: Vec<u64>,
}

// ---------------------------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------------------------

/// The only callables and classes a state_dict pickle may import.
#[derive(Debug, Clone, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    /// `torch.Tensor`, `torch.nn.parameter.Parameter`: the class argument of `_rebuild_from_type_v2`.
    TensorClass,
    Storage(StorageType),
}

#[derive(Debug, Clone)]
struct Seq {
    items: Vec<Value>,
    depth: usize,
}

#[derive(Debug, Clone)]
struct Map {
    entries: Vec<(Value, Value)>,
    depth: usize,
}

#[derive(Debug, Clone)]
struct Storage {
    dtype: StorageType,
    key: Rc<str>,
    numel: u64,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Str(Rc<str>),
    Tuple(Rc<Seq>),
    List(Rc<Seq>),
    Dict(Rc<Map>),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRecord>),
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(s) | Value::List(s) => s.depth,
            Value::Dict(m) => m.depth,
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool => "a bool",
            Value::Int(_) => "an int",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "an imported callable",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Opcodes
// ---------------------------------------------------------------------------------------------------------------

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const EMPTY_LIST: u8 = b']';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const PROTO: u8 = 0x80;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
}

/// Names of the opcodes this reader refuses, for the error message.
fn refused_name(code: u8) -> &'static str {
    match code {
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'L' => "LONG",
        b'P' => "PERSID",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'g' => "GET",
        b'p' => "PUT",
        b'G' => "BINFLOAT",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        _ => "not a pickle opcode",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------------------------

struct Machine<'a> {
    code: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: BTreeMap<u32, Value>,
    /// Objects that may still be created.
    budget: usize,
}

impl<'a> Machine<'a> {
    fn new(code: &'a [u8]) -> Self {
        Machine {
            code,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: BTreeMap::new(),
            budget: code
                .len()
                .saturating_mul(NODES_PER_BYTE)
                .saturating_add(NODES_BASE),
        }
    }

    fn charge(&mut self, nodes: usize) -> Result<()> {
        self.budget = self.budget.checked_sub(nodes).ok_or_else(|| {
            anyhow!(
                "data.pkl creates more objects than a state_dict of {} bytes can hold (a pickle bomb?)",
                self.code.len()
            )
        })?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.code.len())
            .ok_or_else(|| anyhow!("data.pkl ends in the middle of an opcode (truncated?)"))?;
        let bytes = &self.code[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }

    /// A length prefix, checked against the bytes left before anything is allocated.
    fn length(&mut self, n: u64) -> Result<usize> {
        let left = (self.code.len() - self.pos) as u64;
        if n > left {
            bail!("data.pkl declares a {n}-byte string with {left} bytes left (truncated or crafted?)");
        }
        Ok(n as usize)
    }

    /// A `GLOBAL` argument: a line of at most 256 bytes.
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.code[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| {
                anyhow!("data.pkl has a GLOBAL without a short, newline-terminated name")
            })?;
        let line = std::str::from_utf8(&rest[..n])
            .map_err(|_| anyhow!("data.pkl has a GLOBAL whose name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(line)
    }

    fn string(&mut self, n: usize) -> Result<Value> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| anyhow!("data.pkl holds a string that is not UTF-8"))?;
        self.charge(1 + n / 64)?;
        Ok(Value::Str(s.into()))
    }

    fn push(&mut self, v: Value) -> Result<()> {
        self.charge(1)?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        // Items above the innermost mark belong to it; popping below it would corrupt the mark.
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("data.pkl pops an empty stack (corrupt?)");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("data.pkl uses an empty stack (corrupt?)");
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("data.pkl closes a MARK it never opened (corrupt?)"))?;
        Ok(self.stack.split_off(mark))
    }

    fn seq(items: Vec<Value>) -> Result<Rc<Seq>> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            bail!("data.pkl nests containers more than {MAX_DEPTH} deep; a state_dict needs 4");
        }
        Ok(Rc::new(Seq { items, depth }))
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<()> {
        let t = Value::Tuple(Self::seq(items)?);
        self.push(t)
    }

    /// Appends `items` to the list on top of the stack (copying it first if the memo shares it).
    fn extend_list(&mut self, items: Vec<Value>) -> Result<()> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let copied = match self.top()? {
            Value::List(list) => (Rc::strong_count(list) > 1).then_some(list.items.len()),
            other => bail!("data.pkl appends to {}, not a list", other.kind()),
        };
        self.charge(copied.unwrap_or(0) + items.len())?;
        let Value::List(list) = self.top()? else {
            unreachable!("checked above")
        };
        let list = Rc::make_mut(list);
        list.depth = list.depth.max(depth);
        if list.depth > MAX_DEPTH {
            bail!("data.pkl nests containers more than {MAX_DEPTH} deep; a state_dict needs 4");
        }
        list.items.extend(items);
        Ok(())
    }

    /// Adds key/value pairs to the dict on top of the stack (copying it first if the memo shares it).
    fn extend_dict(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            bail!("data.pkl sets a dict item without a value (corrupt?)");
        }
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        let copied = match self.top()? {
            Value::Dict(map) => (Rc::strong_count(map) > 1).then_some(map.entries.len()),
            other => bail!("data.pkl sets an item of {}, not a dict", other.kind()),
        };
        self.charge(copied.unwrap_or(0) + items.len())?;
        let Value::Dict(map) = self.top()? else {
            unreachable!("checked above")
        };
        let map = Rc::make_mut(map);
        map.depth = map.depth.max(depth);
        if map.depth > MAX_DEPTH {
            bail!("data.pkl nests containers more than {MAX_DEPTH} deep; a state_dict needs 4");
        }
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            map.entries.push((k, v));
        }
        Ok(())
    }

    fn put(&mut self, index: u32) -> Result<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            bail!("data.pkl memoizes more than {MAX_MEMO} objects; a state_dict needs a few per tensor");
        }
        self.charge(1)?;
        self.memo.insert(index, v);
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<()> {
        let v =
            self.memo.get(&index).cloned().ok_or_else(|| {
                anyhow!("data.pkl reads memo entry {index}, which it never wrote")
            })?;
        self.push(v)
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let g = match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
            ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
            ("torch", "Tensor") | ("torch._tensor", "Tensor") | ("torch.nn.parameter", "Parameter") => {
                Global::TensorClass
            }
            ("torch", class) if class.ends_with("Storage") => {
                Global::Storage(StorageType::from_class(class))
            }
            _ => bail!(
                "data.pkl imports `{}.{}`, which a torch.save state_dict does not; refusing to load it",
                escape_control(module),
                escape_control(name)
            ),
        };
        self.push(Value::Global(g))
    }

    /// `BINPERSID`: `("storage", storage class, key, location, numel)`.
    fn persistent_load(pid: Value) -> Result<Value> {
        let bad = || anyhow!("data.pkl has a persistent id that is not a torch storage reference");
        let Value::Tuple(t) = pid else {
            return Err(bad());
        };
        match t.items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**tag == "storage" && *numel >= 0 =>
            {
                if key.is_empty()
                    || key.len() > 64
                    || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    bail!("data.pkl names a storage {key:?}, not an archive key");
                }
                Ok(Value::Storage(Rc::new(Storage {
                    dtype: dtype.clone(),
                    key: key.clone(),
                    numel: *numel as u64,
                })))
            }
            _ => Err(bad()),
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = callable else {
            bail!("data.pkl calls {}, not a callable", callable.kind());
        };
        let Value::Tuple(args) = args else {
            bail!(
                "data.pkl calls with {} as the arguments, not a tuple",
                args.kind()
            );
        };
        let args = args.items.as_slice();
        match (g, args) {
            (Global::OrderedDict, []) => Ok(Value::Dict(Rc::new(Map {
                entries: Vec::new(),
                depth: 1,
            }))),
            (
                Global::RebuildTensorV2,
                [storage, offset, size, stride, _requires_grad, _hooks, ..],
            ) if args.len() <= 7 => rebuild_tensor(storage, offset, size, stride),
            (Global::RebuildParameter, [t @ Value::Tensor(_), _, _])
            | (Global::RebuildParameterWithState, [t @ Value::Tensor(_), _, _, _]) => Ok(t.clone()),
            (
                Global::RebuildFromTypeV2,
                [Value::Global(func), Value::Global(Global::TensorClass), inner, _state],
            ) => self.reduce(Value::Global(func.clone()), inner.clone()),
            (g, _) => bail!(
                "data.pkl calls {g:?} with {} arguments that a torch.save state_dict does not use",
                args.len()
            ),
        }
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let code = self.u8()?;
            match code {
                op::PROTO => {
                    let v = self.u8()?;
                    if v > 5 {
                        bail!("data.pkl is pickle protocol {v}; torch.save writes 2 (up to 5 is read)");
                    }
                }
                op::FRAME => {
                    self.u64()?;
                }
                op::STOP => return self.pop(),
                op::MARK => {
                    if self.marks.len() >= MAX_MARKS {
                        bail!("data.pkl nests MARKs more than {MAX_MARKS} deep; a state_dict needs 3");
                    }
                    self.marks.push(self.stack.len());
                }
                op::EMPTY_DICT => self.push(Value::Dict(Rc::new(Map {
                    entries: Vec::new(),
                    depth: 1,
                })))?,
                op::EMPTY_LIST => self.push(Value::List(Self::seq(Vec::new())?))?,
                op::EMPTY_TUPLE => self.tuple(Vec::new())?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.tuple(items)?;
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    let list = Value::List(Self::seq(items)?);
                    self.push(list)?;
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::new(Map {
                        entries: Vec::new(),
                        depth: 1,
                    })))?;
                    self.extend_dict(items)?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![k, v])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_dict(items)?;
                }
                op::BININT => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                op::BININT2 => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        bail!("data.pkl holds a {n}-byte integer; a state_dict's fit in 8 bytes");
                    }
                    let bytes = self.take(n)?;
                    let mut buf = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                        [0xFF; 8]
                    } else {
                        [0; 8]
                    };
                    buf[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                op::BINUNICODE => {
                    let n = self.u32()?;
                    let n = self.length(u64::from(n))?;
                    let s = self.string(n)?;
                    self.push(s)?;
                }
                op::SHORT_BINUNICODE => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.push(s)?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64()?;
                    let n = self.length(n)?;
                    let s = self.string(n)?;
                    self.push(s)?;
                }
                op::BINPUT => {
                    let i = self.u8()?;
                    self.put(u32::from(i))?;
                }
                op::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.put(i)?;
                }
                op::MEMOIZE => self.put(self.memo.len() as u32)?,
                op::BINGET => {
                    let i = self.u8()?;
                    self.get(u32::from(i))?;
                }
                op::LONG_BINGET => {
                    let i = self.u32()?;
                    self.get(i)?;
                }
                op::NEWTRUE | op::NEWFALSE => self.push(Value::Bool)?,
                op::NONE => self.push(Value::None)?,
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        bail!("data.pkl has a STACK_GLOBAL without a module and a name");
                    };
                    self.global(&module, &name)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.push(v)?;
                }
                op::BUILD => {
                    // The state of an OrderedDict (its `_metadata`) or of a tensor: not needed, dropped.
                    self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::Tensor(_) => {}
                        other => bail!("data.pkl sets the state of {}", other.kind()),
                    }
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let v = Self::persistent_load(pid)?;
                    self.push(v)?;
                }
                other => bail!(
                    "data.pkl has opcode {other:#04x} ({}) at byte {at}, which torch.save does not write for a state_dict",
                    refused_name(other)
                ),
            }
        }
    }
}

fn non_negative(v: &Value, what: &str) -> Result<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        _ => bail!("data.pkl has a tensor whose {what} is not a non-negative integer"),
    }
}

fn dims(v: &Value, what: &str) -> Result<Vec<u64>> {
    let Value::Tuple(t) = v else {
        bail!("data.pkl has a tensor whose {what} is not a tuple");
    };
    if t.items.len() > MAX_RANK {
        bail!(
            "data.pkl has a tensor of rank {}; at most {MAX_RANK} is read",
            t.items.len()
        );
    }
    t.items.iter().map(|d| non_negative(d, what)).collect()
}

fn rebuild_tensor(storage: &Value, offset: &Value, size: &Value, stride: &Value) -> Result<Value> {
    let Value::Storage(s) = storage else {
        bail!(
            "data.pkl rebuilds a tensor from {}, not a storage",
            storage.kind()
        );
    };
    let shape = dims(size, "size")?;
    let strides = dims(stride, "stride")?;
    if shape.len() != strides.len() {
        bail!(
            "data.pkl has a tensor with {} sizes but {} strides",
            shape.len(),
            strides.len()
        );
    }
    Ok(Value::Tensor(Rc::new(TensorRecord {
        dtype: s.dtype.clone(),
        storage_key: s.key.to_string(),
        storage_numel: s.numel,
        offset: non_negative(offset, "storage offset")?,
        shape,
        strides,
    })))
}

/// Runs `data.pkl` and returns the state_dict's tensors by name, in file order. Entries that are not tensors
/// are skipped. Errors say what in the pickle is not a `torch.save` state_dict.
pub fn read_state_dict(pkl: &[u8]) -> Result<Vec<(String, TensorRecord)>> {
    let root = Machine::new(pkl).run()?;
    let Value::Dict(map) = root else {
        bail!(
            "data.pkl holds {}, not a state_dict (a dict of tensors)",
            root.kind()
        );
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut tensors = Vec::new();
    for (k, v) in &map.entries {
        let Value::Tensor(t) = v else { continue };
        let Value::Str(name) = k else {
            bail!("data.pkl has a tensor keyed by {}, not a name", k.kind());
        };
        if !seen.insert(name.clone()) {
            bail!("data.pkl holds tensor `{}` twice", escape_control(name));
        }
        tensors.push((name.to_string(), (**t).clone()));
    }
    Ok(tensors)
}

// ---------------------------------------------------------------------------------------------------------------
// Writing (tests and fuzz seeds)
// ---------------------------------------------------------------------------------------------------------------

/// Writes a protocol-2 state_dict pickle as `torch.save` does (minus the memo): a dict of
/// `_rebuild_tensor_v2` calls on persistent storage ids. For tests and fuzz seeds.
pub fn write_state_dict(tensors: &[(&str, &TensorRecord)]) -> Vec<u8> {
    fn int(out: &mut Vec<u8>, v: u64) {
        match v {
            0..=0xFF => out.extend_from_slice(&[op::BININT1, v as u8]),
            0x100..=0xFFFF => {
                out.push(op::BININT2);
                out.extend_from_slice(&(v as u16).to_le_bytes());
            }
            0x1_0000..=0x7FFF_FFFF => {
                out.push(op::BININT);
                out.extend_from_slice(&(v as u32).to_le_bytes());
            }
            _ => {
                out.extend_from_slice(&[op::LONG1, 8]);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn string(out: &mut Vec<u8>, s: &str) {
        out.push(op::BINUNICODE);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn ints(out: &mut Vec<u8>, vs: &[u64]) {
        out.push(op::MARK);
        vs.iter().for_each(|&v| int(out, v));
        out.push(op::TUPLE);
    }
    let mut out = vec![op::PROTO, 2, op::EMPTY_DICT, op::MARK];
    for (name, t) in tensors {
        string(&mut out, name);
        out.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n");
        out.extend_from_slice(&[op::MARK, op::MARK]);
        string(&mut out, "storage");
        let class = match &t.dtype {
            StorageType::F32 => "FloatStorage".to_string(),
            StorageType::F16 => "HalfStorage".to_string(),
            StorageType::BF16 => "BFloat16Storage".to_string(),
            StorageType::Other("F64", _) => "DoubleStorage".to_string(),
            StorageType::Other("I64", _) => "LongStorage".to_string(),
            StorageType::Other("I32", _) => "IntStorage".to_string(),
            StorageType::Other(other, _) => format!("{other}Storage"),
            StorageType::Unknown(class) => class.to_string(),
        };
        out.extend_from_slice(format!("ctorch\n{class}\n").as_bytes());
        string(&mut out, &t.storage_key);
        string(&mut out, "cpu");
        int(&mut out, t.storage_numel);
        out.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
        int(&mut out, t.offset);
        ints(&mut out, &t.shape);
        ints(&mut out, &t.strides);
        out.push(op::NEWFALSE);
        out.extend_from_slice(b"ccollections\nOrderedDict\n");
        out.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE, op::TUPLE, op::REDUCE]);
    }
    out.extend_from_slice(&[op::SETITEMS, op::STOP]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, shape: &[u64]) -> TensorRecord {
        let mut strides = vec![1u64; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
        TensorRecord {
            dtype: StorageType::F32,
            storage_key: key.into(),
            storage_numel: shape.iter().product(),
            offset: 0,
            shape: shape.to_vec(),
            strides,
        }
    }

    #[test]
    fn read_state_dict_round_trips_the_writer() {
        let (a, b) = (record("0", &[3, 4]), record("1", &[7]));
        let pkl = write_state_dict(&[("a.weight", &a), ("b.bias", &b)]);
        let got = read_state_dict(&pkl).unwrap();
        assert_eq!(got, [("a.weight".into(), a), ("b.bias".into(), b)]);
    }

    fn err(pkl: &[u8]) -> String {
        format!("{:#}", read_state_dict(pkl).unwrap_err())
    }

    #[test]
    fn read_state_dict_refuses_imports_and_opcodes_outside_a_state_dict() {
        assert!(err(b"\x80\x02cos\nsystem\n.").contains("imports `os.system`"));
        assert!(err(b"\x80\x02(S'x'\n.").contains("opcode 0x53 (STRING)"));
        assert!(err(b"\x80\x02K\x01.").contains("holds an int, not a state_dict"));
        assert!(err(b"\x80\x02}").contains("ends in the middle"));
        assert!(err(b"\x80\x02}X\xff\xff\xff\x7f").contains("declares a 2147483647-byte string"));
        assert!(err(b"\x80\x02h\x05.").contains("memo entry 5"));
        assert!(err(b"\x80\x020").contains("(POP)"));
    }

    #[test]
    fn read_state_dict_bounds_nesting_marks_and_memo() {
        let mut deep = vec![op::PROTO, 2];
        deep.extend(std::iter::repeat_n(op::EMPTY_LIST, 100));
        deep.extend(std::iter::repeat_n(op::APPEND, 99));
        deep.push(op::STOP);
        assert!(err(&deep).contains("more than 32 deep"), "{}", err(&deep));

        let marks = [&[op::PROTO, 2][..], &[op::MARK; 100]].concat();
        assert!(err(&marks).contains("MARKs more than 32 deep"));

        let mut memo = vec![op::PROTO, 2, op::NONE];
        for i in 0..=MAX_MEMO as u32 {
            memo.push(op::LONG_BINPUT);
            memo.extend_from_slice(&i.to_le_bytes());
        }
        assert!(err(&memo).contains("memoizes more than"), "{}", err(&memo));
    }

    /// Each round doubles a list through the memo: `[m, m]` then memoized as `m`. Shared, not copied, so the
    /// memory stays linear; 64 rounds would describe 2^64 elements.
    #[test]
    fn read_state_dict_survives_a_memo_bomb_in_linear_memory() {
        let mut bomb = vec![op::PROTO, 2, op::EMPTY_LIST, op::BINPUT, 0];
        for _ in 0..64 {
            bomb.extend_from_slice(&[op::EMPTY_LIST, op::MARK, op::BINGET, 0, op::BINGET, 0]);
            bomb.extend_from_slice(&[op::APPENDS, op::BINPUT, 0]);
        }
        bomb.push(op::STOP);
        // Nesting stops it here (each round nests one level deeper); without the nesting, the budget does.
        assert!(err(&bomb).contains("deep"), "{}", err(&bomb));

        let mut flat = vec![op::PROTO, 2, op::EMPTY_LIST, op::BINPUT, 0];
        for _ in 0..4096 {
            // Append to the memoized list: each append copies it (copy on write), the budget counts the copies.
            flat.extend_from_slice(&[op::BINGET, 0, op::NONE, op::APPEND, op::BINPUT, 0]);
        }
        flat.push(op::STOP);
        assert!(err(&flat).contains("pickle bomb"), "{}", err(&flat));
    }
}
