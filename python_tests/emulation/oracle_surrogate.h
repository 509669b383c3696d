// The emulation oracles' surrogate derivatives, shared by emu_neuron.cpp and
// emu_model.cpp so that a new surrogate needs one oracle entry, not one per
// driver. Transcribed from the table in docs/neuron_semantics.md; nothing here
// calls csrc/kernels/surrogate.h, which is what the oracle checks.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

// A declared surrogate without an oracle entry would meet the NaN default
// branch at run time; pinning the count stops it at compile time instead.
static_assert(snn::SG_COUNT == 10,
              "oracle_surrogate.h: a surrogate was added; give ref_sg, kSgName, kSgDefault and kSgAlt its entry");

const char* const kSgName[] = {"Sigmoid",  "ATan", "FastSigmoid", "PiecewiseQuadratic", "PiecewiseExp",
                               "SoftSign", "Erf",  "Rect",        "StraightThrough",    "NonzeroSignLogAbs"};
// The matrix runs each surrogate at its default parameter and at a second
// value that moves its kinks and tails.
const double kSgDefault[] = {4.0, 2.0, 25.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 1.0};
const double kSgAlt[] = {2.5, 1.25, 100.0, 0.75, 2.0, 0.5, 1.5, 0.8, 1.0, 0.3};
static_assert(sizeof(kSgName) / sizeof(kSgName[0]) == snn::SG_COUNT &&
                  sizeof(kSgDefault) / sizeof(kSgDefault[0]) == snn::SG_COUNT &&
                  sizeof(kSgAlt) / sizeof(kSgAlt[0]) == snn::SG_COUNT,
              "oracle_surrogate.h: one kSgName/kSgDefault/kSgAlt entry per surrogate");

// Surrogate derivative g'(z) in the caller's arithmetic R.
template <typename R>
R ref_sg(int kind, R z, R alpha) {
  const R pi = (R)3.14159265358979323846;
  switch (kind) {
    case 0: {  // Sigmoid: alpha s (1 - s), s = sigmoid(alpha z)
      const R s = R(1) / (R(1) + std::exp(-(alpha * z)));
      return alpha * s * (R(1) - s);
    }
    case 1: {  // ATan: (alpha/2) / (1 + (pi/2 alpha z)^2)
      const R k = pi / R(2) * alpha * z;
      return alpha / R(2) / (R(1) + k * k);
    }
    case 2: {  // FastSigmoid: 1 / (slope |z| + 1)^2
      const R d = alpha * std::fabs(z) + R(1);
      return R(1) / (d * d);
    }
    case 3:  // PiecewiseQuadratic: max(0, alpha - alpha^2 |z|)
      return std::max(R(0), alpha - alpha * alpha * std::fabs(z));
    case 4:  // PiecewiseExp: (alpha/2) exp(-alpha |z|)
      return alpha / R(2) * std::exp(-(alpha * std::fabs(z)));
    case 5: {  // SoftSign: 1 / (2 alpha (1/alpha + |z|)^2)
      const R d = R(1) / alpha + std::fabs(z);
      return R(1) / (R(2) * alpha * (d * d));
    }
    case 6: {  // Erf: (alpha / sqrt(pi)) exp(-(alpha z)^2)
      const R az = alpha * z;
      return alpha / std::sqrt(pi) * std::exp(-(az * az));
    }
    case 7:  // Rect: alpha if |z| < 0.5/alpha else 0
      return std::fabs(z) < R(0.5) / alpha ? alpha : R(0);
    case 8:  // StraightThrough
      return R(1);
    case 9:  // NonzeroSignLogAbs: 1 / (1/alpha + |z|)
      return R(1) / (R(1) / alpha + std::fabs(z));
    default:
      return std::numeric_limits<R>::quiet_NaN();
  }
}
