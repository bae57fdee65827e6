//! `pytorch_model.bin` from bytes (`weights::WeightsFile`): the zip archive (central directory, entry sizes,
//! CRCs), `data.pkl` and every tensor read as `f32`. A one-line error or values matching the shape, never a panic,
//! an abort or an allocation larger than the file allows.
#![no_main]

use std::path::Path;

use albert_edge_cli::weights::WeightsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(w) = WeightsFile::from_bytes(Path::new("pytorch_model.bin"), data.to_vec()) else {
        return;
    };
    let names: Vec<String> = w.names().map(str::to_string).collect();
    for name in names {
        match w.read_f32(&name) {
            Ok(t) => {
                assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
                // Each value comes from at least two bytes of a storage inside the file.
                assert!(t.values.len() <= data.len() / 2);
            }
            Err(e) => assert!(!format!("{e:#}").contains('\n'), "{e:#}"),
        }
    }
});
