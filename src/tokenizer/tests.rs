//! Unit tests on a hand-made section: a 16-piece vocabulary, a tiny charsmap and preprocessing map, built by a
//! naive double-array builder (one 256-unit block per node). The full model is tested against the reference in
//! the CLI's `tokenizer_golden` tests.

extern crate std;

use std::vec;
use std::vec::Vec;

use super::section::*;
use super::Tokenizer;
use crate::Error;

/// A darts-clone array where node `n`'s children live in their own block `base..base + 256`.
fn build_trie(keys: &[(&[u8], u32)]) -> Vec<u32> {
    fn insert(units: &mut Vec<u32>, node: usize, keys: &[(&[u8], u32)], depth: usize) {
        let base = units.len();
        units.resize(base + 256, 0);
        units[node] |= ((base ^ node) as u32) << 10;
        let mut i = 0;
        while i < keys.len() {
            if keys[i].0.len() == depth {
                units[node] |= 1 << 8;
                units[base] = 0x8000_0000 | keys[i].1;
                i += 1;
                continue;
            }
            let b = keys[i].0[depth];
            let j = i + keys[i..]
                .iter()
                .take_while(|k| k.0.len() > depth && k.0[depth] == b)
                .count();
            units[base + usize::from(b)] = u32::from(b);
            insert(units, base + usize::from(b), &keys[i..j], depth + 1);
            i = j;
        }
    }
    let mut keys = keys.to_vec();
    keys.sort();
    let mut units = vec![0u32; 256];
    insert(&mut units, 0, &keys, 0);
    units
}

/// A charsmap-format blob mapping each key to its replacement.
fn charsmap(rules: &[(&str, &str)]) -> Vec<u8> {
    let mut strings = Vec::new();
    let mut keys = Vec::new();
    for (from, to) in rules {
        keys.push((from.as_bytes(), strings.len() as u32));
        strings.extend_from_slice(to.as_bytes());
        strings.push(0);
    }
    let trie = build_trie(&keys);
    let mut blob = ((trie.len() * 4) as u32).to_le_bytes().to_vec();
    blob.extend(trie.iter().flat_map(|u| u.to_le_bytes()));
    blob.extend(strings);
    blob
}

const PIECES: [(&str, u8, f32); 16] = [
    ("<pad>", PIECE_CONTROL, 0.0),
    ("<unk>", PIECE_UNKNOWN, 0.0),
    ("[CLS]", PIECE_CONTROL, 0.0),
    ("[SEP]", PIECE_CONTROL, 0.0),
    ("[MASK]", PIECE_CONTROL, 0.0),
    ("\u{2581}", PIECE_NORMAL, -2.0),
    ("a", PIECE_NORMAL, -3.0),
    ("b", PIECE_NORMAL, -3.0),
    ("\u{2581}a", PIECE_NORMAL, -2.5),
    ("ab", PIECE_NORMAL, -2.5),
    ("\u{2581}ab", PIECE_NORMAL, -1.0),
    (",", PIECE_NORMAL, -2.0),
    ("1", PIECE_NORMAL, -3.0),
    ("\u{2581}1", PIECE_NORMAL, -2.0),
    ("\u{2581}1,", PIECE_NORMAL | PIECE_DIGIT_COMMA, -1.0),
    ("(", PIECE_USER_DEFINED, 0.0),
];

/// The section as 4-byte aligned words.
fn section_words() -> Vec<u32> {
    section_words_of(&PIECES, -13.0, &[14, 0, 2], &[13, 11])
}

