#!/usr/bin/env python3
"""The prepared GPU run: one command that builds snn_cuda, checks it and benchmarks it on a CUDA
GPU, writing everything under one folder.

    python benchmarks/gpu_run.py                  # on the GPU machine, from the source checkout

Steps, in order (each with its own time limit; an optional step is skipped when the remaining
budget cannot hold its limit):

  build       CUDA_HOME=... MAX_JOBS=<cores> python setup.py build_ext --inplace, with the default
              arch list (TORCH_CUDA_ARCH_LIST unset: the list a wheel ships, not just this GPU)
  check       python -m snn_cuda.check --quick --no-sanitizer: fused vs reference on CUDA and the
              CPU, the kernel-image probe and occupancy, one training step per net under
              torch.cuda.set_sync_debug_mode("error"), the Poisson encoder in a CUDA graph, the
              CuPy path when CuPy is installed, the quick op benchmark
  neuron_op   python benchmarks/neuron_op.py --device cuda --json ...: the LIF op, fused vs the
              reference, the loops and the peers installed
  mnist       python benchmarks/mnist_train.py --device cuda --limit-batches 40 ...: the three
              training nets, fused vs reference (synthetic data unless MNIST is on disk: the GPU
              machine is offline)
  sanitizer   (optional, last) python -m snn_cuda.check --quick --no-bench --no-cupy: adds the
              compute-sanitizer subset when the tool is on PATH

Output: benchmarks/results/<gpu>/ (``--out`` overrides): each step's log and results, and
summary.md / summary.json (per step: command, exit status, seconds, log tail), every file
written through snn_cuda._paths.scrub_paths (no machine paths). Exit status: 0 when every
step that ran passed, 1 otherwise, 2 when no GPU is visible (unless --device cpu).

Time on an H100 machine (16 cores), estimated (no GPU run yet): the build of the default arch
list took 24 minutes with one job on this project's shared 2-core machine at a load of 3-5, i.e.
some 12 CPU-minutes; with 16 jobs its critical path is the slowest unit, neuron_f64.cu (about 3
minutes there under load: docs/verification.md, "Arch coverage"), so ~2-3 minutes. check --quick
took 26 s on the CPU here and adds the CUDA matrix, the CuPy path and the readiness checks on the
GPU: ~2 minutes; neuron_op at a 1.5 s budget per row ~1 minute; mnist (3 nets x 2
implementations x 40 batches, one process each) ~2 minutes. About 8 minutes, under the 10-minute
budget that --budget enforces (default 570 s).

--device cpu --skip-build --tiny runs the same pipeline with tiny sizes on the CPU (what
python_tests/test_gpu_run.py does, so the plumbing is tested without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Step:
    name: str
    cmd: List[str]
    timeout: int  # seconds
    optional: bool = False
    env: dict = field(default_factory=dict)
    estimate: int = 0  # expected seconds on an H100 machine (the budget plan)


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (the results folder)."""
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return s or "unknown-gpu"


def plan(
    device: str, out: Path, tiny: bool = False, skip_build: bool = False, jobs: Optional[int] = None
) -> List[Step]:
    py = sys.executable
    steps: List[Step] = []
    if not skip_build:
        env = {"MAX_JOBS": str(jobs or os.cpu_count() or 2), "SNN_CUDA_FORCE_CUDA": "1" if device == "cuda" else "0"}
        env["CUDA_HOME"] = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
        # The default arch list is what is shipped and what is checked here.
        env["TORCH_CUDA_ARCH_LIST"] = ""
        steps.append(Step("build", [py, "setup.py", "build_ext", "--inplace"], 360, env=env, estimate=180))
    check = [py, "-m", "snn_cuda.check", "--quick", "--no-sanitizer", "--device", device, "--out", str(out / "check")]
    if tiny:
        check += ["--no-bench", "--no-emulation", "--no-cupy"]
    steps.append(Step("check", check, 300, estimate=120))
    op = [py, "benchmarks/neuron_op.py", "--device", device, "--json", str(out / "neuron_op_lif_fp32.json")]
    op += ["--shape", "8", "4", "256", "--budget", "0.05", "--rounds", "1"] if tiny else ["--budget", "1.5"]
    steps.append(Step("neuron_op", op, 180, estimate=60))
    mn = [py, "benchmarks/mnist_train.py", "--device", device, "--epochs", "1"]
    mn += ["--out", str(out / "mnist_train"), "--no-progress", "--no-plots"]
    if tiny:
        mn += ["--net", "lif_fc", "--impl", "fused", "--limit-batches", "2", "--limit-test-batches", "1"]
        mn += ["-T", "4", "--batch-size", "8", "--dataset", "synthetic", "--no-profile", "--warmup", "0"]
    else:
        mn += ["--net", "all", "--impl", "both", "--limit-batches", "40", "--limit-test-batches", "5"]
        mn += ["--dataset", "auto"]
    steps.append(Step("mnist", mn, 240, env={"SNN_CUDA_NO_DOWNLOAD": "1"}, estimate=120))
    if device == "cuda" and not tiny:
        san = [py, "-m", "snn_cuda.check", "--quick", "--no-bench", "--no-cupy", "--device", device]
        san += ["--out", str(out / "check_sanitizer")]
        steps.append(Step("sanitizer", san, 240, optional=True, estimate=120))
    return steps


