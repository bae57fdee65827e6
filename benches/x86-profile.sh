#!/usr/bin/env bash
# Where one albert-edge int8 classification spends its time on x86-64: `perf record` (cpu-clock samples, one
# thread) of pi-classify classifying the same seq-128 input 40 times, attributed to phases (GEMM, attention scores,
# softmax, P.V, GELU, LayerNorm, quantisation, embeddings, other) by benches/perf-phases.py.
#
#   benches/x86-profile.sh                          this checkout's pi-classify on target/x86-peers/model.blob
#   benches/x86-profile.sh PI_CLASSIFY MODEL.blob   another build (an older commit's, with its own blob)
#   ALBERT_EDGE_X86=avx2 benches/x86-profile.sh     the AVX2 kernels
#
# Knobs: PROFILE_SEQ (128), PROFILE_REPEAT (40). Needs perf (linux-perf) and addr2line (binutils); the release
# profile's line tables attribute inlined functions. The blob: benches/x86-peers.sh makes it.
set -euo pipefail
cd "$(dirname "$0")/.."

seq=${PROFILE_SEQ:-128}
repeat=${PROFILE_REPEAT:-40}
if [ $# -ge 2 ]; then
    bin=$1 blob=$2
else
    cargo build --release -q -p pi-classify
    bin=target/release/pi-classify blob=target/x86-peers/model.blob
fi
[ -f "$blob" ] || { echo "error: $blob missing (benches/x86-peers.sh converts the checkpoint)" >&2; exit 1; }
mkdir -p target/x86-profile
data=target/x86-profile/perf-$$.data
ids=$(python3 -c "import sys; s=int(sys.argv[1]); ids=[5+(t*7919)%(30000-5) for t in range(s)]
ids[0], ids[-1] = 2, 3; print(' '.join(map(str, ids)))" "$seq")
perf record -q -e cpu-clock -F 2000 -o "$data" -- "$bin" "$blob" -q --ids "$ids" --repeat "$repeat" >/dev/null
echo "seq $seq, $repeat classifications in one process (the start-up counts in 'other'; ms: CPU time / $repeat)"
python3 benches/perf-phases.py "$bin" "$data" --runs "$repeat" --freq 2000 ${PROFILE_DETAIL:+--detail}
rm -f "$data"
