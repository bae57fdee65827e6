//! Calibration for the converter's GPTQ rounding: the sentences, and what every linear layer sees on them in the
//! fp32 model.
//!
//! Sentences come from a file (`--calibrate FILE`: a TSV whose header has a `sentence` column, or plain text, one
//! sentence per line) or from the built-in set, 256 sentences of the GLUE SST-2 *train* split (provenance in
//! `data/README.md`). They are tokenized with the model's own tokenizer section, exactly as the device would.
//!
//! Each sequence runs through the core's own f32 forward pass ([`classify_observed_with`]) with its linear layers
//! multiplied by [`Panels`] (the same bits as the core's default, several times faster); an [`Observer`] adds
//! every linear layer's input row `x` to that layer's `H = Σ x xᵀ` (and `Σ x`, for bias correction). The ONE
//! shared layer's sites pool their rows over **all** `num_hidden_layers` passes: the weight is shared, so the
//! error that matters is the sum over every pass. Q, K and V share their input, hence one `H`.

use std::path::Path;

use albert_edge::model::{classify_observed_with, scratch_size, Inputs, Observer, Precision, Site};
use albert_edge::tokenizer::Tokenizer;
use albert_edge::{AlbertConfig, Model};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::ProgressBar;

use crate::f32_linear::Panels;
use crate::tokenizer_section::to_words;

/// The built-in calibration sentences (GLUE SST-2 train; see `data/README.md`).
pub const DEFAULT_SENTENCES: &str = include_str!("../data/calibration-sst2-train-256.txt");

/// Rows buffered per site before they are folded into `H` with one matrix product.
const BATCH_ROWS: usize = 256;

// ---------------------------------------------------------------------------------------------------------------
// Sentences
// ---------------------------------------------------------------------------------------------------------------

/// Reads calibration sentences from `path` (see [`parse_sentences`]).
pub fn read_sentences(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read calibration file {}", path.display()))?;
    let text = crate::textfile::decode_utf8(bytes, &path.display().to_string())
        .context("cannot read calibration file")?;
    parse_sentences(&text, &path.display().to_string())
}

