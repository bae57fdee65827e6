//! `spiece.model`: SentencePiece's `ModelProto` (proto2, `sentencepiece_model.proto`), decoded with prost. Only the
//! fields the tokenizer section needs are declared; prost skips the rest. Field defaults follow the `.proto`.

use std::path::Path;

use anyhow::{Context, Result};
use prost::Message;

/// The model file's top-level message.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// The vocabulary, in id order.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    /// Training settings (model type, special ids, byte fallback).
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    /// Normaliser used for encoding.
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// One vocabulary entry.
#[derive(Clone, PartialEq, Message)]
pub struct SentencePiece {
    /// The piece's text (never empty in a valid model).
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Log probability.
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Piece type ([`PieceType`]), NORMAL when absent.
    #[prost(enumeration = "PieceType", optional, tag = "3", default = "Normal")]
    pub r#type: Option<i32>,
}

/// `ModelProto.SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PieceType {
    /// A normal piece.
    Normal = 1,
    /// `<unk>`.
    Unknown = 2,
    /// Control symbols (`<pad>`, `[CLS]`, ...): never produced by encoding.
    Control = 3,
    /// User-defined symbols: always kept whole.
    UserDefined = 4,
    /// Unused pieces: in the vocabulary, never produced.
    Unused = 5,
    /// Byte-fallback pieces `<0xNN>`.
    Byte = 6,
}

/// `TrainerSpec.ModelType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ModelType {
    /// Unigram language model: the only type albert-edge runs.
    Unigram = 1,
    /// Byte-pair encoding.
    Bpe = 2,
    /// Whitespace-delimited words.
    Word = 3,
    /// Characters.
    Char = 4,
}

/// The subset of `TrainerSpec` that affects encoding.
#[derive(Clone, PartialEq, Message)]
pub struct TrainerSpec {
    /// Model type; UNIGRAM when absent.
    #[prost(enumeration = "ModelType", optional, tag = "3", default = "Unigram")]
    pub model_type: Option<i32>,
    /// Whether U+2581 attaches to the end of words instead of the start.
    #[prost(bool, optional, tag = "24", default = "false")]
    pub treat_whitespace_as_suffix: Option<bool>,
    /// Whether unknown characters decompose into `<0xNN>` byte pieces.
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    /// Id of `<unk>`.
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
    /// Id of `<pad>`, -1 for none.
    #[prost(int32, optional, tag = "43", default = "-1")]
    pub pad_id: Option<i32>,
}

/// `NormalizerSpec`.
#[derive(Clone, PartialEq, Message)]
pub struct NormalizerSpec {
    /// Rule name (`nmt_nfkc`, `identity`, ...); informational, the charsmap is what runs.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Darts-clone trie + replacement strings (`Normalizer::EncodePrecompiledCharsMap`).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    /// Prepend a space to the text.
    #[prost(bool, optional, tag = "3", default = "true")]
    pub add_dummy_prefix: Option<bool>,
    /// Drop leading, trailing and repeated whitespace.
    #[prost(bool, optional, tag = "4", default = "true")]
    pub remove_extra_whitespaces: Option<bool>,
    /// Replace spaces with U+2581.
    #[prost(bool, optional, tag = "5", default = "true")]
    pub escape_whitespaces: Option<bool>,
}

impl ModelProto {
    /// Decodes a serialized `ModelProto`.
    pub fn decode_bytes(bytes: &[u8]) -> Result<Self> {
        ModelProto::decode(bytes)
            .context("not a SentencePiece model (protobuf ModelProto expected)")
    }

    /// Reads and decodes `spiece.model`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::decode_bytes(&bytes)
            .with_context(|| format!("{} is not a SentencePiece model", path.display()))
    }

    /// The trainer spec, or the `.proto` defaults if the file has none.
    pub fn trainer(&self) -> TrainerSpec {
        self.trainer_spec.clone().unwrap_or_default()
    }

    /// The normaliser spec, or the `.proto` defaults if the file has none.
    pub fn normalizer(&self) -> NormalizerSpec {
        self.normalizer_spec.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto2_defaults_apply_to_absent_fields() {
        let piece = SentencePiece::decode(&[0x0a, 0x01, b'a'][..]).unwrap();
        assert_eq!(piece.piece(), "a");
        assert_eq!(piece.r#type(), PieceType::Normal);
        assert_eq!(piece.score(), 0.0);
        let spec = NormalizerSpec::default();
        assert!(
            spec.add_dummy_prefix() && spec.remove_extra_whitespaces() && spec.escape_whitespaces()
        );
        let trainer = TrainerSpec::default();
        assert_eq!(
            (trainer.model_type(), trainer.unk_id(), trainer.pad_id()),
            (ModelType::Unigram, 0, -1)
        );
    }
}
