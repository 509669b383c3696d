"""The static GPU report's declared-model rows (benchmarks/gpu_static_report.py, issue 21).

* The committed report (benchmarks/results/gpu_static_report.json) lists a forward and a backward
  kernel for every model x variant of the model list and every storage dtype, each mode's bytes per
  neuron-step equal to the formula from the model's declaration (written out again here), every
  mode consistent with the kernel's SASS time loop, the register and spill figures the docs quote.
* On the built extension (no GPU: cuobjdump reads its sm_90 cubins), the same rows come out of the
  SASS, and the check rejects a mode the kernel cannot carry.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from snn_cuda._model_list import MODELS

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "benchmarks" / "results" / "gpu_static_report.json"
DTYPES = {"fp32": (4, 4), "fp16": (2, 4), "bf16": (2, 4), "fp64": (8, 8)}  # storage, state bytes
K = 8  # snn::kChunk: checkpoint interval


def _report_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_static_report
    finally:
        sys.path.pop(0)
    return gpu_static_report


def _expected_bytes(kind, n_states, t, s):
    """Bytes per neuron-step each mode must move (docs/models.md: x, spikes, grad_spikes, grad_x in
    the storage type; states, checkpoints and grad_state_seq in the state type)."""
    if kind == "fwd":
        return {
            "inference": 2 * t,
            "train": 2 * t + n_states * s / K,
            "states": 2 * t + n_states * s,
            "states + train": 2 * t + n_states * s + n_states * s / K,
        }
    return {"spike loss": 3 * t + n_states * s / K, "+ grad_state_seq": 3 * t + n_states * s / K + n_states * s}


def _check_rows(rows):
    by = {(r["model"], r["variant"], r["dtype"], r["kind"]): r for r in rows}
    for name, d in MODELS.items():
        for variant in d.variants:
            for dtype, (t, s) in DTYPES.items():
                for kind in ("fwd", "bwd"):
                    r = by.get((name, variant, dtype, kind))
                    assert r is not None, f"no {kind} row for {name}/{variant} {dtype}"
                    exp = _expected_bytes(kind, len(d.states), t, s)
                    assert set(r["modes"]) == set(exp), (name, kind, r["modes"].keys())
                    for mode, b in exp.items():
                        m = r["modes"][mode]
                        assert m["bytes"] == pytest.approx(b), (name, variant, dtype, kind, mode)
                        assert m["sass_consistent"], f"{name}/{variant} {dtype} {kind} {mode}: no SASS loop carries it"
                        # What a loop iteration issues is at least what the mode must move.
                        assert m["issued"][0] >= b - 1e-9, (name, dtype, kind, mode, m["issued"])
    assert len(rows) == 2 * len(DTYPES) * sum(len(d.variants) for d in MODELS.values())
    return by


def _check_budget(rows):
    """The figures docs/models.md quotes: fp32/16-bit at most 64 registers; no forward spills;
    the only stack is the AdLIF backward's (3 states x 8 steps: the half-chunk span), and it is
    loaded and stored per replay span, not in every step."""
    for r in rows:
        where = f"{r['model']}/{r['variant']} {r['dtype']} {r['kind']}"
        if r["dtype"] != "fp64":
            assert r["regs"] <= 64 and r["occupancy"] >= 50, where
        if r["kind"] == "fwd" or r["dtype"] == "fp64" or r["model"] != "adlif":
            assert r["stack"] == 0 and r["spill_ins"] == 0 and r["local"] == 0, where
        elif r["spill_in_loop"]:
            hit, segments = r["spill_segments"]
            assert hit < segments, f"{where}: a spill in every step of the time loop"
        if r["kind"] == "bwd":
            # BwdSpan: the whole chunk for one state, half of it for two or three.
            assert r["span"] == (K if len(MODELS[r["model"]].states) == 1 else K // 2), where


def test_committed_report_covers_every_declared_model():
    rep = json.loads(REPORT.read_text())
    assert rep["arch"] == "sm_90" and rep["kChunk"] == K
    rows = rep["models"]
    _check_rows(rows)
    _check_budget(rows)
    md = REPORT.with_suffix(".md").read_text()
    mod = _report_module()
    for name, d in MODELS.items():
        assert f"### {mod.MODEL_TITLES.get(name, name)} (`{d.struct}`)" in md, name
    # The one-state sections are still there.
    for section in ("## Representative kernels", "## Bytes per neuron-step, forward + backward", "## All kernels"):
        assert section in md


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report module and its analysis of the built extension's sm_90 model kernels."""
    tmp_path = tmp_path_factory.mktemp("cubins")
    mod = _report_module()
    so = mod.default_so()
    cuobjdump = mod.find_tool("cuobjdump")
    if not so or not cuobjdump:
        pytest.skip("no built extension or no cuobjdump")
    try:
        ours = mod.model_kernels_only(so, "sm_90", tmp_path, cuobjdump)
    except subprocess.CalledProcessError as e:  # a CPU-only build: no device code at all
        pytest.skip(f"cuobjdump found no device code: {(e.stderr or '').strip()[:120]}")
    if not any(v["kind"] in ("model-fwd", "model-bwd") for v in ours.values()):
        pytest.skip("a build without sm_90 model kernels")
    return mod, ours


def test_built_model_kernels_match_their_declarations(built):
    mod, ours = built
    rows = mod.model_rows(ours, K, 256)
    by = _check_rows(rows)
    _check_budget(rows)
    # docs/models.md: fp32 Synaptic, spike-only loss: 4 + 4 B in, 4 out, 1 B of checkpoints.
    assert by[("synaptic", "subtract", "fp32", "bwd")]["modes"]["spike loss"]["bytes"] == 13
    # With 16-bit storage the compiled replay span is visible in the SASS: it is BwdSpan's.
    for r in rows:
        if r["kind"] == "bwd" and r["dtype"] in ("fp16", "bf16"):
            assert r["span_sass"] == r["span"], (r["model"], r["dtype"], r["span_sass"])


def test_sass_check_rejects_a_mode_the_kernel_cannot_carry(built):
    mod, ours = built
    for v in ours.values():
        if v["kind"] != "model-fwd" or v["storage"] != "__half":
            continue
        modes = mod.model_modes("model-fwd", 2, 2, 4, K, K)
        assert mod.match_model_mode(v, modes["inference"], K), v["name"]
        # A 64-bit store every step: no loop of a 16-bit forward has one.
        bogus = dict(modes["inference"])
        bogus["issued"] = {**bogus["issued"], ("store", 64): (K, K)}
        assert mod.match_model_mode(v, bogus, K) is None, v["name"]
        # Two x loads per step: more than any loop holds.
        more = dict(modes["inference"])
        more["issued"] = {**more["issued"], ("load", 16): (2 * K, 2 * K)}
        assert mod.match_model_mode(v, more, K) is None, v["name"]
