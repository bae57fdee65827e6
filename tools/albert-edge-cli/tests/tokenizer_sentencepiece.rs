//! The unigram encoder alone against SentencePiece 0.2.1 (`sp.encode(text, out_type=str)` then `piece_to_id`) under
//! two small models other than ALBERT's, trained on SST-2 dev and informal text (`tools/fixtures/
//! make_informal_goldens.py`): `sst2-unigram-1k` (nmt_nfkc, user-defined pieces such as `!!`) and
//! `sst2-unigram-identity-2k` (no normalisation rule, no dummy prefix, extra whitespace kept). Ties between
//! equal-scoring segmentations are frequent in both corpora, so these ids pin SentencePiece's tie-breaking.

use std::ops::ControlFlow;
use std::path::PathBuf;

use albert_edge::tokenizer::Tokenizer;
use albert_edge_cli::tokenizer_section::{build_from_file, to_words, SectionOptions};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The section of `tests/data/spiece/<model>.model` as 4-byte aligned words, full or compact.
fn section(model: &str, compact: bool) -> Vec<u32> {
    let options = SectionOptions {
        compact,
        ..SectionOptions::default()
    };
    to_words(&build_from_file(&data(&format!("spiece/{model}.model")), &options).unwrap())
}

/// The texts of the informal corpus, in order.
fn informal_texts() -> Vec<String> {
    read("tokenizer/informal.jsonl")
        .lines()
        .map(|line| {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            case["text"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The sentences of SST-2 dev, in order.
fn sst2_dev_texts() -> Vec<String> {
    read("sst2/dev.tsv")
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once('\t').unwrap().0.to_owned())
        .collect()
}

/// Encodes every text with `Tokenizer::encode_pieces` and compares with the golden ids file (one line of
/// space-separated ids per text), for the full and the compact section of `model`.
fn check(model: &str, texts: &[String], golden: &str) {
    let golden = read(golden);
    let expected: Vec<Vec<u32>> = golden
        .lines()
        .map(|l| {
            l.split(' ')
                .filter(|s| !s.is_empty())
                .map(|id| id.parse().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(expected.len(), texts.len());
    for compact in [false, true] {
        let words = section(model, compact);
        let tok = Tokenizer::from_section(bytemuck::cast_slice(&words)).unwrap();
        let mut mismatches = Vec::new();
        for (i, (text, want)) in texts.iter().zip(&expected).enumerate() {
            let mut ws = vec![0u8; tok.workspace_size(text.len())];
            let mut ids = Vec::new();
            tok.encode_pieces(text, &mut ws, |_, id| {
                ids.push(id);
                ControlFlow::Continue(())
            })
            .unwrap();
            if ids != *want {
                mismatches.push(format!(
                    "line {}: {text:?}\n  got  {ids:?}\n  want {want:?}",
                    i + 1
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{model} (compact: {compact}): {} of {} differ:\n{}",
            mismatches.len(),
            texts.len(),
            mismatches[..mismatches.len().min(8)].join("\n")
        );
    }
}

#[test]
fn sentencepiece_1k_matches_reference_informal_text() {
    let texts = informal_texts();
    check(
        "sst2-unigram-1k",
        &texts,
        "tokenizer/informal.sst2-unigram-1k.ids.txt",
    );
}

#[test]
fn sentencepiece_1k_matches_reference_sst2_dev() {
    let texts = sst2_dev_texts();
    check(
        "sst2-unigram-1k",
        &texts,
        "tokenizer/sst2_dev.sst2-unigram-1k.ids.txt",
    );
}

#[test]
fn sentencepiece_identity_2k_matches_reference_informal_text() {
    let texts = informal_texts();
    check(
        "sst2-unigram-identity-2k",
        &texts,
        "tokenizer/informal.sst2-unigram-identity-2k.ids.txt",
    );
}

#[test]
fn sentencepiece_identity_2k_matches_reference_sst2_dev() {
    let texts = sst2_dev_texts();
    check(
        "sst2-unigram-identity-2k",
        &texts,
        "tokenizer/sst2_dev.sst2-unigram-identity-2k.ids.txt",
    );
}
