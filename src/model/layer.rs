//! The ONE shared ALBERT transformer layer: self-attention (with the padding mask), dense, add & LayerNorm, FFN,
//! add & LayerNorm. Stored once in the blob; [`super::classify`] applies it `num_hidden_layers` times.

use super::linear::{add_side, as_f32, linear_f32, linear_i8_tokens};
use super::observer::{Observer, Site};
use super::Inputs;
use crate::config::Activation;
use crate::format::{Matrix, MatrixData, Model};
use crate::kernels::attention::{Keys, Values};
use crate::kernels::{self, dot_f32, layer_norm_f32, masked_softmax_f32, GemmInput};
use crate::parallel::{self, Parallel, Rows, TokenWork};
use crate::{math, quant};

/// The shared layer's weights, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    query: Matrix<'a>,              // (H, H)
    query_bias: &'a [f32],          // (H)
    key: Matrix<'a>,                // (H, H)
    key_bias: &'a [f32],            // (H)
    value: Matrix<'a>,              // (H, H)
    value_bias: &'a [f32],          // (H)
    dense: Matrix<'a>,              // (H, H)
    dense_bias: &'a [f32],          // (H)
    attention_ln_weight: &'a [f32], // (H)
    attention_ln_bias: &'a [f32],   // (H)
    ffn: Matrix<'a>,                // (I, H)
    ffn_bias: &'a [f32],            // (I)
    ffn_output: Matrix<'a>,         // (H, I)
    ffn_output_bias: &'a [f32],     // (H)
    full_ln_weight: &'a [f32],      // (H)
    full_ln_bias: &'a [f32],        // (H)
    heads: usize,
    act: Activation,
    eps: f32,
}

/// Buffers of the f32 reference (see `F32Plan`).
pub(crate) struct F32Scratch<'s> {
    pub hidden: &'s mut [f32], // (seq, H)
    pub q: &'s mut [f32],      // (seq, H)
    pub k: &'s mut [f32],      // (seq, H)
    pub v: &'s mut [f32],      // (seq, H)
    pub ctx: &'s mut [f32],    // (seq, H)
    pub scores: &'s mut [f32], // (seq)
    pub inter: &'s mut [f32],  // (I)
    pub row: &'s mut [f32],    // (max(E, H))
    pub row2: &'s mut [f32],   // (max(E, H))
}

/// Buffers of the int8 engine (see `Int8Plan`). The residual stream, the attention context and the FFN's
/// activation are `f32`; every linear layer's input is quantised to int8 with one scale per token.
pub(crate) struct Int8Scratch<'s> {
    pub hidden: &'s mut [f32],     // (seq, H): the residual stream
    pub xq: &'s mut [i8],          // (seq, H): the hidden state quantised for Q, K and V
    pub xs: &'s mut [f32],         // (seq): its scales
    pub ctx: &'s mut [f32],        // (seq, H): the attention context
    pub acc: &'s mut [i32],        // (max(H, E, seq, labels)), also viewed as f32
    pub row: &'s mut [f32],        // (max(E, H))
    pub qrow: &'s mut [i8],        // (tile, max(I, H)): a linear layer's quantised input
    pub qrow_scale: &'s mut [f32], // (tile): its scales
    pub inter: &'s mut [f32],      // (tile, I): the FFN's activation
    pub out: &'s mut [i32],        // (tile, H): linear outputs, viewed as f32
    pub tile: usize,               // tokens per GEMM
    pub work: &'s mut [u32],       // the GEMM kernels' workspace
    pub sums: &'s mut [i32],       // the GEMM's weight sums (`layer_sums_len`), or empty
    pub mapping_t: &'s mut [i8],   // (E, H): `mapping_in` transposed (the speed arena), or empty
    pub q: &'s mut [i16],          // (d): one query row
    pub k: &'s mut [i16],          // (`attention::keys_len(seq, d)`): one head's K
    pub vt: &'s mut [i8],          // (`attention::values_len(seq, d)`): one head's V
    pub k_scale: &'s mut [f32],    // (seq)
    pub v_scale: &'s mut [f32],    // (seq)
    pub v_sum: &'s mut [i32],      // (d): row sums of `vt`
    pub probs: &'s mut [u8],       // (seq)
    pub stage: &'s mut [f32],      // (tile, H): where threads put their rows of a GEMM, or empty
    pub par: &'s dyn Parallel,     // who runs the linear layers' jobs
}

