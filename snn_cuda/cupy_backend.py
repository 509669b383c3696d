"""The fused CUDA kernels without a CUDA compiler: csrc/kernels compiled at run time by NVRTC
through CuPy, registered as the CUDA kernels of the snn_cuda ops when the extension has none.

Used for CUDA tensors when snn_cuda was built without nvcc (``pip install "snn_cuda[cupy]"``):
the torch ops, their autograd and fake kernels stay the ones of ``snn_cuda.ops``; only the CUDA
dispatch key gets the Python implementations below, so ``torch.compile``, ``opcheck`` and the
layers behave as with the compiled kernels.

* Source: the very headers nvcc compiles (``cuda_source.kernel_dir()``, an include path, not a
  copy); one NVRTC program per template instance, compiled on first use with
  ``cuda_source.runtime_options(arch)`` (``--fmad=false``, IEEE division/sqrt, no FTZ).
  NVRTC is CuPy's (``cupy.cuda.nvrtc``): ``cupy.RawModule(code=...)`` is not used because CuPy
  appends ``-ftz=true`` after the caller's options and NVRTC honours the last one, which would
  flush denormals and break bit parity with the reference (docs/neuron_semantics.md, rounding).
* Cache: binaries in memory per (arch, options, instance), and on disk under
  ``$CUPY_CACHE_DIR/snn_cuda`` (default ``~/.cupy/kernel_cache/snn_cuda``; ``SNN_CUDA_CUPY_CACHE_DIR``
  overrides, ``CUPY_CACHE_IN_MEMORY=1`` disables), keyed by the source (which carries a digest of
  the headers), the options, the arch and the NVRTC version.
* Host side: none in Python. Every op's checks, output allocation, launch struct, work items and
  kernel instance come from the C++ host code the compiled CPU and CUDA ops run (csrc/host.h,
  csrc/model_host.h), through the prepare ops of csrc/prepare.cpp (``neuron_prepare_forward``,
  ``neuron_prepare_backward``, ``poisson_prepare``, ``narrow_prepare``, ``widen_prepare``,
  ``model_prepare_forward``, ``model_prepare_backward``), built into every extension, CPU-only
  included, and registered for tensors of any device. They return the op's outputs, the tensors the
  struct points into (kept alive until the launch) and the struct as bytes; errors are therefore
  the compiled ops' errors, word for word. This module compiles and launches.
* Launch: the struct (its ctypes view below, the layout checked against g++ by the tests) is
  passed by value as a one-element numpy void array, CuPy's documented way to pass a struct;
  torch's pointers are used as they are (zero copy), on torch's current stream of the tensor's
  device, with the compiled launcher's grid ``grid_blocks(N, 256, SMs, blocks/SM)`` (blocks/SM:
  the occupancy API's answer for the kernel, asked once per kernel and device).

Importing this module does not import CuPy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import cuda_source
from . import model_ops as _model_ops
from ._model_list import MODELS as _MODEL_DECLS

SG_COUNT = len(cuda_source.SURROGATES)
SG_ANY = -1  # the surrogate chosen at run time (surrogate.h), as the model backwards are compiled
BLOCK = 256  # kBlockThreads (csrc/kernels/params.h)

CUPY_INSTALL_HINT = 'pip install "snn_cuda[cupy]"'

# ------------------------------------------------------------------------------------------
# Views of the launch structs the C++ host code packs (csrc/kernels/params.h, encoder.h,
# convert.h, models.h), field for field: python_tests/test_cupy.py compares the offsets and sizes
# with what g++ computes for the C++ structs.
# ------------------------------------------------------------------------------------------
_i64 = ctypes.c_longlong
_ptr = ctypes.c_void_p
_f64 = ctypes.c_double
_int = ctypes.c_int


class SeqLayout(ctypes.Structure):
    _fields_ = [("run", _i64), ("run_stride", _i64), ("tstride", _i64)]


class FwdParams(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("N", _i64),
        ("x_tstride", _i64),
        ("x", _ptr),
        ("v0", _ptr),
        ("spikes", _ptr),
        ("saved", _ptr),
        ("v_seq", _ptr),
        ("v_last", _ptr),
        ("ckpt", _ptr),
        ("tau", _f64),
        ("v_th", _f64),
        ("v_reset", _f64),
        ("v_floor", _f64),
        ("beta", _f64),
        ("v_init", _f64),
        ("decay_input", _int),
        ("has_floor", _int),
        ("plif", _int),
        ("decay_param", _ptr),
        ("th_param", _ptr),
        ("P", _i64),
        ("spikes_u8", _int),
        ("io", SeqLayout),
    ]


class BwdParams(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("N", _i64),
        ("grad_spikes", _ptr),
        ("grad_v_seq", _ptr),
        ("grad_v_last", _ptr),
        ("saved", _ptr),
        ("ckpt", _ptr),
        ("x", _ptr),
        ("x_tstride", _i64),
        ("v0", _ptr),
        ("grad_x", _ptr),
        ("grad_v0", _ptr),
        ("tau", _f64),
        ("v_th", _f64),
        ("v_reset", _f64),
        ("v_floor", _f64),
        ("beta", _f64),
        ("v_init", _f64),
        ("sg_param", _f64),
        ("decay_input", _int),
        ("has_floor", _int),
        ("detach_reset", _int),
        ("const_input", _int),
        ("plif", _int),
        ("decay_param", _ptr),
        ("th_param", _ptr),
        ("P", _i64),
        ("grad_decay", _ptr),
        ("grad_th", _ptr),
        ("io", SeqLayout),
    ]


class PoissonParams(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("N", _i64),
        ("x", _ptr),
        ("out", _ptr),
        ("seed_ptr", _ptr),
        ("seed", ctypes.c_ulonglong),
    ]


class NarrowParams(ctypes.Structure):
    _fields_ = [("n", _i64), ("x", _ptr), ("out", _ptr), ("not_binary", _ptr)]


class WidenParams(ctypes.Structure):
    _fields_ = [("n", _i64), ("x", _ptr), ("out", _ptr)]


class MFwdParams(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("N", _i64),
        ("x_tstride", _i64),
        ("x", _ptr),
        ("params", _ptr),
        ("P", _i64),
        ("state0", _ptr),
        ("spikes", _ptr),
        ("state_seq", _ptr),
        ("state_last", _ptr),
        ("ckpt", _ptr),
        ("spikes_u8", _int),
        ("io", SeqLayout),
    ]


class MBwdParams(ctypes.Structure):
    _fields_ = [
        ("T", _i64),
        ("N", _i64),
        ("x_tstride", _i64),
        ("x", _ptr),
        ("params", _ptr),
        ("P", _i64),
        ("state0", _ptr),
        ("ckpt", _ptr),
        ("state_seq", _ptr),
        ("grad_spikes", _ptr),
        ("grad_state_seq", _ptr),
        ("grad_state_last", _ptr),
        ("grad_x", _ptr),
        ("grad_state0", _ptr),
        ("grad_params", _ptr),
        ("sg_param", _f64),
        ("surrogate", _int),
        ("detach_reset", _int),
        ("const_input", _int),
        ("io", SeqLayout),
    ]


PARAM_STRUCTS = {
    "SeqLayout": SeqLayout,
    "FwdParams": FwdParams,
    "BwdParams": BwdParams,
    "PoissonParams": PoissonParams,
    "NarrowParams": NarrowParams,
    "WidenParams": WidenParams,
    "MFwdParams": MFwdParams,
    "MBwdParams": MBwdParams,
}


def grid_blocks(n: int, block: int, sm_count: int, blocks_per_sm: int = 0) -> int:
    """snn::grid_blocks (params.h): one thread per work item, capped at one full wave of
    resident blocks (sm_count x blocks_per_sm, the occupancy API's answer for the kernel; 0:
    2048 / block); past the cap the kernels grid-stride."""
    need = (n + block - 1) // block
    per_sm = blocks_per_sm if blocks_per_sm > 0 else (2048 // block if 2048 // block > 0 else 1)
    cap = (sm_count if sm_count > 0 else 1) * per_sm
    g = need if need < cap else cap
    return g if g > 0 else 1


# ------------------------------------------------------------------------------------------
# which template instance a call needs (the dispatch of csrc/cuda/launch*.cu)
# ------------------------------------------------------------------------------------------
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


class Kernel(NamedTuple):
    kind: str  # "fwd" | "bwd" | "poisson" | "narrow" | "widen" | "model_fwd" | "model_bwd"
    combo: int  # host.h combo_index(model, reset) for fwd/bwd; the model id (_model_list.MODELS) for model_*; else 0
    sg: int  # surrogate id (bwd only; -1, SG_ANY, for model_bwd: the kernel reads it from its params)
    dtype: str  # storage dtype name, a key of cuda_source.STORAGE
    variant: int = 0  # the declared model's variant (model_* only)

    @property
    def name(self) -> str:
        if self.kind == "model_fwd":
            return cuda_source.model_forward_name(self.combo, self.variant, self.dtype)
        if self.kind == "model_bwd":
            return cuda_source.model_backward_name(self.combo, self.variant, self.dtype)
        if self.kind == "fwd":
            return cuda_source.forward_name(self.combo, self.dtype)
        if self.kind == "bwd":
            return cuda_source.backward_name(self.combo, self.sg, self.dtype)
        if self.kind == "narrow":
            return cuda_source.narrow_name(self.dtype)
        if self.kind == "widen":
            return cuda_source.widen_name(self.dtype)
        return cuda_source.poisson_name(self.dtype)


def dispatch_names(dtypes: Optional[Sequence[torch.dtype]] = None) -> List[str]:
    """Every template instance the ops can request: the compiled (model, reset) combinations
    (cuda_source.MODELS; ParametricLIF runs the LIF ones) x surrogate x dtype, the Poisson
    encoder, the byte conversions and every declared model x variant (forward and SG_ANY
    backward)."""
    names = []
    for dt in (DTYPE_NAMES[d] for d in (DTYPE_NAMES if dtypes is None else dtypes)):
        for c in range(len(cuda_source.MODELS)):
            names.append(Kernel("fwd", c, 0, dt).name)
            names += [Kernel("bwd", c, s, dt).name for s in range(SG_COUNT)]
        names.append(Kernel("poisson", 0, 0, dt).name)
        names += [Kernel("narrow", 0, 0, dt).name, Kernel("widen", 0, 0, dt).name]
        for decl in _MODEL_DECLS.values():
            for v in range(len(decl.variants)):
                names.append(Kernel("model_fwd", decl.id, 0, dt, v).name)
                names.append(Kernel("model_bwd", decl.id, SG_ANY, dt, v).name)
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------
# the op implementations registered for the CUDA key: the C++ host code prepares
# (csrc/prepare.cpp: checks, outputs, launch struct, work items, kernel instance), this launches
# ------------------------------------------------------------------------------------------
class Prepared(NamedTuple):
    """What a call launches: the kernel, its work items, the params struct (which points into
    `keep`, the tensors that must outlive the launch) and the op's outputs."""

    kernel: Kernel
    n: int
    params: ctypes.Structure
    outputs: tuple
    keep: tuple


