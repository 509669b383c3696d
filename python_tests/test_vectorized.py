"""The built extension's AVX2 and AVX-512 kernel variants are vectorised (python_tests/vectorization.py).

Reads machine code, so it runs on any x86-64 machine: an Intel machine catches a loop that only an
AVX2-only machine would run scalar. In CI (CI=true) a missing objdump is a failure, not a skip.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from pathlib import Path

import pytest

from snn_cuda import _ext

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vectorization  # noqa: E402

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not _ext.loaded, reason="x86-64 builds only"
)


@pytest.fixture(scope="module")
def report():
    if shutil.which("objdump") is None:
        if os.environ.get("CI"):
            pytest.fail("objdump is missing (Debian package binutils): the vectorisation check cannot run")
        pytest.skip("objdump is missing (Debian package binutils)")
    return vectorization.check(vectorization.extension_path())


def test_every_kernel_of_the_vector_variants_has_a_vector_hot_loop(report):
    reports, other = report
    print(vectorization.summary(reports, other))
    bad = [r for r in reports if not r.ok]
    assert not bad, "\n".join(f"{r.name}: {'; '.join(r.problems)}" for r in bad[:20])


def test_the_check_covers_every_row_kind(report):
    """New row kinds land in the same namespaces and are picked up without a list; this guards
    against the check silently matching nothing."""
    reports, _ = report
    names = " ".join(r.name for r in reports)
    for kind in (
        "fwd_row<",
        "bwd_row<",
        "fwd_row_p<",
        "bwd_row_p<",
        "state_row<",
        "readout_row<",
        "store_bytes<",
        "load_row<",
        "store_row<",
        "poisson_run<",
        "narrow_run<",
        "widen_run<",
    ):
        for ns in ("snn_cpu::avx2::", "snn_cpu::avx512::"):
            assert f"{ns}{kind}" in names, f"no {ns}{kind} kernel in the disassembly"
    per_variant = {v: sum(1 for r in reports if r.variant == v) for v in vectorization.VARIANTS}
    assert per_variant["avx2"] == per_variant["avx512"] >= 300, per_variant


def test_no_wide_instructions_outside_the_variants(report):
    """The baseline variant and every other function use no AVX register: a wider-ISA copy of an
    inline function shared with a variant's unit would crash CPUs without it."""
    _, other = report
    assert not other, "\n".join(other[:20])


def test_the_checker_sees_scalar_code():
    """The hot-loop analysis flags a scalar loop and accepts a vector one (synthetic listings)."""
    Ins = vectorization.Insn
    scalar = [
        Ins(0x10, "vmovss", "(%rax),%xmm0"),
        Ins(0x14, "vdivss", "%xmm1,%xmm0,%xmm0"),
        Ins(0x18, "vmovups", "%ymm2,(%rcx)"),
        Ins(0x1C, "jne", "10 <f+0x10>"),
    ]
    vector = [
        Ins(0x10, "vmovups", "(%rax),%ymm0"),
        Ins(0x14, "vdivps", "%ymm1,%ymm0,%ymm0"),
        Ins(0x18, "vmovups", "%ymm0,(%rcx)"),
        Ins(0x1C, "jne", "10 <f+0x10>"),
        Ins(0x20, "vdivss", "%xmm1,%xmm0,%xmm0"),
        Ins(0x24, "jne", "20 <f+0x20>"),
    ]
    assert not vectorization.check_function("void snn_cpu::avx2::fwd_row<0>()", scalar, "avx2").ok
    assert vectorization.check_function("void snn_cpu::avx2::fwd_row<0>()", vector, "avx2").ok
    assert not vectorization.check_function("void snn_cpu::avx512::fwd_row<0>()", vector, "avx512").ok
    fma = vector[:1] + [Ins(0x16, "vfmadd231ps", "%ymm1,%ymm2,%ymm0")] + vector[1:]
    assert not vectorization.check_function("void snn_cpu::avx2::fwd_row<0>()", fma, "avx2").ok
