"""The kernel headers compile through NVRTC (the CuPy run-time path, for
installs without nvcc) for sm_80 and sm_90, with the exact source, template
names and options that path uses (snn_cuda.cuda_source). NVRTC comes from
PyPI (cuda-bindings + nvidia-cuda-nvrtc) and needs no GPU or driver."""
import pytest

from snn_cuda import cuda_source as cs

nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings (NVRTC from PyPI) is not installed")


def _check(res):
    assert res[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, res[0]
    return res[1] if len(res) == 2 else None


def _names():
    # Every template argument value at least once, without compiling the full
    # 4 x 7 x 10 product twice (CuPy compiles instances lazily, one by one).
    names = []
    for dt in cs.STORAGE:
        for c in range(len(cs.MODELS)):
            names.append(cs.forward_name(c, dt))
            names.append(cs.backward_name(c, 1, dt))
        names.append(cs.poisson_name(dt))
    names += [cs.backward_name(0, s, "float32") for s in range(len(cs.SURROGATES))]
    names += [cs.backward_name(3, s, "bfloat16") for s in range(len(cs.SURROGATES))]
    return list(dict.fromkeys(names))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernels_compile_with_nvrtc(arch):
    inc = cs.cuda_include_dirs()
    if not inc:
        pytest.skip("no cuda_fp16.h found (neither a CUDA toolkit nor nvidia-cuda-runtime headers)")
    hdr = cs.headers()
    prog = _check(nvrtc.nvrtcCreateProgram(cs.source().encode(), b"snn_cuda.cu", len(hdr),
                                           [v.encode() for v in hdr.values()], [k.encode() for k in hdr]))
    names = _names()
    for n in names:
        _check(nvrtc.nvrtcAddNameExpression(prog, n.encode()))
    opts = [o.encode() for o in cs.options(arch)] + [f"--include-path={inc[0]}".encode()]
    res = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    size = _check(nvrtc.nvrtcGetProgramLogSize(prog))
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    assert res[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
    for n in names:
        lowered = _check(nvrtc.nvrtcGetLoweredName(prog, n.encode()))
        assert lowered.startswith(b"_ZN3snn"), (n, lowered)
    assert _check(nvrtc.nvrtcGetCUBINSize(prog)) > 0


def test_headers_are_self_contained():
    # Kernel-side headers must not pull in torch: NVRTC and the host shim
    # compile them without it.
    for name, text in cs.headers().items():
        includes = [ln for ln in text.splitlines() if ln.lstrip().startswith("#include")]
        for inc in includes:
            for banned in ("torch", "ATen", "c10"):
                assert banned not in inc, f"{name}: {inc}"
