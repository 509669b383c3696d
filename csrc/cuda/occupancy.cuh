// The grid of every launcher: one full wave of resident blocks (see
// snn::grid_blocks), sized with the occupancy API's answer for the kernel
// actually launched, asked once per (kernel, device) and cached.
#pragma once
#include <cuda_runtime.h>

#include <atomic>

#include "../kernels/params.h"
#include "launch.h"

namespace snn_launch {
namespace detail {

constexpr int kMaxDevices = 64;

// Resident blocks of kBlockThreads per SM for kernel K on the current device
// (`device` is its index, the cache key). Returns a cudaError_t: resolving K
// is also where a build without an image for this GPU fails
// (cudaErrorNoKernelImageForDevice). A failed query is cleared from the
// runtime's last-error slot, which torch's own launch checks read, so that it
// is reported once, here, and not by an unrelated torch kernel later.
template <auto K>
int blocks_per_sm(int device, int* out) {
  static std::atomic<int> cache[kMaxDevices];
  const bool cacheable = device >= 0 && device < kMaxDevices;
  if (cacheable) {
    const int v = cache[device].load(std::memory_order_relaxed);
    if (v > 0) {
      *out = v;
      return 0;
    }
  }
  int v = 0;
  const cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, K, snn::kBlockThreads, 0);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return (int)err;
  }
  // 0 (the kernel cannot launch with this block) is not cached: the launch
  // itself then reports why.
  if (cacheable && v > 0) cache[device].store(v, std::memory_order_relaxed);
  *out = v;
  return 0;
}

template <auto K, typename P>
int launch(const P& p, snn::i64 items, Device dev, cudaStream_t stream) {
  int per_sm = 0;
  const int err = blocks_per_sm<K>(dev.index, &per_sm);
  if (err) return err;
  const dim3 grid((unsigned)snn::grid_blocks(items, snn::kBlockThreads, dev.sm_count, per_sm));
  K<<<grid, snn::kBlockThreads, 0, stream>>>(p);
  return (int)cudaGetLastError();
}

// The probe of a unit: resolving one of its kernels.
template <auto K>
int probe(int device) {
  int per_sm = 0;
  return blocks_per_sm<K>(device, &per_sm);
}

template <auto K>
int occupancy(int device) {
  int per_sm = 0;
  const int err = blocks_per_sm<K>(device, &per_sm);
  return err ? -err : per_sm;
}

}  // namespace detail
}  // namespace snn_launch
