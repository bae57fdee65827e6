//! Darts-clone double-array tries, read in place, and the SentencePiece "precompiled charsmap" built on them.
//!
//! The unit encoding is darts-clone's (`darts.h`), which SentencePiece uses for both its piece trie and its
//! normaliser: each node is one little-endian `u32`,
//!
//! ```text
//! bit 31      IS_LEAF: this unit holds a value in bits 0..31 (and nothing else)
//! bits 10..31 OFFSET, shifted left by 8 more when bit 9 (EXTEND) is set
//! bit 8       HAS_LEAF: the node terminates a key; its value unit sits at `node ^ OFFSET`
//! bits 0..8   LABEL: the byte that leads into this node
//! ```
//!
//! The child of node `n` for byte `b` is `c = n ^ OFFSET(n) ^ b`, valid when `LABEL(c) == b`. Every access goes
//! through `slice::get`, so a corrupted array can make a lookup fail or return a wrong value, never panic or read
//! outside the section. Values are range-checked by the callers.

use crate::Error;

/// Bit layout helpers of one darts-clone unit.
#[inline]
fn has_leaf(unit: u32) -> bool {
    (unit >> 8) & 1 == 1
}

#[inline]
fn leaf_value(unit: u32) -> u32 {
    unit & 0x7FFF_FFFF
}

#[inline]
fn label(unit: u32) -> u32 {
    unit & 0x8000_00FF
}

#[inline]
fn offset(unit: u32) -> u32 {
    (unit >> 10) << ((unit & (1 << 9)) >> 6)
}

/// A darts-clone double array over `units`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DoubleArray<'a> {
    units: &'a [u32],
}

/// The root node of every double array.
pub(crate) const ROOT: u32 = 0;

impl<'a> DoubleArray<'a> {
    /// Wraps `units` (at least the root unit; checked by the caller).
    pub(crate) fn new(units: &'a [u32]) -> Self {
        DoubleArray { units }
    }

    /// Follows `byte` from `node`. Keys never contain NUL, so a NUL byte never matches (darts-clone arrays cannot
    /// match it either; stopping early also keeps hand-made arrays from matching empty units).
    #[inline]
    pub(crate) fn child(&self, node: u32, byte: u8) -> Option<u32> {
        if byte == 0 {
            return None;
        }
        let unit = *self.units.get(node as usize)?;
        let next = node ^ offset(unit) ^ u32::from(byte);
        let child = *self.units.get(next as usize)?;
        (label(child) == u32::from(byte)).then_some(next)
    }

    /// The value stored for the key that ends at `node`, if a key ends there.
    #[inline]
    pub(crate) fn value(&self, node: u32) -> Option<u32> {
        let unit = *self.units.get(node as usize)?;
        if !has_leaf(unit) {
            return None;
        }
        self.units
            .get((node ^ offset(unit)) as usize)
            .map(|&leaf| leaf_value(leaf))
    }

    /// The value of exactly `key`, if it is in the trie.
    pub(crate) fn exact(&self, key: &[u8]) -> Option<u32> {
        let mut node = ROOT;
        for &b in key {
            node = self.child(node, b)?;
        }
        if key.is_empty() {
            return None;
        }
        self.value(node)
    }

    /// The longest key that is a prefix of `bytes`, as `(key length, value)`: darts-clone's `commonPrefixSearch`
    /// followed by SentencePiece's "keep the longest result".
    #[inline]
    pub(crate) fn longest_prefix(&self, bytes: impl Iterator<Item = u8>) -> Option<(usize, u32)> {
        let mut node = ROOT;
        let mut best = None;
        for (i, b) in bytes.enumerate() {
            match self.child(node, b) {
                Some(next) => node = next,
                None => break,
            }
            if let Some(v) = self.value(node) {
                best = Some((i + 1, v));
            }
        }
        best
    }

