#!/usr/bin/env python
"""Regenerates the results tables of docs/benchmarks.md and README.md from the results JSON.

Every folder under benchmarks/results/ except the static GPU report is one machine kind, holding
the canonical result set of each benchmark measured there (whichever exist):

    neuron_op_lif_fp32.json          python benchmarks/neuron_op.py --json ...
    neuron_op_leaky_fp32.json        python benchmarks/neuron_op.py --neurons leaky --json ...
    neuron_op_plif_fp32.json         python benchmarks/neuron_op.py --neurons plif --json ...
    neuron_op_leaky_learn_fp32.json  python benchmarks/neuron_op.py --neurons leaky-learn --json ...
    mnist_train/results.json         python benchmarks/mnist_train.py --impl all ... --out ...
    mnist_accuracy.json              full-epoch accuracy runs over several seeds (one record per run)

The generated text sits between marker comments in the Markdown files,

    <!-- make_tables: NAME -->  ...  <!-- /make_tables: NAME -->

and everything outside the markers is left alone. Blocks: `readme-speedup` (README.md: the
headline table), `cpu-results` and `gpu-results` (docs/benchmarks.md: one section per machine kind),
`cpu-isa` (docs/benchmarks.md: the LIF op benchmark per machine kind and CPU-kernel variant, from
neuron_op_lif_fp32.json and the neuron_op_lif_fp32_isa-VARIANT.json of `--isa VARIANT` runs).

    python benchmarks/make_tables.py            # rewrite the blocks
    python benchmarks/make_tables.py --check    # exit 1 if a block is out of date
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NET_TITLES = {
    "lif_fc": "lif_fc: SpikingJelly lif_fc_mnist, 784-10 LIF",
    "tutorial5": "tutorial5: snnTorch tutorial 5, 784-1000-10 Leaky",
    "dense_if": "dense_if: surrogate-gradient tutorial, 784-256-256-10 IF",
}
NETS = ("lif_fc", "tutorial5", "dense_if")


def _load(path: Path):
    if not path.is_file():
        return None
    with open(path) as f:
        return json.load(f)


def machines():
    """(folder name, results) for every machine-kind folder, sorted by name."""
    out = []
    for d in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        res = {
            "lif": _load(d / "neuron_op_lif_fp32.json"),
            "leaky": _load(d / "neuron_op_leaky_fp32.json"),
            "plif": _load(d / "neuron_op_plif_fp32.json"),
            "leaky_learn": _load(d / "neuron_op_leaky_learn_fp32.json"),
            "train": _load(d / "mnist_train" / "results.json"),
            "accuracy": _load(d / "mnist_accuracy.json"),
        }
        if any(v is not None for v in res.values()):
            out.append((d.name, res))
    return out


def is_gpu(res) -> bool:
    for key in ("lif", "leaky", "plif", "leaky_learn"):
        if res[key] is not None:
            return res[key]["hardware"].get("device", "cpu").startswith("cuda")
    if res["train"] is not None:
        return res["train"]["machine"].get("device", "cpu").startswith("cuda")
    return False


def describe(name, res) -> str:
    """One line naming the machine, from what the benchmarks recorded."""
    for key in ("lif", "leaky", "plif", "leaky_learn"):
        op = res[key]
        if op is not None:
            hw = op["hardware"]
            dev = f"{hw['gpu']} (CUDA {hw.get('cuda')}), " if hw.get("gpu") else ""
            cb = op.get("copy_bandwidth", {}).get("GB_s")
            return (
                f"{dev}{hw['cpu']} ({machine_isa(hw) or '?'}), {hw.get('cores', '?')} cores, torch {hw['torch']}, "
                f"{hw.get('threads', '?')} threads" + (f"; copy bandwidth {cb:.0f} GB/s (read+write)" if cb else "")
            )
    m = res["train"]["machine"] if res["train"] else None
    if m:
        return f"{m.get('gpu') or m.get('cpu')}, {m.get('cpu_count')} CPUs, torch {m.get('torch')}"
    return name


ISA_NAMES = {
    "avx512f": "AVX-512",
    "avx512": "AVX-512",
    "avx2": "AVX2",
    "avx": "AVX",
    "sse4_2": "SSE4.2",
    "default": "baseline x86-64",
}


def machine_isa(hw) -> str:
    """The CPU's widest instruction set (newer records name the kernels' variant separately)."""
    return hw.get("cpu_widest_isa") or hw.get("cpu_isa")


def short_machine(name, res) -> str:
    """e.g. "Intel Xeon (AVX-512), 2 cores" or the GPU's name."""
    for key in ("lif", "leaky", "plif", "leaky_learn"):
        op = res[key]
        if op is not None:
            hw = op["hardware"]
            if hw.get("gpu"):
                return hw["gpu"]
            cpu = re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b|@.*$", "", hw["cpu"])
            cpu = re.sub(r"\s+", " ", cpu).strip()
            isa = ISA_NAMES.get(machine_isa(hw), machine_isa(hw))
            return f"{cpu}" + (f" ({isa})" if isa else "") + f", {hw.get('cores', '?')} cores"
    return name


