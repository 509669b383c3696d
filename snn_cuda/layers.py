"""Stateless helpers for time-major sequences."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import _ext, ops


class SeqToANN(nn.Sequential):
    """Applies stateless modules to a `[T, B, ...]` sequence as one
    `[T*B, ...]` batch (one Linear/Conv call for all steps) and restores the
    time dimension."""

    def forward(self, x_seq: Tensor) -> Tensor:
        if not isinstance(x_seq, Tensor) or x_seq.dim() < 2:
            raise ValueError("SeqToANN expects a [T, B, ...] tensor with at least 2 dims")
        T, B = x_seq.shape[0], x_seq.shape[1]
        y = super().forward(x_seq.flatten(0, 1))
        return y.unflatten(0, (T, B))


def _key_device(x: Tensor, generator: Optional[torch.Generator]) -> torch.device:
    """Where the encoder's random numbers are drawn: on the generator's device (x's default
    generator when None). A CPU generator serves any input (its draws are copied where needed);
    a generator on another accelerator than x's would need a device-to-host read: refused."""
    if generator is None:
        return x.device
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    dev = generator.device
    if dev.type != "cpu" and dev.type != x.device.type:
        raise ValueError(
            f"generator is on {dev} but x is on {x.device}: pass a generator on x's device or a CPU generator"
        )
    return dev if dev.type == "cpu" else x.device


