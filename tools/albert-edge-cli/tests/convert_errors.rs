//! `albert-edge convert` failures: each is one `error: ...` line on stderr naming what is wrong, a non-zero exit,
//! and nothing written (no blob, no temporary file).

mod convert_support;

use std::fs;
use std::path::Path;

use albert_edge::AlbertConfig;
use convert_support::*;
use safetensors::Dtype;

impl Case {
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
    let cases: [(&str, serde_json::Value, &str); 9] = [
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
            "hidden_size 8 must be a multiple of num_attention_heads 3",
        ),
        (
            "hidden_size",
            10_000_000.into(),
            "hidden_size 10000000 must be in 1..=65536",
        ),
        (
            "num_hidden_layers",
            0.into(),
            "num_hidden_layers 0 must be in 1..=256",
        ),
        (
            "vocab_size",
            2_000_000.into(),
            "vocab_size 2000000 must be in 1..=1048576",
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
    assert_clean_failure(
        &out,
        &missing,
        "no/such/dir does not exist; create it first",
    );

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

// ---------------------------------------------------------------------------------------------------------------
// Lying weights files, calibration files, outputs that cannot be written
// ---------------------------------------------------------------------------------------------------------------

/// Rewrites the JSON header of `path` (a safetensors file) with `edit`, keeping the data and a correct length
/// prefix: the header then lies about the data.
fn edit_safetensors_header(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(path, out).unwrap();
}

fn offsets(header: &serde_json::Value, name: &str) -> (u64, u64) {
    let o = &header[name]["data_offsets"];
    (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
}

#[test]
fn convert_fails_cleanly_on_a_safetensors_header_that_lies_about_offsets() {
    type Lie = fn(&mut serde_json::Value);
    let lies: [(&str, Lie); 5] = [
        ("past the end of the file", |h| {
            let (a, b) = offsets(h, "albert.pooler.bias");
            h["albert.pooler.bias"]["data_offsets"] = serde_json::json!([a, b + 1_000_000]);
        }),
        ("begin after end", |h| {
            let (a, b) = offsets(h, "albert.pooler.bias");
            h["albert.pooler.bias"]["data_offsets"] = serde_json::json!([b, a]);
        }),
        ("fewer bytes than the shape needs", |h| {
            let (a, _) = offsets(h, "albert.pooler.bias");
            h["albert.pooler.bias"]["data_offsets"] = serde_json::json!([a, a + 4]);
        }),
        ("overlapping another tensor", |h| {
            let o = h["classifier.bias"]["data_offsets"].clone();
            h["albert.pooler.bias"]["data_offsets"] = o;
        }),
        ("huge offsets", |h| {
            h["albert.pooler.bias"]["data_offsets"] = serde_json::json!([u64::MAX - 31, u64::MAX]);
        }),
    ];
    for (what, lie) in lies {
        let case = Case::new();
        edit_safetensors_header(&case.ckpt.join("model.safetensors"), lie);
        let out = convert(&case.ckpt, &case.blob, &[]);
        assert_clean_failure(
            &out,
            &case.blob,
            "model.safetensors is not a valid safetensors file",
        );
        println!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }

    // A length prefix larger than the file, and one that cuts the JSON short.
    let case = Case::new();
    let st = case.ckpt.join("model.safetensors");
    let bytes = fs::read(&st).unwrap();
    for prefix in [u64::MAX, bytes.len() as u64, 10] {
        let mut lying = bytes.clone();
        lying[..8].copy_from_slice(&prefix.to_le_bytes());
        fs::write(&st, &lying).unwrap();
        case.fails_with("model.safetensors is not a valid safetensors file");
    }
}

#[test]
fn convert_fails_cleanly_on_an_integer_dtype_naming_the_tensor() {
    let case = Case::new();
    // Same element size as F32, so the file stays consistent: only the dtype is wrong.
    edit_safetensors_header(&case.ckpt.join("model.safetensors"), |h| {
        h["albert.pooler.weight"]["dtype"] = "I32".into();
    });
    case.fails_with(
        "tensor `albert.pooler.weight` has dtype I32; albert-edge converts F32, F16 and BF16 weights only",
    );
}

#[test]
fn convert_fails_cleanly_on_a_missing_unreadable_or_non_utf8_calibration_file() {
    let case = Case::new();
    let dir = case.blob.parent().unwrap().to_path_buf();
    let missing = dir.join("no-such-sentences.txt");
    let binary = dir.join("binary.txt");
    fs::write(&binary, b"a sentence\n\xff\xfe not text\n").unwrap();
    for (file, needle) in [
        (&missing, "cannot read calibration file"),
        (&dir, "cannot read calibration file"),
        (&binary, "cannot read calibration file"),
    ] {
        let out = convert(
            &case.ckpt,
            &case.blob,
            &["--calibrate", file.to_str().unwrap()],
        );
        assert_clean_failure(&out, &case.blob, needle);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&file.display().to_string()),
            "the error names the file"
        );
    }
    // An empty one: see `convert_calibration.rs` (`an_empty_calibration_file_is_a_one_line_error`).
}

/// Asserts a one-line `error: ...` containing `needle` and a non-zero exit (for outputs that exist beforehand).
fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "stderr must be one line: {stderr:?}"
    );
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{stderr:?} does not mention {needle:?}"
    );
}

#[test]
fn convert_refuses_a_directory_or_a_device_as_the_output() {
    let case = Case::new();
    let dir = case.blob.parent().unwrap();
    let out = convert(&case.ckpt, dir, &[]);
    assert_one_line_error(&out, "is a directory; give the blob's file name");
    assert!(dir.is_dir());

    // The rename would replace the device node (root may write to /dev).
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        if null.exists() {
            let out = convert(&case.ckpt, null, &[]);
            assert_one_line_error(&out, "/dev/null is a character device, not a regular file");
            assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        }
    }
}

/// A full disk, simulated without root: `ulimit -f` caps the size of files the converter may write (and SIGXFSZ is
/// ignored), so the blob's `write()` fails part-way exactly where ENOSPC would (with EFBIG, "File too large").
/// Filling a real file system portably would need root to mount a small tmpfs; `/dev/full` cannot stand in,
/// since the converter writes a temporary file next to the output and renames it (and refuses devices).
#[cfg(unix)]
#[test]
fn convert_fails_cleanly_when_the_blob_cannot_be_written_in_full() {
    let case = Case::new();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -f 64 && trap '' XFSZ && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_albert-edge"))
        .arg("convert")
        .arg(&case.ckpt)
        .arg("-o")
        .arg(&case.blob)
        .output()
        .unwrap();
    assert_clean_failure(&out, &case.blob, "cannot write");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&case.blob.display().to_string()),
        "the error names the output"
    );
}
