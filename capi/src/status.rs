//! Status codes: what every function returns, and their names and messages.

use core::ffi::{c_char, CStr};

use albert_edge::Error;

/// What a function returns: `ALBERT_EDGE_OK` (0), or the error that stopped it. Codes are stable: new ones are
/// added at the end, none is renumbered. `albert_edge_status_name` and `albert_edge_status_message` name them.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum albert_edge_status {
    /// Success.
    ALBERT_EDGE_OK = 0,
    /// A pointer argument that must not be NULL is NULL (a buffer pointer may be NULL only with length 0).
    ALBERT_EDGE_ERR_NULL_POINTER = 1,
    /// An argument is out of range (unknown precision, label index past `num_labels`, a length over
    /// `PTRDIFF_MAX`), or two buffers overlap.
    ALBERT_EDGE_ERR_BAD_ARGUMENT = 2,
    /// A pointer is not aligned for its type: the blob needs 4 bytes (16 recommended), `albert_edge_model` 8,
    /// `uint32_t` and `float` arrays 4.
    ALBERT_EDGE_ERR_MISALIGNED = 3,
    /// The `albert_edge_model` was never opened, or its last `albert_edge_open` failed.
    ALBERT_EDGE_ERR_NOT_OPEN = 4,
    /// The blob does not start with the albert-edge magic bytes.
    ALBERT_EDGE_ERR_BAD_MAGIC = 5,
    /// The blob's format version is not one this library reads.
    ALBERT_EDGE_ERR_UNSUPPORTED_VERSION = 6,
    /// The blob is shorter than its header says (truncated file, partial flash write).
    ALBERT_EDGE_ERR_TRUNCATED = 7,
    /// The blob's CRC-32 does not match its contents (corrupt blob).
    ALBERT_EDGE_ERR_CHECKSUM_MISMATCH = 8,
    /// The blob's config holds a value this library does not support.
    ALBERT_EDGE_ERR_BAD_CONFIG = 9,
    /// The blob's tensor table is malformed, lacks a tensor, or a shape disagrees with the config.
    ALBERT_EDGE_ERR_BAD_TENSOR = 10,
    /// The blob's label-names section is malformed.
    ALBERT_EDGE_ERR_BAD_LABELS = 11,
    /// The blob's tokenizer section is malformed.
    ALBERT_EDGE_ERR_BAD_TOKENIZER = 12,
    /// The blob has no tokenizer section: pass token ids to `albert_edge_classify` instead of text.
    ALBERT_EDGE_ERR_NO_TOKENIZER = 13,
    /// `ALBERT_EDGE_PRECISION_INT8` needs a blob with int8 weights; this one holds f32 weights.
    ALBERT_EDGE_ERR_NOT_INT8 = 14,
    /// The scratch arena or tokenizer workspace is smaller than needed (see the `*_size` functions).
    ALBERT_EDGE_ERR_ARENA_TOO_SMALL = 15,
    /// More tokens than the model's `max_position_embeddings`.
    ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG = 16,
    /// Malformed input: no tokens, a token id outside the vocabulary, a type id outside `type_vocab_size`, an
    /// attention mask value other than 0 and 1.
    ALBERT_EDGE_ERR_BAD_INPUT = 17,
    /// An output buffer (token ids, logits) is too short.
    ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL = 18,
    /// An error newer than this list (not returned by this version).
    ALBERT_EDGE_ERR_OTHER = 19,
}

use albert_edge_status::*;

/// Every status, in code order: `ALL[code]` is the status with that code.
const ALL: [albert_edge_status; 20] = [
    ALBERT_EDGE_OK,
    ALBERT_EDGE_ERR_NULL_POINTER,
    ALBERT_EDGE_ERR_BAD_ARGUMENT,
    ALBERT_EDGE_ERR_MISALIGNED,
    ALBERT_EDGE_ERR_NOT_OPEN,
    ALBERT_EDGE_ERR_BAD_MAGIC,
    ALBERT_EDGE_ERR_UNSUPPORTED_VERSION,
    ALBERT_EDGE_ERR_TRUNCATED,
    ALBERT_EDGE_ERR_CHECKSUM_MISMATCH,
    ALBERT_EDGE_ERR_BAD_CONFIG,
    ALBERT_EDGE_ERR_BAD_TENSOR,
    ALBERT_EDGE_ERR_BAD_LABELS,
    ALBERT_EDGE_ERR_BAD_TOKENIZER,
    ALBERT_EDGE_ERR_NO_TOKENIZER,
    ALBERT_EDGE_ERR_NOT_INT8,
    ALBERT_EDGE_ERR_ARENA_TOO_SMALL,
    ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG,
    ALBERT_EDGE_ERR_BAD_INPUT,
    ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL,
    ALBERT_EDGE_ERR_OTHER,
];

