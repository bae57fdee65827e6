//! `albert-edge inspect`: what a blob holds and what it costs on a device (flash per section, scratch RAM per
//! sequence length).

use std::fmt::Write as _;

use albert_edge::format::{header, side_bytes, DType, ALIGN};
use albert_edge::model::{scratch_size, scratch_size_for_speed, Precision};
use albert_edge::Model;
use byteorder::{ByteOrder, LittleEndian as LE};
use serde::Serialize;

/// Sequence lengths the scratch table reports (those up to `max_position_embeddings`, plus that maximum).
pub const SCRATCH_SEQ_LENS: [usize; 4] = [32, 64, 128, 512];

/// The config as `inspect --json` prints it.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub vocab_size: usize,
    pub embedding_size: usize,
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub hidden_act: &'static str,
    pub num_labels: usize,
}

/// One tensor-table row.
#[derive(Debug, Serialize)]
pub struct TensorRow {
    /// Checkpoint-style name (`layer.` = the shared layer).
    pub kind: &'static str,
    /// `"f32"` or `"int8"`.
    pub dtype: &'static str,
    /// `[dim0, dim1]`, or `[dim0]` for a vector.
    pub shape: Vec<usize>,
    /// Bytes of values.
    pub bytes: usize,
    /// Bytes of per-row scales (0 for f32).
    pub scale_bytes: usize,
    /// Worst absolute quantisation error recorded by the converter (0 for f32).
    pub quant_error: f32,
    /// Side (outlier) columns kept in `f32` (0 for none).
    pub side_columns: usize,
}

/// Bytes per blob region (each including its padding to 16); they add up to `total_bytes`.
#[derive(Debug, Serialize)]
pub struct Sections {
    pub header_and_table: usize,
    pub labels: usize,
    pub tokenizer: usize,
    pub weights: usize,
    pub scales: usize,
    pub side_columns: usize,
}

/// Scratch arena bytes for one sequence length.
#[derive(Debug, Serialize)]
pub struct ScratchRow {
    pub seq_len: usize,
    pub int8: usize,
    /// `scratch_size_for_speed` for int8 on this host (the engine's fastest arena).
    pub int8_speed: usize,
    pub fp32: usize,
}

/// Everything `inspect` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    pub format_version: u32,
    pub total_bytes: usize,
    pub config: ConfigReport,
    pub labels: Vec<String>,
    pub tensors: Vec<TensorRow>,
    pub sections: Sections,
    pub scratch: Vec<ScratchRow>,
}

