#!/usr/bin/env bash
# Runs the core crate's unit tests under Miri (undefined behaviour: out-of-bounds or misaligned reads, invalid
# values, use of uninitialised memory, aliasing violations in the unsafe code).
#   scripts/miri.sh           the selection below (about 25 minutes on a busy 2-core x86-64 machine)
#   scripts/miri.sh --all     every unit test (hours: Miri interprets ~1000x slower than native code)
# Needs rustup; installs the nightly toolchain and its miri and rust-src components if missing.
#
# Tests that are skipped by default, and why:
#  - kernels: the random-shape, extreme-value and random block-scaled tests loop over hundreds of shapes up to
#    ALBERT-base widths. The edge-shape, unaligned, degenerate-argument and small block-scaled tests run instead,
#    twice: with the reference kernels, and with `-C target-feature=+avx2` so that Miri checks the unsafe AVX2
#    kernels' loads (`gemv_i8_i32` and `gemv_i8_blocks`). The AVX-512 VNNI kernel is not run under Miri (Miri does
#    not implement `vpdpbusd`); the NEON, DSP and Helium kernels need their targets (qemu, the firmware self-check).
#  - attention_products_match_the_reference: 300 heads up to 130 x 100; under Miri (no AVX-512 VNNI) it runs the
#    portable layouts, which are the GEMV kernels above plus safe indexing; the multi-token GEMM's small-shape test
#    (gemm_i8_blocks_small_shapes) does run.
#  - py_space_matches_python_isspace: a table check over all 1.1 M code points, no unsafe code involved.
#  - gemv_u8_i8_offset_equals_the_u8_reference: 300 shapes; the function is `gemv_i8_i32` (checked above) plus
#    wrapping integer arithmetic.
#  - the tokenizer's every-truncation, every-corruption and workspace-size sweeps: the same parser and encoder
#    paths as the single cases that do run, repeated thousands of times (each takes well over 10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v rustup >/dev/null || { echo "error: rustup not found; Miri needs the nightly toolchain (https://rustup.rs)" >&2; exit 1; }
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "==> rustup toolchain install nightly --profile minimal"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    echo "==> rustup component add miri rust-src --toolchain nightly"
    rustup component add miri rust-src --toolchain nightly
fi

if [ "${1:-}" = "--all" ]; then
    exec cargo +nightly miri test -p albert-edge --lib
fi

skip=(
    --skip matches_reference_random --skip matches_reference_extreme --skip matches_reference_bit_for_bit
    --skip py_space_matches_python_isspace --skip gemv_u8_i8_offset_equals_the_u8_reference
    --skip section_validation_rejects_or_survives_every_corruption --skip section_validation_rejects_truncated_sections
    --skip workspace_of_any_size_gives_the_same_ids_or_arena_too_small
    --skip attention_products_match_the_reference --skip x86_avx2_gemm_matches_reference_edge_shapes
)

echo "==> cargo +nightly miri test -p albert-edge --lib (reference kernels)"
# Without AVX2 the x86_avx2 tests would only repeat the reference ones; they run below with AVX2 on.
cargo +nightly miri test -p albert-edge --lib -- "${skip[@]}" --skip kernels::tests::x86_avx2

echo "==> parallel::Threads (std): jobs claimed once, no data race"
cargo +nightly miri test -p albert-edge --features std --lib -- parallel::

echo "==> the x86-64 AVX2 kernels under Miri (-C target-feature=+avx2)"
if [ "$(uname -m)" = x86_64 ]; then
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+avx2" \
        cargo +nightly miri test -p albert-edge --lib --target-dir target/miri-avx2 -- kernels::tests::x86_avx2 "${skip[@]}"
else
    echo "(not an x86-64 host: skipped)"
fi
