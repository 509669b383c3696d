"""Run models written for old SpikingJelly (``backend='cupy'``) on snn_cuda's fused kernels.

    import snn_cuda
    report = snn_cuda.compat.patch_spikingjelly()   # one line, before the model is built
    print(report)                                    # what was patched, what is not honoured
    ...
    snn_cuda.compat.unpatch_spikingjelly()           # puts SpikingJelly back as it was

Published SNN code (Spikformer, SEW-ResNet, SpikeGPT, ...) hard-codes
``clock_driven.neuron.MultiStepLIFNode(..., backend='cupy')`` (SpikingJelly 0.0.0.0.12) or
``activation_based.neuron.LIFNode(..., step_mode='m', backend='cupy')`` (0.0.0.0.14); without a
working CuPy, construction fails in SpikingJelly's ``check_backend``. The patch changes the
installed SpikingJelly's IF / LIF / ParametricLIF classes in place (so a model module that
imported them before the patch line is served too):

* 0.0.0.0.12 ``spikingjelly.clock_driven.neuron``: ``MultiStepIFNode``, ``MultiStepLIFNode``,
  ``MultiStepParametricLIFNode`` accept ``backend='cupy'`` and run it on the fused kernels;
  ``IFNode`` / ``LIFNode`` accept ``cupy_fp32_inference=True`` and run that path (eval mode,
  float32 input) on the fused kernels; ``ParametricLIFNode`` (no CuPy path of its own) is left
  alone.
* 0.0.0.0.14 ``spikingjelly.activation_based.neuron``: ``IFNode``, ``LIFNode``,
  ``ParametricLIFNode`` accept ``backend='cupy'`` (in ``step_mode='m'``, as that version
  requires) and run it on the fused kernels, multi-step and, after a switch to
  ``step_mode='s'``, single-step.
* SpikingJelly 2.0 ``spikingjelly.activation_based.neuron``: 2.0 dropped the ``backend``
  argument (it picks its kernels itself), so 0.0.0.0.14-style code fails with a TypeError. The
  patched ``IFNode``, ``LIFNode``, ``ParametricLIFNode`` accept ``backend='torch' | 'cupy' |
  'triton'``; 'cupy' and 'triton' run on the fused kernels, 'torch' (the default) is
  SpikingJelly 2.0's own code.

Nodes whose backend is ``'torch'`` run SpikingJelly's own code. The fused nodes keep their
SpikingJelly parameters (ParametricLIF's ``w``), memories (``v``, ``v_seq``, and in
0.0.0.0.12 ``v_threshold`` / ``v_reset``), ``state_dict`` keys and ``functional.reset_net``
behaviour: only the arithmetic moves into one fused forward and one fused backward kernel per
sequence (CPU, compiled CUDA, or the CuPy path on a GPU without compiled CUDA kernels). Spikes
and membranes equal SpikingJelly's torch backend; gradients equal it to rounding (tests:
python_tests/test_compat_legacy.py).

A node whose options the kernels cannot reproduce runs SpikingJelly's torch code instead,
with a RuntimeWarning once per reason (also listed in ``report.fallbacks``): a surrogate other
than Sigmoid / ATan / PiecewiseQuadratic / PiecewiseExp / SoftSign / Erf / Rect /
NonzeroSignLogAbs (or with ``spiking=False``), an input dtype other than float32 / float64 /
float16 / bfloat16, a device with no fused kernel, non-scalar ``v_threshold`` / ``v_reset`` /
``tau``, a state tensor of another shape than the input step, a subclass that overrides the
charge / fire / reset methods, and in 2.0 a neuron precision policy. With 16-bit inputs the fused kernels keep a float32
membrane (SpikingJelly a 16-bit one): ``.v`` / ``.v_seq`` are handed back in the input's dtype,
and values differ from SpikingJelly's by 16-bit rounding.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from . import ops
from . import surrogate as sg
from .convert import _SJ_SURROGATES

__all__ = ["patch_spikingjelly", "unpatch_spikingjelly", "PatchReport", "is_patched"]

# SpikingJelly surrogate class names -> snn_cuda classes (the same in every version)
_SURROGATES = _SJ_SURROGATES

# The APIs found (0.0.0.0.14 still ships clock_driven beside activation_based: both are patched)
V012 = "clock_driven (0.0.0.0.12 API)"
V014 = "activation_based with backend= (0.0.0.0.14 API)"
V20 = "activation_based without backend= (2.0 API)"

_FUSED_BACKENDS_20 = ("cupy", "triton")
_BACKENDS_20 = ("torch",) + _FUSED_BACKENDS_20

UNSUPPORTED = (
    "surrogates other than Sigmoid/ATan/PiecewiseQuadratic/PiecewiseExp/SoftSign/Erf/Rect/NonzeroSignLogAbs,"
    " or spiking=False",
    "input dtypes other than float32/float64/float16/bfloat16, and devices without fused kernels",
    "tensor (per-neuron) v_threshold / v_reset / tau",
    "a state tensor whose shape differs from the input step's",
    "subclasses that override neuronal_charge / neuronal_fire / neuronal_reset (or 2.0's functional forwards)",
    "SpikingJelly 2.0 neuron precision policies",
    "0.0.0.0.12 MultiStepEIFNode / MultiStepGeneralNode and other node types (not patched)",
)


@dataclass
class PatchReport:
    """What :func:`patch_spikingjelly` did. ``patched``: (class, what changed);
    ``unsupported``: the options that keep SpikingJelly's torch code; ``fallbacks``: the
    nodes that did fall back at run time, with the reason (filled as the model runs)."""

    patched: List[Tuple[str, str]] = field(default_factory=list)
    unsupported: List[str] = field(default_factory=lambda: list(UNSUPPORTED))
    fallbacks: List[str] = field(default_factory=list)
    versions: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"snn_cuda.compat: {len(self.patched)} SpikingJelly classes patched ({', '.join(self.versions) or 'none found'})"
        ]
        lines += [f"  patched {name}: {what}" for name, what in self.patched]
        lines += [f"  not honoured (SpikingJelly's torch code runs, with a warning): {u}" for u in self.unsupported]
        lines += [f"  fell back: {f}" for f in self.fallbacks]
        return "\n".join(lines)

    __repr__ = __str__


_MISSING = object()
_originals: Dict[Tuple[type, str], Any] = {}  # (class, attribute) -> what the class itself held
_report: Optional[PatchReport] = None
_warned: set = set()


def is_patched() -> bool:
    return bool(_originals)


# ---------------------------------------------------------------------------------------
# the fused path
# ---------------------------------------------------------------------------------------
class _Fallback(Exception):
    pass


def _fall_back(node, reason: str) -> None:
    msg = f"snn_cuda.compat: {type(node).__module__}.{type(node).__qualname__} runs SpikingJelly's torch code: {reason}"
    if msg not in _warned:
        _warned.add(msg)
        if _report is not None:
            _report.fallbacks.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def _scalar(value, what: str, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Fallback(f"{what} of type {type(value).__name__} (the fused kernels take a Python number)")
    value = float(value)
    if not math.isfinite(value):
        raise _Fallback(f"non-finite {what}")
    return value


def _surrogate(node) -> sg.SurrogateFunction:
    f = node.surrogate_function
    name = type(f).__name__
    module = sys.modules.get(type(f).__module__)
    cls = _SURROGATES.get(name)
    if (
        cls is None
        or module is None
        or not type(f).__module__.startswith("spikingjelly.")
        or getattr(module, name, None) is not type(f)
    ):
        raise _Fallback(f"surrogate {type(f).__module__}.{type(f).__qualname__} has no fused counterpart")
    if not getattr(f, "spiking", True):
        raise _Fallback(f"surrogate {name} with spiking=False")
    alpha = _scalar(getattr(f, "alpha", None), f"surrogate {name} alpha")
    if alpha <= 0:
        raise _Fallback(f"surrogate {name} alpha={alpha} <= 0")
    return cls(alpha)


def _check_overrides(node, base: type, names=("neuronal_charge", "neuronal_fire", "neuronal_reset")) -> None:
    for name in names:
        if getattr(type(node), name, None) is not getattr(base, name, None):
            raise _Fallback(f"the subclass overrides {name}")


def _fused(node, x_seq: Tensor, kind: str, want_v_seq: bool, v_init_on_mismatch=None, legacy_plif: bool = False):
    """Runs a node's dynamics over x_seq ([T, ...]) in the fused op; returns (spikes, v_seq or
    None, v_last), v_seq / v_last in x's dtype. Raises _Fallback where it cannot be exact.
    `legacy_plif`: the 0.0.0.0.12 / 0.0.0.0.14 ParametricLIF charge (see below)."""
    if not isinstance(x_seq, Tensor) or not x_seq.is_floating_point():
        raise _Fallback("a non-floating-point input")
    if x_seq.dtype not in ops.FUSED_DTYPES:
        raise _Fallback(f"dtype {x_seq.dtype} has no fused kernel")
    if x_seq.dim() < 1 or x_seq.shape[0] < 1:
        raise _Fallback(f"an input of shape {tuple(x_seq.shape)} without time steps")
    why = ops.unavailable_reason(x_seq.device.type, x_seq)
    if why:
        raise _Fallback(why)
    surrogate = _surrogate(node)
    v_threshold = _scalar(node.v_threshold, "v_threshold")
    v_reset = _scalar(node.v_reset, "v_reset", allow_none=True)
    rest = tuple(x_seq.shape[1:])
    sdt = ops.state_dtype(x_seq.dtype)
    v = node.v
    v0, v_init = None, 0.0
    if isinstance(v, Tensor):
        if tuple(v.shape) != rest:
            if v_init_on_mismatch is None:
                raise _Fallback(f"the state v has shape {tuple(v.shape)}, the input step {rest}")
            v_init = v_init_on_mismatch  # SpikingJelly 2.0 restarts the state on a new shape
        elif v.device != x_seq.device:
            raise _Fallback(f"the state v is on {v.device}, the input on {x_seq.device}")
        else:
            v0 = v.to(sdt)
    else:
        v_init = _scalar(v, "the initial state v")
    tau, k = 2.0, None
    model = {"if": ops.MODEL_IF, "lif": ops.MODEL_LIF, "plif": ops.MODEL_PLIF}[kind]
    if kind == "lif":
        tau = _scalar(node.tau, "tau")
        if not tau > 1.0:
            raise _Fallback(f"tau={tau} <= 1")
    elif kind == "plif":
        w = node.w
        if not isinstance(w, Tensor) or w.numel() != 1:
            raise _Fallback("a non-scalar w")
        if w.device != x_seq.device:
            raise _Fallback(f"w is on {w.device}, the input on {x_seq.device}")
        k = w.sigmoid().reshape(())
    decay_input = bool(getattr(node, "decay_input", True))
    if kind == "plif" and legacy_plif and not decay_input and not v_reset:
        # 0.0.0.0.12/14 charge H = V * (1 - sigmoid(w)) + X here, the factor rounded to w's dtype
        # (float32) before it meets a float64 V; the kernel forms V - V * k: hand it the k whose
        # complement is that rounded factor (exact in float64), same gradient (d k / d sigmoid = 1).
        k = 1.0 - (1.0 - k).to(ops.state_dtype(x_seq.dtype))
    spikes, _, v_seq, v_last = ops.neuron_multistep(
        x_seq,
        v0,
        model=model,
        reset=ops.RESET_SOFT if v_reset is None else ops.RESET_HARD,
        surrogate_id=surrogate.kind_id,
        surrogate_param=surrogate.param,
        tau=tau,
        v_threshold=v_threshold,
        v_reset=0.0 if v_reset is None else v_reset,
        v_init=v_init,
        decay_input=decay_input,
        detach_reset=bool(node.detach_reset),
        store_v_seq=want_v_seq,
        decay_param=k,
    )
    if x_seq.dtype != sdt:  # 16-bit: SpikingJelly keeps the membrane in the input's dtype
        v_last = v_last.to(x_seq.dtype)
        if want_v_seq:
            v_seq = v_seq.to(x_seq.dtype)
    return spikes, (v_seq if want_v_seq else None), v_last


# ---------------------------------------------------------------------------------------
# per-version patches
# ---------------------------------------------------------------------------------------
def _set(cls: type, name: str, value) -> None:
    key = (cls, name)
    if key not in _originals:
        _originals[key] = cls.__dict__.get(name, _MISSING)
    setattr(cls, name, value)


def _orig(cls: type, name: str):
    """The class's own attribute before the patch (else the inherited one)."""
    value = _originals.get((cls, name), _MISSING)
    if value is _MISSING:
        for base in cls.__mro__[1:]:
            if name in base.__dict__:
                return base.__dict__[name]
        raise AttributeError(name)
    return value


