//! The shared layer in `f32`: the host reference, which the converter calibrates on and tests measure the engine
//! against. Weights are dequantised on the fly when the blob is int8.

use super::layer::Layer;
use super::linear::linear_f32;
use super::observer::{Observer, Site};
use super::plan::F32Scratch;
use super::weight_sums::Proj;
use super::Inputs;
use crate::kernels::{dot_f32, layer_norm_f32, masked_softmax_f32};
use crate::math;

impl Layer<'_> {
    /// One application of the layer to `s.hidden` (seq, H), in place; `obs` sees each linear's input (pass `pass`).
    pub(crate) fn forward_f32(
        &self,
        inputs: &Inputs,
        s: &mut F32Scratch,
        pass: usize,
        obs: &mut impl Observer,
    ) {
        let seq = inputs.input_ids.len();
        let h = self.query.rows;
        let d = h / self.heads;
        let i_size = self.ffn.rows;

        for t in 0..seq {
            let x = &s.hidden[t * h..(t + 1) * h];
            obs.linear_input(Site::Query, pass, x);
            obs.linear_input(Site::Key, pass, x);
            obs.linear_input(Site::Value, pass, x);
            for (m, out) in [
                (Proj::Query, &mut *s.q),
                (Proj::Key, &mut *s.k),
                (Proj::Value, &mut *s.v),
            ] {
                let (w, bias) = self.matrix(m);
                linear_f32(w, 0, x, bias, &mut out[t * h..(t + 1) * h]);
            }
        }

        // Attention, head by head: softmax(q k^T / sqrt(d) + mask) v.
        let sqrt_d = math::sqrt(d as f32);
        let all_attend = inputs.all_attend();
        for head in 0..self.heads {
            let cols = head * d..(head + 1) * d;
            for t in 0..seq {
                let q = &s.q[t * h..][cols.clone()];
                let scores = &mut s.scores[..seq];
                for (j, score) in scores.iter_mut().enumerate() {
                    *score = dot_f32(q, &s.k[j * h..][cols.clone()]) / sqrt_d;
                }
                if all_attend {
                    masked_softmax_f32(scores, |_| true);
                } else {
                    masked_softmax_f32(scores, |j| inputs.attends(j));
                }
                let out = &mut s.ctx[t * h..][cols.clone()];
                out.iter_mut().for_each(|o| *o = 0.0);
                for (j, &p) in scores.iter().enumerate() {
                    let v = &s.v[j * h..][cols.clone()];
                    out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
                }
            }
        }

        // Dense, add & LayerNorm, token by token, in place.
        for t in 0..seq {
            let row = &mut s.row[..h];
            obs.linear_input(Site::Dense, pass, &s.ctx[t * h..(t + 1) * h]);
            linear_f32(
                &self.dense,
                0,
                &s.ctx[t * h..(t + 1) * h],
                self.dense_bias,
                row,
            );
            let x = &mut s.hidden[t * h..(t + 1) * h];
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(
                row,
                self.attention_ln_weight,
                self.attention_ln_bias,
                self.eps,
            );
            x.copy_from_slice(row);
        }

        // FFN, add & LayerNorm, token by token, in place.
        for t in 0..seq {
            let x = &mut s.hidden[t * h..(t + 1) * h];
            let inter = &mut s.inter[..i_size];
            obs.linear_input(Site::Ffn, pass, x);
            linear_f32(&self.ffn, 0, x, self.ffn_bias, inter);
            math::activate(self.act, inter);
            obs.linear_input(Site::FfnOutput, pass, inter);
            let row = &mut s.row[..h];
            linear_f32(&self.ffn_output, 0, inter, self.ffn_output_bias, row);
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(row, self.full_ln_weight, self.full_ln_bias, self.eps);
            x.copy_from_slice(row);
        }
    }
}
