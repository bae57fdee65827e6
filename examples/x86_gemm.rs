//! The x86-64 block-scaled GEMMs on ALBERT-base's linear layers with one activation scale per token
//! (`block == cols`), in one interleaved run, single-threaded:
//!
//! * `gemv-avx2`: the AVX2 GEMV token by token, in row chunks (what an AVX2-only CPU ran before the AVX2 GEMM);
//! * `gemm-avx2`: the AVX2 multi-token GEMM;
//! * `gemv-vnni`: the AVX-512 VNNI GEMV token by token, in row chunks;
//! * `gemm-vnni`: the AVX-512 VNNI multi-token GEMM (the activations packed once, outside the timing, as the
//!   engine packs them once for the layers that share them).
//!
//! Throughput in GMAC/s (best of the runs), in multiply-adds per cycle at the measured clock, and as a fraction
//! of the int8 multiply-add peak measured on this core: independent `vpmaddubsw` (32 MAC each; 64 MAC/cycle at
//! two a cycle) for the AVX2 columns, independent 512-bit `vpdpbusd` (64 MAC each) for the VNNI ones. An exact
//! AVX2 kernel also needs a `vpmaddwd` per `vpmaddubsw`, on the same ports, so half the AVX2 peak is its ceiling.
//!
//! ```sh
//! cargo run --release --features std --example x86_gemm        # one scale per token (block = cols)
//! cargo run --release --features std --example x86_gemm -- 32  # blocks of 32
//! ```
//!
//! `x86_gemm once KERNEL ROWS COLS TOKENS` runs one call of `gemv-avx2`, `gemm-avx2` (or `none`: the set-up
//! alone) with one scale per token and exits, for counting instructions under an emulated CPU, e.g. an AVX2-only
//! AMD Zen 3 with `benches/pi/insncount.c` built for the host:
//!
//! ```sh
//! qemu-x86_64 -cpu EPYC-Milan -plugin ./libinsncount.so -d plugin \
//!     target/release/examples/x86_gemm once gemm-avx2 768 768 128
//! ```

/// A block-scaled GEMV (`kernels::gemv_i8_blocks`'s signature).
#[cfg(target_arch = "x86_64")]
type Gemv = fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]);

