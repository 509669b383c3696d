// The neuron math, written once for the CPU kernels, the CUDA kernels, the
// NVRTC (CuPy) path and the host emulation. docs/neuron_semantics.md is the
// contract; every expression below is evaluated in the order the contract
// writes it, in the state type, so the fused spikes equal the reference's bit
// for bit (builds use -ffp-contract=off / --fmad=false: no FMA contraction).
#pragma once
#include "common.h"
#include "surrogate.h"

namespace snn {

// Scalars, already rounded to the state type S by the launcher.
template <typename S>
struct Coeffs {
  S tau;      // LIF time constant; ParametricLIF: the charge factor k = sigmoid(w)
  S v_th;     // v_threshold (LIF/IF) or threshold (Leaky)
  S v_reset;  // LIF/IF hard reset value (0 under soft reset)
  S v_floor;  // IF floor (when has_floor)
  S beta;     // Leaky decay
  S sg;       // surrogate parameter
  bool decay_input;
  bool has_floor;
  bool detach_reset;
  // ParametricLIF charges by multiplying by k where LIF divides by tau (the
  // two round differently, and each must match its own reference bit for bit).
  bool plif;
  // Backward only: accumulate the gradients of the decay parameter (k or
  // beta) and of the threshold. Runtime switches: they cost nothing when off
  // and would otherwise double every kernel instantiation.
  bool learn_decay;
  bool learn_th;
};

// Heaviside as SpikingJelly (fires at 0) and as snnTorch (strict).
template <typename S>
SNN_HD SNN_INLINE S heaviside(S z) {
  return z >= S(0) ? S(1) : S(0);
}
template <typename S>
SNN_HD SNN_INLINE S heaviside_strict(S z) {
  return z > S(0) ? S(1) : S(0);
}

// ---------------------------------------------------------------------------
// Forward. One step of one neuron: v (in/out) is the state V_{t-1} -> V_t
// (U for Leaky); returns the spike. `saved` receives what backward needs:
//   LIF/IF:  H_t, except with an IF floor the pre-floor potential V_{t-1}+X_t,
//            from which backward recovers both H_t and the floor's 0/1
//            gradient (H alone cannot tell V+X == floor from V+X < floor).
//   Leaky:   U_t (the membrane the layer returns anyway).
// ---------------------------------------------------------------------------
// The membrane after a step of the LIF family from its charged potential H
// (reset); also returns the spike. Shared by the forward and by the backward,
// which rebuilds V_{t-1} from a saved H_{t-1} bit for bit.
template <int RESET, typename S>
SNN_HD SNN_INLINE S fire_reset(const Coeffs<S>& c, S h, S& v) {
  const S s = heaviside(h - c.v_th);
  if (RESET == RESET_HARD) {
    v = h * (S(1) - s) + c.v_reset * s;
  } else {
    v = h - c.v_th * s;
  }
  return s;
}

// H from what forward_step saved (the IF floor applied to the pre-floor value).
template <int MODEL, typename S>
SNN_HD SNN_INLINE S h_from_saved(const Coeffs<S>& c, S saved) {
  if (MODEL == MODEL_IF && c.has_floor) return saved < c.v_floor ? c.v_floor : saved;
  return saved;
}

// The state after step t from what forward_step saved at t: V_t for LIF/IF,
// U_t itself for Leaky.
template <int MODEL, int RESET, typename S>
SNN_HD SNN_INLINE S state_from_saved(const Coeffs<S>& c, S saved) {
  if (MODEL == MODEL_LEAKY) return saved;
  S v;
  fire_reset<RESET, S>(c, h_from_saved<MODEL, S>(c, saved), v);
  return v;
}

template <int MODEL, int RESET, typename S>
SNN_HD SNN_INLINE S forward_step(const Coeffs<S>& c, S& v, S x, S& saved) {
  if (MODEL == MODEL_LEAKY) {
    const S r = heaviside_strict(v - c.v_th);  // reset from the previous step
    S u;
    if (RESET == RESET_SOFT) {
      u = c.beta * v + x - r * c.v_th;
    } else if (RESET == RESET_HARD) {
      u = c.beta * ((S(1) - r) * v) + x;
    } else {
      u = c.beta * v + x;
    }
    saved = u;
    v = u;
    return heaviside_strict(u - c.v_th);
  } else {
    const S vr = RESET == RESET_HARD ? c.v_reset : S(0);
    S h;
    if (MODEL == MODEL_LIF) {
      if (c.plif) {
        h = c.decay_input ? v + (x - (v - vr)) * c.tau : v - (v - vr) * c.tau + x;
      } else {
        h = c.decay_input ? v + (x - (v - vr)) / c.tau : v - (v - vr) / c.tau + x;
      }
      saved = h;
    } else {
      const S p = v + x;
      saved = p;
      h = (c.has_floor && p < c.v_floor) ? c.v_floor : p;  // NaN passes, as in the reference
    }
    return fire_reset<RESET, S>(c, h, v);
  }
}

// ---------------------------------------------------------------------------
// Backward. One step in reverse time for one neuron.
//   saved:   what forward_step stored at step t
//   prev:    the state before step t (V_{t-1}, U_{t-1}; the initial state at
//            t = 0). Read by Leaky, and by ParametricLIF's decay gradient.
//   x:       X_t under decay_input, else 0; read only by ParametricLIF's decay
//            gradient (dH/dk = X_t - (V_{t-1} - Vr), or -(V_{t-1} - Vr): one
//            expression for both, so that the CPU rows need no select on a
//            flag and vectorise)
//   gs:      gradient on S_t
//   gv:      gradient on the membrane output at t (V_t / U_t), 0 if none
//   carry:   in: gradient reaching V_t from step t+1 (gH_{t+1} dH/dV);
//            out: gradient reaching V_{t-1} (at t = 0 this is grad of v0)
//   g_decay, g_th: per-neuron sums over time of the parameter gradients
//            (updated when c.learn_decay / c.learn_th)
// Returns gX_t.
// ---------------------------------------------------------------------------
template <int MODEL, int RESET, int SG, typename S>
SNN_HD SNN_INLINE S backward_step(const Coeffs<S>& c, S saved, S prev, S x, S gs, S gv, S& carry, S& g_decay, S& g_th) {
  if (MODEL == MODEL_LEAKY) {
    const S u = saved;
    const S sgu = surrogate_grad<SG, S>(u - c.v_th, c.sg);
    const S gu = gv + gs * sgu + carry;
    const S r = heaviside_strict(prev - c.v_th);
    S a = c.beta;
    if (RESET == RESET_HARD) a = c.beta * (S(1) - r);
    if (c.learn_decay) g_decay += gu * (RESET == RESET_HARD ? (S(1) - r) * prev : prev);
    // dU/dthreshold: -sigma' through the spike, -R through the subtraction
    // (R itself is detached).
    if (c.learn_th) g_th += RESET == RESET_SOFT ? -(gs * sgu) - r * gu : -(gs * sgu);
    carry = gu * a;
    return gu;
  } else {
    S h = saved;
    S pass = S(1);  // IF floor's 0/1 gradient
    if (MODEL == MODEL_IF && c.has_floor) {
      const bool above = !(saved < c.v_floor);
      h = above ? saved : c.v_floor;
      pass = above ? S(1) : S(0);
    }
    const S z = h - c.v_th;
    const S sg = surrogate_grad<SG, S>(z, c.sg);
    const S s = heaviside(z);
    S dv_dh;
    if (RESET == RESET_HARD) {
      dv_dh = c.detach_reset ? S(1) - s : (S(1) - s) + (c.v_reset - h) * sg;
    } else {
      dv_dh = c.detach_reset ? S(1) : S(1) - c.v_th * sg;
    }
    if (c.learn_th) {
      // dS/dVth = -sigma'; the reset's dV/dVth (hard: (H - Vr) sigma';
      // soft: Vth sigma' - S), without the sigma' terms under detach_reset.
      S dv_dth;
      if (RESET == RESET_HARD) {
        dv_dth = c.detach_reset ? S(0) : (h - c.v_reset) * sg;
      } else {
        dv_dth = c.detach_reset ? -s : c.v_th * sg - s;
      }
      g_th += (gv + carry) * dv_dth - gs * sg;
    }
    const S gh = (gs * sg + (gv + carry) * dv_dh) * pass;
    if (MODEL == MODEL_LIF) {
      if (c.plif) {
        if (c.learn_decay) {
          const S vr = RESET == RESET_HARD ? c.v_reset : S(0);
          g_decay += gh * (x - (prev - vr));
        }
        carry = gh - gh * c.tau;
        return c.decay_input ? gh * c.tau : gh;
      }
      // dH/dV = 1 - 1/tau, accumulated the way autograd does for the charge.
      carry = gh - gh / c.tau;
      return c.decay_input ? gh / c.tau : gh;
    } else {
      carry = gh;
      return gh;
    }
  }
}

}  // namespace snn
