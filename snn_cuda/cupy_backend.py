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
* Launch: the params struct (``ctypes`` mirror of csrc/kernels/params.h, checked against g++'s
  layout by the tests) is passed by value as a one-element numpy void array, CuPy's documented way
  to pass a struct; torch's pointers are used as they are (zero copy), on torch's current stream
  of the tensor's device, with the compiled launcher's grid ``grid_blocks(N, 256, SMs, blocks/SM)``
  (blocks/SM: the occupancy API's answer for the kernel, asked once per kernel and device).
* Host side: the argument checks, output allocation and parameter packing of csrc/host.h, in
  Python, with the same error types and messages, for the neuron, encoder and conversion ops.
  The declared-model ops (model_forward / model_backward, csrc/kernels/model_kernels.cuh) take
  theirs from the C++ host code itself: the ops ``snn_cuda::model_prepare_forward`` /
  ``model_prepare_backward`` (csrc/model_prepare.cpp, built into every extension, CPU-only
  included, for tensors of any device) run csrc/model_host.h and return the outputs, the tensors
  the launch struct points into and the struct (``snn::MFwdParams`` / ``MBwdParams``) as bytes;
  this module only compiles and launches (``MFwdParams`` / ``MBwdParams`` below are the ctypes
  views of those bytes, their layout checked against g++ by the tests).

Importing this module does not import CuPy.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import cuda_source
from ._model_list import MODELS as _MODEL_DECLS

# csrc/kernels/common.h and params.h
MODEL_LIF, MODEL_IF, MODEL_LEAKY, MODEL_PLIF = 0, 1, 2, 3
RESET_HARD, RESET_SOFT, RESET_NONE = 0, 1, 2
SG_COUNT = len(cuda_source.SURROGATES)
SG_ANY = -1  # the surrogate chosen at run time (surrogate.h), as the model backwards are compiled
SAVE_NONE, SAVE_H, SAVE_CKPT = 0, 1, 2
CHUNK = 8  # kChunk
BLOCK = 256  # kBlockThreads
CONVERT_VEC = 4  # kConvertVec (csrc/kernels/convert.h)

CUPY_INSTALL_HINT = 'pip install "snn_cuda[cupy]"'

# ------------------------------------------------------------------------------------------
# csrc/kernels/params.h and encoder.h, field for field (python_tests/test_cupy.py compares the
# offsets and sizes with what g++ computes for the C++ structs)
# ------------------------------------------------------------------------------------------
_i64 = ctypes.c_longlong
_ptr = ctypes.c_void_p
_f64 = ctypes.c_double
_int = ctypes.c_int


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


# csrc/kernels/models.h: filled by the C++ host code (model_prepare_*), viewed here
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
    ]


PARAM_STRUCTS = {
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


def convert_groups(n: int) -> int:
    """snn::convert_groups (convert.h): work items of the byte conversions."""
    return (n + CONVERT_VEC - 1) // CONVERT_VEC


# ------------------------------------------------------------------------------------------
# which template instance a call needs (the dispatch of csrc/cuda/launch*.cu)
# ------------------------------------------------------------------------------------------
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


class Kernel(NamedTuple):
    kind: str  # "fwd" | "bwd" | "poisson" | "narrow" | "widen" | "model_fwd" | "model_bwd"
    combo: int  # combo_index(model, reset); the model id (_model_list.MODELS) for model_*; else 0
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


def combo_index(model: int, reset: int) -> int:
    m = MODEL_LIF if model == MODEL_PLIF else model
    if m == MODEL_LIF and reset in (RESET_HARD, RESET_SOFT):
        return int(reset)
    if m == MODEL_IF and reset in (RESET_HARD, RESET_SOFT):
        return 2 + int(reset)
    if m == MODEL_LEAKY and 0 <= reset <= 2:
        return 4 + int(reset)
    raise ValueError(
        f"snn_cuda: (model, reset) = ({model}, {reset}) is not a compiled neuron: model 0=LIF/1=IF/3=ParametricLIF "
        "take reset 0=hard/1=soft; model 2=Leaky takes 0=zero/1=subtract/2=none"
    )


def dispatch_names(dtypes: Optional[Sequence[torch.dtype]] = None) -> List[str]:
    """Every template instance the ops can request: op-level (model, reset) x surrogate x dtype,
    ParametricLIF included (it runs the LIF instances), plus the Poisson encoder, the byte
    conversions and every declared model x variant (forward and SG_ANY backward)."""
    names = []
    for dt in (DTYPE_NAMES[d] for d in (DTYPE_NAMES if dtypes is None else dtypes)):
        for model, resets in ((MODEL_LIF, (0, 1)), (MODEL_IF, (0, 1)), (MODEL_LEAKY, (0, 1, 2)), (MODEL_PLIF, (0, 1))):
            for reset in resets:
                c = combo_index(model, reset)
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
# host-side checks and allocation (csrc/host.h)
# ------------------------------------------------------------------------------------------
# The messages print as c10 does (ScalarType names, doubles like an ostream), so that they read the
# same as the compiled ops'.
_C10_NAMES = {
    torch.float32: "Float",
    torch.float64: "Double",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.int16: "Short",
    torch.int32: "Int",
    torch.int64: "Long",
    torch.bool: "Bool",
    torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}


def _c10(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype))


