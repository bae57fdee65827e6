//! NEON int8 kernels for Raspberry Pi class CPUs, equal to [`reference`](super::reference) bit for bit.
//!
//! | target | kernel | CPUs |
//! |---|---|---|
//! | `aarch64` | [`gemv_i8_i32_mull`]: `smull` + `sadalp` | every AArch64 core (Pi 3, Pi 4: Cortex-A53, A72) |
//! | `aarch64` + `dotprod` | [`gemv_i8_i32_sdot`]: `sdot` | Armv8.2 dot product (Pi 5: Cortex-A76) |
//! | `arm` + feature `arm-neon` | [`gemv_i8_i32_armv7`]: `vmull.s8` + `vpadal.s16` | 32-bit OS on Pi 2, 3, 4 |
//!
//! All are picked at compile time. The `sdot` kernel needs `-C target-feature=+dotprod` (or
//! `-C target-cpu=cortex-a76`); stable Rust 1.95 has no `vdotq_s32` (`stdarch_neon_dotprod` is unstable), so
//! the instruction is written with `asm!`. On 32-bit ARM both the NEON intrinsics (`stdarch_arm_neon_intrinsics`)
//! and `cfg(target_feature = "neon")` are unstable, so that kernel is inline assembly switched on by the Cargo
//! feature `arm-neon`, and the build must enable NEON in the assembler with `-C target-feature=+neon` (rustc
//! warns that this feature is unstable; `-C target-cpu=...` does not override the target's `-neon`), otherwise it
//! fails with "instruction requires: NEON".
//!
//! # Exactness
//!
//! Every product of two `i8` fits an `i16` (`-128 * -128 = 16384`), but the sum of two does not
//! (`2 * 16384 = 32768`), so the widening kernels never accumulate in `i16`: each `i16` product vector is
//! pairwise-added straight into `i32` lanes (`sadalp` / `vpadal.s16`). `sdot` sums four products in 32 bits.
//! Integer addition is associative, so the lane order does not matter: results equal the reference's
//! left-to-right sum exactly, including wrap-around where that would overflow (more than 2^17 columns at -128).
//!
//! The exception is the block kernels without `dotprod` (the linear layers: `gemv_i8_blocks_mull`,
//! `gemm_i8_blocks_mull`): their step (`mull_pair_step`) sums two products in one `i16` lane before `sadalp`,
//! three instructions per 16 multiply-adds instead of four, which is exact when no weight is -128 (a pair is then
//! at most `2 * 127 * 128 = 32512`), as the converter guarantees; the activations may take the whole range.
//! Debug builds assert it.
//!
//! # Shape
//!
//! The engine's linear layers go through the AArch64 GEMMs (`gemm_i8_blocks_sdot`, `gemm_i8_blocks_mull`):
//! tiles of four tokens by four rows, so each load of a weight row serves four tokens and each load of a token's
//! activations four rows; lane `i` of a token's vectors does row `i`'s GEMV sequence, so the bits are the same.
//! With one scale per token (`block >= cols`) the tiles' K loop holds nothing but the loads and steps (`a64::row_tile`:
//! 16 `sdot` and 8 loads, or 48 `smull` / `smlal2` / `sadalp` and 8 loads, per 16 columns), the columns past the
//! last multiple of 16 are one more step with the activations masked, and the single-token GEMV uses the same
//! tile with one token. Where `cols` is a multiple of 16, larger tiles in `asm!` take over (module `tiles`): eight
//! rows by two tokens with `smull`, and with `dotprod` eight rows by eight tokens of activations packed once per
//! [`GemmInput`](super::GemmInput) (four tokens by four columns per 16 bytes, each `sdot` taking a weight row's
//! four columns by lane), so each accumulator lane is one token of one row.
//!
//! In the GEMVs, rows go four at a time so each load of `x` serves four weight rows; columns 16 at a time, then one
//! step of 8 (attention rows are often 8 to 64 wide), then a scalar tail of at most 7 through
//! [`reference::dot_i8_i32`](super::reference::dot_i8_i32). Degenerate calls (`cols == 0`, `x` shorter than `cols`) go
//! to the reference unchanged, so every input, valid or not, gives the reference's output.

use super::blocked;

/// Rows per block: each load of `x` serves this many weight rows.
const ROWS: usize = 4;

/// One kernel's inner loop, for `R` rows at a time (`R` is [`ROWS`] or 1).
trait RowDots {
    /// The dot products of each row with `x` over columns `0..done`, and `done`: the columns a vector step
    /// covered (a multiple of 8, `x.len() - 8 < done <= x.len()`). Every row has exactly `x.len()` elements.
    fn dots<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> ([i32; R], usize);

    /// The complete dot products (vector part and scalar tail), what the drivers take.
    #[inline(always)]
    fn full_dots<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> [i32; R] {
        blocked::with_tail(rows, Self::dots(rows, x), x)
    }

    /// One row's complete dot product.
    #[inline(always)]
    fn full_dot(row: &[i8], x: &[i8]) -> i32 {
        Self::full_dots([row], x)[0]
    }

    /// [`Self::dots`] of four rows with each of four `xs` (all the same length): `result[a][b] = xs[a] . rows[b]`
    /// over columns `0..done`, and `done`. AArch64 only.
    #[cfg(target_arch = "aarch64")]
    fn tile(rows: [&[i8]; 4], xs: [&[i8]; 4]) -> ([[i32; 4]; 4], usize);
}

/// The shared driver ([`blocked::gemv_rows`]) with this kernel's dot products and the scalar tail.
#[inline(always)]
fn gemv_blocked<K: RowDots>(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    blocked::gemv_rows::<ROWS>(w, cols, x, out, K::full_dots, K::full_dot)
}

/// The block-scaled driver ([`blocked::gemv_blocks_rows`]) with this kernel's dot products (32-bit ARM; AArch64
/// has its own, `a64::gemv_blocks`).
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
#[inline(always)]
fn gemv_blocks_blocked<K: RowDots>(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    blocked::gemv_blocks_rows::<ROWS>(w, cols, x, block, scales, out, K::full_dots, K::full_dot)
}

// ---------------------------------------------------------------------------------------------------------------
// aarch64: smull + sadalp (every AArch64 core)
// ---------------------------------------------------------------------------------------------------------------

#[cfg(target_arch = "aarch64")]
mod a64 {
    pub(super) use core::arch::aarch64::*;

    /// The generic inner loop: `step16` / `step8` add 16 / 8 columns of products to an accumulator.
    #[inline(always)]
    pub(super) fn dots<const R: usize>(
        rows: [&[i8]; R],
        x: &[i8],
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
        step8: impl Fn(int32x4_t, int8x8_t, int8x8_t) -> int32x4_t,
    ) -> ([i32; R], usize) {
        let n = x.len();
        assert!(rows.iter().all(|r| r.len() == n));
        // SAFETY (the loads): every row and `x` hold `n` bytes (asserted above) and each load reads 16 (8) bytes
        // at `c` with `c + 16 <= n` (`c + 8 <= n`); `ld1` has no alignment requirement.
        let load16 = |s: &[i8], c: usize| unsafe { vld1q_s8(s.as_ptr().add(c)) };
        let load8 = |s: &[i8], c: usize| unsafe { vld1_s8(s.as_ptr().add(c)) };
        // SAFETY (this and the other register-only intrinsics below): no memory is touched, and NEON is part of
        // the AArch64 baseline, so the `neon` target feature they are declared with is always present.
        let mut acc = [unsafe { vdupq_n_s32(0) }; R];
        let mut c = 0;
        while n - c >= 16 {
            let xv = load16(x, c);
            for (a, row) in acc.iter_mut().zip(rows) {
                *a = step16(*a, load16(row, c), xv);
            }
            c += 16;
        }
        if n - c >= 8 {
            let xv = load8(x, c);
            for (a, row) in acc.iter_mut().zip(rows) {
                *a = step8(*a, load8(row, c), xv);
            }
            c += 8;
        }
        // SAFETY: register-only, AArch64 baseline (see above).
        (acc.map(|a| unsafe { vaddvq_s32(a) }), c)
    }

