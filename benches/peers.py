#!/usr/bin/env python3
"""Python side of `benches/peers.sh`: the ALBERT-base-shaped checkpoint and the ONNX Runtime timings.

  peers.py build DIR    random ALBERT-base-shaped AlbertForSequenceClassification (H 768, 12 heads, I 3072,
                        E 128, 12 layers, vocab 30000, 2 labels) saved as a Hugging Face checkpoint in DIR
                        (config.json, model.safetensors, spiece.model), its fp32 ONNX export (model.onnx) and an
                        ONNX Runtime dynamic-int8 quantization (model.int8.onnx, shared layer quantized in every
                        pass; checked). Reuses tools/fixtures/make_fixtures.py (config, weight init, export,
                        quantization with the Identity/Transpose folding).
  peers.py time DIR     ONNX Runtime fp32 (model.onnx) and dynamic int8 (model.int8.onnx), one thread, batch 1,
                        each sequence length; medians of wall and process CPU time; JSON on stdout.

The token ids are the same as the Rust timer's (`benches/examples/peers.rs`, `peer_ids`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools" / "fixtures"))

import make_fixtures as mf  # noqa: E402  (pinned requirements: tools/fixtures/requirements.txt)
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AlbertForSequenceClassification  # noqa: E402

# Bump when what `build` writes changes, so peers.sh rebuilds a stale directory.
BUILD_VERSION = 1

BASE = dict(
    name="albert-base-random",
    seed=20240610,
    hidden_act="gelu_new",  # ALBERT's default
    labels=["negative", "positive"],
    hidden_size=768,
    num_attention_heads=12,
    intermediate_size=3072,
    num_hidden_layers=12,
    qk_gain=1.0,
    bf16_safetensors=False,
)
EMBEDDING_SIZE = 128
MAX_POSITIONS = 512


def peer_ids(seq: int) -> list[int]:
    """[CLS] t_1 .. t_{seq-2} [SEP], ordinary ids spread over the vocabulary (same formula as the Rust timer)."""
    ids = [mf.FIRST_ORDINARY_ID + (t * 7919) % (mf.VOCAB_SIZE - mf.FIRST_ORDINARY_ID) for t in range(seq)]
    ids[0], ids[-1] = mf.CLS, mf.SEP
    return ids


def build(out: Path) -> int:
    torch.manual_seed(BASE["seed"])
    gen = torch.Generator().manual_seed(BASE["seed"])
    cfg = mf.build_config(BASE)
    cfg.embedding_size = EMBEDDING_SIZE
    cfg.max_position_embeddings = MAX_POSITIONS
    model = AlbertForSequenceClassification(cfg).eval()
    mf.randomise(model, BASE, gen)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cfg.dtype = "float32"
    model.config.save_pretrained(out)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(REPO / "tests/data/spiece/30k-clean.model", out / "spiece.model")

    t0 = time.perf_counter()
    mf.export_onnx(model, out / "model.onnx")
    print(f"  exported model.onnx ({time.perf_counter() - t0:.1f} s)", flush=True)

    # ORT vs Hugging Face on one input: the export is the same model.
    ids = peer_ids(32)
    hf = mf.run_hf(model, ids, [0] * len(ids)).logits[0].numpy()
    fo = mf.ort_logits(mf.ort_session(out / "model.onnx"), [ids], [[1] * len(ids)], [[0] * len(ids)])[0]
    assert np.abs(hf - fo).max() < 1e-3, (hf, fo)

    t0 = time.perf_counter()
    q_path, info = mf.quantize_int8(out / "model.onnx", out)  # asserts every shared-layer MatMul is int8
    (out / "folded.onnx").unlink()
    check = check_dynamic_int8(q_path, BASE["num_hidden_layers"])
    print(f"  quantized model.int8.onnx ({time.perf_counter() - t0:.1f} s): "
          + json.dumps(info["quantized_ops"], sort_keys=True), flush=True)
    print(f"  shared layer: {check}", flush=True)
    mf.write_json(out / "build.json", dict(build_version=BUILD_VERSION, quantized_ops=info["quantized_ops"],
                                           shared_layer_check=check, onnxruntime=ort.__version__,
                                           torch=torch.__version__))
    return 0


def check_dynamic_int8(path: Path, passes: int) -> str:
    """Every application of the shared layer runs its six Linear products as MatMulInteger on an activation that
    a DynamicQuantizeLinear node quantized at run time."""
    g = onnx.load(str(path), load_external_data=False).graph
    producers = {o: n for n in g.node for o in n.output}
    shared = [n for n in g.node if n.op_type == "MatMulInteger" and "albert_layers" in n.name]
    fed = [n for n in shared if producers.get(n.input[0]) is not None
           and producers[n.input[0]].op_type == "DynamicQuantizeLinear"]
    left = [n.name for n in g.node if n.op_type == "MatMul" and "albert_layers" in n.name
            and all(producers.get(i) is not None for i in n.input[:2])]
    assert len(shared) == 6 * passes == len(fed), (len(shared), len(fed))
    return (f"{len(fed)}/{6 * passes} Linear MatMuls are MatMulInteger fed by DynamicQuantizeLinear; "
            f"{len(left)} activation x activation MatMuls stay fp32")


def time_ort(d: Path, seqs: list[int], reps: int, warmup: int) -> int:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    results = []
    for name, file in [("ort-fp32", "model.onnx"), ("ort-int8", "model.int8.onnx")]:
        sess = ort.InferenceSession(str(d / file), so, providers=["CPUExecutionProvider"])
        for seq in seqs:
            ids = np.asarray([peer_ids(seq)], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            for _ in range(warmup):
                sess.run(["logits"], feeds)
            ms, cpu = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                sess.run(["logits"], feeds)
                cpu.append((time.process_time() - c0) * 1e3)
                ms.append((time.perf_counter() - t0) * 1e3)
            wall, cpu = statistics.median(ms), statistics.median(cpu)
            results.append(dict(engine=name, seq=seq, median_ms=wall, median_cpu_ms=cpu, min_ms=min(ms),
                                max_ms=max(ms), runs=reps))
            print(f"  {name:<16} seq {seq:>3}: median {wall:8.2f} ms wall, {cpu:8.2f} ms CPU", file=sys.stderr,
                  flush=True)
        del sess
    json.dump(dict(onnxruntime=ort.__version__, results=results), sys.stdout, indent=1)
    print()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the checkpoint and its ONNX exports to DIR")
    b.add_argument("dir", type=Path)
    t = sub.add_parser("time", help="time ONNX Runtime fp32 and int8 on DIR's exports (JSON on stdout)")
    t.add_argument("dir", type=Path)
    t.add_argument("--seqs", default="32,128")
    t.add_argument("--reps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.cmd == "build":
        return build(args.dir)
    return time_ort(args.dir, [int(s) for s in args.seqs.split(",")], args.reps, args.warmup)


if __name__ == "__main__":
    sys.exit(main())
