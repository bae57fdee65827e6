#!/usr/bin/env bash
# Builds the Cortex-M firmware (examples/firmware) for both emulated boards and each kernel they can run, runs every
# image under qemu-system-arm, and checks that
#   - each image exits 0 (a panic, a HardFault, a failed kernel self-check or a timeout exits non-zero),
#   - its token ids and logits equal the host's bit for bit (the same sentence loop built for the host),
#   - a blob too large for its flash region fails at link time with the memory.x message,
#   - the defmt build links,
#   - the DSP kernel passes the shared kernel harness (src/kernels/tests.rs) on a Cortex-A7 under qemu-arm, when
#     the armv7 cross linker is installed (the same SXTB16/SMLAD instructions as on Cortex-M).
# Then prints the instruction counts per inference. Needs qemu-system-arm and the thumbv7em-none-eabihf and
# thumbv8m.main-none-eabihf rustup targets (scripts/test-all.sh installs them).
#
#   scripts/check-firmware.sh                          the blob: $ALBERT_BLOB, else models/sst2-albert-mcu.blob,
#                                                      else the test fixture tests/fixtures/tiny-gelu-new-2
#   ALBERT_BLOB=path/to/model.blob scripts/check-firmware.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=$repo/target/firmware
fw=$repo/examples/firmware
mkdir -p "$out"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

command -v qemu-system-arm >/dev/null || fail "qemu-system-arm not found; install it with: sudo apt-get install -y qemu-system-arm"

# ---------------------------------------------------------------------------------------------------------------
# Lints: the core's Cortex-M code (kernels, defmt) and the firmware workspace (its own, so not in test-all's)
# ---------------------------------------------------------------------------------------------------------------
step "cargo fmt --check and cargo clippy -D warnings: firmware crates, and the core's Cortex-M kernels and defmt code"
# `cargo fmt --all` inside examples/firmware would format the core too (a path dependency): name the packages.
(cd "$fw" && cargo fmt -p albert-firmware -p albert-mps2-an386 -p albert-mps3-an547 -- --check)
cargo clippy -q -p albert-edge --target thumbv7em-none-eabihf --features arm-dsp,defmt -- -D warnings
RUSTFLAGS="-C target-cpu=cortex-m55" cargo clippy -q -p albert-edge --target thumbv8m.main-none-eabihf \
    --features arm-dsp,arm-helium,defmt --target-dir target/cortex-m55 -- -D warnings

# ---------------------------------------------------------------------------------------------------------------
# The blob
# ---------------------------------------------------------------------------------------------------------------
if [ -n "${ALBERT_BLOB:-}" ]; then
    blob=$ALBERT_BLOB
elif [ -f models/sst2-albert-mcu.blob ]; then
    blob=models/sst2-albert-mcu.blob
else
    blob=$out/tiny-gelu-new-2.blob
    step "convert tests/fixtures/tiny-gelu-new-2 -> ${blob#"$repo"/}"
    cargo run -q --release -p albert-edge-cli -- convert tests/fixtures/tiny-gelu-new-2 -o "$blob" >/dev/null
fi
ALBERT_BLOB=$(realpath "$blob")
export ALBERT_BLOB
echo "blob: ${ALBERT_BLOB#"$repo"/} ($(stat -c %s "$ALBERT_BLOB") bytes)"

# ---------------------------------------------------------------------------------------------------------------
# The host's answers
# ---------------------------------------------------------------------------------------------------------------
step "host-logits (the same sentence loop, on the host)"
(cd "$fw" && cargo run -q --release -p albert-firmware --features std --bin host-logits) >"$out/host.txt"
grep -c '^result ' "$out/host.txt" >/dev/null || fail "host-logits printed no results"
cat "$out/host.txt"

