"""The declared-model CUDA kernels proven without a GPU (docs/verification.md, "One kernel source,
three compilers").

The real ``__global__`` bodies of ``csrc/kernels/model_kernels.cuh`` (every model of
``model_list.h`` x variant x surrogate, four dtypes; the backward both as the nvcc launchers run it,
surrogate chosen at run time, and compiled per surrogate) are compiled by g++ through
``python_tests/emulation/host_shim.h`` and run over the launcher's exact grid under AddressSanitizer
+ UBSan, against an independent scalar oracle written from the model headers' equations
(``python_tests/emulation/emu_model.cpp``), whose backward derivation is itself checked against a
forward-mode derivation on every case. The mutation tests apply deliberate bugs to a copy of
``csrc/kernels/`` (the kernel bodies and the model declarations) and require the driver built
against the copy to fail. Only g++ is needed.
"""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import test_emulation as te

pytestmark = pytest.mark.emulation

ROOT = te.ROOT
EMU_DIR = te.EMU_DIR
KERNELS = te.KERNELS
BUILD_DIR = te.BUILD_DIR
DRIVER = EMU_DIR / "emu_model.cpp"


def _matrix_counts():
    """(full, quick) case counts of the driver's matrix, from the model list and the surrogate
    enum: dtypes x sum of variants x detach_reset x surrogates x 10 shapes; the quick build is
    float32 with two surrogates. Fewer cases means the matrix silently shrank. The batch-first
    reruns (every 7th case, MIN_BF_CASES) come on top."""
    listing = (KERNELS / "model_list.h").read_text()
    entry = r'X\(\s*\d+,\s*\w+,\s*"\w+",\s*\d+,\s*"[^"]*",\s*\d+,\s*"[^"]*",\s*(\d+),'
    variants = [int(v) for v in re.findall(entry, listing)]
    assert variants, "no model found in model_list.h: update the pattern"
    enum = "\n".join(p.read_text() for p in (KERNELS / "surrogate_list.h", KERNELS / "common.h") if p.exists())
    n_sg = int(re.search(r"SG_COUNT\s*=\s*(\d+)", enum).group(1))
    return 4 * sum(variants) * 2 * n_sg * 10, sum(variants) * 2 * 2 * 10


MIN_CASES, MIN_QUICK_CASES = _matrix_counts()
MIN_BF_CASES = MIN_CASES // 7


def _compile_cmd(gxx, kernel_root, out, extra=()):
    return [gxx, *te.CXXFLAGS, *extra, "-I", str(kernel_root), "-I", str(EMU_DIR), str(DRIVER), "-o", str(out)]


def _sources():
    return [DRIVER, te.SHIM, te.ORACLE_SG, te.LAYOUT_H, *sorted(p for p in KERNELS.rglob("*") if p.is_file())]


