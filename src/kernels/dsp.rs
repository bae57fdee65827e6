//! Int8 kernels for the Arm DSP extension (Cortex-M4, M7, M33, M35P, M55, M85; also every Armv6/Armv7-A core),
//! equal to [`reference`](super::reference) bit for bit.
//!
//! Four columns at a time: one 32-bit load holds four `i8`; `SXTB16` sign-extends bytes 0 and 2 (and, rotated by
//! 8, bytes 1 and 3) into two `i16` halves; `SMLAD` multiplies both halves and adds both products to the `i32`
//! accumulator. Two rows at a time, so each load and sign extension of `x` serves both: 15 instructions per four
//! columns of two rows (1.9 per multiply-accumulate, against about 5 for the reference's `LDRSB`/`MLA` loop on a
//! Cortex-M4). A column tail of at most 3 goes through [`reference::dot_i8_i32`](super::reference::dot_i8_i32). (Four rows at a time need more
//! registers than Thumb has, and measured slower.)
//!
//! Switched on by the Cargo feature `arm-dsp`: `cfg(target_feature = "dsp")` is unstable on stable Rust, and the
//! instructions are written with `asm!` (the `core::arch::arm` DSP intrinsics are unstable too). The assembler
//! accepts them on `thumbv7em` targets (the DSP extension is part of Armv7E-M) and on `thumbv8m.main` with
//! `-C target-cpu=cortex-m33` / `cortex-m55` (or `-C target-feature=+dsp`); elsewhere the build fails with
//! "instruction requires: dsp".
//!
//! # Exactness
//!
//! `SXTB16` is exact (sign extension). Each product of two `i8` fits an `i16` operand's product in 32 bits, and
//! `SMLAD` adds both products and the accumulator modulo 2^32 (it sets the sticky Q flag on signed overflow but the
//! result wraps). Integer addition is associative, so the sum equals the reference's left-to-right sum exactly,
//! wrap-around included. Degenerate calls (`cols == 0`, `x` shorter than `cols`) go to the reference unchanged.

use core::arch::asm;

use super::blocked;

/// Rows per block: each load (and sign extension) of `x` serves this many weight rows (`dots2`).
const ROWS: usize = 2;

