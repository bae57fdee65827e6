//! # albert-edge C ABI
//!
//! `libalbert_edge.a` and `include/albert_edge.h`: albert-edge for C and C++ programs and firmware, with the
//! guarantees of the Rust API: no allocator (the caller owns every byte, sized up front by the `*_size`
//! functions), the blob read in place, errors as values (`albert_edge_status`), and no panic across the
//! boundary: every pointer is checked for NULL, alignment and overlap, every length against what the call needs.
//!
//! ```c
//! static albert_edge_model model;                   // opaque, no allocation
//! albert_edge_status s = albert_edge_open(&model, blob, blob_len);
//! size_t need = albert_edge_text_scratch_size(&model, 64, 64, ALBERT_EDGE_PRECISION_INT8);
//! // ... a buffer of `need` bytes ...
//! s = albert_edge_classify_text(&model, ALBERT_EDGE_PRECISION_INT8, text, strlen(text), NULL, 0, 64,
//!                               scratch, need, logits, 2);
//! ```
//!
//! The library is `no_std` on bare-metal targets (`target_os = "none"`), where it brings its own panic handler
//! (a trap: no call reaches one, every input is checked first). On a hosted target it links Rust's `std` for
//! the panic runtime only; nothing allocates. See docs/c-api.md.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(target_os = "none"))]
extern crate std;

mod args;
mod status;

use core::ffi::c_char;
use core::mem::{align_of, size_of};
use core::ptr;

use albert_edge::model::{classify, is_int8, scratch_size, Inputs, Precision};
use albert_edge::Model;

