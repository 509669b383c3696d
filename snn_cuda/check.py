"""One command for the people who have a GPU: ``python -m snn_cuda.check``.

It checks the installed package on this machine and writes a report to send back:

* every fused op (LIF / IF / Leaky forward + backward, SynapticCurrent, the Poisson encoder)
  against the pure-PyTorch reference (``backend="torch"``) over a compact matrix of models,
  resets, surrogates, dtypes, initial states, shapes and save modes, on CUDA when a GPU is
  visible and always on the CPU;
* every declared model of the generated list (Synaptic, CUBALIF, AdLIF, ILIF, ...) against its
  reference loop: every variant, dtypes, surrogates, initial states, parameter gradients, the
  constant-input form, on the same devices and through the CuPy path;
* the CuPy path (the same kernels compiled at run time by NVRTC through CuPy, for installs
  without nvcc) when CuPy is installed: against the reference over the same matrix and against
  the compiled CUDA kernels, and its op timings beside theirs in the benchmark;
* ``compute-sanitizer`` memcheck / racecheck / initcheck over a focused subset (this module
  re-run under the tool with a hidden ``--sanitizer-subset`` flag) when the tool is on PATH;
* without a GPU: the host emulation of the real CUDA ``__global__`` bodies under ASan/UBSan
  when this is a source checkout (``python_tests/emulation``); otherwise it says clearly that
  the CUDA kernels were not exercised;
* a copy-bandwidth probe and the op benchmark (fused vs reference, and SpikingJelly's fastest
  LIFNode backend when installed), in neuron-steps/s and effective GB/s;
* ``report.md`` + ``report.json`` (GPU, driver, CUDA, torch, snn_cuda build) in ``--out``.

Exit status: 0 when every correctness check passed, 1 otherwise (benchmarks never fail it).

    python -m snn_cuda.check                      # full run, ./snn_cuda_check_report/
    python -m snn_cuda.check --quick --out DIR    # smaller matrix and benchmark
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.util
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

import snn_cuda
from snn_cuda import ops
from snn_cuda import surrogate as sg

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DTYPE_NAMES = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}

# Gradients (rtol, atol): the fused backward sums the same terms as autograd in its own order,
# so it differs from the reference in the last bits of the state dtype; 16-bit input gradients
# are also rounded to the storage dtype. Spikes and membranes must be bit-equal.
GRAD_TOL: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 1e-4),
    torch.bfloat16: (1.6e-2, 1e-3),
}

# Every kernel surrogate, at a non-default parameter (the run-time parameter path is checked too).
SURROGATES = [cls(1.3 * cls().param) if cls._param_name else cls() for cls in sg.SURROGATES.values()]

SANITIZER_TOOLS = ("memcheck", "racecheck", "initcheck")
# initcheck flags reads of memory no kernel wrote; torch's own kernels occasionally trip it,
# so its verdict is reported but does not decide the exit status.
ADVISORY_TOOLS = ("initcheck",)


# ------------------------------------------------------------------------------------------
# comparisons
# ------------------------------------------------------------------------------------------
def compare_tensors(
    name: str,
    got: Optional[torch.Tensor],
    want: Optional[torch.Tensor],
    *,
    exact: bool = True,
    rtol: float = 0.0,
    atol: float = 0.0,
    scale: Optional[float] = None,
) -> dict:
    """Compares one output of the fused op with the reference's. `exact`: bitwise (NaNs equal);
    otherwise |got - want| <= atol * scale + rtol * |want| with scale = max(1, max|want|).
    Returns {"name", "passed", "max_abs_err", "max_rel_err", "detail"}."""
    res = {"name": name, "passed": False, "max_abs_err": None, "max_rel_err": None, "detail": ""}
    if got is None or want is None:
        res["passed"] = got is None and want is None
        if not res["passed"]:
            res["detail"] = f"one side is None (fused: {got is None}, reference: {want is None})"
        return res
    if got.dtype != want.dtype or tuple(got.shape) != tuple(want.shape):
        res["detail"] = f"dtype/shape {got.dtype} {tuple(got.shape)} != {want.dtype} {tuple(want.shape)}"
        return res
    if got.numel() == 0:
        res.update(passed=True, max_abs_err=0.0, max_rel_err=0.0)
        return res
    a = got.detach().to("cpu", torch.float64)
    b = want.detach().to("cpu", torch.float64)
    both_nan = torch.isnan(a) & torch.isnan(b)
    diff = (a - b).abs().masked_fill(both_nan, 0.0)
    nan_mismatch = bool((torch.isnan(diff)).any())
    diff = torch.nan_to_num(diff, nan=float("inf"))
    max_abs = float(diff.max())
    rel = diff / b.abs().clamp_min(1e-30)
    res["max_abs_err"] = max_abs
    res["max_rel_err"] = float(rel.masked_fill(diff == 0, 0.0).max())
    if exact:
        bad = int((diff != 0).sum())
        res["passed"] = bad == 0 and not nan_mismatch
        if bad:
            res["detail"] = f"{bad}/{a.numel()} elements differ (bitwise comparison)"
    else:
        if scale is None:
            scale = max(1.0, float(b.abs().nan_to_num(0.0).max()))
        limit = atol * scale + rtol * b.abs()
        bad = int((diff > limit).sum())
        res["passed"] = bad == 0 and not nan_mismatch
        res["tolerance"] = {"rtol": rtol, "atol": atol * scale}
        if bad:
            res["detail"] = f"{bad}/{a.numel()} elements outside rtol={rtol:g} atol={atol * scale:g}"
    return res


# ------------------------------------------------------------------------------------------
# the matrix
# ------------------------------------------------------------------------------------------
def neuron_configs() -> List[Tuple[str, str, dict]]:
    """(name, kind, kwargs): every model x reset x decay_input x detach_reset, IF with a floor,
    Leaky's three resets. Scalars not exactly representable in fp32 on purpose."""
    out = []
    for v_reset, rname in ((-0.1, "hard"), (None, "soft")):
        for decay_input in (True, False):
            for detach in (False, True):
                out.append(
                    (
                        f"lif-{rname}-{'decay' if decay_input else 'nodecay'}{'-detach' if detach else ''}",
                        "lif",
                        dict(tau=1.7, decay_input=decay_input, v_threshold=0.9, v_reset=v_reset, detach_reset=detach),
                    )
                )
        for detach in (False, True):
            out.append(
                (
                    f"if-{rname}{'-detach' if detach else ''}",
                    "if",
                    dict(v_threshold=1.1, v_reset=v_reset, detach_reset=detach),
                )
            )
        out.append((f"if-{rname}-floor", "if", dict(v_threshold=1.1, v_reset=v_reset, v_floor=-0.3)))
    for reset in ("subtract", "zero", "none"):
        out.append((f"leaky-{reset}", "leaky", dict(beta=0.85, threshold=0.9, reset_mechanism=reset)))
    out.append(("synaptic", "synaptic", dict(decay=0.8)))
    # learnable / per-neuron parameters (their gradients are compared too)
    for v_reset, rname in ((-0.1, "hard"), (None, "soft")):
        for decay_input in (True, False):
            out.append(
                (
                    f"plif-{rname}-{'decay' if decay_input else 'nodecay'}-learn_th",
                    "plif",
                    dict(init_tau=1.7, decay_input=decay_input, v_threshold=0.9, v_reset=v_reset, learn_threshold=True),
                )
            )
    out.append(
        (
            "plif-hard-detach-per_neuron",
            "plif",
            dict(init_tau=2.5, v_threshold=0.9, v_reset=-0.1, detach_reset=True, param_shape="features"),
        )
    )
    out.append(
        (
            "lif-soft-learn_th-per_neuron",
            "lif",
            dict(tau=1.7, v_threshold=0.9, v_reset=None, learn_threshold=True, param_shape="features"),
        )
    )
    out.append(
        ("if-hard-floor-learn_th", "if", dict(v_threshold=1.1, v_reset=-0.1, v_floor=-0.3, learn_threshold=True))
    )
    for reset in ("subtract", "zero"):
        out.append(
            (
                f"leaky-{reset}-learn_beta_th-per_neuron",
                "leaky",
                dict(
                    beta=0.85,
                    threshold=0.9,
                    reset_mechanism=reset,
                    learn_beta=True,
                    learn_threshold=True,
                    param_shape="features",
                ),
            )
        )
    out.append(
        ("leaky-none-learn_beta", "leaky", dict(beta=0.85, threshold=0.9, reset_mechanism="none", learn_beta=True))
    )
    return out


@dataclasses.dataclass
class Case:
    cfg: str
    kind: str
    kwargs: dict
    dtype: torch.dtype
    surrogate: Optional[sg.SurrogateFunction]
    shape: Tuple[int, ...]  # [T, ...] (for const_T: [B, ...] and T = const_T)
    v0: bool = False
    const_T: Optional[int] = None  # layer(x, T=n) constant-input form
    noncontig: bool = False  # x is a transposed view
    save_mode: Optional[str] = None  # "h" | "checkpoint" | None (the device default)
    backward: bool = True

    @property
    def name(self) -> str:
        parts = [self.cfg, DTYPE_NAMES[self.dtype]]
        if self.surrogate is not None and self.kind != "synaptic":
            parts.append(type(self.surrogate).__name__)
        parts.append("x".join(map(str, self.shape)) + (f"-constT{self.const_T}" if self.const_T else ""))
        if self.v0:
            parts.append("v0")
        if self.noncontig:
            parts.append("noncontig")
        if self.save_mode:
            parts.append(f"save-{self.save_mode}")
        if not self.backward:
            parts.append("no_grad")
        return " ".join(parts)


def _save_modes() -> List[Optional[str]]:
    """Both LIF/IF backward storages when the package has a switch for them."""
    return ["h", "checkpoint"] if hasattr(ops, "set_save_mode") else [None]


