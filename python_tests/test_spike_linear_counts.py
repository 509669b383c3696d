"""Integer spike counts (I-LIF, 0..255) as uint8 into a Linear layer: spike_linear(...,
counts=True), spike_linear_weight_grad(..., counts=True), counts_to_uint8, SpikeLinear(counts=True)
and NeuronLinear(ILIF, linear).

Bounds. A count c <= 255 times a weight w is rounded once (c has 8 significant bits, so the product
needs up to 8 + 24 / 53), and the sum of the N products and the bias is rounded at every add, in
an order that is the kernels' or the GEMM's: by the usual inner-product bound (each term carries
at most N + 1 roundings of relative size u)

    |y - y_exact| <= gamma_{N+1} * (sum_n |c_n| |w_kn| + |b_k|),   gamma_n = n u / (1 - n u),

in the accumulation precision (fp32 for 16-bit GEMMs), plus the final rounding to a 16-bit
output. The weight gradient over M rows: gamma_M * sum_r |g_rk| |c_rn|. On the CPU kernel path the
order is the documented one (64-byte lanes, then a halving tree; rows in sequence for the weight
gradient) and each product is rounded before the add on every ISA, so the result is checked bit
for bit against that order written in torch, which also gives the same bits as the 0/1 path on
0/1 bytes (a product by 1 is exact).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import snn_cuda
from snn_cuda import _ext
from snn_cuda.spike_ops import counts_to_uint8, spike_linear

pytestmark = pytest.mark.skipif(
    not (_ext.has_kernel("spike_linear", "CPU") and _ext.has_kernel("counts_to_uint8", "CPU")),
    reason="no compiled CPU kernels for spike_linear",
)

OP = torch.ops.snn_cuda
F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
DTYPES = [F32, F64, F16, BF16]
DT_IDS = ["f32", "f64", "f16", "bf16"]
# kFwdMaxK / kGradMaxK in csrc/cpu/spike_linear_cpu.cpp
FWD_MAX_K = 40
GRAD_MAX_K = 96
LANES = {F32: 16, F64: 8}
_BITS = {F64: torch.int64, F32: torch.int32, F16: torch.int16, BF16: torch.int16}


def make_counts(shape, D, density=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    fire = torch.rand(tuple(shape), generator=g) < density
    c = torch.randint(1, D + 1, tuple(shape), generator=g, dtype=torch.int64)
    return torch.where(fire, c, torch.zeros((), dtype=torch.int64)).to(torch.uint8)


def make_weight(K, N, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, N, generator=g, dtype=F64).to(dtype)


def make_bias(K, dtype, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(K, generator=g, dtype=F64).to(dtype)


def gamma(n, dtype):
    u = torch.finfo(dtype).eps / 2
    assert n * u < 1
    return n * u / (1 - n * u)


def _acc(dtype):
    return F32 if dtype in (F16, BF16) else dtype


def forward_bound(c, W, b):
    N = c.shape[-1]
    cd = c.double().reshape(-1, N)
    mag = cd @ W.double().abs().t()
    if b is not None:
        mag = mag + b.double().abs()
    bound = gamma(N + 1, _acc(W.dtype)) * mag
    if W.dtype in (F16, BF16):
        u = torch.finfo(W.dtype).eps / 2
        exact = F.linear(cd, W.double(), None if b is None else b.double()).abs()
        bound = (1 + u) * bound + u * exact
    return bound.reshape(*c.shape[:-1], W.shape[0])


def grad_bound(g, c):
    K, N = g.shape[-1], c.shape[-1]
    M = g.numel() // K
    mag = g.reshape(M, K).double().abs().t() @ c.reshape(M, N).double()
    bound = gamma(max(M, 1), _acc(g.dtype)) * mag
    if g.dtype in (F16, BF16):
        u = torch.finfo(g.dtype).eps / 2
        exact = (g.reshape(M, K).double().t() @ c.reshape(M, N).double()).abs()
        bound = (1 + u) * bound + u * exact
    return bound


def assert_within(got, exact, bound, msg=""):
    assert got.shape == exact.shape, msg
    err = (got.double() - exact).abs()
    bad = err > bound
    assert not bad.any(), f"{msg}: {int(bad.sum())} beyond the bound, err {float(err.max()):.3g}"


def assert_bitwise(a, b, msg=""):
    assert a.dtype == b.dtype and a.shape == b.shape, msg
    if not torch.equal(a.contiguous().view(_BITS[a.dtype]), b.contiguous().view(_BITS[b.dtype])):
        raise AssertionError(f"{msg}: {int((a != b).sum())} of {a.numel()} differ")


def lane_oracle(c, W, b):
    """The kernels' forward order: per (row, k), lane l sums round(c[n] * W[k, n]) for n = l,
    l + L, ... (each add rounded), zero-padded to a whole block, then the halving tree, then +
    bias; in W's dtype."""
    dtype = W.dtype
    L = LANES[dtype]
    N, K = c.shape[-1], W.shape[0]
    s = c.to(dtype).reshape(-1, N)
    M = s.shape[0]
    nb = (N + L - 1) // L
    sp = torch.zeros(M, nb * L, dtype=dtype)
    sp[:, :N] = s
    wp = torch.zeros(K, nb * L, dtype=dtype)
    wp[:, :N] = W
    prod = sp.reshape(M, 1, nb, L) * wp.reshape(1, K, nb, L)  # one rounding each
    acc = torch.zeros(M, K, L, dtype=dtype)
    for blk in range(nb):
        acc = acc + prod[:, :, blk, :]
    h = L // 2
    while h >= 1:
        acc = acc[..., :h] + acc[..., h : 2 * h]
        h //= 2
    y = acc[..., 0]
    if b is not None:
        y = y + b
    return y.reshape(*c.shape[:-1], K)


