"""examples/spiking_transformer.py: the Spikformer on fused neurons computes the same function as on
the reference neurons (bitwise forward, gradients to rounding), `--quick` runs end to end, and the
legacy SpikingJelly part skips cleanly where it cannot run.

The legacy model itself (SpikingJelly 0.0.0.0.12's `clock_driven` API, backend='torch') is checked
against the snn_cuda model when the environment variable SNN_CUDA_LEGACY_SJ_012 (set by .ci/run) names a folder holding
that SpikingJelly (e.g. `pip install --no-deps --target DIR spikingjelly==0.0.0.0.12`); it runs in
a subprocess because the venv's SpikingJelly 2.0 has the same package name."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from testing import GRAD_TOL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "spiking_transformer.py")
LEGACY_SJ = os.environ.get("SNN_CUDA_LEGACY_SJ_012", "")


def _example():
    spec = importlib.util.spec_from_file_location("spiking_transformer_example", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


st = _example()


def _args(**kw):
    base = dict(T=4, dim=32, heads=2, depth=2, mlp_ratio=2, device="cpu", seed=0)
    base.update(kw)
    return argparse.Namespace(**base)


def _run(net, img, label):
    """Logits, every neuron layer's spikes and every parameter's gradient of one training step."""
    spikes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach().clone()))
        for m in net.modules()
        if isinstance(m, st.snn_cuda.MemoryModule)
    ]
    net.reset_state()
    out = net(img)
    torch.nn.functional.cross_entropy(out, label).backward()
    for h in hooks:
        h.remove()
    return out.detach(), spikes, {n: p.grad.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("seed", [0, 1])
def test_fused_model_equals_reference_model(dtype, seed):
    nets = st.same_weights({"fused": st.SnnCudaKit("fused"), "reference": st.SnnCudaKit("torch")}, _args(seed=seed))
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(8, 1, 28, 28, generator=g, dtype=dtype)
    label = torch.randint(0, 10, (8,), generator=g)
    res = {k: _run(net.to(dtype), img, label) for k, net in nets.items()}
    (out_f, spk_f, grad_f), (out_r, spk_r, grad_r) = res["fused"], res["reference"]
    # The fused neurons give the reference's spikes bit for bit from bit-equal inputs, and every
    # other op is the same torch op on the same values: the whole forward is bit-equal.
    assert len(spk_f) == len(spk_r) == 4 + 2 * 7  # 4 LIFs in the SPS, 7 per encoder block
    assert all(bool(s.any()) for s in spk_r), "a neuron layer never fired: the comparison would be vacuous"
    for i, (a, b) in enumerate(zip(spk_f, spk_r)):
        assert torch.equal(a, b), f"spikes of neuron layer {i} differ"
    assert torch.equal(out_f, out_r)
    # Backward: the neuron kernels sum the reference's terms in another order (a few ulps of the
    # state dtype per element, GRAD_TOL as in the layer tests); the ops around them are the same,
    # so each parameter's gradient differs by that much relative to its own largest element.
    rtol, atol = GRAD_TOL[dtype]
    assert grad_f.keys() == grad_r.keys()
    for name in grad_r:
        scale = float(grad_r[name].abs().max())
        assert scale > 0, f"{name}: zero gradient"
        torch.testing.assert_close(grad_f[name], grad_r[name], rtol=rtol, atol=atol * scale, msg=name)


def test_eval_forward_equal():
    nets = st.same_weights({"fused": st.SnnCudaKit("fused"), "reference": st.SnnCudaKit("torch")}, _args(depth=1))
    img = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    outs = []
    for net in nets.values():
        net.eval()
        net.reset_state()
        with torch.no_grad():
            outs.append(net(img))
    assert torch.equal(*outs)


def test_model_rejects_bad_sizes():
    with pytest.raises(ValueError, match="dim"):
        st.Spikformer(st.SnnCudaKit(), dim=30, heads=4)
    with pytest.raises(ValueError, match="heads"):
        st.Spikformer(st.SnnCudaKit(), dim=32, heads=0)


def test_legacy_skip_messages(tmp_path):
    why = st.legacy_unavailable(str(tmp_path))
    assert "no spikingjelly package" in why
    if importlib.util.find_spec("spikingjelly") is not None:
        # the venv's SpikingJelly 2.0 has no clock_driven API
        try:
            has_legacy = importlib.util.find_spec("spikingjelly.clock_driven") is not None
        except ImportError:
            has_legacy = False
        if not has_legacy:
            assert "not importable" in st.legacy_unavailable(None)


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_quick_run(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        # one thread: two OpenMP threads on a shared runner are several times slower
        [sys.executable, SCRIPT, "--quick", "--dataset", "synthetic", "--dim", "32", "--heads", "2", "--threads", "1"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_env(),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SYNTHETIC" in proc.stderr  # says loudly that the accuracy means nothing
    assert "test accuracy after 1 epoch(s)" in proc.stdout
    r = json.loads(out.read_text())
    assert len(r["acc"]) == 1 and 0.0 <= r["acc"][0] <= 100.0
    assert r["throughput"]["fused"] > 0 and r["throughput"]["reference"] > 0
    # same weights and batch, bit-equal forward: the same loss to the last bit
    assert r["first_step_loss"]["equal"] and r["first_step_loss"]["fused"] == r["first_step_loss"]["reference"]
    legacy = r["legacy_spikingjelly"]
    if "skipped" in legacy:
        assert "legacy SpikingJelly part skipped: " + legacy["skipped"] in proc.stdout
    else:
        assert legacy["samples_per_s"]["sj_cupy_patched"] > 0


_LEGACY_CHECK = textwrap.dedent(
    """
    import argparse, importlib.util, json, sys, torch
    spec = importlib.util.spec_from_file_location("ex", sys.argv[1])
    st = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(st)
    args = argparse.Namespace(T=4, dim=32, heads=2, depth=1, mlp_ratio=2, device="cpu", seed=0)
    nets = st.same_weights({"sj": st.LegacySJKit("torch"), "snn": st.SnnCudaKit("fused")}, args)
    g = torch.Generator().manual_seed(0)
    img, label = torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    res = {}
    for k, net in nets.items():
        net.reset_state()
        out = net(img)
        torch.nn.functional.cross_entropy(out, label).backward()
        res[k] = (out.detach(), {n: p.grad for n, p in net.named_parameters()})
    worst = max(
        float((res["sj"][1][n] - res["snn"][1][n]).abs().max() / res["snn"][1][n].abs().max())
        for n in res["snn"][1]
    )
    sys.modules["snn_cuda.compat"] = None  # as before compat existed
    print(json.dumps({
        "forward_equal": bool(torch.equal(res["sj"][0], res["snn"][0])),
        "worst_grad_rel": worst,
        "skip": st.legacy_unavailable(None),
    }))
    """
)


@pytest.mark.skipif(not LEGACY_SJ, reason="set SNN_CUDA_LEGACY_SJ_012 to a folder holding SpikingJelly 0.0.0.0.12")
def test_legacy_torch_model_matches(tmp_path):
    env = _env()
    env["PYTHONPATH"] = LEGACY_SJ + os.pathsep + env["PYTHONPATH"]
    proc = subprocess.run(
        [sys.executable, "-c", _LEGACY_CHECK, SCRIPT], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    # SpikingJelly's torch LIF charges v + (x - v) / tau and fires at v - threshold >= 0, the same
    # IEEE operations as snn_cuda's for v_reset = 0: the same spikes, hence the same logits.
    assert r["forward_equal"], r
    # Its backward is autograd's over the step loop: rounding apart from the fused kernel's.
    assert r["worst_grad_rel"] < GRAD_TOL[torch.float32][0], r
    assert "snn_cuda.compat is not available" in r["skip"], r


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--batch-size", "-1"), ("--lr", "0")])
def test_bad_arguments_named(flag, value):
    proc = subprocess.run(
        [sys.executable, SCRIPT, flag, value], capture_output=True, text=True, timeout=300, env=_env()
    )
    assert proc.returncode == 2 and flag in proc.stderr, proc.stderr
