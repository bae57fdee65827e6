//! x86-64 AVX-512F and AVX2 forms of the row quantisers in [`crate::quant`] (the row maximum and the float →
//! integer conversions), of [`reference::lane_sum`] (LayerNorm's and softmax's sums; LayerNorm, with and without
//! the residual add, four rows at a time) and of [`reference::gemm_t_i8_f32`] (`mapping_in` on the embedding
//! rows): `neon_rows`'s contract on x86-64. The row quantisers return how many leading values they handled, and
//! `quant` finishes the rest with its scalar code, which is the specification these agree with bit for bit (tests
//! here, in `quant` and in `kernels::tests`).
//!
//! Each entry point takes the widest level [`simd::isa`] has: AVX-512F (16 lanes; the quantisers take the row's
//! tail through masked loads and stores, so the whole row), else AVX2 (8 lanes, whole steps only), else nothing
//! (0 values handled, the scalar code does it all). The sums stay 8 lanes wide at every level: they are the
//! reference's eight lanes, each a chain of additions in order.
//!
//! The scalar rules and their lane-wise equals:
//! - the maximum `v > m ? v : m` from 0.0 is `vmaxps(v, m)` per lane, which returns its second operand unless
//!   the first is greater: NaN is skipped and -0.0 never replaces +0.0, exactly as the scalar `pick`. Every lane
//!   then holds a value that is not NaN and not -0.0, and the maximum of such values does not depend on the
//!   order the lanes are combined in;
//! - `round_half_away(r)` = `trunc(r >= 0 ? r + 0.5 : r - 0.5)` is `trunc(r + copysign(0.5, r))`: the sums are
//!   the same IEEE additions (for `r = -0.0` the scalar adds +0.5 and this -0.5, both truncating to 0);
//! - `trunc_clamp(r, lo, hi)` (NaN gives 0, then clamp, then truncate) is NaN lanes set to +0.0, `vmaxps` /
//!   `vminps` with the bounds, and `vcvttps2dq`, exact on values inside the bounds; the clamped integers then fit
//!   the narrow type, so the narrowing (`vpmovdb`, `vpmovdw`, or the saturating packs) keeps them unchanged.
//!   `quantize_row_i16`'s extra clamp to `-qmax..=qmax` (integral bounds, so the same as clamping before the
//!   truncation) uses `qmax` as the float bounds.

use core::arch::x86_64::*;

use super::{reference, simd};

/// The sign bit of an `f32`.
const SIGN: i32 = i32::MIN;

/// Calls `f(args)` in the widest form the CPU has (`avx512::f`, else `avx2::f`), else gives `none`.
macro_rules! widest {
    ($f:ident($($arg:expr),*), $none:expr) => {{
        let isa = simd::isa();
        if isa.avx512() {
            // SAFETY: the CPU has AVX-512F (`isa` detected it, or the build enables it).
            unsafe { avx512::$f($($arg),*) }
        } else if isa.avx2() {
            // SAFETY: the CPU has AVX2 (likewise).
            unsafe { avx2::$f($($arg),*) }
        } else {
            $none
        }
    }};
}

/// Largest `|x|` of `x[..n]` for the returned `n`, from 0.0, NaN skipped: `quant::max_abs`'s rule. With `abs`
/// false, the largest `x` above 0.0 (`quant::quantize_row_u8`'s maximum).
#[inline(always)]
pub(crate) fn max_prefix(x: &[f32], abs: bool) -> (f32, usize) {
    widest!(max_prefix(x, abs), (0.0, 0))
}

/// `q[i] = round_half_away(x[i] * inv)` saturated to `-127..=127` (NaN gives 0), for `i < n`, the returned count.
#[inline(always)]
pub(crate) fn round_i8(x: &[f32], inv: f32, q: &mut [i8]) -> usize {
    widest!(round_i8(x, inv, q), 0)
}

/// `q[i] = round_half_away(x[i] * inv)` clamped to `-qmax..=qmax` (`qmax` in `1..=32767`; NaN gives 0), for
/// `i < n`, the returned count.
#[inline(always)]
pub(crate) fn round_i16(x: &[f32], inv: f32, qmax: i16, q: &mut [i16]) -> usize {
    widest!(round_i16(x, inv, qmax, q), 0)
}

/// `q[i] = trunc(clamp(x[i] * inv + 0.5, 0, 255))` (NaN gives 0), for `i < n`, the returned count.
#[inline(always)]
pub(crate) fn round_u8(x: &[f32], inv: f32, q: &mut [u8]) -> usize {
    widest!(round_u8(x, inv, q), 0)
}

/// [`reference::lane_sum`] of `x` (with `mean` `None`) or of `(x - mean)^2`, the same bits. Its eight lanes are
/// one AVX register, each chunk of eight added in order (a sum's lanes depend on every earlier chunk, so wider
/// vectors would not shorten the chain); without AVX2, the reference.
#[inline(always)]
pub(crate) fn lane_sum(x: &[f32], mean: Option<f32>) -> f32 {
    if simd::isa().avx2() {
        // SAFETY: the CPU has AVX2.
        let [s] = unsafe { avx2::lane_sums([x], mean.map(|m| [m])) };
        return s;
    }
    match mean {
        Some(m) => reference::lane_sum(x, |v| (v - m) * (v - m)),
        None => reference::lane_sum(x, |v| v),
    }
}