def _ms(r):
    return r["median_s"] * 1e3


def _rate(v):
    return f"{v / 1e9:.2f} G" if v >= 1e9 else f"{v / 1e6:.0f} M" if v >= 1e7 else f"{v / 1e6:.1f} M"


def _x(v, nd=2):
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _command(op) -> str:
    args = op.get("args", {})
    parts = ["python benchmarks/neuron_op.py"]
    if args.get("neurons", "lif") != "lif":
        parts.append(f"--neurons {args['neurons']}")
    if args.get("device", "cpu") != "cpu":
        parts.append(f"--device {args['device']}")
    if args.get("json"):
        parts.append(f"--json {args['json']}")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def op_table(op) -> list:
    m = op["main"]
    rows = {r["key"]: r for r in m["rows"] if "median_s" in r}
    T = m["shape"][0]
    lines = [
        f"One {op['model'].upper()} layer, {op['dtype']}, forward + backward, `{m['shape']}` "
        f"(T={T}), ATan surrogate (`{_command(op)}`):",
        "",
        "| implementation | ms / fwd+bwd | neuron-steps/s | × unbind loop | × SpikingJelly |",
        "|---|---|---|---|---|",
    ]
    names = {
        "fused": "**snn_cuda fused**",
        "reference": 'snn_cuda reference (`backend="torch"`)',
        "unbind": "best plain-torch loop over `x.unbind(0)`",
        "seed": "tutorial-style loop indexing `x[t]`",
        "sj": "SpikingJelly 2.0.0, multi-step",
        "snntorch": "snnTorch 1.0 `Leaky`, loop over `x.unbind(0)`",
        "snntorch_idx": "snnTorch 1.0 `Leaky`, tutorial loop over `x[t]`",
    }
    for key, label in names.items():
        r = rows.get(key)
        if r is None:
            continue
        bold = key == "fused"
        ms = f"**{_ms(r):.1f}**" if bold else f"{_ms(r):.1f}"
        lines.append(
            f"| {label} | {ms} | {_rate(r['neuron_steps_per_s'])} | {_x(r.get('x_unbind'))} | {_x(r.get('x_sj'))} |"
        )
    f = rows.get("fused")
    cb = op.get("copy_bandwidth", {}).get("GB_s")
    if f and cb:
        lines += [
            "",
            f"The fused pass moves {m['bytes_per_neuron_step']} B per neuron-step at "
            f"{100 * f['eff_GB_s'] / cb:.0f} % of the copy bandwidth measured in the same run "
            f"({cb:.1f} GB/s). Spikes equal every other LIF row's bit for bit.",
        ]
    return lines


def op_line(op) -> list:
    rows = {r["key"]: r for r in op["main"]["rows"] if "median_s" in r}
    f = rows.get("fused")
    if not f:
        return []
    peer = rows.get("snntorch")
    return [
        f"{op['model'].capitalize()} layer, same shape (`{_command(op)}`): fused {_ms(f):.1f} ms, "
        f"{_x(f.get('x_unbind'))}× the unbind loop"
        + (f", {peer['median_s'] / f['median_s']:.2f}× snnTorch's loop" if peer else "")
        + "."
    ]


def learn_table(plif, leaky) -> list:
    lines = [
        "Learnable parameters, same shape, gradients of x and of every parameter "
        "(`--neurons plif`, `--neurons leaky-learn`):",
        "",
        "| layer | ms / fwd+bwd | ÷ same fused layer, fixed parameters | × reference | × peer |",
        "|---|---|---|---|---|",
    ]
    for op, peer_name in ((plif, "SpikingJelly `ParametricLIFNode`"), (leaky, "snnTorch learnable `Leaky`")):
        if op is None:
            continue
        for r in op["main"]["rows"]:
            if "median_s" not in r or r["key"] in ("reference", "sj", "snntorch"):
                continue
            lines.append(
                f"| {r['impl']} | {_ms(r):.1f} | {_x(r.get('overhead_vs_fixed'))} | "
                f"{_x(r.get('x_reference'), 1)} | {_x(r.get('x_peer'), 1)} |"
            )
        peer = next((r for r in op["main"]["rows"] if r["key"] in ("sj", "snntorch") and "median_s" in r), None)
        if peer:
            lines.append(f"| {peer_name} (peer) | {_ms(peer):.1f} | — | {_x(peer.get('x_reference'), 2)} | 1.0 |")
    return lines


