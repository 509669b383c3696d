"""Learnable and per-neuron neuron parameters in the fused kernels: ParametricLIF
(learnable w, k = sigmoid(w)), learn_threshold on LIF / IF / ParametricLIF / Leaky, learn_beta
on Leaky, scalar or per-neuron / per-channel.

Fused (backend="fused") against the reference (backend="torch", autograd through the
per-step loop): spikes and membranes bit-equal, gradients of x, v0 and the parameters within
GRAD_TOL; float64 gradcheck of the fused path; opcheck of the ops with parameter tensors;
bitwise determinism; chunked == whole.
"""

from __future__ import annotations


import pytest
import torch
from torch import nn

import snn_cuda
from snn_cuda import ops
from snn_cuda import surrogate as sg
from snn_cuda.functional import reset_net

from testing import ALL_DEVICES, assert_equal, assert_grad_close, op_args, random_input, random_state

F32, F64 = torch.float32, torch.float64
FWD = torch.ops.snn_cuda.neuron_forward.default
BWD = torch.ops.snn_cuda.neuron_backward.default

# name -> (constructor, kwargs). Every parameter a layer can learn is learnt.
LAYERS = {
    "plif_hard": (snn_cuda.ParametricLIF, dict(init_tau=2.5)),
    "plif_soft_nodecay": (snn_cuda.ParametricLIF, dict(init_tau=3.0, v_reset=None, decay_input=False)),
    "plif_hard_vr_th": (snn_cuda.ParametricLIF, dict(init_tau=2.0, v_reset=-0.2, learn_threshold=True)),
    "plif_soft_th_detach": (snn_cuda.ParametricLIF, dict(v_reset=None, learn_threshold=True, detach_reset=True)),
    "plif_nodecay_th": (snn_cuda.ParametricLIF, dict(decay_input=False, learn_threshold=True)),
    "lif_hard_th": (snn_cuda.LIF, dict(tau=2.0, learn_threshold=True)),
    "lif_soft_th": (snn_cuda.LIF, dict(tau=3.0, v_reset=None, learn_threshold=True)),
    "lif_hard_th_detach": (snn_cuda.LIF, dict(tau=2.0, detach_reset=True, learn_threshold=True)),
    "if_hard_th": (snn_cuda.IF, dict(learn_threshold=True)),
    "if_soft_th": (snn_cuda.IF, dict(v_reset=None, learn_threshold=True)),
    "if_floor_th": (snn_cuda.IF, dict(v_floor=0.0, detach_reset=True, learn_threshold=True)),
    "leaky_sub_beta_th": (snn_cuda.Leaky, dict(beta=0.8, learn_beta=True, learn_threshold=True)),
    "leaky_zero_beta_th": (
        snn_cuda.Leaky,
        dict(beta=0.7, reset_mechanism="zero", learn_beta=True, learn_threshold=True),
    ),
    "leaky_none_beta": (snn_cuda.Leaky, dict(beta=0.9, reset_mechanism="none", learn_beta=True)),
    "leaky_sub_th": (snn_cuda.Leaky, dict(beta=0.9, learn_threshold=True)),
}
LAYER_IDS = list(LAYERS)
# Parameter shapes for features (3, 5): scalar, per neuron, per "channel" (broadcast).
PARAM_SHAPES = {"scalar": None, "per_neuron": (3, 5), "per_channel": (3, 1)}
FEAT = (3, 5)


def _params(m: nn.Module):
    return sorted((n, p) for n, p in m.named_parameters())


def _make_pair(name, shape_key, dtype, device, surrogate=None):
    cls, kw = LAYERS[name]
    kw = dict(kw)
    if surrogate is not None:
        kw["surrogate"] = surrogate
    a = cls(backend="fused", param_shape=PARAM_SHAPES[shape_key], **kw).to(device)
    b = cls(backend="torch", param_shape=PARAM_SHAPES[shape_key], **kw).to(device)
    # Distinct per-element values so per-neuron indexing is exercised.
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for (_, pa), (_, pb) in zip(_params(a), _params(b)):
            noise = (torch.rand(pa.shape, generator=g) - 0.5) * 0.2
            pa.add_(noise.to(device))
            pb.copy_(pa)
    if dtype == F64:
        a.double()
        b.double()
    return a, b