/// [`reference::layer_norm_f32`] on each `cols`-wide row of `x` (a trailing partial row is left alone), the same
/// bits. With AVX2, four rows at a time share the loops of their two sums: a row's sum is one chain of additions,
/// each waiting on the one before, and four rows keep four chains in flight; each row is then normalised as the
/// reference does it.
#[inline(always)]
pub(crate) fn layer_norm_rows(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    if cols == 0 {
        return;
    }
    let whole = x.len() / cols * cols;
    let (quads, rest) = x[..whole].split_at_mut(whole / (4 * cols) * (4 * cols));
    let rest = if simd::isa().avx2() {
        let n = cols as f32;
        for quad in quads.chunks_exact_mut(4 * cols) {
            let (a, q) = quad.split_at_mut(cols);
            let (b, q) = q.split_at_mut(cols);
            let (c, d) = q.split_at_mut(cols);
            // SAFETY (both): the CPU has AVX2.
            let sums = unsafe { avx2::lane_sums([&*a, &*b, &*c, &*d], None) };
            let means = sums.map(|s| s / n);
            let squares = unsafe { avx2::lane_sums([&*a, &*b, &*c, &*d], Some(means)) };
            for ((row, mean), sq) in [a, b, c, d].into_iter().zip(means).zip(squares) {
                reference::layer_norm_apply(row, mean, sq / n, gamma, beta, eps);
            }
        }
        rest
    } else {
        &mut x[..whole]
    };
    for row in rest.chunks_exact_mut(cols) {
        reference::layer_norm_f32(row, gamma, beta, eps);
    }
}

/// [`Kernels::add_layer_norm_rows`](super::Kernels::add_layer_norm_rows): `y = LayerNorm(y + x)` into both
/// `sublayer` and `hidden`, row by row, the same bits. With AVX2, four rows at a time in three passes over them
/// instead of five: the residual add with the row sums, the centred sums, then the normalisation stored to both
/// buffers (the sums' chains of additions four at a time, as [`layer_norm_rows`]).
#[inline(always)]
pub(crate) fn add_layer_norm_rows(
    sublayer: &mut [f32],
    hidden: &mut [f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if cols == 0 || !simd::isa().avx2() || gamma.len() < cols || beta.len() < cols {
        return super::add_layer_norm_rows_plain(sublayer, hidden, cols, gamma, beta, eps);
    }
    let quads = sublayer.len().min(hidden.len()) / (4 * cols);
    let split = quads * 4 * cols;
    let n = cols as f32;
    let (ys, y_rest) = sublayer.split_at_mut(split);
    let (xs, x_rest) = hidden.split_at_mut(split);
    for (y, x) in ys
        .chunks_exact_mut(4 * cols)
        .zip(xs.chunks_exact_mut(4 * cols))
    {
        let (y0, y) = y.split_at_mut(cols);
        let (y1, y) = y.split_at_mut(cols);
        let (y2, y3) = y.split_at_mut(cols);
        let (x0, x) = x.split_at_mut(cols);
        let (x1, x) = x.split_at_mut(cols);
        let (x2, x3) = x.split_at_mut(cols);
        let mut y = [y0, y1, y2, y3];
        let mut x = [x0, x1, x2, x3];
        // SAFETY (all three): the CPU has AVX2; every row is `cols` long, as are `gamma` and `beta` (at least).
        let sums = unsafe { avx2::add_sums(&mut y, &x) };
        let means = sums.map(|s| s / n);
        let squares = unsafe { avx2::lane_sums([&*y[0], &*y[1], &*y[2], &*y[3]], Some(means)) };
        for (((y, x), mean), sq) in y.iter_mut().zip(&mut x).zip(means).zip(squares) {
            let inv = reference::layer_norm_inv(sq / n, eps);
            unsafe { avx2::norm_to(y, x, mean, inv, gamma, beta) };
        }
    }
    super::add_layer_norm_rows_plain(y_rest, x_rest, cols, gamma, beta, eps);
}

/// [`reference::gemm_t_i8_f32`] for the first `4 * (tokens / 4)` tokens (`done_tokens`, returned with `n`),
/// outputs `0..n`, `n` a multiple of 64 (AVX-512F) or 32 (AVX2); the caller runs the reference on the rest. Four
/// tokens by `n`-wide steps of outputs stay in 16 registers while every row of `wt` adds its products: the int8
/// weights widened and converted to `f32` once for the four tokens, then per token a multiply and an add (the
/// reference's two roundings, never fused); then the scale and the bias.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn gemm_t_i8_f32(
    wt: &[i8],
    h: usize,
    x: &[f32],
    e: usize,
    tokens: usize,
    scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
) -> (usize, usize) {
    let groups = tokens / T;
    // Only where every row is whole and every token's input and output rows exist.
    let fits = e.checked_mul(h).is_some_and(|n| wt.len() >= n)
        && (groups * T).checked_mul(e).is_some_and(|n| x.len() >= n)
        && (groups * T).checked_mul(h).is_some_and(|n| y.len() >= n);
    if !fits || groups == 0 || e == 0 {
        return (0, 0);
    }
    let outputs = h.min(scales.len()).min(bias.len());
    let isa = simd::isa();
    let n = if isa.avx512() {
        let n = outputs / 64 * 64;
        // SAFETY: the CPU has AVX-512F; the shapes were checked above, `n <= h`, and `scales` and `bias` hold at
        // least `n` values: `gemm_t`'s contract.
        unsafe { avx512::gemm_t(wt, h, x, e, groups, scales, bias, y, n) };
        n
    } else if isa.avx2() {
        let n = outputs / 32 * 32;
        // SAFETY: as above, with AVX2.
        unsafe { avx2::gemm_t(wt, h, x, e, groups, scales, bias, y, n) };
        n
    } else {
        return (0, 0);
    };
    (groups * T, n)
}

