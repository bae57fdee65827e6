//! `model.safetensors` from bytes (`weights::WeightsFile`): the header (length prefix, JSON, offsets, dtypes,
//! shapes) and then every tensor read as `f32`. A one-line error or values matching the shape, never a panic.
#![no_main]

use std::path::Path;

use albert_edge_cli::weights::WeightsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(w) = WeightsFile::from_bytes(Path::new("model.safetensors"), data.to_vec()) else {
        return;
    };
    let names: Vec<String> = w.names().map(str::to_string).collect();
    for name in names {
        match w.read_f32(&name) {
            Ok(t) => {
                assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
                assert!(t.values.iter().all(|v| v.is_finite()));
            }
            Err(e) => assert!(!format!("{e:#}").contains('\n'), "{e:#}"),
        }
    }
});
