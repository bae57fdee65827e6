//! Shared by the `convert_*` and `cli_*` integration tests: running the binary, copying fixtures, building small
//! synthetic checkpoints with the safetensors crate, and checking that a failure is clean.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use albert_edge::format::TensorKind;
use albert_edge::AlbertConfig;
use albert_edge_cli::convert::hf_name;
use safetensors::tensor::{serialize, TensorView};
use safetensors::Dtype;

/// The names of the committed fixtures.
pub const FIXTURES: [&str; 2] = ["tiny-gelu-new-2", "tiny-gelu-3"];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// The real 30k-piece SentencePiece model (what the fixtures' `spiece.model` links to).
pub fn spiece_model() -> PathBuf {
    repo_root().join("tests/data/spiece/30k-clean.model")
}

/// Runs `albert-edge` with `args`.
pub fn albert_edge<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_albert-edge"))
        .args(args)
        .output()
        .expect("run albert-edge")
}

/// Runs `albert-edge convert DIR -o OUT [extra..]`.
pub fn convert(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "convert".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    albert_edge(args)
}

/// Asserts success and returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "albert-edge failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// The blob of fixture `name` converted with `--weights mode`, converted once per test binary and shared by its
/// tests (a debug-build conversion takes seconds, mostly the tokenizer section).
pub fn converted_fixture(name: &str, mode: &str) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-blobs", env!("CARGO_CRATE_NAME")));
    let cache = CACHE.get_or_init(|| {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Mutex::new(HashMap::new())
    });
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(format!("{name}.{mode}"))
        .or_insert_with(|| {
            let out = dir.join(format!("{name}.{mode}.blob"));
            ok(&convert(&fixture(name), &out, &["--weights", mode]));
            out
        })
        .clone()
}

/// Copies the checkpoint files of `src` into a new directory `dst` (symlinks followed), leaving out `skip`.
pub fn copy_checkpoint(src: &Path, dst: &Path, skip: &[&str]) {
    fs::create_dir_all(dst).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "spiece.model",
    ] {
        if !skip.contains(&f) && src.join(f).exists() {
            fs::copy(src.join(f), dst.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
    }
}

/// Asserts a clean failure: non-zero exit, exactly one stderr line `error: ...` containing `needle`, no `out`,
/// and no temporary files left in `out`'s directory.
pub fn assert_clean_failure(out: &Output, blob: &Path, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "stderr must be one line: {stderr:?}"
    );
    assert!(
        stderr.starts_with("error: "),
        "stderr must start with `error: `: {stderr:?}"
    );
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} does not mention {needle:?}"
    );
    assert!(
        !blob.exists(),
        "{} was written by a failed conversion",
        blob.display()
    );
    if let Some(dir) = blob.parent().filter(|d| d.is_dir()) {
        let leftovers: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                n.ends_with(".tmp") || n.starts_with(".albert-edge-") || n.starts_with(".tmp")
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary files left behind: {leftovers:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic checkpoints
// ---------------------------------------------------------------------------------------------------------------

/// A tiny config with the real vocabulary size (so the real `spiece.model` fits it).
pub fn tiny_config() -> AlbertConfig {
    AlbertConfig {
        vocab_size: 30000,
        embedding_size: 4,
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 12,
        num_hidden_layers: 2,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: albert_edge::Activation::GeluNew,
        num_labels: 2,
    }
}

/// `config.json` as transformers 4.x writes it for `c` (with `id2label` when `labels` is given).
pub fn config_json(c: &AlbertConfig, labels: Option<&[&str]>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": ["AlbertForSequenceClassification"],
        "model_type": "albert",
        "vocab_size": c.vocab_size,
        "embedding_size": c.embedding_size,
        "hidden_size": c.hidden_size,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_hidden_groups": 1,
        "inner_group_num": 1,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act.name(),
        "position_embedding_type": "absolute",
        "transformers_version": "4.57.6",
    });
    if let Some(labels) = labels {
        let map: BTreeMap<String, String> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.to_string()))
            .collect();
        v["id2label"] = serde_json::to_value(map).unwrap();
    }
    v
}

/// Deterministic pseudo-random multiples of 1/128 in `[-1, 1)` (a 32-bit LCG): at most 8 significant bits, so
/// F32, F16 and BF16 files hold exactly the same numbers.
pub fn values(seed: u32, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            ((s >> 24) as i32 - 128) as f32 / 128.0
        })
        .collect()
}

/// One tensor of a synthetic checkpoint: name, shape, dtype and values (written in that dtype).
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub values: Vec<f32>,
}

/// The 27 tensors of an `AlbertForSequenceClassification` for `c`, named with `prefix` (`"albert."` or `""`).
pub fn tensors(c: &AlbertConfig, prefix: &str, dtype: Dtype) -> Vec<Tensor> {
    TensorKind::ALL
        .iter()
        .map(|&k| {
            let (r, cols) = k.expected_shape(c);
            let shape = if k.is_matrix() {
                vec![r, cols]
            } else {
                vec![r]
            };
            Tensor {
                name: hf_name(k, prefix),
                shape,
                dtype,
                values: values(k.code() as u32, r * cols),
            }
        })
        .collect()
}

fn encode(dtype: Dtype, values: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::F64 => values
            .iter()
            .flat_map(|&v| (v as f64).to_le_bytes())
            .collect(),
        other => panic!("test helper does not encode {other:?}"),
    }
}

/// Writes `tensors` as `dir/model.safetensors`.
pub fn write_safetensors(dir: &Path, tensors: &[Tensor]) {
    let data: Vec<Vec<u8>> = tensors.iter().map(|t| encode(t.dtype, &t.values)).collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&data)
        .map(|(t, d)| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), d).unwrap(),
            )
        })
        .collect();
    fs::write(
        dir.join("model.safetensors"),
        serialize(views, None).unwrap(),
    )
    .unwrap();
}

/// Creates a complete synthetic checkpoint directory `dir`: config.json, model.safetensors, spiece.model.
pub fn write_checkpoint(dir: &Path, config: &serde_json::Value, tensors: &[Tensor]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    write_safetensors(dir, tensors);
    fs::copy(spiece_model(), dir.join("spiece.model")).unwrap();
}

/// A scratch area holding a valid synthetic checkpoint in `ckpt/` and an empty output directory, with the path a
/// conversion should write its blob to. Each test crate adds the edits it needs in its own `impl Case`.
pub struct Case {
    pub _tmp: tempfile::TempDir,
    pub ckpt: PathBuf,
    pub blob: PathBuf,
    pub config: AlbertConfig,
}

impl Case {
    pub fn new() -> Self {
        let (tmp, ckpt, out, config) = synthetic_checkpoint();
        Case {
            blob: out.join("model.blob"),
            _tmp: tmp,
            ckpt,
            config,
        }
    }
}

/// A temporary directory holding a synthetic checkpoint `ckpt/` of [`tiny_config`] (safetensors, the real
/// `spiece.model`) and an empty output directory `out/`: `(guard, ckpt, out, config)`.
pub fn synthetic_checkpoint() -> (tempfile::TempDir, PathBuf, PathBuf, AlbertConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let (ckpt, out) = (tmp.path().join("ckpt"), tmp.path().join("out"));
    fs::create_dir(&out).unwrap();
    let config = tiny_config();
    write_checkpoint(
        &ckpt,
        &config_json(&config, None),
        &tensors(&config, "albert.", Dtype::F32),
    );
    (tmp, ckpt, out, config)
}
