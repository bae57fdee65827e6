//! The model blob, format v1: parsed and validated once, then used in place (zero-copy).
//!
//! The byte layout is specified in `FORMAT.md` at the repository root; this module is its reader and
//! `tools/albert-edge-cli/src/blob.rs` its writer. All integers are little-endian. Tensor data sits at
//! 16-byte aligned offsets so a blob placed at a 16-byte aligned address (flash, `include_bytes!` in an aligned
//! wrapper, an aligned heap buffer) is used without copying.

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::config::{Activation, AlbertConfig, MAX_LABELS};
use crate::error::Error;
use crate::tokenizer::Tokenizer;

// ---------------------------------------------------------------------------------------------------------------
// Layout constants
// ---------------------------------------------------------------------------------------------------------------

/// First eight bytes of every blob.
pub const MAGIC: [u8; 8] = *b"ALBEDGE\0";
pub use crate::error::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
/// Most side (outlier) columns one int8 matrix may carry.
pub const MAX_SIDE_COLUMNS: usize = 64;
/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 128;
/// Bytes in one tensor-table entry.
pub const TENSOR_ENTRY_LEN: usize = 48;
/// Alignment of every section and every tensor's data, in bytes.
pub const ALIGN: usize = 16;
/// The CRC-32 covers `bytes[CRC_START..file_len]`: everything after the magic, version and CRC fields.
pub const CRC_START: usize = 16;

/// Byte offsets of the header fields (see `FORMAT.md`).
pub mod header {
    /// `[u8; 8]` magic.
    pub const MAGIC: usize = 0;
    /// `u32` format version.
    pub const VERSION: usize = 8;
    /// `u32` CRC-32 (IEEE 802.3, as zlib) of `bytes[16..file_len]`.
    pub const CRC32: usize = 12;
    /// `u32` total blob length in bytes.
    pub const FILE_LEN: usize = 16;
    /// `u32` header length (128 in v1).
    pub const HEADER_LEN: usize = 20;
    /// `u32` vocabulary size.
    pub const VOCAB_SIZE: usize = 24;
    /// `u32` embedding size E.
    pub const EMBEDDING_SIZE: usize = 28;
    /// `u32` hidden size H.
    pub const HIDDEN_SIZE: usize = 32;
    /// `u32` attention heads.
    pub const NUM_ATTENTION_HEADS: usize = 36;
    /// `u32` feed-forward width.
    pub const INTERMEDIATE_SIZE: usize = 40;
    /// `u32` applications of the shared layer.
    pub const NUM_HIDDEN_LAYERS: usize = 44;
    /// `u32` position-embedding rows.
    pub const MAX_POSITION_EMBEDDINGS: usize = 48;
    /// `u32` token-type rows.
    pub const TYPE_VOCAB_SIZE: usize = 52;
    /// `f32` LayerNorm epsilon.
    pub const LAYER_NORM_EPS: usize = 56;
    /// `u32` activation code (0 gelu, 1 gelu_new, 2 relu).
    pub const HIDDEN_ACT: usize = 60;
    /// `u32` classifier outputs.
    pub const NUM_LABELS: usize = 64;
    /// `u32` entries in the tensor table.
    pub const TENSOR_COUNT: usize = 68;
    /// `u32` offset of the tensor table.
    pub const TENSOR_TABLE_OFFSET: usize = 72;
    /// `u32` offset of the label-names section.
    pub const LABELS_OFFSET: usize = 76;
    /// `u32` length of the label-names section.
    pub const LABELS_LEN: usize = 80;
    /// `u32` offset of the tokenizer section (0 with length 0: no tokenizer).
    pub const TOKENIZER_OFFSET: usize = 84;
    /// `u32` length of the tokenizer section.
    pub const TOKENIZER_LEN: usize = 88;
    /// `u32` flags, reserved (0 in v1).
    pub const FLAGS: usize = 92;
    /// `u32` v1 only: the activation block width of contract 1's int8 engine (ignored: contract 2 has one scale
    /// per token row); reserved, 0, in v2.
    pub const ACTIVATION_BLOCK: usize = 96;
}

/// Byte offsets inside one tensor-table entry.
pub mod entry {
    /// `u16` [`super::TensorKind`] code.
    pub const KIND: usize = 0;
    /// `u8` [`super::DType`] code.
    pub const DTYPE: usize = 2;
    /// `u8` rank, 1 or 2.
    pub const RANK: usize = 3;
    /// `u32` first dimension (rows; output channels of a weight matrix).
    pub const DIM0: usize = 4;
    /// `u32` second dimension (columns; 1 for rank 1).
    pub const DIM1: usize = 8;
    /// `u32` offset of the data, a multiple of 16.
    pub const DATA_OFFSET: usize = 12;
    /// `u32` length of the data in bytes.
    pub const DATA_LEN: usize = 16;
    /// `u32` offset of the per-row `f32` scales (int8 only, else 0), a multiple of 16.
    pub const SCALES_OFFSET: usize = 20;
    /// `u32` number of scales (= dim0 for int8, else 0).
    pub const SCALES_LEN: usize = 24;
    /// `f32` worst absolute quantisation error over the tensor (0 for fp32), informational.
    pub const QUANT_ERROR: usize = 28;
    /// `u32` (v2) offset of the int8 matrix's side columns, a multiple of 16 (0 with no side columns).
    pub const SIDE_OFFSET: usize = 32;
    /// `u32` (v2) number of side columns `k`, at most [`super::MAX_SIDE_COLUMNS`] and at most dim1.
    pub const SIDE_COUNT: usize = 36;
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor kinds and dtypes
// ---------------------------------------------------------------------------------------------------------------

/// Element type of a tensor in the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// IEEE-754 binary32.
    F32,
    /// Symmetric int8 with one `f32` scale per row: `value = q * scale[row]`.
    I8,
}

