"""Swap SpikingJelly / snnTorch neurons in an existing model for snn_cuda's.

    report = snn_cuda.convert(model)                 # in place; report.model is model
    report = snn_cuda.convert(model, inplace=False)  # on a deep copy: report.model
    print(report)                                    # what was converted, what was left and why

What is converted (exact classes only; a subclass is left alone):

* SpikingJelly 2.0 ``neuron.IFNode`` / ``neuron.LIFNode`` / ``neuron.ParametricLIFNode`` ->
  :class:`SpikingJellyIF` / :class:`SpikingJellyLIF` / :class:`SpikingJellyParametricLIF`,
  subclasses of ``snn_cuda.IF`` / ``snn_cuda.LIF`` / ``snn_cuda.ParametricLIF`` that keep
  SpikingJelly's call conventions: the step mode of the original node, state in ``.v``
  (``.v_seq`` with ``store_v_seq``, in both step modes), the state restarted when the input
  shape changes, and they are also ``spikingjelly.activation_based.base.MemoryModule``
  instances, so ``spikingjelly.activation_based.functional.reset_net`` / ``detach_net`` /
  ``set_step_mode`` treat them as their own (``convert`` clears SpikingJelly's reset-module
  cache of every module of the model, so a ``reset_net`` called before conversion does not
  keep resetting the old nodes). ``ParametricLIFNode``'s learnable ``w`` (1/tau = sigmoid(w))
  is carried over as the same ``nn.Parameter`` object (state_dict key ``w``; scalar, or any
  per-neuron shape a user gave it), so an optimiser built before conversion keeps training
  it. Surrogates: SpikingJelly ``Sigmoid``, ``ATan``, ``PiecewiseQuadratic``, ``PiecewiseExp``,
  ``SoftSign``, ``Erf``, ``Rect``, ``NonzeroSignLogAbs`` with their ``alpha`` and
  ``spiking=True`` (the gradient of each equals snn_cuda's, checked by the tests).
* snnTorch 1.0 ``Leaky`` -> :class:`SnnTorchLeaky`, a subclass of ``snntorch.Leaky`` that runs
  a single-step ``snn_cuda.Leaky`` (kept as its child ``neuron``). Same call forms
  (``spk, mem = lif(x, mem)``, ``mem = lif.init_leaky()``, ``init_hidden``, ``output``),
  same ``state_dict`` keys in the same order (``threshold``, ``graded_spikes_factor``,
  ``reset_mechanism_val``, ``beta``: buffers, or Parameters with ``learn_beta`` /
  ``learn_threshold``), and it is registered in ``SpikingNeuron.instances``, so
  ``snntorch.utils.reset(net)`` resets it exactly when it would reset the original.
  ``beta`` / ``threshold`` may be scalars or per-neuron tensors (e.g. ``(C, 1, 1)`` per
  channel; they must broadcast to one step's trailing dims without enlarging it), fixed or
  learnable: learnable ones are the source's own ``nn.Parameter`` objects (registered on the
  converted module only; the child reads them at every forward), so an optimiser built
  before conversion keeps training them; fixed per-neuron ones are copied buffers.
  Surrogates: ``snntorch.surrogate.atan(alpha)``, ``fast_sigmoid(slope)``, ``sigmoid(slope)``
  and ``straight_through_estimator()`` (recognised by their code object and closure values).
* snnTorch 1.0 ``Synaptic`` -> :class:`SnnTorchSynaptic`, a subclass of ``snntorch.Synaptic``
  that runs a single-step ``snn_cuda.Synaptic`` (child ``neuron``), built like
  ``SnnTorchLeaky``: same call forms (``spk, syn, mem = lif(x, syn, mem)``,
  ``syn, mem = lif.reset_mem()`` / ``init_synaptic()``, ``init_hidden``, ``output``), same
  ``state_dict`` keys in the same order (``threshold``, ``graded_spikes_factor``,
  ``reset_mechanism_val``, ``beta``, ``alpha``), the source's own ``nn.Parameter`` objects for
  a learnable ``alpha`` / ``beta`` / ``threshold`` (scalar or per-neuron; fixed per-neuron
  values are copied buffers), the states in ``.syn`` / ``.mem`` (tensors of their own, so
  ``Synaptic.detach_hidden()`` and ``SpikingNeuron.detach(syn, mem)`` detach them in place),
  registered in ``SpikingNeuron.instances`` (``snntorch.utils.reset`` resets it). ``alpha`` is
  clamped into [0, 1] like ``beta`` (below). Same surrogates as for ``Leaky``.
* SpikingJelly 2.0 ``neuron.CUBALIFNode`` -> :class:`SpikingJellyCUBALIF`, a subclass of
  ``snn_cuda.CUBALIF`` and of SpikingJelly's ``MemoryModule``: ``c_decay``, ``v_decay``,
  ``v_threshold``, ``v_reset`` (``None``: soft reset), the surrogate (as above), and the
  ``detach_reset`` / ``step_mode`` / ``store_v_seq`` attributes (``CUBALIFNode.__init__`` takes
  none of them: they are read from the node, whatever set them); returns spikes, states in
  ``.c`` / ``.v`` (``.v_seq`` with ``store_v_seq``), both restarted when the input shape
  changes. The node has no parameters or buffers: its state_dict (empty) is unchanged.
* SpikingJelly 2.0 ``neuron.ILIFNode`` -> :class:`SpikingJellyILIF`, a subclass of
  ``snn_cuda.ILIF`` and of SpikingJelly's ``MemoryModule``: ``tau``, ``v_threshold``, and from
  the node's ``surrogate_function`` (a ``MultiLevelSpikeCount``) the count limit D
  (``max_spike_count``) and the gradient window (``grad_min``, ``grad_max``); the
  ``detach_reset`` / ``step_mode`` / ``store_v_seq`` attributes as the node has them. Returns
  the integer counts, state in ``.v`` (``.v_seq`` with ``store_v_seq``, in both step modes),
  restarted when the input shape changes. No parameters or buffers: the (empty) state_dict is
  unchanged. SpikingJelly's multi-step path charges ``H = (1 - 1/tau) V + X``, its single-step
  path ``H = V - V/tau + X``; snn_cuda computes the former in both step modes, so single-step
  membranes differ from SpikingJelly's in the last bits (and a count could differ where
  ``H / v_threshold`` lies within those bits of a rounding tie or of the gradient window's
  edges).

* Legacy SpikingJelly nodes in an already-built model (e.g. built with ``backend='cupy'`` where
  CuPy worked): 0.0.0.0.12 ``spikingjelly.clock_driven.neuron`` ``IFNode`` / ``LIFNode`` /
  ``ParametricLIFNode`` and their ``MultiStep*`` classes, 0.0.0.0.14
  ``spikingjelly.activation_based.neuron`` ``IFNode`` / ``LIFNode`` / ``ParametricLIFNode`` ->
  plain ``snn_cuda.IF`` / ``snn_cuda.LIF`` / ``snn_cuda.ParametricLIF``. They are recognised by
  module path, class name and attributes, without importing SpikingJelly. Step mode: ``'m'``
  for the ``MultiStep*`` classes, ``'s'`` for 0.0.0.0.12's single-step ones, the node's own for
  0.0.0.0.14; ``store_v_seq`` for the ``MultiStep*`` classes (they always keep ``v_seq``) or as
  the 0.0.0.0.14 node has it; ``w`` is the same ``nn.Parameter`` (state_dict key ``w``); the
  running ``v`` is carried over. Those versions' ``functional.reset_net`` calls ``reset()`` on
  any module that has one, so it resets the converted neurons (their ``set_step_mode`` does not
  reach them: use ``snn_cuda.functional.set_step_mode``). Same surrogates as above. To keep the
  SpikingJelly modules themselves, use ``snn_cuda.compat.patch_spikingjelly()`` instead (it also
  reproduces two float32 roundings of those versions' ParametricLIF without ``decay_input``,
  which the converted ParametricLIF, computing in the input's dtype, does not: the report says so).

Never converted (left unchanged, with the reason in the report): snnTorch
``learn_graded_spikes_factor`` and ``graded_spikes_factor != 1`` (snn_cuda's spikes are 0/1),
``surrogate_disable``, ``inhibition``, ``state_quant``, ``reset_delay=False``, non-finite
``beta`` / ``threshold`` / ``w`` / ``alpha``, any other surrogate (custom functions or classes,
SpikingJelly ``spiking=False``), SpikingJelly ``LIFNode`` with ``tau <= 1``, per-neuron
(tensor) or non-finite ``c_decay`` / ``v_decay`` of a ``CUBALIFNode``, an ``ILIFNode`` whose
``surrogate_function`` is not an exact ``MultiLevelSpikeCount`` (or has ``spiking=False``),
with ``max_spike_count`` above 255, a non-finite gradient window, ``tau <= 1``,
``v_threshold <= 0`` or a ``v_reset`` set (I-LIF resets by subtraction only), a node with a
neuron precision policy or extra memories, modules with extra parameters / buffers or hooks,
and subclasses of the supported classes.

snnTorch clamps ``beta`` into [0, 1] at every step; so do the converted modules (a fixed
scalar beta outside that range is converted to the clamped value, the ``beta`` buffer keeps the
original value for the state_dict, and the report notes it; a tensor beta is clamped in
forward, with the clamp's gradient, as snnTorch does).

Parity (tests: python_tests/test_convert.py, python_tests/test_convert_multistate.py,
python_tests/test_convert_adaptive.py): spikes (I-LIF: counts) bit-identical, membranes and
gradients (inputs and every learnable parameter) equal to rounding, in float32 and float64. With 16-bit inputs SpikingJelly's CPU path keeps a 16-bit
membrane where snn_cuda keeps float32: results then differ by 16-bit rounding (not
bit-identical); snnTorch computes spike gradients in float32 even for float64 inputs (and its
``Synaptic`` / ``Leaky`` reset by subtraction forms ``reset * threshold`` in float32).

The converted modules keep the source's step mode (SpikingJelly) or are single-step
(snnTorch): the model's own forward code runs unchanged. To use the multi-step kernels
over a whole sequence, change the model's forward and call
``snn_cuda.functional.set_step_mode`` on the converted SpikingJelly nodes yourself.
State reset: ``snn_cuda.functional.reset_net(model)`` resets every converted neuron too.
"""