    /// [`dots`] for four rows and four `xs` at once: each step loads four vectors of each for 16 accumulators
    /// (`acc[a][b]`: `xs[a]` times `rows[b]`), reduced four at a time with two rounds of `addp`.
    #[inline(always)]
    pub(super) fn tile_dots(
        rows: [&[i8]; 4],
        xs: [&[i8]; 4],
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
        step8: impl Fn(int32x4_t, int8x8_t, int8x8_t) -> int32x4_t,
    ) -> ([[i32; 4]; 4], usize) {
        let n = xs[0].len();
        assert!(rows.iter().chain(&xs).all(|r| r.len() == n));
        // SAFETY (the loads): every row and x holds `n` bytes (asserted above) and each load reads 16 (8) bytes at
        // `c` with `c + 16 <= n` (`c + 8 <= n`); `ld1` has no alignment requirement.
        let load16 = |s: &[i8], c: usize| unsafe { vld1q_s8(s.as_ptr().add(c)) };
        let load8 = |s: &[i8], c: usize| unsafe { vld1_s8(s.as_ptr().add(c)) };
        // SAFETY (this and the other register-only intrinsics below): no memory is touched, and NEON is part of
        // the AArch64 baseline.
        let mut acc = [[unsafe { vdupq_n_s32(0) }; 4]; 4];
        let mut c = 0;
        while n - c >= 16 {
            let (xv, wv) = (xs.map(|x| load16(x, c)), rows.map(|r| load16(r, c)));
            for (acc, xv) in acc.iter_mut().zip(xv) {
                for (a, wv) in acc.iter_mut().zip(wv) {
                    *a = step16(*a, wv, xv);
                }
            }
            c += 16;
        }
        if n - c >= 8 {
            let (xv, wv) = (xs.map(|x| load8(x, c)), rows.map(|r| load8(r, c)));
            for (acc, xv) in acc.iter_mut().zip(xv) {
                for (a, wv) in acc.iter_mut().zip(wv) {
                    *a = step8(*a, wv, xv);
                }
            }
            c += 8;
        }
        let mut sums = [[0i32; 4]; 4];
        for (s, a) in sums.iter_mut().zip(acc) {
            // SAFETY: register-only (AArch64 baseline); `s` is four `i32`s.
            unsafe {
                vst1q_s32(
                    s.as_mut_ptr(),
                    vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3])),
                )
            };
        }
        (sums, c)
    }

    /// [`reference::gemv_i8_blocks_f32`](super::super::reference::gemv_i8_blocks_f32) for AArch64: four rows per
    /// step, 16 columns per `step16`, the four accumulators of a block reduced together with two rounds of `addp`
    /// into one vector of four `i32` sums (columns past the last multiple of 16 added through the reference's
    /// dot product), then `scvtf` (round to nearest like `as f32`), `fmul` by the block's scale and `fadd`:
    /// separate, unfused, lane `i` doing exactly row `i`'s scalar sequence, so the result is the reference's bit
    /// for bit. Rows past the last multiple of four and degenerate calls go to the reference.
    #[inline(always)]
    pub(super) fn gemv_blocks(
        w: &[i8],
        cols: usize,
        x: &[i8],
        block: usize,
        scales: &[f32],
        out: &mut [f32],
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t + Copy,
    ) {
        use super::super::reference;
        if cols == 0 || block == 0 || x.len() < cols {
            return reference::gemv_i8_blocks_f32(w, cols, x, block, scales, out);
        }
        let x = &x[..cols];
        let rows = out.len().min(w.len() / cols);
        if block >= cols && !scales.is_empty() {
            // One block: the GEMM's row tiles for one token.
            return row_gemm::<1>(w, cols, rows, x, scales, 1, out, rows, step16);
        }
        let scales = &scales[..cols.div_ceil(block).min(scales.len())];
        let quads = rows / 4 * 4;
        for (quad, o) in out[..quads].chunks_exact_mut(4).enumerate() {
            let r0 = quad * 4;
            let row = |i: usize| &w[(r0 + i) * cols..(r0 + i + 1) * cols];
            let (w0, w1, w2, w3) = (row(0), row(1), row(2), row(3));
            // SAFETY: register-only, AArch64 baseline (see `dots`).
            let mut f = unsafe { vdupq_n_f32(0.0) };
            for (b, &scale) in scales.iter().enumerate() {
                let c0 = b * block;
                let n = block.min(cols - c0);
                let main = n - n % 16;
                // SAFETY: register-only, AArch64 baseline.
                let z = unsafe { vdupq_n_s32(0) };
                let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
                let mut c = c0;
                while c < c0 + main {
                    // SAFETY: c + 16 <= c0 + main <= cols = the length of `x` and of each row: every 16-byte
                    // load is in bounds; `ld1` has no alignment requirement.
                    unsafe {
                        let xv = vld1q_s8(x.as_ptr().add(c));
                        a0 = step16(a0, vld1q_s8(w0.as_ptr().add(c)), xv);
                        a1 = step16(a1, vld1q_s8(w1.as_ptr().add(c)), xv);
                        a2 = step16(a2, vld1q_s8(w2.as_ptr().add(c)), xv);
                        a3 = step16(a3, vld1q_s8(w3.as_ptr().add(c)), xv);
                    }
                    c += 16;
                }
                // SAFETY: register-only, AArch64 baseline.
                let mut s = unsafe { vpaddq_s32(vpaddq_s32(a0, a1), vpaddq_s32(a2, a3)) };
                if main < n {
                    let (t0, t1) = (c0 + main, c0 + n);
                    let tail =
                        [w0, w1, w2, w3].map(|r| reference::dot_i8_i32(&r[t0..t1], &x[t0..t1]));
                    // SAFETY: `tail` is four i32s.
                    s = unsafe { vaddq_s32(s, vld1q_s32(tail.as_ptr())) };
                }
                // SAFETY: register-only, AArch64 baseline.
                f = unsafe { vaddq_f32(f, vmulq_f32(vcvtq_f32_s32(s), vdupq_n_f32(scale))) };
            }
            // SAFETY: `o` is four f32s.
            unsafe { vst1q_f32(o.as_mut_ptr(), f) };
        }
        for r in quads..rows {
            reference::gemv_i8_blocks_f32(
                &w[r * cols..(r + 1) * cols],
                cols,
                x,
                block,
                scales,
                &mut out[r..r + 1],
            );
        }
    }

    /// The one-scale-per-token case (`block >= cols`, one block per row: the engine's linear layers) for rows
    /// `r0..r0 + 4` and tokens `t0..t0 + T`: the K loop holds only loads and `step16`s into `4 * T` `i32`
    /// accumulators (no `f32` work, no block bookkeeping); each 16-byte load of a weight row serves `T` tokens,
    /// each load of a token's activations four rows. At the end each token's four accumulators are reduced with
    /// two rounds of `addp` (row `i` in lane `i`), the columns past the last multiple of 16 are added through the
    /// reference's dot product, and `0.0 + (p as f32) * scale` is computed with a separate `scvtf`, `fmul` and
    /// `fadd` (the reference's single-block sequence, so the same bits). Token `t`'s activations are
    /// `x[t * cols..][..cols]`, its scale `scales[t]`, its outputs `out[t * stride + r0..][..4]`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn row_tile<const T: usize>(
        w: &[i8],
        cols: usize,
        r0: usize,
        x: &[i8],
        scales: &[f32],
        t0: usize,
        out: &mut [f32],
        stride: usize,
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t,
    ) {
        use super::super::reference;
        let wr: [&[i8]; 4] = core::array::from_fn(|i| &w[(r0 + i) * cols..][..cols]);
        let xs: [&[i8]; T] = core::array::from_fn(|t| &x[(t0 + t) * cols..][..cols]);
        let main = cols - cols % 16;
        // SAFETY: register-only, AArch64 baseline (see `dots`).
        let mut acc = [[unsafe { vdupq_n_s32(0) }; 4]; T];
        // 16 columns at `c` into every accumulator.
        let mut step = |c: usize| {
            // SAFETY: callers keep c + 16 <= main <= cols = the length of every row in `wr` and of every token
            // in `xs`: each 16-byte load is in bounds; `ld1` has no alignment requirement.
            let wv = wr.map(|r| unsafe { vld1q_s8(r.as_ptr().add(c)) });
            for (a, xt) in acc.iter_mut().zip(xs) {
                // SAFETY: as above.
                let xv = unsafe { vld1q_s8(xt.as_ptr().add(c)) };
                for (ai, &wi) in a.iter_mut().zip(&wv) {
                    *ai = step16(*ai, wi, xv);
                }
            }
        };
        // With `sdot`, two steps per iteration: the loop's counter, compare and branch once per 32 columns.
        // (Unrolled, the `smull` step's 16 accumulators, eight loaded vectors and `i16` products no longer fit
        // the 32 registers, and the spills cost more than the branch saves.)
        let mut c = 0;
        while cfg!(target_feature = "dotprod") && c + 32 <= main {
            step(c);
            step(c + 16);
            c += 32;
        }
        while c < main {
            step(c);
            c += 16;
        }
        let rem = cols - main;
        let mut tails = [[0i32; 4]; T];
        if rem > 0 && cols >= 16 {
            // The last `rem` columns as one more step over the last 16, the activations' first `16 - rem` bytes
            // (columns already done) masked to zero: lane `j` of the mask is `MASK[rem + j]`, all ones exactly
            // for `j >= 16 - rem`.
            const MASK: [i8; 32] = {
                let mut m = [0i8; 32];
                let mut j = 16;
                while j < 32 {
                    m[j] = -1;
                    j += 1;
                }
                m
            };
            // SAFETY: cols - 16 + 16 = cols bytes: each load is in bounds (`cols >= 16`); `rem < 16`, so the mask
            // load reads MASK[rem..rem + 16] within its 32 bytes.
            unsafe {
                let c = cols - 16;
                let mask = vld1q_s8(MASK.as_ptr().add(rem));
                let wv = wr.map(|r| vld1q_s8(r.as_ptr().add(c)));
                for (a, xt) in acc.iter_mut().zip(xs) {
                    let xv = vandq_s8(vld1q_s8(xt.as_ptr().add(c)), mask);
                    for (ai, &wi) in a.iter_mut().zip(&wv) {
                        *ai = step16(*ai, wi, xv);
                    }
                }
            }
        } else if rem > 0 {
            // Fewer than 16 columns in all: the reference's dot products.
            for (tail, xt) in tails.iter_mut().zip(xs) {
                *tail = wr.map(|r| reference::dot_i8_i32(r, xt));
            }
        }
        for (t, (a, tail)) in acc.iter().zip(&tails).enumerate() {
            // SAFETY: register-only, AArch64 baseline; `tail` is four i32s.
            let s = unsafe {
                let s = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
                vaddq_s32(s, vld1q_s32(tail.as_ptr()))
            };
            let o = &mut out[(t0 + t) * stride + r0..][..4];
            // SAFETY: register-only arithmetic (AArch64 baseline); `o` is four f32s.
            unsafe {
                let p = vmulq_f32(vcvtq_f32_s32(s), vdupq_n_f32(scales[t0 + t]));
                vst1q_f32(o.as_mut_ptr(), vaddq_f32(vdupq_n_f32(0.0), p));
            }
        }
    }

    /// [`row_tile`] over `rows` rows and `tokens` tokens: `TM` tokens at a time, then 4, 2 and 1 for the rest;
    /// rows past the last multiple of four through the reference. The caller has checked that `w` holds `rows`
    /// rows, `x` `tokens` tokens, `scales` `tokens` scales and `out` `(tokens - 1) * stride + rows` outputs, with
    /// `stride >= rows` and `cols > 0`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn row_gemm<const TM: usize>(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        scales: &[f32],
        tokens: usize,
        out: &mut [f32],
        stride: usize,
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t + Copy,
    ) {
        use super::super::reference;
        let quads = rows / 4 * 4;
        let mut t0 = 0;
        let tiles = |t0: usize, n: usize, out: &mut [f32]| {
            for r0 in (0..quads).step_by(4) {
                match n {
                    4 => row_tile::<4>(w, cols, r0, x, scales, t0, out, stride, step16),
                    2 => row_tile::<2>(w, cols, r0, x, scales, t0, out, stride, step16),
                    1 => row_tile::<1>(w, cols, r0, x, scales, t0, out, stride, step16),
                    _ => row_tile::<TM>(w, cols, r0, x, scales, t0, out, stride, step16),
                }
            }
        };
        while tokens - t0 >= TM {
            tiles(t0, TM, out);
            t0 += TM;
        }
        for n in [4, 2, 1] {
            if n < TM && tokens - t0 >= n {
                tiles(t0, n, out);
                t0 += n;
            }
        }
        for r in quads..rows {
            for t in 0..tokens {
                reference::gemv_i8_blocks_f32(
                    &w[r * cols..][..cols],
                    cols,
                    &x[t * cols..][..cols],
                    cols,
                    &scales[t..t + 1],
                    &mut out[t * stride + r..][..1],
                );
            }
        }
    }

    /// Tokens per tile of [`gemm_tiles`]: with four rows, 16 accumulators, four weight vectors and one of
    /// activations in flight (21 of the 32 vector registers).
    pub(super) const TILE_TOKENS: usize = 4;

    /// [`gemv_blocks`] for the first `tokens / TILE_TOKENS * TILE_TOKENS` tokens, [`TILE_TOKENS`] at a time: each
    /// 16-byte load of a weight row serves four tokens (the GEMV loads it once per token), each load of a token's
    /// activations four rows. Token `t`'s activations are `x[t * cols..][..cols]`, its block scales
    /// `scales[t * nb..][..nb]` (`nb = cols.div_ceil(block)`) and its outputs `out[t * stride..][..rows]`. Lane `i`
    /// of token `t`'s vectors runs exactly [`gemv_blocks`]'s sequence for row `i` (the block's exact `i32` sum,
    /// `scvtf`, `fmul`, `fadd` from 0.0, blocks in order), so every output has the same bits. Returns the tokens
    /// done: 0 where a tile's activations, scales or outputs, or the weights, fall short (the caller then runs the
    /// GEMV token by token, which handles short inputs like the reference).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_tiles<const TM: usize, const MULL: bool>(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        block: usize,
        scales: &[f32],
        tokens: usize,
        out: &mut [f32],
        stride: usize,
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t + Copy,
    ) -> usize {
        use super::super::reference;
        const T: usize = TILE_TOKENS;
        let fits = |len: usize, need: Option<usize>| need.is_some_and(|n| n <= len);
        if block >= cols && cols > 0 && rows > 0 && stride >= rows {
            // One block per row: every token whose activations, scale and outputs are all there.
            let n = tokens.min(x.len() / cols).min(scales.len()).min(
                out.len()
                    .checked_sub(rows)
                    .map_or(0, |spare| spare / stride + 1),
            );
            if n == 0 || !fits(w.len(), rows.checked_mul(cols)) {
                return 0;
            }
            if MULL {
                super::tiles::mull_row_gemm(w, cols, rows, x, scales, n, out, stride);
            } else {
                row_gemm::<TM>(w, cols, rows, x, scales, n, out, stride, step16);
            }
            return n;
        }
        let tiled = tokens / T * T;
        if cols == 0 || block == 0 || rows == 0 || tiled == 0 {
            return 0;
        }
        let nb = cols.div_ceil(block);
        if !(fits(x.len(), tiled.checked_mul(cols))
            && fits(scales.len(), tiled.checked_mul(nb))
            && fits(w.len(), rows.checked_mul(cols))
            && fits(
                out.len(),
                (tiled - 1)
                    .checked_mul(stride)
                    .and_then(|o| o.checked_add(rows)),
            )
            && stride >= rows)
        {
            return 0;
        }
        let quads = rows / 4 * 4;
        for t0 in (0..tiled).step_by(T) {
            let xs: [&[i8]; T] = core::array::from_fn(|t| &x[(t0 + t) * cols..][..cols]);
            let ss: [&[f32]; T] = core::array::from_fn(|t| &scales[(t0 + t) * nb..][..nb]);
            for r0 in (0..quads).step_by(4) {
                let wr: [&[i8]; 4] = core::array::from_fn(|i| &w[(r0 + i) * cols..][..cols]);
                // SAFETY: register-only, AArch64 baseline (see `dots`).
                let mut f = [unsafe { vdupq_n_f32(0.0) }; T];
                for b in 0..nb {
                    let c0 = b * block;
                    let n = block.min(cols - c0);
                    let main = n - n % 16;
                    // SAFETY: register-only, AArch64 baseline.
                    let mut acc = [[unsafe { vdupq_n_s32(0) }; 4]; T];
                    let mut c = c0;
                    while c < c0 + main {
                        // SAFETY: c + 16 <= c0 + main <= cols = the length of every row in `wr` and of every
                        // token in `xs`: each 16-byte load is in bounds; `ld1` has no alignment requirement.
                        let wv = wr.map(|r| unsafe { vld1q_s8(r.as_ptr().add(c)) });
                        for (a, xt) in acc.iter_mut().zip(xs) {
                            // SAFETY: as above.
                            let xv = unsafe { vld1q_s8(xt.as_ptr().add(c)) };
                            for (ai, &wi) in a.iter_mut().zip(&wv) {
                                *ai = step16(*ai, wi, xv);
                            }
                        }
                        c += 16;
                    }
                    for ((ft, a), (xt, st)) in f.iter_mut().zip(&acc).zip(xs.iter().zip(ss)) {
                        // SAFETY: register-only, AArch64 baseline.
                        let mut s =
                            unsafe { vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3])) };
                        if main < n {
                            let (t0, t1) = (c0 + main, c0 + n);
                            let tail = wr.map(|r| reference::dot_i8_i32(&r[t0..t1], &xt[t0..t1]));
                            // SAFETY: `tail` is four i32s.
                            s = unsafe { vaddq_s32(s, vld1q_s32(tail.as_ptr())) };
                        }
                        // SAFETY: register-only, AArch64 baseline.
                        *ft = unsafe {
                            vaddq_f32(*ft, vmulq_f32(vcvtq_f32_s32(s), vdupq_n_f32(st[b])))
                        };
                    }
                }
                for (t, ft) in f.iter().enumerate() {
                    let o = &mut out[(t0 + t) * stride + r0..][..4];
                    // SAFETY: `o` is four f32s.
                    unsafe { vst1q_f32(o.as_mut_ptr(), *ft) };
                }
            }
            for r in quads..rows {
                for t in 0..T {
                    let o = &mut out[(t0 + t) * stride + r..][..1];
                    reference::gemv_i8_blocks_f32(
                        &w[r * cols..][..cols],
                        cols,
                        xs[t],
                        block,
                        ss[t],
                        o,
                    );
                }
            }
        }
        tiled
    }

    /// The reference GEMM's contract ([`reference::gemm_i8_blocks_f32`](super::super::reference::gemm_i8_blocks_f32))
    /// with `step16`: [`gemm_tiles`], then the tokens left one by one through [`gemv_blocks`], sliced as the
    /// reference slices them.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_blocks<const TM: usize, const MULL: bool>(
        w: &[i8],
        cols: usize,
        x: &[i8],
        block: usize,
        scales: &[f32],
        rows: usize,
        out: &mut [f32],
        step16: impl Fn(int32x4_t, int8x16_t, int8x16_t) -> int32x4_t + Copy,
    ) {
        if rows == 0 {
            return;
        }
        let tokens = out.len() / rows;
        let done =
            gemm_tiles::<TM, MULL>(w, cols, rows, x, block, scales, tokens, out, rows, step16);
        let nb = cols.div_ceil(block.max(1));
        for (t, o) in out.chunks_exact_mut(rows).enumerate().skip(done) {
            let xt = x.get(t * cols..).unwrap_or(&[]);
            let st = scales.get(t * nb..).unwrap_or(&[]);
            let (xt, st) = (&xt[..cols.min(xt.len())], &st[..nb.min(st.len())]);
            gemv_blocks(w, cols, xt, block, st, o, step16);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// aarch64: the one-block-per-row GEMM tiles in inline assembly
// ---------------------------------------------------------------------------------------------------------------

/// The linear layers' GEMM tiles (one activation scale per token, `cols` a multiple of 16) in `asm!`: the
/// compiler spills tiles this size, which need all 32 vector registers.
///
/// * `smull` (every AArch64 core): eight rows by two tokens, 64 columns per iteration, one `ld1` of four
///   registers per row and per token, each 16 columns then [`mull_pair_step`]'s three instructions: about 3.2
///   instructions per 16 multiply-adds.
/// * `sdot` (`dotprod`): eight rows by eight tokens on activations packed by `pack_sdot` (four tokens by four
///   columns in each 16 bytes), the weights' 4-byte groups broadcast by `sdot`'s lane index, so each lane of an
///   accumulator is one token of one row: 64 `sdot`, 8 weight loads and 2 activation loads per 16 columns.
#[cfg(target_arch = "aarch64")]
pub(super) mod tiles {
    use super::a64::row_gemm;
    use super::a64::*;

    /// `asm!` for a tile of eight weight rows: `template` (a list of template strings) with the caller's
    /// `operands` (loop counts, activation pointers, accumulator outputs, which must be v0..v15), then the eight
    /// weight pointers `{w0}`..`{w7}` (copies of `w[0..8]`, advanced by the template's post-indexed loads) and
    /// v16..v31 as scratch. Read-only, no stack.
    macro_rules! rows8_asm {
        ($w:ident, [$($template:tt)*], $($operands:tt)*) => {
            core::arch::asm!(
                $($template)*
                $($operands)*
                w0 = inout(reg) $w[0] => _,
                w1 = inout(reg) $w[1] => _,
                w2 = inout(reg) $w[2] => _,
                w3 = inout(reg) $w[3] => _,
                w4 = inout(reg) $w[4] => _,
                w5 = inout(reg) $w[5] => _,
                w6 = inout(reg) $w[6] => _,
                w7 = inout(reg) $w[7] => _,
                out("v16") _, out("v17") _, out("v18") _, out("v19") _,
                out("v20") _, out("v21") _, out("v22") _, out("v23") _,
                out("v24") _, out("v25") _, out("v26") _, out("v27") _,
                out("v28") _, out("v29") _, out("v30") _, out("v31") _,
                options(nostack, readonly),
            )
        };
    }

    /// One [`mull_pair_step`](super::mull_pair_step) in assembly: 16 columns of weights `v$w` and activations
    /// `v$x`, the `i16` pair sums in `v$t`, added pairwise into the four `i32` lanes of `v$acc`.
    macro_rules! mull_step {
        ($acc:literal, $w:literal, $x:literal, $t:literal) => {
            concat!(
                "smull v", $t, ".8h, v", $w, ".8b, v", $x, ".8b\n", "smlal2 v", $t, ".8h, v", $w,
                ".16b, v", $x, ".16b\n", "sadalp v", $acc, ".4s, v", $t, ".8h\n",
            )
        };
    }

    /// One weight row's 64 columns (pointer `{$w}`, into v24..v27) against the two tokens' (v16..v19 and
    /// v20..v23), into accumulators `v$a` (token 0) and `v$b` (token 1).
    macro_rules! mull_row64 {
        ($w:literal, $a:literal, $b:literal) => {
            concat!(
                "ld1 {{v24.16b, v25.16b, v26.16b, v27.16b}}, [{",
                $w,
                "}], #64\n",
                mull_step!($a, 24, 16, 28),
                mull_step!($b, 24, 20, 29),
                mull_step!($a, 25, 17, 30),
                mull_step!($b, 25, 21, 31),
                mull_step!($a, 26, 18, 28),
                mull_step!($b, 26, 22, 29),
                mull_step!($a, 27, 19, 30),
                mull_step!($b, 27, 23, 31),
            )
        };
    }

    /// As [`mull_row64`] for 16 columns (weights into v24, tokens in v16 and v20).
    macro_rules! mull_row16 {
        ($w:literal, $a:literal, $b:literal) => {
            concat!(
                "ldr q24, [{",
                $w,
                "}], #16\n",
                mull_step!($a, 24, 16, 28),
                mull_step!($b, 24, 20, 29),
            )
        };
    }

    /// Zeroes the accumulators v0..v15.
    macro_rules! zero_accumulators {
        () => {
            concat!(
                "movi v0.4s, #0\n movi v1.4s, #0\n movi v2.4s, #0\n movi v3.4s, #0\n",
                "movi v4.4s, #0\n movi v5.4s, #0\n movi v6.4s, #0\n movi v7.4s, #0\n",
                "movi v8.4s, #0\n movi v9.4s, #0\n movi v10.4s, #0\n movi v11.4s, #0\n",
                "movi v12.4s, #0\n movi v13.4s, #0\n movi v14.4s, #0\n movi v15.4s, #0\n",
            )
        };
    }

    /// `$row` ([`mull_row64`] or [`mull_row16`]) for the eight weight rows: row `r` from `{wr}` into
    /// accumulators `v(r)` (token 0) and `v(r + 8)` (token 1).
    macro_rules! mull_rows {
        ($row:ident) => {
            concat!(
                $row!("w0", 0, 8),
                $row!("w1", 1, 9),
                $row!("w2", 2, 10),
                $row!("w3", 3, 11),
                $row!("w4", 4, 12),
                $row!("w5", 5, 13),
                $row!("w6", 6, 14),
                $row!("w7", 7, 15),
            )
        };
    }

    /// The `i32` accumulators of eight rows by two tokens: the four lanes of `acc[t][r]` sum to the dot product
    /// of row `r` (`cols` bytes at `w[r]`) and token `t` (`cols` bytes at `x[t]`).
    ///
    /// # Safety
    ///
    /// `cols` is a multiple of 16 and each of the ten pointers is valid for reading `cols` bytes. No weight is
    /// -128 (see [`mull_pair_step`](super::mull_pair_step)), or the sums may wrap.
    #[inline(always)]
    unsafe fn mull_tile(w: [*const i8; 8], x: [*const i8; 2], cols: usize) -> [[int32x4_t; 8]; 2] {
        // SAFETY: register-only, AArch64 baseline (the asm overwrites them all).
        let mut acc = [[unsafe { vdupq_n_s32(0) }; 8]; 2];
        // SAFETY: the loads read `64 * (cols / 64) + 16 * (cols % 64 / 16) = cols` bytes from each pointer (each
        // a copy, advanced by the post-indexed loads); `ld1` and `ldr` need no alignment here. The asm writes only
        // the registers it declares, touches no stack and no memory but those loads.
        unsafe {
            rows8_asm!(
                w,
                [
                    zero_accumulators!(),
                    "cbz {n64}, 3f",
                    "2:",
                    "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{x0}], #64",
                    "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x1}], #64",
                    mull_rows!(mull_row64),
                    "subs {n64}, {n64}, #1",
                    "b.ne 2b",
                    "3:",
                    "cbz {n16}, 5f",
                    "4:",
                    "ldr q16, [{x0}], #16",
                    "ldr q20, [{x1}], #16",
                    mull_rows!(mull_row16),
                    "subs {n16}, {n16}, #1",
                    "b.ne 4b",
                    "5:",
                ],
                n64 = inout(reg) cols / 64 => _,
                n16 = inout(reg) cols % 64 / 16 => _,
                x0 = inout(reg) x[0] => _,
                x1 = inout(reg) x[1] => _,
                out("v0") acc[0][0], out("v1") acc[0][1], out("v2") acc[0][2], out("v3") acc[0][3],
                out("v4") acc[0][4], out("v5") acc[0][5], out("v6") acc[0][6], out("v7") acc[0][7],
                out("v8") acc[1][0], out("v9") acc[1][1], out("v10") acc[1][2], out("v11") acc[1][3],
                out("v12") acc[1][4], out("v13") acc[1][5], out("v14") acc[1][6], out("v15") acc[1][7],
            );
        }
        acc
    }

    /// One weight row's 16 columns (pointer `{$w}`, into `v$wr`) against the packed activations of two groups of
    /// four tokens (v16..v19 and v20..v23: `v(16 + j)` holds columns `4j..4j + 4` of each token), into
    /// accumulators `v$a` and `v$b` (lane `i`: token `i` of the group).
    #[cfg(target_feature = "dotprod")]
    macro_rules! sdot_row {
        ($w:literal, $wr:literal, $a:literal, $b:literal) => {
            concat!(
                "ldr q",
                $wr,
                ", [{",
                $w,
                "}], #16\n",
                "sdot v",
                $a,
                ".4s, v16.16b, v",
                $wr,
                ".4b[0]\n",
                "sdot v",
                $b,
                ".4s, v20.16b, v",
                $wr,
                ".4b[0]\n",
                "sdot v",
                $a,
                ".4s, v17.16b, v",
                $wr,
                ".4b[1]\n",
                "sdot v",
                $b,
                ".4s, v21.16b, v",
                $wr,
                ".4b[1]\n",
                "sdot v",
                $a,
                ".4s, v18.16b, v",
                $wr,
                ".4b[2]\n",
                "sdot v",
                $b,
                ".4s, v22.16b, v",
                $wr,
                ".4b[2]\n",
                "sdot v",
                $a,
                ".4s, v19.16b, v",
                $wr,
                ".4b[3]\n",
                "sdot v",
                $b,
                ".4s, v23.16b, v",
                $wr,
                ".4b[3]\n",
            )
        };
    }

    /// 16 columns of eight rows (pointers `{w0}`..`{w7}`) by two packed groups of four tokens (`{x0}`, `{x1}`)
    /// into v0..v7 and v8..v15 ([`sdot_row`]).
    #[cfg(target_feature = "dotprod")]
    macro_rules! sdot_step {
        () => {
            concat!(
                "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{x0}], #64\n",
                "ld1 {{v20.16b, v21.16b, v22.16b, v23.16b}}, [{x1}], #64\n",
                sdot_row!("w0", 24, 0, 8),
                sdot_row!("w1", 25, 1, 9),
                sdot_row!("w2", 26, 2, 10),
                sdot_row!("w3", 27, 3, 11),
                sdot_row!("w4", 28, 4, 12),
                sdot_row!("w5", 29, 5, 13),
                sdot_row!("w6", 30, 6, 14),
                sdot_row!("w7", 31, 7, 15),
            )
        };
    }

    /// As [`sdot_row`] for one group of four tokens (v16..v19), into `v$a`.
    #[cfg(target_feature = "dotprod")]
    macro_rules! sdot_row1 {
        ($w:literal, $wr:literal, $a:literal) => {
            concat!(
                "ldr q",
                $wr,
                ", [{",
                $w,
                "}], #16\n",
                "sdot v",
                $a,
                ".4s, v16.16b, v",
                $wr,
                ".4b[0]\n",
                "sdot v",
                $a,
                ".4s, v17.16b, v",
                $wr,
                ".4b[1]\n",
                "sdot v",
                $a,
                ".4s, v18.16b, v",
                $wr,
                ".4b[2]\n",
                "sdot v",
                $a,
                ".4s, v19.16b, v",
                $wr,
                ".4b[3]\n",
            )
        };
    }

    /// The exact dot products of eight weight rows (`cols` bytes at each `w[r]`) with two groups of four tokens
    /// packed by [`pack_sdot`] (`4 * cols` bytes at each `x[h]`): lane `i` of `acc[h][r]` is row `r` times token
    /// `i` of group `h`.
    ///
    /// # Safety
    ///
    /// `cols` is a positive multiple of 16, and the pointers are valid for reading those bytes.
    #[cfg(target_feature = "dotprod")]
    #[inline(always)]
    unsafe fn sdot_tile(w: [*const i8; 8], x: [*const i8; 2], cols: usize) -> [[int32x4_t; 8]; 2] {
        // SAFETY: register-only, AArch64 baseline (the asm overwrites them all).
        let mut acc = [[unsafe { vdupq_n_s32(0) }; 8]; 2];
        // SAFETY: `cols / 16` steps (two per iteration) read 16 bytes from each weight pointer and 64 from each
        // activation pointer (copies, advanced by the post-indexed loads): `cols` and `4 * cols` bytes; no
        // alignment is needed. The asm writes only the registers it declares and touches no stack. `sdot` is
        // there: this is compiled only with the `dotprod` target feature.
        unsafe {
            rows8_asm!(
                w,
                [
                    zero_accumulators!(),
                    "cbz {n}, 3f",
                    "2:",
                    sdot_step!(),
                    sdot_step!(),
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                    "3:",
                    "cbz {odd}, 4f",
                    sdot_step!(),
                    "4:",
                ],
                n = inout(reg) cols / 32 => _,
                odd = in(reg) cols / 16 % 2,
                x0 = inout(reg) x[0] => _,
                x1 = inout(reg) x[1] => _,
                out("v0") acc[0][0], out("v1") acc[0][1], out("v2") acc[0][2], out("v3") acc[0][3],
                out("v4") acc[0][4], out("v5") acc[0][5], out("v6") acc[0][6], out("v7") acc[0][7],
                out("v8") acc[1][0], out("v9") acc[1][1], out("v10") acc[1][2], out("v11") acc[1][3],
                out("v12") acc[1][4], out("v13") acc[1][5], out("v14") acc[1][6], out("v15") acc[1][7],
            );
        }
        acc
    }

    /// [`sdot_tile`] for one group of four tokens.
    ///
    /// # Safety
    ///
    /// As for [`sdot_tile`].
    #[cfg(target_feature = "dotprod")]
    #[inline(always)]
    unsafe fn sdot_tile1(w: [*const i8; 8], x: *const i8, cols: usize) -> [int32x4_t; 8] {
        // SAFETY: register-only, AArch64 baseline (the asm overwrites them all).
        let mut acc = [unsafe { vdupq_n_s32(0) }; 8];
        // SAFETY: as in `sdot_tile`, for one activation pointer.
        unsafe {
            rows8_asm!(
                w,
                [
                    "movi v0.4s, #0", "movi v1.4s, #0", "movi v2.4s, #0", "movi v3.4s, #0",
                    "movi v4.4s, #0", "movi v5.4s, #0", "movi v6.4s, #0", "movi v7.4s, #0",
                    "2:",
                    "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{x0}], #64",
                    sdot_row1!("w0", 24, 0),
                    sdot_row1!("w1", 25, 1),
                    sdot_row1!("w2", 26, 2),
                    sdot_row1!("w3", 27, 3),
                    sdot_row1!("w4", 28, 4),
                    sdot_row1!("w5", 29, 5),
                    sdot_row1!("w6", 30, 6),
                    sdot_row1!("w7", 31, 7),
                    "subs {n}, {n}, #1",
                    "b.ne 2b",
                ],
                n = inout(reg) cols / 16 => _,
                x0 = inout(reg) x => _,
                out("v0") acc[0], out("v1") acc[1], out("v2") acc[2], out("v3") acc[3],
                out("v4") acc[4], out("v5") acc[5], out("v6") acc[6], out("v7") acc[7],
            );
        }
        acc
    }

    /// `u32` words [`pack_sdot`] wants for `tokens` tokens of `cols` columns: `cols` per whole group of four
    /// tokens where `cols` is a positive multiple of 16, else none.
    #[cfg(target_feature = "dotprod")]
    pub(crate) const fn sdot_workspace_words(tokens: usize, cols: usize) -> usize {
        if cols >= 16 && cols.is_multiple_of(16) {
            tokens / 4 * cols
        } else {
            0
        }
    }

    /// Packs the activations of one-block-per-token inputs (`block >= cols`, `cols` a positive multiple of 16)
    /// for [`gemm_packed_sdot`]: each group of four whole tokens (those with `cols` activations and a scale) is
    /// `cols` words of `work`, 16 bytes per four columns `4j..4j + 4` of the group's tokens, in token order, then
    /// the next four columns. Returns how many groups it packed (0: none, the input is read in place).
    #[cfg(target_feature = "dotprod")]
    pub(crate) fn pack_sdot(
        x: &[i8],
        cols: usize,
        block: usize,
        scales: &[f32],
        tokens: usize,
        work: &mut [u32],
    ) -> usize {
        if block < cols || sdot_workspace_words(4, cols) == 0 {
            return 0;
        }
        let groups = (tokens.min(x.len() / cols).min(scales.len()) / 4).min(work.len() / cols);
        for (g, dst) in work.chunks_exact_mut(cols).take(groups).enumerate() {
            let src = &x[4 * g * cols..][..4 * cols];
            for (c, d) in (0..cols).step_by(16).zip(dst.chunks_exact_mut(16)) {
                // SAFETY: the four tokens' columns `c..c + 16` lie within `src` (`c + 16 <= cols`) and `d` is 16
                // words (64 bytes); `st4` interleaves the four tokens' 4-byte groups, `ld1` / `st4` need no
                // alignment beyond the words'.
                unsafe {
                    let v = core::array::from_fn::<_, 4, _>(|t| {
                        vreinterpretq_s32_s8(vld1q_s8(src.as_ptr().add(t * cols + c)))
                    });
                    vst4q_s32(d.as_mut_ptr().cast(), int32x4x4_t(v[0], v[1], v[2], v[3]));
                }
            }
        }
        groups
    }

    /// Stores eight rows (`f[r]`, lane `j`: token `j`) of four tokens at `o`: token `j`'s rows at `o + j * stride`.
    ///
    /// # Safety
    ///
    /// `o + j * stride + r` is valid for writing for `j < 4`, `r < 8`.
    #[cfg(target_feature = "dotprod")]
    #[inline(always)]
    unsafe fn store_by_token(f: [float32x4_t; 8], o: *mut f32, stride: usize) {
        let [lo, hi] = [
            float32x4x4_t(f[0], f[1], f[2], f[3]),
            float32x4x4_t(f[4], f[5], f[6], f[7]),
        ];
        // SAFETY: the caller's.
        unsafe {
            vst4q_lane_f32::<0>(o, lo);
            vst4q_lane_f32::<0>(o.add(4), hi);
            let o = o.add(stride);
            vst4q_lane_f32::<1>(o, lo);
            vst4q_lane_f32::<1>(o.add(4), hi);
            let o = o.add(stride);
            vst4q_lane_f32::<2>(o, lo);
            vst4q_lane_f32::<2>(o.add(4), hi);
            let o = o.add(stride);
            vst4q_lane_f32::<3>(o, lo);
            vst4q_lane_f32::<3>(o.add(4), hi);
        }
    }

    /// The one-block-per-row GEMM on activations packed by [`pack_sdot`] (`groups` groups in `packed`; `x` and
    /// `scales` are the input's, unpacked): tokens `first..first + n` into `out[(t - first) * rows..][..rows]`
    /// for the largest `n <= tokens` of whole packed groups, returned (0 where `first` is not a group's first
    /// token or the lengths fall short: the caller then runs the rest as usual). Rows in chunks of about
    /// [`GEMM_WEIGHT_CHUNK`](super::super::GEMM_WEIGHT_CHUNK) bytes, each serving the tokens eight at a time by
    /// [`sdot_tile`] (a last group of four by [`sdot_tile1`]) in tiles of eight rows; the rows past the last
    /// multiple of eight through [`row_gemm`](super::a64::row_gemm). Each lane's `i32` is the exact dot product,
    /// then `0.0 + (p as f32) * scale` as in the reference.
    #[cfg(target_feature = "dotprod")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_packed_sdot(
        w: &[i8],
        cols: usize,
        rows: usize,
        packed: &[u32],
        groups: usize,
        x: &[i8],
        scales: &[f32],
        first: usize,
        tokens: usize,
        out: &mut [f32],
    ) -> usize {
        use super::{sdot, SDOT_TOKENS};
        let g0 = first / 4;
        let ng = (tokens / 4).min(groups.saturating_sub(g0));
        let n = 4 * ng;
        if !first.is_multiple_of(4)
            || ng == 0
            || sdot_workspace_words(4, cols) == 0
            || packed.len() < (g0 + ng) * cols
            || w.len() < rows * cols
            || x.len() < (first + n) * cols
            || scales.len() < first + n
            || out.len() < n * rows
        {
            return 0;
        }
        let rows8 = rows / 8 * 8;
        let chunk = (super::super::GEMM_WEIGHT_CHUNK / cols)
            .max(1)
            .next_multiple_of(8);
        let (wb, xb, sb, ob) = (
            w.as_ptr(),
            packed[g0 * cols..].as_ptr().cast::<i8>(),
            scales[first..].as_ptr(),
            out.as_mut_ptr(),
        );
        for rc in (0..rows8).step_by(chunk) {
            let re = rows8.min(rc + chunk);
            for g in (0..ng).step_by(2) {
                // SAFETY (the pointer arithmetic and accesses below): groups `g, g + 1 < ng` are `4 * cols`
                // bytes each from `xb` (within `packed`), their tokens' scales `4 * g..4 * g + 8 <= n` from `sb`
                // and outputs `(4 * g + j) * rows + r` (`r < rows`) from `ob` (within `out`), rows
                // `r0..r0 + 8 <= rows8` of `w` `cols` bytes each (the lengths checked above); `cols` is a
                // positive multiple of 16.
                unsafe {
                    let xg = xb.add(4 * g * cols);
                    let sv = vld1q_f32(sb.add(4 * g));
                    let og = ob.add(4 * g * rows);
                    for r0 in (rc..re).step_by(8) {
                        let wr = wb.add(r0 * cols);
                        let wp: [*const i8; 8] = core::array::from_fn(|r| wr.add(r * cols));
                        if g + 1 < ng {
                            let acc = sdot_tile(wp, [xg, xg.add(4 * cols)], cols);
                            let sv1 = vld1q_f32(sb.add(4 * g + 4));
                            store_by_token(acc[0].map(|a| scale(a, sv)), og.add(r0), rows);
                            let o1 = og.add(4 * rows + r0);
                            store_by_token(acc[1].map(|a| scale(a, sv1)), o1, rows);
                        } else {
                            let acc = sdot_tile1(wp, xg, cols);
                            store_by_token(acc.map(|a| scale(a, sv)), og.add(r0), rows);
                        }
                    }
                }
            }
        }
        if rows8 < rows {
            row_gemm::<SDOT_TOKENS>(
                &w[rows8 * cols..],
                cols,
                rows - rows8,
                &x[first * cols..],
                &scales[first..],
                n,
                &mut out[rows8..],
                rows,
                sdot,
            );
        }
        n
    }

    /// `0.0 + (p as f32) * scale` for four `i32` sums `p` in a vector, with separate `scvtf`, `fmul` and `fadd`:
    /// the reference's single-block sequence, lane by lane, so the same bits.
    #[inline(always)]
    fn scale(p: int32x4_t, scale: float32x4_t) -> float32x4_t {
        // SAFETY: register-only, AArch64 baseline.
        unsafe { vaddq_f32(vdupq_n_f32(0.0), vmulq_f32(vcvtq_f32_s32(p), scale)) }
    }

    /// [`row_gemm`]'s contract with the `smull` / `smlal2` / `sadalp` step: with `cols` a
    /// multiple of 16, rows in tiles of eight by two tokens through [`mull_tile`], the last odd token and the
    /// rows past the last multiple of eight through `row_gemm`. The caller has checked the lengths as for
    /// `row_gemm`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn mull_row_gemm(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        scales: &[f32],
        tokens: usize,
        out: &mut [f32],
        stride: usize,
    ) {
        use super::{mull_pair_step, MULL_TOKENS};
        if !cols.is_multiple_of(16) {
            return row_gemm::<MULL_TOKENS>(
                w,
                cols,
                rows,
                x,
                scales,
                tokens,
                out,
                stride,
                mull_pair_step,
            );
        }
        let (rows8, pairs) = (rows / 8 * 8, tokens / 2 * 2);
        assert!(
            w.len() >= rows * cols
                && x.len() >= tokens * cols
                && scales.len() >= tokens
                && (tokens == 0 || out.len() >= (tokens - 1) * stride + rows)
        );
        let (wb, xb, ob) = (w.as_ptr(), x.as_ptr(), out.as_mut_ptr());
        for t0 in (0..pairs).step_by(2) {
            // SAFETY: (all the pointer arithmetic and accesses below) tokens `t0, t0 + 1 < tokens` start within
            // `x` and have `cols` bytes there, their outputs `(t0 + t) * stride + r` for `r < rows` are within
            // `out`, and rows `r0..r0 + 8 <= rows` of `w` hold `cols` bytes each (the lengths asserted above).
            let (xp, op) = unsafe {
                (
                    [xb.add(t0 * cols), xb.add((t0 + 1) * cols)],
                    [ob.add(t0 * stride), ob.add((t0 + 1) * stride)],
                )
            };
            // SAFETY: register-only, AArch64 baseline.
            let sv = unsafe { [vdupq_n_f32(scales[t0]), vdupq_n_f32(scales[t0 + 1])] };
            for r0 in (0..rows8).step_by(8) {
                // SAFETY: as above; `cols` is a multiple of 16 and the weights' range is the caller's (the
                // converter's -127..=127, checked in debug builds).
                unsafe {
                    let wr = wb.add(r0 * cols);
                    let wp: [*const i8; 8] = core::array::from_fn(|r| wr.add(r * cols));
                    let acc = mull_tile(wp, xp, cols);
                    for t in 0..2 {
                        let a = &acc[t];
                        for q in 0..2 {
                            let a = &a[4 * q..];
                            let s = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
                            vst1q_f32(op[t].add(r0 + 4 * q), scale(s, sv[t]));
                        }
                    }
                }
            }
        }
        if pairs < tokens {
            let t = pairs;
            row_gemm::<1>(
                w,
                cols,
                rows8,
                &x[t * cols..],
                &scales[t..],
                1,
                &mut out[t * stride..],
                stride,
                mull_pair_step,
            );
        }
        if rows8 < rows {
            row_gemm::<MULL_TOKENS>(
                &w[rows8 * cols..],
                cols,
                rows - rows8,
                x,
                scales,
                tokens,
                &mut out[rows8..],
                stride,
                mull_pair_step,
            );
        }
    }
}

