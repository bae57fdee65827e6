//! The core's f32 reference forward pass (`albert_edge::model`, `Precision::F32`), computed a whole sequence at a
//! time for the converter's calibration: the same bits, several times faster.
//!
//! The core runs each linear layer token by token (`linear_f32`: one GEMV per token, every output summed from
//! `0.0` left to right over the input, then `+ bias`). Here the linear layers multiply all of a sequence's tokens
//! at once, in tiles of [`LANES`] output rows x [`TOKENS`] tokens, and each output is still one sum from `0.0`,
//! left to right, of `w * x` products, then `+ bias`: the same additions in the same order, so the same `f32`
//! bits (Rust never fuses a multiply and an add). Only the order in which *different* outputs are computed
//! changes, which lets the products vectorise across output rows. Everything else (embedding lookup, LayerNorm,
//! attention, softmax, activations, tanh) calls the core's own functions in the core's order.
//!
//! Only what calibration needs: fp32 blobs, unpadded single-segment inputs (`Inputs::ids`). The
//! `matches_the_core_bit_for_bit` tests compare every observed row and the logits with
//! `albert_edge::model::classify_observed`; a change to the core's f32 path must be mirrored here.

use albert_edge::format::{Matrix, MatrixData};
use albert_edge::kernels::{dot_f32, layer_norm_f32, masked_softmax_f32};
use albert_edge::model::{Observer, Site};
use albert_edge::{math, AlbertConfig, Model};

/// Output rows per tile: the width of the packed weight panels.
const LANES: usize = 16;
/// Tokens per tile.
const TOKENS: usize = 4;

// ---------------------------------------------------------------------------------------------------------------
// Linear layers
// ---------------------------------------------------------------------------------------------------------------

/// A linear layer's `f32` weight `(rows, cols)` repacked as panels of [`LANES`] rows, column-major inside a
/// panel: `panels[p][c * LANES + i] = w[p * LANES + i][c]` (rows past the end are 0 and never written out).
struct Packed<'a> {
    rows: usize,
    cols: usize,
    panels: Vec<f32>, // (rows / LANES rounded up, cols, LANES)
    bias: &'a [f32],  // (rows)
}

impl<'a> Packed<'a> {
    fn new(m: &Matrix<'a>, bias: &'a [f32]) -> Option<Self> {
        let MatrixData::F32(w) = m.data else {
            return None;
        };
        let (rows, cols) = (m.rows, m.cols);
        let mut panels = vec![0f32; rows.div_ceil(LANES) * cols * LANES];
        for (r, row) in w.chunks_exact(cols.max(1)).take(rows).enumerate() {
            let panel = &mut panels[(r / LANES) * cols * LANES..][..cols * LANES];
            for (c, &v) in row.iter().enumerate() {
                panel[c * LANES + r % LANES] = v;
            }
        }
        Some(Packed {
            rows,
            cols,
            panels,
            bias,
        })
    }

    /// `y[t][r] = (Σ_c w[r][c] * x[t][c], from 0.0, c ascending) + bias[r]` for `x` `(n, cols)`, `y` `(n, rows)`.
    fn forward(&self, x: &[f32], y: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { self.forward_avx2(x, y) };
            return;
        }
        self.forward_portable(x, y);
    }

    /// [`Packed::forward`] compiled for AVX2: the same operations (no FMA), wider registers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(&self, x: &[f32], y: &mut [f32]) {
        self.forward_portable(x, y);
    }

    #[inline(always)]
    fn forward_portable(&self, x: &[f32], y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let n = x.len() / cols.max(1);
        if cols == 0 {
            for yt in y.chunks_exact_mut(rows.max(1)).take(n) {
                yt.copy_from_slice(&self.bias[..rows]);
            }
            return;
        }
        for (p, panel) in self.panels.chunks_exact(cols * LANES).enumerate() {
            let r0 = p * LANES;
            let width = LANES.min(rows - r0);
            let mut t = 0;
            while t + TOKENS <= n {
                let acc = tile::<TOKENS>(panel, &x[t * cols..(t + TOKENS) * cols]);
                self.store(&acc, r0, width, &mut y[t * rows..]);
                t += TOKENS;
            }
            while t < n {
                let acc = tile::<1>(panel, &x[t * cols..(t + 1) * cols]);
                self.store(&acc, r0, width, &mut y[t * rows..]);
                t += 1;
            }
        }
    }

    #[inline(always)]
    fn store<const T: usize>(
        &self,
        acc: &[[f32; LANES]; T],
        r0: usize,
        width: usize,
        y: &mut [f32],
    ) {
        let bias = &self.bias[r0..r0 + width];
        for (a, yt) in acc.iter().zip(y.chunks_mut(self.rows)) {
            for ((o, &s), &b) in yt[r0..r0 + width].iter_mut().zip(a).zip(bias) {
                *o = s + b;
            }
        }
    }
}

