#!/usr/bin/env bash
# Raspberry Pi: albert-edge int8 against ONNX Runtime int8, in exact instruction counts under qemu-user.
#
# qemu cannot time a Pi, but it can count the instructions a program executes, exactly and repeatably (a TCG
# plugin, benches/pi/insncount.c). Both engines run the same ALBERT-base-shaped checkpoint (benches/peers.sh's:
# random weights, H 768, 12 heads, I 3072, E 128, 12 layers) on the same token ids, one thread, batch 1:
#   - albert-edge: the blob `albert-edge convert` makes of it, run by `pi-classify --ids` built for the Pi 4
#     (Cortex-A72: NEON smull) and for the Pi 5 (Cortex-A76: NEON sdot);
#   - ONNX Runtime: its own aarch64 wheel (MLAS kernels, which pick smull or sdot from the CPU they find) in an
#     arm64 Python 3.11 tree, on the dynamic-int8 model benches/peers.py makes (shared layer quantized).
# Each program runs once with 1 classification and once with 5 (after a warm-up run for ONNX Runtime);
# (count_5 - count_1) / 4 is one classification, with start-up, imports and session creation cancelled out.
#
#   benches/pi-peers.sh                     seq 32 and 128, both boards
#   PI_SEQS=32 PI_BOARDS=a76 benches/pi-peers.sh
#
# Inputs and knobs:
#   target/peers/albert-base/   the checkpoint and its ONNX exports; made by `PEERS_VENV=DIR benches/peers.sh` or,
#                               when missing, here with PEERS_VENV=DIR (a Python with torch, transformers, onnx and
#                               onnxruntime: tools/fixtures/requirements.txt)
#   PI_DIR (target/pi-peers)    the arm64 Python tree, the plugin, the blob and results.json
#   ORT_VERSION (1.32.0), NUMPY_VERSION (2.4.6)   the aarch64 wheels measured
# Needs: qemu-user, gcc, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (scripts/test-all.sh installs them),
# python3 with pip, and apt-get as root (or sudo) to download the arm64 Python .deb files (they are unpacked into
# PI_DIR, never installed).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${PI_DIR:-target/pi-peers}
ckpt=target/peers/albert-base
seqs=${PI_SEQS:-32,128}
boards=${PI_BOARDS:-a72,a76}
ort_version=${ORT_VERSION:-1.32.0}
numpy_version=${NUMPY_VERSION:-2.4.6}
step() { printf '\n==> %s\n' "$*" >&2; }
fail() { echo "error: $*" >&2; exit 1; }

for tool in qemu-aarch64 gcc aarch64-linux-gnu-gcc python3; do
    command -v "$tool" >/dev/null || fail "$tool not found; install qemu-user, gcc and gcc-aarch64-linux-gnu (apt-get)"
done
mkdir -p "$dir"

# ---- the checkpoint, its int8 ONNX model, our blob
if [ ! -f "$ckpt/model.int8.onnx" ]; then
    [ -n "${PEERS_VENV:-}" ] ||
        fail "$ckpt/model.int8.onnx is missing; run with PEERS_VENV=DIR (a Python with tools/fixtures/requirements.txt) to build it"
    step "building the ALBERT-base-shaped checkpoint and its ONNX exports in $ckpt"
    "$PEERS_VENV/bin/python" benches/peers.py build "$ckpt"
fi
step "albert-edge convert (release)"
cargo build --release -q -p albert-edge-cli
if [ ! -f "$dir/model.blob" ] || [ "$ckpt/model.safetensors" -nt "$dir/model.blob" ]; then
    target/release/albert-edge convert "$ckpt" -o "$dir/model.blob" >/dev/null
fi

# ---- the instruction counter
gcc -shared -fPIC -O2 -o "$dir/libinsncount.so" benches/pi/insncount.c

