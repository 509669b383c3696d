"""snn_cuda.convert on SpikingJelly 2.0's ``ILIFNode`` -> SpikingJellyILIF (an snn_cuda.ILIF that
is also a SpikingJelly MemoryModule). Converted models compute the same counts (exactly),
membranes and gradients (fp tolerance; multi-step membranes bit-equal) as the originals, keep
their state_dict (empty for the node) and Parameter objects; options snn_cuda cannot
reproduce leave the node unchanged, with the reason in the report. Skips without
SpikingJelly."""

from __future__ import annotations

import copy
import io
import itertools

import pytest
import torch
from torch import nn

import snn_cuda

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16


@pytest.fixture(scope="module")
def sj():
    """(neuron, surrogate, functional, layer, base) of SpikingJelly's activation_based package."""
    pytest.importorskip("spikingjelly")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    if not hasattr(neuron, "ILIFNode"):
        pytest.skip("this SpikingJelly has no ILIFNode")
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


# (tau, v_threshold, D, grad_window or None: SpikingJelly's default [0, D])
ILIF_CASES = [
    (4.0 / 3.0, 1.0, 4, None),
    (2.0, 0.6, 3, (-0.5, 3.5)),
    (1.5, 1.3, 2, (0.25, 1.75)),
    (5.0, 0.4, 7, (1.0, 1.0)),
]


def _ilif_cases():
    cases = itertools.product(range(len(ILIF_CASES)), (False, True), ("s", "m"), (False, True), (F32, F64))
    return [
        pytest.param(i, *c, id=f"case{c[0]}-det{int(c[1])}-{c[2]}-store{int(c[3])}-{'f32' if c[4] == F32 else 'f64'}")
        for i, c in enumerate(cases)
    ]


def _make_ilif(sj, case, detach_reset, step_mode, store):
    neuron, sjs = sj[0], sj[1]
    tau, vth, D, window = ILIF_CASES[case]
    return neuron.ILIFNode(
        tau=tau,
        v_threshold=vth,
        surrogate_function=sjs.MultiLevelSpikeCount(D, grad_window=window),
        detach_reset=detach_reset,
        step_mode=step_mode,
        store_v_seq=store,
    )


def _run_ilif(net, x, store):
    """Counts (per step in 's', whole in 'm'), the final v and v_seq, and the gradient of a
    loss on the counts, v (and v_seq). Returns counts, v, v_seq, grad x."""
    xx = x.clone().requires_grad_()
    c = net(xx) if net.step_mode == "m" else torch.stack([net(xt) for xt in xx.unbind(0)])
    loss = (c.double() * _weights(c.shape, 1)).sum() + (net.v.double() * _weights(net.v.shape, 2)).sum() * 0.3
    if store:
        loss = loss + (net.v_seq.double() * _weights(net.v_seq.shape, 3)).sum()
    loss.backward()
    return c.detach(), net.v.detach(), None if not store else net.v_seq.detach(), xx.grad


def _check_ilif_runs(r0, r1, dtype, step_mode):
    (c0, v0, q0, g0), (c1, v1, q1, g1) = r0, r1
    assert c1.dtype == dtype and torch.equal(c0, c1), "counts"
    # multi-step: the same expression in the same order (bit-equal); single step: SpikingJelly
    # charges V - V/tau + X, snn_cuda (1 - 1/tau) V + X (a few ulp)
    st = 0.0 if step_mode == "m" else (1e-6 if dtype == F32 else 1e-14)
    gt = 1e-5 if dtype == F32 else 1e-12
    _close(v1, v0, st, "v")
    if q0 is not None:
        assert q1 is not None and q1.shape == q0.shape and q1.dtype == q0.dtype
        _close(q1, q0, st, "v_seq")
    _close(g1, g0, gt, "grad x")


def _x(shape, case, seed, dtype):
    tau, vth, D, _ = ILIF_CASES[case]
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(shape, generator=g, dtype=F64) * (D + 1.5) - 0.6) * vth * (1 - 0.5 / tau)).to(dtype)


