"""Pure-PyTorch reference neurons (docs/neuron_semantics.md).

This is the test oracle for the fused kernels and the "plain torch loop" baseline of the
benchmarks. It is written to be obviously correct, not fast:

* a per-step Python loop over ``x_seq.unbind(0)`` (not ``x_seq[t]``, whose backward fills a
  full-size zero tensor at every step);
* autograd through :meth:`snn_cuda.surrogate.SurrogateFunction.spike`;
* the state dtype is float64 for float64 input, float32 otherwise (16-bit inputs are upcast);
  all arithmetic is done in the state dtype, every scalar is first rounded to the state dtype
  (as a 0-dim tensor on x's device, so that CUDA performs a real IEEE division by ``tau``
  rather than a multiply by its reciprocal), and each formula is evaluated in exactly the
  order docs/neuron_semantics.md writes it.

Spikes are returned in x's dtype; membranes stay in the state dtype.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from . import surrogate as _surrogate
from .surrogate import SurrogateFunction

_ALL = [
    "state_dtype_for",
    "lif_reference",
    "leaky_reference",
    "reference_step_lif",
    "reference_step_leaky",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_MODELS = ("lif", "if", "plif")
_RESET_MECHANISMS = ("subtract", "zero", "none")


# ------------------------------------------------------------------------------------------
# validation helpers
# ------------------------------------------------------------------------------------------
def state_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """State/arithmetic dtype for a storage dtype: float64 stays, everything else -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_x(x: Tensor, name: str, min_dim: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating tensor (float16, bfloat16, float32 or float64), got dtype {x.dtype}"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) "
            f"({'[T, ...] time-major' if min_dim else ''}), got shape {tuple(x.shape)}"
        )


def _finite(name: str, value) -> float:
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a finite real number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a finite real number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite real number, got {f!r}")
    return f


def _scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A Python scalar rounded to the state dtype, as a 0-dim tensor on x's device. Filled on
    the device (torch.full), not copied there: torch.tensor(value, device="cuda") copies from
    pageable host memory and synchronises with the device at every call."""
    return torch.full((), value, dtype=dtype, device=device)


def _param(name: str, value, dtype: torch.dtype, device: torch.device, shape) -> Tensor:
    """A neuron parameter in the state dtype: a Python number (rounded, 0-dim), or a tensor
    (learnable or per-neuron; autograd kept) that broadcasts to one step's shape."""
    if not isinstance(value, Tensor):
        return _scalar(_finite(name, value), dtype, device)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a float or a floating tensor, got dtype {value.dtype}")
    if value.device != device:
        raise ValueError(f"{name} is on {value.device} but the input is on {device}")
    try:
        ok = torch.broadcast_shapes(value.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} must be a scalar or broadcast to one step's shape {tuple(shape)}, got shape {tuple(value.shape)}"
        )
    return value.to(dtype)


