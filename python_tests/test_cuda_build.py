"""GPU readiness of the build, tested without a GPU (issue 20):

* the arch list: without TORCH_CUDA_ARCH_LIST the build uses the default list whether or not a
  GPU is visible, and build_info records it and where it came from;
* the kernel-image probe and the fallback it drives: the probe's result is injected (the
  `_probe_hook` and the SNN_CUDA_PROBE_ERROR variable) and the decision (auto: the CuPy path, else
  the reference; fused: a clear error) is checked on stand-in CUDA tensors; the probe never runs
  for fake or meta tensors or while tracing;
* NeuronLinear's CUDA path (spikes in x's dtype straight into the GEMM): the same values and
  gradients as neuron + nn.Linear, at the same bytes (the static report's traced count);
* the CUDA sources keep torch out of the .cu files, and the conversion ops have CUDA kernels.
"""

import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import snn_cuda
from snn_cuda import _ext, ops
from snn_cuda import cupy_backend as cb
from snn_cuda import neuron as neuron_mod

ROOT = Path(__file__).resolve().parent.parent
needs_cpu_kernels = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="the fused CPU kernels are not built")
needs_cuda_kernels = pytest.mark.skipif(not _ext.cuda_available(), reason="a build without the CUDA kernels")


def _setup_module():
    spec = importlib.util.spec_from_file_location("snn_setup_under_test", ROOT / "setup.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # main() only runs under __main__
    return mod


# ------------------------------------------------------------------------------------------
# the arch list
# ------------------------------------------------------------------------------------------
def test_arch_list_default_without_the_variable_whatever_the_gpu():
    setup = _setup_module()
    assert setup.cuda_arch_list({}) == setup.DEFAULT_ARCHS
    assert setup.cuda_arch_list({"TORCH_CUDA_ARCH_LIST": "  "}) == setup.DEFAULT_ARCHS
    assert setup.cuda_arch_list({"TORCH_CUDA_ARCH_LIST": "9.0"}) == "9.0"
    archs = setup.DEFAULT_ARCHS.split(";")
    assert archs[0] == "7.5" and "9.0+PTX" in archs, archs  # Turing .. Hopper SASS, PTX for newer GPUs
    assert {"8.0", "8.6", "8.9"} <= set(archs)


def test_build_uses_the_default_list_with_a_visible_gpu(monkeypatch, tmp_path):
    """The old rule (default list only when no GPU is visible) built sm_90 alone on an H100. Here
    torch.cuda.is_available() is forced True and the extension is configured (not compiled): the
    default list is set for the build and recorded as such."""
    setup = _setup_module()
    if torch.version.cuda is None or setup._find_cuda_home() is None:
        pytest.skip("needs a CUDA build of torch and nvcc to configure the CUDA extension")
    import torch.utils.cpp_extension as ce

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(ce, "CUDA_HOME", ce.CUDA_HOME)
    monkeypatch.setenv("CUDA_HOME", setup._find_cuda_home())
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "")
    monkeypatch.setenv("SNN_CUDA_FORCE_CUDA", "1")
    monkeypatch.setattr(setup, "ROOT", tmp_path)
    (tmp_path / "snn_cuda").mkdir()
    exts, _ = setup._ext_modules()
    assert os.environ["TORCH_CUDA_ARCH_LIST"] == setup.DEFAULT_ARCHS
    assert any(s.endswith("convert.cu") for s in exts[0].sources)
    assert any(s.endswith("convert_cuda.cpp") for s in exts[0].sources)
    ns = {}
    exec((tmp_path / "snn_cuda" / "_build_info.py").read_text(), ns)
    info = ns["BUILD_INFO"]
    assert info["cuda_arch_list"] == setup.DEFAULT_ARCHS and info["cuda_arch_list_source"] == "default"
    # set explicitly, it is used and recorded as the builder's
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    setup._ext_modules()
    ns = {}
    exec((tmp_path / "snn_cuda" / "_build_info.py").read_text(), ns)
    assert ns["BUILD_INFO"]["cuda_arch_list"] == "9.0"
    assert ns["BUILD_INFO"]["cuda_arch_list_source"] == "TORCH_CUDA_ARCH_LIST"


def test_build_info_records_the_arch_list():
    built = snn_cuda.build_info()["built_with"]
    if not built.get("with_cuda"):
        pytest.skip("a CPU-only build")
    assert built["cuda_arch_list"], built
    if "cuda_arch_list_source" in built:  # builds from before the field lack it
        assert built["cuda_arch_list_source"] in ("default", "TORCH_CUDA_ARCH_LIST")