impl<'a> Layer<'a> {
    /// Borrows the shared layer's weights from a validated model.
    pub fn load(model: &Model<'a>) -> Self {
        let l = &model.weights().layer;
        let c = model.config();
        Layer {
            query: l.query_weight,
            query_bias: l.query_bias,
            key: l.key_weight,
            key_bias: l.key_bias,
            value: l.value_weight,
            value_bias: l.value_bias,
            dense: l.attention_dense_weight,
            dense_bias: l.attention_dense_bias,
            attention_ln_weight: l.attention_ln_weight,
            attention_ln_bias: l.attention_ln_bias,
            ffn: l.ffn_weight,
            ffn_bias: l.ffn_bias,
            ffn_output: l.ffn_output_weight,
            ffn_output_bias: l.ffn_output_bias,
            full_ln_weight: l.full_ln_weight,
            full_ln_bias: l.full_ln_bias,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            eps: c.layer_norm_eps,
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // f32 reference
    // -----------------------------------------------------------------------------------------------------------

    /// One application of the layer to `s.hidden` (seq, H), in place; `obs` sees each linear's input (pass `pass`).
    pub(crate) fn forward_f32(
        &self,
        inputs: &Inputs,
        s: &mut F32Scratch,
        pass: usize,
        obs: &mut impl Observer,
    ) {
        let seq = inputs.input_ids.len();
        let h = self.query.rows;
        let d = h / self.heads;
        let i_size = self.ffn.rows;

        for t in 0..seq {
            let x = &s.hidden[t * h..(t + 1) * h];
            obs.linear_input(Site::Query, pass, x);
            obs.linear_input(Site::Key, pass, x);
            obs.linear_input(Site::Value, pass, x);
            linear_f32(
                &self.query,
                0,
                x,
                self.query_bias,
                &mut s.q[t * h..(t + 1) * h],
            );
            linear_f32(&self.key, 0, x, self.key_bias, &mut s.k[t * h..(t + 1) * h]);
            linear_f32(
                &self.value,
                0,
                x,
                self.value_bias,
                &mut s.v[t * h..(t + 1) * h],
            );
        }

        // Attention, head by head: softmax(q k^T / sqrt(d) + mask) v.
        let sqrt_d = math::sqrt(d as f32);
        for head in 0..self.heads {
            let cols = head * d..(head + 1) * d;
            for t in 0..seq {
                let q = &s.q[t * h..][cols.clone()];
                let scores = &mut s.scores[..seq];
                for (j, score) in scores.iter_mut().enumerate() {
                    *score = dot_f32(q, &s.k[j * h..][cols.clone()]) / sqrt_d;
                }
                if inputs.all_attend() {
                    masked_softmax_f32(scores, |_| true);
                } else {
                    masked_softmax_f32(scores, |j| inputs.attends(j));
                }
                let out = &mut s.ctx[t * h..][cols.clone()];
                out.iter_mut().for_each(|o| *o = 0.0);
                for (j, &p) in scores.iter().enumerate() {
                    let v = &s.v[j * h..][cols.clone()];
                    out.iter_mut().zip(v).for_each(|(o, &v)| *o += p * v);
                }
            }
        }

        // Dense, add & LayerNorm, token by token, in place.
        for t in 0..seq {
            let row = &mut s.row[..h];
            obs.linear_input(Site::Dense, pass, &s.ctx[t * h..(t + 1) * h]);
            linear_f32(
                &self.dense,
                0,
                &s.ctx[t * h..(t + 1) * h],
                self.dense_bias,
                row,
            );
            let x = &mut s.hidden[t * h..(t + 1) * h];
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(
                row,
                self.attention_ln_weight,
                self.attention_ln_bias,
                self.eps,
            );
            x.copy_from_slice(row);
        }

        // FFN, add & LayerNorm, token by token, in place.
        for t in 0..seq {
            let x = &mut s.hidden[t * h..(t + 1) * h];
            let inter = &mut s.inter[..i_size];
            obs.linear_input(Site::Ffn, pass, x);
            linear_f32(&self.ffn, 0, x, self.ffn_bias, inter);
            math::activate(self.act, inter);
            obs.linear_input(Site::FfnOutput, pass, inter);
            let row = &mut s.row[..h];
            linear_f32(&self.ffn_output, 0, inter, self.ffn_output_bias, row);
            row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
            layer_norm_f32(row, self.full_ln_weight, self.full_ln_bias, self.eps);
            x.copy_from_slice(row);
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // int8 engine
    // -----------------------------------------------------------------------------------------------------------

    /// One application of the layer to `s.hidden` (seq, H, `f32`: the residual stream), in place, for the first
    /// `outputs` tokens (`1..=seq`; anything else means `seq`): K and V come from every token, but queries, the
    /// dense layer and the FFN run for those tokens only, and the hidden state of the others is left as it was.
    /// The last application needs only `[CLS]`, the one token the pooler reads; each token's output depends only
    /// on its own query and on every token's K and V, so `[CLS]` comes out the same bits either way.
    ///
    /// On x86-64 with `std`, the whole step is also compiled for AVX2 and chosen at run time when the CPU has it:
    /// the compiler then vectorises the element-wise loops (softmax, quantisation, LayerNorm, GELU, the 16-bit
    /// scores) 8 lanes wide instead of 4. Same IEEE operations in the same order per element (Rust never fuses or
    /// reassociates floating-point arithmetic), so the same bits.
    pub(crate) fn forward_i8(&self, inputs: &Inputs, s: &mut Int8Scratch, outputs: usize) {
        #[cfg(all(target_arch = "x86_64", feature = "std"))]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { self.forward_i8_avx2(inputs, s, outputs) };
        }
        self.forward_i8_body(inputs, s, outputs)
    }

    /// [`Self::forward_i8_body`] compiled with AVX2 enabled.
    ///
    /// Safety: the CPU must have AVX2.
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_i8_avx2(&self, inputs: &Inputs, s: &mut Int8Scratch, outputs: usize) {
        self.forward_i8_body(inputs, s, outputs)
    }

    #[inline(always)]
    fn forward_i8_body(&self, inputs: &Inputs, s: &mut Int8Scratch, outputs: usize) {
        let seq = inputs.input_ids.len();
        let outputs = if (1..=seq).contains(&outputs) {
            outputs
        } else {
            seq
        };
        let h = self.query.rows;
        let heads = self.heads;
        let d = h / heads;
        let i_size = self.ffn.rows;
        let inv_sqrt_d = 1.0 / math::sqrt(d as f32);
        let qmax = quant::qmax_i16_for_dot(d);

        let tile = s.tile.clamp(1, seq.max(1));
        // The GEMM's weight sums for rows `r0..r0 + n` of a matrix (empty where the arena has none).
        let all_sums: &[i32] = s.sums;
        let offsets = self.sums_offsets();
        let sums = |m: usize, r0: usize, n: usize| {
            let start = offsets[m];
            all_sums.get(start + r0..start + r0 + n).unwrap_or(&[])
        };

        // Q, K and V read the hidden state quantised once, one scale per token, the query's side columns out.
        let quantize = Quantize {
            cols: h,
            side: self.query.side.cols,
        };
        let bufs = (
            &mut s.hidden[..seq * h],
            &mut s.xq[..seq * h],
            &mut s.xs[..seq],
            &mut [][..],
        );
        parallel::run_rows(s.par, seq, 4, bufs, (h, h, 1, 0), &quantize);

        // With the whole sequence in one tile, the input is prepared for the GEMM once; otherwise once per head
        // and tile (`tile_work`).
        let whole = tile >= seq;
        let (shared_work, tile_work) = if whole {
            (&mut *s.work, &mut [][..])
        } else {
            (&mut [][..], &mut *s.work)
        };
        let shared =
            whole.then(|| GemmInput::new(&s.xq[..seq * h], h, h, &s.xs[..seq], seq, shared_work));
        for head in 0..heads {
            let r0 = head * d;
            // The plan sizes both buffers with `keys_len` / `values_len`, so these always exist.
            let (Some(mut keys), Some(mut values)) =
                (Keys::new(s.k, seq, d), Values::new(s.vt, seq, d))
            else {
                return;
            };
            // K (16 bits) and V (8 bits) of this head for every token, one scale per token, `tile` tokens per
            // GEMM.
            for t0 in (0..seq).step_by(tile) {
                let tn = tile.min(seq - t0);
                let mut local = None;
                let (x, xs) = (&s.xq[t0 * h..(t0 + tn) * h], &s.xs[t0..t0 + tn]);
                let input = shared_or_tile(&shared, &mut local, x, h, xs, tn, tile_work);
                let x = &s.hidden[t0 * h..(t0 + tn) * h];
                let y = self.project(
                    &self.key,
                    self.key_bias,
                    (r0, d),
                    sums(K, r0, d),
                    input,
                    x,
                    s.out,
                    (s.par, s.stage),
                );
                for (tt, y) in y.chunks_exact(d).enumerate() {
                    let t = t0 + tt;
                    s.k_scale[t] = quant::quantize_row_i16(y, qmax, &mut s.q[..d]);
                    keys.set(t, &s.q[..d]);
                }
                let y = self.project(
                    &self.value,
                    self.value_bias,
                    (r0, d),
                    sums(V, r0, d),
                    input,
                    x,
                    s.out,
                    (s.par, s.stage),
                );
                for (tt, y) in y.chunks_exact(d).enumerate() {
                    let t = t0 + tt;
                    s.v_scale[t] = quant::quantize_row(y, &mut s.qrow[..d]);
                    values.set(t, &s.qrow[..d]);
                }
            }
            values.prepare_sums(&mut s.v_sum[..d]);
            // Q rows a tile at a time; then one query at a time: scores, softmax, then P.V with V's per-token
            // scales folded into P. (With fewer `outputs` than tokens, the GEMM on the shared input runs for
            // just those tokens: it computes as many tokens as `out` holds.)
            for t0 in (0..outputs).step_by(tile) {
                let tn = tile.min(outputs - t0);
                let mut local = None;
                let (x, xs) = (&s.xq[t0 * h..(t0 + tn) * h], &s.xs[t0..t0 + tn]);
                let input = shared_or_tile(&shared, &mut local, x, h, xs, tn, tile_work);
                let x = &s.hidden[t0 * h..(t0 + tn) * h];
                let y = self.project(
                    &self.query,
                    self.query_bias,
                    (r0, d),
                    sums(Q, r0, d),
                    input,
                    x,
                    s.out,
                    (s.par, s.stage),
                );
                let rows = AttentionRows {
                    keys: &keys,
                    values: &values,
                    k_scale: &s.k_scale[..seq],
                    v_scale: &s.v_scale[..seq],
                    v_sum: &s.v_sum[..d],
                    inputs,
                    d,
                    h,
                    r0,
                    qmax,
                    inv_sqrt_d,
                };
                let ctx = &mut s.ctx[t0 * h..(t0 + tn) * h];
                let per_job = attention_scratch_len(seq, d);
                if s.par.threads() > 1 && s.stage.len() >= 2 * per_job {
                    let bufs = (&mut *y, &mut [][..], ctx, &mut *s.stage);
                    let per = (d, 0, h, per_job);
                    parallel::run_rows(s.par, tn, 2, bufs, per, &rows);
                } else {
                    // The speed arena's staging buffer holds the scores of several queries at once.
                    let acc: &mut [i32] = if s.stage.len() >= 2 * seq.max(d) {
                        bytemuck::cast_slice_mut(&mut *s.stage)
                    } else {
                        &mut s.acc[..seq.max(d)]
                    };
                    let scratch = (&mut *s.q, acc, &mut *s.probs);
                    rows.body_with(y, ctx, scratch);
                }
            }
        }

        // Dense on the context (quantised per token, the dense layer's side columns out), then add & LayerNorm,
        // `tile` tokens per GEMM.
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let ctx = &mut s.ctx[t0 * h..(t0 + tn) * h];
            let (qx, qs) = (&mut s.qrow[..tn * h], &mut s.qrow_scale[..tn]);
            quantize_rows(s.par, ctx, h, self.dense.side.cols, qx, qs);
            let input = GemmInput::new(qx, h, h, qs, tn, s.work);
            self.project(
                &self.dense,
                self.dense_bias,
                (0, h),
                sums(DENSE, 0, h),
                &input,
                ctx,
                s.out,
                (s.par, s.stage),
            );
            let ln = (self.attention_ln_weight, self.attention_ln_bias);
            self.add_norm(s.out, &mut s.hidden[t0 * h..(t0 + tn) * h], s.par, ln);
        }

        // FFN, add & LayerNorm, `tile` tokens at a time: the intermediate exists for the tile's tokens only; the
        // first GEMM runs in chunks of at most H rows (what `out` holds per token), the activation written into
        // the tile's `f32` intermediate rows, which are then quantised whole, one scale per token.
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let x = &mut s.hidden[t0 * h..(t0 + tn) * h];
            let (qx, qs) = (&mut s.qrow[..tn * h], &mut s.qrow_scale[..tn]);
            quantize_rows(s.par, x, h, self.ffn.side.cols, qx, qs);
            let input = GemmInput::new(qx, h, h, qs, tn, s.work);
            for c0 in (0..i_size).step_by(h) {
                let cn = h.min(i_size - c0);
                let inter = self.project(
                    &self.ffn,
                    self.ffn_bias,
                    (c0, cn),
                    sums(FFN, c0, cn),
                    &input,
                    x,
                    s.out,
                    (s.par, s.stage),
                );
                let work = Activate {
                    act: self.act,
                    c0,
                    cn,
                    i_size,
                };
                let bufs = (inter, &mut [][..], &mut s.inter[..tn * i_size], &mut [][..]);
                parallel::run_rows(s.par, tn, 2, bufs, (cn, 0, i_size, 0), &work);
            }
            let inter = &mut s.inter[..tn * i_size];
            let (qx, qs) = (&mut s.qrow[..tn * i_size], &mut s.qrow_scale[..tn]);
            quantize_rows(s.par, inter, i_size, self.ffn_output.side.cols, qx, qs);
            let input = GemmInput::new(qx, i_size, i_size, qs, tn, s.work);
            let bias = self.ffn_output_bias;
            self.project(
                &self.ffn_output,
                bias,
                (0, h),
                sums(FFN_OUT, 0, h),
                &input,
                inter,
                s.out,
                (s.par, s.stage),
            );
            let ln = (self.full_ln_weight, self.full_ln_bias);
            self.add_norm(s.out, &mut s.hidden[t0 * h..(t0 + tn) * h], s.par, ln);
        }
    }

    /// Rows `r0..r0 + rows` of `w` (with its `bias` from `r0`; `sums`: those rows' GEMM weight sums) on the
    /// tile's quantised `input`, plus the side columns read from the tile's `f32` input rows `x`: token `t`'s outputs in `out[t * rows..][..rows]`
    /// (as `f32`, returned).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn project<'o>(
        &self,
        w: &Matrix,
        bias: &[f32],
        (r0, rows): (usize, usize),
        sums: &[i32],
        input: &GemmInput,
        x: &[f32],
        out: &'o mut [i32],
        (par, stage): (&dyn Parallel, &mut [f32]),
    ) -> &'o mut [f32] {
        let tn = input.tokens();
        let bias = &bias[r0..r0 + rows];
        let y = linear_i8_tokens(
            w,
            r0,
            rows,
            sums,
            input,
            bias,
            &mut out[..tn * rows],
            (par, stage),
        );
        add_side(w, r0, rows, x, y);
        y
    }
}

