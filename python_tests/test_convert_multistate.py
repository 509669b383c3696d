"""snn_cuda.convert on the multi-state neurons: snnTorch ``Synaptic`` -> SnnTorchSynaptic (a
single-step snn_cuda.Synaptic inside) and SpikingJelly 2.0 ``CUBALIFNode`` ->
SpikingJellyCUBALIF (an snn_cuda.CUBALIF). Converted models compute the same spikes (exactly),
states and gradients (fp tolerance) as the originals, keep their state_dict keys and their
Parameter objects; options snn_cuda cannot reproduce leave the module unchanged, with the reason
in the report. Each peer's tests skip when that library is not installed."""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
from torch import nn

import snn_cuda
from snn_cuda import surrogate as sg

F32, F64 = torch.float32, torch.float64


@pytest.fixture(scope="module")
def snn():
    return pytest.importorskip("snntorch")


@pytest.fixture(scope="module")
def sj():
    """(neuron, surrogate, functional, layer, base) of SpikingJelly's activation_based package."""
    pytest.importorskip("spikingjelly")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    if not hasattr(neuron, "CUBALIFNode"):
        pytest.skip("this SpikingJelly has no CUBALIFNode")
    from spikingjelly.activation_based import base, functional, layer, surrogate

    return neuron, surrogate, functional, layer, base


def _close(a, b, rel, what):
    """max |a - b| <= rel * max(max |b|, 1)."""
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = max(float(b.abs().max()) if b.numel() else 0.0, 1.0)
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= rel * scale, f"{what}: max abs err {err:.3g} > {rel:.0e} * {scale:.3g}"


def _grads_equal(a: nn.Module, b: nn.Module, rel=2e-5):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        assert (pa[k].grad is None) == (pb[k].grad is None), k
        if pa[k].grad is not None:
            _close(pb[k].grad, pa[k].grad, rel, f"grad {k}")


def _weights(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


# =========================================================================================
# snnTorch Synaptic
# =========================================================================================
def _st_surrogates(sts):
    return [
        lambda: None,  # snnTorch's default: atan()
        lambda: sts.atan(alpha=3.0),
        lambda: sts.fast_sigmoid(slope=5.0),
        lambda: sts.sigmoid(slope=4.0),
        lambda: sts.straight_through_estimator(),
    ]


def _vec(lo, hi, n=6):
    return torch.linspace(lo, hi, n)


# name -> (alpha, beta, threshold, learn_alpha, learn_beta, learn_threshold); 6 neurons
SYN = {
    "fixed": (lambda: 0.85, lambda: 0.8, lambda: 0.9, False, False, False),
    "alpha": (lambda: 0.85, lambda: 0.8, lambda: 0.9, True, False, False),
    "beta": (lambda: 0.85, lambda: 0.8, lambda: 0.9, False, True, False),
    "threshold": (lambda: 0.85, lambda: 0.8, lambda: 0.9, False, False, True),
    "all": (lambda: 0.7, lambda: 0.85, lambda: 1.1, True, True, True),
    "all_per_neuron": (lambda: _vec(0.3, 0.95), lambda: _vec(0.5, 0.95), lambda: _vec(0.7, 1.2), True, True, True),
    "fixed_vecs": (lambda: _vec(0.4, 0.9), lambda: _vec(0.6, 0.95), lambda: _vec(0.6, 1.1), False, False, False),
    "mixed": (lambda: _vec(0.4, 0.9), lambda: 0.8, lambda: 0.9, False, True, True),
    "out_of_range": (
        lambda: torch.tensor([1.2, -0.1, 0.5, 1.0, 0.0, 0.9]),
        lambda: torch.tensor([0.9, 1.3, -0.2, 0.7, 1.0, 0.95]),
        lambda: 0.8,
        True,
        True,
        False,
    ),
    "fixed_out_of_range": (
        lambda: torch.tensor([1.2, -0.1, 0.5, 1.0, 0.0, 0.9]),
        lambda: 1.3,
        lambda: 0.8,
        False,
        False,
        True,
    ),
}
HIDDEN = [(False, False), (True, False), (True, True)]  # (init_hidden, output)


def _syn_cases():
    cases = itertools.product(SYN, ("subtract", "zero", "none"), HIDDEN)
    return [pytest.param(i, c, r, h, id=f"{c}-{r}-{int(h[0])}{int(h[1])}") for i, (c, r, h) in enumerate(cases)]


def _make_synaptic(snn, case, reset, hidden, spike_grad=None, dtype=F32):
    a, b, th, la, lb, lt = SYN[case]

    def val(f):
        v = f()
        return v.to(dtype) if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype)

    return snn.Synaptic(
        alpha=val(a),
        beta=val(b),
        threshold=val(th),
        spike_grad=spike_grad,
        learn_alpha=la,
        learn_beta=lb,
        learn_threshold=lt,
        reset_mechanism=reset,
        init_hidden=hidden[0],
        output=hidden[1],
    )


