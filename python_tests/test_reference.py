"""Known-value tests of the pure-PyTorch reference (the test oracle) and of the surrogates."""

import math

import numpy as np
import pytest
import torch

from snn_cuda import surrogate as sg
from snn_cuda.reference import (
    leaky_reference,
    lif_reference,
    reference_step_leaky,
    reference_step_lif,
    state_dtype_for,
)

F64 = torch.float64


def _col(values, dtype=F64):
    """[T] python values -> [T, 1] tensor (one neuron)."""
    return torch.tensor(values, dtype=dtype).reshape(-1, 1)


# ------------------------------------------------------------------------------------------
# LIF / IF forward: hand-computed values
# ------------------------------------------------------------------------------------------
def test_lif_hard_reset_known_values():
    # tau=2, X=1.5 constant, V0=0, hard reset to 0, threshold 1:
    # H1 = 0 + (1.5 - 0)/2 = 0.75 -> no spike, V1 = 0.75
    # H2 = 0.75 + (1.5 - 0.75)/2 = 1.125 -> spike, V2 = 0
    # then the pattern repeats.
    x = _col([1.5] * 6)
    s, v, v_last = lif_reference(x, tau=2.0)
    assert s.flatten().tolist() == [0, 1, 0, 1, 0, 1]
    assert v.flatten().tolist() == [0.75, 0.0, 0.75, 0.0, 0.75, 0.0]
    assert v_last.tolist() == [0.0]
    _, _, h = reference_step_lif(torch.tensor([1.5], dtype=F64), torch.tensor([0.75], dtype=F64))
    assert h.tolist() == [1.125]


def test_lif_nonzero_reset_and_v0_default():
    # v_reset = -0.5 -> V0 defaults to -0.5; tau = 4; X = 2
    # H1 = -0.5 + (2 - (-0.5 + 0.5))/4 = -0.5 + 0.5 = 0.0 -> no spike
    # H2 = 0 + (2 - 0.5)/4 = 0.375
    # H3 = 0.375 + (2 - 0.875)/4 = 0.65625
    # H4 = 0.65625 + (2 - 1.15625)/4 = 0.8671875
    # H5 = 0.8671875 + (2 - 1.3671875)/4 = 1.025390625 -> spike, V5 = -0.5
    x = _col([2.0] * 5)
    s, v, _ = lif_reference(x, tau=4.0, v_reset=-0.5)
    assert s.flatten().tolist() == [0, 0, 0, 0, 1]
    assert v.flatten().tolist() == [0.0, 0.375, 0.65625, 0.8671875, -0.5]


def test_lif_no_decay_input_known_values():
    # H = V - (V - Vr)/tau + X, tau=2, X=0.6, V0=0:
    # H1 = 0 - 0 + 0.6 = 0.6; H2 = 0.6 - 0.3 + 0.6 = 0.9; H3 = 0.9 - 0.45 + 0.6 = 1.05 -> spike
    x = _col([0.6] * 3)
    s, v, _ = lif_reference(x, tau=2.0, decay_input=False)
    assert s.flatten().tolist() == [0, 0, 1]
    np.testing.assert_allclose(v.flatten().numpy(), [0.6, 0.9, 0.0], rtol=0, atol=1e-15)


def test_lif_soft_reset_known_values():
    # soft reset: Vr = 0 in the charge, V = H - v_threshold S. tau=2, X=3, V0 = 0:
    # H1 = 1.5 -> spike, V1 = 0.5; H2 = 0.5 + (3 - 0.5)/2 = 1.75 -> spike, V2 = 0.75
    # H3 = 0.75 + 1.125 = 1.875 -> spike, V3 = 0.875
    x = _col([3.0] * 3)
    s, v, v_last = lif_reference(x, tau=2.0, v_reset=None)
    assert s.flatten().tolist() == [1, 1, 1]
    assert v.flatten().tolist() == [0.5, 0.75, 0.875]
    assert v_last.tolist() == [0.875]


def test_if_soft_reset_known_values():
    # IF: H = V + X; threshold 1, soft reset.
    x = _col([0.5, 0.75, 0.5, 2.5, -1.0])
    # H: 0.5, 1.25(S,V=.25), 0.75, 3.25(S, V=2.25), 1.25(S, V=.25)
    s, v, _ = lif_reference(x, model="if", v_reset=None)
    assert s.flatten().tolist() == [0, 1, 0, 1, 1]
    assert v.flatten().tolist() == [0.5, 0.25, 0.75, 2.25, 0.25]
    # hard reset, threshold 2
    s, v, _ = lif_reference(x, model="IF", v_threshold=2.0)
    # H: 0.5, 1.25, 1.75, 4.25(S, V=0), -1
    assert s.flatten().tolist() == [0, 0, 0, 1, 0]
    assert v.flatten().tolist() == [0.5, 1.25, 1.75, 0.0, -1.0]


