#!/usr/bin/env python3
"""Interleaved peer timings on one host (`benches/x86-peers.sh`): albert-edge int8 against ONNX Runtime dynamic int8
and fp32, batch 1, one driver.

    x86-peers.py DIR --server PROGRAM BLOB [--seqs 32,128] [--threads 1,2,4] [--rounds 15] [--warmup 2]
                 [--pause-ms 20] [--avx2] [--no-amx] [--json OUT]

albert-edge runs in a long-lived process (`benches/examples/serve_ids.rs`) that classifies one request per line
and reports the time of the `classify_parallel` call alone; ONNX Runtime runs in this process (`InferenceSession.run`,
timed around the call, so Python's call overhead is on ONNX Runtime's side). For each thread count and sequence
length, every round runs each engine once, in an order that rotates from round to round (A B C, B C A, C A B, ...),
with a short pause between runs so that neither engine's spinning worker threads eat into the next one's time.
With --avx2 a second albert-edge process runs with ALBERT_EDGE_X86=avx2 (the AVX2 kernels on a CPU that has AVX-512
VNNI) as a fourth engine. Figures are medians over the rounds; each ratio a / b is the median of the per-round
ratios (both runs of a round saw the same machine load). ONNX Runtime: `intra_op_num_threads` = the thread count,
sequential execution, default spinning; albert-edge: `parallel::Threads::new(n)` (n > 1) or `Sequential`.
Token ids: the same as `benches/peers.py` (`peer_ids`); attention mask all ones, token types all 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def deny_amx() -> None:
    """Makes arch_prctl(ARCH_REQ_XCOMP_PERM) fail in this process and its children (a seccomp filter), so that ONNX
    Runtime's MLAS, which asks the kernel for the AMX tile state before it picks its AMX int8 kernels, falls back to
    the AVX-512 VNNI ones: what it runs on a VNNI CPU without AMX. Linux x86-64 only."""
    import ctypes

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
    arch_prctl, req_xcomp_perm = 158, 0x1023
    allow, eperm = 0x7FFF0000, 0x00050000 | 1
    code = [(ld, 0, 0, 0), (jeq, 0, 3, arch_prctl), (ld, 0, 0, 16), (jeq, 0, 1, req_xcomp_perm), (ret, 0, 0, eperm),
            (ret, 0, 0, allow)]
    filters = (Filter * len(code))(*[Filter(*c) for c in code])
    prog = Program(len(code), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # NO_NEW_PRIVS, SECCOMP
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


if "--no-amx" in sys.argv:
    deny_amx()  # before ONNX Runtime is loaded

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402


def peer_ids(seq: int) -> list[int]:
    """[CLS] t_1 .. t_{seq-2} [SEP], ordinary ids spread over the vocabulary (benches/peers.py's formula)."""
    ids = [5 + (t * 7919) % (30000 - 5) for t in range(seq)]
    ids[0], ids[-1] = 2, 3
    return ids


class Ours:
    def __init__(self, server: str, blob: str, env: dict[str, str] | None = None):
        self.p = subprocess.Popen([server, blob], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                  env=None if env is None else {**os.environ, **env})

    def run(self, threads: int, ids: list[int]) -> tuple[float, float, list[float]]:
        self.p.stdin.write(f"{threads} {' '.join(map(str, ids))}\n")
        self.p.stdin.flush()
        words = self.p.stdout.readline().split()
        if not words:
            raise RuntimeError("serve_ids ended early")
        return float(words[0]), float(words[1]), [float(w) for w in words[2:]]

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait()


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_runner(sess: ort.InferenceSession):
    def run(threads: int, ids: list[int]) -> tuple[float, float, list[float]]:
        del threads
        a = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)}
        t0, c0 = time.perf_counter(), time.process_time()
        out = sess.run(["logits"], feeds)[0]
        cpu, wall = (time.process_time() - c0) * 1e3, (time.perf_counter() - t0) * 1e3
        return wall, cpu, out.ravel().tolist()

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="model.int8.onnx and model.onnx (benches/peers.py build)")
    ap.add_argument("--server", nargs=2, metavar=("PROGRAM", "BLOB"), required=True)
    ap.add_argument("--seqs", default="32,128")
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--pause-ms", type=float, default=20.0)
    ap.add_argument("--no-amx", action="store_true",
                    help="keep ONNX Runtime off its AMX int8 kernels (a seccomp filter; see deny_amx)")
    ap.add_argument("--avx2", action="store_true",
                    help="add albert-edge-int8-avx2: a second server process with ALBERT_EDGE_X86=avx2")
    ap.add_argument("--engines", default="albert-edge-int8,albert-edge-int8-avx2,ort-int8,ort-fp32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    seqs = [int(s) for s in args.seqs.split(",")]
    engines = args.engines.split(",")

    ours = {"albert-edge-int8": Ours(*args.server)}
    if args.avx2:
        ours["albert-edge-int8-avx2"] = Ours(*args.server, env={"ALBERT_EDGE_X86": "avx2"})
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        runners = {name: o.run for name, o in ours.items()}
        if "ort-int8" in engines:
            runners["ort-int8"] = ort_runner(ort_session(args.dir / "model.int8.onnx", threads))
        if "ort-fp32" in engines:
            runners["ort-fp32"] = ort_runner(ort_session(args.dir / "model.onnx", threads))
        names = [e for e in engines if e in runners]
        for seq in seqs:
            ids = peer_ids(seq)
            for name in names:
                for _ in range(args.warmup):
                    runners[name](threads, ids)
            wall = {n: [] for n in names}
            cpu = {n: [] for n in names}
            logits = {}
            for r in range(args.rounds):
                for k in range(len(names)):
                    name = names[(r + k) % len(names)]
                    time.sleep(args.pause_ms / 1e3)
                    w, c, lg = runners[name](threads, ids)
                    wall[name].append(w)
                    cpu[name].append(c)
                    logits[name] = lg
            row = dict(seq=seq, threads=threads, rounds=args.rounds, logits=logits)
            for n in names:
                row[n] = dict(median_ms=statistics.median(wall[n]), median_cpu_ms=statistics.median(cpu[n]),
                              min_ms=min(wall[n]), max_ms=max(wall[n]), wall_ms=wall[n])
            for a in [n for n in ours if n in names]:
                for b in ("ort-int8", "ort-fp32"):
                    if b in names:
                        row[f"{a}/{b}"] = statistics.median(x / y for x, y in zip(wall[a], wall[b]))
            rows.append(row)
            print(f"  seq {seq:>3}, {threads} thread(s): " + ", ".join(
                f"{n} {row[n]['median_ms']:.2f} ms" for n in names), file=sys.stderr, flush=True)
        del runners
    for o in ours.values():
        o.close()

    ratios = [k for k in rows[0] if "/" in k]
    print("\n| seq | threads | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(ratios) + " |")
    print("|---:|---:|" + "---:|" * (len(names) + len(ratios)))
    for row in rows:
        cells = [f"{row[n]['median_ms']:.2f}" for n in names] + [f"{row[k]:.2f}" for k in ratios]
        print(f"| {row['seq']} | {row['threads']} | " + " | ".join(cells) + " |")
    print("\nMedian wall ms per classification over the rounds; a / b: the median of the per-round ratios")
    print("(< 1: albert-edge is faster).")
    if args.json:
        args.json.write_text(json.dumps(dict(onnxruntime=ort.__version__, no_amx=args.no_amx, results=rows),
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
