// Quadratic integrate-and-fire, SpikingJelly 2.0 `QIFNode` multi-step
// semantics (its _ops/qif reference), one state per neuron:
//   h_t = v_{t-1} + (x_t + a0 (v_{t-1} - v_rest) (v_{t-1} - v_c)) / tau
//   s_t = Θ(h_t - v_th)                    (Θ(0) = 1)
//   v_t = s_t v_reset + (1 - s_t) h_t      (variant hard)
//       = h_t - s_t v_th                   (soft: SpikingJelly's v_reset=None)
// with a0 (v - v_rest) (v - v_c) formed left to right, a true division by tau
// (not a multiply by 1/tau: SpikingJelly divides), and v_0 = v_reset (0 under
// soft reset). detach_reset drops the reset's path through s_t from the
// gradient. The parameters are fixed numbers: no parameter gradient.
#pragma once

// clang-format off
// model: id=4 name=qif struct=Qif states=v params=tau,a0,v_rest,v_c,v_threshold,v_reset variants=hard,soft param_grads=no
// clang-format on

namespace snn {

struct Qif {
  static const int kStates = 1;  // v
  static const int kParams = 6;  // tau, a0, v_rest, v_c, v_threshold, v_reset
  static const int kVariants = 2;
  enum { HARD = 0, SOFT = 1 };

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = V == HARD ? p[5] : S(0);
  }

  template <typename S>
  SNN_HD SNN_INLINE static S charge(const S* p, S v, S x) {
    return v + (x + p[1] * (v - p[2]) * (v - p[3])) / p[0];
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S h = charge(p, st[0], x);
    const S s = heaviside(h - p[4]);
    st[0] = V == HARD ? s * p[5] + (S(1) - s) * h : h - s * p[4];
    return s;
  }

  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    const S v = prev[0];
    const S h = charge(p, v, x);
    const S z = h - p[4];
    const S s = heaviside(z);
    const S sg = model_sg<SG, S>(c, z);
    S dv_dh;
    if (V == HARD) {
      dv_dh = c.detach_reset ? S(1) - s : (S(1) - s) + (p[5] - h) * sg;
    } else {
      dv_dh = c.detach_reset ? S(1) : S(1) - p[4] * sg;
    }
    const S gh = gs * sg + (gseq[0] + carry[0]) * dv_dh;
    // dh/dx = 1/tau; dh/dv = 1 + a0 ((v - v_rest) + (v - v_c)) / tau.
    const S gq = gh / p[0];
    carry[0] = gh + gq * p[1] * ((v - p[2]) + (v - p[3]));
    return gq;
  }
};

}  // namespace snn
