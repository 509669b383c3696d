"""Spiking neuron layers: LIF and IF (SpikingJelly semantics), Leaky
(snnTorch semantics), each multi-step (`[T, B, ...]`) or single-step.

The membrane state lives in plain attributes (`.v`, `.mem`), never in
parameters or buffers: it is not in `state_dict`, DDP never broadcasts it,
and `functional.reset_net` clears it between batches.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional, Union

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import is_fake
from torch.nn import functional as F

from . import _ext, model_ops, ops, reference
from . import surrogate as sg

BACKENDS = ("auto", "fused", "torch", "cupy")
STEP_MODES = ("s", "m")

_warned: set = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class MemoryModule(nn.Module):
    """Base of the stateful layers: step mode, backend choice, sequence layout, state reset.

    `batch_first=True` (multi-step only, as in `torch.nn.RNN`): sequences are `[B, T, ...]`,
    in and out, read and written in place by the fused kernels (no permute or copy); the
    final states stay `[B, ...]`. Single-step calls ignore it."""

    def __init__(self, step_mode: str = "m", backend: str = "auto", batch_first: bool = False):
        super().__init__()
        self.step_mode = _check_choice("step_mode", step_mode, STEP_MODES)
        self.backend = _check_choice("backend", backend, BACKENDS)
        if not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool, got {type(batch_first).__name__}")
        self.batch_first = batch_first

    # -- state ---------------------------------------------------------------
    def reset(self) -> None:  # overridden
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Sets the tensor parameters and buffers (learnable or per-neuron values) back to the
        values the layer was built with: after `to_empty()` (a model built on the meta device
        and materialised later), their storage holds no values until this runs."""
        _reset_params(self)

    def detach(self) -> None:  # overridden: cut the graph for truncated BPTT
        raise NotImplementedError

    # -- backend selection ---------------------------------------------------
    def _use_fused(self, x: Tensor, surrogate: sg.SurrogateFunction) -> bool:
        """True to run the fused op; False for the reference loop. 'auto' warns
        once per reason when it falls back; 'fused' raises instead. On CUDA the
        fused op runs the compiled kernels, else the CuPy-compiled ones;
        'cupy' forces the latter (raising when CuPy or a GPU is missing)."""
        backend = self.backend
        if backend == "torch":
            return False
        reason = ""
        if x.dtype not in ops.FUSED_DTYPES:
            reason = f"dtype {x.dtype} has no fused kernel (float32/float64/float16/bfloat16 do)"
        elif surrogate.kind_id is None:
            reason = f"the Python-defined surrogate {type(surrogate).__name__} runs on the reference backend only"
        elif x.device.type == "meta":
            # No data: the ops' fake kernels give the shapes, whichever kernels would compute.
            reason = ops.unavailable_reason("meta")
        elif backend == "cupy":
            reason = _ext.cupy_unavailable_reason(x.device.type)
        else:
            reason = ops.unavailable_reason(x.device.type, x, backend)
        if not reason:
            return True
        if backend in ("fused", "cupy"):
            raise RuntimeError(f"snn_cuda: backend={backend!r} cannot run here: {reason}")
        _warn_once(f"snn_cuda: falling back to the reference backend (slow): {reason}")
        return False

    def extra_repr(self) -> str:
        bf = ", batch_first=True" if self.batch_first else ""
        return f"step_mode={self.step_mode!r}, backend={self.backend!r}{bf}"


def _as_state(v, x: Tensor, rest, name: str) -> Optional[Tensor]:
    """The stored state as a tensor for the op (None when it is still the
    scalar initial value)."""
    if v is None or not isinstance(v, Tensor):
        return None
    if tuple(v.shape) != tuple(rest):
        if v.dim() == 0 or v.numel() == 1:
            v = v.reshape(()).expand(rest)
        else:
            raise ValueError(
                f"{name} has shape {tuple(v.shape)} but the input needs {tuple(rest)}: "
                "call snn_cuda.functional.reset_net(model) between batches of different shapes"
            )
    if v.device != x.device:
        raise ValueError(f"{name} is on {v.device} but the input is on {x.device}")
    return v.to(ops.state_dtype(x.dtype))