/// [`reference::gemv_i16_i32`](super::reference::gemv_i16_i32) for AArch64 (the attention scores): four rows at a
/// time, 8 columns per step, `smlal` / `smlal2` adding each `i16` product into `i32` lanes (wrapping, like the
/// reference's adds: integer addition modulo 2^32 does not depend on the order), the columns past the last
/// multiple of 8 added one by one. Degenerate calls (`cols == 0`, `x` shorter than `cols`) go to the reference.
#[cfg(target_arch = "aarch64")]
pub fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
    use super::reference;
    if cols == 0 || x.len() < cols {
        return reference::gemv_i16_i32(w, cols, x, out);
    }
    let x = &x[..cols];
    let rows = out.len().min(w.len() / cols);
    let (mut quads, rest) = out[..rows].split_at_mut(rows / 4 * 4);
    let mut r = 0;
    while let Some((o, tail)) = quads.split_first_chunk_mut::<4>() {
        *o = i16_dots(core::array::from_fn(|i| &w[(r + i) * cols..][..cols]), x);
        quads = tail;
        r += 4;
    }
    for o in rest {
        [*o] = i16_dots([&w[r * cols..][..cols]], x);
        r += 1;
    }
}

/// Whether a multi-query product's slices hold every row it names: `rows` rows of `w` and `queries` rows of `x`
/// (`cols` each, `cols > 0`), and `queries > 0` output rows `stride >= rows` apart. Otherwise the reference runs.
#[cfg(target_arch = "aarch64")]
fn whole_rows(
    w: usize,
    cols: usize,
    rows: usize,
    x: usize,
    queries: usize,
    out: usize,
    stride: usize,
) -> bool {
    cols > 0
        && queries > 0
        && stride >= rows
        && rows.checked_mul(cols).is_some_and(|n| w >= n)
        && queries.checked_mul(cols).is_some_and(|n| x >= n)
        && (queries - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(rows))
            .is_some_and(|n| out >= n)
}

