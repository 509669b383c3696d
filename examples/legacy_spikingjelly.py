"""A model written for SpikingJelly 0.0.0.0.12 with backend='cupy', trained without CuPy.

Spikformer / SEW-ResNet / SpikeGPT-era code builds its neurons as
``clock_driven.neuron.MultiStepLIFNode(tau=2.0, detach_reset=True, backend='cupy')``; without a
working CuPy that fails in SpikingJelly's ``check_backend``. One added line,
``snn_cuda.compat.patch_spikingjelly()``, before the model is built makes it construct and run
its neurons on snn_cuda's fused kernels. This script builds a small multi-step MLP of that
kind (784-256-10, T steps, rate-coded synthetic data of Fashion-MNIST's shape), trains it a few
Adam steps with the patched ``backend='cupy'`` nodes and, from the same initial weights, with
SpikingJelly's own ``backend='torch'`` loop, checks that both give the same losses, and prints
the time per training step of each.

    pip install --no-deps --target ~/sj012 spikingjelly==0.0.0.0.12   # not into an env with SJ 2.0
    python examples/legacy_spikingjelly.py --sj-path ~/sj012
    python examples/legacy_spikingjelly.py --sj-path ~/sj012 --quick   # a few seconds

``--sj-path`` defaults to $SNN_CUDA_LEGACY_SJ_012; with no SpikingJelly 0.0.0.0.12 importable
the script says so and exits 0.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sj-path", default=os.environ.get("SNN_CUDA_LEGACY_SJ_012"), help="folder holding spikingjelly 0.0.0.0.12"
    )
    p.add_argument("-T", type=int, default=16, help="time steps")
    p.add_argument("-b", "--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="training steps per backend (the first is a warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--quick", action="store_true", help="tiny settings, for the tests")
    p.add_argument("--hide-cupy", action="store_true", help="behave as on a machine without CuPy")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.quick:
        args.T, args.batch, args.steps = 4, 8, 3
    if args.hide_cupy:
        sys.modules["cupy"] = None
    if args.sj_path:
        sys.path.insert(0, os.path.expanduser(args.sj_path))
    try:
        # The model module's own imports, as published code has them (before the patch line).
        from spikingjelly.clock_driven import functional
        from spikingjelly.clock_driven.neuron import MultiStepLIFNode
    except ImportError as e:
        print(
            f"SKIP: SpikingJelly 0.0.0.0.12 (spikingjelly.clock_driven) is not importable ({e}); "
            "install it with pip install --no-deps --target DIR spikingjelly==0.0.0.0.12 and pass --sj-path DIR"
        )
        return 0

    import torch
    import torch.nn.functional as F
    from torch import nn

    import snn_cuda

    report = snn_cuda.compat.patch_spikingjelly()  # the one added line
    print(report)
    if args.threads:
        torch.set_num_threads(args.threads)

    class Net(nn.Module):  # as 0.0.0.0.12-era code writes it
        def __init__(self, backend: str):
            super().__init__()
            self.fc1 = nn.Linear(784, 256)
            self.lif1 = MultiStepLIFNode(tau=2.0, detach_reset=True, backend=backend)
            self.fc2 = nn.Linear(256, 10)
            self.lif2 = MultiStepLIFNode(tau=2.0, detach_reset=True, backend=backend)
            with torch.no_grad():  # a larger initial gain than nn.Linear's: both layers fire from the start
                self.fc1.weight.mul_(8.0)
                self.fc2.weight.mul_(8.0)

        def forward(self, x_seq):  # [T, B, 784] -> firing rate [B, 10]
            T, B = x_seq.shape[:2]
            h = self.lif1(self.fc1(x_seq.flatten(0, 1)).reshape(T, B, -1))
            return self.lif2(self.fc2(h.flatten(0, 1)).reshape(T, B, -1)).mean(0)

    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(10, 784, generator=g)  # one intensity image per class, plus noise
    batches = []
    for _ in range(args.steps):
        y = torch.randint(0, 10, (args.batch,), generator=g)
        img = (protos[y] + 0.3 * torch.rand(args.batch, 784, generator=g)).clamp(0, 1)
        x_seq = (torch.rand(args.T, args.batch, 784, generator=g) < img).float()  # Poisson rate code
        batches.append((x_seq.to(device), y.to(device)))

    torch.manual_seed(0)
    fused = Net("cupy").to(device)
    ref = Net("torch").to(device)
    ref.load_state_dict(copy.deepcopy(fused.state_dict()))

    def train(net):
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        losses, times = [], []
        for x_seq, y in batches:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = net(x_seq)
            loss = F.mse_loss(out, F.one_hot(y, 10).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            functional.reset_net(net)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            losses.append(loss.item())
        return losses, times

    lf, tf = train(fused)
    lr, tr = train(ref)
    print(f"T={args.T} batch={args.batch} steps={args.steps} device={device} threads={torch.get_num_threads()}")
    print("losses, backend='cupy' (snn_cuda fused):", " ".join(f"{v:.6f}" for v in lf))
    print("losses, backend='torch' (SpikingJelly):  ", " ".join(f"{v:.6f}" for v in lr))
    worst = max(abs(a - b) for a, b in zip(lf, lr))
    print(f"max |loss difference| {worst:.3g}")
    if worst > 1e-4:
        print("FAIL: the fused and SpikingJelly losses differ")
        return 1
    med = [statistics.median(t[1:] if len(t) > 1 else t) * 1e3 for t in (tf, tr)]
    print(
        f"time per training step (median after the first): fused {med[0]:.1f} ms, "
        f"SpikingJelly torch {med[1]:.1f} ms, speed-up {med[1] / med[0]:.2f}x"
    )
    if report.fallbacks:
        print("FAIL: some nodes fell back to SpikingJelly's torch code")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
