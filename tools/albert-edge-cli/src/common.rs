//! Helpers shared by several commands: reading a blob, tokenizing an input, the thread pool, refusing
//! non-finite logits, progress bars.

use std::io::IsTerminal;
use std::path::Path;

use albert_edge::format::AlignedBlob;
use albert_edge::parallel::Threads;
use albert_edge::Model;
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reads a blob file (at most [`albert_edge::format::MAX_BLOB_FILE_LEN`] bytes) into an aligned buffer; the caller
/// parses it with `Model::from_bytes`.
pub fn read_blob(path: &Path) -> Result<AlignedBlob> {
    AlignedBlob::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Tokenizes `text` (and `pair`) with the blob's tokenizer section as `[CLS] A [SEP] (B [SEP])`, truncated
/// (longest first) to `max_position_embeddings`. Returns the token ids and token type ids.
pub fn encode(model: &Model, text: &str, pair: Option<&str>) -> Result<(Vec<u32>, Vec<u32>)> {
    let Some(tokenizer) = model.tokenizer() else {
        bail!("the blob has no tokenizer section, so it cannot classify text; pass token ids with --ids \"2 ... 3\" or convert the checkpoint again");
    };
    let max = model.config().max_position_embeddings;
    let text_bytes = text.len() + pair.map_or(0, str::len);
    let mut ws = vec![0u8; tokenizer.workspace_size(text_bytes)];
    let (mut ids, mut types) = (vec![0u32; max], vec![0u32; max]);
    let n = tokenizer
        .encode(text, pair, max, &mut ws, &mut ids, &mut types)
        .map_err(|e| anyhow!("cannot tokenize the input: {e}"))?;
    ids.truncate(n);
    types.truncate(n);
    Ok((ids, types))
}

/// The `--threads N` option: a pool of `N` threads in all, the caller's included (0: one per CPU; 1: none but
/// the caller's, which runs every job itself).
pub fn thread_pool(n: usize) -> Threads {
    match n {
        0 => Threads::available(),
        n => Threads::new(n),
    }
}

/// Refuses logits that are NaN or infinite: no label can honestly be read from them. A blob converted by this
/// tool never gives them; a damaged or hand-made one (finite weights whose products overflow) can.
pub fn check_finite(logits: &[f32]) -> Result<()> {
    if let Some((i, l)) = logits.iter().enumerate().find(|(_, l)| !l.is_finite()) {
        bail!("the model computed a non-finite logit ({l} for label {i}), so no label can be given; the blob's weights are damaged or out of range: convert the checkpoint again");
    }
    Ok(())
}

/// A progress bar labelled `what` on stderr, drawn only when `show` and stderr is a terminal.
pub fn progress_bar(len: usize, show: bool, what: &str) -> ProgressBar {
    let target = if show && std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}
