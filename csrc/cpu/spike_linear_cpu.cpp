// spike_linear / spike_linear_weight_grad: a Linear layer whose input is
// spikes stored one byte per element (a nonzero byte is a spike = 1).
//
// The hidden layer of snnTorch's tutorial 5 (784-1000-10) emits [T*B, 1000]
// spikes; writing them as fp32, multiplying by a 10-row weight with MKL,
// narrowing them to uint8 for backward and widening them back costs several
// passes over 13 MB. These kernels read the 3.2 MB of bytes directly.
//
// Results do not depend on the ISA (AVX-512, AVX2+FMA or baseline), the thread
// count or the blocking: a spike times a weight is exact (0 or the weight;
// 0 * inf = NaN as in a matmul), so an FMA and a multiply-then-add round the
// same, and the summation order is fixed:
//  - forward: per (row, k), 64 bytes of lanes (16 fp32 / 8 fp64), lane l
//    summing n = l, l + L, ... in increasing n, then a fixed halving tree over
//    the lanes (lane i += lane i + L/2, ..., down to lane 0), then + bias;
//  - weight gradient: each gW[k, n] is the plain left-to-right sum over rows
//    r = 0, 1, ..., M-1 of spike[r, n] * grad_out[r, k].
// Each ISA keeps those lanes in its own registers (1 zmm, 2 ymm or 4 16-byte
// vectors), which GCC's target_clones cannot give: one body for every clone
// means one register blocking, too large for AVX2's 16 ymm registers or too
// small for AVX-512's 32 zmm, and 64-byte generic vectors compile to stack
// traffic under AVX2. So the kernels (spike_linear_kernels.h) are compiled
// once per ISA with __attribute__((target)) and picked at run time.
//
// float16/bfloat16, and K above the thresholds below, go to at::linear /
// at::mm on the widened spikes (MKL, whose result depends on its own
// blocking). CUDA tensors always do.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../host.h"
#include "cpu_isa.h"

#if SNN_CPU_MULTI_ISA
#include <immintrin.h>
#define SL_X86 1
#else
#define SL_X86 0
#endif

#if defined(__clang__)
#define SL_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define SL_UNROLL _Pragma("GCC unroll 32")
#else
#define SL_UNROLL
#endif

