//! Outlier side columns (format v2, numeric contract 2): the converter keeps each int8 input's calibrated outlier
//! channels in `f32` side columns, the reader validates them, and both precisions use them.

mod convert_support;

use albert_edge::format::AlignedBlob;
use albert_edge::format::{crc32, header, Side, TensorKind, CRC_START};
use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::{Error, Model};
use albert_edge_cli::blob::{write_blob, BlobContents};
use albert_edge_cli::synthetic::{move_to_side, random_model};
use convert_support::*;

fn logits(model: &Model, precision: Precision, ids: &[u32]) -> Vec<f32> {
    let mut arena = vec![0u8; scratch_size(model.config(), ids.len(), precision)];
    let mut out = vec![0f32; model.config().num_labels];
    classify(model, precision, &Inputs::ids(ids), &mut arena, &mut out).unwrap();
    out
}

fn read(path: &std::path::Path) -> AlignedBlob {
    AlignedBlob::read(path).unwrap()
}

/// A synthetic checkpoint whose shared layer's two LayerNorms have a gain of 40 on the channels `planted` (the
/// others are at most 1): outlier channels in the residual stream, as pretrained encoders have.
fn outlier_checkpoint(dir: &std::path::Path, planted: &[usize]) -> albert_edge::AlbertConfig {
    let mut c = tiny_config();
    c.embedding_size = 16;
    c.hidden_size = 64;
    c.num_attention_heads = 4;
    c.intermediate_size = 128;
    c.max_position_embeddings = 64;
    let mut ts = tensors(&c, "albert.", safetensors::Dtype::F32);
    for t in &mut ts {
        let ln = t.name.contains("attention.LayerNorm") || t.name.contains("full_layer_layer_norm");
        if ln && t.name.ends_with("weight") {
            for &p in planted {
                t.values[p] = 40.0;
            }
        }
    }
    write_checkpoint(dir, &config_json(&c, None), &ts);
    c
}

