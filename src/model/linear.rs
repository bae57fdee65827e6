//! `y = W x + b` for one row of activations, in both precisions. Weight rows `row0..row0 + out.len()` of `w`. The
//! f32 forward pass runs its linear layers through an [`F32Linear`], whose default is [`TokenByToken`].

use super::observer::Site;
use crate::format::{Matrix, MatrixData};
use crate::kernels::{self, GemmInput};
use crate::parallel::{self, GemmPart, GemmWork, Parallel, Sequential};
use core::ops::Range;

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

/// How the f32 forward pass ([`Precision::F32`](super::Precision::F32)) computes its linear layers: each one is
/// a single call over all the tokens it applies to, so an implementation may multiply them as a matrix.
///
/// The contract is [`TokenByToken`]'s bits: every output `y[t][r]` must be `0.0 + w[r][0] * x[t][0] + ... +
/// w[r][cols - 1] * x[t][cols - 1]`, summed left to right in `f32` without fused multiply-adds, then `+ bias[r]`
/// (an int8 `w`: see [`TokenByToken`]). Only the order in which different outputs are computed is free; the
/// f32 path is the reference that calibration and tests measure against, so its logits must not depend on the
/// implementation.
pub trait F32Linear {
    /// `y[t][r] = w[r] . x[t] + bias[r]` for every token `t`: `x` is `(tokens, w.cols)` and `y` is
    /// `(tokens, w.rows)`, with the same number of tokens (at least one). `site` names the matrix `w` is (the
    /// shared layer's sites are the same matrix on every pass), so an implementation may keep per-site data, such
    /// as repacked weights, made once for a model.
    fn linear(&mut self, site: Site, w: &Matrix, bias: &[f32], x: &[f32], y: &mut [f32]);
}

/// The core's [`F32Linear`]: one matrix-vector product per token (`linear_f32`), each row's sum from `0.0` left
/// to right over the input, four rows walked side by side; an int8 `w` is dequantised on the fly
/// (`scale[r] * sum(q * x) + bias[r]`, then its side columns added). No allocation, no state.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenByToken;

impl F32Linear for TokenByToken {
    #[inline]
    fn linear(&mut self, _site: Site, w: &Matrix, bias: &[f32], x: &[f32], y: &mut [f32]) {
        let (rows, cols) = (w.rows.max(1), w.cols.max(1));
        for (xt, yt) in x.chunks_exact(cols).zip(y.chunks_exact_mut(rows)) {
            linear_f32(w, 0, xt, bias, yt);
        }
    }
}

impl<L: F32Linear + ?Sized> F32Linear for &mut L {
    #[inline(always)]
    fn linear(&mut self, site: Site, w: &Matrix, bias: &[f32], x: &[f32], y: &mut [f32]) {
        (**self).linear(site, w, bias, x, y)
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
    let exec = Exec {
        par: &Sequential,
        stage: &mut [],
    };
    let out = as_f32(acc);
    linear_i8_tokens(w, row0..row0 + rows, &[], &input, bias, &mut *out, exec);
    out
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

/// Who computes a linear layer's outputs: `par` shares the work out, with `stage` as room for the threads' rows
/// (see [`parallel::run_gemm`]; may be empty).
pub(crate) struct Exec<'e> {
    pub par: &'e dyn Parallel,
    pub stage: &'e mut [f32],
}

/// [`linear_i8`] for several tokens at once: weight rows `rows` of `w` applied to the tokens of `input`, token
/// `t`'s outputs in `out[t * rows.len()..][..rows.len()]`. `sums` are those rows' block sums
/// ([`crate::kernels::gemm_weight_sums`]; may be empty). Every output has the bits [`linear_i8`] gives it
/// ([`crate::kernels::gemm_i8_blocks`] equals the GEMV token by token), however `exec` shares the work out.
pub(crate) fn linear_i8_tokens(
    w: &Matrix,
    rows: Range<usize>,
    sums: &[i32],
    input: &GemmInput,
    bias: &[f32],
    out: &mut [f32],
    exec: Exec,
) {
    let cols = w.cols;
    let (values, scales) = match w.data {
        MatrixData::I8 { values, scales } => (values, scales),
        MatrixData::F32(_) => (&[][..], &[][..]),
    };
    let work = LinearI8 {
        w: values
            .get(rows.start * cols..rows.end * cols)
            .unwrap_or(&[]),
        w_scales: scales.get(rows.clone()).unwrap_or(&[]),
        bias,
        rows: rows.len(),
        sums,
        input,
    };
    parallel::run_gemm(exec.par, &work, out, exec.stage);
}

/// `out[t][r] = (w[r] . x[t]) * w_scales[r] + bias[r]` for a GEMM input's tokens `x`: the block-scaled int8
/// linear layer, computed in whatever parts [`parallel::run_gemm`] asks for.
struct LinearI8<'a> {
    /// (rows, cols)
    w: &'a [i8],
    /// (rows)
    w_scales: &'a [f32],
    /// (rows)
    bias: &'a [f32],
    rows: usize,
    /// (rows, blocks), or empty.
    sums: &'a [i32],
    input: &'a GemmInput<'a>,
}

