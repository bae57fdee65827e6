#!/usr/bin/env python3
"""The fidelity panel: albert-edge's int8 engine against ONNX Runtime dynamic int8, both measured against Hugging
Face fp32, on checkpoints of several shapes, vocabularies and activation profiles, on SST-2 dev sentences (never
used for calibration: the converter calibrates on built-in SST-2 *train* sentences).

Steps (run in order; each is one command, see tools/panel/README.md):

  generate  train the 8k SentencePiece model on SST-2 train text, build the random checkpoints   (~1 min)
  convert   convert every member with the albert-edge CLI (default settings: GPTQ, default blocks)
  measure   tokenize SST-2 dev with each blob's tokenizer, then logits from HF fp32, ONNX Runtime fp32 (a check)
            and dynamic int8, the engine's int8 and its fp32 reference on the same blob
  report    per-member figures against the goal thresholds; writes tools/panel/results.json

Everything generated lives under --work (default target/panel/, ignored by git). Seeded and single-threaded:
two runs give the same checkpoints and figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "fixtures"))

DEV_TSV = REPO / "tests" / "data" / "sst2" / "dev.tsv"
ALBERT_SPM = REPO / "tests" / "data" / "spiece" / "30k-clean.model"
MCU_HF = REPO / "models" / "sst2-albert-mcu-hf"
MCU_BLOB = REPO / "models" / "sst2-albert-mcu.blob"
RESULTS = Path(__file__).resolve().parent / "results.json"

SPM_SEED_ROWS = None  # all of SST-2 train
CLASSIFIER_CALIB_ROWS = range(10000, 10256)  # SST-2 train rows that centre the random classifiers' logits

# --------------------------------------------------------------------------------------------------------------------
# the members, and the split (fixed before any tuning: tune on "tuning", report "held-out" only after)
# --------------------------------------------------------------------------------------------------------------------
#
# vocab: "albert-30k" (tests/data/spiece/30k-clean.model) or "sst2-8k" (trained by `generate` on SST-2 train).
# outliers: (channels, lowest gain, highest gain): that many hidden channels, drawn with the member's seed, have the
# shared layer's two LayerNorm weights (attention.LayerNorm, full_layer_layer_norm) multiplied by a gain drawn
# uniformly in [lowest, highest]: the large fixed channels of pretrained encoders' residual streams.

MEMBERS = [
    dict(name="p1-h64-l2", split="tuning", seed=7101, vocab="albert-30k", E=32, H=64, heads=2, I=256, L=2,
         act="gelu_new", labels=2, outliers=None),
    dict(name="p2-h128-l6-8k-out", split="tuning", seed=7102, vocab="sst2-8k", E=64, H=128, heads=4, I=512, L=6,
         act="gelu", labels=2, outliers=(3, 8.0, 20.0)),
    dict(name="p3-h256-l4-out", split="tuning", seed=7103, vocab="albert-30k", E=128, H=256, heads=8, I=1024, L=4,
         act="gelu_new", labels=2, outliers=(4, 8.0, 20.0)),
    dict(name="p4-h128-l12-8k", split="tuning", seed=7104, vocab="sst2-8k", E=128, H=128, heads=2, I=384, L=12,
         act="gelu_new", labels=2, outliers=None),
    dict(name="p5-h96-l3-out", split="held-out", seed=7105, vocab="albert-30k", E=48, H=96, heads=3, I=384, L=3,
         act="gelu", labels=2, outliers=(2, 8.0, 20.0)),
    dict(name="p6-h256-l8-8k-out", split="held-out", seed=7106, vocab="sst2-8k", E=64, H=256, heads=4, I=512, L=8,
         act="gelu", labels=2, outliers=(5, 8.0, 20.0)),
    dict(name="p7-h192-l2-3lab", split="held-out", seed=7107, vocab="albert-30k", E=96, H=192, heads=6, I=768, L=2,
         act="gelu_new", labels=3, outliers=None),
    # the shipped, trained MCU model (fp32 checkpoint committed); converted with the same defaults as the others
    dict(name="sst2-albert-mcu", split="held-out", shipped=True, dir=MCU_HF),
]
# The shipped MCU blob itself is measured as an extra row, not a member.
EXTRA_BLOBS = [dict(name="sst2-albert-mcu (shipped blob)", of="sst2-albert-mcu", blob=MCU_BLOB)]


def member(name: str) -> dict:
    return next(m for m in MEMBERS if m["name"] == name)


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------


def read_tsv(path: Path) -> list[tuple[str, int]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(r)
        si, li = header.index("sentence"), header.index("label")
        for row in r:
            rows.append((row[si].strip(), int(row[li])))
    return rows


def ckpt_dir(work: Path, m: dict) -> Path:
    return m["dir"] if m.get("shipped") else work / "ckpt" / m["name"]


def blob_path(work: Path, name: str) -> Path:
    return work / "blobs" / f"{name}.blob"


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def setup_torch():
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    return torch


# --------------------------------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------------------------------


def train_spm(train_rows: list[tuple[str, int]], out: Path) -> None:
    """An 8k unigram model on SST-2 train text, ALBERT's special ids (pad 0, unk 1, [CLS] 2, [SEP] 3, [MASK] 4).
    The text is lower-cased first, as ALBERT's tokenizer lower-cases before SentencePiece."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([s.lower() for s, _ in train_rows]),
        model_prefix=str(out.with_suffix("")),
        model_type="unigram",
        vocab_size=8000,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        character_coverage=0.9995,
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        minloglevel=2,
    )
    out.with_suffix(".vocab").unlink()


