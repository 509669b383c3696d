// Integer LIF (I-LIF, Luo et al., ECCV 2024), SpikingJelly 2.0 `ILIFNode`
// multi-step semantics (its _ops/ilif reference), one state per neuron:
//   H_t = d V_{t-1} + X_t            d = 1 - 1/tau (formed in double by the
//                                    layer, rounded to the state type)
//   C_t = round(clamp(H_t / v_th, 0, D))   (round half to even)
//   V_t = H_t - C_t v_th             (C_t detached there under detach_reset)
// with V_0 = 0. The "spike" is the integer count C_t. Backward: the
// rectangular straight-through estimator dC/d(H/v_th) = 1 on the closed
// window [lo, hi], else 0; no surrogate function is involved.
#pragma once

// clang-format off
// model: id=3 name=ilif struct=ILif states=v params=decay,v_threshold,max_count,window_lo,window_hi variants=default param_grads=no
// clang-format on

namespace snn {

// Round half to even for 0 <= z < 2^23 (float) / 2^52 (double): adding and
// subtracting 2^23 leaves the integer the IEEE default rounding picks, without
// a libm call, so the CPU rows stay vectorised (and it matches torch.round,
// rint, bit for bit; the builds never reassociate or contract).
template <typename S>
SNN_HD SNN_INLINE S round_half_even_small(S z) {
  const S big = sizeof(S) == 4 ? S(8388608.0) : S(4503599627370496.0);
  return (z + big) - big;
}

struct ILif {
  static const int kStates = 1;  // v
  static const int kParams = 5;  // decay, v_threshold, max_count D, window lo, hi
  static const int kVariants = 1;

  template <int V, typename S>
  SNN_HD SNN_INLINE static void init(const S* p, S* st) {
    st[0] = S(0);
  }

  template <typename S>
  SNN_HD SNN_INLINE static S count(const S* p, S h) {
    const S z = h / p[1];
    const S lo = z < S(0) ? S(0) : z;
    return round_half_even_small(lo > p[2] ? p[2] : lo);
  }

  template <int V, typename S>
  SNN_HD SNN_INLINE static S forward(const MCfg<S>& c, const S* p, S* st, S x) {
    const S h = p[0] * st[0] + x;
    const S k = count(p, h);
    st[0] = h - k * p[1];
    return k;
  }

  template <int V, int SG, typename S>
  SNN_HD SNN_INLINE static S backward(const MCfg<S>& c, const S* p, const S* prev, const S* post, S x, S gs,
                                      const S* gseq, S* carry, S* gp) {
    const S h = p[0] * prev[0] + x;
    const S z = h / p[1];
    const S sg = (z >= p[3] && z <= p[4] ? S(1) : S(0)) / p[1];
    const S dr = c.detach_reset ? S(1) : S(1) - p[1] * sg;
    const S g_h = gs * sg + (gseq[0] + carry[0]) * dr;
    carry[0] = g_h * p[0];
    return g_h;
  }
};

}  // namespace snn
