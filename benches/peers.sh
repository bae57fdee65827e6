#!/usr/bin/env bash
# Peer comparison on the ALBERT-base shape, one command (see BENCHMARKS.md):
#   1. a random ALBERT-base-shaped Hugging Face checkpoint + its fp32 ONNX export + ONNX Runtime dynamic int8
#      (benches/peers.py build, reusing tools/fixtures/make_fixtures.py), into target/peers/albert-base/;
#   2. `albert-edge convert` on it (default: int8, GPTQ with the built-in calibration), timed;
#   3. one thread, batch 1, seq 32 and 128, medians: ONNX Runtime fp32 and int8 (benches/peers.py time), then
#      albert-edge int8 and tract fp32 (benches/examples/peers.rs) in one process; prints the table.
#
# Python (torch, transformers, onnx, onnxruntime; pinned in tools/fixtures/requirements.txt) is needed for steps 1
# and ONNX Runtime:
#   PEERS_VENV=DIR       use the virtual environment DIR (DIR/bin/python)
#   PEERS_INSTALL=1      create .venv (ignored by git) and install the pinned requirements from PyPI (CPU torch)
# Without either, the ONNX Runtime part is skipped; without a checkpoint built earlier, so are the conversion and
# tract, and albert-edge runs on a random ALBERT-base-shaped blob.
# Other knobs: PEERS_DIR (default target/peers/albert-base), PEERS_SEQS (32,128), PEERS_REPS (timed runs per
# figure, default 11), PEERS_REBUILD=1 (rebuild the checkpoint), PEERS_THREADS (thread counts for albert-edge,
# default 1; say 1,2,4 to add `classify_parallel` rows; the peers stay on one thread).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PEERS_DIR:-target/peers/albert-base}
seqs=${PEERS_SEQS:-32,128}
reps=${PEERS_REPS:-11}
threads=${PEERS_THREADS:-1}
build_version=1 # BUILD_VERSION in benches/peers.py
step() { printf '\n==> %s\n' "$*"; }

# ---- Python
py=""
if [ -n "${PEERS_VENV:-}" ]; then
    py="$PEERS_VENV/bin/python"
    [ -x "$py" ] || { echo "error: PEERS_VENV=$PEERS_VENV has no bin/python" >&2; exit 1; }
elif [ "${PEERS_INSTALL:-}" = 1 ]; then
    if [ ! -x .venv/bin/python ]; then
        step "creating .venv with the pinned requirements (tools/fixtures/requirements.txt, CPU torch)"
        python3 -m venv .venv
        .venv/bin/pip install -q --upgrade pip
        .venv/bin/pip install -q torch==2.9.1 --index-url https://download.pytorch.org/whl/cpu
        .venv/bin/pip install -q -r tools/fixtures/requirements.txt
    fi
    py=.venv/bin/python
fi
if [ -n "$py" ]; then
    "$py" -c "import torch, transformers, onnx, onnxruntime" 2>/dev/null ||
        { echo "error: $py lacks torch/transformers/onnx/onnxruntime (pip install -r tools/fixtures/requirements.txt)" >&2; exit 1; }
fi

# ---- build (not timed)
step "cargo build --release (albert-edge CLI, benches/examples/peers.rs)"
cargo build --release -q -p albert-edge-cli
cargo build --release -q -p albert-edge-benches --example peers

fresh=no
if [ -f "$dir/build.json" ] && grep -q "\"build_version\": $build_version" "$dir/build.json" && [ -z "${PEERS_REBUILD:-}" ]; then
    fresh=yes
fi
if [ "$fresh" = no ] && [ -n "$py" ]; then
    step "building the ALBERT-base-shaped checkpoint and ONNX exports in $dir"
    "$py" benches/peers.py build "$dir"
    fresh=yes
fi

# ---- header: what and where
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src tools benches 2>/dev/null || commit="$commit (+ uncommitted changes)"
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
step "machine: ${cpu:-unknown CPU}, $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?); commit $commit"

ort_json=""
args=()
if [ "$fresh" = yes ]; then
    # ---- conversion
    step "albert-edge convert $dir -o $dir/model.blob (int8, GPTQ, default calibration)"
    TIMEFORMAT='%R %U %S'
    t=$( { time target/release/albert-edge convert "$dir" -o "$dir/model.blob" >/dev/null; } 2>&1 | tail -1)
    read -r wall user sys <<<"$t"
    cpu_s=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
    printf 'conversion: %.1f s wall, %s CPU-s (user + sys), %s bytes\n' "$wall" "$cpu_s" "$(wc -c <"$dir/model.blob")"
    args+=(--blob "$dir/model.blob" --onnx "$dir/model.onnx")

    # ---- ONNX Runtime
    if [ -n "$py" ]; then
        step "ONNX Runtime fp32 and dynamic int8 (1 thread, $reps runs each)"
        ort_json="$dir/ort.json"
        "$py" benches/peers.py time "$dir" --seqs "$seqs" --reps "$reps" >"$ort_json"
        args+=(--ort "$ort_json")
    else
        echo "ONNX Runtime skipped: give PEERS_VENV=DIR (torch, transformers, onnx, onnxruntime) or PEERS_INSTALL=1"
    fi
else
    echo "no checkpoint in $dir and no Python (PEERS_VENV=DIR or PEERS_INSTALL=1): skipping the conversion, tract and"
    echo "ONNX Runtime; albert-edge int8 runs on a random ALBERT-base-shaped blob"
fi

# ---- albert-edge int8 and tract fp32, one process
step "albert-edge int8 and tract fp32 (1 thread, $reps runs each)"
target/release/examples/peers "${args[@]}" --seqs "$seqs" --threads "$threads" --reps "$reps" --json "${dir%/}-results.json"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
