//! The ONE shared ALBERT transformer layer: self-attention (with the padding mask), dense, add & LayerNorm, FFN,
//! add & LayerNorm. Stored once in the blob; [`super::classify`] applies it `num_hidden_layers` times.

use super::linear::{as_f32, linear_f32, linear_i8_tokens};
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
    block: usize, // activation block width (`AlbertConfig::activation_block`)
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

/// Buffers of the int8 engine (see `Int8Plan`). Every activation is int8 in blocks of
/// `AlbertConfig::activation_block` values (the context: one block per head), each block with its own scale.
pub(crate) struct Int8Scratch<'s> {
    pub hidden: &'s mut [i8],        // (seq, H)
    pub hidden_scale: &'s mut [f32], // (seq, H / block)
    pub ctx: &'s mut [i8],           // (seq, H)
    pub ctx_scale: &'s mut [f32],    // (seq, heads): one scale per token and head
    pub acc: &'s mut [i32],          // (max(FFN chunk rows, H, E, seq, labels)), also viewed as f32
    pub row: &'s mut [f32],          // (max(E, H))
    pub qrow: &'s mut [i8],          // (tile, max(I, H))
    pub qrow_scale: &'s mut [f32],   // (tile, max(I, H) / block, rounded up)
    pub out: &'s mut [i32],          // (tile, H): linear outputs, viewed as f32
    pub tile: usize,                 // tokens per GEMM
    pub work: &'s mut [u32],         // the GEMM kernels' workspace
    pub sums: &'s mut [i32],         // the GEMM's weight sums (`layer_sums_len`), or empty
    pub mapping_t: &'s mut [i8],     // (E, H): `mapping_in` transposed (the speed arena), or empty
    pub q: &'s mut [i16],            // (d): one query row
    pub k: &'s mut [i16],            // (`attention::keys_len(seq, d)`): one head's K
    pub vt: &'s mut [i8],            // (`attention::values_len(seq, d)`): one head's V
    pub k_scale: &'s mut [f32],      // (seq)
    pub v_scale: &'s mut [f32],      // (seq)
    pub v_sum: &'s mut [i32],        // (d): row sums of `vt`
    pub probs: &'s mut [u8],         // (seq)
    pub stage: &'s mut [f32],        // (tile, H): where threads put their rows of a GEMM, or empty
    pub par: &'s dyn Parallel,       // who runs the linear layers' jobs
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
            block: model.activation_block(),
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
                masked_softmax_f32(scores, |j| inputs.attends(j));
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

    /// One application of the layer to `s.hidden` (seq, H, int8 in blocks), in place, for the first `outputs`
    /// tokens (`1..=seq`; anything else means `seq`): K and V come from every token, but queries, the dense layer
    /// and the FFN run for those tokens only, and the hidden state of the others is left as it was. The last
    /// application needs only `[CLS]`, the one token the pooler reads; each token's output depends only on its own
    /// query and on every token's K and V, so `[CLS]` comes out the same bits either way.
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
        let blk = self.block.max(1);
        let nb = h.div_ceil(blk); // blocks per hidden row
        let i_size = self.ffn.rows;
        let inv_sqrt_d = 1.0 / math::sqrt(d as f32);
        let qmax = quant::qmax_i16_for_dot(d);

        let tile = s.tile.clamp(1, seq.max(1));
        // The GEMM's weight sums for rows `r0..r0 + n` of a matrix (empty where the arena has none).
        let all_sums: &[i32] = s.sums;
        let offsets = self.sums_offsets();
        let sums = |m: usize, r0: usize, n: usize| {
            let (start, nb) = offsets[m];
            all_sums
                .get(start + r0 * nb..start + (r0 + n) * nb)
                .unwrap_or(&[])
        };
        // Q, K and V of every head read the same hidden state: with the whole sequence in one tile, it is prepared
        // for the GEMM once; otherwise once per head and tile (`tile_work`).
        let whole = tile >= seq;
        let (shared_work, tile_work) = if whole {
            (&mut *s.work, &mut [][..])
        } else {
            (&mut [][..], &mut *s.work)
        };
        let shared = whole.then(|| {
            GemmInput::new(
                &s.hidden[..seq * h],
                h,
                blk,
                &s.hidden_scale[..seq * nb],
                seq,
                shared_work,
            )
        });
        for head in 0..heads {
            let r0 = head * d;
            let rows = r0..r0 + d;
            // The plan sizes both buffers with `keys_len` / `values_len`, so these always exist.
            let (Some(mut keys), Some(mut values)) =
                (Keys::new(s.k, seq, d), Values::new(s.vt, seq, d))
            else {
                return;
            };
            // K (16 bits) and V (8 bits) of this head for every token, one scale per token, `tile`
            // tokens per GEMM.
            for t0 in (0..seq).step_by(tile) {
                let tn = tile.min(seq - t0);
                let mut local = None;
                let (x, xs) = (
                    &s.hidden[t0 * h..(t0 + tn) * h],
                    &s.hidden_scale[t0 * nb..(t0 + tn) * nb],
                );
                let input = shared_or_tile(&shared, &mut local, x, h, blk, xs, tn, tile_work);
                let bias = &self.key_bias[rows.clone()];
                let y = linear_i8_tokens(
                    &self.key,
                    r0,
                    d,
                    sums(K, r0, d),
                    input,
                    bias,
                    &mut s.out[..tn * d],
                    (s.par, &mut *s.stage),
                );
                for (tt, y) in y.chunks_exact(d).enumerate() {
                    let t = t0 + tt;
                    s.k_scale[t] = quant::quantize_row_i16(y, qmax, &mut s.q[..d]);
                    keys.set(t, &s.q[..d]);
                }
                let bias = &self.value_bias[rows.clone()];
                let y = linear_i8_tokens(
                    &self.value,
                    r0,
                    d,
                    sums(V, r0, d),
                    input,
                    bias,
                    &mut s.out[..tn * d],
                    (s.par, &mut *s.stage),
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
                let (x, xs) = (
                    &s.hidden[t0 * h..(t0 + tn) * h],
                    &s.hidden_scale[t0 * nb..(t0 + tn) * nb],
                );
                let input = shared_or_tile(&shared, &mut local, x, h, blk, xs, tn, tile_work);
                let bias = &self.query_bias[rows.clone()];
                let y = linear_i8_tokens(
                    &self.query,
                    r0,
                    d,
                    sums(Q, r0, d),
                    input,
                    bias,
                    &mut s.out[..tn * d],
                    (s.par, &mut *s.stage),
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
                    head,
                    heads,
                    qmax,
                    inv_sqrt_d,
                };
                let ctx = &mut s.ctx[t0 * h..(t0 + tn) * h];
                let ctx_scale = &mut s.ctx_scale[t0 * heads..(t0 + tn) * heads];
                let per_job = attention_scratch_len(seq, d);
                if s.par.threads() > 1 && s.stage.len() >= 2 * per_job {
                    let bufs = (&mut *y, ctx, ctx_scale, &mut *s.stage);
                    let per = (d, h, heads, per_job);
                    parallel::run_rows(s.par, tn, 2, bufs, per, &rows);
                } else {
                    // The speed arena's staging buffer holds the scores of several queries at once.
                    let acc: &mut [i32] = if s.stage.len() >= 2 * seq.max(d) {
                        bytemuck::cast_slice_mut(&mut *s.stage)
                    } else {
                        &mut s.acc[..seq.max(d)]
                    };
                    let scratch = (&mut s.q[..d], acc, &mut s.probs[..seq]);
                    rows.body_with(y, ctx, ctx_scale, scratch);
                }
            }
        }

        // Dense (on the per-head context blocks), then add & LayerNorm, `tile` tokens per GEMM.
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let x = &s.ctx[t0 * h..(t0 + tn) * h];
            let xs = &s.ctx_scale[t0 * heads..(t0 + tn) * heads];
            let input = GemmInput::new(x, h, d, xs, tn, s.work);
            let bias = self.dense_bias;
            linear_i8_tokens(
                &self.dense,
                0,
                h,
                sums(DENSE, 0, h),
                &input,
                bias,
                &mut s.out[..tn * h],
                (s.par, &mut *s.stage),
            );
            let ln = (self.attention_ln_weight, self.attention_ln_bias);
            let bufs = (&mut *s.out, &mut *s.hidden, &mut *s.hidden_scale);
            self.add_norm_requantize(bufs, s.par, t0, tn, ln);
        }

        // FFN, add & LayerNorm, `tile` tokens at a time: the intermediate exists for the tile's tokens only, in
        // int8 blocks; the first GEMM runs in chunks of whole blocks of rows (at most H, what `out` holds per
        // token), each quantised on its own.
        let ni = i_size.div_ceil(blk);
        let ffn_rows = ffn_chunk_rows(h, blk);
        for t0 in (0..outputs).step_by(tile) {
            let tn = tile.min(outputs - t0);
            let x = &s.hidden[t0 * h..(t0 + tn) * h];
            let xs = &s.hidden_scale[t0 * nb..(t0 + tn) * nb];
            let input = GemmInput::new(x, h, blk, xs, tn, s.work);
            for c0 in (0..i_size).step_by(ffn_rows) {
                let cn = ffn_rows.min(i_size - c0);
                let bias = &self.ffn_bias[c0..c0 + cn];
                let inter = linear_i8_tokens(
                    &self.ffn,
                    c0,
                    cn,
                    sums(FFN, c0, cn),
                    &input,
                    bias,
                    &mut s.out[..tn * cn],
                    (s.par, &mut *s.stage),
                );
                let work = Activate {
                    act: self.act,
                    block: blk,
                    c0,
                    cn,
                    i_size,
                    ni,
                };
                let bufs = (
                    inter,
                    &mut s.qrow[..tn * i_size],
                    &mut s.qrow_scale[..tn * ni],
                    &mut [][..],
                );
                parallel::run_rows(s.par, tn, 2, bufs, (cn, i_size, ni, 0), &work);
            }
            let x = &s.qrow[..tn * i_size];
            let xs = &s.qrow_scale[..tn * ni];
            let input = GemmInput::new(x, i_size, blk, xs, tn, s.work);
            let bias = self.ffn_output_bias;
            linear_i8_tokens(
                &self.ffn_output,
                0,
                h,
                sums(FFN_OUT, 0, h),
                &input,
                bias,
                &mut s.out[..tn * h],
                (s.par, &mut *s.stage),
            );
            let ln = (self.full_ln_weight, self.full_ln_bias);
            let bufs = (&mut *s.out, &mut *s.hidden, &mut *s.hidden_scale);
            self.add_norm_requantize(bufs, s.par, t0, tn, ln);
        }
    }
}

