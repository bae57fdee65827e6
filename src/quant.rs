//! The int8 arithmetic contract, shared by the converter (offline) and the engine (on device).
//!
//! * Weights: symmetric int8, one scale per output channel (row): `scale = max|w_row| / 127` (1.0 for an all-zero
//!   row, or one so small that its scale would not be a normal `f32`: [`scale_for`]),
//!   `q = round_half_away_from_zero(w / scale)` clamped to `-127..=127`, so `w ≈ q * scale`.
//! * Activations (numeric contract 2): every linear layer's input is symmetric int8 with one scale per token row,
//!   computed at run time from the row's largest magnitude with the same rule, the matrix's side (outlier) channels
//!   left out ([`quantize_row_except`]); the attention's Q and K in 16 bits ([`quantize_row_i16`]) and its
//!   probabilities in `0..=255` ([`quantize_row_u8`]). The residual stream stays `f32`. `QUANTIZATION.md` has the
//!   measurements behind each choice.
//! * Products: `i8 x i8` accumulated in `i32` exactly (no saturation is possible for rows up to 2^17 long:
//!   `127 * 127 * 2^17 < 2^31`), then `y = (0.0 + acc as f32 * s_x) * s_w[row] + bias[row]`, then the side columns
//!   in `f32` (`model::linear_i8`, `kernels::gemv_i8_blocks` with one block). [`quantize_blocks`] (several scales
//!   per row) remains for the kernels' block form.

#[cfg(target_arch = "aarch64")]
use crate::kernels::neon_rows as simd;
#[cfg(target_arch = "x86_64")]
use crate::kernels::x86_rows as simd;

/// Where no vector form exists, every value goes through the scalar code.
#[cfg(not(any(target_arch = "aarch64", target_arch = "x86_64")))]
mod simd {
    #[inline(always)]
    pub(crate) fn max_prefix(_: &[f32], _: bool) -> (f32, usize) {
        (0.0, 0)
    }
    #[inline(always)]
    pub(crate) fn round_i8(_: &[f32], _: f32, _: &mut [i8]) -> usize {
        0
    }
    #[inline(always)]
    pub(crate) fn round_i16(_: &[f32], _: f32, _: i16, _: &mut [i16]) -> usize {
        0
    }
    #[inline(always)]
    pub(crate) fn round_u8(_: &[f32], _: f32, _: &mut [u8]) -> usize {
        0
    }
}

/// Largest magnitude of a quantised value; `-128` is never produced, so negation is always exact.
pub const QMAX: i32 = 127;

/// Rounds half away from zero and saturates to `-127..=127`. NaN maps to 0. This is the only float→int8
/// conversion in the crate; plain `as` casts (defined, saturating, truncating in Rust) keep it identical on every
/// target.
#[inline(always)]
pub fn round_to_i8(x: f32) -> i8 {
    let r = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    trunc_clamp(r, -QMAX as f32, QMAX as f32) as i8
}

/// `(r as i32).clamp(lo, hi)` for integral `lo <= hi` inside `i32`'s range: NaN gives 0 (clamped), anything else
/// is clamped in `f32` first and then truncated toward zero, which is the same value. Written this way because the
/// saturating `as` does not vectorise (each element goes through a scalar `cvttss2si` and its range checks, 6 %
/// of the engine's time at 128 tokens on x86-64), while the conversion below is one `cvttps2dq` per 8 values.
#[inline(always)]
fn trunc_clamp(r: f32, lo: f32, hi: f32) -> i32 {
    let r = if r.is_nan() { 0.0 } else { r }.clamp(lo, hi);
    // SAFETY: `r` is not NaN, and lies in `lo..=hi`, which the callers keep inside `i32`'s range, so it is finite
    // and its truncation is representable: `to_int_unchecked`'s precondition.
    unsafe { r.to_int_unchecked::<i32>() }
}

/// The symmetric scale for a row whose largest magnitude is `max_abs`: `max_abs / 127`, or 1.0 when the row is
/// all zeros (or not finite), so a scale is always positive and finite. A row so small that `max_abs / 127` is
/// not a normal `f32` (`max_abs` below about 1.5e-36: its scale would be subnormal or underflow to 0, and its
/// reciprocal overflow) also gets 1.0, and therefore quantises to a zero row, off by at most `max_abs`.
#[inline(always)]
pub fn scale_for(max_abs: f32) -> f32 {
    let scale = max_abs / QMAX as f32;
    if scale.is_normal() && scale > 0.0 {
        scale
    } else {
        1.0
    }
}

