//! The ONE shared ALBERT transformer layer: self-attention (with the padding mask), dense, add & LayerNorm, FFN,
//! add & LayerNorm. Stored once in the blob; [`super::classify`] applies it `num_hidden_layers` times. Its two
//! passes live next door: `layer_f32` (the reference) and `layer_i8` (the engine).

use super::jobs::AddNorm;
use super::linear::{add_side, linear_i8_tokens, Exec};
use super::weight_sums::{LayerSums, Proj};
use crate::config::Activation;
use crate::format::{Matrix, Model};
use crate::kernels::GemmInput;
use crate::parallel::Parallel;
use core::ops::Range;

pub(crate) use super::weight_sums::layer_sums_len;

/// What the int8 pass's linear layers share: the layer's GEMM weight sums, who runs the jobs, and room for the
/// threads' rows of a GEMM (also the attention jobs' scratch).
pub(super) struct Gemms<'e> {
    pub sums: LayerSums<'e>,
    pub par: &'e dyn Parallel,
    pub stage: &'e mut [f32],
}

/// The shared layer's weights, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub(super) query: Matrix<'a>,              // (H, H)
    pub(super) query_bias: &'a [f32],          // (H)
    pub(super) key: Matrix<'a>,                // (H, H)
    pub(super) key_bias: &'a [f32],            // (H)
    pub(super) value: Matrix<'a>,              // (H, H)
    pub(super) value_bias: &'a [f32],          // (H)
    pub(super) dense: Matrix<'a>,              // (H, H)
    pub(super) dense_bias: &'a [f32],          // (H)
    pub(super) attention_ln_weight: &'a [f32], // (H)
    pub(super) attention_ln_bias: &'a [f32],   // (H)
    pub(super) ffn: Matrix<'a>,                // (I, H)
    pub(super) ffn_bias: &'a [f32],            // (I)
    pub(super) ffn_output: Matrix<'a>,         // (H, I)
    pub(super) ffn_output_bias: &'a [f32],     // (H)
    pub(super) full_ln_weight: &'a [f32],      // (H)
    pub(super) full_ln_bias: &'a [f32],        // (H)
    pub(super) heads: usize,
    pub(super) act: Activation,
    pub(super) eps: f32,
}

impl<'a> Layer<'a> {
    /// Borrows the shared layer's weights from a validated model.
    pub fn load(model: &Model<'a>) -> Self {
        let l = &model.weights().layer;
        let c = model.config();
        Layer {
            query: l.query_weight,
            query_bias: l.query_bias,
            key: l.key_weight,
            key_bias: l.key_bias,
            value: l.value_weight,
            value_bias: l.value_bias,
            dense: l.attention_dense_weight,
            dense_bias: l.attention_dense_bias,
            attention_ln_weight: l.attention_ln_weight,
            attention_ln_bias: l.attention_ln_bias,
            ffn: l.ffn_weight,
            ffn_bias: l.ffn_bias,
            ffn_output: l.ffn_output_weight,
            ffn_output_bias: l.ffn_output_bias,
            full_ln_weight: l.full_ln_weight,
            full_ln_bias: l.full_ln_bias,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }

    /// Rows `rows` of matrix `m` (with its bias and weight sums) on the tile's quantised
    /// `input`, plus the side columns read from the tile's `f32` input rows `x`: token `t`'s outputs in
    /// `out[t * rows.len()..][..rows.len()]` (returned).
    #[inline(always)]
    pub(super) fn project<'o>(
        &self,
        m: Proj,
        rows: Range<usize>,
        input: &GemmInput,
        x: &[f32],
        out: &'o mut [f32],
        gemms: &mut Gemms,
    ) -> &'o mut [f32] {
        let (w, bias) = self.matrix(m);
        let y = &mut out[..input.tokens() * rows.len()];
        let bias = &bias[rows.clone()];
        let sums = gemms.sums.rows(m, rows.clone());
        let exec = Exec {
            par: gemms.par,
            stage: &mut *gemms.stage,
        };
        linear_i8_tokens(w, rows.clone(), sums, input, bias, &mut *y, exec);
        add_side(w, rows.start, rows.len(), x, y);
        y
    }

    /// Add & LayerNorm at the end of the attention sub-layer.
    pub(super) fn attention_norm(&self) -> AddNorm<'a> {
        AddNorm {
            gamma: self.attention_ln_weight,
            beta: self.attention_ln_bias,
            eps: self.eps,
        }
    }

    /// Add & LayerNorm at the end of the FFN sub-layer.
    pub(super) fn ffn_norm(&self) -> AddNorm<'a> {
        AddNorm {
            gamma: self.full_ln_weight,
            beta: self.full_ln_bias,
            eps: self.eps,
        }
    }
}