/// The GEMM input for a tile of the hidden state: `shared` when it covers the whole sequence, otherwise the tile's
/// tokens `x` (`tn` rows of `cols`, scales `xs`) prepared into `local` with `work`.
#[allow(clippy::too_many_arguments)]
fn shared_or_tile<'x>(
    shared: &'x Option<GemmInput<'x>>,
    local: &'x mut Option<GemmInput<'x>>,
    x: &'x [i8],
    cols: usize,
    block: usize,
    xs: &'x [f32],
    tn: usize,
    work: &'x mut [u32],
) -> &'x GemmInput<'x> {
    match shared {
        Some(input) => input,
        None => local.insert(GemmInput::new(x, cols, block, xs, tn, work)),
    }
}

/// Rows of the FFN's first matrix per GEMM: the most whole activation blocks that fit in `h` (the engine's `out`
/// buffer holds `h` values per token; a blob's block is at most `h`).
pub(crate) const fn ffn_chunk_rows(h: usize, block: usize) -> usize {
    let block = if block == 0 { 1 } else { block };
    let blocks = h / block;
    block * if blocks == 0 { 1 } else { blocks }
}

/// The matrices in the order their GEMM weight sums are laid out (see [`Layer::sums_offsets`]).
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const DENSE: usize = 3;
const FFN: usize = 4;
const FFN_OUT: usize = 5;

