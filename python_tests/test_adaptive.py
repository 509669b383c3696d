"""AdLIF and ILIF (declared models) on the fused kernels against the pure-PyTorch reference:
forward bit for bit, gradients (parameters included) within the association-order bound,
float64 gradcheck, opcheck, torch.compile, chunked == whole, single step == multi-step, the
errors. ILIF parity with SpikingJelly's ILIFNode itself is in test_adaptive_peers.py."""

from __future__ import annotations

import math

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda.functional import reset_net
from snn_cuda.model_ops import MODELS, model_multistep, pack_params

from testing import ALL_DEVICES, DTYPES, SURROGATES, assert_equal, assert_grad_close, dtype_id

F64 = torch.float64


def inputs(shape, dtype, device, seed=0, scale=1.0, bias=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=F64) * scale + bias).to(dtype).to(device)


def adlif_pair(shape, device, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    a = snn_cuda.AdLIF(shape, return_states=True, backend="fused", **kw).to(device=device, dtype=dtype)
    b = snn_cuda.AdLIF(shape, return_states=True, backend="torch", **kw).to(device=device, dtype=dtype)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_adlif_matches_reference(dtype, device):
    """Spikes and u bit-equal; gradients of x and of alpha, beta, a, b (per-neuron sums over time
    from the kernel) within the bound. Parameters in float32 (float64 for float64 inputs), some
    beyond their clamp range so that torch.clamp's zero gradient is exercised."""
    pdt = F64 if dtype == F64 else torch.float32
    fused, ref = adlif_pair((6, 9), device, pdt, threshold=0.8)
    with torch.no_grad():
        fused.a[0, :3] = 1.4  # clamped to 1
        fused.b[1, :2] = -0.5  # clamped to 0
        ref.load_state_dict(fused.state_dict())
    x = inputs((23, 4, 6, 9), dtype, device, scale=1.5, bias=0.6)
    outs, grads = [], []
    for layer in (fused, ref):
        xi = x.clone().requires_grad_(True)
        spk, u = layer(xi)
        g = torch.Generator().manual_seed(4)
        loss = (spk.float() * torch.randn(spk.shape, generator=g).to(device)).sum() + (u * 0.1).sum()
        grads.append(torch.autograd.grad(loss, [xi, layer.alpha, layer.beta, layer.a, layer.b]))
        outs.append((spk.detach(), u.detach(), layer.u, layer.w, layer.s))
    assert 0.02 < float(outs[0][0].float().mean()) < 0.98, "the case should spike sometimes"
    for a, b, n in zip(outs[0], outs[1], ("spikes", "u_seq", "u", "w", "s")):
        assert_equal(a, b, n)
    for a, b, n in zip(grads[0], grads[1], ("x", "alpha", "beta", "a", "b")):
        assert_grad_close(a, b, dtype if n == "x" else pdt, n)
    assert float(grads[0][3][0, :3].abs().max()) == 0.0  # clamped a: no gradient


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: type(s).__name__)
def test_adlif_every_surrogate(surrogate):
    fused, ref = adlif_pair(7, "cpu", F64, surrogate=surrogate, threshold=0.6)
    x = inputs((17, 3, 7), F64, "cpu", seed=2, scale=1.2, bias=0.5)
    res = []
    for layer in (fused, ref):
        xi = x.clone().requires_grad_(True)
        spk, u = layer(xi)
        loss = (spk * torch.linspace(-1, 1, 7)).sum() + u.square().sum() * 0.01
        res.append((spk, u, *torch.autograd.grad(loss, [xi, layer.alpha, layer.a])))
    assert_equal(res[0][0], res[1][0], "spikes")
    assert_equal(res[0][1], res[1][1], "u")
    for i in (2, 3, 4):
        assert_grad_close(res[0][i], res[1][i], F64, f"grad {i}")


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_adlif_gradcheck(device):
    """float64 gradcheck of x, the initial states and every parameter through the u outputs; the
    threshold is above every membrane and Rect's derivative is exactly 0 there, so the outputs are
    smooth (the spike state stays 0 but its gradient paths run)."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(11, 2, 3, generator=g, dtype=F64) * 0.4).to(device).requires_grad_(True)
    p = torch.stack(
        [
            torch.rand(3, generator=g, dtype=F64) * 0.5 + 0.4,
            torch.rand(3, generator=g, dtype=F64) * 0.5 + 0.4,
            torch.rand(3, generator=g, dtype=F64) * 2 - 1,
            torch.rand(3, generator=g, dtype=F64) * 2,
            torch.full((3,), 20.0, dtype=F64),
        ]
    ).to(device)
    s0 = torch.cat([torch.rand(2, 2, 3, generator=g, dtype=F64), torch.zeros(1, 2, 3, dtype=F64)]).to(device)

    def fn(x, p, s0):
        _, seq, last = model_multistep(
            "adlif", x, p, s0, variant=0, surrogate_id=sg.Rect.kind_id, surrogate_param=1.0, return_states=True
        )
        return seq[:2], last[:2]

    assert torch.autograd.gradcheck(
        fn, (x, p.requires_grad_(True), s0.requires_grad_(True)), eps=1e-6, atol=1e-9, rtol=1e-7
    )


def test_adlif_spike_paths_carry_gradient():
    """The reset thr*s_{t-1} and the adaptation b*s_{t-1} pass gradient through the spike: with b
    and alpha*thr nonzero, the gradient of a later membrane on an earlier input differs from the
    one with both paths removed (b = 0, thr*alpha*s = 0 via StraightThrough vs none)."""
    x = inputs((6, 1, 4), F64, "cpu", seed=3, scale=1.0, bias=0.9).requires_grad_(True)
    layer = snn_cuda.AdLIF(4, return_states=True, threshold=0.5, surrogate=sg.StraightThrough())
    spk, u = layer(x)
    (g1,) = torch.autograd.grad(u[-1].sum(), x)
    ref = snn_cuda.AdLIF(4, return_states=True, threshold=0.5, surrogate=sg.StraightThrough(), backend="torch")
    ref.load_state_dict(layer.state_dict())
    spk2, u2 = ref(x)
    (g2,) = torch.autograd.grad(u2[-1].sum(), x)
    assert_grad_close(g1, g2, F64)
    with torch.no_grad():  # detach the spikes' paths in the reference: the gradient must change
        layer.b.zero_()
    layer.reset()
    (g3,) = torch.autograd.grad(layer(x)[1][-1].sum(), x)
    assert not torch.allclose(g1, g3)


def test_adlif_defaults_and_clamp():
    layer = snn_cuda.AdLIF((2, 50))
    lo, hi = math.exp(-1 / 5), math.exp(-1 / 25)
    assert (
        layer.alpha.shape == (2, 50)
        and float(layer.alpha.detach().min()) >= lo
        and float(layer.alpha.detach().max()) <= hi
    )
    assert float(layer.beta.detach().min()) >= math.exp(-1 / 30) and float(layer.beta.detach().max()) <= math.exp(
        -1 / 120
    )
    assert float(layer.a.detach().min()) >= -1 and float(layer.b.detach().max()) <= 2
    custom = snn_cuda.AdLIF(3, clamp={"alpha": (0.5, 0.6)}, init={"a": (0.0, 0.0)})
    assert float(custom.a.detach().abs().max()) == 0.0
    assert custom.clamp_ranges["alpha"] == (0.5, 0.6) and custom.clamp_ranges["b"] == (0.0, 2.0)
    assert layer.double().alpha.dtype == F64
    with pytest.raises(ValueError, match="clamp"):
        snn_cuda.AdLIF(3, clamp={"gamma": (0, 1)})
    with pytest.raises(ValueError, match="init"):
        snn_cuda.AdLIF(3, init={"alpha": (0.9, 0.1)})
    with pytest.raises(TypeError, match="shape"):
        snn_cuda.AdLIF(None)


@pytest.mark.parametrize("kind", ["adlif", "ilif"])
def test_chunked_and_single_step(kind):
    x = inputs((20, 3, 5), torch.float32, "cpu", seed=5, scale=1.5, bias=0.8)

    def make(**kw):
        if kind == "adlif":
            torch.manual_seed(1)
            return snn_cuda.AdLIF(5, threshold=0.7, **kw)
        return snn_cuda.ILIF(tau=2.0, v_threshold=0.5, **kw)

    whole = make()(x)
    part = make()
    assert_equal(torch.cat([part(c) for c in x.split([3, 8, 9])]), whole, "chunked")
    single = make(step_mode="s")
    assert_equal(torch.stack([single(xt) for xt in x]), whole, "single step")


# ------------------------------------------------------------------------------------------
# ILIF
# ------------------------------------------------------------------------------------------
ILIF_CASES = [
    ("default", dict()),
    ("tau2-th05-D7", dict(tau=2.0, v_threshold=0.5, max_spike_count=7)),
    ("window", dict(grad_window=(0.25, 3.0))),
    ("detach", dict(detach_reset=True, max_spike_count=2)),
]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("cid,kw", ILIF_CASES, ids=[c[0] for c in ILIF_CASES])
def test_ilif_matches_reference(cid, kw, dtype, device):
    x = inputs((21, 3, 33), dtype, device, seed=6, scale=2.0, bias=1.0)
    res = []
    for backend in ("fused", "torch"):
        layer = snn_cuda.ILIF(backend=backend, **kw)
        xi = x.clone().requires_grad_(True)
        c = layer(xi)
        g = torch.Generator().manual_seed(7)
        (gx,) = torch.autograd.grad((c.float() * torch.randn(c.shape, generator=g).to(device)).sum(), xi)
        res.append((c.detach(), layer.v, gx))
    assert_equal(res[0][0], res[1][0], f"{cid} counts")
    assert_equal(res[0][1], res[1][1], f"{cid} v")
    assert_grad_close(res[0][2], res[1][2], dtype, f"{cid} grad x")
    counts = res[0][0].float()
    D = kw.get("max_spike_count", 4)
    assert torch.equal(counts, counts.round()) and float(counts.min()) >= 0 and float(counts.max()) <= D
    assert float(counts.max()) >= 2, "the case should emit multi-level counts"


def test_ilif_rounds_half_to_even():
    """H / v_th exactly at k + 0.5 rounds to the even integer, as torch.round; 4.5 clamps to D = 4."""
    x = torch.tensor([[0.5, 1.5, 2.5, 3.5, 0.49999997, 4.5]], dtype=torch.float32)
    for backend in ("fused", "torch"):
        layer = snn_cuda.ILIF(tau=1e30, v_threshold=1.0, backend=backend)  # d = 1 - 1e-30 = 1: H = X
        assert layer(x)[0].tolist() == [0.0, 2.0, 2.0, 4.0, 0.0, 4.0]


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_ilif_gradcheck_detached(device):
    """With detach_reset the membrane is H - C v_th with C locally constant, so its true derivative
    is the kernel's; inputs keep H / v_th away from the rounding boundaries."""
    g = torch.Generator().manual_seed(2)
    k = torch.randint(0, 4, (9, 2, 3), generator=g).to(F64)
    x = ((k + 0.2 + 0.1 * torch.rand(9, 2, 3, generator=g, dtype=F64)) * 0.5).to(device)
    params = pack_params([0.0, 0.5, 4.0, 0.0, 4.0], (2, 3), F64, device)  # d = 0: H = X

    def fn(x):
        _, seq, last = model_multistep("ilif", x, params, None, variant=0, detach_reset=True, return_states=True)
        return seq, last

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(True),), eps=1e-6, atol=1e-9, rtol=1e-7)


