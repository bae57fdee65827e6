//! The tokenizer (ALBERT's 30k-piece model) on arbitrary bytes, single sentences and pairs split at a
//! fuzzer-chosen point, with fuzzer-chosen truncation, workspace and output sizes. Checks, besides "no panic":
//!
//! - the byte API on invalid UTF-8 equals the str API on `String::from_utf8_lossy` (and on valid UTF-8, the
//!   str API on the same text);
//! - a result is `[CLS] ... [SEP]` with type ids 0 then 1, no longer than `max_len` (>= 3) when truncating;
//! - `ArenaTooSmall { needed }` and `OutputTooSmall { needed }` are exact: retrying with that much succeeds.
//!
//! Input: byte 0 flags (bit 0 pair, bits 1-2 max_len 0 / 3 / 8 / 32, bits 3-4 workspace 64 B / 1 KB / 8 KB / 64 KB,
//! bit 5 a 4-id output), bytes 1-2 the split point, then the text.
#![no_main]

use std::borrow::Cow;
use std::ops::ControlFlow;

use albert_edge::tokenizer::Tokenizer;
use albert_edge::Error;
use albert_edge_fuzz::tokenizer;
use libfuzzer_sys::fuzz_target;

type Encoded = Result<(Vec<u32>, Vec<u32>), Error>;

fn encode(
    t: &Tokenizer,
    text: &[u8],
    pair: Option<&[u8]>,
    max_len: usize,
    ws_len: usize,
    out_len: usize,
) -> Encoded {
    let mut ws = vec![0u8; ws_len];
    let (mut ids, mut types) = (vec![0u32; out_len], vec![0u32; out_len]);
    let n = t.encode_bytes(text, pair, max_len, &mut ws, &mut ids, &mut types)?;
    Ok((ids[..n].to_vec(), types[..n].to_vec()))
}

fn encode_str(
    t: &Tokenizer,
    text: &str,
    pair: Option<&str>,
    max_len: usize,
    ws_len: usize,
    out_len: usize,
) -> Encoded {
    let mut ws = vec![0u8; ws_len];
    let (mut ids, mut types) = (vec![0u32; out_len], vec![0u32; out_len]);
    let n = t.encode(text, pair, max_len, &mut ws, &mut ids, &mut types)?;
    Ok((ids[..n].to_vec(), types[..n].to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let [flags, s0, s1, body @ ..] = data else {
        return;
    };
    let t = tokenizer();
    let max_len = [0, 3, 8, 32][usize::from(flags >> 1 & 3)];
    let ws_len = [64, 1024, 8192, 65536][usize::from(flags >> 3 & 3)];
    let out_len = if flags & 0x20 != 0 {
        4
    } else {
        2 * body.len() + 8
    };
    let (text, pair) = if flags & 1 != 0 {
        let at = usize::from(u16::from_le_bytes([*s0, *s1])) % (body.len() + 1);
        (&body[..at], Some(&body[at..]))
    } else {
        (body, None)
    };

    let got = encode(t, text, pair, max_len, ws_len, out_len);

    // The byte API reads invalid UTF-8 as from_utf8_lossy does.
    let (lossy, lossy_pair) = (
        String::from_utf8_lossy(text),
        pair.map(String::from_utf8_lossy),
    );
    let via_str = encode_str(t, &lossy, lossy_pair.as_deref(), max_len, ws_len, out_len);
    let valid = matches!(lossy, Cow::Borrowed(_)) && !matches!(lossy_pair, Some(Cow::Owned(_)));
    match (&got, &via_str) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "bytes vs str (valid UTF-8: {valid})"),
        // A lossy string can be longer (U+FFFD is 3 bytes), so it may need a larger workspace.
        (Err(Error::ArenaTooSmall { .. }), _) | (_, Err(Error::ArenaTooSmall { .. })) if !valid => {
        }
        (a, b) => assert_eq!(
            a.as_ref().err(),
            b.as_ref().err(),
            "bytes vs str (valid UTF-8: {valid})"
        ),
    }

    match got {
        Ok((ids, types)) => {
            assert!(ids.len() >= 2, "{ids:?}");
            assert_eq!(ids[0], t.cls_id());
            assert_eq!(*ids.last().unwrap(), t.sep_id());
            assert!(
                ids.iter().all(|&id| (id as usize) < t.vocab_size()),
                "{ids:?}"
            );
            if max_len >= 3 {
                assert!(ids.len() <= max_len, "{} > {max_len}", ids.len());
            }
            // Type ids: 0 up to and including the first [SEP] of a pair, then 1.
            assert!(
                types.windows(2).all(|w| w[0] <= w[1]) && types.iter().all(|&k| k <= 1),
                "{types:?}"
            );
            assert!(pair.is_some() || types.iter().all(|&k| k == 0));
        }
        Err(Error::ArenaTooSmall { needed, got }) => {
            assert!(needed > got);
            assert_eq!(needed, t.workspace_needed(text, pair));
            let retry = encode(t, text, pair, max_len, needed, out_len);
            assert!(
                !matches!(retry, Err(Error::ArenaTooSmall { .. })),
                "{needed} bytes: {retry:?}"
            );
        }
        Err(Error::OutputTooSmall { needed, got }) => {
            assert!(needed > got);
            let retry = encode(t, text, pair, max_len, ws_len, needed);
            assert!(retry.is_ok(), "{needed} ids: {retry:?}");
            assert_eq!(retry.unwrap().0.len(), needed);
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }

    // The other entry points: no special tokens, normaliser only, SentencePiece only.
    let mut ws = vec![0u8; ws_len];
    let mut ids = vec![0u32; out_len];
    let _ = t.tokenize(text, &mut ws, &mut ids);
    let mut norm = vec![0u8; 16 * text.len() + 8];
    let n = t
        .normalize(text, &mut norm)
        .expect("16 bytes per input byte is enough");
    assert!(
        std::str::from_utf8(&norm[..n]).is_ok(),
        "normalised text is UTF-8"
    );
    if let Ok(s) = std::str::from_utf8(text) {
        let mut count = 0usize;
        let _ = t.encode_pieces(s, &mut ws, |_, id| {
            assert!((id as usize) < t.vocab_size());
            count += 1;
            ControlFlow::Continue(())
        });
    }
});
