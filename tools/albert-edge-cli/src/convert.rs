//! `albert-edge convert`: a Hugging Face ALBERT sequence-classification checkpoint to a model blob.
//!
//! Steps: locate the files, parse `config.json`, read the 27 tensors (names with or without the `albert.` prefix),
//! check every shape against the config, quantise each matrix per row (`--weights int8`, the default), build the
//! tokenizer section, serialise, and write the blob atomically (temporary file in the output directory, then a
//! rename): a failed conversion leaves nothing behind.

use std::io::{IsTerminal, Write};
use std::path::Path;

use albert_edge::format::{DType, TensorKind};
use albert_edge::quant::quantize_matrix;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::blob::{write_blob, BlobContents, Payload};
use crate::checkpoint::{read_config, CheckpointDir};
use crate::weights::{TensorF32, WeightsFile};

/// How matrices are stored in the blob (vectors are always `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsMode {
    /// Symmetric int8, one scale per row (what the int8 engine runs).
    Int8,
    /// Unquantised `f32` (host reference, larger).
    Fp32,
}

/// Options of one conversion.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions {
    /// Matrix storage.
    pub weights: WeightsMode,
    /// Draw progress bars on stderr (only when stderr is a terminal).
    pub progress: bool,
}

/// One tensor of the written blob, for the converter's summary.
#[derive(Debug, Clone)]
pub struct TensorSummary {
    /// Which weight.
    pub kind: TensorKind,
    /// Stored dtype.
    pub dtype: DType,
    /// `(dim0, dim1)`.
    pub shape: (usize, usize),
    /// Worst absolute quantisation error (0 for f32).
    pub quant_error: f32,
}

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The weights file that was read.
    pub weights_file: String,
    /// Label names.
    pub labels: Vec<String>,
    /// Per tensor, in table order.
    pub tensors: Vec<TensorSummary>,
    /// Blob size in bytes.
    pub blob_len: usize,
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor names
// ---------------------------------------------------------------------------------------------------------------

const SHARED_LAYER: &str = "encoder.albert_layer_groups.0.albert_layers.0.";

/// The checkpoint name of `kind`: `prefix` (`"albert."` for `AlbertForSequenceClassification`, `""` for
/// `AlbertModel`-style files) + the kind's name with `layer.` spelled out; the classifier never has the prefix.
pub fn hf_name(kind: TensorKind, prefix: &str) -> String {
    let short = kind.name();
    if short.starts_with("classifier.") {
        short.to_string()
    } else if let Some(rest) = short.strip_prefix("layer.") {
        format!("{prefix}{SHARED_LAYER}{rest}")
    } else {
        format!("{prefix}{short}")
    }
}