use args::{disjoint, input, output, put, span, Checked};
use status::albert_edge_status::*;
pub use status::{albert_edge_status, albert_edge_status_message, albert_edge_status_name};

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Unreachable through the C ABI (inputs are validated, the core's hot path does not fail); if it is reached
    // anyway, trap into the firmware's fault handler rather than return into C.
    loop {
        #[cfg(target_arch = "arm")]
        // SAFETY: `udf` raises an undefined-instruction fault and touches no memory.
        unsafe {
            core::arch::asm!("udf #0")
        };
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------------------------

/// The int8 engine: int8 weights and activations, `int32_t` accumulation. Needs an int8 blob.
pub const ALBERT_EDGE_PRECISION_INT8: u32 = 0;
/// The f32 reference forward pass (slower, larger arena); works with int8 and f32 blobs.
pub const ALBERT_EDGE_PRECISION_F32: u32 = 1;

/// `uint64_t` words in an `albert_edge_model` (4 KiB): room for the library's model handle (about 1.5 KiB on
/// 32-bit targets, 2.8 KiB on 64-bit ones) with headroom, so that the header does not change with it.
pub const ALBERT_EDGE_MODEL_WORDS: usize = 512;

/// An opened model: storage the caller provides (a `static`, a global, a stack variable), filled by
/// `albert_edge_open`. Its contents are private; it borrows the blob, which must stay in place and unchanged
/// while the model is used. No close is needed: it holds no resources. Copying it with `memcpy` is fine.
#[allow(non_camel_case_types)]
#[repr(C)]
pub struct albert_edge_model {
    /// Private.
    pub opaque: [u64; ALBERT_EDGE_MODEL_WORDS],
}

/// The model's hyper-parameters, as `albert_edge_get_config` reports them.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct albert_edge_config {
    /// Pieces in the vocabulary: token ids are below it.
    pub vocab_size: u32,
    /// Factorised embedding width E.
    pub embedding_size: u32,
    /// Hidden width H.
    pub hidden_size: u32,
    /// Attention heads.
    pub num_attention_heads: u32,
    /// Feed-forward width.
    pub intermediate_size: u32,
    /// How many times the one shared layer is applied.
    pub num_hidden_layers: u32,
    /// The most tokens an input may have.
    pub max_position_embeddings: u32,
    /// Token types (2 for sentence pairs): type ids are below it.
    pub type_vocab_size: u32,
    /// Logits per classification (and label names).
    pub num_labels: u32,
    /// Feed-forward activation: 0 exact GELU, 1 GELU (tanh approximation), 2 ReLU.
    pub hidden_act: u32,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f32,
    /// The blob's format version: 2, or 1 for a blob converted before outlier side columns (it runs; reconverting
    /// the checkpoint adds them).
    pub format_version: u32,
    /// 1 if every weight matrix is int8 (`ALBERT_EDGE_PRECISION_INT8` works), else 0.
    pub int8_weights: u32,
    /// 1 if the blob carries a tokenizer (the text functions work), else 0.
    pub has_tokenizer: u32,
}

// ---------------------------------------------------------------------------------------------------------------
// The model handle
// ---------------------------------------------------------------------------------------------------------------

/// What an `albert_edge_model` holds: a tag saying it is open, then the model.
#[repr(C)]
struct Opened {
    tag: u64,
    model: Model<'static>,
}

/// "ALBEDGE" + 1: the first word of an open model.
const OPEN_TAG: u64 = u64::from_le_bytes(*b"ALBEDGE\x01");

const _: () = assert!(size_of::<Opened>() <= size_of::<albert_edge_model>());
const _: () = assert!(align_of::<Opened>() <= align_of::<albert_edge_model>());

fn precision(code: u32) -> Checked<Precision> {
    match code {
        ALBERT_EDGE_PRECISION_INT8 => Ok(Precision::Int8),
        ALBERT_EDGE_PRECISION_F32 => Ok(Precision::F32),
        _ => Err(ALBERT_EDGE_ERR_BAD_ARGUMENT),
    }
}

/// The open model behind `handle`.
///
/// # Safety
/// A non-NULL `handle` must point to a readable `albert_edge_model` whose blob (if open) is still in place.
unsafe fn opened<'a>(handle: *const albert_edge_model) -> Checked<&'a Model<'static>> {
    if handle.is_null() {
        return Err(ALBERT_EDGE_ERR_NULL_POINTER);
    }
    if !(handle as usize).is_multiple_of(align_of::<albert_edge_model>()) {
        return Err(ALBERT_EDGE_ERR_MISALIGNED);
    }
    let opened = handle.cast::<Opened>();
    // SAFETY: readable and aligned (checked, and the caller's contract); the tag is a plain word.
    if unsafe { ptr::addr_of!((*opened).tag).read() } != OPEN_TAG {
        return Err(ALBERT_EDGE_ERR_NOT_OPEN);
    }
    // SAFETY: the tag is written only by `albert_edge_open`, after the model it guards.
    Ok(unsafe { &(*opened).model })
}

/// The span of the handle and its blob: buffers the library writes must not overlap them.
fn model_spans(handle: *const albert_edge_model, model: &Model) -> [args::Span; 2] {
    let blob = model.as_bytes();
    [span(handle, 1), span(blob.as_ptr(), blob.len())]
}

/// `size_of(albert_edge_model)` as this library was built: compare with `sizeof(albert_edge_model)` to catch a
/// header that does not belong to the library.
#[no_mangle]
pub extern "C" fn albert_edge_model_size() -> usize {
    size_of::<albert_edge_model>()
}

