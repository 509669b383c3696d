#!/usr/bin/env python
"""End-to-end training benchmark: three tutorial SNNs on MNIST-shaped data, each trained by
the tutorial's per-step Python loop (`reference`), by snn_cuda's fused multi-step layers
(`fused`) and by the tutorial's own library (`peer`, when installed) -- all in ONE run, from the
same initial weights, seed and data path, so the speed-ups are measured side by side.

    net        tutorial                               T    batch  optimiser
    lif_fc     SpikingJelly lif_fc_mnist              100  128    Adam 1e-3
    tutorial5  snnTorch tutorial 5                    25   128    Adam 5e-4, betas (0.9, 0.999)
    dense_if   from-scratch surrogate-gradient IF     100  500    Adam 1e-3
(see benchmarks/nets.py for the networks and what each implementation does). Every implementation
gets the same optimiser: --adam fused (default; torch's single-kernel Adam, same
hyper-parameters), foreach, or for-loop (torch's CPU default, ~1 ms slower per tutorial5 step);
and the same host allocator settings: glibc keeps freed memory for reuse (tune_malloc;
--no-malloc-tune for glibc's defaults, whose page faults made CPU timings erratic here).

Each (net, impl) trains in its own process (a child of this script), so its peak memory is its
own: CUDA max allocated, or on the CPU the peak RSS above the baseline taken after imports, data
and model are loaded (the kernel's RSS high-water mark is reset there through
/proc/self/clear_refs; elsewhere ru_maxrss is used). Measured per (net, impl):

    samples_per_s  training samples/s over all steps after --warmup steps (device synchronised)
    epoch_s        wall time of one training epoch (of --limit-batches batches when limited)
    saved_mb       bytes of tensors saved for backward in one training step (unique storages,
                   parameters excluded), counted with torch.autograd.graph.saved_tensors_hooks
    peak_mem_mb    peak memory above the post-setup baseline, in its own process
    test_acc       test accuracy after each epoch (the last in the table)
    profile        where one training step's time goes (torch.profiler, self time per op)

Writes into --out: results.json, results.md (table), throughput.png, accuracy.png.

Data: --dataset auto = MNIST from --data-dir (torchvision layout <dir>/MNIST/raw or the IDX files
directly), downloaded by torchvision when missing and online, else SYNTHETIC data (accuracy
meaningless, loudly said). Fashion-MNIST has MNIST's shape and is real data:

    python benchmarks/mnist_train.py                                  # short CPU run, all nets
    python benchmarks/mnist_train.py --dataset fashion-mnist --data-dir ./data   # ./data/FashionMNIST/raw
    python benchmarks/mnist_train.py --net tutorial5 --impl all --epochs 1 --limit-batches 0
    python benchmarks/mnist_train.py --device cuda --net all --impl all --epochs 5

On the CPU, unless --limit-batches is given, each epoch is cut to 20 training batches and the
test to 10 batches so the default run takes minutes (--limit-batches 0 = full epochs).

Multi-process (DistributedDataParallel), under torchrun:

    torchrun --nproc_per_node=2 benchmarks/mnist_train.py --ddp --ddp-baseline --net lif_fc --impl fused

--ddp initialises the process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT): nccl when training on CUDA (each rank on cuda:LOCAL_RANK), gloo on the CPU. Every
rank holds the in-memory dataset and trains on its DistributedSampler shard (seeded, set_epoch per
epoch, drop_last), --batch-size is per rank (global batch = world_size x batch), the model is wrapped
in DistributedDataParallel, each rank trains in-process (no child: peak memory is not measured) and
rank 0 gathers every rank's samples/s (all_gather_object) and writes results.json / results.md with
"world_size", the total and per-rank samples/s. --ddp-baseline first trains the same (net, impl) in
rank 0 alone, without DDP, at the same per-rank batch (the other ranks wait at a barrier), giving the
scaling efficiency = total samples/s / (world_size x one-process samples/s) in the same invocation.
Without it, run the script once without --ddp (same --threads, batch size and limits) and divide.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path.insert(0, _HERE)
# Run from a source checkout (`python setup.py build_ext --inplace`) without installing.
if importlib.util.find_spec("snn_cuda") is None and os.path.isdir(os.path.join(_ROOT, "snn_cuda")):
    sys.path.insert(0, _ROOT)

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep torch.profiler quiet in the CPU-only case
import torch  # noqa: E402

import data as data_mod  # noqa: E402
import machine  # noqa: E402  (benchmarks/machine.py)

NET_NAMES = ("lif_fc", "tutorial5", "dense_if")
IMPL_CHOICES = ("reference", "fused", "peer", "both", "all")
CPU_DEFAULT_LIMIT, CPU_DEFAULT_TEST_LIMIT = 20, 10
ADAM_IMPLS = ("fused", "foreach", "for-loop")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("--net", default="all", choices=NET_NAMES + ("all",))
    p.add_argument(
        "--impl",
        default="both",
        choices=IMPL_CHOICES,
        help="both = reference and fused; all = + peer (skipped when not installed)",
    )
    p.add_argument("--device", default=None, help="cpu / cuda / cuda:N (default: cuda when available)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--limit-batches",
        type=int,
        default=None,
        help=f"training batches per epoch (0 = all; default on CPU {CPU_DEFAULT_LIMIT}, on CUDA all)",
    )
    p.add_argument(
        "--limit-test-batches",
        type=int,
        default=None,
        help=f"test batches per evaluation (0 = all; default: all, or {CPU_DEFAULT_TEST_LIMIT} "
        "when the training batches are limited)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: each tutorial's (128, 128, 500)")
    p.add_argument("-T", type=int, default=None, help="time steps (default: each tutorial's: 100, 25, 100)")
    p.add_argument("--dataset", default="auto", choices=data_mod.DATASETS)
    p.add_argument(
        "--data-dir",
        default=os.path.join(".", "data"),
        help="folder with MNIST/raw, FashionMNIST/raw (torchvision layout) or the IDX files "
        "(default ./data; MNIST is downloaded there when missing and online)",
    )
    p.add_argument("--out", default=os.path.join("benchmarks", "out", "mnist_train"))
    p.add_argument("--seed", type=int, default=0)
    machine.add_isa_argument(p)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for training (default: torch's). On a shared, busy CPU use 1: "
        "OpenMP barriers between descheduled threads make per-step loops erratically slow",
    )
    p.add_argument(
        "--adam",
        default="fused",
        choices=ADAM_IMPLS,
        help="torch.optim.Adam implementation, the same for every implementation compared (default: "
        "fused, one kernel per parameter, or foreach where the device has no fused Adam). Same "
        "hyper-parameters either way; 'foreach' is bitwise equal to torch's default for-loop on "
        "the CPU, 'fused' rounds differently (about 1 ulp). 'for-loop' = torch's CPU default",
    )
    p.add_argument(
        "--no-malloc-tune",
        action="store_true",
        help="keep glibc's default malloc thresholds (by default every process of the run keeps freed "
        "memory for reuse: see tune_malloc)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="training steps excluded from samples/s (default 5: on the CPU the process heap grows to "
        "its working size, page-faulting, during the first 3-4 steps)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the one profiled training step per run")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="train every (net, impl) in this process (peak memory then is not per implementation)",
    )
    p.add_argument(
        "--ddp",
        action="store_true",
        help="DistributedDataParallel under torchrun (gloo on CPU, nccl on CUDA); see below",
    )
    p.add_argument(
        "--ddp-baseline",
        action="store_true",
        help="with --ddp: first a one-process run on rank 0 for the scaling efficiency",
    )
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)  # "net,impl"
    p.add_argument("--_child-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_baseline and not args.ddp:
        p.error("--ddp-baseline needs --ddp")
    if args.ddp and args.in_process:
        p.error("--ddp always trains in-process")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.ddp and args.device == "cuda":
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # one GPU per rank
    dev = torch.device(args.device)
    args.limited_by_default = False
    if args.limit_batches is None:
        if dev.type == "cpu":
            args.limit_batches = CPU_DEFAULT_LIMIT
            args.limited_by_default = True
        else:
            args.limit_batches = 0
    if args.limit_test_batches is None:
        args.limit_test_batches = CPU_DEFAULT_TEST_LIMIT if args.limit_batches else 0
    for name in ("epochs", "batch_size", "T"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------
MALLOC_KEEP_BYTES = 1 << 30


def _malloc_trim() -> None:
    """glibc malloc_trim(0): return every free heap page to the kernel (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def tune_malloc(enable: bool = True) -> str:
    """Make glibc's malloc keep freed memory in the process for reuse (mmap threshold and trim
    threshold 1 GiB), in every process of the run, for every implementation alike.

    With glibc's defaults a training step's large temporaries (e.g. tutorial5's [T*B, 1000]
    gradient, 12.8 MB) are now and then mmap'ed afresh or trimmed back to the kernel, and the next
    step page-faults them in again: ~3,100 faults for 12.8 MB, which on this VM cost from ~0.3 ms
    up to ~26 ms per step (a fused tutorial5 step is ~10 ms), an erratic share of the time that
    has nothing to do with either implementation. Returns a description for results.json."""
    if not enable:
        return "glibc defaults (--no-malloc-tune)"
    if not sys.platform.startswith("linux"):
        return "defaults (not Linux)"
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, MALLOC_KEEP_BYTES) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, MALLOC_KEEP_BYTES) == 1 and ok
    except (OSError, AttributeError) as e:  # not glibc
        return f"defaults (mallopt unavailable: {e})"
    return (
        "glibc mallopt M_MMAP_THRESHOLD = M_TRIM_THRESHOLD = 1 GiB"
        if ok
        else "defaults (mallopt refused the thresholds)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SavedTensorCounter:
    """Counts the bytes of distinct storages saved for backward (parameters excluded)."""

    def __init__(self, params):
        self.param_ptrs = {p.untyped_storage().data_ptr() for p in params}
        self.storages = {}

    def pack(self, t):
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in self.param_ptrs and st.nbytes() > 0:
                self.storages[(t.device.type, ptr)] = st.nbytes()
        except Exception:  # tensors without storage (sparse, wrapper subclasses): count numel
            self.storages[("id", id(t))] = t.numel() * t.element_size()
        return t

    @staticmethod
    def unpack(t):
        return t

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())


