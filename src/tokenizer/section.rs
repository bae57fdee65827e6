//! The tokenizer section's byte layout (constants shared with the host-side writer) and its one-time validation.
//! The layout itself is specified in the [module docs](super).

use super::darts::{CharsMap, DoubleArray};
use super::Tokenizer;
use crate::Error;

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 4] = *b"ALTK";
/// Layout version this build reads and writes.
pub const VERSION: u32 = 1;
/// Bytes of the fixed header, before the table directory.
pub const HEADER_LEN: usize = 64;
/// Number of tables in the directory.
pub const NUM_TABLES: usize = 10;
/// Offset of the first table: header plus directory (`NUM_TABLES` x `(u32 offset, u32 len)`).
pub const TABLES_START: usize = HEADER_LEN + NUM_TABLES * 8;

/// Header field offsets (all `u32` / `f32`, little-endian).
pub mod header {
    /// `u32` layout version ([`super::VERSION`]).
    pub const VERSION: usize = 4;
    /// `u32` normaliser flags (`FLAG_*`).
    pub const FLAGS: usize = 8;
    /// `u32` number of pieces (vocabulary size).
    pub const NUM_PIECES: usize = 12;
    /// `u32` id of `<unk>`.
    pub const UNK_ID: usize = 16;
    /// `u32` id of `<pad>`.
    pub const PAD_ID: usize = 20;
    /// `u32` id of `[CLS]`.
    pub const CLS_ID: usize = 24;
    /// `u32` id of `[SEP]`.
    pub const SEP_ID: usize = 28;
    /// `u32` id of `[MASK]`.
    pub const MASK_ID: usize = 32;
    /// `f32` score of an unknown character: lowest NORMAL score minus 10 (SentencePiece's `kUnkPenalty`).
    pub const UNK_SCORE: usize = 36;
    /// `f32` SentencePiece's `max_score_`: the highest NORMAL score, but at least `f32::MIN_POSITIVE`.
    pub const MAX_SCORE: usize = 40;
    /// `u32` worst-case normalised bytes per input byte (sizes the workspace).
    pub const MAX_EXPANSION: usize = 44;
}

/// Table indices in the directory.
pub mod table {
    /// `u32` x (pieces + 1): start of each piece in `PIECE_STRINGS`; the last entry is its length.
    pub const PIECE_OFFSETS: usize = 0;
    /// UTF-8 bytes of all pieces, concatenated in id order.
    pub const PIECE_STRINGS: usize = 1;
    /// `f32` x pieces: SentencePiece scores (log probabilities).
    pub const SCORES: usize = 2;
    /// `u8` x pieces: `PIECE_*` type in bits 0..3, `PIECE_DIGIT_COMMA` flag.
    pub const PIECE_TYPES: usize = 3;
    /// Darts-clone double array (`u32` units) over every piece; value = piece id.
    pub const PIECE_TRIE: usize = 4;
    /// SentencePiece's precompiled charsmap of the model (`nmt_nfkc`), verbatim; empty = identity.
    pub const CHARSMAP: usize = 5;
    /// ALBERT's per-character preprocessing (lowercase, NFKD, drop combining marks) in the charsmap format.
    pub const PREPROCESS_MAP: usize = 6;
    /// `u32` triples `(piece id, start, len)` sorted by piece id: the digit-comma re-encodings in `DIGIT_COMMA_IDS`.
    pub const DIGIT_COMMA: usize = 7;
    /// `u32` piece ids referenced by `DIGIT_COMMA`.
    pub const DIGIT_COMMA_IDS: usize = 8;
    /// `u32` pairs `(piece id, SPECIAL_*)`: literal special-token strings matched in the input text.
    pub const SPECIAL_TOKENS: usize = 9;
}

