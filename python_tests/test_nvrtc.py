"""The kernel headers compile through NVRTC (the CuPy run-time path, for installs without nvcc)
for sm_80 and sm_90, with the exact program text, options and template names that path uses
(snn_cuda.cuda_source.runtime_source / runtime_options; every instance the ops can request,
snn_cuda.cupy_backend.dispatch_names). NVRTC comes from PyPI (cuda-bindings +
nvidia-cuda-nvrtc) and needs no GPU or driver. The run time compiles one program per instance;
here all instances go into one program per arch (same source and options, one front-end pass),
the two archs in parallel threads (NVRTC releases the GIL)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from snn_cuda import cuda_source as cs
from snn_cuda import cupy_backend as cb

nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings (NVRTC from PyPI) is not installed")

ARCHS = ("sm_80", "sm_90")


def _check(res):
    assert res[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, res[0]
    return res[1] if len(res) == 2 else None


def _compile(arch: str, names, inc: str) -> dict:
    # The run-time path's program: the headers come from the include path kernel_dir(), not
    # from in-memory copies.
    prog = _check(nvrtc.nvrtcCreateProgram(cs.runtime_source().encode(), b"snn_cuda_kernels.cu", 0, [], []))
    try:
        for n in names:
            _check(nvrtc.nvrtcAddNameExpression(prog, n.encode()))
        opts = [o.encode() for o in cs.runtime_options(arch, inc)]
        res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check(nvrtc.nvrtcGetProgramLogSize(prog))
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, log)
        out = {"ok": res[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, "log": log.decode(errors="replace"), "lowered": {}}
        if out["ok"]:
            for n in names:
                out["lowered"][n] = _check(nvrtc.nvrtcGetLoweredName(prog, n.encode()))
            out["cubin_size"] = _check(nvrtc.nvrtcGetCUBINSize(prog))
        return out
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@pytest.fixture(scope="module")
def compiled():
    inc = cs.cuda_include_dirs()
    if not inc:
        pytest.skip("no cuda_fp16.h found (neither a CUDA toolkit nor nvidia-cuda-runtime headers)")
    names = cb.dispatch_names()
    with ThreadPoolExecutor(len(ARCHS)) as ex:
        futures = {a: ex.submit(_compile, a, names, inc[0]) for a in ARCHS}
        return names, {a: f.result() for a, f in futures.items()}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_kernel_instance_compiles_with_nvrtc(compiled, arch):
    names, results = compiled
    res = results[arch]
    assert res["ok"], res["log"][-6000:]
    # dtypes x (7 model/reset combos x (fwd + one bwd per surrogate) + Poisson + the two byte
    # conversions + the declared models' variants x (fwd + SG_ANY bwd)); the surrogates and the
    # variants are counted from the generated list, so adding either needs no edit here
    from snn_cuda._model_list import MODELS as DECLS
    from snn_cuda._model_list import SURROGATE_IDS

    variants = sum(len(d.variants) for d in DECLS.values())
    assert len(names) == 4 * (7 * (1 + len(SURROGATE_IDS)) + 1 + 2 + variants * 2)
    for n in names:
        assert res["lowered"][n].startswith(b"_ZN3snn"), (n, res["lowered"][n])
    assert len(set(res["lowered"].values())) == len(names)
    assert res["cubin_size"] > 0


def test_runtime_options_pin_the_arithmetic():
    opts = cs.runtime_options("sm_90", "/x")
    for o in ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false"):
        assert o in opts
    assert not any("fast-math" in o or "use_fast_math" in o for o in opts)
    assert [o for o in opts if "ftz" in o] == ["--ftz=false"]  # NVRTC honours the last -ftz
    assert f"--include-path={cs.kernel_dir()}" in opts and "--include-path=/x" in opts


def test_headers_are_self_contained():
    # Kernel-side headers must not pull in torch: NVRTC and the host shim
    # compile them without it.
    for name, text in cs.headers().items():
        includes = [ln for ln in text.splitlines() if ln.lstrip().startswith("#include")]
        for inc in includes:
            for banned in ("torch", "ATen", "c10"):
                assert banned not in inc, f"{name}: {inc}"


# ------------------------------------------------------------------------------------------------
# The declared-model kernels (kernels/model_kernels.cuh): every model of the list x variant x dtype,
# the backward with the surrogate chosen at run time (SG_ANY, as the nvcc launchers instantiate it:
# every surrogate's code inside). The CuPy path launches them (model_forward / model_backward), so
# they are among cb.dispatch_names() and compiled above with the run-time program; here their names
# are spelled independently of cuda_source and found among the compiled ones.
# ------------------------------------------------------------------------------------------------
def _model_names():
    from snn_cuda._model_list import MODELS as DECLS

    names = []
    for dt in cs.STORAGE.values():
        for decl in DECLS.values():
            for v in range(len(decl.variants)):
                names.append(f"snn::model_fwd_kernel<snn::{decl.struct}, {v}, {dt}>")
                names.append(f"snn::model_bwd_kernel<snn::{decl.struct}, {v}, snn::SG_ANY, {dt}>")
    return names


def test_model_kernels_are_in_the_runtime_source():
    assert '#include "model_kernels.cuh"' in cs.runtime_source()
    assert set(_model_names()) == set(cs.model_name_expressions()) <= set(cb.dispatch_names())


@pytest.mark.parametrize("arch", ARCHS)
def test_every_model_kernel_instance_compiles_with_nvrtc(compiled, arch):
    from snn_cuda._model_list import MODELS as DECLS

    names, results = compiled
    res = results[arch]
    assert res["ok"], res["log"][-6000:]
    model_names = _model_names()
    variants = sum(len(d.variants) for d in DECLS.values())
    assert len(model_names) == len(cs.STORAGE) * variants * 2
    for n in model_names:
        assert n in res["lowered"], n
        assert res["lowered"][n].startswith(b"_ZN3snn"), (n, res["lowered"][n])
    assert len({res["lowered"][n] for n in model_names}) == len(model_names)
