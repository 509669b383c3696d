#!/usr/bin/env python
"""A small Spikformer (Zhou et al. 2023) on snn_cuda's fused LIF layers, Fashion-MNIST at T = 4.

The image is shown at each of T = 4 steps, as in Spikformer. The model:

    SPS (spiking patch splitting), 28x28 -> 7x7 = 49 tokens of D channels:
        Conv3x3(1, D/4) + BN + LIF -> MaxPool -> Conv3x3(D/4, D/2) + BN + LIF -> MaxPool
        -> Conv3x3(D/2, D) + BN + LIF;  x = x + LIF(BN(Conv3x3(D, D)(x)))    (relative position)
    encoder block(s), on [T, B, 49, D]:
        SSA:  Q, K, V = LIF(BN(Linear(x)));  A = Q K^T V * 0.125   (no softmax: spikes are >= 0)
              x = x + LIF(BN(Linear(LIF_0.5(A))))
        MLP:  x = x + LIF(BN(Linear(LIF(BN(Linear(x))))))          (D -> mlp-ratio * D -> D)
    head: the mean over tokens, Linear(D, 10), the mean over the T steps; cross-entropy, AdamW.

Every LIF is Spikformer's `MultiStepLIFNode(tau=2.0, detach_reset=True)` (hard reset to 0, the
sigmoid surrogate with alpha 4; the attention LIF fires at 0.5). Here they are `snn_cuda.LIF`
layers: one fused kernel per layer and direction over all T steps instead of a Python loop over
the steps. The first convolution sees the same image at every step, so it runs once on [B, ...]
and its LIF takes that constant input for T steps (`lif(x, T=4)`); the later layers run once over
[T*B, ...] (`snn_cuda.SeqToANN`). Linear layers whose input is binary spikes keep it as bytes for
the backward (`snn_cuda.SpikeLinear(binary=True)`).

It prints the test accuracy after each epoch and the training throughput of the model on the fused
kernels against the same model on snn_cuda's pure-PyTorch reference neurons (`backend="torch"`),
timed in interleaved rounds from the same weights and batches; their first-step losses must be
equal bit for bit, since the fused neurons give the reference's spikes bit for bit.

The same model is built against legacy SpikingJelly (0.0.0.0.12: `clock_driven.neuron.
MultiStepLIFNode`, `clock_driven.layer.SeqToANNContainer`, as Spikformer's own code is written)
and, when that SpikingJelly is importable and `snn_cuda.compat.patch_spikingjelly()` exists, its
`backend='cupy'` neurons run on snn_cuda's kernels after the patch (no CuPy needed); it is timed
against SpikingJelly's `backend='torch'`. Otherwise that part is skipped with a one-line message.

    python examples/spiking_transformer.py --data-dir DIR     # DIR/FashionMNIST/raw (default ./data)
    python examples/spiking_transformer.py --quick            # a few batches: a smoke run (CI)
    PYTHONPATH=<folder holding spikingjelly 0.0.0.0.12> python examples/spiking_transformer.py
    python examples/spiking_transformer.py --legacy-sj <that folder>     # the same

CIFAR-10 (Spikformer's own small benchmark) is not wired in: it needs a download and far more
than this example's CPU budget (about 10 minutes on 2 cores for one Fashion-MNIST epoch).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
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
from snn_cuda import functional, surrogate  # noqa: E402

import data  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The neuron kits: what differs between the snn_cuda model and the legacy SpikingJelly one
# ---------------------------------------------------------------------------------------------
class SnnCudaKit:
    """snn_cuda layers; backend "auto" (fused) or "torch" (the reference neurons)."""

    name = "snn_cuda"

    def __init__(self, backend: str = "auto"):
        self.backend = backend

    def lif(self, v_threshold: float = 1.0) -> nn.Module:
        return snn_cuda.LIF(
            tau=2.0,
            v_threshold=v_threshold,
            v_reset=0.0,
            detach_reset=True,
            surrogate=surrogate.Sigmoid(4.0),
            backend=self.backend,
        )

    def seq(self, *modules: nn.Module) -> nn.Module:
        return snn_cuda.SeqToANN(*modules)

    def spike_linear(self, d_in: int, d_out: int) -> nn.Module:
        return snn_cuda.SpikeLinear(d_in, d_out, bias=False, binary=True)

    def constant_lif(self, lif: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
        return lif(x, T=T)

    def reset(self, net: nn.Module) -> None:
        functional.reset_net(net)


class LegacySJKit:
    """SpikingJelly 0.0.0.0.12's `clock_driven` API, as Spikformer's code uses it."""

    name = "spikingjelly-0.0.0.0.12"

    def __init__(self, backend: str = "torch"):
        self.backend = backend
        self.neuron = importlib.import_module("spikingjelly.clock_driven.neuron")
        self.layer = importlib.import_module("spikingjelly.clock_driven.layer")
        self.functional = importlib.import_module("spikingjelly.clock_driven.functional")
        self.surrogate = importlib.import_module("spikingjelly.clock_driven.surrogate")

    def lif(self, v_threshold: float = 1.0) -> nn.Module:
        return self.neuron.MultiStepLIFNode(
            tau=2.0,
            v_threshold=v_threshold,
            v_reset=0.0,
            detach_reset=True,
            surrogate_function=self.surrogate.Sigmoid(alpha=4.0),
            backend=self.backend,
        )

    def seq(self, *modules: nn.Module) -> nn.Module:
        return self.layer.SeqToANNContainer(*modules)

    def spike_linear(self, d_in: int, d_out: int) -> nn.Module:
        return nn.Linear(d_in, d_out, bias=False)

    def constant_lif(self, lif: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
        return lif(x.unsqueeze(0).repeat(T, *([1] * x.dim())))

    def reset(self, net: nn.Module) -> None:
        self.functional.reset_net(net)


# ---------------------------------------------------------------------------------------------
# The model (parameter names, hence state_dicts, are the same with either kit)
# ---------------------------------------------------------------------------------------------
class LinearBN(nn.Module):
    """Linear over the last dim of [T, B, N, C_in], then BatchNorm1d over the C_out channels (the
    statistics over T, B and the tokens, as Spikformer's BN on [T*B, C, N]). The Linear has no
    bias: the batch normalisation subtracts it again (its gradient would be rounding noise)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.bn = nn.BatchNorm1d(linear.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return self.bn(y.flatten(0, -2)).view(y.shape)


class SPS(nn.Module):
    def __init__(self, kit, T: int, dim: int):
        super().__init__()
        self.kit, self.T = kit, T
        c1, c2 = dim // 4, dim // 2
        self.stem = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1))
        self.stem_lif = kit.lif()
        self.conv1 = kit.seq(nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2))
        self.lif1 = kit.lif()
        self.conv2 = kit.seq(nn.MaxPool2d(2), nn.Conv2d(c2, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim))
        self.lif2 = kit.lif()
        self.rpe = kit.seq(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim))
        self.rpe_lif = kit.lif()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.kit.constant_lif(self.stem_lif, self.stem(img), self.T)  # [T, B, D/4, 28, 28]
        x = self.lif1(self.conv1(x))  # [T, B, D/2, 14, 14]
        x = self.lif2(self.conv2(x))  # [T, B, D, 7, 7]
        x = x + self.rpe_lif(self.rpe(x))
        return x.flatten(3).transpose(2, 3)  # [T, B, 49 tokens, D]