/// [`reference::gemm_i16_i32`](super::reference::gemm_i16_i32) for AArch64: tiles of four queries by four keys
/// ([`i16_tile`]: each 8-column step loads four query and four key vectors for 32 `smlal` / `smlal2`, against
/// 8 loads per 8 in the one-query [`gemv_i16_i32`]), the keys past the last multiple of four and the queries past
/// the last multiple of four through [`i16_dots`]. Degenerate or short calls go to the reference.
#[cfg(target_arch = "aarch64")]
pub fn gemm_i16_i32(
    w: &[i16],
    cols: usize,
    rows: usize,
    x: &[i16],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    use super::reference;
    if !whole_rows(w.len(), cols, rows, x.len(), queries, out.len(), stride) {
        return reference::gemm_i16_i32(w, cols, rows, x, queries, out, stride);
    }
    let key = |j: usize| &w[j * cols..][..cols];
    let query = |i: usize| &x[i * cols..][..cols];
    let (q4, r4) = (queries / 4 * 4, rows / 4 * 4);
    for i0 in (0..q4).step_by(4) {
        let qs: [&[i16]; 4] = core::array::from_fn(|a| query(i0 + a));
        for j0 in (0..r4).step_by(4) {
            let tile = i16_tile(qs, core::array::from_fn(|b| key(j0 + b)));
            for (a, sums) in tile.iter().enumerate() {
                out[(i0 + a) * stride + j0..][..4].copy_from_slice(sums);
            }
        }
        for j in r4..rows {
            for (a, &q) in qs.iter().enumerate() {
                [out[(i0 + a) * stride + j]] = i16_dots([key(j)], q);
            }
        }
    }
    for i in q4..queries {
        gemv_i16_i32(
            &w[..rows * cols],
            cols,
            query(i),
            &mut out[i * stride..][..rows],
        );
    }
}