def _g(v: float) -> str:
    return "%g" % v


def _dtype_name(dtype: torch.dtype, name: str) -> str:
    n = DTYPE_NAMES.get(dtype)
    if n is None:
        raise TypeError(f"snn_cuda: {name} must be float32, float64, float16 or bfloat16, got {_c10(dtype)}")
    return n


def _state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_finite(v: float, name: str) -> None:
    if not math.isfinite(v):
        raise ValueError(f"snn_cuda: {name} must be finite, got {_g(v)}")


def _check_scalars(model, tau, v_th, v_reset, v_floor, beta, v_init, has_floor) -> None:
    _check_finite(v_th, "v_threshold")
    _check_finite(v_reset, "v_reset")
    _check_finite(v_init, "v_init")
    if not MODEL_LIF <= model <= MODEL_PLIF:
        raise ValueError(f"snn_cuda: model must be 0 (LIF), 1 (IF), 2 (Leaky) or 3 (ParametricLIF), got {model}")
    if model == MODEL_LIF and not (math.isfinite(tau) and tau > 1.0):
        raise ValueError(f"snn_cuda: tau must be a finite number > 1, got {_g(tau)}")
    if model == MODEL_LEAKY and not (math.isfinite(beta) and 0.0 <= beta <= 1.0):
        raise ValueError(f"snn_cuda: beta must be in [0, 1], got {_g(beta)}")
    if has_floor:
        if model != MODEL_IF:
            raise ValueError("snn_cuda: v_floor is only supported by the IF neuron")
        _check_finite(v_floor, "v_floor")


def _check_surrogate(surrogate: int, sg_param: float) -> None:
    if not 0 <= surrogate < SG_COUNT:
        raise ValueError(f"snn_cuda: surrogate id must be in [0, {SG_COUNT}), got {surrogate}")
    _check_finite(sg_param, "surrogate parameter")


def _num_chunks(T: int) -> int:
    return (T + CHUNK - 1) // CHUNK


def _rest_sizes(t: Tensor, skip: int) -> List[int]:
    return list(t.shape)[min(skip, t.dim()) :]


def _as_time_major(x: Tensor) -> Tensor:
    if x.dim() >= 1 and x.size(0) > 0 and x.select(0, 0).is_contiguous():
        return x
    return x.contiguous()


def _checked_state(t: Optional[Tensor], name: str, like: Tensor, sdt: torch.dtype, shape: List[int]):
    if t is None:
        return None
    if t.device != like.device:
        raise ValueError(f"snn_cuda: {name} is on {t.device} but the input is on {like.device}")
    if t.dtype != sdt:
        raise TypeError(f"snn_cuda: {name} must have the state dtype {_c10(sdt)}, got {_c10(t.dtype)}")
    if list(t.shape) != list(shape):
        raise ValueError(f"snn_cuda: {name} must have shape {list(shape)}, got {list(t.shape)}")
    return t.contiguous()