/// Largest `|x|` of a slice (0.0 for an empty slice; NaN is ignored).
#[inline(always)]
pub fn max_abs(xs: &[f32]) -> f32 {
    let (m, n) = simd::max_prefix(xs, true);
    let r = max_where(&xs[n..], f32::abs);
    if r > m {
        r
    } else {
        m
    }
}

/// Largest `f(x)` over a slice, starting from 0.0 and skipping values that do not compare greater (NaN), for
/// `f` whose results are never -0.0. The maximum of a set does not depend on the order it is taken in, so eight
/// independent lanes (which the compiler vectorises) give the same bits as a left-to-right fold.
#[inline(always)]
fn max_where(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let pick = |m: f32, v: f32| if v > m { v } else { m };
    let mut lanes = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, &x) in lanes.iter_mut().zip(c) {
            *l = pick(*l, f(x));
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, &x| pick(m, f(x)));
    lanes.iter().fold(m, |m, &l| pick(m, l))
}

/// Quantises one row `x` into `q` (same length) and returns its scale. `q` shorter than `x` quantises a prefix.
#[inline(always)]
pub fn quantize_row(x: &[f32], q: &mut [i8]) -> f32 {
    quantize_with_max(x, max_abs(x), q)
}

/// `q[i] = round_to_i8(x[i] / s)` with `s = scale_for(m)`; returns `s`.
#[inline(always)]
fn quantize_with_max(x: &[f32], m: f32, q: &mut [i8]) -> f32 {
    let scale = scale_for(m);
    let inv = 1.0 / scale;
    let done = simd::round_i8(x, inv, q);
    q[done..]
        .iter_mut()
        .zip(&x[done..])
        .for_each(|(q, &v)| *q = round_to_i8(v * inv));
    scale
}

/// [`quantize_row`] with the channels `side` (strictly increasing indices) kept out: the scale comes from the
/// largest magnitude of the other channels, and `q` is 0 at `side` (those channels go through the matrix's `f32`
/// side columns instead). With `side` empty this is `quantize_row`.
pub fn quantize_row_except(x: &[f32], side: &[u32], q: &mut [i8]) -> f32 {
    if side.is_empty() {
        return quantize_row(x, q);
    }
    let mut m = 0.0f32;
    let mut start = 0;
    for &c in side {
        let c = (c as usize).min(x.len());
        m = m.max(max_abs(&x[start.min(c)..c]));
        start = c + 1;
    }
    m = m.max(max_abs(x.get(start..).unwrap_or(&[])));
    let scale = quantize_with_max(x, m, q);
    for &c in side {
        if let Some(q) = q.get_mut(c as usize) {
            *q = 0;
        }
    }
    scale
}

/// Quantises `x` in `block`-wide blocks (the last one shorter when `block` does not divide `x.len()`), each with
/// its own scale, into `q` and `scales[..x.len().div_ceil(block)]`: [`quantize_row`] per block. The engine's
/// activations all take this form, with `block` = the attention head size.
#[inline(always)]
pub fn quantize_blocks(x: &[f32], block: usize, q: &mut [i8], scales: &mut [f32]) {
    let block = block.max(1);
    for ((x, q), s) in x.chunks(block).zip(q.chunks_mut(block)).zip(scales) {
        *s = quantize_row(x, q);
    }
}

/// Largest magnitude of a 16-bit quantised value.
pub const QMAX16: i32 = 32767;

/// [`round_to_i8`]'s rule with 16-bit saturation (`-32767..=32767`).
#[inline(always)]
pub fn round_to_i16(x: f32) -> i16 {
    let r = if x >= 0.0 { x + 0.5 } else { x - 0.5 };
    trunc_clamp(r, -QMAX16 as f32, QMAX16 as f32) as i16
}

