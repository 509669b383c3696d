"""Layers and network helpers: SeqToANN, PoissonEncoder, reset_net / detach_net, step modes,
snnTorch-style explicit membrane passing, the issue's usage example and backend selection."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import snn_cuda
from snn_cuda import neuron as neuron_mod
from snn_cuda import surrogate as sg
from snn_cuda.functional import detach_net, reset_net, set_backend, set_step_mode

from testing import ALL_DEVICES, DTYPES, assert_equal, assert_grad_close, dtype_id, random_input

F32 = torch.float32


# ------------------------------------------------------------------------------------------
# SeqToANN, PoissonEncoder
# ------------------------------------------------------------------------------------------
def test_seq_to_ann_shapes():
    T, B = 4, 3
    lin = snn_cuda.SeqToANN(nn.Linear(10, 7))
    x = torch.randn(T, B, 10)
    y = lin(x)
    assert y.shape == (T, B, 7)
    torch.testing.assert_close(y, lin[0](x))  # Linear applied per step
    conv = snn_cuda.SeqToANN(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.Flatten())
    y = conv(torch.randn(T, B, 2, 6, 6))
    assert y.shape == (T, B, 5 * 36)
    # a non-contiguous (time-strided) input is accepted too
    y = lin(torch.randn(2 * T, B, 10)[::2])
    assert y.shape == (T, B, 7)
    y.sum().backward()


def test_seq_to_ann_rejects_non_sequences():
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        snn_cuda.SeqToANN(nn.Identity())(torch.randn(5))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_poisson_encoder_statistics_and_dtype(dtype):
    T = 2000
    enc = snn_cuda.PoissonEncoder(T)
    p = torch.tensor([[0.0, 0.1, 0.5], [0.9, 1.0, 0.25]], dtype=dtype)
    g = torch.Generator().manual_seed(0)
    s = enc(p, generator=g)
    assert s.shape == (T, 2, 3) and s.dtype == dtype
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    rate = s.double().mean(0)
    pd = p.double()
    # binomial standard error sqrt(p (1 - p) / T) <= 0.0112; allow 5 of them
    assert (rate - pd).abs().max() < 0.06
    assert rate[0, 0] == 0 and rate[1, 1] == 1
    # seeded: the same generator state gives the same spikes
    assert_equal(enc(p, generator=torch.Generator().manual_seed(0)), s, "reproducible")


def test_poisson_encoder_args():
    assert "T=5" in repr(snn_cuda.PoissonEncoder(5))
    with pytest.raises(ValueError, match="T must be a positive int"):
        snn_cuda.PoissonEncoder(0)
    with pytest.raises(TypeError, match="floating-point"):
        snn_cuda.PoissonEncoder(3)(torch.ones(2, dtype=torch.int64))


# ------------------------------------------------------------------------------------------
# state: reset_net, detach_net, step modes
# ------------------------------------------------------------------------------------------
def _net(backend="fused"):
    torch.manual_seed(0)
    return nn.Sequential(
        snn_cuda.SeqToANN(nn.Linear(8, 16)),
        snn_cuda.LIF(tau=2.0, backend=backend),
        snn_cuda.SeqToANN(nn.Linear(16, 16)),
        snn_cuda.IF(v_reset=None, backend=backend),
        snn_cuda.SeqToANN(nn.Linear(16, 6)),
        snn_cuda.Leaky(beta=0.9, backend=backend),
    )


def _out(net, x):
    spk, mem = net(x)
    return spk, mem


@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_reset_net_clears_state(backend):
    net = _net(backend)
    x = torch.randn(6, 4, 8) * 3
    s1, m1 = _out(net, x)
    # without a reset the second batch starts from the first batch's final state
    s2, m2 = _out(net, x)
    assert not torch.equal(m1, m2)
    for m in net.modules():
        if isinstance(m, snn_cuda.Leaky):
            assert isinstance(m.mem, torch.Tensor)
        elif isinstance(m, (snn_cuda.LIF, snn_cuda.IF)):
            assert isinstance(m.v, torch.Tensor)
    reset_net(net)
    for m in net.modules():
        if isinstance(m, snn_cuda.Leaky):
            assert m.mem == 0.0 and not isinstance(m.mem, torch.Tensor)
        elif isinstance(m, (snn_cuda.LIF, snn_cuda.IF)):
            assert not isinstance(m.v, torch.Tensor) and m.v_seq is None
    s3, m3 = _out(net, x)
    assert_equal(s3, s1, "spikes after reset")
    assert_equal(m3, m1, "membranes after reset")
    # after a reset a batch of another size is accepted
    reset_net(net)
    assert net(torch.randn(6, 2, 8))[0].shape == (6, 2, 6)


@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_batch_size_change_without_reset_raises(backend):
    net = _net(backend)
    net(torch.randn(3, 4, 8))
    with pytest.raises(ValueError, match="reset_net"):
        net(torch.randn(3, 5, 8))


@pytest.mark.parametrize("backend", ["fused", "torch"])
def test_detach_net_keeps_values_but_cuts_graph(backend):
    lif = snn_cuda.LIF(backend=backend)
    lk = snn_cuda.Leaky(beta=0.8, backend=backend)
    x = (torch.randn(5, 3, 20) * 2).requires_grad_(True)
    lif(x)
    lk(x)
    v, mem = lif.v, lk.mem
    assert v.requires_grad and mem.requires_grad
    detach_net(nn.Sequential(lif, lk))
    assert not lif.v.requires_grad and not lk.mem.requires_grad
    assert lif.v.grad_fn is None and lk.mem.grad_fn is None
    assert_equal(lif.v, v.detach(), "v kept")
    assert_equal(lk.mem, mem.detach(), "mem kept")
    # truncated BPTT: the next chunk's backward does not reach the first chunk's input
    x2 = torch.randn(5, 3, 20, requires_grad=True)
    lif(x2).sum().backward()
    assert x.grad is None and x2.grad is not None


def test_detach_net_on_fresh_state_is_noop():
    net = _net()
    detach_net(net)
    assert net[1].v == 0.0 and net[5].mem == 0.0


@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize("kind", ["lif", "if", "leaky"])
def test_single_step_mode_keeps_state_across_calls(kind, backend):
    T = 7
    x = random_input((T, 3, 50), F32)
    make = {
        "lif": lambda sm: snn_cuda.LIF(tau=3.0, step_mode=sm, backend=backend),
        "if": lambda sm: snn_cuda.IF(v_reset=None, step_mode=sm, backend=backend),
        "leaky": lambda sm: snn_cuda.Leaky(beta=0.7, step_mode=sm, backend=backend),
    }[kind]
    multi = make("m")
    out_m = multi(x)
    spikes_m = out_m[0] if kind == "leaky" else out_m
    single = make("s")
    spikes_s = []
    for xt in x.unbind(0):
        out = single(xt)
        spikes_s.append(out[0] if kind == "leaky" else out)
        assert spikes_s[-1].shape == (3, 50)
    assert_equal(torch.stack(spikes_s), spikes_m, "spikes")
    if kind == "leaky":
        assert_equal(single.mem, multi.mem, "final mem")
    else:
        assert_equal(single.v, multi.v, "final v")
    # set_step_mode switches a whole network
    net = nn.Sequential(make("m"))
    set_step_mode(net, "s")
    assert net[0].step_mode == "s"


@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_leaky_explicit_mem_loop_like_snntorch(reset, backend):
    T = 9
    x = random_input((T, 4, 30), F32).requires_grad_(True)
    multi = snn_cuda.Leaky(beta=0.85, reset_mechanism=reset, backend=backend)
    spk_m, mem_m = multi(x)
    (spk_m.sum() + mem_m.square().sum()).backward()
    gx_m = x.grad.clone()
    x.grad = None

    lif = snn_cuda.Leaky(beta=0.85, reset_mechanism=reset, step_mode="s", backend=backend)
    mem = lif.init_leaky()
    spk_rec, mem_rec = [], []
    for step in range(T):
        spk, mem = lif(x[step], mem)
        spk_rec.append(spk)
        mem_rec.append(mem)
    spk_s, mem_s = torch.stack(spk_rec), torch.stack(mem_rec)
    assert_equal(spk_s, spk_m, "spikes")
    assert_equal(mem_s, mem_m, "membranes")
    (spk_s.sum() + mem_s.square().sum()).backward()
    assert_grad_close(x.grad, gx_m, F32, "grad_x")


def test_leaky_explicit_mem_overrides_stored_state():
    lk = snn_cuda.Leaky(beta=0.5, step_mode="s", backend="fused")
    x = torch.full((3,), 0.25)
    lk(x)  # stored mem is now 0.25
    _, mem = lk(x, torch.zeros(3))
    assert mem.tolist() == [0.25] * 3
    _, mem = lk(x, 0.5)  # a float initial membrane
    assert mem.tolist() == [0.5] * 3


# ------------------------------------------------------------------------------------------
# the issue's usage example
# ------------------------------------------------------------------------------------------
def test_usage_example_from_issue():
    torch.manual_seed(0)
    T, B = 8, 16
    net = nn.Sequential(
        snn_cuda.SeqToANN(nn.Flatten(), nn.Linear(28 * 28, 100)),
        snn_cuda.LIF(tau=2.0, surrogate=sg.ATan()),
        snn_cuda.SeqToANN(nn.Linear(100, 10)),
        snn_cuda.IF(v_reset=None),
    )
    encoder = snn_cuda.PoissonEncoder(T)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    images = torch.rand(B, 1, 28, 28)
    labels = torch.randint(0, 10, (B,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fused CPU path needs no fallback warning
        for _ in range(2):
            x_seq = encoder(images)
            assert x_seq.shape == (T, B, 1, 28, 28)
            out = net(x_seq)
            assert out.shape == (T, B, 10)
            rate = out.mean(0)
            loss = nn.functional.cross_entropy(rate, labels)
            opt.zero_grad()
            loss.backward()
            assert net[0][1].weight.grad.abs().sum() > 0
            opt.step()
            reset_net(net)
    assert not isinstance(net[1].v, torch.Tensor)


# ------------------------------------------------------------------------------------------
# backend selection
# ------------------------------------------------------------------------------------------
class _MySurrogate(sg.SurrogateFunction):
    def derivative(self, z):
        return 1.0 / (1.0 + z.abs()) ** 2


def _ops_calls(fn):
    """Number of fused neuron op calls (snn_cuda::neuron_forward, model_forward) made by fn()."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.snn_cuda.neuron_forward.default, torch.ops.snn_cuda.model_forward.default):
                Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(neuron_mod, "_warned", set())


