//! One test harness for every implementation of a kernel (tract-linalg's `*_frame_tests!` style): the
//! [`conformance`] suite (seeded random shapes, edge lengths, extreme values, misalignments, calls outside the
//! contract) goes through each implementation compiled for the target, and integer results must equal
//! [`reference`] exactly. The firmware runs the same suite on the Cortex-M kernels. The tests below it cover the
//! kernels the suite does not (multi-token GEMMs, 16-bit products, attention, row-wise `f32` operations).
//!
//! Add an implementation with one line at the bottom:
//! `gemv_i8_i32_frame_tests!(name, path::to::gemv_i8_i32, path::to::gemv_i8_blocks);`.

extern crate std;

use std::vec::Vec;

use super::conformance::{self, BlocksPart, Fill, GemvPart, Rng, UNTOUCHED};
use super::reference;

/// `n` values after `offset` filler bytes, so the slice `[offset..]` starts at every alignment.
fn values(rng: &mut Rng, fill: Fill, is_w: bool, offset: usize, n: usize) -> Vec<i8> {
    let mut v = std::vec![0i8; offset];
    v.extend((0..n).map(|_| fill.draw(rng, is_w)));
    v
}

/// [`values`] for the weights of a linear layer, which the converter quantises to `-127..=127`: the block
/// kernels' contract (AArch64's `smull` / `smlal2` step sums two products in `i16`, exact only without -128
/// weights). The activations keep the whole `i8` range.
fn weights(rng: &mut Rng, fill: Fill, offset: usize, n: usize) -> Vec<i8> {
    let mut v = values(rng, fill, true, offset, n);
    v[offset..].iter_mut().for_each(|w| *w = (*w).max(-127));
    v
}

/// A scratch slice that fits every conformance case.
fn scratch() -> Vec<u8> {
    std::vec![0u8; conformance::SCRATCH_BYTES + 15]
}

/// One part of the conformance suite on a `gemv_i8_i32` implementation: every case equal to the reference, none
/// skipped.
fn gemv_part(name: &'static str, gemv: conformance::Gemv, part: GemvPart) {
    let tally = conformance::check_gemv(name, gemv, &[part], &mut scratch())
        .unwrap_or_else(|m| panic!("{m:?}"));
    assert_eq!(tally.skipped, 0, "{part:?}: {tally:?}");
}

/// One part of the conformance suite on a block-scaled implementation, as [`gemv_part`].
fn blocks_part(name: &'static str, blocks: conformance::Blocks, part: BlocksPart) {
    let tally = conformance::check_blocks(name, blocks, &[part], &mut scratch())
        .unwrap_or_else(|m| panic!("{m:?}"));
    assert_eq!(tally.skipped, 0, "{part:?}: {tally:?}");
}

/// One `#[test]` per part: `$test` runs `$check(NAME, $kernel, $part)`.
macro_rules! part_tests {
    ($check:ident, $kernel:path, $($test:ident: $part:expr),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $check(NAME, $kernel, $part);
            }
        )*
    };
}

/// The harness for one `gemv_i8_i32` implementation: a test module `$name` of `*_matches_reference_*` tests, one a
/// part of the conformance suite.
macro_rules! gemv_i8_i32_frame_tests {
    ($name:ident, $gemv:path, $blocks:path) => {
        mod $name {
            use super::*;

            const NAME: &str = stringify!($name);

            part_tests!(
                blocks_part,
                $blocks,
                gemv_i8_blocks_matches_reference_bit_for_bit: BlocksPart::Random,
                gemv_i8_blocks_matches_reference_small_shapes: BlocksPart::Small,
            );
            part_tests!(
                gemv_part,
                $gemv,
                gemv_i8_i32_matches_reference_edge_shapes: GemvPart::EdgeShapes,
                gemv_i8_i32_matches_reference_random_shapes: GemvPart::RandomShapes,
                gemv_i8_i32_matches_reference_extreme_values: GemvPart::ExtremeValues,
                gemv_i8_i32_matches_reference_unaligned: GemvPart::Misaligned,
                gemv_i8_i32_matches_reference_degenerate_arguments: GemvPart::OutsideContract,
            );
        }
    };
}

// Every implementation compiled for this target, and the dispatcher the model calls.
gemv_i8_i32_frame_tests!(
    dispatch,
    super::super::gemv_i8_i32,
    super::super::gemv_i8_blocks
);
#[cfg(target_arch = "aarch64")]
gemv_i8_i32_frame_tests!(
    neon_mull,
    super::super::neon::gemv_i8_i32_mull,
    super::super::neon::gemv_i8_blocks_mull
);
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
gemv_i8_i32_frame_tests!(
    neon_sdot,
    super::super::neon::gemv_i8_i32_sdot,
    super::super::neon::gemv_i8_blocks_sdot
);
#[cfg(all(target_arch = "arm", feature = "arm-neon"))]
gemv_i8_i32_frame_tests!(
    neon_armv7,
    super::super::neon::gemv_i8_i32_armv7,
    super::super::neon::gemv_i8_blocks_armv7
);
// The DSP kernel's instructions (SXTB16, SMLAD) are the same on Cortex-A, so this runs on armv7 Linux under qemu-arm
// (`--features arm-dsp`); the Helium kernel has no A-profile host and is checked on the device (examples/firmware).
#[cfg(all(target_arch = "arm", feature = "arm-dsp"))]
gemv_i8_i32_frame_tests!(
    dsp,
    super::super::dsp::gemv_i8_i32_dsp,
    super::super::dsp::gemv_i8_blocks_dsp
);
#[cfg(target_arch = "x86_64")]
gemv_i8_i32_frame_tests!(
    x86_avx2,
    super::super::x86::gemv_i8_i32_avx2,
    super::super::x86::gemv_i8_blocks_avx2
);