/// `i32` words of the shared layer's GEMM weight sums ([`kernels::gemm_weight_sums`]): Q, K, V and the FFN's first
/// matrix in blocks of `block` over H, the dense layer in blocks of the head size, the FFN's output in blocks of
/// `block` over I.
pub(crate) const fn layer_sums_len(c: &crate::config::AlbertConfig) -> usize {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let block = c.activation_block();
    let block = if block == 0 { 1 } else { block };
    let nb = h.div_ceil(block);
    (3 * h + i) * nb + h * c.num_attention_heads + h * i.div_ceil(block)
}

impl Layer<'_> {
    /// Where each matrix's weight sums start in the engine's `sums` buffer, and their blocks per row.
    fn sums_offsets(&self) -> [(usize, usize); 6] {
        let h = self.query.rows;
        let blk = self.block.max(1);
        let nb = h.div_ceil(blk);
        let ni = self.ffn.rows.div_ceil(blk);
        let per_row = [nb, nb, nb, self.heads, nb, ni];
        let rows = [h, h, h, h, self.ffn.rows, h];
        let mut at = 0;
        core::array::from_fn(|m| {
            let start = at;
            at += rows[m] * per_row[m];
            (start, per_row[m])
        })
    }

    /// Fills `sums` (empty, or [`layer_sums_len`] words) with the GEMM weight sums of every matrix; once per
    /// forward pass, for all `num_hidden_layers` applications of the layer.
    pub(crate) fn prepare_sums(&self, sums: &mut [i32]) {
        let h = self.query.rows;
        let d = h / self.heads.max(1);
        let blocks = [
            self.block, self.block, self.block, d, self.block, self.block,
        ];
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
            let (start, nb) = offsets[m];
            let Some(out) = sums.get_mut(start..start + w.rows * nb) else {
                return;
            };
            if let MatrixData::I8 { values, .. } = w.data {
                kernels::gemm_weight_sums(values, w.cols, blocks[m].max(1), out);
            }
        }
    }

    /// The end of a sub-layer for tokens `t0..t0 + tn`: `y = LayerNorm(out[tt] + hidden[t])` (the int8 hidden
    /// dequantised), then `y` becomes the new int8 hidden state in blocks. `out` holds the sub-layer's outputs for
    /// the tile (`tn` rows of H, `f32` bits); `hidden` and `hidden_scale` are the whole sequence's. Tokens are
    /// shared out between threads by `par`.
    #[inline(always)]
    fn add_norm_requantize(
        &self,
        (out, hidden, hidden_scale): (&mut [i32], &mut [i8], &mut [f32]),
        par: &dyn Parallel,
        t0: usize,
        tn: usize,
        ln: (&[f32], &[f32]),
    ) {
        let h = self.query.rows;
        let blk = self.block.max(1);
        let nb = h.div_ceil(blk);
        let work = AddNorm {
            gamma: ln.0,
            beta: ln.1,
            eps: self.eps,
            h,
            block: blk,
        };
        let bufs = (
            as_f32(&mut out[..tn * h]),
            &mut hidden[t0 * h..(t0 + tn) * h],
            &mut hidden_scale[t0 * nb..(t0 + tn) * nb],
            &mut [][..],
        );
        parallel::run_rows(par, tn, 4, bufs, (h, h, nb, 0), &work);
    }
}