/// `"albert."` unless the file holds the word embeddings without it.
fn detect_prefix(w: &WeightsFile) -> &'static str {
    let probe = TensorKind::WordEmbeddings.name();
    if !w.contains(&format!("albert.{probe}")) && w.contains(probe) {
        ""
    } else {
        "albert."
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Conversion
// ---------------------------------------------------------------------------------------------------------------

/// The tokenizer section for the blob, built from `spiece.model`.
// TODO(tokenizer): switch to `crate::tokenizer_section`'s builder when it lands; until then the blob carries no
// tokenizer (`classify` then needs `--ids`).
pub fn tokenizer_section_bytes(spiece: &Path) -> Result<Vec<u8>> {
    std::fs::metadata(spiece).with_context(|| format!("cannot read {}", spiece.display()))?;
    Ok(Vec::new())
}

fn progress_bar(len: usize, show: bool, what: &str) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Reads, checks and (optionally) quantises a checkpoint directory into blob contents.
pub fn build_contents(dir: &Path, opts: ConvertOptions) -> Result<(BlobContents, String)> {
    let files = CheckpointDir::locate(dir)?;
    let hf = read_config(&files.config)?;
    let config = hf.config;
    let weights = WeightsFile::open(&files.weights)?;
    let file = weights.file_name();
    let prefix = detect_prefix(&weights);

    if !weights.contains(&hf_name(TensorKind::ClassifierWeight, prefix))
        && weights.contains(&hf_name(TensorKind::WordEmbeddings, prefix))
    {
        bail!("{file} has no tensor `classifier.weight`: the checkpoint has no sequence-classification head (a base AlbertModel or pre-training checkpoint?); fine-tune and save an AlbertForSequenceClassification");
    }

    let reading = progress_bar(TensorKind::ALL.len(), opts.progress, "reading");
    let mut tensors: Vec<(TensorKind, TensorF32)> = Vec::with_capacity(TensorKind::ALL.len());
    for &kind in TensorKind::ALL {
        let name = hf_name(kind, prefix);
        reading.set_message(name.clone());
        let t = weights.read_f32(&name)?;
        let (rows, cols) = kind.expected_shape(&config);
        let expected: Vec<usize> = if kind.is_matrix() {
            vec![rows, cols]
        } else {
            vec![rows]
        };
        if t.shape != expected {
            bail!("{file}: tensor `{name}` has shape {:?}, expected {expected:?} from config.json; do config.json and the weights belong together?", t.shape);
        }
        tensors.push((kind, t));
        reading.inc(1);
    }
    reading.finish_and_clear();

    let quantising = progress_bar(
        tensors.len(),
        opts.progress && opts.weights == WeightsMode::Int8,
        "quantising",
    );
    let payloads = tensors
        .into_iter()
        .map(|(kind, t)| {
            quantising.set_message(kind.name());
            let payload = match opts.weights {
                WeightsMode::Int8 if kind.is_matrix() => {
                    let (rows, cols) = kind.expected_shape(&config);
                    let mut values = vec![0i8; rows * cols];
                    let mut scales = vec![0f32; rows];
                    let quant_error = quantize_matrix(&t.values, cols, &mut values, &mut scales);
                    Payload::I8 {
                        values,
                        scales,
                        quant_error,
                    }
                }
                _ => Payload::F32(t.values),
            };
            quantising.inc(1);
            (kind, payload)
        })
        .collect();
    quantising.finish_and_clear();

    let tokenizer = tokenizer_section_bytes(&files.spiece)?;
    Ok((
        BlobContents {
            config,
            tensors: payloads,
            labels: hf.labels,
            tokenizer,
        },
        file,
    ))
}

/// Converts `dir` to a blob at `out`, atomically.
pub fn convert(dir: &Path, out: &Path, opts: ConvertOptions) -> Result<ConvertReport> {
    let (contents, weights_file) = build_contents(dir, opts)?;
    let bytes = write_blob(&contents)?;
    // Parse what was written with the device's own reader before it reaches the disk.
    albert_edge::Model::from_bytes(crate::blob::AlignedBlob::new(&bytes).bytes())
        .map_err(|e| anyhow::anyhow!("internal error: the written blob does not validate: {e}"))?;
    write_atomically(out, &bytes)?;

    let mut tensors: Vec<TensorSummary> = contents
        .tensors
        .iter()
        .map(|(kind, p)| TensorSummary {
            kind: *kind,
            dtype: p.dtype(),
            shape: kind.expected_shape(&contents.config),
            quant_error: match p {
                Payload::I8 { quant_error, .. } => *quant_error,
                Payload::F32(_) => 0.0,
            },
        })
        .collect();
    tensors.sort_by_key(|t| t.kind.code());
    Ok(ConvertReport {
        weights_file,
        labels: contents.labels,
        tensors,
        blob_len: bytes.len(),
    })
}

/// Writes `bytes` to `out` through a temporary file in the same directory and a rename, so `out` either keeps its
/// old contents or holds the complete new blob; the temporary file is removed on any failure.
pub fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".albert-edge-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "cannot create a temporary file in {} (is it writable?)",
                dir.display()
            )
        })?;
    tmp.write_all(bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    // The temporary file is created 0600; a blob is an ordinary readable output file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", out.display()))?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_name_spells_out_the_shared_layer_and_keeps_classifier_unprefixed() {
        assert_eq!(
            hf_name(TensorKind::QueryWeight, "albert."),
            "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight"
        );
        assert_eq!(hf_name(TensorKind::PoolerBias, ""), "pooler.bias");
        assert_eq!(
            hf_name(TensorKind::ClassifierWeight, "albert."),
            "classifier.weight"
        );
        assert_eq!(
            hf_name(TensorKind::WordEmbeddings, "albert."),
            "albert.embeddings.word_embeddings.weight"
        );
    }
}
