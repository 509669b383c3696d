// Surrogate derivatives sigma'(z), z = membrane - threshold. The forward of
// every surrogate is the Heaviside step (neuron.h); only the backward differs.
// Each branch carries a `// surrogate:` declaration line, from which
// tools/gen_model_list.py generates the enum (surrogate_list.h) and the
// Python ids (snn_cuda/_model_list.py); every kernel table spans SG_COUNT.
// The kind is a template argument (no per-element switch in the time loop);
// the parameter (alpha, or slope for FastSigmoid) arrives at run time,
// already rounded to the state type.
#pragma once
#include "common.h"

namespace snn {

template <int SG, typename S>
SNN_HD SNN_INLINE S surrogate_grad(S z, S a) {
  // surrogate: id=0 name=sigmoid enum=SG_SIGMOID class=Sigmoid
  if constexpr (SG == SG_SIGMOID) {
    // Same form as SpikingJelly: s = sigmoid(alpha z), alpha s (1 - s).
    const S s = S(1) / (S(1) + snn_exp(-(a * z)));
    return a * s * (S(1) - s);
  } else if constexpr (SG == SG_ATAN) {
    // surrogate: id=1 name=atan enum=SG_ATAN class=ATan

    const S k = S(1.5707963267948966) * a * z;
    return a / S(2) / (S(1) + k * k);
  } else if constexpr (SG == SG_FAST_SIGMOID) {
    // surrogate: id=2 name=fast_sigmoid enum=SG_FAST_SIGMOID class=FastSigmoid

    const S d = a * snn_abs(z) + S(1);
    return S(1) / (d * d);
  } else if constexpr (SG == SG_PIECEWISE_QUADRATIC) {
    // surrogate: id=3 name=piecewise_quadratic enum=SG_PIECEWISE_QUADRATIC class=PiecewiseQuadratic

    const S g = a - a * a * snn_abs(z);
    return g > S(0) ? g : S(0);
  } else if constexpr (SG == SG_PIECEWISE_EXP) {
    // surrogate: id=4 name=piecewise_exp enum=SG_PIECEWISE_EXP class=PiecewiseExp

    return a / S(2) * snn_exp(-(a * snn_abs(z)));
  } else if constexpr (SG == SG_SOFT_SIGN) {
    // surrogate: id=5 name=soft_sign enum=SG_SOFT_SIGN class=SoftSign

    const S d = S(1) / a + snn_abs(z);
    return S(1) / (S(2) * a * d * d);
  } else if constexpr (SG == SG_ERF) {
    // surrogate: id=6 name=erf enum=SG_ERF class=Erf

    const S az = a * z;
    return a * S(0.56418958354775628) * snn_exp(-(az * az));  // 1/sqrt(pi)
  } else if constexpr (SG == SG_RECT) {
    // surrogate: id=7 name=rect enum=SG_RECT class=Rect

    return snn_abs(z) < S(0.5) / a ? a : S(0);
  } else if constexpr (SG == SG_STRAIGHT_THROUGH) {
    // surrogate: id=8 name=straight_through enum=SG_STRAIGHT_THROUGH class=StraightThrough

    return S(1);
  } else if constexpr (SG == SG_NONZERO_SIGN_LOG_ABS) {
    // surrogate: id=9 name=nonzero_sign_log_abs enum=SG_NONZERO_SIGN_LOG_ABS class=NonzeroSignLogAbs

    // SpikingJelly's 1 / (1/alpha + |z|), not alpha / (1 + |alpha z|): the
    // Python class evaluates the same association.
    return S(1) / (S(1) / a + snn_abs(z));
  } else {
    // A declared kind without its branch fails to compile here instead of
    // taking another surrogate's formula. SG_ANY (-1) is instantiated by
    // models.h's run-time dispatch but never reaches this line.
    static_assert(SG < 0, "surrogate_grad: a declared surrogate has no branch");
    return S(0);
  }
}

// The surrogate chosen at run time (a uniform switch, for kernels that would
// otherwise be compiled once per surrogate: the CUDA declared-model backward).
static const int SG_ANY = -1;

template <typename S>
SNN_HD SNN_INLINE S surrogate_grad_any(int sg, S z, S a) {
  switch (sg) {
#define SNN_SG_CASE(id, E) \
  case E:                  \
    return surrogate_grad<E, S>(z, a);
    SNN_SURROGATE_LIST(SNN_SG_CASE)
#undef SNN_SG_CASE
  }
  return S(0);
}

}  // namespace snn
