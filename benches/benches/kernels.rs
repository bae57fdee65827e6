//! Kernel families, reference and the optimised kernel this build dispatches to, side by side.
//! IDs: `<op>/<impl>/<shape>`.

use albert_edge::kernels::{self, reference};
use albert_edge_cli::synthetic::Rng;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn gemv(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemv_i8_i32");
    // ALBERT-base projections (768x768, FFN 3072x768 and 768x3072) and an attention-sized one.
    for &(rows, cols) in &[(768usize, 768usize), (3072, 768), (768, 3072), (128, 64)] {
        let mut rng = Rng::new(1);
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.i8()).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.i8()).collect();
        let mut out = vec![0i32; rows];
        let shape = format!("{rows}x{cols}");
        group.throughput(Throughput::Elements((rows * cols) as u64));
        group.bench_function(BenchmarkId::new("reference", &shape), |b| {
            b.iter(|| reference::gemv_i8_i32(black_box(&w), cols, black_box(&x), &mut out))
        });
        group.bench_function(BenchmarkId::new("dispatched", &shape), |b| {
            b.iter(|| kernels::gemv_i8_i32(black_box(&w), cols, black_box(&x), &mut out))
        });
    }
    group.finish();
}

/// A block-scaled GEMV implementation.
type Blocks = fn(&[i8], usize, &[i8], usize, &[f32], &mut [f32]);

/// The engine's linear-layer kernel: block-scaled GEMV (blocks of 32, ALBERT-base's default), every implementation
/// this build has side by side.
fn gemv_blocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemv_i8_blocks");
    let block = 32;
    for &(rows, cols) in &[(768usize, 768usize), (3072, 768), (768, 3072), (64, 768)] {
        let mut rng = Rng::new(3);
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.i8()).collect();
        let x: Vec<i8> = (0..cols).map(|_| rng.i8()).collect();
        let scales: Vec<f32> = (0..cols.div_ceil(block))
            .map(|_| 0.01 + rng.normal().abs())
            .collect();
        let mut out = vec![0f32; rows];
        let shape = format!("{rows}x{cols}");
        group.throughput(Throughput::Elements((rows * cols) as u64));
        let mut bench = |name: &str, f: Blocks| {
            group.bench_function(BenchmarkId::new(name, &shape), |b| {
                b.iter(|| f(black_box(&w), cols, black_box(&x), block, &scales, &mut out))
            });
        };
        bench("reference", reference::gemv_i8_blocks_f32);
        #[cfg(target_arch = "x86_64")]
        bench("avx2", kernels::x86::gemv_i8_blocks_avx2);
        #[cfg(target_arch = "x86_64")]
        if kernels::x86::vnni_available() {
            bench("avx512-vnni", kernels::x86::gemv_i8_blocks_vnni);
        }
        bench("dispatched", kernels::gemv_i8_blocks);
    }
    group.finish();
}

/// The engine's linear layers on a tile of tokens: block-scaled GEMM (blocks of 32), ALBERT-base's matrices at 32
/// and 128 tokens. `reference` is the token-by-token reference GEMV; `dispatched` is what the engine runs
/// (the AVX-512 VNNI multi-token kernel where the CPU has it, the best GEMV token by token elsewhere). Throughput
/// in multiply-accumulates.
fn gemm_blocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_i8_blocks");
    group.sample_size(20);
    let block = 32;
    for &(rows, cols, tokens) in &[
        (768usize, 768usize, 32usize),
        (768, 768, 128),
        (3072, 768, 128),
        (768, 3072, 128),
    ] {
        let mut rng = Rng::new(4);
        let w: Vec<i8> = (0..rows * cols).map(|_| rng.i8()).collect();
        let x: Vec<i8> = (0..tokens * cols).map(|_| rng.i8()).collect();
        let nb = cols.div_ceil(block);
        let scales: Vec<f32> = (0..tokens * nb)
            .map(|_| 0.01 + rng.normal().abs())
            .collect();
        let mut sums = vec![0i32; rows * nb];
        kernels::gemm_weight_sums(&w, cols, block, &mut sums);
        let mut work = vec![0u32; kernels::gemm_workspace_words(tokens, cols, block)];
        let mut out = vec![0f32; tokens * rows];
        let shape = format!("{rows}x{cols}x{tokens}");
        group.throughput(Throughput::Elements((rows * cols * tokens) as u64));
        group.bench_function(BenchmarkId::new("reference", &shape), |b| {
            b.iter(|| {
                reference::gemm_i8_blocks_f32(
                    black_box(&w),
                    cols,
                    black_box(&x),
                    block,
                    &scales,
                    rows,
                    &mut out,
                )
            })
        });
        group.bench_function(BenchmarkId::new("dispatched", &shape), |b| {
            b.iter(|| {
                let input =
                    kernels::GemmInput::new(black_box(&x), cols, block, &scales, tokens, &mut work);
                kernels::gemm_i8_blocks(black_box(&w), rows, &sums, &input, &mut out)
            })
        });
    }
    group.finish();
}