def sequential_grad_oracle(g, c):
    K, N = g.shape[-1], c.shape[-1]
    M = g.numel() // K
    gm, s = g.reshape(M, K), c.to(g.dtype).reshape(M, N)
    acc = torch.zeros(K, N, dtype=g.dtype)
    for r in range(M):
        acc = acc + gm[r][:, None] * s[r][None, :]  # product rounded, then the add
    return acc


# ------------------------------------------------------------------------------------------
# the ops
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("K", [1, 10, 17, FWD_MAX_K, FWD_MAX_K + 1, 100])
@pytest.mark.parametrize("N", [1, 15, 17, 100])
@pytest.mark.parametrize("D", [1, 4, 255])
def test_forward_within_bound_of_float_counts(dtype, K, N, D):
    for i, lead in enumerate([(7,), (2, 3), (33,)]):
        c = make_counts((*lead, N), D, seed=1000 * D + 10 * N + K + i)
        W = make_weight(K, N, dtype, seed=K + N)
        b = make_bias(K, dtype, seed=K) if i != 1 else None
        y = OP.spike_linear(c, W, b, True)
        assert y.dtype == dtype and y.shape == (*lead, K)
        exact = F.linear(c.double(), W.double(), None if b is None else b.double())
        assert_within(y, exact, forward_bound(c, W, b), f"{dtype} K={K} N={N} D={D}")
        if dtype in (F32, F64) and K <= FWD_MAX_K:
            assert_bitwise(y, lane_oracle(c, W, b), f"kernel order {dtype} K={K} N={N} D={D}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("K", [1, 12, 13, FWD_MAX_K])
def test_counts_path_on_binary_bytes_equals_binary_path(dtype, K):
    # A product by 1 is exact: one rounding per add, as the binary path's FMA.
    c = make_counts((65, 37), 1, seed=K)
    W, b = make_weight(K, 37, dtype), make_bias(K, dtype)
    assert_bitwise(OP.spike_linear(c, W, b, True), OP.spike_linear(c, W, b), "forward")
    g = make_weight(65, K, dtype, seed=3)
    assert_bitwise(OP.spike_linear_weight_grad(g, c, True), OP.spike_linear_weight_grad(g, c), "weight grad")


def test_binary_path_unchanged_by_default():
    # counts=False (the default) still reads any nonzero byte as 1
    c = make_counts((9, 20), 255, seed=4)
    W = make_weight(5, 20, F32)
    assert_bitwise(OP.spike_linear(c, W, None), OP.spike_linear((c != 0).to(torch.uint8), W, None, True))


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("K", [1, 10, 23, GRAD_MAX_K, GRAD_MAX_K + 1])
@pytest.mark.parametrize("D", [1, 7, 255])
def test_weight_grad(dtype, K, D):
    for i, (lead, N) in enumerate([((5,), 3), ((3, 11), 17), ((300,), 70)]):
        c = make_counts((*lead, N), D, seed=D + K + i)
        g = make_weight(int(torch.tensor(lead).prod()), K, dtype, seed=i).reshape(*lead, K)
        gw = OP.spike_linear_weight_grad(g, c, True)
        assert gw.dtype == dtype and gw.shape == (K, N)
        exact = g.reshape(-1, K).double().t() @ c.reshape(-1, N).double()
        assert_within(gw, exact, grad_bound(g, c), f"{dtype} K={K} D={D}")
        if dtype in (F32, F64) and K <= GRAD_MAX_K:
            assert_bitwise(gw, sequential_grad_oracle(g, c), f"sequential sum {dtype} K={K} D={D}")


def test_deterministic_across_calls_and_threads():
    c = make_counts((257, 131), 255, seed=9)
    W, b = make_weight(13, 131, F32), make_bias(13, F32)
    g = make_weight(257, 13, F32, seed=5)
    threads = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append((OP.spike_linear(c, W, b, True), OP.spike_linear_weight_grad(g, c, True)))
    finally:
        torch.set_num_threads(threads)
    for y, gw in outs[1:]:
        assert_bitwise(y, outs[0][0])
        assert_bitwise(gw, outs[0][1])


@pytest.mark.parametrize("K", [3, FWD_MAX_K + 5])
@pytest.mark.parametrize("with_bias", [True, False])
def test_opcheck(K, with_bias):
    c = make_counts((4, 6, 19), 255, seed=K)
    W = make_weight(K, 19, F32).requires_grad_()
    b = make_bias(K, F32).requires_grad_() if with_bias else None
    torch.library.opcheck(OP.spike_linear.default, (c, W, b, True))
    g = make_weight(24, K, F32).reshape(4, 6, K)
    torch.library.opcheck(OP.spike_linear_weight_grad.default, (g, c, True))
    x = c.to(F32)
    torch.library.opcheck(OP.counts_to_uint8.default, (x, 255))


def test_autograd_reads_counts():
    c = make_counts((6, 21), 200, seed=3)
    W = make_weight(4, 21, F64).requires_grad_()
    b = make_bias(4, F64).requires_grad_()
    y = spike_linear(c, W, b, counts=True)
    r = make_weight(6, 4, F64, seed=8)
    gW, gb = torch.autograd.grad((y * r).sum(), (W, b))
    W2, b2 = W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    gW2, gb2 = torch.autograd.grad((F.linear(c.double(), W2, b2) * r).sum(), (W2, b2))
    assert_within(gW, gW2.double(), grad_bound(r, c) * 2)
    torch.testing.assert_close(gb, gb2)
    torch.autograd.gradcheck(lambda w, bb: spike_linear(c, w, bb, counts=True), (W, b))


# ------------------------------------------------------------------------------------------
# counts_to_uint8
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_counts_to_uint8_round_trip(dtype):
    v = torch.arange(256, dtype=F64).to(dtype)
    x = torch.cat([v, -v[:1], v.flip(0)]).reshape(3, -1)[:, :171]  # -0.0 is a count of 0
    got = counts_to_uint8(x, 255)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    assert torch.equal(got.to(F64), x.to(F64).abs())
    big = torch.randint(0, 5, (1 << 17,)).to(dtype)  # several threads' chunks
    assert torch.equal(counts_to_uint8(big, 4), big.to(torch.uint8))


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("bad", [0.5, -1.0, 6.0, 256.0, float("nan"), float("inf"), -float("inf")])
def test_counts_to_uint8_rejects_non_counts(dtype, bad):
    x = torch.zeros(1000, dtype=dtype)
    x[777] = bad
    with pytest.raises(ValueError, match="x must hold integer counts in \\[0, max_count = 5\\]"):
        counts_to_uint8(x, 5)


def test_counts_to_uint8_fp64_is_checked_in_fp64():
    x = torch.tensor([3.0 + 2.0**-40], dtype=F64)
    with pytest.raises(ValueError, match="integer counts"):
        counts_to_uint8(x, 255)


def test_counts_to_uint8_argument_errors():
    x = torch.zeros(3)
    for m in (0, 256, -1):
        with pytest.raises(ValueError, match="max_count must be in \\[1, 255\\]"):
            counts_to_uint8(x, m)
    with pytest.raises(TypeError, match="max_count must be an int"):
        counts_to_uint8(x, 2.0)
    with pytest.raises(TypeError, match="x"):
        counts_to_uint8(torch.zeros(3, dtype=torch.int32), 4)
    with pytest.raises(TypeError, match="counts must be a bool"):
        spike_linear(torch.zeros(2, 3, dtype=torch.uint8), torch.zeros(4, 3), None, counts=1)


# ------------------------------------------------------------------------------------------
# SpikeLinear(counts=True)
# ------------------------------------------------------------------------------------------
def _saved(fn):
    """(dtype, numel) of every tensor autograd saves while fn() runs, and fn()'s result."""
    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return saved, out


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("K", [10, FWD_MAX_K + 24])
def test_spike_linear_layer_counts(dtype, K):
    N, D = 37, 255
    torch.manual_seed(0)
    lin = snn_cuda.SpikeLinear(N, K, counts=True).to(dtype)
    ref = nn.Linear(N, K).to(dtype)
    ref.load_state_dict(lin.state_dict())
    c = make_counts((5, 8, N), D, seed=K)
    x = c.to(dtype).requires_grad_()
    x2 = c.to(dtype).requires_grad_()
    saved, y = _saved(lambda: lin(x))
    assert (torch.uint8, c.numel()) in saved
    assert not [s for s in saved if s[0] == dtype and s[1] == c.numel()], saved  # no float copy of x
    y2 = ref(x2)
    assert_within(
        y, F.linear(c.double(), lin.weight.double(), lin.bias.double()), forward_bound(c, lin.weight, lin.bias)
    )
    r = make_weight(40, K, F64, seed=7).reshape(5, 8, K).to(dtype)
    gx, gW, gb = torch.autograd.grad((y * r).sum(), (x, lin.weight, lin.bias))
    gx2, gW2, gb2 = torch.autograd.grad((y2 * r).sum(), (x2, ref.weight, ref.bias))
    assert torch.equal(gx, gx2)  # r W for both
    exact = r.reshape(-1, K).double().t() @ c.reshape(-1, N).double()
    assert_within(gW, exact, grad_bound(r, c))
    assert torch.equal(gb, gb2)
    assert lin(c).shape == (5, 8, K)  # a uint8 input is counts
    assert_within(
        lin(c).detach(),
        F.linear(c.double(), lin.weight.double(), lin.bias.double()),
        forward_bound(c, lin.weight, lin.bias),
    )


def test_spike_linear_layer_counts_errors():
    lin = snn_cuda.SpikeLinear(4, 3, counts=True)
    with pytest.raises(ValueError, match="x must hold integer counts"):
        lin(torch.tensor([[0.0, 1.0, 2.5, 3.0]], requires_grad=True))
    with pytest.raises(ValueError, match="x must hold integer counts"):
        lin(torch.tensor([[0.0, 1.0, 256.0, 3.0]], requires_grad=True))
    with pytest.raises(ValueError, match="binary and counts"):
        snn_cuda.SpikeLinear(4, 3, binary=True, counts=True)
    with pytest.raises(TypeError, match="counts must be a bool"):
        snn_cuda.SpikeLinear(4, 3, counts=1)
    assert "counts=True" in repr(lin)


# ------------------------------------------------------------------------------------------
# NeuronLinear(ILIF, linear)
# ------------------------------------------------------------------------------------------
def _ilif_pair(D, dtype, K, N, linear_cls=snn_cuda.SpikeLinear):
    torch.manual_seed(0)
    kw = dict(tau=2.0, v_threshold=0.5, max_spike_count=D)
    fused = snn_cuda.NeuronLinear(snn_cuda.ILIF(**kw), linear_cls(N, K).to(dtype))
    lin = nn.Linear(N, K).to(dtype)
    lin.load_state_dict(fused.linear.state_dict())
    return fused, snn_cuda.ILIF(**kw), lin


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("D", [1, 4, 255])
@pytest.mark.parametrize("K", [10, FWD_MAX_K + 24])
def test_neuron_linear_ilif_matches_unfused(dtype, D, K):
    T, B, N = 6, 4, 33
    fused, ilif, lin = _ilif_pair(D, dtype, K, N)
    g = torch.Generator().manual_seed(D + K)
    scale = 0.6 * D if D > 1 else 1.0
    x = (torch.randn(T, B, N, generator=g, dtype=F64) * scale + 0.3 * scale).to(dtype).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y = fused(x)
    c = ilif(x2)
    y2 = lin(c)
    assert y.dtype == dtype and y.shape == (T, B, K)
    cu = c.detach().to(torch.uint8)
    assert cu.max() <= D and (D == 1 or cu.max() > 1)  # counts above 1 occur
    assert_within(
        y,
        F.linear(c.detach().double(), lin.weight.double(), lin.bias.double()),
        forward_bound(cu, lin.weight, lin.bias),
    )
    assert torch.equal(fused.neuron.v, ilif.v)
    r = torch.randn(T, B, K, generator=g, dtype=F64).to(dtype)
    gx, gW, gb = torch.autograd.grad((y * r).sum(), (x, fused.linear.weight, fused.linear.bias))
    gx2, gW2, gb2 = torch.autograd.grad((y2 * r).sum(), (x2, lin.weight, lin.bias))
    # the gradient to x: ILIF's straight-through backward of r W, formed by the same GEMM
    torch.testing.assert_close(gx, gx2, rtol=0, atol=0)
    exact = r.reshape(-1, K).double().t() @ cu.reshape(-1, N).double()
    assert_within(gW, exact, grad_bound(r, cu))
    assert torch.equal(gb, gb2)


def test_neuron_linear_ilif_saves_bytes():
    T, B, N, K, D = 16, 8, 64, 10, 255
    fused, ilif, lin = _ilif_pair(D, F32, K, N)
    x = (torch.randn(T, B, N) * 50).requires_grad_()
    s_fused, y = _saved(lambda: fused(x))
    s_unfused, _ = _saved(lambda: lin(ilif(x)))
    n = T * B * N
    assert (torch.uint8, n) in s_fused
    nbytes = lambda s: sum(torch.empty((), dtype=d).element_size() * k for d, k in s)  # noqa: E731
    # the float counts that F.linear keeps become one byte each; nothing else changes
    assert nbytes(s_unfused) - nbytes(s_fused) == n * (4 - 1)
    y.sum().backward()


def test_neuron_linear_ilif_plain_linear_and_no_grad():
    fused, ilif, lin = _ilif_pair(4, F32, 5, 12, linear_cls=nn.Linear)
    x = torch.randn(3, 2, 12) * 3
    with torch.no_grad():
        y = fused(x)
    torch.testing.assert_close(y, lin(ilif(x)))
    fused.neuron.reset()
    x.requires_grad_()
    y = fused(x)
    y.sum().backward()
    assert x.grad is not None and fused.linear.weight.grad is not None


def test_neuron_linear_ilif_single_step():
    torch.manual_seed(0)
    kw = dict(max_spike_count=8, step_mode="s")
    fused = snn_cuda.NeuronLinear(snn_cuda.ILIF(**kw), snn_cuda.SpikeLinear(7, 3))
    ilif = snn_cuda.ILIF(**kw)
    lin = nn.Linear(7, 3)
    lin.load_state_dict(fused.linear.state_dict())
    for t in range(3):
        x = (torch.randn(2, 7) * 4).requires_grad_()
        y, y2 = fused(x), lin(ilif(x))
        torch.testing.assert_close(y, y2, rtol=1e-6, atol=1e-5)
    assert torch.equal(fused.neuron.v, ilif.v)
