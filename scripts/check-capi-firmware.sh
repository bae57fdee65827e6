#!/usr/bin/env bash
# The C firmware example (examples/c-firmware/mps2-an386): builds libalbert_edge.a for thumbv7em-none-eabihf (DSP
# kernels), compiles and links the C program with arm-none-eabi-gcc + newlib, embeds the MCU blob, runs the image
# under qemu-system-arm, and checks that
#   - it exits 0 and classifies every sentence,
#   - each result's logits equal `albert-edge classify BLOB --ids ... --json --precision int8` on the host, bit for
#     bit (the same ids, which the device tokenized),
# then prints its flash and RAM next to the Rust firmware's (target/firmware/mps2-an386-dsp.size, left by
# scripts/check-firmware.sh, when it is there).
# Needs gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm, python3 and the thumbv7em-none-eabihf target.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
dir=examples/c-firmware/mps2-an386
out=target/capi-m4
blob=$repo/models/sst2-albert-mcu.blob
mkdir -p "$out"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

for tool in arm-none-eabi-gcc qemu-system-arm python3; do
    command -v $tool >/dev/null ||
        fail "$tool not found; install with: sudo apt-get install -y gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm python3"
done
[ -f "$blob" ] || fail "models/sst2-albert-mcu.blob is missing"

step "libalbert_edge.a for thumbv7em-none-eabihf (Cortex-M4, DSP kernels)"
RUSTFLAGS="-C target-cpu=cortex-m4" cargo build -q --release -p albert-edge-capi --target thumbv7em-none-eabihf \
    --features arm-dsp --target-dir "$out"
lib=$out/thumbv7em-none-eabihf/release/libalbert_edge.a

step "arm-none-eabi-gcc: the C firmware, the blob linked in place"
flags=(-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2 -ffunction-sections -fdata-sections)
arm-none-eabi-gcc "${flags[@]}" -std=c11 -Wall -Wextra -Werror -Icapi/include -c "$dir/main.c" -o "$out/main.o"
arm-none-eabi-gcc "${flags[@]}" -std=c11 -Wall -Wextra -Werror -c "$dir/startup.c" -o "$out/startup.o"
arm-none-eabi-gcc "${flags[@]}" -DALBERT_BLOB="\"$blob\"" -Wa,--noexecstack -c "$dir/blob.S" -o "$out/blob.o"
elf=$out/albert-c-mps2-an386.elf
arm-none-eabi-gcc "${flags[@]}" -nostartfiles --specs=nano.specs --specs=nosys.specs -T "$dir/link.ld" \
    -Wl,--gc-sections "$out/main.o" "$out/startup.o" "$out/blob.o" "$lib" -o "$elf"
size -A "$elf" >"$out/c-firmware.size"

step "run under qemu-system-arm"
status=0
timeout 120 qemu-system-arm -machine mps2-an386 -nographic -semihosting-config enable=on,target=native \
    -icount shift=0 -kernel "$elf" >"$out/c-firmware.txt" 2>&1 || status=$?
cat "$out/c-firmware.txt"
[ "$status" = 0 ] || fail "the C firmware exited with status $status"
[ "$(grep -c '^result ' "$out/c-firmware.txt")" = 6 ] || fail "the C firmware did not report 6 results"

step "the device's logits = albert-edge classify --ids ... --json --precision int8 on the host, bit for bit"
cargo build -q --release -p albert-edge-cli # as scripts/check-firmware.sh, which runs before
while read -r line; do
    ids=$(grep -o 'ids=[0-9,]*' <<<"$line" | cut -d= -f2)
    bits=$(grep -o 'bits=[0-9a-f,]*' <<<"$line" | cut -d= -f2)
    cli=$(target/release/albert-edge classify "$blob" --ids "$ids" --json --precision int8 |
        python3 -c 'import json, struct, sys
print(",".join("%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in json.load(sys.stdin)["logits"]))')
    [ "$cli" = "$bits" ] || fail "ids $ids: the device gives $bits, the host $cli"
done < <(grep '^result ' "$out/c-firmware.txt")
echo "ok: 6 results equal the host's bit for bit"
if [ -f target/firmware/host.txt ]; then
    # The Rust firmware's sentences are the same: its host results must be the same lines (less the floats).
    diff <(grep '^result ' target/firmware/host.txt | sed 's/ logits=[^ ]*//') <(grep '^result ' "$out/c-firmware.txt") ||
        fail "the C firmware's results differ from the Rust firmware's host results"
    echo "ok: the same results as the Rust firmware (target/firmware/host.txt)"
fi

step "flash and RAM (bytes; code = vector table + .text + .rodata + .data; RAM = .data + .bss, without the stack)"
section() { local f=$1; shift; awk -v names=" $* " 'index(names, " " $1 " ") { s += $2 } END { print s + 0 }' "$f"; }
printf '%-22s %10s %10s %10s\n' image code blob RAM
report() {
    printf '%-22s %10s %10s %10s\n' "$1" "$(section "$2" .vector_table .text .rodata .ARM.exidx .data)" \
        "$(section "$2" .albert_blob)" "$(section "$2" .data .bss .uninit)"
}
report "C (libalbert_edge.a)" "$out/c-firmware.size"
rust_size=target/firmware/mps2-an386-dsp.size
[ -f "$rust_size" ] && report "Rust (albert-firmware)" "$rust_size"

echo
echo "C firmware checks passed"
