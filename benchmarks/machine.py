"""What ran a benchmark: CPU model, the snn_cuda CPU kernels' ISA variant, threads, copy bandwidth.

Shared by neuron_op.py and mnist_train.py, so that every result names the machine kind and the
kernel variant it measured (``--isa`` picks the variant: it sets SNN_CUDA_CPU_ISA before the first
kernel call, and child processes inherit it).
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch

ISA_CHOICES = ("avx512", "avx2", "default")


def add_isa_argument(parser) -> None:
    parser.add_argument(
        "--isa",
        choices=ISA_CHOICES,
        default=None,
        help="run the snn_cuda CPU kernels' variant for this instruction set "
        "(sets SNN_CUDA_CPU_ISA; default: the widest this CPU has)",
    )


def apply_isa(isa) -> None:
    """Select the CPU kernels' variant; call before any snn_cuda kernel runs."""
    if isa:
        os.environ["SNN_CUDA_CPU_ISA"] = isa


def _cpuinfo(key: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_widest_isa() -> str:
    """The widest variant the CPU supports, from its flags (as SNN_CUDA_CPU_ISA spells it)."""
    flags = set(_cpuinfo("flags").split())
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "default"


def kernel_isa() -> str | None:
    """The variant the snn_cuda CPU kernels run (None without them)."""
    try:
        import snn_cuda

        return snn_cuda.build_info().get("cpu_isa")
    except Exception as e:  # a bad SNN_CUDA_CPU_ISA: say so rather than crash the report
        return f"error: {e}"


def copy_bandwidth(device="cpu", mbytes=256, reps=10) -> dict:
    """dst.copy_(src) on a preallocated fp32 buffer, counted read + write."""
    n = mbytes * (1 << 20) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ts = []
    for i in range(reps + 2):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        dst.copy_(src)
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= 2:
            ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    return {
        "mbytes": mbytes,
        "bytes": 2 * n * 4,
        "median_s": t,
        "GB_s": 2 * n * 4 / t / 1e9,
        "best_GB_s": 2 * n * 4 / min(ts) / 1e9,
    }


def describe(threads=None) -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_widest_isa": cpu_widest_isa(),
        "cpu_isa": kernel_isa(),
        "cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def line(hw: dict, cb: dict | None = None) -> str:
    """CPU: <model>, snn_cuda CPU kernels <variant> (CPU: <widest>), N cores, T threads[, copy X GB/s]."""
    s = (
        f"CPU: {hw['cpu']}; snn_cuda CPU kernels: {hw['cpu_isa']} variant (the CPU has {hw['cpu_widest_isa']}); "
        f"{hw['cores']} cores, {hw['threads']} threads; torch {hw['torch']}, Python {hw['python']}"
    )
    if cb:
        s += f"; copy bandwidth {cb['GB_s']:.1f} GB/s ({cb['mbytes']} MB dst.copy_(src), read+write, median)"
    return s