/// The attention's P.V through the int8 kernel (top bit flipped, plus 128 times the row sums) equals the u8
/// reference on every probability value, including 0 and 255.
#[test]
fn gemv_u8_i8_offset_equals_the_u8_reference() {
    let mut rng = Rng::new(9);
    for i in 0..300 {
        let rows = rng.below(70);
        let cols = if i % 10 == 0 {
            rng.below(600)
        } else {
            rng.below(130)
        };
        let w = values(&mut rng, Fill::Random, true, 0, rows * cols);
        let x: Vec<u8> = (0..cols)
            .map(|_| match rng.below(4) {
                0 => 0,
                1 => 255,
                _ => rng.next_u64() as u8,
            })
            .collect();
        let x_off: Vec<i8> = x.iter().map(|&p| (p ^ 0x80) as i8).collect();
        let sums: Vec<i32> = w
            .chunks_exact(cols.max(1))
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        let mut expected = std::vec![UNTOUCHED; rows];
        let mut got = std::vec![UNTOUCHED; rows];
        reference::gemv_u8_i8_i32(&w, cols, &x, &mut expected);
        super::gemv_u8_i8_i32_offset(&w, cols, &x_off, &sums, &mut got);
        assert_eq!(got, expected, "rows {rows} cols {cols}");
    }
}
#[cfg(target_arch = "x86_64")]
mod x86_vnni {
    use super::*;

    #[test]
    fn gemv_i8_blocks_vnni_matches_reference_bit_for_bit() {
        for part in BlocksPart::ALL {
            blocks_part("x86_vnni", super::super::x86::gemv_i8_blocks_vnni, part);
        }
    }

    /// With `std` (how the workspace's tests build the core) the x86 kernels above run their SIMD code, not the
    /// reference fallback, on any CPU that has the features; say which ran.
    #[test]
    fn the_simd_paths_ran_where_the_cpu_has_them() {
        let (avx2, vnni) = (
            super::super::x86::avx2_available(),
            super::super::x86::vnni_available(),
        );
        std::println!(
            "x86 kernels under test: AVX2 {avx2}, AVX-512 VNNI {vnni} ({:?})",
            super::super::simd::isa()
        );
        #[cfg(feature = "std")]
        assert_eq!(avx2, std::is_x86_feature_detected!("avx2"));
        #[cfg(feature = "std")]
        assert_eq!(
            super::super::simd::isa().avx512(),
            std::is_x86_feature_detected!("avx512f")
        );
    }
}