#[cfg(target_arch = "x86_64")]
fn main() {
    use albert_edge::kernels::{self, x86};
    use std::hint::black_box;
    use std::time::Instant;

    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "once") {
        return once(&args[2..]);
    }
    let block_arg: Option<usize> = args.get(1).map(|b| b.parse().expect("a block size"));
    let ghz = clock_ghz();
    println!("clock {ghz:.2} GHz (a dependent chain of multiplies)");
    let vnni = x86::vnni512_available();
    assert!(x86::avx2_available(), "this CPU lacks AVX2");
    // SAFETY: AVX2 is available (checked above), AVX-512 VNNI where `vnni` says so.
    let peak_avx2 = unsafe { peak_gmacs(false) };
    let peak_vnni = if vnni {
        unsafe { peak_gmacs(true) }
    } else {
        f64::NAN
    };
    println!(
        "peak: vpmaddubsw {peak_avx2:.1} GMAC/s ({:.1} MAC/cycle), \
         vpdpbusd zmm {peak_vnni:.1} GMAC/s ({:.1} MAC/cycle)",
        peak_avx2 / ghz,
        peak_vnni / ghz
    );
    let shapes: &[(&str, usize, usize)] = &[
        ("Q head", 64, 768),
        ("dense", 768, 768),
        ("ffn", 3072, 768),
        ("ffn-out", 768, 3072),
    ];
    let mut seed = 0x9E37_79B9u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    println!(
        "{:<8} {:>5} {:>5} {:>6} | {:>20} {:>20} {:>20} {:>20}",
        "layer", "rows", "cols", "tokens", "gemv-avx2", "gemm-avx2", "gemv-vnni", "gemm-vnni"
    );
    println!("{:>28} each: GMAC/s, MAC/cycle, % of peak", "");
    for &tokens in &[32usize, 128] {
        for &(name, rows, cols) in shapes {
            let block = block_arg.unwrap_or(cols);
            let nb = cols.div_ceil(block);
            let w: Vec<i8> = (0..rows * cols)
                .map(|_| ((next() % 255) as i32 - 127) as i8)
                .collect();
            let x: Vec<i8> = (0..tokens * cols)
                .map(|_| ((next() % 255) as i32 - 127) as i8)
                .collect();
            let scales: Vec<f32> = (0..tokens * nb).map(|t| 0.01 + t as f32 * 1e-3).collect();
            let mut sums = vec![0i32; rows * nb];
            kernels::gemm_weight_sums(&w, cols, block, &mut sums);
            let mut work = vec![0u32; kernels::gemm_workspace_words(tokens, cols, block)];
            // Prepared once, as the engine does for the layers that share an input (packed for the VNNI kernel).
            let input = kernels::GemmInput::new(&x, cols, block, &scales, tokens, &mut work);
            let mut outs = vec![vec![0f32; tokens * rows]; 4];
            let chunked = |gemv: Gemv, out: &mut [f32]| {
                let chunk = (kernels::GEMM_WEIGHT_CHUNK / cols)
                    .max(1)
                    .next_multiple_of(4);
                for r0 in (0..rows).step_by(chunk) {
                    let rn = chunk.min(rows - r0);
                    for t in 0..tokens {
                        gemv(
                            &w[r0 * cols..(r0 + rn) * cols],
                            cols,
                            &x[t * cols..(t + 1) * cols],
                            block,
                            &scales[t * nb..(t + 1) * nb],
                            &mut out[t * rows + r0..t * rows + r0 + rn],
                        );
                    }
                }
            };
            let mut best = [f64::INFINITY; 4];
            let macs = (rows * cols * tokens) as f64;
            let reps = (2e9 / macs).clamp(3.0, 200.0) as usize;
            for _ in 0..reps {
                for (v, out) in outs.iter_mut().enumerate() {
                    if v >= 2 && !vnni {
                        continue;
                    }
                    let start = Instant::now();
                    match v {
                        0 => chunked(x86::gemv_i8_blocks_avx2, out),
                        1 => {
                            let done = x86::gemm_rows_avx2(
                                black_box(&w),
                                cols,
                                block,
                                black_box(&x),
                                &scales,
                                tokens,
                                rows,
                                out,
                            );
                            assert!(done);
                        }
                        2 => chunked(x86::gemv_i8_blocks_vnni, out),
                        _ => kernels::gemm_i8_blocks(black_box(&w), rows, &sums, &input, out),
                    }
                    best[v] = best[v].min(start.elapsed().as_secs_f64());
                    black_box(&out);
                }
            }
            let same = outs
                .iter()
                .skip(1)
                .take(if vnni { 3 } else { 1 })
                .all(|o| o == &outs[0]);
            assert!(same, "the kernels disagree on {name} at {tokens} tokens");
            let cell = |v: usize, peak: f64| {
                if best[v].is_infinite() {
                    return format!("{:>22}", "-");
                }
                let g = macs / best[v] / 1e9;
                format!(" {g:>6.1} {:>5.1} {:>5.1}%", g / ghz, 100.0 * g / peak)
            };
            println!(
                "{name:<8} {rows:>5} {cols:>5} {tokens:>6} | {} {} {} {}",
                cell(0, peak_avx2),
                cell(1, peak_avx2),
                cell(2, peak_vnni),
                cell(3, peak_vnni)
            );
        }
    }
}

/// One call of one kernel (see the module docs).
#[cfg(target_arch = "x86_64")]
fn once(args: &[String]) {
    use albert_edge::kernels::{self, x86};
    let usage = "x86_gemm once none|gemv-avx2|gemm-avx2 ROWS COLS TOKENS";
    let num = |i: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).expect(usage) };
    let (rows, cols, tokens) = (num(1), num(2), num(3));
    let value = |i: usize| ((i * 2_654_435_761) % 255) as i32 as i8 - 127 + (i % 2) as i8;
    let w: Vec<i8> = (0..rows * cols).map(value).map(|v| v.max(-127)).collect();
    let x: Vec<i8> = (0..tokens * cols)
        .map(|i| value(i + 7))
        .map(|v| v.max(-127))
        .collect();
    let scales = vec![0.5f32; tokens];
    let mut out = vec![0f32; tokens * rows];
    match args.first().map(String::as_str) {
        Some("none") => {}
        Some("gemv-avx2") => {
            let chunk = (kernels::GEMM_WEIGHT_CHUNK / cols)
                .max(1)
                .next_multiple_of(4);
            for r0 in (0..rows).step_by(chunk) {
                let rn = chunk.min(rows - r0);
                for t in 0..tokens {
                    x86::gemv_i8_blocks_avx2(
                        &w[r0 * cols..(r0 + rn) * cols],
                        cols,
                        &x[t * cols..(t + 1) * cols],
                        cols,
                        &scales[t..t + 1],
                        &mut out[t * rows + r0..t * rows + r0 + rn],
                    );
                }
            }
        }
        Some("gemm-avx2") => {
            assert!(x86::gemm_rows_avx2(
                &w, cols, cols, &x, &scales, tokens, rows, &mut out
            ));
        }
        _ => panic!("{usage}"),
    }
    std::hint::black_box(&out);
}

