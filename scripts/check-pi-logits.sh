#!/usr/bin/env bash
# The Raspberry Pi example must print the same logits, bit for bit, whichever kernels a build uses: converts the
# fixture checkpoint, runs examples/pi-classify on x86-64 (reference kernels) and, under qemu-user, on aarch64
# (NEON smull/sadalp on a Cortex-A72 = Pi 4; NEON sdot on a Cortex-A76 = Pi 5) and armv7 (reference, and NEON on
# a Cortex-A7 = 32-bit Pi OS), for the int8 engine (one thread, and three: `--threads 3`) and the f32 reference,
# and compares the printed logits.
# Needs what scripts/test-all.sh installs (cross gcc, libc6-dev-*-cross, qemu-user, rustup targets).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cargo run -q --release -p albert-edge-cli -- convert tests/fixtures/tiny-gelu-new-2 -o "$tmp/m.blob" >/dev/null

# Token id sequences of 2 to 128 tokens ([CLS] ... [SEP]), from a fixed LCG: the same on every machine.
seed=12345
for len in 2 3 8 9 14 16 17 31 32 33 64 100 128; do
    ids="2"
    for ((i = 2; i < len; i++)); do
        seed=$(((seed * 1103515245 + 12345) % 2147483648))
        ids+=" $((5 + seed % 29990))"
    done
    echo "$ids 3"
done >"$tmp/ids.txt"
printf '%s\n' "a gorgeous, witty, seductive movie." "it's a bad sign when you're rooting for the film to end." \
    "Ünïcödé, digits 1,990 and [MASK] tokens" >"$tmp/text.txt"

# name | target | RUSTFLAGS | cargo features | qemu runner ("" = the one in .cargo/config.toml)
flavors=(
    "x86-64|||"
    "aarch64-neon|aarch64-unknown-linux-gnu|||"
    "aarch64-sdot|aarch64-unknown-linux-gnu|-C target-feature=+dotprod||qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a76"
    "armv7-reference|armv7-unknown-linux-gnueabihf|||"
    "armv7-neon|armv7-unknown-linux-gnueabihf|-C target-feature=+neon|--features arm-neon|"
)
text=""
for flavor in "${flavors[@]}"; do
    IFS='|' read -r name target rustflags features runner <<<"$flavor"
    args=(run -q --release -p pi-classify $features)
    [ -n "$target" ] && args+=(--target "$target")
    # Builds with their own RUSTFLAGS get their own target directory, so flavors do not rebuild each other.
    [ -n "$rustflags" ] && args+=(--target-dir "target/$name")
    env=(RUSTFLAGS="$rustflags")
    if [ -n "$runner" ]; then
        var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_RUNNER"
        env+=("$var=$runner")
    fi
    # `unstable feature specified for -Ctarget-feature: neon` is expected for armv7 (see src/kernels/neon.rs).
    env "${env[@]}" cargo "${args[@]}" -- "$tmp/m.blob" --ids -q <"$tmp/ids.txt" 2> >(grep -v 'unstable feature\|^ *|\|= note\|^$\|generated 1 warning' >&2) |
        grep '^logits:' >"$tmp/$name.int8.txt"
    env "${env[@]}" cargo "${args[@]}" -- "$tmp/m.blob" --ids -q --threads 3 <"$tmp/ids.txt" 2>/dev/null |
        grep '^logits:' >"$tmp/$name.threads.txt"
    if ! cmp -s "$tmp/$name.int8.txt" "$tmp/$name.threads.txt"; then
        echo "error: pi-classify ($name) int8 logits differ between 1 and 3 threads" >&2
        diff "$tmp/$name.int8.txt" "$tmp/$name.threads.txt" | head >&2
        exit 1
    fi
    env "${env[@]}" cargo "${args[@]}" -- "$tmp/m.blob" --ids -q --fp32 <"$tmp/ids.txt" 2>/dev/null |
        grep '^logits:' >"$tmp/$name.fp32.txt"
    # Text goes through the on-device tokenizer when the blob carries one.
    if [ "$name" = x86-64 ] && env "${env[@]}" cargo "${args[@]}" -- "$tmp/m.blob" -q "probe" >/dev/null 2>&1; then
        text=1
    fi
    if [ -n "$text" ]; then
        env "${env[@]}" cargo "${args[@]}" -- "$tmp/m.blob" -q <"$tmp/text.txt" 2>/dev/null |
            grep '^logits:' >"$tmp/$name.text.txt"
    fi
    for kind in int8 fp32 ${text:+text}; do
        n=$(wc -l <"$tmp/$name.$kind.txt")
        expected=$(wc -l <"$tmp/$( [ "$kind" = text ] && echo text || echo ids ).txt")
        if [ "$n" -ne "$expected" ]; then
            echo "error: pi-classify ($name, $kind) printed $n logits lines for $expected inputs" >&2
            exit 1
        fi
        if [ "$name" != x86-64 ] && ! cmp -s "$tmp/x86-64.$kind.txt" "$tmp/$name.$kind.txt"; then
            echo "error: pi-classify $kind logits differ between x86-64 and $name" >&2
            diff "$tmp/x86-64.$kind.txt" "$tmp/$name.$kind.txt" | head >&2
            exit 1
        fi
    done
    echo "$name: $(wc -l <"$tmp/ids.txt") inputs (int8 on 1 and 3 threads, and fp32)${text:+ + $(wc -l <"$tmp/text.txt") texts}, logits identical to x86-64"
done
[ -n "$text" ] || echo "note: the blob has no tokenizer section; text inputs were not compared (token ids were)"
