"""The tuning loop: convert the panel's tuning members with extra `convert` options and measure the engine against
the recorded Hugging Face and ONNX Runtime logits (`panel.py measure` must have run once). Prints agreement and mean
|Δlogit| per member and the mean ratio to ONNX Runtime int8. Held-out members are never touched here.

    target/panel/venv/bin/python tools/panel/tune.py -- --outlier-ratio 0
    target/panel/venv/bin/python tools/panel/tune.py --tag smooth -- --outlier-ratio 6
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from panel import MEMBERS, REPO, ckpt_dir  # noqa: E402


def score(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    agree = float(np.mean(np.argmax(ref, 1) == np.argmax(got, 1)))
    return agree, float(np.mean(np.abs(ref - got)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=REPO / "target" / "panel")
    ap.add_argument("--cli", type=Path, default=REPO / "target" / "release" / "albert-edge")
    ap.add_argument("--logits-tool", type=Path,
                    default=REPO / "target" / "panel" / "cargo" / "release" / "albert-edge-panel-logits")
    ap.add_argument("--tag", default="tune")
    ap.add_argument("convert_args", nargs="*")
    args = ap.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in MEMBERS:
            if m["split"] != "tuning":
                continue
            rec = np.load(args.work / "logits" / f"{m['name']}.npz")
            blob = Path(tmp) / f"{m['name']}.blob"
            subprocess.run([str(args.cli), "convert", str(ckpt_dir(args.work, m)), "-o", str(blob),
                            *args.convert_args], check=True, stdout=subprocess.DEVNULL)
            out = subprocess.run([str(args.logits_tool), str(blob), str(args.work / "logits" / f"{m['name']}.ids.txt")],
                                 check=True, capture_output=True, text=True).stdout
            i8 = np.array([[float(x) for x in l.split("\t")[0].split()] for l in out.splitlines()], dtype=np.float32)
            f32 = np.array([[float(x) for x in l.split("\t")[1].split()] for l in out.splitlines()], dtype=np.float32)
            a, d = score(rec["hf"], i8)
            wa, wd = score(rec["hf"], f32)
            oa, od = score(rec["hf"], rec["ort_int8"])
            ratios.append(d / od)
            ok = a >= max(oa, 0.97) and d <= 0.75 * od
            print(f"{args.tag:>10} {m['name']:<20} int8 {100*a:5.1f} % {d:.4f} ({d/od:.2f}x)  "
                  f"weights-only {100*wa:5.1f} % {wd:.4f}  ORT {100*oa:5.1f} % {od:.4f}  {'met' if ok else 'not met'}",
                  flush=True)
    print(f"{args.tag:>10} tuning mean ratio {np.mean(ratios):.3f}x")


if __name__ == "__main__":
    main()
