//! The on-device tokenizer against the reference (transformers 4.57.6 slow `AlbertTokenizer`): the section is built
//! from `30k-clean.model` by the CLI's writer and read by the core `Tokenizer`.

use std::path::PathBuf;
use std::sync::OnceLock;

use albert_edge::tokenizer::Tokenizer;
use albert_edge::Error;
use albert_edge_cli::tokenizer_section::{build_from_file, to_words, SectionOptions};

fn data(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(path)
}

/// The section, built once per test binary, as 4-byte aligned words.
fn section() -> &'static [u8] {
    static SECTION: OnceLock<Vec<u32>> = OnceLock::new();
    let words = SECTION.get_or_init(|| {
        let bytes =
            build_from_file(&data("spiece/30k-clean.model"), &SectionOptions::default()).unwrap();
        to_words(&bytes)
    });
    bytemuck::cast_slice(words)
}

/// The same section built with `compact: true` (no NORMAL piece strings).
fn compact_section() -> &'static [u8] {
    static SECTION: OnceLock<Vec<u32>> = OnceLock::new();
    let words = SECTION.get_or_init(|| {
        let options = SectionOptions {
            compact: true,
            ..SectionOptions::default()
        };
        to_words(&build_from_file(&data("spiece/30k-clean.model"), &options).unwrap())
    });
    bytemuck::cast_slice(words)
}

fn tokenizer() -> Tokenizer<'static> {
    Tokenizer::from_section(section()).unwrap()
}

/// `input_ids` and `token_type_ids` of `text` (and `pair`) with a workspace sized for the text.
fn encode(tok: &Tokenizer, text: &str, pair: Option<&str>, max_len: usize) -> (Vec<u32>, Vec<u32>) {
    let longest = text.len().max(pair.map_or(0, str::len));
    let mut ws = vec![0u8; tok.workspace_size(longest)];
    let cap = 3 * (text.len() + pair.map_or(0, str::len)) + 8;
    let (mut ids, mut types) = (vec![0u32; cap], vec![0u32; cap]);
    let n = tok
        .encode(text, pair, max_len, &mut ws, &mut ids, &mut types)
        .unwrap();
    ids.truncate(n);
    types.truncate(n);
    (ids, types)
}

#[test]
fn tokenizer_matches_reference_sst2_dev() {
    check_sst2_dev(&tokenizer());
}

#[test]
fn tokenizer_compact_section_matches_reference_sst2_dev() {
    let tok = Tokenizer::from_section(compact_section()).unwrap();
    assert!(tok.is_compact());
    check_sst2_dev(&tok);
}

#[test]
fn tokenizer_compact_section_keeps_only_special_piece_strings() {
    let (full, compact) = (
        tokenizer(),
        Tokenizer::from_section(compact_section()).unwrap(),
    );
    println!(
        "tokenizer section for 30k-clean.model: full {} bytes, compact {} bytes",
        section().len(),
        compact_section().len()
    );
    assert!(compact_section().len() + 300_000 < section().len());
    assert!(!full.is_compact());
    for id in [
        full.unk_id(),
        full.pad_id(),
        full.cls_id(),
        full.sep_id(),
        full.mask_id(),
    ] {
        assert!(compact.piece(id).is_some());
        assert_eq!(compact.piece(id), full.piece(id));
    }
    assert_eq!(full.piece(21), Some("\u{2581}a"));
    assert_eq!(compact.piece(21), None);
    assert_eq!(compact.piece(30_000), None);
    assert_eq!(
        compact.piece_to_id("\u{2581}charming"),
        full.piece_to_id("\u{2581}charming")
    );
}

#[test]
fn tokenizer_compact_section_rejects_a_trie_with_a_repeated_id() {
    let mut words = compact_section().to_vec();
    let trie_at = u32::from_le_bytes(words[64 + 8 * 4..][..4].try_into().unwrap()) as usize;
    let trie_len = u32::from_le_bytes(words[64 + 8 * 4 + 4..][..4].try_into().unwrap()) as usize;
    // Two value units (bit 31) of the piece trie: give the second the first's id.
    let leaves: Vec<usize> = (trie_at..trie_at + trie_len)
        .step_by(4)
        .filter(|&at| words[at + 3] & 0x80 != 0)
        .take(2)
        .collect();
    let first = words[leaves[0]..leaves[0] + 4].to_vec();
    words[leaves[1]..leaves[1] + 4].copy_from_slice(&first);
    let aligned = to_words(&words);
    let err = Tokenizer::from_section(bytemuck::cast_slice(&aligned)).unwrap_err();
    assert!(matches!(err, Error::BadTokenizer(_)), "{err:?}");
}

