//! A Hugging Face ALBERT checkpoint directory: `config.json`, the weights file and `spiece.model`.
//!
//! `config.json` is read as transformers 4.x and 5.x write it. Fields that are absent take the defaults of
//! transformers' `AlbertConfig` (as `from_pretrained` would); the tensor shapes are checked against the result
//! later, so a wrong default cannot slip through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use albert_edge::config::MAX_LABELS;
use albert_edge::{Activation, AlbertConfig};
use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The file names `convert` looks for in a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// Preferred weights file.
pub const SAFETENSORS_FILE: &str = "model.safetensors";
/// Fallback weights file (torch zip + pickle).
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
/// The SentencePiece model the tokenizer section is built from.
pub const SPIECE_FILE: &str = "spiece.model";
/// Optional `AlbertTokenizer` options (`do_lower_case`, `keep_accents`, ...).
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// The files of one checkpoint directory, checked to exist.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors` if present, else `pytorch_model.bin`.
    pub weights: PathBuf,
    /// `spiece.model`.
    pub spiece: PathBuf,
}

impl CheckpointDir {
    /// Locates the files in `dir`; a missing one is a one-line error saying what to do.
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{} is not a directory; pass a Hugging Face checkpoint directory (config.json, model.safetensors, spiece.model)", dir.display());
        }
        // A file of the checkpoint that is there but is not a regular file (a link to /dev/zero, a pipe) is
        // named as what it is, instead of being read (forever) or reported missing.
        for name in [CONFIG_FILE, SAFETENSORS_FILE, PYTORCH_FILE, SPIECE_FILE] {
            let path = dir.join(name);
            if let Some(kind) = crate::output::describe_non_file(&path) {
                bail!("{} is {kind}; it must be a regular file", path.display());
            }
        }
        let config = dir.join(CONFIG_FILE);
        if !config.is_file() {
            bail!("{} has no {CONFIG_FILE}; is it a Hugging Face checkpoint directory (as written by save_pretrained)?", dir.display());
        }
        let weights = [SAFETENSORS_FILE, PYTORCH_FILE]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        let Some(weights) = weights else {
            for index in [
                "model.safetensors.index.json",
                "pytorch_model.bin.index.json",
            ] {
                if dir.join(index).is_file() {
                    bail!("{} holds a sharded checkpoint ({index}), which albert-edge does not read; save it again as one file (save_pretrained with a max_shard_size above the model size)", dir.display());
                }
            }
            bail!("{} has neither {SAFETENSORS_FILE} nor {PYTORCH_FILE}; save the model with save_pretrained first", dir.display());
        };
        let spiece = dir.join(SPIECE_FILE);
        if !spiece.is_file() {
            bail!("{} has no {SPIECE_FILE}; copy the SentencePiece model of the base checkpoint (e.g. albert-base-v2) next to config.json", dir.display());
        }
        Ok(CheckpointDir {
            config,
            weights,
            spiece,
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------------------------

/// The fields of `config.json` the converter reads; anything else is ignored.
#[derive(Debug, Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    embedding_size: Option<usize>,
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_hidden_groups: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    inner_group_num: Option<usize>,
    hidden_act: Option<String>,
    max_position_embeddings: Option<usize>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    position_embedding_type: Option<String>,
    num_labels: Option<usize>,
    id2label: Option<BTreeMap<String, String>>,
}

/// What `config.json` says, in the blob's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// Hyper-parameters for the blob header.
    pub config: AlbertConfig,
    /// `num_labels` names in label-id order.
    pub labels: Vec<String>,
}

/// Maps `hidden_act` to the engine's activation. Only names whose function is exactly one of the three is
/// accepted: every tanh-form name below computes `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
/// (`gelu_fast` spells the constant as 0.7978845608, the same `f32`), and `gelu_python` is the erf form.
pub fn activation(name: &str) -> Option<Activation> {
    match name {
        "gelu" | "gelu_python" => Some(Activation::Gelu),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_python_tanh" | "gelu_fast" | "gelu_accurate" => {
            Some(Activation::GeluNew)
        }
        "relu" => Some(Activation::Relu),
        _ => None,
    }
}

