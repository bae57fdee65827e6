//! SentencePiece unigram tokenizer with ALBERT's normalisation, `no_std` and allocation-free.
//!
//! [`Tokenizer::from_section`] reads the blob's tokenizer section in place and validates it once; after that,
//! [`Tokenizer::encode`] turns text into `input_ids` / `token_type_ids` exactly as Hugging Face's slow
//! `AlbertTokenizer` (transformers 4.57, sentencepiece 0.2) does, into caller-provided buffers:
//!
//! 1. literal special tokens (`[CLS]`, `[SEP]`, `<unk>`, `<pad>`, `[MASK]`, the latter eating whitespace on its
//!    left) split the text; with `do_lower_case`, text that lowercases to one (`<UNK>`) matches too;
//! 2. per chunk, ALBERT's `preprocess_text`: strip and collapse Python whitespace, "``" and "''" to '"', NFKD,
//!    drop combining marks (canonical combining class != 0), lowercase; the per-character part is one table built
//!    offline ([`section::table::PREPROCESS_MAP`]), Hangul syllables are decomposed algorithmically;
//! 3. SentencePiece's normaliser: user-defined pieces pass through, the model's `nmt_nfkc` precompiled charsmap
//!    (longest match), leading/trailing/repeated whitespace removed, dummy prefix, spaces to U+2581;
//! 4. the unigram Viterbi with the model's scores (user-defined pieces get SentencePiece's bonus, unknown
//!    characters cost `min score - 10`, runs of unknowns merge into one `<unk>`), one U+2581-delimited segment at a
//!    time; see `unigram.rs` for why that is exact, ties included;
//! 5. the digit-comma rule ("▁1990," becomes "▁1990" ","), precomputed per piece offline;
//! 6. `[CLS] A [SEP]` or `[CLS] A [SEP] B [SEP]` (type ids 0 / 1) and `longest_first` truncation.
//!
//! ```
//! use albert_edge::tokenizer::Tokenizer;
//! use albert_edge::{Error, Model};
//!
//! # fn run(blob: &[u8]) -> Result<(), Error> {
//! let model = Model::from_bytes(blob)?;
//! let tokenizer = Tokenizer::from_section(model.tokenizer_section())?; // validated once
//! let mut ws = [0u8; 8 * 1024]; // holds the longest word: tokenizer.workspace_size(..) bounds it
//! let (mut input_ids, mut token_type_ids) = ([0u32; 128], [0u32; 128]);
//! let n = tokenizer.encode("A charming journey.", None, 128, &mut ws, &mut input_ids, &mut token_type_ids)?;
//! assert_eq!(input_ids[..n], [2, 21, 13275, 2998, 9, 3]); // [CLS] ▁a ▁charming ▁journey . [SEP]
//! # Ok(()) }
//! ```
//!
//! Work is linear in the input: the normaliser looks ahead at most the charsmap's longest key, the lattice at most
//! the longest piece (255 bytes), and encoding stops as soon as the truncated output is complete.
//!
//! # Memory
//!
//! The only scratch memory is the caller's workspace, which holds one segment (a word and its leading U+2581) of
//! normalised text and its lattice: [`Tokenizer::workspace_size`]`(max_text_bytes)` is enough for any text of that
//! many bytes whose characters expand at most as much as the worst single character of this section
//! ([`section::header::MAX_EXPANSION`], 13 for ALBERT's `30k-clean.model`: U+FDFA). A word that does not fit gives
//! [`Error::ArenaTooSmall`] with the size it needs, never a partial or wrong result.
//!
//! # Invalid UTF-8
//!
//! [`Tokenizer::encode_bytes`] takes untrusted bytes: each maximal ill-formed subsequence becomes one U+FFFD, as
//! `String::from_utf8_lossy` does; the result is the encoding of that lossy string.
//!
//! # Hostile input
//!
//! No input makes encoding panic or loop: any bytes (lone surrogates as WTF-8 `ED A0 80`, overlong forms, control
//! and zero-width characters, a megabyte without a space) give ids or a typed error. With ALBERT's model, U+FFFD
//! (so every invalid sequence) and C0 controls other than NUL are dropped by the normaliser, zero-width spaces
//! split words, and characters outside the vocabulary become `<unk>`; empty or whitespace-only text is
//! `[CLS] [SEP]`. A word longer than the workspace is [`Error::ArenaTooSmall`]; everything else is bounded by the
//! output buffers and `max_len`. `tests/data/hostile/` lists the cases and their documented results.
//!
//! # Limits
//!
//! - The preprocessing table comes from the writer's Unicode data (`unicode-normalization`, Rust's lowercase
//!   mappings); against CPython 3.11's Unicode 14 it differs only for characters assigned after Unicode 14.0.
//! - Python lowercases a word-final Σ to ς; this gives σ. The writer refuses vocabularies in which that matters
//!   (ALBERT's knows neither letter, so both are `<unk>`).
//! - Unigram models only; `byte_fallback`, `treat_whitespace_as_suffix` and pieces with U+2581 after their first
//!   character are refused by the writer and the reader.
//!
//! # Section layout (version 1)
//!
//! Little-endian. The section starts 16-byte aligned in the blob (and must be at least 4-byte aligned in memory).
//! The tables follow the directory in its order, the first at offset 144 and each next one where the previous ends,
//! rounded up to a multiple of 4 (zero padding), so `u32` / `f32` tables are read in place.
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | magic `"ALTK"` |
//! | 4 | `u32` | version = 1 |
//! | 8 | `u32` | flags: bit 0 `add_dummy_prefix`, 1 `remove_extra_whitespaces`, 2 `escape_whitespaces`, 3 `do_lower_case`, 4 `keep_accents`, 5 `remove_space`, 6 match special tokens, 7 compact (see below); other bits 0 |
//! | 12 | `u32` | number of pieces `P` (1 ..= 2^24 - 1) |
//! | 16 | `u32` x 5 | ids of `<unk>`, `<pad>`, `[CLS]`, `[SEP]`, `[MASK]` |
//! | 36 | `f32` | unknown-character score: the lowest NORMAL score - 10 |
//! | 40 | `f32` | `max_score`: the highest NORMAL score, at least `f32::MIN_POSITIVE` (a user-defined piece of `n` bytes scores `n * max_score - 0.1`) |
//! | 44 | `u32` | max expansion: normalised bytes per input byte for the worst single character (1 ..= 1024) |
//! | 48 | 16 bytes | reserved, 0 |
//! | 64 | `(u32, u32)` x 10 | table directory: `(offset from section start, length in bytes)`, in the order below |
//!
//! | # | table | contents |
//! |---|---|---|
//! | 0 | piece offsets | `u32` x (`P` + 1): start of piece `i` in the strings; the last is the strings' length |
//! | 1 | piece strings | UTF-8 pieces in id order, no separators; each 1 ..= 255 bytes; no U+2581 after the first character |
//! | 2 | scores | `f32` x `P` |
//! | 3 | piece types | `u8` x `P`: bits 0..3 SentencePiece type (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), bit 7 digit-comma flag |
//! | 4 | piece trie | darts-clone double array (`u32` units, format in `darts.rs`) of every piece, value = id |
//! | 5 | charsmap | the model's `normalizer_spec.precompiled_charsmap`, verbatim: `u32` trie bytes `T`, `T` bytes of darts-clone units, then NUL-terminated UTF-8 replacement strings (a key's value is its replacement's offset); empty = no charsmap |
//! | 6 | preprocessing map | same format as the charsmap; keys are single characters, values their ALBERT preprocessing (lowercase, NFKD, drop combining marks, lowercase); absent characters map to themselves; ASCII and Hangul syllables are handled in code |
//! | 7 | digit-comma index | `u32` triples `(piece id, start, count)` into table 8, ascending piece id, one per flagged piece |
//! | 8 | digit-comma ids | `u32` piece ids |
//! | 9 | special tokens | `u32` pairs `(piece id, flags)`; bit 0 strip whitespace left of it, bit 1 right; the string is the piece's |
//!
//! A double-array lookup follows byte `b` from node `n` to `c = n ^ offset(n) ^ b` when `label(c) == b`; the root is
//! unit 0. [`Tokenizer::from_section`] checks every size, offset and range, that pieces are UTF-8, that the piece
//! trie maps every piece to its own id and holds no other ids, that every charsmap value points into its strings,
//! and the digit-comma and special-token tables; lookups after that use checked indexing only.
//!
//! ## Compact sections (flag bit 7)
//!
//! Encoding never reads the strings of `NORMAL` pieces (the trie and the scores are the vocabulary), so a compact
//! section (`albert-edge convert --compact-tokenizer`) stores only the others' (unknown, control, user-defined:
//! 5 of 30 000 for ALBERT, about 372 KB less): table 1 holds their strings in id order and table 0 is `u32`
//! pairs `(piece id, end of its string in table 1)`, ascending id, the last end being table 1's length. Encoding
//! is identical; [`Tokenizer::piece`] returns `None` for `NORMAL` pieces. Compact sections need
//! `escape_whitespaces`, and special tokens must be non-`NORMAL` pieces.
//!
//! Validation is weaker only where the strings are missing: the stored pieces are checked as above (UTF-8, no
//! inner U+2581, the trie maps each to its id), and for the rest the trie must hold every id in `0..P` exactly
//! once (in range and unique); that a `NORMAL` piece's key in the trie is the piece the model was trained with
//! cannot be checked, nor its length, so the lattice window is the 255-byte maximum (the trie ends each walk at
//! its longest key anyway).

