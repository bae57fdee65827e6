//! The ALBERT forward pass: embeddings, ONE shared transformer layer applied `num_hidden_layers` times, pooler
//! and classifier. Two precisions share the structure:
//!
//! * [`Precision::Int8`], the engine (numeric contract 2): int8 weights; every linear layer's input quantised to
//!   int8 with one scale per token, its calibrated outlier channels kept out in `f32` side columns; `i32`
//!   accumulation; the residual stream, LayerNorm, softmax and GELU in `f32`; Q and K in 16 bits, attention
//!   probabilities u8 and V int8 with exact integer products. Streamed: attention head by head, the linear layers
//!   one token, or one tile of tokens, at a time (see `QUANTIZATION.md`).
//! * [`Precision::F32`], the host reference: `f32` activations, weights dequantised on the fly when the blob is
//!   int8. It is the yardstick the converter calibrates and tests measure against.
//!
//! No allocation: the caller passes one scratch arena of at least [`scratch_size`] bytes.
//!
//! [`classify_observed`] runs the f32 reference and shows an [`Observer`] every linear layer's input: the
//! converter's calibration hook.

mod arena;
mod embeddings;
mod head;
mod layer;
mod linear;
mod observer;

use crate::config::AlbertConfig;
use crate::error::Error;
use crate::format::{MatrixData, Model};
use crate::kernels;
use crate::parallel::{Parallel, Sequential};
use arena::{round16, Arena, ALIGN_SLACK};

pub use embeddings::Embeddings;
pub use head::Head;
pub use layer::Layer;
pub use observer::{NoObserver, Observer, Site};

/// Which arithmetic the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The host reference: `f32` activations.
    F32,
    /// The engine: int8 weights and activations, `i32` accumulation. Needs an int8 blob.
    Int8,
}

/// One input sequence, already tokenized (`[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]`).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Token ids, each `< vocab_size`; between 1 and `max_position_embeddings` of them.
    pub input_ids: &'a [u32],
    /// Segment ids (0 for A, 1 for B), each `< type_vocab_size`; empty means all 0.
    pub token_type_ids: &'a [u32],
    /// 1 for real tokens, 0 for padding; empty means all 1. Padding only affects which keys attention sees.
    pub attention_mask: &'a [u32],
}

impl<'a> Inputs<'a> {
    /// A single unpadded sequence with all token types 0.
    pub fn ids(input_ids: &'a [u32]) -> Self {
        Inputs {
            input_ids,
            token_type_ids: &[],
            attention_mask: &[],
        }
    }

    fn token_type(&self, t: usize) -> usize {
        self.token_type_ids.get(t).map_or(0, |&v| v as usize)
    }

    fn attends(&self, t: usize) -> bool {
        self.attention_mask.get(t).is_none_or(|&m| m != 0)
    }

