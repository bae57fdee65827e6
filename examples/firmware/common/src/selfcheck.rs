//! On-device kernel self-check: every int8 matrix-vector kernel compiled into this image through
//! `albert_edge::kernels::conformance`, the suite the host tests run, bit for bit against the reference. The host
//! cannot run the Cortex-M kernels; this runs where they do.
//!
//! It needs no memory of its own: the suite carves its buffers from a scratch slice (the model's arena, before
//! the model uses it) and counts the cases that do not fit.

use albert_edge::kernels;
pub use albert_edge::kernels::conformance::Mismatch;
use albert_edge::kernels::conformance::{self, Blocks, BlocksPart, Gemv, GemvPart};

/// Every `gemv_i8_i32` kernel compiled into this image, by name: the dispatcher the model calls, and each
/// optimised kernel.
const GEMV: &[(&str, Gemv)] = &[
    ("dispatch", kernels::gemv_i8_i32),
    #[cfg(all(target_arch = "arm", feature = "dsp"))]
    ("dsp", kernels::dsp::gemv_i8_i32_dsp),
    #[cfg(all(target_arch = "arm", feature = "helium"))]
    ("helium", kernels::helium::gemv_i8_i32_helium),
];

/// Every block-scaled kernel compiled into this image, by name (as [`GEMV`]).
const BLOCKS: &[(&str, Blocks)] = &[
    ("dispatch blocks", kernels::gemv_i8_blocks),
    #[cfg(all(target_arch = "arm", feature = "dsp"))]
    ("dsp blocks", kernels::dsp::gemv_i8_blocks_dsp),
    #[cfg(all(target_arch = "arm", feature = "helium"))]
    ("helium blocks", kernels::helium::gemv_i8_blocks_helium),
];

/// How many kernels were checked, how many cases each ran and how many did not fit the scratch memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// `gemv_i8_i32` kernels checked.
    pub kernels: usize,
    /// Cases each of them ran.
    pub cases: usize,
    /// Cases skipped for lack of scratch memory.
    pub skipped: usize,
    /// Block-scaled kernels checked.
    pub block_kernels: usize,
    /// Cases each of them ran.
    pub block_cases: usize,
    /// Block-scaled cases skipped for lack of scratch memory.
    pub block_skipped: usize,
}

/// Runs the whole suite on each kernel; stops at the first mismatch.
pub fn run(scratch: &mut [u8]) -> Result<Summary, Mismatch> {
    let mut summary = Summary::default();
    for &(name, gemv) in GEMV {
        let tally = conformance::check_gemv(name, gemv, &GemvPart::ALL, scratch)?;
        (summary.cases, summary.skipped) = (tally.cases, tally.skipped);
        summary.kernels += 1;
    }
    for &(name, blocks) in BLOCKS {
        let tally = conformance::check_blocks(name, blocks, &BlocksPart::ALL, scratch)?;
        (summary.block_cases, summary.block_skipped) = (tally.cases, tally.skipped);
        summary.block_kernels += 1;
    }
    Ok(summary)
}
