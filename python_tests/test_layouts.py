"""Layouts read in place: `batch_first=True` on every multi-step layer ([B, T, ...] sequences read
and written in place by the fused kernels, csrc/kernels/params.h SeqLayout) and channels-last
conv activations (steps run in memory order, snn_cuda.ops.step_memory_order).

The kernels compute each neuron's recurrence in the same order in both layouts and the
parameter sums are per neuron (neuron order is [B, ...] in both), so a batch-first run must equal
the time-major run of the transposed input bit for bit: outputs, final states, the gradient to x
and the parameter gradients. Covered: every layer, dtypes, both backward storages, constant
input, non-contiguous inputs (copied), blocks that split a sample's run, 1-3 threads, opcheck of the four ops with
batch_first, torch.compile, the reference backend, and the errors."""

from __future__ import annotations

import copy

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg

from testing import assert_equal, dtype_id

DTYPES = [torch.float32, torch.float64, torch.bfloat16]

# (id, constructor taking the feature count F): each crosses its threshold at some steps for
# the inputs below.
LAYERS = [
    ("lif", lambda F: snn_cuda.LIF(tau=2.0, v_threshold=0.6)),
    ("lif-soft-vseq", lambda F: snn_cuda.LIF(v_reset=None, detach_reset=True, store_v_seq=True, v_threshold=0.6)),
    ("lif-ckpt", lambda F: _storage(snn_cuda.LIF(v_threshold=0.6, surrogate=sg.ATan()), "checkpoint")),
    ("if-floor", lambda F: snn_cuda.IF(v_floor=-0.5, v_threshold=0.8)),
    ("plif-learn", lambda F: snn_cuda.ParametricLIF(init_tau=2.5, learn_threshold=True, param_shape=(F,))),
    ("leaky", lambda F: snn_cuda.Leaky(beta=0.8, threshold=0.7)),
    ("leaky-zero-nomem", lambda F: snn_cuda.Leaky(beta=0.8, threshold=0.7, reset_mechanism="zero", return_mem=False)),
    (
        "leaky-learn",
        lambda F: snn_cuda.Leaky(
            beta=torch.linspace(0.5, 0.95, F), threshold=0.7, learn_beta=True, learn_threshold=True, param_shape=(F,)
        ),
    ),
    ("syncurrent", lambda F: snn_cuda.SynapticCurrent(decay=0.7)),
    ("synaptic", lambda F: snn_cuda.Synaptic(alpha=0.6, beta=0.8, threshold=0.8)),
    (
        "synaptic-learn-nostates",
        lambda F: snn_cuda.Synaptic(alpha=0.6, beta=0.8, threshold=0.8, learn_alpha=True, return_states=False),
    ),
    ("cubalif", lambda F: snn_cuda.CUBALIF(return_states=True)),
    ("adlif", lambda F: snn_cuda.AdLIF(F, return_states=True)),
    ("ilif", lambda F: snn_cuda.ILIF(v_threshold=0.5)),
    ("qif", lambda F: snn_cuda.QIF(return_states=True, v_threshold=0.7)),
]
LAYER_IDS = [c[0] for c in LAYERS]
STATE_NAMES = ("v", "mem", "syn", "c", "u", "w", "s")


def _storage(layer, mode):
    layer.backward_storage = mode
    return layer


def _pair(make, F):
    """The same layer twice (identical parameters, AdLIF's random ones included): time-major and
    batch-first."""
    torch.manual_seed(0)
    tm = make(F)
    bf = copy.deepcopy(tm)
    bf.batch_first = True
    return tm, bf


def _outputs(layer, result):
    """The sequences a call returned (and a stored v_seq), then the final states."""
    seqs = list(result) if isinstance(result, tuple) else [result]
    if getattr(layer, "v_seq", None) is not None:
        seqs.append(layer.v_seq)
    finals = [getattr(layer, n) for n in STATE_NAMES if isinstance(getattr(layer, n, None), torch.Tensor)]
    return seqs, finals


def _run(layer, x, T=None):
    snn_cuda.functional.reset_net(layer)
    out = layer(x) if T is None else layer(x, T=T)
    return _outputs(layer, out)


def _loss(seqs, finals, wseq, wfin):
    total = 0
    for s, w in zip(seqs, wseq):
        total = total + (s.float() * w).sum()
    for f, w in zip(finals, wfin):
        total = total + (f.float() * w).sum()
    return total


