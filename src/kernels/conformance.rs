//! The kernel conformance suite: one set of cases that every implementation of the int8 matrix-vector kernels
//! must pass, bit for bit against its [`mod@reference`] twin. The host tests run it on the kernels of the host's
//! target; firmware runs it on the Cortex-M kernels, which no host can (`examples/firmware`'s self-check).
//!
//! The cases: seeded random shapes, the edge lengths around every step width (4 for DSP, 8 and 16 for NEON, 16
//! for Helium, 32 for AVX2) and the model's widths, extreme values, every misalignment of `w` and `x`, and calls
//! outside the contract (whose answer is still the reference's). Each case draws its values from a seed of its
//! own, so a case is the same on every target whichever others ran.
//!
//! No allocation: each case's buffers are carved from a caller's scratch slice ([`SCRATCH_BYTES`] fit every
//! case); a case that does not fit is skipped and counted in the [`Tally`].

use super::reference;

/// A `gemv_i8_i32` implementation ([`reference::gemv_i8_i32`]'s signature).
pub type Gemv = fn(&[i8], usize, &[i8], &mut [i32]);

/// A block-scaled implementation ([`reference::gemv_i8_blocks_f32`]'s signature).
pub type Blocks = fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]);

/// Scratch bytes that fit every case (plus up to 15 for aligning the start to 16 bytes).
pub const SCRATCH_BYTES: usize = 80 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------------------------

/// SplitMix64: tiny, seedable, the same on every target.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform over the whole `i8` range, -128 included (the quantiser never emits it; kernels must take it).
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as u8 as i8
    }
}

/// Column counts around every step width and the model's real widths (head dims 8..64, sequence lengths, hidden
/// 128..768, intermediate 3072).
pub const EDGE_COLS: &[usize] = &[
    0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 63, 64, 65, 100, 127,
    128, 129, 255, 256, 768, 1000, 3072,
];

/// Row counts around the 2- and 4-row blocks, and none.
pub const EDGE_ROWS: &[usize] = &[0, 1, 2, 3, 4, 5, 7, 8, 9, 13];

/// What `i32` outputs start as: entries the reference does not write (past the rows `w` holds) must keep it.
pub const UNTOUCHED: i32 = 0x5A5A_5A5A;

/// What `f32` outputs start as: a NaN with a payload, which neither a kernel nor the reference writes by accident.
const UNTOUCHED_F32: u32 = 0x7FC0_0001;

/// How the values of a case are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Uniform over `-128..=127`.
    Random,
    /// Every value -128: the largest products (16384), two of which overflow an `i16`.
    AllMin,
    /// `w` all -128, `x` all 127: the most negative products.
    MinTimesMax,
    /// Only -128, -127, 0 and 127, at random.
    Extremes,
}

impl Fill {
    /// One value of `w` (`is_w`) or of `x`. Out of line: inlined into a loop, the loop is split per fill and
    /// unrolled, kilobytes of firmware flash for speed that does not matter here.
    #[inline(never)]
    pub fn draw(self, rng: &mut Rng, is_w: bool) -> i8 {
        match self {
            Fill::Random => rng.i8(),
            Fill::AllMin => -128,
            Fill::MinTimesMax if is_w => -128,
            Fill::MinTimesMax => 127,
            Fill::Extremes => [-128, -127, 0, 127][rng.below(4)],
        }
    }

    /// Every value of `w` (`is_w`) or of `x`.
    fn fill(self, rng: &mut Rng, is_w: bool, values: &mut [i8]) {
        values.iter_mut().for_each(|v| *v = self.draw(rng, is_w));
    }
}

/// One call: `kernel(w[..w_len], cols, x[..x_len], (block, scales[..scales]), out[..out_len])`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Case {
    /// Elements of `w`.
    pub w_len: usize,
    /// The `cols` argument.
    pub cols: usize,
    /// Elements of `x`.
    pub x_len: usize,
    /// Elements of `out`.
    pub out_len: usize,
    /// The `block` argument of a block-scaled kernel (0 for `gemv_i8_i32`).
    pub block: usize,
    /// Scales of a block-scaled kernel (0 for `gemv_i8_i32`).
    pub scales: usize,
    /// Byte offsets of `w` and `x` from a 16-byte boundary.
    pub offsets: (usize, usize),
    /// How `w` and `x` are drawn.
    pub fill: Fill,
    /// The seed of the case's values.
    pub seed: u64,
}

