#!/usr/bin/env python
"""Accuracy spread over seeds from a folder of mnist_train.py outputs.

Reads every <dir>/*/results.json (one mnist_train.py --out each), groups the runs by
(net, implementation, optimiser, torch threads) and prints a Markdown summary: test accuracy per
seed, mean +- sample std per group, and the per-seed differences between groups of the same net
(fused - reference, and reference - reference where only the summation order differs).

    python benchmarks/seed_spread.py benchmarks/results/cpu/mnist_seeds > summary_table.md
"""
from __future__ import annotations

import glob
import json
import os
import statistics
import sys
from collections import defaultdict


def load(folder):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*", "results.json"))):
        with open(path) as f:
            res = json.load(f)
        threads = res["machine"].get("torch_threads")
        for r in res["runs"]:
            opt = r.get("optimizer", "Adam(for-loop)")
            variant = opt[opt.rfind(",") + 2:-1] if "," in opt else opt
            rows.append({"net": r["net"], "impl": r["impl"], "adam": variant, "threads": threads,
                         "seed": r.get("seed"), "acc": r["test_acc"], "dataset": r["dataset"],
                         "epochs": r["epochs"], "test_samples": r.get("test_samples"),
                         "run": os.path.basename(os.path.dirname(path))})
    return rows


def mean_std(xs):
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{xs[0]:.2f}"
    return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def main(argv=None) -> int:
    folder = (argv or sys.argv[1:] or ["benchmarks/results/cpu/mnist_seeds"])[0]
    rows = load(folder)
    if not rows:
        print(f"no */results.json under {folder}", file=sys.stderr)
        return 1
    groups = defaultdict(dict)  # (net, impl, adam, threads) -> {seed: acc}
    for r in rows:
        groups[(r["net"], r["impl"], r["adam"], r["threads"])][r["seed"]] = r["acc"]
    seeds = sorted({r["seed"] for r in rows})
    out = ["| net | impl | Adam | threads | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
           "|---|---|---|---|" + "---|" * len(seeds) + "---|"]
    for key in sorted(groups):
        accs = groups[key]
        out.append("| " + " | ".join(map(str, key)) + " | "
                   + " | ".join(f"{accs[s]:.2f}" if s in accs else "–" for s in seeds)
                   + f" | {mean_std(list(accs.values()))} |")
    out += ["", "Per-seed differences (points):", "",
            "| net | comparison | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std | max abs |",
            "|---|---|" + "---|" * len(seeds) + "---|---|"]
    for net in sorted({k[0] for k in groups}):
        keys = [k for k in groups if k[0] == net]
        pairs = []
        for a in keys:
            for b in keys:
                if a == b:
                    continue
                same_setup = a[2:] == b[2:]
                if a[1] == "fused" and b[1] == "reference" and same_setup:
                    pairs.append((a, b))  # fused - reference, same Adam and threads
                elif a[1] == b[1] == "reference" and a < b and (a[2] == b[2] or a[3] == b[3]):
                    pairs.append((a, b))  # reference - reference: one setting changed
        for a, b in pairs:
            common = [s for s in seeds if s in groups[a] and s in groups[b]]
            d = {s: groups[a][s] - groups[b][s] for s in common}
            if not d:
                continue
            label = (f"{a[1]} ({a[2]}, {a[3]} thr) − {b[1]} ({b[2]}, {b[3]} thr)")
            out.append(f"| {net} | {label} | " + " | ".join(f"{d[s]:+.2f}" if s in d else "–" for s in seeds)
                       + f" | {mean_std(list(d.values()))} | {max(abs(v) for v in d.values()):.2f} |")
    ds = sorted({(r["dataset"], r["epochs"], r["test_samples"]) for r in rows})
    out += ["", "Runs: " + ", ".join(f"{d} ({e} epoch(s), {n} test images)" for d, e, n in ds) + "."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