/// Tokens per [`gemm_t_i8_f32`] group.
const T: usize = 4;

/// The `f32` vector operations [`gemm_t_lanes`] is written in, for one register width. Each is `#[inline(always)]`
/// so that it compiles into its caller, whose `#[target_feature]` makes the intrinsic available. Safety of every
/// method: the CPU has the width's instruction set, and pointers are valid for `LANES` values.
trait Lanes: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// `LANES` int8 values at `p`, sign-extended and converted to `f32`.
    unsafe fn load_i8(p: *const i8) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
}

/// `impl Lanes` for one width: each method is the one intrinsic named for it.
macro_rules! lanes {
    ($v:ty, $lanes:literal, $zero:ident, $splat:ident, $load_i8:expr, $load:ident, $store:ident, $add:ident,
     $mul:ident) => {
        impl Lanes for $v {
            const LANES: usize = $lanes;
            #[inline(always)]
            unsafe fn zero() -> Self {
                unsafe { $zero() }
            }
            #[inline(always)]
            unsafe fn splat(v: f32) -> Self {
                unsafe { $splat(v) }
            }
            #[inline(always)]
            unsafe fn load_i8(p: *const i8) -> Self {
                unsafe { $load_i8(p) }
            }
            #[inline(always)]
            unsafe fn load(p: *const f32) -> Self {
                unsafe { $load(p) }
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut f32) {
                unsafe { $store(p, self) }
            }
            #[inline(always)]
            unsafe fn add(self, o: Self) -> Self {
                unsafe { $add(self, o) }
            }
            #[inline(always)]
            unsafe fn mul(self, o: Self) -> Self {
                unsafe { $mul(self, o) }
            }
        }
    };
}

lanes!(
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    |p: *const i8| _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i))),
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_add_ps,
    _mm512_mul_ps
);
lanes!(
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    |p: *const i8| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i))),
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_add_ps,
    _mm256_mul_ps
);

/// [`gemm_t_i8_f32`]'s loop for `groups` groups of four tokens and outputs `0..n` (`n` a multiple of
/// `4 * V::LANES`), in vectors `V`: four vectors of outputs by four tokens in 16 registers while every row of `wt`
/// adds its products. Safety: the CPU has `V`'s instruction set (the caller is compiled with it); `wt` holds `e`
/// rows of `h`, `x` and `y` `4 * groups` token rows of `e` and `h`, `n <= h`, and `scales` and `bias` at least
/// `n` values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn gemm_t_lanes<V: Lanes>(
    wt: &[i8],
    h: usize,
    x: &[f32],
    e: usize,
    groups: usize,
    scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
    n: usize,
) {
    let step = 4 * V::LANES;
    for g in 0..groups {
        let xs: [&[f32]; T] = core::array::from_fn(|t| &x[(g * T + t) * e..][..e]);
        for j in (0..n).step_by(step) {
            // SAFETY: for `k < e`, `k * h + j + step <= e * h <= wt.len()` (`j + step <= n <= h`); token rows of
            // `y` hold `h >= j + step` values from `(g * T + t) * h`, `scales` and `bias` at least `n` (the
            // caller's contract). The loads and stores need no alignment.
            unsafe {
                let mut acc = [[V::zero(); 4]; T];
                let mut p = wt.as_ptr().add(j);
                for k in 0..e {
                    let w: [V; 4] = core::array::from_fn(|i| V::load_i8(p.add(V::LANES * i)));
                    p = p.add(h);
                    for (acc, x) in acc.iter_mut().zip(&xs) {
                        let xk = V::splat(*x.get_unchecked(k));
                        for (a, &w) in acc.iter_mut().zip(&w) {
                            *a = a.add(w.mul(xk));
                        }
                    }
                }
                for (t, acc) in acc.into_iter().enumerate() {
                    let yp = y.as_mut_ptr().add((g * T + t) * h + j);
                    for (i, a) in acc.into_iter().enumerate() {
                        let o = j + V::LANES * i;
                        let v = V::load(scales.as_ptr().add(o)).mul(a);
                        v.add(V::load(bias.as_ptr().add(o)))
                            .store(yp.add(V::LANES * i));
                    }
                }
            }
        }
    }
}

/// The AVX-512F forms: 16 lanes, the last partial step through masked loads (masked-off lanes read as 0.0 and
/// are not stored), so each handles the whole row.
mod avx512 {
    use super::*;

