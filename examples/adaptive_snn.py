#!/usr/bin/env python
"""Adaptive LIF vs plain LIF on a temporal task: Fashion-MNIST (or MNIST) read row by row.

Each 28x28 image is a sequence of T = 28 steps of 28 inputs (one pixel row per step), so the
class must be integrated over time: the setting where adaptive neurons (Bittar & Garner 2022,
the sparch code base) help. Two networks of the same size are trained from the same seeds:

    adlif: Linear(28, H) -> AdLIF(H) -> Linear(H, H) -> AdLIF(H) -> Linear(H, 10)
    lif:   Linear(28, H) -> Leaky(0.9) -> Linear(H, H) -> Leaky(0.9) -> Linear(H, 10)

The logits are the readout averaged over the 28 steps; cross-entropy, Adam. It prints the test
accuracy of each network per seed (mean and spread), and the training throughput of the fused
AdLIF network against the pure-PyTorch reference loop (timed on --ref-batches batches).

    python examples/adaptive_snn.py --data-dir DIR            # DIR/FashionMNIST/raw or DIR/MNIST/raw
    python examples/adaptive_snn.py --epochs 5 --seeds 0 1 2 --hidden 128
    python examples/adaptive_snn.py --quick                   # a few batches (CI)

The SHD spoken-digit dataset (through `tonic`) is the benchmark adLIF was made for; it needs a
download and is not wired in here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))  # data.py: IDX files -> uint8 tensors
sys.path.insert(0, _ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import snn_cuda  # noqa: E402
from snn_cuda import functional  # noqa: E402

import data  # noqa: E402


class Net(nn.Module):
    def __init__(self, kind: str, hidden: int, backend: str = "auto"):
        super().__init__()

        def neuron():
            if kind == "adlif":
                return snn_cuda.AdLIF(hidden, backend=backend)
            return snn_cuda.Leaky(beta=0.9, return_mem=False, backend=backend)

        self.fc1, self.n1 = nn.Linear(28, hidden), neuron()
        self.fc2, self.n2 = nn.Linear(hidden, hidden), neuron()
        self.out = nn.Linear(hidden, 10)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.squeeze(1).permute(1, 0, 2)  # [B, 1, 28, 28] -> [T=28 rows, B, 28 pixels]
        s = self.n1(self.fc1(x))
        s = self.n2(self.fc2(s))
        return self.out(s).mean(0)


def evaluate(net: nn.Module, split, batch_size: int, limit=None) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for img, label in data.batches(split, batch_size, shuffle=False, limit=limit):
            functional.reset_net(net)
            correct += int((net(img).argmax(1) == label).sum())
            total += label.numel()
    net.train()
    return 100.0 * correct / max(total, 1)


def train(kind, ds, args, seed, backend="auto", limit=None, log=print):
    torch.manual_seed(seed)
    net = Net(kind, args.hidden, backend).to(args.device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(seed)
    samples, t_train = 0, 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for img, label in data.batches(ds.train, args.batch_size, shuffle=True, generator=g, limit=limit):
            functional.reset_net(net)
            loss = F.cross_entropy(net(img), label)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            samples += label.numel()
        t_train += time.perf_counter() - t0
        acc = evaluate(net, ds.test, 1000, limit=args.test_batches)
        log(f"  {kind} seed {seed} epoch {epoch + 1}: test accuracy {acc:.2f} %")
    return acc, samples / max(t_train, 1e-9)


def throughput(kind, ds, args, backend, batches):
    """Training samples/s over `batches` batches after 2 warm-up batches."""
    torch.manual_seed(0)
    net = Net(kind, args.hidden, backend).to(args.device)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    it = data.batches(ds.train, args.batch_size, shuffle=False)
    n, t = 0, 0.0
    for i, (img, label) in enumerate(it):
        if i == batches + 2:
            break
        t0 = time.perf_counter()
        functional.reset_net(net)
        loss = F.cross_entropy(net(img), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= 2:
            t += time.perf_counter() - t0
            n += label.numel()
    return n / max(t, 1e-9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="auto", choices=data.DATASETS)
    ap.add_argument("--data-dir", default="./data")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ref-batches", type=int, default=20, help="batches timed for the reference's throughput")
    ap.add_argument("--test-batches", type=int, default=None, help="limit the test set (batches of 1000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="2 seeds x 1 epoch of 4 batches: a smoke run")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()
    limit = None
    if args.quick:
        args.epochs, args.seeds, args.ref_batches, args.test_batches, limit = 1, args.seeds[:2], 2, 1, 4

    ds = data.load_for_example(args.dataset, args.data_dir).to(args.device)
    print(
        f"{data.PRETTY.get(ds.name, ds.name)} row by row (T=28 x 28 inputs), hidden {args.hidden}, "
        f"{args.epochs} epoch(s), seeds {args.seeds}, device {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    results = {"dataset": ds.name, "epochs": args.epochs, "hidden": args.hidden, "seeds": args.seeds, "acc": {}}
    for kind in ("adlif", "lif"):
        accs, rates = [], []
        for seed in args.seeds:
            acc, rate = train(kind, ds, args, seed, limit=limit)
            accs.append(acc)
            rates.append(rate)
        results["acc"][kind] = accs
        results[f"{kind}_fused_samples_per_s"] = statistics.median(rates)
    print("\ntest accuracy (%) after", args.epochs, "epoch(s):")
    for kind, accs in results["acc"].items():
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"  {kind:6s} "
            + "  ".join(f"{a:.2f}" for a in accs)
            + f"   mean {statistics.mean(accs):.2f} ± {spread:.2f}"
        )
    fused = throughput("adlif", ds, args, "fused", max(args.ref_batches, 2))
    ref = throughput("adlif", ds, args, "torch", args.ref_batches)
    results["adlif_throughput"] = {"fused": fused, "reference": ref, "ratio": fused / ref}
    print(
        f"\nAdLIF training throughput: fused {fused:,.0f} samples/s, reference loop {ref:,.0f} samples/s "
        f"({args.ref_batches} batches of {args.batch_size}): {fused / ref:.1f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
