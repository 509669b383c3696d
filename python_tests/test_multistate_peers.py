"""Peer parity of the multi-state layers: snn_cuda.Synaptic against snnTorch 1.0's own
``snntorch.Synaptic`` (stepped in its per-step loop) and snn_cuda.CUBALIF against SpikingJelly
2.0's own ``spikingjelly.activation_based.neuron.CUBALIFNode``, on the fused kernels and on the
reference (backend="torch"), in float32 and float64.

Spikes must be equal; states and gradients (x, initial states, learnable parameters) equal to
fp tolerance. snnTorch computes in float32 where it should not: its spikes are float32 for
every input dtype, so the spike gradients of a float64 run flow in float32, and its reset
subtracts ``reset * threshold`` formed in float32 (the float32 reset times a 0-dim threshold
stays float32), so its float64 membranes carry float32-sized errors too. float64 runs are
therefore compared with snnTorch at float32 tolerances. SpikingJelly computes in the input
dtype throughout: float64 is compared tightly. Each peer's tests skip when it is missing.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg

F32, F64 = torch.float32, torch.float64
BACKENDS = ["fused", "torch"]
DTYPES = [pytest.param(F32, id="f32"), pytest.param(F64, id="f64")]


@pytest.fixture(scope="module")
def snn():
    return pytest.importorskip("snntorch")


@pytest.fixture(scope="module")
def sj():
    """(neuron, surrogate, functional) of SpikingJelly's activation_based package."""
    pytest.importorskip("spikingjelly")
    neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    if not hasattr(neuron, "CUBALIFNode"):
        pytest.skip("this SpikingJelly has no CUBALIFNode")
    from spikingjelly.activation_based import functional, surrogate

    return neuron, surrogate, functional


def _close(a, b, rel, what, abs_floor=1.0):
    """max |a - b| <= rel * max(max |b|, abs_floor): a relative bound on the whole tensor (a
    gradient summed over neurons and steps is compared at its own scale)."""
    a, b = a.detach().double(), b.detach().double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    scale = max(float(b.abs().max()) if b.numel() else 0.0, abs_floor)
    err = float((a - b).abs().max()) if b.numel() else 0.0
    assert err <= rel * scale, f"{what}: max abs err {err:.3g} > {rel:.0e} * {scale:.3g}"


def _spikes_equal(a, b, what="spikes"):
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    n = int((a.double() != b.double()).sum())
    assert n == 0, f"{what}: {n} of {a.numel()} differ"


def _weights(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(dtype)


# =========================================================================================
# snnTorch Synaptic
# =========================================================================================
# snn_cuda surrogate <-> snnTorch surrogate factory (the same derivative; cf. test_convert)
ST_SURROGATES = {
    "atan": (lambda: sg.ATan(2.0), lambda sts: sts.atan(alpha=2.0)),
    "atan3": (lambda: sg.ATan(3.0), lambda sts: sts.atan(alpha=3.0)),
    "fast_sigmoid": (lambda: sg.FastSigmoid(5.0), lambda sts: sts.fast_sigmoid(slope=5.0)),
    "sigmoid": (lambda: sg.Sigmoid(4.0), lambda sts: sts.sigmoid(slope=4.0)),
    "ste": (lambda: sg.StraightThrough(), lambda sts: sts.straight_through_estimator()),
}

N = 6  # neurons per sample (the per-neuron parameter shape)


def _vec(lo, hi, n=N):
    return torch.linspace(lo, hi, n, dtype=F64)


# name -> (alpha, beta, threshold, learn_alpha, learn_beta, learn_threshold). Values are
# Python floats (scalars) or float64 tensors (per neuron), cast to the run's dtype.
SYN_PARAMS = {
    "fixed": (0.8, 0.9, 0.7, False, False, False),
    "learn_alpha": (0.8, 0.9, 0.7, True, False, False),
    "learn_beta": (0.8, 0.9, 0.7, False, True, False),
    "learn_threshold": (0.8, 0.9, 0.7, False, False, True),
    "learn_all": (0.6, 0.85, 0.9, True, True, True),
    "learn_all_per_neuron": (_vec(0.3, 0.95), _vec(0.5, 0.97), _vec(0.6, 1.1), True, True, True),
    "fixed_per_neuron": (_vec(0.4, 0.9), _vec(0.6, 0.95), _vec(0.7, 1.2), False, False, False),
    "mixed": (_vec(0.5, 0.9), 0.8, _vec(0.6, 1.0), True, False, True),
    # learnable values outside [0, 1] are clamped in forward, with clamp's (zero) gradient
    "learn_out_of_range": (
        torch.tensor([1.2, -0.1, 0.5, 1.0, 0.0, 0.9], dtype=F64),
        torch.tensor([0.9, 1.3, -0.2, 0.7, 1.0, 0.95], dtype=F64),
        0.8,
        True,
        True,
        False,
    ),
}


def _st_value(v, dtype):
    """What snnTorch is given: always a tensor of the run's dtype (it turns a Python float
    into a float32 tensor, which a float64 run must not see)."""
    return v.to(dtype).clone() if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype)