def build_matrix(quick: bool, device: str, sm_count: int = 0) -> List[Case]:
    cfgs = neuron_configs()
    by_name = {c[0]: c for c in cfgs}
    modes = _save_modes()
    cases: List[Case] = []
    base_shape = (13, 3, 67)  # T not a multiple of the chunk, N = 201 (odd tail)

    def add(cfg_name, dtype, sur, shape=base_shape, **kw):
        name, kind, kwargs = by_name[cfg_name]
        smodes = kw.pop("save_modes", None)
        if smodes is None:
            smodes = modes if kind in ("lif", "if", "plif") else [None]
        for m in smodes:
            cases.append(Case(name, kind, kwargs, dtype, sur, tuple(shape), save_mode=m, **kw))

    dtypes = DTYPES if not quick else [torch.float32, torch.bfloat16]
    # every model/reset config x dtype, surrogates rotating, initial membrane on half of them
    for i, (name, kind, _) in enumerate(cfgs):
        for j, dt in enumerate(dtypes):
            if quick and j != i % len(dtypes):
                continue
            add(
                name,
                dt,
                SURROGATES[(i + j) % len(SURROGATES)],
                v0=(i + j) % 2 == 0,
                save_modes=None if not quick else [modes[(i + j) % len(modes)]],
            )
    # every surrogate on LIF and Leaky, fp32 and bf16
    sdtypes = [torch.float32, torch.bfloat16] if not quick else [torch.float32]
    for sur in SURROGATES:
        for cfg_name in ("lif-hard-decay", "leaky-subtract"):
            for dt in sdtypes:
                add(cfg_name, dt, sur, v0=True, save_modes=[modes[-1]] if quick else None)
    # special forms
    for dt in [torch.float32, torch.float16] if not quick else [torch.float32]:
        add("lif-hard-decay", dt, sg.ATan(), shape=(3, 67), const_T=11, v0=True)
        add("leaky-zero", dt, sg.ATan(), shape=(3, 67), const_T=11)
        add("if-soft", dt, sg.Sigmoid(), noncontig=True)
        add("lif-soft-decay", dt, sg.Sigmoid(), backward=False)
    add("lif-hard-decay", torch.float32, sg.ATan(), shape=(1, 5))
    add("leaky-subtract", torch.float32, sg.ATan(), shape=(8, 4, 1), v0=True)
    if not quick:
        add("lif-hard-decay", torch.float64, sg.Erf(), shape=(17, 2, 33), v0=True)
        add("if-hard-floor", torch.bfloat16, sg.Rect(), shape=(16, 5, 9))
    # enough neurons that the grid-stride loop wraps (grid capped at 2048 threads per SM)
    if device == "cuda" and sm_count > 0:
        n = sm_count * 2048 + 333
        add("lif-hard-decay", torch.float32, sg.ATan(), shape=(4, n), v0=True)
        if not quick:
            add("leaky-subtract", torch.bfloat16, sg.ATan(), shape=(3, n))
    unique = {}
    for c in cases:  # the sub-matrices overlap in places
        unique.setdefault(c.name, c)
    return list(unique.values())


def sanitizer_matrix() -> List[Case]:
    """Small cases over every kernel variant family, cheap enough under racecheck."""
    cfgs = {c[0]: c for c in neuron_configs()}
    out = []
    for cfg_name, dt, sur in (
        ("lif-hard-decay", torch.float32, sg.ATan()),
        ("lif-soft-nodecay-detach", torch.bfloat16, sg.Sigmoid()),
        ("if-hard-floor", torch.float16, sg.Rect()),
        ("if-soft", torch.float64, sg.Erf()),
        ("leaky-subtract", torch.float32, sg.FastSigmoid()),
        ("leaky-zero", torch.bfloat16, sg.ATan()),
        ("synaptic", torch.float32, None),
    ):
        name, kind, kw = cfgs[cfg_name]
        for m in _save_modes() if kind in ("lif", "if") else [None]:
            out.append(Case(name, kind, kw, dt, sur, (9, 2, 37), v0=True, save_mode=m))
        if kind in ("lif", "leaky"):
            out.append(Case(name, kind, kw, dt, sur, (2, 37), const_T=9))
    return out


# ------------------------------------------------------------------------------------------
# running one case
# ------------------------------------------------------------------------------------------
def _make_layer(case: Case, backend: str, device: str = "cpu"):
    kw = dict(case.kwargs)
    if case.kind == "synaptic":
        return snn_cuda.SynapticCurrent(step_mode="m", backend=backend, **kw)
    if case.surrogate is not None:
        kw["surrogate"] = case.surrogate
    if kw.get("param_shape") == "features":  # one parameter per neuron of a step
        kw["param_shape"] = tuple(case.shape[1:] if case.const_T else case.shape[2:]) or (1,)
    if case.kind == "lif":
        layer = snn_cuda.LIF(step_mode="m", backend=backend, store_v_seq=True, **kw)
    elif case.kind == "plif":
        layer = snn_cuda.ParametricLIF(step_mode="m", backend=backend, store_v_seq=True, **kw)
    elif case.kind == "if":
        layer = snn_cuda.IF(step_mode="m", backend=backend, store_v_seq=True, **kw)
    else:
        layer = snn_cuda.Leaky(step_mode="m", backend=backend, **kw)
    layer = layer.to(device)
    with torch.no_grad():  # distinct per-element values, the same for both backends
        for _, p in sorted(layer.named_parameters()):
            p.add_(torch.linspace(-0.05, 0.05, p.numel(), dtype=p.dtype, device=p.device).reshape(p.shape))
    if case.dtype == torch.float64:
        layer = layer.double()
    return layer


def _state_attr(case: Case) -> str:
    return {"leaky": "mem", "synaptic": "c"}.get(case.kind, "v")


def _inputs(case: Case, device: str):
    g = torch.Generator().manual_seed(1234)
    shape = case.shape
    if case.noncontig:  # same logical shape, transposed storage of the last two dims
        x = torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=torch.float64)
        x = (x * 1.0 + 0.35).to(device=device, dtype=case.dtype).transpose(-1, -2)
    else:
        x = (torch.randn(shape, generator=g, dtype=torch.float64) + 0.35).to(device=device, dtype=case.dtype)
    rest = shape if case.const_T else shape[1:]
    sdt = torch.float64 if case.dtype == torch.float64 else torch.float32
    v0 = None
    if case.v0:
        v0 = (torch.randn(rest, generator=g, dtype=torch.float64) * 0.5).to(device=device, dtype=sdt)
    return x, v0, g


def _run_layer(case: Case, backend: str, x, v0, g):
    layer = _make_layer(case, backend, x.device.type)
    attr = _state_attr(case)
    x = x.detach().clone() if not case.noncontig else x.detach().transpose(-1, -2).clone().transpose(-1, -2)
    x.requires_grad_(case.backward)
    if v0 is not None:
        v0 = v0.detach().clone().requires_grad_(case.backward)
        setattr(layer, attr, v0)
    with torch.set_grad_enabled(case.backward), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case.kind == "synaptic":
            spikes, mem_seq = None, layer(x)
        elif case.kind == "leaky":
            spikes, mem_seq = layer(x, T=case.const_T) if case.const_T else layer(x)
        else:
            spikes = layer(x, T=case.const_T) if case.const_T else layer(x)
            mem_seq = layer.v_seq
        last = getattr(layer, attr)
    out = {"spikes": spikes, "mem_seq": mem_seq, "mem_last": last}
    if case.backward:
        gen = torch.Generator().manual_seed(77)
        outs, grads = [], []
        for key in ("spikes", "mem_seq", "mem_last"):
            t = out[key]
            if t is not None and t.requires_grad:
                outs.append(t)
                grads.append(torch.randn(tuple(t.shape), generator=gen, dtype=torch.float64).to(t.device, t.dtype))
        params = sorted(layer.named_parameters())
        inputs = [x] + ([v0] if v0 is not None else []) + [p for _, p in params]
        gs = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
        out["grad_x"] = gs[0]
        out["grad_v0"] = gs[1] if v0 is not None else None
        for (pname, _), gp in zip(params, gs[len(gs) - len(params) :]):
            out[f"grad_{pname}"] = gp
    return {k: (None if v is None else v.detach()) for k, v in out.items()}


class _SaveMode:
    """Temporarily selects the LIF/IF backward storage on a device type."""

    def __init__(self, device: str, mode: Optional[str]):
        self.device, self.mode = device, mode

    def __enter__(self):
        if self.mode is not None:
            self.old = dict(ops.DEFAULT_SAVE_MODE)
            ops.set_save_mode(self.device, self.mode)

    def __exit__(self, *exc):
        if self.mode is not None:
            ops.DEFAULT_SAVE_MODE.clear()
            ops.DEFAULT_SAVE_MODE.update(self.old)


def run_case(case: Case, device: str, inject_fault: bool = False) -> dict:
    """Fused vs reference on `device`; returns a check record with per-output max errors."""
    rec = {"name": case.name, "device": device, "passed": False, "comparisons": [], "error": None}
    try:
        x, v0, g = _inputs(case, device)
        with _SaveMode(device, case.save_mode):
            fused = _run_layer(case, "fused", x, v0, g)
        ref = _run_layer(case, "torch", x, v0, g)
        if inject_fault and fused.get("grad_x") is not None:
            fused["grad_x"] = fused["grad_x"] + 0.5  # --selftest-fail: prove failures are reported
        rtol, atol = GRAD_TOL[case.dtype]
        comps = []
        for key in ("spikes", "mem_seq", "mem_last"):
            comps.append(compare_tensors(key, fused[key], ref[key], exact=True))
        if case.backward:
            for key in ["grad_x", "grad_v0"] + sorted(
                k for k in ref if k.startswith("grad_") and k not in ("grad_x", "grad_v0")
            ):
                want = ref[key]
                if key == "grad_x" and case.const_T and want is not None and fused[key] is not None:
                    # the kernel sums over T in the state dtype and rounds once; autograd's expand
                    # backward sums 16-bit gradients in 16 bits: allow T roundings for 16-bit
                    if case.dtype in (torch.float16, torch.bfloat16):
                        atol = case.const_T * torch.finfo(case.dtype).eps
                comps.append(compare_tensors(key, fused[key], want, exact=False, rtol=rtol, atol=atol))
        rec["comparisons"] = comps
        rec["passed"] = all(c["passed"] for c in comps)
    except Exception as e:  # a crash is a failure, with its reason in the report
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["traceback"] = traceback.format_exc(limit=6)
    return rec


