"""Where the Raspberry Pi's instructions go: an exact per-function profile of one classification under qemu-user.

Builds `pi-classify` for the board (a non-PIE executable with line tables, so guest addresses are link
addresses), runs it under the block-counting plugin (benches/pi/insnprofile.c) once with 1 and once with 2
classifications, and prints the difference, grouped by the innermost function (inlined frames included, from
`addr2line -i`) and the engine line that called it: one classification, start-up cancelled out. Needs what
benches/pi-peers.sh needs (qemu-user, gcc, gcc-aarch64-linux-gnu, binutils-aarch64-linux-gnu) and the blob it
makes (target/pi-peers/model.blob), or any blob given with --blob.

    python3 benches/pi-profile.py --board a76 --seq 128
    python3 benches/pi-profile.py --board a72 --seq 32 --top 60
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPUS = {"a72": "cortex-a72", "a76": "cortex-a76"}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def counts(path: Path) -> collections.Counter:
    total = collections.Counter()
    for line in path.read_text().splitlines():
        vaddr, insns, runs = line.split()
        total[int(vaddr, 16)] += int(insns) * int(runs)
    return total


def frames(binary: Path, addrs: list[int]) -> dict[int, list[str]]:
    """Each address's inlining chain, innermost first, as `function@file:line`."""
    out = run(["aarch64-linux-gnu-addr2line", "-a", "-f", "-i", "-C", "-e", str(binary)],
              input="\n".join(hex(a) for a in addrs) + "\n", capture_output=True, text=True).stdout.splitlines()
    chains, cur, chain, i = {}, None, [], 0
    while i < len(out):
        if out[i].startswith("0x"):
            if cur is not None:
                chains[cur] = chain
            cur, chain, i = int(out[i], 16), [], i + 1
            continue
        name = "::".join(out[i].split("::")[-2:])
        loc = out[i + 1].split("/")[-1].split(" ")[0] if i + 1 < len(out) else "?"
        chain.append(f"{name}@{loc}")
        i += 2
    if cur is not None:
        chains[cur] = chain
    return chains


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", choices=sorted(CPUS), default="a76")
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--blob", type=Path, default=REPO / "target" / "pi-peers" / "model.blob")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    if not args.blob.is_file():
        sys.exit(f"error: {args.blob} is missing; benches/pi-peers.sh makes it (or pass --blob)")
    cpu = CPUS[args.board]
    target_dir = REPO / "target" / f"pi-profile-{args.board}"
    env = dict(os.environ, RUSTFLAGS=f"-C target-cpu={cpu} -C relocation-model=static -C debuginfo=1")
    run(["cargo", "build", "--release", "-q", "-p", "pi-classify", "--target", "aarch64-unknown-linux-gnu",
         "--target-dir", str(target_dir)], cwd=REPO, env=env)
    binary = target_dir / "aarch64-unknown-linux-gnu" / "release" / "pi-classify"
    # The same ids as benches/pi-peers.sh.
    ids = [5 + (t * 7919) % (30000 - 5) for t in range(args.seq)]
    ids[0], ids[-1] = 2, 3
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "libinsnprofile.so"
        run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(plugin), str(REPO / "benches" / "pi" / "insnprofile.c")])
        profiles = []
        for repeat in (1, 2):
            out = Path(tmp) / f"prof{repeat}.txt"
            run(["qemu-aarch64", "-cpu", cpu, "-plugin", str(plugin), "-L", "/usr/aarch64-linux-gnu", str(binary),
                 str(args.blob), "-q", "--ids", " ".join(map(str, ids)), "--repeat", str(repeat)],
                env=dict(os.environ, INSNPROF_OUT=str(out)), stdout=subprocess.DEVNULL)
            profiles.append(counts(out))
    one = {a: n - profiles[0].get(a, 0) for a, n in profiles[1].items()}
    chains = frames(binary, sorted(one))
    site = re.compile(r"@(layer|layer_i8|attention|embeddings|head|linear|jobs)\.rs:\d+")
    groups = collections.Counter()
    for addr, n in one.items():
        chain = chains.get(addr) or ["(outside the executable: libc, the loader)"]
        caller = next((f for f in chain[1:] if site.search(f)), chain[-1])
        groups[f"{chain[0].split('@')[0]}  <- {caller}"] += n
    total = sum(one.values())
    print(f"{args.board}, seq {args.seq}: {total / 1e6:.1f} M instructions per classification")
    for name, n in groups.most_common(args.top):
        print(f"{n / 1e6:9.2f} M {100 * n / total:5.1f} %  {name}")


if __name__ == "__main__":
    main()
