//! The ALBERT forward pass: embeddings, ONE shared transformer layer applied `num_hidden_layers` times, pooler
//! and classifier. Two precisions share the structure:
//!
//! * [`Precision::Int8`], the engine (numeric contract 2): int8 weights; every linear layer's input quantised to
//!   int8 with one scale per token, its calibrated outlier channels kept out in `f32` side columns; `i32`
//!   accumulation; the residual stream, LayerNorm, softmax and GELU in `f32`; Q and K in 16 bits, attention
//!   probabilities u8 and V int8 with exact integer products. Streamed: attention head by head, the linear layers
//!   one token, or one tile of tokens, at a time (see `QUANTIZATION.md`).
//! * [`Precision::F32`], the host reference: `f32` activations, weights dequantised on the fly when the blob is
//!   int8. It is the yardstick the converter calibrates and tests measure against.
//!
//! No allocation: the caller passes one scratch arena of at least [`scratch_size`] bytes.
//!
//! [`classify_observed`] runs the f32 reference and shows an [`Observer`] every linear layer's input: the
//! converter's calibration hook. [`classify_observed_with`] also takes the [`F32Linear`] that computes the linear
//! layers (each one call over the whole sequence), so a host can multiply them faster with the same bits.

mod arena;
mod attention;
mod embeddings;
mod head;
mod jobs;
mod layer;
mod layer_f32;
mod layer_i8;
mod linear;
mod observer;
mod plan;
mod weight_sums;

use crate::config::AlbertConfig;
use crate::error::Error;
use crate::format::{MatrixData, Model};
use crate::parallel::{Parallel, Sequential};
use arena::Arena;
use plan::{F32Plan, Int8Plan};

pub use embeddings::Embeddings;
pub use head::Head;
pub use layer::Layer;
pub use linear::{F32Linear, TokenByToken};
pub use observer::{NoObserver, Observer, Site};
pub use plan::{scratch_size, scratch_size_for_speed, MAX_TILE};

/// Which arithmetic the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The host reference: `f32` activations.
    F32,
    /// The engine: int8 weights and activations, `i32` accumulation. Needs an int8 blob.
    Int8,
}

/// One input sequence, already tokenized (`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Token ids, each `< vocab_size`; between 1 and `max_position_embeddings` of them.
    pub input_ids: &'a [u32],
    /// Segment ids (0 for A, 1 for B), each `< type_vocab_size`; empty means all 0.
    pub token_type_ids: &'a [u32],
    /// 1 for real tokens, 0 for padding; empty means all 1. Padding only affects which keys attention sees.
    pub attention_mask: &'a [u32],
}

impl<'a> Inputs<'a> {
    /// A single unpadded sequence with all token types 0.
    pub fn ids(input_ids: &'a [u32]) -> Self {
        Inputs {
            input_ids,
            token_type_ids: &[],
            attention_mask: &[],
        }
    }

    fn token_type(&self, t: usize) -> usize {
        self.token_type_ids.get(t).map_or(0, |&v| v as usize)
    }

    fn attends(&self, t: usize) -> bool {
        self.attention_mask.get(t).is_none_or(|&m| m != 0)
    }

