#!/usr/bin/env python3
"""Train an ALBERT sentence classifier on GLUE SST-2 from scratch (random initialisation, no pretrained weights).

The vocabulary is ALBERT's own 30k SentencePiece model (tests/data/spiece/30k-clean.model), tokenised with
transformers' slow, sentencepiece-backed `AlbertTokenizer` -- the tokenizer albert-edge reproduces on device. The
model is an ordinary `AlbertForSequenceClassification` (one shared layer applied N times), trained on the SST-2 train
split; the checkpoint with the best accuracy on the dev split is kept. Note: because dev is used to select the
checkpoint, the reported dev accuracy is a (slightly optimistic) selection accuracy, not a held-out test score.

Optionally (--mlm-epochs N) the encoder is first warmed up with masked-language modelling on the *training*
sentences only (no extra data), then fine-tuned for classification.

Distillation (--transfer FILE, written by tools/train/teacher.py): the student learns a fine-tuned teacher's logits on
a transfer set (SST-2 train plus augmented sentences) with a mean-squared error on the logits, plus cross-entropy
with the gold label on the rows that are SST-2 train sentences (--gold-weight). --init-embeddings DIR starts the
word embeddings from the teacher's: each SentencePiece piece's text is split by the teacher's WordPiece tokenizer,
its WordPiece vectors averaged, and the table projected onto its top E principal directions.

Output directory (`--out`): config.json, model.safetensors, spiece.model + tokenizer files (a Hugging Face
checkpoint directory that `albert-edge convert` reads), and train_log.json (config, arguments, per-evaluation dev
accuracy and train loss, timings).

CPU only. Reproducible: fixed seed, deterministic data order, deterministic torch algorithms.

Example (the two models in models/README.md):
    python tools/train/train_sst2.py --preset pi  --train path/to/SST-2/train.tsv --out models/sst2-albert-pi-hf
    python tools/train/train_sst2.py --preset mcu --train path/to/SST-2/train.tsv --out models/sst2-albert-mcu-hf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path

# On a shared, busy CPU, OpenMP threads that spin while waiting only steal time from each other.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import torch.nn.functional as F
from transformers import AlbertConfig, AlbertForSequenceClassification, AlbertTokenizer

REPO = Path(__file__).resolve().parents[2]

# Model shapes. `pi`: accuracy first (Raspberry Pi class). `mcu`: blob <= 2 MB with the tokenizer section
# (about 1.24 MB for the 30k vocabulary) and small int8 scratch (microcontroller class); after the tokenizer, the
# 30000 x E int8 word-embedding table plus 30000 f32 row scales dominates its size, hence E = 16.
PRESETS = {
    "pi": dict(embedding_size=128, hidden_size=256, num_attention_heads=4, intermediate_size=1024,
               num_hidden_layers=4, max_position_embeddings=128),
    "mcu": dict(embedding_size=16, hidden_size=128, num_attention_heads=4, intermediate_size=192,
                num_hidden_layers=4, max_position_embeddings=128),
}

LABELS = {0: "negative", 1: "positive"}


def read_tsv(path: Path) -> list[tuple[str, int]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:2] != ["sentence", "label"]:
            sys.exit(f"{path}: expected header 'sentence<TAB>label', got {header!r}")
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            sentence, label = line.split("\t")
            rows.append((sentence.strip(), int(label)))  # GLUE leaves one trailing space on every sentence
    return rows


def encode(tok: AlbertTokenizer, rows, max_len: int):
    out = []
    for sentence, label in rows:
        ids = tok(sentence, truncation=True, max_length=max_len)["input_ids"]
        out.append((ids, label))
    return out


def read_transfer(path: Path) -> list[tuple[str, float, float]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != ["sentence", "logit_negative", "logit_positive"]:
            sys.exit(f"{path}: expected header 'sentence<TAB>logit_negative<TAB>logit_positive', got {header!r}")
        for line in f:
            sentence, a, b = line.rstrip("\n").split("\t")
            rows.append((sentence, float(a), float(b)))
    return rows


def distil_collate(batch, pad_id: int):
    """`collate` for transfer rows `(ids, gold or -1, teacher logits)`."""
    input_ids, mask, labels = collate([(ids, y) for ids, y, _ in batch], pad_id)
    return input_ids, mask, labels, torch.tensor([t for _, _, t in batch], dtype=torch.float32)


@torch.no_grad()
def teacher_embeddings(model, tok: AlbertTokenizer, teacher: Path):
    """Word embeddings from the teacher's: piece text -> WordPiece ids -> mean vector, then PCA to E columns,
    scaled to the initialiser's standard deviation. Pieces the teacher cannot spell keep their random rows."""
    from transformers import AutoModel, AutoTokenizer

    wp = AutoTokenizer.from_pretrained(teacher)
    table = AutoModel.from_pretrained(teacher).get_input_embeddings().weight.detach().float()
    emb = model.albert.embeddings.word_embeddings.weight
    vocab, e = emb.shape
    vecs = torch.zeros(vocab, table.shape[1])
    known = torch.zeros(vocab, dtype=torch.bool)
    special = set(tok.all_special_ids)
    for i in range(vocab):
        if i in special:
            continue
        text = tok.convert_ids_to_tokens(i).replace("\u2581", " ").strip()
        ids = wp(text, add_special_tokens=False)["input_ids"] if text else []
        ids = [j for j in ids if j != wp.unk_token_id]
        if ids:
            vecs[i] = table[ids].mean(0)
            known[i] = True
    x = vecs[known] - vecs[known].mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    proj = x @ v[:e].T
    proj = proj * (model.config.initializer_range / proj.std())
    emb[known] = proj
    return int(known.sum())