/// The wrapping dot products of four queries with four keys (all the same length), for [`gemm_i16_i32`]:
/// `result[a][b] = q[a] . k[b]`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn i16_tile(q: [&[i16]; 4], k: [&[i16]; 4]) -> [[i32; 4]; 4] {
    use a64::*;
    let n = q[0].len();
    assert!(q.iter().chain(&k).all(|r| r.len() == n));
    let main = n / 8 * 8;
    // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
    let mut acc = [[unsafe { vdupq_n_s32(0) }; 4]; 4];
    for c in (0..main).step_by(8) {
        // SAFETY: `c + 8 <= main <= n`, the length of every row (asserted above); `ld1` needs no alignment
        // beyond the `i16`s'. The rest is register-only.
        unsafe {
            let qv = q.map(|r| vld1q_s16(r.as_ptr().add(c)));
            let kv = k.map(|r| vld1q_s16(r.as_ptr().add(c)));
            for (acc, qv) in acc.iter_mut().zip(qv) {
                for (a, kv) in acc.iter_mut().zip(kv) {
                    *a = vmlal_high_s16(vmlal_s16(*a, vget_low_s16(kv), vget_low_s16(qv)), kv, qv);
                }
            }
        }
    }
    let mut sums = [[0i32; 4]; 4];
    for (s, a) in sums.iter_mut().zip(acc) {
        // SAFETY: register-only, AArch64 baseline; `s` is four i32s.
        unsafe {
            let v = vpaddq_s32(vpaddq_s32(a[0], a[1]), vpaddq_s32(a[2], a[3]));
            vst1q_s32(s.as_mut_ptr(), v);
        }
    }
    if main < n {
        for (s, qr) in sums.iter_mut().zip(q) {
            for (s, kr) in s.iter_mut().zip(k) {
                *s = kr[main..]
                    .iter()
                    .zip(&qr[main..])
                    .fold(*s, |s, (&a, &b)| s.wrapping_add(a as i32 * b as i32));
            }
        }
    }
    sums
}

