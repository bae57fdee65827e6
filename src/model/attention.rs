//! One head's scaled dot-product attention in the int8 engine, for a range of query tokens: scores against the
//! head's 16-bit keys, the masked softmax, and P.V on its int8 values (see `QUANTIZATION.md`).

use super::jobs::token_work;
use super::linear::as_f32;
use super::Inputs;
use crate::kernels;
use crate::kernels::attention::{Keys, Values};
use crate::parallel::{split_rows, TokenRows, MAX_JOBS};
use crate::quant;

/// Query rows whose scores are computed before their softmaxes run ([`kernels::masked_softmax_rows`]).
pub(crate) const SOFTMAX_ROWS: usize = 8;

/// `f32` values of scratch one attention job needs ([`HeadAttention`]): for each of [`SOFTMAX_ROWS`] queries its
/// quantised row (`d` `i16`), its scores and then its context (`max(seq, d)` `i32`) and its quantised
/// probabilities (`seq` `u8`).
pub(crate) const fn attention_scratch_len(seq: usize, d: usize) -> usize {
    (SOFTMAX_ROWS * d).div_ceil(2)
        + SOFTMAX_ROWS * if seq > d { seq } else { d }
        + (SOFTMAX_ROWS * seq).div_ceil(4)
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

/// What one run of [`HeadAttention::body_with`] works in: room for up to [`SOFTMAX_ROWS`] queries at a time (at
/// least one).
pub(super) struct AttentionScratch<'a> {
    /// (queries, d): the query rows in 16 bits.
    pub q: &'a mut [i16],
    /// (queries, max(seq, d)): each query's scores (`f32` bits), then its context.
    pub acc: &'a mut [i32],
    /// (queries, seq): each query's quantised probabilities.
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
    /// `inputs.all_attend()`, taken once per layer: the softmax then runs without a mask.
    pub all_attend: bool,
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
        let (q, rest) = r
            .scratch
            .split_at_mut((SOFTMAX_ROWS * d).div_ceil(2).min(r.scratch.len()));
        let (acc, probs) = rest.split_at_mut((SOFTMAX_ROWS * seq.max(d)).min(rest.len()));
        let q: &mut [i16] = bytemuck::cast_slice_mut(q);
        let acc: &mut [i32] = bytemuck::cast_slice_mut(acc);
        let probs: &mut [u8] = bytemuck::cast_slice_mut(probs);
        if q.len() < d || acc.len() < seq.max(d) || probs.len() < seq {
            return; // `run_tokens` gives every job `attention_scratch_len` values
        }
        let scratch = AttentionScratch { q, acc, probs };
        self.body_with(r.queries, r.ctx, scratch);
    }

    /// For each query row of `y`: the scores against every key, the masked softmax, P.V with V's per-token scales
    /// folded into P, and the context into the token's columns of `ctx`. Up to [`SOFTMAX_ROWS`] queries at a
    /// time (as many as `q` holds rows of `d` and `acc` slots of `max(seq, d)`, at least one): quantised into
    /// `q`, their scores computed together, then each one's softmax and context.
    #[inline(always)]
    pub(super) fn body_with(&self, y: &mut [f32], ctx: &mut [f32], scratch: AttentionScratch) {
        let AttentionScratch { q, acc, probs } = scratch;
        let (seq, d, r0) = (self.k_scale.len(), self.d.max(1), self.r0);
        let w = seq.max(d);
        let group = (acc.len() / w)
            .min(q.len() / d)
            .min(probs.len() / seq.max(1))
            .clamp(1, SOFTMAX_ROWS);
        let mut rows = y.chunks_exact(d).zip(ctx.chunks_exact_mut(self.h));
        loop {
            // Up to `group` queries: quantised, then their scores, one slot of `acc` each.
            let mut taken: [Option<&mut [f32]>; SOFTMAX_ROWS] = Default::default();
            let mut q_scale = [0.0f32; SOFTMAX_ROWS];
            let mut n = 0;
            for ((qrow, (y, ctx)), qs) in q
                .chunks_exact_mut(d)
                .zip(&mut rows)
                .take(group)
                .zip(&mut q_scale)
            {
                *qs = quant::quantize_row_i16(y, self.qmax, qrow) * self.inv_sqrt_d;
                taken[n] = Some(ctx);
                n += 1;
            }
            if n == 0 {
                return;
            }
            self.keys.scores_many(&q[..n * d], n, &mut acc[..n * w], w);
            for (slot, &qs) in acc.chunks_exact_mut(w).zip(&q_scale[..n]) {
                for (a, &ks) in slot[..seq].iter_mut().zip(self.k_scale) {
                    *a = (*a as f32 * (qs * ks)).to_bits() as i32;
                }
            }
            let scores = as_f32(&mut acc[..n * w]);
            if self.all_attend {
                kernels::masked_softmax_rows(scores, w, seq, n, |_| true);
            } else {
                kernels::masked_softmax_rows(scores, w, seq, n, |j| self.inputs.attends(j));
            }
            // The probabilities with V's per-token scales folded in, quantised; then the contexts of all `n`
            // queries together, into their slots of `acc` (the scores are no longer needed).
            let mut p_scale = [0.0f32; SOFTMAX_ROWS];
            for ((slot, ps), pr) in acc
                .chunks_exact_mut(w)
                .zip(&mut p_scale[..n])
                .zip(probs.chunks_exact_mut(seq.max(1)))
            {
                let scores = as_f32(&mut slot[..seq]);
                scores
                    .iter_mut()
                    .zip(self.v_scale)
                    .for_each(|(p, &vs)| *p *= vs);
                *ps = quant::quantize_row_u8(scores, pr);
            }
            self.values
                .attend_many(&mut probs[..n * seq], n, self.v_sum, &mut acc[..n * w], w);
            for ((slot, taken), &ps) in acc.chunks_exact_mut(w).zip(&mut taken[..n]).zip(&p_scale) {
                let Some(ctx) = taken.take() else {
                    continue;
                };
                for (c, &a) in ctx[r0..r0 + d].iter_mut().zip(&slot[..d]) {
                    *c = a as f32 * ps;
                }
            }
        }
    }
}

token_work!(HeadAttention<'_>, QueryRows);
