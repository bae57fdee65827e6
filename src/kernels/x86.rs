//! x86-64 AVX2 and AVX-512 VNNI int8 kernels, equal to [`reference`](mod@super::reference) bit for bit.
//!
//! Which of them run is [`super::simd::isa`]'s decision (at run time with the `std` feature, at build time
//! otherwise); without AVX2 the reference runs.
//!
//! # Exactness
//!
//! Each 16-column step sign-extends both operands to `i16` (`vpmovsxbw`) and multiplies with `vpmaddwd`, which
//! adds adjacent `i16` products into `i32` lanes: `2 * (-128 * -128) = 32768` fits `i32`, so nothing saturates
//! or wraps before the `i32` accumulation, and integer addition is associative, so the lane order does not
//! change the result. (`vpmaddubsw`, the usual u8 x i8 trick, saturates to `i16` and is not used for that reason.)
//! The multi-token AVX2 GEMM ([`gemm_rows_avx2`]) does use `vpmaddubsw`, on operands that cannot saturate it: see
//! its documentation.
//!
//! # Choosing the kernels
//!
//! With AVX-512 VNNI ([`Isa::Avx512Vnni`](super::simd::Isa::Avx512Vnni)) the VNNI kernels run, otherwise the
//! AVX2 ones; `ALBERT_EDGE_X86=avx2` keeps the VNNI kernels off (see [`super::simd`]).

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::reference;

/// Whether the AVX2 kernels run ([`super::simd::isa`] has AVX2).
#[inline]
pub fn avx2_available() -> bool {
    super::simd::isa().avx2()
}

/// The x86-64 backend ([`super::Active`] there): the AVX-512 VNNI or AVX2 kernels, as [`super::simd::isa`]
/// decides, the reference without AVX2.
pub struct X86;

impl super::Kernels for X86 {
    #[inline]
    fn gemv_i8_i32(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
        gemv_i8_i32_avx2(w, cols, x, out)
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
        gemv_i8_blocks_x86(w, cols, x, block, x_scales, out)
    }

    #[inline]
    fn gemv_i16_i32(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
        gemv_i16_i32_avx2(w, cols, x, out)
    }

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
        gemm_i16_i32_avx2(w, cols, rows, x, queries, out, stride)
    }

    #[inline(always)]
    fn layer_norm_rows(x: &mut [f32], cols: usize, gamma: &[f32], beta: &[f32], eps: f32) {
        super::x86_rows::layer_norm_rows(x, cols, gamma, beta, eps)
    }

    #[inline(always)]
    fn add_layer_norm_rows(
        sublayer: &mut [f32],
        hidden: &mut [f32],
        cols: usize,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) {
        super::x86_rows::add_layer_norm_rows(sublayer, hidden, cols, gamma, beta, eps)
    }

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
        super::x86_rows::gemm_t_i8_f32(wt, h, x, e, tokens, scales, bias, y)
    }
}

/// AVX2 `out[r] = sum_c w[r * cols + c] * x[c]`, or the reference when AVX2 is absent or the call is degenerate.
pub fn gemv_i8_i32_avx2(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    if !avx2_available() || cols == 0 || x.len() < cols {
        return reference::gemv_i8_i32(w, cols, x, out);
    }
    let rows = out.len().min(w.len() / cols);
    // SAFETY: AVX2 is available (checked above); the kernel reads w[..rows * cols] and x[..cols] only, both
    // within their slices by the definition of `rows` and the check `x.len() >= cols`.
    unsafe { gemv_avx2(&w[..rows * cols], &x[..cols], &mut out[..rows]) }
}

#[target_feature(enable = "avx2")]
unsafe fn gemv_avx2(w: &[i8], x: &[i8], out: &mut [i32]) {
    let cols = x.len();
    let main = cols - cols % 16;
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * cols..(r + 1) * cols];
        let mut acc = _mm256_setzero_si256();
        let mut c = 0;
        while c < main {
            // SAFETY: c + 16 <= main <= cols = row.len() = x.len(): both 16-byte loads are in bounds.
            let (a, b) = unsafe {
                (
                    _mm_loadu_si128(row.as_ptr().add(c) as *const __m128i),
                    _mm_loadu_si128(x.as_ptr().add(c) as *const __m128i),
                )
            };
            let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(a), _mm256_cvtepi8_epi16(b));
            acc = _mm256_add_epi32(acc, prod);
            c += 16;
        }
        // Horizontal sum of the eight i32 lanes (wrapping adds, like the reference's sum in release).
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        *o = _mm_cvtsi128_si32(s).wrapping_add(reference::dot_i8_i32(&row[main..], &x[main..]));
    }
}

/// The best x86-64 block-scaled GEMV for this CPU: [`gemv_i8_blocks_vnni`] with AVX-512 VNNI, else
/// [`gemv_i8_blocks_avx2`] (each falls back to the reference without its features).
pub fn gemv_i8_blocks_x86(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    if vnni_available() {
        gemv_i8_blocks_vnni(w, cols, x, block, scales, out)
    } else {
        gemv_i8_blocks_avx2(w, cols, x, block, scales, out)
    }
}

/// AVX2 [`reference::gemv_i8_blocks_f32`], or the reference when AVX2 is absent or the call is degenerate.
///
/// Four rows at a time: each 16-column step loads `x` once for the four rows (`vpmovsxbw` + `vpmaddwd`, exact as in
/// [`gemv_i8_i32_avx2`]); at the end of a block the four accumulators are reduced together with `vphaddd` into one
/// vector of four `i32` sums, converted (`vcvtdq2ps`, round to nearest like `as f32`), multiplied by the block's
/// scale and added (`vmulps`, `vaddps`: separate, unfused, lane `i` doing exactly row `i`'s scalar sequence), so the
/// result is the reference's bit for bit. Rows past the last multiple of four, and columns past the last multiple
/// of 16 in a block, go through the reference's arithmetic.
pub fn gemv_i8_blocks_avx2(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    // SAFETY (the kernel call): AVX2 is available (checked by `blocks_driver`'s caller below); the kernel reads
    // rows `0..quads` of `w` (each `cols` long), `x[..cols]` and `scales[..nb]`, and writes `out[..quads]`.
    let kernel = |w: &[i8], cols: usize, x: &[i8], block: usize, s: &[f32], o: &mut [f32]| unsafe {
        blocks4_avx2(w, cols, x, block, s, o)
    };
    blocks_driver(avx2_available(), kernel, w, cols, x, block, scales, out)
}