def _run_syn(net, x, hidden):
    """snnTorch call forms over x; returns spikes, syn, mem (sequences), grad x and
    {name: grad} of the parameters (loss on all three outputs)."""
    init_hidden, output = hidden
    xx = x.clone().requires_grad_()
    spks, syns, mems = [], [], []
    if init_hidden:
        for xt in xx.unbind(0):
            out = net(xt)
            spk, syn, mem = out if output else (out, net.syn, net.mem)
            spks.append(spk)
            syns.append(syn)
            mems.append(mem)
    else:
        syn, mem = net.reset_mem()
        for xt in xx.unbind(0):
            spk, syn, mem = net(xt, syn, mem)
            spks.append(spk)
            syns.append(syn)
            mems.append(mem)
    s, y, m = torch.stack(spks), torch.stack(syns), torch.stack(mems)
    for p in net.parameters():
        p.grad = None
    loss = (s.double() * _weights(s.shape, 1)).sum() + (y.double() * _weights(y.shape, 2)).sum()
    (loss + (m.double() * _weights(m.shape, 3)).sum()).backward()
    return s.detach(), y.detach(), m.detach(), xx.grad, {n: p.grad for n, p in net.named_parameters()}


def _check_syn_runs(r0, r1, dtype=F32):
    (s0, y0, m0, g0, p0), (s1, y1, m1, g1, p1) = r0, r1
    assert torch.equal(s0.double(), s1.double())
    st = 1e-6  # float64: snnTorch's float32 reset product (test_multistate_peers.py)
    _close(y1, y0, st, "syn")
    _close(m1, m0, st, "mem")
    _close(g1, g0, 2e-5, "grad x")
    assert p0.keys() == p1.keys()
    for n in p0:
        _close(p1[n], p0[n], 2e-5, f"grad {n}")