/// The multi-token GEMM as dispatched on this target (the AVX-512 VNNI kernel on x86-64 CPUs that have it, the
/// per-token GEMV in row chunks elsewhere) against the reference, bit for bit: token counts around the 16-lane
/// groups, the 32-token passes and the 4-token minimum, rows around the 8-row step and the row chunks, columns and
/// blocks that are multiples of 4 or not, scales of very different magnitudes, short activations or scales, a
/// missing weight-sum table and a workspace too small (which must fall back, not misbehave). `small` keeps every
/// dimension small (for Miri). Returns how many cases took the multi-token kernel.
fn gemm_random(seed: u64, cases: usize, small: bool) -> usize {
    let mut rng = Rng::new(seed);
    #[allow(unused_mut)] // only x86-64 counts the cases its multi-token kernel took
    let mut fast = 0;
    for i in 0..cases {
        let tokens = if small {
            [0usize, 1, 4, 5, 16, 17, 33][rng.below(7)]
        } else {
            [
                0usize, 1, 3, 4, 5, 14, 15, 16, 17, 30, 31, 32, 46, 47, 62, 63, 128,
            ][rng.below(17)]
        };
        let rows = if small {
            [0usize, 1, 8, 9][rng.below(4)]
        } else {
            [0usize, 1, 3, 7, 8, 9, 16, 17, 45, 64][rng.below(10)]
        };
        let cols = match i % 7 {
            _ if small => 1 + rng.below(40),
            0 => 1 + rng.below(130),
            1 => 768,
            _ => 4 * (1 + rng.below(70)),
        };
        let block = match i % 5 {
            0 => 4 * (1 + rng.below(8)),
            1 => cols,
            2 => 1 + rng.below(40),
            _ => [8, 16, 32, 64][rng.below(4)],
        };
        let nb = cols.div_ceil(block);
        let short = i % 17 == 0;
        let mut x = values(
            &mut rng,
            Fill::Random,
            false,
            0,
            tokens * cols - usize::from(short && tokens > 0),
        );
        // Mostly the quantiser's range -127..=127 (which the AVX2 kernel needs), sometimes -128 too.
        if i % 6 != 0 {
            x.iter_mut().for_each(|v| *v = (*v).max(-127));
        }
        let w = weights(
            &mut rng,
            if i % 4 == 0 {
                Fill::Extremes
            } else {
                Fill::Random
            },
            0,
            rows * cols,
        );
        let scales: Vec<f32> = (0..tokens * nb)
            .map(|_| {
                let mag = [1e-6f32, 1e-3, 0.02, 1.0, 37.5][rng.below(5)];
                mag * (1.0 + rng.below(1000) as f32 / 1000.0)
            })
            .collect();
        let words = if i % 11 == 0 {
            3
        } else {
            super::gemm_workspace_words(tokens, cols, block)
        };
        let mut work = std::vec![0u32; words];
        let mut expected = std::vec![f32::from_bits(0x7FC0_0001); tokens * rows];
        let mut got = expected.clone();
        reference::gemm_i8_blocks_f32(&w, cols, &x, block, &scales, rows, &mut expected);
        // The weights' block sums, as the engine prepares them; sometimes none (the GEMM must then fall back).
        let mut sums = std::vec![0i32; if i % 13 == 5 { 0 } else { rows * nb }];
        super::gemm_weight_sums(&w, cols, block, &mut sums);
        let input = super::GemmInput::new(&x, cols, block, &scales, tokens, &mut work);
        super::gemm_i8_blocks(&w, rows, &sums, &input, &mut got);
        // The same input serves a second matrix (the engine reuses one for Q, K and V).
        let w2: Vec<i8> = w.iter().map(|&v| v.wrapping_mul(3)).collect();
        let mut sums2 = std::vec![0i32; rows * nb];
        super::gemm_weight_sums(&w2, cols, block, &mut sums2);
        let mut expected2 = expected.clone();
        let mut got2 = expected.clone();
        reference::gemm_i8_blocks_f32(&w2, cols, &x, block, &scales, rows, &mut expected2);
        super::gemm_i8_blocks(&w2, rows, &sums2, &input, &mut got2);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let case = (
            ("tokens", tokens),
            ("rows", rows),
            ("cols", cols),
            ("block", block),
            ("words", words),
        );
        assert_eq!(bits(&got), bits(&expected), "{case:?}");
        assert_eq!(bits(&got2), bits(&expected2), "second matrix {case:?}");
        // In pieces, as threads split it: at the input's token step (a pass of the multi-token kernel) and off
        // it, the last piece sometimes short of the input's end.
        if rows > 0 && tokens > 0 {
            let step = if i % 2 == 0 {
                input.token_step()
            } else {
                1 + rng.below(tokens)
            };
            let end = if i % 3 == 0 {
                tokens - rng.below(tokens.min(3))
            } else {
                tokens
            };
            let mut pieces = std::vec![f32::from_bits(0x7FC0_0002); tokens * rows];
            for first in (0..end).step_by(step) {
                let n = step.min(end - first);
                let out = &mut pieces[first * rows..(first + n) * rows];
                super::gemm_i8_blocks_from(&w, rows, &sums, &input, first, out);
            }
            let want = &expected[..end * rows];
            assert_eq!(
                bits(&pieces[..end * rows]),
                bits(want),
                "pieces of {step} {case:?}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        {
            fast += usize::from(
                super::x86::pack_vnni(&x, cols, block, &scales, tokens, &mut work)
                    || super::x86::gemm_avx2_applies(&x, cols, block, tokens),
            );
        }
    }
    fast
}

#[test]
fn gemm_i8_blocks_matches_reference_bit_for_bit() {
    let fast = gemm_random(21, 300, false);
    std::println!("multi-token kernel took {fast} of 300 cases");
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if super::x86::avx2_available() {
        let vnni = super::x86::vnni512_available();
        std::println!(
            "the multi-token kernel is the {}",
            if vnni { "AVX-512 VNNI" } else { "AVX2" }
        );
        assert!(fast > 100, "the multi-token GEMM ran in only {fast} cases");
    }
}

/// The GEMM on a few small shapes: few enough to run under Miri (where it takes the portable path).
#[test]
fn gemm_i8_blocks_small_shapes() {
    gemm_random(22, 12, true);
}

/// A multi-token GEMM with [`reference::gemm_i8_blocks_f32`]'s signature.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
type Gemm = fn(&[i8], usize, &[i8], usize, &[f32], usize, &mut [f32]);

/// `gemm` against the reference, bit for bit, on seeded random shapes: token counts around the 4-token tiles,
/// rows around the 4-row quads, columns around the 16-byte steps, blocks that do and do not divide them, extreme
/// weights, activations mostly in the quantiser's range -127..=127 (sometimes with -128), and activations or
/// scales that run out before the last token. Outputs the reference leaves alone (a NaN with a payload) must stay
/// so.
#[cfg(any(target_arch = "aarch64", target_arch = "x86_64"))]
fn gemm_twin(gemm: Gemm) {
    let mut rng = Rng::new(41);
    for i in 0..400 {
        let tokens = [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 33][rng.below(12)];
        let rows = [0usize, 1, 3, 4, 5, 8, 9, 17][rng.below(8)];
        let cols = match i % 5 {
            0 => 1 + rng.below(100),
            1 => 16 * (1 + rng.below(8)),
            2 => [768, 800, 1000][rng.below(3)],
            _ => 8 * (1 + rng.below(20)),
        };
        let block = match i % 5 {
            0 => cols,
            1 => 1 + rng.below(40),
            _ => [8, 16, 32, 64][rng.below(4)],
        };
        let nb = cols.div_ceil(block);
        let short_x = usize::from(i % 13 == 0 && tokens > 0);
        let short_scales = usize::from(i % 11 == 0 && tokens > 0);
        let fill = if i % 4 == 0 {
            Fill::Extremes
        } else {
            Fill::Random
        };
        let mut x = values(&mut rng, Fill::Random, false, 0, tokens * cols - short_x);
        if i % 7 != 0 {
            x.iter_mut().for_each(|v| *v = (*v).max(-127));
        }
        let w = weights(&mut rng, fill, 0, rows * cols);
        let scales: Vec<f32> = (0..tokens * nb - short_scales)
            .map(|_| [1e-6f32, 0.02, 1.0, 37.5][rng.below(4)] * (1.0 + rng.below(999) as f32 / 1e3))
            .collect();
        let mut expected = std::vec![f32::from_bits(0x7FC0_0003); tokens * rows + 3];
        let mut got = expected.clone();
        reference::gemm_i8_blocks_f32(&w, cols, &x, block, &scales, rows, &mut expected);
        gemm(&w, cols, &x, block, &scales, rows, &mut got);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let case = (tokens, rows, cols, block, short_x, short_scales);
        assert_eq!(
            bits(&got),
            bits(&expected),
            "(tokens, rows, cols, block, short x, short scales) {case:?}"
        );
    }
}

/// One activation scale per token (`block >= cols`, the engine's linear layers), through the dispatched GEMM and
/// GEMV, the same bits as the reference: token counts around the row tiles' 4, 2 and 1 tokens (0..=13, 32),
/// rows around the 4-row quads (and a head's 64), columns around the 16-byte steps and ALBERT-base's 768 and
/// 3072, blocks equal to and wider than the row, and the largest `i16` pair sums (weights -127 and 127 with
/// activations -128 and 127).
fn one_block_cases(mut check: impl FnMut(&[i8], usize, &[i8], usize, &[f32], usize, usize, &str)) {
    let mut rng = Rng::new(51);
    for i in 0..160 {
        let tokens = if i % 16 == 15 { 32 } else { rng.below(14) };
        let rows = [1usize, 3, 4, 5, 7, 8, 9, 12, 64][rng.below(9)];
        let cols = match i % 6 {
            0 => [1usize, 2, 15, 16, 17, 31, 32, 33, 80, 208][rng.below(10)],
            1 => 768,
            2 if rows < 10 && tokens < 14 => 3072,
            _ => 1 + rng.below(200),
        };
        let block = if i % 5 == 0 {
            cols + 1 + rng.below(9)
        } else {
            cols
        };
        let (x, w) = match i % 7 {
            // The largest pair sums: -127 * -128 + -127 * -128 = 32512 per i16 lane.
            0 => (
                std::vec![-128i8; tokens * cols],
                std::vec![-127i8; rows * cols],
            ),
            1 => (
                std::vec![127i8; tokens * cols],
                std::vec![127i8; rows * cols],
            ),
            2 => (
                values(&mut rng, Fill::Extremes, false, 0, tokens * cols),
                weights(&mut rng, Fill::Extremes, 0, rows * cols),
            ),
            _ => (
                values(&mut rng, Fill::Random, false, 0, tokens * cols),
                weights(&mut rng, Fill::Random, 0, rows * cols),
            ),
        };
        let scales: Vec<f32> = (0..tokens)
            .map(|_| [1e-6f32, 0.02, 1.0, 37.5][rng.below(4)] * (1.0 + rng.below(999) as f32 / 1e3))
            .collect();
        let case =
            std::format!("tokens {tokens}, rows {rows}, cols {cols}, block {block}, case {i}");
        check(&w, cols, &x, block, &scales, rows, tokens, &case);
    }
}

#[test]
fn gemm_one_block_per_row_matches_reference_bit_for_bit() {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    one_block_cases(|w, cols, x, block, scales, rows, tokens, case| {
        let mut expected = std::vec![f32::from_bits(0x7FC0_0004); tokens * rows];
        reference::gemm_i8_blocks_f32(w, cols, x, block, scales, rows, &mut expected);
        let mut sums = std::vec![0i32; rows];
        super::gemm_weight_sums(w, cols, block, &mut sums);
        let mut work = std::vec![0u32; super::gemm_workspace_words(tokens, cols, block)];
        let input = super::GemmInput::new(x, cols, block, scales, tokens, &mut work);
        let mut got = std::vec![f32::from_bits(0x7FC0_0004); tokens * rows];
        super::gemm_i8_blocks(w, rows, &sums, &input, &mut got);
        assert_eq!(bits(&got), bits(&expected), "GEMM {case}");
        // Token by token through the GEMV.
        for t in 0..tokens {
            let mut one = std::vec![f32::from_bits(0x7FC0_0004); rows + 1];
            let xt = &x[t * cols..][..cols];
            super::gemv_i8_blocks(w, cols, xt, block, &scales[t..t + 1], &mut one);
            let want = &expected[t * rows..][..rows];
            assert_eq!(bits(&one[..rows]), bits(want), "GEMV token {t} {case}");
            assert_eq!(
                one[rows].to_bits(),
                0x7FC0_0004,
                "GEMV wrote past the rows {case}"
            );
        }
    });
}

/// [`one_block_cases`] through an AArch64 GEMM twin.
#[cfg(target_arch = "aarch64")]
fn gemm_twin_one_block(gemm: Gemm) {
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    one_block_cases(|w, cols, x, block, scales, rows, tokens, case| {
        let mut expected = std::vec![f32::from_bits(0x7FC0_0005); tokens * rows + 2];
        let mut got = expected.clone();
        reference::gemm_i8_blocks_f32(w, cols, x, block, scales, rows, &mut expected);
        gemm(w, cols, x, block, scales, rows, &mut got);
        assert_eq!(bits(&got), bits(&expected), "{case}");
    });
}

#[cfg(target_arch = "aarch64")]
#[test]
fn neon_mull_gemm_one_block_per_row_matches_reference() {
    gemm_twin_one_block(super::neon::gemm_i8_blocks_mull);
}

/// The `smull` / `smlal2` block kernels' precondition (no weight is -128) is checked in debug builds.
#[cfg(all(target_arch = "aarch64", debug_assertions))]
#[test]
#[should_panic(expected = "block kernel weights must be in -127..=127")]
fn neon_mull_block_kernels_reject_weights_of_minus_128() {
    let mut out = [0f32; 1];
    super::neon::gemv_i8_blocks_mull(&[-128; 16], 16, &[1; 16], 16, &[1.0], &mut out);
}

#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
#[test]
fn neon_sdot_gemm_one_block_per_row_matches_reference() {
    gemm_twin_one_block(super::neon::gemm_i8_blocks_sdot);
}

/// [`one_block_cases`] through the dispatched GEMM on activations packed for `sdot` (AArch64 with `dotprod`):
/// the whole GEMM and pieces at groups of four tokens, tiles of eight and off them, the same bits as the reference
/// and nothing written past the outputs.
#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
#[test]
fn neon_sdot_packed_gemm_one_block_per_row_matches_reference() {
    const UNTOUCHED_F32: u32 = 0x7FC0_0006;
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let mut packed = 0;
    one_block_cases(|w, cols, x, block, scales, rows, tokens, case| {
        let mut expected = std::vec![f32::from_bits(UNTOUCHED_F32); tokens * rows];
        reference::gemm_i8_blocks_f32(w, cols, x, block, scales, rows, &mut expected);
        let mut work = std::vec![0u32; super::gemm_workspace_words(tokens, cols, block)];
        let input = super::GemmInput::new(x, cols, block, scales, tokens, &mut work);
        packed += usize::from(input.token_step() == 8);
        for step in [tokens.max(1), 8, 4, 3] {
            let mut got = std::vec![f32::from_bits(UNTOUCHED_F32); tokens * rows + 1];
            for first in (0..tokens).step_by(step) {
                let n = step.min(tokens - first);
                let out = &mut got[first * rows..(first + n) * rows];
                super::gemm_i8_blocks_from(w, rows, &[], &input, first, out);
            }
            assert_eq!(
                bits(&got[..tokens * rows]),
                bits(&expected),
                "pieces of {step}, {case}"
            );
            assert_eq!(
                got[tokens * rows].to_bits(),
                UNTOUCHED_F32,
                "wrote past, {case}"
            );
        }
    });
    assert!(packed > 20, "the packed kernel ran in only {packed} cases");
}

#[cfg(target_arch = "aarch64")]
#[test]
fn neon_mull_gemm_matches_reference_bit_for_bit() {
    gemm_twin(super::neon::gemm_i8_blocks_mull);
}

#[cfg(all(target_arch = "aarch64", target_feature = "dotprod"))]
#[test]
fn neon_sdot_gemm_matches_reference_bit_for_bit() {
    gemm_twin(super::neon::gemm_i8_blocks_sdot);
}

/// The AVX2 GEMM on its own, whatever kernel the dispatch picks on this CPU (with AVX-512 VNNI too).
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_avx2_gemm_matches_reference_bit_for_bit() {
    gemm_twin(super::x86::gemm_i8_blocks_avx2);
}

/// The AVX2 GEMM on a few small shapes (few enough for Miri, which checks its loads): token and row counts around
/// the tile, column tails, blocks of one step, of none (shorter than a step) and not dividing the columns.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_avx2_gemm_small_shapes() {
    let mut rng = Rng::new(44);
    for (tokens, rows, cols) in [
        (2usize, 1usize, 32usize),
        (5, 3, 33),
        (4, 2, 70),
        (3, 5, 64),
    ] {
        for block in [cols, 32, 16, 40] {
            let nb = cols.div_ceil(block);
            let w = values(&mut rng, Fill::Extremes, true, 0, rows * cols);
            let x: Vec<i8> = values(&mut rng, Fill::Random, false, 0, tokens * cols)
                .into_iter()
                .map(|v| v.max(-127))
                .collect();
            let scales: Vec<f32> = (0..tokens * nb).map(|i| 0.5 + i as f32).collect();
            let mut expected = std::vec![f32::from_bits(0x7FC0_0005); tokens * rows];
            let mut got = expected.clone();
            reference::gemm_i8_blocks_f32(&w, cols, &x, block, &scales, rows, &mut expected);
            super::x86::gemm_i8_blocks_avx2(&w, cols, &x, block, &scales, rows, &mut got);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got),
                bits(&expected),
                "{:?}",
                (tokens, rows, cols, block)
            );
        }
    }
}

