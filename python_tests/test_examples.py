"""Smoke test of examples/neuron_dynamics.py: it runs with small settings and writes its plots."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "neuron_dynamics.py")


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_neuron_dynamics_writes_plots(tmp_path, backend):
    out = tmp_path / "plots"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(out), "--T", "30", "--backend", backend],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("constant_input.png", "noisy_input.png"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 5000, name
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert "multi-step vs single-step: max difference 0 " in proc.stdout, proc.stdout
