"""Every bad input raises an error that names the offending parameter."""

from __future__ import annotations

import pytest
import torch

import snn_cuda
from snn_cuda import _ext, ops
from snn_cuda import surrogate as sg

from testing import op_args, requires_cuda

F32, F64 = torch.float32, torch.float64
FWD = torch.ops.snn_cuda.neuron_forward
BWD = torch.ops.snn_cuda.neuron_backward

LAYERS = {
    "lif": lambda **kw: snn_cuda.LIF(**kw),
    "if": lambda **kw: snn_cuda.IF(**kw),
    "leaky": lambda **kw: snn_cuda.Leaky(beta=0.9, **kw),
}
BACKENDS = ["fused", "torch", "auto"]


def _fwd_args(x, v0=None, save=True, **over):
    return op_args(FWD.default, save=save, x=x, v0=v0, **over)


def _bwd_args(saved, gs=None, gv=None, gvl=None, v0=None, **over):
    return op_args(BWD.default, saved=saved, grad_spikes=gs, grad_v_seq=gv, grad_v_last=gvl, v0=v0, **over)


# ------------------------------------------------------------------------------------------
# inputs to the layers
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_zero_dim_input_in_multi_step(kind, backend):
    m = LAYERS[kind](backend=backend)
    with pytest.raises(ValueError, match=r"x must have a leading time dimension"):
        m(torch.tensor(1.0))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_empty_time_dimension(kind, backend):
    m = LAYERS[kind](backend=backend)
    with pytest.raises(ValueError, match=r"x must have at least one time step"):
        m(torch.zeros(0, 3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_non_floating_input(kind, backend):
    m = LAYERS[kind](backend=backend)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor.*int64"):
        m(torch.ones(3, 4, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor"):
        m([[1.0, 2.0]])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_initial_state_shape_mismatch(kind, backend):
    m = LAYERS[kind](backend=backend)
    bad = torch.zeros(5)
    if kind == "leaky":
        m.mem = bad
        name = "mem"
    else:
        m.v = bad
        name = "membrane state v"
    with pytest.raises(ValueError, match=rf"{name} has shape \(5,\) but the input needs \(2, 3\).*reset_net"):
        m(torch.zeros(4, 2, 3))
    if kind == "leaky":  # the explicit snnTorch-style membrane argument too
        m = LAYERS[kind](backend=backend, step_mode="s")
        with pytest.raises(ValueError, match=r"mem has shape \(4,\)"):
            m(torch.zeros(2, 3), torch.zeros(4))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(LAYERS))
def test_bad_constant_input_T(kind, backend):
    m = LAYERS[kind](backend=backend)
    x = torch.zeros(2, 3)
    for T in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"T must be a positive int"):
            m(x, T=T)
    s = LAYERS[kind](backend=backend, step_mode="s")
    with pytest.raises(ValueError, match=r"T .*only accepted in step_mode='m'"):
        s(x, T=3)


def test_leaky_mem_argument_non_finite():
    m = snn_cuda.Leaky(beta=0.5, step_mode="s")
    with pytest.raises(ValueError, match=r"mem must be finite"):
        m(torch.zeros(3), float("nan"))


@requires_cuda
@pytest.mark.parametrize("kind", list(LAYERS))
def test_mixed_devices(kind):
    m = LAYERS[kind](backend="fused")
    state = torch.zeros(2, 3)  # CPU state, CUDA input
    if kind == "leaky":
        m.mem = state
    else:
        m.v = state
    with pytest.raises(ValueError, match=r"is on cpu but the input is on cuda"):
        m(torch.zeros(4, 2, 3, device="cuda"))
    x = torch.zeros(4, 2, 3, device="cuda")
    with pytest.raises(ValueError, match=r"v0 is on cpu but the input is on cuda"):
        FWD(*_fwd_args(x, torch.zeros(2, 3)))


# ------------------------------------------------------------------------------------------
# constructor parameters
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [1.0, 0.5, -2.0, 0.0])
def test_tau_must_exceed_one(tau):
    with pytest.raises(ValueError, match=r"tau must be > 1"):
        snn_cuda.LIF(tau=tau)


@pytest.mark.parametrize("tau", [float("inf"), float("nan"), float("-inf")])
def test_tau_must_be_finite(tau):
    with pytest.raises(ValueError, match=r"tau must be finite"):
        snn_cuda.LIF(tau=tau)


@pytest.mark.parametrize("tau", ["2", None, True, torch.tensor([2.0, 3.0])])
def test_tau_must_be_a_number(tau):
    with pytest.raises(TypeError, match=r"tau must be a real number"):
        snn_cuda.LIF(tau=tau)


@pytest.mark.parametrize("beta", [-0.1, 1.5, float("nan"), float("inf")])
def test_constant_beta_outside_unit_interval(beta):
    with pytest.raises(ValueError, match=r"beta must be"):
        snn_cuda.Leaky(beta=beta)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize(
    "layer,param",
    [
        ("lif", "v_threshold"),
        ("lif", "v_reset"),
        ("if", "v_threshold"),
        ("if", "v_reset"),
        ("if", "v_floor"),
        ("leaky", "threshold"),
    ],
)
def test_non_finite_thresholds(layer, param, value):
    with pytest.raises(ValueError, match=rf"{param} must be finite"):
        if layer == "leaky":
            snn_cuda.Leaky(beta=0.5, **{param: value})
        else:
            LAYERS[layer](**{param: value})


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -1.0])
@pytest.mark.parametrize(
    "cls,param",
    [
        (sg.Sigmoid, "alpha"),
        (sg.ATan, "alpha"),
        (sg.PiecewiseQuadratic, "alpha"),
        (sg.PiecewiseExp, "alpha"),
        (sg.SoftSign, "alpha"),
        (sg.Erf, "alpha"),
        (sg.Rect, "alpha"),
        (sg.FastSigmoid, "slope"),
    ],
)
def test_bad_surrogate_parameter(cls, param, value):
    with pytest.raises(ValueError, match=rf"{cls.__name__}: {param} must be a finite positive number"):
        cls(value)


