//! The ALBERT-base linear layers' GEMMs with one activation scale per token row (`block == cols`), for counting
//! executed instructions under qemu-user (benches/pi/insncount.c):
//!
//! ```text
//! cargo build --release --example gemm_insns --target aarch64-unknown-linux-gnu
//! qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a72 -plugin libinsncount.so -d plugin \
//!     target/aarch64-unknown-linux-gnu/release/examples/gemm_insns SHAPE TOKENS REPEAT
//! ```
//!
//! `SHAPE` is `head` (64 x 768, one head of Q, K or V), `hidden` (768 x 768), `ffn` (3072 x 768) or `ffn-out`
//! (768 x 3072). The counts of two runs with different `REPEAT` differ by that many GEMMs, which cancels the
//! set-up (filling the inputs) out.

use albert_edge::kernels::{gemm_i8_blocks, gemm_workspace_words, GemmInput};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (rows, cols) = match args.get(1).map(String::as_str) {
        Some("head") => (64, 768),
        Some("hidden") => (768, 768),
        Some("ffn") => (3072, 768),
        Some("ffn-out") => (768, 3072),
        _ => {
            eprintln!("usage: gemm_insns head|hidden|ffn|ffn-out TOKENS REPEAT");
            std::process::exit(2);
        }
    };
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<usize>().ok());
    let (tokens, repeat) = (arg(2).unwrap_or(32), arg(3).unwrap_or(1));
    // Deterministic values in -127..=127 (what the quantiser emits).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state % 255) as i32 - 127) as i8
    };
    let w: Vec<i8> = (0..rows * cols).map(|_| next()).collect();
    let x: Vec<i8> = (0..tokens * cols).map(|_| next()).collect();
    let scales: Vec<f32> = (0..tokens).map(|t| 0.01 + t as f32 * 1e-4).collect();
    let mut work = vec![0u32; gemm_workspace_words(tokens, cols, cols)];
    let mut out = vec![0f32; tokens * rows];
    let mut check = 0f32;
    for _ in 0..repeat {
        let input = GemmInput::new(&x, cols, cols, &scales, tokens, &mut work);
        gemm_i8_blocks(&w, rows, &[], &input, &mut out);
        check += out[out.len() / 2];
    }
    println!("{check}");
}
