"""The declared multi-state models (Synaptic, CUBALIF) on the fused kernels against the
pure-PyTorch reference: forward bit for bit, gradients within the association-order bound,
float64 gradcheck, opcheck, torch.compile, chunked == whole, single step == multi-step, and
the errors. Peer parity (snnTorch, SpikingJelly) is in test_multistate_peers.py."""

from __future__ import annotations

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda.functional import reset_net
from snn_cuda.model_ops import MODELS, model_multistep, pack_params

from testing import ALL_DEVICES, DTYPES, SURROGATES, assert_equal, assert_grad_close, dtype_id

F64 = torch.float64

# (id, constructor kwargs) per model; thresholds sit inside the input range so that every
# reset path runs.
SYN_CASES = [
    ("syn-subtract", dict(alpha=0.85, beta=0.9, threshold=0.7, reset_mechanism="subtract")),
    ("syn-zero", dict(alpha=0.6, beta=0.95, threshold=0.5, reset_mechanism="zero")),
    ("syn-none", dict(alpha=0.9, beta=0.8, threshold=1.0, reset_mechanism="none")),
]
CUBA_CASES = [
    ("cuba-hard", dict()),
    ("cuba-hard-vr", dict(v_reset=-0.1, c_decay=0.3, v_decay=0.9)),
    ("cuba-hard-detach", dict(detach_reset=True)),
    ("cuba-soft", dict(v_reset=None)),
    ("cuba-soft-detach", dict(v_reset=None, detach_reset=True, v_threshold=0.8)),
]
CASES = [("synaptic", i, kw) for i, kw in SYN_CASES] + [("cuba", i, kw) for i, kw in CUBA_CASES]


def make(kind, backend, **kw):
    if kind == "synaptic":
        return snn_cuda.Synaptic(backend=backend, **kw)
    return snn_cuda.CUBALIF(backend=backend, return_states=True, **kw)


def inputs(shape, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=F64) * 0.6 + 0.25).to(dtype).to(device)


def run(layer, x, up):
    """Forward, then the gradient of sum(up_i * out_i) with respect to x."""
    x = x.detach().requires_grad_(True)
    outs = layer(x)
    loss = sum((o.float() * u).sum() for o, u in zip(outs, up))
    (gx,) = torch.autograd.grad(loss, x)
    return [o.detach() for o in outs], gx