def _check_input(x, step_mode: str, T: Optional[int], batch_first: bool = False) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if T is not None:
        if step_mode != "m":
            raise ValueError("T (constant input over T steps) is only accepted in step_mode='m'")
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
    elif step_mode == "m" and batch_first and x.dim() < 2:
        raise ValueError(f"x must be [B, T, ...] in step_mode='m' with batch_first=True, got shape {tuple(x.shape)}")
    elif step_mode == "m" and batch_first and x.shape[1] < 1:
        raise ValueError(f"x must have at least one time step (dim 1 with batch_first), got shape {tuple(x.shape)}")
    elif step_mode == "m" and x.dim() < 1:
        raise ValueError("x must have a leading time dimension [T, ...] in step_mode='m', got a 0-d tensor")
    elif step_mode == "m" and x.shape[0] < 1:
        raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")


_STORAGE = {"auto": None, "h": ops.SAVE_H, "checkpoint": ops.SAVE_CKPT}


def _step_shape(x: Tensor, single: bool, T: Optional[int], batch_first: bool = False) -> tuple:
    """The shape of one step, [B, ...]: x itself for a single step or a constant input (T=n)."""
    if single or T is not None:
        return tuple(x.shape)
    return (x.shape[0], *x.shape[2:]) if batch_first else tuple(x.shape[1:])


def _reference_input(x: Tensor, single: bool, T: Optional[int], batch_first: bool = False) -> Tensor:
    """x as the reference loops take it, [T, ...] (a batch-first sequence transposed, a view)."""
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


def _shape_arg(param_shape) -> Optional[tuple]:
    if param_shape is None:
        return None
    if isinstance(param_shape, int):
        param_shape = (param_shape,)
    try:
        shape = tuple(int(d) for d in param_shape)
    except (TypeError, ValueError):
        raise TypeError(f"param_shape must be a tuple of ints, got {param_shape!r}") from None
    if any(d < 1 for d in shape):
        raise ValueError(f"param_shape must have positive sizes, got {shape}")
    return shape


def _host_data(t: Tensor) -> bool:
    """Whether t's values can be read for free: a real tensor in host memory. Meta tensors have
    none, fake tensors (FakeTensorMode, tracing) only pretend to, and reading a GPU tensor
    synchronises with the device."""
    return t.device.type == "cpu" and not is_fake(t)


def _register_param(
    module: nn.Module,
    name: str,
    value,
    learn: bool,
    param_shape: Optional[tuple],
    low: Optional[float] = None,
    high: Optional[float] = None,
) -> None:
    """Sets `name` on the module as a float (a fixed scalar: the fastest kernels), a buffer (a
    fixed tensor, e.g. per neuron) or an nn.Parameter (learn=True). Tensors are float32
    unless given as float64, shaped `param_shape` when given, and must broadcast to one
    sample's feature dims (x.shape[2:] multi-step, x.shape[1:] single-step). Fixed values
    must lie in [low, high].

    Validation never reads a device's data: Python numbers are checked here; a tensor value is
    checked by dtype and shape, and by value only when it lives in host memory (free). The
    initial value is kept for reset_parameters()."""
    if isinstance(value, Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a float or a floating tensor, got dtype {value.dtype}")
        # Kept as given (as snnTorch does: a tensor that requires grad still gets its
        # gradient as a buffer); float32 unless float64.
        t = value if value.dtype in (torch.float32, torch.float64) else value.float()
        init = None
    else:
        v = _finite(name, value)
        if not learn and ((low is not None and v < low) or (high is not None and v > high)):
            raise ValueError(f"{name} must be in [{low}, {high}], got {v}")
        if not learn and param_shape is None:
            setattr(module, name, v)
            return
        t = torch.tensor(v, dtype=torch.float32)
        init = v
    if param_shape is not None and tuple(t.shape) != param_shape:
        try:
            t = t.expand(param_shape).clone()
        except RuntimeError:
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast to param_shape {param_shape}"
            ) from None
    if isinstance(value, Tensor):
        if _host_data(t):
            if not bool(torch.isfinite(t.detach()).all()):
                raise ValueError(f"{name} must be finite")
            if not (learn or t.requires_grad) and (
                (low is not None and bool((t < low).any())) or (high is not None and bool((t > high).any()))
            ):
                raise ValueError(f"{name} must be in [{low}, {high}]")
        # A meta tensor has no values to restore (reset_parameters then says so).
        init = None if t.is_meta else t.detach().clone()
    if learn:
        module.register_parameter(name, nn.Parameter(t.detach()))
    else:
        module.register_buffer(name, t)
    if "_param_init" not in module.__dict__:
        module._param_init = {}
    module._param_init[name] = init


