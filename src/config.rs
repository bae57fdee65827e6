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

    /// The default width of the int8 engine's activation blocks: every activation row (hidden state, FFN
    /// intermediate, pooler output) is quantised in blocks of this many values, each with its own scale; the
    /// attention context uses one block per head. Half the head size (32 for ALBERT-base), at least 1: see
    /// `QUANTIZATION.md` for the measurements behind it. A blob may ask for wider blocks
    /// ([`Model::activation_block`](crate::Model::activation_block)), never narrower ones, so the arena sized
    /// for this default always suffices.
    pub const fn activation_block(&self) -> usize {
        let d = match self.hidden_size.checked_div(self.num_attention_heads) {
            Some(d) => d,
            None => self.hidden_size,
        };
        if d >= 2 {
            d / 2
        } else {
            1
        }
    }

    /// Checks the invariants the rest of the crate relies on.
    pub fn validate(&self) -> Result<(), Error> {
        let dims = [
            (self.embedding_size, "embedding_size must be in 1..=65536"),
            (self.hidden_size, "hidden_size must be in 1..=65536"),
            (
                self.num_attention_heads,
                "num_attention_heads must be in 1..=65536",
            ),
            (
                self.intermediate_size,
                "intermediate_size must be in 1..=65536",
            ),
            (
                self.max_position_embeddings,
                "max_position_embeddings must be in 1..=65536",
            ),
            (self.type_vocab_size, "type_vocab_size must be in 1..=65536"),
        ];
        for (value, what) in dims {
            if value == 0 || value > MAX_DIM {
                return Err(Error::BadConfig(what));
            }
        }
        if self.vocab_size == 0 || self.vocab_size > MAX_VOCAB {
            return Err(Error::BadConfig("vocab_size must be in 1..=1048576"));
        }
        if self.num_hidden_layers == 0 || self.num_hidden_layers > 256 {
            return Err(Error::BadConfig("num_hidden_layers must be in 1..=256"));
        }
        if self.num_labels == 0 || self.num_labels > MAX_LABELS {
            return Err(Error::BadConfig("num_labels must be in 1..=64"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(Error::BadConfig(
                "hidden_size must be a multiple of num_attention_heads",
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::BadConfig(
                "layer_norm_eps must be finite and positive",
            ));
        }
        Ok(())
    }
}
