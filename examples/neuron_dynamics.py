#!/usr/bin/env python
"""What the neurons compute: LIF, IF and Leaky neurons driven by a constant and a noisy input,
their membrane potential and spikes plotted over time (in the spirit of SpikingJelly's neuron
tutorial). No data set needed; runs on the CPU in seconds.

    python examples/neuron_dynamics.py                       # writes ./neuron_dynamics/*.png
    python examples/neuron_dynamics.py --out DIR --T 200 --backend torch

Writes into --out:
    constant_input.png  one neuron per trace, the same input at every step:
                        LIF hard vs soft reset, decay_input on vs off, two thresholds, two time
                        constants; IF hard vs soft reset; Leaky (snnTorch) subtract vs zero reset
    noisy_input.png     a noisy input: the multi-step call (the whole [T, ...] sequence at once)
                        against T single-step calls (identical), and a spike raster of 16 neurons

Reading the plots: the line is the membrane after each step (after the reset, as layer.v /
v_seq / mem hold it), the dashed line the threshold, the ticks above it the spikes. LIF and IF
fire when the charged potential reaches the threshold (>=) and reset in the same step, so their
membrane never shows above it; Leaky fires when the membrane exceeds the threshold (>) and is
reset one step later (snnTorch's reset_delay), so its trace pokes above it.
Equations: docs/neuron_semantics.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import snn_cuda
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, _ROOT)
    import snn_cuda
functional = snn_cuda.functional


def run_multi(layer, x):
    """One multi-step call over x [T, N]: (spikes [T, N], membrane [T, N])."""
    functional.reset_net(layer)
    with torch.no_grad():
        if isinstance(layer, snn_cuda.Leaky):
            s, v = layer(x)
        else:
            s = layer(x)
            v = layer.v_seq
    return s.float(), v.float()


def run_single(layer, x):
    """The same sequence as T single-step calls, the state kept in the layer between them."""
    functional.reset_net(layer)
    spikes, mems = [], []
    with torch.no_grad():
        for x_t in x.unbind(0):
            if isinstance(layer, snn_cuda.Leaky):
                s, v = layer(x_t)
            else:
                s = layer(x_t)
                v = layer.v
            spikes.append(s.float())
            mems.append(v.float().expand_as(x_t).clone())
    return torch.stack(spikes), torch.stack(mems)


def lif(backend, step_mode="m", **kw):
    return snn_cuda.LIF(backend=backend, step_mode=step_mode, store_v_seq=step_mode == "m", **kw)


def if_(backend, step_mode="m", **kw):
    return snn_cuda.IF(backend=backend, step_mode=step_mode, store_v_seq=step_mode == "m", **kw)


def leaky(backend, step_mode="m", **kw):
    return snn_cuda.Leaky(backend=backend, step_mode=step_mode, **kw)


def plot_traces(ax, traces, title, thresholds):
    """traces: [(label, spikes [T], membrane [T], color)]."""
    T = traces[0][1].shape[0]
    t = torch.arange(1, T + 1)
    top = max(max(thresholds), max(float(v.max()) for _, _, v, _ in traces))
    for th in sorted(set(thresholds)):
        ax.axhline(th, ls="--", lw=0.8, color="0.4")
    for i, (label, s, v, color) in enumerate(traces):
        n = int(s.sum())
        ax.plot(t, v, color=color, lw=1.3, label=f"{label} ({n} spikes)")
        st = t[s > 0]
        ax.plot(st, torch.full((len(st),), top * (1.12 + 0.1 * i)), "|", color=color, ms=7, mew=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, T + 1)
    ax.set_ylim(min(-0.05, min(float(v.min()) for _, _, v, _ in traces) - 0.05), top * (1.2 + 0.1 * len(traces)))
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.85)
    ax.grid(alpha=0.25)


def save_png(fig, path, dpi=80):
    """Saves the figure; reduced to a 64-colour palette when Pillow is there (a fraction of the size)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    try:
        from PIL import Image

        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colors=64)
        small.save(path, optimize=True)
    except Exception:
        pass