fn round16(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Builds the report of a validated blob.
pub fn report(model: &Model) -> Report {
    let c = model.config();
    let bytes = model.as_bytes();
    let field = |at: usize| LE::read_u32(&bytes[at..at + 4]) as usize;

    let tensors: Vec<TensorRow> = model
        .tensors()
        .map(|t| TensorRow {
            kind: t.kind.name(),
            dtype: match t.dtype {
                DType::F32 => "f32",
                DType::I8 => "int8",
            },
            shape: if t.kind.is_matrix() {
                vec![t.shape.0, t.shape.1]
            } else {
                vec![t.shape.0]
            },
            bytes: t.len,
            scale_bytes: t.scales_len,
            quant_error: t.quant_error,
            side_columns: t.side_count,
        })
        .collect();

    let labels_offset = field(header::LABELS_OFFSET);
    let (tok_offset, tok_len) = (
        field(header::TOKENIZER_OFFSET),
        field(header::TOKENIZER_LEN),
    );
    let labels_end = if tok_len > 0 {
        tok_offset
    } else {
        labels_offset + round16(field(header::LABELS_LEN))
    };
    let sections = Sections {
        header_and_table: labels_offset,
        labels: labels_end.saturating_sub(labels_offset),
        tokenizer: if tok_len > 0 { round16(tok_len) } else { 0 },
        weights: tensors.iter().map(|t| round16(t.bytes)).sum(),
        scales: tensors.iter().map(|t| round16(t.scale_bytes)).sum(),
        side_columns: tensors
            .iter()
            .filter(|t| t.side_columns > 0)
            .map(|t| round16(side_bytes(t.shape[0], t.side_columns).1))
            .sum(),
    };

    let mut seqs: Vec<usize> = SCRATCH_SEQ_LENS
        .iter()
        .copied()
        .filter(|&s| s <= c.max_position_embeddings)
        .collect();
    if !seqs.contains(&c.max_position_embeddings) && c.max_position_embeddings < 512 {
        seqs.push(c.max_position_embeddings);
    }
    let scratch = seqs
        .into_iter()
        .map(|seq_len| ScratchRow {
            seq_len,
            int8: scratch_size(c, seq_len, Precision::Int8),
            int8_speed: scratch_size_for_speed(c, seq_len, Precision::Int8),
            fp32: scratch_size(c, seq_len, Precision::F32),
        })
        .collect();

    Report {
        format_version: field(header::VERSION) as u32,
        total_bytes: bytes.len(),
        config: ConfigReport {
            vocab_size: c.vocab_size,
            embedding_size: c.embedding_size,
            hidden_size: c.hidden_size,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            max_position_embeddings: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            layer_norm_eps: c.layer_norm_eps,
            hidden_act: c.hidden_act.name(),
            num_labels: c.num_labels,
        },
        labels: (0..c.num_labels)
            .map(|i| model.label(i).to_string())
            .collect(),
        tensors,
        sections,
        scratch,
    }
}

/// The human-readable form.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let c = &r.config;
    let _ = writeln!(
        s,
        "albert-edge model blob, format v{}, {} bytes",
        r.format_version, r.total_bytes
    );
    if r.format_version < 2 {
        let _ = writeln!(
            s,
            "(format v1: converted before outlier side columns; it runs under the current numeric contract, and \
             reconverting the checkpoint with this version adds them)"
        );
    }
    let _ = writeln!(s, "\nconfig");
    for (k, v) in [
        ("vocab_size", c.vocab_size.to_string()),
        ("embedding_size", c.embedding_size.to_string()),
        ("hidden_size", c.hidden_size.to_string()),
        ("num_attention_heads", c.num_attention_heads.to_string()),
        ("intermediate_size", c.intermediate_size.to_string()),
        ("num_hidden_layers", c.num_hidden_layers.to_string()),
        (
            "max_position_embeddings",
            c.max_position_embeddings.to_string(),
        ),
        ("type_vocab_size", c.type_vocab_size.to_string()),
        ("layer_norm_eps", format!("{:e}", c.layer_norm_eps)),
        ("hidden_act", c.hidden_act.to_string()),
        ("num_labels", c.num_labels.to_string()),
    ] {
        let _ = writeln!(s, "  {k:<24} {v}");
    }
    let _ = writeln!(s, "\nlabels");
    for (i, l) in r.labels.iter().enumerate() {
        let _ = writeln!(s, "  {i:>3}  {}", crate::console::escape_control(l));
    }
    let _ = writeln!(s, "\ntensors");
    let _ = writeln!(
        s,
        "  {:<42} {:<5} {:>13} {:>10} {:>8} {:>11} {:>5}",
        "kind", "dtype", "shape", "bytes", "scales", "max |err|", "side"
    );
    for t in &r.tensors {
        let shape = t
            .shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let (err, side) = if t.dtype == "int8" {
            (format!("{:.3e}", t.quant_error), t.side_columns.to_string())
        } else {
            ("-".into(), "-".into())
        };
        let _ = writeln!(
            s,
            "  {:<42} {:<5} {:>13} {:>10} {:>8} {:>11} {:>5}",
            t.kind, t.dtype, shape, t.bytes, t.scale_bytes, err, side
        );
    }
    let x = &r.sections;
    let _ = writeln!(s, "\nsections (bytes, padded to 16)");
    for (k, v) in [
        ("header + tensor table", x.header_and_table),
        ("labels", x.labels),
        ("tokenizer", x.tokenizer),
        ("weights", x.weights),
        ("scales", x.scales),
        ("side columns", x.side_columns),
        ("total", r.total_bytes),
    ] {
        let _ = writeln!(s, "  {k:<24} {v:>12}");
    }
    let _ = writeln!(s, "\nscratch arena (bytes) by sequence length");
    let _ = writeln!(
        s,
        "  {:>7} {:>12} {:>12} {:>12}",
        "seq_len", "int8", "int8 speed", "fp32"
    );
    for row in &r.scratch {
        let _ = writeln!(
            s,
            "  {:>7} {:>12} {:>12} {:>12}",
            row.seq_len, row.int8, row.int8_speed, row.fp32
        );
    }
    s
}
