"""The CUDA path proven without a GPU (docs/verification.md, "One kernel source, three compilers").

The real ``__global__`` bodies in ``csrc/kernels/neuron_kernels.cuh`` are compiled by g++ through
``python_tests/emulation/host_shim.h`` and run serially over the launcher's exact grid under
AddressSanitizer + UBSan, against an independent scalar oracle written from docs/neuron_semantics.md
(``python_tests/emulation/emu_neuron.cpp``). No torch, no GPU: only g++.

The mutation tests prove the harness bites: each applies one deliberate indexing / alignment bug to
a copy of ``csrc/kernels/`` and requires the driver built against the copy to fail.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.emulation

ROOT = Path(__file__).resolve().parent.parent
EMU_DIR = ROOT / "python_tests" / "emulation"
KERNELS = ROOT / "csrc" / "kernels"
BUILD_DIR = EMU_DIR / "build"
DRIVER = EMU_DIR / "emu_neuron.cpp"
SHIM = EMU_DIR / "host_shim.h"
ORACLE_SG = EMU_DIR / "oracle_surrogate.h"  # both drivers' surrogate oracle
LAYOUT_H = EMU_DIR / "emu_layout.h"  # both drivers' batch-first checks

# -g1: line tables only (sanitizer reports keep file:line); full -g doubles the build time of the
# ~300 kernel instantiations without adding anything the reports use.
CXXFLAGS = [
    "-std=c++17",
    "-O1",
    "-g1",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fsanitize=alignment",
    "-ffp-contract=off",
]


def _n_surrogates() -> int:
    """SG_COUNT of the generated surrogate list: the matrix runs every surrogate."""
    text = (KERNELS / "surrogate_list.h").read_text()
    return int(re.search(r"SG_COUNT\s*=\s*(\d+)", text).group(1))


# Per dtype: 11 model/reset/variant combos x detach x SG_COUNT surrogates x 12 shapes, plus the
# learnable/per-neuron-parameter matrix (26 configurations x 2-3 surrogates x 11 shapes = 715),
# plus the byte conversions (8 sizes x 4 offsets x binary or not x 3 checks = 192); x 4 dtypes,
# + 60 Poisson encoder cases + 1 shim check; plus the batch-first reruns of every 5th case of the
# two matrices. With 10 surrogates: 14249 + 2684 = 16933. Fewer means the matrix silently shrank
# (a surrogate whose kernel the driver's table lacks, say); the count follows SG_COUNT.
_MATRIX = 11 * 2 * _n_surrogates() * 12
MIN_BF_CASES = 4 * (_MATRIX + 715) // 5 - 20  # the every-5th pick rounds per matrix
MIN_CASES = 4 * (_MATRIX + 715 + 192) + 61 + MIN_BF_CASES
SUMMARY_RE = re.compile(r"^EMU: (\d+) cases passed, (\d+) failed$", re.M)
BATCH_FIRST_RE = re.compile(r"^EMU: batch_first (.*)$", re.M)
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


def _gxx():
    gxx = shutil.which(os.environ.get("CXX_EMU", "g++"))
    if gxx is None:
        pytest.skip("g++ not found: the host emulation of the CUDA kernels needs a C++17 g++")
    return gxx


def _env():
    env = dict(os.environ)
    env.update(SANITIZER_ENV)
    # An interposed allocator (e.g. LD_PRELOAD'ed jemalloc from the Python side) breaks ASan.
    env.pop("LD_PRELOAD", None)
    return env


def _compile_cmd(gxx, kernel_root, out, extra=()):
    return [gxx, *CXXFLAGS, *extra, "-I", str(kernel_root), "-I", str(EMU_DIR), str(DRIVER), "-o", str(out)]


def _sources():
    return [DRIVER, SHIM, ORACLE_SG, LAYOUT_H, *sorted(KERNELS.glob("*"))]


def _build_cached(gxx):
    """Build the full driver into python_tests/emulation/build/, rebuilding when a source is newer
    than the binary or the command changed. A build failure is a test failure."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    binary = BUILD_DIR / "emu_neuron"
    stamp = BUILD_DIR / "emu_neuron.cmd"
    cmd = _compile_cmd(gxx, ROOT / "csrc", binary)
    cmd_text = " ".join(cmd)
    fresh = (
        binary.exists()
        and stamp.exists()
        and stamp.read_text() == cmd_text
        and all(binary.stat().st_mtime >= src.stat().st_mtime for src in _sources())
    )
    if fresh:
        return binary
    tmp = BUILD_DIR / f"emu_neuron.tmp{os.getpid()}"
    tmp_cmd = _compile_cmd(gxx, ROOT / "csrc", tmp)
    proc = subprocess.run(tmp_cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"emulation driver failed to build:\n{' '.join(tmp_cmd)}\n{proc.stdout}{proc.stderr}")
    os.replace(tmp, binary)
    stamp.write_text(cmd_text)
    return binary


