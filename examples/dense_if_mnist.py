#!/usr/bin/env python
"""The from-scratch surrogate-gradient tutorial's dense IF network on snn_cuda.

    pixels -> rate-encoding IF input layer (current = gain * pixel + bias; gain 1, bias 0)
           -> [Linear(bias=False) -> synaptic current -> IF] x 3   (784-256-256-10)

Each layer: weights ~ N(0, (2 / sqrt(fan_in))^2); synaptic current c_t = e^-1 c_{t-1} + W x_t;
IF with its potential floored at 0 (snn_cuda.IF(v_floor=0.0)), threshold 1, hard reset to 0,
reset detached from the graph, fast-sigmoid surrogate with slope 100. T = 100 steps, batch 500,
Adam (lr 1e-3), loss = negative log-likelihood of the log-softmax of the mean output firing
rates (the plain log of a rate is -inf for a silent neuron). The tutorial leaves the hidden
sizes open; 256-256 is used here.

Fused: the input layer reads the constant current at every step inside its kernel
(`inp(current, T=100)`), each Linear runs once over [T*B, ...], and the synaptic current and the
IF are one fused op each over the sequence. The dense Linear layers dominate the time.

    python examples/dense_if_mnist.py                             # MNIST (downloads it)
    python examples/dense_if_mnist.py --data-dir DIR   # DIR/MNIST/raw or DIR/FashionMNIST/raw (default ./data)
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "benchmarks"))  # data.py: IDX files -> uint8 tensors
sys.path.insert(0, _ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import snn_cuda  # noqa: E402
from snn_cuda import functional, surrogate  # noqa: E402

import data  # noqa: E402


def if_neuron():
    return snn_cuda.IF(
        v_threshold=1.0, v_reset=0.0, v_floor=0.0, detach_reset=True, surrogate=surrogate.FastSigmoid(slope=100.0)
    )


class DenseIF(nn.Module):
    def __init__(self, T: int, sizes=(784, 256, 256, 10), gain: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.T, self.gain, self.bias = T, gain, bias
        self.inp = if_neuron()
        self.fcs = nn.ModuleList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            lin = nn.Linear(fan_in, fan_out, bias=False)
            nn.init.normal_(lin.weight, 0.0, 2.0 / math.sqrt(fan_in))
            self.fcs.append(snn_cuda.SeqToANN(lin))
        self.syns = nn.ModuleList(snn_cuda.SynapticCurrent(decay=math.exp(-1.0)) for _ in self.fcs)
        self.ifs = nn.ModuleList(if_neuron() for _ in self.fcs)

    def forward(self, img):
        functional.reset_net(self)
        s = self.inp(self.gain * img.flatten(1) + self.bias, T=self.T)  # input spikes [T, B, 784]
        for fc, syn, neuron in zip(self.fcs, self.syns, self.ifs):
            s = neuron(syn(fc(s)))
        return s.mean(0)  # output firing rates [B, 10]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-T", type=int, default=100)
    p.add_argument("--batch-size", "-b", type=int, default=500)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dataset",
        default="auto",
        choices=data.DATASETS,
        help="auto: MNIST (downloaded when missing), else Fashion-MNIST found in --data-dir",
    )
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch (quick runs)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    try:
        ds = data.load_for_example(args.dataset, args.data_dir).to(args.device)
    except data.DatasetUnavailable as e:
        sys.exit(f"error: {e}")
    print(f"{ds.pretty}: {len(ds.train)} training / {len(ds.test)} test images on {args.device}")

    net = DenseIF(args.T).to(args.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss_sum = correct = n = 0
        gen = torch.Generator().manual_seed(args.seed + epoch)
        for img, label in data.batches(
            ds.train, args.batch_size, shuffle=True, generator=gen, drop_last=True, limit=args.limit_batches
        ):
            rates = net(img)
            loss = F.nll_loss(F.log_softmax(rates, dim=1), label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * label.numel()
            correct += int((rates.argmax(1) == label).sum())
            n += label.numel()
        dt = time.perf_counter() - t0
        print(
            f"epoch {epoch + 1}: train loss {loss_sum / n:.4f}, train acc {100.0 * correct / n:.2f}%, "
            f"{n / dt:.0f} samples/s"
        )
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for img, label in data.batches(ds.test, args.batch_size, shuffle=False):
            correct += int((net(img).argmax(1) == label).sum())
            total += label.numel()
    print(f"test accuracy: {100.0 * correct / total:.2f}% ({ds.pretty})")


if __name__ == "__main__":
    main()