def _wrap_init(cls: type, arg: str, fused_value, plain_value, store: Callable[[Any, Any], None]) -> None:
    """__init__ that builds the node with `arg=plain_value` when given `fused_value` (so that
    SpikingJelly's own CuPy check never runs), then stores the requested value."""
    orig = cls.__dict__["__init__"]
    sig = inspect.signature(orig)

    @functools.wraps(orig)
    def __init__(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        requested = bound.arguments.get(arg, _MISSING)
        if requested == fused_value:
            bound.arguments[arg] = plain_value
        orig(*bound.args, **bound.kwargs)
        if requested == fused_value:
            store(self, requested)

    _set(cls, "__init__", __init__)


def _patch_012(report: PatchReport) -> None:
    from spikingjelly.clock_driven import neuron as sjn

    kinds = {"IF": "if", "LIF": "lif", "ParametricLIF": "plif"}
    for stem, kind in kinds.items():
        ms = getattr(sjn, f"MultiStep{stem}Node", None)
        if ms is None:
            continue
        single = getattr(sjn, f"{stem}Node")
        _wrap_init(ms, "backend", "cupy", "torch", lambda self, v: setattr(self, "backend", v))
        orig_forward = ms.__dict__["forward"]

        def forward(self, x_seq, _orig=orig_forward, _kind=kind, _base=single):
            if getattr(self, "backend", "torch") != "cupy" or not (isinstance(x_seq, Tensor) and x_seq.dim() > 1):
                return _orig(self, x_seq)  # (SpikingJelly asserts a [T, N, ...] input)
            try:
                _check_overrides(self, _base)
                spikes, v_seq, v_last = _fused(self, x_seq, _kind, True, legacy_plif=True)
            except _Fallback as e:
                _fall_back(self, str(e))
                self.backend = "torch"  # SpikingJelly's own loop (its CuPy path may not exist here)
                try:
                    return _orig(self, x_seq)
                finally:
                    self.backend = "cupy"
            self.v_seq = v_seq
            self.v = v_last
            return spikes

        _set(ms, "forward", forward)
        report.patched.append(
            (f"spikingjelly.clock_driven.neuron.MultiStep{stem}Node", "backend='cupy' constructs and runs fused")
        )
        if "cupy_fp32_inference" not in inspect.signature(single.__init__).parameters:
            continue  # ParametricLIFNode: no CuPy path of its own
        _wrap_init(single, "cupy_fp32_inference", True, False, lambda self, v: setattr(self, "cupy_fp32_inference", v))
        orig_single = single.__dict__["forward"]

        def single_forward(self, x, _orig=orig_single, _kind=kind, _base=single):
            if not (
                getattr(self, "cupy_fp32_inference", False)
                and not self.training
                and isinstance(x, Tensor)
                and x.dtype == torch.float32
            ):
                return _orig(self, x)
            try:
                _check_overrides(self, _base)
                spikes, _, v_last = _fused(self, x.unsqueeze(0), _kind, False)
            except _Fallback as e:
                _fall_back(self, str(e))
                return _orig(self, x)
            self.v = v_last
            return spikes[0]

        _set(single, "forward", single_forward)
        report.patched.append(
            (f"spikingjelly.clock_driven.neuron.{stem}Node", "cupy_fp32_inference=True constructs and runs fused")
        )


def _patch_014(report: PatchReport, sjn) -> None:
    from spikingjelly.activation_based import base as sjbase

    base_prop = None
    for k in sjbase.MemoryModule.__mro__:
        if isinstance(k.__dict__.get("backend"), property):
            base_prop = k.__dict__["backend"]
            break
    if base_prop is None:  # pragma: no cover - another layout
        raise RuntimeError("snn_cuda.compat: SpikingJelly's MemoryModule has no backend property")

    def _get_backend(self):
        return self._backend

    def _set_backend(self, value):
        # 'cupy' where the step mode allows it, without SpikingJelly's CuPy import check
        if value == "cupy" and value in self.supported_backends:
            self._backend = value
        else:
            base_prop.fset(self, value)

    for stem, kind in {"IF": "if", "LIF": "lif", "ParametricLIF": "plif"}.items():
        cls = getattr(sjn, f"{stem}Node")
        _set(cls, "backend", property(_get_backend, _set_backend))
        orig_multi = cls.__dict__["multi_step_forward"]
        orig_single = cls.__dict__.get("single_step_forward", _MISSING)

        def multi_step_forward(self, x_seq, _orig=orig_multi, _kind=kind, _cls=cls):
            if self.backend != "cupy":
                return _orig(self, x_seq)
            try:
                _check_overrides(self, _cls)
                spikes, v_seq, v_last = _fused(self, x_seq, _kind, bool(self.store_v_seq), legacy_plif=True)
            except _Fallback as e:
                _fall_back(self, str(e))
                return _torch_014(self, _cls, "multi_step_forward", x_seq)
            if self.store_v_seq:
                self.v_seq = v_seq
            self.v = v_last
            return spikes

        def single_step_forward(self, x, _orig=orig_single, _kind=kind, _cls=cls):
            if self.backend != "cupy":
                return (_orig if _orig is not _MISSING else _orig_base_single(_cls))(self, x)
            try:
                _check_overrides(self, _cls)
                if not isinstance(x, Tensor):
                    raise _Fallback("a non-tensor input")
                spikes, _, v_last = _fused(self, x.unsqueeze(0), _kind, False, legacy_plif=True)
            except _Fallback as e:
                _fall_back(self, str(e))
                return (_orig if _orig is not _MISSING else _orig_base_single(_cls))(self, x)
            self.v = v_last
            return spikes[0]

        _set(cls, "multi_step_forward", multi_step_forward)
        _set(cls, "single_step_forward", single_step_forward)
        report.patched.append(
            (
                f"spikingjelly.activation_based.neuron.{stem}Node",
                "backend='cupy' constructs without CuPy and runs fused",
            )
        )


def _orig_base_single(cls):
    for base in cls.__mro__[1:]:
        if "single_step_forward" in base.__dict__:
            return base.__dict__["single_step_forward"]
    raise AttributeError("single_step_forward")  # pragma: no cover


def _torch_014(node, cls, name, x):
    """0.0.0.0.14's torch path of a 'cupy' node: its CuPy path may not exist here."""
    node._backend = "torch"
    try:
        return _orig(cls, name)(node, x)
    finally:
        node._backend = "cupy"


def _patch_20(report: PatchReport, sjn) -> None:
    for stem, kind in {"IF": "if", "LIF": "lif", "ParametricLIF": "plif"}.items():
        cls = getattr(sjn, f"{stem}Node", None)
        if cls is None:
            continue
        orig_init = cls.__dict__["__init__"]

        @functools.wraps(orig_init)
        def __init__(self, *args, backend: str = "torch", _orig=orig_init, **kwargs):
            if backend not in _BACKENDS_20:
                raise ValueError(f"backend must be one of {', '.join(map(repr, _BACKENDS_20))}, got {backend!r}")
            _orig(self, *args, **kwargs)
            self.backend = backend

        _set(cls, "__init__", __init__)
        orig_multi = _orig(cls, "multi_step_forward")
        orig_single = _orig(cls, "single_step_forward")
        names = ("single_step_functional_forward", "multi_step_functional_forward", "neuronal_charge")

        def multi_step_forward(self, x_seq, *args, _orig=orig_multi, _kind=kind, _cls=cls, **kwargs):
            if getattr(self, "backend", "torch") not in _FUSED_BACKENDS_20 or args or kwargs:
                return _orig(self, x_seq, *args, **kwargs)
            try:
                _check_20(self, _cls, names)
                spikes, v_seq, v_last = _fused(self, x_seq, _kind, bool(self.store_v_seq), _v_init_20(self))
            except _Fallback as e:
                _fall_back(self, str(e))
                return _orig(self, x_seq)
            if self.store_v_seq:
                self.v_seq = v_seq
            self.v = v_last
            return spikes

        def single_step_forward(self, x, *args, _orig=orig_single, _kind=kind, _cls=cls, **kwargs):
            if getattr(self, "backend", "torch") not in _FUSED_BACKENDS_20 or args or kwargs:
                return _orig(self, x, *args, **kwargs)
            try:
                _check_20(self, _cls, names)
                if not isinstance(x, Tensor):
                    raise _Fallback("a non-tensor input")
                spikes, _, v_last = _fused(self, x.unsqueeze(0), _kind, False, _v_init_20(self))
            except _Fallback as e:
                _fall_back(self, str(e))
                return _orig(self, x)
            self.v = v_last
            if self.store_v_seq:
                self._append_v_seq(v_last)
            return spikes[0]

        _set(cls, "multi_step_forward", multi_step_forward)
        _set(cls, "single_step_forward", single_step_forward)
        report.patched.append(
            (
                f"spikingjelly.activation_based.neuron.{stem}Node",
                "accepts backend='torch'|'cupy'|'triton' (2.0 dropped it); 'cupy'/'triton' run fused",
            )
        )


def _v_init_20(node) -> float:
    return 0.0 if node.v_reset is None else node.v_reset


def _check_20(node, cls, names) -> None:
    if getattr(node, "_neuron_precision", None) is not None:
        raise _Fallback("a neuron precision policy is set")
    if set(getattr(node, "_memories", {})) - {"v"}:
        raise _Fallback(f"extra memories {sorted(set(node._memories) - {'v'})}")
    _check_overrides(node, cls, names)


def _layout() -> List[str]:
    """Which SpikingJelly APIs are installed: V012 (clock_driven neuron with MultiStep*
    classes), V014 (activation_based neuron with a backend argument), V20 (activation_based
    neuron package without it)."""
    found = []
    try:
        cd = importlib.import_module("spikingjelly.clock_driven.neuron")
    except Exception:  # noqa: BLE001 - absent, or a broken optional dependency
        cd = None
    if (
        cd is not None
        and hasattr(cd, "MultiStepLIFNode")
        and "backend" in inspect.signature(cd.MultiStepLIFNode.__init__).parameters
    ):
        found.append(V012)
    try:
        ab = importlib.import_module("spikingjelly.activation_based.neuron")
    except Exception:  # noqa: BLE001
        ab = None
    if ab is not None and hasattr(ab, "LIFNode"):
        params = inspect.signature(ab.BaseNode.__init__).parameters
        found.append(V014 if "backend" in params else V20)
    return found


def patch_spikingjelly() -> PatchReport:
    """Patch the installed SpikingJelly's IF / LIF / ParametricLIF classes in place so that
    ``backend='cupy'`` nodes construct whether CuPy works or not and run on snn_cuda's fused
    kernels (see the module docstring). Idempotent; returns a :class:`PatchReport` (the same
    one on a repeated call). Raises ImportError when SpikingJelly is not installed."""
    global _report
    if _report is not None:
        return _report
    try:
        importlib.import_module("spikingjelly")
    except ImportError as e:
        raise ImportError("snn_cuda.compat.patch_spikingjelly: SpikingJelly is not installed") from e
    report = PatchReport()
    try:
        for version in _layout():
            report.versions.append(version)
            if version == V012:
                _patch_012(report)
            else:
                sjn = importlib.import_module("spikingjelly.activation_based.neuron")
                (_patch_014 if version == V014 else _patch_20)(report, sjn)
    except BaseException:
        _restore()
        raise
    _report = report
    return report


def _restore() -> None:
    for (cls, name), value in reversed(list(_originals.items())):
        if value is _MISSING:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, value)
    _originals.clear()


def unpatch_spikingjelly() -> None:
    """Undo :func:`patch_spikingjelly`: the classes get their own methods back. Nodes built
    with ``backend='cupy'`` while patched keep that attribute and need CuPy (and a GPU) to
    run on SpikingJelly's own code afterwards."""
    global _report
    _restore()
    _report = None
    _warned.clear()
