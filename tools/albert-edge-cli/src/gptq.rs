//! Calibrated int8 weight rounding: GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for
//! Generative Pre-trained Transformers"), an OBQ-style error feedback, for one weight matrix.
//!
//! The output has exactly the format and arithmetic of round-to-nearest (`albert_edge::quant`): int8 in
//! `-127..=127`, one symmetric scale per row fixed up front (`max|w_row| / 127`), `w ≈ q * scale`. Only the
//! *choice* of each `q` changes: with `H = Σ x xᵀ` over the calibration inputs `x` of the layer, GPTQ minimises
//! `(w - ŵ)ᵀ H (w - ŵ)` per row, i.e. the squared output error on the calibration set, greedily column by column,
//! pushing each column's rounding error onto the columns not yet rounded.
//!
//! # The update
//!
//! GPTQ writes the update with the upper Cholesky factor `U` of `H⁻¹`. Equivalently, and without inverting `H`:
//! factor `H = MᵀM` with `M` **lower** triangular (the Cholesky factor of `H` with rows and columns reversed).
//! With `d = w - ŵ` the rounding error of the columns already done,
//!
//! ```text
//! w̃_j = w_j + (1 / M_jj) Σ_{k<j} M_jk d_k,     q_j = round(w̃_j / scale),     d_j = w_j - q_j * scale
//! ```
//!
//! which is GPTQ's sequential update unrolled (`w - ŵ = Uᵀe` and `U = M⁻ᵀ` up to the reversal; for two columns
//! `w̃_1 = w_1 + d_0 H_01 / H_11`, OBS's optimal compensation). Output rows are independent given their scales, so
//! they run in parallel, a block of rows at a time so each row of `M` is read once per block.
//!
//! Columns are rounded in input order, or with [`GptqOrder::Act`] in decreasing `H_jj` (act-order: the weight and
//! `H` are permuted, rounded, and `q` permuted back; measured and left off, QUANTIZATION.md section 8). Columns kept in `f32` (a matrix's side columns,
//! [`quantize_matrix_gptq_free`]) come last and are not rounded: each takes its compensated value `w̃_j` as it
//! is, so it absorbs the feedback of every int8 column.
//!
//! `H` gets `damp · mean(diag H)` added to its diagonal (GPTQ's damping, 10 % by default), and columns never
//! excited by the calibration data (`H_jj = 0`) get `H_jj = 1`, so they are rounded to nearest and receive no
//! feedback worth the name.

use albert_edge::quant::{max_abs, round_to_i8, scale_for, QMAX};

/// GPTQ's knobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GptqOptions {
    /// Damping, as a fraction of the mean of `diag(H)`, added to the diagonal (GPTQ's paper: 0.01; 0.10 here:
    /// with outlier input channels the mean diagonal is several times an ordinary channel's, and 1 % let the
    /// ordinary columns absorb feedback fitted to the calibration set that did not carry to new sentences;
    /// QUANTIZATION.md section 3).
    pub damp: f64,
    /// How each row's scale is chosen (see [`ClipSearch`]).
    pub clip: ClipSearch,
    /// The order in which columns are rounded (see [`GptqOrder`]).
    pub order: GptqOrder,
}

/// How each row's scale is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClipSearch {
    /// `max|w_row| / 127`, as round-to-nearest.
    Off,
    /// The clipped candidate (`c · max|w_row| / 127`, `c` in 0.80..=1.00) with the smallest `diag(H)`-weighted
    /// round-to-nearest error.
    Diag,
    /// GPTQ runs once per candidate `c` in [`CLIP_FACTORS`]; each row keeps the candidate with the smallest
    /// output error `(w - ŵ)ᵀ H (w - ŵ)` (damped `H`) after GPTQ's own feedback.
    Gptq,
}

/// The clipping factors [`ClipSearch::Gptq`] tries.
pub const CLIP_FACTORS: [f32; 6] = [1.0, 0.97, 0.94, 0.91, 0.88, 0.85];

/// The order in which GPTQ rounds a matrix's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptqOrder {
    /// Input channel order.
    Natural,
    /// Decreasing `H_jj` ("act-order"): the most excited inputs first, while every other column can still
    /// absorb their rounding error; the result is permuted back.
    Act,
}

impl Default for GptqOptions {
    fn default() -> Self {
        GptqOptions {
            damp: 0.10,
            clip: ClipSearch::Off,
            order: GptqOrder::Natural,
        }
    }
}

/// Rows of `w` handled together, so each row of `M` is streamed once per block.
const ROW_BLOCK: usize = 16;