/// Opens the model blob at `blob` (`blob_len` bytes; extra bytes after the blob's recorded length are ignored)
/// into `model`, in place: nothing is copied. Validates everything once (magic, version, length, CRC-32,
/// config, tensor table, labels, tokenizer); afterwards inference cannot fail on the blob's account.
///
/// `blob` must be 4-byte aligned (16 recommended) and must stay in place, unchanged, while `model` is used.
/// On failure `model` is left closed (other functions return `ALBERT_EDGE_ERR_NOT_OPEN`).
///
/// Errors: `ALBERT_EDGE_ERR_NULL_POINTER` (`model` or `blob`), `ALBERT_EDGE_ERR_MISALIGNED`, and the blob
/// errors `ALBERT_EDGE_ERR_BAD_MAGIC` ... `ALBERT_EDGE_ERR_BAD_TOKENIZER`.
///
/// # Safety
/// `model` must be valid for writing an `albert_edge_model`; `blob` must point to `blob_len` readable bytes
/// that outlive every use of `model`.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_open(
    model: *mut albert_edge_model,
    blob: *const u8,
    blob_len: usize,
) -> albert_edge_status {
    args::status((|| {
        if model.is_null() {
            return Err(ALBERT_EDGE_ERR_NULL_POINTER);
        }
        if !(model as usize).is_multiple_of(align_of::<albert_edge_model>()) {
            return Err(ALBERT_EDGE_ERR_MISALIGNED);
        }
        let slot = model.cast::<Opened>();
        // SAFETY: writable and aligned (the caller's contract, checked); closes the model until success.
        unsafe { ptr::addr_of_mut!((*slot).tag).write(0) };
        if blob.is_null() {
            return Err(ALBERT_EDGE_ERR_NULL_POINTER);
        }
        if !(blob as usize).is_multiple_of(4) {
            return Err(ALBERT_EDGE_ERR_MISALIGNED);
        }
        // SAFETY: non-NULL; the caller promises `blob_len` readable bytes for as long as the model is used,
        // which is what `'static` stands for here.
        let bytes: &'static [u8] = unsafe { input(blob, blob_len)? };
        disjoint(&[span(model, 1), span(blob, blob_len)])?;
        let parsed = Model::from_bytes(bytes)?;
        // SAFETY: as above; the model is written before the tag that marks it open.
        unsafe {
            ptr::addr_of_mut!((*slot).model).write(parsed);
            ptr::addr_of_mut!((*slot).tag).write(OPEN_TAG);
        }
        Ok(())
    })())
}

/// Writes the model's hyper-parameters to `*config`.
///
/// Errors: `ALBERT_EDGE_ERR_NULL_POINTER`, `ALBERT_EDGE_ERR_MISALIGNED`, `ALBERT_EDGE_ERR_NOT_OPEN`.
///
/// # Safety
/// `model` must point to an `albert_edge_model`; `config` must be valid for writing an `albert_edge_config`.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_get_config(
    model: *const albert_edge_model,
    config: *mut albert_edge_config,
) -> albert_edge_status {
    args::status((|| {
        // SAFETY: the caller's contract.
        let m = unsafe { opened(model)? };
        let c = m.config();
        let n = |v: usize| v as u32; // validated: every count is at most 2^20
        let out = albert_edge_config {
            vocab_size: n(c.vocab_size),
            embedding_size: n(c.embedding_size),
            hidden_size: n(c.hidden_size),
            num_attention_heads: n(c.num_attention_heads),
            intermediate_size: n(c.intermediate_size),
            num_hidden_layers: n(c.num_hidden_layers),
            max_position_embeddings: n(c.max_position_embeddings),
            type_vocab_size: n(c.type_vocab_size),
            num_labels: n(c.num_labels),
            hidden_act: c.hidden_act.code(),
            layer_norm_eps: c.layer_norm_eps,
            format_version: m.format_version(),
            int8_weights: is_int8(m) as u32,
            has_tokenizer: m.tokenizer().is_some() as u32,
        };
        // SAFETY: the caller's contract.
        unsafe { put(config, out) }
    })())
}