impl DType {
    /// Code stored in the tensor table.
    pub const fn code(self) -> u8 {
        match self {
            DType::F32 => 0,
            DType::I8 => 1,
        }
    }

    /// Decodes a tensor-table code.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DType::F32),
            1 => Some(DType::I8),
            _ => None,
        }
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I8 => 1,
        }
    }
}

macro_rules! tensor_kinds {
    ($( $variant:ident = $code:literal, $name:literal, $matrix:literal; )*) => {
        /// Which weight a tensor-table entry holds. Names follow the Hugging Face checkpoint (without the
        /// `albert.` prefix; the shared layer's `encoder.albert_layer_groups.0.albert_layers.0.` is shortened to
        /// `layer.`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum TensorKind {
            $(
                #[doc = $name]
                $variant,
            )*
        }

        impl TensorKind {
            /// Every kind, in table order.
            pub const ALL: &'static [TensorKind] = &[$(TensorKind::$variant),*];

            /// Code stored in the tensor table.
            pub const fn code(self) -> u16 {
                match self { $(TensorKind::$variant => $code),* }
            }

            /// Decodes a tensor-table code.
            pub const fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(TensorKind::$variant),)* _ => None }
            }

            /// The checkpoint-style name.
            pub const fn name(self) -> &'static str {
                match self { $(TensorKind::$variant => $name),* }
            }

            /// Whether this is a weight matrix (may be int8); otherwise an `f32` vector.
            pub const fn is_matrix(self) -> bool {
                match self { $(TensorKind::$variant => $matrix),* }
            }
        }
    };
}

tensor_kinds! {
    WordEmbeddings = 1, "embeddings.word_embeddings.weight", true;
    PositionEmbeddings = 2, "embeddings.position_embeddings.weight", true;
    TokenTypeEmbeddings = 3, "embeddings.token_type_embeddings.weight", true;
    EmbeddingsLayerNormWeight = 4, "embeddings.LayerNorm.weight", false;
    EmbeddingsLayerNormBias = 5, "embeddings.LayerNorm.bias", false;
    EmbeddingHiddenMappingInWeight = 6, "encoder.embedding_hidden_mapping_in.weight", true;
    EmbeddingHiddenMappingInBias = 7, "encoder.embedding_hidden_mapping_in.bias", false;
    QueryWeight = 8, "layer.attention.query.weight", true;
    QueryBias = 9, "layer.attention.query.bias", false;
    KeyWeight = 10, "layer.attention.key.weight", true;
    KeyBias = 11, "layer.attention.key.bias", false;
    ValueWeight = 12, "layer.attention.value.weight", true;
    ValueBias = 13, "layer.attention.value.bias", false;
    AttentionDenseWeight = 14, "layer.attention.dense.weight", true;
    AttentionDenseBias = 15, "layer.attention.dense.bias", false;
    AttentionLayerNormWeight = 16, "layer.attention.LayerNorm.weight", false;
    AttentionLayerNormBias = 17, "layer.attention.LayerNorm.bias", false;
    FfnWeight = 18, "layer.ffn.weight", true;
    FfnBias = 19, "layer.ffn.bias", false;
    FfnOutputWeight = 20, "layer.ffn_output.weight", true;
    FfnOutputBias = 21, "layer.ffn_output.bias", false;
    FullLayerLayerNormWeight = 22, "layer.full_layer_layer_norm.weight", false;
    FullLayerLayerNormBias = 23, "layer.full_layer_layer_norm.bias", false;
    PoolerWeight = 24, "pooler.weight", true;
    PoolerBias = 25, "pooler.bias", false;
    ClassifierWeight = 26, "classifier.weight", true;
    ClassifierBias = 27, "classifier.bias", false;
}

