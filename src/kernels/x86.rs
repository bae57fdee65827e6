//! x86-64 AVX2 int8 kernel, equal to [`reference`] bit for bit.
//!
//! AVX2 is detected at run time when the `std` feature is on (`is_x86_feature_detected!`, cached by std), and
//! decided at compile time otherwise (`-C target-feature=+avx2` or `-C target-cpu=native`). Without AVX2 the
//! reference runs.
//!
//! # Exactness
//!
//! Each 16-column step sign-extends both operands to `i16` (`vpmovsxbw`) and multiplies with `vpmaddwd`, which
//! adds adjacent `i16` products into `i32` lanes: `2 * (-128 * -128) = 32768` fits `i32`, so nothing saturates
//! or wraps before the `i32` accumulation, and integer addition is associative, so the lane order does not
//! change the result. (`vpmaddubsw`, the usual u8 x i8 trick, saturates to `i16` and is not used for that reason.)

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::{blocked, reference};

/// Whether the AVX2 kernel can run on this CPU.
#[inline]
pub fn avx2_available() -> bool {
    #[cfg(feature = "std")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(feature = "std"))]
    {
        cfg!(target_feature = "avx2")
    }
}

/// AVX2 `out[r] = sum_c w[r * cols + c] * x[c]`, or the reference when AVX2 is absent or the call is degenerate.
pub fn gemv_i8_i32_avx2(w: &[i8], cols: usize, x: &[i8], out: &mut [i32]) {
    gemv_i8_i32_strided_avx2(w, cols, cols, x, out)
}

/// The strided form of [`gemv_i8_i32_avx2`]: `out[r] = w[r * stride..][..cols] . x`
/// ([`reference::gemv_i8_i32_strided`]).
pub fn gemv_i8_i32_strided_avx2(w: &[i8], stride: usize, cols: usize, x: &[i8], out: &mut [i32]) {
    if !avx2_available() || cols == 0 || stride == 0 || x.len() < cols || w.len() < cols {
        return reference::gemv_i8_i32_strided(w, stride, cols, x, out);
    }
    let rows = out.len().min((w.len() - cols) / stride + 1);
    // SAFETY: AVX2 is available (checked above); the kernel reads rows `w[r * stride..][..cols]` for `r < rows`,
    // inside `w` by the definition of `rows`, and `x[..cols]`, inside `x` by the check `x.len() >= cols`.
    unsafe { gemv_avx2(w, stride, &x[..cols], &mut out[..rows]) }
}

#[target_feature(enable = "avx2")]
unsafe fn gemv_avx2(w: &[i8], stride: usize, x: &[i8], out: &mut [i32]) {
    let cols = x.len();
    let main = cols - cols % 16;
    for (r, o) in out.iter_mut().enumerate() {
        let row = &w[r * stride..r * stride + cols];
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

/// AVX2 [`reference::gemv_i8_blocks_f32`]: four rows per step through the shared block driver, or the reference
/// when AVX2 is absent.
pub fn gemv_i8_blocks_avx2(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    if !avx2_available() {
        return reference::gemv_i8_blocks_f32(w, cols, x, block, scales, out);
    }
    // SAFETY: AVX2 is available (checked above).
    unsafe { gemv_blocks_avx2(w, cols, x, block, scales, out) }
}

#[target_feature(enable = "avx2")]
unsafe fn gemv_blocks_avx2(
    w: &[i8],
    cols: usize,
    x: &[i8],
    block: usize,
    scales: &[f32],
    out: &mut [f32],
) {
    blocked::gemv_blocks_rows::<4>(
        w,
        cols,
        x,
        block,
        scales,
        out,
        // SAFETY: this function only runs with AVX2 (see `gemv_i8_blocks_avx2`).
        |rows, x| unsafe { dots_avx2(rows, x) },
        |row, x| unsafe { dots_avx2([row], x)[0] },
    )
}

/// The dot product of each of `R` rows with `x` (every row exactly `x.len()` long), 16 columns per step as in
/// [`gemv_avx2`], the last `x.len() % 16` through the reference.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dots_avx2<const R: usize>(rows: [&[i8]; R], x: &[i8]) -> [i32; R] {
    let n = x.len();
    assert!(rows.iter().all(|r| r.len() == n));
    let main = n - n % 16;
    let mut acc = [_mm256_setzero_si256(); R];
    let mut c = 0;
    while c < main {
        // SAFETY: c + 16 <= main <= n, and `x` and every row hold n bytes (asserted above).
        let xv =
            _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(x.as_ptr().add(c) as *const __m128i) });
        for (acc, row) in acc.iter_mut().zip(rows) {
            // SAFETY: as for `x`.
            let wv = unsafe { _mm_loadu_si128(row.as_ptr().add(c) as *const __m128i) };
            *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(wv), xv));
        }
        c += 16;
    }
    core::array::from_fn(|i| {
        let a = acc[i];
        let s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s).wrapping_add(reference::dot_i8_i32(&rows[i][main..], &x[main..]))
    })
}
