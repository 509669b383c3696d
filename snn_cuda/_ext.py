"""Loads the compiled extension. Importing snn_cuda never fails: without a
usable extension everything runs on the reference backend, and
`build_info()` / the errors of backend="fused" say why."""
from __future__ import annotations

import importlib
import os

import torch

_REBUILD = "pip install --no-build-isolation --force-reinstall --no-deps ."

loaded = False
load_error: str | None = None
build: dict = {}

try:
    from ._build_info import BUILD_INFO as build  # written by setup.py
except Exception:  # pragma: no cover - source tree without a build
    build = {}


def _base_version(v: str) -> str:
    return v.split("+")[0]


def _load() -> None:
    global loaded, load_error
    if os.environ.get("SNN_CUDA_DISABLE_EXTENSION", "") not in ("", "0"):
        load_error = "disabled by SNN_CUDA_DISABLE_EXTENSION"
        return
    built_for = build.get("torch_version")
    if built_for is not None and built_for != torch.__version__:
        load_error = (
            f"the compiled extension was built against torch {built_for} but torch {torch.__version__} "
            f"is running; rebuild it with `{_REBUILD}` (from the snn_cuda source tree)"
        )
        return
    try:
        importlib.import_module("snn_cuda._C")
    except ImportError as e:
        msg = str(e)
        if "undefined symbol" in msg:
            load_error = (
                f"the compiled extension does not match torch {torch.__version__} ({msg}); "
                f"rebuild it with `{_REBUILD}`"
            )
        elif "No module named" in msg:
            load_error = (
                "snn_cuda was installed without its compiled extension; install from source with "
                f"`{_REBUILD}` (needs a C++ compiler; nvcc and CUDA_HOME for the CUDA kernels)"
            )
        else:
            load_error = f"loading the compiled extension failed: {msg}"
        return
    loaded = True


_load()


def has_kernel(op: str, dispatch_key: str) -> bool:
    if not loaded:
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(f"snn_cuda::{op}", dispatch_key))
    except Exception:  # pragma: no cover
        return False


# Looked up once: the layers consult these on every call, also while
# torch.compile traces them.
_CPU_OK = has_kernel("neuron_forward", "CPU") and has_kernel("neuron_backward", "CPU")
_CUDA_OK = has_kernel("neuron_forward", "CUDA") and has_kernel("neuron_backward", "CUDA")


def cpu_available() -> bool:
    return _CPU_OK


def cuda_available() -> bool:
    return _CUDA_OK


def unavailable_reason(device_type: str) -> str:
    """Why no fused kernel runs on this device type ('' if one does)."""
    if not loaded:
        return load_error or "the compiled extension is not loaded"
    if device_type == "cpu":
        return "" if cpu_available() else "the extension has no CPU kernels"
    if device_type == "cuda":
        if cuda_available():
            return ""
        return (
            "snn_cuda was built without CUDA kernels (CPU-only build); rebuild with a CUDA build of torch, "
            "nvcc on PATH and CUDA_HOME set: SNN_CUDA_FORCE_CUDA=1 " + _REBUILD
        )
    return f"no fused kernels for device type {device_type!r}"
