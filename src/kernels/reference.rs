//! Reference kernels: plain loops, obviously right. They are the specification every optimised kernel is tested
//! against (integer kernels bit for bit), and the fallback on targets without a faster one.

use crate::math;

/// `sum_i a[i] * b[i]` over `min(a.len(), b.len())` elements, exact in `i32` (no overflow for lengths below 2^17
/// with values in `-127..=127`).
#[inline]
pub fn dot_i8_i32(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// `out[r] = dot(w[r * cols .. (r + 1) * cols], x)` for every `r < out.len()` whose row lies inside `w`; outputs past
/// the last such row are left untouched. `w` is row-major `(out.len(), cols)`, `x` has `cols` elements (the dot
/// product runs over `min(cols, x.len())` of them; `cols == 0` gives 0).
pub fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let start = r.checked_mul(cols);
        let Some(row) = start.and_then(|s| w.get(s..s.checked_add(cols)?)) else {
            break;
        };
        *o = dot_i8_i32(row, x);
    }
}

/// Block-scaled GEMV into `f32`: `x` is `block`-wide int8 blocks (the last may be shorter), block `b` with scale
/// `x_scales[b]`; for every row `r < out.len()` that `w` (row-major, `cols` wide) holds,
/// `out[r] = sum_b dot(w[r][block b], x[block b]) as f32 * x_scales[b]`: each block's dot product exact in `i32`,
/// then converted, multiplied and added in `f32` from 0.0, blocks in order (a separate multiply and add, never
/// fused, so every target rounds the same way). Outputs past the rows of `w` are left untouched.
pub fn gemv_i8_blocks_f32(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    let block = block.max(1);
    for (r, o) in out.iter_mut().enumerate() {
        let start = r.checked_mul(cols);
        let Some(row) = start.and_then(|s| w.get(s..s.checked_add(cols)?)) else {
            break;
        };
        let mut f = 0.0f32;
        for ((wb, xb), &s) in row.chunks(block).zip(x.chunks(block)).zip(x_scales) {
            f += dot_i8_i32(wb, xb) as f32 * s;
        }
        *o = f;
    }
}

/// `out[r] = sum_c w[r * cols + c] * x[c]` for 16-bit values (the attention scores: rows of K times one Q row),
/// summed in `i32` with wrapping adds. Exact when `|w|, |x| <= qmax` with `qmax^2 * cols <= i32::MAX`
/// ([`quant::qmax_i16_for_dot`](crate::quant::qmax_i16_for_dot)), which is how the engine quantises Q and K.
/// Rows as [`gemv_i8_i32`].
#[inline(always)]
pub fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let start = r.checked_mul(cols);
        let Some(row) = start.and_then(|s| w.get(s..s.checked_add(cols)?)) else {
            break;
        };
        *o = row
            .iter()
            .zip(x)
            .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32));
    }
}

/// `y[j] = scales[j] * (sum_k wt[k * h + j] * x[k]) + bias[j]` for `j < min(h, y.len())`, the sum in `f32`
/// from 0.0 in the order of `k` (each product `wt as f32 * x[k]` rounded, then added): `mapping_in` on the `f32`
/// embedding row, with `wt` its int8 values transposed (row `k` of `h` values for each `x[k]`). A `wt` that ends
/// early cuts the sums short; `scales` or `bias` shorter than `y` leave the rest of `y` unscaled.
pub fn gemv_t_i8_f32(wt: &[i8], h: usize, x: &[f32], scales: &[f32], bias: &[f32], y: &mut [f32]) {
    let n = h.min(y.len());
    let y = &mut y[..n];
    y.iter_mut().for_each(|y| *y = 0.0);
    for (k, &x) in x.iter().enumerate() {
        let Some(col) = k.checked_mul(h).and_then(|s| wt.get(s..)) else {
            break;
        };
        y.iter_mut().zip(col).for_each(|(y, &q)| *y += q as f32 * x);
    }
    for ((y, &sc), &b) in y.iter_mut().zip(scales).zip(bias) {
        *y = sc * *y + b;
    }
}

