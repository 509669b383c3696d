"""The CPU kernels' instruction-set variants (SNN_CUDA_CPU_ISA) and thread counts give the same bits.

Every CPU kernel (neuron rows forward and backward for every model, reset, surrogate, dtype and
parameter kind; checkpoints; the readout backward; byte spikes; the Poisson encoder; the byte
conversions; spike_linear) is compiled once per variant (csrc/cpu/cpu_kernels_impl.h). Each
variant evaluates every element with the same IEEE operations in the same order (no FMA,
-ffp-contract=off, exp as fixed arithmetic, fixed summation orders), so the results are the same
bits whatever the vector width or the blocking that the thread count implies. A battery of cases
runs in one subprocess per (variant, threads) and is compared bit for bit with the widest variant
on 2 threads. Also: the variable's errors, its deprecated alias and build_info()["cpu_isa"].
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import snn_cuda
from snn_cuda import _ext
from snn_cuda import surrogate as sg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

pytestmark = pytest.mark.skipif(not _ext.cpu_available(), reason="no compiled CPU kernels")

_BITS = {
    torch.float32: torch.int32,
    torch.float64: torch.int64,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.uint8: torch.uint8,
}


@functools.lru_cache(maxsize=None)
def supported_variants() -> tuple:
    """The variants this CPU can run, widest first (as the kernels detect them)."""
    out = []
    for v in ("avx512", "avx2", "default"):
        r = subprocess.run(
            [sys.executable, "-c", "import torch, snn_cuda; print(snn_cuda.build_info()['cpu_isa'])"],
            capture_output=True,
            text=True,
            env=dict(os.environ, SNN_CUDA_CPU_ISA=v),
            timeout=300,
        )
        if r.returncode == 0 and r.stdout.strip().splitlines()[-1:] == [v]:
            out.append(v)
    return tuple(out)


# ------------------------------------------------------------------------------------------
# the battery (run in the subprocesses)
# ------------------------------------------------------------------------------------------
def _grads(layer, x, outs, params=()):
    g = torch.Generator().manual_seed(11)
    gy = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    inputs = [x] + [p for p in params]
    return torch.autograd.grad(outs, inputs, gy, allow_unused=True)


def battery() -> dict:
    """name -> tensor, for every kind of CPU kernel call. Shapes give partial vectors at row
    ends and, on 2 threads, several neuron blocks (the blocking follows the thread count)."""
    sys.path.insert(0, str(HERE))
    from testing import CONFIGS, SURROGATES, make_layer, random_input  # noqa: E402

    out = {}
    T, B, F = 9, 3, 1037

    def record(name, layer, x, params=(), T_const=None):
        x = x.detach().clone().requires_grad_(True)
        snn_cuda.functional.reset_net(layer)
        res = layer(x) if T_const is None else layer(x, T=T_const)
        outs = list(res) if isinstance(res, tuple) else [res]
        outs = [o for o in outs if o is not None and o.is_floating_point()]
        if getattr(layer, "v_seq", None) is not None and not isinstance(res, tuple):
            outs.append(layer.v_seq)
        gs = _grads(layer, x, outs, params)
        for i, o in enumerate(outs):
            out[f"{name}/out{i}"] = o.detach()
        for i, gr in enumerate(gs):
            if gr is not None:
                out[f"{name}/grad{i}"] = gr
        snn_cuda.functional.reset_net(layer)

    x32 = random_input((T, B, F), torch.float32, seed=3)
    for cfg in CONFIGS:
        sgs = SURROGATES if cfg.name in ("lif-hard-decay", "leaky-subtract", "if-soft-floor") else SURROGATES[:2]
        for s in sgs:
            for dt in (torch.float32, torch.float64):
                record(f"{cfg.name}/{type(s).__name__}/{dt}", make_layer(cfg, "fused", s), x32.to(dt))
        for dt in (torch.float16, torch.bfloat16):
            record(f"{cfg.name}/ATan/{dt}", make_layer(cfg, "fused", sg.ATan()), x32.to(dt))
        # the same input at every step (x: [B, F], T given)
        record(f"{cfg.name}/const", make_layer(cfg, "fused", sg.Sigmoid()), x32[0], T_const=T)
    # checkpoints instead of a saved sequence, membrane-free Leaky
    for name, layer in (
        ("lif/checkpoint", snn_cuda.LIF(tau=1.7, backend="fused", store_v_seq=False)),
        ("if/checkpoint", snn_cuda.IF(v_threshold=1.1, v_floor=-0.3, backend="fused", store_v_seq=False)),
    ):
        layer.backward_storage = "checkpoint"
        record(name, layer, x32)
    record("leaky/nomem", snn_cuda.Leaky(beta=0.85, backend="fused", return_mem=False, surrogate=sg.Erf()), x32)
    # learnable / per-neuron parameters (their per-neuron gradient sums)
    for dt in (torch.float32, torch.float64):
        for name, layer in (
            ("plif", snn_cuda.ParametricLIF(init_tau=1.7, backend="fused", surrogate=sg.Sigmoid())),
            (
                "plif-per-neuron",
                snn_cuda.ParametricLIF(
                    init_tau=1.7, backend="fused", param_shape=(F,), learn_threshold=True, surrogate=sg.PiecewiseExp()
                ),
            ),
            (
                "lif-learn-th",
                snn_cuda.LIF(tau=1.7, backend="fused", learn_threshold=True, param_shape=(F,), surrogate=sg.Erf()),
            ),
            (
                "leaky-learn",
                snn_cuda.Leaky(
                    beta=0.85, backend="fused", learn_beta=True, learn_threshold=True, surrogate=sg.Sigmoid()
                ),
            ),
        ):
            layer = layer.to(dt)
            record(f"{name}/{dt}", layer, x32.to(dt), params=list(layer.parameters()))
    # NeuronLinear: byte spikes forward, readout backward
    torch.manual_seed(0)
    for K in (10, 16):
        lin = torch.nn.Linear(F, K)
        nl = snn_cuda.NeuronLinear(snn_cuda.Leaky(beta=0.9, backend="fused", return_mem=False), lin)
        record(f"neuron_linear/K{K}", nl, x32, params=list(lin.parameters()))
    # encoder and byte conversions
    g = torch.Generator().manual_seed(5)
    p = torch.rand(B, F, generator=g)
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        enc = torch.ops.snn_cuda.poisson_encode(p.to(dt), T, torch.tensor(1234))
        out[f"poisson/{dt}"] = enc
        out[f"narrow/{dt}"] = torch.ops.snn_cuda.binary_to_uint8(enc)
        out[f"widen/{dt}"] = torch.ops.snn_cuda.uint8_to(out[f"narrow/{dt}"], dt)
    # spike_linear on its kernel paths
    spikes = (torch.rand(T * B, F, generator=g) < 0.3).to(torch.uint8) * torch.randint(
        1, 256, (T * B, F), generator=g, dtype=torch.uint8
    )
    for dt in (torch.float32, torch.float64):
        for K in (1, 10, 13, 40):
            W = torch.randn(K, F, generator=g, dtype=torch.float64).to(dt)
            b = torch.randn(K, generator=g, dtype=torch.float64).to(dt)
            gy = torch.randn(T * B, K, generator=g, dtype=torch.float64).to(dt)
            out[f"spike_linear/{dt}/K{K}"] = torch.ops.snn_cuda.spike_linear(spikes, W, b)
            out[f"spike_linear_wgrad/{dt}/K{K}"] = torch.ops.snn_cuda.spike_linear_weight_grad(gy, spikes)
            # the same bytes as counts 0..255 (multiplied, then added, on every variant)
            out[f"spike_linear_counts/{dt}/K{K}"] = torch.ops.snn_cuda.spike_linear(spikes, W, b, True)
            out[f"spike_linear_counts_wgrad/{dt}/K{K}"] = torch.ops.snn_cuda.spike_linear_weight_grad(gy, spikes, True)
        out[f"counts_to_uint8/{dt}"] = torch.ops.snn_cuda.counts_to_uint8(spikes.to(dt), 255)
    return out


_SCRIPT = r"""
import sys, torch
torch.set_num_threads({threads})
sys.path.insert(0, {here!r})
import snn_cuda, test_isa
out = test_isa.battery()
out["__isa__"] = snn_cuda.build_info()["cpu_isa"]
torch.save(out, {path!r})
"""


def _run(tmp_path, isa, threads):
    path = tmp_path / f"out_{isa or 'auto'}_{threads}.pt"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("SNN_CUDA_CPU_ISA", None)
    env.pop("SNN_CUDA_SPIKE_LINEAR_ISA", None)
    if isa:
        env["SNN_CUDA_CPU_ISA"] = isa
    r = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(threads=threads, here=str(HERE), path=str(path))],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return torch.load(path)


def _assert_same_bits(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    bad = []
    for k in a:
        if k == "__isa__":
            continue
        x, y = a[k], b[k]
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what} {k}"
        if not torch.equal(x.contiguous().view(_BITS[x.dtype]), y.contiguous().view(_BITS[y.dtype])):
            d = (x.double() - y.double()).abs()
            bad.append(
                f"{k}: {int((x != y).sum())} of {x.numel()} differ, max |diff| {float(d.nan_to_num().max()):.3g}"
            )
    assert not bad, f"{what}: {len(bad)} of {len(a) - 1} results differ:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    # the variant this process runs (the widest, or SNN_CUDA_CPU_ISA's when the suite is run under it)
    return _run(tmp_path_factory.mktemp("isa"), snn_cuda.build_info()["cpu_isa"], 2)


def test_battery_is_large():
    # guards the comparison below against a battery that silently shrank
    sys.path.insert(0, str(HERE))
    from testing import CONFIGS

    assert len(CONFIGS) >= 17


@pytest.mark.parametrize("isa", ["avx512", "avx2", "default"])
def test_every_variant_gives_the_same_bits(isa, reference_run, tmp_path):
    if isa not in supported_variants():
        pytest.skip(f"this CPU has no {isa}")
    other = _run(tmp_path, isa, 2)
    assert other["__isa__"] == isa
    _assert_same_bits(reference_run, other, f"{isa} vs {reference_run['__isa__']}")


@pytest.mark.parametrize("isa", ["avx512", "avx2", "default"])
def test_one_thread_gives_the_same_bits(isa, reference_run, tmp_path):
    if isa not in supported_variants():
        pytest.skip(f"this CPU has no {isa}")
    _assert_same_bits(reference_run, _run(tmp_path, isa, 1), f"{isa} on 1 thread vs {reference_run['__isa__']} on 2")


def test_battery_size(reference_run):
    assert reference_run["__isa__"] == snn_cuda.build_info()["cpu_isa"]
    assert len(reference_run) > 500


# ------------------------------------------------------------------------------------------
# the variable
# ------------------------------------------------------------------------------------------
_CALL = (
    "import torch, snn_cuda\n"
    "try:\n"
    "    snn_cuda.LIF(backend='fused')(torch.ones(2, 3))\n"
    "    print('OK', snn_cuda.build_info()['cpu_isa'])\n"
    "except ValueError as e:\n"
    "    print('ERR', e)\n"
)


def _call(**env_vars):
    env = dict(os.environ)
    env.pop("SNN_CUDA_CPU_ISA", None)
    env.pop("SNN_CUDA_SPIKE_LINEAR_ISA", None)
    env.update(env_vars)
    r = subprocess.run([sys.executable, "-c", _CALL], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip(), r.stderr


def test_build_info_names_the_variant():
    assert snn_cuda.build_info()["cpu_isa"] in ("avx512", "avx2", "default")
    assert supported_variants()[0] == _call()[0].split()[-1]


def test_misspelt_variant_is_an_error():
    out, _ = _call(SNN_CUDA_CPU_ISA="sse9")
    assert out.startswith("ERR") and "SNN_CUDA_CPU_ISA must be avx512, avx2 or default, got 'sse9'" in out


def test_missing_variant_is_an_error():
    missing = [v for v in ("avx512", "avx2") if v not in supported_variants()]
    if not missing:
        pytest.skip("this CPU has every variant")
    out, _ = _call(SNN_CUDA_CPU_ISA=missing[0])
    assert out.startswith("ERR") and f"SNN_CUDA_CPU_ISA={missing[0]} but this CPU" in out and "lacks it" in out


def test_default_is_always_available():
    assert _call(SNN_CUDA_CPU_ISA="default")[0] == "OK default"


def test_deprecated_alias():
    out, err = _call(SNN_CUDA_SPIKE_LINEAR_ISA="default")
    assert out == "OK default"
    assert "SNN_CUDA_SPIKE_LINEAR_ISA is deprecated" in err
    # the new variable wins
    assert _call(SNN_CUDA_SPIKE_LINEAR_ISA="sse9", SNN_CUDA_CPU_ISA="default")[0] == "OK default"
