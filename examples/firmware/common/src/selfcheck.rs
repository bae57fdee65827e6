//! On-device kernel self-check: every int8 matrix-vector kernel compiled into this image against
//! `albert_edge::kernels::reference`, bit for bit, on the cases of the host harness (`src/kernels/tests.rs`):
//! seeded random shapes, the edge lengths around every step width, extreme values, every misalignment of `w` and
//! `x`, and calls outside the contract. The host harness cannot run the Cortex-M kernels; this runs where they do.
//!
//! It needs no memory of its own: the buffers are carved out of a scratch slice (the model's arena, before the
//! model uses it). Cases that do not fit it are skipped and counted.

use albert_edge::kernels::{self, reference};

/// A `gemv_i8_i32` implementation.
pub type Gemv = fn(&[i8], usize, &[i8], &mut [i32]);

/// A `gemv_i8_blocks` implementation (block-scaled, `f32` out).
pub type Blocks = fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]);

/// Every block-scaled kernel compiled into this image, by name (as [`kernels_under_test`]).
pub fn block_kernels_under_test(
    mut f: impl FnMut(&'static str, Blocks) -> Result<(), Mismatch>,
) -> Result<(), Mismatch> {
    f("dispatch blocks", kernels::gemv_i8_blocks)?;
    #[cfg(all(target_arch = "arm", feature = "dsp"))]
    f("dsp blocks", kernels::dsp::gemv_i8_blocks_dsp)?;
    #[cfg(all(target_arch = "arm", feature = "helium"))]
    f("helium blocks", kernels::helium::gemv_i8_blocks_helium)?;
    Ok(())
}

/// Every kernel compiled into this image, by name: the dispatcher the model calls, and each optimised kernel.
pub fn kernels_under_test(
    mut f: impl FnMut(&'static str, Gemv) -> Result<(), Mismatch>,
) -> Result<(), Mismatch> {
    f("dispatch", kernels::gemv_i8_i32)?;
    #[cfg(all(target_arch = "arm", feature = "dsp"))]
    f("dsp", kernels::dsp::gemv_i8_i32_dsp)?;
    #[cfg(all(target_arch = "arm", feature = "helium"))]
    f("helium", kernels::helium::gemv_i8_i32_helium)?;
    Ok(())
}

/// The first difference found: which kernel, which case, which output.
#[derive(Debug, Clone, Copy)]
pub struct Mismatch {
    /// The kernel's name.
    pub kernel: &'static str,
    /// `(w.len(), cols, x.len(), out.len())` of the call.
    pub shape: (usize, usize, usize, usize),
    /// Byte offsets of `w` and `x` from a 16-byte boundary.
    pub offsets: (usize, usize),
    /// The first differing output.
    pub index: usize,
    /// The reference's value there (the bits of an `f32` for a block-scaled kernel).
    pub expected: i32,
    /// The kernel's value there.
    pub got: i32,
}

/// How many cases ran (for each kernel) and how many did not fit the scratch memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Kernels checked.
    pub kernels: usize,
    /// Cases each kernel ran.
    pub cases: usize,
    /// Cases skipped for lack of scratch memory.
    pub skipped: usize,
    /// Block-scaled kernels checked.
    pub block_kernels: usize,
    /// Cases each block-scaled kernel ran.
    pub block_cases: usize,
    /// Block-scaled cases skipped for lack of scratch memory.
    pub block_skipped: usize,
}

/// Column counts around every step width (4 for DSP, 16 for Helium, 8 and 16 for NEON) and the model's widths.
const EDGE_COLS: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129,
    255, 256, 768, 1000,
];

/// Row counts around the 4-row blocks, and none.
const EDGE_ROWS: &[usize] = &[0, 1, 2, 3, 4, 5, 7, 8, 9, 13];

/// What outputs start as: entries the reference does not write must keep it.
const UNTOUCHED: i32 = 0x5A5A_5A5A;

/// SplitMix64: the same generator as the host harness.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// How the values of a case are drawn.
#[derive(Clone, Copy)]
enum Fill {
    Random,
    /// Every value -128: products of 16384, two of which overflow an `i16`.
    AllMin,
    /// `w` -128, `x` 127.
    MinTimesMax,
    /// Only -128, -127, 0 and 127.
    Extremes,
}

impl Fill {
    fn draw(self, rng: &mut Rng, is_w: bool) -> i8 {
        match self {
            Fill::Random => rng.next_u64() as u8 as i8,
            Fill::AllMin => -128,
            Fill::MinTimesMax if is_w => -128,
            Fill::MinTimesMax => 127,
            Fill::Extremes => [-128, -127, 0, 127][rng.below(4)],
        }
    }
}

/// The scratch memory carved into the buffers of one case.
struct Buffers<'s> {
    bytes: &'s mut [u8],     // w at [w_off..], then x at [x_start + x_off..]
    expected: &'s mut [i32], // (out_len)
    got: &'s mut [i32],      // (out_len)
}