/// The AVX2 GEMM's tile edges on the shapes it is meant for: tokens around the tile and rows around the row
/// tile and the weight chunk, columns at and around ALBERT-base's widths (tails of every length below 32), one
/// block per row and several, and every weight extreme including -128.
#[cfg(target_arch = "x86_64")]
#[test]
fn x86_avx2_gemm_matches_reference_edge_shapes() {
    let mut rng = Rng::new(43);
    for (i, &cols) in [32usize, 33, 63, 64, 65, 95, 127, 768, 769, 790, 799, 3072]
        .iter()
        .enumerate()
    {
        let tokens = [2usize, 3, 5, 7, 128][i % 5];
        let rows = [1usize, 4, 7, 64, 21][i % 5] + usize::from(cols < 100) * 20;
        for block in [cols, 32, 64, 48] {
            let nb = cols.div_ceil(block);
            let fill = if i % 3 == 0 {
                Fill::Extremes
            } else {
                Fill::Random
            };
            let w = values(&mut rng, fill, true, 0, rows * cols);
            let x: Vec<i8> = values(&mut rng, fill, false, 0, tokens * cols)
                .into_iter()
                .map(|v| v.max(-127))
                .collect();
            let scales: Vec<f32> = (0..tokens * nb)
                .map(|_| 0.01 + rng.below(1000) as f32 / 7.0)
                .collect();
            let mut expected = std::vec![f32::from_bits(0x7FC0_0004); tokens * rows];
            let mut got = expected.clone();
            reference::gemm_i8_blocks_f32(&w, cols, &x, block, &scales, rows, &mut expected);
            let ran =
                super::x86::gemm_rows_avx2(&w, cols, block, &x, &scales, tokens, rows, &mut got);
            assert_eq!(ran, super::x86::avx2_available());
            if ran {
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&expected),
                    "{:?}",
                    (tokens, rows, cols, block)
                );
            }
        }
    }
}