# ------------------------------------------------------------------------------------------
# the declared models (snn_cuda/models/: Synaptic, CUBALIF, AdLIF, ILIF, ...)
# ------------------------------------------------------------------------------------------
# Per declared model, the configurations checked: every variant, detach_reset, learnable and
# per-neuron parameters where the layer has them. A model of the list without an entry here is
# still checked at its defaults (model_configs adds it), so a new model is never skipped.
MODEL_CONFIGS: Dict[str, List[Tuple[str, dict]]] = {
    "synaptic": [
        ("subtract", dict(alpha=0.7, beta=0.85, threshold=0.9, reset_mechanism="subtract")),
        (
            "zero-learn",
            dict(
                alpha=0.7,
                beta=0.85,
                threshold=0.9,
                reset_mechanism="zero",
                learn_alpha=True,
                learn_beta=True,
                learn_threshold=True,
            ),
        ),
        (
            "none-per_neuron",
            dict(alpha=0.7, beta=0.85, threshold=0.9, reset_mechanism="none", learn_beta=True, param_shape="features"),
        ),
    ],
    "cuba_lif": [
        ("hard", dict(c_decay=0.55, v_decay=0.7, v_threshold=0.45, v_reset=-0.1)),
        ("soft-detach", dict(c_decay=0.55, v_decay=0.7, v_threshold=0.45, v_reset=None, detach_reset=True)),
    ],
    "adlif": [("default", dict(shape="features", threshold=0.9))],
    "leaky": [
        ("subtract", dict(beta=0.85, threshold=0.9)),
        ("zero-learn", dict(beta=0.85, threshold=0.9, reset_mechanism="zero", learn_beta=True, learn_threshold=True)),
        ("none-per_neuron", dict(beta=0.85, reset_mechanism="none", learn_beta=True, param_shape="features")),
    ],
    "ilif": [
        ("default", dict(tau=1.6, v_threshold=0.8, max_spike_count=4)),
        (
            "window-detach",
            dict(tau=1.6, v_threshold=0.8, max_spike_count=3, grad_window=(-0.5, 2.5), detach_reset=True),
        ),
    ],
}


def _model_layer_cls(model: str):
    from snn_cuda.model_ops import MODELS
    from snn_cuda.models import LAYERS

    return next(c for c in LAYERS.values() if getattr(c, "_decl", None) is MODELS[model])


def model_configs() -> List[Tuple[str, str, dict]]:
    """(name, model, kwargs) for every declared model of the generated list."""
    from snn_cuda.model_ops import MODELS

    return [(f"{m}-{cid}", m, kw) for m in MODELS for cid, kw in MODEL_CONFIGS.get(m, [("defaults", {})])]


def build_model_matrix(quick: bool, device: str, sm_count: int = 0) -> List[Case]:
    """Every declared-model configuration x dtype (rotating surrogates, initial states on half),
    every surrogate on each model that takes one, the constant-input form, and a grid-wrapping
    size on CUDA. Shapes as the one-state matrix: T not a multiple of the chunk, an odd N."""
    cases: List[Case] = []
    dtypes = DTYPES if not quick else [torch.float32, torch.bfloat16]
    cfgs = model_configs()
    for i, (name, model, kw) in enumerate(cfgs):
        takes_sg = "surrogate" in inspect.signature(_model_layer_cls(model)).parameters
        for j, dt in enumerate(dtypes):
            if quick and j != i % len(dtypes):
                continue
            sur = SURROGATES[(i + j) % len(SURROGATES)] if takes_sg else None
            cases.append(Case(name, model, kw, dt, sur, (13, 3, 67), v0=(i + j) % 2 == 0))
        if takes_sg and not quick and kw is cfgs[[c[1] for c in cfgs].index(model)][2]:
            for sur in SURROGATES:
                cases.append(Case(name, model, kw, torch.float32, sur, (13, 3, 67), v0=True))
        cases.append(Case(name, model, kw, torch.float32, sg.ATan() if takes_sg else None, (3, 67), const_T=11))
    if device == "cuda" and sm_count > 0:
        name, model, kw = cfgs[0]
        cases.append(Case(name, model, kw, torch.float32, None, (4, sm_count * 2048 + 333), v0=True))
    unique = {}
    for c in cases:
        unique.setdefault(c.name, c)
    return list(unique.values())


def _run_model_layer(case: Case, backend: str, x, device: str):
    from snn_cuda.model_ops import MODELS

    decl = MODELS[case.kind]
    cls = _model_layer_cls(case.kind)
    kw = dict(case.kwargs)
    rest = tuple(case.shape[1:] if case.const_T is None else case.shape)
    for key in ("shape", "param_shape"):
        if kw.get(key) == "features":  # one parameter per neuron of a step
            kw[key] = rest[1:] or (1,)
    if case.surrogate is not None:
        kw["surrogate"] = case.surrogate
    params = inspect.signature(cls).parameters
    if "return_states" in params:
        kw["return_states"] = True
    layer = cls(step_mode="m", backend=backend, **kw).to(device)
    torch.manual_seed(5)  # AdLIF-style random initialisation: the same for both backends
    if hasattr(layer, "reset_parameters"):
        layer.reset_parameters()
    with torch.no_grad():
        for _, p in sorted(layer.named_parameters()):
            p.add_(torch.linspace(-0.05, 0.05, p.numel(), dtype=p.dtype, device=p.device).reshape(p.shape))
    if case.dtype == torch.float64:
        layer = layer.double()
    x = x.detach().clone().requires_grad_(case.backward)
    sdt = torch.float64 if case.dtype == torch.float64 else torch.float32
    s0 = []
    if case.v0:
        g = torch.Generator().manual_seed(4321)
        for st in decl.states:
            t = (torch.randn(rest, generator=g, dtype=torch.float64) * 0.3).to(device=device, dtype=sdt)
            t.requires_grad_(case.backward)
            setattr(layer, st, t)
            s0.append(t)
    with torch.set_grad_enabled(case.backward), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = layer(x, T=case.const_T) if case.const_T else layer(x)
    y = list(y) if isinstance(y, (tuple, list)) else [y]
    out = {"spikes": y[0]}
    for k, t in enumerate(y[1:]):
        out[f"mem_seq[{k}]"] = t
    for st in decl.states:
        out[f"mem_last[{st}]"] = getattr(layer, st)
    if case.backward:
        gen = torch.Generator().manual_seed(77)
        outs, grads = [], []
        for t in out.values():
            if isinstance(t, torch.Tensor) and t.requires_grad:
                outs.append(t)
                grads.append(torch.randn(tuple(t.shape), generator=gen, dtype=torch.float64).to(t.device, t.dtype))
        named = sorted(layer.named_parameters())
        inputs = [x] + s0 + [p for _, p in named]
        gs = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
        out["grad_x"] = gs[0]
        for st, gv in zip(decl.states if s0 else (), gs[1 : 1 + len(s0)]):
            out[f"grad_v0[{st}]"] = gv
        for (pname, _), gp in zip(named, gs[1 + len(s0) :]):
            out[f"grad_{pname}"] = gp
    return {k: (v.detach() if isinstance(v, torch.Tensor) else v) for k, v in out.items()}


def run_model_case(case: Case, device: str) -> dict:
    """A declared-model layer fused vs its reference loop on `device`: spikes and states
    bitwise, gradients (x, initial states, parameters) within GRAD_TOL."""
    rec = {"name": case.name, "device": device, "passed": False, "comparisons": [], "error": None}
    try:
        g = torch.Generator().manual_seed(1234)
        x = (torch.randn(case.shape, generator=g, dtype=torch.float64) + 0.35).to(device=device, dtype=case.dtype)
        fused = _run_model_layer(case, "fused", x, device)
        ref = _run_model_layer(case, "torch", x, device)
        rtol, atol = GRAD_TOL[case.dtype]
        if case.const_T and case.dtype in (torch.float16, torch.bfloat16):
            atol = case.const_T * torch.finfo(case.dtype).eps  # as run_case: autograd sums in 16 bits
        comps = []
        for key in sorted(set(fused) | set(ref)):
            name = key.split("[")[0]
            got, want = fused.get(key), ref.get(key)
            if not key.startswith("grad_"):
                c = compare_tensors(name, got, want, exact=True)
            else:
                c = compare_tensors(name, got, want, exact=False, rtol=rtol, atol=atol)
            if not c["passed"]:
                c["detail"] = f"{key}: {c['detail']}"
            comps.append(c)
        rec["comparisons"] = comps
        rec["passed"] = all(c["passed"] for c in comps)
    except Exception as e:
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["traceback"] = traceback.format_exc(limit=6)
    return rec


def run_model_matrix(device: str, quick: bool, sm_count: int = 0, log=print) -> dict:
    t0 = time.perf_counter()
    recs = []
    for c in build_model_matrix(quick, device, sm_count):
        recs.append(run_model_case(c, device))
        if not recs[-1]["passed"] and sum(not r["passed"] for r in recs) <= 20:
            log(f"  FAIL {device} {c.name}: {_failure_text(recs[-1])}")
    return _summary(f"declared models fused vs reference ({device})", device, recs, t0, log)


def run_model_benchmarks(device: str, quick: bool, budget: float, log=print) -> List[dict]:
    """Each declared model's first configuration, fp32 forward + backward of the spikes, fused vs
    its reference loop. Rows in the benchmark table's format."""
    T, N = (16, 2**14) if (quick or device == "cpu") else (64, 2**20)
    rows = []
    for name, model, kw in model_configs():
        if name != model_configs()[[c[1] for c in model_configs()].index(model)][0]:
            continue
        times = {}
        for backend in ("fused", "torch"):
            row = {
                "impl": f"{name} [{'fused' if backend == 'fused' else 'reference'}]",
                "shape": [T, N],
                "dtype": "fp32",
            }
            try:
                case = Case(name, model, kw, torch.float32, None, (T, N), backward=True)
                cls = _model_layer_cls(model)
                kk = dict(kw)
                for key in ("shape", "param_shape"):
                    if kk.get(key) == "features":
                        kk[key] = (N,)
                layer = cls(step_mode="m", backend=backend, **kk).to(device)
                gen = torch.Generator().manual_seed(0)
                x = (torch.randn(T, N, generator=gen) * 0.5 + 0.6).to(device).requires_grad_(True)
                gout = torch.randn(T, N, generator=gen).to(device)

                def step():
                    from snn_cuda.functional import reset_net

                    reset_net(layer)
                    y = layer(x)
                    y = y[0] if isinstance(y, (tuple, list)) else y
                    y.backward(gout)

                del case
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = _time_fn(step, device, budget)
                row.update(r)
                row["neuron_steps_per_s"] = T * N / r["median_s"]
                times[backend] = r["median_s"]
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"
            rows.append(row)
        if len(times) == 2:
            rows[-2]["speedup_vs_reference"] = times["torch"] / times["fused"]
            rows[-1]["speedup_vs_reference"] = 1.0
        for row in rows[-2:]:
            log(
                f"  {row['impl']:<44} fp32 [{T}, {N}]: "
                + (
                    row["error"]
                    if "error" in row
                    else f"{row['median_s'] * 1e3:9.2f} ms  {row['neuron_steps_per_s'] / 1e9:7.3f} G neuron-steps/s"
                )
            )
    return rows