def _reset_params(module: nn.Module) -> None:
    for name, init in module.__dict__.get("_param_init", {}).items():
        t = getattr(module, name)
        if init is None:
            raise RuntimeError(
                f"{type(module).__name__}.reset_parameters: {name} was given as a tensor without values "
                f"(meta); set {name} by hand after to_empty()"
            )
        with torch.no_grad():
            if isinstance(init, float):
                t.fill_(init)
            else:
                t.copy_(init)


def _op_param(t: Optional[Tensor], rest: tuple, name: str) -> Optional[Tensor]:
    """A tensor parameter as the fused op takes it: one element, or exactly the trailing
    dims of a step (broadcast dims expanded here; autograd sums them back)."""
    if t is None:
        return None
    if t.numel() == 1:
        return t.reshape(())
    d = t.dim()
    target = tuple(rest[len(rest) - d :]) if d <= len(rest) else None
    try:
        ok = target is not None and torch.broadcast_shapes(tuple(t.shape), target) == target
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the per-neuron dims of the "
            f"input (a step has shape {tuple(rest)})"
        )
    return t if tuple(t.shape) == target else t.expand(target)


def _param_repr(v) -> str:
    if isinstance(v, nn.Parameter):
        if v.dim():
            return f"learnable{tuple(v.shape)}"
        # The value only where reading it is free (not meta, fake or on a GPU).
        return f"learnable({v.item():.4g})" if _host_data(v) else f"learnable(on {v.device.type})"
    if isinstance(v, Tensor):
        return f"tensor{tuple(v.shape)}"
    return repr(v)


