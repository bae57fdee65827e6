//! `Model::from_bytes` on a valid seed blob damaged by fuzzer-chosen edits, with the CRC-32 optionally rewritten
//! to match so that the checks after the checksum (config limits, tensor table, labels, tokenizer section) are
//! reached. A blob that still validates must run (`exercise`).
//!
//! Input: byte 0 chooses the seed (bit 0: the small int8 or f32 blob), whether to patch the CRC (bit 2) and the
//! arena's misalignment (bits 4-7); byte 1 the new length (0: unchanged, else truncate or zero-extend by up to
//! 127 bytes); then 8-byte edits `(offset u32, op u8, value u8, value u16)`.
//!
//! The seeds have no tokenizer section: validating ALBERT's 1 MB section takes tens of milliseconds under the
//! sanitizer, which would cut this target's speed a hundredfold. A section's offset and length fields are still
//! mutated here (pointing into the weights); the section validator's own damage handling is covered by the
//! tokenizer unit tests (every byte of a small section flipped) and `blob_corruption.rs` (sampled flips).
#![no_main]

use albert_edge::format::AlignedBlob;
use albert_edge::Model;
use albert_edge_fuzz::{exercise, patch_crc, small_f32, small_int8};
use libfuzzer_sys::fuzz_target;

/// Values worth writing into a `u32` field: limits, powers of two, the seed's own length.
const INTERESTING: [u32; 12] = [
    0,
    1,
    2,
    3,
    15,
    16,
    17,
    127,
    128,
    0x7FFF_FFFF,
    0x8000_0000,
    u32::MAX,
];

fn edit(bytes: &mut [u8], e: &[u8]) {
    let len = bytes.len();
    if len == 0 {
        return;
    }
    let offset = u32::from_le_bytes(e[0..4].try_into().unwrap()) as usize;
    let (op, v, wide) = (e[4], e[5], u16::from_le_bytes([e[6], e[7]]));
    // Most edits land in the header, tensor table and labels, where the interesting structure is.
    let at = if op & 0x80 == 0 {
        offset % len.min(4096)
    } else {
        offset % len
    };
    match op & 0x7 {
        0 => bytes[at] ^= v,
        1 => bytes[at] = v,
        2 => bytes[at] = bytes[at].wrapping_add(v),
        3 | 4 => {
            // A u32 field (4-byte aligned, as every header and table field is).
            let at = at & !3;
            if at + 4 <= len {
                let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                let new = match op & 0x7 {
                    3 => INTERESTING[usize::from(v) % INTERESTING.len()],
                    _ => old.wrapping_add(u32::from(wide)).wrapping_sub(0x8000),
                };
                bytes[at..at + 4].copy_from_slice(&new.to_le_bytes());
            }
        }
        5 => {
            if at + 4 <= len {
                bytes[at..at + 4]
                    .copy_from_slice(&(len as u32).wrapping_add(u32::from(v)).to_le_bytes());
            }
        }
        6 => {
            // Copy a 48-byte run (one tensor-table entry) over another place.
            let from = usize::from(wide) % len;
            let n = 48.min(len - at).min(len - from);
            bytes.copy_within(from..from + n, at);
        }
        _ => bytes[at..]
            .iter_mut()
            .take(usize::from(v))
            .for_each(|b| *b = 0),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seed = if mode & 1 == 0 {
        small_int8()
    } else {
        small_f32()
    };
    let mut bytes = seed.to_vec();
    let (resize, edits) = rest.split_first().map_or((0, &[][..]), |(&r, e)| (r, e));
    if resize != 0 {
        let new_len = if resize & 0x80 != 0 {
            bytes.len() + usize::from(resize & 0x7F)
        } else {
            bytes.len().saturating_sub(usize::from(resize))
        };
        bytes.resize(new_len, 0);
    }
    for e in edits.chunks_exact(8) {
        edit(&mut bytes, e);
    }
    if mode & 4 != 0 {
        patch_crc(&mut bytes);
    }
    let aligned = AlignedBlob::new(&bytes);
    if let Ok(model) = Model::from_bytes(aligned.bytes()) {
        exercise(&model, mode >> 4);
    }
});
