//! `albert-edge classify`: run a blob on one input on the host, through the same forward pass as the device.

use albert_edge::model::{classify_parallel, is_int8, scratch_size_for_speed, Inputs, Precision};
use albert_edge::parallel::Parallel;
use albert_edge::Model;
use anyhow::{anyhow, bail, Result};

use crate::common::check_finite;
use serde::Serialize;

/// The precision flag of `classify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    /// The int8 engine (needs a blob converted with `--weights int8`).
    Int8,
    /// The f32 host reference.
    Fp32,
}

/// One classification.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    /// Name of the most probable label.
    pub label: String,
    /// `softmax(logits)`, in label-id order.
    pub probabilities: Vec<f32>,
    /// Raw classifier outputs, in label-id order.
    pub logits: Vec<f32>,
}

/// Parses a space- or comma-separated list of non-negative integers (`"2 10975 3"`); `what` names the flag.
pub fn parse_ids(text: &str, what: &str) -> Result<Vec<u32>> {
    let ids = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| anyhow!("{what}: {s:?} is not a non-negative integer"))
        })
        .collect::<Result<Vec<u32>>>()?;
    if ids.is_empty() {
        bail!("{what} is empty; give space-separated token ids including [CLS] and [SEP], e.g. \"2 10975 3\"");
    }
    Ok(ids)
}

/// Numerically stable softmax (in `f64`, rounded to `f32`).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Runs `model` on `ids` (with `type_ids`, empty = all 0), the int8 engine's work shared out by `parallel` (the
/// logits do not depend on it). `precision` `None` picks int8 for an int8 blob and fp32 otherwise.
pub fn run(
    model: &Model,
    ids: &[u32],
    type_ids: &[u32],
    precision: Option<PrecisionArg>,
    parallel: &dyn Parallel,
) -> Result<Classification> {
    let precision = match precision {
        Some(PrecisionArg::Int8) => Precision::Int8,
        Some(PrecisionArg::Fp32) => Precision::F32,
        None if is_int8(model) => Precision::Int8,
        None => Precision::F32,
    };
    if precision == Precision::Int8 && !is_int8(model) {
        bail!("--precision int8 needs an int8 blob; this one holds fp32 weights (convert with --weights int8, or use --precision fp32)");
    }
    let c = model.config();
    let max = c.max_position_embeddings;
    if ids.len() > max {
        bail!(
            "the input has {} tokens; this model takes at most {max} (max_position_embeddings)",
            ids.len()
        );
    }
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
        bail!(
            "token id {id} is outside the vocabulary (vocab_size {})",
            c.vocab_size
        );
    }
    if let Some(&t) = type_ids.iter().find(|&&t| t as usize >= c.type_vocab_size) {
        bail!(
            "token type id {t} is outside type_vocab_size {}",
            c.type_vocab_size
        );
    }
    if !type_ids.is_empty() && type_ids.len() != ids.len() {
        bail!(
            "--type-ids has {} values for {} token ids",
            type_ids.len(),
            ids.len()
        );
    }
    let mut arena = vec![0u8; scratch_size_for_speed(c, ids.len(), precision)];
    let mut logits = vec![0f32; c.num_labels];
    let inputs = Inputs {
        input_ids: ids,
        token_type_ids: type_ids,
        attention_mask: &[],
    };
    classify_parallel(model, precision, &inputs, &mut arena, &mut logits, parallel)
        .map_err(|e| anyhow!("{e}"))?;
    check_finite(&logits)?;
    let probabilities = softmax(&logits);
    let best =
        probabilities.iter().enumerate().fold(
            0,
            |best, (i, &p)| if p > probabilities[best] { i } else { best },
        );
    Ok(Classification {
        label: model.label(best).to_string(),
        probabilities,
        logits,
    })
}

/// The human-readable form: the label, then one line per label with probability and logit. Label names are
/// printed with their control characters escaped ([`crate::console::escape_control`]).
pub fn render_text(model: &Model, r: &Classification) -> String {
    use crate::console::escape_control;
    let mut s = format!("label: {}\n", escape_control(&r.label));
    let names: Vec<_> = (0..r.logits.len())
        .map(|i| escape_control(model.label(i)))
        .collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    for ((name, p), l) in names.iter().zip(&r.probabilities).zip(&r.logits) {
        s.push_str(&format!("  {name:<width$}  p = {p:.6}  logit = {l:+.6}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1000.0, f32::NEG_INFINITY]);
        assert_eq!(p, [0.5, 0.5, 0.0]);
    }

    #[test]
    fn parse_ids_accepts_spaces_and_commas() {
        assert_eq!(parse_ids(" 2 10975,3 ", "--ids").unwrap(), [2, 10975, 3]);
        assert!(parse_ids("2 -1", "--ids").is_err());
        assert!(parse_ids("  ", "--ids").is_err());
    }
}