def test_surrogate_parameter_type():
    with pytest.raises(TypeError, match=r"alpha must be a finite positive number"):
        sg.ATan("2")


@pytest.mark.parametrize("kind", list(LAYERS))
def test_unknown_surrogate_name(kind):
    with pytest.raises(ValueError, match=r"surrogate: unknown surrogate 'nope'.*'sigmoid'"):
        LAYERS[kind](surrogate="nope")
    with pytest.raises(ValueError, match=r"surrogate: expected a SurrogateFunction"):
        LAYERS[kind](surrogate=3)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_surrogate_by_name_accepted(kind):
    m = LAYERS[kind](surrogate="fast-sigmoid")
    assert isinstance(m.surrogate, sg.FastSigmoid)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_unknown_step_mode_and_backend(kind):
    with pytest.raises(ValueError, match=r"step_mode must be one of 's', 'm', got 'multi'"):
        LAYERS[kind](step_mode="multi")
    with pytest.raises(ValueError, match=r"backend must be one of 'auto', 'fused', 'torch', 'cupy', got 'cuda'"):
        LAYERS[kind](backend="cuda")


def test_unknown_reset_mechanism():
    with pytest.raises(ValueError, match=r"reset_mechanism must be one of .*'subtract'.*got 'hard'"):
        snn_cuda.Leaky(beta=0.5, reset_mechanism="hard")


def test_functional_setters_validate():
    net = torch.nn.Sequential(snn_cuda.LIF())
    with pytest.raises(ValueError, match=r"step_mode must be one of"):
        snn_cuda.functional.set_step_mode(net, "x")
    with pytest.raises(ValueError, match=r"backend must be one of"):
        snn_cuda.functional.set_backend(net, "x")


class _PySurrogate(sg.SurrogateFunction):
    def derivative(self, z):
        return torch.ones_like(z)


class _PyATan(sg.ATan):  # a built-in's subclass that redefines the derivative is Python-only too
    def derivative(self, z):
        return torch.ones_like(z)