def _run(m, x, v0=None, *, T=None, seed=7):
    """Forward + backward with random upstream gradients on every output; returns outputs and
    the gradients of x, v0 and every parameter."""
    reset_net(m)
    x = x.detach().clone().requires_grad_(True)
    leaky = isinstance(m, snn_cuda.Leaky)
    if v0 is not None:
        v0 = v0.detach().clone().requires_grad_(True)
        if leaky:
            m.mem = v0
        else:
            m.v = v0
    out = m(x, T=T) if T is not None else m(x)
    if leaky and m.return_mem:
        spikes, mem_seq = out
        last = m.mem
    elif leaky:
        spikes, mem_seq, last = out, None, m.mem
    else:
        spikes, mem_seq, last = out, None, m.v
    g = torch.Generator().manual_seed(seed)
    loss = (spikes.float() * torch.randn(spikes.shape, generator=g).to(x.device)).sum()
    if mem_seq is not None:
        loss = loss + (mem_seq * torch.randn(mem_seq.shape, generator=g).to(x.device, mem_seq.dtype)).sum()
    loss = loss + (last * torch.randn(last.shape, generator=g).to(x.device, last.dtype)).sum()
    for _, p in m.named_parameters():
        p.grad = None
    loss.backward()
    grads = {"x": x.grad, "v0": None if v0 is None else v0.grad}
    grads.update({n: p.grad for n, p in m.named_parameters()})
    return spikes.detach(), (mem_seq.detach() if mem_seq is not None else None), last.detach(), grads


def _compare(a, b, x, v0=None, *, T=None, dtype=F32, msg=""):
    sa, ma, la, ga = _run(a, x, v0, T=T)
    sb, mb, lb, gb = _run(b, x, v0, T=T)
    assert_equal(sa, sb, f"{msg} spikes")
    if ma is not None:
        assert_equal(ma, mb, f"{msg} mem_seq")
    assert_equal(la, lb, f"{msg} last membrane")
    assert set(ga) == set(gb)
    for k in ga:
        # A parameter's gradient sums over T x batch x (broadcast) terms: scale the tolerance.
        scale = None
        if k not in ("x", "v0") and gb[k] is not None:
            scale = max(1.0, float(gb[k].abs().max())) * (x.numel() / max(1, gb[k].numel())) ** 0.5
        assert_grad_close(ga[k], gb[k], dtype, f"{msg} grad {k}", scale=scale)
    return ga


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("shape_key", list(PARAM_SHAPES))
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", LAYER_IDS)
def test_fused_matches_reference(name, dtype, shape_key, device):
    a, b = _make_pair(name, shape_key, dtype, device)
    # T = 19 crosses two 8-step chunks with a tail.
    x = random_input((19, 2, *FEAT), dtype, device, scale=1.2, bias=0.3)
    v0 = random_state((2, *FEAT), dtype, device)
    g = _compare(a, b, x, v0, dtype=dtype, msg=f"{name}/{shape_key}")
    for n, p in a.named_parameters():
        assert g[n] is not None and g[n].shape == p.shape


@pytest.mark.parametrize("save", ["h", "checkpoint"])
@pytest.mark.parametrize("name", LAYER_IDS)
def test_backward_storage_modes(name, save):
    a, b = _make_pair(name, "per_channel", F32, "cpu")
    if hasattr(a, "backward_storage"):
        a.backward_storage = save
    elif save == "checkpoint":
        a.return_mem = b.return_mem = False  # Leaky: membrane-free hidden layer -> checkpoints
    x = random_input((21, 2, *FEAT), F32, scale=1.2, bias=0.3)
    _compare(a, b, x, msg=f"{name}/{save}")