/// `acc[t][i] = Σ_c panel[c][i] * x[t][c]`, each sum from `0.0` with `c` ascending; `x` is `(T, cols)`.
#[inline(always)]
fn tile<const T: usize>(panel: &[f32], x: &[f32]) -> [[f32; LANES]; T] {
    let cols = panel.len() / LANES;
    let xs: [&[f32]; T] = core::array::from_fn(|t| &x[t * cols..(t + 1) * cols]);
    let mut acc = [[0f32; LANES]; T];
    for (c, w) in panel.chunks_exact(LANES).enumerate() {
        for t in 0..T {
            let v = xs[t][c];
            for i in 0..LANES {
                acc[t][i] += w[i] * v;
            }
        }
    }
    acc
}

// ---------------------------------------------------------------------------------------------------------------
// The forward pass
// ---------------------------------------------------------------------------------------------------------------

/// An fp32 model with its linear layers packed for [`Packed::forward`]. Build once, run on many sequences.
pub struct F32Forward<'m> {
    model: &'m Model<'m>,
    mapping_in: Packed<'m>,
    query: Packed<'m>,
    key: Packed<'m>,
    value: Packed<'m>,
    dense: Packed<'m>,
    ffn: Packed<'m>,
    ffn_output: Packed<'m>,
    pooler: Packed<'m>,
    classifier: Packed<'m>,
}

/// Per-sequence buffers, reused across sequences (grown as needed).
#[derive(Default)]
pub struct Buffers {
    emb: Vec<f32>,    // (seq, E)
    hidden: Vec<f32>, // (seq, H)
    q: Vec<f32>,      // (seq, H)
    k: Vec<f32>,      // (seq, H)
    v: Vec<f32>,      // (seq, H)
    ctx: Vec<f32>,    // (seq, H)
    rows: Vec<f32>,   // (seq, H): dense and ffn_output outputs
    inter: Vec<f32>,  // (seq, I)
    scores: Vec<f32>, // (seq)
    tmp: Vec<f32>,    // (E)
    pooled: Vec<f32>, // (H)
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

impl<'m> F32Forward<'m> {
    /// `None` unless every weight matrix of `model` is `f32` (what the converter's calibration blob has).
    pub fn new(model: &'m Model<'m>) -> Option<Self> {
        let w = model.weights();
        let l = &w.layer;
        Some(F32Forward {
            model,
            mapping_in: Packed::new(&w.mapping_in_weight, w.mapping_in_bias)?,
            query: Packed::new(&l.query_weight, l.query_bias)?,
            key: Packed::new(&l.key_weight, l.key_bias)?,
            value: Packed::new(&l.value_weight, l.value_bias)?,
            dense: Packed::new(&l.attention_dense_weight, l.attention_dense_bias)?,
            ffn: Packed::new(&l.ffn_weight, l.ffn_bias)?,
            ffn_output: Packed::new(&l.ffn_output_weight, l.ffn_output_bias)?,
            pooler: Packed::new(&w.pooler_weight, w.pooler_bias)?,
            classifier: Packed::new(&w.classifier_weight, w.classifier_bias)?,
        })
    }

