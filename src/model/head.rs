//! Pooler (dense + tanh on the `[CLS]` token) and classifier.

use super::linear::{add_side, linear_i8, F32Linear};
use super::observer::{Observer, Site};
use crate::format::{Matrix, Model};
use crate::{math, quant};

/// The pooler and classifier weights, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pooler: Matrix<'a>,         // (H, H)
    pooler_bias: &'a [f32],     // (H)
    classifier: Matrix<'a>,     // (labels, H)
    classifier_bias: &'a [f32], // (labels)
}

impl<'a> Head<'a> {
    /// Borrows the head's weights from a validated model.
    pub fn load(model: &Model<'a>) -> Self {
        let w = model.weights();
        Head {
            pooler: w.pooler_weight,
            pooler_bias: w.pooler_bias,
            classifier: w.classifier_weight,
            classifier_bias: w.classifier_bias,
        }
    }

    /// f32 reference: `logits = classifier(tanh(pooler(cls)))`, each a one-token `lin` call; `row` is scratch of
    /// at least H.
    pub(crate) fn forward_f32<L: F32Linear + ?Sized>(
        &self,
        cls: &[f32],
        row: &mut [f32],
        logits: &mut [f32],
        obs: &mut impl Observer,
        lin: &mut L,
    ) {
        let pooled = &mut row[..self.pooler.rows];
        obs.linear_input(Site::Pooler, 0, cls);
        lin.linear(Site::Pooler, &self.pooler, self.pooler_bias, cls, pooled);
        pooled.iter_mut().for_each(|x| *x = math::tanh(*x));
        obs.linear_input(Site::Classifier, 0, pooled);
        lin.linear(
            Site::Classifier,
            &self.classifier,
            self.classifier_bias,
            pooled,
            logits,
        );
    }

    /// int8 engine: `cls` is the `[CLS]` row of the residual stream (`f32`); each linear layer's input is
    /// quantised with one scale, its side columns out. `row` holds at least H values, `qrow` H, `acc` H.
    pub(crate) fn forward_i8(
        &self,
        cls: &[f32],
        acc: &mut [i32],
        row: &mut [f32],
        qrow: &mut [i8],
        logits: &mut [f32],
    ) {
        let h = self.pooler.rows;
        let (qrow, row) = (&mut qrow[..h], &mut row[..h]);
        let xs = quant::quantize_row_except(cls, self.pooler.side.cols, qrow);
        let pooled = linear_i8(&self.pooler, 0, qrow, xs, self.pooler_bias, &mut acc[..h]);
        add_side(&self.pooler, 0, h, cls, pooled);
        pooled.iter_mut().for_each(|x| *x = math::tanh(*x));
        row.copy_from_slice(pooled);
        let ps = quant::quantize_row_except(row, self.classifier.side.cols, qrow);
        let labels = logits.len();
        let out = linear_i8(
            &self.classifier,
            0,
            qrow,
            ps,
            self.classifier_bias,
            &mut acc[..labels],
        );
        add_side(&self.classifier, 0, labels, row, out);
        logits.copy_from_slice(out);
    }
}