/// Parses `config.json` text. Errors name the field and its value.
pub fn parse_config(json: &str) -> Result<HfConfig> {
    let raw: RawConfig =
        serde_json::from_str(json).context("config.json is not valid JSON for a model config")?;

    match raw.model_type.as_deref() {
        Some("albert") => {}
        Some(other) => bail!("config.json has model_type {other:?}; albert-edge converts ALBERT checkpoints only"),
        None => bail!("config.json has no model_type; albert-edge converts ALBERT checkpoints only (model_type \"albert\")"),
    }
    if let Some(g) = raw.num_hidden_groups.filter(|&g| g != 1) {
        bail!("config.json has num_hidden_groups {g}; albert-edge supports one shared layer group (num_hidden_groups 1) only");
    }
    if let Some(n) = raw.inner_group_num.filter(|&n| n != 1) {
        bail!("config.json has inner_group_num {n}; albert-edge supports one layer per group (inner_group_num 1) only");
    }
    if let Some(p) = raw
        .position_embedding_type
        .as_deref()
        .filter(|&p| p != "absolute")
    {
        bail!(
            "config.json has position_embedding_type {p:?}; albert-edge supports \"absolute\" only"
        );
    }
    let act_name = raw.hidden_act.as_deref().unwrap_or("gelu_new");
    let Some(hidden_act) = activation(act_name) else {
        bail!("config.json has hidden_act {act_name:?}; albert-edge supports \"gelu\", \"gelu_new\" (and its exact equivalents \"gelu_pytorch_tanh\", \"gelu_fast\") and \"relu\"");
    };

    let labels = labels(raw.num_labels, raw.id2label.as_ref())?;
    let eps = raw.layer_norm_eps.unwrap_or(1e-12);
    // transformers' AlbertConfig defaults (albert-xxlarge sized) for anything absent.
    let config = AlbertConfig {
        vocab_size: raw.vocab_size.unwrap_or(30000),
        embedding_size: raw.embedding_size.unwrap_or(128),
        hidden_size: raw.hidden_size.unwrap_or(4096),
        num_attention_heads: raw.num_attention_heads.unwrap_or(64),
        intermediate_size: raw.intermediate_size.unwrap_or(16384),
        num_hidden_layers: raw.num_hidden_layers.unwrap_or(12),
        max_position_embeddings: raw.max_position_embeddings.unwrap_or(512),
        type_vocab_size: raw.type_vocab_size.unwrap_or(2),
        layer_norm_eps: eps as f32,
        hidden_act,
        num_labels: labels.len(),
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("config.json: {e}"))?;
    Ok(HfConfig { config, labels })
}

/// Label names: `id2label` sorted by id (ids must be `0..n`), else `LABEL_0..` for `num_labels` (default 2, as
/// transformers 5 omits both for two labels). Both counts are checked against the engine's limit before any
/// name is made: `num_labels` alone would otherwise size the list.
fn labels(
    num_labels: Option<usize>,
    id2label: Option<&BTreeMap<String, String>>,
) -> Result<Vec<String>> {
    if let Some(value) = num_labels.filter(|n| !(1..=MAX_LABELS).contains(n)) {
        let e = albert_edge::Error::ConfigOutOfRange {
            field: "num_labels",
            value,
            max: MAX_LABELS,
        };
        bail!("config.json: {e}");
    }
    if let Some(n) = id2label.map(BTreeMap::len).filter(|&n| n > MAX_LABELS) {
        bail!("config.json has {n} id2label entries; albert-edge supports at most {MAX_LABELS} labels");
    }
    let Some(map) = id2label.filter(|m| !m.is_empty()) else {
        let n = num_labels.unwrap_or(2);
        return Ok((0..n).map(|i| format!("LABEL_{i}")).collect());
    };
    let mut by_id = Vec::with_capacity(map.len());
    for (key, name) in map {
        let id: usize = key
            .parse()
            .with_context(|| format!("config.json has id2label key {key:?}, not a label id"))?;
        by_id.push((id, name.clone()));
    }
    by_id.sort();
    for (want, (id, _)) in by_id.iter().enumerate() {
        if *id != want {
            bail!(
                "config.json has id2label ids {:?}; expected 0..{}",
                by_id.iter().map(|(i, _)| i).collect::<Vec<_>>(),
                by_id.len()
            );
        }
    }
    if let Some(n) = num_labels.filter(|&n| n != by_id.len()) {
        bail!(
            "config.json has num_labels {n} but {} id2label entries",
            by_id.len()
        );
    }
    // Label names end up in terminals and logs (`classify`, `inspect`): a newline or an escape sequence in one
    // could forge output lines, so they are refused here (the CLI also escapes them when printing any blob's).
    if let Some((id, name)) = by_id.iter().find(|(_, n)| n.chars().any(char::is_control)) {
        bail!("config.json has id2label {id} {name:?}, which holds a control character; rename the label");
    }
    Ok(by_id.into_iter().map(|(_, name)| name).collect())
}