impl TensorKind {
    /// The shape this kind must have under `config`: `(dim0, dim1)`, `dim1 = 1` for vectors.
    pub const fn expected_shape(self, c: &AlbertConfig) -> (usize, usize) {
        use TensorKind::*;
        let (e, h, i, l) = (
            c.embedding_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_labels,
        );
        match self {
            WordEmbeddings => (c.vocab_size, e),
            PositionEmbeddings => (c.max_position_embeddings, e),
            TokenTypeEmbeddings => (c.type_vocab_size, e),
            EmbeddingsLayerNormWeight | EmbeddingsLayerNormBias => (e, 1),
            EmbeddingHiddenMappingInWeight => (h, e),
            QueryWeight | KeyWeight | ValueWeight | AttentionDenseWeight | PoolerWeight => (h, h),
            FfnWeight => (i, h),
            FfnBias => (i, 1),
            FfnOutputWeight => (h, i),
            ClassifierWeight => (l, h),
            ClassifierBias => (l, 1),
            EmbeddingHiddenMappingInBias
            | QueryBias
            | KeyBias
            | ValueBias
            | AttentionDenseBias
            | AttentionLayerNormWeight
            | AttentionLayerNormBias
            | FfnOutputBias
            | FullLayerLayerNormWeight
            | FullLayerLayerNormBias
            | PoolerBias => (h, 1),
        }
    }

    const fn slot(self) -> usize {
        self.code() as usize - 1
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Borrowed tensors
// ---------------------------------------------------------------------------------------------------------------

/// The elements of a weight matrix, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub enum MatrixData<'a> {
    /// Row-major `f32`.
    F32(&'a [f32]),
    /// Row-major int8 with one scale per row: `w[r][c] = values[r * cols + c] as f32 * scales[r]`.
    I8 {
        /// `rows * cols` quantised values.
        values: &'a [i8],
        /// `rows` positive, finite scales.
        scales: &'a [f32],
    },
}

/// An int8 matrix's side columns: input channels kept out of the int8 arithmetic (outlier channels found at
/// calibration). Their int8 values are 0 and their weights are here in `f32`: `w[r][cols[j]] = values[r * k + j]`.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// The `k` column indices, strictly increasing, each below the matrix's `cols`.
    pub cols: &'a [u32],
    /// `rows * k` finite weights, row-major.
    pub values: &'a [f32],
}

impl Side<'_> {
    /// No side columns.
    pub const NONE: Side<'static> = Side {
        cols: &[],
        values: &[],
    };

    /// `sum_j values[r * k + j] * x[cols[j]]` from 0.0, `j` in order: row `r`'s side contribution for the input
    /// row `x` (0.0 without side columns).
    #[inline]
    pub fn dot(&self, r: usize, x: &[f32]) -> f32 {
        let k = self.cols.len();
        let w = self.values.get(r * k..(r + 1) * k).unwrap_or(&[]);
        w.iter().zip(self.cols).fold(0.0f32, |acc, (&w, &c)| {
            acc + w * x.get(c as usize).copied().unwrap_or(0.0)
        })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }
}

/// A row-major weight matrix `(rows, cols)` borrowed from the blob; for a linear layer, rows are output channels.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    /// Rows (output channels; vocabulary entries for an embedding table).
    pub rows: usize,
    /// Columns (input features; embedding width for a table).
    pub cols: usize,
    /// The elements; the lengths are validated against `rows` and `cols`.
    pub data: MatrixData<'a>,
    /// Side columns (int8 only; empty for f32 matrices and v1 blobs).
    pub side: Side<'a>,
}

impl<'a> Matrix<'a> {
    /// Writes row `r` as `f32` into `out[..cols]` (dequantising int8). Out-of-range `r` writes zeros.
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let start = r * self.cols;
        match self.data {
            MatrixData::F32(d) => match d.get(start..start + self.cols) {
                Some(row) => out.iter_mut().zip(row).for_each(|(o, &v)| *o = v),
                None => out.iter_mut().for_each(|o| *o = 0.0),
            },
            MatrixData::I8 { values, scales } => {
                match (values.get(start..start + self.cols), scales.get(r)) {
                    (Some(row), Some(&s)) => out
                        .iter_mut()
                        .zip(row)
                        .for_each(|(o, &q)| *o = q as f32 * s),
                    _ => out.iter_mut().for_each(|o| *o = 0.0),
                }
            }
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self.data {
            MatrixData::F32(_) => DType::F32,
            MatrixData::I8 { .. } => DType::I8,
        }
    }
}

/// One tensor-table entry after validation.
#[derive(Debug, Clone, Copy)]
pub struct TensorInfo {
    /// Which weight it is.
    pub kind: TensorKind,
    /// Element type.
    pub dtype: DType,
    /// `(dim0, dim1)`.
    pub shape: (usize, usize),
    /// Offset of the data in the blob.
    pub offset: usize,
    /// Bytes of data.
    pub len: usize,
    /// Offset of the per-row scales in the blob (0 for fp32).
    pub scales_offset: usize,
    /// Bytes of per-row scales (0 for fp32).
    pub scales_len: usize,
    /// Worst absolute quantisation error recorded by the converter (0 for fp32).
    pub quant_error: f32,
    /// Offset of the side columns in the blob (0 without).
    pub side_offset: usize,
    /// Number of side columns.
    pub side_count: usize,
}

