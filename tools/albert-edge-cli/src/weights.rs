//! Reading tensors from a checkpoint's weights file as `f32`: `model.safetensors` (F32, F16, BF16) or
//! `pytorch_model.bin` (torch's zip + pickle format, read by the restricted reader in `crate::torch_zip` and
//! `crate::torch_pickle`, which runs no pickle code and checks every view against its storage).
//!
//! F16 and BF16 widen to `f32` exactly, so the same values stored in any of the three dtypes, in either file
//! format, give the same `f32` bits and therefore the same blob. A tensor holding a NaN or an infinity is refused,
//! naming it: nothing downstream (quantisation, calibration, the blob) has a meaning for it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};

use crate::console::escape_control;
use crate::torch_pickle::StorageType;
use crate::torch_zip::TorchArchive;

/// A tensor widened to `f32`: its checkpoint shape and its row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    /// The shape as stored (`[n]` for a vector, `[rows, cols]` for a matrix).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub values: Vec<f32>,
}

/// What the torch reader reads from: the file, or bytes in memory.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

enum Source {
    SafeTensors(Vec<u8>),
    Torch(RefCell<TorchArchive<Box<dyn ReadSeek>>>),
}

/// An opened weights file.
pub struct WeightsFile {
    path: PathBuf,
    names: BTreeSet<String>,
    source: Source,
}

impl WeightsFile {
    /// Opens `path`, reading the tensor index (and for safetensors the whole file, validated).
    pub fn open(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Self::from_bytes(path, bytes)
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Self::torch(path, Box::new(BufReader::new(file)))
        }
    }

    /// Reads a weights file held in memory; `path` names it and picks the format by its extension
    /// (`.safetensors`, else torch's zip format).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        if path.extension().is_none_or(|e| e != "safetensors") {
            return Self::torch(path, Box::new(Cursor::new(bytes)));
        }
        let names = SafeTensors::deserialize(&bytes)
            .map_err(|e| {
                anyhow!(
                    "{} is not a valid safetensors file (truncated or corrupt?): {}",
                    file_name(path),
                    escape_control(&e.to_string())
                )
            })?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        Ok(WeightsFile {
            path: path.to_path_buf(),
            names,
            source: Source::SafeTensors(bytes),
        })
    }

    fn torch(path: &Path, reader: Box<dyn ReadSeek>) -> Result<Self> {
        let archive = TorchArchive::new(reader).map_err(|e| {
            anyhow!("{} is not a readable PyTorch checkpoint (expects the zip format of torch.save, torch >= 1.6; truncated or corrupt?): {e:#}", file_name(path))
        })?;
        Ok(WeightsFile {
            path: path.to_path_buf(),
            names: archive.tensors().keys().cloned().collect(),
            source: Source::Torch(RefCell::new(archive)),
        })
    }

    /// The file's name (`model.safetensors`), for messages.
    pub fn file_name(&self) -> String {
        file_name(&self.path)
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Reads tensor `name` as `f32`. A dtype other than F32, F16 or BF16, or a NaN or infinite value, is an error
    /// naming the tensor.
    pub fn read_f32(&self, name: &str) -> Result<TensorF32> {
        let file = self.file_name();
        let shown = escape_control(name);
        if !self.contains(name) {
            bail!("{file} has no tensor `{shown}`; is this an ALBERT checkpoint?");
        }
        let t = match &self.source {
            Source::SafeTensors(bytes) => {
                let st = SafeTensors::deserialize(bytes)
                    .map_err(|e| anyhow!("{file}: {}", escape_control(&e.to_string())))?;
                let view = st.tensor(name).map_err(|e| {
                    anyhow!(
                        "{file}: tensor `{shown}`: {}",
                        escape_control(&e.to_string())
                    )
                })?;
                let data = view.data();
                let values = match view.dtype() {
                    Dtype::F32 => data
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    Dtype::F16 => data
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    Dtype::BF16 => data
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    other => bail!(unsupported_dtype(&file, &shown, &format!("{other:?}"))),
                };
                TensorF32 {
                    shape: view.shape().to_vec(),
                    values,
                }
            }
            Source::Torch(archive) => {
                let mut archive = archive.borrow_mut();
                let dtype = &archive.tensors()[name].dtype;
                if !matches!(
                    dtype,
                    StorageType::F32 | StorageType::F16 | StorageType::BF16
                ) {
                    bail!(unsupported_dtype(
                        &file,
                        &shown,
                        &escape_control(&dtype.to_string())
                    ));
                }
                let (shape, values) = archive
                    .read_f32(name)
                    .map_err(|e| anyhow!("{file}: cannot read tensor `{shown}`: {e:#}"))?;
                TensorF32 { shape, values }
            }
        };
        check_finite(&file, &shown, &t)?;
        Ok(t)
    }
}

/// Refuses a tensor holding NaN or an infinity, naming it, its first such value and where it is.
fn check_finite(file: &str, name: &str, t: &TensorF32) -> Result<()> {
    let Some(first) = t.values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let count = t.values.iter().filter(|v| !v.is_finite()).count();
    let cols = t.shape.get(1).copied().unwrap_or(1).max(1);
    let at = match t.shape.len() {
        2 => format!("[{}, {}]", first / cols, first % cols),
        _ => format!("[{first}]"),
    };
    bail!(
        "{file}: tensor `{name}` holds {count} non-finite value{} (the first, {}, at {at}); albert-edge converts finite weights only: is the checkpoint damaged, or did training diverge?",
        if count == 1 { "" } else { "s" },
        t.values[first]
    )
}

fn unsupported_dtype(file: &str, name: &str, dtype: &str) -> String {
    format!("{file}: tensor `{name}` has dtype {dtype}; albert-edge converts F32, F16 and BF16 weights only")
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    )
}