/// Cycles per second, from a chain of dependent `imul`s (three cycles each on every x86-64 core of the last decade;
/// a chain of adds of an immediate can be folded at rename on recent cores).
#[cfg(target_arch = "x86_64")]
fn clock_ghz() -> f64 {
    let n: u64 = 200_000_000;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        let mut acc: u64 = 3;
        // SAFETY: register arithmetic only.
        unsafe {
            core::arch::asm!(
                "2:",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "imul {a}, {a}",
                "dec {n}",
                "jnz 2b",
                a = inout(reg) acc,
                n = inout(reg) n / 4 => _,
                options(nomem, nostack),
            );
        }
        std::hint::black_box(acc);
        best = best.min(start.elapsed().as_secs_f64());
    }
    3.0 * n as f64 / best / 1e9
}

/// Twelve independent `$op {$reg}N, $sources` lines (N = 0..11) of an asm template.
#[cfg(target_arch = "x86_64")]
macro_rules! twelve_chains {
    ($op:literal, $reg:literal, $sources:expr) => {
        concat!(
            $op, " ", $reg, "0, ", $sources, "\n", $op, " ", $reg, "1, ", $sources, "\n", $op, " ",
            $reg, "2, ", $sources, "\n", $op, " ", $reg, "3, ", $sources, "\n", $op, " ", $reg,
            "4, ", $sources, "\n", $op, " ", $reg, "5, ", $sources, "\n", $op, " ", $reg, "6, ",
            $sources, "\n", $op, " ", $reg, "7, ", $sources, "\n", $op, " ", $reg, "8, ", $sources,
            "\n", $op, " ", $reg, "9, ", $sources, "\n", $op, " ", $reg, "10, ", $sources, "\n",
            $op, " ", $reg, "11, ", $sources, "\n",
        )
    };
}

/// `$n` iterations of [`twelve_chains`] of `$op` into `$reg`0..11 (`$acc`, to declare as clobbered) from the
/// sources `$a` and `$b`, zeroed first with `$zero`.
#[cfg(target_arch = "x86_64")]
macro_rules! chains_loop {
    ($n:expr, $zero:literal, $op:literal, $reg:literal, $a:tt, $b:tt, [$($acc:tt),*]) => {
        core::arch::asm!(
            concat!($zero, " ", $a, ", ", $a, ", ", $a),
            concat!($zero, " ", $b, ", ", $b, ", ", $b),
            "2:",
            twelve_chains!($op, $reg, concat!($a, ", ", $b)),
            "dec {n}",
            "jnz 2b",
            n = inout(reg) $n => _,
            $(out($acc) _,)*
            out($a) _, out($b) _,
            options(nomem, nostack),
        )
    };
}

/// GMAC/s of independent `vpmaddubsw` on `ymm` (32 MAC each) or, with `vnni`, `vpdpbusd` on `zmm` (64 each):
/// twelve independent accumulators, enough to cover their latency at two a cycle.
///
/// Safety: the CPU has AVX2, and AVX-512 VNNI where `vnni`.
#[cfg(target_arch = "x86_64")]
unsafe fn peak_gmacs(vnni: bool) -> f64 {
    let n: u64 = 20_000_000;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = std::time::Instant::now();
        // SAFETY: register arithmetic only, on features the caller vouches for.
        unsafe {
            if vnni {
                chains_loop!(
                    n,
                    "vpxord",
                    "vpdpbusd",
                    "zmm",
                    "zmm30",
                    "zmm31",
                    [
                        "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7", "zmm8",
                        "zmm9", "zmm10", "zmm11"
                    ]
                );
            } else {
                chains_loop!(
                    n,
                    "vpxor",
                    "vpmaddubsw",
                    "ymm",
                    "ymm14",
                    "ymm15",
                    [
                        "ymm0", "ymm1", "ymm2", "ymm3", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8",
                        "ymm9", "ymm10", "ymm11"
                    ]
                );
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    let per = if vnni { 64.0 } else { 32.0 };
    12.0 * n as f64 * per / best / 1e9
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