/// The `R` rows' wrapping dot products with `x` (every row `x.len()` long), for [`gemv_i16_i32`].
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn i16_dots<const R: usize>(rows: [&[i16]; R], x: &[i16]) -> [i32; R] {
    use a64::*;
    let n = x.len();
    assert!(rows.iter().all(|r| r.len() == n));
    let main = n / 8 * 8;
    // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
    let mut acc = [unsafe { vdupq_n_s32(0) }; R];
    let (mut xp, mut wp) = (x.as_ptr(), rows.map(<[i16]>::as_ptr));
    for _ in 0..main / 8 {
        // SAFETY: `main / 8` steps of 8 values stay within `x` and every row (`main <= n`, the length of each,
        // asserted above); `ld1` needs no alignment beyond the `i16`s'.
        unsafe {
            let xv = vld1q_s16(xp);
            xp = xp.add(8);
            for (a, p) in acc.iter_mut().zip(&mut wp) {
                let wv = vld1q_s16(*p);
                *p = p.add(8);
                *a = vmlal_high_s16(vmlal_s16(*a, vget_low_s16(wv), vget_low_s16(xv)), wv, xv);
            }
        }
    }
    let mut sums = [0i32; R];
    if R == 4 {
        // SAFETY: register-only, AArch64 baseline; `sums` is four i32s.
        unsafe {
            let s = vpaddq_s32(vpaddq_s32(acc[0], acc[1]), vpaddq_s32(acc[2], acc[3]));
            vst1q_s32(sums.as_mut_ptr(), s);
        }
    } else {
        // SAFETY: register-only, AArch64 baseline.
        sums = acc.map(|a| unsafe { vaddvq_s32(a) });
    }
    if main < n {
        for (s, row) in sums.iter_mut().zip(rows) {
            *s = row[main..]
                .iter()
                .zip(&x[main..])
                .fold(*s, |s, (&a, &b)| s.wrapping_add(a as i32 * b as i32));
        }
    }
    sums
}

