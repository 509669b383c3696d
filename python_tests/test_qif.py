"""QIF (SpikingJelly 2.0 `QIFNode`) on the fused kernels against its pure-PyTorch reference:
forward bit for bit, gradients within the association-order bound, for every dtype, reset,
detach_reset and surrogate; float64 gradcheck, opcheck, torch.compile, chunked == whole, single
step == multi-step, constant input, the errors; parity with SpikingJelly's own `QIFNode`; the
CuPy path (fake CUDA tensors); and a planted bug in csrc/kernels/models/qif.h that the host
emulation of the CUDA kernels catches."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg
from snn_cuda.functional import reset_net
from snn_cuda.model_ops import MODELS, model_multistep, pack_params
from snn_cuda.reference import qif_reference

from testing import ALL_DEVICES, DTYPES, SURROGATES, SURROGATE_IDS, assert_equal, assert_grad_close, dtype_id

F64 = torch.float64
DECL = MODELS["qif"]

# (id, constructor kwargs): the inputs below cross the threshold at some steps in every case.
CASES = [
    ("hard", dict()),
    ("hard-detach", dict(detach_reset=True)),
    ("soft", dict(v_reset=None)),
    ("soft-detach", dict(v_reset=None, detach_reset=True)),
]
OTHER = dict(tau=3.0, v_c=0.6, a0=0.7, v_threshold=0.9, v_rest=-0.05, v_reset=-0.2)


def inputs(shape, dtype, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=F64) * 0.8 + 0.6).to(dtype).to(device)


def make(backend, **kw):
    return snn_cuda.QIF(backend=backend, return_states=True, **kw)


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


def _check_pair(kw, x, cid, dtype):
    fused, ref = make("fused", **kw), make("torch", **kw)
    with torch.no_grad():
        up = upstream(ref(x))
    ref.reset()
    of, gf = run(fused, x, up)
    orf, gr = run(ref, x, up)
    assert 0 < float(orf[0].float().mean()) < 1, f"{cid}: the inputs never (or always) cross the threshold"
    assert torch.isfinite(orf[1]).all(), f"{cid}: the membrane overflowed (inputs too strong)"
    assert_equal(of[0], orf[0], f"{cid} spikes")
    assert_equal(of[1], orf[1], f"{cid} v_seq")
    assert_equal(fused.v, ref.v, f"{cid} final v")
    assert_grad_close(gf, gr, dtype, f"{cid} grad x")


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=SURROGATE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("cid,kw", CASES, ids=[c[0] for c in CASES])
def test_matches_reference(cid, kw, dtype, surrogate, device):
    x = inputs((19, 3, 37), dtype, device)
    _check_pair(dict(kw, surrogate=surrogate), x, f"{cid} {surrogate!r}", dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=dtype_id)
@pytest.mark.parametrize("cid,kw", CASES, ids=[c[0] for c in CASES])
def test_matches_reference_other_parameters(cid, kw, dtype):
    kw = dict(OTHER, **kw)
    _check_pair(kw, inputs((23, 4, 29), dtype, seed=3), f"{cid} other", dtype)


def _gradcheck_fn(variant, T=-1, **kw):
    def fn(x, params, state0):
        _, seq, last = model_multistep("qif", x, params, state0, variant=variant, T=T, return_states=True, **kw)
        return seq, last

    return fn


@pytest.mark.parametrize("device", ALL_DEVICES)
@pytest.mark.parametrize("variant", [0, 1], ids=DECL.variants)
def test_gradcheck(variant, device):
    """float64 gradcheck of x and the initial state through the state outputs, the quadratic
    term included; Rect's derivative is exactly 0 away from the (high) threshold, so the state
    outputs are smooth there."""
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(12, 3, 2, generator=g, dtype=F64) * 0.4).to(device).requires_grad_(True)
    params = pack_params([2.5, 0.9, -0.05, 0.7, 20.0, -0.1], (3, 2), F64, device)
    s0 = (torch.rand(1, 3, 2, generator=g, dtype=F64) * 0.6 - 0.2).to(device).requires_grad_(True)
    fn = _gradcheck_fn(variant, surrogate_id=sg.Rect.kind_id, surrogate_param=1.0)
    assert torch.autograd.gradcheck(fn, (x, params, s0), eps=1e-6, atol=1e-9, rtol=1e-7)
    fn = _gradcheck_fn(variant, T=7, surrogate_id=sg.Rect.kind_id, surrogate_param=1.0)
    assert torch.autograd.gradcheck(fn, (x[0].detach().requires_grad_(True), params, s0), eps=1e-6, atol=1e-9)


def test_gradcheck_reference_through_spikes():
    """The surrogate path of the fused backward equals autograd through the reference (float64,
    ATan), the spikes' and the reset's gradients included, at a threshold the inputs cross."""
    _check_pair(dict(surrogate=sg.ATan(), v_threshold=0.7), inputs((15, 2, 11), F64, seed=4), "atan", F64)


def _op_args(x, variant, *, T=-1, state0=True, return_states=True, detach=False):
    rest = tuple(x.shape[1:]) if T < 0 else tuple(x.shape)
    sdt = F64 if x.dtype == F64 else torch.float32
    params = pack_params([2.0, 1.0, 0.0, 0.8, 0.5, -0.1], rest, sdt, x.device)
    s0 = (torch.randn(1, *rest, dtype=sdt, device=x.device) * 0.3) if state0 else None
    return (x, params, s0, T, DECL.id, variant, sg.Sigmoid.kind_id, 4.0, detach, return_states, True)


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize(
    "variant,T,state0,return_states,detach",
    [(0, -1, True, True, False), (1, 5, False, False, True), (1, -1, True, True, False)],
)
def test_opcheck(variant, T, state0, return_states, detach, dtype):
    x = torch.randn(9, 2, 6, dtype=dtype) + 0.5 if T < 0 else torch.randn(2, 6, dtype=dtype) + 0.5
    args = _op_args(x, variant, T=T, state0=state0, return_states=return_states, detach=detach)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, args)
    spikes, seq, last, ckpt = torch.ops.snn_cuda.model_forward(*args)
    bargs = (
        torch.randn_like(spikes),
        torch.randn_like(seq) if return_states else None,
        torch.randn_like(last),
        *args[:3],
        ckpt,
        *args[3:9],
        False,
    )
    torch.library.opcheck(torch.ops.snn_cuda.model_backward.default, bargs)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(12, 16)
        self.qif = snn_cuda.QIF(v_threshold=0.5)
        self.fc2 = torch.nn.Linear(16, 8)
        self.qif2 = snn_cuda.QIF(v_reset=None, surrogate=sg.ATan())

    def forward(self, x):
        return self.qif2(self.fc2(self.qif(self.fc1(x))) * 3).mean(0)


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
    assert out_e.abs().sum() > 0
    compiled = torch.compile(net, fullgraph=True, dynamic=False)
    for _ in range(2):
        out_c, grads_c = step(compiled)
        torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_c, grads_e):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cid,kw", CASES, ids=[c[0] for c in CASES])
def test_chunked_equals_whole(cid, kw):
    x = inputs((23, 3, 11), torch.float32, seed=8)
    ow = make("fused", **kw)(x)
    part = make("fused", **kw)
    pieces = [part(c) for c in x.split([5, 9, 9])]
    for i in range(2):
        assert_equal(torch.cat([p[i] for p in pieces]), ow[i], f"{cid} output {i}")


@pytest.mark.parametrize("cid,kw", CASES, ids=[c[0] for c in CASES])
def test_single_step_equals_multi_step(cid, kw):
    x = inputs((9, 2, 13), torch.float32, seed=11)
    multi = make("fused", **kw)(x)
    single = make("fused", step_mode="s", **kw)
    steps = [single(xt) for xt in x]
    for i in range(2):
        assert_equal(torch.stack([s[i] for s in steps]), multi[i], f"{cid} output {i}")
    ref = make("torch", step_mode="s", **kw)
    for xt, s in zip(x, steps):
        r = ref(xt)
        assert_equal(r[0], s[0], f"{cid} reference single step")


@pytest.mark.parametrize("cid,kw", CASES, ids=[c[0] for c in CASES])
def test_constant_input(cid, kw):
    x = inputs((3, 17), F64, seed=13) * 0.5
    a, b, r = make("fused", **kw), make("fused", **kw), make("torch", **kw)
    xa, xb, xr = (x.clone().requires_grad_(True) for _ in range(3))
    oa = a(xa, T=10)
    ob = b(xb.unsqueeze(0).expand(10, *x.shape))
    orf = r(xr, T=10)
    up = upstream(ob)
    for i in range(2):
        assert_equal(oa[i], ob[i], f"{cid} output {i}")
        assert_equal(oa[i], orf[i], f"{cid} reference output {i}")
    grads = [
        torch.autograd.grad(sum((o * u).sum() for o, u in zip(out, up)), xi)[0]
        for out, xi in ((oa, xa), (ob, xb), (orf, xr))
    ]
    assert_grad_close(grads[0], grads[1], F64, cid)
    assert_grad_close(grads[0], grads[2], F64, f"{cid} reference")


def test_state_carries_and_resets():
    """.v is the final membrane, the next call starts from it, reset() restores v_reset."""
    x = inputs((8, 2, 5), torch.float32, seed=14)
    layer = snn_cuda.QIF()
    assert layer.v == -0.1
    s1 = layer(x)
    v1 = layer.v.clone()
    s2 = layer(x)
    ref = snn_cuda.QIF(backend="torch")
    r1, r2 = ref(x), ref(x)
    assert_equal(s1, r1)
    assert_equal(s2, r2)
    assert_equal(layer.v, ref.v)
    _, vs, _ = qif_reference(x, v0=None)
    assert_equal(v1, vs[-1])
    reset_net(layer)
    assert layer.v == -0.1
    assert snn_cuda.QIF(v_reset=None).v == 0.0


def test_return_states_false_equals_states():
    x = inputs((21, 4, 9), torch.float32, seed=15)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    sa = snn_cuda.QIF()(xa)
    sb, _ = snn_cuda.QIF(return_states=True)(xb)
    assert isinstance(sa, torch.Tensor)
    assert_equal(sa, sb)
    up = torch.randn_like(sa)
    (ga,) = torch.autograd.grad((sa * up).sum(), xa)
    (gb,) = torch.autograd.grad((sb * up).sum(), xb)
    assert_equal(ga, gb)


def test_meta_shapes():
    x = torch.empty(7, 2, 5, device="meta")
    spk, v = snn_cuda.QIF(return_states=True)(x)
    assert spk.shape == v.shape == x.shape and v.device.type == "meta"


def test_exported():
    assert snn_cuda.QIF is snn_cuda.multistate.QIF and "QIF" in snn_cuda.__all__
    assert snn_cuda.reference.qif_reference is qif_reference
    assert DECL.states == ("v",) and not DECL.param_grads


def test_errors():
    with pytest.raises(ValueError, match="tau"):
        snn_cuda.QIF(tau=1.0)
    with pytest.raises(ValueError, match="tau"):
        snn_cuda.QIF(tau=float("nan"))
    with pytest.raises(ValueError, match="a0"):
        snn_cuda.QIF(a0=0.0)
    with pytest.raises(TypeError, match="v_c"):
        snn_cuda.QIF(v_c="0.8")
    with pytest.raises(ValueError, match="v_threshold must be > v_reset"):
        snn_cuda.QIF(v_threshold=-0.2)
    with pytest.raises(ValueError, match="v_rest must be >= v_reset"):
        snn_cuda.QIF(v_rest=-0.5)
    snn_cuda.QIF(v_threshold=-0.2, v_rest=-0.5, v_reset=None)  # soft reset: no such constraint
    with pytest.raises(ValueError, match="step_mode"):
        snn_cuda.QIF(step_mode="x")
    with pytest.raises(ValueError, match="v_rest"):
        qif_reference(torch.zeros(2, 3), v_rest=float("inf"))
    layer = snn_cuda.QIF(step_mode="s")
    layer(torch.randn(2, 3))
    with pytest.raises(ValueError, match="membrane v"):
        layer(torch.randn(4, 3))
    with pytest.raises(RuntimeError, match="param"):
        params = pack_params([2.0, 1.0, 0.0, 0.8, 1.0, -0.1], (), torch.float32, "cpu").requires_grad_(True)
        model_multistep("qif", torch.randn(3, 2, requires_grad=True), params, None, variant=0)


# ------------------------------------------------------------------------------------------
# parity with SpikingJelly 2.0 QIFNode itself
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=dtype_id)
@pytest.mark.parametrize("sgname", ["Sigmoid", "ATan"])
@pytest.mark.parametrize(
    "cid,kw", CASES + [("other-hard", OTHER), ("other-soft", dict(OTHER, v_reset=None))], ids=lambda c: str(c)
)
def test_spikingjelly_parity(cid, kw, sgname, dtype):
    """Multi-step SpikingJelly QIFNode (its registered CPU path, or its reference formulas)
    against the fused layer: spikes equal, v and the input gradient within fp tolerance."""
    sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")
    sj_sg = pytest.importorskip("spikingjelly.activation_based.surrogate")
    kw = dict(kw, tau=float(kw.get("tau", 2.0)))  # QIFNode asserts a float tau
    sj = sj_neuron.QIFNode(surrogate_function=getattr(sj_sg, sgname)(), step_mode="m", **kw).to(dtype)
    ours = snn_cuda.QIF(surrogate=getattr(sg, sgname)(), backend="fused", **kw)
    # Milder inputs than elsewhere: 24 steps of the default soft reset's quadratic growth from
    # the stronger ones overflow (in both implementations).
    x = (inputs((24, 4, 33), F64, seed=21) * 0.625 + 0.025).to(dtype)
    xs, xo = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ss, so = sj(xs), ours(xo)
    assert 0 < float(ss.detach().mean()) < 1 and torch.isfinite(sj.v).all()
    assert_equal(so, ss, f"{cid} spikes")
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.v, sj.v.to(ours.v.dtype), **tol)
    up = torch.randn(ss.shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    (gs,) = torch.autograd.grad((ss * up).sum() + sj.v.sum(), xs)
    (go,) = torch.autograd.grad((so * up).sum() + ours.v.sum(), xo)
    assert_grad_close(go, gs, dtype, f"{cid} grad x vs SpikingJelly")


# ------------------------------------------------------------------------------------------
# the CuPy path (no compiled CUDA kernels), as test_multistate.py checks the other models
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["auto", "fused", "cupy"])
def test_cupy_path_serves_qif(backend, monkeypatch):
    """With the CuPy kernels standing in for the compiled CUDA ones (simulated), QIF runs the
    fused op on (fake) CUDA tensors without a warning or an error. test_cupy.py runs the model
    ops of every declared model, QIF included, through the CuPy path with the kernels emulated."""
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
                for kw in ({}, {"v_reset": None, "return_states": True}):
                    x = torch.empty(4, 2, 3, requires_grad=True)
                    out = snn_cuda.QIF(backend=backend, **kw)(x)
                    spk = out[0] if isinstance(out, tuple) else out
                    assert isinstance(spk, FakeTensor) and spk.shape == x.shape and spk.device.type == "cuda"
                    assert spk.requires_grad
        assert cb.registered() == "CUDA"
    finally:
        if was is None:
            cb.unregister()


# ------------------------------------------------------------------------------------------
# the host emulation catches planted bugs in qif.h (test_emulation_models.py's machinery)
# ------------------------------------------------------------------------------------------
MUTANTS = {
    # The charge multiplied by 1/tau instead of divided by tau: another rounding of h_t, so the
    # forward is no longer SpikingJelly's (bit for bit).
    "qif_reciprocal_tau": (
        "models/qif.h",
        "charge",
        r"\) / p\[0\];",
        ") * (S(1) / p[0]);",
        r"^FAIL .*model=qif.*: (spikes|state_last|state_seq|ckpt)\[",
    ),
    # dh/dv without the (v - v_c) half of the quadratic term's derivative.
    "qif_quadratic_grad": (
        "models/qif.h",
        "backward",
        r"\(\(v - p\[2\]\) \+ \(v - p\[3\]\)\)",
        "(v - p[2])",
        r"^FAIL .*model=qif.*: grad_",
    ),
}


def te_models():
    return pytest.importorskip("test_emulation_models")


@pytest.fixture(scope="module")
def qif_mutant_results():
    """Each mutant and the pristine kernels built as the quick driver (-DEMU_QUICK),
    concurrently, then run. Values: (returncode or "build-failed", output)."""
    te = pytest.importorskip("test_emulation")
    tem = te_models()
    gxx = te._gxx()
    tmp_root = Path(tempfile.mkdtemp(prefix="snn_emu_qif_mut_"))
    procs, results = {}, {}
    try:
        for name in [tem.PRISTINE, *MUTANTS]:
            root = tmp_root / name
            shutil.copytree(te.KERNELS, root / "kernels")
            if name != tem.PRISTINE:
                fname, func, pattern, repl, _sig = MUTANTS[name]
                path = root / "kernels" / fname
                original = path.read_text()
                mutated, _count = te._apply_mutation(original, func, pattern, repl)
                path.write_text(mutated)
                assert mutated != original, name
            cmd = tem._compile_cmd(gxx, root, root / "emu", extra=("-DEMU_QUICK",))
            procs[name] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), cmd)
        for name, (proc, cmd) in procs.items():
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0:
                results[name] = ("build-failed", " ".join(cmd) + "\n" + out)
                continue
            r = te._run(tmp_root / name / "emu", timeout=600)
            results[name] = (r.returncode, r.stdout + r.stderr)
        yield te, results
    finally:
        for proc, _cmd in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp_root, ignore_errors=True)


@pytest.mark.emulation
def test_qif_pristine_quick_emulation_passes(qif_mutant_results):
    te, results = qif_mutant_results
    rc, out = results["pristine"]
    assert rc != "build-failed", out[-6000:]
    m = te.SUMMARY_RE.search(out)
    assert rc == 0 and m and int(m.group(2)) == 0, out[-6000:]
    # The quick matrix's case count, from the model list: QIF's variants ran.
    assert int(m.group(1)) >= te_models().MIN_QUICK_CASES


@pytest.mark.emulation
@pytest.mark.parametrize("name", list(MUTANTS))
def test_qif_mutant_is_caught(qif_mutant_results, name):
    _te, results = qif_mutant_results
    rc, out = results[name]
    assert rc != "build-failed", f"mutant {name} did not compile (a build error proves nothing):\n{out[-4000:]}"
    assert rc != 0, f"mutant {name} was NOT caught:\n{out[-4000:]}"
    signature = MUTANTS[name][4]
    hit = re.search(signature, out, re.M)
    assert hit, f"mutant {name} failed (rc={rc}) but not the expected way ({signature!r}):\n{out[-4000:]}"