/// The residual: `y[c] += q[c] * scales[c / block]`.
#[inline(always)]
fn add_blocks(y: &mut [f32], q: &[i8], scales: &[f32], block: usize) {
    for ((y, q), &s) in y
        .chunks_mut(block.max(1))
        .zip(q.chunks(block.max(1)))
        .zip(scales)
    {
        y.iter_mut().zip(q).for_each(|(y, &q)| *y += q as f32 * s);
    }
}

/// `TokenWork` for a type with an `#[inline(always)] fn body(&self, Rows)`: compiled again with AVX-512 and with
/// AVX2 on x86-64 hosts and chosen at run time, like the layer step ([`Layer::forward_i8`]), so that jobs run
/// vectorised loops on any thread. The same IEEE operations in the same order per element in every variant (Rust
/// never fuses or reassociates floating-point arithmetic), so the same bits; AVX-512 took the FFN activation from
/// 7.1 % to 5.6 % of a classification (ALBERT-base, seq 128, `perf`).
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

/// Add & LayerNorm, then requantise, token by token (rows: the sub-layer's output `f`, the int8 hidden state `q`
/// and its block scales `s`).
struct AddNorm<'a> {
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
    h: usize,
    block: usize,
}

impl AddNorm<'_> {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let (h, nb) = (self.h, self.h.div_ceil(self.block));
        let rows = r.f.chunks_exact_mut(h);
        for ((y, x), xs) in rows.zip(r.q.chunks_exact(h)).zip(r.s.chunks_exact(nb)) {
            add_blocks(y, x, xs, self.block);
        }
        // Several tokens side by side: the same bits as `layer_norm_f32` token by token.
        kernels::layer_norm_rows(r.f, h, self.gamma, self.beta, self.eps);
        let rows = r.f.chunks_exact_mut(h);
        for ((y, x), xs) in rows
            .zip(r.q.chunks_exact_mut(h))
            .zip(r.s.chunks_exact_mut(nb))
        {
            quant::quantize_blocks(y, self.block, x, xs);
        }
    }
}

