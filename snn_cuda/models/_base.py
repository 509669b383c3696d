"""What the declared-model layers share: the op's stacked initial state, the validation of
(low, high) ranges and DeclaredLayer (the step shape and the reference loops' input come from
snn_cuda.neuron, as for the one-state layers)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import ops
from ..neuron import MemoryModule, _as_state, _finite

# The final states are cloned out of the op's stacked [kStates, ...] tensor: a view of it could
# not be detached in place (snnTorch's truncated-BPTT helpers call .detach_() on the states).


def _state0(values, x: Tensor, rest: tuple, names, defaults) -> Optional[Tensor]:
    """The op's [kStates, ...] initial state, or None when every state starts at the model's
    own initial value (given as `defaults`)."""
    if all(not isinstance(v, Tensor) and float(v) == d for v, d in zip(values, defaults)):
        return None
    sdt = ops.state_dtype(x.dtype)
    rows = []
    for v, n in zip(values, names):
        t = _as_state(v, x, rest, n)
        rows.append(t if t is not None else torch.full(rest, _finite(n, v), dtype=sdt, device=x.device))
    return torch.stack([r.expand(rest) for r in rows])


def _ranges(name: str, given, defaults) -> dict:
    out = dict(defaults)
    if given is None:
        return out
    if not isinstance(given, dict):
        raise TypeError(f"{name} must be a dict of parameter name -> (low, high), got {type(given).__name__}")
    for k, v in given.items():
        if k not in defaults:
            raise ValueError(f"{name}: unknown parameter {k!r}; the parameters are {', '.join(defaults)}")
        try:
            lo, hi = (_finite(f"{name}[{k!r}] low", v[0]), _finite(f"{name}[{k!r}] high", v[1]))
        except (TypeError, IndexError):
            raise TypeError(f"{name}[{k!r}] must be a (low, high) pair, got {v!r}") from None
        if lo > hi:
            raise ValueError(f"{name}[{k!r}] must have low <= high, got ({lo}, {hi})")
        out[k] = (lo, hi)
    return out


class DeclaredLayer(MemoryModule):
    """What every declared-model layer shares: `detach()` of the states its declaration names
    (snnTorch's truncated-BPTT helpers and `functional.detach_net` call it) and the `surrogate`
    alias of `surrogate_function`."""

    _decl = None  # the ModelDecl of snn_cuda/_model_list.py, set by each layer

    @property
    def surrogate(self):
        return self.surrogate_function

    def detach(self) -> None:
        for name in self._decl.states:
            v = getattr(self, name)
            if isinstance(v, Tensor):
                setattr(self, name, v.detach())