step "albert-edge classify --ids ... --json --precision int8 agrees with host-logits bit for bit"
if command -v python3 >/dev/null; then
    while read -r line; do
        ids=$(grep -o 'ids=[0-9,]*' <<<"$line" | cut -d= -f2)
        bits=$(grep -o 'bits=[0-9a-f,]*' <<<"$line" | cut -d= -f2)
        # JSON holds each f32 as its shortest round-trip decimal; parsing it back gives the same bits.
        cli=$(cargo run -q --release -p albert-edge-cli -- classify "$ALBERT_BLOB" --ids "$ids" --json --precision int8 |
            python3 -c 'import json, struct, sys
print(",".join("%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in json.load(sys.stdin)["logits"]))')
        [ "$cli" = "$bits" ] || fail "albert-edge classify gives $cli for ids $ids, host-logits $bits"
    done < <(grep '^result ' "$out/host.txt")
    echo "ok"
else
    echo "(skipped: needs python3)"
fi

# ---------------------------------------------------------------------------------------------------------------
# The images
# ---------------------------------------------------------------------------------------------------------------
target_of() { case $1 in mps2-an386) echo thumbv7em-none-eabihf ;; mps3-an547) echo thumbv8m.main-none-eabihf ;; esac; }

# run_image BOARD KERNEL FEATURES: builds and runs one image, compares its results with the host's, keeps its
# section sizes.
run_image() {
    local board=$1 kernel=$2 features=$3 log="$out/$1-$2.txt"
    step "$board, kernel $kernel: build, run under qemu-system-arm, compare with the host"
    (cd "$fw/$board" && cargo build -q --release --no-default-features --features "$features")
    size -A "$fw/target/$(target_of "$board")/release/albert-$board" >"$out/$board-$kernel.size"
    local status=0
    (cd "$fw/$board" && cargo run -q --release --no-default-features --features "$features") >"$log" 2>&1 || status=$?
    cat "$log"
    [ "$status" = 0 ] || fail "$board ($kernel) exited with status $status (see above)"
    grep -q '^self-check: ' "$log" || fail "$board ($kernel) printed no self-check line"
    if ! diff <(grep '^result ' "$out/host.txt") <(grep '^result ' "$log"); then
        fail "$board ($kernel): results differ from the host's (< host, > device)"
    fi
    echo "ok: $(grep -c '^result ' "$log") results equal the host's bit for bit"
}

step "cargo clippy -D warnings: firmware (blob-dependent, so after the blob is known)"
(cd "$fw/mps2-an386" && cargo clippy -q --release --all-targets -- -D warnings)
(cd "$fw/mps3-an547" && cargo clippy -q --release --all-targets --features dsp,defmt -- -D warnings)
(cd "$fw" && cargo clippy -q --release -p albert-firmware --features std --all-targets -- -D warnings)

run_image mps2-an386 dsp dsp
run_image mps2-an386 reference ""
run_image mps3-an547 helium helium
run_image mps3-an547 dsp dsp
run_image mps3-an547 reference ""

# ---------------------------------------------------------------------------------------------------------------
# A blob too large for its region fails at link time
# ---------------------------------------------------------------------------------------------------------------
step "a 9 MiB blob does not link for mps3-an547 (8 MiB QSPI)"
big=$out/too-big.blob
cp "$ALBERT_BLOB" "$big"
truncate -s 9M "$big" # bytes after the blob's recorded length are ignored by the reader, not by the linker
status=0
(cd "$fw/mps3-an547" && ALBERT_BLOB=$big cargo build -q --release) >"$out/too-big.txt" 2>&1 || status=$?
rm -f "$big"
[ "$status" != 0 ] || fail "a 9 MiB blob linked for mps3-an547"
grep -q 'does not fit the 8 MiB QSPI region' "$out/too-big.txt" || { cat "$out/too-big.txt"; fail "the link failed without the memory.x message"; }
echo "ok: $(grep -m1 'ERROR(albert-firmware)' "$out/too-big.txt" | sed 's/^[^E]*//')"

# ---------------------------------------------------------------------------------------------------------------
# defmt
# ---------------------------------------------------------------------------------------------------------------
step "mps3-an547 with --features defmt links"
(cd "$fw/mps3-an547" && cargo build -q --release --features defmt)
elf=$fw/target/thumbv8m.main-none-eabihf/release/albert-mps3-an547
if command -v defmt-print >/dev/null; then
    (cd "$fw/mps3-an547" && timeout 120 qemu-system-arm -machine mps3-an547 -nographic \
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf") | defmt-print -e "$elf" | tee "$out/defmt.txt"
    grep -q 'result 0' "$out/defmt.txt" || fail "defmt-print decoded no results"
else
    echo "(defmt-print not installed: built only; 'cargo install defmt-print' to decode the run)"
fi

# ---------------------------------------------------------------------------------------------------------------
# The DSP kernel through the shared harness on a Cortex-A7
# ---------------------------------------------------------------------------------------------------------------
step "the DSP kernel through the shared kernel harness (armv7, qemu-arm -cpu cortex-a7)"
if command -v arm-linux-gnueabihf-gcc >/dev/null && command -v qemu-arm >/dev/null; then
    cargo test -q -p albert-edge --lib --target armv7-unknown-linux-gnueabihf --features arm-dsp kernels::tests::dsp
else
    echo "(skipped: needs gcc-arm-linux-gnueabihf and qemu-user)"
fi

# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------
# field LOG KEY: the value of KEY=... on the log's lines (one per line).
field() { grep -o "$2=[0-9]*" "$1" | cut -d= -f2; }
# section SIZEFILE NAME...: the summed sizes of the named sections in `size -A` output.
section() { local f=$1; shift; awk -v names=" $* " 'index(names, " " $1 " ") { s += $2 } END { print s + 0 }' "$f"; }

step "flash and RAM (bytes; code = vector table + .text + .rodata + .data; RAM = .data + .bss + stack high-water)"
printf '%-12s %-10s %10s %10s %10s %8s %10s\n' board kernel code blob arena+ws stack RAM
for log in "$out"/mps*-*.txt; do
    name=$(basename "$log" .txt) sz="$out/$(basename "$log" .txt).size"
    code=$(section "$sz" .vector_table .text .rodata .data)
    blob=$(section "$sz" .albert_blob)
    statics=$(section "$sz" .data .bss .uninit)
    arena=$(($(field "$log" arena) + $(field "$log" workspace)))
    stack=$(field "$log" stack_high_water)
    printf '%-12s %-10s %10s %10s %10s %8s %10s\n' "${name%-*}" "${name##*-}" "$code" "$blob" "$arena" "$stack" \
        "$((statics + stack))"
done

step "instructions per inference (SysTick under -icount shift=0: tokenize, then classify; see docs/cortex-m.md)"
printf '%-12s %-10s %5s %12s %14s\n' board kernel seq tokenize classify
for log in "$out"/mps*-*.txt; do
    name=$(basename "$log" .txt)
    grep '^bench ' "$log" | while read -r _ seq tok cls _; do
        printf '%-12s %-10s %5s %12s %14s\n' "${name%-*}" "${name##*-}" "${seq#seq=}" "${tok#tokenize_insns=}" \
            "${cls#classify_insns=}"
    done
done

echo
echo "firmware checks passed"
