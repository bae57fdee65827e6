//! Compute kernels. `reference` is the specification; every optimised variant must agree with it exactly (integer
//! kernels bit for bit).
//!
//! # Backends and the one place that picks them
//!
//! Each backend is one file that exports the same kernels as an implementation of [`Kernels`]:
//! [`reference`](mod@reference) (plain loops, every method's default), `x86` (AVX2 and AVX-512 VNNI), `neon`
//! (AArch64, with or without `dotprod`, and 32-bit ARM with `arm-neon`), `dsp` (Cortex-M `arm-dsp`) and `helium`
//! (Cortex-M `arm-helium`). A backend overrides the methods it has a kernel for; the others stay the reference.
//! The row operations that `quant` and the reference's LayerNorm and softmax call directly have their vector
//! forms beside them: `neon_rows` (AArch64) and `x86_rows` (AVX-512F, AVX2).
//!
//! [`Active`] is the backend this build runs, registered once per target below (at build time: the target and
//! its features). Within a backend, the instruction-set level is [`simd::isa`]'s: fixed at build time without
//! `std`, detected once at run time under `std` on x86-64 (AVX2, AVX-512, AVX-512 VNNI). The public functions
//! of this module call [`Active`]; code outside `kernels/` never tests CPU features itself, and runs its own
//! element-wise loops for the detected level through [`simd::vectorized`].
//!
//! Adding a kernel for a new target takes:
//! 1. one file, `kernels/<target>.rs`, with a unit struct and `impl Kernels` overriding what it speeds up;
//! 2. one registration: its `mod` line and its `pub type Active` line below (plus its [`simd::Isa`] level where
//!    the level is new);
//! 3. the existing test harness: a `gemv_i8_i32_frame_tests!` line in `kernels/tests.rs`, which checks it bit for
//!    bit against the reference (the `dispatch` harness already runs whatever [`Active`] is).
//!
//! The multi-token GEMM's prepared activations ([`GemmInput`]: packed for AVX-512 VNNI on x86-64, for `sdot` on
//! AArch64) are the one part still chosen with `cfg` in this file, since their layout is part of the type; the
//! x86-64 choice among them is [`simd::isa`]'s as well.

pub mod attention;
#[cfg(any(
    target_arch = "aarch64",
    all(
        target_arch = "arm",
        any(feature = "arm-neon", feature = "arm-dsp", feature = "arm-helium")
    )
))]
mod blocked;
pub mod conformance;
#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
pub mod dsp;
#[cfg(all(target_arch = "arm", feature = "arm-helium"))]
pub mod helium;
#[cfg(any(
    target_arch = "aarch64",
    all(target_arch = "arm", feature = "arm-neon")
))]
pub mod neon;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon_rows;
pub mod reference;
pub mod simd;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
pub mod x86;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_rows;

pub use reference::{dot_f32, gemv_u8_i8_i32, layer_norm_f32, masked_softmax_f32};

// ---------------------------------------------------------------------------------------------------------------
// The backend registry
// ---------------------------------------------------------------------------------------------------------------

/// The backend this build runs (see the module documentation). On 32-bit ARM with several `arm-*` features, the
/// first of Helium, NEON and DSP.
#[cfg(target_arch = "x86_64")]
pub type Active = x86::X86;
/// The backend this build runs (see the module documentation).
#[cfg(target_arch = "aarch64")]
pub type Active = neon::Neon;
/// The backend this build runs (see the module documentation).
#[cfg(all(target_arch = "arm", feature = "arm-helium"))]
pub type Active = helium::Helium;
/// The backend this build runs (see the module documentation).
#[cfg(all(target_arch = "arm", feature = "arm-neon", not(feature = "arm-helium")))]
pub type Active = neon::Neon;
/// The backend this build runs (see the module documentation).
#[cfg(all(
    target_arch = "arm",
    feature = "arm-dsp",
    not(any(feature = "arm-helium", feature = "arm-neon"))
))]
pub type Active = dsp::Dsp;
/// The backend this build runs (see the module documentation): the reference.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    all(
        target_arch = "arm",
        any(feature = "arm-neon", feature = "arm-dsp", feature = "arm-helium")
    )
)))]
pub type Active = reference::Reference;