def upstream(outs, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=g).to(o.device) for o in outs]


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("kind,cid,kw", CASES, ids=[c[1] for c in CASES])
def test_matches_reference(kind, cid, kw, dtype, device):
    x = inputs((19, 3, 37), dtype, device)
    fused, ref = make(kind, "fused", **kw), make(kind, "torch", **kw)
    with torch.no_grad():
        up = upstream(ref(x))
    ref.reset()
    of, gf = run(fused, x, up)
    orf, gr = run(ref, x, up)
    for a, b, n in zip(of, orf, ("spikes", "state 0", "state 1")):
        assert_equal(a, b, f"{cid} {n}")
    for n in ("syn", "mem") if kind == "synaptic" else ("c", "v"):
        assert_equal(getattr(fused, n), getattr(ref, n), f"{cid} final {n}")
    assert_grad_close(gf, gr, dtype, f"{cid} grad x")


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("kind,cid,kw", [CASES[0], CASES[3]], ids=["syn-subtract", "cuba-hard"])
def test_every_surrogate(kind, cid, kw, surrogate):
    x = inputs((13, 2, 29), torch.float64, "cpu", seed=2)
    fused, ref = make(kind, "fused", surrogate=surrogate, **kw), make(kind, "torch", surrogate=surrogate, **kw)
    with torch.no_grad():
        up = upstream(ref(x))
    ref.reset()
    of, gf = run(fused, x, up)
    orf, gr = run(ref, x, up)
    for a, b in zip(of, orf):
        assert_equal(a, b, cid)
    assert_grad_close(gf, gr, torch.float64, f"{cid} {surrogate!r}")


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_synaptic_learnable(reset, per_neuron, device):
    """Gradients of alpha, beta and threshold (learnable, clamped) from the fused backward's
    per-neuron sums equal autograd through the reference, for x and the initial states too."""
    shape = (5, 7) if per_neuron else None
    grads = []
    for backend in ("fused", "torch"):
        torch.manual_seed(0)
        layer = snn_cuda.Synaptic(
            alpha=0.8,
            beta=0.9,
            threshold=0.6,
            reset_mechanism=reset,
            learn_alpha=True,
            learn_beta=True,
            learn_threshold=True,
            param_shape=shape,
            backend=backend,
        ).to(device)
        with torch.no_grad():
            if per_neuron:
                layer.alpha.uniform_(0.3, 1.2)  # above 1: clamped, no gradient there
                layer.beta.uniform_(0.5, 1.0)
                layer.threshold.uniform_(0.3, 0.9)
        x = inputs((11, 4, 5, 7), F64, device, seed=3).requires_grad_(True)
        syn0 = inputs((4, 5, 7), F64, device, seed=4).requires_grad_(True)
        mem0 = inputs((4, 5, 7), F64, device, seed=6).requires_grad_(True)
        spk, syn, mem = layer(x, syn0, mem0)
        up = upstream((spk, syn, mem), seed=9)
        loss = (spk * up[0]).sum() + (syn * up[1]).sum() + (mem * up[2]).sum()
        params = [layer.alpha, layer.beta, layer.threshold]
        grads.append([o.detach() for o in (spk, syn, mem)] + list(torch.autograd.grad(loss, [x, syn0, mem0, *params])))
    names = ["spikes", "syn", "mem", "x", "syn0", "mem0", "alpha", "beta", "threshold"]
    for a, b, n in zip(grads[0], grads[1], names):
        if n in ("spikes", "syn", "mem"):
            assert_equal(a, b, n)
        else:
            assert_grad_close(a, b, F64, n)


def _gradcheck_fn(name, variant, T=-1, **kw):
    def fn(x, params, state0):
        _, seq, last = model_multistep(name, x, params, state0, variant=variant, T=T, return_states=True, **kw)
        return seq, last

    return fn


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("variant", [0, 1, 2], ids=MODELS["synaptic"].variants)
def test_gradcheck_synaptic(variant, device):
    """float64 gradcheck of x, the parameters and the initial states through the state outputs,
    with the threshold above every membrane (no spike, and the detached reset is 0)."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(10, 2, 3, generator=g, dtype=F64) * 0.2).to(device).requires_grad_(True)
    params = torch.tensor([[0.7, 0.8, 0.9], [0.9, 0.85, 0.6], [20.0, 20.0, 20.0]], dtype=F64, device=device)
    s0 = (torch.rand(2, 2, 3, generator=g, dtype=F64) * 0.2).to(device).requires_grad_(True)
    fn = _gradcheck_fn("synaptic", variant, surrogate_id=sg.ATan.kind_id, surrogate_param=2.0)
    assert torch.autograd.gradcheck(fn, (x, params.requires_grad_(True), s0), eps=1e-6, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("variant", [0, 1], ids=MODELS["cuba_lif"].variants)
def test_gradcheck_cuba_lif(variant, device):
    """Rect's derivative is exactly 0 away from the threshold, so the state outputs are smooth."""
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(12, 3, 2, generator=g, dtype=F64) * 0.2).to(device).requires_grad_(True)
    params = torch.tensor([[0.5], [0.75], [20.0], [0.0]], dtype=F64, device=device)
    s0 = (torch.rand(2, 3, 2, generator=g, dtype=F64) * 0.2).to(device).requires_grad_(True)
    fn = _gradcheck_fn("cuba_lif", variant, surrogate_id=sg.Rect.kind_id, surrogate_param=1.0)
    assert torch.autograd.gradcheck(fn, (x, params, s0), eps=1e-6, atol=1e-9, rtol=1e-7)
    fn = _gradcheck_fn("cuba_lif", variant, T=7, surrogate_id=sg.Rect.kind_id, surrogate_param=1.0)
    assert torch.autograd.gradcheck(fn, (x[0].detach().requires_grad_(True), params, s0), eps=1e-6, atol=1e-9)


