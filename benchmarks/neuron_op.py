#!/usr/bin/env python
"""Op-level benchmark of one spiking layer, forward + backward, all rows measured in ONE run.

Rows (whichever are installed; a missing one is skipped with a message, never a crash):

  fused        snn_cuda.LIF / IF / Leaky / Synaptic / CUBALIF with backend="fused" (the compiled kernels)
  reference    snn_cuda's pure-PyTorch reference (backend="torch", or snn_cuda.reference.*)
  unbind loop  the best plain-torch per-step loop kept in this file (x.unbind(0) + an ATan
               surrogate autograd.Function); the baseline exists even without snn_cuda
  seed loop    the same loop indexing x[t] (what the seed code did: x[t]'s backward fills a
               full-size zero tensor every step, so it is ~20x slower)
  SpikingJelly spikingjelly.activation_based.neuron.LIFNode / IFNode / CUBALIFNode, step_mode="m"
  snnTorch     snntorch.Leaky(beta=0.5, spike_grad=atan()) stepped in a Python loop over
               x.unbind(0) (fastest) and over x[t] (tutorial style). snnTorch has no LIF with
               tau, so for --neurons lif it is a Leaky: other dynamics, other firing rate.

Multi-state modes (same rows; each peer only where it has the same model, the other skipped):

  --neurons synaptic     snn_cuda.Synaptic(alpha=0.5, beta=0.5, threshold=1, subtract, ATan(2))
                         fused / reference; this file's loops; snnTorch's own Synaptic (same
                         values, spike_grad=atan()) in its per-step loop over x.unbind(0) and
                         x[t]. The layer also returns its syn / mem sequences (the default
                         return_states=True, as snnTorch's loop does); the loss is on spikes.
  --neurons cuba_lif     snn_cuda.CUBALIF(c_decay=0.5, v_decay=0.75, v_threshold=0.5, hard reset
                         0, ATan(2)) fused / reference; this file's loops; SpikingJelly's own
                         CUBALIFNode (same values, step_mode="m" set as an attribute: 2.0's
                         __init__ takes none).
  --neurons adlif        snn_cuda.AdLIF (adaptive LIF, threshold 1, ATan(2)) with per-neuron
                         alpha / beta / a / b of the feature shape (one sample's dims), drawn
                         once from Bittar & Garner's init ranges with a fixed seed: fused /
                         reference (backend="torch"); this file's unbind loop from the equations
                         (the same values, clamped with torch.clamp as the layer does). Every
                         row computes the gradients w.r.t. x AND alpha, beta, a, b (.grad
                         cleared each iteration); their agreement with the unbind loop is printed
                         under the table. No peer has this model.
  --neurons ilif         snn_cuda.ILIF (I-LIF: integer counts, tau=4/3, v_threshold=1, D=4,
                         window [0, D]) fused / reference; this file's unbind loop;
                         SpikingJelly's own ILIFNode (MultiLevelSpikeCount(4), step_mode="m";
                         16-bit inputs: its module keeps a 16-bit membrane, snn_cuda float32).
                         The "firing rate" column is the mean count (0..D), "spikes ≠" counts
                         differing counts.
  --neurons qif          snn_cuda.QIF (quadratic integrate-and-fire, SpikingJelly's defaults:
                         tau=2, v_c=0.8, a0=1, v_threshold=1, v_rest=0, hard reset -0.1; ATan(2)
                         as the other modes) fused / reference; SpikingJelly's own QIFNode (the
                         same values, step_mode="m").
  Effective GB/s keeps the nominal one-state figure below for all of these.

Learnable-parameter modes (gradients w.r.t. x AND every nn.Parameter, .grad cleared each
iteration; every row starts from the same values, so all compute the same spikes and gradients,
checked against the peer and printed BEFORE timing):

  --neurons plif         fused LIF tau=2 (baseline, fixed), fused ParametricLIF (scalar w;
                         per-neuron w, param_shape = the feature shape; scalar w +
                         learn_threshold), fused LIF learn_threshold, the reference
                         ParametricLIF (backend="torch"), SpikingJelly ParametricLIFNode
                         (step_mode="m"; init_tau=2, ATan(2), hard reset 0, decay_input=True)
  --neurons leaky-learn  fused Leaky beta=0.5 (baseline, fixed), fused Leaky learn_beta +
                         learn_threshold (scalar; per-neuron), the reference (backend="torch"),
                         snnTorch Leaky(learn_beta=True, learn_threshold=True) in an unbind loop

  Columns: overhead = row ms / baseline ms (the cost of the parameter gradients), × reference
  and × peer = their ms / row ms. Fused rows are also checked against the same layer on
  backend="torch" (covers learn_threshold, which the peers do not have).

Each timed iteration: reset the layer state, x.grad = None, spikes = layer(x),
spikes.backward(g) with a fixed random g (a spikes.sum()-style loss with random weights).
Times are medians over reps taken in interleaved rounds (row A, row B, ..., repeat), so slow
drift of the machine hits every row alike. Ratios are only meaningful within one run.

Effective GB/s uses the minimal traffic of a fused save-h pass: forward reads x, writes s and
h; backward reads gs and h, writes gx: 4 storage elements + 2 state elements per neuron-step
(24 B for fp32, 16 B for fp16/bf16 with an fp32 state, 48 B for fp64). The learnable modes keep
that nominal figure (ParametricLIF's dw re-reads x in the backward: its real traffic is higher).

Examples:
  python benchmarks/neuron_op.py                          # fp32 LIF [64, 64, 4096] on CPU
  python benchmarks/neuron_op.py --neurons leaky --json out.json
  python benchmarks/neuron_op.py --neurons synaptic     # and --neurons cuba_lif
  python benchmarks/neuron_op.py --neurons adlif        # and --neurons ilif
  python benchmarks/neuron_op.py --device cuda --sweep    # + small and SpikingJelly shapes
  python benchmarks/neuron_op.py --neurons plif --json benchmarks/results/intel-xeon-avx512/neuron_op_plif_fp32.json
  python benchmarks/neuron_op.py --neurons leaky-learn --shape 32 64 8192
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
import traceback
import warnings

import torch

# Run from a source checkout (`python setup.py build_ext --inplace`) without installing: use the
# tree's snn_cuda when no installed one is importable.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if importlib.util.find_spec("snn_cuda") is None and os.path.isdir(os.path.join(_ROOT, "snn_cuda")):
    sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import machine  # noqa: E402  (benchmarks/machine.py)

# ------------------------------------------------------------------------------------------
# Plain-torch loops (kept here so the baseline exists even without snn_cuda)
# ------------------------------------------------------------------------------------------
_STATE = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}


class ATanSpike(torch.autograd.Function):
    """Heaviside forward (z >= 0, SpikingJelly; or z > 0 with strict=True, snnTorch),
    ATan surrogate backward: (alpha/2) / (1 + (pi/2 alpha z)^2)."""

    @staticmethod
    def forward(ctx, z, alpha, strict):
        ctx.save_for_backward(z)
        ctx.alpha = alpha
        return (z > 0).to(z.dtype) if strict else (z >= 0).to(z.dtype)

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        a = ctx.alpha
        d = (z * (math.pi / 2 * a)).square_().add_(1.0)
        return g * (a / 2) / d, None, None


def _lif_step(xt, v, model, tau, vth, vr, alpha):
    if model == "lif":
        h = v + (xt - (v - vr)) / tau if vr != 0.0 else v + (xt - v) / tau
    else:  # if
        h = v + xt
    s = ATanSpike.apply(h - vth, alpha, False)
    v = h * (1.0 - s) + vr * s if vr != 0.0 else h * (1.0 - s)  # hard reset, not detached
    return s, v


def _leaky_step(xt, u, beta, thr, alpha):
    r = (u.detach() > thr).to(u.dtype)  # snnTorch reset_delay=True, detached
    u = beta * u + xt - r * thr  # reset by subtraction
    s = ATanSpike.apply(u - thr, alpha, True)
    return s, u


def _synaptic_step(xt, syn, u, syn_alpha, beta, thr, alpha):
    r = (u.detach() > thr).to(u.dtype)  # snnTorch Synaptic, reset_delay=True, detached
    syn = syn_alpha * syn + xt
    u = beta * u + syn - r * thr  # reset by subtraction
    s = ATanSpike.apply(u - thr, alpha, True)
    return s, syn, u


def _cuba_step(xt, c, v, c_decay, v_decay, vth, vr, alpha):
    c = c * c_decay + xt  # SpikingJelly CUBALIFNode
    h = v * v_decay + c
    s = ATanSpike.apply(h - vth, alpha, False)
    v = s * vr + (1.0 - s) * h  # hard reset, not detached
    return s, c, v


def make_loop(
    model,
    dtype,
    *,
    indexing,
    tau=2.0,
    vth=1.0,
    vr=0.0,
    alpha=2.0,
    beta=0.5,
    syn_alpha=0.5,
    c_decay=0.5,
    v_decay=0.75,
    cuba_vth=0.5,
):
    """Per-step loop; indexing="unbind" (best) or "index" (x[t], the seed's style)."""
    sd = _STATE[dtype]

    def run(x):
        xs = x.to(sd)
        steps = xs.unbind(0) if indexing == "unbind" else (xs[t] for t in range(xs.shape[0]))
        out = []
        if model == "synaptic":
            syn = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
            u = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
            for xt in steps:
                s, syn, u = _synaptic_step(xt, syn, u, syn_alpha, beta, vth, alpha)
                out.append(s)
            return torch.stack(out).to(x.dtype)
        if model == "cuba_lif":
            c = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
            v = torch.full(x.shape[1:], vr, dtype=sd, device=x.device)
            for xt in steps:
                s, c, v = _cuba_step(xt, c, v, c_decay, v_decay, cuba_vth, vr, alpha)
                out.append(s)
            return torch.stack(out).to(x.dtype)
        if model == "leaky":
            u = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
            for xt in steps:
                s, u = _leaky_step(xt, u, beta, vth, alpha)
                out.append(s)
        else:
            v = torch.full(x.shape[1:], vr, dtype=sd, device=x.device)
            for xt in steps:
                s, v = _lif_step(xt, v, model, tau, vth, vr, alpha)
                out.append(s)
        return torch.stack(out).to(x.dtype)

    return run


# ------------------------------------------------------------------------------------------
# Rows: each is (name, note, factory) where factory(dtype, device) -> callable(x) -> spikes,
# raising _Skip("why") when the implementation is unavailable.
# ------------------------------------------------------------------------------------------
class _Skip(Exception):
    pass


def _reset_module(m, functional_mod=None):
    if hasattr(m, "reset"):
        m.reset()
    elif functional_mod is not None:
        functional_mod.reset_net(m)


def _import_snn_cuda():
    try:
        import snn_cuda  # noqa: F401
    except Exception as e:  # pragma: no cover
        raise _Skip(f"import snn_cuda failed: {type(e).__name__}: {e}")
    return snn_cuda


def snn_cuda_build_info():
    try:
        import snn_cuda

        return dict(snn_cuda.build_info())
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}