/// Quantises `tokens` rows of `x` (`cols` wide) into `q`, one scale each into `scales`, the channels `side` out
/// ([`quant::quantize_row_except`]); the rows are shared out between threads by `par`.
fn quantize_rows(
    par: &dyn Parallel,
    x: &mut [f32],
    cols: usize,
    side: &[u32],
    q: &mut [i8],
    scales: &mut [f32],
) {
    let tokens = scales.len();
    let work = Quantize { cols, side };
    parallel::run_rows(
        par,
        tokens,
        4,
        (x, q, scales, &mut [][..]),
        (cols, cols, 1, 0),
        &work,
    );
}

/// The GEMM input for a tile of the quantised hidden state: `shared` when it covers the whole sequence, otherwise
/// the tile's tokens `x` (`tn` rows of `cols`, scales `xs`) prepared into `local` with `work`.
fn shared_or_tile<'x>(
    shared: &'x Option<GemmInput<'x>>,
    local: &'x mut Option<GemmInput<'x>>,
    x: &'x [i8],
    cols: usize,
    xs: &'x [f32],
    tn: usize,
    work: &'x mut [u32],
) -> &'x GemmInput<'x> {
    match shared {
        Some(input) => input,
        None => local.insert(GemmInput::new(x, cols, cols, xs, tn, work)),
    }
}

