//! `albert-edge convert` on crafted checkpoints: a config.json whose counts would size huge allocations, hostile
//! `pytorch_model.bin` pickles (a tensor larger than its storage, memo bombs, deep nesting), non-finite weights
//! (and the blob reader's own check for them), subnormal weights. Each crafted file is written here, byte by
//! byte; each conversion runs as a child process under an address-space limit, so a regression shows as a failed
//! test (an abort, a crash) rather than as a machine out of memory.

mod convert_support;

use std::fs;
use std::process::{Command, Output};

use albert_edge::format::AlignedBlob;
use albert_edge::format::{MatrixData, TensorKind};
use albert_edge::AlbertConfig;
use albert_edge_cli::convert::hf_name;
use albert_edge_cli::torch_pickle::{write_state_dict, StorageType, TensorRecord};
use albert_edge_cli::torch_zip::{write_archive, write_checkpoint as write_bin};
use convert_support::*;
use safetensors::Dtype;

/// Address space the converter may use: a few hundred MB are enough for these checkpoints.
const MEMORY_LIMIT_KB: u64 = 1 << 20;

impl Case {
    /// Replaces `model.safetensors` with a `pytorch_model.bin` of these bytes.
    fn with_bin(&self, bytes: &[u8]) -> &Self {
        let _ = fs::remove_file(self.ckpt.join("model.safetensors"));
        fs::write(self.ckpt.join("pytorch_model.bin"), bytes).unwrap();
        self
    }

