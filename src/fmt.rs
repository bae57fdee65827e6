//! `defmt::Format` for the public types (feature `defmt`): all of the crate's defmt code, in one module, so the
//! rest of the crate never mentions it. Firmware that logs with defmt can then write `defmt::error!("{}", e)`
//! for an [`Error`] and `defmt::info!("{}", model.config())`; the strings are interned on the host, not stored in
//! flash.

use defmt::{write, Format, Formatter};

use crate::config::{Activation, AlbertConfig};
use crate::error::Error;
use crate::model::Precision;

impl Format for Error {
    fn format(&self, f: Formatter) {
        match *self {
            Error::BadMagic => write!(f, "BadMagic: not an albert-edge model blob"),
            Error::UnsupportedVersion(v) => write!(f, "UnsupportedVersion({=u32})", v),
            Error::Truncated { needed, got } => write!(
                f,
                "Truncated {{ needed: {=usize}, got: {=usize} }}",
                needed, got
            ),
            Error::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "ChecksumMismatch {{ stored: {=u32:#010x}, computed: {=u32:#010x} }}",
                    stored, computed
                )
            }
            Error::MisalignedBlob => write!(
                f,
                "MisalignedBlob: place the blob at a 16-byte aligned address"
            ),
            Error::BadConfig(what) => write!(f, "BadConfig: {=str}", what),
            Error::ConfigOutOfRange { field, value, max } => write!(
                f,
                "ConfigOutOfRange: {=str} {=usize} must be in 1..={=usize}",
                field, value, max
            ),
            Error::ConfigNotMultiple {
                field,
                value,
                of,
                divisor,
            } => write!(
                f,
                "ConfigNotMultiple: {=str} {=usize} must be a multiple of {=str} {=usize}",
                field, value, of, divisor
            ),
            Error::BadTensor(what) => write!(f, "BadTensor: {=str}", what),
            Error::MissingTensor(name) => write!(f, "MissingTensor: {=str}", name),
            Error::ShapeMismatch(name) => write!(f, "ShapeMismatch: {=str}", name),
            Error::NonFiniteTensor(name) => write!(f, "NonFiniteTensor: {=str}", name),
            Error::BadLabels => write!(f, "BadLabels"),
            Error::BadTokenizer(what) => write!(f, "BadTokenizer: {=str}", what),
            Error::ArenaTooSmall { needed, got } => {
                write!(
                    f,
                    "ArenaTooSmall {{ needed: {=usize}, got: {=usize} }}",
                    needed, got
                )
            }
            Error::SequenceTooLong { len, max } => write!(
                f,
                "SequenceTooLong {{ len: {=usize}, max: {=usize} }}",
                len, max
            ),
            Error::BadInput(what) => write!(f, "BadInput: {=str}", what),
            Error::OutputTooSmall { needed, got } => {
                write!(
                    f,
                    "OutputTooSmall {{ needed: {=usize}, got: {=usize} }}",
                    needed, got
                )
            }
        }
    }
}

impl Format for Activation {
    fn format(&self, f: Formatter) {
        write!(f, "{=str}", self.name())
    }
}

impl Format for Precision {
    fn format(&self, f: Formatter) {
        match self {
            Precision::F32 => write!(f, "F32"),
            Precision::Int8 => write!(f, "Int8"),
        }
    }
}

impl Format for AlbertConfig {
    fn format(&self, f: Formatter) {
        write!(
            f,
            "vocab {=usize} E {=usize} H {=usize} heads {=usize} I {=usize} layers {=usize} max_pos {=usize} \
             types {=usize} eps {=f32} act {} labels {=usize}",
            self.vocab_size,
            self.embedding_size,
            self.hidden_size,
            self.num_attention_heads,
            self.intermediate_size,
            self.num_hidden_layers,
            self.max_position_embeddings,
            self.type_vocab_size,
            self.layer_norm_eps,
            self.hidden_act,
            self.num_labels
        )
    }
}