/// AVX-512 VNNI [`reference::gemv_i8_blocks_f32`] (`vpdpbusd` on `x + 128`, corrected by the rows' sums), or the reference when the CPU lacks it
/// or the call is degenerate.
pub fn gemv_i8_blocks_vnni(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    // SAFETY (the kernel call): AVX-512 VNNI, VL and AVX2 are available (checked); bounds as for AVX2.
    let kernel = |w: &[i8], cols: usize, x: &[i8], block: usize, s: &[f32], o: &mut [f32]| unsafe {
        blocks4_vnni(w, cols, x, block, s, o)
    };
    blocks_driver(vnni_available(), kernel, w, cols, x, block, scales, out)
}

/// Runs `kernel` on the rows in whole groups of four (with `x`, `scales` cut to size) and the reference on the rest;
/// the reference alone when `available` is false or the call is degenerate.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn blocks_driver(
    available: bool,
    kernel: impl Fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]),
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    if !available || cols == 0 || block == 0 || x.len() < cols {
        return reference::gemv_i8_blocks_f32(w, cols, x, block, scales, out);
    }
    let rows = out.len().min(w.len() / cols);
    let nb = cols.div_ceil(block).min(scales.len());
    let quads = rows / 4 * 4;
    kernel(
        &w[..quads * cols],
        cols,
        &x[..cols],
        block,
        &scales[..nb],
        &mut out[..quads],
    );
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

/// Whether the AVX-512 VNNI block kernel runs (`vpdpbusd` on 256-bit registers needs AVX-512 VNNI and VL):
/// [`super::simd::isa`] is [`Isa::Avx512Vnni`](super::simd::Isa::Avx512Vnni).
#[inline]
pub fn vnni_available() -> bool {
    super::simd::isa().avx512_vnni()
}

/// [`blocks4_avx2`] with `vpdpbusd`, 32 columns per step. `vpdpbusd` multiplies unsigned by signed bytes, so `x`
/// is offset to `x + 128` (its top bit flipped) and the rows' own sums, taken with a second `vpdpbusd` against
/// all-ones, correct it: `w . x = w . (x + 128) - 128 * sum(w)`. Every product is below 2^15 and four are summed
/// per lane per step, so the `i32` lanes hold exact sums (with wrap-around only where the reference wraps too); the
/// identity holds modulo 2^32 and so exactly. Columns past the last multiple of 32 in a block go through the
/// reference's arithmetic; the `f32` combination is [`blocks4_avx2`]'s.
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn blocks4_vnni(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    debug_assert!(x.len() == cols && w.len() == out.len() * cols && out.len().is_multiple_of(4));
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi8(1);
    for (quad, o) in out.chunks_exact_mut(4).enumerate() {
        let r0 = quad * 4;
        let mut f = _mm_setzero_ps();
        for (b, &scale) in scales.iter().enumerate() {
            let c0 = b * block;
            let n = block.min(cols - c0);
            let main = n - n % 32;
            let z = _mm256_setzero_si256();
            let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
            let (mut s0, mut s1, mut s2, mut s3) = (z, z, z, z);
            let wp = w.as_ptr().wrapping_add(r0 * cols + c0);
            let xp = x.as_ptr().wrapping_add(c0);
            let mut c = 0;
            while c < main {
                // SAFETY: c + 32 <= main <= n and c0 + n <= cols: every 32-byte load lies inside row r0 + i
                // (i < 4) of `w` and inside `x`.
                unsafe {
                    let load = |p: *const i8| _mm256_loadu_si256(p as *const __m256i);
                    let xu = _mm256_xor_si256(load(xp.add(c)), flip);
                    let (w0, w1, w2, w3) = (
                        load(wp.add(c)),
                        load(wp.add(cols + c)),
                        load(wp.add(2 * cols + c)),
                        load(wp.add(3 * cols + c)),
                    );
                    a0 = _mm256_dpbusd_epi32(a0, xu, w0);
                    a1 = _mm256_dpbusd_epi32(a1, xu, w1);
                    a2 = _mm256_dpbusd_epi32(a2, xu, w2);
                    a3 = _mm256_dpbusd_epi32(a3, xu, w3);
                    s0 = _mm256_dpbusd_epi32(s0, ones, w0);
                    s1 = _mm256_dpbusd_epi32(s1, ones, w1);
                    s2 = _mm256_dpbusd_epi32(s2, ones, w2);
                    s3 = _mm256_dpbusd_epi32(s3, ones, w3);
                }
                c += 32;
            }
            let sh = _mm256_slli_epi32(
                _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3)),
                7,
            );
            let s = _mm256_sub_epi32(
                _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3)),
                sh,
            );
            let mut sums = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            if main < n {
                let tail = |i: usize| {
                    let row = &w[(r0 + i) * cols + c0 + main..(r0 + i) * cols + c0 + n];
                    reference::dot_i8_i32(row, &x[c0 + main..c0 + n])
                };
                sums = _mm_add_epi32(sums, _mm_setr_epi32(tail(0), tail(1), tail(2), tail(3)));
            }
            f = _mm_add_ps(f, _mm_mul_ps(_mm_cvtepi32_ps(sums), _mm_set1_ps(scale)));
        }
        // SAFETY: `o` is four f32s.
        unsafe { _mm_storeu_ps(o.as_mut_ptr(), f) };
    }
}

