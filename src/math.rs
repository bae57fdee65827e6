//! The ONLY place transcendental functions live, so host and device compute the same bits.
//!
//! Everything is built from IEEE-754 basic operations in a fixed order: `exp` here (a range reduction and a
//! polynomial, no branches, so that the compiler can vectorise loops over it without changing a bit), the rest
//! from `libm` (a pure-Rust port of musl's libm). Results are bit-identical on x86-64, aarch64, armv7 and Cortex-M
//! (Rust never fuses `a * b + c` on its own). `micromath` was measured for this role and rejected: its `sqrt`
//! deviates by up to 5 % and its `exp` by up to 1e-3, which breaks the 1e-4 agreement with Hugging Face the fp32
//! path must keep.

/// `e^x`, within 2 ulp of the exact value for `x` in `-87..=88` (test `exp_is_within_two_ulp`); inputs outside
/// are clamped to that range (so `exp(-inf)` is about 1.6e-38, not 0; NaN stays NaN).
///
/// Cody-Waite range reduction `x = n ln 2 + r` (`|r| <= ln 2 / 2`, `ln 2` in two parts), `e^r` as
/// `1 + r + r^2 p(r)` with `p` a cubic fitted for the least largest relative error on that interval (about 1e-7,
/// as close as `f32` rounding allows: four coefficients where a Taylor series needs six), then `2^n` put straight
/// into the exponent bits. Branch-free: a loop over a slice vectorises (SSE/AVX/NEON lanes do each lane's scalar
/// operations, so the bits do not change), which is what makes the softmax and GELU cheap; `libm::expf` has
/// branches and does not.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer kept in the low bits of the mantissa.
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 8.312_492e-3;
    p = p * r + 4.189_012e-2;
    p = p * r + 1.666_711_4e-1;
    p = p * r + 0.499_992_3;
    let e = p * (r * r) + r + 1.0;
    // n is in -126..=127 after the clamp: 2^n is a normal number.
    let n = t.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    e * f32::from_bits(((n + 127) as u32) << 23)
}

/// `sqrt(x)` (correctly rounded).
#[inline]
pub fn sqrt(x: f32) -> f32 {
    libm::sqrtf(x)
}

/// `tanh(x)`.
#[inline]
pub fn tanh(x: f32) -> f32 {
    libm::tanhf(x)
}

/// The error function.
#[inline]
pub fn erf(x: f32) -> f32 {
    libm::erff(x)
}

/// Exact GELU (`"gelu"`): `0.5 x (1 + erf(x / sqrt 2))`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// Tanh-approximated GELU (`"gelu_new"`): `0.5 x (1 + tanh(u))` with `u = sqrt(2 / pi) (x + 0.044715 x^3)`,
/// computed as the equal `x / (1 + e^(-2u))` (since `(1 + tanh u) / 2 = 1 / (1 + e^(-2u))`): one [`exp`] and a
/// division, branch-free, so the activation loop vectorises.
#[inline(always)]
pub fn gelu_new(x: f32) -> f32 {
    // -2u = x (A + B x^2) with A = -2 sqrt(2 / pi) and B = 0.044715 A: four operations where the formula as
    // written takes six.
    const A: f32 = -1.595_769;
    const B: f32 = -0.071_354_82;
    x / (1.0 + exp(x * (A + B * (x * x))))
}

/// Applies `act` in place.
#[inline(always)]
pub fn activate(act: crate::Activation, xs: &mut [f32]) {
    match act {
        crate::Activation::Gelu => xs.iter_mut().for_each(|x| *x = gelu(*x)),
        crate::Activation::GeluNew => xs.iter_mut().for_each(|x| *x = gelu_new(*x)),
        crate::Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// `y[i] = act(x[i])` for `i < min(x.len(), y.len())`: [`activate`] into another buffer (one pass instead of the
/// activation in place and a copy).
#[inline(always)]
pub fn activate_to(act: crate::Activation, x: &[f32], y: &mut [f32]) {
    let pairs = y.iter_mut().zip(x);
    match act {
        crate::Activation::Gelu => pairs.for_each(|(y, &x)| *y = gelu(x)),
        crate::Activation::GeluNew => pairs.for_each(|(y, &x)| *y = gelu_new(x)),
        crate::Activation::Relu => pairs.for_each(|(y, &x)| *y = x.max(0.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        // Values from PyTorch's F.gelu (exact and approximate='tanh').
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-2.0) - -0.045_500_26).abs() < 1e-6);
        assert!((gelu_new(1.0) - 0.841_192).abs() < 1e-6);
        assert!((gelu_new(-2.0) - -0.045_402_3).abs() < 1e-6);
    }

    /// Distance in units in the last place between `got` and the `f64` value `want` rounded to `f32`.
    fn ulps(got: f32, want: f64) -> u32 {
        let (a, b) = (got.to_bits() as i32, (want as f32).to_bits() as i32);
        a.abs_diff(b)
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        let step = if cfg!(miri) { 0.173 } else { 0.000_731 };
        while x <= 88.0 {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
            x += step;
        }
        for x in [
            0.0f32, -0.0, 1e-30, -1e-30, 1e-7, 0.5, -0.5, 1.0, -1.0, 88.0, -87.0,
        ] {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(f32::NEG_INFINITY) > 0.0 && exp(f32::NEG_INFINITY) < 2e-38);
    }

    #[test]
    fn gelu_new_matches_the_tanh_formula_in_f64() {
        let mut x = -12.0f32;
        while x <= 12.0 {
            let xd = x as f64;
            let u = (2.0 / core::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
            let want = 0.5 * xd * (1.0 + u.tanh());
            let err = (gelu_new(x) as f64 - want).abs();
            assert!(
                err <= 4e-7 * (1.0 + want.abs()),
                "x {x}: {} vs {want}",
                gelu_new(x)
            );
            x += 0.001_37;
        }
    }
}