@pytest.mark.parametrize("idx,case,detach_reset,step_mode,store,dtype", _ilif_cases())
def test_sj_ilif_equivalence(sj, idx, case, detach_reset, step_mode, store, dtype):
    base = sj[4]
    ref = _make_ilif(sj, case, detach_reset, step_mode, store)
    rep = snn_cuda.convert(ref, inplace=False)
    conv = rep.model
    assert rep.converted == [("", "ILIFNode", "SpikingJellyILIF", "")] and not rep.skipped
    assert isinstance(conv, snn_cuda.ILIF) and isinstance(conv, base.MemoryModule)
    assert type(conv).__name__ == "SpikingJellyILIF"
    assert conv.step_mode == step_mode and conv.detach_reset == detach_reset and conv.store_v_seq == store
    tau, vth, D, window = ILIF_CASES[case]
    assert (conv.tau, conv.v_threshold, conv.max_spike_count) == (tau, vth, D)
    assert conv.grad_window == ((0.0, float(D)) if window is None else window)
    assert list(conv.state_dict()) == list(ref.state_dict()) == []
    x = _x((9, 3, 20), case, idx, dtype)
    for _ in range(2):  # a second sequence after SpikingJelly's reset_net of both
        r0, r1 = _run_ilif(ref, x, store), _run_ilif(conv, x, store)
        _check_ilif_runs(r0, r1, dtype, step_mode)
        assert float(r0[0].max()) >= 1.0 and float(r0[0].min()) == 0.0
        sj[2].reset_net(ref)
        sj[2].reset_net(conv)
        assert conv.v == 0.0 and conv.v_seq is None


def _sj_ilif_net(sj, dtype=F32):
    neuron, sjs, _, layer, _ = sj
    n1 = neuron.ILIFNode()
    n2 = neuron.ILIFNode(
        tau=2.0, v_threshold=0.5, surrogate_function=sjs.MultiLevelSpikeCount(3, grad_window=(-0.5, 3.5))
    )
    n2.detach_reset = True
    net = nn.Sequential(layer.Linear(8, 12), n1, layer.Linear(12, 4), n2).to(dtype)
    sj[2].set_step_mode(net, "m")
    return net


