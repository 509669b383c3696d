"""snnTorch 1.0 `Synaptic`: the layer and its pure-PyTorch reference loop (one file per
declared model: its math is csrc/kernels/models/synaptic.h)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import ops
from .. import surrogate as sg
from ..model_ops import MODELS, model_multistep, pack_params, state_views
from ..neuron import (
    _as_state,
    _check_choice,
    _check_input,
    _finite,
    _op_param,
    _param_repr,
    _register_param,
    _shape_arg,
    _batch_major,
    _reference_input,
    _step_shape,
)
from ..reference import _RESET_MECHANISMS, _check_x, _init_state, _param, _resolve_surrogate, _scalar, state_dtype_for
from ..reference import _finite as _ref_finite  # the reference's checks: tensors and numpy scalars too
from ._base import DeclaredLayer, _state0

__all__ = ["Synaptic", "synaptic_reference"]


def _decay(name: str, value, dtype, device, shape) -> Tensor:
    """A decay factor: a fixed number in [0, 1], or a tensor clamped to [0, 1] (snnTorch)."""
    if isinstance(value, Tensor):
        return _param(name, value, dtype, device, shape).clamp(0, 1)
    v = _ref_finite(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {v!r}")
    return _scalar(v, dtype, device)


def synaptic_reference(
    x_seq: Tensor,
    syn0: Optional[Union[Tensor, float]] = None,
    mem0: Optional[Union[Tensor, float]] = None,
    *,
    alpha,
    beta,
    threshold=1.0,
    reset_mechanism: str = "subtract",
    surrogate=None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """snnTorch-compatible multi-step ``Synaptic`` (reset_delay=True)::

        syn_t = alpha syn_{t-1} + x_t
        mem_t = beta mem_{t-1} + syn_t - R_t threshold          (subtract)
              = base - base R_t,  base = beta mem_{t-1} + syn_t  (zero)
              = beta mem_{t-1} + syn_t                          (none)
        spk_t = 1[mem_t > threshold],  R_t = 1[mem_{t-1} > threshold] (no gradient)

    ``alpha`` / ``beta``: numbers in [0, 1], or tensors clamped to [0, 1]. Returns
    ``(spk_seq, syn_seq, mem_seq, syn_last, mem_last)``: spikes in x_seq's dtype, states in
    the state dtype.
    """
    _check_x(x_seq, "x_seq", 1)
    dtype = state_dtype_for(x_seq.dtype)
    device = x_seq.device
    rest = x_seq.shape[1:]
    if not isinstance(reset_mechanism, str) or reset_mechanism not in _RESET_MECHANISMS:
        raise ValueError(f"reset_mechanism must be one of {_RESET_MECHANISMS}, got {reset_mechanism!r}")
    a = _decay("alpha", alpha, dtype, device, rest)
    b = _decay("beta", beta, dtype, device, rest)
    th = _param("threshold", threshold, dtype, device, rest)
    sgf = _resolve_surrogate(surrogate, sg.ATan)
    syn = _init_state(syn0, "syn0", 0.0, rest, dtype, device)
    mem = _init_state(mem0, "mem0", 0.0, rest, dtype, device)
    spikes, syns, mems = [], [], []
    for x in x_seq.to(dtype).unbind(0):
        r = (mem - th > 0).to(dtype)
        syn = a * syn + x
        base = b * mem + syn
        if reset_mechanism == "subtract":
            mem = base - r * th
        elif reset_mechanism == "zero":
            mem = base - base * r
        else:
            mem = base
        spikes.append(sgf.spike(mem - th, strict=True))
        syns.append(syn)
        mems.append(mem)
    syn_last, mem_last = syn.expand(rest), mem.expand(rest)
    if not spikes:
        empty = torch.empty(x_seq.shape, dtype=dtype, device=device)
        return x_seq.new_empty(x_seq.shape), empty, empty.clone(), syn_last.clone(), mem_last.clone()
    return torch.stack(spikes).to(x_seq.dtype), torch.stack(syns), torch.stack(mems), syn_last, mem_last


class Synaptic(DeclaredLayer):
    """snnTorch 1.0 `Synaptic` (reset_delay=True), a current-based two-state neuron::

        syn_t = alpha syn_{t-1} + x_t
        mem_t = beta mem_{t-1} + syn_t - R_t threshold     (reset_mechanism="subtract")
        spk_t = 1[mem_t > threshold],  R_t = 1[mem_{t-1} > threshold] (detached)

    ("zero": mem_t = base - base R_t with base = beta mem_{t-1} + syn_t; "none": no reset.)

    Multi-step: `spk, syn, mem = layer(x_seq)` returns the three `[T, ...]` sequences
    (`return_states=False`: the spikes only, and no state sequence is ever materialised: the
    backward replays the steps from a checkpoint every 8 steps). `layer(x, T=n)` feeds the same
    input at n steps. Single step (`step_mode="s"`): `spk, syn, mem = layer(x, syn, mem)` as in
    snnTorch loops (`syn, mem = layer.reset_mem()` starts both at zero). The final states are
    kept in `.syn` and `.mem`.

    `learn_alpha` / `learn_beta` / `learn_threshold` make the parameter an `nn.Parameter`
    (scalar, or `param_shape`; tensor values give per-neuron parameters). A fixed alpha or beta
    must lie in [0, 1]; a learnable one is clamped to [0, 1] in forward (torch.clamp's gradient).
    Parameter gradients come from the fused backward as per-neuron sums over time, reduced in a
    fixed order (deterministic). Spikes are returned in x's dtype, states in the state dtype
    (float32 for 16-bit inputs, float64 for float64).
    """

    _decl = MODELS["synaptic"]

    def __init__(
        self,
        alpha,
        beta,
        threshold=1.0,
        reset_mechanism: str = "subtract",
        surrogate: sg.SurrogateFunction = None,
        learn_alpha: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        return_states: bool = True,
        step_mode: str = "m",
        backend: str = "auto",
        param_shape=None,
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        self.learn_alpha = bool(learn_alpha)
        self.learn_beta = bool(learn_beta)
        self.learn_threshold = bool(learn_threshold)
        self.return_states = bool(return_states)
        shape = _shape_arg(param_shape)
        _register_param(self, "alpha", alpha, self.learn_alpha, shape, low=0.0, high=1.0)
        _register_param(self, "beta", beta, self.learn_beta, shape, low=0.0, high=1.0)
        _register_param(self, "threshold", threshold, self.learn_threshold, shape)
        self.reset_mechanism = _check_choice("reset_mechanism", reset_mechanism, self._decl.variants)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.ATan())
        self.reset()

    def reset(self) -> None:
        self.syn: Union[float, Tensor] = 0.0
        self.mem: Union[float, Tensor] = 0.0

    def reset_mem(self):
        """snnTorch-style: zero both states and return them (`syn, mem = layer.reset_mem()`)."""
        self.reset()
        return 0.0, 0.0

    def init_synaptic(self):
        """snnTorch's older name of reset_mem()."""
        return self.reset_mem()

    def forward(self, x: Tensor, syn=None, mem=None, T: Optional[int] = None):
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T, self.batch_first)
        syn0 = self.syn if syn is None else syn
        mem0 = self.mem if mem is None else mem
        alpha, beta, th = self.alpha, self.beta, self.threshold
        for name, v in (("alpha", alpha), ("beta", beta), ("threshold", th)):
            ops.check_device(name, v if isinstance(v, Tensor) else None, x)
        if isinstance(alpha, Tensor):
            alpha = alpha.clamp(0, 1)
        if isinstance(beta, Tensor):
            beta = beta.clamp(0, 1)
        states = single or self.return_states
        if self._use_fused(x, self.surrogate_function):
            vals = [
                _op_param(v, rest, n) if isinstance(v, Tensor) else v
                for v, n in zip((alpha, beta, th), self._decl.params)
            ]
            params = pack_params(vals, rest, ops.state_dtype(x.dtype), x.device)
            s0 = _state0((syn0, mem0), x, rest, ("the synaptic current syn", "the membrane mem"), (0.0, 0.0))
            spikes, seq, last = model_multistep(
                "synaptic",
                x.unsqueeze(0) if single else x,
                params,
                s0,
                variant=self._decl.variants.index(self.reset_mechanism),
                T=-1 if T is None else T,
                batch_first=self.batch_first and not single,
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                return_states=states,
            )
            syn_seq, mem_seq = state_views(seq) if states else (None, None)
            syn_last, mem_last = last[0].clone(), last[1].clone()
        else:
            xs = _reference_input(x, single, T, self.batch_first)
            spikes, syn_seq, mem_seq, syn_last, mem_last = synaptic_reference(
                xs,
                _as_state(syn0, x, rest, "the synaptic current syn")
                if isinstance(syn0, Tensor)
                else _finite("syn", syn0),
                _as_state(mem0, x, rest, "the membrane mem") if isinstance(mem0, Tensor) else _finite("mem", mem0),
                alpha=alpha,
                beta=beta,
                threshold=th,
                reset_mechanism=self.reset_mechanism,
                surrogate=self.surrogate_function,
            )
            spikes, syn_seq, mem_seq = _batch_major(self.batch_first and not single, spikes, syn_seq, mem_seq)
        self.syn, self.mem = syn_last, mem_last
        if single:
            return spikes[0], syn_seq[0], mem_seq[0]
        if not self.return_states:
            return spikes
        return spikes, syn_seq, mem_seq

    def extra_repr(self) -> str:
        return (
            f"alpha={_param_repr(self.alpha)}, beta={_param_repr(self.beta)}, "
            f"threshold={_param_repr(self.threshold)}, reset_mechanism={self.reset_mechanism!r}, "
            f"surrogate={self.surrogate_function!r}, return_states={self.return_states}, " + super().extra_repr()
        )