impl Case {
    /// `(w.len(), cols, x.len(), out.len())`.
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        (self.w_len, self.cols, self.x_len, self.out_len)
    }

    /// A well-formed `(rows, cols)` call: `w` is `(rows, cols)`, `x` is `(cols)`, `out` is `(rows)`.
    fn rows(rows: usize, cols: usize, offsets: (usize, usize), fill: Fill, rng: &mut Rng) -> Self {
        Case {
            w_len: rows * cols,
            cols,
            x_len: cols,
            out_len: rows,
            block: 0,
            scales: 0,
            offsets,
            fill,
            seed: rng.next_u64(),
        }
    }
}

/// A group of cases.
trait Part: Copy {
    /// Calls `each` on the part's cases, in order, until it fails.
    fn cases(self, each: impl FnMut(Case) -> Result<(), Mismatch>) -> Result<(), Mismatch>;
}

/// The groups of `gemv_i8_i32` cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvPart {
    /// Every [`EDGE_ROWS`] x [`EDGE_COLS`] shape, random values.
    EdgeShapes,
    /// 300 seeded random shapes up to 19 x 3199, `w` and `x` at random offsets.
    RandomShapes,
    /// The extreme [`Fill`]s on 1, 3, 4 and 5 rows of every [`EDGE_COLS`] width.
    ExtremeValues,
    /// Six shapes with `w` at each of the 16 offsets from a 16-byte boundary and, for each shape, `x` at every
    /// offset from `w` modulo 4 (the word loads of the DSP kernel).
    Misaligned,
    /// Calls outside the contract: `cols == 0` with a non-empty `w`, `x` shorter or longer than `cols`, `w` ending
    /// mid-row, `out` longer than the rows of `w`.
    OutsideContract,
}

impl GemvPart {
    /// Every part.
    pub const ALL: [GemvPart; 5] = [
        GemvPart::EdgeShapes,
        GemvPart::RandomShapes,
        GemvPart::ExtremeValues,
        GemvPart::Misaligned,
        GemvPart::OutsideContract,
    ];
}

