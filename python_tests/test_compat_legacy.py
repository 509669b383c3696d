"""snn_cuda.compat.patch_spikingjelly() against SpikingJelly 0.0.0.0.12, 0.0.0.0.14 and 2.0.

The legacy versions share the package name ``spikingjelly`` with 2.0 (installed in the venv), so
they are installed with ``pip install --no-deps --target DIR spikingjelly==0.0.0.0.12`` (and
``==0.0.0.0.14``) and the checks run in subprocesses (legacy_sj_worker.py) with DIR first on
PYTHONPATH. The folders come from SNN_CUDA_LEGACY_SJ_012 / SNN_CUDA_LEGACY_SJ_014 (.ci/run
sets them); without them the legacy cases skip, except under CI (CI=true), where they fail.

Each worker run covers, against that version's own torch backend: IF / LIF / ParametricLIF,
multi-step and single-step, surrogates Sigmoid / ATan / PiecewiseQuadratic (non-default
alpha), hard reset (v_reset 0 and -0.1) and soft reset, detach_reset, decay_input, store_v_seq
(0.0.0.0.14 / 2.0), float64 and float32: spikes bit-equal, membranes, v_seq and gradients
(input and ``w``) equal to rounding (bounds in the worker), state_dict keys and memories equal,
``functional.reset_net`` restoring the same memories; that every case ran on the fused op; that
an unsupported surrogate falls back to SpikingJelly's torch code with a warning and a report
entry; that unpatch_spikingjelly() restores the classes; and (0.0.0.0.12 / 0.0.0.0.14) that
snn_cuda.convert swaps an already-built legacy model's nodes for equal snn_cuda layers. Once with CuPy hidden (the
machine the patch is for) and once with it present (installed, no GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "legacy_sj_worker.py"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _legacy_dir(version: str):
    var = f"SNN_CUDA_LEGACY_SJ_{version}"
    d = os.environ.get(var)
    if d and (Path(d) / "spikingjelly").is_dir():
        return d
    pin = {"012": "0.0.0.0.12", "014": "0.0.0.0.14"}[version]
    why = f"{var} does not name a folder holding spikingjelly=={pin} (pip install --no-deps --target DIR)"
    if IN_CI:
        pytest.fail(f"CI: {why}")
    pytest.skip(why)


def _have_sj20() -> bool:
    try:
        import spikingjelly.activation_based.neuron  # noqa: F401
    except ImportError:
        return False
    return True


def _run_worker(version: str, cupy: str, extra_path=None) -> dict:
    env = dict(os.environ)
    paths = [str(ROOT)] + ([extra_path] if extra_path else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run(
        [sys.executable, str(WORKER), version, cupy],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=900,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LEGACY_RESULT ")), None)
    assert line is not None, (
        f"worker gave no result (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(line[len("LEGACY_RESULT ") :])


# cases per worker run: (IF 1 + LIF 2 + PLIF 2 decay_input settings) x 3 surrogates x 3 resets
# x 2 detach_reset = 90 per (step mode, dtype); 0.0.0.0.12 has no single-step PLIF CuPy path
# and its single-step CuPy path is float32 only
# (with CuPy present, one surrogate: a third of that)
EXPECTED_CASES = {"012": 90 * 2 + 54, "014": 90 * 4, "20": 90 * 4}
PATCHED = {
    "012": {
        "spikingjelly.clock_driven.neuron.MultiStepIFNode",
        "spikingjelly.clock_driven.neuron.MultiStepLIFNode",
        "spikingjelly.clock_driven.neuron.MultiStepParametricLIFNode",
        "spikingjelly.clock_driven.neuron.IFNode",
        "spikingjelly.clock_driven.neuron.LIFNode",
    },
    "014": {
        "spikingjelly.activation_based.neuron.IFNode",
        "spikingjelly.activation_based.neuron.LIFNode",
        "spikingjelly.activation_based.neuron.ParametricLIFNode",
    },
}
PATCHED["20"] = PATCHED["014"]


def _check(r: dict, version: str, cupy: str) -> None:
    assert not r["failures"], f"{len(r['failures'])} failing cases, first ones:\n" + "\n".join(r["failures"][:10])
    assert r["cases"] == EXPECTED_CASES[version] // (1 if cupy == "hidden" else 3)
    assert r["fused_calls"] > 0
    assert PATCHED[version] <= set(r["patched"]), r["report"]
    assert r["fallback_warned"] and r["fallback_equal"] and r["fallback_reported"]
    assert r["unpatch_restored"]
    for dtype, h in r["half"].items():
        assert h["fused"] and h["dtypes"] and h["spike_mismatch"] < 0.02, (dtype, h)
    if version == "20":
        assert "backend must be one of 'torch', 'cupy', 'triton', got 'cuda'" in r.get("bad_backend_error", ""), r
    if version != "20":  # snn_cuda.convert on an already-built legacy model
        c = r["convert"]
        assert c["converted"] == 3 and c["types"] == ["LIF", "IF", "ParametricLIF"], c
        assert c["skipped"] == ["a subclass of a legacy SpikingJelly node: not supported"], c
        assert c["keys_equal"] and c["spikes_equal"] and 0 < c["spike_rate"] < 1, c
        assert c["grads_close"] and c["v_seq_close"] and c["reset"], c
    if cupy == "hidden":
        # the failure the patch is for, before it and again after unpatch_spikingjelly()
        marker = "unexpected keyword argument 'backend'" if version == "20" else "CuPy is not installed"
        assert marker in (r["unpatched_error"] or ""), r["unpatched_error"]
        assert marker in (r["unpatched_error_after"] or ""), r["unpatched_error_after"]


@pytest.mark.parametrize("cupy", ["hidden", "present"])
@pytest.mark.parametrize("version", ["012", "014"])
def test_legacy_spikingjelly(version, cupy):
    d = _legacy_dir(version)
    _check(_run_worker(version, cupy, d), version, cupy)


@pytest.mark.parametrize("cupy", ["hidden", "present"])
def test_spikingjelly_20(cupy):
    if not _have_sj20():
        pytest.skip("SpikingJelly 2.0 is not installed")
    _check(_run_worker("20", cupy), "20", cupy)


def test_patch_without_spikingjelly_names_it(tmp_path):
    # A process where `spikingjelly` cannot be imported: the error says what is missing.
    code = (
        "import sys; sys.modules['spikingjelly'] = None\n"
        "import snn_cuda\n"
        "try:\n    snn_cuda.compat.patch_spikingjelly()\n"
        "except ImportError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert "ERR snn_cuda.compat.patch_spikingjelly: SpikingJelly is not installed" in out.stdout, out.stderr[-2000:]


def test_example_trains_a_012_model_without_cupy(tmp_path):
    d = _legacy_dir("012")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "legacy_spikingjelly.py"), "--quick", "--hide-cupy", "--sj-path", d],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "max |loss difference| 0" in proc.stdout, proc.stdout
    assert "FAIL" not in proc.stdout and "SKIP" not in proc.stdout, proc.stdout
