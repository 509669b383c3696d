"""SpikingJelly 2.0 `CUBALIFNode`: the layer and its pure-PyTorch reference loop (math:
csrc/kernels/models/cuba_lif.h)."""

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

__all__ = ["CUBALIF", "cuba_lif_reference"]


def cuba_lif_reference(
    x_seq: Tensor,
    c0: Optional[Union[Tensor, float]] = None,
    v0: Optional[Union[Tensor, float]] = None,
    *,
    c_decay: float = 0.5,
    v_decay: float = 0.75,
    v_threshold: float = 0.5,
    v_reset: Optional[float] = 0.0,
    surrogate=None,
    detach_reset: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """SpikingJelly-compatible multi-step ``CUBALIFNode``::

        c_t = c_{t-1} c_decay + x_t
        h_t = v_{t-1} v_decay + c_t
        s_t = Θ(h_t - v_threshold)                  (Θ(0) = 1)
        v_t = s_t v_reset + (1 - s_t) h_t           (hard reset)
            = h_t - s_t v_threshold                 (soft reset: v_reset=None)

    with ``c_0 = 0`` and ``v_0 = v_reset`` (0 under soft reset) unless given; ``detach_reset``
    detaches s_t in the reset. ``surrogate`` defaults to ``Rect()``. Returns
    ``(spk_seq, c_seq, v_seq, c_last, v_last)``.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    cd = _scalar(_ref_finite("c_decay", c_decay), dtype, device)
    vd = _scalar(_ref_finite("v_decay", v_decay), dtype, device)
    vth = _scalar(_ref_finite("v_threshold", v_threshold), dtype, device)
    vr = None if v_reset is None else _scalar(_ref_finite("v_reset", v_reset), dtype, device)
    sgf = _resolve_surrogate(surrogate, sg.Rect)
    c = _init_state(c0, "c0", 0.0, rest, dtype, device)
    v = _init_state(v0, "v0", 0.0 if v_reset is None else float(v_reset), rest, dtype, device)
    spikes, cs, vs = [], [], []
    for x in x_seq.to(dtype).unbind(0):
        c = c * cd + x
        h = v * vd + c
        s = sgf.spike(h - vth, strict=False)
        sr = s.detach() if detach_reset else s
        v = h - sr * vth if vr is None else sr * vr + (1.0 - sr) * h
        spikes.append(s)
        cs.append(c)
        vs.append(v)
    c_last, v_last = c.expand(rest), v.expand(rest)
    if not spikes:
        empty = torch.empty(x_seq.shape, dtype=dtype, device=device)
        return x_seq.new_empty(x_seq.shape), empty, empty.clone(), c_last.clone(), v_last.clone()
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(cs), torch.stack(vs), c_last, v_last


class CUBALIF(DeclaredLayer):
    """SpikingJelly 2.0 `CUBALIFNode`, the current-based LIF neuron::

        c_t = c_{t-1} c_decay + x_t
        h_t = v_{t-1} v_decay + c_t
        s_t = Θ(h_t - v_threshold)                  (Θ(0) = 1)
        v_t = s_t v_reset + (1 - s_t) h_t           (hard reset)
            = h_t - s_t v_threshold                 (v_reset=None: soft reset)

    with c_0 = 0 and v_0 = v_reset (0 under soft reset). `detach_reset` detaches s_t in the
    reset. Returns spikes; `return_states=True` returns `(spk, c_seq, v_seq)` (single step:
    `(spk, c, v)`). The final states are kept in `.c` and `.v`; `functional.reset_net` resets
    them.
    """

    _decl = MODELS["cuba_lif"]

    def __init__(
        self,
        c_decay: float = 0.5,
        v_decay: float = 0.75,
        v_threshold: float = 0.5,
        v_reset: Optional[float] = 0.0,
        surrogate: sg.SurrogateFunction = None,
        detach_reset: bool = False,
        return_states: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        self.c_decay = _finite("c_decay", c_decay)
        self.v_decay = _finite("v_decay", v_decay)
        self.v_threshold = _finite("v_threshold", v_threshold)
        self.v_reset = None if v_reset is None else _finite("v_reset", v_reset)
        self.detach_reset = bool(detach_reset)
        self.return_states = bool(return_states)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.Rect())
        self.reset()

    @property
    def v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def reset(self) -> None:
        self.c: Union[float, Tensor] = 0.0
        self.v: Union[float, Tensor] = self.v_init

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T, self.batch_first)
        states = self.return_states
        if self._use_fused(x, self.surrogate_function):
            vr = 0.0 if self.v_reset is None else self.v_reset
            params = pack_params(
                [self.c_decay, self.v_decay, self.v_threshold, vr], rest, ops.state_dtype(x.dtype), x.device
            )
            s0 = _state0((self.c, self.v), x, rest, ("the current c", "the membrane v"), (0.0, self.v_init))
            spikes, seq, last = model_multistep(
                "cuba_lif",
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
            c_seq, v_seq = state_views(seq) if states else (None, None)
            c_last, v_last = last[0].clone(), last[1].clone()
        else:
            xs = _reference_input(x, single, T, self.batch_first)
            spikes, c_seq, v_seq, c_last, v_last = cuba_lif_reference(
                xs,
                _as_state(self.c, x, rest, "the current c") if isinstance(self.c, Tensor) else self.c,
                _as_state(self.v, x, rest, "the membrane v") if isinstance(self.v, Tensor) else self.v,
                c_decay=self.c_decay,
                v_decay=self.v_decay,
                v_threshold=self.v_threshold,
                v_reset=self.v_reset,
                surrogate=self.surrogate_function,
                detach_reset=self.detach_reset,
            )
            spikes, c_seq, v_seq = _batch_major(self.batch_first and not single, spikes, c_seq, v_seq)
        self.c, self.v = c_last, v_last
        if single:
            return (spikes[0], c_seq[0], v_seq[0]) if states else spikes[0]
        return (spikes, c_seq, v_seq) if states else spikes

    def extra_repr(self) -> str:
        return (
            f"c_decay={self.c_decay}, v_decay={self.v_decay}, v_threshold={self.v_threshold}, "
            f"v_reset={self.v_reset}, surrogate={self.surrogate_function!r}, detach_reset={self.detach_reset}, "
            f"return_states={self.return_states}, " + super().extra_repr()
        )