def _check_pair(tm, bf, xt, T=None):
    """bf(x in [B, T, ...]) == tm(x in [T, B, ...]) transposed, forward and backward, bit for bit.
    xt: the time-major input (or the constant [B, ...] input with T)."""
    x1 = xt.detach().clone().requires_grad_(True)
    x2 = (xt.detach().transpose(0, 1).contiguous() if T is None else xt.detach().clone()).requires_grad_(True)
    s1, f1 = _run(tm, x1, T)
    s2, f2 = _run(bf, x2, T)
    assert len(s1) == len(s2) and len(f1) == len(f2)
    for a, b in zip(s1, s2):
        assert b.shape == a.transpose(0, 1).shape
        assert_equal(b, a.transpose(0, 1))
    for a, b in zip(f1, f2):
        assert_equal(b, a)
    g = torch.Generator().manual_seed(1)
    wseq = [torch.randn(s.shape, generator=g) for s in s1]
    wfin = [torch.randn(f.shape, generator=g) for f in f1]
    _loss(s1, f1, wseq, wfin).backward()
    _loss(s2, f2, [w.transpose(0, 1) for w in wseq], wfin).backward()
    assert_equal(x2.grad, x1.grad.transpose(0, 1) if T is None else x1.grad)
    for (n, p1), (_, p2) in zip(tm.named_parameters(), bf.named_parameters()):
        assert p1.grad is not None, n
        assert_equal(p2.grad, p1.grad, n)


def _input(shape, dtype, scale=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name,make", LAYERS, ids=LAYER_IDS)
def test_batch_first_equals_time_major(name, make, dtype):
    T, B, F = 13, 3, 20
    tm, bf = _pair(make, F)
    if dtype == torch.float64:
        tm, bf = tm.double(), bf.double()
    _check_pair(tm, bf, _input((T, B, F), dtype))


@pytest.mark.parametrize("name,make", LAYERS, ids=LAYER_IDS)
def test_batch_first_constant_input(name, make):
    if name == "syncurrent":
        pytest.skip("SynapticCurrent takes no T")
    T, B, F = 10, 4, 7
    tm, bf = _pair(make, F)
    _check_pair(tm, bf, _input((B, F), torch.float32), T=T)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(9, 3, 5000), (17, 2, 1, 3), (5, 1, 70), (1, 4, 33), (8, 5, 1)], ids=str)
@pytest.mark.parametrize("name", ["lif", "leaky-learn", "synaptic", "adlif"])
def test_batch_first_shapes_and_threads(name, shape, threads):
    """Runs longer than a CPU block (5000 > 4096 and > the models' 1024, so a sample's run is
    split), runs of 1 neuron, B = 1, T = 1, extra feature dims."""
    make = dict(LAYERS)[name]
    F = 1
    for d in shape[2:]:
        F *= d
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tm, bf = _pair(lambda _: make(shape[-1]) if name != "adlif" else make(shape[2:]), F)
        _check_pair(tm, bf, _input(shape, torch.float32))
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("name", ["lif-ckpt", "leaky-zero-nomem", "synaptic", "qif"])
def test_batch_first_non_contiguous_input(name):
    """A [B, T, ...] input that is not contiguous (a transposed time-major tensor, strided
    features) is copied first and gives the result of the contiguous input."""
    make = dict(LAYERS)[name]
    T, B, F = 11, 3, 16
    xt = _input((T, B, F), torch.float32)
    _, bf = _pair(make, F)
    ref_seqs, ref_fin = _run(bf, xt.transpose(0, 1).contiguous())
    strided = torch.zeros(B, T, 2 * F)
    strided[..., ::2] = xt.transpose(0, 1)
    for x in (xt.transpose(0, 1), strided[..., ::2]):
        assert not x.is_contiguous()
        seqs, fin = _run(bf, x)
        for a, b in zip(ref_seqs, seqs):
            assert_equal(b, a)
        for a, b in zip(ref_fin, fin):
            assert_equal(b, a)