def train_table(train) -> list:
    runs = train["runs"]
    m = train["machine"]
    by = {(r["net"], r["impl"]): r for r in runs if r.get("world_size", 1) == 1}
    argv = " ".join(m.get("argv", []))
    nb = next((r["train_batches_per_epoch"] for r in runs), None)
    lines = [
        f"Training (`python benchmarks/mnist_train.py {argv}`): {nb} training batches per net and "
        f"implementation, timed after the warm-up steps, each in its own process; "
        f"{runs[0]['dataset'] if runs else ''}, snn_cuda commit {m.get('git_commit')}:",
        "",
        "| net | T, batch | reference samples/s | fused samples/s | speed-up | peer samples/s | "
        "saved-for-backward, fused ÷ ref | peak memory ref / fused | test acc. ref / fused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for net in NETS:
        ref, fu, peer = by.get((net, "reference")), by.get((net, "fused")), by.get((net, "peer"))
        if not (ref and fu):
            continue
        lines.append(
            f"| {NET_TITLES[net]} | {fu['T']}, {fu['batch_size']} | {ref['samples_per_s']:,.0f} | "
            f"{fu['samples_per_s']:,.0f} | **{fu['samples_per_s'] / ref['samples_per_s']:.2f}×** | "
            + (f"{peer['samples_per_s']:,.0f} ({peer['samples_per_s'] / ref['samples_per_s']:.2f}×)" if peer else "—")
            + f" | {fu['saved_mb'] / ref['saved_mb']:.2f}× | "
            f"{ref['peak_mem_mb']:,.0f} / {fu['peak_mem_mb']:,.0f} MB | {ref['test_acc']:.2f} / {fu['test_acc']:.2f} % |"
        )
    lines += [
        "",
        "Full table, step profiles and settings: "
        "[`mnist_train/results.md`](../benchmarks/results/{machine}/mnist_train/results.md).",
    ]
    return lines


def accuracy_table(acc) -> list:
    runs = acc["runs"]
    nets = [n for n in NETS if any(r["net"] == n for r in runs)]
    lines = [
        "Test accuracy after one full epoch of Fashion-MNIST (10,000 test images), per seed, "
        "each run from the same initial weights and data order for both implementations:",
        "",
        "| net | seeds | reference | fused | fused − reference | mean difference (± std. error) |",
        "|---|---|---|---|---|---|",
    ]
    for net in nets:
        ref = {r["seed"]: r["test_acc"] for r in runs if r["net"] == net and r["impl"] == "reference"}
        fu = {r["seed"]: r["test_acc"] for r in runs if r["net"] == net and r["impl"] == "fused"}
        seeds = sorted(set(ref) & set(fu))
        if not seeds:
            continue
        d = [fu[s] - ref[s] for s in seeds]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        lines.append(
            f"| {net} | {', '.join(map(str, seeds))} | {' / '.join(f'{ref[s]:.2f}' for s in seeds)} | "
            f"{' / '.join(f'{fu[s]:.2f}' for s in seeds)} | {' / '.join(f'{x:+.2f}' for x in d)} | "
            f"**{statistics.mean(d):+.2f}** (± {_x(se)}) |"
        )
    cmd = next((r["command"] for r in runs), "")
    lines += [
        "",
        f"Each run: `{re.sub(r'--net [a-z_0-9]+', '--net NET', re.sub(r'--seed [0-9]+', '--seed S', cmd))}` (per-run commands, commits and "
        "environments in `mnist_accuracy.json`).",
    ]
    return lines


def machine_section(name, res) -> list:
    lines = [
        f"### {name}",
        "",
        f"{describe(name, res)}. Results: [`benchmarks/results/{name}/`](../benchmarks/results/{name}/).",
        "",
    ]
    if res["lif"]:
        lines += op_table(res["lif"]) + [""]
    if res["leaky"]:
        lines += op_line(res["leaky"]) + [""]
    if res["plif"] or res["leaky_learn"]:
        lines += learn_table(res["plif"], res["leaky_learn"]) + [""]
    if res["train"]:
        lines += [s.replace("{machine}", name) for s in train_table(res["train"])] + [""]
    if res["accuracy"]:
        lines += accuracy_table(res["accuracy"]) + [""]
    return lines


def block_results(gpu: bool) -> str:
    secs = [machine_section(n, r) for n, r in machines() if is_gpu(r) == gpu]
    if not secs:
        return (
            "_No results yet: `python -m snn_cuda.check` and `python benchmarks/neuron_op.py --device cuda "
            "--json ...` produce them on a GPU machine._\n"
        )
    return "\n".join(line for sec in secs for line in sec).rstrip("\n") + "\n"


def block_isa() -> str:
    """One row per machine kind and CPU-kernel variant: the LIF op benchmark run with --isa
    (neuron_op_lif_fp32.json is the variant chosen automatically; neuron_op_lif_fp32_isa-V.json
    the one forced with --isa V)."""
    lines = [
        "| machine | CPU kernels | fused ms / fwd+bwd | eff. GB/s | % of copy bandwidth (same run) | "
        "× unbind loop | × SpikingJelly 2.0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in sorted(p for p in RESULTS.iterdir() if p.is_dir()):
        for path in sorted(d.glob("neuron_op_lif_fp32*.json")):
            op = _load(path)
            if op is None or op["hardware"].get("device", "cpu") != "cpu":
                continue
            hw = op["hardware"]
            rows = {r["key"]: r for r in op["main"]["rows"] if "median_s" in r}
            f = rows.get("fused")
            if not f:
                continue
            cb = op.get("copy_bandwidth", {}).get("GB_s")
            variant = hw.get("cpu_isa") if hw.get("cpu_widest_isa") else None  # older records: not recorded
            variant = (
                ISA_NAMES.get(variant, variant)
                if variant
                else "target_clones, AVX-512 clone (before the per-variant units)"
            )
            lines.append(
                f"| {d.name} | {variant} | {_ms(f):.1f} | {f['eff_GB_s']:.1f} | "
                + (f"{100 * f['eff_GB_s'] / cb:.0f} % of {cb:.1f} GB/s" if cb else "—")
                + f" | {_x(f.get('x_unbind'))} | {_x(f.get('x_sj'))} |"
            )
    return "\n".join(lines) + "\n"


def block_readme() -> str:
    lines = [
        "| workload (fp32, forward + backward) | machine | pure-PyTorch reference | snn_cuda fused | speed-up |",
        "|---|---|---|---|---|",
    ]
    for name, res in machines():
        where = short_machine(name, res)
        op = res["lif"]
        if op:
            rows = {r["key"]: r for r in op["main"]["rows"] if "median_s" in r}
            f, r = rows.get("fused"), rows.get("reference")
            if f and r:
                lines.append(
                    f"| one LIF layer, `{op['main']['shape']}` | {where} | {_ms(r):.0f} ms | "
                    f"{_ms(f):.1f} ms | **{r['median_s'] / f['median_s']:.1f}×** |"
                )
        tr = res["train"]
        if tr:
            by = {(x["net"], x["impl"]): x for x in tr["runs"] if x.get("world_size", 1) == 1}
            for net in NETS:
                ref, fu = by.get((net, "reference")), by.get((net, "fused"))
                if ref and fu:
                    lines.append(
                        f"| training {NET_TITLES[net].split(':')[0]} ({NET_TITLES[net].split(': ')[1]}, "
                        f"T={fu['T']}) | {where} | {ref['samples_per_s']:,.0f} samples/s | "
                        f"{fu['samples_per_s']:,.0f} samples/s | **{fu['samples_per_s'] / ref['samples_per_s']:.1f}×** |"
                    )
    return "\n".join(lines) + "\n"


BLOCKS = {
    "readme-speedup": ("README.md", block_readme),
    "cpu-results": ("docs/benchmarks.md", lambda: block_results(gpu=False)),
    "cpu-isa": ("docs/benchmarks.md", block_isa),
    "gpu-results": ("docs/benchmarks.md", lambda: block_results(gpu=True)),
}


def render(text: str, name: str, body: str) -> str:
    pat = re.compile(
        rf"(<!-- make_tables: {re.escape(name)} -->\n)(.*?)(<!-- /make_tables: {re.escape(name)} -->)", re.S
    )
    if not pat.search(text):
        raise SystemExit(f"marker <!-- make_tables: {name} --> not found")
    return pat.sub(lambda m: m.group(1) + body + m.group(3), text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a generated block is out of date")
    args = p.parse_args(argv)
    stale = []
    files = {}
    for name, (rel, fn) in BLOCKS.items():
        path = ROOT / rel
        text = files.get(rel, path.read_text())
        files[rel] = render(text, name, fn())
    for rel, text in files.items():
        path = ROOT / rel
        if path.read_text() != text:
            stale.append(rel)
            if not args.check:
                path.write_text(text)
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)} (run python benchmarks/make_tables.py)", file=sys.stderr)
            return 1
        print("tables up to date")
    else:
        print(f"updated: {', '.join(stale) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