impl albert_edge_status {
    /// The status with code `code`, if there is one.
    pub fn from_code(code: i32) -> Option<Self> {
        usize::try_from(code).ok().and_then(|i| ALL.get(i)).copied()
    }

    /// The identifier, as the header spells it.
    pub fn name(self) -> &'static CStr {
        match self {
            ALBERT_EDGE_OK => c"ALBERT_EDGE_OK",
            ALBERT_EDGE_ERR_NULL_POINTER => c"ALBERT_EDGE_ERR_NULL_POINTER",
            ALBERT_EDGE_ERR_BAD_ARGUMENT => c"ALBERT_EDGE_ERR_BAD_ARGUMENT",
            ALBERT_EDGE_ERR_MISALIGNED => c"ALBERT_EDGE_ERR_MISALIGNED",
            ALBERT_EDGE_ERR_NOT_OPEN => c"ALBERT_EDGE_ERR_NOT_OPEN",
            ALBERT_EDGE_ERR_BAD_MAGIC => c"ALBERT_EDGE_ERR_BAD_MAGIC",
            ALBERT_EDGE_ERR_UNSUPPORTED_VERSION => c"ALBERT_EDGE_ERR_UNSUPPORTED_VERSION",
            ALBERT_EDGE_ERR_TRUNCATED => c"ALBERT_EDGE_ERR_TRUNCATED",
            ALBERT_EDGE_ERR_CHECKSUM_MISMATCH => c"ALBERT_EDGE_ERR_CHECKSUM_MISMATCH",
            ALBERT_EDGE_ERR_BAD_CONFIG => c"ALBERT_EDGE_ERR_BAD_CONFIG",
            ALBERT_EDGE_ERR_BAD_TENSOR => c"ALBERT_EDGE_ERR_BAD_TENSOR",
            ALBERT_EDGE_ERR_BAD_LABELS => c"ALBERT_EDGE_ERR_BAD_LABELS",
            ALBERT_EDGE_ERR_BAD_TOKENIZER => c"ALBERT_EDGE_ERR_BAD_TOKENIZER",
            ALBERT_EDGE_ERR_NO_TOKENIZER => c"ALBERT_EDGE_ERR_NO_TOKENIZER",
            ALBERT_EDGE_ERR_NOT_INT8 => c"ALBERT_EDGE_ERR_NOT_INT8",
            ALBERT_EDGE_ERR_ARENA_TOO_SMALL => c"ALBERT_EDGE_ERR_ARENA_TOO_SMALL",
            ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG => c"ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG",
            ALBERT_EDGE_ERR_BAD_INPUT => c"ALBERT_EDGE_ERR_BAD_INPUT",
            ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL => c"ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL",
            ALBERT_EDGE_ERR_OTHER => c"ALBERT_EDGE_ERR_OTHER",
        }
    }

    /// One sentence: what went wrong and what to do next.
    pub fn message(self) -> &'static CStr {
        match self {
            ALBERT_EDGE_OK => c"success",
            ALBERT_EDGE_ERR_NULL_POINTER => c"a required pointer argument is NULL",
            ALBERT_EDGE_ERR_BAD_ARGUMENT => c"an argument is out of range, or two buffers overlap",
            ALBERT_EDGE_ERR_MISALIGNED => c"a pointer is misaligned: the blob needs 4 bytes (16 recommended), albert_edge_model 8, uint32_t and float arrays 4",
            ALBERT_EDGE_ERR_NOT_OPEN => c"the model is not open: call albert_edge_open and check that it returns ALBERT_EDGE_OK",
            ALBERT_EDGE_ERR_BAD_MAGIC => c"not an albert-edge model blob (bad magic); convert the checkpoint with `albert-edge convert`",
            ALBERT_EDGE_ERR_UNSUPPORTED_VERSION => c"the blob's format version is not supported by this library; convert it again with the matching albert-edge",
            ALBERT_EDGE_ERR_TRUNCATED => c"the blob is shorter than its header says (truncated file or partial flash write)",
            ALBERT_EDGE_ERR_CHECKSUM_MISMATCH => c"the blob is corrupt: its CRC-32 does not match; flash it again",
            ALBERT_EDGE_ERR_BAD_CONFIG => c"the blob's model config is not supported by this library",
            ALBERT_EDGE_ERR_BAD_TENSOR => c"the blob's tensor table is malformed or lacks a tensor",
            ALBERT_EDGE_ERR_BAD_LABELS => c"the blob's label-names section is malformed",
            ALBERT_EDGE_ERR_BAD_TOKENIZER => c"the blob's tokenizer section is malformed",
            ALBERT_EDGE_ERR_NO_TOKENIZER => c"the blob has no tokenizer section; pass token ids to albert_edge_classify, or convert the checkpoint again",
            ALBERT_EDGE_ERR_NOT_INT8 => c"int8 precision needs a blob converted with --weights int8; use ALBERT_EDGE_PRECISION_F32 or convert again",
            ALBERT_EDGE_ERR_ARENA_TOO_SMALL => c"the scratch arena or tokenizer workspace is too small; size it with the albert_edge_*_size functions",
            ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG => c"the input has more tokens than the model's max_position_embeddings",
            ALBERT_EDGE_ERR_BAD_INPUT => c"malformed input: no tokens, or an id outside the vocabulary or type_vocab_size, or a mask value other than 0 and 1",
            ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL => c"an output buffer (token ids or logits) is too short",
            ALBERT_EDGE_ERR_OTHER => c"an error this version of the library does not name",
        }
    }
}