    /// `classify_observed(model, &Inputs::ids(ids), ..)`: the same logits and the same rows shown to `obs`, each
    /// site's rows in the same order (sites are interleaved differently: a sub-layer's rows come for all tokens
    /// at once). `ids` must be valid for the model (1..=max_position_embeddings ids below vocab_size), as the
    /// converter's tokenizer guarantees.
    pub fn classify_observed(
        &self,
        ids: &[u32],
        buf: &mut Buffers,
        logits: &mut [f32],
        obs: &mut dyn Observer,
    ) {
        let c: &AlbertConfig = self.model.config();
        let w = self.model.weights();
        let l = &w.layer;
        let (seq, e, h, i_size) = (
            ids.len(),
            c.embedding_size,
            c.hidden_size,
            c.intermediate_size,
        );
        let d = h / c.num_attention_heads;
        let eps = c.layer_norm_eps;

        // ---- embeddings: LayerNorm(word + token type 0 + position), then the E -> H projection
        {
            let emb = sized(&mut buf.emb, seq * e);
            let tmp = sized(&mut buf.tmp, e);
            for (t, (row, &id)) in emb.chunks_exact_mut(e).zip(ids).enumerate() {
                w.word_embeddings.row_f32(id as usize, row);
                w.token_type_embeddings.row_f32(0, tmp);
                row.iter_mut().zip(tmp.iter()).for_each(|(x, &y)| *x += y);
                w.position_embeddings.row_f32(t, tmp);
                row.iter_mut().zip(tmp.iter()).for_each(|(x, &y)| *x += y);
                layer_norm_f32(row, w.embeddings_ln_weight, w.embeddings_ln_bias, eps);
                obs.linear_input(Site::MappingIn, 0, row);
            }
            self.mapping_in
                .forward(emb, sized(&mut buf.hidden, seq * h));
        }

        // ---- the ONE shared layer, num_hidden_layers times
        let sqrt_d = math::sqrt(d as f32);
        for pass in 0..c.num_hidden_layers {
            let hidden = sized(&mut buf.hidden, seq * h);
            for x in hidden.chunks_exact(h) {
                obs.linear_input(Site::Query, pass, x);
                obs.linear_input(Site::Key, pass, x);
                obs.linear_input(Site::Value, pass, x);
            }
            let q = sized(&mut buf.q, seq * h);
            let k = sized(&mut buf.k, seq * h);
            let v = sized(&mut buf.v, seq * h);
            self.query.forward(hidden, q);
            self.key.forward(hidden, k);
            self.value.forward(hidden, v);

            // Attention, head by head: softmax(q k^T / sqrt(d)) v (no padding: every key attends).
            let ctx = sized(&mut buf.ctx, seq * h);
            let scores = sized(&mut buf.scores, seq);
            for head in 0..c.num_attention_heads {
                let cols = head * d..(head + 1) * d;
                for t in 0..seq {
                    let qt = &q[t * h..][cols.clone()];
                    for (j, score) in scores.iter_mut().enumerate() {
                        *score = dot_f32(qt, &k[j * h..][cols.clone()]) / sqrt_d;
                    }
                    masked_softmax_f32(scores, |_| true);
                    let out = &mut ctx[t * h..][cols.clone()];
                    out.iter_mut().for_each(|o| *o = 0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let vj = &v[j * h..][cols.clone()];
                        out.iter_mut().zip(vj).for_each(|(o, &v)| *o += p * v);
                    }
                }
            }

            // Dense, add & LayerNorm.
            for x in ctx.chunks_exact(h) {
                obs.linear_input(Site::Dense, pass, x);
            }
            let rows = sized(&mut buf.rows, seq * h);
            self.dense.forward(ctx, rows);
            for (row, x) in rows.chunks_exact_mut(h).zip(hidden.chunks_exact_mut(h)) {
                row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
                layer_norm_f32(row, l.attention_ln_weight, l.attention_ln_bias, eps);
                x.copy_from_slice(row);
            }

            // FFN, add & LayerNorm.
            for x in hidden.chunks_exact(h) {
                obs.linear_input(Site::Ffn, pass, x);
            }
            let inter = sized(&mut buf.inter, seq * i_size);
            self.ffn.forward(hidden, inter);
            for row in inter.chunks_exact_mut(i_size) {
                math::activate(c.hidden_act, row);
                obs.linear_input(Site::FfnOutput, pass, row);
            }
            self.ffn_output.forward(inter, rows);
            for (row, x) in rows.chunks_exact_mut(h).zip(hidden.chunks_exact_mut(h)) {
                row.iter_mut().zip(x.iter()).for_each(|(r, &x)| *r += x);
                layer_norm_f32(row, l.full_ln_weight, l.full_ln_bias, eps);
                x.copy_from_slice(row);
            }
        }

        // ---- pooler (tanh) and classifier on [CLS]
        let cls = &buf.hidden[..h];
        let pooled = sized(&mut buf.pooled, h);
        obs.linear_input(Site::Pooler, 0, cls);
        self.pooler.forward(cls, pooled);
        pooled.iter_mut().for_each(|x| *x = math::tanh(*x));
        obs.linear_input(Site::Classifier, 0, pooled);
        self.classifier.forward(pooled, &mut logits[..c.num_labels]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::write_blob;
    use crate::synthetic::{random_model, Rng};
    use albert_edge::format::AlignedBlob;
    use albert_edge::model::{classify_observed, scratch_size, Inputs, Precision};
    use albert_edge::Activation;

    /// Every row shown, by site, as bits.
    #[derive(Default)]
    struct Recorder(Vec<(Site, usize, Vec<u32>)>);

    impl Observer for Recorder {
        fn linear_input(&mut self, site: Site, pass: usize, x: &[f32]) {
            self.0
                .push((site, pass, x.iter().map(|v| v.to_bits()).collect()));
        }
    }

    impl Recorder {
        /// Per site, in the order shown (the interleaving of sites may differ).
        fn by_site(mut self) -> Vec<(Site, usize, Vec<u32>)> {
            self.0.sort_by_key(|(site, _, _)| *site);
            self.0
        }
    }

    fn check(config: &AlbertConfig, seed: u64, lengths: &[usize]) {
        let blob = AlignedBlob::new(&write_blob(&random_model(config, seed, false)).unwrap());
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let fast = F32Forward::new(&model).unwrap();
        let mut buf = Buffers::default();
        let mut rng = Rng::new(seed);
        for &n in lengths {
            let mut ids: Vec<u32> = (0..n)
                .map(|_| rng.range(5, config.vocab_size) as u32)
                .collect();
            ids[0] = 2;
            let (mut want, mut got) = (Recorder::default(), Recorder::default());
            let mut arena = vec![0u8; scratch_size(config, n, Precision::F32)];
            let mut logits_want = vec![0f32; config.num_labels];
            let mut logits_got = vec![f32::NAN; config.num_labels];
            classify_observed(
                &model,
                &Inputs::ids(&ids),
                &mut arena,
                &mut logits_want,
                &mut want,
            )
            .unwrap();
            fast.classify_observed(&ids, &mut buf, &mut logits_got, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&logits_got), bits(&logits_want), "logits, seq {n}");
            let (want, got) = (want.by_site(), got.by_site());
            assert_eq!(want.len(), got.len(), "rows shown, seq {n}");
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w, g, "site {:?} pass {}, seq {n}", w.0, w.1);
            }
        }
    }

    fn config(h: usize, heads: usize, i: usize, e: usize, act: Activation) -> AlbertConfig {
        AlbertConfig {
            vocab_size: 300,
            embedding_size: e,
            hidden_size: h,
            num_attention_heads: heads,
            intermediate_size: i,
            num_hidden_layers: 3,
            max_position_embeddings: 40,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: act,
            num_labels: 3,
        }
    }

    #[test]
    fn matches_the_core_bit_for_bit() {
        // Widths that are and are not multiples of the tile (16 rows, 4 tokens), lengths 1..=40.
        check(
            &config(32, 4, 64, 8, Activation::GeluNew),
            1,
            &[1, 2, 5, 8, 17],
        );
        check(&config(48, 3, 100, 13, Activation::Gelu), 2, &[3, 4, 7, 40]);
        check(&config(20, 2, 36, 6, Activation::Relu), 3, &[1, 6, 11]);
    }
}
