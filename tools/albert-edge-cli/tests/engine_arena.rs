//! The int8 engine's memory contract: `scratch_size` is exact and bounded, and a too-small arena is a typed error.

use albert_edge::format::AlignedBlob;
use albert_edge::format::TensorKind;
use albert_edge::model::{classify, scratch_size, scratch_size_for_speed, Inputs, Precision};
use albert_edge::{Error, Model};
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::synthetic::{albert_base_config, move_to_side, random_model, Rng};

#[test]
fn scratch_for_the_shipped_mcu_model_at_seq_64_is_at_most_96_kib() {
    let blob = AlignedBlob::new(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../models/sst2-albert-mcu.blob"
        ))
        .unwrap(),
    );
    let c = *Model::from_bytes(blob.bytes()).unwrap().config();
    let bytes = scratch_size(&c, 64, Precision::Int8);
    let base = albert_base_config(2);
    println!(
        "int8 scratch: MCU model seq 64 {bytes} B; ALBERT-base seq 32 {} B, 128 {} B, 512 {} B",
        scratch_size(&base, 32, Precision::Int8),
        scratch_size(&base, 128, Precision::Int8),
        scratch_size(&base, 512, Precision::Int8)
    );
    assert!(bytes <= 96 * 1024, "scratch {bytes} B exceeds 96 KiB");
}

#[test]
fn albert_base_runs_in_an_arena_of_exactly_scratch_size() {
    // Scratch does not depend on num_hidden_layers; one pass keeps the test fast in debug builds.
    let mut c = albert_base_config(2);
    c.num_hidden_layers = 1;
    c.max_position_embeddings = 128;
    let blob = AlignedBlob::new(&write_blob(&random_model(&c, 7, true)).unwrap());
    let model = Model::from_bytes(blob.bytes()).unwrap();
    let mut rng = Rng::new(1);
    let ids: Vec<u32> = (0..128)
        .map(|_| rng.range(5, c.vocab_size) as u32)
        .collect();
    let size = scratch_size(&c, ids.len(), Precision::Int8);
    let mut backing = vec![0u8; size + 16];
    let mut first: Option<[f32; 2]> = None;
    // Every start alignment: the figure includes the alignment slack.
    for offset in 0..16 {
        let arena = &mut backing[offset..offset + size];
        arena.fill(0xA5);
        let mut logits = [0f32; 2];
        classify(
            &model,
            Precision::Int8,
            &Inputs::ids(&ids),
            arena,
            &mut logits,
        )
        .unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
        match first {
            None => first = Some(logits),
            Some(f) => assert_eq!(
                f.map(f32::to_bits),
                logits.map(f32::to_bits),
                "result depends on arena alignment"
            ),
        }
    }
    let mut logits = [0f32; 2];
    let err = classify(
        &model,
        Precision::Int8,
        &Inputs::ids(&ids),
        &mut backing[..size - 1],
        &mut logits,
    );
    assert_eq!(
        err,
        Err(Error::ArenaTooSmall {
            needed: size,
            got: size - 1
        })
    );
}

#[test]
fn a_larger_arena_gives_the_same_bits() {
    // A shape where the dense and FFN steps chunk their weights (H 256, I 1024) and tiles end mid-sequence.
    let mut c = albert_base_config(3);
    c.num_hidden_layers = 2;
    c.hidden_size = 256;
    c.num_attention_heads = 4;
    c.intermediate_size = 1024;
    c.max_position_embeddings = 64;
    let blob = AlignedBlob::new(&write_blob(&random_model(&c, 11, true)).unwrap());
    let model = Model::from_bytes(blob.bytes()).unwrap();
    let mut rng = Rng::new(2);
    for len in [1usize, 5, 17, 40] {
        let ids: Vec<u32> = (0..len)
            .map(|_| rng.range(5, c.vocab_size) as u32)
            .collect();
        let small = scratch_size(&c, len, Precision::Int8);
        let fast = scratch_size_for_speed(&c, len, Precision::Int8);
        assert!(fast >= small);
        let mut expected: Option<[u32; 3]> = None;
        // Every tile from 1 to the largest (the arena sizes in between pick the tiles in between).
        for size in [
            small,
            small + (fast - small) / 3,
            small + (fast - small) / 2,
            fast,
            fast + 4096,
        ] {
            let mut arena = vec![0x5Au8; size];
            let mut logits = [0f32; 3];
            classify(
                &model,
                Precision::Int8,
                &Inputs::ids(&ids),
                &mut arena,
                &mut logits,
            )
            .unwrap();
            let bits = logits.map(f32::to_bits);
            match expected {
                None => expected = Some(bits),
                Some(e) => assert_eq!(
                    e, bits,
                    "len {len}, arena {size} (scratch_size {small}, fast {fast})"
                ),
            }
        }
    }
}

#[test]
fn shapes_with_side_columns_run_in_exactly_scratch_size() {
    // scratch_size is computed from the config alone: side columns need no scratch, whatever their number.
    for (h, heads, i) in [
        (256usize, 4usize, 1024usize),
        (768, 12, 3072),
        (128, 4, 192),
    ] {
        let mut c = albert_base_config(2);
        c.num_hidden_layers = 1;
        c.hidden_size = h;
        c.num_attention_heads = heads;
        c.intermediate_size = i;
        c.max_position_embeddings = 64;
        let ids: Vec<u32> = (0..40).map(|k| 5 + k * 97).collect();
        let size = scratch_size(&c, ids.len(), Precision::Int8);
        for side in [&[][..], &[0, 63][..], &[3, 9, 27, 81, 100, 101, 127][..]] {
            let mut contents = random_model(&c, 5, true);
            for kind in [
                TensorKind::QueryWeight,
                TensorKind::KeyWeight,
                TensorKind::ValueWeight,
                TensorKind::AttentionDenseWeight,
                TensorKind::FfnWeight,
                TensorKind::FfnOutputWeight,
                TensorKind::PoolerWeight,
                TensorKind::ClassifierWeight,
            ] {
                move_to_side(&mut contents, kind, side);
            }
            let blob = AlignedBlob::new(&write_blob(&contents).unwrap());
            let model = Model::from_bytes(blob.bytes()).unwrap();
            let mut arena = vec![0u8; size];
            let mut logits = [0f32; 2];
            classify(
                &model,
                Precision::Int8,
                &Inputs::ids(&ids),
                &mut arena,
                &mut logits,
            )
            .unwrap_or_else(|e| panic!("H {h}, side {side:?}: {e}"));
            assert!(logits.iter().all(|v| v.is_finite()), "H {h}, side {side:?}");
        }
    }
}
