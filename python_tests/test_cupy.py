"""The CuPy path (snn_cuda/cupy_backend.py): the CUDA kernel headers compiled at run time by NVRTC
through CuPy, registered as the CUDA kernels of the snn_cuda ops when the extension has none.

Without a GPU this proves everything but the launch itself:
* the ctypes params structs have g++'s layout of csrc/kernels/params.h / encoder.h (field for
  field), and the Python grid function equals snn::grid_blocks;
* backend selection ("auto" order compiled > CuPy > reference with one warning, "cupy" forced,
  their errors) and lazy registration (importing snn_cuda does not import CuPy);
* the host side, which is the compiled ops' own C++ (csrc/host.h, model_host.h) reached through
  the prepare ops of csrc/prepare.cpp (launch structs of g++'s size, pointing into the outputs and
  the kept tensors; the kernel instance; the ops do call them), by running it against the REAL
  __global__ bodies compiled by g++ through the host shim of python_tests/emulation (a small
  shared library): the CuPy implementations are registered for the CPU key and the usual
  fused-vs-reference matrix of `snn_cuda.check` runs through them; their outputs equal the
  compiled CPU ops', their errors are the compiled ops' errors; opcheck and torch.compile work;
* NVRTC compiles through CuPy's own bindings (the runtime's compile function) for sm_80/sm_90
  (every instance: python_tests/test_nvrtc.py).
On a GPU with CuPy the last tests compare the CuPy path with the compiled kernels and the
reference (also run by `python -m snn_cuda.check`).
"""

import ctypes
import hashlib
import math
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

import snn_cuda
from snn_cuda import _ext, check, cuda_source, cupy_backend as cb, ops
from snn_cuda import neuron as neuron_mod
from snn_cuda import surrogate as sg
from snn_cuda._model_list import MODELS as MODEL_DECLS

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "csrc" / "kernels"
EMU_DIR = ROOT / "python_tests" / "emulation"

needs_cpu_kernels = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="the fused CPU kernels are not built")
HAVE_CUPY = importlib.util.find_spec("cupy") is not None


def _gxx():
    gxx = shutil.which(os.environ.get("CXX_EMU", "g++"))
    if gxx is None:
        pytest.skip("g++ not found")
    return gxx


# ------------------------------------------------------------------------------------------
# params layout and grid: g++ on the C++ headers vs the Python side
# ------------------------------------------------------------------------------------------
_CTYPES = {
    "i64": ctypes.c_longlong,
    "const void*": ctypes.c_void_p,
    "void*": ctypes.c_void_p,
    "int*": ctypes.c_void_p,
    "double": ctypes.c_double,
    "int": ctypes.c_int,
    "unsigned long long": ctypes.c_ulonglong,
    "SeqLayout": cb.SeqLayout,  # nested: its own fields are checked as a struct of its own
}
_STRUCT_FILES = {
    "SeqLayout": "params.h",
    "FwdParams": "params.h",
    "BwdParams": "params.h",
    "PoissonParams": "encoder.h",
    "NarrowParams": "convert.h",
    "WidenParams": "convert.h",
    "MFwdParams": "models.h",  # the declared models' launch structs
    "MBwdParams": "models.h",
}  # all packed by the C++ host code (csrc/prepare.cpp); cupy_backend views them
GRID_CASES = [
    (n, b, sm, bps)
    for n in (0, 1, 255, 256, 257, 4095, 10**6, 2**40 + 7)
    for b in (1, 32, 256, 1024, 2048, 4096)
    for sm in (0, 1, 2, 132)
    for bps in (0, 1, 3, 6, 32)
]


def parse_struct(text: str, name: str):
    """[(field, C type)] of `struct name { ... };` in a kernel header (declarations like
    `double tau, v_th;` and `const void* x;`)."""
    m = re.search(r"struct\s+%s\s*\{(.*?)\n\};" % name, text, re.S)
    assert m, f"struct {name} not found"
    body = re.sub(r"/\*.*?\*/", "", re.sub(r"//[^\n]*", "", m.group(1)), flags=re.S)
    fields = []
    for decl in body.split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        first, *more = [d.strip() for d in decl.split(",")]
        mm = re.match(r"^(.*?)\s*\b([A-Za-z_]\w*)$", first)
        assert mm, decl
        ctype = re.sub(r"\s*\*", "*", mm.group(1).strip())
        fields.append((mm.group(2), ctype))
        fields += [(n.lstrip("*").strip(), ctype) for n in more]
    return fields


@pytest.fixture(scope="module")
def cxx_layout(tmp_path_factory):
    """Runs a g++-compiled program that prints sizeof/offsetof of every parsed field, the block
    and chunk constants and snn::grid_blocks over GRID_CASES."""
    gxx = _gxx()
    structs = {n: parse_struct((KERNELS / f).read_text(), n) for n, f in _STRUCT_FILES.items()}
    lines = [
        "#include <cstdio>",
        "#include <cstddef>",
        '#include "kernels/params.h"',
        '#include "kernels/encoder.h"',
        '#include "kernels/convert.h"',
        '#include "kernels/models.h"',
        "int main() {",
    ]
    for s, fields in structs.items():
        lines.append(f'  std::printf("%s %zu %zu\\n", "{s}", sizeof(snn::{s}), alignof(snn::{s}));')
        for f, _ in fields:
            lines.append(
                f'  std::printf("%s.%s %zu %zu\\n", "{s}", "{f}", offsetof(snn::{s}, {f}), '
                f"sizeof(((snn::{s}*)nullptr)->{f}));"
            )
    lines.append(
        '  std::printf("kBlockThreads %d\\nkChunk %d\\nkConvertVec %d\\n", snn::kBlockThreads, snn::kChunk, '
        "snn::kConvertVec);"
    )
    for n, b, sm, bps in GRID_CASES:
        lines.append(
            f'  std::printf("grid {n} {b} {sm} {bps} %lld\\n", (long long)snn::grid_blocks({n}LL, {b}, {sm}, {bps}));'
        )
    # the default blocks_per_sm (0) is what a caller that passes none gets (the Poisson launcher)
    lines.append('  std::printf("grid3 %lld\\n", (long long)snn::grid_blocks(10000000LL, 256, 3));')
    lines.append("  return 0;\n}")
    d = tmp_path_factory.mktemp("layout")
    src, exe = d / "layout.cpp", d / "layout"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [gxx, "-std=c++17", "-I", str(ROOT / "csrc"), str(src), "-o", str(exe)],
        check=True,
        capture_output=True,
        text=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    vals = {}
    for ln in out.splitlines():
        key, *nums = ln.split(" ") if not ln.startswith("grid") else (ln.rsplit(" ", 1)[0], ln.rsplit(" ", 1)[1])
        vals[key] = [int(v) for v in nums]
    return structs, vals


@pytest.mark.parametrize("name", list(_STRUCT_FILES))
def test_params_layout_matches_cxx(cxx_layout, name):
    """Any field change in params.h / encoder.h fails here until cupy_backend follows."""
    structs, vals = cxx_layout
    py = cb.PARAM_STRUCTS[name]
    cxx_fields = structs[name]
    assert [f for f, _ in py._fields_] == [f for f, _ in cxx_fields], "field names/order differ from the C++ struct"
    assert ctypes.sizeof(py) == vals[name][0], "sizeof differs"
    assert ctypes.alignment(py) == vals[name][1], "alignof differs"
    for (f, ct), (pf, ptype) in zip(cxx_fields, py._fields_):
        off, size = vals[f"{name}.{f}"]
        assert getattr(py, f).offset == off, (f, getattr(py, f).offset, off)
        assert getattr(py, f).size == size, (f, getattr(py, f).size, size)
        assert ct in _CTYPES, f"unknown C type {ct!r} of {name}.{f}: teach this test its ctypes equivalent"
        assert ptype is _CTYPES[ct], (f, ct, ptype)


def test_grid_and_constants_match_cxx(cxx_layout):
    _, vals = cxx_layout
    assert vals["kBlockThreads"] == [cb.BLOCK] and vals["kChunk"] == [ops.CHUNK]
    for n, b, sm, bps in GRID_CASES:
        assert cb.grid_blocks(n, b, sm, bps) == vals[f"grid {n} {b} {sm} {bps}"][0], (n, b, sm, bps)
    assert vals["grid3"] == [cb.grid_blocks(10**7, 256, 3)] == [3 * 8]


def test_grid_is_one_wave_of_the_reported_occupancy():
    """The cap is SMs x blocks/SM (the occupancy API's answer): a kernel that holds 5 blocks of 256
    per SM on 132 SMs gets 660 blocks, one full wave, where the thread-limit cap (8/SM) launched
    1056, 1.6 waves with the last one partial. Below the cap: one thread per item."""
    assert cb.grid_blocks(10**8, 256, 132, 5) == 660
    assert cb.grid_blocks(10**8, 256, 132, 0) == 132 * 8
    assert cb.grid_blocks(1000, 256, 132, 5) == 4
    assert cb.grid_blocks(0, 256, 132, 5) == 1
    for bps in (1, 2, 3, 4, 5, 6, 8):
        g = cb.grid_blocks(10**9, 256, 114, bps)
        assert g == 114 * bps and g / (114 * bps) == 1.0


def test_surrogate_ids_match_the_kernels():
    assert cb.SG_COUNT == len(cuda_source.SURROGATES)
    ids = {type(s).__name__: s.kind_id for s in check.SURROGATES}
    assert sorted(ids.values()) == list(range(cb.SG_COUNT))
    text = (KERNELS / "surrogate_list.h").read_text()  # generated from surrogate.h's declarations
    for i, name in enumerate(cuda_source.SURROGATES):
        assert re.search(rf"\b{name}\s*=\s*{i}\b", text), name


def test_dispatch_names_are_the_nvrtc_name_expressions():
    """Every (model, reset, surrogate, dtype) instance the ops can request is one of the
    name expressions test_nvrtc.py compiles, and nothing else is."""
    assert set(cb.dispatch_names()) == set(cuda_source.name_expressions())
    # per dtype: 7 model/reset combos x (fwd + one bwd per surrogate), Poisson, the two byte
    # conversions, and the declared models' variants x (fwd + SG_ANY bwd); surrogates and variants
    # from the generated list, so a surrogate or model added later edits nothing here
    variants = sum(len(d.variants) for d in MODEL_DECLS.values())
    assert variants >= 7  # Synaptic 3, CUBALIF 2, AdLIF 1, ILIF 1, and any later model's
    assert cb.SG_COUNT >= 10  # the 9 first surrogates, NonzeroSignLogAbs, and any later one
    assert len(cb.dispatch_names()) == 4 * (7 * (1 + cb.SG_COUNT) + 1 + 2 + 2 * variants)
    assert set(cuda_source.model_name_expressions()) <= set(cb.dispatch_names())
    assert cb.Kernel("model_bwd", 2, cb.SG_ANY, "float64").name == (
        "snn::model_bwd_kernel<snn::AdLif, 0, snn::SG_ANY, double>"
    )
    assert cb.Kernel("model_fwd", 0, 0, "float16", 2).name == "snn::model_fwd_kernel<snn::Synaptic, 2, snn::half_t>"
    assert cb.Kernel("fwd", 1, 0, "float32").name == "snn::neuron_fwd_kernel<snn::MODEL_LIF, snn::RESET_SOFT, float>"