def _op_args(name, x, variant, *, T=-1, state0=True, return_states=True, save=True):
    d = MODELS[name]
    rest = tuple(x.shape[1:]) if T < 0 else tuple(x.shape)
    sdt = torch.float64 if x.dtype == F64 else torch.float32
    vals = [0.8, 0.9, 0.5, 0.0][: len(d.params)]
    params = pack_params(vals, rest, sdt, x.device)
    s0 = torch.randn(len(d.states), *rest, dtype=sdt, device=x.device) if state0 else None
    return (x, params, s0, T, d.id, variant, sg.ATan.kind_id, 2.0, False, return_states, save)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize(
    "name,variant,T,state0,return_states",
    [("synaptic", 0, -1, True, True), ("synaptic", 1, 5, False, False), ("cuba_lif", 1, -1, False, True)],
)
def test_opcheck(name, variant, T, state0, return_states, dtype):
    x = torch.randn(9, 2, 6, dtype=dtype) if T < 0 else torch.randn(2, 6, dtype=dtype)
    args = _op_args(name, x, variant, T=T, state0=state0, return_states=return_states)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, args)
    spikes, seq, last, ckpt = torch.ops.snn_cuda.model_forward(*args)
    bargs = (
        torch.randn_like(spikes),
        torch.randn_like(seq) if return_states else None,
        torch.randn_like(last),
        *args[:3],
        ckpt,
        *args[3:9],
        name == "synaptic",
    )
    torch.library.opcheck(torch.ops.snn_cuda.model_backward.default, bargs)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(12, 16)
        self.syn = snn_cuda.Synaptic(alpha=0.8, beta=0.9, learn_beta=True, return_states=False)
        self.fc2 = torch.nn.Linear(16, 8)
        self.cuba = snn_cuda.CUBALIF(v_threshold=0.3)

    def forward(self, x):
        return self.cuba(self.fc2(self.syn(self.fc1(x)))).mean(0)


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(6, 4, 12) * 2

    def step(m):
        net.zero_grad()
        reset_net(net)
        out = m(x)
        (out * torch.arange(8.0)).sum().backward()
        return out.detach(), [p.grad.clone() for p in net.parameters()]

    out_e, grads_e = step(net)
    compiled = torch.compile(net, fullgraph=True, dynamic=False)
    for _ in range(2):
        out_c, grads_c = step(compiled)
        torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_c, grads_e):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind,cid,kw", [CASES[0], CASES[1], CASES[3], CASES[6]], ids=lambda c: str(c))
def test_chunked_equals_whole(kind, cid, kw):
    x = inputs((23, 3, 11), torch.float32, "cpu", seed=8)
    whole = make(kind, "fused", **kw)
    ow = whole(x)
    part = make(kind, "fused", **kw)
    pieces = [part(c) for c in x.split([5, 9, 9])]
    for i in range(3):
        assert_equal(torch.cat([p[i] for p in pieces]), ow[i], f"{cid} output {i}")


@pytest.mark.parametrize("kind,cid,kw", [CASES[0], CASES[1], CASES[4]], ids=lambda c: str(c))
def test_single_step_equals_multi_step(kind, cid, kw):
    x = inputs((9, 2, 13), torch.float32, "cpu", seed=11)
    multi = make(kind, "fused", **kw)(x)
    single = make(kind, "fused", step_mode="s", **kw)
    steps = [single(xt) for xt in x]
    for i in range(3):
        assert_equal(torch.stack([s[i] for s in steps]), multi[i], f"{cid} output {i}")