/// Rows in groups of four; `w` holds exactly `out.len()` rows of `x.len()` columns, `out.len()` is a multiple of 4.
#[target_feature(enable = "avx2")]
unsafe fn blocks4_avx2(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    debug_assert!(x.len() == cols && w.len() == out.len() * cols && out.len().is_multiple_of(4));
    for (quad, o) in out.chunks_exact_mut(4).enumerate() {
        let r0 = quad * 4;
        let mut f = _mm_setzero_ps();
        for (b, &scale) in scales.iter().enumerate() {
            let c0 = b * block;
            let n = block.min(cols - c0);
            let main = n - n % 16;
            let (mut a0, mut a1, mut a2, mut a3) = (
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
                _mm256_setzero_si256(),
            );
            let wp = w.as_ptr().wrapping_add(r0 * cols + c0);
            let xp = x.as_ptr().wrapping_add(c0);
            let mut c = 0;
            while c < main {
                // SAFETY: c + 16 <= main <= n and c0 + n <= cols: every 16-byte load lies inside row r0 + i
                // (i < 4) of `w` and inside `x`.
                unsafe {
                    let load =
                        |p: *const i8| _mm256_cvtepi8_epi16(_mm_loadu_si128(p as *const __m128i));
                    let xv = load(xp.add(c));
                    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(load(wp.add(c)), xv));
                    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(load(wp.add(cols + c)), xv));
                    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(load(wp.add(2 * cols + c)), xv));
                    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(load(wp.add(3 * cols + c)), xv));
                }
                c += 16;
            }
            // [a0 a1 a2 a3] lane sums: two rounds of pairwise adds within each 128-bit half, then the halves.
            let s = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
            let mut sums = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            if main < n {
                let tail = |i: usize| {
                    let row = &w[(r0 + i) * cols + c0 + main..(r0 + i) * cols + c0 + n];
                    reference::dot_i8_i32(row, &x[c0 + main..c0 + n])
                };
                sums = _mm_add_epi32(sums, _mm_setr_epi32(tail(0), tail(1), tail(2), tail(3)));
            }
            f = _mm_add_ps(f, _mm_mul_ps(_mm_cvtepi32_ps(sums), _mm_set1_ps(scale)));
        }
        // SAFETY: `o` is four f32s.
        unsafe { _mm_storeu_ps(o.as_mut_ptr(), f) };
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-token block-scaled GEMM (AVX2)
// ---------------------------------------------------------------------------------------------------------------

/// Weight rows per AVX2 GEMM tile.
const AVX2_ROWS: usize = 2;

/// Tokens per AVX2 GEMM tile: each weight vector loaded serves this many tokens.
const AVX2_TOKENS: usize = 4;

/// Bytes of weight rows the AVX2 GEMM keeps in L1 while every token tile passes over them.
const AVX2_CHUNK: usize = 16 * 1024;

/// Where a GEMM through [`gemm_rows_avx2`] splits cheaply: a token tile.
pub const AVX2_TOKEN_STEP: usize = AVX2_TOKENS;

/// Whether [`gemm_rows_avx2`] takes `tokens` tokens of `x` (`cols` wide in blocks of `block`): the CPU has AVX2,
/// there are at least two tokens and 32 columns, and no activation is -128 (which its arithmetic excludes; the
/// engine's quantiser never emits it).
pub fn gemm_avx2_applies(x: &[i8], cols: usize, block: usize, tokens: usize) -> bool {
    tokens >= 2
        && cols >= 32
        && block > 0
        && x.len() >= tokens * cols
        && avx2_available()
        && !x[..tokens * cols].contains(&i8::MIN)
}

/// [`reference::gemm_i8_blocks_f32`] through [`gemm_rows_avx2`] where [`gemm_avx2_applies`], the reference
/// otherwise (the AVX2 GEMM's twin in the tests).
pub fn gemm_i8_blocks_avx2(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    x_scales: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let tokens = out.len().checked_div(rows).unwrap_or(0);
    let done = gemm_avx2_applies(x, cols, block, tokens)
        && gemm_rows_avx2(w, cols, block, x, x_scales, tokens, rows, out);
    if !done {
        reference::gemm_i8_blocks_f32(w, cols, x, block, x_scales, rows, out);
    }
}

/// [`reference::gemm_i8_blocks_f32`] for `tokens` tokens of `x` (`cols` wide, blocks of `block`, scales
/// `x_scales[t * nb..][..nb]`) and `rows` rows of `w`: token `t` into `out[t * rows..][..rows]`. Returns `false`
/// (writing nothing) without AVX2 or where a slice is too short for these sizes. No activation may be -128
/// ([`gemm_avx2_applies`] checks it).
///
/// Tiles of `AVX2_ROWS` rows by `AVX2_TOKENS` tokens, 32 columns a step: `vpabsb` takes `|w|` once per weight
/// vector, and for each token `vpsignb` gives `x * sign(w)`, so `vpmaddubsw(|w|, x * sign(w))` adds pairs of
/// products `w * x`. `|w| <= 128` as `u8` is exact for every weight, and `x * sign(w)` is exact in `i8` because
/// `x != -128`, so each product is at most `128 * 127 = 16256` in magnitude and a pair at most 32512: the `i16`
/// saturation never happens. `vpmaddwd` with ones adds the pairs into `i32` lanes (exact), added with wrapping
/// `i32` adds, so each block's dot product is the reference's. At the end of a block the tile's eight accumulators
/// are reduced together (`vphaddd`, then one add across halves) into one vector of eight dot products, and each
/// lane does `f = f + (dot as f32) * scale` with a separate convert, multiply and add (`vcvtdq2ps`, `vmulps`,
/// `vaddps`, unfused), blocks in order: the reference's arithmetic, lane by lane. Columns past the last multiple
/// of 32 in a block go through the reference's dot product.
///
/// Rows go in chunks of about `AVX2_CHUNK` bytes, each serving every token tile while it is in L1.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows_avx2(
    w: &[i8],
    cols: usize,
    block: usize,
    x: &[i8],
    x_scales: &[f32],
    tokens: usize,
    rows: usize,
    out: &mut [f32],
) -> bool {
    if cols == 0 || block == 0 || rows == 0 || !avx2_available() {
        return false;
    }
    let nb = cols.div_ceil(block);
    if w.len() < rows * cols
        || x.len() < tokens * cols
        || x_scales.len() < tokens * nb
        || out.len() < tokens * rows
    {
        return false;
    }
    debug_assert!(!x[..tokens * cols].contains(&i8::MIN));
    let (w, x) = (&w[..rows * cols], &x[..tokens * cols]);
    let chunk = (AVX2_CHUNK / cols).max(1).next_multiple_of(AVX2_ROWS);
    for r0 in (0..rows).step_by(chunk) {
        let r1 = rows.min(r0 + chunk);
        let mut t0 = 0;
        while t0 < tokens {
            // Whole tiles of tokens, then the rest one at a time.
            let n = if t0 + AVX2_TOKENS <= tokens {
                AVX2_TOKENS
            } else {
                1
            };
            let xt = &x[t0 * cols..(t0 + n) * cols];
            let st = &x_scales[t0 * nb..(t0 + n) * nb];
            let ot = &mut out[t0 * rows..(t0 + n) * rows];
            let mut r = r0;
            while r < r1 {
                let m = if r + AVX2_ROWS <= r1 { AVX2_ROWS } else { 1 };
                // SAFETY: AVX2 is available (checked above); rows `r..r + m` lie inside `w` (r + m <= rows), the
                // `n` tokens' activations, scales and outputs inside `xt`, `st` and `ot` (cut to size above),
                // which is what `tile_avx2` reads and writes.
                unsafe {
                    match (m, n) {
                        (AVX2_ROWS, AVX2_TOKENS) => {
                            tile_avx2::<AVX2_ROWS, AVX2_TOKENS>(w, cols, block, xt, st, r, rows, ot)
                        }
                        (AVX2_ROWS, _) => {
                            tile_avx2::<AVX2_ROWS, 1>(w, cols, block, xt, st, r, rows, ot)
                        }
                        (_, AVX2_TOKENS) => {
                            tile_avx2::<1, AVX2_TOKENS>(w, cols, block, xt, st, r, rows, ot)
                        }
                        _ => tile_avx2::<1, 1>(w, cols, block, xt, st, r, rows, ot),
                    }
                }
                r += m;
            }
            t0 += n;
        }
    }
    true
}