/// A section of `pieces` (the first five being `<pad> <unk> [CLS] [SEP] [MASK]`) as 4-byte aligned words.
fn section_words_of(
    pieces: &[(&str, u8, f32)],
    unk_score: f32,
    digit_comma: &[u32],
    digit_comma_ids: &[u32],
) -> Vec<u32> {
    let le = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut offsets = vec![0u32];
    let mut strings = Vec::new();
    for (p, ..) in pieces {
        strings.extend_from_slice(p.as_bytes());
        offsets.push(strings.len() as u32);
    }
    let keys: Vec<(&[u8], u32)> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.0.as_bytes(), i as u32))
        .collect();
    let mut tables: [Vec<u8>; NUM_TABLES] = Default::default();
    tables[table::PIECE_OFFSETS] = le(&offsets);
    tables[table::PIECE_STRINGS] = strings;
    tables[table::SCORES] = pieces.iter().flat_map(|p| p.2.to_le_bytes()).collect();
    tables[table::PIECE_TYPES] = pieces.iter().map(|p| p.1).collect();
    tables[table::PIECE_TRIE] = le(&build_trie(&keys));
    tables[table::CHARSMAP] = charsmap(&[("\u{ff41}", "a"), ("\t", " "), ("\u{200b}", "")]);
    tables[table::PREPROCESS_MAP] = charsmap(&[("\u{c9}", "e"), ("\u{301}", "")]);
    tables[table::DIGIT_COMMA] = le(digit_comma);
    tables[table::DIGIT_COMMA_IDS] = le(digit_comma_ids);
    tables[table::SPECIAL_TOKENS] = le(&[2, 0, 3, 0, 1, 0, 0, 0, 4, SPECIAL_LSTRIP]);

    let mut out = vec![0u8; TABLES_START];
    out[..4].copy_from_slice(&MAGIC);
    let flags = (1 << 7) - 1 - FLAG_KEEP_ACCENTS;
    let fields = [
        (header::VERSION, VERSION),
        (header::FLAGS, flags),
        (header::NUM_PIECES, pieces.len() as u32),
        (header::UNK_ID, 1),
        (header::PAD_ID, 0),
        (header::CLS_ID, 2),
        (header::SEP_ID, 3),
        (header::MASK_ID, 4),
        (header::UNK_SCORE, unk_score.to_bits()),
        (header::MAX_SCORE, f32::MIN_POSITIVE.to_bits()),
        (header::MAX_EXPANSION, 3),
    ];
    for (at, v) in fields {
        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    for (i, t) in tables.iter().enumerate() {
        let at = HEADER_LEN + 8 * i;
        let offset = out.len() as u32;
        out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(t);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out.chunks(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn ids(tok: &Tokenizer, text: &str) -> Vec<u32> {
    let mut ws = vec![0u8; tok.workspace_size(text.len())];
    let (mut ids, mut types) = (vec![0u32; 64], vec![0u32; 64]);
    let n = tok
        .encode(text, None, 0, &mut ws, &mut ids, &mut types)
        .unwrap();
    ids[1..n - 1].to_vec()
}

#[test]
fn section_parses_and_encodes_reference_cases() {
    let words = section_words();
    let tok = Tokenizer::from_section(bytemuck::cast_slice(&words)).unwrap();
    assert_eq!(tok.vocab_size(), 16);
    assert_eq!(tok.piece(10), Some("\u{2581}ab"));
    assert_eq!(tok.piece_to_id("ab"), Some(9));
    assert_eq!(tok.piece_to_id("abc"), None);
    let cases: &[(&str, &[u32])] = &[
        ("ab", &[10]),
        ("  A  b ", &[8, 5, 7]),
        ("1,", &[13, 11]),               // digit-comma rule
        ("xy", &[5, 1]),                 // unknown run merged
        ("x\u{200b}y", &[5, 1]),         // charsmap deletes U+200B
        ("(a", &[5, 15, 6]),             // user-defined piece
        ("\u{ff41}", &[8]),              // charsmap: fullwidth a
        ("\u{c9}", &[5, 1]),             // preprocessing map: É -> e (unknown)
        ("a\u{301}b", &[10]),            // combining mark dropped
        ("\u{d55c}", &[5, 1]),           // Hangul decomposed, unknown
        ("x [MASK] ab", &[5, 1, 4, 10]), // [MASK] eats the space on its left
        ("<UNK>ab", &[1, 10]),           // lowercases to a special token
        ("", &[]),
        (" \t ", &[]),
    ];
    for &(text, want) in cases {
        assert_eq!(ids(&tok, text), want, "{text:?}");
    }
}

/// SentencePiece's tie-breaking (`EncodeOptimized`): the candidates for each end position arrive in the order of
/// their start, and only a strictly better one replaces the one held, compared in `f64` against the held `f32`
/// path score. With exactly representable scores, equal-scoring paths are decided for the longest last piece;
/// otherwise by the rounding of the path score carried in from the earlier words. Expected ids from
/// sentencepiece 0.2.1 on a model with these pieces.
#[test]
fn viterbi_matches_reference_ties() {
    let pieces = |s: [f32; 6]| -> [(&'static str, u8, f32); 11] {
        [
            ("<pad>", PIECE_CONTROL, 0.0),
            ("<unk>", PIECE_UNKNOWN, 0.0),
            ("[CLS]", PIECE_CONTROL, 0.0),
            ("[SEP]", PIECE_CONTROL, 0.0),
            ("[MASK]", PIECE_CONTROL, 0.0),
            ("\u{2581}", PIECE_NORMAL, s[0]),
            ("x", PIECE_NORMAL, s[1]),
            ("xx", PIECE_NORMAL, s[2]),
            ("xxx", PIECE_NORMAL, s[3]),
            ("xxxx", PIECE_NORMAL, s[4]),
            ("\u{2581}w", PIECE_NORMAL, s[5]),
        ]
    };
    // Every split of a run of x scores the same: the last piece is the longest.
    let exact = pieces([-1.0, -2.0, -4.0, -6.0, -8.0, -0.5]);
    let words = section_words_of(&exact, -18.0, &[], &[]);
    let tok = Tokenizer::from_section(bytemuck::cast_slice(&words)).unwrap();
    let cases: &[(&str, &[u32])] = &[
        ("xxx", &[5, 8]),
        ("xxxx", &[5, 9]),
        ("xxxxx", &[5, 6, 9]),
        ("xxxxxxx", &[5, 8, 9]),
        ("w w w xxxxx", &[10, 10, 10, 5, 6, 9]),
    ];
    for &(text, want) in cases {
        assert_eq!(ids(&tok, text), want, "exact scores: {text:?}");
    }
    // -1.1 * k is not k times the f32 -1.1: the splits differ by an ulp or two, and which wins depends on the
    // path score the run starts from.
    let rounded = pieces([-1.0, -1.1, -2.2, -3.3, -4.4, -0.3]);
    let words = section_words_of(&rounded, -4.4 - 10.0, &[], &[]);
    let tok = Tokenizer::from_section(bytemuck::cast_slice(&words)).unwrap();
    let cases: &[(&str, &[u32])] = &[
        ("xxx", &[5, 6, 6, 6]),
        ("xxxx", &[5, 6, 8]),
        ("xxxxx", &[5, 6, 8, 6]),
        ("xxxxxxx", &[5, 6, 6, 6, 8, 6]),
        ("w xxxxx", &[10, 5, 9, 6]),
        ("w w xxxxx", &[10, 10, 5, 9, 6]),
        ("w w w xxxxx", &[10, 10, 10, 5, 6, 6, 8]),
        ("w w w w xxxxx", &[10, 10, 10, 10, 5, 7, 8]),
        ("w w w xxxx xxxx", &[10, 10, 10, 5, 8, 6, 5, 8, 6]),
    ];
    for &(text, want) in cases {
        assert_eq!(ids(&tok, text), want, "rounded scores: {text:?}");
    }
}

#[test]
fn section_validation_rejects_truncated_sections() {
    let words = section_words();
    let bytes: &[u8] = bytemuck::cast_slice(&words);
    let last_table_end = (0..NUM_TABLES)
        .map(|i| {
            let at = HEADER_LEN + 8 * i;
            let word = |o: usize| {
                u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
            };
            word(at) + word(at + 4)
        })
        .max()
        .unwrap();
    for len in 0..bytes.len() {
        let parsed = Tokenizer::from_section(&bytes[..len]);
        if len < last_table_end {
            assert!(parsed.is_err(), "truncated to {len} bytes");
        }
    }
    assert!(matches!(
        Tokenizer::from_section(&bytes[..10]),
        Err(Error::Truncated { .. })
    ));
}

#[test]
fn section_validation_rejects_or_survives_every_corruption() {
    let words = section_words();
    let clean: &[u8] = bytemuck::cast_slice(&words);
    let mut corrupted = words.clone();
    let mut accepted = 0;
    for at in 0..clean.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            corrupted.copy_from_slice(&words);
            bytemuck::cast_slice_mut::<u32, u8>(&mut corrupted)[at] ^= flip;
            let Ok(tok) = Tokenizer::from_section(bytemuck::cast_slice(&corrupted)) else {
                continue;
            };
            accepted += 1;
            // Whatever was accepted must run without panicking.
            let mut ws = [0u8; 512];
            let (mut ids, mut types) = ([0u32; 32], [0u32; 32]);
            for text in [
                "ab 1, (a x [MASK] \u{ff41}\u{c9}",
                "a\u{301}b\u{d55c}\t<UNK>",
                "",
            ] {
                let _ = tok.encode(text, Some(text), 16, &mut ws, &mut ids, &mut types);
                let _ = tok.encode_bytes(b"\xffab\xc3", None, 0, &mut ws, &mut ids, &mut types);
            }
        }
    }
    // Scores, unused trie units and padding may change without breaking validity; the header, directory, offsets
    // and strings may not: every flip in the first 144 + 68 bytes is caught.
    let trials = 3 * clean.len();
    assert!(
        accepted < trials,
        "{accepted} of {trials} corruptions accepted"
    );
    for at in 0..TABLES_START + 17 * 4 {
        corrupted.copy_from_slice(&words);
        bytemuck::cast_slice_mut::<u32, u8>(&mut corrupted)[at] ^= 0x40;
        // Not structural: flag bits 0..8 (all valid combinations), scores, expansion bound, reserved bytes.
        let structural = at != header::FLAGS && !(header::UNK_SCORE..HEADER_LEN).contains(&at);
        if structural {
            assert!(
                Tokenizer::from_section(bytemuck::cast_slice(&corrupted)).is_err(),
                "flip at {at} accepted"
            );
        }
    }
    // Not 4-byte aligned in memory.
    let mut shifted = vec![0u32; words.len() + 1];
    let shifted: &mut [u8] = bytemuck::cast_slice_mut(&mut shifted);
    shifted[1..=clean.len()].copy_from_slice(clean);
    assert!(Tokenizer::from_section(&shifted[1..=clean.len()]).is_err());
}

#[test]
fn section_validation_rejects_bad_magic_version_and_flags() {
    for (at, value) in [
        (0usize, 0x4b54_4c42u32),
        (header::VERSION, 2),
        (header::FLAGS, 1 << 7),
        (header::UNK_ID, 5),
    ] {
        let mut words = section_words();
        words[at / 4] = value;
        assert!(
            Tokenizer::from_section(bytemuck::cast_slice(&words)).is_err(),
            "field at {at}"
        );
    }
}

#[test]
fn workspace_of_any_size_gives_the_same_ids_or_arena_too_small() {
    let words = section_words();
    let tok = Tokenizer::from_section(bytemuck::cast_slice(&words)).unwrap();
    for text in [
        "ab",
        "abababab",
        "x ab abababababab",
        "1, (ab\u{d55c}\u{d55c}",
        "abab ab",
    ] {
        let want = ids(&tok, text);
        for size in 0..200 {
            let mut ws = vec![0u8; size];
            let (mut out, mut types) = ([0u32; 32], [0u32; 32]);
            match tok.encode(text, None, 0, &mut ws, &mut out, &mut types) {
                Ok(n) => assert_eq!(out[1..n - 1], want[..], "{text:?} with {size} bytes"),
                Err(Error::ArenaTooSmall { needed, got }) => {
                    assert!(
                        needed > size && got == size,
                        "{text:?}: needed {needed}, got {got}"
                    );
                    // The size it names is enough.
                    let mut ws = vec![0u8; needed];
                    assert!(
                        tok.encode(text, None, 0, &mut ws, &mut out, &mut types)
                            .is_ok(),
                        "{text:?}: {needed}"
                    );
                }
                Err(e) => panic!("{text:?} with {size} bytes: {e}"),
            }
        }
    }
}
