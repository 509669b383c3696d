"""Subprocess half of test_compat_legacy.py: runs snn_cuda.compat against one SpikingJelly
version (0.0.0.0.12 / 0.0.0.0.14 from a --target folder on PYTHONPATH, or 2.0 from the venv),
with CuPy hidden or present, and prints one JSON object with the case count and every failure.

    python legacy_sj_worker.py {012|014|20} {hidden|present}

It runs in a process of its own because the legacy versions share the package name
``spikingjelly`` with 2.0 and because hiding CuPy has to happen before SpikingJelly is imported.
"""

from __future__ import annotations

import itertools
import json
import sys
import traceback
import warnings

VERSION, CUPY = sys.argv[1], sys.argv[2]
if CUPY == "hidden":
    sys.modules["cupy"] = None  # `import cupy` raises ImportError, as on a machine without CuPy

import torch  # noqa: E402

if VERSION == "012":
    from spikingjelly.clock_driven import functional as sjf  # noqa: E402
    from spikingjelly.clock_driven import surrogate as sjs  # noqa: E402
    from spikingjelly.clock_driven import neuron as sjn  # noqa: E402

    # imported before the patch, as a model module would: must be served too
    from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402
else:
    from spikingjelly.activation_based import functional as sjf  # noqa: E402
    from spikingjelly.activation_based import surrogate as sjs  # noqa: E402
    from spikingjelly.activation_based import neuron as sjn  # noqa: E402

    MultiStepLIFNode = None

import snn_cuda  # noqa: E402
from snn_cuda import ops  # noqa: E402

result = {"version": VERSION, "cupy": CUPY, "cases": 0, "failures": [], "fused_calls": 0}


def fail(case, msg):
    result["failures"].append(f"{case}: {msg}")


def construct_unpatched():
    """What happens without the patch: the error a user sees (None: it constructs)."""
    try:
        if VERSION == "012":
            sjn.MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        else:
            sjn.LIFNode(step_mode="m", backend="cupy")
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


result["unpatched_error"] = construct_unpatched()

# count the fused op calls: a case that silently ran SpikingJelly's torch code would not add any
_orig_multistep = ops.neuron_multistep


def _counting(*args, **kwargs):
    result["fused_calls"] += 1
    return _orig_multistep(*args, **kwargs)


ops.neuron_multistep = _counting

report = snn_cuda.compat.patch_spikingjelly()
result["report"] = str(report)
result["patched"] = [name for name, _ in report.patched]
assert snn_cuda.compat.patch_spikingjelly() is report  # idempotent

T = 8
SURROGATES = [("Sigmoid", 3.0), ("ATan", 2.5), ("PiecewiseQuadratic", 1.2)]
STEM = {"if": "IF", "lif": "LIF", "plif": "ParametricLIF"}


def make(kind, fused, single, v_reset, sg, detach_reset, decay_input, store_v_seq):
    sgf = getattr(sjs, sg[0])(alpha=sg[1])
    kw = dict(v_reset=v_reset, surrogate_function=sgf, detach_reset=detach_reset)
    if kind == "lif":
        kw.update(tau=3.0, decay_input=decay_input)
    elif kind == "plif":
        kw.update(init_tau=2.5, decay_input=decay_input)
    if VERSION == "012":
        if single:  # the single-step nodes' CuPy path: cupy_fp32_inference (eval, float32)
            node = getattr(sjn, f"{STEM[kind]}Node")(cupy_fp32_inference=fused, **kw)
            node.eval()
            return node
        cls = MultiStepLIFNode if kind == "lif" else getattr(sjn, f"MultiStep{STEM[kind]}Node")
        return cls(backend="cupy" if fused else "torch", **kw)
    cls = getattr(sjn, f"{STEM[kind]}Node")
    # 2.0 (patched) takes 'triton' as well as 'cupy' for the fused kernels
    fused_backend = "triton" if (VERSION == "20" and store_v_seq and detach_reset) else "cupy"
    # 0.0.0.0.14 takes backend='cupy' in step_mode='m' only; a model switches to 's' later
    node = cls(step_mode="m", backend=fused_backend if fused else "torch", store_v_seq=store_v_seq, **kw)
    if single:
        node.step_mode = "s"
    return node


