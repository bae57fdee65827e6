//! AArch64 NEON forms of the row quantisers in [`crate::quant`] (the row maximum and the float → integer
//! conversions, 16 (or 8) values per step; each returns how many leading values it handled, and `quant` finishes
//! the rest with its scalar code, which is the specification these agree with bit for bit: tests in `quant`), and
//! of [`gemv_t_i8_f32`](super::reference::gemv_t_i8_f32), `mapping_in` on the `f32` embedding row.
//!
//! The scalar rules and their lane-wise equals:
//! - the maximum `v > m ? v : m` from 0.0 is `fmax` per lane where no value is NaN (rows with a NaN go the
//!   scalar way);
//! - `round_half_away(r)` = `trunc(r >= 0 ? r + 0.5 : r - 0.5)` is `fcvtzs(r + copysign(0.5, r))`: the sums are
//!   the same IEEE additions (for `r = -0.0` the scalar adds +0.5 and this -0.5, both truncating to 0), and
//!   `fcvtzs` truncates, saturates and maps NaN to 0, as the scalar `trunc_clamp` does once clamped to the
//!   integer range;
//! - `trunc(clamp(r, 0, 255))` is `fcvtzu(r)` then unsigned saturating narrowing (negative values and NaN give 0).

use core::arch::aarch64::*;

/// Largest `|x|` of `x[..n]` for the returned `n` (a multiple of 16), from 0.0, NaN skipped: `quant::max_abs`'s
/// rule. With `abs` false, the largest `x` above 0.0 (`quant::quantize_row_u8`'s maximum). Without NaN the
/// scalar `v > m ? v : m` from 0.0 is `fmax` lane by lane (`fmax(+0, -0)` is +0, and order does not matter); a
/// NaN makes `fmax`'s result NaN, and then the prefix is taken again the scalar way.
#[inline(always)]
pub(crate) fn max_prefix(x: &[f32], abs: bool) -> (f32, usize) {
    let n = x.len() / 16 * 16;
    if n == 0 {
        return (0.0, 0);
    }
    // SAFETY: each step loads 16 `f32` at `i` with `i + 16 <= n <= x.len()`; `ld1` needs only `f32` alignment.
    // The rest is register-only, and NEON is part of the AArch64 baseline.
    let m = unsafe {
        let mut m = [vdupq_n_f32(0.0); 4];
        let p = x.as_ptr();
        for i in (0..n).step_by(16) {
            for (k, m) in m.iter_mut().enumerate() {
                let v = vld1q_f32(p.add(i + 4 * k));
                *m = vmaxq_f32(*m, if abs { vabsq_f32(v) } else { v });
            }
        }
        vmaxvq_f32(vmaxq_f32(vmaxq_f32(m[0], m[1]), vmaxq_f32(m[2], m[3])))
    };
    if !m.is_nan() {
        return (m, n);
    }
    let pick = |m: f32, v: f32| if v > m { v } else { m };
    let m = x[..n]
        .iter()
        .fold(0.0f32, |m, &v| pick(m, if abs { v.abs() } else { v }));
    (m, n)
}

/// `q[i] = round_half_away(x[i] * inv)` saturated to `-127..=127`, for `i < n`, the returned multiple of 16.
#[inline(always)]
pub(crate) fn round_i8(x: &[f32], inv: f32, q: &mut [i8]) -> usize {
    let n = x.len().min(q.len()) / 16 * 16;
    // SAFETY: each step reads 16 `f32` from `x` and writes 16 bytes to `q` at `i`, `i + 16 <= n`, within both;
    // the rest is register-only (AArch64 baseline).
    unsafe {
        let (inv, half, sign) = (vdupq_n_f32(inv), vdupq_n_f32(0.5), vdupq_n_u32(0x8000_0000));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(16) {
            let r: [int32x4_t; 4] = core::array::from_fn(|k| {
                let r = vmulq_f32(vld1q_f32(xp.add(i + 4 * k)), inv);
                vcvtq_s32_f32(vaddq_f32(r, vbslq_f32(sign, r, half)))
            });
            let lo = vcombine_s16(vqmovn_s32(r[0]), vqmovn_s32(r[1]));
            let hi = vcombine_s16(vqmovn_s32(r[2]), vqmovn_s32(r[3]));
            let b = vcombine_s8(vqmovn_s16(lo), vqmovn_s16(hi));
            vst1q_s8(qp.add(i), vmaxq_s8(b, vdupq_n_s8(-127)));
        }
    }
    n
}

