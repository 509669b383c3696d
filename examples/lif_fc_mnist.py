#!/usr/bin/env python
"""SpikingJelly's lif_fc_mnist on snn_cuda's fused layers.

    Flatten -> Linear(784, 10, bias=False) -> LIF(tau=2.0, ATan surrogate)

Poisson-encoded input over T = 100 steps, loss = MSE between the output firing rate and the
one-hot label, Adam lr 1e-3, batch 128. SpikingJelly reports 92.5-92.9 % MNIST test accuracy
after 100 epochs (most of it after the first few).

The tutorial's loop `for t in range(T): out_fr += net(encoder(img))` becomes one call per layer:
the encoder draws all T steps at once, the Linear runs once over [T*B, 784] and the LIF neuron is
one fused op over the whole sequence.

After training, as the tutorial shows, it plots for one test image the membrane potential and
the spikes of the output layer (a heatmap of v[t, neuron], the trace of the labelled neuron with
its spikes, and a raster of the 10 output neurons).

    python examples/lif_fc_mnist.py                                    # MNIST (downloads it)
    python examples/lif_fc_mnist.py --data-dir DIR     # DIR/MNIST/raw or DIR/FashionMNIST/raw (default ./data)
    python examples/lif_fc_mnist.py --epochs 5 --device cuda
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import snn_cuda  # noqa: E402
from snn_cuda import functional, surrogate  # noqa: E402

import data  # noqa: E402


class SNN(nn.Module):
    def __init__(self, T: int, tau: float = 2.0):
        super().__init__()
        self.encoder = snn_cuda.PoissonEncoder(T)  # [B, 1, 28, 28] -> [T, B, 1, 28, 28]
        self.fc = snn_cuda.SeqToANN(nn.Flatten(), nn.Linear(28 * 28, 10, bias=False))
        self.lif = snn_cuda.LIF(tau=tau, surrogate=surrogate.ATan())  # multi-step, fused

    def forward(self, img):
        return self.lif(self.fc(self.encoder(img)))  # spikes [T, B, 10]


def evaluate(net, split, batch_size, limit=None):
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for img, label in data.batches(split, batch_size, shuffle=False, limit=limit):
            out_fr = net(img).mean(0)
            functional.reset_net(net)
            correct += int((out_fr.argmax(1) == label).sum())
            total += label.numel()
    net.train()
    return 100.0 * correct / total


def plot_output_layer(net, img, label, T, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    net.eval()
    net.lif.store_v_seq = True
    with torch.no_grad():
        spikes = net(img.unsqueeze(0))[:, 0].cpu()  # [T, 10]
    v = net.lif.v_seq[:, 0].cpu()  # [T, 10]
    net.lif.store_v_seq = False
    functional.reset_net(net)
    print(
        f"firing rates of the output layer for a test image of class {label}: "
        f"{[round(float(r), 2) for r in spikes.mean(0)]}"
    )

    fig, axes = plt.subplots(3, 1, figsize=(8, 9))
    im = axes[0].imshow(v.T.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    axes[0].set(title="membrane potential of the output layer", xlabel="t", ylabel="neuron")
    fig.colorbar(im, ax=axes[0])
    axes[1].plot(range(T), v[:, label].numpy(), label=f"v (neuron {label})")
    st = spikes[:, label].nonzero().flatten().numpy()
    axes[1].vlines(st, 1.0, 1.4, color="red", label="spikes")
    axes[1].axhline(1.0, color="gray", ls="--", lw=0.8, label="threshold")
    axes[1].set(title=f"output neuron {label} (the label)", xlabel="t", ylabel="v")
    axes[1].legend(loc="upper right", fontsize=8)
    for n in range(spikes.shape[1]):
        ts = spikes[:, n].nonzero().flatten().numpy()
        axes[2].scatter(ts, [n] * len(ts), marker="|", s=60, color="C3" if n == label else "k")
    axes[2].set(title="spikes of the output layer", xlabel="t", ylabel="neuron", yticks=range(10), xlim=(-1, T))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-T", type=int, default=100)
    p.add_argument("-b", "--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1, help="the tutorial trains 100")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tau", type=float, default=2.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dataset",
        default="auto",
        choices=data.DATASETS,
        help="auto: MNIST (downloaded when missing), else Fashion-MNIST found in --data-dir",
    )
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch (quick runs)")
    p.add_argument("--out", default=os.path.join("benchmarks", "out", "lif_fc_mnist"), help="where the plots go")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    try:
        ds = data.load_for_example(args.dataset, args.data_dir).to(args.device)
    except data.DatasetUnavailable as e:
        sys.exit(f"error: {e}")
    print(f"{ds.pretty}: {len(ds.train)} training / {len(ds.test)} test images on {args.device}")

    net = SNN(args.T, args.tau).to(args.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        loss_sum = correct = n = 0
        gen = torch.Generator().manual_seed(args.seed + epoch)
        for img, label in data.batches(
            ds.train, args.batch_size, shuffle=True, generator=gen, limit=args.limit_batches
        ):
            out_fr = net(img).mean(0)  # firing rate [B, 10]
            loss = F.mse_loss(out_fr, F.one_hot(label, 10).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            functional.reset_net(net)
            loss_sum += loss.item() * label.numel()
            correct += int((out_fr.argmax(1) == label).sum())
            n += label.numel()
        dt = time.perf_counter() - t0
        acc = evaluate(net, ds.test, args.batch_size)
        print(
            f"epoch {epoch + 1}: train loss {loss_sum / n:.4f}, train acc {100.0 * correct / n:.2f}%, "
            f"{n / dt:.0f} samples/s, test acc {acc:.2f}%"
        )
    print(f"test accuracy: {acc:.2f}% ({ds.pretty})")

    try:
        os.makedirs(args.out, exist_ok=True)
        img, label = ds.test.images[0].float().div(255).unsqueeze(0), int(ds.test.labels[0])
        plot_output_layer(net, img, label, args.T, os.path.join(args.out, "output_layer.png"))
    except ImportError:
        print("matplotlib is not installed: no plots")


if __name__ == "__main__":
    main()