/// SentencePiece's `add_dummy_prefix`.
pub const FLAG_ADD_DUMMY_PREFIX: u32 = 1 << 0;
/// SentencePiece's `remove_extra_whitespaces`.
pub const FLAG_REMOVE_EXTRA_WHITESPACES: u32 = 1 << 1;
/// SentencePiece's `escape_whitespaces` (spaces become U+2581).
pub const FLAG_ESCAPE_WHITESPACES: u32 = 1 << 2;
/// ALBERT's `do_lower_case`.
pub const FLAG_DO_LOWER_CASE: u32 = 1 << 3;
/// ALBERT's `keep_accents` (no NFKD, no Hangul decomposition).
pub const FLAG_KEEP_ACCENTS: u32 = 1 << 4;
/// ALBERT's `remove_space` (strip, collapse whitespace runs).
pub const FLAG_REMOVE_SPACE: u32 = 1 << 5;
/// Match the `SPECIAL_TOKENS` strings in the input (Hugging Face's `split_special_tokens=False`).
pub const FLAG_MATCH_SPECIAL_TOKENS: u32 = 1 << 6;
/// Compact section: only the strings of non-`NORMAL` pieces are stored (encoding never needs the others), and
/// `PIECE_OFFSETS` holds `(piece id, end offset)` pairs for them; see the [module docs](super).
pub const FLAG_COMPACT: u32 = 1 << 7;
const KNOWN_FLAGS: u32 = (1 << 8) - 1;

/// Piece type `NORMAL` (SentencePiece's enum values).
pub const PIECE_NORMAL: u8 = 1;
/// Piece type `UNKNOWN`.
pub const PIECE_UNKNOWN: u8 = 2;
/// Piece type `CONTROL`.
pub const PIECE_CONTROL: u8 = 3;
/// Piece type `USER_DEFINED`.
pub const PIECE_USER_DEFINED: u8 = 4;
/// Piece type `UNUSED`.
pub const PIECE_UNUSED: u8 = 5;
/// Piece type `BYTE`.
pub const PIECE_BYTE: u8 = 6;
/// Mask of the type bits in a `PIECE_TYPES` byte.
pub const PIECE_TYPE_MASK: u8 = 0x07;
/// Flag: the piece ends in a digit followed by `,` and is replaced by its `DIGIT_COMMA` entry.
pub const PIECE_DIGIT_COMMA: u8 = 0x80;

/// Special token flag: strip whitespace on its left (Hugging Face `lstrip`).
pub const SPECIAL_LSTRIP: u32 = 1 << 0;
/// Special token flag: strip whitespace on its right (Hugging Face `rstrip`).
pub const SPECIAL_RSTRIP: u32 = 1 << 1;

/// Longest piece, in bytes, this build accepts (back-pointers in the lattice are one byte).
pub const MAX_PIECE_BYTES: usize = 255;
/// Most pieces this build accepts (ids share a `u32` with the back-pointer in the lattice).
pub const MAX_PIECES: usize = 1 << 24;

const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();

// ---------------------------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------------------------

fn bad(what: &'static str) -> Error {
    Error::BadTokenizer(what)
}