_MODEL_ENUMS = {ops.MODEL_LIF: "MODEL_LIF", ops.MODEL_IF: "MODEL_IF", ops.MODEL_LEAKY: "MODEL_LEAKY"}
_RESET_ENUMS = {ops.RESET_HARD: "RESET_HARD", ops.RESET_SOFT: "RESET_SOFT", ops.RESET_NONE: "RESET_NONE"}


def _combo(model: int, reset: int) -> int:
    """The compiled instance of an op-level (model, reset), by the kernels' enum names
    (ParametricLIF runs the LIF kernels)."""
    m = _MODEL_ENUMS[ops.MODEL_LIF if model == ops.MODEL_PLIF else model]
    return cuda_source.MODELS.index((m, _RESET_ENUMS[reset]))


@needs_cpu_kernels
def test_prepare_ops_name_the_compiled_instances():
    """The kernel instance comes from the C++ host code (combo_index, the dtype, the surrogate):
    every (model, reset) the ops accept is the instance of its enum names, each dtype its own, each
    surrogate its own backward, and the pairs they reject are the ones no instance exists for."""
    accepted = set()
    x = torch.randn(3, 4)
    for model in (ops.MODEL_LIF, ops.MODEL_IF, ops.MODEL_LEAKY, ops.MODEL_PLIF):
        for reset in (ops.RESET_HARD, ops.RESET_SOFT, ops.RESET_NONE):
            kw = dict(model=model, reset=reset, v_init=0.0)
            if model == ops.MODEL_PLIF:
                kw["decay_param"] = torch.full((1,), 0.6)
            fa = _fwd_args(x, **kw)
            try:
                prep = cb.prepare_neuron_forward(*fa.values())
            except ValueError as e:
                assert "is not a compiled neuron" in str(e), str(e)
                continue
            accepted.add((model, reset))
            assert prep.kernel.kind == "fwd" and prep.kernel.combo == _combo(model, reset), (model, reset)
            saved = prep.outputs[1]
            for s in range(cb.SG_COUNT):
                ba = _bwd_args(fa, saved, torch.ones(3, 4), None, surrogate=s)
                k = cb.prepare_neuron_backward(*ba.values()).kernel
                assert (k.kind, k.combo, k.sg, k.dtype) == ("bwd", _combo(model, reset), s, "float32")
                assert k.name in cuda_source.name_expressions(["float32"])
    assert accepted == {(m, r) for m in (0, 1, 3) for r in (0, 1)} | {(2, 0), (2, 1), (2, 2)}
    for dt, name in cb.DTYPE_NAMES.items():
        xd = torch.rand(2, 3).to(dt)
        sdt = torch.float64 if dt == torch.float64 else torch.float32
        assert cb.prepare_neuron_forward(*_fwd_args(xd).values()).kernel.dtype == name
        ba = _bwd_args(_fwd_args(xd), torch.zeros(2, 3, dtype=sdt), None, None)
        assert cb.prepare_neuron_backward(*ba.values()).kernel.dtype == name
        assert cb.prepare_poisson(xd, 2, torch.tensor(1)).kernel == cb.Kernel("poisson", 0, 0, name)
        assert cb.prepare_narrow(xd).kernel == cb.Kernel("narrow", 0, 0, name)
        assert cb.prepare_widen(xd.byte(), dt).kernel == cb.Kernel("widen", 0, 0, name)


# ------------------------------------------------------------------------------------------
# import stays lazy and never fails
# ------------------------------------------------------------------------------------------
def _py(code: str, **env):
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=180)


def test_import_does_not_import_cupy():
    r = _py(
        "import sys, snn_cuda; assert 'cupy' not in sys.modules, 'cupy imported'; "
        "import snn_cuda.cupy_backend; assert 'cupy' not in sys.modules; print('ok')"
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-3000:]


