"""What the declared-model layers share: the op's stacked initial state, the step shape, the
reference loops' input, and the validation of (low, high) ranges."""

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


def _step_shape(x: Tensor, single: bool, T: Optional[int], batch_first: bool = False) -> tuple:
    """The shape of one step: x itself in single-step mode or for a constant input (T=n);
    [B, ...] of a batch-first [B, T, ...] sequence."""
    if single or T is not None:
        return tuple(x.shape)
    return (x.shape[0], *x.shape[2:]) if batch_first else tuple(x.shape[1:])


def _reference_input(x: Tensor, single: bool, T: Optional[int], batch_first: bool = False) -> Tensor:
    """x as the reference loops take it, [T, ...] (a batch-first sequence transposed)."""
    if single:
        return x.unsqueeze(0)
    if T is not None:
        return x.unsqueeze(0).expand(T, *x.shape)
    return x.transpose(0, 1) if batch_first else x


def _batch_major(batch_first: bool, *seqs):
    """The reference loops' [T, B, ...] sequences as the layer returns them: [B, T, ...] when
    batch_first (a single tensor comes back alone)."""
    out = tuple(t.transpose(0, 1) if (batch_first and t is not None) else t for t in seqs)
    return out[0] if len(out) == 1 else out


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