impl Part for GemvPart {
    fn cases(self, mut each: impl FnMut(Case) -> Result<(), Mismatch>) -> Result<(), Mismatch> {
        let random = Fill::Random;
        match self {
            GemvPart::EdgeShapes => {
                let mut rng = Rng::new(1);
                for &rows in EDGE_ROWS {
                    for &cols in EDGE_COLS {
                        each(Case::rows(rows, cols, (0, 0), random, &mut rng))?;
                    }
                }
            }
            GemvPart::RandomShapes => {
                let mut rng = Rng::new(2);
                for i in 0..300 {
                    let rows = rng.below(20);
                    let cols = rng.below(if i % 10 == 0 { 3200 } else { 300 });
                    let offsets = (rng.below(16), rng.below(16));
                    each(Case::rows(rows, cols, offsets, random, &mut rng))?;
                }
            }
            GemvPart::ExtremeValues => {
                let mut rng = Rng::new(3);
                for fill in [Fill::AllMin, Fill::MinTimesMax, Fill::Extremes] {
                    for rows in [1, 3, 4, 5] {
                        for &cols in EDGE_COLS {
                            each(Case::rows(rows, cols, (0, 0), fill, &mut rng))?;
                        }
                    }
                }
            }
            GemvPart::Misaligned => {
                let mut rng = Rng::new(4);
                for w_off in 0..16 {
                    let shapes = [(5, 15), (4, 16), (3, 17), (9, 33), (4, 64), (2, 200)];
                    for (j, (rows, cols)) in shapes.into_iter().enumerate() {
                        // Across the four `w_off` of each residue modulo 4, `x_off - w_off` takes every residue.
                        let x_off = (w_off + j + w_off / 4) % 16;
                        each(Case::rows(rows, cols, (w_off, x_off), random, &mut rng))?;
                    }
                }
            }
            GemvPart::OutsideContract => {
                let mut rng = Rng::new(5);
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
                    let case = Case::rows(0, cols, (0, 0), random, &mut rng);
                    each(Case {
                        w_len,
                        x_len,
                        out_len,
                        ..case
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The groups of block-scaled cases. Their weights are in `-127..=127`, as the converter quantises them (the
/// block kernels' contract); the activations take the whole `i8` range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlocksPart {
    /// 400 seeded random shapes up to 13 x 1099, block widths dividing the row or not, wider than it and 0,
    /// scales of very different magnitudes (so that the `f32` combination order matters), `x` too short, fewer
    /// scales than blocks, `out` longer than the rows.
    Random,
    /// Small shapes around the four-row groups and the 16- and 32-column steps, every block width class (dividing
    /// the row or not, one column, wider than the row), unaligned starts: few enough to run under Miri.
    Small,
}

impl BlocksPart {
    /// Every part.
    pub const ALL: [BlocksPart; 2] = [BlocksPart::Random, BlocksPart::Small];
}

impl Part for BlocksPart {
    fn cases(self, mut each: impl FnMut(Case) -> Result<(), Mismatch>) -> Result<(), Mismatch> {
        match self {
            BlocksPart::Random => {
                let mut rng = Rng::new(8);
                for i in 0..400 {
                    let rows = rng.below(14);
                    let cols = rng.below(if i % 20 == 0 { 1100 } else { 140 });
                    let block = match i % 9 {
                        0 => 0,
                        1 => cols + 1 + rng.below(8),
                        2 => 1 + rng.below(4),
                        _ => [8, 16, 24, 32, 64, 128][rng.below(6)],
                    };
                    let nb = if block == 0 { 0 } else { cols.div_ceil(block) };
                    let fill = if i % 3 == 0 {
                        Fill::Extremes
                    } else {
                        Fill::Random
                    };
                    each(Case {
                        w_len: rows * cols,
                        cols,
                        x_len: cols - usize::from(i % 13 == 0 && cols > 0),
                        out_len: rows + rng.below(3),
                        block,
                        scales: nb - usize::from(i % 11 == 0 && nb > 0),
                        offsets: (rng.below(16), rng.below(16)),
                        fill,
                        seed: rng.next_u64(),
                    })?;
                }
            }
            BlocksPart::Small => {
                let mut rng = Rng::new(10);
                for rows in [1usize, 4, 5, 9] {
                    for cols in [1usize, 16, 17, 33, 64, 70] {
                        for block in [1usize, 4, 16, 32, 80] {
                            let offset = rng.below(16);
                            let fill = if (rows + cols + block) % 2 == 0 {
                                Fill::Extremes
                            } else {
                                Fill::Random
                            };
                            let case = Case::rows(rows, cols, (offset, offset), fill, &mut rng);
                            each(Case {
                                block,
                                scales: cols.div_ceil(block),
                                out_len: rows + 1,
                                ..case
                            })?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------------------------

/// The first difference found: which kernel, which case, which output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mismatch {
    /// The kernel's name, as the caller gave it.
    pub kernel: &'static str,
    /// The call.
    pub case: Case,
    /// The first differing output.
    pub index: usize,
    /// The reference's value there (the bits of an `f32` for a block-scaled kernel).
    pub expected: i32,
    /// The kernel's value there.
    pub got: i32,
}

/// What a check ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases run (all equal to the reference).
    pub cases: usize,
    /// Cases skipped because their buffers did not fit the scratch slice.
    pub skipped: usize,
}

/// Runs the `parts` on `gemv`, comparing every output with [`reference::gemv_i8_i32`]'s (outputs start as
/// [`UNTOUCHED`]); stops at the first mismatch.
pub fn check_gemv(
    kernel: &'static str,
    gemv: Gemv,
    parts: &[GemvPart],
    scratch: &mut [u8],
) -> Result<Tally, Mismatch> {
    check(kernel, parts, scratch, |b, cols, _| {
        b.expected.fill(UNTOUCHED);
        b.got.fill(UNTOUCHED);
        reference::gemv_i8_i32(b.w, cols, b.x, b.expected);
        gemv(b.w, cols, b.x, b.got);
    })
}

/// Runs the `parts` on `blocks`, comparing the bits of every output with [`reference::gemv_i8_blocks_f32`]'s;
/// stops at the first mismatch.
pub fn check_blocks(
    kernel: &'static str,
    blocks: Blocks,
    parts: &[BlocksPart],
    scratch: &mut [u8],
) -> Result<Tally, Mismatch> {
    check(kernel, parts, scratch, |b, cols, block| {
        b.w.iter_mut().for_each(|v| *v = (*v).max(-127));
        let [expected, got] = [&mut *b.expected, &mut *b.got].map(|o| {
            o.fill(UNTOUCHED_F32 as i32);
            bytemuck::cast_slice_mut::<i32, f32>(o)
        });
        let scales = bytemuck::cast_slice::<i32, f32>(b.scales);
        reference::gemv_i8_blocks_f32(b.w, cols, b.x, block, scales, expected);
        blocks(b.w, cols, b.x, block, scales, got);
    })
}

/// Each case of the `parts` in buffers carved from `scratch` (skipped where they do not fit), through
/// `call(buffers, cols, block)`, then its outputs compared.
fn check<P: Part>(
    kernel: &'static str,
    parts: &[P],
    scratch: &mut [u8],
    mut call: impl FnMut(&mut Buffers, usize, usize),
) -> Result<Tally, Mismatch> {
    let mut tally = Tally::default();
    for &part in parts {
        part.cases(|case| {
            let Some(mut b) = Buffers::carve(scratch, &case) else {
                tally.skipped += 1;
                return Ok(());
            };
            call(&mut b, case.cols, case.block);
            tally.cases += 1;
            b.compare(kernel, case)
        })?;
    }
    Ok(tally)
}

/// One case's buffers, carved from the scratch slice and filled from the case's seed.
struct Buffers<'s> {
    w: &'s mut [i8],         // (w_len)
    x: &'s mut [i8],         // (x_len)
    scales: &'s mut [i32],   // (scales) the bits of positive `f32`s
    expected: &'s mut [i32], // (out_len)
    got: &'s mut [i32],      // (out_len)
}

impl<'s> Buffers<'s> {
    /// `w` and `x` (each in its own 16-byte-aligned run, at its offset), the scales and two outputs; `None` if
    /// they do not fit `scratch`.
    fn carve(scratch: &'s mut [u8], case: &Case) -> Option<Self> {
        let round16 = |n: usize| n.div_ceil(16) * 16;
        let (w_off, x_off) = case.offsets;
        let start = scratch.as_ptr().align_offset(16);
        let (_, words, _) = bytemuck::pod_align_to_mut::<u8, i32>(scratch.get_mut(start..)?);
        let w_words = round16(w_off + case.w_len) / 4;
        let x_words = round16(x_off + case.x_len) / 4;
        let (w_words, rest) = words.split_at_mut_checked(w_words)?;
        let (x_words, rest) = rest.split_at_mut_checked(x_words)?;
        let (scales, rest) = rest.split_at_mut_checked(case.scales)?;
        let (expected, rest) = rest.split_at_mut_checked(case.out_len)?;
        let got = rest.get_mut(..case.out_len)?;
        let w = &mut bytemuck::cast_slice_mut::<i32, i8>(w_words)[w_off..][..case.w_len];
        let x = &mut bytemuck::cast_slice_mut::<i32, i8>(x_words)[x_off..][..case.x_len];
        let mut rng = Rng::new(case.seed);
        case.fill.fill(&mut rng, true, w);
        case.fill.fill(&mut rng, false, x);
        for s in scales.iter_mut() {
            let magnitude = [1e-6f32, 1e-3, 0.02, 1.0, 37.5][rng.below(5)];
            *s = (magnitude * (1.0 + rng.below(1000) as f32 / 1000.0)).to_bits() as i32;
        }
        Some(Buffers {
            w,
            x,
            scales,
            expected,
            got,
        })
    }

    /// `Err` with the first output where `got` differs from `expected`.
    fn compare(&self, kernel: &'static str, case: Case) -> Result<(), Mismatch> {
        match self
            .expected
            .iter()
            .zip(&*self.got)
            .position(|(e, g)| e != g)
        {
            None => Ok(()),
            Some(index) => Err(Mismatch {
                kernel,
                case,
                index,
                expected: self.expected[index],
                got: self.got[index],
            }),
        }
    }
}
