"""model_backward with the forward's state sequence (`state_seq`): the CPU kernels read the
states before each step from it instead of replaying the checkpoints. The states are the
forward's own bits either way, so every output of the backward must be bit-identical to the
replaying backward's, for every declared model, variant, dtype, layout and blocking; and the
layers' autograd must hand the sequence on whenever they return one."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda._model_list import MODELS

from test_cupy import _model_args, needs_cpu_kernels

pytestmark = needs_cpu_kernels

CASES = [
    (name, v, dt)
    for name, d in MODELS.items()
    for v in range(len(d.variants))
    for dt in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
]


def _bwd(fa, outs, seq, grad_params, gseq=True, seed=9):
    spikes, states, last, ckpt = outs
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    batch_first = fa[11] if len(fa) > 11 else False
    args = [rnd(spikes), rnd(states) if gseq else None, rnd(last), fa[0], fa[1], fa[2], ckpt, *fa[3:9]]
    return torch.ops.snn_cuda.model_backward(*args, grad_params, batch_first, seq)


def _check_equal(fa, grad_params=True, gseq=True):
    outs = torch.ops.snn_cuda.model_forward(*fa)
    assert outs[1].numel(), "the case must return its state sequence"
    a = _bwd(fa, outs, None, grad_params, gseq)
    b = _bwd(fa, outs, outs[1], grad_params, gseq)
    for name, r, s in zip(("grad_x", "grad_state0", "grad_params"), a, b):
        assert r.dtype == s.dtype and r.shape == s.shape, name
        assert torch.equal(r, s), f"{name}: max |diff| {(r.double() - s.double()).abs().max().item():.3g}"


@pytest.mark.parametrize("name,variant,dtype", CASES, ids=[f"{n}-v{v}-{str(d)[6:]}" for n, v, d in CASES])
def test_state_seq_backward_equals_replay(name, variant, dtype):
    fa = _model_args(name, dtype, seed=variant)
    fa[5] = variant
    _check_equal(fa, grad_params=MODELS[name].param_grads)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "shape,steps,state0,per_neuron,gseq,threads",
    [
        ((5000,), 13, True, True, True, 1),  # N past every block cap: several blocks
        ((5000,), 13, False, False, False, 2),
        ((3, 1500), 1, True, True, True, 2),  # T = 1: only the initial states
        ((7,), 17, False, True, True, 3),  # fewer neurons than threads' blocks
    ],
    ids=["N5000-1t", "N5000-init-2t", "T1-2t", "N7-3t"],
)
def test_state_seq_blocks_and_threads(name, shape, steps, state0, per_neuron, gseq, threads):
    fa = _model_args(name, torch.float32, shape=shape, steps=steps, state0=state0, per_neuron=per_neuron, seed=2)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check_equal(fa, grad_params=True, gseq=gseq)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("name", list(MODELS))
def test_state_seq_batch_first_and_constant_input(name):
    fa = _model_args(name, torch.float64, shape=(3, 4, 5), steps=10, seed=4)
    x_bf = fa[0].movedim(0, 1).contiguous()  # [B, T, ...]
    _check_equal([x_bf, *fa[1:], True])
    fa = _model_args(name, torch.float32, T=11, shape=(6, 700), state0=False, seed=5)
    _check_equal(fa)


def test_state_seq_errors_name_the_argument():
    fa = _model_args("synaptic", torch.float32, seed=1)
    outs = torch.ops.snn_cuda.model_forward(*fa)
    seq = outs[1]
    with pytest.raises(ValueError, match="state_seq"):
        _bwd(fa, outs, seq[:, :-1], True)
    with pytest.raises(TypeError, match="state_seq"):
        _bwd(fa, outs, seq.double(), True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck_with_state_seq(dtype):
    fa = _model_args("cuba_lif", dtype, seed=3)
    outs = torch.ops.snn_cuda.model_forward(*fa)
    g = [torch.randn_like(outs[0]), torch.randn_like(outs[1]), torch.randn_like(outs[2])]
    args = (*g, fa[0], fa[1], fa[2], outs[3], *fa[3:9], False, False, outs[1])
    torch.library.opcheck(torch.ops.snn_cuda.model_backward.default, args)


class _Calls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.backward_seq = []
        self.forward_save = []
        self.backward_ckpt = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.snn_cuda.model_backward.default:
            seq = kwargs.get("state_seq", args[15] if len(args) > 15 else None)
            self.backward_seq.append(seq)
            self.backward_ckpt.append(args[6])
        if func is torch.ops.snn_cuda.model_forward.default:
            self.forward_save.append(args[10])
        return func(*args, **kwargs)


class _SaveCheckpoints(TorchDispatchMode):
    """Runs model_forward with save=True whatever the layer asked for."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.snn_cuda.model_forward.default:
            args = (*args[:10], True, *args[11:])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("return_states", [True, False])
def test_layers_hand_the_sequence_to_the_backward(return_states):
    torch.manual_seed(0)
    layer = snn_cuda.Synaptic(alpha=0.8, beta=0.9, learn_beta=True, return_states=return_states)
    x = (torch.randn(12, 3, 50) + 0.5).requires_grad_()
    out = layer(x)
    loss = sum(o.sum() for o in out) if return_states else out.sum()
    with _Calls() as calls:
        loss.backward()
    assert len(calls.backward_seq) == 1
    seq = calls.backward_seq[0]
    if return_states:
        assert seq is not None and seq.shape == (2, 12, 3, 50)
    else:
        assert seq is None
    # the gradients are the replaying backward's (the reference run checks them elsewhere;
    # here both paths of the same build must agree bit for bit)
    gx, gb = x.grad.clone(), layer.beta.grad.clone()
    x.grad = None
    layer.beta.grad = None
    layer.reset()
    ref = reference_grads(layer, x, return_states)
    assert torch.equal(gx, ref[0]) and torch.equal(gb, ref[1])


