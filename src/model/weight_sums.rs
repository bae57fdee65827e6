//! The shared layer's six matrices by name, and the layout of their GEMM weight sums
//! ([`kernels::gemm_weight_sums`]): one `i32` per weight row, matrix after matrix in [`Proj`]'s order, made once
//! per forward pass for all `num_hidden_layers` applications of the layer.

use super::layer::Layer;
use crate::config::AlbertConfig;
use crate::format::{Matrix, MatrixData};
use crate::kernels;
use core::ops::Range;

/// One of the shared layer's weight matrices, in the order their GEMM weight sums are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proj {
    Query,
    Key,
    Value,
    Dense,
    Ffn,
    FfnOutput,
}

impl Proj {
    /// Every matrix, in layout order.
    const ALL: [Proj; 6] = [
        Proj::Query,
        Proj::Key,
        Proj::Value,
        Proj::Dense,
        Proj::Ffn,
        Proj::FfnOutput,
    ];
}

/// `i32` words of the shared layer's GEMM weight sums: one per row of Q, K, V, dense and the FFN's two matrices
/// (each input is one block: one activation scale per token).
pub(crate) const fn layer_sums_len(c: &AlbertConfig) -> usize {
    5 * c.hidden_size + c.intermediate_size
}

/// The weight sums of every matrix of the layer (empty where the arena has none), looked up by matrix and rows.
#[derive(Clone, Copy)]
pub(super) struct LayerSums<'a> {
    all: &'a [i32],
    starts: [usize; 6],
}

impl<'a> LayerSums<'a> {
    /// The sums laid out in `all` for `layer`'s matrices.
    pub(super) fn new(layer: &Layer, all: &'a [i32]) -> Self {
        LayerSums {
            all,
            starts: layer.sums_starts(),
        }
    }

    /// The sums of rows `rows` of matrix `m` (empty where there are none).
    pub(super) fn rows(&self, m: Proj, rows: Range<usize>) -> &'a [i32] {
        let start = self.starts[m as usize];
        self.all
            .get(start + rows.start..start + rows.end)
            .unwrap_or(&[])
    }
}

impl<'a> Layer<'a> {
    /// Where each matrix's weight sums start (one per row).
    fn sums_starts(&self) -> [usize; 6] {
        let mut at = 0;
        Proj::ALL.map(|m| {
            let start = at;
            at += self.matrix(m).0.rows;
            start
        })
    }

    /// Fills `sums` (empty, or [`layer_sums_len`] words) with the GEMM weight sums of every matrix.
    pub(crate) fn prepare_sums(&self, sums: &mut [i32]) {
        let starts = self.sums_starts();
        for m in Proj::ALL {
            let (w, _) = self.matrix(m);
            let start = starts[m as usize];
            let Some(out) = sums.get_mut(start..start + w.rows) else {
                return;
            };
            if let MatrixData::I8 { values, .. } = w.data {
                kernels::gemm_weight_sums(values, w.cols, w.cols.max(1), out);
            }
        }
    }

    /// Matrix `m` and its bias.
    pub(super) fn matrix(&self, m: Proj) -> (&Matrix<'a>, &'a [f32]) {
        match m {
            Proj::Query => (&self.query, self.query_bias),
            Proj::Key => (&self.key, self.key_bias),
            Proj::Value => (&self.value, self.value_bias),
            Proj::Dense => (&self.dense, self.dense_bias),
            Proj::Ffn => (&self.ffn, self.ffn_bias),
            Proj::FfnOutput => (&self.ffn_output, self.ffn_output_bias),
        }
    }
}