# ------------------------------------------------------------------------------------------
# the kernel-image probe and the fallback
# ------------------------------------------------------------------------------------------
@pytest.fixture
def probe_state(monkeypatch):
    """Isolates the probe cache, its warnings, the layers' fallback warnings and the CuPy path's
    registration and probe."""
    _ext.reset_probe()
    monkeypatch.setattr(neuron_mod, "_warned", set())
    saved = cb._probe_result
    was = cb.registered()
    calls = []
    yield calls
    _ext.reset_probe()
    if cb.registered() is not None and was is None:
        cb.unregister()
    cb._probe_result = saved


def _inject(monkeypatch, calls, status):
    def hook(index):
        calls.append(index)
        return status

    monkeypatch.setattr(_ext, "_probe_hook", hook)
    # the stand-in CUDA tensors below are fake tensors; pretend they are real ones
    monkeypatch.setattr(_ext, "probe_allowed", lambda x: True)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)


def _cupy_probe(monkeypatch, reason):
    monkeypatch.setattr(cb, "_probe", lambda: (reason, {"cupy": "14.0.0"}))
    cb.probe(refresh=True)


def _cuda_tensor(index=0):
    with FakeTensorMode(allow_non_fake_inputs=False):
        return torch.empty(4, 3, device=f"cuda:{index}")


def _layers(backend):
    return [
        snn_cuda.LIF(backend=backend),
        snn_cuda.IF(backend=backend),
        snn_cuda.Leaky(beta=0.9, backend=backend),
        snn_cuda.ParametricLIF(backend=backend),
    ]


def test_probe_ok_runs_the_compiled_kernels(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, 0)
    x = _cuda_tensor()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in _layers("auto") + _layers("fused"):
            assert m._use_fused(x, m.surrogate) is True
    assert probe_state == [0], "probed once per device, then cached"
    assert cb.registered() is None


def _probe_warnings(rec):
    return [str(r.message) for r in rec if "compiled CUDA kernels cannot run" in str(r.message)]


def test_missing_image_fused_raises_clearly(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, _ext.NO_KERNEL_IMAGE)
    x = _cuda_tensor()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for m in _layers("fused"):
            with pytest.raises(RuntimeError) as e:
                m._use_fused(x, m.surrogate)
            msg = str(e.value)
            assert "backend='fused' cannot run here" in msg
            assert "no kernel image for this GPU" in msg and "TORCH_CUDA_ARCH_LIST" in msg
            assert "backend='auto'" in msg and "backend='cupy'" in msg
    assert len(_probe_warnings(rec)) == 1, "the probe warns once per device"
    assert probe_state == [0]
    assert cb.registered() is None  # fused never switches the process to the CuPy kernels


def test_missing_image_auto_falls_back_to_cupy(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, _ext.NO_KERNEL_IMAGE)
    _cupy_probe(monkeypatch, "")
    x = _cuda_tensor()
    with pytest.warns(RuntimeWarning, match="no kernel image for this GPU") as rec:
        for m in _layers("auto"):
            assert m._use_fused(x, m.surrogate) is True
    assert len(_probe_warnings(rec)) == 1, "warned once"
    assert cb.registered() == "CUDA" and _ext.cuda_backend() == "cupy"
    # the Poisson encoder takes the same route
    assert _ext.unavailable_reason("cuda", x, "auto") == ""


def test_missing_image_auto_falls_back_to_the_reference(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, _ext.NO_KERNEL_IMAGE)
    _cupy_probe(monkeypatch, "CuPy is not installed or does not import (test)")
    x = _cuda_tensor()
    with pytest.warns(RuntimeWarning) as rec:
        for m in _layers("auto"):
            assert m._use_fused(x, m.surrogate) is False
    msgs = [str(r.message) for r in rec]
    assert any("no kernel image for this GPU" in m and "backend='auto' runs the CuPy path" in m for m in msgs)
    fallback = [m for m in msgs if "falling back to the reference backend" in m]
    assert len(fallback) == 1 and "the CuPy path cannot run either" in fallback[0], msgs
    assert cb.registered() is None


def test_other_probe_errors_are_reported_with_their_code(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, 700)  # cudaErrorIllegalAddress, say
    x = _cuda_tensor()
    with pytest.warns(RuntimeWarning, match=r"cudaError_t 700"):
        with pytest.raises(RuntimeError, match=r"resolving a kernel failed \(cudaError_t 700\)"):
            snn_cuda.LIF(backend="fused")._use_fused(x, snn_cuda.surrogate.ATan())


def test_probe_once_per_device(monkeypatch, probe_state):
    _inject(monkeypatch, probe_state, 0)
    for idx in (0, 1, 0, 1, 1):
        assert _ext.kernel_image_reason(_cuda_tensor(idx)) == ""
    assert sorted(probe_state) == [0, 1]


