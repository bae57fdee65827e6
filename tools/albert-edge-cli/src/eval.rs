//! `albert-edge eval`: accuracy of a blob on a labelled TSV (SST-2's `sentence` / `label` format), int8 engine
//! against the f32 reference on the same weights.
//!
//! Each sentence (trailing whitespace stripped, as the reference evaluation does) is tokenized with the blob's
//! tokenizer section and classified twice: by the int8 engine and by the f32 reference. For an int8 blob the
//! reference runs `f32` activations over the dequantised int8 weights, so the comparison isolates activation
//! quantisation; for an fp32 blob only the reference runs and the int8 figures are absent. Throughput counts the
//! int8 engine's tokenization and forward pass only (the reference's forward pass and the bookkeeping are not
//! timed); for an fp32 blob it counts the reference instead.

use std::path::Path;
use std::time::{Duration, Instant};

use albert_edge::model::{
    classify, classify_parallel, is_int8, scratch_size, scratch_size_for_speed, Inputs, Precision,
};
use albert_edge::parallel::Parallel;
use albert_edge::Model;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

/// What `eval` measured. Ratios are in `[0, 1]`; int8 fields are `None` for an fp32 blob.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Sentences evaluated.
    pub n: usize,
    /// Accuracy of the int8 engine.
    pub accuracy: Option<f64>,
    /// Accuracy of the f32 reference (over the dequantised weights for an int8 blob).
    pub accuracy_fp32: f64,
    /// Fraction of sentences on which int8 and f32 pick the same label.
    pub agreement: Option<f64>,
    /// Mean over sentences and labels of `|logit_int8 - logit_f32|`.
    pub mean_abs_logit_delta: Option<f64>,
    /// Sentences per second of tokenization + the int8 forward pass (the f32 one for an fp32 blob).
    pub sentences_per_second: f64,
    /// The engine `sentences_per_second` timed: `"int8"` or `"fp32"`.
    pub timed: &'static str,
    /// Threads the int8 engine shared each sentence's work between (the f32 reference runs on one).
    pub threads: usize,
}

/// One labelled row of the TSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The sentence, trailing whitespace removed.
    pub sentence: String,
    /// The label id.
    pub label: usize,
    /// The row's 1-based line number in the TSV (the header is line 1), for messages.
    pub line: usize,
}

/// Refuses a row whose label is not one of the model's `num_labels` ids, naming the TSV line, before anything
/// runs.
pub fn check_labels(examples: &[Example], num_labels: usize, tsv: &Path) -> Result<()> {
    if let Some(e) = examples.iter().find(|e| e.label >= num_labels) {
        bail!(
            "{}:{}: label {} is not a label id of this model (it has {num_labels} labels: 0..={})",
            tsv.display(),
            e.line,
            e.label,
            num_labels - 1
        );
    }
    Ok(())
}

fn sentence_context(e: &Example) -> String {
    format!("the sentence on line {}", e.line)
}

/// Reads a TSV with a header naming `sentence` and `label` columns (other columns allowed); labels are integer
/// ids. Every row must have exactly the header's columns (a tab inside a sentence would shift them), blank
/// lines are skipped, a UTF-8 byte-order mark is allowed; each error names the line. At most `limit` rows.
pub fn read_tsv(path: &Path, limit: Option<usize>) -> Result<Vec<Example>> {
    let text = crate::textfile::read_utf8(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split('\t').collect();
    let column = |name: &str| {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            anyhow!(
                "{}: the header has no `{name}` column; expected a TSV with `sentence` and `label` columns (SST-2 format)",
                path.display()
            )
        })
    };
    let (s_col, l_col) = (column("sentence")?, column("label")?);
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let line_no = i + 2;
        if fields.len() != header.len() {
            bail!(
                "{}:{line_no}: {} tab-separated fields where the header has {} ({}); a sentence may not contain a tab",
                path.display(),
                fields.len(),
                header.len(),
                header.join(", ")
            );
        }
        let (s, l) = (fields[s_col], fields[l_col]);
        let label = l.trim().parse::<usize>().map_err(|_| {
            anyhow!(
                "{}:{line_no}: label {l:?} is not an integer label id",
                path.display()
            )
        })?;
        out.push(Example {
            sentence: s.trim_end().to_string(),
            label,
            line: line_no,
        });
    }
    if out.is_empty() {
        bail!("{} has no examples", path.display());
    }
    Ok(out)
}

fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, &l)| if l > logits[best] { i } else { best })
}