/// The `smull` / `sadalp` inner loop ([`mull_step`]); with `PAIR`, the `smull` / `smlal2` / `sadalp` one
/// ([`mull_pair_step`]), for rows without -128 only.
#[cfg(target_arch = "aarch64")]
struct MullSteps<const PAIR: bool>;

/// Any int8 rows.
#[cfg(target_arch = "aarch64")]
type Mull = MullSteps<false>;

/// Rows without -128 (V; the linear layers' weights).
#[cfg(target_arch = "aarch64")]
type MullPair = MullSteps<true>;

#[cfg(target_arch = "aarch64")]
impl<const PAIR: bool> MullSteps<PAIR> {
    /// The 16-column step.
    #[inline(always)]
    fn step16(acc: a64::int32x4_t, w: a64::int8x16_t, x: a64::int8x16_t) -> a64::int32x4_t {
        if PAIR {
            mull_pair_step(acc, w, x)
        } else {
            mull_step(acc, w, x)
        }
    }

    /// The 8-column step: one `smull`, one `sadalp`.
    #[inline(always)]
    fn step8(acc: a64::int32x4_t, w: a64::int8x8_t, x: a64::int8x8_t) -> a64::int32x4_t {
        // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
        unsafe { a64::vpadalq_s16(acc, a64::vmull_s8(w, x)) }
    }
}

#[cfg(target_arch = "aarch64")]
impl<const PAIR: bool> RowDots for MullSteps<PAIR> {
    #[inline(always)]
    fn dots<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> ([i32; R], usize) {
        a64::dots(rows, x, Self::step16, Self::step8)
    }

    #[inline(always)]
    fn tile(rows: [&[i8]; 4], xs: [&[i8]; 4]) -> ([[i32; 4]; 4], usize) {
        a64::tile_dots(rows, xs, Self::step16, Self::step8)
    }
}

/// [`reference::gemm_i8_i32`](super::reference::gemm_i8_i32) for AArch64 (the attention's P.V for several
/// queries) where `w` holds no -128 (V, from `quant::quantize_row`): tiles of four `x` rows by four `w` rows,
/// each 16-column step loading four vectors of each for 16 products (`sdot` where the CPU has it, else
/// [`mull_pair_step`], which needs the missing -128), against five loads per four products in the one-row GEMV;
/// rows past the last multiple of four and rows of `x` past the last multiple of four through the GEMV's dot
/// products. Degenerate or short calls go to the reference. Debug builds assert the precondition.
#[cfg(target_arch = "aarch64")]
pub fn gemm_i8_i32(
    w: &[i8],
    cols: usize,
    rows: usize,
    x: &[i8],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    debug_assert_weights(w, cols, rows);
    #[cfg(target_feature = "dotprod")]
    return gemm_tiled::<Sdot>(w, cols, rows, x, queries, out, stride);
    #[allow(unreachable_code)]
    gemm_tiled::<MullPair>(w, cols, rows, x, queries, out, stride)
}

/// [`gemm_i8_i32`] with `K`'s steps.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn gemm_tiled<K: RowDots>(
    w: &[i8],
    cols: usize,
    rows: usize,
    x: &[i8],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    if !whole_rows(w.len(), cols, rows, x.len(), queries, out.len(), stride) {
        return super::reference::gemm_i8_i32(w, cols, rows, x, queries, out, stride);
    }
    let row = |j: usize| &w[j * cols..][..cols];
    let xrow = |i: usize| &x[i * cols..][..cols];
    let (q4, r4) = (queries / 4 * 4, rows / 4 * 4);
    for i0 in (0..q4).step_by(4) {
        let xs: [&[i8]; 4] = core::array::from_fn(|a| xrow(i0 + a));
        for j0 in (0..r4).step_by(4) {
            let ws: [&[i8]; 4] = core::array::from_fn(|b| row(j0 + b));
            let (tile, done) = K::tile(ws, xs);
            for (a, (sums, x)) in tile.into_iter().zip(xs).enumerate() {
                let sums = blocked::with_tail(ws, (sums, done), x);
                out[(i0 + a) * stride + j0..][..4].copy_from_slice(&sums);
            }
        }
        for j in r4..rows {
            for (a, &x) in xs.iter().enumerate() {
                out[(i0 + a) * stride + j] = K::full_dot(row(j), x);
            }
        }
    }
    for i in q4..queries {
        gemv_blocked::<K>(
            &w[..rows * cols],
            cols,
            xrow(i),
            &mut out[i * stride..][..rows],
        );
    }
}

/// [`reference::gemv_i8_i32`](super::reference::gemv_i8_i32) with `smull` / `sadalp`: 16 columns per step, each `i16` product vector added
/// pairwise into `i32` lanes (never summed in `i16`, which two `-128 * -128` products would overflow).
#[cfg(target_arch = "aarch64")]
pub fn gemv_i8_i32_mull(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    gemv_blocked::<Mull>(w, cols, x, out)
}

/// [`reference::gemv_i8_blocks_f32`](super::reference::gemv_i8_blocks_f32) with the dot products of [`gemv_i8_i32_mull`].
#[cfg(target_arch = "aarch64")]
pub fn gemv_i8_blocks_mull(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    debug_assert_weights(w, cols, out.len());
    a64::gemv_blocks(w, cols, x, block, scales, out, mull_pair_step)
}

/// The `smull` / `sadalp` step: 16 columns of one row into four `i32` lanes.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn mull_step(acc: a64::int32x4_t, w: a64::int8x16_t, x: a64::int8x16_t) -> a64::int32x4_t {
    use a64::*;
    // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
    unsafe {
        let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
        vpadalq_s16(vpadalq_s16(acc, lo), vmull_high_s8(w, x))
    }
}

/// Tokens per row tile of the one-block-per-row `smull` GEMM: four rows by this many tokens is 24 `i32`
/// accumulators, plus four weight vectors, one of activations and the `i16` products (31 of 32 registers).
#[cfg(target_arch = "aarch64")]
const MULL_TOKENS: usize = 4;

/// Tokens per row tile of the one-block-per-row `sdot` GEMM (as [`MULL_TOKENS`]).
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
const SDOT_TOKENS: usize = 4;

/// The step of the block kernels without `dotprod` (the linear layers): 16 columns of one row into four `i32`
/// lanes in three instructions, `smull` (low halves) and `smlal2` (high halves) into one `i16` vector, then one
/// `sadalp`. Each `i16` lane sums two products, exact only while that sum fits: with weights never -128 (the
/// converter quantises them to `-127..=127`) a product is at most `127 * 128` in magnitude and a pair at most
/// `32512 < 32767`, whatever the activations (`-128..=127`). With a weight of -128 the lane may wrap; debug
/// builds assert that no weight is -128 (see [`gemm_i8_blocks_mull`]).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn mull_pair_step(acc: a64::int32x4_t, w: a64::int8x16_t, x: a64::int8x16_t) -> a64::int32x4_t {
    use a64::*;
    // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
    unsafe {
        let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
        vpadalq_s16(acc, vmlal_high_s8(lo, w, x))
    }
}

/// Debug builds: panics if one of the first `rows` rows of `w` (`cols` wide) holds -128, which
/// [`mull_pair_step`] cannot take (the linear layers' weights are `-127..=127`).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn debug_assert_weights(w: &[i8], cols: usize, rows: usize) {
    if cfg!(debug_assertions) {
        let used = &w[..w.len().min(rows.saturating_mul(cols))];
        assert!(
            !used.contains(&-128),
            "block kernel weights must be in -127..=127"
        );
    }
}

/// [`reference::gemm_i8_blocks_f32`](super::reference::gemm_i8_blocks_f32) with the multiply-adds of
/// [`gemv_i8_blocks_mull`], four tokens at a time (then token by token).
#[cfg(target_arch = "aarch64")]
pub fn gemm_i8_blocks_mull(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    debug_assert_weights(w, cols, rows);
    a64::gemm_blocks::<MULL_TOKENS, true>(w, cols, x, block, scales, rows, out, mull_pair_step)
}

// ---------------------------------------------------------------------------------------------------------------
// aarch64 + dotprod: sdot (Armv8.2 dot product, Pi 5)
// ---------------------------------------------------------------------------------------------------------------

