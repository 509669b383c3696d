"""Shared test helpers: device and dtype lists, tolerances, and fused/reference layer pairs.

CPU-only CI runs every test on "cpu"; on a machine with a GPU and a CUDA build of the
extension the same tests also run on "cuda" (pytorch_scatter-style ``testing.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import pytest
import torch

import snn_cuda
from snn_cuda import surrogate as sg

# ------------------------------------------------------------------------------------------
# devices and dtypes
# ------------------------------------------------------------------------------------------
# CUDA kernels from the build or from the CuPy path (build_info()["cuda_backend"]).
CUDA_OK = bool(torch.cuda.is_available() and snn_cuda.build_info()["cuda_backend"] is not None)

DEVICES: List[torch.device] = [torch.device("cpu")] + ([torch.device("cuda")] if CUDA_OK else [])
DEVICE_IDS = [d.type for d in DEVICES]

#: Every device the fused kernels could target, CUDA included: a CUDA case that cannot run here
#: is reported as skipped rather than silently absent.
ALL_DEVICES = [
    pytest.param(torch.device("cpu"), id="cpu"),
    pytest.param(
        torch.device("cuda"),
        id="cuda",
        marks=pytest.mark.skipif(not CUDA_OK, reason="needs a GPU and a CUDA build of snn_cuda"),
    ),
]

requires_cuda = pytest.mark.skipif(not CUDA_OK, reason="needs a GPU and a CUDA build of snn_cuda")

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
FLOAT_DTYPES = DTYPES
DTYPE_IDS = {torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16"}


def dtype_id(dt: torch.dtype) -> str:
    return DTYPE_IDS[dt]


def state_dtype(dt: torch.dtype) -> torch.dtype:
    return torch.float64 if dt == torch.float64 else torch.float32


# ------------------------------------------------------------------------------------------
# tolerances
# ------------------------------------------------------------------------------------------
#: Forward membranes: the fused forward evaluates the reference's formulas in the same order,
#: in the state dtype (fp32 for 16-bit storage), so membranes are bit-equal.
FWD_TOL: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (0.0, 0.0),
    torch.float32: (0.0, 0.0),
    torch.float16: (0.0, 0.0),
    torch.bfloat16: (0.0, 0.0),
}

#: Gradients (rtol, atol): the fused backward sums the same terms as autograd but in its own
#: association order, so it differs from the reference in the last bits of the state dtype;
#: 16-bit input gradients are additionally rounded to the storage dtype (1 ulp apart at most).
GRAD_TOL: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-12, 1e-12),
    torch.float32: (2e-5, 2e-5),
    torch.float16: (2e-3, 1e-4),
    torch.bfloat16: (1.6e-2, 1e-3),
}


def grad_tol(dtype: torch.dtype) -> Dict[str, float]:
    rtol, atol = GRAD_TOL[dtype]
    return {"rtol": rtol, "atol": atol}


def assert_equal(a: torch.Tensor, b: torch.Tensor, msg: str = "") -> None:
    """Bitwise equality (NaNs equal), with dtype and shape checked."""
    assert a.dtype == b.dtype, f"{msg}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{msg}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{msg}: {m}")


def assert_grad_close(
    a: Optional[torch.Tensor],
    b: Optional[torch.Tensor],
    dtype: torch.dtype,
    msg: str = "",
    scale: Optional[float] = None,
) -> None:
    """Gradient comparison for storage dtype `dtype`; the absolute tolerance scales with the
    magnitude of the reference gradient (long chains of surrogate factors can grow)."""
    assert (a is None) == (b is None), f"{msg}: one gradient is None"
    if a is None:
        return
    assert a.dtype == b.dtype, f"{msg}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{msg}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    rtol, atol = GRAD_TOL[dtype]
    if scale is None:
        scale = max(1.0, float(b.detach().abs().max().double())) if b.numel() else 1.0
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale, msg=lambda m: f"{msg}: {m}")


# ------------------------------------------------------------------------------------------
# neuron configurations
# ------------------------------------------------------------------------------------------
#: Every kernel surrogate (snn_cuda.surrogate.SURROGATES follows the generated kernel list), at
#: its default parameter.
SURROGATES = [cls() for cls in sg.SURROGATES.values()]
#: Non-default parameters, so the run-time surrogate parameter is exercised too (a surrogate
#: added later gets 1.3 times its default).
_NONDEFAULT = {
    "sigmoid": 2.5,
    "atan": 3.0,
    "fast_sigmoid": 7.0,
    "piecewise_quadratic": 0.7,
    "piecewise_exp": 1.3,
    "soft_sign": 1.5,
    "erf": 1.1,
    "rect": 0.6,
}
SURROGATES_NONDEFAULT = [
    cls(_NONDEFAULT.get(name, 1.3 * cls().param)) if cls._param_name else cls() for name, cls in sg.SURROGATES.items()
]
SURROGATE_IDS = [type(s).__name__ for s in SURROGATES]


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """One neuron model with its parameters (everything but the surrogate and backend)."""

    kind: str  # "lif" | "if" | "leaky"
    params: Tuple[Tuple[str, object], ...]
    name: str

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    @property
    def leaky(self) -> bool:
        return self.kind == "leaky"

    def __str__(self) -> str:
        return self.name


def _cfg(kind: str, name: str, **params) -> NeuronConfig:
    return NeuronConfig(kind, tuple(sorted(params.items())), name)


def neuron_configs() -> List[NeuronConfig]:
    """Every model x reset mode x decay_input x detach_reset, plus IF with a floor. Scalars
    are deliberately not exactly representable in fp32 (tau=1.7, thresholds 0.9/1.1), so the
    'scalars rounded to the state dtype first' rule is exercised."""
    out = []
    for v_reset, rname in ((-0.1, "hard"), (None, "soft")):
        for decay_input in (True, False):
            for detach in (False, True):
                out.append(
                    _cfg(
                        "lif",
                        f"lif-{rname}-{'decay' if decay_input else 'nodecay'}{'-detach' if detach else ''}",
                        tau=1.7,
                        decay_input=decay_input,
                        v_threshold=0.9,
                        v_reset=v_reset,
                        detach_reset=detach,
                    )
                )
        for detach in (False, True):
            out.append(
                _cfg(
                    "if",
                    f"if-{rname}{'-detach' if detach else ''}",
                    v_threshold=1.1,
                    v_reset=v_reset,
                    detach_reset=detach,
                )
            )
        out.append(_cfg("if", f"if-{rname}-floor", v_threshold=1.1, v_reset=v_reset, v_floor=-0.3))
    for reset in ("subtract", "zero", "none"):
        out.append(_cfg("leaky", f"leaky-{reset}", beta=0.85, threshold=0.9, reset_mechanism=reset))
    return out


CONFIGS = neuron_configs()
CONFIG_IDS = [c.name for c in CONFIGS]


def make_layer(
    cfg: NeuronConfig,
    backend: str,
    surrogate: Optional[sg.SurrogateFunction] = None,
    step_mode: str = "m",
    store_v_seq: bool = True,
    **overrides,
) -> torch.nn.Module:
    kw = cfg.kwargs
    kw.update(overrides)
    if surrogate is not None:
        kw["surrogate"] = surrogate
    if cfg.kind == "lif":
        return snn_cuda.LIF(step_mode=step_mode, backend=backend, store_v_seq=store_v_seq, **kw)
    if cfg.kind == "if":
        return snn_cuda.IF(step_mode=step_mode, backend=backend, store_v_seq=store_v_seq, **kw)
    return snn_cuda.Leaky(step_mode=step_mode, backend=backend, **kw)


def make_pair(cfg: NeuronConfig, surrogate=None, **kw):
    """(fused layer, reference layer) with identical parameters."""
    return make_layer(cfg, "fused", surrogate, **kw), make_layer(cfg, "torch", surrogate, **kw)


def random_input(shape, dtype, device="cpu", *, seed=0, scale=1.0, bias=0.35) -> torch.Tensor:
    """Inputs that make neurons fire some of the time (and sometimes cross an IF floor)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale + bias
    return x.to(device=device, dtype=dtype)


