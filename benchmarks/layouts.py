"""Sequence layouts without copies: `batch_first=True` and channels-last conv activations,
against what code does without them.

    python benchmarks/layouts.py [--B 64] [--T 32] [--F 1024] [--image 16,32,32] [--reps 10]
                                 [--threads N] [--device cpu|cuda] [--json PATH]

batch_first, for LIF, Leaky (snnTorch's, membrane returned) and Synaptic on x [B, T, F]:
  * fused batch_first:  layer(batch_first=True)(x), x read and outputs written in place;
  * permute + copy:     layer(x.transpose(0, 1).contiguous()).transpose(0, 1).contiguous()
                        (the SpikeGPT / RWKV wrapping: a full copy each way, forward and backward);
  * time-major:         the layer on data that is already [T, B, F] (the floor: no layout work).
channels-last, LIF on a conv activation [T, B, C, H, W] whose steps are channels-last (what a
channels_last Conv2d over [T*B, C, H, W] gives after .view(T, B, C, H, W)):
  * as given (snn_cuda reads it in place when the layer's parameters are scalars);
  * .contiguous() first, then the layer (the copy the old kernels made).

Forward + backward (loss sum(out * r)), median milliseconds of interleaved rounds, on one
device in one process, with the machine named.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("snn_cuda") is None and os.path.isdir(os.path.join(_ROOT, "snn_cuda")):
    sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import snn_cuda  # noqa: E402
from machine import describe, line  # noqa: E402


def median_ms(fns, reps: int, rounds: int, sync) -> list:
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            fn()
            sync()
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                sync()
                ts.append(time.perf_counter() - t0)
    return [1e3 * statistics.median(ts) for ts in times]


def first(out):
    return out[0] if isinstance(out, tuple) else out


def step(layer, x, r, wrap=None):
    def fn():
        snn_cuda.functional.reset_net(layer)
        xi = x.detach().requires_grad_(True)
        out = first(layer(xi if wrap is None else wrap[0](xi)))
        if wrap is not None:
            out = wrap[1](out)
        (out * r).sum().backward()

    return fn


LAYERS = {
    "lif": lambda bf: snn_cuda.LIF(tau=2.0, batch_first=bf),
    "leaky": lambda bf: snn_cuda.Leaky(beta=0.9, batch_first=bf),
    "synaptic": lambda bf: snn_cuda.Synaptic(alpha=0.8, beta=0.9, return_states=False, batch_first=bf),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--F", type=int, default=1024)
    ap.add_argument("--image", default="16,32,32", help="C,H,W of the channels-last case")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    hw = describe(torch.get_num_threads())
    print(line(hw))
    g = torch.Generator().manual_seed(0)
    results = {"machine": hw, "args": vars(a), "batch_first": {}, "channels_last": {}}

    B, T, F = a.B, a.T, a.F
    x_bf = (torch.rand(B, T, F, generator=g) * 1.5).to(dev)
    x_tm = x_bf.transpose(0, 1).contiguous()
    r_bf = torch.randn(B, T, F, generator=g).to(dev)
    r_tm = r_bf.transpose(0, 1).contiguous()
    print(f"\nbatch_first: x [B={B}, T={T}, F={F}] fp32, forward + backward, median ms")
    print(f"{'layer':10} {'fused batch_first':>18} {'permute + copy':>15} {'time-major':>11} {'copy / bf':>10}")
    for name, make in LAYERS.items():
        bf, tm = make(True).to(dev), make(False).to(dev)
        perm = (lambda x: x.transpose(0, 1).contiguous(), lambda y: y.transpose(0, 1).contiguous())
        t_bf, t_perm, t_tm = median_ms(
            [step(bf, x_bf, r_bf), step(tm, x_bf, r_bf, perm), step(tm, x_tm, r_tm)], a.reps, a.rounds, sync
        )
        results["batch_first"][name] = {"batch_first_ms": t_bf, "permute_copy_ms": t_perm, "time_major_ms": t_tm}
        print(f"{name:10} {t_bf:18.2f} {t_perm:15.2f} {t_tm:11.2f} {t_perm / t_bf:9.2f}x")

    C, H, W = (int(v) for v in a.image.split(","))
    conv_out = torch.rand(T * B, C, H, W, generator=g).mul(1.5).to(dev).contiguous(memory_format=torch.channels_last)
    x_cl = conv_out.view(T, B, C, H, W)
    r_cl = torch.randn(T, B, C, H, W, generator=g).to(dev)
    lif = snn_cuda.LIF(tau=2.0).to(dev)
    t_cl, t_copy = median_ms(
        [step(lif, x_cl, r_cl), step(lif, x_cl, r_cl, (lambda x: x.contiguous(), lambda y: y))],
        a.reps,
        a.rounds,
        sync,
    )
    results["channels_last"] = {"shape": [T, B, C, H, W], "in_place_ms": t_cl, "contiguous_first_ms": t_copy}
    print(f"\nchannels-last: LIF on [T={T}, B={B}, C={C}, H={H}, W={W}] fp32, forward + backward, median ms")
    print(f"  read in place {t_cl:.2f}   .contiguous() first {t_copy:.2f}   ({t_copy / t_cl:.2f}x)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