from __future__ import annotations

import copy
import inspect
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from . import ops, reference
from . import surrogate as sg
from .model_ops import model_multistep, pack_params, state_views
from .models._base import _state0
from .multistate import CUBALIF, ILIF, Synaptic
from .neuron import IF, LIF, BACKENDS, Leaky, ParametricLIF, _as_state, _check_choice, _check_input

__all__ = [
    "convert",
    "ConversionReport",
    "SpikingJellyIF",
    "SpikingJellyLIF",
    "SpikingJellyParametricLIF",
    "SpikingJellyCUBALIF",
    "SpikingJellyILIF",
    "SnnTorchLeaky",
    "SnnTorchSynaptic",
]


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------
@dataclass
class ConversionReport:
    """What :func:`convert` did. ``converted``: (name, source class, new class, note);
    ``skipped``: (name, source class, reason). ``model``: the converted model (the input
    itself when ``inplace=True``, unless the root module itself was a neuron)."""

    model: nn.Module = None
    converted: List[Tuple[str, str, str, str]] = field(default_factory=list)
    skipped: List[Tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"snn_cuda.convert: {len(self.converted)} converted, {len(self.skipped)} left unchanged"]
        for name, src, dst, note in self.converted:
            lines.append(f"  converted {name or '<root>'}: {src} -> {dst}" + (f" ({note})" if note else ""))
        for name, src, reason in self.skipped:
            lines.append(f"  left      {name or '<root>'}: {src}: {reason}")
        return "\n".join(lines)

    __repr__ = __str__


class _Skip(Exception):
    pass


