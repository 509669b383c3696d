"""Multi-state neuron layers on the declared-model kernels (csrc/kernels/models/):
snnTorch `Synaptic` and SpikingJelly `CUBALIFNode` semantics."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from . import _ext, ops, reference
from . import surrogate as sg
from .model_ops import MODELS, model_multistep, pack_params
from .neuron import (
    MemoryModule,
    _warn_once,
    _as_state,
    _check_choice,
    _check_input,
    _finite,
    _op_param,
    _param_repr,
    _register_param,
    _shape_arg,
)

__all__ = ["Synaptic", "CUBALIF"]


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


class _DeclaredModule(MemoryModule):
    """A layer on the declared-model ops, which have compiled CPU and CUDA kernels but no CuPy
    path yet: where CUDA tensors would go to CuPy, they run the reference (with a warning)."""

    def _use_fused(self, x: Tensor, surrogate: sg.SurrogateFunction) -> bool:
        if x.device.type == "cuda" and self.backend != "torch":
            if self.backend == "cupy" or _ext.cuda_backend() == "cupy":
                reason = f"{type(self).__name__} has no CuPy kernels yet (it needs a CUDA build of snn_cuda)"
                if self.backend in ("fused", "cupy"):
                    raise RuntimeError(f"snn_cuda: backend={self.backend!r} cannot run here: {reason}")
                _warn_once(f"snn_cuda: falling back to the reference backend (slow): {reason}")
                return False
        return super()._use_fused(x, surrogate)


class Synaptic(_DeclaredModule):
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
        rest = tuple(x.shape) if (single or T is not None) else tuple(x.shape[1:])
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
            syn_last, mem_last = last[0], last[1]
        else:
            xs = x.unsqueeze(0) if single else (x.unsqueeze(0).expand(T, *x.shape) if T is not None else x)
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


class CUBALIF(_DeclaredModule):
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
        rest = tuple(x.shape) if (single or T is not None) else tuple(x.shape[1:])
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
            c_last, v_last = last[0], last[1]
        else:
            xs = x.unsqueeze(0) if single else (x.unsqueeze(0).expand(T, *x.shape) if T is not None else x)
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
