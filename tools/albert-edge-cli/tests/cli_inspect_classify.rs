//! `albert-edge inspect` and `albert-edge classify` on converted fixtures.

mod convert_support;

use std::fs;
use std::path::Path;

use convert_support::*;
use serde_json::Value;

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("stdout is one JSON value")
}

fn ids_arg(v: &Value) -> String {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn cli_inspect_json_sections_add_up_to_the_file_size() {
    for mode in ["int8", "fp32"] {
        let blob = converted_fixture("tiny-gelu-3", mode);
        let r = json(&albert_edge([
            "inspect".as_ref(),
            blob.as_os_str(),
            "--json".as_ref(),
        ]));
        let total = r["total_bytes"].as_u64().unwrap();
        assert_eq!(total, fs::metadata(&blob).unwrap().len());
        let s = &r["sections"];
        let sum: u64 = [
            "header_and_table",
            "labels",
            "tokenizer",
            "weights",
            "scales",
        ]
        .iter()
        .map(|k| s[k].as_u64().unwrap_or_else(|| panic!("no section {k}")))
        .sum();
        assert_eq!(sum, total, "{s}");
        assert_eq!(s["scales"].as_u64().unwrap() > 0, mode == "int8");
        assert_eq!(r["config"]["hidden_act"], "gelu");
        assert_eq!(
            r["labels"],
            serde_json::json!(["negative", "neutral", "positive"])
        );
        let tensors = r["tensors"].as_array().unwrap();
        assert_eq!(tensors.len(), 27);
        let ffn = tensors
            .iter()
            .find(|t| t["kind"] == "layer.ffn.weight")
            .unwrap();
        assert_eq!(ffn["shape"], serde_json::json!([96, 48]));
        assert_eq!(ffn["dtype"], if mode == "int8" { "int8" } else { "f32" });
        let scratch = r["scratch"].as_array().unwrap();
        let seqs: Vec<u64> = scratch
            .iter()
            .map(|row| row["seq_len"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [32, 64, 128], "max_position_embeddings is 128");
        for row in scratch {
            assert!(
                row["int8"].as_u64().unwrap() < row["fp32"].as_u64().unwrap(),
                "{row}"
            );
        }
    }
}

#[test]
fn cli_inspect_text_prints_config_tensors_sections_and_scratch() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let text = ok(&albert_edge(["inspect".as_ref(), blob.as_os_str()]));
    let size = fs::metadata(&blob).unwrap().len().to_string();
    for needle in [
        "hidden_act",
        "gelu_new",
        "positive",
        "layer.attention.query.weight",
        "header + tensor table",
        "scales",
        "scratch arena",
        &size,
    ] {
        assert!(
            text.contains(needle),
            "inspect output lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn cli_classify_ids_json_matches_the_reference_logits_in_fp32() {
    for name in FIXTURES {
        let reference: Value =
            serde_json::from_slice(&fs::read(fixture(name).join("reference.json")).unwrap())
                .unwrap();
        let rows: Vec<&Value> = reference["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["attention_mask"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|m| m == 1)
            })
            .collect();
        assert!(rows.len() >= 3, "{name}: too few unpadded reference rows");
        for mode in ["fp32", "int8"] {
            let blob = converted_fixture(name, mode);
            for row in &rows {
                let (ids, types) = (ids_arg(&row["input_ids"]), ids_arg(&row["token_type_ids"]));
                let args = [
                    "classify",
                    blob.to_str().unwrap(),
                    "--ids",
                    &ids,
                    "--type-ids",
                    &types,
                    "--json",
                ];
                let r = json(&albert_edge(args));
                let (logits, probs) = (floats(&r["logits"]), floats(&r["probabilities"]));
                let want = floats(&row["logits"]);
                assert_eq!(logits.len(), want.len());
                assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
                let best = (0..probs.len()).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
                let labels = if name == "tiny-gelu-3" {
                    &["negative", "neutral", "positive"][..]
                } else {
                    &["negative", "positive"][..]
                };
                assert_eq!(r["label"], labels[best]);
                if mode == "fp32" {
                    for (g, w) in logits.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-3,
                            "{name} {ids}: logits {logits:?} vs reference {want:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn cli_classify_threads_print_the_same_json() {
    let blob = converted_fixture("tiny-gelu-3", "int8");
    for (text, threads) in [
        ("a gorgeous, witty, seductive movie.", "2"),
        ("it is dull.", "5"),
    ] {
        let args = |t: &str| {
            albert_edge([
                "classify",
                blob.to_str().unwrap(),
                text,
                "--json",
                "--threads",
                t,
            ])
        };
        let (one, many) = (ok(&args("1")), ok(&args(threads)));
        assert!(one.contains("\"logits\""), "{one}");
        assert_eq!(one, many, "{text:?}: 1 thread vs {threads}");
    }
}

#[test]
fn cli_classify_text_output_names_every_label() {
    let blob = converted_fixture("tiny-gelu-3", "int8");
    let text = ok(&albert_edge([
        "classify",
        blob.to_str().unwrap(),
        "--ids",
        "2 10975 3",
        "--precision",
        "fp32",
    ]));
    assert!(text.starts_with("label: "), "{text}");
    for l in ["negative", "neutral", "positive", "logit"] {
        assert!(text.contains(l), "{text}");
    }
}

#[test]
fn cli_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let fp32 = converted_fixture("tiny-gelu-new-2", "fp32");
    let fp32 = fp32.to_str().unwrap();
    let not_a_blob = tmp.path().join("config.json");
    fs::copy(fixture("tiny-gelu-new-2").join("config.json"), &not_a_blob).unwrap();
    let no_output = tmp.path().join("never-written");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["classify", fp32, "--ids", "2 3", "--precision", "int8"],
            "--precision int8 needs an int8 blob",
        ),
        (
            vec!["classify", fp32, "--ids", "2 30000 3"],
            "token id 30000 is outside the vocabulary (vocab_size 30000)",
        ),
        (
            vec!["classify", fp32, "--ids", "2 x 3"],
            "--ids: \"x\" is not a non-negative integer",
        ),
        (
            vec!["classify", fp32, "--ids", "2 3", "--type-ids", "0"],
            "--type-ids has 1 values for 2 token ids",
        ),
        (
            vec!["inspect", not_a_blob.to_str().unwrap()],
            "not an albert-edge model blob",
        ),
        (
            vec!["inspect", "no-such-file.blob"],
            "cannot read no-such-file.blob",
        ),
    ];
    for (args, needle) in cases {
        assert_clean_failure(&albert_edge(&args), &no_output, needle);
    }
    // A blob without a tokenizer section (written by the library, as firmware tests do) cannot take text.
    let bare = tmp.path().join("bare.blob");
    let c = albert_edge_cli::synthetic::albert_base_config(2);
    let small = albert_edge::AlbertConfig {
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 8,
        embedding_size: 4,
        vocab_size: 50,
        max_position_embeddings: 8,
        ..c
    };
    let contents = albert_edge_cli::synthetic::random_model(&small, 1, true);
    assert!(contents.tokenizer.is_empty());
    fs::write(&bare, albert_edge_cli::blob::write_blob(&contents).unwrap()).unwrap();
    let out = albert_edge(["classify", bare.to_str().unwrap(), "a sentence"]);
    assert_clean_failure(
        &out,
        &no_output,
        "has no tokenizer section, so it cannot classify text; pass token ids with --ids",
    );
}

/// The first SST-2 dev sentences and their Hugging Face `AlbertTokenizer` ids (`tests/data`).
fn sst2_golden(n: usize) -> Vec<(String, Vec<u32>)> {
    let root = repo_root().join("tests/data");
    let tsv = fs::read_to_string(root.join("sst2/dev.tsv")).unwrap();
    let ids = fs::read_to_string(root.join("spiece/sst2_dev.albert_ids.txt")).unwrap();
    tsv.lines()
        .skip(1)
        .zip(ids.lines())
        .take(n)
        .map(|(row, ids)| {
            let text = row.split('\t').next().unwrap().to_string();
            (
                text,
                ids.split_whitespace().map(|x| x.parse().unwrap()).collect(),
            )
        })
        .collect()
}

fn classify_json(blob: &Path, args: &[&str]) -> Value {
    let mut all = vec!["classify", blob.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    json(&albert_edge(all))
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
}

#[test]
fn cli_classify_text_equals_classify_of_its_golden_ids() {
    let blob = converted_fixture("tiny-gelu-3", "int8");
    for (text, ids) in sst2_golden(4) {
        let by_text = classify_json(&blob, &[&text]);
        let by_ids = classify_json(&blob, &["--ids", &join(&ids)]);
        assert_eq!(by_text, by_ids, "{text:?}");
    }
}

#[test]
fn cli_classify_pair_equals_classify_of_concatenated_ids_with_segment_types() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let golden = sst2_golden(2);
    let ((a, a_ids), (b, b_ids)) = (&golden[0], &golden[1]);
    // [CLS] A [SEP] B [SEP]: A's golden ids already end with [SEP]; B's lose their [CLS].
    let ids: Vec<u32> = a_ids.iter().chain(&b_ids[1..]).copied().collect();
    let types: Vec<u32> = (0..ids.len())
        .map(|i| u32::from(i >= a_ids.len()))
        .collect();
    let by_text = classify_json(&blob, &[a, "--pair", b]);
    let by_ids = classify_json(&blob, &["--ids", &join(&ids), "--type-ids", &join(&types)]);
    assert_eq!(by_text, by_ids);
}