def _proc_status(key: str):
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
        return int(m.group(1)) * 1024 if m else None
    except OSError:
        return None


class PeakMemory:
    """Peak memory above a baseline taken at start(): CUDA max allocated, or CPU peak RSS."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method = ""

    def start(self):
        if self.device.type == "cuda":
            _sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            self.method = "cuda max_memory_allocated above baseline"
            return
        # Free heap memory left over from loading (kept by tune_malloc's thresholds) would let
        # training reuse pages already counted in the baseline: hand it back first.
        _malloc_trim()
        self.base = _proc_status("VmRSS")
        reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            reset = _proc_status("VmHWM") is not None
        except OSError:
            pass
        if reset:
            self.method = "cpu VmHWM (reset at baseline) - VmRSS baseline"
        else:
            self.base = self.base or 0
            self.method = "cpu ru_maxrss - VmRSS baseline (process-wide peak, may include loading)"
        self._hwm = reset

    def peak_mb(self):
        if self.device.type == "cuda":
            _sync(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20, self.base / 2**20
        if self._hwm:
            peak = _proc_status("VmHWM")
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return (peak - self.base) / 2**20, self.base / 2**20


@contextlib.contextmanager
def _quiet_stderr_fd():
    """Discards what native code writes to file descriptor 2 (torch.profiler's Kineto prints
    "USDT: ... profiler_start" and device-probe lines there, past KINETO_LOG_LEVEL)."""
    sys.stderr.flush()
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def profile_step(step, device: torch.device, top: int = 8):
    """Self time per op over one training step; the linear-layer share and the neuron share."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with _quiet_stderr_fd():
        with profile(activities=acts) as prof:
            step()
            _sync(device)
        averages = prof.key_averages()
    rows = []
    for e in averages:
        t = e.self_device_time_total if device.type == "cuda" else e.self_cpu_time_total
        rows.append((e.key, float(t)))
    total = sum(t for _, t in rows) or 1.0
    rows.sort(key=lambda r: -r[1])

    def share(pred):
        return round(100.0 * sum(t for k, t in rows if pred(k)) / total, 1)

    linear_ops = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
    return {
        "clock": "device" if device.type == "cuda" else "cpu",
        "total_ms": round(total / 1e3, 2),
        "linear_pct": share(lambda k: k in linear_ops or k.startswith("aten::mm")),
        "snn_cuda_ops_pct": share(lambda k: k.startswith("snn_cuda::")),
        "top": [[k, round(100.0 * t / total, 1)] for k, t in rows[:top]],
    }


