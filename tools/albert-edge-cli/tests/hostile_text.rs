//! Hostile text (`tests/data/hostile/cases.tsv`, documented in its README): every case through the tokenizer's
//! byte and str APIs, alone and as a pair, and end to end through a converted fixture, with the documented outcome
//! asserted: exact ids, truncation to a length, or a typed error; never a panic. 1 MiB inputs finish with bounded
//! output (the algorithm is linear; no wall-clock assertions here).

mod convert_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use albert_edge::format::AlignedBlob;
use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::tokenizer::Tokenizer;
use albert_edge::{Error, Model};
use albert_edge_cli::tokenizer_section::{build_from_file, to_words, SectionOptions};
use convert_support::{converted_fixture, repo_root};

/// The workspace every case gets: enough for any word of up to ~7 KB of normalised text.
const WS: usize = 64 * 1024;

fn data(path: &str) -> PathBuf {
    repo_root().join("tests/data").join(path)
}

fn tokenizer() -> Tokenizer<'static> {
    static SECTION: OnceLock<Vec<u32>> = OnceLock::new();
    let words = SECTION.get_or_init(|| {
        let bytes =
            build_from_file(&data("spiece/30k-clean.model"), &SectionOptions::default()).unwrap();
        to_words(&bytes)
    });
    Tokenizer::from_section(bytemuck::cast_slice(words)).unwrap()
}

// ---------------------------------------------------------------------------------------------------------------
// The case file
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Expect {
    ids: Option<Vec<u32>>,
    golden: bool,
    lossy: bool,
    max_len: usize,
    len: Option<usize>,
    arena_too_small: bool,
}

#[derive(Debug)]
struct Case {
    name: String,
    text: Vec<u8>,
    pair: Option<Vec<u8>>,
    expect: Expect,
}

/// `"..."` with `\xHH` (a raw byte), `\u{H..}` (a character as UTF-8), `\t`, `\n`, `\r`, `\"` and `\\`.
fn unescape(field: &str) -> Vec<u8> {
    let inner = field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or_else(|| panic!("field {field:?} is not quoted"));
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        match chars.next() {
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            }
            Some('u') => {
                assert_eq!(chars.next(), Some('{'), "{field}");
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap();
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            Some('t') => out.push(b'\t'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some(c @ ('"' | '\\')) => out.push(c as u8),
            other => panic!("bad escape \\{other:?} in {field}"),
        }
    }
    out
}

fn parse_expect(spec: &str) -> Expect {
    let mut e = Expect::default();
    for clause in spec.split(';').map(str::trim) {
        let (word, rest) = clause.split_once(' ').unwrap_or((clause, ""));
        match word {
            "ids" => {
                e.ids = Some(
                    rest.split_whitespace()
                        .map(|v| v.parse().unwrap())
                        .collect(),
                )
            }
            "golden" => e.golden = true,
            "lossy" => e.lossy = true,
            "max" => e.max_len = rest.parse().unwrap(),
            "len" => e.len = Some(rest.parse().unwrap()),
            "error" => {
                assert_eq!(rest, "ArenaTooSmall", "the only error a case can expect");
                e.arena_too_small = true;
            }
            other => panic!("unknown clause {other:?}"),
        }
    }
    e
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(data("hostile/cases.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 5, "{line:?}");
            let repeat: usize = f[1].parse().unwrap();
            let pair = (f[3] != "-").then(|| unescape(f[3]).repeat(repeat));
            Case {
                name: f[0].to_string(),
                text: unescape(f[2]).repeat(repeat),
                pair,
                expect: parse_expect(f[4]),
            }
        })
        .collect()
}