@pytest.fixture(scope="module")
def driver():
    return _build_cached(_gxx())


def _run(binary, *args, timeout=600):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, env=_env())


def batch_first_counters(stdout):
    """The driver's "EMU: batch_first name=count ..." line as a dict."""
    m = BATCH_FIRST_RE.search(stdout)
    assert m, "no batch_first line in the driver's output"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def test_emulated_kernels_match_oracle(driver):
    proc = _run(driver)
    out = proc.stdout + proc.stderr
    m = SUMMARY_RE.search(proc.stdout)
    assert m is not None, f"no summary line (rc={proc.returncode}); tail:\n{out[-6000:]}"
    passed, failed = int(m.group(1)), int(m.group(2))
    print(m.group(0))
    assert failed == 0, f"{failed} emulation cases failed:\n{out[-12000:]}"
    assert proc.returncode == 0, f"driver exited {proc.returncode}:\n{out[-6000:]}"
    assert passed >= MIN_CASES, f"only {passed} cases ran (expected >= {MIN_CASES})"
    launches = re.search(r"wrapped_grids=(\d+)", proc.stdout)
    assert launches and int(launches.group(1)) > 0, "no case exercised a wrapping grid-stride loop"
    # Parameter gradients compared bitwise across two grid shapes (SM counts).
    determinism = re.search(r"determinism_checks=(\d+)", proc.stdout)
    assert determinism and int(determinism.group(1)) > 0, "no case checked grid-shape determinism"
    # Byte spikes (spikes_u8, NeuronLinear) against the oracle on a third of the cases.
    u8 = re.search(r"u8_spike_checks=(\d+)", proc.stdout)
    assert u8 and int(u8.group(1)) >= MIN_CASES // 4, "too few cases checked the uint8 spike output"
    # The byte conversions ran both their vector path (aligned tensors) and their per-element path
    # (views at odd offsets).
    vec = re.search(r"convert_vector_cases=(\d+) convert_scalar_cases=(\d+)", proc.stdout)
    assert vec and int(vec.group(1)) > 0 and int(vec.group(2)) > 0, "a conversion path went unexercised"
    # The batch-first layout ([B, T, F] sequences, params.h SeqLayout), bitwise against the
    # time-major runs: both save modes, constant inputs, v_seq, wrapping grids, parameter
    # gradients, byte spikes, x as a sequence and as a constant [N], one sample and one neuron per
    # sample.
    bf = batch_first_counters(proc.stdout)
    assert bf["cases"] >= MIN_BF_CASES, f"only {bf['cases']} batch-first reruns (expected >= {MIN_BF_CASES})"
    wanted = "backward save_h ckpt const_input v_seq wrapped param_grads u8 B1 F1 x_seq x_constant"
    missing = [k for k in wanted.split() if bf.get(k, 0) == 0]
    assert not missing, f"no batch-first rerun exercised {missing}"


@pytest.mark.parametrize(
    "mode, signature",
    [
        ("--selftest-misaligned-float4", "misaligned address"),
        ("--selftest-overrun", "heap-buffer-overflow"),
    ],
)
def test_shim_sanitizers_fire(driver, mode, signature):
    """The shim's float4 carries its real 16-byte alignment and buffers are exact: a misaligned
    vector load and a one-past-the-end read must abort the process."""
    proc = _run(driver, mode)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"{mode} was not caught:\n{out[-4000:]}"
    assert signature in out, f"{mode}: expected '{signature}' in the report:\n{out[-4000:]}"


