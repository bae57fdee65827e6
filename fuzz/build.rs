//! Writes the seed blobs the fuzz targets embed, with the host tool's own writer, into `OUT_DIR`:
//!
//! - `small-int8.blob`, `small-f32.blob`: a 64-piece random model without a tokenizer section (a few KB, so
//!   parsing it costs microseconds and the fuzzer spends its time in the header and tensor-table checks);
//! - `tokenizer.blob`: a tiny random model with ALBERT's real 30k-piece tokenizer (compact section, ~0.9 MB).

use std::path::{Path, PathBuf};

use albert_edge::{Activation, AlbertConfig};
use albert_edge_cli::blob::write_blob;
use albert_edge_cli::synthetic::random_model;
use albert_edge_cli::tokenizer_section::{build_from_file, SectionOptions};

fn config(vocab_size: usize, max_position_embeddings: usize, num_labels: usize) -> AlbertConfig {
    AlbertConfig {
        vocab_size,
        embedding_size: 4,
        hidden_size: 8,
        num_attention_heads: 2,
        intermediate_size: 12,
        num_hidden_layers: 2,
        max_position_embeddings,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: Activation::GeluNew,
        num_labels,
    }
}

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let spiece = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/spiece/30k-clean.model");
    println!("cargo:rerun-if-changed={}", spiece.display());
    println!("cargo:rerun-if-changed=build.rs");

    let small = config(64, 16, 3);
    for (name, int8) in [("small-int8.blob", true), ("small-f32.blob", false)] {
        let blob = write_blob(&random_model(&small, 1, int8)).expect("write the small blob");
        std::fs::write(out.join(name), blob).expect("write OUT_DIR blob");
    }

    let mut contents = random_model(&config(30000, 32, 2), 2, true);
    let options = SectionOptions {
        compact: true,
        ..SectionOptions::default()
    };
    contents.tokenizer = build_from_file(&spiece, &options).expect("build the tokenizer section");
    let blob = write_blob(&contents).expect("write the tokenizer blob");
    std::fs::write(out.join("tokenizer.blob"), blob).expect("write OUT_DIR blob");
}