mod darts;
mod encode;
mod normalize;
pub mod section;
#[cfg(test)]
mod tests;
mod unigram;

use core::ops::ControlFlow;

use self::darts::{CharsMap, DoubleArray};
use self::encode::TokenSink;
use self::normalize::{PreConfig, Preprocessed};
use self::section::{FLAG_ADD_DUMMY_PREFIX, FLAG_DO_LOWER_CASE, FLAG_REMOVE_EXTRA_WHITESPACES};
use self::unigram::{segment_workspace_bytes, Flow, Halt, Segmenter};
use crate::Error;

/// A SentencePiece unigram tokenizer read in place from a tokenizer section. Cheap to copy around by reference;
/// all methods take `&self`.
#[derive(Clone)]
pub struct Tokenizer<'a> {
    flags: u32,
    unk_id: u32,
    pad_id: u32,
    cls_id: u32,
    sep_id: u32,
    mask_id: u32,
    unk_score: f32,
    max_score: f32,
    max_expansion: usize,
    max_piece_bytes: usize,
    compact: bool, // FLAG_COMPACT: only non-NORMAL pieces' strings, `offsets` = (id, end) pairs
    offsets: &'a [u32], // (P + 1), compact: (stored pieces, 2)
    strings: &'a [u8], // piece bytes
    scores: &'a [f32], // (P)
    types: &'a [u8], // (P)
    trie: DoubleArray<'a>, // piece -> id
    charsmap: Option<CharsMap<'a>>,
    preprocess: Option<CharsMap<'a>>,
    digit_comma: &'a [u32], // (entries, 3)
    digit_comma_ids: &'a [u32],
    special: &'a [u32], // (entries, 2)
    space_symbol: &'static [u8],
    /// First bytes of user-defined pieces (a 256-bit set) and their longest length: `NormalizePrefix`'s matcher.
    ud_first_bytes: [u32; 8],
    max_ud_bytes: usize,
}