@pytest.mark.parametrize("surrogate", [_PySurrogate(), _PyATan()], ids=["base", "atan-subclass"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_fused_backend_rejects_python_surrogate(kind, surrogate):
    m = LAYERS[kind](backend="fused", surrogate=surrogate)
    name = type(surrogate).__name__
    with pytest.raises(RuntimeError, match=rf"backend='fused' cannot run here: the Python-defined surrogate {name}"):
        m(torch.zeros(3, 2))


# ------------------------------------------------------------------------------------------
# CUDA tensors with a CPU-only build
# ------------------------------------------------------------------------------------------
class _FakeCudaTensor:
    """Enough of a CUDA float32 tensor for the backend decision (no GPU needed)."""

    dtype = F32
    device = torch.device("cuda", 0)


def test_cuda_tensor_with_cpu_only_build(monkeypatch):
    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    assert not _ext.cuda_available()
    reason = _ext.unavailable_reason("cuda")
    # the message says what is missing and how to build with CUDA
    assert "without CUDA kernels" in reason
    assert "nvcc" in reason and "CUDA_HOME" in reason and "SNN_CUDA_FORCE_CUDA=1" in reason
    assert "pip install" in reason
    assert snn_cuda.build_info()["cuda"] is False and snn_cuda.build_info()["cuda_reason"] == reason
    for kind in LAYERS:
        m = LAYERS[kind](backend="fused")
        with pytest.raises(RuntimeError, match=r"backend='fused' cannot run here: .*built without CUDA kernels"):
            m._use_fused(_FakeCudaTensor(), m.surrogate)


def test_cuda_tensor_with_cpu_only_build_auto_falls_back(monkeypatch):
    from snn_cuda import neuron as neuron_mod

    monkeypatch.setattr(_ext, "_CUDA_OK", False)
    monkeypatch.setattr(neuron_mod, "_warned", set())
    m = snn_cuda.LIF()
    with pytest.warns(RuntimeWarning, match=r"falling back to the reference backend.*built without CUDA"):
        assert m._use_fused(_FakeCudaTensor(), m.surrogate) is False


def test_extension_not_loaded_reason(monkeypatch):
    monkeypatch.setattr(_ext, "loaded", False)
    monkeypatch.setattr(_ext, "load_error", "disabled by SNN_CUDA_DISABLE_EXTENSION")
    assert _ext.unavailable_reason("cpu") == "disabled by SNN_CUDA_DISABLE_EXTENSION"
    assert _ext.unavailable_reason("cuda") == "disabled by SNN_CUDA_DISABLE_EXTENSION"


def test_unknown_device_type_reason():
    assert "no fused kernels for device type 'meta'" in _ext.unavailable_reason("meta")


# ------------------------------------------------------------------------------------------
# the raw ops
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model,reset",
    [
        (ops.MODEL_LIF, ops.RESET_NONE),
        (ops.MODEL_IF, 2),
        (4, 0),
        (-1, 0),
        (ops.MODEL_PLIF, ops.RESET_NONE),
        (ops.MODEL_LEAKY, 3),
        (ops.MODEL_LIF, -1),
    ],
)
def test_raw_forward_unknown_model_reset(model, reset):
    with pytest.raises(ValueError, match=rf"\(model, reset\) = \({model}, {reset}\) is not a compiled neuron"):
        FWD(*_fwd_args(torch.zeros(3, 4), model=model, reset=reset))


# the count from the generated list (the kernels' SG_COUNT), so a new surrogate edits nothing here
_N_SG = len(sg.SURROGATES)


@pytest.mark.parametrize("sid", [-1, _N_SG, 100])
def test_raw_ops_unknown_surrogate_id(sid):
    with pytest.raises(ValueError, match=rf"surrogate id must be in \[0, {_N_SG}\), got {sid}"):
        FWD(*_fwd_args(torch.zeros(3, 4), surrogate=sid))
    saved = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=rf"surrogate id must be in \[0, {_N_SG}\), got {sid}"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 4), surrogate=sid))


def test_raw_ops_non_finite_surrogate_parameter():
    with pytest.raises(ValueError, match=r"surrogate parameter must be finite"):
        FWD(*_fwd_args(torch.zeros(3, 4), surrogate_param=float("nan")))


@pytest.mark.parametrize(
    "name,value,msg",
    [
        ("tau", 1.0, r"tau must be a finite number > 1, got 1"),
        ("tau", float("nan"), r"tau must be a finite number > 1"),
        ("v_threshold", float("inf"), r"v_threshold must be finite"),
        ("v_reset", float("nan"), r"v_reset must be finite"),
        ("v_init", float("inf"), r"v_init must be finite"),
    ],
)
def test_raw_forward_bad_scalars(name, value, msg):
    with pytest.raises(ValueError, match=msg):
        FWD(*_fwd_args(torch.zeros(3, 4), **{name: value}))
    with pytest.raises(ValueError, match=msg):
        BWD(*_bwd_args(torch.zeros(3, 4), gs=torch.ones(3, 4), **{name: value}))


def test_raw_forward_bad_beta_and_floor():
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\], got 1.5"):
        FWD(*_fwd_args(torch.zeros(3, 4), model=ops.MODEL_LEAKY, reset=0, beta=1.5))
    with pytest.raises(ValueError, match=r"v_floor is only supported by the IF neuron"):
        FWD(*_fwd_args(torch.zeros(3, 4), has_floor=True))
    with pytest.raises(ValueError, match=r"v_floor must be finite"):
        FWD(*_fwd_args(torch.zeros(3, 4), model=ops.MODEL_IF, has_floor=True, v_floor=float("-inf")))
    # a floor on a LIF through the layer API does not exist; IF checks it at construction
    with pytest.raises(ValueError, match=r"v_floor must be finite"):
        snn_cuda.IF(v_floor=float("nan"))


def test_raw_forward_non_floating_x():
    with pytest.raises(TypeError, match=r"x must be float32, float64, float16 or bfloat16, got Int"):
        FWD(*_fwd_args(torch.zeros(3, 4, dtype=torch.int32)))


@pytest.mark.parametrize(
    "xdt,vdt", [(F32, F64), (F64, F32), (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16)]
)
def test_raw_forward_v0_wrong_dtype(xdt, vdt):
    expect = "Double" if xdt == F64 else "Float"
    with pytest.raises(TypeError, match=rf"v0 must have the state dtype {expect}"):
        FWD(*_fwd_args(torch.zeros(3, 4, dtype=xdt), torch.zeros(4, dtype=vdt)))