/// The matrices in the order their GEMM weight sums are laid out (see [`Layer::sums_offsets`]).
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const DENSE: usize = 3;
const FFN: usize = 4;
const FFN_OUT: usize = 5;

/// `i32` words of the shared layer's GEMM weight sums ([`kernels::gemm_weight_sums`]): one per row of Q, K, V,
/// dense, the FFN's two matrices (each input is one block: one activation scale per token).
pub(crate) const fn layer_sums_len(c: &crate::config::AlbertConfig) -> usize {
    5 * c.hidden_size + c.intermediate_size
}

impl Layer<'_> {
    /// Where each matrix's weight sums start in the engine's `sums` buffer (one per row).
    fn sums_offsets(&self) -> [usize; 6] {
        let h = self.query.rows;
        let rows = [h, h, h, h, self.ffn.rows, h];
        let mut at = 0;
        core::array::from_fn(|m| {
            let start = at;
            at += rows[m];
            start
        })
    }

    /// Fills `sums` (empty, or [`layer_sums_len`] words) with the GEMM weight sums of every matrix; once per
    /// forward pass, for all `num_hidden_layers` applications of the layer.
    pub(crate) fn prepare_sums(&self, sums: &mut [i32]) {
        let matrices = [
            &self.query,
            &self.key,
            &self.value,
            &self.dense,
            &self.ffn,
            &self.ffn_output,
        ];
        let offsets = self.sums_offsets();
        for (m, w) in matrices.iter().enumerate() {
            let start = offsets[m];
            let Some(out) = sums.get_mut(start..start + w.rows) else {
                return;
            };
            if let MatrixData::I8 { values, .. } = w.data {
                kernels::gemm_weight_sums(values, w.cols, w.cols.max(1), out);
            }
        }
    }

    /// The end of a sub-layer for a tile of tokens: `hidden[t] = LayerNorm(out[t] + hidden[t])`, with `out` the
    /// sub-layer's outputs (`f32` bits, H per token) and `hidden` the tile's rows of the residual stream. Tokens
    /// are shared out between threads by `par`.
    #[inline(always)]
    fn add_norm(
        &self,
        out: &mut [i32],
        hidden: &mut [f32],
        par: &dyn Parallel,
        ln: (&[f32], &[f32]),
    ) {
        let h = self.query.rows;
        let tn = hidden.len() / h.max(1);
        let work = AddNorm {
            gamma: ln.0,
            beta: ln.1,
            eps: self.eps,
            h,
        };
        let bufs = (as_f32(&mut out[..tn * h]), &mut [][..], hidden, &mut [][..]);
        parallel::run_rows(par, tn, 4, bufs, (h, 0, h, 0), &work);
    }
}