def _snn_layer(model, backend):
    snn_cuda = _import_snn_cuda()
    sur = snn_cuda.surrogate.ATan()
    if model == "lif":
        cls, kw = getattr(snn_cuda, "LIF", None), dict(tau=2.0)
    elif model == "if":
        cls, kw = getattr(snn_cuda, "IF", None), {}
    elif model == "synaptic":
        cls, kw = getattr(snn_cuda, "Synaptic", None), dict(alpha=0.5, beta=0.5)
    elif model == "cuba_lif":
        cls, kw = getattr(snn_cuda, "CUBALIF", None), dict(c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0)
    else:
        cls, kw = getattr(snn_cuda, "Leaky", None), dict(beta=0.5)
    if cls is None:
        raise _Skip(f"snn_cuda has no {_SNN_CLASS[model]} module yet")
    layer = cls(surrogate=sur, backend=backend, **kw)
    if hasattr(layer, "step_mode"):
        try:
            layer.step_mode = "m"
        except Exception:
            pass
    return snn_cuda, layer


def fused_factory(model, dtype, device, shape=None):
    snn_cuda = _import_snn_cuda()
    if not hasattr(snn_cuda, "build_info"):
        raise _Skip("snn_cuda.build_info() does not exist yet (package incomplete)")
    info = snn_cuda.build_info()
    built = info.get(device)
    if built is False or built is None and device == "cpu":
        why = info.get(f"{device}_reason") or info.get("load_error") or info.get("error") or ""
        raise _Skip(f"snn_cuda.build_info()[{device!r}] is {built!r}" + (f": {why}" if why else ""))
    snn_cuda, layer = _snn_layer(model, "fused")
    layer = layer.to(device)
    fn = getattr(getattr(snn_cuda, "functional", None), "reset_net", None)

    def run(x):
        if fn is not None:
            fn(layer)
        else:
            _reset_module(layer)
        out = layer(x)
        return out[0] if isinstance(out, tuple) else out

    return run


_SNN_CLASS = {"lif": "LIF", "if": "IF", "leaky": "Leaky", "synaptic": "Synaptic", "cuba_lif": "CUBALIF"}


def reference_factory(model, dtype, device, shape=None):
    snn_cuda = _import_snn_cuda()
    if hasattr(snn_cuda, _SNN_CLASS[model]):
        snn_cuda, layer = _snn_layer(model, "torch")
        layer = layer.to(device)
        fn = getattr(getattr(snn_cuda, "functional", None), "reset_net", None)

        def run(x):
            if fn is not None:
                fn(layer)
            else:
                _reset_module(layer)
            out = layer(x)
            return out[0] if isinstance(out, tuple) else out

        run.note = 'backend="torch"'
        return run
    try:
        from snn_cuda import reference, surrogate
    except Exception as e:
        raise _Skip(f"snn_cuda.reference not importable: {type(e).__name__}: {e}")
    sur = surrogate.ATan()
    if model == "leaky":
        return lambda x: reference.leaky_reference(x, beta=0.5, surrogate=sur)[0]
    if model == "synaptic":
        return lambda x: reference.synaptic_reference(x, alpha=0.5, beta=0.5, surrogate=sur)[0]
    if model == "cuba_lif":
        return lambda x: reference.cuba_lif_reference(x, surrogate=sur)[0]
    return lambda x: reference.lif_reference(x, model=model, tau=2.0, surrogate=sur)[0]