token_work!(AddNorm<'_>);

/// The FFN's activation on a chunk of `cn` intermediate values per token (rows `f`), quantised into columns
/// `c0..c0 + cn` of the token's int8 intermediate row (`q`, `i_size` per token; scales `s`, `ni` per token).
struct Activate {
    act: Activation,
    block: usize,
    c0: usize,
    cn: usize,
    i_size: usize,
    ni: usize,
}

impl Activate {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let (blk, c0, cn) = (self.block, self.c0, self.cn);
        let rows = r.f.chunks_exact_mut(cn);
        let q = r.q.chunks_exact_mut(self.i_size);
        for ((inter, q), scales) in rows.zip(q).zip(r.s.chunks_exact_mut(self.ni)) {
            math::activate(self.act, inter);
            quant::quantize_blocks(
                inter,
                blk,
                &mut q[c0..c0 + cn],
                &mut scales[c0 / blk..c0 / blk + cn.div_ceil(blk)],
            );
        }
    }
}

token_work!(Activate);

/// Query rows whose softmax sums run side by side ([`kernels::masked_softmax_rows`]), given the scratch.
const SOFTMAX_ROWS: usize = 8;

/// `f32` values of scratch one attention job needs ([`AttentionRows`]): a query row (`d` `i16`), the scores and
/// then the context of [`SOFTMAX_ROWS`] queries (`max(seq, d)` `i32` each) and the quantised probabilities (`seq`
/// `u8`).
pub(crate) const fn attention_scratch_len(seq: usize, d: usize) -> usize {
    d.div_ceil(2) + SOFTMAX_ROWS * if seq > d { seq } else { d } + seq.div_ceil(4)
}

