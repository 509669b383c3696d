"""Peer parity of the adaptive layers.

* snn_cuda.ILIF against SpikingJelly 2.0's own ``spikingjelly.activation_based.neuron.ILIFNode``
  (D and the gradient window from its ``MultiLevelSpikeCount``), on the fused kernels and on the
  reference (backend="torch"): several tau / v_threshold / D / windows, detach_reset on and off,
  step_mode "m" and "s" (ours with step_mode="s" called per step, like SpikingJelly's),
  chunked calls, exact ties, float32 / float64 and the 16-bit dtypes.
* snn_cuda.AdLIF against an independent plain loop written here from the equations (with its
  own ATan surrogate autograd.Function and torch.clamp of the parameters to the default
  ranges), float32 / float64.

Counts / spikes must be equal; membranes equal (bit for bit where the two compute the same
expression in the same order) or within fp tolerance; gradients within fp tolerance.

SpikingJelly's precision, as found in 2.0.0 (and checked below):

* multi-step ``ILIFNode`` evaluates ``H = (1 - 1/tau) V + X``, ``H / v_threshold`` in the state
  dtype, as snn_cuda does: counts and ``.v`` are bit-equal in float32 and float64.
* single-step ``ILIFNode`` charges ``H = V - V/tau + X`` (LIFNode's charge): other rounding, so
  ``.v`` agrees to a few ulp only (the counts agree here; they could differ where
  ``H / v_threshold`` is within those ulp of a tie x.5 or of a window edge).
* 16-bit inputs: the ``ILIFNode`` module keeps a 16-bit membrane (its ``materialize_states``
  uses the input dtype unless a neuron precision policy is set, and SpikingJelly sets none for
  ILIF) and computes in 16 bits; snn_cuda keeps a float32 membrane. SpikingJelly's registered
  op (``functional.ilif_multi_step`` with a float32 initial ``v``) is its float32-state profile
  for 16-bit inputs: snn_cuda equals it (counts and ``v`` bit-equal, input gradients within one
  16-bit ulp). The 16-bit-state module is compared at its own precision: counts equal to
  snn_cuda's on almost all positions, and never more than 1 apart.

Each peer's tests skip when it is missing.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
BACKENDS = ["fused", "torch"]
DTYPE_ID = {F32: "f32", F64: "f64", F16: "f16", BF16: "bf16"}


@pytest.fixture(scope="module")
def sj():
    """(neuron, surrogate, functional) of SpikingJelly's activation_based package."""
    pytest.importorskip("spikingjelly")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    if not hasattr(neuron, "ILIFNode"):
        pytest.skip("this SpikingJelly has no ILIFNode")
    from spikingjelly.activation_based import functional, surrogate

    if not hasattr(surrogate, "MultiLevelSpikeCount"):
        pytest.skip("this SpikingJelly has no MultiLevelSpikeCount")
    return neuron, surrogate, functional


def _close(a, b, rel, what, abs_floor=1.0):
    """max |a - b| <= rel * max(max |b|, abs_floor): a relative bound on the whole tensor."""
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = max(float(b.abs().max()) if b.numel() else 0.0, abs_floor)
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= rel * scale, f"{what}: max abs err {err:.3g} > {rel:.0e} * {scale:.3g}"


def _equal(a, b, what):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    n = int((a.double() != b.double()).sum())
    assert n == 0, (
        f"{what}: {n} of {a.numel()} differ (max abs diff {float((a.double() - b.double()).abs().max()):.3g})"
    )