def collate(batch, pad_id: int):
    n = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, (ids, _) in enumerate(batch):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    labels = torch.tensor([label for _, label in batch], dtype=torch.long)
    return input_ids, mask, labels


def bucketed_batches(data, batch_size: int, rng: random.Random):
    """Shuffle, then sort by length inside chunks of 50 batches, cut into batches and shuffle the batches:
    little padding, still random; fully determined by `rng`."""
    order = list(range(len(data)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(data[i][0]))
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))  # cosine to 0

    return f


def make_optimizer(model, lr: float, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "embeddings" in name else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )


@torch.no_grad()
def evaluate(model, data, pad_id: int, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    for j in range(0, len(order), batch_size):
        ids, mask, labels = collate([data[i] for i in order[j : j + batch_size]], pad_id)
        logits = model(input_ids=ids, attention_mask=mask).logits
        correct += (logits.argmax(-1) == labels).sum().item()
    model.train()
    return correct / len(data)


def mlm_warmup(model, train, tok, args, log):
    """Masked-LM warm-up of `model.albert` on the training sentences (BERT 80/10/10 masking of 15 % of pieces).
    The prediction head (dense + gelu + LayerNorm + decoder tied to the word embeddings) is thrown away after."""
    cfg = model.config
    head = torch.nn.Sequential(
        torch.nn.Linear(cfg.hidden_size, cfg.embedding_size),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.LayerNorm(cfg.embedding_size, eps=cfg.layer_norm_eps),
    )
    bias = torch.nn.Parameter(torch.zeros(cfg.vocab_size))
    emb = model.albert.embeddings.word_embeddings
    params = list(model.albert.parameters()) + list(head.parameters()) + [bias]
    opt = torch.optim.AdamW(params, lr=args.mlm_lr, weight_decay=0.01)
    rng = random.Random(args.seed + 1)
    gen = torch.Generator().manual_seed(args.seed + 1)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total = steps_per_epoch * args.mlm_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, max(1, int(0.06 * total))))
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    step = 0
    t0 = time.time()
    for epoch in range(args.mlm_epochs):
        run_loss, run_n = 0.0, 0
        for b in bucketed_batches(train, args.batch_size, rng):
            ids, mask, _ = collate([train[i] for i in b], tok.pad_token_id)
            labels = ids.clone()
            prob = torch.full(ids.shape, 0.15)
            prob[torch.isin(ids, special)] = 0.0
            masked = torch.bernoulli(prob, generator=gen).bool()
            labels[~masked] = -100
            r = torch.rand(ids.shape, generator=gen)
            inp = ids.clone()
            inp[masked & (r < 0.8)] = tok.mask_token_id
            rand_pos = masked & (r >= 0.8) & (r < 0.9)
            inp[rand_pos] = torch.randint(5, cfg.vocab_size, ids.shape, generator=gen)[rand_pos]
            hidden = model.albert(input_ids=inp, attention_mask=mask).last_hidden_state
            sel = labels != -100
            if sel.sum() == 0:
                continue
            h = head(hidden[sel])
            logits = h @ emb.weight.t() + bias
            loss = F.cross_entropy(logits, labels[sel])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item()
            run_n += 1
        entry = {"phase": "mlm", "epoch": epoch + 1, "step": step, "mlm_loss": run_loss / max(1, run_n),
                 "elapsed_s": round(time.time() - t0, 1)}
        log["evals"].append(entry)
        print(json.dumps(entry), flush=True)