class _LIFBase(MemoryModule):
    _model = ops.MODEL_LIF
    # What the fused forward keeps for the backward: "auto" (the device's
    # default, ops.DEFAULT_SAVE_MODE), "h" (every charged potential) or
    # "checkpoint" (a membrane every 8 steps; the backward re-reads the input,
    # so it saves memory when the input is kept alive anyway).
    backward_storage = "auto"

    def __init__(
        self,
        *,
        tau,
        decay_input,
        v_threshold,
        v_reset,
        surrogate,
        detach_reset,
        step_mode,
        backend,
        store_v_seq,
        v_floor,
        learn_threshold=False,
        param_shape=None,
        batch_first=False,
    ):
        super().__init__(step_mode, backend, batch_first)
        if self._model != ops.MODEL_PLIF:
            self.tau = tau
        self.decay_input = bool(decay_input)
        self.learn_threshold = bool(learn_threshold)
        _register_param(self, "v_threshold", v_threshold, self.learn_threshold, _shape_arg(param_shape))
        self.v_reset = None if v_reset is None else _finite("v_reset", v_reset)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.Sigmoid())
        self.detach_reset = bool(detach_reset)
        self.store_v_seq = bool(store_v_seq)
        self.v_floor = None if v_floor is None else _finite("v_floor", v_floor)
        self.reset()

    # SpikingJelly calls it surrogate_function; `surrogate` reads better.
    @property
    def surrogate(self) -> sg.SurrogateFunction:
        return self.surrogate_function

    @property
    def v_init(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset

    def reset(self) -> None:
        self.v: Union[float, Tensor] = self.v_init
        self.v_seq: Optional[Tensor] = None

    def _decay_tensor(self) -> Optional[Tensor]:
        return None  # ParametricLIF: k = sigmoid(w)

    def detach(self) -> None:
        if isinstance(self.v, Tensor):
            self.v = self.v.detach()

    def forward(self, x: Tensor, T: Optional[int] = None) -> Tensor:
        return self._forward(x, T, None)

    def _forward(self, x: Tensor, T: Optional[int], readout) -> Tensor:
        # readout: (weight, bias) of a Linear applied to the spikes (NeuronLinear).
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        bf = self.batch_first and not single
        rest = _step_shape(x, single, T, bf)
        v0 = _as_state(self.v, x, rest, "the membrane state v")
        v_init = self.v if not isinstance(self.v, Tensor) else self.v_init
        th = self.v_threshold
        th_t = th if isinstance(th, Tensor) else None
        ops.check_device("v_threshold", th_t, x)
        if self._model == ops.MODEL_PLIF:
            ops.check_device("w", self.w, x)
        k = self._decay_tensor()
        if self._use_fused(x, self.surrogate_function):
            spikes, _, v_seq, v_last = ops.neuron_multistep(
                x.unsqueeze(0) if single else x,
                v0,
                T=-1 if T is None else T,
                model=self._model,
                reset=ops.RESET_SOFT if self.v_reset is None else ops.RESET_HARD,
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                tau=self.tau if self._model == ops.MODEL_LIF else 2.0,
                v_threshold=1.0 if th_t is not None else th,
                v_reset=0.0 if self.v_reset is None else self.v_reset,
                v_floor=self.v_floor,
                v_init=v_init,
                decay_input=self.decay_input,
                detach_reset=self.detach_reset,
                store_v_seq=self.store_v_seq and not single,
                save_mode=_STORAGE[_check_choice("backward_storage", self.backward_storage, tuple(_STORAGE))],
                decay_param=_op_param(k, rest, "w"),
                threshold_param=_op_param(th_t, rest, "v_threshold"),
                readout=readout,
                batch_first=bf,
            )
        else:
            xs = _reference_input(x, single, T, bf)
            spikes, v_seq, v_last = reference.lif_reference(
                xs,
                v0 if v0 is not None else v_init,
                model={ops.MODEL_LIF: "lif", ops.MODEL_IF: "if", ops.MODEL_PLIF: "plif"}[self._model],
                tau=self.tau if self._model == ops.MODEL_LIF else 2.0,
                decay_input=self.decay_input,
                v_threshold=th,
                v_reset=self.v_reset,
                surrogate=self.surrogate_function,
                detach_reset=self.detach_reset,
                v_floor=self.v_floor,
                k=k,
            )
            spikes, v_seq = _batch_major(bf, spikes, v_seq)
            if readout is not None:
                spikes = F.linear(spikes, *readout)
        self.v = v_last
        if single:
            return spikes[0]
        if self.store_v_seq:
            self.v_seq = v_seq
        return spikes

    def extra_repr(self) -> str:
        parts = []
        if self._model == ops.MODEL_LIF:
            parts += [f"tau={self.tau}", f"decay_input={self.decay_input}"]
        elif self._model == ops.MODEL_PLIF:
            parts += [f"w={_param_repr(self.w)}", f"decay_input={self.decay_input}"]
        parts += [f"v_threshold={_param_repr(self.v_threshold)}", f"v_reset={self.v_reset}"]
        if self.v_floor is not None:
            parts.append(f"v_floor={self.v_floor}")
        parts += [f"detach_reset={self.detach_reset}", f"surrogate={self.surrogate_function!r}"]
        if self.store_v_seq:
            parts.append("store_v_seq=True")
        return ", ".join(parts) + ", " + super().extra_repr()


class LIF(_LIFBase):
    """Leaky integrate-and-fire neuron, SpikingJelly `LIFNode` semantics.

    Multi-step (`step_mode="m"`): `[T, B, ...]` -> spikes `[T, B, ...]`, or
    `layer(x, T=n)` for the same `[B, ...]` input at every step. The final
    membrane is kept in `.v` (state dtype: fp32 for 16-bit inputs), the
    sequence in `.v_seq` when `store_v_seq`. Single-step (`step_mode="s"`):
    one `[B, ...]` step per call, state carried between calls.

    `learn_threshold=True` makes `v_threshold` an `nn.Parameter` (scalar, or
    `param_shape`, e.g. `(C, 1, 1)` per channel or the feature shape per
    neuron; a tensor `v_threshold` sets per-neuron values). Its gradient comes
    from the fused backward, deterministically.
    """

    _model = ops.MODEL_LIF

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: sg.SurrogateFunction = None,
        detach_reset: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
        learn_threshold: bool = False,
        param_shape=None,
        batch_first: bool = False,
    ):
        tau = _finite("tau", tau)
        if not tau > 1.0:
            raise ValueError(f"tau must be > 1, got {tau}")
        super().__init__(
            tau=tau,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
            v_floor=None,
            learn_threshold=learn_threshold,
            param_shape=param_shape,
            batch_first=batch_first,
        )