/// The largest magnitude for 16-bit attention rows of length `d` such that a dot product of two of them cannot
/// overflow `i32`: `qmax^2 * d <= i32::MAX`, capped at 32767 (5792 for `d` = 64, 8191 for 32, 16383 for 8).
pub const fn qmax_i16_for_dot(d: usize) -> i32 {
    let limit = i32::MAX as u64 / if d == 0 { 1 } else { d as u64 };
    // Integer square root by bisection (const fn, no float).
    let (mut lo, mut hi) = (0u64, 32768u64);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if mid * mid <= limit {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if lo > QMAX16 as u64 {
        QMAX16
    } else {
        lo as i32
    }
}

/// [`quantize_row`] into 16 bits with largest magnitude `qmax` (at most 32767): `scale = max|x| / qmax`
/// (the attention's Q and K rows, with `qmax = qmax_i16_for_dot(d)`).
#[inline(always)]
pub fn quantize_row_i16(x: &[f32], qmax: i32, q: &mut [i16]) -> f32 {
    let qmax = qmax.clamp(1, QMAX16);
    let max = max_abs(x);
    let scale = if max > 0.0 && max.is_finite() {
        max / qmax as f32
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    let qmax = qmax as i16;
    let done = simd::round_i16(x, inv, qmax, q);
    q[done..]
        .iter_mut()
        .zip(&x[done..])
        .for_each(|(q, &v)| *q = round_to_i16(v * inv).clamp(-qmax, qmax));
    scale
}

/// Quantises a row of non-negative values (attention probabilities) to `0..=255`: `scale = max(x) / 255`,
/// `q = round_half_up(x / scale)` clamped to `0..=255` (negative values and NaN give 0).
#[inline(always)]
pub fn quantize_row_u8(x: &[f32], q: &mut [u8]) -> f32 {
    // Values at or below 0 never win against the starting 0.0, so mapping them to +0.0 changes nothing.
    let (m, n) = simd::max_prefix(x, false);
    let r = max_where(&x[n..], |v| if v > 0.0 { v } else { 0.0 });
    let max = if r > m { r } else { m };
    let scale = if max > 0.0 && max.is_finite() {
        max / 255.0
    } else {
        1.0
    };
    let inv = 1.0 / scale;
    let done = simd::round_u8(x, inv, q);
    q[done..]
        .iter_mut()
        .zip(&x[done..])
        .for_each(|(q, &v)| *q = trunc_clamp(v * inv + 0.5, 0.0, 255.0) as u8);
    scale
}

/// Quantises a row-major `(rows, cols)` matrix per row into `q` and `scales` (the converter's weight
/// quantisation). Returns the worst absolute error `|w - q * scale|` over the matrix.
pub fn quantize_matrix(w: &[f32], cols: usize, q: &mut [i8], scales: &mut [f32]) -> f32 {
    let mut worst = 0.0f32;
    if cols == 0 {
        return worst;
    }
    for ((row, qrow), scale) in w
        .chunks_exact(cols)
        .zip(q.chunks_exact_mut(cols))
        .zip(scales.iter_mut())
    {
        *scale = quantize_row(row, qrow);
        for (&v, &qv) in row.iter().zip(qrow.iter()) {
            let err = (v - qv as f32 * *scale).abs();
            if err > worst {
                worst = err;
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::{vec, vec::Vec};

    /// The lane-parallel maximum equals the left-to-right fold on every length, with NaN, infinities, zeros of
    /// both signs and negative values mixed in.
    #[test]
    fn lane_parallel_maximum_equals_the_sequential_fold() {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            -3.5,
            1e-40,
        ];
        let mut seed = 7u32;
        for len in 0..70 {
            let xs: Vec<f32> = (0..len)
                .map(|i| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    if seed.is_multiple_of(9) {
                        specials[i % specials.len()]
                    } else {
                        (seed >> 8) as f32 / 65536.0 - 128.0
                    }
                })
                .collect();
            let fold_abs = xs
                .iter()
                .fold(0.0f32, |m, &x| if x.abs() > m { x.abs() } else { m });
            assert_eq!(max_abs(&xs).to_bits(), fold_abs.to_bits(), "len {len}");
            let mut q = vec![0u8; len];
            let fold = xs.iter().fold(0.0f32, |m, &v| if v > m { v } else { m });
            let scale = quantize_row_u8(&xs, &mut q);
            let expected = if fold > 0.0 && fold.is_finite() {
                fold / 255.0
            } else {
                1.0
            };
            assert_eq!(scale.to_bits(), expected.to_bits(), "len {len}");
        }
    }

    /// The quantisers (with the target's vector forms, where it has them) equal their scalar definitions bit
    /// for bit: lengths around the vector steps, exact halves and the values next to them, both zeros, NaN and
    /// infinities, rows whose scale is 1 (so `x * inv` is `x`).
    #[test]
    fn quantisers_equal_their_scalar_definitions() {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            0.5,
            -0.5,
            f32::from_bits(0.5f32.to_bits() - 1),
            -f32::from_bits(0.5f32.to_bits() - 1),
            2.5,
            -3.5,
            126.5,
            -126.5,
            127.0,
            200.0,
        ];
        let mut seed = 11u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed
        };
        for round in 0..6 {
            for len in 0..80 {
                let xs: Vec<f32> = (0..len)
                    .map(|_| {
                        let r = next();
                        match (round, r % 7) {
                            (0..=1, 0) => specials[(r >> 8) as usize % specials.len()],
                            (2..=3, _) => ((r >> 8) % 255) as f32 * 0.5 - 63.5,
                            _ => ((r >> 8) as f32 / 16_777_216.0 - 0.5) * 9.0,
                        }
                    })
                    .collect();
                let fold_abs = xs
                    .iter()
                    .fold(0.0f32, |m, &x| if x.abs() > m { x.abs() } else { m });
                let scale = scale_for(fold_abs);
                let inv = 1.0 / scale;
                let want: Vec<i8> = xs.iter().map(|&v| round_to_i8(v * inv)).collect();
                let mut got = vec![0i8; len];
                assert_eq!(quantize_row(&xs, &mut got).to_bits(), scale.to_bits());
                assert_eq!(got, want, "i8, round {round}, len {len}");

                for qmax in [1, 5792, QMAX16] {
                    let s16 = if fold_abs > 0.0 && fold_abs.is_finite() {
                        fold_abs / qmax as f32
                    } else {
                        1.0
                    };
                    let (inv, m) = (1.0 / s16, qmax as i16);
                    let want: Vec<i16> = xs
                        .iter()
                        .map(|&v| round_to_i16(v * inv).clamp(-m, m))
                        .collect();
                    let mut got = vec![0i16; len];
                    assert_eq!(
                        quantize_row_i16(&xs, qmax, &mut got).to_bits(),
                        s16.to_bits()
                    );
                    assert_eq!(got, want, "i16 {qmax}, round {round}, len {len}");
                }

                let fold = xs.iter().fold(0.0f32, |m, &v| if v > m { v } else { m });
                let s8 = if fold > 0.0 && fold.is_finite() {
                    fold / 255.0
                } else {
                    1.0
                };
                let inv = 1.0 / s8;
                let want: Vec<u8> = xs
                    .iter()
                    .map(|&v| trunc_clamp(v * inv + 0.5, 0.0, 255.0) as u8)
                    .collect();
                let mut got = vec![0u8; len];
                assert_eq!(quantize_row_u8(&xs, &mut got).to_bits(), s8.to_bits());
                assert_eq!(got, want, "u8, round {round}, len {len}");
            }
        }
    }

    /// Every input gives a positive, normal scale; a row whose `max / 127` would be subnormal or 0 (it was 0 for
    /// the smallest subnormals, which the blob reader refuses) quantises to zeros with scale 1.0.
    #[test]
    fn scale_for_is_positive_and_normal_for_subnormal_rows() {
        let tiny = [
            f32::from_bits(1),
            f32::from_bits(0x7F_FFFF),
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE * 126.0,
        ];
        for m in tiny.into_iter().chain([0.0, f32::NAN, f32::INFINITY, -1.0]) {
            assert_eq!(scale_for(m), 1.0, "{m:e}");
        }
        let m = f32::MIN_POSITIVE * 127.0;
        assert_eq!(scale_for(m), f32::MIN_POSITIVE);
        assert_eq!(scale_for(254.0), 2.0);
        let row = [f32::from_bits(1), -f32::from_bits(3), 0.0, 1e-37];
        let mut q = [1i8; 4];
        assert_eq!(quantize_row(&row, &mut q), 1.0);
        assert_eq!(q, [0; 4]);
    }

    /// The vectorisable conversion equals the saturating `as` followed by the clamp, on every bit pattern class:
    /// a sweep through all exponents, halves, both zeros, infinities, NaN and the clamp bounds.
    #[test]
    fn trunc_clamp_equals_the_saturating_cast_then_clamp() {
        let bounds = [(-127i32, 127i32), (-32767, 32767), (0, 255)];
        let mut values = std::vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN
        ];
        // Every 40,009th bit pattern (every 4,000,037th under Miri, which interprets each one).
        let stride = if cfg!(miri) { 4_000_037 } else { 40_009 };
        let mut bits = 0u32;
        while bits < u32::MAX - stride {
            values.push(f32::from_bits(bits));
            bits += stride;
        }
        for v in -300..300 {
            for frac in [0.0f32, 0.25, 0.5, 0.75, 0.999] {
                values.push(v as f32 + frac);
                values.push(v as f32 - frac);
            }
        }
        for &(lo, hi) in &bounds {
            for &r in &values {
                let expected = (r as i32).clamp(lo, hi);
                assert_eq!(
                    trunc_clamp(r, lo as f32, hi as f32),
                    expected,
                    "{r:e} in {lo}..={hi}"
                );
            }
        }
    }

    #[test]
    fn round_to_i8_rounds_half_away_from_zero_and_saturates() {
        assert_eq!(round_to_i8(0.5), 1);
        assert_eq!(round_to_i8(-0.5), -1);
        assert_eq!(round_to_i8(1.49), 1);
        assert_eq!(round_to_i8(-2.5), -3);
        assert_eq!(round_to_i8(1e9), 127);
        assert_eq!(round_to_i8(-1e9), -127);
        assert_eq!(round_to_i8(f32::NAN), 0);
    }

    #[test]
    fn wider_and_unsigned_rows_round_like_round_to_i8() {
        let mut q16 = [0i16; 3];
        let s = quantize_row_i16(&[1.0, -0.5, 0.25], QMAX16, &mut q16);
        assert_eq!(s, 1.0 / 32767.0);
        assert_eq!(q16, [32767, -16384, 8192]);
        let s = quantize_row_i16(&[-8.0, 2.0, 0.0], 4, &mut q16);
        assert_eq!((s, q16), (2.0, [-4, 1, 0]));
        assert_eq!(qmax_i16_for_dot(64), 5792);
        assert_eq!(qmax_i16_for_dot(1), 32767);
        for d in [1, 7, 64, 100, 512, 65536] {
            let q = qmax_i16_for_dot(d) as i64;
            assert!(
                q * q * d as i64 <= i32::MAX as i64 && (q + 1).pow(2) * d as i64 > i32::MAX as i64
                    || q == 32767
            );
        }
        assert_eq!(round_to_i16(-1e9), -32767);
        let mut q8 = [0u8; 4];
        let s = quantize_row_u8(&[0.0, 255.0, 127.5, -1.0], &mut q8);
        assert_eq!(s, 1.0);
        assert_eq!(q8, [0, 255, 128, 0]);
        let (mut q, mut scales) = ([0i8; 5], [0f32; 2]);
        quantize_blocks(&[1.0, -2.0, 0.5, 4.0, 0.0], 3, &mut q, &mut scales);
        assert_eq!(q, [64, -127, 32, 127, 0]);
        assert_eq!(scales, [2.0 / 127.0, 4.0 / 127.0]);
    }

    #[test]
    fn quantize_matrix_error_is_within_half_a_step() {
        let w: [f32; 6] = [0.1, -0.5, 0.25, 0.0, 0.0, 0.0];
        let (mut q, mut s) = ([0i8; 6], [0f32; 2]);
        let err = quantize_matrix(&w, 3, &mut q, &mut s);
        assert_eq!(q[..3], [25, -127, 64]);
        assert_eq!(s[1], 1.0);
        assert!(err <= s[0] * 0.5 + 1e-9);
    }
}
