"""`python -m snn_cuda.check`, the one command GPU users run: here without a GPU (CUDA hidden), in
its --quick form, plus proof that a mismatch is reported as a failure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import snn_cuda
from snn_cuda import check
from snn_cuda.model_ops import MODELS

ROOT = Path(__file__).resolve().parent.parent

needs_cpu_kernels = pytest.mark.skipif(not snn_cuda.build_info()["cpu"], reason="the fused CPU kernels are not built")


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("check_report")
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""  # behave as on a machine without a GPU, even on one
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "snn_cuda.check", "--quick", "--bench-budget", "0.2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # quick matrices, the host emulation's build and the benchmark; slow on 2 busy cores
        env=env,
        cwd=str(ROOT),
    )
    return proc, out


@needs_cpu_kernels
def test_quick_cpu_run_passes_and_writes_report(quick_report):
    proc, out = quick_report
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    rep = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()

    assert rep["passed"] is True
    assert rep["gpu_found"] is False
    assert "No GPU was found" in rep["gpu_note"] and "No GPU was found" in md
    assert "No GPU was found" in proc.stdout

    env = rep["environment"]
    for key in ("torch", "snn_cuda", "build_info", "python", "platform", "gpu_found", "time_utc"):
        assert key in env, key
    assert env["torch"] == torch.__version__
    assert env["snn_cuda"] == snn_cuda.__version__
    assert env["build_info"]["cpu"] is True

    cpu = [c for c in rep["checks"] if c["name"] == "fused vs reference (cpu)"]
    assert len(cpu) == 1
    cpu = cpu[0]
    assert cpu["passed"] and cpu["failed"] == 0 and cpu["cases"] >= 30, cpu.get("max_err")
    assert all(r["passed"] for r in cpu["records"])
    # spikes and membranes are bit-equal to the reference; gradients within tolerance
    assert cpu["max_err"]["spikes"] == 0 and cpu["max_err"]["mem_seq"] == 0
    assert cpu["max_err"]["grad_x"] < 1e-3
    kinds = {r["name"].split()[0] for r in cpu["records"]}
    assert {"lif-hard-decay", "if-soft-floor", "leaky-zero", "synaptic", "poisson_encode"} <= kinds

    # the declared models: every model of the generated list, against its reference loop
    models = [c for c in rep["checks"] if c["name"] == "declared models fused vs reference (cpu)"]
    assert len(models) == 1 and models[0]["passed"] and models[0]["failed"] == 0, models
    checked = {r["name"].split("-")[0] for r in models[0]["records"]}
    assert checked == set(MODELS), checked
    assert models[0]["max_err"]["spikes"] == 0 and models[0]["max_err"]["mem_seq"] == 0
    assert "declared models fused vs reference (cpu)" in md

    # the CUDA kernels: host emulation in a source checkout, else an explicit "not exercised"
    emu = [c for c in rep["checks"] if c["name"].startswith("CUDA kernels, host emulation")]
    if rep["cuda_kernels_exercised"]:
        assert emu and emu[0]["passed"] and "0 failed" in emu[0]["summary"], emu
        assert "host emulation" in rep["gpu_note"]
    else:
        assert "NOT exercised" in rep["gpu_note"] and "NOT exercised" in md

    bench = rep["benchmark"]
    assert bench["device"] == "cpu" and bench["copy"]["GB_s"] > 0
    fused = [r for r in bench["rows"] if r["impl"].startswith("snn_cuda fused") and "error" not in r]
    assert fused and all(r["neuron_steps_per_s"] > 0 and r["GB_s_at_save_h_bytes"] > 0 for r in fused)
    assert "Benchmark" in md and "| snn_cuda fused" in md


def test_compare_reports_mismatch_as_failure():
    a = torch.tensor([0.0, 1.0, 1.0, 0.0])
    b = torch.tensor([0.0, 1.0, 0.0, 0.0])
    r = check.compare_tensors("spikes", a, b, exact=True)
    assert r["passed"] is False and r["max_abs_err"] == 1.0 and "1/4" in r["detail"]
    assert check.compare_tensors("spikes", a, a.clone(), exact=True)["passed"] is True

    g = torch.tensor([1.0, 2.0, 3.0])
    assert check.compare_tensors("grad_x", g + 1e-7, g, exact=False, rtol=2e-5, atol=2e-5)["passed"]
    r = check.compare_tensors("grad_x", g + 1e-2, g, exact=False, rtol=2e-5, atol=2e-5)
    assert r["passed"] is False and abs(r["max_abs_err"] - 1e-2) < 1e-6
    # NaN where the reference has none, a shape mismatch, a missing output: failures
    assert not check.compare_tensors("x", torch.tensor([float("nan")]), torch.tensor([0.0]))["passed"]
    assert check.compare_tensors("x", torch.tensor([float("nan")]), torch.tensor([float("nan")]))["passed"]
    assert not check.compare_tensors("x", torch.zeros(3), torch.zeros(4))["passed"]
    assert not check.compare_tensors("x", None, torch.zeros(1))["passed"]


@needs_cpu_kernels
def test_injected_fault_fails_the_run(tmp_path, capsys):
    """A corrupted fused gradient makes its case, the check and the exit status fail, and the
    report names the case."""
    case = check.build_matrix(quick=True, device="cpu")[0]
    assert check.run_case(case, "cpu")["passed"]
    bad = check.run_case(case, "cpu", inject_fault=True)
    assert not bad["passed"]
    assert [c["name"] for c in bad["comparisons"] if not c["passed"]] == ["grad_x"]

    rc = check.main(
        ["--device", "cpu", "--quick", "--no-bench", "--no-emulation", "--selftest-fail", "--out", str(tmp_path)]
    )
    assert rc == 1
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["passed"] is False
    cpu = next(c for c in rep["checks"] if c["name"] == "fused vs reference (cpu)")
    assert not cpu["passed"] and cpu["failed"] == 1
    md = (tmp_path / "report.md").read_text()
    assert "**Result: FAIL**" in md and "### Failures" in md and case.name in md
    assert "FAIL" in capsys.readouterr().out


def test_sanitizer_summary_parsing():
    clean = "SUBSET: 20/20 cases passed\n========= ERROR SUMMARY: 0 errors\n"
    assert check.parse_sanitizer_output(clean)["errors"] == 0
    bad = "========= Invalid __global__ read of size 4 bytes\n========= ERROR SUMMARY: 3 errors\n"
    assert check.parse_sanitizer_output(bad)["errors"] == 3
    race = "========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)\n"
    r = check.parse_sanitizer_output(race)
    assert r["errors"] == 1 and r["race_warnings"] == 1
    assert check.parse_sanitizer_output("Segmentation fault\n")["errors"] is None


@needs_cpu_kernels
def test_gpu_matrices_are_well_formed():
    """The CUDA-only matrices (not runnable here) build, and the sanitizer subset's cases run and
    pass on the CPU kernels, so a GPU run does not trip over the harness itself."""
    full = check.build_matrix(quick=False, device="cuda", sm_count=132)
    names = [c.name for c in full]
    assert len(names) == len(set(names)) and len(full) > len(
        check.build_matrix(quick=True, device="cuda", sm_count=132)
    )
    assert any(c.shape[-1] > 132 * 2048 for c in full), "no case wraps the grid-stride loop"
    assert {c.dtype for c in full} == set(check.DTYPES)
    assert {type(c.surrogate).__name__ for c in full if c.surrogate is not None} == {
        type(s).__name__ for s in check.SURROGATES
    }
    for case in check.sanitizer_matrix():
        rec = check.run_case(case, "cpu")
        assert rec["passed"], (case.name, check._failure_text(rec))


# ------------------------------------------------------------------------------------------
# GPU readiness checks (issue 20), their logic run here with injected results
# ------------------------------------------------------------------------------------------
def test_quick_report_has_the_readiness_checks(quick_report):
    proc, out = quick_report
    rep = json.loads((out / "report.json").read_text())
    sync = [c for c in rep["checks"] if c["name"].startswith("training step without host sync (cpu")]
    assert len(sync) == 1 and sync[0]["advisory"] is True, sync
    assert set(sync[0]["nets"]) == {"lif_fc", "tutorial5"}
    # Linear -> NeuronLinear(Leaky, SpikeLinear) -> Leaky reads no tensor data on the host
    assert sync[0]["nets"]["tutorial5"] == "ok", sync[0]
    # without a GPU there is no image to probe and no graph to capture
    assert not any(
        c["name"].startswith(("compiled kernels: image", "Poisson encoder in a CUDA graph")) for c in rep["checks"]
    )


class _Net(torch.nn.Module):
    def __init__(self, read_host: bool):
        super().__init__()
        self.fc = torch.nn.Linear(8, 3)
        self.lif = snn_cuda.LIF(backend="torch")
        self.read_host = read_host

    def forward(self, x):
        snn_cuda.functional.reset_net(self)
        h = self.fc(x)
        if self.read_host and h.abs().max().item() > 1e9:  # a data-dependent branch
            h = h * 0
        return self.lif(h.expand(4, *h.shape)).mean(0)


def _nets(read_host: bool):
    g = torch.Generator().manual_seed(0)

    def batch():
        return torch.rand(5, 8, generator=g), torch.randint(0, 3, (5,), generator=g)

    def loss(out, y):
        return torch.nn.functional.cross_entropy(out, y)

    return {"net": (_Net(read_host), loss, batch)}


def test_sync_check_catches_a_host_read_and_names_it():
    bad = check.sync_free_step_check("cpu", nets=_nets(True), advisory=False)
    assert bad["passed"] is False and "advisory" not in bad
    assert "host read of tensor data: aten._local_scalar_dense" in bad["nets"]["net"], bad
    good = check.sync_free_step_check("cpu", nets=_nets(False), advisory=False)
    assert good["passed"] is True and good["nets"] == {"net": "ok"}, good
    # the first step runs outside the watched region: first-call work is not reported
    assert check.sync_free_step_check("cpu", nets=_nets(True))["advisory"] is True


def test_host_read_detector_names_the_snn_cuda_frame():
    """The detector points at the line in snn_cuda that read the data: here a layer's repr, which
    prints a learnable parameter's value (legitimately: a host tensor, outside any step). The
    Poisson encoder reads nothing back any more (its key stays a tensor), nor does a plain op."""
    lk = snn_cuda.Leaky(beta=0.9, learn_beta=True)
    with pytest.raises(RuntimeError, match=r"aten\._local_scalar_dense at neuron\.py:\d+ \(\w+\)"):
        with check._NoHostSync("cpu"):
            repr(lk)
    x = torch.rand(3, 4)
    with check._NoHostSync("cpu"):
        snn_cuda.poisson_encode(x, 4, backend="fused")
        (x * 2).sum()


def _replays(a_seed, b_seed, rate=0.3, shape=(8, 400), T=6):
    x = torch.full(shape, rate)

    def cap():
        ga = torch.Generator().manual_seed(a_seed)
        gb = torch.Generator().manual_seed(b_seed)
        return (
            x,
            (torch.rand((T, *shape), generator=ga) < x).float(),
            (torch.rand((T, *shape), generator=gb) < x).float(),
        )

    return cap


def test_graph_check_reports_identical_replays_as_not_graph_safe():
    r = check.graph_encoder_check(_replays(1, 1), device="cpu")
    assert r["passed"] is False and "not graph-safe" in r["error"] and "identical" in r["error"]
    r = check.graph_encoder_check(_replays(1, 2), device="cpu")
    assert r["passed"] is True and 0.3 < r["differing_fraction"] < 0.5, r
    assert all(abs(v - 0.3) < 0.02 for v in r["rates"])


def test_graph_check_reports_capture_failures_and_wrong_rates():
    def boom():
        raise RuntimeError("operation not permitted when stream is capturing")

    r = check.graph_encoder_check(boom, device="cpu")
    assert r["passed"] is False and "capturing it failed" in r["error"] and "not permitted" in r["error"]

    x = torch.full((8, 400), 0.3)

    def wrong_rate():
        return x, torch.ones(6, 8, 400), torch.zeros(6, 8, 400)

    r = check.graph_encoder_check(wrong_rate, device="cpu")
    assert r["passed"] is False and "rates" in r["error"]

    def wrong_shape():
        return x, torch.zeros(6, 8), torch.ones(6, 8)

    assert check.graph_encoder_check(wrong_shape, device="cpu")["passed"] is False


def test_readiness_nets_train_on_the_cpu():
    """The two nets the GPU check steps are well formed: every parameter gets a finite, nonzero
    gradient, and tutorial5 (deterministic input) lowers its loss."""
    for name, (model, loss_fn, batch) in check.readiness_nets("cpu").items():
        x, y = batch()
        opt = torch.optim.SGD(model.parameters(), lr=0.02)
        first = check._train_step(model, loss_fn, x, y, opt)
        for p in model.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
        losses = [float(check._train_step(model, loss_fn, x, y, opt)) for _ in range(20)]
        assert all(torch.isfinite(torch.tensor(losses))), name
        if name == "tutorial5":
            assert min(losses) < 0.8 * float(first), (float(first), losses)


# ------------------------------------------------------------------------------------------
# the declared models' matrix
# ------------------------------------------------------------------------------------------
def test_model_matrix_covers_every_model_variant_dtype_and_surrogate():
    full = check.build_model_matrix(quick=False, device="cuda", sm_count=132)
    names = [c.name for c in full]
    assert len(names) == len(set(names))
    assert {c.kind for c in full} == set(MODELS)
    assert {c.dtype for c in full} == set(check.DTYPES)
    assert {type(c.surrogate).__name__ for c in full if c.surrogate is not None} == {
        type(s).__name__ for s in check.SURROGATES
    }
    assert any(c.shape[-1] > 132 * 2048 for c in full), "no case wraps the grid-stride loop"
    assert any(c.const_T for c in full) and any(c.v0 for c in full)
    # every variant of every model is configured
    variants = {
        (m, kw.get("reset_mechanism") or ("soft" if kw.get("v_reset", 0) is None else None))
        for _, m, kw in check.model_configs()
    }
    assert {("synaptic", r) for r in MODELS["synaptic"].variants} <= variants
    assert ("cuba_lif", "soft") in variants and ("cuba_lif", None) in variants


@needs_cpu_kernels
def test_model_cases_compare_everything_and_catch_a_wrong_output(monkeypatch):
    case = check.Case(
        "synaptic-zero-learn",
        "synaptic",
        dict(check.MODEL_CONFIGS["synaptic"][1][1]),
        torch.float32,
        check.SURROGATES[1],
        (13, 3, 67),
        v0=True,
    )
    rec = check.run_model_case(case, "cpu")
    assert rec["passed"], check._failure_text(rec)
    keys = {c["name"] for c in rec["comparisons"]}
    assert {"spikes", "mem_seq", "mem_last", "grad_x", "grad_v0", "grad_alpha", "grad_beta", "grad_threshold"} <= keys

    real = check._run_model_layer
    for key, delta in (("spikes", 1.0), ("grad_x", 1e-2), ("grad_beta", 1e-2), ("mem_last[syn]", 1e-6)):

        def broken(case, backend, x, device, key=key, delta=delta):
            out = real(case, backend, x, device)
            if backend == "fused":
                out[key] = out[key] + delta * (1 + out[key].abs().max())  # scalar-parameter sums are large
            return out

        monkeypatch.setattr(check, "_run_model_layer", broken)
        rec = check.run_model_case(case, "cpu")
        assert not rec["passed"] and key in check._failure_text(rec), key
    monkeypatch.setattr(check, "_run_model_layer", real)


@needs_cpu_kernels
def test_model_sanitizer_cases_and_benchmark_rows_run_on_the_cpu():
    for name, model, kw in check.model_configs():
        rec = check.run_model_case(check.Case(name, model, kw, torch.float32, None, (9, 2, 37), v0=True), "cpu")
        assert rec["passed"], (name, check._failure_text(rec))
    rows = check.run_model_benchmarks("cpu", quick=True, budget=0.05, log=lambda *a: None)
    assert {r["impl"].split("-")[0] for r in rows} == set(MODELS)
    assert all("error" not in r and r["neuron_steps_per_s"] > 0 for r in rows), rows