def _checked_param(t: Optional[Tensor], name: str, like: Tensor, sdt: torch.dtype, rest: List[int]):
    if t is None:
        return None
    if t.device != like.device:
        raise ValueError(f"snn_cuda: {name} is on {t.device} but the input is on {like.device}")
    if t.dtype != sdt:
        raise TypeError(f"snn_cuda: {name} must have the state dtype {_c10(sdt)}, got {_c10(t.dtype)}")
    ok = t.numel() == 1
    if not ok and 1 <= t.dim() <= len(rest):
        ok = list(t.shape) == list(rest[len(rest) - t.dim() :])
    if not ok:
        raise ValueError(
            f"snn_cuda: {name} must have one element or the shape of the trailing (per-neuron) dims "
            f"of {list(rest)}, got {list(t.shape)}"
        )
    return t.contiguous()


class _NeuronParams:
    __slots__ = ("decay", "th", "P")


def _prepare_params(decay, th, model, like, sdt, rest) -> _NeuronParams:
    npar = _NeuronParams()
    npar.decay = _checked_param(decay, "decay_param", like, sdt, rest)
    npar.th = _checked_param(th, "threshold_param", like, sdt, rest)
    if model == MODEL_PLIF:
        if npar.decay is None:
            raise ValueError("snn_cuda: ParametricLIF (model 3) needs decay_param (k = sigmoid(w))")
    elif npar.decay is not None and model != MODEL_LEAKY:
        raise ValueError("snn_cuda: decay_param is for ParametricLIF (model 3, k) and Leaky (model 2, beta) only")
    pd = npar.decay.numel() if npar.decay is not None else 1
    pt = npar.th.numel() if npar.th is not None else 1
    npar.P = max(pd, pt)
    if npar.decay is not None and pd != npar.P:
        npar.decay = npar.decay.reshape(1).expand(npar.P).contiguous()
    if npar.th is not None and pt != npar.P:
        npar.th = npar.th.reshape(1).expand(npar.P).contiguous()
    return npar


def _set_params(p, npar: _NeuronParams, model: int) -> None:
    p.plif = 1 if model == MODEL_PLIF else 0
    p.decay_param = npar.decay.data_ptr() if npar.decay is not None else None
    p.th_param = npar.th.data_ptr() if npar.th is not None else None
    p.P = npar.P


def _set_scalars(p, tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor) -> None:
    p.tau, p.v_th, p.v_reset, p.v_floor, p.beta, p.v_init = tau, v_th, v_reset, v_floor, beta, v_init
    p.decay_input = 1 if decay_input else 0
    p.has_floor = 1 if has_floor else 0


def _ptr_or_null(t: Optional[Tensor], cond: bool = True):
    return t.data_ptr() if (t is not None and cond) else None


class Prepared(NamedTuple):
    """What a call launches: the kernel, its work items, the params struct (which points into
    `keep`, the tensors that must outlive the launch) and the op's outputs."""

    kernel: Kernel
    n: int
    params: ctypes.Structure
    outputs: tuple
    keep: tuple


