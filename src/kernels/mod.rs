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

/// `u32` words of workspace [`gemm_i8_blocks`] wants for `cols` columns in blocks of `block` (0 where no kernel
/// uses one: every target but x86-64). With less, it still gives the same results, token by token.
pub const fn gemm_workspace_words(cols: usize, block: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        x86::gemm_workspace_words(cols, block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (cols, block);
        0
    }
}

/// Block-scaled int8 GEMM into `f32` for several tokens at once (the engine's linear layers over a tile of
/// tokens): equal, bit for bit, to [`reference::gemm_i8_blocks_f32`], i.e. [`gemv_i8_blocks`] token by token.
/// `work` is scratch for the x86-64 kernel ([`gemm_workspace_words`]).
///
/// Where no multi-token kernel exists, rows go in chunks of about [`GEMM_WEIGHT_CHUNK`] bytes, each serving every
/// token while it is in cache.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_blocks(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    rows: usize,
    out: &mut [f32],
    work: &mut [u32],
) {
    #[cfg(target_arch = "x86_64")]
    if x86::gemm_i8_blocks_vnni(w, cols, x, block, x_scales, rows, out, work) {
        return;
    }
    let _ = work;
    if rows == 0 || cols == 0 || block == 0 {
        return reference::gemm_i8_blocks_f32(w, cols, x, block, x_scales, rows, out);
    }
    let nb = cols.div_ceil(block);
    let tokens = out.len() / rows;
    let chunk = (GEMM_WEIGHT_CHUNK / cols).max(1).next_multiple_of(4);
    for r0 in (0..rows).step_by(chunk) {
        let rn = chunk.min(rows - r0);
        let wc = w.get(r0 * cols..).unwrap_or(&[]);
        for t in 0..tokens {
            let xt = x.get(t * cols..).unwrap_or(&[]);
            let st = x_scales.get(t * nb..).unwrap_or(&[]);
            let o = &mut out[t * rows + r0..t * rows + r0 + rn];
            gemv_i8_blocks(
                wc,
                cols,
                &xt[..cols.min(xt.len())],
                block,
                &st[..nb.min(st.len())],
                o,
            );
        }
    }
}

/// Bytes of weight rows the token-by-token [`gemm_i8_blocks`] keeps hot while it serves every token.
pub const GEMM_WEIGHT_CHUNK: usize = 32 * 1024;
