//! Pooler (dense + tanh on the `[CLS]` token) and classifier.

use super::linear::{linear_f32, linear_i8};
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

    /// f32 reference: `logits = classifier(tanh(pooler(cls)))`; `row` is scratch of at least H.
    pub(crate) fn forward_f32(
        &self,
        cls: &[f32],
        row: &mut [f32],
        logits: &mut [f32],
        obs: &mut impl Observer,
    ) {
        let pooled = &mut row[..self.pooler.rows];
        obs.linear_input(Site::Pooler, 0, cls);
        linear_f32(&self.pooler, 0, cls, self.pooler_bias, pooled);
        pooled.iter_mut().for_each(|x| *x = math::tanh(*x));
        obs.linear_input(Site::Classifier, 0, pooled);
        linear_f32(&self.classifier, 0, pooled, self.classifier_bias, logits);
    }

    /// int8 engine: `cls` is the `[CLS]` row of the hidden state with its `block`-wide block scales; `qrow_scale`
    /// holds at least `H / block` (rounded up) scales.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_i8(
        &self,
        cls: &[i8],
        cls_scales: &[f32],
        block: usize,
        acc: &mut [i32],
        qrow: &mut [i8],
        qrow_scale: &mut [f32],
        logits: &mut [f32],
    ) {
        let h = self.pooler.rows;
        let pooled = linear_i8(
            &self.pooler,
            0,
            cls,
            cls_scales,
            block,
            self.pooler_bias,
            &mut acc[..h],
        );
        pooled.iter_mut().for_each(|x| *x = math::tanh(*x));
        quant::quantize_blocks(pooled, block, &mut qrow[..h], qrow_scale);
        let out = linear_i8(
            &self.classifier,
            0,
            &qrow[..h],
            qrow_scale,
            block,
            self.classifier_bias,
            &mut acc[..logits.len()],
        );
        logits.copy_from_slice(out);
    }
}