impl core::fmt::Debug for Tokenizer<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("flags", &format_args!("{:#09b}", self.flags))
            .field(
                "unk_pad_cls_sep_mask",
                &[
                    self.unk_id,
                    self.pad_id,
                    self.cls_id,
                    self.sep_id,
                    self.mask_id,
                ],
            )
            .field("charsmap", &self.charsmap.is_some())
            .field("digit_comma_pieces", &(self.digit_comma.len() / 3))
            .finish_non_exhaustive()
    }
}

impl<'a> Tokenizer<'a> {
    /// Reads and validates a tokenizer section (layout in the [module docs](self)). `section` must be 4-byte aligned
    /// in memory (the blob places it 16-byte aligned). Fails with [`Error::BadTokenizer`] or [`Error::Truncated`]
    /// on anything malformed; after success no method can panic or read outside `section`.
    pub fn from_section(section: &'a [u8]) -> Result<Self, Error> {
        section::parse(section)
    }

    /// Number of pieces (the model's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.scores.len()
    }

    /// The piece with id `id`. `None` for an id outside the vocabulary, and in a compact section
    /// ([`Tokenizer::is_compact`]) for every `NORMAL` piece: only the control, unknown and user-defined pieces'
    /// strings are kept there.
    pub fn piece(&self, id: u32) -> Option<&'a str> {
        self.piece_bytes(id)
            .and_then(|p| core::str::from_utf8(p).ok())
    }

    /// Whether the section omits the `NORMAL` pieces' strings ([`section::FLAG_COMPACT`]). Encoding is the same.
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    fn piece_bytes(&self, id: u32) -> Option<&'a [u8]> {
        let k = if self.compact {
            // (id, end) pairs in ascending id order: binary search.
            let (mut lo, mut hi) = (0, self.offsets.len() / 2);
            while lo < hi {
                let mid = (lo + hi) / 2;
                match self.offsets.get(2 * mid)?.cmp(&id) {
                    core::cmp::Ordering::Less => lo = mid + 1,
                    core::cmp::Ordering::Greater => hi = mid,
                    core::cmp::Ordering::Equal => {
                        lo = mid;
                        break;
                    }
                }
            }
            lo
        } else {
            id as usize
        };
        section::stored_piece(self.compact, self.offsets, self.strings, k)
            .filter(|&(stored, _)| stored == id)
            .map(|(_, p)| p)
    }

    /// The id of exactly `piece`, if it is in the vocabulary (any type).
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.trie.exact(piece.as_bytes())
    }

    /// SentencePiece score of piece `id`.
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Id of `<unk>`.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Id of `[CLS]`.
    pub fn cls_id(&self) -> u32 {
        self.cls_id
    }

    /// Id of `[SEP]`.
    pub fn sep_id(&self) -> u32 {
        self.sep_id
    }

    /// Id of `[MASK]`.
    pub fn mask_id(&self) -> u32 {
        self.mask_id
    }

    /// The normaliser flags ([`section::FLAG_ADD_DUMMY_PREFIX`] ...).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    pub(crate) fn remove_extra_whitespaces(&self) -> bool {
        self.flags & FLAG_REMOVE_EXTRA_WHITESPACES != 0
    }

    pub(crate) fn add_dummy_prefix(&self) -> bool {
        self.flags & FLAG_ADD_DUMMY_PREFIX != 0
    }

    pub(crate) fn do_lower_case(&self) -> bool {
        self.flags & FLAG_DO_LOWER_CASE != 0
    }

    /// Workspace bytes that [`Tokenizer::encode`] needs for any text of up to `max_text_bytes` bytes, assuming no
    /// run of characters expands more than the section's worst single character (see the module docs). Most text
    /// needs far less: only the longest word matters, at 9 bytes per normalised byte plus 14.
    pub fn workspace_size(&self, max_text_bytes: usize) -> usize {
        segment_workspace_bytes(
            max_text_bytes
                .saturating_mul(self.max_expansion)
                .saturating_add(3),
        )
    }

    /// Encodes `text` (and `pair`) as `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]`, writing `input_ids` and
    /// `token_type_ids` (0 for `[CLS] A [SEP]`, 1 for `B [SEP]`) and returning their length.
    ///
    /// `max_len` is Hugging Face's `max_length` with `truncation=True` (`longest_first`): 0 means no limit; a
    /// single sequence is cut to `max_len - 2` tokens (left untruncated when `max_len < 3`, as Hugging Face
    /// does); for a pair the longer side loses tokens first, ties from `pair`. Only the kept tokens are computed.
    ///
    /// Errors: [`Error::OutputTooSmall`] if the encoding is longer than either output slice,
    /// [`Error::ArenaTooSmall`] if a word does not fit `ws`, with the size that fits every word of the input
    /// (see [`Tokenizer::workspace_size`], [`Tokenizer::workspace_needed`]).
    pub fn encode(
        &self,
        text: &str,
        pair: Option<&str>,
        max_len: usize,
        ws: &mut [u8],
        input_ids: &mut [u32],
        token_type_ids: &mut [u32],
    ) -> Result<usize, Error> {
        self.encode_bytes(
            text.as_bytes(),
            pair.map(str::as_bytes),
            max_len,
            ws,
            input_ids,
            token_type_ids,
        )
    }

    /// [`Tokenizer::encode`] for untrusted bytes: invalid UTF-8 is read as `String::from_utf8_lossy` reads it
    /// (one U+FFFD per maximal ill-formed subsequence).
    pub fn encode_bytes(
        &self,
        text: &[u8],
        pair: Option<&[u8]>,
        max_len: usize,
        ws: &mut [u8],
        input_ids: &mut [u32],
        token_type_ids: &mut [u32],
    ) -> Result<usize, Error> {
        self.encode_impl(text, pair, max_len, ws, input_ids, token_type_ids)
            .map_err(|e| self.with_exact_need(e, text, pair))
    }

    /// Workspace bytes that encoding exactly this `text` (and `pair`) needs: the longest word's. Linear in the
    /// input; [`Error::ArenaTooSmall`] from [`Tokenizer::encode`] reports the same number.
    pub fn workspace_needed(&self, text: &[u8], pair: Option<&[u8]>) -> usize {
        let longest = self
            .longest_segment(text)
            .max(pair.map_or(0, |p| self.longest_segment(p)));
        segment_workspace_bytes(longest)
    }

    fn with_exact_need(&self, e: Error, text: &[u8], pair: Option<&[u8]>) -> Error {
        match e {
            Error::ArenaTooSmall { needed, got } => Error::ArenaTooSmall {
                needed: needed.max(self.workspace_needed(text, pair)),
                got,
            },
            e => e,
        }
    }

    /// The token ids of `text` alone (no `[CLS]`/`[SEP]`, no truncation): Hugging Face's
    /// `convert_tokens_to_ids(tokenize(text))`. Returns the count; [`Error::OutputTooSmall`] if `ids` is shorter.
    pub fn tokenize(&self, text: &[u8], ws: &mut [u8], ids: &mut [u32]) -> Result<usize, Error> {
        let mut sink = TokenSink::new(ids, usize::MAX);
        self.tokenize_sequence(text, ws, &mut sink)
            .map_err(|e| self.with_exact_need(e, text, None))?;
        match sink.len() {
            n if n > ids.len() => Err(Error::OutputTooSmall {
                needed: n,
                got: ids.len(),
            }),
            n => Ok(n),
        }
    }

    /// The text the unigram model sees: ALBERT's preprocessing and SentencePiece's normaliser applied to `text`
    /// (special tokens are not split out), as UTF-8 in `out`; returns its length. Python:
    /// `sp.normalize(tokenizer.preprocess_text(text))` with U+2581 for spaces and the dummy prefix.
    pub fn normalize(&self, text: &[u8], out: &mut [u8]) -> Result<usize, Error> {
        let mut n = 0;
        let _ = self.normalize_stream(Preprocessed::new(text, self.albert_config()), &mut |b| {
            if let Some(slot) = out.get_mut(n) {
                *slot = b;
            }
            n += 1;
            ControlFlow::<()>::Continue(())
        });
        if n > out.len() {
            return Err(Error::OutputTooSmall {
                needed: n,
                got: out.len(),
            });
        }
        if self.remove_extra_whitespaces() {
            while out[..n].ends_with(self.space_symbol) {
                n -= self.space_symbol.len();
            }
        }
        Ok(n)
    }

    /// SentencePiece alone (Python `sp.encode(text, out_type=str)` + `PieceToId`): no ALBERT preprocessing, no
    /// special tokens, no digit-comma rule. Calls `f(piece, id)` per piece, the piece being its normalised text;
    /// `f` may stop early with `Break`.
    pub fn encode_pieces(
        &self,
        text: &str,
        ws: &mut [u8],
        mut f: impl FnMut(&str, u32) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        let raw = PreConfig {
            map: None,
            lower: false,
            remove_space: false,
            quotes: false,
            hangul: false,
        };
        let mut segments = Segmenter::new(ws);
        let mut on_piece =
            |id: u32, piece: &[u8]| match f(core::str::from_utf8(piece).unwrap_or(""), id) {
                ControlFlow::Continue(()) => Flow::Continue(()),
                ControlFlow::Break(()) => Flow::Break(Halt::Full),
            };
        let flow = match self.normalize_stream(Preprocessed::new(text.as_bytes(), raw), &mut |b| {
            segments.push(self, b, &mut on_piece)
        }) {
            Flow::Continue(()) => segments.finish(self, &mut on_piece),
            halt => halt,
        };
        match flow {
            Flow::Break(Halt::Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}
