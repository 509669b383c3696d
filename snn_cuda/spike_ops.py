"""A Linear layer fed spikes stored one byte per element: torch.ops.snn_cuda.spike_linear and
spike_linear_weight_grad (schemas in csrc/ops.cpp, CPU kernels in csrc/cpu/spike_linear_cpu.cpp)
with their fake (meta) kernels and autograd, and the functional entry point `spike_linear`.

    y = spike_linear(spikes_u8, weight, bias)   # == F.linear((spikes_u8 != 0).to(weight.dtype), weight, bias)
    y = spike_linear(counts_u8, weight, bias, counts=True)   # ~ F.linear(counts_u8.to(weight.dtype), ...)

Backward gives weight and bias gradients; the spikes (uint8) get none. `counts_to_uint8` stores
integer spike counts (I-LIF's, 0..255) as those bytes, refusing any other value.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _ext

__all__ = ["spike_linear", "counts_to_uint8"]


if _ext.loaded:

    @torch.library.register_fake("snn_cuda::spike_linear")
    def _spike_linear_fake(spikes, weight, bias, counts=False):
        torch._check(spikes.dtype == torch.uint8, lambda: f"snn_cuda: spikes must be uint8, got {spikes.dtype}")
        torch._check(spikes.dim() >= 1, lambda: "snn_cuda: spikes must have at least 1 dimension ([..., N])")
        torch._check(weight.dim() == 2, lambda: f"snn_cuda: weight must be 2-D ([K, N]), got {tuple(weight.shape)}")
        torch._check(
            weight.shape[1] == spikes.shape[-1], lambda: "snn_cuda: weight.size(1) must equal spikes.size(-1) (N)"
        )
        return weight.new_empty((*spikes.shape[:-1], weight.shape[0]))

    @torch.library.register_fake("snn_cuda::spike_linear_weight_grad")
    def _spike_linear_weight_grad_fake(grad_out, spikes, counts=False):
        torch._check(spikes.dtype == torch.uint8, lambda: f"snn_cuda: spikes must be uint8, got {spikes.dtype}")
        torch._check(
            spikes.dim() >= 1 and grad_out.dim() == spikes.dim(),
            lambda: "snn_cuda: grad_out ([..., K]) must have the leading dimensions of spikes ([..., N])",
        )
        return grad_out.new_empty((grad_out.shape[-1], spikes.shape[-1]))

    @torch.library.register_fake("snn_cuda::counts_to_uint8")
    def _counts_to_uint8_fake(x, max_count):
        torch._check(
            x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16),
            lambda: f"snn_cuda: x must be float32, float64, float16 or bfloat16, got {x.dtype}",
        )
        torch._check(1 <= max_count <= 255, lambda: f"snn_cuda: max_count must be in [1, 255], got {max_count}")
        return x.new_empty(x.shape, dtype=torch.uint8)

    def _spike_linear_setup_context(ctx, inputs, output):
        spikes, weight, bias = inputs[:3]
        # the uint8 spikes are all the weight gradient needs (no copy: the input itself)
        ctx.save_for_backward(spikes if weight.requires_grad else None)
        ctx.has_bias = bias is not None
        ctx.counts = bool(inputs[3]) if len(inputs) > 3 else False

    def _spike_linear_backward(ctx, grad_out):
        (spikes,) = ctx.saved_tensors
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.snn_cuda.spike_linear_weight_grad(grad_out, spikes, ctx.counts)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return None, grad_w, grad_b, None

    torch.library.register_autograd(
        "snn_cuda::spike_linear", _spike_linear_backward, setup_context=_spike_linear_setup_context
    )

    def _weight_grad_no_double_backward(ctx, *grads):
        raise RuntimeError(
            "snn_cuda: double backward (create_graph=True through spike_linear's weight gradient) is not "
            "supported; use torch.nn.functional.linear on (spikes != 0).to(weight.dtype) for higher-order "
            "gradients"
        )

    torch.library.register_autograd("snn_cuda::spike_linear_weight_grad", _weight_grad_no_double_backward)

    # Autocast. Without a rule of their own the ops fall through the autocast keys, and their
    # kernels' at::linear / at::mm fallbacks were then autocast inside the kernel: a CUDA
    # spike_linear returned the autocast dtype while its fake kernel (weight's dtype) said
    # float32. spike_linear follows F.linear (it stands in for nn.Linear): weight and bias are
    # cast to the autocast dtype of the moment, then the op runs with autocast off, so the result
    # is that dtype on every path, fake included. The weight gradient keeps its inputs' dtype
    # (autograd brings it back to the weight's), also with autocast off.
    _lib = torch.library.Library("snn_cuda", "FRAGMENT")

    def _register_autocast(name: str, device_type: str, cast: bool) -> None:
        op = getattr(torch.ops.snn_cuda, name).default
        key_name = "Autocast" + torch._C._dispatch_key_for_device(device_type)
        key = getattr(torch._C.DispatchKey, key_name)

        def impl(*args):
            if cast:
                dtype = torch.get_autocast_dtype(device_type)
                args = tuple(
                    a.to(dtype)
                    if isinstance(a, Tensor) and a.is_floating_point() and a.device.type == device_type
                    else a
                    for a in args
                )
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
                return op(*args)

        # The Python kernel serves torch.compile's tracing; the registered one eager calls.
        if op.has_kernel_for_dispatch_key(key):
            op.py_kernels.pop(key, None)
        op.py_impl(key)(impl)
        _lib.impl(name, lambda _keyset, *args: impl(*args), key_name, with_keyset=True)

    for _device_type in ("cpu", "cuda"):
        _register_autocast("spike_linear", _device_type, cast=True)
        _register_autocast("spike_linear_weight_grad", _device_type, cast=False)


def spike_linear(spikes: Tensor, weight: Tensor, bias: Optional[Tensor] = None, counts: bool = False) -> Tensor:
    """``F.linear`` for spikes stored one byte per element.

    Args:
        spikes: ``[..., N]`` uint8; a nonzero byte is a spike (1), zero is none; with
            ``counts=True`` a byte is an integer spike count 0..255 (I-LIF's output).
        weight: ``[K, N]`` float32, float64, float16 or bfloat16.
        bias: ``[K]`` of weight's dtype, or None.
        counts: read the bytes as counts (values) instead of spikes.

    Returns:
        ``[..., K]`` in weight's dtype: ``F.linear((spikes != 0).to(weight.dtype), weight, bias)``,
        or with ``counts=True`` ``F.linear(spikes.to(weight.dtype), weight, bias)`` up to the
        summation order (a count times a weight is rounded once; the CPU kernels multiply, then
        add, on every ISA, so their bits do not depend on it).

    On the CPU, float32/float64 with K up to a measured threshold run kernels that read the bytes
    directly and whose results do not depend on the ISA or the thread count (the forward sums in a
    fixed order; each weight-gradient element is the plain sequential sum over rows); float16,
    bfloat16, larger K and CUDA tensors run torch's GEMM on the widened spikes. Differentiable in
    weight and bias (the backward keeps the uint8 spikes, not a float copy); not twice.
    """
    if not isinstance(counts, bool):
        raise TypeError(f"counts must be a bool, got {type(counts).__name__}")
    if not _ext.loaded:
        raise RuntimeError(f"snn_cuda: spike_linear needs the compiled extension ({_ext.load_error})")
    return torch.ops.snn_cuda.spike_linear(spikes, weight, bias, counts)


def counts_to_uint8(x: Tensor, max_count: int = 255) -> Tensor:
    """Integer spike counts (0..``max_count``, at most 255) of a floating tensor as uint8.

    Any other value (a fraction, a negative or larger value, NaN, inf) raises a ValueError naming
    ``x`` on the CPU (checked in the same pass). On CUDA the check runs on the device
    (``torch._assert_async``): no host synchronisation, and a bad value fails the next
    synchronising call as a device-side assertion instead of this one.
    """
    if isinstance(max_count, bool) or not isinstance(max_count, int):
        raise TypeError(f"max_count must be an int, got {type(max_count).__name__}")
    if not _ext.loaded:
        raise RuntimeError(f"snn_cuda: counts_to_uint8 needs the compiled extension ({_ext.load_error})")
    return torch.ops.snn_cuda.counts_to_uint8(x, max_count)