class IF(_LIFBase):
    """Integrate-and-fire neuron, SpikingJelly `IFNode` semantics, plus an
    optional floor on the charged potential (`v_floor`, the rectified IF of
    the from-scratch surrogate-gradient tutorial). See `LIF` for the call forms."""

    _model = ops.MODEL_IF

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: sg.SurrogateFunction = None,
        detach_reset: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
        v_floor: Optional[float] = None,
        learn_threshold: bool = False,
        param_shape=None,
        batch_first: bool = False,
    ):
        super().__init__(
            tau=2.0,
            decay_input=True,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
            v_floor=v_floor,
            learn_threshold=learn_threshold,
            param_shape=param_shape,
            batch_first=batch_first,
        )


class ParametricLIF(_LIFBase):
    """LIF with a learnable membrane time constant, SpikingJelly `ParametricLIFNode`
    semantics (Fang et al. 2021): 1/tau = k = sigmoid(w), `w` an `nn.Parameter`
    initialised to -log(init_tau - 1), and the charge multiplies by k:

        H = V + (X - (V - V_reset)) * k        (decay_input=True)
        H = V - (V - V_reset) * k + X          (decay_input=False)

    `w` is one scalar per layer by default; `param_shape` makes it per channel
    (`(C, 1, 1)`) or per neuron (the feature shape), as recent papers do.
    `learn_threshold=True` learns `v_threshold` too (same shape). The
    gradients of `w` and `v_threshold` come from the fused backward kernel as
    per-neuron sums over time, reduced in a fixed order (bitwise
    deterministic). Call forms as `LIF`.
    """

    _model = ops.MODEL_PLIF

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: Optional[float] = 0.0,
        surrogate: sg.SurrogateFunction = None,
        detach_reset: bool = False,
        step_mode: str = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
        learn_threshold: bool = False,
        param_shape=None,
        batch_first: bool = False,
    ):
        init_tau = _finite("init_tau", init_tau)
        if not init_tau > 1.0:
            raise ValueError(f"init_tau must be > 1, got {init_tau}")
        super().__init__(
            tau=None,
            decay_input=decay_input,
            v_threshold=v_threshold,
            v_reset=v_reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
            v_floor=None,
            learn_threshold=learn_threshold,
            param_shape=param_shape,
            batch_first=batch_first,
        )
        shape = _shape_arg(param_shape) or ()
        self._w_init = -math.log(init_tau - 1.0)
        self.w = nn.Parameter(torch.full(shape, self._w_init, dtype=torch.float32))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.w.fill_(self._w_init)

    @property
    def tau(self) -> Tensor:
        """The current time constant 1 / sigmoid(w) (no gradient)."""
        return 1.0 / self.w.detach().sigmoid()

    def _decay_tensor(self) -> Optional[Tensor]:
        return self.w.sigmoid()


_LEAKY = model_ops.MODELS["leaky"]


def _leaky_params(beta, threshold, rest: tuple, x: Tensor) -> Tensor:
    """The Leaky declaration's [2, P] parameters (beta, threshold): numbers, or tensors of one
    element or of the trailing dims of a step."""
    vals = [_op_param(v, rest, n) if isinstance(v, Tensor) else v for v, n in zip((beta, threshold), _LEAKY.params)]
    return model_ops.pack_params(vals, rest, ops.state_dtype(x.dtype), x.device)


