"""NeuronLinear(ILIF, SpikeLinear) (counts kept as uint8) against ILIF followed by nn.Linear (the
float counts kept by autograd): forward + backward time and the bytes autograd saves.

    python benchmarks/ilif_linear.py [--T 16] [--B 64] [--n 1024] [--k 256] [--d 4] [--dtype float32] [--threads N]

Prints the median milliseconds of forward + backward (loss sum(y * r)), the forward alone, and
the bytes of every tensor autograd saves for each, on torch's default thread count (--threads). The input is
scaled so that counts above 1 are common (about a third of the neuron-steps fire).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch
from torch import nn

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("snn_cuda") is None and os.path.isdir(os.path.join(_ROOT, "snn_cuda")):
    sys.path.insert(0, _ROOT)

import snn_cuda  # noqa: E402


def median_ms(fns, reps: int, rounds: int = 3):
    """Median ms of each fn; rounds alternate between them so that other processes' noise is
    spread over all."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            for _ in range(2):
                fn()
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(ts) for ts in times]


def saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--d", type=int, default=4, help="max_spike_count")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dt = getattr(torch, a.dtype)
    torch.manual_seed(0)
    kw = dict(tau=2.0, v_threshold=1.0, max_spike_count=a.d)
    fused = snn_cuda.NeuronLinear(snn_cuda.ILIF(**kw), snn_cuda.SpikeLinear(a.n, a.k)).to(dt)
    ilif, lin = snn_cuda.ILIF(**kw), nn.Linear(a.n, a.k).to(dt)
    lin.load_state_dict(fused.linear.state_dict())
    x = (torch.randn(a.T, a.B, a.n) * 1.5 + 0.5).to(dt).requires_grad_()
    r = torch.randn(a.T, a.B, a.k).to(dt)

    def run_fused():
        fused.neuron.reset()
        return fused(x)

    def run_unfused():
        ilif.reset()
        return lin(ilif(x))

    def train(f):
        def go():
            (f() * r).sum().backward()

        return go

    def fwd(f):
        def go():
            with torch.no_grad():
                f()

        return go

    counts = ilif(x).detach()
    ilif.reset()
    fire = float((counts > 0).float().mean())
    multi = float((counts > 1).float().mean())
    tf, tu, ff, fu = median_ms([train(run_fused), train(run_unfused), fwd(run_fused), fwd(run_unfused)], a.reps)
    sf, su = saved_bytes(run_fused), saved_bytes(run_unfused)
    print(
        f"x [{a.T}, {a.B}, {a.n}] -> {a.k}, D={a.d}, {a.dtype}, {torch.get_num_threads()} threads; "
        f"counts > 0: {fire:.2f}, > 1: {multi:.2f}"
    )
    print(f"forward+backward ms: NeuronLinear(ILIF, SpikeLinear) {tf:.2f} | ILIF + nn.Linear {tu:.2f}")
    print(f"forward (no_grad) ms: NeuronLinear {ff:.2f} | ILIF + nn.Linear {fu:.2f}")
    print(f"saved for backward: NeuronLinear {sf / 2**20:.2f} MiB | ILIF + nn.Linear {su / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