def test_import_never_fails_without_cupy_or_extension(tmp_path):
    # a "cupy" that raises on import: snn_cuda imports, build_info says why
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("raise ImportError('broken cupy for the test')\n")
    code = (
        "import snn_cuda, json; i = snn_cuda.build_info(); print(json.dumps(i['cupy'])); "
        "assert i['cupy']['available'] is False"
    )
    r = _py(code, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "broken cupy for the test" in r.stdout
    r = _py(code, SNN_CUDA_DISABLE_EXTENSION="1")
    assert r.returncode == 0, r.stderr[-3000:]
    r = _py(code, SNN_CUDA_DISABLE_CUPY="1")
    assert r.returncode == 0 and "SNN_CUDA_DISABLE_CUPY" in r.stdout, r.stderr[-3000:]


# ------------------------------------------------------------------------------------------
# backend selection (CuPy and the GPU simulated by monkeypatching)
# ------------------------------------------------------------------------------------------
class _FakeCudaTensor:
    dtype = torch.float32
    device = torch.device("cuda", 0)


class _FakeCpuTensor:
    dtype = torch.float32
    device = torch.device("cpu")


LAYERS = {
    "lif": lambda **kw: snn_cuda.LIF(**kw),
    "if": lambda **kw: snn_cuda.IF(**kw),
    "leaky": lambda **kw: snn_cuda.Leaky(beta=0.9, **kw),
}


@pytest.fixture(autouse=True)
def _starts_unregistered():
    """Every test here starts with the CuPy kernels registered for no key, as they assume: a
    CPU-only build beside a CUDA torch and CuPy registers them for CUDA at import
    (_ext._register_cupy_at_import), which is undone for the test and restored after it."""
    was = cb.registered()
    if was is not None:
        cb.unregister()
    yield
    if was is not None and cb.registered() is None:
        cb.register(was)


@pytest.fixture
def cupy_state(monkeypatch):
    """Isolates the CuPy path's global state (probe cache, registration, warnings)."""
    saved = cb._probe_result
    monkeypatch.setattr(neuron_mod, "_warned", set())
    monkeypatch.setattr(_ext, "_cupy_forced_warned", False)
    was = cb.registered()
    yield
    if cb.registered() is not None and was is None:
        cb.unregister()
    cb._probe_result = saved


def _set_probe(monkeypatch, reason: str):
    monkeypatch.setattr(cb, "_probe", lambda: (reason, {"cupy": "13.9.9" if "not installed" not in reason else None}))
    cb.probe(refresh=True)


CUPY_MISSING = (
    f"CuPy is not installed or does not import (ModuleNotFoundError: No module named 'cupy'); {cb.CUPY_INSTALL_HINT}"
)
NO_GPU = "no CUDA device is visible (torch.cuda.is_available() is False)"


def _dispatch_cuda_source():
    dump = torch._C._dispatch_dump("snn_cuda::neuron_forward")
    return next((ln for ln in dump.splitlines() if ln.startswith("CUDA:")), "")


@pytest.mark.parametrize("kind", list(LAYERS))
def test_auto_without_compiled_or_cupy_warns_once_how_to_get_fast_paths(monkeypatch, cupy_state, kind):
    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    _set_probe(monkeypatch, CUPY_MISSING)
    m = LAYERS[kind]()
    with pytest.warns(RuntimeWarning) as rec:
        assert m._use_fused(_FakeCudaTensor(), m.surrogate) is False
        assert m._use_fused(_FakeCudaTensor(), m.surrogate) is False
        assert LAYERS[kind]()._use_fused(_FakeCudaTensor(), m.surrogate) is False
    msgs = [str(r.message) for r in rec if "snn_cuda" in str(r.message)]
    assert len(msgs) == 1, msgs
    msg = msgs[0]
    assert "falling back to the reference backend" in msg
    assert 'pip install "snn_cuda[cupy]"' in msg and "nvcc" in msg and "SNN_CUDA_FORCE_CUDA=1" in msg
    assert "CuPy is not installed" in msg


def test_fused_without_compiled_or_cupy_raises(monkeypatch, cupy_state):
    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    _set_probe(monkeypatch, NO_GPU)
    m = snn_cuda.LIF(backend="fused")
    with pytest.raises(RuntimeError, match=r"backend='fused' cannot run here: .*without CUDA kernels.*no CUDA device"):
        m._use_fused(_FakeCudaTensor(), m.surrogate)


@pytest.mark.parametrize(
    "reason,pattern",
    [(CUPY_MISSING, r"CuPy is not installed.*snn_cuda\[cupy\]"), (NO_GPU, r"no CUDA device is visible")],
)
def test_forced_cupy_raises_clearly(monkeypatch, cupy_state, reason, pattern):
    _set_probe(monkeypatch, reason)
    for kind in LAYERS:
        m = LAYERS[kind](backend="cupy")
        with pytest.raises(RuntimeError, match=r"backend='cupy' cannot run here: " + pattern):
            m._use_fused(_FakeCudaTensor(), m.surrogate)
    assert cb.registered() is None


def test_forced_cupy_on_cpu_tensor_raises(cupy_state):
    m = snn_cuda.LIF(backend="cupy")
    with pytest.raises(RuntimeError, match=r"backend='cupy' cannot run here: the CuPy path runs CUDA tensors only"):
        m._use_fused(_FakeCpuTensor(), m.surrogate)

    # a Python surrogate: the reference only, also with 'cupy'
    class MySig(sg.SurrogateFunction):
        def derivative(self, z):
            return torch.ones_like(z)

    m = snn_cuda.LIF(backend="cupy", surrogate=MySig())
    with pytest.raises(RuntimeError, match="reference backend only"):
        m._use_fused(_FakeCudaTensor(), m.surrogate)


@needs_cpu_kernels
def test_auto_without_compiled_kernels_uses_cupy(monkeypatch, cupy_state):
    """The order on CUDA: compiled kernels, else CuPy (registered for the CUDA key), else the
    reference. Unregistering restores the compiled kernels (this build has them)."""
    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    _set_probe(monkeypatch, "")
    assert cb.registered() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in LAYERS:
            m = LAYERS[kind]()
            assert m._use_fused(_FakeCudaTensor(), m.surrogate) is True
            assert LAYERS[kind](backend="fused")._use_fused(_FakeCudaTensor(), m.surrogate) is True
    assert cb.registered() == "CUDA"
    assert _ext.unavailable_reason("cuda") == "" and _ext.cuda_backend() == "cupy"
    info = snn_cuda.build_info()
    assert info["cuda"] is False and info["cuda_backend"] == "cupy" and info["cupy"]["registered_for"] == "CUDA"
    assert "cupy_backend.py" in _dispatch_cuda_source()
    cb.unregister()
    if _ext.has_kernel("neuron_forward", "CUDA"):
        assert "neuron_cuda.cpp" in _dispatch_cuda_source()


def test_import_time_registration_only_without_compiled_cuda_kernels(monkeypatch, cupy_state):
    """Registering at import (cheap: CuPy is not imported) happens only when the extension has
    no CUDA kernels, torch is a CUDA build and CuPy is installed, unless SNN_CUDA_DISABLE_CUPY."""
    monkeypatch.setattr(_ext, "_cupy_installed", lambda: True)
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    _ext._register_cupy_at_import()
    assert cb.registered() is None
    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    monkeypatch.setenv("SNN_CUDA_DISABLE_CUPY", "1")
    _ext._register_cupy_at_import()
    assert cb.registered() is None
    assert _ext.cupy_reason() == "disabled by SNN_CUDA_DISABLE_CUPY"
    monkeypatch.delenv("SNN_CUDA_DISABLE_CUPY")
    monkeypatch.setattr(_ext, "_cupy_installed", lambda: False)
    _ext._register_cupy_at_import()
    assert cb.registered() is None
    monkeypatch.setattr(_ext, "_cupy_installed", lambda: True)
    if torch.version.cuda is None:
        pytest.skip("torch is not a CUDA build")
    mods = set(sys.modules)
    _ext._register_cupy_at_import()
    assert cb.registered() == "CUDA" and _ext.cupy_register_error is None
    assert not any(m == "cupy" or m.startswith("cupy.") for m in set(sys.modules) - mods)


@needs_cpu_kernels
def test_forced_cupy_replaces_compiled_kernels_with_a_warning(monkeypatch, cupy_state):
    monkeypatch.setattr(_ext, "_CUDA_OK", True)
    _set_probe(monkeypatch, "")
    m = snn_cuda.Leaky(beta=0.5, backend="cupy")
    with pytest.warns(RuntimeWarning, match="CuPy-compiled kernels now serve every CUDA call"):
        assert m._use_fused(_FakeCudaTensor(), m.surrogate) is True
    assert cb.registered() == "CUDA" and _ext.cuda_backend() == "cupy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        assert m._use_fused(_FakeCudaTensor(), m.surrogate) is True
    # auto on CUDA still runs (now the CuPy kernels); the CPU keeps its compiled kernels
    assert snn_cuda.LIF()._use_fused(_FakeCudaTensor(), sg.ATan()) is True
    assert snn_cuda.LIF()._use_fused(_FakeCpuTensor(), sg.ATan()) is True


def test_cupy_backend_is_a_valid_choice_everywhere():
    net = torch.nn.Sequential(snn_cuda.LIF(), snn_cuda.Leaky(beta=0.5))
    snn_cuda.functional.set_backend(net, "cupy")
    assert all(m.backend == "cupy" for m in net)
    assert "backend='cupy'" in repr(net[0])
    with pytest.raises(ValueError, match="backend must be one of"):
        snn_cuda.LIF(backend="cuda")


def test_build_info_reports_the_cupy_path():
    info = snn_cuda.build_info()
    c = info["cupy"]
    for key in ("installed", "available", "reason", "registered_for"):
        assert key in c, key
    assert c["installed"] == HAVE_CUPY
    if not torch.cuda.is_available():
        assert c["available"] is False and c["reason"]
        if HAVE_CUPY:  # here: CuPy imports without a GPU; the versions it found are reported
            assert c["cupy"] and c["nvrtc"] and "no CUDA device" in c["reason"]
        else:
            assert "not installed" in c["reason"] and "snn_cuda[cupy]" in c["reason"]
    assert info["cuda_backend"] in ("compiled", "cupy", None)


def test_nvrtc_arch_choice():
    sup = (75, 80, 86, 87, 89, 90, 100, 120)
    assert cb.nvrtc_arch(90, sup) == "sm_90" and cb.nvrtc_arch(80, sup) == "sm_80"
    assert cb.nvrtc_arch(95, sup) == "compute_90"  # unknown newer GPU: PTX the driver JITs
    assert cb.nvrtc_arch(130, sup) == "compute_120"
    with pytest.raises(RuntimeError, match="older than every architecture"):
        cb.nvrtc_arch(70, sup)


# ------------------------------------------------------------------------------------------
# NVRTC through CuPy's bindings: the runtime's own compile function, no GPU needed
# ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_CUPY, reason="CuPy is not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_cupy_nvrtc_compiles_the_runtime_source(arch, tmp_path, monkeypatch):
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as e:
        pytest.skip(f"CuPy's NVRTC is not loadable: {e}")
    inc = cb._cuda_include_dir(__import__("cupy"))
    if inc is None:
        pytest.skip("no cuda_fp16.h for NVRTC")
    monkeypatch.setenv("SNN_CUDA_CUPY_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cb, "_binaries", {})
    kernels = [
        cb.Kernel("fwd", 0, 0, "float32"),
        cb.Kernel("bwd", 5, 1, "bfloat16"),
        cb.Kernel("bwd", 3, 8, "float16"),
        cb.Kernel("fwd", 2, 0, "float64"),
        cb.Kernel("poisson", 0, 0, "float16"),
    ]
    for k in kernels:
        lowered, binary = cb.compile_kernel(k.name, arch, inc)
        assert lowered.startswith("_ZN3snn") and len(binary) > 1000
        assert binary[:4] == b"\x7fELF", "sm_XX must give a CUBIN"
    files = list(tmp_path.glob("*.bin"))
    assert len(files) == len(kernels)
    # the disk cache answers the next process (here: a cleared memory cache)
    cb._binaries.clear()
    before = {f: f.stat().st_mtime_ns for f in files}
    assert cb.compile_kernel(kernels[1].name, arch, inc)[0].startswith("_ZN3snn")
    assert {f: f.stat().st_mtime_ns for f in files} == before
    # PTX for a GPU newer than NVRTC knows
    low, ptx = cb.compile_kernel(kernels[0].name, "compute_" + arch[3:], inc)
    assert b".entry " + low.encode() in ptx
    # denormals are kept: no .ftz in the SASS-bound PTX of a float kernel
    assert b".ftz" not in ptx.replace(b"ex2.approx.ftz", b"")


def test_runtime_source_follows_the_headers(tmp_path, monkeypatch):
    """The run-time source names the kernel headers by include path and carries their digest
    (the disk cache key), so editing a header changes the key."""
    src = cuda_source.runtime_source()
    assert '#include "neuron_kernels.cuh"' in src and cuda_source.headers_digest() in src
    # a comment and one #include per kernel file: no header text pasted in
    assert len(src.splitlines()) == 1 + len(cuda_source.KERNEL_FILES)
    assert all(ln.startswith(("//", "#include")) for ln in src.splitlines())
    copy = tmp_path / "kernels"
    shutil.copytree(KERNELS, copy)
    monkeypatch.setattr(cuda_source, "kernel_dir", lambda: copy)
    d0 = cuda_source.headers_digest()
    (copy / "params.h").write_text((copy / "params.h").read_text() + "\n// edited\n")
    assert cuda_source.headers_digest() != d0
    opts = cuda_source.runtime_options("sm_90", "/cuda/include")
    assert f"--include-path={copy}" in opts and "--fmad=false" in opts and "--ftz=false" in opts


# ------------------------------------------------------------------------------------------
# the Python host side against the real __global__ bodies (g++ host emulation)
# ------------------------------------------------------------------------------------------
_EMU_SRC = r"""
// The real __global__ bodies, compiled by g++ through the host shim, behind a C ABI that takes
// the params struct exactly as the CuPy path packs it.
#include "host_shim.h"
#include "kernels/neuron_kernels.cuh"
#include "kernels/encoder_kernels.cuh"
#include "kernels/convert_kernels.cuh"
#include "kernels/model_kernels.cuh"
#include <utility>
using namespace snn;
template <int M, int R, typename T> void fwd(const FwdParams& p, unsigned g) {
  emu_launch(neuron_fwd_kernel<M, R, T>, dim3(g), dim3(kBlockThreads), p); }
template <int M, int R, int SG, typename T> void bwd(const BwdParams& p, unsigned g) {
  emu_launch(neuron_bwd_kernel<M, R, SG, T>, dim3(g), dim3(kBlockThreads), p); }
// One case per surrogate from the generated list, so a surrogate added later is launched too.
template <int M, int R, typename T> int bwd_sg(const BwdParams& p, int sg, unsigned g) {
#define EMU_SG(id, E) if (sg == id) { bwd<M, R, E, T>(p, g); return 0; }
  SNN_SURROGATE_LIST(EMU_SG)
#undef EMU_SG
  return 1;
}
template <typename T> int fwd_t(const FwdParams& p, int c, unsigned g) {
  switch (c) {
    case 0: fwd<MODEL_LIF, RESET_HARD, T>(p, g); return 0;   case 1: fwd<MODEL_LIF, RESET_SOFT, T>(p, g); return 0;
    case 2: fwd<MODEL_IF, RESET_HARD, T>(p, g); return 0;    case 3: fwd<MODEL_IF, RESET_SOFT, T>(p, g); return 0;
    case 4: fwd<MODEL_LEAKY, RESET_HARD, T>(p, g); return 0; case 5: fwd<MODEL_LEAKY, RESET_SOFT, T>(p, g); return 0;
    case 6: fwd<MODEL_LEAKY, RESET_NONE, T>(p, g); return 0;
  }
  return 1;
}
template <typename T> int bwd_t(const BwdParams& p, int c, int sg, unsigned g) {
  switch (c) {
    case 0: return bwd_sg<MODEL_LIF, RESET_HARD, T>(p, sg, g);   case 1: return bwd_sg<MODEL_LIF, RESET_SOFT, T>(p, sg, g);
    case 2: return bwd_sg<MODEL_IF, RESET_HARD, T>(p, sg, g);    case 3: return bwd_sg<MODEL_IF, RESET_SOFT, T>(p, sg, g);
    case 4: return bwd_sg<MODEL_LEAKY, RESET_HARD, T>(p, sg, g); case 5: return bwd_sg<MODEL_LEAKY, RESET_SOFT, T>(p, sg, g);
    case 6: return bwd_sg<MODEL_LEAKY, RESET_NONE, T>(p, sg, g);
  }
  return 1;
}
extern "C" int emu_fwd(const FwdParams* p, int dt, int c, unsigned g) {
  switch (dt) { case 0: return fwd_t<float>(*p, c, g); case 1: return fwd_t<double>(*p, c, g);
                case 2: return fwd_t<half_t>(*p, c, g); case 3: return fwd_t<bf16_t>(*p, c, g); }
  return 1;
}
extern "C" int emu_bwd(const BwdParams* p, int dt, int c, int sg, unsigned g) {
  switch (dt) { case 0: return bwd_t<float>(*p, c, sg, g); case 1: return bwd_t<double>(*p, c, sg, g);
                case 2: return bwd_t<half_t>(*p, c, sg, g); case 3: return bwd_t<bf16_t>(*p, c, sg, g); }
  return 1;
}
extern "C" int emu_poisson(const PoissonParams* p, int dt, unsigned g) {
  switch (dt) {
    case 0: emu_launch(poisson_kernel<float>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 1: emu_launch(poisson_kernel<double>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 2: emu_launch(poisson_kernel<half_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 3: emu_launch(poisson_kernel<bf16_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
  }
  return 1;
}
extern "C" int emu_narrow(const NarrowParams* p, int dt, unsigned g) {
  switch (dt) {
    case 0: emu_launch(narrow_kernel<float>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 1: emu_launch(narrow_kernel<double>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 2: emu_launch(narrow_kernel<half_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 3: emu_launch(narrow_kernel<bf16_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
  }
  return 1;
}
extern "C" int emu_widen(const WidenParams* p, int dt, unsigned g) {
  switch (dt) {
    case 0: emu_launch(widen_kernel<float>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 1: emu_launch(widen_kernel<double>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 2: emu_launch(widen_kernel<half_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
    case 3: emu_launch(widen_kernel<bf16_t>, dim3(g), dim3(kBlockThreads), *p); return 0;
  }
  return 1;
}
// The declared models: model id (model_list.h) x variant, the backward SG_ANY as NVRTC compiles it.
template <class M, typename T, int... Vs>
int mfwd_v(const MFwdParams& p, int v, unsigned g, std::integer_sequence<int, Vs...>) {
  int rc = 1;
  ((v == Vs ? (void)(emu_launch(model_fwd_kernel<M, Vs, T>, dim3(g), dim3(kBlockThreads), p), rc = 0) : (void)0), ...);
  return rc;
}
template <class M, typename T, int... Vs>
int mbwd_v(const MBwdParams& p, int v, unsigned g, std::integer_sequence<int, Vs...>) {
  int rc = 1;
  ((v == Vs ? (void)(emu_launch(model_bwd_kernel<M, Vs, SG_ANY, T>, dim3(g), dim3(kBlockThreads), p), rc = 0)
            : (void)0), ...);
  return rc;
}
template <typename T> int mfwd_t(const MFwdParams& p, int m, int v, unsigned g) {
#define EMU_M(id, M, ...) if (m == id) return mfwd_v<M, T>(p, v, g, std::make_integer_sequence<int, M::kVariants>{});
  SNN_MODEL_LIST(EMU_M)
#undef EMU_M
  return 1;
}
template <typename T> int mbwd_t(const MBwdParams& p, int m, int v, unsigned g) {
#define EMU_M(id, M, ...) if (m == id) return mbwd_v<M, T>(p, v, g, std::make_integer_sequence<int, M::kVariants>{});
  SNN_MODEL_LIST(EMU_M)
#undef EMU_M
  return 1;
}
extern "C" int emu_model_fwd(const MFwdParams* p, int dt, int m, int v, unsigned g) {
  switch (dt) { case 0: return mfwd_t<float>(*p, m, v, g); case 1: return mfwd_t<double>(*p, m, v, g);
                case 2: return mfwd_t<half_t>(*p, m, v, g); case 3: return mfwd_t<bf16_t>(*p, m, v, g); }
  return 1;
}
extern "C" int emu_model_bwd(const MBwdParams* p, int dt, int m, int v, unsigned g) {
  switch (dt) { case 0: return mbwd_t<float>(*p, m, v, g); case 1: return mbwd_t<double>(*p, m, v, g);
                case 2: return mbwd_t<half_t>(*p, m, v, g); case 3: return mbwd_t<bf16_t>(*p, m, v, g); }
  return 1;
}
extern "C" unsigned long long emu_threads() { return emu_launch_stats().threads; }
"""
_EMU_FLAGS = ["-std=c++17", "-O0", "-ffp-contract=off", "-fPIC", "-shared"]
_DT_CODE = {"float32": 0, "float64": 1, "float16": 2, "bfloat16": 3}


@pytest.fixture(scope="session")
def emu_lib():
    """The emulated kernels as a shared library, cached by the hash of everything it is built
    from (about 6 s to build)."""
    gxx = _gxx()
    if not (EMU_DIR / "host_shim.h").is_file():
        pytest.skip("python_tests/emulation/host_shim.h missing")
    h = hashlib.sha256()
    for part in [_EMU_SRC.encode(), " ".join([gxx] + _EMU_FLAGS).encode(), (EMU_DIR / "host_shim.h").read_bytes()]:
        h.update(part)
    for f in sorted(f for f in KERNELS.rglob("*") if f.is_file()):
        h.update(str(f.relative_to(KERNELS)).encode() + f.read_bytes())
    d = Path(tempfile.gettempdir()) / "snn_cuda_test_cupy_emu" / h.hexdigest()[:24]
    so = d / "emu_kernels.so"
    if not so.exists():
        d.mkdir(parents=True, exist_ok=True)
        src = d / "emu_kernels.cpp"
        src.write_text(_EMU_SRC)
        tmp = d / f".emu_{os.getpid()}.so"
        r = subprocess.run(
            [gxx, *_EMU_FLAGS, "-I", str(ROOT / "csrc"), "-I", str(EMU_DIR), str(src), "-o", str(tmp)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-4000:]
        os.replace(tmp, so)
    lib = ctypes.CDLL(str(so))
    lib.emu_fwd.argtypes = [ctypes.POINTER(cb.FwdParams), ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    lib.emu_bwd.argtypes = [ctypes.POINTER(cb.BwdParams), ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    lib.emu_poisson.argtypes = [ctypes.POINTER(cb.PoissonParams), ctypes.c_int, ctypes.c_uint]
    lib.emu_narrow.argtypes = [ctypes.POINTER(cb.NarrowParams), ctypes.c_int, ctypes.c_uint]
    lib.emu_widen.argtypes = [ctypes.POINTER(cb.WidenParams), ctypes.c_int, ctypes.c_uint]
    lib.emu_model_fwd.argtypes = [ctypes.POINTER(cb.MFwdParams)] + [ctypes.c_int] * 3 + [ctypes.c_uint]
    lib.emu_model_bwd.argtypes = [ctypes.POINTER(cb.MBwdParams)] + [ctypes.c_int] * 3 + [ctypes.c_uint]
    lib.emu_threads.restype = ctypes.c_ulonglong
    return lib


class EmuLauncher:
    """Stands in for the CuPy launch: same (kernel, work items, params) interface, the grid of
    grid_blocks(n, 256, sm_count, blocks_per_sm) (a small SM count and an occupancy of 3 blocks
    per SM, as a register-limited kernel has, wrap the grid-stride loops)."""

    def __init__(self, lib, sm_count=2, blocks_per_sm=3):
        self.lib, self.sm_count, self.blocks_per_sm, self.launches = lib, sm_count, blocks_per_sm, []

    def __call__(self, kernel, n, params, device):
        assert device.type == "cpu"
        grid = cb.grid_blocks(n, cb.BLOCK, self.sm_count, self.blocks_per_sm)
        self.launches.append((kernel, n, grid))
        dt = _DT_CODE[kernel.dtype]
        if kernel.kind == "fwd":
            rc = self.lib.emu_fwd(ctypes.byref(params), dt, kernel.combo, grid)
        elif kernel.kind == "bwd":
            rc = self.lib.emu_bwd(ctypes.byref(params), dt, kernel.combo, kernel.sg, grid)
        elif kernel.kind == "narrow":
            rc = self.lib.emu_narrow(ctypes.byref(params), dt, grid)
        elif kernel.kind == "widen":
            rc = self.lib.emu_widen(ctypes.byref(params), dt, grid)
        elif kernel.kind == "model_fwd":
            assert isinstance(params, cb.MFwdParams)
            rc = self.lib.emu_model_fwd(ctypes.byref(params), dt, kernel.combo, kernel.variant, grid)
        elif kernel.kind == "model_bwd":
            assert isinstance(params, cb.MBwdParams) and kernel.sg == cb.SG_ANY
            rc = self.lib.emu_model_bwd(ctypes.byref(params), dt, kernel.combo, kernel.variant, grid)
        else:
            rc = self.lib.emu_poisson(ctypes.byref(params), dt, grid)
        assert rc == 0, kernel


@pytest.fixture
def emu_launcher(emu_lib, monkeypatch):
    launcher = EmuLauncher(emu_lib)
    monkeypatch.setattr(cb, "_launcher", launcher)
    return launcher


@pytest.fixture
def cupy_on_cpu(emu_launcher):
    """The CuPy implementations registered for the CPU key (replacing the compiled CPU kernels)
    with the emulated launcher: layers, autograd, opcheck and torch.compile run the CuPy path's
    Python host side and the real kernel bodies."""
    assert cb.registered() is None
    cb.register("CPU")
    try:
        yield emu_launcher
    finally:
        cb.unregister()
    assert "neuron_cpu.cpp" in torch._C._dispatch_dump("snn_cuda::neuron_forward")
    assert "model_cpu.cpp" in torch._C._dispatch_dump("snn_cuda::model_forward")


@needs_cpu_kernels
def test_cupy_path_matches_reference_over_the_check_matrix(cupy_on_cpu):
    """`python -m snn_cuda.check`'s quick fused-vs-reference matrix (models, resets, surrogates,
    dtypes, v0, constant input, strided x, no_grad, both save modes, Poisson) through the CuPy
    path, with the check command's own CuPy function."""
    res = check.run_cupy_vs_reference(quick=True, device="cpu", log=lambda *a: None)
    bad = [(r["name"], check._failure_text(r)) for r in res["records"] if not r["passed"]]
    assert res["passed"] and res["cases"] >= 30, bad[:10]
    assert res["max_err"]["spikes"] == 0 and res["max_err"]["mem_seq"] == 0
    kinds = {k.kind for k, _, _ in cupy_on_cpu.launches}
    assert kinds == {"fwd", "bwd", "poisson", "model_fwd", "model_bwd"}
    # LIF / IF on the one-state kernels (combos 0-3); Leaky on its declaration, every variant
    combos = {(k.combo, k.dtype) for k, _, _ in cupy_on_cpu.launches if k.kind == "fwd"}
    assert {c for c, _ in combos} == set(range(4)) and {d for _, d in combos} >= {"float32", "bfloat16"}
    leaky = {
        k.variant for k, _, _ in cupy_on_cpu.launches if k.kind == "model_fwd" and k.combo == MODEL_DECLS["leaky"].id
    }
    assert leaky == set(range(3))


@needs_cpu_kernels
def test_check_command_cupy_vs_compiled_and_benchmark_rows(emu_launcher):
    """The check command's CuPy-vs-compiled comparison and its CuPy benchmark rows, run on the CPU
    (CuPy implementations + emulated kernels vs the compiled CPU kernels): spikes and membranes
    bit-identical, gradients within the reference tolerances."""
    res = check.run_cupy_vs_compiled(quick=True, device="cpu", log=lambda *a: None)
    bad = [(r["name"], check._failure_text(r)) for r in res["records"] if not r["passed"]]
    assert res["passed"], bad[:10]
    assert res["max_err"]["spikes"] == 0 and res["max_err"]["mem_seq"] == 0 and res["max_err"]["mem_last"] == 0
    n_ok, n_all = map(int, res["gradients_bitwise"].split("/"))
    assert n_all > 20 and n_ok > 0
    assert "neuron_cpu.cpp" in torch._C._dispatch_dump("snn_cuda::neuron_forward")  # restored after each case
    bench = check.run_benchmarks("cpu", quick=True, budget=0.01, log=lambda *a: None, cupy="beside")
    rows = [r for r in bench["rows"] if "[CuPy kernels]" in r["impl"]]
    assert len(rows) == 2 * len(check._save_modes()), [r["impl"] for r in bench["rows"]]
    assert all("error" not in r and r["neuron_steps_per_s"] > 0 for r in rows), rows
    assert any("[CuPy kernels]" in n for n in bench["notes"])
    assert any(k.kind == "bwd" for k, _, _ in emu_launcher.launches)
    env = check.environment("cpu")
    assert "cupy_path" in env and "cuda_backend" in env
    skipped = {"name": "CuPy path", "device": "cuda", "skipped": True, "passed": True, "detail": "not checked: x"}
    rep = {
        "passed": True,
        "summary": "s",
        "gpu_note": "n",
        "environment": env,
        "checks": [res, skipped],
        "benchmark": bench,
        "command": "c",
        "seconds": 1.0,
    }
    md = check.render_markdown(rep)
    assert "| CuPy path vs compiled (cpu) | PASS |" in md and "| CuPy path | skipped |" in md
    assert "| cupy_path |" in md and "[CuPy kernels]" in md


def _fwd_args(x, **kw):
    a = dict(
        x=x,
        v0=None,
        decay_param=None,
        threshold_param=None,
        T=-1,
        model=ops.MODEL_LIF,
        reset=ops.RESET_HARD,
        surrogate=1,
        surrogate_param=2.0,
        tau=1.7,
        v_threshold=0.9,
        v_reset=-0.1,
        v_floor=0.0,
        beta=0.8,
        v_init=-0.1,
        decay_input=True,
        has_floor=False,
        detach_reset=False,
        save_mode=ops.SAVE_H,
        store_v_seq=True,
    )
    a.update(kw)
    return a


def _bwd_args(fwd_a, saved, gs, gvl, **kw):
    T = fwd_a["T"]
    a = dict(
        grad_spikes=gs,
        grad_v_seq=None,
        grad_v_last=gvl,
        saved=saved,
        x=fwd_a["x"],
        v0=fwd_a["v0"],
        decay_param=fwd_a["decay_param"],
        threshold_param=fwd_a["threshold_param"],
        T=T,
        save_mode=fwd_a["save_mode"],
        model=fwd_a["model"],
        reset=fwd_a["reset"],
        surrogate=fwd_a["surrogate"],
        surrogate_param=fwd_a["surrogate_param"],
        tau=fwd_a["tau"],
        v_threshold=fwd_a["v_threshold"],
        v_reset=fwd_a["v_reset"],
        v_floor=fwd_a["v_floor"],
        beta=fwd_a["beta"],
        v_init=fwd_a["v_init"],
        decay_input=fwd_a["decay_input"],
        has_floor=fwd_a["has_floor"],
        detach_reset=fwd_a["detach_reset"],
        grad_decay=False,
        grad_threshold=False,
        x_dtype=fwd_a["x"].dtype,
    )
    a.update(kw)
    return a


def _op_cases():
    g = torch.Generator().manual_seed(3)
    T, B, N = 11, 3, 37

    def rnd(*s, dt=torch.float32):
        return (torch.randn(*s, generator=g, dtype=torch.float64) + 0.4).to(dt)

    cases = []
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        sdt = torch.float64 if dt == torch.float64 else torch.float32
        x = rnd(T, B, N, dt=dt)
        v0 = rnd(B, N, dt=sdt) * 0.3
        for save in (ops.SAVE_H, ops.SAVE_CKPT):
            cases.append((f"lif-hard-{dt}-{save}", _fwd_args(x, v0=v0, save_mode=save), {}))
            cases.append(
                (
                    f"if-soft-floor-{dt}-{save}",
                    _fwd_args(
                        x,
                        model=ops.MODEL_IF,
                        reset=ops.RESET_SOFT,
                        has_floor=True,
                        v_floor=-0.3,
                        v_init=0.0,
                        save_mode=save,
                        surrogate=0,
                    ),
                    {},
                )
            )
        cases.append(
            (
                f"leaky-zero-{dt}",
                _fwd_args(
                    x,
                    v0=v0,
                    model=ops.MODEL_LEAKY,
                    reset=ops.RESET_HARD,
                    v_init=0.0,
                    save_mode=ops.SAVE_H,
                    store_v_seq=True,
                ),
                {},
            )
        )
        # learnable parameters: ParametricLIF k per neuron, a threshold per neuron, Leaky beta
        k = torch.sigmoid(rnd(N, dt=sdt))
        th = 0.8 + 0.2 * torch.rand(N, generator=g, dtype=torch.float64).to(sdt)
        cases.append(
            (
                f"plif-{dt}",
                _fwd_args(
                    x,
                    v0=v0,
                    model=ops.MODEL_PLIF,
                    decay_param=k,
                    threshold_param=th,
                    save_mode=ops.SAVE_CKPT,
                    store_v_seq=False,
                ),
                dict(grad_decay=True, grad_threshold=True),
            )
        )
        beta = torch.rand((), generator=g, dtype=torch.float64).to(sdt).reshape(1)
        cases.append(
            (
                f"leaky-learn-{dt}",
                _fwd_args(
                    x,
                    v0=v0,
                    model=ops.MODEL_LEAKY,
                    reset=ops.RESET_SOFT,
                    decay_param=beta,
                    threshold_param=th,
                    v_init=0.0,
                    save_mode=ops.SAVE_H,
                    store_v_seq=True,
                    surrogate=5,
                ),
                dict(grad_decay=True, grad_threshold=True),
            )
        )
        # constant input over T, and a time-strided (x[t] contiguous, stride(0) != N) input
        cases.append(
            (
                f"lif-constT-{dt}",
                _fwd_args(
                    rnd(B, N, dt=dt),
                    T=9,
                    save_mode=ops.SAVE_CKPT,
                    store_v_seq=False,
                    reset=ops.RESET_SOFT,
                    v_reset=0.0,
                    v_init=0.0,
                ),
                {},
            )
        )
        xs = rnd(T, B + 2, N, dt=dt)[:, 1 : B + 1]
        assert xs.select(0, 0).is_contiguous() and xs.stride(0) != B * N
        cases.append((f"lif-strided-{dt}", _fwd_args(xs, save_mode=ops.SAVE_CKPT, detach_reset=True), {}))
    # enough neurons that the grid-stride loop wraps (the emulated launcher's wave: 2 SMs x 3 blocks)
    xw = rnd(3, 5000)
    cases.append(("lif-wraps-grid", _fwd_args(xw, v0=rnd(5000) * 0.3, save_mode=ops.SAVE_CKPT), {}))
    cases.append(("leaky-wraps-grid", _fwd_args(xw, model=ops.MODEL_LEAKY, reset=ops.RESET_SOFT, v_init=0.0), {}))
    return cases


@needs_cpu_kernels
@pytest.mark.parametrize("name,fa,bkw", _op_cases(), ids=[c[0] for c in _op_cases()])
def test_cupy_ops_equal_compiled_cpu_ops(emu_launcher, name, fa, bkw):
    """The CuPy implementations (Python checks, allocation, packing) running the real kernels
    give the compiled CPU ops' outputs: forward bit for bit, backward to rounding."""
    ref = torch.ops.snn_cuda.neuron_forward(*fa.values())
    got = cb.neuron_forward(*fa.values())
    for a, b, what in zip(got, ref, ("spikes", "saved", "v_seq", "v_last")):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert torch.equal(a, b), what
    spikes, saved, v_seq, v_last = ref
    g = torch.Generator().manual_seed(9)
    gs = torch.randn(spikes.shape, generator=g, dtype=torch.float64).to(spikes.dtype)
    gvl = torch.randn(v_last.shape, generator=g, dtype=torch.float64).to(v_last.dtype)
    ba = _bwd_args(fa, saved, gs, gvl, **bkw)
    if fa["model"] == ops.MODEL_LEAKY and fa["store_v_seq"]:
        ba["grad_v_seq"] = torch.randn(saved.shape, generator=g, dtype=torch.float64).to(saved.dtype)
    rb = torch.ops.snn_cuda.neuron_backward(*ba.values())
    gb = cb.neuron_backward(*ba.values())
    for a, b, what in zip(gb, rb, ("grad_x", "grad_v0", "grad_decay", "grad_threshold")):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        tol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(a.dtype, 1e-2)
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, msg=what)
    kinds = [k for k, _, _ in emu_launcher.launches]
    assert kinds[0].kind == "fwd" and kinds[-1].kind == "bwd"
    assert kinds[-1].sg == fa["surrogate"] and kinds[0].combo == _combo(fa["model"], fa["reset"])
    if "wraps" in name:
        assert all(n > grid * cb.BLOCK for _, n, grid in emu_launcher.launches)


@needs_cpu_kernels
def test_cupy_byte_conversions_equal_compiled_cpu(emu_launcher):
    """binary_to_uint8 / uint8_to through the CuPy implementations and the real convert kernels
    equal the compiled CPU ops: bytes (x != 0, also for values other than 0 and 1), views at odd
    offsets (the kernels' per-element path), sizes that wrap the grid and leave a partial group."""
    g = torch.Generator().manual_seed(3)
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for n in (1, 5, 4096, 7003):
            base = (torch.rand(n + 3, generator=g) < 0.3).to(dt)
            for x in (base[:n], base[1 : n + 1], base[3:]):
                want = torch.ops.snn_cuda.binary_to_uint8(x)
                got = cb.binary_to_uint8(x)
                assert got.dtype == torch.uint8 and torch.equal(got, want), (dt, n)
                for wdt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
                    assert torch.equal(cb.uint8_to(got, wdt), torch.ops.snn_cuda.uint8_to(want, wdt)), (dt, wdt, n)
            # any nonzero value (the op does not check for spikes: the caller vouches) narrows to 1
            other = base.clone()
            other[n // 2] = 0.5
            other[0] = -3.0
            if dt == torch.float64:
                other[-1] = 1e-300  # compared in fp64 (a float cast would make it 0)
            got = cb.binary_to_uint8(other)
            assert torch.equal(got, torch.ops.snn_cuda.binary_to_uint8(other)) and torch.equal(got, (other != 0).byte())
    # any nonzero byte widens to 1
    b = torch.tensor([0, 1, 2, 255, 0, 7, 1], dtype=torch.uint8)
    assert torch.equal(cb.uint8_to(b, torch.float32), torch.tensor([0.0, 1, 1, 1, 0, 1, 1]))
    assert torch.equal(cb.uint8_to(b, torch.float32), torch.ops.snn_cuda.uint8_to(b, torch.float32))
    assert cb.binary_to_uint8(torch.zeros(0)).shape == (0,)
    # 2-D input keeps its shape
    x2 = (torch.rand(33, 17, generator=g) < 0.5).float()
    assert torch.equal(cb.binary_to_uint8(x2), torch.ops.snn_cuda.binary_to_uint8(x2))
    kinds = {k.kind for k, _, _ in emu_launcher.launches}
    assert kinds == {"narrow", "widen"}
    assert any(n > grid * cb.BLOCK for _, n, grid in emu_launcher.launches), "no conversion wrapped the grid"


@needs_cpu_kernels
def test_cupy_byte_conversion_errors_are_the_compiled_ops_errors():
    calls = [
        (cb.binary_to_uint8, torch.ops.snn_cuda.binary_to_uint8, (torch.ones(3, dtype=torch.int32),)),
        (cb.uint8_to, torch.ops.snn_cuda.uint8_to, (torch.ones(3), torch.float32)),
        (cb.uint8_to, torch.ops.snn_cuda.uint8_to, (torch.ones(3, dtype=torch.uint8), torch.int64)),
    ]
    for mine, compiled, args in calls:
        with pytest.raises(Exception) as want:
            compiled(*args)
        with pytest.raises(Exception) as got:
            mine(*args)
        assert type(got.value) is type(want.value), (str(want.value), str(got.value))
        assert str(got.value) == str(want.value)


@needs_cpu_kernels
def test_cupy_poisson_equals_compiled_cpu(emu_launcher):
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        x = torch.linspace(0, 1, 1001, dtype=torch.float64).to(dt).reshape(7, 143)
        for seed in (0, 12345, -(2**63), 2**63 - 1):
            key = torch.tensor(seed)
            # x's device: the kernel reads the key through seed_ptr (as from a CUDA key)
            assert torch.equal(cb.poisson_encode(x, 13, key), torch.ops.snn_cuda.poisson_encode(x, 13, key)), (
                dt,
                seed,
            )
            assert emu_launcher.launches[-1][0].kind == "poisson"


def _bad_calls():
    x = torch.randn(3, 4)
    f = _fwd_args
    out = [
        ("x int", f(x.int())),
        ("v0 dtype", f(x, v0=torch.zeros(4, dtype=torch.float64))),
        ("v0 shape", f(x, v0=torch.zeros(5))),
        ("tau", f(x, tau=0.5)),
        ("beta", f(x, model=ops.MODEL_LEAKY, beta=2.0)),
        ("decay for LIF", f(x, decay_param=torch.ones(4))),
        ("decay shape", f(x, model=ops.MODEL_LEAKY, decay_param=torch.ones(2))),
        ("plif without k", f(x, model=ops.MODEL_PLIF)),
        ("T=0", f(x, T=0)),
        ("T=-2", f(x, T=-2)),
        ("save_mode", f(x, save_mode=5)),
        ("v_th inf", f(x, v_threshold=float("inf"))),
        ("model", f(x, model=7)),
        ("reset", f(x, reset=2)),
        ("surrogate", f(x, surrogate=cb.SG_COUNT)),  # the first id past the generated list
        ("sg nan", f(x, surrogate_param=float("nan"))),
        ("floor on LIF", f(x, has_floor=True)),
        ("0-d x", f(torch.tensor(1.0))),
        ("no steps", f(torch.zeros(0, 4))),
        ("th dtype", f(x, threshold_param=torch.ones(4, dtype=torch.float64))),
    ]
    return out


@needs_cpu_kernels
@pytest.mark.parametrize("what,args", _bad_calls(), ids=[c[0] for c in _bad_calls()])
def test_cupy_forward_errors_are_the_compiled_ops_errors(what, args):
    with pytest.raises(Exception) as want:
        torch.ops.snn_cuda.neuron_forward(*args.values())
    with pytest.raises(Exception) as got:
        cb.neuron_forward(*args.values())
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


@needs_cpu_kernels
def test_cupy_backward_errors_are_the_compiled_ops_errors():
    x = torch.randn(10, 4)
    fa = _fwd_args(x, save_mode=ops.SAVE_CKPT, store_v_seq=False)
    _, saved, _, v_last = torch.ops.snn_cuda.neuron_forward(*fa.values())
    gs = torch.ones(10, 4)
    bad = [
        _bwd_args(fa, saved, gs, None, x=None),  # checkpoints need x
        _bwd_args(fa, saved, gs, None, x=torch.randn(9, 4)),  # wrong T for the checkpoints
        _bwd_args(fa, saved, gs.double(), None),  # grad dtype
        _bwd_args(fa, saved, torch.ones(10, 5), None),  # grad shape
        _bwd_args(fa, saved, gs, torch.ones(4, dtype=torch.float64)),  # grad_v_last dtype
        _bwd_args(fa, saved, gs, None, save_mode=0),  # no save mode
        _bwd_args(fa, saved.double(), gs, None),  # saved dtype
        _bwd_args(fa, saved, gs, None, grad_decay=True),  # no decay param
        _bwd_args(fa, saved, gs, None, grad_threshold=True),  # no threshold param
        _bwd_args(fa, saved, gs, None, x_dtype=torch.int32),  # x_dtype
        _bwd_args(fa, saved, gs, None, T=5),  # constant T vs checkpoints
    ]
    for args in bad:
        with pytest.raises(Exception) as want:
            torch.ops.snn_cuda.neuron_backward(*args.values())
        with pytest.raises(Exception) as got:
            cb.neuron_backward(*args.values())
        assert type(got.value) is type(want.value), (str(want.value), str(got.value))
        assert str(got.value) == str(want.value)
    for args in (
        (torch.ones(3), 0, torch.tensor(1)),
        (torch.ones(3), 2, torch.tensor(1, dtype=torch.int32)),
        (torch.ones(3), 2, torch.tensor([1, 2])),
    ):
        with pytest.raises(Exception) as want:
            torch.ops.snn_cuda.poisson_encode(*args)
        with pytest.raises(Exception) as got:
            cb.poisson_encode(*args)
        assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


@needs_cpu_kernels
def test_cupy_one_state_launch_structs_are_the_cxx_structs(cxx_layout):
    """The one-state launch structs come packed by the C++ host code: g++'s sizeof bytes, the
    scalars of the call, pointers into the outputs and the kept tensors, and the work items the
    compiled launchers use (N neurons; Poisson groups of 4; conversion groups of kConvertVec)."""
    _, vals = cxx_layout
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 3, 7, generator=g)
    th = torch.rand(7, generator=g) + 0.5
    fa = _fwd_args(x, v0=torch.zeros(3, 7), threshold_param=th, save_mode=ops.SAVE_CKPT, store_v_seq=True)
    res = torch.ops.snn_cuda.neuron_prepare_forward(*fa.values())
    assert res[-3].dtype == torch.uint8 and res[-3].numel() == vals["FwdParams"][0] == ctypes.sizeof(cb.FwdParams)
    prep = cb.prepare_neuron_forward(*fa.values())
    p, (spikes, saved, v_seq, v_last) = prep.params, prep.outputs
    assert (p.T, p.N, p.x_tstride, p.P, p.plif, p.spikes_u8, prep.n) == (12, 21, 21, 7, 0, 0, 21)
    assert (p.tau, p.v_th, p.v_reset, p.v_init, p.decay_input, p.has_floor) == (1.7, 0.9, -0.1, -0.1, 1, 0)
    assert saved.shape == (2, 3, 7) and p.ckpt == saved.data_ptr() and p.saved is None
    assert p.spikes == spikes.data_ptr() and p.v_seq == v_seq.data_ptr() and p.v_last == v_last.data_ptr()
    keep = {t.data_ptr() for t in prep.keep}
    assert {p.x, p.v0, p.th_param} <= keep and p.decay_param is None
    # a constant input reads one step (stride 0); uint8 spikes
    pc = cb.prepare_neuron_forward(*_fwd_args(x[0], T=5, spikes_uint8=True, save_mode=0).values())
    assert (pc.params.T, pc.params.x_tstride, pc.params.spikes_u8) == (5, 0, 1) and pc.outputs[0].dtype == torch.uint8
    ba = _bwd_args(fa, saved, torch.ones(12, 3, 7), None, grad_threshold=True)
    res = torch.ops.snn_cuda.neuron_prepare_backward(*ba.values())
    assert res[-3].numel() == vals["BwdParams"][0] == ctypes.sizeof(cb.BwdParams)
    pb = cb.prepare_neuron_backward(*ba.values())
    q, (gx, gv0, g_decay, g_th) = pb.params, pb.outputs
    assert (q.T, q.N, q.x_tstride, q.sg_param, q.const_input, q.P, pb.n) == (12, 21, 21, 2.0, 0, 7, 21)
    assert q.grad_x == gx.data_ptr() and q.grad_v0 == gv0.data_ptr() and q.grad_th == g_th.data_ptr()
    assert q.grad_decay is None and g_decay.numel() == 0 and q.saved is None and q.grad_v_last is None
    assert {q.ckpt, q.x, q.grad_spikes, q.th_param} <= {t.data_ptr() for t in pb.keep}
    # Poisson: a key on x's device is read by the kernel, a CPU key beside it here
    xp = torch.rand(5, 3, generator=g)
    pp = cb.prepare_poisson(xp, 7, torch.tensor(-5))
    assert torch.ops.snn_cuda.poisson_prepare(xp, 7, torch.tensor(1))[-3].numel() == vals["PoissonParams"][0]
    assert (pp.params.T, pp.params.N, pp.n) == (7, 15, (7 * 15 + 3) // 4) and pp.outputs[0].shape == (7, 5, 3)
    assert pp.params.seed_ptr == pp.keep[1].data_ptr() and int(pp.keep[1]) == -5
    for n in (0, 1, 4, 4099):
        c = cb.prepare_narrow(torch.ones(n))
        assert c.params.not_binary is None and c.n == -(-n // vals["kConvertVec"][0])
        assert c.params.n == n and c.outputs[0].dtype == torch.uint8
        w = cb.prepare_widen(torch.ones(n, dtype=torch.uint8), torch.float16)
        assert (w.params.n, w.n, w.outputs[0].dtype) == (n, c.n, torch.float16)
        if n:
            assert c.params.out == c.outputs[0].data_ptr() and w.params.x == w.keep[0].data_ptr()
    with pytest.raises(RuntimeError, match="packed 3 bytes for FwdParams"):
        cb._launch_struct(cb.FwdParams, torch.zeros(3, dtype=torch.uint8))


@needs_cpu_kernels
def test_cupy_ops_take_their_host_side_from_the_prepare_ops(emu_launcher):
    """Each CuPy implementation dispatches its C++ prepare op once (and no other snn_cuda op):
    no Python host code stands between the op and the kernel."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Calls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "snn_cuda":
                self.ops.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    x = torch.randn(4, 6)
    fa = _fwd_args(x)
    _, saved, _, _ = torch.ops.snn_cuda.neuron_forward(*fa.values())
    calls = [
        (cb.neuron_forward, tuple(fa.values()), "neuron_prepare_forward"),
        (cb.neuron_backward, tuple(_bwd_args(fa, saved, torch.ones(4, 6), None).values()), "neuron_prepare_backward"),
        (cb.poisson_encode, (x.sigmoid(), 3, torch.tensor(2)), "poisson_prepare"),
        (cb.binary_to_uint8, (x > 0,), None),  # bool: rejected by the C++ check, nothing launched
        (cb.binary_to_uint8, ((x > 0).float(),), "narrow_prepare"),
        (cb.uint8_to, ((x > 0).byte(), torch.float64), "widen_prepare"),
    ]
    for fn, args, op in calls:
        n = len(emu_launcher.launches)
        with Calls() as mode:
            if op is None:
                with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16, got Bool"):
                    fn(*args)
            else:
                fn(*args)
        assert mode.ops == ["narrow_prepare" if op is None else op], mode.ops
        assert len(emu_launcher.launches) == n + (op is not None)


@needs_cpu_kernels
def test_cupy_kernels_pass_opcheck(cupy_on_cpu):
    """The registered Python kernels (here on the CPU key) satisfy torch.library.opcheck: schema,
    fake kernels and autograd registration agree with them."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 2, 5, generator=g, requires_grad=True)
    v0 = torch.randn(2, 5, generator=g, requires_grad=True)
    args = tuple(_fwd_args(x, v0=v0, save_mode=ops.SAVE_CKPT, store_v_seq=True).values())
    torch.library.opcheck(torch.ops.snn_cuda.neuron_forward.default, args)
    torch.library.opcheck(torch.ops.snn_cuda.poisson_encode.default, (torch.rand(3, 4), 5, torch.tensor(7)))
    assert cupy_on_cpu.launches


@needs_cpu_kernels
def test_cupy_kernels_under_torch_compile(cupy_on_cpu):
    torch._dynamo.reset()
    layer = snn_cuda.LIF(tau=2.0, surrogate=sg.ATan(), backend="fused")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 17, generator=g)

    def f(inp):
        snn_cuda.functional.reset_net(layer)
        return layer(inp)

    xe = x.clone().requires_grad_(True)
    ye = f(xe)
    ye.sum().backward()
    n_eager = len(cupy_on_cpu.launches)
    xc = x.clone().requires_grad_(True)
    yc = torch.compile(f, fullgraph=True)(xc)
    yc.sum().backward()
    torch._dynamo.reset()
    assert torch.equal(ye, yc)
    torch.testing.assert_close(xe.grad, xc.grad)
    assert len(cupy_on_cpu.launches) >= n_eager + 2  # the compiled graph called the CuPy kernels


# ------------------------------------------------------------------------------------------
# on a GPU with CuPy (skipped here): the CuPy path vs the compiled kernels and the reference
# ------------------------------------------------------------------------------------------
def _cupy_gpu_ready() -> str:
    if not torch.cuda.is_available():
        return "needs a GPU"
    if not HAVE_CUPY:
        return "needs CuPy"
    return cb.unavailable_reason()


requires_cupy_gpu = pytest.mark.skipif(bool(_cupy_gpu_ready()), reason=_cupy_gpu_ready() or "ok")


@requires_cupy_gpu
def test_gpu_cupy_path_matches_reference():
    with cb.serving("CUDA"):
        res = check.run_matrix(
            "cuda", quick=True, sm_count=torch.cuda.get_device_properties(0).multi_processor_count, log=lambda *a: None
        )
    assert res["passed"], [check._failure_text(r) for r in res["records"] if not r["passed"]][:10]


@requires_cupy_gpu
@pytest.mark.skipif(not _ext.cuda_available(), reason="needs the compiled CUDA kernels to compare with")
def test_gpu_cupy_path_equals_compiled_kernels():
    res = check.run_cupy_vs_compiled(
        quick=True, sm_count=torch.cuda.get_device_properties(0).multi_processor_count, log=lambda *a: None
    )
    assert res["passed"], [check._failure_text(r) for r in res["records"] if not r["passed"]][:10]


@requires_cupy_gpu
def test_gpu_cupy_launches_on_torch_current_stream():
    """Captured into a CUDA graph on torch's side stream: a launch on any other stream would fail
    the capture (or be missing from the replay)."""
    x = torch.randn(16, 4096, device="cuda")
    args = _fwd_args(x, save_mode=0, store_v_seq=False)
    with cb.serving("CUDA"):
        torch.ops.snn_cuda.neuron_forward(*args.values())  # compile and load outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = torch.ops.snn_cuda.neuron_forward(*args.values())
        x.copy_(torch.randn(16, 4096, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
    ref = torch.ops.snn_cuda.neuron_forward(*args.values())
    assert torch.equal(out[0], ref[0]) and torch.equal(out[3], ref[3])


# ------------------------------------------------------------------------------------------
# the declared models (model_forward / model_backward): the C++ host code prepares
# (snn_cuda::model_prepare_*, csrc/prepare.cpp), the CuPy path launches the real
# model_kernels.cuh bodies (here emulated)
# ------------------------------------------------------------------------------------------
# valid parameter values per declared model, in the order of its declaration
_MODEL_VALUES = {
    "synaptic": [0.8, 0.9, 0.5],
    "cuba_lif": [0.5, 0.75, 0.5, 0.0],
    "adlif": [0.7, 0.9, 0.4, 1.2, 0.12],
    "ilif": [0.25, 0.5, 4.0, 0.0, 4.0],
    "leaky": [0.9, 0.5],
}


def _model_values(name):
    """The values above, or for a model not listed (a model added later edits no list here) the
    ones its default-constructed layer packs (`_param_values()`)."""
    if name in _MODEL_VALUES:
        return _MODEL_VALUES[name]
    from snn_cuda.models import LAYERS

    layer = next(cls for cls in LAYERS.values() if cls._decl is MODEL_DECLS[name])
    return layer()._param_values()


def _model_args(name, dt, *, T=-1, shape=(2, 5), steps=11, state0=True, return_states=True, per_neuron=True, seed=0):
    """model_forward's arguments: x [steps, *shape] (T = -1) or [*shape] fed T times."""
    d = MODEL_DECLS[name]
    g = torch.Generator().manual_seed(seed)
    sdt = ops.state_dtype(dt)
    xs = list(shape) if T >= 0 else [steps, *shape]
    x = (torch.randn(xs, generator=g, dtype=torch.float64) * 0.8 + 0.3).to(dt)
    N = math.prod(shape)
    vals = torch.tensor(_model_values(name), dtype=torch.float64)
    if per_neuron:  # P = N, each value jittered by up to 10%
        params = vals[:, None] * (1 + 0.1 * (torch.rand(len(vals), N, generator=g, dtype=torch.float64) - 0.5))
        if name == "ilif":
            params[2] = vals[2]  # max_count stays an integer
    else:
        params = vals[:, None]
    s0 = (torch.randn(len(d.states), *shape, generator=g, dtype=torch.float64) * 0.3).to(sdt) if state0 else None
    return [x, params.to(sdt).contiguous(), s0, T, d.id, 0, sg.ATan.kind_id, 2.0, False, return_states, True]


def _model_cases():
    cases = []
    for name, d in MODEL_DECLS.items():
        for v in range(len(d.variants)):
            for dt in (torch.float32, torch.float64):
                a = _model_args(name, dt, seed=v)
                a[5] = v
                cases.append((f"{name}-v{v}-{str(dt)[6:]}", a))
        a = _model_args(name, torch.float32, T=9, state0=False, return_states=False, per_neuron=False)
        cases.append((f"{name}-constT", a))
        a = _model_args(name, torch.bfloat16, seed=3)
        cases.append((f"{name}-bf16", a))
        # enough neurons that the grid-stride loop wraps (the emulated wave: 2 SMs x 3 blocks of 256)
        a = _model_args(name, torch.float64, shape=(2000,), steps=3, seed=4)
        a[6], a[8] = sg.Sigmoid.kind_id, True  # another surrogate, detach_reset
        cases.append((f"{name}-wraps-grid", a))
    return cases


def _model_bwd_args(fa, outs, seed=9):
    spikes, seq, last, ckpt = outs
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)

    name = next(n for n, d in MODEL_DECLS.items() if d.id == fa[4])
    return [
        rnd(spikes),
        rnd(seq) if fa[9] else None,
        rnd(last),
        fa[0],
        fa[1],
        fa[2],
        ckpt,
        *fa[3:9],
        MODEL_DECLS[name].param_grads,
    ]


def _grad_tol(dtype):
    return {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 1e-2)


@needs_cpu_kernels
@pytest.mark.parametrize("name,fa", _model_cases(), ids=[c[0] for c in _model_cases()])
def test_cupy_model_ops_equal_compiled_cpu_ops(emu_launcher, name, fa):
    """model_forward / model_backward through the CuPy path (the C++ host code's preparation, the
    packed launch struct, the real kernel bodies) give the compiled CPU ops' outputs: forward bit
    for bit (spikes, state sequence, last states, checkpoints), gradients to rounding."""
    ref = torch.ops.snn_cuda.model_forward(*fa)
    got = cb.model_forward(*fa)
    for a, b, what in zip(got, ref, ("spikes", "state_seq", "state_last", "ckpt")):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert torch.equal(a, b), what
    ba = _model_bwd_args(fa, ref)
    rb = torch.ops.snn_cuda.model_backward(*ba)
    gb = cb.model_backward(*ba)
    for a, b, what in zip(gb, rb, ("grad_x", "grad_state0", "grad_params")):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        tol = _grad_tol(a.dtype)
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol, msg=what)
    assert ba[-1] == (gb[2].numel() > 0)
    (kf, nf, _), (kb, nb, _) = emu_launcher.launches
    assert (kf.kind, kb.kind) == ("model_fwd", "model_bwd") and kb.sg == cb.SG_ANY
    assert kf.combo == kb.combo == fa[4] and kf.variant == kb.variant == fa[5]
    assert nf == nb == ref[2][0].numel()
    if "wraps" in name:
        assert all(n > grid * cb.BLOCK for _, n, grid in emu_launcher.launches)


@needs_cpu_kernels
def test_cupy_model_launch_struct_is_the_cxx_struct(cxx_layout):
    """The launch struct comes packed by the C++ host code: sizeof(MFwdParams)/sizeof(MBwdParams)
    bytes (g++'s and the ctypes view's size), pointing into the outputs and the kept tensors."""
    _, vals = cxx_layout
    fa = _model_args("synaptic", torch.float32, state0=True, return_states=False)
    *outs, keep, launch, n = torch.ops.snn_cuda.model_prepare_forward(*fa)
    assert launch.dtype == torch.uint8 and launch.device.type == "cpu"
    assert launch.numel() == vals["MFwdParams"][0] == ctypes.sizeof(cb.MFwdParams)
    prep = cb.prepare_model_forward(*fa)
    p = prep.params
    spikes, seq, last, ckpt = prep.outputs
    assert (p.T, p.N, p.P, prep.n) == (11, 10, 10, 10)
    assert p.x_tstride == 10 and p.x == prep.keep[0].data_ptr() and p.params == prep.keep[1].data_ptr()
    assert p.state0 == prep.keep[2].data_ptr()
    assert p.spikes == spikes.data_ptr() and p.state_last == last.data_ptr() and p.ckpt == ckpt.data_ptr()
    assert p.state_seq is None and seq.numel() == 0
    ba = _model_bwd_args(fa, outs)
    *_, launch_b, nb = torch.ops.snn_cuda.model_prepare_backward(*ba)
    assert launch_b.numel() == vals["MBwdParams"][0] == ctypes.sizeof(cb.MBwdParams) and nb == 10
    pb = cb.prepare_model_backward(*ba)
    q = pb.params
    assert (q.T, q.N, q.P, q.surrogate, q.sg_param, q.detach_reset, q.const_input) == (11, 10, 10, 1, 2.0, 0, 0)
    assert q.grad_x == pb.outputs[0].data_ptr() and q.grad_params == pb.outputs[2].data_ptr()
    assert q.grad_state_seq is None
    # a constant input: no time stride; no state0: null
    fc = _model_args("ilif", torch.float64, T=4, state0=False, return_states=True)
    pc = cb.prepare_model_forward(*fc).params
    assert (pc.T, pc.x_tstride, pc.state0) == (4, 0, None) and pc.state_seq is not None
    with pytest.raises(RuntimeError, match="packed 3 bytes for MFwdParams"):
        cb._launch_struct(cb.MFwdParams, torch.zeros(3, dtype=torch.uint8))


def _bad_model_calls():
    def f(**kw):
        a = _model_args("synaptic", torch.float32)
        keys = ["x", "params", "state0", "T", "model", "variant", "surrogate", "sg", "detach", "states", "save"]
        d = dict(zip(keys, a))
        d.update(kw)
        return list(d.values())

    p = _model_args("synaptic", torch.float32)[1]
    return [
        ("params shape", f(params=p[:2])),
        ("params P", f(params=p[:, :3])),
        ("params dtype", f(params=p.double())),
        ("state0 shape", f(state0=torch.zeros(3, 2, 5))),
        ("state0 dtype", f(state0=torch.zeros(2, 2, 5, dtype=torch.float64))),
        ("model", f(model=9)),
        ("variant", f(variant=3)),
        ("surrogate", f(surrogate=42)),
        ("sg nan", f(sg=float("nan"))),
        ("T=0", f(x=torch.ones(2, 5), T=0)),
        ("T=-2", f(T=-2)),
        ("x int", f(x=torch.ones(4, 2, 5, dtype=torch.int32))),
        ("0-d x", f(x=torch.tensor(1.0))),
    ]


@needs_cpu_kernels
@pytest.mark.parametrize("what,args", _bad_model_calls(), ids=[c[0] for c in _bad_model_calls()])
def test_cupy_model_errors_are_the_cxx_checks(emu_launcher, what, args):
    """The CuPy path's model errors are the C++ host code's (model_host.h): same type, same text;
    nothing is launched."""
    with pytest.raises(Exception) as want:
        torch.ops.snn_cuda.model_forward(*args)
    with pytest.raises(Exception) as got:
        cb.model_forward(*args)
    assert type(got.value) is type(want.value)
    assert str(got.value).splitlines()[0] == str(want.value).splitlines()[0]
    assert not emu_launcher.launches
    if what == "params shape":
        assert isinstance(got.value, ValueError) and "params must be [3, P] for model synaptic" in str(got.value)


@needs_cpu_kernels
def test_cupy_model_backward_errors_are_the_cxx_checks(emu_launcher):
    fa = _model_args("cuba_lif", torch.float32)
    ba = _model_bwd_args(fa, torch.ops.snn_cuda.model_forward(*fa))
    bad = []
    for i, v in ((6, ba[6][:, :1]), (0, ba[0].double()), (2, ba[2][:1]), (10, 12), (5, ba[5][:1])):
        b = list(ba)
        b[i] = v
        bad.append(b)
    for b in bad:
        with pytest.raises(Exception) as want:
            torch.ops.snn_cuda.model_backward(*b)
        with pytest.raises(Exception) as got:
            cb.model_backward(*b)
        assert type(got.value) is type(want.value), (str(want.value), str(got.value))
        assert str(got.value).splitlines()[0] == str(want.value).splitlines()[0]
    assert not emu_launcher.launches


def _model_layers():
    return {
        "synaptic": lambda: snn_cuda.Synaptic(
            alpha=torch.tensor([0.7, 0.8, 0.9, 0.6, 0.75]),
            beta=0.9,
            threshold=0.5,
            learn_alpha=True,
            learn_beta=True,
            learn_threshold=True,
            param_shape=5,
        ),
        "synaptic-zero": lambda: snn_cuda.Synaptic(alpha=0.8, beta=0.85, threshold=0.4, reset_mechanism="zero"),
        "cuba_lif": lambda: snn_cuda.CUBALIF(v_threshold=0.4, return_states=True),
        "cuba_lif-soft": lambda: snn_cuda.CUBALIF(v_threshold=0.4, v_reset=None, detach_reset=True),
        "adlif": lambda: snn_cuda.AdLIF(5, threshold=0.1, return_states=True),
        "ilif": lambda: snn_cuda.ILIF(tau=2.0, v_threshold=0.5, max_spike_count=3),
    }


@needs_cpu_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(_model_layers()))
def test_cupy_path_runs_the_declared_model_layers(emu_launcher, kind, dtype):
    """Synaptic, CUBALIF, AdLIF and ILIF layers (backend='fused') with the CuPy implementations
    serving the CPU key: outputs bit for bit those of the compiled CPU ops, input and parameter
    gradients within rounding; both model ops ran through the CuPy path."""
    import copy

    torch.manual_seed(0)
    layer = _model_layers()[kind]().to(dtype)
    snn_cuda.functional.set_backend(layer, "fused")
    twin = copy.deepcopy(layer)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(13, 3, 5, generator=g, dtype=torch.float64) * 0.8 + 0.3).to(dtype)

    def run(m):
        xi = x.clone().requires_grad_(True)
        snn_cuda.functional.reset_net(m)
        out = m(xi)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        gg = torch.Generator().manual_seed(2)
        loss = sum((o * torch.randn(o.shape, generator=gg, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
        loss.backward()
        grads = [xi.grad] + [p.grad for p in m.parameters()]
        return [o.detach() for o in outs], grads

    ref_out, ref_grads = run(layer)
    assert not emu_launcher.launches
    with cb.serving("CPU"):
        assert "cupy_backend.py" in torch._C._dispatch_dump("snn_cuda::model_forward")
        got_out, got_grads = run(twin)
    kinds = {k.kind for k, _, _ in emu_launcher.launches}
    assert kinds == {"model_fwd", "model_bwd"}, kinds
    for a, b in zip(got_out, ref_out):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert len(got_grads) == len(ref_grads) >= 1
    for a, b in zip(got_grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            tol = _grad_tol(a.dtype)
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if kind in ("synaptic", "adlif"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in twin.parameters())


def _batch_first_layers():
    def ckpt(layer):
        layer.backward_storage = "checkpoint"
        return layer

    return {
        "lif": (lambda: snn_cuda.LIF(v_threshold=0.5), (13, 3, 5)),
        "lif-ckpt-wraps-grid": (lambda: ckpt(snn_cuda.LIF(v_threshold=0.5, v_reset=None)), (9, 2, 2000)),
        "lif-const": (lambda: snn_cuda.LIF(v_threshold=0.5, store_v_seq=True), (3, 5)),
        "leaky-learn": (
            lambda: snn_cuda.Leaky(
                beta=torch.linspace(0.6, 0.9, 5), threshold=0.5, learn_beta=True, learn_threshold=True, param_shape=5
            ),
            (13, 3, 5),
        ),
        "synaptic": (_model_layers()["synaptic"], (13, 3, 5)),
        "cuba_lif": (_model_layers()["cuba_lif"], (13, 3, 5)),
        "adlif-wraps-grid": (lambda: snn_cuda.AdLIF(1000, threshold=0.1, return_states=True), (9, 2, 1000)),
        "ilif-const": (_model_layers()["ilif"], (3, 5)),
    }


@needs_cpu_kernels
@pytest.mark.parametrize("kind", list(_batch_first_layers()))
def test_cupy_path_batch_first_equals_time_major(emu_launcher, kind):
    """The real kernel bodies in the batch-first layout (csrc/kernels/params.h SeqLayout), through
    the CuPy path: a batch_first layer on x [B, T, ...] gives the compiled CPU ops' time-major
    results on the transposed input, forward bit for bit, gradients to rounding."""
    import copy

    make, shape = _batch_first_layers()[kind]
    const = "const" in kind
    torch.manual_seed(0)
    layer = make()
    snn_cuda.functional.set_backend(layer, "fused")
    twin = copy.deepcopy(layer)
    twin.batch_first = True
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64).float() * 0.8 + 0.3

    def run(m, xin, bf):
        xi = xin.clone().requires_grad_(True)
        snn_cuda.functional.reset_net(m)
        out = m(xi, T=7) if const else m(xi)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if getattr(m, "v_seq", None) is not None:
            outs.append(m.v_seq)
        outs = [o.transpose(0, 1) if bf else o for o in outs]  # compared time-major
        gg = torch.Generator().manual_seed(2)
        loss = sum((o * torch.randn(o.shape, generator=gg, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
        loss.backward()
        gx = xi.grad.transpose(0, 1) if (bf and not const) else xi.grad
        return [o.detach() for o in outs], [gx] + [p.grad for p in m.parameters()]

    ref_out, ref_grads = run(layer, x, False)
    assert not emu_launcher.launches
    with cb.serving("CPU"):
        got_out, got_grads = run(twin, x if const else x.transpose(0, 1).contiguous(), True)
    kinds = {k.kind for k, _, _ in emu_launcher.launches}
    assert kinds in ({"fwd", "bwd"}, {"model_fwd", "model_bwd"}), kinds
    if "wraps" in kind:
        assert all(n > grid * cb.BLOCK for _, n, grid in emu_launcher.launches)
    for a, b in zip(got_out, ref_out):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    assert len(got_grads) == len(ref_grads) >= 1
    for a, b in zip(got_grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_cpu_kernels
def test_cupy_model_kernels_pass_opcheck(cupy_on_cpu):
    """model_forward / model_backward with the CuPy implementations registered (here on the CPU
    key): schema, fake kernels and autograd agree with them."""
    fa = _model_args("adlif", torch.float32)
    fa[1].requires_grad_(True)
    fa[0].requires_grad_(True)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, tuple(fa))
    fc = _model_args("synaptic", torch.float64, T=5, state0=False, return_states=False)
    torch.library.opcheck(torch.ops.snn_cuda.model_forward.default, tuple(fc))
    kinds = {k.kind for k, _, _ in cupy_on_cpu.launches}
    assert "model_fwd" in kinds


@requires_cupy_gpu
@needs_cpu_kernels
def test_gpu_cupy_model_ops_equal_compiled_cpu_ops():
    """On a GPU: the declared models through the CuPy path (NVRTC-compiled model_kernels.cuh, the
    C++-packed launch struct passed by value) against the compiled CPU ops: forward bit for bit,
    gradients to rounding."""

    def cuda(a):
        return [t.cuda() if isinstance(t, torch.Tensor) else t for t in a]

    with cb.serving("CUDA"):
        for name, fa in _model_cases():
            ref = torch.ops.snn_cuda.model_forward(*fa)
            got = torch.ops.snn_cuda.model_forward(*cuda(fa))
            for a, b, what in zip(got, ref, ("spikes", "state_seq", "state_last", "ckpt")):
                assert torch.equal(a.cpu(), b), (name, what)
            ba = _model_bwd_args(fa, ref)
            rb = torch.ops.snn_cuda.model_backward(*ba)
            gb = torch.ops.snn_cuda.model_backward(*cuda(ba))
            for a, b, what in zip(gb, rb, ("grad_x", "grad_state0", "grad_params")):
                tol = _grad_tol(a.dtype)
                torch.testing.assert_close(a.cpu().double(), b.double(), rtol=tol, atol=tol, msg=f"{name} {what}")