def _leaky_state0(u0: Optional[Tensor], u_init: float, rest: tuple, x: Tensor) -> Optional[Tensor]:
    """The op's [1, ...] initial membrane: None for the declaration's own zero."""
    if u0 is not None:
        return u0.expand(rest).unsqueeze(0)
    if u_init == 0.0:
        return None
    return torch.full((1, *rest), u_init, dtype=ops.state_dtype(x.dtype), device=x.device)


class Leaky(MemoryModule):
    """snnTorch `Leaky` (reset_delay=True): U_t = beta U_{t-1} + X_t - R_t threshold.

    Multi-step: `spk_seq, mem_seq = layer(x_seq)` (or `layer(x, T=n)`);
    the final membrane is kept in `.mem`. Single-step: `spk, mem = layer(x)`
    or, as in snnTorch loops, `spk, mem = layer(x, mem)` with the membrane
    passed explicitly (`mem = layer.init_leaky()` starts it at zero).

    `return_mem=False` (multi-step): the layer returns the spike sequence
    only and never materialises the membrane sequence; the fused backward then
    rebuilds it from a checkpoint every 8 steps and the input (for a hidden
    layer whose membrane feeds no loss: less memory and traffic).

    `learn_beta` / `learn_threshold` (snnTorch's switches) make `beta` /
    `threshold` `nn.Parameter`s (scalar, or `param_shape`; tensor values give
    per-neuron parameters as in snnTorch); a learnable beta is clamped to
    [0, 1] in forward. Their gradients come from the fused backward kernel as
    per-neuron sums over time, reduced in a fixed order (deterministic).
    """

    _decl = _LEAKY  # its fused path: the declared model (snn_cuda.check finds the layer by it)

    def __init__(
        self,
        beta,
        threshold=1.0,
        reset_mechanism: str = "subtract",
        surrogate: sg.SurrogateFunction = None,
        step_mode: str = "m",
        backend: str = "auto",
        return_mem: bool = True,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        param_shape=None,
        batch_first: bool = False,
    ):
        super().__init__(step_mode, backend, batch_first)
        self.return_mem = bool(return_mem)
        self.learn_beta = bool(learn_beta)
        self.learn_threshold = bool(learn_threshold)
        shape = _shape_arg(param_shape)
        # A fixed beta must lie in [0, 1]; a learnable one is clamped in forward (snnTorch).
        _register_param(self, "beta", beta, self.learn_beta, shape, low=0.0, high=1.0)
        _register_param(self, "threshold", threshold, self.learn_threshold, shape)
        self.reset_mechanism = _check_choice("reset_mechanism", reset_mechanism, _LEAKY.variants)
        self.surrogate_function = sg.get(surrogate if surrogate is not None else sg.ATan())
        self.reset()

    @property
    def surrogate(self) -> sg.SurrogateFunction:
        return self.surrogate_function

    def reset(self) -> None:
        self.mem: Union[float, Tensor] = 0.0

    def init_leaky(self) -> float:
        """snnTorch-style: the initial membrane to pass as `mem` (zero)."""
        self.reset()
        return 0.0

    def detach(self) -> None:
        if isinstance(self.mem, Tensor):
            self.mem = self.mem.detach()

    def forward(self, x: Tensor, mem: Union[None, float, Tensor] = None, T: Optional[int] = None):
        return self._forward(x, mem, T, None)

    def _forward(self, x: Tensor, mem, T: Optional[int], readout):
        # readout: (weight, bias) of a Linear applied to the spikes (NeuronLinear),
        # which then is the only output.
        _check_input(x, self.step_mode, T, self.batch_first)
        single = self.step_mode == "s"
        bf = self.batch_first and not single
        rest = _step_shape(x, single, T, bf)
        state = self.mem if mem is None else mem
        u0 = _as_state(state, x, rest, "the membrane mem")
        u_init = 0.0 if isinstance(state, Tensor) else _finite("mem", state)
        beta, th = self.beta, self.threshold
        ops.check_device("beta", beta if isinstance(beta, Tensor) else None, x)
        ops.check_device("threshold", th if isinstance(th, Tensor) else None, x)
        if isinstance(beta, Tensor):
            beta = beta.clamp(0, 1)
        mem_out = readout is None and (single or self.return_mem)
        if self._use_fused(x, self.surrogate_function):
            # The declared model (csrc/kernels/models/leaky.h). Without a membrane output the
            # backward replays from a checkpoint every 8 steps: 1/8 of a membrane sequence.
            spikes, seq, last = model_ops.model_multistep(
                "leaky",
                x.unsqueeze(0) if single else x,
                _leaky_params(beta, th, rest, x),
                _leaky_state0(u0, u_init, rest, x),
                variant=_LEAKY.variants.index(self.reset_mechanism),
                T=-1 if T is None else T,
                surrogate_id=self.surrogate_function.kind_id,
                surrogate_param=self.surrogate_function.param,
                return_states=mem_out,
                batch_first=bf,
                readout=readout,
            )
            mem_seq = model_ops.state_views(seq)[0] if mem_out else seq
            # Cloned out of the op's [1, ...] tensor: a view could not be detached in place
            # (snnTorch's truncated-BPTT helpers call .detach_() on it).
            mem_last = last[0].clone()
        else:
            xs = _reference_input(x, single, T, bf)
            spikes, mem_seq, mem_last = reference.leaky_reference(
                xs,
                u0 if u0 is not None else u_init,
                beta=beta,
                threshold=th,
                reset_mechanism=self.reset_mechanism,
                surrogate=self.surrogate_function,
            )
            spikes, mem_seq = _batch_major(bf, spikes, mem_seq)
            if readout is not None:
                spikes = F.linear(spikes, *readout)
        self.mem = mem_last
        if readout is not None:
            return spikes[0] if single else spikes
        if single:
            return spikes[0], mem_seq[0]
        if not self.return_mem:
            return spikes
        return spikes, mem_seq

    def extra_repr(self) -> str:
        return (
            f"beta={_param_repr(self.beta)}, threshold={_param_repr(self.threshold)}, "
            f"reset_mechanism={self.reset_mechanism!r}, "
            f"surrogate={self.surrogate_function!r}, " + super().extra_repr()
        )


