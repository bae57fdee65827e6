//! `albert-edge convert` with calibrated (GPTQ) rounding: the options, the calibration file formats and errors,
//! reproducibility, and that GPTQ really changes the rounding while keeping the format.

mod convert_support;

use std::fs;

use albert_edge::format::AlignedBlob;
use albert_edge::format::{DType, MatrixData};
use albert_edge::Model;
use convert_support::*;

fn blob_bytes(path: &std::path::Path) -> Vec<u8> {
    fs::read(path).unwrap()
}

#[test]
fn default_conversion_calibrates_on_the_built_in_set_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.blob"), tmp.path().join("b.blob"));
    let out = ok(&convert(&fixture("tiny-gelu-3"), &a, &[]));
    assert!(
        out.contains("calibrated GPTQ rounding on 256 of 256 sentences")
            && out.contains("built-in"),
        "{out}"
    );
    ok(&convert(&fixture("tiny-gelu-3"), &b, &[]));
    assert_eq!(
        blob_bytes(&a),
        blob_bytes(&b),
        "GPTQ conversion is not reproducible"
    );
}

#[test]
fn no_calibrate_is_round_to_nearest_and_gptq_differs_only_in_the_int8_values() {
    let tmp = tempfile::tempdir().unwrap();
    let (rtn, nearest, gptq) = (
        tmp.path().join("rtn.blob"),
        tmp.path().join("nearest.blob"),
        tmp.path().join("gptq.blob"),
    );
    let out = ok(&convert(
        &fixture("tiny-gelu-new-2"),
        &rtn,
        &["--no-calibrate"],
    ));
    assert!(!out.contains("calibrated"), "{out}");
    ok(&convert(
        &fixture("tiny-gelu-new-2"),
        &nearest,
        &["--rounding", "nearest"],
    ));
    ok(&convert(&fixture("tiny-gelu-new-2"), &gptq, &[]));
    assert_eq!(blob_bytes(&rtn), blob_bytes(&nearest));

    let (r, g) = (
        AlignedBlob::new(&blob_bytes(&rtn)),
        AlignedBlob::new(&blob_bytes(&gptq)),
    );
    let (r, g) = (
        Model::from_bytes(r.bytes()).unwrap(),
        Model::from_bytes(g.bytes()).unwrap(),
    );
    let (rw, gw) = (r.weights(), g.weights());
    let pairs = [
        (&rw.word_embeddings, &gw.word_embeddings, false),
        (&rw.layer.query_weight, &gw.layer.query_weight, true),
        (
            &rw.layer.ffn_output_weight,
            &gw.layer.ffn_output_weight,
            true,
        ),
    ];
    for (a, b, linear) in pairs {
        let (
            MatrixData::I8 {
                values: qa,
                scales: sa,
            },
            MatrixData::I8 {
                values: qb,
                scales: sb,
            },
        ) = (a.data, b.data)
        else {
            panic!("int8 expected");
        };
        // Same per-row scales (max-abs / 127) either way; only the chosen int8 values move, and only for linears.
        assert_eq!(sa, sb);
        assert_eq!(qa == qb, !linear);
    }
    let (MatrixData::I8 { scales: sa, .. }, MatrixData::I8 { scales: sb, .. }) =
        (rw.classifier_weight.data, gw.classifier_weight.data)
    else {
        panic!("int8 expected");
    };
    assert_eq!(sa, sb);
    assert_eq!(r.weights().layer.query_weight.dtype(), DType::I8);
}

#[test]
fn calibrate_reads_a_glue_tsv_or_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let tsv = tmp.path().join("cal.tsv");
    fs::write(
        &tsv,
        "sentence\tlabel\nit 's a charming and often affecting journey . \t1\nunflinchingly bleak and desperate \t0\n",
    )
    .unwrap();
    let out = ok(&convert(
        &fixture("tiny-gelu-3"),
        &tmp.path().join("t.blob"),
        &["--calibrate", tsv.to_str().unwrap()],
    ));
    assert!(out.contains("on 2 of 2 sentences"), "{out}");

    let txt = tmp.path().join("cal.txt");
    fs::write(&txt, "one sentence\n\nanother sentence here\nand a third\n").unwrap();
    let out = ok(&convert(
        &fixture("tiny-gelu-3"),
        &tmp.path().join("p.blob"),
        &[
            "--calibrate",
            txt.to_str().unwrap(),
            "--calibration-tokens",
            "1",
        ],
    ));
    // The token budget keeps at least one whole sentence.
    assert!(out.contains("on 1 of 3 sentences"), "{out}");
}

#[test]
fn an_empty_calibration_file_is_a_one_line_error() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.txt");
    fs::write(&empty, "\n  \n").unwrap();
    let blob = tmp.path().join("out").join("model.blob");
    fs::create_dir(blob.parent().unwrap()).unwrap();
    let out = convert(
        &fixture("tiny-gelu-3"),
        &blob,
        &["--calibrate", empty.to_str().unwrap()],
    );
    assert_clean_failure(&out, &blob, "has no sentences");

    let out = convert(
        &fixture("tiny-gelu-3"),
        &blob,
        &[
            "--calibrate",
            empty.to_str().unwrap(),
            "--rounding",
            "nearest",
        ],
    );
    assert_clean_failure(
        &out,
        &blob,
        "--calibrate has no effect with --rounding nearest",
    );
}
