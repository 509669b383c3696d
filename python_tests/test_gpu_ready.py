"""GPU readiness without a GPU (issue 20): no host synchronisation in any layer, a graph- and
compile-safe Poisson encoder, and the meta device.

* Every layer and both training nets (lif_fc: PoissonEncoder -> SpikeLinear -> LIF; tutorial5:
  Linear -> NeuronLinear(Leaky, SpikeLinear) -> Leaky) run under
  FakeTensorMode(allow_non_fake_inputs=False) on fake CUDA tensors, built inside the mode: a
  value read (`.item()`, `bool(tensor)`) raises DataDependentOutputException there, as it is
  a blocking device-to-host copy on a real GPU.
* The same on device="meta", forward and backward, with backend="fused" and "auto" (and the
  others): outputs and gradients have the shapes and dtypes of a real CPU run.
* Layers are built under `with torch.device("meta")`, print, and after `to_empty()` and
  `reset_parameters()` equal a layer built on the CPU.
* The lif_fc training step compiles with fullgraph=True (reset_net inside, backward outside)
  and trains; the compiled encoder draws fresh spikes at every call.
* spike_linear's dtype under autocast is its fake kernel's; a parameter on another device than
  the input is named in the error.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import snn_cuda
from snn_cuda import functional, ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import nets  # noqa: E402

pytestmark = pytest.mark.skipif(not snn_cuda.build_info()["extension_loaded"], reason="needs the compiled ops")

N, T, B = 4, 6, 2
CUDA_FUSED = ops.unavailable_reason("cuda") == ""

# name -> (builder, input kind). Learnable, per-neuron and tensor-valued parameters included.
CASES = {
    "lif": (lambda: snn_cuda.LIF(), "seq"),
    "lif-learn-threshold-per-neuron": (lambda: snn_cuda.LIF(learn_threshold=True, param_shape=(N,)), "seq"),
    "lif-const-input": (lambda: snn_cuda.LIF(v_reset=None, store_v_seq=True), "const"),
    "lif-single-step": (lambda: snn_cuda.LIF(step_mode="s"), "step"),
    "if-floor-soft": (lambda: snn_cuda.IF(v_reset=None, v_floor=-1.0), "seq"),
    "plif": (lambda: snn_cuda.ParametricLIF(), "seq"),
    "plif-per-neuron": (lambda: snn_cuda.ParametricLIF(init_tau=3.0, param_shape=(N,), learn_threshold=True), "seq"),
    "leaky": (lambda: snn_cuda.Leaky(beta=0.9), "seq"),
    "leaky-learn": (lambda: snn_cuda.Leaky(beta=0.9, learn_beta=True, learn_threshold=True), "seq"),
    "leaky-tensor-beta": (lambda: snn_cuda.Leaky(beta=torch.linspace(0.5, 0.9, N), threshold=0.7), "seq"),
    "leaky-no-mem": (lambda: snn_cuda.Leaky(beta=0.8, reset_mechanism="zero", return_mem=False), "seq"),
    "leaky-single-step": (lambda: snn_cuda.Leaky(beta=0.8, step_mode="s"), "step"),
    "synaptic-current": (lambda: snn_cuda.SynapticCurrent(0.8), "seq"),
    "synaptic-two-state": (
        lambda: snn_cuda.Synaptic(alpha=0.8, beta=0.9, learn_beta=True, param_shape=(N,)),
        "seq",
    ),
    "synaptic-single-step": (lambda: snn_cuda.Synaptic(alpha=0.8, beta=0.9, step_mode="s"), "step"),
    "cuba-lif": (lambda: snn_cuda.CUBALIF(v_reset=None, return_states=True), "seq"),
    "cuba-lif-const-input": (lambda: snn_cuda.CUBALIF(), "const"),
    "neuron-linear-leaky": (
        lambda: snn_cuda.NeuronLinear(snn_cuda.Leaky(beta=0.9, learn_beta=True), snn_cuda.SpikeLinear(N, 3)),
        "seq",
    ),
    "neuron-linear-plif": (
        lambda: snn_cuda.NeuronLinear(snn_cuda.ParametricLIF(param_shape=(N,)), nn.Linear(N, 3)),
        "seq",
    ),
    "spike-linear-binary": (lambda: snn_cuda.SpikeLinear(N, 3, binary=True), "spikes"),
    "spike-linear": (lambda: snn_cuda.SpikeLinear(N, 3), "seq"),
    "spike-linear-bytes": (lambda: snn_cuda.SpikeLinear(N, 3), "bytes"),
    "seq-to-ann": (lambda: snn_cuda.SeqToANN(nn.Flatten(), snn_cuda.SpikeLinear(N, 3, binary=True)), "spikes"),
    "poisson": (lambda: snn_cuda.PoissonEncoder(5), "rates"),
}
LAYER_BACKENDS = ("auto", "fused", "torch", "cupy")


def _input(kind: str, device, real: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    shape = {"seq": (T, B, N), "const": (B, N), "step": (B, N), "spikes": (T, B, N), "bytes": (T, B, N)}.get(
        kind, (B, N)
    )
    if kind == "bytes":
        x = (torch.rand(shape, generator=g) > 0.5).to(torch.uint8)
    elif kind == "spikes":
        x = (torch.rand(shape, generator=g) > 0.5).float()
    elif kind == "rates":
        x = torch.rand(shape, generator=g)
    else:
        x = torch.randn(shape, generator=g) * 1.5
    if not real:  # inside a fake mode or on meta: no data to copy
        return torch.empty(shape, dtype=x.dtype, device=device)
    return x.to(device)


def _set_backend(m: nn.Module, backend: str) -> None:
    functional.set_backend(m, backend)
    for sub in m.modules():
        if isinstance(sub, snn_cuda.PoissonEncoder):
            sub.backend = {"cupy": "fused"}.get(backend, backend)


def _forward_backward(m: nn.Module, x: torch.Tensor, kind: str, backward: bool = True):
    """Outputs and gradients of one call: ([outputs], x.grad, {param: grad})."""
    if x.is_floating_point() and kind != "rates":
        x.requires_grad_(True)
    out = m(x, T=T) if kind == "const" else m(x)
    outs = list(out) if isinstance(out, tuple) else [out]
    grads = {}
    if backward and any(o.requires_grad for o in outs):
        sum(o.float().sum() for o in outs if o.requires_grad).backward()
        grads = {n: p.grad for n, p in m.named_parameters()}
    return outs, x.grad, grads


def _signature(outs, gx, grads):
    def sig(t):
        return None if t is None else (tuple(t.shape), t.dtype)

    return [sig(o) for o in outs], sig(gx), {n: sig(g) for n, g in grads.items()}


@pytest.fixture(scope="module")
def cpu_signatures():
    """Shapes and dtypes of outputs and gradients of a real CPU run of every case (reference)."""
    out = {}
    for name, (build, kind) in CASES.items():
        torch.manual_seed(0)
        m = build()
        _set_backend(m, "torch")
        out[name] = _signature(*_forward_backward(m, _input(kind, "cpu"), kind))
    return out


# ------------------------------------------------------------------------------------------
# fake CUDA tensors: a value read raises
# ------------------------------------------------------------------------------------------
def _fake_backends():
    # "torch": the reference, which "auto" falls back to where no CUDA kernels exist
    return ["auto", "torch"] + (["fused"] if CUDA_FUSED else [])


@pytest.mark.filterwarnings("ignore:snn_cuda. falling back")
@pytest.mark.parametrize("backend", ["auto", "fused", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_layer_on_fake_cuda(name, backend, cpu_signatures):
    if backend not in _fake_backends():
        pytest.skip("this build has no fused kernels for CUDA (nor a usable CuPy path)")
    build, kind = CASES[name]
    with FakeTensorMode(allow_non_fake_inputs=False), torch.device("cuda"):
        m = build()
        _set_backend(m, backend)
        x = _input(kind, "cuda", real=False)
        # forward only: the autograd engine starts CUDA device threads, which needs a GPU
        outs, _, _ = _forward_backward(m, x, kind, backward=False)
        assert all(isinstance(o, FakeTensor) and o.device.type == "cuda" for o in outs)
        assert _signature(outs, None, {})[0] == cpu_signatures[name][0]


def _lif_fc(T_: int = 4):
    return nets.LifFcFused(T_)


def _tutorial5(T_: int = 4):
    return nets.Tutorial5Fused(T_)


NETS = {"lif_fc": _lif_fc, "tutorial5": _tutorial5}


def _net_loss(name: str, net: nn.Module, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    out = net(img)
    if name == "lif_fc":  # the benchmark's loss: MSE between the output rate and the one-hot label
        return F.mse_loss(out, F.one_hot(labels, 10).to(out.dtype))
    spk, mem = out  # tutorial5: cross entropy on the membrane at every step
    return sum(F.cross_entropy(m, labels) for m in mem.unbind(0))


def _net_step(name, net, device, real=True, backward=True):
    img = torch.rand(3, 1, 28, 28) if real else torch.empty(3, 1, 28, 28, device=device)
    labels = torch.tensor([1, 7, 3]) if real else torch.zeros(3, dtype=torch.int64, device=device)
    loss = _net_loss(name, net, img.to(device), labels.to(device))
    if backward:
        loss.backward()
    return loss


@pytest.mark.filterwarnings("ignore:snn_cuda. falling back")
@pytest.mark.parametrize("backend", ["auto", "fused", "torch"])
@pytest.mark.parametrize("name", list(NETS))
def test_training_net_on_fake_cuda(name, backend):
    if backend not in _fake_backends():
        pytest.skip("this build has no fused kernels for CUDA (nor a usable CuPy path)")
    with FakeTensorMode(allow_non_fake_inputs=False), torch.device("cuda"):
        net = NETS[name]()
        _set_backend(net, backend)
        # forward only (a backward would start the autograd engine's CUDA threads: needs a GPU)
        loss = _net_step(name, net, "cuda", real=False, backward=False)
        assert isinstance(loss, FakeTensor) and loss.shape == () and loss.device.type == "cuda"
        assert loss.requires_grad


def test_fake_mode_catches_a_value_read():
    """The tests above mean something: a host read of a fake CUDA tensor raises."""
    from torch._subclasses.fake_tensor import DataDependentOutputException

    with FakeTensorMode(allow_non_fake_inputs=False):
        x = torch.empty(3, device="cuda")
        with pytest.raises(DataDependentOutputException):
            bool(((x == 0) | (x == 1)).all())


# ------------------------------------------------------------------------------------------
# the meta device
# ------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:snn_cuda. falling back")
@pytest.mark.parametrize("backend", LAYER_BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_layer_on_meta(name, backend, cpu_signatures):
    build, kind = CASES[name]
    with torch.device("meta"):
        m = build()
    _set_backend(m, backend)
    assert all(p.is_meta for p in m.parameters())
    x = _input(kind, "meta", real=False)
    outs, gx, grads = _forward_backward(m, x, kind)
    assert all(o.is_meta for o in outs)
    assert _signature(outs, gx, grads) == cpu_signatures[name]


@pytest.mark.parametrize("backend", ["auto", "fused"])
@pytest.mark.parametrize("name", list(NETS))
def test_training_net_on_meta(name, backend):
    with torch.device("meta"):
        net = NETS[name]()
    _set_backend(net, backend)
    loss = _net_step(name, net, "meta", real=False)
    assert loss.is_meta and loss.shape == ()
    for n, p in net.named_parameters():
        assert p.grad is not None and p.grad.is_meta and p.grad.shape == p.shape, n


def test_fused_runs_meta_through_the_fake_kernels():
    """backend="fused" on meta calls the fused op (its fake kernel), not the reference loop."""
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with torch.device("meta"):
        lif = snn_cuda.LIF(backend="fused", learn_threshold=True)
    x = torch.empty(T, B, N, device="meta", requires_grad=True)
    with Record():
        lif(x).sum().backward()
    assert "snn_cuda.neuron_forward.default" in seen and "snn_cuda.neuron_backward.default" in seen


@pytest.mark.parametrize("name", list(CASES))
def test_meta_build_repr_to_empty_reset_parameters(name):
    build, kind = CASES[name]
    torch.manual_seed(0)
    want = build()
    with torch.device("meta"):
        m = build()
    text = repr(m)
    assert type(m).__name__ in text
    m.to_empty(device="cpu")
    if name == "leaky-tensor-beta":
        # its beta tensor was made on meta too: no values exist to restore (see the test below)
        with pytest.raises(RuntimeError, match="beta was given as a tensor without values"):
            m.reset_parameters()
        return
    for sub in m.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    # nn.Linear's reset_parameters draws random weights: copy them, compare everything else
    for (n, p), (_, q) in zip(m.named_parameters(), want.named_parameters()):
        if "linear" in n.lower() or n in ("weight", "bias") or n.endswith((".weight", ".bias")):
            with torch.no_grad():
                p.copy_(q)
    state, want_state = m.state_dict(), want.state_dict()
    assert state.keys() == want_state.keys()
    for k in state:
        assert torch.equal(state[k], want_state[k]), k
    x = _input(kind, "cpu")
    g = torch.Generator().manual_seed(5)
    a = m(x, generator=g) if kind == "rates" else (m(x, T=T) if kind == "const" else m(x))
    b = (
        want(x, generator=torch.Generator().manual_seed(5))
        if kind == "rates"
        else (want(x, T=T) if kind == "const" else want(x))
    )
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        assert torch.equal(u, v)


def test_learnable_parameters_reset_to_their_initial_values():
    m = snn_cuda.Leaky(beta=torch.tensor([0.2, 0.4, 0.6]), learn_beta=True, threshold=0.5, learn_threshold=True)
    p = snn_cuda.ParametricLIF(init_tau=4.0, param_shape=(3,))
    with torch.no_grad():
        m.beta.add_(0.1)
        m.threshold.mul_(3)
        p.w.zero_()
    m.reset_parameters()
    p.reset_parameters()
    assert torch.allclose(m.beta, torch.tensor([0.2, 0.4, 0.6])) and m.threshold.item() == 0.5
    assert torch.allclose(p.w, torch.full((3,), -math.log(3.0)))
    # a tensor value given on meta has nothing to restore: said, not silently left as garbage
    with torch.device("meta"):
        lk = snn_cuda.Leaky(beta=torch.full((3,), 0.5), learn_beta=True)
    lk.to_empty(device="cpu")
    with pytest.raises(RuntimeError, match="beta was given as a tensor without values"):
        lk.reset_parameters()


def test_validation_reads_no_device_data_but_checks_host_tensors():
    # meta and fake tensors: dtype and shape only (nothing to read); Python numbers always
    with torch.device("meta"):
        snn_cuda.Leaky(beta=torch.full((4,), 0.5), threshold=torch.ones(4))
        with pytest.raises(ValueError, match=r"beta must be in \[0.0, 1.0\], got 1.5"):
            snn_cuda.Leaky(beta=1.5, param_shape=(4,))
        with pytest.raises(TypeError, match="beta must be a float or a floating tensor"):
            snn_cuda.Leaky(beta=torch.ones(4, dtype=torch.int64))
    with FakeTensorMode(allow_non_fake_inputs=False):
        snn_cuda.LIF(v_threshold=torch.ones(4, device="cuda"), learn_threshold=True)
    # host tensors: their values are free to read, and still checked
    with pytest.raises(ValueError, match=r"beta must be in \[0.0, 1.0\]"):
        snn_cuda.Leaky(beta=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="v_threshold must be finite"):
        snn_cuda.LIF(v_threshold=torch.tensor([1.0, float("nan")]))


def test_repr_never_reads_a_device_value():
    with torch.device("meta"):
        text = repr(snn_cuda.ParametricLIF()) + repr(snn_cuda.Leaky(beta=0.9, learn_beta=True))
    assert "learnable(on meta)" in text
    assert "learnable(0.9)" in repr(snn_cuda.Leaky(beta=0.9, learn_beta=True))


# ------------------------------------------------------------------------------------------
# no value read on the CPU either
# ------------------------------------------------------------------------------------------
class _RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(NETS))
def test_training_step_reads_no_tensor_value_on_the_cpu(name):
    """The SpikeLinear binarity test is gone on the CPU too: one training step of each net calls
    no op that brings a value to the host."""
    torch.manual_seed(0)
    net = NETS[name]()
    img = torch.rand(3, 1, 28, 28)
    with _RecordOps() as rec:  # the net only: F.one_hot, for one, reads its labels' range
        out = net(img)
        sum(o.float().square().sum() for o in (out if isinstance(out, tuple) else (out,))).backward()
    assert all(p.grad is not None for p in net.parameters())
    reads = [o for o in rec.ops if any(k in o for k in ("_local_scalar_dense", "is_nonzero", "aten.equal", ".item"))]
    assert not reads, reads
    assert "snn_cuda.binary_to_uint8.default" in rec.ops or name == "tutorial5"


def test_spike_linear_binary_is_a_declaration_not_a_check():
    """binary=True narrows whatever it gets (x != 0), so a non-binary input gets the weight
    gradient of its support: the producer's promise is the contract, as documented."""
    torch.manual_seed(0)
    sl = snn_cuda.SpikeLinear(6, 50, binary=True)  # 50 outputs: F.linear forward, byte weight gradient
    x = torch.rand(5, 6)
    sl(x).sum().backward()
    torch.testing.assert_close(sl.weight.grad, torch.ones(50, 1) @ x.ne(0).float().sum(0, keepdim=True))
    # binary=False is nn.Linear
    lin = snn_cuda.SpikeLinear(6, 50)
    lin.load_state_dict(sl.state_dict())
    lin(x).sum().backward()
    torch.testing.assert_close(lin.weight.grad, torch.ones(50, 1) @ x.sum(0, keepdim=True))
    # uint8 input: the type vouches (nonzero byte = spike)
    s = torch.tensor([[0, 1, 2, 0, 255, 1]], dtype=torch.uint8)
    torch.testing.assert_close(lin(s), F.linear(s.ne(0).float(), lin.weight, lin.bias))
    with pytest.raises(TypeError, match="binary must be a bool"):
        snn_cuda.SpikeLinear(2, 2, binary=1)
    assert "binary=True" in repr(sl) and "binary" not in repr(lin)