/// `TokenWork` for a type with an `#[inline(always)] fn body(&self, Rows)`: compiled again with AVX-512 and with
/// AVX2 on x86-64 hosts and chosen at run time, like the layer step ([`Layer::forward_i8`]), so that jobs run
/// vectorised loops on any thread. The same IEEE operations in the same order per element in every variant (Rust
/// never fuses or reassociates floating-point arithmetic), so the same bits.
macro_rules! token_work {
    ($t:ty) => {
        impl TokenWork for $t {
            fn run(&self, rows: Rows<'_>) {
                #[cfg(all(target_arch = "x86_64", feature = "std"))]
                if std::is_x86_feature_detected!("avx512f") {
                    #[target_feature(enable = "avx512f,avx2")]
                    unsafe fn avx512(work: &$t, rows: Rows<'_>) {
                        work.body(rows)
                    }
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512(self, rows) };
                }
                #[cfg(all(target_arch = "x86_64", feature = "std"))]
                if std::is_x86_feature_detected!("avx2") {
                    #[target_feature(enable = "avx2")]
                    unsafe fn avx2(work: &$t, rows: Rows<'_>) {
                        work.body(rows)
                    }
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { avx2(self, rows) };
                }
                self.body(rows)
            }
        }
    };
}

/// One activation scale per token (rows: the `f32` inputs `f`, their int8 values `q`, one scale each in `s`),
/// the side columns out.
struct Quantize<'a> {
    cols: usize,
    side: &'a [u32],
}