/// `q[i] = round_half_away(x[i] * inv)` clamped to `-qmax..=qmax` (`qmax` in `1..=32767`), for `i < n`, the
/// returned multiple of 8.
#[inline(always)]
pub(crate) fn round_i16(x: &[f32], inv: f32, qmax: i16, q: &mut [i16]) -> usize {
    let n = x.len().min(q.len()) / 8 * 8;
    // SAFETY: each step reads 8 `f32` from `x` and writes 8 `i16` to `q` at `i`, `i + 8 <= n`, within both; the
    // rest is register-only (AArch64 baseline).
    unsafe {
        let (inv, half, sign) = (vdupq_n_f32(inv), vdupq_n_f32(0.5), vdupq_n_u32(0x8000_0000));
        let (hi, lo) = (vdupq_n_s32(qmax as i32), vdupq_n_s32(-(qmax as i32)));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(8) {
            let r: [int16x4_t; 2] = core::array::from_fn(|k| {
                let r = vmulq_f32(vld1q_f32(xp.add(i + 4 * k)), inv);
                let r = vcvtq_s32_f32(vaddq_f32(r, vbslq_f32(sign, r, half)));
                vmovn_s32(vmaxq_s32(vminq_s32(r, hi), lo))
            });
            vst1q_s16(qp.add(i), vcombine_s16(r[0], r[1]));
        }
    }
    n
}

/// `q[i] = trunc(clamp(x[i] * inv + 0.5, 0, 255))` (NaN gives 0), for `i < n`, the returned multiple of 16.
#[inline(always)]
pub(crate) fn round_u8(x: &[f32], inv: f32, q: &mut [u8]) -> usize {
    let n = x.len().min(q.len()) / 16 * 16;
    // SAFETY: each step reads 16 `f32` from `x` and writes 16 bytes to `q` at `i`, `i + 16 <= n`, within both;
    // the rest is register-only (AArch64 baseline).
    unsafe {
        let (inv, half) = (vdupq_n_f32(inv), vdupq_n_f32(0.5));
        let (xp, qp) = (x.as_ptr(), q.as_mut_ptr());
        for i in (0..n).step_by(16) {
            let r: [uint32x4_t; 4] = core::array::from_fn(|k| {
                vcvtq_u32_f32(vaddq_f32(
                    vmulq_f32(vld1q_f32(xp.add(i + 4 * k)), inv),
                    half,
                ))
            });
            let lo = vcombine_u16(vqmovn_u32(r[0]), vqmovn_u32(r[1]));
            let hi = vcombine_u16(vqmovn_u32(r[2]), vqmovn_u32(r[3]));
            vst1q_u8(qp.add(i), vcombine_u8(vqmovn_u16(lo), vqmovn_u16(hi)));
        }
    }
    n
}