def test_if_floor_known_values_and_gradient():
    # H = max(V + X, v_floor) with v_floor = -1, threshold 1, hard reset
    x = _col([-0.5, -1.0, 0.25, 2.0, -3.0], dtype=F64).requires_grad_(True)
    s, v, _ = lif_reference(x, model="if", v_floor=-1.0)
    # pre: -0.5 ; -1.5 -> floor -1 ; -0.75 ; 1.25 -> spike, V=0 ; -3 -> floor -1
    assert s.flatten().tolist() == [0, 0, 0, 1, 0]
    assert v.flatten().tolist() == [-0.5, -1.0, -0.75, 0.0, -1.0]
    # d V_T / d X: V5 = floor (gradient 0), so everything is 0.
    (g,) = torch.autograd.grad(v[-1].sum(), x, retain_graph=True)
    assert g.flatten().tolist() == [0.0] * 5
    # d V_3 / d X: H2 was floored -> X1, X2 get 0; X3 gets dV3/dH3 = (1 - S3) + (0 - H3) sigma'
    (g,) = torch.autograd.grad(v[2].sum(), x)
    dvdh = 1.0 + (0.0 - (-0.75)) * _sig4(-0.75 - 1.0)
    np.testing.assert_allclose(g.flatten().numpy(), [0, 0, dvdh, 0, 0], rtol=1e-12)


def test_if_floor_tie_gradient_is_one():
    # V + X == v_floor exactly: gradient 1 (not torch.maximum's 0.5)
    x = torch.tensor([[-1.0]], dtype=F64, requires_grad=True)
    s, v, _ = lif_reference(x, model="if", v_floor=-1.0, detach_reset=True)
    (g,) = torch.autograd.grad(v.sum(), x)
    assert g.item() == 1.0
    x = torch.tensor([[-1.0 - 1e-9]], dtype=F64, requires_grad=True)
    s, v, _ = lif_reference(x, model="if", v_floor=-1.0, detach_reset=True)
    (g,) = torch.autograd.grad(v.sum(), x)
    assert g.item() == 0.0


def test_theta_at_zero_lif_fires_leaky_does_not():
    # LIF/IF: Θ(z) = (z >= 0): H == v_threshold exactly fires.
    s, v, _ = lif_reference(_col([1.0]), model="if")
    assert s.item() == 1.0 and v.item() == 0.0
    # LIF: H1 = (2 - 0)/2 = 1.0 == threshold -> spike
    s, _, _ = lif_reference(_col([2.0]), tau=2.0)
    assert s.item() == 1.0
    # Leaky: Θ'(z) = (z > 0): U == threshold does not fire ...
    s, u, _ = leaky_reference(_col([1.0, 0.0]), beta=1.0, reset_mechanism="subtract")
    assert s.flatten().tolist() == [0, 0]
    # ... and R_t (reset) is strict too: U1 = 1.0 -> no subtraction at t=2
    assert u.flatten().tolist() == [1.0, 1.0]
    s, _, _ = leaky_reference(_col([1.0 + 1e-12]), beta=0.5)
    assert s.item() == 1.0


# ------------------------------------------------------------------------------------------
# Leaky forward against a hand-rolled float loop
# ------------------------------------------------------------------------------------------
def _leaky_loop(xs, beta, thr, mech, u0=0.0):
    u, spk, mem = u0, [], []
    for x in xs:
        r = 1.0 if u - thr > 0 else 0.0
        if mech == "subtract":
            u = beta * u + x - r * thr
        elif mech == "zero":
            u = beta * ((1 - r) * u) + x
        else:
            u = beta * u + x
        spk.append(1.0 if u - thr > 0 else 0.0)
        mem.append(u)
    return spk, mem


@pytest.mark.parametrize("mech", ["subtract", "zero", "none"])
def test_leaky_matches_float_loop(mech):
    rng = np.random.default_rng(0)
    xs = rng.normal(0.4, 0.8, size=(20, 6))
    u0 = rng.normal(0.0, 1.0, size=6)
    spk, mem, last = leaky_reference(torch.tensor(xs), torch.tensor(u0), beta=0.8, threshold=0.7, reset_mechanism=mech)
    for n in range(6):
        es, em = _leaky_loop(xs[:, n].tolist(), 0.8, 0.7, mech, u0[n])
        assert spk[:, n].tolist() == es
        assert mem[:, n].tolist() == em  # float64, same op order -> bitwise
    assert torch.equal(last, mem[-1])


