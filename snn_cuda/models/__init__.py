"""The declared neuron models' Python side: one file per model, holding its layer and its
pure-PyTorch reference loop, beside its math in csrc/kernels/models/<name>.h.

The files are found through the generated model list (snn_cuda/_model_list.py), so adding a
model edits no list here: `LAYERS` (exported by `snn_cuda` and `snn_cuda.multistate`) and
`REFERENCES` (exported by `snn_cuda.reference`) are collected from each file's `__all__`
(the names ending in `_reference` are its reference loops).
"""

from __future__ import annotations

import importlib

from .._model_list import MODELS

LAYERS = {}
REFERENCES = {}
for _name in MODELS:
    _mod = importlib.import_module(f".{_name}", __name__)
    for _export in _mod.__all__:
        (REFERENCES if _export.endswith("_reference") else LAYERS)[_export] = getattr(_mod, _export)

__all__ = ["LAYERS", "REFERENCES"]
