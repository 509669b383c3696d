"""snnTorch `Leaky` as a declared model (csrc/kernels/models/leaky.h). Its layer and reference
loop predate the declarations and stay where users import them from (snn_cuda.Leaky in
snn_cuda/neuron.py, snn_cuda.reference.leaky_reference); this file enters them in the registry of
the declared models' layers and references."""

from __future__ import annotations

from ..neuron import Leaky
from ..reference import leaky_reference

__all__ = ["Leaky", "leaky_reference"]