def _copies(fn) -> set:
    """The copy-like ops a call runs (profiler), to show that a layout is read in place."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if any(w in e.key for w in ("copy", "contiguous", "clone"))}


def test_batch_first_input_is_not_copied():
    """A contiguous [B, T, ...] input is read where it lies: the op makes no copy (only its
    outputs are allocated), and a non-contiguous one is copied (the check can fail)."""
    T, B, F = 16, 8, 64
    xt = _input((T, B, F), torch.float32)
    ops = torch.ops.snn_cuda
    args = (None, None, None, -1, 0, 0, 0, 4.0, 2.0, 1.0, 0.0, 0.0, 1.0, 0.0, True, False, False, 0, False)
    x = xt.transpose(0, 1).contiguous()
    assert not _copies(lambda: ops.neuron_forward(x, *args, False, True))
    assert _copies(lambda: ops.neuron_forward(xt.transpose(0, 1), *args, False, True))
    spikes = ops.neuron_forward(x, *args, False, True)[0]
    assert_equal(spikes, ops.neuron_forward(xt, *args)[0].transpose(0, 1))


@pytest.mark.parametrize("name", ["lif", "leaky-learn", "synaptic", "ilif"])
def test_batch_first_reference_backend(name):
    """The reference backend (backend='torch') honours batch_first too, matching the fused
    layer within the fused-vs-reference bounds that the per-model tests use (forward exact)."""
    make = dict(LAYERS)[name]
    T, B, F = 9, 3, 6
    fused, ref = _pair(make, F)
    fused.batch_first = True
    ref.batch_first = True
    ref.backend = "torch"
    x = _input((B, T, F), torch.float32)
    s1, f1 = _run(fused, x)
    s2, f2 = _run(ref, x)
    for a, b in zip(s1, s2):
        assert a.shape == b.shape == (B, T, F)
        assert_equal(a.float(), b.float())
    for a, b in zip(f1, f2):
        assert_equal(a, b)


def _neuron_args(save_mode):
    # model LIF, reset hard, Sigmoid(4), tau 2, v_th 0.6, v_reset 0, ..., save_mode, store_v_seq
    return [0, 0, 0, 4.0, 2.0, 0.6, 0.0, 0.0, 1.0, 0.0, True, False, False, save_mode, True]


@pytest.mark.parametrize("T_const", [-1, 5])
@pytest.mark.parametrize("save_mode", [1, 2])
def test_opcheck_neuron_ops_batch_first(save_mode, T_const):
    B, T, F = 3, 6, 10
    x = _input((B, T, F) if T_const < 0 else (B, F), torch.float32).requires_grad_(True)
    th = torch.full((F,), 0.7).requires_grad_(True)
    args = (x, None, None, th, T_const, *_neuron_args(save_mode), False, True)
    torch.library.opcheck(torch.ops.snn_cuda.neuron_forward.default, args)
    spikes, saved, v_seq, _ = torch.ops.snn_cuda.neuron_forward(*args)
    Tn = T if T_const < 0 else T_const
    assert spikes.shape == (B, Tn, F) and v_seq.shape == (B, Tn, F)
    assert saved.shape == ((B, Tn, F) if save_mode == 1 else ((Tn + 7) // 8, B, F))
    bargs = (
        torch.randn(B, Tn, F),
        torch.randn(B, Tn, F),
        None,
        saved.detach(),
        x.detach() if save_mode == 2 else None,
        None,
        None,
        th.detach(),
        T_const,
        save_mode,
        0,
        0,
        0,
        4.0,
        2.0,
        0.6,
        0.0,
        0.0,
        1.0,
        0.0,
        True,
        False,
        False,
        False,
        True,
        torch.float32,
        None,
        None,
        True,
    )
    torch.library.opcheck(torch.ops.snn_cuda.neuron_backward.default, bargs)


@pytest.mark.parametrize("T_const", [-1, 4])
def test_opcheck_model_ops_batch_first(T_const):
    from snn_cuda.model_ops import MODELS

    d = MODELS["synaptic"]
    B, T, F = 2, 9, 6
    x = _input((B, T, F) if T_const < 0 else (B, F), torch.float32).requires_grad_(True)
    params = torch.tensor([[0.6], [0.8], [0.8]]).repeat(1, F).requires_grad_(True)
    args = (x, params, None, T_const, d.id, 0, 7, 2.0, False, True, True, True)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, args)
    spikes, seq, last, ckpt = torch.ops.snn_cuda.model_forward(*args)
    Tn = T if T_const < 0 else T_const
    assert spikes.shape == (B, Tn, F) and seq.shape == (2, B, Tn, F) and last.shape == (2, B, F)
    bargs = (
        torch.randn(B, Tn, F),
        torch.randn(2, B, Tn, F),
        None,
        x.detach(),
        params.detach(),
        None,
        ckpt.detach(),
        T_const,
        d.id,
        0,
        7,
        2.0,
        False,
        True,
        True,
    )
    torch.library.opcheck(torch.ops.snn_cuda.model_backward.default, bargs)


@pytest.mark.parametrize("name", ["lif", "leaky", "synaptic"])
def test_batch_first_compiles(name):
    make = dict(LAYERS)[name]
    T, B, F = 7, 2, 8
    _, bf = _pair(make, F)
    x = _input((B, T, F), torch.float32)
    eager, _ = _run(bf, x)
    snn_cuda.functional.reset_net(bf)
    compiled = torch.compile(bf, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out = list(out) if isinstance(out, tuple) else [out]
    for a, b in zip(eager, out):
        assert_equal(b, a)


def test_batch_first_errors():
    with pytest.raises(ValueError, match=r"\[B, T, \.\.\.\]"):
        snn_cuda.LIF(batch_first=True)(torch.randn(5))
    with pytest.raises(ValueError, match="at least one time step"):
        snn_cuda.Leaky(beta=0.5, batch_first=True)(torch.randn(3, 0, 4))
    with pytest.raises(TypeError, match="batch_first"):
        snn_cuda.LIF(batch_first=1)
    with pytest.raises(ValueError, match="NeuronLinear"):
        snn_cuda.NeuronLinear(snn_cuda.LIF(batch_first=True), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"\[B, T, \.\.\.\]"):
        torch.ops.snn_cuda.model_forward(
            torch.randn(4), torch.ones(3, 1), None, -1, 0, 0, 7, 2.0, False, False, False, True
        )
    # The single-step call ignores batch_first: one [B, ...] step.
    layer = snn_cuda.LIF(step_mode="s", batch_first=True)
    assert layer(torch.ones(2, 3)).shape == (2, 3)
    assert "batch_first=True" in repr(snn_cuda.Leaky(beta=0.5, batch_first=True))


# ------------------------------------------------------------------------------------------
# channels-last conv activations: [T, B, C, H, W] whose steps are channels-last
# ------------------------------------------------------------------------------------------
CL_LAYERS = [
    ("lif", lambda C: snn_cuda.LIF(v_threshold=0.6), True),
    ("plif", lambda C: snn_cuda.ParametricLIF(init_tau=2.5, learn_threshold=True), True),
    ("leaky", lambda C: snn_cuda.Leaky(beta=0.8, threshold=0.7), True),
    ("synaptic", lambda C: snn_cuda.Synaptic(alpha=0.6, beta=0.8, threshold=0.8), True),
    ("cubalif-states", lambda C: snn_cuda.CUBALIF(return_states=True), True),
    # A per-channel parameter follows the logical neuron order: the op copies x (documented).
    ("plif-per-channel", lambda C: snn_cuda.ParametricLIF(param_shape=(C, 1, 1)), False),
    ("adlif-per-channel", lambda C: snn_cuda.AdLIF((C, 1, 1), return_states=True), False),
]


def _channels_last_seq(T, B, C, H, W, seed=0):
    conv_out = _input((T * B, C, H, W), torch.float32, seed=seed).contiguous(memory_format=torch.channels_last)
    return conv_out.view(T, B, C, H, W)


@pytest.mark.parametrize("name,make,in_place", CL_LAYERS, ids=[c[0] for c in CL_LAYERS])
def test_channels_last_steps(name, make, in_place):
    """Same values as on the contiguous input, bit for bit (forward, a second call carrying the
    state, gradients); read in place (outputs keep x's strides) while the parameters are scalars."""
    T, B, C, H, W = 6, 2, 5, 3, 4
    x_cl = _channels_last_seq(T, B, C, H, W)
    assert not x_cl[0].is_contiguous()
    torch.manual_seed(0)
    a = make(C)
    b = copy.deepcopy(a)
    xa = x_cl.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    xb = x_cl.detach().contiguous().requires_grad_(True)
    snn_cuda.functional.reset_net(a)
    snn_cuda.functional.reset_net(b)
    outs = []
    for layer, x in ((a, xa), (b, xb)):
        r1 = layer(x)
        r2 = layer(x * 0.5)  # the state carried from the first call
        outs.append([*(r1 if isinstance(r1, tuple) else [r1]), *(r2 if isinstance(r2, tuple) else [r2])])
    for oa, ob in zip(*outs):
        assert_equal(oa, ob)
        if in_place:
            assert oa.stride() == x_cl.stride(), (oa.stride(), x_cl.stride())
    g = torch.Generator().manual_seed(3)
    ws = [torch.randn(o.shape, generator=g) for o in outs[0]]
    sum((o.float() * w).sum() for o, w in zip(outs[0], ws)).backward()
    sum((o.float() * w).sum() for o, w in zip(outs[1], ws)).backward()
    assert_equal(xa.grad, xb.grad)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if in_place and pa.numel() == 1:
            # One parameter: the sum of its per-neuron terms runs over the neurons in memory
            # order instead of the logical one (|difference| <= (N - 1) u sum|terms|, N = 720).
            torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=n)
        else:
            assert_equal(pa.grad, pb.grad, n)


def test_channels_last_is_not_copied():
    """No copy with scalar parameters; a per-channel parameter makes the op copy x."""
    T, B, C, H, W = 8, 4, 16, 8, 8
    x = _channels_last_seq(T, B, C, H, W)
    assert not _copies(lambda: snn_cuda.LIF()(x))
    assert snn_cuda.LIF()(x).stride() == x.stride()
    assert _copies(lambda: snn_cuda.ParametricLIF(param_shape=(C, 1, 1))(x))