    /// Whether every token attends (no padding): the softmax then runs without a mask, which vectorises.
    fn all_attend(&self) -> bool {
        self.attention_mask.iter().all(|&m| m != 0)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Scratch plans: the exact buffers each precision needs, shared by `scratch_size` and the forward pass
// ---------------------------------------------------------------------------------------------------------------

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Element counts of the int8 engine's buffers for `seq` tokens. The residual stream, the attention context and
/// the FFN's activation are `f32`; each linear layer's input is quantised to int8 with one `f32` scale per token.
#[derive(Debug, Clone, Copy)]
struct Int8Plan {
    hidden: usize, // (seq, H) f32: the residual stream; (seq, H) f32 the attention context; (seq, H) i8 the QKV input
    seq_scale: usize, // (seq) f32: the QKV input's scales
    acc: usize,    // (max(H, E, seq, labels)) i32, reused in place as f32
    row: usize,    // (tokens, max(E, H)) f32: embedding rows (one token at a time without tiles)
    qrow: usize,   // (tile, max(I, H)) i8: a linear layer's quantised input
    qrow_scale: usize, // (tile) f32
    inter: usize,  // (tile, I) f32: the FFN's activation
    out: usize,    // (tile, H) i32 / f32
    stage: usize, // (tile, H) f32: threads' outputs for rows of a GEMM (tiles of more than one token)
    work: usize,  // u32 words: the GEMM kernels' workspace (tiles of more than one token only)
    sums: usize, // i32: the GEMM's weight sums (tiles of more than one token, where the kernel uses them)
    mapping_t: usize, // (E, H) i8: `mapping_in` transposed (tiles of more than one token)
    keys: usize, // (seq, d) i16, in the attention kernels' layout (`attention::keys_len`), one head at a time
    values: usize, // (seq, d) i8, likewise (`attention::values_len`)
    q: usize,    // (queries, d) i16: query rows quantised together (K's rows one at a time)
    v_sum: usize, // (d) i32: the row sums of V transposed
    head_scale: usize, // (seq) f32, for each of K and V
    probs: usize, // (queries, seq) u8: quantised attention probabilities, as many queries as `q`
}

impl Int8Plan {
    const fn new(c: &AlbertConfig, seq: usize, tile: usize) -> Self {
        let (e, h, i) = (c.embedding_size, c.hidden_size, c.intermediate_size);
        let d = max(h / max(c.num_attention_heads, 1), 1);
        Int8Plan {
            hidden: seq * h,
            seq_scale: seq,
            acc: max(max(h, e), max(seq, c.num_labels)),
            // The speed arena embeds several tokens at a time.
            row: if tile > 1 {
                embeddings::EMBED_TOKENS * max(e, h)
            } else {
                max(e, h)
            },
            qrow: tile * max(i, h),
            qrow_scale: tile,
            inter: tile * i,
            out: tile * h,
            stage: if tile > 1 { tile * h } else { 0 },
            // The widest GEMM input is max(I, H) columns, each input one block; the narrowest is H.
            work: if tile > 1 {
                kernels::gemm_workspace_words(tile, max(i, h), min(i, h))
            } else {
                0
            },
            sums: if tile > 1 && kernels::GEMM_USES_WEIGHT_SUMS {
                layer::layer_sums_len(c)
            } else {
                0
            },
            mapping_t: if tile > 1 { e * h } else { 0 },
            keys: kernels::attention::keys_len(seq, d),
            values: kernels::attention::values_len(seq, d),
            // Tiles of several tokens score up to eight queries together.
            q: if tile > 1 { layer::SOFTMAX_ROWS * d } else { d },
            v_sum: d,
            head_scale: seq,
            probs: if tile > 1 {
                layer::SOFTMAX_ROWS * seq
            } else {
                seq
            },
        }
    }

    const fn bytes(&self) -> usize {
        2 * round16(4 * self.hidden)
            + round16(self.hidden)
            + round16(4 * self.seq_scale)
            + round16(4 * self.acc)
            + round16(4 * self.row)
            + round16(self.qrow)
            + round16(4 * self.qrow_scale)
            + round16(4 * self.inter)
            + round16(4 * self.out)
            + round16(4 * self.stage)
            + round16(4 * self.work)
            + round16(4 * self.sums)
            + round16(self.mapping_t)
            + round16(2 * self.keys)
            + round16(self.values)
            + round16(2 * self.q)
            + round16(4 * self.v_sum)
            + 2 * round16(4 * self.head_scale)
            + round16(self.probs)
    }
}

/// Element counts of the f32 reference's buffers for `seq` tokens.
#[derive(Debug, Clone, Copy)]
struct F32Plan {
    seq_hidden: usize, // (seq, H) f32, five of them: hidden, Q, K, V, context
    scores: usize,     // (seq) f32
    inter: usize,      // (I) f32
    row: usize,        // (max(E, H)) f32, two of them
}

impl F32Plan {
    const fn new(c: &AlbertConfig, seq: usize) -> Self {
        F32Plan {
            seq_hidden: seq * c.hidden_size,
            scores: seq,
            inter: c.intermediate_size,
            row: max(c.embedding_size, c.hidden_size),
        }
    }

    const fn bytes(&self) -> usize {
        5 * round16(4 * self.seq_hidden)
            + round16(4 * self.scores)
            + round16(4 * self.inter)
            + 2 * round16(4 * self.row)
    }
}

/// The scratch arena, in bytes, that [`classify`] needs for sequences of up to `max_seq` tokens. It includes up to
/// 15 bytes for aligning the arena's start, so an arena of exactly this size works at any address. A `const fn`,
/// so firmware can size a `static` arena at compile time.
pub const fn scratch_size(config: &AlbertConfig, max_seq: usize, precision: Precision) -> usize {
    ALIGN_SLACK
        + match precision {
            Precision::Int8 => Int8Plan::new(config, max_seq, 1).bytes(),
            Precision::F32 => F32Plan::new(config, max_seq).bytes(),
        }
}

/// Most tokens the int8 engine's linear layers process together (see [`scratch_size_for_speed`]).
pub const MAX_TILE: usize = 128;

/// The arena with which [`classify`] runs fastest for sequences of up to `max_seq` tokens: the int8 engine then
/// runs every linear layer (Q, K, V, dense, FFN) over up to [`MAX_TILE`] tokens at a time (`kernels::gemm_i8_blocks`:
/// the AVX-512 VNNI multi-token kernel on x86-64 CPUs that have it; elsewhere each chunk of weight rows serves all
/// the tile's tokens while it is in cache), and keeps tables made once per call (the GEMM's weight sums on x86-64,
/// `mapping_in` transposed). Any arena between [`scratch_size`] and this size works; `classify` uses the largest
/// tile that fits. The logits are the same bits whatever the arena. (ALBERT-base, seq 128, x86-64: 2,864,655 B,
/// against 253,839 B for `scratch_size`.) For [`Precision::F32`] this is `scratch_size`.
pub const fn scratch_size_for_speed(
    config: &AlbertConfig,
    max_seq: usize,
    precision: Precision,
) -> usize {
    match precision {
        Precision::Int8 => {
            ALIGN_SLACK
                + Int8Plan::new(
                    config,
                    max_seq,
                    if max_seq < MAX_TILE {
                        max(max_seq, 1)
                    } else {
                        MAX_TILE
                    },
                )
                .bytes()
        }
        Precision::F32 => scratch_size(config, max_seq, precision),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The forward pass
// ---------------------------------------------------------------------------------------------------------------

/// Whether every weight matrix of `model` is int8 (what [`Precision::Int8`] needs).
pub fn is_int8(model: &Model) -> bool {
    let w = model.weights();
    let l = &w.layer;
    [
        &w.mapping_in_weight,
        &l.query_weight,
        &l.key_weight,
        &l.value_weight,
        &l.attention_dense_weight,
        &l.ffn_weight,
        &l.ffn_output_weight,
        &w.pooler_weight,
        &w.classifier_weight,
    ]
    .iter()
    .all(|m| matches!(m.data, MatrixData::I8 { .. }))
}

fn check_inputs(c: &AlbertConfig, inputs: &Inputs) -> Result<usize, Error> {
    let seq = inputs.input_ids.len();
    if seq == 0 {
        return Err(Error::BadInput("empty input_ids"));
    }
    if seq > c.max_position_embeddings {
        return Err(Error::SequenceTooLong {
            len: seq,
            max: c.max_position_embeddings,
        });
    }
    if !inputs.token_type_ids.is_empty() && inputs.token_type_ids.len() != seq {
        return Err(Error::BadInput(
            "token_type_ids length differs from input_ids",
        ));
    }
    if !inputs.attention_mask.is_empty() && inputs.attention_mask.len() != seq {
        return Err(Error::BadInput(
            "attention_mask length differs from input_ids",
        ));
    }
    if inputs
        .input_ids
        .iter()
        .any(|&id| id as usize >= c.vocab_size)
    {
        return Err(Error::BadInput("token id outside the vocabulary"));
    }
    if inputs
        .token_type_ids
        .iter()
        .any(|&t| t as usize >= c.type_vocab_size)
    {
        return Err(Error::BadInput("token type id outside type_vocab_size"));
    }
    if inputs.attention_mask.iter().any(|&m| m > 1) {
        return Err(Error::BadInput("attention_mask values must be 0 or 1"));
    }
    Ok(seq)
}

/// Runs the classifier on one sequence and writes `num_labels` logits to `logits[..num_labels]`.
///
/// The arena must hold at least `scratch_size(model.config(), inputs.input_ids.len(), precision)` bytes; its
/// contents on entry do not matter. Results are deterministic: the same blob and inputs give the same bits on
/// every target and in debug and release builds.
pub fn classify(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
) -> Result<(), Error> {
    classify_parallel(model, precision, inputs, arena, logits, &Sequential)
}

/// [`classify`] with the int8 engine's work (linear layers, attention rows, GELU, LayerNorm) shared out between
/// threads by `parallel` (see [`crate::parallel`]): the same bits as [`classify`], for any `parallel`.
/// [`Precision::F32`] ignores it.
///
/// ```
/// # #[cfg(feature = "std")]
/// # fn run(model: &albert_edge::Model, ids: &[u32]) -> Result<(), albert_edge::Error> {
/// use albert_edge::model::{classify_parallel, scratch_size_for_speed, Inputs, Precision};
/// use albert_edge::parallel::Threads;
///
/// let threads = Threads::new(4); // once, for every classification
/// let mut arena = vec![0u8; scratch_size_for_speed(model.config(), ids.len(), Precision::Int8)];
/// let mut logits = [0f32; 2];
/// classify_parallel(model, Precision::Int8, &Inputs::ids(ids), &mut arena, &mut logits, &threads)?;
/// # Ok(()) }
/// ```
pub fn classify_parallel(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    parallel: &dyn Parallel,
) -> Result<(), Error> {
    forward(
        model,
        precision,
        inputs,
        arena,
        logits,
        &mut NoObserver,
        parallel,
        false,
    )
}

/// [`classify`] with [`Precision::F32`], showing `observer` the input row of every linear layer as it is computed
/// (see [`Observer`]). The logits are the same bits as `classify`'s. Host-side calibration; the int8 engine has no
/// such hook. The observer is a trait object so that this forward pass is compiled (and optimised) here, once,
/// and not in the calling crate; [`classify`] itself uses the statically empty [`NoObserver`].
pub fn classify_observed(
    model: &Model,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    mut observer: &mut dyn Observer,
) -> Result<(), Error> {
    forward(
        model,
        Precision::F32,
        inputs,
        arena,
        logits,
        &mut observer,
        &Sequential,
        false,
    )
}

/// The forward pass. `full_last_layer` makes the int8 engine's last layer application compute every token (as the
/// others do) instead of `[CLS]` alone: the same logits, bit for bit, which a test checks.
#[allow(clippy::too_many_arguments)]
fn forward(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    arena: &mut [u8],
    logits: &mut [f32],
    obs: &mut impl Observer,
    par: &dyn Parallel,
    full_last_layer: bool,
) -> Result<(), Error> {
    let c = model.config();
    let seq = check_inputs(c, inputs)?;
    if logits.len() < c.num_labels {
        return Err(Error::OutputTooSmall {
            needed: c.num_labels,
            got: logits.len(),
        });
    }
    let needed = scratch_size(c, seq, precision);
    if arena.len() < needed {
        return Err(Error::ArenaTooSmall {
            needed,
            got: arena.len(),
        });
    }
    let logits = &mut logits[..c.num_labels];
    let embeddings = Embeddings::load(model);
    let layer = Layer::load(model);
    let head = Head::load(model);
    let arena_len = arena.len();
    let mut a = Arena::new(arena);
    match precision {
        Precision::F32 => {
            let p = F32Plan::new(c, seq);
            let s = layer::F32Scratch {
                hidden: a.f32s(p.seq_hidden),
                q: a.f32s(p.seq_hidden),
                k: a.f32s(p.seq_hidden),
                v: a.f32s(p.seq_hidden),
                ctx: a.f32s(p.seq_hidden),
                scores: a.f32s(p.scores),
                inter: a.f32s(p.inter),
                row: a.f32s(p.row),
                row2: a.f32s(p.row),
            };
            embeddings.forward_f32(inputs, s.hidden, s.row, s.row2, obs);
            let mut s = s;
            for pass in 0..c.num_hidden_layers {
                layer.forward_f32(inputs, &mut s, pass, obs);
            }
            head.forward_f32(&s.hidden[..c.hidden_size], s.row, logits, obs);
        }
        Precision::Int8 => {
            if !is_int8(model) {
                return Err(Error::BadInput(
                    "int8 precision needs a blob converted with --weights int8",
                ));
            }
            // A larger arena buys speed: the linear layers then run `tile` tokens at a time.
            let mut tile = 1;
            while tile < MAX_TILE.min(seq)
                && ALIGN_SLACK + Int8Plan::new(c, seq, tile + 1).bytes() <= arena_len
            {
                tile += 1;
            }
            let p = Int8Plan::new(c, seq, tile);
            let mut s = layer::Int8Scratch {
                hidden: a.f32s(p.hidden),
                xq: a.i8s(p.hidden),
                xs: a.f32s(p.seq_scale),
                ctx: a.f32s(p.hidden),
                acc: a.i32s(p.acc),
                row: a.f32s(p.row),
                qrow: a.i8s(p.qrow),
                qrow_scale: a.f32s(p.qrow_scale),
                inter: a.f32s(p.inter),
                out: a.i32s(p.out),
                stage: a.f32s(p.stage),
                work: a.u32s(p.work),
                sums: a.i32s(p.sums),
                mapping_t: a.i8s(p.mapping_t),
                tile,
                q: a.i16s(p.q),
                k: a.i16s(p.keys),
                vt: a.i8s(p.values),
                k_scale: a.f32s(p.head_scale),
                v_scale: a.f32s(p.head_scale),
                v_sum: a.i32s(p.v_sum),
                probs: a.u8s(p.probs),
                par,
            };
            embeddings.prepare_mapping_t(s.mapping_t);
            embeddings.forward_i8(inputs, &mut s);
            layer.prepare_sums(s.sums);
            // The pooler reads `[CLS]` only: the last application computes that token's output alone.
            for pass in 0..c.num_hidden_layers {
                let last = pass + 1 == c.num_hidden_layers;
                let outputs = if last && !full_last_layer { 1 } else { seq };
                layer.forward_i8(inputs, &mut s, outputs);
            }
            head.forward_i8(&s.hidden[..c.hidden_size], s.acc, s.row, s.qrow, logits);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// `include_bytes!` only guarantees byte alignment; the blob parser wants 16.
    #[repr(C, align(16))]
    struct Aligned<T: ?Sized>(T);

    /// The shipped MCU model: real trained int8 weights (H 128, 4 heads, I 192, 4 applications of the layer).
    static MCU: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/sst2-albert-mcu.blob"));

    /// xorshift64*: deterministic token ids and masks without a dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    #[cfg_attr(miri, ignore)] // a whole ALBERT forward pass per case: hours under Miri
    fn last_layer_for_cls_only_gives_the_same_bits_as_every_token() {
        let model = Model::from_bytes(&MCU.0).unwrap();
        let c = *model.config();
        assert!(is_int8(&model));
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let max = c.max_position_embeddings;
        let mut arena = std::vec![0u8; scratch_size_for_speed(&c, max, Precision::Int8)];
        for seq in [1, 2, 3, 5, 17, 32, 33, 64, max] {
            let ids: Vec<u32> = (0..seq)
                .map(|_| (next(&mut state) % c.vocab_size as u64) as u32)
                .collect();
            // A padded tail on odd lengths: the masked keys must not change the answer either way.
            let pad = if seq % 2 == 1 { seq / 3 } else { 0 };
            let mask: Vec<u32> = (0..seq).map(|t| u32::from(t < seq - pad)).collect();
            let types = std::vec![0u32; seq];
            let inputs = Inputs {
                input_ids: &ids,
                attention_mask: &mask,
                token_type_ids: &types,
            };
            // The smallest arena (one token per GEMM) and the fastest (the whole sequence per GEMM).
            let sizes = [
                scratch_size(&c, seq, Precision::Int8),
                scratch_size_for_speed(&c, seq, Precision::Int8),
            ];
            for size in sizes {
                let mut run = |full: bool| {
                    let mut logits = [0f32; 8];
                    let arena = &mut arena[..size];
                    forward(
                        &model,
                        Precision::Int8,
                        &inputs,
                        arena,
                        &mut logits,
                        &mut NoObserver,
                        &Sequential,
                        full,
                    )
                    .unwrap();
                    logits.map(f32::to_bits)
                };
                let (pruned, full) = (run(false), run(true));
                assert_eq!(pruned, full, "seq {seq}, arena {size} B");
                assert!(pruned[..c.num_labels]
                    .iter()
                    .all(|&b| f32::from_bits(b).is_finite()));
            }
        }
    }

    /// Runs the jobs on scoped threads, last first, and leaves out every `skip`-th (the engine must run those).
    struct Scrambled {
        threads: usize,
        skip: usize,
    }

    impl Parallel for Scrambled {
        fn threads(&self) -> usize {
            self.threads
        }

        fn run(&self, jobs: &mut [crate::parallel::Job<'_>]) {
            std::thread::scope(|scope| {
                for (k, job) in jobs.iter_mut().enumerate().rev() {
                    if self.skip == 0 || k % self.skip != 0 {
                        scope.spawn(move || job.run());
                    }
                }
            });
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // whole forward passes, on threads
    fn threads_give_the_same_bits() {
        let model = Model::from_bytes(&MCU.0).unwrap();
        let c = *model.config();
        let max = c.max_position_embeddings;
        let mut arena = std::vec![0u8; scratch_size_for_speed(&c, max, Precision::Int8)];
        let mut state = 0x0123_4567_89ab_cdef;
        #[cfg(feature = "std")]
        let pools = [
            crate::parallel::Threads::new(2),
            crate::parallel::Threads::new(5),
        ];
        for seq in [1, 4, 31, 32, 33, 65, 100, max] {
            let ids: Vec<u32> = (0..seq)
                .map(|_| (next(&mut state) % c.vocab_size as u64) as u32)
                .collect();
            let inputs = Inputs::ids(&ids);
            for size in [
                scratch_size(&c, seq, Precision::Int8),
                scratch_size_for_speed(&c, seq, Precision::Int8),
            ] {
                let arena = &mut arena[..size];
                let mut expected = [0f32; 8];
                classify(&model, Precision::Int8, &inputs, arena, &mut expected).unwrap();
                #[cfg_attr(not(feature = "std"), allow(unused_mut))]
                let mut parallels: Vec<&dyn Parallel> = std::vec![
                    &Scrambled {
                        threads: 2,
                        skip: 0
                    },
                    &Scrambled {
                        threads: 3,
                        skip: 2
                    },
                    &Scrambled {
                        threads: 16,
                        skip: 5
                    },
                    &Scrambled {
                        threads: 99,
                        skip: 0
                    },
                ];
                #[cfg(feature = "std")]
                parallels.extend(pools.iter().map(|p| p as &dyn Parallel));
                for (i, par) in parallels.into_iter().enumerate() {
                    let mut got = [0f32; 8];
                    classify_parallel(&model, Precision::Int8, &inputs, arena, &mut got, par)
                        .unwrap();
                    let bits = |l: [f32; 8]| l.map(f32::to_bits);
                    assert_eq!(
                        bits(got),
                        bits(expected),
                        "seq {seq}, arena {size} B, parallel {i}"
                    );
                }
            }
        }
    }
}