# host.h's DType codes, in which the prepare ops name the dtype instance
_DT_BY_CODE = ("float32", "float64", "float16", "bfloat16")


def _launch_struct(cls, launch: Tensor) -> ctypes.Structure:
    """The launch struct the C++ host code packed, as its ctypes view (a copy of the bytes)."""
    data = launch.numpy().tobytes()
    if len(data) != ctypes.sizeof(cls):
        raise RuntimeError(
            f"snn_cuda: the C++ host code packed {len(data)} bytes for {cls.__name__} but the CuPy path "
            f"expects {ctypes.sizeof(cls)}: snn_cuda/_C and snn_cuda/cupy_backend.py are from different versions"
        )
    return cls.from_buffer_copy(data)


def _prepared(kind: str, struct, result) -> Prepared:
    """A one-state prepare op's result: (*outputs, keep, launch, work items, [dtype, combo, sg])."""
    *outputs, keep, launch, n, inst = result
    dt, combo, sg = (list(inst) + [0, 0])[:3]
    kernel = Kernel(kind, int(combo), int(sg), _DT_BY_CODE[dt])
    return Prepared(kernel, int(n), _launch_struct(struct, launch), tuple(outputs), tuple(keep))


# Each takes the arguments of the op it prepares (csrc/ops.cpp).
def prepare_neuron_forward(*args, **kwargs) -> Prepared:
    return _prepared("fwd", FwdParams, torch.ops.snn_cuda.neuron_prepare_forward(*args, **kwargs))


