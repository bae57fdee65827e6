//! `albert-edge eval` on a converted fixture over SST-2 dev sentences, checked against `classify --json`.

mod convert_support;

use convert_support::*;
use serde_json::Value;

fn eval_json(blob: &std::path::Path, limit: usize) -> Value {
    eval_json_with(blob, limit, &[])
}

fn eval_json_with(blob: &std::path::Path, limit: usize, extra: &[&str]) -> Value {
    let tsv = repo_root().join("tests/data/sst2/dev.tsv");
    let limit = limit.to_string();
    let mut args = vec![
        "eval".as_ref(),
        blob.as_os_str(),
        tsv.as_os_str(),
        "--json".as_ref(),
        "--limit".as_ref(),
        limit.as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let out = albert_edge(args);
    serde_json::from_str(&ok(&out)).expect("stdout is one JSON object")
}

/// The first `n` rows of the dev set as (sentence with trailing whitespace removed, label id).
fn dev_rows(n: usize) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(repo_root().join("tests/data/sst2/dev.tsv")).unwrap();
    text.lines()
        .skip(1)
        .take(n)
        .map(|l| {
            let (s, label) = l.rsplit_once('\t').unwrap();
            (s.trim_end().to_string(), label.trim().parse().unwrap())
        })
        .collect()
}

/// Argmax of `classify --json --precision <precision>` on `sentence`.
fn classify_argmax(blob: &std::path::Path, sentence: &str, precision: &str) -> usize {
    let out = albert_edge([
        "classify".as_ref(),
        blob.as_os_str(),
        sentence.as_ref(),
        "--json".as_ref(),
        "--precision".as_ref(),
        precision.as_ref(),
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    let p: Vec<f64> = v["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b })
}

#[test]
fn cli_eval_json_on_fifty_dev_sentences() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let r = eval_json(&blob, 50);
    assert_eq!(r["n"], 50, "{r}");
    for key in ["accuracy", "accuracy_fp32", "agreement"] {
        let v = r[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {r}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        // n = 50: every ratio is a whole number of sentences
        assert!((v * 50.0 - (v * 50.0).round()).abs() < 1e-9, "{key} = {v}");
    }
    let delta = r["mean_abs_logit_delta"].as_f64().unwrap();
    assert!(delta.is_finite() && delta >= 0.0, "{r}");
    assert!(r["sentences_per_second"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn cli_eval_accuracy_matches_classify_row_by_row() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    const N: usize = 6;
    let r = eval_json(&blob, N);
    assert_eq!(r["n"], N);
    let (mut int8, mut fp32, mut agree) = (0, 0, 0);
    for (sentence, label) in dev_rows(N) {
        let (q, f) = (
            classify_argmax(&blob, &sentence, "int8"),
            classify_argmax(&blob, &sentence, "fp32"),
        );
        int8 += usize::from(q == label);
        fp32 += usize::from(f == label);
        agree += usize::from(q == f);
    }
    let ratio = |k: usize| k as f64 / N as f64;
    assert_eq!(r["accuracy"].as_f64().unwrap(), ratio(int8), "{r}");
    assert_eq!(r["accuracy_fp32"].as_f64().unwrap(), ratio(fp32), "{r}");
    assert_eq!(r["agreement"].as_f64().unwrap(), ratio(agree), "{r}");
}

#[test]
fn cli_eval_threads_change_only_the_throughput() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let one = eval_json(&blob, 40);
    let three = eval_json_with(&blob, 40, &["--threads", "3"]);
    assert_eq!(one["threads"], 1, "{one}");
    assert_eq!(three["threads"], 3, "{three}");
    // Same logits bit for bit, so the same accuracies and the same mean logit difference to the last digit.
    for key in [
        "n",
        "accuracy",
        "accuracy_fp32",
        "agreement",
        "mean_abs_logit_delta",
    ] {
        assert_eq!(one[key], three[key], "{key}: {one} vs {three}");
    }
}

#[test]
fn cli_eval_fp32_blob_has_null_int8_fields() {
    let blob = converted_fixture("tiny-gelu-new-2", "fp32");
    let r = eval_json(&blob, 5);
    assert_eq!(r["n"], 5);
    for key in ["accuracy", "agreement", "mean_abs_logit_delta"] {
        assert!(
            r[key].is_null(),
            "{key} should be null for an fp32 blob: {r}"
        );
    }
    assert!((0.0..=1.0).contains(&r["accuracy_fp32"].as_f64().unwrap()));
}

#[test]
fn cli_eval_rejects_a_tsv_without_the_columns() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("bad.tsv");
    std::fs::write(&tsv, "text\tlabel\nfine\t1\n").unwrap();
    let out = albert_edge(["eval".as_ref(), blob.as_os_str(), tsv.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `sentence` column"));
}