/// The dispatched 16-bit GEMV against the reference on random shapes: rows around the 4-row blocks, columns around
/// the 8-column steps, values over the whole `i16` range (the sums wrap), `x` shorter than a row, `out` longer than
/// `w` has rows (the rest left alone).
/// `n` random 16-bit values: the whole `i16` range when `wide`, else the engine's range for `d` = 64 (±5792).
fn i16_values(rng: &mut Rng, n: usize, wide: bool) -> Vec<i16> {
    (0..n)
        .map(|_| {
            if wide {
                rng.next_u64() as i16
            } else {
                (rng.below(11585) as i16) - 5792
            }
        })
        .collect()
}

#[test]
fn gemv_i16_matches_reference() {
    let mut rng = Rng::new(32);
    for i in 0..300 {
        let rows = rng.below(11);
        let cols = [0usize, 1, 7, 8, 9, 16, 31, 64, 100][rng.below(9)];
        let wide = i % 3 == 0;
        let mut sample = |n: usize| i16_values(&mut rng, n, wide);
        let w = sample(rows * cols + usize::from(i % 5 == 0));
        let x = sample(if i % 7 == 0 { cols / 2 } else { cols });
        let n_out = rows + usize::from(i % 2 == 0) * 2;
        let mut expected = std::vec![UNTOUCHED; n_out];
        let mut got = expected.clone();
        reference::gemv_i16_i32(&w, cols, &x, &mut expected);
        super::gemv_i16_i32(&w, cols, &x, &mut got);
        assert_eq!(got, expected, "rows {rows} cols {cols} x {}", x.len());
    }
}

/// The transposed int8 x f32 projection (`mapping_in`) against the reference: token counts around the groups of
/// four, widths around the 16-output steps, input lengths from 0, scales and biases shorter than the width, `wt`
/// one row short, outputs short of the last token, values over the full int8 range and `f32` inputs of mixed
/// magnitude.
#[test]
fn gemm_t_i8_f32_matches_reference() {
    let mut rng = Rng::new(35);
    for i in 0..300 {
        let h = [0usize, 1, 15, 16, 17, 32, 47, 64, 100, 128][rng.below(10)];
        let e = [0usize, 1, 3, 8, 33][rng.below(5)];
        let tokens = rng.below(10);
        let rows = if i % 7 == 0 { e.saturating_sub(1) } else { e };
        let wt: Vec<i8> = (0..rows * h).map(|_| rng.i8()).collect();
        let x: Vec<f32> = (0..tokens * e)
            .map(|_| (rng.next_u64() >> 40) as f32 / 1e5 - 80.0)
            .collect();
        let short = usize::from(i % 5 == 0);
        let scales: Vec<f32> = (0..h.saturating_sub(short))
            .map(|_| (rng.next_u64() >> 40) as f32 / 1e9)
            .collect();
        let bias: Vec<f32> = (0..h)
            .map(|_| (rng.next_u64() >> 40) as f32 / 1e6 - 8.0)
            .collect();
        let n_out = (tokens * h).saturating_sub(usize::from(i % 11 == 0));
        let mut expected = std::vec![f32::from_bits(0x7FC0_1234); n_out];
        let mut got = expected.clone();
        reference::gemm_t_i8_f32(&wt, h, &x, e, tokens, &scales, &bias, &mut expected);
        super::gemm_t_i8_f32(&wt, h, &x, e, tokens, &scales, &bias, &mut got);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&expected),
            "h {h} e {e} rows {rows} tokens {tokens}"
        );
    }
}

