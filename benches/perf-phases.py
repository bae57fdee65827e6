#!/usr/bin/env python3
"""Shares of one albert-edge run's CPU time by phase, from a `perf record` profile (`benches/x86-profile.sh`).

    perf-phases.py BINARY PERF.DATA [--runs N] [--freq HZ] [--json OUT] [--detail]

Every sample is attributed to the innermost albert-edge function at its address, inlined ones included (addr2line
-i on the binary's line tables: the release profile keeps them; a row sum that several phases share counts for the
function it is inlined in), and that function to a phase by its name: GEMM
(the linear layers' integer products, packing, side columns, weight sums), attention scores (Q.K), softmax, P.V,
attention (other: the per-row driver), GELU, LayerNorm (residual add + normalisation), quantisation (activation
scales and rounding, wherever they run), embeddings (with the projection to H), other (memcpy/memset, the kernel, start-up).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys

# (phase, pattern on the innermost albert_edge function); the first match wins.
PHASES = [
    ("embeddings", r"embeddings::|gemm_t_i8_f32|gemv_t_i8_f32|_rows::(avx512::|avx2::)?gemm_t"),
    ("attention scores (Q.K)", r"scores|Keys::|attention::layout|gemv_i16|gemm_i16|i16_tile"),
    ("softmax", r"softmax|math::exp"),
    ("P.V", r"attend|Values::"),
    ("attention (other)", r"AttentionRows|attention::|attends"),
    ("GELU", r"Activate|gelu|tanh|math::activate"),
    ("LayerNorm", r"AddNorm|add_norm|add_blocks|layer_norm|LayerNorm|_rows::(avx2::)?(add_sums|norm_to)"),
    ("quantisation", r"quant::|Quantize|_rows::(avx512::|avx2::)?(max_prefix|round_|trunc_clamp|magnitude|first)"),
    ("GEMM", r"gemm|pass_rows|pack_|blocks\d|run_linear|linear::|Linear|kernels::x86::|matmul|dot"),
]

# Helpers that several phases call: attributed to the innermost caller they are inlined in, where there is one.
SHARED = r"lane_sum"


def symbols(binary: str) -> dict[str, int]:
    out = subprocess.run(["nm", "-C", binary], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] and parts[1] in "tTwW":
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("data")
    ap.add_argument("--json")
    ap.add_argument("--detail", action="store_true", help="also list the functions of each phase")
    ap.add_argument("--runs", type=int, help="classifications in the profile: adds ms per classification")
    ap.add_argument("--freq", type=float, default=2000.0, help="perf record's sampling rate (Hz)")
    args = ap.parse_args()

    syms = symbols(args.binary)
    script = subprocess.run(["perf", "script", "-i", args.data, "-F", "ip,sym,symoff,dso"], capture_output=True,
                            text=True, check=True).stdout
    name = args.binary.rsplit("/", 1)[-1]
    samples = collections.Counter()  # binary address -> samples
    elsewhere = collections.Counter()  # symbol outside the binary -> samples
    for line in script.splitlines():
        m = re.match(r"\s*[0-9a-f]+\s+(.*)\+0x([0-9a-f]+)\s+\((.*)\)\s*$", line)
        if not m:
            if line.strip():
                elsewhere["[unknown]"] += 1
            continue
        sym, off, dso = m.group(1), int(m.group(2), 16), m.group(3)
        if dso.endswith(name) and sym in syms:
            samples[syms[sym] + off] += 1
        else:
            elsewhere[sym] += 1
    addrs = list(samples)
    out = subprocess.run(["addr2line", "-e", args.binary, "-f", "-i", "-C", "-a"] + [f"0x{a:x}" for a in addrs],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    chains: dict[int, list[str]] = {}
    cur, i = None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16)
            chains[cur] = []
            i += 1
        else:
            chains[cur].append(out[i])
            i += 2
    phase = collections.Counter()
    detail = collections.defaultdict(collections.Counter)
    for a, n in samples.items():
        funcs = [f for f in chains.get(a, []) if "albert_edge" in f]
        # A row sum shared by several phases (LayerNorm's, the softmax's) counts for the function it is inlined in.
        own = [f for f in funcs if not re.search(SHARED, f)]
        f = own[0] if own else funcs[0] if funcs else "?"
        p = next((p for p, pat in PHASES if re.search(pat, f)), "other")
        phase[p] += n
        detail[p][f.split("(")[0][:100]] += n
    for sym, n in elsewhere.items():
        phase["other"] += n
        detail["other"][sym[:100]] += n
    total = sum(phase.values())
    order = [p for p, _ in PHASES[-1:] + PHASES[:-1]] + ["other"]
    per = 1e3 / args.freq / args.runs if args.runs else None
    print(f"{total} samples" + (f", {total * per:.1f} ms per classification" if per else ""))
    shares = {}
    for p in order:
        shares[p] = phase[p] / total
        print(f"  {100 * shares[p]:5.1f}%  {p}" + (f"  ({phase[p] * per:.1f} ms)" if per else ""))
        if args.detail:
            for f, n in detail[p].most_common(8):
                print(f"           {100 * n / total:5.1f}%  {f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(samples=total, runs=args.runs, freq=args.freq, shares=shares), fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
