// Plain launch parameters shared by every backend: the CPU kernels, the CUDA
// launchers, the CuPy path (which packs the same layout from Python) and the
// host emulation. Pointers are untyped; the kernels cast them to the storage
// type T (x, spikes, grad_x, grad_spikes) or the state type S (everything
// else: saved values, membranes, initial state, membrane gradients).
#pragma once
#include "common.h"
#include "neuron.h"

namespace snn {

// Time steps per register-blocked chunk of the CUDA time loop, and the
// checkpoint interval of the recompute mode. A thread loads a chunk's K
// inputs (or saved values, or incoming gradients) before using any, so K
// independent loads are in flight per thread; the backward of the recompute
// mode rebuilds the chunk's K charged potentials from x and one stored
// membrane in registers. Checkpoints cost 8/K bytes per neuron-step.
static const int kChunk = 8;

SNN_HD SNN_INLINE i64 num_chunks(i64 T) { return (T + kChunk - 1) / kChunk; }

// Where element (t, n) of a [T, ...] sequence lives: spikes, v_seq /
// state_seq, saved (SAVE_H), their gradients, and x.
// run = 0 (what a zeroed struct says): time-major [T, N], at t * N + n (x:
// t * x_tstride + n, any time stride).
// run > 0: batch-first [B, T, ...] (torch.nn.RNN's batch_first), neurons in
// runs of `run` (the neurons of one sample's step) that are contiguous, at
// (n / run) * run_stride + t * tstride + n % run; x the same (contiguous,
// x_tstride = tstride). A constant input x (x_tstride = 0) is [N] in neuron
// order, read once per neuron. The per-neuron tensors (v0, v_last,
// checkpoints, parameter sums) keep the neuron order n in both layouts.
// x shares the sequences' offsets rather than having strides of its own: a
// separate x offset held in the time loop made the declared models' backward
// kernels spill (sm_90, benchmarks/results/gpu_static_report.md).
struct SeqLayout {
  i64 run;         // neurons per contiguous run, or 0: time-major
  i64 run_stride;  // elements between runs (T * run for a [B, T, ...] tensor)
  i64 tstride;     // elements between steps (run)
};

// Offset of neuron n's element at step 0, and the step stride.
SNN_HD SNN_INLINE i64 seq_base(const SeqLayout& l, i64 n) {
  return l.run > 0 ? (n / l.run) * l.run_stride + n % l.run : n;
}
SNN_HD SNN_INLINE i64 seq_step(const SeqLayout& l, i64 N) { return l.run > 0 ? l.tstride : N; }

// What the forward keeps for the backward.
enum SaveMode : int {
  SAVE_NONE = 0,  // inference: nothing
  SAVE_H = 1,     // the charged potential of every step ([T, N], state dtype)
  SAVE_CKPT = 2,  // the membrane before every kChunk-th step ([ceil(T/K), N]); x is re-read
};

struct FwdParams {
  i64 T;           // time steps
  i64 N;           // neurons (product of the non-time dims)
  i64 x_tstride;   // elements between x[t] and x[t+1]; 0 = same input at every step
  const void* x;   // T: element (t, n) at x[seq_base(io, n) + t * x_tstride]; [N] when x_tstride = 0
  const void* v0;  // S [N], or null: every neuron starts at v_init
  void* spikes;    // T [T, N]
  void* saved;     // S [T, N], or null (no backward will run)
  void* v_seq;     // S [T, N], or null (membrane sequence not requested)
  void* v_last;    // S [N]
  void* ckpt;      // S [num_chunks(T), N]: V before steps 0, K, 2K, ...; or null
  double tau, v_th, v_reset, v_floor, beta, v_init;
  int decay_input, has_floor;
  int plif;  // ParametricLIF: the charge multiplies by k (see Coeffs::plif)
  // Per-neuron parameters (S [P], neuron n reads element n % P; P = 1 for a
  // tensor-valued scalar), or null: the scalar above. decay: k (ParametricLIF)
  // or beta (Leaky); th: the threshold.
  const void* decay_param;
  const void* th_param;
  i64 P;
  // 1: spikes are written as uint8 0/1 (one byte per element, for a consumer
  // such as spike_linear that takes them so) instead of T.
  int spikes_u8;
  SeqLayout io;  // of x, spikes, saved (SAVE_H) and v_seq; checkpoints are [num_chunks(T), N]
};

struct BwdParams {
  i64 T;
  i64 N;
  const void* grad_spikes;  // T [T, N], or null (zero)
  const void* grad_v_seq;   // S [T, N], or null (zero)
  const void* grad_v_last;  // S [N], or null (zero)
  const void* saved;        // S [T, N], from FwdParams::saved; null in recompute mode
  const void* ckpt;         // S [num_chunks(T), N] (recompute mode), or null
  const void* x;            // recompute mode: the forward's input, T-typed
  i64 x_tstride;            // recompute mode: as FwdParams::x_tstride
  const void* v0;           // S [N], or null (v_init). Leaky only.
  void* grad_x;             // T [T, N], or [N] summed over time when const_input
  void* grad_v0;            // S [N]
  double tau, v_th, v_reset, v_floor, beta, v_init, sg_param;
  int decay_input, has_floor, detach_reset, const_input;
  int plif;
  const void* decay_param;  // as FwdParams
  const void* th_param;
  i64 P;
  // Per-neuron sums over time of the parameter gradients (S [N]), or null
  // when not wanted. The caller reduces them over neurons (in a fixed order:
  // deterministic, no atomics). ParametricLIF's decay gradient also needs x
  // (above; given in both save modes when decay_input) and v0.
  void* grad_decay;
  void* grad_th;
  SeqLayout io;  // of x, grad_spikes, grad_v_seq, saved (SAVE_H) and grad_x (unless const_input)
};

// Scalars rounded to the state type once, as the contract requires.
template <typename S, typename P>
SNN_HD SNN_INLINE Coeffs<S> make_coeffs(const P& p, double sg_param) {
  Coeffs<S> c;
  c.tau = (S)p.tau;
  c.v_th = (S)p.v_th;
  c.v_reset = (S)p.v_reset;
  c.v_floor = (S)p.v_floor;
  c.beta = (S)p.beta;
  c.sg = (S)sg_param;
  c.decay_input = p.decay_input != 0;
  c.has_floor = p.has_floor != 0;
  c.detach_reset = false;
  c.plif = p.plif != 0;
  c.learn_decay = false;
  c.learn_th = false;
  return c;
}

// Neuron n's coefficients: the per-neuron parameters (when given) over the
// scalars. The decay parameter is k for the LIF family, beta for Leaky.
template <int MODEL, typename S, typename P>
SNN_HD SNN_INLINE void neuron_coeffs(Coeffs<S>& c, const P& p, i64 n) {
  if (p.decay_param) {
    const S d = ((const S*)p.decay_param)[n % p.P];
    if (MODEL == MODEL_LEAKY) {
      c.beta = d;
    } else {
      c.tau = d;
    }
  }
  if (p.th_param) c.v_th = ((const S*)p.th_param)[n % p.P];
}

// Threads per block of every neuron kernel.
static const int kBlockThreads = 256;

// Blocks for n work items: one thread per item, capped at one full wave of
// resident blocks, sm_count x blocks_per_sm; past the cap the kernels
// grid-stride. blocks_per_sm is the occupancy API's answer for the kernel
// being launched (cudaOccupancyMaxActiveBlocksPerMultiprocessor, cached per
// kernel and device by the launchers): a register-limited kernel holds 4-6
// blocks of 256 per SM, and a cap of 2048 / block = 8 launched 1.33-2 waves,
// the last one partial. 0 (unknown) keeps that thread-limit cap of
// 2048 / block. A pure function of its arguments, so that the CUDA launchers,
// the CuPy path and the emulation (which passes tiny SM counts to force
// wrap-around) agree.
SNN_HD SNN_INLINE i64 grid_blocks(i64 n, int block, int sm_count, int blocks_per_sm = 0) {
  const i64 need = (n + block - 1) / block;
  const i64 per_sm = blocks_per_sm > 0 ? blocks_per_sm : (2048 / block > 0 ? 2048 / block : 1);
  const i64 cap = (i64)(sm_count > 0 ? sm_count : 1) * per_sm;
  const i64 g = need < cap ? need : cap;
  return g > 0 ? g : 1;
}

}  // namespace snn