/// The NEON row sums (LayerNorm's mean and variance, the softmax's total) against the scalar lane order, bit for
/// bit: lengths around the chunks of eight, values of mixed magnitude and sign.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_lane_sums_match_the_reference() {
    let mut rng = Rng::new(36);
    for len in 0..80 {
        for _ in 0..5 {
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    ((rng.next_u64() >> 40) as f32 / 1e4 - 800.0)
                        * if rng.below(7) == 0 { 1e-6 } else { 1.0 }
                })
                .collect();
            let m = (rng.next_u64() >> 40) as f32 / 1e5 - 80.0;
            let got = super::neon_rows::lane_sum(&x, None);
            assert_eq!(
                got.to_bits(),
                reference::lane_sum(&x, |v| v).to_bits(),
                "len {len}"
            );
            let got = super::neon_rows::lane_sum(&x, Some(m));
            let want = reference::lane_sum(&x, |v| (v - m) * (v - m));
            assert_eq!(got.to_bits(), want.to_bits(), "len {len}, mean {m}");
        }
    }
}

/// The 16-bit products where every sum wraps: all values -32768, whose pairs of products (`2^31`) are the one
/// case `vpmaddwd` (and any pairwise `i32` step) wraps, in every tile shape and with a column tail.
#[test]
fn i16_products_wrap_like_the_reference() {
    for cols in [16usize, 32, 33, 64] {
        for (rows, queries) in [(4usize, 4usize), (5, 5), (8, 1), (3, 2)] {
            let w = std::vec![i16::MIN; rows * cols];
            let x = std::vec![i16::MIN; queries * cols];
            let mut expected = std::vec![UNTOUCHED; queries * rows];
            let mut got = expected.clone();
            reference::gemm_i16_i32(&w, cols, rows, &x, queries, &mut expected, rows);
            super::gemm_i16_i32(&w, cols, rows, &x, queries, &mut got, rows);
            assert_eq!(
                got, expected,
                "gemm rows {rows} cols {cols} queries {queries}"
            );
            let (mut expected, mut got) = (std::vec![0; rows], std::vec![1; rows]);
            reference::gemv_i16_i32(&w, cols, &x[..cols], &mut expected);
            super::gemv_i16_i32(&w, cols, &x[..cols], &mut got);
            assert_eq!(got, expected, "gemv rows {rows} cols {cols}");
        }
    }
}

/// The multi-query 16-bit product against the reference: query counts around the 4-query tiles, key counts
/// around the 4-key tiles, column counts around the 8-column steps, strides equal to and wider than the key count,
/// and short inputs (which take the reference's reading of them).
#[test]
fn gemm_i16_matches_reference() {
    let mut rng = Rng::new(33);
    for i in 0..400 {
        let rows = rng.below(11);
        let cols = [0usize, 1, 7, 8, 9, 16, 31, 64, 100][rng.below(9)];
        let queries = rng.below(10);
        let stride = rows + [0, 0, 1, 5][rng.below(4)];
        let wide = i % 3 == 0;
        let mut sample = |n: usize| i16_values(&mut rng, n, wide);
        let w = sample(rows * cols + usize::from(i % 5 == 0));
        let x = sample(queries * cols - usize::from(i % 11 == 0 && queries * cols > 0));
        let n_out = (queries * stride).saturating_sub(usize::from(i % 13 == 0));
        let mut expected = std::vec![UNTOUCHED; n_out];
        let mut got = expected.clone();
        reference::gemm_i16_i32(&w, cols, rows, &x, queries, &mut expected, stride);
        super::gemm_i16_i32(&w, cols, rows, &x, queries, &mut got, stride);
        assert_eq!(
            got, expected,
            "rows {rows} cols {cols} queries {queries} stride {stride}"
        );
    }
}

/// A head's K and V through `attention::Keys` / `attention::Values` (packed for AVX-512 VNNI where the CPU has
/// it, row-major / transposed elsewhere) against the reference products on plain layouts: sequence lengths around
/// the 16-key groups and 4-token words, head sizes odd and even, below and above 16, the full `i16` and `i8`
/// ranges (the scores wrap like the reference), probabilities 0 and 255, and probability rows shorter than the
/// sequence.
#[test]
fn attention_products_match_the_reference() {
    use super::attention::{keys_len, values_len, Keys, Values};
    let mut rng = Rng::new(31);
    for i in 0..300 {
        let seq = [1usize, 2, 3, 4, 5, 15, 16, 17, 31, 33, 64, 100, 128, 130][rng.below(14)];
        let d = [1usize, 2, 3, 7, 8, 16, 17, 32, 63, 64, 100][rng.below(11)];
        let wide = i % 3 == 0;
        let mut sample = |n: usize| i16_values(&mut rng, n, wide);
        let k = sample(seq * d);
        let q = sample(d);
        let mut kbuf = std::vec![0x5A5Ai16; keys_len(seq, d)];
        let mut keys = Keys::new(&mut kbuf, seq, d).unwrap();
        for t in 0..seq {
            keys.set(t, &k[t * d..(t + 1) * d]);
        }
        let mut expected = std::vec![UNTOUCHED; seq];
        let mut got = std::vec![UNTOUCHED; seq];
        reference::gemv_i16_i32(&k, d, &q, &mut expected);
        keys.scores(&q, &mut got);
        assert_eq!(got, expected, "scores seq {seq} d {d}");
        // Several queries at once, the scores `seq + 3` apart.
        let queries = 1 + i % 9;
        let qs = sample(queries * d);
        let stride = seq + 3;
        let mut expected = std::vec![UNTOUCHED; queries * stride];
        let mut got = expected.clone();
        for (qi, o) in qs.chunks_exact(d).zip(expected.chunks_exact_mut(stride)) {
            reference::gemv_i16_i32(&k, d, qi, &mut o[..seq]);
        }
        keys.scores_many(&qs, queries, &mut got, stride);
        assert_eq!(
            got, expected,
            "scores of {queries} queries, seq {seq} d {d}"
        );

        // The full int8 range; the transposed layout reads -128 as -127 (`Values::prepare_sums`), the packed one
        // as it is.
        let v: Vec<i8> = (0..seq * d).map(|_| rng.i8()).collect();
        let n_probs = if i % 7 == 0 { seq - 1 } else { seq };
        let probs: Vec<u8> = (0..n_probs)
            .map(|_| match rng.below(4) {
                0 => 0,
                1 => 255,
                _ => rng.next_u64() as u8,
            })
            .collect();
        let mut vbuf = std::vec![0x5Ai8; values_len(seq, d)];
        let mut values = Values::new(&mut vbuf, seq, d).unwrap();
        for t in 0..seq {
            values.set(t, &v[t * d..(t + 1) * d]);
        }
        #[cfg(target_arch = "x86_64")]
        let clamp = !super::x86::vnni512_available();
        #[cfg(not(target_arch = "x86_64"))]
        let clamp = true;
        let vt: Vec<i8> = (0..d * seq)
            .map(|i| v[(i % seq) * d + i / seq])
            .map(|v| if clamp { v.max(-127) } else { v })
            .collect();
        let mut expected = std::vec![UNTOUCHED; d];
        for (c, e) in expected.iter_mut().enumerate() {
            let mut one = [0];
            reference::gemv_u8_i8_i32(&vt[c * seq..c * seq + n_probs], n_probs, &probs, &mut one);
            *e = one[0];
        }
        let mut got = std::vec![UNTOUCHED; d];
        let mut sums = std::vec![0i32; d];
        values.prepare_sums(&mut sums);
        let mut p = probs.clone();
        values.attend(&mut p, &sums, &mut got);
        assert_eq!(got, expected, "values seq {seq} d {d} probs {n_probs}");

        // Several probability rows at once, the contexts `d + 2` apart.
        let queries = 1 + i % 9;
        let rows: Vec<u8> = (0..queries * seq).map(|_| rng.next_u64() as u8).collect();
        let stride = d + 2;
        let mut expected = std::vec![UNTOUCHED; queries * stride];
        let mut got = expected.clone();
        for (p, o) in rows
            .chunks_exact(seq)
            .zip(expected.chunks_exact_mut(stride))
        {
            reference::gemv_u8_i8_i32(&vt, seq, p, &mut o[..d]);
        }
        let mut p = rows.clone();
        values.attend_many(&mut p, queries, &sums, &mut got, stride);
        assert_eq!(
            got, expected,
            "values of {queries} queries, seq {seq} d {d}"
        );
    }
}

