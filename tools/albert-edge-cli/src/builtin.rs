//! The shipped Pi-class SST-2 model (`models/sst2-albert-pi.blob`), embedded in the binary when the file existed at
//! build time (`build.rs` sets `cfg(albert_edge_builtin_model)`).

/// Where the built-in model comes from, relative to the repository root.
pub const BUILTIN_MODEL_PATH: &str = "models/sst2-albert-pi.blob";

/// `include_bytes!` only guarantees byte alignment; the blob parser wants 16. A `static` needs this wrapper: the
/// heap copy `albert_edge::format::AlignedBlob` is for blobs read at run time.
#[cfg_attr(not(albert_edge_builtin_model), allow(dead_code))]
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

#[cfg(albert_edge_builtin_model)]
static BUILTIN: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../models/sst2-albert-pi.blob"
)));

/// The built-in model's blob bytes (16-byte aligned), or `None` if this build has none.
pub fn builtin_model() -> Option<&'static [u8]> {
    #[cfg(albert_edge_builtin_model)]
    {
        Some(&BUILTIN.0)
    }
    #[cfg(not(albert_edge_builtin_model))]
    {
        None
    }
}

/// The built-in model or the error to show when this build has none.
pub fn require_builtin_model() -> anyhow::Result<&'static [u8]> {
    builtin_model().ok_or_else(|| {
        anyhow::anyhow!(
            "this build has no built-in model: {BUILTIN_MODEL_PATH} was missing at build time; pass a blob path \
             (albert-edge classify MODEL.blob \"text\")"
        )
    })
}
