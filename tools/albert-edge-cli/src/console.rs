//! What the CLI prints: standard output whose write errors are errors (not panics), and text from a blob or a
//! checkpoint (label names) with its control characters escaped, so that it cannot forge output lines or send
//! terminal escape sequences.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

/// A failed write to standard output. `main` ends quietly with status 0 when the reader went away (a broken
/// pipe: `albert-edge tokenize ... | head -1`) and prints one `error:` line for anything else (a full disk).
#[derive(Debug)]
pub struct StdoutError(pub io::Error);

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

impl StdoutError {
    /// Whether the reader of standard output has gone away.
    pub fn is_broken_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(StdoutError)
}

/// Writes `text` and a newline to standard output and flushes it.
pub fn println(text: &str) -> Result<(), StdoutError> {
    print(&format!("{text}\n"))
}

/// `text` with every control character (C0, DEL, C1: newlines, tabs, `ESC`, ...) written as a Rust escape
/// (`\n`, `\t`, `\u{1b}`) and backslashes doubled, so that the result is one line of plain text that says what
/// the original held. Text without either is returned as it is.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() || c == '\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_control_leaves_plain_text_and_escapes_what_could_forge_output() {
        assert!(matches!(
            escape_control("positive ünïcode 😀"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape_control("pos\nlabel: negative\u{1b}[2J\t\\x\u{85}"),
            "pos\\nlabel: negative\\u{1b}[2J\\t\\\\x\\u{85}"
        );
    }
}
