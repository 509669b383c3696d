// SpikingJelly 2.0 `CUBALIFNode` (functional.cuba_lif_step), two states per
// neuron:
//   c_t = c_{t-1} c_decay + x_t
//   h_t = v_{t-1} v_decay + c_t
//   s_t = Θ(h_t - v_th)                    (Θ(0) = 1)
//   v_t = s_t v_reset + (1 - s_t) h_t      (variant hard)
//       = h_t - s_t v_th                   (soft: SpikingJelly's v_reset=None)
// with c_0 = 0 and v_0 = v_reset (0 under soft reset). detach_reset drops the
// reset's path through s_t from the gradient. The parameters are fixed
// numbers in SpikingJelly: no parameter gradient is formed.
#pragma once

// clang-format off
// model: id=1 name=cuba_lif struct=CubaLif states=c,v params=c_decay,v_decay,v_threshold,v_reset variants=hard,soft param_grads=no
// clang-format on

namespace snn {

struct CubaLif {
  static const int kStates = 2;  // c, v
  static const int kParams = 4;  // c_decay, v_decay, v_threshold, v_reset
  static const int kVariants = 2;
  static const bool kBackwardReadsX = false;  // see backward
  enum { HARD = 0, SOFT = 1 };

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = S(0);
    st[1] = V == HARD ? p[3] : S(0);
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S cur = st[0] * p[0] + x;
    const S h = st[1] * p[1] + cur;
    const S s = heaviside(h - p[2]);
    // SpikingJelly's association: spike * v_reset + (1 - spike) * v (IEEE
    // addition and multiplication commute, so either operand order rounds alike).
    st[1] = V == HARD ? s * p[3] + (S(1) - s) * h : h - s * p[2];
    st[0] = cur;
    return s;
  }

  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    // c_t is post's; h_t is rebuilt from it as the forward formed it (the
    // hard reset leaves no trace of h_t in v_t), so x is not read.
    const S h = prev[1] * p[1] + post[0];
    const S z = h - p[2];
    const S s = heaviside(z);
    const S sg = model_sg<SG, S>(c, z);
    const S gv = gseq[1] + carry[1];
    S dv_dh;
    if (V == HARD) {
      dv_dh = c.detach_reset ? S(1) - s : (S(1) - s) + (p[3] - h) * sg;
    } else {
      dv_dh = c.detach_reset ? S(1) : S(1) - p[2] * sg;
    }
    const S gh = gs * sg + gv * dv_dh;
    const S gc = gseq[0] + carry[0] + gh;
    carry[0] = gc * p[0];
    carry[1] = gh * p[1];
    return gc;
  }
};

}  // namespace snn