# ---------------------------------------------------------------------------------------------
# One (net, impl): train, test, measure
# ---------------------------------------------------------------------------------------------
def make_adam(params, spec, which: str, device: torch.device):
    """The tutorial's Adam (lr, betas; eps and weight decay at torch's defaults), built the same way
    for every implementation compared: 'fused' (torch._fused_adam_, one kernel per parameter;
    on the CPU it saves about 1 ms of a tutorial5 step over the for-loop), 'foreach' or
    'for-loop' (torch's default on the CPU: ~8 ATen calls and a temporary per parameter)."""
    params = list(params)
    kw = {}
    if which == "fused":
        # torch's fused Adam runs on CPU and CUDA for floating-point parameters; fall back to
        # foreach elsewhere rather than fail.
        try:
            from torch.optim.optimizer import _get_fused_kernels_supported_devices

            supported = device.type in _get_fused_kernels_supported_devices()
        except ImportError:  # a private helper: assume the devices torch >= 2.4 supports
            supported = device.type in ("cpu", "cuda")
        if supported:
            kw["fused"] = True
        else:
            which = "foreach"
    if which == "foreach":
        kw["foreach"] = True
    elif which == "for-loop":
        kw["foreach"] = False
    opt = torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, **kw)
    return opt, f"Adam(lr={spec.lr:g}, betas={tuple(spec.betas)}, {which})"


def evaluate(model, spec, split, batch_size, limit, device):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in data_mod.batches(split, batch_size, shuffle=False, limit=limit or None):
            pred = spec.predict(model(x))
            correct += int((pred == y).sum())
            total += y.numel()
    model.train()
    return 100.0 * correct / max(total, 1), total