    /// `convert` as a child process limited to [`MEMORY_LIMIT_KB`] of address space. `ALBERT_EDGE_BIN` runs
    /// another build of the tool instead (to check that a case failed before its fix).
    fn convert(&self, extra: &[&str]) -> Output {
        let bin = std::env::var_os("ALBERT_EDGE_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_albert-edge").into());
        Command::new("sh")
            .arg("-c")
            .arg(format!(r#"ulimit -v {MEMORY_LIMIT_KB} && exec "$0" "$@""#))
            .arg(bin)
            .arg("convert")
            .arg(&self.ckpt)
            .arg("-o")
            .arg(&self.blob)
            .args(extra)
            .output()
            .expect("run albert-edge under sh")
    }

    fn fails_with(&self, needle: &str) {
        assert_clean_failure(
            &self.convert(&["--rounding", "nearest"]),
            &self.blob,
            needle,
        );
    }
}

fn name(kind: TensorKind) -> String {
    hf_name(kind, "albert.")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The 27 tensors of `c` as a `pytorch_model.bin` (F32), with `edit` applied to the values first.
fn bin_checkpoint(c: &AlbertConfig, edit: impl FnOnce(&mut Vec<Tensor>)) -> Vec<u8> {
    let mut ts = tensors(c, "albert.", Dtype::F32);
    edit(&mut ts);
    let data: Vec<Vec<u8>> = ts.iter().map(|t| f32_bytes(&t.values)).collect();
    let shapes: Vec<Vec<u64>> = ts
        .iter()
        .map(|t| t.shape.iter().map(|&d| d as u64).collect())
        .collect();
    let specs: Vec<(&str, StorageType, &[u64], &[u8])> = ts
        .iter()
        .zip(&shapes)
        .zip(&data)
        .map(|((t, s), d)| (t.name.as_str(), StorageType::F32, &s[..], &d[..]))
        .collect();
    write_bin(&specs).unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------------------------

/// An 800-byte config.json with `num_labels` 10^9 and no `id2label` made the converter build a billion label
/// names before checking the count (6 GB, killed).
#[test]
fn convert_refuses_a_huge_num_labels_before_allocating_label_names() {
    let case = Case::new();
    let mut v = config_json(&case.config, None);
    v["num_labels"] = 1_000_000_000u64.into();
    fs::write(case.ckpt.join("config.json"), v.to_string()).unwrap();
    case.fails_with("num_labels 1000000000");

    // Too many id2label entries are refused before they are sorted and copied.
    let names: serde_json::Map<String, serde_json::Value> = (0..200)
        .map(|i| (i.to_string(), format!("l{i}").into()))
        .collect();
    v.as_object_mut().unwrap().remove("num_labels");
    v["id2label"] = names.into();
    fs::write(case.ckpt.join("config.json"), v.to_string()).unwrap();
    case.fails_with("200 id2label entries");
}

/// A 600 KB checkpoint whose config is lopsided (hidden_size 1, intermediate_size 65536): GPTQ's statistics for
/// the FFN output's input would be a 65536 x 65536 f64 matrix, 34 GB, and the converter aborted allocating it.
/// It is refused before calibration (round-to-nearest still converts it).
#[test]
fn convert_refuses_calibration_statistics_out_of_proportion_to_the_model() {
    let case = Case::new();
    let c = AlbertConfig {
        embedding_size: 1,
        hidden_size: 1,
        num_attention_heads: 1,
        intermediate_size: 65536,
        ..case.config
    };
    write_checkpoint(
        &case.ckpt,
        &config_json(&c, None),
        &tensors(&c, "albert.", Dtype::F32),
    );
    assert_clean_failure(
        &case.convert(&[]),
        &case.blob,
        "GPTQ calibration of this model needs 98434 MB for its layers' input statistics",
    );
    ok(&case.convert(&["--rounding", "nearest"]));
}

// ---------------------------------------------------------------------------------------------------------------
// pytorch_model.bin
// ---------------------------------------------------------------------------------------------------------------

/// A view record: `shape` with `strides` at `offset` into a storage of `numel` F32 elements under key `key`.
fn view(key: &str, numel: u64, offset: u64, shape: &[u64], strides: &[u64]) -> TensorRecord {
    TensorRecord {
        dtype: StorageType::F32,
        storage_key: key.into(),
        storage_numel: numel,
        offset,
        shape: shape.to_vec(),
        strides: strides.to_vec(),
    }
}

/// A ~1.5 KB `pytorch_model.bin` whose word-embedding table claims 10^6 x 10^6 elements of a 4-element storage:
/// the old reader allocated 4 TB for it and aborted. Variants: the storage's declared size lies, the view runs
/// past the storage, an expanded (zero-stride) view.
#[test]
fn convert_refuses_a_bin_tensor_larger_than_its_storage_without_allocating_it() {
    let case = Case::new();
    let classifier = view("1", 16, 0, &[2, 8], &[8, 1]);
    let storages = [("0", f32_bytes(&[0.5; 4])), ("1", f32_bytes(&[0.5; 16]))];
    let storages: Vec<(&str, &[u8])> = storages.iter().map(|(k, v)| (*k, &v[..])).collect();
    let huge = 1_000_000u64;
    for (words, needle) in [
        (
            view("0", huge * huge, 0, &[huge, huge], &[huge, 1]),
            "declares 1000000000000 elements but holds 4",
        ),
        (
            view("0", 4, 0, &[huge, huge], &[huge, 1]),
            "reaches element 999999999999 of storage `0`, which holds 4",
        ),
        (
            view("0", 4, 0, &[huge, huge], &[0, 0]),
            "has 1000000000000 elements, more than the 4 of its storage",
        ),
    ] {
        let pkl = write_state_dict(&[
            (&name(TensorKind::WordEmbeddings), &words),
            (&name(TensorKind::ClassifierWeight), &classifier),
        ]);
        let bytes = write_archive(&pkl, &storages).unwrap();
        assert!(bytes.len() < 2048, "{} bytes", bytes.len());
        case.with_bin(&bytes).fails_with(&format!(
            "pytorch_model.bin: cannot read tensor `{}`: its",
            name(TensorKind::WordEmbeddings)
        ));
        case.fails_with(needle);
    }
}

/// Pickle opcodes, for writing crafted `data.pkl`s by hand.
const PROTO2: [u8; 2] = [0x80, 2];
const EMPTY_LIST: u8 = b']';
const MARK: u8 = b'(';
const LIST: u8 = b'l';
const APPENDS: u8 = b'e';
const APPEND: u8 = b'a';
const NONE: u8 = b'N';
const BINPUT: u8 = b'q';
const BINGET: u8 = b'h';
const STOP: u8 = b'.';

/// A `pytorch_model.bin` whose `data.pkl` is `pkl` (no storages).
fn bin_with_pickle(pkl: &[u8]) -> Vec<u8> {
    write_archive(pkl, &[]).unwrap()
}

/// Memo "bombs": 720 bytes whose every round memoizes a list of two copies of the previous one (2^79 elements
/// described; the old reader copied them until memory ran out), and a flat variant whose every round appends to
/// the memoized list (quadratic copying). Both end in one error line.
#[test]
fn convert_refuses_pickle_memo_bombs_in_bounded_memory() {
    let case = Case::new();
    let mut doubling = vec![PROTO2[0], PROTO2[1], EMPTY_LIST, BINPUT, 0];
    while doubling.len() + 10 <= 720 {
        doubling.extend_from_slice(&[EMPTY_LIST, MARK, BINGET, 0, BINGET, 0, APPENDS, BINPUT, 0]);
    }
    doubling.push(STOP);
    assert!(doubling.len() <= 720);
    case.with_bin(&bin_with_pickle(&doubling))
        .fails_with("pytorch_model.bin is not a readable PyTorch checkpoint");
    case.fails_with("data.pkl nests containers more than 32 deep");

    let mut flat = vec![PROTO2[0], PROTO2[1], EMPTY_LIST, BINPUT, 0];
    for _ in 0..100_000 {
        flat.extend_from_slice(&[BINGET, 0, NONE, APPEND, BINPUT, 0]);
    }
    flat.push(STOP);
    case.with_bin(&bin_with_pickle(&flat)).fails_with(
        "data.pkl creates more objects than a state_dict of 600006 bytes can hold (a pickle bomb?)",
    );
}

/// A 2 MB pickle of 10^6 nested lists (the old reader overflowed its stack), and 10^6 nested marks.
#[test]
fn convert_refuses_deeply_nested_pickles_without_overflowing_the_stack() {
    let case = Case::new();
    let n = 1_000_000;
    let mut lists = PROTO2.to_vec();
    lists.extend(std::iter::repeat_n(EMPTY_LIST, n));
    lists.extend(std::iter::repeat_n(APPEND, n - 1));
    lists.push(STOP);
    case.with_bin(&bin_with_pickle(&lists))
        .fails_with("data.pkl nests containers more than 32 deep");

    let mut marks = PROTO2.to_vec();
    marks.extend(std::iter::repeat_n(MARK, n));
    marks.extend(std::iter::repeat_n(LIST, n));
    marks.push(STOP);
    case.with_bin(&bin_with_pickle(&marks))
        .fails_with("data.pkl nests MARKs more than 32 deep");
}

/// Pickles that would run code, or are not a state_dict, are refused by name; nothing is imported or called.
#[test]
fn convert_refuses_pickles_that_import_or_build_anything_else() {
    let case = Case::new();
    for (pkl, needle) in [
        (
            &b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00idR."[..],
            "data.pkl imports `os.system`, which a torch.save state_dict does not; refusing to load it",
        ),
        (
            b"\x80\x02c__builtin__\neval\n.",
            "imports `__builtin__.eval`",
        ),
        (b"\x80\x02(i__main__\nX\n.", "opcode 0x69 (INST) at byte 3"),
        (b"\x80\x02K\x01.", "data.pkl holds an int, not a state_dict"),
        (b"\x80\x02}(X\x01\x00", "data.pkl ends in the middle of an opcode"),
    ] {
        case.with_bin(&bin_with_pickle(pkl)).fails_with(needle);
    }
}

/// A valid `.bin` (written here) converts under the same memory limit, and gives the safetensors blob.
#[test]
fn convert_reads_a_written_bin_like_the_safetensors_it_came_from() {
    let case = Case::new();
    ok(&case.convert(&["--rounding", "nearest"]));
    let from_safetensors = fs::read(&case.blob).unwrap();
    fs::remove_file(&case.blob).unwrap();
    case.with_bin(&bin_checkpoint(&case.config, |_| {}));
    let out = ok(&case.convert(&["--rounding", "nearest"]));
    assert!(out.contains("pytorch_model.bin"), "{out}");
    assert!(fs::read(&case.blob).unwrap() == from_safetensors);
}

// ---------------------------------------------------------------------------------------------------------------
// Weight values
// ---------------------------------------------------------------------------------------------------------------

fn set(ts: &mut [Tensor], kind: TensorKind, index: usize, value: f32) {
    ts.iter_mut().find(|t| t.name == name(kind)).unwrap().values[index] = value;
}

/// NaN or infinite weights, in either file format, are refused naming the tensor and the first bad element.
#[test]
fn convert_refuses_non_finite_weights_naming_the_tensor() {
    let case = Case::new();
    let safetensors = |kind, index, value| {
        let mut ts = tensors(&case.config, "albert.", Dtype::F32);
        set(&mut ts, kind, index, value);
        write_safetensors(&case.ckpt, &ts);
    };
    safetensors(TensorKind::QueryWeight, 11, f32::NAN);
    case.fails_with(&format!(
        "model.safetensors: tensor `{}` holds 1 non-finite value (the first, NaN, at [1, 3])",
        name(TensorKind::QueryWeight)
    ));
    safetensors(TensorKind::FullLayerLayerNormBias, 5, f32::NEG_INFINITY);
    case.fails_with(&format!(
        "tensor `{}` holds 1 non-finite value (the first, -inf, at [5])",
        name(TensorKind::FullLayerLayerNormBias)
    ));
    // Through F16: 65520 rounds to infinity.
    let mut ts = tensors(&case.config, "albert.", Dtype::F16);
    set(&mut ts, TensorKind::PoolerBias, 0, 65520.0);
    write_safetensors(&case.ckpt, &ts);
    case.fails_with("non-finite value (the first, inf, at [0])");

    fs::remove_file(case.ckpt.join("model.safetensors")).unwrap();
    case.with_bin(&bin_checkpoint(&case.config, |ts| {
        set(ts, TensorKind::ClassifierBias, 1, f32::INFINITY);
        set(ts, TensorKind::ClassifierBias, 0, f32::NAN);
    }));
    case.fails_with(&format!(
        "pytorch_model.bin: tensor `{}` holds 2 non-finite values (the first, NaN, at [0])",
        name(TensorKind::ClassifierBias)
    ));
}

/// A row of subnormal weights: its scale (max / 127) underflowed to 0, and the converter's own check of the
/// blob failed ("internal error"). It quantises to a zero row with scale 1.0, in both roundings.
#[test]
fn convert_quantises_a_subnormal_row_to_a_zero_row() {
    let case = Case::new();
    let mut ts = tensors(&case.config, "albert.", Dtype::F32);
    let h = case.config.hidden_size;
    let query = ts
        .iter_mut()
        .find(|t| t.name == name(TensorKind::QueryWeight))
        .unwrap();
    // Row 2: the smallest subnormals (scale underflows to 0); row 5: just above (scale subnormal, not normal).
    query.values[2 * h..3 * h].fill(f32::from_bits(1));
    query.values[5 * h..6 * h].fill(-f32::MIN_POSITIVE * 3.0);
    write_safetensors(&case.ckpt, &ts);
    for rounding in ["nearest", "gptq"] {
        ok(&case.convert(&["--rounding", rounding]));
        let bytes = AlignedBlob::read(&case.blob).unwrap();
        let model = albert_edge::Model::from_bytes(bytes.bytes()).unwrap();
        let MatrixData::I8 { values, scales } = model.weights().layer.query_weight.data else {
            panic!("int8 blob has an f32 query matrix");
        };
        for row in [2, 5] {
            assert_eq!(scales[row], 1.0, "{rounding}: row {row}");
            assert!(values[row * h..(row + 1) * h].iter().all(|&q| q == 0));
        }
        assert!(scales.iter().all(|s| s.is_normal()), "{scales:?}");
        fs::remove_file(&case.blob).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The blob reader's side of the same check
// ---------------------------------------------------------------------------------------------------------------

/// A blob whose f32 data (a bias, a LayerNorm vector, an f32 matrix) holds NaN or an infinity is refused by
/// `Model::from_bytes` with the tensor named, whatever wrote it (the CRC is correct here); `inspect` says so in
/// one line.
#[test]
fn blob_reader_refuses_non_finite_f32_tensors() {
    use albert_edge::format::AlignedBlob;
    use albert_edge::{Error, Model};
    use albert_edge_cli::blob::{write_blob, Payload};
    use albert_edge_cli::synthetic::random_model;

    let c = AlbertConfig {
        vocab_size: 64,
        ..tiny_config()
    };
    for (int8, kind, value) in [
        (true, TensorKind::FfnBias, f32::NAN),
        (true, TensorKind::EmbeddingsLayerNormWeight, f32::INFINITY),
        (false, TensorKind::WordEmbeddings, f32::NEG_INFINITY),
        (false, TensorKind::ClassifierWeight, -f32::NAN),
    ] {
        let mut contents = random_model(&c, 5, int8);
        assert!(
            Model::from_bytes(AlignedBlob::new(&write_blob(&contents).unwrap()).bytes()).is_ok()
        );
        match &mut contents
            .tensors
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .unwrap()
            .1
        {
            Payload::F32(v) => *v.last_mut().unwrap() = value,
            Payload::I8 { .. } => panic!("{kind:?} is int8"),
        }
        let bytes = write_blob(&contents).unwrap();
        assert_eq!(
            Model::from_bytes(AlignedBlob::new(&bytes).bytes()).err(),
            Some(Error::NonFiniteTensor(kind.name())),
            "{kind:?}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("nan.blob");
        fs::write(&blob, &bytes).unwrap();
        let out = albert_edge(["inspect".as_ref(), blob.as_os_str()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "tensor `{}` holds a NaN or infinite value",
                kind.name()
            )),
            "{stderr}"
        );
    }
}
