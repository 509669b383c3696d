// The CPU hot loops as tables of function pointers, one table per ISA
// variant (cpu_isa.h). The loops themselves are written once, in
// cpu_kernels_impl.h, and compiled once per variant by
// cpu_kernels_{avx512,avx2,default}.cpp; the drivers (neuron_cpu.cpp,
// encoder_cpu.cpp) pick a table once per call from snn_cpu::isa(). No torch
// header here: the per-variant units include only the kernel headers, so no
// inline function of torch's is ever compiled for a wider ISA than its
// callers expect.
#pragma once
#include <cstdint>

#include "../kernels/encoder.h"
#include "../kernels/models.h"
#include "../kernels/neuron.h"
#include "cpu_isa.h"

namespace snn_cpu {

using snn::bf16_t;
using snn::Coeffs;
using snn::half_t;
using snn::i64;

// Row kernels: `len` contiguous neurons of one time step (see
// cpu_kernels_impl.h for each one's contract).
template <typename S>
using FwdRow = void (*)(const Coeffs<S>, i64, S*, const S*, S*, S*);
template <typename S>
using BwdRow = void (*)(const Coeffs<S>, i64, const S*, const S*, const S*, const S*, S*, S*);
template <typename S>
using FwdRowP = void (*)(const Coeffs<S>, i64, S*, const S*, S*, S*, const S*, const S*);
template <typename S>
using BwdRowP = void (*)(const Coeffs<S>, i64, const S*, const S*, const S*, const S*, const S*, S*, S*, const S*,
                         const S*, S*, S*);
template <typename S>
using StateRow = void (*)(const Coeffs<S>, i64, const S*, const S*, const S*, S*);
template <typename S>
using ReadoutRow = void (*)(const S*, const S*, i64, i64, i64, i64, S*);
template <typename S>
using BytesRow = void (*)(const S*, i64, uint8_t*);

// Model x reset combinations, indexed by snn_host::combo_index.
constexpr int kCombos = 7;

template <typename S>
struct NeuronRows {
  FwdRow<S> fwd[kCombos];
  FwdRowP<S> fwd_p[kCombos];  // per-neuron decay / threshold rows
  FwdRowP<S> fwd_plif[2];     // ParametricLIF (LIF hard, soft)
  StateRow<S> state[kCombos];
  BwdRow<S> bwd[snn::SG_COUNT][kCombos];
  BwdRowP<S> bwd_p[snn::SG_COUNT][kCombos];
  BwdRowP<S> bwd_plif[snn::SG_COUNT][2];
  ReadoutRow<S> readout;
  BytesRow<S> store_bytes;
};

// Declared-model rows (kernels/models.h): `len` neurons of one step. States,
// parameters, carries and parameter gradients are [k][ld] row blocks (row k
// at base + k * ld); gseq's rows are gld apart (a [kStates, T, N] tensor), and
// prev's and post's pld apart (the driver's replay rows, or the forward's state_seq).
// The forward row reads the states from `in` and writes them to `out`: the
// same rows in the forward, the next step's rows in the backward's replay.
template <typename S>
using MFwdRow = void (*)(const snn::MCfg<S>, i64 len, i64 ld, const S* in, S* out, const S* prm, const S* x, S* s);
template <typename S>
using MBwdRow = void (*)(const snn::MCfg<S>, i64 len, i64 ld, const S* prev, const S* post, i64 pld, const S* prm,
                         const S* x, const S* gs, const S* gseq, i64 gld, S* carry, S* gp, S* gx);

// The last index: 0 for one value per parameter (element 0 of each prm row)
// and, in the backward, no parameter-gradient sums; 1 for per-neuron
// parameter rows and the sums.
template <typename S>
struct ModelRows {
  MFwdRow<S> fwd[snn::MODEL_COUNT][snn::kMaxVariants][2];
  MBwdRow<S> bwd[snn::MODEL_COUNT][snn::kMaxVariants][snn::SG_COUNT][2];
};

// Loops per storage dtype T.
template <typename T>
struct ElemRows {
  void (*load)(const T*, i64, float*);   // 16-bit storage -> fp32 state (null for fp32/fp64)
  void (*store)(const float*, i64, T*);  // fp32 state -> 16-bit storage (null for fp32/fp64)
  void (*poisson)(const snn::PoissonParams&, i64, i64);
  void (*narrow)(const T*, uint8_t*, i64);
  void (*widen)(const uint8_t*, T*, i64);
};

struct Kernels {
  Isa isa;
  NeuronRows<float> f32;
  NeuronRows<double> f64;
  ModelRows<float> m32;
  ModelRows<double> m64;
  ElemRows<float> e_f32;
  ElemRows<double> e_f64;
  ElemRows<half_t> e_f16;
  ElemRows<bf16_t> e_bf16;
  template <typename S>
  const NeuronRows<S>& rows() const;
  template <typename T>
  const ElemRows<T>& elem() const;
  template <typename S>
  const ModelRows<S>& models() const;
};

template <>
inline const NeuronRows<float>& Kernels::rows<float>() const {
  return f32;
}
template <>
inline const NeuronRows<double>& Kernels::rows<double>() const {
  return f64;
}
template <>
inline const ModelRows<float>& Kernels::models<float>() const {
  return m32;
}
template <>
inline const ModelRows<double>& Kernels::models<double>() const {
  return m64;
}
template <>
inline const ElemRows<float>& Kernels::elem<float>() const {
  return e_f32;
}
template <>
inline const ElemRows<double>& Kernels::elem<double>() const {
  return e_f64;
}
template <>
inline const ElemRows<half_t>& Kernels::elem<half_t>() const {
  return e_f16;
}
template <>
inline const ElemRows<bf16_t>& Kernels::elem<bf16_t>() const {
  return e_bf16;
}

// The table of one variant (the default one where the build has no other).
const Kernels& kernels_for(Isa v);

// The table of the variant in use (snn_cpu::isa()).
inline const Kernels& kernels() { return kernels_for(isa()); }

}  // namespace snn_cpu
