// snnTorch 1.0 `Synaptic` (reset_delay=True), two states per neuron:
//   syn_t = alpha syn_{t-1} + x_t
//   mem_t = beta mem_{t-1} + syn_t - R_t thr          (variant subtract)
//         = base - base R_t, base = beta mem_{t-1} + syn_t   (zero)
//         = beta mem_{t-1} + syn_t                    (none)
//   spk_t = 1[mem_t > thr],  R_t = 1[mem_{t-1} > thr] (detached)
// Each expression is evaluated in snnTorch's association, so the spikes equal
// snnTorch's bit for bit. alpha and beta arrive clamped (the layer clamps a
// learnable one with torch.clamp, whose gradient autograd applies).
#pragma once

// clang-format off
// model: id=0 name=synaptic struct=Synaptic states=syn,mem params=alpha,beta,threshold variants=subtract,zero,none param_grads=yes
// clang-format on

namespace snn {

struct Synaptic {
  static const int kStates = 2;  // syn, mem
  static const int kParams = 3;  // alpha, beta, threshold
  static const int kVariants = 3;
  static const bool kBackwardReadsX = false;  // see backward
  enum { SUBTRACT = 0, ZERO = 1, NONE = 2 };

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = S(0);
    st[1] = S(0);
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S alpha = p[0], beta = p[1], thr = p[2];
    const S r = heaviside_strict(st[1] - thr);
    const S syn = alpha * st[0] + x;
    const S base = beta * st[1] + syn;
    S mem = base;
    if (V == SUBTRACT) mem = base - r * thr;
    if (V == ZERO) mem = base - base * r;
    st[0] = syn;
    st[1] = mem;
    return heaviside_strict(mem - thr);
  }

  // prev / post: the states before / after the step (x is not read: the
  // spike's surrogate needs mem_t, which post holds); gseq: gradients on the
  // step's state outputs; carry: in, the gradients reaching this step's states from the
  // next step, out, those reaching prev; gp: per-neuron parameter gradient
  // sums. Returns the gradient on x_t.
  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    const S alpha = p[0], beta = p[1], thr = p[2];
    const S r = heaviside_strict(prev[1] - thr);
    const S sg = model_sg<SG, S>(c, post[1] - thr);
    const S gmem = gseq[1] + carry[1] + gs * sg;
    // d mem / d base: 1, or 1 - R under the zero reset (R is detached).
    const S gbase = V == ZERO ? gmem * (S(1) - r) : gmem;
    const S gsyn = gseq[0] + carry[0] + gbase;
    gp[0] += gsyn * prev[0];
    gp[1] += gbase * prev[1];
    // d spk / d thr = -sigma'; subtract's mem_t carries -R_t thr.
    gp[2] += V == SUBTRACT ? -(gs * sg) - r * gmem : -(gs * sg);
    carry[0] = gsyn * alpha;
    carry[1] = gbase * beta;
    return gsyn;
  }
};

}  // namespace snn