@pytest.mark.parametrize("idx,case,reset,hidden", _syn_cases())
def test_snntorch_synaptic_equivalence(snn, idx, case, reset, hidden):
    import snntorch.surrogate as sts

    surrogates = _st_surrogates(sts)
    ref = _make_synaptic(snn, case, reset, hidden, spike_grad=surrogates[idx % len(surrogates)]())
    rep = snn_cuda.convert(ref, inplace=False)
    conv = rep.model
    assert [c[1:3] for c in rep.converted] == [("Synaptic", "SnnTorchSynaptic")] and not rep.skipped
    assert isinstance(conv, snn.Synaptic) and isinstance(conv.neuron, snn_cuda.Synaptic)
    assert conv.neuron.step_mode == "s" and conv.neuron.reset_mechanism == reset
    la, lb, lt = SYN[case][3:]
    if la or lb or lt:
        assert "the same nn.Parameters" in rep.converted[0][3]
    if "out_of_range" in case:
        assert "clamped" in rep.converted[0][3]
    # same parameters (names, kinds, values), same state_dict (keys in order, values); none in the child
    assert [n for n, _ in conv.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for n, learn in zip(("alpha", "beta", "threshold"), (la, lb, lt)):
        assert isinstance(getattr(conv, n), nn.Parameter) == learn
    assert list(conv.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(conv.state_dict()[k], v), k
    assert not list(conv.neuron.parameters()) and not list(conv.neuron.buffers())
    x = torch.rand(9, 4, 6, generator=torch.Generator().manual_seed(idx)) * 0.7
    for _ in range(2):  # a second sequence after a reset of both
        r0, r1 = _run_syn(ref, x, hidden), _run_syn(conv, x, hidden)
        _check_syn_runs(r0, r1)
        assert 0.0 < float(r0[0].mean()) < 1.0
        ref.reset_mem()
        conv.reset_mem()
    if la:
        assert conv.neuron.alpha is conv.alpha  # bound, not copied
        if case == "out_of_range":  # clamp(0, 1)'s gradient: zero outside [0, 1], as in snnTorch
            assert conv.alpha.grad[0] == 0 and conv.alpha.grad[1] == 0 and conv.alpha.grad[2] != 0


@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_snntorch_synaptic_float64(snn, reset, hidden):
    ref = _make_synaptic(snn, "all_per_neuron", reset, hidden, dtype=F64)
    conv = snn_cuda.convert(ref, inplace=False).model
    assert conv.alpha.dtype == F64
    x = torch.rand(8, 3, 6, dtype=F64, generator=torch.Generator().manual_seed(4)) * 0.7
    r0, r1 = _run_syn(ref, x, hidden), _run_syn(conv, x, hidden)
    assert r0[0].dtype == F32 and r1[0].dtype == F64  # snnTorch's spikes are float32 for every input
    _check_syn_runs(r0, r1, F64)


def test_snntorch_synaptic_same_parameters_inplace(snn):
    """In place, the learnable alpha / beta / threshold stay the same objects: an optimiser
    built before the conversion keeps training them."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(3, 6),
        snn.Synaptic(alpha=_vec(0.5, 0.9), beta=0.8, learn_alpha=True, learn_beta=True, learn_threshold=True),
    )
    params = list(net.parameters())
    keys = list(net.state_dict())
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    rep = snn_cuda.convert(net)
    assert rep.model is net and type(net[1]).__name__ == "SnnTorchSynaptic"
    assert (
        rep.converted[0][3]
        == "learnable per-neuron(6,) alpha; learnable beta; learnable threshold; the same nn.Parameters"
    )
    assert all(p is q for p, q in zip(net.parameters(), params)) and len(list(net.parameters())) == len(params)
    assert list(net.state_dict()) == keys
    alpha0 = net[1].alpha.detach().clone()
    x = torch.rand(5, 2, 3)
    syn, mem = net[1].init_synaptic()
    out = []
    for xt in x.unbind(0):
        spk, syn, mem = net[1](net[0](xt), syn, mem)
        out.append(mem)
    torch.stack(out).sum().backward()
    opt.step()
    assert not torch.equal(net[1].alpha.detach(), alpha0)  # trained through the old optimiser
    # the root module itself
    root = snn.Synaptic(alpha=0.9, beta=0.8, learn_alpha=True)
    rep = snn_cuda.convert(root)
    assert rep.model is not root and rep.model.alpha is root.alpha


class _StNet(nn.Module):
    """Tutorial-style snnTorch model: two Synaptic layers, init_hidden, loop in forward."""

    def __init__(self, snn, dtype=F32):
        super().__init__()
        self.fc1 = nn.Linear(8, 12, dtype=dtype)
        self.lif1 = snn.Synaptic(alpha=0.9, beta=0.85, init_hidden=True, learn_beta=True)
        self.fc2 = nn.Linear(12, 4, dtype=dtype)
        self.lif2 = snn.Synaptic(
            alpha=torch.linspace(0.6, 0.9, 4, dtype=dtype),
            beta=torch.tensor(0.8, dtype=dtype),
            threshold=torch.tensor(0.7, dtype=dtype),
            learn_alpha=True,
            learn_threshold=True,
            reset_mechanism="zero",
            init_hidden=True,
            output=True,
        )

    def forward(self, x):
        spks, mems = [], []
        for xt in x.unbind(0):
            s1 = self.lif1(self.fc1(xt))
            spk, syn, mem = self.lif2(self.fc2(s1))
            spks.append(spk)
            mems.append(mem)
        return torch.stack(spks), torch.stack(mems)


def test_snntorch_synaptic_model_trains_equal(snn):
    import snntorch.utils as stu

    torch.manual_seed(0)
    ref = _StNet(snn)
    with torch.no_grad():
        ref.fc1.weight.mul_(2.0)
    conv = copy.deepcopy(ref)
    rep = snn_cuda.convert(conv)
    assert [c[0] for c in rep.converted] == ["lif1", "lif2"] and not rep.skipped
    assert list(conv.state_dict()) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(conv.state_dict()[k], v), k
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in (ref, conv)]
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x = torch.rand(10, 5, 8, generator=g)
        outs = []
        for net, opt in zip((ref, conv), opts):
            stu.reset(net)
            opt.zero_grad()
            spk, mem = net(x)
            loss = (spk * _weights(spk.shape, 7, F32)).sum() + mem.square().sum()
            loss.backward()
            outs.append((spk.detach(), mem.detach(), loss.detach()))
        assert torch.equal(outs[0][0], outs[1][0]), f"step {step}: spikes"
        _close(outs[1][1], outs[0][1], 1e-5, f"step {step}: mem")
        _close(outs[1][2], outs[0][2], 1e-5, f"step {step}: loss")
        assert 0.0 < float(outs[0][0].mean()) < 1.0
        _grads_equal(ref, conv)
        for opt in opts:
            opt.step()
        for (k, p), (_, q) in zip(ref.named_parameters(), conv.named_parameters()):
            _close(q, p, 1e-5, f"step {step}: {k}")


def test_snntorch_synaptic_reset_paths(snn):
    """snntorch.utils.reset, Synaptic.reset_hidden / detach_hidden (truncated BPTT), the static
    SpikingNeuron.detach(syn, mem), snn_cuda.functional.reset_net and reset_mem all work on the
    converted module as on snnTorch's."""
    import snntorch.utils as stu

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 6), snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, learn_beta=True))
    conv = snn_cuda.convert(ref, inplace=False).model
    x = torch.rand(12, 3, 4) * 2

    def run(net, resetter):
        resetter(net)
        out = []
        for t, xt in enumerate(x.unbind(0)):
            out.append(net(xt))
            if t == 5:  # truncated BPTT: cut the graph of the states in place, as snnTorch does
                snn.Synaptic.detach_hidden()
        loss = torch.stack(out).sum() + net[1].mem.sum() + net[1].syn.sum()
        loss.backward()
        return torch.stack(out).detach(), net[1].mem.detach().clone(), net[1].syn.detach().clone()

    def via_utils(net):
        stu.reset(net)

    def via_reset_net(net):
        snn_cuda.functional.reset_net(net) if net is conv else stu.reset(net)

    def via_reset_mem(net):
        net[1].reset_mem()

    for resetter in (via_utils, via_reset_net, via_reset_mem, via_utils):
        ref.zero_grad()
        conv.zero_grad()
        s0, m0, y0 = run(ref, resetter)
        s1, m1, y1 = run(conv, resetter)
        assert torch.equal(s0, s1)
        _close(m1, m0, 1e-6, "mem")
        _close(y1, y0, 1e-6, "syn")
        _grads_equal(ref, conv)
    with pytest.raises(TypeError, match="init_hidden"):
        conv[1](torch.rand(3, 6), torch.zeros(3, 6), None)
    # the explicit-state form, with snnTorch's static in-place detach of the states
    ref1 = snn.Synaptic(alpha=0.8, beta=0.9)
    conv1 = snn_cuda.convert(ref1, inplace=False).model
    outs = []
    for net in (ref1, conv1):
        syn, mem = net.init_synaptic()
        for xt in x.unbind(0):
            spk, syn, mem = net(torch.cat([xt, xt], 1)[:, :6].requires_grad_(), syn, mem)
            snn.Synaptic.detach(syn, mem)
            assert not syn.requires_grad and not mem.requires_grad
        outs.append((spk, syn, mem))
    for a, b in zip(*outs):
        _close(b, a, 1e-6, "explicit states")