/// The kernels a backend provides, under the same names on every target. Each default is the reference (or, for
/// the partial kernels, "nothing done"); a backend overrides what it has a faster kernel for. Every method must
/// give the reference's results bit for bit.
pub trait Kernels {
    /// [`reference::gemv_i8_i32`].
    #[inline(always)]
    fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
        reference::gemv_i8_i32(w, cols, x, out)
    }

    /// [`reference::gemv_i8_blocks_f32`].
    #[inline(always)]
    fn gemv_i8_blocks(
        w: &[i8],
        cols: usize,
        x: &[i8],
        block: usize,
        x_scales: &[f32],
        out: &mut [f32],
    ) {
        reference::gemv_i8_blocks_f32(w, cols, x, block, x_scales, out)
    }

    /// [`reference::gemv_i16_i32`].
    #[inline(always)]
    fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
        reference::gemv_i16_i32(w, cols, x, out)
    }

    /// [`reference::gemm_i16_i32`].
    #[inline(always)]
    fn gemm_i16_i32(
        w: &[i16],
        cols: usize,
        rows: usize,
        x: &[i16],
        queries: usize,
        out: &mut [i32],
        stride: usize,
    ) {
        reference::gemm_i16_i32(w, cols, rows, x, queries, out, stride)
    }

    /// [`reference::gemm_i8_i32`] for `w` holding no -128, for the `queries` whole rows of `x`: by default
    /// [`Self::gemv_i8_i32`] query by query.
    #[inline(always)]
    fn gemm_i8_i32(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        queries: usize,
        out: &mut [i32],
        stride: usize,
    ) {
        for (i, o) in out.chunks_mut(stride.max(1)).take(queries).enumerate() {
            let xi = x.get(i.saturating_mul(cols)..).unwrap_or(&[]);
            let n = rows.min(o.len());
            Self::gemv_i8_i32(w, cols, &xi[..cols.min(xi.len())], &mut o[..n]);
        }
    }

    /// [`reference::gemm_t_i8_f32`] for a leading part of the tokens and outputs: returns `(tokens, outputs)`
    /// done, outputs `0..outputs` of tokens `0..tokens` ([`gemm_t_i8_f32`] does the rest). By default none.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn gemm_t_i8_f32_part(
        wt: &[i8],
        h: usize,
        x: &[f32],
        e: usize,
        tokens: usize,
        scales: &[f32],
        bias: &[f32],
        y: &mut [f32],
    ) -> (usize, usize) {
        let _ = (wt, h, x, e, tokens, scales, bias, y);
        (0, 0)
    }

    /// [`reference::layer_norm_f32`] on each `cols`-wide row of `x` (a trailing partial row is left alone).
    #[inline(always)]
    fn layer_norm_rows(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) {
        if cols == 0 {
            return;
        }
        for row in x.chunks_exact_mut(cols) {
            reference::layer_norm_f32(row, gamma, beta, eps);
        }
    }

    /// The residual add and LayerNorm of whole `cols`-wide rows: for each row of both, `y = LayerNorm(y + x)`
    /// (`y` from `sublayer`, `x` from `hidden`: the sum `y + x` element by element, then
    /// [`reference::layer_norm_f32`]) stored into both. [`add_layer_norm_rows_plain`] by default.
    #[inline(always)]
    fn add_layer_norm_rows(
        sublayer: &mut [f32],
        hidden: &mut [f32],
        cols: usize,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) {
        add_layer_norm_rows_plain(sublayer, hidden, cols, gamma, beta, eps)
    }

    /// Tiles of several tokens for [`gemm_i8_blocks`]'s row chunks: `out[t * stride + r]` for `r < rows` and the
    /// leading tokens `t` it returns the number of, equal to [`Self::gemv_i8_blocks`] token by token. By default
    /// none.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn gemm_tiles(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        block: usize,
        scales: &[f32],
        tokens: usize,
        out: &mut [f32],
        stride: usize,
    ) -> usize {
        let _ = (w, cols, rows, x, block, scales, tokens, out, stride);
        0
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The kernels the model calls
// ---------------------------------------------------------------------------------------------------------------

/// 16-bit matrix-vector product with wrapping `i32` accumulation (the attention scores): always equal to
/// [`reference::gemv_i16_i32`]; NEON on AArch64, elsewhere the reference.
#[inline]
pub fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
    Active::gemv_i16_i32(w, cols, x, out)
}

