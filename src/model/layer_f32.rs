//! The shared layer in `f32`: the host reference, which the converter calibrates on and tests measure the engine
//! against. Each linear layer is one [`F32Linear`] call over the whole sequence (by default one matrix-vector
//! product per token; int8 weights dequantised on the fly).

use super::layer::Layer;
use super::linear::F32Linear;
use super::observer::{Observer, Site};
use super::plan::F32Scratch;
use super::weight_sums::Proj;
use super::Inputs;
use crate::kernels::{dot_f32, layer_norm_f32, masked_softmax_f32};
use crate::math;

impl Layer<'_> {
    /// One application of the layer to `s.hidden` (seq, H), in place; `obs` sees each linear's input (pass `pass`),
    /// every token's row before `lin` computes that linear layer.
    pub(crate) fn forward_f32<L: F32Linear + ?Sized>(
        &self,
        inputs: &Inputs,
        s: &mut F32Scratch,
        pass: usize,
        obs: &mut impl Observer,
        lin: &mut L,
    ) {
        let seq = inputs.input_ids.len();
        let h = self.query.rows;
        let d = h / self.heads;
        let i_size = self.ffn.rows;
        let hidden = &mut s.hidden[..seq * h];

        for x in hidden.chunks_exact(h) {
            obs.linear_input(Site::Query, pass, x);
            obs.linear_input(Site::Key, pass, x);
            obs.linear_input(Site::Value, pass, x);
        }
        for (m, site, out) in [
            (Proj::Query, Site::Query, &mut *s.q),
            (Proj::Key, Site::Key, &mut *s.k),
            (Proj::Value, Site::Value, &mut *s.v),
        ] {
            let (w, bias) = self.matrix(m);
            lin.linear(site, w, bias, hidden, &mut out[..seq * h]);
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

        // Dense (into `q`, free once attention is done), add & LayerNorm, in place.
        let ctx = &s.ctx[..seq * h];
        for x in ctx.chunks_exact(h) {
            obs.linear_input(Site::Dense, pass, x);
        }
        let rows = &mut s.q[..seq * h];
        lin.linear(Site::Dense, &self.dense, self.dense_bias, ctx, rows);
        for (row, x) in rows.chunks_exact_mut(h).zip(hidden.chunks_exact_mut(h)) {
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(
                row,
                self.attention_ln_weight,
                self.attention_ln_bias,
                self.eps,
            );
            x.copy_from_slice(row);
        }

        // FFN (seq, I), activation, FFN output (into `q`), add & LayerNorm, in place.
        for x in hidden.chunks_exact(h) {
            obs.linear_input(Site::Ffn, pass, x);
        }
        let inter = &mut s.inter[..seq * i_size];
        lin.linear(Site::Ffn, &self.ffn, self.ffn_bias, hidden, inter);
        for row in inter.chunks_exact_mut(i_size) {
            math::activate(self.act, row);
            obs.linear_input(Site::FfnOutput, pass, row);
        }
        lin.linear(
            Site::FfnOutput,
            &self.ffn_output,
            self.ffn_output_bias,
            inter,
            rows,
        );
        for (row, x) in rows.chunks_exact_mut(h).zip(hidden.chunks_exact_mut(h)) {
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(row, self.full_ln_weight, self.full_ln_bias, self.eps);
            x.copy_from_slice(row);
        }
    }
}
