"""Loads the compiled extension. Importing snn_cuda never fails: without a
usable extension everything runs on the reference backend, and
`build_info()` / the errors of backend="fused" say why."""

from __future__ import annotations

import importlib
import importlib.util
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
                f"the compiled extension does not match torch {torch.__version__} ({msg}); rebuild it with `{_REBUILD}`"
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


def cpu_isa() -> str | None:
    """The instruction-set variant the CPU kernels run: "avx512", "avx2" or "default" (the widest
    the CPU has, or the one SNN_CUDA_CPU_ISA forces); None without CPU kernels. Raises the
    ValueError of a misspelt SNN_CUDA_CPU_ISA or of a variant this CPU lacks."""
    if not _CPU_OK or not hasattr(torch.ops.snn_cuda, "cpu_isa"):
        return None
    return torch.ops.snn_cuda.cpu_isa()


def cuda_available() -> bool:
    return _CUDA_OK


def unavailable_reason(device_type: str) -> str:
    """Why no fused kernel runs on this device type ('' if one does). On CUDA: the compiled
    kernels, else the CuPy path (kernels compiled at run time by NVRTC), else the reason and how
    to get either."""
    if not loaded:
        return load_error or "the compiled extension is not loaded"
    if device_type == "cpu":
        return "" if cpu_available() else "the extension has no CPU kernels"
    if device_type == "cuda":
        if cuda_available():
            return ""
        why = _cupy_serves_cuda()
        if not why:
            return ""
        return (
            f"snn_cuda was built without CUDA kernels (CPU-only build) and the CuPy path cannot run ({why}); "
            f"for fused GPU kernels either install CuPy (no CUDA compiler needed): {_CUPY_HINT}, or rebuild "
            "with a CUDA build of torch, nvcc on PATH and CUDA_HOME set: SNN_CUDA_FORCE_CUDA=1 " + _REBUILD
        )
    return f"no fused kernels for device type {device_type!r}"


# ------------------------------------------------------------------------------------------
# The CuPy path (snn_cuda/cupy_backend.py): the same kernel headers compiled at run time by
# NVRTC, registered as the ops' CUDA kernels when the extension has none. Registering is cheap
# and happens at import when CuPy is installed (CuPy itself is imported on first use only);
# SNN_CUDA_DISABLE_CUPY=1 turns the path off.
# ------------------------------------------------------------------------------------------
_CUPY_HINT = 'pip install "snn_cuda[cupy]"'
cupy_register_error: str | None = None


def _cupy_disabled() -> bool:
    return os.environ.get("SNN_CUDA_DISABLE_CUPY", "") not in ("", "0")


def _cupy_installed() -> bool:
    try:
        return importlib.util.find_spec("cupy") is not None
    except Exception:  # pragma: no cover - a broken finder
        return False


def cupy_reason() -> str:
    """Why the CuPy path cannot run CUDA tensors here ('' when it can). Imports CuPy."""
    if not loaded:
        return "the snn_cuda ops are not registered (" + (load_error or "the compiled extension is not loaded") + ")"
    if _cupy_disabled():
        return "disabled by SNN_CUDA_DISABLE_CUPY"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    from . import cupy_backend

    return cupy_backend.unavailable_reason()


def _assume_constant(fn):
    # torch.compile runs these while tracing and keeps the result (they import CuPy and may
    # register kernels on first use, which must not be traced).
    deco = getattr(getattr(torch, "compiler", None), "assume_constant_result", None)
    return deco(fn) if deco is not None else fn


def _register_cupy() -> str:
    """Registers the CuPy kernels for the CUDA key unless they already are: '' on success, else
    why it failed."""
    from . import cupy_backend

    if cupy_backend.registered() is None:
        try:
            cupy_backend.register("CUDA")
        except Exception as e:  # pragma: no cover - torch.library refused
            return f"registering the CuPy kernels failed ({type(e).__name__}: {e})"
    return ""


@_assume_constant
def _cupy_serves_cuda() -> str:
    """'' when the CuPy kernels serve the CUDA key (registering them now if the import-time
    registration did not happen), else why not. Only called without compiled CUDA kernels."""
    why = cupy_reason()
    if why:
        return why
    return _register_cupy()


_cupy_forced_warned = False


@_assume_constant
def cupy_unavailable_reason(device_type: str) -> str:
    """For backend="cupy": '' when the CuPy kernels serve this device type (making them the CUDA
    kernels of the snn_cuda ops, in place of compiled ones, for the rest of the process), else
    why they cannot."""
    global _cupy_forced_warned
    if device_type != "cuda":
        return f"the CuPy path runs CUDA tensors only, got a {device_type} tensor"
    why = cupy_reason()
    if why:
        return why
    from . import cupy_backend

    if cupy_backend.registered() is None:
        why = _register_cupy()
        if why:
            return why
        if cuda_available() and not _cupy_forced_warned:
            _cupy_forced_warned = True
            import warnings

            warnings.warn(
                "snn_cuda: backend='cupy': the CuPy-compiled kernels now serve every CUDA call of the snn_cuda ops "
                "in this process, in place of the compiled CUDA kernels (snn_cuda.cupy_backend.unregister() "
                "restores them)",
                RuntimeWarning,
                stacklevel=4,
            )
    return ""


def cuda_backend() -> str | None:
    """Which kernels run CUDA tensors now: "compiled", "cupy", or None (the reference)."""
    if not loaded:
        return None
    try:
        from . import cupy_backend

        if cupy_backend.registered() == "CUDA":
            return "cupy"
    except Exception:  # pragma: no cover
        pass
    return "compiled" if cuda_available() else None


def cupy_info() -> dict:
    """The CuPy path for build_info(): whether it can run, why not, the versions it found."""
    out = {"installed": _cupy_installed(), "available": False, "reason": "", "registered_for": None}
    try:
        from . import cupy_backend

        out["registered_for"] = cupy_backend.registered()
        if not out["installed"]:
            out["reason"] = f"CuPy is not installed; {_CUPY_HINT}"
        else:
            why = cupy_reason()
            out.update({k: v for k, v in cupy_backend.info().items() if k not in ("available", "reason")})
            out["available"] = not why
            out["reason"] = why
            out["registered_for"] = cupy_backend.registered()
    except Exception as e:  # build_info() must never fail
        out["reason"] = f"{type(e).__name__}: {e}"
    if cupy_register_error:
        out["register_error"] = cupy_register_error
    return out


def _register_cupy_at_import() -> None:
    global cupy_register_error
    if not loaded or _CUDA_OK or torch.version.cuda is None or _cupy_disabled() or not _cupy_installed():
        return
    try:
        from . import cupy_backend

        cupy_backend.register("CUDA")
    except Exception as e:  # import never fails
        cupy_register_error = f"{type(e).__name__}: {e}"


_register_cupy_at_import()
