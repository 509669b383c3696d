"""snn_cuda.convert: SpikingJelly / snnTorch models before and after conversion compute
the same spikes (exactly), membranes and gradients (fp tolerance); state_dict, reset paths
and the report. Each peer's tests skip when that library is not installed."""

from __future__ import annotations

import copy
import io
import itertools
import math

import pytest
import torch
from torch import nn

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda.convert import _SJ_SURROGATES

try:
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import layer as sjl
    from spikingjelly.activation_based import neuron as sjn
    from spikingjelly.activation_based import surrogate as sjs
except Exception:  # pragma: no cover - peer missing
    sjn = None
try:
    import snntorch as snn
    import snntorch.surrogate as sts
    import snntorch.utils as stu
except Exception:  # pragma: no cover - peer missing
    snn = None

needs_sj = pytest.mark.skipif(sjn is None, reason="SpikingJelly is not installed")
needs_snntorch = pytest.mark.skipif(snn is None, reason="snnTorch is not installed")


def _converted_copy(net):
    rep = snn_cuda.convert(net, inplace=False)
    return rep.model, rep


def _assert_grads_equal(a: nn.Module, b: nn.Module, rtol=1e-5, atol=1e-6):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        assert (pa[k].grad is None) == (pb[k].grad is None), k
        if pa[k].grad is not None:
            torch.testing.assert_close(pa[k].grad, pb[k].grad, rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")


def _assert_params_equal(a, b, rtol=1e-5, atol=1e-6):
    for (k, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")


def _sgd(net):
    # SGD with momentum: Adam's normalisation would blow fp-roundoff-sized differences of
    # near-zero gradients up to lr-sized steps
    return torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def _train_compare(ref, conv, step, reset, n_steps=3, check_out=None, opt_conv=None):
    """Run `step(net)` -> (output tensors, loss) on both nets for a few optimiser steps.
    `opt_conv`: the converted net's optimiser (e.g. built before the conversion)."""
    oa = _sgd(ref)
    ob = _sgd(conv) if opt_conv is None else opt_conv
    for i in range(n_steps):
        reset(ref)
        reset(conv)
        outs_a, loss_a = step(ref, i)
        outs_b, loss_b = step(conv, i)
        for j, (x, y) in enumerate(zip(outs_a, outs_b)):
            if check_out is None or check_out[j] == "exact":
                assert torch.equal(x, y), f"step {i}: output {j} differs"
            else:
                torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
        oa.zero_grad()
        ob.zero_grad()
        loss_a.backward()
        loss_b.backward()
        _assert_grads_equal(ref, conv)
        oa.step()
        ob.step()
        _assert_params_equal(ref, conv)


# =========================================================================================
# surrogates: the mapped peer functions have snn_cuda's derivative
# =========================================================================================
def _grad_of(f, x):
    z = x.clone().requires_grad_()
    f(z).sum().backward()
    return z.grad


@needs_sj
# every SpikingJelly surrogate convert maps, so a new mapping is checked without editing this list
@pytest.mark.parametrize("name", list(_SJ_SURROGATES))
@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.3])
def test_sj_surrogate_math(name, alpha):
    from snn_cuda.convert import _sj_surrogate

    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    f = getattr(sjs, name)(alpha=alpha)
    mine = _sj_surrogate(f)
    assert type(mine) is getattr(sg, name) and mine.param == alpha
    torch.testing.assert_close(_grad_of(f, x), mine.derivative(x), rtol=1e-12, atol=1e-12)


@needs_sj
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alpha", [1.0, 0.3, 4.0])
def test_sj_nonzero_sign_log_abs_derivative(dtype, alpha):
    """SpikingJelly's grad / (1/alpha + |x|) against our derivative 1 / (1/alpha + |x|) on the
    same z, and against known values. With grad = 1 both are the same two roundings (the sum,
    then the quotient); the bound allows each to differ by half an ulp, 2 eps relative, in case
    a vectorised division rounds otherwise."""
    x = torch.cat([torch.linspace(-3, 3, 2001, dtype=dtype), torch.tensor([0.0, -0.0, 1e-30, 50.0], dtype=dtype)])
    f = sjs.NonzeroSignLogAbs(alpha=alpha)
    mine = sg.NonzeroSignLogAbs(alpha)
    g_sj = _grad_of(f, x)
    d = mine.derivative(x)
    assert d.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(g_sj, d, rtol=2 * eps, atol=0)
    # known values: alpha at z = 0, alpha / (1 + alpha |z|) elsewhere (float64 math)
    exact = alpha / (1 + alpha * x.double().abs())
    torch.testing.assert_close(d.double(), exact, rtol=4 * eps, atol=0)
    assert d[x == 0].eq(torch.tensor(1 / alpha, dtype=dtype).reciprocal()).all()
    # forward: SpikingJelly's Heaviside fires at 0
    assert torch.equal(f(x), mine.spike(x, strict=False))


@needs_sj
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_sj_lif_nonzero_sign_log_abs_multistep(dtype, alpha):
    """snn_cuda.LIF on the fused kernel against SpikingJelly's LIFNode (torch backend), both with
    NonzeroSignLogAbs, multi-step: spikes equal, membranes and input gradients to rounding."""
    torch.manual_seed(1)
    T, B, N = 12, 4, 9
    x = (torch.rand(T, B, N, dtype=torch.float64) * 1.4 - 0.1).to(dtype)
    w = torch.linspace(-1, 1, T * B * N, dtype=torch.float64).view(T, B, N).to(dtype)
    ref = sjn.LIFNode(tau=1.8, v_threshold=0.7, surrogate_function=sjs.NonzeroSignLogAbs(alpha=alpha), step_mode="m")
    mine = snn_cuda.LIF(tau=1.8, v_threshold=0.7, surrogate=sg.NonzeroSignLogAbs(alpha), backend="fused")
    outs = []
    for net in (ref, mine):
        xx = x.clone().requires_grad_()
        s = net(xx)
        ((s * w).sum() + (net.v * 0.3).sum()).backward()
        outs.append((s.detach(), net.v.detach(), xx.grad))
    (s0, v0, g0), (s1, v1, g1) = outs
    assert torch.equal(s0, s1)
    # a few dozen roundings through T = 12 steps of the backward recurrence, at the gradient's scale
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(v1, v0, rtol=16 * eps, atol=16 * eps)
    scale = float(g0.abs().max())
    torch.testing.assert_close(g1, g0, rtol=0, atol=64 * eps * scale)


