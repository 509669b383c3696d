// The declared multi-state neuron models and their launch parameters, shared
// by the CPU rows, the CUDA kernels and the host emulation. A model is a
// header in models/ with a `// model:` declaration line (tools/gen_model_list.py
// generates model_list.h and snn_cuda/_model_list.py from those lines) and a
// struct with
//   kStates, kParams, kVariants          state variables, parameters, variants
//   init<V>(p, st)                       the initial state from the parameters
//   forward<V>(cfg, p, st, x) -> spike   one step; st: in S_{t-1}, out S_t
//   backward<V, SG>(cfg, p, prev, post, x, gs, gseq, carry, gp) -> grad x_t
// where p holds the neuron's parameters, prev its states before the step and
// post those after it, gseq the gradients on the step's state outputs, carry
// the gradients on S_t (in) and S_{t-1} (out), and gp the per-neuron
// parameter gradient sums. The backward rebuilds what else it needs from
// prev, post and x (the kernels keep a checkpoint of the states every kChunk
// steps and replay the forward, or read the forward's state sequence), so no
// model saves anything of its own. A backward that needs no x (it reads what
// the step made from post) lets the CPU rows skip the x stream when the
// states come from the forward's sequence: the load is dead and dropped.
#pragma once
#include "common.h"
#include "surrogate.h"
#include "neuron.h"
#include "params.h"

namespace snn {

// Run-time configuration common to every model, rounded to the state type.
template <typename S>
struct MCfg {
  S sg;               // surrogate parameter
  int sg_kind;        // the surrogate, for kernels compiled with SG = SG_ANY
  bool detach_reset;  // models with a reset through the spike may honour it
};

// sigma'(z) in a model's backward: the compile-time surrogate SG, or the
// run-time one when SG is SG_ANY (the CUDA kernels: one backward per model and
// variant instead of one per surrogate, a uniform branch in a memory-bound
// loop; the CPU rows keep SG static so that they vectorise).
template <int SG, typename S>
SNN_HD SNN_INLINE S model_sg(const MCfg<S>& c, S z) {
  if (SG == SG_ANY) return surrogate_grad_any<S>(c.sg_kind, z, c.sg);
  return surrogate_grad<SG, S>(z, c.sg);
}

// A backward step from the states before it alone: the model's own forward
// step rebuilds post (the CUDA kernels, which replay each chunk and keep only
// the states before each step in registers). post is dead code for a model
// whose backward does not read it.
template <class M, int V, int SG, typename S>
SNN_HD SNN_INLINE S backward_replay(const MCfg<S>& c, const S* p, const S* prev, S x, S gs, const S* gseq, S* carry,
                                    S* gp) {
  S post[M::kStates];
  for (int q = 0; q < M::kStates; ++q) post[q] = prev[q];
  M::template forward<V, S>(c, p, post, x);
  return M::template backward<V, SG, S>(c, p, prev, post, x, gs, gseq, carry, gp);
}

}  // namespace snn

// The model headers and SNN_MODEL_LIST, generated from their declarations.
#include "model_list.h"

namespace snn {

static const int kMaxStates = 3;
static const int kMaxParams = 6;
static const int kMaxVariants = 3;

#define SNN_MODEL_ID(id, M, ...) MODEL_ID_##M = id,
enum ModelId : int { SNN_MODEL_LIST(SNN_MODEL_ID) MODEL_COUNT };
#undef SNN_MODEL_ID

template <class M>
struct ModelIdOf;
#define SNN_MODEL_TRAIT(id, M, ...) \
  template <>                       \
  struct ModelIdOf<M> {             \
    static const int value = id;    \
  };
SNN_MODEL_LIST(SNN_MODEL_TRAIT)
#undef SNN_MODEL_TRAIT

// The list's counts and names against each declaration.
SNN_HD constexpr int snn_word_count(const char* s, int n = 0, bool in = false) {
  return *s == 0 ? n : (*s == ' ' ? snn_word_count(s + 1, n, false) : snn_word_count(s + 1, in ? n : n + 1, true));
}
#define SNN_MODEL_CHECK(id, M, name, ns, sn, np, pn, nv, vn)                                               \
  static_assert(M::kStates == ns && snn_word_count(sn) == ns && ns <= kMaxStates, #M ": state count");     \
  static_assert(M::kParams == np && snn_word_count(pn) == np && np <= kMaxParams, #M ": parameter count"); \
  static_assert(M::kVariants == nv && snn_word_count(vn) == nv && nv <= kMaxVariants, #M ": variant count");
SNN_MODEL_LIST(SNN_MODEL_CHECK)
#undef SNN_MODEL_CHECK

// Tensors are [T, N] per state / parameter, stacked on a leading dim:
// state k at step t of neuron n is state_seq[k * T * N + seq_base(io, n) + t * seq_step(io, N)]
// (time-major: (k * T + t) * N + n).
struct MFwdParams {
  i64 T, N;
  i64 x_tstride;       // 0: the same input at every step
  const void* x;       // T-typed: x[seq_base(io, n) + t * x_tstride], or [N] when x_tstride = 0
  const void* params;  // S [kParams, P]
  i64 P;
  const void* state0;  // S [kStates, N], or null: the model's init<V>
  void* spikes;        // T [T, N]
  void* state_seq;     // S [kStates, T, N], or null
  void* state_last;    // S [kStates, N]
  void* ckpt;          // S [num_chunks(T), kStates, N]: the states before steps 0, K, 2K...; or null
  // 1: spikes are written as uint8 values (a model's spikes are integers in
  // [0, 255]: 0/1, or I-LIF's counts), one byte per element for a consumer
  // that takes them so (spike_linear), instead of T.
  int spikes_u8;
  SeqLayout io;  // of x, spikes and each state's block of state_seq (params.h)
};

struct MBwdParams {
  i64 T, N;
  i64 x_tstride;
  const void* x;
  const void* params;
  i64 P;
  const void* state0;
  const void* ckpt;  // from the forward
  // S [kStates, T, N] in the io layout: the forward's state sequence, or null.
  // The CPU backward reads the states before each step from it instead of
  // replaying the chunks from their checkpoints (bit for bit the same states);
  // the CUDA kernels replay, which costs them flops instead of bytes.
  const void* state_seq;
  const void* grad_spikes;      // T [T, N], or null (zero)
  const void* grad_state_seq;   // S [kStates, T, N], or null
  const void* grad_state_last;  // S [kStates, N], or null
  void* grad_x;                 // T [T, N], or [N] summed over time when const_input
  void* grad_state0;            // S [kStates, N]
  void* grad_params;            // S [kParams, N] per-neuron sums over time, or null
  double sg_param;
  int surrogate;  // the surrogate id (read by SG_ANY kernels)
  int detach_reset, const_input;
  SeqLayout io;  // of x, grad_spikes, each state's block of grad_state_seq and grad_x (unless const_input)
};

template <typename S>
SNN_HD SNN_INLINE MCfg<S> make_mcfg(double sg_param, int detach_reset, int sg_kind = 0) {
  MCfg<S> c;
  c.sg = (S)sg_param;
  c.sg_kind = sg_kind;
  c.detach_reset = detach_reset != 0;
  return c;
}

}  // namespace snn