# ------------------------------------------------------------------------------------------------
# Mutation tests ("prove it bites")
# ------------------------------------------------------------------------------------------------
def _section(text, kernel_name):
    """(start, end) of the __global__ function `kernel_name` in text (up to the next __global__)."""
    start = text.find(kernel_name + "(")
    assert start >= 0, f"kernel {kernel_name} not found: the mutation patterns need updating"
    nxt = text.find("__global__", start)
    return start, (nxt if nxt >= 0 else len(text))


# A batch-first rerun failing: its FAIL line, or a sanitizer abort in it (the driver names the case).
BATCH_FIRST_CAUGHT = r"^FAIL .* batch_first B=\d+.*: |sanitizer abort while running case: .* batch_first B=\d+"

# name -> (file, kernel whose body is mutated, regex, replacement, expected detection regex)
MUTANTS = {
    # (a) off-by-one bound of the grid-stride loop: thread n == N runs.
    "off_by_one_fwd": (
        "neuron_kernels.cuh",
        "neuron_fwd_kernel",
        r"\bn\s*<\s*N\s*;",
        "n <= N;",
        r"AddressSanitizer: heap-buffer-overflow",
    ),
    "off_by_one_bwd": (
        "neuron_kernels.cuh",
        "neuron_bwd_kernel",
        r"\bn\s*<\s*N\s*;",
        "n <= N;",
        r"AddressSanitizer: heap-buffer-overflow",
    ),
    # (b) wrong time stride: the input read as if contiguous, and the output row pitch off by one.
    "x_time_stride": (
        "neuron_kernels.cuh",
        "neuron_fwd_kernel",
        r"\(t0\s*\+\s*k\)\s*\*\s*p\.x_tstride\b",
        "(t0 + k) * p.N",
        r"^FAIL .*x_tstride=\d+|AddressSanitizer: heap-buffer-overflow",
    ),
    "out_row_pitch": (
        "neuron_kernels.cuh",
        "neuron_fwd_kernel",
        r"\bio\s*\+\s*\(t0\s*\+\s*k\)\s*\*\s*ts\b",
        "io + (t0 + k) * (ts + 1)",
        r"AddressSanitizer: heap-buffer-overflow",
    ),
    # (c) misaligned access: backward reads `saved` through a pointer half an element off.
    "misaligned_saved": (
        "neuron_kernels.cuh",
        "neuron_bwd_kernel",
        r"\(const\s+S\s*\*\)\s*p\.saved\b",
        "(const S*)((const char*)p.saved + sizeof(S) / 2)",
        r"runtime error: load of misaligned address",
    ),
    # (d) learnable / per-neuron parameters: a [P] parameter read per neuron without
    # the n % P broadcast; a per-neuron threshold-gradient output left partly unwritten.
    "param_broadcast": (
        "params.h",
        "neuron_coeffs",
        r"\[\s*n\s*%\s*p\.P\s*\]",
        "[n]",
        r"AddressSanitizer: heap-buffer-overflow",
    ),
    # (e) the byte conversions: the vector path taken without the alignment test (a view at an odd
    # offset then loads a misaligned vector), and the per-element tail one element too far.
    "convert_unaligned_vector": (
        "convert_kernels.cuh",
        "narrow_kernel",
        r"const bool vec = [^;]*;",
        "const bool vec = true;",
        r"runtime error: (load|store|member access within) misaligned address|"
        r"runtime error: .*misaligned address",
    ),
    "convert_tail_overrun": (
        "convert_kernels.cuh",
        "widen_kernel",
        r"e \+ k < p\.n",
        "e + k <= p.n",
        r"AddressSanitizer: heap-buffer-overflow",
    ),
    # (f) the batch-first layout (params.h SeqLayout), which only the batch-first reruns see: the
    # step stride one too long (every sequence), and a constant input ([N], neuron order) read at
    # the sequences' offset (which is n time-major).
    "batch_first_tstride": (
        "params.h",
        "seq_step",
        r"\?\s*l\.tstride\s*:",
        "? l.tstride + 1 :",
        BATCH_FIRST_CAUGHT,
    ),
    "batch_first_const_x": (
        "neuron_kernels.cuh",
        "neuron_fwd_kernel",
        r"to_state\(x\[n\]\)",
        "to_state(x[io])",
        BATCH_FIRST_CAUGHT,
    ),
    "grad_th_unwritten": (
        "neuron_kernels.cuh",
        "neuron_bwd_kernel",
        r"if\s*\(\s*g_thr\s*\)",
        "if (g_thr && n > 0)",
        r"^FAIL .*: grad_th\[\d+ .*kernel=nan",
    ),
}