@needs_snntorch
@pytest.mark.parametrize(
    "fn,cls,p",
    [
        ("atan", sg.ATan, 0.7),
        ("atan", sg.ATan, 2.0),
        ("fast_sigmoid", sg.FastSigmoid, 25.0),
        ("fast_sigmoid", sg.FastSigmoid, 3.0),
        ("sigmoid", sg.Sigmoid, 5.0),
        ("straight_through_estimator", sg.StraightThrough, None),
    ],
)
def test_snntorch_surrogate_math(fn, cls, p):
    from snn_cuda.convert import _snntorch_surrogate

    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    f = getattr(sts, fn)() if p is None else getattr(sts, fn)(p)
    mine = _snntorch_surrogate(f)
    assert type(mine) is cls and (p is None or mine.param == p)
    torch.testing.assert_close(_grad_of(f, x), mine.derivative(x), rtol=1e-12, atol=1e-12)


# =========================================================================================
# SpikingJelly: single neurons, all options
# =========================================================================================
# every surrogate convert maps, at its default alpha (PiecewiseExp off its default)
SJ_SURROGATES = [(name, {"PiecewiseExp": 1.5}.get(name, cls().param)) for name, cls in _SJ_SURROGATES.items()]


def _sj_cases():
    for kind, v_reset, decay_input, detach_reset, step_mode, store in itertools.product(
        ("LIF", "IF"), (0.0, None, -0.2), (True, False), (False, True), ("s", "m"), (False, True)
    ):
        if kind == "IF" and not decay_input:
            continue
        yield kind, v_reset, decay_input, detach_reset, step_mode, store


@needs_sj
@pytest.mark.parametrize("kind,v_reset,decay_input,detach_reset,step_mode,store", list(_sj_cases()))
def test_sj_node_equivalence(kind, v_reset, decay_input, detach_reset, step_mode, store):
    i = hash((kind, v_reset, decay_input, detach_reset, step_mode, store)) % len(SJ_SURROGATES)
    sname, alpha = SJ_SURROGATES[i]
    kw = dict(
        v_reset=v_reset,
        v_threshold=0.8,
        surrogate_function=getattr(sjs, sname)(alpha=alpha),
        detach_reset=detach_reset,
        step_mode=step_mode,
        store_v_seq=store,
    )
    ref = sjn.LIFNode(tau=1.7, decay_input=decay_input, **kw) if kind == "LIF" else sjn.IFNode(**kw)
    conv, rep = _converted_copy(ref)
    assert len(rep.converted) == 1 and not rep.skipped
    assert isinstance(conv, snn_cuda.LIF if kind == "LIF" else snn_cuda.IF)
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 5, dtype=torch.float64) * 1.2).requires_grad_()
    outs = []
    for net in (ref, conv):
        xx = x.clone().detach().requires_grad_()
        if step_mode == "s":
            s = torch.stack([net(xx[t]) for t in range(xx.shape[0])])
        else:
            s = net(xx)
        loss = (s * torch.linspace(0.1, 1, s.numel(), dtype=s.dtype).view_as(s)).sum() + (net.v * 0.3).sum()
        if store:
            loss = loss + (net.v_seq * 0.7).sum()
        loss.backward()
        outs.append((s.detach(), net.v.detach(), None if not store else net.v_seq.detach(), xx.grad))
    (s0, v0, q0, g0), (s1, v1, q1, g1) = outs
    assert torch.equal(s0, s1)
    torch.testing.assert_close(v0, v1, rtol=1e-12, atol=1e-12)
    if store:
        assert q0.shape == q1.shape == (6, 3, 5)
        torch.testing.assert_close(q0, q1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g0, g1, rtol=1e-10, atol=1e-12)


@needs_sj
def test_sj_shape_change_restarts_state():
    ref = sjn.LIFNode(step_mode="s")
    conv, _ = _converted_copy(ref)
    for net in (ref, conv):
        net(torch.rand(4, 3) * 3)
    for x in (torch.rand(2, 3) + 0.8, torch.rand(2, 3) * 2):  # new batch shape, then carry on
        assert torch.equal(ref(x), conv(x))
        torch.testing.assert_close(ref.v, conv.v)


# =========================================================================================
# SpikingJelly ParametricLIFNode: learnable w, all options
# =========================================================================================
def _plif_cases():
    cases = itertools.product(
        (0.0, None, -0.2), (True, False), (False, True), ("s", "m"), (False, True), ("f32", "f64")
    )
    return [(i,) + c for i, c in enumerate(cases)]


def _run_sj_node(net, x, store, w_name="w"):
    """Forward (per step or whole sequence) + backward of a loss on spikes, v and v_seq;
    returns spikes, v, v_seq, grad x, grad w."""
    xx = x.clone().requires_grad_()
    if net.step_mode == "s":
        s = torch.stack([net(xx[t]) for t in range(xx.shape[0])])
    else:
        s = net(xx)
    loss = (s * torch.linspace(0.1, 1, s.numel(), dtype=s.dtype).view_as(s)).sum() + (net.v * 0.3).sum()
    if store:
        loss = loss + (net.v_seq * torch.linspace(-1, 1, net.v_seq.numel(), dtype=s.dtype).view_as(net.v_seq)).sum()
    w = getattr(net, w_name)
    w.grad = None
    loss.backward()
    return (s.detach(), net.v.detach(), None if not store else net.v_seq.detach(), xx.grad, w.grad.clone())