#[test]
fn convert_keeps_the_planted_outlier_channels_in_f32() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let planted = [5usize, 40];
    outlier_checkpoint(&ckpt, &planted);
    let (with, without, fp32) = (
        tmp.path().join("with.blob"),
        tmp.path().join("without.blob"),
        tmp.path().join("fp32.blob"),
    );
    ok(&convert(&ckpt, &with, &[]));
    ok(&convert(&ckpt, &without, &["--outlier-ratio", "0"]));
    ok(&convert(&ckpt, &fp32, &["--weights", "fp32"]));
    let (with, without, fp32) = (read(&with), read(&without), read(&fp32));
    let with = Model::from_bytes(with.bytes()).unwrap();
    let without = Model::from_bytes(without.bytes()).unwrap();
    let fp32 = Model::from_bytes(fp32.bytes()).unwrap();
    assert_eq!(with.format_version(), 2);

    // The shared layer's LayerNorm outputs feed Q, K, V and the FFN: exactly the planted channels come out.
    let l = &with.weights().layer;
    for m in [
        &l.query_weight,
        &l.key_weight,
        &l.value_weight,
        &l.ffn_weight,
    ] {
        assert_eq!(m.side.cols, &[5, 40], "{:?}", m.side.cols);
    }
    // Their weights are the checkpoint's, unrounded, plus (by default) GPTQ's compensation of the int8 columns'
    // rounding: a small fraction of the weights' range. `--side-feedback false` keeps them exactly.
    let w = match fp32.weights().layer.query_weight.data {
        albert_edge::format::MatrixData::F32(w) => w,
        _ => unreachable!(),
    };
    let range = w.iter().fold(0f32, |m, v| m.max(v.abs()));
    let side: &Side = &l.query_weight.side;
    let mut moved = 0f32;
    for r in 0..64 {
        for (k, c) in [5, 40].into_iter().enumerate() {
            let d = (side.values[r * 2 + k] - w[r * 64 + c]).abs();
            assert!(
                d <= 0.05 * range,
                "row {r} column {c}: moved {d} of {range}"
            );
            moved = moved.max(d);
        }
    }
    assert!(moved > 0.0);
    let exact = tmp.path().join("exact.blob");
    ok(&convert(&ckpt, &exact, &["--side-feedback", "false"]));
    let exact = read(&exact);
    let exact = Model::from_bytes(exact.bytes()).unwrap();
    let side: &Side = &exact.weights().layer.query_weight.side;
    for r in 0..64 {
        assert_eq!(side.values[r * 2], w[r * 64 + 5]);
        assert_eq!(side.values[r * 2 + 1], w[r * 64 + 40]);
    }
    let lw = &without.weights().layer;
    assert!(lw.query_weight.side.is_empty() && lw.ffn_weight.side.is_empty());

    // With the outliers in f32 the int8 engine stays closer to the fp32 model (13.2 against 16.1 summed |Δ| when
    // this was written: this checkpoint's uniform weights give every channel large values too).
    let (mut err_with, mut err_without) = (0f32, 0f32);
    for k in 0..24u32 {
        let ids: Vec<u32> = (0..(3 + k % 9))
            .map(|t| 2 + (k * 7919 + t * 104_729) % 29_000)
            .collect();
        let reference = logits(&fp32, Precision::F32, &ids);
        let d = |m: &Model| -> f32 {
            let got = logits(m, Precision::Int8, &ids);
            got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).sum()
        };
        err_with += d(&with);
        err_without += d(&without);
    }
    assert!(
        err_with < 0.9 * err_without,
        "side columns {err_with} vs none {err_without}"
    );

    let inspect = ok(&albert_edge([
        "inspect".as_ref(),
        tmp.path().join("with.blob").as_os_str(),
    ]));
    let query = inspect
        .lines()
        .find(|l| l.trim_start().starts_with("layer.attention.query.weight"))
        .unwrap();
    assert_eq!(query.split_whitespace().last(), Some("2"), "{inspect}");
}

fn side_blob(c: &albert_edge::AlbertConfig, qkv: &[u32]) -> BlobContents {
    let mut contents = random_model(c, 11, true);
    for kind in [
        TensorKind::QueryWeight,
        TensorKind::KeyWeight,
        TensorKind::ValueWeight,
    ] {
        move_to_side(&mut contents, kind, qkv);
    }
    move_to_side(&mut contents, TensorKind::FfnOutputWeight, &[0, 3]);
    contents
}

/// The first table entry of `kind`'s offset in the blob.
fn entry_of(bytes: &[u8], kind: TensorKind) -> usize {
    let at = header::TENSOR_TABLE_OFFSET;
    let table = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    (0..TensorKind::ALL.len())
        .map(|i| table + i * 48)
        .find(|&e| u16::from_le_bytes(bytes[e..e + 2].try_into().unwrap()) == kind.code())
        .unwrap()
}

fn patched(mut bytes: Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
    f(&mut bytes);
    let crc = crc32(&bytes[CRC_START..]);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
    let aligned = AlignedBlob::new(&bytes);
    Model::from_bytes(aligned.bytes()).map(|_| ())
}

#[test]
fn side_columns_are_the_same_matrix_in_f32_and_run_in_scratch_size() {
    let mut c = tiny_config();
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.embedding_size = 8;
    let plain = random_model(&c, 11, true);
    let side = side_blob(&c, &[1, 7, 30]);
    let (plain, side) = (
        AlignedBlob::new(&write_blob(&plain).unwrap()),
        AlignedBlob::new(&write_blob(&side).unwrap()),
    );
    let (plain, side) = (
        Model::from_bytes(plain.bytes()).unwrap(),
        Model::from_bytes(side.bytes()).unwrap(),
    );
    assert_eq!(side.weights().layer.value_weight.side.cols, &[1, 7, 30]);
    for ids in [&[2u32, 10, 3][..], &[2, 500, 77, 9000, 3, 15, 4, 3]] {
        let (a, b) = (
            logits(&plain, Precision::F32, ids),
            logits(&side, Precision::F32, ids),
        );
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + x.abs())),
            "{a:?} {b:?}"
        );
        // The int8 engine quantises without those channels: other bits, still finite and close.
        let q = logits(&side, Precision::Int8, ids);
        assert!(
            q.iter()
                .zip(&b)
                .all(|(x, y)| x.is_finite() && (x - y).abs() < 0.5),
            "{q:?} {b:?}"
        );
    }
}