/// The name of label `index` (as the converter stored it: `"negative"`, `"LABEL_1"`): `*name` points into the
/// blob, `*name_len` bytes of UTF-8, **not** NUL-terminated (`printf("%.*s", (int)len, name)`).
///
/// Errors: `ALBERT_EDGE_ERR_NULL_POINTER`, `ALBERT_EDGE_ERR_MISALIGNED`, `ALBERT_EDGE_ERR_NOT_OPEN`,
/// `ALBERT_EDGE_ERR_BAD_ARGUMENT` (`index >= num_labels`).
///
/// # Safety
/// `model` must point to an `albert_edge_model`; `name` and `name_len` must be valid for writing.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_label(
    model: *const albert_edge_model,
    index: u32,
    name: *mut *const c_char,
    name_len: *mut usize,
) -> albert_edge_status {
    args::status((|| {
        // SAFETY: the caller's contract.
        let m = unsafe { opened(model)? };
        if name.is_null() || name_len.is_null() {
            return Err(ALBERT_EDGE_ERR_NULL_POINTER);
        }
        if index as usize >= m.config().num_labels {
            return Err(ALBERT_EDGE_ERR_BAD_ARGUMENT);
        }
        let label = m.label(index as usize);
        // SAFETY: non-NULL (checked); the caller's contract.
        unsafe {
            put(name, label.as_ptr().cast::<c_char>())?;
            put(name_len, label.len())
        }
    })())
}

// ---------------------------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------------------------

/// `max_len` as the text functions read it: 0 (or anything larger) means `max_position_embeddings`.
fn token_limit(m: &Model, max_len: usize) -> usize {
    let max = m.config().max_position_embeddings;
    if max_len == 0 {
        max
    } else {
        max_len.min(max)
    }
}

/// Bytes of scratch arena `albert_edge_classify` needs for inputs of up to `seq_len` tokens at `precision`
/// (`ALBERT_EDGE_PRECISION_INT8` or `_F32`). Any alignment works: the size includes the slack for aligning it.
/// 0 if `model` is not an open model, `precision` is unknown or `seq_len` is not in 1..=max_position_embeddings.
///
/// # Safety
/// `model` must be NULL or point to an `albert_edge_model`.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_scratch_size(
    model: *const albert_edge_model,
    seq_len: usize,
    precision: u32,
) -> usize {
    // SAFETY: the caller's contract.
    let (Ok(m), Ok(p)) = (unsafe { opened(model) }, self::precision(precision)) else {
        return 0;
    };
    if seq_len == 0 || seq_len > m.config().max_position_embeddings {
        return 0;
    }
    scratch_size(m.config(), seq_len, p)
}

/// Bytes of workspace `albert_edge_tokenize` needs for any text whose longest word (run of non-space bytes) has
/// at most `max_word_bytes` bytes (a text of `max_word_bytes` bytes is always covered). A text with a longer word
/// gives `ALBERT_EDGE_ERR_ARENA_TOO_SMALL`. 0 if `model` is not an open model or has no tokenizer.
///
/// # Safety
/// `model` must be NULL or point to an `albert_edge_model`.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_tokenizer_workspace_size(
    model: *const albert_edge_model,
    max_word_bytes: usize,
) -> usize {
    // SAFETY: the caller's contract.
    match unsafe { opened(model) }.map(Model::tokenizer) {
        Ok(Some(t)) => t.workspace_size(max_word_bytes),
        _ => 0,
    }
}

/// `albert_edge_text_scratch_size`'s layout: the token and type ids (4-byte aligned), then one region used first
/// as the tokenizer's workspace, then as the forward pass's arena.
fn text_scratch_len(m: &Model, max_tokens: usize, max_word_bytes: usize, p: Precision) -> usize {
    let ws = m
        .tokenizer()
        .map_or(0, |t| t.workspace_size(max_word_bytes));
    // Up to 3 bytes to align the ids, and the region rounded up to whole words.
    3 + 8 * max_tokens
        + ws.max(scratch_size(m.config(), max_tokens, p))
            .next_multiple_of(4)
}

/// Bytes of scratch `albert_edge_classify_text` needs for text truncated to `max_len` tokens (0: the model's
/// `max_position_embeddings`) whose longest word has at most `max_word_bytes` bytes, at `precision`. Any
/// alignment works. 0 if `model` is not an open model with a tokenizer, or `precision` is unknown.
///
/// # Safety
/// `model` must be NULL or point to an `albert_edge_model`.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_text_scratch_size(
    model: *const albert_edge_model,
    max_len: usize,
    max_word_bytes: usize,
    precision: u32,
) -> usize {
    // SAFETY: the caller's contract.
    let (Ok(m), Ok(p)) = (unsafe { opened(model) }, self::precision(precision)) else {
        return 0;
    };
    if m.tokenizer().is_none() {
        return 0;
    }
    text_scratch_len(m, token_limit(m, max_len), max_word_bytes, p)
}