def test_binary_to_uint8_op_agrees_with_its_fake_kernel():
    x = torch.tensor([[0.0, 1.0, 0.5], [2.0, float("nan"), -0.0]])
    torch.library.opcheck(torch.ops.snn_cuda.binary_to_uint8.default, (x,))
    with FakeTensorMode():
        fake = torch.ops.snn_cuda.binary_to_uint8(torch.empty(2, 3))
    real = torch.ops.snn_cuda.binary_to_uint8(x)
    assert real.shape == fake.shape == x.shape and real.dtype == fake.dtype == torch.uint8


# ------------------------------------------------------------------------------------------
# the encoder: compile, fresh spikes, generators
# ------------------------------------------------------------------------------------------
def test_lif_fc_training_step_compiles_fullgraph_and_trains():
    torch.manual_seed(0)
    net = nets.LifFcFused(8)  # PoissonEncoder -> SpikeLinear(binary) -> LIF, backend="fused"
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    img = torch.rand(16, 1, 28, 28)
    labels = torch.arange(16) % 10
    target = F.one_hot(labels, 10).float()

    def step(img, target):
        functional.reset_net(net)
        return F.mse_loss(net(img), target)

    compiled = torch.compile(step, fullgraph=True)
    w0 = net.fc[1].weight.detach().clone()
    losses = []
    for _ in range(12):
        loss = compiled(img, target)
        opt.zero_grad()
        loss.backward()  # outside the compiled function
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    assert not torch.equal(net.fc[1].weight, w0)
    # the compiled step computes what the eager one does, up to the spikes it draws: with
    # binary images the Poisson spikes are the images, so the losses agree
    bimg = (img > 0.5).float()
    eager = step(bimg, target)
    torch.testing.assert_close(compiled(bimg, target), eager, rtol=1e-5, atol=1e-6)