def poisson_encode(x: Tensor, T: int, generator: Optional[torch.Generator] = None, backend: str = "auto") -> Tensor:
    """Rate coding: `[B, ...]` intensities -> `[T, B, ...]` spikes in x's dtype, each element
    firing with probability equal to its intensity.

    The fused kernel draws from a counter-based generator (Philox) whose 64-bit key torch's
    generator draws at every call, as a tensor: `generator`, or the default generator of x's
    device. The key never becomes a Python number, so nothing synchronises with the device,
    `torch.compile(fullgraph=True)` traces the call, and a captured CUDA graph draws a fresh key
    (hence fresh spikes) at every replay. `torch.manual_seed` makes runs reproducible; the same
    CPU generator state gives the same spikes for CPU and CUDA inputs (a CPU generator works for
    inputs on any device; one on another device than x's is refused). For CUDA-graph capture use
    the default or a CUDA generator: a CPU generator's key is read when the op is called, so a
    replay would repeat it.
    The reference (`backend="torch"`) is `torch.rand(...) < x`, drawn from the same generator."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor of intensities, got {getattr(x, 'dtype', type(x))}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    if backend not in ("auto", "fused", "torch"):
        raise ValueError(f"backend must be one of 'auto', 'fused', 'torch', got {backend!r}")
    dev = _key_device(x, generator)
    reason = ops.unavailable_reason(x.device.type, x, backend) if x.dtype in ops.FUSED_DTYPES else f"dtype {x.dtype}"
    if backend == "fused" and reason:
        raise RuntimeError(f"snn_cuda: backend='fused' cannot run the Poisson encoder here: {reason}")
    if backend == "torch" or reason:
        r = torch.rand((T, *x.shape), device=dev, dtype=x.dtype, generator=generator)
        return (r.to(x.device, non_blocking=True) < x).to(x.dtype)
    # The key as drawn before (same range, same generator call): a CPU run keeps its spikes for a
    # given seed. A CPU key beside a CUDA x is read by the op when called (host memory).
    key = torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, device=dev, generator=generator)
    return torch.ops.snn_cuda.poisson_encode(x.detach(), T, key)


class PoissonEncoder(nn.Module):
    """Rate coding layer: `[B, ...]` intensities in [0, 1] -> `[T, B, ...]`
    spikes (see `poisson_encode`)."""

    def __init__(self, T: int, backend: str = "auto"):
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
        if backend not in ("auto", "fused", "torch"):
            raise ValueError(f"backend must be one of 'auto', 'fused', 'torch', got {backend!r}")
        self.T = T
        self.backend = backend

    def forward(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return poisson_encode(x, self.T, generator=generator, backend=self.backend)

    def extra_repr(self) -> str:
        return f"T={self.T}, backend={self.backend!r}"


# Device types whose compiled ops narrow / widen spikes (looked up once: the layers consult them on
# every call, also while torch.compile traces them). Elsewhere torch's own conversions do it.
_BYTE_KERNELS = {
    dev: _ext.has_kernel("binary_to_uint8", key) and _ext.has_kernel("uint8_to", key)
    for dev, key in (("cpu", "CPU"), ("cuda", "CUDA"), ("meta", "Meta"))
}

_COUNT_KERNELS = {
    dev: _ext.has_kernel("counts_to_uint8", key) for dev, key in (("cpu", "CPU"), ("cuda", "CUDA"), ("meta", "Meta"))
}


def _to_bytes(x: Tensor) -> Tensor:
    """Spikes as bytes (x != 0). Never looks at whether x is binary: the caller knows."""
    if _BYTE_KERNELS.get(x.device.type, False) and x.dtype in ops.FUSED_DTYPES:
        return torch.ops.snn_cuda.binary_to_uint8(x)
    return x.ne(0).to(torch.uint8)


def _from_bytes(x: Tensor, dtype: torch.dtype) -> Tensor:
    if _BYTE_KERNELS.get(x.device.type, False) and dtype in ops.FUSED_DTYPES:
        return torch.ops.snn_cuda.uint8_to(x, dtype)
    return x.to(dtype)


def _counts_to_bytes(x: Tensor, max_count: int, trusted: bool) -> Tensor:
    """Integer counts as bytes. Checked (an error naming x) unless `trusted` and on a GPU: the
    CPU op checks in its narrowing pass anyway, the GPU check costs several passes more."""
    if trusted and x.device.type != "cpu":
        return x.to(torch.uint8)
    if _COUNT_KERNELS.get(x.device.type, False) and x.dtype in ops.FUSED_DTYPES:
        return torch.ops.snn_cuda.counts_to_uint8(x, max_count)
    bad = (x < 0) | (x > max_count) | (x != x.trunc())
    if bool(bad.any()):
        raise ValueError(f"x must hold integer counts in [0, {max_count}] to be stored as uint8")
    return x.to(torch.uint8)


# Outputs up to which spike_linear's byte kernel beats MKL on the fp32 spikes (csrc/cpu/spike_linear_cpu.cpp,
# kFwdMaxK: measured crossover 40-48 on the 2-core AVX-512 machine).
_BYTE_FORWARD_MAX_OUT = 40


class _SpikeLinearFn(torch.autograd.Function):
    """y = x W^T + b for 0/1 spikes x (the caller vouches), saving x as uint8 (1 byte instead of
    4 per element for fp32 spikes). On the CPU, for a few outputs, x is multiplied as bytes
    (spike_linear) and the weight gradient read from them (spike_linear_weight_grad).

    max_count: x holds integer counts 0..max_count (I-LIF) instead of spikes, narrowed by
    counts_to_uint8 (checked; `trusted` skips the GPU check for a producer that guarantees them)
    and multiplied as values. The gradient to x is gy W either way, as F.linear's."""

    @staticmethod
    def forward(ctx, x, weight, bias, max_count=None, trusted=False):
        byte_ops = (
            x.device.type == "cpu"
            and _ext.cpu_available()
            and x.dtype in (torch.float32, torch.float64)
            and weight.dtype == x.dtype
        )
        small = byte_ops and weight.shape[0] <= _BYTE_FORWARD_MAX_OUT
        counts = max_count is not None
        # Only the weight gradient reads x: spikes (and integer counts) lose nothing as uint8.
        narrow = None
        if weight.requires_grad or small:
            narrow = _counts_to_bytes(x, max_count, trusted) if counts else _to_bytes(x)
        if small:
            y = torch.ops.snn_cuda.spike_linear(narrow, weight, bias, counts)
        else:
            y = torch.nn.functional.linear(x, weight, bias)
        ctx.counts = counts
        ctx.byte_ops = byte_ops
        ctx.x_dtype = x.dtype
        ctx.has_bias = bias is not None
        ctx.save_for_backward(narrow if weight.requires_grad else None, weight)
        return y

    @staticmethod
    def backward(ctx, gy):
        xs, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = gy.matmul(weight.to(gy.dtype))
        if ctx.needs_input_grad[1]:
            if ctx.byte_ops and gy.dtype == ctx.x_dtype:
                gw = torch.ops.snn_cuda.spike_linear_weight_grad(gy, xs, ctx.counts)
            else:
                x = xs.to(gy.dtype) if ctx.counts else _from_bytes(xs, gy.dtype)
                gw = gy.reshape(-1, gy.shape[-1]).t().matmul(x.reshape(-1, x.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.reshape(-1, gy.shape[-1]).sum(0)
        return gx, gw, gb, None, None


class SpikeLinear(nn.Linear):
    """`nn.Linear` for spike inputs: same parameters and state_dict.

    `binary=True` declares that the input holds only 0 and 1 (spikes from a snn_cuda neuron or
    the Poisson encoder, for instance); the layer then saves it for backward as uint8, 4x less
    activation memory than fp32 spikes (2x for 16-bit), and on the CPU (fp32/fp64) computes the
    weight gradient from those bytes, and with up to 40 outputs the forward too
    (`spike_linear`): values and gradients are `nn.Linear`'s up to the summation order (each
    spike-times-weight product is exact). The values are never checked (on a GPU that check is
    a host synchronisation per step): an input with other values gets a wrong weight gradient.
    `binary=False` (the default) is `nn.Linear`. A uint8 input is spikes stored as bytes (a
    nonzero byte is a spike) whatever `binary` says: the type vouches for the values, and the
    layer runs `spike_linear` on it.

    `counts=True` declares integer spike counts 0..255 instead (`snn_cuda.ILIF`'s output): they
    are saved as uint8 the same way, checked as they are narrowed (a value that is not such a
    count is a ValueError naming x on the CPU; on CUDA a device-side assertion, never a host
    synchronisation), and multiplied as values; a uint8 input is then counts, not spikes. Results
    are `nn.Linear`'s on the float counts up to the summation order and one rounding per
    count-times-weight product."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device=None,
        dtype=None,
        binary: bool = False,
        counts: bool = False,
    ):
        if not isinstance(binary, bool):
            raise TypeError(f"binary must be a bool, got {type(binary).__name__}")
        if not isinstance(counts, bool):
            raise TypeError(f"counts must be a bool, got {type(counts).__name__}")
        if binary and counts:
            raise ValueError("binary and counts cannot both be True: the input is either 0/1 spikes or counts")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.binary = binary
        self.counts = counts

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, 255, False)

    def _forward(self, x: Tensor, max_count: int, trusted: bool) -> Tensor:
        # max_count / trusted: the bound and the guarantee of a counts producer (NeuronLinear's ILIF).
        counts = getattr(self, "counts", False)  # modules pickled before the attribute
        if isinstance(x, Tensor):
            ops.check_device("SpikeLinear.weight", self.weight, x)
            if x.dtype == torch.uint8:
                if _ext.loaded:
                    return torch.ops.snn_cuda.spike_linear(x, self.weight, self.bias, counts)
                return super().forward(x.to(self.weight.dtype) if counts else x.ne(0).to(self.weight.dtype))
        if (
            (self.binary or counts)
            and torch.is_grad_enabled()
            and (x.requires_grad or self.weight.requires_grad)
            and x.dtype in ops.FUSED_DTYPES
        ):
            return _SpikeLinearFn.apply(x, self.weight, self.bias, max_count if counts else None, trusted)
        return super().forward(x)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + (", binary=True" if self.binary else "")
            + (", counts=True" if getattr(self, "counts", False) else "")
        )