def prepare_forward(
    x,
    v0,
    decay_param,
    threshold_param,
    T_const,
    model,
    reset,
    surrogate,
    sg_param,
    tau,
    v_th,
    v_reset,
    v_floor,
    beta,
    v_init,
    decay_input,
    has_floor,
    save_mode,
    store_v_seq,
    spikes_uint8=False,
) -> Prepared:
    dt = _dtype_name(x.dtype, "x")
    combo = combo_index(model, reset)
    _check_surrogate(surrogate, sg_param)
    _check_scalars(model, tau, v_th, v_reset, v_floor, beta, v_init, has_floor)
    const_input = T_const >= 0
    if const_input:
        if T_const < 1:
            raise ValueError(f"snn_cuda: T must be >= 1 for a constant input, got {T_const}")
        T = T_const
        xk = x.contiguous()
        rest = list(x.shape)
    else:
        if x.dim() < 1:
            raise ValueError("snn_cuda: x must have a leading time dimension [T, ...], got a 0-d tensor")
        if T_const != -1:
            raise ValueError(f"snn_cuda: T must be -1 (taken from x) for a sequence input, got {T_const}")
        T = x.size(0)
        if T < 1:
            raise ValueError(f"snn_cuda: x must have at least one time step, got shape {list(x.shape)}")
        xk = _as_time_major(x)
        rest = _rest_sizes(x, 1)
    sdt = _state_dtype(x.dtype)
    v0c = _checked_state(v0, "v0", x, sdt, rest)
    npar = _prepare_params(decay_param, threshold_param, model, x, sdt, rest)
    dev = x.device
    seq = [T] + rest
    leaky = model == MODEL_LEAKY
    if not SAVE_NONE <= save_mode <= SAVE_CKPT:
        raise ValueError(f"snn_cuda: save_mode must be 0 (none), 1 (save h) or 2 (checkpoints), got {save_mode}")
    if leaky and store_v_seq:
        save_mode = SAVE_H
    spikes = torch.empty(seq, dtype=torch.uint8 if spikes_uint8 else x.dtype, device=dev)
    if save_mode == SAVE_H:
        saved = torch.empty(seq, dtype=sdt, device=dev)
    elif save_mode == SAVE_CKPT:
        saved = torch.empty([_num_chunks(T)] + rest, dtype=sdt, device=dev)
    else:
        saved = torch.empty([0], dtype=sdt, device=dev)
    v_seq = torch.empty(seq if (store_v_seq and not leaky) else [0], dtype=sdt, device=dev)
    v_last = torch.empty(rest, dtype=sdt, device=dev)

    p = FwdParams()
    p.T = T
    p.N = v_last.numel()
    p.x_tstride = 0 if (const_input or p.N == 0) else xk.stride(0)
    p.x = xk.data_ptr()
    p.v0 = _ptr_or_null(v0c)
    p.spikes = spikes.data_ptr()
    p.spikes_u8 = 1 if spikes_uint8 else 0
    p.saved = _ptr_or_null(saved, save_mode == SAVE_H and saved.numel() > 0)
    p.ckpt = _ptr_or_null(saved, save_mode == SAVE_CKPT and saved.numel() > 0)
    p.v_seq = _ptr_or_null(v_seq, v_seq.numel() > 0)
    p.v_last = v_last.data_ptr()
    _set_scalars(p, tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor)
    _set_params(p, npar, model)
    return Prepared(Kernel("fwd", combo, 0, dt), p.N, p, (spikes, saved, v_seq, v_last), (xk, v0c, npar.decay, npar.th))


def _checked_grad(g: Optional[Tensor], name: str, like: Tensor, dt: torch.dtype, shape: List[int]):
    if g is None:
        return None
    if g.device != like.device:
        raise ValueError(f"snn_cuda: {name} is on {g.device} but saved is on {like.device}")
    if g.dtype != dt:
        raise TypeError(f"snn_cuda: {name} must be {_c10(dt)}, got {_c10(g.dtype)}")
    if list(g.shape) != list(shape):
        raise ValueError(f"snn_cuda: {name} must have shape {list(shape)}, got {list(g.shape)}")
    return g.contiguous()


