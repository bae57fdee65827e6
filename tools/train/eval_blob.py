#!/usr/bin/env python3
"""Measure a converted blob's SST-2 dev accuracy with the `albert-edge` CLI, in fp32 and int8, and the agreement
of int8 with fp32 (same predicted label).

Every dev row is classified by `albert-edge classify BLOB --json --precision fp32|int8`, one process per row
and precision. Inputs are token ids (`--ids`), taken from tests/data/spiece/sst2_dev.albert_ids.txt: the golden
`AlbertTokenizer` ids of every dev row (exactly what the training script fed the model, and what the on-device
tokenizer reproduces). With `--text` the raw sentence is passed instead, tokenised by the blob's tokenizer
section (needs a CLI build that classifies text).

    python tools/train/eval_blob.py models/sst2-albert-pi.blob --cli target/release/albert-edge
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def hf_predictions(hf_dir: Path, ids: list[str]) -> list[int]:
    """Predicted labels of the Hugging Face checkpoint (PyTorch fp32, eval mode) on each row's ids."""
    import torch
    from transformers import AlbertForSequenceClassification

    torch.set_num_threads(1)
    model = AlbertForSequenceClassification.from_pretrained(hf_dir).eval()
    out = []
    with torch.no_grad():
        for row in ids:
            x = torch.tensor([[int(t) for t in row.split()]])
            out.append(int(model(input_ids=x).logits.argmax(-1).item()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blob", type=Path)
    ap.add_argument("--cli", default=str(REPO / "target/release/albert-edge"), help="albert-edge binary")
    ap.add_argument("--dev", type=Path, default=REPO / "tests/data/sst2/dev.tsv")
    ap.add_argument("--ids", type=Path, default=REPO / "tests/data/spiece/sst2_dev.albert_ids.txt")
    ap.add_argument("--text", action="store_true", help="pass sentences, not ids (blob tokenizer section)")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--hf", type=Path, help="also run this Hugging Face checkpoint (fp32, PyTorch) on the same ids")
    ap.add_argument("--limit", type=int, default=0, help="first N rows only (a smoke test)")
    ap.add_argument("--json-out", type=Path, help="write the per-row predictions and the summary here")
    args = ap.parse_args()

    rows = []
    with open(args.dev, encoding="utf-8") as f:
        f.readline()
        for line in f:
            line = line.rstrip("\n")
            if line:
                s, l = line.split("\t")
                rows.append((s.strip(), int(l)))
    ids = [l.strip() for l in open(args.ids, encoding="utf-8")]
    if len(ids) != len(rows):
        sys.exit(f"{args.ids} has {len(ids)} lines, {args.dev} {len(rows)} rows")

    if args.limit:
        rows, ids = rows[: args.limit], ids[: args.limit]
    precisions = args.precisions.split(",")
    preds = {p: [] for p in precisions}
    t0 = time.time()
    for i, ((sentence, _), row_ids) in enumerate(zip(rows, ids)):
        for p in precisions:
            cmd = [args.cli, "classify", str(args.blob), "--json", "--precision", p]
            cmd += [sentence] if args.text else ["--ids", row_ids]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"row {i}: {' '.join(cmd)} failed: {r.stderr.strip()}")
            out = json.loads(r.stdout)
            probs = out["probabilities"]
            preds[p].append(max(range(len(probs)), key=lambda k: probs[k]))
    if args.hf:
        preds["hf"] = hf_predictions(args.hf, ids)
        precisions = ["hf"] + precisions
    labels = [l for _, l in rows]
    summary = {"blob": args.blob.name, "rows": len(rows), "inputs": "text" if args.text else "ids",
               "seconds": round(time.time() - t0, 1)}
    for p in precisions:
        correct = sum(int(a == b) for a, b in zip(preds[p], labels))
        summary[f"{p}_accuracy"] = round(correct / len(rows), 5)
        summary[f"{p}_correct"] = correct
    for a, b in (("int8", "fp32"), ("fp32", "hf"), ("int8", "hf")):
        if a in preds and b in preds:
            agree = sum(int(x == y) for x, y in zip(preds[a], preds[b]))
            summary[f"{a}_{b}_agreement"] = round(agree / len(rows), 5)
            summary[f"{a}_{b}_agree_rows"] = agree
    print(json.dumps(summary, indent=1))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"summary": summary, "predictions": preds}, f)


if __name__ == "__main__":
    main()
