"""The declared-model ops (torch.ops.snn_cuda.model_forward / model_backward): fake kernels,
autograd, and `model_multistep`, the entry point of the multi-state layers.

The models are listed once, in csrc/kernels/model_list.h; `_model_list.MODELS` is generated
from it (tools/gen_model_list.py), so model ids, state, parameter and variant names are
readable here even when the extension failed to load.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import _ext
from . import ops as _ops
from ._model_list import MODELS, ModelDecl
from .ops import (
    CHUNK,
    _seq_shapes,
    check_device,
    permute_steps,
    state_dtype,
    step_memory_order,
    unpermute_steps,
)

__all__ = ["MODELS", "ModelDecl", "model_multistep", "pack_params", "state_views"]


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if _ext.loaded:

    @torch.library.register_fake("snn_cuda::model_forward")
    def _forward_fake(
        x,
        params,
        state0,
        T,
        model,
        variant,
        surrogate,
        surrogate_param,
        detach_reset,
        return_states,
        save,
        batch_first=False,
        spikes_uint8=False,
    ):
        seq, rest, steps = _seq_shapes(x, T, batch_first)
        ns = len(_DECL_BY_ID[model].states)
        sdt = state_dtype(x.dtype)
        return (
            x.new_empty(seq, dtype=torch.uint8 if spikes_uint8 else x.dtype),
            x.new_empty((ns, *seq) if return_states else (0,), dtype=sdt),
            x.new_empty((ns, *rest), dtype=sdt),
            x.new_empty(((steps + CHUNK - 1) // CHUNK, ns, _numel(rest)) if save else (0,), dtype=sdt),
        )

    @torch.library.register_fake("snn_cuda::model_backward")
    def _backward_fake(
        grad_spikes,
        grad_state_seq,
        grad_state_last,
        x,
        params,
        state0,
        ckpt,
        T,
        model,
        variant,
        surrogate,
        surrogate_param,
        detach_reset,
        grad_params,
        batch_first=False,
        state_seq=None,
        readout_grad=None,
        readout_weight=None,
    ):
        _, rest, _ = _seq_shapes(x, T, batch_first)
        d = _DECL_BY_ID[model]
        sdt = state_dtype(x.dtype)
        return (
            x.new_empty(x.shape),
            x.new_empty((len(d.states), *rest), dtype=sdt),
            x.new_empty((len(d.params), _numel(rest)) if grad_params else (0,), dtype=sdt),
        )

    def _setup_context(ctx, inputs, output):
        x, params, state0, T, model, variant, surrogate, surrogate_param, detach_reset = inputs[:9]
        batch_first = bool(inputs[11]) if len(inputs) > 11 else False
        # Unused outputs (the state sequences under a spike-only loss) reach the
        # kernel as None, not as materialised zeros.
        ctx.set_materialize_grads(False)
        ctx.args = (T, model, variant, surrogate, surrogate_param, detach_reset, batch_first)
        # A returned state sequence goes to the CPU backward too: it reads the
        # states before each step from it rather than replaying the checkpoints
        # (it is alive anyway while the caller holds it). The CUDA kernels
        # replay regardless, so there it is not kept past the caller's use.
        seq = output[1] if inputs[9] and x.device.type == "cpu" else None  # return_states
        ctx.save_for_backward(_x_for_backward(x, model, T, batch_first, seq, output[3]), params, state0, output[3], seq)

    def _model_grads(g_spikes, g_seq, g_last, saved, args, need_p, seq=None, readout=()):
        """model_backward on a forward's saved (x, params, state0, ckpt) and its arguments
        (T, model, variant, surrogate, surrogate_param, detach_reset, batch_first)."""
        x, params, state0, ckpt = saved
        return torch.ops.snn_cuda.model_backward(
            g_spikes,
            g_seq,
            g_last,
            x,
            params,
            state0,
            ckpt,
            *args[:6],
            need_p,
            args[6],
            seq,
            *(readout or (None, None)),
        )

    def _param_grads(gp: Tensor, params: Tensor) -> Tensor:
        # Per-neuron sums [kParams, N] -> [kParams, P] in a fixed order (torch's sum:
        # deterministic, no atomics).
        return gp.reshape(gp.shape[0], -1, params.shape[1]).sum(1)

    def _x_for_backward(x, model, T, batch_first, seq, ckpt):
        """What the backward gets for x. A backward that reads no x (kBackwardReadsX = false)
        and takes the states from the returned sequence without checkpoints (the CPU kernels)
        needs only its shape and dtype: a time-major sequence is kept as one zero step expanded
        over time (time stride 0, steps contiguous, so the op reads it in place and never copies
        it) instead of holding the caller's input alive until the backward."""
        if seq is None or ckpt.numel() or _DECL_BY_ID[model].reads_x or T >= 0 or batch_first or x.dim() < 1:
            return x
        return x.new_zeros((1, *x.shape[1:])).expand(x.shape)

    def _backward(ctx, g_spikes, g_seq, g_last, g_ckpt):
        x, params, state0, ckpt, seq = ctx.saved_tensors
        need_x, need_p, need_s0 = ctx.needs_input_grad[:3]
        if g_spikes is None and g_seq is None and g_last is None:
            return (None,) * 13
        if ckpt.numel() == 0 and seq is None:
            raise RuntimeError(
                "snn_cuda: model_forward ran with save=False, so its backward has no checkpoints; "
                "call it with save=True when a gradient is needed"
            )
        g_seq = g_seq if (g_seq is not None and g_seq.numel()) else None
        gx, gs0, gp = _model_grads(g_spikes, g_seq, g_last, (x, params, state0, ckpt), ctx.args, need_p, seq)
        return (
            gx if need_x else None,
            _param_grads(gp, params) if need_p else None,
            gs0 if need_s0 else None,
        ) + (None,) * 10

    torch.library.register_autograd("snn_cuda::model_forward", _backward, setup_context=_setup_context)

    class _ModelLinearFn(torch.autograd.Function):
        """A declared model followed by a Linear layer in one autograd node (NeuronLinear), as
        ops._NeuronLinearFn for the one-state neurons: the kernel writes the spikes as bytes,
        spike_linear and the weight gradient read them, and the model's backward replays its
        checkpoints (forming grad_y W per row itself on the CPU). Returns (y, state_last)."""

        @staticmethod
        def forward(ctx, weight, bias, x, params, state0, *args):
            # args: (T, model, variant, surrogate, surrogate_param, detach_reset), as model_forward's
            from .ops import spikes_linear

            ctx.wide = _ops._wide_spikes(x)
            ctx.neuron = any(t is not None and t.requires_grad for t in (x, params, state0))
            # no state sequence; checkpoints when the model needs a gradient; time-major; bytes
            # unless the spikes go to torch's GEMM
            flags = (False, ctx.neuron, False, not ctx.wide)
            spikes, _, last, ckpt = torch.ops.snn_cuda.model_forward(x, params, state0, *args, *flags)
            y = spikes_linear(spikes, weight, bias, ctx.wide)
            ctx.set_materialize_grads(False)
            ctx.has_bias = bias is not None
            ctx.args = (*args, False)  # + batch_first
            ctx.save_for_backward(spikes if weight.requires_grad else None, weight, x, params, state0, ckpt)
            return y, last

        @staticmethod
        def backward(ctx, gy, g_last):
            from .ops import spikes_linear_backward

            spikes, weight, *saved = ctx.saved_tensors
            x, T = saved[0], ctx.args[0]
            gw = gb = g_spikes = None
            readout = ()
            if gy is not None:
                step_dims = len(_seq_shapes(x, T)[1])
                gw, gb, g_spikes, readout = spikes_linear_backward(ctx, gy, spikes, weight, x.dtype, step_dims)
            gx = gp = gs0 = None
            if ctx.neuron and (readout or g_spikes is not None or g_last is not None):
                need_p = ctx.needs_input_grad[3]
                gx, gs0, gp = _model_grads(g_spikes, None, g_last, saved, ctx.args, need_p, None, readout)
                gx = gx if ctx.needs_input_grad[2] else None
                gp = _param_grads(gp, saved[1]) if need_p else None
                gs0 = gs0 if ctx.needs_input_grad[4] else None
            return (gw, gb, gx, gp, gs0) + (None,) * 6

    def _no_double_backward(ctx, *grads):
        raise RuntimeError("snn_cuda: double backward through the model ops is not supported")

    torch.library.register_autograd("snn_cuda::model_backward", _no_double_backward)