def reference_grads(layer, x, return_states):
    """The same loss through model_backward without the sequence (the replay)."""
    from snn_cuda import model_ops

    orig = model_ops.torch.ops.snn_cuda.model_backward

    class _Drop(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = dict(kwargs or {})
            if func is orig.default:
                args = tuple(args[:15])
                kwargs.pop("state_seq", None)
            return func(*args, **kwargs)

    with _SaveCheckpoints():
        out = layer(x)
    loss = sum(o.sum() for o in out) if return_states else out.sum()
    with _Drop():
        loss.backward()
    return x.grad.clone(), layer.beta.grad.clone()


@pytest.mark.parametrize("return_states", [True, False])
def test_no_checkpoints_when_the_sequence_is_returned(return_states):
    """On the CPU a layer that returns its states saves no checkpoints (the backward reads the
    sequence); one that does not saves them, and the backward gets what the forward kept."""
    layer = snn_cuda.CUBALIF(return_states=return_states)
    x = torch.randn(10, 3, 20, requires_grad=True)
    with _Calls() as calls:
        out = layer(x)
        (out[0] if return_states else out).sum().backward()
    assert calls.forward_save == [not return_states]
    assert (calls.backward_ckpt[0].numel() == 0) == return_states
    assert (calls.backward_seq[0] is not None) == return_states


_LAYER_OF = {
    "synaptic": lambda: snn_cuda.Synaptic(alpha=0.8, beta=0.9, learn_beta=True),
    "cuba_lif": lambda: snn_cuda.CUBALIF(v_threshold=0.4, return_states=True),
    "leaky": lambda: snn_cuda.Leaky(beta=0.9, learn_threshold=True),
    "qif": lambda: snn_cuda.QIF(v_threshold=0.7, return_states=True),
    "adlif": lambda: snn_cuda.AdLIF(20, return_states=True),
}


@pytest.mark.parametrize("name", list(_LAYER_OF))
def test_x_is_not_kept_where_the_backward_does_not_read_it(name):
    """A layer returning its states on the CPU keeps, for a model whose backward reads no x
    (kBackwardReadsX = false, generated into ModelDecl.reads_x), one zero step expanded over time
    instead of the input: the backward gets a time stride of 0 and the same gradients as the
    replay from checkpoints with the real x. A model that reads x keeps x itself."""
    torch.manual_seed(0)
    x = torch.randn(10, 3, 20, requires_grad=True)
    layer = _LAYER_OF[name]()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = layer(x)
    kept_x = [t for t in saved if t.shape == x.shape and t.dtype == x.dtype]
    if MODELS[name].reads_x:
        assert any(t.data_ptr() == x.data_ptr() for t in kept_x)
    else:
        assert kept_x and all(t.data_ptr() != x.data_ptr() and t.stride(0) == 0 for t in kept_x)
        assert sum(t.untyped_storage().nbytes() for t in kept_x) <= x[0].nbytes
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(o.shape, generator=g) for o in outs]
    params = [p for p in layer.parameters()]
    got = torch.autograd.grad(outs, [x, *params], w)
    snn_cuda.functional.reset_net(layer)
    with _SaveCheckpoints():  # the replay from checkpoints, reading the real x
        ref_outs = layer(x)
    want = torch.autograd.grad(ref_outs, [x, *params], w)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


def test_empty_checkpoints_need_the_sequence():
    fa = _model_args("synaptic", torch.float32, seed=4)
    fa[10] = False  # save: no checkpoints
    outs = torch.ops.snn_cuda.model_forward(*fa)
    assert outs[3].numel() == 0
    g = torch.ones_like(outs[0])
    args = (g, None, None, fa[0], fa[1], fa[2], outs[3], *fa[3:9], True, False)
    with pytest.raises(ValueError, match="ckpt must be the forward's checkpoints"):
        torch.ops.snn_cuda.model_backward(*args)
    # with the sequence it runs, and equals the backward from checkpoints
    got = torch.ops.snn_cuda.model_backward(*args, outs[1])
    fa[10] = True
    ref_outs = torch.ops.snn_cuda.model_forward(*fa)
    ref = torch.ops.snn_cuda.model_backward(g, None, None, fa[0], fa[1], fa[2], ref_outs[3], *fa[3:9], True, False)
    for a, b in zip(got, ref):
        assert torch.equal(a, b)


def test_in_place_change_of_the_returned_sequence_is_an_error():
    """The backward reads the returned sequence, so an in-place change of it must be an error
    (instead of a silently wrong gradient): at the change itself for the states returned as views
    of one unbind (two states, model_ops.state_views), at the backward by autograd's version
    check for one state (a squeeze view)."""
    layer = snn_cuda.Synaptic(alpha=0.5, beta=0.5, return_states=True)
    x = torch.randn(6, 2, 8, requires_grad=True)
    spk, syn, mem = layer(x)
    with pytest.raises(RuntimeError, match="modified inplace"):
        mem.mul_(2)
    leaky = snn_cuda.Leaky(beta=0.5)
    spk, mem = leaky(x)
    mem.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (spk.sum() + mem.sum()).backward()


def test_surrogate_and_detach_reset_reach_the_sequence_path():
    fa = _model_args("cuba_lif", torch.float64, seed=6)
    fa[6], fa[8] = sg.Sigmoid.kind_id, True
    _check_equal(fa, grad_params=False)
