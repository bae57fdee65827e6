//! One head's scaled dot-product attention in the int8 engine, for a range of query tokens: scores against the
//! head's 16-bit keys, the masked softmax, and P.V on its int8 values (see `QUANTIZATION.md`).

use super::jobs::token_work;
use super::linear::as_f32;
use super::Inputs;
use crate::kernels;
use crate::kernels::attention::{Keys, Values};
use crate::parallel::{split_rows, TokenRows, MAX_JOBS};
use crate::quant;

/// Query rows whose softmax sums run side by side ([`kernels::masked_softmax_rows`]), given the scratch.
const SOFTMAX_ROWS: usize = 8;

/// `f32` values of scratch one attention job needs ([`HeadAttention`]): a query row (`d` `i16`), the scores and
/// then the context of [`SOFTMAX_ROWS`] queries (`max(seq, d)` `i32` each) and the quantised probabilities (`seq`
/// `u8`).
pub(crate) const fn attention_scratch_len(seq: usize, d: usize) -> usize {
    d.div_ceil(2) + SOFTMAX_ROWS * if seq > d { seq } else { d } + seq.div_ceil(4)
}

/// Rows of [`HeadAttention`], and scratch for one job or more.
pub(super) struct QueryRows<'a> {
    /// (tokens, d): the head's queries.
    pub queries: &'a mut [f32],
    /// (tokens, H): the context rows; this head writes columns `r0..r0 + d`.
    pub ctx: &'a mut [f32],
    /// [`attention_scratch_len`] values per job.
    pub scratch: &'a mut [f32],
    pub d: usize,
    pub h: usize,
    /// `attention_scratch_len(seq, d)`.
    pub scratch_per_job: usize,
}

impl TokenRows for QueryRows<'_> {
    fn split_front(&mut self, tokens: usize) -> Self {
        QueryRows {
            queries: split_rows(&mut self.queries, tokens, self.d),
            ctx: split_rows(&mut self.ctx, tokens, self.h),
            scratch: split_rows(&mut self.scratch, 1, self.scratch_per_job),
            ..*self
        }
    }

    fn max_jobs(&self) -> usize {
        let per_job = self.scratch_per_job;
        self.scratch.len().checked_div(per_job).unwrap_or(MAX_JOBS)
    }
}

/// What one run of [`HeadAttention::body_with`] works in.
pub(super) struct AttentionScratch<'a> {
    /// (d): one query row in 16 bits.
    pub q: &'a mut [i16],
    /// (group, max(seq, d)): the scores, then the context, of up to [`SOFTMAX_ROWS`] queries whose softmax runs
    /// together (at least one); the scores as `f32` bits.
    pub acc: &'a mut [i32],
    /// (seq): one query's quantised probabilities.
    pub probs: &'a mut [u8],
}

/// One head's attention for a range of query tokens ([`QueryRows`]).
pub(super) struct HeadAttention<'a> {
    pub keys: &'a Keys<'a>,
    pub values: &'a Values<'a>,
    pub k_scale: &'a [f32],
    pub v_scale: &'a [f32],
    pub v_sum: &'a [i32],
    pub inputs: &'a Inputs<'a>,
    pub d: usize,
    pub h: usize,
    /// The head's first column.
    pub r0: usize,
    pub qmax: i32,
    pub inv_sqrt_d: f32,
}

impl HeadAttention<'_> {
    #[inline(always)]
    fn body(&self, r: QueryRows<'_>) {
        let (seq, d) = (self.k_scale.len(), self.d);
        let (q, rest) = r.scratch.split_at_mut(d.div_ceil(2).min(r.scratch.len()));
        let (acc, probs) = rest.split_at_mut((SOFTMAX_ROWS * seq.max(d)).min(rest.len()));
        let q: &mut [i16] = bytemuck::cast_slice_mut(q);
        let acc: &mut [i32] = bytemuck::cast_slice_mut(acc);
        let probs: &mut [u8] = bytemuck::cast_slice_mut(probs);
        if q.len() < d || acc.len() < seq.max(d) || probs.len() < seq {
            return; // `run_tokens` gives every job `attention_scratch_len` values
        }
        let scratch = AttentionScratch {
            q: &mut q[..d],
            acc,
            probs: &mut probs[..seq],
        };
        self.body_with(r.queries, r.ctx, scratch);
    }

    /// For each query row of `y`: the scores against every key, the masked softmax, P.V with V's per-token scales
    /// folded into P, and the context into the token's columns of `ctx`.
    #[inline(always)]
    pub(super) fn body_with(&self, y: &mut [f32], ctx: &mut [f32], scratch: AttentionScratch) {
        let AttentionScratch { q, acc, probs } = scratch;
        let (seq, d, r0) = (self.k_scale.len(), self.d, self.r0);
        let w = seq.max(d);
        let group = (acc.len() / w.max(1)).clamp(1, SOFTMAX_ROWS);
        let mut rows = y.chunks_exact(d).zip(ctx.chunks_exact_mut(self.h));
        loop {
            // Up to `group` queries: their scores, one slot of `acc` each.
            let mut taken: [Option<&mut [f32]>; SOFTMAX_ROWS] = Default::default();
            let mut n = 0;
            for (slot, (y, ctx)) in acc.chunks_exact_mut(w).zip(&mut rows).take(group) {
                let qs = quant::quantize_row_i16(y, self.qmax, q) * self.inv_sqrt_d;
                let scores = &mut slot[..seq];
                self.keys.scores(q, scores);
                for (a, &ks) in scores.iter_mut().zip(self.k_scale) {
                    *a = (*a as f32 * (qs * ks)).to_bits() as i32;
                }
                taken[n] = Some(ctx);
                n += 1;
            }
            if n == 0 {
                return;
            }
            let scores = as_f32(&mut acc[..n * w]);
            kernels::masked_softmax_rows(scores, w, seq, n, |j| self.inputs.attends(j));
            for (slot, taken) in acc.chunks_exact_mut(w).zip(&mut taken[..n]) {
                let Some(ctx) = taken.take() else {
                    continue;
                };
                let scores = as_f32(&mut slot[..seq]);
                scores
                    .iter_mut()
                    .zip(self.v_scale)
                    .for_each(|(p, &vs)| *p *= vs);
                let ps = quant::quantize_row_u8(scores, probs);
                let context = &mut slot[..d];
                self.values.attend(probs, self.v_sum, context);
                for (c, &a) in ctx[r0..r0 + d].iter_mut().zip(context.iter()) {
                    *c = a as f32 * ps;
                }
            }
        }
    }
}

token_work!(HeadAttention<'_>, QueryRows);
