//! The blob's activation block width (`convert --activation-block`): recorded in the header, reported by
//! `inspect`, used by the int8 engine, and refused when narrower than the default (the arena is sized for it).

mod convert_support;

use albert_edge::model::{classify, scratch_size, Inputs, Precision};
use albert_edge::Model;
use albert_edge_cli::blob::AlignedBlob;
use convert_support::*;

fn int8_logits(model: &Model, ids: &[u32]) -> Vec<f32> {
    let mut arena = vec![0u8; scratch_size(model.config(), ids.len(), Precision::Int8)];
    let mut logits = vec![0f32; model.config().num_labels];
    classify(
        model,
        Precision::Int8,
        &Inputs::ids(ids),
        &mut arena,
        &mut logits,
    )
    .unwrap();
    logits
}

#[test]
fn wider_blocks_are_recorded_used_and_narrower_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    // tiny-gelu-3: H 48, 3 heads, head size 16, so the default block is 8.
    let fixture = fixture("tiny-gelu-3");
    let default = dir.path().join("default.blob");
    let wide = dir.path().join("wide.blob");
    ok(&convert(&fixture, &default, &["--no-calibrate"]));
    ok(&convert(
        &fixture,
        &wide,
        &["--no-calibrate", "--activation-block", "48"],
    ));

    let default = AlignedBlob::new(&std::fs::read(&default).unwrap());
    let wide = AlignedBlob::new(&std::fs::read(&wide).unwrap());
    let (default, wide) = (
        Model::from_bytes(default.bytes()).unwrap(),
        Model::from_bytes(wide.bytes()).unwrap(),
    );
    assert_eq!(default.activation_block(), 8);
    assert_eq!(wide.activation_block(), 48);
    let inspect = ok(&albert_edge([
        "inspect".as_ref(),
        dir.path().join("wide.blob").as_os_str(),
    ]));
    assert!(
        inspect
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["activation_block", "48"]),
        "{inspect}"
    );

    // Same weights, different activation quantisation: close logits, not the same bits.
    let ids = [2u32, 1000, 2345, 87, 19, 5000, 3];
    let (a, b) = (int8_logits(&default, &ids), int8_logits(&wide, &ids));
    assert_ne!(a, b);
    assert!(
        a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.5),
        "{a:?} {b:?}"
    );

    let narrow = dir.path().join("narrow.blob");
    let out = convert(
        &fixture,
        &narrow,
        &["--no-calibrate", "--activation-block", "4"],
    );
    assert_clean_failure(&out, &narrow, "--activation-block 4: must be between 8");
}