namespace {

// Largest K served by the kernels; above it MKL's GEMM on the widened spikes
// (snn_cuda::uint8_to + at::linear / at::mm) wins: the product is then
// compute-bound, and MKL reuses each loaded value for more outputs than these
// kernels (the forward streams 12 weight rows from L2 per pass over a row
// pair and reduces every output's lanes; the weight gradient re-reads the
// spikes for every 10 outputs). Measured
// with `python benchmarks/spike_linear_op.py --ks 10,16,...,1000` on the
// 2-core AVX-512 Xeon (family 6 model 207, Emerald Rapids, 2 threads), spikes
// [3200, 1000] uint8 at density 0.2, fp32, median ms:
//      K   spike_linear  uint8_to+F.linear |  weight_grad  uint8_to+gy.t()@s
//     10       0.315          0.828        |     0.310          1.033
//     16       0.476          0.801        |     0.482          1.038
//     32       0.952          1.071        |     0.914          1.360
//     40       1.165          1.447        |     1.117          1.534
//     48       1.634          1.397        |     1.328          1.740
//     64       1.884          2.352        |     1.788          2.057
//     96       3.245          2.940        |     2.597          2.675
//    128       4.076          3.277        |     3.454          3.322
//   1000      32.287         21.255        |    35.023         21.555
// (fp64 crosses over at the same K: forward 40 -> 48, weight gradient
// 96 -> 128.)
constexpr int64_t kFwdMaxK = 40;
constexpr int64_t kGradMaxK = 96;

template <class T>
constexpr int lanes() {
  return 64 / (int)sizeof(T);
}

template <class T>
struct FwdArgs {
  const uint8_t* s;  // [M, N]
  const T* w;        // [K, N]
  const T* wtail;    // [K, L]: the last N % L weights of each row, zero-padded
  const T* bias;     // [K] or null
  T* y;              // [M, K]
  int64_t M, N, K;
  int64_t nfull;                      // N / L
  int64_t nblk;                       // blocks of L columns per row, the last one maybe partial
  int tail;                           // N % L
  int64_t tail_direct_rows;           // rows whose partial block can be read as L bytes in bounds
  bool counts;                        // bytes are counts 0..255, not spikes (nonzero = 1)
  alignas(64) uint8_t tail_mask[64];  // 0xFF in the first `tail` bytes
};

template <class T>
struct GradArgs {
  const T* g;        // [M, K]
  const uint8_t* s;  // [M, N]
  T* out;            // [K, N]
  int64_t M, N, K;
  int tail;
  int64_t tail_direct_rows;
  bool counts;
  alignas(64) uint8_t tail_mask[64];
};

// (args, first column, first output, rows [r0, r1))
template <class T>
using GradFn = void (*)(const GradArgs<T>&, int64_t, int64_t, int64_t, int64_t);

// K outputs in n blocks of at most kbm, sizes differing by at most one (11 =
// 6 + 5, not 10 + 1: a 1-wide block would re-read the spikes for little work).
struct KSplit {
  int64_t n, base, extra;
  KSplit(int64_t K, int kbm) : n((K + kbm - 1) / kbm), base(n ? K / n : 0), extra(n ? K % n : 0) {}
  int64_t start(int64_t b) const { return b * base + std::min(b, extra); }
  int size(int64_t b) const { return (int)(base + (b < extra ? 1 : 0)); }
};

// The partial last block of a row starts at r*N + (N - tail); reading L bytes
// from there stays in the [M, N] buffer for every row but the last few.
inline int64_t direct_rows(int64_t M, int64_t N, int tail, int L) {
  if (!tail) return M;
  const int64_t over = L - tail;
  return std::max<int64_t>(0, M - (over + N - 1) / N);
}

// ---------------------------------------------------------------------------
// Per-ISA Ops<T>: Acc holds one block of L = 64 / sizeof(T) lanes, Bytes the
// L spike bytes of a block, Mask what the forward keeps of them between its
// k-blocks.
//   zero, load(L values), bcast(value), store(L values), pin(acc): keep a
//     loaded value in a register (GCC would fold it into every FMA as a
//     memory operand, one load per use)
//   load_bytes(L bytes), and_bytes, spikes(bytes) -> lanes of 0 / 1
//   mask(bytes) -> Mask, unmask(Mask) / unmask_at(const Mask*) -> lanes of 0 / 1
//   fma(acc, m, w): acc = acc + m * w per lane (one rounding: m * w is exact)
//   counts(bytes) -> lanes of the byte values 0..255 (the count path)
//   muladd(acc, m, w): acc + m * w rounded twice, the product first: a
//     count times a weight is not exact (8 + 24 or 53 significant bits), so
//     an FMA would round differently from the baseline variant, which has
//     none; every variant multiplies, then adds
//   reduce(acc): the fixed halving tree, lane i + L/2 onto lane i first
// kFwdKB x kFwdRB and kGradKB x kGradCB: the register blocks (outputs x rows,
// outputs x column blocks).
// ---------------------------------------------------------------------------
namespace sl_generic {
#if defined(__GNUC__)
#define SL_ATTR __attribute__((always_inline)) inline
#define SL_KERNEL __attribute__((noinline))
#else
#define SL_ATTR inline
#define SL_KERNEL
#endif

#if defined(__GNUC__)
// 16-byte vectors (GCC / clang vector extensions): SSE2 on a baseline x86-64
// build, NEON on aarch64; 4 of them make a block, reduced in the same tree.
template <class T>
struct Native;
template <>
struct Native<float> {
  typedef float V __attribute__((vector_size(16)));
  typedef int32_t E;
  typedef E I __attribute__((vector_size(16)));
  typedef uint32_t U;  // the part's 4 spike bytes
  static constexpr I sel() { return I{0xFF, 0xFF00, 0xFF0000, (int32_t)0xFF000000u}; }
};
template <>
struct Native<double> {
  typedef double V __attribute__((vector_size(16)));
  typedef int64_t E;
  typedef E I __attribute__((vector_size(16)));
  typedef uint16_t U;
  static constexpr I sel() { return I{0xFF, 0xFF00}; }
};

template <class T>
struct Ops {
  static constexpr int L = lanes<T>(), W = 16 / (int)sizeof(T), P = L / W;
  static constexpr int kFwdKB = 4, kFwdRB = 1, kGradKB = 4, kGradCB = 1;
  using V = typename Native<T>::V;
  using I = typename Native<T>::I;
  using U = typename Native<T>::U;
  struct Acc {
    V p[P];  // lanes [W i, W i + W)
  };
  struct Bytes {
    uint8_t b[L];
  };
  static SL_ATTR Acc zero() {
    Acc a;
    for (int i = 0; i < P; ++i) a.p[i] = V{};
    return a;
  }
  static SL_ATTR Acc load(const T* x) {
    Acc a;
    std::memcpy(a.p, x, sizeof(a.p));
    return a;
  }
  static SL_ATTR Acc bcast(T x) {
    Acc a;
    for (int i = 0; i < P; ++i) a.p[i] = V{} + x;
    return a;
  }
  static SL_ATTR void store(T* x, const Acc& a) { std::memcpy(x, a.p, sizeof(a.p)); }
  static SL_ATTR void pin(Acc&) {}
  static SL_ATTR Bytes load_bytes(const uint8_t* x) {
    Bytes b;
    std::memcpy(b.b, x, L);
    return b;
  }
  static SL_ATTR Bytes and_bytes(Bytes a, const Bytes& m) {
    for (int l = 0; l < L; ++l) a.b[l] &= m.b[l];
    return a;
  }
  // Lane l of a part tests byte l of the part's W bytes, broadcast to every
  // lane, against 0xFF << 8 l: no widening shuffles, which SSE2 lacks.
  static SL_ATTR Acc spikes(const Bytes& b) {
    const V one = V{} + T(1);
    Acc a;
    for (int i = 0; i < P; ++i) {
      U u;
      std::memcpy(&u, b.b + i * W, sizeof(u));
      const I x = (I{} + (typename Native<T>::E)u) & Native<T>::sel();
      a.p[i] = (V)((x != I{}) & (I)one);
    }
    return a;
  }
  static SL_ATTR Acc counts(const Bytes& b) {
    Acc a;
    for (int i = 0; i < P; ++i)
      for (int l = 0; l < W; ++l) a.p[i][l] = (T)b.b[i * W + l];
    return a;
  }
  using Mask = Bytes;
  static SL_ATTR Mask mask(const Bytes& b) { return b; }
  static SL_ATTR Acc unmask(const Mask& m) { return spikes(m); }
  static SL_ATTR Acc unmask_at(const Mask* m) { return spikes(*m); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) {
    for (int i = 0; i < P; ++i) acc.p[i] = acc.p[i] + m.p[i] * w.p[i];
  }
  // -ffp-contract=off keeps these two roundings apart
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) { fma(acc, m, w); }
  static SL_ATTR T reduce(Acc a) {
    for (int h = P / 2; h >= 1; h /= 2)  // lane l += lane l + L/2, ..., down to one vector
      for (int i = 0; i < h; ++i) a.p[i] = a.p[i] + a.p[i + h];
    T v[W];
    std::memcpy(v, &a.p[0], sizeof(v));
    for (int h = W / 2; h >= 1; h /= 2)
      for (int l = 0; l < h; ++l) v[l] = v[l] + v[l + h];
    return v[0];
  }
};
#else
// Arrays of lanes (compilers without vector extensions); the compiler
// vectorises the lane loops where it can.
template <class T>
struct Ops {
  static constexpr int L = lanes<T>();
  static constexpr int kFwdKB = 4, kFwdRB = 1, kGradKB = 4, kGradCB = 1;
  struct Acc {
    T v[L];
  };
  struct Bytes {
    uint8_t b[L];
  };
  static SL_ATTR Acc zero() {
    Acc a;
    for (int l = 0; l < L; ++l) a.v[l] = T(0);
    return a;
  }
  static SL_ATTR Acc load(const T* p) {
    Acc a;
    std::memcpy(a.v, p, sizeof(a.v));
    return a;
  }
  static SL_ATTR Acc bcast(T x) {
    Acc a;
    for (int l = 0; l < L; ++l) a.v[l] = x;
    return a;
  }
  static SL_ATTR void store(T* p, const Acc& a) { std::memcpy(p, a.v, sizeof(a.v)); }
  static SL_ATTR void pin(Acc&) {}
  static SL_ATTR Bytes load_bytes(const uint8_t* p) {
    Bytes b;
    std::memcpy(b.b, p, L);
    return b;
  }
  static SL_ATTR Bytes and_bytes(Bytes a, const Bytes& m) {
    for (int l = 0; l < L; ++l) a.b[l] &= m.b[l];
    return a;
  }
  static SL_ATTR Acc spikes(const Bytes& b) {
    Acc a;
    for (int l = 0; l < L; ++l) a.v[l] = b.b[l] ? T(1) : T(0);
    return a;
  }
  static SL_ATTR Acc counts(const Bytes& b) {
    Acc a;
    for (int l = 0; l < L; ++l) a.v[l] = (T)b.b[l];
    return a;
  }
  using Mask = Bytes;
  static SL_ATTR Mask mask(const Bytes& b) { return b; }
  static SL_ATTR Acc unmask(const Mask& m) { return spikes(m); }
  static SL_ATTR Acc unmask_at(const Mask* m) { return spikes(*m); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) {
    for (int l = 0; l < L; ++l) acc.v[l] = acc.v[l] + m.v[l] * w.v[l];
  }
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) { fma(acc, m, w); }
  static SL_ATTR T reduce(Acc a) {
    for (int h = L / 2; h >= 1; h /= 2)
      for (int l = 0; l < h; ++l) a.v[l] = a.v[l] + a.v[l + h];
    return a.v[0];
  }
};