/// Reads and parses `config.json` at `path`.
pub fn read_config(path: &Path) -> Result<HfConfig> {
    // A byte-order mark (some Windows editors write one) is dropped; invalid UTF-8 names its line.
    let text = crate::textfile::read_utf8(path)?;
    parse_config(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""model_type": "albert", "vocab_size": 50, "embedding_size": 8, "hidden_size": 16,
        "num_attention_heads": 2, "intermediate_size": 32, "num_hidden_layers": 2, "max_position_embeddings": 20"#;

    fn parse(extra: &str) -> Result<HfConfig> {
        parse_config(&format!("{{{BASE}{extra}}}"))
    }

    #[test]
    fn parse_config_defaults_to_two_labels_without_id2label() {
        let c = parse("").unwrap();
        assert_eq!(c.labels, ["LABEL_0", "LABEL_1"]);
        assert_eq!(c.config.hidden_act, Activation::GeluNew);
        assert_eq!(c.config.type_vocab_size, 2);
    }

    #[test]
    fn parse_config_sorts_id2label_by_numeric_id() {
        let labels: Vec<String> = (0..11).map(|i| format!("l{i}")).collect();
        let map: Vec<String> = labels
            .iter()
            .enumerate()
            .rev()
            .map(|(i, l)| format!("\"{i}\": \"{l}\""))
            .collect();
        let c = parse(&format!(", \"id2label\": {{{}}}", map.join(","))).unwrap();
        assert_eq!(c.labels, labels);
    }

    #[test]
    fn parse_config_honours_num_labels() {
        assert_eq!(
            parse(", \"num_labels\": 3").unwrap().labels,
            ["LABEL_0", "LABEL_1", "LABEL_2"]
        );
        let err =
            parse(", \"num_labels\": 3, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}").unwrap_err();
        assert!(format!("{err:#}").contains("num_labels 3"), "{err:#}");
    }

    /// A billion labels would be a billion names (gigabytes) if the count were checked after making them.
    #[test]
    fn parse_config_refuses_label_counts_before_making_names() {
        let err = format!("{:#}", parse(", \"num_labels\": 1000000000").unwrap_err());
        assert!(
            err.contains("num_labels 1000000000 must be in 1..=64"),
            "{err}"
        );
        let err = format!("{:#}", parse(", \"num_labels\": 0").unwrap_err());
        assert!(err.contains("num_labels 0 must be in 1..=64"), "{err}");
        let many: Vec<String> = (0..65).map(|i| format!("\"{i}\": \"l{i}\"")).collect();
        let err = format!(
            "{:#}",
            parse(&format!(", \"id2label\": {{{}}}", many.join(","))).unwrap_err()
        );
        assert!(err.contains("65 id2label entries"), "{err}");
        assert_eq!(parse(", \"num_labels\": 64").unwrap().labels.len(), 64);
    }

    #[test]
    fn parse_config_refuses_label_names_with_control_characters() {
        let err =
            parse(", \"id2label\": {\"0\": \"ok\", \"1\": \"pos\\nlabel: neg\"}").unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "config.json has id2label 1 \"pos\\nlabel: neg\", which holds a control character; rename the label"
        );
        assert!(parse(", \"id2label\": {\"0\": \"négatif 😞\", \"1\": \"x\"}").is_ok());
    }

    #[test]
    fn parse_config_maps_only_exact_activations() {
        assert_eq!(
            parse(", \"hidden_act\": \"gelu\"")
                .unwrap()
                .config
                .hidden_act,
            Activation::Gelu
        );
        assert_eq!(
            parse(", \"hidden_act\": \"gelu_pytorch_tanh\"")
                .unwrap()
                .config
                .hidden_act,
            Activation::GeluNew
        );
        assert_eq!(
            parse(", \"hidden_act\": \"relu\"")
                .unwrap()
                .config
                .hidden_act,
            Activation::Relu
        );
        let err = format!(
            "{:#}",
            parse(", \"hidden_act\": \"quick_gelu\"").unwrap_err()
        );
        assert!(err.contains("hidden_act \"quick_gelu\""), "{err}");
    }

    #[test]
    fn parse_config_rejects_unsupported_fields_by_name() {
        for (extra, needle) in [
            (", \"num_hidden_groups\": 2", "num_hidden_groups 2"),
            (", \"inner_group_num\": 2", "inner_group_num 2"),
            (
                ", \"position_embedding_type\": \"relative_key\"",
                "position_embedding_type \"relative_key\"",
            ),
            (
                ", \"id2label\": {\"0\": \"a\", \"2\": \"b\"}",
                "id2label ids",
            ),
        ] {
            let err = format!("{:#}", parse(extra).unwrap_err());
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let err = format!(
            "{:#}",
            parse_config(r#"{"model_type": "bert"}"#).unwrap_err()
        );
        assert_eq!(
            err,
            "config.json has model_type \"bert\"; albert-edge converts ALBERT checkpoints only"
        );
    }
}