/// The multi-row int8 product against the reference: row counts of `x` around the 4-row tiles, `w` rows around
/// the 4-row tiles, column counts around the 8- and 16-column steps, strides equal to and wider than the row
/// count, and short inputs (which take the reference's reading of them).
#[test]
fn gemm_u8_offset_matches_reference() {
    let mut rng = Rng::new(34);
    for i in 0..400 {
        let rows = rng.below(11);
        let cols = [0usize, 1, 7, 8, 9, 16, 24, 31, 64, 100][rng.below(10)];
        let queries = rng.below(10);
        let stride = rows + [0, 0, 1, 5][rng.below(4)];
        // V as the quantiser makes it: -127..=127, the function's precondition.
        let w: Vec<i8> = (0..rows * cols + usize::from(i % 5 == 0))
            .map(|_| rng.i8().max(-127))
            .collect();
        let x: Vec<u8> = (0..(queries * cols).saturating_sub(usize::from(i % 11 == 0)))
            .map(|_| rng.next_u64() as u8)
            .collect();
        let sums: Vec<i32> = (0..rows)
            .map(|r| w[r * cols..][..cols].iter().map(|&v| v as i32).sum())
            .collect();
        let n_out = (queries * stride).saturating_sub(usize::from(i % 13 == 0));
        let mut expected = std::vec![UNTOUCHED; n_out];
        let mut got = expected.clone();
        // Rows of `x` cut short are left out.
        let whole = queries.min(x.len().checked_div(cols).unwrap_or(queries));
        for (k, o) in expected.chunks_mut(stride.max(1)).take(whole).enumerate() {
            let n = rows.min(o.len());
            reference::gemv_u8_i8_i32(&w, cols, &x[k * cols..][..cols], &mut o[..n]);
        }
        let x_off: Vec<i8> = x.iter().map(|&p| (p ^ 0x80) as i8).collect();
        super::gemm_u8_i8_i32_offset(&w, cols, rows, &x_off, queries, &sums, &mut got, stride);
        assert_eq!(
            got, expected,
            "rows {rows} cols {cols} queries {queries} stride {stride}"
        );
    }
}

/// `layer_norm_rows` against the reference row by row: row counts around the 8-row groups, widths from 1 to
/// ALBERT-base's, values from tiny to large, rows of zeros and negative zeros.
#[test]
#[cfg_attr(miri, ignore)] // `libm::sqrtf` is inline assembly on x86-64, which Miri cannot run; safe code anyway
fn layer_norm_rows_matches_the_reference() {
    let mut rng = Rng::new(41);
    let cases = 200;
    for i in 0..cases {
        let rows = [0usize, 1, 7, 8, 9, 16, 17][rng.below(7)];
        let cols = [1usize, 2, 31, 64, 128, 768][rng.below(6)];
        let mag = [1e-30f32, 1e-3, 1.0, 30.0, 1e15][rng.below(5)];
        // A partial row after the whole ones, sometimes.
        let extra = rng.below(cols.min(3));
        let mut x: Vec<f32> = (0..rows * cols + extra)
            .map(|_| (rng.below(20001) as f32 - 10000.0) / 10000.0 * mag)
            .collect();
        if i % 9 == 0 && rows > 0 {
            let zero = if i % 2 == 0 { 0.0 } else { -0.0 };
            x[..cols].iter_mut().for_each(|v| *v = zero);
        }
        let gamma: Vec<f32> = (0..cols).map(|_| rng.below(2000) as f32 / 1000.0).collect();
        let beta: Vec<f32> = (0..cols)
            .map(|_| rng.below(2000) as f32 / 1000.0 - 1.0)
            .collect();
        let eps = [1e-12f32, 1e-5][i % 2];
        let mut expected = x.clone();
        for row in expected.chunks_exact_mut(cols) {
            reference::layer_norm_f32(row, &gamma, &beta, eps);
        }
        // The trailing partial row stays as it was.
        let tail = rows * cols;
        expected[tail..].copy_from_slice(&x[tail..]);
        super::layer_norm_rows(&mut x, cols, &gamma, &beta, eps);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&x),
            bits(&expected),
            "rows {rows} cols {cols} magnitude {mag}"
        );
    }
}

