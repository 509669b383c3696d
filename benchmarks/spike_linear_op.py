"""Timing of snn_cuda's spike_linear / spike_linear_weight_grad CPU ops against torch on widened
spikes, for the hidden -> output layer of snnTorch tutorial 5 (spikes [T*B, N] = [3200, 1000]).

    python benchmarks/spike_linear_op.py [--rows 3200] [--n 1000] [--density 0.2] [--ks 10,32,...]

Prints median milliseconds (fp32 unless --dtype float64, torch's default thread count) of
  forward:  spike_linear(uint8)  |  F.linear(float spikes, W, b)  |  uint8_to + F.linear
  backward: spike_linear_weight_grad(gy, uint8)  |  gy.t() @ float spikes  |  uint8_to + gy.t() @ ...
Above the op's K threshold (kFwdMaxK / kGradMaxK in csrc/cpu/spike_linear_cpu.cpp) the op itself
runs uint8_to + MKL, so its column then shows the fallback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# Run from a source checkout (`python setup.py build_ext --inplace`) without installing.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("snn_cuda") is None and os.path.isdir(os.path.join(_ROOT, "snn_cuda")):
    sys.path.insert(0, _ROOT)

import snn_cuda  # noqa: E402,F401  (registers the ops)

OP = torch.ops.snn_cuda


def cpu_name() -> str:
    # neuron_op.hardware reads /proc/cpuinfo for the model name and the widest ISA.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from neuron_op import hardware

    hw = hardware("cpu", torch.get_num_threads())
    return f"{hw['cpu']} ({hw['cpu_isa']})"


def median_ms(fns, reps: int, rounds: int = 3):
    """Median milliseconds of each of `fns` over `rounds` rounds of `reps` back-to-back calls
    (warm caches, as in a loop over batches); the rounds alternate between the functions so that
    noise from other processes is spread over all of them."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            for _ in range(5):
                fn()
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3200)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--density", type=float, default=0.2)
    ap.add_argument("--ks", default="10,32,64,128,256,1000")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    dt = getattr(torch, args.dtype)
    torch.manual_seed(0)
    s = (torch.rand(args.rows, args.n) < args.density).to(torch.uint8)
    sf = s.to(dt)
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"spikes [{args.rows}, {args.n}] uint8, density {args.density}, {args.dtype}, median ms")
    short = {"float32": "f32", "float64": "f64"}[args.dtype]
    hdr = (
        f"{'K':>5} | {'spike_linear':>12} {f'F.linear({short})':>13} {'u8_to+linear':>12} | "
        f"{'weight_grad':>11} {'gy.t()@s':>9} {'u8_to+mm':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for K in [int(k) for k in args.ks.split(",")]:
        W = torch.randn(K, args.n, dtype=dt) * 0.03
        b = torch.randn(K, dtype=dt)
        gy = torch.randn(args.rows, K, dtype=dt)
        sw = lambda: OP.uint8_to(s, dt)  # noqa: E731
        f_op, f_lin, f_wid, g_op, g_mm, g_wid = median_ms(
            [
                lambda: OP.spike_linear(s, W, b),
                lambda: F.linear(sf, W, b),
                lambda: F.linear(sw(), W, b),
                lambda: OP.spike_linear_weight_grad(gy, s),
                lambda: gy.t() @ sf,
                lambda: gy.t() @ sw(),
            ],
            args.reps,
        )
        print(f"{K:>5} | {f_op:>12.3f} {f_lin:>13.3f} {f_wid:>12.3f} | {g_op:>11.3f} {g_mm:>9.3f} {g_wid:>9.3f}")


if __name__ == "__main__":
    main()
