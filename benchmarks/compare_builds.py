"""Two builds of snn_cuda side by side: neuron_op.py's fused row (forward + backward of one layer)
for each model, each build in its own process, the builds alternating round by round, medians.

    python benchmarks/compare_builds.py --old /path/old --new /path/new \\
        --neurons synaptic,cuba_lif,qif,adlif --rounds 3 --json out.json

--old / --new are folders holding an importable `snn_cuda` package with its built extension
(a checkout or a copy of one; `git archive HEAD snn_cuda | tar -x -C DIR` plus the `.so` gives an
old one). Each child process runs from a scratch folder with only that folder on PYTHONPATH, so
an editable install of the checkout cannot shadow it. Machine load changes between rounds are the
main noise: the alternation spreads it over both builds, and the table gives every round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


# (rows to run, the row measured) of each --neurons mode: the learnable-parameter modes name their
# fused row, and report it against their fixed-parameter baseline row, which runs with it.
FUSED_ROW = {"leaky-learn": ("leaky,leaky_learn", "leaky_learn")}


def run_once(pkg: str, neurons: str, args, scratch: Path) -> dict:
    out = scratch / f"{neurons}.json"
    rows, key = FUSED_ROW.get(neurons, ("fused", "fused"))
    cmd = [
        sys.executable,
        str(HERE / "neuron_op.py"),
        "--neurons",
        neurons,
        "--rows",
        rows,
        "--rounds",
        "1",
        "--budget",
        str(args.budget),
        "--shape",
        *[str(d) for d in args.shape],
        "--dtype",
        args.dtype,
        "--json",
        str(out),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = dict(os.environ, PYTHONPATH=str(Path(pkg).resolve()))
    subprocess.run(cmd, check=True, cwd=scratch, env=env, stdout=subprocess.DEVNULL)
    d = json.loads(out.read_text())
    row = next(r for r in d["main"]["rows"] if r["key"] == key)
    return {"median_ms": row["median_s"] * 1e3, "hardware": d.get("hardware", {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--neurons", default="synaptic,cuba_lif,qif,adlif")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timed reps per run")
    ap.add_argument("--shape", type=int, nargs="+", default=[64, 64, 4096])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    builds = {"old": args.old, "new": args.new}
    times = {n: {b: [] for b in builds} for n in args.neurons.split(",")}
    hw = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for r in range(args.rounds):
            order = list(builds) if r % 2 == 0 else list(reversed(builds))
            for n in times:
                for b in order:
                    res = run_once(builds[b], n, args, scratch)
                    times[n][b].append(res["median_ms"])
                    hw = res["hardware"]
                print(f"round {r + 1}: {n} " + "  ".join(f"{b} {times[n][b][-1]:.1f} ms" for b in builds), flush=True)
    cpu = f"{hw.get('cpu', '?')} ({hw.get('cpu_isa', '?')} kernels, {hw.get('threads', '?')} threads)"
    print(f"\n{cpu}, {args.dtype} {args.shape}, fused forward + backward, median of rounds\n")
    print("| model | old ms | new ms | new / old | rounds (old; new) |")
    print("|---|---|---|---|---|")
    rows = []
    for n, t in times.items():
        mo, mn = statistics.median(t["old"]), statistics.median(t["new"])
        rounds = ", ".join(f"{v:.1f}" for v in t["old"]) + "; " + ", ".join(f"{v:.1f}" for v in t["new"])
        print(f"| {n} | {mo:.1f} | {mn:.1f} | {mn / mo:.2f} | {rounds} |")
        rows.append({"neurons": n, "old_ms": t["old"], "new_ms": t["new"], "old_median": mo, "new_median": mn})
    if args.json:
        Path(args.json).write_text(json.dumps({"hardware": hw, "args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