def prepare_backward(
    grad_spikes,
    grad_v_seq,
    grad_v_last,
    saved,
    x,
    v0,
    decay_param,
    threshold_param,
    T_const,
    save_mode,
    model,
    reset,
    surrogate,
    sg_param,
    tau,
    v_th,
    v_reset,
    v_floor,
    beta,
    v_init,
    decay_input,
    has_floor,
    detach_reset,
    grad_decay,
    grad_threshold,
    x_dtype,
) -> Prepared:
    dt = _dtype_name(x_dtype, "x_dtype")
    combo = combo_index(model, reset)
    _check_surrogate(surrogate, sg_param)
    _check_scalars(model, tau, v_th, v_reset, v_floor, beta, v_init, has_floor)
    sdt = _state_dtype(x_dtype)
    if saved.dtype != sdt:
        raise TypeError(f"snn_cuda: saved must be {_c10(sdt)}, got {_c10(saved.dtype)}")
    if not (saved.dim() >= 1 and saved.size(0) >= 1):
        raise ValueError(
            "snn_cuda: saved must be the [T, ...] tensor the forward saved (was the forward run with "
            f"save_mode=0?), got shape {list(saved.shape)}"
        )
    if save_mode not in (SAVE_H, SAVE_CKPT):
        raise ValueError(f"snn_cuda: save_mode must be 1 (save h) or 2 (checkpoints) for a backward, got {save_mode}")
    const_input = T_const >= 0
    savedc = saved.contiguous()
    rest = _rest_sizes(saved, 1)
    T = saved.size(0)
    plif_x = model == MODEL_PLIF and grad_decay and decay_input
    want_x = save_mode == SAVE_CKPT or plif_x
    xk = None
    if want_x:
        if x is None:
            why = (
                "to rebuild the states from checkpoints"
                if save_mode == SAVE_CKPT
                else "for the ParametricLIF decay gradient"
            )
            raise ValueError(f"snn_cuda: x (the forward's input) is required {why}")
        xk = x.contiguous() if const_input else _as_time_major(x)
        if xk.dtype != x_dtype:
            raise TypeError(f"snn_cuda: x must be {_c10(x_dtype)}, got {_c10(xk.dtype)}")
        if xk.device != saved.device:
            raise ValueError(f"snn_cuda: x is on {xk.device} but saved is on {saved.device}")
        xrest = _rest_sizes(xk, 0 if const_input else 1)
        if save_mode == SAVE_CKPT:
            T = T_const if const_input else xk.size(0)
            if not (xrest == rest and _num_chunks(T) == saved.size(0)):
                raise ValueError(
                    f"snn_cuda: x of shape {list(xk.shape)} does not match the checkpoints of shape {list(saved.shape)}"
                )
        elif not (xrest == rest and (const_input or xk.size(0) == T)):
            raise ValueError(f"snn_cuda: x of shape {list(xk.shape)} does not match saved of shape {list(saved.shape)}")
    npar = _prepare_params(decay_param, threshold_param, model, saved, sdt, rest)
    if grad_decay and not (npar.decay is not None and model in (MODEL_PLIF, MODEL_LEAKY)):
        raise ValueError("snn_cuda: grad_decay needs decay_param and model 2 (Leaky) or 3 (ParametricLIF)")
    if grad_threshold and npar.th is None:
        raise ValueError("snn_cuda: grad_threshold needs threshold_param")
    seq = [T] + rest
    gs = _checked_grad(grad_spikes, "grad_spikes", saved, x_dtype, seq)
    gv = _checked_grad(grad_v_seq, "grad_v_seq", saved, sdt, seq)
    gvl = _checked_grad(grad_v_last, "grad_v_last", saved, sdt, rest)
    v0c = _checked_state(v0, "v0", saved, sdt, rest)
    if const_input and T_const != T:
        raise ValueError(f"snn_cuda: T ({T_const}) must match saved.size(0) ({T}) for a constant input")
    dev = saved.device
    gx = torch.empty(rest if const_input else seq, dtype=x_dtype, device=dev)
    gv0 = torch.empty(rest, dtype=sdt, device=dev)
    g_decay = torch.empty(rest if grad_decay else [0], dtype=sdt, device=dev)
    g_th = torch.empty(rest if grad_threshold else [0], dtype=sdt, device=dev)

    p = BwdParams()
    p.T = T
    p.N = gv0.numel()
    p.grad_spikes = _ptr_or_null(gs)
    p.grad_v_seq = _ptr_or_null(gv)
    p.grad_v_last = _ptr_or_null(gvl)
    ckpt = save_mode == SAVE_CKPT
    p.saved = None if ckpt else savedc.data_ptr()
    p.ckpt = savedc.data_ptr() if ckpt else None
    p.x = _ptr_or_null(xk, want_x)
    p.x_tstride = xk.stride(0) if (want_x and not const_input and p.N) else 0
    p.v0 = _ptr_or_null(v0c)
    p.grad_x = gx.data_ptr()
    p.grad_v0 = gv0.data_ptr()
    _set_scalars(p, tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor)
    p.sg_param = sg_param
    p.detach_reset = 1 if detach_reset else 0
    p.const_input = 1 if const_input else 0
    _set_params(p, npar, model)
    p.grad_decay = g_decay.data_ptr() if (grad_decay and p.N) else None
    p.grad_th = g_th.data_ptr() if (grad_threshold and p.N) else None
    return Prepared(
        Kernel("bwd", combo, int(surrogate), dt),
        p.N,
        p,
        (gx, gv0, g_decay, g_th),
        (gs, gv, gvl, savedc, xk, v0c, npar.decay, npar.th),
    )


