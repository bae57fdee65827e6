//! Builds the blob's tokenizer section from `spiece.model` (layout: `albert_edge::tokenizer`'s module docs).
//!
//! Everything expensive happens here, offline: the piece trie, ALBERT's per-character preprocessing table
//! (lowercase, NFKD, drop combining marks; `unicode-normalization` and `std`'s full lowercase mappings), the
//! digit-comma re-encodings and the workspace expansion bound. The last two run the core tokenizer itself on a
//! first draft of the section, so they are exactly what the device computes.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

use albert_edge::tokenizer::section::{self, header, table};
use albert_edge::tokenizer::Tokenizer;
use anyhow::{bail, ensure, Context, Result};
use unicode_normalization::char::{canonical_combining_class, decompose_compatible};

use crate::spiece::{ModelProto, ModelType, PieceType};

/// Hugging Face `AlbertTokenizer` options that are not in `spiece.model`. `Default` is ALBERT's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionOptions {
    /// `do_lower_case` (default true).
    pub do_lower_case: bool,
    /// `keep_accents` (default false: NFKD and drop combining marks).
    pub keep_accents: bool,
    /// `remove_space` (default true: strip and collapse whitespace).
    pub remove_space: bool,
    /// Match literal `[CLS]`, `[SEP]`, `<unk>`, `<pad>`, `[MASK]` in the text (`split_special_tokens=False`,
    /// default true).
    pub match_special_tokens: bool,
    /// Leave out the strings of the NORMAL pieces (`FLAG_COMPACT`, about 30% of the section for ALBERT's
    /// 30k vocabulary): encoding is identical, `Tokenizer::piece` answers only for special pieces (default false).
    pub compact: bool,
}

impl Default for SectionOptions {
    fn default() -> Self {
        SectionOptions {
            do_lower_case: true,
            keep_accents: false,
            remove_space: true,
            match_special_tokens: true,
            compact: false,
        }
    }
}

/// Builds the section for the model in `path`.
pub fn build_from_file(path: &Path, options: &SectionOptions) -> Result<Vec<u8>> {
    let model = ModelProto::read(path)?;
    build(&model, options)
        .with_context(|| format!("cannot build the tokenizer section from {}", path.display()))
}

/// Builds the section for `model`.
pub fn build(model: &ModelProto, options: &SectionOptions) -> Result<Vec<u8>> {
    let draft = Draft::new(model, options)?;
    // First pass: everything but the tables that need a working tokenizer.
    let first = to_words(&draft.serialize(&[], &[], 1024));
    let tokenizer = Tokenizer::from_section(bytemuck::cast_slice(&first))
        .context("draft section does not validate")?;
    check_final_sigma(&tokenizer)?;
    let (digit_comma, digit_comma_ids) = digit_comma_tables(&draft, &tokenizer)?;
    let expansion = max_expansion(&tokenizer);
    let mut draft = draft;
    for &piece in digit_comma.iter().step_by(3) {
        draft.types[piece as usize] |= section::PIECE_DIGIT_COMMA;
    }
    if options.compact {
        if draft.flags & section::FLAG_ESCAPE_WHITESPACES == 0 {
            bail!("a compact tokenizer section needs a model with escape_whitespaces; drop --compact-tokenizer");
        }
        draft.flags |= section::FLAG_COMPACT;
    }
    Ok(draft.serialize(&digit_comma, &digit_comma_ids, expansion))
}