#endif

#include "spike_linear_kernels.h"
#undef SL_ATTR
#undef SL_KERNEL
}  // namespace sl_generic

#if SL_X86
namespace sl_avx2 {
#define SL_ATTR __attribute__((target("avx2,fma"), always_inline)) inline
#define SL_KERNEL __attribute__((target("avx2,fma"), noinline))

template <class T>
struct Ops;

// 16 ymm registers: a 64-byte block is 2 of them, so 6 accumulator blocks
// (12 ymm) + the spike block (2) + a weight or gradient operand.
template <>
struct Ops<float> {
  static constexpr int kFwdKB = 6, kFwdRB = 1, kGradKB = 6, kGradCB = 1;
  struct Acc {
    __m256 p[2];  // lanes 0-7, 8-15
  };
  using Bytes = __m128i;
  static SL_ATTR Acc zero() { return {{_mm256_setzero_ps(), _mm256_setzero_ps()}}; }
  static SL_ATTR Acc load(const float* p) { return {{_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}}; }
  static SL_ATTR Acc bcast(float x) { return {{_mm256_set1_ps(x), _mm256_set1_ps(x)}}; }
  static SL_ATTR void store(float* p, const Acc& a) {
    _mm256_storeu_ps(p, a.p[0]);
    _mm256_storeu_ps(p + 8, a.p[1]);
  }
  static SL_ATTR void pin(Acc& a) { __asm__("" : "+x"(a.p[0]), "+x"(a.p[1])); }
  static SL_ATTR Bytes load_bytes(const uint8_t* p) { return _mm_loadu_si128((const __m128i*)p); }
  static SL_ATTR Bytes and_bytes(Bytes a, Bytes m) { return _mm_and_si128(a, m); }
  static SL_ATTR Acc spikes(Bytes b) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i z = _mm256_setzero_si256();
    const __m256i lo = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(b), z);
    const __m256i hi = _mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)), z);
    return {{_mm256_andnot_ps(_mm256_castsi256_ps(lo), one), _mm256_andnot_ps(_mm256_castsi256_ps(hi), one)}};
  }
  // no mask registers: the forward's buffer holds the bytes (in a struct:
  // std::vector drops __m128i's attributes)
  struct Mask {
    __m128i v;
  };
  static SL_ATTR Mask mask(Bytes b) { return {b}; }
  static SL_ATTR Acc unmask(Mask m) { return spikes(m.v); }
  static SL_ATTR Acc unmask_at(const Mask* m) { return spikes(m->v); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) {
    acc.p[0] = _mm256_fmadd_ps(m.p[0], w.p[0], acc.p[0]);
    acc.p[1] = _mm256_fmadd_ps(m.p[1], w.p[1], acc.p[1]);
  }
  static SL_ATTR Acc counts(Bytes b) {
    return {{_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)),
             _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)))}};
  }
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) {
    acc.p[0] = _mm256_add_ps(acc.p[0], _mm256_mul_ps(m.p[0], w.p[0]));
    acc.p[1] = _mm256_add_ps(acc.p[1], _mm256_mul_ps(m.p[1], w.p[1]));
  }
  static SL_ATTR float reduce(const Acc& a) {
    const __m256 s8 = _mm256_add_ps(a.p[0], a.p[1]);
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
  }
};