/// `mapping_in` on `tokens` `f32` embedding rows with its int8 values transposed: always equal to
/// [`reference::gemm_t_i8_f32`]; on AArch64 and x86-64 four tokens by sixteen (AArch64), 64 (AVX-512F) or 32
/// (AVX2) outputs at a time held in registers (each weight vector converted to `f32` once for the four), the rest
/// by the reference.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn gemm_t_i8_f32(
    wt: &[i8],
    h: usize,
    x: &[f32],
    e: usize,
    tokens: usize,
    scales: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let (done_tokens, done) = Active::gemm_t_i8_f32_part(wt, h, x, e, tokens, scales, bias, y);
    // The outputs `done..h` of the tokens the vector form covered, then the other tokens whole.
    if done < h {
        let (scales, bias) = (
            scales.get(done..).unwrap_or(&[]),
            bias.get(done..).unwrap_or(&[]),
        );
        let wt = wt.get(done..).unwrap_or(&[]);
        for (x, y) in x
            .chunks_exact(e.max(1))
            .zip(y.chunks_exact_mut(h.max(1)))
            .take(done_tokens)
        {
            reference::gemv_t_i8_f32(wt, h, &x[..e], scales, bias, &mut y[done..]);
        }
    }
    let (x, y) = (
        x.get(done_tokens * e..).unwrap_or(&[]),
        y.get_mut(done_tokens * h..).unwrap_or(&mut []),
    );
    reference::gemm_t_i8_f32(wt, h, x, e, tokens - done_tokens, scales, bias, y);
}

/// [`gemv_i16_i32`] for several rows of `x` at once (the attention's queries against one head's keys): always
/// equal to [`reference::gemm_i16_i32`]; NEON tiles of four queries by four keys on AArch64, elsewhere the
/// reference.
#[inline]
pub fn gemm_i16_i32(
    w: &[i16],
    cols: usize,
    rows: usize,
    x: &[i16],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    Active::gemm_i16_i32(w, cols, rows, x, queries, out, stride)
}

/// int8 matrix-vector product with `i32` accumulation: `out[r] = sum_c w[r * cols + c] * x[c]`.
/// [`Active`]'s kernel; always equal to [`reference::gemv_i8_i32`].
#[inline]
pub fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    Active::gemv_i8_i32(w, cols, x, out)
}

/// Block-scaled int8 GEMV into `f32` (the engine's every linear layer): dispatches like [`gemv_i8_i32`]; always
/// equal, bit for bit, to [`reference::gemv_i8_blocks_f32`].
#[inline]
pub fn gemv_i8_blocks(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    out: &mut [f32],
) {
    Active::gemv_i8_blocks(w, cols, x, block, x_scales, out)
}

/// [`reference::gemv_u8_i8_i32`] through the int8 kernel: `x = x_off + 128` with `x_off` in `-128..=127` (the u8
/// probabilities with their top bit flipped), so `w . x = w . x_off + 128 * sum(w)`. `row_sums[r]` must be the sum
/// of row `r` of `w` (computed once when `w` is built). Equal to the reference for every input.
#[inline]
pub fn gemv_u8_i8_i32_offset(
    w: &[i8],
    cols: usize,
    x_off: &[i8],
    row_sums: &[i32],
    out: &mut [i32],
) {
    gemv_i8_i32(w, cols, x_off, out);
    for (o, &s) in out.iter_mut().zip(row_sums) {
        *o = o.wrapping_add(s.wrapping_mul(128));
    }
}

/// [`gemv_u8_i8_i32_offset`] for several rows of `x_off` at once (the probabilities of several queries against
/// one head's V): for each `i < queries` whose row `x_off[i * cols..][..cols]` is whole, that row into
/// `out[i * stride..][..rows]` (the offset needs every column; a row cut short by the end of `x_off` is left
/// out). `w` must hold no -128 (V comes from `quant::quantize_row`; [`attention::Values`] clamps it): then
/// always equal to [`reference::gemm_i8_i32`] plus the offset; NEON tiles of four queries by four rows on
/// AArch64, elsewhere [`gemv_i8_i32`] query by query.
#[allow(clippy::too_many_arguments)]
pub fn gemm_u8_i8_i32_offset(
    w: &[i8],
    cols: usize,
    rows: usize,
    x_off: &[i8],
    queries: usize,
    row_sums: &[i32],
    out: &mut [i32],
    stride: usize,
) {
    let queries = queries.min(x_off.len().checked_div(cols).unwrap_or(queries));
    Active::gemm_i8_i32(w, cols, rows, x_off, queries, out, stride);
    for o in out.chunks_mut(stride.max(1)).take(queries) {
        for (o, &s) in o.iter_mut().take(rows).zip(row_sums) {
            *o = o.wrapping_add(s.wrapping_mul(128));
        }
    }
}