/// One head's attention for a range of query tokens: rows `f` are the queries (`d` per token, `f32`), `q` the
/// int8 context rows (`h` per token; this head writes columns `r0..r0 + d`) and `s` their scales (`heads` per
/// token).
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
    head: usize,
    heads: usize,
    qmax: i32,
    inv_sqrt_d: f32,
}

impl AttentionRows<'_> {
    #[inline(always)]
    fn body(&self, r: Rows<'_>) {
        let (seq, d) = (self.k_scale.len(), self.d);
        let (q, rest) = r.scratch.split_at_mut(d.div_ceil(2).min(r.scratch.len()));
        let (acc, probs) = rest.split_at_mut((SOFTMAX_ROWS * seq.max(d)).min(rest.len()));
        let q: &mut [i16] = bytemuck::cast_slice_mut(q);
        let acc: &mut [i32] = bytemuck::cast_slice_mut(acc);
        let probs: &mut [u8] = bytemuck::cast_slice_mut(probs);
        if q.len() < d || acc.len() < seq.max(d) || probs.len() < seq {
            return; // `run_rows` gives every job `attention_scratch_len` values
        }
        self.body_with(r.f, r.q, r.s, (&mut q[..d], acc, &mut probs[..seq]));
    }

    /// For each query row of `y`: the scores against every key, the masked softmax, P.V with V's per-token scales
    /// folded into P, and the context quantised into the token's columns of `ctx`. `acc` holds `max(seq, d)`
    /// values for each of up to [`SOFTMAX_ROWS`] queries whose softmax runs together (at least one).
    #[inline(always)]
    fn body_with(
        &self,
        y: &mut [f32],
        ctx: &mut [i8],
        ctx_scale: &mut [f32],
        (q, acc, probs): (&mut [i16], &mut [i32], &mut [u8]),
    ) {
        let (seq, d, r0) = (self.k_scale.len(), self.d, self.r0);
        let w = seq.max(d);
        let group = (acc.len() / w.max(1)).clamp(1, SOFTMAX_ROWS);
        let rows = y.chunks_exact(d).zip(ctx.chunks_exact_mut(self.h));
        let mut rows = rows.zip(ctx_scale.chunks_exact_mut(self.heads));
        loop {
            // Up to `group` queries: their scores, one slot of `acc` each.
            let mut taken: [Option<(&mut [i8], &mut [f32])>; SOFTMAX_ROWS] = Default::default();
            let mut n = 0;
            for (slot, ((y, ctx), ctx_scale)) in acc.chunks_exact_mut(w).zip(&mut rows).take(group)
            {
                let qs = quant::quantize_row_i16(y, self.qmax, q) * self.inv_sqrt_d;
                let scores = &mut slot[..seq];
                self.keys.scores(q, scores);
                for (a, &ks) in scores.iter_mut().zip(self.k_scale) {
                    *a = (*a as f32 * (qs * ks)).to_bits() as i32;
                }
                taken[n] = Some((ctx, ctx_scale));
                n += 1;
            }
            if n == 0 {
                return;
            }
            let scores = as_f32(&mut acc[..n * w]);
            kernels::masked_softmax_rows(scores, w, seq, n, |j| self.inputs.attends(j));
            for (slot, taken) in acc.chunks_exact_mut(w).zip(&mut taken[..n]) {
                let Some((ctx, ctx_scale)) = taken.take() else {
                    continue;
                };
                let scores = as_f32(&mut slot[..seq]);
                scores
                    .iter_mut()
                    .zip(self.v_scale)
                    .for_each(|(p, &vs)| *p *= vs);
                let ps = quant::quantize_row_u8(scores, probs);
                let context = &mut slot[..d];
                self.values.attend(probs, self.v_sum, context);
                for a in context.iter_mut() {
                    *a = (*a as f32 * ps).to_bits() as i32;
                }
                ctx_scale[self.head] = quant::quantize_row(as_f32(context), &mut ctx[r0..r0 + d]);
            }
        }
    }
}

token_work!(AttentionRows<'_>);
