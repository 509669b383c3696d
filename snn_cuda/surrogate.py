"""Surrogate-gradient functions.

The forward pass of every surrogate is the Heaviside step function; the backward pass
multiplies the incoming gradient by the surrogate derivative sigma'(z) from docs/neuron_semantics.md:

=====================  ===========  ================================================
class                  default      derivative sigma'(z)
=====================  ===========  ================================================
Sigmoid                alpha=4      alpha*s*(1-s), s = sigmoid(alpha*z)
ATan                   alpha=2      (alpha/2) / (1 + (pi/2*alpha*z)^2)
FastSigmoid            slope=25     1 / (slope*|z| + 1)^2
PiecewiseQuadratic     alpha=1      max(0, alpha - alpha^2*|z|)
PiecewiseExp           alpha=1      (alpha/2) * exp(-alpha*|z|)
SoftSign               alpha=2      1 / (2*alpha*(1/alpha + |z|)^2)
Erf                    alpha=2      (alpha/sqrt(pi)) * exp(-(alpha*z)^2)
Rect                   alpha=1      alpha if |z| < 0.5/alpha else 0
StraightThrough        --           1
NonzeroSignLogAbs      alpha=1      1 / (1/alpha + |z|)
=====================  ===========  ================================================

Each built-in surrogate carries ``kind_id`` (the integer the C++/CUDA kernels switch on) and
``param`` (its run-time parameter as a Python float). A user-defined subclass of
:class:`SurrogateFunction` that overrides :meth:`SurrogateFunction.derivative` gets
``kind_id = None`` and is only usable by the reference (pure PyTorch) backend.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Type, Union

import torch
from torch import Tensor

from ._model_list import SURROGATE_IDS

__all__ = [
    "SurrogateFunction",
    "Sigmoid",
    "ATan",
    "FastSigmoid",
    "PiecewiseQuadratic",
    "PiecewiseExp",
    "SoftSign",
    "Erf",
    "Rect",
    "StraightThrough",
    "NonzeroSignLogAbs",
    "get",
    "SURROGATES",
    "KIND_IDS",
]


def _check_positive(cls_name: str, pname: str, value) -> float:
    """Validate a surrogate parameter: a finite, strictly positive real number."""
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise TypeError(f"{cls_name}: {pname} must be a finite positive number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{cls_name}: {pname} must be a finite positive number, got {value!r}") from None
    if not math.isfinite(f) or f <= 0.0:
        raise ValueError(f"{cls_name}: {pname} must be a finite positive number, got {f!r}")
    return f


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate-derivative backward.

    ``apply(z, surrogate, strict)``: forward ``(z > 0)`` if strict else ``(z >= 0)``, as z's
    dtype; backward ``grad * surrogate.derivative(z)``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, surrogate: "SurrogateFunction", strict: bool) -> Tensor:
        ctx.surrogate = surrogate
        ctx.save_for_backward(z)
        s = (z > 0) if strict else (z >= 0)
        return s.to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (z,) = ctx.saved_tensors
        grad_z = None
        if ctx.needs_input_grad[0]:
            grad_z = grad * ctx.surrogate.derivative(z)
        return grad_z, None, None


class SurrogateFunction(torch.nn.Module):
    """Base class of surrogate-gradient spike functions.

    Subclass and override :meth:`derivative` to define a custom surrogate (reference backend
    only: its ``kind_id`` is ``None``).
    """

    #: Integer id understood by the fused kernels; ``None`` = Python-only surrogate.
    kind_id: Optional[int] = None
    #: Name accepted by :func:`get` (built-ins only).
    name: Optional[str] = None
    #: Name of the natural parameter attribute ("alpha", "slope") or None.
    _param_name: Optional[str] = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A built-in's id is the kernels' enum value, generated from csrc/kernels/surrogate.h.
        if "name" in cls.__dict__ and cls.name in SURROGATE_IDS and "kind_id" not in cls.__dict__:
            cls.kind_id = SURROGATE_IDS[cls.name]
        # A subclass that redefines the derivative but not kind_id cannot be run by the fused
        # kernels (they would compute the parent's formula): mark it Python-only.
        if "derivative" in cls.__dict__ and "kind_id" not in cls.__dict__:
            cls.kind_id = None

    def __init__(self, param: float = 0.0):
        super().__init__()
        self.param = float(param)

    # -- the math ------------------------------------------------------------------------
    def derivative(self, z: Tensor) -> Tensor:
        """sigma'(z), elementwise, in z's dtype."""
        raise NotImplementedError(f"{type(self).__name__} must implement derivative(z)")

    def spike(self, z: Tensor, strict: bool = False) -> Tensor:
        """Step function with surrogate gradient.

        ``strict=False``: Θ(z) = (z >= 0) (SpikingJelly LIF/IF);
        ``strict=True``:  Θ'(z) = (z > 0) (snnTorch Leaky). Returned in z's dtype.
        """
        return _SpikeFunction.apply(z, self, bool(strict))

    def forward(self, z: Tensor) -> Tensor:
        return self.spike(z, strict=False)

    # -- niceties --------------------------------------------------------------------------
    def extra_repr(self) -> str:
        if self._param_name is None:
            return ""
        return f"{self._param_name}={self.param!r}"

    def __eq__(self, other):
        if not isinstance(other, SurrogateFunction):
            return NotImplemented
        if self is other:
            return True
        if self.kind_id is None:  # Python-defined surrogates compare by identity
            return False
        return type(self) is type(other) and self.param == other.param

    def __hash__(self):
        if self.kind_id is None:
            return id(self)
        return hash((type(self), self.param))


class _AlphaSurrogate(SurrogateFunction):
    _param_name = "alpha"
    _default = 1.0

    def __init__(self, alpha: Optional[float] = None):
        if alpha is None:
            alpha = self._default
        alpha = _check_positive(type(self).__name__, "alpha", alpha)
        super().__init__(alpha)

    @property
    def alpha(self) -> float:
        return self.param


class Sigmoid(_AlphaSurrogate):
    """SpikingJelly ``surrogate.Sigmoid``: alpha*s*(1-s), s = sigmoid(alpha*z)."""

    name = "sigmoid"
    _default = 4.0

    def __init__(self, alpha: float = 4.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        s = torch.sigmoid(alpha * z)
        return alpha * s * (1 - s)


class ATan(_AlphaSurrogate):
    """SpikingJelly/snnTorch ``ATan``: (alpha/2) / (1 + (pi/2*alpha*z)^2)."""

    name = "atan"
    _default = 2.0

    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return (alpha / 2) / (1 + (math.pi / 2 * alpha * z).square())


class FastSigmoid(SurrogateFunction):
    """snnTorch ``fast_sigmoid``: 1 / (slope*|z| + 1)^2."""

    name = "fast_sigmoid"
    _param_name = "slope"

    def __init__(self, slope: float = 25.0):
        slope = _check_positive(type(self).__name__, "slope", slope)
        super().__init__(slope)

    @property
    def slope(self) -> float:
        return self.param

    def derivative(self, z: Tensor) -> Tensor:
        return 1 / (self.param * z.abs() + 1).square()


class PiecewiseQuadratic(_AlphaSurrogate):
    """SpikingJelly ``PiecewiseQuadratic``: max(0, alpha - alpha^2*|z|)."""

    name = "piecewise_quadratic"
    _default = 1.0

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return (alpha - alpha * alpha * z.abs()).clamp_min(0)


class PiecewiseExp(_AlphaSurrogate):
    """SpikingJelly ``PiecewiseExp``: (alpha/2) * exp(-alpha*|z|)."""

    name = "piecewise_exp"
    _default = 1.0

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return (alpha / 2) * torch.exp(-alpha * z.abs())


class SoftSign(_AlphaSurrogate):
    """SpikingJelly ``SoftSign``: 1 / (2*alpha*(1/alpha + |z|)^2)."""

    name = "soft_sign"
    _default = 2.0

    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return 1 / (2 * alpha * (1 / alpha + z.abs()).square())


class Erf(_AlphaSurrogate):
    """SpikingJelly ``Erf``: (alpha/sqrt(pi)) * exp(-(alpha*z)^2)."""

    name = "erf"
    _default = 2.0

    def __init__(self, alpha: float = 2.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return (alpha / math.sqrt(math.pi)) * torch.exp(-(alpha * z).square())


class Rect(_AlphaSurrogate):
    """SpikingJelly ``Rect``: alpha if |z| < 0.5/alpha else 0."""

    name = "rect"
    _default = 1.0

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        alpha = self.param
        return (z.abs() < 0.5 / alpha).to(z.dtype) * alpha


class StraightThrough(SurrogateFunction):
    """snnTorch ``straight_through_estimator``: derivative 1."""

    name = "straight_through"

    def __init__(self):
        super().__init__(0.0)

    def derivative(self, z: Tensor) -> Tensor:
        return torch.ones_like(z)


class NonzeroSignLogAbs(_AlphaSurrogate):
    """SpikingJelly ``NonzeroSignLogAbs``: 1 / (1/alpha + |z|)."""

    name = "nonzero_sign_log_abs"
    _default = 1.0

    def __init__(self, alpha: float = 1.0):
        super().__init__(alpha)

    def derivative(self, z: Tensor) -> Tensor:
        # SpikingJelly's association, also the kernels' (surrogate.h): 1 / (1/alpha + |z|).
        return 1 / (1 / self.param + z.abs())


def _builtins(base) -> Dict[str, Type[SurrogateFunction]]:
    out = {}
    for cls in base.__subclasses__():
        if cls.__dict__.get("name") in SURROGATE_IDS:
            out[cls.name] = cls
        out.update(_builtins(cls))
    return out


#: name -> class, for :func:`get`, in kind_id order.
SURROGATES: Dict[str, Type[SurrogateFunction]] = dict(
    sorted(_builtins(SurrogateFunction).items(), key=lambda kv: SURROGATE_IDS[kv[0]])
)
_missing = set(SURROGATE_IDS) - set(SURROGATES)
if _missing:  # a kernel surrogate (csrc/kernels/surrogate.h) without its Python class
    raise ImportError(f"snn_cuda.surrogate: no class declares name = {sorted(_missing)}")

#: kind_id -> class.
KIND_IDS: Dict[int, Type[SurrogateFunction]] = {cls.kind_id: cls for cls in SURROGATES.values()}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")


_BY_NORMALIZED = {_normalize(n): cls for n, cls in SURROGATES.items()}


def get(surrogate: Union[str, SurrogateFunction, Type[SurrogateFunction]]) -> SurrogateFunction:
    """Resolve ``surrogate`` to a :class:`SurrogateFunction` instance.

    Accepts an instance (returned as is), a :class:`SurrogateFunction` subclass (instantiated
    with its defaults) or a name (case-insensitive; ``-`` and ``_`` optional): a key of
    :data:`SURROGATES` (``sigmoid``, ``atan``, ..., ``nonzero_sign_log_abs``). Anything else
    raises ``ValueError`` listing the valid names.
    """
    valid = ", ".join(repr(n) for n in SURROGATES)
    if isinstance(surrogate, SurrogateFunction):
        return surrogate
    if isinstance(surrogate, type) and issubclass(surrogate, SurrogateFunction):
        return surrogate()
    if isinstance(surrogate, str):
        cls = _BY_NORMALIZED.get(_normalize(surrogate))
        if cls is not None:
            return cls()
        raise ValueError(
            f"surrogate: unknown surrogate {surrogate!r}; valid names are {valid} (or a SurrogateFunction instance)"
        )
    raise ValueError(
        f"surrogate: expected a SurrogateFunction instance or one of the names {valid}, "
        f"got {type(surrogate).__name__} {surrogate!r}"
    )
