//! The crate's one error type: small, `Copy`, and specific enough to say what to do next.

use core::fmt;

/// The format version this build writes: v2, numeric contract 2 (f32 residual stream, one activation scale per
/// token row, outlier side columns). It also reads v1 blobs (no side columns) and runs them under contract 2.
/// Defined here, beside [`Error::UnsupportedVersion`] whose message names it, so that this module imports nothing
/// from the crate; [`crate::format`] re-exports it with the rest of the layout.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// Everything that can go wrong in albert-edge. Returned by validation ([`crate::Model::from_bytes`]), by the
/// tokenizer and by the forward pass (arena too small, input too long); the hot path itself never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The blob does not start with the albert-edge magic bytes.
    BadMagic,
    /// The blob's format version is not one this build reads.
    UnsupportedVersion(u32),
    /// The blob is shorter than its header says (truncated file, partial flash write).
    Truncated {
        /// Bytes the blob needs.
        needed: usize,
        /// Bytes actually present.
        got: usize,
    },
    /// The CRC-32 stored in the header does not match the payload (corrupt blob).
    ChecksumMismatch {
        /// CRC-32 recorded in the header.
        stored: u32,
        /// CRC-32 computed over the payload.
        computed: u32,
    },
    /// The blob's first byte is not 4-byte aligned in memory; tensors cannot be used in place.
    MisalignedBlob,
    /// A header field holds a value this build does not support.
    BadConfig(&'static str),
    /// A config field holds a count outside `1..=max`.
    ConfigOutOfRange {
        /// The field, as `config.json` spells it (`hidden_size`).
        field: &'static str,
        /// The value it holds.
        value: usize,
        /// The largest value this build supports.
        max: usize,
    },
    /// A config field must be a multiple of another (`hidden_size` of `num_attention_heads`).
    ConfigNotMultiple {
        /// The field that must be a multiple (`hidden_size`).
        field: &'static str,
        /// Its value.
        value: usize,
        /// The field it must be a multiple of (`num_attention_heads`).
        of: &'static str,
        /// That field's value.
        divisor: usize,
    },
    /// A tensor table entry is malformed (unknown kind or dtype, bad shape, out-of-range or misaligned offset).
    BadTensor(&'static str),
    /// A tensor the model needs is missing from the tensor table.
    MissingTensor(&'static str),
    /// A tensor's shape disagrees with the config.
    ShapeMismatch(&'static str),
    /// An `f32` tensor (bias, LayerNorm vector, f32 matrix) holds a NaN or an infinity.
    NonFiniteTensor(&'static str),
    /// The label-names section is malformed.
    BadLabels,
    /// The tokenizer section is malformed.
    BadTokenizer(&'static str),
    /// The caller's scratch arena is smaller than the forward pass needs.
    ArenaTooSmall {
        /// Bytes needed (see `scratch_size`).
        needed: usize,
        /// Bytes provided.
        got: usize,
    },
    /// An input sequence is longer than the model's maximum (or the arena's planned maximum).
    SequenceTooLong {
        /// Tokens given.
        len: usize,
        /// Maximum tokens allowed.
        max: usize,
    },
    /// An input is malformed (empty sequence, token id out of the vocabulary, mismatched lengths).
    BadInput(&'static str),
    /// A caller-provided output buffer is too small.
    OutputTooSmall {
        /// Elements needed.
        needed: usize,
        /// Elements provided.
        got: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadMagic => f.write_str("not an albert-edge model blob (bad magic); convert the checkpoint with `albert-edge convert`"),
            Error::UnsupportedVersion(v) => write!(f, "model blob format version {v} is not supported by this build (expects {})", FORMAT_VERSION),
            Error::Truncated { needed, got } => write!(f, "model blob is truncated: needs {needed} bytes, got {got}"),
            Error::ChecksumMismatch { stored, computed } => write!(f, "model blob is corrupt: CRC-32 {computed:#010x} does not match the stored {stored:#010x}"),
            Error::MisalignedBlob => f.write_str("model blob is not 4-byte aligned in memory; place it at an aligned address (16 bytes recommended)"),
            Error::BadConfig(what) => write!(f, "unsupported model config: {what}"),
            Error::ConfigOutOfRange { field, value, max } => write!(f, "unsupported model config: {field} {value} must be in 1..={max}"),
            Error::ConfigNotMultiple { field, value, of, divisor } => write!(f, "unsupported model config: {field} {value} must be a multiple of {of} {divisor}"),
            Error::BadTensor(what) => write!(f, "malformed tensor table: {what}"),
            Error::MissingTensor(name) => write!(f, "model blob has no tensor `{name}`"),
            Error::ShapeMismatch(name) => write!(f, "tensor `{name}` has a shape that disagrees with the config"),
            Error::NonFiniteTensor(name) => write!(f, "tensor `{name}` holds a NaN or infinite value (a damaged blob? `albert-edge convert` refuses such weights)"),
            Error::BadLabels => f.write_str("malformed label-names section"),
            Error::BadTokenizer(what) => write!(f, "malformed tokenizer section: {what}"),
            Error::ArenaTooSmall { needed, got } => write!(f, "scratch arena too small: needs {needed} bytes, got {got}"),
            Error::SequenceTooLong { len, max } => write!(f, "sequence of {len} tokens is longer than the maximum {max}"),
            Error::BadInput(what) => write!(f, "bad input: {what}"),
            Error::OutputTooSmall { needed, got } => write!(f, "output buffer too small: needs {needed} elements, got {got}"),
        }
    }
}

impl core::error::Error for Error {}