def sj_factory(model, dtype, device, shape=None):
    if model == "leaky":
        raise _Skip("SpikingJelly has no snnTorch-style Leaky")
    if model == "synaptic":
        raise _Skip("SpikingJelly has no snnTorch-style Synaptic (its CUBALIFNode: --neurons cuba_lif)")
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as e:
        raise _Skip(f"spikingjelly not importable: {type(e).__name__}: {e}")
    if model == "lif":
        layer = neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), step_mode="m")
    elif model == "cuba_lif":
        if not hasattr(neuron, "CUBALIFNode"):
            raise _Skip("this SpikingJelly has no CUBALIFNode")
        layer = neuron.CUBALIFNode(
            c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0, surrogate_function=surrogate.ATan()
        )
        layer.step_mode = "m"  # SpikingJelly 2.0's CUBALIFNode.__init__ takes no step_mode
    else:
        layer = neuron.IFNode(surrogate_function=surrogate.ATan(), step_mode="m")
    layer = layer.to(device)

    def run(x):
        functional.reset_net(layer)
        return layer(x)

    return run


def snntorch_factory(indexing):
    def factory(model, dtype, device, shape=None):
        if model == "if":
            raise _Skip("snnTorch has no IF neuron")
        if model == "cuba_lif":
            raise _Skip("snnTorch has no SpikingJelly-style CUBA LIF (its Synaptic: --neurons synaptic)")
        try:
            import snntorch
            from snntorch import surrogate
        except Exception as e:
            raise _Skip(f"snntorch not importable: {type(e).__name__}: {e}")
        if model == "synaptic":
            syn_lif = snntorch.Synaptic(alpha=0.5, beta=0.5, spike_grad=surrogate.atan()).to(device)

            def run_syn(x):
                syn, mem = syn_lif.reset_mem()
                steps = x.unbind(0) if indexing == "unbind" else (x[t] for t in range(x.shape[0]))
                out = []
                for xt in steps:
                    spk, syn, mem = syn_lif(xt, syn, mem)
                    out.append(spk)
                return torch.stack(out)

            return run_syn
        lif = snntorch.Leaky(beta=0.5, spike_grad=surrogate.atan()).to(device)

        def run(x):
            mem = lif.init_leaky()
            steps = x.unbind(0) if indexing == "unbind" else (x[t] for t in range(x.shape[0]))
            out = []
            for xt in steps:
                spk, mem = lif(xt, mem)
                out.append(spk)
            return torch.stack(out)

        return run

    return factory


def loop_factory(indexing):
    def factory(model, dtype, device, shape=None):
        return make_loop(model, dtype, indexing=indexing)

    return factory


# key, label, factory, slow (fewer reps; left out of sweeps unless --sweep-all)
ROWS = [
    ("fused", "snn_cuda fused", fused_factory, False),
    ("reference", "snn_cuda reference (unbind loop)", reference_factory, False),
    ("unbind", "unbind loop (this script)", loop_factory("unbind"), False),
    ("seed", "seed loop (x[t])", loop_factory("index"), True),
    ("sj", "SpikingJelly", sj_factory, False),
    ("snntorch", "snnTorch Leaky, unbind loop", snntorch_factory("unbind"), False),
    ("snntorch_idx", "snnTorch Leaky, x[t] loop (tutorial)", snntorch_factory("index"), True),
]


# ------------------------------------------------------------------------------------------
# Learnable-parameter modes (--neurons plif | leaky-learn): fwd+bwd with the gradients w.r.t. x
# AND the layer's nn.Parameters (cleared every iteration like x.grad, as
# optimizer.zero_grad(set_to_none=True) does). Every row computes the same dynamics from the
# same initial values (tau = 2 <=> w = 0, k = sigmoid(0) = 0.5; beta = 0.5, threshold = 1),
# so spikes and gradients are checked against the peer before timing.
# ------------------------------------------------------------------------------------------
def feature_shape(shape):
    """Per-neuron parameter shape: one sample's feature dims (x.shape[2:]; x.shape[1:] for [T, N])."""
    shape = list(shape)
    return tuple(shape[2:]) if len(shape) > 2 else tuple(shape[1:])


def _snn_run(snn_cuda, layer):
    reset = snn_cuda.functional.reset_net

    def run(x):
        reset(layer)
        out = layer(x)
        return out[0] if isinstance(out, tuple) else out

    run.params = dict(layer.named_parameters())
    run.layer = layer
    return run


def _check_fused_available(snn_cuda, device):
    info = snn_cuda.build_info()
    if not info.get(device):
        why = info.get(f"{device}_reason") or info.get("load_error") or ""
        raise _Skip(f"snn_cuda.build_info()[{device!r}] is {info.get(device)!r}" + (f": {why}" if why else ""))


def snn_learn_factory(cls_name, backend, per_neuron=False, **kw):
    """An snn_cuda layer (ATan(2) surrogate). per_neuron: param_shape = the feature shape.
    Fused rows also carry .reference(): the same layer on backend="torch" (for the check)."""

    def build(device, shape, be):
        snn_cuda = _import_snn_cuda()
        cls = getattr(snn_cuda, cls_name, None)
        if cls is None:
            raise _Skip(f"snn_cuda has no {cls_name}")
        args = dict(kw)
        if per_neuron:
            args["param_shape"] = feature_shape(shape)
        try:
            layer = cls(surrogate=snn_cuda.surrogate.ATan(), backend=be, step_mode="m", **args)
        except TypeError as e:  # a switch not implemented yet
            raise _Skip(f"snn_cuda.{cls_name}({', '.join(f'{k}={v!r}' for k, v in args.items())}): {e}")
        return snn_cuda, layer.to(device)

    def factory(model, dtype, device, shape=None):
        snn_cuda, layer = build(device, shape, backend)
        if backend == "fused":
            _check_fused_available(snn_cuda, device)
        run = _snn_run(snn_cuda, layer)
        if backend == "fused":
            run.reference = lambda: _snn_run(*build(device, shape, "torch"))
        return run

    return factory


def sj_plif_factory(model, dtype, device, shape=None):
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as e:
        raise _Skip(f"spikingjelly not importable: {type(e).__name__}: {e}")
    # SpikingJelly 2.0.0's ParametricLIFNode has no `backend` argument: on CPU (ATan, scalar w,
    # fp32) it runs its torch op sj_plif (a per-step torch loop with a hand-written backward).
    layer = neuron.ParametricLIFNode(
        init_tau=2.0,
        decay_input=True,
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=False,
        step_mode="m",
    ).to(device)

    def run(x):
        functional.reset_net(layer)
        return layer(x)

    run.params = dict(layer.named_parameters())
    run.note = "step_mode='m', torch (no backend arg in 2.0.0)"
    return run


def snntorch_learn_factory(model, dtype, device, shape=None):
    try:
        import snntorch
        from snntorch import surrogate
    except Exception as e:
        raise _Skip(f"snntorch not importable: {type(e).__name__}: {e}")
    lif = snntorch.Leaky(
        beta=0.5, threshold=1.0, spike_grad=surrogate.atan(alpha=2.0), learn_beta=True, learn_threshold=True
    ).to(device)

    def run(x):
        mem = lif.init_leaky()
        out = []
        for xt in x.unbind(0):
            spk, mem = lif(xt, mem)
            out.append(spk)
        return torch.stack(out)

    run.params = dict(lif.named_parameters())
    return run


