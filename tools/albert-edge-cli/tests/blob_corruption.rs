//! Damaged blobs never panic: every truncation, every byte of the header, tensor table and labels flipped (with
//! and without the CRC patched to match), and sampled flips across the tokenizer section and the weights give a
//! typed error or, where the damage is self-consistent, a model that still runs without panicking.

use std::path::Path;

use albert_edge::format::AlignedBlob;
use albert_edge::format::{crc32, header, CRC_START};
use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::{Activation, AlbertConfig};
use albert_edge::{Error, Model};
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::synthetic::{random_model, Rng};
use albert_edge_cli::tokenizer_section::{build_from_file, SectionOptions};

fn small_blob() -> Vec<u8> {
    let c = AlbertConfig {
        vocab_size: 30000,
        embedding_size: 4,
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 16,
        num_hidden_layers: 2,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: Activation::GeluNew,
        num_labels: 2,
    };
    let mut contents = random_model(&c, 3, true);
    let spiece =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/spiece/30k-clean.model");
    contents.tokenizer = build_from_file(&spiece, &SectionOptions::default()).unwrap();
    write_blob(&contents).unwrap()
}

fn patch_crc(bytes: &mut [u8]) {
    let crc = crc32(&bytes[CRC_START..]);
    bytes[header::CRC32..header::CRC32 + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Parses `bytes`; if that succeeds, the model must also run (and tokenize) without panicking.
fn exercise(bytes: &[u8]) -> Result<(), Error> {
    exercise_aligned(AlignedBlob::new(bytes).bytes())
}

fn exercise_aligned(bytes: &[u8]) -> Result<(), Error> {
    let model = Model::from_bytes(bytes)?;
    let ids = [2u32, 100, 200, 3];
    let mut arena = vec![0u8; scratch_size(model.config(), ids.len(), Precision::Int8)];
    let mut logits = vec![0f32; model.config().num_labels];
    let _ = classify(
        &model,
        Precision::Int8,
        &Inputs::ids(&ids),
        &mut arena,
        &mut logits,
    );
    if let Some(t) = model.tokenizer() {
        let mut ws = vec![0u8; t.workspace_size(64)];
        let (mut out, mut types) = ([0u32; 16], [0u32; 16]);
        let _ = t.encode(
            "hello, world 1,000",
            Some("b"),
            16,
            &mut ws,
            &mut out,
            &mut types,
        );
    }
    Ok(())
}

fn metadata_len(bytes: &[u8]) -> usize {
    // Header, tensor table and labels: everything before the tokenizer section.
    u32::from_le_bytes(
        bytes[header::TOKENIZER_OFFSET..header::TOKENIZER_OFFSET + 4]
            .try_into()
            .unwrap(),
    ) as usize
}

#[test]
fn the_undamaged_blob_parses() {
    exercise(&small_blob()).unwrap();
}

#[test]
fn every_truncation_is_a_typed_error() {
    let blob = AlignedBlob::new(&small_blob());
    let blob = blob.bytes();
    for len in 0..blob.len() {
        let err = exercise_aligned(&blob[..len]).expect_err("a truncated blob parsed");
        assert!(
            matches!(err, Error::Truncated { .. }),
            "length {len}: {err:?}"
        );
    }
}

#[test]
fn every_metadata_byte_flip_is_caught_by_the_checksum() {
    let blob = small_blob();
    for at in 0..metadata_len(&blob) {
        let mut bad = blob.clone();
        bad[at] ^= 0x5A;
        assert!(
            exercise(&bad).is_err(),
            "flip at byte {at} was not detected"
        );
    }
}

#[test]
fn every_metadata_byte_flip_with_a_matching_crc_never_panics() {
    let blob = small_blob();
    let mut parsed = 0;
    for at in
        (0..metadata_len(&blob)).filter(|&at| !(header::CRC32..header::CRC32 + 4).contains(&at))
    {
        for mask in [0x01u8, 0xFF] {
            let mut bad = blob.clone();
            bad[at] ^= mask;
            patch_crc(&mut bad);
            parsed += usize::from(exercise(&bad).is_ok());
        }
    }
    // Some flips are harmless (reserved padding inside names, quant_error values); most must be rejected.
    println!("{parsed} self-consistent flips parsed and ran");
}

#[test]
fn sampled_payload_flips_are_caught_and_never_panic_with_a_matching_crc() {
    let blob = small_blob();
    let mut rng = Rng::new(11);
    let start = metadata_len(&blob);
    for _ in 0..300 {
        let at = rng.range(start, blob.len());
        let mut bad = blob.clone();
        bad[at] ^= 1 << rng.range(0, 8);
        assert!(
            matches!(exercise(&bad), Err(Error::ChecksumMismatch { .. })),
            "flip at {at} not detected"
        );
        patch_crc(&mut bad);
        let _ = exercise(&bad);
    }
}