def constant_figure(T, backend, out):
    import matplotlib.pyplot as plt

    c = lambda value: torch.full((T, 1), value)  # noqa: E731  (the same input at every step)
    blue, orange = "tab:blue", "tab:orange"
    panels = [
        (
            "LIF (tau=5), input 2.0: hard vs soft reset",
            [
                ("v_reset=0 (hard: back to 0)", lif(backend, tau=5.0), c(2.0), blue, 1.0),
                ("v_reset=None (soft: minus threshold)", lif(backend, tau=5.0, v_reset=None), c(2.0), orange, 1.0),
            ],
        ),
        (
            "LIF (tau=10), input 0.15: decay_input",
            [
                ("decay_input=True: V -> x", lif(backend, tau=10.0), c(0.15), blue, 1.0),
                ("decay_input=False: V -> tau*x", lif(backend, tau=10.0, decay_input=False), c(0.15), orange, 1.0),
            ],
        ),
        (
            "LIF (tau=10), input 1.3: threshold",
            [
                ("v_threshold=1.0", lif(backend, tau=10.0), c(1.3), blue, 1.0),
                ("v_threshold=0.6", lif(backend, tau=10.0, v_threshold=0.6), c(1.3), orange, 0.6),
            ],
        ),
        (
            "LIF, input 1.3: time constant",
            [
                ("tau=4", lif(backend, tau=4.0), c(1.3), blue, 1.0),
                ("tau=20", lif(backend, tau=20.0), c(1.3), orange, 1.0),
            ],
        ),
        (
            "IF (no leak), input 0.22: hard vs soft reset",
            [
                ("v_reset=0 (hard)", if_(backend), c(0.22), blue, 1.0),
                ("v_reset=None (soft: keeps the excess)", if_(backend, v_reset=None), c(0.22), orange, 1.0),
            ],
        ),
        (
            "Leaky (snnTorch, beta=0.9), input 0.15: reset",
            [
                ('"subtract"', leaky(backend, beta=0.9), c(0.15), blue, 1.0),
                ('"zero"', leaky(backend, beta=0.9, reset_mechanism="zero"), c(0.15), orange, 1.0),
            ],
        ),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4), sharex=True)
    counts = {}
    for ax, (title, specs) in zip(axes.flat, panels):
        traces, ths = [], []
        for label, layer, x, color, th in specs:
            s, v = run_multi(layer, x)
            traces.append((label, s[:, 0], v[:, 0], color))
            ths.append(th)
            counts[f"{title.split(':')[0]} / {label}"] = int(s.sum())
        plot_traces(ax, traces, title, ths)
    for ax in axes[1]:
        ax.set_xlabel("time step t")
    for ax in axes[:, 0]:
        ax.set_ylabel("membrane potential")
    fig.suptitle(
        "snn_cuda neurons under a constant input (line: membrane after each step, dashed: threshold, ticks: spikes)",
        fontsize=11,
    )
    fig.tight_layout()
    path = os.path.join(out, "constant_input.png")
    save_png(fig, path)
    return path, counts


def noisy_figure(T, backend, out, seed):
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    x_lif = 1.1 + 0.8 * torch.randn(T, 1, generator=g)
    x_leaky = 0.12 + 0.25 * torch.randn(T, 1, generator=g)
    means = torch.linspace(0.9, 1.6, 16)
    x_raster = means + 0.6 * torch.randn(T, 16, generator=g)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    worst = 0.0
    for ax, (title, make, x, th) in zip(
        axes[:2],
        [
            ("LIF (tau=10), noisy input 1.1 ± 0.8", lambda m: lif(backend, step_mode=m, tau=10.0), x_lif, 1.0),
            (
                "Leaky (beta=0.9), noisy input 0.12 ± 0.25",
                lambda m: leaky(backend, step_mode=m, beta=0.9),
                x_leaky,
                1.0,
            ),
        ],
    ):
        s_m, v_m = run_multi(make("m"), x)
        s_s, v_s = run_single(make("s"), x)
        worst = max(worst, float((v_m - v_s).abs().max()), float((s_m - s_s).abs().max()))
        plot_traces(ax, [("multi-step: one call", s_m[:, 0], v_m[:, 0], "tab:blue")], title, [th])
        ax.plot(torch.arange(1, T + 1), v_s[:, 0], ".", color="tab:red", ms=3, label="single-step: T calls")
        ax.legend(fontsize=7.5, loc="lower right", framealpha=0.85)
        ax.set_xlabel("time step t")
    axes[0].set_ylabel("membrane potential")
    s, _ = run_multi(lif(backend, tau=10.0), x_raster)
    ax = axes[2]
    ax.eventplot(
        [torch.nonzero(s[:, i]).flatten().add(1).tolist() for i in range(s.shape[1])],
        colors="k",
        lineoffsets=range(16),
        linelengths=0.7,
        linewidths=1.0,
    )
    ax.set_title("16 LIF neurons (tau=10), mean input 0.9 … 1.6", fontsize=10)
    ax.set_xlabel("time step t")
    ax.set_ylabel("neuron")
    ax.set_xlim(0, T + 1)
    fig.tight_layout()
    path = os.path.join(out, "noisy_input.png")
    save_png(fig, path)
    return path, worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--out", default="neuron_dynamics", help="folder for the PNG files (default ./neuron_dynamics)")
    p.add_argument("--T", type=int, default=80, help="time steps (default 80)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "fused", "torch"),
        help="auto: the compiled kernels when built, else the reference (default)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("error: this example needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    info = snn_cuda.build_info()
    print(
        f"snn_cuda {info['version']}, backend {args.backend!r} "
        f"(compiled CPU kernels: {'yes' if info['cpu'] else 'no, the reference runs'})"
    )
    path1, counts = constant_figure(args.T, args.backend, args.out)
    for k, n in counts.items():
        print(f"  {k}: {n} spikes in {args.T} steps")
    path2, worst = noisy_figure(args.T, args.backend, args.out, args.seed)
    print(f"  multi-step vs single-step: max difference {worst:g} (the same computation)")
    print(f"wrote {path1}, {path2}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
