"""snn_cuda.convert: SpikingJelly / snnTorch models before and after conversion compute
the same spikes (exactly), membranes and gradients (fp tolerance); state_dict, reset paths
and the report. Each peer's tests skip when that library is not installed."""
from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
from torch import nn

import snn_cuda
from snn_cuda import surrogate as sg

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


def _train_compare(ref, conv, step, reset, n_steps=3, check_out=None):
    """Run `step(net)` -> (output tensors, loss) on both nets for a few optimiser steps."""
    # SGD with momentum: Adam's normalisation would blow fp-roundoff-sized differences of
    # near-zero gradients up to lr-sized steps
    oa = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ob = torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9)
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
@pytest.mark.parametrize("name", ["Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "Erf", "Rect"])
@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.3])
def test_sj_surrogate_math(name, alpha):
    from snn_cuda.convert import _sj_surrogate
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    f = getattr(sjs, name)(alpha=alpha)
    mine = _sj_surrogate(f)
    assert type(mine) is getattr(sg, name) and mine.param == alpha
    torch.testing.assert_close(_grad_of(f, x), mine.derivative(x), rtol=1e-12, atol=1e-12)


@needs_snntorch
@pytest.mark.parametrize("fn,cls,p", [("atan", sg.ATan, 0.7), ("atan", sg.ATan, 2.0), ("fast_sigmoid", sg.FastSigmoid, 25.0),
                                      ("fast_sigmoid", sg.FastSigmoid, 3.0), ("sigmoid", sg.Sigmoid, 5.0),
                                      ("straight_through_estimator", sg.StraightThrough, None)])
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
SJ_SURROGATES = [("Sigmoid", 4.0), ("ATan", 2.0), ("PiecewiseQuadratic", 1.0), ("PiecewiseExp", 1.5),
                 ("SoftSign", 2.0), ("Erf", 2.0), ("Rect", 1.0)]


def _sj_cases():
    for kind, v_reset, decay_input, detach_reset, step_mode, store in itertools.product(
            ("LIF", "IF"), (0.0, None, -0.2), (True, False), (False, True), ("s", "m"), (False, True)):
        if kind == "IF" and not decay_input:
            continue
        yield kind, v_reset, decay_input, detach_reset, step_mode, store


@needs_sj
@pytest.mark.parametrize("kind,v_reset,decay_input,detach_reset,step_mode,store", list(_sj_cases()))
def test_sj_node_equivalence(kind, v_reset, decay_input, detach_reset, step_mode, store):
    i = hash((kind, v_reset, decay_input, detach_reset, step_mode, store)) % len(SJ_SURROGATES)
    sname, alpha = SJ_SURROGATES[i]
    kw = dict(v_reset=v_reset, v_threshold=0.8, surrogate_function=getattr(sjs, sname)(alpha=alpha),
              detach_reset=detach_reset, step_mode=step_mode, store_v_seq=store)
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
# snnTorch: single neurons, all options
# =========================================================================================
ST_SURROGATES = [lambda: sts.atan(), lambda: sts.atan(alpha=3.0), lambda: sts.fast_sigmoid(slope=25),
                 lambda: sts.fast_sigmoid(slope=5.0), lambda: sts.sigmoid(slope=4.0),
                 lambda: sts.straight_through_estimator(), lambda: None]


@needs_snntorch
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("init_hidden,output", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("sgi", range(len(ST_SURROGATES)))
def test_snntorch_leaky_equivalence(reset, init_hidden, output, sgi):
    ref = snn.Leaky(beta=0.83, threshold=0.9, spike_grad=ST_SURROGATES[sgi](), reset_mechanism=reset,
                    init_hidden=init_hidden, output=output)
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
        "lb": (snn.Leaky(beta=0.9, learn_beta=True), "learnable parameters: not yet supported"),
        "lt": (snn.Leaky(beta=0.9, learn_threshold=True), "learnable parameters: not yet supported"),
        "vec": (snn.Leaky(beta=torch.tensor([0.9, 0.8])), "per-neuron"),
    }
    net = nn.ModuleDict({k: v for k, (v, _) in cases.items()})
    net["ok"] = snn.Leaky(beta=0.9)
    before = {k: m for k, m in net.items()}
    rep = snn_cuda.convert(net)
    assert [c[0] for c in rep.converted] == ["ok"]
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

    net = nn.Sequential(sjn.ParametricLIFNode(), sjn.LIFNode(surrogate_function=sjs.SuperSpike()),
                        sjn.LIFNode(surrogate_function=sjs.Sigmoid(spiking=False)), MyLIF(),
                        sjn.LIFNode(surrogate_function=sjs.ATan()), sjn.LIFNode())
    net[4].surrogate_function.alpha = "2"  # not a number
    hooked = sjn.IFNode()
    hooked.register_forward_hook(lambda *a: None)
    net.append(hooked)
    rep = snn_cuda.convert(net)
    skipped = {name: reason for name, _, reason in rep.skipped}
    assert skipped["0"] == "learnable tau: not yet supported"
    assert "SuperSpike" in skipped["1"] and "spiking=False" in skipped["2"] and "not an exact" in skipped["3"]
    assert "alpha" in skipped["4"] and "hooks" in skipped["6"]
    assert [c[0] for c in rep.converted] == ["5"]
    assert isinstance(net[5], snn_cuda.LIF) and isinstance(net[0], sjn.ParametricLIFNode)


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
    return nn.Sequential(sjl.Flatten(), sjl.Linear(20, 16), sjn.LIFNode(tau=2.0, surrogate_function=sjs.ATan()),
                         sjl.Linear(16, 8), sjn.IFNode(v_reset=None, surrogate_function=sjs.Sigmoid(alpha=3.0)),
                         sjl.Linear(8, 4), sjn.LIFNode(tau=3.0, decay_input=False, detach_reset=True))