impl Quantize<'_> {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let rows =
            r.f.chunks_exact(self.cols)
                .zip(r.q.chunks_exact_mut(self.cols));
        for ((x, q), s) in rows.zip(r.s.iter_mut()) {
            *s = quant::quantize_row_except(x, self.side, q);
        }
    }
}

token_work!(Quantize<'_>);

/// Add & LayerNorm, token by token (rows: the sub-layer's output `f`, the residual stream `s`, which receives the
/// result).
struct AddNorm<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
    h: usize,
}

impl AddNorm<'_> {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let h = self.h;
        for (y, x) in r.f.chunks_exact_mut(h).zip(r.s.chunks_exact(h)) {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y += x);
        }
        // Several tokens side by side: the same bits as `layer_norm_f32` token by token.
        kernels::layer_norm_rows(r.f, h, self.gamma, self.beta, self.eps);
        r.s.copy_from_slice(&r.f[..r.s.len()]);
    }
}

token_work!(AddNorm<'_>);

/// The FFN's activation on a chunk of `cn` intermediate values per token (rows `f`), written into columns
/// `c0..c0 + cn` of the token's `f32` intermediate row (rows `s`, I per token).
struct Activate {
    act: Activation,
    c0: usize,
    cn: usize,
    i_size: usize,
}

impl Activate {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let (c0, cn) = (self.c0, self.cn);
        let rows = r.f.chunks_exact_mut(cn.max(1));
        for (y, inter) in rows.zip(r.s.chunks_exact_mut(self.i_size.max(1))) {
            math::activate(self.act, y);
            inter[c0..c0 + cn].copy_from_slice(y);
        }
    }
}

