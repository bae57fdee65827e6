//! The x86-64 block-scaled GEMMs on ALBERT-base's linear layers with one activation scale per token
//! (`block == cols`), in one interleaved run, single-threaded:
//!
//! * `gemv-avx2`: the AVX2 GEMV token by token, in row chunks (what an AVX2-only CPU ran before the AVX2 GEMM);
//! * `gemm-avx2`: the AVX2 multi-token GEMM;
//! * `gemv-vnni`: the AVX-512 VNNI GEMV token by token, in row chunks;
//! * `gemm-vnni`: the AVX-512 VNNI multi-token GEMM (packing included).
//!
//! Throughput in GMAC/s (best of the runs) and as a fraction of the int8 multiply-add bound at the measured clock:
//! 64 MAC/cycle for AVX2 (two `vpmaddubsw` a cycle), 128 for AVX-512 VNNI (two 512-bit `vpdpbusd` a cycle).
//!
//! ```sh
//! cargo run --release --features std --example x86_gemm        # one scale per token (block = cols)
//! cargo run --release --features std --example x86_gemm -- 32  # blocks of 32
//! ```

/// A block-scaled GEMV (`kernels::gemv_i8_blocks`'s signature).
#[cfg(target_arch = "x86_64")]
type Gemv = fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]);

#[cfg(target_arch = "x86_64")]
fn main() {
    use albert_edge::kernels::{self, x86};
    use std::hint::black_box;
    use std::time::Instant;

    let block_arg: Option<usize> = std::env::args()
        .nth(1)
        .map(|b| b.parse().expect("a block size"));
    let ghz = clock_ghz();
    println!("clock {ghz:.2} GHz (a dependent chain of multiplies)");
    let vnni = x86::vnni512_available();
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
        "{:<8} {:>5} {:>5} {:>6} | {:>22} {:>22} {:>22} {:>22}",
        "layer", "rows", "cols", "tokens", "gemv-avx2", "gemm-avx2", "gemv-vnni", "gemm-vnni"
    );
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
                        1 => x86::gemm_i8_blocks_avx2(
                            black_box(&w),
                            cols,
                            black_box(&x),
                            block,
                            &scales,
                            rows,
                            out,
                        ),
                        2 => chunked(x86::gemv_i8_blocks_vnni, out),
                        _ => {
                            let input = kernels::GemmInput::new(
                                black_box(&x),
                                cols,
                                block,
                                &scales,
                                tokens,
                                &mut work,
                            );
                            kernels::gemm_i8_blocks(black_box(&w), rows, &sums, &input, out)
                        }
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
            let cell = |v: usize, bound: f64| {
                if best[v].is_infinite() {
                    return format!("{:>22}", "-");
                }
                let g = macs / best[v] / 1e9;
                format!("{g:>7.1} GMAC/s {:>5.1}%", 100.0 * g / (bound * ghz))
            };
            println!(
                "{name:<8} {rows:>5} {cols:>5} {tokens:>6} | {} {} {} {}",
                cell(0, 64.0),
                cell(1, 64.0),
                cell(2, 128.0),
                cell(3, 128.0)
            );
        }
    }
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

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    println!("x86-64 only");
}
