// The CPU hot loops, written once and compiled once per ISA variant: each
// cpu_kernels_<variant>.cpp defines SNN_ROW_NS (the variant's namespace),
// SNN_ROW_ISA (its snn_cpu::Isa) and SNN_ROW_ATTR (its target attribute) and
// includes this file.
//
// Vectorisation is checked, not hoped for: benchmarks/check_vectorized.py
// disassembles the built extension and fails when the hot loop of any kernel
// here does scalar arithmetic in the AVX2 or AVX-512 variant. What makes the
// loops vectorise:
//  - branch-free bodies: selects on per-element conditions (spike, floor,
//    surrogate windows) become blends. Both arms of a select are computed,
//    which GCC only does for a possibly trapping operation (a division) under
//    -fno-trapping-math (setup.py); without it the AVX2 build kept a branch
//    and scalar divisions per element (AVX-512 hid this with masked ops);
//  - flags that pick a formula (model, reset, surrogate, ParametricLIF, the
//    parameter gradients) are template arguments or fixed in a local copy of
//    the coefficients before the loop, so nothing is left to unswitch;
//  - exp is snn::exp_fixed (kernels/common.h), plain arithmetic instead of a
//    libm call.
// Every unit compiles with -ffp-contract=off and no variant enables FMA, so
// each element is rounded alike whatever the vector width: results are the
// same bits on every variant and thread count (python_tests/test_isa.py).
#if !defined(SNN_ROW_NS) || !defined(SNN_ROW_ISA) || !defined(SNN_ROW_ATTR)
#error "define SNN_ROW_NS, SNN_ROW_ISA and SNN_ROW_ATTR before including cpu_kernels_impl.h"
#endif

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "cpu_kernels.h"

