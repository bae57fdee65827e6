//! The row-blocking driver every optimised GEMV shares: rows in blocks of `R` (each load of `x` serves `R` weight
//! rows), the leftover rows one at a time, degenerate calls to the reference. Kernels supply only their dot
//! products.

use super::reference;

/// `out[r] = w[r * stride..][..cols] . x` for every row the reference ([`reference::gemv_i8_i32_strided`]) would
/// compute: blocks of `R` rows through `block`, the rest through `single`. Calls outside the contract
/// (`cols == 0`, `stride == 0`, `x` shorter than `cols`) go to the reference unchanged, so every input gives the
/// reference's output.
#[inline(always)]
pub(crate) fn gemv_rows<const R: usize>(
    w: &[i8],
    stride: usize,
    cols: usize,
    x: &[i8],
    out: &mut [i32],
    block: impl Fn([&[i8]; R], &[i8]) -> [i32; R],
    single: impl Fn(&[i8], &[i8]) -> i32,
) {
    if cols == 0 || stride == 0 || x.len() < cols {
        return reference::gemv_i8_i32_strided(w, stride, cols, x, out);
    }
    let x = &x[..cols];
    // The reference stops at whichever runs out first, the outputs or whole rows of `w`.
    let rows = if w.len() < cols {
        0
    } else {
        out.len().min((w.len() - cols) / stride + 1)
    };
    let out = &mut out[..rows];
    // Row `r` is `w[r * stride..][..cols]`; every such slice is in bounds for `r < rows` by the definition above.
    let row = |r: usize| &w[r * stride..r * stride + cols];
    let mut out_blocks = out.chunks_exact_mut(R);
    let mut r = 0;
    for o in &mut out_blocks {
        let rows: [&[i8]; R] = core::array::from_fn(|i| row(r + i));
        o.copy_from_slice(&block(rows, x));
        r += R;
    }
    for o in out_blocks.into_remainder() {
        *o = single(row(r), x);
        r += 1;
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