@pytest.mark.parametrize("dtype", [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")])
def test_sj_ilif_model_trains_equal(sj, dtype):
    sjf = sj[2]
    torch.manual_seed(0)
    ref = _sj_ilif_net(sj, dtype)
    conv = copy.deepcopy(ref)
    params = list(conv.parameters())
    sd = {k: v.clone() for k, v in conv.state_dict().items()}
    rep = snn_cuda.convert(conv)
    assert [c[0] for c in rep.converted] == ["1", "3"] and not rep.skipped
    assert all(p is q for p, q in zip(conv.parameters(), params))  # the same Parameter objects
    assert list(conv.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(conv.state_dict()[k], v) for k, v in sd.items())
    assert conv[3].detach_reset and conv[3].max_spike_count == 3 and conv[1].step_mode == conv[3].step_mode == "m"
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in (ref, conv)]
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
        assert torch.equal(outs[0][0], outs[1][0]), f"step {step}: counts"
        assert float(outs[0][0].max()) >= 1.0
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


def test_sj_ilif_state_carried_and_shape_change(sj):
    ref = _make_ilif(sj, 1, False, "m", False)
    ref(_x((4, 2, 3), 1, 0, F32))  # a running state, then converted mid-sequence
    conv = snn_cuda.convert(ref, inplace=False).model
    assert torch.equal(conv.v, ref.v)
    x = _x((5, 2, 3), 1, 1, F32)
    assert torch.equal(ref(x), conv(x))
    assert torch.equal(conv.v, ref.v)
    # a new shape restarts v, as SpikingJelly does
    for i, xs in enumerate((_x((3, 4, 3), 1, 2, F32), _x((2, 4, 3), 1, 3, F32), _x((2, 4), 1, 4, F32))):
        assert torch.equal(ref(xs), conv(xs)), i
        assert torch.equal(conv.v, ref.v), i
    # detach_net cuts the state's graph on both
    xg = _x((3, 4, 3), 1, 5, F32).requires_grad_(True)
    ref(xg)
    conv(xg)
    assert ref.v.requires_grad and conv.v.requires_grad
    sj[2].detach_net(ref)
    sj[2].detach_net(conv)
    assert not ref.v.requires_grad and not conv.v.requires_grad


def test_sj_ilif_single_step_v_seq_and_detach(sj):
    """store_v_seq in single-step mode: the membrane of every step since reset(), both ways;
    detach_net detaches the sequence too; a new shape restarts it."""
    ref = _make_ilif(sj, 0, False, "s", True)
    conv = snn_cuda.convert(ref, inplace=False).model
    x = _x((4, 2, 5), 0, 6, F32).requires_grad_(True)
    for xt in x.unbind(0):
        assert torch.equal(ref(xt), conv(xt))
    assert conv.v_seq.shape == ref.v_seq.shape == (4, 2, 5)
    _close(conv.v_seq, ref.v_seq, 1e-6, "v_seq")
    sj[2].detach_net(ref)
    sj[2].detach_net(conv)
    assert not ref.v_seq.requires_grad and not conv.v_seq.requires_grad
    y = _x((3, 7), 0, 7, F32)
    assert torch.equal(ref(y), conv(y))
    assert conv.v_seq.shape == ref.v_seq.shape == (1, 3, 7)


def test_sj_ilif_16bit(sj):
    """16-bit inputs: SpikingJelly's ILIFNode keeps a 16-bit membrane, the converted node a
    float32 one (snn_cuda's state dtype): results differ by 16-bit rounding only. The converted
    node equals the original run on the same values in float32."""
    for dtype in (F16, BF16):
        ref = _make_ilif(sj, 0, False, "m", False)
        conv = snn_cuda.convert(ref, inplace=False).model
        x = _x((10, 3, 40), 0, 8, dtype)
        c1 = conv(x)
        assert c1.dtype == dtype and conv.v.dtype == F32
        c0 = ref(x.float())
        assert torch.equal(c1, c0.to(dtype)) and torch.equal(conv.v, ref.v)
        sj[2].reset_net(ref)
        c16 = ref(x)
        assert ref.v.dtype == dtype
        d = (c16.double() - c1.double()).abs()
        assert float(d.max()) <= 1.0 and float((d > 0).double().mean()) <= 0.03


def test_report_sj_ilif_skips(sj):
    neuron, sjs, _, _, _ = sj

    class MyILIF(neuron.ILIFNode):
        pass

    def ilif(**kw):
        return neuron.ILIFNode(**kw)

    def patched(**attrs):  # a node changed after construction (__init__ checks some of these)
        node = ilif()
        for k, v in attrs.items():
            setattr(node, k, v)
        return node

    # ILIFNode.__init__ rejects spiking=False: switched off afterwards, on a surrogate of its own
    # (the default MultiLevelSpikeCount(4) object is shared by every ILIFNode made with it)
    not_spiking = ilif(surrogate_function=sjs.MultiLevelSpikeCount(4))
    not_spiking.surrogate_function.set_spiking_mode(False)
    cases = {
        "atan": (patched(surrogate_function=sjs.ATan()), "exact MultiLevelSpikeCount"),
        "not_spiking": (not_spiking, "spiking=False"),
        "big_D": (ilif(surrogate_function=sjs.MultiLevelSpikeCount(300)), "max_spike_count=300 outside [1, 255]"),
        "inf_window": (
            ilif(surrogate_function=sjs.MultiLevelSpikeCount(4, grad_window=(0.0, float("inf")))),
            "non-finite gradient window grad_max",
        ),
        "tau": (patched(tau=0.9), "tau=0.9 <= 1"),
        "v_threshold": (patched(v_threshold=-1.0), "v_threshold=-1.0 <= 0"),
        "v_reset": (patched(v_reset=0.0), "v_reset=0.0"),
        "subclass": (MyILIF(), "not an exact SpikingJelly"),
    }
    hooked = ilif()
    hooked.register_forward_hook(lambda *a: None)
    cases["hooked"] = (hooked, "hooks")
    extra_p = ilif()
    extra_p.register_parameter("bias", nn.Parameter(torch.zeros(1)))
    cases["extra_param"] = (extra_p, "unexpected parameters/buffers")
    extra_m = ilif()
    extra_m.register_memory("i", 0.0)
    cases["extra_memory"] = (extra_m, "extra memories ['i']")
    prec = ilif()
    prec._neuron_precision = (torch.float32, torch.float16)
    cases["precision"] = (prec, "neuron precision policy")
    net = nn.Sequential(*(m for m, _ in cases.values()))
    net.append(ilif())
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
    assert isinstance(net[n], snn_cuda.ILIF) and isinstance(net[n + 1], snn_cuda.LIF)
    assert "ILIFNode -> SpikingJellyILIF" in str(rep)
    # converting again: nothing new
    rep2 = snn_cuda.convert(net)
    assert not rep2.converted and len(rep2.skipped) == len(cases)


def test_sj_ilif_inplace_false_and_pickle(sj):
    net = _sj_ilif_net(sj)
    rep = snn_cuda.convert(net, inplace=False)
    assert type(net[1]).__name__ == "ILIFNode" and type(rep.model[1]).__name__ == "SpikingJellyILIF"
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
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_sj_ilif_backends(sj, backend, step_mode):
    ref = _make_ilif(sj, 1, True, step_mode, True)
    conv = snn_cuda.convert(ref, inplace=False, backend=backend).model
    assert conv.backend == backend
    x = _x((7, 3, 5), 1, 3, F64)
    _check_ilif_runs(_run_ilif(ref, x, True), _run_ilif(conv, x, True), F64, step_mode)
