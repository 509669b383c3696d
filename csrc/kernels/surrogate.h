// Surrogate derivatives sigma'(z), z = membrane - threshold. The forward of
// every surrogate is the Heaviside step (neuron.h); only the backward differs.
// The kind is a template argument (no per-element switch in the time loop);
// the parameter (alpha, or slope for FastSigmoid) arrives at run time,
// already rounded to the state type.
#pragma once
#include "common.h"

namespace snn {

template <int SG, typename S>
SNN_HD SNN_INLINE S surrogate_grad(S z, S a) {
  if (SG == SG_SIGMOID) {
    // Same form as SpikingJelly: s = sigmoid(alpha z), alpha s (1 - s).
    const S s = S(1) / (S(1) + snn_exp(-(a * z)));
    return a * s * (S(1) - s);
  } else if (SG == SG_ATAN) {
    const S k = S(1.5707963267948966) * a * z;
    return a / S(2) / (S(1) + k * k);
  } else if (SG == SG_FAST_SIGMOID) {
    const S d = a * snn_abs(z) + S(1);
    return S(1) / (d * d);
  } else if (SG == SG_PIECEWISE_QUADRATIC) {
    const S g = a - a * a * snn_abs(z);
    return g > S(0) ? g : S(0);
  } else if (SG == SG_PIECEWISE_EXP) {
    return a / S(2) * snn_exp(-(a * snn_abs(z)));
  } else if (SG == SG_SOFT_SIGN) {
    const S d = S(1) / a + snn_abs(z);
    return S(1) / (S(2) * a * d * d);
  } else if (SG == SG_ERF) {
    const S az = a * z;
    return a * S(0.56418958354775628) * snn_exp(-(az * az));  // 1/sqrt(pi)
  } else if (SG == SG_RECT) {
    return snn_abs(z) < S(0.5) / a ? a : S(0);
  } else {  // SG_STRAIGHT_THROUGH
    return S(1);
  }
}

}  // namespace snn
