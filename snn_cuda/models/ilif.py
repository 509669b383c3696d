"""Integer LIF (SpikingJelly 2.0 `ILIFNode`): the layer and its pure-PyTorch reference loop
(math: csrc/kernels/models/ilif.h)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import ops
from .. import surrogate as sg
from ..model_ops import MODELS, model_multistep, pack_params
from ..neuron import (
    _as_state,
    _check_input,
    _finite,
    _batch_major,
    _reference_input,
    _step_shape,
)
from ..reference import _check_x, _init_state, _scalar, state_dtype_for
from ..reference import _finite as _ref_finite  # the reference's checks: tensors and numpy scalars too
from ._base import DeclaredLayer, _state0

__all__ = ["ILIF", "ilif_reference"]


def ilif_reference(
    x_seq: Tensor,
    v0: Optional[Union[Tensor, float]] = None,
    *,
    tau: float = 4.0 / 3.0,
    v_threshold: float = 1.0,
    max_spike_count: int = 4,
    grad_window: Optional[Tuple[float, float]] = None,
    detach_reset: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """SpikingJelly 2.0 ``ILIFNode`` (multi-step), integer spike counts::

        d   = 1 - 1/tau                      (in double, rounded to the state dtype)
        H_t = d * V_{t-1} + X_t
        C_t = round(clamp(H_t / v_threshold, 0, D))   (half to even)
        V_t = H_t - C_t * v_threshold        (C_t detached there if detach_reset)

    Backward: dC/d(H/v_threshold) = 1 on the closed ``grad_window`` (default [0, D]), else 0.
    Returns ``(counts in x's dtype, v_seq, v_last)``.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    D = float(max_spike_count)
    lo, hi = (0.0, D) if grad_window is None else (float(grad_window[0]), float(grad_window[1]))
    d = _scalar(1.0 - 1.0 / _ref_finite("tau", tau), dtype, device)
    vth = _scalar(_ref_finite("v_threshold", v_threshold), dtype, device)
    v = _init_state(v0, "v0", 0.0, rest, dtype, device)
    counts, vs = [], []
    for x in x_seq.to(dtype).unbind(0):
        h = d * v + x
        z = h / vth
        hard = z.clamp(0.0, D).round()
        window = ((z >= lo) & (z <= hi)).to(dtype)
        c = hard + window * (z - z.detach())  # the value of hard, the gradient of the window
        v = h - (c.detach() if detach_reset else c) * vth
        counts.append(c)
        vs.append(v)
    v = v.expand(rest)
    if not counts:
        return x_seq.new_empty(x_seq.shape), torch.empty(x_seq.shape, dtype=dtype, device=device), v
    return torch.stack(counts).to(x_seq.dtype), torch.stack(vs), v


class ILIF(DeclaredLayer):
    """Integer LIF (I-LIF, Luo et al., ECCV 2024), SpikingJelly 2.0 `ILIFNode` multi-step
    semantics, with V_0 = 0::

        d   = 1 - 1/tau                       (in double, rounded to the state dtype)
        H_t = d * V_{t-1} + X_t
        C_t = round(clamp(H_t / v_threshold, 0, D))   (round half to even, as torch.round)
        V_t = H_t - C_t * v_threshold         (C_t detached there if detach_reset)

    Returns the integer counts C_t in x's dtype; the final membrane is `.v` (fp32 for 16-bit
    inputs). Backward is the rectangular straight-through estimator: dC/d(H/v_threshold) = 1
    on the closed `grad_window` (default [0, D]), else 0. D = `max_spike_count`, an int in
    [1, 255].
    """

    _decl = MODELS["ilif"]

    def __init__(
        self,
        tau: float = 4.0 / 3.0,
        v_threshold: float = 1.0,
        max_spike_count: int = 4,
        grad_window=None,
        detach_reset: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        self.tau = _finite("tau", tau)
        if not self.tau > 1.0:
            raise ValueError(f"tau must be > 1, got {self.tau}")
        self.v_threshold = _finite("v_threshold", v_threshold)
        if not self.v_threshold > 0.0:
            raise ValueError(f"v_threshold must be > 0, got {self.v_threshold}")
        if isinstance(max_spike_count, bool) or not isinstance(max_spike_count, int):
            raise TypeError(f"max_spike_count must be an int, got {type(max_spike_count).__name__}")
        if not 1 <= max_spike_count <= 255:
            raise ValueError(f"max_spike_count must be in [1, 255], got {max_spike_count}")
        self.max_spike_count = max_spike_count
        if grad_window is None:
            grad_window = (0.0, float(max_spike_count))
        try:
            lo, hi = _finite("grad_window low", grad_window[0]), _finite("grad_window high", grad_window[1])
        except (TypeError, IndexError):
            raise TypeError(f"grad_window must be a (low, high) pair, got {grad_window!r}") from None
        if lo > hi:
            raise ValueError(f"grad_window must have low <= high, got ({lo}, {hi})")
        self.grad_window = (lo, hi)
        self.detach_reset = bool(detach_reset)
        self.reset()

    def reset(self) -> None:
        self.v: Union[float, Tensor] = 0.0

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T, self.batch_first)
        # StraightThrough only stands in for "no surrogate": the count's gradient is the window.
        if self._use_fused(x, sg.StraightThrough()):
            vals = [1.0 - 1.0 / self.tau, self.v_threshold, float(self.max_spike_count), *self.grad_window]
            params = pack_params(vals, rest, ops.state_dtype(x.dtype), x.device)
            s0 = _state0((self.v,), x, rest, ("the membrane v",), (0.0,))
            counts, _, last = model_multistep(
                "ilif",
                x.unsqueeze(0) if single else x,
                params,
                s0,
                variant=0,
                T=-1 if T is None else T,
                batch_first=self.batch_first and not single,
                surrogate_id=sg.StraightThrough.kind_id,
                detach_reset=self.detach_reset,
            )
            v = last[0].clone()
        else:
            xs = _reference_input(x, single, T, self.batch_first)
            v0 = _as_state(self.v, x, rest, "the membrane v") if isinstance(self.v, Tensor) else self.v
            counts, _, v = ilif_reference(
                xs,
                v0,
                tau=self.tau,
                v_threshold=self.v_threshold,
                max_spike_count=self.max_spike_count,
                grad_window=self.grad_window,
                detach_reset=self.detach_reset,
            )
            counts = _batch_major(self.batch_first and not single, counts)
        self.v = v
        return counts[0] if single else counts

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, max_spike_count={self.max_spike_count}, "
            f"grad_window={self.grad_window}, detach_reset={self.detach_reset}, " + super().extra_repr()
        )