def _scrub(obj):
    sys.path.insert(0, str(REPO))
    from snn_cuda._paths import scrub_paths

    return scrub_paths(obj, root=str(REPO))


def run_steps(steps: List[Step], out: Path, budget: float, log=print, fail_step: Optional[str] = None) -> List[dict]:
    t0 = time.monotonic()
    results = []
    for st in steps:
        left = budget - (time.monotonic() - t0)
        rec = {"step": st.name, "command": " ".join(st.cmd), "optional": st.optional}
        if st.optional and left < st.timeout:
            rec.update(status="skipped", detail=f"{left:.0f} s of the budget left, the step may take {st.timeout} s")
            log(f"[{st.name}] skipped: {rec['detail']}")
            results.append(rec)
            continue
        if left <= 10:
            rec.update(status="FAIL", detail=f"no budget left ({left:.0f} s)")
            results.append(rec)
            log(f"[{st.name}] FAIL: {rec['detail']}")
            continue
        cmd = st.cmd
        if fail_step == st.name:  # self-test of the failure path
            cmd = [sys.executable, "-c", "import sys; print('injected failure'); sys.exit(3)"]
        env = dict(os.environ)
        for k, v in st.env.items():
            if v == "":
                env.pop(k, None)
            else:
                env[k] = v
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        log(f"[{st.name}] {' '.join(cmd)}")
        t = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                cwd=str(REPO),
                env=env,
                capture_output=True,
                text=True,
                timeout=min(st.timeout, max(left, 1)),
            )
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc = 124
            text = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            text += f"\n[timed out after {min(st.timeout, left):.0f} s]"
        secs = time.monotonic() - t
        (out / f"{st.name}.log").write_text(_scrub(text))
        rec.update(status="PASS" if rc == 0 else "FAIL", rc=rc, seconds=round(secs, 1), tail=_scrub(text[-3000:]))
        log(f"[{st.name}] {rec['status']} (rc {rc}, {secs:.0f} s)")
        results.append(rec)
    return results


def render(summary: dict) -> str:
    L = [
        f"# GPU run: {summary['gpu']}",
        "",
        f"**Result: {'PASS' if summary['passed'] else 'FAIL'}** ({summary['seconds']:.0f} s, budget "
        f"{summary['budget_s']:.0f} s)",
        "",
        "| step | status | seconds | command |",
        "|---|---|---|---|",
    ]
    for r in summary["steps"]:
        L.append(f"| {r['step']} | {r['status']} | {r.get('seconds', '-')} | `{r['command']}` |")
    for r in summary["steps"]:
        if r["status"] == "FAIL":
            L += ["", f"## {r['step']}: log tail", "", "```", r.get("tail") or r.get("detail", ""), "```"]
    env = summary.get("environment", {})
    if env:
        L += ["", "## Environment", ""] + [f"- {k}: {v}" for k, v in env.items()]
    return "\n".join(L) + "\n"


def _environment(device: str) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        if device == "cuda":
            p = torch.cuda.get_device_properties(0)
            env.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", sm_count=p.multi_processor_count)
    except Exception as e:
        env["torch"] = f"unavailable ({type(e).__name__}: {e})"
    smi = shutil.which("nvidia-smi")
    if smi and device == "cuda":
        try:
            env["nvidia_smi"] = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
        except Exception:
            pass
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results/<gpu>)")
    ap.add_argument("--budget", type=float, default=570.0, help="seconds for all steps (default 570)")
    ap.add_argument("--skip-build", action="store_true", help="use the extension already built")
    ap.add_argument("--jobs", type=int, default=None, help="MAX_JOBS for the build (default: all cores)")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (tests the pipeline on the CPU)")
    ap.add_argument("--plan", action="store_true", help="print the steps and their time budget, run nothing")
    ap.add_argument("--selftest-fail", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    log = lambda *m: print(*m, flush=True)  # noqa: E731

    gpu = "cpu"
    if a.device == "cuda":
        try:
            import torch

            if not torch.cuda.is_available():
                log("gpu_run: no CUDA GPU is visible (torch.cuda.is_available() is False); use --device cpu to test")
                return 2
            gpu = torch.cuda.get_device_name(0)
        except Exception as e:
            log(f"gpu_run: torch is not usable ({type(e).__name__}: {e})")
            return 2
    out = Path(a.out) if a.out else REPO / "benchmarks" / "results" / gpu_slug(gpu)
    steps = plan(a.device, out, tiny=a.tiny, skip_build=a.skip_build, jobs=a.jobs)
    if a.plan:
        for s in steps:
            log(f"{s.name:10s} limit {s.timeout:4d} s  estimate {s.estimate:4d} s  {' '.join(s.cmd)}")
        log(f"estimate {sum(s.estimate for s in steps)} s; budget {a.budget:.0f} s")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results = run_steps(steps, out, a.budget, log=log, fail_step=a.selftest_fail)
    passed = all(r["status"] != "FAIL" for r in results)
    summary = {
        "gpu": gpu,
        "device": a.device,
        "passed": passed,
        "seconds": round(time.monotonic() - t0, 1),
        "budget_s": a.budget,
        "steps": results,
        "environment": _environment(a.device),
        "command": "python benchmarks/gpu_run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    summary = _scrub(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(render(summary))
    log(f"{'PASS' if passed else 'FAIL'}: {out / 'summary.md'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
