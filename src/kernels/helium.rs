//! Int8 kernels for Helium, the M-Profile Vector Extension (Cortex-M55, M85), equal to [`reference`](super::reference) bit for bit.
//!
//! Sixteen columns at a time: `VLDRB` loads 16 `i8` of `x` and of each weight row, `VMLADAVA.S8` multiplies the 16
//! pairs and adds all their products to a 32-bit general-purpose register. The loop is a tail-predicated
//! low-overhead loop (`DLSTP.8` / `LETP`): its last iteration runs with only the remaining lanes active, so any
//! column count needs no scalar tail, and lanes past the end are neither loaded nor added. Each load of `x` serves
//! four weight rows.
//!
//! Switched on by the Cargo feature `arm-helium`: rustc has no MVE target feature or intrinsics on stable, so the
//! kernel is `asm!`, and the build must let the assembler accept MVE: `-C target-cpu=cortex-m55` (or another
//! MVE CPU); otherwise it fails with "instruction requires: mve".
//!
//! # Exactness
//!
//! `VMLADAVA.S8` forms each product of two `i8` exactly and adds them and the accumulator modulo 2^32. Integer
//! addition is associative, so the result equals the reference's left-to-right sum exactly, wrap-around
//! included. Degenerate calls (`cols == 0`, `x` shorter than `cols`) go to the reference unchanged.

use core::arch::asm;

use super::blocked;

/// Rows per block: each vector load of `x` serves this many weight rows.
const ROWS: usize = 4;

/// The dot products of four rows with `x`, over all of `x`. Every row has `x.len()` elements.
#[inline(always)]
fn dots4(rows: [&[i8]; ROWS], x: &[i8]) -> [i32; ROWS] {
    let n = x.len();
    assert!(n > 0 && rows.iter().all(|r| r.len() == n));
    let (mut a0, mut a1, mut a2, mut a3) = (0i32, 0i32, 0i32, 0i32);
    // SAFETY: `x` and every row hold `n > 0` readable bytes (asserted above). The tail-predicated loop runs
    // `ceil(n / 16)` times and its loads touch only active lanes, so it reads exactly bytes `0..n` of each, through
    // its own copies of the pointers. It writes no memory and no stack, clobbers only the declared registers
    // (q0-q3 = s0-s15, lr for the loop count) and leaves FPSCR.LTPSIZE as it found it (LETP resets it on exit).
    // The accumulators are in even registers, as `VMLADAVA` requires. MVE is present: the `arm-helium` feature is
    // documented to require an MVE CPU and the assembler rejects these instructions unless MVE is enabled.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{x}], #16",
            "vldrb.u8 q1, [{w0}], #16",
            "vmladava.s8 r0, q1, q0",
            "vldrb.u8 q2, [{w1}], #16",
            "vmladava.s8 r2, q2, q0",
            "vldrb.u8 q3, [{w2}], #16",
            "vmladava.s8 r4, q3, q0",
            "vldrb.u8 q1, [{w3}], #16",
            "vmladava.s8 r8, q1, q0",
            "letp lr, 2b",
            n = in(reg) n,
            x = inout(reg) x.as_ptr() => _,
            w0 = inout(reg) rows[0].as_ptr() => _,
            w1 = inout(reg) rows[1].as_ptr() => _,
            w2 = inout(reg) rows[2].as_ptr() => _,
            w3 = inout(reg) rows[3].as_ptr() => _,
            inout("r0") a0,
            inout("r2") a1,
            inout("r4") a2,
            inout("r8") a3,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _,
            out("s15") _,
            options(readonly, nostack),
        );
    }
    [a0, a1, a2, a3]
}

/// The dot product of one row with `x`, over all of `x`. The row has `x.len()` elements.
#[inline(always)]
fn dot1(row: &[i8], x: &[i8]) -> i32 {
    let n = x.len();
    assert!(n > 0 && row.len() == n);
    let mut acc = 0i32;
    // SAFETY: as in `dots4`, for one row: reads bytes `0..n` of `x` and `row` only, clobbers q0-q1 and lr.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{x}], #16",
            "vldrb.u8 q1, [{w}], #16",
            "vmladava.s8 r0, q1, q0",
            "letp lr, 2b",
            n = in(reg) n,
            x = inout(reg) x.as_ptr() => _,
            w = inout(reg) row.as_ptr() => _,
            inout("r0") acc,
            out("lr") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _,
            options(readonly, nostack),
        );
    }
    acc
}

blocked::row_kernels!(
    ROWS,
    dots4,
    dot1,
    "`VLDRB` + `VMLADAVA.S8`: 16 multiply-accumulates per instruction.",
    "arm-helium",
    gemv_i8_i32_helium,
    gemv_i8_blocks_helium,
    Helium,
    "The Helium backend ([`super::Active`] with `arm-helium`): `VMLADAV` GEMVs."
);
