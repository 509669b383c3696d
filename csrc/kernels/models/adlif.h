// Adaptive LIF (Bittar & Garner 2022; SE-adLIF, Baronig et al. 2024), three
// states per neuron, the membrane u, the adaptation w and the last spike s:
//   w_t = beta w_{t-1} + a u_{t-1} + b s_{t-1}
//   u_t = alpha (u_{t-1} - thr s_{t-1}) + (1 - alpha) (x_t - w_t)
//   s_t = 1[u_t - thr > 0]          (surrogate gradient at u_t - thr)
// with u_0 = w_0 = s_0 = 0, each expression evaluated in the association
// written. Gradients flow through every term, the reset thr s_{t-1} and the
// adaptation b s_{t-1} included. alpha, beta, a and b arrive clamped (the
// layer clamps them with torch.clamp, whose gradient autograd applies).
#pragma once

// clang-format off
// model: id=2 name=adlif struct=AdLif states=u,w,s params=alpha,beta,a,b,threshold variants=default param_grads=yes
// clang-format on

namespace snn {

struct AdLif {
  static const int kStates = 3;  // u, w, s
  static const int kParams = 5;  // alpha, beta, a, b, threshold
  static const int kVariants = 1;

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = S(0);
    st[1] = S(0);
    st[2] = S(0);
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S alpha = p[0], beta = p[1], a = p[2], b = p[3], thr = p[4];
    const S w = beta * st[1] + a * st[0] + b * st[2];
    const S u = alpha * (st[0] - thr * st[2]) + (S(1) - alpha) * (x - w);
    const S s = heaviside_strict(u - thr);
    st[0] = u;
    st[1] = w;
    st[2] = s;
    return s;
  }

  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    const S alpha = p[0], beta = p[1], a = p[2], b = p[3], thr = p[4];
    const S u0 = prev[0], w0 = prev[1], s0 = prev[2];
    const S w = beta * w0 + a * u0 + b * s0;
    const S r = u0 - thr * s0;
    const S d = x - w;
    const S u = alpha * r + (S(1) - alpha) * d;
    const S sg = model_sg<SG, S>(c, u - thr);
    // s_t is both the spike output and the state read by the next step.
    const S g_s = gs + gseq[2] + carry[2];
    const S g_u = gseq[0] + carry[0] + g_s * sg;
    const S g_w = gseq[1] + carry[1] - g_u * (S(1) - alpha);
    gp[0] += g_u * (r - d);
    gp[1] += g_w * w0;
    gp[2] += g_w * u0;
    gp[3] += g_w * s0;
    gp[4] += -(g_u * alpha * s0) - g_s * sg;
    carry[0] = g_u * alpha + g_w * a;
    carry[1] = g_w * beta;
    carry[2] = -(g_u * alpha * thr) + g_w * b;
    return g_u * (S(1) - alpha);
  }
};

}  // namespace snn