/// `acc[i] + sum_{j<4} a[4i + j] * b[4i + j]` for each of the four `i32` lanes: one `sdot`.
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
#[inline(always)]
fn sdot(mut acc: a64::int32x4_t, a: a64::int8x16_t, b: a64::int8x16_t) -> a64::int32x4_t {
    // SAFETY: `sdot` reads and writes only the named vector registers (no memory, stack or flags) and exists on
    // every CPU this code can run on, because it is compiled only with the `dotprod` target feature enabled.
    unsafe {
        core::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// The `sdot` inner loop.
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
struct Sdot;

#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
impl RowDots for Sdot {
    #[inline(always)]
    fn dots<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> ([i32; R], usize) {
        use a64::*;
        // An 8-column step is a 16-column one whose upper half is zero.
        // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
        let widen = |v: int8x8_t| unsafe { vcombine_s8(v, vdup_n_s8(0)) };
        a64::dots(rows, x, sdot, |acc, w, x| sdot(acc, widen(w), widen(x)))
    }

    #[inline(always)]
    fn tile(rows: [&[i8]; 4], xs: [&[i8]; 4]) -> ([[i32; 4]; 4], usize) {
        use a64::*;
        // SAFETY: register-only, AArch64 baseline (see `a64::dots`).
        let widen = |v: int8x8_t| unsafe { vcombine_s8(v, vdup_n_s8(0)) };
        a64::tile_dots(rows, xs, sdot, |acc, w, x| sdot(acc, widen(w), widen(x)))
    }
}

/// [`reference::gemv_i8_i32`](super::reference::gemv_i8_i32) with `sdot`: 16 columns per instruction per row.
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
pub fn gemv_i8_i32_sdot(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    gemv_blocked::<Sdot>(w, cols, x, out)
}

/// [`reference::gemv_i8_blocks_f32`](super::reference::gemv_i8_blocks_f32) with the dot products of [`gemv_i8_i32_sdot`].
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
pub fn gemv_i8_blocks_sdot(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    a64::gemv_blocks(w, cols, x, block, scales, out, sdot)
}

/// [`reference::gemm_i8_blocks_f32`](super::reference::gemm_i8_blocks_f32) with `sdot`, four tokens at a time
/// (then token by token).
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
pub fn gemm_i8_blocks_sdot(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    a64::gemm_blocks::<SDOT_TOKENS, false>(w, cols, x, block, scales, rows, out, sdot)
}

// ---------------------------------------------------------------------------------------------------------------
// 32-bit ARM (armv7 + NEON): vmull.s8 + vpadal.s16 in inline assembly
// ---------------------------------------------------------------------------------------------------------------

/// Four rows' dot products with `x` over the columns a vector step covers, and that column count.
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
fn armv7_dots4(rows: [&[i8]; ROWS], x: &[i8]) -> ([i32; ROWS], usize) {
    let n16 = x.len() / 16;
    let n8 = (x.len() % 16) / 8;
    assert!(rows.iter().all(|r| r.len() == x.len()));
    let mut sums = [0i32; ROWS];
    // SAFETY: every row and `x` hold `x.len()` readable bytes (asserted above, and the driver slices them so), and
    // the asm reads `16 * n16 + 8 * n8 <= x.len()` bytes from each through its own copies of the pointers. It
    // writes exactly the 16 bytes of `sums`, clobbers only the declared vector registers and the flags, and
    // uses no stack. `vld1.8` without an alignment qualifier accepts any address. NEON is present: the
    // `arm-neon` feature is documented to require a NEON CPU, and the assembler rejects this code unless NEON
    // is enabled (`-C target-feature=+neon`).
    unsafe {
        core::arch::asm!(
            "vmov.i32 q12, #0",
            "vmov.i32 q13, #0",
            "vmov.i32 q14, #0",
            "vmov.i32 q15, #0",
            "cmp {n16}, #0",
            "beq 2f",
            "1:",
            "vld1.8 {{d0, d1}}, [{x}]!",
            "vld1.8 {{d2, d3}}, [{w0}]!",
            "vld1.8 {{d4, d5}}, [{w1}]!",
            "vld1.8 {{d6, d7}}, [{w2}]!",
            "vld1.8 {{d8, d9}}, [{w3}]!",
            "vmull.s8 q8, d2, d0",
            "vmull.s8 q9, d3, d1",
            "vmull.s8 q10, d4, d0",
            "vmull.s8 q11, d5, d1",
            "vpadal.s16 q12, q8",
            "vpadal.s16 q12, q9",
            "vpadal.s16 q13, q10",
            "vpadal.s16 q13, q11",
            "vmull.s8 q8, d6, d0",
            "vmull.s8 q9, d7, d1",
            "vmull.s8 q10, d8, d0",
            "vmull.s8 q11, d9, d1",
            "vpadal.s16 q14, q8",
            "vpadal.s16 q14, q9",
            "vpadal.s16 q15, q10",
            "vpadal.s16 q15, q11",
            "subs {n16}, {n16}, #1",
            "bne 1b",
            "2:",
            "cmp {n8}, #0",
            "beq 3f",
            "vld1.8 {{d0}}, [{x}]",
            "vld1.8 {{d2}}, [{w0}]",
            "vld1.8 {{d4}}, [{w1}]",
            "vld1.8 {{d6}}, [{w2}]",
            "vld1.8 {{d8}}, [{w3}]",
            "vmull.s8 q8, d2, d0",
            "vmull.s8 q9, d4, d0",
            "vmull.s8 q10, d6, d0",
            "vmull.s8 q11, d8, d0",
            "vpadal.s16 q12, q8",
            "vpadal.s16 q13, q9",
            "vpadal.s16 q14, q10",
            "vpadal.s16 q15, q11",
            "3:",
            // Horizontal sums: rows 0..4 into d24:d25.
            "vpadd.i32 d24, d24, d25",
            "vpadd.i32 d26, d26, d27",
            "vpadd.i32 d28, d28, d29",
            "vpadd.i32 d30, d30, d31",
            "vpadd.i32 d24, d24, d26",
            "vpadd.i32 d25, d28, d30",
            "vst1.32 {{d24, d25}}, [{out}]",
            x = inout(reg) x.as_ptr() => _,
            w0 = inout(reg) rows[0].as_ptr() => _,
            w1 = inout(reg) rows[1].as_ptr() => _,
            w2 = inout(reg) rows[2].as_ptr() => _,
            w3 = inout(reg) rows[3].as_ptr() => _,
            n16 = inout(reg) n16 => _,
            n8 = in(reg) n8,
            out = in(reg) sums.as_mut_ptr(),
            out("q0") _, out("q1") _, out("q2") _, out("q3") _, out("q4") _,
            out("q8") _, out("q9") _, out("q10") _, out("q11") _,
            out("q12") _, out("q13") _, out("q14") _, out("q15") _,
            options(nostack),
        );
    }
    (sums, 16 * n16 + 8 * n8)
}

/// The armv7 inner loop: always four rows; a single row is repeated four times (one asm body stays small).
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
struct Armv7;

#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
impl RowDots for Armv7 {
    #[inline(always)]
    fn dots<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> ([i32; R], usize) {
        let (sums, done) = armv7_dots4(core::array::from_fn(|i| rows[i.min(R - 1)]), x);
        (core::array::from_fn(|i| sums[i]), done)
    }
}

/// [`reference::gemv_i8_i32`](super::reference::gemv_i8_i32) for 32-bit ARM with NEON (Cortex-A7/A53/A72 running a 32-bit OS): the arithmetic
/// of [`gemv_i8_i32_mull`], in `asm!` because the ARM NEON intrinsics are unstable.
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
pub fn gemv_i8_i32_armv7(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    gemv_blocked::<Armv7>(w, cols, x, out)
}

/// [`reference::gemv_i8_blocks_f32`](super::reference::gemv_i8_blocks_f32) with the dot products of [`gemv_i8_i32_armv7`].
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
pub fn gemv_i8_blocks_armv7(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    gemv_blocks_blocked::<Armv7>(w, cols, x, block, scales, out)
}

// ---------------------------------------------------------------------------------------------------------------
// The best kernel compiled for this target
// ---------------------------------------------------------------------------------------------------------------

/// The NEON backend ([`super::Active`] on AArch64, and on 32-bit ARM with `arm-neon`): the best kernels compiled
/// for this target; the 16-bit and multi-token kernels on AArch64 only.
pub struct Neon;

impl super::Kernels for Neon {
    #[inline]
    fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
        gemv_i8_i32(w, cols, x, out)
    }

    #[inline]
    fn gemv_i8_blocks(
        w: &[i8],
        cols: usize,
        x: &[i8],
        block: usize,
        x_scales: &[f32],
        out: &mut [f32],
    ) {
        gemv_i8_blocks(w, cols, x, block, x_scales, out)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
        gemv_i16_i32(w, cols, x, out)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    fn gemm_i16_i32(
        w: &[i16],
        cols: usize,
        rows: usize,
        x: &[i16],
        queries: usize,
        out: &mut [i32],
        stride: usize,
    ) {
        gemm_i16_i32(w, cols, rows, x, queries, out, stride)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    fn gemm_i8_i32(
        w: &[i8],
        cols: usize,
        rows: usize,
        x: &[i8],
        queries: usize,
        out: &mut [i32],
        stride: usize,
    ) {
        gemm_i8_i32(w, cols, rows, x, queries, out, stride)
    }

    #[cfg(target_arch = "aarch64")]
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
        super::neon_rows::gemm_t_i8_f32(wt, h, x, e, tokens, scales, bias, y)
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
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
        gemm_tiles(w, cols, rows, x, block, scales, tokens, out, stride)
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
pub use gemv_i8_blocks_sdot as gemv_i8_blocks;
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
pub use gemv_i8_i32_sdot as gemv_i8_i32;

#[cfg(all(target_arch = "aarch64", not(target_feature = "dotprod")))]
pub use gemv_i8_blocks_mull as gemv_i8_blocks;
#[cfg(all(target_arch = "aarch64", not(target_feature = "dotprod")))]
pub use gemv_i8_i32_mull as gemv_i8_i32;

#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
pub use gemv_i8_blocks_armv7 as gemv_i8_blocks;

/// [`a64::gemm_tiles`] with this build's step (`sdot` with `dotprod`, else `smull` / `sadalp`), for the GEMM
/// dispatcher: `out[t * stride + r]` for the tokens it returns.
#[cfg(target_arch = "aarch64")]
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm_tiles(
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
    #[cfg(target_feature = "dotprod")]
    return a64::gemm_tiles::<SDOT_TOKENS, false>(
        w, cols, rows, x, block, scales, tokens, out, stride, sdot,
    );
    #[cfg(not(target_feature = "dotprod"))]
    debug_assert_weights(w, cols, rows);
    #[cfg(not(target_feature = "dotprod"))]
    a64::gemm_tiles::<MULL_TOKENS, true>(
        w,
        cols,
        rows,
        x,
        block,
        scales,
        tokens,
        out,
        stride,
        mull_pair_step,
    )
}
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
pub use gemv_i8_i32_armv7 as gemv_i8_i32;
