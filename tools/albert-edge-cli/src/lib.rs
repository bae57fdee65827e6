//! Host-side pieces of albert-edge: the model-blob writer, the Hugging Face checkpoint reader and the tokenizer
//! section builder. Modules mirror the runtime crate file for file where they compute offline.

pub mod blob;
pub mod builtin;
pub mod calibrate;
pub mod checkpoint;
pub mod classify;
pub mod common;
pub mod console;
pub mod convert;
pub mod eval;
pub mod f32_linear;
pub mod gptq;
pub mod inspect;
pub mod output;
pub mod spiece;
pub mod synthetic;
pub mod textfile;
pub mod tokenizer_section;
pub mod torch_pickle;
pub mod torch_zip;
pub mod weights;
