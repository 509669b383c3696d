"""The fused ops (torch.ops.snn_cuda.*) with their fake (meta) kernels and
autograd, plus the functional entry points the layers call.

One forward and one backward op serve LIF, IF and Leaky (switched by
`model`/`reset`); see csrc/ops.cpp for the schemas.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _ext

MODEL_LIF, MODEL_IF, MODEL_LEAKY, MODEL_PLIF = 0, 1, 2, 3
# LIF/IF: hard / soft.  Leaky: zero / subtract / none.
RESET_HARD, RESET_SOFT, RESET_NONE = 0, 1, 2
LEAKY_RESETS = {"zero": RESET_HARD, "subtract": RESET_SOFT, "none": RESET_NONE}

FUSED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# What the forward keeps for backward (csrc/kernels/params.h SaveMode).
SAVE_NONE, SAVE_H, SAVE_CKPT = 0, 1, 2
CHUNK = 8  # checkpoint interval of SAVE_CKPT (kChunk)

# NeuronLinear's CPU backward forms grad_spikes = grad_y W inside the neuron kernel up to this many
# Linear outputs; above it one MKL product is faster. Measured with tutorial5's hidden Leaky
# ([25, 128, 1000], 2 cores), backward with the readout vs matmul + backward: K=4 1.48 vs 1.90 ms,
# K=10 2.06 vs 2.00, K=16 2.56 vs 2.55, K=24 3.29 vs 2.11, K=64 6.86 vs 2.95. Up to 16 it is no
# slower, and it lets the kernel use cache-sized blocks (nothing streams; see neuron_cpu.cpp).
READOUT_MAX_OUTPUTS = 16

# Per device type, LIF/IF: save every charged potential, or a membrane
# checkpoint every CHUNK steps and re-read x in the backward (fewer bytes:
# fp32 21 instead of 24 per neuron-step, 16-bit 11 instead of 16, and
# activation memory of x's dtype instead of fp32 h). On the GPU bytes are
# time; on the CPU the extra pass over x costs more than it saves (see
# benchmarks/neuron_op.py --save-mode), so it keeps h.
DEFAULT_SAVE_MODE = {"cuda": SAVE_CKPT, "cpu": SAVE_H}


def set_save_mode(device_type: str, mode: str) -> None:
    """Choose the backward storage for LIF/IF on a device type: "h" (save the
    charged potential of every step) or "checkpoint" (recompute)."""
    modes = {"h": SAVE_H, "checkpoint": SAVE_CKPT}
    if mode not in modes:
        raise ValueError(f"mode must be 'h' or 'checkpoint', got {mode!r}")
    DEFAULT_SAVE_MODE[device_type] = modes[mode]


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def unavailable_reason(device_type: str, x: Optional[Tensor] = None, backend: str = "auto") -> str:
    """Why the fused ops cannot run tensors of this device type ('' when they can). Meta tensors
    run the ops' fake kernels (shapes and dtypes, no data): available wherever the ops are
    registered, so that a model can be dry-run on "meta" with the backend it will train with.
    Fake tensors report their real device type and follow its availability: a graph traced
    with them must run on that device later. With `x`, a real CUDA tensor's device is also probed
    for a kernel image this GPU can run (_ext.unavailable_reason)."""
    if device_type == "meta" and _ext.loaded:
        return ""
    return _ext.unavailable_reason(device_type, x, backend)


def check_device(name: str, t: Optional[Tensor], x: Tensor) -> None:
    """A tensor argument must be on the input's device. Checked before the op is called: the
    dispatcher picks the kernel from every tensor argument, so a CUDA parameter beside a CPU
    input would reach the CUDA kernel and fail in c10's device guard, naming neither."""
    if t is not None and t.device != x.device:
        raise ValueError(f"snn_cuda: {name} is on {t.device} but the input is on {x.device}")


def _seq_shapes(x: Tensor, T: int, batch_first: bool = False):
    """(sequence shape, per-step shape in neuron order, steps) of an op's x: [T, ...], or
    [B, T, ...] with batch_first; a constant input x is one step."""
    if not batch_first:
        seq = (T, *x.shape) if T >= 0 else tuple(x.shape)
        return seq, seq[1:], seq[0]
    if T >= 0:
        rest = tuple(x.shape)
        return (rest[0], T, *rest[1:]), rest, T
    return tuple(x.shape), (x.shape[0], *x.shape[2:]), x.shape[1]