def random_state(shape, dtype, device="cpu", *, seed=1, scale=0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale).to(
        device=device, dtype=state_dtype(dtype)
    )


def set_state(layer, v0: Optional[torch.Tensor]) -> None:
    snn_cuda.functional.reset_net(layer)
    if v0 is None:
        return
    if isinstance(layer, snn_cuda.Leaky):
        layer.mem = v0
    else:
        layer.v = v0


def get_state(layer) -> torch.Tensor:
    return layer.mem if isinstance(layer, snn_cuda.Leaky) else layer.v


def forward(layer, x: torch.Tensor, T: Optional[int] = None):
    """Runs a multi-step layer; returns (spikes, membrane sequence or None, final membrane)."""
    if isinstance(layer, snn_cuda.Leaky):
        spk, mem = layer(x) if T is None else layer(x, T=T)
        return spk, mem, layer.mem
    spk = layer(x) if T is None else layer(x, T=T)
    return spk, layer.v_seq, layer.v


@dataclasses.dataclass
class RunResult:
    spikes: torch.Tensor
    mem_seq: Optional[torch.Tensor]
    mem_last: torch.Tensor
    grad_x: Optional[torch.Tensor] = None
    grad_v0: Optional[torch.Tensor] = None


def upstream_grads(spikes, mem_seq, mem_last, on=("spikes", "mem_seq", "mem_last"), seed=7):
    """Random (but deterministic) gradients for the outputs named in `on`."""
    g = torch.Generator().manual_seed(seed)

    def rnd(t):
        return torch.randn(tuple(t.shape), generator=g, dtype=torch.float64).to(device=t.device, dtype=t.dtype)

    outs, grads = [], []
    for name, t in (("spikes", spikes), ("mem_seq", mem_seq), ("mem_last", mem_last)):
        if name in on and t is not None:
            outs.append(t)
            grads.append(rnd(t))
    return outs, grads


