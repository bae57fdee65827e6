//! A faster [`F32Linear`] for the core's f32 reference forward pass, for the converter's calibration: the same
//! bits, several times faster.
//!
//! The core's default ([`TokenByToken`]) runs each linear layer token by token: one GEMV per token, every output
//! summed from `0.0` left to right over the input, then `+ bias`. [`Panels`] multiplies all of a sequence's
//! tokens at once, in tiles of `LANES` (16) output rows x `TOKENS` (4) tokens, and each output is still one sum from
//! `0.0`, left to right, of `w * x` products, then `+ bias`: the same additions in the same order, so the same
//! `f32` bits (Rust never fuses a multiply and an add). Only the order in which *different* outputs are computed
//! changes, which lets the products vectorise across output rows. Everything else in the forward pass is the
//! core's own ([`albert_edge::model::classify_observed_with`]).
//!
//! The `matches_the_core_bit_for_bit` test compares every observed row and the logits with
//! [`albert_edge::model::classify_observed`].

use albert_edge::format::{Matrix, MatrixData};
use albert_edge::model::{F32Linear, Site, TokenByToken};
use albert_edge::Model;

/// Output rows per tile: the width of the packed weight panels.
const LANES: usize = 16;
/// Tokens per tile.
const TOKENS: usize = 4;

/// A linear layer's `f32` weight `(rows, cols)` repacked as panels of [`LANES`] rows, column-major inside a
/// panel: `panels[p][c * LANES + i] = w[p * LANES + i][c]` (rows past the end are 0 and never written out).
struct Packed {
    rows: usize,
    cols: usize,
    panels: Vec<f32>, // (rows / LANES rounded up, cols, LANES)
}

impl Packed {
    /// `None` for an int8 matrix.
    fn new(m: &Matrix) -> Option<Self> {
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
        Some(Packed { rows, cols, panels })
    }

    /// `y[t][r] = (Σ_c w[r][c] * x[t][c], from 0.0, c ascending) + bias[r]` for `x` `(n, cols)`, `y` `(n, rows)`.
    fn forward(&self, x: &[f32], bias: &[f32], y: &mut [f32]) {
        // Compiled for AVX2 where the CPU has it: the same operations (no FMA), wider registers.
        albert_edge::kernels::simd::vectorized_256(
            #[inline(always)]
            || self.forward_portable(x, bias, y),
        );
    }

    #[inline(always)]
    fn forward_portable(&self, x: &[f32], bias: &[f32], y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let n = x.len() / cols.max(1);
        if cols == 0 {
            for yt in y.chunks_exact_mut(rows.max(1)).take(n) {
                yt.copy_from_slice(&bias[..rows]);
            }
            return;
        }
        for (p, panel) in self.panels.chunks_exact(cols * LANES).enumerate() {
            let r0 = p * LANES;
            let width = LANES.min(rows - r0);
            let bias = &bias[r0..r0 + width];
            let mut t = 0;
            while t + TOKENS <= n {
                let acc = tile::<TOKENS>(panel, &x[t * cols..(t + TOKENS) * cols]);
                store(&acc, bias, rows, r0, &mut y[t * rows..]);
                t += TOKENS;
            }
            while t < n {
                let acc = tile::<1>(panel, &x[t * cols..(t + 1) * cols]);
                store(&acc, bias, rows, r0, &mut y[t * rows..]);
                t += 1;
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

/// `y[t][r0 + i] = acc[t][i] + bias[i]` for the `bias.len()` rows of a tile; `y` holds rows of `rows` outputs.
#[inline(always)]
fn store<const T: usize>(
    acc: &[[f32; LANES]; T],
    bias: &[f32],
    rows: usize,
    r0: usize,
    y: &mut [f32],
) {
    let width = bias.len();
    for (a, yt) in acc.iter().zip(y.chunks_mut(rows)) {
        for ((o, &s), &b) in yt[r0..r0 + width].iter_mut().zip(a).zip(bias) {
            *o = s + b;
        }
    }
}

/// Every `f32` weight matrix of a model repacked as panels of 16 rows, in the order of [`Site::ALL`]. Build once, share between
/// threads (`&Panels` is the [`F32Linear`]), run on many sequences. Int8 matrices stay unpacked and run through
/// [`TokenByToken`].
pub struct Panels {
    by_site: [Option<Packed>; Site::ALL.len()],
}

impl Panels {
    /// Packs the linear layers of `model` that are `f32` (all of them in the converter's calibration blob).
    pub fn new(model: &Model) -> Self {
        let w = model.weights();
        let l = &w.layer;
        let matrix = |site: Site| match site {
            Site::MappingIn => &w.mapping_in_weight,
            Site::Query => &l.query_weight,
            Site::Key => &l.key_weight,
            Site::Value => &l.value_weight,
            Site::Dense => &l.attention_dense_weight,
            Site::Ffn => &l.ffn_weight,
            Site::FfnOutput => &l.ffn_output_weight,
            Site::Pooler => &w.pooler_weight,
            Site::Classifier => &w.classifier_weight,
        };
        Panels {
            by_site: Site::ALL.map(|site| Packed::new(matrix(site))),
        }
    }
}

impl F32Linear for &Panels {
    fn linear(&mut self, site: Site, w: &Matrix, bias: &[f32], x: &[f32], y: &mut [f32]) {
        let packed = Site::ALL.iter().position(|&s| s == site);
        match packed.and_then(|i| self.by_site[i].as_ref()) {
            Some(p) if p.rows == w.rows && p.cols == w.cols => p.forward(x, bias, y),
            _ => TokenByToken.linear(site, w, bias, x, y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::write_blob;
    use crate::synthetic::{random_model, Rng};
    use albert_edge::format::AlignedBlob;
    use albert_edge::model::{
        classify_observed, classify_observed_with, scratch_size, Inputs, Observer, Precision,
    };
    use albert_edge::{Activation, AlbertConfig};

    /// Every row shown, in order, as bits.
    #[derive(Default)]
    struct Recorder(Vec<(Site, usize, Vec<u32>)>);

    impl Observer for Recorder {
        fn linear_input(&mut self, site: Site, pass: usize, x: &[f32]) {
            self.0
                .push((site, pass, x.iter().map(|v| v.to_bits()).collect()));
        }
    }

    fn check(config: &AlbertConfig, seed: u64, lengths: &[usize]) {
        let blob = AlignedBlob::new(&write_blob(&random_model(config, seed, false)).unwrap());
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let panels = Panels::new(&model);
        assert!(panels.by_site.iter().all(Option::is_some));
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
            let inputs = Inputs::ids(&ids);
            classify_observed(&model, &inputs, &mut arena, &mut logits_want, &mut want).unwrap();
            arena.fill(0xff); // NaN everywhere: nothing may be read before it is written
            classify_observed_with(
                &model,
                &inputs,
                &mut arena,
                &mut logits_got,
                &mut got,
                &mut &panels,
            )
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&logits_got), bits(&logits_want), "logits, seq {n}");
            assert_eq!(want.0.len(), got.0.len(), "rows shown, seq {n}");
            for (w, g) in want.0.iter().zip(&got.0) {
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
