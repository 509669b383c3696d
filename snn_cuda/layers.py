"""Stateless helpers for time-major sequences."""
from __future__ import annotations

import torch
from torch import Tensor, nn


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


class PoissonEncoder(nn.Module):
    """Rate coding: `[B, ...]` intensities in [0, 1] -> `[T, B, ...]` spikes,
    each step firing with probability equal to the intensity."""

    def __init__(self, T: int):
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be a positive int, got {T!r}")
        self.T = T

    def forward(self, x: Tensor, generator: torch.Generator = None) -> Tensor:
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor of intensities, got {x.dtype}")
        r = torch.rand((self.T, *x.shape), device=x.device, dtype=x.dtype, generator=generator)
        return (r < x).to(x.dtype)

    def extra_repr(self) -> str:
        return f"T={self.T}"