def test_leaky_known_values():
    # beta = 0.5, thr = 1, X = [1.5, 0.5, 0.5, 0]
    x = _col([1.5, 0.5, 0.5, 0.0])
    # subtract: U1=1.5 S; U2=0.75+0.5-1=0.25; U3=0.125+0.5=0.625; U4=0.3125
    spk, mem, _ = leaky_reference(x, beta=0.5)
    assert spk.flatten().tolist() == [1, 0, 0, 0]
    assert mem.flatten().tolist() == [1.5, 0.25, 0.625, 0.3125]
    # zero: U1=1.5; U2=0.5*(0*1.5)+0.5=0.5; U3=0.75; U4=0.375
    spk, mem, _ = leaky_reference(x, beta=0.5, reset_mechanism="zero")
    assert mem.flatten().tolist() == [1.5, 0.5, 0.75, 0.375]
    # none: 1.5, 1.25 (S), 1.125 (S), 0.5625
    spk, mem, _ = leaky_reference(x, beta=0.5, reset_mechanism="none")
    assert spk.flatten().tolist() == [1, 1, 1, 0]
    assert mem.flatten().tolist() == [1.5, 1.25, 1.125, 0.5625]
    s, u = reference_step_leaky(torch.tensor([0.5], dtype=F64), torch.tensor([1.5], dtype=F64), beta=0.5)
    assert s.tolist() == [0.0] and u.tolist() == [0.25]


def test_leaky_tensor_beta_clamped_and_gradient():
    x = _col([1.0, 0.5])
    beta = torch.tensor(1.5, dtype=F64, requires_grad=True)  # clamped to 1.0
    _, mem, _ = leaky_reference(x, beta=beta, reset_mechanism="none", threshold=10.0)
    assert mem.flatten().tolist() == [1.0, 1.5]
    (g,) = torch.autograd.grad(mem.sum(), beta)
    assert g.item() == 0.0  # clamp's gradient is 0 outside [0, 1]
    beta = torch.tensor(0.5, dtype=F64, requires_grad=True)
    _, mem, _ = leaky_reference(x, beta=beta, reset_mechanism="none", threshold=10.0)
    (g,) = torch.autograd.grad(mem.sum(), beta)
    assert g.item() == 1.0  # d(beta*1 + 0.5)/dbeta = U1 = 1
    # per-neuron beta
    beta = torch.tensor([0.0, 1.0], dtype=F64)
    _, mem, _ = leaky_reference(torch.ones(2, 2, dtype=F64), beta=beta, reset_mechanism="none", threshold=10.0)
    assert mem.tolist() == [[1.0, 1.0], [1.0, 2.0]]


# ------------------------------------------------------------------------------------------
# dtypes
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_input_upcasts(dtype):
    x = torch.full((4, 3), 1.5, dtype=dtype)
    s, v, v_last = lif_reference(x)
    assert s.dtype == dtype and v.dtype == torch.float32 and v_last.dtype == torch.float32
    assert s[:, 0].tolist() == [0, 1, 0, 1]
    spk, mem, last = leaky_reference(x, beta=0.9)
    assert spk.dtype == dtype and mem.dtype == torch.float32 and last.dtype == torch.float32
    # same result as feeding the fp32 upcast
    s32, v32, _ = lif_reference(x.float())
    assert torch.equal(s.float(), s32) and torch.equal(v, v32)


def test_state_dtypes():
    assert state_dtype_for(torch.float64) == torch.float64
    for d in (torch.float16, torch.bfloat16, torch.float32):
        assert state_dtype_for(d) == torch.float32
    x = torch.rand(3, 2)
    s, v, _ = lif_reference(x)
    assert s.dtype == v.dtype == torch.float32
    s, v, _ = lif_reference(x.double())
    assert s.dtype == v.dtype == torch.float64


def test_fp32_scalars_rounded_and_real_division():
    # tau=3 is not exactly representable as a reciprocal: x/3 vs x*(1/3) differ for some x.
    # The reference must match an explicit fp32 IEEE division.
    torch.manual_seed(0)
    x = torch.randn(1, 4096)
    _, v, _ = lif_reference(x, tau=3.0, v_threshold=100.0)
    expected = torch.zeros(4096) + (x[0] - (torch.zeros(4096) - 0.0)) / torch.tensor(3.0)
    assert torch.equal(v[0], expected)
    recip = x[0] * torch.tensor(1.0 / 3.0, dtype=torch.float32)
    assert not torch.equal(recip, expected)  # the test would notice a reciprocal multiply