/// Runs the cases on each kernel; stops at the first mismatch.
pub fn run(scratch: &mut [u8]) -> Result<Summary, Mismatch> {
    let mut summary = Summary::default();
    kernels_under_test(|name, gemv| {
        let mut c = Checker {
            name,
            gemv,
            scratch: &mut *scratch,
            cases: 0,
            skipped: 0,
        };
        c.all()?;
        summary.kernels += 1;
        summary.cases = c.cases;
        summary.skipped = c.skipped;
        Ok(())
    })?;
    block_kernels_under_test(|name, gemv| {
        let (cases, skipped) = check_blocks(name, gemv, &mut *scratch)?;
        summary.block_kernels += 1;
        summary.block_cases = cases;
        summary.block_skipped = skipped;
        Ok(())
    })?;
    Ok(summary)
}

/// The block-scaled kernel against `reference::gemv_i8_blocks_f32`, bit for bit, on seeded random shapes, block
/// widths (dividing the row or not, wider than it), scales of very different magnitudes and extreme values (the
/// host harness's `blocks_random`). Returns (cases run, cases skipped for memory).
fn check_blocks(
    name: &'static str,
    gemv: Blocks,
    scratch: &mut [u8],
) -> Result<(usize, usize), Mismatch> {
    let mut rng = Rng(8);
    let (mut cases, mut skipped) = (0, 0);
    for i in 0..200 {
        let rows = rng.below(14);
        let cols = if i % 20 == 0 {
            rng.below(1100)
        } else {
            rng.below(140)
        };
        let block = match i % 9 {
            0 => cols + 1 + rng.below(8),
            1 => 1 + rng.below(4),
            _ => [8, 16, 24, 32, 64, 128][rng.below(6)],
        };
        let nb = cols.div_ceil(block);
        let fill = if i % 3 == 0 {
            Fill::Extremes
        } else {
            Fill::Random
        };
        let offsets = (rng.below(16), rng.below(16));
        let Some(b) = carve(
            scratch,
            rows * cols + offsets.0,
            cols + offsets.1,
            rows + nb,
        ) else {
            skipped += 1;
            continue;
        };
        let x_start = round16(rows * cols + offsets.0);
        let (w_part, x_part) = b.bytes.split_at_mut(x_start);
        let w = as_i8(&mut w_part[offsets.0..offsets.0 + rows * cols]);
        let x = as_i8(&mut x_part[offsets.1..offsets.1 + cols]);
        w.iter_mut().for_each(|v| *v = fill.draw(&mut rng, true));
        x.iter_mut().for_each(|v| *v = fill.draw(&mut rng, false));
        let (scales, expected) = b.expected.split_at_mut(nb);
        for s in scales.iter_mut() {
            let mag = [1e-6f32, 1e-3, 0.02, 1.0, 37.5][rng.below(5)];
            *s = (mag * (1.0 + rng.below(1000) as f32 / 1000.0)).to_bits() as i32;
        }
        let got = &mut b.got[..rows];
        expected.fill(UNTOUCHED);
        got.fill(UNTOUCHED);
        let scales: &[f32] = as_f32(scales);
        reference::gemv_i8_blocks_f32(w, cols, x, block, scales, as_f32_mut(expected));
        gemv(w, cols, x, block, scales, as_f32_mut(got));
        cases += 1;
        if let Some(index) = expected.iter().zip(got.iter()).position(|(e, g)| e != g) {
            return Err(Mismatch {
                kernel: name,
                shape: (rows * cols, cols, cols, rows),
                offsets,
                index,
                expected: expected[index],
                got: got[index],
            });
        }
    }
    Ok((cases, skipped))
}

fn as_f32(words: &mut [i32]) -> &[f32] {
    // SAFETY: `i32` and `f32` have the same size and alignment and every bit pattern is valid for both.
    unsafe { &*(words as *mut [i32] as *const [f32]) }
}

fn as_f32_mut(words: &mut [i32]) -> &mut [f32] {
    // SAFETY: as in `as_f32`.
    unsafe { &mut *(words as *mut [i32] as *mut [f32]) }
}

struct Checker<'s> {
    name: &'static str,
    gemv: Gemv,
    scratch: &'s mut [u8],
    cases: usize,
    skipped: usize,
}

