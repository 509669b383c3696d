"""Multi-state neuron layers on the declared-model kernels (csrc/kernels/models/):
snnTorch `Synaptic` and SpikingJelly `CUBALIFNode` semantics."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from . import ops, reference
from . import surrogate as sg
from .model_ops import MODELS, model_multistep, pack_params
from .neuron import (
    MemoryModule,
    _as_state,
    _check_choice,
    _check_input,
    _finite,
    _op_param,
    _param_repr,
    _register_param,
    _shape_arg,
)

__all__ = ["Synaptic", "CUBALIF", "AdLIF", "ILIF"]


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


def _step_shape(x: Tensor, single: bool, T: Optional[int]) -> tuple:
    """The shape of one step: x itself in single-step mode or for a constant input (T=n)."""
    return tuple(x.shape) if (single or T is not None) else tuple(x.shape[1:])


def _reference_input(x: Tensor, single: bool, T: Optional[int]) -> Tensor:
    """x as the reference loops take it, [T, ...]."""
    if single:
        return x.unsqueeze(0)
    return x.unsqueeze(0).expand(T, *x.shape) if T is not None else x


class Synaptic(MemoryModule):
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
    ):
        super().__init__(step_mode, backend)
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

    @property
    def surrogate(self) -> sg.SurrogateFunction:
        return self.surrogate_function

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

    def detach(self) -> None:
        for name in ("syn", "mem"):
            v = getattr(self, name)
            if isinstance(v, Tensor):
                setattr(self, name, v.detach())

    def forward(self, x: Tensor, syn=None, mem=None, T: Optional[int] = None):
        _check_input(x, self.step_mode, T)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T)
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
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                return_states=states,
            )
            syn_seq, mem_seq = (seq[0], seq[1]) if states else (None, None)
            syn_last, mem_last = last[0].clone(), last[1].clone()
        else:
            xs = _reference_input(x, single, T)
            spikes, syn_seq, mem_seq, syn_last, mem_last = reference.synaptic_reference(
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


class CUBALIF(MemoryModule):
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
    ):
        super().__init__(step_mode, backend)
        self.c_decay = _finite("c_decay", c_decay)
        self.v_decay = _finite("v_decay", v_decay)
        self.v_threshold = _finite("v_threshold", v_threshold)
        self.v_reset = None if v_reset is None else _finite("v_reset", v_reset)
        self.detach_reset = bool(detach_reset)
        self.return_states = bool(return_states)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.Rect())
        self.reset()

    @property
    def surrogate(self) -> sg.SurrogateFunction:
        return self.surrogate_function

    @property
    def v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def reset(self) -> None:
        self.c: Union[float, Tensor] = 0.0
        self.v: Union[float, Tensor] = self.v_init

    def detach(self) -> None:
        for name in ("c", "v"):
            v = getattr(self, name)
            if isinstance(v, Tensor):
                setattr(self, name, v.detach())

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T)
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
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                detach_reset=self.detach_reset,
                return_states=states,
            )
            c_seq, v_seq = (seq[0], seq[1]) if states else (None, None)
            c_last, v_last = last[0].clone(), last[1].clone()
        else:
            xs = _reference_input(x, single, T)
            spikes, c_seq, v_seq, c_last, v_last = reference.cuba_lif_reference(
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


_ADLIF_CLAMP = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "a": (-1.0, 1.0), "b": (0.0, 2.0)}
# Bittar & Garner (2022)'s initialisation: decays from time constants of 5-25 (alpha) and
# 30-120 (beta) steps.
_ADLIF_INIT = {
    "alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
    "beta": (math.exp(-1 / 30), math.exp(-1 / 120)),
    "a": (-1.0, 1.0),
    "b": (0.0, 2.0),
}


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


class AdLIF(MemoryModule):
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
    ):
        super().__init__(step_mode, backend)
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

    @property
    def surrogate(self) -> sg.SurrogateFunction:
        return self.surrogate_function

    def reset_parameters(self) -> None:
        """Draws alpha, beta, a and b uniformly from their `init` ranges (torch's generator)."""
        with torch.no_grad():
            for name, (lo, hi) in self.init_ranges.items():
                getattr(self, name).uniform_(lo, hi)

    def reset(self) -> None:
        self.u: Union[float, Tensor] = 0.0
        self.w: Union[float, Tensor] = 0.0
        self.s: Union[float, Tensor] = 0.0

    def detach(self) -> None:
        for name in ("u", "w", "s"):
            v = getattr(self, name)
            if isinstance(v, Tensor):
                setattr(self, name, v.detach())

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T)
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
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                return_states=self.return_states,
            )
            u_seq = seq[0] if self.return_states else None
            u, w, s = last[0].clone(), last[1].clone(), last[2].clone()
        else:
            xs = _reference_input(x, single, T)
            init = [_as_state(v, x, rest, n) if isinstance(v, Tensor) else _finite(n, v) for v, n in zip(states, names)]
            spikes, u_seq, u, w, s = reference.adlif_reference(
                xs,
                *init,
                alpha=ps["alpha"],
                beta=ps["beta"],
                a=ps["a"],
                b=ps["b"],
                threshold=self.threshold,
                surrogate=self.surrogate_function,
            )
        self.u, self.w, self.s = u, w, s
        if single:
            return (spikes[0], u_seq[0]) if self.return_states else spikes[0]
        return (spikes, u_seq) if self.return_states else spikes

    def extra_repr(self) -> str:
        return (
            f"shape={self.shape}, threshold={self.threshold}, surrogate={self.surrogate_function!r}, "
            f"return_states={self.return_states}, " + super().extra_repr()
        )


class ILIF(MemoryModule):
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
    ):
        super().__init__(step_mode, backend)
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

    def detach(self) -> None:
        if isinstance(self.v, Tensor):
            self.v = self.v.detach()

    def forward(self, x: Tensor, T: Optional[int] = None):
        _check_input(x, self.step_mode, T)
        single = self.step_mode == "s"
        rest = _step_shape(x, single, T)
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
                surrogate_id=sg.StraightThrough.kind_id,
                detach_reset=self.detach_reset,
            )
            v = last[0].clone()
        else:
            xs = _reference_input(x, single, T)
            v0 = _as_state(self.v, x, rest, "the membrane v") if isinstance(self.v, Tensor) else self.v
            counts, _, v = reference.ilif_reference(
                xs,
                v0,
                tau=self.tau,
                v_threshold=self.v_threshold,
                max_spike_count=self.max_spike_count,
                grad_window=self.grad_window,
                detach_reset=self.detach_reset,
            )
        self.v = v
        return counts[0] if single else counts

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, v_threshold={self.v_threshold}, max_spike_count={self.max_spike_count}, "
            f"grad_window={self.grad_window}, detach_reset={self.detach_reset}, " + super().extra_repr()
        )
