"""Quadratic integrate-and-fire (SpikingJelly 2.0 `QIFNode`): the layer and its pure-PyTorch
reference loop (math: csrc/kernels/models/qif.h)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import ops
from .. import surrogate as sg
from ..model_ops import MODELS, model_multistep, pack_params, state_views
from ..neuron import (
    _as_state,
    _check_input,
    _finite,
    _batch_major,
    _reference_input,
    _step_shape,
)
from ..reference import _check_x, _init_state, _resolve_surrogate, _scalar, state_dtype_for
from ..reference import _finite as _ref_finite  # the reference's checks: tensors and numpy scalars too
from ._base import DeclaredLayer, _state0

__all__ = ["QIF", "qif_reference"]


def qif_reference(
    x_seq: Tensor,
    v0: Optional[Union[Tensor, float]] = None,
    *,
    tau: float = 2.0,
    v_c: float = 0.8,
    a0: float = 1.0,
    v_threshold: float = 1.0,
    v_rest: float = 0.0,
    v_reset: Optional[float] = -0.1,
    surrogate=None,
    detach_reset: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """SpikingJelly-compatible multi-step ``QIFNode``::

        h_t = v_{t-1} + (x_t + a0 (v_{t-1} - v_rest) (v_{t-1} - v_c)) / tau
        s_t = Θ(h_t - v_threshold)                  (Θ(0) = 1)
        v_t = s_t v_reset + (1 - s_t) h_t           (hard reset)
            = h_t - s_t v_threshold                 (soft reset: v_reset=None)

    with ``v_0 = v_reset`` (0 under soft reset) unless given; ``detach_reset`` detaches s_t in
    the reset. ``surrogate`` defaults to ``Sigmoid()`` (SpikingJelly's default). Returns
    ``(spk_seq, v_seq, v_last)``.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    # 0-dim tensors on x's device: CUDA then divides by tau (a Python scalar divisor would be
    # turned into a multiply by its reciprocal, which SpikingJelly's formula does not round as).
    tau_t = _scalar(_ref_finite("tau", tau), dtype, device)
    a = _scalar(_ref_finite("a0", a0), dtype, device)
    vrest = _scalar(_ref_finite("v_rest", v_rest), dtype, device)
    vc = _scalar(_ref_finite("v_c", v_c), dtype, device)
    vth = _scalar(_ref_finite("v_threshold", v_threshold), dtype, device)
    vr = None if v_reset is None else _scalar(_ref_finite("v_reset", v_reset), dtype, device)
    sgf = _resolve_surrogate(surrogate, sg.Sigmoid)
    v = _init_state(v0, "v0", 0.0 if v_reset is None else float(v_reset), rest, dtype, device)
    spikes, vs = [], []
    for x in x_seq.to(dtype).unbind(0):
        h = v + (x + a * (v - vrest) * (v - vc)) / tau_t
        s = sgf.spike(h - vth, strict=False)
        sr = s.detach() if detach_reset else s
        v = h - sr * vth if vr is None else sr * vr + (1.0 - sr) * h
        spikes.append(s)
        vs.append(v)
    v_last = v.expand(rest)
    if not spikes:
        empty = torch.empty(x_seq.shape, dtype=dtype, device=device)
        return x_seq.new_empty(x_seq.shape), empty, v_last.clone()
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(vs), v_last


class QIF(DeclaredLayer):
    """SpikingJelly 2.0 `QIFNode`, the quadratic integrate-and-fire neuron::

        h_t = v_{t-1} + (x_t + a0 (v_{t-1} - v_rest) (v_{t-1} - v_c)) / tau
        s_t = Θ(h_t - v_threshold)                  (Θ(0) = 1)
        v_t = s_t v_reset + (1 - s_t) h_t           (hard reset)
            = h_t - s_t v_threshold                 (v_reset=None: soft reset)

    with v_0 = v_reset (0 under soft reset). SpikingJelly's constraints hold: tau > 1, a0 > 0
    and, under hard reset, v_threshold > v_reset and v_rest >= v_reset. `detach_reset`
    detaches s_t in the reset. The parameters are fixed numbers (no gradient). Returns spikes;
    `return_states=True` returns `(spk, v_seq)` (single step: `(spk, v)`). The final membrane
    is kept in `.v`; `functional.reset_net` resets it.
    """

    _decl = MODELS["qif"]

    def __init__(
        self,
        tau: float = 2.0,
        v_c: float = 0.8,
        a0: float = 1.0,
        v_threshold: float = 1.0,
        v_rest: float = 0.0,
        v_reset: Optional[float] = -0.1,
        surrogate: sg.SurrogateFunction = None,
        detach_reset: bool = False,
        return_states: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        self.tau = _finite("tau", tau)
        if not self.tau > 1.0:
            raise ValueError(f"tau must be > 1, got {self.tau}")
        self.v_c = _finite("v_c", v_c)
        self.a0 = _finite("a0", a0)
        if not self.a0 > 0.0:
            raise ValueError(f"a0 must be > 0, got {self.a0}")
        self.v_threshold = _finite("v_threshold", v_threshold)
        self.v_rest = _finite("v_rest", v_rest)
        self.v_reset = None if v_reset is None else _finite("v_reset", v_reset)
        if self.v_reset is not None:
            if not self.v_threshold > self.v_reset:
                raise ValueError(
                    f"v_threshold must be > v_reset under hard reset, got v_threshold={self.v_threshold}, "
                    f"v_reset={self.v_reset}"
                )
            if not self.v_rest >= self.v_reset:
                raise ValueError(
                    f"v_rest must be >= v_reset under hard reset, got v_rest={self.v_rest}, v_reset={self.v_reset}"
                )
        self.detach_reset = bool(detach_reset)
        self.return_states = bool(return_states)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.Sigmoid())
        self.reset()

    @property
    def v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def reset(self) -> None:
        self.v: Union[float, Tensor] = self.v_init

    def _param_values(self) -> list:
        """One value per declared parameter, in the declaration's order (pack_params' input)."""
        vr = 0.0 if self.v_reset is None else self.v_reset
        return [self.tau, self.a0, self.v_rest, self.v_c, self.v_threshold, vr]

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T, self.batch_first)
        states = self.return_states
        if self._use_fused(x, self.surrogate_function):
            params = pack_params(self._param_values(), rest, ops.state_dtype(x.dtype), x.device)
            s0 = _state0((self.v,), x, rest, ("the membrane v",), (self.v_init,))
            spikes, seq, last = model_multistep(
                "qif",
                x.unsqueeze(0) if single else x,
                params,
                s0,
                variant=self._decl.variants.index("soft" if self.v_reset is None else "hard"),
                T=-1 if T is None else T,
                batch_first=self.batch_first and not single,
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                detach_reset=self.detach_reset,
                return_states=states,
            )
            v_seq = state_views(seq)[0] if states else None
            v_last = last[0].clone()
        else:
            xs = _reference_input(x, single, T, self.batch_first)
            spikes, v_seq, v_last = qif_reference(
                xs,
                _as_state(self.v, x, rest, "the membrane v") if isinstance(self.v, Tensor) else self.v,
                tau=self.tau,
                v_c=self.v_c,
                a0=self.a0,
                v_threshold=self.v_threshold,
                v_rest=self.v_rest,
                v_reset=self.v_reset,
                surrogate=self.surrogate_function,
                detach_reset=self.detach_reset,
            )
            spikes, v_seq = _batch_major(self.batch_first and not single, spikes, v_seq)
        self.v = v_last
        if single:
            return (spikes[0], v_seq[0]) if states else spikes[0]
        return (spikes, v_seq) if states else spikes

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_threshold={self.v_threshold}, "
            f"v_rest={self.v_rest}, v_reset={self.v_reset}, surrogate={self.surrogate_function!r}, "
            f"detach_reset={self.detach_reset}, return_states={self.return_states}, " + super().extra_repr()
        )