def check_poisson(device: str, quick: bool) -> List[dict]:
    """The fused Poisson encoder: a {0,1} output with the right rate, exact at 0 and 1, and on
    CUDA bit-equal to the CPU kernel for the same seed (counter-based Philox)."""
    recs = []
    for dt in [torch.float32, torch.bfloat16] if quick else DTYPES:
        rec = {
            "name": f"poisson_encode {DTYPE_NAMES[dt]}",
            "device": device,
            "passed": False,
            "comparisons": [],
            "error": None,
        }
        try:
            T = 400
            x = torch.linspace(0, 1, 257, dtype=torch.float64).to(device=device, dtype=dt)
            s = snn_cuda.poisson_encode(x, T, generator=torch.Generator().manual_seed(5), backend="fused")
            comps = []
            binary = bool(((s == 0) | (s == 1)).all())
            comps.append(
                {
                    "name": "binary",
                    "passed": binary,
                    "max_abs_err": None,
                    "max_rel_err": None,
                    "detail": "" if binary else "values other than 0/1",
                }
            )
            comps.append(
                compare_tensors(
                    "x=0 and x=1 exact", s[:, [0, -1]].float(), torch.tensor([0.0, 1.0], device=device).expand(T, 2)
                )
            )
            rate = s.double().mean(0)
            xr = x.double()
            bound = 5 * torch.sqrt(xr * (1 - xr) / T) + 1e-9
            err = (rate - xr).abs()
            ok = bool((err <= bound).all())
            comps.append(
                {
                    "name": "rate within 5 sigma",
                    "passed": ok,
                    "max_abs_err": float(err.max()),
                    "max_rel_err": None,
                    "detail": "" if ok else f"{int((err > bound).sum())} rates off",
                }
            )
            if device == "cuda":
                sc = snn_cuda.poisson_encode(x.cpu(), T, generator=torch.Generator().manual_seed(5), backend="fused")
                comps.append(compare_tensors("cuda == cpu (same seed)", s.cpu(), sc, exact=True))
            rec["comparisons"] = comps
            rec["passed"] = all(c["passed"] for c in comps)
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc(limit=6)
        recs.append(rec)
    return recs


def run_matrix(
    device: str,
    quick: bool,
    sm_count: int = 0,
    inject_fault: bool = False,
    cases: Optional[List[Case]] = None,
    log=print,
) -> dict:
    cases = build_matrix(quick, device, sm_count) if cases is None else cases
    t0 = time.perf_counter()
    recs = []
    for i, c in enumerate(cases):
        recs.append(run_case(c, device, inject_fault=inject_fault and i == 0))
        if not recs[-1]["passed"] and sum(not r["passed"] for r in recs) <= 20:
            log(f"  FAIL {device} {c.name}: {_failure_text(recs[-1])}")
    recs += check_poisson(device, quick)
    return _summary(f"fused vs reference ({device})", device, recs, t0, log)


def _summary(name: str, device: str, recs: List[dict], t0: float, log) -> dict:
    """A matrix's check entry: its records, counts, time and largest errors; logged in one line."""
    failed = [r for r in recs if not r["passed"]]
    summary = {
        "name": name,
        "device": device,
        "passed": not failed,
        "cases": len(recs),
        "failed": len(failed),
        "seconds": round(time.perf_counter() - t0, 2),
        "max_err": _max_errors(recs),
        "records": recs,
    }
    log(f"  {summary['name']}: {len(recs) - len(failed)}/{len(recs)} passed in {summary['seconds']} s")
    return summary


def _max_errors(recs) -> dict:
    """Largest absolute error per output name over all records (spikes/membranes should be 0)."""
    out: Dict[str, float] = {}
    for r in recs:
        for c in r["comparisons"]:
            if c.get("max_abs_err") is not None:
                out[c["name"]] = max(out.get(c["name"], 0.0), c["max_abs_err"])
    return out


def _failure_text(rec) -> str:
    if rec.get("error"):
        return rec["error"]
    bad = [c for c in rec["comparisons"] if not c["passed"]]
    return "; ".join(f"{c['name']}: {c.get('detail') or 'mismatch'} (max abs err {c.get('max_abs_err')})" for c in bad)


# ------------------------------------------------------------------------------------------
# the CuPy path (snn_cuda.cupy_backend)
# ------------------------------------------------------------------------------------------
def cupy_status() -> dict:
    """build_info()'s description of the CuPy path ({"available", "reason", versions ...})."""
    try:
        return dict(snn_cuda.build_info().get("cupy") or {})
    except Exception as e:  # pragma: no cover
        return {"available": False, "reason": f"{type(e).__name__}: {e}"}


def _cupy_kernels(on: bool, device: str = "cuda"):
    """Within the block the CuPy implementations serve the ops of `device` (when `on`). On CUDA
    that is the CuPy path; "cpu" is for the tests, which give it a host-emulation launcher."""
    if not on:
        import contextlib

        return contextlib.nullcontext()
    from snn_cuda import cupy_backend

    return cupy_backend.serving("CUDA" if device == "cuda" else device.upper())


def run_cupy_vs_reference(quick: bool, sm_count: int = 0, log=print, device: str = "cuda") -> dict:
    """The fused-vs-reference matrix on CUDA with the CuPy-compiled kernels serving the ops."""
    with _cupy_kernels(True, device):
        res = run_matrix(device, quick, sm_count, log=log)
    res["name"] = f"CuPy path vs reference ({device})"
    log(f"  (the above: {res['name']})")
    return res


def run_cupy_vs_compiled(quick: bool, sm_count: int = 0, log=print, device: str = "cuda") -> dict:
    """The CuPy-compiled kernels against the compiled (nvcc) CUDA kernels on the same inputs:
    the same source and arithmetic flags, so spikes and membranes must be bit-identical;
    gradients are compared with the reference tolerances (another CUDA version's math library
    may round exp/atan differently) and reported as bitwise when they are. Poisson: bitwise."""
    t0 = time.perf_counter()
    recs = []
    for case in build_matrix(quick, device, sm_count):
        rec = {"name": case.name, "device": device, "passed": False, "comparisons": [], "error": None}
        try:
            x, v0, g = _inputs(case, device)
            with _SaveMode(device, case.save_mode):
                compiled = _run_layer(case, "fused", x, v0, g)
                with _cupy_kernels(True, device):
                    viacupy = _run_layer(case, "fused", x, v0, g)
            rtol, atol = GRAD_TOL[case.dtype]
            comps = [compare_tensors(k, viacupy[k], compiled[k], exact=True) for k in ("spikes", "mem_seq", "mem_last")]
            for k in ("grad_x", "grad_v0"):
                if k in compiled:
                    c = compare_tensors(k, viacupy[k], compiled[k], exact=False, rtol=rtol, atol=atol)
                    c["bitwise"] = c["passed"] and c["max_abs_err"] in (0.0, None)
                    comps.append(c)
            rec["comparisons"] = comps
            rec["passed"] = all(c["passed"] for c in comps)
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc(limit=6)
        recs.append(rec)
        if not rec["passed"] and sum(not r["passed"] for r in recs) <= 20:
            log(f"  FAIL cupy-vs-compiled {case.name}: {_failure_text(rec)}")
    for dt in [torch.float32, torch.bfloat16] if quick else DTYPES:
        rec = {
            "name": f"poisson_encode {DTYPE_NAMES[dt]}",
            "device": device,
            "passed": False,
            "comparisons": [],
            "error": None,
        }
        try:
            x = torch.linspace(0, 1, 4099, dtype=torch.float64).to(device=device, dtype=dt)
            seed = torch.tensor(12345, device=device)
            a = torch.ops.snn_cuda.poisson_encode(x, 37, seed)
            with _cupy_kernels(True, device):
                b = torch.ops.snn_cuda.poisson_encode(x, 37, seed)
            rec["comparisons"] = [compare_tensors("spikes", b, a, exact=True)]
            rec["passed"] = rec["comparisons"][0]["passed"]
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        recs.append(rec)
    failed = [r for r in recs if not r["passed"]]
    grads = [c for r in recs for c in r["comparisons"] if c["name"].startswith("grad")]
    summary = {
        "name": "CuPy path vs compiled CUDA kernels" if device == "cuda" else f"CuPy path vs compiled ({device})",
        "device": device,
        "passed": not failed,
        "cases": len(recs),
        "failed": len(failed),
        "seconds": round(time.perf_counter() - t0, 2),
        "max_err": _max_errors(recs),
        "gradients_bitwise": f"{sum(bool(c.get('bitwise')) for c in grads)}/{len(grads)}",
        "records": recs,
    }
    log(
        f"  {summary['name']}: {len(recs) - len(failed)}/{len(recs)} passed in {summary['seconds']} s "
        f"(gradients bit-identical in {summary['gradients_bitwise']})"
    )
    return summary


# ------------------------------------------------------------------------------------------
# host emulation of the CUDA kernels (source checkout only)
# ------------------------------------------------------------------------------------------
_EMU_DEFAULTS = dict(
    CXXFLAGS=[
        "-std=c++17",
        "-O1",
        "-g1",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fsanitize=alignment",
        "-ffp-contract=off",
    ],
    SUMMARY_RE=re.compile(r"^EMU: (\d+) cases passed, (\d+) failed$", re.M),
    SANITIZER_ENV={
        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    },
)


def source_root() -> Optional[Path]:
    root = Path(snn_cuda.__file__).resolve().parent.parent
    if (root / "python_tests" / "emulation" / "emu_neuron.cpp").is_file() and (root / "csrc" / "kernels").is_dir():
        return root
    return None


