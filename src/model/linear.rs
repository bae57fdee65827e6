//! `y = W x + b` for one row of activations, in both precisions. Weight rows `row0..row0 + out.len()` of `w`.

use crate::format::{Matrix, MatrixData};
use crate::kernels::GemmInput;
use crate::parallel::{self, Linear, Parallel, Sequential};

/// `out[r] = w[row0 + r] . x + bias[r]` with `f32` activations; an int8 `w` is dequantised on the fly
/// (`scale[row] * sum(q * x) + bias`, then its side columns added: [`add_side`]).
///
/// Each row's dot product is summed left to right exactly as [`crate::kernels::dot_f32`] does; four rows are walked side
/// by side only so that their independent sums overlap in the pipeline (same bits, several times faster; the
/// converter's calibration runs this path over whole calibration sets).
pub(crate) fn linear_f32(w: &Matrix, row0: usize, x: &[f32], bias: &[f32], out: &mut [f32]) {
    let cols = w.cols;
    match w.data {
        MatrixData::F32(values) => {
            let values = values.get(row0 * cols..).unwrap_or(&[]);
            dots4(values, cols, x, out, |v| v);
            for (o, &b) in out.iter_mut().zip(bias) {
                *o += b;
            }
        }
        MatrixData::I8 { values, scales } => {
            let values = values.get(row0 * cols..).unwrap_or(&[]);
            let scales = scales.get(row0..).unwrap_or(&[]);
            dots4(values, cols, x, out, |q| q as f32);
            for ((o, &s), &b) in out.iter_mut().zip(scales).zip(bias) {
                *o = s * *o + b;
            }
            add_side(w, row0, out.len(), x, out);
        }
    }
}

/// Adds the side columns of rows `row0..row0 + rows` of `w` (see [`crate::format::Side`]) to a tile's outputs:
/// token `t`'s `y[t * rows + r] += side.dot(row0 + r, x[t * cols..][..cols])`, where `x` holds the tile's `f32`
/// input rows. Nothing without side columns. Both precisions add them this way, after the bias.
#[inline]
pub(crate) fn add_side(w: &Matrix, row0: usize, rows: usize, x: &[f32], y: &mut [f32]) {
    if w.side.is_empty() || rows == 0 || w.cols == 0 {
        return;
    }
    for (yt, xt) in y.chunks_exact_mut(rows).zip(x.chunks_exact(w.cols)) {
        for (r, y) in yt.iter_mut().enumerate() {
            *y += w.side.dot(row0 + r, xt);
        }
    }
}

/// int8 `y = W x + b` for one token whose int8 row `x` has the one scale `x_scale`. For each output row `r`
/// (weight row `row0 + r`):
///
/// * `f = 0.0 + (sum_c q_w[row0 + r][c] * x[c]) as f32 * x_scale`: the dot product exact in `i32`
///   ([`crate::kernels::gemv_i8_blocks`] with one block; this is the one-token case of [`linear_i8_tokens`]);
/// * `y[r] = f * w_scale[row0 + r] + bias[r]`.
///
/// The outputs overwrite `acc` (reinterpreted as `f32`, which is returned): the int8 engine keeps one accumulator
/// buffer. `w` must be int8 (checked by `classify`). Side columns are the caller's ([`add_side`]).
pub(crate) fn linear_i8<'s>(
    w: &Matrix,
    row0: usize,
    x: &[i8],
    x_scale: f32,
    bias: &[f32],
    acc: &'s mut [i32],
) -> &'s mut [f32] {
    let rows = acc.len();
    let scales = [x_scale];
    let input = GemmInput::new(x, w.cols, w.cols, &scales, 1, &mut []);
    linear_i8_tokens(
        w,
        row0,
        rows,
        &[],
        &input,
        bias,
        acc,
        (&Sequential, &mut []),
    )
}

/// Reinterprets an accumulator whose words hold `f32` bit patterns (see [`linear_i8`]).
pub(crate) fn as_f32(acc: &mut [i32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(acc)
}

/// `out[r] = sum_c f(w[r * cols + c]) * x[c]`, each sum from 0.0 left to right, four rows at a time.
#[inline(always)]
fn dots4<T: Copy>(w: &[T], cols: usize, x: &[f32], out: &mut [f32], f: impl Fn(T) -> f32) {
    let cols = cols.max(1);
    let mut rows = w.chunks_exact(cols);
    let mut outs = out.chunks_exact_mut(4);
    for o in &mut outs {
        let (Some(r0), Some(r1), Some(r2), Some(r3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        else {
            o.iter_mut().for_each(|o| *o = 0.0);
            return;
        };
        let mut acc = [0.0f32; 4];
        for ((((&a, &b), &c), &d), &v) in r0.iter().zip(r1).zip(r2).zip(r3).zip(x) {
            acc[0] += f(a) * v;
            acc[1] += f(b) * v;
            acc[2] += f(c) * v;
            acc[3] += f(d) * v;
        }
        o.copy_from_slice(&acc);
    }
    for o in outs.into_remainder() {
        *o = rows.next().map_or(0.0, |r| {
            r.iter().zip(x).fold(0.0f32, |acc, (&q, &v)| acc + f(q) * v)
        });
    }
}

/// [`linear_i8`] for several tokens at once: rows `row0..row0 + rows` of `w` applied to the tokens of `input`,
/// token `t`'s outputs in `out[t * rows..][..rows]` (reinterpreted as `f32`, returned). `sums` are those rows'
/// block sums ([`crate::kernels::gemm_weight_sums`]; may be empty). Every output has the bits [`linear_i8`] gives it
/// ([`crate::kernels::gemm_i8_blocks`] equals the GEMV token by token), however `par` shares the work out (`stage`: room
/// for the threads' rows, see [`parallel::run_linear`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_i8_tokens<'s>(
    w: &Matrix,
    row0: usize,
    rows: usize,
    sums: &[i32],
    input: &GemmInput,
    bias: &[f32],
    out: &'s mut [i32],
    (par, stage): (&dyn Parallel, &mut [f32]),
) -> &'s mut [f32] {
    let cols = w.cols;
    let (values, scales) = match w.data {
        MatrixData::I8 { values, scales } => (values, scales),
        MatrixData::F32(_) => (&[][..], &[][..]),
    };
    let values = values.get(row0 * cols..(row0 + rows) * cols).unwrap_or(&[]);
    let scales = scales.get(row0..row0 + rows).unwrap_or(&[]);
    let y: &mut [f32] = bytemuck::cast_slice_mut(out);
    let linear = Linear {
        w: values,
        w_scales: scales,
        bias,
        rows,
        sums,
        input,
        first: 0,
        out: &mut *y,
    };
    parallel::run_linear(par, linear, stage);
    y
}
