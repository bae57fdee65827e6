//! `y = W x + b` for one row of activations, in both precisions. Weight rows `row0..row0 + out.len()` of `w`.

use crate::format::{Matrix, MatrixData};
use crate::kernels;

/// `out[r] = w[row0 + r] . x + bias[r]` with `f32` activations; an int8 `w` is dequantised on the fly
/// (`scale[row] * sum(q * x)`).
pub(crate) fn linear_f32(w: &Matrix, row0: usize, x: &[f32], bias: &[f32], out: &mut [f32]) {
    let cols = w.cols;
    match w.data {
        MatrixData::F32(values) => {
            let rows = values.get(row0 * cols..).unwrap_or(&[]).chunks_exact(cols.max(1));
            for ((o, row), &b) in out.iter_mut().zip(rows).zip(bias) {
                *o = kernels::dot_f32(row, x) + b;
            }
        }
        MatrixData::I8 { values, scales } => {
            let rows = values.get(row0 * cols..).unwrap_or(&[]).chunks_exact(cols.max(1));
            let scales = scales.get(row0..).unwrap_or(&[]);
            for (((o, row), &s), &b) in out.iter_mut().zip(rows).zip(scales).zip(bias) {
                let dot = row.iter().zip(x).fold(0.0f32, |acc, (&q, &v)| acc + q as f32 * v);
                *o = s * dot + b;
            }
        }
    }
}

/// int8 `y = W x + b`: `acc[r] = sum_c q_w[row0 + r][c] * x[c]` exactly in `i32`, then, in place,
/// `y[r] = acc[r] as f32 * (x_scale * w_scale[row0 + r]) + bias[r]`. Returns `acc` reinterpreted as the `f32`
/// outputs (same memory: the int8 engine keeps one accumulator buffer). `w` must be int8 (checked by `classify`).
pub(crate) fn linear_i8<'s>(
    w: &Matrix,
    row0: usize,
    x: &[i8],
    x_scale: f32,
    bias: &[f32],
    acc: &'s mut [i32],
) -> &'s mut [f32] {
    let cols = w.cols;
    let rows = acc.len();
    let (values, scales) = match w.data {
        MatrixData::I8 { values, scales } => (values, scales),
        MatrixData::F32(_) => (&[][..], &[][..]),
    };
    let values = values.get(row0 * cols..(row0 + rows) * cols).unwrap_or(&[]);
    let scales = scales.get(row0..row0 + rows).unwrap_or(&[]);
    kernels::gemv_i8_i32(values, cols, x, acc);
    for ((a, &s), &b) in acc.iter_mut().zip(scales).zip(bias) {
        let y = *a as f32 * (x_scale * s) + b;
        *a = y.to_bits() as i32;
    }
    bytemuck::cast_slice_mut(acc)
}

/// Reinterprets an accumulator whose words hold `f32` bit patterns (see [`linear_i8`]).
pub(crate) fn as_f32(acc: &mut [i32]) -> &mut [f32] {
    bytemuck::cast_slice_mut(acc)
}