def test_auto_uses_fused_on_cpu_without_warning(fresh_warnings):
    x = torch.randn(4, 3, 10)
    for m in (snn_cuda.LIF(), snn_cuda.IF(), snn_cuda.Leaky(beta=0.9)):
        assert m.backend == "auto"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _ops_calls(lambda: m(x)) == 1
    torch_lif = snn_cuda.LIF(backend="torch")
    assert _ops_calls(lambda: torch_lif(x)) == 0


@pytest.mark.parametrize("kind", ["lif", "leaky"])
def test_auto_falls_back_once_for_python_surrogate(kind, fresh_warnings):
    s = _MySurrogate()
    assert s.kind_id is None
    m = snn_cuda.LIF(surrogate=s) if kind == "lif" else snn_cuda.Leaky(beta=0.9, surrogate=s)
    ref = (
        snn_cuda.LIF(surrogate=s, backend="torch")
        if kind == "lif"
        else snn_cuda.Leaky(beta=0.9, surrogate=s, backend="torch")
    )
    x = torch.randn(5, 2, 7, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="_MySurrogate") as rec:
        for _ in range(3):
            reset_net(m)
            n = _ops_calls(lambda: m(x))
            assert n == 0
    assert len([w for w in rec if "reference backend" in str(w.message)]) == 1
    # the fallback computes the reference, gradient through the Python surrogate included
    reset_net(m)
    out = m(x)
    out = out[1] if kind == "leaky" else out
    (g1,) = torch.autograd.grad(out.sum(), x)
    out = ref(x)
    out = out[1] if kind == "leaky" else out
    (g2,) = torch.autograd.grad(out.sum(), x)
    assert_equal(g1, g2, "grad via python surrogate")