def _weights(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


# =========================================================================================
# ILIF vs SpikingJelly ILIFNode
# =========================================================================================
# (tau, v_threshold, D, grad_window or None for SpikingJelly's default [0, D])
ILIF_CASES = {
    "default": (4.0 / 3.0, 1.0, 4, None),
    "tau2_vth0.6_D3_wide": (2.0, 0.6, 3, (-0.5, 3.5)),
    "tau1.5_vth1.3_D1_narrow": (1.5, 1.3, 1, (0.25, 0.75)),
    "tau6_vth0.4_D8_point": (6.0, 0.4, 8, (2.0, 2.0)),
    "tau3_vth0.9_D255": (3.0, 0.9, 255, (-10.0, 300.0)),
}


def _ilif_pair(sj, case, detach_reset, step_mode, backend, store_v_seq=False):
    neuron, sjs, _ = sj
    tau, vth, D, window = ILIF_CASES[case]
    ref = neuron.ILIFNode(
        tau=tau,
        v_threshold=vth,
        surrogate_function=sjs.MultiLevelSpikeCount(D, grad_window=window),
        detach_reset=detach_reset,
        step_mode=step_mode,
        store_v_seq=store_v_seq,
    )
    # D and the window come from SpikingJelly's surrogate object
    f = ref.surrogate_function
    mine = snn_cuda.ILIF(
        tau=tau,
        v_threshold=vth,
        max_spike_count=f.max_spike_count,
        grad_window=(f.grad_min, f.grad_max),
        detach_reset=detach_reset,
        step_mode=step_mode,
        backend=backend,
    )
    assert mine.grad_window == ((0.0, float(D)) if window is None else window)
    return ref, mine


def _ilif_input(shape, dtype, seed, case):
    """H / v_threshold spread over [-1, D + 1]-ish: every count level, both window sides."""
    tau, vth, D, _ = ILIF_CASES[case]
    g = torch.Generator().manual_seed(seed)
    span = min(D, 8) + 1.5
    return ((torch.rand(shape, generator=g, dtype=F64) * span - 0.6) * vth * (1 - 0.5 / tau)).to(dtype)


def _step(layer, x):
    """Multi-step call, or per-step calls stacked (step_mode 's')."""
    if layer.step_mode == "m":
        return layer(x)
    return torch.stack([layer(xt) for xt in x.unbind(0)])


def _run(layer, x, seed=1, v_weight=0.37):
    """Counts, final v, grad x of sum(counts * w) + v_weight * sum(v * w')."""
    xx = x.clone().requires_grad_(True)
    c = _step(layer, xx)
    v = layer.v
    loss = (c.double() * _weights(c.shape, seed)).sum() + v_weight * (v.double() * _weights(v.shape, seed + 1)).sum()
    (gx,) = torch.autograd.grad(loss, xx)
    return c.detach(), v.detach(), gx


def _ilif_cases():
    out = []
    for i, (case, det, sm, dt, be) in enumerate(
        itertools.product(ILIF_CASES, (False, True), ("m", "s"), (F32, F64), BACKENDS)
    ):
        out.append(pytest.param(i, case, det, sm, dt, be, id=f"{case}-det{int(det)}-{sm}-{DTYPE_ID[dt]}-{be}"))
    return out


@pytest.mark.parametrize("idx,case,detach_reset,step_mode,dtype,backend", _ilif_cases())
def test_ilif_matches_spikingjelly(sj, idx, case, detach_reset, step_mode, dtype, backend):
    ref, mine = _ilif_pair(sj, case, detach_reset, step_mode, backend)
    x = _ilif_input((11, 3, 40), dtype, idx, case)
    r0, r1 = _run(ref, x), _run(mine, x)
    c0, v0, g0 = r0
    c1, v1, g1 = r1
    assert c1.dtype == c0.dtype == dtype and v1.dtype == v0.dtype == dtype
    _equal(c1, c0, "counts")
    D = ILIF_CASES[case][2]
    assert float(c0.min()) == 0.0 and 1.0 <= float(c0.max()) <= D, "the case should emit several count levels"
    if step_mode == "m":
        _equal(v1, v0, "v")  # the same expression in the same order: bit-equal
    else:  # SpikingJelly's single step charges V - V/tau + X: a few ulp apart
        _close(v1, v0, 1e-6 if dtype == F32 else 1e-14, "v (single step)")
    _close(g1, g0, 1e-5 if dtype == F32 else 1e-12, "grad x")
    assert float(g0.abs().max()) > 0.0
    # a second sequence continues the state on both
    r0, r1 = _run(ref, x.flip(0)), _run(mine, x.flip(0))
    _equal(r1[0], r0[0], "counts (second call)")
    _close(r1[1], r0[1], 0.0 if step_mode == "m" else (1e-6 if dtype == F32 else 1e-14), "v (second call)")
    _close(r1[2], r0[2], 1e-5 if dtype == F32 else 1e-12, "grad x (second call)")


@pytest.mark.parametrize("dtype", [F32, F64], ids=DTYPE_ID.get)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_ilif_chunked_matches_spikingjelly_whole(sj, dtype, backend, detach_reset):
    """Ours in three chunks (the state carried in .v, gradients through it) == SpikingJelly's
    ILIFNode over the whole sequence in one multi-step call."""
    case = "tau2_vth0.6_D3_wide"
    ref, mine = _ilif_pair(sj, case, detach_reset, "m", backend)
    x = _ilif_input((13, 2, 30), dtype, 7, case)
    c0, v0, g0 = _run(ref, x)
    xx = x.clone().requires_grad_(True)
    c1 = torch.cat([mine(xx[:4]), mine(xx[4:5]), mine(xx[5:])])
    loss = (c1.double() * _weights(c1.shape, 1)).sum() + 0.37 * (mine.v.double() * _weights(mine.v.shape, 2)).sum()
    (g1,) = torch.autograd.grad(loss, xx)
    _equal(c1, c0, "counts")
    _equal(mine.v, v0, "v")
    _close(g1, g0, 1e-5 if dtype == F32 else 1e-12, "grad x")


@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_ilif_exact_ties_and_window_edges(sj, step_mode, backend, detach_reset):
    """Dyadic inputs, tau=2 (decay 0.5) and v_threshold=1: every value is exact in float32, so
    both step modes of SpikingJelly are exact too. H lands on the ties k + 0.5 (round half to
    even, torch.round) and on the window's edges (the closed window [0.5, 2.5] passes gradient
    there); counts and membranes must be bit-equal."""
    neuron, sjs, _ = sj
    ref = neuron.ILIFNode(
        tau=2.0,
        v_threshold=1.0,
        surrogate_function=sjs.MultiLevelSpikeCount(3, grad_window=(0.5, 2.5)),
        detach_reset=detach_reset,
        step_mode=step_mode,
    )
    mine = snn_cuda.ILIF(tau=2.0, v_threshold=1.0, max_spike_count=3, grad_window=(0.5, 2.5), detach_reset=detach_reset)
    mine.step_mode = step_mode
    mine.backend = backend
    g = torch.Generator().manual_seed(5)
    x = torch.randint(-4, 16, (9, 4, 64), generator=g).to(F32) * 0.25
    # the membranes the reference goes through, to show the ties and edges are hit
    h_all, v = [], torch.zeros(x.shape[1:])
    for xt in x:
        h = 0.5 * v + xt
        h_all.append(h)
        v = h - h.clamp(0, 3).round()
    h_all = torch.stack(h_all)
    frac = h_all - h_all.floor()
    assert int(((frac == 0.5) & (h_all > 0) & (h_all < 3)).sum()) > 20, "ties k + 0.5 must occur"
    assert int((h_all == 0.5).sum()) > 0 and int((h_all == 2.5).sum()) > 0, "window edges must occur"
    assert int((h_all == 3.5).sum() + (h_all > 3).sum()) > 0 and int((h_all < 0).sum()) > 0
    c0, v0, g0 = _run(ref, x)
    c1, v1, g1 = _run(mine, x)
    _equal(c1, c0, "counts")
    _equal(v1, v0, "v")
    _close(g1, g0, 1e-6, "grad x")  # the loss weights are not dyadic: summation order shows
    # torch.round: half to even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2)
    assert torch.equal(torch.tensor([0.5, 1.5, 2.5]).round(), torch.tensor([0.0, 2.0, 2.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ilif_constant_input_T(sj, backend):
    """ours(x, T=n) == SpikingJelly on x repeated n times."""
    ref, mine = _ilif_pair(sj, "default", False, "m", backend)
    x = _ilif_input((3, 25), F32, 3, "default")
    c0 = ref(x.unsqueeze(0).expand(6, *x.shape).contiguous())
    c1 = mine(x, T=6)
    _equal(c1, c0, "counts")
    _equal(mine.v, ref.v, "v")


@pytest.mark.parametrize("dtype", [F16, BF16], ids=DTYPE_ID.get)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_ilif_16bit_matches_spikingjelly_fp32_state(sj, dtype, backend, detach_reset):
    """16-bit inputs: snn_cuda keeps a float32 membrane; so does SpikingJelly's registered op
    when given a float32 initial v (its fp32-state profile for 16-bit inputs): counts (in the
    16-bit dtype) and v bit-equal, input gradients (16-bit) within one 16-bit ulp (the fused
    backward rounds a float32 sum formed in another order; the reference is bit-equal)."""
    neuron, sjs, functional = sj
    case = "tau2_vth0.6_D3_wide"
    tau, vth, D, window = ILIF_CASES[case]
    f = sjs.MultiLevelSpikeCount(D, grad_window=window)
    mine = snn_cuda.ILIF(tau=tau, v_threshold=vth, max_spike_count=D, grad_window=window, detach_reset=detach_reset)
    mine.backend = backend
    x = _ilif_input((10, 3, 40), dtype, 11, case)
    w = _weights(x.shape, 1, dtype)
    xa = x.clone().requires_grad_(True)
    c0, v0, _ = functional.ilif_multi_step(xa, torch.zeros(x.shape[1:]), tau, vth, f, detach_reset, False)
    (g0,) = torch.autograd.grad((c0 * w).sum(), xa)
    xb = x.clone().requires_grad_(True)
    c1 = mine(xb)
    (g1,) = torch.autograd.grad((c1 * w).sum(), xb)
    assert c0.dtype == c1.dtype == dtype and v0.dtype == mine.v.dtype == F32 and g0.dtype == g1.dtype == dtype
    _equal(c1, c0, "counts")
    _equal(mine.v, v0, "v")
    if backend == "torch":
        _equal(g1, g0, "grad x")
    else:
        ulp = 2.0 ** (-10 if dtype == F16 else -7)
        _close(g1, g0, ulp, "grad x (one 16-bit ulp)")


@pytest.mark.parametrize("dtype", [F16, BF16], ids=DTYPE_ID.get)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_ilif_16bit_module(sj, dtype, step_mode, backend):
    """The ILIFNode module with 16-bit inputs keeps a 16-bit membrane (its own precision,
    not snn_cuda's): snn_cuda (float32 membrane) equals that module run on the same values in
    float32, and the 16-bit module's counts stay within one level of ours, on almost every
    position."""
    case = "default"
    ref, mine = _ilif_pair(sj, case, False, step_mode, backend)
    x = _ilif_input((10, 3, 40), dtype, 13, case)
    c1, v1, g1 = _run(mine, x)
    assert c1.dtype == dtype and v1.dtype == F32 and g1.dtype == dtype
    # SpikingJelly on the same values in float32
    c0, v0, g0 = _run(ref, x.float())
    _equal(c1, c0.to(dtype), "counts vs SpikingJelly in float32")
    if step_mode == "m":
        _equal(v1, v0, "v vs SpikingJelly in float32")
    else:
        _close(v1, v0, 1e-6, "v vs SpikingJelly in float32 (single step)")
    ulp = 2.0 ** (-10 if dtype == F16 else -7)
    _close(g1, g0, ulp, "grad x vs SpikingJelly in float32 (rounded to 16 bits)")
    # SpikingJelly's own 16-bit state
    ref.reset()
    c16, v16, _ = _run(ref, x)
    assert c16.dtype == dtype and v16.dtype == dtype, "SpikingJelly's module keeps a 16-bit membrane"
    diff = (c16.double() - c1.double()).abs()
    assert float(diff.max()) <= 1.0
    assert float((diff > 0).double().mean()) <= (0.01 if dtype == F16 else 0.03)


def test_ilif_sj_reset_and_shape(sj):
    """SpikingJelly restarts a node's state on a new input shape; ours raises unless reset:
    both agree again after reset_net / reset()."""
    ref, mine = _ilif_pair(sj, "default", False, "m", "fused")
    x = _ilif_input((5, 2, 7), F32, 2, "default")
    _equal(mine(x), ref(x), "counts")
    sj[2].reset_net(ref)
    mine.reset()
    y = _ilif_input((4, 3, 7), F32, 3, "default")
    _equal(mine(y), ref(y), "counts after reset")
    _equal(mine.v, ref.v, "v after reset")


# =========================================================================================
# AdLIF vs a plain loop written from the equations
# =========================================================================================
class _ATanSpike(torch.autograd.Function):
    """s = 1[z > 0]; ds/dz = (alpha/2) / (1 + (pi/2 * alpha * z)^2)."""

    @staticmethod
    def forward(ctx, z, alpha):
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z > 0).to(z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * z) ** 2), None


_CLAMP = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "a": (-1.0, 1.0), "b": (0.0, 2.0)}


def _adlif_loop(x, params, thr, sg_alpha, u=None, w=None, s=None):
    """w_t = beta w + a u + b s;  u_t = alpha (u - thr s) + (1 - alpha)(x_t - w_t);
    s_t = 1[u_t - thr > 0] (ATan surrogate), parameters clamped to the default ranges.
    Returns (spikes, u_seq, (u, w, s))."""
    al, be, pa, pb = (torch.clamp(params[n], *_CLAMP[n]) for n in ("alpha", "beta", "a", "b"))
    zeros = torch.zeros(x.shape[1:], dtype=x.dtype)
    u = zeros if u is None else u
    w = zeros if w is None else w
    s = zeros if s is None else s
    spikes, us = [], []
    for xt in x.unbind(0):
        w = be * w + pa * u + pb * s
        u = al * (u - thr * s) + (1 - al) * (xt - w)
        s = _ATanSpike.apply(u - thr, sg_alpha)
        spikes.append(s)
        us.append(u)
    return torch.stack(spikes), torch.stack(us), (u, w, s)


def _adlif_params(shape, dtype, seed=0):
    """Per-neuron values spread over (and a few beyond) each clamp range."""
    g = torch.Generator().manual_seed(seed)

    def u(lo, hi):
        return torch.rand(shape, generator=g, dtype=F64) * (hi - lo) + lo

    p = {"alpha": u(0.6, 0.97), "beta": u(0.7, 0.99), "a": u(-0.8, 0.8), "b": u(0.0, 1.8)}
    p["alpha"].view(-1)[:2] = torch.tensor([1.2, -0.1], dtype=F64)  # clamped: zero gradient
    p["beta"].view(-1)[2] = 1.3
    p["a"].view(-1)[3:5] = torch.tensor([1.5, -1.4], dtype=F64)
    p["b"].view(-1)[5] = -0.3
    return {k: v.to(dtype) for k, v in p.items()}


def _adlif_layer(shape, params, dtype, backend, step_mode="m", threshold=0.8, surrogate=None):
    layer = snn_cuda.AdLIF(
        shape,
        threshold=threshold,
        surrogate=surrogate,
        return_states=True,
        step_mode=step_mode,
        backend=backend,
    ).to(dtype)
    with torch.no_grad():
        for n, v in params.items():
            getattr(layer, n).copy_(v)
    return layer


def _adlif_loss(spk, u_seq, u, w, seed=3):
    return (
        (spk.double() * _weights(spk.shape, seed)).sum()
        + 0.2 * (u_seq.double() * _weights(u_seq.shape, seed + 1)).sum()
        + 0.3 * (u.double() * _weights(u.shape, seed + 2)).sum()
        - 0.1 * (w.double() * _weights(w.shape, seed + 3)).sum()
    )


def _adlif_check(mine_out, loop_out, dtype):
    (s1, u1, last1, g1), (s0, u0, last0, g0) = mine_out, loop_out
    assert s1.dtype == dtype and u1.dtype == dtype
    _equal(s1, s0, "spikes")
    assert 0.02 < float(s0.double().mean()) < 0.98, "the case should spike sometimes"
    # the loop evaluates the same expressions in the same order: bit-equal membranes
    _equal(u1, u0, "u_seq")
    for a, b, n in zip(last1, last0, ("u", "w", "s")):
        _equal(a, b, f"final {n}")
    gt = 2e-5 if dtype == F32 else 1e-11
    for n in ("x", "alpha", "beta", "a", "b"):
        _close(g1[n], g0[n], gt, f"grad {n}")
        assert float(g0[n].abs().max()) > 0.0, f"grad {n} should not vanish"
    # clamped parameters: no gradient (torch.clamp's gradient outside the range)
    assert float(g1["alpha"].view(-1)[:2].abs().max()) == 0.0
    assert float(g1["beta"].view(-1)[2].abs()) == 0.0
    assert float(g1["a"].view(-1)[3:5].abs().max()) == 0.0
    assert float(g1["b"].view(-1)[5].abs()) == 0.0


def _run_loop(x, params, thr, sg_alpha, chunks=None):
    xx = x.clone().requires_grad_(True)
    ps = {n: v.clone().requires_grad_(True) for n, v in params.items()}
    spk, u_seq, (u, w, s) = _adlif_loop(xx, ps, thr, sg_alpha)
    loss = _adlif_loss(spk, u_seq, u, w)
    grads = torch.autograd.grad(loss, [xx, *ps.values()])
    return spk.detach(), u_seq.detach(), (u.detach(), w.detach(), s.detach()), dict(zip(["x", *ps], grads))


def _run_mine(layer, x, chunks=(None,)):
    xx = x.clone().requires_grad_(True)
    if layer.step_mode == "s":
        outs = [layer(xt) for xt in xx.unbind(0)]
        spk, u_seq = torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
    else:
        bounds = [0, *[c for c in chunks if c is not None], x.shape[0]]
        outs = [layer(xx[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        spk, u_seq = torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])
    loss = _adlif_loss(spk, u_seq, layer.u, layer.w)
    names = ["alpha", "beta", "a", "b"]
    grads = torch.autograd.grad(loss, [xx, *(getattr(layer, n) for n in names)])
    last = (layer.u.detach(), layer.w.detach(), layer.s.detach())
    return spk.detach(), u_seq.detach(), last, dict(zip(["x", *names], grads))


@pytest.mark.parametrize("dtype", [F32, F64], ids=DTYPE_ID.get)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_adlif_matches_plain_loop(dtype, backend, step_mode):
    shape = (3, 8)
    params = _adlif_params(shape, dtype)
    x = (torch.randn((19, 4, *shape), generator=torch.Generator().manual_seed(2), dtype=F64) * 1.5 + 0.6).to(dtype)
    loop = _run_loop(x, params, 0.8, 2.0)
    layer = _adlif_layer(shape, params, dtype, backend, step_mode)
    _adlif_check(_run_mine(layer, x), loop, dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=DTYPE_ID.get)
@pytest.mark.parametrize("backend", BACKENDS)
def test_adlif_chunked_matches_plain_loop(dtype, backend):
    """Chunked multi-step calls (the state carried in .u / .w / .s, gradients through it) ==
    the plain loop over the whole sequence."""
    shape = 10
    params = _adlif_params(shape, dtype, seed=4)
    x = (torch.randn((21, 3, shape), generator=torch.Generator().manual_seed(5), dtype=F64) * 1.5 + 0.6).to(dtype)
    loop = _run_loop(x, params, 0.8, 2.0)
    layer = _adlif_layer(shape, params, dtype, backend)
    _adlif_check(_run_mine(layer, x, chunks=(5, 6, 13)), loop, dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=DTYPE_ID.get)
@pytest.mark.parametrize("backend", BACKENDS)
def test_adlif_other_threshold_and_surrogate_width(dtype, backend):
    shape = (2, 5)
    params = _adlif_params(shape, dtype, seed=6)
    x = (torch.randn((15, 2, *shape), generator=torch.Generator().manual_seed(7), dtype=F64) * 1.2 + 0.5).to(dtype)
    loop = _run_loop(x, params, 0.55, 3.5)
    layer = _adlif_layer(shape, params, dtype, backend, threshold=0.55, surrogate=sg.ATan(3.5))
    _adlif_check(_run_mine(layer, x), loop, dtype)