    /// Every value stored in the array (`IS_LEAF` units), for validation. Unreachable leaf units are included,
    /// which only makes validation stricter.
    pub(crate) fn leaf_values(&self) -> impl Iterator<Item = u32> + 'a {
        self.units
            .iter()
            .filter(|&&u| u >> 31 == 1)
            .map(|&u| leaf_value(u))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Precompiled charsmap
// ---------------------------------------------------------------------------------------------------------------

/// SentencePiece's precompiled normalisation map: `u32 trie_size | trie units | NUL-terminated UTF-8 strings`. A
/// key's value is the byte offset of its replacement in the strings block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CharsMap<'a> {
    trie: DoubleArray<'a>,
    strings: &'a [u8],
}

impl<'a> CharsMap<'a> {
    /// Parses and validates a charsmap blob (`blob` must start 4-byte aligned in memory). An empty blob is the
    /// identity map (`None`). Checks: the trie size is a multiple of 4 and fits; the strings block is valid UTF-8
    /// ending in NUL; every value points at a character boundary inside it.
    pub(crate) fn parse(blob: &'a [u8], what: &'static str) -> Result<Option<Self>, Error> {
        if blob.is_empty() {
            return Ok(None);
        }
        let size_bytes: [u8; 4] = blob
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or(Error::BadTokenizer(what))?;
        let trie_size = u32::from_le_bytes(size_bytes) as usize;
        let trie_end = trie_size.checked_add(4).ok_or(Error::BadTokenizer(what))?;
        if trie_size == 0 || !trie_size.is_multiple_of(4) || trie_end >= blob.len() {
            return Err(Error::BadTokenizer(what));
        }
        let units: &[u32] = bytemuck::try_cast_slice(&blob[4..trie_end]).map_err(|_| {
            Error::BadTokenizer("tokenizer section is not 4-byte aligned in memory")
        })?;
        let strings = &blob[trie_end..];
        let text = core::str::from_utf8(strings).map_err(|_| Error::BadTokenizer(what))?;
        if strings.last() != Some(&0) {
            return Err(Error::BadTokenizer(what));
        }
        let trie = DoubleArray::new(units);
        for v in trie.leaf_values() {
            if !text.is_char_boundary(v as usize) || v as usize >= strings.len() {
                return Err(Error::BadTokenizer(what));
            }
        }
        Ok(Some(CharsMap { trie, strings }))
    }