def test_compiled_encoder_draws_fresh_spikes_at_the_inputs_rate():
    enc = snn_cuda.PoissonEncoder(400)
    f = torch.compile(lambda x: enc(x), fullgraph=True)
    x = torch.linspace(0, 1, 257)
    a, b = f(x), f(x)
    assert a.shape == (400, 257) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, b)
    for s in (a, b):
        rate = s.double().mean(0)
        sd = torch.sqrt(x.double() * (1 - x.double()) / 400)
        assert ((rate - x.double()).abs() <= 5 * sd + 1e-9).all()
        assert (s[:, 0] == 0).all() and (s[:, -1] == 1).all()


def test_encoder_key_is_a_tensor_drawn_from_the_generator():
    """The op receives the key as an int64 tensor drawn by torch's generator on x's device,
    never a Python int (what made torch.compile see a data-dependent SymInt and a CUDA graph
    replay one key)."""
    seen = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if "poisson_encode" in str(func):
                seen.append(args)
            return func(*args, **(kwargs or {}))

    x = torch.rand(3, 4)
    with Record():
        snn_cuda.poisson_encode(x, 5)
    (args,) = seen
    assert isinstance(args[2], torch.Tensor) and args[2].dtype == torch.int64 and args[2].device == x.device
    with FakeTensorMode(allow_non_fake_inputs=False):
        xc = torch.empty(2, 3, device="cuda")
        out = snn_cuda.poisson_encode(xc, 5, backend="fused" if CUDA_FUSED else "auto")
        assert out.shape == (5, 2, 3) and out.device.type == "cuda"


