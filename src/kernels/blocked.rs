//! The row-blocking driver every optimised GEMV shares: rows in blocks of `R` (each load of `x` serves `R` weight
//! rows), the leftover rows one at a time, degenerate calls to the reference. Kernels supply only their dot
//! products.

use super::reference;

/// `out[r] = w[r * cols..][..cols] . x` for every row the reference ([`reference::gemv_i8_i32`]) would compute:
/// blocks of `R` rows through `block`, the rest through `single`. Calls outside the contract (`cols == 0`, `x`
/// shorter than `cols`) go to the reference unchanged, so every input gives the reference's output.
#[inline(always)]
pub(crate) fn gemv_rows<const R: usize>(
    w: &[i8],
    cols: usize,
    x: &[i8],
    out: &mut [i32],
    block: impl Fn([&[i8]; R], &[i8]) -> [i32; R],
    single: impl Fn(&[i8], &[i8]) -> i32,
) {
    if cols == 0 || x.len() < cols {
        return reference::gemv_i8_i32(w, cols, x, out);
    }
    let x = &x[..cols];
    // The reference stops at whichever runs out first, the outputs or whole rows of `w`.
    let rows = out.len().min(w.len() / cols);
    let (w, out) = (&w[..rows * cols], &mut out[..rows]);
    let mut out_blocks = out.chunks_exact_mut(R);
    let mut w_blocks = w.chunks_exact(R * cols);
    for (o, wb) in (&mut out_blocks).zip(&mut w_blocks) {
        let rows: [&[i8]; R] = core::array::from_fn(|i| &wb[i * cols..(i + 1) * cols]);
        o.copy_from_slice(&block(rows, x));
    }
    for (o, row) in out_blocks
        .into_remainder()
        .iter_mut()
        .zip(w_blocks.remainder().chunks_exact(cols))
    {
        *o = single(row, x);
    }
}

/// [`reference::gemv_i8_blocks_f32`] with the same per-block dot products as [`gemv_rows`]: `R` rows at a time,
/// each block's `R` dot products through `block_dots`, then the `f32` combination row by row in block order
/// (bit for bit the reference's). Degenerate calls (`cols == 0`, `block == 0`, `x` shorter than `cols`) go to the
/// reference.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_arch = "aarch64", allow(dead_code))] // AArch64 has its own block kernel (neon.rs)
pub(crate) fn gemv_blocks_rows<const R: usize>(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
    block_dots: impl Fn([&[i8]; R], &[i8]) -> [i32; R],
    single: impl Fn(&[i8], &[i8]) -> i32,
) {
    if cols == 0 || block == 0 || x.len() < cols {
        return reference::gemv_i8_blocks_f32(w, cols, x, block, scales, out);
    }
    let x = &x[..cols];
    let rows = out.len().min(w.len() / cols);
    let nb = cols.div_ceil(block).min(scales.len());
    let out = &mut out[..rows];
    // Block `b` of row `r`: `w[r * cols + c0..r * cols + c1]`, in bounds for `r < rows`, `c1 <= cols`.
    let window = |r: usize, c0: usize, c1: usize| &w[r * cols + c0..r * cols + c1];
    let mut out_blocks = out.chunks_exact_mut(R);
    let mut r = 0;
    for o in &mut out_blocks {
        let mut f = [0.0f32; R];
        for (b, &s) in scales[..nb].iter().enumerate() {
            let (c0, c1) = (b * block, ((b + 1) * block).min(cols));
            let dots = block_dots(core::array::from_fn(|i| window(r + i, c0, c1)), &x[c0..c1]);
            for (f, d) in f.iter_mut().zip(dots) {
                *f += d as f32 * s;
            }
        }
        o.copy_from_slice(&f);
        r += R;
    }
    for o in out_blocks.into_remainder() {
        let mut f = 0.0f32;
        for (b, &s) in scales[..nb].iter().enumerate() {
            let (c0, c1) = (b * block, ((b + 1) * block).min(cols));
            f += single(window(r, c0, c1), &x[c0..c1]) as f32 * s;
        }
        *o = f;
        r += 1;
    }
}

/// `sums[i] + rows[i][done..] . x[done..]`: a vector kernel's partial sums completed by the scalar tail, wrapping
/// like the reference's release build. (The NEON and DSP kernels use it; a Helium-only build does not.)
#[inline(always)]
#[cfg(any(target_arch = "aarch64", feature = "arm-neon", feature = "arm-dsp"))]
pub(crate) fn with_tail<const R: usize>(
    rows: [&[i8]; R],
    (sums, done): ([i32; R], usize),
    x: &[i8],
) -> [i32; R] {
    if done >= x.len() {
        return sums;
    }
    core::array::from_fn(|i| {
        sums[i].wrapping_add(reference::dot_i8_i32(&rows[i][done..], &x[done..]))
    })
}

/// A row kernel's public GEMVs through the drivers above, for the kernels that differ only in their dot products
/// (DSP, Helium): `$gemv` through [`gemv_rows`] and `$blocks` through [`gemv_blocks_rows`], from `$rows`-row dot
/// products `$dots` and one row's `$dot` (both complete, tail included), and the names the dispatch calls them
/// by (`gemv_i8_i32`, `gemv_i8_blocks`). `$how` ends the `$gemv` doc line; `$feature` is the Cargo feature.
#[cfg(all(target_arch = "arm", any(feature = "arm-dsp", feature = "arm-helium")))]
macro_rules! row_kernels {
    (
        $rows:expr, $dots:path, $dot:path, $how:literal, $feature:literal, $gemv:ident, $blocks:ident,
        $backend:ident, $backend_doc:literal
    ) => {
        #[doc = concat!("[`reference::gemv_i8_i32`](super::reference::gemv_i8_i32) with ", $how)]
        pub fn $gemv(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
            super::blocked::gemv_rows::<{ $rows }>(w, cols, x, out, $dots, $dot)
        }

        #[doc = concat!(
            "[`reference::gemv_i8_blocks_f32`](super::reference::gemv_i8_blocks_f32) with the dot products of [`",
            stringify!($gemv),
            "`]."
        )]
        pub fn $blocks(w: &[i8], cols: usize, x: &[i8], block: usize, scales: &[f32], out: &mut [f32]) {
            super::blocked::gemv_blocks_rows::<{ $rows }>(w, cols, x, block, scales, out, $dots, $dot)
        }

        #[doc = concat!("The block-scaled kernel [`super::gemv_i8_blocks`] dispatches to with `", $feature, "`.")]
        pub use $blocks as gemv_i8_blocks;
        #[doc = concat!("The kernel [`super::gemv_i8_i32`] dispatches to with `", $feature, "`.")]
        pub use $gemv as gemv_i8_i32;

        #[doc = $backend_doc]
        pub struct $backend;

        impl super::Kernels for $backend {
            #[inline]
            fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
                $gemv(w, cols, x, out)
            }

            #[inline]
            fn gemv_i8_blocks(
                w: &[i8],
                cols: usize,
                x: &[i8],
                block: usize,
                x_scales: &[f32],
                out: &mut [f32],
            ) {
                $blocks(w, cols, x, block, x_scales, out)
            }
        }
    };
}
#[cfg(all(target_arch = "arm", any(feature = "arm-dsp", feature = "arm-helium")))]
pub(crate) use row_kernels;