/// [`gemv_t_i8_f32`] for `tokens` input rows of `e` values (`x[t * e..][..e]`) into output rows of `h`
/// (`y[t * h..][..h]`), token by token; tokens whose rows run past the end of `x` or `y` are left out.
#[allow(clippy::too_many_arguments)]
pub fn gemm_t_i8_f32(
    wt: &[i8],
    h: usize,
    x: &[f32],
    e: usize,
    tokens: usize,
    scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    for (x, y) in x
        .chunks_exact(e.max(1))
        .zip(y.chunks_exact_mut(h.max(1)))
        .take(tokens)
    {
        gemv_t_i8_f32(wt, h, &x[..e], scales, bias, y);
    }
}

/// [`gemv_i16_i32`] for several `x` rows (the attention's queries): for `i < queries`, `x`'s row `i`
/// (`x[i * cols..][..cols]`, shorter where `x` ends) times the first `rows` rows of `w` into
/// `out[i * stride..][..rows]` (shorter where `out` ends).
pub fn gemm_i16_i32(
    w: &[i16],
    cols: usize,
    rows: usize,
    x: &[i16],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    by_query(x, cols, rows, queries, out, stride, |xi, o| {
        gemv_i16_i32(w, cols, xi, o)
    })
}

/// [`gemv_i8_i32`] for several `x` rows (the attention's probability rows), as [`gemm_i16_i32`].
pub fn gemm_i8_i32(
    w: &[i8],
    cols: usize,
    rows: usize,
    x: &[i8],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    by_query(x, cols, rows, queries, out, stride, |xi, o| {
        gemv_i8_i32(w, cols, xi, o)
    })
}

/// `gemv(x row i, out row i)` for `i < queries`: row `i` of `x` is `x[i * cols..][..cols]` (shorter where `x`
/// ends), of `out` `out[i * stride..][..rows]` (shorter where `out` ends).
fn by_query<T>(
    x: &[T],
    cols: usize,
    rows: usize,
    queries: usize,
    out: &mut [i32],
    stride: usize,
    gemv: impl Fn(&[T], &mut [i32]),
) {
    for (i, o) in out.chunks_mut(stride.max(1)).take(queries).enumerate() {
        let xi = x.get(i.saturating_mul(cols)..).unwrap_or(&[]);
        let n = rows.min(o.len());
        gemv(&xi[..cols.min(xi.len())], &mut o[..n]);
    }
}

/// `out[r] = sum_c w[r * cols + c] * x[c]` with unsigned `x` (the attention probabilities, `0..=255`), exact in
/// `i32` (no overflow below 2^16 columns). Rows as [`gemv_i8_i32`].
pub fn gemv_u8_i8_i32(w: &[i8], cols: usize, x: &[u8], out: &mut [i32]) {
    for (r, o) in out.iter_mut().enumerate() {
        let start = r.checked_mul(cols);
        let Some(row) = start.and_then(|s| w.get(s..s.checked_add(cols)?)) else {
            break;
        };
        *o = row.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum();
    }
}

/// `sum_i a[i] * b[i]` in `f32`, accumulated left to right.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |acc, (&x, &y)| acc + x * y)
}

/// LayerNorm in place: `x = (x - mean) / sqrt(var + eps) * gamma + beta`, population variance, as PyTorch. The
/// two sums run in [`lane_sum`]'s fixed order.
#[inline(always)]
pub fn layer_norm_f32(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = x.len() as f32;
    if x.is_empty() {
        return;
    }
    #[cfg(target_arch = "aarch64")]
    let (sum, sq) = (super::neon_rows::lane_sum, |x: &[f32], m: f32| {
        super::neon_rows::lane_sum(x, Some(m))
    });
    #[cfg(target_arch = "x86_64")]
    let (sum, sq) = (super::x86_rows::lane_sum, |x: &[f32], m: f32| {
        super::x86_rows::lane_sum(x, Some(m))
    });
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    let (sum, sq) = (
        |x: &[f32], _: Option<f32>| lane_sum(x, |v| v),
        |x: &[f32], m: f32| lane_sum(x, |v| (v - m) * (v - m)),
    );
    let mean = sum(x, None) / n;
    let var = sq(x, mean) / n;
    layer_norm_apply(x, mean, var, gamma, beta, eps);
}

/// `sum_i f(x[i])` in a fixed order that the compiler vectorises without changing a bit: eight lanes, lane `l`
/// summing elements `8 k + l` of the whole chunks of eight in order (from -0.0, as `Iterator::sum`), the
/// remainder summed left to right, then `((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))` plus the remainder.
/// Every target and every kernel that sums a row this way gets the same bits.
#[inline(always)]
pub fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    const L: usize = 8;
    let mut lanes = [-0.0f32; L];
    let mut chunks = xs.chunks_exact(L);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l += f(x);
        }
    }
    let tail = chunks.remainder().iter().fold(-0.0f32, |s, &x| s + f(x));
    let l = lanes;
    (((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))) + tail
}