def test_snntorch_synaptic_shape_change_and_state_carried(snn):
    ref = snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)
    for net in (ref,):
        net(torch.rand(4, 3) * 2)  # running state of another shape
    # converted mid-sequence: the running state is carried over
    ref2 = snn.Synaptic(alpha=0.9, beta=0.8, init_hidden=True)
    ref2(torch.rand(2, 3) * 2)
    conv2 = snn_cuda.convert(ref2, inplace=False).model
    assert torch.equal(conv2.syn, ref2.syn) and torch.equal(conv2.mem, ref2.mem)
    x = torch.rand(2, 3) * 2
    assert torch.equal(ref2(x), conv2(x))
    _close(conv2.mem, ref2.mem, 1e-6, "carried mem")
    # a new shape restarts both states from zero, as snnTorch does
    conv = snn_cuda.convert(ref, inplace=False).model
    for xs in (torch.rand(2, 3) * 2, torch.rand(2, 3) * 2):
        assert torch.equal(ref(xs), conv(xs))
        _close(conv.syn, ref.syn, 1e-6, "syn")
        _close(conv.mem, ref.mem, 1e-6, "mem")


def test_snntorch_synaptic_state_dict_round_trip(snn):
    ref = snn.Synaptic(alpha=0.9, beta=0.8, threshold=1.0, init_hidden=True)
    sd = copy.deepcopy(ref.state_dict())
    conv = snn_cuda.convert(ref, inplace=False).model
    assert (
        list(conv.state_dict())
        == list(sd)
        == ["threshold", "graded_spikes_factor", "reset_mechanism_val", "beta", "alpha"]
    )
    # another state loads into the kernel's constants (alpha clamped as snnTorch does)
    sd2 = dict(sd, alpha=torch.tensor(1.4), beta=torch.tensor(0.5), threshold=torch.tensor(0.6))
    conv.load_state_dict(sd2)
    ref.load_state_dict(sd2)
    assert conv.neuron.alpha == 1.0 and conv.neuron.beta == 0.5 and conv.neuron.threshold == pytest.approx(0.6)
    x = torch.rand(6, 3, 4)
    for xt in x.unbind(0):
        assert torch.equal(ref(xt), conv(xt))
    with pytest.raises(RuntimeError, match="graded_spikes_factor"):
        conv.load_state_dict(dict(sd, graded_spikes_factor=torch.tensor(2.0)))


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_report_snntorch_synaptic_skips(snn):
    import snntorch.surrogate as sts

    class Custom(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return (x > 0).float()

        @staticmethod
        def backward(ctx, g):
            return g

    class MySynaptic(snn.Synaptic):
        pass

    def syn(**kw):
        return snn.Synaptic(alpha=0.9, beta=0.8, **kw)

    cases = {
        "sdis": (syn(surrogate_disable=True), "surrogate_disable"),
        "inh": (syn(inhibition=True), "inhibition"),
        "quant": (syn(state_quant=lambda m: m), "state_quant"),
        "nodelay": (syn(reset_delay=False), "reset_delay=False"),
        "custom": (syn(spike_grad=Custom.apply), "custom surrogate"),
        "custom2": (syn(spike_grad=sts.triangular()), "not supported"),
        "nan_alpha": (
            snn.Synaptic(alpha=torch.tensor([0.9, float("nan")]), beta=0.8, learn_alpha=True),
            "non-finite alpha",
        ),
        "inf_beta": (snn.Synaptic(alpha=0.9, beta=float("inf")), "non-finite beta"),
        "subclass": (MySynaptic(alpha=0.9, beta=0.8), "not an exact snnTorch Leaky or Synaptic"),
    }
    gsf = syn()
    gsf.graded_spikes_factor = torch.tensor(2.0)
    cases["gsf"] = (gsf, "graded_spikes_factor=2.0 != 1")
    lgsf = syn()
    lgsf.graded_spikes_factor = nn.Parameter(torch.tensor(1.0))
    cases["lgsf"] = (lgsf, "learnable graded_spikes_factor")
    extra = syn()
    extra.register_buffer("bias", torch.zeros(2))
    cases["extra"] = (extra, "unexpected parameters/buffers")
    hooked = syn()
    hooked.register_forward_hook(lambda *a: None)
    cases["hooked"] = (hooked, "hooks")
    net = nn.ModuleDict({k: v for k, (v, _) in cases.items()})
    net["ok"] = syn()
    net["leaky"] = snn.Leaky(beta=0.9)  # the Leaky conversion is unchanged beside it
    before = dict(net.items())
    rep = snn_cuda.convert(net)
    assert [c[0] for c in rep.converted] == ["ok", "leaky"]
    assert [c[2] for c in rep.converted] == ["SnnTorchSynaptic", "SnnTorchLeaky"]
    skipped = {name: reason for name, _, reason in rep.skipped}
    assert skipped.keys() == cases.keys()
    for k, (_, why) in cases.items():
        assert why in skipped[k], (k, skipped[k])
        assert net[k] is before[k]  # left unchanged
    # converting again finds nothing new to convert or to skip
    rep2 = snn_cuda.convert(net)
    assert not rep2.converted and [n for n, _, _ in rep2.skipped] == list(cases)


def test_snntorch_synaptic_saved_state_dict_loads_both_ways(snn):
    """(A whole snnTorch model does not pickle, converted or not: its spike_grad is a closure.)
    A state_dict saved from a converted model loads into the original class and back."""
    torch.manual_seed(0)
    net = _StNet(snn)
    snn_cuda.convert(net)
    with torch.no_grad():
        net.lif1.beta.fill_(0.7)
        net.lif2.alpha.mul_(0.9)
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf)
    plain = _StNet(snn)
    plain.load_state_dict(sd)
    conv = snn_cuda.convert(_StNet(snn)).model
    conv.load_state_dict(plain.state_dict())
    x = torch.rand(6, 2, 8)
    outs = []
    for n in (net, plain, conv):
        n.lif1.reset_mem()
        n.lif2.reset_mem()
        outs.append(n(x))
    for a in outs[1:]:
        assert torch.equal(a[0], outs[0][0])
        _close(a[1], outs[0][1], 1e-6, "mem")


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_snntorch_synaptic_backends(snn, backend):
    ref = _make_synaptic(snn, "all_per_neuron", "subtract", (True, True))
    conv = snn_cuda.convert(ref, inplace=False, backend=backend).model
    assert conv.neuron.backend == backend
    x = torch.rand(7, 3, 6, generator=torch.Generator().manual_seed(2)) * 0.7
    _check_syn_runs(_run_syn(ref, x, (True, True)), _run_syn(conv, x, (True, True)))