def test_raw_forward_v0_wrong_shape():
    with pytest.raises(ValueError, match=r"v0 must have shape \[4\], got \[3\]"):
        FWD(*_fwd_args(torch.zeros(3, 4), torch.zeros(3)))
    with pytest.raises(ValueError, match=r"v0 must have shape \[3, 4\]"):
        FWD(*_fwd_args(torch.zeros(3, 4), torch.zeros(4), T=2))  # constant input: v0 is x's shape


def test_raw_forward_bad_T():
    with pytest.raises(ValueError, match=r"x must have a leading time dimension"):
        FWD(*_fwd_args(torch.tensor(1.0)))
    with pytest.raises(ValueError, match=r"x must have at least one time step"):
        FWD(*_fwd_args(torch.zeros(0, 4)))
    with pytest.raises(ValueError, match=r"T must be -1 \(taken from x\) for a sequence input, got -2"):
        FWD(*_fwd_args(torch.zeros(3, 4), T=-2))
    with pytest.raises(ValueError, match=r"T must be >= 1 for a constant input, got 0"):
        FWD(*_fwd_args(torch.zeros(3, 4), T=0))


def test_raw_backward_empty_saved():
    x = torch.zeros(3, 4)
    _, saved, _, _ = FWD(*_fwd_args(x, save=False))
    assert saved.numel() == 0
    with pytest.raises(ValueError, match=r"saved must be the \[T, \.\.\.\] tensor the forward saved"):
        BWD(*_bwd_args(saved, gvl=torch.ones(4)))
    with pytest.raises(ValueError, match=r"saved must be the \[T, \.\.\.\] tensor"):
        BWD(*_bwd_args(torch.zeros(0, 4), gs=torch.ones(0, 4)))


def test_raw_forward_without_save_then_backward_is_a_clear_error():
    # The op called directly with save_for_backward=False while x requires grad: the backward
    # cannot run, and says why.
    x = torch.zeros(3, 4, requires_grad=True)
    spikes, _, _, v_last = FWD(*_fwd_args(x, save=False))
    with pytest.raises(ValueError, match=r"saved must be the \[T, \.\.\.\] tensor the forward saved"):
        v_last.sum().backward()


def test_raw_backward_bad_grads():
    saved = torch.zeros(3, 4)
    with pytest.raises(TypeError, match=r"saved must be Float, got Double"):
        BWD(*_bwd_args(saved.double(), gs=torch.ones(3, 4)))
    with pytest.raises(ValueError, match=r"grad_spikes must have shape \[3, 4\], got \[3, 5\]"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 5)))
    with pytest.raises(TypeError, match=r"grad_spikes must be Half, got Float"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 4), x_dtype=torch.float16))
    with pytest.raises(TypeError, match=r"grad_v_seq must be Float, got Half"):
        BWD(*_bwd_args(saved, gv=torch.ones(3, 4, dtype=torch.float16)))
    with pytest.raises(ValueError, match=r"grad_v_last must have shape \[4\], got \[3, 4\]"):
        BWD(*_bwd_args(saved, gvl=torch.ones(3, 4)))
    with pytest.raises(TypeError, match=r"x_dtype must be float32, float64, float16 or bfloat16"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 4), x_dtype=torch.int64))
    with pytest.raises(ValueError, match=r"T \(5\) must match saved.size\(0\) \(3\) for a constant input"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 4), T=5))
    with pytest.raises(ValueError, match=r"v0 must have shape \[4\]"):
        BWD(*_bwd_args(saved, gs=torch.ones(3, 4), v0=torch.zeros(5), model=ops.MODEL_LEAKY))


def test_raw_backward_dtype_mismatch_with_f64_saved():
    saved = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(TypeError, match=r"grad_v_last must be Double, got Float"):
        BWD(*_bwd_args(saved, gvl=torch.ones(4), x_dtype=F64))


def test_reference_errors_name_parameters():
    from snn_cuda.reference import leaky_reference, lif_reference

    x = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"model must be one of"):
        lif_reference(x, model="lfi")
    with pytest.raises(ValueError, match=r"v_floor is only supported for model='if'"):
        lif_reference(x, model="lif", v_floor=0.0)
    with pytest.raises(ValueError, match=r"v0 must have shape"):
        lif_reference(x, torch.zeros(5))
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        leaky_reference(x, beta=2.0)
    with pytest.raises(ValueError, match=r"reset_mechanism must be one of"):
        leaky_reference(x, beta=0.5, reset_mechanism="zeros")
    with pytest.raises(TypeError, match=r"x_seq must be a floating tensor"):
        lif_reference(torch.zeros(3, 4, dtype=torch.int64))