/// Every weight of the model, borrowed from the blob. The shared transformer layer appears once.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)] // field names are the checkpoint's; shapes in comments
pub struct Weights<'a> {
    pub word_embeddings: Matrix<'a>,       // (vocab, E)
    pub position_embeddings: Matrix<'a>,   // (max_positions, E)
    pub token_type_embeddings: Matrix<'a>, // (type_vocab, E)
    pub embeddings_ln_weight: &'a [f32],   // (E)
    pub embeddings_ln_bias: &'a [f32],     // (E)
    pub mapping_in_weight: Matrix<'a>,     // (H, E)
    pub mapping_in_bias: &'a [f32],        // (H)
    pub layer: LayerWeights<'a>,           // the ONE shared layer
    pub pooler_weight: Matrix<'a>,         // (H, H)
    pub pooler_bias: &'a [f32],            // (H)
    pub classifier_weight: Matrix<'a>,     // (labels, H)
    pub classifier_bias: &'a [f32],        // (labels)
}

/// The shared transformer layer's weights (stored once, applied `num_hidden_layers` times).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct LayerWeights<'a> {
    pub query_weight: Matrix<'a>,           // (H, H)
    pub query_bias: &'a [f32],              // (H)
    pub key_weight: Matrix<'a>,             // (H, H)
    pub key_bias: &'a [f32],                // (H)
    pub value_weight: Matrix<'a>,           // (H, H)
    pub value_bias: &'a [f32],              // (H)
    pub attention_dense_weight: Matrix<'a>, // (H, H)
    pub attention_dense_bias: &'a [f32],    // (H)
    pub attention_ln_weight: &'a [f32],     // (H)
    pub attention_ln_bias: &'a [f32],       // (H)
    pub ffn_weight: Matrix<'a>,             // (I, H)
    pub ffn_bias: &'a [f32],                // (I)
    pub ffn_output_weight: Matrix<'a>,      // (H, I)
    pub ffn_output_bias: &'a [f32],         // (H)
    pub full_ln_weight: &'a [f32],          // (H)
    pub full_ln_bias: &'a [f32],            // (H)
}

// ---------------------------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------------------------

const KIND_COUNT: usize = TensorKind::ALL.len();

/// A validated model blob. Construction checks everything once; afterwards accessors cannot fail or panic.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    bytes: &'a [u8],
    config: AlbertConfig,
    version: u32,
    weights: Weights<'a>,
    infos: [Option<TensorInfo>; KIND_COUNT],
    labels: &'a [u8],
    tokenizer_section: &'a [u8],
    tokenizer: Option<Tokenizer<'a>>,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    LE::read_u32(&bytes[at..at + 4])
}

fn section<'a>(
    bytes: &'a [u8],
    offset: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if !offset.is_multiple_of(ALIGN) || offset < HEADER_LEN {
        return Err(Error::BadTensor(what));
    }
    let end = offset.checked_add(len).ok_or(Error::BadTensor(what))?;
    bytes.get(offset..end).ok_or(Error::BadTensor(what))
}

