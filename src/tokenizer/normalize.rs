//! Text to normalised bytes, streamed: ALBERT's `preprocess_text` ([`Preprocessed`]) and then SentencePiece's
//! `Normalizer::Normalize` ([`normalize`]). Nothing is buffered: the SentencePiece stage looks ahead by cloning the
//! preprocessing cursor, whose state is a few words.

use core::ops::ControlFlow;

use super::darts::{CharsMap, ROOT};
use super::section::PIECE_USER_DEFINED;
use super::Tokenizer;

const REPLACEMENT: char = '\u{FFFD}';

/// Python's `str.isspace()`, which `str.split()` / `str.strip()` use (Unicode 14: bidi classes WS, B, S and Zs).
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Decodes the character at the start of `bytes` like `String::from_utf8_lossy`: an ill-formed sequence becomes
/// U+FFFD and consumes its maximal well-formed prefix (at least one byte). Returns `(char, bytes consumed)`;
/// `bytes` must not be empty (an empty slice gives `(U+FFFD, 1)`).
pub(crate) fn decode_lossy(bytes: &[u8]) -> (char, usize) {
    let Some(&b0) = bytes.first() else {
        return (REPLACEMENT, 1);
    };
    if b0 < 0x80 {
        return (char::from(b0), 1);
    }
    // (length, range of the second byte); later bytes are 0x80..=0xBF.
    let (len, lo, hi) = match b0 {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return (REPLACEMENT, 1),
    };
    let mut cp = u32::from(b0) & (0x7F >> len);
    for i in 1..len {
        let (l, h) = if i == 1 { (lo, hi) } else { (0x80, 0xBF) };
        match bytes.get(i) {
            Some(&b) if (l..=h).contains(&b) => cp = (cp << 6) | u32::from(b & 0x3F),
            _ => return (REPLACEMENT, i),
        }
    }
    (char::from_u32(cp).unwrap_or(REPLACEMENT), len)
}

/// SentencePiece's `OneCharLen`: the UTF-8 length announced by a lead byte (1 for continuation bytes).
#[inline]
pub(crate) fn one_char_len(b: u8) -> usize {
    const LEN: [u8; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    usize::from(LEN[usize::from(b >> 4)])
}

// ---------------------------------------------------------------------------------------------------------------
// Stage 1: ALBERT's preprocess_text
// ---------------------------------------------------------------------------------------------------------------

/// What the preprocessing stage does; all off = the raw text (SentencePiece alone).
#[derive(Clone, Copy)]
pub(crate) struct PreConfig<'s> {
    /// Per-character map (lowercase, NFKD, drop combining marks), built offline.
    pub map: Option<CharsMap<'s>>,
    /// Lowercase ASCII (the map covers the rest).
    pub lower: bool,
    /// Strip, and collapse whitespace runs to one space.
    pub remove_space: bool,
    /// "``" and "''" become '"'.
    pub quotes: bool,
    /// Decompose Hangul syllables to conjoining jamo (NFKD's algorithmic part).
    pub hangul: bool,
}

/// Bytes still to hand out for the current input character.
#[derive(Clone, Copy)]
enum Pending<'s> {
    Slice(&'s [u8]),
    Inline { buf: [u8; 12], at: u8, len: u8 },
}

impl<'s> Pending<'s> {
    const EMPTY: Pending<'static> = Pending::Slice(&[]);

    fn inline(bytes: &[u8]) -> Self {
        let mut buf = [0u8; 12];
        let len = bytes.len().min(12);
        buf[..len].copy_from_slice(&bytes[..len]);
        Pending::Inline {
            buf,
            at: 0,
            len: len as u8,
        }
    }

    #[inline]
    fn pop(&mut self) -> Option<u8> {
        match self {
            Pending::Slice(s) => {
                let (&b, rest) = s.split_first()?;
                *s = rest;
                Some(b)
            }
            Pending::Inline { buf, at, len } => {
                if at < len {
                    let b = buf[usize::from(*at)];
                    *at += 1;
                    Some(b)
                } else {
                    None
                }
            }
        }
    }
}

/// A cursor over the preprocessed text, yielding its UTF-8 bytes. Cheap to clone (lookahead).
#[derive(Clone)]
pub(crate) struct Preprocessed<'t, 's> {
    text: &'t [u8],
    pos: usize,
    pending: Pending<'s>,
    cfg: PreConfig<'s>,
    started: bool,
    space_pending: bool,
}

impl<'t, 's> Preprocessed<'t, 's> {
    pub(crate) fn new(text: &'t [u8], cfg: PreConfig<'s>) -> Self {
        Preprocessed {
            text,
            pos: 0,
            pending: Pending::EMPTY,
            cfg,
            started: false,
            space_pending: false,
        }
    }

