//! ALBERT's factorised embeddings: word + token type + position (width E), LayerNorm, then the E→H projection
//! (`encoder.embedding_hidden_mapping_in`).

use super::linear::{add_side, as_f32, linear_f32, F32Linear};
use super::observer::{Observer, Site};
use super::plan::Int8Scratch;
use super::Inputs;
use crate::format::{Matrix, MatrixData, Model};
use crate::kernels::{self, layer_norm_f32};

/// Tokens whose `mapping_in` projections run together in the speed arena ([`kernels::gemm_t_i8_f32`]).
pub(crate) const EMBED_TOKENS: usize = 4;

/// The embedding block's weights, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct Embeddings<'a> {
    word: Matrix<'a>,        // (vocab, E)
    position: Matrix<'a>,    // (max_positions, E)
    token_type: Matrix<'a>,  // (type_vocab, E)
    ln_weight: &'a [f32],    // (E)
    ln_bias: &'a [f32],      // (E)
    mapping_in: Matrix<'a>,  // (H, E)
    mapping_bias: &'a [f32], // (H)
    eps: f32,
}

impl<'a> Embeddings<'a> {
    /// Borrows the block's weights from a validated model.
    pub fn load(model: &Model<'a>) -> Self {
        let w = model.weights();
        Embeddings {
            word: w.word_embeddings,
            position: w.position_embeddings,
            token_type: w.token_type_embeddings,
            ln_weight: w.embeddings_ln_weight,
            ln_bias: w.embeddings_ln_bias,
            mapping_in: w.mapping_in_weight,
            mapping_bias: w.mapping_in_bias,
            eps: model.config().layer_norm_eps,
        }
    }

    /// `LayerNorm(word[id] + token_type[type] + position[t])` into `e` (E).
    fn embed(&self, inputs: &Inputs, t: usize, e: &mut [f32], tmp: &mut [f32]) {
        let id = inputs.input_ids.get(t).map_or(0, |&v| v as usize);
        self.word.row_f32(id, e);
        self.token_type.row_f32(inputs.token_type(t), tmp);
        e.iter_mut().zip(tmp.iter()).for_each(|(x, &y)| *x += y);
        self.position.row_f32(t, tmp);
        e.iter_mut().zip(tmp.iter()).for_each(|(x, &y)| *x += y);
        layer_norm_f32(e, self.ln_weight, self.ln_bias, self.eps);
    }

    /// f32 reference: `hidden` (seq, H) from the inputs; `rows` is scratch of at least (seq, E), `tmp` of E. The
    /// projection is one `lin` call over every token's embedding row.
    pub(crate) fn forward_f32<L: F32Linear + ?Sized>(
        &self,
        inputs: &Inputs,
        hidden: &mut [f32],
        rows: &mut [f32],
        tmp: &mut [f32],
        obs: &mut impl Observer,
        lin: &mut L,
    ) {
        let (e, h, seq) = (self.word.cols, self.mapping_in.rows, inputs.input_ids.len());
        let rows = &mut rows[..seq * e];
        for (t, row) in rows.chunks_exact_mut(e).enumerate() {
            self.embed(inputs, t, row, &mut tmp[..e]);
            obs.linear_input(Site::MappingIn, 0, row);
        }
        lin.linear(
            Site::MappingIn,
            &self.mapping_in,
            self.mapping_bias,
            rows,
            &mut hidden[..seq * h],
        );
    }

    /// int8 engine: fills the residual stream `s.hidden` (`f32`) for every token. The E-wide embedding row stays
    /// `f32` through `mapping_in` (int8 weights dequantised on the fly, as the f32 reference does): at E = 128 it
    /// is about 1 % of the multiply-adds, and an 8-bit embedding row costs accuracy.
    ///
    /// With `s.mapping_t` (the speed arena: `mapping_in`'s int8 values transposed, see [`Self::prepare_mapping_t`])
    /// the projection runs one input column at a time over all H rows ([`kernels::gemv_t_i8_f32`]), which
    /// vectorises across rows; each row's sum still adds the same products in the same order from 0.0, so the bits
    /// are [`linear_f32`]'s. It runs through [`kernels::simd::vectorized_256`] (AVX2 on x86-64 hosts that have it).
    pub(crate) fn forward_i8(&self, inputs: &Inputs, s: &mut Int8Scratch) {
        kernels::simd::vectorized_256(
            #[inline(always)]
            || self.forward_i8_body(inputs, s),
        )
    }

    #[inline(always)]
    fn forward_i8_body(&self, inputs: &Inputs, s: &mut Int8Scratch) {
        let (e, h) = (self.word.cols, self.mapping_in.rows);
        let transposed = match self.mapping_in.data {
            MatrixData::I8 { scales, .. } if s.mapping_t.len() == e * h => Some(scales),
            _ => None,
        };
        let seq = inputs.input_ids.len();
        match transposed {
            Some(scales) => {
                // As many tokens at a time as `s.row` holds embedding rows (four in the speed arena).
                let group = (s.row.len() / e.max(1)).clamp(1, EMBED_TOKENS);
                for t0 in (0..seq).step_by(group) {
                    let n = group.min(seq - t0);
                    for (t, row) in (t0..t0 + n).zip(s.row.chunks_exact_mut(e.max(1))) {
                        // The token-type and position rows pass through the accumulator, viewed as f32.
                        self.embed(inputs, t, &mut row[..e], &mut as_f32(s.acc)[..e]);
                    }
                    let (x, y) = (&s.row[..n * e], &mut s.hidden[t0 * h..(t0 + n) * h]);
                    kernels::gemm_t_i8_f32(s.mapping_t, h, x, e, n, scales, self.mapping_bias, y);
                    for (x, y) in x.chunks_exact(e.max(1)).zip(y.chunks_exact_mut(h.max(1))) {
                        add_side(&self.mapping_in, 0, h, x, y);
                    }
                }
            }
            None => {
                for t in 0..seq {
                    let row = &mut s.row[..e];
                    self.embed(inputs, t, row, &mut as_f32(s.acc)[..e]);
                    let y = &mut s.hidden[t * h..(t + 1) * h];
                    linear_f32(&self.mapping_in, 0, row, self.mapping_bias, y);
                }
            }
        }
    }

    /// Fills `mapping_t` (E x H, or empty) with `mapping_in`'s int8 values transposed: column `k` of the matrix
    /// becomes row `k`. Once per forward pass.
    pub(crate) fn prepare_mapping_t(&self, mapping_t: &mut [i8]) {
        let (e, h) = (self.mapping_in.cols, self.mapping_in.rows);
        if let MatrixData::I8 { values, .. } = self.mapping_in.data {
            if mapping_t.len() == e * h && values.len() >= e * h {
                // Eight rows of the matrix at a time: each column `k` then writes eight neighbouring bytes of
                // row `k` of `mapping_t`.
                let mut r0 = 0;
                for rows in values[..e * h].chunks(8 * e.max(1)) {
                    let n = rows.len() / e.max(1);
                    for (k, dst) in mapping_t.chunks_exact_mut(h.max(1)).enumerate() {
                        for (d, row) in dst[r0..r0 + n].iter_mut().zip(rows.chunks_exact(e.max(1)))
                        {
                            *d = row[k];
                        }
                    }
                    r0 += n;
                }
            }
        }
    }
}