def prepare_neuron_backward(*args, **kwargs) -> Prepared:
    return _prepared("bwd", BwdParams, torch.ops.snn_cuda.neuron_prepare_backward(*args, **kwargs))


def prepare_poisson(x, T, seed) -> Prepared:
    return _prepared("poisson", PoissonParams, torch.ops.snn_cuda.poisson_prepare(x, T, seed))


def prepare_narrow(x) -> Prepared:
    return _prepared("narrow", NarrowParams, torch.ops.snn_cuda.narrow_prepare(x))


def prepare_widen(x, dtype) -> Prepared:
    return _prepared("widen", WidenParams, torch.ops.snn_cuda.widen_prepare(x, dtype))


def prepare_model_forward(*args) -> Prepared:
    """model_forward's arguments: (x, params, state0, T, model, variant, surrogate,
    surrogate_param, detach_reset, return_states, save[, batch_first[, spikes_uint8]])."""
    spikes, seq, last, ckpt, keep, launch, n = torch.ops.snn_cuda.model_prepare_forward(*args)
    x, model, variant = args[0], args[4], args[5]
    kernel = Kernel("model_fwd", int(model), 0, DTYPE_NAMES[x.dtype], int(variant))
    return Prepared(kernel, int(n), _launch_struct(MFwdParams, launch), (spikes, seq, last, ckpt), tuple(keep))