/// The residual add and LayerNorm against the reference row by row (`y += x`, `layer_norm_f32`, copied to `x`):
/// row counts around the four-row groups, widths from 1 to ALBERT-base's, values from tiny to large, a `hidden`
/// shorter than `sublayer`, rows that cancel to zeros.
#[test]
#[cfg_attr(miri, ignore)] // `libm::sqrtf` is inline assembly on x86-64, which Miri cannot run; safe code anyway
fn add_layer_norm_rows_matches_the_reference() {
    let mut rng = Rng::new(47);
    for i in 0..200 {
        let rows = [0usize, 1, 3, 4, 5, 8, 9][rng.below(7)];
        let cols = [1usize, 2, 7, 31, 64, 128, 768][rng.below(7)];
        let mag = [1e-30f32, 1e-3, 1.0, 30.0, 1e15][rng.below(5)];
        let mut sample = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.below(20001) as f32 - 10000.0) / 10000.0 * mag)
                .collect()
        };
        let mut y = sample(rows * cols);
        let mut x = sample(rows * cols - if i % 5 == 0 && rows > 0 { cols } else { 0 });
        if i % 7 == 0 && !x.is_empty() {
            // The first row cancels: y + x = 0.
            for (y, &x) in y.iter_mut().zip(&x[..cols]) {
                *y = -x;
            }
        }
        let gamma: Vec<f32> = (0..cols).map(|_| rng.below(2000) as f32 / 1000.0).collect();
        let beta: Vec<f32> = (0..cols)
            .map(|_| rng.below(2000) as f32 / 1000.0 - 1.0)
            .collect();
        let eps = [1e-12f32, 1e-5][i % 2];
        let (mut want_y, mut want_x) = (y.clone(), x.clone());
        for (y, x) in want_y
            .chunks_exact_mut(cols)
            .zip(want_x.chunks_exact_mut(cols))
        {
            y.iter_mut().zip(&*x).for_each(|(y, &x)| *y += x);
            reference::layer_norm_f32(y, &gamma, &beta, eps);
            x.copy_from_slice(y);
        }
        super::add_layer_norm_rows(&mut y, &mut x, cols, &gamma, &beta, eps);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        let case = std::format!("rows {rows} cols {cols} magnitude {mag}");
        assert_eq!(bits(&x), bits(&want_x), "hidden, {case}");
        assert_eq!(bits(&y), bits(&want_y), "sublayer, {case}");
    }
}

/// `masked_softmax_rows` against the reference row by row: 1 to 8 rows, lengths around the vector widths, slots
/// wider than the rows, masks that keep all, some or none, scores from tiny to huge.
#[test]
fn masked_softmax_rows_matches_the_reference() {
    let mut rng = Rng::new(43);
    let cases = if cfg!(miri) { 6 } else { 300 };
    for i in 0..cases {
        let rows = 1 + rng.below(8);
        let n = [1usize, 2, 7, 8, 9, 31, 128][rng.below(7)];
        let width = n + [0, 1, 5][rng.below(3)];
        let mag = [1e-6f32, 1.0, 30.0, 1e4][rng.below(4)];
        let x: Vec<f32> = (0..rows * width)
            .map(|_| (rng.below(20001) as f32 - 10000.0) / 10000.0 * mag)
            .collect();
        let mask: Vec<bool> = (0..n)
            .map(|_| match i % 4 {
                0 => true,
                1 => false,
                _ => rng.below(3) > 0,
            })
            .collect();
        let keep = |j: usize| mask[j];
        let mut expected = x.clone();
        for row in expected.chunks_mut(width) {
            reference::masked_softmax_f32(&mut row[..n], keep);
        }
        let mut got = x.clone();
        super::masked_softmax_rows(&mut got, width, n, rows, keep);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&got),
            bits(&expected),
            "rows {rows} n {n} width {width} magnitude {mag}"
        );
    }
}

/// The instruction-set level is decided once and stays put, matches the build's own where it is fixed at build
/// time, and the vectorised variants return what the closure computes.
#[test]
fn isa_is_stable_and_vectorized_runs_the_closure() {
    use super::simd::{isa, vectorized, vectorized_256, Isa};
    let level = isa();
    assert_eq!(level, isa());
    if !cfg!(all(target_arch = "x86_64", feature = "std")) {
        assert_eq!(level, Isa::COMPILED);
    }
    let x: std::vec::Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 11.0).collect();
    let plain: f32 = x.iter().map(|v| v * v).sum();
    assert_eq!(
        vectorized(
            #[inline(always)]
            || x.iter().map(|v| v * v).sum::<f32>()
        )
        .to_bits(),
        plain.to_bits()
    );
    assert_eq!(
        vectorized_256(
            #[inline(always)]
            || x.iter().map(|v| v * v).sum::<f32>()
        )
        .to_bits(),
        plain.to_bits()
    );
}

/// The suite itself: a kernel wrong on one width, or one writing past the rows, is caught, and the first
/// mismatch names the case.
#[test]
fn conformance_suite_catches_a_wrong_kernel() {
    use conformance::{check_blocks, check_gemv, Blocks, Gemv};
    let off_at_17_columns: Gemv = |w, cols, x, out| {
        reference::gemv_i8_i32(w, cols, x, out);
        if cols == 17 && !out.is_empty() {
            out[0] = out[0].wrapping_add(1);
        }
    };
    let writes_past_the_rows: Gemv = |w, cols, x, out| {
        reference::gemv_i8_i32(w, cols, x, out);
        let rows = w.len() / cols.max(1);
        out.iter_mut().skip(rows).for_each(|o| *o = 0);
    };
    let off_at_block_4: Blocks = |w, cols, x, block, scales, out| {
        reference::gemv_i8_blocks_f32(w, cols, x, block, scales, out);
        if block == 4 && !out.is_empty() {
            out[0] = -out[0];
        }
    };
    let mut scratch = scratch();
    let m = check_gemv("off", off_at_17_columns, &GemvPart::ALL, &mut scratch).unwrap_err();
    assert_eq!((m.kernel, m.case.cols, m.index), ("off", 17, 0));
    let m = check_gemv("past", writes_past_the_rows, &GemvPart::ALL, &mut scratch).unwrap_err();
    assert_eq!(m.expected, UNTOUCHED, "{m:?}");
    let m = check_blocks("blocks", off_at_block_4, &BlocksPart::ALL, &mut scratch).unwrap_err();
    assert_eq!(m.case.block, 4, "{m:?}");
    // Too little scratch: cases are skipped, not run out of bounds.
    let tally = check_gemv("tiny", reference::gemv_i8_i32, &GemvPart::ALL, &mut [0; 64]).unwrap();
    assert!(tally.cases > 0 && tally.skipped > 0, "{tally:?}");
}