    /// The mask of the first `n` of 16 lanes, `n <= 16`.
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    /// `|v|` where `abs`, else `v`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn magnitude(v: __m512, abs: bool) -> __m512 {
        if abs {
            _mm512_castsi512_ps(_mm512_andnot_si512(
                _mm512_set1_epi32(SIGN),
                _mm512_castps_si512(v),
            ))
        } else {
            v
        }
    }

    /// See [`super::max_prefix`]; handles the whole row.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn max_prefix(x: &[f32], abs: bool) -> (f32, usize) {
        let n = x.len();
        let p = x.as_ptr();
        let mut m = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (k, m) in m.iter_mut().enumerate() {
                // SAFETY: `i + 16 * k + 16 <= i + 64 <= n = x.len()`; `loadu` needs no alignment.
                let v = unsafe { _mm512_loadu_ps(p.add(i + 16 * k)) };
                *m = _mm512_max_ps(magnitude(v, abs), *m);
            }
            i += 64;
        }
        while i < n {
            let k = first((n - i).min(16));
            // SAFETY: the masked load reads only the lanes of `k`, `i..min(i + 16, n)`, within `x` (masked-off
            // lanes are neither read nor faulted on); they read as 0.0, which never wins.
            let v = unsafe { _mm512_maskz_loadu_ps(k, p.add(i)) };
            m[0] = _mm512_max_ps(magnitude(v, abs), m[0]);
            i += 16;
        }
        let m = _mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3]));
        (_mm512_reduce_max_ps(m), n)
    }

    /// `trunc_clamp(r, lo, hi)` lane-wise: NaN to +0.0, clamped, truncated.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn trunc_clamp(r: __m512, lo: __m512, hi: __m512) -> __m512i {
        let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(r, r);
        _mm512_maskz_cvttps_epi32(ordered, _mm512_min_ps(_mm512_max_ps(r, lo), hi))
    }

    /// `x * inv` rounded half away from zero, clamped to `-qmax..=qmax` (NaN gives 0), for the lanes of `k`
    /// starting at `p`. Safety: those lanes of `p` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round_half_away(p: *const f32, k: __mmask16, inv: __m512, qmax: f32) -> __m512i {
        // SAFETY: the caller's contract.
        let r = _mm512_mul_ps(unsafe { _mm512_maskz_loadu_ps(k, p) }, inv);
        let half = _mm512_or_si512(
            _mm512_and_si512(_mm512_castps_si512(r), _mm512_set1_epi32(SIGN)),
            _mm512_castps_si512(_mm512_set1_ps(0.5)),
        );
        let r = _mm512_add_ps(r, _mm512_castsi512_ps(half));
        trunc_clamp(r, _mm512_set1_ps(-qmax), _mm512_set1_ps(qmax))
    }

    /// See [`super::round_i8`]; handles `min(x.len(), q.len())` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn round_i8(x: &[f32], inv: f32, q: &mut [i8]) -> usize {
        let n = x.len().min(q.len());
        let (inv, xp, qp) = (_mm512_set1_ps(inv), x.as_ptr(), q.as_mut_ptr());
        let mut i = 0;
        // Whole steps narrow in registers and store plainly (the masked narrowing store is several times
        // slower); the last partial step is masked.
        while i + 16 <= n {
            // SAFETY: `i + 16 <= n`, within `x` and `q`; `storeu` needs no alignment.
            unsafe {
                let r = round_half_away(xp.add(i), 0xFFFF, inv, 127.0);
                _mm_storeu_si128(qp.add(i) as *mut __m128i, _mm512_cvtepi32_epi8(r));
            }
            i += 16;
        }
        if i < n {
            let k = first(n - i);
            // SAFETY: the lanes of `k` are `i..n`, within `x` and `q`; the masked load and the masked narrowing
            // store touch only those.
            unsafe {
                let r = round_half_away(xp.add(i), k, inv, 127.0);
                _mm512_mask_cvtepi32_storeu_epi8(qp.add(i), k, r);
            }
        }
        n
    }

    /// See [`super::round_i16`]; handles `min(x.len(), q.len())` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn round_i16(x: &[f32], inv: f32, qmax: i16, q: &mut [i16]) -> usize {
        let n = x.len().min(q.len());
        let (inv, xp, qp) = (_mm512_set1_ps(inv), x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(16) {
            let k = first((n - i).min(16));
            // SAFETY: as in `round_i8`, lanes `i..min(i + 16, n)` of `x` and `q` only.
            unsafe {
                let r = round_half_away(xp.add(i), k, inv, qmax as f32);
                _mm512_mask_cvtepi32_storeu_epi16(qp.add(i), k, r);
            }
        }
        n
    }

    /// See [`super::round_u8`]; handles `min(x.len(), q.len())` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn round_u8(x: &[f32], inv: f32, q: &mut [u8]) -> usize {
        let n = x.len().min(q.len());
        let (inv, half) = (_mm512_set1_ps(inv), _mm512_set1_ps(0.5));
        let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(16) {
            let k = first((n - i).min(16));
            // SAFETY: as in `round_i8`, lanes `i..min(i + 16, n)` of `x` and `q` only.
            unsafe {
                let r = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_maskz_loadu_ps(k, xp.add(i)), inv),
                    half,
                );
                let r = trunc_clamp(r, lo, hi);
                _mm512_mask_cvtepi32_storeu_epi8(qp.add(i) as *mut i8, k, r);
            }
        }
        n
    }

    /// [`super::gemm_t_i8_f32`]'s loop, 16 lanes ([`super::gemm_t_lanes`]; `n` a multiple of 64). Safety: the
    /// CPU has AVX-512F, and `gemm_t_lanes`'s contract.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gemm_t(
        wt: &[i8],
        h: usize,
        x: &[f32],
        e: usize,
        groups: usize,
        scales: &[f32],
        bias: &[f32],
        y: &mut [f32],
        n: usize,
    ) {
        // SAFETY: the caller's contract; the lane operations are AVX-512F, which this function has.
        unsafe { super::gemm_t_lanes::<__m512>(wt, h, x, e, groups, scales, bias, y, n) }
    }
}

