//! The model-blob writer: the twin of the core's `format` module (the reader). See `FORMAT.md`.

use albert_edge::format::{crc32, side_bytes, MAX_SIDE_COLUMNS, TENSOR_ENTRY_LEN};
use albert_edge::format::{
    entry, header, DType, TensorKind, ALIGN, CRC_START, FORMAT_VERSION, HEADER_LEN, MAGIC,
};
use albert_edge::AlbertConfig;
use anyhow::{bail, ensure, Result};
use byteorder::{ByteOrder, LittleEndian as LE};

/// The elements of one tensor, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Row-major `f32`.
    F32(Vec<f32>),
    /// Row-major int8 with one positive scale per row.
    I8 {
        /// `rows * cols` values.
        values: Vec<i8>,
        /// `rows` scales.
        scales: Vec<f32>,
        /// Worst absolute quantisation error, recorded for `inspect`.
        quant_error: f32,
        /// Side (outlier) columns kept in `f32`; their int8 values must be 0.
        side: SideColumns,
    },
}

/// An int8 matrix's side columns (`FORMAT.md`): strictly increasing column indices and their `f32` weights,
/// `rows * cols.len()` values, row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideColumns {
    /// Column indices.
    pub cols: Vec<u32>,
    /// Row-major weights, `rows x cols.len()`.
    pub values: Vec<f32>,
}

impl Payload {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Payload::F32(_) => DType::F32,
            Payload::I8 { .. } => DType::I8,
        }
    }
}

/// Everything a blob holds, owned.
#[derive(Debug, Clone)]
pub struct BlobContents {
    /// Hyper-parameters.
    pub config: AlbertConfig,
    /// One payload per [`TensorKind`], in any order.
    pub tensors: Vec<(TensorKind, Payload)>,
    /// `num_labels` names.
    pub labels: Vec<String>,
    /// The tokenizer section (empty for none).
    pub tokenizer: Vec<u8>,
}

fn pad_to_align(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(ALIGN) {
        out.push(0);
    }
}

fn put_u32(out: &mut [u8], at: usize, v: usize) -> Result<()> {
    ensure!(
        v <= u32::MAX as usize,
        "value {v} does not fit the blob's 32-bit fields (blob larger than 4 GiB?)"
    );
    LE::write_u32(&mut out[at..at + 4], v as u32);
    Ok(())
}