def _build_cached(gxx):
    """Build the full driver into python_tests/emulation/build/, rebuilding when a source is newer
    than the binary or the command changed. A build failure is a test failure."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    binary = BUILD_DIR / "emu_model"
    stamp = BUILD_DIR / "emu_model.cmd"
    cmd_text = " ".join(_compile_cmd(gxx, ROOT / "csrc", binary))
    fresh = (
        binary.exists()
        and stamp.exists()
        and stamp.read_text() == cmd_text
        and all(binary.stat().st_mtime >= src.stat().st_mtime for src in _sources())
    )
    if fresh:
        return binary
    tmp = BUILD_DIR / f"emu_model.tmp{os.getpid()}"
    tmp_cmd = _compile_cmd(gxx, ROOT / "csrc", tmp)
    proc = subprocess.run(tmp_cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"model emulation driver failed to build:\n{' '.join(tmp_cmd)}\n{proc.stdout}{proc.stderr}")
    os.replace(tmp, binary)
    stamp.write_text(cmd_text)
    return binary


@pytest.fixture(scope="module")
def driver():
    return _build_cached(te._gxx())


def _counter(out, name):
    m = re.search(rf"\b{name}=(\d+)", out)
    assert m, f"no {name} counter in the driver's output"
    return int(m.group(1))


def test_emulated_model_kernels_match_oracle(driver):
    proc = te._run(driver)
    out = proc.stdout + proc.stderr
    m = te.SUMMARY_RE.search(proc.stdout)
    assert m is not None, f"no summary line (rc={proc.returncode}); tail:\n{out[-6000:]}"
    passed, failed = int(m.group(1)), int(m.group(2))
    print(m.group(0))
    assert failed == 0, f"{failed} model emulation cases failed:\n{out[-12000:]}"
    assert proc.returncode == 0, f"driver exited {proc.returncode}:\n{out[-6000:]}"
    assert passed >= MIN_CASES + MIN_BF_CASES, f"only {passed} cases ran (expected >= {MIN_CASES + MIN_BF_CASES})"
    # What the matrix must have exercised: wrapping grid-stride loops, grid-shape determinism
    # (bitwise), the oracle's adjoint self-check on every backward, parameter gradients, constant
    # inputs summed over time, T not a multiple of the chunk.
    assert _counter(proc.stdout, "wrapped_grids") > 0
    assert _counter(proc.stdout, "determinism_checks") > 0
    assert _counter(proc.stdout, "adjoint_checks") >= MIN_CASES // 2
    assert _counter(proc.stdout, "grad_params_checks") > 0
    assert _counter(proc.stdout, "const_input_cases") > 0
    assert _counter(proc.stdout, "partial_chunk_cases") > 0
    # The launchers' run-time-surrogate backward (SG_ANY) against the instance compiled for the
    # surrogate, bitwise, on every backward.
    assert _counter(proc.stdout, "static_sg_checks") >= MIN_CASES // 2
    # The byte-spike forward (spikes_u8) against the oracle's spikes, on every case.
    assert _counter(proc.stdout, "spikes_u8_checks") >= MIN_CASES
    # The batch-first layout ([B, T, F] sequences, params.h SeqLayout), bitwise against the
    # time-major runs: constant inputs, state_seq and its gradient, wrapping grids, parameter
    # gradients, x as a sequence and as a constant [N], one sample and one neuron per sample.
    bf = te.batch_first_counters(proc.stdout)
    assert bf["cases"] >= MIN_BF_CASES, f"only {bf['cases']} batch-first reruns (expected >= {MIN_BF_CASES})"
    wanted = "backward const_input state_seq grad_state_seq wrapped param_grads B1 F1 x_seq x_constant"
    missing = [k for k in wanted.split() if bf.get(k, 0) == 0]
    assert not missing, f"no batch-first rerun exercised {missing}"


# ------------------------------------------------------------------------------------------------
# Mutation tests ("prove it bites"), te.MUTANTS' format: name -> (file under csrc/kernels, function
# whose body is mutated, regex, replacement, expected detection regex).
# ------------------------------------------------------------------------------------------------
_OVERFLOW = r"AddressSanitizer: heap-buffer-overflow"
MUTANTS = {
    # The grid-stride bound one too far: thread n == N runs.
    "model_off_by_one_bwd": ("model_kernels.cuh", "model_bwd_kernel", r"\bn\s*<\s*N\s*;", "n <= N;", _OVERFLOW),
    # A [kParams, P] parameter read per neuron without the n % P broadcast.
    "model_param_broadcast": ("model_kernels.cuh", "model_load_params", r"n\s*%\s*P\b", "n", _OVERFLOW),
    # Checkpoints stacked [kStates, chunks] instead of [chunks, kStates].
    "model_ckpt_layout": (
        "model_kernels.cuh",
        "model_fwd_kernel",
        r"\(\(t0 / kChunk\) \* NS \+ q\) \* N",
        "((t0 / kChunk) + q * num_chunks(p.T)) * N",
        r"^FAIL .*: ckpt\[",
    ),
    # grad_state_seq read with the stride of a [T, N] tensor between states.
    "model_gseq_state_stride": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"gseq\[q \* TN \+ o\]",
        "gseq[q * N + o]",
        r"^FAIL .*grad_state_seq=1.*: grad_|" + _OVERFLOW,
    ),
    # The replay keeps the state after each step instead of before it.
    "model_replay_order": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"(?s)(for \(int q = 0; q < NS; \+\+q\) prev\[j\]\[q\] = st\[q\];)\s*"
        r"(M::template forward<V, S>\(c, prm, st, xs\[h0 \+ j\]\);)",
        r"\2\n            \1",
        r"^FAIL .*: grad_",
    ),
    # The run-time surrogate not handed to the model: every SG_ANY backward runs Sigmoid.
    "model_sg_kind_dropped": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"make_mcfg<S>\(p\.sg_param, p\.detach_reset, p\.surrogate\)",
        "make_mcfg<S>(p.sg_param, p.detach_reset)",
        r"^FAIL .*sg=Rect.*: (grad_|backward with SG_ANY)",
    ),
    # A later span's replay starting one step late (the spans of half a chunk: AdLif).
    "model_span_replay": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"for \(int k = 0; k < h0; \+\+k\)",
        "for (int k = 1; k < h0; ++k)",
        r"^FAIL .*model=adlif.*: grad_",
    ),
    # The batch-first layout (params.h SeqLayout), which only the batch-first reruns see: state_seq
    # written time-major within each state's block, and the backward reading a constant input
    # ([N], neuron order) at the sequences' offset (which is n time-major).
    "model_batch_first_state_seq": (
        "model_kernels.cuh",
        "model_fwd_kernel",
        r"seq\[q \* TN \+ o\]",
        "seq[q * TN + (t0 + k) * N + n]",
        te.BATCH_FIRST_CAUGHT,
    ),
    "model_batch_first_const_x": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"to_state\(x\[n\]\)",
        "to_state(x[io])",
        te.BATCH_FIRST_CAUGHT,
    ),
    # grad_state_last dropped.
    "model_glast_ignored": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"carry\[q\] = glast \? glast\[q \* N \+ n\] : S\(0\);",
        "carry[q] = S(0);",
        r"^FAIL .*grad_state_last=1.*: grad_",
    ),
    # The parameter-gradient output left unwritten for neuron 0.
    "model_grad_params_unwritten": (
        "model_kernels.cuh",
        "model_bwd_kernel",
        r"if \(gprm\)",
        "if (gprm && n > 0)",
        r"^FAIL .*: grad_params\[param=\d+,n=0\] kernel=nan",
    ),
    # Model declarations: Synaptic's beta gradient without the zero reset's (1 - R) factor, and
    # CubaLif's hard-reset derivative with the sign of (v_reset - h) flipped.
    "synaptic_beta_grad": (
        "models/synaptic.h",
        "backward",
        r"gp\[1\] \+= gbase \* prev\[1\];",
        "gp[1] += gmem * prev[1];",
        r"^FAIL .*model=synaptic variant=zero.*: grad_params\[param=1,",
    ),
    "cuba_lif_reset_grad": (
        "models/cuba_lif.h",
        "backward",
        r"\(p\[3\] - h\) \* sg",
        "(h - p[3]) * sg",
        r"^FAIL .*model=cuba_lif variant=hard.*detach_reset=0.*: grad_",
    ),
    # AdLif: the reset term thr s_{t-1} dropped from the gradient reaching s_{t-1}.
    "adlif_reset_carry": (
        "models/adlif.h",
        "backward",
        r"carry\[2\] = -\(g_u \* alpha \* thr\) \+ g_w \* b;",
        "carry[2] = g_w * b;",
        r"^FAIL .*model=adlif.*: grad_",
    ),
    # Leaky: the zero reset's (1 - R) factor dropped from the gradient reaching U_{t-1}.
    "leaky_zero_carry": (
        "models/leaky.h",
        "backward",
        r"V == ZERO \? beta \* \(S\(1\) - r\) : beta",
        "beta",
        r"^FAIL .*model=leaky variant=zero.*: grad_",
    ),
    # Byte spikes written as 0/1 instead of their values: I-LIF's counts above 1 are lost.
    "model_spikes_u8_binary": (
        "model_kernels.cuh",
        "model_fwd_kernel",
        r"\(unsigned char\)\(int\)s",
        "(unsigned char)(s != S(0))",
        r"^FAIL .*model=ilif.*: spikes_u8\[",
    ),
    # ILif: the straight-through window open at its upper end (z == hi, a rounding tie, is in it).
    "ilif_window_closed": (
        "models/ilif.h",
        "backward",
        r"z <= p\[4\]",
        "z < p[4]",
        r"^FAIL .*model=ilif.*: grad_",
    ),
}

PRISTINE = "pristine"


@pytest.fixture(scope="module")
def mutant_results():
    """Build every mutant and the unmutated control as the quick driver (-DEMU_QUICK), concurrently;
    then run each. Values: (returncode or "build-failed", output, sites mutated)."""
    gxx = te._gxx()
    tmp_root = Path(tempfile.mkdtemp(prefix="snn_emu_model_mut_"))
    procs = {}
    results = {}
    try:
        for name in [PRISTINE, *MUTANTS]:
            root = tmp_root / name
            shutil.copytree(KERNELS, root / "kernels")
            count = 0
            if name != PRISTINE:
                fname, func, pattern, repl, _sig = MUTANTS[name]
                path = root / "kernels" / fname
                original = path.read_text()
                mutated, count = te._apply_mutation(original, func, pattern, repl)
                path.write_text(mutated)
                assert path.read_text() != original, f"mutant {name}: the file did not change"
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
            run = te._run(tmp_root / name / "emu", timeout=300)
            results[name] = (run.returncode, run.stdout + run.stderr, count)
        yield results
    finally:
        for proc, _cmd, _count in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp_root, ignore_errors=True)


def test_unmutated_quick_model_build_passes(mutant_results):
    """Control for the mutants: the quick build against the pristine kernels passes."""
    rc, out, _ = mutant_results[PRISTINE]
    assert rc != "build-failed", f"quick build failed:\n{out[-6000:]}"
    m = te.SUMMARY_RE.search(out)
    assert rc == 0 and m and int(m.group(2)) == 0, out[-6000:]
    assert int(m.group(1)) >= MIN_QUICK_CASES
    # The batch-first mutants need reruns in the quick build, with state_seq and backwards.
    bf = te.batch_first_counters(out)
    assert bf["cases"] >= MIN_QUICK_CASES // 8 and bf["state_seq"] > 0 and bf["backward"] > 0, bf


@pytest.mark.parametrize("name", list(MUTANTS))
def test_model_mutant_is_caught(mutant_results, name):
    rc, out, count = mutant_results[name]
    assert rc != "build-failed", f"mutant {name} did not compile (a build error proves nothing):\n{out[-4000:]}"
    assert rc != 0, f"mutant {name} ({count} site(s) mutated) was NOT caught:\n{out[-4000:]}"
    signature = MUTANTS[name][4]
    hit = re.search(signature, out, re.M)
    assert hit, f"mutant {name} failed (rc={rc}) but not the expected way ({signature!r}):\n{out[-4000:]}"
    print(f"{name}: caught, rc={rc}, {hit.group(0)[:200]}")