impl<'a> Model<'a> {
    /// Parses and validates a blob: magic, version, length, alignment, CRC-32, config, tensor table (kinds,
    /// dtypes, shapes against the config, offsets, alignment, scale values, every `f32` value finite), label
    /// names and the tokenizer section. Bytes after the blob's recorded length are ignored (a flash partition
    /// may be larger).
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        if bytes[..8] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = read_u32(bytes, header::VERSION);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion(version));
        }
        let file_len = read_u32(bytes, header::FILE_LEN) as usize;
        if file_len < HEADER_LEN {
            return Err(Error::BadConfig("file_len is smaller than the header"));
        }
        if bytes.len() < file_len {
            return Err(Error::Truncated {
                needed: file_len,
                got: bytes.len(),
            });
        }
        let bytes = &bytes[..file_len];
        if !(bytes.as_ptr() as usize).is_multiple_of(4) {
            return Err(Error::MisalignedBlob);
        }
        let stored = read_u32(bytes, header::CRC32);
        let computed = crc32(&bytes[CRC_START..]);
        if stored != computed {
            return Err(Error::ChecksumMismatch { stored, computed });
        }
        if read_u32(bytes, header::HEADER_LEN) as usize != HEADER_LEN {
            return Err(Error::BadConfig("header_len must be 128"));
        }
        if read_u32(bytes, header::FLAGS) != 0 {
            return Err(Error::BadConfig("unknown header flags"));
        }

        let u = |at| read_u32(bytes, at) as usize;
        let config = AlbertConfig {
            vocab_size: u(header::VOCAB_SIZE),
            embedding_size: u(header::EMBEDDING_SIZE),
            hidden_size: u(header::HIDDEN_SIZE),
            num_attention_heads: u(header::NUM_ATTENTION_HEADS),
            intermediate_size: u(header::INTERMEDIATE_SIZE),
            num_hidden_layers: u(header::NUM_HIDDEN_LAYERS),
            max_position_embeddings: u(header::MAX_POSITION_EMBEDDINGS),
            type_vocab_size: u(header::TYPE_VOCAB_SIZE),
            layer_norm_eps: LE::read_f32(
                &bytes[header::LAYER_NORM_EPS..header::LAYER_NORM_EPS + 4],
            ),
            hidden_act: Activation::from_code(read_u32(bytes, header::HIDDEN_ACT))
                .ok_or(Error::BadConfig("unknown hidden_act code"))?,
            num_labels: u(header::NUM_LABELS),
        };
        config.validate()?;
        // v1's activation block belongs to contract 1's engine and is not used; in v2 the field is reserved.
        if version >= 2 && u(header::ACTIVATION_BLOCK) != 0 {
            return Err(Error::BadConfig(
                "reserved header field 96 must be 0 in format v2",
            ));
        }

        let infos = parse_table(bytes, &config, version)?;
        let weights = build_weights(bytes, &infos)?;
        check_shared_input_sides(&weights)?;

        let labels = section(
            bytes,
            u(header::LABELS_OFFSET),
            u(header::LABELS_LEN),
            "label section out of range",
        )?;
        validate_labels(labels, config.num_labels)?;
        let tokenizer_section = section(
            bytes,
            u(header::TOKENIZER_OFFSET),
            u(header::TOKENIZER_LEN),
            "tokenizer section out of range",
        )?;
        let tokenizer = if tokenizer_section.is_empty() {
            None
        } else {
            let t = Tokenizer::from_section(tokenizer_section)?;
            if t.vocab_size() > config.vocab_size {
                return Err(Error::BadTokenizer(
                    "more pieces than the model's vocab_size",
                ));
            }
            Some(t)
        };

        Ok(Model {
            bytes,
            config,
            version,
            weights,
            infos,
            labels,
            tokenizer_section,
            tokenizer,
        })
    }

    /// The blob's format version: 1 (numeric contract 1, converted before side columns existed; it runs under
    /// contract 2 with no side columns, and reconverting it with the current converter adds them) or 2.
    pub fn format_version(&self) -> u32 {
        self.version
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &AlbertConfig {
        &self.config
    }

    /// Every weight, borrowed from the blob.
    pub fn weights(&self) -> &Weights<'a> {
        &self.weights
    }

    /// The blob's bytes (its recorded length).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The validated tensor table, in [`TensorKind::ALL`] order.
    pub fn tensors(&self) -> impl Iterator<Item = TensorInfo> + '_ {
        self.infos.iter().flatten().copied()
    }

    /// The name of label `i` (`"LABEL_i"`-style names are stored as written by the converter); `""` if out of range.
    pub fn label(&self, i: usize) -> &'a str {
        let mut rest = self.labels;
        let mut k = 0;
        while rest.len() >= 2 {
            let n = LE::read_u16(&rest[..2]) as usize;
            let (name, tail) = rest[2..].split_at(n.min(rest.len() - 2));
            if k == i {
                return core::str::from_utf8(name).unwrap_or("");
            }
            rest = tail;
            k += 1;
        }
        ""
    }

    /// The raw tokenizer section (empty if the blob carries no tokenizer).
    pub fn tokenizer_section(&self) -> &'a [u8] {
        self.tokenizer_section
    }

    /// The blob's tokenizer, validated with the blob (`None` if the blob carries none). Every id it produces is
    /// below the model's `vocab_size`.
    pub fn tokenizer(&self) -> Option<&Tokenizer<'a>> {
        self.tokenizer.as_ref()
    }
}

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

fn validate_labels(labels: &[u8], count: usize) -> Result<(), Error> {
    let mut rest = labels;
    for _ in 0..count.min(MAX_LABELS) {
        if rest.len() < 2 {
            return Err(Error::BadLabels);
        }
        let n = LE::read_u16(&rest[..2]) as usize;
        let name = rest.get(2..2 + n).ok_or(Error::BadLabels)?;
        core::str::from_utf8(name).map_err(|_| Error::BadLabels)?;
        rest = &rest[2 + n..];
    }
    Ok(())
}