/// `input_ids` of the untruncated entries of `tests/data/tokenizer/edge_cases.jsonl`, by (text, pair).
fn golden() -> HashMap<(String, Option<String>), Vec<u32>> {
    let text = std::fs::read_to_string(data("tokenizer/edge_cases.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["max_length"].is_null())
        .map(|v| {
            let key = (
                v["text"].as_str().unwrap().to_string(),
                v["pair"].as_str().map(str::to_string),
            );
            let ids = v["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (key, ids)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------------------------------------------

type Encoded = Result<(Vec<u32>, Vec<u32>), Error>;

fn cap(text: &[u8], pair: Option<&[u8]>) -> usize {
    3 * (text.len() + pair.map_or(0, <[u8]>::len)) + 8
}

fn encode_bytes(
    t: &Tokenizer,
    text: &[u8],
    pair: Option<&[u8]>,
    max_len: usize,
    ws: usize,
) -> Encoded {
    let mut ws = vec![0u8; ws];
    let n = cap(text, pair);
    let (mut ids, mut types) = (vec![0u32; n], vec![0u32; n]);
    let n = t.encode_bytes(text, pair, max_len, &mut ws, &mut ids, &mut types)?;
    ids.truncate(n);
    types.truncate(n);
    Ok((ids, types))
}

fn encode_str(t: &Tokenizer, text: &str, pair: Option<&str>, max_len: usize, ws: usize) -> Encoded {
    let mut ws = vec![0u8; ws];
    let n = cap(text.as_bytes(), pair.map(str::as_bytes));
    let (mut ids, mut types) = (vec![0u32; n], vec![0u32; n]);
    let n = t.encode(text, pair, max_len, &mut ws, &mut ids, &mut types)?;
    ids.truncate(n);
    types.truncate(n);
    Ok((ids, types))
}

/// The str API on `String::from_utf8_lossy` of the inputs; `(result, inputs were valid UTF-8)`.
fn encode_lossy(
    t: &Tokenizer,
    text: &[u8],
    pair: Option<&[u8]>,
    max_len: usize,
    ws: usize,
) -> (Encoded, bool) {
    let valid =
        std::str::from_utf8(text).is_ok() && pair.is_none_or(|p| std::str::from_utf8(p).is_ok());
    let text = String::from_utf8_lossy(text);
    let pair = pair.map(String::from_utf8_lossy);
    (encode_str(t, &text, pair.as_deref(), max_len, ws), valid)
}

/// Checks one case against its expectations; returns the single encoding (for the pair and end-to-end checks).
fn check_tokenizer(
    t: &Tokenizer,
    case: &Case,
    golden: &HashMap<(String, Option<String>), Vec<u32>>,
) {
    let (text, pair, e) = (&case.text[..], case.pair.as_deref(), &case.expect);
    let name = &case.name;
    let got = encode_bytes(t, text, pair, e.max_len, WS);

    // The str API agrees: on the same text when it is UTF-8, on the lossy text otherwise.
    let (via_str, valid) = encode_lossy(t, text, pair, e.max_len, WS);
    assert_eq!(got, via_str, "{name}: byte API and str API differ");
    assert_eq!(
        !valid, e.lossy,
        "{name}: `lossy` must be given exactly for invalid UTF-8"
    );

    match &got {
        Ok((ids, types)) => {
            assert!(
                !e.arena_too_small,
                "{name}: expected ArenaTooSmall, got {ids:?}"
            );
            assert_eq!(ids[0], t.cls_id(), "{name}");
            assert_eq!(*ids.last().unwrap(), t.sep_id(), "{name}");
            assert!(types.windows(2).all(|w| w[0] <= w[1]), "{name}: {types:?}");
            match &e.ids {
                Some(want) => assert_eq!(ids, want, "{name}: ids"),
                None => assert!(
                    e.len.is_some() || e.golden,
                    "{name}: no expected ids; got ids {ids:?}"
                ),
            }
            if let Some(len) = e.len {
                assert_eq!(ids.len(), len, "{name}: length");
            }
            if e.max_len >= 3 {
                assert!(ids.len() <= e.max_len, "{name}");
            }
        }
        Err(Error::ArenaTooSmall { needed, got: have }) if e.arena_too_small => {
            assert_eq!(*have, WS);
            assert_eq!(
                *needed,
                t.workspace_needed(text, pair),
                "{name}: reported workspace"
            );
            // With the reported workspace it encodes (truncated to keep the output small).
            let retry = encode_bytes(t, text, pair, 128, *needed)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert!(
                retry.0.len() <= 128 && retry.0.last() == Some(&t.sep_id()),
                "{name}"
            );
        }
        Err(err) => panic!("{name}: unexpected {err:?}"),
    }

    // Cross-check against the reference tokenizer's goldens where the corpus has the same input.
    if let (Ok(s), Ok((ids, _))) = (std::str::from_utf8(text), &got) {
        let key = (
            s.to_string(),
            pair.map(|p| String::from_utf8(p.to_vec()).unwrap()),
        );
        match golden.get(&key) {
            Some(want) if e.max_len == 0 => {
                assert_eq!(ids, want, "{name}: differs from edge_cases.jsonl")
            }
            _ => assert!(!e.golden, "{name}: `golden` but not in edge_cases.jsonl"),
        }
    }

    // As a pair with itself (single cases): [CLS] A [SEP] A [SEP], or the same error.
    if pair.is_none() {
        let paired = encode_bytes(t, text, Some(text), e.max_len, WS);
        let (paired_str, _) = encode_lossy(t, text, Some(text), e.max_len, WS);
        assert_eq!(
            paired, paired_str,
            "{name}: pair, byte API and str API differ"
        );
        match (&got, &paired) {
            (Ok((ids, _)), Ok((pids, ptypes))) if e.max_len == 0 => {
                let a = &ids[1..ids.len() - 1];
                let want: Vec<u32> = [&[t.cls_id()], a, &[t.sep_id()], a, &[t.sep_id()]].concat();
                assert_eq!(pids, &want, "{name}: pair");
                assert_eq!(
                    ptypes.iter().filter(|&&k| k == 1).count(),
                    a.len() + 1,
                    "{name}"
                );
            }
            (Ok(_), Ok((pids, _))) => assert!(pids.len() <= e.max_len, "{name}: pair"),
            (Err(Error::ArenaTooSmall { .. }), Err(Error::ArenaTooSmall { .. })) => {}
            (a, b) => panic!("{name}: single {a:?} but pair {b:?}"),
        }
    }
}

#[test]
fn hostile_text_gives_the_documented_outcome_through_both_apis_single_and_pair() {
    let t = tokenizer();
    let golden = golden();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in &cases {
        check_tokenizer(&t, case, &golden);
    }
}

#[test]
fn hostile_text_classifies_end_to_end_or_fails_typed() {
    let blob = std::fs::read(converted_fixture("tiny-gelu-new-2", "int8")).unwrap();
    let blob = AlignedBlob::new(&blob);
    let model = Model::from_bytes(blob.bytes()).unwrap();
    let t = model.tokenizer().unwrap();
    let max = model.config().max_position_embeddings;
    for case in cases() {
        let (text, pair) = (&case.text[..], case.pair.as_deref());
        match encode_bytes(t, text, pair, max, WS) {
            Ok((ids, types)) => {
                assert!(ids.len() <= max);
                for precision in [Precision::Int8, Precision::F32] {
                    let mut arena = vec![0u8; scratch_size(model.config(), ids.len(), precision)];
                    let mut logits = vec![f32::NAN; model.config().num_labels];
                    let inputs = Inputs {
                        input_ids: &ids,
                        token_type_ids: &types,
                        attention_mask: &[],
                    };
                    classify(&model, precision, &inputs, &mut arena, &mut logits)
                        .unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                    assert!(
                        logits.iter().all(|l| l.is_finite()),
                        "{}: {logits:?}",
                        case.name
                    );
                }
            }
            Err(Error::ArenaTooSmall { .. }) => {
                assert!(case.expect.arena_too_small, "{}", case.name)
            }
            Err(e) => panic!("{}: {e:?}", case.name),
        }
    }
}