def build_member(m: dict, spm_path: Path, calib_sentences: list[str], out: Path) -> dict:
    torch = setup_torch()
    import sentencepiece as spm
    from make_fixtures import TARGET_LOGIT_STD, calibrate_classifier, randomise  # noqa: F401
    from transformers import AlbertConfig, AlbertForSequenceClassification

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))
    labels = ["negative", "positive"] if m["labels"] == 2 else ["negative", "neutral", "positive"]
    cfg = AlbertConfig(
        vocab_size=sp.get_piece_size(), embedding_size=m["E"], hidden_size=m["H"], num_hidden_layers=m["L"],
        num_hidden_groups=1, num_attention_heads=m["heads"], intermediate_size=m["I"], inner_group_num=1,
        hidden_act=m["act"], hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0,
        max_position_embeddings=128, type_vocab_size=2, initializer_range=0.02, layer_norm_eps=1e-12,
        position_embedding_type="absolute", pad_token_id=0, bos_token_id=2, eos_token_id=3,
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        architectures=["AlbertForSequenceClassification"], attn_implementation="eager",
    )
    torch.manual_seed(m["seed"])
    model = AlbertForSequenceClassification(cfg).eval()
    gen = torch.Generator().manual_seed(m["seed"])
    randomise(model, dict(qk_gain=2.5), gen)  # the fixtures' initialisation: peaked attention, varied logits
    info = dict(vocab_size=cfg.vocab_size)
    if m["outliers"]:
        k, lo, hi = m["outliers"]
        rng = np.random.default_rng(m["seed"])
        channels = sorted(int(c) for c in rng.choice(m["H"], size=k, replace=False))
        gains = [float(g) for g in rng.uniform(lo, hi, size=k)]
        prefix = "albert.encoder.albert_layer_groups.0.albert_layers.0."
        params = dict(model.named_parameters())
        with torch.no_grad():
            for ln in ("attention.LayerNorm.weight", "full_layer_layer_norm.weight"):
                w = params[prefix + ln]
                for c, g in zip(channels, gains):
                    w[c] *= g
        info["outlier_channels"] = channels
        info["outlier_gains"] = [round(g, 3) for g in gains]
    rows = []
    for s in calib_sentences:
        ids = [2] + sp.encode(s.lower())[:120] + [3]
        rows.append((ids, [0] * len(ids)))
    calibrate_classifier(model, rows)  # logit spread ~2 across sentences, every class's mean centred at 0
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copyfile(spm_path, out / "spiece.model")
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return info