/// `SXTB16`: bytes 0 and 2 of `v`, sign-extended into the low and high halfwords.
#[inline(always)]
fn sxtb16(v: u32) -> u32 {
    let r;
    // SAFETY: register-only (no memory, no stack, no flags), and present on every CPU this module is built for:
    // the `arm-dsp` feature requires the DSP extension, and the assembler rejects the instruction without it.
    unsafe {
        asm!("sxtb16 {r}, {v}", r = lateout(reg) r, v = in(reg) v, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `SXTB16 ROR #8`: bytes 1 and 3 of `v`, sign-extended into the low and high halfwords.
#[inline(always)]
fn sxtb16_ror8(v: u32) -> u32 {
    let r;
    // SAFETY: as `sxtb16`.
    unsafe {
        asm!("sxtb16 {r}, {v}, ror #8", r = lateout(reg) r, v = in(reg) v, options(pure, nomem, nostack, preserves_flags))
    };
    r
}

/// `SMLAD`: `acc + lo(a) * lo(b) + hi(a) * hi(b)`, halves as `i16`, modulo 2^32.
#[inline(always)]
fn smlad(a: u32, b: u32, acc: i32) -> i32 {
    let r;
    // SAFETY: register-only (no memory, no stack) and present as for `sxtb16`. It may set the sticky Q flag, which
    // nothing here reads; `preserves_flags` is left out because Q is part of the APSR.
    unsafe {
        asm!("smlad {r}, {a}, {b}, {acc}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, acc = in(reg) acc, options(pure, nomem, nostack))
    };
    r
}

/// `acc + w . x` over the four `i8` lanes of each word: two `SMLAD`s on the sign-extended even and odd bytes;
/// `x02`, `x13` are `x`'s, extended once for all rows.
#[inline(always)]
fn mac4(acc: i32, w: u32, x02: u32, x13: u32) -> i32 {
    smlad(sxtb16_ror8(w), x13, smlad(sxtb16(w), x02, acc))
}

/// Two rows' dot products with `x` over the first `4 * (x.len() / 4)` columns, and that column count. Both rows
/// have `x.len()` elements. The loop is assembly so that it stays at 15 instructions per 4 columns of 2 rows with
/// no spills (the same loop through the `smlad`/`sxtb16` helpers compiled 10-20 % longer).
#[inline(always)]
fn dots2(rows: [&[i8]; ROWS], x: &[i8]) -> ([i32; ROWS], usize) {
    let n = x.len();
    assert!(rows.iter().all(|r| r.len() == n));
    let done = n / 4 * 4;
    let (mut a0, mut a1) = (0i32, 0i32);
    if done > 0 {
        // SAFETY: `x` and both rows hold `n >= done` bytes (asserted above); the loop runs `done / 4 >= 1` times
        // and each time reads the next 4 bytes of each through its own copy of the pointer, so it reads exactly
        // bytes `0..done` of each. `LDR` accepts unaligned addresses in normal memory on M-profile cores (unless
        // the CCR.UNALIGN_TRP trap is set, which no firmware here does) and on Armv7-A. No stores, no stack; it
        // clobbers the flags (`cmp`) and may set the sticky Q flag (`smlad`). DSP instructions are present: see
        // `sxtb16`.
        unsafe {
            asm!(
                "2:",
                "ldr {xw}, [{x}], #4",
                "sxtb16 {x02}, {xw}",
                "sxtb16 {xw}, {xw}, ror #8",
                "ldr {t}, [{w0}], #4",
                "sxtb16 {u}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a0}, {u}, {x02}, {a0}",
                "smlad {a0}, {t}, {xw}, {a0}",
                "ldr {t}, [{w1}], #4",
                "sxtb16 {u}, {t}",
                "sxtb16 {t}, {t}, ror #8",
                "smlad {a1}, {u}, {x02}, {a1}",
                "smlad {a1}, {t}, {xw}, {a1}",
                "cmp {x}, {end}",
                "bne 2b",
                x = inout(reg) x.as_ptr() => _,
                end = in(reg) x.as_ptr().add(done),
                w0 = inout(reg) rows[0].as_ptr() => _,
                w1 = inout(reg) rows[1].as_ptr() => _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                xw = out(reg) _,
                x02 = out(reg) _,
                t = out(reg) _,
                u = out(reg) _,
                options(readonly, nostack),
            );
        }
    }
    ([a0, a1], done)
}

/// One row's dot product with `x` over the first `4 * (x.len() / 4)` columns, and that column count (the odd row
/// of an odd row count).
#[inline(always)]
fn dots1(row: &[i8], x: &[i8]) -> (i32, usize) {
    let done = x.len() / 4 * 4;
    let mut acc = 0;
    for (w, x) in row[..done].chunks_exact(4).zip(x[..done].chunks_exact(4)) {
        let word = |b: &[i8]| u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        let xw = word(x);
        acc = mac4(acc, word(w), sxtb16(xw), sxtb16_ror8(xw));
    }
    (acc, done)
}

/// The complete dot products of two rows with `x` (vector part and scalar tail), for both drivers.
#[inline(always)]
fn rows_dots(rows: [&[i8]; ROWS], x: &[i8]) -> [i32; ROWS] {
    blocked::with_tail(rows, dots2(rows, x), x)
}

/// The complete dot product of one row with `x`.
#[inline(always)]
fn row_dot(row: &[i8], x: &[i8]) -> i32 {
    let (sum, done) = dots1(row, x);
    blocked::with_tail([row], ([sum], done), x)[0]
}

blocked::row_kernels!(
    ROWS,
    rows_dots,
    row_dot,
    "`SXTB16` + `SMLAD`: two multiply-accumulates per instruction.",
    "arm-dsp",
    gemv_i8_i32_dsp,
    gemv_i8_blocks_dsp,
    Dsp,
    "The Cortex-M DSP backend ([`super::Active`] with `arm-dsp` alone): `SMLAD` GEMVs."
);