fn read_u32(section: &[u8], at: usize) -> Result<u32, Error> {
    let bytes = section.get(at..at + 4).ok_or(Error::Truncated {
        needed: TABLES_START,
        got: section.len(),
    })?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn words<'s, T: bytemuck::Pod>(bytes: &'s [u8], what: &'static str) -> Result<&'s [T], Error> {
    bytemuck::try_cast_slice(bytes).map_err(|e| match e {
        bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned => {
            bad("tokenizer section is not 4-byte aligned in memory; place it at a 16-byte aligned address")
        }
        _ => bad(what),
    })
}

/// Parses and validates a section; see [`Tokenizer::from_section`].
pub(crate) fn parse(section: &[u8]) -> Result<Tokenizer<'_>, Error> {
    if section.len() < TABLES_START {
        return Err(Error::Truncated {
            needed: TABLES_START,
            got: section.len(),
        });
    }
    if section[..4] != MAGIC {
        return Err(bad(
            "bad magic (expected \"ALTK\"); rebuild the blob with `albert-edge convert`",
        ));
    }
    if read_u32(section, header::VERSION)? != VERSION {
        return Err(bad(
            "unsupported tokenizer section version; rebuild the blob with this albert-edge",
        ));
    }
    let flags = read_u32(section, header::FLAGS)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(bad("unknown normaliser flags"));
    }
    let num_pieces = read_u32(section, header::NUM_PIECES)? as usize;
    if num_pieces == 0 || num_pieces >= MAX_PIECES {
        return Err(bad("piece count is 0 or above 2^24"));
    }
    let id = |at| -> Result<u32, Error> {
        let v = read_u32(section, at)?;
        if (v as usize) < num_pieces {
            Ok(v)
        } else {
            Err(bad("special token id out of the vocabulary"))
        }
    };
    let (unk_id, pad_id, cls_id, sep_id, mask_id) = (
        id(header::UNK_ID)?,
        id(header::PAD_ID)?,
        id(header::CLS_ID)?,
        id(header::SEP_ID)?,
        id(header::MASK_ID)?,
    );
    let unk_score = f32::from_bits(read_u32(section, header::UNK_SCORE)?);
    let max_score = f32::from_bits(read_u32(section, header::MAX_SCORE)?);
    if !unk_score.is_finite() || !max_score.is_finite() {
        return Err(bad("unknown or maximum score is not finite"));
    }
    let max_expansion = read_u32(section, header::MAX_EXPANSION)? as usize;
    if max_expansion == 0 || max_expansion > 1024 {
        return Err(bad("max_expansion out of range 1..=1024"));
    }

    // Table directory: the tables follow the directory in order, each at the previous end rounded up to 4.
    let mut tables: [&[u8]; NUM_TABLES] = [&[]; NUM_TABLES];
    let mut next = TABLES_START;
    for (i, t) in tables.iter_mut().enumerate() {
        let off = read_u32(section, HEADER_LEN + 8 * i)? as usize;
        let len = read_u32(section, HEADER_LEN + 8 * i + 4)? as usize;
        if off != next {
            return Err(bad("table directory out of order (each table starts where the previous ends, 4-aligned)"));
        }
        let end = off.checked_add(len).filter(|&e| e <= section.len());
        let end = end.ok_or(Error::Truncated {
            needed: off.saturating_add(len),
            got: section.len(),
        })?;
        *t = &section[off..end];
        next = end.next_multiple_of(4);
    }

    // Pieces: offsets, strings (each non-empty UTF-8), scores, types.
    let compact = flags & FLAG_COMPACT != 0;
    let offsets: &[u32] = words(tables[table::PIECE_OFFSETS], "piece offsets table size")?;
    let strings = tables[table::PIECE_STRINGS];
    let scores: &[f32] = words(tables[table::SCORES], "scores table size")?;
    let types = tables[table::PIECE_TYPES];
    if scores.len() != num_pieces || types.len() != num_pieces {
        return Err(bad("scores or types table does not match the piece count"));
    }
    let mut ud_first_bytes = [0u32; 8];
    let mut max_ud_bytes = 0;
    let mut digit_comma_pieces = 0;
    for i in 0..num_pieces {
        if !scores[i].is_finite() {
            return Err(bad("a piece score is not finite"));
        }
        let kind = types[i] & PIECE_TYPE_MASK;
        if !(PIECE_NORMAL..=PIECE_BYTE).contains(&kind)
            || types[i] & !(PIECE_TYPE_MASK | PIECE_DIGIT_COMMA) != 0
        {
            return Err(bad("unknown piece type"));
        }
        if types[i] & PIECE_DIGIT_COMMA != 0 {
            digit_comma_pieces += 1;
        }
    }
    // The stored pieces as (id, bytes): all of them, or in a compact section exactly the non-NORMAL ones.
    let stored = if compact {
        check_compact_pieces(offsets, strings, types)?
    } else {
        if offsets.len() != num_pieces + 1
            || offsets[0] != 0
            || offsets[num_pieces] as usize != strings.len()
        {
            return Err(bad(
                "piece offsets table does not match the piece count and strings",
            ));
        }
        num_pieces
    };
    let mut max_piece_bytes = 0;
    for k in 0..stored {
        let (id, piece) = stored_piece(compact, offsets, strings, k)
            .filter(|(_, p)| !p.is_empty())
            .ok_or(bad("piece offsets are not increasing"))?;
        if piece.len() > MAX_PIECE_BYTES {
            return Err(bad("a piece is longer than 255 bytes"));
        }
        core::str::from_utf8(piece).map_err(|_| bad("a piece is not valid UTF-8"))?;
        if piece.len() > 1
            && piece
                .windows(SPACE_SYMBOL.len())
                .skip(1)
                .any(|w| w == SPACE_SYMBOL)
        {
            return Err(bad(
                "a piece contains U+2581 after its first character; unsupported vocabulary",
            ));
        }
        if types[id as usize] & PIECE_TYPE_MASK == PIECE_USER_DEFINED {
            ud_first_bytes[usize::from(piece[0] >> 5)] |= 1 << (piece[0] & 31);
            max_ud_bytes = max_ud_bytes.max(piece.len());
        }
        max_piece_bytes = max_piece_bytes.max(piece.len());
    }
    if compact {
        // The lattice walks the trie, which ends every walk at its own longest key; the bound only caps the
        // window for a malformed trie.
        max_piece_bytes = MAX_PIECE_BYTES;
    }
    if types[unk_id as usize] & PIECE_TYPE_MASK != PIECE_UNKNOWN {
        return Err(bad("the unk id is not an UNKNOWN piece"));
    }

    // Piece trie: every piece is found under its own id, every stored value is a piece id.
    let trie_units: &[u32] = words(tables[table::PIECE_TRIE], "piece trie size")?;
    if trie_units.is_empty() {
        return Err(bad("piece trie is empty"));
    }
    let trie = DoubleArray::new(trie_units);
    if trie.leaf_values().any(|v| v as usize >= num_pieces) {
        return Err(bad("piece trie holds an id outside the vocabulary"));
    }
    for k in 0..stored {
        let (id, piece) = stored_piece(compact, offsets, strings, k).ok_or(bad("piece offsets"))?;
        if trie.exact(piece) != Some(id) {
            return Err(bad(
                "piece trie does not map every piece to its id (duplicate pieces?)",
            ));
        }
    }
    if compact {
        // Without the NORMAL pieces' strings the trie cannot be checked key by key; it must at least hold every
        // id exactly once.
        check_ids_once(trie, num_pieces)?;
    }

    let charsmap = CharsMap::parse(tables[table::CHARSMAP], "precompiled charsmap is malformed")?;
    let preprocess = CharsMap::parse(
        tables[table::PREPROCESS_MAP],
        "preprocessing map is malformed",
    )?;

    // Digit-comma re-encodings: one entry per flagged piece, ascending ids, ranges and ids in bounds.
    let digit_comma: &[u32] = words(tables[table::DIGIT_COMMA], "digit-comma table size")?;
    let digit_comma_ids: &[u32] = words(tables[table::DIGIT_COMMA_IDS], "digit-comma ids size")?;
    if !digit_comma.len().is_multiple_of(3) || digit_comma.len() / 3 != digit_comma_pieces {
        return Err(bad("digit-comma table does not match the flagged pieces"));
    }
    let mut prev = None;
    for e in digit_comma.chunks_exact(3) {
        let (piece, start, len) = (e[0], e[1] as usize, e[2] as usize);
        let flagged = types
            .get(piece as usize)
            .is_some_and(|t| t & PIECE_DIGIT_COMMA != 0);
        let ids = start
            .checked_add(len)
            .and_then(|end| digit_comma_ids.get(start..end));
        if !flagged || prev.is_some_and(|p| p >= piece) || ids.is_none() {
            return Err(bad(
                "digit-comma entry out of order, unflagged or out of range",
            ));
        }
        prev = Some(piece);
    }
    if digit_comma_ids.iter().any(|&id| id as usize >= num_pieces) {
        return Err(bad("digit-comma id outside the vocabulary"));
    }

    let special: &[u32] = words(tables[table::SPECIAL_TOKENS], "special tokens table size")?;
    if !special.len().is_multiple_of(2)
        || special
            .chunks_exact(2)
            .any(|e| e[0] as usize >= num_pieces || e[1] & !(SPECIAL_LSTRIP | SPECIAL_RSTRIP) != 0)
    {
        return Err(bad("special token entry out of range"));
    }
    if compact
        && special
            .chunks_exact(2)
            .any(|e| types[e[0] as usize] & PIECE_TYPE_MASK == PIECE_NORMAL)
    {
        return Err(bad(
            "a special token is a NORMAL piece, whose string a compact section does not store",
        ));
    }

    // The lattice is split at U+2581 (or ' '), whose piece must exist so that a lone space is never unknown.
    let space_symbol: &'static [u8] = if flags & FLAG_ESCAPE_WHITESPACES != 0 {
        SPACE_SYMBOL
    } else {
        b" "
    };
    let space_piece = trie.exact(space_symbol).filter(|&id| {
        matches!(
            types[id as usize] & PIECE_TYPE_MASK,
            PIECE_NORMAL | PIECE_USER_DEFINED
        )
    });
    if space_piece.is_none() {
        return Err(bad(
            "the vocabulary has no piece for the space symbol U+2581",
        ));
    }
    if space_symbol == b" " && compact {
        return Err(bad(
            "a compact tokenizer section needs escape_whitespaces (U+2581); rebuild it without --compact-tokenizer",
        ));
    }
    if space_symbol == b" "
        && (0..num_pieces)
            .any(|i| strings[offsets[i] as usize + 1..offsets[i + 1] as usize].contains(&b' '))
    {
        return Err(bad(
            "a piece contains a space after its first character; unsupported vocabulary",
        ));
    }

    Ok(Tokenizer {
        flags,
        unk_id,
        pad_id,
        cls_id,
        sep_id,
        mask_id,
        unk_score,
        max_score,
        max_expansion,
        max_piece_bytes,
        compact,
        offsets,
        strings,
        scores,
        types,
        trie,
        charsmap,
        preprocess,
        digit_comma,
        digit_comma_ids,
        special,
        space_symbol,
        ud_first_bytes,
        max_ud_bytes,
    })
}

