//! `albert-edge convert`: a Hugging Face ALBERT sequence-classification checkpoint to a model blob.
//!
//! Steps: locate the files, parse `config.json`, read the 27 tensors (names with or without the `albert.` prefix),
//! check every shape against the config, quantise each matrix per row (`--weights int8`, the default), build the
//! tokenizer section, serialise, and write the blob atomically (temporary file in the output directory, then a
//! rename): a failed conversion leaves nothing behind.
//!
//! int8 rounding is calibrated by default ([`Rounding::Gptq`]): the fp32 model runs on calibration sentences
//! (`crate::calibrate`) and every linear layer's weights are rounded with GPTQ against the inputs it saw
//! (`crate::gptq`); embedding tables are rounded to nearest. The blob format and the runtime are the same either
//! way. See `QUANTIZATION.md`.

use std::path::{Path, PathBuf};

use albert_edge::format::{AlignedBlob, DType, TensorKind};
use albert_edge::model::Site;
use albert_edge::quant::quantize_matrix;
use albert_edge::tokenizer::Tokenizer;
use anyhow::{bail, Context, Result};

use crate::blob::{write_blob, BlobContents, Payload, SideColumns};
use crate::calibrate::{self, Statistics};
use crate::checkpoint::{read_config, CheckpointDir, TOKENIZER_CONFIG_FILE};
use crate::common::progress_bar;
use crate::gptq::{quantize_matrix_gptq, quantize_matrix_gptq_free, GptqOptions};
use crate::output::{check_not_an_input, PendingOutput};
use crate::tokenizer_section::{build_from_file, SectionOptions};
use crate::weights::{TensorF32, WeightsFile};

/// How matrices are stored in the blob (vectors are always `f32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightsMode {
    /// Symmetric int8, one scale per row (what the int8 engine runs).
    Int8,
    /// Unquantised `f32` (host reference, larger).
    Fp32,
}

/// How int8 weight matrices are rounded (embedding tables are always rounded to nearest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rounding {
    /// GPTQ error feedback against calibration inputs (the default).
    Gptq,
    /// Plain round-to-nearest, no calibration.
    Nearest,
}

/// Options of one conversion.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Matrix storage.
    pub weights: WeightsMode,
    /// Draw progress bars on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// int8 rounding of the linear layers' weights.
    pub rounding: Rounding,
    /// Calibration sentences for [`Rounding::Gptq`]; `None`: the built-in set.
    pub calibration: Option<PathBuf>,
    /// Most calibration tokens to run (whole sentences, in file order; at least one sentence). `None`: a compute
    /// budget, [`default_calibration_tokens`]; `Some(0)`: every sentence.
    pub calibration_tokens: Option<usize>,
    /// GPTQ's knobs.
    pub gptq: GptqOptions,
    /// Fold each layer's mean rounding error into its bias: `b += (W - Ŵ) E[x]` over the calibration inputs.
    pub bias_correction: bool,
    /// Tokenizer section without the NORMAL pieces' strings (`--compact-tokenizer`): same encoding, smaller blob.
    pub compact_tokenizer: bool,
    /// Outlier channels (side columns): an int8 matrix's input channel whose largest calibrated `|x|` exceeds
    /// this many times the median channel's stays `f32` (`--outlier-ratio`; 0: none). Needs calibration.
    pub outlier_ratio: f32,
    /// Side columns absorb GPTQ's error feedback: they are rounded last, kept `f32`, against the full `XᵀX`
    /// (`--side-feedback`; off: they keep the checkpoint's values and `XᵀX` is decoupled from them).
    pub side_feedback: bool,
}

/// Default [`ConvertOptions::outlier_ratio`]: QUANTIZATION.md section 8.
pub const DEFAULT_OUTLIER_RATIO: f32 = 6.0;

/// Most side columns per matrix: an eighth of its input width, at most 16 (and the format's limit).
pub fn side_column_limit(cols: usize) -> usize {
    (cols / 8)
        .min(16)
        .min(albert_edge::format::MAX_SIDE_COLUMNS)
}

