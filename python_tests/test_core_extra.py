"""Save-mode bit parity, the synaptic current op, and the stale-build error."""

import pytest
import torch

import snn_cuda
from snn_cuda import _ext, ops
from snn_cuda import surrogate as sg

pytestmark = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="no compiled CPU kernels")


@pytest.fixture
def save_mode():
    old = dict(ops.DEFAULT_SAVE_MODE)
    yield ops.DEFAULT_SAVE_MODE
    ops.DEFAULT_SAVE_MODE.clear()
    ops.DEFAULT_SAVE_MODE.update(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "layer",
    [
        lambda: snn_cuda.LIF(tau=1.7, surrogate=sg.Erf(), backend="fused", store_v_seq=True),
        lambda: snn_cuda.LIF(tau=3.0, decay_input=False, v_reset=None, backend="fused", store_v_seq=True),
        lambda: snn_cuda.IF(
            v_floor=-0.2, detach_reset=True, surrogate=sg.FastSigmoid(), backend="fused", store_v_seq=True
        ),
    ],
)
@pytest.mark.parametrize("T", [1, 8, 21])
def test_checkpoint_backward_is_bitwise_the_save_h_backward(save_mode, layer, dtype, T):
    # The recompute mode rebuilds every charged potential from x and a
    # checkpoint with the forward's own step function: if it is bit-exact the
    # two backward passes give bitwise identical gradients.
    torch.manual_seed(T)
    x = (torch.randn(T, 3, 517) + 0.6).to(dtype)
    v0 = torch.rand(3, 517, dtype=ops.state_dtype(dtype))
    gs = torch.randn(T, 3, 517).to(dtype)
    gv = torch.randn(T, 3, 517, dtype=ops.state_dtype(dtype))
    grads = []
    for mode in (ops.SAVE_H, ops.SAVE_CKPT):
        save_mode["cpu"] = mode
        m = layer()
        xi = x.clone().requires_grad_()
        m.v = v0.clone().requires_grad_()
        v_init = m.v
        s = m(xi)
        torch.autograd.backward([s, m.v_seq, m.v], [gs, gv, torch.ones_like(m.v)])
        grads.append((s, xi.grad, v_init.grad))
    (s1, gx1, gv1), (s2, gx2, gv2) = grads
    assert torch.equal(s1, s2)
    assert torch.equal(gx1, gx2)
    assert torch.equal(gv1, gv2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_synaptic_current_matches_reference(dtype):
    torch.manual_seed(1)
    x = torch.randn(13, 4, 33).to(dtype)
    c_init = torch.randn(4, 33, dtype=ops.state_dtype(dtype))
    g = torch.randn(13, 4, 33, dtype=ops.state_dtype(dtype))
    out = {}
    for backend in ("fused", "torch"):
        m = snn_cuda.SynapticCurrent(decay=0.36787944, backend=backend)
        m.c = c_init.clone().requires_grad_()
        c0 = m.c
        xi = x.clone().requires_grad_()
        c = m(xi)
        (c * g).sum().backward()
        out[backend] = (c, m.c, xi.grad, c0.grad)
    f, r = out["fused"], out["torch"]
    assert torch.equal(f[0], r[0]) and torch.equal(f[1], r[1])
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype != torch.float16 else {"atol": 2e-3, "rtol": 2e-3}
    torch.testing.assert_close(f[2], r[2], **tol)
    torch.testing.assert_close(f[3], r[3], **tol)


def test_synaptic_current_single_step_equals_multi_step():
    x = torch.randn(6, 2, 5)
    multi = snn_cuda.SynapticCurrent(0.5, backend="fused")(x)
    single = snn_cuda.SynapticCurrent(0.5, step_mode="s", backend="fused")
    steps = torch.stack([single(xt) for xt in x.unbind(0)])
    assert torch.equal(multi, steps)
    with pytest.raises(ValueError, match="decay"):
        snn_cuda.SynapticCurrent(1.5)


def test_stale_build_names_both_versions(monkeypatch):
    monkeypatch.setattr(_ext, "build", {"torch_version": "1.0.0+old"})
    monkeypatch.setattr(_ext, "loaded", False)
    monkeypatch.setattr(_ext, "load_error", None)
    _ext._load()
    assert not _ext.loaded
    msg = _ext.load_error
    assert "1.0.0+old" in msg and torch.__version__ in msg and "pip install" in msg
    assert _ext.unavailable_reason("cpu") == msg


def test_large_cpu_outputs_are_ordinary_resizable_tensors():
    # Outputs >= 1 MB come from the CPU block cache; they must behave like
    # tensors from torch's own allocator (resize_, storage reuse).
    y = snn_cuda.LIF(backend="fused")(torch.randn(16, 40000))
    assert y.untyped_storage().nbytes() >= 1 << 20
    y.resize_(32, 40000)
    y.fill_(1.0)
    assert y.shape == (32, 40000) and float(y.sum()) == 32 * 40000


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("const", [False, True])
def test_leaky_without_membrane_output(reset, const):
    # return_mem=False: spikes only, the backward rebuilds U from checkpoints;
    # values and gradients equal the membrane-returning layer's bit for bit.
    torch.manual_seed(2)
    T = 19
    x = torch.randn(4, 300) if const else torch.randn(T, 4, 300)
    g = torch.randn(T, 4, 300)
    u_init = torch.rand(4, 300)
    res = []
    for return_mem in (True, False):
        m = snn_cuda.Leaky(beta=0.8, reset_mechanism=reset, backend="fused", return_mem=return_mem)
        m.mem = u_init.clone().requires_grad_()
        u0 = m.mem
        xi = x.clone().requires_grad_()
        out = m(xi, T=T) if const else m(xi)
        s = out[0] if return_mem else out
        (s * g).sum().backward()
        res.append((s, xi.grad, u0.grad, m.mem))
    for a, b in zip(*res):
        assert torch.equal(a, b)
    ref = snn_cuda.Leaky(beta=0.8, reset_mechanism=reset, backend="torch", return_mem=False)
    ref.mem = u_init.clone()
    assert torch.equal(ref(x, T=T) if const else ref(x), res[1][0])


def test_backward_storage_per_layer():
    x = torch.randn(11, 3, 40) + 0.5
    grads = []
    for storage in ("h", "checkpoint"):
        m = snn_cuda.IF(v_floor=0.0, backend="fused")
        m.backward_storage = storage
        xi = x.clone().requires_grad_()
        m(xi).sum().backward()
        grads.append(xi.grad)
    assert torch.equal(grads[0], grads[1])
    m.backward_storage = "bogus"
    with pytest.raises(ValueError, match="backward_storage"):
        m(x.clone().requires_grad_())


def test_pyproject_ships_every_python_package():
    """pyproject.toml lists the packages explicitly, so a subpackage it forgets is missing from
    the wheel (import fails outside the checkout) while every test in the checkout passes."""
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not a source checkout")
    listed = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "snn_cuda").rglob("__init__.py")}
    assert listed == found, f"pyproject.toml [tool.setuptools] packages: listed {sorted(listed)}, found {sorted(found)}"