    /// Whether every token attends (no padding): the softmax then runs without a mask, which vectorises.
    fn all_attend(&self) -> bool {
        self.attention_mask.iter().all(|&m| m != 0)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The forward pass
// ---------------------------------------------------------------------------------------------------------------

/// Whether every weight matrix of `model` is int8 (what [`Precision::Int8`] needs).
pub fn is_int8(model: &Model) -> bool {
    let w = model.weights();
    let l = &w.layer;
    [
        &w.mapping_in_weight,
        &l.query_weight,
        &l.key_weight,
        &l.value_weight,
        &l.attention_dense_weight,
        &l.ffn_weight,
        &l.ffn_output_weight,
        &w.pooler_weight,
        &w.classifier_weight,
    ]
    .iter()
    .all(|m| matches!(m.data, MatrixData::I8 { .. }))
}

fn check_inputs(c: &AlbertConfig, inputs: &Inputs) -> Result<usize, Error> {
    let seq = inputs.input_ids.len();
    if seq == 0 {
        return Err(Error::BadInput("empty input_ids"));
    }
    if seq > c.max_position_embeddings {
        return Err(Error::SequenceTooLong {
            len: seq,
            max: c.max_position_embeddings,
        });
    }
    if !inputs.token_type_ids.is_empty() && inputs.token_type_ids.len() != seq {
        return Err(Error::BadInput(
            "token_type_ids length differs from input_ids",
        ));
    }
    if !inputs.attention_mask.is_empty() && inputs.attention_mask.len() != seq {
        return Err(Error::BadInput(
            "attention_mask length differs from input_ids",
        ));
    }
    if inputs
        .input_ids
        .iter()
        .any(|&id| id as usize >= c.vocab_size)
    {
        return Err(Error::BadInput("token id outside the vocabulary"));
    }
    if inputs
        .token_type_ids
        .iter()
        .any(|&t| t as usize >= c.type_vocab_size)
    {
        return Err(Error::BadInput("token type id outside type_vocab_size"));
    }
    if inputs.attention_mask.iter().any(|&m| m > 1) {
        return Err(Error::BadInput("attention_mask values must be 0 or 1"));
    }
    Ok(seq)
}

/// Runs the classifier on one sequence and writes `num_labels` logits to `logits[..num_labels]`.
///
/// The arena must hold at least `scratch_size(model.config(), inputs.input_ids.len(), precision)` bytes; its
/// contents on entry do not matter. Results are deterministic: the same blob and inputs give the same bits on
/// every target and in debug and release builds.
pub fn classify(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
) -> Result<(), Error> {
    classify_parallel(model, precision, inputs, arena, logits, &Sequential)
}

/// [`classify`] with the int8 engine's work (linear layers, attention rows, GELU, LayerNorm) shared out between
/// threads by `parallel` (see [`crate::parallel`]): the same bits as [`classify`], for any `parallel`.
/// [`Precision::F32`] ignores it.
///
/// ```
/// # #[cfg(feature = "std")]
/// # fn run(model: &albert_edge::Model, ids: &[u32]) -> Result<(), albert_edge::Error> {
/// use albert_edge::model::{classify_parallel, scratch_size_for_speed, Inputs, Precision};
/// use albert_edge::parallel::Threads;
///
/// let threads = Threads::new(4); // once, for every classification
/// let mut arena = vec![0u8; scratch_size_for_speed(model.config(), ids.len(), Precision::Int8)];
/// let mut logits = [0f32; 2];
/// classify_parallel(model, Precision::Int8, &Inputs::ids(ids), &mut arena, &mut logits, &threads)?;
/// # Ok(()) }
/// ```
pub fn classify_parallel(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    parallel: &dyn Parallel,
) -> Result<(), Error> {
    forward(
        model,
        precision,
        inputs,
        arena,
        logits,
        &mut NoObserver,
        &mut TokenByToken,
        parallel,
        false,
    )
}

/// [`classify`] with [`Precision::F32`], showing `observer` the input row of every linear layer as it is computed
/// (see [`Observer`]). The logits are the same bits as `classify`'s. Host-side calibration; the int8 engine has no
/// such hook. The observer is a trait object so that this forward pass is compiled (and optimised) here, once,
/// and not in the calling crate; [`classify`] itself uses the statically empty [`NoObserver`].
pub fn classify_observed(
    model: &Model,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    observer: &mut dyn Observer,
) -> Result<(), Error> {
    classify_observed_with(model, inputs, arena, logits, observer, &mut TokenByToken)
}

/// [`classify_observed`] with `linear` computing every linear layer (see [`F32Linear`]): each is one call over all
/// the tokens it applies to, which a host can multiply as a matrix. Every other step (embeddings, attention,
/// LayerNorm, activations, pooler tanh) is the core's own. An `F32Linear` that keeps its contract gives the same
/// logits and shows `observer` the same rows in the same order as [`classify_observed`]; [`TokenByToken`] is what
/// that uses.
pub fn classify_observed_with(
    model: &Model,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    mut observer: &mut dyn Observer,
    linear: &mut dyn F32Linear,
) -> Result<(), Error> {
    forward(
        model,
        Precision::F32,
        inputs,
        arena,
        logits,
        &mut observer,
        linear,
        &Sequential,
        false,
    )
}

/// The forward pass; `lin` computes the f32 reference's linear layers. `full_last_layer` makes the int8 engine's
/// last layer application compute every token (as the others do) instead of `[CLS]` alone: the same logits, bit for
/// bit, which a test checks.
#[allow(clippy::too_many_arguments)]
fn forward(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    obs: &mut impl Observer,
    lin: &mut (impl F32Linear + ?Sized),
    par: &dyn Parallel,
    full_last_layer: bool,
) -> Result<(), Error> {
    let c = model.config();
    let seq = check_inputs(c, inputs)?;
    if logits.len() < c.num_labels {
        return Err(Error::OutputTooSmall {
            needed: c.num_labels,
            got: logits.len(),
        });
    }
    let needed = scratch_size(c, seq, precision);
    if arena.len() < needed {
        return Err(Error::ArenaTooSmall {
            needed,
            got: arena.len(),
        });
    }
    let logits = &mut logits[..c.num_labels];
    let embeddings = Embeddings::load(model);
    let layer = Layer::load(model);
    let head = Head::load(model);
    let arena_len = arena.len();
    let mut a = Arena::new(arena);
    match precision {
        Precision::F32 => {
            let mut s = F32Plan::new(c, seq).carve(&mut a);
            embeddings.forward_f32(inputs, s.hidden, s.inter, s.tmp, obs, lin);
            for pass in 0..c.num_hidden_layers {
                layer.forward_f32(inputs, &mut s, pass, obs, lin);
            }
            head.forward_f32(&s.hidden[..c.hidden_size], s.row, logits, obs, lin);
        }
        Precision::Int8 => {
            if !is_int8(model) {
                return Err(Error::BadInput(
                    "int8 precision needs a blob converted with --weights int8",
                ));
            }
            // A larger arena buys speed: the linear layers then run `tile` tokens at a time.
            let tile = plan::int8_tile(c, seq, arena_len);
            let mut s = Int8Plan::new(c, seq, tile).carve(&mut a, tile, par);
            embeddings.prepare_mapping_t(s.mapping_t);
            embeddings.forward_i8(inputs, &mut s);
            layer.prepare_sums(s.sums);
            // The pooler reads `[CLS]` only: the last application computes that token's output alone.
            for pass in 0..c.num_hidden_layers {
                let last = pass + 1 == c.num_hidden_layers;
                let outputs = if last && !full_last_layer { 1 } else { seq };
                layer.forward_i8(inputs, &mut s, outputs);
            }
            head.forward_i8(&s.hidden[..c.hidden_size], s.acc, s.row, s.rows_i8, logits);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