def prepare_model_backward(*args) -> Prepared:
    """model_backward's arguments: (grad_spikes, grad_state_seq, grad_state_last, x, params,
    state0, ckpt, T, model, variant, surrogate, surrogate_param, detach_reset, grad_params[,
    batch_first[, state_seq[, readout_grad, readout_weight]]]); the CUDA kernels replay the
    checkpoints and never read state_seq, and have no fused readout (an error names it)."""
    gx, gs0, gp, keep, launch, n = torch.ops.snn_cuda.model_prepare_backward(*args)
    x, model, variant = args[3], args[8], args[9]
    kernel = Kernel("model_bwd", int(model), SG_ANY, DTYPE_NAMES[x.dtype], int(variant))
    return Prepared(kernel, int(n), _launch_struct(MBwdParams, launch), (gx, gs0, gp), tuple(keep))


def _guard(device: torch.device):
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _serve(prepare, device: torch.device, *args, **kwargs) -> tuple:
    """Prepares on `device` (its current stream, the outputs there), launches unless there is no
    work, and returns the op's outputs."""
    with _guard(device):
        prep = prepare(*args, **kwargs)
        if prep.n > 0:
            _launcher(prep.kernel, prep.n, prep.params, device)
    return prep.outputs


def neuron_forward(x, *args, **kwargs):
    return _serve(prepare_neuron_forward, x.device, x, *args, **kwargs)


def neuron_backward(grad_spikes, grad_v_seq, grad_v_last, saved, *args, **kwargs):
    return _serve(prepare_neuron_backward, saved.device, grad_spikes, grad_v_seq, grad_v_last, saved, *args, **kwargs)


def poisson_encode(x, T, seed):
    return _serve(prepare_poisson, x.device, x, T, seed)[0]


def binary_to_uint8(x):
    return _serve(prepare_narrow, x.device, x)[0]


def uint8_to(x, dtype):
    return _serve(prepare_widen, x.device, x, dtype)[0]


def model_forward(x, *args):
    return _serve(prepare_model_forward, x.device, x, *args)


def model_backward(*args):
    return _serve(prepare_model_backward, args[3].device, *args)


OPS = {
    "neuron_forward": neuron_forward,
    "neuron_backward": neuron_backward,
    "poisson_encode": poisson_encode,
    "binary_to_uint8": binary_to_uint8,
    "uint8_to": uint8_to,
    "model_forward": model_forward,
    "model_backward": model_backward,
}

# ------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------
_lib = None
_lib_key: Optional[str] = None
_reg_lock = threading.Lock()


def register(dispatch_key: str = "CUDA") -> bool:
    """Registers the implementations above for `dispatch_key` of the snn_cuda ops in OPS (their
    schemas come from the compiled extension). Replaces compiled kernels of that key while
    registered; `unregister()` restores them. Returns False if already registered."""
    global _lib, _lib_key
    with _reg_lock:
        if _lib is not None:
            return False
        lib = torch.library.Library("snn_cuda", "IMPL")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "overriding a previously registered kernel"
                for name, fn in OPS.items():
                    lib.impl(name, fn, dispatch_key)
        except Exception:
            lib._destroy()
            raise
        _lib, _lib_key = lib, dispatch_key
        _model_ops._CUPY_SERVES_CPU = dispatch_key == "CPU"
        return True