def run_one(net: str, impl: str, args, ds, ddp: bool = False) -> dict:
    """Trains and measures one (net, impl). ddp=True: this rank's part of a DistributedDataParallel
    run (its DistributedSampler shard, no peak memory); the caller gathers the ranks' results."""
    import nets
    from tqdm import tqdm

    spec = nets.NETS[net]
    device = torch.device(args.device)
    T = args.T or spec.T
    batch_size = args.batch_size or spec.batch_size
    weights = nets.init_weights(net, args.seed)  # identical for every impl
    torch.manual_seed(args.seed)
    model = nets.build(net, impl, T, weights).to(device)
    model.train()
    rank, world = 0, 1
    train_model = model
    sampler = None
    if ddp:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        from torch.utils.data import DistributedSampler

        rank, world = dist.get_rank(), dist.get_world_size()
        # the encoders' randomness differs per rank (each rank encodes its own samples)
        torch.manual_seed(args.seed * 1000 + rank)
        # The neuron state is a plain attribute (not a buffer): broadcast_buffers has nothing to send.
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        sampler = DistributedSampler(
            ds.train, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True
        )
    opt, opt_desc = make_adam(model.parameters(), spec, args.adam, device)
    lossf = nets.loss_fn(net, impl)

    def step(x, y, counter=None):
        if counter is None:
            out = train_model(x)
            loss = lossf(out, y)
        else:
            with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                out = train_model(x)
                loss = lossf(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return out, loss

    mem = None if ddp else PeakMemory(device)
    if mem is not None:
        mem.start()
    if sampler is not None:
        n_train = len(sampler) // batch_size
        n_train = min(n_train, args.limit_batches) if args.limit_batches else n_train
    else:
        n_train = data_mod.num_batches(ds.train, batch_size, drop_last=True, limit=args.limit_batches or None)
    timed_s = 0.0
    timed_samples = 0
    epoch_s, test_acc, train_curve = [], [], []
    saved_bytes = None
    seen = 0
    gstep = 0
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
            it = shard_batches(ds.train, list(sampler), batch_size, n_train)
        else:
            gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)  # same batch order for every impl
            it = data_mod.batches(
                ds.train, batch_size, shuffle=True, generator=gen, drop_last=True, limit=args.limit_batches or None
            )
        bar = tqdm(
            it,
            total=n_train,
            desc=f"{net}/{impl} epoch {epoch + 1}/{args.epochs}" + (f" rank {rank}/{world}" if ddp else ""),
            file=sys.stderr,
            disable=args.no_progress or rank != 0,
            mininterval=0.5,
            dynamic_ncols=True,
        )
        correct = count = 0
        _sync(device)
        t_epoch = time.perf_counter()
        for x, y in bar:
            counter = None
            if saved_bytes is None:
                counter = SavedTensorCounter(model.parameters())
            _sync(device)
            t0 = time.perf_counter()
            out, loss = step(x, y, counter)
            loss_v = loss.detach().item()  # the tutorials' loss.item(): a sync point anyway
            _sync(device)
            dt = time.perf_counter() - t0
            if counter is not None:
                saved_bytes = counter.nbytes
            if gstep >= args.warmup:
                timed_s += dt
                timed_samples += y.numel()
            gstep += 1
            with torch.no_grad():
                c = int((spec.predict(out) == y).sum())
            correct += c
            count += y.numel()
            seen += y.numel()
            train_curve.append([seen, round(100.0 * c / y.numel(), 2), round(loss_v, 5)])
            bar.set_postfix(
                loss=f"{loss_v:.4f}",
                acc=f"{100.0 * correct / count:.1f}%",
                sps=f"{timed_samples / timed_s:.0f}" if timed_s else "-",
            )
        bar.close()
        _sync(device)
        epoch_s.append(time.perf_counter() - t_epoch)
        # every rank evaluates its replica (identical parameters) on the whole test split
        acc, n_test = evaluate(model, spec, ds.test, batch_size, args.limit_test_batches, device)
        test_acc.append(round(acc, 3))
        if rank == 0:
            log(
                f"  {net}/{impl}{f' (DDP, {world} ranks, rank 0)' if ddp else ''} epoch {epoch + 1}: "
                f"train {epoch_s[-1]:.1f} s, train acc "
                f"{100.0 * correct / max(count, 1):.2f}%, test acc {acc:.2f}% ({n_test} images)"
            )
    peak_mb, base_mb = mem.peak_mb() if mem is not None else (None, None)
    if timed_s == 0.0:  # fewer steps than --warmup: time them all rather than report nothing
        log(f"  note: only {gstep} steps (<= --warmup {args.warmup}); samples/s includes warm-up steps")
        timed_s, timed_samples = sum(epoch_s), seen
    sps = timed_samples / timed_s
    prof = None
    if not args.no_profile:
        try:
            x, y = next(data_mod.batches(ds.train, batch_size, shuffle=False, limit=1))
            # under DDP every rank profiles the same step (its all-reduce needs all of them)
            prof = profile_step(lambda: step(x, y), device)
        except Exception as e:  # the profiler is a nice-to-have
            prof = {"error": f"{type(e).__name__}: {e}"}
    return {
        "net": net,
        "impl": impl,
        "device": str(device),
        "dtype": "float32",
        "T": T,
        "batch_size": batch_size,
        "samples_per_s": round(sps, 2),
        "epoch_s": round(sum(epoch_s) / len(epoch_s), 3),
        "epoch_s_all": [round(e, 3) for e in epoch_s],
        "full_epoch_s_est": round(len(ds.train) / sps, 1),
        "saved_mb": round(saved_bytes / 2**20, 3) if saved_bytes is not None else None,
        "peak_mem_mb": None if peak_mb is None else round(peak_mb, 2),
        "peak_mem_baseline_mb": None if base_mb is None else round(base_mb, 2),
        "peak_mem_method": mem.method if mem is not None else "not measured under --ddp (every rank trains in-process)",
        "in_own_process": not args.in_process and not args.ddp,
        "world_size": world,
        "global_batch_size": batch_size * world,
        "timed_s": round(timed_s, 4),
        "timed_samples": timed_samples,
        "test_acc": test_acc[-1] if test_acc else None,
        "test_acc_curve": test_acc,
        "test_samples": n_test,
        "train_curve": train_curve,
        "epochs": args.epochs,
        "dataset": ds.name,
        "train_batches_per_epoch": n_train,
        "timed_steps": gstep - min(gstep, args.warmup),
        "lr": spec.lr,
        "betas": list(spec.betas),
        "optimizer": opt_desc,
        "seed": args.seed,
        "profile": prof,
        "malloc": getattr(args, "malloc", None),
        "implementation": impl_description(net, impl),
    }


def shard_batches(split, indices, batch_size: int, nb: int):
    """Batches of this rank's DistributedSampler indices, index_select on the split's device."""
    idx_all = torch.tensor(indices, dtype=torch.int64).to(split.images.device)
    for i in range(nb):
        idx = idx_all[i * batch_size : (i + 1) * batch_size]
        img, lbl = split.images.index_select(0, idx), split.labels.index_select(0, idx)
        yield img.unsqueeze(1).to(torch.float32).div_(255.0), lbl