def test_probe_error_injected_by_environment(monkeypatch, probe_state):
    monkeypatch.setenv(_ext.PROBE_ERROR_ENV, str(_ext.NO_KERNEL_IMAGE))
    assert _ext._probe_device(0) == _ext.NO_KERNEL_IMAGE
    monkeypatch.setattr(_ext, "probe_allowed", lambda x: True)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    with pytest.warns(RuntimeWarning, match="no kernel image"):
        assert "no kernel image for this GPU" in _ext.kernel_image_reason(_cuda_tensor())
    monkeypatch.setenv(_ext.PROBE_ERROR_ENV, "nope")
    with pytest.raises(ValueError, match=_ext.PROBE_ERROR_ENV):
        _ext._probe_device(0)


def test_probe_never_runs_for_fake_or_meta_tensors(monkeypatch, probe_state):
    """Real gating (probe_allowed not replaced): layers run on fake CUDA tensors and on meta
    tensors without the probe being asked."""
    monkeypatch.setattr(_ext, "_probe_hook", lambda i: probe_state.append(i) or _ext.NO_KERNEL_IMAGE)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    with FakeTensorMode(allow_non_fake_inputs=False):
        x = torch.randn(5, 2, 7, device="cuda")
        assert not _ext.probe_allowed(x)
        out = snn_cuda.LIF(backend="fused")(x)
        assert out.shape == x.shape and out.device.type == "cuda"
    m = torch.randn(5, 2, 7, device="meta")
    assert not _ext.probe_allowed(m)
    assert _ext.kernel_image_reason(m) == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snn_cuda.LIF(backend="auto")(m)
    assert probe_state == []


def test_probe_never_runs_while_tracing(monkeypatch, probe_state):
    """torch.compile's tracing is seen as tracing, eager is not; and with only the tracing gate left
    (the stand-in CUDA tensor counted as real), compiling skips the probe, a device already probed
    keeps its answer, and eager probes."""

    def f(t):
        return t + 1, _ext._tracing()

    torch._dynamo.reset()
    try:
        _, traced = torch.compile(f, backend="eager", fullgraph=True)(torch.ones(2))
    finally:
        torch._dynamo.reset()
    assert traced is True and f(torch.ones(2))[1] is False
    with FakeTensorMode():  # a dispatch mode (FakeTensorMode, make_fx's tracer) counts as tracing
        assert _ext._tracing()
    assert not _ext._tracing()

    monkeypatch.setattr(_ext, "_probe_hook", lambda i: probe_state.append(i) or _ext.NO_KERNEL_IMAGE)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    monkeypatch.setattr(_ext, "_is_fake", lambda x: False)
    x = _cuda_tensor()
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _ext.kernel_image_reason(x) == "" and probe_state == []
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    with pytest.warns(RuntimeWarning, match="no kernel image"):
        assert "no kernel image" in _ext.kernel_image_reason(x)
    assert probe_state == [0]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning, none while tracing
        assert "no kernel image" in _ext.kernel_image_reason(x)  # the cached answer
    assert probe_state == [0]


def test_no_probe_without_a_tensor_or_off_cuda(monkeypatch, probe_state):
    monkeypatch.setattr(_ext, "_probe_hook", lambda i: probe_state.append(i) or _ext.NO_KERNEL_IMAGE)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    assert _ext.unavailable_reason("cuda") == ""  # build_info's question: the build, not a device
    assert _ext.kernel_image_reason(torch.ones(2)) == ""
    assert _ext.kernel_image_reason(None) == ""
    assert probe_state == []


@needs_cuda_kernels
def test_probe_op_is_registered_and_checks_its_device():
    """The compiled probe op exists in a CUDA build; without a GPU every index is out of range."""
    if not hasattr(torch.ops.snn_cuda, "cuda_kernel_image_status"):
        pytest.fail("the extension was built before the probe op: rebuild it")
    if torch.cuda.is_available():
        assert torch.ops.snn_cuda.cuda_kernel_image_status(0) in (0, _ext.NO_KERNEL_IMAGE)
    else:
        with pytest.raises(ValueError, match="device must be a CUDA device index"):
            torch.ops.snn_cuda.cuda_kernel_image_status(0)
        with pytest.raises(ValueError, match="device must be a CUDA device index"):
            torch.ops.snn_cuda.cuda_occupancy(0, torch.float32)


@needs_cuda_kernels
def test_every_op_the_layers_call_has_a_cuda_kernel():
    for op in ("neuron_forward", "neuron_backward", "poisson_encode", "binary_to_uint8", "uint8_to"):
        assert _ext.has_kernel(op, "CUDA"), op
    for op in ("spike_linear", "spike_linear_weight_grad", "model_forward", "model_backward"):
        assert _ext.has_kernel(op, "CUDA"), op