def _my_value(v, dtype, learn):
    """What snn_cuda is given: a fixed scalar as the Python float itself (it then runs as a
    kernel constant), anything else as a tensor of the run's dtype (a learnable Python float
    would become a float32 Parameter, as in snnTorch)."""
    if isinstance(v, torch.Tensor) or learn:
        return _st_value(v, dtype)
    return float(v)


def _syn_pair(snn, case, reset, sname, dtype, backend, **my_kw):
    import snntorch.surrogate as sts

    a, b, th, la, lb, lt = SYN_PARAMS[case]
    mine_sg, st_sg = ST_SURROGATES[sname]
    ref = snn.Synaptic(
        alpha=_st_value(a, dtype),
        beta=_st_value(b, dtype),
        threshold=_st_value(th, dtype),
        spike_grad=st_sg(sts),
        learn_alpha=la,
        learn_beta=lb,
        learn_threshold=lt,
        reset_mechanism=reset,
    )
    mine = snn_cuda.Synaptic(
        alpha=_my_value(a, dtype, la),
        beta=_my_value(b, dtype, lb),
        threshold=_my_value(th, dtype, lt),
        surrogate=mine_sg(),
        learn_alpha=la,
        learn_beta=lb,
        learn_threshold=lt,
        reset_mechanism=reset,
        backend=backend,
        **my_kw,
    )
    for n in ("alpha", "beta", "threshold"):  # learnable ones: the same kinds and values
        assert isinstance(getattr(mine, n), torch.nn.Parameter) == isinstance(getattr(ref, n), torch.nn.Parameter)
    return ref, mine