# =========================================================================================
# SpikingJelly CUBALIFNode
# =========================================================================================
SJ_SURROGATES = [
    ("Rect", 1.0),
    ("Sigmoid", 4.0),
    ("ATan", 2.0),
    ("PiecewiseQuadratic", 1.0),
    ("PiecewiseExp", 1.5),
    ("SoftSign", 2.0),
    ("Erf", 2.0),
]


def _cuba_cases():
    cases = itertools.product((0.0, -0.2, None), (False, True), ("s", "m"), (False, True), (F32, F64))
    return [
        pytest.param(i, *c, id=f"{c[0]}-{int(c[1])}-{c[2]}-{int(c[3])}-{'f32' if c[4] == F32 else 'f64'}")
        for i, c in enumerate(cases)
    ]


def _make_cuba(sj, v_reset, detach_reset, step_mode, store, sname, alpha, **kw):
    neuron, sjs = sj[0], sj[1]
    node = neuron.CUBALIFNode(
        c_decay=kw.get("c_decay", 0.6),
        v_decay=kw.get("v_decay", 0.7),
        v_threshold=kw.get("v_threshold", 0.5),
        v_reset=v_reset,
        surrogate_function=getattr(sjs, sname)(alpha=alpha),
    )
    # SpikingJelly 2.0's CUBALIFNode.__init__ takes none of these: BaseNode attributes
    node.detach_reset = detach_reset
    node.step_mode = step_mode
    node.store_v_seq = store
    return node