def test_v0_and_u0_handling():
    x = torch.zeros(2, 3, dtype=F64)
    v0 = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float32, requires_grad=True)
    s, v, _ = lif_reference(x, v0, model="if")
    assert v.dtype == F64 and v[0].tolist() == [0.25, 0.5, 0.75]
    (g,) = torch.autograd.grad(v[-1].sum(), v0)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    # broadcastable v0 accepted
    _, v, _ = lif_reference(torch.zeros(2, 4, 3), torch.tensor([0.1, 0.2, 0.3]), model="if")
    assert v.shape == (2, 4, 3)
    with pytest.raises(ValueError, match="v0"):
        lif_reference(x, torch.zeros(4))
    with pytest.raises(ValueError, match="u0"):
        leaky_reference(x, torch.zeros(2, 3), beta=0.5)
    # soft reset default v0 = 0 even if v_reset would be something else
    _, v, _ = lif_reference(_col([0.0]), model="if", v_reset=None)
    assert v.item() == 0.0
    _, v, _ = lif_reference(_col([0.0]), model="if", v_reset=-0.25)
    assert v.item() == -0.25


def test_empty_time_dimension():
    x = torch.zeros(0, 3)
    s, v, v_last = lif_reference(x)
    assert s.shape == (0, 3) and v.shape == (0, 3) and v_last.tolist() == [0.0] * 3
    spk, mem, last = leaky_reference(x, beta=0.5)
    assert spk.shape == (0, 3) and last.tolist() == [0.0] * 3


# ------------------------------------------------------------------------------------------
# surrogates
# ------------------------------------------------------------------------------------------
_PI = math.pi


def _closed_forms():
    # (instance, closed-form derivative in python floats, smooth primitive or None)
    return [
        (
            sg.Sigmoid(),
            lambda z: 4 / (1 + math.exp(-4 * z)) * (1 - 1 / (1 + math.exp(-4 * z))),
            lambda z: torch.sigmoid(4 * z),
        ),
        (
            sg.Sigmoid(alpha=1.5),
            lambda z: 1.5 / (1 + math.exp(-1.5 * z)) * (1 - 1 / (1 + math.exp(-1.5 * z))),
            lambda z: torch.sigmoid(1.5 * z),
        ),
        (sg.ATan(), lambda z: 1.0 / (1 + (_PI / 2 * 2 * z) ** 2), lambda z: torch.atan(_PI / 2 * 2 * z) / _PI + 0.5),
        (
            sg.ATan(alpha=3.0),
            lambda z: 1.5 / (1 + (_PI / 2 * 3 * z) ** 2),
            lambda z: torch.atan(_PI / 2 * 3 * z) / _PI + 0.5,
        ),
        (sg.FastSigmoid(), lambda z: 1 / (25 * abs(z) + 1) ** 2, lambda z: z / (1 + 25 * z.abs())),
        (sg.FastSigmoid(slope=100.0), lambda z: 1 / (100 * abs(z) + 1) ** 2, lambda z: z / (1 + 100 * z.abs())),
        (
            sg.PiecewiseQuadratic(),
            lambda z: max(0.0, 1 - abs(z)),
            lambda z: torch.where(z.abs() <= 1, -0.5 * z * z.abs() + z + 0.5, (z > 0).double()),
        ),
        (
            sg.PiecewiseQuadratic(alpha=2.0),
            lambda z: max(0.0, 2 - 4 * abs(z)),
            lambda z: torch.where(z.abs() <= 0.5, -2 * z * z.abs() + 2 * z + 0.5, (z > 0).double()),
        ),
        (
            sg.PiecewiseExp(),
            lambda z: 0.5 * math.exp(-abs(z)),
            lambda z: torch.sign(z) * (1 - torch.exp(-z.abs())) / 2 + 0.5,
        ),
        (
            sg.PiecewiseExp(alpha=3.0),
            lambda z: 1.5 * math.exp(-3 * abs(z)),
            lambda z: torch.sign(z) * (1 - torch.exp(-3 * z.abs())) / 2 + 0.5,
        ),
        (
            sg.SoftSign(),
            lambda z: 1 / (2 * 2 * (0.5 + abs(z)) ** 2),
            lambda z: 0.5 * (2 * z / (1 + (2 * z).abs())) + 0.5,
        ),
        (sg.Erf(), lambda z: 2 / math.sqrt(_PI) * math.exp(-((2 * z) ** 2)), lambda z: torch.erf(2 * z) / 2 + 0.5),
        (sg.Rect(), lambda z: 1.0 if abs(z) < 0.5 else 0.0, None),
        (sg.Rect(alpha=4.0), lambda z: 4.0 if abs(z) < 0.125 else 0.0, None),
        (sg.StraightThrough(), lambda z: 1.0, lambda z: z),
        # primitive: NonzeroSign(z) log(alpha |z| + 1), NonzeroSign(0) = 1 (SpikingJelly's)
        (
            sg.NonzeroSignLogAbs(),
            lambda z: 1 / (1 + abs(z)),
            lambda z: torch.where(z >= 0, 1.0, -1.0).double() * torch.log1p(z.abs()),
        ),
        (
            sg.NonzeroSignLogAbs(alpha=0.25),
            lambda z: 1 / (4 + abs(z)),
            lambda z: torch.where(z >= 0, 1.0, -1.0).double() * torch.log1p(0.25 * z.abs()),
        ),
    ]