def unregister() -> None:
    global _lib, _lib_key
    with _reg_lock:
        if _lib is not None:
            _lib._destroy()
        _lib, _lib_key = None, None
        _model_ops._CUPY_SERVES_CPU = False


def registered() -> Optional[str]:
    """The dispatch key the CuPy kernels are registered for, or None."""
    return _lib_key


@contextlib.contextmanager
def serving(dispatch_key: str = "CUDA"):
    """Within the block the CuPy kernels serve `dispatch_key` (in place of compiled ones, which
    are restored afterwards). Used by the check command to run both paths in one process."""
    mine = register(dispatch_key)
    if not mine and _lib_key != dispatch_key:
        raise RuntimeError(f"snn_cuda: the CuPy kernels are registered for {_lib_key}, not {dispatch_key}")
    try:
        yield
    finally:
        if mine:
            unregister()


# ------------------------------------------------------------------------------------------
# CuPy: availability, compilation, launch
# ------------------------------------------------------------------------------------------
def _import_cupy():
    import cupy  # heavy: only on first use
    from cupy.cuda import function, nvrtc  # noqa: F401

    return cupy


def _fmt_cuda_version(v) -> Optional[str]:
    if not v:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


_probe_lock = threading.Lock()
_probe_result: Optional[Tuple[str, dict]] = None


def _assume_constant(fn):
    # torch.compile calls it while tracing and keeps its result as a constant (it imports CuPy
    # and queries the driver on first use, which must not be traced).
    deco = getattr(getattr(torch, "compiler", None), "assume_constant_result", None)
    return deco(fn) if deco is not None else fn


def _probe() -> Tuple[str, dict]:
    info: dict = {
        "cupy": None,
        "cuda_runtime": None,
        "cuda_driver": None,
        "nvrtc": None,
        "include_dir": None,
        "cache_dir": None,
    }
    try:
        cupy = _import_cupy()
    except Exception as e:  # ImportError, or a broken install
        return f"CuPy is not installed or does not import ({type(e).__name__}: {e}); {CUPY_INSTALL_HINT}", info
    info["cupy"] = getattr(cupy, "__version__", "?")
    rt = cupy.cuda.runtime
    try:
        info["cuda_runtime"] = _fmt_cuda_version(rt.runtimeGetVersion())
    except Exception:
        pass
    drv = 0
    try:
        drv = rt.driverGetVersion()
        info["cuda_driver"] = _fmt_cuda_version(drv)
    except Exception:
        pass
    try:
        info["nvrtc"] = "%d.%d" % tuple(cupy.cuda.nvrtc.getVersion())
    except Exception as e:
        return (
            f"CuPy {info['cupy']} cannot load NVRTC ({type(e).__name__}: {e}); install the NVRTC of its CUDA "
            "version (e.g. pip install nvidia-cuda-nvrtc-cu12 for cupy-cuda12x) or a CUDA toolkit"
        ), info
    inc = _cuda_include_dir(cupy)
    info["include_dir"] = inc
    info["cache_dir"] = str(cache_dir()) if cache_dir() is not None else None
    if inc is None:
        return (
            "cuda_fp16.h was not found for NVRTC (looked in CuPy's CUDA path, CUDA_HOME/CUDA_PATH, "
            "/usr/local/cuda and the nvidia-cuda-runtime wheels); install a CUDA toolkit or "
            "nvidia-cuda-runtime"
        ), info
    if not torch.cuda.is_available():
        return "no CUDA device is visible (torch.cuda.is_available() is False)", info
    rtv = 0
    try:
        rtv = rt.runtimeGetVersion()
    except Exception:
        pass
    if drv and rtv and drv // 1000 < rtv // 1000:
        return (
            f"CuPy {info['cupy']} is built for CUDA {_fmt_cuda_version(rtv)} but the driver supports CUDA "
            f"{_fmt_cuda_version(drv)}; install cupy-cuda{drv // 1000}x"
        ), info
    try:
        n = rt.getDeviceCount()
    except Exception as e:
        return f"CuPy {info['cupy']} cannot use the GPU ({type(e).__name__}: {e})", info
    if n < 1:
        return "CuPy sees no CUDA device", info
    return "", info


