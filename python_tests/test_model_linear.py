"""The declared-model ops as NeuronLinear needs them: byte spikes out of model_forward
(`spikes_uint8`) and the fused readout in model_backward (`readout_grad` / `readout_weight`).

- Byte spikes are the float spikes' values, one byte each (0/1, I-LIF's counts), with every other
  output bit-identical, for every model x variant x dtype.
- The CPU backward handed (gy, W) forms grad_spikes = gy W per row itself, k ascending: every
  output is bit-identical to the backward fed that product summed in the same order, parameter
  gradients included, replaying from checkpoints or reading the forward's state sequence.
- Bad readout arguments are errors naming them.
- NeuronLinear over Leaky (now a declared model) against the unfused composition and the
  reference is in test_neuron_linear.py; here its planted bug: a readout row offset by one step.
"""

from __future__ import annotations

import pytest
import torch

from snn_cuda._model_list import MODELS

from test_cupy import _model_args, needs_cpu_kernels
from test_model_state_seq import CASES  # every model x variant x dtype

pytestmark = needs_cpu_kernels

FWD = torch.ops.snn_cuda.model_forward.default
BWD = torch.ops.snn_cuda.model_backward.default
F32, F64 = torch.float32, torch.float64


def _ordered_readout(gy, w):
    # grad_spikes[..., f] = sum_k gy[..., k] W[k, f], k ascending from 0, one rounding per
    # multiply and per add: the readout row's order (cpu_kernels_impl.h readout_row).
    acc = torch.zeros((*gy.shape[:-1], w.shape[1]), dtype=gy.dtype)
    for k in range(w.shape[0]):
        acc = acc + gy[..., k : k + 1] * w[k]
    return acc


@pytest.mark.parametrize("name,variant,dtype", CASES, ids=[f"{n}-v{v}-{str(d)[6:]}" for n, v, d in CASES])
def test_byte_spikes_equal_spikes(name, variant, dtype):
    fa = _model_args(name, dtype, shape=(3, 70), steps=13, seed=variant)
    fa[5] = variant
    want = FWD(*fa)
    got = FWD(*fa, False, True)
    assert got[0].dtype == torch.uint8 and want[0].dtype == dtype
    assert 0 < int(got[0].count_nonzero()) < got[0].numel(), "degenerate data: every neuron fired or none did"
    if name == "ilif":
        assert int(got[0].max()) > 1, "no count above 1: the test would not see a 0/1 store"
    assert torch.equal(got[0], want[0].to(torch.uint8)), "byte spikes"
    for what, a, b in zip(("state_seq", "state_last", "ckpt"), got[1:], want[1:]):
        assert torch.equal(a, b), what


def _readout_case(name, variant, dtype, rows, feat, K, per_neuron, seed):
    fa = _model_args(name, dtype, shape=(rows, feat), steps=11, per_neuron=per_neuron, seed=seed)
    fa[5] = variant
    outs = FWD(*fa)
    g = torch.Generator().manual_seed(seed + 1)
    T = fa[0].shape[0]
    gy = torch.randn((T, rows, K), generator=g, dtype=F64).to(dtype)
    w = torch.randn((K, feat), generator=g, dtype=F64).to(dtype)
    glast = torch.randn(outs[2].shape, generator=g, dtype=F64).to(outs[2].dtype)
    return fa, outs, gy, w, glast


def _bwd(fa, outs, glast, seq, grad_params, **kw):
    args = dict(
        grad_spikes=None,
        grad_state_seq=None,
        grad_state_last=glast,
        x=fa[0],
        params=fa[1],
        state0=fa[2],
        ckpt=outs[3],
        T=fa[3],
        model=fa[4],
        variant=fa[5],
        surrogate=fa[6],
        surrogate_param=fa[7],
        detach_reset=fa[8],
        grad_params=grad_params,
        state_seq=outs[1] if seq else None,
    )
    args.update(kw)
    return torch.ops.snn_cuda.model_backward(**args)


READOUT_SHAPES = [
    (7, 1000, 10),  # blocks of neurons start and end inside rows
    (5, 37, 3),  # features not a multiple of the vector width
    (4, 16, 17),  # the op takes any K (NeuronLinear uses it up to 16)
    (2, 3000, 4),  # a row longer than a block
]


