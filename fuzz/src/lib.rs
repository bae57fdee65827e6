//! Shared by the fuzz targets: the seed blobs (written by `build.rs`), the CRC patch, and
//! `exercise`, which runs everything a parsed model offers so that a blob that validates is also used.

use std::sync::OnceLock;

use albert_edge::format::{crc32, header, AlignedBlob, CRC_START};
use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::tokenizer::Tokenizer;
use albert_edge::Model;

/// The seeds are embedded at build time: a `static` needs this wrapper for its alignment, where copies made at
/// run time use [`AlignedBlob`].
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

static SMALL_INT8: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/small-int8.blob"
)));
static SMALL_F32: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/small-f32.blob")));
static TOKENIZER: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/tokenizer.blob")));

/// A 64-piece int8 model without a tokenizer (E 4, H 8, I 12, 2 passes, 16 positions, 3 labels).
pub fn small_int8() -> &'static [u8] {
    &SMALL_INT8.0
}

/// The same shape with every tensor f32.
pub fn small_f32() -> &'static [u8] {
    &SMALL_F32.0
}

/// A tiny int8 model (E 4, H 8, 32 positions, 2 labels) with ALBERT's 30k-piece tokenizer (compact section).
pub fn tokenizer_blob() -> &'static [u8] {
    &TOKENIZER.0
}

/// [`tokenizer_blob`] parsed once per process.
pub fn tokenizer_model() -> &'static Model<'static> {
    static MODEL: OnceLock<Model<'static>> = OnceLock::new();
    MODEL.get_or_init(|| Model::from_bytes(tokenizer_blob()).expect("the seed blob parses"))
}

/// Its tokenizer.
pub fn tokenizer() -> &'static Tokenizer<'static> {
    tokenizer_model()
        .tokenizer()
        .expect("the seed blob has a tokenizer")
}

/// Rewrites the header's CRC-32 to match `bytes[16..file_len]` (or `bytes[16..]` if `file_len` is out of range),
/// so that mutations reach the checks after the checksum.
pub fn patch_crc(bytes: &mut [u8]) {
    if bytes.len() < CRC_START {
        return;
    }
    let file_len = u32::from_le_bytes(
        bytes[header::FILE_LEN..header::FILE_LEN + 4]
            .try_into()
            .unwrap(),
    );
    let end = (file_len as usize).clamp(CRC_START, bytes.len());
    let crc = crc32(&bytes[CRC_START..end]);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Uses a model that validated: every accessor, a classification in both precisions with an arena of exactly
/// `scratch_size` at a fuzzer-chosen misalignment, and the tokenizer. None of it may panic.
pub fn exercise(model: &Model, salt: u8) {
    let c = *model.config();
    for i in 0..c.num_labels {
        let _ = model.label(i);
    }
    let _ = model.tensors().count();
    let vocab = c.vocab_size as u32;
    let ids = [2 % vocab, 7 % vocab, vocab - 1, 3 % vocab];
    let types = [0, 0, 1 % c.type_vocab_size as u32, 0];
    let inputs = Inputs {
        input_ids: &ids[..c.max_position_embeddings.min(ids.len())],
        token_type_ids: &types[..c.max_position_embeddings.min(ids.len())],
        attention_mask: &[],
    };
    for precision in [Precision::Int8, Precision::F32] {
        let mut logits = vec![0f32; c.num_labels];
        // A mutated blob may hold NaN weights or be f32-only: any result but a panic is fine.
        let _ = run_classify(model, precision, &inputs, &mut logits, salt);
    }
    if let Some(t) = model.tokenizer() {
        let mut ws = vec![0u8; 4096];
        let (mut ids, mut types) = ([0u32; 32], [0u32; 32]);
        let _ = t.encode(
            "Hello, world 1,000 [MASK] café",
            Some("b"),
            32,
            &mut ws,
            &mut ids,
            &mut types,
        );
        let _ = t.piece(0);
        let _ = t.piece(vocab.saturating_sub(1));
    }
}

/// `classify` with an arena of exactly `scratch_size(..)` bytes starting `salt % 16` bytes into an aligned buffer
/// (the size includes the slack for any start address). Returns the result.
pub fn run_classify(
    model: &Model,
    precision: Precision,
    inputs: &Inputs,
    logits: &mut [f32],
    salt: u8,
) -> Result<(), albert_edge::Error> {
    let size = scratch_size(model.config(), inputs.input_ids.len(), precision);
    let skew = usize::from(salt % 16);
    let mut buf = AlignedBlob::new(&vec![0xA5; size + skew]);
    classify(
        model,
        precision,
        inputs,
        &mut buf.bytes_mut()[skew..],
        logits,
    )
}
