"""benchmarks/gpu_run.py, the prepared GPU run: its plan on CUDA (the steps issue 20 asks for,
within the 10-minute budget) and the whole pipeline run here with tiny sizes on the CPU (logs,
results and the summary under one folder, machine paths scrubbed, a failing step failing the run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import snn_cuda

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_run  # noqa: E402

needs_cpu_kernels = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="the fused CPU kernels are not built")


def test_cuda_plan_has_the_steps_and_fits_the_budget(tmp_path):
    steps = gpu_run.plan("cuda", tmp_path / "out")
    names = [s.name for s in steps]
    assert names == ["build", "check", "neuron_op", "mnist", "sanitizer"]
    by = {s.name: s for s in steps}
    cmd = {n: " ".join(s.cmd) for n, s in by.items()}
    assert "setup.py build_ext --inplace" in cmd["build"]
    assert by["build"].env["TORCH_CUDA_ARCH_LIST"] == ""  # unset: the default arch list
    assert by["build"].env["SNN_CUDA_FORCE_CUDA"] == "1"
    assert "-m snn_cuda.check --quick" in cmd["check"] and "--device cuda" in cmd["check"]
    assert "benchmarks/neuron_op.py --device cuda --json" in cmd["neuron_op"]
    assert "benchmarks/mnist_train.py --device cuda" in cmd["mnist"] and "--limit-batches 40" in cmd["mnist"]
    assert by["sanitizer"].optional and not any(s.optional for s in steps[:-1])
    # every output goes under the one folder
    for s in steps[1:]:
        outs = [a for a in s.cmd if str(tmp_path) in a]
        assert outs and all(a.startswith(str(tmp_path / "out")) for a in outs), s.cmd
    # the required steps' estimates fit the 10 minutes, with room for the optional one's limit
    required = sum(s.estimate for s in steps if not s.optional)
    assert required <= 540, required
    assert gpu_run.main(["--device", "cpu", "--plan", "--out", str(tmp_path / "p")]) == 0
    assert not (tmp_path / "p").exists()


def test_gpu_slug():
    assert gpu_run.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_run.gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    assert gpu_run.gpu_slug("***") == "unknown-gpu"


def _run(tmp_path, *extra, timeout=600):
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_run.py",
            "--device",
            "cpu",
            "--skip-build",
            "--tiny",
            "--out",
            str(out),
            *extra,
        ],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, out


@needs_cpu_kernels
def test_tiny_cpu_pipeline_writes_everything_under_one_folder(tmp_path):
    proc, out = _run(tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    assert [r["step"] for r in summary["steps"]] == ["check", "neuron_op", "mnist"]
    assert all(r["status"] == "PASS" for r in summary["steps"]), summary["steps"]
    for f in ("summary.md", "check.log", "neuron_op.log", "mnist.log", "check/report.json", "neuron_op_lif_fp32.json"):
        assert (out / f).is_file(), f
    assert (out / "mnist_train").is_dir() and any((out / "mnist_train").iterdir())
    # no machine path in what was written by the runner
    for f in ("summary.json", "summary.md", "check.log", "neuron_op.log", "mnist.log"):
        text = (out / f).read_text()
        assert str(ROOT) not in text and str(tmp_path) not in text, f


@needs_cpu_kernels
def test_a_failing_step_fails_the_run(tmp_path):
    proc, out = _run(tmp_path, "--selftest-fail", "neuron_op")
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    status = {r["step"]: r["status"] for r in summary["steps"]}
    assert status["neuron_op"] == "FAIL" and status["check"] == "PASS" and status["mnist"] == "PASS"
    md = (out / "summary.md").read_text()
    assert "**Result: FAIL**" in md and "injected failure" in md


def test_no_gpu_is_exit_status_2(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_run.py", "--out", str(tmp_path / "x")],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "no CUDA GPU is visible" in proc.stdout
    assert not (tmp_path / "x").exists()