def impl_description(net: str, impl: str) -> str:
    if impl == "reference":
        return "per-step Python loop, snn_cuda reference neurons (backend='torch', step_mode='s')"
    if impl == "fused":
        return "snn_cuda fused multi-step layers (backend='fused'), Linear once over [T*B, ...]"
    lib = {"lif_fc": "spikingjelly", "tutorial5": "snntorch"}.get(net)
    try:
        from importlib.metadata import version

        return f"{lib} {version(lib)}, the tutorial's code"
    except Exception:
        return f"{lib}, the tutorial's code"


def child_main(args) -> int:
    args.malloc = tune_malloc(not args.no_malloc_tune)
    if args.threads:
        torch.set_num_threads(args.threads)
    net, impl = args._child.split(",")
    ds = data_mod.load_dataset(
        args.dataset, args.data_dir, allow_download=False, seed=args.seed, log=lambda s: None
    )  # the parent already said it
    ds = ds.to(args.device)
    result = run_one(net, impl, args, ds)
    with open(args._child_out, "w") as f:
        json.dump(result, f)
    return 0


# ---------------------------------------------------------------------------------------------
# Parent: plan, spawn, collect, report
# ---------------------------------------------------------------------------------------------
def machine_info(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "argv": sys.argv[1:],
    }
    hw = machine.describe()
    info.update(cpu=hw["cpu"], cpu_isa=hw["cpu_isa"], cpu_widest_isa=hw["cpu_widest_isa"])
    if torch.device(device).type == "cpu":
        info["copy_bandwidth"] = machine.copy_bandwidth("cpu")
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import snn_cuda

        b = snn_cuda.build_info()
        info["snn_cuda"] = {k: b.get(k) for k in ("version", "cpu", "cuda", "cpu_reason", "cuda_reason")}
        info["snn_cuda"]["path"] = os.path.dirname(os.path.abspath(snn_cuda.__file__))  # which build ran
    except Exception as e:
        info["snn_cuda"] = {"error": str(e)}
    for lib in ("spikingjelly", "snntorch"):
        try:
            from importlib.metadata import version

            info[lib] = version(lib)
        except Exception:
            info[lib] = None
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=_ROOT, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except Exception:
        info["git_commit"] = None
    return info


def plan(args):
    import nets

    names = NET_NAMES if args.net == "all" else (args.net,)
    impls = {"both": ("reference", "fused"), "all": ("reference", "fused", "peer")}.get(args.impl, (args.impl,))
    todo, skipped = [], []
    fused_reason = nets.fused_available(args.device)
    for net in names:
        for impl in impls:
            reason = ""
            if impl == "peer":
                reason = nets.peer_available(net)
            elif impl == "fused" and fused_reason:
                reason = f"snn_cuda's fused kernels are unavailable on {args.device}: {fused_reason}"
            if reason:
                skipped.append({"net": net, "impl": impl, "reason": reason})
                log(f"skipping {net}/{impl}: {reason}")
            else:
                todo.append((net, impl))
    return todo, skipped


def spawn_child(net, impl, args, dataset) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--_child",
            f"{net},{impl}",
            "--_child-out",
            out,
            "--device",
            args.device,
            "--epochs",
            str(args.epochs),
            "--limit-batches",
            str(args.limit_batches),
            "--limit-test-batches",
            str(args.limit_test_batches),
            "--dataset",
            dataset,
            "--data-dir",
            args.data_dir,
            "--seed",
            str(args.seed),
            "--warmup",
            str(args.warmup),
            "--adam",
            args.adam,
        ]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.T:
            cmd += ["-T", str(args.T)]
        for flag in ("no_profile", "no_progress", "no_malloc_tune"):
            if getattr(args, flag):
                cmd.append("--" + flag.replace("_", "-"))
        proc = subprocess.run(cmd, stdout=sys.stderr)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"{net}/{impl} child process failed (exit code {proc.returncode})")
        with open(out) as f:
            return json.load(f)


def add_ratios(runs) -> None:
    ref = {(r["net"], r.get("world_size", 1)): r for r in runs if r["impl"] == "reference"}
    for r in runs:
        base = ref.get((r["net"], r.get("world_size", 1)))
        r["speedup_vs_reference"] = round(r["samples_per_s"] / base["samples_per_s"], 2) if base else None
        r["saved_ratio_vs_reference"] = (
            round(r["saved_mb"] / base["saved_mb"], 4)
            if base and base.get("saved_mb") and r.get("saved_mb") is not None
            else None
        )
        r["acc_diff_vs_reference"] = (
            round(r["test_acc"] - base["test_acc"], 3) if base and r.get("test_acc") is not None else None
        )


def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return str(v)