    /// The trie (keys are UTF-8 byte strings).
    #[inline]
    pub(crate) fn trie(&self) -> DoubleArray<'a> {
        self.trie
    }

    /// The replacement stored at `value`: the bytes up to the next NUL (empty if `value` is out of range, which
    /// validation rules out).
    #[inline]
    pub(crate) fn replacement(&self, value: u32) -> &'a [u8] {
        let tail = self.strings.get(value as usize..).unwrap_or(&[]);
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        &tail[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built double array over the keys "a" -> 7, "ab" -> 8, "b" -> 9.
    ///
    /// Root (unit 0) has base 256: children at 256 ^ 'a' and 256 ^ 'b'. Node "a" (unit 256 ^ 97 = 353) has base 512:
    /// its leaf at 512, child 'b' at 512 ^ 98 = 610. Node "ab" (610) has base 768: leaf at 768. Node "b"
    /// (256 ^ 98 = 354) has base 1024: leaf at 1024.
    fn sample() -> [u32; 1025] {
        let mut u = [0u32; 1025];
        let node = |base: u32, at: u32, label: u32, leaf: bool| {
            ((base ^ at) << 10) | (u32::from(leaf) << 8) | label
        };
        u[0] = node(256, 0, 0, false);
        u[353] = node(512, 353, 97, true);
        u[512] = 0x8000_0000 | 7;
        u[610] = node(768, 610, 98, true);
        u[768] = 0x8000_0000 | 8;
        u[354] = node(1024, 354, 98, true);
        u[1024] = 0x8000_0000 | 9;
        u
    }

    #[test]
    fn darts_lookup_matches_reference_longest_prefix() {
        let units = sample();
        let da = DoubleArray::new(&units);
        assert_eq!(da.exact(b"a"), Some(7));
        assert_eq!(da.exact(b"ab"), Some(8));
        assert_eq!(da.exact(b"b"), Some(9));
        assert_eq!(da.exact(b"ba"), None);
        assert_eq!(da.exact(b""), None);
        assert_eq!(da.longest_prefix(b"abc".iter().copied()), Some((2, 8)));
        assert_eq!(da.longest_prefix(b"ac".iter().copied()), Some((1, 7)));
        assert_eq!(da.longest_prefix(b"c".iter().copied()), None);
        assert_eq!(da.longest_prefix(b"a\0b".iter().copied()), Some((1, 7)));
    }

    #[test]
    fn darts_lookup_never_panics_on_garbage() {
        // Offsets pointing far outside the array, labels that match everything: lookups just fail.
        let units = [u32::MAX, 0xFFFF_FD61, 0x0000_0161, 0x8000_0000];
        let da = DoubleArray::new(&units);
        for key in [&b"a"[..], b"ab", b"\xff\xfe", b"zzzzzzzz"] {
            let _ = da.exact(key);
            let _ = da.longest_prefix(key.iter().copied());
        }
        let empty = DoubleArray::new(&[]);
        assert_eq!(empty.exact(b"a"), None);
    }

    fn blob(units: &[u32], strings: &[u8]) -> [u32; 64] {
        let mut out = [0u32; 64];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out);
        bytes[..4].copy_from_slice(&((units.len() * 4) as u32).to_le_bytes());
        bytes[4..4 + units.len() * 4].copy_from_slice(bytemuck::cast_slice(units));
        bytes[4 + units.len() * 4..4 + units.len() * 4 + strings.len()].copy_from_slice(strings);
        out
    }

    #[test]
    fn charsmap_validation_rejects_corrupt_blobs() {
        // Root with base 4; key "a" (unit 4 ^ 97 = 101) is out of this tiny array, so no key matches; values are
        // still validated.
        let units = [4u32 << 10, 0x8000_0000, 0x8000_0002, 0];
        let good = blob(&units, b"x\0y\0");
        let good_len = 4 + 16 + 4;
        let bytes: &[u8] = bytemuck::cast_slice(&good);
        let map = CharsMap::parse(&bytes[..good_len], "cm").unwrap().unwrap();
        assert_eq!(map.replacement(0), b"x");
        assert_eq!(map.replacement(2), b"y");
        assert_eq!(map.replacement(99), b"");
        // Truncated: strings missing / trie size past the end / not a multiple of 4.
        assert!(CharsMap::parse(&bytes[..20], "cm").is_err());
        assert!(CharsMap::parse(&bytes[..3], "cm").is_err());
        let mut bad = good;
        bytemuck::cast_slice_mut::<u32, u8>(&mut bad)[0] = 17;
        assert!(CharsMap::parse(&bytemuck::cast_slice::<u32, u8>(&bad)[..good_len], "cm").is_err());
        // A value past the strings, strings without the final NUL, invalid UTF-8.
        let far = blob(&[4u32 << 10, 0x8000_0009, 0, 0], b"x\0y\0");
        assert!(CharsMap::parse(&bytemuck::cast_slice::<u32, u8>(&far)[..good_len], "cm").is_err());
        let no_nul = blob(&units, b"x\0yy");
        assert!(
            CharsMap::parse(&bytemuck::cast_slice::<u32, u8>(&no_nul)[..good_len], "cm").is_err()
        );
        let bad_utf8 = blob(&units, b"x\0\xff\0");
        assert!(CharsMap::parse(
            &bytemuck::cast_slice::<u32, u8>(&bad_utf8)[..good_len],
            "cm"
        )
        .is_err());
        assert!(CharsMap::parse(&[], "cm").unwrap().is_none());
    }
}