class NeuronLinear(nn.Module):
    """A spiking neuron layer followed by a Linear layer, `linear(neuron(x))`,
    with the spikes between them kept as one byte each.

    The fused path never materialises the spikes as floats: the neuron kernel
    writes 0/1 bytes, `spike_linear` multiplies them (a spike times a weight is
    exact, so only the summation order differs from `nn.Linear`), and the
    weight gradient reads the same bytes. For a hidden layer of N neurons over
    T steps that removes 4 bytes written, 4 read and the separate compact save
    per neuron-step; the backward rebuilds the neuron state from its own
    saved values (Leaky: a checkpoint every 8 steps).

        hidden = snn_cuda.NeuronLinear(snn_cuda.Leaky(beta=0.95), snn_cuda.SpikeLinear(1000, 10))
        y = hidden(cur, T=25)          # [T, B, 10]; or hidden(x_seq) for [T, B, 1000]

    Parameters and state stay on the two modules (`neuron.*`, `linear.*` in
    `state_dict`; the membrane in `neuron.v` / `neuron.mem`, reset by
    `functional.reset_net`). Only the Linear output is returned: a Leaky's
    membrane sequence and a LIF's `store_v_seq` are not produced. The reference
    backend (`backend="torch"` on the neuron, or a fallback) computes
    `F.linear(neuron(x), ...)` step by step with the same results.

    With `snn_cuda.ILIF` the spikes are integer counts 0..D (D = max_spike_count <= 255),
    kept as one byte each the same way: the ILIF kernel writes them in x's dtype (a transient
    float tensor, freed after the layer; a LIF kernel writes bytes directly), they are narrowed to
    uint8 (on the CPU with the range and integrality check of `counts_to_uint8`, on CUDA
    unchecked: the ILIF kernel guarantees them), multiplied as counts (`spike_linear(...,
    counts=True)` for up to 40 outputs on the CPU, else `F.linear` on the float counts), and the
    bytes are what backward keeps: the weight gradient reads them. The gradient to x flows
    through ILIF's straight-through backward, as for `linear(ILIF(x))`.
    """

    def __init__(self, neuron: nn.Module, linear: nn.Linear):
        super().__init__()
        from .multistate import ILIF  # multistate imports this module

        if not isinstance(neuron, (_LIFBase, Leaky, ILIF)):
            raise TypeError(
                f"neuron must be a snn_cuda LIF, IF, ParametricLIF, Leaky or ILIF layer, got {type(neuron).__name__}"
            )
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear (or snn_cuda.SpikeLinear), got {type(linear).__name__}")
        if neuron.batch_first:
            raise ValueError(
                "NeuronLinear needs a time-major neuron (batch_first=False): its fused readout is [T, ...]"
            )
        self.neuron = neuron
        self.linear = linear

    def forward(self, x: Tensor, T: Optional[int] = None) -> Tensor:
        if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[-1] != self.linear.in_features:
            raise ValueError(
                f"x has {x.shape[-1]} features in its last dim but linear expects in_features={self.linear.in_features}"
            )
        if isinstance(x, Tensor):
            ops.check_device("linear.weight", self.linear.weight, x)
            ops.check_device("linear.bias", self.linear.bias, x)
        if not isinstance(self.neuron, (_LIFBase, Leaky)):  # ILIF
            return self._counts_forward(x, T)
        readout = (self.linear.weight, self.linear.bias)
        if isinstance(self.neuron, Leaky):
            return self.neuron._forward(x, None, T, readout)
        return self.neuron._forward(x, T, readout)

    def _counts_forward(self, x: Tensor, T: Optional[int]) -> Tensor:
        from .layers import _SpikeLinearFn

        counts = self.neuron(x, T=T)
        lin = self.linear
        if (
            torch.is_grad_enabled()
            and (counts.requires_grad or lin.weight.requires_grad)
            and counts.dtype in ops.FUSED_DTYPES
        ):
            return _SpikeLinearFn.apply(counts, lin.weight, lin.bias, self.neuron.max_spike_count, True)
        return F.linear(counts, lin.weight, lin.bias)


