// snnTorch 1.0 `Leaky` (reset_delay=True), one state per neuron:
//   U_t = beta U_{t-1} + X_t - R_t thr           (variant subtract)
//       = beta ((1 - R_t) U_{t-1}) + X_t         (zero)
//       = beta U_{t-1} + X_t                     (none)
//   S_t = 1[U_t > thr],  R_t = 1[U_{t-1} > thr] (detached)
// Each expression in snnTorch's association, so the spikes equal snnTorch's
// bit for bit. beta arrives clamped (the layer clamps a learnable one with
// torch.clamp, whose gradient autograd applies); U_0 = 0 unless the layer
// passes a state.
#pragma once

// clang-format off
// model: id=5 name=leaky struct=Leaky states=mem params=beta,threshold variants=subtract,zero,none param_grads=yes
// clang-format on

namespace snn {

struct Leaky {
  static const int kStates = 1;  // mem
  static const int kParams = 2;  // beta, threshold
  static const int kVariants = 3;
  static const bool kBackwardReadsX = false;  // U_t is post
  enum { SUBTRACT = 0, ZERO = 1, NONE = 2 };

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = S(0);
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S beta = p[0], thr = p[1];
    const S r = heaviside_strict(st[0] - thr);
    S u;
    if (V == SUBTRACT) {
      u = beta * st[0] + x - r * thr;
    } else if (V == ZERO) {
      u = beta * ((S(1) - r) * st[0]) + x;
    } else {
      u = beta * st[0] + x;
    }
    st[0] = u;
    return heaviside_strict(u - thr);
  }

  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    const S beta = p[0], thr = p[1];
    const S sgu = model_sg<SG, S>(c, post[0] - thr);
    const S gu = gseq[0] + gs * sgu + carry[0];
    const S r = heaviside_strict(prev[0] - thr);
    // dU_t / dU_{t-1} and dU_t / dbeta: the zero reset's (1 - R_t) factor.
    gp[0] += gu * (V == ZERO ? (S(1) - r) * prev[0] : prev[0]);
    // dU_t / dthr: -sigma' through the spike, -R_t through the subtraction
    // (R_t itself is detached).
    gp[1] += V == SUBTRACT ? -(gs * sgu) - r * gu : -(gs * sgu);
    carry[0] = gu * (V == ZERO ? beta * (S(1) - r) : beta);
    return gu;
  }
};

}  // namespace snn
