"""Whole-network helpers: state reset between batches, detach for truncated
BPTT, switching step mode and backend."""

from __future__ import annotations

from torch import nn

from .neuron import BACKENDS, STEP_MODES, MemoryModule, _check_choice


def _memory_modules(net: nn.Module):
    for m in net.modules():
        if isinstance(m, MemoryModule):
            yield m


def reset_net(net: nn.Module) -> None:
    """Reset the membrane state of every snn_cuda neuron in `net` (call it
    before each new batch, as with SpikingJelly's reset_net)."""
    for m in _memory_modules(net):
        m.reset()


def detach_net(net: nn.Module) -> None:
    """Detach every neuron's state from the graph while keeping its value:
    truncated BPTT, i.e. run a long sequence in chunks and call backward on
    each chunk."""
    for m in _memory_modules(net):
        m.detach()


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    _check_choice("step_mode", step_mode, STEP_MODES)
    for m in _memory_modules(net):
        m.step_mode = step_mode


def set_backend(net: nn.Module, backend: str) -> None:
    _check_choice("backend", backend, BACKENDS)
    for m in _memory_modules(net):
        m.backend = backend