def test_auto_falls_back_for_cpu_without_kernels(monkeypatch, fresh_warnings):
    monkeypatch.setattr(snn_cuda._ext, "_CPU_OK", False)
    m = snn_cuda.LIF()
    x = torch.randn(3, 4)
    with pytest.warns(RuntimeWarning, match="no CPU kernels"):
        out = m(x)
    assert _ops_calls(lambda: m(x)) == 0
    reset_net(m)
    assert_equal(out, snn_cuda.LIF(backend="torch")(x), "fallback output")


def test_set_backend_switches_network():
    net = _net("fused")
    set_backend(net, "torch")
    assert all(m.backend == "torch" for m in net.modules() if isinstance(m, snn_cuda.MemoryModule))
    x = torch.randn(3, 2, 8)
    assert _ops_calls(lambda: net(x)) == 0


def test_state_not_in_state_dict():
    net = _net()
    net(torch.randn(3, 2, 8))
    keys = net.state_dict().keys()
    assert not any(k.endswith((".v", ".mem", ".v_seq")) for k in keys)


def test_repr_mentions_parameters():
    r = repr(snn_cuda.LIF(tau=3.0, v_reset=None, surrogate=sg.ATan()))
    assert "tau=3.0" in r and "v_reset=None" in r and "ATan" in r
    assert "v_floor=-1.0" in repr(snn_cuda.IF(v_floor=-1.0))
    assert "reset_mechanism='zero'" in repr(snn_cuda.Leaky(beta=0.5, reset_mechanism="zero"))


