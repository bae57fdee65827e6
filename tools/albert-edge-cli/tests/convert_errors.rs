//! `albert-edge convert` failures: each is one `error: ...` line on stderr naming what is wrong, a non-zero exit,
//! and nothing written (no blob, no temporary file).

mod convert_support;

use std::fs;
use std::path::{Path, PathBuf};

use albert_edge::AlbertConfig;
use convert_support::*;
use safetensors::Dtype;

/// A scratch area with a valid synthetic checkpoint in `ckpt/` and an empty output directory `out/`.
struct Case {
    _tmp: tempfile::TempDir,
    ckpt: PathBuf,
    blob: PathBuf,
    config: AlbertConfig,
}

impl Case {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let (ckpt, out) = (tmp.path().join("ckpt"), tmp.path().join("out"));
        fs::create_dir(&out).unwrap();
        let config = tiny_config();
        write_checkpoint(
            &ckpt,
            &config_json(&config, None),
            &tensors(&config, "albert.", Dtype::F32),
        );
        Case {
            blob: out.join("model.blob"),
            _tmp: tmp,
            ckpt,
            config,
        }
    }

    fn edit_config(&self, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
        let path = self.ckpt.join("config.json");
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        edit(v.as_object_mut().unwrap());
        fs::write(path, serde_json::to_string(&v).unwrap()).unwrap();
    }

    fn edit_tensors(&self, edit: impl FnOnce(&mut Vec<Tensor>)) {
        let mut ts = tensors(&self.config, "albert.", Dtype::F32);
        edit(&mut ts);
        write_safetensors(&self.ckpt, &ts);
    }

    fn fails_with(&self, needle: &str) {
        self.fails_on(&self.ckpt, needle);
    }

    fn fails_on(&self, dir: &Path, needle: &str) {
        assert_clean_failure(&convert(dir, &self.blob, &[]), &self.blob, needle);
    }
}

#[test]
fn convert_synthetic_case_itself_succeeds() {
    let case = Case::new();
    ok(&convert(&case.ckpt, &case.blob, &[]));
    assert!(case.blob.exists());
}

#[test]
fn convert_fails_cleanly_on_missing_files() {
    let case = Case::new();
    case.fails_on(&case.ckpt.join("nope"), "is not a directory");

    fs::remove_file(case.ckpt.join("spiece.model")).unwrap();
    case.fails_with("has no spiece.model");

    fs::remove_file(case.ckpt.join("model.safetensors")).unwrap();
    case.fails_with("has neither model.safetensors nor pytorch_model.bin");

    fs::remove_file(case.ckpt.join("config.json")).unwrap();
    case.fails_with("has no config.json");
}

#[test]
fn convert_fails_cleanly_on_truncated_weights() {
    let case = Case::new();
    let st = case.ckpt.join("model.safetensors");
    let bytes = fs::read(&st).unwrap();
    fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    case.fails_with("model.safetensors is not a valid safetensors file (truncated or corrupt?)");
    fs::write(&st, &bytes[..5]).unwrap();
    case.fails_with("model.safetensors is not a valid safetensors file");

    fs::remove_file(&st).unwrap();
    let bin = fs::read(fixture("tiny-gelu-new-2").join("pytorch_model.bin")).unwrap();
    fs::write(case.ckpt.join("pytorch_model.bin"), &bin[..bin.len() / 2]).unwrap();
    case.fails_with("pytorch_model.bin is not a readable PyTorch checkpoint");
}

#[test]
fn convert_fails_cleanly_on_a_wrong_shape_naming_tensor_and_shapes() {
    let case = Case::new();
    case.edit_tensors(|ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.name == "albert.pooler.weight")
            .unwrap();
        t.shape = vec![4, 16];
        t.values.truncate(64);
    });
    case.fails_with("tensor `albert.pooler.weight` has shape [4, 16], expected [8, 8]");
}

#[test]
fn convert_fails_cleanly_on_a_missing_tensor() {
    let case = Case::new();
    case.edit_tensors(|ts| ts.retain(|t| !t.name.ends_with("attention.key.bias")));
    case.fails_with("model.safetensors has no tensor `albert.encoder.albert_layer_groups.0.albert_layers.0.attention.key.bias`; is this an ALBERT checkpoint?");
}