/// Evaluates `model` on `examples`, the int8 engine's work shared out by `parallel` (the logits do not depend on
/// it); `on_row` is called after each one (progress). Labels are meant to be the model's ids (refuse others first
/// with [`check_labels`], which names their TSV line); a label that is not one only counts as a miss.
pub fn evaluate(
    model: &Model,
    examples: &[Example],
    parallel: &dyn Parallel,
    mut on_row: impl FnMut(),
) -> Result<EvalReport> {
    let c = model.config();
    let int8 = is_int8(model);
    let max = c.max_position_embeddings;
    let mut arena = vec![
        0u8;
        scratch_size(c, max, Precision::F32).max(if int8 {
            scratch_size_for_speed(c, max, Precision::Int8)
        } else {
            0
        })
    ];
    let (mut logits_q, mut logits_f) = (vec![0f32; c.num_labels], vec![0f32; c.num_labels]);
    let (mut correct_q, mut correct_f, mut agree) = (0usize, 0usize, 0usize);
    let mut delta_sum = 0f64;
    let mut timed = Duration::ZERO;
    for e in examples {
        let start = Instant::now();
        let (ids, types) = crate::common::encode(model, &e.sentence, None)?;
        let inputs = Inputs {
            input_ids: &ids,
            token_type_ids: &types,
            attention_mask: &[],
        };
        let first = if int8 {
            Precision::Int8
        } else {
            Precision::F32
        };
        let out = if int8 { &mut logits_q } else { &mut logits_f };
        classify_parallel(model, first, &inputs, &mut arena, out, parallel)
            .map_err(|err| anyhow!("{err}"))?;
        timed += start.elapsed();
        crate::common::check_finite(out).with_context(|| sentence_context(e))?;
        if int8 {
            classify(model, Precision::F32, &inputs, &mut arena, &mut logits_f)
                .map_err(|err| anyhow!("{err}"))?;
            crate::common::check_finite(&logits_f)
                .with_context(|| format!("fp32 reference: {}", sentence_context(e)))?;
            let q = argmax(&logits_q);
            correct_q += usize::from(q == e.label);
            agree += usize::from(q == argmax(&logits_f));
            delta_sum += logits_q
                .iter()
                .zip(&logits_f)
                .map(|(a, b)| f64::from((a - b).abs()))
                .sum::<f64>()
                / c.num_labels as f64;
        }
        correct_f += usize::from(argmax(&logits_f) == e.label);
        on_row();
    }
    let n = examples.len();
    let ratio = |k: usize| k as f64 / n as f64;
    Ok(EvalReport {
        n,
        accuracy: int8.then(|| ratio(correct_q)),
        accuracy_fp32: ratio(correct_f),
        agreement: int8.then(|| ratio(agree)),
        mean_abs_logit_delta: int8.then(|| delta_sum / n as f64),
        sentences_per_second: n as f64 / timed.as_secs_f64().max(1e-9),
        timed: if int8 { "int8" } else { "fp32" },
        threads: if int8 { parallel.threads() } else { 1 },
    })
}

/// The human-readable report.
pub fn render_text(r: &EvalReport) -> String {
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    let mut s = format!("n: {}\n", r.n);
    s.push_str(&format!("accuracy (int8): {}\n", pct(r.accuracy)));
    s.push_str(&format!(
        "accuracy (fp32): {}\n",
        pct(Some(r.accuracy_fp32))
    ));
    s.push_str(&format!(
        "int8 / fp32 argmax agreement: {}\n",
        pct(r.agreement)
    ));
    s.push_str(&format!(
        "mean |logit delta|: {}\n",
        r.mean_abs_logit_delta
            .map_or("-".to_string(), |d| format!("{d:.4}"))
    ));
    let threads = if r.threads == 1 {
        String::new()
    } else {
        format!(", {} threads", r.threads)
    };
    s.push_str(&format!(
        "throughput ({}{threads}, tokenization + forward): {:.1} sentences/s\n",
        r.timed, r.sentences_per_second
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tsv_strips_trailing_whitespace_and_honours_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.tsv");
        std::fs::write(&p, "sentence\tlabel\nit 's fine . \t1\nbad \t0\n").unwrap();
        let rows = read_tsv(&p, Some(1)).unwrap();
        assert_eq!(
            rows,
            [Example {
                sentence: "it 's fine .".into(),
                label: 1,
                line: 2
            }]
        );
        std::fs::write(&p, "text\tlabel\nx\t1\n").unwrap();
        assert!(read_tsv(&p, None).is_err());
    }
}
