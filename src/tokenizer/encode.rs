//! From text to ids: literal special tokens, one SentencePiece encode per chunk between them, ALBERT's digit-comma
//! rule, `[CLS] A [SEP] (B [SEP])`, and Hugging Face's `longest_first` truncation computed without storing more
//! tokens than the output keeps.

use core::ops::ControlFlow;

use super::normalize::{decode_lossy, is_py_space, PreConfig, Preprocessed};
use super::section::{PIECE_DIGIT_COMMA, SPECIAL_LSTRIP, SPECIAL_RSTRIP};
use super::unigram::{Flow, Halt, Segmenter};
use super::Tokenizer;
use crate::Error;

/// A piece of a sequence between literal special tokens.
enum Part<'t> {
    Text(&'t [u8]),
    Special(u32),
}

/// Collects ids up to `limit` (then stops the pipeline), storing those that fit in `ids` and counting the rest.
pub(crate) struct TokenSink<'o> {
    ids: &'o mut [u32],
    limit: usize,
    n: usize,
}

impl<'o> TokenSink<'o> {
    pub(crate) fn new(ids: &'o mut [u32], limit: usize) -> Self {
        TokenSink { ids, limit, n: 0 }
    }

    /// Ids produced so far (may exceed the storage).
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    fn push(&mut self, id: u32) -> Flow {
        if self.n >= self.limit {
            return Flow::Break(Halt::Full);
        }
        if let Some(slot) = self.ids.get_mut(self.n) {
            *slot = id;
        }
        self.n += 1;
        if self.n == self.limit {
            Flow::Break(Halt::Full)
        } else {
            Flow::Continue(())
        }
    }
}