template <>
struct Ops<double> {
  static constexpr int kFwdKB = 6, kFwdRB = 1, kGradKB = 6, kGradCB = 1;
  struct Acc {
    __m256d p[2];  // lanes 0-3, 4-7
  };
  using Bytes = __m128i;
  static SL_ATTR Acc zero() { return {{_mm256_setzero_pd(), _mm256_setzero_pd()}}; }
  static SL_ATTR Acc load(const double* p) { return {{_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)}}; }
  static SL_ATTR Acc bcast(double x) { return {{_mm256_set1_pd(x), _mm256_set1_pd(x)}}; }
  static SL_ATTR void store(double* p, const Acc& a) {
    _mm256_storeu_pd(p, a.p[0]);
    _mm256_storeu_pd(p + 4, a.p[1]);
  }
  static SL_ATTR void pin(Acc& a) { __asm__("" : "+x"(a.p[0]), "+x"(a.p[1])); }
  static SL_ATTR Bytes load_bytes(const uint8_t* p) { return _mm_loadl_epi64((const __m128i*)p); }
  static SL_ATTR Bytes and_bytes(Bytes a, Bytes m) { return _mm_and_si128(a, m); }
  static SL_ATTR Acc spikes(Bytes b) {
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256i z = _mm256_setzero_si256();
    const __m256i lo = _mm256_cmpeq_epi64(_mm256_cvtepu8_epi64(b), z);
    const __m256i hi = _mm256_cmpeq_epi64(_mm256_cvtepu8_epi64(_mm_srli_si128(b, 4)), z);
    return {{_mm256_andnot_pd(_mm256_castsi256_pd(lo), one), _mm256_andnot_pd(_mm256_castsi256_pd(hi), one)}};
  }
  struct Mask {
    __m128i v;
  };
  static SL_ATTR Mask mask(Bytes b) { return {b}; }
  static SL_ATTR Acc unmask(Mask m) { return spikes(m.v); }
  static SL_ATTR Acc unmask_at(const Mask* m) { return spikes(m->v); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) {
    acc.p[0] = _mm256_fmadd_pd(m.p[0], w.p[0], acc.p[0]);
    acc.p[1] = _mm256_fmadd_pd(m.p[1], w.p[1], acc.p[1]);
  }
  static SL_ATTR Acc counts(Bytes b) {
    return {{_mm256_cvtepi32_pd(_mm_cvtepu8_epi32(b)), _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(b, 4)))}};
  }
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) {
    acc.p[0] = _mm256_add_pd(acc.p[0], _mm256_mul_pd(m.p[0], w.p[0]));
    acc.p[1] = _mm256_add_pd(acc.p[1], _mm256_mul_pd(m.p[1], w.p[1]));
  }
  static SL_ATTR double reduce(const Acc& a) {
    const __m256d s4 = _mm256_add_pd(a.p[0], a.p[1]);
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
};

#include "spike_linear_kernels.h"
#undef SL_ATTR
#undef SL_KERNEL
}  // namespace sl_avx2