def _run_cuba(net, x, store):
    """Spikes (per step in 's', whole in 'm'), then the gradient of a loss on the spikes, the
    final c and v and v_seq. Returns spikes, c, v, v_seq, grad x."""
    xx = x.clone().requires_grad_()
    s = net(xx) if net.step_mode == "m" else torch.stack([net(xt) for xt in xx.unbind(0)])
    loss = (s.double() * _weights(s.shape, 1)).sum() + (net.v.double() * 0.3).sum() - (net.c.double() * 0.2).sum()
    if store:
        loss = loss + (net.v_seq.double() * _weights(net.v_seq.shape, 2)).sum()
    loss.backward()
    return s.detach(), net.c.detach(), net.v.detach(), None if not store else net.v_seq.detach(), xx.grad


def _check_cuba_runs(r0, r1, dtype):
    (s0, c0, v0, q0, g0), (s1, c1, v1, q1, g1) = r0, r1
    assert torch.equal(s0, s1) and s1.dtype == dtype
    st, gt = (1e-6, 1e-5) if dtype == F32 else (1e-13, 1e-11)
    _close(c1, c0, st, "c")
    _close(v1, v0, st, "v")
    if q0 is not None:
        assert q1.shape == q0.shape
        _close(q1, q0, st, "v_seq")
    _close(g1, g0, gt, "grad x")