fn into_result(flow: Flow) -> Result<(), Error> {
    match flow {
        ControlFlow::Break(Halt::Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// `s` without leading (`start`) or trailing Python whitespace.
fn trim_py(s: &[u8], start: bool) -> &[u8] {
    let (mut first, mut last, mut i) = (None, 0, 0);
    while i < s.len() {
        let (c, len) = decode_lossy(&s[i..]);
        if !is_py_space(c) {
            first.get_or_insert(i);
            last = i + len;
        }
        i += len;
    }
    match (first, start) {
        (None, _) => &[],
        (Some(f), true) => &s[f..],
        (Some(_), false) => &s[..last],
    }
}

impl<'a> Tokenizer<'a> {
    /// The preprocessing ALBERT's `preprocess_text` applies, per this section's flags.
    pub(crate) fn albert_config(&self) -> PreConfig<'a> {
        PreConfig {
            map: self.preprocess,
            lower: self.do_lower_case(),
            remove_space: self.flags & super::section::FLAG_REMOVE_SPACE != 0,
            quotes: true,
            hangul: self.flags & super::section::FLAG_KEEP_ACCENTS == 0,
        }
    }

    /// Tokenizes one sequence (no `[CLS]`/`[SEP]`) into `sink` until the text or the sink's limit ends.
    pub(crate) fn tokenize_sequence(
        &self,
        text: &[u8],
        ws: &mut [u8],
        sink: &mut TokenSink<'_>,
    ) -> Result<(), Error> {
        if sink.limit == 0 {
            return Ok(());
        }
        into_result(self.sequence_flow(text, ws, sink))
    }

    fn sequence_flow(&self, text: &[u8], ws: &mut [u8], sink: &mut TokenSink<'_>) -> Flow {
        self.parts(text, &mut |part| match part {
            Part::Text(chunk) => self.chunk_flow(chunk, ws, sink),
            Part::Special(id) => sink.push(id),
        })
    }

    /// Splits `text` at literal special tokens (stripping whitespace next to those that ask for it) and hands
    /// the parts to `f` in order; empty text parts are skipped.
    fn parts<'t>(&self, text: &'t [u8], f: &mut impl FnMut(Part<'t>) -> Flow) -> Flow {
        let mut pos = 0;
        let mut strip_left = false;
        loop {
            let special = self.find_special(text, pos);
            let mut chunk = &text[pos..special.map_or(text.len(), |(start, ..)| start)];
            if strip_left {
                chunk = trim_py(chunk, true);
            }
            if special.is_some_and(|(.., flags)| flags & SPECIAL_LSTRIP != 0) {
                chunk = trim_py(chunk, false);
            }
            if !chunk.is_empty() {
                f(Part::Text(chunk))?;
            }
            let Some((_, end, id, flags)) = special else {
                return Flow::Continue(());
            };
            f(Part::Special(id))?;
            pos = end;
            strip_left = flags & SPECIAL_RSTRIP != 0;
        }
    }

    /// Normalised bytes of the longest segment (a word with its leading U+2581) of `text`.
    pub(crate) fn longest_segment(&self, text: &[u8]) -> usize {
        let sym = self.space_symbol;
        let mut longest = 0;
        let _ = self.parts(text, &mut |part| {
            if let Part::Text(chunk) = part {
                let (mut len, mut tail) = (0usize, [0u8; 3]);
                let _ = self.normalize_stream(
                    Preprocessed::new(chunk, self.albert_config()),
                    &mut |b| {
                        tail = [tail[1], tail[2], b];
                        len += 1;
                        if len > sym.len() && tail[3 - sym.len()..] == *sym {
                            longest = longest.max(len - sym.len());
                            len = sym.len();
                        }
                        ControlFlow::<()>::Continue(())
                    },
                );
                longest = longest.max(len);
            }
            Flow::Continue(())
        });
        longest
    }

    /// One SentencePiece encode of ALBERT-preprocessed `chunk`, then the digit-comma rule.
    fn chunk_flow(&self, chunk: &[u8], ws: &mut [u8], sink: &mut TokenSink<'_>) -> Flow {
        let mut segments = Segmenter::new(ws);
        let mut on_piece = |id: u32, _: &[u8]| self.push_piece(id, sink);
        self.normalize_stream(Preprocessed::new(chunk, self.albert_config()), &mut |b| {
            segments.push(self, b, &mut on_piece)
        })?;
        segments.finish(self, &mut on_piece)
    }

    /// Hugging Face's `AlbertTokenizer._tokenize` tail: a piece that ends in "<digit>," is replaced by its
    /// precomputed re-encoding (ids of `EncodeAsPieces(piece[:-1] without U+2581)`, leading U+2581 handled, then ",").
    fn push_piece(&self, id: u32, sink: &mut TokenSink<'_>) -> Flow {
        if self
            .types
            .get(id as usize)
            .is_some_and(|t| t & PIECE_DIGIT_COMMA != 0)
        {
            if let Some(ids) = self.digit_comma_ids(id) {
                return ids.iter().try_for_each(|&id| sink.push(id));
            }
        }
        sink.push(id)
    }

    fn digit_comma_ids(&self, piece: u32) -> Option<&'a [u32]> {
        let entries = self.digit_comma;
        let (mut lo, mut hi) = (0, entries.len() / 3);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match entries.get(3 * mid)?.cmp(&piece) {
                core::cmp::Ordering::Less => lo = mid + 1,
                core::cmp::Ordering::Greater => hi = mid,
                core::cmp::Ordering::Equal => {
                    let (start, len) = (
                        *entries.get(3 * mid + 1)? as usize,
                        *entries.get(3 * mid + 2)? as usize,
                    );
                    return self.digit_comma_ids.get(start..start.checked_add(len)?);
                }
            }
        }
        None
    }

    // -----------------------------------------------------------------------------------------------------------
    // Literal special tokens
    // -----------------------------------------------------------------------------------------------------------

    /// The leftmost special token at or after `from`, as `(start, end, id, flags)`; the longest one at that start.
    /// With `do_lower_case` a token also matches text that Python's `str.lower()` turns into it (Hugging Face
    /// lowercases everything but exact special tokens before it splits), e.g. "<UNK>" for "<unk>".
    fn find_special(&self, text: &[u8], from: usize) -> Option<(usize, usize, u32, u32)> {
        if self.flags & super::section::FLAG_MATCH_SPECIAL_TOKENS == 0 || self.special.is_empty() {
            return None;
        }
        // ASCII bytes that can start a match (non-ASCII characters are always checked).
        let mut starts = 0u128;
        for e in self.special.chunks_exact(2) {
            if let Some(&b) = self.piece_bytes(e[0]).and_then(|p| p.first()) {
                starts |= 1 << (b & 0x7F);
                if self.do_lower_case() {
                    starts |= 1 << (b.to_ascii_uppercase() & 0x7F);
                }
            }
        }
        let mut i = from;
        while i < text.len() {
            let rest = &text[i..];
            if rest[0] < 0x80 && starts & (1 << rest[0]) == 0 {
                i += 1;
                continue;
            }
            let mut best: Option<(usize, u32, u32)> = None;
            for e in self.special.chunks_exact(2) {
                let Some(piece) = self.piece_bytes(e[0]) else {
                    continue;
                };
                if let Some(len) = self.special_match(rest, piece) {
                    if best.is_none_or(|(l, ..)| len > l) {
                        best = Some((len, e[0], e[1]));
                    }
                }
            }
            if let Some((len, id, flags)) = best {
                return Some((i, i + len, id, flags));
            }
            i += decode_lossy(rest).1;
        }
        None
    }

    fn special_match(&self, rest: &[u8], piece: &[u8]) -> Option<usize> {
        let (&first, &want) = (rest.first()?, piece.first()?);
        if first == want && rest.starts_with(piece) {
            return Some(piece.len());
        }
        if !self.do_lower_case() || (first.is_ascii() && first.to_ascii_lowercase() != want) {
            return None;
        }
        let mut want = piece;
        let mut used = 0;
        while !want.is_empty() {
            let (c, len) = decode_lossy(rest.get(used..).filter(|r| !r.is_empty())?);
            for lower in c.to_lowercase() {
                let mut buf = [0u8; 4];
                want = want.strip_prefix(lower.encode_utf8(&mut buf).as_bytes())?;
            }
            used += len;
        }
        Some(used)
    }

    // -----------------------------------------------------------------------------------------------------------
    // [CLS] A [SEP] (B [SEP]) with truncation
    // -----------------------------------------------------------------------------------------------------------

    /// See [`Tokenizer::encode_bytes`].
    pub(crate) fn encode_impl(
        &self,
        text: &[u8],
        pair: Option<&[u8]>,
        max_len: usize,
        ws: &mut [u8],
        input_ids: &mut [u32],
        token_type_ids: &mut [u32],
    ) -> Result<usize, Error> {
        let (a_limit, b_budget) = match pair {
            // Hugging Face truncates only when max_length > 0, and a single sequence only when that leaves it at
            // least one token; otherwise it logs an error and returns the sequence untruncated.
            None if max_len >= 3 => (max_len - 2, 0),
            None => (usize::MAX, 0),
            Some(_) if max_len == 0 => (usize::MAX, usize::MAX),
            Some(b) => {
                // longest_first: the longer side loses tokens first, ties go to B. With room n, the result is
                // a = min(la, max(n - lb, ceil(n / 2))) and b = min(lb, n - a); counting B up to n is enough.
                let n = max_len.saturating_sub(3);
                let mut count = TokenSink::new(&mut [], n);
                self.tokenize_sequence(b, ws, &mut count)?;
                ((n - count.len()).max(n.div_ceil(2)), n)
            }
        };

        let mut a = TokenSink::new(input_ids.get_mut(1..).unwrap_or(&mut []), a_limit);
        self.tokenize_sequence(text, ws, &mut a)?;
        let la = a.len();
        let lb = match pair {
            None => None,
            Some(b) => {
                let limit = b_budget.saturating_sub(if b_budget == usize::MAX { 0 } else { la });
                let mut sink =
                    TokenSink::new(input_ids.get_mut(la + 2..).unwrap_or(&mut []), limit);
                self.tokenize_sequence(b, ws, &mut sink)?;
                Some(sink.len())
            }
        };

        let total = la + 2 + lb.map_or(0, |lb| lb + 1);
        let got = input_ids.len().min(token_type_ids.len());
        if total > got {
            return Err(Error::OutputTooSmall { needed: total, got });
        }
        input_ids[0] = self.cls_id;
        input_ids[la + 1] = self.sep_id;
        token_type_ids[..la + 2].fill(0);
        if lb.is_some() {
            input_ids[total - 1] = self.sep_id;
            token_type_ids[la + 2..total].fill(1);
        }
        Ok(total)
    }
}