/// The AVX2 forms: 8 lanes, whole steps only (the scalar code takes the rest).
mod avx2 {
    use super::*;

    /// `|v|` where `abs`, else `v`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn magnitude(v: __m256, abs: bool) -> __m256 {
        if abs {
            _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32(SIGN)), v)
        } else {
            v
        }
    }

    /// See [`super::max_prefix`]; handles a multiple of 8.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn max_prefix(x: &[f32], abs: bool) -> (f32, usize) {
        let n = x.len() / 8 * 8;
        let p = x.as_ptr();
        let mut m = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, m) in m.iter_mut().enumerate() {
                // SAFETY: `i + 8 * k + 8 <= i + 32 <= n <= x.len()`; `loadu` needs no alignment.
                let v = unsafe { _mm256_loadu_ps(p.add(i + 8 * k)) };
                *m = _mm256_max_ps(magnitude(v, abs), *m);
            }
            i += 32;
        }
        while i < n {
            // SAFETY: `i + 8 <= n <= x.len()`.
            let v = unsafe { _mm256_loadu_ps(p.add(i)) };
            m[0] = _mm256_max_ps(magnitude(v, abs), m[0]);
            i += 8;
        }
        let m = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        (_mm_cvtss_f32(m), n)
    }

    /// `trunc_clamp(r, lo, hi)` lane-wise: NaN to +0.0, clamped, truncated.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn trunc_clamp(r: __m256, lo: __m256, hi: __m256) -> __m256i {
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r));
        _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
    }

    /// `x * inv` rounded half away from zero, clamped to `-qmax..=qmax` (NaN gives 0), for the 8 values at `p`.
    /// Safety: they must be readable.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn round_half_away(p: *const f32, inv: __m256, qmax: __m256) -> __m256i {
        // SAFETY: the caller's contract.
        let r = _mm256_mul_ps(unsafe { _mm256_loadu_ps(p) }, inv);
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(SIGN));
        let r = _mm256_add_ps(r, _mm256_or_ps(_mm256_and_ps(r, sign), _mm256_set1_ps(0.5)));
        trunc_clamp(r, _mm256_sub_ps(_mm256_setzero_ps(), qmax), qmax)
    }

    /// Puts the 4-byte groups of two rounds of `packs` (`[r0a r1a r2a r3a | r0b r1b r2b r3b]`) back in order.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn unpack_order(v: __m256i) -> __m256i {
        _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// See [`super::round_i8`]; handles a multiple of 32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn round_i8(x: &[f32], inv: f32, q: &mut [i8]) -> usize {
        let n = x.len().min(q.len()) / 32 * 32;
        let (inv, qmax) = (_mm256_set1_ps(inv), _mm256_set1_ps(127.0));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(32) {
            // SAFETY: each step reads 32 `f32` from `x` and writes 32 bytes to `q` at `i`, `i + 32 <= n`,
            // within both; `loadu` / `storeu` need no alignment.
            unsafe {
                let r: [__m256i; 4] =
                    core::array::from_fn(|k| round_half_away(xp.add(i + 8 * k), inv, qmax));
                let lo = _mm256_packs_epi32(r[0], r[1]);
                let hi = _mm256_packs_epi32(r[2], r[3]);
                let b = unpack_order(_mm256_packs_epi16(lo, hi));
                _mm256_storeu_si256(qp.add(i) as *mut __m256i, b);
            }
        }
        n
    }

    /// See [`super::round_i16`]; handles a multiple of 16.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn round_i16(x: &[f32], inv: f32, qmax: i16, q: &mut [i16]) -> usize {
        let n = x.len().min(q.len()) / 16 * 16;
        let (inv, qmax) = (_mm256_set1_ps(inv), _mm256_set1_ps(qmax as f32));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(16) {
            // SAFETY: each step reads 16 `f32` from `x` and writes 16 `i16` to `q` at `i`, `i + 16 <= n`,
            // within both.
            unsafe {
                let a = round_half_away(xp.add(i), inv, qmax);
                let b = round_half_away(xp.add(i + 8), inv, qmax);
                // `packs` interleaves the 64-bit halves of `a` and `b`; the permutation restores their order.
                let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(a, b));
                _mm256_storeu_si256(qp.add(i) as *mut __m256i, v);
            }
        }
        n
    }

    /// See [`super::round_u8`]; handles a multiple of 32.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn round_u8(x: &[f32], inv: f32, q: &mut [u8]) -> usize {
        let n = x.len().min(q.len()) / 32 * 32;
        let (inv, half) = (_mm256_set1_ps(inv), _mm256_set1_ps(0.5));
        let (lo, hi) = (_mm256_setzero_ps(), _mm256_set1_ps(255.0));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(32) {
            // SAFETY: each step reads 32 `f32` from `x` and writes 32 bytes to `q` at `i`, `i + 32 <= n`,
            // within both.
            unsafe {
                let r: [__m256i; 4] = core::array::from_fn(|k| {
                    let v = _mm256_loadu_ps(xp.add(i + 8 * k));
                    trunc_clamp(_mm256_add_ps(_mm256_mul_ps(v, inv), half), lo, hi)
                });
                let lo = _mm256_packus_epi32(r[0], r[1]);
                let hi = _mm256_packus_epi32(r[2], r[3]);
                let b = unpack_order(_mm256_packus_epi16(lo, hi));
                _mm256_storeu_si256(qp.add(i) as *mut __m256i, b);
            }
        }
        n
    }

    /// [`super::lane_sum`] of `R` rows of one length at once, row `r` centred on `means[r]` where `means` is
    /// given: the same bits as `R` calls, with `R` independent chains of additions in flight instead of one. Per
    /// row, lane `l` of one register sums elements `8 k + l` from -0.0 in order, then `(l0 + l4, l1 + l5,
    /// l2 + l6, l3 + l7)` in one add and pairwise as the reference pairs them, then the tail left to right.
    /// Rows longer than the shortest are summed over its length.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn lane_sums<const R: usize>(
        rows: [&[f32]; R],
        means: Option<[f32; R]>,
    ) -> [f32; R] {
        let len = rows.map(<[f32]>::len).into_iter().min().unwrap_or(0);
        let n = len / 8 * 8;
        let m = means.map(|m| m.map(|v| _mm256_set1_ps(v)));
        let mut acc = [_mm256_set1_ps(-0.0); R];
        for i in (0..n).step_by(8) {
            for (r, (a, row)) in acc.iter_mut().zip(&rows).enumerate() {
                // SAFETY: `i + 8 <= n <= len <= row.len()`; `loadu` needs no alignment.
                let v = unsafe { _mm256_loadu_ps(row.as_ptr().add(i)) };
                let v = match &m {
                    Some(m) => {
                        let d = _mm256_sub_ps(v, m[r]);
                        _mm256_mul_ps(d, d)
                    }
                    None => v,
                };
                *a = _mm256_add_ps(*a, v);
            }
        }
        core::array::from_fn(|r| {
            let c = _mm_add_ps(
                _mm256_castps256_ps128(acc[r]),
                _mm256_extractf128_ps::<1>(acc[r]),
            );
            let mut l = [0.0f32; 4];
            // SAFETY: `l` holds four `f32`; `storeu` needs no alignment.
            unsafe { _mm_storeu_ps(l.as_mut_ptr(), c) };
            let tail = &rows[r][n..len];
            let tail = match means {
                Some(m) => tail
                    .iter()
                    .fold(-0.0f32, |s, &v| s + (v - m[r]) * (v - m[r])),
                None => tail.iter().fold(-0.0f32, |s, &v| s + v),
            };
            ((l[0] + l[1]) + (l[2] + l[3])) + tail
        })
    }

    /// `y[r] += x[r]` element by element (`y` first, as the reference's `*y += x`) and the [`lane_sums`] of the
    /// results, for four rows of one length.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn add_sums(y: &mut [&mut [f32]; 4], x: &[&mut [f32]; 4]) -> [f32; 4] {
        let len = y.iter().chain(x).map(|r| r.len()).min().unwrap_or(0);
        let n = len / 8 * 8;
        let mut acc = [_mm256_set1_ps(-0.0); 4];
        for i in (0..n).step_by(8) {
            for ((a, y), x) in acc.iter_mut().zip(y.iter_mut()).zip(x) {
                // SAFETY: `i + 8 <= n <= len`, within both rows; `loadu` / `storeu` need no alignment.
                unsafe {
                    let v = _mm256_add_ps(
                        _mm256_loadu_ps(y.as_ptr().add(i)),
                        _mm256_loadu_ps(x.as_ptr().add(i)),
                    );
                    _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
                    *a = _mm256_add_ps(*a, v);
                }
            }
        }
        for (y, x) in y.iter_mut().zip(x) {
            y[n..len]
                .iter_mut()
                .zip(&x[n..len])
                .for_each(|(y, &x)| *y += x);
        }
        core::array::from_fn(|r| {
            let c = _mm_add_ps(
                _mm256_castps256_ps128(acc[r]),
                _mm256_extractf128_ps::<1>(acc[r]),
            );
            let mut l = [0.0f32; 4];
            // SAFETY: `l` holds four `f32`; `storeu` needs no alignment.
            unsafe { _mm_storeu_ps(l.as_mut_ptr(), c) };
            let tail = y[r][n..len].iter().fold(-0.0f32, |s, &v| s + v);
            ((l[0] + l[1]) + (l[2] + l[3])) + tail
        })
    }

    /// `y[i] = x[i] = (y[i] - mean) * inv * gamma[i] + beta[i]`, [`reference::layer_norm_apply`]'s arithmetic
    /// (the same operations in the same order, none fused), for `i < y.len()`. Safety: `x`, `gamma` and `beta`
    /// hold at least `y.len()` values.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn norm_to(
        y: &mut [f32],
        x: &mut [f32],
        mean: f32,
        inv: f32,
        gamma: &[f32],
        beta: &[f32],
    ) {
        let len = y.len();
        let n = len / 8 * 8;
        let (m, s) = (_mm256_set1_ps(mean), _mm256_set1_ps(inv));
        for i in (0..n).step_by(8) {
            // SAFETY: `i + 8 <= n <= y.len()`, within `x`, `gamma` and `beta` too (the caller's contract).
            unsafe {
                let v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y.as_ptr().add(i)), m), s);
                let v = _mm256_mul_ps(v, _mm256_loadu_ps(gamma.as_ptr().add(i)));
                let v = _mm256_add_ps(v, _mm256_loadu_ps(beta.as_ptr().add(i)));
                _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
                _mm256_storeu_ps(x.as_mut_ptr().add(i), v);
            }
        }
        for i in n..len {
            let v = (y[i] - mean) * inv * gamma[i] + beta[i];
            y[i] = v;
            x[i] = v;
        }
    }

    /// [`super::gemm_t_i8_f32`]'s loop, 8 lanes ([`super::gemm_t_lanes`]; `n` a multiple of 32). Safety: the CPU
    /// has AVX2, and `gemm_t_lanes`'s contract.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gemm_t(
        wt: &[i8],
        h: usize,
        x: &[f32],
        e: usize,
        groups: usize,
        scales: &[f32],
        bias: &[f32],
        y: &mut [f32],
        n: usize,
    ) {
        // SAFETY: the caller's contract; the lane operations are AVX2, which this function has.
        unsafe { super::gemm_t_lanes::<__m256>(wt, h, x, e, groups, scales, bias, y, n) }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::quant;
    use std::{vec, vec::Vec};

    /// Which of the forms this CPU can run: (name, max_prefix, round_i8, round_i16, round_u8).
    type Forms = (
        &'static str,
        fn(&[f32], bool) -> (f32, usize),
        fn(&[f32], f32, &mut [i8]) -> usize,
        fn(&[f32], f32, i16, &mut [i16]) -> usize,
        fn(&[f32], f32, &mut [u8]) -> usize,
    );

    fn forms() -> Vec<Forms> {
        let mut v: Vec<Forms> = Vec::new();
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY (each closure): the CPU has AVX-512F (detected just above).
            v.push((
                "avx512",
                |x, a| unsafe { avx512::max_prefix(x, a) },
                |x, i, q| unsafe { avx512::round_i8(x, i, q) },
                |x, i, m, q| unsafe { avx512::round_i16(x, i, m, q) },
                |x, i, q| unsafe { avx512::round_u8(x, i, q) },
            ));
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY (each closure): the CPU has AVX2 (detected just above).
            v.push((
                "avx2",
                |x, a| unsafe { avx2::max_prefix(x, a) },
                |x, i, q| unsafe { avx2::round_i8(x, i, q) },
                |x, i, m, q| unsafe { avx2::round_i16(x, i, m, q) },
                |x, i, q| unsafe { avx2::round_u8(x, i, q) },
            ));
        }
        v
    }

    /// Seeded rows of every length `0..=65` and a few longer ones, with specials (NaN, infinities, both zeros,
    /// exact halves and their neighbours, values past the clamps, subnormals) mixed in at several densities.
    fn rows() -> Vec<Vec<f32>> {
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            0.5,
            -0.5,
            f32::from_bits(0.5f32.to_bits() - 1),
            -f32::from_bits(0.5f32.to_bits() - 1),
            1.5,
            -2.5,
            126.5,
            -126.5,
            127.5,
            255.5,
            1e30,
            -1e30,
            f32::from_bits(1),
            -f32::from_bits(5),
        ];
        let mut seed = 0x1234_5678u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        let mut out = Vec::new();
        for density in [0u32, 3, 9, 50] {
            for len in (0..=65).chain([96, 127, 128, 129, 768, 771]) {
                out.push(
                    (0..len)
                        .map(|_| {
                            let r = next();
                            if density != 0 && r % density == 0 {
                                specials[(r >> 8) as usize % specials.len()]
                            } else {
                                ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 12.0
                            }
                        })
                        .collect(),
                );
            }
        }
        out
    }

    /// The row maximum of each form equals the left-to-right fold over its prefix, bit for bit.
    #[test]
    fn max_prefix_matches_the_scalar_fold() {
        let pick = |m: f32, v: f32| if v > m { v } else { m };
        for (name, max, ..) in forms() {
            for x in rows() {
                for abs in [true, false] {
                    let (m, n) = max(&x, abs);
                    assert!(n <= x.len());
                    let want = x[..n]
                        .iter()
                        .fold(0.0f32, |m, &v| pick(m, if abs { v.abs() } else { v }));
                    assert_eq!(
                        m.to_bits(),
                        want.to_bits(),
                        "{name} abs {abs} len {}",
                        x.len()
                    );
                }
            }
        }
    }

    /// The conversions of each form equal the scalar rules on the values they handle, for scales that keep rows
    /// inside the range, that saturate them, and 1.
    #[test]
    fn round_rows_match_the_scalar_rules() {
        for (name, _, r8, r16, ru8) in forms() {
            for x in rows() {
                let len = x.len();
                for inv in [1.0f32, 0.37, 10.5, 3000.0, 1e-3] {
                    // A `q` shorter than `x` converts a prefix.
                    for qlen in [len, len.saturating_sub(3)] {
                        let mut q = vec![99i8; qlen];
                        let n = r8(&x, inv, &mut q);
                        assert!(n <= qlen);
                        for i in 0..n {
                            let want = quant::round_to_i8(x[i] * inv);
                            assert_eq!(q[i], want, "{name} i8 inv {inv} len {len} at {i}");
                        }
                        assert!(q[n..].iter().all(|&v| v == 99), "{name} i8 wrote past {n}");

                        for qmax in [1i16, 5792, 32767] {
                            let mut q = vec![99i16; qlen];
                            let n = r16(&x, inv, qmax, &mut q);
                            assert!(n <= qlen);
                            for i in 0..n {
                                let want = quant::round_to_i16(x[i] * inv).clamp(-qmax, qmax);
                                assert_eq!(
                                    q[i], want,
                                    "{name} i16 {qmax} inv {inv} len {len} at {i}"
                                );
                            }
                            assert!(q[n..].iter().all(|&v| v == 99));
                        }

                        let mut q = vec![99u8; qlen];
                        let n = ru8(&x, inv, &mut q);
                        assert!(n <= qlen);
                        for i in 0..n {
                            // `trunc_clamp(r, 0, 255)`: `quant`'s tests show it is the saturating cast, clamped.
                            let want = ((x[i] * inv + 0.5) as i32).clamp(0, 255) as u8;
                            assert_eq!(q[i], want, "{name} u8 inv {inv} len {len} at {i}");
                        }
                        assert!(q[n..].iter().all(|&v| v == 99));
                    }
                }
            }
        }
    }

    /// The AVX2 sums (one row, four rows at once) equal the reference's fixed order bit for bit, plain and centred.
    #[test]
    fn lane_sum_matches_reference() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        for x in rows() {
            for mean in [None, Some(0.0f32), Some(0.3), Some(-2.75)] {
                let want = match mean {
                    Some(m) => reference::lane_sum(&x, |v| (v - m) * (v - m)),
                    None => reference::lane_sum(&x, |v| v),
                };
                // SAFETY: the CPU has AVX2 (checked above).
                let [got] = unsafe { avx2::lane_sums([&x[..]], mean.map(|m| [m])) };
                // A NaN's sign and payload are not specified (the compiler may fold `-0.0 + v` to `v`), so any
                // NaN equals any other.
                let same = |a: f32| a.to_bits() == want.to_bits() || a.is_nan() && want.is_nan();
                assert!(same(got), "len {} mean {mean:?}: {got} != {want}", x.len());
                assert!(same(lane_sum(&x, mean)));
                // Four rows at once: this row with three others of the same length, each its own mean.
                let others: Vec<Vec<f32>> = (1..4)
                    .map(|k| x.iter().map(|v| v * k as f32 - 0.5).collect())
                    .collect();
                let rows4 = [&x[..], &others[0][..], &others[1][..], &others[2][..]];
                let means4 = mean.map(|m| [m, m + 1.0, -m, 0.25]);
                // SAFETY: the CPU has AVX2.
                let got = unsafe { avx2::lane_sums(rows4, means4) };
                for (r, row) in rows4.iter().enumerate() {
                    let want = match means4 {
                        Some(m) => reference::lane_sum(row, |v| (v - m[r]) * (v - m[r])),
                        None => reference::lane_sum(row, |v| v),
                    };
                    let ok = got[r].to_bits() == want.to_bits() || got[r].is_nan() && want.is_nan();
                    assert!(ok, "four rows, row {r}, len {}", x.len());
                }
            }
        }
    }

    /// Both forms of the transposed projection equal the reference bit for bit: token counts around the groups
    /// of four, widths around both steps (up to ALBERT-base's 768), short scales, `f32` inputs of mixed sign and
    /// magnitude.
    #[test]
    fn gemm_t_forms_match_reference() {
        let mut seed = 99u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for (case, &h) in [0usize, 31, 32, 63, 64, 65, 96, 128, 200, 768]
            .iter()
            .enumerate()
        {
            for tokens in [0usize, 3, 4, 5, 8, 9] {
                let e = [1usize, 3, 16, 128][case % 4];
                let wt: Vec<i8> = (0..e * h).map(|_| next() as i8).collect();
                let x: Vec<f32> = (0..tokens * e)
                    .map(|_| next() as f32 / 1e4 - 800.0)
                    .collect();
                let scales: Vec<f32> = (0..h - h / 5).map(|_| next() as f32 / 1e9).collect();
                let bias: Vec<f32> = (0..h).map(|_| next() as f32 / 1e6 - 8.0).collect();
                let mut want = vec![f32::NAN; tokens * h];
                reference::gemm_t_i8_f32(&wt, h, &x, e, tokens, &scales, &bias, &mut want);
                let (groups, outputs) = (tokens / T, h.min(scales.len()));
                let mut forms: Vec<(&str, usize)> = Vec::new();
                if std::is_x86_feature_detected!("avx512f") {
                    forms.push(("avx512", outputs / 64 * 64));
                }
                if std::is_x86_feature_detected!("avx2") {
                    forms.push(("avx2", outputs / 32 * 32));
                }
                for (name, n) in forms {
                    let mut got = want.clone();
                    let args = (&wt[..], h, &x[..], e, groups, &scales[..], &bias[..]);
                    // SAFETY: the CPU has the form's features (detected above); `wt` holds `e` rows of `h`, `x`
                    // and `got` `tokens >= 4 * groups` rows, `n <= h` and `n <= scales.len() <= bias.len()`.
                    unsafe {
                        match name {
                            "avx512" => avx512::gemm_t(
                                args.0, args.1, args.2, args.3, args.4, args.5, args.6, &mut got, n,
                            ),
                            _ => avx2::gemm_t(
                                args.0, args.1, args.2, args.3, args.4, args.5, args.6, &mut got, n,
                            ),
                        }
                    }
                    // Outputs `0..n` of the grouped tokens were recomputed; they must equal the reference's.
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{name} h {h} e {e} tokens {tokens}"
                    );
                }
            }
        }
    }
}