/// Copies a section into `u32` words, i.e. 4-byte aligned memory, as [`Tokenizer::from_section`] needs.
pub fn to_words(section: &[u8]) -> Vec<u32> {
    section
        .chunks(4)
        .map(|c| c.iter().rev().fold(0u32, |w, &b| (w << 8) | u32::from(b)))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The model's tables
// ---------------------------------------------------------------------------------------------------------------

struct Draft {
    flags: u32,
    pieces: Vec<String>,
    scores: Vec<f32>,
    types: Vec<u8>,
    ids: [u32; 5], // unk, pad, cls, sep, mask
    unk_score: f32,
    max_score: f32,
    trie: Vec<u8>,
    charsmap: Vec<u8>,
    preprocess: Vec<u8>,
    special: Vec<u32>,
}

impl Draft {
    fn new(model: &ModelProto, options: &SectionOptions) -> Result<Self> {
        let trainer = model.trainer();
        let normalizer = model.normalizer();
        ensure!(
            trainer.model_type() == ModelType::Unigram,
            "only unigram SentencePiece models are supported"
        );
        ensure!(
            !trainer.treat_whitespace_as_suffix(),
            "treat_whitespace_as_suffix models are not supported"
        );
        ensure!(
            !trainer.byte_fallback(),
            "byte_fallback models are not supported"
        );
        ensure!(!model.pieces.is_empty(), "the model has no pieces");
        ensure!(
            model.pieces.len() < section::MAX_PIECES,
            "more than 2^24 pieces"
        );

        let pieces: Vec<String> = model.pieces.iter().map(|p| p.piece().to_owned()).collect();
        let types: Vec<u8> = model.pieces.iter().map(|p| p.r#type() as u8).collect();
        let scores: Vec<f32> = model.pieces.iter().map(|p| p.score()).collect();
        let mut by_piece = HashMap::new();
        for (id, piece) in pieces.iter().enumerate() {
            ensure!(
                !piece.is_empty() && !piece.contains('\0'),
                "piece {id} is empty or contains NUL"
            );
            ensure!(
                piece.len() <= section::MAX_PIECE_BYTES,
                "piece {id} is longer than 255 bytes"
            );
            if let Some(other) = by_piece.insert(piece.as_str(), id as u32) {
                bail!("pieces {other} and {id} are both {piece:?}");
            }
        }
        let find = |name: &str| {
            by_piece
                .get(name)
                .copied()
                .with_context(|| format!("the vocabulary has no {name} piece; is it ALBERT's?"))
        };
        let unknown: Vec<usize> = (0..types.len())
            .filter(|&i| types[i] == PieceType::Unknown as u8)
            .collect();
        ensure!(
            unknown.len() == 1,
            "the model must have exactly one UNKNOWN piece, has {}",
            unknown.len()
        );
        let unk = unknown[0] as u32;
        let pad = match trainer.pad_id() {
            id if id >= 0 && (id as usize) < pieces.len() => id as u32,
            _ => find("<pad>")?,
        };
        let ids = [unk, pad, find("[CLS]")?, find("[SEP]")?, find("[MASK]")?];

        // SentencePiece's Model::Model(): min_score_ from FLT_MAX, max_score_ from FLT_MIN, over NORMAL pieces.
        let normal = (0..scores.len())
            .filter(|&i| types[i] == PieceType::Normal as u8)
            .map(|i| scores[i]);
        let min_score = normal.clone().fold(f32::MAX, f32::min);
        let max_score = normal.fold(f32::MIN_POSITIVE, f32::max);

        let mut keys: Vec<(&[u8], u32)> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_bytes(), i as u32))
            .collect();
        keys.sort();
        let trie = yada::builder::DoubleArrayBuilder::build(&keys)
            .context("cannot build the piece trie")?;

        // Hugging Face's added tokens of AlbertTokenizer; [MASK] is AddedToken(lstrip=True).
        let mut special = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            if !special.chunks(2).any(|e: &[u32]| e[0] == id) {
                special.extend([id, if i == 4 { section::SPECIAL_LSTRIP } else { 0 }]);
            }
        }

        let mut flags = 0;
        for (on, flag) in [
            (
                normalizer.add_dummy_prefix(),
                section::FLAG_ADD_DUMMY_PREFIX,
            ),
            (
                normalizer.remove_extra_whitespaces(),
                section::FLAG_REMOVE_EXTRA_WHITESPACES,
            ),
            (
                normalizer.escape_whitespaces(),
                section::FLAG_ESCAPE_WHITESPACES,
            ),
            (options.do_lower_case, section::FLAG_DO_LOWER_CASE),
            (options.keep_accents, section::FLAG_KEEP_ACCENTS),
            (options.remove_space, section::FLAG_REMOVE_SPACE),
            (
                options.match_special_tokens,
                section::FLAG_MATCH_SPECIAL_TOKENS,
            ),
        ] {
            if on {
                flags |= flag;
            }
        }

        Ok(Draft {
            flags,
            pieces,
            scores,
            types,
            ids,
            unk_score: min_score - 10.0,
            max_score,
            trie,
            charsmap: normalizer.precompiled_charsmap().to_vec(),
            preprocess: preprocess_map(options)?,
            special,
        })
    }

    fn serialize(
        &self,
        digit_comma: &[u32],
        digit_comma_ids: &[u32],
        max_expansion: u32,
    ) -> Vec<u8> {
        let compact = self.flags & section::FLAG_COMPACT != 0;
        let mut offsets = if compact { vec![] } else { vec![0u32] };
        let mut strings = Vec::new();
        for (id, p) in self.pieces.iter().enumerate() {
            if compact {
                // (id, end) pairs of the non-NORMAL pieces only.
                if self.types[id] & section::PIECE_TYPE_MASK == section::PIECE_NORMAL {
                    continue;
                }
                offsets.push(id as u32);
            }
            strings.extend_from_slice(p.as_bytes());
            offsets.push(strings.len() as u32);
        }
        let le = |words: &[u32]| {
            words
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let mut tables: [Vec<u8>; section::NUM_TABLES] = Default::default();
        tables[table::PIECE_OFFSETS] = le(&offsets);
        tables[table::PIECE_STRINGS] = strings;
        tables[table::SCORES] = self.scores.iter().flat_map(|s| s.to_le_bytes()).collect();
        tables[table::PIECE_TYPES] = self.types.clone();
        tables[table::PIECE_TRIE] = self.trie.clone();
        tables[table::CHARSMAP] = self.charsmap.clone();
        tables[table::PREPROCESS_MAP] = self.preprocess.clone();
        tables[table::DIGIT_COMMA] = le(digit_comma);
        tables[table::DIGIT_COMMA_IDS] = le(digit_comma_ids);
        tables[table::SPECIAL_TOKENS] = le(&self.special);

        let mut out = vec![0u8; section::TABLES_START];
        out[..4].copy_from_slice(&section::MAGIC);
        let mut put = |at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put(header::VERSION, section::VERSION);
        put(header::FLAGS, self.flags);
        put(header::NUM_PIECES, self.pieces.len() as u32);
        for (at, id) in [
            header::UNK_ID,
            header::PAD_ID,
            header::CLS_ID,
            header::SEP_ID,
            header::MASK_ID,
        ]
        .iter()
        .zip(self.ids)
        {
            put(*at, id);
        }
        put(header::UNK_SCORE, self.unk_score.to_bits());
        put(header::MAX_SCORE, self.max_score.to_bits());
        put(header::MAX_EXPANSION, max_expansion);
        for (i, t) in tables.iter().enumerate() {
            let offset = out.len();
            out[section::HEADER_LEN + 8 * i..][..4].copy_from_slice(&(offset as u32).to_le_bytes());
            out[section::HEADER_LEN + 8 * i + 4..][..4]
                .copy_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        out.resize(out.len().next_multiple_of(16), 0);
        out
    }
}

// ---------------------------------------------------------------------------------------------------------------
// ALBERT's preprocess_text, per character
// ---------------------------------------------------------------------------------------------------------------

/// What Hugging Face does to one character `c` that is not whitespace or a quote: `tokenize()` lowercases it
/// (with `do_lower_case`), `preprocess_text` takes NFKD, drops combining marks (`unicodedata.combining`, the
/// canonical combining class) and lowercases again. Canonical reordering cannot matter: it only moves marks, which
/// are all dropped.
pub fn albert_preprocess_char(c: char, options: &SectionOptions) -> String {
    let lower = |s: &str| -> String {
        if options.do_lower_case {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.to_owned()
        }
    };
    let mut s = lower(c.encode_utf8(&mut [0; 4]));
    if !options.keep_accents {
        let mut d = String::new();
        for ch in s.chars() {
            decompose_compatible(ch, |x| {
                if canonical_combining_class(x) == 0 {
                    d.push(x)
                }
            });
        }
        s = d;
    }
    lower(&s)
}

/// The preprocessing table in the charsmap format: every non-ASCII character (Hangul syllables excepted: the
/// device decomposes them) that the preprocessing changes.
fn preprocess_map(options: &SectionOptions) -> Result<Vec<u8>> {
    let mut keys: Vec<(Vec<u8>, u32)> = Vec::new();
    let mut strings: Vec<u8> = Vec::new();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for c in (0x80..=0x10FFFFu32).filter_map(char::from_u32) {
        if !options.keep_accents && ('\u{AC00}'..='\u{D7A3}').contains(&c) {
            continue;
        }
        let out = albert_preprocess_char(c, options);
        if out == c.to_string() {
            continue;
        }
        let value = *seen.entry(out.clone()).or_insert_with(|| {
            let at = strings.len() as u32;
            strings.extend_from_slice(out.as_bytes());
            strings.push(0);
            at
        });
        keys.push((c.to_string().into_bytes(), value));
    }
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let trie = yada::builder::DoubleArrayBuilder::build(&keys)
        .context("cannot build the preprocessing trie")?;
    let mut blob = (trie.len() as u32).to_le_bytes().to_vec();
    blob.extend_from_slice(&trie);
    blob.extend_from_slice(&strings);
    Ok(blob)
}

/// Python lowercases Σ to ς at the end of a word (Final_Sigma); the device always gives σ. That is exact as long
/// as the model cannot tell σ from ς: neither is in any piece and the charsmap leaves both alone.
fn check_final_sigma(tokenizer: &Tokenizer) -> Result<()> {
    for sigma in ["σ", "ς"] {
        let mut out = [0u8; 16];
        let n = tokenizer.normalize(sigma.as_bytes(), &mut out)?;
        let in_pieces = (0..tokenizer.vocab_size() as u32)
            .any(|id| tokenizer.piece(id).is_some_and(|p| p.contains(sigma)));
        ensure!(
            !in_pieces && out[..n].ends_with(sigma.as_bytes()),
            "the vocabulary distinguishes σ from ς; Python's final-sigma lowercasing is not implemented"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Offline passes that run the core tokenizer
// ---------------------------------------------------------------------------------------------------------------

/// Python's `str.isdigit()` for the characters this can decide: ASCII digits yes, non-numeric no.
fn is_python_digit(c: char) -> Option<bool> {
    if c.is_ascii_digit() {
        Some(true)
    } else if c.is_numeric() {
        None
    } else {
        Some(false)
    }
}

/// `AlbertTokenizer._tokenize`'s digit-comma rule for every piece it can apply to, as `(piece, start, len)`
/// triples into an id list.
fn digit_comma_tables(draft: &Draft, tokenizer: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>)> {
    let mut index = Vec::new();
    let mut ids = Vec::new();
    let mut ws = vec![0u8; 1 << 16];
    let comma = tokenizer.piece_to_id(",").unwrap_or(tokenizer.unk_id());
    for (id, piece) in draft.pieces.iter().enumerate() {
        let kind = draft.types[id];
        if kind != PieceType::Normal as u8 && kind != PieceType::UserDefined as u8 {
            continue;
        }
        let chars: Vec<char> = piece.chars().collect();
        if chars.len() < 2 || chars[chars.len() - 1] != ',' {
            continue;
        }
        match is_python_digit(chars[chars.len() - 2]) {
            Some(true) => {}
            Some(false) => continue,
            None => bail!("piece {piece:?}: cannot tell whether Python's isdigit() holds for its character before ','"),
        }
        // cur_pieces = EncodeAsPieces(piece[:-1].replace("▁", ""))
        let text: String = chars[..chars.len() - 1]
            .iter()
            .filter(|&&c| c != '\u{2581}')
            .collect();
        let mut cur: Vec<(String, u32)> = Vec::new();
        tokenizer.encode_pieces(&text, &mut ws, |p, id| {
            cur.push((p.to_owned(), id));
            ControlFlow::Continue(())
        })?;
        ensure!(!cur.is_empty(), "piece {piece:?} re-encodes to nothing");
        if !piece.starts_with('\u{2581}') && cur[0].0.starts_with('\u{2581}') {
            if cur[0].0 == "\u{2581}" {
                cur.remove(0);
            } else {
                let stripped = cur[0].0['\u{2581}'.len_utf8()..].to_owned();
                let id = tokenizer
                    .piece_to_id(&stripped)
                    .unwrap_or(tokenizer.unk_id());
                cur[0] = (stripped, id);
            }
        }
        index.extend([id as u32, ids.len() as u32, cur.len() as u32 + 1]);
        ids.extend(cur.iter().map(|(_, id)| *id));
        ids.push(comma);
    }
    Ok((index, ids))
}

/// The most normalised bytes any single character turns into, per input byte (at least 3: a space becomes
/// U+2581). Sizes [`Tokenizer::workspace_size`].
fn max_expansion(tokenizer: &Tokenizer) -> u32 {
    let mut worst = 3;
    let mut out = [0u8; 1024];
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        let mut buf = [0u8; 4];
        let s = c.encode_utf8(&mut buf);
        // "a" + c: the dummy prefix and "a" are not c's doing.
        let text = [b"a", s.as_bytes()].concat();
        let n = tokenizer
            .normalize(&text, &mut out)
            .unwrap_or(out.len())
            .saturating_sub(4);
        worst = worst.max(n.div_ceil(s.len()));
    }
    worst as u32
}
