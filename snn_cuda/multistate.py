"""The declared-model layers (Synaptic, CUBALIF, AdLIF, ILIF, ...), gathered from their files in
snn_cuda/models/: kept as a module so `from snn_cuda.multistate import Synaptic` still works."""

from __future__ import annotations

from .models import LAYERS as _LAYERS

globals().update(_LAYERS)
__all__ = list(_LAYERS)