/// LayerNorm's `1 / sqrt(var + eps)`.
#[inline(always)]
pub(crate) fn layer_norm_inv(var: f32, eps: f32) -> f32 {
    1.0 / math::sqrt(var + eps)
}

/// The end of [`layer_norm_f32`] once the row's `mean` and (population) `var` are known.
#[inline(always)]
pub(crate) fn layer_norm_apply(
    x: &mut [f32],
    mean: f32,
    var: f32,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let inv = layer_norm_inv(var, eps);
    for ((v, &g), &b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Softmax in place over the entries where `keep[i]` is true; the others become 0 (the attention padding mask:
/// Hugging Face adds the dtype minimum to masked scores, whose exponent underflows to exactly 0).
#[inline(always)]
pub fn masked_softmax_f32(x: &mut [f32], keep: impl Fn(usize) -> bool) {
    // The maximum over the kept entries in eight lanes. A maximum does not depend on the order it is taken in,
    // except for which of +0.0 and -0.0 wins a tie, and `v - max` is then the same for every `v` but ±0.0, whose
    // exponential is 1 either way.
    const L: usize = 8;
    let pick = |m: f32, i: usize, v: f32| if keep(i) && v > m { v } else { m };
    let mut lanes = [f32::NEG_INFINITY; L];
    let mut chunks = x.chunks_exact(L);
    for (c, chunk) in (&mut chunks).enumerate() {
        for (l, (m, &v)) in lanes.iter_mut().zip(chunk).enumerate() {
            *m = pick(*m, c * L + l, v);
        }
    }
    let tail = x.len() - chunks.remainder().len();
    let max = chunks
        .remainder()
        .iter()
        .enumerate()
        .fold(f32::NEG_INFINITY, |m, (i, &v)| pick(m, tail + i, v));
    let max = lanes.iter().fold(max, |m, &l| if l > m { l } else { m });
    // The exponentials, the masked entries and the sum each in a loop of their own that vectorises (with every
    // entry kept, the second one disappears).
    x.iter_mut().for_each(|v| *v = math::exp(*v - max));
    for (i, v) in x.iter_mut().enumerate() {
        if !keep(i) {
            *v = 0.0;
        }
    }
    #[cfg(target_arch = "aarch64")]
    let sum = super::neon_rows::lane_sum(x, None);
    #[cfg(target_arch = "x86_64")]
    let sum = super::x86_rows::lane_sum(x, None);
    #[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
    let sum = lane_sum(x, |v| v);
    softmax_scale(x, sum);
}

/// The end of [`masked_softmax_f32`] once the exponentials' `sum` is known.
#[inline(always)]
pub(crate) fn softmax_scale(x: &mut [f32], sum: f32) {
    if sum > 0.0 {
        let inv = 1.0 / sum;
        x.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Block-scaled GEMM into `f32`: [`gemv_i8_blocks_f32`] for each of `out.len() / rows` tokens. Token `t`'s
/// activations are `x[t * cols..][..cols]` with scales `x_scales[t * nb..][..nb]` (`nb = cols.div_ceil(block)`),
/// and its outputs `out[t * rows..][..rows]`; a token whose activations or scales run past the end of `x` or
/// `x_scales` gets what `gemv_i8_blocks_f32` makes of the shorter slices.
pub fn gemm_i8_blocks_f32(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    if rows == 0 {
        return;
    }
    let nb = cols.div_ceil(block.max(1));
    for (t, o) in out.chunks_exact_mut(rows).enumerate() {
        let xt = x.get(t * cols..).unwrap_or(&[]);
        let xt = &xt[..cols.min(xt.len())];
        let st = x_scales.get(t * nb..).unwrap_or(&[]);
        let st = &st[..nb.min(st.len())];
        gemv_i8_blocks_f32(w, cols, xt, block, st, o);
    }
}

/// The reference backend: every [`Kernels`](super::Kernels) method's default, plain loops. [`super::Active`] on
/// targets without an optimised backend.
pub struct Reference;

impl super::Kernels for Reference {}