namespace sl_avx512 {
#define SL_ATTR __attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline
#define SL_KERNEL __attribute__((target("avx512f,avx512bw,avx512vl"), noinline))

template <class T>
struct Ops;

// A k-mask straight from memory (kmovw k, m16): GCC otherwise loads it into
// a general register and moves it over (kmovw k, r32), an extra instruction
// on a port the FMAs need. Only the address is an operand (with an "m"
// operand GCC keeps the accumulators in memory); the masks are written by an
// earlier, separate kernel call, so no ordering is lost.
SL_ATTR __mmask16 load_mask(const __mmask16* p) {
  __mmask16 k;
  __asm__("kmovw (%1), %0" : "=k"(k) : "r"(p));
  return k;
}

// GCC 12's _mm512_extract* and even its 512 -> 256 casts pass an
// "undefined" vector that -Wall reports as uninitialised: the halves are
// taken by memcpy instead (compiled to the same vextract / register view).
template <class H, class V>
SL_ATTR H half(const V& v, int i) {
  H h;
  std::memcpy(&h, (const char*)&v + i * sizeof(H), sizeof(H));
  return h;
}

// 32 zmm registers, a block is one: forward 2 rows x 12 outputs (24) + the
// two rows' spikes + a weight; weight gradient 10 outputs x 2 column blocks
// (20) + spikes + a broadcast gradient. The spike bytes become a k-mask in
// one instruction (vptestmb, AVX512BW+VL, every AVX-512 Xeon) and 0 / 1
// floats in another (a zero-masked move of 1.0): both on the ports the FMAs
// need, which bound these kernels.
template <>
struct Ops<float> {
  static constexpr int kFwdKB = 12, kFwdRB = 2, kGradKB = 10, kGradCB = 2;
  struct Acc {
    __m512 p;
  };
  using Bytes = __m128i;
  static SL_ATTR Acc zero() { return {_mm512_setzero_ps()}; }
  static SL_ATTR Acc load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static SL_ATTR Acc bcast(float x) { return {_mm512_set1_ps(x)}; }
  static SL_ATTR void store(float* p, const Acc& a) { _mm512_storeu_ps(p, a.p); }
  static SL_ATTR void pin(Acc& a) { __asm__("" : "+v"(a.p)); }
  static SL_ATTR Bytes load_bytes(const uint8_t* p) { return _mm_loadu_si128((const __m128i*)p); }
  static SL_ATTR Bytes and_bytes(Bytes a, Bytes m) { return _mm_and_si128(a, m); }
  using Mask = __mmask16;
  static SL_ATTR Mask mask(Bytes b) { return _mm_test_epi8_mask(b, b); }
  static SL_ATTR Acc unmask(Mask m) { return {_mm512_maskz_mov_ps(m, _mm512_set1_ps(1.0f))}; }
  static SL_ATTR Acc unmask_at(const Mask* p) { return unmask(load_mask(p)); }
  static SL_ATTR Acc spikes(Bytes b) { return unmask(mask(b)); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) { acc.p = _mm512_fmadd_ps(m.p, w.p, acc.p); }
  // the zero-masking forms with every lane kept: GCC 12's plain ones pass an
  // "undefined" vector (-Wmaybe-uninitialized); the same instructions
  static SL_ATTR Acc counts(Bytes b) {
    return {_mm512_maskz_cvtepi32_ps((__mmask16)-1, _mm512_maskz_cvtepu8_epi32((__mmask16)-1, b))};
  }
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) {
    acc.p = _mm512_add_ps(acc.p, _mm512_mul_ps(m.p, w.p));
  }
  static SL_ATTR float reduce(const Acc& a) {
    const __m256 s8 = _mm256_add_ps(half<__m256>(a.p, 0), half<__m256>(a.p, 1));
    const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
  }
};

template <>
struct Ops<double> {
  static constexpr int kFwdKB = 12, kFwdRB = 2, kGradKB = 10, kGradCB = 2;
  struct Acc {
    __m512d p;
  };
  using Bytes = __m128i;
  static SL_ATTR Acc zero() { return {_mm512_setzero_pd()}; }
  static SL_ATTR Acc load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static SL_ATTR Acc bcast(double x) { return {_mm512_set1_pd(x)}; }
  static SL_ATTR void store(double* p, const Acc& a) { _mm512_storeu_pd(p, a.p); }
  static SL_ATTR void pin(Acc& a) { __asm__("" : "+v"(a.p)); }
  static SL_ATTR Bytes load_bytes(const uint8_t* p) { return _mm_loadl_epi64((const __m128i*)p); }
  static SL_ATTR Bytes and_bytes(Bytes a, Bytes m) { return _mm_and_si128(a, m); }
  using Mask = __mmask16;  // the low 8 bits (load_bytes zeroes the rest); kmovw, kmovb is AVX512DQ
  static SL_ATTR Mask mask(Bytes b) { return _mm_test_epi8_mask(b, b); }
  static SL_ATTR Acc unmask(Mask m) { return {_mm512_maskz_mov_pd((__mmask8)m, _mm512_set1_pd(1.0))}; }
  static SL_ATTR Acc unmask_at(const Mask* p) { return unmask(load_mask(p)); }
  static SL_ATTR Acc spikes(Bytes b) { return unmask(mask(b)); }
  static SL_ATTR void fma(Acc& acc, const Acc& m, const Acc& w) { acc.p = _mm512_fmadd_pd(m.p, w.p, acc.p); }
  static SL_ATTR Acc counts(Bytes b) { return {_mm512_maskz_cvtepi32_pd((__mmask8)-1, _mm256_cvtepu8_epi32(b))}; }
  static SL_ATTR void muladd(Acc& acc, const Acc& m, const Acc& w) {
    acc.p = _mm512_add_pd(acc.p, _mm512_mul_pd(m.p, w.p));
  }
  static SL_ATTR double reduce(const Acc& a) {
    const __m256d s4 = _mm256_add_pd(half<__m256d>(a.p, 0), half<__m256d>(a.p, 1));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
};

#include "spike_linear_kernels.h"
#undef SL_ATTR
#undef SL_KERNEL
}  // namespace sl_avx512
#endif  // SL_X86