#[test]
fn convert_fails_cleanly_without_a_classifier_head() {
    let case = Case::new();
    case.edit_tensors(|ts| ts.retain(|t| !t.name.starts_with("classifier.")));
    case.fails_with(
        "has no tensor `classifier.weight`: the checkpoint has no sequence-classification head",
    );
}

#[test]
fn convert_fails_cleanly_on_an_unsupported_dtype_naming_the_tensor() {
    let case = Case::new();
    case.edit_tensors(|ts| {
        ts.iter_mut()
            .find(|t| t.name == "albert.pooler.bias")
            .unwrap()
            .dtype = Dtype::F64
    });
    case.fails_with("tensor `albert.pooler.bias` has dtype F64; albert-edge converts F32, F16 and BF16 weights only");
}

#[test]
fn convert_fails_cleanly_on_unsupported_configs_naming_field_and_value() {
    let cases: [(&str, serde_json::Value, &str); 6] = [
        (
            "model_type",
            "bert".into(),
            "config.json has model_type \"bert\"; albert-edge converts ALBERT checkpoints only",
        ),
        ("num_hidden_groups", 2.into(), "num_hidden_groups 2"),
        ("inner_group_num", 2.into(), "inner_group_num 2"),
        (
            "position_embedding_type",
            "relative_key".into(),
            "position_embedding_type \"relative_key\"",
        ),
        (
            "hidden_act",
            "quick_gelu".into(),
            "hidden_act \"quick_gelu\"",
        ),
        (
            "num_attention_heads",
            3.into(),
            "hidden_size must be a multiple of num_attention_heads",
        ),
    ];
    for (field, value, needle) in cases {
        let case = Case::new();
        case.edit_config(|c| {
            c.insert(field.into(), value);
        });
        case.fails_with(needle);
    }
    let case = Case::new();
    fs::write(case.ckpt.join("config.json"), "{\"model_type\": ").unwrap();
    case.fails_with("config.json is not valid JSON");
}

#[test]
fn convert_fails_cleanly_when_the_output_directory_is_missing_or_read_only() {
    let case = Case::new();
    let missing = case.blob.parent().unwrap().join("no/such/dir/model.blob");
    let out = convert(&case.ckpt, &missing, &[]);
    assert_clean_failure(&out, &missing, "cannot create a temporary file in");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = case.blob.parent().unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        // Root (and CAP_DAC_OVERRIDE) writes through permission bits; then the case cannot be staged here.
        let privileged = fs::write(dir.join("probe"), b"").is_ok();
        if privileged {
            fs::remove_file(dir.join("probe")).unwrap();
            // Permission bits do not stop root; /proc refuses new files to everyone, so use it instead.
            eprintln!("note: running as root: permission bits do not block writes; using /proc as the read-only directory");
            let proc_blob = Path::new("/proc/albert-edge-test-model.blob");
            if Path::new("/proc").is_dir() {
                let out = convert(&case.ckpt, proc_blob, &[]);
                assert_clean_failure(&out, proc_blob, "cannot create a temporary file in /proc");
            }
        } else {
            let out = convert(&case.ckpt, &case.blob, &[]);
            assert_clean_failure(&out, &case.blob, "cannot create a temporary file in");
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn convert_fails_cleanly_when_spiece_has_more_pieces_than_the_vocabulary() {
    let case = Case {
        config: AlbertConfig {
            vocab_size: 100,
            ..tiny_config()
        },
        ..Case::new()
    };
    fs::write(
        case.ckpt.join("config.json"),
        serde_json::to_string(&config_json(&case.config, None)).unwrap(),
    )
    .unwrap();
    case.edit_tensors(|_| {});
    case.fails_with("spiece.model has 30000 pieces but config.json has vocab_size 100");
}

#[test]
fn convert_fails_cleanly_on_a_bad_tokenizer_config() {
    let case = Case::new();
    fs::write(
        case.ckpt.join("tokenizer_config.json"),
        r#"{"do_lower_case": "yes"}"#,
    )
    .unwrap();
    case.fails_with("tokenizer_config.json has do_lower_case \"yes\"; expected true or false");
}