@pytest.mark.parametrize("idx,v_reset,detach_reset,step_mode,store,dtype", _cuba_cases())
def test_sj_cuba_lif_equivalence(sj, idx, v_reset, detach_reset, step_mode, store, dtype):
    base = sj[4]
    sname, alpha = SJ_SURROGATES[idx % len(SJ_SURROGATES)]
    ref = _make_cuba(sj, v_reset, detach_reset, step_mode, store, sname, alpha)
    rep = snn_cuda.convert(ref, inplace=False)
    conv = rep.model
    assert rep.converted == [("", "CUBALIFNode", "SpikingJellyCUBALIF", "")] and not rep.skipped
    assert isinstance(conv, snn_cuda.CUBALIF) and isinstance(conv, base.MemoryModule)
    assert conv.step_mode == step_mode and conv.detach_reset == detach_reset and conv.store_v_seq == store
    assert (conv.c_decay, conv.v_decay, conv.v_threshold, conv.v_reset) == (0.6, 0.7, 0.5, v_reset)
    assert type(conv.surrogate) is getattr(sg, sname) and conv.surrogate.alpha == alpha
    assert list(conv.state_dict()) == list(ref.state_dict()) == []
    x = (torch.rand(9, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(idx)) * 0.5 - 0.05).to(dtype)
    for _ in range(2):  # a second sequence after SpikingJelly's reset_net of both
        r0, r1 = _run_cuba(ref, x, store), _run_cuba(conv, x, store)
        _check_cuba_runs(r0, r1, dtype)
        assert 0.0 < float(r0[0].mean()) < 1.0
        sj[2].reset_net(ref)
        sj[2].reset_net(conv)
        assert conv.c == 0.0 and conv.v == (0.0 if v_reset is None else v_reset) and conv.v_seq is None


def _sj_cuba_net(sj, dtype=F32):
    neuron, sjs, _, layer, _ = sj
    c1 = neuron.CUBALIFNode(surrogate_function=sjs.ATan())
    c2 = neuron.CUBALIFNode(c_decay=0.3, v_decay=0.9, v_threshold=0.4, v_reset=None)
    c2.detach_reset = True
    net = nn.Sequential(layer.Linear(8, 12), c1, layer.Linear(12, 4), c2).to(dtype)
    sj[2].set_step_mode(net, "m")
    return net


