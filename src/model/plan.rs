//! Scratch plans: the exact buffers each precision needs for a sequence length, from which come both the arena's
//! size ([`scratch_size`], a `const fn`) and its carving into typed buffers for the forward pass.
//!
//! Each buffer is declared once, in a `scratch_plan!` list (name, element type, element count): the plan's
//! element counts, its byte total, the carving and the scratch struct the layer reads all come from that list, so
//! they cannot drift apart.

use super::arena::{round16, Arena, ALIGN_SLACK};
use super::{attention, embeddings, layer, Precision};
use crate::config::AlbertConfig;
use crate::kernels;
use crate::parallel::Parallel;

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

/// Declares a scratch plan from one list of buffers: `plan` (element counts, `new` from the arguments and the
/// `let`s, `bytes`: each buffer rounded up to 16 bytes, as the arena carves it), and `scratch` (a `&mut` slice per
/// buffer, in the list's order, plus the extra fields that `carve` takes as they are).
macro_rules! scratch_plan {
    (
        $(#[$plan_doc:meta])*
        plan $plan:ident($($arg:ident: $arg_ty:ty),*) { $($setup:stmt;)* }
        $(#[$scratch_doc:meta])*
        scratch $scratch:ident { $($(#[$extra_doc:meta])* $extra:ident: $extra_ty:ty,)* }
        buffers { $($(#[$doc:meta])* $name:ident: $ty:ty = $count:expr,)* }
    ) => {
        $(#[$plan_doc])*
        #[derive(Debug, Clone, Copy)]
        pub(super) struct $plan {
            $($name: usize,)*
        }

        impl $plan {
            /// Element counts of every buffer.
            pub(super) const fn new($($arg: $arg_ty),*) -> Self {
                $($setup)*
                $plan { $($name: $count,)* }
            }

            /// Bytes of every buffer, each rounded up to the arena's 16-byte granule.
            pub(super) const fn bytes(&self) -> usize {
                0 $(+ round16(self.$name * core::mem::size_of::<$ty>()))*
            }

            /// The buffers, carved from `arena` in the list's order (the caller has checked its size against
            /// [`Self::bytes`]).
            pub(super) fn carve<'s>(&self, arena: &mut Arena<'s>, $($extra: $extra_ty),*) -> $scratch<'s> {
                $scratch {
                    $($name: arena.slice::<$ty>(self.$name),)*
                    $($extra,)*
                }
            }
        }

        #[cfg(test)]
        impl $scratch<'_> {
            /// Whether every buffer got the whole element count `plan` asks for.
            pub(super) fn is_complete(&self, plan: &$plan) -> bool {
                true $(&& self.$name.len() == plan.$name)*
            }
        }

        $(#[$scratch_doc])*
        pub(crate) struct $scratch<'s> {
            $($(#[$doc])* pub $name: &'s mut [$ty],)*
            $($(#[$extra_doc])* pub $extra: $extra_ty,)*
        }
    };
}

scratch_plan! {
    /// Element counts of the int8 engine's buffers for `seq` tokens and linear layers over `tile` tokens at a time.
    plan Int8Plan(c: &AlbertConfig, seq: usize, tile: usize) {
        let (e, h, i) = (c.embedding_size, c.hidden_size, c.intermediate_size);
        let d = max(h / max(c.num_attention_heads, 1), 1);
        // Tiles of more than one token: the GEMM's staging, workspace and tables.
        let gemm = tile > 1;
    }
    /// Buffers of the int8 engine. The residual stream, the attention context and the FFN's activation are `f32`;
    /// every linear layer's input is quantised to int8 with one scale per token.
    scratch Int8Scratch {
        /// Tokens per GEMM.
        tile: usize,
        /// Who runs the engine's jobs.
        par: &'s dyn Parallel,
    }
    buffers {
        /// (seq, H): the residual stream.
        hidden: f32 = seq * h,
        /// (seq, H): the hidden state quantised once for Q, K and V, one scale per token.
        xq: i8 = seq * h,
        /// (seq): the scales of `xq`.
        xs: f32 = seq,
        /// (seq, H): the attention context.
        ctx: f32 = seq * h,
        /// (max(H, E, seq, labels)): an `i32` accumulator whose words also hold `f32` values (`as_f32`) where a
        /// step needs a row of them (embeddings, head, one query's scores).
        acc: i32 = max(max(h, e), max(seq, c.num_labels)),
        /// (tokens, max(E, H)): embedding rows, several tokens at a time in the speed arena (one without tiles).
        row: f32 = if gemm { embeddings::EMBED_TOKENS * max(e, h) } else { max(e, h) },
        /// (tile, max(I, H)): int8 rows: a linear layer's quantised input, or one V row on its way into `vt`.
        rows_i8: i8 = tile * max(i, h),
        /// (tile): the scales of `rows_i8`.
        rows_i8_scale: f32 = tile,
        /// (tile, I): the FFN's activation.
        inter: f32 = tile * i,
        /// (tile, H): a linear layer's outputs.
        out: f32 = tile * h,
        /// (tile, H), tiles of more than one token: where threads put their rows of a GEMM, and where attention
        /// jobs take their scratch (`attention_scratch_len` each).
        stage: f32 = if gemm { tile * h } else { 0 },
        /// The GEMM kernels' workspace, tiles of more than one token. The widest GEMM input is max(I, H) columns,
        /// each input one block; the narrowest is H.
        work: u32 = if gemm { kernels::gemm_workspace_words(tile, max(i, h), min(i, h)) } else { 0 },
        /// (`layer_sums_len`): the GEMM's weight sums, tiles of more than one token where the kernel uses them.
        sums: i32 = if gemm && kernels::GEMM_USES_WEIGHT_SUMS { layer::layer_sums_len(c) } else { 0 },
        /// (E, H): `mapping_in` transposed, tiles of more than one token.
        mapping_t: i8 = if gemm { e * h } else { 0 },
        /// (queries, d): query rows in 16 bits, several scored together in tiles of more than one token; also
        /// K's rows, one at a time.
        rows_i16: i16 = if gemm { attention::SOFTMAX_ROWS * d } else { d },
        /// (`attention::keys_len(seq, d)`): one head's K, in the attention kernels' layout.
        k: i16 = kernels::attention::keys_len(seq, d),
        /// (`attention::values_len(seq, d)`): one head's V, likewise.
        vt: i8 = kernels::attention::values_len(seq, d),
        /// (seq): K's per-token scales.
        k_scale: f32 = seq,
        /// (seq): V's per-token scales.
        v_scale: f32 = seq,
        /// (d): the row sums of `vt`.
        v_sum: i32 = d,
        /// (queries, seq): quantised attention probabilities, as many queries as `rows_i16` holds.
        probs: u8 = if gemm { attention::SOFTMAX_ROWS * seq } else { seq },
    }
}

scratch_plan! {
    /// Element counts of the f32 reference's buffers for `seq` tokens.
    plan F32Plan(c: &AlbertConfig, seq: usize) {
        let (e, h, i) = (c.embedding_size, c.hidden_size, c.intermediate_size);
    }
    /// Buffers of the f32 reference.
    scratch F32Scratch {}
    buffers {
        /// (seq, H): the residual stream.
        hidden: f32 = seq * h,
        /// (seq, H): Q, then the dense and FFN output rows.
        q: f32 = seq * h,
        /// (seq, H)
        k: f32 = seq * h,
        /// (seq, H)
        v: f32 = seq * h,
        /// (seq, H): the attention context.
        ctx: f32 = seq * h,
        /// (seq): one query's scores.
        scores: f32 = seq,
        /// (seq, max(I, E)): the embedding rows (seq, E), then the FFN activation (seq, I): every linear layer
        /// takes the whole sequence at once.
        inter: f32 = seq * max(i, e),
        /// (H): the pooled `[CLS]` row.
        row: f32 = h,
        /// (E): one token-type or position embedding row.
        tmp: f32 = e,
    }
}

/// The scratch arena, in bytes, that [`super::classify`] needs for sequences of up to `max_seq` tokens. It includes
/// up to 15 bytes for aligning the arena's start, so an arena of exactly this size works at any address. A
/// `const fn`, so firmware can size a `static` arena at compile time.
pub const fn scratch_size(config: &AlbertConfig, max_seq: usize, precision: Precision) -> usize {
    ALIGN_SLACK
        + match precision {
            Precision::Int8 => Int8Plan::new(config, max_seq, 1).bytes(),
            Precision::F32 => F32Plan::new(config, max_seq).bytes(),
        }
}

/// Most tokens the int8 engine's linear layers process together (see [`scratch_size_for_speed`]).
pub const MAX_TILE: usize = 128;

/// The arena with which [`super::classify`] runs fastest for sequences of up to `max_seq` tokens: the int8 engine
/// then runs every linear layer (Q, K, V, dense, FFN) over up to [`MAX_TILE`] tokens at a time
/// (`kernels::gemm_i8_blocks`: the AVX-512 VNNI multi-token kernel on x86-64 CPUs that have it; elsewhere each
/// chunk of weight rows serves all the tile's tokens while it is in cache), and keeps tables made once per call
/// (the GEMM's weight sums on x86-64, `mapping_in` transposed). Any arena between [`scratch_size`] and this size
/// works; `classify` uses the largest tile that fits. The logits are the same bits whatever the arena. (ALBERT-base,
/// seq 128, x86-64: 2,864,655 B, against 253,839 B for `scratch_size`.) For [`Precision::F32`] this is
/// `scratch_size`.
pub const fn scratch_size_for_speed(
    config: &AlbertConfig,
    max_seq: usize,
    precision: Precision,
) -> usize {
    match precision {
        Precision::Int8 => {
            ALIGN_SLACK + Int8Plan::new(config, max_seq, speed_tile(max_seq)).bytes()
        }
        Precision::F32 => scratch_size(config, max_seq, precision),
    }
}

/// The tile of [`scratch_size_for_speed`]: the whole sequence, up to [`MAX_TILE`] tokens.
const fn speed_tile(max_seq: usize) -> usize {
    if max_seq < MAX_TILE {
        max(max_seq, 1)
    } else {
        MAX_TILE
    }
}

/// The largest tile (tokens per GEMM, `1..=min(seq, MAX_TILE)`) whose int8 plan fits an arena of `arena_len`
/// bytes.
pub(super) fn int8_tile(c: &AlbertConfig, seq: usize, arena_len: usize) -> usize {
    let mut tile = 1;
    while tile < MAX_TILE.min(seq)
        && ALIGN_SLACK + Int8Plan::new(c, seq, tile + 1).bytes() <= arena_len
    {
        tile += 1;
    }
    tile
}