@pytest.mark.parametrize("device", ALL_DEVICES)
def test_state_dtype_of_16bit_inputs(device):
    for dt in (torch.float16, torch.bfloat16):
        x = random_input((4, 5), dt, device)
        lif = snn_cuda.LIF(backend="fused", store_v_seq=True)
        s = lif(x)
        assert s.dtype == dt and lif.v.dtype == F32 and lif.v_seq.dtype == F32
        lk = snn_cuda.Leaky(beta=0.5, backend="fused")
        s, mem = lk(x)
        assert s.dtype == dt and mem.dtype == F32 and lk.mem.dtype == F32
    x = random_input((4, 5), torch.float64, device)
    lif = snn_cuda.LIF(backend="fused")
    lif(x)
    assert lif.v.dtype == torch.float64


def test_leaky_learnable_beta():
    beta = torch.tensor(0.8, requires_grad=True)
    m = snn_cuda.Leaky(beta=beta)
    x = random_input((5, 3, 4), F32)
    spk, mem = m(x)
    ref_spk, ref_mem, _ = snn_cuda.reference.leaky_reference(x, beta=beta)
    assert_equal(mem.detach(), ref_mem.detach(), "mem")
    mem.sum().backward()
    assert beta.grad is not None


def test_spike_linear_matches_linear_and_saves_uint8():
    torch.manual_seed(0)
    lin = torch.nn.Linear(30, 7)
    sl = snn_cuda.SpikeLinear(30, 7)
    sl.load_state_dict(lin.state_dict())
    for binary in (True, False):
        # The caller declares spikes (binary=True); the layer never inspects the values.
        sl.binary = binary
        x = torch.rand(5, 6, 30)
        x = (x > 0.6).float() if binary else x
        x1 = x.clone().requires_grad_()
        x2 = x.clone().requires_grad_()
        saved = []

        def pack(t):
            saved.append(t)
            return t

        y1 = lin(x1)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y2 = sl(x2)
        if binary:
            # spike_linear on the bytes (7 outputs): nn.Linear's value up to the summation order.
            torch.testing.assert_close(y2, y1, rtol=1e-6, atol=30 * torch.finfo(torch.float32).eps * 30)
        else:
            assert torch.equal(y1, y2)
        g = torch.randn_like(y1)
        y1.backward(g)
        y2.backward(g)
        torch.testing.assert_close(x2.grad, x1.grad)
        torch.testing.assert_close(sl.weight.grad, lin.weight.grad)
        torch.testing.assert_close(sl.bias.grad, lin.bias.grad)
        # binary=False is nn.Linear, which saves x flattened to 2-D: matched by size
        dtypes = {t.dtype for t in saved if t.numel() == x.numel()}
        assert dtypes == ({torch.uint8} if binary else {torch.float32})
        lin.zero_grad()
        sl.zero_grad()