impl Default for ConvertOptions {
    /// int8, GPTQ on the built-in calibration set, no progress bars.
    fn default() -> Self {
        ConvertOptions {
            weights: WeightsMode::Int8,
            progress: false,
            rounding: Rounding::Gptq,
            calibration: None,
            calibration_tokens: None,
            gptq: GptqOptions::default(),
            bias_correction: false,
            compact_tokenizer: false,
            outlier_ratio: DEFAULT_OUTLIER_RATIO,
            side_feedback: true,
        }
    }
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

/// What calibration ran on.
#[derive(Debug, Clone)]
pub struct CalibrationSummary {
    /// Sentences (sequences) run.
    pub sequences: usize,
    /// Tokens in them.
    pub tokens: usize,
    /// Sentences available (more than `sequences` when the token budget cut the set short).
    pub available: usize,
    /// Where they came from: a path, or "built-in".
    pub source: String,
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
    /// The calibration run, if the weights were rounded with GPTQ.
    pub calibration: Option<CalibrationSummary>,
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

/// The tokenizer section for the blob, built from `spiece.model` with the `AlbertTokenizer` options of
/// `tokenizer_config.json` next to it (ALBERT's defaults where it is absent); `compact` leaves out the NORMAL
/// pieces' strings.
pub fn tokenizer_section_bytes(spiece: &Path, compact: bool) -> Result<Vec<u8>> {
    let mut options = match spiece.parent().map(|d| d.join(TOKENIZER_CONFIG_FILE)) {
        Some(path) if path.is_file() => read_tokenizer_options(&path)?,
        _ => SectionOptions::default(),
    };
    options.compact = compact;
    build_from_file(spiece, &options)
}

/// `do_lower_case`, `keep_accents`, `remove_space` and `split_special_tokens` from `tokenizer_config.json`.
pub fn read_tokenizer_options(path: &Path) -> Result<SectionOptions> {
    let text = crate::textfile::read_utf8(path)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let mut o = SectionOptions::default();
    let flag = |key: &str, default: bool| -> Result<bool> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(other) => {
                bail!("{TOKENIZER_CONFIG_FILE} has {key} {other}; expected true or false")
            }
        }
    };
    o.do_lower_case = flag("do_lower_case", o.do_lower_case)?;
    o.keep_accents = flag("keep_accents", o.keep_accents)?;
    o.remove_space = flag("remove_space", o.remove_space)?;
    o.match_special_tokens = !flag("split_special_tokens", !o.match_special_tokens)?;
    Ok(o)
}

/// The linear layer whose input a matrix kind multiplies, and that layer's bias; `None` for embedding tables.
pub fn linear_site(kind: TensorKind) -> Option<(Site, TensorKind)> {
    use TensorKind as K;
    Some(match kind {
        K::EmbeddingHiddenMappingInWeight => (Site::MappingIn, K::EmbeddingHiddenMappingInBias),
        K::QueryWeight => (Site::Query, K::QueryBias),
        K::KeyWeight => (Site::Key, K::KeyBias),
        K::ValueWeight => (Site::Value, K::ValueBias),
        K::AttentionDenseWeight => (Site::Dense, K::AttentionDenseBias),
        K::FfnWeight => (Site::Ffn, K::FfnBias),
        K::FfnOutputWeight => (Site::FfnOutput, K::FfnOutputBias),
        K::PoolerWeight => (Site::Pooler, K::PoolerBias),
        K::ClassifierWeight => (Site::Classifier, K::ClassifierBias),
        _ => return None,
    })
}

/// Forward-pass floating-point operations per calibration token (linear layers only), so the default budget
/// scales with the model.
fn flops_per_token(c: &albert_edge::AlbertConfig) -> f64 {
    let (e, h, i) = (
        c.embedding_size as f64,
        c.hidden_size as f64,
        c.intermediate_size as f64,
    );
    2.0 * (h * e + c.num_hidden_layers as f64 * (4.0 * h * h + 2.0 * h * i))
}

/// The default calibration token budget: as many tokens as 1.2·10¹¹ forward FLOPs buy (the host's f32 reference
/// forward is plain scalar code), at least 512. Small models run the whole built-in set (the fixtures: ~6,500
/// tokens); ALBERT-base gets ~700 tokens (~27 sentences, 8,400 rows per shared-layer H).
pub fn default_calibration_tokens(c: &albert_edge::AlbertConfig) -> usize {
    ((1.2e11 / flops_per_token(c)) as usize).max(512)
}

/// Runs the fp32 model on the calibration sentences and returns every linear layer's input statistics.
fn calibrate(
    tensors: &[(TensorKind, TensorF32)],
    config: &albert_edge::AlbertConfig,
    labels: &[String],
    tokenizer: &[u8],
    opts: &ConvertOptions,
) -> Result<(Statistics, CalibrationSummary)> {
    let (sentences, source) = match &opts.calibration {
        Some(path) => (calibrate::read_sentences(path)?, path.display().to_string()),
        None => (
            calibrate::parse_sentences(calibrate::DEFAULT_SENTENCES, "built-in")?,
            "built-in".to_string(),
        ),
    };
    let mut sequences = calibrate::tokenize(tokenizer, &sentences, config.max_position_embeddings)?;
    let available = sequences.len();
    let budget = match opts.calibration_tokens {
        None => default_calibration_tokens(config),
        Some(0) => usize::MAX,
        Some(n) => n,
    };
    let mut tokens = 0usize;
    let keep = sequences
        .iter()
        .take_while(|s| {
            tokens += s.len();
            tokens <= budget
        })
        .count()
        .max(1);
    sequences.truncate(keep);
    let fp32 = BlobContents {
        config: *config,
        tensors: tensors
            .iter()
            .map(|(k, t)| (*k, Payload::F32(t.values.clone())))
            .collect(),
        labels: labels.to_vec(),
        tokenizer: Vec::new(),
    };
    let blob = AlignedBlob::new(&write_blob(&fp32)?);
    let model = albert_edge::Model::from_bytes(blob.bytes()).map_err(|e| {
        anyhow::anyhow!("internal error: the fp32 calibration blob does not validate: {e}")
    })?;
    let bar = progress_bar(sequences.len(), opts.progress, "calibrating");
    let stats = calibrate::collect(&model, &sequences, &bar)?;
    bar.finish_and_clear();
    let summary = CalibrationSummary {
        sequences: stats.sequences,
        tokens: stats.tokens,
        available,
        source,
    };
    Ok((stats, summary))
}

