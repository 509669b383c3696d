// Emulation test driver: runs the real CUDA __global__ neuron kernels
// (csrc/kernels/neuron_kernels.cuh, unmodified) on the CPU through host_shim.h,
// under AddressSanitizer + UBSan, and checks every output against an
// independent scalar reference written here from docs/neuron_semantics.md.
// Every 5th case reruns with batch-first [B, T, F] sequences (run_batch_first),
// which must reproduce the checked time-major bits.
//
// Build (python_tests/test_emulation.py does this and caches the binary):
//   g++ -std=c++17 -O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=all
//       -fsanitize=alignment -ffp-contract=off -I csrc
//       python_tests/emulation/emu_neuron.cpp -o emu_neuron
// (-g1: line tables, which is all the sanitizer reports use; -g doubles the build.)
// Options: -DEMU_QUICK compiles a subset (float32, two surrogates; one
// surrogate per learnable-parameter configuration) for the mutation tests,
// which rebuild the driver once per mutant.
//
// Run: ./emu_neuron            the full matrix; last line "EMU: <n> cases passed, <m> failed"
//      ./emu_neuron --selftest-misaligned-float4   must die in UBSan (alignment)
//      ./emu_neuron --selftest-overrun             must die in ASan (heap overflow)
//
// The oracle does NOT call anything from neuron.h / surrogate.h / common.h's
// conversions: the formulas below are transcribed from docs/neuron_semantics.md,
// and, for the learnable / per-neuron parameters (ParametricLIF's
// charge by k, per-neuron k / beta / threshold, the per-neuron sums over time
// of the decay and threshold gradients), from the autograd of the reference.
// Only the parameter structs (the ABI under test), the storage types and
// snn::grid_blocks / snn::kBlockThreads (the launcher's grid, which the
// emulation must reproduce, not re-derive) come from the kernel headers.
#include "host_shim.h"
#include "kernels/neuron_kernels.cuh"
#include "kernels/encoder_kernels.cuh"
#include "kernels/convert_kernels.cuh"
#include "oracle_surrogate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>)
#include <sanitizer/common_interface_defs.h>
#define EMU_HAVE_SANITIZER_API 1
#endif
#endif