/// `u32` words of workspace [`GemmInput::new`] wants for `tokens` tokens of `cols` columns in blocks of `block` (0
/// where no kernel uses one). x86-64: the AVX-512 VNNI kernel's packed activations and scales. AArch64 with
/// `dotprod`: `cols` words per whole group of four tokens where `cols` is a multiple of 16, whatever `block`
/// (the packed kernel takes one block per token; a workspace sized for the widest input serves the narrower
/// ones). Elsewhere none. With less, the GEMM still gives the same results, token by token.
pub const fn gemm_workspace_words(tokens: usize, cols: usize, block: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        x86::gemm_workspace_words(tokens, cols, block)
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
    {
        let _ = block;
        neon::tiles::sdot_workspace_words(tokens, cols)
    }
    #[cfg(not(any(
        target_arch = "x86_64",
        all(target_arch = "aarch64", target_feature = "dotprod")
    )))]
    {
        let _ = (tokens, cols, block);
        0
    }
}

/// The activations of `tokens` tokens, prepared once for any number of [`gemm_i8_blocks`] calls with different
/// weights: token `t` is `x[t * cols..][..cols]` in `block`-wide int8 blocks with scales
/// `x_scales[t * nb..][..nb]` (`nb = cols.div_ceil(block)`). On x86-64 CPUs with AVX-512 VNNI they are packed into
/// the workspace for the multi-token kernel; with AVX2 only, they are checked once for the AVX2 multi-token kernel
/// (which reads them in place and needs no workspace). On AArch64 with `dotprod`, one-block-per-token activations
/// are packed in groups of four tokens for `sdot` by lane.
pub struct GemmInput<'a> {
    x: &'a [i8],
    cols: usize,
    block: usize,
    x_scales: &'a [f32],
    tokens: usize,
    /// What `x86::pack_vnni` wrote, when it did.
    #[cfg(target_arch = "x86_64")]
    packed: Option<&'a [u32]>,
    /// Whether the AVX2 multi-token kernel takes these activations (where they are not packed for VNNI).
    #[cfg(target_arch = "x86_64")]
    avx2: bool,
    /// What `neon::tiles::pack_sdot` wrote and how many groups of four tokens, when it did.
    #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
    packed: Option<(&'a [u32], usize)>,
}

impl<'a> GemmInput<'a> {
    /// Prepares the activations; `work` ([`gemm_workspace_words`]) stays borrowed while the input lives.
    pub fn new(
        x: &'a [i8],
        cols: usize,
        block: usize,
        x_scales: &'a [f32],
        tokens: usize,
        work: &'a mut [u32],
    ) -> Self {
        #[cfg(target_arch = "x86_64")]
        let packed = x86::pack_vnni(x, cols, block, x_scales, tokens, work).then_some(&*work);
        #[cfg(target_arch = "x86_64")]
        let avx2 = packed.is_none() && x86::gemm_avx2_applies(x, cols, block, tokens);
        #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
        let packed = match neon::tiles::pack_sdot(x, cols, block, x_scales, tokens, work) {
            0 => None,
            groups => Some((&*work, groups)),
        };
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", target_feature = "dotprod")
        )))]
        let _ = work;
        GemmInput {
            x,
            cols,
            block,
            x_scales,
            tokens,
            #[cfg(target_arch = "x86_64")]
            packed,
            #[cfg(target_arch = "x86_64")]
            avx2,
            #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
            packed,
        }
    }

    /// How many tokens this input holds.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Columns per token (the weight rows' length).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Activation blocks per token (the weight sums per row).
    pub fn blocks(&self) -> usize {
        self.cols.div_ceil(self.block.max(1))
    }

    /// The token step at which a GEMM on this input splits cheaply ([`gemm_i8_blocks_from`]'s `first`): a pass of
    /// the AVX-512 VNNI kernel where the input is packed for it, a tile of the AVX2 kernel where that takes it, a
    /// tile of the AArch64 `sdot` kernel (eight tokens) where the input is packed for that, otherwise 1.
    pub fn token_step(&self) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.packed.is_some() {
            return x86::GEMM_TOKEN_STEP;
        }
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            return x86::AVX2_TOKEN_STEP;
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
        if self.packed.is_some() {
            return 8;
        }
        1
    }
}