    /// Prepares the output of the next input character; `None` at the end of the text.
    fn refill(&mut self) -> Option<()> {
        loop {
            let rest = self.text.get(self.pos..).filter(|r| !r.is_empty())?;
            let (c, len) = decode_lossy(rest);
            if self.cfg.remove_space && is_py_space(c) {
                self.pos += len;
                self.space_pending = self.started;
                continue;
            }
            if self.space_pending {
                self.space_pending = false;
                self.pending = Pending::inline(b" ");
                return Some(());
            }
            self.started = true;
            if self.cfg.quotes && (c == '`' || c == '\'') && rest.get(1) == Some(&rest[0]) {
                self.pos += 2;
                self.pending = Pending::inline(b"\"");
                return Some(());
            }
            self.pos += len;
            self.pending = self.map_char(c);
            return Some(());
        }
    }

    fn map_char(&self, c: char) -> Pending<'s> {
        if c.is_ascii() {
            let b = c as u8;
            return Pending::inline(&[if self.cfg.lower {
                b.to_ascii_lowercase()
            } else {
                b
            }]);
        }
        if self.cfg.hangul && ('\u{AC00}'..='\u{D7A3}').contains(&c) {
            // Unicode 3.12: S = 0xAC00 + (L * 21 + V) * 28 + T.
            let s = c as u32 - 0xAC00;
            let mut buf = [0u8; 12];
            let mut n = 0;
            for (jamo, present) in [
                (0x1100 + s / 588, true),
                (0x1161 + (s % 588) / 28, true),
                (0x11A7 + s % 28, !s.is_multiple_of(28)),
            ] {
                if let (true, Some(j)) = (present, char::from_u32(jamo)) {
                    n += j.encode_utf8(&mut buf[n..]).len();
                }
            }
            return Pending::inline(&buf[..n]);
        }
        let mut utf8 = [0u8; 4];
        let bytes = c.encode_utf8(&mut utf8).as_bytes();
        match self
            .cfg
            .map
            .and_then(|m| m.trie().exact(bytes).map(|v| m.replacement(v)))
        {
            Some(replacement) => Pending::Slice(replacement),
            None => Pending::inline(bytes),
        }
    }

    /// The next byte of the preprocessed text.
    #[inline]
    pub(crate) fn next_byte(&mut self) -> Option<u8> {
        loop {
            if let Some(b) = self.pending.pop() {
                return Some(b);
            }
            self.refill()?;
        }
    }
}

/// A small window of preprocessed bytes ahead of the normaliser, so that its lookups read a slice; a lookup that
/// runs past the window continues on a clone of the cursor, so the window's size never changes a result.
pub(crate) struct Lookahead<'t, 's> {
    rest: Preprocessed<'t, 's>,
    buf: [u8; LOOKAHEAD],
    start: usize,
    end: usize,
}

const LOOKAHEAD: usize = 32;

impl<'t, 's> Lookahead<'t, 's> {
    pub(crate) fn new(rest: Preprocessed<'t, 's>) -> Self {
        Lookahead {
            rest,
            buf: [0; LOOKAHEAD],
            start: 0,
            end: 0,
        }
    }

    /// Refills the window when it runs low; afterwards it is empty only at the end of the text.
    #[inline]
    fn top_up(&mut self) {
        if self.end - self.start >= LOOKAHEAD / 2 {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < LOOKAHEAD {
            let Some(b) = self.rest.next_byte() else {
                break;
            };
            self.buf[self.end] = b;
            self.end += 1;
        }
    }

    /// The next byte, if any (call `top_up` first).
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.buf[..self.end].get(self.start).copied()
    }

