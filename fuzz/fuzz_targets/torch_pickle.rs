//! The restricted pickle reader (`torch_pickle::read_state_dict`) on arbitrary `data.pkl` bytes, then, through a
//! zip archive built around them with four storages of fixed sizes, every tensor it names read as `f32`
//! (`torch_zip`: views checked against their storage, strided gathers). Never a panic, an abort, unbounded memory
//! or deep recursion; a tensor that reads has as many values as its shape.
#![no_main]

use std::io::Cursor;

use albert_edge_cli::torch_pickle::{read_state_dict, StorageType};
use albert_edge_cli::torch_zip::{write_archive, TorchArchive};
use libfuzzer_sys::fuzz_target;

/// Storages `0`..`3`: 16, 64, 6 and 0 bytes of a fixed pattern (NaN bytes included).
fn storages() -> Vec<(&'static str, Vec<u8>)> {
    [("0", 16usize), ("1", 64), ("2", 6), ("3", 0)]
        .into_iter()
        .map(|(k, n)| (k, (0..n).map(|i| (i * 37 + 0x7F) as u8).collect()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(tensors) = read_state_dict(data) else {
        return;
    };
    let storages = storages();
    let refs: Vec<(&str, &[u8])> = storages.iter().map(|(k, v)| (*k, &v[..])).collect();
    let bytes = write_archive(data, &refs).expect("an in-memory zip");
    let mut archive = TorchArchive::new(Cursor::new(bytes)).expect("the pickle read once already");
    for (name, record) in tensors {
        if !matches!(
            record.dtype,
            StorageType::F32 | StorageType::F16 | StorageType::BF16
        ) {
            continue;
        }
        if let Ok((shape, values)) = archive.read_f32(&name) {
            assert_eq!(values.len(), shape.iter().product::<usize>());
            assert!(values.len() as u64 <= 64);
        }
    }
});