def run(node, x, single):
    if single:
        spikes = torch.stack([node(x[t]) for t in range(x.shape[0])])
        v_seq = None
    else:  # two calls: the state carries over
        spikes = torch.cat([node(x[: T // 2]), node(x[T // 2 :])])
        v_seq = getattr(node, "v_seq", None)
    loss = (spikes * torch.linspace(0.5, 1.5, spikes.shape[-1], dtype=x.dtype)).sum() + 0.3 * node.v.sum()
    if isinstance(v_seq, torch.Tensor):
        loss = loss + 0.1 * v_seq.sum()
    return spikes, loss, v_seq


def compare(case, a, b, dtype):
    if list(a.state_dict()) != list(b.state_dict()):
        fail(case, f"state_dict keys {list(a.state_dict())} != {list(b.state_dict())}")
    if sorted(a._memories) != sorted(b._memories):
        fail(case, f"memories {sorted(a._memories)} != {sorted(b._memories)}")
    # float64: the same arithmetic in another order (fused backward) -> a few ulps per step;
    # float32 likewise, in float32 over T steps with the loss's O(1) weights
    return dict(rtol=1e-9, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)


def quirk_tol(kind, opts):
    """0.0.0.0.12's ParametricLIF without decay_input and with v_reset != 0 charges its first step
    from `v - (v - v_reset) * sigmoid(w)` with v still the Python float v_reset: a float32 0-d
    tensor, so its first membrane is v_reset rounded to float32 (|error| <= 2^-24 |v_reset|);
    the fused kernel keeps v_reset exact. That error decays by (1 - k) per step and a hard reset
    erases it: |dv| <= 2^-24 |v_reset|. Through the surrogate it moves x.grad by at most
    T * max|sigma''| * (sum of loss weights per neuron) * |dv| (sigma'' <= alpha^2 here)."""
    if not (VERSION == "012" and kind == "plif" and not opts["decay_input"] and opts["v_reset"]):
        return {}
    dv = 2.0**-24 * abs(opts["v_reset"])
    alpha = opts["sg"][1]
    return {"v": 1.01 * dv, "v_seq": 1.01 * dv, "x.grad": T * alpha**2 * 2.0 * dv}


def check_case(case, kind, single, dtype, opts, seed):
    a = make(kind, True, single, **opts)
    b = make(kind, False, single, **opts)
    if kind == "plif":
        with torch.no_grad():
            a.w.fill_(-0.45)  # not the init value, and 1 - sigmoid(w) is inexact in float32
        b.load_state_dict(a.state_dict())
    tol = compare(case, a, b, dtype)
    quirks = quirk_tol(kind, opts)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, 3, 5, generator=g, dtype=dtype) * 1.5 + 0.6
    outs = []
    for node in (a, b):
        calls = result["fused_calls"]
        xx = x.clone().requires_grad_()
        spikes, loss, v_seq = run(node, xx, single)
        loss.backward()
        outs.append((spikes, node.v, v_seq, xx.grad, {n: p.grad for n, p in node.named_parameters()}))
        if node is a and result["fused_calls"] == calls:
            fail(case, "did not run on the fused kernels")
        if node is b and result["fused_calls"] != calls:
            fail(case, "the torch-backend node ran on the fused kernels, not SpikingJelly's code")
    (sa, va, vsa, ga, pa), (sb, vb, vsb, gb, pb) = outs
    if not torch.equal(sa, sb):
        fail(case, f"spikes differ in {int((sa != sb).sum())} places")
        return
    if sa.sum() == 0 or sa.sum() == sa.numel():
        fail(case, "degenerate input: no or only spikes")
    for what, p, q in [("v", va, vb), ("v_seq", vsa, vsb), ("x.grad", ga, gb)]:
        if (p is None) != (q is None):
            fail(case, f"{what}: {type(p).__name__} vs {type(q).__name__}")
        elif p is not None:
            if p.dtype != q.dtype or p.shape != q.shape:
                fail(case, f"{what}: {p.dtype}{tuple(p.shape)} vs {q.dtype}{tuple(q.shape)}")
                continue
            try:
                extra = quirks.get(what)
                if extra is not None and dtype == torch.float64:
                    if (p - q).abs().max().item() > extra:
                        raise AssertionError(f"max |diff| {(p - q).abs().max().item()} > derived bound {extra}")
                else:
                    torch.testing.assert_close(p, q, **tol)
            except AssertionError as e:
                fail(case, f"{what}: {e}")
    tight = dtype == torch.float64
    for name in pb:
        p, q = pa[name], pb[name]
        # w is a float32 Parameter: SpikingJelly rounds its gradient to float32 at every one of
        # the T steps and sums in float32, the fused backward sums in the state dtype and rounds
        # once: they differ by up to T * 2^-24 * sum|per-step grads| <= T * 2^-23 * |w.grad|-ish
        bound = T * 2.0**-23 * (1.0 + q.abs().max().item()) if tight else 1e-4 * (1.0 + q.abs().max().item())
        if (p - q).abs().max().item() > bound:
            fail(case, f"{name}.grad {p.item()} vs {q.item()} (bound {bound})")
    # reset_net as in that version: the memories back to their initial values
    net = torch.nn.Sequential(a)
    sjf.reset_net(net)
    sjf.reset_net(torch.nn.Sequential(b))
    for key in b._memories:
        ma, mb = a._memories[key], b._memories[key]
        if isinstance(ma, torch.Tensor) or isinstance(mb, torch.Tensor) or ma != mb:
            fail(case, f"after reset_net: {key} = {ma!r} vs {mb!r}")
    result["cases"] += 1


def main():
    seed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback would be a failure here
        for kind, single in itertools.product(("if", "lif", "plif"), (False, True)):
            if VERSION == "012" and single and kind == "plif":
                continue  # 0.0.0.0.12's single-step ParametricLIFNode has no CuPy path
            dtypes = (torch.float32,) if (VERSION == "012" and single) else (torch.float64, torch.float32)
            # CuPy present changes what SpikingJelly imports, not the arithmetic: one surrogate
            surrogates = SURROGATES if CUPY == "hidden" else SURROGATES[:1]
            for dtype, sg, v_reset, detach_reset, decay_input in itertools.product(
                dtypes, surrogates, (0.0, -0.1, None), (False, True), (True, False)
            ):
                if kind == "if" and not decay_input:
                    continue
                seed += 1
                opts = dict(
                    v_reset=v_reset,
                    sg=sg,
                    detach_reset=detach_reset,
                    decay_input=decay_input,
                    store_v_seq=seed % 2 == 0,
                )
                case = f"{kind} {'single' if single else 'multi'} {dtype} {opts}"
                try:
                    check_case(case, kind, single, dtype, opts, seed)
                except Exception:  # noqa: BLE001
                    fail(case, traceback.format_exc(limit=4))
    check_fallback()
    check_half()
    if VERSION == "20":
        try:
            sjn.LIFNode(step_mode="m", backend="cuda")
        except ValueError as e:
            result["bad_backend_error"] = str(e)
    check_unpatch()
    if VERSION != "20":
        check_convert()


def check_half():
    """16-bit inputs: the kernels keep a float32 membrane, SpikingJelly a 16-bit one, so values
    differ by 16-bit rounding (no exact bound once a spike flips); checked: they run fused, .v /
    .v_seq come back in the input's dtype, and spikes agree almost everywhere."""
    out = {}
    for dtype in (torch.float16, torch.bfloat16):
        if VERSION == "012":
            a, b = sjn.MultiStepLIFNode(backend="cupy"), sjn.MultiStepLIFNode(backend="torch")
        else:
            a = sjn.LIFNode(step_mode="m", backend="cupy", store_v_seq=True)
            b = sjn.LIFNode(step_mode="m", backend="torch", store_v_seq=True)
        x = (torch.randn(T, 4, 32, generator=torch.Generator().manual_seed(9)) * 1.5 + 0.6).to(dtype)
        calls = result["fused_calls"]
        sa, sb = a(x), b(x)
        out[str(dtype)] = {
            "fused": result["fused_calls"] > calls,
            "dtypes": [str(t.dtype) for t in (sa, a.v, a.v_seq)] == [str(t.dtype) for t in (sb, b.v, b.v_seq)],
            "spike_mismatch": float((sa != sb).float().mean()),
        }
    result["half"] = out


def check_fallback():
    """An option the kernels cannot reproduce: SpikingJelly's torch code, a warning, the report."""
    # a surrogate of every version that convert does not map (NonzeroSignLogAbs was one until
    # snn_cuda added it), chosen against the map so that adding another edits nothing here
    from snn_cuda.convert import _SJ_SURROGATES

    unmapped = ("QPseudoSpike", "PiecewiseLeakyReLU", "S2NN", "SquarewaveFourierSeries")
    sgf = next(getattr(sjs, n) for n in unmapped if n not in _SJ_SURROGATES and hasattr(sjs, n))
    if VERSION == "012":
        a = sjn.MultiStepLIFNode(surrogate_function=sgf(), backend="cupy")
        b = sjn.MultiStepLIFNode(surrogate_function=sgf(), backend="torch")
    else:
        a = sjn.LIFNode(surrogate_function=sgf(), step_mode="m", backend="cupy")
        b = sjn.LIFNode(surrogate_function=sgf(), step_mode="m", backend="torch")
    x = torch.randn(T, 4, 6, generator=torch.Generator().manual_seed(7)) + 0.8
    calls = result["fused_calls"]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sa, sb = a(x), b(x)
    msgs = [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]
    result["fallback_warned"] = any("runs SpikingJelly's torch code" in m for m in msgs)
    result["fallback_equal"] = bool(torch.equal(sa, sb)) and result["fused_calls"] == calls
    result["fallback_reported"] = any(type(sgf()).__name__ in f for f in report.fallbacks)


def check_unpatch():
    cls = sjn.MultiStepLIFNode if VERSION == "012" else sjn.LIFNode
    patched_forward = cls.__dict__.get("forward" if VERSION == "012" else "multi_step_forward")
    snn_cuda.compat.unpatch_spikingjelly()
    restored = cls.__dict__.get("forward" if VERSION == "012" else "multi_step_forward")
    result["unpatch_restored"] = restored is not patched_forward and not snn_cuda.compat.is_patched()
    result["unpatched_error_after"] = construct_unpatched()


def check_convert():
    """snn_cuda.convert on an already-built legacy model (unpatched SpikingJelly, torch backend):
    every node swapped for an snn_cuda layer, equal outputs and gradients, same state_dict keys,
    the version's reset_net resets the new layers, and a subclass is left with a reason."""
    sgf = sjs.ATan(alpha=2.5)
    if VERSION == "012":
        nodes = [
            sjn.MultiStepLIFNode(tau=2.0, detach_reset=True, surrogate_function=sgf),
            sjn.MultiStepIFNode(v_reset=None, surrogate_function=sgf),
            sjn.MultiStepParametricLIFNode(init_tau=2.5, surrogate_function=sgf),
        ]
        Sub = type("Sub", (sjn.MultiStepLIFNode,), {})
    else:
        nodes = [
            sjn.LIFNode(tau=2.0, detach_reset=True, surrogate_function=sgf, step_mode="m"),
            sjn.IFNode(v_reset=None, surrogate_function=sgf, step_mode="m", store_v_seq=True),
            sjn.ParametricLIFNode(init_tau=2.5, surrogate_function=sgf, step_mode="m"),
        ]
        Sub = type("Sub", (sjn.LIFNode,), {})
    layers = []
    for i, n in enumerate(nodes):
        layers += [torch.nn.Linear(6, 6, dtype=torch.float64), n]
    src = torch.nn.Sequential(*layers, Sub())
    torch.manual_seed(11)
    with torch.no_grad():  # gains that keep every layer firing (not all-or-nothing)
        for lin in layers[::2]:
            lin.weight.normal_(0.0, 1.0)
            lin.bias.fill_(0.4)
    if VERSION != "012":
        src[-1].step_mode = "m"
    conv = snn_cuda.convert(src, inplace=False)
    r = conv.model
    out = {"converted": len(conv.converted), "skipped": [reason for _, _, reason in conv.skipped]}
    out["types"] = [type(r[2 * i + 1]).__name__ for i in range(3)]
    out["keys_equal"] = list(src.state_dict()) == list(r.state_dict())
    x = torch.randn(T, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) + 0.5
    res = []
    for net in (src, r):
        xx = x.clone().requires_grad_()
        y = net[:-1](xx)
        (y * torch.linspace(0.5, 1.5, 6, dtype=torch.float64)).sum().backward()
        res.append((y, xx.grad, [p.grad for p in net.parameters()], net[3].v_seq))
    (ya, ga, pa, va), (yb, gb, pb, vb) = res
    out["spikes_equal"] = bool(torch.equal(ya, yb))
    out["spike_rate"] = float(ya.mean())
    out["grads_close"] = bool(torch.allclose(ga, gb, rtol=1e-9, atol=1e-11)) and all(
        torch.allclose(p, q, rtol=1e-6, atol=1e-7) for p, q in zip(pa, pb)
    )
    out["v_seq_close"] = bool(torch.allclose(va, vb, rtol=1e-9, atol=1e-11))
    sjf.reset_net(r)
    out["reset"] = [r[2 * i + 1].v for i in range(3)] == [0.0, 0.0, 0.0] and r[3].v_seq is None
    result["convert"] = out


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        result["failures"].append(traceback.format_exc())
    print("LEGACY_RESULT " + json.dumps(result))