# ---- ONNX Runtime's aarch64 build in an arm64 Python tree (once)
cpuinfo() { # board -> /proc/cpuinfo of one core (ONNX Runtime reads it to pick its kernels)
    local part features="fp asimd evtstrm crc32 cpuid"
    case $1 in
    a72) part=0xd08 ;;
    a76) part=0xd0b; features="$features atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp" ;;
    esac
    printf 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 0\n\n' "$features" "$part"
}
stamp="$dir/sysroot.ort-$ort_version.numpy-$numpy_version"
if [ ! -f "$stamp" ]; then
    step "arm64 Python 3.11 + onnxruntime $ort_version + numpy $numpy_version in $dir (downloads about 220 MB)"
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo=sudo; else
        fail "downloading the arm64 .deb files needs apt-get as root (or sudo)"
    fi
    rm -rf "$dir/debs" "$dir/sysroot" "$dir/site" "$dir/wheels"
    mkdir -p "$dir/debs"
    added=no
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then $sudo dpkg --add-architecture arm64; added=yes; fi
    $sudo apt-get update -qq
    (cd "$dir/debs" && apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
        libpython3.11-stdlib:arm64 libc6:arm64 libbz2-1.0:arm64 libcrypt1:arm64 libexpat1:arm64 libffi8:arm64 \
        liblzma5:arm64 libncursesw6:arm64 libtinfo6:arm64 libreadline8:arm64 libuuid1:arm64 zlib1g:arm64 \
        libssl3:arm64 libgcc-s1:arm64 libstdc++6:arm64 libsqlite3-0:arm64 libnsl2:arm64 libtirpc3:arm64)
    if [ $added = yes ]; then $sudo dpkg --remove-architecture arm64; $sudo apt-get update -qq; fi
    for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/sysroot"; done
    python3 -m pip download -q --only-binary=:all: --platform manylinux_2_28_aarch64 \
        --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 --python-version 3.11 \
        --implementation cp -d "$dir/wheels" "onnxruntime==$ort_version" "numpy==$numpy_version"
    mkdir -p "$dir/site"
    for whl in "$dir"/wheels/*.whl; do python3 -m zipfile -e "$whl" "$dir/site"; done
    rm -rf "$dir/debs" "$dir/wheels"
    touch "$stamp"
fi
# `qemu-aarch64 -L ROOT` makes the guest read ROOT/proc/cpuinfo: one tree per board, sharing files by hard links.
for board in ${boards//,/ }; do
    rm -rf "$dir/sysroot-$board"
    cp -al "$dir/sysroot" "$dir/sysroot-$board"
    mkdir -p "$dir/sysroot-$board/proc"
    cpuinfo "$board" >"$dir/sysroot-$board/proc/cpuinfo"
done

# ---- pi-classify for each board
declare -A cpu=([a72]=cortex-a72 [a76]=cortex-a76)
for board in ${boards//,/ }; do
    [ -n "${cpu[$board]:-}" ] || fail "PI_BOARDS: unknown board $board (a72, a76)"
    step "pi-classify for the ${cpu[$board]}"
    RUSTFLAGS="-C target-cpu=${cpu[$board]}" cargo build --release -q -p pi-classify \
        --target aarch64-unknown-linux-gnu --target-dir "target/pi-peers-$board"
done

# ---- counting
count() { # board, then the program and its arguments -> instructions executed
    local board=$1; shift
    qemu-aarch64 -cpu "${cpu[$board]}" -plugin "$dir/libinsncount.so" -d plugin "$@" 2>&1 >/dev/null |
        sed -n 's/^insns: //p'
}
ours() { # board seq n
    count "$1" -L /usr/aarch64-linux-gnu "target/pi-peers-$1/aarch64-unknown-linux-gnu/release/pi-classify" \
        "$dir/model.blob" -q --ids "$ids" --repeat "$3"
}
theirs() { # board seq n
    PYTHONPATH="$dir/site" OMP_NUM_THREADS=1 count "$1" -L "$dir/sysroot-$1" \
        "$dir/sysroot-$1/usr/bin/python3.11" benches/pi/ortrun.py "$ckpt/model.int8.onnx" "$3" "$ids"
}
per_run() { echo $(( ($2 - $1) / 4 )); }

results="$dir/results.json"
echo "[" >"$results"
first=yes
printf '\n%-6s %5s %18s %18s %8s\n' board seq "albert-edge int8" "ONNX Runtime int8" ratio
for board in ${boards//,/ }; do
    for seq in ${seqs//,/ }; do
        ids=$(python3 -c "import sys; s=int(sys.argv[1]); ids=[5+(t*7919)%(30000-5) for t in range(s)]; ids[0]=2; ids[-1]=3; print(' '.join(map(str, ids)))" "$seq")
        step "$board, seq $seq: albert-edge (1 and 5 runs), ONNX Runtime (1 and 5 runs)"
        a=$(per_run "$(ours "$board" "$seq" 1)" "$(ours "$board" "$seq" 5)")
        o=$(per_run "$(theirs "$board" "$seq" 1)" "$(theirs "$board" "$seq" 5)")
        python3 -c "import sys; b, s, a, o = sys.argv[1:]; a, o = int(a), int(o)
print(f'{b:<6} {s:>5} {a / 1e6:16.1f} M {o / 1e6:16.1f} M {a / o:7.2f}x')" "$board" "$seq" "$a" "$o"
        [ $first = yes ] || echo "," >>"$results"
        first=no
        printf '  {"board": "%s", "seq": %s, "albert_edge_int8": %s, "onnxruntime_int8": %s}' \
            "$board" "$seq" "$a" "$o" >>"$results"
    done
done
printf '\n]\n' >>"$results"
echo
echo "instructions per classification; written to $results (onnxruntime $ort_version, $(git rev-parse --short HEAD))"
