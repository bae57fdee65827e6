//! Compute kernels. `reference` is the specification; optimised variants for a target are chosen at build time
//! with `#[cfg(target_arch / target_feature)]` and must agree with it exactly (integer kernels bit for bit).

#[cfg(any(
    target_arch = "aarch64",
    all(
        target_arch = "arm",
        any(feature = "arm-neon", feature = "arm-dsp", feature = "arm-helium")
    )
))]
mod blocked;
#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
pub mod dsp;
#[cfg(all(target_arch = "arm", feature = "arm-helium"))]
pub mod helium;
#[cfg(any(
    target_arch = "aarch64",
    all(target_arch = "arm", feature = "arm-neon")
))]
pub mod neon;
pub mod reference;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use reference::{dot_f32, gemv_i16_i32, gemv_u8_i8_i32, layer_norm_f32, masked_softmax_f32};

/// int8 matrix-vector product with `i32` accumulation: `out[r] = sum_c w[r * cols + c] * x[c]`.
/// Dispatches to the best kernel compiled for this target; always equal to [`reference::gemv_i8_i32`].
#[inline]
#[allow(unreachable_code)] // with several kernels enabled, the first one compiled wins
pub fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    #[cfg(all(target_arch = "arm", feature = "arm-helium"))]
    return helium::gemv_i8_i32(w, cols, x, out);
    #[cfg(any(
        target_arch = "aarch64",
        all(target_arch = "arm", feature = "arm-neon")
    ))]
    return neon::gemv_i8_i32(w, cols, x, out);
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    return dsp::gemv_i8_i32(w, cols, x, out);
    #[cfg(target_arch = "x86_64")]
    return x86::gemv_i8_i32_avx2(w, cols, x, out);
    #[allow(unreachable_code)]
    reference::gemv_i8_i32(w, cols, x, out)
}

/// Block-scaled int8 GEMV into `f32` (the engine's every linear layer): dispatches like [`gemv_i8_i32`]; always
/// equal, bit for bit, to [`reference::gemv_i8_blocks_f32`].
#[inline]
#[allow(unreachable_code)] // with several kernels enabled, the first one compiled wins
pub fn gemv_i8_blocks(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    #[cfg(all(target_arch = "arm", feature = "arm-helium"))]
    return helium::gemv_i8_blocks(w, cols, x, block, x_scales, out);
    #[cfg(any(
        target_arch = "aarch64",
        all(target_arch = "arm", feature = "arm-neon")
    ))]
    return neon::gemv_i8_blocks(w, cols, x, block, x_scales, out);
    #[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
    return dsp::gemv_i8_blocks(w, cols, x, block, x_scales, out);
    #[cfg(target_arch = "x86_64")]
    return x86::gemv_i8_blocks_x86(w, cols, x, block, x_scales, out);
    #[allow(unreachable_code)]
    reference::gemv_i8_blocks_f32(w, cols, x, block, x_scales, out)
}

/// [`reference::gemv_u8_i8_i32`] through the int8 kernel: `x = x_off + 128` with `x_off` in `-128..=127` (the u8
/// probabilities with their top bit flipped), so `w . x = w . x_off + 128 * sum(w)`. `row_sums[r]` must be the sum
/// of row `r` of `w` (computed once when `w` is built). Equal to the reference for every input.
#[inline]
pub fn gemv_u8_i8_i32_offset(
    w: &[i8],
    cols: usize,
    x_off: &[i8],
    row_sums: &[i32],
    out: &mut [i32],
) {
    gemv_i8_i32(w, cols, x_off, out);
    for (o, &s) in out.iter_mut().zip(row_sums) {
        *o = o.wrapping_add(s.wrapping_mul(128));
    }
}