// ---------------------------------------------------------------------------
// ISA choice: the variant of every CPU kernel (cpu_isa.h; SNN_CUDA_CPU_ISA
// forces one). Every variant gives the same bits.
// ---------------------------------------------------------------------------
using snn_cpu::Isa;
inline Isa isa() { return snn_cpu::isa(); }

template <class T>
void run_forward(const FwdArgs<T>& a) {
  switch (isa()) {
#if SL_X86
    case Isa::kAvx512:
      sl_avx512::forward<T>(a);
      return;
    case Isa::kAvx2:
      sl_avx2::forward<T>(a);
      return;
#endif
    default:
      sl_generic::forward<T>(a);
      return;
  }
}

template <class T>
void run_weight_grad(const GradArgs<T>& a) {
  switch (isa()) {
#if SL_X86
    case Isa::kAvx512:
      sl_avx512::weight_grad<T>(a);
      return;
    case Isa::kAvx2:
      sl_avx2::weight_grad<T>(a);
      return;
#endif
    default:
      sl_generic::weight_grad<T>(a);
      return;
  }
}

template <class A>
void set_tail(A& a, int tail, int L) {
  a.tail = tail;
  a.tail_direct_rows = direct_rows(a.M, a.N, tail, L);
  std::memset(a.tail_mask, 0, sizeof(a.tail_mask));
  std::memset(a.tail_mask, 0xFF, (size_t)tail);
}

// ---------------------------------------------------------------------------
// Checks (shared by the CPU and CUDA implementations)
// ---------------------------------------------------------------------------
int64_t leading_rows(const at::Tensor& t) {
  int64_t m = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) m *= t.size(d);
  return m;
}

void check_spikes(const at::Tensor& spikes) {
  TORCH_CHECK_TYPE(spikes.scalar_type() == at::kByte,
                   "snn_cuda: spikes must be uint8 (one byte per element, nonzero = spike), got ",
                   spikes.scalar_type());
  TORCH_CHECK_VALUE(spikes.dim() >= 1, "snn_cuda: spikes must have at least 1 dimension ([..., N]), got a 0-d tensor");
}

void check_linear(const at::Tensor& spikes, const at::Tensor& weight, const c10::optional<at::Tensor>& bias) {
  check_spikes(spikes);
  snn_host::dtype_code(weight.scalar_type(), "weight");
  TORCH_CHECK_VALUE(weight.device() == spikes.device(), "snn_cuda: weight is on ", weight.device(),
                    " but spikes is on ", spikes.device());
  TORCH_CHECK_VALUE(weight.dim() == 2, "snn_cuda: weight must be 2-D ([K, N]), got shape ", weight.sizes());
  TORCH_CHECK_VALUE(weight.size(1) == spikes.size(-1),
                    "snn_cuda: weight.size(1) must equal spikes.size(-1) (N), got weight of shape ", weight.sizes(),
                    " and spikes of shape ", spikes.sizes());
  if (bias.has_value() && bias->defined()) {
    const at::Tensor& b = *bias;
    TORCH_CHECK_TYPE(b.scalar_type() == weight.scalar_type(), "snn_cuda: bias must have weight's dtype (",
                     weight.scalar_type(), "), got ", b.scalar_type());
    TORCH_CHECK_VALUE(b.device() == weight.device(), "snn_cuda: bias is on ", b.device(), " but weight is on ",
                      weight.device());
    TORCH_CHECK_VALUE(b.dim() == 1 && b.size(0) == weight.size(0),
                      "snn_cuda: bias must be 1-D of size K = weight.size(0) = ", weight.size(0), ", got shape ",
                      b.sizes());
  }
}

void check_weight_grad(const at::Tensor& grad_out, const at::Tensor& spikes) {
  check_spikes(spikes);
  snn_host::dtype_code(grad_out.scalar_type(), "grad_out");
  TORCH_CHECK_VALUE(grad_out.device() == spikes.device(), "snn_cuda: grad_out is on ", grad_out.device(),
                    " but spikes is on ", spikes.device());
  TORCH_CHECK_VALUE(grad_out.dim() == spikes.dim() &&
                        std::equal(grad_out.sizes().begin(), grad_out.sizes().end() - 1, spikes.sizes().begin()),
                    "snn_cuda: grad_out ([..., K]) must have the leading dimensions of spikes ([..., N]), got "
                    "grad_out of shape ",
                    grad_out.sizes(), " and spikes of shape ", spikes.sizes());
}