def run(
    layer,
    x: torch.Tensor,
    v0: Optional[torch.Tensor] = None,
    *,
    T: Optional[int] = None,
    grad_on=("spikes", "mem_seq", "mem_last"),
    backward: bool = True,
    seed: int = 7,
) -> RunResult:
    """Runs `layer` on fresh leaf copies of x and v0 and (optionally) backpropagates random
    gradients placed on the outputs named in grad_on. Returns outputs and input gradients."""
    x = x.detach().clone().requires_grad_(backward)
    v0 = None if v0 is None else v0.detach().clone().requires_grad_(backward)
    set_state(layer, v0)
    spikes, mem_seq, mem_last = forward(layer, x, T)
    res = RunResult(spikes.detach(), None if mem_seq is None else mem_seq.detach(), mem_last.detach())
    if backward:
        outs, grads = upstream_grads(spikes, mem_seq, mem_last, grad_on, seed)
        inputs = [x] + ([v0] if v0 is not None else [])
        gs = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
        res.grad_x = gs[0]
        res.grad_v0 = gs[1] if v0 is not None else None
    set_state(layer, None)
    return res


def run_pair(
    cfg: NeuronConfig,
    x,
    v0=None,
    *,
    surrogate=None,
    T=None,
    grad_on=("spikes", "mem_seq", "mem_last"),
    backward=True,
    store_v_seq=True,
    **layer_kw,
) -> Tuple[RunResult, RunResult]:
    fused, ref = make_pair(cfg, surrogate, store_v_seq=store_v_seq, **layer_kw)
    return (
        run(fused, x, v0, T=T, grad_on=grad_on, backward=backward),
        run(ref, x, v0, T=T, grad_on=grad_on, backward=backward),
    )


