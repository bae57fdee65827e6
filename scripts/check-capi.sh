#!/usr/bin/env bash
# The C API (capi/) on the host:
#   - the committed header capi/include/albert_edge.h is what cbindgen generates from capi/src now,
#   - tests/c/errors.c gets the documented status from every function for bad arguments and damaged blobs
#     (with an fp32 blob converted from the test fixture, for ALBERT_EDGE_ERR_NOT_INT8),
#   - tests/c/classify.c, linked with libalbert_edge.a by the system C compiler, gives for every SST-2 dev sentence
#     the logits of `albert-edge classify TEXT --json`, bit for bit.
# Needs a C compiler (cc), python3 and cbindgen (installed with cargo if missing).
#
#   scripts/check-capi.sh              all 872 dev sentences
#   CAPI_ROWS=100 scripts/check-capi.sh  the first 100
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/capi
mkdir -p "$out"

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "error: $*" >&2; exit 1; }

CBINDGEN_VERSION=0.29.4 # the header is compared byte for byte: one generator version
command -v cc >/dev/null || fail "no C compiler (cc); install one with: sudo apt-get install -y gcc"
command -v python3 >/dev/null || fail "python3 not found"

step "capi/include/albert_edge.h is current (cbindgen $CBINDGEN_VERSION)"
if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    cargo install -q cbindgen --version "$CBINDGEN_VERSION" --locked
fi
cbindgen -q --config capi/cbindgen.toml --crate albert-edge-capi --output "$out/albert_edge.h" capi
diff -u capi/include/albert_edge.h "$out/albert_edge.h" ||
    fail "capi/include/albert_edge.h is stale; regenerate it with: cbindgen --config capi/cbindgen.toml --crate albert-edge-capi --output capi/include/albert_edge.h capi"
echo "ok"

step "build libalbert_edge.a (host), the C tests, and the CLI"
cargo build -q -p albert-edge-capi -p albert-edge-cli
lib=target/debug/libalbert_edge.a
libs="-lpthread -ldl -lm"
for prog in classify errors; do
    cc -std=c11 -Wall -Wextra -Werror -O1 -Icapi/include "capi/tests/c/$prog.c" "$lib" $libs -o "$out/$prog"
done
cli=target/debug/albert-edge

step "bad arguments and damaged blobs get their documented status"
"$cli" convert tests/fixtures/tiny-gelu-new-2 --weights fp32 -o "$out/tiny-fp32.blob" >/dev/null
"$out/errors" models/sst2-albert-pi.blob "$out/tiny-fp32.blob"

step "SST-2 dev sentences: C logits = albert-edge classify --json, bit for bit"
rows=${CAPI_ROWS:--1}
"$out/classify" models/sst2-albert-pi.blob tests/data/sst2/dev.tsv "$rows" >"$out/classify.txt"
python3 - "$cli" "$out/classify.txt" <<'PY'
import json, struct, subprocess, sys
cli, results = sys.argv[1], sys.argv[2]
lines = open("tests/data/sst2/dev.tsv", encoding="utf-8").read().split("\n")[1:]
checked = 0
for line in open(results):
    row, label, bits, _ = line.split(" ")
    text = lines[int(row) - 1].split("\t")[0].rstrip(" \t")
    out = subprocess.run([cli, "classify", "models/sst2-albert-pi.blob", "--json", "--", text],
                         check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    want = ",".join("%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in r["logits"])
    if want != bits or r["label"] != label:
        sys.exit(f"error: row {row} ({text!r}): C gives {label} {bits}, the CLI {r['label']} {want}")
    checked += 1
if checked == 0:
    sys.exit("error: the C program classified nothing")
print(f"ok: {checked} sentences, the same logits bit for bit")
PY

echo
echo "C API checks passed"
