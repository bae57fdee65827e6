//! The shared layer in the int8 engine (numeric contract 2): every linear layer's input quantised per token, Q
//! and K in 16 bits, attention probabilities u8 and V int8, the residual stream, LayerNorm, softmax and the
//! activation in `f32`; attention head by head, the linear layers `tile` tokens at a time.

use super::attention::{attention_scratch_len, AttentionScratch, HeadAttention, QueryRows};
use super::jobs::{add_norm, quantize_rows, Activate, ActivateRows};
use super::layer::{Gemms, Layer};
use super::plan::Int8Scratch;
use super::weight_sums::{LayerSums, Proj};
use super::Inputs;
use crate::kernels::attention::{Keys, Values};
use crate::kernels::GemmInput;
use crate::parallel::{self, Parallel};
use crate::{kernels, math, quant};

impl Layer<'_> {
    /// One application of the layer to `s.hidden` (seq, H, `f32`: the residual stream), in place, for the first
    /// `outputs` tokens (`1..=seq`; anything else means `seq`): K and V come from every token, but queries, the
    /// dense layer and the FFN run for those tokens only, and the hidden state of the others is left as it was.
    /// The last application needs only `[CLS]`, the one token the pooler reads; each token's output depends only
    /// on its own query and on every token's K and V, so `[CLS]` comes out the same bits either way.
    ///
    /// The whole step runs through [`kernels::simd::vectorized_256`]: on x86-64 with `std` it is compiled for
    /// AVX2 where the CPU has it, so the compiler vectorises the element-wise loops (softmax, quantisation,
    /// LayerNorm, GELU, the 16-bit scores) 8 lanes wide instead of 4, with the same bits.
    pub(crate) fn forward_i8(&self, inputs: &Inputs, s: &mut Int8Scratch, outputs: usize) {
        kernels::simd::vectorized_256(
            #[inline(always)]
            || self.forward_i8_body(inputs, s, outputs),
        )
    }

    #[inline(always)]
    fn forward_i8_body(&self, inputs: &Inputs, s: &mut Int8Scratch, outputs: usize) {
        let seq = inputs.input_ids.len();
        let step = Step {
            seq,
            outputs: if (1..=seq).contains(&outputs) {
                outputs
            } else {
                seq
            },
            tile: s.tile.clamp(1, seq.max(1)),
            h: self.query.rows,
        };
        self.attention_i8(inputs, s, step);
        self.dense_i8(s, step);
        self.ffn_i8(s, step);
    }

    /// What the linear layers of a sub-step share, from the scratch.
    #[inline(always)]
    fn gemms<'e>(&self, sums: &'e [i32], par: &'e dyn Parallel, stage: &'e mut [f32]) -> Gemms<'e> {
        Gemms {
            sums: LayerSums::new(self, sums),
            par,
            stage,
        }
    }

    /// Self-attention into `s.ctx` for the first `step.outputs` tokens: Q, K and V from the hidden state quantised
    /// once, then head by head K and V for every token and each output token's attention row.
    #[inline(always)]
    fn attention_i8(&self, inputs: &Inputs, s: &mut Int8Scratch, step: Step) {
        let Step {
            seq,
            outputs,
            tile,
            h,
        } = step;
        let heads = self.heads;
        let d = h / heads;
        let inv_sqrt_d = 1.0 / math::sqrt(d as f32);
        let qmax = quant::qmax_i16_for_dot(d);
        let all_attend = inputs.all_attend();
        let mut gemms = self.gemms(s.sums, s.par, s.stage);

        // Q, K and V read the hidden state quantised once, one scale per token, the query's side columns out.
        let (x, xq, xs) = (&s.hidden[..seq * h], &mut s.xq[..seq * h], &mut s.xs[..seq]);
        quantize_rows(s.par, x, h, self.query.side.cols, xq, xs);

        // With the whole sequence in one tile, the input is prepared for the GEMM once; otherwise once per head
        // and tile (`tile_work`).
        let whole = tile >= seq;
        let (shared_work, tile_work) = if whole {
            (&mut *s.work, &mut [][..])
        } else {
            (&mut [][..], &mut *s.work)
        };
        let shared =
            whole.then(|| GemmInput::new(&s.xq[..seq * h], h, h, &s.xs[..seq], seq, shared_work));
        for head in 0..heads {
            let r0 = head * d;
            let cols = r0..r0 + d;
            // The plan sizes both buffers with `keys_len` / `values_len`, so these always exist.
            let (Some(mut keys), Some(mut values)) =
                (Keys::new(s.k, seq, d), Values::new(s.vt, seq, d))
            else {
                return;
            };
            // K (16 bits) and V (8 bits) of this head for every token, one scale per token, `tile` tokens per
            // GEMM.
            for t0 in (0..seq).step_by(tile) {
                let tn = tile.min(seq - t0);
                let mut local = None;
                let (x, xs) = (&s.xq[t0 * h..(t0 + tn) * h], &s.xs[t0..t0 + tn]);
                let input = shared_or_tile(&shared, &mut local, x, h, xs, tn, tile_work);
                let x = &s.hidden[t0 * h..(t0 + tn) * h];
                let y = self.project(Proj::Key, cols.clone(), input, x, s.out, &mut gemms);
                for (tt, y) in y.chunks_exact(d).enumerate() {
                    let t = t0 + tt;
                    s.k_scale[t] = quant::quantize_row_i16(y, qmax, &mut s.rows_i16[..d]);
                    keys.set(t, &s.rows_i16[..d]);
                }
                let y = self.project(Proj::Value, cols.clone(), input, x, s.out, &mut gemms);
                for (tt, y) in y.chunks_exact(d).enumerate() {
                    let t = t0 + tt;
                    s.v_scale[t] = quant::quantize_row(y, &mut s.rows_i8[..d]);
                    values.set(t, &s.rows_i8[..d]);
                }
            }
            values.prepare_sums(&mut s.v_sum[..d]);
            // Q rows a tile at a time; then one query at a time: scores, softmax, then P.V with V's per-token
            // scales folded into P. (With fewer `outputs` than tokens, the GEMM on the shared input runs for
            // just those tokens: it computes as many tokens as `out` holds.)
            for t0 in (0..outputs).step_by(tile) {
                let tn = tile.min(outputs - t0);
                let mut local = None;
                let (x, xs) = (&s.xq[t0 * h..(t0 + tn) * h], &s.xs[t0..t0 + tn]);
                let input = shared_or_tile(&shared, &mut local, x, h, xs, tn, tile_work);
                let x = &s.hidden[t0 * h..(t0 + tn) * h];
                let y = self.project(Proj::Query, cols.clone(), input, x, s.out, &mut gemms);
                let work = HeadAttention {
                    keys: &keys,
                    values: &values,
                    k_scale: &s.k_scale[..seq],
                    v_scale: &s.v_scale[..seq],
                    v_sum: &s.v_sum[..d],
                    inputs,
                    all_attend,
                    d,
                    h,
                    r0,
                    qmax,
                    inv_sqrt_d,
                };
                let ctx = &mut s.ctx[t0 * h..(t0 + tn) * h];
                let per_job = attention_scratch_len(seq, d);
                if s.par.threads() > 1 && gemms.stage.len() >= 2 * per_job {
                    let rows = QueryRows {
                        queries: &mut *y,
                        ctx,
                        scratch: &mut *gemms.stage,
                        d,
                        h,
                        scratch_per_job: per_job,
                    };
                    parallel::run_tokens(s.par, tn, 2, rows, &work);
                } else {
                    // The speed arena's staging buffer holds the scores of several queries at once.
                    let acc: &mut [i32] = if gemms.stage.len() >= 2 * seq.max(d) {
                        bytemuck::cast_slice_mut(&mut *gemms.stage)
                    } else {
                        &mut s.acc[..seq.max(d)]
                    };
                    let scratch = AttentionScratch {
                        q: &mut *s.rows_i16,
                        acc,
                        probs: &mut *s.probs,
                    };
                    work.body_with(y, ctx, scratch);
                }
            }
        }
    }

    /// Dense on the context (quantised per token, the dense layer's side columns out), then add & LayerNorm,
    /// `tile` tokens per GEMM.
    #[inline(always)]
    fn dense_i8(&self, s: &mut Int8Scratch, step: Step) {
        let Step {
            outputs, tile, h, ..
        } = step;
        let mut gemms = self.gemms(s.sums, s.par, s.stage);
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let ctx = &s.ctx[t0 * h..(t0 + tn) * h];
            let (qx, qs) = (&mut s.rows_i8[..tn * h], &mut s.rows_i8_scale[..tn]);
            quantize_rows(s.par, ctx, h, self.dense.side.cols, qx, qs);
            let input = GemmInput::new(qx, h, h, qs, tn, s.work);
            self.project(Proj::Dense, 0..h, &input, ctx, s.out, &mut gemms);
            let hidden = &mut s.hidden[t0 * h..(t0 + tn) * h];
            add_norm(s.par, s.out, hidden, h, &self.attention_norm());
        }
    }

    /// FFN, add & LayerNorm, `tile` tokens at a time: the intermediate exists for the tile's tokens only; the
    /// first GEMM runs in chunks of at most H rows (what `out` holds per token), the activation written into the
    /// tile's `f32` intermediate rows, which are then quantised whole, one scale per token.
    #[inline(always)]
    fn ffn_i8(&self, s: &mut Int8Scratch, step: Step) {
        let Step {
            outputs, tile, h, ..
        } = step;
        let i_size = self.ffn.rows;
        let mut gemms = self.gemms(s.sums, s.par, s.stage);
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let x = &s.hidden[t0 * h..(t0 + tn) * h];
            let (qx, qs) = (&mut s.rows_i8[..tn * h], &mut s.rows_i8_scale[..tn]);
            quantize_rows(s.par, x, h, self.ffn.side.cols, qx, qs);
            let input = GemmInput::new(qx, h, h, qs, tn, s.work);
            for c0 in (0..i_size).step_by(h) {
                let cn = h.min(i_size - c0);
                let chunk = self.project(Proj::Ffn, c0..c0 + cn, &input, x, s.out, &mut gemms);
                let rows = ActivateRows {
                    chunk,
                    inter: &mut s.inter[..tn * i_size],
                    chunk_len: cn,
                    i_size,
                };
                parallel::run_tokens(s.par, tn, 2, rows, &Activate { act: self.act, c0 });
            }
            let inter = &s.inter[..tn * i_size];
            let (qx, qs) = (&mut s.rows_i8[..tn * i_size], &mut s.rows_i8_scale[..tn]);
            quantize_rows(s.par, inter, i_size, self.ffn_output.side.cols, qx, qs);
            let input = GemmInput::new(qx, i_size, i_size, qs, tn, s.work);
            self.project(Proj::FfnOutput, 0..h, &input, inter, s.out, &mut gemms);
            let hidden = &mut s.hidden[t0 * h..(t0 + tn) * h];
            add_norm(s.par, s.out, hidden, h, &self.ffn_norm());
        }
    }
}

/// The sizes of one application of the layer.
#[derive(Clone, Copy)]
struct Step {
    /// Tokens in the sequence.
    seq: usize,
    /// Tokens whose outputs are computed (`1..=seq`).
    outputs: usize,
    /// Tokens per GEMM (`1..=seq`).
    tile: usize,
    /// H
    h: usize,
}

/// The GEMM input for a tile of the quantised hidden state: `shared` when it covers the whole sequence, otherwise
/// the tile's tokens `x` (`tn` rows of `cols`, scales `xs`) prepared into `local` with `work`.
fn shared_or_tile<'x>(
    shared: &'x Option<GemmInput<'x>>,
    local: &'x mut Option<GemmInput<'x>>,
    x: &'x [i8],
    cols: usize,
    xs: &'x [f32],
    tn: usize,
    work: &'x mut [u32],
) -> &'x GemmInput<'x> {
    match shared {
        Some(input) => input,
        None => local.insert(GemmInput::new(x, cols, cols, xs, tn, work)),
    }
}
