"""Adaptive LIF (Bittar & Garner 2022): the layer and its pure-PyTorch reference loop (math:
csrc/kernels/models/adlif.h)."""

from __future__ import annotations

import math
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
    _op_param,
    _shape_arg,
    _batch_major,
    _reference_input,
    _step_shape,
)
from ..reference import _check_x, _init_state, _param, _resolve_surrogate, state_dtype_for
from ._base import DeclaredLayer, _ranges, _state0

__all__ = ["AdLIF", "adlif_reference"]


def adlif_reference(
    x_seq: Tensor,
    u0: Optional[Union[Tensor, float]] = None,
    w0: Optional[Union[Tensor, float]] = None,
    s0: Optional[Union[Tensor, float]] = None,
    *,
    alpha,
    beta,
    a,
    b,
    threshold: float = 1.0,
    surrogate=None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Adaptive LIF, a plain loop of::

        w_t = beta * w_{t-1} + a * u_{t-1} + b * s_{t-1}
        u_t = alpha * (u_{t-1} - thr * s_{t-1}) + (1 - alpha) * (x_t - w_t)
        s_t = 1[u_t - thr > 0]                 (surrogate gradient at u_t - thr)

    ``alpha``, ``beta``, ``a``, ``b``: numbers or tensors broadcasting to one step's shape, used
    as given (the layer clamps them). States start at 0 unless given. Returns
    ``(spk_seq, u_seq, u_last, w_last, s_last)``.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    al = _param("alpha", alpha, dtype, device, rest)
    be = _param("beta", beta, dtype, device, rest)
    pa = _param("a", a, dtype, device, rest)
    pb = _param("b", b, dtype, device, rest)
    th = _param("threshold", threshold, dtype, device, rest)
    sgf = _resolve_surrogate(surrogate, sg.ATan)
    u = _init_state(u0, "u0", 0.0, rest, dtype, device)
    w = _init_state(w0, "w0", 0.0, rest, dtype, device)
    s = _init_state(s0, "s0", 0.0, rest, dtype, device)
    spikes, us = [], []
    for x in x_seq.to(dtype).unbind(0):
        w = be * w + pa * u + pb * s
        u = al * (u - th * s) + (1 - al) * (x - w)
        s = sgf.spike(u - th, strict=True)
        spikes.append(s)
        us.append(u)
    u, w, s = (t.expand(rest) for t in (u, w, s))
    if not spikes:
        return x_seq.new_empty(x_seq.shape), torch.empty(x_seq.shape, dtype=dtype, device=device), u, w, s
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(us), u, w, s


_ADLIF_CLAMP = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "a": (-1.0, 1.0), "b": (0.0, 2.0)}
# Bittar & Garner (2022)'s initialisation: decays from time constants of 5-25 (alpha) and
# 30-120 (beta) steps.
_ADLIF_INIT = {
    "alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
    "beta": (math.exp(-1 / 30), math.exp(-1 / 120)),
    "a": (-1.0, 1.0),
    "b": (0.0, 2.0),
}


class AdLIF(DeclaredLayer):
    """Adaptive LIF (Bittar & Garner 2022), per-neuron learnable alpha, beta, a and b::

        w_t = beta * w_{t-1} + a * u_{t-1} + b * s_{t-1}
        u_t = alpha * (u_{t-1} - thr * s_{t-1}) + (1 - alpha) * (x_t - w_t)
        s_t = 1[u_t - thr > 0]                  (surrogate gradient at u_t - thr)

    with u_0 = w_0 = s_0 = 0. `shape` is the feature shape of the parameters (int or tuple: the
    trailing dims of a step). The parameters are the nn.Parameters themselves (no
    reparameterisation) and follow `.to(dtype)`; in forward each is clamped with torch.clamp to
    `clamp` (default alpha, beta to [0, 1], a to [-1, 1], b to [0, 2]); `init` sets the uniform
    initialisation ranges (default Bittar & Garner's). Returns spikes; `return_states=True`
    returns `(spk, u_seq)`. The final `.u`, `.w`, `.s` are the state, so chunked calls equal one
    whole call. All four parameter gradients come from the fused backward as per-neuron sums
    over time (deterministic, no atomics).
    """

    _decl = MODELS["adlif"]

    def __init__(
        self,
        shape,
        threshold: float = 1.0,
        surrogate: sg.SurrogateFunction = None,
        clamp=None,
        init=None,
        return_states: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        shape = _shape_arg(shape)
        if shape is None:
            raise TypeError("shape must be an int or a tuple of ints (the feature shape of the parameters)")
        self.shape = shape
        self.threshold = _finite("threshold", threshold)
        self.clamp_ranges = _ranges("clamp", clamp, _ADLIF_CLAMP)
        self.init_ranges = _ranges("init", init, _ADLIF_INIT)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.ATan())
        self.return_states = bool(return_states)
        for name in ("alpha", "beta", "a", "b"):
            self.register_parameter(name, torch.nn.Parameter(torch.empty(shape)))
        self.reset_parameters()
        self.reset()

    def reset_parameters(self) -> None:
        """Draws alpha, beta, a and b uniformly from their `init` ranges (torch's generator)."""
        with torch.no_grad():
            for name, (lo, hi) in self.init_ranges.items():
                getattr(self, name).uniform_(lo, hi)

    def reset(self) -> None:
        self.u: Union[float, Tensor] = 0.0
        self.w: Union[float, Tensor] = 0.0
        self.s: Union[float, Tensor] = 0.0

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T, self.batch_first)
        ps = {}
        for name, (lo, hi) in self.clamp_ranges.items():
            p = getattr(self, name)
            ops.check_device(name, p, x)
            ps[name] = _op_param(p, rest, name).clamp(lo, hi)
        states = (self.u, self.w, self.s)
        names = ("the membrane u", "the adaptation w", "the spike state s")
        if self._use_fused(x, self.surrogate_function):
            params = pack_params(
                [ps["alpha"], ps["beta"], ps["a"], ps["b"], self.threshold], rest, ops.state_dtype(x.dtype), x.device
            )
            s0 = _state0(states, x, rest, names, (0.0, 0.0, 0.0))
            spikes, seq, last = model_multistep(
                "adlif",
                x.unsqueeze(0) if single else x,
                params,
                s0,
                variant=0,
                T=-1 if T is None else T,
                batch_first=self.batch_first and not single,
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                return_states=self.return_states,
            )
            u_seq = seq[0] if self.return_states else None
            u, w, s = last[0].clone(), last[1].clone(), last[2].clone()
        else:
            xs = _reference_input(x, single, T, self.batch_first)
            init = [_as_state(v, x, rest, n) if isinstance(v, Tensor) else _finite(n, v) for v, n in zip(states, names)]
            spikes, u_seq, u, w, s = adlif_reference(
                xs,
                *init,
                alpha=ps["alpha"],
                beta=ps["beta"],
                a=ps["a"],
                b=ps["b"],
                threshold=self.threshold,
                surrogate=self.surrogate_function,
            )
            spikes, u_seq = _batch_major(self.batch_first and not single, spikes, u_seq)
        self.u, self.w, self.s = u, w, s
        if single:
            return (spikes[0], u_seq[0]) if self.return_states else spikes[0]
        return (spikes, u_seq) if self.return_states else spikes

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, threshold={self.threshold}, surrogate={self.surrogate_function!r}, "
            f"return_states={self.return_states}, " + super().extra_repr()
        )