def test_ilif_errors():
    with pytest.raises(ValueError, match="tau"):
        snn_cuda.ILIF(tau=1.0)
    with pytest.raises(ValueError, match="v_threshold"):
        snn_cuda.ILIF(v_threshold=0.0)
    with pytest.raises(ValueError, match="max_spike_count"):
        snn_cuda.ILIF(max_spike_count=256)
    with pytest.raises(TypeError, match="max_spike_count"):
        snn_cuda.ILIF(max_spike_count=2.5)
    with pytest.raises(ValueError, match="grad_window"):
        snn_cuda.ILIF(grad_window=(2.0, 1.0))


@pytest.mark.parametrize("name", ["adlif", "ilif"])
def test_no_parameter_gradient_where_none_is_formed(name):
    """The ops form parameter gradients only for models that declare them: asking for one of a
    model with fixed parameters is an error, not a silent zero."""
    d = MODELS[name]
    x = torch.randn(5, 2, 3)
    params = pack_params([0.5] * len(d.params), (2, 3), torch.float32, "cpu").requires_grad_(True)
    if d.param_grads:
        model_multistep(name, x, params, None, variant=0)[0].sum().backward()
        assert params.grad is not None
    else:
        with pytest.raises(RuntimeError, match="parameter gradient"):
            model_multistep(name, x, params, None, variant=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("name,T", [("adlif", -1), ("adlif", 4), ("ilif", -1)])
def test_opcheck(name, T, dtype):
    d = MODELS[name]
    x = torch.randn(9, 2, 6, dtype=dtype) if T < 0 else torch.randn(2, 6, dtype=dtype)
    rest = (2, 6)
    sdt = F64 if dtype == F64 else torch.float32
    vals = [0.9, 0.8, 0.2, 0.5, 0.7] if name == "adlif" else [0.25, 1.0, 4.0, 0.0, 4.0]
    params = pack_params(vals, rest, sdt, "cpu")
    args = (x, params, None, T, d.id, 0, sg.ATan.kind_id, 2.0, False, True, True)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, args)
    spikes, seq, last, ckpt = torch.ops.snn_cuda.model_forward(*args)
    bargs = (torch.randn_like(spikes), torch.randn_like(seq), None, *args[:3], ckpt, *args[3:9], d.param_grads)
    torch.library.opcheck(torch.ops.snn_cuda.model_backward.default, bargs)


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(8, 12), snn_cuda.AdLIF(12), torch.nn.Linear(12, 6), snn_cuda.ILIF(max_spike_count=3)
    )
    x = torch.randn(7, 4, 8) * 2

    def step(m):
        net.zero_grad()
        reset_net(net)
        out = m(x)
        (out * torch.arange(6.0)).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    out_e, grads_e = step(net)
    compiled = torch.compile(net, fullgraph=True, dynamic=False)
    for _ in range(2):
        out_c, grads_c = step(compiled)
        torch.testing.assert_close(out_c, out_e, rtol=0, atol=0)
        for a, b in zip(grads_c, grads_e):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
