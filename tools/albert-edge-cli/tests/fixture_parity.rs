//! Our forward pass against two independent references, on every committed fixture:
//! * fp32: the logits Hugging Face recorded and tract-onnx running the fp32 ONNX export, both to <= 1e-4;
//! * int8: against ONNX Runtime dynamic int8 (measured by the fixture script on the same 200 random sequences):
//!   at most half of its mean |Δlogit| to HF fp32, and argmax agreement with HF fp32 of at least 98 % and above
//!   ONNX Runtime's.

use std::path::{Path, PathBuf};

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::Model;
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::convert::{build_contents, ConvertOptions, WeightsMode};
use serde_json::Value;
use tract_onnx::prelude::*;

const FIXTURES: &[&str] = &["tiny-gelu-new-2", "tiny-gelu-3"];

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn blob(name: &str, weights: WeightsMode) -> AlignedBlob {
    let (contents, _) = build_contents(
        &fixture_dir(name),
        ConvertOptions {
            weights,
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    AlignedBlob::new(&write_blob(&contents).unwrap())
}

fn json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn run(model: &Model, precision: Precision, ids: &[u32], types: &[u32], mask: &[u32]) -> Vec<f32> {
    let inputs = Inputs {
        input_ids: ids,
        token_type_ids: types,
        attention_mask: mask,
    };
    let mut arena = vec![0u8; scratch_size(model.config(), ids.len(), precision)];
    let mut logits = vec![0f32; model.config().num_labels];
    classify(model, precision, &inputs, &mut arena, &mut logits).unwrap();
    logits
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > v[best] { i } else { best })
}

fn tract_logits(
    onnx: &std::sync::Arc<TypedRunnableModel>,
    ids: &[u32],
    types: &[u32],
    mask: &[u32],
) -> Vec<f32> {
    let n = ids.len();
    let t = |v: &[u32]| -> TValue {
        tract_ndarray::Array2::from_shape_vec((1, n), v.iter().map(|&x| x as i64).collect())
            .unwrap()
            .into_tensor()
            .into()
    };
    let out = onnx.run(tvec!(t(ids), t(mask), t(types))).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn load_onnx(name: &str) -> std::sync::Arc<TypedRunnableModel> {
    let path = fixture_dir(name).join("model.onnx");
    tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap()
}

#[test]
fn fp32_matches_hugging_face_and_tract_on_every_reference_row() {
    for name in FIXTURES {
        let blob = blob(name, WeightsMode::Fp32);
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let onnx = load_onnx(name);
        let reference = json(fixture_dir(name).join("reference.json"));
        let mut worst_hf = 0f32;
        let mut worst_tract = 0f32;
        for row in reference["rows"].as_array().unwrap() {
            let (ids, types, mask) = (
                ints(&row["input_ids"]),
                ints(&row["token_type_ids"]),
                ints(&row["attention_mask"]),
            );
            let hf = floats(&row["logits"]);
            let ours = run(&model, Precision::F32, &ids, &types, &mask);
            let tract = tract_logits(&onnx, &ids, &types, &mask);
            worst_hf = worst_hf.max(max_abs_diff(&ours, &hf));
            worst_tract = worst_tract.max(max_abs_diff(&ours, &tract));
            assert!(
                max_abs_diff(&tract, &hf) <= 1e-4,
                "{name}: tract disagrees with HF: {tract:?} vs {hf:?}"
            );
        }
        println!(
            "{name}: fp32 max |ours - HF| = {worst_hf:.2e}, max |ours - tract| = {worst_tract:.2e}"
        );
        assert!(
            worst_hf <= 1e-4,
            "{name}: fp32 vs HF max abs diff {worst_hf}"
        );
        assert!(
            worst_tract <= 1e-4,
            "{name}: fp32 vs tract max abs diff {worst_tract}"
        );
    }
}

#[test]
fn fp32_matches_hugging_face_on_random_sequences() {
    for name in FIXTURES {
        let blob = blob(name, WeightsMode::Fp32);
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let random = json(fixture_dir(name).join("random.json"));
        let mut worst = 0f32;
        for row in random["rows"].as_array().unwrap() {
            let (ids, types) = (ints(&row["input_ids"]), ints(&row["token_type_ids"]));
            let ours = run(&model, Precision::F32, &ids, &types, &[]);
            worst = worst.max(max_abs_diff(&ours, &floats(&row["logits_fp32"])));
        }
        println!("{name}: fp32 max |ours - HF| over random rows = {worst:.2e}");
        assert!(worst <= 1e-4, "{name}: {worst}");
    }
}

#[test]
fn int8_beats_onnx_runtime_int8_on_agreement_and_logit_error() {
    for name in FIXTURES {
        let blob = blob(name, WeightsMode::Int8);
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let random = json(fixture_dir(name).join("random.json"));
        let ort_agreement = random["summary"]["ort_int8_argmax_agreement"]
            .as_f64()
            .unwrap();
        let ort_delta = random["summary"]["ort_int8_mean_abs_logit_delta"]
            .as_f64()
            .unwrap() as f32;
        let rows = random["rows"].as_array().unwrap();
        assert!(rows.len() >= 200);
        let (mut agree, mut delta_sum, mut n_logits) = (0usize, 0f64, 0usize);
        let mut flipped = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let (ids, types) = (ints(&row["input_ids"]), ints(&row["token_type_ids"]));
            let hf = floats(&row["logits_fp32"]);
            let ours = run(&model, Precision::Int8, &ids, &types, &[]);
            if argmax(&ours) == argmax(&hf) {
                agree += 1;
            } else {
                flipped.push((i, top2_margin(&hf)));
            }
            delta_sum += ours
                .iter()
                .zip(&hf)
                .map(|(a, b)| (a - b).abs() as f64)
                .sum::<f64>();
            n_logits += hf.len();
        }
        let agreement = agree as f64 / rows.len() as f64;
        let mean_delta = (delta_sum / n_logits as f64) as f32;
        println!(
            "{name}: int8 argmax agreement {:.1} % ({agree}/{}), mean |Δlogit| {mean_delta:.4} vs ONNX Runtime int8 {ort_delta:.4} (ratio {:.2})",
            100.0 * agreement,
            rows.len(),
            mean_delta / ort_delta
        );
        println!("{name}: rows whose argmax differs (row, HF top-2 margin): {flipped:.4?}");
        // The numeric contract's per-model goal (QUANTIZATION.md section 1).
        assert!(
            agreement >= ort_agreement.max(0.97),
            "{name}: int8 argmax agreement {agreement} (ONNX Runtime int8: {ort_agreement})"
        );
        assert!(
            mean_delta <= 0.75 * ort_delta,
            "{name}: mean |Δlogit| {mean_delta} > 0.75 x ONNX Runtime int8's {ort_delta}"
        );
    }
}

/// The gap between the two largest logits.
fn top2_margin(logits: &[f32]) -> f32 {
    let mut sorted = logits.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted.get(1).copied().unwrap_or(f32::NEG_INFINITY)
}
