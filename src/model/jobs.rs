//! The int8 engine's token-by-token steps as [`crate::parallel::TokenWork`] on named per-token buffers
//! ([`TokenRows`]), for [`parallel::run_tokens`]: quantisation, add & LayerNorm, and the FFN's activation.
//! (Attention rows are in [`super::attention`].)

use crate::config::Activation;
use crate::parallel::{self, split_rows, Parallel, TokenRows};
use crate::{kernels, math, quant};

/// `TokenWork<$rows>` for a type with an `#[inline(always)] fn body(&self, $rows)`, run through
/// [`kernels::simd::vectorized`]: compiled for the widest vectors the CPU has (AVX-512 or AVX2 on x86-64 hosts),
/// like the layer step (`Layer::forward_i8`), so that jobs run vectorised loops on any thread. The same bits in
/// every variant.
macro_rules! token_work {
    ($t:ty, $rows:ident) => {
        impl<'r> $crate::parallel::TokenWork<$rows<'r>> for $t {
            fn run(&self, rows: $rows<'r>) {
                $crate::kernels::simd::vectorized(
                    #[inline(always)]
                    || self.body(rows),
                )
            }
        }
    };
}
pub(super) use token_work;

// ---------------------------------------------------------------------------------------------------------------
// Quantisation: one activation scale per token
// ---------------------------------------------------------------------------------------------------------------

/// Rows of [`Quantize`]: `cols` values per token.
pub(super) struct QuantizeRows<'a> {
    /// (tokens, cols): the `f32` inputs.
    pub x: &'a [f32],
    /// (tokens, cols): their int8 values.
    pub q: &'a mut [i8],
    /// (tokens): one scale each.
    pub scales: &'a mut [f32],
    pub cols: usize,
}

impl TokenRows for QuantizeRows<'_> {
    fn split_front(&mut self, tokens: usize) -> Self {
        let (x, rest) = self.x.split_at((tokens * self.cols).min(self.x.len()));
        self.x = rest;
        QuantizeRows {
            x,
            q: split_rows(&mut self.q, tokens, self.cols),
            scales: split_rows(&mut self.scales, tokens, 1),
            cols: self.cols,
        }
    }
}

/// One activation scale per token, the channels `side` out ([`quant::quantize_row_except`]).
pub(super) struct Quantize<'a> {
    pub side: &'a [u32],
}

impl Quantize<'_> {
    #[inline(always)]
    fn body(&self, r: QuantizeRows<'_>) {
        let rows = r.x.chunks_exact(r.cols).zip(r.q.chunks_exact_mut(r.cols));
        for ((x, q), s) in rows.zip(r.scales.iter_mut()) {
            *s = quant::quantize_row_except(x, self.side, q);
        }
    }
}

token_work!(Quantize<'_>, QuantizeRows);

/// Quantises the rows of `x` (`cols` wide) into `q`, one scale each into `scales` (one per token), the channels
/// `side` out; the rows are shared out between threads by `par`.
pub(super) fn quantize_rows(
    par: &dyn Parallel,
    x: &[f32],
    cols: usize,
    side: &[u32],
    q: &mut [i8],
    scales: &mut [f32],
) {
    let tokens = scales.len();
    let rows = QuantizeRows { x, q, scales, cols };
    parallel::run_tokens(par, tokens, 4, rows, &Quantize { side });
}

// ---------------------------------------------------------------------------------------------------------------
// Add & LayerNorm
// ---------------------------------------------------------------------------------------------------------------

/// Rows of [`AddNorm`]: `h` values per token in each buffer.
pub(super) struct AddNormRows<'a> {
    /// (tokens, H): the sub-layer's outputs (overwritten).
    pub sublayer: &'a mut [f32],
    /// (tokens, H): the residual stream, which receives the result.
    pub hidden: &'a mut [f32],
    pub h: usize,
}

impl TokenRows for AddNormRows<'_> {
    fn split_front(&mut self, tokens: usize) -> Self {
        AddNormRows {
            sublayer: split_rows(&mut self.sublayer, tokens, self.h),
            hidden: split_rows(&mut self.hidden, tokens, self.h),
            h: self.h,
        }
    }
}

/// `hidden[t] = LayerNorm(sublayer[t] + hidden[t])`, token by token.
pub(super) struct AddNorm<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub eps: f32,
}

impl AddNorm<'_> {
    #[inline(always)]
    fn body(&self, r: AddNormRows<'_>) {
        // Several tokens side by side: the same bits as `layer_norm_f32` token by token.
        kernels::add_layer_norm_rows(r.sublayer, r.hidden, r.h, self.gamma, self.beta, self.eps);
    }
}

token_work!(AddNorm<'_>, AddNormRows);

/// The end of a sub-layer for a tile of tokens: `hidden[t] = LayerNorm(out[t] + hidden[t])` (`norm`), with `out`
/// the sub-layer's outputs (H per token) and `hidden` the tile's rows of the residual stream. Tokens are shared
/// out between threads by `par`.
pub(super) fn add_norm(
    par: &dyn Parallel,
    out: &mut [f32],
    hidden: &mut [f32],
    h: usize,
    norm: &AddNorm,
) {
    let tn = hidden.len() / h.max(1);
    let rows = AddNormRows {
        sublayer: &mut out[..tn * h],
        hidden,
        h,
    };
    parallel::run_tokens(par, tn, 4, rows, norm);
}

// ---------------------------------------------------------------------------------------------------------------
// The FFN's activation
// ---------------------------------------------------------------------------------------------------------------

/// Rows of [`Activate`].
pub(super) struct ActivateRows<'a> {
    /// (tokens, `chunk_len`): a chunk of the FFN's first linear outputs.
    pub chunk: &'a mut [f32],
    /// (tokens, I): the tokens' `f32` intermediate rows.
    pub inter: &'a mut [f32],
    pub chunk_len: usize,
    pub i_size: usize,
}

impl TokenRows for ActivateRows<'_> {
    fn split_front(&mut self, tokens: usize) -> Self {
        ActivateRows {
            chunk: split_rows(&mut self.chunk, tokens, self.chunk_len),
            inter: split_rows(&mut self.inter, tokens, self.i_size),
            chunk_len: self.chunk_len,
            i_size: self.i_size,
        }
    }
}

/// The FFN's activation on a chunk of intermediate values per token, written into columns
/// `c0..c0 + chunk_len` of the token's intermediate row.
pub(super) struct Activate {
    pub act: Activation,
    pub c0: usize,
}

impl Activate {
    #[inline(always)]
    fn body(&self, r: ActivateRows<'_>) {
        let (c0, cn) = (self.c0, r.chunk_len);
        let rows = r.chunk.chunks_exact_mut(cn.max(1));
        for (y, inter) in rows.zip(r.inter.chunks_exact_mut(r.i_size.max(1))) {
            math::activate_to(self.act, y, &mut inter[c0..c0 + cn]);
        }
    }
}

token_work!(Activate, ActivateRows);