def markdown(result) -> str:
    m, runs = result["machine"], result["runs"]
    lines = [
        f"# MNIST-style training benchmark ({runs[0]['dataset'] if runs else '?'})",
        "",
        f"{m.get('date')}, device `{m.get('device')}` ({m.get('gpu') or m.get('cpu')}, "
        f"{m.get('cpu_count')} CPUs, snn_cuda CPU kernels {m.get('cpu_isa')} variant, "
        f"torch {m.get('torch')}, {m.get('torch_threads')} threads"
        + (f", copy bandwidth {m['copy_bandwidth']['GB_s']:.1f} GB/s" if m.get("copy_bandwidth") else "")
        + "), "
        f"snn_cuda commit {m.get('git_commit')}"
        + (
            f" (snn_cuda imported from {m['snn_cuda']['path']})"
            if not str((m.get("snn_cuda") or {}).get("path") or "<repo>").startswith("<repo>")
            else ""
        )
        + ".",
        "",
    ]
    notes = list(result.get("notes", []))
    opts = sorted({r["optimizer"] for r in runs if r.get("optimizer")})
    if opts:
        notes.append("Optimiser, the same for every implementation: " + "; ".join(opts) + ".")
    mallocs = sorted({r["malloc"] for r in runs if r.get("malloc")})
    if mallocs:
        notes.append("Host allocator, the same for every implementation: " + "; ".join(mallocs) + ".")
    for n in notes:
        lines.append(f"> {n}")
    if notes:
        lines.append("")
    lines += [
        "| net | impl | T | batch | samples/s | speed-up vs ref | epoch s | full epoch s (est.) | "
        "saved MB | saved vs ref | peak MB | test acc % | epochs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["net"],
                    r["impl"] + (f" (DDP ×{r['world_size']})" if r.get("world_size", 1) > 1 else ""),
                    str(r["T"]),
                    str(r["batch_size"]),
                    _fmt(r["samples_per_s"], 0),
                    (_fmt(r.get("speedup_vs_reference"), 2) + "×") if r.get("speedup_vs_reference") else "–",
                    _fmt(r["epoch_s"], 2),
                    _fmt(r.get("full_epoch_s_est"), 0),
                    _fmt(r["saved_mb"], 2),
                    (_fmt(r.get("saved_ratio_vs_reference"), 3) + "×") if r.get("saved_ratio_vs_reference") else "–",
                    _fmt(r["peak_mem_mb"], 1),
                    _fmt(r["test_acc"], 2),
                    str(r["epochs"]),
                ]
            )
            + " |"
        )
    for s in result.get("skipped", []):
        lines.append(f"| {s['net']} | {s['impl']} | skipped: {s['reason']} |" + " |" * 10)
    summ = summary([r for r in runs if r.get("world_size", 1) == 1])
    if summ:
        lines += ["", "## Summary", ""] + [f"- {c}" for c in summ[:-1]] + ["", summ[-1]]
    prof = [r for r in runs if r.get("profile") and "top" in (r["profile"] or {})]
    if prof:
        lines += [
            "",
            "## Where a training step's time goes (torch.profiler, self time, one step)",
            "",
            "| net | impl | step ms | linear (mm/addmm) % | snn_cuda ops % | top ops (% self time) |",
            "|---|---|---|---|---|---|",
        ]
        for r in prof:
            p = r["profile"]
            top = ", ".join(f"{k} {v}" for k, v in p["top"][:5])
            lines.append(
                f"| {r['net']} | {r['impl']} | {p['total_ms']} | {p['linear_pct']} | {p['snn_cuda_ops_pct']} | {top} |"
            )
    ddp_runs = [r for r in runs if r.get("world_size", 1) > 1]
    if ddp_runs:
        lines += [
            "",
            "## Multi-process (DistributedDataParallel)",
            "",
            "| net | impl | world size | backend | batch per rank | global batch | total samples/s | "
            "per-rank samples/s | one-process samples/s | scaling efficiency | test acc % (rank 0) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ddp_runs:
            eff = r.get("scaling_efficiency")
            lines.append(
                "| "
                + " | ".join(
                    [
                        r["net"],
                        r["impl"],
                        str(r["world_size"]),
                        r.get("backend", "?"),
                        str(r["batch_size"]),
                        str(r["global_batch_size"]),
                        _fmt(r["samples_per_s"], 0),
                        ", ".join(_fmt(v, 0) for v in r.get("per_rank_samples_per_s", [])),
                        _fmt(r.get("single_process_samples_per_s"), 0),
                        f"{100 * eff:.0f}%" if eff is not None else "– (no --ddp-baseline)",
                        _fmt(r["test_acc"], 2),
                    ]
                )
                + " |"
            )
        lines += [
            "",
            "total samples/s = sum over ranks of the samples each trained / the slowest rank's timed "
            "seconds; scaling efficiency = total / (world size x one-process samples/s at the same "
            "per-rank batch). Under --ddp peak memory is not measured (each rank trains in-process).",
        ]
    lines += [
        "",
        "samples/s: training steps after warm-up, device synchronised. saved MB: distinct storages "
        "saved for backward in one training step, parameters excluded. peak MB: "
        + (runs[0]["peak_mem_method"] if runs else "")
        + ", each implementation in its own process.",
    ]
    return "\n".join(lines) + "\n"


def summary(runs):
    """Per net, the fused layers against the per-step reference (speed, saved-for-backward bytes,
    peak memory, accuracy), then one verdict line on speed. Empty without a fused/reference pair."""
    by = {(r["net"], r["impl"]): r for r in runs}
    out, speedups = [], []
    for net in NET_NAMES:
        f, ref = by.get((net, "fused")), by.get((net, "reference"))
        if not f or not ref:
            continue
        parts = []
        s = f.get("speedup_vs_reference")
        if s:
            speedups.append((net, s))
            parts.append(
                f"{s:.2f}x the reference's samples/s ({f['samples_per_s']:,.0f} vs {ref['samples_per_s']:,.0f})"
            )
        if f.get("saved_ratio_vs_reference") is not None:
            parts.append(
                f"{f['saved_ratio_vs_reference']:.2f}x its saved-for-backward bytes "
                f"({f['saved_mb']:.1f} vs {ref['saved_mb']:.1f} MB)"
            )
        if f.get("peak_mem_mb") is not None and ref.get("peak_mem_mb") is not None:
            parts.append(f"peak memory {f['peak_mem_mb']:,.0f} vs {ref['peak_mem_mb']:,.0f} MB")
        if f.get("acc_diff_vs_reference") is not None:
            parts.append(
                f"test accuracy {f['test_acc']:.2f}% vs {ref['test_acc']:.2f}% "
                f"({f['acc_diff_vs_reference']:+.2f} points"
                + (", synthetic data: meaningless" if f.get("dataset") == "synthetic" else "")
                + ")"
            )
        out.append(f"{net}: fused " + ", ".join(parts))
    if not speedups:
        return out
    device = next(r["device"] for r in runs)
    device = "the CPU" if device == "cpu" else device
    lo, hi = min(s for _, s in speedups), max(s for _, s in speedups)
    slower = [n for n, s in speedups if s < 1.0]
    span = f"{lo:.1f}x" if len(speedups) == 1 or f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f}x"
    if slower:
        verdict = (
            f"Verdict: on {device} the fused layers were slower than the per-step reference for "
            f"{', '.join(slower)} ({span} its speed)."
        )
    else:
        verdict = (
            f"Verdict: on {device} the fused layers trained {span} as fast as the per-step reference "
            f"({', '.join(f'{n} {s:.1f}x' for n, s in speedups)})."
        )
    return out + [verdict]