#[test]
fn tokenizer_compact_flag_and_piece_table_are_checked() {
    let bad = |bytes: &[u8]| {
        let aligned = to_words(bytes);
        match Tokenizer::from_section(bytemuck::cast_slice(&aligned)) {
            Err(Error::BadTokenizer(_)) => {}
            other => panic!("expected BadTokenizer, got {other:?}"),
        }
    };
    let flags_low_byte = 8; // the flags' low byte; FLAG_COMPACT is bit 7
                            // a full section read as compact, and a compact one read as full
    let mut full = section().to_vec();
    full[flags_low_byte] ^= 0x80;
    bad(&full);
    let mut compact = compact_section().to_vec();
    compact[flags_low_byte] ^= 0x80;
    bad(&compact);
    // the compact piece table must list exactly the non-NORMAL pieces: point its first entry at a NORMAL one
    let mut compact = compact_section().to_vec();
    let table0 = u32::from_le_bytes(compact[64..68].try_into().unwrap()) as usize;
    compact[table0..table0 + 4].copy_from_slice(&21u32.to_le_bytes()); // "▁a"
    bad(&compact);
}

fn check_sst2_dev(tok: &Tokenizer) {
    let tsv = std::fs::read_to_string(data("sst2/dev.tsv")).unwrap();
    let golden = std::fs::read_to_string(data("spiece/sst2_dev.albert_ids.txt")).unwrap();
    let sentences: Vec<&str> = tsv
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once('\t').unwrap().0)
        .collect();
    let expected: Vec<Vec<u32>> = golden
        .lines()
        .map(|l| l.split(' ').map(|id| id.parse().unwrap()).collect())
        .collect();
    assert_eq!((sentences.len(), expected.len()), (872, 872));
    let mut mismatches = Vec::new();
    for (i, (sentence, want)) in sentences.iter().zip(&expected).enumerate() {
        let (ids, types) = encode(tok, sentence, None, 0);
        assert!(types.iter().all(|&t| t == 0));
        if ids != *want {
            mismatches.push(format!(
                "line {}: {sentence:?}\n  got  {ids:?}\n  want {want:?}",
                i + 1
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of 872 differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(5)].join("\n")
    );
}

/// Checks a corpus of `{"text", "pair", "max_length", "input_ids", "token_type_ids"}` lines; returns its size.
/// `pair` and `max_length` may be missing (none), and so may `token_type_ids` (all 0).
fn check_corpus(corpus: &str) -> usize {
    let tok = tokenizer();
    let mut mismatches = Vec::new();
    let mut count = 0;
    for (i, line) in corpus
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = case["text"].as_str().unwrap();
        let pair = case["pair"].as_str();
        let max_len = case["max_length"].as_u64().map_or(0, |m| m as usize);
        let ids_of = |key: &str| -> Vec<u32> {
            match case.get(key) {
                Some(ids) => ids
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect(),
                None => vec![0; case["input_ids"].as_array().unwrap().len()],
            }
        };
        let (ids, types) = encode(&tok, text, pair, max_len);
        count += 1;
        if ids != ids_of("input_ids") || types != ids_of("token_type_ids") {
            mismatches.push(format!(
                "line {}: {text:?} / {pair:?} (max_length {max_len})\n  got  {ids:?} {types:?}\n  want {:?} {:?}",
                i + 1,
                ids_of("input_ids"),
                ids_of("token_type_ids")
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {count} differ:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
    count
}

#[test]
fn tokenizer_matches_reference_edge_cases() {
    let corpus = std::fs::read_to_string(data("tokenizer/edge_cases.jsonl")).unwrap();
    assert_eq!(check_corpus(&corpus), 198);
}

/// Informal text (repeated letters and punctuation, emoji, censoring, mixed scripts), where segmentations of
/// equal score are common: SentencePiece's tie-breaking decides many of these ids.
#[test]
fn tokenizer_matches_reference_informal_text() {
    let corpus = std::fs::read_to_string(data("tokenizer/informal.jsonl")).unwrap();
    assert_eq!(check_corpus(&corpus), 2604);
}

/// More corpora in the same format, e.g. generated with the reference tokenizer on random text:
/// `ALBERT_EDGE_TOKENIZER_CORPUS=a.jsonl:b.jsonl cargo test -p albert-edge-cli --test tokenizer_golden`.
#[test]
fn tokenizer_matches_reference_extra_corpora() {
    for path in std::env::var("ALBERT_EDGE_TOKENIZER_CORPUS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
    {
        let corpus = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("{path}: {} cases match", check_corpus(&corpus));
    }
}

#[test]
fn tokenizer_matches_reference_special_tokens_and_truncation() {
    let tok = tokenizer();
    // From transformers 4.57.6 AlbertTokenizer(30k-clean.model).
    let cases: &[(&str, Option<&str>, usize, &[u32])] = &[
        ("hello [MASK] world", None, 0, &[2, 10975, 4, 126, 3]),
        ("hello[MASK]world", None, 0, &[2, 10975, 4, 126, 3]),
        ("x [CLS]y", None, 0, &[2, 993, 2, 13, 93, 3]),
        (
            "[cls] <unk><pad>",
            None,
            0,
            &[2, 636, 5316, 18, 500, 1, 0, 3],
        ),
        (
            "<UNK> <Pad> [mask] x<UN\u{212a}>y",
            None,
            0,
            &[2, 1, 0, 636, 23265, 500, 993, 1, 13, 93, 3],
        ),
        (
            "1,000,000 and 9,9 test 10, a1,",
            None,
            0,
            &[
                2, 137, 11623, 17, 561, 15, 518, 1289, 332, 15, 21, 165, 15, 3,
            ],
        ),
        ("a \u{3f9} b", None, 0, &[2, 21, 13, 1, 334, 3]),
        (
            "\u{ff07}\u{ff07}hi\u{ff07}\u{ff07} ``a'' '''",
            None,
            0,
            &[2, 13, 22, 22, 1822, 22, 22, 13, 7, 58, 7, 13, 7, 22, 3],
        ),
        (
            "\u{130}stanbul \u{fdfa} \u{1c5}",
            None,
            0,
            &[2, 10617, 13, 1, 13, 1, 13, 1, 13, 1, 13, 11064, 3],
        ),
        (
            "hello\u{3000}world\u{a0}x\u{1c}y",
            None,
            0,
            &[2, 10975, 126, 993, 13, 93, 3],
        ),
        ("\0a\0", None, 0, &[2, 13, 1, 58, 1, 3]),
        ("", None, 0, &[2, 3]),
        ("   ", None, 0, &[2, 3]),
        (
            "hello world",
            Some("foo bar baz"),
            6,
            &[2, 10975, 126, 3, 4310, 3],
        ),
        ("a b c d e", None, 2, &[2, 21, 334, 272, 13, 43, 13, 62, 3]),
        ("a b c d e", Some("f g"), 2, &[2, 3, 3]),
    ];
    let mut ws = vec![0u8; tok.workspace_size(64)];
    for &(text, pair, max_len, want) in cases {
        assert_eq!(
            encode(&tok, text, pair, max_len).0,
            want,
            "{text:?} / {pair:?} / {max_len}"
        );
        if pair.is_none() && max_len == 0 {
            let mut ids = [0u32; 64];
            let n = tok.tokenize(text.as_bytes(), &mut ws, &mut ids).unwrap();
            assert_eq!(ids[..n], want[1..want.len() - 1], "tokenize({text:?})");
        }
    }
    // SentencePiece alone (Python: sp.encode(text, out_type=str)): no lowercasing, unknown runs merged.
    let mut pieces = Vec::new();
    tok.encode_pieces(
        "Hello 1,000 \u{2603}\u{2603} x\u{2603}y",
        &mut ws,
        |p, id| {
            pieces.push((p.to_owned(), id));
            std::ops::ControlFlow::Continue(())
        },
    )
    .unwrap();
    let want = [
        "\u{2581}",
        "H",
        "ello",
        "\u{2581}1,000",
        "\u{2581}",
        "\u{2603}\u{2603}",
        "\u{2581}x",
        "\u{2603}",
        "y",
    ];
    assert_eq!(
        pieces.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(pieces[5].1, tok.unk_id());
}

#[test]
fn tokenizer_invalid_utf8_is_read_lossily_and_never_panics() {
    let tok = tokenizer();
    let mut ws = vec![0u8; tok.workspace_size(64)];
    let (mut a, mut at, mut b, mut bt) = ([0u32; 64], [0u32; 64], [0u32; 64], [0u32; 64]);
    for bytes in [
        &b"caf\xc3 \xff\xfe ok \xe2\x82 \xf0\x9f\x98"[..],
        b"\xed\xa0\x80x",
        b"\x80",
        b"a\xc3",
    ] {
        let n = tok
            .encode_bytes(bytes, None, 0, &mut ws, &mut a, &mut at)
            .unwrap();
        let lossy = String::from_utf8_lossy(bytes);
        let m = tok
            .encode(&lossy, None, 0, &mut ws, &mut b, &mut bt)
            .unwrap();
        assert_eq!(a[..n], b[..m], "{bytes:?}");
    }
    // Pseudo-random bytes (an LCG), many lengths and limits: only Ok or typed errors.
    let mut state = 0x2545_f491_u32;
    let mut small_ws = [0u8; 200];
    for len in 0..400 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        let _ = tok.encode_bytes(
            &bytes,
            Some(&bytes[len / 2..]),
            len % 40,
            &mut small_ws,
            &mut a,
            &mut at,
        );
        let _ = tok.encode_bytes(&bytes, None, 0, &mut ws, &mut a[..3], &mut at[..3]);
    }
}

#[test]
fn tokenizer_one_megabyte_input_runs_in_linear_time() {
    let tok = tokenizer();
    let sentence = "it 's a charming and often affecting journey , 1,000 caf\u{e9}s \u{fdfa} ";
    let text: String = sentence.repeat((1 << 20) / sentence.len() + 1);
    let mut ws = vec![0u8; tok.workspace_size(64)];
    let mut ids = vec![0u32; 1 << 20];
    let mut types = vec![0u32; 1 << 20];
    // Untruncated: every token of the megabyte.
    let n = tok
        .encode(&text, None, 0, &mut ws, &mut ids, &mut types)
        .unwrap();
    assert!(n > 200_000, "{n}");
    // Truncated: stops after 512 tokens; the kept ids are the untruncated ones.
    let full = ids[..512].to_vec();
    let m = tok
        .encode(&text, Some(&text), 512, &mut ws, &mut ids, &mut types)
        .unwrap();
    assert_eq!(m, 512);
    assert_eq!(ids[..256], full[..256]);
    // One 1 MB word: linear too, and a small workspace is a typed error naming the size it needs.
    let word = "ab".repeat(1 << 19);
    let needed = match tok.encode(&word, None, 128, &mut ws, &mut ids, &mut types) {
        Err(Error::ArenaTooSmall { needed, got }) => {
            assert!(needed > 1 << 20 && got == ws.len());
            needed
        }
        other => panic!("{other:?}"),
    };
    let mut big = vec![0u8; needed];
    let n = tok
        .encode(&word, None, 128, &mut big, &mut ids, &mut types)
        .unwrap();
    assert_eq!(n, 128);
}

#[test]
fn tokenizer_output_and_workspace_errors_are_typed() {
    let tok = tokenizer();
    let mut ws = vec![0u8; tok.workspace_size(64)];
    let (mut ids, mut types) = ([0u32; 4], [0u32; 4]);
    assert_eq!(
        tok.encode("a b c d e", None, 0, &mut ws, &mut ids, &mut types),
        Err(Error::OutputTooSmall { needed: 9, got: 4 })
    );
    assert_eq!(
        tok.encode("a b c d e", None, 4, &mut ws, &mut ids, &mut types),
        Ok(4)
    );
    assert!(matches!(
        tok.encode("hello", None, 0, &mut [0u8; 8], &mut ids, &mut types),
        Err(Error::ArenaTooSmall { .. })
    ));
}

/// Throughput on SST-2 dev: `cargo test --release -p albert-edge-cli --test tokenizer_golden -- --ignored
/// --nocapture`.
#[test]
#[ignore = "timing; run in release"]
fn tokenizer_throughput_sst2_dev() {
    let tok = tokenizer();
    let tsv = std::fs::read_to_string(data("sst2/dev.tsv")).unwrap();
    let sentences: Vec<&str> = tsv
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once('\t').unwrap().0)
        .collect();
    let mut ws = vec![0u8; tok.workspace_size(512)];
    let (mut ids, mut types) = ([0u32; 512], [0u32; 512]);
    // Wall time and, on Linux, this thread's CPU time (robust against a loaded machine).
    let cpu_ns = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        stat.split_whitespace().next()?.parse().ok()
    };
    let mut tokens = 0;
    let rounds = 50;
    let (start, cpu_start) = (std::time::Instant::now(), cpu_ns());
    for _ in 0..rounds {
        for s in &sentences {
            tokens += tok
                .encode(s, None, 512, &mut ws, &mut ids, &mut types)
                .unwrap();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_ns()
        .zip(cpu_start)
        .map(|(end, start)| (end - start) * 1e-9);
    let n = (rounds * sentences.len()) as f64;
    for (what, secs) in [("wall", Some(wall)), ("cpu", cpu)] {
        let Some(secs) = secs else { continue };
        eprintln!(
            "{what}: {:.0} sentences/s, {:.0} tokens/s, {:.1} us/sentence ({n} sentences, {tokens} tokens)",
            n / secs,
            tokens as f64 / secs,
            1e6 * secs / n,
        );
    }
}