namespace snn_cpu {
namespace SNN_ROW_NS {

using namespace snn;

// ---------------------------------------------------------------------------
// Neuron rows. Scalar-parameter rows keep the coefficients in registers;
// each fixes at compile time every flag it can before the loop.
// ---------------------------------------------------------------------------
template <int MODEL, int RESET, typename S>
SNN_ROW_ATTR void fwd_row(const Coeffs<S> c, i64 len, S* __restrict v, const S* __restrict x, S* __restrict saved,
                          S* __restrict s) {
  Coeffs<S> cc = c;
  cc.plif = false;
#pragma omp simd
  for (i64 j = 0; j < len; ++j) {
    S vj = v[j];
    S sv;
    s[j] = forward_step<MODEL, RESET, S>(cc, vj, x[j], sv);
    v[j] = vj;
    saved[j] = sv;
  }
}

template <int MODEL, int RESET, int SG, typename S>
SNN_ROW_ATTR void bwd_row(const Coeffs<S> c, i64 len, const S* __restrict saved, const S* __restrict prev,
                          const S* __restrict gs, const S* __restrict gv, S* __restrict carry, S* __restrict gx) {
  Coeffs<S> cc = c;
  cc.plif = false;
  cc.learn_decay = false;
  cc.learn_th = false;
#pragma omp simd
  for (i64 j = 0; j < len; ++j) {
    S cj = carry[j];
    S unused_d = S(0), unused_t = S(0);
    gx[j] = backward_step<MODEL, RESET, SG, S>(cc, saved[j], prev[j], S(0), gs[j], gv[j], cj, unused_d, unused_t);
    carry[j] = cj;
  }
}

// Per-neuron parameter rows: a separate instantiation, so that the scalar
// rows above keep their coefficients in registers. PLIF: the ParametricLIF
// charge (LIF combos only). These loops carry no `omp simd`: it would
// privatise the per-element coefficient struct into an array and stop the
// vectoriser; without it GCC scalarises the struct and vectorises.
template <int MODEL, typename S>
SNN_INLINE void row_coeffs(Coeffs<S>& c, S d, S th) {
  if (MODEL == MODEL_LEAKY) {
    c.beta = d;
  } else {
    c.tau = d;
  }
  c.v_th = th;
}

template <int MODEL, int RESET, typename S, bool PLIF>
SNN_ROW_ATTR void fwd_row_p(const Coeffs<S> c, i64 len, S* __restrict v, const S* __restrict x, S* __restrict saved,
                            S* __restrict s, const S* __restrict pd, const S* __restrict pt) {
  Coeffs<S> cc = c;
  cc.plif = PLIF;
  for (i64 j = 0; j < len; ++j) {
    Coeffs<S> cj = cc;
    row_coeffs<MODEL, S>(cj, pd[j], pt[j]);
    S vj = v[j];
    S sv;
    s[j] = forward_step<MODEL, RESET, S>(cj, vj, x[j], sv);
    v[j] = vj;
    saved[j] = sv;
  }
}

// The state after each step from the saved values of a row (V from H; the
// backward's V_{t-1}).
template <int MODEL, int RESET, typename S>
SNN_ROW_ATTR void state_row(const Coeffs<S> c, i64 len, const S* __restrict saved, const S* __restrict pd,
                            const S* __restrict pt, S* __restrict out) {
  for (i64 j = 0; j < len; ++j) {
    Coeffs<S> cj = c;
    row_coeffs<MODEL, S>(cj, pd[j], pt[j]);
    out[j] = state_from_saved<MODEL, RESET, S>(cj, saved[j]);
  }
}

// prev: the state before the step; x: X_t under decay_input, else 0.
// Both parameter gradients are always accumulated (a few multiply-adds);
// the driver writes out the requested ones.
template <int MODEL, int RESET, int SG, typename S, bool PLIF>
SNN_ROW_ATTR void bwd_row_p(const Coeffs<S> c, i64 len, const S* __restrict saved, const S* __restrict prev,
                            const S* __restrict x, const S* __restrict gs, const S* __restrict gv, S* __restrict carry,
                            S* __restrict gx, const S* __restrict pd, const S* __restrict pt, S* __restrict gd,
                            S* __restrict gt) {
  Coeffs<S> cc = c;
  cc.plif = PLIF;
  cc.learn_decay = true;
  cc.learn_th = true;
  for (i64 j = 0; j < len; ++j) {
    Coeffs<S> cj = cc;
    row_coeffs<MODEL, S>(cj, pd[j], pt[j]);
    S cy = carry[j], d = gd[j], t = gt[j];
    gx[j] = backward_step<MODEL, RESET, SG, S>(cj, saved[j], prev[j], x[j], gs[j], gv[j], cy, d, t);
    carry[j] = cy;
    gd[j] = d;
    gt[j] = t;
  }
}

// Spikes as bytes: their values, integers in [0, 255] (0/1, or a declared
// model's counts such as I-LIF's), so one row serves binary and count spikes.
template <typename S>
SNN_ROW_ATTR void store_bytes(const S* __restrict src, i64 len, uint8_t* __restrict dst) {
#pragma omp simd
  for (i64 j = 0; j < len; ++j) dst[j] = (uint8_t)(int32_t)src[j];
}

// NeuronLinear's backward: out[j] = sum_k gy[t, r, k] W[k, f] for neurons
// n0 + j (n = r * F + f), k ascending (the order is fixed, so the result does
// not depend on the ISA or the blocking).
template <typename S>
SNN_ROW_ATTR void readout_row(const S* __restrict gy_t, const S* __restrict w, i64 K, i64 F, i64 n0, i64 len,
                              S* __restrict out) {
  i64 j = 0;
  while (j < len) {
    const i64 n = n0 + j, r = n / F, f0 = n - r * F, seg = std::min(len - j, F - f0);
    const S* __restrict g = gy_t + r * K;
    const S* __restrict wf = w + f0;
    S* __restrict o = out + j;
    // Outputs k-blocks at a time over the (L1-resident) segment: contiguous,
    // vectorised loops, and one store per element per 4 outputs.
    for (i64 f = 0; f < seg; ++f) o[f] = S(0);
    i64 k = 0;
    for (; k + 4 <= K; k += 4) {
      const S g0 = g[k], g1 = g[k + 1], g2 = g[k + 2], g3 = g[k + 3];
      const S *w0 = wf + k * F, *w1 = w0 + F, *w2 = w1 + F, *w3 = w2 + F;
#pragma omp simd
      for (i64 f = 0; f < seg; ++f) {
        S a = o[f];
        a += g0 * w0[f];
        a += g1 * w1[f];
        a += g2 * w2[f];
        a += g3 * w3[f];
        o[f] = a;
      }
    }
    for (; k < K; ++k) {
      const S gk = g[k];
      const S* wk = wf + k * F;
#pragma omp simd
      for (i64 f = 0; f < seg; ++f) o[f] += gk * wk[f];
    }
    j += seg;
  }
}

// ---------------------------------------------------------------------------
// 16-bit storage <-> fp32 state (bit-exact software conversions, common.h).
// ---------------------------------------------------------------------------
template <typename T>
SNN_ROW_ATTR void load_row(const T* __restrict src, i64 len, float* __restrict dst) {
#pragma omp simd
  for (i64 j = 0; j < len; ++j) dst[j] = to_state(src[j]);
}
template <typename T>
SNN_ROW_ATTR void store_row(const float* __restrict src, i64 len, T* __restrict dst) {
#pragma omp simd
  for (i64 j = 0; j < len; ++j) dst[j] = store_as<T>(src[j]);
}

// ---------------------------------------------------------------------------
// Poisson encoder: elements [e0, e1) of [T, N], at most kRun of them. Philox
// for the groups covering the run in one SIMD loop (the 32x32->64-bit
// multiplies vectorise), then the comparisons row segment by row segment.
// Element e's spike depends on e alone (lane e % 4 of group e / 4), as in
// poisson_group, so the spikes equal the CUDA kernel's for the same seed.
// ---------------------------------------------------------------------------
constexpr i64 kPoissonRun = 1024;

template <typename T>
SNN_ROW_ATTR void poisson_run(const PoissonParams& p, i64 e0, i64 e1) {
  constexpr i64 kRun = kPoissonRun;
  alignas(64) unsigned int lanes[4][kRun / 4 + 1];
  alignas(64) unsigned int rnd[kRun + 4];
  const T* x = (const T*)p.x;
  T* out = (T*)p.out;
  const i64 g0 = e0 / 4, ng = (e1 + 3) / 4 - g0;
  const unsigned long long key = poisson_key(p);
#pragma omp simd
  for (i64 j = 0; j < ng; ++j) {
    const U32x4 v = philox4x32_10((unsigned long long)(g0 + j), 0ull, key);
    lanes[0][j] = v.v[0];
    lanes[1][j] = v.v[1];
    lanes[2][j] = v.v[2];
    lanes[3][j] = v.v[3];
  }
  for (i64 j = 0; j < ng; ++j)
    for (int k = 0; k < 4; ++k) rnd[4 * j + k] = lanes[k][j];
  i64 e = e0, n = e0 % p.N;
  while (e < e1) {
    const i64 seg = std::min<i64>(e1 - e, p.N - n);
    const unsigned int* rs = rnd + (e - 4 * g0);
    const T* xs = x + n;
    T* os = out + e;
#pragma omp simd
    for (i64 i = 0; i < seg; ++i) os[i] = store_as<T>(uniform24(rs[i]) < (float)to_state(xs[i]) ? 1.0f : 0.0f);
    e += seg;
    n = 0;
  }
}

// x != 0 as bytes, compared in the state type (as the CUDA kernel does).
template <typename T>
SNN_ROW_ATTR void narrow_run(const T* __restrict x, uint8_t* __restrict out, i64 n) {
#pragma omp simd
  for (i64 i = 0; i < n; ++i) out[i] = (uint8_t)(to_state(x[i]) != 0);
}

template <typename T>
SNN_ROW_ATTR void widen_run(const uint8_t* __restrict x, T* __restrict out, i64 n) {
#pragma omp simd
  for (i64 i = 0; i < n; ++i) out[i] = store_as<T>(x[i] ? 1.0f : 0.0f);
}

// ---------------------------------------------------------------------------
// Declared-model rows (kernels/models.h). The per-neuron locals are small
// fixed arrays that scalar replacement turns into registers; `ivdep` states
// that the state rows (one buffer, rows ld apart) do not overlap across
// iterations, which the compiler cannot prove for a run-time ld.
// ---------------------------------------------------------------------------
// The forward row's in and out may be the same rows (not __restrict):
// element j reads in[.][j] before it writes out[.][j], and touches no other
// element.
// PN: per-neuron parameter rows. Without it every parameter is one value,
// read from element 0 of its row and kept in a register for the loop (the
// model's scalar-parameter layers: P = 1), as the one-state scalar rows do.
template <class M, int V, typename S, bool PN>
SNN_ROW_ATTR void mfwd_row(const MCfg<S> c, i64 len, i64 ld, const S* in, S* out, const S* __restrict prm,
                           const S* __restrict x, S* __restrict s) {
  S p0[M::kParams];
  for (int k = 0; k < M::kParams; ++k) p0[k] = prm[k * ld];
#pragma GCC ivdep
  for (i64 j = 0; j < len; ++j) {
    S pj[M::kParams], sj[M::kStates];
    for (int k = 0; k < M::kParams; ++k) pj[k] = PN ? prm[k * ld + j] : p0[k];
    for (int k = 0; k < M::kStates; ++k) sj[k] = in[k * ld + j];
    s[j] = M::template forward<V, S>(c, pj, sj, x[j]);
    for (int k = 0; k < M::kStates; ++k) out[k * ld + j] = sj[k];
  }
}

// prev / post: the states before / after the step, rows pld apart (the
// driver's replay rows or the forward's state sequence). A model whose
// backward reads no x (or no post) leaves that load dead, so the row streams
// only what the model's math reads.
// PN: per-neuron parameter rows and parameter-gradient sums. Without it the
// parameters are one value each (as in mfwd_row) and no gradient sums are
// formed: the layer asked for none, and the gp rows are neither read nor
// written (their traffic was a fifth of a scalar-parameter model's backward).
template <class M, int V, int SG, typename S, bool PN>
SNN_ROW_ATTR void mbwd_row(const MCfg<S> c, i64 len, i64 ld, const S* __restrict prev, const S* __restrict post,
                           i64 pld, const S* __restrict prm, const S* __restrict x, const S* __restrict gs,
                           const S* __restrict gseq, i64 gld, S* __restrict carry, S* __restrict gp, S* __restrict gx) {
  S p0[M::kParams];
  for (int k = 0; k < M::kParams; ++k) p0[k] = prm[k * ld];
#pragma GCC ivdep
  for (i64 j = 0; j < len; ++j) {
    S pj[M::kParams], sj[M::kStates], qj[M::kStates], gj[M::kStates], cj[M::kStates], gpj[M::kParams];
    for (int k = 0; k < M::kParams; ++k) {
      pj[k] = PN ? prm[k * ld + j] : p0[k];
      gpj[k] = PN ? gp[k * ld + j] : S(0);
    }
    for (int k = 0; k < M::kStates; ++k) {
      sj[k] = prev[k * pld + j];
      qj[k] = post[k * pld + j];
      gj[k] = gseq[k * gld + j];
      cj[k] = carry[k * ld + j];
    }
    gx[j] = M::template backward<V, SG, S>(c, pj, sj, qj, x[j], gs[j], gj, cj, gpj);
    for (int k = 0; k < M::kStates; ++k) carry[k * ld + j] = cj[k];
    if (PN)
      for (int k = 0; k < M::kParams; ++k) gp[k * ld + j] = gpj[k];
  }
}

template <class M, typename S, int V, int... SGs>
void fill_model_variant(ModelRows<S>& r, int id, std::integer_sequence<int, SGs...>) {
  r.fwd[id][V][0] = mfwd_row<M, V, S, false>;
  r.fwd[id][V][1] = mfwd_row<M, V, S, true>;
  ((r.bwd[id][V][SGs][0] = mbwd_row<M, V, SGs, S, false>), ...);
  ((r.bwd[id][V][SGs][1] = mbwd_row<M, V, SGs, S, true>), ...);
}

template <class M, typename S, int... Vs>
void fill_model(ModelRows<S>& r, int id, std::integer_sequence<int, Vs...>) {
  (fill_model_variant<M, S, Vs>(r, id, std::make_integer_sequence<int, SG_COUNT>{}), ...);
}

template <typename S>
ModelRows<S> model_rows() {
  ModelRows<S> r{};
#define SNN_FILL(id, M, ...) fill_model<M, S>(r, id, std::make_integer_sequence<int, M::kVariants>{});
  SNN_MODEL_LIST(SNN_FILL)
#undef SNN_FILL
  return r;
}

// ---------------------------------------------------------------------------
// The tables.
// ---------------------------------------------------------------------------
#define SNN_COMBOS(F, ...)                                                               \
  {F<MODEL_LIF, RESET_HARD, ##__VA_ARGS__>,   F<MODEL_LIF, RESET_SOFT, ##__VA_ARGS__>,   \
   F<MODEL_IF, RESET_HARD, ##__VA_ARGS__>,    F<MODEL_IF, RESET_SOFT, ##__VA_ARGS__>,    \
   F<MODEL_LEAKY, RESET_HARD, ##__VA_ARGS__>, F<MODEL_LEAKY, RESET_SOFT, ##__VA_ARGS__>, \
   F<MODEL_LEAKY, RESET_NONE, ##__VA_ARGS__>}
#define SNN_PLIF(F, ...) {F<MODEL_LIF, RESET_HARD, ##__VA_ARGS__, true>, F<MODEL_LIF, RESET_SOFT, ##__VA_ARGS__, true>}
#define SNN_BWD(SG, S) SNN_COMBOS(bwd_row, SG, S)
#define SNN_BWD_P(SG, S) SNN_COMBOS(bwd_row_p, SG, S, false)
#define SNN_BWD_PLIF(SG, S) SNN_PLIF(bwd_row_p, SG, S)

// Every surrogate of the generated enum (surrogate_list.h): no list to keep.
template <typename S, int SG>
void fill_neuron_sg(NeuronRows<S>& r) {
  const BwdRow<S> b[kCombos] = SNN_BWD(SG, S);
  const BwdRowP<S> bp[kCombos] = SNN_BWD_P(SG, S);
  const BwdRowP<S> bpl[2] = SNN_BWD_PLIF(SG, S);
  for (int c = 0; c < kCombos; ++c) {
    r.bwd[SG][c] = b[c];
    r.bwd_p[SG][c] = bp[c];
  }
  for (int c = 0; c < 2; ++c) r.bwd_plif[SG][c] = bpl[c];
}

template <typename S, int... SGs>
void fill_neuron_sgs(NeuronRows<S>& r, std::integer_sequence<int, SGs...>) {
  (fill_neuron_sg<S, SGs>(r), ...);
}

template <typename S>
NeuronRows<S> neuron_rows() {
  NeuronRows<S> r{};
  const FwdRow<S> f[kCombos] = SNN_COMBOS(fwd_row, S);
  const FwdRowP<S> fp[kCombos] = SNN_COMBOS(fwd_row_p, S, false);
  const FwdRowP<S> fpl[2] = SNN_PLIF(fwd_row_p, S);
  const StateRow<S> st[kCombos] = SNN_COMBOS(state_row, S);
  for (int c = 0; c < kCombos; ++c) {
    r.fwd[c] = f[c];
    r.fwd_p[c] = fp[c];
    r.state[c] = st[c];
  }
  for (int c = 0; c < 2; ++c) r.fwd_plif[c] = fpl[c];
  fill_neuron_sgs<S>(r, std::make_integer_sequence<int, SG_COUNT>{});
  r.readout = readout_row<S>;
  r.store_bytes = store_bytes<S>;
  return r;
}

template <typename T>
ElemRows<T> elem_rows() {
  if constexpr (std::is_same<T, float>::value || std::is_same<T, double>::value) {
    return ElemRows<T>{nullptr, nullptr, poisson_run<T>, narrow_run<T>, widen_run<T>};
  } else {
    return ElemRows<T>{load_row<T>, store_row<T>, poisson_run<T>, narrow_run<T>, widen_run<T>};
  }
}

#undef SNN_COMBOS
#undef SNN_PLIF
#undef SNN_BWD
#undef SNN_BWD_P
#undef SNN_BWD_PLIF

const Kernels& table() {
  static const Kernels k{SNN_ROW_ISA,         neuron_rows<float>(), neuron_rows<double>(),
                         model_rows<float>(), model_rows<double>(), elem_rows<float>(),
                         elem_rows<double>(), elem_rows<half_t>(),  elem_rows<bf16_t>()};
  return k;
}

}  // namespace SNN_ROW_NS
}  // namespace snn_cpu
