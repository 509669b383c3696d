// What the emulation drivers (emu_neuron.cpp, emu_model.cpp) share, included
// after their Buf and Failure: a case's verdict, and the batch-first layout
// checks. params.h SeqLayout (torch's batch_first) puts the sequences as
// [B, T, F] with N = B * F. A driver reruns a case's launches on permuted
// inputs with io = {F, T * F, F}; every output must carry the time-major run's
// bits (which the oracle checked) after permuting back. The buffers are
// exact-size (ASan sees a stray index) and start as a NaN payload that no
// kernel computes (an unwritten element shows).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

// A case's verdict into the driver's counts; the first 200 failures are printed.
template <class Stats>
void record_case(Stats& st, const Failure& F, const std::string& name) {
  if (!F.failed) {
    st.passed++;
    return;
  }
  st.failed++;
  if (st.printed < 200) {
    std::printf("FAIL %s: %s\n", name.c_str(), F.what.c_str());
    st.printed++;
  }
}

template <typename V>
V unwritten();
template <>
inline float unwritten<float>() {
  const uint32_t u = 0x7fc0a5a5u;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <>
inline double unwritten<double>() {
  const uint64_t u = 0x7ff8a5a5a5a5a5a5ull;
  double d;
  std::memcpy(&d, &u, 8);
  return d;
}
template <>
inline snn::half_t unwritten<snn::half_t>() {
  snn::half_t h;
  h.x = 0x7e5a;
  return h;
}
template <>
inline snn::bf16_t unwritten<snn::bf16_t>() {
  snn::bf16_t h;
  h.x = 0x7fe5;
  return h;
}

// Where element (t, n) of a [T, N] sequence lives in a [B, T, F] one.
inline long long bf_at(long long t, long long n, long long T, long long F) { return (n / F) * T * F + t * F + n % F; }

template <typename V>
std::string hex_bits(const V& v) {
  unsigned char b[sizeof(V)];
  std::memcpy(b, &v, sizeof(V));
  std::string h = "0x";
  char d[3];
  for (size_t i = sizeof(V); i-- > 0;) {
    std::snprintf(d, sizeof d, "%02x", b[i]);
    h += d;
  }
  return h;
}

// `blocks` stacked [T, N] sequences (states of a model; 1 for a neuron) permuted into an exact-size
// buffer of [B, T, F] blocks.
template <typename V>
Buf<V> to_bf(const V* tm, int blocks, long long T, long long N, long long F) {
  Buf<V> b((size_t)blocks * T * N);
  for (int q = 0; q < blocks; ++q)
    for (long long t = 0; t < T; ++t)
      for (long long n = 0; n < N; ++n) b[q * T * N + bf_at(t, n, T, F)] = tm[(q * T + t) * N + n];
  return b;
}

// `blocks` [B, T, F] outputs against the time-major [T, N] ones, bitwise.
template <typename V>
void check_bf_seq(Failure& F, const char* name, const V* bf, const V* tm, int blocks, long long T, long long N,
                  long long Fw) {
  for (int q = 0; q < blocks; ++q)
    for (long long t = 0; t < T; ++t)
      for (long long n = 0; n < N; ++n) {
        const V& a = bf[q * T * N + bf_at(t, n, T, Fw)];
        const V& b = tm[(q * T + t) * N + n];
        if (std::memcmp(&a, &b, sizeof(V)) != 0) {
          F.fail(std::string(name) + "[q=" + std::to_string(q) + ",b=" + std::to_string(n / Fw) +
                 ",t=" + std::to_string(t) + ",f=" + std::to_string(n % Fw) + "] batch-first=" + hex_bits(a) +
                 " time-major=" + hex_bits(b));
          return;
        }
      }
}

// A per-neuron output (same order in both layouts), bitwise.
template <typename V>
void check_bf_flat(Failure& F, const char* name, const V* bf, const V* tm, long long n) {
  for (long long i = 0; i < n; ++i)
    if (std::memcmp(&bf[i], &tm[i], sizeof(V)) != 0) {
      F.fail(std::string(name) + "[" + std::to_string(i) + "] batch-first=" + hex_bits(bf[i]) +
             " time-major=" + hex_bits(tm[i]));
      return;
    }
}

// B for a batch-first rerun of N neurons, by `mode`: the smallest factor > 1 (a long run F,
// never a multiple of the 256-thread block here, so runs straddle blocks), N over it (F = that
// factor, short runs), the divisor nearest below sqrt(N), N (F = 1) and 1 (one run of N).
inline long long pick_B(long long N, int mode) {
  long long p = N;
  for (long long d = 2; d * d <= N; ++d)
    if (N % d == 0) {
      p = d;
      break;
    }
  switch (mode) {
    case 0:
      return p;
    case 1:
      return N / p;
    case 2:
      for (long long d = (long long)std::sqrt((double)N); d > 1; --d)
        if (N % d == 0) return d;
      return p;
    case 3:
      return N;
    default:
      return 1;
  }
}