def probe(refresh: bool = False) -> Tuple[str, dict]:
    """(why the CuPy path cannot run CUDA tensors here, or ''; versions found). Cached."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None or refresh:
            try:
                _probe_result = _probe()
            except Exception as e:  # never let a probe break the caller
                _probe_result = (f"probing CuPy failed ({type(e).__name__}: {e})", {})
        return _probe_result


@_assume_constant
def unavailable_reason() -> str:
    return probe()[0]


def info() -> dict:
    """The CuPy path for build_info() / the check report."""
    reason, found = probe()
    return {"available": not reason, "reason": reason, "registered_for": registered(), **found}


def _cuda_include_dir(cupy=None) -> Optional[str]:
    cands: List[Path] = []
    try:
        root = cupy.cuda.get_cuda_path() if cupy is not None else None
        if root:
            cands.append(Path(root) / "include")
    except Exception:
        pass
    cands += [Path(d) for d in cuda_source.cuda_include_dirs()]
    for d in cands:
        if (d / "cuda_fp16.h").is_file() and (d / "cuda_bf16.h").is_file():
            return str(d)
    return None


def cache_dir() -> Optional[Path]:
    if os.environ.get("CUPY_CACHE_IN_MEMORY", "") == "1":
        return None
    d = os.environ.get("SNN_CUDA_CUPY_CACHE_DIR")
    if not d:
        base = os.environ.get("CUPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cupy", "kernel_cache")
        d = os.path.join(base, "snn_cuda")
    return Path(d)


def nvrtc_arch(cc: int, supported: Sequence[int]) -> str:
    """NVRTC target for a GPU of compute capability `cc` (e.g. 90): its own SASS when NVRTC
    knows it, else PTX of the newest older arch NVRTC knows (JIT-compiled by the driver)."""
    supported = sorted(int(a) for a in supported)
    if cc in supported:
        return f"sm_{cc}"
    older = [a for a in supported if a <= cc]
    if not older:
        raise RuntimeError(
            f"snn_cuda: this GPU (sm_{cc}) is older than every architecture this NVRTC supports "
            f"(sm_{supported[0]} and newer); install a CuPy/NVRTC for an older CUDA"
        )
    return f"compute_{older[-1]}"


_CACHE_MAGIC = b"SNN_CUDA_NVRTC_1\n"
_compile_lock = threading.Lock()
_binaries: Dict[tuple, Tuple[str, bytes]] = {}


def compile_kernel(name: str, arch: str, include_dir: str, nvrtc=None) -> Tuple[str, bytes]:
    """NVRTC-compiles one template instance: (lowered name, CUBIN for sm_XX / PTX for
    compute_XX). Cached in memory and on disk. Needs no GPU."""
    if nvrtc is None:
        from cupy.cuda import nvrtc  # cupy_backends.cuda.libs.nvrtc
    src = cuda_source.runtime_source()
    opts = cuda_source.runtime_options(arch, include_dir)
    version = "%d.%d" % tuple(nvrtc.getVersion())
    key = hashlib.sha256("\0".join([_CACHE_MAGIC.decode(), src, name, "\x1f".join(opts), version]).encode())
    key = key.hexdigest()
    mem_key = (key,)
    with _compile_lock:
        hit = _binaries.get(mem_key)
        if hit is not None:
            return hit
        d = cache_dir()
        path = d / f"{key}.bin" if d is not None else None
        if path is not None and path.is_file():
            try:
                data = path.read_bytes()
                if data.startswith(_CACHE_MAGIC):
                    lowered, binary = data[len(_CACHE_MAGIC) :].split(b"\n", 1)
                    _binaries[mem_key] = (lowered.decode(), binary)
                    return _binaries[mem_key]
            except (OSError, ValueError):
                pass
        prog = nvrtc.createProgram(src, "snn_cuda_kernels.cu", (), ())
        try:
            nvrtc.addNameExpression(prog, name)
            try:
                nvrtc.compileProgram(prog, opts)
            except Exception as e:
                try:
                    log = nvrtc.getProgramLog(prog)
                except Exception:
                    log = ""
                raise RuntimeError(f"snn_cuda: NVRTC failed to compile {name} for {arch} ({e}):\n{log}") from e
            lowered = nvrtc.getLoweredName(prog, name)
            binary = nvrtc.getCUBIN(prog) if arch.startswith("sm_") else nvrtc.getPTX(prog)
        finally:
            nvrtc.destroyProgram(prog)
        if isinstance(lowered, bytes):
            lowered = lowered.decode()
        _binaries[mem_key] = (lowered, binary)
        if path is not None:
            try:
                d.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=str(d), prefix=".tmp-", suffix=".bin")
                with os.fdopen(fd, "wb") as f:
                    f.write(_CACHE_MAGIC + lowered.encode() + b"\n" + binary)
                os.replace(tmp, path)
            except OSError:
                pass  # read-only home: compile again next process
        return _binaries[mem_key]


_functions: Dict[Tuple[int, str], object] = {}
_blocks_per_sm: Dict[Tuple[int, str], int] = {}
_sm_counts: Dict[int, int] = {}
_archs: Dict[int, str] = {}
_streams: Dict[int, object] = {}


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _function(idx: int, name: str):
    fn = _functions.get((idx, name))
    if fn is not None:
        return fn
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"snn_cuda: the CuPy path cannot run: {reason}")
    cupy = _import_cupy()
    arch = _archs.get(idx)
    if arch is None:
        major, minor = torch.cuda.get_device_capability(idx)
        arch = _archs[idx] = nvrtc_arch(major * 10 + minor, cupy.cuda.nvrtc.getSupportedArchs())
    lowered, binary = compile_kernel(name, arch, probe()[1]["include_dir"])
    with cupy.cuda.Device(idx):
        mod = cupy.cuda.function.Module()
        mod.load(binary)
        fn = mod.get_function(lowered)
    _functions[(idx, name)] = fn
    return fn


def _cupy_launch(kernel: Kernel, n: int, params: ctypes.Structure, device: torch.device) -> None:
    import numpy

    idx = _device_index(device)
    fn = _function(idx, kernel.name)
    sm = _sm_counts.get(idx)
    if sm is None:
        sm = _sm_counts[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    cupy = _import_cupy()
    per_sm = _blocks_per_sm.get((idx, kernel.name))
    if per_sm is None:
        with cupy.cuda.Device(idx):
            per_sm = int(cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(fn.ptr, BLOCK, 0))
        if per_sm > 0:  # 0: the launch itself will say why
            _blocks_per_sm[(idx, kernel.name)] = per_sm
    grid = grid_blocks(n, BLOCK, sm, per_sm)
    ptr = torch.cuda.current_stream(idx).cuda_stream
    stream = _streams.get(ptr)
    if stream is None:
        if len(_streams) > 64:  # wrappers only (torch owns the streams): keep the dict small
            _streams.clear()
        stream = _streams[ptr] = cupy.cuda.ExternalStream(ptr)
    # By value: CuPy copies sizeof(param) bytes from a one-element numpy array's data.
    arg = numpy.frombuffer(params, dtype=numpy.dtype((numpy.void, ctypes.sizeof(params))))
    what = {
        "fwd": "neuron forward",
        "bwd": "neuron backward",
        "poisson": "Poisson encoder",
        "narrow": "binary_to_uint8",
        "widen": "uint8_to",
        "model_fwd": "model forward",
        "model_bwd": "model backward",
    }[kernel.kind]
    try:
        with cupy.cuda.Device(idx):
            fn((grid, 1, 1), (BLOCK, 1, 1), (arg,), 0, stream)
    except Exception as e:
        raise RuntimeError(f"snn_cuda: launching the {what} kernel through CuPy failed: {type(e).__name__}: {e}") from e


#: (kernel, work items, params, device) -> None. The tests substitute a host-emulation launcher.
_launcher: Callable[[Kernel, int, ctypes.Structure, torch.device], None] = _cupy_launch


def warm_up(dtypes: Sequence[torch.dtype] = (torch.float32,), device=None) -> int:
    """Compiles (or loads from the cache) every instance for `dtypes` on `device` now rather than
    on first use. Returns how many."""
    idx = _device_index(torch.device("cuda") if device is None else torch.device(device))
    names = dispatch_names(dtypes)
    for n in names:
        _function(idx, n)
    return len(names)
