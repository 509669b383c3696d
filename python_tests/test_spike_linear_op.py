"""snn_cuda::spike_linear / spike_linear_weight_grad (csrc/cpu/spike_linear_cpu.cpp): a Linear
layer fed uint8 spikes.

- forward against a float64 F.linear within a rounding bound derived from N and |W| (any order of
  summing N + 1 terms), and on the kernel path bit for bit against an oracle written here that sums
  in the documented order (lanes of 64 bytes, then a halving tree, then + bias);
- weight gradient on the kernel path bit for bit against the plain sequential sum over rows, on
  the fallback path within a bound;
- determinism across calls (across thread counts and ISA variants: test_isa.py);
- opcheck, gradcheck, autograd, empty and non-contiguous inputs, and every argument check.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import snn_cuda
from snn_cuda import _ext
from snn_cuda.spike_ops import spike_linear

pytestmark = pytest.mark.skipif(
    not (_ext.has_kernel("spike_linear", "CPU") and _ext.has_kernel("spike_linear_weight_grad", "CPU")),
    reason="no compiled CPU kernels for spike_linear",
)

OP = torch.ops.snn_cuda
F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16

# kFwdMaxK / kGradMaxK in csrc/cpu/spike_linear_cpu.cpp: the largest K the kernels serve
# (float32/float64); above them, and for 16-bit dtypes, at::linear / at::mm on widened spikes.
FWD_MAX_K = 40
GRAD_MAX_K = 96
# Lanes of a 64-byte block: the forward's partial sums per (row, output).
LANES = {F32: 16, F64: 8}


def kernel_fwd(dtype, K):
    return dtype in (F32, F64) and K <= FWD_MAX_K


def kernel_grad(dtype, K):
    return dtype in (F32, F64) and K <= GRAD_MAX_K


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------
def make_spikes(shape, density, seed=0, big_bytes=True):
    """uint8 spikes; when big_bytes, a spike is any byte 1..255 (all mean 1)."""
    g = torch.Generator().manual_seed(seed)
    fire = torch.rand(tuple(shape), generator=g) < density
    val = torch.randint(1, 256, tuple(shape), generator=g, dtype=torch.uint8) if big_bytes else 1
    return torch.where(fire, val, torch.zeros((), dtype=torch.uint8)).to(torch.uint8)


def make_weight(K, N, dtype, seed=1, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(K, N, generator=g, dtype=F64) * scale).to(dtype)


def make_bias(K, dtype, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, generator=g, dtype=F64).to(dtype)


def spikes01(spikes, dtype=F64):
    return (spikes != 0).to(dtype)


# ------------------------------------------------------------------------------------------
# oracles and bounds
# ------------------------------------------------------------------------------------------
def unit_roundoff(dtype):
    return torch.finfo(dtype).eps / 2


def gamma(n, u):
    assert n * u < 1
    return n * u / (1 - n * u)


def forward_bound(spikes, weight, bias, out_dtype):
    """|computed - exact| for any order of summing the N spike terms and the bias: gamma_{N+1}
    * sum |terms| in the accumulation precision (fp32 for 16-bit outputs, whose GEMMs accumulate
    in fp32), plus the final rounding to a 16-bit output."""
    N = spikes.shape[-1]
    s = spikes01(spikes).reshape(-1, N)
    mag = s @ weight.double().abs().t()
    if bias is not None:
        mag = mag + bias.double().abs()
    acc = F32 if out_dtype in (F16, BF16) else out_dtype
    bound = gamma(N + 1, unit_roundoff(acc)) * mag
    if out_dtype in (F16, BF16):
        exact = F.linear(s, weight.double(), None if bias is None else bias.double()).abs()
        bound = (1 + unit_roundoff(out_dtype)) * bound + unit_roundoff(out_dtype) * exact
    return bound.reshape(*spikes.shape[:-1], weight.shape[0])


def grad_bound(grad_out, spikes, out_dtype):
    K, N = grad_out.shape[-1], spikes.shape[-1]
    M = grad_out.numel() // K if K else 0
    g = grad_out.reshape(M, K).double().abs()
    s = spikes01(spikes).reshape(M, N)
    mag = g.t() @ s
    acc = F32 if out_dtype in (F16, BF16) else out_dtype
    bound = gamma(max(M, 1), unit_roundoff(acc)) * mag
    if out_dtype in (F16, BF16):
        exact = (grad_out.reshape(M, K).double().t() @ s).abs()
        bound = (1 + unit_roundoff(out_dtype)) * bound + unit_roundoff(out_dtype) * exact
    return bound


def lane_oracle(spikes, weight, bias):
    """The kernels' forward order in torch: per (row, k), lane l of the 64-byte blocks sums
    s[n] * W[k, n] for n = l, l + L, ... in increasing n (each product exact, each add rounded
    in the weight dtype), zero-padded to a whole block; then lane i += lane i + h for h = L/2,
    ..., 1; then + bias."""
    dtype = weight.dtype
    L = LANES[dtype]
    N, K = spikes.shape[-1], weight.shape[0]
    s = spikes01(spikes, dtype).reshape(-1, N)
    M = s.shape[0]
    nb = (N + L - 1) // L
    sp = torch.zeros(M, nb * L, dtype=dtype)
    sp[:, :N] = s
    wp = torch.zeros(K, nb * L, dtype=dtype)
    wp[:, :N] = weight
    prod = sp.reshape(M, 1, nb, L) * wp.reshape(1, K, nb, L)  # exact: 0 or the weight
    acc = torch.zeros(M, K, L, dtype=dtype)
    for b in range(nb):
        acc = acc + prod[:, :, b, :]
    h = L // 2
    while h >= 1:
        acc = acc[..., :h] + acc[..., h : 2 * h]
        h //= 2
    y = acc[..., 0]
    if bias is not None:
        y = y + bias
    return y.reshape(*spikes.shape[:-1], K)


def sequential_grad_oracle(grad_out, spikes):
    """gW[k, n] = ((0 + s[0, n] g[0, k]) + s[1, n] g[1, k]) + ... in grad_out's dtype: the plain
    left-to-right sum over rows (each product exact, each add rounded)."""
    K, N = grad_out.shape[-1], spikes.shape[-1]
    M = spikes.numel() // N if N else grad_out.numel() // max(K, 1)
    g = grad_out.reshape(M, K)
    s = spikes01(spikes, grad_out.dtype).reshape(M, N)
    acc = torch.zeros(K, N, dtype=grad_out.dtype)
    for r in range(M):
        acc = acc + g[r][:, None] * s[r][None, :]
    return acc


def assert_within(got, exact, bound, msg=""):
    assert got.shape == exact.shape, f"{msg}: shape {tuple(got.shape)} != {tuple(exact.shape)}"
    err = (got.double() - exact).abs()
    bad = err > bound
    assert not bad.any(), (
        f"{msg}: {int(bad.sum())} elements beyond the bound, worst excess "
        f"{float((err - bound).max()):.3g} (err {float(err.max()):.3g})"
    )


_BITS = {F64: torch.int64, F32: torch.int32, F16: torch.int16, BF16: torch.int16}


def assert_bitwise(a, b, msg=""):
    """Same dtype, shape and bits (NaNs with equal payloads equal, -0.0 != +0.0)."""
    assert a.dtype == b.dtype and a.shape == b.shape, f"{msg}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
    ia, ib = a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype])
    if not torch.equal(ia, ib):
        diff = (a.double() - b.double()).abs()
        raise AssertionError(
            f"{msg}: {int((ia != ib).sum())} of {a.numel()} elements differ, max |diff| "
            f"{float(diff[diff == diff].max()) if (diff == diff).any() else float('nan')}"
        )


# ------------------------------------------------------------------------------------------
# forward
# ------------------------------------------------------------------------------------------
SHAPES = [(7,), (3, 5), (2, 3, 4), (0,), (1,), (40,)]
NS = [1, 15, 16, 17, 100]
KS = [1, 3, 10, 17, 64, FWD_MAX_K + 1]
DENSITIES = [0.0, 0.1, 0.5, 1.0]


@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=["f32", "f64", "f16", "bf16"])
@pytest.mark.parametrize("K", KS)
@pytest.mark.parametrize("N", NS)
def test_forward_matches_float64_linear(dtype, K, N):
    for i, (lead, density) in enumerate(zip(SHAPES, DENSITIES + DENSITIES[:2])):
        for with_bias in (True, False):
            spikes = make_spikes((*lead, N), density, seed=100 * N + 10 * K + i)
            W = make_weight(K, N, dtype, seed=K + N)
            b = make_bias(K, dtype, seed=K) if with_bias else None
            y = OP.spike_linear(spikes, W, b)
            assert y.dtype == dtype and y.shape == (*lead, K)
            exact = F.linear(spikes01(spikes), W.double(), None if b is None else b.double())
            msg = f"{dtype} lead={lead} N={N} K={K} density={density} bias={with_bias}"
            assert_within(y, exact, forward_bound(spikes, W, b, dtype), msg)
            if kernel_fwd(dtype, K):
                assert_bitwise(y, lane_oracle(spikes, W, b), msg + " (lane oracle)")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_forward_tutorial5_shape(dtype):
    """The hidden -> output layer of snnTorch tutorial 5: [T*B, 1000] spikes, K = 10."""
    spikes = make_spikes((3200, 1000), 0.15, seed=5, big_bytes=False)
    W = make_weight(10, 1000, dtype, scale=0.03)
    b = make_bias(10, dtype)
    y = OP.spike_linear(spikes, W, b)
    exact = F.linear(spikes01(spikes), W.double(), b.double())
    assert_within(y, exact, forward_bound(spikes, W, b, dtype), "tutorial5")
    assert_bitwise(y, lane_oracle(spikes, W, b), "tutorial5 lane oracle")


@pytest.mark.parametrize("K", [FWD_MAX_K, FWD_MAX_K + 1])
def test_forward_threshold_boundary(K):
    spikes = make_spikes((33, 37), 0.4)
    W = make_weight(K, 37, F32)
    b = make_bias(K, F32)
    y = OP.spike_linear(spikes, W, b)
    assert_within(y, F.linear(spikes01(spikes), W.double(), b.double()), forward_bound(spikes, W, b, F32))
    if K <= FWD_MAX_K:
        assert_bitwise(y, lane_oracle(spikes, W, b))


def test_nonzero_bytes_are_spikes_of_one():
    N, K = 37, 5
    ones = make_spikes((20, N), 0.5, big_bytes=False)
    big = ones * torch.randint(1, 256, ones.shape, generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    assert (big != 0).equal(ones != 0) and int(big.max()) > 1
    for dtype in (F32, F64, F16):
        for k in (K, FWD_MAX_K + 3):
            W = make_weight(k, N, dtype)
            assert_bitwise(OP.spike_linear(big, W, None), OP.spike_linear(ones, W, None), f"{dtype} K={k}")
    g = torch.randn(20, K)
    assert_bitwise(OP.spike_linear_weight_grad(g, big), OP.spike_linear_weight_grad(g, ones))
    g = torch.randn(20, GRAD_MAX_K + 2)
    assert_bitwise(OP.spike_linear_weight_grad(g, big), OP.spike_linear_weight_grad(g, ones))


def test_nonfinite_weights_propagate_like_linear():
    """0 * inf = NaN as in F.linear: a non-finite weight poisons its output whether or not the
    spike fired, on the kernel path and the fallback alike."""
    spikes = make_spikes((6, 20), 0.5, big_bytes=False)
    spikes[0] = 0
    for K in (3, FWD_MAX_K + 1):
        W = make_weight(K, 20, F32)
        W[0, 4] = float("inf")
        W[1, 7] = float("nan")
        y = OP.spike_linear(spikes, W, None)
        ref = F.linear(spikes01(spikes, F32), W)
        assert torch.equal(y.isnan(), ref.isnan()) and torch.equal(y.isinf(), ref.isinf())
        # inf where the spike fired, NaN (0 * inf) where it did not: row 0 has no spikes
        assert not y[:, 0].isfinite().any() and y[0, 0].isnan() and y[:, 1].isnan().all()
        assert y[:, 2:].isfinite().all()


# ------------------------------------------------------------------------------------------
# weight gradient
# ------------------------------------------------------------------------------------------
GRAD_KS = [1, 3, 10, 17, 64, GRAD_MAX_K, GRAD_MAX_K + 1]


@pytest.mark.parametrize("dtype", [F32, F64, F16, BF16], ids=["f32", "f64", "f16", "bf16"])
@pytest.mark.parametrize("K", GRAD_KS)
@pytest.mark.parametrize("N", NS + [40])
def test_weight_grad(dtype, K, N):
    for i, (lead, density) in enumerate(zip([(9,), (3, 4), (2, 3, 2), (0,), (1,)], DENSITIES + [0.3])):
        spikes = make_spikes((*lead, N), density, seed=7 * N + K + i)
        g = torch.Generator().manual_seed(N + K + i)
        grad_out = torch.randn((*lead, K), generator=g, dtype=F64).to(dtype)
        gw = OP.spike_linear_weight_grad(grad_out, spikes)
        assert gw.dtype == dtype and gw.shape == (K, N)
        msg = f"{dtype} lead={lead} N={N} K={K} density={density}"
        if kernel_grad(dtype, K):
            assert_bitwise(gw, sequential_grad_oracle(grad_out, spikes), msg)
        else:
            M = max(spikes.numel() // N, 0)
            exact = grad_out.double().reshape(M, K).t() @ spikes01(spikes).reshape(M, N)
            assert_within(gw, exact, grad_bound(grad_out, spikes, dtype), msg)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_weight_grad_tutorial5_shape_is_sequential_sum(dtype):
    spikes = make_spikes((3200, 1000), 0.15, seed=9, big_bytes=False)
    grad_out = torch.randn(3200, 10, generator=torch.Generator().manual_seed(4), dtype=F64).to(dtype)
    gw = OP.spike_linear_weight_grad(grad_out, spikes)
    # the sequential sum over 3200 rows, written as cumulative adds over row tiles of the exact
    # products (each step is one rounded add per element, as in the oracle)
    s = spikes01(spikes, dtype)
    acc = torch.zeros(10, 1000, dtype=dtype)
    for r in range(3200):
        acc.add_(grad_out[r][:, None] * s[r][None, :])
    assert_bitwise(gw, acc)


# ------------------------------------------------------------------------------------------
# determinism: calls, threads, ISAs
# ------------------------------------------------------------------------------------------
def _case(dtype, K, M=301, N=1003, density=0.3, seed=11):
    spikes = make_spikes((M, N), density, seed=seed)
    W = make_weight(K, N, dtype, seed=seed + 1, scale=0.1)
    b = make_bias(K, dtype, seed=seed + 2)
    g = torch.randn(M, K, generator=torch.Generator().manual_seed(seed + 3), dtype=F64).to(dtype)
    return spikes, W, b, g


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("K", [1, 10, 25])
def test_deterministic_across_calls_and_threads(dtype, K):
    spikes, W, b, g = _case(dtype, K)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (2, 1, 2):
            torch.set_num_threads(threads)
            outs.append((OP.spike_linear(spikes, W, b).clone(), OP.spike_linear_weight_grad(g, spikes).clone()))
    finally:
        torch.set_num_threads(before)
    for y, gw in outs[1:]:
        assert_bitwise(y, outs[0][0], "forward")
        assert_bitwise(gw, outs[0][1], "weight grad")


# ------------------------------------------------------------------------------------------
# empty and non-contiguous inputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64, F16], ids=["f32", "f64", "f16"])
@pytest.mark.parametrize("K", [3, FWD_MAX_K + 1])
def test_empty_inputs(dtype, K):
    W0 = torch.empty(K, 0, dtype=dtype)
    b = make_bias(K, dtype)
    # N = 0: the bias (or zeros), for every row
    y = OP.spike_linear(torch.empty(4, 0, dtype=torch.uint8), W0, b)
    assert y.shape == (4, K) and torch.equal(y, b.expand(4, K))
    y = OP.spike_linear(torch.empty(2, 3, 0, dtype=torch.uint8), W0, None)
    assert y.shape == (2, 3, K) and torch.equal(y, torch.zeros(2, 3, K, dtype=dtype))
    # no rows
    y = OP.spike_linear(torch.empty(0, 5, dtype=torch.uint8), make_weight(K, 5, dtype), b)
    assert y.shape == (0, K)
    y = OP.spike_linear(torch.empty(3, 0, 5, dtype=torch.uint8), make_weight(K, 5, dtype), None)
    assert y.shape == (3, 0, K)
    # K = 0
    y = OP.spike_linear(make_spikes((4, 5), 0.5), torch.empty(0, 5, dtype=dtype), torch.empty(0, dtype=dtype))
    assert y.shape == (4, 0)
    # weight gradient: no rows -> zeros; N = 0 -> [K, 0]; K = 0 -> [0, N]
    gw = OP.spike_linear_weight_grad(torch.empty(0, K, dtype=dtype), torch.empty(0, 21, dtype=torch.uint8))
    assert gw.shape == (K, 21) and torch.equal(gw, torch.zeros(K, 21, dtype=dtype))
    gw = OP.spike_linear_weight_grad(torch.randn(2, 0, 3, K).to(dtype), torch.empty(2, 0, 3, 17, dtype=torch.uint8))
    assert gw.shape == (K, 17) and torch.equal(gw, torch.zeros(K, 17, dtype=dtype))
    gw = OP.spike_linear_weight_grad(torch.randn(4, K).to(dtype), torch.empty(4, 0, dtype=torch.uint8))
    assert gw.shape == (K, 0)
    gw = OP.spike_linear_weight_grad(torch.empty(4, 0, dtype=dtype), make_spikes((4, 5), 0.5))
    assert gw.shape == (0, 5)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("K", [5, FWD_MAX_K + 1, GRAD_MAX_K + 1])
def test_non_contiguous_inputs(dtype, K):
    N, M = 45, 30
    spikes = make_spikes((N, M), 0.4).t()  # [M, N], transposed view
    W = make_weight(N, K, dtype).t()  # [K, N]
    b = make_bias(2 * K, dtype)[::2]
    g = torch.randn(K, M, dtype=F64).to(dtype).t()
    assert not (spikes.is_contiguous() or W.is_contiguous() or b.is_contiguous() or g.is_contiguous())
    # Our kernels copy strided operands and sum in a fixed order: the same bits. Above the kernel
    # thresholds MKL multiplies the operands as given, and its blocking (so its summation order)
    # may differ for a transposed operand: each result is then checked against the exact product
    # within the rounding bound of any summation order.
    y = OP.spike_linear(spikes, W, b)
    y_c = OP.spike_linear(spikes.contiguous(), W.contiguous(), b.contiguous())
    if kernel_fwd(dtype, K):
        assert_bitwise(y, y_c)
    else:
        exact = F.linear(spikes01(spikes), W.double(), b.double())
        for got in (y, y_c):
            assert_within(got, exact, forward_bound(spikes, W, b, dtype), f"forward K={K}")
    # an expanded (stride-0) grad_out, as autograd produces for y.sum()
    ge = torch.ones((), dtype=dtype).expand(M, K)
    for go in (g, ge):
        gw = OP.spike_linear_weight_grad(go, spikes)
        gw_c = OP.spike_linear_weight_grad(go.contiguous(), spikes.contiguous())
        if kernel_grad(dtype, K):
            assert_bitwise(gw, gw_c)
        else:
            exact = go.double().t() @ spikes01(spikes)
            for got in (gw, gw_c):
                assert_within(got, exact, grad_bound(go, spikes, dtype), f"weight grad K={K}")


# ------------------------------------------------------------------------------------------
# autograd, opcheck, gradcheck
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [F32, F64, BF16], ids=["f32", "f64", "bf16"])
@pytest.mark.parametrize("K", [10, FWD_MAX_K + 1, GRAD_MAX_K + 1])
def test_autograd_matches_linear(dtype, K):
    spikes = make_spikes((3, 7, 50), 0.3)
    W = make_weight(K, 50, dtype).requires_grad_()
    b = make_bias(K, dtype).requires_grad_()
    y = spike_linear(spikes, W, b)
    gy = torch.randn(y.shape, dtype=F64).to(dtype)
    y.backward(gy)
    W2 = W.detach().clone().requires_grad_()
    b2 = b.detach().clone().requires_grad_()
    F.linear(spikes01(spikes, dtype), W2, b2).backward(gy)
    assert_within(W.grad, W2.grad.double(), grad_bound(gy, spikes, dtype) + grad_bound(gy, spikes, dtype), "weight")
    if kernel_grad(dtype, K):
        assert_bitwise(W.grad, OP.spike_linear_weight_grad(gy, spikes))
    assert_bitwise(b.grad, gy.reshape(-1, K).sum(0), "bias")


def test_autograd_without_bias_and_frozen_weight():
    spikes = make_spikes((8, 20), 0.5)
    W = make_weight(4, 20, F32).requires_grad_()
    spike_linear(spikes, W).sum().backward()
    assert_bitwise(W.grad, OP.spike_linear_weight_grad(torch.ones(8, 4), spikes))
    # only the bias trains: the weight gradient op is not called
    W = make_weight(4, 20, F32)
    b = make_bias(4, F32).requires_grad_()
    spike_linear(spikes, W, b).sum().backward()
    assert_bitwise(b.grad, torch.full((4,), 8.0))


def test_double_backward_is_an_error():
    spikes = make_spikes((5, 6), 0.5)
    W = make_weight(3, 6, F64).requires_grad_()
    y = spike_linear(spikes, W)
    (gw,) = torch.autograd.grad(y.square().sum(), W, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gw.sum().backward()


@pytest.mark.parametrize("K", [4, FWD_MAX_K + 2, GRAD_MAX_K + 2])
def test_gradcheck_float64(K):
    spikes = make_spikes((2, 3, 9), 0.5)
    W = make_weight(K, 9, F64).requires_grad_()
    b = make_bias(K, F64).requires_grad_()
    assert torch.autograd.gradcheck(lambda w, bb: spike_linear(spikes, w, bb), (W, b))


@pytest.mark.parametrize("K", [4, FWD_MAX_K + 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_opcheck(K, with_bias):
    spikes = make_spikes((3, 4, 20), 0.3)
    W = make_weight(K, 20, F32).requires_grad_()
    b = make_bias(K, F32).requires_grad_() if with_bias else None
    torch.library.opcheck(OP.spike_linear.default, (spikes, W, b))
    g = torch.randn(3, 4, K)
    torch.library.opcheck(OP.spike_linear_weight_grad.default, (g, spikes))


def test_torch_compile_fullgraph():
    spikes = make_spikes((16, 30), 0.3)
    W = make_weight(6, 30, F32).requires_grad_()
    b = make_bias(6, F32).requires_grad_()

    def loss(s, w, bb):
        return spike_linear(s, w, bb).square().sum()

    torch._dynamo.reset()
    loss_c = torch.compile(loss, fullgraph=True, backend="aot_eager")
    gw, gb = torch.autograd.grad(loss_c(spikes, W, b), (W, b))
    rw, rb = torch.autograd.grad(loss(spikes, W, b), (W, b))
    assert_bitwise(gw, rw)
    assert_bitwise(gb, rb)


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        s = torch.empty(2, 3, 11, dtype=torch.uint8)
        y = OP.spike_linear(s, torch.empty(5, 11, dtype=F64), None)
        gw = OP.spike_linear_weight_grad(torch.empty(2, 3, 5, dtype=BF16), s)
    assert y.shape == (2, 3, 5) and y.dtype == F64
    assert gw.shape == (5, 11) and gw.dtype == BF16


# ------------------------------------------------------------------------------------------
# argument checks: each names the parameter
# ------------------------------------------------------------------------------------------
S = make_spikes((4, 6), 0.5)
W6 = make_weight(3, 6, F32)


@pytest.mark.parametrize("K", [3, FWD_MAX_K + 1])
def test_spike_linear_argument_errors(K):
    W = make_weight(K, 6, F32)
    with pytest.raises(TypeError, match=r"spikes must be uint8"):
        OP.spike_linear(S.float(), W, None)
    with pytest.raises(TypeError, match=r"spikes must be uint8"):
        OP.spike_linear(S.bool(), W, None)
    with pytest.raises(ValueError, match=r"spikes must have at least 1 dimension"):
        OP.spike_linear(torch.tensor(1, dtype=torch.uint8), make_weight(K, 1, F32), None)
    with pytest.raises(TypeError, match=r"weight must be float32, float64, float16 or bfloat16, got Int"):
        OP.spike_linear(S, W.int(), None)
    with pytest.raises(ValueError, match=r"weight must be 2-D \(\[K, N\]\), got shape \[6\]"):
        OP.spike_linear(S, W[0], None)
    with pytest.raises(ValueError, match=r"weight must be 2-D"):
        OP.spike_linear(S, W[None], None)
    with pytest.raises(ValueError, match=r"weight.size\(1\) must equal spikes.size\(-1\) \(N\)"):
        OP.spike_linear(S, make_weight(K, 7, F32), None)
    with pytest.raises(TypeError, match=r"bias must have weight's dtype \(Float\), got Double"):
        OP.spike_linear(S, W, make_bias(K, F64))
    with pytest.raises(
        ValueError, match=rf"bias must be 1-D of size K = weight.size\(0\) = {K}, got shape \[{K + 1}\]"
    ):
        OP.spike_linear(S, W, make_bias(K + 1, F32))
    with pytest.raises(ValueError, match=r"bias must be 1-D"):
        OP.spike_linear(S, W, make_bias(K, F32)[None])


def test_spike_linear_device_errors():
    """Device checks, reached on the CPU kernel with a meta tensor (no GPU needed)."""
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(ValueError, match=r"weight is on meta but spikes is on cpu"):
        OP.spike_linear.default.redispatch(cpu, S, W6.to("meta"), None)
    with pytest.raises(ValueError, match=r"bias is on meta but weight is on cpu"):
        OP.spike_linear.default.redispatch(cpu, S, W6, torch.empty(3, device="meta"))
    with pytest.raises(ValueError, match=r"grad_out is on meta but spikes is on cpu"):
        OP.spike_linear_weight_grad.default.redispatch(cpu, torch.empty(4, 3, device="meta"), S)


@pytest.mark.parametrize("K", [3, GRAD_MAX_K + 1])
def test_weight_grad_argument_errors(K):
    g = torch.randn(4, K)
    with pytest.raises(TypeError, match=r"grad_out must be float32, float64, float16 or bfloat16, got Long"):
        OP.spike_linear_weight_grad(g.long(), S)
    with pytest.raises(TypeError, match=r"spikes must be uint8"):
        OP.spike_linear_weight_grad(g, S.to(torch.int8))
    with pytest.raises(ValueError, match=r"spikes must have at least 1 dimension"):
        OP.spike_linear_weight_grad(torch.randn(K), torch.tensor(1, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"grad_out \(\[\.\.\., K\]\) must have the leading dimensions of spikes"):
        OP.spike_linear_weight_grad(torch.randn(5, K), S)
    with pytest.raises(ValueError, match=r"grad_out \(\[\.\.\., K\]\) must have the leading dimensions of spikes"):
        OP.spike_linear_weight_grad(torch.randn(2, 2, K), S)
    with pytest.raises(ValueError, match=r"grad_out \(\[\.\.\., K\]\) must have the leading dimensions of spikes"):
        OP.spike_linear_weight_grad(torch.tensor(1.0), S)


def test_functional_wrapper_is_the_op():
    spikes = make_spikes((5, 33), 0.4)
    W = make_weight(7, 33, F32)
    b = make_bias(7, F32)
    assert_bitwise(spike_linear(spikes, W, b), OP.spike_linear(spikes, W, b))
    assert_bitwise(snn_cuda.spike_ops.spike_linear(spikes, W), OP.spike_linear(spikes, W, None))
    assert spike_linear.__doc__ and "uint8" in spike_linear.__doc__
