"""The fused Poisson encoder: known values from an independent Philox4x32-10
written here in NumPy, spike statistics, reproducibility, dtypes; and the
spikes -> uint8 narrowing behind SpikeLinear."""

import numpy as np
import pytest
import torch

import snn_cuda

pytestmark = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="no compiled CPU kernels")


def philox4x32_10(counter: int, key: int):
    M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    c = [counter & 0xFFFFFFFF, (counter >> 32) & 0xFFFFFFFF, 0, 0]
    k = [key & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF]
    for _ in range(10):
        p0, p1 = M0 * c[0], M1 * c[2]
        c = [
            ((p1 >> 32) ^ c[1] ^ k[0]) & 0xFFFFFFFF,
            p1 & 0xFFFFFFFF,
            ((p0 >> 32) ^ c[3] ^ k[1]) & 0xFFFFFFFF,
            p0 & 0xFFFFFFFF,
        ]
        k = [(k[0] + W0) & 0xFFFFFFFF, (k[1] + W1) & 0xFFFFFFFF]
    return c


def oracle(x: np.ndarray, T: int, seed: int) -> np.ndarray:
    N = x.size
    flat = x.reshape(-1).astype(np.float32)
    out = np.zeros(T * N, dtype=np.float32)
    for e in range(T * N):
        r = philox4x32_10(e // 4, seed % 2**64)[e % 4]
        u = np.float32(r >> 8) * np.float32(2.0**-24)
        out[e] = 1.0 if u < flat[e % N] else 0.0
    return out.reshape(T, *x.shape)


@pytest.mark.parametrize("shape,T", [((3, 5), 4), ((7,), 3), ((2,), 9), ((2, 3, 3), 2)])
def test_poisson_known_values(shape, T):
    torch.manual_seed(0)
    x = torch.rand(shape)
    x.view(-1)[0] = 0.0
    x.view(-1)[-1] = 1.0
    seed = 0x1234_5678_9ABC_DEF0
    got = torch.ops.snn_cuda.poisson_encode(x, T, torch.tensor(seed))
    want = oracle(x.numpy(), T, seed)
    assert np.array_equal(got.numpy(), want)
    assert (got[:, ...].reshape(T, -1)[:, 0] == 0).all() and (got.reshape(T, -1)[:, -1] == 1).all()


@pytest.mark.parametrize("seed", [0, 1, -1, -(2**63), 2**63 - 1, -0x1234_5678_9ABC_DEF0])
def test_poisson_key_is_the_int64_bits(seed):
    """The key tensor's int64 bits are the Philox key (a negative key is its two's complement)."""
    x = torch.linspace(0, 1, 23)
    got = torch.ops.snn_cuda.poisson_encode(x, 5, torch.tensor([seed]))
    assert np.array_equal(got.numpy(), oracle(x.numpy(), 5, seed % 2**64))


def test_poisson_layer_keeps_its_eager_spikes_for_a_seed():
    """poisson_encode draws its key as it always has (one int64 randint over the full range from
    the generator), now as a tensor: on the CPU a given generator state gives the spikes it gave
    before, which the oracle computes from the key drawn the old way (a Python int)."""
    x = torch.rand(3, 7, generator=torch.Generator().manual_seed(1))
    for s in (0, 3, 12345):
        old_key = int(
            torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64, generator=torch.Generator().manual_seed(s))
        )
        got = snn_cuda.poisson_encode(x, 6, generator=torch.Generator().manual_seed(s))
        assert np.array_equal(got.numpy(), oracle(x.numpy(), 6, old_key % 2**64))
        torch.manual_seed(s)
        assert torch.equal(snn_cuda.poisson_encode(x, 6), got)


def test_poisson_seed_errors():
    x = torch.rand(4)
    with pytest.raises(TypeError, match="seed must be an int64 tensor, got Int"):
        torch.ops.snn_cuda.poisson_encode(x, 2, torch.tensor(1, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"seed must have one element, got shape \[2\]"):
        torch.ops.snn_cuda.poisson_encode(x, 2, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="seed is on meta but x is on cpu"):
        torch.ops.snn_cuda.poisson_encode.default.redispatch(
            torch._C.DispatchKeySet(torch._C.DispatchKey.CPU), x, 2, torch.tensor(1, device="meta")
        )
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        snn_cuda.poisson_encode(x, 2, generator=5)


def test_poisson_statistics_and_reproducibility():
    x = torch.linspace(0, 1, 101)
    torch.manual_seed(3)
    a = snn_cuda.poisson_encode(x, 4000)
    torch.manual_seed(3)
    b = snn_cuda.poisson_encode(x, 4000)
    assert torch.equal(a, b)
    rate = a.mean(0)
    sd = torch.sqrt(x * (1 - x) / 4000).clamp_min(1e-6)
    assert ((rate - x).abs() <= 5 * sd + 1e-6).all()
    torch.manual_seed(4)
    assert not torch.equal(a, snn_cuda.poisson_encode(x, 4000))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_poisson_dtypes(dtype):
    x = torch.tensor([0.0, 1.0, 0.5]).to(dtype)
    s = snn_cuda.poisson_encode(x, 50)
    assert s.dtype == dtype and s.shape == (50, 3)
    assert (s[:, 0] == 0).all() and (s[:, 1] == 1).all()
    assert set(s.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_binary_to_uint8(dtype):
    x = (torch.rand(1000, 70) > 0.5).to(dtype)
    u = torch.ops.snn_cuda.binary_to_uint8(x)
    assert u.dtype == torch.uint8 and torch.equal(u.to(dtype), x)
    back = torch.ops.snn_cuda.uint8_to(u, dtype)
    assert back.dtype == dtype and torch.equal(back, x)
    # Binarity is the caller's knowledge, never checked (on a GPU that is a host sync): any
    # value is narrowed to x != 0, in the full shape its fake kernel promises.
    for v, want in ((0.5, 1), (float("nan"), 1), (-2.0, 1), (-0.0, 0)):
        x[3, 5] = v
        u = torch.ops.snn_cuda.binary_to_uint8(x)
        assert u.shape == x.shape and u[3, 5] == want
        assert torch.equal(u, x.ne(0).to(torch.uint8))
    if dtype == torch.float64:  # compared in the state dtype, not after a float cast
        x[0, 0] = 1e-300
        assert torch.ops.snn_cuda.binary_to_uint8(x)[0, 0] == 1
    y = (torch.rand(4, 6) > 0.5).float().t()  # non-contiguous
    assert torch.equal(torch.ops.snn_cuda.binary_to_uint8(y).float(), y)