if _ext.loaded:

    @torch.library.register_fake("snn_cuda::neuron_forward")
    def _forward_fake(
        x,
        v0,
        decay_param,
        threshold_param,
        T,
        model,
        reset,
        surrogate,
        surrogate_param,
        tau,
        v_threshold,
        v_reset,
        v_floor,
        beta,
        v_init,
        decay_input,
        has_floor,
        detach_reset,
        save_mode,
        store_v_seq,
        spikes_uint8=False,
        batch_first=False,
    ):
        seq, rest, steps = _seq_shapes(x, T, batch_first)
        sdt = state_dtype(x.dtype)
        leaky = model == MODEL_LEAKY
        spikes = x.new_empty(seq, dtype=torch.uint8 if spikes_uint8 else x.dtype)
        if (leaky and store_v_seq) or save_mode == SAVE_H:
            saved = x.new_empty(seq, dtype=sdt)
        elif save_mode == SAVE_CKPT:
            saved = x.new_empty(((steps + CHUNK - 1) // CHUNK, *rest), dtype=sdt)
        else:
            saved = x.new_empty((0,), dtype=sdt)
        v_seq = x.new_empty(seq if (store_v_seq and not leaky) else (0,), dtype=sdt)
        v_last = x.new_empty(rest, dtype=sdt)
        return spikes, saved, v_seq, v_last

    @torch.library.register_fake("snn_cuda::neuron_backward")
    def _backward_fake(
        grad_spikes,
        grad_v_seq,
        grad_v_last,
        saved,
        x,
        v0,
        decay_param,
        threshold_param,
        T,
        save_mode,
        model,
        reset,
        surrogate,
        surrogate_param,
        tau,
        v_threshold,
        v_reset,
        v_floor,
        beta,
        v_init,
        decay_input,
        has_floor,
        detach_reset,
        grad_decay,
        grad_threshold,
        x_dtype,
        readout_grad=None,
        readout_weight=None,
        batch_first=False,
    ):
        if batch_first and save_mode == SAVE_H:
            rest = (saved.shape[0], *saved.shape[2:])
        else:
            rest = tuple(saved.shape[1:])
        if T >= 0:
            gx_shape = rest
        elif save_mode == SAVE_CKPT:
            gx_shape = tuple(x.shape)
        else:
            gx_shape = tuple(saved.shape)
        gx = saved.new_empty(gx_shape, dtype=x_dtype)
        return (
            gx,
            saved.new_empty(rest),
            saved.new_empty(rest if grad_decay else (0,)),
            saved.new_empty(rest if grad_threshold else (0,)),
        )

    def _neuron_saved(inputs, saved):
        """What a neuron_forward call keeps for its backward: (tensors to save, the backward's
        arguments, x's dtype). Shared by the op's autograd and _NeuronLinearFn."""
        (
            x,
            v0,
            decay_param,
            threshold_param,
            T,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            detach_reset,
            save_mode,
            store_v_seq,
        ) = inputs[:20]
        batch_first = bool(inputs[21]) if len(inputs) > 21 else False
        if model == MODEL_LEAKY and store_v_seq:
            save_mode = SAVE_H  # the membrane sequence it returns is what it saves
        grad_decay = decay_param is not None and decay_param.requires_grad
        grad_th = threshold_param is not None and threshold_param.requires_grad
        # ParametricLIF's decay gradient reads x (decay_input) and the initial state.
        plif_decay = model == MODEL_PLIF and grad_decay
        keep_x = save_mode == SAVE_CKPT or (plif_decay and decay_input)
        keep_v0 = model == MODEL_LEAKY or plif_decay
        tensors = (saved, x if keep_x else None, v0 if keep_v0 else None, decay_param, threshold_param)
        args = (
            T,
            save_mode,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            detach_reset,
            grad_decay,
            grad_th,
            batch_first,
        )
        return tensors, args, x.dtype

    def _forward_setup_context(ctx, inputs, output):
        # Unused outputs (v_seq when not stored, spikes under a membrane-only
        # loss) must reach the kernel as None, not as materialised zeros.
        ctx.set_materialize_grads(False)
        tensors, ctx.args, ctx.x_dtype = _neuron_saved(inputs, output[1])
        ctx.save_for_backward(*tensors)

    def _reduce_param_grad(partial: Tensor, param: Tensor) -> Tensor:
        # Per-neuron sums -> the parameter's shape, in a fixed order (torch's
        # sum: deterministic, no atomics).
        P = param.numel()
        g = partial.reshape(-1, P).sum(0) if P > 1 else partial.sum()
        return g.reshape(param.shape)

    def _neuron_grads(tensors, args, x_dtype, needs, g_spikes, g_saved, g_v_seq, g_v_last, readout=()):
        """Gradients (x, v0, decay_param, threshold_param) of a neuron_forward call; `needs`
        says which of the last three are wanted; `readout=(gy, W)` has the kernel compute
        g_spikes = gy W itself (CPU)."""
        saved, x, v0, decay_param, threshold_param = tensors
        (
            T,
            save_mode,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            detach_reset,
            grad_decay,
            grad_th,
            batch_first,
        ) = args
        if model == MODEL_LEAKY and save_mode == SAVE_H:
            g_v_seq = g_saved  # Leaky's saved tensor is the membrane sequence it returns
        elif g_v_seq is not None and g_v_seq.numel() == 0:
            g_v_seq = None
        grad_decay = grad_decay and needs[1]
        grad_th = grad_th and needs[2]
        gx, gv0, gd, gt = torch.ops.snn_cuda.neuron_backward(
            g_spikes,
            g_v_seq,
            g_v_last,
            saved,
            x,
            v0,
            decay_param,
            threshold_param,
            T,
            save_mode,
            model,
            reset,
            surrogate,
            surrogate_param,
            tau,
            v_threshold,
            v_reset,
            v_floor,
            beta,
            v_init,
            decay_input,
            has_floor,
            detach_reset,
            grad_decay,
            grad_th,
            x_dtype,
            *(readout or (None, None)),
            batch_first,
        )
        return (
            gx,
            gv0 if needs[0] else None,
            _reduce_param_grad(gd, decay_param) if grad_decay else None,
            _reduce_param_grad(gt, threshold_param) if grad_th else None,
        )

    def _forward_backward(ctx, g_spikes, g_saved, g_v_seq, g_v_last):
        return (
            _neuron_grads(
                ctx.saved_tensors,
                ctx.args,
                ctx.x_dtype,
                ctx.needs_input_grad[1:4],
                g_spikes,
                g_saved,
                g_v_seq,
                g_v_last,
            )
            + (None,) * 18
        )

    def spikes_linear(spikes: Tensor, weight: Tensor, bias: Optional[Tensor], wide: bool) -> Tensor:
        """A Linear layer on a neuron kernel's spikes: bytes through spike_linear, or (`wide`,
        see _wide_spikes) spikes in x's dtype through torch's GEMM."""
        if wide:
            return torch.nn.functional.linear(spikes.to(weight.dtype), weight, bias)
        return torch.ops.snn_cuda.spike_linear(spikes, weight, bias)

    def spikes_linear_backward(ctx, gy: Tensor, spikes: Tensor, weight: Tensor, x_dtype, step_dims: int):
        """The backward of spikes_linear inside a neuron + Linear node: (grad weight, grad bias,
        grad_spikes, readout). `ctx` carries needs_input_grad (weight, bias first), has_bias, wide
        and whether the neuron needs a gradient (ctx.neuron). The spike gradient gy W is either
        formed here, or handed to the CPU backward kernel as readout=(gy, W) (fp32/fp64, up to
        READOUT_MAX_OUTPUTS outputs, steps with a feature dim: `step_dims` >= 1), which forms it
        per row without materialising it."""
        gw = gb = g_spikes = None
        readout = ()
        if ctx.needs_input_grad[0] and ctx.wide:
            gw = gy.reshape(-1, gy.shape[-1]).t().matmul(spikes.reshape(-1, spikes.shape[-1]).to(gy.dtype))
        elif ctx.needs_input_grad[0]:
            gw = torch.ops.snn_cuda.spike_linear_weight_grad(gy, spikes)
        if ctx.has_bias and ctx.needs_input_grad[1]:
            gb = gy.reshape(-1, gy.shape[-1]).sum(0)
        if ctx.neuron:
            if (
                gy.device.type == "cpu"
                and gy.shape[-1] <= READOUT_MAX_OUTPUTS
                and x_dtype in (torch.float32, torch.float64)
                and gy.dtype == x_dtype
                and weight.dtype == x_dtype
                and step_dims >= 1
            ):
                readout = (gy, weight.detach())
            else:
                g_spikes = gy.matmul(weight.to(gy.dtype)).to(x_dtype)
        return gw, gb, g_spikes, readout

    class _NeuronLinearFn(torch.autograd.Function):
        """A neuron followed by a Linear layer in one autograd node, so that the spikes between
        them never exist as floats: the neuron kernel writes them as bytes, spike_linear reads
        those, and they are what the weight gradient reads (1 byte per neuron-step where an
        fp32 spike tensor costs 4 written, 4 read forward, and the compact save's passes).
        Backward: grad_spikes = grad_y W, then the neuron's backward from its own saved state
        (it never needs the spikes). On the CPU (fp32/fp64) the backward kernel computes
        grad_y W per row itself instead of reading a materialised [T, ..., N] product."""

        @staticmethod
        def forward(ctx, weight, bias, *inputs):
            ctx.wide = _wide_spikes(inputs[0])
            spikes, saved, v_seq, v_last = torch.ops.snn_cuda.neuron_forward(*inputs, not ctx.wide)
            y = spikes_linear(spikes, weight, bias, ctx.wide)
            ctx.set_materialize_grads(False)
            ctx.neuron = inputs[18] != SAVE_NONE  # save_mode: SAVE_NONE when no neuron input needs grad
            tensors, ctx.args, ctx.x_dtype = _neuron_saved(inputs, saved) if ctx.neuron else ((None,) * 5, None, None)
            ctx.save_for_backward(spikes if weight.requires_grad else None, weight, *tensors)
            ctx.has_bias = bias is not None
            return y, saved, v_seq, v_last

        @staticmethod
        def backward(ctx, gy, g_saved, g_v_seq, g_v_last):
            spikes, weight, *tensors = ctx.saved_tensors
            gw = gb = g_spikes = None
            readout = ()
            if gy is not None:
                step_dims = tensors[0].dim() - 1 if ctx.neuron else 0
                gw, gb, g_spikes, readout = spikes_linear_backward(ctx, gy, spikes, weight, ctx.x_dtype, step_dims)
            grads = (None,) * 4
            if ctx.neuron and (readout or any(g is not None for g in (g_spikes, g_saved, g_v_seq, g_v_last))):
                grads = _neuron_grads(
                    tensors,
                    ctx.args,
                    ctx.x_dtype,
                    ctx.needs_input_grad[3:6],
                    g_spikes,
                    g_saved,
                    g_v_seq,
                    g_v_last,
                    readout,
                )
            return (gw, gb) + grads + (None,) * 16

    torch.library.register_autograd("snn_cuda::neuron_forward", _forward_backward, setup_context=_forward_setup_context)

    def _no_double_backward(ctx, *grads):
        raise RuntimeError(
            "snn_cuda: double backward (create_graph=True through a fused neuron) is not supported; "
            "use backend='torch' for higher-order gradients"
        )

    torch.library.register_autograd("snn_cuda::neuron_backward", _no_double_backward)

    @torch.library.register_fake("snn_cuda::binary_to_uint8")
    def _binary_fake(x):
        return x.new_empty(x.shape, dtype=torch.uint8)

    @torch.library.register_fake("snn_cuda::uint8_to")
    def _uint8_to_fake(x, dtype):
        return x.new_empty(x.shape, dtype=dtype)

    @torch.library.register_fake("snn_cuda::poisson_encode")
    def _poisson_fake(x, T, seed):
        # The compiled op's checks (csrc/host.h prepare_poisson), with its exception types.
        torch._check_type(
            seed.dtype == torch.int64, lambda: f"snn_cuda: seed must be an int64 tensor, got {seed.dtype}"
        )
        torch._check_value(
            seed.numel() == 1, lambda: f"snn_cuda: seed must have one element, got shape {list(seed.shape)}"
        )
        torch._check_value(
            seed.device == x.device or seed.device.type == "cpu",
            lambda: (
                f"snn_cuda: seed is on {seed.device} but x is on {x.device} (it must be on x's device or on the CPU)"
            ),
        )
        return x.new_empty((T, *x.shape))


def step_memory_order(x: Tensor, T: int, batch_first: bool, per_neuron: bool) -> Optional[list]:
    """The order of the step dims in memory when a time-major sequence's steps are dense but not
    contiguous (a channels-last conv activation [T, B, C, H, W] is [T, B, H, W, C] in memory), or
    None. The kernels then run on x permuted to that order, a contiguous view, so nothing is
    copied; the outputs are permuted back (views with x's strides). Not with `per_neuron`
    parameters (per channel or per neuron): they follow the neuron order of the logical shape,
    so such a layer reads a contiguous copy instead (the op makes it)."""
    if T >= 0 or batch_first or per_neuron or x.dim() < 3 or x.shape[0] == 0 or x[0].is_contiguous():
        return None
    step = x.stride()[1:]
    order = sorted(range(len(step)), key=lambda d: -step[d])
    if not x.permute(0, *[d + 1 for d in order]).is_contiguous():
        return None
    return order


def permute_steps(t: Optional[Tensor], order: list, lead: int) -> Optional[Tensor]:
    """t ([lead dims, step dims...]) with its step dims in `order`; an empty placeholder as is."""
    if t is None or t.dim() != lead + len(order):
        return t
    return t.permute(*range(lead), *[d + lead for d in order])


def unpermute_steps(t: Tensor, order: list, lead: int) -> Tensor:
    inverse = sorted(range(len(order)), key=lambda i: order[i])
    return permute_steps(t, inverse, lead)


def _wide_spikes(x: Tensor) -> bool:
    """Whether NeuronLinear's neuron writes its spikes in x's dtype for torch's GEMM rather than as
    bytes. On CUDA the GEMM (cuBLAS) reads floats in any case: bytes written, widened (read 1 B,
    write 4 B) and widened again for the weight gradient move more than writing the spikes once
    (4 B) and reading them forward and for the weight gradient (4 + 4 B), which is exactly
    neuron + nn.Linear (benchmarks/gpu_static_report.py counts both). The byte kernels read the
    bytes themselves on the CPU only."""
    return x.device.type == "cuda"


def neuron_multistep(
    x: Tensor,
    v0: Optional[Tensor],
    *,
    T: int = -1,
    model: int,
    reset: int,
    surrogate_id: int,
    surrogate_param: float,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float = 0.0,
    v_floor: Optional[float] = None,
    beta: float = 1.0,
    v_init: float = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    save_mode: Optional[int] = None,
    decay_param: Optional[Tensor] = None,
    threshold_param: Optional[Tensor] = None,
    readout: Optional[Tuple[Tensor, Optional[Tensor]]] = None,
    batch_first: bool = False,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Runs the fused op. Returns (spikes, saved, v_seq, v_last); for Leaky
    `saved` is the membrane sequence. Nothing is saved for backward unless
    autograd will need it. `decay_param` (ParametricLIF's k, Leaky's beta) and
    `threshold_param` are tensors (learnable or per-neuron) that override the
    scalars; they are cast to the state dtype here, so autograd carries their
    gradients back to the caller's dtype. `readout=(weight, bias)` applies a
    Linear layer to the spikes inside the op (`_NeuronLinearFn`): the first
    output is then `spikes @ weight.T + bias` and the spikes only ever exist
    as bytes. `batch_first`: x is [B, T, ...] (or a constant [B, ...]) and the sequences
    returned are [B, T, ...], read and written in place by the kernels."""
    check_device("v0", v0, x)
    check_device("decay_param", decay_param, x)
    check_device("threshold_param", threshold_param, x)
    if readout is not None:
        check_device("the Linear weight", readout[0], x)
        check_device("the Linear bias", readout[1], x)
    sdt = state_dtype(x.dtype)
    if decay_param is not None:
        decay_param = decay_param.to(sdt)
    if threshold_param is not None:
        threshold_param = threshold_param.to(sdt)
    need_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, v0, decay_param, threshold_param)
    )
    if not need_grad:
        save_mode = SAVE_NONE
    elif save_mode is None:
        save_mode = DEFAULT_SAVE_MODE.get(x.device.type, SAVE_H)
    args = (
        x,
        v0,
        decay_param,
        threshold_param,
        T,
        model,
        reset,
        surrogate_id,
        float(surrogate_param),
        float(tau),
        float(v_threshold),
        float(v_reset),
        0.0 if v_floor is None else float(v_floor),
        float(beta),
        float(v_init),
        bool(decay_input),
        v_floor is not None,
        bool(detach_reset),
        int(save_mode),
        bool(store_v_seq),
    )
    if readout is None:
        per_neuron = any(p is not None and p.numel() > 1 for p in (decay_param, threshold_param))
        order = step_memory_order(x, T, batch_first, per_neuron)
        if order is None:
            return torch.ops.snn_cuda.neuron_forward(*args, False, bool(batch_first))
        args = (permute_steps(x, order, 1), permute_steps(v0, order, 0)) + args[2:]
        spikes, saved, v_seq, v_last = torch.ops.snn_cuda.neuron_forward(*args)
        return (
            unpermute_steps(spikes, order, 1),
            unpermute_steps(saved, order, 1),
            unpermute_steps(v_seq, order, 1),
            unpermute_steps(v_last, order, 0),
        )
    if batch_first:
        raise ValueError("snn_cuda: a readout (NeuronLinear) needs batch_first=False")
    weight, bias = readout
    if torch.is_grad_enabled() and (need_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        return _NeuronLinearFn.apply(weight, bias, *args)
    wide = _wide_spikes(x)
    spikes, saved, v_seq, v_last = torch.ops.snn_cuda.neuron_forward(*args, not wide)
    return spikes_linear(spikes, weight, bias, wide), saved, v_seq, v_last