token_work!(Activate);

/// Query rows whose scores are computed before their softmaxes run ([`kernels::masked_softmax_rows`]).
pub(crate) const SOFTMAX_ROWS: usize = 8;

/// `f32` values of scratch one attention job needs ([`AttentionRows`]): for each of [`SOFTMAX_ROWS`] queries its
/// quantised row (`d` `i16`), its scores and then its context (`max(seq, d)` `i32`) and its quantised
/// probabilities (`seq` `u8`).
pub(crate) const fn attention_scratch_len(seq: usize, d: usize) -> usize {
    (SOFTMAX_ROWS * d).div_ceil(2)
        + SOFTMAX_ROWS * if seq > d { seq } else { d }
        + (SOFTMAX_ROWS * seq).div_ceil(4)
}

/// One head's attention for a range of query tokens: rows `f` are the queries (`d` per token, `f32`) and `s` the
/// `f32` context rows (`h` per token; this head writes columns `r0..r0 + d`).
struct AttentionRows<'a> {
    keys: &'a Keys<'a>,
    values: &'a Values<'a>,
    k_scale: &'a [f32],
    v_scale: &'a [f32],
    v_sum: &'a [i32],
    inputs: &'a Inputs<'a>,
    d: usize,
    h: usize,
    r0: usize,
    qmax: i32,
    inv_sqrt_d: f32,
}

