//! Embeds the shipped Pi-class model when it is present: sets `cfg(albert_edge_builtin_model)` if
//! `models/sst2-albert-pi.blob` exists at build time, so `albert-edge classify "text"` works without a blob path.
//! Without the file the build still succeeds and that command says the model is missing.

use std::path::Path;

const MODEL: &str = "../../models/sst2-albert-pi.blob";
const MODELS_DIR: &str = "../../models";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(albert_edge_builtin_model)");
    println!("cargo::rerun-if-changed=build.rs");
    if Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL).is_file() {
        println!("cargo::rerun-if-changed={MODEL}");
        println!("cargo::rustc-cfg=albert_edge_builtin_model");
    } else {
        // A missing file would rerun this script (and rebuild the CLI) on every build; the directory's
        // modification time changes when the model appears.
        println!("cargo::rerun-if-changed={MODELS_DIR}");
    }
}