def test_snntorch_style_loop():
    """spk, syn, mem = layer(x, syn, mem) with syn, mem = layer.reset_mem(), as snnTorch loops do."""
    x = inputs((8, 3, 5), torch.float32, "cpu", seed=12)
    ref = snn_cuda.Synaptic(alpha=0.7, beta=0.9, threshold=0.5)(x)
    layer = snn_cuda.Synaptic(alpha=0.7, beta=0.9, threshold=0.5, step_mode="s")
    syn, mem = layer.reset_mem()
    out = []
    for xt in x:
        spk, syn, mem = layer(xt, syn, mem)
        out.append((spk, syn, mem))
    for i in range(3):
        assert_equal(torch.stack([o[i] for o in out]), ref[i], f"output {i}")


@pytest.mark.parametrize("kind,cid,kw", [CASES[0], CASES[3]], ids=lambda c: str(c))
def test_constant_input(kind, cid, kw):
    x = inputs((3, 17), F64, "cpu", seed=13)
    a, b = make(kind, "fused", **kw), make(kind, "fused", **kw)
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    oa = a(xa, T=10)
    ob = b(xb.unsqueeze(0).expand(10, *x.shape))
    up = upstream(ob)
    for i in range(3):
        assert_equal(oa[i], ob[i], f"{cid} output {i}")
    (ga,) = torch.autograd.grad(sum((o * u).sum() for o, u in zip(oa, up)), xa)
    (gb,) = torch.autograd.grad(sum((o * u).sum() for o, u in zip(ob, up)), xb)
    assert_grad_close(ga, gb, F64, cid)


def test_spikes_only_equals_states():
    """return_states=False: the same spikes and input gradient, no state sequence returned."""
    x = inputs((21, 4, 9), torch.float32, "cpu", seed=14)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa = snn_cuda.Synaptic(alpha=0.8, beta=0.9, threshold=0.6, return_states=False)(xa)
    sb, _, _ = snn_cuda.Synaptic(alpha=0.8, beta=0.9, threshold=0.6)(xb)
    assert isinstance(sa, torch.Tensor)
    assert_equal(sa, sb)
    up = torch.randn_like(sa)
    (ga,) = torch.autograd.grad((sa * up).sum(), xa)
    (gb,) = torch.autograd.grad((sb * up).sum(), xb)
    assert_equal(ga, gb)


def test_meta_shapes():
    x = torch.empty(7, 2, 5, device="meta")
    spk, syn, mem = snn_cuda.Synaptic(alpha=0.5, beta=0.5)(x)
    assert spk.shape == syn.shape == mem.shape == x.shape and syn.device.type == "meta"
    assert snn_cuda.CUBALIF()(x).shape == x.shape


def test_errors():
    with pytest.raises(ValueError, match="alpha"):
        snn_cuda.Synaptic(alpha=1.5, beta=0.5)
    with pytest.raises(ValueError, match="beta"):
        snn_cuda.Synaptic(alpha=0.5, beta=-0.1)
    with pytest.raises(ValueError, match="reset_mechanism"):
        snn_cuda.Synaptic(alpha=0.5, beta=0.5, reset_mechanism="hard")
    with pytest.raises(ValueError, match="c_decay"):
        snn_cuda.CUBALIF(c_decay=float("nan"))
    x = torch.randn(4, 2, 3)
    args = list(_op_args("synaptic", x, 0))
    bad = list(args)
    bad[1] = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="params"):
        torch.ops.snn_cuda.model_forward(*bad)
    bad = list(args)
    bad[5] = 3
    with pytest.raises(ValueError, match="variant"):
        torch.ops.snn_cuda.model_forward(*bad)
    bad = list(args)
    bad[4] = 99
    with pytest.raises(ValueError, match="model"):
        torch.ops.snn_cuda.model_forward(*bad)
    bad = list(args)
    bad[2] = torch.zeros(3, 2, 3)
    with pytest.raises(ValueError, match="state0"):
        torch.ops.snn_cuda.model_forward(*bad)
    bad = list(args)
    bad[6] = 42
    with pytest.raises(ValueError, match="surrogate"):
        torch.ops.snn_cuda.model_forward(*bad)
    layer = snn_cuda.Synaptic(alpha=0.5, beta=0.5, step_mode="s")
    layer(torch.randn(2, 3))
    with pytest.raises(ValueError, match="syn"):
        layer(torch.randn(4, 3))