PLIF_ROWS = [
    ("lif", "fused LIF, fixed tau=2 (baseline)", snn_learn_factory("LIF", "fused", tau=2.0), False),
    ("plif", "fused ParametricLIF, scalar w", snn_learn_factory("ParametricLIF", "fused", init_tau=2.0), False),
    (
        "plif_pn",
        "fused ParametricLIF, per-neuron w",
        snn_learn_factory("ParametricLIF", "fused", per_neuron=True, init_tau=2.0),
        False,
    ),
    (
        "plif_th",
        "fused ParametricLIF, scalar w + learn_threshold",
        snn_learn_factory("ParametricLIF", "fused", init_tau=2.0, learn_threshold=True),
        False,
    ),
    (
        "lif_th",
        "fused LIF, learn_threshold (scalar)",
        snn_learn_factory("LIF", "fused", tau=2.0, learn_threshold=True),
        False,
    ),
    (
        "reference",
        'reference ParametricLIF (backend="torch"), scalar w',
        snn_learn_factory("ParametricLIF", "torch", init_tau=2.0),
        False,
    ),
    ("sj", "SpikingJelly ParametricLIFNode", sj_plif_factory, False),
]

LEAKY_LEARN_ROWS = [
    ("leaky", "fused Leaky, fixed beta=0.5 (baseline)", snn_learn_factory("Leaky", "fused", beta=0.5), False),
    (
        "leaky_learn",
        "fused Leaky, learn_beta + learn_threshold (scalar)",
        snn_learn_factory("Leaky", "fused", beta=0.5, learn_beta=True, learn_threshold=True),
        False,
    ),
    (
        "leaky_learn_pn",
        "fused Leaky, learn_beta + learn_threshold (per-neuron)",
        snn_learn_factory("Leaky", "fused", per_neuron=True, beta=0.5, learn_beta=True, learn_threshold=True),
        False,
    ),
    (
        "reference",
        'reference Leaky (backend="torch"), learn_beta + learn_threshold',
        snn_learn_factory("Leaky", "torch", beta=0.5, learn_beta=True, learn_threshold=True),
        False,
    ),
    ("snntorch", "snnTorch Leaky(learn_beta, learn_threshold), unbind loop", snntorch_learn_factory, False),
]

# ------------------------------------------------------------------------------------------
# Adaptive modes (--neurons adlif | ilif): fixed-parameter tables (× unbind loop, × SpikingJelly)
# whose rows all compute the same model from the same values.
# ------------------------------------------------------------------------------------------
_ADLIF_INIT = {  # Bittar & Garner (2022): decays from time constants of 5-25 / 30-120 steps
    "alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
    "beta": (math.exp(-1 / 30), math.exp(-1 / 120)),
    "a": (-1.0, 1.0),
    "b": (0.0, 2.0),
}
_ADLIF_CLAMP = {"alpha": (0.0, 1.0), "beta": (0.0, 1.0), "a": (-1.0, 1.0), "b": (0.0, 2.0)}
_ILIF = dict(tau=4.0 / 3.0, v_threshold=1.0, max_spike_count=4)