_POINTS = [-2.0, -0.7, -0.3, -0.1, 0.0, 0.05, 0.2, 0.45, 0.9, 1.7]


@pytest.mark.parametrize("case", _closed_forms(), ids=lambda c: repr(c[0]))
def test_surrogate_derivative_closed_form_and_primitive(case):
    sur, closed, prim = case
    z = torch.tensor(_POINTS, dtype=F64)
    d = sur.derivative(z)
    assert d.dtype == F64
    np.testing.assert_allclose(d.numpy(), [closed(p) for p in _POINTS], rtol=1e-12, atol=1e-15)
    assert sur.derivative(z.float()).dtype == torch.float32
    if prim is not None:
        # away from z = 0, where abs()/sign() in the primitives have kinks for autograd
        nz = z != 0
        zz = z[nz].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(prim(zz).sum(), zz)
        np.testing.assert_allclose(d[nz].numpy(), g.numpy(), rtol=1e-10, atol=1e-14)
    # spike(): step forward, derivative backward
    zz = z.clone().requires_grad_(True)
    s = sur.spike(zz, strict=False)
    assert s.dtype == F64 and s.tolist() == [float(p >= 0) for p in _POINTS]
    w = torch.linspace(0.5, 2.0, len(_POINTS), dtype=F64)
    (g,) = torch.autograd.grad((s * w).sum(), zz)
    np.testing.assert_allclose(g.numpy(), (w * d).numpy(), rtol=1e-15)
    assert sur.spike(z, strict=True).tolist() == [float(p > 0) for p in _POINTS]
    assert sur(z).tolist() == [float(p >= 0) for p in _POINTS]


def test_surrogate_kind_ids_params_and_repr():
    expected = [
        (sg.Sigmoid, 0, 4.0),
        (sg.ATan, 1, 2.0),
        (sg.FastSigmoid, 2, 25.0),
        (sg.PiecewiseQuadratic, 3, 1.0),
        (sg.PiecewiseExp, 4, 1.0),
        (sg.SoftSign, 5, 2.0),
        (sg.Erf, 6, 2.0),
        (sg.Rect, 7, 1.0),
        (sg.StraightThrough, 8, 0.0),
        (sg.NonzeroSignLogAbs, 9, 1.0),
    ]
    for cls, kid, param in expected:
        inst = cls()
        assert isinstance(inst, sg.SurrogateFunction) and isinstance(inst, torch.nn.Module)
        assert inst.kind_id == kid and inst.param == param and isinstance(inst.param, float)
    assert sg.FastSigmoid(slope=100).slope == 100.0 == sg.FastSigmoid(slope=100).param
    assert sg.ATan(alpha=3).alpha == 3.0
    assert repr(sg.ATan()) == "ATan(alpha=2.0)"
    assert repr(sg.FastSigmoid()) == "FastSigmoid(slope=25.0)"
    assert repr(sg.StraightThrough()) == "StraightThrough()"
    assert repr(sg.NonzeroSignLogAbs(0.5)) == "NonzeroSignLogAbs(alpha=0.5)"
    assert sg.Sigmoid() == sg.Sigmoid(alpha=4) and hash(sg.Sigmoid()) == hash(sg.Sigmoid(4.0))
    assert sg.Sigmoid() != sg.Sigmoid(alpha=2) and sg.Sigmoid(1.0) != sg.Rect(1.0)