fn parse_table(
    bytes: &[u8],
    config: &AlbertConfig,
    version: u32,
) -> Result<[Option<TensorInfo>; KIND_COUNT], Error> {
    let count = read_u32(bytes, header::TENSOR_COUNT) as usize;
    let table_offset = read_u32(bytes, header::TENSOR_TABLE_OFFSET) as usize;
    if count > 4 * KIND_COUNT {
        return Err(Error::BadTensor("too many tensor-table entries"));
    }
    let table_len = count * TENSOR_ENTRY_LEN;
    let table = section(bytes, table_offset, table_len, "tensor table out of range")?;
    let mut infos: [Option<TensorInfo>; KIND_COUNT] = [None; KIND_COUNT];
    for e in table.chunks_exact(TENSOR_ENTRY_LEN) {
        let kind = TensorKind::from_code(LE::read_u16(&e[entry::KIND..]))
            .ok_or(Error::BadTensor("unknown tensor kind"))?;
        let dtype = DType::from_code(e[entry::DTYPE]).ok_or(Error::BadTensor("unknown dtype"))?;
        let rank = e[entry::RANK];
        let dim0 = LE::read_u32(&e[entry::DIM0..]) as usize;
        let dim1 = LE::read_u32(&e[entry::DIM1..]) as usize;
        let offset = LE::read_u32(&e[entry::DATA_OFFSET..]) as usize;
        let len = LE::read_u32(&e[entry::DATA_LEN..]) as usize;
        let scales_offset = LE::read_u32(&e[entry::SCALES_OFFSET..]) as usize;
        let scales_count = LE::read_u32(&e[entry::SCALES_LEN..]) as usize;
        let quant_error = LE::read_f32(&e[entry::QUANT_ERROR..]);
        // v1 entries have these bytes reserved (zero); a v1 reader never looked at them.
        let (side_offset, side_count) = if version >= 2 {
            (
                LE::read_u32(&e[entry::SIDE_OFFSET..]) as usize,
                LE::read_u32(&e[entry::SIDE_COUNT..]) as usize,
            )
        } else {
            (0, 0)
        };
        if e[entry::SIDE_COUNT + 4..].iter().any(|&b| b != 0) && version >= 2 {
            return Err(Error::BadTensor("reserved tensor-entry bytes must be 0"));
        }

        if infos[kind.slot()].is_some() {
            return Err(Error::BadTensor("tensor kind appears twice"));
        }
        let expected = kind.expected_shape(config);
        let expected_rank = if kind.is_matrix() { 2 } else { 1 };
        if rank != expected_rank || (dim0, dim1) != expected {
            return Err(Error::ShapeMismatch(kind.name()));
        }
        if dtype == DType::I8 && !kind.is_matrix() {
            return Err(Error::BadTensor("vectors must be f32"));
        }
        // dims are bounded by config validation (<= 2^20 * 2^16), so this product cannot overflow u64; on 32-bit
        // targets the checked multiply rejects what the address space cannot hold anyway.
        let numel = dim0
            .checked_mul(dim1)
            .ok_or(Error::BadTensor("tensor too large"))?;
        if len
            != numel
                .checked_mul(dtype.size())
                .ok_or(Error::BadTensor("tensor too large"))?
        {
            return Err(Error::BadTensor(
                "data length disagrees with shape and dtype",
            ));
        }
        let data = section(bytes, offset, len, "tensor data out of range or misaligned")?;
        let scales_len = match dtype {
            DType::F32 => {
                if scales_offset != 0 || scales_count != 0 {
                    return Err(Error::BadTensor("f32 tensor with scales"));
                }
                if !all_finite(data) {
                    return Err(Error::NonFiniteTensor(kind.name()));
                }
                0
            }
            DType::I8 => {
                if scales_count != dim0 {
                    return Err(Error::BadTensor("int8 tensor needs one scale per row"));
                }
                let s = section(
                    bytes,
                    scales_offset,
                    scales_count * 4,
                    "scales out of range or misaligned",
                )?;
                // The kernels rely on it (a pair of products then fits 16 bits whatever the activation).
                if data.contains(&0x80) {
                    return Err(Error::BadTensor("int8 values must be in -127..=127"));
                }
                if s.chunks_exact(4).any(|c| {
                    let v = LE::read_f32(c);
                    !(v.is_finite() && v > 0.0)
                }) {
                    return Err(Error::BadTensor("int8 scales must be finite and positive"));
                }
                scales_count * 4
            }
        };
        if side_count > 0 || side_offset != 0 {
            validate_side(bytes, dtype, (dim0, dim1), data, side_offset, side_count)?;
        }
        infos[kind.slot()] = Some(TensorInfo {
            kind,
            dtype,
            shape: (dim0, dim1),
            offset,
            len,
            scales_offset,
            scales_len,
            quant_error,
            side_offset,
            side_count,
        });
    }
    for kind in TensorKind::ALL {
        if infos[kind.slot()].is_none() {
            return Err(Error::MissingTensor(kind.name()));
        }
    }
    Ok(infos)
}

/// Bytes of a side-column section: `k` `u32` indices padded to 16, then `rows * k` `f32` weights.
pub const fn side_bytes(rows: usize, k: usize) -> (usize, usize) {
    let idx = (4 * k).next_multiple_of(ALIGN);
    (idx, idx + 4 * rows * k)
}

/// Checks an int8 matrix's side columns: count, alignment, range, strictly increasing indices below `cols`,
/// finite weights, and int8 values of 0 in those columns (so that both precisions read the same matrix).
fn validate_side(
    bytes: &[u8],
    dtype: DType,
    (rows, cols): (usize, usize),
    data: &[u8],
    offset: usize,
    k: usize,
) -> Result<(), Error> {
    if dtype != DType::I8 {
        return Err(Error::BadTensor("side columns on an f32 tensor"));
    }
    if k == 0 || k > MAX_SIDE_COLUMNS || k > cols {
        return Err(Error::BadTensor("side column count out of range"));
    }
    let (idx_len, total) = side_bytes(rows, k);
    let s = section(
        bytes,
        offset,
        total,
        "side columns out of range or misaligned",
    )?;
    let mut prev = None;
    for c in s[..4 * k].chunks_exact(4) {
        let c = LE::read_u32(c) as usize;
        if c >= cols || prev.is_some_and(|p| c <= p) {
            return Err(Error::BadTensor(
                "side columns must be increasing and below cols",
            ));
        }
        prev = Some(c);
        if data.iter().skip(c).step_by(cols).any(|&q| q != 0) {
            return Err(Error::BadTensor("a side column's int8 values must be 0"));
        }
    }
    if !all_finite(&s[idx_len..]) {
        return Err(Error::BadTensor("side column weights must be finite"));
    }
    Ok(())
}