/// Checks a compact section's `(piece id, end offset)` pairs: ids ascending, exactly the non-NORMAL pieces, ends
/// increasing up to the strings' length. Returns the number of stored pieces.
fn check_compact_pieces(offsets: &[u32], strings: &[u8], types: &[u8]) -> Result<usize, Error> {
    if !offsets.len().is_multiple_of(2)
        || offsets.last().map_or(0, |&e| e as usize) != strings.len()
    {
        return Err(bad(
            "compact piece table is not (id, end) pairs ending at the strings' length",
        ));
    }
    let mut pairs = offsets.chunks_exact(2);
    for (i, t) in types.iter().enumerate() {
        let stored = t & PIECE_TYPE_MASK != PIECE_NORMAL;
        if stored && pairs.next().map(|e| e[0] as usize) != Some(i) {
            return Err(bad(
                "compact piece table does not list exactly the non-NORMAL pieces in id order",
            ));
        }
    }
    if pairs.next().is_some() {
        return Err(bad(
            "compact piece table lists pieces outside the vocabulary",
        ));
    }
    Ok(offsets.len() / 2)
}

/// The `k`-th stored piece as `(id, bytes)`; `None` if its offsets are out of order or out of bounds.
pub(crate) fn stored_piece<'s>(
    compact: bool,
    offsets: &[u32],
    strings: &'s [u8],
    k: usize,
) -> Option<(u32, &'s [u8])> {
    let (id, start, end) = if compact {
        let start = if k == 0 { 0 } else { *offsets.get(2 * k - 1)? };
        (*offsets.get(2 * k)?, start, *offsets.get(2 * k + 1)?)
    } else {
        (k as u32, *offsets.get(k)?, *offsets.get(k + 1)?)
    };
    Some((id, strings.get(start as usize..end as usize)?))
}

/// Every id in `0..num_pieces` is stored exactly once among the trie's value units (no allocation: one window of
/// ids at a time, a 1 KiB bitmap on the stack; `num_pieces / 8192` passes over the units).
fn check_ids_once(trie: DoubleArray<'_>, num_pieces: usize) -> Result<(), Error> {
    const WINDOW: usize = 8192;
    let mut seen = [0u64; WINDOW / 64];
    let mut base = 0;
    while base < num_pieces {
        let end = (base + WINDOW).min(num_pieces);
        seen.fill(0);
        let mut count = 0;
        for v in trie.leaf_values().map(|v| v as usize) {
            if (base..end).contains(&v) {
                let (word, bit) = ((v - base) / 64, (v - base) % 64);
                if seen[word] >> bit & 1 == 1 {
                    return Err(bad("piece trie holds an id twice"));
                }
                seen[word] |= 1 << bit;
                count += 1;
            }
        }
        if count != end - base {
            return Err(bad("piece trie does not hold every piece id"));
        }
        base = end;
    }
    Ok(())
}