impl Checker<'_> {
    fn all(&mut self) -> Result<(), Mismatch> {
        let mut rng = Rng(1);
        for &rows in EDGE_ROWS {
            for &cols in EDGE_COLS {
                self.shape(&mut rng, rows, cols, (0, 0), Fill::Random)?;
            }
        }
        let mut rng = Rng(2);
        for i in 0..150 {
            let rows = rng.below(20);
            let cols = if i % 10 == 0 {
                rng.below(1100)
            } else {
                rng.below(300)
            };
            let offsets = (rng.below(16), rng.below(16));
            self.shape(&mut rng, rows, cols, offsets, Fill::Random)?;
        }
        let mut rng = Rng(3);
        for fill in [Fill::AllMin, Fill::MinTimesMax, Fill::Extremes] {
            for rows in [1, 3, 4, 5] {
                for &cols in EDGE_COLS {
                    self.shape(&mut rng, rows, cols, (0, 0), fill)?;
                }
            }
        }
        let mut rng = Rng(4);
        for w_off in 0..4 {
            for x_off in 0..4 {
                for (rows, cols) in [(5, 15), (4, 16), (3, 17), (9, 33), (4, 64), (2, 200)] {
                    self.shape(&mut rng, rows, cols, (w_off, x_off), Fill::Random)?;
                }
            }
        }
        // Outside the contract: `cols == 0` with a non-empty `w`, `x` shorter or longer than `cols`, `w` ending
        // mid-row, `out` longer than the rows of `w`. The reference's answer is still the answer.
        let mut rng = Rng(5);
        for (w_len, cols, x_len, out_len) in [
            (0, 0, 0, 3),
            (5, 0, 3, 7),
            (5, 0, 0, 7),
            (64, 16, 15, 4),
            (64, 16, 8, 4),
            (64, 16, 40, 4),
            (100, 16, 16, 9),
            (100, 17, 17, 9),
            (7 * 24 + 5, 24, 24, 12),
            (4 * 33, 33, 33, 2),
        ] {
            self.case(
                &mut rng,
                (w_len, cols, x_len, out_len),
                (0, 0),
                Fill::Random,
            )?;
        }
        Ok(())
    }

    fn shape(
        &mut self,
        rng: &mut Rng,
        rows: usize,
        cols: usize,
        offsets: (usize, usize),
        fill: Fill,
    ) -> Result<(), Mismatch> {
        self.case(rng, (rows * cols, cols, cols, rows), offsets, fill)
    }

    /// One call `gemv(w[..w_len], cols, x[..x_len], out[..out_len])`, `w` and `x` starting `offsets` bytes after
    /// a 16-byte boundary.
    fn case(
        &mut self,
        rng: &mut Rng,
        shape: (usize, usize, usize, usize),
        offsets: (usize, usize),
        fill: Fill,
    ) -> Result<(), Mismatch> {
        let (w_len, cols, x_len, out_len) = shape;
        let Some(b) = carve(self.scratch, w_len + offsets.0, x_len + offsets.1, out_len) else {
            self.skipped += 1;
            return Ok(());
        };
        let x_start = round16(w_len + offsets.0);
        let (w_part, x_part) = b.bytes.split_at_mut(x_start);
        let w = as_i8(&mut w_part[offsets.0..offsets.0 + w_len]);
        let x = as_i8(&mut x_part[offsets.1..offsets.1 + x_len]);
        w.iter_mut().for_each(|v| *v = fill.draw(rng, true));
        x.iter_mut().for_each(|v| *v = fill.draw(rng, false));
        b.expected.fill(UNTOUCHED);
        b.got.fill(UNTOUCHED);
        reference::gemv_i8_i32(w, cols, x, b.expected);
        (self.gemv)(w, cols, x, b.got);
        self.cases += 1;
        match b
            .expected
            .iter()
            .zip(b.got.iter())
            .position(|(e, g)| e != g)
        {
            None => Ok(()),
            Some(index) => Err(Mismatch {
                kernel: self.name,
                shape,
                offsets,
                index,
                expected: b.expected[index],
                got: b.got[index],
            }),
        }
    }
}

fn round16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

/// `w_bytes` then `x_bytes` (each from a 16-byte boundary) and two `i32` outputs, from `scratch`; `None` if they
/// do not fit.
fn carve(
    scratch: &mut [u8],
    w_bytes: usize,
    x_bytes: usize,
    out_len: usize,
) -> Option<Buffers<'_>> {
    // SAFETY: every bit pattern is a valid `u8` and a valid `i32`; `align_to_mut` only hands out aligned,
    // in-bounds, non-overlapping parts of `scratch`.
    let (_, words, _) = unsafe { scratch.align_to_mut::<i32>() };
    let byte_words = (round16(w_bytes) + round16(x_bytes)) / 4;
    let (bytes, rest) = words.split_at_mut_checked(byte_words)?;
    let (expected, rest) = rest.split_at_mut_checked(out_len)?;
    let got = rest.get_mut(..out_len)?;
    // SAFETY: as above: `i32` words viewed as bytes.
    let (_, bytes, _) = unsafe { bytes.align_to_mut::<u8>() };
    Some(Buffers {
        bytes,
        expected,
        got,
    })
}

fn as_i8(bytes: &mut [u8]) -> &mut [i8] {
    // SAFETY: `u8` and `i8` have the same size and alignment and every bit pattern is valid for both.
    unsafe { &mut *(bytes as *mut [u8] as *mut [i8]) }
}
