"""Build snn_cuda's compiled kernels.

A CUDAExtension when torch is a CUDA build and nvcc is found (CUDA_HOME, else
/usr/local/cuda), no GPU needed; otherwise a CPU-only CppExtension.
Environment switches:
  SNN_CUDA_FORCE_CPU=1    build the CPU kernels only
  SNN_CUDA_FORCE_CUDA=1   fail unless the CUDA kernels can be built
  TORCH_CUDA_ARCH_LIST    target GPUs (default, GPU visible or not: DEFAULT_ARCHS
                          below; build_info()['built_with'] records the list)
  MAX_JOBS                parallel compile jobs (ninja)
Install: pip install --no-build-isolation .
"""

import os
import platform
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent.resolve()
# Without TORCH_CUDA_ARCH_LIST the build targets these, whatever GPU the build
# machine has (torch's own default would be the visible GPU only, and a build
# made on an H100 would then fail on every other GPU with "no kernel image").
# SASS for Turing to Hopper; the compute_90 PTX is JIT-compiled by the driver
# on any newer GPU, which is how Blackwell (10.x, 12.x) runs this build.
# 10.0 / 12.0 SASS is left out because nvcc 13.0 compiles these kernels 5-8x
# slower for them than for the older archs: the two would add about 1230
# CPU-seconds to a build that takes 5.5-7.5 minutes on 2 cores, past the
# 10-minute limit (measurements in docs/verification.md, "Arch coverage").
DEFAULT_ARCHS = "7.5;8.0;8.6;8.9;9.0+PTX"


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def cuda_arch_list(environ) -> str:
    """The arch list the CUDA build uses: TORCH_CUDA_ARCH_LIST when set (not blank), else
    DEFAULT_ARCHS, whether or not a GPU is visible."""
    return (environ.get("TORCH_CUDA_ARCH_LIST") or "").strip() or DEFAULT_ARCHS


def _find_cuda_home():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home and Path("/usr/local/cuda/bin/nvcc").exists():
        home = "/usr/local/cuda"
    if not home:
        nvcc = shutil.which("nvcc")
        if nvcc:
            home = str(Path(nvcc).resolve().parent.parent)
    if home and (Path(home) / "bin" / "nvcc").exists():
        return home
    return None


def _ext_modules():
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cuda_home = _find_cuda_home()
    arch_source = None
    want_cuda = not _flag("SNN_CUDA_FORCE_CPU") and torch.version.cuda is not None and cuda_home is not None
    if _flag("SNN_CUDA_FORCE_CUDA") and not want_cuda:
        sys.exit(
            "SNN_CUDA_FORCE_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda!r}, nvcc found under {cuda_home!r}. "
            "Install a CUDA build of torch and a CUDA toolkit, and set CUDA_HOME."
        )
    if want_cuda:
        # torch reads CUDA_HOME when cpp_extension is imported; an nvcc wrapper on
        # PATH can make it guess the wrong root, so pin it before building.
        os.environ["CUDA_HOME"] = cuda_home
        import torch.utils.cpp_extension as ce

        ce.CUDA_HOME = cuda_home
        arch_source = "TORCH_CUDA_ARCH_LIST" if (os.environ.get("TORCH_CUDA_ARCH_LIST") or "").strip() else "default"
        os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_arch_list(os.environ)

    # -ffp-contract=off: no FMA contraction, so the kernels round as the
    # reference and every ISA variant alike. -fno-trapping-math: lets the
    # vectoriser compute both arms of a select that divides (the LIF charge),
    # which GCC otherwise refuses on AVX2 (no masked division) and leaves the
    # row loops scalar; it changes no result (no reassociation, IEEE
    # rounding, NaN and signed-zero rules all kept), only the promise that FP
    # exception flags are raised exactly as written, which nothing reads.
    cxx = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fopenmp-simd"]
    if _is_gcc():
        # The CPU row kernels branch on a few per-call flags; GCC vectorises
        # such a loop only by unswitching it on them, which its default size
        # budget refuses for the larger backward rows (they then run scalar).
        cxx.append("--param=max-unswitch-insns=400")
    link = []
    if platform.system() == "Linux":
        # at::parallel_for is a header template: with torch's OpenMP backend
        # its `omp parallel` region is compiled into this extension, so without
        # -fopenmp the CPU kernels would silently run on one thread.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    elif platform.system() == "Windows":
        cxx = ["/O2", "/fp:precise", "/openmp"]
    sources = [
        "csrc/ops.cpp",
        "csrc/cpu/neuron_cpu.cpp",
        "csrc/cpu/model_cpu.cpp",
        "csrc/prepare.cpp",  # the CuPy path's host side (any device)
        "csrc/cpu/host_cache.cpp",
        "csrc/cpu/encoder_cpu.cpp",
        "csrc/cpu/spike_linear_cpu.cpp",
        "csrc/cpu/cpu_isa.cpp",
        # the CPU hot loops, one unit per ISA variant (csrc/cpu/cpu_kernels_impl.h)
        "csrc/cpu/cpu_kernels_avx512.cpp",
        "csrc/cpu/cpu_kernels_avx2.cpp",
        "csrc/cpu/cpu_kernels_default.cpp",
    ]
    define_macros = []
    if want_cuda:
        sources += [
            "csrc/cuda/neuron_cuda.cpp",
            "csrc/cuda/launch.cu",
            "csrc/cuda/encoder.cu",
            "csrc/cuda/neuron_f32.cu",
            "csrc/cuda/neuron_f64.cu",
            "csrc/cuda/neuron_f16.cu",
            "csrc/cuda/neuron_bf16.cu",
            "csrc/cuda/convert.cu",
            "csrc/cuda/convert_cuda.cpp",
            "csrc/cuda/model_cuda.cpp",
            "csrc/cuda/model_f32.cu",
            "csrc/cuda/model_f64.cu",
            "csrc/cuda/model_f16.cu",
            "csrc/cuda/model_bf16.cu",
        ]
        nvcc = ["-O3", "--fmad=false", "-lineinfo", "--expt-relaxed-constexpr"]
        ext = CUDAExtension(
            "snn_cuda._C",
            sources,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=link,
            define_macros=define_macros + [("SNN_WITH_CUDA", "1")],
        )
    else:
        ext = CppExtension(
            "snn_cuda._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link, define_macros=define_macros
        )
    _write_build_info(torch, want_cuda, cuda_home, arch_source)
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


