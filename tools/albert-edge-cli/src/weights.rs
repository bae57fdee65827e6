//! Reading tensors from a checkpoint's weights file as `f32`: `model.safetensors` (F32, F16, BF16) or
//! `pytorch_model.bin` (torch's zip + pickle format, read with candle's pickle reader).
//!
//! F16 and BF16 widen to `f32` exactly, so the same values stored in any of the three dtypes, in either file
//! format, give the same `f32` bits and therefore the same blob.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::pickle::PthTensors;
use safetensors::{Dtype, SafeTensors};

/// A tensor widened to `f32`: its checkpoint shape and its row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    /// The shape as stored (`[n]` for a vector, `[rows, cols]` for a matrix).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub values: Vec<f32>,
}

enum Source {
    SafeTensors(Vec<u8>),
    Torch(PthTensors),
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
        let file = file_name(path);
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let (names, source) = if is_safetensors {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let names = SafeTensors::deserialize(&bytes)
                .map_err(|e| {
                    anyhow!("{file} is not a valid safetensors file (truncated or corrupt?): {e}")
                })?
                .names()
                .into_iter()
                .map(str::to_string)
                .collect();
            (names, Source::SafeTensors(bytes))
        } else {
            let pth = PthTensors::new(path, None).map_err(|e| {
                anyhow!("{file} is not a readable PyTorch checkpoint (expects the zip format of torch.save, torch >= 1.6; truncated or corrupt?): {}", one_line(&e))
            })?;
            let names = pth.tensor_infos().keys().cloned().collect();
            (names, Source::Torch(pth))
        };
        Ok(WeightsFile {
            path: path.to_path_buf(),
            names,
            source,
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

    /// Reads tensor `name` as `f32`. A dtype other than F32, F16 or BF16 is an error naming the tensor.
    pub fn read_f32(&self, name: &str) -> Result<TensorF32> {
        let file = self.file_name();
        if !self.contains(name) {
            bail!("{file} has no tensor `{name}`; is this an ALBERT checkpoint?");
        }
        match &self.source {
            Source::SafeTensors(bytes) => {
                let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{file}: {e}"))?;
                let view = st
                    .tensor(name)
                    .map_err(|e| anyhow!("{file}: tensor `{name}`: {e}"))?;
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
                    other => bail!(unsupported_dtype(&file, name, &format!("{other:?}"))),
                };
                Ok(TensorF32 {
                    shape: view.shape().to_vec(),
                    values,
                })
            }
            Source::Torch(pth) => {
                use candle_core::DType;
                let info = &pth.tensor_infos()[name];
                if !matches!(info.dtype, DType::F32 | DType::F16 | DType::BF16) {
                    bail!(unsupported_dtype(&file, name, &format!("{:?}", info.dtype)));
                }
                let read = || -> candle_core::Result<TensorF32> {
                    let t = pth
                        .get(name)?
                        .ok_or_else(|| candle_core::Error::Msg("tensor vanished".into()))?;
                    let shape = t.dims().to_vec();
                    // Strided views (transposes, slices of a shared storage) are gathered row-major here.
                    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                    Ok(TensorF32 { shape, values })
                };
                read().map_err(|e| anyhow!("{file}: cannot read tensor `{name}`: {}", one_line(&e)))
            }
        }
    }
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

/// candle's errors may carry a multi-line context or backtrace; keep the first line.
fn one_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