#[test]
fn the_reader_refuses_malformed_side_columns() {
    let mut c = tiny_config();
    c.hidden_size = 32;
    c.intermediate_size = 48;
    let good = write_blob(&side_blob(&c, &[1, 7])).unwrap();
    assert!(patched(good.clone(), |_| {}).is_ok());
    let q = entry_of(&good, TensorKind::QueryWeight);
    let side_at = u32::from_le_bytes(good[q + 32..q + 36].try_into().unwrap()) as usize;
    let data_at = u32::from_le_bytes(good[q + 12..q + 16].try_into().unwrap()) as usize;
    let bad_tensor = |r: Result<(), Error>| matches!(r, Err(Error::BadTensor(_)));
    // Indices out of order, out of range; a count above the limit; a side column with int8 values.
    assert!(bad_tensor(patched(good.clone(), |b| b
        [side_at..side_at + 4]
        .copy_from_slice(&9u32.to_le_bytes()))));
    assert!(bad_tensor(patched(good.clone(), |b| b
        [side_at + 4..side_at + 8]
        .copy_from_slice(&32u32.to_le_bytes()))));
    assert!(bad_tensor(patched(good.clone(), |b| b[q + 36..q + 40]
        .copy_from_slice(&65u32.to_le_bytes()))));
    assert!(bad_tensor(
        patched(good.clone(), |b| b[data_at + 32 + 7] = 3)
    ));
    // A side value that is not finite; a misaligned or out-of-range offset; reserved entry bytes.
    assert!(bad_tensor(patched(good.clone(), |b| b
        [side_at + 16..side_at + 20]
        .copy_from_slice(&f32::NAN.to_le_bytes()))));
    assert!(patched(good.clone(), |b| b[q + 32..q + 36]
        .copy_from_slice(&(side_at as u32 + 4).to_le_bytes()))
    .is_err());
    assert!(bad_tensor(patched(good.clone(), |b| b[q + 44] = 1)));
    // An int8 value of -128.
    assert!(bad_tensor(patched(good.clone(), |b| b[data_at + 5] = 0x80)));
    // Q, K and V share one quantised input, so their side columns must agree.
    let mut contents = side_blob(&c, &[1, 7]);
    move_to_side(&mut contents, TensorKind::KeyWeight, &[1, 8]);
    let mismatched = write_blob(&contents).unwrap();
    assert!(bad_tensor(patched(mismatched, |_| {})));
    // v2's reserved header field 96 (v1's activation block).
    assert!(matches!(
        patched(good, |b| b[96] = 8),
        Err(Error::BadConfig(_))
    ));
}

#[test]
fn format_v1_blobs_still_run() {
    // The shipped Pi model was converted before format v2 (its fp32 checkpoint is not committed).
    let blob = read(&repo_root().join("models/sst2-albert-pi.blob"));
    let bytes = blob.bytes();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
    let model = Model::from_bytes(bytes).unwrap();
    assert_eq!(model.format_version(), 1);
    let ids = [2u32, 48, 1200, 3];
    let (i8, f32) = (
        logits(&model, Precision::Int8, &ids),
        logits(&model, Precision::F32, &ids),
    );
    assert!(
        i8.iter().zip(&f32).all(|(a, b)| (a - b).abs() < 0.1),
        "{i8:?} {f32:?}"
    );
}