class SSA(nn.Module):
    """Spiking self-attention: Q, K and V are spikes, so Q K^T V needs no softmax."""

    def __init__(self, kit, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, 0.125
        self.q, self.k, self.v = (LinearBN(nn.Linear(dim, dim, bias=False)) for _ in range(3))
        self.q_lif, self.k_lif, self.v_lif = kit.lif(), kit.lif(), kit.lif()
        self.attn_lif = kit.lif(v_threshold=0.5)
        self.proj = LinearBN(kit.spike_linear(dim, dim))
        self.proj_lif = kit.lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, N, C = x.shape

        def split(s):  # [T, B, N, C] -> [T, B, heads, N, C / heads]
            return s.view(T, B, N, self.heads, C // self.heads).transpose(2, 3)

        q = split(self.q_lif(self.q(x)))
        k = split(self.k_lif(self.k(x)))
        v = split(self.v_lif(self.v(x)))
        a = (q @ k.transpose(-2, -1)) @ v * self.scale
        a = self.attn_lif(a.transpose(2, 3).reshape(T, B, N, C))
        return self.proj_lif(self.proj(a))


class MLP(nn.Module):
    def __init__(self, kit, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.lif1 = LinearBN(nn.Linear(dim, hidden, bias=False)), kit.lif()
        self.fc2, self.lif2 = LinearBN(kit.spike_linear(hidden, dim)), kit.lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


class Block(nn.Module):
    def __init__(self, kit, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.attn = SSA(kit, dim, heads)
        self.mlp = MLP(kit, dim, mlp_ratio * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Spikformer(nn.Module):
    def __init__(self, kit, T: int = 4, dim: int = 64, heads: int = 4, depth: int = 1, mlp_ratio: int = 2):
        super().__init__()
        for name, value in (("T", T), ("dim", dim), ("heads", heads), ("depth", depth), ("mlp_ratio", mlp_ratio)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dim % 4 or dim % heads:
            raise ValueError(f"dim must be a multiple of 4 and of heads ({heads}), got {dim}")
        self.kit = kit
        self.sps = SPS(kit, T, dim)
        self.blocks = nn.ModuleList(Block(kit, dim, heads, mlp_ratio) for _ in range(depth))
        self.head = nn.Linear(dim, 10)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.sps(img)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x.mean(2)).mean(0)  # logits [B, 10]

    def reset_state(self) -> None:
        # Not named reset: SpikingJelly's reset_net calls every module's reset().
        self.kit.reset(self)


def build(kit, args) -> Spikformer:
    return Spikformer(kit, args.T, args.dim, args.heads, args.depth, args.mlp_ratio).to(args.device)


# ---------------------------------------------------------------------------------------------
# Training, evaluation, timing
# ---------------------------------------------------------------------------------------------
def step(net: Spikformer, opt, img, label) -> float:
    net.reset_state()
    loss = F.cross_entropy(net(img), label)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def make_opt(net: nn.Module, args):
    return torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)


def evaluate(net: Spikformer, split, limit=None) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for img, label in data.batches(split, 500, shuffle=False, limit=limit):
            net.reset_state()
            correct += int((net(img).argmax(1) == label).sum())
            total += label.numel()
    net.train()
    return 100.0 * correct / max(total, 1)


def train(ds, args, log=print):
    torch.manual_seed(args.seed)
    net = build(SnnCudaKit("auto"), args)
    opt = make_opt(net, args)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=args.lr,
        total_steps=args.epochs * data.num_batches(ds.train, args.batch_size, drop_last=True, limit=args.train_batches),
        pct_start=0.15,
    )
    g = torch.Generator().manual_seed(args.seed)
    accs, samples, t_train = [], 0, 0.0
    nb = data.num_batches(ds.train, args.batch_size, drop_last=True, limit=args.train_batches)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        losses = []
        it = data.batches(
            ds.train, args.batch_size, shuffle=True, generator=g, drop_last=True, limit=args.train_batches
        )
        for i, (img, label) in enumerate(it):
            losses.append(step(net, opt, img, label))
            sched.step()
            samples += label.numel()
            if args.log_every and (i + 1) % args.log_every == 0:
                log(
                    f"    batch {i + 1}/{nb}: loss {statistics.mean(losses[-args.log_every :]):.4f} "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
        t_epoch = time.perf_counter() - t0
        t_train += t_epoch
        t1 = time.perf_counter()
        accs.append(evaluate(net, ds.test, limit=args.test_batches))
        log(
            f"  epoch {epoch + 1}: train loss {statistics.mean(losses):.4f}, test accuracy {accs[-1]:.2f} % "
            f"(train {t_epoch:.0f} s, test {time.perf_counter() - t1:.0f} s)"
        )
    return accs, samples / max(t_train, 1e-9)


def interleaved_throughput(nets: dict, ds, args, batches: int):
    """Training samples/s of each net: every net trains on the same `batches` batches (after one
    warm-up batch), one batch per net in turn, so a change in the machine's load hits all alike.
    Returns (samples/s per net, the first loss of each net)."""
    opts = {k: make_opt(n, args) for k, n in nets.items()}
    times = {k: [] for k in nets}
    first = {}
    for i, (img, label) in enumerate(data.batches(ds.train, args.batch_size, shuffle=False, drop_last=True)):
        if i == batches + 1:
            break
        for k, net in nets.items():
            t0 = time.perf_counter()
            loss = step(net, opts[k], img, label)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i == 0:
                first[k] = loss
            else:
                times[k].append(time.perf_counter() - t0)
    return {k: args.batch_size / statistics.median(t) for k, t in times.items()}, first


def same_weights(kits: dict, args) -> dict:
    """One model per kit, all from the same initial weights."""
    torch.manual_seed(args.seed)
    nets = {k: build(kit, args) for k, kit in kits.items()}
    base = next(iter(nets.values())).state_dict()
    for net in nets.values():
        net.load_state_dict(copy.deepcopy(base))
    return nets


# ---------------------------------------------------------------------------------------------
# The legacy SpikingJelly part
# ---------------------------------------------------------------------------------------------
def legacy_unavailable(path) -> str:
    """Why the legacy part cannot run ('' when it can). Prepends `path` to sys.path."""
    if path:
        if not os.path.isdir(os.path.join(path, "spikingjelly")):
            return f"--legacy-sj {path}: no spikingjelly package in that folder"
        sys.path.insert(0, path)
        for name in [m for m in sys.modules if m == "spikingjelly" or m.startswith("spikingjelly.")]:
            del sys.modules[name]  # an already imported SpikingJelly 2.0 would shadow it
    try:
        found = importlib.util.find_spec("spikingjelly.clock_driven") is not None
    except ImportError:
        found = False
    if not found:
        return (
            "legacy SpikingJelly (spikingjelly.clock_driven, 0.0.0.0.12) is not importable: "
            "put it on PYTHONPATH or pass --legacy-sj DIR"
        )
    try:
        compat = importlib.import_module("snn_cuda.compat")
    except ImportError as e:
        return f"snn_cuda.compat is not available ({e})"
    if not hasattr(compat, "patch_spikingjelly"):
        return "snn_cuda.compat has no patch_spikingjelly()"
    return ""


def legacy_part(ds, args, log=print) -> dict:
    """Spikformer written against SpikingJelly 0.0.0.0.12, backend='torch' against backend='cupy'
    on snn_cuda's kernels after `patch_spikingjelly()`, with the snn_cuda model for scale."""
    why = legacy_unavailable(args.legacy_sj)
    if why:
        log(f"\nlegacy SpikingJelly part skipped: {why}")
        return {"skipped": why}
    compat = importlib.import_module("snn_cuda.compat")
    res = {"spikingjelly": getattr(importlib.import_module("spikingjelly"), "__version__", "0.0.0.0.12")}
    try:
        report = compat.patch_spikingjelly()
    except Exception as e:  # a SpikingJelly the patch does not know: the rest of the run stands
        why = f"patch_spikingjelly() failed: {type(e).__name__}: {e}"
        log(f"\nlegacy SpikingJelly part skipped: {why}")
        return {"skipped": why}
    try:
        res["patch_report"] = str(report)
        nets = same_weights(
            {
                "sj_torch": LegacySJKit("torch"),
                "sj_cupy_patched": LegacySJKit("cupy"),
                "snn_cuda_fused": SnnCudaKit("auto"),
            },
            args,
        )
        rate, first = interleaved_throughput(nets, ds, args, args.ref_batches)
    finally:
        if hasattr(compat, "unpatch_spikingjelly"):
            compat.unpatch_spikingjelly()
    res["samples_per_s"] = rate
    res["first_step_loss"] = first
    res["patched_over_torch"] = rate["sj_cupy_patched"] / rate["sj_torch"]
    log(
        f"\nlegacy SpikingJelly {res['spikingjelly']}, the same Spikformer, training samples/s "
        f"({args.ref_batches} batches of {args.batch_size}):\n"
        f"  backend='torch'                            {rate['sj_torch']:8,.1f}\n"
        f"  backend='cupy' after patch_spikingjelly()  {rate['sj_cupy_patched']:8,.1f}   "
        f"({res['patched_over_torch']:.2f}x)\n"
        f"  snn_cuda layers, fused                     {rate['snn_cuda_fused']:8,.1f}\n"
        f"  first-step loss: torch {first['sj_torch']:.7f}, patched {first['sj_cupy_patched']:.7f}, "
        f"snn_cuda {first['snn_cuda_fused']:.7f}"
    )
    return res


# ---------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist", choices=data.DATASETS)
    ap.add_argument("--data-dir", default="./data")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-batches", type=int, default=None, help="batches per epoch (default: the whole split)")
    ap.add_argument("--test-batches", type=int, default=None, help="limit the test set (batches of 500)")
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64, help="embedding width D (tokens are 7x7)")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--depth", type=int, default=1, help="encoder blocks")
    ap.add_argument("--mlp-ratio", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-batches", type=int, default=10, help="batches timed per model for the throughputs")
    ap.add_argument("--log-every", type=int, default=100, help="print the loss every N batches (0: never)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's; 1 is faster on a loaded machine)"
    )
    ap.add_argument("--legacy-sj", default=None, metavar="DIR", help="folder holding spikingjelly 0.0.0.0.12")
    ap.add_argument("--no-legacy", action="store_true", help="skip the legacy SpikingJelly part")
    ap.add_argument("--quick", action="store_true", help="1 epoch of 4 batches, 2 timed batches: a smoke run")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    for name in ("epochs", "batch_size", "ref_batches", "train_batches", "test_batches", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not args.lr > 0:
        ap.error(f"--lr must be positive, got {args.lr}")
    if args.quick:
        args.epochs, args.train_batches, args.test_batches, args.ref_batches = 1, 4, 1, 2
        args.log_every = 0

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = data.load_for_example(args.dataset, args.data_dir).to(args.device)
    print(
        f"Spikformer on {data.PRETTY.get(ds.name, ds.name)}: T={args.T}, D={args.dim}, {args.heads} heads, "
        f"{args.depth} block(s), MLP {args.mlp_ratio}x, batch {args.batch_size}, {args.epochs} epoch(s)"
        + (f" of {args.train_batches} batches" if args.train_batches else "")
        + f", device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    n_params = sum(p.numel() for p in build(SnnCudaKit(), args).parameters())
    print(f"{n_params:,} parameters")
    results = {
        "argv": sys.argv[1:] if argv is None else list(argv),
        "dataset": ds.name,
        "config": {k: getattr(args, k) for k in ("T", "dim", "heads", "depth", "mlp_ratio", "batch_size", "lr")},
        "epochs": args.epochs,
        "train_batches": args.train_batches,
        "test_batches": args.test_batches,
        "parameters": n_params,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }

    t0 = time.perf_counter()
    accs, rate = train(ds, args)
    results["acc"] = accs
    results["train_samples_per_s"] = rate
    results["train_wall_s"] = time.perf_counter() - t0
    print(f"test accuracy after {args.epochs} epoch(s): {accs[-1]:.2f} %  (training: {rate:,.1f} samples/s)")

    nets = same_weights({"fused": SnnCudaKit("auto"), "reference": SnnCudaKit("torch")}, args)
    speed, first = interleaved_throughput(nets, ds, args, args.ref_batches)
    results["throughput"] = {**speed, "ratio": speed["fused"] / speed["reference"]}
    results["first_step_loss"] = {**first, "equal": first["fused"] == first["reference"]}
    print(
        f"training throughput, same weights and batches ({args.ref_batches} batches of {args.batch_size}, "
        f"interleaved): fused {speed['fused']:,.1f} samples/s, reference neurons {speed['reference']:,.1f} "
        f"samples/s: {speed['fused'] / speed['reference']:.2f}x\n"
        f"first-step loss: fused {first['fused']:.7f}, reference {first['reference']:.7f} "
        f"({'equal' if first['fused'] == first['reference'] else 'DIFFERENT'})"
    )
    if not args.no_legacy:
        results["legacy_spikingjelly"] = legacy_part(ds, args)
    results["total_wall_s"] = time.perf_counter() - t0
    print(f"total {results['total_wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