@pytest.mark.parametrize(
    "surrogate",
    [
        sg.Sigmoid(alpha=2.5),
        sg.ATan(),
        sg.FastSigmoid(slope=7.0),
        sg.PiecewiseQuadratic(),
        sg.Erf(),
        sg.Rect(),
        sg.StraightThrough(),
    ],
    ids=lambda s: type(s).__name__,
)
@pytest.mark.parametrize(
    "name", ["plif_soft_th_detach", "plif_hard_vr_th", "if_floor_th", "leaky_sub_beta_th", "leaky_zero_beta_th"]
)
def test_surrogates(name, surrogate):
    a, b = _make_pair(name, "scalar", F32, "cpu", surrogate=surrogate)
    x = random_input((9, 4, *FEAT), F32, scale=1.5, bias=0.3)
    _compare(a, b, x, msg=f"{name}/{type(surrogate).__name__}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("name", ["plif_hard_vr_th", "leaky_sub_beta_th", "if_soft_th"])
def test_16bit(name, dtype):
    a, b = _make_pair(name, "per_neuron", F32, "cpu")
    x = random_input((11, 2, *FEAT), dtype, scale=1.2, bias=0.3)
    _compare(a, b, x, dtype=dtype, msg=f"{name}/{dtype}")


@pytest.mark.parametrize("name", ["plif_hard", "plif_nodecay_th", "leaky_sub_beta_th", "lif_soft_th"])
def test_constant_input_and_single_step(name):
    a, b = _make_pair(name, "per_neuron", F32, "cpu")
    x = random_input((2, *FEAT), F32, scale=0.8, bias=0.3)
    _compare(a, b, x, T=13, msg=f"{name}/const")
    a.step_mode = b.step_mode = "s"
    _compare(a, b, x, msg=f"{name}/single")


GRADCHECK = [
    # (layer, overrides): thresholds far above the membranes so the outputs are smooth in x,
    # v0 and the decay parameter. (A threshold's gradient is a surrogate gradient with no
    # finite-difference counterpart: it is checked against the reference's float64 autograd
    # in test_fused_matches_reference instead.)
    ("plif_hard", dict(v_threshold=20.0)),
    ("plif_soft_nodecay", dict(v_threshold=20.0)),
    ("plif_hard_vr_th", dict(v_threshold=20.0, learn_threshold=False, detach_reset=True)),
    ("leaky_sub_beta_th", dict(threshold=20.0, learn_threshold=False)),
    ("leaky_zero_beta_th", dict(threshold=20.0, learn_threshold=False)),
    ("leaky_none_beta", dict()),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("param_shape", [None, (3,)], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("name,over", GRADCHECK, ids=[c[0] for c in GRADCHECK])
def test_gradcheck_float64(name, over, param_shape, device):
    cls, kw = LAYERS[name]
    kw = {**kw, **over}
    m = cls(backend="fused", param_shape=param_shape, surrogate=sg.Sigmoid(alpha=2.0), **kw).double().to(device)
    names = [n for n, _ in m.named_parameters()]
    leaky = isinstance(m, snn_cuda.Leaky)
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(6, 2, 3, generator=g, dtype=F64) * 0.4 - 0.1).to(device).requires_grad_(True)
    v0 = (torch.rand(2, 3, generator=g, dtype=F64) * 0.2).to(device).requires_grad_(True)

    def f(x, v0, *params):
        reset_net(m)
        if leaky:
            m.mem = v0
        else:
            m.v = v0
        out = torch.func.functional_call(m, dict(zip(names, params)), (x,))
        if leaky:
            return out[1], m.mem
        return m.v_seq if m.store_v_seq else out, m.v

    if not leaky:
        m.store_v_seq = True
    params = [getattr(m, n).detach().clone().requires_grad_(True) for n in names]
    assert torch.autograd.gradcheck(f, (x, v0, *params), eps=1e-6, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("name", ["plif_hard_vr_th", "leaky_zero_beta_th", "if_floor_th"])
def test_deterministic(name):
    """Two runs give bitwise-identical parameter gradients (no atomics; per-neuron sums
    reduced in a fixed order)."""
    a, _ = _make_pair(name, "scalar", F32, "cpu")
    x = random_input((17, 64, 96), F32, scale=1.2, bias=0.3)
    ga = _run(a, x)[3]
    gb = _run(a, x)[3]
    for k in ga:
        if ga[k] is not None:
            assert_equal(ga[k], gb[k], k)


@pytest.mark.parametrize("name", ["plif_hard_vr_th", "leaky_sub_beta_th", "lif_hard_th"])
def test_chunked_equals_whole(name):
    """Running T steps as two calls (state carried) gives the same outputs and, summed over
    the chunks by autograd, the same parameter gradients as one call."""
    a, _ = _make_pair(name, "per_channel", F32, "cpu")
    x = random_input((16, 2, *FEAT), F32, scale=1.2, bias=0.3)
    leaky = isinstance(a, snn_cuda.Leaky)

    def go(chunks):
        reset_net(a)
        for p in a.parameters():
            p.grad = None
        outs = []
        for xc in x.split(chunks):
            o = a(xc)
            outs.append(o[1] if leaky else o)
        y = torch.cat(outs)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        return y.detach(), {n: p.grad.clone() for n, p in a.named_parameters()}

    y1, g1 = go(16)
    y2, g2 = go(7)
    assert_equal(y1, y2, "outputs")
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], rtol=1e-5, atol=1e-5)


def _op_case(model, reset, learn, shape):
    x = random_input((9, 4, 6), F32, scale=1.2, bias=0.3)
    P = (6,) if shape == "per_neuron" else ()
    kw = dict(model=model, reset=reset, surrogate=1, surrogate_param=2.0)
    if model == ops.MODEL_PLIF:
        kw["decay_param"] = torch.full(P, 0.4) + 0.1 * torch.rand(P)
    if model == ops.MODEL_LEAKY:
        kw["decay_param"] = torch.full(P, 0.8) + 0.1 * torch.rand(P)
    kw["threshold_param"] = torch.full(P, 1.0) + 0.1 * torch.rand(P)
    for k in ("decay_param", "threshold_param"):
        if k in kw:
            kw[k].requires_grad_(learn)
    return x, kw


@pytest.mark.parametrize("shape", ["scalar", "per_neuron"])
@pytest.mark.parametrize(
    "model,reset",
    [
        (ops.MODEL_PLIF, 0),
        (ops.MODEL_PLIF, 1),
        (ops.MODEL_LIF, 1),
        (ops.MODEL_IF, 0),
        (ops.MODEL_LEAKY, 0),
        (ops.MODEL_LEAKY, 1),
    ],
)
@pytest.mark.parametrize("save_mode", [1, 2])
def test_opcheck_with_param_tensors(model, reset, shape, save_mode):
    x, kw = _op_case(model, reset, True, shape)
    x.requires_grad_(True)
    args = op_args(FWD, save=True, x=x, save_mode=save_mode, **kw)
    torch.library.opcheck(FWD, args)
    # The backward op on its own, with both parameter gradients requested.
    spikes, saved, _, v_last = FWD(*args)
    bargs = op_args(
        BWD,
        grad_spikes=torch.randn_like(spikes),
        grad_v_last=torch.randn_like(v_last),
        saved=saved.detach(),
        x=x.detach(),
        save_mode=save_mode,
        grad_decay="decay_param" in kw,
        grad_threshold=True,
        **{k: (v.detach() if torch.is_tensor(v) else v) for k, v in kw.items()},
    )
    torch.library.opcheck(BWD, bargs)


def test_param_errors():
    x = torch.zeros(3, 2, 4)
    th = torch.ones(4)
    with pytest.raises(ValueError, match="threshold_param must have one element or the shape"):
        FWD(*op_args(FWD, x=x, threshold_param=torch.ones(3)))
    with pytest.raises(TypeError, match="threshold_param must have the state dtype"):
        FWD(*op_args(FWD, x=x, threshold_param=th.double()))
    with pytest.raises(ValueError, match="decay_param is for ParametricLIF"):
        FWD(*op_args(FWD, x=x, model=ops.MODEL_LIF, decay_param=th))
    with pytest.raises(ValueError, match="ParametricLIF .model 3. needs decay_param"):
        FWD(*op_args(FWD, x=x, model=ops.MODEL_PLIF))
    _, saved, _, _ = FWD(*op_args(FWD, x=x, save=True))
    with pytest.raises(ValueError, match="grad_threshold needs threshold_param"):
        BWD(*op_args(BWD, saved=saved, grad_spikes=torch.ones(3, 2, 4), grad_threshold=True))
    with pytest.raises(ValueError, match="grad_decay needs decay_param"):
        BWD(*op_args(BWD, saved=saved, grad_spikes=torch.ones(3, 2, 4), grad_decay=True))
    k = torch.full((4,), 0.5)
    _, saved, _, _ = FWD(*op_args(FWD, x=x, model=ops.MODEL_PLIF, decay_param=k, save=True))
    with pytest.raises(ValueError, match="x .the forward's input. is required for the ParametricLIF decay"):
        BWD(
            *op_args(
                BWD, saved=saved, grad_spikes=torch.ones(3, 2, 4), model=ops.MODEL_PLIF, decay_param=k, grad_decay=True
            )
        )


def test_layer_param_errors():
    with pytest.raises(ValueError, match="init_tau must be > 1"):
        snn_cuda.ParametricLIF(init_tau=1.0)
    with pytest.raises(ValueError, match=r"beta must be in \[0.0, 1.0\]"):
        snn_cuda.Leaky(beta=torch.tensor([0.5, 1.5]))
    with pytest.raises(TypeError, match="param_shape must be a tuple of ints"):
        snn_cuda.LIF(learn_threshold=True, param_shape="abc")
    m = snn_cuda.LIF(learn_threshold=True, param_shape=(7,), backend="fused")
    with pytest.raises(ValueError, match="v_threshold of shape .7,. does not broadcast"):
        m(torch.zeros(3, 2, 5))
    m = snn_cuda.LIF(learn_threshold=True, param_shape=(7,), backend="torch")
    with pytest.raises(ValueError, match="v_threshold must be a scalar or broadcast"):
        m(torch.zeros(3, 2, 5))


def test_parametric_lif_matches_its_definition():
    """Known values: w = -log(init_tau - 1), k = sigmoid(w) = 1 / init_tau, and one step of the
    charge H = V + (X - (V - Vr)) k computed by hand."""
    m = snn_cuda.ParametricLIF(init_tau=4.0, backend="fused", v_threshold=10.0)
    assert torch.allclose(m.w.detach(), torch.tensor(-torch.log(torch.tensor(3.0)).item()))
    assert torch.allclose(m.tau, torch.tensor(4.0))
    x = torch.tensor([[[2.0, -1.0]], [[2.0, 3.0]]])
    m(x)
    k = torch.sigmoid(m.w.detach())
    v1 = x[0, 0] * k
    v2 = v1 + (x[1, 0] - v1) * k
    assert_equal(m.v, v2[None].reshape(m.v.shape), "v after two steps")


def test_learnable_state_dict_and_optimizer_step():
    """Parameters appear in state_dict / parameters(); an optimiser step on the fused layer
    moves them exactly as on the reference layer."""
    a, b = _make_pair("plif_hard_vr_th", "per_channel", F32, "cpu")
    assert {"w", "v_threshold"} <= set(a.state_dict())
    x = random_input((8, 2, *FEAT), F32, scale=1.2, bias=0.3)
    for m in (a, b):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        reset_net(m)
        m(x).sum().backward()
        opt.step()
    for (n, pa), (_, pb) in zip(_params(a), _params(b)):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_fixed_tensor_params_are_buffers(device):
    """A tensor threshold/beta without learning is a per-neuron buffer: no gradient, fused
    equals reference."""
    th = torch.linspace(0.5, 1.5, 15).reshape(FEAT)
    a = snn_cuda.Leaky(beta=torch.full(FEAT, 0.9), threshold=th, backend="fused").to(device)
    b = snn_cuda.Leaky(beta=torch.full(FEAT, 0.9), threshold=th, backend="torch").to(device)
    assert not list(a.parameters()) and "threshold" in dict(a.named_buffers())
    x = random_input((10, 2, *FEAT), F32, device, scale=1.2, bias=0.3)
    _compare(a, b, x, msg="buffers")


@pytest.mark.parametrize("name", ["plif_hard_vr_th", "leaky_zero_beta_th"])
def test_torch_compile_fullgraph_aot_eager(name):
    """Learnable layers trace without graph breaks (fake kernels + registered autograd, the
    parameter-gradient reduction included) and give the eager results."""
    a, _ = _make_pair(name, "per_channel", F32, "cpu")
    leaky = isinstance(a, snn_cuda.Leaky)
    x = random_input((9, 2, *FEAT), F32, scale=1.2, bias=0.3)

    def fn(x):
        reset_net(a)
        out = a(x)
        return (out[0] * 0.5 + out[1]).sum() if leaky else (out * 1.5).sum() + a.v.sum()

    results = []
    for f in (fn, torch.compile(fn, fullgraph=True, backend="aot_eager")):
        for p in a.parameters():
            p.grad = None
        xl = x.clone().requires_grad_(True)
        f(xl).backward()
        results.append([xl.grad] + [p.grad.clone() for p in a.parameters()])
    for ga, gb in zip(*results):
        assert_equal(gb, ga, name)