_DECL_BY_ID: Dict[int, ModelDecl] = {d.id: d for d in MODELS.values()}

# Set by cupy_backend.register("CPU") / unregister(): the CPU dispatch key then runs the CUDA
# kernel bodies, whose backward replays from checkpoints (a module global, so that
# torch.compile reads it as a guarded constant).
_CUPY_SERVES_CPU = False


def state_views(seq: Tensor) -> Tuple[Tensor, ...]:
    """The per-state sequences of the op's stacked [kStates, T, ...] output, as views whose
    backward costs no pass over memory it need not make: one state, `squeeze(0)` (its gradient is
    a view of the incoming one); several, `unbind(0)` (one stack of the gradients). Indexing
    (`seq[0]`) would cost each returned state a zero-filled [kStates, T, ...] gradient and a copy
    into it: measured at twice the fused Leaky's whole forward + backward time (fp32
    [64, 64, 4096], benchmarks/leaky_decl.py)."""
    return (seq.squeeze(0),) if seq.shape[0] == 1 else seq.unbind(0)


def pack_params(values: Sequence, rest: Tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
    """The op's [kParams, P] parameter tensor from one value per declared parameter: Python
    numbers or tensors that are scalar or broadcast to the trailing dims of a step (`rest`).
    Tensors keep their autograd graph, so gradients reach learnable parameters through it."""
    tensors = [v for v in values if isinstance(v, Tensor) and v.numel() > 1]
    if tensors:
        nd = max(t.dim() for t in tensors)
        pshape = tuple(rest[len(rest) - nd :])
    else:
        pshape = ()
    cols = []
    for v in values:
        if isinstance(v, Tensor):
            t = v.to(dtype)
            t = t.reshape(()) if t.numel() == 1 else t
            cols.append(t.expand(pshape) if tuple(t.shape) != pshape else t)
        else:
            cols.append(torch.full(pshape, float(v), dtype=dtype, device=device))
    return torch.stack(cols).reshape(len(values), -1)


def model_multistep(
    name: str,
    x: Tensor,
    params: Tensor,
    state0: Optional[Tensor],
    *,
    variant: int,
    T: int = -1,
    surrogate_id: int = 0,
    surrogate_param: float = 0.0,
    detach_reset: bool = False,
    return_states: bool = False,
    batch_first: bool = False,
    readout: Optional[Tuple[Tensor, Optional[Tensor]]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Runs declared model `name` (a key of MODELS) over x ([T, ...], or [...] for T >= 1
    steps of a constant input; [B, T, ...] with `batch_first`, read and written in place, the
    state sequences then [kStates, B, T, ...]). params: [kParams, P] (pack_params); state0: [kStates, ...] or
    None (the model's initial state). Returns (spikes, state_seq [kStates, T, ...] or an empty
    tensor, state_last [kStates, ...]). Checkpoints are kept for the backward only when
    autograd will need them and, on the CPU, only when no state sequence is returned (the CPU
    backward then reads the states from it). `readout=(weight, bias)` (NeuronLinear): a Linear
    layer on the spikes inside the op; the first output is then its output, the spikes only
    ever exist as bytes (on the CPU), and no state sequence is returned."""
    decl = MODELS[name]
    if params.requires_grad and torch.is_grad_enabled() and not decl.param_grads:
        raise RuntimeError(
            f"snn_cuda: {name} forms no parameter gradients (its parameters are fixed numbers), "
            "but params requires grad; detach it"
        )
    check_device("params", params, x)
    check_device("state0", state0, x)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, params, state0))
    # model_forward's arguments after (x, params, state0)
    args = (int(T), decl.id, int(variant), int(surrogate_id), float(surrogate_param), bool(detach_reset))
    if readout is not None:
        return _model_linear(x, params, state0, args, readout, need_grad, batch_first)
    # The CPU kernels' backward reads every state from a returned state
    # sequence, so checkpoints are kept only where the backward replays: no
    # sequence, CUDA, or the CuPy path serving the CPU (tests run the kernel
    # bodies there).
    compiled_cpu = x.device.type == "cpu" and not _CUPY_SERVES_CPU
    save = need_grad and not (return_states and compiled_cpu)
    # Channels-last steps are run in memory order, without a copy, while params is one column.
    order = step_memory_order(x, T, batch_first, params.shape[1] > 1)
    if order is not None:
        x, state0 = permute_steps(x, order, 1), permute_steps(state0, order, 1)
    spikes, seq, last, _ = torch.ops.snn_cuda.model_forward(
        x, params, state0, *args, bool(return_states), save, bool(batch_first)
    )
    if order is not None:
        spikes, seq, last = (
            unpermute_steps(spikes, order, 1),
            unpermute_steps(seq, order, 2),
            unpermute_steps(last, order, 1),
        )
    return spikes, seq, last


def _model_linear(x, params, state0, args, readout, need_grad, batch_first):
    from .ops import spikes_linear

    weight, bias = readout
    check_device("the Linear weight", weight, x)
    check_device("the Linear bias", bias, x)
    if batch_first:
        raise ValueError("snn_cuda: a readout (NeuronLinear) needs batch_first=False")
    empty = x.new_empty((0,), dtype=state_dtype(x.dtype))
    if torch.is_grad_enabled() and (need_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        y, last = _ModelLinearFn.apply(weight, bias, x, params, state0, *args)
        return y, empty, last
    wide = _ops._wide_spikes(x)
    spikes, _, last, _ = torch.ops.snn_cuda.model_forward(x, params, state0, *args, False, False, False, not wide)
    return spikes_linear(spikes, weight, bias, wide), empty, last
