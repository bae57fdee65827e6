//! The text files the CLI reads (`eval`'s TSV, calibration sentences, `tokenize --input`, `config.json`): UTF-8,
//! with or without a byte-order mark, and errors that name the line.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The UTF-8 byte-order mark some editors put first in a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `bytes` without a leading byte-order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// Reads `path` as UTF-8 text (a leading byte-order mark dropped). Invalid UTF-8 is an error naming the line and
/// the byte within it: `dev.tsv:12: invalid UTF-8 at byte 7 of the line; save the file as UTF-8`.
pub fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_utf8(bytes, &path.display().to_string())
}

/// [`read_utf8`] on bytes already read; `origin` names them in errors.
pub fn decode_utf8(mut bytes: Vec<u8>, origin: &str) -> Result<String> {
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let line_start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            bail!(
                "{origin}:{line}: invalid UTF-8 at byte {} of the line; save the file as UTF-8",
                at - line_start + 1
            )
        }
    }
}

/// One line of [`lines_lossy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: usize,
    /// The line without its `\n` (or `\r\n`); invalid UTF-8 replaced by U+FFFD.
    pub text: Cow<'a, str>,
    /// Whether the line was valid UTF-8 as it stood.
    pub valid: bool,
}

/// The lines of `bytes` (a leading byte-order mark dropped), each decoded on its own, so one line of invalid
/// UTF-8 does not cost the others: it is replaced as `String::from_utf8_lossy` does and marked.
pub fn lines_lossy(bytes: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let bytes = strip_bom(bytes);
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    // An empty input has no lines (as `str::lines`), not one empty line.
    let mut parts = (!bytes.is_empty()).then(|| bytes.split(|&b| b == b'\n'));
    let mut number = 0;
    std::iter::from_fn(move || {
        let raw = parts.as_mut()?.next()?;
        number += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        Some(Line {
            number,
            valid: std::str::from_utf8(raw).is_ok(),
            text: String::from_utf8_lossy(raw),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_utf8_drops_a_bom_and_names_the_bad_line_and_byte() {
        assert_eq!(
            decode_utf8(b"\xEF\xBB\xBFa\tb\n".to_vec(), "f").unwrap(),
            "a\tb\n"
        );
        let err = decode_utf8(b"ok\nfine\nab\xFFcd\n".to_vec(), "d.tsv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "d.tsv:3: invalid UTF-8 at byte 3 of the line; save the file as UTF-8"
        );
        let err = decode_utf8(b"\xC3".to_vec(), "x").unwrap_err();
        assert!(
            err.to_string().starts_with("x:1: invalid UTF-8 at byte 1"),
            "{err}"
        );
    }

    #[test]
    fn lines_lossy_keeps_the_valid_lines_and_marks_the_others() {
        let lines: Vec<Line> = lines_lossy(b"\xEF\xBB\xBFone\r\ntw\xFFo\n\nthree").collect();
        let got: Vec<(usize, &str, bool)> = lines
            .iter()
            .map(|l| (l.number, l.text.as_ref(), l.valid))
            .collect();
        assert_eq!(
            got,
            [
                (1, "one", true),
                (2, "tw\u{FFFD}o", false),
                (3, "", true),
                (4, "three", true)
            ]
        );
        assert_eq!(lines_lossy(b"").count(), 0);
        assert_eq!(lines_lossy(b"a\n").count(), 1);
    }
}
