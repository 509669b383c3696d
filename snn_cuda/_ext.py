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


def unavailable_reason(device_type: str, x=None, backend: str = "auto") -> str:
    """Why no fused kernel runs on this device type ('' if one does). On CUDA: the compiled
    kernels, else the CuPy path (kernels compiled at run time by NVRTC), else the reason and how
    to get either. With `x` (the tensor about to be run) the compiled kernels are also probed,
    once per device, for an image this GPU can run (kernel_image_reason): without one,
    `backend="auto"` goes on with the CuPy path (registering it) or, failing that, gets the
    reason (the caller falls back to the reference); `backend="fused"` gets the reason."""
    if not loaded:
        return load_error or "the compiled extension is not loaded"
    if device_type == "cpu":
        return "" if cpu_available() else "the extension has no CPU kernels"
    if device_type == "cuda":
        if cuda_available():
            why = kernel_image_reason(x) if x is not None else ""
            return _route_without_image(why, backend) if why else ""
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
# Kernel-image probe. A build's fatbinary holds SASS for the archs of its TORCH_CUDA_ARCH_LIST
# and PTX for those marked +PTX; on a GPU outside both (an older GPU, or a build whose list was
# narrowed to the build machine's GPU) every launch fails with cudaErrorNoKernelImageForDevice.
# Registration cannot know the GPU, so the layers ask at their first real call on a device:
# the extension resolves one kernel of each compiled unit there (csrc/cuda/launch.cu,
# probe_kernel_image). Never for fake or meta tensors, nor while tracing: those run no kernel,
# and a probe would be a graph break (dynamo) or a device query inside a trace.
# ------------------------------------------------------------------------------------------
NO_KERNEL_IMAGE = 209  # cudaErrorNoKernelImageForDevice
# A cudaError_t the probe reports instead of asking the GPU: the fallback can be exercised on a
# GPU whose image is present (and decided in tests through `_probe_hook`).
PROBE_ERROR_ENV = "SNN_CUDA_PROBE_ERROR"

_image_status: dict = {}  # device index -> cudaError_t of the probe (0: the kernels run)
_image_warned: set = set()


def _probe_device(index: int) -> int:
    injected = os.environ.get(PROBE_ERROR_ENV, "").strip()
    if injected:
        try:
            return int(injected)
        except ValueError:
            raise ValueError(
                f"{PROBE_ERROR_ENV} must be a cudaError_t code (an integer, e.g. {NO_KERNEL_IMAGE} for "
                f"cudaErrorNoKernelImageForDevice), got {injected!r}"
            ) from None
    if not hasattr(torch.ops.snn_cuda, "cuda_kernel_image_status"):  # pragma: no cover - an older build
        return 0
    return int(torch.ops.snn_cuda.cuda_kernel_image_status(index))


# The probe itself (device index -> cudaError_t); tests substitute it.
_probe_hook = _probe_device


try:  # private torch APIs: without them the probe relies on is_compiling / is_tracing alone
    from torch._subclasses.fake_tensor import is_fake as _torch_is_fake
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
except Exception:  # pragma: no cover - moved in another torch
    _torch_is_fake = _get_current_dispatch_mode_stack = None


def _tracing() -> bool:
    """torch.compile or torch.jit tracing, or any dispatch mode active (FakeTensorMode, make_fx's
    proxy mode, a user's mode): no kernel of ours runs for real then."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return True
    if torch.jit.is_tracing():
        return True
    return _get_current_dispatch_mode_stack is not None and bool(_get_current_dispatch_mode_stack())


def _is_fake(x) -> bool:
    if _torch_is_fake is not None:
        return bool(_torch_is_fake(x))
    return type(x).__name__ == "FakeTensor"  # pragma: no cover


def probe_allowed(x) -> bool:
    """Whether `x` is a real CUDA tensor outside any trace: the only case the probe runs for."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cuda" or x.is_meta:
        return False
    return not _tracing() and not _is_fake(x)


def _device_text(index: int) -> str:
    try:
        major, minor = torch.cuda.get_device_capability(index)
        return f"cuda:{index}, {torch.cuda.get_device_name(index)}, compute capability {major}.{minor}"
    except Exception:
        return f"cuda:{index}"


def _built_archs() -> str:
    archs = build.get("cuda_arch_list") or "?"
    src = build.get("cuda_arch_list_source")
    return f"TORCH_CUDA_ARCH_LIST={archs!r}" + (f" ({src})" if src else "")


def image_message(index: int, status: int) -> str:
    """The reason the compiled kernels cannot run on device `index` (probe result `status`)."""
    what = (
        "no kernel image for this GPU (cudaErrorNoKernelImageForDevice)"
        if status == NO_KERNEL_IMAGE
        else f"resolving a kernel failed (cudaError_t {status})"
    )
    return (
        f"the compiled CUDA kernels cannot run on {_device_text(index)}: {what}; this build targets "
        f"{_built_archs()}: rebuild with TORCH_CUDA_ARCH_LIST including this GPU's compute capability"
    )


def kernel_image_reason(x) -> str:
    """'' when the compiled CUDA kernels can run on x's device (or the question does not arise:
    not a real CUDA tensor, or tracing); else why not. Probes once per device and warns once per
    device when the answer is no. While tracing, a device already probed keeps its answer."""
    if not _CUDA_OK or not isinstance(x, torch.Tensor) or x.device.type != "cuda":
        return ""
    if probe_allowed(x):
        index = x.device.index if x.device.index is not None else torch.cuda.current_device()
        status = _image_status.get(index)
        if status is None:
            status = _image_status[index] = int(_probe_hook(index))
    else:
        index = x.device.index if x.device.index is not None else 0
        status = _image_status.get(index, 0)
    if status == 0:
        return ""
    msg = image_message(index, status)
    if index not in _image_warned and not _tracing():
        _image_warned.add(index)
        import warnings

        warnings.warn(
            f"snn_cuda: {msg}. backend='auto' runs the CuPy path (the same kernels compiled for this GPU at "
            "run time) or else the reference instead; backend='fused' raises",
            RuntimeWarning,
            stacklevel=4,
        )
    return msg


def _route_without_image(why: str, backend: str) -> str:
    """Where a call goes when the compiled kernels have no image for the device: '' when the CuPy
    path now serves it (backend "auto" only, registering it), else the reason (the caller raises
    for "fused", falls back to the reference for "auto")."""
    if backend != "auto":
        return (
            f"{why}. backend='fused' runs the compiled kernels; backend='auto' falls back to the CuPy path "
            "or the reference, backend='cupy' runs the CuPy path"
        )
    cupy_why = _cupy_serves_cuda()
    if not cupy_why:
        return ""
    return f"{why}; the CuPy path cannot run either ({cupy_why}); for it: {_CUPY_HINT}"


def reset_probe() -> None:
    """Forgets the probe results and warnings (tests; a process that swapped GPUs)."""
    _image_status.clear()
    _image_warned.clear()


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