/// Serialises `contents` as a format-v2 blob: header, tensor table, labels, tokenizer, then tensor data, every
/// section and tensor 16-byte aligned, CRC-32 last. Deterministic: the same contents give the same bytes.
pub fn write_blob(contents: &BlobContents) -> Result<Vec<u8>> {
    let c = &contents.config;
    c.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        contents.labels.len() == c.num_labels,
        "{} label names for {} labels",
        contents.labels.len(),
        c.num_labels
    );
    for kind in TensorKind::ALL {
        let n = contents.tensors.iter().filter(|(k, _)| k == kind).count();
        ensure!(n == 1, "tensor `{}` given {n} times", kind.name());
    }
    let mut tensors: Vec<&(TensorKind, Payload)> = contents.tensors.iter().collect();
    tensors.sort_by_key(|(k, _)| k.code());

    let mut out = vec![0u8; HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    put_u32(&mut out, header::VERSION, FORMAT_VERSION as usize)?;
    put_u32(&mut out, header::HEADER_LEN, HEADER_LEN)?;
    put_u32(&mut out, header::VOCAB_SIZE, c.vocab_size)?;
    put_u32(&mut out, header::EMBEDDING_SIZE, c.embedding_size)?;
    put_u32(&mut out, header::HIDDEN_SIZE, c.hidden_size)?;
    put_u32(&mut out, header::NUM_ATTENTION_HEADS, c.num_attention_heads)?;
    put_u32(&mut out, header::INTERMEDIATE_SIZE, c.intermediate_size)?;
    put_u32(&mut out, header::NUM_HIDDEN_LAYERS, c.num_hidden_layers)?;
    put_u32(
        &mut out,
        header::MAX_POSITION_EMBEDDINGS,
        c.max_position_embeddings,
    )?;
    put_u32(&mut out, header::TYPE_VOCAB_SIZE, c.type_vocab_size)?;
    LE::write_f32(
        &mut out[header::LAYER_NORM_EPS..header::LAYER_NORM_EPS + 4],
        c.layer_norm_eps,
    );
    put_u32(&mut out, header::HIDDEN_ACT, c.hidden_act.code() as usize)?;
    put_u32(&mut out, header::NUM_LABELS, c.num_labels)?;
    put_u32(&mut out, header::TENSOR_COUNT, tensors.len())?;

    // Tensor table (filled once the data offsets are known).
    let table_offset = out.len();
    put_u32(&mut out, header::TENSOR_TABLE_OFFSET, table_offset)?;
    out.resize(table_offset + tensors.len() * TENSOR_ENTRY_LEN, 0);
    pad_to_align(&mut out);

    // Label names: u16 length + UTF-8 bytes each.
    let labels_offset = out.len();
    for name in &contents.labels {
        ensure!(
            name.len() <= u16::MAX as usize,
            "label name longer than 65535 bytes"
        );
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
    put_u32(&mut out, header::LABELS_OFFSET, labels_offset)?;
    let labels_len = out.len() - labels_offset;
    put_u32(&mut out, header::LABELS_LEN, labels_len)?;
    pad_to_align(&mut out);

    if !contents.tokenizer.is_empty() {
        let tokenizer_offset = out.len();
        out.extend_from_slice(&contents.tokenizer);
        put_u32(&mut out, header::TOKENIZER_OFFSET, tokenizer_offset)?;
        put_u32(&mut out, header::TOKENIZER_LEN, contents.tokenizer.len())?;
        pad_to_align(&mut out);
    }

    for (i, (kind, payload)) in tensors.iter().enumerate() {
        let (rows, cols) = kind.expected_shape(c);
        let e = table_offset + i * TENSOR_ENTRY_LEN;
        LE::write_u16(&mut out[e + entry::KIND..], kind.code());
        out[e + entry::DTYPE] = payload.dtype().code();
        out[e + entry::RANK] = if kind.is_matrix() { 2 } else { 1 };
        put_u32(&mut out, e + entry::DIM0, rows)?;
        put_u32(&mut out, e + entry::DIM1, cols)?;
        let data_offset = out.len();
        match payload {
            Payload::F32(values) => {
                if values.len() != rows * cols {
                    bail!(
                        "tensor `{}` has {} values, expected {rows}x{cols}",
                        kind.name(),
                        values.len()
                    );
                }
                values
                    .iter()
                    .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
                put_u32(&mut out, e + entry::DATA_OFFSET, data_offset)?;
                put_u32(&mut out, e + entry::DATA_LEN, values.len() * 4)?;
                pad_to_align(&mut out);
            }
            Payload::I8 {
                values,
                scales,
                quant_error,
                side,
            } => {
                ensure!(
                    kind.is_matrix(),
                    "tensor `{}` is a vector and must stay f32",
                    kind.name()
                );
                ensure!(
                    values.len() == rows * cols,
                    "tensor `{}`: {} values, expected {rows}x{cols}",
                    kind.name(),
                    values.len()
                );
                ensure!(
                    scales.len() == rows,
                    "tensor `{}`: {} scales for {rows} rows",
                    kind.name(),
                    scales.len()
                );
                out.extend(values.iter().map(|&v| v as u8));
                put_u32(&mut out, e + entry::DATA_OFFSET, data_offset)?;
                put_u32(&mut out, e + entry::DATA_LEN, values.len())?;
                pad_to_align(&mut out);
                let scales_offset = out.len();
                scales
                    .iter()
                    .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
                put_u32(&mut out, e + entry::SCALES_OFFSET, scales_offset)?;
                put_u32(&mut out, e + entry::SCALES_LEN, scales.len())?;
                LE::write_f32(
                    &mut out[e + entry::QUANT_ERROR..e + entry::QUANT_ERROR + 4],
                    *quant_error,
                );
                pad_to_align(&mut out);
                if !side.cols.is_empty() {
                    write_side(&mut out, e, kind, (rows, cols), values, side)?;
                }
            }
        }
    }

    let file_len = out.len();
    put_u32(&mut out, header::FILE_LEN, file_len)?;
    let crc = crc32(&out[CRC_START..]);
    LE::write_u32(&mut out[header::CRC32..header::CRC32 + 4], crc);
    Ok(out)
}

/// Appends an int8 matrix's side columns and records them in its table entry at `e`.
fn write_side(
    out: &mut Vec<u8>,
    e: usize,
    kind: &TensorKind,
    (rows, cols): (usize, usize),
    values: &[i8],
    side: &SideColumns,
) -> Result<()> {
    let k = side.cols.len();
    ensure!(
        k <= MAX_SIDE_COLUMNS.min(cols),
        "tensor `{}`: {k} side columns (at most {})",
        kind.name(),
        MAX_SIDE_COLUMNS.min(cols)
    );
    ensure!(
        side.cols.windows(2).all(|w| w[0] < w[1]) && side.cols.iter().all(|&c| (c as usize) < cols),
        "tensor `{}`: side columns must be increasing and below {cols}",
        kind.name()
    );
    ensure!(
        side.values.len() == rows * k && side.values.iter().all(|v| v.is_finite()),
        "tensor `{}`: side columns need {rows}x{k} finite values",
        kind.name()
    );
    ensure!(
        side.cols.iter().all(|&c| values
            .iter()
            .skip(c as usize)
            .step_by(cols)
            .all(|&q| q == 0)),
        "tensor `{}`: a side column's int8 values must be 0",
        kind.name()
    );
    let offset = out.len();
    side.cols
        .iter()
        .for_each(|c| out.extend_from_slice(&c.to_le_bytes()));
    pad_to_align(out);
    debug_assert_eq!(out.len() - offset, side_bytes(rows, k).0);
    side.values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    pad_to_align(out);
    put_u32(out, e + entry::SIDE_OFFSET, offset)?;
    put_u32(out, e + entry::SIDE_COUNT, k)?;
    Ok(())
}