def _real(value, what: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise _Skip(f"per-neuron (non-scalar) {what}: not supported")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Skip(f"{what} of type {type(value).__name__}: not supported")
    value = float(value)
    if not math.isfinite(value):
        raise _Skip(f"non-finite {what}: not supported")
    return value


def _no_hooks(m: nn.Module) -> None:
    for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
        if getattr(m, attr, None):
            raise _Skip("the module has hooks registered: not converted")
    for attr in ("forward", "reset"):
        if attr in m.__dict__:
            raise _Skip(f"the instance overrides {attr}(): not converted")


# ---------------------------------------------------------------------------------------
# SpikingJelly
# ---------------------------------------------------------------------------------------
_SJ_SURROGATES = {
    "Sigmoid": sg.Sigmoid,
    "ATan": sg.ATan,
    "PiecewiseQuadratic": sg.PiecewiseQuadratic,
    "PiecewiseExp": sg.PiecewiseExp,
    "SoftSign": sg.SoftSign,
    "Erf": sg.Erf,
    "Rect": sg.Rect,
    "NonzeroSignLogAbs": sg.NonzeroSignLogAbs,
}


def _sj_surrogate(f) -> sg.SurrogateFunction:
    from spikingjelly.activation_based import surrogate as sjs

    name = type(f).__name__
    cls = _SJ_SURROGATES.get(name)
    if cls is None or type(f) is not getattr(sjs, name, None):
        raise _Skip(f"surrogate {type(f).__module__}.{type(f).__qualname__}: not supported")
    if not getattr(f, "spiking", True):
        raise _Skip(f"surrogate {name} with spiking=False: not supported")
    alpha = _real(getattr(f, "alpha"), f"surrogate {name} alpha")
    if alpha <= 0:
        raise _Skip(f"surrogate {name} alpha={alpha} <= 0: not supported")
    return cls(alpha)


class _SJMixin:
    """SpikingJelly call conventions on top of snn_cuda.IF / snn_cuda.LIF."""

    def forward(self, x: Tensor, T: Optional[int] = None) -> Tensor:
        v = self.v
        if isinstance(v, Tensor) and isinstance(x, Tensor):
            rest = x.shape if (self.step_mode == "s" or T is not None) else x.shape[1:]
            if tuple(v.shape) != tuple(rest):  # SpikingJelly restarts the state on a new shape
                self.v = self.v_init
        out = super().forward(x, T)
        if self.step_mode == "s" and self.store_v_seq and isinstance(self.v, Tensor):
            v_step = self.v.unsqueeze(0)
            seq = self.v_seq
            if (
                seq is None
                or seq.shape[1:] != v_step.shape[1:]
                or seq.device != v_step.device
                or seq.dtype != v_step.dtype
            ):
                self.v_seq = v_step.clone()
            else:
                self.v_seq = torch.cat((seq, v_step))
        return out


class _SJCubaMixin:
    """SpikingJelly CUBALIFNode call conventions on top of snn_cuda.CUBALIF: spikes only, both
    states (``c``, ``v``) restarted when the input shape changes, and ``store_v_seq`` (the
    membrane after every step in ``.v_seq``, in both step modes)."""

    store_v_seq = False
    v_seq: Optional[Tensor] = None

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def detach(self) -> None:
        super().detach()
        if isinstance(self.v_seq, Tensor):
            self.v_seq = self.v_seq.detach()

    def forward(self, x: Tensor, T: Optional[int] = None) -> Tensor:
        if isinstance(x, Tensor):
            rest = tuple(x.shape) if (self.step_mode == "s" or T is not None) else tuple(x.shape[1:])
            if isinstance(self.v, Tensor) and tuple(self.v.shape) != rest:
                self.v = self.v_init  # SpikingJelly restarts each state on a new shape
            if isinstance(self.c, Tensor) and tuple(self.c.shape) != rest:
                self.c = 0.0
        if not self.store_v_seq:
            return super().forward(x, T)
        keep = self.return_states
        self.return_states = True
        try:
            out = super().forward(x, T)
        finally:
            self.return_states = keep
        spikes, v_seq = out[0], out[2]
        if self.step_mode == "s":
            v_step = self.v.unsqueeze(0)
            seq = self.v_seq
            if (
                seq is None
                or seq.shape[1:] != v_step.shape[1:]
                or seq.device != v_step.device
                or seq.dtype != v_step.dtype
            ):
                self.v_seq = v_step.clone()
            else:
                self.v_seq = torch.cat((seq, v_step))
        else:
            self.v_seq = v_seq
        return out if keep else spikes


class _SJILIFMixin:
    """SpikingJelly ILIFNode call conventions on top of snn_cuda.ILIF: the counts, the state
    restarted when the input shape changes, and ``store_v_seq`` (the membrane after every step
    in ``.v_seq``, in both step modes)."""

    store_v_seq = False
    v_seq: Optional[Tensor] = None

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def detach(self) -> None:
        super().detach()
        if isinstance(self.v_seq, Tensor):
            self.v_seq = self.v_seq.detach()

    def forward(self, x: Tensor, T: Optional[int] = None) -> Tensor:
        if isinstance(x, Tensor) and isinstance(self.v, Tensor):
            rest = tuple(x.shape) if (self.step_mode == "s" or T is not None) else tuple(x.shape[1:])
            if tuple(self.v.shape) != rest:
                self.v = 0.0  # SpikingJelly restarts the state on a new shape
        if not self.store_v_seq:
            return super().forward(x, T)
        if self.step_mode == "m":
            counts, self.v_seq = self._multi_step_v_seq(x, T)
            return counts
        out = super().forward(x, T)
        v_step = self.v.unsqueeze(0)
        seq = self.v_seq
        if seq is None or seq.shape[1:] != v_step.shape[1:] or seq.device != v_step.device or seq.dtype != v_step.dtype:
            self.v_seq = v_step.clone()
        else:
            self.v_seq = torch.cat((seq, v_step))
        return out

    def _multi_step_v_seq(self, x: Tensor, T: Optional[int]) -> Tuple[Tensor, Tensor]:
        """snn_cuda.ILIF's multi-step forward that also returns the membrane sequence (ILIF
        itself returns the counts only)."""
        _check_input(x, "m", T)
        rest = tuple(x.shape) if T is not None else tuple(x.shape[1:])
        if self._use_fused(x, sg.StraightThrough()):
            vals = [1.0 - 1.0 / self.tau, self.v_threshold, float(self.max_spike_count), *self.grad_window]
            params = pack_params(vals, rest, ops.state_dtype(x.dtype), x.device)
            s0 = _state0((self.v,), x, rest, ("the membrane v",), (0.0,))
            counts, seq, last = model_multistep(
                "ilif",
                x,
                params,
                s0,
                variant=0,
                T=-1 if T is None else T,
                surrogate_id=sg.StraightThrough.kind_id,
                detach_reset=self.detach_reset,
                return_states=True,
            )
            v_seq, v = state_views(seq)[0], last[0].clone()
        else:
            xs = x.unsqueeze(0).expand(T, *x.shape) if T is not None else x
            v0 = _as_state(self.v, x, rest, "the membrane v") if isinstance(self.v, Tensor) else self.v
            counts, v_seq, v = reference.ilif_reference(
                xs,
                v0,
                tau=self.tau,
                v_threshold=self.v_threshold,
                max_spike_count=self.max_spike_count,
                grad_window=self.grad_window,
                detach_reset=self.detach_reset,
            )
        self.v = v
        return counts, v_seq


_sj_classes: Dict[str, type] = {}

_SJ_BASES = {
    "SpikingJellyLIF": (_SJMixin, LIF),
    "SpikingJellyIF": (_SJMixin, IF),
    "SpikingJellyParametricLIF": (_SJMixin, ParametricLIF),
    "SpikingJellyCUBALIF": (_SJCubaMixin, CUBALIF),
    "SpikingJellyILIF": (_SJILIFMixin, ILIF),
}


def _sj_class(name: str) -> type:
    """SpikingJellyLIF / SpikingJellyIF / SpikingJellyParametricLIF / SpikingJellyCUBALIF /
    SpikingJellyILIF: built on first use (SpikingJelly is optional)."""
    if name not in _sj_classes:
        from spikingjelly.activation_based import base as sjbase

        mixin, snn_base = _SJ_BASES[name]
        doc = (
            f"snn_cuda.{snn_base.__name__} with SpikingJelly's call conventions (made by "
            "snn_cuda.convert); also a spikingjelly.activation_based.base.MemoryModule."
        )
        cls = type(name, (mixin, snn_base, sjbase.MemoryModule), {"__module__": __name__, "__doc__": doc})
        cls.__qualname__ = name
        _sj_classes[name] = cls
    return _sj_classes[name]


def _convert_sj(m: nn.Module, backend: str) -> Tuple[nn.Module, str]:
    from spikingjelly.activation_based import neuron as sjn

    plif_cls = getattr(sjn, "ParametricLIFNode", None)
    cuba_cls = getattr(sjn, "CUBALIFNode", None)
    ilif_cls = getattr(sjn, "ILIFNode", None)
    if type(m) not in (sjn.LIFNode, sjn.IFNode, plif_cls, cuba_cls, ilif_cls):
        raise _Skip("not an exact SpikingJelly IFNode/LIFNode/ParametricLIFNode/CUBALIFNode/ILIFNode: not supported")
    plif = type(m) is plif_cls
    cuba = type(m) is cuba_cls
    _no_hooks(m)
    params = dict(m.named_parameters(recurse=False))
    if set(params) != ({"w"} if plif else set()) or list(m.buffers(recurse=False)):
        raise _Skip("unexpected parameters/buffers: not supported")
    if getattr(m, "_neuron_precision", None) is not None:
        raise _Skip("a neuron precision policy is set: not supported")
    extra = set(getattr(m, "_memories", {})) - ({"v", "c"} if cuba else {"v"})
    if extra:
        raise _Skip(f"extra memories {sorted(extra)}: not supported")
    if type(m) is ilif_cls:
        return _convert_sj_ilif(m, backend)
    surrogate = _sj_surrogate(m.surrogate_function)
    v_threshold = _real(m.v_threshold, "v_threshold")
    v_reset = None if m.v_reset is None else _real(m.v_reset, "v_reset")
    if cuba:
        return _convert_sj_cuba(m, surrogate, v_threshold, v_reset, backend)
    common = dict(
        v_threshold=v_threshold,
        v_reset=v_reset,
        surrogate=surrogate,
        detach_reset=bool(m.detach_reset),
        step_mode=m.step_mode,
        backend=backend,
        store_v_seq=bool(m.store_v_seq),
    )
    note = ""
    if plif:
        w = params["w"]
        if not bool(torch.isfinite(w.detach()).all()):
            raise _Skip("non-finite w: not supported")
        new = _sj_class("SpikingJellyParametricLIF")(decay_input=bool(m.decay_input), **common)
        new.w = w  # the same nn.Parameter: an optimiser built before conversion keeps training it
        note = "learnable w: the same nn.Parameter" + (f" (shape {tuple(w.shape)})" if w.dim() else "")
    elif type(m) is sjn.LIFNode:
        tau = _real(m.tau, "tau")
        if not tau > 1.0:
            raise _Skip(f"tau={tau} <= 1: not supported")
        new = _sj_class("SpikingJellyLIF")(tau=tau, decay_input=bool(m.decay_input), **common)
    else:
        new = _sj_class("SpikingJellyIF")(**common)
    new.train(m.training)
    # carry the running state over (a model converted mid-sequence continues it)
    new.v = m.v
    new.v_seq = m.v_seq
    return new, note


def _sj_state(value, what: str):
    """A SpikingJelly memory to carry over: its float, or the tensor itself."""
    if isinstance(value, Tensor):
        return value
    return _real(value, what)


def _convert_sj_cuba(m: nn.Module, surrogate, v_threshold, v_reset, backend: str) -> Tuple[nn.Module, str]:
    # SpikingJelly 2.0's CUBALIFNode.__init__ takes neither detach_reset nor step_mode: they are
    # BaseNode attributes, set (or not) after construction
    new = _sj_class("SpikingJellyCUBALIF")(
        c_decay=_real(m.c_decay, "c_decay"),
        v_decay=_real(m.v_decay, "v_decay"),
        v_threshold=v_threshold,
        v_reset=v_reset,
        surrogate=surrogate,
        detach_reset=bool(m.detach_reset),
        return_states=False,
        step_mode=m.step_mode,
        backend=backend,
    )
    new.store_v_seq = bool(getattr(m, "store_v_seq", False))
    new.train(m.training)
    # carry the running state over (a model converted mid-sequence continues it)
    new.c = _sj_state(m.c, "c")
    new.v = _sj_state(m.v, "v")
    new.v_seq = getattr(m, "v_seq", None)
    return new, ""


def _convert_sj_ilif(m: nn.Module, backend: str) -> Tuple[nn.Module, str]:
    from spikingjelly.activation_based import surrogate as sjs

    f = m.surrogate_function
    mlsc = getattr(sjs, "MultiLevelSpikeCount", None)
    if mlsc is None or type(f) is not mlsc:
        raise _Skip(
            f"surrogate {type(f).__module__}.{type(f).__qualname__}: not supported "
            "(an ILIFNode needs an exact MultiLevelSpikeCount)"
        )
    if not getattr(f, "spiking", True):
        raise _Skip("surrogate MultiLevelSpikeCount with spiking=False: not supported")
    D = f.max_spike_count
    if isinstance(D, bool) or not isinstance(D, int):
        d = _real(D, "max_spike_count")
        if d != int(d):
            raise _Skip(f"max_spike_count={d}, not an integer: not supported")
        D = int(d)
    if not 1 <= D <= 255:
        raise _Skip(f"max_spike_count={D} outside [1, 255]: not supported")
    lo = _real(f.grad_min, "gradient window grad_min")
    hi = _real(f.grad_max, "gradient window grad_max")
    if lo > hi:
        raise _Skip(f"gradient window ({lo}, {hi}) with grad_min > grad_max: not supported")
    tau = _real(m.tau, "tau")
    if not tau > 1.0:
        raise _Skip(f"tau={tau} <= 1: not supported")
    v_threshold = _real(m.v_threshold, "v_threshold")
    if not v_threshold > 0.0:
        raise _Skip(f"v_threshold={v_threshold} <= 0: not supported")
    if getattr(m, "v_reset", None) is not None:
        raise _Skip(f"v_reset={m.v_reset!r} (I-LIF resets by subtraction, v_reset=None): not supported")
    new = _sj_class("SpikingJellyILIF")(
        tau=tau,
        v_threshold=v_threshold,
        max_spike_count=D,
        grad_window=(lo, hi),
        detach_reset=bool(m.detach_reset),
        step_mode=m.step_mode,
        backend=backend,
    )
    new.store_v_seq = bool(getattr(m, "store_v_seq", False))
    new.train(m.training)
    # carry the running state over (a model converted mid-sequence continues it)
    new.v = _sj_state(m.v, "v")
    new.v_seq = getattr(m, "v_seq", None)
    return new, ""


# ---------------------------------------------------------------------------------------
# snnTorch
# ---------------------------------------------------------------------------------------
def _snntorch_surrogate(f) -> sg.SurrogateFunction:
    import snntorch.surrogate as sts

    code = getattr(f, "__code__", None)
    known = {
        sts.atan().__code__: ("alpha", sg.ATan),
        sts.fast_sigmoid().__code__: ("slope", sg.FastSigmoid),
        sts.sigmoid().__code__: ("slope", sg.Sigmoid),
        sts.straight_through_estimator().__code__: (None, sg.StraightThrough),
    }
    if code is None or code not in known:
        what = getattr(f, "__qualname__", type(f).__qualname__)
        raise _Skip(f"surrogate {what}: not supported (custom surrogate)")
    pname, cls = known[code]
    if pname is None:
        return cls()
    nonlocals = inspect.getclosurevars(f).nonlocals
    if pname not in nonlocals:
        raise _Skip(f"surrogate {f.__qualname__} without a readable {pname}: not supported")
    p = _real(nonlocals[pname], f"surrogate {pname}")
    if p <= 0:
        raise _Skip(f"surrogate {pname}={p} <= 0: not supported")
    return cls(p)


_snntorch_classes: Dict[str, type] = {}

_ST_STATE = ("threshold", "graded_spikes_factor", "reset_mechanism_val", "beta")  # + the non-persistent mem


def _st_tensor_mode(t: Tensor) -> bool:
    """beta / threshold passed to the kernel as a tensor (learnable, per-neuron, or carrying a
    gradient) rather than as a float constant (the fastest kernels)."""
    return isinstance(t, nn.Parameter) or t.numel() != 1 or t.requires_grad


def _st_constant(name: str, t: Tensor) -> float:
    # what snnTorch computes with, in the tensor's dtype: beta (and Synaptic's alpha) clamped
    # into [0, 1] at every step
    return float(t.detach().clamp(0, 1)) if name in ("alpha", "beta") else float(t.detach())


def _snntorch_leaky_class() -> type:
    if "SnnTorchLeaky" in _snntorch_classes:
        return _snntorch_classes["SnnTorchLeaky"]
    import snntorch as snn
    from snntorch._neurons.neurons import SpikingNeuron

    class SnnTorchLeaky(snn.Leaky):
        """snnTorch ``Leaky`` computed by a single-step ``snn_cuda.Leaky`` (child ``neuron``);
        made by ``snn_cuda.convert``. Same call forms, parameters, buffers and state_dict keys
        as the snnTorch module it replaces (a learnable ``beta`` / ``threshold`` is the source's
        own ``nn.Parameter``, registered here only: the child reads it at every forward and
        holds no parameter of its own); the membrane lives in ``self.neuron.mem`` and is
        exposed as ``.mem``. ``snntorch.utils.reset``, ``Leaky.reset_hidden()`` /
        ``detach_hidden()`` and ``snn_cuda.functional.reset_net`` all reset it."""

        def __init__(self, src, surrogate: sg.SurrogateFunction, backend: str = "auto"):
            nn.Module.__init__(self)  # not snn.Leaky.__init__: no snnTorch state function
            SpikingNeuron.instances.append(self)
            # the source's Parameters themselves (an optimiser built before conversion keeps
            # training them) and copies of its buffers, in its order: same state_dict
            for name, p in src._parameters.items():
                if p is not None:
                    self.register_parameter(name, p)
            for name, buf in src._buffers.items():
                if name != "mem":
                    self.register_buffer(
                        name, buf.detach().clone(), persistent=name not in src._non_persistent_buffers_set
                    )
            self.spike_grad = src.spike_grad
            self.surrogate_disable = False
            self.init_hidden = bool(src.init_hidden)
            self.inhibition = False
            self.output = bool(src.output)
            self.state_quant = False
            self.reset_delay = True
            self._reset_mechanism = src.reset_mechanism
            beta, th = self.beta, self.threshold
            self.neuron = Leaky(
                beta=0.5 if _st_tensor_mode(beta) else _st_constant("beta", beta),
                threshold=1.0 if _st_tensor_mode(th) else _st_constant("threshold", th),
                reset_mechanism=src.reset_mechanism,
                surrogate=surrogate,
                step_mode="s",
                backend=backend,
            )
            self._bind()
            self.train(src.training)
            if src.mem.numel():
                self.neuron.mem = src.mem

        def _bind(self) -> None:
            """Point the child's beta / threshold at this module's tensors (learnable or
            per-neuron) -- plain attributes of the child, not registered there, so they are
            neither duplicated in state_dict nor in parameters(). Redone at every forward:
            .to() / DataParallel replicas / an assigned new Parameter are followed."""
            d = self.neuron.__dict__
            for name in ("beta", "threshold"):
                t = getattr(self, name)
                if _st_tensor_mode(t):
                    d[name] = t
                elif isinstance(d.get(name), Tensor):  # was a tensor, now a fixed scalar
                    d[name] = _st_constant(name, t)

        # -- the membrane, as snnTorch's `mem` attribute ---------------------------------
        @property
        def mem(self) -> Tensor:
            m = self.neuron.mem
            return m if isinstance(m, Tensor) else torch.zeros(0, device=self.beta.device)

        @mem.setter
        def mem(self, value) -> None:
            self.neuron.mem = value

        def reset_mem(self) -> Tensor:
            self.neuron.reset()
            return torch.zeros(0, device=self.beta.device)

        def init_leaky(self) -> Tensor:
            return self.reset_mem()

        def reset(self) -> None:  # for snn_cuda / SpikingJelly reset_net
            self.neuron.reset()

        def detach(self) -> None:
            self.neuron.detach()

        def forward(self, input_: Tensor, mem: Optional[Tensor] = None):
            if mem is not None:
                if self.init_hidden:
                    raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
                self.neuron.mem = mem
            state = self.neuron.mem
            if isinstance(state, Tensor) and state.shape != input_.shape:
                self.neuron.mem = 0.0  # snnTorch starts from zeros on a shape change
            self._bind()
            spk, mem = self.neuron(input_)
            if self.output or not self.init_hidden:
                return spk, mem
            return spk

        def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
            if isinstance(self.graded_spikes_factor, nn.Parameter) or float(self.graded_spikes_factor) != 1.0:
                raise RuntimeError(
                    "SnnTorchLeaky: the loaded state needs graded_spikes_factor == 1 (not reproducible by snn_cuda)"
                )
            # keep the kernel's constants in step with the loaded buffers (tensors: read at forward)
            for name in ("beta", "threshold"):
                t = getattr(self, name)
                if not _st_tensor_mode(t):
                    self.neuron.__dict__[name] = _st_constant(name, t)

        def extra_repr(self) -> str:
            return f"init_hidden={self.init_hidden}, output={self.output}"

    SnnTorchLeaky.__module__ = __name__
    SnnTorchLeaky.__qualname__ = "SnnTorchLeaky"
    _snntorch_classes["SnnTorchLeaky"] = SnnTorchLeaky
    return SnnTorchLeaky


_ST_SYN_STATE = _ST_STATE + ("alpha",)  # Synaptic's state_dict (+ the non-persistent syn, mem)
_ST_SYN_PARAMS = ("alpha", "beta", "threshold")


def _snntorch_synaptic_class() -> type:
    if "SnnTorchSynaptic" in _snntorch_classes:
        return _snntorch_classes["SnnTorchSynaptic"]
    import snntorch as snn
    from snntorch._neurons.neurons import SpikingNeuron

    class SnnTorchSynaptic(snn.Synaptic):
        """snnTorch ``Synaptic`` computed by a single-step ``snn_cuda.Synaptic`` (child
        ``neuron``); made by ``snn_cuda.convert``. Same call forms (``spk, syn, mem =
        lif(x, syn, mem)``, ``syn, mem = lif.reset_mem()`` / ``init_synaptic()``,
        ``init_hidden``, ``output``), parameters, buffers and state_dict keys as the snnTorch
        module it replaces (a learnable ``alpha`` / ``beta`` / ``threshold`` is the source's
        own ``nn.Parameter``, registered here only: the child reads it at every forward and
        holds no parameter of its own); the states live in ``self.neuron.syn`` /
        ``self.neuron.mem`` and are exposed as ``.syn`` / ``.mem``. ``snntorch.utils.reset``,
        ``Synaptic.reset_hidden()`` / ``detach_hidden()`` and ``snn_cuda.functional.reset_net``
        all reset it."""

        def __init__(self, src, surrogate: sg.SurrogateFunction, backend: str = "auto"):
            nn.Module.__init__(self)  # not snn.Synaptic.__init__: no snnTorch state function
            SpikingNeuron.instances.append(self)
            # the source's Parameters themselves and copies of its buffers, in its order
            for name, p in src._parameters.items():
                if p is not None:
                    self.register_parameter(name, p)
            for name, buf in src._buffers.items():
                if name not in ("syn", "mem"):
                    self.register_buffer(
                        name, buf.detach().clone(), persistent=name not in src._non_persistent_buffers_set
                    )
            self.spike_grad = src.spike_grad
            self.surrogate_disable = False
            self.init_hidden = bool(src.init_hidden)
            self.inhibition = False
            self.output = bool(src.output)
            self.state_quant = False
            self.reset_delay = True
            self._reset_mechanism = src.reset_mechanism
            consts = {
                n: (0.5 if _st_tensor_mode(getattr(self, n)) else _st_constant(n, getattr(self, n)))
                for n in _ST_SYN_PARAMS
            }
            self.neuron = Synaptic(
                **consts,
                reset_mechanism=src.reset_mechanism,
                surrogate=surrogate,
                step_mode="s",
                backend=backend,
            )
            self._bind()
            self.train(src.training)
            for name in ("syn", "mem"):
                t = getattr(src, name)
                if isinstance(t, Tensor) and t.numel():
                    setattr(self.neuron, name, t)

        def _bind(self) -> None:
            """Point the child's alpha / beta / threshold at this module's tensors (learnable
            or per-neuron) -- plain attributes of the child, not registered there. Redone at
            every forward: .to() / DataParallel replicas / an assigned new Parameter are
            followed."""
            d = self.neuron.__dict__
            for name in _ST_SYN_PARAMS:
                t = getattr(self, name)
                if _st_tensor_mode(t):
                    d[name] = t
                elif isinstance(d.get(name), Tensor):  # was a tensor, now a fixed scalar
                    d[name] = _st_constant(name, t)

        # -- the states, as snnTorch's `syn` / `mem` attributes ----------------------------
        def _state(self, name: str) -> Tensor:
            t = getattr(self.neuron, name)
            return t if isinstance(t, Tensor) else torch.zeros(0, device=self.beta.device)

        @property
        def syn(self) -> Tensor:
            return self._state("syn")

        @syn.setter
        def syn(self, value) -> None:
            self.neuron.syn = value

        @property
        def mem(self) -> Tensor:
            return self._state("mem")

        @mem.setter
        def mem(self, value) -> None:
            self.neuron.mem = value

        def reset_mem(self):
            self.neuron.reset()
            return torch.zeros(0, device=self.beta.device), torch.zeros(0, device=self.beta.device)

        def init_synaptic(self):
            return self.reset_mem()

        def reset(self) -> None:  # for snn_cuda / SpikingJelly reset_net
            self.neuron.reset()

        def detach(self) -> None:
            self.neuron.detach()

        def forward(self, input_: Tensor, syn: Optional[Tensor] = None, mem: Optional[Tensor] = None):
            if self.init_hidden and (syn is not None or mem is not None):
                raise TypeError("`mem` or `syn` should not be passed as an argument while `init_hidden=True`")
            if syn is not None:
                self.neuron.syn = syn
            if mem is not None:
                self.neuron.mem = mem
            for name in ("syn", "mem"):
                state = getattr(self.neuron, name)
                if isinstance(state, Tensor) and state.shape != input_.shape:
                    setattr(self.neuron, name, 0.0)  # snnTorch starts from zeros on a shape change
            self._bind()
            spk, syn, mem = self.neuron(input_)
            # The child's states are views of one [2, ...] tensor; snnTorch's are tensors of
            # their own, which `detach_hidden()` / `SpikingNeuron.detach(syn, mem)` detach in
            # place (not possible on a view): hand out (and keep) copies.
            if syn._is_view():
                syn = syn.clone()
            if mem._is_view():
                mem = mem.clone()
            self.neuron.syn, self.neuron.mem = syn, mem
            if self.output or not self.init_hidden:
                return spk, syn, mem
            return spk

        def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
            super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
            if isinstance(self.graded_spikes_factor, nn.Parameter) or float(self.graded_spikes_factor) != 1.0:
                raise RuntimeError(
                    "SnnTorchSynaptic: the loaded state needs graded_spikes_factor == 1 (not reproducible by snn_cuda)"
                )
            # keep the kernel's constants in step with the loaded buffers (tensors: read at forward)
            for name in _ST_SYN_PARAMS:
                t = getattr(self, name)
                if not _st_tensor_mode(t):
                    self.neuron.__dict__[name] = _st_constant(name, t)

        def extra_repr(self) -> str:
            return f"init_hidden={self.init_hidden}, output={self.output}"

    SnnTorchSynaptic.__module__ = __name__
    SnnTorchSynaptic.__qualname__ = "SnnTorchSynaptic"
    _snntorch_classes["SnnTorchSynaptic"] = SnnTorchSynaptic
    return SnnTorchSynaptic


def _st_value(m: nn.Module, name: str) -> Tuple[Tensor, str]:
    """beta / threshold (/ alpha) of an snnTorch neuron, checked; returns (tensor, description)."""
    t = getattr(m, name, None)
    if not isinstance(t, Tensor):
        raise _Skip(f"{name} of type {type(t).__name__}: not supported")
    if t.dtype == torch.bool or t.is_complex():
        raise _Skip(f"{name} of dtype {t.dtype}: not supported")
    if not bool(torch.isfinite(t.detach()).all()):
        raise _Skip(f"non-finite {name}: not supported")
    what = []
    if isinstance(t, nn.Parameter):
        what.append("learnable")
    if t.numel() != 1:
        what.append(f"per-neuron{tuple(t.shape)}")
    return t, " ".join(what + [name]) if what else ""


def _convert_snntorch(m: nn.Module, backend: str) -> Tuple[nn.Module, str]:
    import snntorch as snn

    if type(m) is snn.Leaky:
        names, state = ("beta", "threshold"), set(_ST_STATE) | {"mem"}
    elif type(m) is snn.Synaptic:
        names, state = _ST_SYN_PARAMS, set(_ST_SYN_STATE) | {"syn", "mem"}
    else:
        raise _Skip("not an exact snnTorch Leaky or Synaptic: not supported")
    _no_hooks(m)
    if isinstance(getattr(m, "graded_spikes_factor", None), nn.Parameter):
        raise _Skip(
            "learnable graded_spikes_factor (learn_graded_spikes_factor=True): not supported "
            "(snn_cuda's spikes are 0/1)"
        )
    if set(m._parameters) - set(names) or set(m._buffers) - state:
        raise _Skip("unexpected parameters/buffers: not supported")
    if getattr(m, "surrogate_disable", False):
        raise _Skip("surrogate_disable=True: not supported")
    if getattr(m, "inhibition", False):
        raise _Skip("inhibition=True: not supported")
    if getattr(m, "state_quant", False):
        raise _Skip("state_quant: not supported")
    if not getattr(m, "reset_delay", True):
        raise _Skip("reset_delay=False: not supported")
    gsf = _real(m.graded_spikes_factor, "graded_spikes_factor")
    if gsf != 1.0:
        raise _Skip(f"graded_spikes_factor={gsf} != 1: not supported")
    if m.reset_mechanism not in ("subtract", "zero", "none"):
        raise _Skip(f"reset_mechanism={m.reset_mechanism!r}: not supported")
    surrogate = _snntorch_surrogate(m.spike_grad)
    values = {n: _st_value(m, n) for n in names}
    notes = [w for _, w in values.values() if w]
    if any(isinstance(t, nn.Parameter) for t, _ in values.values()):
        notes.append("the same nn.Parameters")
    for name in (n for n in names if n != "threshold"):  # the decays, clamped into [0, 1]
        t = values[name][0]
        if _st_tensor_mode(t):
            if bool(((t.detach() < 0) | (t.detach() > 1)).any()):
                notes.append(f"{name} outside [0, 1] is clamped at every step as snnTorch does")
        else:
            raw, clamped = float(t.detach()), _st_constant(name, t)
            if clamped != raw:
                notes.append(f"{name}={raw} clamped to {clamped} as snnTorch does at every step")
    cls = _snntorch_leaky_class() if type(m) is snn.Leaky else _snntorch_synaptic_class()
    return cls(m, surrogate, backend), "; ".join(notes)


# ---------------------------------------------------------------------------------------
# legacy SpikingJelly (0.0.0.0.12 clock_driven, 0.0.0.0.14 activation_based)
# ---------------------------------------------------------------------------------------
_LEGACY_SJ = {
    "spikingjelly.clock_driven.neuron": {
        "IFNode": ("if", "s"),
        "LIFNode": ("lif", "s"),
        "ParametricLIFNode": ("plif", "s"),
        "MultiStepIFNode": ("if", "m"),
        "MultiStepLIFNode": ("lif", "m"),
        "MultiStepParametricLIFNode": ("plif", "m"),
    },
    # 0.0.0.0.14 keeps its nodes in this one module (2.0's live in submodules of it)
    "spikingjelly.activation_based.neuron": {
        "IFNode": ("if", None),
        "LIFNode": ("lif", None),
        "ParametricLIFNode": ("plif", None),
    },
}
_LEGACY_SURROGATE_MODULES = ("spikingjelly.clock_driven.surrogate", "spikingjelly.activation_based.surrogate")


def _legacy_sj_spec(m: nn.Module) -> Optional[Tuple[str, Optional[str]]]:
    """(kind, step mode or None) for a module whose class lives where a legacy SpikingJelly
    node class lives and that has the legacy node attributes; None otherwise. Subclasses of
    those classes (any base class from there) give ("", None): reported, not converted."""
    for klass in type(m).__mro__:
        names = _LEGACY_SJ.get(klass.__module__)
        if names is None or klass.__name__ not in names or not hasattr(m, "surrogate_function"):
            continue
        if klass.__module__ == "spikingjelly.activation_based.neuron" and "_backend" not in m.__dict__:
            continue  # SpikingJelly 2.0 (no backend attribute): the 2.0 converter's
        if klass is not type(m):
            return "", None
        return names[klass.__name__]
    return None


def _legacy_surrogate(f) -> sg.SurrogateFunction:
    name = type(f).__name__
    cls = _SJ_SURROGATES.get(name)
    if cls is None or type(f).__module__ not in _LEGACY_SURROGATE_MODULES:
        raise _Skip(f"surrogate {type(f).__module__}.{type(f).__qualname__}: not supported")
    if not getattr(f, "spiking", True):
        raise _Skip(f"surrogate {name} with spiking=False: not supported")
    alpha = _real(getattr(f, "alpha", None), f"surrogate {name} alpha")
    if alpha <= 0:
        raise _Skip(f"surrogate {name} alpha={alpha} <= 0: not supported")
    return cls(alpha)


def _convert_sj_legacy(m: nn.Module, backend: str) -> Tuple[nn.Module, str]:
    kind, step_mode = _legacy_sj_spec(m)
    if not kind:
        raise _Skip("a subclass of a legacy SpikingJelly node: not supported")
    _no_hooks(m)
    params = dict(m.named_parameters(recurse=False))
    if set(params) != ({"w"} if kind == "plif" else set()) or list(m.buffers(recurse=False)):
        raise _Skip("unexpected parameters/buffers: not supported")
    extra = set(getattr(m, "_memories", {})) - {"v", "v_seq", "v_threshold", "v_reset"}
    if extra:
        raise _Skip(f"extra memories {sorted(extra)}: not supported")
    multi = (step_mode or getattr(m, "step_mode", "s")) == "m"
    common = dict(
        v_threshold=_real(m.v_threshold, "v_threshold"),
        v_reset=None if m.v_reset is None else _real(m.v_reset, "v_reset"),
        surrogate=_legacy_surrogate(m.surrogate_function),
        detach_reset=bool(m.detach_reset),
        step_mode="m" if multi else "s",
        backend=backend,
        # 0.0.0.0.12's MultiStep* nodes keep v_seq always; 0.0.0.0.14's with store_v_seq
        store_v_seq=multi and (step_mode == "m" or bool(getattr(m, "store_v_seq", False))),
    )
    note = ""
    if kind == "plif":
        w = params["w"]
        if w.numel() != 1 or not bool(torch.isfinite(w.detach()).all()):
            raise _Skip("a non-scalar or non-finite w: not supported")
        new = ParametricLIF(decay_input=bool(m.decay_input), **common)
        del new.w
        new.w = w  # the same nn.Parameter: an optimiser built before conversion keeps training it
        note = "learnable w: the same nn.Parameter"
        if not m.decay_input and not common["v_reset"]:
            note += (
                "; legacy SpikingJelly rounds its decay 1 - sigmoid(w) to float32 (float64 inputs then differ "
                "by that rounding; snn_cuda.compat.patch_spikingjelly() reproduces it)"
            )
        elif not m.decay_input and type(m).__module__ == "spikingjelly.clock_driven.neuron":
            note += (
                "; 0.0.0.0.12 starts each sequence from v_reset rounded to float32 (float64 membranes then "
                "differ by at most 2^-24 |v_reset|)"
            )
    elif kind == "lif":
        tau = _real(m.tau, "tau")
        if not tau > 1.0:
            raise _Skip(f"tau={tau} <= 1: not supported")
        new = LIF(tau=tau, decay_input=bool(getattr(m, "decay_input", True)), **common)
    else:
        new = IF(**common)
    new.train(m.training)
    v = m.v
    new.v = v if isinstance(v, Tensor) else _real(v, "v")
    if isinstance(getattr(m, "v_seq", None), Tensor):
        new.v_seq = m.v_seq
    return new, note


# ---------------------------------------------------------------------------------------
# the walk
# ---------------------------------------------------------------------------------------
def _kind(m: nn.Module) -> Optional[str]:
    """ "sj" / "sj-legacy" / "snntorch" for a neuron of that library (any subclass: reported if
    skipped)."""
    if "spikingjelly" in sys.modules and _legacy_sj_spec(m) is not None:
        return "sj-legacy"
    if "spikingjelly" in sys.modules:
        try:
            from spikingjelly.activation_based.neuron.base_node import BaseNode
        except ImportError:  # pragma: no cover - another SpikingJelly layout
            BaseNode = ()
        if isinstance(m, BaseNode) and not isinstance(m, _SJMixin):
            return "sj"
    if "snntorch" in sys.modules:
        try:
            from snntorch._neurons.neurons import SpikingNeuron
        except ImportError:  # pragma: no cover
            SpikingNeuron = ()
        if isinstance(m, SpikingNeuron) and type(m) not in tuple(_snntorch_classes.values()):
            return "snntorch"
    return None


def convert(model: nn.Module, *, inplace: bool = True, backend: str = "auto") -> ConversionReport:
    """Replace SpikingJelly IFNode/LIFNode/ParametricLIFNode/CUBALIFNode/ILIFNode and snnTorch
    Leaky/Synaptic modules of ``model`` by snn_cuda ones that compute the same outputs and gradients (see the module
    docstring).

    ``inplace=True`` (default) swaps the submodules of ``model`` itself; ``inplace=False``
    converts a deep copy and leaves ``model`` untouched. Parameters are the same objects
    in place, the neurons' learnable ones (``w``, ``alpha``, ``beta``, ``threshold``) included: an
    optimiser built before conversion keeps working. Returns a
    :class:`ConversionReport`; ``report.model`` is the converted model (differs from
    ``model`` when the root itself was a neuron, or with ``inplace=False``). Modules that
    cannot be reproduced exactly are left unchanged, with the reason in ``report.skipped``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_choice("backend", backend, BACKENDS)
    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(model=model)
    done: Dict[int, Optional[nn.Module]] = {}  # shared modules are converted once

    def swap(m: nn.Module, name: str) -> Optional[nn.Module]:
        if id(m) in done:
            return done[id(m)]
        kind = _kind(m)
        new = None
        if kind is not None:
            try:
                fn = {"sj": _convert_sj, "sj-legacy": _convert_sj_legacy, "snntorch": _convert_snntorch}[kind]
                new, note = fn(m, backend)
                report.converted.append((name, type(m).__name__, type(new).__name__, note))
            except _Skip as e:
                report.skipped.append((name, type(m).__name__, str(e)))
        done[id(m)] = new
        return new

    def walk(parent: nn.Module, prefix: str) -> None:
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            name = f"{prefix}.{child_name}" if prefix else child_name
            new = swap(child, name)
            if new is not None:
                parent._modules[child_name] = new
            elif _kind(child) is None:
                walk(child, name)

    root_new = swap(model, "")
    if root_new is not None:
        report.model = root_new
    else:
        walk(model, "")
    if "spikingjelly" in sys.modules:  # drop reset_net's cached module lists (old nodes)
        try:
            from spikingjelly.activation_based.functional import invalidate_reset_cache
        except ImportError:  # older SpikingJelly: no cache
            invalidate_reset_cache = None
        if invalidate_reset_cache is not None:
            for m in report.model.modules():
                invalidate_reset_cache(m)
    return report


def __getattr__(name: str):  # SpikingJelly* / SnnTorchLeaky / SnnTorchSynaptic, for pickle
    if name in _SJ_BASES:
        return _sj_class(name)
    if name == "SnnTorchLeaky":
        return _snntorch_leaky_class()
    if name == "SnnTorchSynaptic":
        return _snntorch_synaptic_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