def _emu_settings(root: Path) -> dict:
    """The build flags of python_tests/test_emulation.py when it can be imported (so the two
    never drift apart), else this module's copy."""
    settings = dict(_EMU_DEFAULTS)
    try:
        spec = importlib.util.spec_from_file_location(
            "_snn_test_emulation", root / "python_tests" / "test_emulation.py"
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for k in settings:
            if hasattr(mod, k):
                settings[k] = getattr(mod, k)
        settings["source"] = "python_tests/test_emulation.py"
    except Exception as e:
        settings["source"] = f"built-in copy ({type(e).__name__} importing test_emulation.py)"
    return settings


def run_emulation(quick: bool, log=print) -> dict:
    rec = {"name": "CUDA kernels, host emulation (g++ ASan/UBSan)", "passed": False, "error": None}
    root = source_root()
    if root is None:
        rec.update(
            skipped=True,
            passed=True,
            detail="not a source checkout (python_tests/emulation missing): the CUDA kernels were NOT exercised",
        )
        return rec
    gxx = shutil.which(os.environ.get("CXX_EMU", "g++"))
    if gxx is None:
        rec.update(skipped=True, passed=True, detail="g++ not found: the CUDA kernels were NOT exercised")
        return rec
    st = _emu_settings(root)
    emu_dir = root / "python_tests" / "emulation"
    kernels = root / "csrc" / "kernels"
    extra = ["-DEMU_QUICK"] if quick else []
    rec["variant"] = "quick subset (-DEMU_QUICK)" if quick else "full matrix"
    rec["flags_from"] = st["source"]
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="snn_check_emu_"))
    try:
        binary = None
        if not quick:  # reuse the test suite's cached full build when it is fresh
            cached = emu_dir / "build" / "emu_neuron"
            stamp = emu_dir / "build" / "emu_neuron.cmd"
            want = " ".join(
                [
                    gxx,
                    *st["CXXFLAGS"],
                    "-I",
                    str(root / "csrc"),
                    "-I",
                    str(emu_dir),
                    str(emu_dir / "emu_neuron.cpp"),
                    "-o",
                    str(cached),
                ]
            )
            srcs = [emu_dir / "emu_neuron.cpp", emu_dir / "host_shim.h", *sorted(kernels.glob("*"))]
            if (
                cached.exists()
                and stamp.exists()
                and stamp.read_text() == want
                and all(cached.stat().st_mtime >= s.stat().st_mtime for s in srcs)
            ):
                binary = cached
                rec["build"] = "reused python_tests/emulation/build/emu_neuron"
        if binary is None:
            binary = tmp / "emu_neuron"
            cmd = [
                gxx,
                *st["CXXFLAGS"],
                *extra,
                "-I",
                str(root / "csrc"),
                "-I",
                str(emu_dir),
                str(emu_dir / "emu_neuron.cpp"),
                "-o",
                str(binary),
            ]
            log(f"  building the emulation driver ({rec['variant']}) ...")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
            rec["build"] = " ".join(cmd)
            if proc.returncode != 0:
                rec["error"] = "emulation driver failed to build"
                rec["output_tail"] = (proc.stdout + proc.stderr)[-4000:]
                return rec
        env = dict(os.environ)
        env.update(st["SANITIZER_ENV"])
        env.pop("LD_PRELOAD", None)
        proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=1800, env=env)
        out = proc.stdout + proc.stderr
        m = st["SUMMARY_RE"].search(proc.stdout)
        rec["returncode"] = proc.returncode
        if m is None:
            rec["error"] = f"no summary line (rc={proc.returncode})"
            rec["output_tail"] = out[-4000:]
            return rec
        rec["summary"] = m.group(0)
        launches = re.search(r"^EMU: launches .*$", proc.stdout, re.M)
        if launches:
            rec["launches"] = launches.group(0)
        rec["passed"] = proc.returncode == 0 and int(m.group(2)) == 0 and int(m.group(1)) > 0
        if not rec["passed"]:
            rec["output_tail"] = out[-6000:]
    except Exception as e:
        rec["error"] = f"{type(e).__name__}: {e}"
    finally:
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


# ------------------------------------------------------------------------------------------
# compute-sanitizer
# ------------------------------------------------------------------------------------------
_SAN_SUMMARY = re.compile(r"=+\s*ERROR SUMMARY:\s*(\d+) errors?")
# racecheck's own line: "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
_RACE_SUMMARY = re.compile(r"RACECHECK SUMMARY:\s*(\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)")


def parse_sanitizer_output(out: str) -> dict:
    """Error count from compute-sanitizer's summary lines (None when there is none)."""
    errs = [int(v) for v in _SAN_SUMMARY.findall(out)]
    races = _RACE_SUMMARY.findall(out)
    errs += [int(e) for _h, e, _w in races]
    res = {
        "errors": sum(errs) if (errs or races) else None,
        "race_warnings": sum(int(w) for _h, _e, w in races) if races else None,
    }
    lines = [m.group(0) for m in re.finditer(r"(ERROR|RACECHECK) SUMMARY:.*", out)]
    res["summary"] = "; ".join(dict.fromkeys(lines)) if lines else "no summary line"
    return res


def run_sanitizer_subset() -> int:
    """Body of the hidden --sanitizer-subset flag (run under compute-sanitizer)."""
    recs = [run_case(c, "cuda") for c in sanitizer_matrix()]
    # one small case per declared-model configuration
    recs += [
        run_model_case(Case(n, m, kw, torch.float32, None, (9, 2, 37), v0=True), "cuda") for n, m, kw in model_configs()
    ]
    recs += check_poisson("cuda", quick=True)
    torch.cuda.synchronize()
    bad = [r for r in recs if not r["passed"]]
    for r in bad:
        print(f"SUBSET FAIL {r['name']}: {_failure_text(r)}")
    print(f"SUBSET: {len(recs) - len(bad)}/{len(recs)} cases passed")
    return 1 if bad else 0


def run_sanitizers(quick: bool, log=print) -> List[dict]:
    tool = shutil.which("compute-sanitizer")
    if tool is None:
        return [
            {
                "name": "compute-sanitizer",
                "skipped": True,
                "passed": True,
                "detail": "compute-sanitizer not on PATH (it ships with the CUDA toolkit: add its bin/ to PATH)",
            }
        ]
    recs = []
    env = dict(os.environ)
    env["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"  # exact allocations, so overruns hit unowned memory
    for name in SANITIZER_TOOLS:
        if quick and name == "initcheck":
            continue
        cmd = [tool, "--tool", name, "--error-exitcode", "97"]
        cmd += [sys.executable, "-m", "snn_cuda.check", "--sanitizer-subset"]
        rec = {
            "name": f"compute-sanitizer {name}",
            "passed": False,
            "advisory": name in ADVISORY_TOOLS,
            "command": " ".join(cmd),
            "error": None,
        }
        log(f"  compute-sanitizer --tool {name} ...")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env)
            out = proc.stdout + proc.stderr
            parsed = parse_sanitizer_output(out)
            sub = re.search(r"^SUBSET: .*$", out, re.M)
            rec["returncode"] = proc.returncode
            rec.update(parsed)
            rec["subset"] = sub.group(0) if sub else None
            # 0 errors, a clean exit (97 = the tool found errors), and the subset itself passed
            rec["passed"] = parsed["errors"] == 0 and proc.returncode == 0 and sub is not None
            if not rec["passed"]:
                rec["output_tail"] = out[-6000:]
        except subprocess.TimeoutExpired:
            rec["error"] = "timed out after 1800 s"
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {e}"
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        log(f"    {rec.get('summary') or rec.get('error')}")
        recs.append(rec)
    return recs


