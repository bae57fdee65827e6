//! # albert-edge
//!
//! int8 ALBERT sentence classification for Raspberry Pi boards and Cortex-M microcontrollers.
//!
//! `no_std`, no allocator: a model blob is read in place from a `&[u8]` (flash), the caller provides one scratch
//! arena whose size is known up front, and the tokenizer runs on the device.
//!
//! ```
//! use albert_edge::model::{classify, scratch_size, Inputs, Precision};
//! use albert_edge::{Activation, AlbertConfig, Error, Model};
//!
//! // The arena a model needs is known before any blob is loaded: size a `static` with it in firmware.
//! const BASE: AlbertConfig = AlbertConfig {
//!     vocab_size: 30000, embedding_size: 128, hidden_size: 768, num_attention_heads: 12,
//!     intermediate_size: 3072, num_hidden_layers: 12, max_position_embeddings: 512, type_vocab_size: 2,
//!     layer_norm_eps: 1e-12, hidden_act: Activation::GeluNew, num_labels: 2,
//! };
//! const ARENA: usize = scratch_size(&BASE, 128, Precision::Int8);
//! assert!(ARENA < 1024 * 1024); // ALBERT-base at 128 tokens: 935,967 bytes
//!
//! // Blobs are validated once; damage is a typed error, never a panic.
//! assert_eq!(Model::from_bytes(&[0u8; 200]).err(), Some(Error::BadMagic));
//!
//! # fn run(blob: &[u8]) -> Result<(), Error> {
//! let model = Model::from_bytes(blob)?;
//! let ids = [2, 10975, 15, 51, 1952, 25, 10901, 3]; // [CLS] hello, my dog is cute [SEP]
//! let mut arena = [0u8; 16 * 1024];
//! let mut logits = [0f32; 2];
//! classify(&model, Precision::Int8, &Inputs::ids(&ids), &mut arena, &mut logits)?;
//! # Ok(()) }
//! ```
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(target_endian = "big")]
compile_error!(
    "albert-edge reads little-endian model blobs in place and supports little-endian targets only"
);

pub mod config;
pub mod error;
#[cfg(feature = "defmt")]
mod fmt;
pub mod format;
pub mod kernels;
pub mod math;
pub mod model;
pub mod parallel;
pub mod quant;
pub mod tokenizer;

pub use config::{Activation, AlbertConfig};
pub use error::Error;
pub use format::Model;