def prepare_poisson(x: Tensor, T: int, seed: Tensor) -> Prepared:
    dt = _dtype_name(x.dtype, "x")
    if T < 1:
        raise ValueError(f"snn_cuda: T must be >= 1, got {T}")
    if seed.dtype != torch.int64:
        raise TypeError(f"snn_cuda: seed must be an int64 tensor, got {_c10(seed.dtype)}")
    if seed.numel() != 1:
        raise ValueError(f"snn_cuda: seed must have one element, got shape {list(seed.shape)}")
    on_device = seed.device == x.device
    if not (on_device or seed.device.type == "cpu"):
        raise ValueError(
            f"snn_cuda: seed is on {seed.device} but x is on {x.device} (it must be on x's device or on the CPU)"
        )
    xc = x.contiguous()
    out = torch.empty([T] + list(x.shape), dtype=x.dtype, device=x.device)
    p = PoissonParams()
    p.T = T
    p.N = x.numel()
    p.x = xc.data_ptr()
    p.out = out.data_ptr()
    # On x's device the kernel reads the key (csrc/host.h prepare_poisson: graph-safe, no sync);
    # a CPU key beside a CUDA x is read here, from host memory.
    p.seed_ptr = seed.data_ptr() if on_device else None
    p.seed = 0 if on_device else int(seed.reshape(())) & 0xFFFFFFFFFFFFFFFF
    return Prepared(Kernel("poisson", 0, 0, dt), (T * p.N + 3) // 4, p, (out,), (xc, seed))


# ------------------------------------------------------------------------------------------
# the op implementations registered for the CUDA key
# ------------------------------------------------------------------------------------------
def _guard(device: torch.device):
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def _run(prep: Prepared, device: torch.device) -> None:
    if prep.n > 0:
        _launcher(prep.kernel, prep.n, prep.params, device)


def neuron_forward(
    x,
    v0,
    decay_param,
    threshold_param,
    T,
    model,
    reset,
    surrogate,
    surrogate_param,
    tau,
    v_threshold,
    v_reset,
    v_floor,
    beta,
    v_init,
    decay_input,
    has_floor,
    detach_reset,
    save_mode,
    store_v_seq,
    spikes_uint8=False,
):
    with _guard(x.device):
        prep = prepare_forward(
            x,
            v0,
            decay_param,
            threshold_param,
            T,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            save_mode,
            store_v_seq,
            spikes_uint8,
        )
        _run(prep, x.device)
    return prep.outputs


def neuron_backward(
    grad_spikes,
    grad_v_seq,
    grad_v_last,
    saved,
    x,
    v0,
    decay_param,
    threshold_param,
    T,
    save_mode,
    model,
    reset,
    surrogate,
    surrogate_param,
    tau,
    v_threshold,
    v_reset,
    v_floor,
    beta,
    v_init,
    decay_input,
    has_floor,
    detach_reset,
    grad_decay,
    grad_threshold,
    x_dtype,
    readout_grad=None,
    readout_weight=None,
):
    if readout_grad is not None or readout_weight is not None:
        raise ValueError(
            "snn_cuda: readout_grad / readout_weight are only supported by the CPU kernels; pass grad_spikes"
        )
    with _guard(saved.device):
        prep = prepare_backward(
            grad_spikes,
            grad_v_seq,
            grad_v_last,
            saved,
            x,
            v0,
            decay_param,
            threshold_param,
            T,
            save_mode,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            detach_reset,
            grad_decay,
            grad_threshold,
            x_dtype,
        )
        _run(prep, saved.device)
    return prep.outputs


def poisson_encode(x, T, seed):
    with _guard(x.device):
        prep = prepare_poisson(x, T, seed)
        _run(prep, x.device)
    return prep.outputs[0]


def prepare_narrow(x: Tensor, not_binary: Optional[Tensor]) -> Prepared:
    dt = _dtype_name(x.dtype, "x")
    xc = x.contiguous()
    out = torch.empty(x.shape, dtype=torch.uint8, device=x.device)
    p = NarrowParams()
    p.n = x.numel()
    p.x = xc.data_ptr()
    p.out = out.data_ptr()
    p.not_binary = _ptr_or_null(not_binary)
    return Prepared(Kernel("narrow", 0, 0, dt), convert_groups(p.n), p, (out,), (xc, not_binary))


def prepare_widen(x: Tensor, dtype: torch.dtype) -> Prepared:
    dt = _dtype_name(dtype, "dtype")
    if x.dtype != torch.uint8:
        raise TypeError(f"snn_cuda: x must be uint8, got {_c10(x.dtype)}")
    xc = x.contiguous()
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    p = WidenParams()
    p.n = x.numel()
    p.x = xc.data_ptr()
    p.out = out.data_ptr()
    return Prepared(Kernel("widen", 0, 0, dt), convert_groups(p.n), p, (out,), (xc,))


def binary_to_uint8(x):
    """x != 0 as uint8, in x's shape: whether x holds spikes is the caller's knowledge (the op's
    contract, as on the CPU and in the compiled kernel), so the kernel runs without its flag."""
    with _guard(x.device):
        _dtype_name(x.dtype, "x")
        prep = prepare_narrow(x, None)
        _run(prep, x.device)
    return prep.outputs[0]


def uint8_to(x, dtype):
    with _guard(x.device):
        prep = prepare_widen(x, dtype)
        _run(prep, x.device)
    return prep.outputs[0]


# ------------------------------------------------------------------------------------------
# the declared models: the C++ host code prepares (csrc/model_prepare.cpp), this only launches
# ------------------------------------------------------------------------------------------
def _launch_struct(cls, launch: Tensor) -> ctypes.Structure:
    """The launch struct the C++ host code packed, as its ctypes view (a copy of the bytes)."""
    data = launch.numpy().tobytes()
    if len(data) != ctypes.sizeof(cls):
        raise RuntimeError(
            f"snn_cuda: the C++ host code packed {len(data)} bytes for {cls.__name__} but the CuPy path "
            f"expects {ctypes.sizeof(cls)}: snn_cuda/_C and snn_cuda/cupy_backend.py are from different versions"
        )
    return cls.from_buffer_copy(data)


def prepare_model_forward(
    x, params, state0, T, model, variant, surrogate, surrogate_param, detach_reset, return_states, save
) -> Prepared:
    spikes, seq, last, ckpt, keep, launch, n = torch.ops.snn_cuda.model_prepare_forward(
        x, params, state0, T, model, variant, surrogate, surrogate_param, detach_reset, return_states, save
    )
    kernel = Kernel("model_fwd", int(model), 0, _dtype_name(x.dtype, "x"), int(variant))
    return Prepared(kernel, int(n), _launch_struct(MFwdParams, launch), (spikes, seq, last, ckpt), tuple(keep))


def prepare_model_backward(
    grad_spikes,
    grad_state_seq,
    grad_state_last,
    x,
    params,
    state0,
    ckpt,
    T,
    model,
    variant,
    surrogate,
    surrogate_param,
    detach_reset,
    grad_params,
) -> Prepared:
    gx, gs0, gp, keep, launch, n = torch.ops.snn_cuda.model_prepare_backward(
        grad_spikes,
        grad_state_seq,
        grad_state_last,
        x,
        params,
        state0,
        ckpt,
        T,
        model,
        variant,
        surrogate,
        surrogate_param,
        detach_reset,
        grad_params,
    )
    kernel = Kernel("model_bwd", int(model), SG_ANY, _dtype_name(x.dtype, "x"), int(variant))
    return Prepared(kernel, int(n), _launch_struct(MBwdParams, launch), (gx, gs0, gp), tuple(keep))


def model_forward(x, params, state0, T, model, variant, surrogate, surrogate_param, detach_reset, return_states, save):
    with _guard(x.device):
        prep = prepare_model_forward(
            x, params, state0, T, model, variant, surrogate, surrogate_param, detach_reset, return_states, save
        )
        _run(prep, x.device)
    return prep.outputs


def model_backward(
    grad_spikes,
    grad_state_seq,
    grad_state_last,
    x,
    params,
    state0,
    ckpt,
    T,
    model,
    variant,
    surrogate,
    surrogate_param,
    detach_reset,
    grad_params,
):
    with _guard(x.device):
        prep = prepare_model_backward(
            grad_spikes,
            grad_state_seq,
            grad_state_last,
            x,
            params,
            state0,
            ckpt,
            T,
            model,
            variant,
            surrogate,
            surrogate_param,
            detach_reset,
            grad_params,
        )
        _run(prep, x.device)
    return prep.outputs


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
        return True


def unregister() -> None:
    global _lib, _lib_key
    with _reg_lock:
        if _lib is not None:
            _lib._destroy()
        _lib, _lib_key = None, None


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
