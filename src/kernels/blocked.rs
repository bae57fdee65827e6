//! The row-blocking driver every optimised GEMV shares: rows in blocks of `R` (each load of `x` serves `R` weight
//! rows), the leftover rows one at a time, degenerate calls to the reference. Kernels supply only their dot
//! products.

use super::reference;

/// `out[r] = w[r * cols..][..cols] . x` for every row the reference would compute: blocks of `R` rows through
/// `block`, the rest through `single`. Calls outside the contract (`cols == 0`, `x` shorter than `cols`) go to
/// [`reference::gemv_i8_i32`] unchanged, so every input gives the reference's output.
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

/// `sums[i] + rows[i][done..] . x[done..]`: a vector kernel's partial sums completed by the scalar tail, wrapping
/// like the reference's release build.
#[inline(always)]
pub(crate) fn with_tail<const R: usize>(
    rows: [&[i8]; R],
    (sums, done): ([i32; R], usize),
    x: &[i8],
) -> [i32; R] {
    core::array::from_fn(|i| {
        sums[i].wrapping_add(reference::dot_i8_i32(&rows[i][done..], &x[done..]))
    })
}