/// One query of one attention head at ALBERT-base's head size (64) over 128 keys: the 16-bit scores and the
/// probabilities times V. `reference` runs the reference products on plain layouts; `dispatched` is
/// `kernels::attention` (packed for AVX-512 VNNI where the CPU has it).
fn attention(c: &mut Criterion) {
    use kernels::attention::{keys_len, values_len, Keys, Values};
    let (seq, d) = (128usize, 64usize);
    let mut rng = Rng::new(6);
    let k: Vec<i16> = (0..seq * d).map(|_| rng.i8() as i16 * 45).collect();
    let q: Vec<i16> = (0..d).map(|_| rng.i8() as i16 * 45).collect();
    let v: Vec<i8> = (0..seq * d).map(|_| rng.i8()).collect();
    let vt: Vec<i8> = (0..d * seq).map(|i| v[(i % seq) * d + i / seq]).collect();
    let probs: Vec<u8> = (0..seq).map(|_| rng.i8() as u8).collect();
    let mut kbuf = vec![0i16; keys_len(seq, d)];
    let mut keys = Keys::new(&mut kbuf, seq, d).unwrap();
    let mut vbuf = vec![0i8; values_len(seq, d)];
    let mut values = Values::new(&mut vbuf, seq, d).unwrap();
    for t in 0..seq {
        keys.set(t, &k[t * d..(t + 1) * d]);
        values.set(t, &v[t * d..(t + 1) * d]);
    }
    let mut sums = vec![0i32; d];
    values.prepare_sums(&mut sums);
    let shape = format!("{seq}x{d}");
    let mut scores = vec![0i32; seq];
    let mut out = vec![0i32; d];
    let mut g = c.benchmark_group("attention_scores_i16");
    g.throughput(Throughput::Elements((seq * d) as u64));
    g.bench_function(BenchmarkId::new("reference", &shape), |b| {
        b.iter(|| reference::gemv_i16_i32(black_box(&k), d, black_box(&q), &mut scores))
    });
    g.bench_function(BenchmarkId::new("dispatched", &shape), |b| {
        b.iter(|| keys.scores(black_box(&q), &mut scores))
    });
    g.finish();
    let mut g = c.benchmark_group("attention_pv_u8_i8");
    g.throughput(Throughput::Elements((seq * d) as u64));
    g.bench_function(BenchmarkId::new("reference", &shape), |b| {
        b.iter(|| reference::gemv_u8_i8_i32(black_box(&vt), seq, black_box(&probs), &mut out))
    });
    g.bench_function(BenchmarkId::new("dispatched", &shape), |b| {
        // `attend` may overwrite the probabilities (the portable path flips their top bit): a fresh copy each time.
        let mut p = probs.clone();
        b.iter(|| {
            p.copy_from_slice(&probs);
            values.attend(black_box(&mut p), &sums, &mut out)
        })
    });
    g.finish();
}

/// LayerNorm over 64 tokens of 768 and the masked softmax over 64 rows of 128 scores: the reference row by row,
/// and the engine's rows side by side (`kernels::layer_norm_rows`, `kernels::masked_softmax_rows`; the same bits).
fn layer_norm_and_softmax(c: &mut Criterion) {
    let mut rng = Rng::new(2);
    let (tokens, h, n) = (64, 768, 128);
    let x: Vec<f32> = (0..tokens * h).map(|_| rng.normal()).collect();
    let gamma = vec![1.0f32; h];
    let beta = vec![0.0f32; h];
    let mut g = c.benchmark_group("layer_norm_f32");
    g.throughput(Throughput::Elements(tokens as u64));
    let shape = format!("{tokens}x{h}");
    g.bench_function(BenchmarkId::new("reference", &shape), |b| {
        b.iter(|| {
            let mut y = x.clone();
            y.chunks_exact_mut(h)
                .for_each(|r| kernels::layer_norm_f32(r, &gamma, &beta, 1e-12));
            y
        })
    });
    g.bench_function(BenchmarkId::new("rows", &shape), |b| {
        b.iter(|| {
            let mut y = x.clone();
            kernels::layer_norm_rows(&mut y, h, &gamma, &beta, 1e-12);
            y
        })
    });
    g.finish();
    let scores: Vec<f32> = (0..tokens * n).map(|_| 3.0 * rng.normal()).collect();
    let mut g = c.benchmark_group("masked_softmax_f32");
    g.throughput(Throughput::Elements(tokens as u64));
    let shape = format!("{tokens}x{n}");
    g.bench_function(BenchmarkId::new("reference", &shape), |b| {
        b.iter(|| {
            let mut y = scores.clone();
            y.chunks_exact_mut(n)
                .for_each(|r| kernels::masked_softmax_f32(r, |_| true));
            y
        })
    });
    g.bench_function(BenchmarkId::new("rows", &shape), |b| {
        b.iter(|| {
            let mut y = scores.clone();
            y.chunks_exact_mut(8 * n)
                .for_each(|r| kernels::masked_softmax_rows(r, n, n, 8, |_| true));
            y
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    gemv,
    gemv_blocks,
    gemm_blocks,
    attention,
    layer_norm_and_softmax
);
criterion_main!(benches);