/// `H = MᵀM` with `M` lower triangular (row-major, `n x n`): the Cholesky factor of `H` with its order reversed.
/// `None` if `H` (symmetric, row-major) is not positive definite.
///
/// Cholesky–Crout of `G = J H J` (`J` reverses the order): `G = L Lᵀ`, `L` lower, then `M = J Lᵀ J`. Every entry is
/// `L_ij = (G_ij - dot(L_i[..j], L_j[..j])) / L_jj` in [`dot_f64`]'s order, exactly as a plain row-by-row loop
/// computes it. The loop is blocked by [`CHOLESKY_BLOCK`] columns: once a block's own rows are done, every later
/// row's entries in that block depend only on that row and the block's rows, so they run on all cores, four rows
/// side by side. Same entries, same bits, whatever the thread count.
pub fn reverse_cholesky(h: &[f64], n: usize) -> Option<Vec<f64>> {
    let g = |i: usize, j: usize| h[(n - 1 - i) * n + (n - 1 - j)];
    let mut l = vec![0f64; n * n];
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    for j0 in (0..n).step_by(CHOLESKY_BLOCK) {
        let j1 = (j0 + CHOLESKY_BLOCK).min(n);
        // The block's own rows, in order (their columns before j0 are done).
        for i in j0..j1 {
            for j in j0..=i {
                let s = g(i, j) - dot_f64(&l[i * n..i * n + j], &l[j * n..j * n + j]);
                if i == j {
                    if !(s > 0.0 && s.is_finite()) {
                        return None;
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        // Every later row's columns j0..j1.
        let rows = n - j1;
        if rows == 0 {
            break;
        }
        let (done, rest) = l.split_at_mut(j1 * n);
        let done = &*done;
        let per_thread = rows.div_ceil(threads.min(rows.div_ceil(4 * CHOLESKY_BLOCK)).max(1));
        std::thread::scope(|scope| {
            for (c, chunk) in rest.chunks_mut(per_thread * n).enumerate() {
                let first = j1 + c * per_thread;
                let g = &g;
                scope.spawn(move || cholesky_panel(chunk, n, first, j0..j1, done, g));
            }
        });
    }
    let mut m = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            m[i * n + j] = l[(n - 1 - j) * n + (n - 1 - i)];
        }
    }
    Some(m)
}

/// Columns per block of [`reverse_cholesky`].
const CHOLESKY_BLOCK: usize = 64;

/// `L_ij` for the rows `rows` (`(k, n)`: global rows `first..first + k`) and the columns `cols`, whose own rows
/// are final in `done` (rows `0..cols.end`).
fn cholesky_panel(
    rows: &mut [f64],
    n: usize,
    first: usize,
    cols: std::ops::Range<usize>,
    done: &[f64],
    g: &impl Fn(usize, usize) -> f64,
) {
    // Compiled for AVX2 where the CPU has it: the same operations (no FMA), wider registers.
    albert_edge::kernels::simd::vectorized_256(
        #[inline(always)]
        || cholesky_panel_portable(rows, n, first, cols, done, g),
    )
}

#[inline(always)]
fn cholesky_panel_portable(
    rows: &mut [f64],
    n: usize,
    first: usize,
    cols: std::ops::Range<usize>,
    done: &[f64],
    g: &impl Fn(usize, usize) -> f64,
) {
    let quads = rows.len() / (4 * n);
    let (head, tail) = rows.split_at_mut(quads * 4 * n);
    for (q, quad) in head.chunks_exact_mut(4 * n).enumerate() {
        let i0 = first + 4 * q;
        let (r0, rest) = quad.split_at_mut(n);
        let (r1, rest) = rest.split_at_mut(n);
        let (r2, r3) = rest.split_at_mut(n);
        for j in cols.clone() {
            let dots = dots_f64(
                [&r0[..j], &r1[..j], &r2[..j], &r3[..j]],
                &done[j * n..j * n + j],
            );
            let d = done[j * n + j];
            r0[j] = (g(i0, j) - dots[0]) / d;
            r1[j] = (g(i0 + 1, j) - dots[1]) / d;
            r2[j] = (g(i0 + 2, j) - dots[2]) / d;
            r3[j] = (g(i0 + 3, j) - dots[3]) / d;
        }
    }
    let i0 = first + 4 * quads;
    for (k, row) in tail.chunks_exact_mut(n).enumerate() {
        for j in cols.clone() {
            let s = g(i0 + k, j) - dot_f64(&row[..j], &done[j * n..j * n + j]);
            row[j] = s / done[j * n + j];
        }
    }
}

/// Dot product with four interleaved accumulators (a fixed order, so the converter is deterministic).
fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `[dot_f64(a[0], b), .., dot_f64(a[R - 1], b)]` (each `a[r]` at least as long as `b`), bit for bit: each sum
/// has [`dot_f64`]'s four accumulators and order; the `R` independent sums are interleaved so they overlap in the
/// pipeline.
#[inline(always)]
fn dots_f64<const R: usize>(a: [&[f64]; R], b: &[f64]) -> [f64; R] {
    let n = b.len();
    let a: [&[f64]; R] = core::array::from_fn(|r| &a[r][..n]);
    let n4 = n - n % 4;
    let mut acc = [[0f64; 4]; R];
    for k in (0..n4).step_by(4) {
        let y = &b[k..k + 4];
        for r in 0..R {
            let x = &a[r][k..k + 4];
            for l in 0..4 {
                acc[r][l] += x[l] * y[l];
            }
        }
    }
    core::array::from_fn(|r| {
        let mut tail = 0.0;
        for k in n4..n {
            tail += a[r][k] * b[k];
        }
        (acc[r][0] + acc[r][1]) + (acc[r][2] + acc[r][3]) + tail
    })
}

/// The damped Hessian's factor `M` (see the module docs). Retries with ten times the damping (up to three times)
/// if rounding makes the damped `H` lose definiteness; `None` if it never factors.
pub fn factor(h: &[f64], n: usize, damp: f64) -> Option<Vec<f64>> {
    factor_with_mean(h, n, n, damp)
}

/// [`factor`], with the damping relative to the mean of the first `n_mean` diagonal entries only (the columns
/// that are rounded; f32 columns ordered after them do not set it).
fn factor_with_mean(h: &[f64], n: usize, n_mean: usize, damp: f64) -> Option<Vec<f64>> {
    let mut hd = h.to_vec();
    for j in 0..n {
        if hd[j * n + j].is_nan() || hd[j * n + j] <= 0.0 {
            hd[j * n + j] = 1.0;
        }
    }
    let n_mean = n_mean.clamp(1, n.max(1)).min(n);
    let mean_diag = (0..n_mean).map(|j| hd[j * n + j]).sum::<f64>() / n_mean.max(1) as f64;
    let mut lambda = damp.max(0.0) * mean_diag;
    for _ in 0..4 {
        let mut damped = hd.clone();
        for j in 0..n {
            damped[j * n + j] += lambda;
        }
        if let Some(m) = reverse_cholesky(&damped, n) {
            return Some(m);
        }
        lambda = (lambda * 10.0).max(1e-6 * mean_diag.max(f64::MIN_POSITIVE));
    }
    None
}

/// Per-row scale: `max|w| / 127`, or with [`ClipSearch::Diag`] the clipped candidate with the smallest
/// `Σ_j H_jj (w_j - ŵ_j)²` under round-to-nearest.
fn row_scale(w: &[f32], hdiag: &[f64], clip: ClipSearch) -> f32 {
    let full = scale_for(max_abs(w));
    if clip != ClipSearch::Diag {
        return full;
    }
    let err = |s: f32| -> f64 {
        let inv = 1.0 / s;
        w.iter()
            .zip(hdiag)
            .map(|(&v, &hd)| {
                let e = (v - round_to_i8(v * inv) as f32 * s) as f64;
                hd * e * e
            })
            .sum()
    };
    let mut best = (err(full), full);
    for step in 1..=20 {
        let s = scale_for(max_abs(w) * (1.0 - 0.01 * step as f32));
        let e = err(s);
        if e < best.0 {
            best = (e, s);
        }
    }
    best.1
}

/// Quantises the row-major `(rows, cols)` matrix `w` with GPTQ against `h` (`cols x cols`, `Σ x xᵀ` of the
/// layer's calibration inputs) into `q` / `scales`, the same layout as `quant::quantize_matrix`. Returns the worst
/// `|w - q * scale|` (larger than round-to-nearest's half step: error feedback moves weights by design), or
/// `None` if the damped `h` cannot be factored (the caller then rounds to nearest).
pub fn quantize_matrix_gptq(
    w: &[f32],
    cols: usize,
    h: &[f64],
    opts: &GptqOptions,
    q: &mut [i8],
    scales: &mut [f32],
) -> Option<f32> {
    quantize_matrix_gptq_free(w, cols, h, &[], opts, q, scales, &mut [])
}

/// [`quantize_matrix_gptq`] where the columns `free` stay `f32` (side columns): they are rounded last, without
/// rounding, so they absorb the error feedback of every int8 column (`q` is 0 there; their new values go to
/// `free_out`, row-major `(rows, free.len())`). Row scales exclude them. The damping is relative to the int8
/// columns' mean diagonal.
#[allow(clippy::too_many_arguments)]
pub fn quantize_matrix_gptq_free(
    w: &[f32],
    cols: usize,
    h: &[f64],
    free: &[u32],
    opts: &GptqOptions,
    q: &mut [i8],
    scales: &mut [f32],
    free_out: &mut [f32],
) -> Option<f32> {
    if cols == 0 {
        return Some(0.0);
    }
    let rows = w.len() / cols;
    let nfree = free.len();
    let is_free = |j: usize| free.contains(&(j as u32));
    // The processing order: int8 columns (natural or by decreasing H_jj), then the free ones.
    let mut order: Vec<usize> = (0..cols).filter(|&j| !is_free(j)).collect();
    if opts.order == GptqOrder::Act {
        order.sort_by(|&a, &b| h[b * cols + b].total_cmp(&h[a * cols + a]).then(a.cmp(&b)));
    }
    order.extend(free.iter().map(|&c| c as usize));
    let identity = order.iter().enumerate().all(|(k, &j)| k == j);
    let (wp, hp): (std::borrow::Cow<[f32]>, std::borrow::Cow<[f64]>) = if identity {
        (w.into(), h.into())
    } else {
        let mut wp = vec![0f32; w.len()];
        for (src, dst) in w.chunks_exact(cols).zip(wp.chunks_exact_mut(cols)) {
            for (k, &j) in order.iter().enumerate() {
                dst[k] = src[j];
            }
        }
        let mut hp = vec![0f64; cols * cols];
        for (a, &i) in order.iter().enumerate() {
            for (b, &j) in order.iter().enumerate() {
                hp[a * cols + b] = h[i * cols + j];
            }
        }
        (wp.into(), hp.into())
    };
    let kept = cols - nfree;
    let m = if nfree == 0 {
        factor(&hp, cols, opts.damp)?
    } else {
        factor_with_mean(&hp, cols, kept, opts.damp)?
    };
    let hdiag: Vec<f64> = (0..kept).map(|j| hp[j * cols + j]).collect();
    let inv_diag: Vec<f64> = (0..cols).map(|j| 1.0 / m[j * cols + j]).collect();
    for (row, s) in wp.chunks_exact(cols).zip(scales.iter_mut()) {
        *s = row_scale(&row[..kept], &hdiag, opts.clip);
    }
    let factors: &[f32] = if opts.clip == ClipSearch::Gptq {
        &CLIP_FACTORS
    } else {
        &[1.0]
    };

    let mut qp = if identity {
        Vec::new()
    } else {
        vec![0i8; q.len()]
    };
    let qp_slice: &mut [i8] = if identity { q } else { &mut qp };
    // One slot per row at least, so the zipped chunks below exist when there is no free column.
    let fw = nfree.max(1);
    let mut fout = vec![0f32; rows * fw];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(rows.div_ceil(ROW_BLOCK))
        .max(1);
    let block_rows = rows.div_ceil(ROW_BLOCK).div_ceil(threads) * ROW_BLOCK;
    let worst = std::thread::scope(|scope| {
        let handles: Vec<_> = wp
            .chunks(block_rows * cols)
            .zip(qp_slice.chunks_mut(block_rows * cols))
            .zip(scales.chunks_mut(block_rows))
            .zip(fout.chunks_mut(block_rows * fw))
            .map(|(((w, q), s), f)| {
                let (m, inv_diag) = (&m, &inv_diag);
                scope.spawn(move || {
                    let mut worst = 0f32;
                    for (((w, q), s), f) in w
                        .chunks(ROW_BLOCK * cols)
                        .zip(q.chunks_mut(ROW_BLOCK * cols))
                        .zip(s.chunks_mut(ROW_BLOCK))
                        .zip(f.chunks_mut(ROW_BLOCK * fw))
                    {
                        worst =
                            worst.max(gptq_block(w, cols, nfree, s, m, inv_diag, q, f, factors));
                    }
                    worst
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("GPTQ worker panicked"))
            .fold(0f32, f32::max)
    });
    if !identity {
        for (src, dst) in qp.chunks_exact(cols).zip(q.chunks_exact_mut(cols)) {
            for (k, &j) in order.iter().enumerate() {
                dst[j] = src[k];
            }
        }
    }
    if nfree > 0 {
        free_out[..rows * nfree].copy_from_slice(&fout);
    }
    Some(worst)
}

/// GPTQ on a block of rows, once per clipping factor (scales `factor · scales`), keeping per row the candidate
/// with the smallest loss; `scales` is updated to the chosen ones. Returns the worst error of the kept rows.
#[allow(clippy::too_many_arguments)]
fn gptq_block(
    w: &[f32],
    cols: usize,
    nfree: usize,
    scales: &mut [f32],
    m: &[f64],
    inv_diag: &[f64],
    q: &mut [i8],
    free_out: &mut [f32],
    factors: &[f32],
) -> f32 {
    let rows = scales.len();
    let mut loss = vec![0f64; rows];
    if factors.len() <= 1 {
        let mut worst = vec![0f32; rows];
        gptq_rows(
            w, cols, nfree, scales, m, inv_diag, q, free_out, &mut loss, &mut worst,
        );
        return worst.into_iter().fold(0f32, f32::max);
    }
    let full: Vec<f32> = scales.to_vec();
    let mut best_loss = vec![f64::INFINITY; rows];
    let mut best_worst = vec![0f32; rows];
    let (mut tq, mut tf) = (vec![0i8; q.len()], vec![0f32; free_out.len()]);
    let mut ts = vec![0f32; rows];
    let mut worst = vec![0f32; rows];
    for &c in factors {
        for (t, &s) in ts.iter_mut().zip(&full) {
            *t = if c == 1.0 { s } else { s * c };
        }
        loss.iter_mut().for_each(|l| *l = 0.0);
        gptq_rows(
            w, cols, nfree, &ts, m, inv_diag, &mut tq, &mut tf, &mut loss, &mut worst,
        );
        for r in 0..rows {
            if loss[r] < best_loss[r] {
                best_loss[r] = loss[r];
                best_worst[r] = worst[r];
                scales[r] = ts[r];
                q[r * cols..(r + 1) * cols].copy_from_slice(&tq[r * cols..(r + 1) * cols]);
                free_out[r * nfree..(r + 1) * nfree]
                    .copy_from_slice(&tf[r * nfree..(r + 1) * nfree]);
            }
        }
    }
    best_worst.into_iter().fold(0f32, f32::max)
}

/// GPTQ on a block of rows (`scales.len()` rows of `cols`, the last `nfree` columns kept `f32`), sharing each
/// row of `m`. Adds each row's loss `Σ_j M_jj² (w̃_j - q_j s)²` (= `(w - ŵ)ᵀ H (w - ŵ)`, damped `H`) to `loss`
/// and writes each row's worst error to `worst`.
#[allow(clippy::too_many_arguments)]
fn gptq_rows(
    w: &[f32],
    cols: usize,
    nfree: usize,
    scales: &[f32],
    m: &[f64],
    inv_diag: &[f64],
    q: &mut [i8],
    free_out: &mut [f32],
    loss: &mut [f64],
    worst: &mut [f32],
) {
    // Compiled for AVX2 where the CPU has it: the same operations (no FMA), wider registers.
    albert_edge::kernels::simd::vectorized_256(
        #[inline(always)]
        || {
            gptq_rows_portable(
                w, cols, nfree, scales, m, inv_diag, q, free_out, loss, worst,
            )
        },
    )
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gptq_rows_portable(
    w: &[f32],
    cols: usize,
    nfree: usize,
    scales: &[f32],
    m: &[f64],
    inv_diag: &[f64],
    q: &mut [i8],
    free_out: &mut [f32],
    loss: &mut [f64],
    worst: &mut [f32],
) {
    let rows = scales.len();
    let kept = cols - nfree;
    let mut d = vec![0f64; rows * cols]; // (rows, cols): w - ŵ of the columns done so far
    let quads = rows / 4;
    for j in 0..cols {
        let mrow = &m[j * cols..j * cols + j];
        // Row r's column j from its feedback sum `dot`; records the error in `dr` (row r of d).
        let mut round = |r: usize, dot: f64, dr: &mut [f64]| {
            let s = scales[r];
            let wj = w[r * cols + j];
            let target = wj as f64 + inv_diag[j] * dot;
            if j >= kept {
                // An f32 column: takes the target as it is.
                q[r * cols + j] = 0;
                let v = target as f32;
                free_out[r * nfree + (j - kept)] = v;
                dr[j] = (wj - v) as f64;
                return;
            }
            let qj = round_to_i8((target / s as f64) as f32);
            debug_assert!((qj as i32).abs() <= QMAX);
            q[r * cols + j] = qj;
            let err = wj - qj as f32 * s;
            dr[j] = err as f64;
            worst[r] = worst[r].max(err.abs());
            let e = (target - qj as f64 * s as f64) / inv_diag[j];
            loss[r] += e * e;
        };
        // Four rows side by side: independent sums, the same bits as one row at a time.
        let (head, tail) = d.split_at_mut(quads * 4 * cols);
        for (k, quad) in head.chunks_exact_mut(4 * cols).enumerate() {
            let (d0, rest) = quad.split_at_mut(cols);
            let (d1, rest) = rest.split_at_mut(cols);
            let (d2, d3) = rest.split_at_mut(cols);
            let dots = dots_f64([&d0[..j], &d1[..j], &d2[..j], &d3[..j]], mrow);
            for (x, (dr, dot)) in [d0, d1, d2, d3].into_iter().zip(dots).enumerate() {
                round(4 * k + x, dot, dr);
            }
        }
        for (k, dr) in tail.chunks_exact_mut(cols).enumerate() {
            let dot = dot_f64(mrow, &dr[..j]);
            round(4 * quads + k, dot, dr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use albert_edge::quant::quantize_matrix;

    fn rng(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// `Σ x xᵀ` of `n` correlated random rows of width `cols`.
    fn hessian(cols: usize, n: usize, seed: &mut u64) -> (Vec<f64>, Vec<Vec<f64>>) {
        let mix: Vec<f64> = (0..cols * cols).map(|_| rng(seed)).collect();
        let mut xs = Vec::new();
        let mut h = vec![0f64; cols * cols];
        for _ in 0..n {
            let z: Vec<f64> = (0..cols).map(|_| rng(seed)).collect();
            let x: Vec<f64> = (0..cols)
                .map(|i| (0..cols).map(|k| mix[i * cols + k] * z[k]).sum::<f64>() + 0.3 * z[i])
                .collect();
            for i in 0..cols {
                for j in 0..cols {
                    h[i * cols + j] += x[i] * x[j];
                }
            }
            xs.push(x);
        }
        (h, xs)
    }

    fn output_error(w: &[f32], q: &[i8], s: &[f32], cols: usize, xs: &[Vec<f64>]) -> f64 {
        let mut e = 0.0;
        for x in xs {
            for (r, (wr, qr)) in w.chunks(cols).zip(q.chunks(cols)).enumerate() {
                let y: f64 = wr
                    .iter()
                    .zip(qr)
                    .zip(x)
                    .map(|((&w, &q), &x)| (w as f64 - q as f64 * s[r] as f64) * x)
                    .sum();
                e += y * y;
            }
        }
        e
    }

    /// The plain row-by-row factorisation (what the blocked, threaded one must equal bit for bit).
    fn reverse_cholesky_plain(h: &[f64], n: usize) -> Option<Vec<f64>> {
        let g = |i: usize, j: usize| h[(n - 1 - i) * n + (n - 1 - j)];
        let mut l = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let s = g(i, j) - dot_f64(&l[i * n..i * n + j], &l[j * n..j * n + j]);
                if i == j {
                    if !(s > 0.0 && s.is_finite()) {
                        return None;
                    }
                    l[i * n + i] = s.sqrt();
                } else {
                    l[i * n + j] = s / l[j * n + j];
                }
            }
        }
        let mut m = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                m[i * n + j] = l[(n - 1 - j) * n + (n - 1 - i)];
            }
        }
        Some(m)
    }

    /// One row at a time (what the four-rows-side-by-side loop must equal bit for bit).
    fn gptq_rows_plain(w: &[f32], cols: usize, scales: &[f32], m: &[f64], q: &mut [i8]) {
        let inv_diag: Vec<f64> = (0..cols).map(|j| 1.0 / m[j * cols + j]).collect();
        let rows = scales.len();
        let mut d = vec![0f64; rows * cols];
        for j in 0..cols {
            let mrow = &m[j * cols..j * cols + j];
            for r in 0..rows {
                let s = scales[r];
                let wj = w[r * cols + j];
                let target = wj as f64 + inv_diag[j] * dot_f64(mrow, &d[r * cols..r * cols + j]);
                let qj = round_to_i8((target / s as f64) as f32);
                q[r * cols + j] = qj;
                d[r * cols + j] = (wj - qj as f32 * s) as f64;
            }
        }
    }

    #[test]
    fn blocked_cholesky_and_gptq_match_the_plain_loops_bit_for_bit() {
        let mut seed = 5;
        for n in [1, 3, 64, 65, 131, 200] {
            let (h, _) = hessian(n, n + 7, &mut seed);
            let damp = GptqOptions::default().damp;
            let damped = factor(&h, n, damp).unwrap();
            let mut hd = h.clone();
            let mean = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
            (0..n).for_each(|j| hd[j * n + j] += damp * mean);
            let plain = reverse_cholesky_plain(&hd, n).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&damped), bits(&plain), "n {n}");

            let rows = 37;
            let w: Vec<f32> = (0..rows * n).map(|_| rng(&mut seed) as f32).collect();
            let (mut q, mut s) = (vec![0i8; rows * n], vec![0f32; rows]);
            let natural = GptqOptions {
                order: GptqOrder::Natural,
                ..GptqOptions::default()
            };
            quantize_matrix_gptq(&w, n, &h, &natural, &mut q, &mut s).unwrap();
            let mut q_plain = vec![0i8; rows * n];
            gptq_rows_plain(&w, n, &s, &plain, &mut q_plain);
            assert_eq!(q, q_plain, "n {n}");
        }
        // Not positive definite: refused, as by the plain loop.
        let h = [1.0, 2.0, 2.0, 1.0];
        assert!(reverse_cholesky(&h, 2).is_none() && reverse_cholesky_plain(&h, 2).is_none());
    }

    #[test]
    fn reverse_cholesky_factors_h() {
        let mut seed = 7;
        let (h, _) = hessian(9, 40, &mut seed);
        let m = reverse_cholesky(&h, 9).unwrap();
        for i in 0..9 {
            for j in 0..9 {
                if j > i {
                    assert_eq!(m[i * 9 + j], 0.0);
                }
                let mtm: f64 = (0..9).map(|k| m[k * 9 + i] * m[k * 9 + j]).sum();
                assert!((mtm - h[i * 9 + j]).abs() < 1e-9 * h[i * 9 + i].abs().max(1.0));
            }
        }
    }

    #[test]
    fn gptq_with_identity_hessian_is_round_to_nearest() {
        let mut seed = 3;
        let (rows, cols) = (37, 21);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng(&mut seed) as f32).collect();
        let mut h = vec![0f64; cols * cols];
        (0..cols).for_each(|j| h[j * cols + j] = 1.0);
        let (mut q, mut s) = (vec![0i8; rows * cols], vec![0f32; rows]);
        let (mut q2, mut s2) = (q.clone(), s.clone());
        quantize_matrix(&w, cols, &mut q, &mut s);
        quantize_matrix_gptq(&w, cols, &h, &GptqOptions::default(), &mut q2, &mut s2).unwrap();
        assert_eq!(q, q2);
        assert_eq!(s, s2);
    }

    #[test]
    fn gptq_two_columns_is_obs_compensation() {
        // H = [[a, b], [b, c]]: after rounding column 0, column 1 targets w1 + d0 * b / c.
        let (a, b, c) = (2.0, 0.9, 1.5);
        let h = [a, b, b, c];
        let w = [0.3f32, 1.0];
        let s = scale_for(1.0);
        let d0 = 0.3 - round_to_i8(0.3 / s) as f32 * s;
        let m = reverse_cholesky(&h, 2).unwrap();
        let target = 1.0 + d0 as f64 * m[2] / m[3];
        assert!((target - (1.0 + d0 as f64 * b / c)).abs() < 1e-12);
        let (mut q, mut sc) = ([0i8; 2], [0f32; 1]);
        let opts = GptqOptions {
            damp: 0.0,
            ..GptqOptions::default()
        };
        quantize_matrix_gptq(&w, 2, &h, &opts, &mut q, &mut sc).unwrap();
        assert_eq!(q[1], round_to_i8((target / s as f64) as f32));
    }

    #[test]
    fn gptq_lowers_the_calibration_output_error() {
        let mut seed = 11;
        let (rows, cols) = (40, 32);
        let (h, xs) = hessian(cols, 200, &mut seed);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng(&mut seed) as f32 * 0.1)
            .collect();
        let (mut q, mut s) = (vec![0i8; rows * cols], vec![0f32; rows]);
        quantize_matrix(&w, cols, &mut q, &mut s);
        let rtn = output_error(&w, &q, &s, cols, &xs);
        quantize_matrix_gptq(&w, cols, &h, &GptqOptions::default(), &mut q, &mut s).unwrap();
        let gptq = output_error(&w, &q, &s, cols, &xs);
        assert!(gptq < 0.7 * rtn, "gptq {gptq} vs rtn {rtn}");
    }

    /// `(w - ŵ)ᵀ H (w - ŵ)` summed over rows, with `ŵ` the int8 values plus the f32 columns `free` (`fv`).
    fn quad_error(
        w: &[f32],
        q: &[i8],
        s: &[f32],
        free: &[u32],
        fv: &[f32],
        cols: usize,
        h: &[f64],
    ) -> f64 {
        let mut total = 0.0;
        for (r, (wr, qr)) in w.chunks(cols).zip(q.chunks(cols)).enumerate() {
            let d: Vec<f64> = (0..cols)
                .map(|j| match free.iter().position(|&c| c as usize == j) {
                    Some(k) => wr[j] as f64 - fv[r * free.len() + k] as f64,
                    None => wr[j] as f64 - qr[j] as f64 * s[r] as f64,
                })
                .collect();
            for i in 0..cols {
                for j in 0..cols {
                    total += d[i] * h[i * cols + j] * d[j];
                }
            }
        }
        total
    }

    #[test]
    fn act_order_with_identity_hessian_is_round_to_nearest() {
        let mut seed = 13;
        let (rows, cols) = (9, 17);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng(&mut seed) as f32).collect();
        let mut h = vec![0f64; cols * cols];
        (0..cols).for_each(|j| h[j * cols + j] = 1.0 + j as f64);
        let (mut q, mut s) = (vec![0i8; rows * cols], vec![0f32; rows]);
        let (mut q2, mut s2) = (q.clone(), s.clone());
        quantize_matrix(&w, cols, &mut q, &mut s);
        let opts = GptqOptions {
            order: GptqOrder::Act,
            ..GptqOptions::default()
        };
        quantize_matrix_gptq(&w, cols, &h, &opts, &mut q2, &mut s2).unwrap();
        assert_eq!((q, s), (q2, s2));
    }

    #[test]
    fn free_columns_absorb_the_feedback() {
        let mut seed = 17;
        let (rows, cols) = (24, 20);
        let (h, _) = hessian(cols, 300, &mut seed);
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng(&mut seed) as f32 * 0.1)
            .collect();
        let free = [3u32, 11];
        // Side columns out of the rounding (zeroed weights, decoupled H), their values kept.
        let mut zeroed = w.clone();
        let mut hz = h.clone();
        let mut kept_vals = Vec::new();
        for r in 0..rows {
            for &c in &free {
                kept_vals.push(w[r * cols + c as usize]);
                zeroed[r * cols + c as usize] = 0.0;
            }
        }
        for &c in &free {
            for j in 0..cols {
                hz[c as usize * cols + j] = 0.0;
                hz[j * cols + c as usize] = 0.0;
            }
        }
        let opts = GptqOptions::default();
        let (mut q, mut s) = (vec![0i8; rows * cols], vec![0f32; rows]);
        quantize_matrix_gptq(&zeroed, cols, &hz, &opts, &mut q, &mut s).unwrap();
        let split = quad_error(&w, &q, &s, &free, &kept_vals, cols, &h);
        let mut fv = vec![0f32; rows * free.len()];
        quantize_matrix_gptq_free(&w, cols, &h, &free, &opts, &mut q, &mut s, &mut fv).unwrap();
        assert!(free
            .iter()
            .all(|&c| (0..rows).all(|r| q[r * cols + c as usize] == 0)));
        let absorbed = quad_error(&w, &q, &s, &free, &fv, cols, &h);
        assert!(absorbed < 0.95 * split, "{absorbed} vs {split}");
    }

    #[test]
    fn clip_search_never_raises_the_damped_loss() {
        let mut seed = 19;
        let (rows, cols) = (16, 24);
        let (h, _) = hessian(cols, 200, &mut seed);
        let w: Vec<f32> = (0..rows * cols).map(|_| rng(&mut seed) as f32).collect();
        let damp = GptqOptions::default().damp;
        let mut hd = h.clone();
        let mean = (0..cols).map(|j| h[j * cols + j]).sum::<f64>() / cols as f64;
        (0..cols).for_each(|j| hd[j * cols + j] += damp * mean);
        let mut losses = Vec::new();
        for clip in [ClipSearch::Off, ClipSearch::Gptq] {
            let opts = GptqOptions {
                clip,
                ..GptqOptions::default()
            };
            let (mut q, mut s) = (vec![0i8; rows * cols], vec![0f32; rows]);
            quantize_matrix_gptq(&w, cols, &h, &opts, &mut q, &mut s).unwrap();
            losses.push(quad_error(&w, &q, &s, &[], &[], cols, &hd));
        }
        assert!(losses[1] <= losses[0] * (1.0 + 1e-9), "{losses:?}");
    }
}