def write_log(out: Path, log: dict):
    tmp = out / "train_log.json.tmp"
    with open(tmp, "w") as f:
        json.dump(log, f, indent=1)
    os.replace(tmp, out / "train_log.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="pi")
    ap.add_argument("--train", type=Path, required=True, help="GLUE SST-2 train.tsv (sentence<TAB>label)")
    ap.add_argument("--dev", type=Path, default=REPO / "tests/data/sst2/dev.tsv")
    ap.add_argument("--spiece", type=Path, default=REPO / "tests/data/spiece/30k-clean.model")
    ap.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=float, default=0.06, help="warm-up fraction of the steps")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--max-len", type=int, default=66, help="max pieces incl. [CLS]/[SEP] (training and dev)")
    ap.add_argument("--evals-per-epoch", type=int, default=4)
    ap.add_argument("--mlm-epochs", type=int, default=0, help="masked-LM warm-up epochs on the train sentences")
    ap.add_argument("--mlm-lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop training after this long (0: no limit)")
    ap.add_argument("--transfer", type=Path, help="teacher-labelled transfer set (tools/train/teacher.py label)")
    ap.add_argument("--gold-weight", type=float, default=0.5, help="cross-entropy weight on gold-labelled rows")
    ap.add_argument("--init-embeddings", type=Path, help="teacher checkpoint whose word embeddings seed E")
    for k in PRESETS["pi"]:
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None, help="override the preset")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    shape = dict(PRESETS[args.preset])
    for k in shape:
        v = getattr(args, k)
        if v is not None:
            shape[k] = v

    tok = AlbertTokenizer(vocab_file=str(args.spiece))  # slow tokenizer, library defaults (lowercase etc.)
    t0 = time.time()
    gold = read_tsv(args.train)
    if args.transfer:
        by_sentence = {sentence: label for sentence, label in gold}
        transfer = read_transfer(args.transfer)
        ids = encode(tok, [(sentence, 0) for sentence, _, _ in transfer], args.max_len)
        train = [(i, by_sentence.get(sentence, -1), (a, b)) for (i, _), (sentence, a, b) in zip(ids, transfer)]
    else:
        train = encode(tok, gold, args.max_len)
    dev = encode(tok, read_tsv(args.dev), args.max_len)
    print(f"tokenised {len(train)} train / {len(dev)} dev rows in {time.time() - t0:.1f}s", flush=True)

    config = AlbertConfig(
        vocab_size=tok.vocab_size,
        **shape,
        num_hidden_groups=1,
        inner_group_num=1,
        hidden_act="gelu_new",
        hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.dropout,
        classifier_dropout_prob=args.dropout,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        position_embedding_type="absolute",
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        num_labels=2,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
    )
    model = AlbertForSequenceClassification(config)
    if args.init_embeddings:
        n = teacher_embeddings(model, tok, args.init_embeddings)
        print(f"{n} of {config.vocab_size} word embeddings from {args.init_embeddings.name}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config {shape}; {n_params} parameters", flush=True)

    log = {
        "script": "tools/train/train_sst2.py",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                 if k not in ("train", "dev", "spiece", "out")},
        "data": {"train": args.train.name, "train_rows": len(train), "dev": args.dev.name, "dev_rows": len(dev),
                 "transfer": args.transfer.name if args.transfer else None,
                 "init_embeddings": args.init_embeddings.name if args.init_embeddings else None},
        "shape": shape,
        "parameters": n_params,
        "torch": torch.__version__,
        "evals": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(args.out)  # spiece.model + tokenizer_config.json + special_tokens_map.json
    start = time.time()

    if args.mlm_epochs > 0:
        mlm_warmup(model, train, tok, args, log)
        torch.manual_seed(args.seed)  # the classification head keeps its random init; reseed dropout

    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total = steps_per_epoch * args.epochs
    opt = make_optimizer(model, args.lr, args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, max(1, int(args.warmup * total))))
    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    rng = random.Random(args.seed)
    best = (-1.0, None)
    step = 0
    model.train()
    stop = False
    for epoch in range(args.epochs):
        run_loss, run_n = 0.0, 0
        for bi, b in enumerate(bucketed_batches(train, args.batch_size, rng)):
            if args.transfer:
                ids, mask, labels, target = distil_collate([train[i] for i in b], tok.pad_token_id)
                logits = model(input_ids=ids, attention_mask=mask).logits
                loss = F.mse_loss(logits, target)
                if args.gold_weight and (labels >= 0).any():
                    loss = loss + args.gold_weight * F.cross_entropy(logits, labels, ignore_index=-1)
            else:
                ids, mask, labels = collate([train[i] for i in b], tok.pad_token_id)
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item()
            run_n += 1
            last = bi == steps_per_epoch - 1
            if step % eval_every == 0 or last:
                acc = evaluate(model, dev, tok.pad_token_id)
                entry = {"phase": "classify", "epoch": round(epoch + (bi + 1) / steps_per_epoch, 3), "step": step,
                         "train_loss": round(run_loss / max(1, run_n), 5), "dev_accuracy": round(acc, 5),
                         "lr": opt.param_groups[0]["lr"], "elapsed_s": round(time.time() - start, 1)}
                run_loss, run_n = 0.0, 0
                if acc > best[0]:
                    best = (acc, entry)
                    model.save_pretrained(args.out, safe_serialization=True)
                    entry["saved"] = True
                log["evals"].append(entry)
                log["best"] = best[1]
                log["train_seconds"] = round(time.time() - start, 1)
                write_log(args.out, log)  # complete after every evaluation, even if the run is cut short
                print(json.dumps(entry), flush=True)
                if args.max_minutes and time.time() - start > args.max_minutes * 60:
                    stop = True
                    break
        if stop:
            print("time limit reached", flush=True)
            break

    log["best"] = best[1]
    log["train_seconds"] = round(time.time() - start, 1)
    log["finished"] = "time limit" if stop else "all epochs"
    write_log(args.out, log)
    # Cross-check: reload the saved (best) checkpoint and re-measure dev accuracy.
    reloaded = AlbertForSequenceClassification.from_pretrained(args.out)
    acc = evaluate(reloaded, dev, tok.pad_token_id)
    log["best_reloaded_dev_accuracy"] = round(acc, 5)
    write_log(args.out, log)
    print(f"best dev accuracy {best[0]:.4f} at {best[1]}; reloaded {acc:.4f}; {log['train_seconds']}s", flush=True)


if __name__ == "__main__":
    main()
