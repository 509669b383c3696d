#!/usr/bin/env python
"""snnTorch tutorial 5 on snn_cuda's fused layers.

    784 -> Linear -> Leaky(beta=0.95) -> 1000 -> Linear -> Leaky(beta=0.95) -> 10

The static image is the input current at every one of 25 steps; loss = cross-entropy on the
output membrane summed over the steps; Adam lr 5e-4, betas (0.9, 0.999), batch 128, 1 epoch.
snnTorch reports 93.87 % MNIST test accuracy after that epoch (prediction: the output neuron
with the most spikes).

The tutorial recomputes `cur1 = fc1(x)` at every step; the input does not change, so here fc1 runs
once and the first Leaky layer reads that constant current at each of the 25 steps inside its
kernel; `NeuronLinear` applies fc2 to its spikes in the same op, over all steps at once, with the
[T, B, 1000] spikes kept as bytes (never as floats); each Leaky layer is one fused op over the
sequence.

    python examples/snntorch_tutorial5.py                             # MNIST (downloads it)
    python examples/snntorch_tutorial5.py --data-dir DIR   # DIR/MNIST/raw or DIR/FashionMNIST/raw (default ./data)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))  # data.py: IDX files -> uint8 tensors
sys.path.insert(0, _ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

import snn_cuda  # noqa: E402
from snn_cuda import functional  # noqa: E402

import data  # noqa: E402

num_inputs, num_hidden, num_outputs = 28 * 28, 1000, 10
beta = 0.95


class Net(nn.Module):
    def __init__(self, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        # lif1 -> fc2 as one op. ATan surrogate, subtract reset: snnTorch's defaults.
        self.hidden = snn_cuda.NeuronLinear(
            snn_cuda.Leaky(beta=beta, return_mem=False), nn.Linear(num_hidden, num_outputs)
        )
        self.lif2 = snn_cuda.Leaky(beta=beta)

    def forward(self, x):
        functional.reset_net(self)
        cur1 = self.fc1(x)  # [B, 1000], once
        cur2 = self.hidden(cur1, T=self.num_steps)  # [T, B, 10]: lif1 over T steps, then fc2
        spk2, mem2 = self.lif2(cur2)  # [T, B, 10] each
        return spk2, mem2


def test_accuracy(net, split, batch_size):
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for img, targets in data.batches(split, batch_size, shuffle=False):
            spk_rec, _ = net(img.flatten(1))
            correct += int((spk_rec.sum(0).argmax(1) == targets).sum())
            total += targets.numel()
    net.train()
    return correct, total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-steps", "-T", type=int, default=25)
    p.add_argument("--batch-size", "-b", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dataset",
        default="auto",
        choices=data.DATASETS,
        help="auto: MNIST (downloaded when missing), else Fashion-MNIST found in --data-dir",
    )
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch (quick runs)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    try:
        ds = data.load_for_example(args.dataset, args.data_dir).to(args.device)
    except data.DatasetUnavailable as e:
        sys.exit(f"error: {e}")
    print(f"{ds.pretty}: {len(ds.train)} training / {len(ds.test)} test images on {args.device}")

    net = Net(args.num_steps).to(args.device)
    loss = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-4, betas=(0.9, 0.999))
    T = args.num_steps
    for epoch in range(args.epochs):
        t0, n = time.perf_counter(), 0
        gen = torch.Generator().manual_seed(args.seed + epoch)
        for it, (img, targets) in enumerate(
            data.batches(
                ds.train, args.batch_size, shuffle=True, generator=gen, drop_last=True, limit=args.limit_batches
            )
        ):
            spk_rec, mem_rec = net(img.flatten(1))
            # the tutorial's sum over steps of CrossEntropy(mem_rec[step], targets), in one call
            loss_val = loss(mem_rec.flatten(0, 1), targets.repeat(T)) * T
            optimizer.zero_grad()
            loss_val.backward()
            optimizer.step()
            n += targets.numel()
            if it % 50 == 0:
                acc = (spk_rec.sum(0).argmax(1) == targets).float().mean().item()
                print(
                    f"epoch {epoch + 1}, iteration {it}: train loss {loss_val.item():.2f}, "
                    f"train batch accuracy {100 * acc:.2f}%"
                )
        print(f"epoch {epoch + 1}: {n / (time.perf_counter() - t0):.0f} training samples/s")
    correct, total = test_accuracy(net, ds.test, args.batch_size)
    print(f"Total correctly classified test set images: {correct}/{total}")
    print(f"test accuracy: {100 * correct / total:.2f}% ({ds.pretty})")


if __name__ == "__main__":
    main()
