"""snn_cuda: fused multi-step spiking neurons (LIF, IF, ParametricLIF, Leaky, Synaptic, CUBALIF, AdLIF, ILIF, QIF) for PyTorch.

import snn_cuda
lif = snn_cuda.LIF(tau=2.0)            # [T, B, ...] -> spikes [T, B, ...]
snn_cuda.build_info()                   # which kernels were compiled
"""

from __future__ import annotations

import torch

from . import _ext, functional, ops, reference, surrogate
from . import spike_ops  # spike_linear ops: fake kernels and autograd (registered if the extension loaded)
from . import model_ops  # declared-model ops: fake kernels and autograd
from .convert import convert
from . import compat  # patch_spikingjelly(): legacy SpikingJelly backend='cupy' models on the fused kernels
from .layers import PoissonEncoder, SeqToANN, SpikeLinear, poisson_encode
from .neuron import IF, LIF, Leaky, MemoryModule, NeuronLinear, ParametricLIF, SynapticCurrent
from . import multistate
from .multistate import *  # noqa: F401,F403  (the declared-model layers: multistate.__all__)

from ._version import __version__  # the one version source (snn_cuda/_version.py)

__all__ = [
    "LIF",
    "IF",
    "ParametricLIF",
    "Leaky",
    "SynapticCurrent",
    "NeuronLinear",
    "MemoryModule",
    "SeqToANN",
    "SpikeLinear",
    "PoissonEncoder",
    "poisson_encode",
    "convert",
    "compat",
    "surrogate",
    "functional",
    "reference",
    "ops",
    "build_info",
] + list(multistate.__all__)


def build_info() -> dict:
    """What was compiled and why a backend may be missing. `cuda` is the compiled CUDA kernels;
    `cuda_backend` says what runs CUDA tensors ("compiled", "cupy": the same kernels compiled at
    run time through CuPy/NVRTC, or None: the reference), and `cupy` describes the CuPy path
    (CuPy, CUDA runtime/driver and NVRTC versions it found, or why it cannot run)."""
    cuda_reason = _ext.unavailable_reason("cuda")
    return {
        "version": __version__,
        "torch": torch.__version__,
        "extension_loaded": _ext.loaded,
        "cpu": _ext.cpu_available(),
        # the CPU kernels' instruction-set variant (SNN_CUDA_CPU_ISA forces one)
        "cpu_isa": _ext.cpu_isa(),
        "cuda": _ext.cuda_available(),
        "cuda_device_visible": torch.cuda.is_available(),
        "load_error": _ext.load_error,
        "cpu_reason": _ext.unavailable_reason("cpu"),
        "cuda_reason": cuda_reason,
        "cuda_backend": _ext.cuda_backend() if not cuda_reason else None,
        "cupy": _ext.cupy_info(),
        "built_with": dict(_ext.build),
    }