def test_user_surrogate_kind_id_none_and_used_by_reference():
    class Triangle(sg.SurrogateFunction):
        def derivative(self, z):
            return (1 - z.abs()).clamp_min(0)

    class MySigmoid(sg.Sigmoid):  # overrides derivative only -> not fusable
        def derivative(self, z):
            return torch.full_like(z, 2.0)

    assert Triangle().kind_id is None and MySigmoid().kind_id is None
    assert sg.Sigmoid.kind_id == 0
    assert Triangle() != Triangle()
    x = torch.tensor([[0.9]], dtype=F64, requires_grad=True)
    s, _, _ = lif_reference(x, model="if", surrogate=MySigmoid(), detach_reset=True)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.item() == 2.0
    s, _, _ = lif_reference(x, model="if", surrogate=Triangle(), detach_reset=True)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.item() == pytest.approx(0.9)


@pytest.mark.parametrize(
    "cls,pname",
    [
        (sg.Sigmoid, "alpha"),
        (sg.ATan, "alpha"),
        (sg.FastSigmoid, "slope"),
        (sg.Rect, "alpha"),
        (sg.Erf, "alpha"),
        (sg.NonzeroSignLogAbs, "alpha"),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_surrogate_param_validation(cls, pname, bad):
    with pytest.raises(ValueError, match=f"{cls.__name__}: {pname} must be a finite positive"):
        cls(bad)


def test_surrogate_get():
    names = {
        "sigmoid": sg.Sigmoid,
        "atan": sg.ATan,
        "fast_sigmoid": sg.FastSigmoid,
        "piecewise_quadratic": sg.PiecewiseQuadratic,
        "piecewise_exp": sg.PiecewiseExp,
        "soft_sign": sg.SoftSign,
        "erf": sg.Erf,
        "rect": sg.Rect,
        "straight_through": sg.StraightThrough,
        "nonzero_sign_log_abs": sg.NonzeroSignLogAbs,
    }
    for name, cls in names.items():
        assert type(sg.get(name)) is cls
        assert type(sg.get(name.upper())) is cls
    assert type(sg.get("FastSigmoid")) is sg.FastSigmoid
    inst = sg.ATan(alpha=5.0)
    assert sg.get(inst) is inst
    with pytest.raises(ValueError, match="fast_sigmoid"):
        sg.get("relu")
    with pytest.raises(ValueError, match="surrogate"):
        sg.get(3)
    with pytest.raises(ValueError, match="surrogate"):
        lif_reference(torch.zeros(1, 1), surrogate="nope")
    # names work in the reference too
    x = torch.tensor([[0.2]], dtype=F64, requires_grad=True)
    s, _, _ = lif_reference(x, model="if", surrogate="straight_through", detach_reset=True)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.item() == 1.0


def test_default_surrogates():
    # LIF default Sigmoid(alpha=4): dS/dX at H - thr = z for IF is sigma'(z)
    x = torch.tensor([[0.75]], dtype=F64, requires_grad=True)
    s, _, _ = lif_reference(x, model="if", detach_reset=True)
    (g,) = torch.autograd.grad(s.sum(), x)
    assert g.item() == pytest.approx(sg.Sigmoid(4.0).derivative(torch.tensor(-0.25, dtype=F64)).item(), rel=1e-14)
    # Leaky default ATan(alpha=2)
    spk, _, _ = leaky_reference(x, beta=0.5)
    (g,) = torch.autograd.grad(spk.sum(), x)
    assert g.item() == pytest.approx(1.0 / (1 + (_PI * -0.25) ** 2), rel=1e-14)


# ------------------------------------------------------------------------------------------
# gradients: hand-derived and against the backward recurrences of docs/neuron_semantics.md
# ------------------------------------------------------------------------------------------
def _sig4(z):
    s = 1 / (1 + math.exp(-4 * z))
    return 4 * s * (1 - s)


def test_lif_gradient_hand_derived():
    # T=2, tau=2, X=[1.5, 1.5], V0=0 (requires grad), hard reset 0, loss = S1 + S2.
    # H1 = 0.75 (z1=-0.25, S1=0), V1 = 0.75; H2 = 1.125 (z2=0.125, S2=1), V2 = 0
    # gH2 = sigma'(z2); dV1/dH1 = (1 - S1) + (0 - H1) sigma'(z1) = 1 - 0.75 sigma'(z1)
    # gH1 = sigma'(z1) + gH2 (1 - 1/tau) dV1/dH1
    # gX_t = gH_t / tau ; gV0 = gH1 (1 - 1/tau)
    x = torch.tensor([[1.5], [1.5]], dtype=F64, requires_grad=True)
    v0 = torch.zeros(1, dtype=F64, requires_grad=True)
    s, _, _ = lif_reference(x, v0, tau=2.0)
    assert s.flatten().tolist() == [0.0, 1.0]
    gx, gv0 = torch.autograd.grad(s.sum(), (x, v0))
    sp1, sp2 = _sig4(-0.25), _sig4(0.125)
    gh2 = sp2
    gh1 = sp1 + gh2 * 0.5 * (1 - 0.75 * sp1)
    np.testing.assert_allclose(gx.flatten().numpy(), [gh1 / 2, gh2 / 2], rtol=1e-13)
    np.testing.assert_allclose(gv0.numpy(), [gh1 * 0.5], rtol=1e-13)


def _lif_backward_recurrence(x, v0, gS, gV, *, model, tau, decay_input, vth, v_reset, detach_reset, v_floor, sp):
    """Forward in float64 python + the backward recurrence of docs/neuron_semantics.md, one neuron."""
    T = len(x)
    hard = v_reset is not None
    vr = v_reset if hard else 0.0
    v, H, S, M = v0, [], [], []
    for t in range(T):
        if model == "lif":
            h = v + (x[t] - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x[t]
            m = 1.0
        else:
            pre = v + x[t]
            m = 1.0 if (v_floor is None or pre >= v_floor) else 0.0
            h = pre if m else v_floor
        s = 1.0 if h - vth >= 0 else 0.0
        v = h * (1 - s) + v_reset * s if hard else h - vth * s
        H.append(h), S.append(s), M.append(m)
    dHdV = (1 - 1 / tau) if model == "lif" else 1.0
    dHdX = (1 / tau) if (model == "lif" and decay_input) else 1.0
    gX = [0.0] * T
    gH_next, dHdV_next = 0.0, 0.0
    for t in reversed(range(T)):
        spt = sp(H[t] - vth)
        if hard:
            dVdH = (1 - S[t]) + (0.0 if detach_reset else (v_reset - H[t]) * spt)
        else:
            dVdH = 1 - (0.0 if detach_reset else vth * spt)
        gH = gS[t] * spt + (gV[t] + gH_next * dHdV_next) * dVdH
        gX[t] = gH * dHdX * M[t]
        gH_next, dHdV_next = gH, dHdV * M[t]
    gv0 = gH_next * dHdV_next
    return gX, gv0


_LIF_CASES = [
    dict(model="lif", tau=2.0, decay_input=True, v_reset=0.0, detach_reset=False, v_floor=None),
    dict(model="lif", tau=3.0, decay_input=False, v_reset=-0.2, detach_reset=False, v_floor=None),
    dict(model="lif", tau=1.7, decay_input=True, v_reset=None, detach_reset=False, v_floor=None),
    dict(model="lif", tau=2.5, decay_input=False, v_reset=None, detach_reset=True, v_floor=None),
    dict(model="lif", tau=2.0, decay_input=True, v_reset=0.1, detach_reset=True, v_floor=None),
    dict(model="if", tau=2.0, decay_input=True, v_reset=0.0, detach_reset=False, v_floor=None),
    dict(model="if", tau=2.0, decay_input=True, v_reset=None, detach_reset=False, v_floor=None),
    dict(model="if", tau=2.0, decay_input=True, v_reset=0.0, detach_reset=False, v_floor=-0.3),
    dict(model="if", tau=2.0, decay_input=True, v_reset=None, detach_reset=True, v_floor=-0.5),
]


@pytest.mark.parametrize("case", _LIF_CASES)
def test_lif_gradient_matches_design_recurrence(case):
    rng = np.random.default_rng(1)
    T, N = 12, 5
    vth = 0.8
    x = rng.normal(0.3, 0.7, size=(T, N))
    v0 = rng.normal(0.0, 0.3, size=N)
    gS = rng.normal(size=(T, N))
    gV = rng.normal(size=(T, N))
    xt = torch.tensor(x, requires_grad=True)
    v0t = torch.tensor(v0, requires_grad=True)
    sur = sg.Sigmoid(alpha=2.0)
    s, v, _ = lif_reference(xt, v0t, v_threshold=vth, surrogate=sur, **case)
    gx, gv0 = torch.autograd.grad((s * torch.tensor(gS)).sum() + (v * torch.tensor(gV)).sum(), (xt, v0t))

    def sp(z):
        q = 1 / (1 + math.exp(-2 * z))
        return 2 * q * (1 - q)

    for n in range(N):
        ex, ev0 = _lif_backward_recurrence(
            x[:, n].tolist(), v0[n], gS[:, n].tolist(), gV[:, n].tolist(), vth=vth, sp=sp, **case
        )
        np.testing.assert_allclose(gx[:, n].numpy(), ex, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gv0[n].item(), ev0, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mech", ["subtract", "zero", "none"])
def test_leaky_gradient_matches_design_recurrence(mech):
    rng = np.random.default_rng(2)
    T, N, beta, thr = 10, 4, 0.85, 0.6
    x = rng.normal(0.3, 0.6, size=(T, N))
    u0 = rng.normal(0.5, 0.5, size=N)
    gS = rng.normal(size=(T, N))
    gU = rng.normal(size=(T, N))
    xt = torch.tensor(x, requires_grad=True)
    u0t = torch.tensor(u0, requires_grad=True)
    spk, mem, _ = leaky_reference(xt, u0t, beta=beta, threshold=thr, reset_mechanism=mech)
    gx, gu0 = torch.autograd.grad((spk * torch.tensor(gS)).sum() + (mem * torch.tensor(gU)).sum(), (xt, u0t))

    def sp(z):  # ATan(alpha=2)
        return 1.0 / (1 + (_PI * z) ** 2)

    for n in range(N):
        u, U, R = u0[n], [], []
        for t in range(T):
            r = 1.0 if u - thr > 0 else 0.0
            if mech == "subtract":
                u = beta * u + x[t, n] - r * thr
            elif mech == "zero":
                u = beta * ((1 - r) * u) + x[t, n]
            else:
                u = beta * u + x[t, n]
            U.append(u), R.append(r)
        a = [beta * (1 - R[t]) if mech == "zero" else beta for t in range(T)]
        g_next, ex = 0.0, [0.0] * T
        for t in reversed(range(T)):
            a_next = a[t + 1] if t + 1 < T else 0.0
            g = gU[t, n] + gS[t, n] * sp(U[t] - thr) + g_next * a_next
            ex[t] = g
            g_next = g
        np.testing.assert_allclose(gx[:, n].numpy(), ex, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gu0[n].item(), g_next * a[0], rtol=1e-10, atol=1e-12)


def test_step_helpers_match_sequence():
    torch.manual_seed(3)
    x = torch.randn(6, 4) + 0.5
    s_seq, v_seq, _ = lif_reference(x, tau=2.5, v_reset=None)
    v = None
    for t in range(6):
        s, v, h = reference_step_lif(x[t], v, tau=2.5, v_reset=None)
        assert torch.equal(s, s_seq[t]) and torch.equal(v, v_seq[t])
    spk_seq, mem_seq, _ = leaky_reference(x, beta=0.7, reset_mechanism="zero")
    u = None
    for t in range(6):
        s, u = reference_step_leaky(x[t], u, beta=0.7, reset_mechanism="zero")
        assert torch.equal(s, spk_seq[t]) and torch.equal(u, mem_seq[t])


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def test_validation_errors():
    x = torch.zeros(3, 2)
    for tau in (1.0, 0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tau"):
            lif_reference(x, tau=tau)
    lif_reference(x, model="if", tau=0.5)  # tau ignored for IF
    with pytest.raises(ValueError, match="model"):
        lif_reference(x, model="lif2")
    with pytest.raises(ValueError, match="v_threshold"):
        lif_reference(x, v_threshold=float("nan"))
    with pytest.raises(ValueError, match="v_reset"):
        lif_reference(x, v_reset=float("inf"))
    with pytest.raises(ValueError, match="v_floor"):
        lif_reference(x, v_floor=-1.0)  # LIF with floor
    with pytest.raises(ValueError, match="v_floor"):
        lif_reference(x, model="if", v_floor=float("nan"))
    with pytest.raises(TypeError, match="x_seq"):
        lif_reference(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="x_seq"):
        lif_reference([[0.0]])
    with pytest.raises(ValueError, match="x_seq"):
        lif_reference(torch.tensor(1.0))
    with pytest.raises(TypeError, match="x_seq"):
        leaky_reference(torch.zeros(3, dtype=torch.int32), beta=0.5)
    for beta in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            leaky_reference(x, beta=beta)
    with pytest.raises(ValueError, match="beta"):
        leaky_reference(x, beta=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="reset_mechanism"):
        leaky_reference(x, beta=0.5, reset_mechanism="hard")
    with pytest.raises(ValueError, match="threshold"):
        leaky_reference(x, beta=0.5, threshold=float("nan"))
    with pytest.raises(ValueError, match="v0"):
        lif_reference(x, torch.zeros(3, 2))
