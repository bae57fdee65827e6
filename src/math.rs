//! The ONLY place transcendental functions live, so host and device compute the same bits.
//!
//! Everything goes through `libm` (a pure-Rust port of musl's libm): the same software algorithm on every target,
//! built from IEEE-754 basic operations, so results are bit-identical on x86-64, aarch64, armv7 and Cortex-M (Rust
//! never fuses `a * b + c` on its own). `micromath` was measured for this role and rejected: its `sqrt` deviates by
//! up to 5 % and its `exp` by up to 1e-3, which breaks the 1e-4 agreement with Hugging Face the fp32 path must keep.

/// `e^x`.
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
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

/// Tanh-approximated GELU (`"gelu_new"`): `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`.
#[inline]
pub fn gelu_new(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))
}

/// Applies `act` in place.
#[inline]
pub fn activate(act: crate::Activation, xs: &mut [f32]) {
    match act {
        crate::Activation::Gelu => xs.iter_mut().for_each(|x| *x = gelu(*x)),
        crate::Activation::GeluNew => xs.iter_mut().for_each(|x| *x = gelu_new(*x)),
        crate::Activation::Relu => xs.iter_mut().for_each(|x| *x = x.max(0.0)),
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
}