def _sj_conv():
    return nn.Sequential(sjl.Conv2d(1, 4, 3, padding=1, bias=False), sjl.BatchNorm2d(4),
                         sjn.IFNode(surrogate_function=sjs.ATan()), sjl.MaxPool2d(2),
                         sjl.Conv2d(4, 6, 3, padding=1, bias=False), sjl.BatchNorm2d(6),
                         sjn.LIFNode(surrogate_function=sjs.PiecewiseQuadratic()), sjl.AvgPool2d(2),
                         sjl.Flatten(), sjl.Linear(6 * 2 * 2, 5), sjn.LIFNode(surrogate_function=sjs.Erf()))


class _LifFcMnist(nn.Module):
    """SpikingJelly's lif_fc_mnist network (single-step, as the tutorial)."""

    def __init__(self, tau=2.0):
        super().__init__()
        self.layer = nn.Sequential(sjl.Flatten(), sjl.Linear(28 * 28, 10, bias=False),
                                   sjn.LIFNode(tau=tau, surrogate_function=sjs.ATan()))

    def forward(self, x):
        return self.layer(x)


@needs_sj
@pytest.mark.parametrize("which", ["mlp", "conv", "lif_fc_mnist"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_sj_models_train_equal(which, step_mode):
    if which == "lif_fc_mnist" and step_mode == "m":
        pytest.skip("the tutorial runs single-step")
    torch.manual_seed(0)
    ref = {"mlp": _sj_mlp, "conv": _sj_conv, "lif_fc_mnist": _LifFcMnist}[which]()
    sjf.set_step_mode(ref, step_mode)
    conv, rep = _converted_copy(ref)
    assert not rep.skipped and len(rep.converted) == {"mlp": 3, "conv": 3, "lif_fc_mnist": 1}[which]
    shape = {"mlp": (6, 20), "conv": (6, 1, 8, 8), "lif_fc_mnist": (6, 1, 28, 28)}[which]
    T = 5
    gen = torch.Generator().manual_seed(3)
    xs = [torch.rand(T, *shape, generator=gen) * 1.5 for _ in range(3)]
    ys = [torch.randint(0, 4, (shape[0],), generator=gen) for _ in range(3)]

    def step(net, i):
        if step_mode == "s":
            out = torch.stack([net(xs[i][t]) for t in range(T)])
        else:
            out = net(xs[i])
        rate = out.mean(0)
        loss = nn.functional.mse_loss(rate, nn.functional.one_hot(ys[i], rate.shape[-1]).float())
        return [out], loss

    _train_compare(ref, conv, step, sjf.reset_net)


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

    def __init__(self, num_inputs=784, num_hidden=100, num_outputs=10, beta=0.95, num_steps=6):
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(num_inputs, num_hidden)
        self.lif1 = snn.Leaky(beta=beta)
        self.fc2 = nn.Linear(num_hidden, num_outputs)
        self.lif2 = snn.Leaky(beta=beta)

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
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 16), snn.Leaky(beta=0.9, init_hidden=True),
                         nn.Linear(16, 8), snn.Leaky(beta=0.7, reset_mechanism="zero", init_hidden=True,
                                                     spike_grad=sts.fast_sigmoid(slope=10)),
                         nn.Linear(8, 4), snn.Leaky(beta=0.8, init_hidden=True, output=True,
                                                    spike_grad=sts.sigmoid(slope=5)))


def _st_conv():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.MaxPool2d(2),
                         snn.Leaky(beta=0.5, init_hidden=True),
                         nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.AvgPool2d(2),
                         snn.Leaky(beta=0.5, init_hidden=True, reset_mechanism="none"),
                         nn.Flatten(), nn.Linear(6 * 2 * 2, 5), snn.Leaky(beta=0.5, init_hidden=True, output=True))


@needs_snntorch
@pytest.mark.parametrize("which", ["tutorial5", "mlp", "conv"])
def test_snntorch_models_train_equal(which):
    torch.manual_seed(0)
    ref = {"tutorial5": _Tutorial5, "mlp": _st_mlp, "conv": _st_conv}[which]()
    sd = copy.deepcopy(ref.state_dict())
    conv, rep = _converted_copy(ref)
    assert not rep.skipped and len(rep.converted) == {"tutorial5": 2, "mlp": 3, "conv": 3}[which]
    assert list(conv.state_dict().keys()) == list(sd.keys())
    conv.load_state_dict(sd)  # a state_dict saved before conversion loads after it
    shape = {"tutorial5": (8, 784), "mlp": (8, 20), "conv": (8, 1, 8, 8)}[which]
    gen = torch.Generator().manual_seed(5)
    xs = [torch.rand(*shape, generator=gen) * 1.5 for _ in range(3)]
    ys = [torch.randint(0, 4, (8,), generator=gen) for _ in range(3)]
    T = 6

    def step(net, i):
        if which == "tutorial5":
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

    _train_compare(ref, conv, step, stu.reset, check_out=["exact", "close"])


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

    for reset in (stu.reset, snn_cuda.functional.reset_net, lambda n: snn.Leaky.reset_hidden(),
                  lambda n: [m.reset_mem() for m in leaks], lambda n: [m.init_leaky() for m in leaks]):
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
    net = nn.Sequential(nn.Linear(4, 4), sjn.LIFNode(), nn.Linear(4, 4), sjn.IFNode(step_mode="m"))
    snn_cuda.convert(net)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    net2 = torch.load(buf, weights_only=False)
    assert type(net2[1]) is type(net[1])
    x = torch.rand(3, 4) * 2
    snn_cuda.functional.reset_net(net)
    net[3].step_mode = net2[3].step_mode = "s"
    assert torch.equal(net(x), net2(x))
