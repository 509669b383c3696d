"""A Linear layer fed spikes stored one byte per element: torch.ops.snn_cuda.spike_linear and
spike_linear_weight_grad (schemas in csrc/ops.cpp, CPU kernels in csrc/cpu/spike_linear_cpu.cpp)
with their fake (meta) kernels and autograd, and the functional entry point `spike_linear`.

    y = spike_linear(spikes_u8, weight, bias)   # == F.linear((spikes_u8 != 0).to(weight.dtype), weight, bias)

Backward gives weight and bias gradients; the spikes (uint8) get none.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _ext

__all__ = ["spike_linear"]


if _ext.loaded:

    @torch.library.register_fake("snn_cuda::spike_linear")
    def _spike_linear_fake(spikes, weight, bias):
        torch._check(spikes.dtype == torch.uint8, lambda: f"snn_cuda: spikes must be uint8, got {spikes.dtype}")
        torch._check(spikes.dim() >= 1, lambda: "snn_cuda: spikes must have at least 1 dimension ([..., N])")
        torch._check(weight.dim() == 2, lambda: f"snn_cuda: weight must be 2-D ([K, N]), got {tuple(weight.shape)}")
        torch._check(
            weight.shape[1] == spikes.shape[-1], lambda: "snn_cuda: weight.size(1) must equal spikes.size(-1) (N)"
        )
        return weight.new_empty((*spikes.shape[:-1], weight.shape[0]))

    @torch.library.register_fake("snn_cuda::spike_linear_weight_grad")
    def _spike_linear_weight_grad_fake(grad_out, spikes):
        torch._check(spikes.dtype == torch.uint8, lambda: f"snn_cuda: spikes must be uint8, got {spikes.dtype}")
        torch._check(
            spikes.dim() >= 1 and grad_out.dim() == spikes.dim(),
            lambda: "snn_cuda: grad_out ([..., K]) must have the leading dimensions of spikes ([..., N])",
        )
        return grad_out.new_empty((grad_out.shape[-1], spikes.shape[-1]))

    def _spike_linear_setup_context(ctx, inputs, output):
        spikes, weight, bias = inputs
        # the uint8 spikes are all the weight gradient needs (no copy: the input itself)
        ctx.save_for_backward(spikes if weight.requires_grad else None)
        ctx.has_bias = bias is not None

    def _spike_linear_backward(ctx, grad_out):
        (spikes,) = ctx.saved_tensors
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.snn_cuda.spike_linear_weight_grad(grad_out, spikes)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_out.reshape(-1, grad_out.shape[-1]).sum(0)
        return None, grad_w, grad_b

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


def spike_linear(spikes: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear`` for spikes stored one byte per element.

    Args:
        spikes: ``[..., N]`` uint8; a nonzero byte is a spike (1), zero is none.
        weight: ``[K, N]`` float32, float64, float16 or bfloat16.
        bias: ``[K]`` of weight's dtype, or None.

    Returns:
        ``[..., K]`` in weight's dtype: ``F.linear((spikes != 0).to(weight.dtype), weight, bias)``.

    On the CPU, float32/float64 with K up to a measured threshold run kernels that read the bytes
    directly and whose results do not depend on the ISA or the thread count (the forward sums in a
    fixed order; each weight-gradient element is the plain sequential sum over rows); float16,
    bfloat16, larger K and CUDA tensors run torch's GEMM on the widened spikes. Differentiable in
    weight and bias (the backward keeps the uint8 spikes, not a float copy); not twice.
    """
    if not _ext.loaded:
        raise RuntimeError(f"snn_cuda: spike_linear needs the compiled extension ({_ext.load_error})")
    return torch.ops.snn_cuda.spike_linear(spikes, weight, bias)