/// [`reference::gemm_t_i8_f32`](super::reference::gemm_t_i8_f32) for the first `4 * (tokens / 4)` tokens
/// (`done_tokens`, returned with `n`), outputs `0..n`, `n` a multiple of 16; the caller runs the reference on the
/// rest. Four tokens by 16 outputs stay in 16 registers while every row of `wt` adds its products: the 16 int8
/// weights widened (`sxtl` twice) and converted (`scvtf`) once for the four tokens, then per token `fmul` and
/// `fadd` separately (the reference's two roundings); then the scale and the bias.
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
    const T: usize = 4;
    let groups = tokens / T;
    // Only where every row is whole and every token's input and output rows exist.
    let fits = e.checked_mul(h).is_some_and(|n| wt.len() >= n)
        && (groups * T).checked_mul(e).is_some_and(|n| x.len() >= n)
        && (groups * T).checked_mul(h).is_some_and(|n| y.len() >= n);
    if !fits || groups == 0 || e == 0 {
        return (0, 0);
    }
    let n = h.min(scales.len()).min(bias.len()) / 16 * 16;
    for g in 0..groups {
        let xs: [&[f32]; T] = core::array::from_fn(|t| &x[(g * T + t) * e..][..e]);
        for j in (0..n).step_by(16) {
            // SAFETY: for `k < e`, `k * h + j + 16 <= e * h <= wt.len()` (`j + 16 <= n <= h`); token rows of `y`
            // hold `h >= j + 16` values from `(g * T + t) * h` (within `y`, checked above), `scales` and `bias` at
            // least `n`. `ld1` / `st1` need only the elements' alignment. The rest is register-only (AArch64
            // baseline).
            unsafe {
                let mut acc = [[vdupq_n_f32(0.0); 4]; T];
                let mut p = wt.as_ptr().add(j);
                for k in 0..e {
                    let q = vld1q_s8(p);
                    p = p.add(h);
                    let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_high_s8(q));
                    let w = [
                        vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
                        vcvtq_f32_s32(vmovl_high_s16(lo)),
                        vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
                        vcvtq_f32_s32(vmovl_high_s16(hi)),
                    ];
                    for (acc, x) in acc.iter_mut().zip(&xs) {
                        let xk = *x.get_unchecked(k);
                        for (a, &w) in acc.iter_mut().zip(&w) {
                            *a = vaddq_f32(*a, vmulq_n_f32(w, xk));
                        }
                    }
                }
                for (t, acc) in acc.into_iter().enumerate() {
                    let yp = y.as_mut_ptr().add((g * T + t) * h + j);
                    for (i, a) in acc.into_iter().enumerate() {
                        let o = j + 4 * i;
                        let v = vmulq_f32(vld1q_f32(scales.as_ptr().add(o)), a);
                        vst1q_f32(yp.add(4 * i), vaddq_f32(v, vld1q_f32(bias.as_ptr().add(o))));
                    }
                }
            }
        }
    }
    (groups * T, n)
}

/// [`reference::lane_sum`](super::reference::lane_sum) of `x` (with `mean` `None`) or of `(x - mean)^2`, the
/// same bits: lanes 0..4 and 4..8 of the eight in two vectors, each chunk of eight added in order, then
/// `(l0 + l4, l1 + l5, l2 + l6, l3 + l7)` in one `fadd` and pairwise as the reference pairs them, then the tail
/// left to right.
#[inline(always)]
pub(crate) fn lane_sum(x: &[f32], mean: Option<f32>) -> f32 {
    let n = x.len() / 8 * 8;
    let f = |v: f32| match mean {
        Some(m) => (v - m) * (v - m),
        None => v,
    };
    // SAFETY: each step loads 8 `f32` at `i`, `i + 8 <= n <= x.len()`; `ld1` needs only `f32` alignment. The rest
    // is register-only (AArch64 baseline).
    let c = unsafe {
        let (mut lo, mut hi) = (vdupq_n_f32(-0.0), vdupq_n_f32(-0.0));
        let p = x.as_ptr();
        let m = vdupq_n_f32(mean.unwrap_or(0.0));
        for i in (0..n).step_by(8) {
            let (a, b) = (vld1q_f32(p.add(i)), vld1q_f32(p.add(i + 4)));
            let (a, b) = match mean {
                Some(_) => {
                    let (a, b) = (vsubq_f32(a, m), vsubq_f32(b, m));
                    (vmulq_f32(a, a), vmulq_f32(b, b))
                }
                None => (a, b),
            };
            lo = vaddq_f32(lo, a);
            hi = vaddq_f32(hi, b);
        }
        vaddq_f32(lo, hi)
    };
    // SAFETY: register-only (AArch64 baseline).
    let c: [f32; 4] = unsafe { core::mem::transmute(c) };
    let tail = x[n..].iter().fold(-0.0f32, |s, &v| s + f(v));
    ((c[0] + c[1]) + (c[2] + c[3])) + tail
}