@needs_sj
@pytest.mark.parametrize("idx,v_reset,decay_input,detach_reset,step_mode,store,dtype", _plif_cases())
def test_sj_plif_equivalence(idx, v_reset, decay_input, detach_reset, step_mode, store, dtype):
    sname, alpha = SJ_SURROGATES[idx % len(SJ_SURROGATES)]
    dt = {"f32": torch.float32, "f64": torch.float64}[dtype]
    ref = sjn.ParametricLIFNode(
        init_tau=2.5,
        decay_input=decay_input,
        v_threshold=0.8,
        v_reset=v_reset,
        surrogate_function=getattr(sjs, sname)(alpha=alpha),
        detach_reset=detach_reset,
        step_mode=step_mode,
        store_v_seq=store,
    )
    with torch.no_grad():
        ref.w.add_(0.3)  # a learned value, not the initial one
    ref.to(dt)
    conv, rep = _converted_copy(ref)
    assert rep.converted == [
        ("", "ParametricLIFNode", "SpikingJellyParametricLIF", "learnable w: the same nn.Parameter")
    ]
    assert not rep.skipped
    assert isinstance(conv, snn_cuda.ParametricLIF) and conv.step_mode == step_mode
    assert isinstance(conv.w, nn.Parameter) and conv.w.dtype == dt and torch.equal(conv.w, ref.w)
    assert list(conv.state_dict()) == list(ref.state_dict()) == ["w"]
    assert [n for n, _ in conv.named_parameters()] == ["w"]
    x = torch.rand(6, 3, 5, dtype=dt, generator=torch.Generator().manual_seed(idx)) * 1.2
    for rnd in range(2):  # the second run after a reset of both
        (s0, v0, q0, g0, w0), (s1, v1, q1, g1, w1) = _run_sj_node(ref, x, store), _run_sj_node(conv, x, store)
        assert torch.equal(s0, s1)
        tol = dict(rtol=1e-12, atol=1e-12) if dt == torch.float64 else dict(rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(v0, v1, **tol)
        if store:
            assert q0.shape == q1.shape == (6, 3, 5)
            torch.testing.assert_close(q0, q1, **tol)
        gtol = dict(rtol=1e-10, atol=1e-12) if dt == torch.float64 else dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(g0, g1, **gtol)
        torch.testing.assert_close(w0, w1, **gtol)
        assert w0.abs() > 0
        sjf.reset_net(ref)
        sjf.reset_net(conv)


@needs_sj
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_sj_plif_per_neuron_w(step_mode):
    """A w replaced by a per-neuron / per-channel Parameter (SpikingJelly runs it through its
    reference path) converts too, with its shape."""
    for shape in ((5,), (3, 1)):
        ref = sjn.ParametricLIFNode(step_mode=step_mode, surrogate_function=sjs.ATan())
        ref.w = nn.Parameter(torch.linspace(-0.5, 0.8, math.prod(shape), dtype=torch.float64).view(shape))
        conv, rep = _converted_copy(ref)
        assert rep.converted[0][3] == f"learnable w: the same nn.Parameter (shape {shape})"
        x = torch.rand(6, 4, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.5
        (s0, v0, _, g0, w0), (s1, v1, _, g1, w1) = _run_sj_node(ref, x, False), _run_sj_node(conv, x, False)
        assert torch.equal(s0, s1) and w0.shape == w1.shape == shape
        torch.testing.assert_close(v0, v1, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g0, g1, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(w0, w1, rtol=1e-10, atol=1e-12)


@needs_sj
def test_sj_plif_same_parameter_inplace():
    ref = sjn.ParametricLIFNode(init_tau=3.0)
    w = ref.w
    rep = snn_cuda.convert(ref)
    assert rep.model.w is w and rep.model is not ref
    net = nn.Sequential(nn.Linear(3, 3), sjn.ParametricLIFNode(step_mode="m"))
    w = net[1].w
    snn_cuda.convert(net)
    assert isinstance(net[1], snn_cuda.ParametricLIF) and net[1].w is w
    assert net[1].tau.item() == pytest.approx(2.0)


# =========================================================================================
# snnTorch: single neurons, all options
# =========================================================================================
ST_SURROGATES = [
    lambda: sts.atan(),
    lambda: sts.atan(alpha=3.0),
    lambda: sts.fast_sigmoid(slope=25),
    lambda: sts.fast_sigmoid(slope=5.0),
    lambda: sts.sigmoid(slope=4.0),
    lambda: sts.straight_through_estimator(),
    lambda: None,
]


@needs_snntorch
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("init_hidden,output", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("sgi", range(len(ST_SURROGATES)))
def test_snntorch_leaky_equivalence(reset, init_hidden, output, sgi):
    ref = snn.Leaky(
        beta=0.83,
        threshold=0.9,
        spike_grad=ST_SURROGATES[sgi](),
        reset_mechanism=reset,
        init_hidden=init_hidden,
        output=output,
    )
    conv, rep = _converted_copy(ref)
    assert [c[2] for c in rep.converted] == ["SnnTorchLeaky"] and not rep.skipped
    assert isinstance(conv, snn.Leaky) and isinstance(conv.neuron, snn_cuda.Leaky)
    torch.manual_seed(0)
    x = torch.rand(7, 4, 6) * 1.3
    res = []
    for net in (ref, conv):
        xx = x.clone().requires_grad_()
        spks, mems = [], []
        if init_hidden:
            for t in range(7):
                out = net(xx[t])
                if output:
                    spk, mem = out
                else:
                    spk, mem = out, net.mem
                spks.append(spk)
                mems.append(mem)
        else:
            mem = net.init_leaky()
            for t in range(7):
                spk, mem = net(xx[t], mem)
                spks.append(spk)
                mems.append(mem)
        s, m = torch.stack(spks), torch.stack(mems)
        w = torch.linspace(-1, 1, s.numel()).view_as(s)
        ((s * w).sum() + (m * w.flip(0)).sum()).backward()
        res.append((s.detach(), m.detach(), xx.grad))
    assert torch.equal(res[0][0], res[1][0])
    torch.testing.assert_close(res[0][1], res[1][1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(res[0][2], res[1][2], rtol=1e-5, atol=1e-6)


@needs_snntorch
def test_snntorch_beta_clamped_and_state_dict():
    ref = snn.Leaky(beta=1.3, threshold=0.5, init_hidden=True)
    sd = copy.deepcopy(ref.state_dict())
    conv, rep = _converted_copy(ref)
    assert "clamped to 1.0" in rep.converted[0][3]
    assert conv.neuron.beta == 1.0 and float(conv.beta) == pytest.approx(1.3)
    assert list(conv.state_dict().keys()) == list(sd.keys())
    conv.load_state_dict(sd)
    # a state_dict with another beta reloads into the kernel constants
    sd2 = dict(sd, beta=torch.tensor(0.25), threshold=torch.tensor(0.75))
    conv.load_state_dict(sd2)
    assert conv.neuron.beta == 0.25 and conv.neuron.threshold == 0.75
    ref.load_state_dict(sd2)
    x = torch.rand(5, 3, 4) * 2
    for t in range(5):
        assert torch.equal(ref(x[t]), conv(x[t]))


@needs_snntorch
def test_snntorch_shape_change_restarts_state():
    ref = snn.Leaky(beta=0.9, init_hidden=True)
    conv, _ = _converted_copy(ref)
    for net in (ref, conv):
        net(torch.rand(4, 3) * 3)
    x = torch.rand(2, 3) * 2
    assert torch.equal(ref(x), conv(x))
    torch.testing.assert_close(ref.mem, conv.mem)


# =========================================================================================
# snnTorch: learnable / per-neuron beta and threshold
# =========================================================================================
def _vec(lo, hi, n=6):
    return torch.linspace(lo, hi, n)


# name -> (beta, threshold, learn_beta, learn_threshold); features have 6 neurons
ST_LEARN = {
    "beta": (lambda: 0.83, lambda: 0.9, True, False),
    "threshold": (lambda: 0.83, lambda: 0.9, False, True),
    "both": (lambda: 0.83, lambda: 0.9, True, True),
    "both_per_neuron": (lambda: _vec(0.3, 0.95), lambda: _vec(0.7, 1.2), True, True),
    "beta_per_neuron": (lambda: _vec(0.5, 0.9), lambda: 1.1, True, False),
    "fixed_vec_beta_learn_th": (lambda: _vec(0.4, 0.9), lambda: 0.9, False, True),
    "learn_beta_fixed_vec_th": (lambda: 0.7, lambda: _vec(0.6, 1.1), True, False),
    "fixed_vecs": (lambda: _vec(0.4, 0.9), lambda: _vec(0.6, 1.1), False, False),
    "beta_out_of_range": (lambda: torch.tensor([1.2, -0.1, 0.5, 1.0, 0.0, 0.9]), lambda: 0.8, True, True),
    "fixed_beta_out_of_range": (lambda: torch.tensor([1.2, -0.1, 0.5, 1.0, 0.0, 0.9]), lambda: 0.8, False, True),
}


def _st_learn_cases():
    cases = itertools.product(ST_LEARN, ("subtract", "zero", "none"), [(False, False), (True, False), (True, True)])
    return [(i, c, r, ih) for i, (c, r, ih) in enumerate(cases)]


def _run_st_node(net, x, init_hidden, output):
    xx = x.clone().requires_grad_()
    spks, mems = [], []
    if init_hidden:
        for t in range(x.shape[0]):
            out = net(xx[t])
            spk, mem = out if output else (out, net.mem)
            spks.append(spk)
            mems.append(mem)
    else:
        mem = net.init_leaky()
        for t in range(x.shape[0]):
            spk, mem = net(xx[t], mem)
            spks.append(spk)
            mems.append(mem)
    s, m = torch.stack(spks), torch.stack(mems)
    w = torch.linspace(-1, 1, s.numel()).view_as(s)
    for p in net.parameters():
        p.grad = None
    ((s * w).sum() + (m * w.flip(0)).sum()).backward()
    return s.detach(), m.detach(), xx.grad


@needs_snntorch
@pytest.mark.parametrize("idx,case,reset,hidden", _st_learn_cases())
def test_snntorch_learnable_leaky_equivalence(idx, case, reset, hidden):
    beta, threshold, lb, lt = ST_LEARN[case]
    init_hidden, output = hidden
    ref = snn.Leaky(
        beta=beta(),
        threshold=threshold(),
        learn_beta=lb,
        learn_threshold=lt,
        reset_mechanism=reset,
        spike_grad=ST_SURROGATES[idx % len(ST_SURROGATES)](),
        init_hidden=init_hidden,
        output=output,
    )
    conv, rep = _converted_copy(ref)
    assert [c[2] for c in rep.converted] == ["SnnTorchLeaky"] and not rep.skipped
    if lb or lt:
        assert "the same nn.Parameters" in rep.converted[0][3]
    if case == "beta_out_of_range":
        assert "clamped" in rep.converted[0][3]
    # same parameters (names, kinds, values), same state_dict keys, none in the child
    assert [n for n, _ in conv.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert isinstance(conv.beta, nn.Parameter) == lb and isinstance(conv.threshold, nn.Parameter) == lt
    assert list(conv.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(conv.state_dict()[k], v), k
    assert not list(conv.neuron.parameters()) and not list(conv.neuron.buffers())
    x = torch.rand(7, 4, 6, generator=torch.Generator().manual_seed(idx)) * 1.3
    for rnd in range(2):
        (s0, m0, g0), (s1, m1, g1) = _run_st_node(ref, x, *hidden), _run_st_node(conv, x, *hidden)
        assert torch.equal(s0, s1)
        torch.testing.assert_close(m0, m1, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)
        # A scalar threshold beside a per-neuron beta is summed over the 6 columns of the op's
        # [2, 6] parameters after the per-column sums over 168 neuron-steps (snnTorch: one sum over
        # autograd's order). Where the terms cancel to 0, fp32 rounding of ~168 terms of size ~1
        # leaves a few 1e-6 that depend on that order.
        _assert_grads_equal(ref, conv, atol=1e-5)
        ref.reset_mem()  # (snntorch.utils.reset only looks at the children of a container)
        conv.reset_mem()
    if lb:
        assert conv.neuron.beta is conv.beta  # bound, not copied
        if case == "beta_out_of_range":  # clamp(0, 1)'s gradient: zero outside [0, 1], as in snnTorch
            assert conv.beta.grad[0] == 0 and conv.beta.grad[1] == 0 and conv.beta.grad[2] != 0


@needs_snntorch
def test_snntorch_learnable_same_parameters_inplace():
    net = nn.Sequential(
        nn.Linear(3, 6), snn.Leaky(beta=_vec(0.5, 0.9), learn_beta=True, learn_threshold=True, init_hidden=True)
    )
    beta, th = net[1].beta, net[1].threshold
    rep = snn_cuda.convert(net)
    assert type(net[1]).__name__ == "SnnTorchLeaky" and net[1].beta is beta and net[1].threshold is th
    assert "learnable per-neuron(6,) beta; learnable threshold; the same nn.Parameters" == rep.converted[0][3]
    # root module
    lif = snn.Leaky(beta=0.9, learn_beta=True)
    assert snn_cuda.convert(lif).model.beta is lif.beta


@needs_snntorch
def test_snntorch_tensor_params_follow_to_deepcopy_and_load():
    """Per-neuron / learnable tensors are read at every forward: .double() (new buffers),
    deepcopy and load_state_dict (in place) are all followed."""
    ref = snn.Leaky(beta=_vec(0.4, 0.9), threshold=_vec(0.6, 1.1), learn_threshold=True, init_hidden=True)
    conv, _ = _converted_copy(ref)
    ref.double()
    conv.double()
    assert conv.beta.dtype == torch.float64 and conv.threshold.dtype == torch.float64
    x = torch.rand(5, 3, 6, dtype=torch.float64) * 2
    for t in range(5):
        assert torch.equal(ref(x[t]).double(), conv(x[t]))  # snnTorch's spikes are float32
        torch.testing.assert_close(ref.mem, conv.mem, rtol=1e-12, atol=1e-12)
    assert conv.neuron.beta is conv.beta and conv.neuron.threshold is conv.threshold
    conv.reset_mem()  # (a membrane carrying a graph does not deepcopy, snnTorch's neither)
    c2 = copy.deepcopy(conv)
    assert c2.neuron.beta is c2.beta and c2.neuron.threshold is c2.threshold
    with torch.no_grad():
        c2.threshold.fill_(0.5)
    assert float(conv.threshold.detach().min()) > 0.55  # independent
    sd = dict(ref.state_dict(), beta=_vec(0.1, 0.2).double(), threshold=_vec(0.3, 0.4).double())
    ref.load_state_dict(sd)
    c2.load_state_dict(sd)
    ref.reset_mem()
    c2.reset_mem()
    for t in range(5):
        assert torch.equal(ref(x[t]).double(), c2(x[t]))
    # a fixed scalar buffer assigned in place of a per-neuron one: back to the kernel constant
    c2.beta = torch.tensor(0.25, dtype=torch.float64)
    c2(x[0])
    assert c2.neuron.beta == 0.25 and not isinstance(c2.neuron.beta, torch.Tensor)
    # a loaded scalar fixed beta / threshold update the constants
    c3 = snn_cuda.convert(snn.Leaky(beta=0.5)).model
    c3.load_state_dict(dict(c3.state_dict(), beta=torch.tensor(0.35), threshold=torch.tensor(0.75)))
    assert c3.neuron.beta == pytest.approx(0.35) and c3.neuron.threshold == 0.75


@needs_sj
@needs_snntorch
@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_learnable_backends(backend):
    """The learnable conversions on either backend of the fused layers."""
    torch.manual_seed(0)
    sj = nn.Sequential(nn.Linear(5, 6), sjn.ParametricLIFNode(step_mode="m", surrogate_function=sjs.ATan()))
    st = nn.Sequential(
        nn.Linear(5, 6), snn.Leaky(beta=_vec(0.5, 0.9), learn_beta=True, learn_threshold=True, init_hidden=True)
    )
    x = torch.rand(4, 3, 5) * 2
    for ref, run in ((sj, lambda n: n(x)), (st, lambda n: torch.stack([n(x[t]) for t in range(4)]))):
        conv = snn_cuda.convert(ref, inplace=False, backend=backend).model
        assert conv[1].backend == backend if ref is sj else conv[1].neuron.backend == backend
        outs = []
        for net in (ref, conv):
            net.zero_grad()
            out = run(net)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            outs.append(out)
            sjf.reset_net(net)
            stu.reset(net)
        assert torch.equal(outs[0], outs[1])
        _assert_grads_equal(ref, conv)


# =========================================================================================
# the report: what is left unchanged, and why
# =========================================================================================
@needs_snntorch
@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_report_snntorch_skips():
    class Custom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return (x > 0).float()

        @staticmethod
        def backward(ctx, g):
            return g

    cases = {
        "gsf": (snn.Leaky(beta=0.9, graded_spikes_factor=2.0), "graded_spikes_factor"),
        "sdis": (snn.Leaky(beta=0.9, surrogate_disable=True), "surrogate_disable"),
        "inh": (snn.Leaky(beta=0.9, inhibition=True), "inhibition"),
        "quant": (snn.Leaky(beta=0.9, state_quant=lambda m: m), "state_quant"),
        "nodelay": (snn.Leaky(beta=0.9, reset_delay=False), "reset_delay=False"),
        "custom": (snn.Leaky(beta=0.9, spike_grad=Custom.apply), "custom surrogate"),
        "custom2": (snn.Leaky(beta=0.9, spike_grad=sts.triangular()), "not supported"),
        "lgsf": (
            snn.Leaky(beta=0.9, learn_beta=True, learn_graded_spikes_factor=True),
            "learnable graded_spikes_factor",
        ),
        "nanb": (snn.Leaky(beta=torch.tensor([0.9, float("nan")]), learn_beta=True), "non-finite beta"),
    }
    extra = snn.Leaky(beta=0.9)
    extra.register_buffer("bias", torch.zeros(2))
    cases["extra"] = (extra, "unexpected parameters/buffers")
    net = nn.ModuleDict({k: v for k, (v, _) in cases.items()})
    net["ok"] = snn.Leaky(beta=0.9)
    # learnable and per-neuron beta / threshold convert now
    net["lb"] = snn.Leaky(beta=0.9, learn_beta=True)
    net["lt"] = snn.Leaky(beta=0.9, learn_threshold=True)
    net["vec"] = snn.Leaky(beta=torch.tensor([0.9, 0.8]))
    before = {k: m for k, m in net.items()}
    rep = snn_cuda.convert(net)
    assert [c[0] for c in rep.converted] == ["ok", "lb", "lt", "vec"]
    notes = {c[0]: c[3] for c in rep.converted}
    assert notes["lb"] == "learnable beta; the same nn.Parameters" and notes["vec"] == "per-neuron(2,) beta"
    assert notes["lt"] == "learnable threshold; the same nn.Parameters" and notes["ok"] == ""
    skipped = {name: reason for name, _, reason in rep.skipped}
    assert skipped.keys() == cases.keys()
    for k, (_, why) in cases.items():
        assert why in skipped[k], (k, skipped[k])
        assert net[k] is before[k]  # left unchanged
    assert "graded_spikes_factor" in str(rep)


@needs_sj
def test_report_sj_skips():
    class MyLIF(sjn.LIFNode):
        pass

    net = nn.Sequential(
        sjn.ParametricLIFNode(surrogate_function=sjs.SuperSpike()),
        sjn.LIFNode(surrogate_function=sjs.SuperSpike()),
        sjn.LIFNode(surrogate_function=sjs.Sigmoid(spiking=False)),
        MyLIF(),
        sjn.LIFNode(surrogate_function=sjs.ATan()),
        sjn.LIFNode(),
    )
    net[4].surrogate_function.alpha = "2"  # not a number
    hooked = sjn.IFNode()
    hooked.register_forward_hook(lambda *a: None)
    net.append(hooked)

    class MyPLIF(sjn.ParametricLIFNode):
        pass

    nan_w = sjn.ParametricLIFNode()
    with torch.no_grad():
        nan_w.w.fill_(float("nan"))
    extra_p = sjn.ParametricLIFNode()
    extra_p.register_parameter("bias", nn.Parameter(torch.zeros(1)))
    net.extend([MyPLIF(), nan_w, extra_p, sjn.ParametricLIFNode()])
    rep = snn_cuda.convert(net)
    skipped = {name: reason for name, _, reason in rep.skipped}
    assert "SuperSpike" in skipped["0"] and "SuperSpike" in skipped["1"]
    assert "spiking=False" in skipped["2"] and "not an exact" in skipped["3"]
    assert "alpha" in skipped["4"] and "hooks" in skipped["6"]
    assert "not an exact" in skipped["7"] and "non-finite w" in skipped["8"] and "unexpected" in skipped["9"]
    assert [c[0] for c in rep.converted] == ["5", "10"]
    assert isinstance(net[5], snn_cuda.LIF) and isinstance(net[0], sjn.ParametricLIFNode)
    assert isinstance(net[10], snn_cuda.ParametricLIF)
    assert all(type(net[i]).__name__ != "SpikingJellyParametricLIF" for i in (0, 7, 8, 9))


@needs_sj
def test_inplace_false_keeps_original_and_shared_modules():
    lif = sjn.LIFNode()
    net = nn.Sequential(nn.Linear(3, 3), lif, nn.Linear(3, 3), lif)
    rep = snn_cuda.convert(net, inplace=False)
    assert net[1] is lif and net[3] is lif
    assert rep.model is not net and rep.model[1] is rep.model[3] and isinstance(rep.model[1], snn_cuda.LIF)
    assert len(rep.converted) == 1
    rep2 = snn_cuda.convert(net)
    assert rep2.model is net and isinstance(net[1], snn_cuda.LIF) and net[1] is net[3]
    # root module itself
    rep3 = snn_cuda.convert(sjn.IFNode())
    assert isinstance(rep3.model, snn_cuda.IF)


# =========================================================================================
# models: SpikingJelly
# =========================================================================================
def _sj_mlp():
    return nn.Sequential(
        sjl.Flatten(),
        sjl.Linear(20, 16),
        sjn.LIFNode(tau=2.0, surrogate_function=sjs.ATan()),
        sjl.Linear(16, 8),
        sjn.IFNode(v_reset=None, surrogate_function=sjs.Sigmoid(alpha=3.0)),
        sjl.Linear(8, 4),
        sjn.LIFNode(tau=3.0, decay_input=False, detach_reset=True),
    )


def _sj_conv():
    return nn.Sequential(
        sjl.Conv2d(1, 4, 3, padding=1, bias=False),
        sjl.BatchNorm2d(4),
        sjn.IFNode(surrogate_function=sjs.ATan()),
        sjl.MaxPool2d(2),
        sjl.Conv2d(4, 6, 3, padding=1, bias=False),
        sjl.BatchNorm2d(6),
        sjn.LIFNode(surrogate_function=sjs.PiecewiseQuadratic()),
        sjl.AvgPool2d(2),
        sjl.Flatten(),
        sjl.Linear(6 * 2 * 2, 5),
        sjn.LIFNode(surrogate_function=sjs.Erf()),
    )


def _sj_plif_mlp():
    return nn.Sequential(
        sjl.Flatten(),
        sjl.Linear(20, 16),
        sjn.ParametricLIFNode(init_tau=2.0, surrogate_function=sjs.ATan()),
        sjl.Linear(16, 8),
        sjn.ParametricLIFNode(init_tau=3.0, v_reset=None, decay_input=False, surrogate_function=sjs.Sigmoid(alpha=3.0)),
        sjl.Linear(8, 4),
        sjn.ParametricLIFNode(init_tau=1.5, detach_reset=True),
    )


def _sj_plif_conv():
    return nn.Sequential(
        sjl.Conv2d(1, 4, 3, padding=1, bias=False),
        sjl.BatchNorm2d(4),
        sjn.ParametricLIFNode(surrogate_function=sjs.ATan()),
        sjl.MaxPool2d(2),
        sjl.Conv2d(4, 6, 3, padding=1, bias=False),
        sjl.BatchNorm2d(6),
        sjn.LIFNode(surrogate_function=sjs.PiecewiseQuadratic()),
        sjl.AvgPool2d(2),
        sjl.Flatten(),
        sjl.Linear(6 * 2 * 2, 5),
        sjn.ParametricLIFNode(init_tau=4.0, v_reset=None, surrogate_function=sjs.Erf()),
    )


class _LifFcMnist(nn.Module):
    """SpikingJelly's lif_fc_mnist network (single-step, as the tutorial)."""

    def __init__(self, tau=2.0):
        super().__init__()
        self.layer = nn.Sequential(
            sjl.Flatten(), sjl.Linear(28 * 28, 10, bias=False), sjn.LIFNode(tau=tau, surrogate_function=sjs.ATan())
        )

    def forward(self, x):
        return self.layer(x)


SJ_MODELS = {
    "mlp": (_sj_mlp, (6, 20)),
    "conv": (_sj_conv, (6, 1, 8, 8)),
    "lif_fc_mnist": (lambda: _LifFcMnist(), (6, 1, 28, 28)),
    "plif_mlp": (_sj_plif_mlp, (6, 20)),
    "plif_conv": (_sj_plif_conv, (6, 1, 8, 8)),
}


def _sj_data(which, T=5):
    shape = SJ_MODELS[which][1]
    gen = torch.Generator().manual_seed(3)
    xs = [torch.rand(T, *shape, generator=gen) * 1.5 for _ in range(3)]
    ys = [torch.randint(0, 4, (shape[0],), generator=gen) for _ in range(3)]
    return xs, ys


def _sj_step(xs, ys, step_mode):
    def step(net, i):
        if step_mode == "s":
            out = torch.stack([net(xs[i][t]) for t in range(xs[i].shape[0])])
        else:
            out = net(xs[i])
        rate = out.mean(0)
        loss = nn.functional.mse_loss(rate, nn.functional.one_hot(ys[i], rate.shape[-1]).float())
        return [out], loss

    return step


@needs_sj
@pytest.mark.parametrize("which", list(SJ_MODELS))
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_sj_models_train_equal(which, step_mode):
    """Converted in place after the optimiser was built: the same Parameters (the PLIF `w`s
    included) train on; spikes equal, gradients and parameters close over 3 steps."""
    if which == "lif_fc_mnist" and step_mode == "m":
        pytest.skip("the tutorial runs single-step")
    torch.manual_seed(0)
    ref = SJ_MODELS[which][0]()
    sjf.set_step_mode(ref, step_mode)
    conv = copy.deepcopy(ref)
    params = list(conv.parameters())
    opt = _sgd(conv)  # before the conversion
    keys = list(conv.state_dict())
    rep = snn_cuda.convert(conv)
    assert not rep.skipped and len(rep.converted) == 3 - 2 * (which == "lif_fc_mnist")
    now = list(conv.parameters())
    assert len(now) == len(params) and all(a is b for a, b in zip(now, params))
    assert list(conv.state_dict()) == keys
    plifs = [m for m in conv.modules() if isinstance(m, snn_cuda.ParametricLIF)]
    assert len(plifs) == {"plif_mlp": 3, "plif_conv": 2}.get(which, 0)
    w_init = [m.w.detach().clone() for m in plifs]
    xs, ys = _sj_data(which)
    _train_compare(ref, conv, _sj_step(xs, ys, step_mode), sjf.reset_net, opt_conv=opt)
    assert all(not torch.equal(m.w, w0) for m, w0 in zip(plifs, w_init))  # w trained


@needs_sj
@pytest.mark.parametrize("which", ["plif_mlp", "plif_conv"])
def test_sj_plif_state_dict_round_trip(which):
    """A state_dict of the SpikingJelly model loads into the converted one and back; the
    loaded models compute the same spikes."""
    torch.manual_seed(0)
    make = SJ_MODELS[which][0]
    ref = make()
    sjf.set_step_mode(ref, "m")
    xs, ys = _sj_data(which)
    step = _sj_step(xs, ys, "m")
    o = _sgd(ref)
    for i in range(2):  # some training, so that w differs from its initial value
        sjf.reset_net(ref)
        o.zero_grad()
        step(ref, i)[1].backward()
        o.step()
    conv = snn_cuda.convert(make()).model  # fresh, converted
    sjf.set_step_mode(conv, "m")
    conv.load_state_dict(ref.state_dict())
    back = make()  # fresh SpikingJelly model, loads the converted one's state
    sjf.set_step_mode(back, "m")
    back.load_state_dict(conv.state_dict())
    for net in (ref, conv, back):
        net.eval()
    outs = []
    for net in (ref, conv, back):
        sjf.reset_net(net)
        outs.append(step(net, 2)[0][0])
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@needs_sj
def test_sj_reset_paths():
    torch.manual_seed(0)
    ref = _LifFcMnist()
    x = torch.rand(4, 1, 28, 28) * 3
    ref(x)
    sjf.reset_net(ref)  # fills SpikingJelly's reset cache with the old nodes
    snn_cuda.convert(ref)
    node = ref.layer[2]
    from spikingjelly.activation_based import base as sjbase

    assert isinstance(node, sjbase.MemoryModule)
    for reset in (sjf.reset_net, snn_cuda.functional.reset_net):
        ref(x)
        assert isinstance(node.v, torch.Tensor) and node.v.abs().sum() > 0
        reset(ref)
        assert node.v == 0.0 and not isinstance(node.v, torch.Tensor)
    # detach_net / set_step_mode of SpikingJelly reach the converted node too
    ref(x)
    sjf.detach_net(ref)
    assert not node.v.requires_grad
    sjf.set_step_mode(ref, "m")
    assert node.step_mode == "m"


# =========================================================================================
# models: snnTorch
# =========================================================================================
class _Tutorial5(nn.Module):
    """snnTorch tutorial 5's network, membranes passed explicitly."""

    def __init__(self, num_inputs=784, num_hidden=100, num_outputs=10, beta=0.95, num_steps=6, learn=False):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        if learn:  # per-neuron learnable beta and threshold on the hidden layer, scalar on the output
            self.lif1 = snn.Leaky(
                beta=torch.linspace(0.8, 0.95, num_hidden),
                threshold=torch.ones(num_hidden),
                learn_beta=True,
                learn_threshold=True,
            )
        else:
            self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = snn.Leaky(beta=beta, learn_beta=learn, learn_threshold=learn)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for _ in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


def _st_mlp():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(20, 16),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(16, 8),
        snn.Leaky(beta=0.7, reset_mechanism="zero", init_hidden=True, spike_grad=sts.fast_sigmoid(slope=10)),
        nn.Linear(8, 4),
        snn.Leaky(beta=0.8, init_hidden=True, output=True, spike_grad=sts.sigmoid(slope=5)),
    )


def _st_conv():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.5, init_hidden=True),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.AvgPool2d(2),
        snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="none"),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
        snn.Leaky(beta=0.5, init_hidden=True, output=True),
    )


def _st_conv_learn():
    """A small conv net with per-channel (C, 1, 1) learnable beta and threshold, a per-channel
    learnable threshold with a fixed scalar beta, and a scalar learnable output layer."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.MaxPool2d(2),
        snn.Leaky(
            beta=torch.linspace(0.4, 0.7, 4).view(4, 1, 1),
            threshold=torch.ones(4, 1, 1),
            learn_beta=True,
            learn_threshold=True,
            init_hidden=True,
        ),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.AvgPool2d(2),
        snn.Leaky(
            beta=0.5,
            threshold=torch.linspace(0.8, 1.2, 6).view(6, 1, 1),
            learn_threshold=True,
            init_hidden=True,
            reset_mechanism="zero",
        ),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5),
        snn.Leaky(beta=0.5, learn_beta=True, learn_threshold=True, init_hidden=True, output=True),
    )


ST_MODELS = {
    "tutorial5": (_Tutorial5, (8, 784)),
    "mlp": (_st_mlp, (8, 20)),
    "conv": (_st_conv, (8, 1, 8, 8)),
    "tutorial5_learn": (lambda: _Tutorial5(learn=True), (8, 784)),
    "conv_learn": (_st_conv_learn, (8, 1, 8, 8)),
}


def _st_step(which, shape, T=6):
    gen = torch.Generator().manual_seed(5)
    xs = [torch.rand(*shape, generator=gen) * 1.5 for _ in range(3)]
    ys = [torch.randint(0, 4, (shape[0],), generator=gen) for _ in range(3)]

    def step(net, i):
        if which.startswith("tutorial5"):
            spk, mem = net(xs[i])
            loss = sum(nn.functional.cross_entropy(mem[t], ys[i]) for t in range(T))
            return [spk, mem], loss
        spks, mems = [], []
        for _ in range(T):
            spk, mem = net(xs[i])
            spks.append(spk)
            mems.append(mem)
        spk, mem = torch.stack(spks), torch.stack(mems)
        loss = sum(nn.functional.cross_entropy(mem[t], ys[i]) for t in range(T))
        return [spk, mem], loss

    return step


@needs_snntorch
@pytest.mark.parametrize("which", list(ST_MODELS))
def test_snntorch_models_train_equal(which):
    """Converted in place after the optimiser was built: the same Parameters (learnable beta /
    threshold included) train on; spikes equal, gradients and parameters close over 3 steps;
    state_dict keys unchanged; state_dicts load across (before -> after and after -> before)."""
    torch.manual_seed(0)
    make, shape = ST_MODELS[which]
    ref = make()
    sd = copy.deepcopy(ref.state_dict())
    conv = copy.deepcopy(ref)
    params = list(conv.parameters())
    opt = _sgd(conv)  # before the conversion
    rep = snn_cuda.convert(conv)
    assert not rep.skipped and len(rep.converted) == (2 if which.startswith("tutorial5") else 3)
    now = list(conv.parameters())
    assert len(now) == len(params) and all(a is b for a, b in zip(now, params))
    assert list(conv.state_dict().keys()) == list(sd.keys())
    conv.load_state_dict(sd)  # a state_dict saved before conversion loads after it
    learned = {n: p.detach().clone() for n, p in conv.named_parameters() if n.endswith(("beta", "threshold"))}
    assert bool(learned) == which.endswith("_learn")
    step = _st_step(which, shape)
    _train_compare(ref, conv, step, stu.reset, check_out=["exact", "close"], opt_conv=opt)
    for n, p0 in learned.items():  # the learnable neuron parameters did train
        assert not torch.equal(dict(conv.named_parameters())[n], p0), n
    # after -> before: a fresh snnTorch model loads the trained converted one's state
    back = make()
    back.load_state_dict(conv.state_dict())
    for net in (ref, conv, back):
        net.eval()
        stu.reset(net)
    outs = [step(net, 2)[0] for net in (ref, conv, back)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][0], outs[2][0])
    torch.testing.assert_close(outs[0][1], outs[2][1], rtol=1e-5, atol=1e-5)


@needs_snntorch
def test_snntorch_reset_paths():
    torch.manual_seed(0)
    net = _st_mlp()
    snn_cuda.convert(net)
    leaks = [m for m in net if isinstance(m, snn.Leaky)]
    assert all(type(m).__name__ == "SnnTorchLeaky" for m in leaks)
    x = torch.rand(4, 20) * 3

    def dirty():
        for _ in range(3):
            net(x)
        assert all(m.mem.abs().sum() > 0 for m in leaks)

    def clean():
        return all(float(m.mem.abs().sum()) == 0 for m in leaks)

    for reset in (
        stu.reset,
        snn_cuda.functional.reset_net,
        lambda n: snn.Leaky.reset_hidden(),
        lambda n: [m.reset_mem() for m in leaks],
        lambda n: [m.init_leaky() for m in leaks],
    ):
        dirty()
        reset(net)
        assert clean()
    # after a reset, the net computes as from a fresh state
    dirty()
    stu.reset(net)
    out1 = net(x)[0]
    stu.reset(net)
    assert torch.equal(out1, net(x)[0])
    # detach_hidden cuts the graph
    net(x)
    snn.Leaky.detach_hidden()
    assert not any(m.mem.requires_grad for m in leaks)


@needs_snntorch
def test_snntorch_init_hidden_forbids_mem():
    conv = snn_cuda.convert(snn.Leaky(beta=0.9, init_hidden=True)).model
    with pytest.raises(TypeError):
        conv(torch.rand(2, 3), torch.zeros(2, 3))


@needs_sj
def test_save_load_whole_converted_model():
    # (a whole snnTorch model does not pickle, converted or not: its spike_grad is a closure)
    net = nn.Sequential(
        nn.Linear(4, 4),
        sjn.LIFNode(),
        nn.Linear(4, 4),
        sjn.IFNode(step_mode="m"),
        nn.Linear(4, 4),
        sjn.ParametricLIFNode(),
    )
    snn_cuda.convert(net)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    net2 = torch.load(buf, weights_only=False)
    assert type(net2[1]) is type(net[1]) and type(net2[5]) is type(net[5])
    assert isinstance(net2[5].w, nn.Parameter) and torch.equal(net2[5].w, net[5].w)
    x = torch.rand(3, 4) * 2
    snn_cuda.functional.reset_net(net)
    net[3].step_mode = net2[3].step_mode = "s"
    assert torch.equal(net(x), net2(x))
