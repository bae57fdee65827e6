#!/usr/bin/env bash
# The same blob and inputs must give the same logits, bit for bit, whatever the optimisation level: converts the
# fixture checkpoints, classifies the reference rows with an opt-level-0 build and a release build of the CLI, and
# compares the printed logits (Rust's shortest round-trip formatting, so equal text means equal bits).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cargo build -q -p albert-edge-cli --profile unoptimized
cargo build -q -p albert-edge-cli --release
for fixture in tests/fixtures/tiny-gelu-new-2 tests/fixtures/tiny-gelu-3; do
    name=$(basename "$fixture")
    target/release/albert-edge convert "$fixture" -o "$tmp/$name.blob" >/dev/null
    for precision in int8 fp32; do
        for profile in unoptimized release; do
            while read -r ids; do
                "target/$profile/albert-edge" classify "$tmp/$name.blob" --ids "$ids" --precision "$precision" --json
            done < <(python3 -c 'import json,sys; [print(" ".join(map(str, r["input_ids"]))) for r in json.load(open(sys.argv[1]))["rows"][:40]]' "$fixture/random.json") > "$tmp/$name.$precision.$profile.txt"
        done
        if ! cmp -s "$tmp/$name.$precision.unoptimized.txt" "$tmp/$name.$precision.release.txt"; then
            echo "error: $name $precision logits differ between opt-level 0 and release" >&2
            diff "$tmp/$name.$precision.unoptimized.txt" "$tmp/$name.$precision.release.txt" | head >&2
            exit 1
        fi
        echo "$name $precision: $(wc -l < "$tmp/$name.$precision.release.txt") inputs, identical logits in both builds"
    done
done