def plots(result, out_dir) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        log(f"no plots: matplotlib unavailable ({e})")
        return []
    runs = result["runs"]
    if not runs:
        return []
    written = []
    nets_ = [n for n in NET_NAMES if any(r["net"] == n for r in runs)]
    impls = [i for i in ("reference", "fused", "peer") if any(r["impl"] == i for r in runs)]
    colors = {"reference": "tab:gray", "fused": "tab:orange", "peer": "tab:blue"}
    fig, ax = plt.subplots(figsize=(2.6 + 2.2 * len(nets_), 4.2))
    w = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        for i, net in enumerate(nets_):
            r = next((r for r in runs if r["net"] == net and r["impl"] == impl), None)
            if r is None:
                continue
            x = i + (j - (len(impls) - 1) / 2) * w
            ax.bar(
                x,
                r["samples_per_s"],
                w,
                color=colors[impl],
                label=impl if i == 0 or not ax.get_legend_handles_labels()[1].count(impl) else None,
            )
            s = r.get("speedup_vs_reference")
            if s and impl != "reference":
                ax.text(x, r["samples_per_s"], f"{s:.1f}×", ha="center", va="bottom", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys())
    ax.set_xticks(range(len(nets_)))
    ax.set_xticklabels(
        [
            f"{n}\nT={next(r['T'] for r in runs if r['net'] == n)}, "
            f"B={next(r['batch_size'] for r in runs if r['net'] == n)}"
            for n in nets_
        ]
    )
    ax.set_yscale("log")
    ax.set_ylabel("training samples / s (log)")
    ax.set_title(f"Training throughput on {runs[0]['device']} (× = speed-up vs reference)")
    fig.tight_layout()
    p = os.path.join(out_dir, "throughput.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    written.append(p)

    fig, axes = plt.subplots(1, len(nets_), figsize=(4.5 * len(nets_), 3.8), squeeze=False)
    for ax, net in zip(axes[0], nets_):
        for impl in impls:
            r = next((r for r in runs if r["net"] == net and r["impl"] == impl), None)
            if r is None or not r["train_curve"]:
                continue
            xs = [c[0] for c in r["train_curve"]]
            ema, ys = None, []
            for c in r["train_curve"]:
                ema = c[1] if ema is None else 0.9 * ema + 0.1 * c[1]
                ys.append(ema)
            ax.plot(xs, ys, color=colors[impl], label=f"{impl} train (EMA)")
            per_epoch = len(xs) // max(r["epochs"], 1)
            ex = [xs[min(len(xs) - 1, (e + 1) * per_epoch - 1)] for e in range(len(r["test_acc_curve"]))]
            ax.plot(ex, r["test_acc_curve"], "o--", color=colors[impl], label=f"{impl} test")
        ax.set_title(net)
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("accuracy %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Accuracy ({runs[0]['dataset']})"
        + (" -- SYNTHETIC DATA: MEANINGLESS" if runs[0]["dataset"] == "synthetic" else "")
    )
    fig.tight_layout()
    p = os.path.join(out_dir, "accuracy.png")
    fig.savefig(p, dpi=120)
    plt.close(fig)
    written.append(p)
    return written


def ddp_main(args) -> int:
    """--ddp: one process per rank (under torchrun); rank 0 gathers and writes the results."""
    import torch.distributed as dist

    device = torch.device(args.device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        log(
            "error: --ddp needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): "
            "torchrun --nproc_per_node=N benchmarks/mnist_train.py --ddp ..."
        )
        return 2
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    say = log if rank == 0 else (lambda s: None)
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        # rank 0 loads first (and downloads if need be), then the others load what it got
        name = [None]
        if rank == 0:
            try:
                ds = data_mod.load_dataset(args.dataset, args.data_dir, seed=args.seed, log=say)
                name = [ds.name]
            except data_mod.DatasetUnavailable as e:
                say(f"error: {e}")
        dist.broadcast_object_list(name, src=0)
        if name[0] is None:
            return 2
        if rank != 0:
            ds = data_mod.load_dataset(name[0], args.data_dir, seed=args.seed, log=say, allow_download=False)
        say(
            f"dataset: {ds.pretty} ({len(ds.train)} train / {len(ds.test)} test images, from {ds.source}); "
            f"DDP: {world} ranks, backend {backend}, {torch.get_num_threads()} torch threads per rank"
        )
        notes = [
            f"DistributedDataParallel: {world} processes, backend {backend}, --batch-size per rank; "
            "peak memory not measured (every rank trains in-process)."
        ]
        if ds.name == "synthetic":
            notes.append("SYNTHETIC data: accuracy is meaningless; speed and memory are valid.")
        if args.limit_batches:
            notes.append(
                f"Short run: {args.limit_batches} training batches per epoch and rank, "
                f"{args.limit_test_batches or 'all'} test batches."
            )
        todo, skipped = plan(args)
        ds = ds.to(device)
        runs = []
        for net, impl in todo:
            single = None
            if args.ddp_baseline:
                say(f"== {net} / {impl}: one process (rank 0 alone, the others wait) ==")
                dist.barrier()
                if rank == 0:
                    single = run_one(net, impl, args, ds)
                    single["backend"] = None
                    single["in_own_process"] = False
                dist.barrier()
            say(f"== {net} / {impl}: DDP over {world} processes ==")
            mine = run_one(net, impl, args, ds, ddp=True)
            gathered = [None] * world
            dist.all_gather_object(
                gathered, {k: mine[k] for k in ("samples_per_s", "timed_s", "timed_samples", "epoch_s", "test_acc")}
            )
            if rank != 0:
                continue
            r = dict(mine)
            r["backend"] = backend
            r["per_rank_samples_per_s"] = [g["samples_per_s"] for g in gathered]
            r["per_rank_epoch_s"] = [g["epoch_s"] for g in gathered]
            r["per_rank_test_acc"] = [g["test_acc"] for g in gathered]
            r["samples_per_s"] = round(
                sum(g["timed_samples"] for g in gathered) / max(g["timed_s"] for g in gathered), 2
            )
            r["full_epoch_s_est"] = round(len(ds.train) / r["samples_per_s"], 1)
            r["single_process_samples_per_s"] = single["samples_per_s"] if single else None
            r["scaling_efficiency"] = (
                round(r["samples_per_s"] / (world * single["samples_per_s"]), 3) if single else None
            )
            if single:
                r["speedup_vs_one_process"] = round(r["samples_per_s"] / single["samples_per_s"], 2)
                runs.append(single)
                log(f"   one process: {single['samples_per_s']:.0f} samples/s")
            runs.append(r)
            log(
                f"   DDP x{world}: {r['samples_per_s']:.0f} samples/s in total, per rank "
                f"{r['per_rank_samples_per_s']}"
                + (f", scaling efficiency {100 * r['scaling_efficiency']:.0f}%" if single else "")
            )
        if rank == 0:
            add_ratios(runs)
            info = machine_info(args.device)
            info["world_size"] = world
            info["ddp_backend"] = backend
            write_results({"machine": info, "runs": runs, "skipped": skipped, "notes": notes}, args)
        dist.barrier()
        return 0
    finally:
        dist.destroy_process_group()


def write_results(result: dict, args) -> None:
    """results.json, results.md and the plots into --out; the table to stdout. Machine paths
    (checkout, venv, home, temporary folders) are replaced by placeholders first."""
    from snn_cuda._paths import scrub_paths

    result = scrub_paths(result, root=_ROOT)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    written = [] if args.no_plots else plots(result, args.out)
    print(md)
    log(f"wrote {', '.join([os.path.join(args.out, 'results.json'), os.path.join(args.out, 'results.md')] + written)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    machine.apply_isa(args.isa)  # before any kernel runs; the child processes inherit it
    if args._child:
        return child_main(args)
    args.malloc = tune_malloc(not args.no_malloc_tune)
    if args.ddp:
        return ddp_main(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        ds = data_mod.load_dataset(args.dataset, args.data_dir, seed=args.seed, log=log)
    except data_mod.DatasetUnavailable as e:
        log(f"error: {e}")
        return 2
    log(f"dataset: {ds.pretty} ({len(ds.train)} train / {len(ds.test)} test images, from {ds.source})")
    notes = []
    if ds.name == "synthetic":
        notes.append("SYNTHETIC data: accuracy is meaningless; speed and memory are valid.")
    if args.limit_batches:
        msg = (
            f"Short run: {args.limit_batches} training batches per epoch, "
            f"{args.limit_test_batches or 'all'} test batches"
            + (" (the CPU default; --limit-batches 0 for full epochs)" if args.limited_by_default else "")
            + "."
        )
        notes.append(msg)
        log(msg)
    todo, skipped = plan(args)
    info = machine_info(args.device)
    log(machine.line(machine.describe(), info.get("copy_bandwidth")))
    runs = []
    for net, impl in todo:
        log(f"== {net} / {impl} ==")
        try:
            if args.in_process:
                r = run_one(net, impl, args, ds.to(args.device))
            else:
                r = spawn_child(net, impl, args, ds.name)
        except Exception as e:
            traceback.print_exc()
            skipped.append({"net": net, "impl": impl, "reason": f"failed: {type(e).__name__}: {e}"})
            continue
        runs.append(r)
        log(
            f"   {r['samples_per_s']:.0f} samples/s, saved {r['saved_mb']} MB, peak {r['peak_mem_mb']} MB, "
            f"test acc {r['test_acc']}%"
        )
    add_ratios(runs)
    write_results({"machine": info, "runs": runs, "skipped": skipped, "notes": notes}, args)
    failed = [s for s in skipped if s["reason"].startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
