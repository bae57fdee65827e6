//! `albert-edge classify "text"` with no blob: the built-in model (`models/sst2-albert-pi.blob`, embedded when it
//! existed at build time; `build.rs` sets `cfg(albert_edge_builtin_model)`).

mod convert_support;

use convert_support::*;
use serde_json::Value;

fn label_of(sentence: &str) -> String {
    let out = albert_edge(["classify", sentence, "--json"]);
    let v: Value = serde_json::from_str(&ok(&out)).expect("stdout is one JSON object");
    v["label"].as_str().unwrap().to_string()
}

#[test]
fn classify_with_the_builtin_model_gets_obvious_sentences_right() {
    if !cfg!(albert_edge_builtin_model) {
        eprintln!(
            "NOTE: skipped the built-in model's accuracy check: models/sst2-albert-pi.blob was missing when this \
             was built (it runs once the file exists); checking the error message instead"
        );
        let out = albert_edge(["classify", "a gorgeous, witty, seductive movie"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("this build has no built-in model")
                && stderr.contains("pass a blob path"),
            "{stderr}"
        );
        return;
    }
    assert_eq!(label_of("a gorgeous, witty, seductive movie"), "positive");
    assert_eq!(label_of("a dull, lifeless and tedious mess"), "negative");
    let text = ok(&albert_edge([
        "classify",
        "a gorgeous, witty, seductive movie",
    ]));
    assert!(text.starts_with("label: positive"), "{text}");
    assert!(
        text.trim_end().ends_with("ms)"),
        "prints the time taken: {text}"
    );
}

#[test]
fn classify_first_positional_is_the_blob_when_it_is_a_file() {
    let blob = converted_fixture("tiny-gelu-new-2", "int8");
    let out = albert_edge([
        "classify".as_ref(),
        blob.as_os_str(),
        "a charming journey".as_ref(),
    ]);
    let text = ok(&out);
    assert!(text.starts_with("label: "), "{text}");
    // a blob path without text is an error that says what is missing, not "no built-in model"
    let out = albert_edge(["classify".as_ref(), blob.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the TEXT"));
}
