"""Swap snn_cuda's neurons into models written for SpikingJelly and snnTorch.

Builds the two seed networks as their tutorials do -- SpikingJelly's lif_fc_mnist
(single-step: Flatten -> Linear(784, 10, bias=False) -> LIFNode(tau=2, ATan), a Poisson
encoder and a per-step loop; MSE on the firing rate, Adam) and snnTorch tutorial 5
(784 -> Linear -> Leaky(beta=0.95) -> 1000 -> Linear -> Leaky -> 10, membranes passed
explicitly, cross-entropy on the membrane summed over the steps, Adam) -- plus a multi-step
SpikingJelly MLP with ParametricLIFNode (learnable tau: its `w` is carried over as the same
Parameter, so the optimiser trains it after conversion), converts a copy
of each with ``snn_cuda.convert(net, inplace=False)``, checks that outputs and gradients
are equal on random data, and times a training step before and after conversion in the
same run. The model's own forward code is unchanged: only the neuron modules are swapped.

    python examples/swap_into_model.py                   # CPU, small batch
    python examples/swap_into_model.py --threads 1       # steadier CPU timings on a busy machine
    python examples/swap_into_model.py --device cuda -b 128
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import snn_cuda  # noqa: E402


# --------------------------------------------------------------------------------------
# SpikingJelly lif_fc_mnist, single-step as in the tutorial
# --------------------------------------------------------------------------------------
def sj_setup(T: int):
    from spikingjelly.activation_based import encoding, functional, layer, neuron, surrogate

    class SNN(nn.Module):
        def __init__(self, tau):
            super().__init__()
            self.layer = nn.Sequential(
                layer.Flatten(),
                layer.Linear(28 * 28, 10, bias=False),
                neuron.LIFNode(tau=tau, surrogate_function=surrogate.ATan()),
            )

        def forward(self, x):
            return self.layer(x)

    encoder = encoding.PoissonEncoder()

    def train_step(net, opt, img, label, gen_seed):
        torch.manual_seed(gen_seed)  # same Poisson spikes for both nets
        opt.zero_grad()
        label_onehot = F.one_hot(label, 10).float()
        out_fr = 0.0
        for _ in range(T):
            out_fr = out_fr + net(encoder(img))
        out_fr = out_fr / T
        loss = F.mse_loss(out_fr, label_onehot)
        loss.backward()
        opt.step()
        functional.reset_net(net)
        return out_fr.detach(), loss.detach()

    return SNN(tau=2.0), train_step, (1, 28, 28), lambda p: torch.optim.Adam(p, lr=1e-3)


# --------------------------------------------------------------------------------------
# SpikingJelly PLIF MLP, multi-step (learnable tau, Fang et al. 2021)
# --------------------------------------------------------------------------------------
def sj_plif_setup(T: int):
    from spikingjelly.activation_based import encoding, functional, layer, neuron, surrogate

    net = nn.Sequential(
        layer.Flatten(),
        layer.Linear(28 * 28, 256, bias=False),
        neuron.ParametricLIFNode(init_tau=2.0, surrogate_function=surrogate.ATan()),
        layer.Linear(256, 10, bias=False),
        neuron.ParametricLIFNode(init_tau=2.0, surrogate_function=surrogate.ATan()),
    )
    functional.set_step_mode(net, "m")  # the whole [T, B, ...] sequence per call
    encoder = encoding.PoissonEncoder()

    def train_step(net, opt, img, label, gen_seed):
        torch.manual_seed(gen_seed)  # same Poisson spikes for both nets
        x_seq = torch.stack([encoder(img) for _ in range(T)])
        opt.zero_grad()
        out_fr = net(x_seq).mean(0)
        loss = F.mse_loss(out_fr, F.one_hot(label, 10).float())
        loss.backward()
        opt.step()
        functional.reset_net(net)
        return out_fr.detach(), loss.detach()

    return net, train_step, (1, 28, 28), lambda p: torch.optim.Adam(p, lr=1e-3)


# --------------------------------------------------------------------------------------
# snnTorch tutorial 5
# --------------------------------------------------------------------------------------
def snntorch_setup(T: int):
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 1000)
            self.lif1 = snn.Leaky(beta=0.95)
            self.fc2 = nn.Linear(1000, 10)
            self.lif2 = snn.Leaky(beta=0.95)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec, mem2_rec = [], []
            for _ in range(T):
                cur1 = self.fc1(x)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
                mem2_rec.append(mem2)
            return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)

    def train_step(net, opt, img, label, gen_seed):
        spk_rec, mem_rec = net(img.flatten(1))
        loss = torch.zeros((), device=img.device)
        for step in range(T):
            loss = loss + F.cross_entropy(mem_rec[step], label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return spk_rec.detach(), loss.detach()

    return Net(), train_step, (784,), lambda p: torch.optim.Adam(p, lr=5e-4, betas=(0.9, 0.999))


# --------------------------------------------------------------------------------------
def compare(name, setup, args):
    torch.manual_seed(0)
    net, train_step, shape, make_opt = setup(args.T)
    net = net.to(args.device)
    report = snn_cuda.convert(net, inplace=False)
    conv = report.model
    print(f"\n== {name} ==\n{report}")

    gen = torch.Generator().manual_seed(1)
    img = torch.rand(args.batch_size, *shape, generator=gen).to(args.device)
    label = torch.randint(0, 10, (args.batch_size,), generator=gen).to(args.device)

    # equality: a few training steps on each, same data (optimisers: SGD here, so that
    # fp-roundoff gradient differences stay roundoff-sized; the timing uses the tutorial's)
    ref_c, conv_c = copy.deepcopy(net), copy.deepcopy(conv)
    oa, ob = torch.optim.SGD(ref_c.parameters(), lr=0.05), torch.optim.SGD(conv_c.parameters(), lr=0.05)
    worst_out = worst_param = 0.0
    for i in range(args.check_steps):
        out_a, loss_a = train_step(ref_c, oa, img, label, i)
        out_b, loss_b = train_step(conv_c, ob, img, label, i)
        assert torch.equal(out_a, out_b), f"{name}: outputs differ at step {i}"
        worst_out = max(worst_out, abs(float(loss_a) - float(loss_b)))
        for pa, pb in zip(ref_c.parameters(), conv_c.parameters()):
            worst_param = max(worst_param, float((pa - pb).detach().abs().max()))
    print(
        f"equal outputs over {args.check_steps} training steps; |loss diff| <= {worst_out:.2e}, "
        f"|param diff| <= {worst_param:.2e}"
    )
    assert worst_param < 1e-4, f"{name}: parameters drifted apart ({worst_param})"

    # timing: the tutorial's optimiser, same batch, same run; the two models alternate step by
    # step and the median is reported (robust to other load on the machine)
    runs = {}
    for label_, model in (("before", net), ("after", conv)):
        model = copy.deepcopy(model)
        opt = make_opt(model.parameters())
        for i in range(args.warmup):
            train_step(model, opt, img, label, i)
        runs[label_] = (model, opt, [])
    for i in range(args.iters):
        for label_ in ("before", "after") if i % 2 == 0 else ("after", "before"):
            model, opt, ts = runs[label_]
            if args.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            train_step(model, opt, img, label, i)
            if args.device == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
    times = {k: statistics.median(v[2]) for k, v in runs.items()}
    print(
        f"training step (T={args.T}, batch {args.batch_size}, {args.device}, median of {args.iters}): "
        f"before {times['before'] * 1e3:.2f} ms, after {times['after'] * 1e3:.2f} ms "
        f"({times['before'] / times['after']:.2f}x)"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-T", type=int, default=25)
    p.add_argument("-b", "--batch-size", type=int, default=32)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--check-steps", type=int, default=3)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch.set_num_threads (0: torch's default); 1 gives steadier CPU timings on a busy machine",
    )
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ran = 0
    for name, setup, module in (
        ("SpikingJelly lif_fc_mnist (single-step)", sj_setup, "spikingjelly"),
        ("SpikingJelly PLIF MLP 784-256-10 (multi-step, learnable tau)", sj_plif_setup, "spikingjelly"),
        ("snnTorch tutorial 5", snntorch_setup, "snntorch"),
    ):
        try:
            __import__(module)
        except ImportError:
            print(f"\n== {name} ==\nskipped: {module} is not installed")
            continue
        compare(name, setup, args)
        ran += 1
    return 0 if ran else 1


if __name__ == "__main__":
    sys.exit(main())
