//! The model configuration as stored in the blob header (mirrors Hugging Face's `AlbertConfig`).

use crate::error::Error;

/// Feed-forward activation, as `hidden_act` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x * 0.5 * (1 + erf(x / sqrt 2))` (`"gelu"`).
    Gelu,
    /// The tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`), ALBERT's default.
    GeluNew,
    /// `max(0, x)` (`"relu"`).
    Relu,
}

impl Activation {
    /// The code stored in the blob header.
    pub const fn code(self) -> u32 {
        match self {
            Activation::Gelu => 0,
            Activation::GeluNew => 1,
            Activation::Relu => 2,
        }
    }

    /// Decodes a header code.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Activation::Gelu),
            1 => Some(Activation::GeluNew),
            2 => Some(Activation::Relu),
            _ => None,
        }
    }

    /// The name Hugging Face uses in `config.json`.
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluNew => "gelu_new",
            Activation::Relu => "relu",
        }
    }
}

/// Largest label count a blob may declare.
pub const MAX_LABELS: usize = 64;
/// Largest value any single dimension may take; keeps every product of two dimensions inside `u32`.
pub const MAX_DIM: usize = 1 << 16;
/// Largest vocabulary a blob may declare.
pub const MAX_VOCAB: usize = 1 << 20;
/// Most applications of the shared layer a blob may declare.
pub const MAX_LAYERS: usize = 256;

/// The ALBERT hyper-parameters the forward pass needs. Validated by [`AlbertConfig::validate`], after which every
/// size below is non-zero and every product used for buffer sizes fits in `usize` on 32-bit targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlbertConfig {
    /// Pieces in the vocabulary (rows of the word-embedding table).
    pub vocab_size: usize,
    /// Factorised embedding width E.
    pub embedding_size: usize,
    /// Hidden width H.
    pub hidden_size: usize,
    /// Attention heads; divides `hidden_size`.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// How many times the ONE shared layer is applied.
    pub num_hidden_layers: usize,
    /// Rows of the position-embedding table: the longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table (2 for sentence pairs).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Classifier outputs.
    pub num_labels: usize,
}

impl AlbertConfig {
    /// Width of one attention head, `hidden_size / num_attention_heads`.
    pub const fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the invariants the rest of the crate relies on.
    pub fn validate(&self) -> Result<(), Error> {
        let counts = [
            ("embedding_size", self.embedding_size, MAX_DIM),
            ("hidden_size", self.hidden_size, MAX_DIM),
            ("num_attention_heads", self.num_attention_heads, MAX_DIM),
            ("intermediate_size", self.intermediate_size, MAX_DIM),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_DIM,
            ),
            ("type_vocab_size", self.type_vocab_size, MAX_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_labels", self.num_labels, MAX_LABELS),
        ];
        for (field, value, max) in counts {
            if value == 0 || value > max {
                return Err(Error::ConfigOutOfRange { field, value, max });
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::ConfigNotMultiple {
                field: "hidden_size",
                value: self.hidden_size,
                of: "num_attention_heads",
                divisor: self.num_attention_heads,
            });
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::BadConfig(
                "layer_norm_eps must be finite and positive",
            ));
        }
        Ok(())
    }
}