def _syn_input(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    # mean drive ~0.3 per step: with alpha ~0.8 the current settles near 1.5, so every reset
    # path runs and some neurons stay below threshold
    return (torch.rand(shape, generator=g, dtype=F64) * 0.6).to(dtype)


def _syn_loss(spk, syn, mem, seed=3):
    ws = _weights(spk.shape, F64, seed)
    wy = _weights(syn.shape, F64, seed + 1)
    wm = _weights(mem.shape, F64, seed + 2)
    return (spk.double() * ws).sum() + (syn.double() * wy).sum() + (mem.double() * wm).sum()


def _param_grads(m):
    out = {}
    for n in ("alpha", "beta", "threshold"):
        p = getattr(m, n)
        if isinstance(p, torch.nn.Parameter):
            out[n] = None if p.grad is None else p.grad.detach().clone()
            p.grad = None
    return out


def _run_snntorch(ref, x, syn0=None, mem0=None):
    """snnTorch's loop: spk, syn, mem = lif(x[t], syn, mem). Returns the sequences, the
    gradients of _syn_loss w.r.t. x (and the initial states when given) and the parameter
    gradients."""
    xx = x.clone().requires_grad_()
    leaves = [xx]
    if syn0 is None:
        syn, mem = ref.reset_mem()
    else:
        syn, mem = syn0.clone().requires_grad_(), mem0.clone().requires_grad_()
        leaves += [syn, mem]
    spks, syns, mems = [], [], []
    for xt in xx.unbind(0):
        spk, syn, mem = ref(xt, syn, mem)
        spks.append(spk)
        syns.append(syn)
        mems.append(mem)
    spk, syn, mem = torch.stack(spks), torch.stack(syns), torch.stack(mems)
    grads = torch.autograd.grad(_syn_loss(spk, syn, mem), leaves, retain_graph=True)
    for p in ref.parameters():
        p.grad = None
    _syn_loss(spk, syn, mem).backward()
    return (spk.detach(), syn.detach(), mem.detach()), grads, _param_grads(ref)


def _run_mine(mine, x, syn0=None, mem0=None, chunks=None):
    """snn_cuda multi-step, whole or in chunks (state carried in .syn / .mem)."""
    mine.reset()
    xx = x.clone().requires_grad_()
    leaves = [xx]
    if syn0 is not None:
        syn0, mem0 = syn0.clone().requires_grad_(), mem0.clone().requires_grad_()
        leaves += [syn0, mem0]
    parts = [xx] if chunks is None else list(torch.split(xx, chunks))
    outs = []
    for i, part in enumerate(parts):
        if i == 0 and syn0 is not None:
            outs.append(mine(part, syn0, mem0))
        else:
            outs.append(mine(part))
    spk, syn, mem = (torch.cat(o) for o in zip(*outs))
    grads = torch.autograd.grad(_syn_loss(spk, syn, mem), leaves, retain_graph=True)
    for p in mine.parameters():
        p.grad = None
    _syn_loss(spk, syn, mem).backward()
    return (spk.detach(), syn.detach(), mem.detach()), grads, _param_grads(mine)


def _syn_tols(dtype, reset):
    """(state rel, grad rel). float32: both evaluate the same float32 formulas (states equal;
    the fused backward associates its sums in another order). float64: snnTorch's reset by
    subtraction subtracts a float32 ``reset * threshold``, and its spike gradients flow in
    float32 (module docstring), so those are compared at float32 sizes."""
    if dtype == F32:
        return 1e-6, 2e-5
    return (1e-6 if reset == "subtract" else 1e-12), 2e-5


def _check_syn(res_ref, res_mine, dtype, reset, what=""):
    (s0, y0, m0), g0, p0 = res_ref
    (s1, y1, m1), g1, p1 = res_mine
    st, gt = _syn_tols(dtype, reset)
    _spikes_equal(s1, s0, f"{what} spikes")
    assert s1.dtype == dtype and y1.dtype == m1.dtype == dtype
    _close(y1, y0, st, f"{what} syn")
    _close(m1, m0, st, f"{what} mem")
    for i, (a, b) in enumerate(zip(g1, g0)):
        _close(a, b, gt, f"{what} grad {['x', 'syn0', 'mem0'][i]}")
    assert p0.keys() == p1.keys()
    for n in p0:
        assert (p0[n] is None) == (p1[n] is None), n
        if p0[n] is not None:
            _close(p1[n], p0[n], gt, f"{what} grad {n}")


def _syn_cases():
    cases = itertools.product(SYN_PARAMS, ("subtract", "zero", "none"))
    names = list(ST_SURROGATES)
    return [pytest.param(c, r, names[i % len(names)], id=f"{c}-{r}") for i, (c, r) in enumerate(cases)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case,reset,sname", _syn_cases())
def test_synaptic_multistep_vs_snntorch_loop(snn, case, reset, sname, dtype, backend):
    ref, mine = _syn_pair(snn, case, reset, sname, dtype, backend)
    x = _syn_input((11, 4, N), dtype, seed=len(case) + len(reset))
    r0 = _run_snntorch(ref, x)
    r1 = _run_mine(mine, x)
    _check_syn(r0, r1, dtype, reset, f"{case}/{reset}/{sname}")
    assert 0.05 < float(r0[0][0].mean()) < 0.95  # spikes and silences both
    # the final states are the last step's
    _close(mine.syn, r0[0][1][-1], _syn_tols(dtype, reset)[0], "final syn")
    _close(mine.mem, r0[0][2][-1], _syn_tols(dtype, reset)[0], "final mem")
    if case == "learn_out_of_range":  # clamp(0, 1)'s gradient is zero outside [0, 1], as in snnTorch
        pa = r1[2]["alpha"]
        assert pa[0] == 0 and pa[1] == 0 and pa[2] != 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sname", list(ST_SURROGATES))
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_synaptic_surrogates_vs_snntorch(snn, sname, reset, dtype, backend):
    ref, mine = _syn_pair(snn, "learn_all", reset, sname, dtype, backend)
    x = _syn_input((9, 3, N), dtype, seed=7)
    _check_syn(_run_snntorch(ref, x), _run_mine(mine, x), dtype, reset, f"{sname}/{reset}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("case", ["fixed", "learn_all", "learn_all_per_neuron"])
def test_synaptic_initial_states_and_chunks(snn, case, reset, dtype, backend):
    """Non-zero initial states (with their gradients) and chunked multi-step calls (the state
    carried in .syn / .mem between calls) equal snnTorch's whole loop."""
    x = _syn_input((13, 2, 3, N), dtype, seed=11)
    g = torch.Generator().manual_seed(12)
    syn0 = (torch.rand((2, 3, N), generator=g, dtype=F64) * 1.5).to(dtype)
    mem0 = (torch.rand((2, 3, N), generator=g, dtype=F64) * 1.4 - 0.2).to(dtype)
    ref, mine = _syn_pair(snn, case, reset, "atan", dtype, backend)
    r0 = _run_snntorch(ref, x, syn0, mem0)
    _check_syn(r0, _run_mine(mine, x, syn0, mem0), dtype, reset, "initial states, whole")
    _check_syn(r0, _run_mine(mine, x, syn0, mem0, chunks=[4, 1, 8]), dtype, reset, "initial states, chunked")
    # from zero states, chunked == whole, and both == snnTorch
    r0 = _run_snntorch(ref, x)
    whole = _run_mine(mine, x)
    chunked = _run_mine(mine, x, chunks=[5, 5, 3])
    _check_syn(r0, chunked, dtype, reset, "chunked")
    _check_syn(whole, chunked, dtype, reset, "chunked vs whole")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("case", ["fixed", "learn_all", "mixed"])
def test_synaptic_single_step_api(snn, case, reset, dtype, backend):
    """The single-step call of an snnTorch loop, ``spk, syn, mem = layer(x, syn, mem)`` with
    ``syn, mem = layer.reset_mem()``, on the same snnTorch loop; and the state kept in the
    layer when syn / mem are not passed."""
    ref, mine = _syn_pair(snn, case, reset, "fast_sigmoid", dtype, backend, step_mode="s")
    x = _syn_input((10, 4, N), dtype, seed=21)
    r0 = _run_snntorch(ref, x)

    def loop(explicit):
        xx = x.clone().requires_grad_()
        if explicit:
            syn, mem = mine.reset_mem()
            assert (syn, mem) == (0.0, 0.0)
        else:
            mine.reset()
        spks, syns, mems = [], [], []
        for xt in xx.unbind(0):
            if explicit:
                spk, syn, mem = mine(xt, syn, mem)
            else:
                spk, syn, mem = mine(xt)
            assert spk.shape == syn.shape == mem.shape == xt.shape
            spks.append(spk)
            syns.append(syn)
            mems.append(mem)
        spk, syn, mem = torch.stack(spks), torch.stack(syns), torch.stack(mems)
        (gx,) = torch.autograd.grad(_syn_loss(spk, syn, mem), [xx], retain_graph=True)
        for p in mine.parameters():
            p.grad = None
        _syn_loss(spk, syn, mem).backward()
        return (spk.detach(), syn.detach(), mem.detach()), (gx,), _param_grads(mine)

    r1 = loop(explicit=True)
    _check_syn(r0, r1, dtype, reset, "single step, explicit states")
    _close(mine.mem, r0[0][2][-1], _syn_tols(dtype, reset)[0], "final mem")
    _check_syn(r0, loop(explicit=False), dtype, reset, "single step, kept states")
    # init_synaptic() is reset_mem()'s older name
    assert mine.init_synaptic() == (0.0, 0.0) and mine.syn == 0.0 and mine.mem == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_synaptic_spikes_only(snn, reset, dtype, backend):
    """return_states=False: the spikes alone, with the gradient of a spike-only loss."""
    ref, mine = _syn_pair(snn, "learn_all_per_neuron", reset, "atan", dtype, backend, return_states=False)
    x = _syn_input((12, 5, N), dtype, seed=31)
    w = _weights(x.shape, F64, 32)

    def grads(spk, leaves, module):
        for p in module.parameters():
            p.grad = None
        loss = (spk.double() * w).sum()
        (gx,) = torch.autograd.grad(loss, leaves, retain_graph=True)
        loss.backward()
        return gx, {n: p.grad.clone() for n, p in module.named_parameters()}

    xx = x.clone().requires_grad_()
    syn, mem = ref.reset_mem()
    spks = []
    for xt in xx.unbind(0):
        spk, syn, mem = ref(xt, syn, mem)
        spks.append(spk)
    s0 = torch.stack(spks)
    g0, p0 = grads(s0, [xx], ref)
    xx = x.clone().requires_grad_()
    s1 = mine(xx)
    assert isinstance(s1, torch.Tensor)
    g1, p1 = grads(s1, [xx], mine)
    _spikes_equal(s1, s0)
    _close(g1, g0, 2e-5, "grad x")
    for n in ("alpha", "beta", "threshold"):
        _close(p1[n], p0[n], 2e-5, f"grad {n}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_synaptic_per_channel_parameters(snn, backend):
    """(C, 1, 1) parameters on [T, B, C, H, W] inputs (broadcast over the pixels)."""
    C = 3
    a = torch.tensor([0.5, 0.8, 0.95]).view(C, 1, 1)
    b = torch.tensor([0.9, 0.7, 0.85]).view(C, 1, 1)
    th = torch.tensor([0.8, 1.0, 0.6]).view(C, 1, 1)
    kw = dict(learn_alpha=True, learn_beta=True, learn_threshold=True)
    ref = snn.Synaptic(alpha=a.clone(), beta=b.clone(), threshold=th.clone(), **kw)
    mine = snn_cuda.Synaptic(alpha=a.clone(), beta=b.clone(), threshold=th.clone(), backend=backend, **kw)
    x = _syn_input((8, 2, C, 4, 5), F32, seed=41)
    _check_syn(_run_snntorch(ref, x), _run_mine(mine, x), F32, "subtract", "per channel")


# =========================================================================================
# SpikingJelly CUBALIFNode
# =========================================================================================
# SpikingJelly surrogates with snn_cuda's semantics (same name, same alpha)
SJ_SURROGATES = [
    ("Rect", 1.0),
    ("Sigmoid", 4.0),
    ("ATan", 2.0),
    ("PiecewiseQuadratic", 1.0),
    ("PiecewiseExp", 1.5),
    ("SoftSign", 2.0),
    ("Erf", 2.0),
]
CUBA_KW = dict(c_decay=0.6, v_decay=0.7, v_threshold=0.5)


def _cuba_pair(sj, v_reset, detach_reset, sname, alpha, step_mode, backend, my_kw=None, **kw):
    """(SpikingJelly CUBALIFNode, snn_cuda.CUBALIF) with the same options; `my_kw`: options of
    snn_cuda's only (return_states)."""
    neuron, sjs, _ = sj
    params = dict(CUBA_KW, **kw)
    ref = neuron.CUBALIFNode(v_reset=v_reset, surrogate_function=getattr(sjs, sname)(alpha=alpha), **params)
    # SpikingJelly 2.0's CUBALIFNode.__init__ takes neither: attributes of BaseNode
    ref.detach_reset = detach_reset
    ref.step_mode = step_mode
    mine = snn_cuda.CUBALIF(
        v_reset=v_reset,
        surrogate=getattr(sg, sname)(alpha),
        detach_reset=detach_reset,
        step_mode=step_mode,
        backend=backend,
        **params,
        **(my_kw or {}),
    )
    return ref, mine


def _cuba_input(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=F64) * 0.5 - 0.05).to(dtype)


def _run_cuba(node, x, step_mode, w_seed=5):
    """Spikes over x (one call in 'm', a call per step in 's'), then the gradient of a loss on
    the spikes and the final states w.r.t. x. Returns spikes, c, v, grad x."""
    xx = x.clone().requires_grad_()
    s = node(xx) if step_mode == "m" else torch.stack([node(xt) for xt in xx.unbind(0)])
    loss = (s.double() * _weights(s.shape, F64, w_seed)).sum()
    loss = loss + (node.v.double() * _weights(node.v.shape, F64, w_seed + 1)).sum()
    loss = loss + (node.c.double() * _weights(node.c.shape, F64, w_seed + 2)).sum()
    loss.backward()
    return s.detach(), node.c.detach(), node.v.detach(), xx.grad


def _cuba_tols(dtype):
    # (state rel, grad rel): the same formulas in the same dtype; the fused backward may
    # associate its float32 sums differently
    return (1e-6, 1e-5) if dtype == F32 else (1e-13, 1e-11)


def _check_cuba(r0, r1, dtype, what):
    st, gt = _cuba_tols(dtype)
    (s0, c0, v0, g0), (s1, c1, v1, g1) = r0, r1
    _spikes_equal(s1, s0, f"{what} spikes")
    assert s1.dtype == s0.dtype == dtype
    _close(c1, c0, st, f"{what} final c")
    _close(v1, v0, st, f"{what} final v")
    _close(g1, g0, gt, f"{what} grad x")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("sname,alpha", [("Rect", 1.0), ("Sigmoid", 4.0), ("ATan", 2.0)])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("v_reset", [0.0, -0.2, None], ids=["hard0", "hard-0.2", "soft"])
def test_cuba_lif_vs_spikingjelly(sj, v_reset, detach_reset, sname, alpha, step_mode, dtype, backend):
    ref, mine = _cuba_pair(sj, v_reset, detach_reset, sname, alpha, step_mode, backend)
    x = _cuba_input((12, 3, 7), dtype, seed=1)
    r0 = _run_cuba(ref, x, step_mode)
    assert 0.05 < float(r0[0].mean()) < 0.95
    _check_cuba(r0, _run_cuba(mine, x, step_mode), dtype, f"{v_reset}/{detach_reset}/{sname}/{step_mode}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sname,alpha", SJ_SURROGATES[3:])
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
def test_cuba_lif_more_surrogates(sj, v_reset, sname, alpha, dtype, backend):
    ref, mine = _cuba_pair(sj, v_reset, False, sname, alpha, "m", backend, c_decay=0.4, v_decay=0.9, v_threshold=0.6)
    x = _cuba_input((10, 4, 5), dtype, seed=2)
    _check_cuba(_run_cuba(ref, x, "m"), _run_cuba(mine, x, "m"), dtype, sname)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_cuba_lif_defaults(sj, step_mode, dtype, backend):
    """SpikingJelly's defaults (c_decay 0.5, v_decay 0.75, v_threshold 0.5, v_reset 0, Rect())
    are snn_cuda's."""
    neuron, _, _ = sj
    ref = neuron.CUBALIFNode()
    ref.step_mode = step_mode
    mine = snn_cuda.CUBALIF(step_mode=step_mode, backend=backend)
    for n in ("c_decay", "v_decay", "v_threshold", "v_reset", "detach_reset"):
        assert getattr(mine, n) == getattr(ref, n), n
    x = _cuba_input((9, 2, 6), dtype, seed=3)
    _check_cuba(_run_cuba(ref, x, step_mode), _run_cuba(mine, x, step_mode), dtype, "defaults")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
def test_cuba_lif_state_carried_and_reset(sj, v_reset, dtype, backend):
    """Calls without a reset carry c and v on (multi-step chunks, single steps); reset_net
    restarts both; the v sequence equals SpikingJelly's store_v_seq."""
    _, _, sjf = sj
    x = _cuba_input((14, 3, 5), dtype, seed=4)
    st, gt = _cuba_tols(dtype)
    ref, mine = _cuba_pair(sj, v_reset, False, "ATan", 2.0, "m", backend, my_kw=dict(return_states=True))
    ref.store_v_seq = True
    # chunks, state carried: spikes and the v sequence
    xs = torch.split(x, [5, 2, 7])
    s_ref = torch.cat([ref(p) for p in xs])
    vseq_ref = ref.v_seq  # SpikingJelly keeps the last call's sequence
    outs = [mine(p) for p in xs]
    s_mine = torch.cat([o[0] for o in outs])
    _spikes_equal(s_mine, s_ref, "chunked spikes")
    _close(outs[-1][2], vseq_ref, st, "v_seq of the last chunk")
    _close(outs[-1][1][-1], ref.c, st, "c_seq[-1] == final c")
    _close(mine.v, ref.v, st, "final v")
    # the same run whole, after a reset (both restart at c = 0, v = v_reset)
    sjf.reset_net(ref)
    snn_cuda.functional.reset_net(mine)
    assert mine.c == 0.0 and mine.v == (0.0 if v_reset is None else v_reset)
    _spikes_equal(mine(x)[0], ref(x), "whole after reset")
    _close(mine.v, ref.v, st, "final v after reset")
    # single steps carry the state from call to call, gradients included
    sjf.reset_net(ref)
    snn_cuda.functional.reset_net(mine)
    ref.step_mode = mine.step_mode = "s"
    ref.store_v_seq = False
    mine.return_states = False
    _check_cuba(_run_cuba(ref, x, "s"), _run_cuba(mine, x, "s"), dtype, "single steps")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("detach_reset", [False, True])
def test_cuba_lif_detach_reset_set_as_attribute(sj, detach_reset, backend):
    """detach_reset (and the step mode) switched on an existing layer, as SpikingJelly 2.0's
    CUBALIFNode requires, change both alike."""
    neuron, sjs, _ = sj
    ref = neuron.CUBALIFNode(v_reset=None, surrogate_function=sjs.Sigmoid(alpha=4.0))
    mine = snn_cuda.CUBALIF(v_reset=None, surrogate=sg.Sigmoid(4.0), backend=backend, step_mode="s")
    ref.step_mode = "m"
    mine.step_mode = "m"
    ref.detach_reset = detach_reset
    mine.detach_reset = detach_reset
    x = _cuba_input((10, 3, 4), F64, seed=5)
    r0 = _run_cuba(ref, x, "m")
    r1 = _run_cuba(mine, x, "m")
    _check_cuba(r0, r1, F64, f"detach_reset={detach_reset}")
    # and the flag matters here (the reset's gradient path differs)
    ref2 = neuron.CUBALIFNode(v_reset=None, surrogate_function=sjs.Sigmoid(alpha=4.0))
    ref2.step_mode = "m"
    ref2.detach_reset = not detach_reset
    assert not torch.allclose(_run_cuba(ref2, x, "m")[3], r1[3])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
def test_cuba_lif_initial_states_gradients(sj, v_reset, step_mode, dtype, backend):
    """Initial c and v set on the layer (as SpikingJelly's memories): same run, and the same
    gradients w.r.t. those initial states."""
    x = _cuba_input((8, 3, 5), dtype, seed=6)
    g = torch.Generator().manual_seed(7)
    c0 = (torch.rand((3, 5), generator=g, dtype=F64) * 0.4).to(dtype)
    v0 = (torch.rand((3, 5), generator=g, dtype=F64) * 0.6 - 0.1).to(dtype)
    results = []
    for node in _cuba_pair(sj, v_reset, False, "PiecewiseExp", 1.5, step_mode, backend):
        c, v = c0.clone().requires_grad_(), v0.clone().requires_grad_()
        node.c, node.v = c, v
        s, cl, vl, gx = _run_cuba(node, x, step_mode)
        results.append(((s, cl, vl, gx), c.grad, v.grad))
    (r0, gc0, gv0), (r1, gc1, gv1) = results
    _check_cuba(r0, r1, dtype, "initial states")
    gt = _cuba_tols(dtype)[1]
    _close(gc1, gc0, gt, "grad c0")
    _close(gv1, gv0, gt, "grad v0")