@pytest.mark.parametrize("with_seq", [False, True], ids=["replay", "state_seq"])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("rows,feat,K", READOUT_SHAPES, ids=[f"{r}x{f}-K{k}" for r, f, k in READOUT_SHAPES])
@pytest.mark.parametrize("name", list(MODELS))
def test_readout_backward_bitwise(name, rows, feat, K, dtype, with_seq):
    """model_backward(readout_grad=gy, readout_weight=W) == model_backward(grad_spikes=gy W
    summed in the readout row's order): grad_x, grad_state0 and the parameter sums, bitwise."""
    variant = (rows + K) % len(MODELS[name].variants)
    fa, outs, gy, w, glast = _readout_case(name, variant, dtype, rows, feat, K, per_neuron=K % 2 == 1, seed=K)
    gp = MODELS[name].param_grads
    want = _bwd(fa, outs, glast, with_seq, gp, grad_spikes=_ordered_readout(gy, w))
    got = _bwd(fa, outs, glast, with_seq, gp, readout_grad=gy, readout_weight=w)
    for what, a, b in zip(("grad_x", "grad_state0", "grad_params"), got, want):
        assert torch.equal(a, b), f"{what}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"
    assert float(want[0].abs().max()) > 0


def test_readout_backward_constant_input():
    """The constant-input form (x [...], T >= 0: grad_x summed over T) with a readout: the
    cache-sized blocks the driver takes when nothing streams."""
    fa = _model_args("leaky", F32, T=9, shape=(6, 700), state0=False, return_states=False, per_neuron=False)
    outs = FWD(*fa)
    g = torch.Generator().manual_seed(3)
    gy = torch.randn((9, 6, 5), generator=g)
    w = torch.randn((5, 700), generator=g)
    want = _bwd(fa, outs, None, False, False, grad_spikes=_ordered_readout(gy, w))
    got = _bwd(fa, outs, None, False, False, readout_grad=gy, readout_weight=w)
    assert got[0].shape == (6, 700)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_readout_errors_name_the_argument():
    fa, outs, gy, w, _ = _readout_case("leaky", 0, F32, 3, 8, 2, per_neuron=False, seed=1)
    with pytest.raises(ValueError, match="given together"):
        _bwd(fa, outs, None, False, False, readout_grad=gy)
    with pytest.raises(ValueError, match="grad_spikes must be None"):
        _bwd(fa, outs, None, False, False, grad_spikes=torch.zeros(outs[0].shape), readout_grad=gy, readout_weight=w)
    with pytest.raises(ValueError, match=r"readout_weight must be \[K, 8\]"):
        _bwd(fa, outs, None, False, False, readout_grad=gy, readout_weight=torch.zeros(2, 7))
    with pytest.raises(ValueError, match="readout_grad must have shape"):
        _bwd(fa, outs, None, False, False, readout_grad=torch.zeros(11, 3, 3), readout_weight=w)
    with pytest.raises(TypeError, match="readout_grad and readout_weight must be"):
        _bwd(fa, outs, None, False, False, readout_grad=gy.double(), readout_weight=w)
    with pytest.raises(ValueError, match="time-major"):
        _bwd(fa, outs, None, False, False, readout_grad=gy, readout_weight=w, batch_first=True)
    bf = _model_args("leaky", torch.bfloat16, shape=(3, 8), steps=11)
    bouts = FWD(*bf)
    with pytest.raises(TypeError, match="float32 or float64"):
        _bwd(bf, bouts, None, False, False, readout_grad=gy.bfloat16(), readout_weight=w.bfloat16())


def test_opcheck_byte_spikes_and_readout():
    fa = _model_args("synaptic", F32, shape=(3, 20), steps=6, return_states=False)
    fa[0] = fa[0].requires_grad_(True)
    # Not test_aot_dispatch_dynamic: its harness sums every output into a tensor started from the
    # first one, here uint8 (see test_neuron_linear.test_opcheck_byte_spikes).
    utils = ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.library.opcheck(FWD, (*fa, False, True), test_utils=utils)
    outs = FWD(*[t.detach() if isinstance(t, torch.Tensor) else t for t in fa])
    gy, w = torch.randn(6, 3, 4), torch.randn(4, 20)
    bargs = (None, None, None, fa[0].detach(), fa[1], fa[2], outs[3], *fa[3:9], True, False, None, gy, w)
    torch.library.opcheck(BWD, bargs, test_utils=("test_schema", "test_faketensor"))