std::vector<int64_t> linear_out_sizes(const at::Tensor& spikes, int64_t K) {
  std::vector<int64_t> s = spikes.sizes().vec();
  s.back() = K;
  return s;
}

// The spikes as 0/1 of `dtype` for the at::linear / at::mm fallback (a byte
// of 2 is a spike of 1, so not spikes.to(dtype)): snn_cuda::uint8_to, one
// pass. On the CPU as fast as that copy (0.34 ms for [3200, 1000] to fp32)
// where spikes.ne(0).to(dtype) takes 2.3 ms; on CUDA 1 B read and
// sizeof(dtype) written per element where ne/to wrote a bool temporary and
// read it back. A build whose CUDA key has no uint8_to kernel (CPU-only,
// before the CuPy path registers) keeps ne/to.
at::Tensor widen(const at::Tensor& spikes, at::ScalarType dtype, bool counts) {
  // counts: the byte values themselves (exact in every floating dtype: <= 255)
  if (counts) return spikes.to(dtype);
  static const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow("snn_cuda::uint8_to", "");
  if (spikes.device().is_cpu() || handle.hasKernelForDispatchKey(c10::DispatchKey::CUDA)) {
    static auto op = handle.typed<at::Tensor(const at::Tensor&, at::ScalarType)>();
    return op.call(spikes, dtype);
  }
  return spikes.ne(0).to(dtype);
}

at::Tensor linear_fallback(const at::Tensor& spikes, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                           bool counts) {
  return at::linear(widen(spikes, weight.scalar_type(), counts), weight, bias);
}

at::Tensor weight_grad_fallback(const at::Tensor& grad_out, const at::Tensor& spikes, bool counts) {
  const int64_t M = leading_rows(spikes);
  const at::Tensor g = grad_out.reshape({M, grad_out.size(-1)});
  const at::Tensor s = widen(spikes.reshape({M, spikes.size(-1)}), grad_out.scalar_type(), counts);
  return at::mm(g.t(), s);
}

// ---------------------------------------------------------------------------
// CPU
// ---------------------------------------------------------------------------
template <class T>
void forward_cpu(const at::Tensor& s, const at::Tensor& w, const at::Tensor& b, at::Tensor& y, int64_t M, bool counts) {
  constexpr int L = lanes<T>();
  FwdArgs<T> a;
  a.counts = counts;
  a.M = M;
  a.N = w.size(1);
  a.K = w.size(0);
  a.s = s.data_ptr<uint8_t>();
  a.w = w.data_ptr<T>();
  a.bias = b.defined() ? b.data_ptr<T>() : nullptr;
  a.y = y.data_ptr<T>();
  a.nfull = a.N / L;
  set_tail(a, (int)(a.N % L), L);
  a.nblk = a.nfull + (a.tail ? 1 : 0);
  std::vector<T> wtail;
  if (a.tail) {
    wtail.assign((size_t)(a.K * L), T(0));
    for (int64_t k = 0; k < a.K; ++k)
      std::memcpy(wtail.data() + k * L, a.w + k * a.N + a.nfull * L, sizeof(T) * (size_t)a.tail);
  }
  a.wtail = wtail.data();
  run_forward<T>(a);
}

at::Tensor spike_linear_cpu(const at::Tensor& spikes_in, const at::Tensor& weight_in,
                            const c10::optional<at::Tensor>& bias_in, bool counts) {
  check_linear(spikes_in, weight_in, bias_in);
  const at::ScalarType dt = weight_in.scalar_type();
  const int64_t K = weight_in.size(0);
  if ((dt != at::kFloat && dt != at::kDouble) || K > kFwdMaxK)
    return linear_fallback(spikes_in, weight_in, bias_in, counts);
  const at::Tensor s = spikes_in.contiguous(), w = weight_in.contiguous();
  const at::Tensor b = bias_in.has_value() && bias_in->defined() ? bias_in->contiguous() : at::Tensor();
  at::Tensor y = snn_host::alloc(linear_out_sizes(s, K), w.options());
  const int64_t M = leading_rows(s);
  if (M == 0 || K == 0) return y;
  if (dt == at::kFloat)
    forward_cpu<float>(s, w, b, y, M, counts);
  else
    forward_cpu<double>(s, w, b, y, M, counts);
  return y;
}

template <class T>
void weight_grad_cpu_t(const at::Tensor& g, const at::Tensor& s, at::Tensor& out, int64_t M, bool counts) {
  constexpr int L = lanes<T>();
  GradArgs<T> a;
  a.counts = counts;
  a.M = M;
  a.N = s.size(-1);
  a.K = g.size(-1);
  a.g = g.data_ptr<T>();
  a.s = s.data_ptr<uint8_t>();
  a.out = out.data_ptr<T>();
  set_tail(a, (int)(a.N % L), L);
  run_weight_grad<T>(a);
}

