#!/usr/bin/env python
"""One training step of the reference and the fused implementation from identical weights and
an identical Fashion-MNIST batch: are they the same computation?

For tutorial5 (and lif_fc on a binarised batch, whose Poisson encoding is then deterministic) it
prints: whether the forward outputs are bitwise equal, the loss of each, the max relative
difference of every gradient (max |g_fused - g_ref| / max |g_ref|), the same in float64 (the
two implementations must then agree to ~1e-15 if they compute the same function), each float32
gradient against the float64 one, and, as a yardstick, the reference against itself with a
different thread count (a different summation order inside the matrix products).

    python benchmarks/grad_check.py --dataset fashion-mnist --data-dir ./data
"""

from __future__ import annotations

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import importlib.util  # noqa: E402

if importlib.util.find_spec("snn_cuda") is None:
    sys.path.insert(0, os.path.dirname(_HERE))

import torch  # noqa: E402

import data as data_mod  # noqa: E402
import nets  # noqa: E402


def rel(a, b) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300))


def one_step(net, impl, x, y, weights, dtype=torch.float32, threads=None, loss=None):
    if threads:
        torch.set_num_threads(threads)
    model = nets.build(net, impl, nets.NETS[net].T, weights).to(dtype)
    torch.manual_seed(0)
    out = model(x.to(dtype))
    lossf = loss or nets.loss_fn(net, impl)
    L = lossf(out, y)
    L.backward()
    grads = {}
    for i, lin in enumerate(model.linears()):  # the same order in every implementation
        for pname, prm in lin.named_parameters():
            grads[f"fc{i + 1}.{pname}"] = prm.grad.detach().clone()
    return out, L.detach(), grads


def fmt(ga, gb):
    return ", ".join(f"{k} {rel(ga[k], gb[k]):.2e}" for k in gb)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.path.join(".", "data"))
    p.add_argument("--dataset", default="fashion-mnist", choices=data_mod.DATASETS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ds = data_mod.load_dataset(
        args.dataset, args.data_dir, seed=args.seed, allow_download=False, log=lambda s: print(s, file=sys.stderr)
    )
    x, y = next(
        data_mod.batches(
            ds.train, 128, shuffle=True, generator=torch.Generator().manual_seed(args.seed), drop_last=True
        )
    )
    threads = torch.get_num_threads()
    from snn_cuda._paths import scrub_paths

    print(
        f"dataset {ds.name}, batch 128, seed {args.seed}, torch {torch.__version__}, {threads} threads, "
        f"snn_cuda from {scrub_paths(os.path.dirname(nets.snn_cuda.__file__), root=os.path.dirname(_HERE))}"
    )

    net = "tutorial5"
    w = nets.init_weights(net, args.seed)
    o_r, L_r, g_r = one_step(net, "reference", x, y, w)
    o_f, L_f, g_f = one_step(net, "fused", x, y, w)
    print(
        f"\n== {net} (T = {nets.NETS[net].T}): reference loss = tutorial's per-step sum, fused loss = "
        "_tutorial5_loss_fused"
    )
    print(
        f"forward ({threads} threads): spk2 bitwise equal {torch.equal(o_r[0], o_f[0])}, mem2 bitwise equal "
        f"{torch.equal(o_r[1], o_f[1])} (max abs diff {float((o_r[1] - o_f[1]).detach().abs().max()):.1e})"
    )
    o_r1, _, _ = one_step(net, "reference", x, y, w, threads=1)
    o_f1, _, _ = one_step(net, "fused", x, y, w, threads=1)
    torch.set_num_threads(threads)
    print(
        f"forward (1 thread): spk2 bitwise equal {torch.equal(o_r1[0], o_f1[0])}, mem2 bitwise equal "
        f"{torch.equal(o_r1[1], o_f1[1])} (with several threads MKL may sum fc2's [T*B, 1000] x [1000, 10] "
        "in another order than the per-step [B, 1000] products)"
    )
    print(f"loss: reference {L_r.item():.8f}, fused {L_f.item():.8f}, bitwise equal {torch.equal(L_r, L_f)}")
    print(f"grad max rel diff fused vs reference (fp32): {fmt(g_f, g_r)}")
    _, L_x, g_x = one_step(net, "fused", x, y, w, loss=nets.NETS[net].loss)
    print(
        f"fused net with the tutorial's per-step loss instead: loss bitwise equal {torch.equal(L_x, L_f)}, "
        f"grads vs fused loss: {fmt(g_x, g_f)}"
    )
    o_r64, _, g_r64 = one_step(net, "reference", x, y, w, dtype=torch.float64)
    o_f64, _, g_f64 = one_step(net, "fused", x, y, w, dtype=torch.float64)
    print(
        f"float64: forward bitwise equal {all(torch.equal(a, b) for a, b in zip(o_r64, o_f64))}; "
        f"grad max rel diff fused vs reference: {fmt(g_f64, g_r64)}"
    )
    print(f"fp32 vs fp64 gradient: reference {fmt(g_r, g_r64)}")
    print(f"                       fused     {fmt(g_f, g_r64)}")
    other = 1 if threads != 1 else 2
    _, _, g_r1 = one_step(net, "reference", x, y, w, threads=other)
    torch.set_num_threads(threads)
    print(f"yardstick: reference with {other} vs {threads} thread(s): {fmt(g_r1, g_r)}")

    net = "lif_fc"
    w = nets.init_weights(net, args.seed)
    xb = (x > 0.5).float()  # binary intensities: Poisson spikes = the image at every step, for both encoders
    o_r, L_r, g_r = one_step(net, "reference", xb, y, w)
    o_f, L_f, g_f = one_step(net, "fused", xb, y, w)
    print(f"\n== {net} (T = {nets.NETS[net].T}) on the batch binarised at 0.5 (deterministic encoding)")
    print(
        f"forward rates bitwise equal {torch.equal(o_r, o_f)}; loss reference {L_r.item():.8f}, fused "
        f"{L_f.item():.8f}; grad max rel diff fused vs reference: {fmt(g_f, g_r)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