/// Query, key and value read the same quantised input row, so they must keep the same channels out of it.
fn check_shared_input_sides(w: &Weights) -> Result<(), Error> {
    let l = &w.layer;
    let q = l.query_weight.side.cols;
    if l.key_weight.side.cols != q || l.value_weight.side.cols != q {
        return Err(Error::BadTensor(
            "query, key and value must have the same side columns",
        ));
    }
    Ok(())
}

/// Whether every little-endian `f32` in `data` is finite: an exponent field of all ones is NaN or an infinity.
/// The one pass over the f32 tensors costs about what the CRC already does.
fn all_finite(data: &[u8]) -> bool {
    data.chunks_exact(4)
        .all(|c| LE::read_u32(c) & 0x7F80_0000 != 0x7F80_0000)
}

fn f32_slice(bytes: &[u8], offset: usize, len: usize) -> Result<&[f32], Error> {
    let raw = bytes
        .get(offset..offset + len)
        .ok_or(Error::BadTensor("out of range"))?;
    bytemuck::try_cast_slice(raw).map_err(|_| Error::MisalignedBlob)
}

fn build_weights<'a>(
    bytes: &'a [u8],
    infos: &[Option<TensorInfo>; KIND_COUNT],
) -> Result<Weights<'a>, Error> {
    let info = |k: TensorKind| infos[k.slot()].ok_or(Error::MissingTensor(k.name()));
    let vector = |k: TensorKind| -> Result<&'a [f32], Error> {
        let i = info(k)?;
        f32_slice(bytes, i.offset, i.len)
    };
    let matrix = |k: TensorKind| -> Result<Matrix<'a>, Error> {
        let i = info(k)?;
        let data = match i.dtype {
            DType::F32 => MatrixData::F32(f32_slice(bytes, i.offset, i.len)?),
            DType::I8 => {
                let raw = bytes
                    .get(i.offset..i.offset + i.len)
                    .ok_or(Error::BadTensor("out of range"))?;
                MatrixData::I8 {
                    values: bytemuck::cast_slice(raw),
                    scales: f32_slice(bytes, i.scales_offset, i.scales_len)?,
                }
            }
        };
        let side = if i.side_count == 0 {
            Side::NONE
        } else {
            let (idx_len, total) = side_bytes(i.shape.0, i.side_count);
            let raw = bytes
                .get(i.side_offset..i.side_offset + total)
                .ok_or(Error::BadTensor("out of range"))?;
            Side {
                cols: bytemuck::try_cast_slice(&raw[..4 * i.side_count])
                    .map_err(|_| Error::MisalignedBlob)?,
                values: bytemuck::try_cast_slice(&raw[idx_len..])
                    .map_err(|_| Error::MisalignedBlob)?,
            }
        };
        Ok(Matrix {
            rows: i.shape.0,
            cols: i.shape.1,
            data,
            side,
        })
    };
    use TensorKind::*;
    Ok(Weights {
        word_embeddings: matrix(WordEmbeddings)?,
        position_embeddings: matrix(PositionEmbeddings)?,
        token_type_embeddings: matrix(TokenTypeEmbeddings)?,
        embeddings_ln_weight: vector(EmbeddingsLayerNormWeight)?,
        embeddings_ln_bias: vector(EmbeddingsLayerNormBias)?,
        mapping_in_weight: matrix(EmbeddingHiddenMappingInWeight)?,
        mapping_in_bias: vector(EmbeddingHiddenMappingInBias)?,
        layer: LayerWeights {
            query_weight: matrix(QueryWeight)?,
            query_bias: vector(QueryBias)?,
            key_weight: matrix(KeyWeight)?,
            key_bias: vector(KeyBias)?,
            value_weight: matrix(ValueWeight)?,
            value_bias: vector(ValueBias)?,
            attention_dense_weight: matrix(AttentionDenseWeight)?,
            attention_dense_bias: vector(AttentionDenseBias)?,
            attention_ln_weight: vector(AttentionLayerNormWeight)?,
            attention_ln_bias: vector(AttentionLayerNormBias)?,
            ffn_weight: matrix(FfnWeight)?,
            ffn_bias: vector(FfnBias)?,
            ffn_output_weight: matrix(FfnOutputWeight)?,
            ffn_output_bias: vector(FfnOutputBias)?,
            full_ln_weight: vector(FullLayerLayerNormWeight)?,
            full_ln_bias: vector(FullLayerLayerNormBias)?,
        },
        pooler_weight: matrix(PoolerWeight)?,
        pooler_bias: vector(PoolerBias)?,
        classifier_weight: matrix(ClassifierWeight)?,
        classifier_bias: vector(ClassifierBias)?,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Loading a blob on a host (std)
// ---------------------------------------------------------------------------------------------------------------

/// Largest blob file [`AlignedBlob::read`] accepts: the header's `file_len` is a `u32`, so no blob needs more (bytes
/// past `file_len` are ignored by [`Model::from_bytes`]).
#[cfg(feature = "std")]
pub const MAX_BLOB_FILE_LEN: u64 = u32::MAX as u64;

/// One 16-byte cell of an [`AlignedBlob`]'s storage; its alignment is the point.
#[cfg(feature = "std")]
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Cell([u8; ALIGN]);

#[cfg(feature = "std")]
const _: () = assert!(core::mem::align_of::<Cell>() == ALIGN);

/// An owned copy of a blob whose first byte is [`ALIGN`]-byte aligned, so that [`Model::from_bytes`] reads it in
/// place (a `Vec<u8>` promises alignment 1). The one loader for host programs, tests and tools; firmware embeds
/// its blob with `include_bytes!` in an aligned wrapper instead.
#[cfg(feature = "std")]
pub struct AlignedBlob {
    // (len.div_ceil(16),) cells; bytes past `len` are zero
    cells: std::vec::Vec<Cell>,
    len: usize,
}

#[cfg(feature = "std")]
impl AlignedBlob {
    /// Copies `bytes` into a fresh aligned buffer.
    pub fn new(bytes: &[u8]) -> Self {
        let mut blob = Self::zeroed(bytes.len());
        blob.bytes_mut().copy_from_slice(bytes);
        blob
    }

    /// `len` zero bytes, aligned.
    fn zeroed(len: usize) -> Self {
        AlignedBlob {
            cells: std::vec![Cell([0; ALIGN]); len.div_ceil(ALIGN)],
            len,
        }
    }

    /// Reads a blob file of at most [`MAX_BLOB_FILE_LEN`] bytes; see [`AlignedBlob::read_at_most`].
    pub fn read(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        Self::read_at_most(path, MAX_BLOB_FILE_LEN)
    }

    /// Reads a file of at most `max_len` bytes into an aligned buffer. The file is untrusted: its size is checked
    /// against `max_len` before anything is allocated, and reading stops one byte past `max_len` whatever the file
    /// turns out to hold (a pipe, a file that grows meanwhile). A longer file is an
    /// [`InvalidData`](std::io::ErrorKind::InvalidData) error; the contents are not checked here (that is
    /// [`Model::from_bytes`]'s job).
    pub fn read_at_most(path: impl AsRef<std::path::Path>, max_len: u64) -> std::io::Result<Self> {
        use std::io::Read;

        let too_long = |len: u64| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                std::format!(
                    "{len} bytes is longer than the {max_len}-byte limit for a model blob"
                ),
            )
        };
        let mut file = std::fs::File::open(path)?;
        // The size the file claims now (0 for a pipe); the read below does not trust it.
        let claimed = file.metadata()?.len();
        if claimed > max_len {
            return Err(too_long(claimed));
        }
        let claimed = usize::try_from(claimed).map_err(|_| too_long(claimed))?;
        let mut blob = Self::zeroed(claimed);
        let mut got = 0;
        while got < claimed {
            match file.read(&mut blob.bytes_mut()[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Whatever is left (a pipe's contents, or a file that grew), bounded by the same limit.
        let mut rest = std::vec::Vec::new();
        file.take((max_len - got as u64).saturating_add(1))
            .read_to_end(&mut rest)?;
        let total = got as u64 + rest.len() as u64;
        if total > max_len {
            return Err(too_long(total));
        }
        if got < claimed || !rest.is_empty() {
            // The file shrank or grew while being read: copy what it really held.
            let mut all = std::vec::Vec::with_capacity(got + rest.len());
            all.extend_from_slice(&blob.bytes()[..got]);
            all.extend_from_slice(&rest);
            blob = Self::new(&all);
        }
        Ok(blob)
    }

    /// The blob's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `cells` holds `cells.len() * ALIGN >= len` initialised bytes, `Cell` is a plain byte array with
        // no padding, and the slice borrows `self`.
        unsafe { core::slice::from_raw_parts(self.cells.as_ptr().cast::<u8>(), self.len) }
    }

    /// The blob's bytes, mutably (tests and fuzzers that damage a blob on purpose).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; every byte pattern is a valid `Cell`, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.cells.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

#[cfg(all(test, feature = "std"))]
mod aligned_blob_tests {
    use super::{AlignedBlob, ALIGN};
    use std::io::Write;

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path =
            std::env::temp_dir().join(std::format!("albert-edge-{}-{name}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    }

    #[test]
    fn copies_are_aligned_and_exact() {
        for len in [0, 1, 15, 16, 17, 100] {
            let bytes: std::vec::Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let blob = AlignedBlob::new(&bytes);
            assert_eq!(blob.bytes(), &bytes[..]);
            assert!((blob.bytes().as_ptr() as usize).is_multiple_of(ALIGN));
        }
    }

    #[test]
    fn reads_a_file_within_the_limit_and_refuses_a_longer_one() {
        let bytes: std::vec::Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let path = temp_file("read", &bytes);
        assert_eq!(AlignedBlob::read(&path).unwrap().bytes(), &bytes[..]);
        assert_eq!(
            AlignedBlob::read_at_most(&path, 1000).unwrap().bytes(),
            &bytes[..]
        );
        let err = AlignedBlob::read_at_most(&path, 999).err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(AlignedBlob::read(path.with_extension("missing")).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
