//! SentencePiece's unigram Viterbi (`Model::EncodeOptimized`), one whitespace-delimited segment at a time.
//!
//! No piece contains U+2581 after its first character (checked when the section is parsed), so every path through
//! the lattice has a node boundary just before each U+2581: the best path over the whole text is the best paths over
//! the segments `[U+2581 ...)` laid end to end. Carrying the `f32` score reached at each segment start into the next
//! segment makes every addition and comparison the same as SentencePiece's, ties and rounding included, while the
//! workspace only has to hold the longest segment.
//!
//! # Ties
//!
//! Repeated characters (`soooooo`, `!!!!!`, `s***`) have many segmentations of (nearly) equal score, and the ids
//! are whatever SentencePiece's order of offers and comparisons picks, so both are reproduced exactly: start
//! positions are visited left to right one character at a time, and from each start the trie's matches shortest
//! first, then the unknown-character candidate (only where no piece is exactly that character); a candidate
//! replaces the one held at its end position only if strictly greater (`>`). A piece's candidate is
//! `f64(score) + f64(path score at its start)`, compared with the held `f32` widened to `f64`, and stored rounded
//! to `f32`; an unknown character's is `f32` throughout. So when scores add exactly, the last piece of the best
//! path is the longest one among equals (`▁xxx` over `▁x xx`); otherwise the rounding of the path score carried in
//! from earlier words decides (ALBERT: `careful!!!!!.` is `!! !!!`, `be careful!!!!!.` is `!!! !!`), which is
//! why each segment starts from the `f32` score of the text before it and never from 0. Hugging Face's
//! `tokenizers` (the "fast" tokenizers) keeps path scores in `f64` and so splits many such runs differently
//! (`!!!!` as `! !!!` where SentencePiece gives `!!! !`); the reference here is SentencePiece.

use core::ops::ControlFlow;

use super::darts::ROOT;
use super::normalize::one_char_len;
use super::section::{PIECE_NORMAL, PIECE_TYPE_MASK, PIECE_USER_DEFINED};
use super::Tokenizer;
use crate::Error;

/// Why token production stopped before the end of the text.
#[derive(Debug)]
pub(crate) enum Halt {
    /// The output reached its token limit (truncation); not an error.
    Full,
    /// A real error (workspace too small).
    Err(Error),
}

/// Control flow of the token pipeline.
pub(crate) type Flow = ControlFlow<Halt>;

/// Bytes of `cells` per lattice position: `f32` best score, then `id << 8 | length of the last piece`.
const CELL_WORDS: usize = 2;

/// Workspace bytes for a segment of `n` normalised bytes: the bytes plus the space symbol that closes the segment,
/// up to 3 bytes of alignment padding, and one cell per position `0..=n`.
pub(crate) const fn segment_workspace_bytes(n: usize) -> usize {
    (n + 3) + 3 + 4 * CELL_WORDS * (n + 1)
}

/// The current segment and its lattice, carved out of the caller's workspace.
pub(crate) struct Segmenter<'w> {
    text: &'w mut [u8],
    // (cap + 1) cells of CELL_WORDS u32
    cells: &'w mut [u32],
    len: usize,
    workspace_len: usize,
    /// Best score at the start of the current segment (SentencePiece's `best_path_ends_at[start]`).
    base: f32,
    /// Segments that are exactly one space symbol, held back in case they turn out to be trailing.
    deferred: usize,
    /// Bytes so far of a segment that did not fit.
    overflow: Option<usize>,
    /// The last bytes pushed, to find the end of an overflowing segment.
    tail: [u8; 3],
}

impl<'w> Segmenter<'w> {
    pub(crate) fn new(workspace: &'w mut [u8]) -> Self {
        let workspace_len = workspace.len();
        // The longest segment n with segment_workspace_bytes(n) <= workspace_len.
        let n = workspace_len.saturating_sub(6 + 4 * CELL_WORDS) / (1 + 4 * CELL_WORDS);
        let (text, rest) = workspace.split_at_mut((n + 3).min(workspace_len));
        let (_, cells, _) = bytemuck::pod_align_to_mut::<u8, u32>(rest);
        let n = n.min((cells.len() / CELL_WORDS).saturating_sub(1));
        let keep = (n + 3).min(text.len());
        let text = &mut text[..keep];
        Segmenter {
            text,
            cells,
            len: 0,
            workspace_len,
            base: 0.0,
            deferred: 0,
            overflow: None,
            tail: [0; 3],
        }
    }

