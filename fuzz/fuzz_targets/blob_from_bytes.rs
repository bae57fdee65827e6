//! `Model::from_bytes` on arbitrary bytes, at the input's own address and as an aligned copy: a typed error or a
//! model that then runs (`exercise`), never a panic.
#![no_main]

use albert_edge::format::AlignedBlob;
use albert_edge::Model;
use albert_edge_fuzz::exercise;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Model::from_bytes(data);
    let aligned = AlignedBlob::new(data);
    if let Ok(model) = Model::from_bytes(aligned.bytes()) {
        exercise(&model, data.first().copied().unwrap_or(0));
    }
});