impl From<Error> for albert_edge_status {
    fn from(e: Error) -> Self {
        match e {
            Error::BadMagic => ALBERT_EDGE_ERR_BAD_MAGIC,
            Error::UnsupportedVersion(_) => ALBERT_EDGE_ERR_UNSUPPORTED_VERSION,
            Error::Truncated { .. } => ALBERT_EDGE_ERR_TRUNCATED,
            Error::ChecksumMismatch { .. } => ALBERT_EDGE_ERR_CHECKSUM_MISMATCH,
            Error::MisalignedBlob => ALBERT_EDGE_ERR_MISALIGNED,
            Error::BadConfig(_)
            | Error::ConfigOutOfRange { .. }
            | Error::ConfigNotMultiple { .. } => ALBERT_EDGE_ERR_BAD_CONFIG,
            Error::BadTensor(_) | Error::MissingTensor(_) | Error::ShapeMismatch(_) => {
                ALBERT_EDGE_ERR_BAD_TENSOR
            }
            Error::BadLabels => ALBERT_EDGE_ERR_BAD_LABELS,
            Error::BadTokenizer(_) => ALBERT_EDGE_ERR_BAD_TOKENIZER,
            Error::ArenaTooSmall { .. } => ALBERT_EDGE_ERR_ARENA_TOO_SMALL,
            Error::SequenceTooLong { .. } => ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG,
            Error::BadInput(_) => ALBERT_EDGE_ERR_BAD_INPUT,
            Error::OutputTooSmall { .. } => ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL,
            _ => ALBERT_EDGE_ERR_OTHER,
        }
    }
}

/// The name of status code `status` as the header spells it (`"ALBERT_EDGE_ERR_CHECKSUM_MISMATCH"`), or
/// `"ALBERT_EDGE_UNKNOWN_STATUS"` for a code that is not one. A static NUL-terminated string; never NULL.
#[no_mangle]
pub extern "C" fn albert_edge_status_name(status: i32) -> *const c_char {
    albert_edge_status::from_code(status)
        .map_or(c"ALBERT_EDGE_UNKNOWN_STATUS", albert_edge_status::name)
        .as_ptr()
}

/// One sentence about status code `status`: what went wrong and what to do next (`"unknown status code"` for a
/// code that is not one). A static NUL-terminated string; never NULL.
#[no_mangle]
pub extern "C" fn albert_edge_status_message(status: i32) -> *const c_char {
    albert_edge_status::from_code(status)
        .map_or(c"unknown status code", albert_edge_status::message)
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_index_the_table_and_names_match() {
        for (code, s) in ALL.iter().enumerate() {
            assert_eq!(*s as i32, code as i32);
            assert_eq!(albert_edge_status::from_code(code as i32), Some(*s));
            assert!(s.name().to_str().unwrap().starts_with("ALBERT_EDGE_"));
            assert!(!s.message().is_empty());
        }
        assert_eq!(albert_edge_status::from_code(-1), None);
        assert_eq!(albert_edge_status::from_code(ALL.len() as i32), None);
    }
}