/// Sentences of a TSV whose header line has a `sentence` column (GLUE layout), or else of plain text, one per
/// non-blank line. Surrounding whitespace is trimmed (GLUE's trailing space included). An empty set is an error
/// naming `origin`.
pub fn parse_sentences(text: &str, origin: &str) -> Result<Vec<String>> {
    let mut lines = text.lines();
    let header = lines.clone().next().unwrap_or("");
    let column = header
        .split('\t')
        .position(|f| f.trim() == "sentence")
        .filter(|_| header.contains('\t') || header.trim() == "sentence");
    let sentences: Vec<String> = match column {
        Some(col) => {
            lines.next();
            lines
                .filter_map(|l| l.split('\t').nth(col))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }
        None => lines
            .map(|l| l.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    };
    if sentences.is_empty() {
        bail!("calibration file {origin} has no sentences; give one sentence per line (or a TSV with a `sentence` column), or convert with --no-calibrate");
    }
    Ok(sentences)
}

/// Tokenizes every sentence as `[CLS] text [SEP]`, truncated to `max_len` tokens, with the tokenizer `section`.
pub fn tokenize(section: &[u8], sentences: &[String], max_len: usize) -> Result<Vec<Vec<u32>>> {
    let words = to_words(section);
    let tok = Tokenizer::from_section(bytemuck::cast_slice(&words))
        .map_err(|e| anyhow!("the tokenizer section does not validate: {e}"))?;
    let mut ids = vec![0u32; max_len.max(3)];
    let mut types = vec![0u32; max_len.max(3)];
    sentences
        .iter()
        .map(|s| {
            let mut ws = vec![0u8; tok.workspace_size(s.len())];
            let n = tok
                .encode(s, None, max_len, &mut ws, &mut ids, &mut types)
                .map_err(|e| anyhow!("cannot tokenize calibration sentence {s:?}: {e}"))?;
            Ok(ids[..n].to_vec())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------------------------

/// What one linear layer saw.
#[derive(Debug, Clone)]
pub struct SiteStats {
    /// Input width.
    pub cols: usize,
    /// Rows seen (tokens x passes).
    pub rows: u64,
    /// `Σ x xᵀ`, `(cols, cols)` row-major.
    pub xtx: Vec<f64>,
    /// `Σ x`, `(cols)`.
    pub sum: Vec<f64>,
    /// Largest `|x|` per channel, `(cols)`.
    pub max_abs: Vec<f32>,
    batch: Vec<f32>, // (<= BATCH_ROWS, cols + 1): rows not yet folded in, each with a trailing 1
    prod: Vec<f32>,  // (cols + 1, cols + 1): batchᵀ batch, whose last row is Σ x
}

impl SiteStats {
    fn new(cols: usize) -> Self {
        SiteStats {
            cols,
            rows: 0,
            xtx: vec![0.0; cols * cols],
            sum: vec![0.0; cols],
            max_abs: vec![0.0; cols],
            batch: Vec::with_capacity(BATCH_ROWS * (cols + 1)),
            prod: vec![0.0; (cols + 1) * (cols + 1)],
        }
    }

    fn push(&mut self, x: &[f32]) {
        self.rows += 1;
        self.max_abs
            .iter_mut()
            .zip(x)
            .for_each(|(m, &v)| *m = m.max(v.abs()));
        self.batch.extend_from_slice(x);
        self.batch.push(1.0);
        if self.batch.len() >= BATCH_ROWS * (self.cols + 1) {
            self.flush();
        }
    }

    /// Folds the buffered rows into `xtx` and `sum`: one `f32` product of at most [`BATCH_ROWS`] rows
    /// (`batchᵀ batch`; the trailing 1 makes its last row `Σ x`), added to the `f64` totals.
    fn flush(&mut self) {
        let n = self.cols + 1;
        let k = self.batch.len() / n;
        if k == 0 {
            return;
        }
        // SAFETY: the pointers and strides describe `batch` (k, n) read as its transpose (n, k), `batch` (k, n)
        // and `prod` (n, n), all row-major, in bounds; `prod` aliases neither input.
        unsafe {
            gemm::gemm(
                n,
                n,
                k,
                self.prod.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.batch.as_ptr(),
                n as isize,
                1,
                self.batch.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let c = self.cols;
        for (i, xtx_row) in self.xtx.chunks_exact_mut(c).enumerate() {
            let p = &self.prod[i * n..i * n + c];
            xtx_row.iter_mut().zip(p).for_each(|(a, &b)| *a += b as f64);
        }
        let last = &self.prod[c * n..c * n + c];
        self.sum
            .iter_mut()
            .zip(last)
            .for_each(|(a, &b)| *a += b as f64);
        self.batch.clear();
    }

    fn merge(&mut self, other: SiteStats) {
        self.rows += other.rows;
        self.max_abs
            .iter_mut()
            .zip(&other.max_abs)
            .for_each(|(a, &b)| *a = a.max(b));
        self.xtx
            .iter_mut()
            .zip(&other.xtx)
            .for_each(|(a, b)| *a += b);
        self.sum
            .iter_mut()
            .zip(&other.sum)
            .for_each(|(a, b)| *a += b);
    }

    /// The outlier channels of this input: those whose largest calibrated `|x|` exceeds `ratio` times the median
    /// channel's, at most `limit` of them (the largest), in increasing order. They become the matrix's side
    /// columns (`f32`), out of the int8 activation's scale and out of the weights' rounding. None when `ratio` is
    /// not positive.
    pub fn outliers(&self, ratio: f32, limit: usize) -> Vec<u32> {
        if ratio.is_nan() || ratio <= 0.0 || self.max_abs.is_empty() || limit == 0 {
            return Vec::new();
        }
        let mut sorted = self.max_abs.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let mut big: Vec<u32> = (0..self.cols as u32)
            .filter(|&c| self.max_abs[c as usize] > ratio * median)
            .collect();
        big.sort_by(|&a, &b| self.max_abs[b as usize].total_cmp(&self.max_abs[a as usize]));
        big.truncate(limit);
        big.sort_unstable();
        big
    }

    /// `E[x]` over every row seen.
    pub fn mean(&self) -> Vec<f64> {
        let n = self.rows.max(1) as f64;
        self.sum.iter().map(|s| s / n).collect()
    }
}

/// Per-site statistics of a calibration run. [`Site::Key`] and [`Site::Value`] are not stored: their input is
/// [`Site::Query`]'s ([`Statistics::get`] maps them).
#[derive(Debug, Clone, Default)]
pub struct Statistics {
    sites: [Option<SiteStats>; Site::ALL.len()],
    /// Sequences run.
    pub sequences: usize,
    /// Tokens in them.
    pub tokens: usize,
}

impl Statistics {
    /// The statistics of the input of `site`.
    pub fn get(&self, site: Site) -> Option<&SiteStats> {
        self.sites[slot(site)].as_ref()
    }
}

/// Where a site's statistics live; Key and Value share Query's.
fn slot(site: Site) -> usize {
    let site = match site {
        Site::Key | Site::Value => Site::Query,
        s => s,
    };
    Site::ALL.iter().position(|&s| s == site).unwrap_or(0)
}

struct Collector {
    stats: Statistics,
}

impl Observer for Collector {
    fn linear_input(&mut self, site: Site, _pass: usize, x: &[f32]) {
        if matches!(site, Site::Key | Site::Value) {
            return;
        }
        self.stats.sites[slot(site)]
            .get_or_insert_with(|| SiteStats::new(x.len()))
            .push(x);
    }
}

/// Sequences per partial statistic. Partials are summed in sequence order, so the result does not depend on
/// how many threads ran them.
const CHUNK: usize = 16;

/// The statistics of a calibration run may take this many times the (f32) model's size, or
/// [`STATISTICS_FLOOR`], whichever is larger. Each layer's `H` is `n x n` for an `n`-wide input, so a config whose
/// widths are lopsided (an `intermediate_size` far above `hidden_size`) can ask for far more memory than its
/// weights take: 65536 x 65536 f64 is 34 GB, from a checkpoint of half a megabyte.
pub const STATISTICS_PER_MODEL_BYTE: u64 = 8;
/// See [`STATISTICS_PER_MODEL_BYTE`].
pub const STATISTICS_FLOOR: u64 = 512 << 20;

/// Bytes one partial [`Statistics`] takes under `c`: per stored site, `H` in `f64`, the `f32` product buffer and
/// the row batch.
pub fn statistics_bytes(c: &AlbertConfig) -> u64 {
    let (e, h, i) = (
        c.embedding_size as u64,
        c.hidden_size as u64,
        c.intermediate_size as u64,
    );
    // MappingIn, Query (Key and Value share it), Dense, Ffn, FfnOutput, Pooler, Classifier.
    [e, h, h, h, i, h, h]
        .iter()
        .map(|&n| n * n * 8 + (n + 1) * (n + 1) * 4 + BATCH_ROWS as u64 * (n + 1) * 4 + n * 8)
        .sum()
}

/// How many partial statistics may be alive at once (the running total included) for a model of `model_bytes`:
/// at least 2, or an error saying that GPTQ's statistics would dwarf the model.
fn statistics_slots(c: &AlbertConfig, model_bytes: usize) -> Result<usize> {
    let limit = (model_bytes as u64)
        .saturating_mul(STATISTICS_PER_MODEL_BYTE)
        .max(STATISTICS_FLOOR);
    let one = statistics_bytes(c);
    let slots = (limit / one.max(1)) as usize;
    if slots < 2 {
        bail!(
            "GPTQ calibration of this model needs {} MB for its layers' input statistics (an n x n matrix per layer input: embedding_size {}, hidden_size {}, intermediate_size {}), more than {STATISTICS_PER_MODEL_BYTE} times the model's {:.1} MB; convert with --rounding nearest",
            (2 * one) >> 20,
            c.embedding_size,
            c.hidden_size,
            c.intermediate_size,
            model_bytes as f64 / (1 << 20) as f64
        );
    }
    Ok(slots)
}

/// Runs every sequence through the f32 forward pass of `model` (its `f32` linear layers multiplied by [`Panels`]),
/// on all cores, and gathers each linear layer's input statistics. `progress` advances by one per sequence. The
/// statistics' memory is bounded by the model's size ([`STATISTICS_PER_MODEL_BYTE`]): fewer threads run if all
/// cores' partials would not fit, and a model whose statistics alone would not is an error.
pub fn collect(
    model: &Model,
    sequences: &[Vec<u32>],
    progress: &ProgressBar,
) -> Result<Statistics> {
    let slots = statistics_slots(model.config(), model.as_bytes().len())?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(slots - 1);
    let panels = Panels::new(model);
    let panels = &panels;
    let chunks: Vec<&[Vec<u32>]> = sequences.chunks(CHUNK).collect();
    let mut total = Statistics::default();
    for wave in chunks.chunks(threads.max(1)) {
        let parts: Vec<Result<Statistics>> = std::thread::scope(|scope| {
            let handles: Vec<_> = wave
                .iter()
                .map(|chunk| scope.spawn(move || collect_chunk(model, panels, chunk, progress)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("calibration worker panicked"))
                .collect()
        });
        for part in parts {
            total.merge(part?);
        }
    }
    Ok(total)
}

fn collect_chunk(
    model: &Model,
    panels: &Panels,
    sequences: &[Vec<u32>],
    progress: &ProgressBar,
) -> Result<Statistics> {
    let config: &AlbertConfig = model.config();
    let mut collector = Collector {
        stats: Statistics::default(),
    };
    let mut logits = vec![0f32; config.num_labels];
    let mut arena = Vec::new();
    for ids in sequences {
        let need = scratch_size(config, ids.len(), Precision::F32);
        if arena.len() < need {
            arena.resize(need, 0u8);
        }
        classify_observed_with(
            model,
            &Inputs::ids(ids),
            &mut arena,
            &mut logits,
            &mut collector,
            &mut &*panels,
        )
        .map_err(|e| anyhow!("calibration forward pass failed: {e}"))?;
        collector.stats.sequences += 1;
        collector.stats.tokens += ids.len();
        progress.inc(1);
    }
    collector
        .stats
        .sites
        .iter_mut()
        .flatten()
        .for_each(SiteStats::flush);
    Ok(collector.stats)
}

impl Statistics {
    fn merge(&mut self, part: Statistics) {
        self.sequences += part.sequences;
        self.tokens += part.tokens;
        for (slot, s) in self.sites.iter_mut().zip(part.sites) {
            match (slot.as_mut(), s) {
                (Some(t), Some(s)) => t.merge(s),
                (None, s) => *slot = s,
                (Some(_), None) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_sentences_reads_glue_tsv_plain_text_and_rejects_empty() {
        let tsv = "sentence\tlabel\nhide new secretions \t0\n\ncontains no wit \t0\n";
        assert_eq!(
            parse_sentences(tsv, "x").unwrap(),
            ["hide new secretions", "contains no wit"]
        );
        let tsv = "index\tsentence\n0\tit 's a charming journey\n";
        assert_eq!(
            parse_sentences(tsv, "x").unwrap(),
            ["it 's a charming journey"]
        );
        let plain = "first line\n\n  second line  \n";
        assert_eq!(
            parse_sentences(plain, "x").unwrap(),
            ["first line", "second line"]
        );
        let err = parse_sentences("\n \n", "cal.txt").unwrap_err().to_string();
        assert!(err.contains("cal.txt has no sentences"), "{err}");
        assert!(parse_sentences("sentence\tlabel\n", "x").is_err());
    }

    /// ALBERT-base's statistics fit well inside its bound (it gets every core up to the limit); a lopsided config
    /// whose `H` matrices would need 34 GB from a tiny checkpoint is refused before anything is allocated.
    #[test]
    fn statistics_slots_bound_memory_by_the_model_size() {
        let base = crate::synthetic::albert_base_config(2);
        let one = statistics_bytes(&base);
        assert!((140 << 20..160 << 20).contains(&one), "{one}");
        assert_eq!(statistics_slots(&base, 47 << 20).unwrap(), 3);
        let wide = AlbertConfig {
            embedding_size: 1,
            hidden_size: 1,
            num_attention_heads: 1,
            intermediate_size: 65536,
            ..base
        };
        let err = statistics_slots(&wide, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("intermediate_size 65536"), "{err}");
        assert!(err.contains("convert with --rounding nearest"), "{err}");
    }

    #[test]
    fn default_sentences_are_256_trimmed_lines() {
        let s = parse_sentences(DEFAULT_SENTENCES, "built-in").unwrap();
        assert_eq!(s.len(), 256);
        assert!(DEFAULT_SENTENCES
            .lines()
            .all(|l| l == l.trim() && !l.is_empty()));
    }

    #[test]
    fn site_stats_accumulate_xtx_and_sum_across_batches() {
        let mut s = SiteStats::new(3);
        let rows: Vec<[f32; 3]> = (0..BATCH_ROWS + 7)
            .map(|i| [i as f32 * 0.01, 1.0 - i as f32 * 0.02, (i % 5) as f32])
            .collect();
        rows.iter().for_each(|r| s.push(r));
        s.flush();
        for i in 0..3 {
            for j in 0..3 {
                let want: f64 = rows.iter().map(|r| r[i] as f64 * r[j] as f64).sum();
                // f32 products within a batch, f64 across batches.
                assert!((s.xtx[i * 3 + j] - want).abs() < 1e-5 * want.abs().max(1.0));
            }
            let want: f64 = rows.iter().map(|r| r[i] as f64).sum();
            assert!((s.sum[i] - want).abs() < 1e-5 * want.abs().max(1.0));
        }
        assert_eq!(s.rows, rows.len() as u64);
    }
}