def _apply_mutation(src_text, kernel, pattern, repl):
    start, end = _section(src_text, kernel)
    body = src_text[start:end]
    new_body, count = re.subn(pattern, repl, body)
    assert count >= 1, (
        f"mutation pattern {pattern!r} no longer matches {kernel}: update the mutant so the test "
        "still proves the emulation catches this bug class"
    )
    mutated = src_text[:start] + new_body + src_text[end:]
    assert mutated != src_text
    return mutated, count


PRISTINE = "pristine"


@pytest.fixture(scope="module")
def mutant_results():
    """Build every mutant, plus the unmutated control, as the quick driver subset (-DEMU_QUICK),
    concurrently; then run each. Values: (returncode or "build-failed", output, sites mutated)."""
    gxx = _gxx()
    tmp_root = Path(tempfile.mkdtemp(prefix="snn_emu_mut_"))
    procs = {}
    results = {}
    try:
        for name in [PRISTINE, *MUTANTS]:
            root = tmp_root / name
            shutil.copytree(KERNELS, root / "kernels")
            count = 0
            if name != PRISTINE:
                fname, kernel, pattern, repl, _sig = MUTANTS[name]
                path = root / "kernels" / fname
                original = path.read_text()
                mutated, count = _apply_mutation(original, kernel, pattern, repl)
                path.write_text(mutated)
                assert path.read_text() != original, f"mutant {name}: the kernel file did not change"
            cmd = _compile_cmd(gxx, root, root / "emu", extra=("-DEMU_QUICK",))
            procs[name] = (
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                cmd,
                count,
            )
        for name, (proc, cmd, count) in procs.items():
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                results[name] = ("build-failed", " ".join(cmd) + "\n" + out, count)
                continue
            run = _run(tmp_root / name / "emu", timeout=300)
            results[name] = (run.returncode, run.stdout + run.stderr, count)
        yield results
    finally:
        for proc, _cmd, _count in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp_root, ignore_errors=True)


def test_unmutated_quick_build_passes(mutant_results):
    """Control for the mutants: the same quick build against the pristine kernels passes, so a
    failing mutant fails because of its mutation."""
    rc, out, _ = mutant_results[PRISTINE]
    assert rc != "build-failed", f"quick build failed:\n{out[-6000:]}"
    m = SUMMARY_RE.search(out)
    assert rc == 0 and m and int(m.group(2)) == 0, out[-6000:]
    # float32 only: 528 main-matrix + 297 learnable-parameter + 15 Poisson + 192 conversion cases + 1 shim
    # check + 166 batch-first reruns.
    assert int(m.group(1)) >= 1150
    # The batch-first mutants need reruns in the quick build, where each must rerun its backward.
    bf = batch_first_counters(out)
    assert bf["cases"] >= 150 and bf["backward"] > 0, bf


@pytest.mark.parametrize("name", list(MUTANTS))
def test_mutant_is_caught(mutant_results, name):
    rc, out, count = mutant_results[name]
    assert rc != "build-failed", f"mutant {name} did not compile (a build error proves nothing):\n{out[-4000:]}"
    assert rc != 0, f"mutant {name} ({count} site(s) mutated) was NOT caught:\n{out[-4000:]}"
    signature = MUTANTS[name][4]
    hit = re.search(signature, out, re.M)
    assert hit, f"mutant {name} failed (rc={rc}) but not the expected way ({signature!r}):\n{out[-4000:]}"
    print(f"{name}: caught, rc={rc}, {hit.group(0)}")
