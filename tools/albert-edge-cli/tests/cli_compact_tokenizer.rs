//! `albert-edge convert --compact-tokenizer`: a smaller tokenizer section, the same classifications.

mod convert_support;

use std::fs;

use convert_support::*;

#[test]
fn cli_convert_compact_tokenizer_is_smaller_and_classifies_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (full, compact) = (
        dir.path().join("full.blob"),
        dir.path().join("compact.blob"),
    );
    let fixture = fixture("tiny-gelu-new-2");
    ok(&convert(&fixture, &full, &["--no-calibrate"]));
    ok(&convert(
        &fixture,
        &compact,
        &["--no-calibrate", "--compact-tokenizer"],
    ));
    let (full_len, compact_len) = (
        fs::metadata(&full).unwrap().len(),
        fs::metadata(&compact).unwrap().len(),
    );
    // the 30k vocabulary's NORMAL piece strings and offsets: about 372 KB
    assert!(
        compact_len + 350_000 < full_len,
        "{compact_len} vs {full_len}"
    );
    for text in [
        "a charming and often affecting journey .",
        "unflinchingly bleak and desperate",
    ] {
        let run = |blob: &std::path::Path| {
            ok(&albert_edge([
                "classify".as_ref(),
                blob.as_os_str(),
                text.as_ref(),
                "--json".as_ref(),
            ]))
        };
        assert_eq!(run(&full), run(&compact), "{text}");
    }
}