impl GemmWork for LinearI8<'_> {
    fn rows(&self) -> usize {
        self.rows
    }

    fn token_step(&self) -> usize {
        self.input.token_step()
    }

    fn run(&self, part: GemmPart<'_>) {
        let (r0, rows) = (part.rows.start, part.rows.len());
        let (cols, blocks) = (self.input.cols(), self.input.blocks());
        let w = self.w.get(r0 * cols..).unwrap_or(&[]);
        let w_scales = self.w_scales.get(r0..).unwrap_or(&[]);
        let bias = self.bias.get(r0..).unwrap_or(&[]);
        let sums = self.sums.get(r0 * blocks..).unwrap_or(&[]);
        // The GEMM writes every output of the tokens the input has (each of the `rows` rows exists in `w`); only
        // outputs past those start from zero.
        let y = part.out;
        let tokens = self.input.tokens().saturating_sub(part.first_token);
        let written = (rows * tokens).min(y.len() / rows.max(1) * rows);
        y[written..].iter_mut().for_each(|y| *y = 0.0);
        kernels::gemm_i8_blocks_from(w, rows, sums, self.input, part.first_token, y);
        for yt in y.chunks_exact_mut(rows.max(1)) {
            for ((y, &s), &b) in yt.iter_mut().zip(w_scales).zip(bias) {
                *y = *y * s + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// A small GEMM split every way `run_gemm` splits one, by every kind of `Parallel`, against one job on this
    /// thread: the same bits. Small enough for Miri, which checks `Threads`' claims for data races.
    #[test]
    fn every_split_gives_the_same_bits() {
        let (rows, cols, block) = (40, 12, 4);
        let w: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8) // -127..=127, as the converter quantises weights
            .collect();
        let w_scales: Vec<f32> = (0..rows).map(|r| 0.01 + r as f32 * 1e-3).collect();
        let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.5 - 3.0).collect();
        #[cfg(feature = "std")]
        let pools = [parallel::Threads::new(2), parallel::Threads::new(4)];
        for tokens in [0, 1, 2, 5, 9] {
            let x: Vec<i8> = (0..tokens * cols)
                .map(|i| (i * 91 % 251) as u8 as i8)
                .collect();
            let xs: Vec<f32> = (0..tokens * cols / block)
                .map(|i| 0.1 + i as f32 * 0.01)
                .collect();
            let input = GemmInput::new(&x, cols, block, &xs, tokens, &mut []);
            let work = LinearI8 {
                w: &w,
                w_scales: &w_scales,
                bias: &bias,
                rows,
                sums: &[],
                input: &input,
            };
            let mut expected = std::vec![0f32; tokens * rows];
            work.run(GemmPart {
                rows: 0..rows,
                first_token: 0,
                out: &mut expected,
            }); // one job, on this thread
            #[cfg_attr(not(feature = "std"), allow(unused_mut))]
            let mut parallels: Vec<&dyn Parallel> = std::vec![&Sequential];
            #[cfg(feature = "std")]
            parallels.extend(pools.iter().map(|p| p as &dyn Parallel));
            for par in parallels {
                // With room to stage rows (splits by rows) and without (splits by tokens).
                for stage in [0, tokens * rows] {
                    let mut got = std::vec![f32::NAN; tokens * rows];
                    let mut stage = std::vec![f32::NAN; stage];
                    parallel::run_gemm(par, &work, &mut got, &mut stage);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&expected),
                        "{tokens} tokens, {} threads",
                        par.threads()
                    );
                }
            }
        }
    }
}