    /// Appends one normalised byte; a space symbol closes the segment before it.
    pub(crate) fn push(
        &mut self,
        tok: &Tokenizer<'_>,
        b: u8,
        sink: &mut impl FnMut(u32, &[u8]) -> Flow,
    ) -> Flow {
        let sym = tok.space_symbol;
        self.tail = [self.tail[1], self.tail[2], b];
        if self.overflow.is_none() && self.len == self.text.len() {
            self.overflow = Some(self.len);
        }
        if let Some(count) = &mut self.overflow {
            *count += 1;
            let count = *count;
            if count > sym.len() && self.tail[3 - sym.len()..] == *sym {
                return self.overflowed(count - sym.len());
            }
            return Flow::Continue(());
        }
        self.text[self.len] = b;
        self.len += 1;
        if Some(&b) == sym.last() && self.len > sym.len() && self.text[..self.len].ends_with(sym) {
            let end = self.len - sym.len();
            self.close(tok, end, sink)?;
            self.text.copy_within(end..self.len, 0);
            self.len = sym.len();
        }
        Flow::Continue(())
    }

    /// Ends the text: drops trailing space symbols (SentencePiece's "ignores trailing space") and closes the last
    /// segment.
    pub(crate) fn finish(
        &mut self,
        tok: &Tokenizer<'_>,
        sink: &mut impl FnMut(u32, &[u8]) -> Flow,
    ) -> Flow {
        if let Some(count) = self.overflow {
            return self.overflowed(count);
        }
        let sym = tok.space_symbol;
        if tok.remove_extra_whitespaces() && self.text[..self.len] == *sym {
            self.len = 0;
            self.deferred = 0;
        }
        if self.len > 0 {
            self.close(tok, self.len, sink)?;
            self.len = 0;
        }
        Flow::Continue(())
    }

    fn overflowed(&self, segment_len: usize) -> Flow {
        Flow::Break(Halt::Err(Error::ArenaTooSmall {
            needed: segment_workspace_bytes(segment_len),
            got: self.workspace_len,
        }))
    }

    /// Runs the lattice over `text[..end]` and hands its pieces to `sink`.
    fn close(
        &mut self,
        tok: &Tokenizer<'_>,
        end: usize,
        sink: &mut impl FnMut(u32, &[u8]) -> Flow,
    ) -> Flow {
        let sym = tok.space_symbol;
        if tok.remove_extra_whitespaces() && self.text[..end] == *sym {
            self.deferred += 1;
            return Flow::Continue(());
        }
        while self.deferred > 0 {
            self.deferred -= 1;
            let mut cells = [0u32; CELL_WORDS * 5];
            self.base = tok.viterbi(sym, &mut cells, self.base);
            tok.emit_best_path(sym, &mut cells, sink)?;
        }
        // A segment closed by a space symbol always fits; the last one may have used the symbol's room.
        let Some(cells) = self.cells.get_mut(..CELL_WORDS * (end + 1)) else {
            return self.overflowed(end);
        };
        self.base = tok.viterbi(&self.text[..end], cells, self.base);
        tok.emit_best_path(&self.text[..end], cells, sink)
    }
}