/// Reads, checks and (optionally) quantises a checkpoint directory into blob contents.
pub fn build_contents(dir: &Path, opts: ConvertOptions) -> Result<(BlobContents, String)> {
    build_contents_calibrated(dir, &opts).map(|(c, f, _)| (c, f))
}

/// [`build_contents`], also returning what calibration ran on (if it ran).
pub fn build_contents_calibrated(
    dir: &Path,
    opts: &ConvertOptions,
) -> Result<(BlobContents, String, Option<CalibrationSummary>)> {
    let files = CheckpointDir::locate(dir)?;
    let hf = read_config(&files.config)?;
    let config = hf.config;
    if !(opts.outlier_ratio >= 0.0 && opts.outlier_ratio.is_finite()) {
        bail!(
            "--outlier-ratio {}: must be a finite number, 0 or more",
            opts.outlier_ratio
        );
    }
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

    let tokenizer = tokenizer_section_bytes(&files.spiece, opts.compact_tokenizer)?;
    let aligned = AlignedBlob::new(&tokenizer);
    let pieces = Tokenizer::from_section(aligned.bytes())
        .map_err(|e| {
            anyhow::anyhow!("internal error: the tokenizer section does not validate: {e}")
        })?
        .vocab_size();
    if pieces > config.vocab_size {
        bail!("spiece.model has {pieces} pieces but config.json has vocab_size {}; is spiece.model the base checkpoint's tokenizer?", config.vocab_size);
    }
    let calibration = if opts.weights == WeightsMode::Int8 && opts.rounding == Rounding::Gptq {
        // Calibration sentences are tokenized with the blob's own tokenizer section, as the device would.
        Some(calibrate(&tensors, &config, &hf.labels, &tokenizer, opts)?)
    } else {
        None
    };

    // Bias corrections, computed from the f32 weights before they are consumed: (kind of the bias, delta).
    let mut bias_deltas: Vec<(TensorKind, Vec<f32>)> = Vec::new();
    let quantising = progress_bar(
        tensors.len(),
        opts.progress && opts.weights == WeightsMode::Int8,
        "quantising",
    );
    let mut payloads: Vec<(TensorKind, Payload)> = tensors
        .into_iter()
        .map(|(kind, t)| {
            quantising.set_message(kind.name());
            let payload = match opts.weights {
                WeightsMode::Int8 if kind.is_matrix() => {
                    let (rows, cols) = kind.expected_shape(&config);
                    let mut values = vec![0i8; rows * cols];
                    let mut scales = vec![0f32; rows];
                    let site = linear_site(kind);
                    let stats = calibration
                        .as_ref()
                        .zip(site)
                        .and_then(|((stats, _), (site, _))| stats.get(site));
                    // The engine's int8 inputs: every linear layer but `mapping_in`, whose input stays f32.
                    let side_cols = match (stats, site) {
                        (Some(s), Some((site, _))) if site != Site::MappingIn => {
                            s.outliers(opts.outlier_ratio, side_column_limit(cols))
                        }
                        _ => Vec::new(),
                    };
                    let (w, mut side, xtx) = split_side(&t.values, cols, &side_cols, stats);
                    let gptq = stats.and_then(|s| {
                        if opts.side_feedback && !side_cols.is_empty() {
                            let mut free = vec![0f32; rows * side_cols.len()];
                            let err = quantize_matrix_gptq_free(
                                &t.values,
                                cols,
                                &s.xtx,
                                &side_cols,
                                &opts.gptq,
                                &mut values,
                                &mut scales,
                                &mut free,
                            )?;
                            side.values = free;
                            Some(err)
                        } else {
                            quantize_matrix_gptq(
                                &w,
                                cols,
                                xtx.as_deref().unwrap_or(&s.xtx),
                                &opts.gptq,
                                &mut values,
                                &mut scales,
                            )
                        }
                    });
                    let quant_error = match gptq {
                        Some(err) => err,
                        None => quantize_matrix(&w, cols, &mut values, &mut scales),
                    };
                    if let (true, Some(s), Some((_, bias))) = (opts.bias_correction, stats, site) {
                        bias_deltas.push((bias, bias_delta(&w, &values, &scales, &s.mean())));
                    }
                    Payload::I8 {
                        values,
                        scales,
                        quant_error,
                        side,
                    }
                }
                _ => Payload::F32(t.values),
            };
            quantising.inc(1);
            (kind, payload)
        })
        .collect();
    quantising.finish_and_clear();
    for (kind, delta) in bias_deltas {
        if let Some((_, Payload::F32(b))) = payloads.iter_mut().find(|(k, _)| *k == kind) {
            b.iter_mut().zip(&delta).for_each(|(b, d)| *b += d);
        }
    }

    Ok((
        BlobContents {
            config,
            tensors: payloads,
            labels: hf.labels,
            tokenizer,
        },
        file,
        calibration.map(|(_, summary)| summary),
    ))
}