    /// All bytes ahead: the window, then the rest of the text.
    #[inline]
    fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        let mut more: Option<Preprocessed<'t, 's>> = None;
        self.buf[self.start..self.end]
            .iter()
            .copied()
            .chain(core::iter::from_fn(move || {
                more.get_or_insert_with(|| self.rest.clone()).next_byte()
            }))
    }

    #[inline]
    fn next_byte(&mut self) -> Option<u8> {
        if self.start == self.end {
            self.top_up();
        }
        let b = self.buf[..self.end].get(self.start).copied()?;
        self.start += 1;
        Some(b)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Stage 2: SentencePiece's Normalizer::Normalize
// ---------------------------------------------------------------------------------------------------------------

/// The result of `NormalizePrefix`: the output for the next `len` input bytes.
enum Prefix<'s> {
    /// Copy the input bytes unchanged (a user-defined piece, or a character the charsmap does not cover).
    Raw,
    /// The charsmap's replacement.
    Mapped(&'s [u8]),
}

impl<'a> Tokenizer<'a> {
    /// SentencePiece's `NormalizePrefix`: user-defined pieces pass through whole (longest match), else the longest
    /// charsmap rule, else one character. `None` at the end of the input.
    fn normalize_prefix(&self, input: &mut Lookahead<'_, 'a>) -> Option<(Prefix<'a>, usize)> {
        input.top_up();
        let first = input.peek()?;
        if self.max_ud_bytes > 0
            && self.ud_first_bytes[usize::from(first >> 5)] & (1 << (first & 31)) != 0
        {
            let mut node = ROOT;
            let mut best = 0;
            for (i, b) in input.bytes().take(self.max_ud_bytes).enumerate() {
                let Some(next) = self.trie.child(node, b) else {
                    break;
                };
                node = next;
                let ud = self
                    .trie
                    .value(node)
                    .and_then(|id| self.types.get(id as usize));
                if ud.is_some_and(|t| t & 7 == PIECE_USER_DEFINED) {
                    best = i + 1;
                }
            }
            if best > 0 {
                return Some((Prefix::Raw, best));
            }
        }
        if let Some(map) = &self.charsmap {
            if let Some((len, value)) = map.trie().longest_prefix(input.bytes()) {
                return Some((Prefix::Mapped(map.replacement(value)), len));
            }
        }
        Some((Prefix::Raw, one_char_len(first)))
    }

    /// Streams the normalised form of `input` into `out`, byte by byte: SentencePiece's `Normalize` (leading
    /// whitespace skipped, dummy prefix, extra whitespace removed, spaces escaped to U+2581). Trailing spaces are
    /// NOT removed here: `out` sees them and drops them at the end (it knows where the text ends).
    pub(crate) fn normalize_stream<B>(
        &self,
        input: Preprocessed<'_, 'a>,
        out: &mut impl FnMut(u8) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut input = Lookahead::new(input);
        let remove_extra = self.remove_extra_whitespaces();
        if remove_extra {
            while let Some((prefix, len)) = self.normalize_prefix(&mut input) {
                let is_space = match prefix {
                    Prefix::Raw => len == 1 && input.peek() == Some(b' '),
                    Prefix::Mapped(s) => s == b" ",
                };
                if !is_space {
                    break;
                }
                for _ in 0..len {
                    input.next_byte();
                }
            }
        }
        input.top_up();
        if input.peek().is_none() {
            return ControlFlow::Continue(());
        }
        let space: &[u8] = self.space_symbol;
        let mut emit = |b: u8| {
            if b == b' ' {
                space.iter().try_for_each(|&s| out(s))
            } else {
                out(b)
            }
        };
        if self.add_dummy_prefix() {
            emit(b' ')?;
        }
        let mut is_prev_space = remove_extra;
        while let Some((prefix, len)) = self.normalize_prefix(&mut input) {
            // `sp` minus its leading spaces while the previous output ended in a space.
            let mut dropping = is_prev_space;
            let mut last = None;
            let mut take = |b: u8| {
                if dropping && b == b' ' {
                    return ControlFlow::Continue(());
                }
                dropping = false;
                last = Some(b);
                emit(b)
            };
            match prefix {
                Prefix::Raw => {
                    for _ in 0..len {
                        if let Some(b) = input.next_byte() {
                            take(b)?;
                        }
                    }
                }
                Prefix::Mapped(s) => {
                    for _ in 0..len {
                        input.next_byte();
                    }
                    s.iter().try_for_each(|&b| take(b))?;
                }
            }
            if let Some(b) = last {
                is_prev_space = b == b' ';
            }
            if !remove_extra {
                is_prev_space = false;
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;

    #[test]
    fn decode_lossy_matches_from_utf8_lossy() {
        let cases: &[&[u8]] = &[
            b"abc",
            "h\u{e9}llo \u{1F600}".as_bytes(),
            b"\xff\xfe",
            b"\xe2\x82",
            b"\xe2\x82\x28",
            b"\xf0\x9f\x98",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xf0\x80\x80\x80a",
            b"\xe0\x80\xaf",
            b"\x80\x80",
        ];
        for bytes in cases {
            let mut out = [0u8; 64];
            let mut n = 0;
            let mut i = 0;
            while i < bytes.len() {
                let (c, len) = decode_lossy(&bytes[i..]);
                n += c.encode_utf8(&mut out[n..]).len();
                i += len;
            }
            let expected = std::string::String::from_utf8_lossy(bytes);
            assert_eq!(&out[..n], expected.as_bytes(), "{bytes:?}");
        }
    }

    #[test]
    fn py_space_matches_python_isspace() {
        // Python 3.11: [c for c in map(chr, range(0x110000)) if c.isspace()]
        let expected = [
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000,
            0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028,
            0x2029, 0x202f, 0x205f, 0x3000,
        ];
        let got = (0..0x11_0000u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_py_space(c))
            .map(|c| c as u32);
        assert!(got.eq(expected.iter().copied()));
    }

    #[test]
    fn preprocessing_collapses_spaces_and_quotes_without_a_map() {
        let cfg = PreConfig {
            map: None,
            lower: true,
            remove_space: true,
            quotes: true,
            hangul: true,
        };
        let mut p = Preprocessed::new("  A``b''c '''  \u{3000}D\u{1c}\u{d55c} ".as_bytes(), cfg);
        let mut out = [0u8; 64];
        let mut n = 0;
        while let Some(b) = p.next_byte() {
            out[n] = b;
            n += 1;
        }
        assert_eq!(
            core::str::from_utf8(&out[..n]).unwrap(),
            "a\"b\"c \"' d \u{1112}\u{1161}\u{11ab}"
        );
    }
}
