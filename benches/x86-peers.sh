#!/usr/bin/env bash
# x86-64: albert-edge int8 against ONNX Runtime dynamic int8 and fp32, interleaved in one driver (see BENCHMARKS.md,
# "Contract 2 on x86-64").
#
#   1. timings (benches/x86-peers.py): batch 1, seq 32 and 128, 1, 2 and 4 threads; every round runs albert-edge
#      with the kernels this CPU selects, albert-edge with ALBERT_EDGE_X86=avx2 (the AVX2 kernels, standing in for
#      an AVX2-only CPU), ONNX Runtime int8 and ONNX Runtime fp32 once each, in rotating order; medians and
#      per-round ratios; on a CPU with AMX, twice: ONNX Runtime as it runs there (AMX int8 tiles), then kept on its
#      AVX-512 VNNI kernels (benches/x86-peers.py --no-amx);
#   2. with X86_QEMU=1 (X86_QEMU=only: without the timings), exact instruction counts under
#      `qemu-x86_64 -cpu EPYC-Milan` (AVX2, no AVX-512: a proxy for an AVX2-only CPU, where ONNX Runtime cannot
#      otherwise be kept off its AVX-512 kernels), one thread, albert-edge through pi-classify: each
#      program runs once with 1 classification and once with N (X86_QEMU_RUNS, default 5), (count_N - count_1) /
#      (N - 1) is one classification (the method of benches/pi-peers.sh, plugin benches/pi/insncount.c).
#
# Inputs: target/peers/albert-base/ (the checkpoint and its ONNX exports, made by benches/peers.sh with
# PEERS_VENV=DIR); PEERS_VENV=DIR, a Python with onnxruntime and numpy (tools/fixtures/requirements.txt).
# Knobs: X86_SEQS (32,128), X86_THREADS (1,2,4), X86_ROUNDS (15), X86_QEMU (1: add the counts), X86_QEMU_SEQS
# (32,128), X86_DIR (target/x86-peers: the blob and the results).
set -euo pipefail
cd "$(dirname "$0")/.."

ckpt=target/peers/albert-base
dir=${X86_DIR:-target/x86-peers}
seqs=${X86_SEQS:-32,128}
threads=${X86_THREADS:-1,2,4}
rounds=${X86_ROUNDS:-15}
step() { printf '\n==> %s\n' "$*" >&2; }
fail() { echo "error: $*" >&2; exit 1; }

[ -n "${PEERS_VENV:-}" ] || fail "give PEERS_VENV=DIR, a Python with onnxruntime and numpy"
py="$PEERS_VENV/bin/python"
[ -f "$ckpt/model.int8.onnx" ] || fail "$ckpt/model.int8.onnx is missing; run PEERS_VENV=DIR benches/peers.sh first"
mkdir -p "$dir"

step "cargo build --release (albert-edge CLI, benches/examples/serve_ids.rs, pi-classify)"
cargo build --release -q -p albert-edge-cli -p pi-classify
cargo build --release -q -p albert-edge-benches --example serve_ids
if [ ! -f "$dir/model.blob" ] || [ "$ckpt/model.safetensors" -nt "$dir/model.blob" ] ||
    [ target/release/albert-edge -nt "$dir/model.blob" ]; then
    step "albert-edge convert $ckpt (default options)"
    target/release/albert-edge convert "$ckpt" -o "$dir/model.blob" >/dev/null
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src benches 2>/dev/null || commit="$commit (+ uncommitted changes)"
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
step "machine: $cpu, $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); commit $commit;" \
    "onnxruntime $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)')"

if [ "${X86_QEMU:-}" != only ]; then
    # On a CPU with AMX, ONNX Runtime's int8 products run on AMX tiles; a second run keeps it off them (--no-amx),
    # on the AVX-512 VNNI kernels it runs on a CPU without AMX.
    modes=default
    grep -qw amx_int8 /proc/cpuinfo && modes="default no-amx"
    for mode in $modes; do
        flag=() json=$dir/timings.json
        [ "$mode" = no-amx ] && flag=(--no-amx) json=$dir/timings-no-amx.json
        step "interleaved timings ($mode): seq $seqs, threads $threads, $rounds rounds;" \
            "load average $(cut -d' ' -f1-3 /proc/loadavg)"
        "$py" benches/x86-peers.py "$ckpt" --server target/release/examples/serve_ids "$dir/model.blob" --avx2 \
            "${flag[@]}" --seqs "$seqs" --threads "$threads" --rounds "$rounds" --json "$json"
    done
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
fi

[ -n "${X86_QEMU:-}" ] || exit 0
command -v qemu-x86_64 >/dev/null || fail "qemu-x86_64 not found (apt-get install qemu-user)"
gcc -shared -fPIC -O2 -o "$dir/libinsncount.so" benches/pi/insncount.c
count() { # program and arguments -> instructions executed under an AVX2-only CPU model
    qemu-x86_64 -cpu EPYC-Milan -plugin "$dir/libinsncount.so" -d plugin "$@" 2>&1 >/dev/null | sed -n 's/^insns: //p'
}
n=${X86_QEMU_RUNS:-5}
per_run() { echo $(( ($2 - $1) / (n - 1) )); }
results="$dir/qemu-epyc-milan.json"
echo "[" >"$results"
first=yes
printf '\n%5s %18s %18s %8s\n' seq "albert-edge int8" "ONNX Runtime int8" ratio
qseqs=${X86_QEMU_SEQS:-32,128}
for seq in ${qseqs//,/ }; do
    ids=$("$py" -c "import sys; s=int(sys.argv[1]); ids=[5+(t*7919)%(30000-5) for t in range(s)]
ids[0], ids[-1] = 2, 3; print(' '.join(map(str, ids)))" "$seq")
    step "qemu EPYC-Milan, seq $seq: albert-edge (1 and $n runs), ONNX Runtime (1 and $n runs)"
    a=$(per_run "$(count target/release/pi-classify "$dir/model.blob" -q --ids "$ids" --repeat 1)" \
        "$(count target/release/pi-classify "$dir/model.blob" -q --ids "$ids" --repeat "$n")")
    o=$(per_run "$(OMP_NUM_THREADS=1 count "$py" benches/pi/ortrun.py "$ckpt/model.int8.onnx" 1 "$ids")" \
        "$(OMP_NUM_THREADS=1 count "$py" benches/pi/ortrun.py "$ckpt/model.int8.onnx" "$n" "$ids")")
    "$py" -c "import sys; s, a, o = sys.argv[1:]; a, o = int(a), int(o)
print(f'{s:>5} {a / 1e6:16.1f} M {o / 1e6:16.1f} M {a / o:7.2f}x')" "$seq" "$a" "$o"
    [ $first = yes ] || echo "," >>"$results"
    first=no
    printf '  {"cpu": "EPYC-Milan (qemu)", "seq": %s, "albert_edge_int8": %s, "onnxruntime_int8": %s}' \
        "$seq" "$a" "$o" >>"$results"
done
printf '\n]\n' >>"$results"
echo "instructions per classification; written to $results"
