"""The CUDA kernel source as the run-time (NVRTC / CuPy) path compiles it.

The source is csrc/kernels/ itself (shipped inside the package as
snn_cuda/_kernels by setup.py, read from the source tree otherwise), reached
through an include path, not a copy: the program text is two #include lines
plus a digest of the headers (so cached binaries follow header edits). The
template instances are named by `name_expressions`, and the options pin the
same arithmetic as the nvcc build (no FMA contraction, IEEE division and
square root, no flush-to-zero).

`runtime_source()` / `runtime_options()` are exactly what snn_cuda.cupy_backend
hands to NVRTC; python_tests/test_nvrtc.py compiles the same for sm_80/sm_90.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ._model_list import MODELS as MODEL_DECLS
from ._model_list import SURROGATE_ENUMS

_PKG = Path(__file__).resolve().parent
MODELS: Tuple[Tuple[str, str], ...] = (
    ("MODEL_LIF", "RESET_HARD"),
    ("MODEL_LIF", "RESET_SOFT"),
    ("MODEL_IF", "RESET_HARD"),
    ("MODEL_IF", "RESET_SOFT"),
    ("MODEL_LEAKY", "RESET_HARD"),
    ("MODEL_LEAKY", "RESET_SOFT"),
    ("MODEL_LEAKY", "RESET_NONE"),
)
SURROGATES = SURROGATE_ENUMS  # the kernels' enum names, in kind_id order (generated list)
STORAGE = {"float32": "float", "float64": "double", "float16": "snn::half_t", "bfloat16": "snn::bf16_t"}
KERNEL_FILES = ("neuron_kernels.cuh", "encoder_kernels.cuh", "convert_kernels.cuh", "model_kernels.cuh")


def kernel_dir() -> Path:
    for d in (_PKG / "_kernels", _PKG.parent / "csrc" / "kernels"):
        if (d / "neuron_kernels.cuh").exists():
            return d
    raise FileNotFoundError(
        "snn_cuda: the CUDA kernel headers were not found (expected snn_cuda/_kernels/ in an installed "
        "package or csrc/kernels/ in the source tree)"
    )


def headers() -> Dict[str, str]:
    """name -> text of every kernel header (for inspection: NVRTC reads them through the
    include path kernel_dir(), see runtime_options)."""
    d = kernel_dir()
    return {str(p.relative_to(d)): p.read_text() for p in kernel_files()}


def source() -> str:
    return "".join(f'#include "{f}"\n' for f in KERNEL_FILES)


def kernel_files() -> List[Path]:
    d = kernel_dir()
    return sorted(d.rglob("*.h")) + sorted(d.rglob("*.cuh"))  # models/ included


@functools.lru_cache(maxsize=None)
def _digest(paths_and_mtimes: tuple) -> str:
    h = hashlib.sha256()
    for path, _mtime in paths_and_mtimes:
        p = Path(path)
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def headers_digest() -> str:
    """sha256 over the names and contents of every kernel header."""
    files = kernel_files()
    return _digest(tuple((str(p), p.stat().st_mtime_ns) for p in files))


def runtime_source() -> str:
    """The program text of the run-time path: the digest comment (part of
    every cache key) and the #include lines; the headers come from the include
    path `kernel_dir()`."""
    return f"// snn_cuda CUDA kernels, headers sha256 {headers_digest()}\n" + source()


def forward_name(combo: int, dtype: str) -> str:
    m, r = MODELS[combo]
    return f"snn::neuron_fwd_kernel<snn::{m}, snn::{r}, {STORAGE[dtype]}>"


def backward_name(combo: int, surrogate: int, dtype: str) -> str:
    m, r = MODELS[combo]
    return f"snn::neuron_bwd_kernel<snn::{m}, snn::{r}, snn::{SURROGATES[surrogate]}, {STORAGE[dtype]}>"


def poisson_name(dtype: str) -> str:
    return f"snn::poisson_kernel<{STORAGE[dtype]}>"


def narrow_name(dtype: str) -> str:
    return f"snn::narrow_kernel<{STORAGE[dtype]}>"


def widen_name(dtype: str) -> str:
    return f"snn::widen_kernel<{STORAGE[dtype]}>"


def _model_struct(model: int) -> str:
    for decl in MODEL_DECLS.values():
        if decl.id == model:
            return decl.struct
    raise ValueError(f"snn_cuda: no declared model has id {model}")


def model_forward_name(model: int, variant: int, dtype: str) -> str:
    """The forward of a declared model (kernels/model_kernels.cuh), by its id in the model list."""
    return f"snn::model_fwd_kernel<snn::{_model_struct(model)}, {variant}, {STORAGE[dtype]}>"


def model_backward_name(model: int, variant: int, dtype: str) -> str:
    """Its backward, the surrogate chosen at run time (SG_ANY, as the nvcc launchers compile it)."""
    return f"snn::model_bwd_kernel<snn::{_model_struct(model)}, {variant}, snn::SG_ANY, {STORAGE[dtype]}>"


def model_name_expressions(dtypes: Optional[List[str]] = None) -> List[str]:
    """Every declared model x variant x dtype: forward and backward."""
    dtypes = list(STORAGE) if dtypes is None else dtypes
    names = []
    for dt in dtypes:
        for decl in MODEL_DECLS.values():
            for v in range(len(decl.variants)):
                names += [model_forward_name(decl.id, v, dt), model_backward_name(decl.id, v, dt)]
    return names


def name_expressions(dtypes: Optional[List[str]] = None) -> List[str]:
    dtypes = list(STORAGE) if dtypes is None else dtypes
    names = []
    for dt in dtypes:
        for c in range(len(MODELS)):
            names.append(forward_name(c, dt))
            names += [backward_name(c, s, dt) for s in range(len(SURROGATES))]
        names.append(poisson_name(dt))
        names += [narrow_name(dt), widen_name(dt)]
        names += model_name_expressions([dt])
    return names


def options(arch: str) -> List[str]:
    """NVRTC options for `arch` like "sm_90" (or "compute_90" for PTX)."""
    return [
        f"--gpu-architecture={arch}",
        "--std=c++17",
        "--fmad=false",  # bit parity with the CPU kernels and the reference
        "--prec-div=true",
        "--prec-sqrt=true",
        "--ftz=false",  # must stay last of its kind: NVRTC honours the last -ftz
        "-default-device",
    ]


def runtime_options(arch: str, cuda_include: str) -> List[str]:
    """The full NVRTC option list of the run-time path: `options(arch)` plus
    the include paths of the kernel headers and of cuda_fp16.h/cuda_bf16.h."""
    return options(arch) + [f"--include-path={kernel_dir()}", f"--include-path={cuda_include}"]


def cuda_include_dirs() -> List[str]:
    """Directories holding cuda_fp16.h / cuda_bf16.h for NVRTC: the CUDA
    toolkit when there is one, else the headers shipped in NVIDIA's PyPI
    wheels (nvidia-cuda-runtime / nvidia-cuda-nvrtc)."""
    import os
    import sys

    dirs = []
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            dirs.append(Path(os.environ[env]) / "include")
    dirs.append(Path("/usr/local/cuda/include"))
    for sp in sys.path:
        base = Path(sp) / "nvidia"
        if base.is_dir():
            dirs += sorted(base.glob("cu*/include")) + sorted(base.glob("cuda_runtime/include"))
    return [str(d) for d in dirs if (d / "cuda_fp16.h").exists()]