def _write_build_info(torch, with_cuda, cuda_home, arch_source=None):
    """Record what was built against, so that import can tell a stale build
    (another torch) from a broken one before loading the shared object."""
    info = {
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "with_cuda": bool(with_cuda),
        "cuda_home": cuda_home if with_cuda else None,
        "cuda_arch_list": os.environ.get("TORCH_CUDA_ARCH_LIST") if with_cuda else None,
        # "default" (DEFAULT_ARCHS) or "TORCH_CUDA_ARCH_LIST" (set by whoever built it)
        "cuda_arch_list_source": arch_source if with_cuda else None,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    (ROOT / "snn_cuda" / "_build_info.py").write_text(
        "# Written by setup.py at build time; do not edit.\nBUILD_INFO = " + repr(info) + "\n"
    )


def _is_gcc() -> bool:
    """Whether the C++ compiler torch's build will use (CXX, else c++) is GCC (clang has no
    --param)."""
    import subprocess

    cxx = os.environ.get("CXX", "c++")
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        return False
    return "Free Software Foundation" in out and "clang" not in out.lower()


def _cupy_wheel():
    """The CuPy wheel for the `cupy` extra: the one matching torch's CUDA major version (CuPy's
    NVRTC and headers must be of a CUDA the driver supports, and torch's CUDA is one), decided
    when this package is built. Without a CUDA build of torch at build time: cupy-cuda12x (CUDA
    12 wheels run on every driver from 525 on). The explicit extras cupy12 / cupy13 override."""
    try:
        import torch

        major = int(str(torch.version.cuda).split(".")[0]) if torch.version.cuda else None
    except Exception:
        major = None
    return {11: "cupy-cuda11x", 12: "cupy-cuda12x", 13: "cupy-cuda13x"}.get(major, "cupy-cuda12x")


def _build_py_with_kernels():
    """build_py that also ships csrc/kernels/*.h, *.cuh as snn_cuda/_kernels/: the CuPy path
    compiles these very headers at run time (snn_cuda.cuda_source.kernel_dir)."""
    from setuptools.command.build_py import build_py

    class BuildPyWithKernels(build_py):
        def run(self):
            super().run()
            src = ROOT / "csrc" / "kernels"
            dst = Path(self.build_lib) / "snn_cuda" / "_kernels"
            # an editable install reads csrc/kernels from the source tree
            if getattr(self, "editable_mode", False) or not src.is_dir():
                return
            for f in sorted(src.rglob("*")):
                if f.suffix in (".h", ".cuh"):
                    out = dst / f.relative_to(src)  # models/ keeps its place for the includes
                    out.parent.mkdir(parents=True, exist_ok=True)
                    self.copy_file(str(f), str(out))

    return BuildPyWithKernels


def _extras():
    """The optional dependencies (pyproject.toml declares them dynamic): the `cupy` extra depends on
    the torch present at build time, see _cupy_wheel."""
    return {
        # the CuPy path: the CUDA kernels compiled at run time by NVRTC, no nvcc needed
        "cupy": [_cupy_wheel()],
        "cupy12": ["cupy-cuda12x"],
        "cupy13": ["cupy-cuda13x"],
        # tests, benchmarks, examples, lint and packaging checks
        "dev": [
            "pytest",
            "hypothesis",
            "expecttest",
            "numpy",
            "ninja",
            "tqdm",
            "matplotlib",
            "torchvision",
            "ruff",
            "build",
            "pre-commit",
        ],
        # the peer libraries the benchmarks compare against (spikingjelly 2.0.0 declares dependencies
        # that would replace torch: prefer `pip install --no-deps -r benchmarks/requirements-peers.txt`)
        "peers": ["spikingjelly==2.0.0", "snntorch==1.0.0", "loguru>=0.7,<1"],
    }


def main():
    # Metadata (name, version, dependencies, ...) is in pyproject.toml; the version in
    # snn_cuda/_version.py. This file adds the compiled extension and the build-time extras.
    ext_modules, cmdclass = [], {}
    if not _flag("SNN_CUDA_NO_EXTENSION"):
        ext_modules, cmdclass = _ext_modules()
    cmdclass = dict(cmdclass, build_py=_build_py_with_kernels())
    setup(
        extras_require=_extras(),
        ext_modules=ext_modules,
        cmdclass=cmdclass,
    )


if __name__ == "__main__":
    main()
