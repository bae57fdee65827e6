//! Seeded random ALBERT models of any shape, for tests, benchmarks and fuzzing. The weights are random but
//! "realistic" in scale (LayerNorm gains near 1, small biases, peaked attention), so int8 and f32 results can be
//! compared meaningfully.

use albert_edge::format::TensorKind;
use albert_edge::kernels::conformance;
use albert_edge::quant::quantize_matrix;
use albert_edge::{Activation, AlbertConfig};

use crate::blob::{BlobContents, Payload, SideColumns};

/// SplitMix64 (the core's [`conformance::Rng`], the same on every platform), with the draws the models need.
#[derive(Debug, Clone)]
pub struct Rng(conformance::Rng);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(conformance::Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of four uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        (s - 2.0) * 1.732_050_8
    }

    /// Uniform integer in `lo..hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo).max(1) as u64) as usize
    }

    /// Uniform int8 in `-128..=127` (kernels must also be exact on -128, which the quantiser never emits).
    pub fn i8(&mut self) -> i8 {
        self.0.i8()
    }
}

/// The ALBERT-base shape (H 768, 12 heads, FFN 3072, E 128, 12 passes, 512 positions).
pub fn albert_base_config(num_labels: usize) -> AlbertConfig {
    AlbertConfig {
        vocab_size: 30000,
        embedding_size: 128,
        hidden_size: 768,
        num_attention_heads: 12,
        intermediate_size: 3072,
        num_hidden_layers: 12,
        max_position_embeddings: 512,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: Activation::GeluNew,
        num_labels,
    }
}

/// The f32 values of a random model with config `c`.
pub fn random_weights(c: &AlbertConfig, seed: u64) -> Vec<(TensorKind, Vec<f32>)> {
    let mut rng = Rng::new(seed);
    TensorKind::ALL
        .iter()
        .map(|&kind| {
            let (rows, cols) = kind.expected_shape(c);
            let n = rows * cols;
            let name = kind.name();
            let values: Vec<f32> =
                if name.ends_with("LayerNorm.weight") || name.ends_with("layer_norm.weight") {
                    (0..n).map(|_| 1.0 + 0.2 * rng.normal()).collect()
                } else if !kind.is_matrix() {
                    (0..n).map(|_| 0.1 * rng.normal()).collect()
                } else {
                    // Query/key scaled up so attention is peaked; others ~ 1/sqrt(fan_in) so activations stay O(1).
                    let gain = match kind {
                        TensorKind::QueryWeight | TensorKind::KeyWeight => 3.0,
                        TensorKind::ClassifierWeight => 4.0,
                        TensorKind::WordEmbeddings
                        | TensorKind::PositionEmbeddings
                        | TensorKind::TokenTypeEmbeddings => {
                            return (kind, (0..n).map(|_| rng.normal()).collect())
                        }
                        _ => 1.0,
                    };
                    let std = gain / (cols as f32).sqrt();
                    (0..n).map(|_| std * rng.normal()).collect()
                };
            (kind, values)
        })
        .collect()
}

/// Turns f32 weights into blob payloads: every matrix int8 (per-row scales) when `int8`, else all f32.
pub fn payloads(
    c: &AlbertConfig,
    weights: Vec<(TensorKind, Vec<f32>)>,
    int8: bool,
) -> Vec<(TensorKind, Payload)> {
    weights
        .into_iter()
        .map(|(kind, values)| {
            if int8 && kind.is_matrix() {
                let (rows, cols) = kind.expected_shape(c);
                let mut q = vec![0i8; rows * cols];
                let mut scales = vec![0f32; rows];
                let quant_error = quantize_matrix(&values, cols, &mut q, &mut scales);
                (
                    kind,
                    Payload::I8 {
                        values: q,
                        scales,
                        quant_error,
                        side: SideColumns::default(),
                    },
                )
            } else {
                (kind, Payload::F32(values))
            }
        })
        .collect()
}

/// A complete random model (no tokenizer section) ready for `write_blob`.
pub fn random_model(c: &AlbertConfig, seed: u64, int8: bool) -> BlobContents {
    BlobContents {
        config: *c,
        tensors: payloads(c, random_weights(c, seed), int8),
        labels: (0..c.num_labels).map(|i| format!("LABEL_{i}")).collect(),
        tokenizer: Vec::new(),
    }
}

/// Moves columns `cols` (increasing) of the int8 matrix `kind` into its side columns, with the values they
/// stood for (`q * scale`): the same matrix, for both precisions, up to `f32` rounding. Nothing for an f32 tensor.
pub fn move_to_side(contents: &mut BlobContents, kind: TensorKind, cols: &[u32]) {
    let (_, width) = kind.expected_shape(&contents.config);
    for (k, payload) in &mut contents.tensors {
        if *k != kind {
            continue;
        }
        if let Payload::I8 {
            values,
            scales,
            side,
            ..
        } = payload
        {
            let mut moved = Vec::with_capacity(scales.len() * cols.len());
            for (row, &s) in values.chunks_exact_mut(width).zip(scales.iter()) {
                for &c in cols {
                    moved.push(row[c as usize] as f32 * s);
                    row[c as usize] = 0;
                }
            }
            *side = SideColumns {
                cols: cols.to_vec(),
                values: moved,
            };
        }
    }
}