/// Rows `r..r + R` of `w` for the `T` tokens of `x`; see [`gemm_rows_avx2`].
///
/// Safety: AVX2 available; `w` holds rows `r..r + R` of `cols` each, `x` `T` tokens of `cols`, `scales` their
/// `T * cols.div_ceil(block)` scales, `out` `T` rows of `rows` outputs with `r + R <= rows`; no activation is -128.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2<const R: usize, const T: usize>(
    w: &[i8],
    cols: usize,
    block: usize,
    x: &[i8],
    scales: &[f32],
    r: usize,
    rows: usize,
    out: &mut [f32],
) {
    debug_assert!((r + R) * cols <= w.len() && x.len() == T * cols && r + R <= rows);
    let nb = cols.div_ceil(block);
    let ones = _mm256_set1_epi16(1);
    // Token t, row i at [t][i]; with eight of them (the whole tile), also in the lanes of `fv`, in that order.
    let mut f = [[0.0f32; R]; T];
    let mut fv = _mm256_setzero_ps();
    for b in 0..nb {
        let c0 = b * block;
        let n = block.min(cols - c0);
        let main = n - n % 32;
        let wp: [*const i8; R] =
            core::array::from_fn(|i| w.as_ptr().wrapping_add((r + i) * cols + c0));
        let xp: [*const i8; T] = core::array::from_fn(|t| x.as_ptr().wrapping_add(t * cols + c0));
        let mut acc = [[_mm256_setzero_si256(); R]; T];
        let mut c = 0;
        while c < main {
            // SAFETY: c + 32 <= main <= n and c0 + n <= cols: each 32-byte load lies inside row r + i of `w` or
            // token t of `x`.
            unsafe {
                let load = |p: *const i8| _mm256_loadu_si256(p as *const __m256i);
                let wv: [__m256i; R] = core::array::from_fn(|i| load(wp[i].add(c)));
                let wa: [__m256i; R] = core::array::from_fn(|i| _mm256_abs_epi8(wv[i]));
                for (at, &xt) in acc.iter_mut().zip(&xp) {
                    let xv = load(xt.add(c));
                    for ((a, &wa), &wv) in at.iter_mut().zip(&wa).zip(&wv) {
                        let p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv, wv));
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p, ones));
                    }
                }
            }
            c += 32;
        }
        // Past the last multiple of 32: the reference's dot product.
        let tail = |t: usize, i: usize| {
            let row = &w[(r + i) * cols + c0 + main..(r + i) * cols + c0 + n];
            reference::dot_i8_i32(row, &x[t * cols + c0 + main..t * cols + c0 + n])
        };
        if R * T == 8 {
            // All eight accumulators reduced at once: two rounds of pairwise adds within 128-bit halves leave
            // four lanes per half; the halves of both quartets then add into one vector, lane k = accumulator k.
            let a: [__m256i; 8] = core::array::from_fn(|k| acc[k / R][k % R]);
            let h = |p, q| _mm256_hadd_epi32(p, q);
            let lo = h(h(a[0], a[1]), h(a[2], a[3]));
            let hi = h(h(a[4], a[5]), h(a[6], a[7]));
            let mut dots = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(lo, hi),
                _mm256_permute2x128_si256::<0x31>(lo, hi),
            );
            if main < n {
                let t: [i32; 8] = core::array::from_fn(|k| tail(k / R, k % R));
                // SAFETY: `t` is eight i32s.
                dots = _mm256_add_epi32(dots, unsafe { _mm256_loadu_si256(t.as_ptr().cast()) });
            }
            let s: [f32; 8] = core::array::from_fn(|k| scales[k / R * nb + b]);
            // SAFETY: `s` is eight f32s.
            let sv = unsafe { _mm256_loadu_ps(s.as_ptr()) };
            fv = _mm256_add_ps(fv, _mm256_mul_ps(_mm256_cvtepi32_ps(dots), sv));
        } else {
            for (t, (ft, at)) in f.iter_mut().zip(&acc).enumerate() {
                let scale = scales[t * nb + b];
                for (i, (fi, &a)) in ft.iter_mut().zip(at).enumerate() {
                    let mut dot = hsum_i32(a);
                    if main < n {
                        dot = dot.wrapping_add(tail(t, i));
                    }
                    *fi += dot as f32 * scale;
                }
            }
        }
    }
    if R * T == 8 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` is eight f32s.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), fv) };
        for (k, v) in lanes.into_iter().enumerate() {
            f[k / R][k % R] = v;
        }
    }
    for (t, ft) in f.iter().enumerate() {
        out[t * rows + r..t * rows + r + R].copy_from_slice(ft);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 16-bit attention scores (AVX2; with AVX-512 VNNI the packed keys of `attention` take `scores_vnni` instead)
// ---------------------------------------------------------------------------------------------------------------

/// AVX2 [`reference::gemv_i16_i32`]: [`gemm_i16_i32_avx2`] for one query. Without AVX2, or for degenerate calls
/// (`cols == 0`, `x` shorter than `cols`), the reference.
pub fn gemv_i16_i32_avx2(w: &[i16], cols: usize, x: &[i16], out: &mut [i32]) {
    if !avx2_available() || cols == 0 || x.len() < cols {
        return reference::gemv_i16_i32(w, cols, x, out);
    }
    let rows = out.len().min(w.len() / cols);
    gemm_i16_i32_avx2(w, cols, rows, &x[..cols], 1, &mut out[..rows], rows)
}

/// AVX2 [`reference::gemm_i16_i32`] (the attention scores, queries times keys): tiles of four queries by four
/// keys, each 16-column step four query and four key loads for 16 `vpmaddwd`, which adds pairs of `i16` products
/// into `i32` lanes. Exact modulo 2^32, as the reference's wrapping adds: a pair's sum is exact except for
/// `2 * (-32768)^2 = 2^31`, which `vpmaddwd` returns as `-2^31`, the same value modulo 2^32, and integer addition
/// modulo 2^32 does not depend on the order. The columns past the last multiple of 16 are added one by one.
/// Without AVX2, or for calls whose slices do not hold every row they name, the reference.
pub fn gemm_i16_i32_avx2(
    w: &[i16],
    cols: usize,
    rows: usize,
    x: &[i16],
    queries: usize,
    out: &mut [i32],
    stride: usize,
) {
    let whole = cols > 0
        && queries > 0
        && stride >= rows
        && rows.checked_mul(cols).is_some_and(|n| w.len() >= n)
        && queries.checked_mul(cols).is_some_and(|n| x.len() >= n)
        && (queries - 1)
            .checked_mul(stride)
            .and_then(|n| n.checked_add(rows))
            .is_some_and(|n| out.len() >= n);
    if !avx2_available() || !whole {
        return reference::gemm_i16_i32(w, cols, rows, x, queries, out, stride);
    }
    let key = |j: usize| &w[j * cols..][..cols];
    let query = |i: usize| &x[i * cols..][..cols];
    let (q4, r4) = (queries / 4 * 4, rows / 4 * 4);
    let mut i0 = 0;
    while i0 < queries {
        // Four queries at a time, then one by one.
        let n = if i0 < q4 { 4 } else { 1 };
        for j0 in (0..r4).step_by(4) {
            let k: [&[i16]; 4] = core::array::from_fn(|b| key(j0 + b));
            if n == 4 {
                let q: [&[i16]; 4] = core::array::from_fn(|a| query(i0 + a));
                // SAFETY: AVX2 is available (checked above).
                let tile = unsafe { i16_tile(q, k) };
                for (a, sums) in tile.iter().enumerate() {
                    out[(i0 + a) * stride + j0..][..4].copy_from_slice(sums);
                }
            } else {
                // SAFETY: AVX2 is available (checked above).
                let [sums] = unsafe { i16_tile([query(i0)], k) };
                out[i0 * stride + j0..][..4].copy_from_slice(&sums);
            }
        }
        for j in r4..rows {
            for a in i0..i0 + n {
                // SAFETY: AVX2 is available (checked above).
                let [[s]] = unsafe { i16_tile([query(a)], [key(j)]) };
                out[a * stride + j] = s;
            }
        }
        i0 += n;
    }
}

/// The wrapping dot products of `A` queries with `B` keys (all rows the same length):
/// `result[a][b] = q[a] . k[b]`, for [`gemm_i16_i32_avx2`].
#[inline]
#[target_feature(enable = "avx2")]
fn i16_tile<const A: usize, const B: usize>(q: [&[i16]; A], k: [&[i16]; B]) -> [[i32; B]; A] {
    let n = q[0].len();
    assert!(q.iter().chain(&k).all(|r| r.len() == n));
    let main = n / 16 * 16;
    let mut acc = [[_mm256_setzero_si256(); B]; A];
    for c in (0..main).step_by(16) {
        // SAFETY: `c + 16 <= main <= n`, the length of every row (asserted above); `loadu` needs no alignment.
        let (qv, kv) = unsafe {
            (
                q.map(|r| _mm256_loadu_si256(r.as_ptr().add(c) as *const __m256i)),
                k.map(|r| _mm256_loadu_si256(r.as_ptr().add(c) as *const __m256i)),
            )
        };
        for (acc, &qv) in acc.iter_mut().zip(&qv) {
            for (a, &kv) in acc.iter_mut().zip(&kv) {
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(qv, kv));
            }
        }
    }
    let mut sums = [[0i32; B]; A];
    for (s, a) in sums.iter_mut().zip(&acc) {
        if B == 4 {
            // Within each 128-bit half, `hadd` twice leaves the four keys' partial sums in order; the halves
            // then add.
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
            let v = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            // SAFETY: `s` holds `B = 4` `i32`s; `storeu` needs no alignment.
            unsafe { _mm_storeu_si128(s.as_mut_ptr() as *mut __m128i, v) };
        } else {
            for (s, &a) in s.iter_mut().zip(a) {
                *s = hsum_i32(a);
            }
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

/// The wrapping sum of the eight `i32` lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

// ---------------------------------------------------------------------------------------------------------------
// Multi-token block-scaled GEMM (AVX-512 VNNI)
// ---------------------------------------------------------------------------------------------------------------

/// Fewer tokens than this go token by token through the GEMV (a 16-lane group would be mostly idle).
const MIN_TOKENS: usize = 4;

/// Rows computed together: each load of the packed activations serves `ROWS` weight rows.
const ROWS: usize = 8;

/// Tokens per pass: two 16-lane groups, one lane per token.
const PASS: usize = 32;

/// Where a multi-token GEMM over packed activations may start: a pass boundary (`gemm_packed_vnni`'s `first`).
pub const GEMM_TOKEN_STEP: usize = PASS;

/// Groups in the pass that starts with `remaining` tokens: two while they fill more than one group.
const fn pass_groups(remaining: usize) -> usize {
    if remaining > 16 {
        2
    } else {
        1
    }
}

/// `u32` words of workspace [`pack_vnni`] needs for `tokens` tokens of `cols` columns in blocks of `block`: per
/// 16-lane group (passes of 32 tokens in two groups, the last pass in one group if 16 tokens or fewer remain),
/// `cols / 4` words per lane for the activations and one `f32` per block per lane for the scales.
pub const fn gemm_workspace_words(tokens: usize, cols: usize, block: usize) -> usize {
    let block = if block == 0 { 1 } else { block };
    16 * tokens.div_ceil(16) * (cols.div_ceil(4) + cols.div_ceil(block))
}

/// Whether the AVX-512 VNNI GEMM runs (AVX-512 F and VNNI on 512-bit registers): [`super::simd::isa`] is
/// [`Isa::Avx512Vnni`](super::simd::Isa::Avx512Vnni).
#[inline]
pub fn vnni512_available() -> bool {
    super::simd::isa().avx512_vnni()
}

/// Packs `x` (`tokens` rows of `cols`) and its block scales for `gemm_packed_vnni` into `work`; returns whether
/// it did. It does not where the kernel does not apply: the CPU lacks the features, fewer than `MIN_TOKENS` (4)
/// tokens, `cols` or `block` not a multiple of 4, `x` or `x_scales` shorter than `tokens` rows, or `work` smaller
/// than [`gemm_workspace_words`].
///
/// Tokens go in passes of one or two 16-lane groups. A pass holds, for each 4-column step `k` and group `g`, 16
/// words (lane `l` = columns `4k..4k + 4` of token `16 g + l` of the pass) with the top bit of every byte flipped,
/// i.e. `x + 128` in `u8`; then, for each block and group, the 16 lanes' scales. Lanes past the tokens hold
/// `x = 0` (bytes `0x80`) and scale 0.
pub fn pack_vnni(
    x: &[i8],
    cols: usize,
    block: usize,
    x_scales: &[f32],
    tokens: usize,
    work: &mut [u32],
) -> bool {
    if tokens < MIN_TOKENS
        || cols == 0
        || block == 0
        || !cols.is_multiple_of(4)
        || !block.is_multiple_of(4)
    {
        return false;
    }
    let nb = cols.div_ceil(block);
    let fits = x.len() >= tokens * cols
        && x_scales.len() >= tokens * nb
        && work.len() >= gemm_workspace_words(tokens, cols, block);
    if !fits || !vnni512_available() {
        return false;
    }
    let k4 = cols / 4;
    let mut at = 0;
    for t0 in (0..tokens).step_by(PASS) {
        let g = pass_groups(tokens - t0);
        let (xp, rest) = work[at..].split_at_mut(16 * g * k4);
        let sp = &mut rest[..16 * g * nb];
        for l in 0..16 * g {
            let (grp, lane) = (l / 16, l % 16);
            let t = t0 + l;
            if t < tokens {
                let row = &x[t * cols..(t + 1) * cols];
                for (k, b) in row.chunks_exact(4).enumerate() {
                    let word = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
                    xp[(k * g + grp) * 16 + lane] = word ^ 0x8080_8080;
                }
                for (b, &s) in x_scales[t * nb..(t + 1) * nb].iter().enumerate() {
                    sp[(b * g + grp) * 16 + lane] = s.to_bits();
                }
            } else {
                for k in 0..k4 {
                    xp[(k * g + grp) * 16 + lane] = 0x8080_8080;
                }
                for b in 0..nb {
                    sp[(b * g + grp) * 16 + lane] = 0;
                }
            }
        }
        at += 16 * g * (k4 + nb);
    }
    true
}

/// [`reference::gemm_i8_blocks_f32`] on activations packed by [`pack_vnni`] (`tokens` tokens of `cols` columns in
/// blocks of `block`, in `packed`), one lane per token. `sums[r * nb + b]` must be `-128` times the sum of row `r`
/// of `w` over block `b` (wrapping; [`super::gemm_weight_sums`]).
///
/// For [`ROWS`] weight rows at a time, each block starts its accumulators at `-128 sum(w)` and runs `vpdpbusd` with
/// the four weight bytes of a row broadcast to all lanes (the weights are read in place, row-major), so lane `t`
/// ends at `(x_t + 128) . w - 128 sum(w) = x_t . w` exactly (every product is below 2^15, four are added per step,
/// and the identity holds modulo 2^32). Then, per lane, `f += (dot as f32) * scale` with a separate convert,
/// multiply and add, blocks in order: the reference's arithmetic, lane by lane.
///
/// Only tokens `first..first + tokens` of the packed ones are computed, token `first + t` into
/// `out[t * rows..][..rows]`; `first` must be a multiple of [`GEMM_TOKEN_STEP`] (a pass boundary). Returns `false`
/// (writing nothing) unless that holds, the range lies inside the `packed_tokens` packed, `w` holds `rows` rows,
/// `sums` their block sums and `out` `tokens` rows of `rows`.
///
/// Safety of the call: `packed` must be what [`pack_vnni`] wrote (and returned `true` for) with `packed_tokens`
/// tokens, `cols` and `block`, so the CPU has AVX-512 F and VNNI and the packed layout has the sizes used here.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed_vnni(
    w: &[i8],
    cols: usize,
    block: usize,
    packed_tokens: usize,
    packed: &[u32],
    first: usize,
    tokens: usize,
    sums: &[i32],
    rows: usize,
    out: &mut [f32],
) -> bool {
    let (k4, nb) = (cols / 4, cols.div_ceil(block));
    if rows == 0
        || w.len() < rows * cols
        || sums.len() < rows * nb
        || out.len() < tokens * rows
        || !first.is_multiple_of(PASS)
        || first + tokens > packed_tokens
    {
        return false;
    }
    // Every pass before `first` is a whole one (two groups): only the last pass of the packed tokens is shorter.
    let start = first / PASS * 16 * 2 * (k4 + nb);
    // Rows in chunks of about 32 KiB of weights, each chunk serving every pass while it is in cache (the packed
    // activations of all passes stay in L2).
    let chunk = (32 * 1024 / cols).max(1).next_multiple_of(ROWS);
    for c0 in (0..rows).step_by(chunk) {
        let c1 = rows.min(c0 + chunk);
        let mut at = start;
        for t0 in (0..tokens).step_by(PASS) {
            // The pass's groups as packed (the packed tokens past this range may fill it).
            let g = pass_groups(packed_tokens - first - t0);
            let n = PASS.min(tokens - t0);
            let xp = &packed[at..at + 16 * g * k4];
            let sp = &packed[at + 16 * g * k4..at + 16 * g * (k4 + nb)];
            let out = &mut out[t0 * rows..(t0 + n) * rows];
            let mut r = c0;
            // SAFETY (every call below): AVX-512 F and VNNI are available (the caller's contract); `pass_rows`
            // reads rows `r..r + R` of `w` and of `sums` (inside, by the checks above), the pass's `xp` and `sp`
            // (sized above from the layout `pack_vnni` wrote), and writes `out[t * rows + r + i]` for `t < n`,
            // `i < R`.
            while r + ROWS <= c1 {
                unsafe {
                    match g {
                        1 => pass_rows::<ROWS, 1>(w, cols, block, xp, sp, sums, r, rows, n, out),
                        _ => pass_rows::<ROWS, 2>(w, cols, block, xp, sp, sums, r, rows, n, out),
                    }
                }
                r += ROWS;
            }
            while r < c1 {
                unsafe {
                    match g {
                        1 => pass_rows::<1, 1>(w, cols, block, xp, sp, sums, r, rows, n, out),
                        _ => pass_rows::<1, 2>(w, cols, block, xp, sp, sums, r, rows, n, out),
                    }
                }
                r += 1;
            }
            at += 16 * g * (k4 + nb);
        }
    }
    true
}

/// Rows `r..r + R` of `w` for one pass of `G` packed groups holding `n` tokens; see [`gemm_packed_vnni`].
///
/// Safety: AVX-512 F and VNNI available; `w` holds rows `r..r + R` (`cols` each, `cols % 4 == 0`) and `sums` their
/// `nb` block sums each; `xp` holds `16 * G * cols / 4` words and `sp` `16 * G * nb`; `out` holds `n * rows`
/// values, `n <= 16 G`, `r + R <= rows`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn pass_rows<const R: usize, const G: usize>(
    w: &[i8],
    cols: usize,
    block: usize,
    xp: &[u32],
    sp: &[u32],
    sums: &[i32],
    r: usize,
    rows: usize,
    n: usize,
    out: &mut [f32],
) {
    let mut f = [[_mm512_setzero_ps(); G]; R];
    let wp: [*const i8; R] = core::array::from_fn(|i| w.as_ptr().wrapping_add((r + i) * cols));
    let nb = cols.div_ceil(block);
    for b in 0..nb {
        let k0 = b * block / 4;
        let k1 = cols.min((b + 1) * block) / 4;
        let mut acc: [[__m512i; G]; R] =
            core::array::from_fn(|i| [_mm512_set1_epi32(sums[(r + i) * nb + b]); G]);
        for k in k0..k1 {
            // SAFETY: k < cols / 4, so the 16 * G words at `k * G * 16` are inside `xp`, and the 4 bytes at
            // `4k` of row `r + i` are inside it (4k + 4 <= cols).
            unsafe {
                let xv: [__m512i; G] = core::array::from_fn(|g| {
                    _mm512_loadu_si512(xp.as_ptr().add((k * G + g) * 16) as *const _)
                });
                for (a, &p) in acc.iter_mut().zip(&wp) {
                    let wv = _mm512_set1_epi32((p.add(4 * k) as *const i32).read_unaligned());
                    for (ag, &xg) in a.iter_mut().zip(&xv) {
                        *ag = _mm512_dpbusd_epi32(*ag, xg, wv);
                    }
                }
            }
        }
        // SAFETY: b < nb, so the 16 * G words at `b * G * 16` are inside `sp`.
        let s: [__m512; G] = core::array::from_fn(|g| unsafe {
            _mm512_loadu_ps(sp.as_ptr().add((b * G + g) * 16) as *const f32)
        });
        for (fr, a) in f.iter_mut().zip(acc) {
            for ((fg, ag), &sg) in fr.iter_mut().zip(a).zip(&s) {
                *fg = _mm512_add_ps(*fg, _mm512_mul_ps(_mm512_cvtepi32_ps(ag), sg));
            }
        }
    }
    if R == 8 {
        // Eight rows: transpose each group's 8 x 16 tile in registers and store eight consecutive outputs per token.
        #[allow(clippy::needless_range_loop)] // `g` picks a column of `f`, across its rows
        for g in 0..G {
            let rows8: [__m512; 8] = core::array::from_fn(|i| f[i][g]);
            let tokens = (n.saturating_sub(16 * g)).min(16);
            for (l, v) in transpose_8x16(rows8).iter().enumerate().take(tokens) {
                let at = (16 * g + l) * rows + r;
                out[at..at + 8].copy_from_slice(v);
            }
        }
        return;
    }
    for (i, fr) in f.iter().enumerate() {
        let mut lanes = [[0.0f32; 16]; G];
        for (l, fg) in lanes.iter_mut().zip(fr) {
            // SAFETY: `l` is 16 f32s.
            unsafe { _mm512_storeu_ps(l.as_mut_ptr(), *fg) };
        }
        for (t, &v) in lanes.as_flattened().iter().take(n).enumerate() {
            out[t * rows + r + i] = v;
        }
    }
}

/// `[rows i][lane l]` to `[lane l][rows i]`: eight vectors of 16 lanes become 16 arrays of eight values (pure data
/// movement: pairwise unpacks, then 4-wide shuffles, then one cross-lane permute per pair of tokens).
#[target_feature(enable = "avx512f")]
fn transpose_8x16(v: [__m512; 8]) -> [[f32; 8]; 16] {
    // Within each 128-bit lane k (tokens 4k..4k+4): t[2p] = rows 2p, 2p+1 of tokens 4k, 4k+1 interleaved, t[2p+1]
    // the same for tokens 4k+2, 4k+3.
    let t: [__m512; 8] = core::array::from_fn(|j| {
        let (a, b) = (v[2 * (j / 2)], v[2 * (j / 2) + 1]);
        if j % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[j] (j < 4): rows 0..4 of token 4k + j in lane k; u[4 + j]: rows 4..8.
    let u: [__m512; 8] = core::array::from_fn(|m| {
        let (half, j) = (m / 4, m % 4);
        let (a, b) = (t[4 * half + j / 2], t[4 * half + 2 + j / 2]);
        if j % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    });
    let mut out = [[0.0f32; 8]; 16];
    for j in 0..4 {
        // Lanes k = 0, 1 (then 2, 3) of u[j] and u[4 + j], interleaved: token 4k + j's rows 0..8, two tokens a vector.
        let lo = _mm512_permutex2var_ps(
            u[j],
            _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
            u[4 + j],
        );
        let hi = _mm512_permutex2var_ps(
            u[j],
            _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31),
            u[4 + j],
        );
        let mut buf = [[0.0f32; 16]; 2];
        // SAFETY: each `buf` row is 16 f32s.
        unsafe {
            _mm512_storeu_ps(buf[0].as_mut_ptr(), lo);
            _mm512_storeu_ps(buf[1].as_mut_ptr(), hi);
        }
        for (k, tokens) in buf.iter().enumerate() {
            out[4 * (2 * k) + j].copy_from_slice(&tokens[..8]);
            out[4 * (2 * k + 1) + j].copy_from_slice(&tokens[8..]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Attention products on packed K and V (AVX-512 VNNI); layouts in `super::attention`
// ---------------------------------------------------------------------------------------------------------------

/// Key groups of 16 the score kernel runs side by side.
const GROUPS: usize = 8;

/// `out[j] = k_j . q` on keys packed 16 to a group (`attention::Keys`): for each pair of channels, `vpdpwssd`
/// multiplies the 16 keys' pairs by the query's pair broadcast and adds both products to the key's lane, with
/// wrapping 32-bit adds, so each lane is the reference's wrapping sum (the order of wrapping adds does not matter).
/// Up to eight groups (128 keys) run side by side, so that their dependency chains overlap.
///
/// Safety: AVX-512 F and VNNI available; `kp` holds `seq.div_ceil(16) * 16 * d.div_ceil(2) * 2` values in that
/// layout; `q` at least `d` values; `out.len() <= seq`.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(crate) unsafe fn scores_vnni(kp: &[i16], seq: usize, d: usize, q: &[i16], out: &mut [i32]) {
    let d2 = d.div_ceil(2);
    let groups = seq.div_ceil(16);
    debug_assert!(kp.len() >= groups * d2 * 32 && q.len() >= d && out.len() <= seq);
    // The query as pairs of channels (a zero pads an odd `d`).
    let pair = |c2: usize| {
        let lo = q[2 * c2] as u16 as u32;
        let hi = if 2 * c2 + 1 < d {
            q[2 * c2 + 1] as u16 as u32
        } else {
            0
        };
        _mm512_set1_epi32((lo | hi << 16) as i32)
    };
    let mut g = 0;
    while g < groups {
        let n = (groups - g).min(GROUPS);
        let mut acc = [_mm512_setzero_si512(); GROUPS];
        for c2 in 0..d2 {
            let qv = pair(c2);
            for (i, a) in acc.iter_mut().enumerate().take(n) {
                // SAFETY: group g + i < groups and c2 < d2, so the 32 values at that offset are inside `kp`.
                let kv = unsafe {
                    _mm512_loadu_si512(kp.as_ptr().add(((g + i) * d2 + c2) * 32) as *const _)
                };
                *a = _mm512_dpwssd_epi32(*a, kv, qv);
            }
        }
        for (i, a) in acc.iter().enumerate().take(n) {
            let mut lanes = [0i32; 16];
            // SAFETY: `lanes` is 16 i32s.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, *a) };
            let j0 = (g + i) * 16;
            if j0 < out.len() {
                let m = (out.len() - j0).min(16);
                out[j0..j0 + m].copy_from_slice(&lanes[..m]);
            }
        }
        g += n;
    }
}

/// `out[c] = sum_j v_j[c] probs[j]` on values packed four tokens to a word (`attention::Values`): for each four
/// tokens, `vpdpbusd` multiplies their probabilities (unsigned, broadcast) by the 16 channels' four values
/// (signed) and adds the four products to the channel's lane. Every product is below 2^15 and the sum over at most
/// 2^16 tokens fits `i32`: the reference's exact sum. Two accumulators per 16 channels (even and odd steps),
/// added at the end. Tokens past `probs.len()` count with probability 0.
///
/// Safety: AVX-512 F and VNNI available; `vp` holds `seq.div_ceil(4) * 4 * d.div_ceil(16) * 16` values in that
/// layout; `probs.len() <= seq`; `out.len() <= d`.
#[target_feature(enable = "avx512f,avx512vnni")]
pub(crate) unsafe fn attend_vnni(vp: &[i8], seq: usize, d: usize, probs: &[u8], out: &mut [i32]) {
    let d16 = d.div_ceil(16);
    let steps = seq.div_ceil(4);
    debug_assert!(vp.len() >= steps * d16 * 64 && probs.len() <= seq && out.len() <= d);
    // Four probabilities to a word, the last word padded with zeros.
    let full = probs.len() / 4;
    let word = |j4: usize| {
        let w = if j4 < full {
            let p = &probs[4 * j4..4 * j4 + 4];
            u32::from_le_bytes([p[0], p[1], p[2], p[3]])
        } else {
            let mut p = [0u8; 4];
            for (k, b) in p.iter_mut().enumerate() {
                *b = probs.get(4 * j4 + k).copied().unwrap_or(0);
            }
            u32::from_le_bytes(p)
        };
        _mm512_set1_epi32(w as i32)
    };
    // Up to four groups of 16 channels at a time, each with two accumulators (even and odd steps): eight
    // independent dependency chains; each broadcast word of probabilities serves them all.
    let mut c0g = 0;
    while c0g < d16 {
        let n = (d16 - c0g).min(4);
        let mut acc = [[_mm512_setzero_si512(); 2]; 4];
        for j4 in 0..steps {
            let pw = word(j4);
            for (i, a) in acc.iter_mut().enumerate().take(n) {
                // SAFETY: j4 < steps and c0g + i < d16, so the 64 bytes at that offset are inside `vp`.
                let vv = unsafe {
                    _mm512_loadu_si512(vp.as_ptr().add((j4 * d16 + c0g + i) * 64) as *const _)
                };
                a[j4 % 2] = _mm512_dpbusd_epi32(a[j4 % 2], pw, vv);
            }
        }
        for (i, a) in acc.iter().enumerate().take(n) {
            let mut lanes = [0i32; 16];
            // SAFETY: `lanes` is 16 i32s.
            unsafe {
                _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, _mm512_add_epi32(a[0], a[1]))
            };
            let c0 = (c0g + i) * 16;
            if c0 < out.len() {
                let m = (out.len() - c0).min(16);
                out[c0..c0 + m].copy_from_slice(&lanes[..m]);
            }
        }
        c0g += n;
    }
}