def _init_state(
    init: Optional[Union[Tensor, float]],
    name: str,
    default: float,
    shape: torch.Size,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """Initial membrane: ``default`` everywhere if None, else ``init`` cast to the state dtype
    (autograd kept). It must broadcast to ``shape`` (x_seq.shape[1:])."""
    if init is None:
        return torch.full(shape, default, dtype=dtype, device=device)
    if not isinstance(init, Tensor):
        init = torch.tensor(_finite(name, init), dtype=dtype, device=device)
    if not (init.is_floating_point()):
        raise TypeError(f"{name} must be a floating tensor, got dtype {init.dtype}")
    if init.device != device:
        raise ValueError(f"{name} is on {init.device} but the input is on {device}")
    try:
        bshape = torch.broadcast_shapes(init.shape, shape)
    except RuntimeError:
        bshape = None
    if bshape != shape:
        raise ValueError(
            f"{name} must have shape x_seq.shape[1:] = {tuple(shape)} (or broadcast to it), got {tuple(init.shape)}"
        )
    return init.to(dtype)


def _resolve_surrogate(surrogate, default_cls) -> SurrogateFunction:
    if surrogate is None:
        return default_cls()
    return _surrogate.get(surrogate)


# ------------------------------------------------------------------------------------------
# LIF / IF (SpikingJelly LIFNode / IFNode)
# ------------------------------------------------------------------------------------------
class _LIFParams:
    """Validated LIF/IF parameters, scalars rounded to the state dtype on x's device."""

    def __init__(
        self,
        dtype,
        device,
        shape,
        *,
        model,
        tau,
        decay_input,
        v_threshold,
        v_reset,
        surrogate,
        detach_reset,
        v_floor,
        k=None,
    ):
        if not isinstance(model, str) or model.lower() not in _MODELS:
            raise ValueError(f"model must be one of {_MODELS}, got {model!r}")
        self.model = model.lower()
        self.is_lif = self.model == "lif"
        self.is_plif = self.model == "plif"
        if self.is_plif:
            # ParametricLIF: the charge multiplies by k = sigmoid(w) (SpikingJelly's form)
            if k is None:
                raise ValueError("model='plif' needs k (= sigmoid(w), in (0, 1))")
            self.k = _param("k", k, dtype, device, shape)
            if v_floor is not None:
                raise ValueError("v_floor is only supported for model='if' (got model='plif')")
        elif k is not None:
            raise ValueError(f"k is only used by model='plif' (got model={self.model!r})")
        if self.is_lif:
            t = _finite("tau", tau)
            if not t > 1.0:
                raise ValueError(f"tau must be a finite number > 1, got {t!r}")
            self.tau = _scalar(t, dtype, device)
            if v_floor is not None:
                raise ValueError("v_floor is only supported for model='if' (got model='lif')")
        self.decay_input = bool(decay_input)
        self.v_threshold = _param("v_threshold", v_threshold, dtype, device, shape)
        self.hard = v_reset is not None
        vr = _finite("v_reset", v_reset) if self.hard else 0.0
        self.vr_value = vr
        self.v_reset = _scalar(vr, dtype, device)  # Vr: v_reset, or 0 under soft reset
        self.v_floor = None if v_floor is None else _scalar(_finite("v_floor", v_floor), dtype, device)
        self.surrogate = _resolve_surrogate(surrogate, _surrogate.Sigmoid)
        self.detach_reset = bool(detach_reset)


def _lif_step(x: Tensor, v: Tensor, p: _LIFParams) -> Tuple[Tensor, Tensor, Tensor]:
    """One step in the state dtype: returns (s, v_new, h), all in the state dtype."""
    # charge
    if p.is_plif:
        if p.decay_input:
            h = v + (x - (v - p.v_reset)) * p.k
        else:
            h = v - (v - p.v_reset) * p.k + x
    elif p.is_lif:
        if p.decay_input:
            h = v + (x - (v - p.v_reset)) / p.tau
        else:
            h = v - (v - p.v_reset) / p.tau + x
    elif p.v_floor is None:
        h = v + x
    else:
        pre = v + x
        # max(pre, v_floor) with gradient 1 exactly where pre >= v_floor, else 0
        # (torch.maximum would give 0.5 at ties); NaN propagates like torch.maximum.
        h = torch.where(pre < p.v_floor, p.v_floor, pre)
    # fire: Θ(z) = (z >= 0)
    s = p.surrogate.spike(h - p.v_threshold, strict=False)
    # reset
    sr = s.detach() if p.detach_reset else s
    if p.hard:
        v_new = h * (1 - sr) + p.v_reset * sr
    else:
        v_new = h - p.v_threshold * sr
    return s, v_new, h


def reference_step_lif(
    x: Tensor,
    v: Optional[Union[Tensor, float]] = None,
    *,
    model: str = "lif",
    tau: float = 2.0,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate=None,
    detach_reset: bool = False,
    v_floor: Optional[float] = None,
    k=None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """One LIF/IF/ParametricLIF step. ``x``: one time step ``[...]``; ``v``: previous membrane (default
    v_reset, or 0 for soft reset). Returns ``(s, v_new, h)``: the spike in x's dtype, the
    post-reset membrane and the charged potential H in the state dtype."""
    _check_x(x, "x", 0)
    dtype = state_dtype_for(x.dtype)
    p = _LIFParams(
        dtype,
        x.device,
        x.shape,
        model=model,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        surrogate=surrogate,
        detach_reset=detach_reset,
        v_floor=v_floor,
        k=k,
    )
    v = _init_state(v, "v", p.vr_value, x.shape, dtype, x.device)
    s, v_new, h = _lif_step(x.to(dtype), v, p)
    return s.to(x.dtype), v_new, h


def lif_reference(
    x_seq: Tensor,
    v0: Optional[Union[Tensor, float]] = None,
    *,
    model: str = "lif",
    tau: float = 2.0,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate=None,
    detach_reset: bool = False,
    v_floor: Optional[float] = None,
    k=None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """SpikingJelly-compatible multi-step LIF (``model="lif"``), IF (``model="if"``) or
    ParametricLIF (``model="plif"``: the charge multiplies by ``k`` = sigmoid(w) where LIF
    divides by tau).

    ``x_seq``: ``[T, ...]`` floating tensor. ``v0``: initial membrane of shape
    ``x_seq.shape[1:]`` (default v_reset, or 0 for soft reset). ``v_reset=None`` selects the
    soft reset. ``surrogate``: a :class:`SurrogateFunction` or a name (default
    ``Sigmoid(alpha=4)``). ``v_floor``: IF only, ``H = max(V + X, v_floor)``. ``v_threshold``
    and ``k`` may be tensors (learnable, or per neuron: broadcastable to ``x_seq.shape[1:]``).

    Returns ``(spike_seq, v_seq, v_last)``: spikes ``[T, ...]`` in x_seq's dtype, the
    post-reset membranes ``[T, ...]`` and the final membrane ``[...]`` in the state dtype.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    p = _LIFParams(
        dtype,
        device,
        rest,
        model=model,
        tau=tau,
        decay_input=decay_input,
        v_threshold=v_threshold,
        v_reset=v_reset,
        surrogate=surrogate,
        detach_reset=detach_reset,
        v_floor=v_floor,
        k=k,
    )
    v = _init_state(v0, "v0", p.vr_value, rest, dtype, device)

    spikes, vs = [], []
    for x in x_seq.to(dtype).unbind(0):
        s, v, _ = _lif_step(x, v, p)
        spikes.append(s)
        vs.append(v)
    if not vs:  # T == 0
        v_last = v.expand(rest).clone()
        return (x_seq.new_empty(x_seq.shape), torch.empty(x_seq.shape, dtype=dtype, device=device), v_last)
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(vs), v


# ------------------------------------------------------------------------------------------
# Leaky (snnTorch Leaky, reset_delay=True)
# ------------------------------------------------------------------------------------------
class _LeakyParams:
    def __init__(self, dtype, device, shape, *, beta, threshold, reset_mechanism, surrogate):
        if not isinstance(reset_mechanism, str) or reset_mechanism.lower() not in _RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism must be one of {_RESET_MECHANISMS}, got {reset_mechanism!r}")
        self.reset_mechanism = reset_mechanism.lower()
        if isinstance(beta, Tensor):
            # learnable beta: clamped to [0, 1] in forward, gradient as autograd gives
            self.beta = _param("beta", beta, dtype, device, shape).clamp(0, 1)
        else:
            b = _finite("beta", beta)
            if not 0.0 <= b <= 1.0:
                raise ValueError(f"beta must be in [0, 1], got {b!r}")
            self.beta = _scalar(b, dtype, device)
        self.threshold = _param("threshold", threshold, dtype, device, shape)
        self.surrogate = _resolve_surrogate(surrogate, _surrogate.ATan)


def _leaky_step(x: Tensor, u: Tensor, p: _LeakyParams) -> Tuple[Tensor, Tensor]:
    """One step in the state dtype: returns (s, u_new)."""
    # R_t = Θ'(U_{t-1} - threshold), strict, no gradient
    r = (u - p.threshold > 0).to(u.dtype)
    if p.reset_mechanism == "subtract":
        u_new = p.beta * u + x - r * p.threshold
    elif p.reset_mechanism == "zero":
        u_new = p.beta * ((1 - r) * u) + x
    else:  # "none"
        u_new = p.beta * u + x
    s = p.surrogate.spike(u_new - p.threshold, strict=True)
    return s, u_new


def reference_step_leaky(
    x: Tensor,
    u: Optional[Union[Tensor, float]] = None,
    *,
    beta,
    threshold: float = 1.0,
    reset_mechanism: str = "subtract",
    surrogate=None,
) -> Tuple[Tensor, Tensor]:
    """One snnTorch Leaky step. Returns ``(s, u_new)``: spike in x's dtype, membrane in the
    state dtype. ``u`` defaults to 0."""
    _check_x(x, "x", 0)
    dtype = state_dtype_for(x.dtype)
    p = _LeakyParams(
        dtype, x.device, x.shape, beta=beta, threshold=threshold, reset_mechanism=reset_mechanism, surrogate=surrogate
    )
    u = _init_state(u, "u", 0.0, x.shape, dtype, x.device)
    s, u_new = _leaky_step(x.to(dtype), u, p)
    return s.to(x.dtype), u_new


def leaky_reference(
    x_seq: Tensor,
    u0: Optional[Union[Tensor, float]] = None,
    *,
    beta,
    threshold: float = 1.0,
    reset_mechanism: str = "subtract",
    surrogate=None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """snnTorch-compatible multi-step ``Leaky`` (reset_delay=True).

    ``x_seq``: ``[T, ...]``. ``u0``: initial membrane (default 0). ``beta``: a float in
    [0, 1], or a tensor (scalar or broadcastable to ``x_seq.shape[1:]``) clamped to [0, 1].
    ``reset_mechanism``: "subtract" | "zero" | "none". ``surrogate`` default ``ATan(alpha=2)``.

    Returns ``(spk_seq, mem_seq, mem_last)``: spikes in x_seq's dtype, membranes ``[T, ...]``
    and the final membrane in the state dtype.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    p = _LeakyParams(
        dtype, device, rest, beta=beta, threshold=threshold, reset_mechanism=reset_mechanism, surrogate=surrogate
    )
    u = _init_state(u0, "u0", 0.0, rest, dtype, device)

    spikes, us = [], []
    for x in x_seq.to(dtype).unbind(0):
        s, u = _leaky_step(x, u, p)
        spikes.append(s)
        us.append(u)
    if not us:  # T == 0
        return (
            x_seq.new_empty(x_seq.shape),
            torch.empty(x_seq.shape, dtype=dtype, device=device),
            u.expand(rest).clone(),
        )
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(us), u


# ------------------------------------------------------------------------------------------
# the declared models' reference loops
# ------------------------------------------------------------------------------------------
# They live beside their layers, one file per model (snn_cuda/models/<name>.py), and are looked
# up here on first use: those files import this module's helpers, so importing them from here
# at load time would be circular.
def __getattr__(name: str):
    if name == "__all__":  # `from snn_cuda.reference import *` includes them
        from .models import REFERENCES

        return _ALL + list(REFERENCES)
    if name.endswith("_reference"):
        from .models import REFERENCES

        if name in REFERENCES:
            return REFERENCES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    from .models import REFERENCES

    return sorted(set(globals()) | set(REFERENCES))
