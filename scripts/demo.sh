#!/usr/bin/env bash
# The main job: convert a Hugging Face ALBERT checkpoint into a model blob, inspect it, and classify with it.
#   scripts/demo.sh [HF_DIR] [TEXT]
# Defaults to the committed test checkpoint (random weights: the label is not meaningful, the pipeline is).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
dir=${1:-tests/fixtures/tiny-gelu-new-2}
text=${2:-"a gorgeous, witty, seductive movie."}
mkdir -p out
cargo build -q --release -p albert-edge-cli
target/release/albert-edge convert "$dir" -o out/model.blob
target/release/albert-edge inspect out/model.blob
if target/release/albert-edge classify out/model.blob "$text" 2>/dev/null; then :; else
    # Blobs without a tokenizer section take token ids.
    target/release/albert-edge classify out/model.blob --ids "2 21 13 9007 15 4789 15 17140 1308 9 3"
fi