def test_model_list_is_generated():
    """snn_cuda/_model_list.py is what tools/gen_model_list.py writes from model_list.h."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    tool = root / "tools" / "gen_model_list.py"
    if not tool.exists():
        pytest.skip("tools/ not shipped with this copy")
    r = subprocess.run([sys.executable, str(tool), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", list(MODELS))
def test_every_declared_model_has_its_python_file(name):
    """Each model of the generated list has snn_cuda/models/<name>.py with a layer bound to its
    declaration and a reference loop, and both are exported (snn_cuda, snn_cuda.reference)."""
    import importlib

    mod = importlib.import_module(f"snn_cuda.models.{name}")
    layers = [getattr(mod, n) for n in mod.__all__ if not n.endswith("_reference")]
    refs = [n for n in mod.__all__ if n.endswith("_reference")]
    assert layers and refs, f"snn_cuda/models/{name}.py must export a layer and a *_reference loop"
    for cls in layers:
        assert issubclass(cls, snn_cuda.MemoryModule) and cls._decl is MODELS[name]
        assert getattr(snn_cuda, cls.__name__) is cls and cls.__name__ in snn_cuda.__all__
    for r in refs:
        assert getattr(snn_cuda.reference, r) is getattr(mod, r)
    with pytest.raises(AttributeError):
        snn_cuda.reference.no_such_reference  # noqa: B018


@pytest.mark.parametrize("backend", ["auto", "fused", "cupy"])
def test_cupy_path_serves_the_declared_models(backend, monkeypatch):
    """Where CUDA tensors run the CuPy kernels (no compiled CUDA kernels, CuPy usable: simulated
    here), the declared-model layers run the fused ops too ("auto" without a warning, "fused" and
    "cupy" without an error): the CuPy path registers model_forward / model_backward for the
    CUDA key (their host side is the C++ one, model_prepare_*), and on fake CUDA tensors the ops'
    fake kernels give the shapes. (python_tests/test_cupy.py runs the CuPy implementations,
    forward and backward, on real tensors with the kernels emulated.)"""
    import warnings

    from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

    from snn_cuda import _ext
    from snn_cuda import cupy_backend as cb

    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    monkeypatch.setattr(_ext, "cupy_reason", lambda: "")
    monkeypatch.setattr(_ext, "_cupy_forced_warned", True)
    was = cb.registered()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with FakeTensorMode(allow_non_fake_inputs=False), torch.device("cuda"):
                layers = [
                    snn_cuda.Synaptic(alpha=0.8, beta=0.9, learn_beta=True, backend=backend),
                    snn_cuda.CUBALIF(return_states=True, backend=backend),
                    snn_cuda.AdLIF(3, backend=backend),
                    snn_cuda.ILIF(backend=backend),
                ]
                for layer in layers:
                    x = torch.empty(4, 2, 3, requires_grad=True)
                    out = layer(x)
                    spk = out[0] if isinstance(out, tuple) else out
                    assert isinstance(spk, FakeTensor) and spk.shape == x.shape and spk.device.type == "cuda"
                    assert spk.requires_grad  # the fused op's autograd node (no backward run: the autograd
                    # engine wants a real device for CUDA tensors, even fake ones)
        assert cb.registered() == "CUDA"
        for op in ("model_forward", "model_backward"):
            cuda = next(ln for ln in torch._C._dispatch_dump(f"snn_cuda::{op}").splitlines() if ln.startswith("CUDA:"))
            assert "cupy_backend.py" in cuda, cuda
    finally:
        if was is None:
            cb.unregister()