@pytest.mark.parametrize("dtype", [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")])
def test_sj_cuba_lif_model_trains_equal(sj, dtype):
    sjf = sj[2]
    torch.manual_seed(0)
    ref = _sj_cuba_net(sj, dtype)
    conv = copy.deepcopy(ref)
    params = list(conv.parameters())
    rep = snn_cuda.convert(conv)
    assert [c[0] for c in rep.converted] == ["1", "3"] and not rep.skipped
    assert all(p is q for p, q in zip(conv.parameters(), params))  # the same Parameter objects
    assert list(conv.state_dict()) == list(ref.state_dict())
    assert conv[3].detach_reset and conv[3].v_reset is None and conv[1].step_mode == conv[3].step_mode == "m"
    opts = [torch.optim.SGD(n.parameters(), lr=0.2, momentum=0.9) for n in (ref, conv)]
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        x = torch.rand(10, 5, 8, generator=g, dtype=F64).to(dtype) * 2
        outs = []
        for net, opt in zip((ref, conv), opts):
            sjf.reset_net(net)
            opt.zero_grad()
            out = net(x)
            loss = (out.double() * _weights(out.shape, 4)).sum() + net[3].v.double().square().sum()
            loss.backward()
            outs.append((out.detach(), loss.detach()))
        assert torch.equal(outs[0][0], outs[1][0]), f"step {step}: spikes"
        assert 0.0 < float(outs[0][0].mean()) < 1.0
        rel = 1e-5 if dtype == F32 else 1e-11
        _close(outs[1][1], outs[0][1], rel, "loss")
        _grads_equal(ref, conv, rel)
        for opt in opts:
            opt.step()
    # single-step mode, switched on the whole converted model by SpikingJelly's set_step_mode
    sjf.set_step_mode(ref, "s")
    sjf.set_step_mode(conv, "s")
    x = torch.rand(6, 2, 8, dtype=F64).to(dtype) * 2
    for net in (ref, conv):
        sjf.reset_net(net)
    for xt in x.unbind(0):
        assert torch.equal(ref(xt), conv(xt))
    _close(conv[3].v, ref[3].v, 1e-6 if dtype == F32 else 1e-13, "v after single steps")


def test_sj_cuba_lif_state_carried_and_shape_change(sj):
    ref = _make_cuba(sj, 0.0, False, "m", False, "Rect", 1.0)
    ref(torch.rand(4, 2, 3))  # a running state, then converted mid-sequence
    conv = snn_cuda.convert(ref, inplace=False).model
    assert torch.equal(conv.c, ref.c) and torch.equal(conv.v, ref.v)
    x = torch.rand(5, 2, 3)
    assert torch.equal(ref(x), conv(x))
    _close(conv.v, ref.v, 1e-6, "carried v")
    _close(conv.c, ref.c, 1e-6, "carried c")
    # a new shape restarts c and v, as SpikingJelly does
    for xs in (torch.rand(3, 4, 3), torch.rand(2, 4, 3)):
        assert torch.equal(ref(xs), conv(xs))
        _close(conv.v, ref.v, 1e-6, "v")
        _close(conv.c, ref.c, 1e-6, "c")
    # detach_net cuts the state's graph on both
    xg = torch.rand(3, 4, 3, requires_grad=True)
    ref(xg)
    conv(xg)
    sj[2].detach_net(ref)
    sj[2].detach_net(conv)
    assert not ref.v.requires_grad and not conv.v.requires_grad and not conv.c.requires_grad


def test_report_sj_cuba_lif_skips(sj):
    neuron, sjs, _, _, _ = sj

    class MyCuba(neuron.CUBALIFNode):
        pass

    def cuba(**kw):
        return neuron.CUBALIFNode(**kw)

    cases = {
        "superspike": (cuba(surrogate_function=sjs.SuperSpike()), "SuperSpike"),
        "not_spiking": (cuba(surrogate_function=sjs.Sigmoid(spiking=False)), "spiking=False"),
        "subclass": (MyCuba(), "not an exact SpikingJelly"),
        "nan_decay": (cuba(c_decay=float("nan")), "non-finite c_decay"),
        "vec_decay": (cuba(v_decay=0.5), "per-neuron (non-scalar) v_decay"),
    }
    cases["vec_decay"][0].v_decay = torch.tensor([0.5, 0.6])
    hooked = cuba()
    hooked.register_forward_pre_hook(lambda *a: None)
    cases["hooked"] = (hooked, "hooks")
    extra_p = cuba()
    extra_p.register_parameter("bias", nn.Parameter(torch.zeros(1)))
    cases["extra_param"] = (extra_p, "unexpected parameters/buffers")
    extra_m = cuba()
    extra_m.register_memory("i", 0.0)
    cases["extra_memory"] = (extra_m, "extra memories ['i']")
    prec = cuba()
    prec._neuron_precision = (torch.float32, torch.float16)
    cases["precision"] = (prec, "neuron precision policy")
    net = nn.Sequential(*(m for m, _ in cases.values()))
    net.append(cuba())
    net.append(neuron.LIFNode())  # the other conversions are unchanged beside it
    before = list(net)
    rep = snn_cuda.convert(net)
    skipped = {name: reason for name, _, reason in rep.skipped}
    assert list(skipped) == [str(i) for i in range(len(cases))]
    for i, (k, (_, why)) in enumerate(cases.items()):
        assert why in skipped[str(i)], (k, skipped[str(i)])
        assert net[i] is before[i]
    n = len(cases)
    assert [c[0] for c in rep.converted] == [str(n), str(n + 1)]
    assert isinstance(net[n], snn_cuda.CUBALIF) and isinstance(net[n + 1], snn_cuda.LIF)
    # converting again: nothing new
    rep2 = snn_cuda.convert(net)
    assert not rep2.converted and len(rep2.skipped) == len(cases)


def test_sj_cuba_lif_inplace_false_and_pickle(sj):
    net = _sj_cuba_net(sj)
    rep = snn_cuda.convert(net, inplace=False)
    assert type(net[1]).__name__ == "CUBALIFNode" and type(rep.model[1]).__name__ == "SpikingJellyCUBALIF"
    buf = io.BytesIO()
    torch.save(rep.model, buf)
    buf.seek(0)
    model2 = torch.load(buf, weights_only=False)
    x = torch.rand(4, 2, 8) * 2
    for m in (net, rep.model, model2):
        sj[2].reset_net(m)
    a, b, c = net(x), rep.model(x), model2(x)
    assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize("backend", ["torch", "fused"])
def test_sj_cuba_lif_backends(sj, backend):
    ref = _make_cuba(sj, None, True, "m", True, "Sigmoid", 4.0)
    conv = snn_cuda.convert(ref, inplace=False, backend=backend).model
    assert conv.backend == backend
    x = torch.rand(7, 3, 5, dtype=F64, generator=torch.Generator().manual_seed(3)) * 0.5
    _check_cuba_runs(_run_cuba(ref, x, True), _run_cuba(conv, x, True), F64)