class SynapticCurrent(MemoryModule):
    """First-order synaptic current c_t = decay * c_{t-1} + x_t (the
    from-scratch surrogate-gradient tutorial's synapse, decay = exp(-dt/tau_syn)).

    Multi-step: `[T, B, ...]` -> currents `[T, B, ...]` in the state dtype,
    final current kept in `.c`. Fused, it is the Leaky kernel without reset,
    whose spike output is ignored.
    """

    def __init__(self, decay: float, step_mode: str = "m", backend: str = "auto", batch_first: bool = False):
        super().__init__(step_mode, backend, batch_first)
        decay = _finite("decay", decay)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.reset()

    def reset(self) -> None:
        self.c: Union[float, Tensor] = 0.0

    def detach(self) -> None:
        if isinstance(self.c, Tensor):
            self.c = self.c.detach()

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.step_mode, None, self.batch_first)
        single = self.step_mode == "s"
        bf = self.batch_first and not single
        xs = x.unsqueeze(0) if single else x
        rest = _step_shape(x, single, None, bf)
        c0 = _as_state(self.c, x, rest, "the synaptic current c")
        c_init = 0.0 if isinstance(self.c, Tensor) else float(self.c)
        if self._use_fused(x, sg.StraightThrough()):
            _, seq, last = model_ops.model_multistep(
                "leaky",
                xs,
                _leaky_params(self.decay, 1.0, rest, x),
                _leaky_state0(c0, c_init, rest, x),
                variant=_LEAKY.variants.index("none"),
                surrogate_id=sg.StraightThrough.kind_id,
                return_states=True,
                batch_first=bf,
            )
            c_seq, c_last = model_ops.state_views(seq)[0], last[0].clone()
        else:
            _, c_seq, c_last = reference.leaky_reference(
                _reference_input(x, single, None, bf),
                c0 if c0 is not None else c_init,
                beta=self.decay,
                reset_mechanism="none",
                surrogate=sg.StraightThrough(),
            )
            c_seq = _batch_major(bf, c_seq)
        self.c = c_last
        return c_seq[0] if single else c_seq

    def extra_repr(self) -> str:
        return f"decay={self.decay}, " + super().extra_repr()