impl Tokenizer<'_> {
    /// Forward pass over `text` (one segment) starting from score `base`; fills `cells` (`text.len() + 1` cells)
    /// and returns the best score at the end. Bit-for-bit `EncodeOptimized`: piece candidates are compared in
    /// `f64` (its `score` is a `double` there), unknown-character candidates in `f32`, the first best offered wins
    /// ties (see the module docs).
    pub(crate) fn viterbi(&self, text: &[u8], cells: &mut [u32], base: f32) -> f32 {
        let n = text.len();
        cells.fill(0);
        if let Some(c) = cells.first_mut() {
            *c = base.to_bits();
        }
        let max_len = self.max_piece_bytes;
        let mut start = 0;
        while start < n {
            let here = f32::from_bits(cells.get(CELL_WORDS * start).copied().unwrap_or(0));
            let char_len = one_char_len(text[start]).min(n - start);
            let mut has_single_node = false;
            let mut node = ROOT;
            for (key, &b) in text[start..].iter().enumerate().take(max_len) {
                let Some(next) = self.trie.child(node, b) else {
                    break;
                };
                node = next;
                let Some(id) = self.trie.value(node) else {
                    continue;
                };
                let kind = self
                    .types
                    .get(id as usize)
                    .map_or(0, |t| t & PIECE_TYPE_MASK);
                let length = key + 1;
                let score = match kind {
                    PIECE_NORMAL => f64::from(self.scores.get(id as usize).copied().unwrap_or(0.0)),
                    PIECE_USER_DEFINED => f64::from(length as f32 * self.max_score) - 0.1,
                    _ => continue,
                };
                let candidate = score + f64::from(here);
                relax(
                    cells,
                    start + length,
                    candidate,
                    |c| f64::from(c) < candidate,
                    id,
                    length,
                );
                has_single_node |= length == char_len;
            }
            if !has_single_node {
                let candidate = self.unk_score + here;
                relax(
                    cells,
                    start + char_len,
                    f64::from(candidate),
                    |c| c < candidate,
                    self.unk_id,
                    char_len,
                );
            }
            start += char_len;
        }
        f32::from_bits(cells.get(CELL_WORDS * n).copied().unwrap_or(0))
    }

    /// Walks the best path of a finished [`Tokenizer::viterbi`] and hands each piece to `sink` as
    /// `(id, normalised text)`. Runs of unknown characters are merged into one piece whose id is looked up by its
    /// text (SentencePiece's `PopulateSentencePieceText`, then Hugging Face's `PieceToId`).
    pub(crate) fn emit_best_path(
        &self,
        text: &[u8],
        cells: &mut [u32],
        sink: &mut impl FnMut(u32, &[u8]) -> Flow,
    ) -> Flow {
        let n = text.len();
        // Backward: overwrite the (no longer needed) score of each node's start with a link to its end.
        let mut end = n;
        while end > 0 {
            let len = cells
                .get(CELL_WORDS * end + 1)
                .map_or(0, |p| (p & 0xFF) as usize);
            if len == 0 || len > end {
                debug_assert!(false, "broken lattice back-pointer");
                return Flow::Continue(());
            }
            let start = end - len;
            cells[CELL_WORDS * start] = end as u32;
            end = start;
        }
        // Forward.
        let mut unknown: Option<(usize, usize)> = None;
        let mut start = 0;
        while start < n {
            let end = cells[CELL_WORDS * start] as usize;
            if end <= start || end > n {
                break;
            }
            let id = cells[CELL_WORDS * end + 1] >> 8;
            if id == self.unk_id {
                unknown = Some((unknown.map_or(start, |(s, _)| s), end));
            } else {
                if let Some((s, e)) = unknown.take() {
                    self.emit_unknown(&text[s..e], sink)?;
                }
                sink(id, &text[start..end])?;
            }
            start = end;
        }
        if let Some((s, e)) = unknown {
            self.emit_unknown(&text[s..e], sink)?;
        }
        Flow::Continue(())
    }

    fn emit_unknown(&self, text: &[u8], sink: &mut impl FnMut(u32, &[u8]) -> Flow) -> Flow {
        sink(self.trie.exact(text).unwrap_or(self.unk_id), text)
    }
}

/// Offers a node ending at `end` with `candidate` score: taken when the cell is empty or `better(current)`.
#[inline]
fn relax(
    cells: &mut [u32],
    end: usize,
    candidate: f64,
    better: impl Fn(f32) -> bool,
    id: u32,
    len: usize,
) {
    let Some(cell) = cells.get_mut(CELL_WORDS * end..CELL_WORDS * end + 2) else {
        return;
    };
    if cell[1] & 0xFF == 0 || better(f32::from_bits(cell[0])) {
        cell[0] = (candidate as f32).to_bits();
        cell[1] = (id << 8) | len as u32;
    }
}
