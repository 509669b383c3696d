"""The declared models' two CPU row flavours give the same bits.

The CPU rows of every declared model come in two flavours of one code path (csrc/cpu/
cpu_kernels_impl.h): with one value per parameter (P = 1) and no parameter-gradient sums asked
for, the parameters sit in registers and the gradient rows are not touched; otherwise each
neuron reads its own column of `params` and the sums are formed. The arithmetic is the same, so
the same parameter values must give the same bits through both: here P = 1 runs the scalar
flavour and the same values repeated over P = N columns run the per-neuron flavour, and so does
P = 1 with `grad_params=True`. Every output is compared bit for bit, forward and backward, with
and without the returned state sequence, for every model, variant and dtype.
"""

from __future__ import annotations

import pytest
import torch

from snn_cuda._model_list import MODELS

from test_cupy import _model_args, needs_cpu_kernels
from test_model_state_seq import CASES  # every model x variant x dtype

pytestmark = needs_cpu_kernels


def _run(fa, grad_params, with_seq, seed=5):
    outs = torch.ops.snn_cuda.model_forward(*fa)
    spikes, states, last, ckpt = outs
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    grads = torch.ops.snn_cuda.model_backward(
        rnd(spikes),
        rnd(states),
        rnd(last),
        fa[0],
        fa[1],
        fa[2],
        ckpt,
        *fa[3:9],
        grad_params,
        False,
        states if with_seq else None,
    )
    return outs[:3], grads


@pytest.mark.parametrize("with_seq", [False, True], ids=["replay", "state_seq"])
@pytest.mark.parametrize("name,variant,dtype", CASES, ids=[f"{n}-v{v}-{str(d)[6:]}" for n, v, d in CASES])
def test_scalar_rows_equal_per_neuron_rows(name, variant, dtype, with_seq):
    scalar = _model_args(name, dtype, shape=(3, 70), steps=13, per_neuron=False, seed=variant)
    scalar[5] = variant
    n = scalar[0][0].numel()
    wide = list(scalar)
    wide[1] = scalar[1].expand(-1, n).contiguous()  # the same values, one column per neuron
    fwd_s, bwd_s = _run(scalar, False, with_seq)  # the scalar flavour
    fwd_w, bwd_w = _run(wide, False, with_seq)  # per-neuron rows
    for what, a, b in zip(("spikes", "state_seq", "state_last"), fwd_s, fwd_w):
        assert torch.equal(a, b), what
    for what, a, b in zip(("grad_x", "grad_state0"), bwd_s[:2], bwd_w[:2]):
        assert torch.equal(a, b), f"{what}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"
    if MODELS[name].param_grads:
        # P = 1 asking for parameter gradients takes the per-neuron flavour: the same grad_x,
        # and the per-neuron sums of the wide run
        _, bwd_g = _run(scalar, True, with_seq)
        _, bwd_wg = _run(wide, True, with_seq)
        assert torch.equal(bwd_g[0], bwd_s[0])
        assert torch.equal(bwd_g[2], bwd_wg[2])
