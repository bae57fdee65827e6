//! End to end on a tiny model with ALBERT's tokenizer (32 positions): fuzzer-chosen token ids, token types and
//! attention masks (in or out of range, any length), or fuzzer-chosen text through the tokenizer, classified in
//! both precisions with an arena of exactly `scratch_size` at any misalignment. Invalid inputs are typed errors;
//! valid ones give finite logits.
//!
//! Input: byte 0 flags (bit 0 text mode, bits 1-2 precision/arena salt, bits 4-7 arena misalignment); ids mode:
//! then `(id u16, type u8, mask u8)` per token; text mode: the text (a pair if it holds a tab).
#![no_main]

use albert_edge::model::{Inputs, Precision};
use albert_edge::Error;
use albert_edge_fuzz::{run_classify, tokenizer, tokenizer_model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let model = tokenizer_model();
    let c = model.config();
    let (ids, types, mask) = if flags & 1 == 0 {
        let mut ids = Vec::new();
        let (mut types, mut mask) = (Vec::new(), Vec::new());
        for tok in body.chunks_exact(4) {
            // Mostly in-vocabulary ids; ids past the vocabulary, types past type_vocab_size and masks other than
            // 0/1 are rarer but reachable.
            let raw = u32::from(u16::from_le_bytes([tok[0], tok[1]]));
            ids.push(if tok[2] & 0x80 != 0 {
                raw * 17
            } else {
                raw % c.vocab_size as u32
            });
            types.push(if tok[2] & 0x40 != 0 {
                u32::from(tok[2] & 0x3F)
            } else {
                u32::from(tok[2] & 1)
            });
            mask.push(if tok[3] & 0x80 != 0 {
                u32::from(tok[3])
            } else {
                u32::from(tok[3] & 1)
            });
        }
        // Sometimes leave types / mask empty (defaults) or of a different length.
        if flags & 2 != 0 {
            types.clear();
        }
        if flags & 4 != 0 {
            mask.truncate(mask.len() / 2);
        }
        (ids, types, mask)
    } else {
        let t = tokenizer();
        let text = body.split(|&b| b == b'\t').collect::<Vec<_>>();
        let mut ws = vec![0u8; t.workspace_needed(text[0], text.get(1).copied())];
        let (mut ids, mut types) = (
            vec![0u32; c.max_position_embeddings],
            vec![0u32; c.max_position_embeddings],
        );
        let n = t
            .encode_bytes(
                text[0],
                text.get(1).copied(),
                c.max_position_embeddings,
                &mut ws,
                &mut ids,
                &mut types,
            )
            .expect("workspace_needed is enough and max_len truncation fits the outputs");
        ids.truncate(n);
        types.truncate(n);
        (ids, types, Vec::new())
    };
    let inputs = Inputs {
        input_ids: &ids,
        token_type_ids: &types,
        attention_mask: &mask,
    };
    let valid = !ids.is_empty()
        && ids.len() <= c.max_position_embeddings
        && ids.iter().all(|&id| (id as usize) < c.vocab_size)
        && (types.is_empty() || types.len() == ids.len())
        && types.iter().all(|&k| (k as usize) < c.type_vocab_size)
        && (mask.is_empty() || mask.len() == ids.len())
        && mask.iter().all(|&m| m <= 1);
    for precision in [Precision::Int8, Precision::F32] {
        let mut logits = vec![f32::NAN; c.num_labels];
        match run_classify(model, precision, &inputs, &mut logits, flags >> 4) {
            Ok(()) => {
                assert!(valid, "accepted invalid inputs {ids:?} {types:?} {mask:?}");
                assert!(
                    logits.iter().all(|l| l.is_finite()),
                    "{precision:?}: {logits:?}"
                );
            }
            Err(Error::BadInput(_) | Error::SequenceTooLong { .. }) if !valid => {}
            Err(e) => {
                panic!("{precision:?}: {e:?} for {ids:?} {types:?} {mask:?} (valid: {valid})")
            }
        }
    }
});