def test_cuda_units_keep_torch_out():
    """The .cu units and their headers compile without torch (any toolkit, seconds per unit)."""
    for f in sorted((ROOT / "csrc" / "cuda").glob("*.cu*")) + sorted(
        f for f in (ROOT / "csrc" / "kernels").rglob("*") if f.is_file()
    ):
        for ln in f.read_text().splitlines():
            if ln.lstrip().startswith("#include"):
                assert not re.search(r"torch|ATen|c10", ln), f"{f.name}: {ln}"


def test_fp64_kernels_are_not_held_to_three_blocks():
    """MinBlocks<double> = 3 capped fp64 kernels at 80 registers and every fp64 backward spilled
    (the static report showed 40 B of stack); 2 lets them keep the time chunk in registers."""
    text = (ROOT / "csrc" / "kernels" / "neuron_kernels.cuh").read_text()
    m = re.search(r"struct MinBlocks \{\s*static const int value = (.*?);", text, re.S)
    assert m and "? 2 : 4" in m.group(1), m and m.group(1)


# ------------------------------------------------------------------------------------------
# NeuronLinear on CUDA: spikes in x's dtype into the GEMM
# ------------------------------------------------------------------------------------------
def test_neuron_linear_cuda_decision_is_wide():
    assert ops._wide_spikes(torch.empty(1, device="meta")) is False
    with FakeTensorMode(allow_non_fake_inputs=False):
        assert ops._wide_spikes(torch.empty(1, device="cuda")) is True
    assert ops._wide_spikes(torch.empty(1)) is False


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neuron_linear_cuda_path_equals_neuron_then_linear(monkeypatch, dtype):
    """The CUDA path's ops (float spikes, F.linear, the weight gradient from the saved spikes) run
    here on the CPU with the decision forced: values and every gradient equal neuron + nn.Linear."""
    monkeypatch.setattr(ops, "_wide_spikes", lambda x: True)
    torch.manual_seed(0)
    T, B, N, K = 9, 3, 40, 7
    x = torch.randn(T, B, N, dtype=dtype) * 1.5
    for make in (
        lambda: snn_cuda.Leaky(beta=0.9, return_mem=False, backend="fused"),
        lambda: snn_cuda.LIF(tau=2.0, backend="fused"),
    ):
        torch.manual_seed(1)
        n1, lin1 = make(), torch.nn.Linear(N, K, dtype=dtype)
        nl = snn_cuda.NeuronLinear(make(), snn_cuda.SpikeLinear(N, K, dtype=dtype))
        nl.linear.load_state_dict(lin1.state_dict())
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya = lin1(n1(xa))
        yb = nl(xb)
        torch.testing.assert_close(yb, ya, rtol=0, atol=0)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xb.grad, xa.grad)
        torch.testing.assert_close(nl.linear.weight.grad, lin1.weight.grad)
        torch.testing.assert_close(nl.linear.bias.grad, lin1.bias.grad)
        with torch.no_grad():
            snn_cuda.functional.reset_net(nl)
            snn_cuda.functional.reset_net(n1)
            torch.testing.assert_close(nl(x), lin1(n1(x)), rtol=0, atol=0)


@needs_cpu_kernels
def test_neuron_linear_cuda_bytes_at_most_neuron_plus_linear():
    """The static report's traced count: on CUDA, NeuronLinear moves at most what neuron +
    nn.Linear move through the spike tensor (before: about twice as much)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_static_report as rep

    for dname in ("fp32", "bf16"):
        rows, cuda_uint8 = rep.neuron_linear_traffic(dname, T=4, B=3, N=64, K=5)
        assert cuda_uint8 is False
        by = {r["impl"].split(" (")[0].split(",")[0] + ("/cuda" if "CUDA path" in r["impl"] else ""): r for r in rows}
        ref = by["neuron + nn.Linear"]
        cuda = by["NeuronLinear/cuda"]
        before = next(r for r in rows if r["impl"].startswith("NeuronLinear before"))
        tb = 4 if dname == "fp32" else 2
        assert (ref["fwd_B"], ref["bwd_B"]) == (2 * tb, tb)
        assert cuda["fwd_B"] + cuda["bwd_B"] <= ref["fwd_B"] + ref["bwd_B"]
        assert cuda["fwd_launches"] <= ref["fwd_launches"] and cuda["bwd_launches"] <= ref["bwd_launches"]
        assert before["fwd_B"] + before["bwd_B"] > ref["fwd_B"] + ref["bwd_B"]


def test_convert_kernels_are_in_the_runtime_source():
    from snn_cuda import cuda_source as cs

    assert "convert_kernels.cuh" in cs.source()
    names = cs.name_expressions(["float32"])
    assert "snn::narrow_kernel<float>" in names and "snn::widen_kernel<float>" in names