def cmd_generate(args) -> None:
    work = args.work
    train = read_tsv(args.train)
    print(f"SST-2 train: {len(train)} rows", flush=True)
    spm_dir = work / "spiece"
    spm_dir.mkdir(parents=True, exist_ok=True)
    spm8k = spm_dir / "sst2-8k.model"
    train_spm(train, spm8k)
    print(f"trained {spm8k.name}", flush=True)
    calib = [train[i][0] for i in CLASSIFIER_CALIB_ROWS]
    manifest = {}
    for m in MEMBERS:
        if m.get("shipped") or (args.only and m["name"] != args.only):
            continue
        spm_path = ALBERT_SPM if m["vocab"] == "albert-30k" else spm8k
        info = build_member(m, spm_path, calib, ckpt_dir(work, m))
        manifest[m["name"]] = info
        print(f"  {m['name']}: {json.dumps(info)}", flush=True)
    (work / "ckpt" / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


# --------------------------------------------------------------------------------------------------------------------
# convert
# --------------------------------------------------------------------------------------------------------------------


def cmd_convert(args) -> None:
    (args.work / "blobs").mkdir(parents=True, exist_ok=True)
    for m in MEMBERS:
        if args.only and m["name"] != args.only:
            continue
        run([args.cli, "convert", ckpt_dir(args.work, m), "-o", blob_path(args.work, m["name"])])
        # fp32 weights: checks that the engine's f32 path reproduces Hugging Face on the same ids
        run([args.cli, "convert", ckpt_dir(args.work, m), "-o", blob_path(args.work, m["name"] + ".fp32"),
             "--weights", "fp32"], stdout=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------------------------------
# measure
# --------------------------------------------------------------------------------------------------------------------


def hf_logits(hf_dir: Path, id_rows: list[list[int]]):
    torch = setup_torch()
    from transformers import AlbertForSequenceClassification

    model = AlbertForSequenceClassification.from_pretrained(hf_dir, attn_implementation="eager").float().eval()
    out = []
    with torch.no_grad():
        for ids in id_rows:
            t = torch.tensor([ids])
            out.append(model(input_ids=t, attention_mask=torch.ones_like(t),
                             token_type_ids=torch.zeros_like(t)).logits[0].numpy())
    return np.stack(out).astype(np.float32), model


def ort_logits_all(model, id_rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray, dict]:
    """ONNX Runtime on the fixtures' export: fp32, and quantize_dynamic(QInt8) after the shared layer's weight views
    are folded into initializers (make_fixtures.quantize_int8, which checks every shared-layer MatMul is int8)."""
    setup_torch()
    from make_fixtures import export_onnx, ort_logits, ort_session, quantize_int8

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        export_onnx(model, tmp / "model.onnx")
        q_path, qinfo = quantize_int8(tmp / "model.onnx", tmp)
        fs, qs = ort_session(tmp / "model.onnx"), ort_session(q_path)
        fp, q = [], []
        for ids in id_rows:
            ones, zeros = [[1] * len(ids)], [[0] * len(ids)]
            fp.append(ort_logits(fs, [ids], ones, zeros)[0])
            q.append(ort_logits(qs, [ids], ones, zeros)[0])
    return np.stack(fp).astype(np.float32), np.stack(q).astype(np.float32), qinfo["quantized_ops"]


def engine_logits(tool: Path, blob: Path, ids_file: Path) -> tuple[np.ndarray | None, np.ndarray]:
    out = subprocess.run([str(tool), str(blob), str(ids_file)], check=True, capture_output=True, text=True).stdout
    i8, f32 = [], []
    for line in out.splitlines():
        a, b = line.split("\t")
        i8.append(None if a == "-" else [float(x) for x in a.split()])
        f32.append([float(x) for x in b.split()])
    int8 = None if i8[0] is None else np.array(i8, dtype=np.float32)
    return int8, np.array(f32, dtype=np.float32)


def tokenize(cli: Path, blob: Path, sentences_file: Path, ids_file: Path) -> list[list[int]]:
    out = subprocess.run([str(cli), "tokenize", str(blob), "--input", str(sentences_file)], check=True,
                         capture_output=True, text=True).stdout
    ids_file.write_text(out)
    return [[int(x) for x in line.split()] for line in out.splitlines()]


def cmd_measure(args) -> None:
    work = args.work
    dev = read_tsv(DEV_TSV)
    (work / "logits").mkdir(parents=True, exist_ok=True)
    sentences = work / "logits" / "dev_sentences.txt"
    sentences.write_text("".join(s + "\n" for s, _ in dev))
    labels = np.array([l for _, l in dev])
    targets = [(m["name"], m["name"], blob_path(work, m["name"])) for m in MEMBERS]
    targets += [(e["name"], e["of"], e["blob"]) for e in EXTRA_BLOBS]
    for name, of, blob in targets:
        if args.only and of != args.only:
            continue
        m = member(of)
        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        ids_file = work / "logits" / f"{slug}.ids.txt"
        npz = work / "logits" / f"{slug}.npz"
        rows = tokenize(args.cli, blob, sentences, ids_file)
        assert len(rows) == len(dev)
        if args.engine_only:  # keep the recorded HF and ONNX Runtime logits (same ids), rerun the engine only
            z = dict(np.load(npz, allow_pickle=True))
            assert z["ids_crc"] == zlib.crc32(ids_file.read_bytes()), "the tokenization changed: run measure in full"
        else:
            hf, model = hf_logits(ckpt_dir(work, m), rows)
            ort_fp, ort_q, qops = ort_logits_all(model, rows)
            z = dict(hf=hf, ort_fp32=ort_fp, ort_int8=ort_q, labels=labels, ids_crc=zlib.crc32(ids_file.read_bytes()))
            print(f"  {name}: n={len(rows)}, tokens/row {np.mean([len(r) for r in rows]):.1f}, "
                  f"ORT fp32 vs HF max|d| {np.abs(ort_fp - hf).max():.2g}, ORT int8 ops {qops}", flush=True)
        z["ours_int8"], z["ours_fp32_on_int8"] = engine_logits(args.logits_tool, blob, ids_file)
        if name == of:
            z["ours_fp32_blob"] = engine_logits(args.logits_tool, blob_path(work, of + ".fp32"), ids_file)[1]
        np.savez(npz, **z)


# --------------------------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------------------------


def compare(a: np.ndarray, ref: np.ndarray) -> dict:
    return dict(agreement=float((a.argmax(1) == ref.argmax(1)).mean()),
                agree_rows=int((a.argmax(1) == ref.argmax(1)).sum()),
                mean_abs_delta=float(np.abs(a - ref).mean(1).mean()))


def cmd_report(args) -> None:
    work = args.work
    manifest_path = work / "ckpt" / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    rows = []
    names = [(m["name"], m["name"]) for m in MEMBERS] + [(e["name"], e["of"]) for e in EXTRA_BLOBS]
    for name, of in names:
        slug = name.replace(" ", "_").replace("(", "").replace(")", "")
        z = np.load(work / "logits" / f"{slug}.npz", allow_pickle=True)
        hf = z["hf"]
        m = member(of)
        r = dict(name=name, split=m["split"], member=(name == of), n=int(len(hf)),
                 hf_accuracy=float((hf.argmax(1) == z["labels"]).mean()),
                 ort_fp32_max_abs_delta=float(np.abs(z["ort_fp32"] - hf).max()),
                 ort_int8=compare(z["ort_int8"], hf), ours_int8=compare(z["ours_int8"], hf),
                 ours_fp32_on_int8_blob=compare(z["ours_fp32_on_int8"], hf),
                 hf_logit_std=float(hf.std(0).mean()))
        if "ours_fp32_blob" in z:
            r["ours_fp32_blob_max_abs_delta"] = float(np.abs(z["ours_fp32_blob"] - hf).max())
        if not m.get("shipped"):
            r["shape"] = dict(E=m["E"], H=m["H"], heads=m["heads"], I=m["I"], L=m["L"], act=m["act"],
                              vocab=m["vocab"], labels=m["labels"], seed=m["seed"])
            r.update({k: v for k, v in manifest.get(name, {}).items() if k.startswith("outlier")})
        ort, ours = r["ort_int8"], r["ours_int8"]
        r["ratio_mean_abs_delta"] = ours["mean_abs_delta"] / ort["mean_abs_delta"]
        r["meets_agreement"] = ours["agreement"] >= max(ort["agreement"], 0.97)
        r["meets_delta_0_75"] = r["ratio_mean_abs_delta"] <= 0.75
        rows.append(r)
    members = [r for r in rows if r["member"]]
    summary = dict(
        mean_ratio_all=float(np.mean([r["ratio_mean_abs_delta"] for r in members])),
        mean_ratio_tuning=float(np.mean([r["ratio_mean_abs_delta"] for r in members if r["split"] == "tuning"])),
        mean_ratio_held_out=float(np.mean([r["ratio_mean_abs_delta"] for r in members if r["split"] == "held-out"])),
        members_meeting_both=sum(r["meets_agreement"] and r["meets_delta_0_75"] for r in members),
        members=len(members),
    )
    versions = {}
    try:
        import onnxruntime, torch, transformers

        versions = dict(torch=torch.__version__, transformers=transformers.__version__,
                        onnxruntime=onnxruntime.__version__)
    except ImportError:
        pass
    commit = args.engine_commit
    if commit is None:  # the repository's HEAD, marked when the engine or the converter has uncommitted changes
        git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
        commit = git("rev-parse", "--short=7", "HEAD")
        if git("status", "--porcelain", "--", "src", "tools/albert-edge-cli/src"):
            commit += " (with uncommitted changes)"
    out = dict(engine_commit=commit or None, versions=versions, dev="SST-2 dev, 872 rows", summary=summary,
               rows=rows)
    dest = args.results or RESULTS
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(rows, summary))
    print(f"wrote {dest}")


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(rows: list[dict], summary: dict) -> str:
    lines = [
        "| member | split | ORT int8 agree | ORT int8 mean \\|Δ\\| | ours int8 agree | ours int8 mean \\|Δ\\| "
        "| ours / ORT | ours fp32-on-int8 agree | ours fp32-on-int8 mean \\|Δ\\| | goal met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        o, q, f = r["ort_int8"], r["ours_int8"], r["ours_fp32_on_int8_blob"]
        met = ("yes" if r["meets_agreement"] and r["meets_delta_0_75"] else
               "no (" + ", ".join(x for x, ok in (("agreement", r["meets_agreement"]),
                                                   ("|Δ|", r["meets_delta_0_75"])) if not ok) + ")")
        split = r["split"] if r["member"] else "(extra)"
        lines.append(
            f"| {r['name']} | {split} | {pct(o['agreement'])} | {o['mean_abs_delta']:.4f} | {pct(q['agreement'])} "
            f"| {q['mean_abs_delta']:.4f} | {r['ratio_mean_abs_delta']:.2f}x | {pct(f['agreement'])} "
            f"| {f['mean_abs_delta']:.4f} | {met} |")
    lines.append("")
    lines.append(f"Mean of ours / ORT over the {summary['members']} members: {summary['mean_ratio_all']:.2f}x "
                 f"(tuning {summary['mean_ratio_tuning']:.2f}x, held-out {summary['mean_ratio_held_out']:.2f}x); "
                 f"goal ≤ 0.50x. Members meeting both per-member goals: {summary['members_meeting_both']}"
                 f"/{summary['members']}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["generate", "convert", "measure", "report"])
    ap.add_argument("--work", type=Path, default=REPO / "target" / "panel", help="generated files (default target/panel)")
    ap.add_argument("--train", type=Path, help="generate: SST-2 train.tsv (sentence<TAB>label, with header)")
    ap.add_argument("--only", help="one member only")
    ap.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "albert-edge")
    ap.add_argument("--logits-tool", type=Path,
                    default=REPO / "target" / "panel" / "cargo" / "release" / "albert-edge-panel-logits")
    ap.add_argument("--engine-only", action="store_true",
                    help="measure: rerun only the engine, keeping the recorded Hugging Face and ONNX Runtime logits")
    ap.add_argument("--engine-commit", help="report: the commit the engine and CLI were built from (default HEAD)")
    ap.add_argument("--results", type=Path, help="report: where to write the JSON (default tools/panel/results.json)")
    args = ap.parse_args()
    if args.step == "generate":
        if not args.train:
            ap.error("generate needs --train PATH/TO/SST-2/train.tsv")
        cmd_generate(args)
    elif args.step == "convert":
        cmd_convert(args)
    elif args.step == "measure":
        cmd_measure(args)
    else:
        cmd_report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
