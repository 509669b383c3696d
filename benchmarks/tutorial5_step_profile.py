#!/usr/bin/env python
"""Where one tutorial5 training step's time goes, per part of the network.

Trains the fused (or reference) tutorial5 net of benchmarks/nets.py for --warmup steps on
Fashion-MNIST batches (synthetic data when absent), then profiles --steps steps with
torch.profiler (record_shapes) and attributes every ATen / snn_cuda op's self time to a part
of the step by its name and input shapes:

    fc1 forward / weight grad          addmm / mm on [B, 784] x [784, 1000]
    Leaky 1 (hidden)                   snn_cuda::neuron_forward / _backward on B*1000 neurons
                                       (with NeuronLinear the backward includes fc2's grad input)
    fc2 forward / weight grad          snn_cuda::spike_linear / _weight_grad on the byte spikes
                                       (older builds: addmm / mm on fp32 spikes, plus SpikeLinear's
                                       uint8 copy: spikes -> uint8 / uint8 -> float)
    Leaky 2 (output), loss, Adam, other (autograd engine, Python, small ops)

Also times the same steps without the profiler (wall clock, median) and writes a Markdown
table (--out). Uses the same optimiser choice as mnist_train.py (--adam).

    python benchmarks/tutorial5_step_profile.py --dataset fashion-mnist --data-dir ./data --out t5_profile.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
import importlib.util  # noqa: E402

if importlib.util.find_spec("snn_cuda") is None:
    sys.path.insert(0, os.path.dirname(_HERE))

os.environ.setdefault("KINETO_LOG_LEVEL", "5")
import torch  # noqa: E402

import data as data_mod  # noqa: E402
import mnist_train  # noqa: E402
import nets  # noqa: E402


def classify(name: str, shapes) -> str:
    s = [tuple(x) for x in shapes if isinstance(x, (list, tuple)) and x]
    first = s[0] if s else ()
    if name in ("aten::addmm", "aten::mm"):
        dims = [d for t in s for d in t]
        if 784 in dims:
            return "fc1 forward (addmm [B,784]x[784,1000])" if name == "aten::addmm" else "fc1 weight grad (mm)"
        if name == "aten::addmm":
            return "fc2 forward (addmm [T*B,1000]x[1000,10])"
        if first and first[-1] == 10 and len(s) > 1 and s[1][-1] == 1000:
            return "fc2 grad input (mm [T*B,10]x[10,1000])"
        return "fc2 weight grad (mm [10,T*B]x[T*B,1000])"
    if (name.startswith("snn_cuda::neuron") or "snn_cuda_neuron" in name) and first:
        # The forward kernel's time shows under its autograd wrapper
        # (GeneratedBackwardFor_snn_cuda_neuron_forward_default), the backward's under
        # snn_cuda::neuron_backward.
        backward = name == "snn_cuda::neuron_backward" or name.endswith("Backward")
        return ("Leaky 1 (hidden) " if 1000 in first else "Leaky 2 (output) ") + ("backward" if backward else "forward")
    if name == "snn_cuda::spike_linear":
        return "fc2 forward (spike_linear, byte spikes)"
    if name == "snn_cuda::spike_linear_weight_grad":
        return "fc2 weight grad (spike_linear_weight_grad)"
    if name == "snn_cuda::binary_to_uint8":
        return "spikes -> uint8 (SpikeLinear save)"
    if name == "snn_cuda::uint8_to":
        return "uint8 -> float (SpikeLinear backward)"
    if any(k in name for k in ("log_softmax", "nll_loss", "cross_entropy")):
        return "loss (cross-entropy)"
    if (
        "Adam" in name
        or "_fused_adam" in name
        or name in ("aten::lerp_", "aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::_foreach_sqrt")
    ):
        return "Adam"
    return "other (autograd, Python, small ops)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="fused", choices=("fused", "reference"))
    p.add_argument("--data-dir", default=os.path.join(".", "data"))
    p.add_argument("--dataset", default="fashion-mnist", choices=data_mod.DATASETS)
    p.add_argument("--adam", default="fused", choices=mnist_train.ADAM_IMPLS)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-malloc-tune", action="store_true", help="glibc's default malloc thresholds")
    p.add_argument("--out", default=None, help="write the Markdown table here too")
    args = p.parse_args(argv)
    malloc = mnist_train.tune_malloc(not args.no_malloc_tune)  # as mnist_train.py does
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = data_mod.load_dataset(
        args.dataset, args.data_dir, seed=args.seed, allow_download=False, log=lambda s: print(s, file=sys.stderr)
    )
    spec = nets.NETS["tutorial5"]
    model = nets.build("tutorial5", args.impl, spec.T, nets.init_weights("tutorial5", args.seed))
    opt, opt_desc = mnist_train.make_adam(model.parameters(), spec, args.adam, torch.device("cpu"))
    lossf = nets.loss_fn("tutorial5", args.impl)
    gen = torch.Generator().manual_seed(args.seed)
    batches = list(
        data_mod.batches(
            ds.train, spec.batch_size, shuffle=True, generator=gen, drop_last=True, limit=args.warmup + 2 * args.steps
        )
    )

    def step(x, y):
        out = model(x)
        loss = lossf(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for x, y in batches[: args.warmup]:
        step(x, y)
    wall = []
    for x, y in batches[args.warmup : args.warmup + args.steps]:
        t0 = time.perf_counter()
        step(x, y)
        wall.append(time.perf_counter() - t0)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for x, y in batches[args.warmup + args.steps :]:
            step(x, y)
    n = len(batches) - args.warmup - args.steps
    parts = defaultdict(float)
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key.startswith("ProfilerStep"):
            continue
        parts[classify(e.key, e.input_shapes or [])] += e.self_cpu_time_total / 1e3 / n
    total = sum(parts.values())
    med = statistics.median(wall) * 1e3
    lines = [
        f"# tutorial5 {args.impl} training step (B={spec.batch_size}, T={spec.T}), {opt_desc}, "
        f"{torch.get_num_threads()} threads, load average at start {os.getloadavg()[0]:.2f}",
        "",
        f"Host allocator: {malloc}. snn_cuda from {os.path.dirname(nets.snn_cuda.__file__)}.",
        "",
        f"Wall clock without profiler: median {med:.2f} ms/step ({spec.batch_size / med * 1e3:,.0f} samples/s), "
        f"mean {statistics.mean(wall) * 1e3:.2f} ms over {len(wall)} steps. Profiled: {total:.2f} ms/step "
        f"(sum of self times over {n} steps, profiler overhead included).",
        "",
        "| part of the step | ms / step | % |",
        "|---|---|---|",
    ]
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {k} | {v:.2f} | {100 * v / total:.1f} |")
    from snn_cuda._paths import scrub_paths

    md = scrub_paths("\n".join(lines) + "\n", root=os.path.dirname(_HERE))  # no machine paths
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