// ---------------------------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------------------------

/// Text arguments: `(ptr, len)` bytes, and the optional pair (NULL: none).
///
/// # Safety
/// Non-NULL pointers must point to their lengths of readable bytes.
unsafe fn texts<'a>(
    text: *const c_char,
    text_len: usize,
    pair: *const c_char,
    pair_len: usize,
) -> Checked<(&'a [u8], Option<&'a [u8]>)> {
    // SAFETY: the caller's contract.
    let a = unsafe { input(text.cast::<u8>(), text_len)? };
    let b = if pair.is_null() {
        if pair_len != 0 {
            return Err(ALBERT_EDGE_ERR_NULL_POINTER);
        }
        None
    } else {
        // SAFETY: the caller's contract.
        Some(unsafe { input(pair.cast::<u8>(), pair_len)? })
    };
    Ok((a, b))
}

/// Tokenizes `text` (and `pair`, if not NULL) as `[CLS] text [SEP]` / `[CLS] text [SEP] pair [SEP]`, as the
/// Hugging Face ALBERT tokenizer does, truncated to `max_len` tokens (0: the model's `max_position_embeddings`;
/// longest side first, as `truncation=True`). Writes the token ids to `input_ids` and the token type ids (0 for
/// `[CLS] text [SEP]`, 1 for `pair [SEP]`) to `token_type_ids`, each `ids_capacity` long, and the count to
/// `*n_ids`.
///
/// Text is UTF-8, `text_len` bytes, no NUL needed (invalid bytes read as U+FFFD). `workspace` holds
/// `albert_edge_tokenizer_workspace_size` bytes for the longest word.
///
/// Errors: `ALBERT_EDGE_ERR_NULL_POINTER`, `ALBERT_EDGE_ERR_MISALIGNED`, `ALBERT_EDGE_ERR_NOT_OPEN`,
/// `ALBERT_EDGE_ERR_NO_TOKENIZER`, `ALBERT_EDGE_ERR_BAD_ARGUMENT` (overlapping buffers),
/// `ALBERT_EDGE_ERR_ARENA_TOO_SMALL` (workspace), `ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL` (then `*n_ids` is the
/// count needed; otherwise it is 0 on error).
///
/// # Safety
/// `model` must point to an `albert_edge_model`; every non-NULL pointer must point to its length of memory
/// (readable for inputs, writable for outputs); `n_ids` must be writable.
#[no_mangle]
pub unsafe extern "C" fn albert_edge_tokenize(
    model: *const albert_edge_model,
    text: *const c_char,
    text_len: usize,
    pair: *const c_char,
    pair_len: usize,
    max_len: usize,
    workspace: *mut u8,
    workspace_len: usize,
    input_ids: *mut u32,
    token_type_ids: *mut u32,
    ids_capacity: usize,
    n_ids: *mut usize,
) -> albert_edge_status {
    // SAFETY: the caller's contract.
    let m = match unsafe { opened(model) } {
        Ok(m) => m,
        Err(s) => return s,
    };
    // SAFETY: the caller's contract.
    if let Err(s) = unsafe { put(n_ids, 0) } {
        return s;
    }
    let run = || -> Checked<usize> {
        let tokenizer = m.tokenizer().ok_or(ALBERT_EDGE_ERR_NO_TOKENIZER)?;
        disjoint(&[
            model_spans(model, m)[0],
            model_spans(model, m)[1],
            span(text, text_len),
            span(pair, pair_len),
            span(workspace, workspace_len),
            span(input_ids, ids_capacity),
            span(token_type_ids, ids_capacity),
            span(n_ids, 1),
        ])?;
        // SAFETY: the caller's contract; the writable buffers overlap nothing (checked).
        let (a, b) = unsafe { texts(text, text_len, pair, pair_len)? };
        let ws = unsafe { output(workspace, workspace_len)? };
        let ids = unsafe { output(input_ids, ids_capacity)? };
        let types = unsafe { output(token_type_ids, ids_capacity)? };
        tokenizer
            .encode_bytes(a, b, token_limit(m, max_len), ws, ids, types)
            .map_err(|e| match e {
                albert_edge::Error::OutputTooSmall { needed, .. } => {
                    // SAFETY: checked writable above.
                    unsafe { n_ids.write(needed) };
                    ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL
                }
                e => e.into(),
            })
    };
    match run() {
        // SAFETY: checked writable above.
        Ok(n) => unsafe { put(n_ids, n) }.err().unwrap_or(ALBERT_EDGE_OK),
        Err(s) => s,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------------------

/// The checks both classify functions make before running.
fn check_run(m: &Model, p: Precision, logits_len: usize) -> Checked<()> {
    if p == Precision::Int8 && !is_int8(m) {
        return Err(ALBERT_EDGE_ERR_NOT_INT8);
    }
    if logits_len < m.config().num_labels {
        return Err(ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL);
    }
    Ok(())
}

/// Classifies one tokenized input of `n_ids` tokens: `input_ids` (`[CLS] ... [SEP]`, as `albert_edge_tokenize`
/// writes them), `token_type_ids` (NULL: all 0) and `attention_mask` (NULL: all 1), each `n_ids` long. Writes
/// `num_labels` logits to `logits` (`logits_len` floats). The arena holds
/// `albert_edge_scratch_size(model, n_ids, precision)` bytes or more (more is faster: the int8 engine then
/// processes several tokens at a time; the logits are the same bits); its contents on entry do not matter.
///
/// The logits are the same bits as the Rust API's and the `albert-edge` CLI's, on every target.
///
/// Errors: `ALBERT_EDGE_ERR_NULL_POINTER`, `ALBERT_EDGE_ERR_MISALIGNED`, `ALBERT_EDGE_ERR_NOT_OPEN`,
/// `ALBERT_EDGE_ERR_BAD_ARGUMENT` (unknown precision, overlapping buffers), `ALBERT_EDGE_ERR_NOT_INT8`,
/// `ALBERT_EDGE_ERR_OUTPUT_TOO_SMALL` (logits), `ALBERT_EDGE_ERR_ARENA_TOO_SMALL`,
/// `ALBERT_EDGE_ERR_SEQUENCE_TOO_LONG`, `ALBERT_EDGE_ERR_BAD_INPUT`.
///
/// # Safety
/// `model` must point to an `albert_edge_model`; every non-NULL pointer must point to its length of memory
/// (readable for inputs, writable for the arena and logits).
#[no_mangle]
pub unsafe extern "C" fn albert_edge_classify(
    model: *const albert_edge_model,
    precision: u32,
    input_ids: *const u32,
    token_type_ids: *const u32,
    attention_mask: *const u32,
    n_ids: usize,
    arena: *mut u8,
    arena_len: usize,
    logits: *mut f32,
    logits_len: usize,
) -> albert_edge_status {
    args::status((|| {
        // SAFETY: the caller's contract.
        let m = unsafe { opened(model)? };
        let p = self::precision(precision)?;
        let [handle, blob] = model_spans(model, m);
        disjoint(&[
            handle,
            blob,
            span(input_ids, n_ids),
            span(token_type_ids, n_ids),
            span(attention_mask, n_ids),
            span(arena, arena_len),
            span(logits, logits_len),
        ])?;
        // SAFETY: the caller's contract; the writable buffers overlap nothing (checked). A NULL type-id or mask
        // pointer reads as an empty slice: all 0, all 1.
        let (ids, types, mask, arena, out) = unsafe {
            (
                input(input_ids, n_ids)?,
                input(
                    token_type_ids,
                    if token_type_ids.is_null() { 0 } else { n_ids },
                )?,
                input(
                    attention_mask,
                    if attention_mask.is_null() { 0 } else { n_ids },
                )?,
                output(arena, arena_len)?,
                output(logits, logits_len)?,
            )
        };
        check_run(m, p, logits_len)?;
        let inputs = Inputs {
            input_ids: ids,
            token_type_ids: types,
            attention_mask: mask,
        };
        classify(m, p, &inputs, arena, out).map_err(Into::into)
    })())
}

/// Tokenizes `text` (and `pair`, if not NULL) as `albert_edge_tokenize` does, truncated to `max_len` tokens (0:
/// the model's `max_position_embeddings`, which is what the `albert-edge` CLI uses), and classifies it, writing
/// `num_labels` logits to `logits`. One `scratch` buffer of `albert_edge_text_scratch_size(model, max_len,
/// longest word, precision)` bytes holds everything: the token ids, the tokenizer's workspace, then the arena.
///
/// Errors: those of `albert_edge_tokenize` and `albert_edge_classify`.
///
/// # Safety
/// `model` must point to an `albert_edge_model`; every non-NULL pointer must point to its length of memory
/// (readable for the texts, writable for the scratch and logits).
#[no_mangle]
pub unsafe extern "C" fn albert_edge_classify_text(
    model: *const albert_edge_model,
    precision: u32,
    text: *const c_char,
    text_len: usize,
    pair: *const c_char,
    pair_len: usize,
    max_len: usize,
    scratch: *mut u8,
    scratch_len: usize,
    logits: *mut f32,
    logits_len: usize,
) -> albert_edge_status {
    args::status((|| {
        // SAFETY: the caller's contract.
        let m = unsafe { opened(model)? };
        let p = self::precision(precision)?;
        let tokenizer = m.tokenizer().ok_or(ALBERT_EDGE_ERR_NO_TOKENIZER)?;
        let [handle, blob] = model_spans(model, m);
        disjoint(&[
            handle,
            blob,
            span(text, text_len),
            span(pair, pair_len),
            span(scratch, scratch_len),
            span(logits, logits_len),
        ])?;
        // SAFETY: the caller's contract; the writable buffers overlap nothing (checked).
        let (a, b) = unsafe { texts(text, text_len, pair, pair_len)? };
        let scratch = unsafe { output(scratch, scratch_len)? };
        let out = unsafe { output(logits, logits_len)? };
        check_run(m, p, logits_len)?;

        let max_tokens = token_limit(m, max_len);
        // SAFETY: every byte pattern is a valid `u32`; `align_to_mut` only splits the slice.
        let (_, words, _) = unsafe { scratch.align_to_mut::<u32>() };
        if words.len() < 2 * max_tokens {
            return Err(ALBERT_EDGE_ERR_ARENA_TOO_SMALL);
        }
        let (ids, rest) = words.split_at_mut(2 * max_tokens);
        let (ids, types) = ids.split_at_mut(max_tokens); // (max_tokens) each
                                                         // The rest, as bytes: the tokenizer's workspace, then the arena.
                                                         // SAFETY: `u32` to `u8` reinterprets initialised memory; the slice covers exactly `rest`.
        let rest = unsafe {
            core::slice::from_raw_parts_mut(rest.as_mut_ptr().cast::<u8>(), rest.len() * 4)
        };
        let n = tokenizer.encode_bytes(a, b, max_tokens, rest, ids, types)?;
        let inputs = Inputs {
            input_ids: &ids[..n],
            token_type_ids: &types[..n],
            attention_mask: &[],
        };
        classify(m, p, &inputs, rest, out).map_err(Into::into)
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_fits_on_32_and_64_bit_targets() {
        // The header's size is fixed: keep headroom on the host, where pointers are largest.
        assert!(size_of::<Opened>() + 256 <= size_of::<albert_edge_model>());
        assert_eq!(albert_edge_model_size(), 8 * ALBERT_EDGE_MODEL_WORDS);
    }
}