/// Whether [`gemm_i8_blocks`] uses weight sums on this target (x86-64, where its kernel offsets the activations
/// to `u8`); elsewhere they are not needed and may be empty.
pub const GEMM_USES_WEIGHT_SUMS: bool = cfg!(target_arch = "x86_64");

/// `sums[r * nb + b] = -128 * sum(w[r][block b])` (wrapping) for the `sums.len() / nb` rows of `w` (row-major,
/// `cols` wide; `nb = cols.div_ceil(block)`): what [`gemm_i8_blocks`] takes for `w`. Computed once per weight
/// matrix, they serve every GEMM with it.
pub fn gemm_weight_sums(w: &[i8], cols: usize, block: usize, sums: &mut [i32]) {
    if cols == 0 || block == 0 {
        return;
    }
    let nb = cols.div_ceil(block);
    for (row, s) in w.chunks_exact(cols).zip(sums.chunks_exact_mut(nb)) {
        for (wb, s) in row.chunks(block).zip(s) {
            let sum = wb.iter().fold(0i32, |acc, &v| acc.wrapping_add(v as i32));
            *s = sum.wrapping_mul(-128);
        }
    }
}

/// Block-scaled int8 GEMM into `f32` for several tokens at once (the engine's linear layers over a tile of
/// tokens): `out[t * rows..][..rows]` for `t < min(tokens, out.len() / rows)`, equal, bit for bit, to
/// [`reference::gemm_i8_blocks_f32`] on the same activations, i.e. [`gemv_i8_blocks`] token by token. `sums` are
/// `w`'s block sums from [`gemm_weight_sums`] (`rows * nb` of them) where [`GEMM_USES_WEIGHT_SUMS`]; without
/// them (say, empty) the result is the same, token by token.
///
/// On x86-64 the AVX-512 VNNI kernel runs where the input is packed for it, else the AVX2 one
/// (`x86::gemm_rows_avx2`) where it applies. Where neither does, rows go in chunks of about [`GEMM_WEIGHT_CHUNK`]
/// bytes, each serving every token while it is in cache: on AArch64 four tokens at a time through
/// `neon::gemm_i8_blocks_sdot` / `neon::gemm_i8_blocks_mull`'s tiles, elsewhere token by token through
/// [`gemv_i8_blocks`].
pub fn gemm_i8_blocks(w: &[i8], rows: usize, sums: &[i32], input: &GemmInput, out: &mut [f32]) {
    gemm_i8_blocks_from(w, rows, sums, input, 0, out)
}