# ------------------------------------------------------------------------------------------
# benchmarks
# ------------------------------------------------------------------------------------------
def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _timer(device):
    """Returns a function timing fn() in seconds (CUDA events on the GPU)."""
    if device == "cuda":

        def t(fn):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            a.record()
            fn()
            b.record()
            b.synchronize()
            return a.elapsed_time(b) / 1e3
    else:

        def t(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0

    return t


def _time_fn(fn, device, budget: float, max_reps: int = 50) -> dict:
    timer = _timer(device)
    warm = timer(fn)  # warm-up (allocator, kernel load)
    ts = [timer(fn)]
    while len(ts) < max_reps and sum(ts) < budget:
        ts.append(timer(fn))
    return {"median_s": statistics.median(ts), "min_s": min(ts), "reps": len(ts), "first_s": warm}


def copy_bandwidth(device: str, mbytes: int, budget: float) -> dict:
    n = mbytes * (1 << 20) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    r = _time_fn(lambda: dst.copy_(src), device, budget, max_reps=30)
    nbytes = 2 * n * 4
    del src, dst
    return {
        "bytes": nbytes,
        "median_s": r["median_s"],
        "GB_s": nbytes / r["median_s"] / 1e9,
        "best_GB_s": nbytes / r["min_s"] / 1e9,
        "reps": r["reps"],
    }


def _bytes_per_step(dtype, mode: str) -> int:
    e = torch.empty((), dtype=dtype).element_size()
    s = 8 if dtype == torch.float64 else 4
    if mode == "checkpoint":  # x, s fwd; gs, x, gx bwd; a state checkpoint every CHUNK steps
        return int(round(5 * e + 2 * s / getattr(ops, "CHUNK", 8)))
    return 4 * e + 2 * s  # x, s, h fwd; gs, h, gx bwd


def _lif_runner(backend, device):
    layer = snn_cuda.LIF(tau=2.0, surrogate=sg.ATan(), step_mode="m", backend=backend).to(device)

    def run(x, g):
        snn_cuda.functional.reset_net(layer)
        x.grad = None
        layer(x).backward(g)

    return run


def _sj_runners(device):
    """SpikingJelly LIFNode(tau=2, ATan, step_mode='m'): one runner per backend its version
    accepts ("cupy"/"triton"/"torch"), or the default one when LIFNode has no backend argument."""
    try:
        import spikingjelly
        from spikingjelly.activation_based import functional as sjf, neuron, surrogate as sjs
    except Exception as e:
        return {}, f"not importable ({type(e).__name__})"
    version = getattr(spikingjelly, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as _v

            version = _v("spikingjelly")
        except Exception:
            version = "?"
    try:
        params = inspect.signature(neuron.LIFNode.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    backends = ["cupy", "triton", "torch"] if "backend" in params else [None]
    runners = {}
    for be in backends:
        try:
            kw = {} if be is None else {"backend": be}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                layer = neuron.LIFNode(tau=2.0, surrogate_function=sjs.ATan(), step_mode="m", **kw).to(device)
            if be is not None and be not in getattr(layer, "supported_backends", (be,)):
                continue

            def run(x, g, layer=layer):
                sjf.reset_net(layer)
                x.grad = None
                layer(x).backward(g)

            runners[be or "default"] = run
        except Exception:
            continue
    return runners, version


def run_benchmarks(device: str, quick: bool, budget: float, log=print, cupy: Optional[str] = None) -> dict:
    """cupy: None, "beside" (extra rows with the CuPy-compiled kernels next to the compiled
    ones) or "only" (the CUDA ops are served by CuPy: the fused rows are labelled so)."""
    res = {"device": device, "rows": [], "copy": None, "notes": []}
    try:
        if device == "cuda":
            free, _total = torch.cuda.mem_get_info()
            mb = 1024 if not quick else 256
            mb = max(16, min(mb, int(free / 4 / (1 << 20))))
        else:
            free, mb = None, (256 if not quick else 64)
        res["copy"] = copy_bandwidth(device, mb, budget)
        log(f"  copy bandwidth ({device}, {mb} MiB, read+write): {res['copy']['GB_s']:.1f} GB/s")
    except Exception as e:
        res["notes"].append(f"copy probe failed: {type(e).__name__}: {e}")
    if device == "cuda":
        shapes = [(64, 2**20)] if quick else [(64, 2**18), (64, 2**20), (64, 2**22)]
    else:
        shapes = [(16, 2**14)] if quick else [(64, 2**16), (64, 64 * 4096)]
    modes = _save_modes()
    sj_runners, sj_version = _sj_runners(device)
    res["spikingjelly"] = sj_version if sj_runners else (sj_version or "not installed")
    for T, N in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            if device == "cuda":
                # the reference loop keeps ~10 state tensors per step for autograd
                need = T * N * 4 * 16
                free, _ = torch.cuda.mem_get_info()
                while need > 0.7 * free and N > 2**14:
                    N //= 2
                    need = T * N * 4 * 16
            gen = torch.Generator().manual_seed(0)
            x = (torch.randn(T, N, generator=gen) * 0.5 + 0.6).to(device=device, dtype=dtype).requires_grad_(True)
            gout = torch.randn(T, N, generator=gen).to(device=device, dtype=dtype)
            candidates = []
            fused_label = "snn_cuda fused [CuPy kernels]" if cupy == "only" else "snn_cuda fused"
            for m in modes:
                candidates.append((fused_label + (f" (save {m})" if m else ""), "fused", m))
            if cupy == "beside":
                for m in modes:
                    candidates.append(
                        ("snn_cuda fused [CuPy kernels]" + (f" (save {m})" if m else ""), "fused-cupy", m)
                    )
            candidates.append(("snn_cuda reference (torch loop)", "torch", None))
            if dtype == torch.float32:
                for be, fn in sj_runners.items():
                    candidates.append((f"SpikingJelly {sj_version} LIFNode [{be}]", ("sj", fn), None))
            sj_best = None
            for label, backend, mode in candidates:
                row = {"impl": label, "shape": [T, N], "dtype": DTYPE_NAMES[dtype]}
                try:
                    if isinstance(backend, tuple):
                        fn = backend[1]
                    else:
                        fn = _lif_runner("fused" if backend == "fused-cupy" else backend, device)
                    with (
                        _SaveMode(device, mode),
                        warnings.catch_warnings(),
                        _cupy_kernels(backend == "fused-cupy", device),
                    ):
                        warnings.simplefilter("ignore")
                        r = _time_fn(lambda: fn(x, gout), device, budget)
                    row.update(r)
                    row["neuron_steps_per_s"] = T * N / r["median_s"]
                    row["GB_s_at_save_h_bytes"] = T * N * _bytes_per_step(dtype, "h") / r["median_s"] / 1e9
                    if mode is not None or backend in ("fused", "fused-cupy"):
                        eff_mode = mode or "h"
                        row["bytes_per_step_min"] = _bytes_per_step(dtype, eff_mode)
                        row["GB_s_at_own_bytes"] = T * N * row["bytes_per_step_min"] / r["median_s"] / 1e9
                except Exception as e:
                    row["error"] = f"{type(e).__name__}: {e}"
                    if device == "cuda":
                        torch.cuda.empty_cache()
                if isinstance(backend, tuple):
                    if "error" not in row and (sj_best is None or row["median_s"] < sj_best["median_s"]):
                        sj_best = row
                    row["sj_backend"] = True
                res["rows"].append(row)
                log(
                    f"  {label:<44} {DTYPE_NAMES[dtype]:>4} [{T}, {N}]: "
                    + (
                        row["error"]
                        if "error" in row
                        else f"{row['median_s'] * 1e3:9.2f} ms  {row['neuron_steps_per_s'] / 1e9:7.3f} G neuron-steps/s  "
                        f"{row['GB_s_at_save_h_bytes']:8.1f} GB/s @{_bytes_per_step(dtype, 'h')} B"
                    )
                )
            if sj_best is not None:
                sj_best["fastest_spikingjelly"] = True
            # speedups vs the reference row of this shape/dtype
            ref = [
                r
                for r in res["rows"]
                if r["shape"] == [T, N]
                and r["dtype"] == DTYPE_NAMES[dtype]
                and r["impl"].startswith("snn_cuda reference")
                and "median_s" in r
            ]
            for r in res["rows"]:
                if r["shape"] == [T, N] and r["dtype"] == DTYPE_NAMES[dtype] and "median_s" in r and ref:
                    r["speedup_vs_reference"] = ref[0]["median_s"] / r["median_s"]
            del x, gout
            if device == "cuda":
                torch.cuda.empty_cache()
    if cupy == "beside":
        res["notes"].append(
            "[CuPy kernels]: the same kernels compiled at run time by NVRTC through CuPy (the path "
            "of installs without nvcc); the first call's compile is excluded (warm-up)"
        )
    elif cupy == "only":
        res["notes"].append("this install has no compiled CUDA kernels: the fused rows ran the CuPy-compiled kernels")
    if sj_runners and len(sj_runners) > 1:
        res["notes"].append("SpikingJelly: the fastest of its backends per shape is marked *")
    elif sj_runners:
        res["notes"].append("SpikingJelly: LIFNode in this version has no backend argument; its default path was timed")
    return res


# ------------------------------------------------------------------------------------------
# environment
# ------------------------------------------------------------------------------------------
def _nvidia_smi() -> dict:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {}
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.memory", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        line = out.strip().splitlines()[0]
        name, drv, mem, clk = [s.strip() for s in line.split(",")][:4]
        return {"name": name, "driver_version": drv, "memory_total": mem, "max_memory_clock": clk}
    except Exception:
        return {}


def environment(device: str) -> dict:
    env = {
        "time_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "snn_cuda": snn_cuda.__version__,
        "snn_cuda_path": str(Path(snn_cuda.__file__).resolve().parent),
        "build_info": snn_cuda.build_info(),
        "source_checkout": source_root() is not None,
        "gpu_found": device == "cuda",
        "cuda_available": torch.cuda.is_available(),
        "compute_sanitizer": shutil.which("compute-sanitizer"),
    }
    for mod in ("spikingjelly", "snntorch", "cupy", "triton"):
        try:
            from importlib.metadata import version

            env[f"{mod}_version"] = version(mod if mod != "cupy" else "cupy") if importlib.util.find_spec(mod) else None
        except Exception:
            env[f"{mod}_version"] = None
    cp = env["build_info"].get("cupy") or {}
    env["cupy_version"] = cp.get("cupy") or env.get("cupy_version")
    env["cuda_backend"] = env["build_info"].get("cuda_backend")
    env["cupy_path"] = ("available" if cp.get("available") else f"unavailable: {cp.get('reason')}") + "".join(
        f", {k} {cp[k]}" for k in ("cuda_runtime", "cuda_driver", "nvrtc") if cp.get(k)
    )
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        smi = _nvidia_smi()
        drv = None
        fn = getattr(torch.cuda, "driver_version", None)
        if callable(fn):
            try:
                drv = str(fn())
            except Exception:
                drv = None
        env.update(
            {
                "gpu": p.name,
                "gpu_count": torch.cuda.device_count(),
                "compute_capability": f"{p.major}.{p.minor}",
                "sm_count": p.multi_processor_count,
                "gpu_memory_GiB": round(p.total_memory / 2**30, 1),
                "driver_version": drv or smi.get("driver_version"),
                "cuda_runtime": torch.version.cuda,
                "nvidia_smi": smi or None,
            }
        )
        try:
            v = torch._C._cuda_getDriverVersion()  # CUDA version the driver supports, e.g. 13000
            env["driver_cuda_version"] = f"{v // 1000}.{(v % 1000) // 10}"
        except Exception:
            pass
    return env


# ------------------------------------------------------------------------------------------
# GPU readiness (issue 20): the kernel image, a training step without host synchronisation,
# the Poisson encoder under CUDA-graph capture
# ------------------------------------------------------------------------------------------
def kernel_image_check(device: str = "cuda") -> dict:
    """Whether the compiled kernels have an image for this GPU (the probe the layers run at their
    first call), and the occupancy (blocks of 256 per SM) the launchers size their grid with."""
    from . import _ext

    t0 = time.perf_counter()
    rec = {"name": "compiled kernels: image for this GPU, occupancy", "device": device, "passed": True}
    if not _ext.cuda_available():
        rec.update(skipped=True, detail="no compiled CUDA kernels in this build")
        return rec
    idx = torch.cuda.current_device()
    reason = _ext.kernel_image_reason(torch.zeros(1, device=device))
    rec["probe_status"] = _ext._image_status.get(idx)
    if reason:
        rec.update(passed=False, error=reason)
    elif hasattr(torch.ops.snn_cuda, "cuda_occupancy"):
        occ = {}
        for dt in DTYPES:
            fwd, bwd, sms = torch.ops.snn_cuda.cuda_occupancy(idx, dt)
            occ[DTYPE_NAMES[dt]] = {"fwd_blocks_per_sm": fwd, "bwd_blocks_per_sm": bwd, "sm_count": sms}
        rec["occupancy"] = occ
        rec["summary"] = "image present; blocks/SM fwd/bwd " + ", ".join(
            f"{k} {v['fwd_blocks_per_sm']}/{v['bwd_blocks_per_sm']}" for k, v in occ.items()
        )
        bad = [k for k, v in occ.items() if v["fwd_blocks_per_sm"] < 1 or v["bwd_blocks_per_sm"] < 1]
        if bad:
            rec.update(passed=False, error=f"the occupancy query failed or gave 0 blocks/SM for {bad}: {occ}")
    rec["seconds"] = time.perf_counter() - t0
    return rec


# Ops whose result the host must read (a scalar, or an output whose shape depends on the data):
# on CUDA each one is a blocking device-to-host copy, and none can be captured in a CUDA graph or
# traced by torch.compile(fullgraph=True).
_HOST_READ_OPS = (
    "_local_scalar_dense",
    "item",
    "is_nonzero",
    "nonzero",
    "masked_select",
    "equal",
    "allclose",
    "unique",
    "_unique2",
    "unique_consecutive",
)


def _host_read_detector():
    """A dispatch mode that raises at the first op reading tensor data back to the host, naming
    the op and the innermost snn_cuda frame that asked for it: what torch.cuda.set_sync_debug_mode
    reports on a GPU, visible on any device."""
    import traceback

    from torch.utils._python_dispatch import TorchDispatchMode

    here = str(Path(__file__).resolve())

    class HostReadDetector(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in _HOST_READ_OPS:
                frames = [
                    f
                    for f in traceback.extract_stack()[:-1]
                    if "snn_cuda" in f.filename and str(Path(f.filename).resolve()) != here
                ]
                where = (
                    f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} ({frames[-1].name})" if frames else ""
                )
                raise RuntimeError(f"host read of tensor data: aten.{name}{where}")
            return func(*args, **(kwargs or {}))

    return HostReadDetector()


class _NoHostSync:
    """Within: CUDA, torch.cuda.set_sync_debug_mode("error") (every synchronising CUDA call raises);
    any other device, the host-read detector."""

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device == "cuda":
            self.prev = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")
        else:
            self.mode = _host_read_detector()
            self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.set_sync_debug_mode(self.prev)
        else:
            self.mode.__exit__(*exc)
        return False


def readiness_nets(device: str, T: int = 8, features: int = 64, hidden: int = 48, classes: int = 10) -> dict:
    """Small versions of the two training nets of issue 20, as (model, loss, batch maker):
    lif_fc = PoissonEncoder -> SpikeLinear -> LIF (rate output, MSE to the one-hot target);
    tutorial5 = Linear -> NeuronLinear(Leaky, SpikeLinear) -> Leaky (sum over t of CE(mem_t, y))."""
    from torch import nn
    from torch.nn import functional as F

    from .functional import reset_net

    class LifFc(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = snn_cuda.PoissonEncoder(T)
            self.fc = snn_cuda.SeqToANN(snn_cuda.SpikeLinear(features, classes, bias=False))
            self.lif = snn_cuda.LIF(tau=2.0, surrogate=sg.ATan())

        def forward(self, x):
            reset_net(self)
            return self.lif(self.fc(self.encoder(x))).mean(0)

    class Tutorial5(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(features, hidden)
            self.hidden = snn_cuda.NeuronLinear(
                snn_cuda.Leaky(beta=0.95, return_mem=False), snn_cuda.SpikeLinear(hidden, classes)
            )
            self.lif2 = snn_cuda.Leaky(beta=0.95)

        def forward(self, x):
            reset_net(self)
            _, mem = self.lif2(self.hidden(self.fc1(x), T=T))
            return mem

    g = torch.Generator().manual_seed(0)

    def batch(B=16):
        x = torch.rand(B, features, generator=g).to(device)
        y = torch.randint(0, classes, (B,), generator=g).to(device)
        return x, y

    def lif_fc_loss(out, y):
        return F.mse_loss(out, F.one_hot(y, classes).to(out.dtype))

    def t5_loss(mem, y):
        return F.cross_entropy(mem.flatten(0, 1), y.repeat(mem.shape[0])) * mem.shape[0]

    return {
        "lif_fc": (LifFc().to(device), lif_fc_loss, batch),
        "tutorial5": (Tutorial5().to(device), t5_loss, batch),
    }


def _train_step(model, loss_fn, x, y, opt):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def sync_free_step_check(device: str, nets: Optional[dict] = None, advisory: Optional[bool] = None) -> dict:
    """One training step of each net inside _NoHostSync, after one step outside it (first-call work:
    the kernel-image probe, cuBLAS handles, CuPy compilation). On CUDA this is the check of
    issue 20 and fails the run; elsewhere the detector's findings are advisory (a host read costs
    no device synchronisation on the CPU, though it still breaks graph capture and compile)."""
    t0 = time.perf_counter()
    nets = readiness_nets(device) if nets is None else nets
    advisory = device != "cuda" if advisory is None else advisory
    what = 'torch.cuda.set_sync_debug_mode("error")' if device == "cuda" else "a host-read detector"
    rec = {"name": f"training step without host sync ({device}, {what})", "device": device, "passed": True}
    if advisory:
        rec["advisory"] = True
    findings = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fallback warnings are reported elsewhere
        for name, (model, loss_fn, batch) in nets.items():
            x, y = batch()
            opt = torch.optim.SGD(model.parameters(), lr=0.05)
            try:
                _train_step(model, loss_fn, x, y, opt)
                if device == "cuda":
                    torch.cuda.synchronize()
                with _NoHostSync(device):
                    loss = _train_step(model, loss_fn, x, y, opt)
                if device == "cuda":
                    torch.cuda.synchronize()
                if not bool(torch.isfinite(loss)):
                    findings[name] = f"non-finite loss {float(loss)}"
            except Exception as e:
                findings[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    rec["nets"] = {n: findings.get(n, "ok") for n in nets}
    if findings:
        rec["passed"] = False
        rec["error"] = "; ".join(f"{n}: {m}" for n, m in findings.items())
    else:
        rec["summary"] = f"{len(nets)}/{len(nets)} nets ({', '.join(nets)})"
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _capture_encoder_twice(device: str = "cuda", T: int = 8, shape=(16, 512), rate: float = 0.3):
    """(x, spikes of replay 1, spikes of replay 2) of the Poisson encoder captured in a CUDA graph."""
    x = torch.full(shape, rate, device=device)
    enc = snn_cuda.PoissonEncoder(T)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # first-call work (probe, allocations) outside the capture
        for _ in range(2):
            enc(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = enc(x)
    graph.replay()
    a = out.clone()
    graph.replay()
    b = out.clone()
    torch.cuda.synchronize()
    return x, a, b


def graph_encoder_check(capture=None, device: str = "cuda") -> dict:
    """The Poisson encoder captured in a CUDA graph and replayed twice must give different spikes,
    each replay at the input's rate: a seed read into Python at capture would replay the same
    "random" spikes forever, silently. `capture` returns (x, replay 1, replay 2); tests pass their
    own."""
    t0 = time.perf_counter()
    rec = {"name": f"Poisson encoder in a CUDA graph, two replays ({device})", "device": device, "passed": True}
    try:
        x, a, b = (capture or (lambda: _capture_encoder_twice(device)))()
    except Exception as e:
        rec.update(
            passed=False,
            error=f"the Poisson encoder is not graph-safe: capturing it failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})",
        )
        rec["seconds"] = time.perf_counter() - t0
        return rec
    a, b = a.double(), b.double()
    T = a.shape[0]
    p = float(x.double().mean())
    n = a.numel()
    rates = [float(a.mean()), float(b.mean())]
    tol = 6 * (p * (1 - p) / max(n, 1)) ** 0.5 + 1e-9
    rec["rates"] = rates
    rec["input_rate"] = p
    rec["differing_fraction"] = float((a != b).double().mean())
    if a.shape != (T, *x.shape) or b.shape != a.shape:
        rec.update(passed=False, error=f"spikes of shape {tuple(a.shape)} for input {tuple(x.shape)}")
    elif torch.equal(a, b):
        rec.update(
            passed=False,
            error="the Poisson encoder is not graph-safe: two replays of the captured graph gave identical "
            "spikes (its seed was fixed when the graph was captured)",
        )
    elif any(abs(r - p) > tol for r in rates):
        rec.update(passed=False, error=f"spike rates {rates} differ from the input's {p} by more than {tol:.2g}")
    else:
        rec["summary"] = (
            f"replays differ in {rec['differing_fraction']:.1%} of spikes; "
            f"rates {rates[0]:.4f}, {rates[1]:.4f} (input {p:.4f})"
        )
    rec["seconds"] = time.perf_counter() - t0
    return rec


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "0" if v == 0 else (f"{v:.{nd}g}" if abs(v) < 1e-2 or abs(v) >= 1e5 else f"{v:.{nd}f}")
    return str(v)


def render_markdown(rep: dict) -> str:
    env = rep["environment"]
    L = ["# snn_cuda check report", "", f"**Result: {'PASS' if rep['passed'] else 'FAIL'}** — {rep['summary']}", ""]
    if not env["gpu_found"]:
        L += [f"> {rep['gpu_note']}", ""]
    L += ["## Environment", "", "| | |", "|---|---|"]
    keys = [
        "gpu",
        "compute_capability",
        "sm_count",
        "gpu_memory_GiB",
        "driver_version",
        "driver_cuda_version",
        "cuda_runtime",
        "torch",
        "torch_cuda",
        "snn_cuda",
        "python",
        "platform",
        "cpu_count",
        "spikingjelly_version",
        "snntorch_version",
        "cupy_version",
        "cuda_backend",
        "cupy_path",
        "triton_version",
        "compute_sanitizer",
        "source_checkout",
        "time_utc",
    ]
    for k in keys:
        if k in env:
            L.append(f"| {k} | {_fmt(env[k])} |")
    bi = env.get("build_info", {})
    L.append(f"| build_info | `{json.dumps(bi, default=str)}` |")
    L += [
        "",
        "## Correctness",
        "",
        "| check | result | cases | max abs err (spikes / mem / grad_x / grad_v0) | time |",
        "|---|---|---|---|---|",
    ]
    for c in rep["checks"]:
        res = "skipped" if c.get("skipped") else ("PASS" if c["passed"] else "FAIL")
        if c.get("advisory") and not c["passed"]:
            res += " (advisory)"
        cases = (
            f"{c['cases'] - c['failed']}/{c['cases']}" if "cases" in c else (c.get("summary") or c.get("subset") or "")
        )
        me = c.get("max_err") or {}
        errs = (
            " / ".join(_fmt(me.get(k)) for k in ("spikes", "mem_seq", "grad_x", "grad_v0"))
            if me
            else (c.get("detail") or c.get("error") or "")
        )
        secs = c.get("seconds")
        L.append(f"| {c['name']} | {res} | {cases} | {errs} | " + (f"{secs:.1f} s |" if secs is not None else "- |"))
    fails = []
    for c in rep["checks"]:
        for r in c.get("records", []):
            if not r["passed"]:
                fails.append(f"- `{c['device']}` **{r['name']}**: {_failure_text(r)}")
        if not c["passed"] and not c.get("records"):
            fails.append(f"- **{c['name']}**: {c.get('error') or c.get('summary') or c.get('detail') or 'failed'}")
            if c.get("output_tail"):
                fails += ["", "```", c["output_tail"][-3000:], "```"]
    if fails:
        L += ["", "### Failures", ""] + fails
    b = rep.get("benchmark")
    if b:
        L += ["", f"## Benchmark ({b['device']}, LIF tau=2 ATan, forward + backward)", ""]
        if b.get("copy"):
            cp = b["copy"]
            L.append(
                f"Copy bandwidth probe (`dst.copy_(src)`, read+write bytes): **{cp['GB_s']:.1f} GB/s** "
                f"(best {cp['best_GB_s']:.1f}, {cp['bytes'] / 2**20:.0f} MiB moved)."
            )
            L.append("")
        L += [
            "Effective GB/s = bytes a save-h fused pass must move (24 B per fp32 neuron-step, 16 B for bf16) / "
            "time, for every row, so rows compare; `own B` is the minimum for that row's save mode.",
            "",
            "| impl | dtype | [T, N] | ms | G neuron-steps/s | eff. GB/s @save-h B | % of copy | own B | x vs reference |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        cp_bw = (b.get("copy") or {}).get("GB_s")
        for r in b["rows"]:
            name = r["impl"] + (" *" if r.get("fastest_spikingjelly") else "")
            if "error" in r:
                L.append(f"| {name} | {r['dtype']} | {r['shape']} | error: {r['error']} | | | | | |")
                continue
            pct = f"{100 * r['GB_s_at_save_h_bytes'] / cp_bw:.0f}%" if cp_bw else "-"
            L.append(
                f"| {name} | {r['dtype']} | {r['shape']} | {r['median_s'] * 1e3:.2f} | "
                f"{r['neuron_steps_per_s'] / 1e9:.3f} | {r['GB_s_at_save_h_bytes']:.1f} | {pct} | "
                f"{r.get('bytes_per_step_min', '-')} | {_fmt(r.get('speedup_vs_reference'), 2)} |"
            )
        if b.get("model_rows"):
            L += [
                "",
                f"Declared models ({b['device']}, fp32, forward + backward of the spikes, each model's first "
                "configuration of the correctness matrix):",
                "",
                "| impl | [T, N] | ms | G neuron-steps/s | x vs reference |",
                "|---|---|---|---|---|",
            ]
            for r in b["model_rows"]:
                if "error" in r:
                    L.append(f"| {r['impl']} | {r['shape']} | error: {r['error']} | | |")
                    continue
                L.append(
                    f"| {r['impl']} | {r['shape']} | {r['median_s'] * 1e3:.2f} | "
                    f"{r['neuron_steps_per_s'] / 1e9:.3f} | {_fmt(r.get('speedup_vs_reference'), 2)} |"
                )
        for n in b.get("notes", []):
            L += ["", f"_{n}_"]
    L += ["", f"Command: `{rep['command']}` ({rep['seconds']:.0f} s)", ""]
    return "\n".join(L)


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m snn_cuda.check",
        description="Check snn_cuda's fused kernels against the reference on this "
        "machine, benchmark them, and write report.md / report.json.",
    )
    p.add_argument("--out", default="snn_cuda_check_report", help="report directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smaller matrix and benchmark")
    p.add_argument(
        "--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: CUDA when a GPU is visible (default)"
    )
    p.add_argument("--no-bench", action="store_true", help="skip the benchmark")
    p.add_argument("--no-emulation", action="store_true", help="skip the host emulation of the CUDA kernels")
    p.add_argument("--no-sanitizer", action="store_true", help="skip compute-sanitizer")
    p.add_argument("--no-cupy", action="store_true", help="skip the CuPy path (NVRTC-compiled kernels)")
    p.add_argument("--bench-budget", type=float, default=None, help="seconds per benchmark row (default 2, quick 0.5)")
    p.add_argument("--sanitizer-subset", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--selftest-fail", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sanitizer_subset:
        return run_sanitizer_subset()
    t_start = time.perf_counter()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    build = snn_cuda.build_info()
    if args.device == "cpu":
        gpu = False
    else:
        gpu = torch.cuda.is_available()
        if args.device == "cuda" and not gpu:
            log("snn_cuda.check: --device cuda but torch.cuda.is_available() is False")
            return 2
    device = "cuda" if gpu else "cpu"
    env = environment(device)
    gpu_note = ""
    if gpu:
        log(
            f"snn_cuda.check: GPU {env['gpu']} (sm_{env['compute_capability'].replace('.', '')}, "
            f"{env['sm_count']} SMs), driver {env['driver_version']}, CUDA {env['cuda_runtime']}, torch {torch.__version__}"
        )
        if not build.get("cuda"):
            log(f"  WARNING: the CUDA kernels are not available: {build.get('cuda_reason') or build.get('load_error')}")
    else:
        gpu_note = (
            "No GPU was found (torch.cuda.is_available() is False): the fused CPU kernels were checked "
            "against the reference."
        )
        if args.device == "cpu" and torch.cuda.is_available():
            gpu_note = "--device cpu: the GPU was not used; the fused CPU kernels were checked against the reference."
        log(f"snn_cuda.check: {gpu_note}")
    checks = []
    cupy = build.get("cupy") or {}
    cupy_mode = None
    if gpu:
        log("Probing the compiled kernels on this GPU ...")
        checks.append(kernel_image_check("cuda"))
        log(f"  {checks[-1].get('summary') or checks[-1].get('error') or checks[-1].get('detail')}")
        log("Checking the fused CUDA ops against the reference ...")
        c = run_matrix("cuda", args.quick, env.get("sm_count", 0), inject_fault=args.selftest_fail, log=log)
        if not build.get("cuda"):
            if build.get("cuda_backend") == "cupy":
                c["name"] = "fused vs reference (cuda, CuPy kernels: no compiled CUDA kernels)"
                cupy_mode = "only"
            else:
                c["passed"] = False
                c["error"] = f"CUDA kernels not built/loaded: {build.get('cuda_reason') or build.get('load_error')}"
        checks.append(c)
        log("Checking the declared models on CUDA against their reference loops ...")
        checks.append(run_model_matrix("cuda", args.quick, env.get("sm_count", 0), log=log))
        if build.get("cuda") and cupy.get("available") and not args.no_cupy:
            cupy_mode = "beside"
            log("Checking the CuPy path (kernels compiled by NVRTC through CuPy) ...")
            checks.append(run_cupy_vs_reference(args.quick, env.get("sm_count", 0), log=log))
            checks.append(run_cupy_vs_compiled(args.quick, env.get("sm_count", 0), log=log))
            with _cupy_kernels(True, "cuda"):
                m = run_model_matrix("cuda", args.quick, env.get("sm_count", 0), log=log)
            m["name"] = "declared models, CuPy path vs reference (cuda)"
            checks.append(m)
        elif build.get("cuda"):
            why = "--no-cupy" if args.no_cupy else cupy.get("reason")
            checks.append(
                {
                    "name": "CuPy path",
                    "device": "cuda",
                    "skipped": True,
                    "passed": True,
                    "detail": f"not checked: {why}",
                }
            )
            log(f"  CuPy path not checked: {why}")
    log("Checking the fused CPU ops against the reference ...")
    checks.append(run_matrix("cpu", args.quick, inject_fault=args.selftest_fail and not gpu, log=log))
    log("Checking the declared models on the CPU against their reference loops ...")
    checks.append(run_model_matrix("cpu", args.quick, log=log))
    for dev in ("cuda", "cpu") if gpu else ("cpu",):
        log(f"One training step per net without host synchronisation ({dev}) ...")
        checks.append(sync_free_step_check(dev))
        log(f"  {checks[-1].get('summary') or checks[-1].get('error')}")
    if gpu:
        log("The Poisson encoder captured in a CUDA graph ...")
        checks.append(graph_encoder_check(device="cuda"))
        log(f"  {checks[-1].get('summary') or checks[-1].get('error')}")
    if gpu and not args.no_sanitizer:
        log("compute-sanitizer ...")
        for r in run_sanitizers(args.quick, log=log):
            r.setdefault("device", "cuda")
            checks.append(r)
    if not gpu and not args.no_emulation:
        log("Host emulation of the CUDA kernels ...")
        r = run_emulation(args.quick, log=log)
        r["device"] = "host"
        log(f"  {r.get('summary') or r.get('detail') or r.get('error')}")
        checks.append(r)
    cuda_exercised = gpu or any(c.get("name", "").startswith("CUDA kernels") and not c.get("skipped") for c in checks)
    if not gpu:
        if cuda_exercised:
            gpu_note += (
                " The CUDA kernels' __global__ bodies ran on the CPU in the host emulation (g++ with "
                "ASan/UBSan) only, not on a GPU."
            )
        else:
            gpu_note += " The CUDA kernels were NOT exercised."
    bench = None
    if not args.no_bench:
        log(f"Benchmark ({device}) ...")
        budget = args.bench_budget if args.bench_budget is not None else (0.5 if args.quick else 2.0)
        try:
            bench = run_benchmarks(device, args.quick, budget, log=log, cupy=cupy_mode if gpu else None)
        except Exception as e:
            bench = {"device": device, "rows": [], "notes": [f"benchmark failed: {type(e).__name__}: {e}"]}
        try:
            bench["model_rows"] = run_model_benchmarks(device, args.quick, budget, log=log)
        except Exception as e:
            bench.setdefault("notes", []).append(f"declared-model benchmark failed: {type(e).__name__}: {e}")
    passed = all(c["passed"] or c.get("advisory") for c in checks)
    n_fail = sum(1 for c in checks if not c["passed"] and not c.get("advisory"))
    summary = (
        f"{len(checks) - n_fail}/{len(checks)} checks passed on "
        + (f"{env['gpu']}" if gpu else "CPU (no GPU found)")
        + ("" if cuda_exercised else "; CUDA kernels not exercised")
    )
    rep = {
        "passed": passed,
        "summary": summary,
        "gpu_found": gpu,
        "gpu_note": gpu_note,
        "cuda_kernels_exercised": cuda_exercised,
        "quick": args.quick,
        "command": " ".join(
            [Path(sys.executable).name, "-m", "snn_cuda.check", *(argv if argv is not None else sys.argv[1:])]
        ),
        "environment": env,
        "checks": checks,
        "benchmark": bench,
        "seconds": time.perf_counter() - t_start,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from ._paths import scrub_paths  # reports are shared: no home, venv or checkout paths

    rep = scrub_paths(json.loads(json.dumps(rep, default=str)))
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
    (out / "report.md").write_text(render_markdown(rep))
    log(f"{'PASS' if passed else 'FAIL'}: {summary}")
    log(f"Report: {out / 'report.md'} and {out / 'report.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