def assert_results_match(fused: RunResult, ref: RunResult, dtype: torch.dtype, msg: str = "") -> None:
    assert_equal(fused.spikes, ref.spikes, f"{msg} spikes")
    rtol, atol = FWD_TOL[dtype]
    for name in ("mem_seq", "mem_last"):
        a, b = getattr(fused, name), getattr(ref, name)
        assert (a is None) == (b is None), f"{msg} {name}: one is None"
        if a is not None:
            assert a.dtype == b.dtype == state_dtype(dtype), f"{msg} {name}: dtype {a.dtype} / {b.dtype}"
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{msg} {name}: {m}")
    assert_grad_close(fused.grad_x, ref.grad_x, dtype, f"{msg} grad_x")
    assert_grad_close(fused.grad_v0, ref.grad_v0, dtype, f"{msg} grad_v0")


def assert_const_input_grad(gx: torch.Tensor, per_step: torch.Tensor, dtype: torch.dtype, msg: str = "") -> None:
    """grad_x of the constant-input form `layer(x, T=n)` against the per-step reference
    gradients `per_step` ([T, ...], from an explicitly materialised sequence), summed exactly.
    The kernel sums over T in the state dtype and rounds once; autograd's expand-backward sums
    16-bit per-step gradients in 16 bits, so for 16-bit storage allow T roundings of the
    largest per-step gradient."""
    assert gx.dtype == dtype and gx.shape == per_step.shape[1:], f"{msg}: {gx.dtype} {tuple(gx.shape)}"
    T = per_step.shape[0]
    per_step = per_step.double()
    big = max(float(per_step.abs().max()) if per_step.numel() else 0.0, 1.0)
    rtol, atol = GRAD_TOL[dtype]
    if dtype in (torch.float16, torch.bfloat16):
        atol = torch.finfo(dtype).eps
    torch.testing.assert_close(
        gx.double(), per_step.sum(0), rtol=rtol, atol=T * atol * big, msg=lambda m: f"{msg}: {m}"
    )


# ------------------------------------------------------------------------------------------
# raw op arguments, by name (csrc/ops.cpp schemas)
# ------------------------------------------------------------------------------------------
_OP_DEFAULTS = dict(
    x=None,
    v0=None,
    T=-1,
    model=0,
    reset=0,
    surrogate=0,
    surrogate_param=4.0,
    tau=2.0,
    v_threshold=1.0,
    v_reset=0.0,
    v_floor=0.0,
    beta=0.9,
    v_init=0.0,
    decay_input=True,
    has_floor=False,
    detach_reset=False,
    store_v_seq=False,
    grad_spikes=None,
    grad_v_seq=None,
    grad_v_last=None,
    saved=None,
    x_dtype=torch.float32,
    decay_param=None,
    threshold_param=None,
    grad_decay=False,
    grad_threshold=False,
    spikes_uint8=False,
    readout_grad=None,
    readout_weight=None,
    batch_first=False,
)


def op_arg_names(op) -> List[str]:
    return [a.name for a in op._schema.arguments]


def op_args(op, save: bool = True, **given) -> tuple:
    """Positional arguments for torch.ops.snn_cuda.neuron_forward / neuron_backward, built
    from the op's schema by argument name, so the tests follow schema changes. `save` is what
    the forward keeps for backward: True = the per-step values ("save_for_backward" / save
    mode 1), False = nothing."""
    names = op_arg_names(op)
    vals = dict(_OP_DEFAULTS)
    vals["save_for_backward"] = bool(save)
    vals["save_mode"] = 1 if save else 0
    unknown = set(given) - set(names)
    assert not unknown, f"{op} has no argument(s) {sorted(unknown)}: {names}"
    vals.update(given)
    return tuple(vals[n] for n in names)


def op_saves(op, args) -> bool:
    """Whether a recorded neuron_forward call asked for values saved for backward."""
    names = op_arg_names(op)
    key = "save_mode" if "save_mode" in names else "save_for_backward"
    return bool(args[names.index(key)])