def adlif_values(shape, dtype, device):
    """alpha, beta, a, b per neuron of the feature shape, the same for every row (fixed seed)."""
    g = torch.Generator().manual_seed(1234)
    feat = feature_shape(shape)
    return {
        n: (torch.rand(feat, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(device=device, dtype=dtype)
        for n, (lo, hi) in _ADLIF_INIT.items()
    }


def _adlif_step(xt, u, w, s, al, be, pa, pb, thr, alpha):
    w = be * w + pa * u + pb * s
    u = al * (u - thr * s) + (1 - al) * (xt - w)
    s = ATanSpike.apply(u - thr, alpha, True)  # 1[u - thr > 0]
    return s, u, w


def adlif_loop_factory(model, dtype, device, shape=None):
    """This file's AdLIF loop over x.unbind(0), parameters clamped with torch.clamp."""
    sd = _STATE[dtype]
    params = {n: v.requires_grad_(True) for n, v in adlif_values(shape, sd, device).items()}

    def run(x):
        al, be, pa, pb = (params[n].clamp(*_ADLIF_CLAMP[n]) for n in ("alpha", "beta", "a", "b"))
        u = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
        w = torch.zeros_like(u)
        s = torch.zeros_like(u)
        out = []
        for xt in x.to(sd).unbind(0):
            s, u, w = _adlif_step(xt, u, w, s, al, be, pa, pb, 1.0, 2.0)
            out.append(s)
        return torch.stack(out).to(x.dtype)

    run.params = params
    return run


def adlif_factory(backend):
    def factory(model, dtype, device, shape=None):
        snn_cuda = _import_snn_cuda()
        if not hasattr(snn_cuda, "AdLIF"):
            raise _Skip("snn_cuda has no AdLIF")
        if backend == "fused":
            _check_fused_available(snn_cuda, device)
        layer = snn_cuda.AdLIF(
            feature_shape(shape), threshold=1.0, surrogate=snn_cuda.surrogate.ATan(2.0), backend=backend
        ).to(device=device, dtype=_STATE[dtype])
        with torch.no_grad():
            for n, v in adlif_values(shape, _STATE[dtype], device).items():
                getattr(layer, n).copy_(v)
        run = _snn_run(snn_cuda, layer)
        if backend == "torch":
            run.note = 'backend="torch"'
        return run

    return factory


class CountSTE(torch.autograd.Function):
    """I-LIF count round(clamp(z, 0, D)); backward: 1 on the closed window [lo, hi], else 0."""

    @staticmethod
    def forward(ctx, z, D, lo, hi):
        ctx.save_for_backward(z)
        ctx.window = (lo, hi)
        return z.clamp(0.0, D).round()

    @staticmethod
    def backward(ctx, g):
        (z,) = ctx.saved_tensors
        lo, hi = ctx.window
        return g * ((z >= lo) & (z <= hi)).to(g.dtype), None, None, None


def ilif_loop_factory(model, dtype, device, shape=None):
    """This file's I-LIF loop over x.unbind(0) (SpikingJelly ILIFNode multi-step formulas)."""
    sd = _STATE[dtype]
    d, vth, D = 1.0 - 1.0 / _ILIF["tau"], _ILIF["v_threshold"], float(_ILIF["max_spike_count"])

    def run(x):
        v = torch.zeros(x.shape[1:], dtype=sd, device=x.device)
        out = []
        for xt in x.to(sd).unbind(0):
            h = d * v + xt
            c = CountSTE.apply(h / vth, D, 0.0, D)
            v = h - c * vth
            out.append(c)
        return torch.stack(out).to(x.dtype)

    return run


def ilif_factory(backend):
    def factory(model, dtype, device, shape=None):
        snn_cuda = _import_snn_cuda()
        if not hasattr(snn_cuda, "ILIF"):
            raise _Skip("snn_cuda has no ILIF")
        if backend == "fused":
            _check_fused_available(snn_cuda, device)
        run = _snn_run(snn_cuda, snn_cuda.ILIF(backend=backend, **_ILIF).to(device))
        if backend == "torch":
            run.note = 'backend="torch"'
        return run

    return factory


def sj_ilif_factory(model, dtype, device, shape=None):
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as e:
        raise _Skip(f"spikingjelly not importable: {type(e).__name__}: {e}")
    if not hasattr(neuron, "ILIFNode"):
        raise _Skip("this SpikingJelly has no ILIFNode")
    layer = neuron.ILIFNode(
        tau=_ILIF["tau"],
        v_threshold=_ILIF["v_threshold"],
        surrogate_function=surrogate.MultiLevelSpikeCount(_ILIF["max_spike_count"]),
        step_mode="m",
    ).to(device)

    def run(x):
        functional.reset_net(layer)
        return layer(x)

    run.note = "step_mode='m'" + (" (16-bit membrane)" if dtype in (torch.float16, torch.bfloat16) else "")
    return run


_QIF = dict(tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_rest=0.0, v_reset=-0.1)


def qif_factory(backend):
    def factory(model, dtype, device, shape=None):
        snn_cuda = _import_snn_cuda()
        if not hasattr(snn_cuda, "QIF"):
            raise _Skip("snn_cuda has no QIF")
        if backend == "fused":
            _check_fused_available(snn_cuda, device)
        layer = snn_cuda.QIF(backend=backend, surrogate=snn_cuda.surrogate.ATan(2.0), **_QIF)
        run = _snn_run(snn_cuda, layer.to(device))
        if backend == "torch":
            run.note = 'backend="torch"'
        return run

    return factory


def sj_qif_factory(model, dtype, device, shape=None):
    try:
        from spikingjelly.activation_based import functional, neuron, surrogate
    except Exception as e:
        raise _Skip(f"spikingjelly not importable: {type(e).__name__}: {e}")
    if not hasattr(neuron, "QIFNode"):
        raise _Skip("this SpikingJelly has no QIFNode")
    layer = neuron.QIFNode(step_mode="m", surrogate_function=surrogate.ATan(2.0), **_QIF).to(device)

    def run(x):
        functional.reset_net(layer)
        return layer(x)

    run.note = "step_mode='m'"
    return run


ADLIF_ROWS = [
    ("fused", "snn_cuda fused AdLIF", adlif_factory("fused"), False),
    ("reference", "snn_cuda reference AdLIF (unbind loop)", adlif_factory("torch"), False),
    ("unbind", "unbind loop (this script)", adlif_loop_factory, False),
]

ILIF_ROWS = [
    ("fused", "snn_cuda fused ILIF", ilif_factory("fused"), False),
    ("reference", "snn_cuda reference ILIF (unbind loop)", ilif_factory("torch"), False),
    ("unbind", "unbind loop (this script)", ilif_loop_factory, False),
    ("sj", "SpikingJelly ILIFNode", sj_ilif_factory, False),
]

QIF_ROWS = [
    ("fused", "snn_cuda fused QIF", qif_factory("fused"), False),
    ("reference", "snn_cuda reference QIF (unbind loop)", qif_factory("torch"), False),
    ("sj", "SpikingJelly QIFNode", sj_qif_factory, False),
]

# Per mode: the rows, and for the learnable modes the fixed-parameter fused baseline (overhead
# = row time / baseline time), the reference and the peer (speed-up = their time / row time);
# the peer is also what spikes and gradients are checked against (the reference if no peer).
MODE_ROWS = {
    "lif": ROWS,
    "if": ROWS,
    "leaky": ROWS,
    "synaptic": ROWS,
    "cuba_lif": ROWS,
    "adlif": ADLIF_ROWS,
    "ilif": ILIF_ROWS,
    "qif": QIF_ROWS,
    "plif": PLIF_ROWS,
    "leaky-learn": LEAKY_LEARN_ROWS,
}
# fixed-parameter modes whose snnTorch rows compute the same model (compared, × snnTorch column)
SNNTORCH_SAME_MODEL = ("leaky", "synaptic")
LEARN_MODES = {
    "plif": dict(baseline="lif", reference="reference", peer="sj", peer_name="SpikingJelly"),
    "leaky-learn": dict(baseline="leaky", reference="reference", peer="snntorch", peer_name="snnTorch"),
}
# canonical parameter names across implementations (SJ: w; snnTorch: beta, threshold)
_PARAM_ALIAS = {"v_threshold": "threshold"}


def _peer_versions():
    out = {}
    for mod in ("spikingjelly", "snntorch"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:
            out[mod] = None
    return out


def _label(key, model, versions):
    lab = dict((k, lbl) for k, lbl, _, _ in MODE_ROWS[model])[key]
    if model in LEARN_MODES:
        peer = LEARN_MODES[model]["peer"]
        mod = "spikingjelly" if peer == "sj" else "snntorch"
        if key == peer and versions.get(mod):
            lab = lab.replace("SpikingJelly", f"SpikingJelly {versions[mod]}").replace(
                "snnTorch", f"snnTorch {versions[mod]}"
            )
        return lab
    if key == "sj" and versions.get("spikingjelly"):
        node = {
            "lif": " LIFNode",
            "if": " IFNode",
            "cuba_lif": " CUBALIFNode",
            "ilif": " ILIFNode",
            "qif": " QIFNode",
        }.get(model, "")
        lab = f"SpikingJelly {versions['spikingjelly']}{node}"
    if key.startswith("snntorch") and model in ("synaptic", "cuba_lif"):
        lab = lab.replace("Leaky", "Synaptic")
    if key.startswith("snntorch") and versions.get("snntorch"):
        lab = lab.replace("snnTorch", f"snnTorch {versions['snntorch']}")
    return lab


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------
def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _iteration(fn, x, g, device):
    x.grad = None
    for prm in getattr(fn, "params", {}).values():
        prm.grad = None
    _sync(device)
    t0 = time.perf_counter()
    s = fn(x)
    s.backward(g)
    _sync(device)
    return time.perf_counter() - t0


def copy_bandwidth(device, mbytes=256, reps=10):
    return machine.copy_bandwidth(device, mbytes, reps)


def _param_grads(fn):
    """{canonical name: grad (float64)} of a row's learnable parameters after a backward."""
    out = {}
    for name, prm in getattr(fn, "params", {}).items():
        if prm.grad is not None:
            out[_PARAM_ALIAS.get(name, name)] = prm.grad.detach().double().clone()
    return out


def _compare(row_s, row_gx, row_gp, base_s, base_gx, base_gp):
    """Spike mismatches, max |gx - gx_base| / max |gx_base|, and the same per shared parameter
    (a per-neuron gradient is summed when the other side is a scalar)."""
    out = {"spike_mismatch": int((row_s.float() != base_s.float()).sum())}
    gb, gr = base_gx.double(), row_gx.double()
    out["gx_max_rel_err"] = float((gr - gb).abs().max() / gb.abs().max().clamp_min(1e-30))
    prm = {}
    for name in sorted(set(row_gp) & set(base_gp)):
        a, b = row_gp[name], base_gp[name]
        if a.shape != b.shape:
            a, b = (a.sum(), b) if b.numel() == 1 else (a, b.sum()) if a.numel() == 1 else (None, None)
        if a is None:
            continue
        prm[name] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
    out["param_grad_rel_err"] = prm
    return out


def bench_shape(shape, model, dtype, device, keys, args, versions, verbose=True):
    numel = math.prod(shape)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = (torch.randn(shape, generator=gen) * args.x_std + args.x_mean).to(device=device, dtype=dtype)
    x.requires_grad_(True)
    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
    e = torch.empty((), dtype=dtype).element_size()
    se = torch.empty((), dtype=_STATE[dtype]).element_size()
    bytes_per_step = 4 * e + 2 * se
    learn = LEARN_MODES.get(model)

    rows, live = [], []
    for key, _, factory, slow in MODE_ROWS[model]:
        if key not in keys:
            continue
        label = _label(key, model, versions)
        row = {"key": key, "impl": label, "slow": slow}
        t_row = time.perf_counter()
        rows.append(row)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = factory(model, dtype, device, shape=shape)
            row["note"] = getattr(fn, "note", "")
            # warm-up + a checked pass (spikes / grads kept for the agreement check)
            for prm in getattr(fn, "params", {}).values():
                prm.grad = None
            x.grad = None
            s = fn(x)
            s.backward(g)
            row["firing_rate"] = float(s.detach().float().mean())
            row["_s"] = s.detach()
            row["_gx"] = x.grad.detach().clone()
            row["_gp"] = _param_grads(fn)
            if learn:
                row["learnable"] = {n: list(p.shape) for n, p in getattr(fn, "params", {}).items()}
                row["param_grad_sum"] = {n: float(v.sum()) for n, v in row["_gp"].items()}
            if learn and hasattr(fn, "reference"):
                # the same layer on backend="torch": checks the parameter gradients of every
                # fused row, also those the peer has no counterpart for (learn_threshold)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rfn = fn.reference()
                x.grad = None
                rs = rfn(x)
                rs.backward(g)
                row["vs_own_reference"] = _compare(
                    row["_s"], row["_gx"], row["_gp"], rs.detach(), x.grad.detach(), _param_grads(rfn)
                )
                del rfn, rs
            warm = [_iteration(fn, x, g, device)]
            while len(warm) < (1 if slow else 3) and sum(warm) < 2.0:
                warm.append(_iteration(fn, x, g, device))
            t_warm = min(warm)
            row["_times"], row["_est"] = [], t_warm
            if args.verbose:
                print(
                    f"  [warm] {label}: {t_warm * 1e3:.1f} ms ({time.perf_counter() - t_row:.1f} s setup)",
                    file=sys.stderr,
                    flush=True,
                )
            live.append((row, fn))
        except _Skip as sk:
            row["skipped"] = str(sk)
        except Exception as ex:  # a broken peer or a kernel in progress: report, don't crash
            row["skipped"] = f"error: {type(ex).__name__}: {ex}"
            if args.verbose:
                traceback.print_exc()
        if verbose and "skipped" in row:
            print(f"  [skip] {label}: {row['skipped']}", file=sys.stderr)

    ref = {r["key"]: r for r in rows}
    # agreement, checked BEFORE timing. Fixed-parameter modes: against the unbind loop (same
    # dynamics only; snnTorch is a Leaky, SJ a LIF/IF). Learnable modes: against the peer
    # (SpikingJelly ParametricLIFNode / snnTorch learnable Leaky), else the reference.
    if learn:
        base_key = next((k for k in (learn["peer"], learn["reference"]) if "_s" in ref.get(k, {})), None)
    else:
        base_key = "unbind"
    base = ref.get(base_key) if base_key else None
    bs = base.get("_s") if base else None
    for row in rows:
        if "_s" not in row:
            continue
        same_model = learn or not (model not in SNNTORCH_SAME_MODEL and row["key"].startswith("snntorch"))
        if bs is not None and row is not base and same_model:
            c = _compare(row["_s"], row["_gx"], row["_gp"], bs, base["_gx"], base["_gp"])
            row["spike_mismatch"] = c["spike_mismatch"]
            row["gx_max_rel_err"] = c["gx_max_rel_err"]
            if learn or c["param_grad_rel_err"]:  # (adlif: every row has alpha, beta, a, b)
                row["param_grad_rel_err"] = c["param_grad_rel_err"]
    if learn and verbose:
        print(
            f"\ncheck before timing (x ~ N({args.x_mean}, {args.x_std}^2), {list(shape)}; "
            f"vs {base['impl'] if base else 'nothing'}):"
        )
        for row in rows:
            if "_s" not in row:
                continue
            msg = f"  {row['impl']}: firing rate {row['firing_rate']:.4f}"
            if "spike_mismatch" in row:
                msg += (
                    f"; spikes != base: {row['spike_mismatch']} of {numel}; gx max rel err {row['gx_max_rel_err']:.1e}"
                )
                for n, v in row.get("param_grad_rel_err", {}).items():
                    msg += f"; d{n} rel err {v:.1e}"
            elif row is base:
                msg += " (the base)"
            own = row.get("vs_own_reference")
            if own:
                msg += (
                    f" | vs same layer backend='torch': spikes != {own['spike_mismatch']}, gx "
                    f"{own['gx_max_rel_err']:.1e}"
                    + "".join(f", d{n} {v:.1e}" for n, v in own["param_grad_rel_err"].items())
                )
            if row.get("param_grad_sum"):
                msg += " | grad sums " + ", ".join(f"{n}={v:.6g}" for n, v in row["param_grad_sum"].items())
            print(msg)
        sys.stdout.flush()

    # interleaved rounds
    for _ in range(args.rounds):
        for row, fn in live:
            per_round = args.budget / args.rounds
            est = statistics.median(row["_times"]) if row["_times"] else row["_est"]
            n = max(1, min(args.max_reps, int(per_round / max(est, 1e-6))))
            if row["slow"]:
                n = min(n, args.slow_reps)
            for _ in range(n):
                row["_times"].append(_iteration(fn, x, g, device))
            if args.verbose:
                print(
                    f"  [round] {row['impl']}: {n} reps, median so far {statistics.median(row['_times']) * 1e3:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )

    for row, _ in live:
        ts = row.pop("_times")
        row.pop("_est")
        t = statistics.median(ts)
        row.update(
            reps=len(ts),
            median_s=t,
            min_s=min(ts),
            neuron_steps_per_s=numel / t,
            eff_GB_s=numel * bytes_per_step / t / 1e9,
        )
        if args.keep_times:
            row["times_s"] = ts
    for row in rows:
        row.pop("_s", None)
        row.pop("_gx", None)
        row.pop("_gp", None)
    if learn:
        t_base = ref.get(learn["baseline"], {}).get("median_s")
        tmin_base = ref.get(learn["baseline"], {}).get("min_s")
        t_ref = ref.get(learn["reference"], {}).get("median_s")
        t_peer = ref.get(learn["peer"], {}).get("median_s")
        for row in rows:
            if "median_s" in row:
                row["overhead_vs_fixed"] = row["median_s"] / t_base if t_base else None
                row["overhead_vs_fixed_min"] = row["min_s"] / tmin_base if tmin_base else None
                row["x_reference"] = t_ref / row["median_s"] if t_ref else None
                row["x_peer"] = t_peer / row["median_s"] if t_peer else None
    else:
        t_unbind = base.get("median_s") if base else None
        t_sj = ref.get("sj", {}).get("median_s")
        t_snt = ref.get("snntorch", {}).get("median_s")
        for row in rows:
            if "median_s" in row:
                row["x_unbind"] = t_unbind / row["median_s"] if t_unbind else None
                row["x_sj"] = t_sj / row["median_s"] if t_sj else None
                row["x_snntorch"] = t_snt / row["median_s"] if t_snt else None
    return {
        "shape": list(shape),
        "numel": numel,
        "bytes_per_neuron_step": bytes_per_step,
        "check_base": base_key if base else None,
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------
def hardware(device, threads):
    """The machine and the snn_cuda CPU kernels' ISA variant (benchmarks/machine.py)."""
    hw = machine.describe(threads)
    hw["device"] = device
    if device == "cuda":
        hw["gpu"] = torch.cuda.get_device_name()
        hw["cuda"] = torch.version.cuda
    return hw


def _f(v, fmt):
    return "—" if v is None else format(v, fmt)


def _rate(v):
    if v >= 1e9:
        return f"{v / 1e9:.2f} G"
    return f"{v / 1e6:.1f} M"


def markdown(res, model, cols_snt):
    head = (
        "| implementation | ms / fwd+bwd | reps | neuron-steps/s | eff. GB/s | × unbind loop "
        "| × SpikingJelly |" + (" × snnTorch |" if cols_snt else "") + " firing rate | spikes ≠ unbind |"
    )
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [head, sep]
    for r in res["rows"]:
        if "median_s" not in r:
            continue
        mism = r.get("spike_mismatch")
        mism = "—" if mism is None else ("0" if mism == 0 else f"{mism} ({r.get('gx_max_rel_err', 0):.0e} gx)")
        if "gx_max_rel_err" in r and r.get("spike_mismatch") == 0:
            mism = f"0 (gx rel {r['gx_max_rel_err']:.0e})"
        lines.append(
            f"| {r['impl']} | {r['median_s'] * 1e3:.1f} | {r['reps']} | {_rate(r['neuron_steps_per_s'])} "
            f"| {r['eff_GB_s']:.1f} | {_f(r['x_unbind'], '.2f')} | {_f(r['x_sj'], '.2f')} |"
            + (f" {_f(r['x_snntorch'], '.2f')} |" if cols_snt else "")
            + f" {r['firing_rate']:.4f} | {mism} |"
        )
    return "\n".join(lines)


def _learn_str(r):
    lp = r.get("learnable")
    if not lp:
        return "—"
    return ", ".join(f"{n}{'' if not sh else '[' + 'x'.join(map(str, sh)) + ']'}" for n, sh in lp.items())


def markdown_learn(res, model):
    lm = LEARN_MODES[model]
    peer = lm["peer_name"]
    head = (
        "| implementation | learnable | ms / fwd+bwd | reps | neuron-steps/s | eff. GB/s "
        "| ÷ fixed fused (overhead) | × reference | × " + peer + " | firing rate "
        "| spikes ≠ check base | gx rel err | param-grad rel err |"
    )
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = [head, sep]
    for r in res["rows"]:
        if "median_s" not in r:
            continue
        mism = r.get("spike_mismatch")
        pg = r.get("param_grad_rel_err") or {}
        lines.append(
            f"| {r['impl']} | {_learn_str(r)} | {r['median_s'] * 1e3:.1f} | {r['reps']} "
            f"| {_rate(r['neuron_steps_per_s'])} | {r['eff_GB_s']:.1f} | {_f(r['overhead_vs_fixed'], '.3f')} "
            f"| {_f(r['x_reference'], '.2f')} | {_f(r['x_peer'], '.2f')} | {r['firing_rate']:.4f} "
            f"| {'base' if res.get('check_base') == r['key'] else _f(mism, 'd')} "
            f"| {_f(r.get('gx_max_rel_err'), '.0e')} "
            f"| {', '.join(f'd{n} {v:.0e}' for n, v in pg.items()) or '—'} |"
        )
    return "\n".join(lines)


def sj_shapes(scale, ts):
    shapes = []
    for n in ([64, 32768], [1 << 20], [64, 65536]):
        n = list(n)
        n[-1] = max(1, n[-1] // scale)
        for t in ts:
            shapes.append([t] + n)
    return shapes


SMALL_SHAPES = [[4, 1, 1024], [8, 16, 1024], [16, 32, 512], [32, 8, 256], [64, 1, 4096]]


def _scrub(obj):
    """obj with the machine's paths (checkout, venv, home, temporary folders) as placeholders."""
    from snn_cuda._paths import scrub_paths

    return scrub_paths(obj, root=_ROOT)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--shape",
        type=int,
        nargs="+",
        default=[64, 64, 4096],
        metavar="D",
        help="T B N (or any [T, ...]); default 64 64 4096",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    p.add_argument(
        "--neurons",
        default="lif",
        choices=["lif", "if", "leaky", "synaptic", "cuba_lif", "adlif", "ilif", "qif", "plif", "leaky-learn"],
        help="lif/if/leaky/synaptic/cuba_lif: fixed-parameter layers vs the loops and peers "
        "(synaptic: snnTorch's Synaptic; cuba_lif: SpikingJelly's CUBALIFNode); adlif: AdLIF with "
        "per-neuron parameters vs the reference and this file's loop; ilif: I-LIF vs the "
        "reference, this file's loop and SpikingJelly's ILIFNode; qif: QIF vs the reference and "
        "SpikingJelly's QIFNode; plif: learnable "
        "tau (ParametricLIF) and threshold vs fixed LIF, the reference and SpikingJelly's "
        "ParametricLIFNode; leaky-learn: Leaky learn_beta+learn_threshold vs fixed "
        "Leaky, the reference and snnTorch's learnable Leaky",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    machine.add_isa_argument(p)
    p.add_argument(
        "--rows",
        default=None,
        help="comma-separated subset of the mode's rows (default all): lif/if/leaky/synaptic/cuba_lif: "
        + ",".join(k for k, *_ in ROWS)
        + "; adlif: "
        + ",".join(k for k, *_ in ADLIF_ROWS)
        + "; ilif: "
        + ",".join(k for k, *_ in ILIF_ROWS)
        + "; plif: "
        + ",".join(k for k, *_ in PLIF_ROWS)
        + "; leaky-learn: "
        + ",".join(k for k, *_ in LEAKY_LEARN_ROWS),
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--budget", type=float, default=3.0, help="seconds of timed reps per row, split over rounds (default 3)"
    )
    p.add_argument("--max-reps", type=int, default=30, help="most timed reps per row per round")
    p.add_argument(
        "--slow-reps",
        type=int,
        default=1,
        help="timed reps per round for the slow rows: seed loop, snnTorch (default 1)",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also small (launch-bound) shapes and SpikingJelly's GPU shapes "
        "[T,64,32768], [T,2^20], [T,64,65536], N divided by --scale",
    )
    p.add_argument("--sweep-all", action="store_true", help="include the slow rows in the sweep")
    p.add_argument("--sweep-T", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128])
    p.add_argument(
        "--scale",
        type=int,
        default=None,
        help="divide the last dim of the SpikingJelly shapes by this (default 16 on CPU, 1 on CUDA)",
    )
    p.add_argument("--copy-mb", type=int, default=256, help="copy-bandwidth tensor size (MB)")
    p.add_argument("--x-mean", type=float, default=0.8, help="x ~ N(mean, std^2); default 0.8")
    p.add_argument("--x-std", type=float, default=1.0, help="default 1.0 (LIF fires ~20%%)")
    p.add_argument("--json", default=None, metavar="PATH", help="write all results as JSON")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failing rows")
    p.add_argument("--keep-times", action="store_true", help="store every timed rep in the JSON")
    args = p.parse_args(argv)

    machine.apply_isa(args.isa)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but torch.cuda.is_available() is False")
    dtype = getattr(torch, args.dtype)
    mode_rows = MODE_ROWS[args.neurons]
    keys = [k.strip() for k in args.rows.split(",") if k.strip()] if args.rows else [k for k, *_ in mode_rows]
    bad = [k for k in keys if k not in dict((kk, 0) for kk, *_ in mode_rows)]
    if bad:
        p.error(f"--rows {','.join(bad)}: not a row of --neurons {args.neurons} ({','.join(k for k, *_ in mode_rows)})")
    learn = LEARN_MODES.get(args.neurons)
    scale = args.scale if args.scale is not None else (16 if args.device == "cpu" else 1)

    versions = _peer_versions()
    hw = hardware(args.device, torch.get_num_threads())
    info = snn_cuda_build_info()
    if learn:
        print(
            f"# snn_cuda neuron_op benchmark: {args.neurons.upper()} (learnable parameters), {args.dtype}, "
            f"fwd+bwd with gradients w.r.t. x and every nn.Parameter, ATan(2) surrogate, device={args.device}"
        )
    else:
        print(
            f"# snn_cuda neuron_op benchmark: {args.neurons.upper()} layer, {args.dtype}, fwd+bwd, "
            f"ATan surrogate, device={args.device}"
        )
    hwline = machine.line(hw)
    if args.device == "cuda":
        hwline += f"; GPU: {hw['gpu']} (CUDA {hw['cuda']})"
    try:
        la = os.getloadavg()
        hwline += f"; load average at start {la[0]:.2f} (other processes skew every row)"
        hw["loadavg_start"] = la[0]
    except OSError:
        pass
    print(hwline)
    print(f"snn_cuda build_info: {json.dumps(_scrub(info), default=str)}")
    print(f"peers: spikingjelly {versions['spikingjelly']}, snntorch {versions['snntorch']}")
    if args.neurons == "ilif":
        print("note: I-LIF emits integer counts 0..D: 'firing rate' is the mean count, 'spikes ≠' differing counts")
    if args.neurons == "lif":
        print(
            "note: snnTorch rows are Leaky(beta=0.5) (snnTorch has no tau-LIF): other dynamics, "
            "other firing rate; timed for scale only"
        )
    cb = copy_bandwidth(args.device, args.copy_mb)
    print(
        f"copy bandwidth ({args.copy_mb} MB fp32 dst.copy_(src), read+write): "
        f"{cb['GB_s']:.1f} GB/s median, {cb['best_GB_s']:.1f} GB/s best"
    )

    t0 = time.perf_counter()
    main_res = bench_shape(args.shape, args.neurons, dtype, args.device, keys, args, versions)
    cols_snt = args.neurons in SNNTORCH_SAME_MODEL
    print()
    print(
        f"## {args.neurons.upper()} {args.dtype} {list(args.shape)} "
        f"({main_res['numel'] / 1e6:.1f} M neuron-steps; eff. GB/s at "
        f"{main_res['bytes_per_neuron_step']} B/neuron-step; "
        f"copy {cb['GB_s']:.0f} GB/s)"
    )
    print()
    print(markdown_learn(main_res, args.neurons) if learn else markdown(main_res, args.neurons, cols_snt))
    for r in main_res["rows"]:
        if "skipped" in r:
            print(f"\n- skipped {r['impl']}: {r['skipped']}")
    if not learn:
        pg_rows = [r for r in main_res["rows"] if r.get("param_grad_rel_err")]
        if pg_rows:
            print(f"\nparameter gradients vs {main_res['check_base']} (max abs err / max abs):")
            for r in pg_rows:
                print(f"- {r['impl']}: " + ", ".join(f"d{n} {v:.1e}" for n, v in r["param_grad_rel_err"].items()))
    fr = main_res["rows"]
    fused = next((r for r in fr if r["key"] == "fused" and "median_s" in r), None)
    if learn:
        byk = {r["key"]: r for r in fr if "median_s" in r}
        b = byk.get(learn["baseline"])
        print(
            f"\n(overhead = ms / ms of '{b['impl'] if b else learn['baseline']}' in this run, median "
            "[min-based in brackets]; × reference / × peer = their ms / this row's ms)"
        )
        for r in fr:
            if "median_s" not in r or not r.get("learnable") or r["key"] in (learn["reference"], learn["peer"]):
                continue
            print(
                f"- {r['impl']}: parameter-gradient overhead {_f(r['overhead_vs_fixed'], '.3f')}× "
                f"[{_f(r['overhead_vs_fixed_min'], '.3f')}×] "
                f"({(r['overhead_vs_fixed'] - 1) * 100:+.1f}%), {_f(r['x_reference'], '.2f')}× the reference, "
                f"{_f(r['x_peer'], '.2f')}× {learn['peer_name']}, "
                f"{r['eff_GB_s'] / cb['GB_s'] * 100:.0f}% of copy bandwidth"
            )
    if fused is not None:
        print(
            f"\nfused: {_f(fused['x_unbind'], '.2f')}× the unbind loop, "
            f"{_f(fused['x_sj'], '.2f')}× SpikingJelly, {fused['eff_GB_s'] / cb['GB_s'] * 100:.0f}% "
            f"of copy bandwidth"
        )

    sweep = []
    if args.sweep:
        sweep_keys = [k for k in keys if not dict((kk, s) for kk, _, _, s in mode_rows)[k] or args.sweep_all]
        shapes = SMALL_SHAPES + sj_shapes(scale, args.sweep_T)
        sargs = argparse.Namespace(**vars(args))
        sargs.budget = min(args.budget, 1.0)
        sargs.rounds = 2
        print(
            f"\n## sweep ({args.neurons.upper()} {args.dtype}; SpikingJelly GPU shapes with the last "
            f"dim / {scale}; rows: {','.join(sweep_keys)})\n"
        )
        names = [k for k in sweep_keys]
        print(
            "| shape | "
            + " | ".join(f"{k} steps/s" for k in names)
            + (" | learnable fused ÷ fixed | learnable fused × peer |" if learn else " | fused × unbind | fused × SJ |")
        )
        print("|" + "---|" * (len(names) + 3))
        for shp in shapes:
            r = bench_shape(shp, args.neurons, dtype, args.device, sweep_keys, sargs, versions, verbose=False)
            sweep.append(r)
            by = {row["key"]: row for row in r["rows"]}
            cells = [_rate(by[k]["neuron_steps_per_s"]) if "median_s" in by.get(k, {}) else "—" for k in names]
            fu = by.get("fused", {})
            if learn:  # last two columns: overhead of the first learnable fused row, its × peer
                lr = next(
                    (
                        rr
                        for rr in r["rows"]
                        if rr.get("learnable")
                        and "median_s" in rr
                        and rr["key"] not in (learn["reference"], learn["peer"])
                    ),
                    {},
                )
                print(
                    f"| {shp} | "
                    + " | ".join(cells)
                    + f" | {_f(lr.get('overhead_vs_fixed'), '.3f')} | {_f(lr.get('x_peer'), '.2f')} |",
                    flush=True,
                )
                continue
            print(
                f"| {shp} | "
                + " | ".join(cells)
                + f" | {_f(fu.get('x_unbind'), '.2f')} | {_f(fu.get('x_sj'), '.2f')} |",
                flush=True,
            )

    try:
        hw["loadavg_end"] = os.getloadavg()[0]
        print(f"\nload average at end {hw['loadavg_end']:.2f}")
    except OSError:
        pass
    print(
        f"\n(benchmark time {time.perf_counter() - t0:.0f} s; command: "
        f"python benchmarks/neuron_op.py {_scrub(' '.join(sys.argv[1:] if argv is None else argv))})"
    )
    if args.json:
        out = {
            "hardware": hw,
            "snn_cuda_build_info": info,
            "peers": versions,
            "args": vars(args),
            "copy_bandwidth": cb,
            "model": args.neurons,
            "dtype": args.dtype,
            "main": main_res,
            "sweep": sweep,
        }
        out = _scrub(json.loads(json.dumps(out, default=str)))  # no machine paths in results
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
