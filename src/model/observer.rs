//! Watching the f32 reference forward pass: what each linear layer is fed, for offline calibration.
//!
//! The converter's calibrated rounding (GPTQ, see `QUANTIZATION.md`) needs, for every weight matrix, the inputs
//! that matrix sees in the fp32 model. [`classify_observed`](super::classify_observed) runs the
//! [`Precision::F32`](super::Precision::F32) forward pass and hands each linear layer's input row to an
//! [`Observer`] before the product is taken. [`classify`](super::classify) passes [`NoObserver`], whose empty
//! inlined method compiles away, so the plain forward pass and its results are unchanged.

/// The linear layers of the model, by the checkpoint's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// `encoder.embedding_hidden_mapping_in`: input is the LayerNormed embedding (E).
    MappingIn,
    /// `layer.attention.query`: input is the hidden row (H).
    Query,
    /// `layer.attention.key`: the same hidden row as [`Site::Query`] (H).
    Key,
    /// `layer.attention.value`: the same hidden row as [`Site::Query`] (H).
    Value,
    /// `layer.attention.dense`: input is the attention context row, all heads (H).
    Dense,
    /// `layer.ffn`: input is the hidden row after the attention block (H).
    Ffn,
    /// `layer.ffn_output`: input is the activated intermediate row (I).
    FfnOutput,
    /// `pooler`: input is the final `[CLS]` row (H).
    Pooler,
    /// `classifier`: input is the pooled row, after tanh (H).
    Classifier,
}

impl Site {
    /// Every site, in forward order.
    pub const ALL: [Site; 9] = [
        Site::MappingIn,
        Site::Query,
        Site::Key,
        Site::Value,
        Site::Dense,
        Site::Ffn,
        Site::FfnOutput,
        Site::Pooler,
        Site::Classifier,
    ];

    /// Whether the site belongs to the ONE shared layer (applied `num_hidden_layers` times).
    pub const fn is_shared(self) -> bool {
        !matches!(self, Site::MappingIn | Site::Pooler | Site::Classifier)
    }
}

/// Receives the input row of every linear layer in the f32 forward pass.
pub trait Observer {
    /// `x` is one token's input to `site` (for the head, the `[CLS]` row only). `pass` is the application of the
    /// shared layer, `0..num_hidden_layers`; it is 0 for the embeddings' and the head's sites. Calls come in
    /// forward order; Q, K and V are reported separately though their input is the same row.
    fn linear_input(&mut self, site: Site, pass: usize, x: &[f32]);
}

/// The observer that watches nothing (what [`classify`](super::classify) uses).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn linear_input(&mut self, _site: Site, _pass: usize, _x: &[f32]) {}
}

impl<O: Observer + ?Sized> Observer for &mut O {
    #[inline(always)]
    fn linear_input(&mut self, site: Site, pass: usize, x: &[f32]) {
        (**self).linear_input(site, pass, x)
    }
}