impl AttentionRows<'_> {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let (seq, d) = (self.k_scale.len(), self.d);
        let (q, rest) = r
            .scratch
            .split_at_mut((SOFTMAX_ROWS * d).div_ceil(2).min(r.scratch.len()));
        let (acc, probs) = rest.split_at_mut((SOFTMAX_ROWS * seq.max(d)).min(rest.len()));
        let q: &mut [i16] = bytemuck::cast_slice_mut(q);
        let acc: &mut [i32] = bytemuck::cast_slice_mut(acc);
        let probs: &mut [u8] = bytemuck::cast_slice_mut(probs);
        if q.len() < d || acc.len() < seq.max(d) || probs.len() < seq {
            return; // `run_rows` gives every job `attention_scratch_len` values
        }
        self.body_with(r.f, r.s, (q, acc, probs));
    }

    /// For each query row of `y`: the scores against every key, the masked softmax, P.V with V's per-token scales
    /// folded into P, and the context into the token's columns of `ctx`. Up to [`SOFTMAX_ROWS`] queries at a
    /// time (as many as `q` holds rows of `d` and `acc` slots of `max(seq, d)`, at least one): quantised into
    /// `q`, their scores computed together, then each one's softmax and context.
    #[inline(always)]
    fn body_with(
        &self,
        y: &mut [f32],
        ctx: &mut [f32],
        (q, acc, probs): (&mut [i16], &mut [i32], &mut [u8]),
    ) {
        let (seq, d, r0) = (self.k_scale.len(), self.d.max(1), self.r0);
        let w = seq.max(d);
        let group = (acc.len() / w)
            .min(q.len() / d)
            .min(probs.len() / seq.max(1))
            .clamp(1, SOFTMAX_ROWS);
        let mut rows = y.chunks_exact(d).zip(ctx.chunks_exact_mut(self.h));
        loop {
            // Up to `group` queries: quantised, then their scores, one slot of `acc` each.
            let mut taken: [Option<&mut [f32]>; SOFTMAX_ROWS] = Default::default();
            let mut q_scale = [0.0f32; SOFTMAX_ROWS];
            let mut n = 0;
            for ((qrow, (y, ctx)), qs) in q
                .chunks_exact_mut(d)
                .zip(&mut rows)
                .take(group)
                .zip(&mut q_scale)
            {
                *qs = quant::quantize_row_i16(y, self.qmax, qrow) * self.inv_sqrt_d;
                taken[n] = Some(ctx);
                n += 1;
            }
            if n == 0 {
                return;
            }
            self.keys.scores_many(&q[..n * d], n, &mut acc[..n * w], w);
            for (slot, &qs) in acc.chunks_exact_mut(w).zip(&q_scale[..n]) {
                for (a, &ks) in slot[..seq].iter_mut().zip(self.k_scale) {
                    *a = (*a as f32 * (qs * ks)).to_bits() as i32;
                }
            }
            let scores = as_f32(&mut acc[..n * w]);
            if self.inputs.all_attend() {
                kernels::masked_softmax_rows(scores, w, seq, n, |_| true);
            } else {
                kernels::masked_softmax_rows(scores, w, seq, n, |j| self.inputs.attends(j));
            }
            // The probabilities with V's per-token scales folded in, quantised; then the contexts of all `n`
            // queries together, into their slots of `acc` (the scores are no longer needed).
            let mut p_scale = [0.0f32; SOFTMAX_ROWS];
            for ((slot, ps), pr) in acc
                .chunks_exact_mut(w)
                .zip(&mut p_scale[..n])
                .zip(probs.chunks_exact_mut(seq.max(1)))
            {
                let scores = as_f32(&mut slot[..seq]);
                scores
                    .iter_mut()
                    .zip(self.v_scale)
                    .for_each(|(p, &vs)| *p *= vs);
                *ps = quant::quantize_row_u8(scores, pr);
            }
            self.values
                .attend_many(&mut probs[..n * seq], n, self.v_sum, &mut acc[..n * w], w);
            for ((slot, taken), &ps) in acc.chunks_exact_mut(w).zip(&mut taken[..n]).zip(&p_scale) {
                let Some(ctx) = taken.take() else {
                    continue;
                };
                for (c, &a) in ctx[r0..r0 + d].iter_mut().zip(&slot[..d]) {
                    *c = a as f32 * ps;
                }
            }
        }
    }
}

token_work!(AttentionRows<'_>);