@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_encoder_generator_on_both_paths(backend):
    """A generator works on the fused path and the fallback alike: the same state gives the
    same spikes, another state others."""
    x = torch.rand(50, 20)
    a = snn_cuda.poisson_encode(x, 30, generator=torch.Generator().manual_seed(1), backend=backend)
    b = snn_cuda.poisson_encode(x, 30, generator=torch.Generator().manual_seed(1), backend=backend)
    c = snn_cuda.poisson_encode(x, 30, generator=torch.Generator().manual_seed(2), backend=backend)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # a CPU generator serves a (fake) CUDA input too, on both paths
    with FakeTensorMode(allow_non_fake_inputs=True):
        xc = torch.empty(50, 20, device="cuda")
        g = torch.Generator().manual_seed(1)
        out = snn_cuda.poisson_encode(xc, 30, generator=g, backend=backend if CUDA_FUSED else "torch")
        assert out.shape == (30, 50, 20) and out.device.type == "cuda"


# ------------------------------------------------------------------------------------------
# autocast, devices
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K", [3, 100])  # the byte kernel and the at::linear fallback on the CPU
def test_spike_linear_autocast_dtype_is_the_fake_kernels(K):
    spikes = (torch.rand(7, 9) > 0.5).to(torch.uint8)
    w, b = torch.randn(K, 9), torch.randn(K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real = snn_cuda.spike_ops.spike_linear(spikes, w, b)
        want = F.linear(spikes.float(), w, b)
        with FakeTensorMode(allow_non_fake_inputs=True):
            fake = snn_cuda.spike_ops.spike_linear(spikes, w, b)
        gw = torch.ops.snn_cuda.spike_linear_weight_grad(torch.randn(7, K), spikes)
    assert real.dtype == fake.dtype == want.dtype == torch.bfloat16
    assert gw.dtype == torch.float32
    torch.testing.assert_close(real.float(), want.float(), rtol=2e-2, atol=2e-2)
    with FakeTensorMode(allow_non_fake_inputs=False):
        s = torch.empty(7, 9, dtype=torch.uint8, device="cuda")
        wc, bc = torch.empty(K, 9, device="cuda"), torch.empty(K, device="cuda")
        with _cuda_autocast():
            y = torch.ops.snn_cuda.spike_linear(s, wc, bc)
            ref = F.linear(s.float(), wc, bc)
            gw = torch.ops.snn_cuda.spike_linear_weight_grad(torch.empty(7, K, device="cuda"), s)
        assert y.dtype == ref.dtype == torch.float16 and gw.dtype == torch.float32


@contextlib.contextmanager
def _cuda_autocast():
    """torch.autocast("cuda") switched on through the low-level switch: the context manager
    disables itself when no GPU is visible, but the dispatcher applies the rules to fake CUDA
    tensors all the same."""
    prev = torch.is_autocast_enabled("cuda")
    torch.set_autocast_enabled("cuda", True)
    try:
        yield
    finally:
        torch.set_autocast_enabled("cuda", prev)
        torch.clear_autocast_cache()


def test_neuron_linear_under_autocast_trains():
    torch.manual_seed(0)
    m = snn_cuda.NeuronLinear(snn_cuda.Leaky(beta=0.9), snn_cuda.SpikeLinear(8, 5))
    x = torch.randn(6, 3, 8) * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert m.linear.weight.grad.dtype == torch.float32 and m.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "build,param",
    [
        (lambda: snn_cuda.LIF(learn_threshold=True), "v_threshold"),
        (lambda: snn_cuda.IF(v_threshold=torch.ones(4)), "v_threshold"),
        (lambda: snn_cuda.ParametricLIF(), "w"),
        (lambda: snn_cuda.Leaky(beta=0.9, learn_beta=True), "beta"),
        (lambda: snn_cuda.Leaky(beta=0.9, threshold=torch.ones(4)), "threshold"),
        (lambda: snn_cuda.NeuronLinear(snn_cuda.Leaky(beta=0.9), snn_cuda.SpikeLinear(4, 2)), "linear.weight"),
        (lambda: snn_cuda.SpikeLinear(4, 2, binary=True), "SpikeLinear.weight"),
    ],
)
@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_parameter_on_another_device_is_named(build, param, backend):
    # fake CUDA parameters with a CPU input: the error the layer raises, not c10's device guard
    with FakeTensorMode(allow_non_fake_inputs=False):
        with torch.device("cuda"):
            m = build()
        _set_backend(m, backend)
        x = torch.empty(3, 2, 4)
        with pytest.raises(ValueError, match=rf"{param} is on cuda:0 but the input is on cpu"):
            m(x)
    # meta parameters with a real CPU input
    with torch.device("meta"):
        m = build()
    _set_backend(m, backend)
    with pytest.raises(ValueError, match=rf"{param} is on meta but the input is on cpu"):
        m(torch.randn(3, 2, 4))


def test_poisson_seed_on_another_device_is_named():
    with FakeTensorMode(allow_non_fake_inputs=False):
        x = torch.empty(3)
        with pytest.raises(ValueError, match="seed is on cuda:0 but x is on cpu"):
            torch.ops.snn_cuda.poisson_encode(x, 2, torch.zeros((), dtype=torch.int64, device="cuda"))
    # a CUDA generator with a CPU input would need a device-to-host read of its draw: refused
    with pytest.raises(ValueError, match="generator is on cuda:0 but x is on cpu"):
        snn_cuda.poisson_encode(torch.rand(3), 2, generator=_FakeGen("cuda:0"))


class _FakeGen(torch.Generator):
    """A generator reporting another device (no CUDA generator can be made without a GPU)."""

    def __new__(cls, device):
        return super().__new__(cls)

    def __init__(self, device):
        self._dev = torch.device(device)

    @property
    def device(self):
        return self._dev