at::Tensor spike_linear_weight_grad_cpu(const at::Tensor& grad_out_in, const at::Tensor& spikes_in, bool counts) {
  check_weight_grad(grad_out_in, spikes_in);
  const at::ScalarType dt = grad_out_in.scalar_type();
  const int64_t K = grad_out_in.size(-1), N = spikes_in.size(-1);
  if ((dt != at::kFloat && dt != at::kDouble) || K > kGradMaxK)
    return weight_grad_fallback(grad_out_in, spikes_in, counts);
  const at::Tensor g = grad_out_in.contiguous(), s = spikes_in.contiguous();
  at::Tensor out = snn_host::alloc({K, N}, g.options());
  if (K == 0 || N == 0) return out;
  const int64_t M = leading_rows(s);
  if (dt == at::kFloat)
    weight_grad_cpu_t<float>(g, s, out, M, counts);
  else
    weight_grad_cpu_t<double>(g, s, out, M, counts);
  return out;
}

// ---------------------------------------------------------------------------
// CUDA: torch's GEMM on the widened spikes (no CUDA header needed here).
// ---------------------------------------------------------------------------
at::Tensor spike_linear_cuda(const at::Tensor& spikes, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                             bool counts) {
  check_linear(spikes, weight, bias);
  return linear_fallback(spikes, weight, bias, counts);
}

at::Tensor spike_linear_weight_grad_cuda(const at::Tensor& grad_out, const at::Tensor& spikes, bool counts) {
  check_weight_grad(grad_out, spikes);
  return weight_grad_fallback(grad_out, spikes, counts);
}

// ---------------------------------------------------------------------------
// counts_to_uint8: integer counts 0..max_count in a floating tensor -> bytes.
// A value that is not such a count (fraction, negative, above max_count,
// NaN, inf) would otherwise become a wrong byte (a float -> uint8 cast
// wraps or is undefined), so it is an error naming x.
// ---------------------------------------------------------------------------
void check_counts_args(const at::Tensor& x, int64_t max_count) {
  snn_host::dtype_code(x.scalar_type(), "x");
  TORCH_CHECK_VALUE(max_count >= 1 && max_count <= 255, "snn_cuda: max_count must be in [1, 255], got ", max_count);
}

// One pass: the byte and whether the value was that byte exactly. The value
// is clamped to [0, max_count] first (NaN to 0), so the int conversion is
// always defined, and any value that is not a count differs from its byte;
// the comparison runs in T, so 3 + 2^-40 in fp64 is no count. Written as
// selects and min / max so that it vectorises (a branch per element ran 20x
// slower than a plain cast).
template <class T>
bool narrow_counts(const T* x, uint8_t* out, int64_t n, T maxc) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T lo = v > T(0) ? v : T(0);
    const T cl = lo < maxc ? lo : maxc;
    const int32_t c = (int32_t)cl;
    bad |= (int)((T)c != v);
    out[i] = (uint8_t)c;
  }
  return bad != 0;
}

at::Tensor counts_to_uint8_cpu(const at::Tensor& x_in, int64_t max_count) {
  check_counts_args(x_in, max_count);
  // fp16 / bf16 widen to fp32 exactly, so the same checks hold
  const bool wide = x_in.scalar_type() == at::kDouble;
  const at::Tensor x = wide ? x_in.contiguous() : x_in.to(at::kFloat).contiguous();
  at::Tensor out = snn_host::alloc(x.sizes(), x.options().dtype(at::kByte));
  const int64_t n = x.numel();
  uint8_t* o = out.data_ptr<uint8_t>();
  std::atomic<bool> bad{false};
  at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) {
    const bool b = wide ? narrow_counts(x.data_ptr<double>() + i0, o + i0, i1 - i0, (double)max_count)
                        : narrow_counts(x.data_ptr<float>() + i0, o + i0, i1 - i0, (float)max_count);
    if (b) bad = true;
  });
  TORCH_CHECK_VALUE(!bad, "snn_cuda: x must hold integer counts in [0, max_count = ", max_count,
                    "] to be stored as uint8; it has a value that is not one (fractional, negative, above ",
                    "max_count, NaN or inf)");
  return out;
}

// CUDA: torch's elementwise ops, no host read. The check is
// at::_assert_async on the device: a bad value fails the next synchronising
// call (a device-side assertion) rather than this one.
at::Tensor counts_to_uint8_cuda(const at::Tensor& x, int64_t max_count) {
  check_counts_args(x, max_count);
  const at::Tensor bad = (x < 0).logical_or_(x > (double)max_count).logical_or_(x != x.trunc());
  at::_assert_async(bad.any().logical_not(),
                    "snn_cuda: x must hold integer counts in [0, max_count] to be stored as uint8");
  return x.to(at::kByte);
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) {
  m.impl("spike_linear", &spike_linear_cpu);
  m.impl("spike_linear_weight_grad", &spike_linear_weight_grad_cpu);
  m.impl("counts_to_uint8", &counts_to_uint8_cpu);
}

TORCH_LIBRARY_IMPL(snn_cuda, CUDA, m) {
  m.impl("spike_linear", &spike_linear_cuda);
  m.impl("spike_linear_weight_grad", &spike_linear_weight_grad_cuda);
  m.impl("counts_to_uint8", &counts_to_uint8_cuda);
}
