//! End to end, one thread, batch 1: the int8 engine and the f32 reference on the ALBERT-base shape (random
//! weights; speed does not depend on their values) at seq 32 and 128, on the committed fixtures with tract
//! running the same fixture's fp32 ONNX export in the same run, and on the two shipped SST-2 models.
//!
//! A peer comparison on the ALBERT-base shape (tract fp32, ONNX Runtime int8) needs an exported checkpoint: see
//! `BENCHMARKS.md`.

use std::path::Path;

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify, scratch_size_for_speed, Inputs, Precision};
use albert_edge::Model;
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::convert::{build_contents, ConvertOptions, WeightsMode};
use albert_edge_cli::synthetic::{albert_base_config, random_model, Rng};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tract_onnx::prelude::*;

fn ids(n: usize, vocab: usize) -> Vec<u32> {
    let mut rng = Rng::new(5);
    let mut v: Vec<u32> = (0..n).map(|_| rng.range(5, vocab) as u32).collect();
    v[0] = 2;
    v[n - 1] = 3;
    v
}

fn bench_model(
    c: &mut Criterion,
    group: &str,
    model: &Model,
    seqs: &[usize],
    precisions: &[Precision],
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    for &seq in seqs {
        let ids = ids(seq, model.config().vocab_size);
        for &p in precisions {
            let mut arena = vec![0u8; scratch_size_for_speed(model.config(), seq, p)];
            let mut logits = vec![0f32; model.config().num_labels];
            let name = if p == Precision::Int8 {
                "albert-edge-int8"
            } else {
                "albert-edge-f32"
            };
            g.bench_function(BenchmarkId::new(name, seq), |b| {
                b.iter(|| classify(model, p, &Inputs::ids(&ids), &mut arena, &mut logits).unwrap())
            });
        }
    }
    g.finish();
}

fn albert_base(c: &mut Criterion) {
    let config = albert_base_config(2);
    let blob = AlignedBlob::new(&write_blob(&random_model(&config, 7, true)).unwrap());
    let model = Model::from_bytes(blob.bytes()).unwrap();
    bench_model(
        c,
        "albert-base",
        &model,
        &[32, 128],
        &[Precision::Int8, Precision::F32],
    );
}

fn fixtures(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-gelu-new-2");
    let opts = ConvertOptions {
        weights: WeightsMode::Int8,
        ..ConvertOptions::default()
    };
    let (contents, _) = build_contents(&dir, opts).unwrap();
    let blob = AlignedBlob::new(&write_blob(&contents).unwrap());
    let model = Model::from_bytes(blob.bytes()).unwrap();
    bench_model(
        c,
        "tiny-gelu-new-2",
        &model,
        &[32, 128],
        &[Precision::Int8, Precision::F32],
    );

    let onnx = tract_onnx::onnx()
        .model_for_path(dir.join("model.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap();
    let onnx = onnx.into_runnable().unwrap();
    let mut g = c.benchmark_group("tiny-gelu-new-2");
    g.sample_size(10);
    for seq in [32usize, 128] {
        let ids = ids(seq, 30000);
        let t = |v: Vec<i64>| -> TValue {
            tract_ndarray::Array2::from_shape_vec((1, seq), v)
                .unwrap()
                .into_tensor()
                .into()
        };
        let input_ids: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        g.bench_function(BenchmarkId::new("tract-f32", seq), |b| {
            b.iter(|| {
                onnx.run(tvec!(
                    t(input_ids.clone()),
                    t(vec![1; seq]),
                    t(vec![0; seq])
                ))
                .unwrap()
            })
        });
    }
    g.finish();
}

/// The two committed SST-2 classifiers (`models/`), int8 as shipped, at seq 32 and 128.
fn shipped_models(c: &mut Criterion) {
    for name in ["sst2-albert-pi", "sst2-albert-mcu"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../models/{name}.blob"));
        let blob = AlignedBlob::read(&path).expect("models/*.blob are committed");
        let model = Model::from_bytes(blob.bytes()).unwrap();
        bench_model(c, name, &model, &[32, 128], &[Precision::Int8]);
    }
}

criterion_group!(benches, albert_base, fixtures, shipped_models);
criterion_main!(benches);
