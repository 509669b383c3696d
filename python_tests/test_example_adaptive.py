"""Smoke test of examples/adaptive_snn.py: --quick on synthetic data trains both networks, reports
their accuracies and the fused/reference throughput, and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "adaptive_snn.py")


def test_adaptive_example_quick(tmp_path):
    out = tmp_path / "r.json"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--dataset", "synthetic", "--hidden", "32", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert set(r["acc"]) == {"adlif", "lif"} and all(len(v) == 2 for v in r["acc"].values())
    assert all(0.0 <= a <= 100.0 for v in r["acc"].values() for a in v)
    assert r["adlif_throughput"]["fused"] > 0 and r["adlif_throughput"]["reference"] > 0
    assert "AdLIF training throughput" in proc.stdout