namespace {

// ---------------------------------------------------------------------------
// Case description, printed on failure and from the sanitizer death callback.
// ---------------------------------------------------------------------------
std::string g_current_case;

void on_sanitizer_death() {
  std::fprintf(stderr, "EMU: sanitizer abort while running case: %s\n", g_current_case.c_str());
  std::fflush(stderr);
}

// ---------------------------------------------------------------------------
// Exact-size heap buffers: malloc(n * sizeof(T)) and nothing more, so that an
// access one element past the end lands in ASan's redzone.
// ---------------------------------------------------------------------------
template <typename T>
struct Buf {
  T* p = nullptr;
  size_t n = 0;
  Buf() {}
  explicit Buf(size_t count) : n(count) {
    p = static_cast<T*>(std::malloc(count * sizeof(T)));
    if (!p) {
      std::fprintf(stderr, "EMU: out of memory\n");
      std::exit(2);
    }
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : p(o.p), n(o.n) {
    o.p = nullptr;
    o.n = 0;
  }
  Buf& operator=(Buf&& o) noexcept {
    std::free(p);
    p = o.p;
    n = o.n;
    o.p = nullptr;
    o.n = 0;
    return *this;
  }
  ~Buf() { std::free(p); }
  T& operator[](size_t i) { return p[i]; }
  const T& operator[](size_t i) const { return p[i]; }
};

// ---------------------------------------------------------------------------
// Independent storage conversions (not common.h's).
//   half: the compiler's _Float16 (IEEE binary16, round to nearest even)
//   bf16: nearest of the two bracketing bf16 values, ties to even, in double
// ---------------------------------------------------------------------------
#if !defined(__FLT16_MANT_DIG__)
#error "the emulation oracle needs _Float16 (g++ >= 12 on x86-64 / aarch64)"
#endif

float ref_half_to_float(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, 2);
  return (float)h;
}
uint16_t ref_float_to_half(float f) {
  const _Float16 h = (_Float16)f;
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
float ref_bf16_to_float(uint16_t bits) {
  const uint32_t u = (uint32_t)bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t ref_float_to_bf16(float f) {
  if (std::isnan(f)) return 0x7fc0;
  if (std::fabs(f) > 3.0e38f) {
    std::fprintf(stderr, "EMU: bf16 oracle conversion out of range\n");
    std::exit(2);
  }
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t lo = (uint16_t)(u >> 16);  // toward zero
  const uint16_t hi = (uint16_t)(lo + 1);   // away from zero (same sign)
  const double d = f, dlo = ref_bf16_to_float(lo), dhi = ref_bf16_to_float(hi);
  const double elo = std::fabs(d - dlo), ehi = std::fabs(d - dhi);
  if (elo < ehi) return lo;
  if (ehi < elo) return hi;
  return (lo & 1u) ? hi : lo;
}

// Storage traits for the oracle: state type S, load/store, names, tolerances.
template <typename T>
struct Stor;
template <>
struct Stor<float> {
  typedef float S;
  static S load(float v) { return v; }
  static float store(S v) { return v; }
  static const char* name() { return "float32"; }
  static double rtol() { return 1e-5; }
};
template <>
struct Stor<double> {
  typedef double S;
  static S load(double v) { return v; }
  static double store(S v) { return v; }
  static const char* name() { return "float64"; }
  static double rtol() { return 1e-12; }
};
template <>
struct Stor<snn::half_t> {
  typedef float S;
  static S load(snn::half_t v) { return ref_half_to_float(v.x); }
  static snn::half_t store(S v) {
    snn::half_t h;
    h.x = ref_float_to_half(v);
    return h;
  }
  static const char* name() { return "float16"; }
  static double rtol() { return 1e-5; }
};
template <>
struct Stor<snn::bf16_t> {
  typedef float S;
  static S load(snn::bf16_t v) { return ref_bf16_to_float(v.x); }
  static snn::bf16_t store(S v) {
    snn::bf16_t h;
    h.x = ref_float_to_bf16(v);
    return h;
  }
  static const char* name() { return "bfloat16"; }
  static double rtol() { return 1e-5; }
};

// ---------------------------------------------------------------------------
// The oracle, from docs/neuron_semantics.md. Runtime switches (no templates shared
// with the kernels), state type S, each operation written in the order the
// contract writes it.
// ---------------------------------------------------------------------------
enum { M_LIF = 0, M_IF = 1, M_LEAKY = 2 };
enum { R_HARD = 0, R_SOFT = 1, R_NONE = 2 };

const char* kModelName[] = {"LIF", "IF", "Leaky"};
const char* kResetName[3][3] = {{"hard", "soft", "?"}, {"hard", "soft", "?"}, {"zero", "subtract", "none"}};

struct Config {
  int model, reset, sg;
  bool decay_input, has_floor, detach_reset;
  double tau, v_th, v_reset, v_floor, beta, v_init, sg_param;
  // plif: ParametricLIF (model LIF, charge multiplied by k; tau holds the scalar k).
  // dec_pn / th_pn: per-neuron arrays (state dtype, P elements, neuron n reads n % P) for the
  // decay parameter (k, or Leaky's beta) and the threshold. learn_*: the backward also returns
  // the per-neuron sums over time of d loss / d decay and d loss / d threshold.
  bool plif = false, dec_pn = false, th_pn = false, learn_decay = false, learn_th = false;
  long long P = 1;
};

// The per-neuron parameter arrays of a case (null: the Config scalar).
template <typename S>
struct NeuronArrays {
  const S* dec = nullptr;
  const S* th = nullptr;
  long long P = 1;
};

struct Shape {
  long long T, N, xs;  // xs = x_tstride
  int sm_count;
  int blocks_per_sm;                   // the occupancy the launcher would pass (0: the 2048/block cap)
  bool v0, saved, v_seq;               // forward optional pointers
  bool ckpt;                           // with saved: recompute mode (checkpoints + x) instead of saved H
  bool gs, gv_seq, gv_last, const_in;  // backward optional pointers / mode
  // The batch-first rerun (run_batch_first): B samples of N / B neurons (0: none), a stride-0
  // input given as [B, T, F] instead of [N] (bf_x_seq), the byte-spike forward rerun too (bf_u8).
  long long bf_B = 0;
  bool bf_x_seq = false;
  bool bf_u8 = false;
};

template <typename S>
struct RefFwd {
  std::vector<S> spikes, saved, v_seq, v_last;  // saved: H (LIF/IF), pre-floor P (IF floor), U (Leaky)
  std::vector<S> H;                             // post-floor charged potential (LIF/IF)
};

// Neuron n's decay (LIF: tau; ParametricLIF: k; Leaky: beta) and threshold, in the state dtype:
// the per-neuron array element n % P when given, else the Config scalar rounded once.
template <typename S>
S ref_decay(const Config& c, const NeuronArrays<S>& pa, long long n) {
  if (pa.dec) return pa.dec[n % pa.P];
  return c.model == M_LEAKY ? (S)c.beta : (S)c.tau;
}
template <typename S>
S ref_threshold(const Config& c, const NeuronArrays<S>& pa, long long n) {
  return pa.th ? pa.th[n % pa.P] : (S)c.v_th;
}

template <typename T>
RefFwd<typename Stor<T>::S> ref_forward(const Config& c, const Shape& sh, const T* x, const typename Stor<T>::S* v0,
                                        const NeuronArrays<typename Stor<T>::S>& pa) {
  typedef typename Stor<T>::S S;
  const long long TT = sh.T, N = sh.N;
  RefFwd<S> r;
  r.spikes.assign(TT * N, S(0));
  r.saved.assign(TT * N, S(0));
  r.v_seq.assign(TT * N, S(0));
  r.v_last.assign(N, S(0));
  r.H.assign(TT * N, S(0));
  // Scalars rounded to the state dtype first.
  const S vreset = (S)c.v_reset, vfloor = (S)c.v_floor;
  const bool hard = c.reset == R_HARD;
  const S Vr = hard ? vreset : S(0);  // soft reset: Vr = 0
  for (long long n = 0; n < N; ++n) {
    const S vth = ref_threshold<S>(c, pa, n);
    const S tau = ref_decay<S>(c, pa, n);   // LIF: tau; ParametricLIF: k
    const S beta = ref_decay<S>(c, pa, n);  // Leaky
    S V = v0 ? v0[n] : (S)c.v_init;
    for (long long t = 0; t < TT; ++t) {
      const S X = Stor<T>::load(x[t * sh.xs + n]);
      const long long o = t * N + n;
      if (c.model == M_LEAKY) {
        const S R = (V - vth) > S(0) ? S(1) : S(0);  // Θ' strict, from U_{t-1}
        S U;
        if (c.reset == R_SOFT)
          U = beta * V + X - R * vth;  // subtract
        else if (c.reset == R_HARD)
          U = beta * (S(1) - R) * V + X;  // zero
        else
          U = beta * V + X;  // none
        const S s = (U - vth) > S(0) ? S(1) : S(0);
        r.spikes[o] = s;
        r.saved[o] = U;
        r.v_seq[o] = U;
        V = U;
      } else {
        S H, P = S(0);
        if (c.model == M_LIF && c.plif) {
          // ParametricLIF: H = V + (X - (V - Vr)) k, or V - (V - Vr) k + X.
          const S k = tau;
          if (c.decay_input)
            H = V + (X - (V - Vr)) * k;
          else
            H = V - (V - Vr) * k + X;
          r.saved[o] = H;
        } else if (c.model == M_LIF) {
          if (c.decay_input)
            H = V + (X - (V - Vr)) / tau;
          else
            H = V - (V - Vr) / tau + X;
          r.saved[o] = H;
        } else {
          P = V + X;
          H = c.has_floor ? std::max(P, vfloor) : P;
          r.saved[o] = P;  // pre-floor potential (== H without a floor)
        }
        r.H[o] = H;
        const S s = (H - vth) >= S(0) ? S(1) : S(0);  // Θ fires at 0
        if (hard)
          V = H * (S(1) - s) + vreset * s;
        else
          V = H - vth * s;
        r.spikes[o] = s;
        r.v_seq[o] = V;
      }
    }
    r.v_last[n] = V;
  }
  return r;
}

// Backward oracle. Alongside every gradient it carries a magnitude m (the same
// expression evaluated on absolute values, in double): |computed - exact| is
// bounded by a small multiple of eps * m, so the comparison below uses
// rtol * m instead of rtol * |value|, which would flag honest rounding
// differences amplified by cancellation.
template <typename S>
struct RefBwd {
  std::vector<S> gx, gv0, gdec, gth;  // gdec / gth: per-neuron sums over time (when learnt)
  std::vector<double> gx_mag, gv0_mag, gdec_mag, gth_mag;
};

template <typename T>
RefBwd<typename Stor<T>::S> ref_backward(const Config& c, const Shape& sh, const RefFwd<typename Stor<T>::S>& f,
                                         const T* x, const typename Stor<T>::S* v0, const T* gs,
                                         const typename Stor<T>::S* gvs, const typename Stor<T>::S* gvl,
                                         const NeuronArrays<typename Stor<T>::S>& pa) {
  typedef typename Stor<T>::S S;
  const long long TT = sh.T, N = sh.N;
  RefBwd<S> r;
  const long long gxn = sh.const_in ? N : TT * N;
  r.gx.assign(gxn, S(0));
  r.gx_mag.assign(gxn, 0.0);
  r.gv0.assign(N, S(0));
  r.gv0_mag.assign(N, 0.0);
  r.gdec.assign(N, S(0));
  r.gdec_mag.assign(N, 0.0);
  r.gth.assign(N, S(0));
  r.gth_mag.assign(N, 0.0);
  const S vreset = (S)c.v_reset, vfloor = (S)c.v_floor;
  const S alpha = (S)c.sg_param;
  const bool hard = c.reset == R_HARD;
  const S Vr = hard ? vreset : S(0);
  for (long long n = 0; n < N; ++n) {
    const S vth = ref_threshold<S>(c, pa, n);
    const S tau = ref_decay<S>(c, pa, n), beta = tau;  // tau / k (LIF family) or beta (Leaky)
    const double atau = std::fabs((double)tau);
    // "next": the gradient reaching the membrane V_t (U_t) from step t+1 and,
    // at t = T, from the final-membrane output.
    S next = gvl ? gvl[n] : S(0);
    double next_m = std::fabs((double)next);
    S sum = S(0), gdec = S(0), gth = S(0);
    double sum_m = 0.0, gdec_m = 0.0, gth_m = 0.0;
    for (long long t = TT - 1; t >= 0; --t) {
      const long long o = t * N + n;
      const S gS = gs ? Stor<T>::load(gs[o]) : S(0);
      const S gV = gvs ? gvs[o] : S(0);
      // The state before step t: V_{t-1} / U_{t-1} (v0 or v_init at t = 0).
      const S prev = t > 0 ? f.v_seq[o - N] : (v0 ? v0[n] : (S)c.v_init);
      S gX;
      double gX_m;
      if (c.model == M_LEAKY) {
        const S U = f.saved[o];
        const S sg = ref_sg<S>(c.sg, U - vth, alpha);
        const double asg = std::fabs((double)sg);
        const S gU = gV + gS * sg + next;  // gU_t = gU_out + gS σ' + gU_{t+1} a_{t+1}
        const double gU_m = std::fabs((double)gV) + std::fabs((double)gS) * asg + next_m;
        const S Uprev = prev;
        const S R = (Uprev - vth) > S(0) ? S(1) : S(0);
        const S a = c.reset == R_HARD ? beta * (S(1) - R) : beta;
        // dU_t/dbeta = U_{t-1} ((1 - R_t) U_{t-1} under zero reset); dU_t/dthreshold = -R_t
        // (subtract; R itself detached), dS_t/dthreshold = -σ'.
        const S dUdb = c.reset == R_HARD ? (S(1) - R) * Uprev : Uprev;
        gdec = gdec + gU * dUdb;
        gdec_m += gU_m * std::fabs((double)dUdb);
        if (c.reset == R_SOFT) {
          gth = gth + (-(gS * sg) - R * gU);
          gth_m += std::fabs((double)gS) * asg + (double)R * gU_m;
        } else {
          gth = gth + -(gS * sg);
          gth_m += std::fabs((double)gS) * asg;
        }
        gX = gU;
        gX_m = gU_m;
        next = gU * a;
        next_m = gU_m * std::fabs((double)a);
      } else {
        const S H = f.H[o];
        const S z = H - vth;
        const S sg = ref_sg<S>(c.sg, z, alpha);
        const S s = z >= S(0) ? S(1) : S(0);
        const double asg = std::fabs((double)sg);
        S dVdH;
        double dVdH_m;
        if (c.reset == R_HARD) {
          dVdH = c.detach_reset ? (S(1) - s) : (S(1) - s) + (vreset - H) * sg;
          dVdH_m = std::fabs((double)(S(1) - s)) +
                   (c.detach_reset ? 0.0 : (std::fabs((double)vreset) + std::fabs((double)H)) * asg);
        } else {
          dVdH = c.detach_reset ? S(1) : S(1) - vth * sg;
          dVdH_m = 1.0 + (c.detach_reset ? 0.0 : std::fabs((double)vth) * asg);
        }
        // Threshold: S_t = Θ(H - Vth) gives -σ'; the reset gives dV_t/dVth = (H - Vr) σ' (hard)
        // or Vth σ' - S (soft), only -S through a detached soft reset, nothing through a detached
        // hard one. The IF floor acts on H, before the threshold: no floor factor here.
        S dVdth;
        double dVdth_m;
        if (c.reset == R_HARD) {
          dVdth = c.detach_reset ? S(0) : (H - vreset) * sg;
          dVdth_m = c.detach_reset ? 0.0 : (std::fabs((double)H) + std::fabs((double)vreset)) * asg;
        } else {
          dVdth = c.detach_reset ? -s : vth * sg - s;
          dVdth_m = (c.detach_reset ? 0.0 : std::fabs((double)vth) * asg) + (double)s;
        }
        gth = gth + ((gV + next) * dVdth - gS * sg);
        gth_m += (std::fabs((double)gV) + next_m) * dVdth_m + std::fabs((double)gS) * asg;
        S gH = gS * sg + (gV + next) * dVdH;
        double gH_m = std::fabs((double)gS) * asg + (std::fabs((double)gV) + next_m) * dVdH_m;
        // IF floor: dH/dV and dH/dX at this step times the floor's 0/1 gradient
        // (1 where V_{t-1} + X_t >= v_floor).
        const S pass = (c.model == M_IF && c.has_floor) ? (f.saved[o] >= vfloor ? S(1) : S(0)) : S(1);
        if (c.model == M_LIF && c.plif) {
          // ParametricLIF: dH/dk = X_t - (V_{t-1} - Vr) (decay_input) or -(V_{t-1} - Vr);
          // dH/dV = 1 - k (accumulated as autograd does: gH - gH k); dH/dX = k or 1.
          const S k = tau;
          const S X = Stor<T>::load(x[t * sh.xs + n]);
          const S dHdk = c.decay_input ? X - (prev - Vr) : -(prev - Vr);
          const double dHdk_m =
              (c.decay_input ? std::fabs((double)X) : 0.0) + std::fabs((double)prev) + std::fabs((double)Vr);
          gdec = gdec + gH * dHdk;
          gdec_m += gH_m * dHdk_m;
          next = gH - gH * k;
          next_m = gH_m * (1.0 + atau);
          if (c.decay_input) {
            gX = gH * k;
            gX_m = gH_m * atau;
          } else {
            gX = gH;
            gX_m = gH_m;
          }
        } else if (c.model == M_LIF) {
          // dH/dV = 1 - 1/tau, accumulated as autograd does for the charge
          // expression (the V term plus the -(V - Vr)/tau term): gH - gH/tau.
          next = gH - gH / tau;
          next_m = gH_m * (1.0 + 1.0 / atau);
          if (c.decay_input) {
            gX = gH / tau;  // dH/dX = 1/tau
            gX_m = gH_m / atau;
          } else {
            gX = gH;
            gX_m = gH_m;
          }
        } else {
          gX = gH * pass;  // dH/dX = 1 (times the floor gradient)
          next = gH * pass;
          gX_m = next_m = gH_m * (double)pass;
        }
      }
      if (sh.const_in) {
        sum = sum + gX;
        sum_m += gX_m;
      } else {
        r.gx[o] = gX;
        r.gx_mag[o] = gX_m;
      }
    }
    if (sh.const_in) {
      r.gx[n] = sum;
      r.gx_mag[n] = sum_m;
    }
    r.gv0[n] = next;  // gV0 = gH_1 dH/dV  (Leaky: gU_1 a_1)
    r.gv0_mag[n] = next_m;
    r.gdec[n] = gdec;
    r.gdec_mag[n] = gdec_m;
    r.gth[n] = gth;
    r.gth_mag[n] = gth_m;
  }
  return r;
}

// ---------------------------------------------------------------------------
// Kernel dispatch (compile-time instantiation of the real __global__ bodies).
// ---------------------------------------------------------------------------
typedef void (*FwdLaunch)(unsigned grid, const snn::FwdParams& p);
typedef void (*BwdLaunch)(unsigned grid, const snn::BwdParams& p);

template <int M, int R, typename T>
void launch_fwd(unsigned grid, const snn::FwdParams& p) {
  emu_launch(snn::neuron_fwd_kernel<M, R, T>, dim3(grid), dim3(snn::kBlockThreads), p);
}
template <int M, int R, int SG, typename T>
void launch_bwd(unsigned grid, const snn::BwdParams& p) {
  emu_launch(snn::neuron_bwd_kernel<M, R, SG, T>, dim3(grid), dim3(snn::kBlockThreads), p);
}

#if defined(EMU_QUICK)
constexpr bool sg_enabled(int sg) { return sg == snn::SG_SIGMOID || sg == snn::SG_RECT; }
#else
constexpr bool sg_enabled(int) { return true; }
#endif

template <int M, int R, int SG, typename T>
BwdLaunch bwd_entry() {
  if constexpr (sg_enabled(SG))
    return &launch_bwd<M, R, SG, T>;
  else
    return nullptr;
}

// Every surrogate of the generated list (SNN_SURROGATE_LIST): a hand-written
// switch silently skipped the ids past its last case.
template <int M, int R, typename T>
BwdLaunch bwd_table_sg(int sg) {
  BwdLaunch f = nullptr;
#define EMU_SG(id, E) \
  if (sg == id) f = bwd_entry<M, R, snn::E, T>();
  SNN_SURROGATE_LIST(EMU_SG)
#undef EMU_SG
  return f;
}

template <typename T>
FwdLaunch fwd_table(int model, int reset) {
  switch (model * 3 + reset) {
    case 0:
      return &launch_fwd<snn::MODEL_LIF, snn::RESET_HARD, T>;
    case 1:
      return &launch_fwd<snn::MODEL_LIF, snn::RESET_SOFT, T>;
    case 3:
      return &launch_fwd<snn::MODEL_IF, snn::RESET_HARD, T>;
    case 4:
      return &launch_fwd<snn::MODEL_IF, snn::RESET_SOFT, T>;
    case 6:
      return &launch_fwd<snn::MODEL_LEAKY, snn::RESET_HARD, T>;
    case 7:
      return &launch_fwd<snn::MODEL_LEAKY, snn::RESET_SOFT, T>;
    case 8:
      return &launch_fwd<snn::MODEL_LEAKY, snn::RESET_NONE, T>;
    default:
      return nullptr;
  }
}

template <typename T>
BwdLaunch bwd_table(int model, int reset, int sg) {
  switch (model * 3 + reset) {
    case 0:
      return bwd_table_sg<snn::MODEL_LIF, snn::RESET_HARD, T>(sg);
    case 1:
      return bwd_table_sg<snn::MODEL_LIF, snn::RESET_SOFT, T>(sg);
    case 3:
      return bwd_table_sg<snn::MODEL_IF, snn::RESET_HARD, T>(sg);
    case 4:
      return bwd_table_sg<snn::MODEL_IF, snn::RESET_SOFT, T>(sg);
    case 6:
      return bwd_table_sg<snn::MODEL_LEAKY, snn::RESET_HARD, T>(sg);
    case 7:
      return bwd_table_sg<snn::MODEL_LEAKY, snn::RESET_SOFT, T>(sg);
    case 8:
      return bwd_table_sg<snn::MODEL_LEAKY, snn::RESET_NONE, T>(sg);
    default:
      return nullptr;
  }
}

// ---------------------------------------------------------------------------
// Deterministic RNG (splitmix64) for data and case selection.
// ---------------------------------------------------------------------------
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }
};

// ---------------------------------------------------------------------------
// Comparison helpers.
// ---------------------------------------------------------------------------
struct Failure {
  bool failed = false;
  std::string what;
  void fail(const std::string& w) {
    if (!failed) {
      failed = true;
      what = w;
    }
  }
};

template <typename S>
bool same_value(S a, S b) {
  return a == b || (std::isnan((double)a) && std::isnan((double)b));
}

std::string fmt_g(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

// Exact comparison of a state-typed buffer (saved, v_seq, v_last).
template <typename S>
void check_exact(Failure& F, const char* name, const S* k, const std::vector<S>& r, long long N) {
  for (size_t i = 0; i < r.size(); ++i) {
    if (!same_value(k[i], r[i])) {
      F.fail(std::string(name) + "[t=" + std::to_string(i / N) + ",n=" + std::to_string(i % N) +
             "] kernel=" + fmt_g((double)k[i]) + " ref=" + fmt_g((double)r[i]));
      return;
    }
  }
}

// Exact comparison of a storage-typed buffer (spikes).
template <typename T>
void check_exact_storage(Failure& F, const char* name, const T* k, const std::vector<typename Stor<T>::S>& r,
                         long long N) {
  for (size_t i = 0; i < r.size(); ++i) {
    const typename Stor<T>::S kv = Stor<T>::load(k[i]);
    if (!same_value(kv, r[i])) {
      F.fail(std::string(name) + "[t=" + std::to_string(i / N) + ",n=" + std::to_string(i % N) +
             "] kernel=" + fmt_g((double)kv) + " ref=" + fmt_g((double)r[i]));
      return;
    }
  }
}

// Tolerance comparison: the kernel's value (after storage rounding, for a
// storage-typed output) must lie within [ref - tol, ref + tol] rounded
// outward through the same storage type, tol = rtol * magnitude.
template <typename T, typename V>
void check_close(Failure& F, const char* name, const V* k, const std::vector<typename Stor<T>::S>& r,
                 const std::vector<double>& mag, double rtol, long long N, bool storage) {
  typedef typename Stor<T>::S S;
  for (size_t i = 0; i < r.size(); ++i) {
    double kv;
    if constexpr (std::is_same<V, T>::value)
      kv = (double)Stor<T>::load(k[i]);
    else
      kv = (double)k[i];
    const double ref = (double)r[i];
    const double tol = rtol * mag[i] + 1e-300;
    double lo = ref - tol, hi = ref + tol;
    if (storage) {
      lo = (double)Stor<T>::load(Stor<T>::store((S)lo));
      hi = (double)Stor<T>::load(Stor<T>::store((S)hi));
      // Storage rounding of the endpoints is monotone; also admit the
      // rounded reference itself (tol below half an ulp of T).
      const double rr = (double)Stor<T>::load(Stor<T>::store((S)ref));
      lo = std::min(lo, rr);
      hi = std::max(hi, rr);
    }
    if (!(kv >= lo && kv <= hi)) {
      F.fail(std::string(name) + "[" + std::to_string(i) + " (t=" + std::to_string(i / N) +
             ",n=" + std::to_string(i % N) + ")] kernel=" + fmt_g(kv) + " ref=" + fmt_g(ref) + " mag=" + fmt_g(mag[i]));
      return;
    }
  }
}

// ---------------------------------------------------------------------------
// One case: fill inputs, run forward (and backward), compare.
// ---------------------------------------------------------------------------
struct Stats {
  long long passed = 0, failed = 0, printed = 0;
  long long fwd_launches = 0, bwd_launches = 0, wrapped_grids = 0, determinism_checks = 0;
  long long u8_spike_checks = 0;
  long long convert_vector_cases = 0, convert_scalar_cases = 0;
  // Batch-first reruns, and what they exercised.
  long long bf_cases = 0, bf_bwd = 0, bf_save_h = 0, bf_ckpt = 0, bf_const_in = 0, bf_v_seq = 0, bf_wrapped = 0;
  long long bf_param_grads = 0, bf_u8 = 0, bf_B1 = 0, bf_F1 = 0, bf_x_seq = 0, bf_x_const = 0;
};

template <typename S>
S nan_sentinel() {
  return std::numeric_limits<S>::quiet_NaN();
}

template <typename T>
T storage_nan() {
  return Stor<T>::store(std::numeric_limits<typename Stor<T>::S>::quiet_NaN());
}

std::string describe(const char* dtype, const Config& c, const Shape& s) {
  char b[768];
  std::snprintf(b, sizeof b,
                "dtype=%s model=%s%s reset=%s decay_input=%d has_floor=%d detach_reset=%d sg=%s(%g) "
                "T=%lld N=%lld x_tstride=%lld sm_count=%d blocks_per_sm=%d grid=%lld v0=%d saved=%d ckpt=%d v_seq=%d "
                "grad_spikes=%d grad_v_seq=%d grad_v_last=%d const_input=%d tau=%g v_th=%g v_reset=%g "
                "v_floor=%g beta=%g v_init=%g decay_param=%d th_param=%d P=%lld grad_decay=%d grad_th=%d",
                dtype, kModelName[c.model], c.plif ? "(ParametricLIF)" : "", kResetName[c.model][c.reset],
                c.decay_input, c.has_floor, c.detach_reset, kSgName[c.sg], c.sg_param, s.T, s.N, s.xs, s.sm_count,
                s.blocks_per_sm, (long long)snn::grid_blocks(s.N, snn::kBlockThreads, s.sm_count, s.blocks_per_sm),
                s.v0, s.saved, s.ckpt, s.v_seq, s.gs, s.gv_seq, s.gv_last, s.const_in, c.tau, c.v_th, c.v_reset,
                c.v_floor, c.beta, c.v_init, c.dec_pn, c.th_pn, c.P, c.learn_decay, c.learn_th);
  return b;
}

// Bitwise equality of two buffers (NaN payloads included).
template <typename V>
bool same_bits(const V* a, const V* b, long long n) {
  return std::memcmp(a, b, sizeof(V) * (size_t)n) == 0;
}

// ---------------------------------------------------------------------------
// Batch-first reruns: the layout and the bitwise checks are in emu_layout.h.
// ---------------------------------------------------------------------------
#include "emu_layout.h"  // after Buf and Failure, which its helpers use

// The time-major case's launches (fp, and bp when it ran a backward; their
// pointers still name its checked inputs and outputs) rerun batch-first as its
// own case: B samples; a stride-0 x as [B, T, F] copies when x_seq (the op
// materialises an expanded input), else [N]; the byte-spike forward when u8.
template <typename T>
void run_batch_first(Stats& st, FwdLaunch fwd, BwdLaunch bwd, unsigned grid, const snn::FwdParams& fp,
                     const snn::BwdParams* bp, long long B, bool x_seq, bool u8) {
  typedef typename Stor<T>::S S;
  const long long TT = fp.T, N = fp.N, Fw = N / B, nck = snn::num_chunks(TT);
  const bool x_const = fp.x_tstride == 0 && !(x_seq && !(bp && bp->const_input));
  const long long xs = x_const ? 0 : Fw;
  const std::string tm_case = g_current_case;
  char b[160];
  std::snprintf(b, sizeof b, " batch_first B=%lld F=%lld x_tstride=%lld spikes_u8=%d", B, Fw, xs, (int)u8);
  g_current_case = tm_case + b;
  st.bf_cases++;
  (x_const ? st.bf_x_const : st.bf_x_seq)++;
  if (B == 1) st.bf_B1++;
  if (Fw == 1) st.bf_F1++;
  if ((long long)grid * snn::kBlockThreads < N) st.bf_wrapped++;
  if (fp.v_seq) st.bf_v_seq++;

  // x: [B, T, F] at the sequences' offsets, or a constant input [N] in neuron order.
  Buf<T> x(x_const ? N : TT * N);
  const T* xtm = (const T*)fp.x;
  for (long long t = 0; t < (x_const ? 1 : TT); ++t)
    for (long long n = 0; n < N; ++n) x[x_const ? n : bf_at(t, n, TT, Fw)] = xtm[t * fp.x_tstride + n];

  Buf<T> spikes(TT * N);
  Buf<S> saved, v_seq, v_last(N), ckpt;
  for (long long i = 0; i < TT * N; ++i) spikes[i] = unwritten<T>();
  for (long long n = 0; n < N; ++n) v_last[n] = unwritten<S>();
  if (fp.saved) {
    saved = Buf<S>(TT * N);
    for (long long i = 0; i < TT * N; ++i) saved[i] = unwritten<S>();
  }
  if (fp.v_seq) {
    v_seq = Buf<S>(TT * N);
    for (long long i = 0; i < TT * N; ++i) v_seq[i] = unwritten<S>();
  }
  if (fp.ckpt) {
    ckpt = Buf<S>(nck * N);
    for (long long i = 0; i < nck * N; ++i) ckpt[i] = unwritten<S>();
  }
  snn::FwdParams f = fp;
  f.x = x.p;
  f.x_tstride = xs;
  f.spikes = spikes.p;
  f.saved = fp.saved ? saved.p : nullptr;
  f.v_seq = fp.v_seq ? v_seq.p : nullptr;
  f.v_last = v_last.p;
  f.ckpt = fp.ckpt ? ckpt.p : nullptr;
  f.io = snn::SeqLayout{Fw, TT * Fw, Fw};
  fwd(grid, f);
  st.fwd_launches++;

  Failure F;
  check_bf_seq<T>(F, "spikes", spikes.p, (const T*)fp.spikes, 1, TT, N, Fw);
  if (fp.saved) check_bf_seq<S>(F, "saved", saved.p, (const S*)fp.saved, 1, TT, N, Fw);
  if (fp.v_seq) check_bf_seq<S>(F, "v_seq", v_seq.p, (const S*)fp.v_seq, 1, TT, N, Fw);
  check_bf_flat<S>(F, "v_last", v_last.p, (const S*)fp.v_last, N);
  if (fp.ckpt) check_bf_flat<S>(F, "ckpt", ckpt.p, (const S*)fp.ckpt, nck * N);

  if (u8) {
    st.bf_u8++;
    Buf<unsigned char> sp8(TT * N);
    Buf<S> v_last8(N);
    for (long long i = 0; i < TT * N; ++i) sp8[i] = 0xAB;
    snn::FwdParams f8 = f;
    f8.spikes = sp8.p;
    f8.spikes_u8 = 1;
    f8.v_last = v_last8.p;
    fwd(grid, f8);
    st.fwd_launches++;
    std::vector<unsigned char> want(TT * N);
    for (long long i = 0; i < TT * N; ++i) want[i] = Stor<T>::load(((const T*)fp.spikes)[i]) != S(0) ? 1 : 0;
    check_bf_seq<unsigned char>(F, "u8 spikes", sp8.p, want.data(), 1, TT, N, Fw);
    check_bf_flat<S>(F, "v_last (u8 spikes)", v_last8.p, (const S*)fp.v_last, N);
  }

  if (bp) {
    st.bf_bwd++;
    (bp->ckpt ? st.bf_ckpt : st.bf_save_h)++;
    if (bp->const_input) st.bf_const_in++;
    if (bp->grad_decay || bp->grad_th) st.bf_param_grads++;
    Buf<T> gs;
    Buf<S> gvs;
    if (bp->grad_spikes) gs = to_bf<T>((const T*)bp->grad_spikes, 1, TT, N, Fw);
    if (bp->grad_v_seq) gvs = to_bf<S>((const S*)bp->grad_v_seq, 1, TT, N, Fw);
    const long long gxn = bp->const_input ? N : TT * N;
    Buf<T> gx(gxn);
    Buf<S> gv0(N), gdec, gth;
    for (long long i = 0; i < gxn; ++i) gx[i] = unwritten<T>();
    for (long long n = 0; n < N; ++n) gv0[n] = unwritten<S>();
    if (bp->grad_decay) {
      gdec = Buf<S>(N);
      for (long long n = 0; n < N; ++n) gdec[n] = unwritten<S>();
    }
    if (bp->grad_th) {
      gth = Buf<S>(N);
      for (long long n = 0; n < N; ++n) gth[n] = unwritten<S>();
    }
    // The saved values / checkpoints are this forward's own, as the op hands them over.
    snn::BwdParams g = *bp;
    g.grad_spikes = bp->grad_spikes ? gs.p : nullptr;
    g.grad_v_seq = bp->grad_v_seq ? gvs.p : nullptr;
    g.saved = bp->saved ? saved.p : nullptr;
    g.ckpt = bp->ckpt ? ckpt.p : nullptr;
    g.x = bp->x ? x.p : nullptr;
    g.x_tstride = bp->x ? xs : 0;
    g.grad_x = gx.p;
    g.grad_v0 = gv0.p;
    g.grad_decay = bp->grad_decay ? gdec.p : nullptr;
    g.grad_th = bp->grad_th ? gth.p : nullptr;
    g.io = snn::SeqLayout{Fw, TT * Fw, Fw};
    bwd(grid, g);
    st.bwd_launches++;
    if (bp->const_input)
      check_bf_flat<T>(F, "grad_x(sum over T)", gx.p, (const T*)bp->grad_x, N);
    else
      check_bf_seq<T>(F, "grad_x", gx.p, (const T*)bp->grad_x, 1, TT, N, Fw);
    check_bf_flat<S>(F, "grad_v0", gv0.p, (const S*)bp->grad_v0, N);
    if (bp->grad_decay) check_bf_flat<S>(F, "grad_decay", gdec.p, (const S*)bp->grad_decay, N);
    if (bp->grad_th) check_bf_flat<S>(F, "grad_th", gth.p, (const S*)bp->grad_th, N);
  }

  record_case(st, F, g_current_case);
  g_current_case = tm_case;
}

// Every 5th case of a matrix (k runs over its 11-12 shapes innermost: every shape, model and
// surrogate comes up) reruns batch-first, B, a stride-0 x's layout and the byte spikes drawn from k.
void pick_batch_first(Shape& s, uint64_t k) {
  if (k % 5 != 0) return;
  Rng r(0xba7c4f1257ULL * 1000003ULL + k);
  const uint64_t bits = r.next();
  const int mode = (int)(bits % 8);  // mostly B >= 2 with F >= 2: B = 1 and F = 1 once in 8 each
  s.bf_B = pick_B(s.N, mode < 2 ? 0 : mode < 4 ? 1 : mode < 6 ? 2 : mode == 6 ? 3 : 4);
  s.bf_x_seq = (bits >> 8) & 1;
  s.bf_u8 = ((bits >> 12) % 4) == 0;
}

template <typename T>
void run_case(Stats& st, const Config& c, const Shape& sh, uint64_t seed) {
  typedef typename Stor<T>::S S;
  const FwdLaunch fwd = fwd_table<T>(c.model, c.reset);
  const BwdLaunch bwd = bwd_table<T>(c.model, c.reset, c.sg);
#if defined(EMU_QUICK)
  if (!fwd || !bwd) return;  // not compiled in this build
#else
  if (!fwd || !bwd) {  // the full build has every kernel: a hole in a table is a failure
    std::fprintf(stderr, "EMU: no kernel for model %d reset %d surrogate %d\n", c.model, c.reset, c.sg);
    st.failed++;
    return;
  }
#endif
  g_current_case = describe(Stor<T>::name(), c, sh);
  Rng rng(seed);
  const long long TT = sh.T, N = sh.N;
  const S vfloor = (S)c.v_floor;

  // Per-neuron parameters: P state-typed values each, distinct per element. Drawn
  // only when present, so the cases without them keep their data.
  const long long P = c.P;
  Buf<S> dec_arr, th_arr;
  if (c.dec_pn) {
    dec_arr = Buf<S>(P);
    for (long long i = 0; i < P; ++i) {
      const double u = rng.uniform();
      if (c.model == M_LEAKY)  // beta in [0, 1], the ends included
        dec_arr[i] = (S)(u < 0.05 ? 1.0 : u < 0.1 ? 0.0 : rng.uniform(0.3, 1.0));
      else  // ParametricLIF k = sigmoid(w) in (0, 1)
        dec_arr[i] = (S)(u < 0.05 ? 0.5 : rng.uniform(0.15, 0.95));
    }
  }
  if (c.th_pn) {
    th_arr = Buf<S>(P);
    for (long long i = 0; i < P; ++i) th_arr[i] = (S)(c.v_th * rng.uniform(0.6, 1.5));
  }
  NeuronArrays<S> pa;
  pa.dec = c.dec_pn ? dec_arr.p : nullptr;
  pa.th = c.th_pn ? th_arr.p : nullptr;
  pa.P = P;
  // Neuron n's threshold (for the data), as a double.
  auto th_of = [&](long long n) -> double { return c.th_pn ? (double)th_arr[n % P] : c.v_th; };

  // x: exactly the span the kernel may touch, (T-1)*x_tstride + N elements;
  // gaps of a non-contiguous layout hold NaN (reading them shows in the spikes).
  const long long xn = sh.xs == 0 ? N : (TT - 1) * sh.xs + N;
  Buf<T> x(xn);
  for (long long i = 0; i < xn; ++i) x[i] = storage_nan<T>();
  for (long long t = 0; t < (sh.xs == 0 ? 1 : TT); ++t)
    for (long long n = 0; n < N; ++n) {
      const double th = th_of(n);
      double v = rng.uniform(-1.0, 2.0) * th;
      const double u = rng.uniform();
      if (u < 0.05)
        v = th;  // exactly at threshold (Θ(0) = 1, Θ'(0) = 0)
      else if (u < 0.08)
        v = c.v_floor;  // exactly at the IF floor
      else if (u < 0.11)
        v = 0.0;
      x[t * sh.xs + n] = Stor<T>::store((S)v);
    }
  Buf<S> v0;
  if (sh.v0) {
    v0 = Buf<S>(N);
    for (long long n = 0; n < N; ++n) {
      const double u = rng.uniform();
      v0[n] = u < 0.1 ? S(0) : u < 0.15 ? (S)th_of(n) : u < 0.18 ? vfloor : (S)rng.uniform(-0.5, 1.5);
    }
  }
  Buf<T> spikes(TT * N);
  Buf<S> saved, v_seq, v_last(N), ckpt;
  const long long nck = snn::num_chunks(TT);
  if (sh.saved && !sh.ckpt) saved = Buf<S>(TT * N);
  if (sh.ckpt) {
    ckpt = Buf<S>(nck * N);
    for (long long i = 0; i < nck * N; ++i) ckpt[i] = nan_sentinel<S>();
  }
  if (sh.v_seq) v_seq = Buf<S>(TT * N);
  for (long long i = 0; i < TT * N; ++i) {
    spikes[i] = storage_nan<T>();
    if (sh.saved && !sh.ckpt) saved[i] = nan_sentinel<S>();
    if (sh.v_seq) v_seq[i] = nan_sentinel<S>();
  }
  for (long long n = 0; n < N; ++n) v_last[n] = nan_sentinel<S>();

  snn::FwdParams fp;
  std::memset(&fp, 0, sizeof fp);
  fp.T = TT;
  fp.N = N;
  fp.x_tstride = sh.xs;
  fp.x = x.p;
  fp.v0 = sh.v0 ? v0.p : nullptr;
  fp.spikes = spikes.p;
  fp.saved = (sh.saved && !sh.ckpt) ? saved.p : nullptr;
  fp.ckpt = sh.ckpt ? ckpt.p : nullptr;
  fp.v_seq = sh.v_seq ? v_seq.p : nullptr;
  fp.v_last = v_last.p;
  fp.tau = c.tau;
  fp.v_th = c.v_th;
  fp.v_reset = c.v_reset;
  fp.v_floor = c.v_floor;
  fp.beta = c.beta;
  fp.v_init = c.v_init;
  fp.decay_input = c.decay_input;
  fp.has_floor = c.has_floor;
  fp.plif = c.plif;
  fp.decay_param = pa.dec;
  fp.th_param = pa.th;
  fp.P = P;

  // The launcher's grid: a pure function of (N, block, SM count, blocks per SM).
  const long long grid = snn::grid_blocks(N, snn::kBlockThreads, sh.sm_count, sh.blocks_per_sm);
  if (grid * snn::kBlockThreads < N) st.wrapped_grids++;
  fwd((unsigned)grid, fp);
  st.fwd_launches++;

  Failure F;
  const RefFwd<S> rf = ref_forward<T>(c, sh, x.p, sh.v0 ? v0.p : nullptr, pa);
  check_exact_storage<T>(F, "spikes", spikes.p, rf.spikes, N);
  if (sh.saved && !sh.ckpt) check_exact<S>(F, "saved", saved.p, rf.saved, N);
  if (sh.ckpt) {
    // Checkpoint c is the membrane before step c*K: v0 (or v_init), then V_{cK-1}.
    std::vector<S> want(nck * N);
    for (long long ci = 0; ci < nck; ++ci)
      for (long long n = 0; n < N; ++n)
        want[ci * N + n] = ci == 0 ? (sh.v0 ? v0[n] : (S)c.v_init) : rf.v_seq[(ci * snn::kChunk - 1) * N + n];
    check_exact<S>(F, "ckpt", ckpt.p, want, N);
  }
  if (sh.v_seq) check_exact<S>(F, "v_seq", v_seq.p, rf.v_seq, N);
  check_exact<S>(F, "v_last", v_last.p, rf.v_last, N);

  // The same launch with spikes_u8 (NeuronLinear's byte spikes) on every
  // third case: bytes 0/1 equal to the oracle's spikes, every other output
  // unchanged. The byte buffer starts at 0xAB so an element left unwritten
  // shows.
  if (seed % 3 == 0) {
    std::vector<unsigned char> sp8(TT * N, 0xAB);
    Buf<S> v_last8(N);
    snn::FwdParams fp8 = fp;
    fp8.spikes = sp8.data();
    fp8.spikes_u8 = 1;
    fp8.v_last = v_last8.p;
    fwd((unsigned)grid, fp8);
    st.fwd_launches++;
    st.u8_spike_checks++;
    for (long long i = 0; i < TT * N; ++i) {
      const unsigned char want = rf.spikes[i] != (S)0 ? 1 : 0;
      if (sp8[i] != want) {
        F.fail("u8 spikes[t=" + std::to_string(i / N) + ",n=" + std::to_string(i % N) +
               "] kernel=" + std::to_string((int)sp8[i]) + " ref=" + std::to_string((int)want));
        break;
      }
    }
    check_exact<S>(F, "v_last (u8 spikes)", v_last8.p, rf.v_last, N);
  }
  if (sh.bf_B && !sh.saved)
    run_batch_first<T>(st, fwd, bwd, (unsigned)grid, fp, nullptr, sh.bf_B, sh.bf_x_seq, sh.bf_u8);

  if (sh.saved) {
    Buf<T> gs;
    Buf<S> gvs, gvl;
    if (sh.gs) {
      gs = Buf<T>(TT * N);
      for (long long i = 0; i < TT * N; ++i) gs[i] = Stor<T>::store((S)rng.uniform(-1.0, 1.0));
    }
    if (sh.gv_seq) {
      gvs = Buf<S>(TT * N);
      for (long long i = 0; i < TT * N; ++i) gvs[i] = (S)rng.uniform(-1.0, 1.0);
    }
    if (sh.gv_last) {
      gvl = Buf<S>(N);
      for (long long n = 0; n < N; ++n) gvl[n] = (S)rng.uniform(-1.0, 1.0);
    }
    const long long gxn = sh.const_in ? N : TT * N;
    Buf<T> gx(gxn);
    Buf<S> gv0(N), gdec, gth;
    for (long long i = 0; i < gxn; ++i) gx[i] = storage_nan<T>();
    for (long long n = 0; n < N; ++n) gv0[n] = nan_sentinel<S>();
    // Parameter-gradient outputs: exact-size, NaN-filled (every element must be written); a
    // null pointer when not requested (a write through it dies in ASan).
    if (c.learn_decay) {
      gdec = Buf<S>(N);
      for (long long n = 0; n < N; ++n) gdec[n] = nan_sentinel<S>();
    }
    if (c.learn_th) {
      gth = Buf<S>(N);
      for (long long n = 0; n < N; ++n) gth[n] = nan_sentinel<S>();
    }
    // x in save-h mode: only ParametricLIF's decay gradient under decay_input reads it (X_t in
    // dH/dk); otherwise null, so that a stray read faults.
    const bool plif_x = c.model == M_LIF && c.plif && c.learn_decay && c.decay_input;

    snn::BwdParams bp;
    std::memset(&bp, 0, sizeof bp);
    bp.T = TT;
    bp.N = N;
    bp.grad_spikes = sh.gs ? gs.p : nullptr;
    bp.grad_v_seq = sh.gv_seq ? gvs.p : nullptr;
    bp.grad_v_last = sh.gv_last ? gvl.p : nullptr;
    bp.saved = sh.ckpt ? nullptr : saved.p;
    bp.ckpt = sh.ckpt ? ckpt.p : nullptr;
    bp.x = (sh.ckpt || plif_x) ? (const void*)x.p : nullptr;
    bp.x_tstride = (sh.ckpt || plif_x) ? sh.xs : 0;
    bp.v0 = sh.v0 ? v0.p : nullptr;
    bp.grad_x = gx.p;
    bp.grad_v0 = gv0.p;
    bp.tau = c.tau;
    bp.v_th = c.v_th;
    bp.v_reset = c.v_reset;
    bp.v_floor = c.v_floor;
    bp.beta = c.beta;
    bp.v_init = c.v_init;
    bp.sg_param = c.sg_param;
    bp.decay_input = c.decay_input;
    bp.has_floor = c.has_floor;
    bp.detach_reset = c.detach_reset;
    bp.const_input = sh.const_in;
    bp.plif = c.plif;
    bp.decay_param = pa.dec;
    bp.th_param = pa.th;
    bp.P = P;
    bp.grad_decay = c.learn_decay ? gdec.p : nullptr;
    bp.grad_th = c.learn_th ? gth.p : nullptr;
    bwd((unsigned)grid, bp);
    st.bwd_launches++;

    // Runs the same backward again (into fresh buffers) with `mod` applied to a copy of bp and
    // `grid2` blocks; false if any output differs from the first run in a single bit.
    auto rerun_same = [&](unsigned grid2, auto mod) -> bool {
      // Same NaN sentinels as the first run: an element neither run writes compares equal
      // here and is reported by the oracle comparison instead.
      Buf<T> gx2(gxn);
      Buf<S> gv02(N), gdec2, gth2;
      for (long long i = 0; i < gxn; ++i) gx2[i] = storage_nan<T>();
      for (long long n = 0; n < N; ++n) gv02[n] = nan_sentinel<S>();
      snn::BwdParams bp2 = bp;
      mod(bp2);
      bp2.grad_x = gx2.p;
      bp2.grad_v0 = gv02.p;
      if (c.learn_decay) {
        gdec2 = Buf<S>(N);
        for (long long n = 0; n < N; ++n) gdec2[n] = nan_sentinel<S>();
        bp2.grad_decay = gdec2.p;
      }
      if (c.learn_th) {
        gth2 = Buf<S>(N);
        for (long long n = 0; n < N; ++n) gth2[n] = nan_sentinel<S>();
        bp2.grad_th = gth2.p;
      }
      bwd(grid2, bp2);
      st.bwd_launches++;
      return same_bits(gx.p, gx2.p, gxn) && same_bits(gv0.p, gv02.p, N) &&
             (!c.learn_decay || same_bits(gdec.p, gdec2.p, N)) && (!c.learn_th || same_bits(gth.p, gth2.p, N));
    };

    if (sh.ckpt) {
      // The recompute mode must rebuild the saved values bit for bit: a
      // save-h backward over the oracle's saved values gives identical bits,
      // the parameter gradients included.
      Buf<S> sv(TT * N);
      for (long long i = 0; i < TT * N; ++i) sv[i] = rf.saved[i];
      const bool ok = rerun_same((unsigned)grid, [&](snn::BwdParams& b2) {
        b2.saved = sv.p;
        b2.ckpt = nullptr;
        b2.x = plif_x ? (const void*)x.p : nullptr;
        b2.x_tstride = plif_x ? sh.xs : 0;
      });
      if (!ok) F.fail("recompute backward != save-h backward (bitwise)");
    }
    // Determinism: another grid shape (SM count) gives the same bits; the per-neuron sums do
    // not depend on which thread or grid-stride pass owns the neuron. Run where the other SM
    // count actually changes the grid (N = 2500 needs 10 blocks: one SM's wave holds 2-8 and
    // wraps, 132 SMs hold all 10).
    const int sm2 = sh.sm_count <= 1 ? 132 : 1;
    const long long grid2 = snn::grid_blocks(N, snn::kBlockThreads, sm2, sh.blocks_per_sm);
    if ((c.learn_decay || c.learn_th) && grid2 != grid) {
      st.determinism_checks++;
      const bool ok = rerun_same((unsigned)grid2, [](snn::BwdParams&) {});
      if (!ok)
        F.fail("backward with sm_count=" + std::to_string(sm2) + " (grid " + std::to_string(grid2) + ") != grid " +
               std::to_string(grid) + " (bitwise)");
    }
    const RefBwd<S> rb = ref_backward<T>(c, sh, rf, x.p, sh.v0 ? v0.p : nullptr, sh.gs ? gs.p : nullptr,
                                         sh.gv_seq ? gvs.p : nullptr, sh.gv_last ? gvl.p : nullptr, pa);
    const double rtol = Stor<T>::rtol();
    check_close<T, T>(F, sh.const_in ? "grad_x(sum over T)" : "grad_x", gx.p, rb.gx, rb.gx_mag, rtol, N, true);
    check_close<T, S>(F, "grad_v0", gv0.p, rb.gv0, rb.gv0_mag, rtol, N, false);
    if (c.learn_decay) check_close<T, S>(F, "grad_decay", gdec.p, rb.gdec, rb.gdec_mag, rtol, N, false);
    if (c.learn_th) check_close<T, S>(F, "grad_th", gth.p, rb.gth, rb.gth_mag, rtol, N, false);
    if (sh.bf_B) run_batch_first<T>(st, fwd, bwd, (unsigned)grid, fp, &bp, sh.bf_B, sh.bf_x_seq, sh.bf_u8);
  }

  record_case(st, F, g_current_case);
}

// ---------------------------------------------------------------------------
// The matrix.
// ---------------------------------------------------------------------------
struct BaseShape {
  long long T, N, xs;  // xs: -1 = N (contiguous), -2 = N + 3, 0 = constant input
  int sm;              // 0 = rotate through {1, 2, 132}
  int const_in;        // for xs == 0: 1 = const_input backward (sum over T), 0 = expanded view
};

const BaseShape kShapes[] = {
    {1, 1, -1, 0, 0},      // single neuron, single step
    {5, 37, -1, 0, 0},     // part of one block
    {5, 700, -2, 0, 0},    // several blocks, non-contiguous input (x_tstride = N + 3)
    {5, 2500, -1, 1, 0},   // sm_count = 1: 2048 threads, the grid-stride loop wraps
    {5, 700, 0, 0, 1},     // constant input, gradient summed over T in the kernel
    {1, 2500, 0, 1, 1},    // constant input, T = 1, wrapping grid
    {5, 257, 0, 0, 0},     // stride-0 (expanded) input with a [T, N] gradient
    {5, 2500, -2, 2, 0},   // non-contiguous, two SMs
    {1, 700, -2, 132, 0},  // T = 1 non-contiguous (x_tstride unused but must not be read past)
    {19, 300, -2, 0, 0},   // two full time chunks (kChunk = 8) and a partial one, non-contiguous
    {16, 37, 0, 0, 1},     // exactly two chunks, constant input summed over T
    {8, 2500, -1, 1, 0},   // exactly one chunk, wrapping grid (last: not in the learnable matrix)
};

// The optional pointers / modes of a case from a shape and random bits.
Shape make_shape(const BaseShape& b, uint64_t k, uint64_t bits) {
  const int kSms[3] = {1, 2, 132};
  Shape s;
  s.T = b.T;
  s.N = b.N;
  s.xs = b.xs == -1 ? b.N : b.xs == -2 ? b.N + 3 : 0;
  s.sm_count = b.sm ? b.sm : kSms[(k / 9) % 3];
  // Blocks per SM as the occupancy API reports them for these kernels (4-6 for 256 threads; 2-3
  // for fp64), and 0, the thread-limit cap: a smaller wave wraps the grid-stride loop sooner.
  const int kBps[4] = {0, 4, 6, 2};
  s.blocks_per_sm = kBps[(k / 27 + b.T) % 4];
  s.v0 = bits & 1;
  s.saved = (bits >> 1) % 8 != 0;  // 1 in 8: forward only (no backward)
  s.v_seq = (bits >> 4) & 1;
  s.gs = ((bits >> 5) & 3) != 0;
  s.gv_seq = (bits >> 7) & 1;
  s.gv_last = (bits >> 8) & 1;
  if (!s.gs && !s.gv_seq && !s.gv_last && ((bits >> 9) & 1)) s.gs = true;
  s.const_in = b.xs == 0 && b.const_in;
  // Recompute mode in about half the cases with a backward.
  s.ckpt = s.saved && ((bits >> 10) & 1);
  return s;
}

const size_t kNumShapes = sizeof(kShapes) / sizeof(kShapes[0]);

template <typename T>
void run_dtype(Stats& st, uint64_t& counter) {
  struct MR {
    int m, r;
  };
  const MR combos[7] = {{M_LIF, R_HARD},   {M_LIF, R_SOFT},   {M_IF, R_HARD},   {M_IF, R_SOFT},
                        {M_LEAKY, R_HARD}, {M_LEAKY, R_SOFT}, {M_LEAKY, R_NONE}};
  for (const MR& mr : combos) {
    for (int variant = 0; variant < 2; ++variant) {  // LIF: decay_input; IF: has_floor; Leaky: once
      if (mr.m == M_LEAKY && variant == 1) continue;
      for (int detach = 0; detach < 2; ++detach) {
        for (int sg = 0; sg < snn::SG_COUNT; ++sg) {
          for (size_t si = 0; si < kNumShapes; ++si) {
            const uint64_t k = counter++;
            Rng pick(0x5eedULL * 1000003ULL + k);
            Config c;
            c.model = mr.m;
            c.reset = mr.r;
            c.sg = sg;
            c.decay_input = mr.m == M_LIF && variant == 1 ? false : true;
            c.has_floor = mr.m == M_IF && variant == 1;
            c.detach_reset = detach == 1;
            const double taus[3] = {2.0, 1.7, 3.3};
            const double ths[3] = {1.0, 0.7, 0.5};
            const double resets[3] = {0.0, -0.3, 0.1};
            const double floors[3] = {-0.5, 0.0, -0.25};
            const double betas[5] = {0.9, 0.85, 0.5, 1.0, 0.0};
            c.tau = taus[k % 3];
            c.v_th = ths[(k / 3) % 3];
            c.v_reset = resets[(k / 2) % 3];  // ignored by soft reset (Vr = 0), by contract
            c.v_floor = floors[(k / 5) % 3];
            c.beta = betas[(k / 7) % 5];
            c.sg_param = (k & 1) ? kSgAlt[sg] : kSgDefault[sg];
            // v_init: the launcher passes v_reset (hard) or 0; any value must be honoured.
            c.v_init = (k % 4 == 0) ? 0.0 : (k % 4 == 1) ? c.v_reset : (k % 4 == 2) ? 0.25 : -0.125;
            Shape s = make_shape(kShapes[si], k, pick.next());
            pick_batch_first(s, k);
            run_case<T>(st, c, s, 0xC0FFEEULL + 7919ULL * k);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Learnable / per-neuron parameters: ParametricLIF (hard/soft x
// decay_input x detach_reset), per-neuron thresholds on LIF / IF, per-neuron
// beta and threshold on Leaky; grad_decay / grad_th requested or not; the
// shapes of the main matrix (both save modes, constant input, wrapping grids).
// Surrogates rotate through a short list per configuration (the surrogate
// code is the main matrix's; what is new here is the parameter paths).
// ---------------------------------------------------------------------------
#if defined(EMU_QUICK)
const int kLearnSgs[] = {snn::SG_SIGMOID, snn::SG_RECT};
#else
const int kLearnSgs[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
#endif
const int kNumLearnSgs = (int)(sizeof(kLearnSgs) / sizeof(kLearnSgs[0]));

// P for a per-neuron parameter: 1 (a one-element tensor), a feature count dividing N (the
// largest divisor <= sqrt(N), > 1; N itself when N is prime), or N.
long long pick_P(long long N, int mode) {
  if (mode == 1 || N == 1) return 1;
  if (mode == 2) {
    for (long long d = (long long)std::sqrt((double)N); d > 1; --d)
      if (N % d == 0) return d;
  }
  return N;
}

// The shapes of the learnable matrix: all of kShapes but the last ({8, 2500}: the exactly-one-
// chunk case is the main matrix's; three wrapping grids remain), to keep the run time down.
const size_t kNumLearnShapes = kNumShapes - 1;

template <typename T>
void run_learnable(Stats& st, uint64_t& counter) {
  // kind: 0 ParametricLIF, 1 LIF, 2 IF, 3 Leaky. LIF/IF take a per-neuron threshold only (the
  // op accepts decay_param for ParametricLIF and Leaky alone).
  int sg_rot = 0;
  for (int kind = 0; kind < 4; ++kind) {
    const int model = kind <= 1 ? M_LIF : kind == 2 ? M_IF : M_LEAKY;
    const int n_resets = model == M_LEAKY ? 3 : 2;
    const int n_variants = model == M_LEAKY ? 1 : 2;  // LIF family: decay_input; IF: has_floor
    const int n_detach = model == M_LEAKY ? 1 : 2;    // detach_reset is not a Leaky option
#if defined(EMU_QUICK)
    const int n_sg = 1;  // the mutation builds: one surrogate per configuration
#else
    const int n_sg = kind == 0 || kind == 3 ? 3 : 2;  // surrogates per configuration
#endif
    for (int reset = 0; reset < n_resets; ++reset) {
      for (int variant = 0; variant < n_variants; ++variant) {
        for (int detach = 0; detach < n_detach; ++detach) {
          for (int j = 0; j < n_sg; ++j) {
            const int sg = kLearnSgs[sg_rot++ % kNumLearnSgs];
            for (size_t si = 0; si < kNumLearnShapes; ++si) {
              const uint64_t k = counter++;
              Rng pick(0x1ea4ULL * 1000003ULL + k);
              Config c;
              c.model = model;
              c.reset = reset;
              c.sg = sg;
              c.plif = kind == 0;
              c.decay_input = model == M_LIF ? variant == 0 : true;
              c.has_floor = model == M_IF && variant == 1;
              c.detach_reset = detach == 1;
              const double ks[4] = {0.5, 0.3, 0.75, 0.6};
              const double taus[3] = {2.0, 1.7, 3.3};
              const double ths[3] = {1.0, 0.7, 0.5};
              const double resets[3] = {0.0, -0.3, 0.1};
              const double floors[3] = {-0.5, 0.0, -0.25};
              const double betas[4] = {0.9, 0.5, 1.0, 0.0};
              c.tau = c.plif ? ks[k % 4] : taus[k % 3];
              c.v_th = ths[(k / 3) % 3];
              c.v_reset = resets[(k / 2) % 3];
              c.v_floor = floors[(k / 5) % 3];
              c.beta = betas[(k / 7) % 4];
              c.sg_param = (k & 1) ? kSgAlt[sg] : kSgDefault[sg];
              c.v_init = (k % 4 == 0) ? 0.0 : (k % 4 == 1) ? c.v_reset : (k % 4 == 2) ? 0.25 : -0.125;
              Shape s = make_shape(kShapes[si], k, pick.next());
              pick_batch_first(s, k);
              // Parameters: scalars only (1 in 4), else per-neuron arrays with P = 1, a
              // feature count, or N, rotating with the shape.
              const bool has_dec = c.plif || model == M_LEAKY;
              const uint64_t bits = pick.next();
              const int pmode = (int)((si + k / kNumLearnShapes) % 4);
              if (pmode > 0) {
                c.P = pick_P(s.N, pmode);
                const int which = (int)(bits % 3);  // 0: both, 1: decay only, 2: threshold only
                c.dec_pn = has_dec && which != 2;
                c.th_pn = !has_dec || which != 1;
              }
              // Gradient outputs: each requested 3 times in 4 (both in ~9/16, neither in ~1/16).
              c.learn_decay = has_dec && ((bits >> 2) & 3) != 0;
              c.learn_th = ((bits >> 4) & 3) != 0;
              run_case<T>(st, c, s, 0xBEEFULL + 104729ULL * k);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// The Poisson encoder kernel against an independent Philox4x32-10.
// ---------------------------------------------------------------------------
void ref_philox(uint64_t ctr, uint64_t key, uint32_t out[4]) {
  uint32_t c[4] = {(uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0};
  uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k[0], n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = (uint32_t)p1;
    c[2] = n2;
    c[3] = (uint32_t)p0;
    k[0] += 0x9E3779B9u;
    k[1] += 0xBB67AE85u;
  }
  for (int i = 0; i < 4; ++i) out[i] = c[i];
}

template <typename T>
void run_poisson(Stats& st) {
  typedef typename Stor<T>::S S;
  const long long shapes[][2] = {{1, 1}, {3, 37}, {5, 2500}, {7, 5}, {2, 4099}};
  const int sms[] = {1, 2, 132};
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  for (const auto& sh : shapes) {
    for (int sm : sms) {
      const long long TT = sh[0], N = sh[1], total = TT * N;
      Rng rng(seed);
      Buf<T> x(N), out(total);
      for (long long n = 0; n < N; ++n) {
        const double u = rng.uniform();
        x[n] = Stor<T>::store((S)(n == 0 ? 0.0 : n == N - 1 ? 1.0 : u));
      }
      for (long long i = 0; i < total; ++i) out[i] = storage_nan<T>();
      snn::PoissonParams p;
      std::memset(&p, 0, sizeof p);
      p.T = TT;
      p.N = N;
      p.x = x.p;
      p.out = out.p;
      // The key by value, or (sm_count 2) read by the kernel through seed_ptr as the ops pass a
      // key drawn on the device.
      const long long key = (long long)seed;
      if (sm == 2) {
        p.seed_ptr = &key;
        p.seed = 0;
      } else {
        p.seed = seed;
      }
      const long long groups = (total + 3) / 4;
      const long long grid = snn::grid_blocks(groups, snn::kBlockThreads, sm);
      if (grid * snn::kBlockThreads < groups) st.wrapped_grids++;
      emu_launch(snn::poisson_kernel<T>, dim3((unsigned)grid), dim3(snn::kBlockThreads), p);
      long long bad = 0;
      for (long long e = 0; e < total; ++e) {
        uint32_t r[4];
        ref_philox((uint64_t)(e / 4), seed, r);
        const float u = (float)(r[e % 4] >> 8) * (1.0f / 16777216.0f);
        const float prob = (float)Stor<T>::load(x[e % N]);
        const double want = u < prob ? 1.0 : 0.0;
        if ((double)Stor<T>::load(out[e]) != want) ++bad;
      }
      g_current_case = std::string("poisson dtype=") + Stor<T>::name() + " T=" + std::to_string(TT) +
                       " N=" + std::to_string(N) + " sm_count=" + std::to_string(sm);
      if (bad) {
        st.failed++;
        std::printf("FAIL %s: %lld spikes differ from the oracle\n", g_current_case.c_str(), bad);
      } else {
        st.passed++;
      }
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    }
  }
}

// ---------------------------------------------------------------------------
// The byte conversions (binary_to_uint8 / uint8_to) against plain loops. The
// buffers are exact-size and 64-byte aligned, then offset by 0-3 elements, so
// both the vector path (aligned whole tensors) and the per-element path
// (views at odd offsets, where a vector access would be misaligned) run, and
// the partial last group reads nothing past the end.
// ---------------------------------------------------------------------------
template <typename T>
struct AlignedBuf {
  T* base = nullptr;
  explicit AlignedBuf(size_t count) {
    void* p = nullptr;
    if (posix_memalign(&p, 64, count * sizeof(T) > 0 ? count * sizeof(T) : 1) != 0) {
      std::fprintf(stderr, "EMU: out of memory\n");
      std::exit(2);
    }
    base = static_cast<T*>(p);
  }
  ~AlignedBuf() { std::free(base); }
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
};

template <typename T>
void run_convert(Stats& st) {
  typedef typename Stor<T>::S S;
  const long long sizes[] = {1, 3, 4, 5, 8, 1023, 4099, 10001};
  const int grids[][2] = {{1, 0}, {2, 4}, {132, 6}, {1, 2}};  // (SMs, blocks per SM)
  uint64_t seed = 0x243F6A8885A308D3ULL;
  for (long long n : sizes) {
    for (int off = 0; off < 4; ++off) {
      for (int binary = 0; binary < 2; ++binary) {
        const int* g = grids[(n + off + binary) % 4];
        Rng rng(seed);
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        // narrow: x (offset `off` elements) -> bytes (offset `off % 2`)
        AlignedBuf<T> xb(n + off);
        AlignedBuf<unsigned char> ob(n + 1);
        AlignedBuf<int> flag(1);
        T* x = xb.base + off;
        unsigned char* out = ob.base + off % 2;
        // Neither 0 nor 1. For fp64, 1e-300 is 0 as a float: the kernels compare in the state
        // type, so it must narrow to 1 and raise the flag.
        const S odd[] = {(S)0.5, (S)2.0, (S)-1.0, std::numeric_limits<S>::quiet_NaN(),
                         sizeof(S) == 8 ? (S)1e-300 : (S)3e-5};
        for (long long i = 0; i < n; ++i) {
          const double u = rng.uniform();
          S v = u < 0.5 ? (S)0.0 : (S)1.0;
          if (u < 0.05) v = (S)-0.0;
          x[i] = Stor<T>::store(v);
          out[i] = 0xAB;
        }
        if (!binary) x[(long long)(rng.uniform() * n) % n] = Stor<T>::store(odd[n % 5]);
        flag.base[0] = 0;
        snn::NarrowParams np{n, x, out, flag.base};
        const long long groups = snn::convert_groups(n);
        const long long grid = snn::grid_blocks(groups, snn::kBlockThreads, g[0], g[1]);
        if (grid * snn::kBlockThreads < groups) st.wrapped_grids++;
        // The kernels' vector path: both buffers aligned to their vector width (here: offset 0).
        const bool vec = off == 0;
        (vec && n >= 4 ? st.convert_vector_cases : st.convert_scalar_cases)++;
        emu_launch(snn::narrow_kernel<T>, dim3((unsigned)grid), dim3(snn::kBlockThreads), np);
        long long bad = 0;
        bool want_flag = false;
        for (long long i = 0; i < n; ++i) {
          const double v = (double)Stor<T>::load(x[i]);
          if (!(v == 0.0 || v == 1.0)) want_flag = true;
          if (out[i] != (v != 0.0 ? 1 : 0)) ++bad;
        }
        g_current_case = std::string("narrow dtype=") + Stor<T>::name() + " n=" + std::to_string(n) +
                         " x_offset=" + std::to_string(off) + " out_offset=" + std::to_string(off % 2) +
                         " binary=" + std::to_string(binary) + " sm_count=" + std::to_string(g[0]) +
                         " blocks_per_sm=" + std::to_string(g[1]);
        if (bad || (flag.base[0] != 0) != want_flag || want_flag == (bool)binary) {
          st.failed++;
          std::printf("FAIL %s: %lld bytes differ, flag=%d want %d\n", g_current_case.c_str(), bad, flag.base[0],
                      (int)want_flag);
        } else {
          st.passed++;
        }
        // Without a flag pointer the kernel narrows without checking: same bytes.
        for (long long i = 0; i < n; ++i) out[i] = 0xCD;
        np.not_binary = nullptr;
        emu_launch(snn::narrow_kernel<T>, dim3((unsigned)grid), dim3(snn::kBlockThreads), np);
        long long bad2 = 0;
        for (long long i = 0; i < n; ++i) bad2 += out[i] != ((double)Stor<T>::load(x[i]) != 0.0 ? 1 : 0);
        if (bad2) {
          st.failed++;
          std::printf("FAIL %s (no flag): %lld bytes differ\n", g_current_case.c_str(), bad2);
        } else {
          st.passed++;
        }
        // widen: bytes (offset `off`) -> T (offset `off % 2`); any nonzero byte is a spike
        AlignedBuf<unsigned char> bb(n + off);
        AlignedBuf<T> wb(n + 1);
        unsigned char* bytes = bb.base + off;
        T* wide = wb.base + off % 2;
        const unsigned char vals[] = {0, 1, 0, 2, 255, 0, 1, 128};
        for (long long i = 0; i < n; ++i) {
          bytes[i] = vals[(unsigned)(rng.uniform() * 8) % 8];
          wide[i] = storage_nan<T>();
        }
        snn::WidenParams wp{n, bytes, wide};
        emu_launch(snn::widen_kernel<T>, dim3((unsigned)grid), dim3(snn::kBlockThreads), wp);
        long long badw = 0;
        for (long long i = 0; i < n; ++i) {
          const double v = (double)Stor<T>::load(wide[i]);
          if (v != (bytes[i] ? 1.0 : 0.0) || std::signbit(v)) ++badw;
        }
        g_current_case = std::string("widen dtype=") + Stor<T>::name() + " n=" + std::to_string(n) +
                         " x_offset=" + std::to_string(off) + " out_offset=" + std::to_string(off % 2);
        if (badw) {
          st.failed++;
          std::printf("FAIL %s: %lld values differ\n", g_current_case.c_str(), badw);
        } else {
          st.passed++;
        }
      }
    }
  }
}

// A tiny kernel that covers a 3-D grid: every (block, thread) must run once.
__global__ void coverage_kernel(int* hits, int total) {
  const int bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const int tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int i = bx * (blockDim.x * blockDim.y * blockDim.z) + tx;
  if (i < total) hits[i] += 1;
}

bool selftest_coverage() {
  const dim3 grid(3, 2, 2), block(5, 4, 3);
  const int total = 3 * 2 * 2 * 5 * 4 * 3;
  Buf<int> hits(total);
  for (int i = 0; i < total; ++i) hits[i] = 0;
  emu_launch(coverage_kernel, grid, block, hits.p, total);
  for (int i = 0; i < total; ++i)
    if (hits[i] != 1) {
      std::printf("FAIL shim coverage: index %d ran %d times\n", i, hits[i]);
      return false;
    }
  return true;
}

// Deliberately wrong kernels, to prove the sanitizers see what the GPU would
// fault on. Each must abort the process.
__global__ void misaligned_float4_kernel(const float* in, float* out) {
  const float4 v = reinterpret_cast<const float4*>(in + 1)[threadIdx.x];  // 4-byte aligned, not 16
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}
__global__ void overrun_kernel(const float* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i < n ? i : 0] += in[i];  // i == n reads one past the end
}

}  // namespace

int main(int argc, char** argv) {
#if defined(EMU_HAVE_SANITIZER_API)
  __sanitizer_set_death_callback(on_sanitizer_death);
#endif
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // FAIL lines survive a sanitizer abort
  if (argc > 1) {
    const std::string mode = argv[1];
    if (mode == "--selftest-misaligned-float4") {
      g_current_case = "selftest: float4 load from a 4-byte-aligned address";
      Buf<float> in(4 * 8 + 4), out(8);
      for (size_t i = 0; i < in.n; ++i) in[i] = 1.0f;
      emu_launch(misaligned_float4_kernel, dim3(1), dim3(8), (const float*)in.p, out.p);
      std::printf("EMU: selftest NOT caught (misaligned float4 load went unnoticed)\n");
      return 0;
    }
    if (mode == "--selftest-overrun") {
      g_current_case = "selftest: read one element past an exact-size buffer";
      const int n = 37;
      Buf<float> in(n), out(n);
      for (int i = 0; i < n; ++i) in[i] = out[i] = 0.0f;
      emu_launch(overrun_kernel, dim3(1), dim3(64), (const float*)in.p, out.p, n);
      std::printf("EMU: selftest NOT caught (overrun went unnoticed)\n");
      return 0;
    }
    std::fprintf(stderr, "usage: %s [--selftest-misaligned-float4 | --selftest-overrun]\n", argv[0]);
    return 2;
  }

  Stats st;
  if (selftest_coverage())
    st.passed++;
  else
    st.failed++;

  uint64_t counter = 0, lcounter = 0;
  run_dtype<float>(st, counter);
  run_learnable<float>(st, lcounter);
  run_poisson<float>(st);
  run_convert<float>(st);
#if !defined(EMU_QUICK)
  run_convert<double>(st);
  run_convert<snn::half_t>(st);
  run_convert<snn::bf16_t>(st);
  run_poisson<snn::half_t>(st);
  run_poisson<double>(st);
  run_poisson<snn::bf16_t>(st);
  run_dtype<snn::half_t>(st, counter);
  run_dtype<double>(st, counter);
  run_dtype<snn::bf16_t>(st, counter);
  run_learnable<snn::half_t>(st, lcounter);
  run_learnable<double>(st, lcounter);
  run_learnable<snn::bf16_t>(st, lcounter);
#endif
  g_current_case = "(done)";
  std::printf(
      "EMU: launches fwd=%lld bwd=%lld emulated_threads=%llu wrapped_grids=%lld determinism_checks=%lld "
      "u8_spike_checks=%lld convert_vector_cases=%lld convert_scalar_cases=%lld\n",
      st.fwd_launches, st.bwd_launches, emu_launch_stats().threads, st.wrapped_grids, st.determinism_checks,
      st.u8_spike_checks, st.convert_vector_cases, st.convert_scalar_cases);
  std::printf(
      "EMU: batch_first cases=%lld backward=%lld save_h=%lld ckpt=%lld const_input=%lld v_seq=%lld wrapped=%lld "
      "param_grads=%lld u8=%lld B1=%lld F1=%lld x_seq=%lld x_constant=%lld\n",
      st.bf_cases, st.bf_bwd, st.bf_save_h, st.bf_ckpt, st.bf_const_in, st.bf_v_seq, st.bf_wrapped, st.bf_param_grads,
      st.bf_u8, st.bf_B1, st.bf_F1, st.bf_x_seq, st.bf_x_const);
  std::printf("EMU: %lld cases passed, %lld failed\n", st.passed, st.failed);
  return st.failed == 0 ? 0 : 1;
}