/// Moves the columns `side_cols` of `w` (`cols` wide) out of the int8 weights: returns `w` with those columns
/// zeroed, the columns themselves (`f32`, row-major), and, where there are any and `stats` exist, GPTQ's `XᵀX`
/// with those channels decoupled (their rows and columns 0, so no other column's rounding error is pushed onto
/// them or fitted to them).
fn split_side<'w>(
    w: &'w [f32],
    cols: usize,
    side_cols: &[u32],
    stats: Option<&crate::calibrate::SiteStats>,
) -> (std::borrow::Cow<'w, [f32]>, SideColumns, Option<Vec<f64>>) {
    if side_cols.is_empty() || cols == 0 {
        return (std::borrow::Cow::Borrowed(w), SideColumns::default(), None);
    }
    let mut kept = w.to_vec();
    let mut values = Vec::with_capacity(w.len() / cols * side_cols.len());
    for row in kept.chunks_exact_mut(cols) {
        for &c in side_cols {
            values.push(row[c as usize]);
            row[c as usize] = 0.0;
        }
    }
    let xtx = stats.map(|s| {
        let mut h = s.xtx.clone();
        for &c in side_cols {
            let c = c as usize;
            for j in 0..cols {
                h[c * cols + j] = 0.0;
                h[j * cols + c] = 0.0;
            }
        }
        h
    });
    let side = SideColumns {
        cols: side_cols.to_vec(),
        values,
    };
    (std::borrow::Cow::Owned(kept), side, xtx)
}

/// `(W - Ŵ) μ` per row: the mean output error that bias correction removes.
fn bias_delta(w: &[f32], q: &[i8], scales: &[f32], mean: &[f64]) -> Vec<f32> {
    let cols = mean.len().max(1);
    w.chunks_exact(cols)
        .zip(q.chunks_exact(cols))
        .zip(scales)
        .map(|((w, q), &s)| {
            w.iter()
                .zip(q)
                .zip(mean)
                .map(|((&w, &q), &m)| (w as f64 - q as f64 * s as f64) * m)
                .sum::<f64>() as f32
        })
        .collect()
}

/// Converts `dir` to a blob at `out`, atomically.
///
/// Everything about the output is checked before the conversion runs: its directory exists and is writable (the
/// temporary file is made there first), it is not a directory or a device, and it is none of the files the
/// conversion reads.
pub fn convert(dir: &Path, out: &Path, opts: ConvertOptions) -> Result<ConvertReport> {
    let pending = PendingOutput::create(out)?;
    let files = CheckpointDir::locate(dir)?;
    let tokenizer_config = dir.join(TOKENIZER_CONFIG_FILE);
    let mut inputs: Vec<(&Path, &str)> = vec![
        (&files.config, "the checkpoint's config.json"),
        (&files.weights, "the checkpoint's weights file"),
        (&files.spiece, "the checkpoint's spiece.model"),
        (&tokenizer_config, "the checkpoint's tokenizer_config.json"),
    ];
    if let Some(calibration) = &opts.calibration {
        inputs.push((calibration, "the calibration file"));
    }
    check_not_an_input(out, &inputs)?;
    let (contents, weights_file, calibration) = build_contents_calibrated(dir, &opts)?;
    let bytes = write_blob(&contents)?;
    // Parse what was written with the device's own reader before it reaches the disk.
    albert_edge::Model::from_bytes(albert_edge::format::AlignedBlob::new(&bytes).bytes())
        .map_err(|e| anyhow::anyhow!("internal error: the written blob does not validate: {e}"))?;
    pending.commit(&bytes)?;

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
        calibration,
    })
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
