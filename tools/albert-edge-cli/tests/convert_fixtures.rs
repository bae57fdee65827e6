//! `albert-edge convert` on the committed fixtures and on synthetic checkpoints: what lands in the blob, and which
//! different-looking inputs must give byte-identical blobs.

mod convert_support;

use std::fs;
use std::path::Path;

use albert_edge::format::AlignedBlob;
use albert_edge::format::{DType, MatrixData, TensorKind};
use albert_edge::{Activation, Model};
use albert_edge_cli::weights::WeightsFile;
use convert_support::*;
use safetensors::Dtype;

fn load(path: &Path) -> AlignedBlob {
    AlignedBlob::read(path).unwrap()
}

fn labels(model: &Model) -> Vec<String> {
    (0..model.config().num_labels)
        .map(|i| model.label(i).to_string())
        .collect()
}

#[test]
fn convert_fixtures_gives_valid_blobs_with_their_config_labels_and_dtypes() {
    for (name, act, hidden, layers, want_labels) in [
        (
            "tiny-gelu-new-2",
            Activation::GeluNew,
            32,
            3,
            vec!["negative", "positive"],
        ),
        (
            "tiny-gelu-3",
            Activation::Gelu,
            48,
            4,
            vec!["negative", "neutral", "positive"],
        ),
    ] {
        for (mode, matrix_dtype) in [("int8", DType::I8), ("fp32", DType::F32)] {
            let blob = load(&converted_fixture(name, mode));
            let model = Model::from_bytes(blob.bytes()).unwrap();
            let c = model.config();
            assert_eq!(
                (c.hidden_act, c.hidden_size, c.num_hidden_layers),
                (act, hidden, layers),
                "{name}"
            );
            assert_eq!(
                (c.vocab_size, c.embedding_size, c.max_position_embeddings),
                (30000, 8, 128),
                "{name}"
            );
            assert_eq!(labels(&model), want_labels, "{name}");
            assert_eq!(model.tensors().count(), TensorKind::ALL.len());
            for t in model.tensors() {
                let want = if t.kind.is_matrix() {
                    matrix_dtype
                } else {
                    DType::F32
                };
                assert_eq!(t.dtype, want, "{name} {mode} {}", t.kind.name());
                if t.dtype == DType::I8 {
                    assert!(
                        t.quant_error > 0.0 && t.quant_error < 0.1,
                        "{} error {}",
                        t.kind.name(),
                        t.quant_error
                    );
                } else {
                    assert_eq!(t.quant_error, 0.0);
                }
            }
        }
    }
}

#[test]
fn convert_fp32_keeps_the_checkpoint_values_bit_for_bit() {
    for name in FIXTURES {
        let blob = load(&converted_fixture(name, "fp32"));
        let model = Model::from_bytes(blob.bytes()).unwrap();
        let w = model.weights();
        let st = WeightsFile::open(&fixture(name).join("model.safetensors")).unwrap();
        let check = |hf: &str, got: &[f32]| {
            let want = st.read_f32(hf).unwrap().values;
            assert_eq!(
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{name} {hf}"
            );
        };
        let MatrixData::F32(ffn) = w.layer.ffn_weight.data else {
            panic!("fp32 blob has an int8 matrix")
        };
        check(
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight",
            ffn,
        );
        check("classifier.bias", w.classifier_bias);
        check("albert.embeddings.LayerNorm.weight", w.embeddings_ln_weight);
    }
}

#[test]
fn convert_bin_only_copy_is_byte_identical_to_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    for name in FIXTURES {
        let bin_dir = tmp.path().join(format!("{name}-bin"));
        copy_checkpoint(&fixture(name), &bin_dir, &["model.safetensors"]);
        for mode in ["int8", "fp32"] {
            let (a, b) = (converted_fixture(name, mode), tmp.path().join("bin.blob"));
            let stdout = ok(&convert(&bin_dir, &b, &["--weights", mode]));
            assert!(stdout.contains("pytorch_model.bin"), "{stdout}");
            assert!(
                fs::read(&a).unwrap() == fs::read(&b).unwrap(),
                "{name} {mode}: .bin and .safetensors blobs differ"
            );
        }
    }
}

#[test]
fn convert_transformers5_config_without_id2label_has_two_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t5");
    copy_checkpoint(&fixture("tiny-gelu-new-2"), &dir, &["pytorch_model.bin"]);
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    let obj = config.as_object_mut().unwrap();
    obj.remove("id2label");
    obj.remove("label2id");
    obj.insert("transformers_version".into(), "5.0.0".into());
    fs::write(
        dir.join("config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    let out = tmp.path().join("m.blob");
    ok(&convert(&dir, &out, &[]));
    let blob = load(&out);
    let model = Model::from_bytes(blob.bytes()).unwrap();
    assert_eq!(labels(&model), ["LABEL_0", "LABEL_1"]);
}

#[test]
fn convert_names_without_albert_prefix_and_any_float_dtype_give_identical_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny_config();
    let config = config_json(&c, Some(&["no", "yes"]));
    let mut blobs = Vec::new();
    for (i, (prefix, dtype)) in [
        ("albert.", Dtype::F32),
        ("", Dtype::F32),
        ("albert.", Dtype::F16),
        ("", Dtype::BF16),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("ckpt{i}"));
        let ts = tensors(&c, prefix, dtype);
        write_checkpoint(&dir, &config, &ts);
        let out = tmp.path().join(format!("m{i}.blob"));
        ok(&convert(&dir, &out, &[]));
        blobs.push(fs::read(&out).unwrap());
    }
    assert!(
        blobs.windows(2).all(|w| w[0] == w[1]),
        "prefix / dtype changed the blob"
    );
    let blob = AlignedBlob::new(&blobs[0]);
    let model = Model::from_bytes(blob.bytes()).unwrap();
    assert_eq!(*model.config(), c);
    assert_eq!(labels(&model), ["no", "yes"]);
}

#[test]
fn convert_overwrites_an_existing_blob_and_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.blob");
    fs::write(&out, b"old contents").unwrap();
    let stdout = ok(&convert(&fixture("tiny-gelu-new-2"), &out, &[]));
    // The summary: the weights file, the labels, each int8 matrix's worst error, the blob written.
    for needle in [
        "read model.safetensors (2 labels: negative, positive)",
        "layer.ffn.weight",
        "max |err|",
        "wrote",
    ] {
        assert!(stdout.contains(needle), "{stdout}");
    }
    let blob = load(&out);
    Model::from_bytes(blob.bytes()).unwrap();
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.blob"]);
}

#[test]
fn convert_honours_tokenizer_config_options() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cased");
    copy_checkpoint(&fixture("tiny-gelu-new-2"), &dir, &["pytorch_model.bin"]);
    fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"do_lower_case": true, "keep_accents": false, "remove_space": true}"#,
    )
    .unwrap();
    let defaults = tmp.path().join("defaults.blob");
    ok(&convert(&dir, &defaults, &[]));
    assert!(
        fs::read(&defaults).unwrap()
            == fs::read(converted_fixture("tiny-gelu-new-2", "int8")).unwrap(),
        "ALBERT's defaults spelled out must not change the blob"
    );

    fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"do_lower_case": false}"#,
    )
    .unwrap();
    let cased = tmp.path().join("cased.blob");
    ok(&convert(&dir, &cased, &[]));
    let (a, b) = (load(&defaults), load(&cased));
    let (a, b) = (
        Model::from_bytes(a.bytes()).unwrap(),
        Model::from_bytes(b.bytes()).unwrap(),
    );
    assert_ne!(a.tokenizer_section(), b.tokenizer_section());
}
