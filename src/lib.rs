//! # albert-edge
//!
//! int8 ALBERT sentence classification for Raspberry Pi boards and Cortex-M microcontrollers.
//!
//! `no_std`, no allocator: a model blob is read in place from a `&[u8]` (flash), the caller provides one scratch
//! arena whose size is known up front, and the tokenizer runs on the device.
#![no_std]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(target_endian = "big")]
compile_error!("albert-edge reads little-endian model blobs in place and supports little-endian targets only");

pub mod config;
pub mod error;
pub mod format;
pub mod kernels;
pub mod math;
pub mod model;
pub mod quant;
pub mod tokenizer;

pub use config::{Activation, AlbertConfig};
pub use error::Error;
pub use format::Model;