/// [`gemm_i8_blocks`] for the input's tokens from `first` on: token `first + t` into `out[t * rows..][..rows]`, for
/// `t < min(tokens - first, out.len() / rows)`. The same bits as the whole GEMM gives those tokens; it is fastest
/// where `first` is a multiple of [`GemmInput::token_step`] (what splits a GEMM between threads).
pub fn gemm_i8_blocks_from(
    w: &[i8],
    rows: usize,
    sums: &[i32],
    input: &GemmInput,
    first: usize,
    out: &mut [f32],
) {
    let (cols, block) = (input.cols, input.block);
    if rows == 0 || first >= input.tokens {
        return;
    }
    let tokens = (input.tokens - first).min(out.len() / rows);
    if tokens == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(packed) = input.packed {
        // Past `MIN_TOKENS` the kernel's idle lanes cost less than the GEMV token by token.
        if tokens == input.tokens - first || tokens >= x86::GEMM_TOKEN_STEP / 2 {
            // SAFETY: `packed` is what `pack_vnni` wrote for `input.tokens` tokens, these columns and block.
            let done = unsafe {
                x86::gemm_packed_vnni(
                    w,
                    cols,
                    block,
                    input.tokens,
                    packed,
                    first,
                    tokens,
                    sums,
                    rows,
                    out,
                )
            };
            if done {
                return;
            }
        }
    }
    let _ = sums;
    // AArch64 with `dotprod`: the tokens of the packed groups, then the rest as below.
    #[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
    let (first, tokens, out) = match input.packed {
        Some((packed, groups)) => {
            let done = neon::tiles::gemm_packed_sdot(
                w,
                cols,
                rows,
                packed,
                groups,
                input.x,
                input.x_scales,
                first,
                tokens,
                out,
            );
            if done == tokens {
                return;
            }
            (first + done, tokens - done, &mut out[done * rows..])
        }
        None => (first, tokens, out),
    };
    let nb = cols.div_ceil(block.max(1));
    let x = input.x.get(first * cols..).unwrap_or(&[]);
    let x_scales = input.x_scales.get(first * nb..).unwrap_or(&[]);
    // AVX2 (where the VNNI kernel does not run): tiles of tokens by rows, on the activations in place. Two tokens
    // or more; one goes through the GEMV.
    #[cfg(target_arch = "x86_64")]
    if input.avx2
        && tokens >= 2
        && x86::gemm_rows_avx2(w, cols, block, x, x_scales, tokens, rows, out)
    {
        return;
    }
    if cols == 0 || block == 0 {
        return reference::gemm_i8_blocks_f32(
            w,
            cols,
            x,
            block,
            x_scales,
            rows,
            &mut out[..tokens * rows],
        );
    }
    // A multiple of the AArch64 tiles' eight rows.
    let chunk = (GEMM_WEIGHT_CHUNK / cols).max(1).next_multiple_of(8);
    for r0 in (0..rows).step_by(chunk) {
        let rn = chunk.min(rows - r0);
        let wc = w.get(r0 * cols..).unwrap_or(&[]);
        // Tiles of several tokens while they last (AArch64: four); the GEMV takes the rest.
        let done = Active::gemm_tiles(
            wc,
            cols,
            rn,
            x,
            block,
            x_scales,
            tokens,
            &mut out[r0..],
            rows,
        );
        for t in done..tokens {
            let xt = x.get(t * cols..).unwrap_or(&[]);
            let st = x_scales.get(t * nb..).unwrap_or(&[]);
            let o = &mut out[t * rows + r0..t * rows + r0 + rn];
            gemv_i8_blocks(
                wc,
                cols,
                &xt[..cols.min(xt.len())],
                block,
                &st[..nb.min(st.len())],
                o,
            );
        }
    }
}

/// [`reference::layer_norm_f32`] on each `cols`-wide row of `x` (a trailing partial row is left alone); on
/// x86-64 four rows at a time.
#[inline(always)]
pub fn layer_norm_rows(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    Active::layer_norm_rows(x, cols, gamma, beta, eps)
}

/// [`Kernels::add_layer_norm_rows`] of the backend this build runs ([`Active`]).
#[inline(always)]
pub fn add_layer_norm_rows(
    sublayer: &mut [f32],
    hidden: &mut [f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    Active::add_layer_norm_rows(sublayer, hidden, cols, gamma, beta, eps)
}

/// [`Kernels::add_layer_norm_rows`]'s definition: the sums row by row, [`layer_norm_rows`], then the rows copied
/// into `hidden`.
#[inline(always)]
pub fn add_layer_norm_rows_plain(
    sublayer: &mut [f32],
    hidden: &mut [f32],
    cols: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if cols == 0 {
        return;
    }
    let n = sublayer.len().min(hidden.len()) / cols * cols;
    let (y, x) = (&mut sublayer[..n], &mut hidden[..n]);
    y.iter_mut().zip(&*x).for_each(|(y, &x)| *y += x);
    layer_norm_rows(y, cols, gamma, beta, eps);
    x.copy_from_slice(y);
}

/// [`reference::masked_softmax_f32`] on `rows` rows of `n` values that start `width` apart in `x` (a row that
/// runs past the end of `x` is cut short; values past `n` in a row are left alone).
#[inline(always)]
pub fn masked_softmax_rows(
    x: &mut [f32],
    width: usize,
    n: usize,
    rows: usize,
    keep: impl Fn(usize) -> bool,
) {
    for row in x.chunks_mut(width.max(1)).take(rows) {
        let m = n.min(row.len());
        reference::masked_softmax_f32(&mut row[..m], &keep);
    }
}

/// Bytes of weight rows the token-by-token [`gemm_i8_blocks`] keeps hot while it serves every token.
pub const GEMM_WEIGHT_CHUNK: usize = 32 * 1024;
