#!/usr/bin/env python3
"""Simulation, not the engine: candidate int8 contracts as fake quantization in an fp32 ALBERT forward, scored
against Hugging Face fp32 on the panel's SST-2 dev ids (run after `panel.py measure`, which records the ids, the HF
logits and ONNX Runtime int8's).

Common to every variant: weights int8 round-to-nearest, one scale per output row (max|w| / 127; NOT GPTQ, which the
engine uses); embedding tables int8 per row; residual stream, LayerNorm, softmax, GELU, tanh in f32;
`embedding_hidden_mapping_in` on the f32 embedding row (as the engine). Rounding half away from zero, -127..=127.

  row          every linear layer's input int8 with one scale per token row (dynamic); attention products f32
  row+smooth   `row`, with SmoothQuant-style per-channel smoothing (alpha 0.5) on the shared layer's four input
               sites (Q/K/V input, dense input, FFN input, FFN-output input): s_j = sqrt(max|x_j| / max|W_:j|),
               x / s quantized, W * s quantized; max|x_j| from the converter's 256 built-in SST-2 train sentences
               over all passes of the shared layer. (ALBERT is post-LN: the LayerNorm output also feeds the
               residual, so 1/s is applied where the row is quantized, not folded into the LayerNorm.)
  row+smooth+att8  `row+smooth` with int8 attention products: Q, K, V int8 with one scale per token row and head,
               probabilities u8 (0..=255) with one scale per row
  row+side     `row`, plus a side path for outlier channels: at each of the shared layer's four sites the input
               channels whose calibrated max|x_j| exceeds 6x the median channel's stay f32, their weight columns
               f32 too (out of the row's scale); the other channels as `row`
  weights-only f32 activations everywhere over the round-to-nearest int8 weights (the weights' share)

Usage: python tools/panel/simulate.py [--cli target/release/albert-edge] [--split tuning|held-out|all]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import panel  # noqa: E402

CALIB = panel.REPO / "tools" / "albert-edge-cli" / "data" / "calibration-sst2-train-256.txt"
P = "albert.encoder.albert_layer_groups.0.albert_layers.0."
SITES = ("qkv", "dense", "ffn", "ffn_output")


def fq(x: torch.Tensor, qmax: float = 127.0) -> torch.Tensor:
    """Fake-quantize along the last axis, one symmetric scale per row, round half away from zero."""
    m = x.abs().amax(-1, keepdim=True)
    s = torch.where(m > 0, m / qmax, torch.ones_like(m))
    q = torch.sign(x) * torch.floor(x.abs() / s + 0.5)
    return q.clamp(-qmax, qmax) * s


def fq_u8(p: torch.Tensor) -> torch.Tensor:
    m = p.amax(-1, keepdim=True)
    s = torch.where(m > 0, m / 255.0, torch.ones_like(m))
    return torch.floor(p / s + 0.5).clamp(0, 255) * s


class Albert:
    def __init__(self, hf_dir: Path):
        from safetensors.torch import load_file

        self.cfg = json.loads((hf_dir / "config.json").read_text())
        self.w = {k: v.float() for k, v in load_file(hf_dir / "model.safetensors").items()}
        self.heads = self.cfg["num_attention_heads"]
        self.act = self.cfg["hidden_act"]
        self.set_variant(None)

    def lin(self, name):
        return self.w[name + ".weight"], self.w[name + ".bias"]

    def set_variant(self, variant, smooth=None, side=None):
        """variant None: plain fp32 (checks the forward against HF)."""
        self.variant = variant
        self.smooth = smooth or {}
        self.side = side or {}
        w = self.w
        self.emb = {}
        for k in ("word", "position", "token_type"):
            t = w[f"albert.embeddings.{k}_embeddings.weight"]
            self.emb[k] = fq(t) if variant else t
        self.qw = {}
        for name, (site, rows) in {
            "qkv": ("qkv", [P + "attention.query", P + "attention.key", P + "attention.value"]),
            "dense": ("dense", [P + "attention.dense"]), "ffn": ("ffn", [P + "ffn"]),
            "ffn_output": ("ffn_output", [P + "ffn_output"]),
            "pooler": (None, ["albert.pooler"]), "classifier": (None, ["classifier"]),
            "mapping_in": (None, ["albert.encoder.embedding_hidden_mapping_in"]),
        }.items():
            W = torch.cat([w[r + ".weight"] for r in rows])
            b = torch.cat([w[r + ".bias"] for r in rows])
            s = self.smooth.get(site)
            if s is not None:
                W = W * s
            keep = self.side.get(site)
            if variant and keep is not None:  # outlier columns f32, the rest int8 with their own row scales
                Wq = W.clone()
                Wq[:, ~keep] = fq(W[:, ~keep])
                self.qw[name] = (Wq, b, s)
            else:
                self.qw[name] = (fq(W) if variant else W, b, s)

    def linear(self, name, x, observe=None):
        W, b, s = self.qw[name]
        if observe is not None:
            observe(name, x)
        if s is not None:
            x = x / s
        keep = self.side.get(name)
        if self.variant and self.variant != "weights-only" and name != "mapping_in":
            if keep is not None:
                x = x.clone()
                x[..., ~keep] = fq(x[..., ~keep])
            else:
                x = fq(x)
        return x @ W.T + b

    def ln(self, x, name):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"],
                                              eps=self.cfg["layer_norm_eps"])

    def gelu(self, x):
        if self.act == "gelu_new":
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))
        return torch.nn.functional.gelu(x)

    @torch.no_grad()
    def forward(self, ids, observe=None):
        n = len(ids)
        e = self.emb["word"][ids] + self.emb["position"][:n] + self.emb["token_type"][0]
        h = self.linear("mapping_in", self.ln(e, "albert.embeddings.LayerNorm"))
        H, nh = h.shape[-1], self.heads
        d = H // nh
        att8 = self.variant == "row+smooth+att8"
        for _ in range(self.cfg["num_hidden_layers"]):
            qkv = self.linear("qkv", h, observe).view(n, 3, nh, d).permute(1, 2, 0, 3)  # (3, heads, n, d)
            q, k, v = qkv[0], qkv[1], qkv[2]
            if att8:
                q, k, v = fq(q), fq(k), fq(v)
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), -1)
            if att8:
                p = fq_u8(p)
            ctx = (p @ v).permute(1, 0, 2).reshape(n, H)
            a = self.ln(h + self.linear("dense", ctx, observe), P + "attention.LayerNorm")
            f = self.gelu(self.linear("ffn", a, observe))
            h = self.ln(a + self.linear("ffn_output", f, observe), P + "full_layer_layer_norm")
        pooled = torch.tanh(self.linear("pooler", h[:1]))
        return self.linear("classifier", pooled)[0]


def calibrate_smoothing(model: Albert, calib_ids, alpha=0.5):
    amax = {}

    def observe(name, x):
        m = x.abs().amax(0)
        amax[name] = torch.maximum(amax[name], m) if name in amax else m

    model.set_variant(None)
    for ids in calib_ids:
        model.forward(ids, observe)
    side = {}
    for site in SITES:
        side[site] = amax[site] > 6 * amax[site].median()
    smooth = {}
    for site in SITES:
        wmax = model.qw[site][0].abs().amax(0).clamp_min(1e-8)
        s = amax[site].clamp_min(1e-8).pow(alpha) / wmax.pow(1 - alpha)
        smooth[site] = s.clamp_min(1e-5)
    return smooth, side


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=panel.REPO / "target" / "panel")
    ap.add_argument("--cli", type=Path, default=panel.REPO / "target" / "release" / "albert-edge")
    ap.add_argument("--split", choices=["tuning", "held-out", "all"], default="tuning")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    variants = ["weights-only", "row", "row+smooth", "row+smooth+att8", "row+side"]
    results = []
    for m in panel.MEMBERS:
        if args.split != "all" and m["split"] != args.split:
            continue
        work = args.work
        z = np.load(work / "logits" / f"{m['name']}.npz", allow_pickle=True)
        hf, ort = z["hf"], z["ort_int8"]
        ids = [[int(x) for x in l.split()] for l in (work / "logits" / f"{m['name']}.ids.txt").read_text().splitlines()]
        calib_out = subprocess.run([str(args.cli), "tokenize", str(panel.blob_path(work, m["name"])), "--input",
                                    str(CALIB)], check=True, capture_output=True, text=True).stdout
        calib = [[int(x) for x in l.split()] for l in calib_out.splitlines()]
        model = Albert(panel.ckpt_dir(work, m))
        model.set_variant(None)
        check = np.stack([model.forward(r).numpy() for r in ids[:50]])
        fwd_err = float(np.abs(check - hf[:50]).max())
        smooth, side = calibrate_smoothing(model, calib)
        ort_d = float(np.abs(ort - hf).mean(1).mean())
        row = dict(name=m["name"], split=m["split"], forward_check_max_abs=fwd_err,
                   ort=dict(agreement=float((ort.argmax(1) == hf.argmax(1)).mean()), mean_abs_delta=ort_d),
                   engine=panel.compare(z["ours_int8"], hf))
        for v in variants:
            model.set_variant(v, smooth if "smooth" in v else None, side if "side" in v else None)
            out = np.stack([model.forward(r).numpy() for r in ids])
            c = panel.compare(out, hf)
            c["ratio"] = c["mean_abs_delta"] / ort_d
            row[v] = c
        row["side_channels"] = {k: int(v.sum()) for k, v in side.items()}
        results.append(row)
        print(json.dumps(dict(name=row["name"], fwd=round(fwd_err, 6), **{
            k: f"{100 * row[k]['agreement']:.1f} % {row[k]['mean_abs_delta']:.4f}"
            + (f" {row[k]['ratio']:.2f}x" if "ratio" in row[k] else "") for k in ["ort", "engine", *variants]})),
            flush=True)
    for v in variants:
        print(f"mean ratio {v}: {np.mean([r[v]['ratio'] for r in results]):.2f}x")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
